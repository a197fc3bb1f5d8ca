/* telem-ingest: the head of the pipeline. Receives `name value` datagrams
 * (or, with --protocol statsd, statsd lines: ingest/statsd.h) on UDP,
 * parses them in place, and fans every event out to all its out-queues,
 * one message per queue for everything received at once. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "ingest/parse.h"
#include "ingest/statsd.h"
#include "ingest/udp.h"
#include "log.h"
#include "stage.h"

/* Bytes of a bad line shown in its log line (escaped, then "..."). */
#define BAD_LINE_SHOWN 60

/* Longest wait in poll before looking at stage_stopping again. */
#define RECV_POLL_MS 100

struct ingest {
	const char *host, *port;
	uint32_t rcvbuf;
	int fd[UDP_MAX_SOCKS];     /* --udp-fd: sockets to take over */
	size_t nfd;
	struct udp udp;
	struct udp_batch *batch;
	/* The events (telem or statsd) parsed straight into the out-queues'
	 * batch (st->w, or `none` without out-queues) and not yet booked in
	 * `in`: the records from index `booked` of the writer on. */
	uint32_t booked;
	struct wire_writer none;
	struct log_limit bad_log;
	int statsd;                /* --protocol statsd, and its parser */
	struct statsd_parser *sp;
	struct stage *st;
	int failed;                /* an emit failed for good */
	/* The gather (wait_readable): datagram bytes a nanosecond over the
	 * last read's interval, when that read ended, the bound, and the
	 * bytes a gather is for (fill_bytes). */
	double rate;
	long long read_at, gather_max;
	size_t fill;
};

/* How long datagrams are left to gather in the kernel's socket buffer once
 * one is waiting, before ingest reads them all. Every message ingest sends
 * wakes the four stages downstream, and a wake-up costs microseconds: read
 * at once, a datagram or two per message, the pipeline spent 2-3 times the
 * CPU of a bare receiver. So ingest waits until, at the rate datagrams
 * came in lately, as many messages as the stages downstream let gather
 * (stage_gather_msgs of the smallest out-queue: 4 for a 10-message
 * mqueue, 12 for a 24-slot ring) have gathered (GATHER_FILL of them;
 * fill_bytes), at least LINGER_NS and at most the gather bound
 * (gather_max_ns); busier -- its last read took that much -- it reads on
 * at once. Nothing leaves the kernel's buffer meanwhile (a
 * killed ingest loses none of it). Part of a queue, not one message: a
 * wake-up, here or downstream, costs a context switch (some 15 us on the
 * project's 2-vCPU VM, and a nap with the wake-up after it 30-80 us of
 * CPU: README, Performance), and the stages downstream nap for as much of
 * their queue (common/stage.c).
 *
 * Reports come only at a Flush tick, and a value belongs to the report of
 * the first tick after it arrived. The supervisor's ticks fall on a grid
 * it publishes (stats_seg.flush_next_ms, supervisor/loop.c), and a gather
 * always ends TICK_AHEAD_NS before the next tick. The Flush goes into
 * the flush stages' queues (in the built-in pipeline the filters', which
 * ingest writes: what it sent is ahead of the Flush there); stages
 * between ingest and a flush stage have TICK_AHEAD_NS to pass it on. A
 * datagram that arrives within TICK_AHEAD_NS of a tick waits LINGER_NS,
 * as every datagram did when ingest gathered for a fixed millisecond.
 * Without a published schedule (no supervisor) every gather is LINGER_NS.
 * docs/design.md §5. */
#define LINGER_NS 1000000LL
#define GATHER_MAX_NS 10000000LL
#define TICK_AHEAD_NS 3000000LL
#define GATHER_FILL 0.75
/* The receive buffer GATHER_MAX_NS is sized for: --rcvbuf's default of
 * 4 MiB, which the kernel doubles. A small datagram takes about 830 bytes
 * of it (the kernel's truesize on loopback), so 8 MiB hold about 10 000
 * datagrams, 20 ms at 500 000 datagrams/s (bench-loadgen's flat out
 * here); a gather of 10 ms fills half of it even if a burst at that rate
 * starts just as the gather does. A smaller buffer gets a proportionally
 * shorter bound, never under LINGER_NS. */
