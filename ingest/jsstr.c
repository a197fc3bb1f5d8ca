/* jsstr.c - JavaScript's blanks and Number() over UTF-8 text, as statsd
 * 0.9 applies them to a line's fields (jsstr.h). */
#include "ingest/jsstr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_MAX 800 /* significant digits kept: enough to round any double */

void
jsstr_trim(const char *s, size_t *b, size_t *e)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = *b, end = *b;
	int32_t cp;
	int lead = 1;

	/* The usual case: ASCII non-blanks at both ends, nothing to trim. */
	if (*b < *e && u[*b] > 0x20 && u[*b] < 0x80 && u[*e - 1] > 0x20 &&
	    u[*e - 1] < 0x80)
		return;

	while (i < *e) {
		size_t k = jsstr_u8_step(u + i, *e - i, &cp);
		if (cp >= 0 && jsstr_space(cp)) {
			if (lead)
				*b = i + k;
		} else {
			lead = 0;
			end = i + k;
		}
		i += k;
	}
	*e = lead ? *b : end;
}

static int
digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Length of the decimal literal at s[0..n): [+-]? (D+ (. D*)? | . D+)
 * ([eE] [+-]? D+)?, or 0 when there is none. */
static size_t
dec_len(const char *s, size_t n)
{
	size_t i = 0, d = 0;

	if (i < n && (s[i] == '+' || s[i] == '-'))
		i++;
	while (i < n && digit(s[i]))
		i++, d++;
	if (i < n && s[i] == '.') {
		i++;
		while (i < n && digit(s[i]))
			i++, d++;
	}
	if (d == 0)
		return 0;
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		size_t j = i + 1;
		if (j < n && (s[j] == '+' || s[j] == '-'))
			j++;
		size_t k = j;
		while (k < n && digit(s[k]))
			k++;
		if (k > j)
			i = k;
	}
	return i;
}

/* The value of the decimal literal s[0..n), correctly rounded whatever its
 * length: its significant digits (at most SIG_MAX, then one sticky digit)
 * and exponent are rewritten into a bounded buffer for strtod. */
static double
dec_value(const char *s, size_t n)
{
	/* Fast path (Clinger): at most 15 digits and no exponent part make
	 * an integer m < 2^53 and a power of ten up to 1e22, both exact, so
	 * one multiplication or division rounds correctly. */
	static const double p10[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
		1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
		1e19, 1e20, 1e21, 1e22 };
	if (n <= 16) {
		uint64_t m = 0;
		int digits = 0, frac = -1, neg = s[0] == '-';
		size_t i = (s[0] == '+' || s[0] == '-');
		for (; i < n; i++) {
			if (s[i] == '.') {
				frac = 0;
			} else if (digit(s[i])) {
				m = m * 10 + (uint64_t)(s[i] - '0');
				digits++;
				frac += frac >= 0;
			} else {
				break;
			}
		}
		if (i == n && digits <= 15) {
			double v = (double)m;
			if (frac > 0)
				v /= p10[frac];
			return neg ? -v : v;
		}
	}
	char buf[SIG_MAX + 40];
	size_t i = 0, o = 2;
	long e10 = 0, ex = 0;
	int neg = 0, sig = 0, sticky = 0, point = 0;

	if (s[i] == '+' || s[i] == '-')
		neg = s[i++] == '-';
	buf[0] = '0';
	buf[1] = '.';
	for (; i < n && (digit(s[i]) || s[i] == '.'); i++) {
		if (s[i] == '.') {
			point = 1;
			continue;
		}
		if (sig == 0 && s[i] == '0') {
			if (point)
				e10--;
			continue;
		}
		if (!point)
			e10++;
		if (sig < SIG_MAX) {
			buf[o++] = s[i];
			sig++;
		} else if (s[i] != '0') {
			sticky = 1;
		}
	}
	if (i < n) { /* exponent */
		int eneg = 0;
		i++;
		if (s[i] == '+' || s[i] == '-')
			eneg = s[i++] == '-';
		for (; i < n; i++)
			if (ex < 100000000)
				ex = ex * 10 + (s[i] - '0');
		e10 += eneg ? -ex : ex;
	}
	if (sig == 0)
		return neg ? -0.0 : 0.0;
	if (sticky)
		buf[o++] = '1';
	if (e10 > 1000000)
		e10 = 1000000;
	if (e10 < -1000000)
		e10 = -1000000;
	o += (size_t)snprintf(buf + o, sizeof(buf) - o, "e%ld", e10);
	double v = strtod(buf, NULL);
	return neg ? -v : v;
}

/* The value of s[0..n), digits of radix 2^bits, correctly rounded: the
 * first 64 significant bits, the rest as a sticky bit and a scale. */
static int
radix_value(const char *s, size_t n, int bits, double *v)
{
	uint64_t m = 0;
	long e2 = 0;
	int sticky = 0;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int d;
		char c = s[i];
		if (digit(c))
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		if (d >= 1 << bits)
			return -1;
		for (int b = bits - 1; b >= 0; b--) {
			unsigned bit = (unsigned)(d >> b) & 1;
			if (m < (UINT64_C(1) << 63)) {
				m = m * 2 + bit;
			} else {
				if (e2 < 100000)
					e2++;
				sticky |= (int)bit;
			}
		}
	}
	if (sticky)
		m |= 1;
	*v = ldexp((double)m, (int)e2);
	return 0;
}

int
jsstr_number(const char *str, size_t len, double *v, int *decimal)
{
	size_t b = 0, e = len;

	*decimal = 0;
	jsstr_trim(str, &b, &e);
	const char *s = str + b;
	size_t n = e - b;
	if (n == 0) {
		*v = 0;
		return 0;
	}
	if (n >= 2 && s[0] == '0') {
		int bits = 0;
		switch (s[1]) {
		case 'x': case 'X': bits = 4; break;
		case 'o': case 'O': bits = 3; break;
		case 'b': case 'B': bits = 1; break;
		}
		if (bits)
			return radix_value(s + 2, n - 2, bits, v);
	}
	size_t sg = (s[0] == '+' || s[0] == '-');
	if (n - sg == 8 && memcmp(s + sg, "Infinity", 8) == 0) {
		*v = s[0] == '-' ? -INFINITY : INFINITY;
		return 0;
	}
	if (dec_len(s, n) != n)
		return -1;
	*v = dec_value(s, n);
	*decimal = 1;
	return 0;
}
