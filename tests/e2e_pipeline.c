/* e2e_pipeline.c - the default pipeline driven for real: bin/telem-supervisor
 * on its own instance and port, `nc -u` as the client, real signals, real
 * queues in /dev/mqueue (or /dev/shm with TELEM_TRANSPORT=shm). */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chan.h"
#include "clock.h"
#include "harness.h"
#include "stats.h"

static struct pl P;

static void setup(void) { pl_init(&P); }
static void teardown(void) { pl_cleanup(&P); }

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 60);

#define START(...) cr_assert(pl_start(&P, __VA_ARGS__, NULL), \
	"supervisor did not come up:\n%s", h_slurp(P.err))
#define WAIT_OUT(text, n) cr_assert(h_wait_text(P.out, text, n, 5000), \
	"stdout never held %d x '%s':\n%s\nstderr:\n%s", n, text, \
	h_slurp(P.out), h_slurp(P.err))
#define WAIT_ERR(text) cr_assert(h_wait_text(P.err, text, 1, 5000), \
	"stderr never held '%s':\n%s", text, h_slurp(P.err))

Test(pipeline, seed_session_prints_exactly_the_seed_output)
{
	/* The chapter's session, with the default message size. */
	START("-f", "200");
	cr_assert(pl_seed_session(&P), "the session's reports did not come:\n%s"
	    "\nstderr:\n%s", h_slurp(P.out), h_slurp(P.err));
	int st = pl_signal_wait(&P, SIGTERM, 5000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_str_eq(h_slurp(P.out), H_SEED_OUT);
}

/* Wait until `telemctl status` shows the stage up with a pid other than
 * `old`; returns the new pid or -1. */
static pid_t
wait_restarted(const char *stage, pid_t old)
{
	for (int i = 0; i < 500; i++) {
		char out[8192], key[64];
		pid_t pid = pl_stage_pid(&P, stage);
		snprintf(key, sizeof(key), "stage=%s pid=%d state=up", stage, (int)pid);
		if (pid > 0 && pid != old && pl_ctl(&P, out, sizeof(out), "status") == 0 &&
		    strstr(out, key) != NULL)
			return pid;
		usleep(10000);
	}
	return -1;
}

static void
kill_and_recover(const char *stage)
{
	char text[128];
	START("-f", "100", "-m", "2048");
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0:", 1);
	pl_nc(&P, "b 1000\n");
	WAIT_OUT("[CMA] b ", 1);

	/* An egress's `out` says its state is saved (docs/design.md §13). */
	for (int i = 0; i < 1000 && (pl_stat(&P, "ckms", "out") != 1 ||
	    pl_stat(&P, "cma", "out") != 1); i++)
		usleep(10000);
	pid_t pid = pl_stage_pid(&P, stage);
	cr_assert(pid > 0, "no pid for %s", stage);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	snprintf(text, sizeof(text), "stage %s (pid %d) killed by signal 9", stage, (int)pid);
	WAIT_ERR(text);
	/* The first restart comes after the 100 ms minimum backoff. */
	snprintf(text, sizeof(text), "restarting stage %s in 100 ms", stage);
	WAIT_ERR(text);
	cr_assert(wait_restarted(stage, pid) > 0, "%s not restarted:\n%s", stage,
	    h_slurp(P.err));
	cr_assert_eq(pl_stat(&P, stage, "restarts"), 1);

	pl_nc(&P, "a 20\n");
	WAIT_OUT("[CKMS] a 0:", 2);
	pl_nc(&P, "b 3000\n");
	WAIT_OUT("[CMA] b ", 2);
	/* Every aggregate goes on: a restarted egress resumes from the
	 * state it saved. */
	char *out = h_slurp(P.out);
	cr_assert(strstr(out, "[CKMS] a 0:10\n[CKMS] a 0.25:10\n") != NULL, "%s", out);
	cr_assert(strstr(out, "[CKMS] a 0.99:20\n") != NULL, "%s", out);
	cr_assert(strstr(out, "[CMA] b 2000\n") != NULL, "%s", out);
	cr_assert_eq(pl_stat(&P, stage, "lost"), 0);
	free(out);
}

Test(pipeline, kill_9_ingest_is_restarted) { kill_and_recover("ingest"); }
Test(pipeline, kill_9_low_is_restarted) { kill_and_recover("low"); }
Test(pipeline, kill_9_high_is_restarted) { kill_and_recover("high"); }
Test(pipeline, kill_9_ckms_is_restarted) { kill_and_recover("ckms"); }
Test(pipeline, kill_9_cma_is_restarted) { kill_and_recover("cma"); }

Test(pipeline, queued_messages_survive_their_stage)
{
	START("-f", "100", "-m", "2048");
	pid_t pid = pl_stage_pid(&P, "low");
	cr_assert(pid > 0);
	/* Freeze the filter so the event waits in its queue, then kill it. */
	cr_assert_eq(kill(pid, SIGSTOP), 0);
	pl_nc(&P, "q 7\n");
	int queued = 0;
	for (int i = 0; i < 500 && !queued; i++, usleep(10000))
		queued = pl_stat(&P, "low", "in") == 0 && pl_stat(&P, "ingest", "out") == 1;
	cr_assert(queued, "event never reached the low queue");
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert(wait_restarted("low", pid) > 0);
	WAIT_OUT("[CKMS] q 0.5:7\n", 1);
	cr_assert_eq(pl_stat(&P, "low", "in"), 1);
	cr_assert_eq(pl_stat(&P, "low", "lost"), 0);
}

/* Ingest lets datagrams gather for a millisecond once one waits, so a
 * burst leaves it in one message per out-queue, not one per wake-up: with
 * the low filter frozen, its queue shows how many messages came. Sent
 * 0.1 ms apart, 4 datagrams came in 3 or 4 messages without the wait. */
Test(pipeline, a_burst_of_datagrams_leaves_ingest_in_one_message)
{
	START("-f", "60000", "-m", "1024");
	pid_t pid = pl_stage_pid(&P, "low");
	cr_assert(pid > 0);
	cr_assert_eq(kill(pid, SIGSTOP), 0);
	pl_burst(&P, "b 5\n", 4, 100);
	long long out = 0;
	for (int i = 0; i < 500 && out < 4; i++, usleep(10000))
		out = pl_stat(&P, "ingest", "out");
	cr_assert_eq(out, 4, "ingest sent %lld of 4 events", out);
	long long depth = pl_stat(&P, "low", "depth");
	/* 2: the sender may be preempted during its burst. */
	cr_assert(depth >= 1 && depth <= 2, "4 datagrams sent 0.1 ms apart "
	    "came in %lld messages", depth);
	cr_assert_eq(kill(pid, SIGCONT), 0);
	long long in = 0;
	for (int i = 0; i < 500 && in < 4; i++, usleep(10000))
		in = pl_stat(&P, "low", "in");
	cr_assert_eq(in, 4);
	cr_assert_eq(pl_stat(&P, "high", "in"), 4);
}

/* The supervisor binds the UDP socket itself (and lends it to ingest), so
 * a port in use stops it at once, before any stage or queue exists. The
 * restart limit is tested in e2e_faults.c. */
Test(pipeline, port_in_use_stops_the_supervisor_at_start)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(P.port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	pl_spawn(&P, "-m", "1024", NULL);
	int st = pl_wait(&P, 30000);
	close(fd);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1,
	    "supervisor did not stop: %d\n%s", st, h_slurp(P.err));
	char text[128];
	snprintf(text, sizeof(text),
	    "telem-supervisor: bind 127.0.0.1:%d: Address already in use\n", P.port);
	char *err = h_slurp(P.err);
	cr_assert(strstr(err, text) != NULL, "%s", err);
	cr_assert(strstr(err, "telem-ingest") == NULL, "a stage was started:\n%s", err);
	cr_assert_eq(pl_objects_left(&P), 0);
	free(err);
}

