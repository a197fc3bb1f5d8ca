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
