/* statsd.c - the statsd line parser: statsd 0.9.0's rules for what a line
 * means and what is bad, in one pass over the datagram with fixed buffers
 * (statsd.h describes the rules and the two modes). */
#include "ingest/statsd.h"

#include <math.h>
#include <string.h>

#include "ingest/jsstr.h"

static int
digit(char c)
{
	return c >= '0' && c <= '9';
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
			i += jsstr_u8_step(u + i, n - i, &c);
		}
		if (c >= 0 && jsstr_space(c)) {
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
		i += jsstr_u8_step((const unsigned char *)s + i, n - i, &c);
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
		size_t k = jsstr_u8_step(u + i, n - i, &c);
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

	jsstr_trim(t, &b, &e);
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
	if (jsstr_number(r, n, &v, &dec) < 0 || r[0] == '-')
		return "sample rate not a number";
	size_t m = 0;
	while (m < n && (digit(r[m]) || r[m] == '.'))
		m++;
	if (m == 0)
		return "sample rate statsd 0.9 cannot read";
	if (strict) {
		size_t b = 0, e = n;
		jsstr_trim(r, &b, &e);
		if (b != 0 || e != m)
			return "sample rate not [0-9.]+";
	}
	if (jsstr_number(r, m, &v, &dec) < 0)
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
	isnum = fl[0] > 0 && jsstr_number(f[0], fl[0], &v, &dec) == 0;
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

/* The fast path: one pass over a line that is plainly good, with no
 * work that could not change the result. Character classes: */
enum { C_NAME = 1, C_DIGIT = 2 };
static const unsigned char cls[256] = {
	['-'] = C_NAME, ['.'] = C_NAME, ['='] = C_NAME, ['_'] = C_NAME,
	['0'] = C_NAME | C_DIGIT, ['1'] = C_NAME | C_DIGIT,
	['2'] = C_NAME | C_DIGIT, ['3'] = C_NAME | C_DIGIT,
	['4'] = C_NAME | C_DIGIT, ['5'] = C_NAME | C_DIGIT,
	['6'] = C_NAME | C_DIGIT, ['7'] = C_NAME | C_DIGIT,
	['8'] = C_NAME | C_DIGIT, ['9'] = C_NAME | C_DIGIT,
	['A'] = C_NAME, ['B'] = C_NAME, ['C'] = C_NAME, ['D'] = C_NAME,
	['E'] = C_NAME, ['F'] = C_NAME, ['G'] = C_NAME, ['H'] = C_NAME,
	['I'] = C_NAME, ['J'] = C_NAME, ['K'] = C_NAME, ['L'] = C_NAME,
	['M'] = C_NAME, ['N'] = C_NAME, ['O'] = C_NAME, ['P'] = C_NAME,
	['Q'] = C_NAME, ['R'] = C_NAME, ['S'] = C_NAME, ['T'] = C_NAME,
	['U'] = C_NAME, ['V'] = C_NAME, ['W'] = C_NAME, ['X'] = C_NAME,
	['Y'] = C_NAME, ['Z'] = C_NAME,
	['a'] = C_NAME, ['b'] = C_NAME, ['c'] = C_NAME, ['d'] = C_NAME,
	['e'] = C_NAME, ['f'] = C_NAME, ['g'] = C_NAME, ['h'] = C_NAME,
	['i'] = C_NAME, ['j'] = C_NAME, ['k'] = C_NAME, ['l'] = C_NAME,
	['m'] = C_NAME, ['n'] = C_NAME, ['o'] = C_NAME, ['p'] = C_NAME,
	['q'] = C_NAME, ['r'] = C_NAME, ['s'] = C_NAME, ['t'] = C_NAME,
	['u'] = C_NAME, ['v'] = C_NAME, ['w'] = C_NAME, ['x'] = C_NAME,
	['y'] = C_NAME, ['z'] = C_NAME,
};

/* Powers of ten a double holds exactly. */
static const double p10[16] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
	1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15 };

/* A plain decimal D+ (. D*)? | . D+ of at most 15 digits at *s (< e):
 * its value, correctly rounded (the digits make an integer below 2^53
 * and the point a division by an exact power of ten: one rounding, the
 * one strtod makes), and *s past it. -1 when it is not one: no digit,
 * more than 15 digits (jsstr_number reads those). */
