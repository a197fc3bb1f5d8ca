/* e2e_control.c - issue #4 end to end: every telemctl command against the
 * real bin/telem-supervisor, the exact books of the stats segment under
 * load (both transports), restart and swap under load, rollback, lost=,
 * readiness, stop, a second supervisor and a stale socket. Waits are
 * bounded polls of `telemctl status`; nothing asserts on speed. */
#include <criterion/criterion.h>
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

TestSuite(control, .init = setup, .fini = teardown, .timeout = 60);

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

static void
nap(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static char reply_buf[8192];

/* Run `telemctl -i INSTANCE cmd`; the reply is in reply_buf. */
static int
ctl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
ctl(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return pl_ctl(&P, reply_buf, sizeof(reply_buf), cmd);
}

static void
status(struct h_status *s)
{
	cr_assert(pl_status(&P, s), "bad status reply:\n%s\nstderr:\n%s", s->raw,
	    h_slurp(P.err));
}

/* ---- the load: event i is "n<i mod 1000> <i mod 200>" ---------------- */

static unsigned
value_of(long i)
{
	return (unsigned)(i % 200);   /* both sides of 100, and 100 itself */
}

/* How many of events [first, first + n) the filter keeps. */
static long
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
static int
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

static void *
load_main(void *arg)
{
	struct load *l = arg;
	l->rc = send_events(l->first, l->n);
	return NULL;
}

static void
load_start(struct load *l, long first, long n)
{
	l->first = first;
	l->n = n;
	l->rc = -1;
	cr_assert_eq(pthread_create(&l->thread, NULL, load_main, l), 0);
}

static void
load_join(struct load *l)
{
	pthread_join(l->thread, NULL);
	cr_assert_eq(l->rc, 0, "ingest stopped taking events:\n%s", h_slurp(P.err));
}

/* Wait until ingest has taken at least n events (10 s at most). */
static long long
wait_ingested(long n)
{
	long long in = -1;
	for (int t = 0; t < 2000 && (in = pl_stat(&P, "ingest", "in")) < n; t++)
		nap(5);
	return in;
}

static int
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
static void
wait_drained(long events, struct h_status *s)
{
	struct h_status prev;
	int have_prev = 0;
	for (int t = 0; t < 1500; t++, nap(20)) {
		status(s);
		const struct h_stage *g = &s->st[H_INGEST], *lo = &s->st[H_LOW],
		    *hi = &s->st[H_HIGH], *ck = &s->st[H_CKMS], *cm = &s->st[H_CMA];
		int ok = g->in == events && lo->in == g->out && hi->in == g->out &&
		    ck->in == lo->out && cm->in == hi->out;
		for (int i = 0; i < H_NSTAGES; i++)
			ok = ok && s->st[i].depth == 0 && strcmp(s->st[i].state, "up") == 0;
		if (ok && have_prev && same_counters(&prev, s))
			return;
		prev = *s;
		have_prev = ok;
	}
}

/* The books of a drained pipeline after `sent` events with no loss. */
static void
assert_books(const struct h_status *s, long sent)
{
	const struct h_stage *g = &s->st[H_INGEST], *lo = &s->st[H_LOW],
	    *hi = &s->st[H_HIGH], *ck = &s->st[H_CKMS], *cm = &s->st[H_CMA];
	cr_assert_eq(g->dropped, 0, "kernel drops at a modest rate:\n%s", s->raw);
	cr_assert_eq(g->bad, 0, "%s", s->raw);
	cr_assert_eq(g->in, sent, "%s", s->raw);
	cr_assert_eq(g->out + g->dropped, sent, "%s", s->raw);
	cr_assert_eq(lo->in, g->out, "%s", s->raw);
	cr_assert_eq(hi->in, g->out, "%s", s->raw);
	cr_assert_eq(lo->out, implied(0, sent, 1), "low split:\n%s", s->raw);
	cr_assert_eq(hi->out, implied(0, sent, 0), "high split:\n%s", s->raw);
	cr_assert_eq(ck->in, lo->out, "%s", s->raw);
	cr_assert_eq(cm->in, hi->out, "%s", s->raw);
	cr_assert_eq(ck->out, ck->in, "%s", s->raw);
	cr_assert_eq(cm->out, cm->in, "%s", s->raw);
	for (int i = 0; i < H_NSTAGES; i++) {
		cr_assert_eq(s->st[i].lost, 0, "%s lost records:\n%s", h_stage_name[i], s->raw);
		cr_assert_eq(s->st[i].depth, 0, "%s", s->raw);
	}
}

/* ---- 1. the commands, their replies and exit codes ------------------- */

Test(control, status_lists_every_stage_then_ok)
{
	START("-m", "1024", "-f", "60000");
	int rc = ctl("status");
	cr_assert_eq(rc, 0, "%s", reply_buf);
	/* Five lines in pipeline order, the fields of DESIGN §7 in order,
	 * then lost=, sink_dropped= and exe=, then `ok`. */
	const char *line = reply_buf;
	for (int i = 0; i < H_NSTAGES; i++) {
		char head[64];
		snprintf(head, sizeof(head), "stage=%s pid=", h_stage_name[i]);
		cr_assert(strncmp(line, head, strlen(head)) == 0, "line %d:\n%s", i, reply_buf);
		static const char *const keys[] = { " pid=", " state=", " restarts=",
		    " uptime_s=", " in_queue=", " depth=", " in=", " out=", " bad=",
		    " dropped=", " lost=", " sink_dropped=", " exe=" };
		const char *at = line, *eol = strchr(line, '\n');
		cr_assert_not_null(eol);
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			const char *f = strstr(at, keys[k]);
			cr_assert(f != NULL && f < eol, "%s missing or out of order:\n%.*s",
			    keys[k], (int)(eol - line), line);
			at = f + 1;
		}
		line = eol + 1;
	}
	cr_assert_str_eq(line, "ok\n");

	struct h_status s;
	status(&s);
	static const char *const queue[H_NSTAGES] = { "-", "low", "high", "ckms", "cma" };
	static const char *const prog[H_NSTAGES] = { "telem-ingest", "telem-filter",
	    "telem-filter", "telem-egress-ckms", "telem-egress-cma" };
	for (int i = 0; i < H_NSTAGES; i++) {
		const struct h_stage *t = &s.st[i];
		cr_assert_gt(t->pid, 0);
		cr_assert_eq(kill((pid_t)t->pid, 0), 0, "%s pid %lld", h_stage_name[i], t->pid);
		cr_assert_str_eq(t->state, "up");
		cr_assert_str_eq(t->in_queue, queue[i]);
		cr_assert_eq(t->restarts, 0);
		cr_assert_geq(t->uptime_s, 0);
		cr_assert_eq(t->depth, 0);
		cr_assert(t->in == 0 && t->out == 0 && t->bad == 0 && t->dropped == 0 &&
		    t->lost == 0, "%s", s.raw);
		/* exe= is the program that runs: /proc/PID/exe agrees. */
		char proc[64], real[PATH_MAX];
		snprintf(proc, sizeof(proc), "/proc/%lld/exe", t->pid);
		ssize_t n = readlink(proc, real, sizeof(real) - 1);
		cr_assert_gt(n, 0);
		real[n] = '\0';
		char *want = realpath(t->exe, NULL);
		cr_assert_not_null(want, "exe=%s", t->exe);
		cr_assert_str_eq(real, want);
		cr_assert(strstr(t->exe, prog[i]) != NULL, "%s", t->exe);
		free(want);
	}

	/* The control socket: 0600 in a 0700 folder of ours. */
	char path[256], dir[256];
	struct stat st;
	cr_assert_eq(ctl_default_path(path, sizeof(path), P.instance, 0), 0);
	cr_assert_eq(ctl_dir(dir, sizeof(dir), 0), 0);
	cr_assert_eq(stat(dir, &st), 0);
	cr_assert(S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700, "%s %o", dir,
	    st.st_mode & 0777);
	cr_assert_eq(stat(path, &st), 0, "%s", path);
	cr_assert(S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600, "%s %o", path,
	    st.st_mode & 0777);
	cr_assert_eq(st.st_uid, getuid());

	/* --control PATH reaches the same supervisor. */
	char exe[256], cmd[600];
	h_bin("telemctl", exe, sizeof(exe));
	snprintf(cmd, sizeof(cmd), "%s --control %s status | grep -c '^stage=' | grep -qx 5",
	    exe, path);
	cr_assert_eq(system(cmd), 0);
}

