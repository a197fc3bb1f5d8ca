/* parse.c - split a UDP datagram into `name value` lines and judge each one.
 * telem-ingest calls parse_datagram for every datagram it receives; accepted
 * lines become telemetry records, rejected ones are counted in `bad`. */
#include "parse.h"

#include <string.h>

#include "wire.h"

static int
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Decimal digits only, at least one; no sign. Accumulating in 64 bits and
 * stopping as soon as the value passes 2^32-1 keeps an arbitrarily long digit
 * string from wrapping around, while leading zeros never grow the value. */
static int
parse_value(const char *s, size_t len, uint32_t *value)
{
	uint64_t v = 0;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	*value = (uint32_t)v;
	return 0;
}

int
parse_line(const char *line, size_t len, const char **name,
    size_t *name_len, uint32_t *value)
{
	size_t i = 0, nstart, nend, vstart, vend;
	uint32_t v;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	while (i < len && is_blank(line[i]))
		i++;
	nstart = i;
	while (i < len && !is_blank(line[i]))
		i++;
	nend = i;
	while (i < len && is_blank(line[i]))
		i++;
	vstart = i;
	while (i < len && !is_blank(line[i]))
		i++;
	vend = i;
	while (i < len && is_blank(line[i]))
		i++;
	/* Anything left is a third field. */
	if (i != len)
		return -1;
	/* Empty or blank-only lines end up with an empty name, which fails
	 * here; control bytes, NUL, bad UTF-8 and long names fail here too. */
	if (!wire_name_ok(line + nstart, nend - nstart))
		return -1;
	if (parse_value(line + vstart, vend - vstart, &v) < 0)
		return -1;
	*name = line + nstart;
	*name_len = nend - nstart;
	*value = v;
	return 0;
}

const char *
parse_line_why(const char *line, size_t len)
{
	const char *name;
	size_t name_len, i = 0, f[3][2], nf = 0;
	uint32_t v;

	if (parse_line(line, len, &name, &name_len, &v) == 0)
		return NULL;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	/* The fields as parse_line splits them (the first three). */
	while (i < len) {
		while (i < len && is_blank(line[i]))
			i++;
		if (i == len)
			break;
		size_t start = i;
		while (i < len && !is_blank(line[i]))
			i++;
		if (nf == 3)
			return "more than two fields";
		f[nf][0] = start;
		f[nf++][1] = i - start;
	}
	if (nf == 0)
		return "empty line";
	if (nf == 1)
		return "no value";
	if (nf == 3)
		return "more than two fields";
	if (f[0][1] > WIRE_NAME_MAX)
		return "name longer than 255 bytes";
	if (!wire_name_ok(line + f[0][0], f[0][1]))
		return "name has a control byte or is not UTF-8";
	return "value is not a whole number 0..4294967295";
}

int
parse_first_bad(const char *buf, size_t len, const char **line,
    size_t *line_len, const char **why)
{
	size_t pos = 0;

	if (len == 0) {
		*line = buf;
		*line_len = 0;
		*why = "empty datagram";
		return 1;
	}
	while (pos < len) {
		const char *l = buf + pos, *nl = memchr(l, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - l) : len - pos;
		pos += llen + (nl ? 1 : 0);
		const char *w = parse_line_why(l, llen);
		if (w != NULL) {
			*line = l;
			*line_len = llen;
			*why = w;
			return 1;
		}
	}
	return 0;
}

/* The bytes a name may hold that the one-pass scan below takes without a
 * second look: printable ASCII but the space (0x21..0x7e). Any other byte
 * in a name (UTF-8, a control byte) sends the line to parse_line. */
static int
name_byte(unsigned char c)
{
	return (unsigned char)(c - 0x21) < 0x5e;
}

/* Word-at-a-time helpers for the common line "name value\n" (fast_line,
 * used on little-endian machines only, where a word's first byte in
 * memory is its lowest: the borrows and carries of wire_not_printable
 * run from lower bytes to higher ones, so its first flagged byte is a
 * true one), beside wire.h's WIRE_ONES and wire_load8.
 *
 * first_byte: the index (0..7) in memory of the first flagged byte of
 * m != 0. */
static inline unsigned
first_byte(uint64_t m)
{
	return (unsigned)__builtin_ctzll(m) >> 3;
}

/* Nonzero in each byte that is not an ASCII digit, exactly, with no
 * carry between bytes: the high nibble must be 3 and the low one below
 * 10 (the low nibble plus 6 stays within its byte). */
static inline uint64_t
not_digit(uint64_t w)
{
	uint64_t hi = (w & WIRE_ONES * 0xf0) ^ WIRE_ONES * 0x30;
	uint64_t lo = ((w & WIRE_ONES * 0x0f) + WIRE_ONES * 0x06) &
	    WIRE_ONES * 0xf0;
	return hi | lo;
}

/* The value of the n (1..7) ASCII digits at the start of little-endian
 * word w. The digits are moved to the top of the word, so that the
 * bytes below them read as leading zeros, then added up in pairs, fours
 * and the two halves: three multiplies instead of a loop whose end
 * depends on n. At most 9 999 999: no overflow anywhere. */