#define GATHER_RCVBUF (4LL << 20)

/* The bytes a gather is for: stage_gather_msgs of the smallest
 * out-queue's capacity in messages (one message without out-queues). */
static size_t
fill_bytes(const struct stage *st)
{
	size_t msgs = 1;
	for (size_t i = 0; i < st->nout; i++) {
		size_t m = stage_gather_msgs(chan_capacity(st->out[i]));
		if (i == 0 || m < msgs)
			msgs = m;
	}
	return (st->nout > 0 ? st->w.cap : WIRE_MSG_MIN) * msgs;
}

/* The gather bound for a receive buffer of rcvbuf bytes (udp.rcvbuf, half
 * what the kernel reserves). */
static long long
gather_max_ns(long long rcvbuf)
{
	long long g = rcvbuf >= GATHER_RCVBUF ? GATHER_MAX_NS :
	    GATHER_MAX_NS * rcvbuf / GATHER_RCVBUF;
	return g < LINGER_NS ? LINGER_NS : g;
}

static long long
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* How long to let datagrams gather from `now`: the fill time at `rate`
 * (bytes a nanosecond; 0: unknown or idle) of a message of cap bytes,
 * within [LINGER_NS, gmax], ending TICK_AHEAD_NS before the next tick
 * when next_ms (CLOCK_MONOTONIC ms, low 32 bits; 0: none known) is
 * given, else LINGER_NS. */
static long long
gather_ns(long long now, double rate, size_t cap, long long gmax,
    uint32_t next_ms)
{
	if (next_ms == 0)
		return LINGER_NS;
	long long g = rate > 0 ? (long long)(GATHER_FILL * (double)cap / rate) :
	    gmax;
	if (g > gmax)
		g = gmax;
	if (g < LINGER_NS)
		g = LINGER_NS;
	/* The tick as a full time: its low 32 bits against now's. */
	long long now_ms = now / 1000000;
	long long tick = (now_ms + (int32_t)(next_ms - (uint32_t)now_ms)) *
	    1000000LL;
	long long left = tick - TICK_AHEAD_NS - now;
	if (left < 0)
		return LINGER_NS;  /* within TICK_AHEAD_NS of the tick, or
		                    * the supervisor has not moved it yet */
	return g < left ? g : left;
}

enum { OPT_HOST = 256, OPT_PORT, OPT_RCVBUF, OPT_UDP_FD, OPT_PROTOCOL };

static const struct option opts[] = {
	{ "host", required_argument, NULL, OPT_HOST },
	{ "port", required_argument, NULL, OPT_PORT },
	{ "rcvbuf", required_argument, NULL, OPT_RCVBUF },
	{ "udp-fd", required_argument, NULL, OPT_UDP_FD },
	{ "protocol", required_argument, NULL, OPT_PROTOCOL },
	{ NULL, 0, NULL, 0 },
};

static int
ingest_option(struct stage *st, int opt, const char *arg)
{
	struct ingest *g = st->ctx;
	uint32_t v;
	if (opt == OPT_PROTOCOL) {
		if (strcmp(arg, "telem") != 0 && strcmp(arg, "statsd") != 0) {
			log_warnx("--protocol %s: must be telem or statsd", arg);
			return -1;
		}
		g->statsd = arg[0] == 's';
	} else if (opt == OPT_HOST) {
		g->host = arg;
	} else if (opt == OPT_PORT) {
		if (stage_parse_u32(arg, &v) == -1 || v > 65535) {
			log_warnx("--port %s: must be 0..65535", arg);
			return -1;
		}
		g->port = arg;
	} else if (opt == OPT_UDP_FD) {
		if (stage_parse_u32(arg, &v) == -1 || v > 65535 || g->nfd == UDP_MAX_SOCKS) {
			log_warnx("--udp-fd %s: a file descriptor, at most %d times", arg,
			    UDP_MAX_SOCKS);
			return -1;
		}
		g->fd[g->nfd++] = (int)v;
	} else {
		if (stage_parse_u32(arg, &g->rcvbuf) == -1 || g->rcvbuf > INT32_MAX / 2 ||
		    g->rcvbuf < UDP_RCVBUF_MIN) {
			log_warnx("--rcvbuf %s: must be %d..1073741823 bytes", arg,
			    UDP_RCVBUF_MIN);
			return -1;
		}
	}
	return 0;
}

