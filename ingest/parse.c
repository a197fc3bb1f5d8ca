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

size_t
parse_datagram(const char *buf, size_t len, parse_fn *fn, void *ctx)
{
	size_t bad = 0, pos = 0;

	if (len == 0)
		return 1;
	/* Each pass takes one line; a '\n' as the very last byte ends the
	 * last line rather than starting an empty one, so the loop stops at
	 * len instead of judging an empty tail. */
	while (pos < len) {
		const char *line = buf + pos, *nl;
		size_t llen;
		const char *name;
		size_t name_len;
		uint32_t value;

		nl = memchr(line, '\n', len - pos);
		llen = nl ? (size_t)(nl - line) : len - pos;
		pos += llen + (nl ? 1 : 0);
		if (parse_line(line, llen, &name, &name_len, &value) == 0)
			fn(ctx, name, name_len, value);
		else
			bad++;
	}
	return bad;
}