static void
stop_with(int sig)
{
	START("-f", "60000", "-m", "2048");
	/* The check below sees them while they run: the supervisor and its
	 * five stages. */
	cr_assert_eq(h_procs_of(P.instance), 6, "telem processes of %s",
	    P.instance);
	pl_nc(&P, "a 10\nb 1000\n");
	int st = pl_signal_wait(&P, sig, 5000);
	cr_assert(st != -1, "supervisor still running 5 s after the signal");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d\n%s", st, h_slurp(P.err));
	char *out = h_slurp(P.out);
	cr_assert(strstr(out, "[CKMS] a 0.5:10\n") != NULL, "final flush missing:\n%s", out);
	cr_assert(strstr(out, "[CMA] b 1000\n") != NULL, "final flush missing:\n%s", out);
	cr_assert_eq(pl_objects_left(&P), 0);
	free(out);
	/* Every stage has exited: none is left in the supervisor's tree. */
	cr_assert_eq(h_procs_of(P.instance), 0, "a stage outlived the supervisor");
}

Test(pipeline, sigterm_drains_and_reports_last_data) { stop_with(SIGTERM); }
Test(pipeline, sigint_drains_and_reports_last_data) { stop_with(SIGINT); }

Test(pipeline, queues_are_visible_in_dev_mqueue_or_dev_shm)
{
	/* mqueue: /dev/mqueue/telem.I.Q, whose content starts "QSIZE:";
	 * shm: the ring segments /dev/shm/telem.I.Q. Both mode 0600. */
	int mq = strcmp(P.transport, "mqueue") == 0;
	START("-m", "1024");
	static const char *const q[] = { "low", "high", "ckms", "cma", "stats" };
	for (int i = 0; i < 5; i++) {
		char path[128];
		struct stat st;
		int in_shm = !mq || strcmp(q[i], "stats") == 0;
		snprintf(path, sizeof(path), "/dev/%s/telem.%s.%s",
		    in_shm ? "shm" : "mqueue", P.instance, q[i]);
		cr_assert_eq(stat(path, &st), 0, "%s missing", path);
		cr_assert_eq(st.st_mode & 0777, 0600, "%s mode %o", path, st.st_mode & 0777);
		if (!in_shm) {
			char *s = h_slurp(path);
			cr_assert(strncmp(s, "QSIZE:", 6) == 0, "%s: %s", path, s);
			free(s);
		}
	}
}

