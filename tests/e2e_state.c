/* e2e_state.c - the egresses' aggregates survive (docs/design.md §13),
 * end to end on the real bin/ and $TELEM_TRANSPORT: 100 x `z 10` and
 * 100 x `y 1000` reported, then kill -9 of both egresses, `telemctl
 * restart ckms`, `swap cma` to the same program, or a stop and start
 * with --state-dir; then `z 90` and `y 2000` are reported over all 101
 * values. Without --state-dir a stop starts afresh; records applied but
 * not saved when killed are counted `lost` and only they are missing; a
 * damaged or foreign state file is one line, set aside, and the egress
 * starts empty. Waits are bounded polls. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e.h"
#include "egress/ckms.h"

TestSuite(state_e2e, .init = setup, .fini = teardown, .timeout = 90);

static const char *const qlabel[6] = { "0", "0.25", "0.5", "0.75", "0.9", "0.99" };
static const double qs[6] = { 0, 0.25, 0.5, 0.75, 0.9, 0.99 };

/* The CMA of 100 x 1000 and 2000 as the report prints it:
 * (100 * 1000 + 2000) / 101. */
#define Y_AFTER "[CMA] y 1009.9009900990098\n"

static char state_dir[64];

static void
make_state_dir(void)
{
	h_tmp_name(state_dir, sizeof(state_dir), "statedir");
	cr_assert_not_null(mkdtemp(state_dir));
}

static void
remove_state_dir(void)
{
	static const char *const f[] = { "ckms.state", "cma.state", "ckms.state.bad",
		"cma.state.bad", "ckms.state.tmp", "cma.state.tmp", "lock" };
	char p[128];
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", state_dir, f[i]);
		if (unlink(p) == -1)
			rmdir(p);  /* a folder put in a save's way */
	}
	rmdir(state_dir);
}

static void
teardown_dir(void)
{
	teardown();
	remove_state_dir();
}

/* Send `count` lines "NAME VALUE" in one datagram. */
static void
send_lines(const char *name, unsigned value, int count)
{
	char buf[2048];
	size_t len = 0;
	for (int i = 0; i < count; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s %u\n", name, value);
	pl_sendto(&P, buf, len);
}

/* The counter until it equals want (10 s at most); asserts it does. */
static void
wait_stat(const char *stage, const char *field, long long want)
{
	long long got = fault_wait_stat(&P, stage, field, want);
	cr_assert_eq(got, want, "%s %s=%lld, want %lld\n%s", stage, field, got, want,
	    h_slurp(P.err));
}

/* The first session: 100 x z 10 and 100 x y 1000, reported, and saved
 * (an egress books `out` once a save holds the records). */
static void
first_session(void)
{
	send_lines("z", 10, 100);
	send_lines("y", 1000, 100);
	WAIT_OUT("[CMA] y 1000\n");
	WAIT_OUT("[CKMS] z 0.99:10\n");
	wait_stat("ckms", "out", 100);
	wait_stat("cma", "out", 100);
}

/* The second session and what must come of it: z's quantiles over the
 * 101 values as the sketch gives them, and y's average over 101. */
static void
second_session_reports_all_101(void)
{
	pl_nc(&P, "z 90\ny 2000\n");
	WAIT_OUT(Y_AFTER);
	/* Two reports of z: after the first session and after z 90 (a
	 * restarted egress does not report again what it had reported). */
	cr_assert(h_wait_text(P.out, "[CKMS] z 0:", 2, 10000), "%s", h_slurp(P.out));
	struct ckms *s = ckms_new(0.01);
	cr_assert_not_null(s);
	for (int i = 0; i < 100; i++)
		ckms_insert(s, 10);
	ckms_insert(s, 90);
	char want[512];
	size_t len = 0;
	for (int i = 0; i < 6; i++)
		len += (size_t)snprintf(want + len, sizeof(want) - len, "[CKMS] z %s:%u\n",
		    qlabel[i], ckms_query(s, qs[i]));
	ckms_free(s);
	cr_assert(h_wait_text(P.out, want, 1, 10000), "stdout lacks\n%s\nin:\n%s", want,
	    h_slurp(P.out));
	/* give a third report the time of a few Flushes to show up */
	fault_nap(600);
	char *out = h_slurp(P.out);
	cr_assert_eq(h_count(out, "[CKMS] z 0:"), 2, "%s", out);
	cr_assert_eq(h_count(out, "[CMA] y "), 2, "%s", out);
	cr_assert(strstr(out, "[CMA] y 2000\n") == NULL, "aggregates reset:\n%s", out);
	free(out);
	/* the books: every record in `out`, nothing lost */
	wait_stat("ckms", "out", 101);
	wait_stat("cma", "out", 101);
	cr_assert_eq(pl_stat(&P, "ckms", "lost"), 0);
	cr_assert_eq(pl_stat(&P, "cma", "lost"), 0);
}

Test(state_e2e, kill_9_of_both_egresses_keeps_the_aggregates)
{
	START("-m", "1024", "-f", "100");
	first_session();
	pid_t ck = pl_stage_pid(&P, "ckms"), cm = pl_stage_pid(&P, "cma");
	cr_assert_gt(ck, 0);
	cr_assert_gt(cm, 0);
	cr_assert_eq(kill(ck, SIGKILL), 0);
	cr_assert_eq(kill(cm, SIGKILL), 0);
	cr_assert_gt(fault_wait_restarted(&P, "ckms", ck), 0, "%s", h_slurp(P.err));
	cr_assert_gt(fault_wait_restarted(&P, "cma", cm), 0, "%s", h_slurp(P.err));
	second_session_reports_all_101();
	char *err = h_slurp(P.err);
	cr_assert(strstr(err, "telem-egress-ckms[ckms]: state of 1 names loaded from") &&
	    strstr(err, "telem-egress-cma[cma]: state of 1 names loaded from"), "%s", err);
	free(err);
}

Test(state_e2e, restart_ckms_keeps_the_aggregates)
{
	char reply[1024];
	START("-m", "1024", "-f", "100");
	first_session();
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "restart ckms"), 0, "%s", reply);
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "restart cma"), 0, "%s", reply);
	second_session_reports_all_101();
}