/* One line `error: ...` and exit 1. */
static void
assert_error(int rc, const char *what)
{
	cr_assert_eq(rc, 1, "%s: exit %d:\n%s", what, rc, reply_buf);
	cr_assert(strncmp(reply_buf, "error: ", 7) == 0, "%s:\n%s", what, reply_buf);
	cr_assert_eq(h_count(reply_buf, "\n"), 1, "%s:\n%s", what, reply_buf);
}

Test(control, bad_requests_say_error_and_exit_1)
{
	START("-m", "1024", "-f", "60000");
	struct h_status before, after;
	status(&before);
	assert_error(ctl("frobnicate"), "unknown command");
	assert_error(ctl("restart nosuchstage"), "restart of an unknown stage");
	cr_assert(strstr(reply_buf, "nosuchstage") != NULL, "%s", reply_buf);
	assert_error(ctl("swap nosuchstage /bin/true"), "swap of an unknown stage");
	assert_error(ctl("restart"), "restart without a stage");
	assert_error(ctl("swap cma"), "swap without a program");
	assert_error(ctl("status now"), "status with an argument");
	assert_error(ctl("restart low high"), "restart of two stages");
	/* More arguments than a stage may get is refused, not cut. */
	char many[1024] = "swap low telem-filter";  /* 21 + 40 x 15 bytes */
	for (int i = 0; i < 40; i++)
		strcat(many, " --keep-below 1");
	assert_error(ctl("%s", many), "too many arguments");
	/* Nothing changed. */
	status(&after);
	for (int i = 0; i < H_NSTAGES; i++) {
		cr_assert_eq(after.st[i].pid, before.st[i].pid, "%s", after.raw);
		cr_assert_eq(after.st[i].restarts, 0);
	}

	/* telemctl's own errors: usage is exit 2, -h is exit 0. */
	char exe[256], cmd[1024];
	h_bin("telemctl", exe, sizeof(exe));
	snprintf(cmd, sizeof(cmd), "%s -h | grep -q '^usage: telemctl'", exe);
	cr_assert_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s -i %s >/dev/null 2>&1", exe, P.instance);
	int st = system(cmd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "no command: %d", st);
	snprintf(cmd, sizeof(cmd), "%s -Z status >/dev/null 2>&1", exe);
	st = system(cmd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "bad option: %d", st);
	/* No supervisor there: exit 1 and one line saying so. */
	char errf[300];
	snprintf(errf, sizeof(errf), "%s/ctl-err", P.dir);
	snprintf(cmd, sizeof(cmd), "%s -i %s_none status 2>%s", exe, P.instance, errf);
	st = system(cmd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "no supervisor: %d", st);
	char *err = h_slurp(errf);
	unlink(errf);
	cr_assert_eq(h_count(err, "\n"), 1, "%s", err);
	cr_assert(strstr(err, "is telem-supervisor -i") != NULL, "%s", err);
	free(err);
}

