/* test_ckms.c - the CKMS sketch (egress/ckms.c): the seed's answers from
 * tests/data/ckms-reference.txt, batched inserts against a one-at-a-time
 * model of docs/design.md §11, the switch from 8- to 12-byte samples,
 * accuracy and bounded memory for 1 M values. */
#include <criterion/criterion.h>
#include <malloc.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/ckms.h"

#define REFERENCE "tests/data/ckms-reference.txt"
#define BIG 1000000

static const double qs[6] = {0, 0.25, 0.5, 0.75, 0.9, 0.99};

static uint64_t rng_state;

static uint64_t
rng(void)
{
	/* xorshift64*: fast, and the same sequence on every run */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * UINT64_C(2685821657736338717);
}

static struct ckms *
new_sketch(double eps)
{
	struct ckms *s = ckms_new(eps);
	cr_assert_not_null(s);
	return s;
}

/* ---- the seed's answers ------------------------------------------------ */

struct small_case {
	uint32_t in[4];
	size_t n;
	uint32_t out[6];
};

Test(ckms, seed_small_cases)
{
	static const struct small_case cases[] = {
		{{10}, 1, {10, 10, 10, 10, 10, 10}},
		{{10, 55}, 2, {10, 10, 10, 55, 55, 55}},
		{{55, 10}, 2, {10, 10, 10, 55, 55, 55}},
		{{7, 7, 7}, 3, {7, 7, 7, 7, 7, 7}},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct ckms *s = new_sketch(0.01);
		for (size_t i = 0; i < cases[c].n; i++)
			ckms_insert(s, cases[c].in[i]);
		cr_expect_eq(ckms_count(s), cases[c].n);
		for (int i = 0; i < 6; i++)
			cr_expect_eq(ckms_query(s, qs[i]), cases[c].out[i],
			    "case %zu q=%g: got %u want %u", c, qs[i],
			    ckms_query(s, qs[i]), cases[c].out[i]);
		ckms_free(s);
	}
}

/* Parse "in v1 v2 ..." into s; returns the count. */
static size_t
feed_line(struct ckms *s, const char *p)
{
	size_t n = 0;
	for (;;) {
		char *end;
		unsigned long v = strtoul(p, &end, 10);
		if (end == p)
			return n;
		ckms_insert(s, (uint32_t)v);
		n++;
		p = end;
	}
}

Test(ckms, reference_cases)
{
	FILE *f = fopen(REFERENCE, "r");
	cr_assert_not_null(f, "open %s (run from the top of the tree)",
	    REFERENCE);
	char line[8192];
	struct ckms *s = NULL;
	int cases = 0, lineno = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strncmp(line, "in ", 3) == 0) {
			ckms_free(s);
			s = new_sketch(0.01);
			cr_assert_gt(feed_line(s, line + 3), 0);
		} else if (strncmp(line, "out ", 4) == 0) {
			cr_assert_not_null(s, "line %d: out before in", lineno);
			const char *p = line + 4;
			for (int i = 0; i < 6; i++) {
				char *end;
				double q = strtod(p, &end);
				cr_assert_eq(*end, ':', "line %d", lineno);
				unsigned long want = strtoul(end + 1, &end, 10);
				p = end;
				cr_expect_eq(q, qs[i], "line %d", lineno);
				uint32_t got = ckms_query(s, q);
				cr_expect_eq(got, want,
				    "line %d q=%g: got %u want %lu", lineno, q,
				    got, want);
			}
			cases++;
		}
	}
	fclose(f);
	ckms_free(s);
	cr_expect_eq(cases, 150, "%d reference cases read", cases);
}

/* ---- batched inserts against a one-at-a-time model ----------------------- */

/* docs/design.md §11 taken literally: sorted insertion with memmove, compress
 * every floor(1/(2eps)) inserts. Slow, obviously right, test-only. */
struct model {
	uint32_t *v, *g, *d;
	size_t ns;
	uint64_t n, period;
	double twoeps;
};

static uint32_t
model_f(const struct model *m, double x)
{
	double y = floor(m->twoeps * x);
	return y < 1 ? 1 : y > 4294967295.0 ? UINT32_MAX : (uint32_t)y;
}