Test(state_e2e, swap_cma_to_the_same_program_keeps_the_aggregates)
{
	char reply[1024], cmd[512], exe[256];
	START("-m", "1024", "-f", "100");
	first_session();
	snprintf(cmd, sizeof(cmd), "swap cma %s", h_bin("telem-egress-cma", exe, sizeof(exe)));
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), cmd), 0, "%s", reply);
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "restart ckms"), 0, "%s", reply);
	second_session_reports_all_101();
}

/* Stop the supervisor cleanly and make P ready to start again. */
static void
stop_pipeline(void)
{
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "stop: %d\n%s", st,
	    h_slurp(P.err));
	P.pid = 0;
	P.status = -1;
	cr_assert(truncate(P.err, 0) == 0 && truncate(P.out, 0) == 0);
}

Test(state_e2e, state_dir_keeps_the_aggregates_across_stop_and_start,
    .fini = teardown_dir)
{
	make_state_dir();
	START("-m", "1024", "-f", "100", "--state-dir", state_dir);
	first_session();
	stop_pipeline();
	char p[128];
	struct stat sb;
	snprintf(p, sizeof(p), "%s/cma.state", state_dir);
	cr_assert_eq(stat(p, &sb), 0, "%s not kept", p);
	cr_assert_eq(sb.st_mode & 0777, 0600, "%s mode %o", p, sb.st_mode & 0777);
	snprintf(p, sizeof(p), "%s/ckms.state", state_dir);
	cr_assert_eq(stat(p, &sb), 0, "%s not kept", p);
	cr_assert_eq(pl_objects_left(&P), 0);

	START("-m", "1024", "-f", "100", "--state-dir", state_dir);
	pl_nc(&P, "z 90\ny 2000\n");
	WAIT_OUT(Y_AFTER);
	/* A new run, new books: only what it took. */
	wait_stat("cma", "out", 1);
	wait_stat("ckms", "out", 1);
	cr_assert_eq(pl_stat(&P, "cma", "in"), 1);
	char *out = h_slurp(P.out);
	cr_assert(strstr(out, "[CMA] y 2000\n") == NULL, "%s", out);
	free(out);
}

/* A second supervisor given state_dir while the first runs is refused in
 * one line holding `text`, exit 1, and leaves no IPC object behind. */
static void
assert_second_refused(const char *text)
{
	struct pl Q;
	pl_init(&Q);
	pl_spawn(&Q, "-m", "1024", "--state-dir", state_dir, NULL);
	int st = pl_wait(&Q, 10000);
	char *err = h_slurp(Q.err);
	int left = pl_objects_left(&Q);
	pl_cleanup(&Q);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "%d:\n%s", st,
	    err);
	cr_assert_eq(h_count(err, "\n"), 1, "not one line:\n%s", err);
	cr_assert_not_null(strstr(err, text), "%s", err);
	free(err);
	cr_assert_eq(left, 0);
}

