/* e2e_control.c - the control socket end to end: every telemctl command
 * against the real bin/telem-supervisor and its replies, the exact books of the stats
 * segment under load (both transports), flush and stop, a second
 * supervisor and a stale socket. Restart, swap, lost= and readiness are in
 * e2e_swap.c. Waits are bounded polls of `telemctl status`; nothing
 * asserts on speed. */
#include <criterion/criterion.h>

#include <sys/socket.h>
#include <sys/un.h>

#include "clock.h"
#include "control.h"
#include "fault.h"
#include "supervisor/control.h"
#include "wire.h"

TestSuite(control, .init = setup, .fini = teardown, .timeout = 60);

/* ---- 1. the commands, their replies and exit codes ------------------- */

Test(control, books_prints_every_equation_and_what_is_off)
{
	START("-m", "1024", "-f", "60000");
	pl_nc(&P, "a 10\nb 200\nc 100\n");
	struct h_status s;
	wait_drained(3, &s);
	cr_assert_eq(ctl("books"), 0, "%s", reply_buf);
	cr_assert_str_eq(reply_buf,
	    "ingest: in=3 == out=3 + filtered=0 + dropped=0 + lost=0 ok\n"
	    "low: in=3 == out=2 + filtered=1 + dropped=0 + lost=0 ok\n"
	    "high: in=3 == out=2 + filtered=1 + dropped=0 + lost=0 ok\n"
	    "ckms: in=2 == out=2 + filtered=0 + dropped=0 + lost=0 ok\n"
	    "cma: in=2 == out=2 + filtered=0 + dropped=0 + lost=0 ok\n"
	    "low: ingest.out=3 == low.in=3 ok\n"
	    "high: ingest.out=3 == high.in=3 ok\n"
	    "ckms: low.out=2 == ckms.in=2 ok\n"
	    "cma: high.out=2 == cma.in=2 ok\n"
	    "balanced\nok\n");
	/* A record written into cma's queue by no stage: cma takes it in,
	 * but high never sent it, so that queue does not add up. */
	unsigned char m[64];
	struct wire_writer w;
	wire_writer_init(&w, m, sizeof(m));
	cr_assert_eq(wire_put(&w, WIRE_TELEMETRY, "x", 1, 1), 0);
	size_t len = wire_finish(&w);
	struct chan *c = fault_queue(&P, "cma");
	cr_assert_not_null(c);
	cr_assert_eq(chan_send(c, m, len, 5000), 0);
	chan_close(c);
	/* (booked out once cma's state is saved, up to a second later) */
	for (int t = 0; t < 500 && pl_stat(&P, "cma", "out") != 3; t++)
		nap(10);
	cr_assert_eq(ctl("books"), 0, "%s", reply_buf);
	cr_assert(strstr(reply_buf, "cma: in=3 == out=3 + filtered=0 + dropped=0 + "
	    "lost=0 ok\n") != NULL, "%s", reply_buf);
	cr_assert(strstr(reply_buf, "cma: high.out=2 == cma.in=3 MISMATCH\n") != NULL,
	    "%s", reply_buf);
	static const char tail[] = "\nnot balanced: queue cma\nok\n";
	size_t n = strlen(reply_buf), t = sizeof(tail) - 1;
	cr_assert(n > t && strcmp(reply_buf + n - t, tail) == 0, "%s", reply_buf);
}

