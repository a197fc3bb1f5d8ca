/* test_cma.c - the running mean of the cma egress (egress/cma.c) and its
 * printing, which must match Rust's `{}` for f64 as the seed prints it.
 * The expected strings were checked against rustc's output. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/cma.h"
#include "tests/rng.h"

static const char *
fmt(double v)
{
	static char buf[400];
	int n = cma_format(v, buf, sizeof(buf));
	cr_assert_geq(n, 0, "cma_format(%.17g) failed", v);
	cr_assert_eq((size_t)n, strlen(buf));
	return buf;
}

struct mean_case {
	uint32_t in[4];
	size_t n;
	const char *out;
};

Test(cma, small_means)
{
	static const struct mean_case cases[] = {
		{{1000}, 1, "1000"},
		{{1000, 2000}, 2, "1500"},
		{{1000, 2000, 3000}, 3, "2000"},           /* the seed's b */
		{{1000, 2000, 2000}, 3, "1666.6666666666667"},
		{{1, 2}, 2, "1.5"},
		{{0}, 1, "0"},
		{{1, 2, 2, 2}, 4, "1.75"},
		{{4294967295u}, 1, "4294967295"},
		{{4294967295u, 4294967294u}, 2, "4294967294.5"},
		{{4294967295u, 4294967295u, 4294967295u}, 3, "4294967295"},
		{{0, 4294967295u}, 2, "2147483647.5"},
		{{4294967295u, 4294967295u, 4294967294u}, 3,
		    "4294967294.6666665"},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct cma m = {0, 0};
		for (size_t i = 0; i < cases[c].n; i++)
			cma_add(&m, cases[c].in[i]);
		cr_expect_eq(m.n, cases[c].n);
		cr_expect_str_eq(fmt(m.mean), cases[c].out, "case %zu: %s",
		    c, fmt(m.mean));
	}
}

Test(cma, first_value_is_exact)
{
	for (uint32_t x = 1; x != 0 && x < 4000000000u; x = x * 3 + 7) {
		struct cma m = {0, 0};
		cma_add(&m, x);
		cr_assert_eq(m.mean, (double)x);
	}
}

Test(cma, ten_million_values)
{
	struct cma same = {0, 0}, cyc = {0, 0}, rnd = {0, 0};
	uint64_t s = 88172645463325252u;
	long double sum = 0;
	for (uint32_t i = 0; i < 10000000; i++) {
		cma_add(&same, 4294967295u);
		cma_add(&cyc, i % 1000);
		xorshift64(&s);
		uint32_t x = (uint32_t)(s >> 32);
		cma_add(&rnd, x);
		sum += x;
	}
	cr_expect_eq(same.n, 10000000);
	cr_expect_str_eq(fmt(same.mean), "4294967295");
	cr_expect(fabs(cyc.mean - 499.5) < 1e-6, "cyclic mean %.17g",
	    cyc.mean);
	double exact = (double)(sum / 10000000);
	cr_expect(fabs(rnd.mean - exact) / exact < 1e-9,
	    "random mean %.17g, exact %.17g", rnd.mean, exact);
}

struct fmt_case {
	double v;
	const char *out;
};

Test(cma, format_table)
{
	static const struct fmt_case cases[] = {
		{1500, "1500"},
		{5000.0 / 3, "1666.6666666666667"},
		{0.1, "0.1"},
		{4294967295.0, "4294967295"},
		{0, "0"},
		{-0.0, "-0"},
		{1, "1"},
		{-2.5, "-2.5"},
		{0.3, "0.3"},
		{2.0 / 3, "0.6666666666666666"},
		{100.0 / 3, "33.333333333333336"},
		{1e21, "1000000000000000000000"},
		{1e23, "100000000000000000000000"},
		{1e-7, "0.0000001"},
		{2.5e-5, "0.000025"},
		{123456.789, "123456.789"},
		{9007199254740993.0, "9007199254740992"},
		/* an exact tie: printf rounds to even (.2), Rust up (.3) */
		{581340081208420.25, "581340081208420.3"},
		{NAN, "NaN"},
		{INFINITY, "inf"},
		{-INFINITY, "-inf"},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
		cr_expect_str_eq(fmt(cases[c].v), cases[c].out,
		    "%.17g printed as %s, want %s", cases[c].v,
		    fmt(cases[c].v), cases[c].out);
}

Test(cma, format_extremes)
{
	const char *s = fmt(5e-324);
	cr_expect_eq(strlen(s), 326);
	cr_expect_eq(strncmp(s, "0.0000", 6), 0);
	cr_expect_eq(s[325], '5');
	s = fmt(1.7976931348623157e308);
	cr_expect_eq(strlen(s), 309);
	cr_expect_eq(strncmp(s, "17976931348623157000", 20), 0);
	char buf[330];
	cr_expect_eq(cma_format(-5e-324, buf, sizeof(buf)), 327);
}

Test(cma, format_cap)
{
	char buf[8];
	cr_expect_eq(cma_format(1500, buf, 5), 4);
	cr_expect_str_eq(buf, "1500");
	cr_expect_eq(cma_format(1500, buf, 4), -1);
	cr_expect_eq(cma_format(0.5, buf, 3), -1);
	cr_expect_eq(cma_format(0.5, buf, 4), 3);
	cr_expect_eq(cma_format(NAN, buf, 3), -1);
	cr_expect_eq(cma_format(1, buf, 0), -1);
}

/* Significant digits of a plain decimal (no exponent). */
static int
sig_digits(const char *s)
{
	int n = 0, lead = 1, trail_zeros = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			continue;
		if (lead && *s == '0')
			continue;
		lead = 0;
		n++;
		trail_zeros = *s == '0' ? trail_zeros + 1 : 0;
	}
	return n - trail_zeros;
}

Test(cma, format_round_trips)
{
	uint64_t s = 0x2545f4914f6cdd1dULL;
	for (int i = 0; i < 100000; i++) {
		xorshift64(&s);
		double v;
		if (i % 2) {
			memcpy(&v, &s, sizeof(v));
			if (!isfinite(v))
				continue;
		} else {
			v = (double)(s >> 20) / (double)((s & 0xfffff) + 1);
		}
		const char *out = fmt(v);
		cr_assert_null(strpbrk(out, "eE"), "%s has an exponent", out);
		cr_assert_eq(strtod(out, NULL), v, "%s does not read back "
		    "as %.17g", out, v);
		/* no longer than the shortest %.*g that reads back */
		int p = 1;
		char g[40];
		for (; p < 17; p++) {
			snprintf(g, sizeof(g), "%.*g", p, v);
			if (strtod(g, NULL) == v)
				break;
		}
		cr_assert_leq(sig_digits(out), p, "%s longer than %s", out, g);
	}
}