/* One --state-dir, one supervisor: DIR/STAGE.state names no instance, so
 * a second instance given the same folder would load the first one's
 * aggregates and save over them. It is refused in one line (exit 1), the
 * first goes on, and once the first has stopped the folder is free. */
Test(state_e2e, a_state_dir_serves_one_supervisor, .fini = teardown_dir)
{
	make_state_dir();
	START("-m", "1024", "-f", "100", "--state-dir", state_dir);
	first_session();
	pid_t ckms = pl_stage_pid(&P, "ckms");
	char text[160];
	snprintf(text, sizeof(text), "--state-dir %s is used by another "
	    "supervisor (pid %d;", state_dir, (int)P.pid);
	assert_second_refused(text);
	/* The first did not notice. */
	cr_assert_eq(pl_stage_pid(&P, "ckms"), ckms);
	pl_nc(&P, "z 90\ny 2000\n");
	WAIT_OUT(Y_AFTER);
	stop_pipeline();

	struct pl Q;
	pl_init(&Q);
	cr_assert(pl_start(&Q, "-m", "1024", "-f", "100", "--state-dir", state_dir,
	    NULL), "%s", h_slurp(Q.err));
	pl_nc(&Q, "y 3000\n");
	cr_assert(h_wait_text(Q.out, "[CMA] y 1029.4117647058822\n", 1, 10000),
	    "%s\n%s", h_slurp(Q.out), h_slurp(Q.err));
	pl_cleanup(&Q);
}

/* DIR/lock removed while the first runs (a clean-up of the folder's
 * files): the folder is still the first one's, and a second supervisor
 * given it is still refused in one line. */
Test(state_e2e, a_state_dir_stays_locked_without_its_lock_file,
    .fini = teardown_dir)
{
	char p[128];
	make_state_dir();
	START("-m", "1024", "-f", "100", "--state-dir", state_dir);
	snprintf(p, sizeof(p), "%s/lock", state_dir);
	cr_assert_eq(unlink(p), 0);
	char text[300];
	snprintf(text, sizeof(text), "--state-dir %s is used by another supervisor "
	    "(the folder is locked; %s/lock was removed while it ran)", state_dir,
	    state_dir);
	assert_second_refused(text);
	pl_nc(&P, "y 2000\n");
	WAIT_OUT("[CMA] y 2000\n");
}

Test(state_e2e, without_state_dir_a_stop_starts_afresh)
{
	START("-m", "1024", "-f", "100");
	first_session();
	char p[128];
	struct stat sb;
	snprintf(p, sizeof(p), "/dev/shm/telem.%s.cma.state", P.instance);
	cr_assert_eq(stat(p, &sb), 0, "%s missing", p);
	cr_assert_eq(sb.st_mode & 0777, 0600, "%s mode %o", p, sb.st_mode & 0777);
	stop_pipeline();
	cr_assert_neq(stat(p, &sb), 0, "%s left after a clean stop", p);
	cr_assert_eq(pl_objects_left(&P), 0);
	START("-m", "1024", "-f", "100");
	pl_nc(&P, "y 2000\n");
	WAIT_OUT("[CMA] y 2000\n");
}

/* Saves that fail keep their records in flight: the log says what failed
 * (a folder where the temporary goes), `books` says why the egress's
 * records stay in flight, and the next save after the folder is gone,
 * by the tick, books them. */
Test(state_e2e, failing_saves_are_said_by_the_log_and_by_books,
    .fini = teardown_dir)
{
	make_state_dir();
	START("-m", "1024", "-f", "100", "--state-dir", state_dir);
	first_session();
	char tmp[128], text[400], books[4096];
	snprintf(tmp, sizeof(tmp), "%s/cma.state.tmp", state_dir);
	cr_assert_eq(mkdir(tmp, 0700), 0, "%s", tmp);
	pl_nc(&P, "y 2000\n");
	WAIT_OUT(Y_AFTER);
	snprintf(text, sizeof(text), "save state to %s/cma.state (records stay in "
	    "flight): remove %s: Is a directory\n", state_dir, tmp);
	cr_assert(h_wait_text(P.err, text, 1, 5000), "%s", h_slurp(P.err));
	cr_assert_not(pl_books(&P, books, sizeof(books)), "%s", books);
	cr_assert_not_null(strstr(books, "cma: in=101 == out=100 + filtered=0 + "
	    "dropped=0 + lost=0 MISMATCH (diff 1: in flight in a live stage whose "
	    "state saves fail, see its log)\n"), "%s", books);
	cr_assert_eq(rmdir(tmp), 0);
	wait_stat("cma", "out", 101);
	cr_assert(pl_books(&P, books, sizeof(books)), "%s", books);
}

