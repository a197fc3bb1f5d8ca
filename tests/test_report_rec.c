/* test_report_rec.c - report entries (egress/report_rec.c): round trips of
 * every kind and source, the largest entry, the quantile fields, and
 * hostile decodes: every truncation, lying lengths, bad enums, bad names,
 * fields and tags, and random bytes that must never crash the decoder. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/report_rec.h"

TestSuite(report_rec);

static struct report_rec
entry(uint8_t kind, uint8_t source, const char *name, const char *field,
    double value)
{
	struct report_rec r;
	memset(&r, 0, sizeof(r));
	r.kind = kind;
	r.source = source;
	r.name = name;
	r.name_len = (uint8_t)strlen(name);
	r.field = field;
	r.field_len = (uint8_t)strlen(field);
	r.ts = 1700000000;
	r.value = value;
	return r;
}

static void
add_tag(struct report_rec *r, const char *k, const char *v)
{
	struct report_tag *t = &r->tag[r->ntags++];
	t->key = k;
	t->klen = (uint8_t)strlen(k);
	t->val = v;
	t->vlen = (uint8_t)strlen(v);
}

static void
same(const struct report_rec *a, const struct report_rec *b)
{
	cr_assert_eq(a->kind, b->kind);
	cr_assert_eq(a->source, b->source);
	cr_assert_eq(a->ts, b->ts);
	cr_assert_eq(a->name_len, b->name_len);
	cr_assert_eq(a->field_len, b->field_len);
	if (a->kind != REPORT_END) {
		cr_assert_eq(memcmp(a->name, b->name, a->name_len), 0);
		cr_assert_eq(memcmp(a->field, b->field, a->field_len), 0);
	}
	if (a->kind == REPORT_END)
		cr_assert_eq(a->count, b->count);
	else
		cr_assert_eq(memcmp(&a->value, &b->value, 8), 0, "value bits");
	cr_assert_eq(a->ntags, b->ntags);
	for (size_t i = 0; i < a->ntags; i++) {
		cr_assert_eq(a->tag[i].klen, b->tag[i].klen);
		cr_assert_eq(memcmp(a->tag[i].key, b->tag[i].key, a->tag[i].klen), 0);
		cr_assert_eq(a->tag[i].vlen, b->tag[i].vlen);
		cr_assert_eq(memcmp(a->tag[i].val, b->tag[i].val, a->tag[i].vlen), 0);
	}
}

static size_t
round_trip(const struct report_rec *r, unsigned char *buf)
{
	struct report_rec back;
	const char *why = "";
	size_t n = report_rec_encode(r, buf, REPORT_REC_MAX);
	cr_assert_gt(n, 0, "encode refused a valid entry");
	cr_assert_leq(n, REPORT_REC_MAX);
	cr_assert_eq(report_rec_decode(buf, n, &back, &why), 0, "decode: %s", why);
	same(r, &back);
	return n;
}

Test(report_rec, round_trips)
{
	unsigned char buf[REPORT_REC_MAX];
	struct report_rec r[] = {
		entry(REPORT_SUM_QUANTILE, REPORT_SRC_CKMS, "a", "q0.25", 10),
		entry(REPORT_SUM_QUANTILE, REPORT_SRC_CKMS, "a", "q0", 0),
		entry(REPORT_SUM_QUANTILE, REPORT_SRC_CKMS, "a", "q0.99", 4e9),
		entry(REPORT_SUM_SUM, REPORT_SRC_CKMS, "a", "sum", 1e300),
		entry(REPORT_SUM_COUNT, REPORT_SRC_CKMS, "a", "count", 12345678),
		entry(REPORT_GAUGE, REPORT_SRC_CMA, "b.c-d/é", "cma", 0.1 + 0.2),
		entry(REPORT_COUNTER, REPORT_SRC_CMA, "b", "count", 3),
		entry(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD, "t", "upper_90", 7),
		entry(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD, "t", "upper_99_9", 7),
		entry(REPORT_DERIVED, REPORT_SRC_STATSD, "t", "mean_90", -2.5),
		entry(REPORT_GAUGE, REPORT_SRC_STATSD, "g", "value", NAN),
		entry(REPORT_GAUGE, REPORT_SRC_STATSD, "g", "value", -INFINITY),
		entry(REPORT_COUNTER, REPORT_SRC_STATSD, "c", "count", INFINITY),
		entry(REPORT_GAUGE, REPORT_SRC_STATSD, "g", "value", -0.0),
		entry(REPORT_GAUGE, REPORT_SRC_STATSD, "g", "value", 4.9e-324),
	};
	add_tag(&r[7], "env", "prod");
	add_tag(&r[7], "host", "web-1");
	add_tag(&r[8], "a", "1");
	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		round_trip(&r[i], buf);

	struct report_rec end;
	memset(&end, 0, sizeof(end));
	end.kind = REPORT_END;
	end.source = REPORT_SRC_CKMS;
	end.ts = 0;
	end.count = 60000;
	cr_assert_eq(round_trip(&end, buf), REPORT_REC_HDR);
	end.ts = REPORT_TS_MAX;
	end.count = REPORT_END_MAX;
	round_trip(&end, buf);
}

/* 255-byte name, 31-byte field, tags filling REPORT_TAGS_BYTES: the
 * largest entry is exactly REPORT_REC_MAX bytes. */