Test(pipeline, two_instances_run_side_by_side)
{
	struct pl Q;
	pl_init(&Q);
	START("-f", "100", "-m", "1024");
	int up = pl_start(&Q, "-f", "100", "-m", "1024", NULL);
	if (up) {
		pl_nc(&P, "p 1\n");
		pl_nc(&Q, "q 2\n");
		up = h_wait_text(P.out, "[CKMS] p 0:1\n", 1, 5000) &&
		    h_wait_text(Q.out, "[CKMS] q 0:2\n", 1, 5000);
	}
	char *po = h_slurp(P.out), *qo = h_slurp(Q.out), *qe = h_slurp(Q.err);
	pl_cleanup(&Q);
	cr_assert(up, "second pipeline:\n%s", qe);
	cr_assert(strstr(po, " q ") == NULL && strstr(qo, " p ") == NULL);
}

Test(pipeline, help_and_bad_options)
{
	char exe[256], cmd[512];
	h_bin("telem-supervisor", exe, sizeof(exe));
	snprintf(cmd, sizeof(cmd), "%s -h | grep -q '^usage: telem-supervisor'", exe);
	cr_assert_eq(system(cmd), 0);
	static const char *const bad[] = {
		"-p 70000", "-p x", "-l -1", "-l 4294967296", "-e 0", "-e 0.5", "-e x",
		"-f 0", "-t pipe", "-m 100", "-m 2000000", "-i a/b", "-i ''", "-Z",
		"extra", "-p",
	};
	char why[4096];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(h_refuses(&P, bad[i], why, sizeof(why)), "%s", why);
}

