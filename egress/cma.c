/* cma.c - the cma egress's running mean and its printing: the shortest
 * round-trip decimal in plain notation, as Rust prints an f64 with `{}`. */
#include "egress/cma.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIGITS_MAX 17 /* every double round-trips with 17 digits */

void
cma_add(struct cma *c, uint32_t x)
{
	c->n++;
	c->mean += ((double)x - c->mean) / (double)c->n;
}

/* Does the decimal digits[0..len) × 10^exp10 read back as v? */
static int
reads_back(const char *digits, int len, int exp10, double v)
{
	char s[DIGITS_MAX + 16];
	snprintf(s, sizeof(s), "%.*se%d", len, digits, exp10);
	return strtod(s, NULL) == v;
}

/* Add one (+1 or -1) to the last of the len digits, in place. Returns 0, or
 * -1 when the result would need another digit or has a leading zero (the
 * caller then skips that candidate: it has a different digit count). */
static int
bump(char *d, int len, int dir)
{
	for (int i = len - 1; i >= 0; i--) {
		if (dir > 0 && d[i] < '9') {
			d[i]++;
			return 0;
		}
		if (dir < 0 && d[i] > '0') {
			d[i]--;
			return d[0] == '0' ? -1 : 0;
		}
		d[i] = dir > 0 ? '0' : '9';
	}
	return -1;
}

/* Is v exactly halfway between two p-digit decimals, with printf's
 * rounding having taken the lower one, digits[0..p)? A double's exact
 * decimal expansion has at most 767 significant digits and glibc prints
 * it exactly: a tie shows as digit p+1 being 5 with only zeros after it,
 * and rounding went down iff the first p digits are digits[0..p). */
static int
midpoint_below(double v, int p, const char *digits)
{
	char s[800];
	/* a cheap look first: a tie shows "5000..." in the next 24 digits */
	for (int prec = p + 23; ; prec = 780) {
		snprintf(s, sizeof(s), "%.*e", prec, v);
		const char *d = s + 2; /* s is "d.dddd...e+XX" */
		if (d[p - 1] != '5')
			return 0;
		for (d += p; *d != 'e'; d++)
			if (*d != '0')
				return 0;
		if (prec == 780)
			break;
	}
	if (s[0] != digits[0])
		return 0;
	return memcmp(s + 2, digits + 1, (size_t)(p - 1)) == 0;
}

/* The p-digit decimal nearest to v, from "%.*e"; if it does not read back,
 * its neighbour on the other side of v (the rounding interval of v is
 * lopsided at powers of two), the only other p-digit decimal that could.
 * Returns 1 with digits[0..p) and *exp10 (value = digits × 10^*exp10) when
 * one of them reads back, else 0. The digits are exactly Rust's only when
 * exact_tie is set (then ties are looked for, which costs more). */
static int
candidate(double v, int p, char *digits, int *exp10, int exact_tie)
{
	char s[DIGITS_MAX + 16];
	snprintf(s, sizeof(s), "%.*e", p - 1, v);
	/* s is "d.ddde+XX", without the '.' when p = 1 */
	int len = 0;
	const char *e = s;
	for (; *e != 'e'; e++)
		if (*e != '.')
			digits[len++] = *e;
	*exp10 = atoi(e + 1) - (p - 1);
	if (reads_back(digits, p, *exp10, v)) {
		/* On an exact tie printf rounds to even; Rust's shortest
		 * digits take the upper of the two, when it reads back. */
		char up[DIGITS_MAX + 1];
		memcpy(up, digits, (size_t)p);
		if (exact_tie && midpoint_below(v, p, digits) &&
		    bump(up, p, 1) == 0 && reads_back(up, p, *exp10, v))
			memcpy(digits, up, (size_t)p);
		return 1;
	}
	for (int dir = -1; dir <= 1; dir += 2) {
		char alt[DIGITS_MAX + 1];
		memcpy(alt, digits, (size_t)p);
		if (bump(alt, p, dir) == 0 && reads_back(alt, p, *exp10, v)) {
			memcpy(digits, alt, (size_t)p);
			return 1;
		}
	}
	return 0;
}

