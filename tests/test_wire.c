/* test_wire.c - unit tests of the inter-stage message format
 * (docs/design.md §5): round trips, a full 8192-byte batch, truncated
 * and lying messages, and a table of names for wire_name_ok. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "egress/report_rec.h"
#include "wire.h"

#define B(s) s, sizeof(s) - 1
#define MSG 8192

static unsigned char buf[WIRE_MSG_MAX];

struct rec {
	uint8_t type;
	const char *name;
	size_t name_len;
	uint32_t value;
};

/* Encode recs into buf; returns the message length. */
static size_t
encode(const struct rec *r, size_t n)
{
	struct wire_writer w;

	wire_writer_init(&w, buf, sizeof(buf));
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(wire_put(&w, r[i].type, r[i].name, r[i].name_len,
		    r[i].value), 0, "record %zu", i);
	return wire_finish(&w);
}

/* Read msg back and compare with recs. */
static void
expect_records(const void *msg, const struct rec *r, size_t n)
{
	struct wire_reader rd;
	struct wire_rec got;
	size_t i = 0;

	wire_reader_init(&rd, msg);
	while (wire_next(&rd, &got)) {
		cr_assert_lt(i, n, "more records than written");
		cr_expect_eq(got.type, r[i].type, "record %zu", i);
		cr_expect_eq(got.name_len, r[i].name_len, "record %zu", i);
		cr_expect_eq(got.value, r[i].value, "record %zu", i);
		if (r[i].name_len > 0)
			cr_expect_eq(memcmp(got.name, r[i].name, r[i].name_len),
			    0, "record %zu", i);
		i++;
	}
	cr_expect_eq(i, n);
	cr_expect_eq(wire_next(&rd, &got), 0, "reader restarts after the end");
}

static char n255[256], n256[257];

static void
fill_names(void)
{
	memset(n255, 'x', 255);
	memset(n256, 'y', 256);
}

Test(wire, round_trip, .init = fill_names)
{
	const struct rec r[] = {
		{ WIRE_TELEMETRY, B("a"), 1 },
		{ WIRE_TELEMETRY, B("cpu.load"), 4294967295u },
		{ WIRE_TELEMETRY, B("temp\xc3\xa9rature"), 0 },
		{ WIRE_FLUSH, NULL, 0, 0 },
		{ WIRE_TELEMETRY, n255, 255, 123456789 },
		{ WIRE_TELEMETRY, B("\xf0\x9f\x98\x80"), 7 },
		{ WIRE_STOP, NULL, 0, 0 },
	};
	size_t n = sizeof(r) / sizeof(r[0]);
	size_t len = encode(r, n);
	size_t want = WIRE_HDR;

	for (size_t i = 0; i < n; i++)
		want += WIRE_REC_HDR + r[i].name_len;
	cr_assert_eq(len, want);
	cr_assert_eq(wire_check(buf, len), (long)n);
	expect_records(buf, r, n);

	/* The header, in host byte order: no origin unless one is set. */
	uint16_t version;
	uint32_t count;
	uint64_t seq;
	memcpy(&version, buf, 2);
	memcpy(&count, buf + 4, 4);
	memcpy(&seq, buf + 8, 8);
	cr_expect_eq(version, WIRE_VERSION);
	cr_expect_eq(buf[2], WIRE_SRC_NONE);
	cr_expect_eq(buf[3], 0);
	cr_expect_eq(count, n);
	cr_expect_eq(seq, 0);
}

Test(wire, origin_round_trip)
{
	struct wire_writer w;
	uint8_t src;
	uint64_t seq;
	wire_writer_init(&w, buf, sizeof(buf));
	w.src = 3;
	w.seq = 0x0123456789abcdefULL;
	cr_assert_eq(wire_put(&w, WIRE_TELEMETRY, "a", 1, 1), 0);
	size_t len = wire_finish(&w);
	cr_assert_eq(len, 16 + WIRE_REC_HDR + 1);
	cr_assert_eq(wire_check(buf, len), 1);
	wire_origin(buf, &src, &seq);
	cr_expect_eq(src, 3);
	cr_expect_eq(seq, 0x0123456789abcdefULL);
	/* Reset keeps the origin: the caller moves seq on per message. */
	wire_writer_reset(&w);
	w.seq += 1;
	len = wire_finish(&w);
	cr_assert_eq(wire_check(buf, len), 0);
	wire_origin(buf, &src, &seq);
	cr_expect_eq(src, 3);
	cr_expect_eq(seq, 0x0123456789abcdf0ULL);
	/* Every src byte is well-formed; whether it names a writer is the
	 * reader's business (common/stage.c). */
	buf[2] = 0x7f;
	cr_expect_eq(wire_check(buf, len), 0);
}