Test(control, status_lists_every_stage_then_ok)
{
	START("-m", "1024", "-f", "60000");
	int rc = ctl("status");
	cr_assert_eq(rc, 0, "%s", reply_buf);
	/* Five lines in pipeline order, the fields of docs/design.md §7 in
	 * order with filtered= after out= (and ingest's dropped_dgrams= after
	 * dropped=), then lost=, inflight=, sink_dropped= and exe=, then `ok`. */
	const char *line = reply_buf;
	for (int i = 0; i < H_NSTAGES; i++) {
		char head[64];
		snprintf(head, sizeof(head), "stage=%s pid=", h_stage_name[i]);
		cr_assert(strncmp(line, head, strlen(head)) == 0, "line %d:\n%s", i, reply_buf);
		static const char *const keys[] = { " pid=", " state=", " restarts=",
		    " uptime_s=", " in_queue=", " depth=", " in=", " out=", " filtered=",
		    " bad=", " dropped=", " dropped_dgrams=", " lost=", " inflight=",
		    " sink_dropped=", " exe=" };
		const char *at = line, *eol = strchr(line, '\n');
		cr_assert_not_null(eol);
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			const char *f = strstr(at, keys[k]);
			if (i != H_INGEST && strcmp(keys[k], " dropped_dgrams=") == 0) {
				cr_assert(f == NULL || f > eol, "dropped_dgrams= is "
				    "ingest's:\n%.*s", (int)(eol - line), line);
				continue;
			}
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

/* ---- 3. flush and stop ------------------------------------------------- */

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
	cr_assert_eq(h_procs_of(P.instance), 0, "a stage outlived the supervisor");
}

/* A supervisor stopped by SIGSTOP (or hung) accepts connections into its
 * backlog and never answers: telemctl gives up after 10 s for status (man/
 * telemctl.8), with one line and exit 1, whether it got in or found the
 * backlog full; once the supervisor runs again, it is answered. */
/* `telemctl status`, killed after 30 s if it is still waiting: its exit
 * status (-1 if killed) and output in reply_buf, the time it took in *ms. */
static int
status_within_30s(long long *ms)
{
	char exe[256], cmd[512];
	snprintf(cmd, sizeof(cmd), "timeout -s KILL 30 %s -i %s status 2>&1",
	    h_bin("telemctl", exe, sizeof(exe)), P.instance);
	long long t0 = clock_ms();
	int rc = h_run(cmd, reply_buf, sizeof(reply_buf));
	*ms = clock_ms() - t0;
	return rc == 137 ? -1 : rc;
}

Test(control, telemctl_gives_up_on_a_stopped_supervisor)
{
	START("-m", "1024", "-f", "60000");
	cr_assert_eq(kill(P.pid, SIGSTOP), 0);
	long long took;
	int rc = status_within_30s(&took);
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert_eq(h_count(reply_buf, "\n"), 1, "%s", reply_buf);
	cr_assert(strstr(reply_buf, "telemctl: no whole reply to status from ") ==
	    reply_buf && strstr(reply_buf, " in 10 s (") != NULL, "%s", reply_buf);
	cr_assert(took >= 9500 && took < 20000, "%lld ms", took);
	/* The backlog full: telemctl's connect waits as long, no longer. */
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = sa.sun_path;
	cr_assert_eq(ctl_default_path(sa.sun_path, sizeof(sa.sun_path), P.instance,
	    0), 0);
	int fds[CTL_CONNS + 8], n = 0;
	for (; n < CTL_CONNS + 8; n++) {
		fds[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		cr_assert_neq(fds[n], -1);
		if (connect(fds[n], (struct sockaddr *)&sa, sizeof(sa)) == -1) {
			cr_assert_eq(errno, EAGAIN, "connect %s: %s", path, strerror(errno));
			close(fds[n]);
			break;
		}
	}
	cr_assert_lt(n, CTL_CONNS + 8, "the backlog never filled");
	rc = status_within_30s(&took);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert(strstr(reply_buf, "not accepted in 10 s (") != NULL, "%s",
	    reply_buf);
	cr_assert(took >= 9500 && took < 20000, "%lld ms", took);
	cr_assert_eq(kill(P.pid, SIGCONT), 0);
	cr_assert_eq(ctl("status"), 0, "%s", reply_buf);
}

/* ---- 4. one supervisor per instance; a stale socket --------------------- */

/* Remove q's files only: its instance is P's, whose objects stay. */
static void
forget(struct pl *q)
{
	h_rm_dir(q->dir);
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