static inline int
fast_decimal(const unsigned char **s, const unsigned char *e, double *v)
{
	const unsigned char *q = *s;
	uint64_t m = 0;
	int nd = 0, frac = -1;

	for (; q < e; q++) {
		if (cls[*q] & C_DIGIT) {
			m = m * 10 + (uint64_t)(*q - '0');
			nd++;
			frac += frac >= 0;
		} else if (*q == '.' && frac < 0) {
			frac = 0;
		} else {
			break;
		}
	}
	if (nd == 0 || nd > 15)
		return -1;
	*v = frac > 0 ? (double)m / p10[frac] : (double)m;
	*s = q;
	return 0;
}

/* Parse the line at s (< e) when it is `name:value|type[|@rate]` with a
 * name of [A-Za-z0-9_.=-] (nothing to sanitize, no tags), a plain
 * decimal value of at most 15 digits, a type c, ms, h, d or g, a rate of
 * [0-9.]+ in (0, 1], and then '\n', "\r\n" or the end: fills m and
 * returns the line's end (at its '\n' or e). Anything else, good or bad,
 * returns NULL and is left to parse_line, which gives the same result
 * for every line this takes. */
static const char *
parse_fast(struct statsd_parser *p, const char *line, const char *end,
    struct statsd_metric *m)
{
	const unsigned char *s = (const unsigned char *)line,
	    *e = (const unsigned char *)end, *q = s;

	/* The name goes into p->key as it is read (no call to memcpy for a
	 * few bytes); a line the fast path leaves rebuilds it anyway. */
	const unsigned char *stop = e - s > STATSD_KEY_MAX ?
	    s + STATSD_KEY_MAX + 1 : e;
	char *k = p->key;
	while (q < stop && (cls[*q] & C_NAME))
		*k++ = (char)*q++;
	size_t nlen = (size_t)(q - s);
	if (nlen == 0 || nlen > STATSD_KEY_MAX || q == e || *q != ':')
		return NULL;
	*k = '\0';
	q++;
	int sign = q < e && (*q == '-' || *q == '+');
	int neg = sign && *q == '-';
	q += sign;
	double v;
	if (fast_decimal(&q, e, &v) < 0 || q == e || *q != '|')
		return NULL;
	q++;
	enum statsd_type t;
	if (q < e && *q == 'c') {
		t = STATSD_COUNTER;
		q++;
	} else if (q < e && *q == 'g') {
		t = STATSD_GAUGE;
		q++;
	} else if (q < e && (*q == 'h' || *q == 'd')) {
		t = STATSD_TIMER;
		q++;
	} else if (e - q >= 2 && q[0] == 'm' && q[1] == 's') {
		t = STATSD_TIMER;
		q += 2;
	} else {
		return NULL;
	}
	if (t == STATSD_TIMER && neg && v != 0)
		return NULL;  /* a negative timer: bad */
	double rate = 1;
	if (q < e && *q == '|') {
		if (e - q < 3 || q[1] != '@')
			return NULL;
		q += 2;
		if (fast_decimal(&q, e, &rate) < 0 || !(rate > 0 && rate <= 1))
			return NULL;
	}
	if (q < e && *q == '\r')
		q++;
	if (q < e && *q != '\n')
		return NULL;
	m->type = t;
	m->key = p->key;
	m->key_len = nlen;
	m->name_len = nlen;
	m->ntags = 0;
	m->tags = p->tags;
	m->value = neg ? -v : v;
	m->delta = t == STATSD_GAUGE && sign;
	m->rate = rate;
	m->member = NULL;
	m->member_len = 0;
	return (const char *)q;
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
	const char *end = buf + len;
	int fast = p->mode == STATSD_STRICT && !p->no_fast;
	struct statsd_metric m;

	memset(res, 0, sizeof(*res));
	while (buf < end) {
		if (*buf == '\n') {
			buf++;
			continue;
		}
		res->lines++;
		const char *q = fast ? parse_fast(p, buf, end, &m) : NULL;
		if (q != NULL) {
			res->metrics++;
			fn(ctx, &m);
		} else {
			q = memchr(buf, '\n', (size_t)(end - buf));
			if (q == NULL)
				q = end;
			parse_line(p, buf, (size_t)(q - buf), fn, ctx, res);
		}
		buf = q + (q < end);
	}
}