Test(wire, single_records)
{
	const struct rec r[] = {
		{ WIRE_TELEMETRY, B("m"), 42 },
		{ WIRE_FLUSH, NULL, 0, 0 },
		{ WIRE_STOP, NULL, 0, 0 },
	};
	for (size_t i = 0; i < 3; i++) {
		size_t len = encode(&r[i], 1);
		cr_expect_eq(len, WIRE_HDR + WIRE_REC_HDR + r[i].name_len);
		cr_expect_eq(wire_check(buf, len), 1);
		expect_records(buf, &r[i], 1);
	}
}

Test(wire, empty_message)
{
	size_t len = encode(NULL, 0);
	struct wire_reader rd;
	struct wire_rec got;

	cr_assert_eq(len, WIRE_HDR);
	cr_expect_eq(wire_check(buf, len), 0);
	wire_reader_init(&rd, buf);
	cr_expect_eq(wire_next(&rd, &got), 0);
}

Test(wire, unaligned_message)
{
	const struct rec r[] = { { WIRE_TELEMETRY, B("abc"), 0x01020304 } };
	size_t len = encode(r, 1);
	static unsigned char odd[64];

	memcpy(odd + 1, buf, len);
	cr_expect_eq(wire_check(odd + 1, len), 1);
	expect_records(odd + 1, r, 1);
}

Test(wire, put_refuses_long_name, .init = fill_names)
{
	struct wire_writer w;

	wire_writer_init(&w, buf, MSG);
	cr_expect_eq(wire_put(&w, WIRE_TELEMETRY, n256, 256, 1), -1);
	cr_expect_eq(w.len, WIRE_HDR);
	cr_expect_eq(w.count, 0);
	cr_expect_eq(wire_put(&w, WIRE_TELEMETRY, n255, 255, 1), 0);
}

/* Fill an 8192-byte message until wire_put refuses, then read it all back.
 * Names of every length 1..255 in turn, so the end falls on odd sizes. */
static void
full_batch(size_t first_len)
{
	static unsigned char msg[MSG];
	static char names[MSG][WIRE_NAME_MAX];
	static struct rec r[MSG];
	struct wire_writer w;
	size_t n = 0;

	wire_writer_init(&w, msg, sizeof(msg));
	for (;;) {
		size_t nl = (first_len + n) % WIRE_NAME_MAX + 1;
		size_t before_len = w.len;
		uint32_t before_count = w.count;

		for (size_t k = 0; k < nl; k++)
			names[n][k] = (char)('a' + (n + k) % 26);
		r[n] = (struct rec){ WIRE_TELEMETRY, names[n], nl,
		    (uint32_t)(n * 2654435761u) };
		if (n % 17 == 16) /* a flush now and then */
			r[n] = (struct rec){ WIRE_FLUSH, NULL, 0, 0 };
		if (wire_put(&w, r[n].type, r[n].name, r[n].name_len,
		    r[n].value) == -1) {
			/* Refused only when it truly does not fit, and
			 * nothing was written. */
			cr_assert_gt(before_len + WIRE_REC_HDR + r[n].name_len,
			    sizeof(msg));
			cr_assert_eq(w.len, before_len);
			cr_assert_eq(w.count, before_count);
			break;
		}
		n++;
	}
	size_t len = wire_finish(&w);
	cr_assert_leq(len, sizeof(msg));
	cr_assert_gt(n, 0);
	cr_assert_eq(wire_check(msg, len), (long)n, "first_len %zu", first_len);
	expect_records(msg, r, n);

	/* Reset and reuse: the writer starts over. */
	wire_writer_reset(&w);
	cr_assert_eq(wire_put(&w, WIRE_STOP, NULL, 0, 0), 0);
	len = wire_finish(&w);
	cr_assert_eq(wire_check(msg, len), 1);
}

Test(wire, full_batch)
{
	for (size_t first = 0; first < WIRE_NAME_MAX; first += 7)
		full_batch(first);
}