/* ---- 2. the exact books ---------------------------------------------- */

static void
books(const char *transport)
{
	const long sent = 200000;
	START("-m", "2048", "-f", "200", "-t", transport);
	SEND(0, sent);
	struct h_status s;
	wait_drained(sent, &s);
	assert_books(&s, sent);
	cr_assert_eq(s.st[H_LOW].out, 101000);    /* 0..100 of every 200 */
	cr_assert_eq(s.st[H_HIGH].out, 100000);   /* 100..199 of every 200 */
	/* Every name reached its egress: one report line per name. */
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", h_slurp(P.err));
	char *out = h_slurp(P.out);
	/* Name k always has the value k mod 200 (1000 is a multiple of 200). */
	cr_assert(strstr(out, "[CKMS] n000 0.99:0\n") != NULL, "n000");
	cr_assert(strstr(out, "[CKMS] n100 0:100\n") != NULL, "n100");
	cr_assert(strstr(out, "[CMA] n100 100\n") != NULL, "n100");
	cr_assert(strstr(out, "[CMA] n999 199\n") != NULL, "n999");
	cr_assert(strstr(out, "[CMA] n000 ") == NULL && strstr(out, "[CKMS] n999 ") == NULL);
	free(out);
}

Test(control, books_are_exact_mqueue, .timeout = 90) { books("mqueue"); }
Test(control, books_are_exact_shm, .timeout = 90) { books("shm"); }

/* ---- 3. restart and swap ----------------------------------------------- */

/* Wait until the stage is up with a pid other than `old`; its status. */
static void
wait_up_again(int stage, long long old, struct h_status *s)
{
	for (int t = 0; t < 1000; t++, nap(10)) {
		status(s);
		if (s->st[stage].pid > 0 && s->st[stage].pid != old &&
		    strcmp(s->st[stage].state, "up") == 0)
			return;
	}
	cr_assert_fail("%s never came back:\n%s\n%s", h_stage_name[stage], s->raw,
	    h_slurp(P.err));
}