static int
ingest_init(struct stage *st)
{
	struct ingest *g = st->ctx;
	int permanent;
	g->batch = malloc(sizeof(*g->batch));
	g->st = st;
	if (g->statsd) {
		g->sp = malloc(sizeof(*g->sp));
		if (g->sp != NULL)
			statsd_parser_init(g->sp, STATSD_STRICT);
	}
	if (st->nout == 0) {
		/* room for the largest record after the header */
		size_t cap = WIRE_HDR + WIRE_REC_MAX;
		void *buf = malloc(cap);
		if (buf == NULL)
			fatal(EXIT_TEMPORARY, "malloc");
		wire_writer_init(&g->none, buf, cap);
	}
	if (g->batch == NULL || (g->statsd && g->sp == NULL))
		fatal(EXIT_TEMPORARY, "malloc");
	if (g->nfd > 0) {
		/* The supervisor's sockets: the kernel counted drops on them
		 * before we came (while no ingest ran, say), and
		 * `dropped_dgrams` has what earlier ingests saw of that; raise
		 * it to the total (only this process writes it). */
		uint64_t drops;
		if (udp_adopt(&g->udp, g->fd, g->nfd, &drops) == -1)
			exit(EXIT_PERMANENT);
		if (stats_get(&st->stats->dropped_dgrams) < drops)
			atomic_store(&st->stats->dropped_dgrams, drops);
		udp_log_listening(&g->udp, g->udp.n > 1 ?
		    " (sockets of the supervisor)" : " (socket of the supervisor)");
	} else {
		if (udp_open(&g->udp, g->host, g->port, (int)g->rcvbuf,
		    &permanent) == -1)
			exit(permanent ? EXIT_PERMANENT : EXIT_TEMPORARY);
		udp_log_listening(&g->udp, "");
	}
	g->gather_max = gather_max_ns(g->udp.rcvbuf);
	g->fill = fill_bytes(st);
	return 0;
}

/* The rate limit of the bad-input lines, passed once per datagram with
 * bad lines (or statsd metrics) in it: returns what log_limit_pass does,
 * and counts every bad one of a silenced datagram as suppressed, so that
 * the lines' counts and their "(N more ...)" add up to ingest's `bad`. */
static long long
bad_log_pass(struct ingest *g, unsigned long long bad)
{
	long long s = log_limit_pass(&g->bad_log, 1000);
	if (s < 0)
		g->bad_log.suppressed += bad - 1;
	return s;
}

/* The line a user can act on: which line, why, and how many more. */
static void
log_bad(const struct udp_batch *b, size_t k, size_t bad, long long suppressed)
{
	char more[64], text[4 * BAD_LINE_SHOWN + 8];
	const char *line, *why;
	size_t len;
	log_more(more, sizeof(more), suppressed,
	    "bad line(s) since the last of these lines");
	if (b->trunc[k]) {
		log_warnx("rejected a datagram longer than %d bytes, starting \"%s\""
		    "%s", UDP_DGRAM_MAX, log_escape(text, sizeof(text), b->buf[k],
		    b->len[k], BAD_LINE_SHOWN), more);
	} else if (parse_first_bad(b->buf[k], b->len[k], &line, &len, &why)) {
		log_warnx("rejected %zu bad line(s) of a datagram; the first, \"%s\": "
		    "%s%s", bad, log_escape(text, sizeof(text), line, len,
		    BAD_LINE_SHOWN), why, more);
	}
}

/* Book the records parsed into w since the last booking in `in` (and in
 * the batch's count of records the books count, which stage_push stores
 * in `out`); without out-queues they are passed on there and then. */
