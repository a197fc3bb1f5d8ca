/* test_parse.c - table-driven tests of the ingest datagram parser
 * (docs/design.md §9): a must_parse table, a must_reject table,
 * multi-line datagrams, and full-size datagrams of random bytes and of
 * valid lines. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "ingest/parse.h"
#include "wire.h"
#include "tests/rng.h"

/* A byte string with its exact length, so cases may hold NUL bytes. */
#define B(s) s, sizeof(s) - 1

struct ok_case {
	const char *in;
	size_t len;
	const char *name;
	uint32_t value;
};

struct bad_case {
	const char *in;
	size_t len;
	const char *why;
};

#define N255 \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static struct ok_case must_parse[] = {
	{ B("a 1"), "a", 1 },
	{ B("cpu.load 42"), "cpu.load", 42 },
	{ B("a\t1"), "a", 1 },
	{ B("a \t \t 7"), "a", 7 },
	{ B("   a   1   "), "a", 1 },
	{ B("\t a \t 1 \t"), "a", 1 },
	{ B("a 0"), "a", 0 },
	{ B("a 00"), "a", 0 },
	{ B("a 007"), "a", 7 },
	{ B("a 4294967295"), "a", 4294967295u },
	{ B("a 4294967294"), "a", 4294967294u },
	{ B("a 04294967295"), "a", 4294967295u },
	{ B("a 000000000000000000000000000000000000000000000000001"), "a", 1 },
	{ B("a 1\r"), "a", 1 },
	{ B("a 1 \r"), "a", 1 },
	{ B("a 1\t\r"), "a", 1 },
	{ B("123 456"), "123", 456 },
	{ B("a-b_c.d:e/f|g 9"), "a-b_c.d:e/f|g", 9 },
	{ B("~!@#$%^&*()[]{}<>\"'`,;=?\\ 3"), "~!@#$%^&*()[]{}<>\"'`,;=?\\", 3 },
	{ B("-1 2"), "-1", 2 },
	{ B("+ 5"), "+", 5 },
	{ B("temp\xc3\xa9rature 5"), "temp\xc3\xa9rature", 5 },     /* 2-byte */
	{ B("\xc2\xa1 6"), "\xc2\xa1", 6 },                            /* U+00A1 */
	{ B("\xe2\x82\xac 3"), "\xe2\x82\xac", 3 },                    /* 3-byte */
	{ B("\xef\xbf\xbd 8"), "\xef\xbf\xbd", 8 },                    /* U+FFFD */
	{ B("\xf0\x9f\x98\x80 4"), "\xf0\x9f\x98\x80", 4 },            /* 4-byte */
	{ B("\xf4\x8f\xbf\xbf 9"), "\xf4\x8f\xbf\xbf", 9 },            /* U+10FFFF */
	{ B(N255 " 2"), N255, 2 },
};

