/* control.h - what the telemctl end-to-end tests (e2e_control.c,
 * e2e_swap.c) share: one pipeline P per test with its fixtures, telemctl
 * and status helpers, a paced load of known events ("n<i mod 1000> <i mod
 * 200>", LINES_PER_DGRAM a datagram) with the split the filters must make
 * of it, and the checks of drained books. Include it once, in a test
 * file, after <criterion/criterion.h>. */
#ifndef TELEM_TEST_CONTROL_H
#define TELEM_TEST_CONTROL_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctlpath.h"
#include "harness.h"

static struct pl P;

static void setup(void) { pl_init(&P); }
static void teardown(void) { pl_cleanup(&P); }

#define START(...) cr_assert(pl_start(&P, __VA_ARGS__, NULL), \
	"supervisor did not come up:\n%s", h_slurp(P.err))
#define WAIT_ERR(text) cr_assert(h_wait_text(P.err, text, 1, 10000), \
	"stderr never held '%s':\n%s", text, h_slurp(P.err))
#define WAIT_OUT(text, n) cr_assert(h_wait_text(P.out, text, n, 10000), \
	"stdout never held %d x '%s':\n%s\nstderr:\n%s", n, text, \
	h_slurp(P.out), h_slurp(P.err))

#define LIMIT 100
#define NAMES 1000
#define LINES_PER_DGRAM 100

static inline void
nap(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static char reply_buf[8192];

/* Run `telemctl -i INSTANCE cmd`; the reply is in reply_buf. */
#define ctl(...) pl_ctlf(&P, reply_buf, sizeof(reply_buf), __VA_ARGS__)

static inline void
status(struct h_status *s)
{
	cr_assert(pl_status(&P, s), "bad status reply:\n%s\nstderr:\n%s", s->raw,
	    h_slurp(P.err));
}

/* ---- the load: event i is "n<i mod 1000> <i mod 200>" ---------------- */

static inline unsigned
value_of(long i)
{
	return (unsigned)(i % 200);   /* both sides of 100, and 100 itself */
}

/* How many of events [first, first + n) the filter keeps. */
static inline long
implied(long first, long n, int below)
{
	long k = 0;
	for (long i = first; i < first + n; i++)
		k += below ? value_of(i) <= LIMIT : value_of(i) >= LIMIT;
	return k;
}

/* Send events [first, first + n) from this process, LINES_PER_DGRAM a
 * datagram. The rate is set by the pipeline itself: never more than
 * 10 000 events ahead of what ingest has taken, a few hundred kB of the
 * socket's 4 MB buffer, so the kernel has no reason to drop any. Returns
 * 0, or -1 if ingest stopped taking events for 30 s (no assert here: it
 * also runs on a thread of its own). */
static inline int
send_events(long first, long n)
{
	char buf[LINES_PER_DGRAM * 16];
	long i = first, end = first + n;
	while (i < end) {
		size_t len = 0;
		for (int k = 0; k < LINES_PER_DGRAM && i < end; k++, i++)
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "n%03ld %u\n",
			    i % NAMES, value_of(i));
		pl_sendto(&P, buf, len);
		if ((i - first) % 5000 != 0 && i < end)
			continue;
		int t = 0;
		while (pl_stat(&P, "ingest", "in") < i - 10000)
			if (++t == 6000)
				return -1;
			else
				nap(5);
	}
	return 0;
}

#define SEND(first, n) cr_assert_eq(send_events(first, n), 0, \
	"ingest stopped taking events:\n%s", h_slurp(P.err))

/* A steady load from a thread while the test drives telemctl. */
struct load {
	pthread_t thread;
	long first, n;
	int rc;
};

static inline void *
load_main(void *arg)
{
	struct load *l = arg;
	l->rc = send_events(l->first, l->n);
	return NULL;
}

static inline void
load_start(struct load *l, long first, long n)
{
	l->first = first;
	l->n = n;
	l->rc = -1;
	cr_assert_eq(pthread_create(&l->thread, NULL, load_main, l), 0);
}

static inline void
load_join(struct load *l)
{
	pthread_join(l->thread, NULL);
	cr_assert_eq(l->rc, 0, "ingest stopped taking events:\n%s", h_slurp(P.err));
}

/* Wait until ingest has taken at least n events (10 s at most). */
static inline long long
wait_ingested(long n)
{
	long long in = -1;
	for (int t = 0; t < 2000 && (in = pl_stat(&P, "ingest", "in")) < n; t++)
		nap(5);
	return in;
}