Test(control, restart_under_load_loses_nothing, .timeout = 90)
{
	const long sent = 100000;
	START("-m", "2048", "-f", "200");
	struct h_status s0, s;
	status(&s0);
	struct load l;
	load_start(&l, 0, sent);
	wait_ingested(10000);
	/* Each restart answers once the new process is ready. */
	cr_assert_eq(ctl("restart low"), 0, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, "ok\n");
	long long at = pl_stat(&P, "ingest", "in");
	status(&s);
	cr_assert_neq(s.st[H_LOW].pid, s0.st[H_LOW].pid);
	cr_assert_str_eq(s.st[H_LOW].state, "up");
	cr_assert_eq(s.st[H_LOW].restarts, 1);
	cr_assert_eq(ctl("restart high"), 0, "%s", reply_buf);
	cr_assert_eq(ctl("restart ckms"), 0, "%s", reply_buf);
	load_join(&l);
	cr_log_info("restarts done with %lld of %ld events in", at, sent);
	wait_drained(sent, &s);
	assert_books(&s, sent);
	/* SIGTERM let each finish what it held and exit 0. */
	static const int restarted[] = { H_LOW, H_HIGH, H_CKMS };
	for (size_t i = 0; i < 3; i++) {
		int k = restarted[i];
		char text[128];
		snprintf(text, sizeof(text), "stage %s (pid %lld) exited 0\n",
		    h_stage_name[k], s0.st[k].pid);
		WAIT_ERR(text);
		cr_assert_neq(s.st[k].pid, s0.st[k].pid);
		cr_assert_eq(s.st[k].restarts, 1, "%s", s.raw);
	}
	cr_assert_eq(s.st[H_INGEST].restarts, 0);
	cr_assert_eq(s.st[H_CMA].restarts, 0);
}

static void
swap_under_load(const char *transport)
{
	const long sent = 100000;
	char exe[256];
	START("-m", "2048", "-f", "200", "-t", transport);
	struct h_status s0, s;
	status(&s0);
	struct load l;
	load_start(&l, 0, sent);
	wait_ingested(10000);
	cr_assert_eq(ctl("swap cma %s", h_bin("telem-egress-cma", exe, sizeof(exe))), 0,
	    "%s\n%s", reply_buf, h_slurp(P.err));
	cr_assert_str_eq(reply_buf, "ok\n");
	cr_log_info("swapped with %lld of %ld events in", pl_stat(&P, "ingest", "in"),
	    sent);
	status(&s);
	cr_assert_neq(s.st[H_CMA].pid, s0.st[H_CMA].pid);
	cr_assert_str_eq(s.st[H_CMA].state, "up");
	cr_assert_eq(s.st[H_CMA].restarts, 1);
	load_join(&l);
	wait_drained(sent, &s);
	assert_books(&s, sent);
	cr_assert_eq(s.st[H_HIGH].out, s.st[H_CMA].in);
}

Test(control, swap_cma_under_load_mqueue, .timeout = 90) { swap_under_load("mqueue"); }
Test(control, swap_cma_under_load_shm, .timeout = 90) { swap_under_load("shm"); }

/* Events still flow through every stage: one more of each side. */
static void
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

Test(control, swap_to_a_missing_program_is_refused)
{
	START("-m", "1024", "-f", "60000");
	struct h_status s0, s;
	status(&s0);
	assert_error(ctl("swap cma /nonexistent/telem-egress-cma"), "missing program");
	cr_assert(strstr(reply_buf, "/nonexistent/telem-egress-cma") != NULL &&
	    strstr(reply_buf, "No such file or directory") != NULL, "%s", reply_buf);
	assert_error(ctl("swap cma no-such-telem-program"), "missing bare name");
	status(&s);
	cr_assert_eq(s.st[H_CMA].pid, s0.st[H_CMA].pid, "%s", s.raw);
	cr_assert_str_eq(s.st[H_CMA].exe, s0.st[H_CMA].exe);
	cr_assert_eq(s.st[H_CMA].restarts, 0);
	assert_flows();
	cr_assert_eq(pl_stage_pid(&P, "cma"), s0.st[H_CMA].pid);
}

static void
write_script(const char *path, const char *body)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	cr_assert_eq(chmod(path, 0700), 0);
}

/* swap STAGE to `prog`, which dies before it is ready: the reply says
 * why, and the stage runs its previous program again. */
static void
rolled_back(int stage, const char *prog, const char *why)
{
	struct h_status s0, s;
	status(&s0);
	assert_error(ctl("swap %s %s", h_stage_name[stage], prog), prog);
	cr_assert(strstr(reply_buf, why) != NULL, "%s", reply_buf);
	char text[512];
	snprintf(text, sizeof(text), "rolled back to %s\n", s0.st[stage].exe);
	cr_assert(strstr(reply_buf, text) != NULL, "%s", reply_buf);
	/* Answered once the previous program is ready again. */
	status(&s);
	cr_assert_str_eq(s.st[stage].state, "up", "%s", s.raw);
	cr_assert_str_eq(s.st[stage].exe, s0.st[stage].exe);
	cr_assert_neq(s.st[stage].pid, s0.st[stage].pid);
	cr_assert_eq(kill((pid_t)s0.st[stage].pid, 0), -1);
	cr_assert_eq(pl_wait(&P, 0), -1, "the supervisor stopped:\n%s", h_slurp(P.err));
}

