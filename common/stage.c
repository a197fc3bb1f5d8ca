/* stage.c - the common life of a stage: options, channels, stats slot,
 * signals, readiness, and the receive loop that hands records to the
 * stage's callbacks and sends what they emit, one message per batch. */
#include "stage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "version.h"

volatile sig_atomic_t stage_stopping;

/* Once stopping, a full out-queue is retried this long before the batch is
 * given up (its records are in `out` but not in the reader's `in`: the
 * reader books them as lost), so a stage whose downstream is gone still
 * exits promptly. */
#define STOP_SEND_GRACE_MS 500
#define RECV_WAIT_MS 100

static void
on_stop_signal(int sig)
{
	(void)sig;
	stage_stopping = 1;
}

static int
install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop_signal; /* no SA_RESTART: waits end in EINTR */
	if (sigaction(SIGTERM, &sa, NULL) == -1 || sigaction(SIGINT, &sa, NULL) == -1)
		return -1;
	sa.sa_handler = SIG_IGN;
	return sigaction(SIGPIPE, &sa, NULL);
}

int
stage_parse_u32(const char *s, uint32_t *v)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || x > UINT32_MAX)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

/* Only what this stage takes: --in for a stage that reads a queue,
 * --out for one that writes any. */
static void
usage(const struct stage_ops *ops, FILE *f)
{
	fprintf(f,
	    "usage: %s %s[-i instance] [-n name] [-t mqueue|shm]\n"
	    "       %*s %s%s[--slot N] [--ready-fd FD]\n"
	    "%s"
	    "  -i, --instance NAME  IPC objects are /telem.NAME.* (default: default)\n"
	    "  -n, --name STAGE     stage name for logs (default: %s)\n"
	    "  -t, --transport T    mqueue (default) or shm\n"
	    "%s%s"
	    "      --slot N         add to counter slot N of /telem.INSTANCE.stats\n"
	    "      --ready-fd FD    write \"R\\n\" to FD once ready\n"
	    "  -v, --verbose        log debug lines too\n"
	    "  -q, --quiet          log warnings and errors only\n"
	    "  -V, --version        print the version and exit\n"
	    "  -h, --help           this text\n"
	    "Exit status: 0 stopped, 100 configuration error, 111 temporary failure.\n",
	    ops->prog, ops->synopsis, (int)strlen(ops->prog), "",
	    ops->needs_in ? "--in QUEUE " : "",
	    ops->no_out ? "" : "--out QUEUE... ", ops->help, ops->default_name,
	    ops->needs_in ? "      --in QUEUE       read from /telem.INSTANCE.QUEUE\n" : "",
	    ops->no_out ? "" :
	    "      --out QUEUE      write to /telem.INSTANCE.QUEUE (repeatable)\n");
}

enum { OPT_IN = 1000, OPT_OUT, OPT_SLOT, OPT_READY };

static const struct option common_opts[] = {
	{ "instance", required_argument, NULL, 'i' },
	{ "name", required_argument, NULL, 'n' },
	{ "transport", required_argument, NULL, 't' },
	{ "in", required_argument, NULL, OPT_IN },
	{ "out", required_argument, NULL, OPT_OUT },
	{ "slot", required_argument, NULL, OPT_SLOT },
	{ "ready-fd", required_argument, NULL, OPT_READY },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
};

#define NCOMMON (sizeof(common_opts) / sizeof(common_opts[0]))

