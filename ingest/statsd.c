/* statsd.c - the statsd line parser: statsd 0.9.0's rules for what a line
 * means and what is bad, in one pass over the datagram with fixed buffers
 * (statsd.h describes the rules and the two modes). */
#include "ingest/statsd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_MAX 800 /* significant digits kept: enough to round any double */

/* One step of a WHATWG UTF-8 decoder at s[0..n), n >= 1: returns the bytes
 * taken, *cp = the code point, or -1 when they are an invalid sequence
 * (its maximal subpart, which the decoder replaces with one U+FFFD). */
static size_t
u8_step(const unsigned char *s, size_t n, int32_t *cp)
{
	unsigned c = s[0], lo = 0x80, hi = 0xBF;
	size_t need;
	int32_t v;

	if (c < 0x80) {
		*cp = (int32_t)c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		need = 1;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 2;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F;
	} else {
		*cp = -1;
		return 1;
	}
	size_t i = 1;
	for (; i <= need; i++) {
		if (i >= n || s[i] < lo || s[i] > hi) {
			*cp = -1;
			return i;
		}
		v = (v << 6) | (s[i] & 0x3F);
		lo = 0x80;
		hi = 0xBF;
	}
	*cp = v;
	return i;
}

/* JavaScript's WhiteSpace and LineTerminator: what \s matches and what
 * trim() and Number() remove. */
static int
js_space(int32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 ||
	    c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
	    c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000 ||
	    c == 0xFEFF;
}

/* Trim JS blanks from both ends of s[*b..*e). */
static void
js_trim(const char *s, size_t *b, size_t *e)
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
		size_t k = u8_step(u + i, *e - i, &cp);
		if (cp >= 0 && js_space(cp)) {
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
statsd_js_number(const char *str, size_t len, double *v, int *decimal)
{
	size_t b = 0, e = len;

	*decimal = 0;
	js_trim(str, &b, &e);
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

/* Append the sanitized form of s[0..n) to out[*o..cap): blanks runs to '_',
 * '/' to '-', others outside [A-Za-z0-9_.;=-] dropped; for a tag, first its
 * first ';' becomes '_' and its first ':' '='. Returns -1 on overflow. */
static int
sanitize(char *out, size_t *o, size_t cap, const char *s, size_t n, int tag)
{
	const unsigned char *u = (const unsigned char *)s;
	int blank = 0, semi = !tag, colon = !tag;
	int32_t c;

	for (size_t i = 0; i < n; ) {
		if (u[i] < 0x80) {
			c = u[i++];
			/* the usual bytes, kept as they are */
			if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '_' || c == '.' ||
			    c == '-' || c == '=') {
				if (*o >= cap)
					return -1;
				out[(*o)++] = (char)c;
				blank = 0;
				continue;
			}
		} else {
			i += u8_step(u + i, n - i, &c);
		}
		if (c >= 0 && js_space(c)) {
			if (blank)
				continue;
			blank = 1;
			c = '_';
		} else {
			blank = 0;
			if (c == ';' && !semi)
				semi = 1, c = '_';
			else if (c == ':' && !colon)
				colon = 1, c = '=';
			else if (c == '/')
				c = '-';
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    digit((char)c) || c == '_' || c == '-' || c == '.' ||
			    c == ';' || c == '='))
				continue;
		}
		if (*o >= cap)
			return -1;
		out[(*o)++] = (char)c;
	}
	return 0;
}

static int
valid_utf8(const char *s, size_t n)
{
	int32_t c;

	for (size_t i = 0; i < n; ) {
		if ((unsigned char)s[i] < 0x80) {
			i++;
			continue;
		}
		i += u8_step((const unsigned char *)s + i, n - i, &c);
		if (c < 0)
			return 0;
	}
	return 1;
}

static const char *
find2(const char *s, size_t n, char a, char b)
{
	for (const char *p = s; p + 1 < s + n; p++) {
		p = memchr(p, a, (size_t)(s + n - p) - 1);
		if (p == NULL)
			return NULL;
		if (p[1] == b)
			return p;
	}
	return NULL;
}

