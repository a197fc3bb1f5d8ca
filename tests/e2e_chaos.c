/* e2e_chaos.c - a storm: 32-line datagrams for 8 s while stages chosen at
 * random (never the supervisor) are killed with SIGKILL, 12 times, about
 * 0.6 s apart; then a drain, and the books must balance exactly
 * (common/stats.h): every stage's in == out + filtered + dropped + lost,
 * every queue's writer.out == reader.in, and every line sent is in
 * ingest's in or its kernel drops but for what a killed ingest was
 * parsing. The real bin/, real queues of $TELEM_TRANSPORT, real signals;
 * waits are bounded polls. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "e2e.h"
#include "egress/cma.h"
#include "state.h"

TestSuite(chaos, .init = setup, .fini = teardown, .timeout = 90);

#define LINES 32
#define LOAD_MS 8000
#define RATE 20000             /* datagrams per second: 640k events/s */
#define KILLS 12
#define KILL_GAP_MS 600
#define KILLS_PER_STAGE 3      /* under the restart limit (5 in 10 s) */

static atomic_int load_stop;
static atomic_long load_dgrams;

/* a 10, b 50 and c 90 go to the CKMS side (limit 100), chk 1000 alone to
 * the CMA side: 8 of each per datagram. */
static void *
load(void *arg)
{
	(void)arg;
	char buf[LINES * 12];
	size_t len = 0;
	static const char *const line[4] = { "a 10\n", "b 50\n", "c 90\n", "chk 1000\n" };
	for (int k = 0; k < LINES; k++)
		len += (size_t)sprintf(buf + len, "%s", line[k % 4]);
	long long t0 = fault_ms();
	for (long i = 0; !atomic_load(&load_stop) && fault_ms() - t0 < LOAD_MS; i++) {
		pl_sendto(&P, buf, len);
		atomic_store(&load_dgrams, i + 1);
		long long due = t0 + i * 1000 / RATE;
		if (i % 16 == 0 && fault_ms() < due)
			fault_nap((int)(due - fault_ms()));
	}
	return NULL;
}

static int
alike(const struct h_status *a, const struct h_status *b)
{
	for (int i = 0; i < H_NSTAGES; i++) {
		const struct h_stage *x = &a->st[i], *y = &b->st[i];
		if (x->pid != y->pid || x->in != y->in || x->out != y->out ||
		    x->filtered != y->filtered || x->bad != y->bad ||
		    x->dropped != y->dropped || x->dropped_dgrams != y->dropped_dgrams ||
		    x->lost != y->lost || x->depth != y->depth)
			return 0;
	}
	return 1;
}

/* Every stage up, every queue empty, nothing in flight, and two replies
 * 200 ms apart alike (20 s at most). */
static int
drained(struct h_status *s)
{
	struct h_status prev;
	int have = 0;
	for (int t = 0; t < 100; t++, fault_nap(200)) {
		if (!pl_status(&P, s))
			continue;
		int quiet = 1;
		/* In flight too: an egress books `out` once its state is
		 * saved, up to a second after the records came. */
		for (int i = 0; i < H_NSTAGES; i++)
			quiet = quiet && s->st[i].depth == 0 && s->st[i].inflight == 0 &&
			    strcmp(s->st[i].state, "up") == 0;
		if (quiet && have && alike(&prev, s))
			return 1;
		prev = *s;
		have = quiet;
	}
	return 0;
}

/* The count of `name` in cma's saved aggregates (its state file, as
 * egress/egress.c writes it: names, dirty flag, then per name its length,
 * bytes and struct cma), or -1 if it holds no such name. */
static long long
cma_count(const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "/dev/shm/telem.%s.cma.state", P.instance);
	struct state_info info;
	struct state_reader r;
	const char *why = "";
	cr_assert_eq(state_load(path, STATE_CMA, 0, &info, &r, &why), 1, "%s: %s",
	    path, why);
	uint64_t hdr[2];
	long long n = -1;
	cr_assert_eq(state_get(&r, hdr, sizeof(hdr)), 0);
	for (uint64_t i = 0; i < hdr[0]; i++) {
		uint8_t len;
		struct cma m;
		cr_assert_eq(state_get(&r, &len, 1), 0);
		const char *s = state_take(&r, len);
		cr_assert_not_null(s);
		cr_assert_eq(state_get(&r, &m, sizeof(m)), 0);
		if (len == strlen(name) && memcmp(s, name, len) == 0)
			n = (long long)m.n;
	}
	state_close(&r);
	return n;
}