Test(report_rec, largest_entry)
{
	unsigned char buf[REPORT_REC_MAX];
	static char name[256], field[32], keys[4][65], vals[4][129];
	memset(name, 'n', 255);
	memset(field, 'f', 31);
	struct report_rec r = entry(REPORT_GAUGE, REPORT_SRC_STATSD,
	    name, field, 1);
	/* 288 bytes of tags: 2 + 64 + 78, twice = 288. */
	for (int i = 0; i < 2; i++) {
		memset(keys[i], 'a' + i, 64);
		memset(vals[i], 'v', 78);
		add_tag(&r, keys[i], vals[i]);
	}
	cr_assert_eq(round_trip(&r, buf), REPORT_REC_MAX);
	cr_assert_eq(REPORT_REC_MAX, 598);
	/* One more byte of tags is refused. */
	vals[1][78] = 'v';
	r.tag[1].vlen = 79;
	cr_assert_eq(report_rec_encode(&r, buf, sizeof(buf)), 0);
	/* ... and so is a buffer one byte short. */
	r.tag[1].vlen = 78;
	cr_assert_eq(report_rec_encode(&r, buf, REPORT_REC_MAX - 1), 0);
}

Test(report_rec, encode_refuses_invalid)
{
	unsigned char buf[REPORT_REC_MAX];
	struct report_rec bad[] = {
		entry(0, REPORT_SRC_CKMS, "a", "q0.5", 1),
		entry(8, REPORT_SRC_CKMS, "a", "q0.5", 1),
		entry(REPORT_GAUGE, 0, "a", "cma", 1),
		entry(REPORT_GAUGE, REPORT_SRC_N, "a", "cma", 1),
		entry(REPORT_GAUGE, REPORT_SRC_CMA, "", "cma", 1),
		entry(REPORT_GAUGE, REPORT_SRC_CMA, "a b", "cma", 1),
		entry(REPORT_GAUGE, REPORT_SRC_CMA, "a", "", 1),
		entry(REPORT_GAUGE, REPORT_SRC_CMA, "a", "c/a", 1),
		entry(REPORT_SUM_QUANTILE, REPORT_SRC_CKMS, "a", "q1.5", 1),
		entry(REPORT_SUM_QUANTILE, REPORT_SRC_CKMS, "a", "mean", 1),
		entry(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD, "a", "upper_101", 1),
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(report_rec_encode(&bad[i], buf, sizeof(buf)), 0,
		    "case %zu encoded", i);
	struct report_rec r = entry(REPORT_GAUGE, REPORT_SRC_STATSD, "a", "v", 1);
	add_tag(&r, "b", "1");
	add_tag(&r, "a", "1");
	cr_assert_eq(report_rec_encode(&r, buf, sizeof(buf)), 0, "unsorted tags");
	r.tag[1].key = "b";
	cr_assert_eq(report_rec_encode(&r, buf, sizeof(buf)), 0, "duplicate tag");
	r.tag[1].key = "c=";
	r.tag[1].klen = 2;
	cr_assert_eq(report_rec_encode(&r, buf, sizeof(buf)), 0, "= in a key");
	r.ts = -1;
	r.ntags = 0;
	cr_assert_eq(report_rec_encode(&r, buf, sizeof(buf)), 0, "ts < 0");
	r.ts = REPORT_TS_MAX + 1;
	cr_assert_eq(report_rec_encode(&r, buf, sizeof(buf)), 0, "ts too big");
	struct report_rec end = entry(REPORT_END, REPORT_SRC_CKMS, "a", "", 0);
	cr_assert_eq(report_rec_encode(&end, buf, sizeof(buf)), 0, "END+name");
}

Test(report_rec, quantile_fields)
{
	static const struct { const char *f; double q; } ok[] = {
		{ "q0", 0 }, { "q0.25", 0.25 }, { "q0.5", 0.5 }, { "q1", 1 },
		{ "q0.999", 0.999 }, { "upper_90", 0.9 }, { "upper_99_9", 0.999 },
		{ "upper_100", 1 }, { "upper_0", 0 }, { "q1.000", 1 },
	};
	static const char *const bad[] = {
		"q", "q.5", "q0.", "q1.01", "q-0.5", "q0.5.1", "q1e-1", "qx",
		"upper_", "upper_90_", "upper__9", "upper_100_1", "upper_-10",
		"upper_9x", "q0.1234567890123456", "Q0.5", "cma",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		double q = -1;
		cr_assert_eq(report_rec_quantile(ok[i].f, strlen(ok[i].f), &q), 0,
		    "%s refused", ok[i].f);
		cr_assert_float_eq(q, ok[i].q, 1e-12, "%s", ok[i].f);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		double q;
		cr_assert_eq(report_rec_quantile(bad[i], strlen(bad[i]), &q), -1,
		    "%s accepted", bad[i]);
	}
}

/* Every prefix and every longer buffer of a valid entry is refused. */
Test(report_rec, truncations_and_trailing_bytes)
{
	unsigned char buf[REPORT_REC_MAX + 8];
	struct report_rec r = entry(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD,
	    "svc.latency", "upper_90", 12.5), back;
	add_tag(&r, "dc", "eu");
	add_tag(&r, "host", "h1");
	size_t n = report_rec_encode(&r, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	const char *why;
	for (size_t k = 0; k < n; k++)
		cr_assert_eq(report_rec_decode(buf, k, &back, &why), -1,
		    "prefix of %zu bytes accepted", k);
	buf[n] = 0;
	cr_assert_eq(report_rec_decode(buf, n + 1, &back, &why), -1);
}

/* Change one header byte or one length at a time: each lie is caught. */
Test(report_rec, lying_headers)
{
	unsigned char good[REPORT_REC_MAX], buf[REPORT_REC_MAX];
	struct report_rec r = entry(REPORT_GAUGE, REPORT_SRC_STATSD, "abc",
	    "value", 1), back;
	add_tag(&r, "k", "v");
	size_t n = report_rec_encode(&r, good, sizeof(good));
	const char *why;
	struct { size_t off; unsigned char v; } lie[] = {
		{ 0, 0 }, { 0, 8 }, { 0, 255 },       /* kind */
		{ 1, 0 }, { 1, 4 }, { 1, 200 },       /* source */
		{ 2, 2 }, { 2, 4 }, { 2, 0 }, { 2, 255 }, /* name_len */
		{ 3, 4 }, { 3, 6 }, { 3, 0 },         /* field_len */
		{ 4, 0 }, { 4, 2 }, { 4, 17 },        /* ntags */
		{ 5, 1 },                             /* pad */
		{ 6, 3 }, { 6, 5 }, { 7, 1 },         /* tags_len */
		{ 15, 0x80 },                         /* ts < 0 */
		{ 15, 0x7f },                         /* ts huge */
		{ REPORT_REC_HDR, ' ' },              /* name byte */
		{ REPORT_REC_HDR + 1, 0x7f },
		{ REPORT_REC_HDR + 3, '/' },          /* field byte */
		{ REPORT_REC_HDR + 8, 0 },            /* tag klen 0 */
		{ REPORT_REC_HDR + 8, 3 },            /* tag klen past end */
		{ REPORT_REC_HDR + 9, '=' },          /* key byte */
		{ REPORT_REC_HDR + 10, 0 },           /* vlen 0 */
		{ REPORT_REC_HDR + 10, 2 },           /* vlen past end */
		{ REPORT_REC_HDR + 11, ',' },         /* value byte */
	};
	for (size_t i = 0; i < sizeof(lie) / sizeof(lie[0]); i++) {
		memcpy(buf, good, n);
		buf[lie[i].off] = lie[i].v;
		cr_assert_eq(report_rec_decode(buf, n, &back, &why), -1,
		    "lie %zu (byte %zu = %u) accepted", i, lie[i].off, lie[i].v);
	}
	/* An END with a lying count, and an END with a name. */
	struct report_rec end;
	memset(&end, 0, sizeof(end));
	end.kind = REPORT_END;
	end.source = REPORT_SRC_CMA;
	end.count = 5;
	n = report_rec_encode(&end, good, sizeof(good));
	cr_assert_eq(n, REPORT_REC_HDR);
	memcpy(buf, good, n);
	buf[23] = 0xff;
	cr_assert_eq(report_rec_decode(buf, n, &back, &why), -1);
	cr_assert_eq(report_rec_decode(good, n, &back, &why), 0);
	cr_assert_eq(back.count, 5);
	unsigned char named[REPORT_REC_HDR + 1];
	memcpy(named, good, n);
	named[2] = 1;
	named[REPORT_REC_HDR] = 'a';
	cr_assert_eq(report_rec_decode(named, sizeof(named), &back, &why), -1);
}

/* Random bytes and random mutations of valid entries: the decoder never
 * reads out of bounds (run under ASan by make check), and whatever it
 * accepts encodes back to the same bytes. */
Test(report_rec, random_input)
{
	unsigned char buf[REPORT_REC_MAX], again[REPORT_REC_MAX];
	struct report_rec r = entry(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD,
	    "x.y", "upper_50", 3), back;
	add_tag(&r, "a", "b");
	add_tag(&r, "cc", "dd");
	size_t good = report_rec_encode(&r, buf, sizeof(buf));
	unsigned char orig[REPORT_REC_MAX];
	memcpy(orig, buf, good);
	srand(12345);
	unsigned accepted = 0;
	for (int i = 0; i < 200000; i++) {
		size_t len;
		if (i % 2) {
			len = (size_t)rand() % (REPORT_REC_MAX + 1);
			for (size_t k = 0; k < len; k++)
				buf[k] = (unsigned char)rand();
			if (len > 5)
				buf[5] = 0;
		} else {
			len = good;
			memcpy(buf, orig, good);
			buf[(size_t)rand() % good] = (unsigned char)rand();
		}
		unsigned char *heap = malloc(len ? len : 1);
		cr_assert_not_null(heap);
		memcpy(heap, buf, len);
		const char *why;
		if (report_rec_decode(heap, len, &back, &why) == 0) {
			accepted++;
			size_t n = report_rec_encode(&back, again, sizeof(again));
			cr_assert_eq(n, len);
			cr_assert_eq(memcmp(again, heap, len), 0);
		}
		free(heap);
	}
	cr_assert_gt(accepted, 0, "no mutation survived: the test tests nothing");
}