static void
book_parsed(struct stage *st, struct ingest *g, struct wire_writer *w)
{
	uint32_t n = w->count - g->booked;
	if (n > 0)
		stats_add(&st->stats->in, n);
	if (st->nout > 0) {
		st->w_tel += n;
		g->booked = w->count;
	} else {
		st->n_out += n;
		wire_writer_reset(w);
		g->booked = 0;
	}
}

/* parse_encode's writer is full: book it, then send it. */
static int
batch_full(void *ctx, struct wire_writer *w)
{
	struct ingest *g = ctx;
	book_parsed(g->st, g, w);
	if (g->st->nout == 0)
		return 0;
	int r = stage_push(g->st);
	g->booked = 0;
	return r;
}

/* Parse every datagram of a received batch straight into the out-queues'
 * batch, then book its events in `in`. The booking comes before anything
 * parsed is sent (a full batch is booked, then sent, as it fills; a send
 * may block on a full queue): from then on a kill books them as lost
 * (supervisor/spawn.c). The datagrams of a batch read by an ingest killed
 * between recvmmsg and the booking -- a few microseconds of parsing --
 * are the one loss no counter can show: the kernel has handed them over
 * and nothing else saw them. */
static int
ingest_batch(struct stage *st, struct ingest *g)
{
	const struct udp_batch *b = g->batch;
	struct wire_writer *w = st->nout > 0 ? &st->w : &g->none;
	for (size_t k = 0; k < b->n; k++) {
		long bad = b->trunc[k] ? 1 :
		    parse_encode(b->buf[k], b->len[k], w, batch_full, g);
		if (bad == -1)
			return -1;
		if (bad == 0)
			continue;
		st->n_bad += (uint64_t)bad;
		long long s = bad_log_pass(g, (unsigned long long)bad);
		if (s >= 0)
			log_bad(b, k, (size_t)bad, s);
	}
	book_parsed(st, g, w);
	return 0;
}

/* One good metric of statsd_parse, encoded straight into the out-queues'
 * batch as ingest_batch's lines are: a full batch is booked, then sent. */
static void
take_metric(void *ctx, const struct statsd_metric *m)
{
	struct ingest *g = ctx;
	struct stage *st = g->st;
	struct wire_writer *w = st->nout > 0 ? &st->w : &g->none;
	size_t member_len = m->type == STATSD_SET ? m->member_len : 0;
	size_t size = WIRE_REC_HDR + m->key_len + WIRE_STATSD_BODY + member_len;
	if (g->failed)
		return;
	if (w->len + size > w->cap) {
		if (w->count == 0) {
			log_warnx("record of %zu bytes does not fit a message", size);
			g->failed = 1;
			return;
		}
		if (batch_full(g, w) == -1) {
			g->failed = 1;
			return;
		}
	}
	if (wire_encode_statsd(w->buf + w->len, m->type,
	    m->type == STATSD_GAUGE && m->delta ? WIRE_STATSD_DELTA : 0,
	    m->key, m->key_len, m->type == STATSD_SET ? 0 : m->value,
	    m->rate, m->member, member_len) == 0)
		return;  /* not reached: the parser bounds keys and members */
	w->len += size;
	w->count++;
}

/* The statsd line a user can act on, as log_bad does for telem lines:
 * the first bad line of a datagram (escaped and cut), why, how many more. */
static void
log_bad_statsd(struct ingest *g, const struct statsd_result *res)
{
	long long s = bad_log_pass(g, res->bad);
	if (s < 0)
		return;
	char more[64], text[4 * BAD_LINE_SHOWN + 8];
	log_more(more, sizeof(more), s,
	    "bad metric(s) since the last of these lines");
	log_warnx("rejected %llu bad statsd metric(s) of a datagram; the first "
	    "line, \"%s\": %s%s", (unsigned long long)res->bad,
	    log_escape(text, sizeof(text), res->bad_line, res->bad_len,
	    BAD_LINE_SHOWN), res->bad_why, more);
}