Test(wire, exact_fit)
{
	/* 8192 = 16 + 511 * (6 + 10): fits exactly; one byte less does not. */
	static unsigned char msg[MSG];
	static const char name[] = "abcdefghij";
	struct wire_writer w;
	size_t n = 0;

	wire_writer_init(&w, msg, sizeof(msg));
	while (wire_put(&w, WIRE_TELEMETRY, name, 10, (uint32_t)n) == 0)
		n++;
	cr_assert_eq(n, 511);
	cr_assert_eq(wire_finish(&w), sizeof(msg));
	cr_assert_eq(wire_check(msg, sizeof(msg)), 511);

	wire_writer_init(&w, msg, sizeof(msg) - 1);
	n = 0;
	while (wire_put(&w, WIRE_TELEMETRY, name, 10, (uint32_t)n) == 0)
		n++;
	cr_assert_eq(n, 510);
}

/* A valid message to corrupt: telemetry, flush, telemetry, stop. */
static size_t
sample(void)
{
	const struct rec r[] = {
		{ WIRE_TELEMETRY, B("alpha"), 1 },
		{ WIRE_FLUSH, NULL, 0, 0 },
		{ WIRE_TELEMETRY, B("b\xc3\xa9ta"), 2 },
		{ WIRE_STOP, NULL, 0, 0 },
	};
	size_t len = encode(r, 4);
	cr_assert_eq(wire_check(buf, len), 4);
	return len;
}

Test(wire, truncated)
{
	size_t len = sample();
	static unsigned char copy[256];

	/* Each prefix copied to a buffer of its exact size, so a read past
	 * the end would be caught by ASan when built with it. */
	for (size_t l = 0; l < len; l++) {
		unsigned char *p = malloc(l ? l : 1);
		cr_assert_not_null(p);
		memcpy(p, buf, l);
		cr_expect_eq(wire_check(p, l), -1, "prefix of %zu bytes", l);
		free(p);
	}
	cr_expect_eq(wire_check(buf, len), 4);
	/* One byte too many is trailing garbage. */
	memcpy(copy, buf, len);
	copy[len] = 0;
	cr_expect_eq(wire_check(copy, len + 1), -1);
}

static void
put_u16(size_t off, uint16_t v)
{
	memcpy(buf + off, &v, 2);
}

static void
put_u32(size_t off, uint32_t v)
{
	memcpy(buf + off, &v, 4);
}

/* Offsets in sample(): header 16; "alpha" rec at 16 (11 bytes); flush at
 * 27; "béta" at 33 (11 bytes); stop at 44; end 50. */
#define R0 16
#define R1 27
#define R2 33
#define R3 44