Test(control, a_failed_swap_is_rolled_back)
{
	char filter[256], exit100[300], exit1[300], crash[300], never[300];
	START("-m", "1024", "-f", "60000");
	/* A stage without its required option: exit 100. */
	h_bin("telem-filter", filter, sizeof(filter));
	rolled_back(H_CMA, filter, "exited 100 (configuration error) before it was ready");
	snprintf(exit100, sizeof(exit100), "%s/exit100", P.dir);
	write_script(exit100, "exit 100");
	rolled_back(H_HIGH, exit100, "exited 100 (configuration error) before it was ready");
	/* Any death before readiness: not retried into the intensity limit. */
	snprintf(exit1, sizeof(exit1), "%s/exit1", P.dir);
	write_script(exit1, "exit 1");
	rolled_back(H_LOW, exit1, "exited 1 before it was ready");
	snprintf(crash, sizeof(crash), "%s/crash", P.dir);
	write_script(crash, "kill -KILL $$");
	rolled_back(H_CKMS, crash, "was killed by signal 9");
	/* Never ready: killed after 10 s, then rolled back the same way. */
	snprintf(never, sizeof(never), "%s/never", P.dir);
	write_script(never, "exec sleep 3600");
	rolled_back(H_CMA, never, "was not ready in 10 s and was killed");
	assert_flows();
	struct h_status s;
	status(&s);
	for (int i = H_LOW; i <= H_CKMS; i++)
		cr_assert_eq(s.st[i].restarts, 2, "%s", s.raw);  /* swap + rollback */
	cr_assert_eq(s.st[H_CMA].restarts, 4, "%s", s.raw);
}

Test(control, swap_args_replace_the_stage_options)
{
	START("-m", "1024", "-f", "60000");
	/* A bare name is one of telem's programs. */
	cr_assert_eq(ctl("swap low telem-filter --keep-below 50"), 0, "%s", reply_buf);
	pid_t pid = pl_stage_pid(&P, "low");
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char cmdline[2048];
	size_t n = fread(cmdline, 1, sizeof(cmdline) - 1, f);
	fclose(f);
	for (size_t i = 0; i < n; i++)
		cmdline[i] = cmdline[i] == '\0' ? ' ' : cmdline[i];
	cmdline[n] = '\0';
	cr_assert(strstr(cmdline, "--in low --out ckms") != NULL, "%s", cmdline);
	cr_assert(strstr(cmdline, " --keep-below 50 ") != NULL, "%s", cmdline);
	cr_assert(strstr(cmdline, "--keep-below 100") == NULL, "%s", cmdline);
	pl_nc(&P, "a 40\na 60\n");
	for (int t = 0; t < 1000 && pl_stat(&P, "ckms", "in") != 1; t++)
		nap(10);
	for (int t = 0; t < 1000 && pl_stat(&P, "low", "in") != 2; t++)
		nap(10);
	cr_assert_eq(pl_stat(&P, "low", "out"), 1);
	cr_assert_eq(pl_stat(&P, "ckms", "in"), 1);
}

/* ---- 4. SIGTERM finishes the message; SIGKILL books what was held ---- */

/* Given to -s: the shm rings of these tests hold QCAP messages; a queue
 * holds msg_max of them. */
#define QCAP "8"

static long
queue_capacity(void)
{
	long v = 10;
	if (strcmp(P.transport, "shm") == 0)
		return atol(QCAP);
	FILE *f = fopen("/proc/sys/fs/mqueue/msg_max", "r");
	if (f != NULL) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 10;
		fclose(f);
	}
	return v;
}

/* Freeze ckms and send `n` events (at once: 200 datagrams wait in the
 * socket's buffer while the pipeline is stuck). Once ckms's queue is
 * full, low cannot send, and it takes nothing more in before it has sent:
 * its `in` is final and it holds the records it has not passed on.
 * Returns that `in`. */
static long long
block_low(long n, pid_t ckms)
{
	char buf[LINES_PER_DGRAM * 16];
	cr_assert_eq(kill(ckms, SIGSTOP), 0);
	for (long i = 0; i < n;) {
		size_t len = 0;
		for (int k = 0; k < LINES_PER_DGRAM && i < n; k++, i++)
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "n%03ld %u\n",
			    i % NAMES, value_of(i));
		pl_sendto(&P, buf, len);
	}
	struct h_status s;
	for (int t = 0; t < 1000; t++, nap(10)) {
		status(&s);
		if (s.st[H_CKMS].depth == queue_capacity() && s.st[H_LOW].depth > 0) {
			const struct h_stage *lo = &s.st[H_LOW];
			cr_assert_lt(lo->out, implied(0, lo->in, 1), "low holds nothing:\n%s",
			    s.raw);
			return lo->in;
		}
	}
	cr_assert_fail("ckms's queue never filled up:\n%s", s.raw);
	return -1;
}