static struct bad_case must_reject[] = {
	{ B(""), "empty line" },
	{ B(" "), "space only" },
	{ B("\t \t"), "blanks only" },
	{ B("\r"), "only the final CR" },
	{ B(" \r"), "blank then CR" },
	{ B("a"), "missing value" },
	{ B("a "), "missing value, trailing blank" },
	{ B("a\r"), "missing value, CR" },
	{ B(" 1"), "value without a name" },
	{ B("a 1 2"), "three fields" },
	{ B("a 1 b"), "three fields, text" },
	{ B("a b 1"), "name with a space" },
	{ B("a -1"), "negative" },
	{ B("a -0"), "negative zero" },
	{ B("a +1"), "leading plus" },
	{ B("a 0x10"), "hex" },
	{ B("a 1f"), "hex digits" },
	{ B("a 1.5"), "decimal point" },
	{ B("a 1."), "trailing point" },
	{ B("a 1e3"), "exponent" },
	{ B("a abc"), "not a number" },
	{ B("a 1,000"), "thousands separator" },
	{ B("a 4294967296"), "2^32" },
	{ B("a 4294967300"), "overflow, last digit" },
	{ B("a 42949672950"), "overflow, 11 digits" },
	{ B("a 18446744073709551616"), "2^64, wraps a u64" },
	{ B("a 99999999999999999999999999999999999999999999999999"), "long" },
	{ B("a 0000000000000000000000000000000004294967296"), "zeros, 2^32" },
	{ B("a \xd9\xa3"), "Arabic-Indic digit" },
	{ B("a \xef\xbc\x91"), "fullwidth digit" },
	{ B("a 1\r\r"), "two CRs" },
	{ B("a\r 1"), "CR inside the name" },
	{ B("a 1\0"), "NUL after the value" },
	{ B("a\0b 1"), "NUL in the name" },
	{ B("\0 1"), "NUL name" },
	{ B("a\x01" "b 1"), "control byte in the name" },
	{ B("\x1b[31m 1"), "escape sequence" },
	{ B("a\x7f 1"), "DEL in the name" },
	{ B("a\v1"), "vertical tab is no separator" },
	{ B("a\f1"), "form feed is no separator" },
	{ B("a\xc2\xa0" "1"), "NBSP is no separator" },
	{ B("a\xc2\x85 1"), "C1 NEL in the name" },
	{ B("\xc2\x9b 1"), "C1 CSI in the name" },
	{ B("\xff 1"), "invalid byte 0xff" },
	{ B("\xfe 1"), "invalid byte 0xfe" },
	{ B("\x80 1"), "lone continuation byte" },
	{ B("\xc3 1"), "truncated 2-byte sequence" },
	{ B("\xe2\x82 1"), "truncated 3-byte sequence" },
	{ B("\xc0\xaf 1"), "overlong '/'" },
	{ B("\xe0\x80\xaf 1"), "overlong 3-byte" },
	{ B("\xf0\x80\x80\xaf 1"), "overlong 4-byte" },
	{ B("\xed\xa0\x80 1"), "surrogate U+D800" },
	{ B("\xf4\x90\x80\x80 1"), "above U+10FFFF" },
	{ B("\xf5\x80\x80\x80 1"), "lead byte 0xf5" },
	{ B("a\xe3\x80\x80" "b 1"), "ideographic space in the name" },
	{ B(N255 "a 2"), "name of 256 bytes" },
};

/* A printable copy of a case for failure messages. */
static const char *
show(const char *s, size_t len)
{
	static char out[1200];
	size_t o = 0;

	for (size_t i = 0; i < len && o + 5 < sizeof(out); i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
	}
	out[o] = '\0';
	return out;
}

/* Collects what parse_datagram accepted. */
struct seen {
	size_t n;
	const char *base;
	size_t base_len;
	struct {
		const char *name;
		size_t name_len;
		uint32_t value;
	} rec[8192];
};

static void
collect(void *ctx, const char *name, size_t name_len, uint32_t value)
{
	struct seen *s = ctx;

	/* Every name must lie inside the datagram and be a valid name. */
	cr_assert(name >= s->base && name + name_len <= s->base + s->base_len);
	cr_assert(wire_name_ok(name, name_len));
	cr_assert_lt(s->n, sizeof(s->rec) / sizeof(s->rec[0]));
	s->rec[s->n].name = name;
	s->rec[s->n].name_len = name_len;
	s->rec[s->n].value = value;
	s->n++;
}

static struct seen seen;

static size_t
run(const char *buf, size_t len)
{
	memset(&seen, 0, sizeof(seen));
	seen.base = buf;
	seen.base_len = len;
	return parse_datagram(buf, len, collect, &seen);
}

/* Criterion runs each parameter in a fresh process image where the static
 * strings may sit elsewhere (PIE), so the tables are handed over as copies
 * in Criterion's shared memory, pointers included. */