static int
piece_cmp(const struct statsd_parser *p, int a, int b)
{
	size_t la = p->piece_len[a], lb = p->piece_len[b];
	int c = memcmp(p->scratch + p->piece_off[a], p->scratch + p->piece_off[b],
	    la < lb ? la : lb);
	return c ? c : (la > lb) - (la < lb);
}

/* Build p->key from the name and the tag list; fill p->tags. Returns the
 * number of tags, or -1 with *why set. */
static int
build_key(struct statsd_parser *p, const char *name, size_t nlen,
    const char *tags, size_t tlen, size_t *key_len, const char **why)
{
	size_t o = 0;
	int strict = p->mode == STATSD_STRICT;
	char *dst = strict ? p->scratch : p->key;

	*why = "key longer than 255 bytes";
	if (sanitize(dst, &o, STATSD_KEY_MAX, name, nlen, 0) < 0)
		return -1;
	for (size_t i = 0; tlen > 0 && i <= tlen; ) {
		const char *c = memchr(tags + i, ',', tlen - i);
		size_t end = c ? (size_t)(c - tags) : tlen;
		if (!strict) {
			if (o >= STATSD_KEY_MAX)
				return -1;
			dst[o++] = ';';
		} else if (o < STATSD_KEY_MAX) {
			dst[o++] = ';'; /* a separator for splitting below */
		} else {
			return -1;
		}
		if (sanitize(dst, &o, STATSD_KEY_MAX, tags + i, end - i, 1) < 0)
			return -1;
		i = end + 1;
	}
	/* Split at ';' after the name's first one: these are the tags. */
	const char *semi = memchr(dst, ';', o);
	size_t base = semi ? (size_t)(semi - dst) : o, np = 0;
	for (size_t i = base; i < o; ) {
		size_t j = i + 1;
		while (j < o && dst[j] != ';')
			j++;
		if (!strict || j > i + 1) {
			if (np == STATSD_TAGS_MAX) {
				*why = "more than 64 tags";
				return -1;
			}
			p->piece_off[np] = (uint16_t)(i + 1);
			p->piece_len[np++] = (uint16_t)(j - i - 1);
		}
		i = j;
	}
	if (!strict) {
		for (size_t k = 0; k < np; k++)
			p->tags[k] = (struct statsd_tag){ p->key + p->piece_off[k],
			    p->piece_len[k] };
		*key_len = o;
		return (int)np;
	}
	if (base == 0) {
		*why = "empty name";
		return -1;
	}
	/* Strict: the tags sorted bytewise (insertion sort of at most 64). */
	int order[STATSD_TAGS_MAX];
	for (size_t k = 0; k < np; k++) {
		size_t j = k;
		while (j > 0 && piece_cmp(p, order[j - 1], (int)k) > 0) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = (int)k;
	}
	memcpy(p->key, p->scratch, base);
	o = base;
	for (size_t k = 0; k < np; k++) {
		size_t l = p->piece_len[order[k]];
		if (o + 1 + l > STATSD_KEY_MAX)
			return -1;
		p->key[o++] = ';';
		memcpy(p->key + o, p->scratch + p->piece_off[order[k]], l);
		p->tags[k] = (struct statsd_tag){ p->key + o, l };
		o += l;
	}
	*key_len = o;
	return (int)np;
}

/* Copy a set member, U+FFFD for each invalid sequence (as statsd's decoding
 * makes it), into p->member. Returns its length or -1 when too long. */
static long
copy_member(struct statsd_parser *p, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0;
	int32_t c;

	if (n == 0) {
		s = "0";
		n = 1;
	}
	for (size_t i = 0; i < n; ) {
		size_t k = u8_step(u + i, n - i, &c);
		const char *src = s + i;
		size_t l = k;
		if (c < 0)
			src = "\xef\xbf\xbd", l = 3;
		if (o + l > STATSD_MEMBER_MAX)
			return -1;
		memcpy(p->member + o, src, l);
		o += l;
		i += k;
	}
	p->member[o] = '\0';
	return (long)o;
}