/* The shortest digits for a finite v > 0: the first length p with a
 * candidate gives the shortest string, and the nearest to v among those,
 * which is what Rust's Grisu/Dragon formatting picks. Having a candidate is
 * monotone in p (a p-digit one is also a (p+1)-digit one); 17 digits
 * always read back. Returns the digit count and sets *point: the value is
 * 0.d1d2... × 10^*point.
 *
 * A normal double is read back from at most one decimal of DBL_DIG (15)
 * or fewer significant digits: such a decimal comes back unchanged when
 * v is rounded to DBL_DIG digits (C11 5.2.4.2.2), so two would both be
 * that rounding; and v lies far closer to it than half the spacing of
 * 15-digit decimals, so there is no tie to settle. So when v's nearest
 * 15-digit decimal reads back, it is the answer once its trailing zeros
 * are dropped, and when it does not, the answer has 16 or 17 digits,
 * tried in turn. A subnormal v has fewer bits, and its p is found by
 * bisection from 1 to 17, as every v's was before: four to six printf
 * and strtod pairs, 5.8-8.7 µs for a mean of 16-17 digits and 3.4-5.0 µs
 * for a whole number on the project's VM, where this takes 2.2-3.6 and
 * 0.8-1.1 µs (three timing loops of 100 000 each). A report of 10 000
 * names is printed that much faster (the cma egress at 10 000 names and
 * 1M events/s, 32 lines a datagram, bench/stages.sh: 0.186-0.190 CPU-s
 * per million events against 0.232-0.258, three interleaved pairs). The
 * old and the new way gave the same string for 27 million doubles
 * (random bits, ratios, means, powers of 2 and 10 and their
 * neighbours). */
static int
shortest(double v, char *digits, int *point)
{
	int lo, exp10;
	if (v >= DBL_MIN) {
		/* no tie to look for at 15 digits: there is one candidate */
		for (lo = DBL_DIG; lo <= DIGITS_MAX; lo++)
			if (candidate(v, lo, digits, &exp10, lo > DBL_DIG))
				break;
	} else {
		char tmp[DIGITS_MAX + 1];
		int hi = DIGITS_MAX;
		lo = 1;
		while (lo < hi) {
			int mid = lo + (hi - lo) / 2;
			if (candidate(v, mid, tmp, &exp10, 0))
				hi = mid;
			else
				lo = mid + 1;
		}
		if (!candidate(v, lo, digits, &exp10, 1))
			lo = DIGITS_MAX + 1;
	}
	if (lo > DIGITS_MAX)
		return -1; /* not reached */
	*point = exp10 + lo;
	while (lo > 1 && digits[lo - 1] == '0')
		lo--; /* a candidate of 15 digits ends in zeros when shorter */
	return lo;
}

static int
put(const char *s, size_t n, char *buf, size_t cap, size_t *at)
{
	if (*at + n >= cap)
		return -1;
	memcpy(buf + *at, s, n);
	*at += n;
	return 0;
}

static int
put_zeros(long n, char *buf, size_t cap, size_t *at)
{
	for (; n > 0; n--)
		if (put("0", 1, buf, cap, at) == -1)
			return -1;
	return 0;
}

int
cma_format(double v, char *buf, size_t cap)
{
	size_t at = 0;
	char digits[DIGITS_MAX + 1];
	int len = 0, point = 0;

	if (cap == 0)
		return -1;
	if (isnan(v)) {
		if (put("NaN", 3, buf, cap, &at) == -1)
			return -1;
		buf[at] = '\0';
		return (int)at;
	}
	if (signbit(v) && put("-", 1, buf, cap, &at) == -1)
		return -1;
	v = fabs(v);
	if (isinf(v)) {
		if (put("inf", 3, buf, cap, &at) == -1)
			return -1;
	} else if (v == 0) {
		if (put("0", 1, buf, cap, &at) == -1)
			return -1;
	} else {
		len = shortest(v, digits, &point);
		if (len < 0)
			return -1;
		if (point <= 0) {
			/* 0.000ddd */
			if (put("0.", 2, buf, cap, &at) == -1 ||
			    put_zeros(-point, buf, cap, &at) == -1 ||
			    put(digits, (size_t)len, buf, cap, &at) == -1)
				return -1;
		} else if (point >= len) {
			/* ddd000 */
			if (put(digits, (size_t)len, buf, cap, &at) == -1 ||
			    put_zeros(point - len, buf, cap, &at) == -1)
				return -1;
		} else {
			/* dd.ddd */
			if (put(digits, (size_t)point, buf, cap, &at) == -1 ||
			    put(".", 1, buf, cap, &at) == -1 ||
			    put(digits + point, (size_t)(len - point), buf, cap,
			    &at) == -1)
				return -1;
		}
	}
	buf[at] = '\0';
	return (int)at;
}
