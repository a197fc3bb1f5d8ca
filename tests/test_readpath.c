/* test_readpath.c - the fast ways the queue-reading stages take a message
 * against the plain ones they replaced: the word-at-a-time name check
 * (common/wire.c) against the byte-by-byte rule on every byte value and on
 * random names, whole-message checks of mutated messages against a
 * reference checker, the filter's message pass (filter/filter.c) against
 * its record-by-record rule through a real out-queue, and the cma
 * egress's message pass (egress/cma_msg.c) against cma_add record by
 * record. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chan.h"
#include "egress/cma.h"
#include "egress/egress.h"
#include "filter/filter.h"
#include "stage.h"
#include "wire.h"
#include "tests/rng.h"

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static uint32_t
rnd(void)
{
	xorshift64(&rng);
	return (uint32_t)(rng >> 32);
}

/* The name rule as it was written first, one byte at a time: the
 * reference for the fast check. */
static int
ref_name_ok(const unsigned char *s, size_t len)
{
	const unsigned char *end = s + len;
	if (len == 0 || len > WIRE_NAME_MAX)
		return 0;
	while (s < end) {
		unsigned c = *s;
		if (c < 0x80) {
			if (c <= 0x20 || c == 0x7f)
				return 0;
			s++;
			continue;
		}
		size_t n;
		unsigned cp, min;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 2; cp = c & 0x1f; min = 0xa0;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 3; cp = c & 0x0f; min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 4; cp = c & 0x07; min = 0x10000;
		} else {
			return 0;
		}
		if ((size_t)(end - s) < n)
			return 0;
		for (size_t i = 1; i < n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		if (cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
		    cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
		    cp == 0x3000 || cp == 0x85)
			return 0;
		s += n;
	}
	return 1;
}

/* A message holding one telemetry record named name[0..len): accepted
 * by wire_check_telemetry exactly when the name is. */
static void
expect_name(const unsigned char *name, size_t len, const char *what)
{
	int want = ref_name_ok(name, len);
	cr_assert_eq(wire_name_ok((const char *)name, len), want,
	    "%s: wire_name_ok of %zu bytes (first %02x)", what, len,
	    len ? name[0] : 0);
	if (len > WIRE_NAME_MAX)
		return;
	unsigned char msg[WIRE_HDR + WIRE_REC_HDR + WIRE_NAME_MAX];
	struct wire_writer w;
	wire_writer_init(&w, msg, sizeof(msg));
	cr_assert_eq(wire_put(&w, WIRE_TELEMETRY, (const char *)name, len, 7), 0);
	uint32_t tel;
	long r = wire_check_telemetry(msg, wire_finish(&w), &tel);
	cr_assert_eq(r, want ? 1 : -1, "%s: message check of a %zu-byte name",
	    what, len);
}

/* Every byte value, and every pair of byte values, at every position of
 * names of 1..20 bytes (so each falls in the short, 4..7-byte and
 * word paths, at word starts, ends and overlaps). */
Test(readpath, name_every_byte_every_place)
{
	unsigned char n[32];
	for (size_t len = 1; len <= 20; len++)
		for (size_t at = 0; at < len; at++)
			for (unsigned b = 0; b < 256; b++) {
				memset(n, 'a', sizeof(n));
				n[at] = (unsigned char)b;
				expect_name(n, len, "one byte");
			}
	for (size_t len = 2; len <= 10; len += 8)
		for (unsigned b = 0; b < 65536; b++) {
			memset(n, 'a', sizeof(n));
			n[len - 2] = (unsigned char)(b >> 8);
			n[len - 1] = (unsigned char)b;
			expect_name(n, len, "two bytes");
		}
}

/* Append the UTF-8 of a code point (any value below 0x110000, including
 * the ones a name may not hold) at p; returns its length. */
