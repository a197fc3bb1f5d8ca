/* parse_fuzz.c - libFuzzer target for the ingest datagram parser.
 * Feeds any bytes to parse_datagram and checks every outcome against a
 * second, deliberately naive judge written from docs/design.md §9
 * (`make fuzz`). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/parse.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct expect {
	const char *buf;
	size_t len;
	size_t pos;      /* where the next line to judge starts */
	size_t accepted;
};

static int
blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The naive judge: tokenise the whole line, then compare the value as a
 * string with "4294967295" once its leading zeros are gone. Returns 1 and
 * fills the name token and value when the line must be accepted. */
static int
judge(const char *s, size_t len, const char **name, size_t *name_len,
    uint32_t *value)
{
	const char *tok[3];
	size_t tlen[3], ntok = 0, i = 0;

	if (len > 0 && s[len - 1] == '\r')
		len--;
	while (i < len) {
		if (blank(s[i])) {
			i++;
			continue;
		}
		size_t start = i;
		while (i < len && !blank(s[i]))
			i++;
		if (ntok == 3)
			return 0;
		tok[ntok] = s + start;
		tlen[ntok++] = i - start;
	}
	if (ntok != 2 || !wire_name_ok(tok[0], tlen[0]))
		return 0;
	for (size_t k = 0; k < tlen[1]; k++)
		if (tok[1][k] < '0' || tok[1][k] > '9')
			return 0;
	const char *d = tok[1];
	size_t dl = tlen[1];
	while (dl > 1 && *d == '0')
		d++, dl--;
	if (dl > 10 || (dl == 10 && memcmp(d, "4294967295", 10) > 0))
		return 0;
	char tmp[11];
	memcpy(tmp, d, dl);
	tmp[dl] = '\0';
	*name = tok[0];
	*name_len = tlen[0];
	*value = (uint32_t)strtoul(tmp, NULL, 10);
	return 1;
}

/* Find the next line the judge accepts, from e->pos on; counts the lines it
 * rejects on the way in *skipped. Returns 0 when no line is left. */
static int
next_expected(struct expect *e, size_t *skipped, const char **name,
    size_t *name_len, uint32_t *value)
{
	while (e->pos < e->len) {
		const char *line = e->buf + e->pos;
		const char *nl = memchr(line, '\n', e->len - e->pos);
		size_t l = nl ? (size_t)(nl - line) : e->len - e->pos;
		e->pos += l + (nl != NULL);
		if (judge(line, l, name, name_len, value))
			return 1;
		(*skipped)++;
	}
	return 0;
}

static size_t judged_bad;

static void
on_line(void *ctx, const char *name, size_t name_len, uint32_t value)
{
	struct expect *e = ctx;
	const char *wname;
	size_t wlen;
	uint32_t wvalue;

	if (!next_expected(e, &judged_bad, &wname, &wlen, &wvalue))
		abort(); /* accepted a line the judge rejects */
	if (name != wname || name_len != wlen || value != wvalue)
		abort();
	e->accepted++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct expect e = { (const char *)data, size, 0, 0 };
	const char *n;
	size_t nl;
	uint32_t v;

	if (size > 65535)
		return 0;
	judged_bad = 0;
	size_t bad = parse_datagram((const char *)data, size, on_line, &e);
	/* Lines after the last accepted one must all be rejected too. */
	if (next_expected(&e, &judged_bad, &n, &nl, &v))
		abort(); /* the judge accepts a line the parser rejected */
	if (size == 0)
		judged_bad = 1;
	if (bad != judged_bad)
		abort();
	return 0;
}