Test(control, sigterm_lets_a_stage_finish_what_it_holds)
{
	const long sent = 20000;
	START("-m", "1024", "-f", "60000", "-s", QCAP);
	struct h_status s0, s;
	status(&s0);
	pid_t ckms = (pid_t)s0.st[H_CKMS].pid;
	block_low(sent, ckms);
	/* restart sends SIGTERM; once low shows stopping, ckms goes on, and
	 * low sends what it held before it exits 0. */
	char replyf[300];
	snprintf(replyf, sizeof(replyf), "%s/reply", P.dir);
	pid_t bg = pl_ctl_bg(&P, "restart low", replyf);
	int stopping = 0;
	for (int t = 0; t < 1000 && !stopping; t++, nap(5)) {
		status(&s);
		stopping = strcmp(s.st[H_LOW].state, "stopping") == 0;
	}
	kill(ckms, SIGCONT);
	cr_assert(stopping, "low never shown stopping:\n%s", s.raw);
	int st;
	cr_assert_eq(waitpid(bg, &st, 0), bg);
	char *reply = h_slurp(replyf);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", reply);
	cr_assert_str_eq(reply, "ok\n");
	free(reply);
	char text[128];
	snprintf(text, sizeof(text), "stage low (pid %lld) exited 0\n", s0.st[H_LOW].pid);
	WAIT_ERR(text);
	wait_drained(sent, &s);
	assert_books(&s, sent);
	cr_assert_eq(s.st[H_LOW].restarts, 1);
}

Test(control, sigkill_books_what_the_stage_held_as_lost)
{
	const long sent = 20000;
	START("-m", "1024", "-f", "60000", "-s", QCAP);
	struct h_status s0, s;
	status(&s0);
	pid_t ckms = (pid_t)s0.st[H_CKMS].pid;
	long long k = block_low(sent, ckms);
	cr_assert_eq(kill((pid_t)s0.st[H_LOW].pid, SIGKILL), 0);
	char text[128];
	snprintf(text, sizeof(text), "stage low (pid %lld) killed by signal 9", s0.st[H_LOW].pid);
	WAIT_ERR(text);
	kill(ckms, SIGCONT);
	wait_up_again(H_LOW, s0.st[H_LOW].pid, &s);
	for (int t = 0; t < 1500; t++, nap(20)) {
		status(&s);
		if (s.st[H_LOW].in == sent && s.st[H_LOW].depth == 0 &&
		    s.st[H_CKMS].depth == 0 && s.st[H_CKMS].in == s.st[H_LOW].out)
			break;
	}
	const struct h_stage *lo = &s.st[H_LOW];
	long long lost = lo->lost;
	cr_assert_gt(lost, 0, "low was killed holding records:\n%s", s.raw);
	cr_assert_leq(lost, k);
	snprintf(text, sizeof(text), "stage low lost %lld records it held\n", lost);
	WAIT_ERR(text);
	/* It was stuck sending, so it held the last `lost` of the first k
	 * events: low.in == passed + filtered out + lost, as the values say. */
	cr_assert_eq(lo->in, sent, "%s", s.raw);
	cr_assert_eq(s.st[H_INGEST].out, sent);
	cr_assert_eq(lo->out, implied(0, sent, 1) - implied(k - lost, lost, 1), "%s", s.raw);
	cr_assert_eq(s.st[H_CKMS].in, lo->out, "%s", s.raw);
	cr_assert_eq(s.st[H_HIGH].out, implied(0, sent, 0));
	cr_assert_eq(s.st[H_CMA].in, s.st[H_HIGH].out);
	for (int i = 0; i < H_NSTAGES; i++)
		if (i != H_LOW)
			cr_assert_eq(s.st[i].lost, 0, "%s", s.raw);
	cr_assert_eq(lo->restarts, 1);
}

/* ---- 5. flush and stop ------------------------------------------------- */