Test(wire, lying_headers)
{
	size_t len;

	cr_assert_eq(sample(), 50);

	len = sample(); put_u32(4, 5);
	cr_expect_eq(wire_check(buf, len), -1, "count too large");
	len = sample(); put_u32(4, 0xffffffffu);
	cr_expect_eq(wire_check(buf, len), -1, "count huge");
	len = sample(); put_u32(4, 3);
	cr_expect_eq(wire_check(buf, len), -1, "count too small");
	len = sample(); put_u32(4, 0);
	cr_expect_eq(wire_check(buf, len), -1, "count 0 with records");
	len = sample(); put_u16(0, 0);
	cr_expect_eq(wire_check(buf, len), -1, "version 0");
	len = sample(); put_u16(0, WIRE_VERSION + 1);
	cr_expect_eq(wire_check(buf, len), -1, "version 3");
	len = sample(); put_u16(0, 0x0100);
	cr_expect_eq(wire_check(buf, len), -1, "version byte-swapped");
	len = sample(); buf[3] = 1;
	cr_expect_eq(wire_check(buf, len), -1, "reserved nonzero");
	len = sample(); put_u16(2, 0x8000);
	cr_expect_eq(wire_check(buf, len), -1, "reserved high bit");

	static const uint8_t bad_types[] = { 0, 4, 5, 0x81, 0xff };
	for (size_t i = 0; i < sizeof(bad_types); i++) {
		len = sample(); buf[R0] = bad_types[i];
		cr_expect_eq(wire_check(buf, len), -1, "type %u", bad_types[i]);
		len = sample(); buf[R3] = bad_types[i];
		cr_expect_eq(wire_check(buf, len), -1, "type %u", bad_types[i]);
	}

	len = sample(); buf[R3 + 1] = 1;
	cr_expect_eq(wire_check(buf, len), -1, "stop name_len past the end");
	len = sample(); buf[R2 + 1] = 255;
	cr_expect_eq(wire_check(buf, len), -1, "name_len past the end");
	len = sample(); buf[R2 + 1] = 6;
	cr_expect_eq(wire_check(buf, len), -1, "name_len one past");
	len = sample(); buf[R0 + 1] = 4;
	cr_expect_eq(wire_check(buf, len), -1, "name_len short, misframed");
	len = sample(); buf[R1 + 1] = 1; /* swallows the next type byte */
	cr_expect_eq(wire_check(buf, len), -1, "flush with a name");

	/* A flush or stop with a name that otherwise frames correctly. */
	{
		const struct rec f[] = { { WIRE_FLUSH, B("x"), 0 } };
		len = encode(f, 1);
		cr_expect_eq(wire_check(buf, len), -1, "flush with a name");
		const struct rec s[] = { { WIRE_STOP, B("x"), 0 } };
		len = encode(s, 1);
		cr_expect_eq(wire_check(buf, len), -1, "stop with a name");
	}

	/* Telemetry whose name wire_name_ok refuses. */
	static const struct { const char *n; size_t l; } bad_names[] = {
		{ B("") }, { B("a b") }, { B("a\tb") }, { B("\xff") },
		{ B("a\0b") }, { B("\xc2\x85") }, { B("\xed\xa0\x80") },
	};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		const struct rec t[] = {
			{ WIRE_TELEMETRY, B("ok"), 1 },
			{ WIRE_TELEMETRY, bad_names[i].n, bad_names[i].l, 2 },
		};
		len = encode(t, 2);
		cr_expect_eq(wire_check(buf, len), -1, "bad name %zu", i);
	}

	/* A corrupted name byte inside an otherwise valid message. */
	len = sample(); buf[R0 + WIRE_REC_HDR + 2] = ' ';
	cr_expect_eq(wire_check(buf, len), -1, "space in a name");
	len = sample(); buf[R2 + WIRE_REC_HDR + 2] = 0x20;
	cr_expect_eq(wire_check(buf, len), -1, "broken UTF-8 in a name");
}

Test(wire, too_short_for_a_header)
{
	static const unsigned char hdr[WIRE_HDR] = { WIRE_VERSION, 0, WIRE_SRC_NONE };

	for (size_t l = 0; l < WIRE_HDR; l++)
		cr_expect_eq(wire_check(hdr, l), -1, "%zu bytes", l);
}

struct name_case {
	const char *s;
	size_t len;
	int ok;
	const char *why;
};