/* Returns -1 to go on, else the exit status. */
static int
parse_args(struct stage *st, int argc, char **argv)
{
	const struct stage_ops *ops = st->ops;
	struct option opts[NCOMMON + 40];
	size_t n = 0;
	for (size_t i = 0; i < NCOMMON; i++)
		opts[n++] = common_opts[i];
	for (const struct option *o = ops->longopts; o && o->name && n < NCOMMON + 39; o++)
		opts[n++] = *o;
	memset(&opts[n], 0, sizeof(opts[n]));

	int c;
	uint32_t u;
	while ((c = getopt_long(argc, argv, "hi:n:t:vqV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(ops, stdout);
			return 0;
		case 'V':
			return version_print();
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		case 'q':
			log_set_level(LOG_LEVEL_WARN);
			break;
		case 'i':
			if (!chan_instance_ok(optarg)) {
				log_warnx("-i %s: must be " CHAN_INSTANCE_RULE, optarg);
				return EXIT_PERMANENT;
			}
			st->instance = optarg;
			break;
		case 'n':
			st->name = optarg;
			log_init(ops->prog, st->name);
			break;
		case 't':
			if (chan_kind_parse(optarg, &st->kind) == -1) {
				log_warnx("-t %s: transport must be mqueue or shm", optarg);
				return EXIT_PERMANENT;
			}
			break;
		case OPT_IN:
			if (!ops->needs_in) {
				log_warnx("--in %s: %s reads no queue", optarg, ops->prog);
				return EXIT_PERMANENT;
			}
			st->in_name = optarg;
			break;
		case OPT_OUT:
			if (ops->no_out) {
				log_warnx("--out %s: %s writes no queue", optarg, ops->prog);
				return EXIT_PERMANENT;
			}
			if (st->nout == STAGE_OUT_MAX) {
				log_warnx("--out: at most %d out-queues", STAGE_OUT_MAX);
				return EXIT_PERMANENT;
			}
			st->out_name[st->nout++] = optarg;
			break;
		case OPT_SLOT:
			if (stage_parse_u32(optarg, &u) == -1 || u >= STATS_SLOTS) {
				log_warnx("--slot %s: must be 0..%d", optarg, STATS_SLOTS - 1);
				return EXIT_PERMANENT;
			}
			st->slot = (int)u;
			break;
		case OPT_READY:
			if (stage_parse_u32(optarg, &u) == -1 || u > 65535) {
				log_warnx("--ready-fd %s: not a file descriptor", optarg);
				return EXIT_PERMANENT;
			}
			st->ready_fd = (int)u;
			break;
		case '?':
			usage(ops, stderr);
			return EXIT_PERMANENT;
		default:
			if (ops->option == NULL || ops->option(st, c, optarg) == -1)
				return EXIT_PERMANENT;
		}
	}
	if (optind < argc) {
		log_warnx("unexpected argument '%s'", argv[optind]);
		return EXIT_PERMANENT;
	}
	if (ops->needs_in && st->in_name == NULL) {
		log_warnx("--in QUEUE is required");
		return EXIT_PERMANENT;
	}
	return -1;
}

/* A queue that is missing or of the wrong kind is a configuration error;
 * anything else may pass. */
static int
open_status(int err)
{
	return err == ENOENT || err == EACCES || err == EPROTO || err == EINVAL ||
	    err == ENOTSUP ? EXIT_PERMANENT : EXIT_TEMPORARY;
}

static struct chan *
open_queue(struct stage *st, const char *queue, int mode, int *status)
{
	char obj[CHAN_NAME_MAX];
	if (chan_objname(obj, sizeof(obj), st->instance, queue) == -1) {
		log_warnx("queue name '%s' (instance '%s') is not valid", queue,
		    st->instance);
		*status = EXIT_PERMANENT;
		return NULL;
	}
	struct chan *c = chan_open(st->kind, obj, mode);
	if (c == NULL) {
		int e = errno;
		if (e == EPROTO && *chan_open_why() != '\0')
			log_warnx("open %s %s: %s", chan_kind_name(st->kind), obj,
			    chan_open_why());
		else
			log_warn("open %s %s", chan_kind_name(st->kind), obj);
		*status = open_status(e);
	}
	return c;
}

static void mark_all_sent(struct stage *st);

static int
open_all(struct stage *st)
{
	int status = EXIT_TEMPORARY;
	if (st->slot >= 0) {
		char obj[CHAN_NAME_MAX];
		if (chan_objname(obj, sizeof(obj), st->instance, "stats") == -1 ||
		    (st->seg = stats_attach(obj)) == NULL) {
			log_warn("attach stats segment of instance '%s'", st->instance);
			return open_status(errno);
		}
		st->stats = &st->seg->slot[st->slot];
	}
	if (st->in_name != NULL) {
		if ((st->in = open_queue(st, st->in_name, CHAN_READ, &status)) == NULL)
			return status;
		st->inbuf_cap = chan_msgsize(st->in);
		if ((st->inbuf = malloc(st->inbuf_cap)) == NULL) {
			log_warn("malloc");
			return EXIT_TEMPORARY;
		}
	}
	size_t cap = 0;
	for (size_t i = 0; i < st->nout; i++) {
		st->out[i] = open_queue(st, st->out_name[i], CHAN_WRITE, &status);
		if (st->out[i] == NULL)
			return status;
		if (cap == 0 || chan_msgsize(st->out[i]) < cap)
			cap = chan_msgsize(st->out[i]);
	}
	if (st->nout > 0) {
		void *buf = malloc(cap);
		if (buf == NULL) {
			log_warn("malloc");
			return EXIT_TEMPORARY;
		}
		wire_writer_init(&st->w, buf, cap);
	}
	/* The books (common/stats.h): go on numbering from what earlier
	 * runs of this stage sent; whatever of that did not reach a reader
	 * never will (they are dead), so say all of it was sent. */
	st->out_total = stats_get(&st->stats->out);
	/* A stage that holds its records (an egress) sends none of them on:
	 * its out-queues carry report records only, which the books do not
	 * count (common/wire.h), so its messages name no writer slot and
	 * its `out` stays what stage_commit booked. */
	for (size_t i = 0; i < st->nout; i++)
		st->out_slot[i] = st->seg != NULL && !st->ops->holds_records ?
		    stats_reader_of(st->seg, st->out_name[i]) : -1;
	atomic_store(&st->stats->unbooked_out,
	    st->ops->holds_records && st->nout > 0);
	if (st->seg != NULL && !st->ops->holds_records) {
		st->w.src = (uint8_t)st->slot;
		mark_all_sent(st);
	}
	return -1;
}

static void
close_all(struct stage *st)
{
	chan_close(st->in);
	free(st->inbuf);
	for (size_t i = 0; i < st->nout; i++)
		chan_close(st->out[i]);
	free(st->w.buf);
	stats_detach(st->seg);
}

/* Readiness is exactly the two bytes "R\n" (the supervisor's
 * SUP_READY_BYTES, supervisor/sup.h): anything else, or the fd closed
 * before both came, is a failed start there. */
void
stage_ready(struct stage *st)
{
	if (st->ready_fd < 0)
		return;
	ssize_t w;
	do
		w = write(st->ready_fd, "R\n", 2);
	while (w == -1 && errno == EINTR);
	if (w == -1)
		log_warn("write readiness to fd %d", st->ready_fd);
	else
		log_debug("ready (fd %d)", st->ready_fd);
	close(st->ready_fd);
	st->ready_fd = -1;
}

static int
send_msg(struct stage *st, size_t i, const void *msg, size_t len)
{
	for (;;) {
		/* Past the stop's grace a send is tried once, without waiting. */
		int late = stage_stopping && st->stop_deadline != 0 &&
		    clock_ms() >= st->stop_deadline;
		int r = chan_send(st->out[i], msg, len, late ? 0 : RECV_WAIT_MS);
		if (r == 0)
			return 0;
		if (r == -1 && errno != EINTR) {
			log_warn("send to queue %s", st->out_name[i]);
			return -1;
		}
		if (stage_stopping) {
			/* One grace for the whole stop, not one per batch: a
			 * stage with many batches behind a full queue still
			 * exits well within the supervisor's grace. */
			long long now = clock_ms();
			if (st->stop_deadline == 0)
				st->stop_deadline = now + STOP_SEND_GRACE_MS;
			else if (now >= st->stop_deadline) {
				/* stage_push sends to the queues in order and
				 * stops here: the ones after i get nothing. */
				log_warnx("queue %s still full at shutdown: batch of "
				    "%u records not sent%s", st->out_name[i],
				    st->w.count, i + 1 < st->nout ?
				    " to it nor to the queues after it" : "");
				return -1;
			}
		}
	}
}

/* After a send that gave up (at shutdown) or when this stage starts:
 * nothing of ours up to `out` is on its way any more, so a reader idle on
 * an empty queue books what it did not get as lost (common/stats.h). */
static void
mark_all_sent(struct stage *st)
{
	for (size_t i = 0; i < st->nout; i++)
		if (st->out_slot[i] >= 0)
			atomic_store(&st->stats->sent[st->out_slot[i]], st->out_total);
}

int
stage_push(struct stage *st)
{
	struct stats_slot *s = st->stats;
	if (st->w.count > 0) {
		/* The books of a message (common/stats.h): `out` first, in one
		 * store, then each queue, then its reader's `sent`. A kill in
		 * between leaves a gap that the reader books as lost. */
		uint64_t end = st->out_total + st->w_tel;
		st->w.seq = st->out_total;
		size_t len = wire_finish(&st->w);
		if (st->w_tel > 0) {
			st->out_total = end;
			atomic_store_explicit(&s->out, end, memory_order_release);
		}
		for (size_t i = 0; i < st->nout; i++) {
			if (send_msg(st, i, st->w.buf, len) == -1) {
				mark_all_sent(st);
				return -1;
			}
			/* Release: a reader that sees it, then an empty
			 * queue, knows the message has left the queue. */
			if (st->out_slot[i] >= 0)
				atomic_store_explicit(&s->sent[st->out_slot[i]], end,
				    memory_order_release);
		}
		wire_writer_reset(&st->w);
		st->w_tel = 0;
	}
	/* Once per round: what the stage's rule dropped, what was rejected,
	 * and what a stage without out-queues passed on. */
	if (st->n_filtered)
		stats_add(&s->filtered, st->n_filtered);
	if (st->n_bad)
		stats_add(&s->bad, st->n_bad);
	if (st->n_out && !st->ops->holds_records)
		stage_commit(st, st->n_out);
	st->n_out = st->n_bad = st->n_filtered = 0;
	return 0;
}

uint64_t
stage_books_id(const struct stage *st)
{
	if (st->seg == NULL)
		return 0;
	/* born spread over the word, so that no two definitions of one run
	 * meet; a run's id is a clock reading (common/stats.c). */
	return st->seg->run ^ st->stats->born * 0x9e3779b97f4a7c15ULL;
}

void
stage_commit(struct stage *st, uint64_t n)
{
	if (n == 0)
		return;
	st->out_total += n;
	atomic_store_explicit(&st->stats->out, st->out_total, memory_order_relaxed);
}

/* Two stores, out then lost; killed between them, the supervisor sets
 * lost again from the others (common/stats.h), so the books stay right. */
void
stage_book_saved(struct stage *st, const char *path, uint64_t run,
    uint64_t committed)
{
	if (st->seg == NULL || run != stage_books_id(st))
		return;  /* another run, or an earlier definition of the stage:
		          * those books are gone */
	uint64_t out = stats_get(&st->stats->out);
	uint64_t in = stats_in(st->stats), done = out +
	    stats_get(&st->stats->filtered) + stats_get(&st->stats->dropped);
	if (committed <= out || in < done)
		return;
	uint64_t d = committed - out;
	if (d > in - done)
		d = in - done;  /* never more out than taken */
	if (d == 0)
		return;
	uint64_t lost = stats_get(&st->stats->lost);
	stage_commit(st, d);
	atomic_store(&st->stats->lost, lost - (d < lost ? d : lost));
	log_info("state file %s holds %llu records saved but not booked before "
	    "the last exit: booked as out", path, (unsigned long long)d);
}

/* Two stores, out then lost, as in stage_book_saved: killed between
 * them, the supervisor sets lost from the others. */
uint64_t
stage_book_gone(struct stage *st, uint64_t held, int lose)
{
	if (st->seg == NULL)
		return 0;
	uint64_t out = stats_get(&st->stats->out);
	if (held >= out)
		return 0;
	uint64_t d = out - held;
	if (lose) {
		uint64_t lost = stats_get(&st->stats->lost);
		st->out_total = held;
		atomic_store(&st->stats->out, held);
		atomic_store(&st->stats->lost, lost + d);
	}
	return d;
}

void
stage_save_failed(struct stage *st, const struct state_writer *w,
    struct log_limit *lim)
{
	long long k = log_limit_pass(lim, 10000);
	char more[64], step[2 * sizeof(w->tmp) + 16];
	if (k >= 0)
		log_warn("save state to %s (records stay in flight)%s: %s", w->path,
		    log_more(more, sizeof(more), k, "failures since the last line"),
		    state_failed(w, step, sizeof(step)));
	atomic_store(&st->stats->save_failing, 1);
}

void
stage_save_done(struct stage *st)
{
	atomic_store(&st->stats->save_failing, 0);
}

int
stage_emit(struct stage *st, uint8_t type, const char *name, size_t name_len,
    uint32_t value)
{
	if (st->nout == 0) {
		if (wire_counts(type))
			st->n_out++;
		return 0;
	}
	if (wire_put(&st->w, type, name, name_len, value) == -1) {
		if (stage_push(st) == -1)
			return -1;
		if (wire_put(&st->w, type, name, name_len, value) == -1) {
			log_warnx("record of %zu bytes does not fit a message",
			    name_len);
			return -1;
		}
	}
	if (wire_counts(type))
		st->w_tel++;
	return 0;
}

int
stage_emit_raw(struct stage *st, uint8_t type, const void *rec, size_t size)
{
	if (st->nout == 0) {
		if (wire_counts(type))
			st->n_out++;
		return 0;
	}
	if (wire_put_raw(&st->w, rec, size) == -1) {
		if (stage_push(st) == -1)
			return -1;
		if (wire_put_raw(&st->w, rec, size) == -1) {
			log_warnx("record of %zu bytes does not fit a message", size);
			return -1;
		}
	}
	if (wire_counts(type))
		st->w_tel++;
	return 0;
}

/* Handle one checked and booked message. Returns TAKE_STOP after a Stop
 * record, else TAKE_GOT. What it emits is sent by the caller. */
enum { TAKE_FAIL = -1, TAKE_NONE, TAKE_GOT, TAKE_STOP };

static inline int
take_record(struct stage *st, const struct wire_rec *rec)
{
	switch (rec->type) {
	case WIRE_TELEMETRY:
		st->ops->on_record(st, rec);
		break;
	case WIRE_STATSD:
	case WIRE_STATSD_META:
		if (st->ops->takes_statsd) {
			st->ops->on_record(st, rec);
		} else if (rec->type == WIRE_STATSD) {
			stats_add(&st->stats->dropped, 1);
			long long s = log_limit_pass(&st->statsd_log, 60000);
			if (s >= 0)
				log_warnx("statsd metric on queue %s dropped: this "
				    "stage takes only telem records (%lld more since "
				    "the last line)", st->in_name, s);
		}
		break;
	case WIRE_REPORT:
		/* Not in the books (common/wire.h); a stage that does
		 * not read reports passes over them. */
		if (st->ops->takes_reports)
			st->ops->on_record(st, rec);
		break;
	case WIRE_FLUSH:
		st->flush_ms = rec->value;
		st->ops->on_flush(st);
		break;
	case WIRE_STOP:
		return 1;
	}
	return 0;
}

int
stage_take_record(struct stage *st, const struct wire_rec *r)
{
	return take_record(st, r);
}

static int
handle_msg(struct stage *st, const void *msg, size_t len)
{
	if (st->ops->on_msg != NULL)
		return st->ops->on_msg(st, msg, len) ? TAKE_STOP : TAKE_GOT;
	struct wire_reader r;
	struct wire_rec rec;
	wire_reader_init(&r, msg);
	while (wire_next(&r, &rec)) {
		if (rec.type == WIRE_TELEMETRY)  /* the common record, no switch */
			st->ops->on_record(st, &rec);
		else if (take_record(st, &rec))
			return TAKE_STOP;
	}
	return TAKE_GOT;
}

/* The name of the writer in stats slot w, for messages: print it with
 * %.*s and STATS_NAME_MAX, as the segment may not hold its NUL. */
static const char *
writer_name(const struct stage *st, unsigned w)
{
	return st->seg != NULL && st->seg->slot[w].stage[0] != '\0' ?
	    st->seg->slot[w].stage : "?";
}

/* Book a checked message holding `ntel` telemetry records in `in`, before
 * any record of it is handled: one store (common/stats.h). Returns 0, or
 * -1 when it must be dropped (counted bad): a writer slot out of range, a
 * message already taken, or one past what its writer has sent. */
static int
book_msg(struct stage *st, const void *msg, uint32_t ntel, struct log_limit *lim)
{
	uint8_t src;
	uint64_t seq, gap;
	wire_origin(msg, &src, &seq);
	if (src == WIRE_SRC_NONE) {
		if (ntel > 0)
			stats_add(&st->stats->in, ntel);
		return 0;
	}
	int rc = STATS_BEYOND;
	if (src < STATS_SLOTS) {
		/* Acquire: the writer's `out` covers whatever it has sent. */
		uint64_t wout = st->seg == NULL ? UINT64_MAX :
		    atomic_load_explicit(&st->seg->slot[src].out, memory_order_acquire);
		rc = stats_take(st->stats, src, seq, ntel, wout, &gap);
	}
	if (rc != 0) {
		stats_add(&st->stats->bad, 1);
		long long n = log_limit_pass(lim, 1000);
		if (n >= 0)
			log_warnx("message of writer slot %u, records %llu+%u, on queue "
			    "%s %s: dropped (%lld more suppressed)", src,
			    (unsigned long long)seq, ntel, st->in_name,
			    src >= STATS_SLOTS ? "names no slot" : rc == STATS_DUP ?
			    "was taken already" : "is past what that writer sent", n);
		return -1;
	}
	if (gap > 0) {
		long long n = log_limit_pass(&st->gap_log, 1000);
		if (n >= 0)
			log_warnx("%llu records of %.*s before its record %llu never "
			    "reached us (taken by a killed %s or not sent by a killed "
			    "%.*s): counted lost (%lld more such lines suppressed)",
			    (unsigned long long)gap, STATS_NAME_MAX, writer_name(st, src),
			    (unsigned long long)seq, st->name, STATS_NAME_MAX,
			    writer_name(st, src), n);
	}
	return 0;
}

/* On an empty queue (idle, or at a Stop): book as lost what the writers
 * say they sent us and nobody alive took (common/stats.h). The order
 * matters: what the writers sent first, then the queue's depth. */
static void
settle_gaps(struct stage *st)
{
	uint64_t sent[STATS_SLOTS];
	if (st->seg == NULL || st->in == NULL)
		return;
	stats_sent_to(st->seg, st->slot, sent);
	long depth = chan_depth(st->in);
	if (depth != 0) {
		if (depth < 0)
			log_warn("depth of queue %s", st->in_name);
		return;
	}
	uint64_t gap = stats_close_gaps(st->stats, sent);
	if (gap > 0)
		log_warnx("%llu records sent to queue %s never reached us (taken by "
		    "a killed %s, or not sent by a writer that gave up at "
		    "shutdown): counted lost", (unsigned long long)gap,
		    st->in_name, st->name);
}

/* Receive one message, waiting up to wait_ms, and handle it. Returns
 * TAKE_GOT, TAKE_STOP after a Stop record, TAKE_NONE when nothing came
 * (or a signal ended the wait), TAKE_FAIL when the queue failed for good. */
static int
take_msg(struct stage *st, int wait_ms, struct log_limit *lim)
{
	ssize_t n = chan_recv(st->in, st->inbuf, st->inbuf_cap, wait_ms);
	if (n == 0 || (n == -1 && errno == EINTR))
		return TAKE_NONE;
	if (n == -1 && errno != EBADMSG) {
		log_warn("receive from queue %s", st->in_name);
		return TAKE_FAIL;
	}
	/* Anyone with our uid can write to the queue: a message that is not
	 * one is counted and dropped, never fatal (EBADMSG: the channel
	 * already dropped it as empty or torn). */
	uint32_t ntel;
	if (n == -1 || wire_check_telemetry(st->inbuf, (size_t)n, &ntel) < 0) {
		stats_add(&st->stats->bad, 1);
		long long s = log_limit_pass(lim, 1000);
		char more[64];
		if (s >= 0)
			log_warnx("malformed message of %zd bytes on queue %s "
			    "dropped%s", n < 0 ? 0 : n, st->in_name,
			    log_more(more, sizeof(more), s, "in the last second"));
		return TAKE_GOT;
	}
	if (book_msg(st, st->inbuf, ntel, lim) == -1)
		return TAKE_GOT;
	return handle_msg(st, st->inbuf, (size_t)n);
}

/* Wait for a message, then take the ones already queued behind it too
 * (without waiting) before sending: when a stage falls behind, its output
 * comes in fewer, fuller messages. A full batch is sent by stage_emit on
 * its own.
 *
 * Gathering. While messages come faster than one per nap bound, a stage
 * that has emptied its queue naps before it looks again, long enough for
 * stage_gather_msgs of them to gather at the rate of the last round: half
 * a queue deeper than SHALLOW messages, at most 1/6 ms a slot (12 of a
 * ring's 24 slots, the default, in 4 ms; 48 of 96 in 16 ms, the most
 * any ring gets: stage_gather_max_us); two fifths of a shallow one, at
 * most SHALLOW_MAX_US (4 of an mqueue's 10, 1 ms). It then takes them at
 * once instead of sleeping on the queue and being woken by each message
 * as it comes. A wake-up costs the woken stage a context switch and its
 * writer a system call; on the project's 2-vCPU VM a switch costs some
 * 15 us (and a nap with the wake-up after it 30-80 us of CPU, a wake-up
 * across CPUs the most: README, and bin/bench-wake measures it anywhere),
 * and work that touches much memory runs slower for a while after one.
 * At 3.2M events/s, 32 lines a datagram, each queue carries 3-4 messages
 * a millisecond: on 24-slot rings (the shm default, common/chan.h) the
 * longer naps halve the switches, and 96-slot rings cut what is left
 * to some 40 % (README, Performance, "Deeper rings"). The bound grows
 * with the ring because what a nap may gather is what the ring holds:
 * half of a 10-message mqueue in up to 4 ms let it fill behind a napping
 * reader (the ckms egress, the busiest) and lost 5-12 % of the events at
 * 4.8M events/s, a 24-slot ring's 12 in up to 8 ms 3-22 %; a shallow
 * queue keeps the short naps. Slower traffic, a stage that is behind (its
 * queue not emptied) and an idle one wait on the queue as before; so does
 * a stage told to stop.
 *
 * A stage that passes records on never naps past TICK_MARGIN_US before
 * the next Flush tick the supervisor publishes (stats_seg.flush_next_ms):
 * what ingest sent before the tick (it ends its gathers 3 ms ahead,
 * ingest/main.c) must reach a flush stage further down before the Flush.
 * A Flush comes behind the records in a stage's own queue, so an egress
 * may nap across a tick, and its report comes up to a nap late. */
#define TAKE_MAX 64
#define SHALLOW 10
#define SHALLOW_MAX_US 1000
#define TICK_MARGIN_US 1000

static void
nap_us(long us)
{
	struct timespec ts = { 0, us * 1000L };
	/* EINTR: a signal (a stop) ends the nap early, as it should */
	if (nanosleep(&ts, NULL) == -1 && errno != EINTR)
		log_warn("nanosleep");
}

size_t
stage_gather_msgs(size_t capacity)
{
	size_t n = capacity > SHALLOW ? capacity / 2 : capacity * 2 / 5;
	return n > 1 ? n : 1;
}

long
stage_gather_max_us(size_t capacity)
{
	if (capacity <= SHALLOW)
		return SHALLOW_MAX_US;
	long max = (long)capacity * STAGE_GATHER_RING_US /
	    CHAN_SHM_SLOTS_DEFAULT;
	return max < STAGE_GATHER_MAX_US ? max : STAGE_GATHER_MAX_US;
}

long
stage_gather_nap(long got, long spent_us, long waited_us, int emptied,
    size_t capacity)
{
	long want = (long)stage_gather_msgs(capacity);
	long max = stage_gather_max_us(capacity);
	if (!emptied || got <= 0 || waited_us >= max)
		return 0;
	long nap = spent_us * want / got;
	return nap < max ? nap : max;
}

static long
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

long
stage_nap_before_tick(long nap, long now, uint32_t next_ms)
{
	if (nap <= 0 || next_ms == 0)
		return nap;
	/* The tick as a full time: its low 32 bits against now's. */
	long now_ms = now / 1000;
	long tick = (now_ms + (int32_t)(next_ms - (uint32_t)now_ms)) * 1000L;
	long left = tick - TICK_MARGIN_US - now;
	if (left < 0 && left > -TICK_MARGIN_US)
		return 0;   /* within the margin: take what comes at once */
	return left < 0 || nap < left ? nap : left;
}

static int
recv_loop(struct stage *st)
{
	struct log_limit lim = { 0, 0 };
	long nap = 0;
	size_t capacity = chan_capacity(st->in);
	while (!stage_stopping) {
		long t0 = now_us();
		if (nap > 0)
			nap_us(nap);
		long t1 = now_us();
		int r = take_msg(st, RECV_WAIT_MS, &lim);
		long waited = now_us() - t1;
		int idle = r == TAKE_NONE;
		long got = r == TAKE_GOT;
		/* Once told to stop, take nothing more: what is queued
		 * stays for the next process. */
		for (int k = 1; r == TAKE_GOT && k < TAKE_MAX && !stage_stopping; k++)
			if ((r = take_msg(st, 0, &lim)) == TAKE_GOT)
				got++;
		if (r == TAKE_FAIL || stage_push(st) == -1)
			return EXIT_TEMPORARY;
		if (idle || r == TAKE_STOP)
			settle_gaps(st);
		if (st->ops->on_tick != NULL)
			st->ops->on_tick(st);
		if (r == TAKE_STOP)
			break;
		nap = stage_gather_nap(got, t1 - t0 + waited, waited,
		    r == TAKE_NONE && !idle && !stage_stopping, capacity);
		if (st->nout > 0 && st->seg != NULL)
			nap = stage_nap_before_tick(nap, now_us(),
			    atomic_load_explicit(&st->seg->flush_next_ms,
			    memory_order_relaxed));
	}
	return 0;
}

int
stage_main(int argc, char **argv, const struct stage_ops *ops, void *ctx)
{
	struct stage st;
	memset(&st, 0, sizeof(st));
	st.ops = ops;
	st.ctx = ctx;
	st.name = ops->default_name;
	st.instance = "default";
	st.kind = CHAN_MQUEUE;
	st.slot = -1;
	st.ready_fd = -1;
	st.stats = &st.local;
	log_init(ops->prog, st.name);

	int status = parse_args(&st, argc, argv);
	if (status >= 0)
		return status;
	if (install_signals() == -1) {
		log_warn("sigaction");
		return EXIT_TEMPORARY;
	}
	status = open_all(&st);
	if (status < 0 && ops->init != NULL && ops->init(&st) == -1)
		status = EXIT_TEMPORARY;
	if (status < 0) {
		if (ops->run != NULL) {
			status = ops->run(&st);
		} else {
			stage_ready(&st);
			status = recv_loop(&st);
		}
		if (ops->fini != NULL)
			ops->fini(&st);
	}
	close_all(&st);
	return status;
}