Test(control, flush_reports_now)
{
	START("-m", "1024", "-f", "60000");
	pl_nc(&P, "a 10\nb 1000\n");
	for (int t = 0; t < 1000 && (pl_stat(&P, "ckms", "out") != 1 ||
	    pl_stat(&P, "cma", "out") != 1); t++)
		nap(10);
	char *out = h_slurp(P.out);
	cr_assert_str_eq(out, "", "a report before any Flush");
	free(out);
	cr_assert_eq(ctl("flush"), 0, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, "ok\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 1);
	WAIT_OUT("[CMA] b 1000\n", 1);
	/* A report holds the names that changed since the last one. */
	pl_nc(&P, "b 2000\n");
	for (int t = 0; t < 1000 && pl_stat(&P, "cma", "out") != 2; t++)
		nap(10);
	cr_assert_eq(ctl("flush"), 0, "%s", reply_buf);
	WAIT_OUT("[CMA] b 1500\n", 1);
	/* Two egresses write: their lines interleave in any order. */
	out = h_slurp(P.out);
	cr_assert_eq(h_count(out, "\n"), 8, "%s", out);
	cr_assert_eq(h_count(out, "[CKMS] a "), 6, "%s", out);
	cr_assert_eq(h_count(out, "[CMA] b 1000\n"), 1, "%s", out);
	cr_assert_eq(h_count(out, "[CMA] b 1500\n"), 1, "%s", out);
	free(out);
}

Test(control, stop_replies_ok_and_leaves_nothing)
{
	START("-m", "1024", "-f", "60000");
	pl_nc(&P, "a 10\n");
	for (int t = 0; t < 1000 && pl_stat(&P, "ckms", "in") != 1; t++)
		nap(10);
	char sock[256];
	struct stat st;
	cr_assert_eq(ctl_default_path(sock, sizeof(sock), P.instance, 0), 0);
	cr_assert_eq(stat(sock, &st), 0);
	cr_assert_gt(pl_objects_left(&P), 0);
	cr_assert_eq(ctl("stop"), 0, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, "ok\n");
	/* `ok` comes after the instance is taken down, before the exit. */
	cr_assert_eq(pl_objects_left(&P), 0);
	cr_assert_eq(stat(sock, &st), -1, "%s is still there", sock);
	int ws = pl_wait(&P, 10000);
	cr_assert(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "%d\n%s", ws,
	    h_slurp(P.err));
	char *out = h_slurp(P.out);
	cr_assert(strstr(out, "[CKMS] a 0.5:10\n") != NULL, "final flush missing:\n%s", out);
	free(out);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "pgrep -f '[t]elem-[a-z-]* -i %s ' >/dev/null", P.instance);
	cr_assert_neq(system(cmd), 0, "a stage outlived the supervisor");
}

/* ---- 6. readiness ------------------------------------------------------ */

Test(control, stages_start_downstream_first_each_after_the_last_is_ready)
{
	START("-m", "1024", "-f", "60000");
	struct h_status s;
	status(&s);
	for (int i = 0; i < H_NSTAGES; i++)
		cr_assert_str_eq(s.st[i].state, "up");
	/* ckms, cma, low, high, ingest: each started after the one before it
	 * said it was ready. */
	static const int order[] = { H_CKMS, H_CMA, H_LOW, H_HIGH, H_INGEST };
	char *err = h_slurp(P.err);
	const char *prev_ready = err;
	for (size_t i = 0; i < 5; i++) {
		const struct h_stage *t = &s.st[order[i]];
		char started[128], ready[128];
		snprintf(started, sizeof(started), "stage %s started (pid %lld)",
		    h_stage_name[order[i]], t->pid);
		snprintf(ready, sizeof(ready), "stage %s (pid %lld) ready",
		    h_stage_name[order[i]], t->pid);
		const char *a = strstr(err, started), *b = strstr(err, ready);
		cr_assert(a != NULL && b != NULL && a > prev_ready && b > a, "%s:\n%s",
		    h_stage_name[order[i]], err);
		prev_ready = b;
	}
	free(err);
}

Test(control, a_stage_shows_starting_until_it_is_ready)
{
	char gate[300], go[300], cma[256], body[1024], replyf[300];
	START("-m", "1024", "-f", "60000");
	/* A program that is not ready until told: it waits for a file, then
	 * becomes the real egress (which signals readiness itself). */
	snprintf(go, sizeof(go), "%s/go", P.dir);
	snprintf(gate, sizeof(gate), "%s/gate", P.dir);
	char *real = realpath(h_bin("telem-egress-cma", cma, sizeof(cma)), NULL);
	cr_assert_not_null(real);
	snprintf(body, sizeof(body),
	    "while [ ! -e %s ]; do sleep 0.01; done\nexec %s \"$@\"", go, real);
	free(real);
	write_script(gate, body);
	pid_t old = pl_stage_pid(&P, "cma");
	snprintf(replyf, sizeof(replyf), "%s/reply", P.dir);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "swap cma %s", gate);
	pid_t bg = pl_ctl_bg(&P, cmd, replyf);
	struct h_status s;
	int starting = 0;
	for (int t = 0; t < 1000 && !starting; t++, nap(10)) {
		status(&s);
		starting = s.st[H_CMA].pid > 0 && s.st[H_CMA].pid != old &&
		    strcmp(s.st[H_CMA].state, "starting") == 0;
	}
	cr_assert(starting, "cma never shown starting:\n%s", s.raw);
	cr_assert_str_eq(s.st[H_CMA].exe, gate);
	/* Not ready, so the swap is not answered yet. */
	int st;
	cr_assert_eq(waitpid(bg, &st, WNOHANG), 0, "swap answered before ready");
	FILE *f = fopen(go, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(waitpid(bg, &st, 0), bg);
	char *reply = h_slurp(replyf);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", reply);
	cr_assert_str_eq(reply, "ok\n");
	free(reply);
	status(&s);
	cr_assert_str_eq(s.st[H_CMA].state, "up");
	assert_flows();
}