static const struct name_case names[] = {
	{ B("a"), 1, "one ASCII byte" },
	{ B("cpu.load_1m"), 1, "ASCII" },
	{ B("!~"), 1, "ASCII punctuation, edges" },
	{ B("0123456789"), 1, "digits" },
	{ B("\xc2\xa1"), 1, "U+00A1, lowest 2-byte accepted" },
	{ B("\xc3\xa9t\xc3\xa9"), 1, "2-byte" },
	{ B("\xdf\xbf"), 1, "U+07FF" },
	{ B("\xe0\xa0\x80"), 1, "U+0800" },
	{ B("\xe2\x82\xac"), 1, "3-byte euro" },
	{ B("\xed\x9f\xbf"), 1, "U+D7FF, below surrogates" },
	{ B("\xee\x80\x80"), 1, "U+E000, above surrogates" },
	{ B("\xef\xbf\xbf"), 1, "U+FFFF" },
	{ B("\xf0\x90\x80\x80"), 1, "U+10000" },
	{ B("\xf0\x9f\x98\x80"), 1, "4-byte emoji" },
	{ B("\xf4\x8f\xbf\xbf"), 1, "U+10FFFF" },
	{ B(""), 0, "empty" },
	{ B("\xc0\x80"), 0, "overlong NUL" },
	{ B("\xc1\xbf"), 0, "overlong 2-byte" },
	{ B("\xe0\x80\x80"), 0, "overlong 3-byte" },
	{ B("\xe0\x9f\xbf"), 0, "overlong U+07FF" },
	{ B("\xf0\x80\x80\x80"), 0, "overlong 4-byte" },
	{ B("\xf0\x8f\xbf\xbf"), 0, "overlong U+FFFF" },
	{ B("\xed\xa0\x80"), 0, "surrogate U+D800" },
	{ B("\xed\xbf\xbf"), 0, "surrogate U+DFFF" },
	{ B("\xed\xa0\xbd\xed\xb8\x80"), 0, "CESU-8 surrogate pair" },
	{ B("\xf4\x90\x80\x80"), 0, "U+110000" },
	{ B("\xf5\x80\x80\x80"), 0, "lead 0xf5" },
	{ B("\xf8\x88\x80\x80\x80"), 0, "5-byte form" },
	{ B("\xfe"), 0, "0xfe" },
	{ B("\xff"), 0, "0xff" },
	{ B("\x80"), 0, "lone continuation" },
	{ B("a\xbf"), 0, "stray continuation" },
	{ B("\xc3"), 0, "truncated 2-byte" },
	{ B("\xe2\x82"), 0, "truncated 3-byte" },
	{ B("\xf0\x9f\x98"), 0, "truncated 4-byte" },
	{ B("\xc3" "a"), 0, "bad continuation" },
	{ B("\xc2\x80"), 0, "C1 U+0080" },
	{ B("\xc2\x85"), 0, "C1 NEL U+0085" },
	{ B("\xc2\x9b"), 0, "C1 CSI U+009B" },
	{ B("\xc2\x9f"), 0, "C1 U+009F" },
	{ B("\xc2\xa0"), 0, "NBSP" },
	{ B("\xe1\x9a\x80"), 0, "U+1680 ogham space" },
	{ B("\xe2\x80\x80"), 0, "U+2000" },
	{ B("\xe2\x80\x8a"), 0, "U+200A" },
	{ B("\xe2\x80\xa8"), 0, "U+2028 line separator" },
	{ B("\xe2\x80\xa9"), 0, "U+2029 paragraph separator" },
	{ B("\xe2\x80\xaf"), 0, "U+202F" },
	{ B("\xe2\x81\x9f"), 0, "U+205F" },
	{ B("\xe3\x80\x80"), 0, "U+3000 ideographic space" },
	{ B("\x7f"), 0, "DEL" },
	{ B("a\x7f"), 0, "DEL after a letter" },
	{ B(" "), 0, "space" },
	{ B("a b"), 0, "inner space" },
	{ B("\t"), 0, "tab" },
	{ B("a\n"), 0, "newline" },
	{ B("a\r"), 0, "CR" },
	{ B("\x1b"), 0, "ESC" },
	{ B("\x01"), 0, "SOH" },
	{ B("\x1f"), 0, "US" },
	{ B("\0"), 0, "NUL" },
	{ B("a\0"), 0, "trailing NUL" },
};

Test(wire, name_ok_table)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_expect_eq(wire_name_ok(names[i].s, names[i].len), names[i].ok,
		    "%s", names[i].why);
}

Test(wire, name_ok_length, .init = fill_names)
{
	static char multi[258];

	cr_expect_eq(wire_name_ok(n255, 255), 1, "255 bytes");
	cr_expect_eq(wire_name_ok(n256, 256), 0, "256 bytes");
	cr_expect_eq(wire_name_ok(n256, (size_t)-1), 0, "SIZE_MAX");
	/* 85 three-byte characters = 255 bytes; one more byte is too long. */
	for (size_t i = 0; i < 85; i++)
		memcpy(multi + 3 * i, "\xe2\x82\xac", 3);
	cr_expect_eq(wire_name_ok(multi, 255), 1, "85 euro signs");
	multi[255] = 'a';
	cr_expect_eq(wire_name_ok(multi, 256), 0, "256 bytes of UTF-8");
	/* The length bounds the check: a sequence cut by it is invalid. */
	cr_expect_eq(wire_name_ok(multi, 254), 0, "cut in a character");
}

Test(wire, name_ok_every_byte)
{
	for (unsigned b = 0; b < 256; b++) {
		char c = (char)b;
		cr_expect_eq(wire_name_ok(&c, 1), b > 0x20 && b < 0x7f,
		    "byte 0x%02x", b);
	}
}

/* statsd records (docs/design.md §14): a round trip of every field, and the
 * checks wire_check makes of a record that claims to be one. */