static size_t
put_utf8(unsigned char *p, unsigned cp)
{
	if (cp < 0x80) {
		p[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		p[0] = (unsigned char)(0xc0 | cp >> 6);
		p[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		p[0] = (unsigned char)(0xe0 | cp >> 12);
		p[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		p[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	p[0] = (unsigned char)(0xf0 | cp >> 18);
	p[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	p[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	p[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

Test(readpath, name_random)
{
	unsigned char n[WIRE_NAME_MAX + 8];
	for (int k = 0; k < 200000; k++) {
		size_t want = 1 + rnd() % (k % 4 == 0 ? WIRE_NAME_MAX : 24), len = 0;
		while (len < want) {
			uint32_t r = rnd();
			switch (r % 8) {
			case 0:  /* any byte */
				n[len++] = (unsigned char)(r >> 8);
				break;
			case 1:  /* a code point, sometimes a forbidden one */
				if (len + 4 > want)
					n[len++] = 'z';
				else
					len += put_utf8(n + len, (r >> 8) % (r & 8 ?
					    0x110000 : 0x3100));
				break;
			default: /* printable ASCII, what names mostly are */
				n[len++] = (unsigned char)(0x21 + (r >> 8) % 94);
			}
		}
		/* mostly the whole, sometimes cut short mid-character */
		expect_name(n, k % 7 == 0 && len > 1 ? len - 1 : len, "random");
	}
	memset(n, 'q', sizeof(n));
	expect_name(n, WIRE_NAME_MAX, "255 bytes");
	expect_name(n, 0, "empty");
}

/* The reference for mutated messages that hold telemetry, Flush and Stop
 * records only: -2 when a mutation made another record type (the
 * reference does not know those), else what wire_check_telemetry must
 * say. */
static long
ref_check(const unsigned char *p, size_t len, uint32_t *tel)
{
	const unsigned char *end = p + len;
	uint16_t version;
	uint32_t count;
	if (len < WIRE_HDR)
		return -1;
	memcpy(&version, p, 2);
	memcpy(&count, p + 4, 4);
	if (version != WIRE_VERSION || p[3] != 0 ||
	    count > (len - WIRE_HDR) / WIRE_REC_HDR)
		return -1;
	p += WIRE_HDR;
	*tel = 0;
	for (uint32_t i = 0; i < count; i++) {
		if (end - p < WIRE_REC_HDR)
			return -1;
		unsigned type = p[0], nlen = p[1];
		if ((size_t)(end - p) - WIRE_REC_HDR < nlen)
			return -1;
		if (type == WIRE_TELEMETRY) {
			if (!ref_name_ok(p + WIRE_REC_HDR, nlen))
				return -1;
			(*tel)++;
		} else if (type == WIRE_FLUSH || type == WIRE_STOP) {
			if (nlen != 0)
				return -1;
		} else if (type >= WIRE_STATSD && type <= WIRE_REPORT) {
			return -2;
		} else {
			return -1;
		}
		p += WIRE_REC_HDR + nlen;
	}
	return p == end ? (long)count : -1;
}

static size_t
random_name(char *n, size_t max)
{
	size_t len = 1 + rnd() % max;
	for (size_t i = 0; i < len; i++)
		n[i] = (char)(0x21 + rnd() % 94);
	return len;
}

Test(readpath, mutated_messages)
{
	static unsigned char msg[2048], bad[2048];
	long compared = 0, rejected = 0;
	for (int k = 0; k < 20000; k++) {
		struct wire_writer w;
		wire_writer_init(&w, msg, 256 + rnd() % 1500);
		for (;;) {
			char name[40];
			size_t n = random_name(name, sizeof(name));
			unsigned t = rnd() % 16;
			int r = t == 0 ? wire_put(&w, WIRE_FLUSH, NULL, 0, 1000) :
			    t == 1 ? wire_put(&w, WIRE_STOP, NULL, 0, 0) :
			    wire_put(&w, WIRE_TELEMETRY, name, n, rnd());
			if (r == -1)
				break;
		}
		size_t len = wire_finish(&w);
		uint32_t tel, rtel;
		cr_assert_eq(wire_check_telemetry(msg, len, &tel), (long)w.count);
		memcpy(bad, msg, len);
		size_t blen = len;
		switch (rnd() % 4) {
		case 0: /* a few bytes changed anywhere */
			for (unsigned j = 1 + rnd() % 3; j > 0; j--)
				bad[rnd() % len] = (unsigned char)rnd();
			break;
		case 1: /* cut short */
			blen = rnd() % len;
			break;
		case 2: /* a byte of a record head changed to a small value */
			bad[WIRE_HDR + rnd() % (len - WIRE_HDR)] = (unsigned char)(rnd() % 8);
			break;
		default: /* a control or high byte put into the body */
			bad[WIRE_HDR + rnd() % (len - WIRE_HDR)] =
			    (unsigned char)(rnd() & 1 ? rnd() % 0x21 : 0x7f + rnd() % 0x81);
		}
		long want = ref_check(bad, blen, &rtel);
		if (want == -2)
			continue;
		long got = wire_check_telemetry(bad, blen, &tel);
		cr_assert_eq(got, want, "mutated message %d: %ld, reference %ld", k,
		    got, want);
		if (got >= 0)
			cr_assert_eq(tel, rtel);
		else
			rejected++;
		compared++;
	}
	cr_expect_gt(compared, 15000);
	cr_expect_gt(rejected, 5000, "the mutations reject some messages");
}

/* A stage as filter/main.c sets it up, writing to a real shm channel of
 * 512-byte messages (so batches fill and are sent in the middle of a
 * message), or to no out-queue. */
static char objname[CHAN_NAME_MAX];
static struct chan *rd;
static struct stage st;
static struct filter flt;
static int flushes;

static void
count_flush(struct stage *s)
{
	flushes++;
	filter_flush(s);
}

static const struct stage_ops filter_ops = {
	.prog = "test", .default_name = "test",
	.on_record = filter_record, .on_flush = count_flush,
	.on_msg = filter_msg, .needs_in = 1, .takes_statsd = 1,
};

static void
setup_stage(void)
{
	memset(&st, 0, sizeof(st));
	st.ops = &filter_ops;
	st.ctx = &flt;
	st.stats = &st.local;
	st.slot = -1;
	st.in_name = "in";
	st.name = "test";
	char inst[32];
	snprintf(inst, sizeof(inst), "rp%dx", (int)getpid());
	cr_assert_eq(chan_objname(objname, sizeof(objname), inst, "out"), 0);
	struct chan_attr a = { CHAN_SHM, WIRE_MSG_MIN, 256 };
	cr_assert_eq(chan_create(&a, objname), 0, "chan_create %s: %s", objname,
	    strerror(errno));
	rd = chan_open(CHAN_SHM, objname, CHAN_READ);
	cr_assert_not_null(rd);
	st.out[0] = chan_open(CHAN_SHM, objname, CHAN_WRITE);
	cr_assert_not_null(st.out[0]);
	st.out_name[0] = "out";
	st.out_slot[0] = -1;
	st.nout = 1;
	void *b = malloc(WIRE_MSG_MIN);
	cr_assert_not_null(b);
	wire_writer_init(&st.w, b, WIRE_MSG_MIN);
}

static void
teardown_stage(void)
{
	if (rd != NULL)
		chan_close(rd);
	if (st.nout > 0)
		chan_close(st.out[0]);
	free(st.w.buf);
	if (objname[0] != '\0')
		chan_unlink(CHAN_SHM, objname);
	rd = NULL;
}

/* A random message of telemetry (names of 1..40 bytes, values around
 * the limit), statsd metrics, meta, report, Flush and Stop records. */
static size_t
random_msg(unsigned char *msg, size_t cap, int stops)
{
	struct wire_writer w;
	wire_writer_init(&w, msg, cap);
	for (;;) {
		char name[48];
		unsigned char rec[WIRE_REC_MAX];
		size_t n = random_name(name, 40), size = 0;
		unsigned t = rnd() % 32;
		int r;
		if (t == 0) {
			r = wire_put(&w, WIRE_FLUSH, NULL, 0, rnd() % 5000);
		} else if (t == 1 && stops) {
			r = wire_put(&w, WIRE_STOP, NULL, 0, 0);
		} else if (t == 2) {
			size = wire_encode_statsd(rec, 1, 0, "a.b", 3, 2.5, 1, NULL, 0);
			r = wire_put_raw(&w, rec, size);
		} else if (t == 3) {
			struct wire_meta m = { 1, 2, 3 };
			size = wire_encode_meta(rec, &m);
			r = wire_put_raw(&w, rec, size);
		} else {
			r = wire_put(&w, WIRE_TELEMETRY, name, n,
			    rnd() % 4 == 0 ? rnd() : 90 + rnd() % 20);
		}
		if (r == -1)
			break;
	}
	size_t len = wire_finish(&w);
	uint32_t tel;
	cr_assert_geq(wire_check_telemetry(msg, len, &tel), 0);
	return len;
}

/* What the filter did before it had filter_msg: each record through the
 * skeleton's rule, the kept ones encoded again. Appends the records it
 * passes on to out; returns 1 at a Stop. */
static int
ref_filter(const unsigned char *msg, const struct filter *f,
    unsigned char *out, size_t *olen, uint64_t *kept, uint64_t *dropped,
    uint64_t *nflush)
{
	struct wire_reader r;
	struct wire_rec rec;
	wire_reader_init(&r, msg);
	while (wire_next(&r, &rec)) {
		const unsigned char *src = rec.raw;
		size_t size = rec.size;
		unsigned char flush[WIRE_REC_HDR];
		switch (rec.type) {
		case WIRE_TELEMETRY:
			if (!(f->below ? rec.value <= f->limit : rec.value >= f->limit)) {
				(*dropped)++;
				continue;
			}
			(*kept)++;
			break;
		case WIRE_STATSD:
			(*kept)++;
			break;
		case WIRE_STATSD_META:
			break;
		case WIRE_FLUSH:
			flush[0] = WIRE_FLUSH;
			flush[1] = 0;
			memcpy(flush + 2, &rec.value, 4);
			src = flush;
			size = WIRE_REC_HDR;
			(*nflush)++;
			break;
		case WIRE_STOP:
			return 1;
		default:
			continue;
		}
		memcpy(out + *olen, src, size);
		*olen += size;
	}
	return 0;
}

/* Take every message the stage has sent; append their records to out. */
static void
drain(unsigned char *out, size_t *olen, uint64_t *nrec)
{
	static unsigned char m[WIRE_MSG_MIN];
	ssize_t n;
	while ((n = chan_recv(rd, m, sizeof(m), 0)) > 0) {
		uint32_t tel;
		long c = wire_check_telemetry(m, (size_t)n, &tel);
		cr_assert_geq(c, 0, "the filter sent a malformed message");
		memcpy(out + *olen, m + WIRE_HDR, (size_t)n - WIRE_HDR);
		*olen += (size_t)n - WIRE_HDR;
		*nrec += (uint64_t)c;
	}
	cr_assert_eq(n, 0);
}

static void
filter_against_reference(int below, uint32_t limit, int to_queue)
{
	static unsigned char msg[8192], want[1 << 22], got[1 << 22];
	flt = (struct filter){ below, 1, limit };
	size_t wlen = 0, glen = 0;
	uint64_t kept = 0, dropped = 0, nflush = 0, nrec = 0, filtered = 0;
	uint64_t out0 = st.out_total, nout0 = st.n_out;
	uint64_t filtered0 = stats_get(&st.stats->filtered) + st.n_filtered;
	for (int k = 0; k < 300; k++) {
		size_t len = random_msg(msg, 600 + rnd() % 7000, k % 3 == 0);
		int rs = ref_filter(msg, &flt, want, &wlen, &kept, &dropped, &nflush);
		flushes = 0;
		cr_assert_eq(filter_msg(&st, msg, len), rs, "message %d: Stop", k);
		if (to_queue) {
			cr_assert_eq(stage_push(&st), 0);
			drain(got, &glen, &nrec);
		}
		cr_assert_lt(wlen, sizeof(want) - 8192);
	}
	filtered = stats_get(&st.stats->filtered) + st.n_filtered - filtered0;
	cr_expect_eq(filtered, dropped, "booked filtered: %llu, reference %llu",
	    (unsigned long long)filtered, (unsigned long long)dropped);
	if (!to_queue) {
		cr_expect_eq(st.n_out - nout0, kept, "booked out without out-queues");
		return;
	}
	cr_expect_eq(st.out_total - out0, kept, "booked out: %llu, reference %llu",
	    (unsigned long long)(st.out_total - out0), (unsigned long long)kept);
	cr_assert_eq(glen, wlen, "bytes passed on: %zu, reference %zu", glen, wlen);
	cr_expect_eq(memcmp(got, want, wlen), 0, "records passed on");
	(void)nrec;
}

Test(readpath, filter_below, .init = setup_stage, .fini = teardown_stage)
{
	filter_against_reference(1, 100, 1);
}

Test(readpath, filter_above, .init = setup_stage, .fini = teardown_stage)
{
	filter_against_reference(0, 100, 1);
}

Test(readpath, filter_edges, .init = setup_stage, .fini = teardown_stage)
{
	filter_against_reference(1, 0, 1);
	filter_against_reference(0, UINT32_MAX, 1);
	filter_against_reference(0, 0, 1);
	filter_against_reference(1, UINT32_MAX, 1);
}

Test(readpath, filter_without_out_queue)
{
	memset(&st, 0, sizeof(st));
	st.ops = &filter_ops;
	st.ctx = &flt;
	st.stats = &st.local;
	filter_against_reference(1, 100, 0);
}

/* cma_msg against cma_add record by record, and a Flush sees the records
 * before it applied. */
static struct egress eg;
static uint64_t pending_at_flush, flush_calls;

static void
cma_test_flush(struct stage *s)
{
	struct egress *e = s->ctx;
	pending_at_flush = e->pending;
	flush_calls++;
}

static const struct stage_ops cma_ops = {
	.prog = "test", .default_name = "test",
	.on_flush = cma_test_flush, .on_msg = cma_msg, .needs_in = 1,
	.holds_records = 1,
};

struct avg {
	char name[48];
	size_t len;
	struct cma c;
};

Test(readpath, cma_msg_matches_cma_add)
{
	static unsigned char msg[8192];
	static struct avg ref[64];
	char names[64][48];
	size_t lens[64];
	for (int i = 0; i < 64; i++)
		lens[i] = random_name(names[i], 40);
	memset(&st, 0, sizeof(st));
	memset(&eg, 0, sizeof(eg));
	st.ops = &cma_ops;
	st.ctx = &eg;
	st.stats = &st.local;
	eg.max_names = 1000;
	eg.names = names_new(sizeof(struct cma), eg.max_names);
	cr_assert_not_null(eg.names);
	uint64_t applied = 0;
	for (int k = 0; k < 200; k++) {
		struct wire_writer w;
		wire_writer_init(&w, msg, sizeof(msg));
		uint64_t before_flush = 0;
		int flushed = 0;
		for (;;) {
			unsigned i = rnd() % 64, t = rnd() % 500;
			uint32_t v = rnd();
			if (t == 0 && !flushed) {
				if (wire_put(&w, WIRE_FLUSH, NULL, 0, 1000) == -1)
					break;
				flushed = 1;
				continue;
			}
			if (wire_put(&w, WIRE_TELEMETRY, names[i], lens[i], v) == -1)
				break;
			cma_add(&ref[i].c, v);
			if (!flushed)
				before_flush++;
		}
		size_t len = wire_finish(&w);
		uint64_t p0 = eg.pending, calls = flush_calls;
		cr_assert_eq(cma_msg(&st, msg, len), 0);
		applied += w.count - (uint32_t)flushed;
		cr_assert_eq(eg.pending, applied, "applied records booked");
		if (flushed) {
			cr_assert_eq(flush_calls, calls + 1);
			cr_assert_eq(pending_at_flush, p0 + before_flush,
			    "what came before the Flush is applied before it");
		}
	}
	for (int i = 0; i < 64; i++) {
		int created;
		struct cma *c = names_get(eg.names, names[i], lens[i], &created);
		cr_assert_not_null(c);
		if (ref[i].c.n == 0)
			continue;
		cr_expect_eq(created, 0);
		cr_expect_eq(c->n, ref[i].c.n, "name %d count", i);
		cr_expect(memcmp(&c->mean, &ref[i].c.mean, sizeof(double)) == 0,
		    "name %d: mean %.17g, reference %.17g", i, c->mean, ref[i].c.mean);
	}
	names_free(eg.names, NULL);
}

/* The receive loop's nap (common/stage.c): only while messages come
 * faster than one per nap bound and the queue was emptied; long enough
 * for half of a deep queue (two fifths of a queue of 10 or fewer) at the
 * rate seen; never past the bound (1 ms for a shallow queue, 4 ms for a
 * ring of the default 24 slots, more for a deeper one). */
Test(readpath, gather_nap)
{
	cr_expect_eq(stage_gather_msgs(10), 4, "an mqueue of 10");
	cr_expect_eq(stage_gather_msgs(24), 12, "a ring of 24");
	cr_expect_eq(stage_gather_msgs(2), 1);
	cr_expect_eq(stage_gather_nap(8, 1000, 10, 1, 10), 500,
	    "8 in 1 ms: 4 in 0.5 ms");
	cr_expect_eq(stage_gather_nap(8, 1000, 10, 1, 24), 1500,
	    "12 in 1.5 ms");
	cr_expect_eq(stage_gather_nap(4, 1000, 10, 1, 10), 1000);
	cr_expect_eq(stage_gather_nap(1, 300, 300, 1, 10), 1000,
	    "capped at 1 ms on a shallow queue");
	cr_expect_eq(stage_gather_nap(1, 1000, 300, 1, 24), STAGE_GATHER_RING_US,
	    "capped");
	cr_expect_eq(stage_gather_nap(1, 1000, 300, 1, 96), 16000,
	    "a ring of 96 slots: capped at four times the default's bound");
	cr_expect_eq(stage_gather_nap(64, 1000, 0, 1, 10), 62);
	cr_expect_eq(stage_gather_nap(3, 1000, 10, 0, 10), 0,
	    "queue not emptied: a stage behind does not nap");
	cr_expect_eq(stage_gather_nap(1, 5000, 1000, 1, 10), 0,
	    "slow traffic waits on the queue");
	cr_expect_eq(stage_gather_nap(1, 9000, STAGE_GATHER_RING_US, 1, 24), 0,
	    "a wait as long as the bound: slow traffic");
	cr_expect_eq(stage_gather_nap(1, 9000, 4000, 1, 96), 16000,
	    "that wait is short for a deeper ring");
	cr_expect_eq(stage_gather_nap(0, 100000, 100000, 1, 24), 0, "idle");
}

/* A stage that passes records on ends its nap 1 ms before the next Flush
 * tick (stats_seg.flush_next_ms: CLOCK_MONOTONIC ms, low 32 bits), takes
 * what comes at once in that last millisecond, and naps as it would when
 * there is no schedule or the tick is past. */
/* The nap's bound grows with a ring's depth, from the default's, and
 * stops at STAGE_GATHER_MAX_US; a queue of 10 or fewer keeps 1 ms. */
Test(readpath, gather_bound_follows_depth)
{
	cr_expect_eq(stage_gather_max_us(2), 1000);
	cr_expect_eq(stage_gather_max_us(10), 1000, "an mqueue of 10");
	cr_expect_eq(stage_gather_max_us(12), 2000);
	cr_expect_eq(stage_gather_max_us(CHAN_SHM_SLOTS_DEFAULT),
	    STAGE_GATHER_RING_US);
	cr_expect_eq(stage_gather_max_us(48), 8000);
	cr_expect_eq(stage_gather_max_us(96), STAGE_GATHER_MAX_US);
	cr_expect_eq(stage_gather_max_us(97), STAGE_GATHER_MAX_US);
	cr_expect_eq(stage_gather_max_us(65536), STAGE_GATHER_MAX_US,
	    "the deepest ring -s allows");
	for (size_t c = 11; c < 200; c++)
		cr_expect_leq(stage_gather_max_us(c), stage_gather_max_us(c + 1),
		    "not monotonic at %zu", c);
}

Test(readpath, nap_before_tick)
{
	long now = 5000000000L;              /* µs: 5 000 000 ms */
	uint32_t ms = (uint32_t)(now / 1000);
	cr_expect_eq(stage_nap_before_tick(3000, now, 0), 3000, "no schedule");
	cr_expect_eq(stage_nap_before_tick(3000, now, ms + 10), 3000,
	    "tick far off");
	cr_expect_eq(stage_nap_before_tick(3000, now, ms + 3), 2000,
	    "ends 1 ms before the tick");
	cr_expect_eq(stage_nap_before_tick(3000, now + 500, ms + 2), 500);
	cr_expect_eq(stage_nap_before_tick(3000, now + 200, ms + 1), 0,
	    "in the last millisecond");
	cr_expect_eq(stage_nap_before_tick(3000, now, ms - 5), 3000,
	    "tick past, not moved yet");
	cr_expect_eq(stage_nap_before_tick(0, now, ms + 3), 0);
	/* the low 32 bits wrap: a tick 3 ms ahead across the wrap */
	long wrap = ((long)UINT32_MAX - 1) * 1000L;
	cr_expect_eq(stage_nap_before_tick(3000, wrap, 1), 2000, "across the wrap");
}