/* ---- 7. one supervisor per instance; a stale socket --------------------- */

/* Remove q's files only: its instance is P's, whose objects stay. */
static void
forget(struct pl *q)
{
	unlink(q->out);
	unlink(q->err);
	rmdir(q->dir);
}

Test(control, a_second_supervisor_on_the_instance_is_refused)
{
	START("-m", "1024", "-f", "60000");
	struct h_status s0, s;
	status(&s0);
	struct pl Q;
	pl_init(&Q);
	snprintf(Q.instance, sizeof(Q.instance), "%s", P.instance);
	pl_spawn(&Q, "-m", "1024", NULL);
	int st = pl_wait(&Q, 10000);
	char *err = h_slurp(Q.err);
	forget(&Q);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "%d:\n%s", st, err);
	cr_assert_eq(h_count(err, "\n"), 1, "not one line:\n%s", err);
	char text[128];
	snprintf(text, sizeof(text), "instance '%s' is already run by another supervisor",
	    P.instance);
	cr_assert(strstr(err, text) != NULL, "%s", err);
	free(err);
	/* The first one did not notice. */
	status(&s);
	for (int i = 0; i < H_NSTAGES; i++)
		cr_assert_eq(s.st[i].pid, s0.st[i].pid);
	cr_assert_gt(pl_objects_left(&P), 0);
	assert_flows();

	/* Another instance on the same control socket is refused too, and
	 * takes its own objects away with it. */
	char sock[256];
	cr_assert_eq(ctl_default_path(sock, sizeof(sock), P.instance, 0), 0);
	struct pl R;
	pl_init(&R);
	pl_spawn(&R, "-m", "1024", "--control", sock, NULL);
	st = pl_wait(&R, 10000);
	err = h_slurp(R.err);
	int left = pl_objects_left(&R);
	pl_cleanup(&R);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "%d:\n%s", st, err);
	cr_assert(strstr(err, "is in use by a running supervisor") != NULL, "%s", err);
	cr_assert_eq(left, 0);
	free(err);
	cr_assert_eq(ctl("status"), 0, "%s", reply_buf);
}

Test(control, a_stale_socket_does_not_block_a_new_supervisor)
{
	START("-m", "1024", "-f", "60000");
	struct h_status s0, s;
	status(&s0);
	int st = pl_signal_wait(&P, SIGKILL, 5000);
	cr_assert(st != -1 && WIFSIGNALED(st));
	/* Its stages follow it (parent-death signal). */
	for (int i = 0; i < H_NSTAGES; i++)
		for (int t = 0; t < 500 && kill((pid_t)s0.st[i].pid, 0) == 0; t++)
			nap(10);
	char sock[256];
	struct stat sb;
	cr_assert_eq(ctl_default_path(sock, sizeof(sock), P.instance, 0), 0);
	cr_assert_eq(stat(sock, &sb), 0, "the killed supervisor's socket is gone");
	cr_assert(S_ISSOCK(sb.st_mode));
	cr_assert_gt(pl_objects_left(&P), 0, "the queues and stats segment stay");
	/* Nobody answers there. */
	cr_assert_eq(ctl("status"), 1, "%s", reply_buf);
	cr_assert(strstr(reply_buf, "Connection refused") != NULL, "%s", reply_buf);

	START("-m", "1024", "-f", "60000");
	char text[128];
	snprintf(text, sizeof(text), "removed stale %s /telem.%s.low\n",
	    strcmp(P.transport, "shm") == 0 ? "shm" : "mqueue", P.instance);
	char *err = h_slurp(P.err);
	cr_assert(strstr(err, text) != NULL, "%s", err);
	free(err);
	status(&s);
	for (int i = 0; i < H_NSTAGES; i++) {
		cr_assert_str_eq(s.st[i].state, "up");
		cr_assert_neq(s.st[i].pid, s0.st[i].pid);
	}
	assert_flows();
	cr_assert_eq(ctl("stop"), 0, "%s", reply_buf);
	cr_assert_eq(pl_objects_left(&P), 0);
	st = pl_wait(&P, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