static size_t
statsd_msg(unsigned stype, unsigned flags, const char *key, double v,
    double rate, const char *member)
{
	unsigned char rec[WIRE_REC_MAX];
	struct wire_writer w;
	size_t n = wire_encode_statsd(rec, stype, flags, key, strlen(key), v, rate,
	    member, member ? strlen(member) : 0);
	cr_assert_gt(n, 0);
	wire_writer_init(&w, buf, sizeof(buf));
	cr_assert_eq(wire_put_raw(&w, rec, n), 0);
	return wire_finish(&w);
}

Test(wire, statsd_round_trip)
{
	unsigned char rec[WIRE_REC_MAX];
	struct wire_writer w;
	struct wire_meta m = { 3, 7, 2 }, m2;
	wire_writer_init(&w, buf, sizeof(buf));
	size_t n = wire_encode_statsd(rec, 3, WIRE_STATSD_DELTA, B("g;k=v"), -2.5,
	    0.25, NULL, 0);
	cr_assert_eq(wire_put_raw(&w, rec, n), 0);
	n = wire_encode_statsd(rec, 4, 0, B("users"), 0, 1, B("alice"));
	cr_assert_eq(wire_put_raw(&w, rec, n), 0);
	cr_assert_eq(wire_put_raw(&w, rec, wire_encode_meta(rec, &m)), 0);
	cr_assert_eq(wire_put(&w, WIRE_FLUSH, NULL, 0, 200), 0);
	size_t len = wire_finish(&w);
	uint32_t counted;
	cr_assert_eq(wire_check_telemetry(buf, len, &counted), 4);
	cr_expect_eq(counted, 2, "statsd metrics count, meta and flush do not");

	struct wire_reader r;
	struct wire_rec rec1;
	struct wire_statsd s;
	wire_reader_init(&r, buf);
	cr_assert(wire_next(&r, &rec1));
	cr_assert_eq(rec1.type, WIRE_STATSD);
	wire_statsd_get(&rec1, &s);
	cr_expect_eq(s.stype, 3);
	cr_expect_eq(s.flags, WIRE_STATSD_DELTA);
	cr_expect_eq(s.key_len, 5);
	cr_expect_eq(memcmp(s.key, "g;k=v", 5), 0);
	cr_expect_eq(s.value, -2.5);
	cr_expect_eq(s.rate, 0.25);
	cr_expect_eq(s.member_len, 0);
	cr_assert(wire_next(&r, &rec1));
	wire_statsd_get(&rec1, &s);
	cr_expect_eq(s.stype, 4);
	cr_expect_eq(s.member_len, 5);
	cr_expect_eq(memcmp(s.member, "alice", 5), 0);
	cr_assert(wire_next(&r, &rec1));
	cr_assert_eq(rec1.type, WIRE_STATSD_META);
	wire_meta_get(&rec1, &m2);
	cr_expect(m2.packets == 3 && m2.lines == 7 && m2.bad == 2);
	cr_assert(wire_next(&r, &rec1));
	cr_expect_eq(rec1.type, WIRE_FLUSH);
	cr_expect_eq(rec1.value, 200, "the Flush carries its interval");
	cr_expect_eq(wire_next(&r, &rec1), 0);
}