Test(pipeline, every_supervisor_option_reaches_its_stage)
{
	char ctl[200], cmd[512], reply[8192];
	snprintf(ctl, sizeof(ctl), "%s/ctl.sock", P.dir);
	START("-H", "localhost", "-l", "50", "-e", "0.125", "-f", "100", "-m", "1024",
	    "--control", ctl);
	/* -l 50: 60 goes high only, 50 both ways, 40 low only. */
	pl_nc(&P, "x 60\ny 50\nz 40\n");
	WAIT_OUT("[CMA] y 50\n", 1);
	WAIT_OUT("[CKMS] z 0:40\n", 1);
	WAIT_OUT("[CKMS] y 0:50\n", 1);
	char *out = h_slurp(P.out);
	cr_assert(strstr(out, "[CMA] x 60\n") && !strstr(out, "[CKMS] x ") &&
	    !strstr(out, "[CMA] z "), "%s", out);
	free(out);
	/* --control: telemctl finds the supervisor there, not at the default. */
	char exe[256];
	snprintf(cmd, sizeof(cmd), "%s --control %s status", h_bin("telemctl", exe,
	    sizeof(exe)), ctl);
	FILE *f = popen(cmd, "r");
	size_t n = fread(reply, 1, sizeof(reply) - 1, f);
	reply[n] = '\0';
	cr_assert_eq(pclose(f), 0, "%s", reply);
	cr_assert(strstr(reply, "stage=ckms ") && strstr(reply, "\nok\n"), "%s", reply);
	/* -e and -m reach the stages' command lines and queues. */
	pid_t pid = -1;
	char *p = strstr(reply, "stage=ckms pid=");
	if (p)
		pid = (pid_t)atoi(p + strlen("stage=ckms pid="));
	snprintf(cmd, sizeof(cmd), "tr '\\0' ' ' </proc/%d/cmdline | grep -q -- '--error 0.125 '",
	    (int)pid);
	cr_assert_eq(system(cmd), 0, "ckms does not run with --error 0.125");
	if (strcmp(P.transport, "mqueue") == 0) {
		snprintf(cmd, sizeof(cmd), "/telem.%s.low", P.instance);
		mqd_t q = mq_open(cmd, O_RDONLY);
		struct mq_attr a;
		cr_assert(q != (mqd_t)-1 && mq_getattr(q, &a) == 0);
		cr_expect_eq(a.mq_msgsize, 1024);
		mq_close(q);
	}
}

Test(pipeline, a_stage_that_cannot_run_stops_the_supervisor)
{
	START("-f", "100", "-m", "1024");
	/* Take the cma queue away, then kill cma: its successor cannot open
	 * its queue, says so in one line and exits 100, which is final. */
	char obj[128], text[256];
	snprintf(obj, sizeof(obj), "/telem.%s.cma", P.instance);
	if (strcmp(P.transport, "mqueue") == 0)
		cr_assert_eq(mq_unlink(obj), 0);
	else
		cr_assert_eq(shm_unlink(obj), 0);
	pid_t pid = pl_stage_pid(&P, "cma");
	cr_assert(pid > 0);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	int st = pl_wait(&P, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "%d\n%s", st,
	    h_slurp(P.err));
	char *err = h_slurp(P.err);
	snprintf(text, sizeof(text), "telem-egress-cma[cma]: open %s %s: "
	    "No such file or directory\n", P.transport, obj);
	cr_assert(strstr(err, text) != NULL, "%s", err);
	cr_assert(strstr(err, "stage cma exited 100 (configuration error): "
	    "not restarted") != NULL, "%s", err);
	cr_assert_eq(pl_objects_left(&P), 0);
	free(err);
}

/* The supervisor's next Flush tick as it publishes it in the stats
 * segment (common/stats.h flush_next_ms), as a full CLOCK_MONOTONIC ms. */
static long long
next_tick_ms(struct stats_seg *seg)
{
	uint32_t next = atomic_load(&seg->flush_next_ms);
	long long now = clock_ms();
	return now + (int32_t)(next - (uint32_t)now);
}

static struct stats_seg *
attach_stats(void)
{
	char obj[CHAN_NAME_MAX];
	cr_assert_eq(chan_objname(obj, sizeof(obj), P.instance, "stats"), 0);
	struct stats_seg *seg = stats_attach(obj);
	cr_assert_not_null(seg, "attach %s", obj);
	return seg;
}