/* A state file removed while the pipeline runs (by hand, or with its
 * folder): the egress restarted without it, cleanly or by kill -9, starts
 * empty, says so in one line, and books what this run had saved in it as
 * lost, not as applied to aggregates it no longer has. */
Test(state_e2e, a_state_file_removed_while_running_is_counted_lost,
    .fini = teardown_dir)
{
	char reply[1024], p[128];
	make_state_dir();
	START("-m", "1024", "-f", "100", "--state-dir", state_dir);
	first_session();
	static const char *const st[] = { "cma", "ckms" };
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/%s.state", state_dir, st[i]);
		cr_assert_eq(unlink(p), 0, "%s", p);
	}
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "restart cma"), 0, "%s", reply);
	pid_t ck = pl_stage_pid(&P, "ckms");
	cr_assert_eq(kill(ck, SIGKILL), 0);
	cr_assert_gt(fault_wait_restarted(&P, "ckms", ck), 0, "%s", h_slurp(P.err));
	for (int i = 0; i < 2; i++) {
		char text[300];
		snprintf(text, sizeof(text), "state file %s/%s.state is missing, without "
		    "the 100 records applied in this run: counted lost, starting "
		    "empty\n", state_dir, st[i]);
		cr_assert(h_wait_text(P.err, text, 1, 5000), "%s", h_slurp(P.err));
		cr_assert_eq(pl_stat(&P, st[i], "out"), 0);
		cr_assert_eq(pl_stat(&P, st[i], "lost"), 100);
	}
	pl_nc(&P, "z 90\ny 2000\n");
	WAIT_OUT("[CMA] y 2000\n");
	WAIT_OUT("[CKMS] z 0.99:90\n");
	wait_stat("cma", "out", 1);
	wait_stat("ckms", "out", 1);
	char books[4096];
	cr_assert(pl_books(&P, books, sizeof(books)), "%s", books);
}

/* The built-in pipeline as a file, its cma's `state` from the argument. */
static const char cma_state_conf[] =
    "[pipeline]\nflush_ms = 100\n"
    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:%d\nout = low high\n"
    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\nout = ckms\nflush = yes\n"
    "[stage high]\nexec = telem-filter\nargs = --keep-above 100\nout = cma\nflush = yes\n"
    "[stage ckms]\nexec = telem-egress-ckms\n"
    "[stage cma]\nexec = telem-egress-cma\nstate = %s\n";

/* An egress without a state file given one by a reload: what it had
 * applied went with the process the reload replaced, so it is counted
 * lost, in a line that says it was applied, not that it was saved. */
Test(state_e2e, state_turned_on_by_a_reload_counts_what_was_applied_lost,
    .fini = teardown_dir)
{
	char conf[256], reply[1024];
	make_state_dir();
	pl_conf(&P, "p.conf", conf, sizeof(conf), cma_state_conf, P.port, "no");
	cr_assert(pl_start_conf(&P, conf, "-m", "1024", "--state-dir", state_dir, NULL),
	    "supervisor did not come up:\n%s", h_slurp(P.err));
	send_lines("y", 1000, 3);
	WAIT_OUT("[CMA] y 1000\n");
	wait_stat("cma", "out", 3);
	pl_conf(&P, "p.conf", conf, sizeof(conf), cma_state_conf, P.port, "yes");
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "reload"), 0, "%s", reply);
	char text[300];
	snprintf(text, sizeof(text), "state file %s/cma.state is missing, without "
	    "the 3 records applied in this run: counted lost, starting empty\n",
	    state_dir);
	cr_assert(h_wait_text(P.err, text, 1, 5000), "%s", h_slurp(P.err));
	wait_stat("cma", "lost", 3);
	cr_assert_eq(pl_stat(&P, "cma", "out"), 0);
	pl_nc(&P, "y 2000\n");
	WAIT_OUT("[CMA] y 2000\n");
	wait_stat("cma", "out", 1);
	char books[4096];
	cr_assert(pl_books(&P, books, sizeof(books)), "%s", books);
}

/* A stale state file of a run that died is removed at the next start. */
Test(state_e2e, a_stale_state_file_is_removed_at_start)
{
	char p[128];
	snprintf(p, sizeof(p), "/dev/shm/telem.%s.cma.state", P.instance);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs("left by a run that died", f);
	fclose(f);
	START("-m", "1024", "-f", "100");
	char text[200];
	snprintf(text, sizeof(text), "removed stale state file %s\n", p);
	cr_assert(h_wait_text(P.err, text, 1, 5000), "%s", h_slurp(P.err));
	pl_nc(&P, "y 2000\n");
	WAIT_OUT("[CMA] y 2000\n");
}