/* The type, trimmed; 0 when unknown to strict mode. */
static enum statsd_type
type_of(const char *t, size_t n, int strict)
{
	size_t b = 0, e = n;

	js_trim(t, &b, &e);
	t += b;
	n = e - b;
	if (n == 2 && t[0] == 'm' && t[1] == 's')
		return STATSD_TIMER;
	if (n == 1 && t[0] == 'g')
		return STATSD_GAUGE;
	if (n == 1 && t[0] == 's')
		return STATSD_SET;
	if (!strict)
		return STATSD_COUNTER;
	if (n == 1 && t[0] == 'c')
		return STATSD_COUNTER;
	if (n == 1 && (t[0] == 'h' || t[0] == 'd'))
		return STATSD_TIMER;
	return 0;
}

/* The sample rate field r[0..n) (with its '@'). Returns NULL and sets
 * *rate, or the reason it is bad. */
static const char *
read_rate(const char *r, size_t n, int strict, double *rate)
{
	double v;
	int dec;

	if (n < 2 || r[0] != '@')
		return "sample rate without '@' and a number";
	r++, n--;
	if (statsd_js_number(r, n, &v, &dec) < 0 || r[0] == '-')
		return "sample rate not a number";
	size_t m = 0;
	while (m < n && (digit(r[m]) || r[m] == '.'))
		m++;
	if (m == 0)
		return "sample rate statsd 0.9 cannot read";
	if (strict) {
		size_t b = 0, e = n;
		js_trim(r, &b, &e);
		if (b != 0 || e != m)
			return "sample rate not [0-9.]+";
	}
	if (statsd_js_number(r, m, &v, &dec) < 0)
		return "sample rate not a number";
	if (strict && !(v > 0 && v <= 1))
		return "sample rate not in (0, 1]";
	*rate = v;
	return NULL;
}

/* Judge one `value|type[|@rate]...` piece; fills m or returns why bad. */
static const char *
judge(struct statsd_parser *p, const char *s, size_t n, int cr,
    struct statsd_metric *m)
{
	int strict = p->mode == STATSD_STRICT;
	const char *f[4];
	size_t fl[4], nf = 0;
	double v = 0;
	int dec = 0, isnum;

	for (size_t i = 0; nf < 4; ) {
		size_t end = i;
		while (end < n && s[end] != '|')
			end++;
		f[nf] = s + i;
		fl[nf++] = end - i;
		if (end == n)
			break;
		i = end + 1;
	}
	if (nf < 2)
		return "missing type";
	if (strict && nf > 3)
		return "a field after the sample rate";
	m->rate = 1;
	if (nf > 2) {
		const char *why = read_rate(f[2], fl[2], strict, &m->rate);
		if (why)
			return why;
	}
	isnum = fl[0] > 0 && statsd_js_number(f[0], fl[0], &v, &dec) == 0;
	enum statsd_type t = type_of(f[1], fl[1], strict);
	if (t == 0)
		return "unknown type";
	if (!strict) {
		if (fl[1] == 1 && f[1][0] == 's')
			;
		else if (!isnum)
			return "value not a number";
		else if (fl[1] == 2 && memcmp(f[1], "ms", 2) == 0 && !(v >= 0))
			return "negative timer";
	} else if (t != STATSD_SET) {
		if (!isnum || !dec)
			return "value not a decimal number";
		if (fl[0] > STATSD_NUM_MAX)
			return "value longer than 64 bytes";
		if (!isfinite(v))
			return "value out of range";
		if (t == STATSD_TIMER && !(v >= 0))
			return "negative timer";
	} else if (!isnum && !(fl[1] == 1 && f[1][0] == 's' && !(cr && nf == 2))) {
		/* statsd takes any member only when the type is exactly "s"
		 * (" s" or "s\r" need a number): so does strict mode */
		return "set member not a number with a type other than \"s\"";
	}
	m->type = t;
	m->value = t == STATSD_SET ? 0 : v;
	m->delta = t == STATSD_GAUGE && (f[0][0] == '+' || f[0][0] == '-');
	m->member = NULL;
	m->member_len = 0;
	if (t == STATSD_SET) {
		long l = copy_member(p, f[0], fl[0]);
		if (l < 0)
			return "set member longer than 255 bytes";
		m->member = p->member;
		m->member_len = (size_t)l;
	}
	return NULL;
}

