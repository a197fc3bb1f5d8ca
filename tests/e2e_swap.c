/* e2e_swap.c - the stage commands end to end: restart and swap
 * under load with nothing lost, rollback of a swap whose program dies or
 * is never ready, SIGTERM finishing what a stage holds and SIGKILL booking
 * it as lost=, and readiness. Waits are bounded polls of `telemctl
 * status`; nothing asserts on speed. */
#include <criterion/criterion.h>

#include "control.h"

TestSuite(swap, .init = setup, .fini = teardown, .timeout = 60);

/* ---- 1. restart and swap ----------------------------------------------- */

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

Test(swap, restart_under_load_loses_nothing, .timeout = 90)
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

Test(swap, swap_cma_under_load_mqueue, .timeout = 90) { swap_under_load("mqueue"); }
Test(swap, swap_cma_under_load_shm, .timeout = 90) { swap_under_load("shm"); }

Test(swap, swap_to_a_missing_program_is_refused)
{
	START("-m", "1024", "-f", "60000");
	struct h_status s0, s;
	status(&s0);
	assert_error(ctl("swap cma /nonexistent/telem-egress-cma"), "missing program");
	cr_assert(strstr(reply_buf, "/nonexistent/telem-egress-cma") != NULL &&
	    strstr(reply_buf, "No such file or directory") != NULL, "%s", reply_buf);
	assert_error(ctl("swap cma no-such-telem-program"), "missing bare name");
	/* A folder is executable to access(), but not a program. */
	assert_error(ctl("swap cma %s", P.dir), "a folder");
	cr_assert(strstr(reply_buf, "Is a directory") != NULL, "%s", reply_buf);
	status(&s);
	cr_assert_eq(s.st[H_CMA].pid, s0.st[H_CMA].pid, "%s", s.raw);
	cr_assert_str_eq(s.st[H_CMA].exe, s0.st[H_CMA].exe);
	cr_assert_eq(s.st[H_CMA].restarts, 0);
	assert_flows();
	cr_assert_eq(pl_stage_pid(&P, "cma"), s0.st[H_CMA].pid);
}

/* An option the supervisor gives the stage itself, given again, would
 * win: low counting in ingest's slot (--slot 0) broke both stages' books
 * without a word. Refused, the stage untouched. */
Test(swap, swap_with_the_supervisors_own_options_is_refused)
{
	START("-m", "1024", "-f", "60000");
	struct h_status s0, s;
	status(&s0);
	assert_error(ctl("swap low telem-filter --keep-below 100 --slot 0"), "--slot");
	cr_assert_str_eq(reply_buf, "error: '--slot' would give --slot, which the "
	    "supervisor gives each stage itself\n");
	assert_error(ctl("swap low telem-filter --keep-below 100 -i other"), "-i");
	cr_assert_str_eq(reply_buf, "error: '-i' would give --instance, which the "
	    "supervisor gives each stage itself\n");
	status(&s);
	cr_assert_eq(s.st[H_LOW].pid, s0.st[H_LOW].pid, "%s", s.raw);
	cr_assert_eq(s.st[H_LOW].restarts, 0);
	assert_flows();
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
	/* One swap, one restart: the rollback is part of it. */
	cr_assert_eq(s.st[stage].restarts, s0.st[stage].restarts + 1, "%s", s.raw);
	cr_assert_eq(kill((pid_t)s0.st[stage].pid, 0), -1);
	cr_assert_eq(pl_wait(&P, 0), -1, "the supervisor stopped:\n%s", h_slurp(P.err));
}

Test(swap, a_failed_swap_is_rolled_back)
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
	/* A failed swap is one restart (its rollback is part of it). */
	for (int i = H_LOW; i <= H_CKMS; i++)
		cr_assert_eq(s.st[i].restarts, 1, "%s", s.raw);
	cr_assert_eq(s.st[H_CMA].restarts, 2, "%s", s.raw);
}

Test(swap, swap_args_replace_the_stage_options)
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

/* ---- 2. SIGTERM finishes the message; SIGKILL books what was held ---- */

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
	/* Stuck: ckms's queue full, low's own not empty, and low's `in`
	 * the same over 100 ms. What it holds is the message it is stuck
	 * sending (in its `out` already) and what it took after that. */
	struct h_status s, prev;
	int have = 0;
	for (int t = 0; t < 200; t++, nap(100)) {
		status(&s);
		if (have && s.st[H_CKMS].depth == queue_capacity() &&
		    s.st[H_LOW].depth > 0 && s.st[H_LOW].in == prev.st[H_LOW].in)
			return s.st[H_LOW].in;
		prev = s;
		have = 1;
	}
	cr_assert_fail("low never got stuck behind a full ckms queue:\n%s", s.raw);
	return -1;
}

Test(swap, sigterm_lets_a_stage_finish_what_it_holds)
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

Test(swap, sigkill_books_what_the_stage_held_as_lost)
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
		/* (an egress books `out` once saved, up to a second later) */
		if (s.st[H_LOW].in == sent && s.st[H_LOW].depth == 0 &&
		    s.st[H_CKMS].depth == 0 && s.st[H_CKMS].in == s.st[H_LOW].out &&
		    s.st[H_CKMS].inflight == 0 && s.st[H_CMA].inflight == 0)
			break;
	}
	const struct h_stage *lo = &s.st[H_LOW], *ck = &s.st[H_CKMS];
	long long held = lo->lost, lost = lo->lost + ck->lost;
	cr_assert_gt(lost, 0, "low was killed holding records:\n%s", s.raw);
	cr_assert_leq(lost, k);
	if (held > 0) {
		snprintf(text, sizeof(text), "stage low lost %lld records it held\n",
		    held);
		WAIT_ERR(text);
	}
	/* It was stuck sending a message that its `out` already counts: that
	 * message never reached ckms, which books it as lost (common/stats.h).
	 * Every other record low held is its own lost. Together they are the
	 * last `lost` of the first k events, as the values say. */
	cr_assert_eq(lo->in, sent, "%s", s.raw);
	cr_assert_eq(s.st[H_INGEST].out, sent);
	cr_assert_eq(lo->in, lo->out + lo->filtered + lo->lost, "%s", s.raw);
	cr_assert_eq(ck->in, lo->out, "%s", s.raw);
	cr_assert_eq(ck->in, ck->out + ck->lost, "%s", s.raw);
	cr_assert_eq(ck->out, implied(0, sent, 1) - implied(k - lost, lost, 1), "%s", s.raw);
	cr_assert_eq(s.st[H_HIGH].out, implied(0, sent, 0));
	cr_assert_eq(s.st[H_CMA].in, s.st[H_HIGH].out);
	for (int i = 0; i < H_NSTAGES; i++)
		if (i != H_LOW && i != H_CKMS)
			cr_assert_eq(s.st[i].lost, 0, "%s", s.raw);
	cr_assert_eq(lo->restarts, 1);
}

/* ---- 3. readiness ------------------------------------------------------ */

Test(swap, stages_start_downstream_first_each_after_the_last_is_ready)
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

Test(swap, a_stage_shows_starting_until_it_is_ready)
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