/* Records an egress applied but had not saved when killed are `lost`,
 * and only they are missing from its aggregates: with no Flush to save
 * at, the kill comes before or after the save (a second after the
 * records); either way in == out + lost and the next report agrees. */
Test(state_e2e, applied_but_unsaved_records_are_counted_lost)
{
	START("-m", "1024", "-f", "60000");
	send_lines("y", 1000, 100);
	wait_stat("cma", "in", 100);
	pid_t cm = pl_stage_pid(&P, "cma");
	cr_assert_eq(kill(cm, SIGKILL), 0);
	cr_assert_gt(fault_wait_restarted(&P, "cma", cm), 0, "%s", h_slurp(P.err));
	long long out = pl_stat(&P, "cma", "out"), lost = pl_stat(&P, "cma", "lost");
	cr_log_info("killed with out=%lld lost=%lld", out, lost);
	cr_assert_eq(out + lost, 100, "out %lld lost %lld", out, lost);
	cr_assert(out == 0 || out == 100, "a save holds all or nothing: out %lld", out);
	/* The stop's final Flush reports the restarted egress's view: the
	 * saved records and y 2000, nothing of what was counted lost. */
	pl_nc(&P, "y 2000\n");
	wait_stat("cma", "out", out + 1);
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", h_slurp(P.err));
	char *o = h_slurp(P.out);
	cr_assert_eq(h_count(o, "[CMA] y "), 1, "%s", o);
	cr_assert(strstr(o, out == 100 ? Y_AFTER : "[CMA] y 2000\n") != NULL,
	    "out=%lld lost=%lld:\n%s", out, lost, o);
	free(o);
}

/* ---- damaged and foreign state files ------------------------------- */

static void
corrupt(const char *file, const char *how)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/%s", state_dir, file);
	FILE *f = fopen(p, "r+");
	cr_assert_not_null(f, "%s", p);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fclose(f);
	if (strcmp(how, "truncated") == 0) {
		cr_assert_eq(truncate(p, size / 2), 0);
	} else if (strcmp(how, "magic") == 0) {
		f = fopen(p, "r+");
		fputc('X', f);
		fclose(f);
	} else {
		f = fopen(p, "w");
		for (int i = 0; i < 1000; i++)
			fputc((i * 7919) & 0xff, f);
		fclose(f);
	}
}

Test(state_e2e, damaged_state_files_are_set_aside, .fini = teardown_dir,
    .timeout = 120)
{
	static const char *const hows[] = { "garbage", "truncated", "magic" };
	make_state_dir();
	for (size_t h = 0; h < 3; h++) {
		START("-m", "1024", "-f", "100", "--state-dir", state_dir);
		first_session();
		stop_pipeline();
		corrupt("cma.state", hows[h]);
		corrupt("ckms.state", hows[h]);
		START("-m", "1024", "-f", "100", "--state-dir", state_dir);
		char *err = h_slurp(P.err);
		static const char *const st[] = { "cma", "ckms" };
		for (int i = 0; i < 2; i++) {
			char text[300];
			snprintf(text, sizeof(text), "state file %s/%s.state: ", state_dir, st[i]);
			cr_assert_eq(h_count(err, text), 1, "%s: %s", hows[h], err);
			snprintf(text, sizeof(text), "set aside as %s/%s.state.bad, starting empty\n",
			    state_dir, st[i]);
			cr_assert_eq(h_count(err, text), 1, "%s: %s", hows[h], err);
			char bad[128];
			snprintf(bad, sizeof(bad), "%s/%s.state.bad", state_dir, st[i]);
			cr_assert_eq(access(bad, F_OK), 0, "%s missing", bad);
		}
		cr_assert_eq(h_count(err, "set aside as"), 2, "%s", err);
		free(err);
		/* it starts empty and runs */
		pl_nc(&P, "z 90\ny 2000\n");
		WAIT_OUT("[CMA] y 2000\n");
		WAIT_OUT("[CKMS] z 0.99:90\n");
		stop_pipeline();
		remove_state_dir();
		cr_assert_eq(mkdir(state_dir, 0700), 0);
	}
}

Test(state_e2e, state_dir_is_checked)
{
	char why[2048], args[256];
	cr_assert(h_refuses(&P, "--state-dir /nonexistent-telem-dir", why, sizeof(why)), "%s", why);
	cr_assert(h_refuses(&P, "--state-dir /etc/passwd", why, sizeof(why)), "%s", why);
	snprintf(args, sizeof(args), "-i %s --state-dir ''", P.instance);
	cr_assert(h_refuses(&P, args, why, sizeof(why)), "%s", why);
}
