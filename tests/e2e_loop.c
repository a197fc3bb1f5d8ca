/* e2e_loop.c - the supervisor's loop against hostile clients and stuck
 * stages, end to end: a control client that trickles its request, many
 * idle ones, an oversized request and two `stop`s (docs/design.md §7: no
 * client stalls the supervisor); a stage that stops reading is shown
 * stalled and restarted; a stage's process group goes with it; readiness
 * is exactly "R\n". Waits are bounded polls; nothing asserts on speed. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "control.h"

TestSuite(loop, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ------------------------------------------------------------ */

/* A connection to P's control socket, or the test fails. */
static int
ctl_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	cr_assert_eq(ctl_default_path(sa.sun_path, sizeof(sa.sun_path), P.instance, 0), 0);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_neq(fd, -1);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s",
	    sa.sun_path, strerror(errno));
	return fd;
}

/* Everything the supervisor sends on fd until it closes it (10 s at most). */
static void
read_all(int fd, char *buf, size_t cap)
{
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	size_t len = 0;
	ssize_t n;
	while (len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
}

/* A report of name `name` is on stdout (10 s at most). */
static void
wait_reported(const char *name)
{
	char text[64];
	snprintf(text, sizeof(text), "[CKMS] %s 0.5:", name);
	WAIT_OUT(text, 1);
}

/* How many live processes run `sleep ARG` (read from /proc: a zombie has
 * no command line and does not count). */
static int
count_sleeps(const char *arg)
{
	DIR *d = opendir("/proc");
	cr_assert_not_null(d);
	char want[64];
	int wlen = snprintf(want, sizeof(want), "sleep%c%s", '\0', arg) + 1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char path[300], cmd[128];
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t len = fread(cmd, 1, sizeof(cmd), f);
		fclose(f);
		if (len == (size_t)wlen && memcmp(cmd, want, len) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static int
wait_sleeps(const char *arg, int want)
{
	int n = -1;
	for (int t = 0; t < 500 && (n = count_sleeps(arg)) != want; t++)
		nap(10);
	return n;
}

/* ---- 1. control clients cannot stall the loop ----------------------------- */

/* A client that sends one byte every 1.5 s and never a whole line, from a
 * thread of its own, connecting again whenever it is dropped. */
struct trickle {
	pthread_t thread;
	volatile int stop;
	int dropped;
};

static void *
trickle_main(void *arg)
{
	struct trickle *t = arg;
	int fd = -1;
	while (!t->stop) {
		if (fd != -1 && send(fd, "s", 1, MSG_NOSIGNAL) != 1) {
			close(fd);
			fd = -1;
			t->dropped++;
		}
		if (fd == -1) {
			fd = ctl_connect();
			if (send(fd, "s", 1, MSG_NOSIGNAL) != 1)
				t->dropped++;
		}
		for (int i = 0; i < 15 && !t->stop; i++)
			nap(100);
	}
	if (fd != -1)
		close(fd);
	return NULL;
}

Test(loop, a_trickling_client_stalls_nothing)
{
	START("-m", "1024", "-f", "200");
	struct trickle t = { .stop = 0 };
	cr_assert_eq(pthread_create(&t.thread, NULL, trickle_main, &t), 0);
	/* Meanwhile every name sent is reported by the Flush ticks, and
	 * telemctl is answered. */
	for (int i = 0; i < 6; i++) {
		char name[32], line[64];
		snprintf(name, sizeof(name), "trickle%d", i);
		snprintf(line, sizeof(line), "%s 5\n", name);
		pl_nc(&P, line);
		wait_reported(name);
		cr_assert_eq(ctl("status"), 0, "status while trickling:\n%s", reply_buf);
		nap(1500);
	}
	t.stop = 1;
	pthread_join(t.thread, NULL);
	cr_assert_gt(t.dropped, 0, "the trickling client was never dropped");
	WAIT_ERR("control client dropped: no whole request line in 2 s");
	char *err = h_slurp(P.err);
	/* At most a line a second, however many were dropped. */
	cr_assert_leq(h_count(err, "control client dropped"), 10, "%s", err);
	free(err);
	/* A report holds every name once anything changed: one report (at
	 * least) after each name sent, trickle0 in each of them. */
	char *out = h_slurp(P.out);
	cr_assert_geq(h_count(out, "[CKMS] trickle0 0.5:5\n"), 6, "%s", out);
	free(out);
}

Test(loop, idle_clients_stall_nothing)
{
	START("-m", "1024", "-f", "200");
	enum { IDLE = 50, MANY = 80 };
	int fds[MANY];
	for (int i = 0; i < IDLE; i++)
		fds[i] = ctl_connect();
	/* Answered with 50 idle connections open, and Flush goes on. */
	cr_assert_eq(ctl("status"), 0, "%s\n%s", reply_buf, h_slurp(P.err));
	cr_assert(strstr(reply_buf, "stage=ingest") != NULL, "%s", reply_buf);
	pl_nc(&P, "idle1 5\n");
	wait_reported("idle1");
	/* They are dropped after 2 s. */
	char buf[256];
	for (int i = 0; i < IDLE; i++) {
		read_all(fds[i], buf, sizeof(buf));
		cr_assert_str_eq(buf, "");
		close(fds[i]);
	}
	WAIT_ERR("control client dropped: no whole request line in 2 s");
	/* Past 64 open connections a new one is closed at once (said in a
	 * line a second at most); once the idle ones are dropped telemctl is
	 * served again. */
	for (int i = 0; i < MANY; i++)
		fds[i] = ctl_connect();
	WAIT_ERR("control socket: 64 connections open, a new one closed at once");
	int rc = 1;
	for (int t = 0; t < 100 && (rc = ctl("status")) != 0; t++)
		nap(100);
	cr_assert_eq(rc, 0, "%s", reply_buf);
	pl_nc(&P, "idle2 5\n");
	wait_reported("idle2");
	for (int i = 0; i < MANY; i++)
		close(fds[i]);
	char *err = h_slurp(P.err);
	cr_assert_leq(h_count(err, "control client dropped"), 8, "not rate-limited:\n%s",
	    err);
	cr_assert_leq(h_count(err, "connections open"), 4, "not rate-limited:\n%s", err);
	free(err);
}

Test(loop, an_oversized_request_is_refused_and_dropped)
{
	START("-m", "1024", "-f", "60000");
	int fd = ctl_connect();
	static char big[5000];
	memset(big, 'x', sizeof(big));
	/* The supervisor may close before it has all: not an error here. */
	(void)!send(fd, big, sizeof(big), MSG_NOSIGNAL);
	char buf[256];
	read_all(fd, buf, sizeof(buf));
	close(fd);
	cr_assert_str_eq(buf, "error: request longer than 4096 bytes\n");
	WAIT_ERR("control client dropped: request of more than 4096 bytes");
	/* A line of exactly 4096 bytes, newline included, is read whole. */
	fd = ctl_connect();
	memset(big, ' ', 4095);
	memcpy(big + 4095 - 6, "status", 6);
	big[4095] = '\n';
	cr_assert_eq(send(fd, big, 4096, MSG_NOSIGNAL), 4096);
	read_all(fd, buf, sizeof(buf));
	close(fd);
	cr_assert(strncmp(buf, "stage=ingest ", 13) == 0, "%s", buf);
	cr_assert_eq(ctl("status"), 0, "%s", reply_buf);
}

Test(loop, every_stop_gets_a_reply)
{
	START("-m", "1024", "-f", "60000");
	/* A stage that takes its time to stop keeps the pipeline up a while:
	 * long enough for the second `stop` to arrive while the first waits. */
	char f1[300], f2[300];
	snprintf(f1, sizeof(f1), "%s/stop1", P.dir);
	snprintf(f2, sizeof(f2), "%s/stop2", P.dir);
	pid_t ckms = pl_stage_pid(&P, "ckms");
	cr_assert_gt(ckms, 0);
	cr_assert_eq(kill(ckms, SIGSTOP), 0);
	pid_t ingest = pl_stage_pid(&P, "ingest");
	pid_t a = pl_ctl_bg(&P, "stop", f1);
	char text[64];
	snprintf(text, sizeof(text), "stage ingest (pid %d) exited", (int)ingest);
	WAIT_ERR(text);
	pid_t b = pl_ctl_bg(&P, "stop", f2);
	int sa, sb;
	cr_assert_eq(waitpid(a, &sa, 0), a);
	cr_assert_eq(waitpid(b, &sb, 0), b);
	char *r1 = h_slurp(f1), *r2 = h_slurp(f2);
	cr_assert(WIFEXITED(sa) && WEXITSTATUS(sa) == 0, "%s", r1);
	cr_assert(WIFEXITED(sb) && WEXITSTATUS(sb) == 0, "%s", r2);
	cr_assert_str_eq(r1, "ok\n");
	cr_assert_str_eq(r2, "ok\n");
	free(r1);
	free(r2);
	int st = pl_wait(&P, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%d:\n%s", st,
	    h_slurp(P.err));
	cr_assert_eq(pl_objects_left(&P), 0);
	cr_assert_eq(kill(ckms, 0), -1, "ckms outlived the supervisor");
}

/* ---- 2. stalled stages ----------------------------------------------------- */

Test(loop, a_stopped_filter_is_stalled_and_restarted, .timeout = 90)
{
	const long sent = 20000;
	START("-m", "1024", "-f", "200", "--stall-ms", "3000");
	struct h_status s0, s;
	status(&s0);
	pid_t low = (pid_t)s0.st[H_LOW].pid;
	cr_assert_eq(kill(low, SIGSTOP), 0);
	/* Sent at once: the queue of low fills, ingest blocks on it, the rest
	 * waits in the socket's buffer (a few hundred kB of its 4 MB). */
	char buf[LINES_PER_DGRAM * 16];
	for (long i = 0; i < sent;) {
		size_t len = 0;
		for (int k = 0; k < LINES_PER_DGRAM && i < sent; k++, i++)
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "n%03ld %u\n",
			    i % NAMES, value_of(i));
		pl_sendto(&P, buf, len);
	}
	/* Stalled: shown (if a look falls in the moment), logged, restarted. */
	int seen = 0;
	char text[160];
	snprintf(text, sizeof(text), "stage low (pid %d) stalled: took nothing from "
	    "queue low", (int)low);
	for (int t = 0; t < 1500; t++, nap(10)) {
		status(&s);
		seen |= strcmp(s.st[H_LOW].state, "stalled") == 0;
		if (s.st[H_LOW].pid != low && strcmp(s.st[H_LOW].state, "up") == 0)
			break;
	}
	cr_assert_neq(s.st[H_LOW].pid, low, "low never restarted:\n%s\n%s", s.raw,
	    h_slurp(P.err));
	WAIT_ERR(text);
	cr_log_info("state=stalled seen in status: %s", seen ? "yes" : "no");
	cr_assert_eq(s.st[H_LOW].restarts, 1, "%s", s.raw);
	/* Logged once. */
	char *err = h_slurp(P.err);
	cr_assert_eq(h_count(err, "stalled"), 1, "%s", err);
	free(err);
	/* The data flows again, and the books balance: what low held when it
	 * was stopped it finished after SIGTERM (and SIGCONT), so nothing was
	 * lost; its queue kept its records. */
	wait_drained(sent, &s);
	assert_books(&s, sent);
	assert_flows();
	cr_assert_eq(kill(low, 0), -1, "the stalled process is still there");
}

/* The supervisor stopped (SIGSTOP) for longer than the stall time: on
 * waking, the tick due puts a Flush in each filter's queue, and the look
 * that follows at once saw nothing of the time it slept. No stage is
 * judged stalled for it (supervisor/policy.c). */
Test(loop, a_supervisor_stopped_past_the_stall_time_restarts_nothing)
{
	START("-m", "1024", "-f", "200", "--stall-ms", "2000");
	nap(1500);   /* looked at with empty queues, a look every 0.5 s */
	cr_assert_eq(kill(P.pid, SIGSTOP), 0);
	nap(3000);
	cr_assert_eq(kill(P.pid, SIGCONT), 0);
	nap(2500);   /* five looks, a stall time and more */
	struct h_status s;
	status(&s);
	for (int i = 0; i < H_NSTAGES; i++)
		cr_assert_eq(s.st[i].restarts, 0, "%s\n%s", s.raw, h_slurp(P.err));
	char *err = h_slurp(P.err);
	cr_assert(strstr(err, "stalled") == NULL, "%s", err);
	free(err);
}

/* A tick that finds a filter's queue full is not lost: the supervisor
 * tries again until the Flush fits (supervisor/loop.c), so the report
 * comes as soon as the filter reads again, not one interval later. The
 * clock is the report itself: ticks fall every 2 s after the one that
 * printed `a`'s first report, and the filter runs again 0.5 s after the
 * next; the second report must come before the tick after that. */
static long long
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

Test(loop, a_tick_that_finds_a_queue_full_is_sent_once_there_is_room)
{
	/* -s 10: a ring as deep as an mqueue (the shm default is deeper) */
	START("-m", "1024", "-f", "2000", "--stall-ms", "60000", "-s", "10");
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.5:", 1);
	long long tick = mono_ms();
	struct h_status s;
	status(&s);
	pid_t low = (pid_t)s.st[H_LOW].pid;
	cr_assert_eq(kill(low, SIGSTOP), 0);
	/* One message a datagram (ingest reads each before the next comes):
	 * more than low's queue holds, so it is full at the next tick. */
	for (int i = 0; i < 14; i++, nap(40))
		pl_nc(&P, "a 20\n");
	status(&s);
	cr_assert_eq(s.st[H_LOW].depth, 10, "low's queue not full:\n%s", s.raw);
	cr_assert_lt(mono_ms() - tick, 1700, "too slow to fill the queue before "
	    "the tick");
	nap((int)(tick + 2500 - mono_ms()));
	char *out = h_slurp(P.out);
	int before = h_count(out, "[CKMS] a 0.5:");
	free(out);
	cr_assert_eq(before, 1, "a report while low was stopped");
	cr_assert_eq(kill(low, SIGCONT), 0);
	/* Before the tick at 4 s: the one at 2 s, sent late. */
	int late = h_wait_text(P.out, "[CKMS] a 0.5:", 2, (int)(tick + 3700 - mono_ms()));
	cr_assert(late, "the tick's Flush was lost: no report until the next "
	    "tick\n%s\nstderr:\n%s", h_slurp(P.out), h_slurp(P.err));
	char *err = h_slurp(P.err);
	cr_assert_eq(h_count(err, "one Flush for two ticks"), 0, "%s", err);
	free(err);
}

Test(loop, stall_ms_defaults_to_ten_seconds)
{
	char exe[256], cmd[600];
	h_bin("telem-supervisor", exe, sizeof(exe));
	/* The help text wraps; the default is on the second line. */
	snprintf(cmd, sizeof(cmd), "%s -h | tr -s ' \\n' ' ' | grep -q -- "
	    "'--stall-ms n a stage with queued input that takes nothing for n ms "
	    "is stalled: restarted (default 10000; 0: never)'", exe);
	cr_assert_eq(system(cmd), 0);
	char why[256];
	cr_assert(h_refuses(&P, "--stall-ms 50", why, sizeof(why)), "%s", why);
	cr_assert(h_refuses(&P, "--stall-ms x", why, sizeof(why)), "%s", why);
	/* Under load with no stall, the default restarts nothing. */
	START("-m", "1024", "-f", "200");
	SEND(0, 20000);
	struct h_status s;
	wait_drained(20000, &s);
	assert_books(&s, 20000);
	for (int i = 0; i < H_NSTAGES; i++)
		cr_assert_eq(s.st[i].restarts, 0, "%s", s.raw);
}

/* ---- 3. process groups and readiness ------------------------------------ */

/* A script for cma that forks `sleep ARG` and then becomes the real
 * egress; ARG tells its sleep from anyone else's. */
static void
forking_cma(char *path, size_t cap, char *arg, size_t argcap)
{
	char cma[256], body[1024];
	char *real = realpath(h_bin("telem-egress-cma", cma, sizeof(cma)), NULL);
	cr_assert_not_null(real);
	snprintf(arg, argcap, "1000.%d", (int)(getpid() % 100000));
	snprintf(path, cap, "%s/forking-cma", P.dir);
	snprintf(body, sizeof(body), "sleep %s &\nexec %s \"$@\"", arg, real);
	free(real);
	write_script(path, body);
}

Test(loop, a_stage_s_children_go_with_it)
{
	char script[300], arg[32];
	START("-m", "1024", "-f", "60000");
	forking_cma(script, sizeof(script), arg, sizeof(arg));
	cr_assert_eq(ctl("swap cma %s", script), 0, "%s\n%s", reply_buf, h_slurp(P.err));
	cr_assert_eq(wait_sleeps(arg, 1), 1, "the script's sleep never ran");
	/* restart: SIGTERM to the group, so the sleep goes too. */
	cr_assert_eq(ctl("restart cma"), 0, "%s\n%s", reply_buf, h_slurp(P.err));
	cr_assert_eq(wait_sleeps(arg, 1), 1, "the new one forks its own");
	/* One, not two: the first one's is gone. (Every start forks one.) */
	cr_assert_eq(count_sleeps(arg), 1);
	/* kill -9 of the stage alone: what it left in its group is killed. */
	pid_t cma = pl_stage_pid(&P, "cma");
	cr_assert_eq(kill(cma, SIGKILL), 0);
	char text[128];
	snprintf(text, sizeof(text), "stage cma (pid %d) left processes in its group: "
	    "killed", (int)cma);
	WAIT_ERR(text);
	struct h_status s;
	for (int t = 0; t < 500; t++, nap(10)) {
		status(&s);
		if (s.st[H_CMA].pid != cma && strcmp(s.st[H_CMA].state, "up") == 0)
			break;
	}
	cr_assert_str_eq(s.st[H_CMA].state, "up", "%s", s.raw);
	cr_assert_eq(wait_sleeps(arg, 1), 1);
	/* Stop: the whole pipeline and every group. */
	cr_assert_eq(ctl("stop"), 0, "%s", reply_buf);
	cr_assert_eq(wait_sleeps(arg, 0), 0, "a sleep outlived the pipeline");
}

Test(loop, anything_but_R_newline_on_the_ready_fd_is_a_failed_start)
{
	char garbage[300], closed[300], body[256], arg[32];
	START("-m", "1024", "-f", "60000");
	struct h_status s0, s;
	status(&s0);
	snprintf(arg, sizeof(arg), "1000.%d", (int)(getpid() % 100000));
	snprintf(garbage, sizeof(garbage), "%s/garbage", P.dir);
	snprintf(body, sizeof(body), "printf X >&3\nexec sleep %s", arg);
	write_script(garbage, body);
	assert_error(ctl("swap cma %s", garbage), "garbage on the ready fd");
	cr_assert(strstr(reply_buf, "wrote something else than \"R\\n\" on its ready "
	    "fd and was killed; rolled back to") != NULL, "%s", reply_buf);
	WAIT_ERR("wrote \"X\" on its ready fd, not \"R\\n\": killed");
	status(&s);
	cr_assert_str_eq(s.st[H_CMA].state, "up", "%s", s.raw);
	cr_assert_str_eq(s.st[H_CMA].exe, s0.st[H_CMA].exe);
	cr_assert_eq(wait_sleeps(arg, 0), 0, "the failed program's group lives on");
	/* The fd closed without "R\n" (and the process alive): the same. */
	snprintf(closed, sizeof(closed), "%s/closed", P.dir);
	snprintf(body, sizeof(body), "exec 3>&-\nexec sleep %s", arg);
	write_script(closed, body);
	assert_error(ctl("swap cma %s", closed), "ready fd closed");
	cr_assert(strstr(reply_buf, "closed its ready fd without writing \"R\\n\"") !=
	    NULL, "%s", reply_buf);
	status(&s);
	cr_assert_str_eq(s.st[H_CMA].state, "up", "%s", s.raw);
	cr_assert_str_eq(s.st[H_CMA].exe, s0.st[H_CMA].exe);
	cr_assert_eq(wait_sleeps(arg, 0), 0);
	assert_flows();
	cr_assert_eq(pl_wait(&P, 0), -1, "the supervisor stopped:\n%s", h_slurp(P.err));
}