static inline uint32_t
digits_value(uint64_t w, unsigned n)
{
	uint64_t d = (w - WIRE_ONES * 0x30) << (8 * (8 - n));
	d = (d * 10 + (d >> 8)) & 0x00ff00ff00ff00ffULL;   /* 2-digit lanes */
	d = (d * 100 + (d >> 16)) & 0x0000ffff0000ffffULL; /* 4-digit lanes */
	return (uint32_t)((d & 0xffff) * 10000 + (d >> 32));
}

/* The common line at p, taken a word at a time: a name of name_bytes
 * (0x21..0x7e), one space, 1..7 digits and '\n', all within [p, end)
 * with room for every 8-byte load. Returns the byte after the '\n', with
 * *nend and *value set, or NULL for anything else (another shape, or too
 * near the end: the last line of a datagram has no '\n' or no room),
 * which the caller then takes byte by byte from p. Only for
 * little-endian machines (see the helpers above). */
static inline const unsigned char *
fast_line(const unsigned char *p, const unsigned char *end,
    const unsigned char **nend, uint32_t *value)
{
	const unsigned char *q = p;
	uint64_t m;
	for (;;) {
		if (end - q < 8)
			return NULL;
		if ((m = wire_not_printable(wire_load8(q))) != 0)
			break;
		q += 8;
	}
	q += first_byte(m);
	if (q == p || q - p > WIRE_NAME_MAX || end - q < 9 || *q != ' ')
		return NULL;
	uint64_t w = wire_load8(q + 1);
	uint64_t nd = not_digit(w);
	if (nd == 0)
		return NULL;
	unsigned n = first_byte(nd);
	if (n == 0 || (uint8_t)(w >> (8 * n)) != '\n')
		return NULL;
	*nend = q;
	*value = digits_value(w, n);
	return q + 2 + n;
}

/* parse_datagram and parse_encode in one: each line is judged in a single
 * pass over its bytes, the common shape (blanks, an ASCII name, blanks,
 * digits, blanks, an optional '\r', '\n' or the end) taken on the way;
 * anything else -- UTF-8 in the name, a bad line, a value past 2^32-1 --
 * is found by the same pass, and that one line is judged again by
 * parse_line from its start, so both give exactly its answers. Before
 * that pass a line is tried a word at a time (fast_line), which accepts
 * only lines the pass would accept, with the same name and value.
 * Accepted lines go to fn, or with w into w as WIRE_TELEMETRY records.
 * Returns the rejected lines, or -1 when full failed. */
static inline long
parse_any(const char *buf, size_t len, parse_fn *fn, struct wire_writer *w,
    parse_full_fn *full, void *ctx)
{
	const unsigned char *p = (const unsigned char *)buf, *end = p + len;
	long bad = 0;

	if (len == 0)
		return 1;
	while (p < end) {
		const unsigned char *line = p, *name, *nend;
		const char *lname;
		size_t nlen;
		uint32_t value;
		uint64_t v;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		const unsigned char *next = fast_line(p, end, &nend, &value);
		if (next != NULL) {
			lname = (const char *)p;
			nlen = (size_t)(nend - p);
			p = next;
			goto accept;
		}
#endif
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		name = p;
		while (p < end && name_byte(*p))
			p++;
		nend = p;
		nlen = (size_t)(nend - name);
		if (nlen == 0 || nlen > WIRE_NAME_MAX || p == end ||
		    (*p != ' ' && *p != '\t'))
			goto slow;
		do
			p++;
		while (p < end && (*p == ' ' || *p == '\t'));
		if (p == end || (unsigned)(*p - '0') > 9)
			goto slow;
		v = 0;
		do
			v = v * 10 + (unsigned)(*p++ - '0');
		while (p < end && (unsigned)(*p - '0') <= 9 && v <= UINT32_MAX);
		if (v > UINT32_MAX)
			goto slow;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p < end && *p == '\r')
			p++;
		if (p < end) {
			if (*p != '\n')
				goto slow;
			p++;
		}
		lname = (const char *)name;
		value = (uint32_t)v;
		goto accept;
	slow: {
		/* Each pass takes one line; a '\n' as the very last byte ends
		 * the last line rather than starting an empty one. */
		const unsigned char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t llen = nl ? (size_t)(nl - line) : (size_t)(end - line);
		p = line + llen + (nl ? 1 : 0);
		if (parse_line((const char *)line, llen, &lname, &nlen, &value) == -1) {
			bad++;
			continue;
		}
	}
	accept:
		if (w == NULL) {
			fn(ctx, lname, nlen, value);
		} else if (wire_put(w, WIRE_TELEMETRY, lname, nlen, value) == -1) {
			if (full(ctx, w) == -1 ||
			    wire_put(w, WIRE_TELEMETRY, lname, nlen, value) == -1)
				return -1;
		}
	}
	return bad;
}

size_t
parse_datagram(const char *buf, size_t len, parse_fn *fn, void *ctx)
{
	return (size_t)parse_any(buf, len, fn, NULL, NULL, ctx);
}

long
parse_encode(const char *buf, size_t len, struct wire_writer *w,
    parse_full_fn *full, void *ctx)
{
	return parse_any(buf, len, NULL, w, full, ctx);
}