Test(wire, statsd_rejected)
{
	cr_expect_eq(wire_check(buf, statsd_msg(1, 0, "ok", 1, 1, NULL)), 1);
	cr_expect_eq(wire_check(buf, statsd_msg(0, 0, "a", 1, 1, NULL)), -1, "type 0");
	cr_expect_eq(wire_check(buf, statsd_msg(5, 0, "a", 1, 1, NULL)), -1, "type 5");
	cr_expect_eq(wire_check(buf, statsd_msg(1, 1, "a", 1, 1, NULL)), -1,
	    "delta on a counter");
	cr_expect_eq(wire_check(buf, statsd_msg(3, 2, "a", 1, 1, NULL)), -1, "flag 2");
	cr_expect_eq(wire_check(buf, statsd_msg(1, 0, "a b", 1, 1, NULL)), -1, "blank");
	cr_expect_eq(wire_check(buf, statsd_msg(1, 0, ";a", 1, 1, NULL)), -1,
	    "no name");
	cr_expect_eq(wire_check(buf, statsd_msg(1, 0, "a/b", 1, 1, NULL)), -1, "/");
	cr_expect_eq(wire_check(buf, statsd_msg(1, 0, "a", NAN, 1, NULL)), -1, "NaN");
	cr_expect_eq(wire_check(buf, statsd_msg(1, 0, "a", INFINITY, 1, NULL)), -1);
	cr_expect_eq(wire_check(buf, statsd_msg(2, 0, "a", -1, 1, NULL)), -1,
	    "negative timer");
	cr_expect_eq(wire_check(buf, statsd_msg(1, 0, "a", 1, 0, NULL)), -1, "rate 0");
	cr_expect_eq(wire_check(buf, statsd_msg(1, 0, "a", 1, 1.5, NULL)), -1);
	cr_expect_eq(wire_check(buf, statsd_msg(1, 0, "a", 1, NAN, NULL)), -1);
	cr_expect_eq(wire_check(buf, statsd_msg(1, 0, "a", 1, 1, "m")), -1,
	    "member on a counter");
	cr_expect_eq(wire_check(buf, statsd_msg(4, 0, "a", 1, 1, "m")), -1,
	    "set value not 0");
	/* the info's last byte, and a body cut short */
	size_t len = statsd_msg(1, 0, "ab", 1, 1, NULL);
	buf[WIRE_HDR + 5] = 1;
	cr_expect_eq(wire_check(buf, len), -1);
	buf[WIRE_HDR + 5] = 0;
	cr_expect_eq(wire_check(buf, len), 1);
	for (size_t cut = WIRE_HDR; cut < len; cut++)
		cr_expect_eq(wire_check(buf, cut), -1, "cut at %zu", cut);
	/* a meta record with a name or a value, or cut */
	unsigned char rec[64];
	struct wire_meta m = { 1, 1, 0 };
	struct wire_writer w;
	wire_writer_init(&w, buf, sizeof(buf));
	wire_put_raw(&w, rec, wire_encode_meta(rec, &m));
	len = wire_finish(&w);
	cr_expect_eq(wire_check(buf, len), 1);
	cr_expect_eq(wire_check(buf, len - 1), -1);
	buf[WIRE_HDR + 2] = 1;
	cr_expect_eq(wire_check(buf, len), -1, "meta with a value");
}

/* A statsd key's every byte, at every place of keys of 1 to 24 bytes:
 * exactly [A-Za-z0-9_.;=-] passes, but ';' first. */
Test(wire, statsd_key_every_byte)
{
	int wrong = 0;
	for (size_t len = 1; len <= 24; len++)
		for (size_t at = 0; at < len; at++)
			for (int c = 0; c < 256; c++) {
				char k[24];
				memset(k, 'a', sizeof(k));
				k[at] = (char)c;
				int want = (c >= 'a' && c <= 'z') ||
				    (c >= 'A' && c <= 'Z') ||
				    (c >= '0' && c <= '9') || c == '_' ||
				    c == '.' || (c == ';' && at > 0) || c == '=' ||
				    c == '-';
				unsigned char rec[WIRE_REC_MAX];
				struct wire_writer w;
				size_t n = wire_encode_statsd(rec, 1, 0, k, len, 1, 1,
				    NULL, 0);
				wire_writer_init(&w, buf, sizeof(buf));
				cr_assert_eq(wire_put_raw(&w, rec, n), 0);
				int got = wire_check(buf, wire_finish(&w)) == 1;
				if (got != want && wrong++ < 10)
					cr_expect_eq(got, want, "byte %d at %zu of %zu",
					    c, at, len);
			}
	cr_expect_eq(wrong, 0);
}

/* Report records (common/wire.h): one report_rec entry each. */
static size_t
report_msg(const struct report_rec *e, size_t n)
{
	struct wire_writer w;
	unsigned char ent[REPORT_REC_MAX], rec[WIRE_REC_HDR + REPORT_REC_MAX];
	wire_writer_init(&w, buf, sizeof(buf));
	for (size_t i = 0; i < n; i++) {
		size_t len = report_rec_encode(&e[i], ent, sizeof(ent));
		cr_assert_gt(len, 0, "entry %zu", i);
		size_t size = wire_encode_report(rec, sizeof(rec), ent, len);
		cr_assert_eq(size, WIRE_REC_HDR + len);
		cr_assert_eq(wire_put_raw(&w, rec, size), 0);
	}
	cr_assert_eq(wire_put(&w, WIRE_FLUSH, NULL, 0, 0), 0);
	return wire_finish(&w);
}