static void
bad(struct statsd_result *res, const char *line, size_t len, const char *why,
    uint64_t n)
{
	res->bad += n;
	if (res->bad_why == NULL) {
		res->bad_line = line;
		res->bad_len = len;
		res->bad_why = why;
	}
}

static void
parse_line(struct statsd_parser *p, const char *line, size_t len,
    statsd_metric_fn *fn, void *ctx, struct statsd_result *res)
{
	int strict = p->mode == STATSD_STRICT;
	const char *why;
	size_t n = len;

	int cr = strict && n > 0 && line[n - 1] == '\r';
	n -= (size_t)cr;
	/* One pass over the (short) line: the first "|#", the first ':' and
	 * the number of ':' before it, which is the number of metrics. */
	const char *hash = NULL, *colon = NULL;
	uint64_t pieces = 0;
	for (size_t i = 0; i < n; i++) {
		if (line[i] == ':') {
			if (pieces++ == 0)
				colon = line + i;
		} else if (line[i] == '|' && i + 1 < n && line[i + 1] == '#') {
			hash = line + i;
			break;
		}
	}
	size_t head = hash ? (size_t)(hash - line) : n;
	if (colon == NULL) {
		bad(res, line, len, "missing type", 1);
		return;
	}
	if (strict && !valid_utf8(line, n)) {
		bad(res, line, len, "not UTF-8", pieces);
		return;
	}
	const char *tags = NULL;
	size_t tlen = 0;
	if (hash) {
		tags = hash + 2;
		const char *next = find2(tags, (size_t)(line + n - tags), '|', '#');
		tlen = (size_t)((next ? next : line + n) - tags);
	}
	struct statsd_metric m;
	size_t key_len;
	int nt = build_key(p, line, (size_t)(colon - line), tags, tlen,
	    &key_len, &why);
	if (nt < 0) {
		bad(res, line, len, why, pieces);
		return;
	}
	m.key = p->key;
	m.key_len = key_len;
	m.ntags = (size_t)nt;
	m.tags = p->tags;
	const char *semi = memchr(p->key, ';', key_len);
	m.name_len = semi ? (size_t)(semi - p->key) : key_len;
	p->key[key_len] = '\0';
	const char *s = colon + 1, *end = line + head;
	for (;;) {
		const char *c = s;
		while (c < end && *c != ':')
			c++;
		const char *e = c;
		if (c == end)
			c = NULL;
		why = judge(p, s, (size_t)(e - s), cr && !hash && !c, &m);
		if (why) {
			bad(res, line, len, why, 1);
		} else {
			res->metrics++;
			fn(ctx, &m);
		}
		if (!c)
			break;
		s = c + 1;
	}
}

void
statsd_parser_init(struct statsd_parser *p, enum statsd_mode mode)
{
	memset(p, 0, sizeof(*p));
	p->mode = mode;
}

void
statsd_parse(struct statsd_parser *p, const char *buf, size_t len,
    statsd_metric_fn *fn, void *ctx, struct statsd_result *res)
{
	memset(res, 0, sizeof(*res));
	while (len > 0) {
		const char *nl = memchr(buf, '\n', len);
		size_t l = nl ? (size_t)(nl - buf) : len;
		if (l > 0) {
			res->lines++;
			parse_line(p, buf, l, fn, ctx, res);
		}
		if (!nl)
			break;
		buf += l + 1;
		len -= l + 1;
	}
}