/* ingest_batch for statsd: every datagram through statsd_parse, the good
 * metrics as WIRE_STATSD records, then one WIRE_STATSD_META record with
 * the batch's counts for statsd's own counters. */
static int
statsd_batch(struct stage *st, struct ingest *g)
{
	const struct udp_batch *b = g->batch;
	struct wire_meta meta = { b->n, 0, 0 };
	for (size_t k = 0; k < b->n; k++) {
		struct statsd_result res;
		if (b->trunc[k]) {
			meta.lines++;
			meta.bad++;
			st->n_bad++;
			long long s = bad_log_pass(g, 1);
			if (s >= 0)
				log_bad(b, k, 1, s);
			continue;
		}
		statsd_parse(g->sp, b->buf[k], b->len[k], take_metric, g, &res);
		if (g->failed)
			return -1;
		meta.lines += res.lines;
		meta.bad += res.bad;
		if (res.bad > 0) {
			st->n_bad += res.bad;
			log_bad_statsd(g, &res);
		}
	}
	book_parsed(st, g, st->nout > 0 ? &st->w : &g->none);
	unsigned char rec[WIRE_REC_HDR + WIRE_META_BODY];
	int r = stage_emit_raw(st, WIRE_STATSD_META, rec,
	    wire_encode_meta(rec, &meta));
	if (st->nout > 0)
		g->booked = st->w.count;  /* the meta record is not booked */
	return r;
}

/* Received batches taken from one socket before the next is looked at. */
#define ROUNDS_MAX 16

/* What one pass over the sockets took in. */
struct drain {
	size_t dgrams, bytes;
	int more;       /* a socket still had full batches waiting */
};

/* Take in what waits on every socket now, then send it: a socket is read
 * until it has less than a full batch waiting (or ROUNDS_MAX batches), so
 * that everything ready leaves in as few messages as fit. Returns 0, or -1
 * when a stage or socket failed for good (logged). */
static int
ingest_poll_once(struct stage *st, struct ingest *g, struct drain *d)
{
	*d = (struct drain){ 0, 0, 0 };
	for (size_t i = 0; i < g->udp.n; i++) {
		int n = UDP_BATCH;
		for (int round = 0; n == UDP_BATCH; round++) {
			if (round == ROUNDS_MAX) {
				d->more = 1;
				break;
			}
			uint64_t drops;
			n = udp_recv(&g->udp, i, g->batch, &drops);
			if (n == -1) {
				log_warn("recvmmsg %s", g->udp.s[i].addr);
				return -1;
			}
			if (drops)
				stats_add(&st->stats->dropped_dgrams, drops);
			if (n > 0 && (g->statsd ? statsd_batch(st, g) :
			    ingest_batch(st, g)) == -1)
				return -1;
			d->dgrams += (size_t)n;
			for (int k = 0; k < n; k++)
				d->bytes += g->batch->len[k];
		}
	}
	if (d->dgrams == 0)
		return 0;
	int r = stage_push(st);
	g->booked = 0;
	return r;
}

/* Wait until a socket has a datagram, then let more gather (gather_ns).
 * While datagrams flow (the last read took some), the gather starts at
 * once without the poll: the next datagram is due within microseconds,
 * and a poll that sleeps for it costs a wake-up of its own, the kind
 * that crosses CPUs (bin/bench-wake), every round. That took ingest's
 * context switches from about 170 to 100 a second at 50k datagrams/s
 * (README, Performance, "Fewer wake-ups"). Once a read finds nothing,
 * the next wait polls again, so an idle ingest sleeps as before.
 * Returns 1 when something may wait, 0 on timeout or signal, -1 if poll
 * failed (logged). */