static inline int
same_counters(const struct h_status *a, const struct h_status *b)
{
	for (int i = 0; i < H_NSTAGES; i++) {
		const struct h_stage *x = &a->st[i], *y = &b->st[i];
		if (x->pid != y->pid || x->in != y->in || x->out != y->out ||
		    x->bad != y->bad || x->dropped != y->dropped || x->lost != y->lost ||
		    x->depth != y->depth)
			return 0;
	}
	return 1;
}

/* Wait (30 s at most) until ingest has taken `events`, every queue is
 * empty, every stage is up, the books balance and two status replies in a
 * row agree; *s is the last reply. The caller asserts each book itself,
 * so a pipeline that never balances fails with the figures. */
static inline void
wait_drained(long events, struct h_status *s)
{
	struct h_status prev;
	int have_prev = 0;
	for (int t = 0; t < 1500; t++, nap(20)) {
		status(s);
		const struct h_stage *g = &s->st[H_INGEST], *lo = &s->st[H_LOW],
		    *hi = &s->st[H_HIGH], *ck = &s->st[H_CKMS], *cm = &s->st[H_CMA];
		/* An egress books `out` once its state is saved
		 * (docs/design.md §13), up to a second after the records
		 * came. */
		int ok = g->in == events && lo->in == g->out && hi->in == g->out &&
		    ck->in == lo->out && cm->in == hi->out &&
		    ck->in == ck->out + ck->dropped + ck->lost &&
		    cm->in == cm->out + cm->dropped + cm->lost;
		for (int i = 0; i < H_NSTAGES; i++)
			ok = ok && s->st[i].depth == 0 && strcmp(s->st[i].state, "up") == 0;
		if (ok && have_prev && same_counters(&prev, s))
			return;
		prev = *s;
		have_prev = ok;
	}
}

/* The books of a drained pipeline after `sent` events with no loss. */
static inline void
assert_books(const struct h_status *s, long sent)
{
	const struct h_stage *g = &s->st[H_INGEST], *lo = &s->st[H_LOW],
	    *hi = &s->st[H_HIGH], *ck = &s->st[H_CKMS], *cm = &s->st[H_CMA];
	cr_assert_eq(g->dropped_dgrams, 0, "kernel drops at a modest rate:\n%s", s->raw);
	cr_assert_eq(g->bad, 0, "%s", s->raw);
	cr_assert_eq(g->in, sent, "%s", s->raw);
	cr_assert_eq(g->out, sent, "%s", s->raw);
	cr_assert_eq(lo->in, g->out, "%s", s->raw);
	cr_assert_eq(hi->in, g->out, "%s", s->raw);
	cr_assert_eq(lo->out, implied(0, sent, 1), "low split:\n%s", s->raw);
	cr_assert_eq(hi->out, implied(0, sent, 0), "high split:\n%s", s->raw);
	cr_assert_eq(ck->in, lo->out, "%s", s->raw);
	cr_assert_eq(cm->in, hi->out, "%s", s->raw);
	cr_assert_eq(ck->out, ck->in, "%s", s->raw);
	cr_assert_eq(cm->out, cm->in, "%s", s->raw);
	cr_assert_eq(lo->filtered, sent - lo->out, "%s", s->raw);
	cr_assert_eq(hi->filtered, sent - hi->out, "%s", s->raw);
	for (int i = 0; i < H_NSTAGES; i++) {
		cr_assert_eq(s->st[i].lost, 0, "%s lost records:\n%s", h_stage_name[i], s->raw);
		cr_assert_eq(s->st[i].depth, 0, "%s", s->raw);
		cr_assert_eq(s->st[i].inflight, 0, "%s", s->raw);
	}
	char books[4096];
	cr_assert(pl_books(&P, books, sizeof(books)), "%s", books);
}

/* One line `error: ...` and exit 1. */
static inline void
assert_error(int rc, const char *what)
{
	cr_assert_eq(rc, 1, "%s: exit %d:\n%s", what, rc, reply_buf);
	cr_assert(strncmp(reply_buf, "error: ", 7) == 0, "%s:\n%s", what, reply_buf);
	cr_assert_eq(h_count(reply_buf, "\n"), 1, "%s:\n%s", what, reply_buf);
}

/* Events still flow through every stage: one more of each side. */
static inline void
assert_flows(void)
{
	struct h_status a, b;
	status(&a);
	pl_nc(&P, "flow 7\nflow 700\n");
	for (int t = 0; t < 1000; t++, nap(10)) {
		status(&b);
		if (b.st[H_CKMS].in == a.st[H_CKMS].in + 1 &&
		    b.st[H_CMA].in == a.st[H_CMA].in + 1)
			return;
	}
	cr_assert_fail("events stopped flowing:\n%s\n%s", b.raw, h_slurp(P.err));
}

static inline void
write_script(const char *path, const char *body)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	cr_assert_eq(chmod(path, 0700), 0);
}

#endif