static char *
shared_dup(const char *s, size_t len)
{
	char *p = cr_malloc(len + 1);

	cr_assert_not_null(p);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

#define NOK (sizeof(must_parse) / sizeof(must_parse[0]))
#define NBAD (sizeof(must_reject) / sizeof(must_reject[0]))

static void
free_ok(struct criterion_test_params *p)
{
	struct ok_case *c = p->params;

	for (size_t i = 0; i < p->length; i++) {
		cr_free((void *)c[i].in);
		cr_free((void *)c[i].name);
	}
	cr_free(c);
}

static void
free_bad(struct criterion_test_params *p)
{
	struct bad_case *c = p->params;

	for (size_t i = 0; i < p->length; i++) {
		cr_free((void *)c[i].in);
		cr_free((void *)c[i].why);
	}
	cr_free(c);
}

ParameterizedTestParameters(parse, must_parse)
{
	struct ok_case *c = cr_malloc(sizeof(must_parse));

	for (size_t i = 0; i < NOK; i++) {
		c[i] = must_parse[i];
		c[i].in = shared_dup(must_parse[i].in, must_parse[i].len);
		c[i].name = shared_dup(must_parse[i].name,
		    strlen(must_parse[i].name));
	}
	return cr_make_param_array(struct ok_case, c, NOK, free_ok);
}

ParameterizedTest(struct ok_case *c, parse, must_parse)
{
	const char *name = NULL;
	size_t name_len = 0;
	uint32_t value = 0;
	char buf[512];

	cr_assert_eq(parse_line(c->in, c->len, &name, &name_len, &value), 0,
	    "rejected: \"%s\"", show(c->in, c->len));
	cr_expect_eq(name_len, strlen(c->name), "\"%s\"", show(c->in, c->len));
	cr_expect_eq(memcmp(name, c->name, name_len), 0);
	cr_expect(name >= c->in && name + name_len <= c->in + c->len);
	cr_expect_eq(value, c->value, "\"%s\": %u", show(c->in, c->len), value);

	/* The same line as a datagram, bare and with each line ending (a line
	 * that already ends in '\r' would get a second one from "\r\n"). */
	static const char *const ends[] = { "", "\n", "\r\n" };
	size_t nends = c->in[c->len - 1] == '\r' ? 2 : 3;
	for (size_t e = 0; e < nends; e++) {
		cr_assert_lt(c->len + 2, sizeof(buf));
		memcpy(buf, c->in, c->len);
		memcpy(buf + c->len, ends[e], strlen(ends[e]));
		size_t len = c->len + strlen(ends[e]);
		cr_expect_eq(run(buf, len), 0, "\"%s\"", show(buf, len));
		cr_expect_eq(seen.n, 1, "\"%s\"", show(buf, len));
		cr_expect_eq(seen.rec[0].value, c->value);
		cr_expect_eq(seen.rec[0].name_len, strlen(c->name));
	}
}

ParameterizedTestParameters(parse, must_reject)
{
	struct bad_case *c = cr_malloc(sizeof(must_reject));

	for (size_t i = 0; i < NBAD; i++) {
		c[i] = must_reject[i];
		c[i].in = shared_dup(must_reject[i].in, must_reject[i].len);
		c[i].why = shared_dup(must_reject[i].why,
		    strlen(must_reject[i].why));
	}
	return cr_make_param_array(struct bad_case, c, NBAD, free_bad);
}

ParameterizedTest(struct bad_case *c, parse, must_reject)
{
	const char *name = (const char *)&seen;
	size_t name_len = 77;
	uint32_t value = 99;

	cr_expect_eq(parse_line(c->in, c->len, &name, &name_len, &value), -1,
	    "%s accepted: \"%s\"", c->why, show(c->in, c->len));
	/* A rejected line leaves the outputs alone. */
	cr_expect_eq(name, (const char *)&seen);
	cr_expect_eq(name_len, 77);
	cr_expect_eq(value, 99);
	/* As a datagram of its own: one rejected line, nothing accepted. */
	cr_expect_eq(run(c->in, c->len), 1, "%s", c->why);
	cr_expect_eq(seen.n, 0, "%s", c->why);
	/* And the log can say why, and which line. */
	cr_expect_not_null(parse_line_why(c->in, c->len), "%s", c->why);
	const char *line = NULL, *why = NULL;
	size_t len = 99;
	cr_expect_eq(parse_first_bad(c->in, c->len, &line, &len, &why), 1);
	cr_expect_eq(line, c->in);
	cr_expect_not_null(why);
}

/* What the log says about a bad line: the reason parse_line_why gives. */
Test(parse, why_a_line_is_rejected)
{
	static const struct { const char *in, *why; } t[] = {
		{ "", "empty line" },
		{ " \t ", "empty line" },
		{ "abc", "no value" },
		{ "a 1 2", "more than two fields" },
		{ "a 1 2 3", "more than two fields" },
		{ "a\x01b 1", "name has a control byte or is not UTF-8" },
		{ "a\xff 1", "name has a control byte or is not UTF-8" },
		{ "a -1", "value is not a whole number 0..4294967295" },
		{ "a 4294967296", "value is not a whole number 0..4294967295" },
		{ "a 1.5", "value is not a whole number 0..4294967295" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *w = parse_line_why(t[i].in, strlen(t[i].in));
		cr_expect(w != NULL && strcmp(w, t[i].why) == 0, "\"%s\": %s, not %s",
		    t[i].in, w ? w : "(accepted)", t[i].why);
	}
	char longname[300];
	memset(longname, 'n', 256);
	memcpy(longname + 256, " 1", 3);
	cr_expect_str_eq(parse_line_why(longname, strlen(longname)),
	    "name longer than 255 bytes");
	cr_expect_null(parse_line_why("a 1\r", 4));
}

Test(parse, first_bad_line_of_a_datagram)
{
	const char *d = "a 1\nb 2\nc\nd x\n", *line, *why;
	size_t len;
	cr_assert_eq(parse_first_bad(d, strlen(d), &line, &len, &why), 1);
	cr_expect_eq(line, d + 8);
	cr_expect_eq(len, 1);
	cr_expect_str_eq(why, "no value");
	cr_expect_eq(parse_first_bad("a 1\n", 4, &line, &len, &why), 0);
	cr_expect_eq(parse_first_bad("", 0, &line, &len, &why), 1);
	cr_expect_str_eq(why, "empty datagram");
}

/* The escaped, cut form a bad line takes in the log (common/log.c). */
Test(parse, log_escape_makes_a_line_safe_and_short)
{
	char buf[256];
	cr_expect_str_eq(log_escape(buf, sizeof(buf), "a\x01\"\\\n\t\xff z", 9, 60),
	    "a\\x01\\\"\\\\\\n\\t\\xff z");
	char big[100];
	memset(big, 'x', sizeof(big));
	log_escape(buf, sizeof(buf), big, sizeof(big), 60);
	cr_expect_eq(strlen(buf), 63, "%s", buf);
	cr_expect_str_eq(buf + 60, "...");
	/* A small buffer is never overrun and always terminated. */
	char small[8];
	log_escape(small, sizeof(small), big, sizeof(big), 60);
	cr_expect_lt(strlen(small), sizeof(small));
	cr_expect_str_eq(log_more(buf, sizeof(buf), 0, "x"), "");
	cr_expect_str_eq(log_more(buf, sizeof(buf), 3, "in the last second"),
	    " (3 more in the last second)");
}

Test(parse, at_least_40_cases)
{
	cr_assert_geq(NOK + NBAD, 40);
}

/* Multi-line datagrams: how many accepted and rejected, and in which order. */
struct multi_case {
	const char *in;
	size_t len;
	size_t bad;
	size_t nok;
	const char *names[4];
	uint32_t values[4];
};

static struct multi_case multi[] = {
	{ B(""), 1, 0, { 0 }, { 0 } },
	{ B("\n"), 1, 0, { 0 }, { 0 } },
	{ B("\r\n"), 1, 0, { 0 }, { 0 } },
	{ B("\n\n"), 2, 0, { 0 }, { 0 } },
	{ B("a 1\nb 2\nc 3"), 0, 3, { "a", "b", "c" }, { 1, 2, 3 } },
	{ B("a 1\nb 2\nc 3\n"), 0, 3, { "a", "b", "c" }, { 1, 2, 3 } },
	{ B("a 1\r\nb 2\r\n"), 0, 2, { "a", "b" }, { 1, 2 } },
	{ B("a 1\r\nb 2"), 0, 2, { "a", "b" }, { 1, 2 } },
	{ B("a 1\n\nb 2"), 1, 2, { "a", "b" }, { 1, 2 } },
	{ B("a 1\n\n"), 1, 1, { "a" }, { 1 } },
	{ B("a 1\r\n\r\n"), 1, 1, { "a" }, { 1 } },
	{ B("\na 1"), 1, 1, { "a" }, { 1 } },
	{ B("a 1\nbad\nb -2\nc 3"), 2, 2, { "a", "c" }, { 1, 3 } },
	{ B("x 1 2\ny 4294967296\nz +3\n"), 3, 0, { 0 }, { 0 } },
	{ B("a\0 1\nb 2"), 1, 1, { "b" }, { 2 } },
	{ B("b 2\n\xff 1\n \t \nc 04"), 2, 2, { "b", "c" }, { 2, 4 } },
	{ B("a 1\rb 2"), 1, 0, { 0 }, { 0 } },
	{ B("a 1\n\n\n"), 2, 1, { "a" }, { 1 } },
	{ B("a 1\nb 2\r"), 0, 2, { "a", "b" }, { 1, 2 } },
	{ B("q 5\nq 5\nq 6"), 0, 3, { "q", "q", "q" }, { 5, 5, 6 } },
};

Test(parse, multi_line)
{
	for (size_t i = 0; i < sizeof(multi) / sizeof(multi[0]); i++) {
		struct multi_case *c = &multi[i];
		size_t bad = run(c->in, c->len);

		cr_expect_eq(bad, c->bad, "\"%s\": %zu bad", show(c->in, c->len),
		    bad);
		cr_expect_eq(seen.n, c->nok, "\"%s\": %zu accepted",
		    show(c->in, c->len), seen.n);
		for (size_t k = 0; k < c->nok && k < seen.n; k++) {
			cr_expect_eq(seen.rec[k].name_len, strlen(c->names[k]));
			cr_expect_eq(memcmp(seen.rec[k].name, c->names[k],
			    seen.rec[k].name_len), 0, "case %zu rec %zu", i, k);
			cr_expect_eq(seen.rec[k].value, c->values[k]);
		}
	}
}

/* Lines in a datagram: one per '\n', plus one unless the last byte is '\n';
 * an empty datagram is one (empty) line. */
static size_t
lines_in(const char *buf, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += buf[i] == '\n';
	if (len == 0 || buf[len - 1] != '\n')
		n++;
	return n;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t
next_rand(void)
{
	xorshift64(&rng);
	return (uint32_t)(rng >> 32);
}

#define DGRAM_MAX 65507
static char dgram[DGRAM_MAX];

Test(parse, random_bytes_full_datagram)
{
	/* Any bytes at all; then only bytes that make lines, so that some
	 * lines pass and the checks in collect() get exercised. */
	static const char alpha[] = "ab1 0\t9\n\r-+\xc3\xa9\xff\x00x.";
	for (int round = 0; round < 40; round++) {
		for (size_t i = 0; i < DGRAM_MAX; i++) {
			uint32_t r = next_rand();
			dgram[i] = round % 2 ? (char)r
			    : alpha[r % (sizeof(alpha) - 1)];
		}
		size_t bad = run(dgram, DGRAM_MAX);
		cr_expect_eq(bad + seen.n, lines_in(dgram, DGRAM_MAX),
		    "round %d: %zu bad + %zu ok", round, bad, seen.n);
		if (round % 2 == 0)
			cr_expect_gt(seen.n, 0, "round %d", round);
	}
	/* Every length 0..64 of random bytes, as a whole datagram. */
	for (size_t len = 0; len <= 64; len++) {
		for (size_t i = 0; i < len; i++)
			dgram[i] = (char)next_rand();
		size_t bad = run(dgram, len);
		cr_expect_eq(bad + seen.n, lines_in(dgram, len));
	}
}

Test(parse, valid_lines_full_datagram)
{
	size_t len = 0, n = 0;

	/* Lines "m<n> <n*7>\n" until the next one would not fit; the last
	 * line is padded with trailing blanks to make exactly 65 507 bytes. */
	for (;;) {
		char line[64];
		int l = snprintf(line, sizeof(line), "m%zu %zu\n", n,
		    (n * 7) % 4294967296u);
		if (len + (size_t)l > DGRAM_MAX)
			break;
		memcpy(dgram + len, line, (size_t)l);
		len += (size_t)l;
		n++;
	}
	cr_assert_gt(len, 0);
	len--; /* drop the final '\n', pad, then put it back */
	for (; len < DGRAM_MAX - 1; len++)
		dgram[len] = (len % 2) ? ' ' : '\t';
	dgram[len++] = '\n';
	cr_assert_eq(len, DGRAM_MAX);

	cr_expect_eq(run(dgram, len), 0);
	cr_assert_eq(seen.n, n);
	for (size_t i = 0; i < n; i++) {
		char want[32];
		int l = snprintf(want, sizeof(want), "m%zu", i);
		cr_assert_eq(seen.rec[i].name_len, (size_t)l, "line %zu", i);
		cr_assert_eq(memcmp(seen.rec[i].name, want, (size_t)l), 0);
		cr_assert_eq(seen.rec[i].value, (uint32_t)(i * 7));
	}
}

Test(parse, every_single_byte_as_name)
{
	for (unsigned b = 0; b < 256; b++) {
		char line[3] = { (char)b, ' ', '1' };
		const char *name = NULL;
		size_t name_len = 0;
		uint32_t value = 0;
		int want = b > 0x20 && b < 0x7f ? 0 : -1;

		cr_expect_eq(parse_line(line, 3, &name, &name_len, &value),
		    want, "byte 0x%02x", b);
		if (want == 0) {
			cr_expect_eq(name, line);
			cr_expect_eq(name_len, 1);
			cr_expect_eq(value, 1);
		}
		/* As a datagram: a '\n' splits it into "" and " 1", two
		 * rejected lines; any other byte is one line. */
		size_t bad = run(line, 3);
		if (b == '\n') {
			cr_expect_eq(bad, 2);
		} else {
			cr_expect_eq(bad, want == 0 ? 0 : 1, "byte 0x%02x", b);
			cr_expect_eq(seen.n, want == 0 ? 1 : 0, "byte 0x%02x", b);
		}
	}
}

/* The reference for the one-pass parser: the datagram split at '\n' as
 * docs/design.md §9 says, each line judged by parse_line on its own, each
 * accepted line encoded by wire_put. Returns the rejected lines; the
 * records go to out[0..*out_len). */
static size_t
reference_records(const char *buf, size_t len, unsigned char *out,
    size_t *out_len)
{
	size_t bad = 0, pos = 0, o = 0;
	if (len == 0) {
		*out_len = 0;
		return 1;
	}
	while (pos < len) {
		const char *l = buf + pos, *nl = memchr(l, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - l) : len - pos;
		const char *name;
		size_t name_len;
		uint32_t value;
		pos += llen + (nl ? 1 : 0);
		if (parse_line(l, llen, &name, &name_len, &value) == -1) {
			bad++;
			continue;
		}
		unsigned char one[WIRE_HDR + WIRE_REC_HDR + WIRE_NAME_MAX];
		struct wire_writer w;
		wire_writer_init(&w, one, sizeof(one));
		cr_assert_eq(wire_put(&w, WIRE_TELEMETRY, name, name_len, value), 0);
		memcpy(out + o, one + WIRE_HDR, w.len - WIRE_HDR);
		o += w.len - WIRE_HDR;
	}
	*out_len = o;
	return bad;
}

/* parse_encode's writer: a small one (so that it fills and `full` runs
 * often), whose records are moved into `got` each time it is full. */
struct enc {
	unsigned char *got;
	size_t got_len;
	size_t fulls;
	int fail;
};

static int
enc_full(void *ctx, struct wire_writer *w)
{
	struct enc *e = ctx;
	e->fulls++;
	if (e->fail)
		return -1;
	memcpy(e->got + e->got_len, w->buf + WIRE_HDR, w->len - WIRE_HDR);
	e->got_len += w->len - WIRE_HDR;
	wire_writer_reset(w);
	return 0;
}

static unsigned char ref_out[DGRAM_MAX * 4], enc_out[DGRAM_MAX * 4];

/* parse_encode (and parse_datagram, the same scan) against the reference,
 * record for record and byte for byte, through a writer of cap bytes. */
static void
same_as_reference(const char *buf, size_t len, size_t cap)
{
	size_t ref_len;
	size_t want_bad = reference_records(buf, len, ref_out, &ref_len);
	unsigned char wbuf[1024];
	struct wire_writer w;
	struct enc e = { enc_out, 0, 0, 0 };
	/* The records start after the header (WIRE_HDR). */
	wire_writer_init(&w, wbuf, cap);
	size_t start = WIRE_HDR;
	long bad = parse_encode(buf, len, &w, enc_full, &e);
	cr_assert_eq(bad, (long)want_bad, "len %zu: %ld bad, want %zu", len, bad,
	    want_bad);
	memcpy(e.got + e.got_len, w.buf + start, w.len - start);
	e.got_len += w.len - start;
	cr_assert_eq(e.got_len, ref_len, "len %zu", len);
	cr_assert(memcmp(e.got, ref_out, ref_len) == 0, "len %zu: records differ",
	    len);
	cr_assert_eq(run(buf, len), want_bad);
}

Test(parse, one_pass_encoding_is_the_reference_byte_for_byte)
{
	/* Bytes that make lines of every shape: names with UTF-8 (good and
	 * bad), controls, '\r' anywhere, blanks, long digit strings. */
	static const char alpha[] = "ab1 0\t9\n\r\xc3\xa9\x85\xc2\xff\x00\x7fx.~!2345678";
	for (int round = 0; round < 200; round++) {
		size_t len = round < 100 ? (size_t)round * 40 :
		    (size_t)DGRAM_MAX / (size_t)(round - 98);
		for (size_t i = 0; i < len; i++) {
			uint32_t r = next_rand();
			dgram[i] = round % 5 == 4 ? (char)r : alpha[r % (sizeof(alpha) - 1)];
		}
		same_as_reference(dgram, len, round % 3 ? 1024 : WIRE_HDR + 300);
	}
	/* Every case of the tables, alone, with "\n" and with "\r\n". */
	for (size_t i = 0; i < NOK + NBAD; i++) {
		const char *in = i < NOK ? must_parse[i].in : must_reject[i - NOK].in;
		size_t len = i < NOK ? must_parse[i].len : must_reject[i - NOK].len;
		char line[600];
		cr_assert_lt(len + 2, sizeof(line));
		memcpy(line, in, len);
		same_as_reference(line, len, 1024);
		memcpy(line + len, "\n", 1);
		same_as_reference(line, len + 1, 1024);
		memcpy(line + len, "\r\n", 2);
		same_as_reference(line, len + 2, 1024);
	}
	/* Values around 2^32 and long zero runs. */
	static const char *const vals[] = { "4294967295", "4294967296",
	    "04294967295", "99999999999", "00000000000000000000001", "0",
	    "42949672950", "18446744073709551616" };
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		char line[64];
		int l = snprintf(line, sizeof(line), "n %s\r\nn\t%s \n", vals[i], vals[i]);
		same_as_reference(line, (size_t)l, 1024);
	}
}

/* The common line ("name value\n", one space) is taken eight bytes at a
 * time where the datagram leaves room for the loads (ingest/parse.c,
 * fast_line): every name length around a word, every value length around
 * the seven digits it takes, each line at every distance from the
 * datagram's end, and every byte next to a range the word masks test
 * (name bytes 0x21..0x7e, digits 0x30..0x39) in every position. */
Test(parse, word_at_a_time_lines_are_the_reference)
{
	static const char *const vals[] = { "7", "42", "100", "0042", "99999",
	    "123456", "9999999", "0000000", "12345678", "4294967295" };
	char buf[512];
	for (size_t nl = 1; nl <= 20; nl++) {
		for (size_t vi = 0; vi < sizeof(vals) / sizeof(vals[0]); vi++) {
			size_t len = 0;
			for (int k = 0; k < 3; k++) {
				for (size_t i = 0; i < nl; i++)
					buf[len++] = (char)('a' + (i + (size_t)k) % 26);
				len += (size_t)sprintf(buf + len, " %s\n", vals[vi]);
			}
			/* the lines with 0..24 more bytes after them */
			for (size_t tail = 0; tail <= 24; tail++) {
				memset(buf + len, tail % 2 ? '5' : 'x', tail);
				same_as_reference(buf, len + tail, 1024);
			}
		}
	}
	static const unsigned char edge[] = { 0x00, '\t', '\n', '\r', 0x20,
	    0x21, 0x2f, 0x30, 0x39, 0x3a, 0x7e, 0x7f, 0x80, 0xc3, 0xff };
	static const char line[] = "abcdefghijk 1234567\n";
	const size_t ll = sizeof(line) - 1;
	for (size_t e = 0; e < sizeof(edge); e++) {
		for (size_t at = 0; at < ll; at++) {
			size_t len = 0;
			for (int k = 0; k < 4; k++) {
				memcpy(buf + len, line, ll);
				if (k == 1)
					buf[len + at] = (char)edge[e];
				len += ll;
			}
			same_as_reference(buf, len, 1024);
			same_as_reference(buf + 1, len - 1, 1024);
		}
	}
}

Test(parse, one_pass_encoding_fills_the_writer_and_gives_up_when_told)
{
	char buf[4096];
	size_t len = 0;
	for (int i = 0; i < 200; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "name.%03d %d\n", i, i);
	unsigned char wbuf[WIRE_HDR + 100];
	struct wire_writer w;
	struct enc e = { enc_out, 0, 0, 0 };
	wire_writer_init(&w, wbuf, sizeof(wbuf));
	cr_assert_eq(parse_encode(buf, len, &w, enc_full, &e), 0);
	/* 100 bytes take 7 records of 14 bytes: 200 records fill it 28
	 * times, and 4 are left in it. */
	cr_assert_eq(e.fulls, 28);
	cr_assert_eq(w.count, 4);
	cr_assert_eq(e.got_len, 28 * 7 * 14);
	same_as_reference(buf, len, sizeof(wbuf));
	/* A `full` that fails stops the parse with -1. */
	e = (struct enc){ enc_out, 0, 0, 1 };
	wire_writer_init(&w, wbuf, sizeof(wbuf));
	cr_assert_eq(parse_encode(buf, len, &w, enc_full, &e), -1);
	cr_assert_eq(e.fulls, 1);
}