static int
wait_readable(struct stage *st, struct ingest *g, struct pollfd *pfd,
    size_t n, int flowing)
{
	int r = flowing ? 1 : poll(pfd, n, RECV_POLL_MS);
	if (r == -1 && errno != EINTR) {
		log_warn("poll");
		return -1;
	}
	if (r <= 0)
		return 0;
	uint32_t next = st->seg == NULL ? 0 :
	    atomic_load_explicit(&st->seg->flush_next_ms, memory_order_relaxed);
	long long ns = gather_ns(now_ns(), g->rate, g->fill, g->gather_max,
	    next);
	struct timespec ts = { ns / 1000000000LL, ns % 1000000000LL };
	(void)nanosleep(&ts, NULL);  /* EINTR: a stop, read what came */
	return 1;
}

/* How often the kernel's drop count is read, datagrams or not (udp_recv
 * reads it after every batch it takes; a burst that was all dropped
 * brings none). While ingest waits on a full
 * queue, the supervisor shows the count it reads from its own copy of
 * the sockets (supervisor/control.c). */
#define DROPS_POLL_MS 100

static void
sync_drops(struct stage *st, struct ingest *g)
{
	uint64_t d = udp_new_drops(&g->udp);
	if (d > 0)
		stats_add(&st->stats->dropped_dgrams, d);
}

static int
ingest_run(struct stage *st)
{
	struct ingest *g = st->ctx;
	struct pollfd pfd[UDP_MAX_SOCKS];
	struct drain d = { 0, 0, 0 };
	long long drops_at = 0;
	for (size_t i = 0; i < g->udp.n; i++)
		pfd[i] = (struct pollfd){ .fd = g->udp.s[i].fd, .events = POLLIN };
	stage_ready(st);
	while (!stage_stopping) {
		/* A backlog is read on at once; so is a socket that gave a
		 * gather's worth last time. */
		int r = d.more || d.bytes >= g->fill ? 1 :
		    wait_readable(st, g, pfd, g->udp.n, d.dgrams > 0);
		if (r == -1)
			return EXIT_TEMPORARY;
		if (r == 1 && ingest_poll_once(st, g, &d) == -1)
			return EXIT_TEMPORARY;
		if (d.dgrams > 0) {
			/* The rate since the last read: what came in while
			 * ingest waited and gathered. */
			long long t = now_ns();
			g->rate = t > g->read_at ?
			    (double)d.bytes / (double)(t - g->read_at) : 0;
			g->read_at = t;
		}
		long long now = clock_ms();
		if (now - drops_at >= DROPS_POLL_MS) {
			sync_drops(st, g);
			drops_at = now;
		}
	}
	sync_drops(st, g);
	/* Stopping: what the kernel already holds was sent before the stop,
	 * so it still goes in (bounded, in case senders keep sending). */
	for (int round = 0; round < 256; round++)
		if (ingest_poll_once(st, g, &d) == -1 || d.dgrams == 0)
			break;
	return 0;
}

static void
ingest_fini(struct stage *st)
{
	struct ingest *g = st->ctx;
	udp_close(&g->udp);
	free(g->batch);
	free(g->none.buf);
	free(g->sp);
}

int
main(int argc, char **argv)
{
	static const struct stage_ops ops = {
		.prog = "telem-ingest",
		.default_name = "ingest",
		.synopsis = "[--protocol telem|statsd] [--host H] [--port P] "
		            "[--rcvbuf BYTES] [--udp-fd FD]... ",
		.help = "      --protocol P     telem (`name value` lines, the default) or\n"
		        "                       statsd (statsd 0.9's lines; records for\n"
		        "                       telem-egress-statsd)\n"
		        "      --host H         address or name to bind, every address it\n"
		        "                       resolves to (default 127.0.0.1)\n"
		        "      --port P         UDP port (default 1990)\n"
		        "      --rcvbuf BYTES   socket receive buffer (default 4194304)\n"
		        "      --udp-fd FD      read this bound UDP socket instead of binding\n"
		        "                       (repeatable; telem-supervisor passes its own)\n",
		.longopts = opts,
		.option = ingest_option,
		.init = ingest_init,
		.run = ingest_run,
		.fini = ingest_fini,
	};
	struct ingest g = { .host = "127.0.0.1", .port = "1990", .rcvbuf = 4u << 20 };
	return stage_main(argc, argv, &ops, &g);
}