static void
storm(void)
{
	struct h_status s;
	int kills[H_NSTAGES] = { 0 }, killed = 0, ingest_kills = 0;
	START("-f", "60000", "-m", "1024");
	pthread_t th;
	atomic_store(&load_stop, 0);
	atomic_store(&load_dgrams, 0);
	cr_assert_eq(pthread_create(&th, NULL, load, NULL), 0);
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	cr_log_info("seed %u", seed);
	fault_nap(300);
	while (killed < KILLS) {
		int k;
		do
			k = rand_r(&seed) % H_NSTAGES;
		while (kills[k] == KILLS_PER_STAGE);
		pid_t pid = pl_stage_pid(&P, h_stage_name[k]);
		cr_assert_gt(pid, 0, "%s has no pid:\n%s", h_stage_name[k], h_slurp(P.err));
		long long t0 = fault_ms();
		cr_assert_eq(kill(pid, SIGKILL), 0);
		kills[k]++;
		killed++;
		ingest_kills += k == H_INGEST;
		cr_assert_gt(fault_wait_restarted(&P, h_stage_name[k], pid), 0,
		    "%s not restarted:\n%s", h_stage_name[k], h_slurp(P.err));
		cr_log_info("kill %d: %s at %ld datagrams", killed, h_stage_name[k],
		    atomic_load(&load_dgrams));
		long long left = KILL_GAP_MS - (fault_ms() - t0);
		if (left > 0)
			fault_nap((int)left);
	}
	pthread_join(th, NULL);
	long long sent = atomic_load(&load_dgrams) * LINES;
	cr_assert(drained(&s), "never drained:\n%s\n%s", s.raw, h_slurp(P.err));

	/* Every line sent is in ingest's in or in the kernel's drops, but
	 * for at most one received batch (64 datagrams) per ingest killed
	 * while parsing it: the one loss no counter can show (ingest/main.c). */
	const struct h_stage *g = &s.st[H_INGEST], *lo = &s.st[H_LOW],
	    *hi = &s.st[H_HIGH], *ck = &s.st[H_CKMS], *cm = &s.st[H_CMA];
	for (int i = 0; i < 50 && g->in + LINES * g->dropped_dgrams < sent; i++) {
		fault_nap(20);
		cr_assert(pl_status(&P, &s));
	}
	long long u = sent - g->in - LINES * g->dropped_dgrams;
	cr_log_info("%lld lines sent, %lld unseen (killed ingests' parse)", sent, u);
	cr_assert(u >= 0 && u <= 64LL * LINES * ingest_kills, "sent %lld lines; ingest "
	    "in %lld, dropped %lld datagrams; %d ingest kills\n%s", sent, g->in,
	    g->dropped_dgrams, ingest_kills, s.raw);

	/* The books, exactly. */
	for (int i = 0; i < H_NSTAGES; i++) {
		const struct h_stage *t = &s.st[i];
		cr_assert_eq(t->in, t->out + t->filtered + t->dropped + t->lost,
		    "%s: in %lld != out %lld + filtered %lld + dropped %lld + lost %lld\n%s",
		    h_stage_name[i], t->in, t->out, t->filtered, t->dropped, t->lost, s.raw);
		cr_assert_eq(t->inflight, 0, "%s\n%s", h_stage_name[i], s.raw);
		cr_assert_eq(t->bad, 0, "%s\n%s", h_stage_name[i], s.raw);
		cr_assert_eq(t->restarts, kills[i], "%s\n%s", h_stage_name[i], s.raw);
	}
	cr_assert_eq(lo->in, g->out, "%s", s.raw);
	cr_assert_eq(hi->in, g->out, "%s", s.raw);
	cr_assert_eq(ck->in, lo->out, "%s", s.raw);
	cr_assert_eq(cm->in, hi->out, "%s", s.raw);
	/* The CMA side: what the egress took is applied and saved (out),
	 * lost with a killed cma, or dropped at its name cap (none: four
	 * names). chk is the only name there, so its count in the saved
	 * aggregates is every record of it that was not counted lost. */
	cr_assert_eq(cm->out + cm->lost + cm->dropped, cm->in, "%s", s.raw);
	cr_assert_eq(cm->dropped + ck->dropped, 0, "%s", s.raw);
	cr_assert_eq(cma_count("chk"), cm->out, "%s", s.raw);
	char books[4096];
	cr_assert(pl_books(&P, books, sizeof(books)), "%s\n%s", books, h_slurp(P.err));
	cr_log_info("killed=%d lost=%lld", killed, g->lost + lo->lost + hi->lost +
	    ck->lost + cm->lost);

	/* And the pipeline still reports what it took after the storm. */
	cr_assert_eq(pl_ctl(&P, books, sizeof(books), "flush"), 0, "%s", books);
	WAIT_OUT("[CMA] chk 1000\n");
	WAIT_OUT("[CKMS] b 0.99:50\n");
}

Test(chaos, twelve_kill_9s_under_load_and_the_books_balance)
{
	storm();
}