static void
model_remove(struct model *m, size_t i)
{
	size_t k = m->ns - i - 1;
	memmove(m->v + i, m->v + i + 1, k * sizeof(uint32_t));
	memmove(m->g + i, m->g + i + 1, k * sizeof(uint32_t));
	memmove(m->d + i, m->d + i + 1, k * sizeof(uint32_t));
	m->ns--;
}

static void
model_compress(struct model *m)
{
	uint64_t r = 0;
	size_t i = 0;
	while (i + 1 < m->ns) {
		uint64_t lhs = (uint64_t)m->g[i] + m->g[i + 1] + m->d[i + 1];
		if (i > 0 && lhs <= model_f(m, (double)r)) {
			m->g[i + 1] += m->g[i];
			model_remove(m, i);
		} else {
			r += m->g[i];
			i++;
		}
	}
}

static void
model_insert(struct model *m, uint32_t x)
{
	size_t i = 0;
	uint64_t r = 0;
	while (i < m->ns && m->v[i] < x)
		r += m->g[i++];
	size_t k = m->ns - i;
	memmove(m->v + i + 1, m->v + i, k * sizeof(uint32_t));
	memmove(m->g + i + 1, m->g + i, k * sizeof(uint32_t));
	memmove(m->d + i + 1, m->d + i, k * sizeof(uint32_t));
	m->v[i] = x;
	m->g[i] = 1;
	m->d[i] = (i == 0 || i == m->ns) ? 0 : model_f(m, (double)r) - 1;
	m->ns++;
	if (++m->n % m->period == 0)
		model_compress(m);
}

static uint32_t
model_query(const struct model *m, double q)
{
	double t = q * (double)m->n;
	double rhs = t + model_f(m, t) / 2.0;
	uint64_t r = 0;
	for (size_t i = 1; i < m->ns; i++) {
		r += m->g[i - 1];
		if ((double)(r + m->g[i] + m->d[i]) > rhs)
			return m->v[i - 1];
	}
	return m->v[m->ns - 1];
}

/* A model for up to n values with error eps (the test fails if it cannot
 * have the memory). */
static void
model_init(struct model *m, double eps, size_t n)
{
	memset(m, 0, sizeof(*m));
	m->v = malloc(n * sizeof(uint32_t));
	m->g = malloc(n * sizeof(uint32_t));
	m->d = malloc(n * sizeof(uint32_t));
	cr_assert(m->v && m->g && m->d);
	m->twoeps = 2.0 * eps;
	m->period = (uint64_t)(1.0 / (2.0 * eps));
}

static void
model_free(struct model *m)
{
	free(m->v);
	free(m->g);
	free(m->d);
}

/* Value i of n in [0, domain): 0 random, 1 ascending, 2 descending, 3
 * zigzag. */
static uint32_t
shaped(int shape, size_t i, size_t n, uint32_t domain)
{
	switch (shape) {
	case 1: return (uint32_t)(i * domain / n);
	case 2: return (uint32_t)((n - i) * domain / n);
	case 3: return (uint32_t)((i % 1000) * 7 + rng() % 3) % domain;
	default: return (uint32_t)(rng() % domain);
	}
}

struct stream_case {
	double eps;
	uint32_t domain;    /* values are drawn from [0, domain) ... */
	int shape;          /* 0 random, 1 ascending, 2 descending, 3 zigzag */
	size_t n;
	unsigned query_every; /* ... with a query about every this many */
};