static const struct report_rec entries[] = {
	{ .kind = REPORT_SUM_QUANTILE, .source = REPORT_SRC_CKMS, .name = "a",
	  .name_len = 1, .field = "q0.25", .field_len = 5, .ts = 1700000000,
	  .value = 10 },
	{ .kind = REPORT_GAUGE, .source = REPORT_SRC_CMA, .name = "b.c",
	  .name_len = 3, .field = "cma", .field_len = 3, .ts = 1700000000,
	  .value = 0.1 },
	{ .kind = REPORT_END, .source = REPORT_SRC_CMA, .ts = 1700000000,
	  .count = 1 },
};

Test(wire, report_round_trip)
{
	size_t len = report_msg(entries, 3);
	cr_assert_eq(wire_check(buf, len), 4);
	uint32_t counted = 99;
	cr_assert_eq(wire_check_telemetry(buf, len, &counted), 4);
	cr_expect_eq(counted, 0, "report records are not in the books");
	struct wire_reader rd;
	struct wire_rec got;
	wire_reader_init(&rd, buf);
	for (size_t i = 0; i < 3; i++) {
		cr_assert(wire_next(&rd, &got));
		cr_assert_eq(got.type, WIRE_REPORT);
		cr_assert_eq(got.name_len, 0);
		cr_assert_eq(got.size, WIRE_REC_HDR + got.value);
		struct report_rec e;
		const char *why;
		cr_assert_eq(report_rec_decode(got.raw + WIRE_REC_HDR, got.value,
		    &e, &why), 0);
		cr_expect_eq(e.kind, entries[i].kind);
		cr_expect_eq(e.source, entries[i].source);
		cr_expect_eq(e.ts, entries[i].ts);
		if (e.kind == REPORT_END) {
			cr_expect_eq(e.count, 1);
		} else {
			cr_expect_eq(e.value, entries[i].value);
			cr_expect_eq(memcmp(e.name, entries[i].name, e.name_len), 0);
		}
	}
	cr_assert(wire_next(&rd, &got));
	cr_expect_eq(got.type, WIRE_FLUSH, "the record after them is found");
	cr_expect_eq(wire_next(&rd, &got), 0);
}

Test(wire, report_encode_refuses)
{
	unsigned char ent[8] = { 0 }, rec[64];
	cr_expect_eq(wire_encode_report(rec, sizeof(rec), ent, 0), 0);
	cr_expect_eq(wire_encode_report(rec, sizeof(rec), ent, REPORT_REC_MAX + 1), 0);
	cr_expect_eq(wire_encode_report(rec, WIRE_REC_HDR + 7, ent, 8), 0);
}

/* Every way a report record can lie is refused, whole message. */
Test(wire, report_records_that_lie)
{
	size_t len = report_msg(entries, 1);
	size_t elen = len - WIRE_HDR - WIRE_REC_HDR - WIRE_REC_HDR;  /* - flush */
	unsigned char good[1024];
	memcpy(good, buf, len);
	cr_assert_eq(wire_check(good, len), 2);
	size_t rec = WIRE_HDR;
	/* a name length */
	memcpy(buf, good, len);
	buf[rec + 1] = 1;
	cr_expect_eq(wire_check(buf, len), -1);
	/* a length one short, one long, huge, below a header */
	uint32_t bad[] = { (uint32_t)elen - 1, (uint32_t)elen + 1, 0xffffffffu,
	    REPORT_REC_HDR - 1, 0, REPORT_REC_MAX + 1 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(buf, good, len);
		memcpy(buf + rec + 2, &bad[i], 4);
		cr_expect_eq(wire_check(buf, len), -1, "length %u", bad[i]);
	}
	/* an entry that does not decode: unknown kind, bad name, bad field */
	size_t e = rec + WIRE_REC_HDR;
	memcpy(buf, good, len);
	buf[e] = 99;
	cr_expect_eq(wire_check(buf, len), -1, "kind");
	memcpy(buf, good, len);
	buf[e + REPORT_REC_HDR] = ' ';
	cr_expect_eq(wire_check(buf, len), -1, "name");
	memcpy(buf, good, len);
	buf[e + REPORT_REC_HDR + 1] = '/';
	cr_expect_eq(wire_check(buf, len), -1, "field");
	/* cut anywhere */
	for (size_t cut = WIRE_HDR; cut < len; cut++)
		cr_expect_eq(wire_check(good, cut), -1, "cut at %zu", cut);
}