/* Idle, ingest lets a datagram wait in the socket up to 10 ms before it
 * reads it (ingest/main.c), but never past 3 ms before the next Flush
 * tick, whose time the supervisor publishes: a value sent 8 ms before a
 * tick is in that tick's report, not the next one. A round counts when
 * the send completed 5 ms or more before the tick (the test may be
 * preempted); the value must then show in stdout before the next tick,
 * 500 ms later. Without the tick's time ingest would read it 2 ms after
 * the tick, and every round would miss. One miss in five rounds is let
 * pass: the 3 ms hold only if ingest gets a CPU within them, and under
 * `make check` on two vCPUs, with two sanitized pipelines at once, it
 * did not, in one round of some runs (the design's 3 ms are a margin for
 * the stages, not a real-time bound). */
Test(pipeline, a_value_sent_just_before_a_tick_is_in_that_ticks_report)
{
	START("-f", "500", "-m", "1024");
	struct stats_seg *seg = attach_stats();
	/* Published once the pipeline is up and the timer armed. */
	for (int i = 0; i < 500 && atomic_load(&seg->flush_next_ms) == 0; i++)
		h_nap_ms(10);
	cr_assert_neq(atomic_load(&seg->flush_next_ms), 0, "no tick published");
	long long t0 = next_tick_ms(seg);
	h_nap_ms(600);
	/* The grid: a tick every 500 ms from the first. */
	long long t1 = next_tick_ms(seg);
	cr_assert(t1 > t0 && (t1 - t0) % 500 == 0, "ticks at %lld then %lld", t0, t1);
	int counted = 0, missed = 0;
	char *missed_out = NULL;
	for (int round = 0; round < 16 && counted < 5; round++) {
		long long tick = next_tick_ms(seg);
		long long wait = tick - 8 - clock_ms();
		if (wait < 20) {
			h_nap_ms(30);  /* too close, or not yet moved: the next */
			continue;
		}
		h_nap_ms((int)wait);
		char line[32], want[48];
		snprintf(line, sizeof(line), "t%d 5\n", round);
		snprintf(want, sizeof(want), "[CKMS] t%d 0:5\n", round);
		pl_sendto(&P, line, strlen(line));
		if (clock_ms() > tick - 5)
			continue;  /* preempted: not a fair round */
		/* Looked for only before the next tick (tick + 500), whose
		 * report would hold it in any case. */
		int seen = 0;
		while (!seen && clock_ms() < tick + 400) {
			h_nap_ms(10);
			char *out = h_slurp(P.out);
			seen = strstr(out, want) != NULL;
			free(out);
		}
		if (!seen) {
			char *out = h_slurp(P.out);
			cr_assert_leq(++missed, 1, "'%s' sent at tick - 8 ms was "
			    "not in that tick's report, the second such round:\n%s",
			    want, out);
			missed_out = out;
		}
		counted++;
	}
	cr_assert_geq(counted, 3, "only %d fair rounds", counted);
	/* Told at info level, shown with --verbose: Criterion counts a
	 * warning (cr_log_warn) against the whole binary, whose exit status
	 * then fails the run (tests/run.sh) with every test passed. */
	if (missed)
		cr_log_info("one of %d rounds missed its tick:\n%s", counted,
		    missed_out);
	free(missed_out);
	stats_detach(seg);
}

/* The gather is bounded: datagrams 50 ms apart, idle, each leave ingest
 * in a message of their own (with the low filter frozen, its queue shows
 * how many came). */
Test(pipeline, the_gather_is_bounded)
{
	START("-f", "60000", "-m", "1024");
	pid_t pid = pl_stage_pid(&P, "low");
	cr_assert(pid > 0);
	cr_assert_eq(kill(pid, SIGSTOP), 0);
	pl_burst(&P, "g 5\n", 3, 50000);
	long long out = 0;
	for (int i = 0; i < 500 && out < 3; i++, usleep(10000))
		out = pl_stat(&P, "ingest", "out");
	cr_assert_eq(out, 3, "ingest sent %lld of 3 events", out);
	long long depth = pl_stat(&P, "low", "depth");
	cr_assert_eq(depth, 3, "3 datagrams sent 50 ms apart came in %lld "
	    "messages", depth);
	cr_assert_eq(kill(pid, SIGCONT), 0);
}