ParameterizedTestParameters(ckms, same_as_one_at_a_time)
{
	static struct stream_case cases[] = {
		{0.01, UINT32_MAX, 0, 20000, 997},
		{0.01, 200, 0, 20000, 331},
		{0.01, 3, 0, 5000, 17},
		{0.01, 1, 0, 3000, 41},
		{0.01, 1000, 1, 20000, 1009},
		{0.01, 1000, 2, 20000, 503},
		{0.01, 5000, 3, 20000, 97},
		{0.1, 100, 0, 10000, 7},
		{0.001, UINT32_MAX, 0, 30000, 2999},
		{0.001, 50, 0, 30000, 0},
		{0.3, 1000, 0, 5000, 3},
		{0.49, 10, 0, 2000, 5},
		{0.0001, 100000, 0, 40000, 4001},
		/* batches of 50 spanning just under, at and over the 256
		 * values the counting sort of ckms.c takes */
		{0.01, 256, 0, 20000, 211},
		{0.01, 257, 0, 20000, 0},
		{0.01, 400, 0, 20000, 0},
		/* batches of 500: counting sort, then radix above 256 */
		{0.001, 300, 0, 30000, 1999},
		/* 1/(2eps) not an integer, and 2eps a little under 1/3:
		 * the walk's merge test in doubles while narrow */
		{1.0 / 6, 1000, 0, 10000, 13},
		{0.003, UINT32_MAX, 0, 20000, 0},
	};
	return cr_make_param_array(struct stream_case, cases,
	    sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct stream_case *c, ckms, same_as_one_at_a_time)
{
	struct model m;
	model_init(&m, c->eps, c->n);
	struct ckms *s = new_sketch(c->eps);
	rng_state = UINT64_C(0x9e3779b97f4a7c15) ^ c->n ^ c->shape;

	for (size_t i = 0; i < c->n; i++) {
		uint32_t x = shaped(c->shape, i, c->n, c->domain);
		model_insert(&m, x);
		ckms_insert(s, x);
		if (c->query_every && rng() % c->query_every == 0) {
			double q = (double)(rng() % 1001) / 1000.0;
			cr_assert_eq(ckms_query(s, q), model_query(&m, q),
			    "after %zu values, q=%g", i + 1, q);
		}
		if (i % 499 == 0 || i + 1 == c->n) {
			cr_assert_eq(ckms_samples(s), m.ns,
			    "eps %g shape %d: %zu samples after %zu values, "
			    "model %zu", c->eps, c->shape, ckms_samples(s),
			    i + 1, m.ns);
			for (int k = 0; k < 6; k++)
				cr_assert_eq(ckms_query(s, qs[k]),
				    model_query(&m, qs[k]),
				    "after %zu values, q=%g", i + 1, qs[k]);
		}
	}
	cr_expect_eq(ckms_count(s), c->n);
	ckms_free(s);
	model_free(&m);
}

/* Every sample of s (v, g, Δ, position) is the model's. */
static void
same_samples(struct ckms *s, const struct model *m, const char *what,
    size_t after)
{
	size_t ns = ckms_samples(s);
	cr_assert_eq(ns, m->ns, "%s: %zu samples after %zu values, model %zu",
	    what, ns, after, m->ns);
	for (size_t i = 0; i < ns; i++) {
		uint32_t v, g, d;
		ckms_sample(s, i, &v, &g, &d);
		cr_assert(v == m->v[i] && g == m->g[i] && d == m->d[i],
		    "%s: after %zu values sample %zu is (%u, %u, %u), model "
		    "(%u, %u, %u)", what, after, i, v, g, d, m->v[i],
		    m->g[i], m->d[i]);
	}
}

/* Every sample, not only the answers, against the one-at-a-time model:
 * about every `every` values (and at the end) a query, which merges a
 * partly filled period too (so the next merge starts inside a period),
 * and a comparison of every sample's v, g, Δ and position. Streams of
 * many sizes and value spans, with duplicates, new minima and maxima,
 * and the switch to wide samples. */
struct sample_case {
	double eps;
	uint32_t domain;
	int shape;
	size_t n;
	unsigned every;
};

ParameterizedTestParameters(ckms, samples_same_as_one_at_a_time)
{
	static struct sample_case cases[] = {
		{0.01, 101, 0, 60000, 3000},
		{0.01, 101, 0, 60000, 0},
		{0.01, 101, 0, 150000, 7000},
		{0.01, UINT32_MAX, 0, 40000, 2000},
		{0.01, UINT32_MAX, 0, 41000, 1500},
		{0.01, 3, 0, 20000, 1500},
		{0.01, 1, 0, 10000, 900},
		{0.01, 1000, 1, 40000, 2500},   /* new maxima */
		{0.01, 1000, 2, 40000, 2500},   /* new minima */
		{0.01, 5000, 3, 40000, 700},
		{0.01, 256, 0, 30000, 1100},
		{0.01, 400, 0, 30000, 1100},
		{0.02, 300, 0, 40000, 800},
		{0.004, 257, 0, 40000, 1300},
		{0.003, UINT32_MAX, 0, 40000, 0},
		{0.003, 100, 0, 40000, 999},
		{0.001, UINT32_MAX, 0, 30000, 2999},
		{0.1, 100, 0, 20000, 50},
		{0.1, 7, 2, 20000, 31},
		{1.0 / 6, 1000, 0, 30000, 97},
		{0.49, 10, 0, 5000, 37},
		{0.3, 1000, 3, 5000, 11},
		/* narrow to wide: f(n) passes 65535 */
		{0.1, UINT32_MAX, 0, 340000, 20000},
		{0.1, 1000, 1, 340000, 0},
		{1.0 / 6, UINT32_MAX, 0, 210000, 9000},
		{0.3, UINT32_MAX, 0, 120000, 6000},
	};
	return cr_make_param_array(struct sample_case, cases,
	    sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct sample_case *c, ckms, samples_same_as_one_at_a_time,
    .timeout = 300)
{
	struct model m;
	model_init(&m, c->eps, c->n);
	struct ckms *s = new_sketch(c->eps);
	rng_state = UINT64_C(0x2545f4914f6cdd1d) ^ c->n ^ c->shape ^ c->domain;
	char what[96];
	snprintf(what, sizeof(what), "eps %g domain %u shape %d", c->eps,
	    c->domain, c->shape);

	for (size_t i = 0; i < c->n; i++) {
		uint32_t x = shaped(c->shape, i, c->n, c->domain);
		model_insert(&m, x);
		ckms_insert(s, x);
		if ((c->every && rng() % c->every == 0) || i + 1 == c->n) {
			double q = (double)(rng() % 1001) / 1000.0;
			cr_assert_eq(ckms_query(s, q), model_query(&m, q),
			    "%s: after %zu values, q=%g", what, i + 1, q);
			same_samples(s, &m, what, i + 1);
			/* wide exactly from the merge after which f(n)
			 * > 65535 */
			cr_assert_eq(ckms_sample_bytes(s),
			    model_f(&m, (double)m.n) > 65535 ? 12u : 8u,
			    "%s: %zu bytes a sample after %zu values", what,
			    ckms_sample_bytes(s), i + 1);
		}
	}
	cr_expect_eq(ckms_count(s), c->n);
	ckms_free(s);
	model_free(&m);
}

/* ---- the merge's own pieces ------------------------------------------- */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The batch sort (a counting pass on narrow spans, insertion or radix
 * sort on wide ones) against qsort, on sizes 0..512 and values of spans
 * around the counting pass's limit of 256. */
Test(ckms, sort_keys_same_as_qsort)
{
	static const uint64_t spans[] = {1, 2, 101, 255, 256, 257, 4096,
	    UINT64_C(1) << 32};
	static const uint32_t bases[] = {0, 1000, UINT32_MAX - 300};
	uint64_t keys[512], want[512];
	rng_state = 77;
	for (size_t n = 0; n <= 512; n += n < 70 ? 1 : 37) {
		for (size_t si = 0; si < sizeof(spans) / sizeof(spans[0]); si++) {
			for (size_t bi = 0; bi < 3; bi++) {
				for (size_t j = 0; j < n; j++) {
					uint64_t v = bases[bi] + rng() % spans[si];
					if (v > UINT32_MAX)
						v = rng() >> 32;
					keys[j] = v << 32 |
					    (uint64_t)((0x7fffffffu - (uint32_t)j) << 1) |
					    (rng() & 1);
				}
				memcpy(want, keys, n * sizeof(keys[0]));
				qsort(want, n, sizeof(want[0]), cmp_u64);
				ckms_sort_keys(keys, n);
				cr_assert_eq(memcmp(keys, want, n * sizeof(keys[0])), 0,
				    "n %zu span %llu base %u", n,
				    (unsigned long long)spans[si], bases[bi]);
			}
		}
	}
	/* more than a buffer holds: refused, untouched */
	uint64_t big[513];
	for (size_t j = 0; j < 513; j++)
		big[j] = 513 - j;
	ckms_sort_keys(big, 513);
	cr_assert_eq(big[0], 513);
	cr_assert_eq(big[512], 1);
}

static double
f_double(double eps, uint64_t r)
{
	return floor(2.0 * eps * (double)r);
}

/* Where ckms.c tests c <= f(r) as c * P <= r, floor(2eps * r) in doubles
 * is r / P for every r a narrow sketch reaches (up to 65537 * P), at
 * every multiple of P and its neighbours up to 2*10^5 and on random r;
 * and eps whose 2eps is not 1/P or a bit above get no P. */
Test(ckms, integer_period_exact)
{
	static const double with[] = {0.01, 0.1, 0.001, 0.0001, 0.005,
	    0.05, 0.025, 0.25};
	static const uint64_t per[] = {50, 5, 500, 5000, 100, 10, 20, 2};
	for (size_t i = 0; i < sizeof(with) / sizeof(with[0]); i++) {
		double eps = with[i];
		uint64_t p = ckms_integer_period(eps);
		cr_assert_eq(p, per[i], "eps %g: P %llu", eps,
		    (unsigned long long)p);
		uint64_t rmax = 65537 * p;
		rng_state = 99 + i;
		for (uint64_t r = 0; r <= rmax; ) {
			for (uint64_t k = r ? r - 1 : 0; k <= r + 1; k++)
				cr_assert_eq(f_double(eps, k), (double)(k / p),
				    "eps %g r %llu", eps, (unsigned long long)k);
			r += r < 200000 ? p : 1 + rng() % (p * 1000);
		}
		for (int k = 0; k < 100000; k++) {
			uint64_t r = rng() % (rmax + 1);
			cr_assert_eq(f_double(eps, r), (double)(r / p),
			    "eps %g r %llu", eps, (unsigned long long)r);
		}
	}
	static const double without[] = {0.4, 0.3, 0.2, 1.0 / 6, 0.003,
	    0.49, 0.0000001};
	for (size_t i = 0; i < sizeof(without) / sizeof(without[0]); i++)
		cr_expect_eq(ckms_integer_period(without[i]), 0, "eps %g",
		    without[i]);
}

/* ---- 8-byte samples, widened to 12 once f(n) passes 65535 ---------------- */

#define NARROW_MAX 65535u

/* The first n with f(n) > 65535: from there on a flush leaves s wide. */
static uint64_t
widen_at(double eps)
{
	struct model m = {.twoeps = 2.0 * eps};
	uint64_t n = (uint64_t)(65535.0 / (2.0 * eps));
	while (n > 0 && model_f(&m, (double)(n - 1)) > NARROW_MAX)
		n--;
	while (model_f(&m, (double)n) <= NARROW_MAX)
		n++;
	return n;
}

/* Bytes per sample that s must use once it has just flushed at n values. */
static size_t
layout_after(double eps, uint64_t n)
{
	return n >= widen_at(eps) ? 12 : 8;
}

Test(ckms, starts_narrow)
{
	struct ckms *s = new_sketch(0.01);
	cr_expect_eq(ckms_sample_bytes(s), 8);
	for (uint32_t i = 0; i < 100000; i++)
		ckms_insert(s, i * 2654435761u);
	cr_expect_eq(ckms_samples(s) > 0, 1);
	cr_expect_eq(ckms_sample_bytes(s), 8, "wide after 10^5 values");
	ckms_widen(s);
	cr_expect_eq(ckms_sample_bytes(s), 12);
	ckms_widen(s); /* already wide: nothing to do */
	cr_expect_eq(ckms_sample_bytes(s), 12);
	ckms_free(s);
	cr_expect_eq(widen_at(0.4), 81920);
	cr_expect_eq(widen_at(0.01), 3276800);
}

struct switch_case {
	double eps;
	uint32_t domain;
	int shape;          /* as in stream_case */
	size_t n;           /* past widen_at(eps) */
};

ParameterizedTestParameters(ckms, narrow_to_wide_same_as_one_at_a_time)
{
	static struct switch_case cases[] = {
		{0.4, UINT32_MAX, 0, 200000},
		{0.4, 1000, 1, 100000}, /* ~5 400 samples: mapped */
		{0.4, 1000, 2, 120000},
		{0.3, 100, 0, 200000},
		{0.2, UINT32_MAX, 0, 250000},
		{0.1, 5000, 3, 400000},
	};
	return cr_make_param_array(struct switch_case, cases,
	    sizeof(cases) / sizeof(cases[0]));
}

/* Across the switch: every answer and the sample count equal the model's,
 * checked every 997 values and at every period boundary (no partial
 * buffer to flush) within 200 values of the switch; samples take 8 bytes
 * before it and 12 after. */
ParameterizedTest(struct switch_case *c, ckms,
    narrow_to_wide_same_as_one_at_a_time, .timeout = 300)
{
	struct model m;
	model_init(&m, c->eps, c->n);
	struct ckms *s = new_sketch(c->eps);
	uint64_t at = widen_at(c->eps);
	cr_assert_lt(at, c->n);
	rng_state = UINT64_C(0x452821e638d01377) ^ c->n ^ c->shape;
	size_t narrow_checks = 0, wide_checks = 0;

	for (size_t i = 0; i < c->n; i++) {
		uint32_t x = shaped(c->shape, i, c->n, c->domain);
		model_insert(&m, x);
		ckms_insert(s, x);
		uint64_t n = i + 1;
		int near = n + 200 >= at && n <= at + 200 &&
		    n % m.period == 0;
		if (!near && n % 997 != 0 && n != c->n)
			continue;
		cr_assert_eq(ckms_samples(s), m.ns,
		    "eps %g shape %d: %zu samples after %zu values, model %zu",
		    c->eps, c->shape, ckms_samples(s), (size_t)n, m.ns);
		size_t bytes = ckms_sample_bytes(s);
		cr_assert_eq(bytes, layout_after(c->eps, n),
		    "eps %g: %zu-byte samples after %zu values (switch at "
		    "%zu)", c->eps, bytes, (size_t)n, (size_t)at);
		if (bytes == 8)
			narrow_checks++;
		else
			wide_checks++;
		for (int k = 0; k < 6; k++)
			cr_assert_eq(ckms_query(s, qs[k]),
			    model_query(&m, qs[k]), "eps %g after %zu values, "
			    "q=%g", c->eps, (size_t)n, qs[k]);
		for (int k = 0; k < 4; k++) {
			double q = (double)(rng() % 1001) / 1000.0;
			cr_assert_eq(ckms_query(s, q), model_query(&m, q),
			    "eps %g after %zu values, q=%g", c->eps,
			    (size_t)n, q);
		}
	}
	cr_expect_gt(narrow_checks, 50);
	cr_expect_gt(wide_checks, 50);
	cr_expect_eq(ckms_count(s), c->n);
	ckms_free(s);
	model_free(&m);
}

ParameterizedTestParameters(ckms, widened_early_same_answers)
{
	/* uniform u32: ~950 samples at the switch, a narrow array on the
	 * heap that widening moves to a mapping; 101 values: ~2400, a
	 * mapping grown by mremap */
	static uint32_t domains[] = {0, 101};
	return cr_make_param_array(uint32_t, domains,
	    sizeof(domains) / sizeof(domains[0]));
}

/* eps 0.01 past its switch at 3 276 800 values: a sketch left to switch by
 * itself, one wide from the start and one widened with a partly filled
 * buffer give the same sample count and answers all along. */
ParameterizedTest(uint32_t *domain, ckms, widened_early_same_answers,
    .timeout = 300)
{
	const double eps = 0.01;
	const size_t n = 3600000, mid = 1234567;
	uint64_t at = widen_at(eps);
	struct ckms *a = new_sketch(eps), *b = new_sketch(eps),
	    *c = new_sketch(eps);
	ckms_widen(b);
	rng_state = UINT64_C(0x13198a2e03707344) + *domain;
	for (size_t i = 0; i < n; i++) {
		uint32_t x = *domain ? (uint32_t)(rng() % *domain) :
		    (uint32_t)(rng() >> 32);
		ckms_insert(a, x);
		ckms_insert(b, x);
		ckms_insert(c, x);
		uint64_t k = i + 1;
		if (k == mid) {
			cr_assert_eq(ckms_sample_bytes(c), 8);
			ckms_widen(c);
		}
		int near = k + 1000 >= at && k <= at + 1000 && k % 50 == 0;
		if (!near && k % 100003 != 0 && k != n)
			continue;
		size_t ns = ckms_samples(a);
		cr_assert_eq(ckms_samples(b), ns, "%zu values", (size_t)k);
		cr_assert_eq(ckms_samples(c), ns, "%zu values", (size_t)k);
		cr_assert_eq(ckms_sample_bytes(a), layout_after(eps, k),
		    "%zu values", (size_t)k);
		cr_assert_eq(ckms_sample_bytes(b), 12);
		cr_assert_eq(ckms_sample_bytes(c), k >= mid ? 12u : 8u);
		for (int j = 0; j < 10; j++) {
			double q = j < 6 ? qs[j] :
			    (double)(rng() % 10001) / 10000.0;
			uint32_t want = ckms_query(a, q);
			cr_assert_eq(ckms_query(b, q), want,
			    "%zu values, q=%g", (size_t)k, q);
			cr_assert_eq(ckms_query(c, q), want,
			    "%zu values, q=%g", (size_t)k, q);
		}
	}
	ckms_free(a);
	ckms_free(b);
	ckms_free(c);
}

/* ---- accuracy and memory for 1 M values ---------------------------------- */

enum dist { UNIFORM, ASCENDING, DESCENDING, PARETO, EQUAL, DOMAIN200 };

static uint32_t
draw(enum dist d, size_t i, size_t n)
{
	switch (d) {
	case UNIFORM:
		return (uint32_t)(rng() >> 32);
	case ASCENDING:
		return (uint32_t)((uint64_t)i * 4294967295u / n);
	case DESCENDING:
		return (uint32_t)((uint64_t)(n - i) * 4294967295u / n);
	case PARETO: {
		/* alpha 1.2, scale 1000: a heavy tail, capped at 2^32 - 1 */
		double u = ((double)(rng() >> 11) + 1.0) / 9007199254740993.0;
		double x = 1000.0 / pow(u, 1.0 / 1.2);
		return x >= 4294967295.0 ? UINT32_MAX : (uint32_t)x;
	}
	case EQUAL:
		return 424242;
	case DOMAIN200:
		return (uint32_t)(rng() % 200) * 1000003u;
	}
	return 0;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Ranks (1-based) that v holds in sorted[0..n): [*lo, *hi]. */
static void
ranks_of(const uint32_t *sorted, size_t n, uint32_t v, size_t *lo,
    size_t *hi)
{
	size_t a = 0, b = n;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (sorted[mid] < v) a = mid + 1; else b = mid;
	}
	*lo = a + 1;
	b = n;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (sorted[mid] <= v) a = mid + 1; else b = mid;
	}
	*hi = a;
}

struct acc_case {
	const char *name;
	enum dist dist;
};

ParameterizedTestParameters(ckms, accuracy_1m)
{
	static struct acc_case cases[] = {
		{"uniform", UNIFORM}, {"ascending", ASCENDING},
		{"descending", DESCENDING}, {"pareto", PARETO},
		{"all equal", EQUAL}, {"200 distinct", DOMAIN200},
	};
	return cr_make_param_array(struct acc_case, cases,
	    sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct acc_case *c, ckms, accuracy_1m)
{
	const double eps = 0.01;
	uint32_t *data = malloc(BIG * sizeof(*data));
	cr_assert_not_null(data);
	struct ckms *s = new_sketch(eps);
	rng_state = UINT64_C(0x243f6a8885a308d3) + c->dist;
	for (size_t i = 0; i < BIG; i++) {
		data[i] = draw(c->dist, i, BIG);
		ckms_insert(s, data[i]);
	}
	qsort(data, BIG, sizeof(*data), cmp_u32);

	uint32_t prev = 0;
	for (int i = 0; i < 6; i++) {
		uint32_t v = ckms_query(s, qs[i]);
		size_t lo, hi;
		ranks_of(data, BIG, v, &lo, &hi);
		cr_assert_leq(lo, hi, "%s q=%g: %u was never inserted",
		    c->name, qs[i], v);
		double want = qs[i] * BIG, slack = eps * BIG;
		double dist = want < lo ? lo - want : want > hi ? want - hi : 0;
		cr_expect_leq(dist, slack, "%s q=%g: %u has ranks %zu..%zu, "
		    "want %.0f +- %.0f", c->name, qs[i], v, lo, hi, want,
		    slack);
		if (i == 0)
			cr_expect_eq(v, data[0], "%s: q=0 is %u, minimum %u",
			    c->name, v, data[0]);
		else
			cr_expect_geq(v, prev, "%s: q=%g below q=%g",
			    c->name, qs[i], qs[i - 1]);
		prev = v;
	}
	cr_expect_eq(ckms_count(s), BIG);
	ckms_free(s);
	free(data);
}

/* O((1/eps)·ln(eps·n)) samples, with constant 2 plus one batch; measured
 * for eps = 0.01: about 500 at 10^4, 825 at 10^6, 1000 at 10^7, against
 * bounds of 971, 1892 and 2353. */
static double
sample_bound(double eps, double n)
{
	return 2.0 / eps * log(eps * n) + 1.0 / (2.0 * eps);
}

Test(ckms, samples_bounded, .timeout = 300)
{
	const double eps = 0.01;
	struct ckms *s = new_sketch(eps);
	rng_state = 12345;
	size_t checks[] = {10000, 100000, 1000000, 10000000};
	size_t next = 0, last = 0;
	for (size_t i = 1; i <= 10000000; i++) {
		ckms_insert(s, (uint32_t)(rng() >> 32));
		if (i == checks[next]) {
			size_t ns = ckms_samples(s);
			cr_expect_leq(ns, sample_bound(eps, (double)i),
			    "%zu samples after %zu values", ns, i);
			cr_expect_geq(ns, last, "sample count fell");
			last = ns;
			next++;
		}
	}
	ckms_free(s);
}

Test(ckms, samples_bounded_sorted)
{
	/* Sorted input is the usual worst case for rank-based sketches. */
	for (int dir = 0; dir < 2; dir++) {
		struct ckms *s = new_sketch(0.01);
		for (uint32_t i = 0; i < BIG; i++)
			ckms_insert(s, dir ? BIG - i : i);
		size_t ns = ckms_samples(s);
		cr_expect_leq(ns, sample_bound(0.01, BIG), "%s: %zu samples",
		    dir ? "descending" : "ascending", ns);
		ckms_free(s);
	}
}

Test(ckms, query_sees_every_value)
{
	/* Queries between inserts flush a partial buffer. */
	struct ckms *s = new_sketch(0.01);
	for (uint32_t i = 1; i <= 130; i++) {
		ckms_insert(s, 1000 - i);
		cr_expect_eq(ckms_query(s, 0), 1000 - i);
		cr_expect_eq(ckms_count(s), i);
	}
	ckms_insert(s, 5000);
	cr_expect_eq(ckms_query(s, 1), 5000);
	ckms_free(s);
}

/* ckms_free gives back every byte a sketch took, however many values it
 * saw; a NULL sketch frees nothing (and does not crash). Measured with
 * mallinfo2: the bytes in use return to where they were. */
Test(ckms, free_returns_everything_and_null_is_a_no_op)
{
#ifdef __SANITIZE_ADDRESS__
	cr_skip_test("mallinfo2 does not see ASan's allocator (LeakSanitizer "
	    "checks the same under make check)");
#endif
	struct ckms *warm = new_sketch(0.01);  /* malloc's own first-use setup */
	ckms_free(warm);
	size_t before = mallinfo2().uordblks;
	struct ckms *s = new_sketch(0.01);
	for (uint32_t i = 0; i < 100000; i++)
		ckms_insert(s, i * 2654435761u);
	cr_assert_gt(mallinfo2().uordblks, before, "the sketch took no memory?");
	ckms_free(s);
	cr_assert_eq(mallinfo2().uordblks, before, "ckms_free left %zu bytes",
	    mallinfo2().uordblks - before);
	ckms_free(NULL);
	cr_assert_eq(mallinfo2().uordblks, before);
}
