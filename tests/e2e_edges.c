/* e2e_edges.c - what a user sees at the edges: the port actually bound,
 * bad values refused in one line with exit 2, size errors that say the
 * limit and how to raise it, log lines a user can act on, -h texts that
 * list what each program takes, and instance names that stay names. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e.h"

TestSuite(edges, .init = setup, .fini = teardown, .timeout = 60);

/* Criterion runs no .fini after cr_skip_test: clean up first. */
#define SKIP(...) do { pl_cleanup(&P); cr_skip_test(__VA_ARGS__); } while (0)

/* The text after `key` up to the next space or newline, or "". */
static void
word_after(const char *hay, const char *key, char *buf, size_t cap)
{
	const char *p = strstr(hay, key);
	size_t n = 0;
	if (p != NULL) {
		p += strlen(key);
		n = strcspn(p, " \n");
		if (n >= cap)
			n = cap - 1;
		memcpy(buf, p, n);
	}
	buf[n] = '\0';
}

/* ---- -p 0: the port the kernel chose is logged and shown ---------------- */

Test(edges, port_0_logs_and_shows_the_port_bound)
{
	START("-p", "0", "-m", "1024");  /* the last -p counts */
	char *err = h_slurp(P.err), addr[64], shown[64];
	word_after(err, "telem-supervisor: listening on ", addr, sizeof(addr));
	size_t n = strlen(addr);
	if (n > 0 && addr[n - 1] == ',')
		addr[n - 1] = '\0';
	cr_assert(strncmp(addr, "127.0.0.1:", 10) == 0 && atoi(addr + 10) > 0,
	    "the log names '%s':\n%s", addr, err);
	struct h_status s;
	cr_assert(pl_status(&P, &s), "%s", s.raw);
	word_after(s.raw, "listen=", shown, sizeof(shown));
	cr_assert_str_eq(shown, addr, "status:\n%s", s.raw);
	/* Only the ingest line has it. */
	cr_assert_eq(h_count(s.raw, "listen="), 1, "%s", s.raw);
	/* And it is the port that receives. */
	P.port = atoi(addr + 10);
	pl_sendto(&P, "a 1", 3);
	cr_assert_eq(fault_wait_stat(&P, "ingest", "in", 1), 1);
	free(err);
}

/* An IPv4-mapped IPv6 address is an address of this machine: bound, and
 * the IPv4 datagrams to it are taken. */
Test(edges, an_ipv4_mapped_host_is_bound_and_receives)
{
	START("-p", "0", "-m", "1024", "-H", "::ffff:127.0.0.1");
	char *err = h_slurp(P.err), addr[64];
	word_after(err, "telem-supervisor: listening on ", addr, sizeof(addr));
	const char *pre = "[::ffff:127.0.0.1]:";
	cr_assert(strncmp(addr, pre, strlen(pre)) == 0, "%s", err);
	P.port = atoi(addr + strlen(pre));
	pl_sendto(&P, "a 1", 3);
	cr_assert_eq(fault_wait_stat(&P, "ingest", "in", 1), 1);
	free(err);
}

/* ---- bad -H and --rcvbuf ------------------------------------------------ */

Test(edges, bad_host_and_tiny_rcvbuf_are_refused_with_exit_2)
{
	static const char *const bad[] = {
		"-H nosuch.invalid",
		"-H 192.0.2.1",       /* TEST-NET-1: not an address of this machine */
		"-H 127.1",           /* inet_aton's shorthand: not a.b.c.d */
		"-H fe80::1%lo",      /* a scope id */
		"--rcvbuf 0",
		"--rcvbuf 4095",
	};
	char args[256], why[2048];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(args, sizeof(args), "-i %s -p 0 %s", P.instance, bad[i]);
		cr_assert(h_refuses(&P, args, why, sizeof(why)), "%s", why);
		cr_assert_eq(pl_objects_left(&P), 0, "%s left objects", bad[i]);
	}
	/* The smallest buffer taken is 4096 bytes. */
	snprintf(args, sizeof(args), "-i %s -p 0 --rcvbuf 1", P.instance);
	cr_assert(h_refuses(&P, args, why, sizeof(why)), "%s", why);
	char *err = h_slurp(P.err);
	cr_assert(strstr(err, "4096..") != NULL, "%s", err);
	free(err);
	/* Ingest run alone refuses it too (a configuration error, 100). */
	char exe[256], cmd[600];
	snprintf(cmd, sizeof(cmd), "%s -i %s --port 0 --rcvbuf 0 2>%s",
	    h_bin("telem-ingest", exe, sizeof(exe)), P.instance, P.err);
	int st = system(cmd);
	err = h_slurp(P.err);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 100 && h_count(err, "\n") == 1 &&
	    strstr(err, "--rcvbuf 0: must be 4096..") != NULL, "%d: %s", st, err);
	free(err);
}

/* Numbers the supervisor passes on to its stages are digits only, as the
 * stages read them; an empty --control would be an abstract socket,
 * which has no file mode to keep other users out. */
Test(edges, signed_numbers_and_an_empty_control_path_are_refused)
{
	static const char *const bad[] = {
		"--max-names +5", "--max-names ' 5'", "-p +0", "-l -0",
		"--graphite-buffer +1048576", "--control ''",
	};
	char args[256], why[2048];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(args, sizeof(args), "-i %s -p 0 %s", P.instance, bad[i]);
		cr_assert(h_refuses(&P, args, why, sizeof(why)), "%s", why);
		cr_assert_eq(pl_objects_left(&P), 0, "%s left objects", bad[i]);
	}
	char exe[256], cmd[600];
	snprintf(cmd, sizeof(cmd), "%s --control '' status 2>%s",
	    h_bin("telemctl", exe, sizeof(exe)), P.err);
	int st = system(cmd);
	char *err = h_slurp(P.err);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2 && h_count(err, "\n") == 1 &&
	    strstr(err, "must be a path") != NULL, "%d: %s", st, err);
	free(err);
}

/* A reply telemctl cannot write is an error, not exit 0. */
Test(edges, telemctl_says_when_it_cannot_write_the_reply)
{
	cr_assert(pl_start(&P, "-m", "1024", NULL), "%s", h_slurp(P.err));
	char exe[256], cmd[600], errf[300];
	snprintf(errf, sizeof(errf), "%s/ctl.err", P.dir);
	snprintf(cmd, sizeof(cmd), "%s -i %s status >/dev/full 2>%s",
	    h_bin("telemctl", exe, sizeof(exe)), P.instance, errf);
	int st = system(cmd);
	char *err = h_slurp(errf);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1 && h_count(err, "\n") == 1 &&
	    strstr(err, "telemctl: write the reply to stdout: No space left") == err,
	    "%d: %s", st, err);
	free(err);
}

/* Read fd (non-blocking) into buf until it holds needle, 10 s at most. */
static int
read_until(int fd, char *buf, size_t cap, const char *needle)
{
	size_t len = strlen(buf);
	for (int t = 0; t < 1000 && strstr(buf, needle) == NULL; t++) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n > 0)
			buf[len += (size_t)n] = '\0';
	}
	return strstr(buf, needle) != NULL;
}

/* `a V` sent, taken by ckms (its in= n), then a telemctl flush. */
static void
report_a(const char *line, long long n)
{
	char reply[256];
	pl_nc(&P, line);
	for (int t = 0; t < 1000 && pl_stat(&P, "ckms", "in") != n; t++)
		h_nap_ms(10);
	cr_assert_eq(pl_stat(&P, "ckms", "in"), n, "%s", h_slurp(P.err));
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "flush"), 0, "%s", reply);
}

/* An egress whose stdout fails (here its reader gone: EPIPE; a full disk
 * is ENOSPC) drops that report's lines, counts them in sink_dropped, says
 * so, and writes the next report when stdout takes it again. */
Test(edges, a_report_stdout_did_not_take_is_counted_and_the_next_one_written)
{
	cr_assert_eq(mkfifo(P.out, 0600), 0, "mkfifo: %s", strerror(errno));
	int rd = open(P.out, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	cr_assert_neq(rd, -1, "open %s: %s", P.out, strerror(errno));
	START("-m", "1024", "-f", "60000");
	char got[4096] = "";
	report_a("a 10\n", 1);
	cr_assert(read_until(rd, got, sizeof(got), "[CKMS] a 0.99:10\n"), "%s", got);
	close(rd);
	report_a("a 20\n", 2);
	cr_assert(h_wait_text(P.err, "telem-egress-ckms[ckms]: write report to "
	    "stdout: Broken pipe: 6 lines dropped, counted in sink_dropped\n", 1,
	    10000), "%s", h_slurp(P.err));
	cr_assert_eq(pl_stat(&P, "ckms", "sink_dropped"), 6);
	rd = open(P.out, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	cr_assert_neq(rd, -1, "open %s: %s", P.out, strerror(errno));
	got[0] = '\0';
	report_a("a 30\n", 3);
	int ok = read_until(rd, got, sizeof(got), "[CKMS] a 0.99:30\n");
	close(rd);
	cr_assert(ok, "no report after stdout came back:\n%s\nstderr:\n%s", got,
	    h_slurp(P.err));
	cr_assert_str_eq(got, "[CKMS] a 0:10\n[CKMS] a 0.25:10\n[CKMS] a 0.5:20\n"
	    "[CKMS] a 0.75:20\n[CKMS] a 0.9:30\n[CKMS] a 0.99:30\n");
	cr_assert_eq(pl_stat(&P, "ckms", "sink_dropped"), 6);
}

/* Run `cmd` (shell) in the background with stderr to P.err, wait for
 * `needle` there, stop it. 1 if the needle came. */
static int
run_until(const char *cmd, const char *needle)
{
	char full[1024];
	snprintf(full, sizeof(full), "exec %s 2>%s", cmd, P.err);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", full, (char *)NULL);
		_exit(127);
	}
	int ok = h_wait_text(P.err, needle, 1, 5000);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return ok;
}

Test(edges, a_smaller_receive_buffer_than_asked_is_said)
{
	/* Without CAP_NET_ADMIN the kernel caps the buffer at rmem_max. */
	long max = 0;
	FILE *f = fopen("/proc/sys/net/core/rmem_max", "r");
	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%ld", &max), 1);
	fclose(f);
	if (max * 2 > 1073741823)
		SKIP("net.core.rmem_max is too large to ask for more");
	if (system("command -v setpriv >/dev/null") != 0)
		SKIP("setpriv (util-linux) is missing");
	char exe[256], cmd[600], want[128];
	snprintf(cmd, sizeof(cmd), "setpriv --reuid=65534 --regid=65534 "
	    "--clear-groups --inh-caps=-all %s -i %s --port 0 --rcvbuf %ld",
	    h_bin("telem-ingest", exe, sizeof(exe)), P.instance, max * 2);
	snprintf(want, sizeof(want), "receive buffer %ld bytes (asked for %ld: ",
	    max, max * 2);
	cr_assert(run_until(cmd, want), "no '%s':\n%s", want, h_slurp(P.err));
	/* The standalone ingest names its port too. */
	char *err = h_slurp(P.err);
	cr_assert_null(strstr(err, "127.0.0.1:0,"), "%s", err);
	free(err);
}

/* ---- size errors say the limit, what is needed, and how to change it ---- */

static long
proc_long(const char *path)
{
	long v = -1;
	FILE *f = fopen(path, "r");
	if (f != NULL) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Run the supervisor on P's instance with `args` (shell words) and wait;
 * its stderr is left in P.err. Returns the exit status, or -1. */
static int
supervise(const char *args)
{
	char exe[256], cmd[1024];
	snprintf(cmd, sizeof(cmd), "timeout 20 %s -i %s -p 0 %s 2>%s >/dev/null",
	    h_bin("telem-supervisor", exe, sizeof(exe)), P.instance, args, P.err);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(edges, mqueue_message_above_msgsize_max_names_the_sysctl)
{
	long max = proc_long("/proc/sys/fs/mqueue/msgsize_max");
	if (max < 512 || max >= 1048576)
		SKIP("fs.mqueue.msgsize_max is %ld", max);
	char args[128], want[160];
	snprintf(args, sizeof(args), "-t mqueue -m %ld", max + 1);
	int st = supervise(args);
	char *err = h_slurp(P.err);
	if (st == 124 || strstr(err, "pipeline up") != NULL)
		SKIP("this process may pass msgsize_max (CAP_SYS_RESOURCE)");
	cr_assert_eq(st, 1, "%s", err);
	snprintf(want, sizeof(want), "is more than fs.mqueue.msgsize_max (%ld)", max);
	cr_assert(strstr(err, want) != NULL, "no '%s':\n%s", want, err);
	snprintf(want, sizeof(want), "sysctl -w fs.mqueue.msgsize_max=%ld", max + 1);
	cr_assert(strstr(err, want) != NULL, "no '%s':\n%s", want, err);
	cr_assert_null(strstr(err, "Invalid argument"), "%s", err);
	cr_assert_eq(pl_objects_left(&P), 0);
	free(err);
}

Test(edges, a_shm_ring_too_big_says_what_it_needs_and_what_there_is)
{
	int st = supervise("-t shm -s 65536 -m 1048576");
	char *err = h_slurp(P.err);
	cr_assert_eq(st, 1, "%s", err);
	/* 65536 slots of 1048576 bytes and their headers, and the free room. */
	cr_assert(strstr(err, "a ring needs 68723671296 bytes of /dev/shm") != NULL,
	    "%s", err);
	cr_assert(strstr(err, "/dev/shm has ") != NULL, "%s", err);
	cr_assert_null(strstr(err, "Invalid argument"), "%s", err);
	cr_assert_eq(pl_objects_left(&P), 0);
	free(err);
}

/* Queues in /dev/mqueue owned by uid. */
static int
queues_of(uid_t uid)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "find /dev/mqueue -maxdepth 1 -type f -uid %u "
	    "| wc -l", (unsigned)uid);
	FILE *f = popen(cmd, "r");
	int n = -1;
	if (f != NULL) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	return n;
}

Test(edges, a_tight_msgqueue_limit_says_the_limit_and_what_a_queue_needs)
{
	if (strcmp(P.transport, "mqueue") != 0)
		SKIP("mqueue only");
	if (system("command -v setpriv >/dev/null") != 0)
		SKIP("setpriv (util-linux) is missing");
	/* A user of its own (nobody), whose budget only this test touches:
	 * 5000 bytes, less than one queue of 10 x 1024 bytes needs. */
	int before = queues_of(65534);
	char exe[256];
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		struct rlimit rl = { 5000, 5000 };
		if (setrlimit(RLIMIT_MSGQUEUE, &rl) == -1 ||
		    freopen(P.err, "w", stderr) == NULL)
			_exit(126);
		execlp("setpriv", "setpriv", "--reuid=65534", "--regid=65534",
		    "--clear-groups", h_bin("telem-supervisor", exe, sizeof(exe)),
		    "-i", P.instance, "-p", "0", "-t", "mqueue", "-m", "1024",
		    (char *)NULL);
		_exit(127);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	int after = queues_of(65534);
	char *err = h_slurp(P.err);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d:\n%s", st, err);
	cr_assert(strstr(err, "RLIMIT_MSGQUEUE is 5000 bytes; one queue of ") != NULL,
	    "%s", err);
	cr_assert(strstr(err, " messages of 1024 bytes needs ") != NULL, "%s", err);
	if (before == 0 && after == 0)
		cr_assert(strstr(err, "this user has no other") != NULL &&
		    strstr(err, "other queue(s) of this user") == NULL,
		    "blames other queues that do not exist:\n%s", err);
	cr_assert_eq(pl_objects_left(&P), 0);
	free(err);
}

/* ---- log lines a user can act on ---------------------------------------- */

Test(edges, a_bad_line_is_logged_escaped_cut_and_with_its_reason)
{
	START("-m", "1024");
	/* One good line, then a name with a control byte (and a long tail,
	 * cut at 60 bytes), then another bad line the count covers. */
	char d[256];
	int n = snprintf(d, sizeof(d), "ok 1\nna\001me 5 %s\nnovalue\n",
	    "0123456789012345678901234567890123456789012345678901234567890123456789");
	pl_sendto(&P, d, (size_t)n);
	cr_assert_eq(fault_wait_stat(&P, "ingest", "bad", 2), 2);
	/* 60 bytes of it: "na", the byte, "me 5 " and 52 digits. */
	const char *want = "telem-ingest[ingest]: rejected 2 bad line(s) of a "
	    "datagram; the first, \"na\\x01me 5 0123456789012345678901234567890"
	    "123456789012345678901...\": more than two fields\n";
	cr_assert(h_wait_text(P.err, want, 1, 5000), "no\n%s\nin:\n%s", want,
	    h_slurp(P.err));
	/* A line that stands for nothing suppressed says nothing of it. */
	char *err = h_slurp(P.err);
	cr_assert_null(strstr(err, "(0 more"), "%s", err);
	cr_assert_null(strstr(err, "suppressed"), "%s", err);
	free(err);
}

/* ---- instance names ----------------------------------------------------- */

/* Run a program of bin/ with `args`; its exit status, stderr in P.err. */
static int
run_prog(const char *prog, const char *args)
{
	char exe[256], cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s %s 2>%s >/dev/null",
	    h_bin(prog, exe, sizeof(exe)), args, P.err);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A filter keeps one side of one limit: both options, or one twice, is
 * a configuration error (100) said in one line, before any queue opens. */
Test(edges, a_filter_given_two_limits_is_refused)
{
	static const char *const bad[] = { "--keep-below 1 --keep-above 2",
		"--keep-above 2 --keep-above 3" };
	char args[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(args, sizeof(args), "-i %s --in low %s", P.instance, bad[i]);
		cr_assert_eq(run_prog("telem-filter", args), 100, "%s", args);
		char *err = h_slurp(P.err);
		cr_assert(h_count(err, "\n") == 1 && strstr(err, "once") != NULL,
		    "%s:\n%s", args, err);
		free(err);
	}
}

Test(edges, instance_names_that_are_paths_are_refused_everywhere)
{
	static const char *const bad[] = { "../../etc", "..", "a..b", "a/b",
		"a b", "x$y", "", "--print-pipeline", "-x" };
	char args[256], why[2048];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(args, sizeof(args), "-i '%s' -p 0", bad[i]);
		cr_assert(h_refuses(&P, args, why, sizeof(why)), "%s", why);
		snprintf(args, sizeof(args), "-i '%s' status", bad[i]);
		cr_assert_eq(run_prog("telemctl", args), 2, "telemctl %s", args);
		char *err = h_slurp(P.err);
		cr_assert(h_count(err, "\n") == 1 &&
		    strstr(err, "telemctl: -i ") == err &&
		    strstr(err, "without '..'") != NULL, "telemctl %s:\n%s", args, err);
		cr_assert_null(strstr(err, "connect"), "%s", err);
		free(err);
		/* A stage: its configuration error, 100, in one line. */
		snprintf(args, sizeof(args), "-i '%s' --in low", bad[i]);
		cr_assert_eq(run_prog("telem-filter", args), 100, "filter %s", args);
		err = h_slurp(P.err);
		cr_assert_eq(h_count(err, "\n"), 1, "%s", err);
		free(err);
	}
	/* Dots, dashes and underscores are fine. */
	snprintf(args, sizeof(args), "-i %s.a-b_c status", P.instance);
	cr_assert_eq(run_prog("telemctl", args), 1);  /* not running: connect */
	char *err = h_slurp(P.err);
	cr_assert(strstr(err, "is telem-supervisor -i ") != NULL, "%s", err);
	free(err);
}

Test(edges, telemctl_control_error_names_the_path)
{
	char args[512], path[300];
	snprintf(path, sizeof(path), "%s/none.sock", P.dir);
	snprintf(args, sizeof(args), "--control %s status", path);
	cr_assert_eq(run_prog("telemctl", args), 1);
	char *err = h_slurp(P.err), want[400];
	snprintf(want, sizeof(want), "--control %s?", path);
	cr_assert(strstr(err, want) != NULL, "%s", err);
	cr_assert_null(strstr(err, "-i default"), "%s", err);
	free(err);
}

/* ---- -h lists what each program takes ----------------------------------- */

/* The -h text of a program of bin/ (malloc'd). */
static char *
help_of(const char *prog)
{
	char exe[256], cmd[600], path[300];
	snprintf(path, sizeof(path), "%s/help", P.dir);
	snprintf(cmd, sizeof(cmd), "%s -h >%s 2>&1", h_bin(prog, exe, sizeof(exe)),
	    path);
	cr_assert_eq(system(cmd), 0, "%s -h", prog);
	return h_slurp(path);
}

Test(edges, each_help_lists_only_what_the_program_takes)
{
	static const struct { const char *prog; int in, out; } t[] = {
		{ "telem-ingest", 0, 1 },
		{ "telem-filter", 1, 1 },
		/* An egress's out-queues take its report records (the sinks). */
		{ "telem-egress-ckms", 1, 1 },
		{ "telem-egress-cma", 1, 1 },
		{ "telem-sink-carbon", 1, 0 },
		{ "telem-sink-prom", 1, 0 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *h = help_of(t[i].prog);
		cr_expect_eq(strstr(h, "--in QUEUE") != NULL, t[i].in, "%s:\n%s",
		    t[i].prog, h);
		cr_expect_eq(strstr(h, "--out QUEUE") != NULL, t[i].out, "%s:\n%s",
		    t[i].prog, h);
		free(h);
		/* And what -h leaves out is refused. */
		char args[64];
		snprintf(args, sizeof(args), "%s x", t[i].in ? "--out" : "--in");
		if (!t[i].in || !t[i].out)
			cr_expect_eq(run_prog(t[i].prog, args), 100, "%s %s", t[i].prog,
			    args);
	}
	/* The control socket's folder when $XDG_RUNTIME_DIR is not set. */
	char *h = help_of("telem-supervisor");
	cr_expect(strstr(h, "/tmp/telem-UID/INSTANCE.sock") != NULL, "%s", h);
	cr_expect(strstr(h, "--max-names") != NULL, "%s", h);
	free(h);
	h = help_of("telemctl");
	cr_expect(strstr(h, "/tmp/telem-UID/INSTANCE.sock") != NULL, "%s", h);
	free(h);
}

/* The benchmark programs answer -h too, with a usage line, and without
 * running their measurement (which takes seconds to minutes). */
Test(edges, every_bench_program_answers_h)
{
	char pat[300], cmd[900], path[300];
	glob_t g;
	h_bin("bench-*", pat, sizeof(pat));
	cr_assert_eq(glob(pat, 0, NULL, &g), 0, "%s", pat);
	cr_assert_geq(g.gl_pathc, 10, "%zu programs match %s", g.gl_pathc, pat);
	snprintf(path, sizeof(path), "%s/help", P.dir);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		snprintf(cmd, sizeof(cmd), "timeout 10 %s -h >%s 2>&1",
		    g.gl_pathv[i], path);
		cr_expect_eq(system(cmd), 0, "%s -h", g.gl_pathv[i]);
		char *h = h_slurp(path);
		cr_expect(strncmp(h, "usage: ", 7) == 0, "%s -h:\n%s",
		    g.gl_pathv[i], h);
		free(h);
	}
	globfree(&g);
}

/* ---- --max-names from the supervisor ------------------------------------ */

Test(edges, max_names_reaches_both_egresses)
{
	START("-f", "100", "-m", "1024", "--max-names", "2");
	/* low (<= 100) feeds ckms, high (>= 100) feeds cma: 100 goes to both. */
	pl_nc(&P, "n1 100\nn2 100\nn3 100\n");
	long long ck = fault_wait_stat(&P, "ckms", "dropped", 1);
	long long cm = fault_wait_stat(&P, "cma", "dropped", 1);
	cr_assert(ck == 1 && cm == 1, "dropped ckms %lld cma %lld\n%s", ck, cm,
	    h_slurp(P.err));
	cr_assert(h_wait_text(P.err, "telem-egress-ckms[ckms]: name cap of 2 reached",
	    1, 5000), "%s", h_slurp(P.err));
	char why[1024], args[128];
	snprintf(args, sizeof(args), "-i %s -p 0 --max-names 0", P.instance);
	cr_assert(h_refuses(&P, args, why, sizeof(why)), "%s", why);
}

/* ---- status of a stage stopped by a signal ------------------------------ */

Test(edges, a_stage_stopped_by_a_signal_shows_stopped_not_up)
{
	START("-m", "1024");
	pid_t low = pl_stage_pid(&P, "low");
	cr_assert_gt(low, 0);
	cr_assert_eq(kill(low, SIGSTOP), 0);
	struct h_status s;
	int seen = 0;
	for (int i = 0; i < 300 && !seen; i++, fault_nap(10))
		seen = pl_status(&P, &s) && strcmp(s.st[H_LOW].state, "stopped") == 0;
	cr_assert(seen, "%s", s.raw);
	cr_assert_str_eq(s.st[H_HIGH].state, "up", "%s", s.raw);
	cr_assert_eq(kill(low, SIGCONT), 0);
	seen = 0;
	for (int i = 0; i < 300 && !seen; i++, fault_nap(10))
		seen = pl_status(&P, &s) && strcmp(s.st[H_LOW].state, "up") == 0;
	cr_assert(seen, "%s", s.raw);
	cr_assert_eq(s.st[H_LOW].pid, low, "not restarted: %s", s.raw);
}

/* ---- a writer that gives up at shutdown --------------------------------- */

/* Ingest blocked on low's full queue (low stopped) gives up at the stop:
 * its batch went to neither of its queues, and each line says so rather
 * than blaming a kill that never happened. */
Test(edges, a_batch_given_up_at_shutdown_is_said_for_every_queue_it_missed)
{
	START("-m", "1024");
	pid_t low = pl_stage_pid(&P, "low");
	cr_assert_gt(low, 0);
	cr_assert_eq(kill(low, SIGSTOP), 0);
	char d[400], out[4096];
	for (size_t i = 0; i < sizeof(d); i += 4)
		memcpy(d + i, "a 5\n", 4);
	for (int i = 0; i < 500; i++)
		pl_sendto(&P, d, sizeof(d));
	fault_nap(300);
	cr_assert_eq(pl_ctl(&P, out, sizeof(out), "stop"), 0, "%s", out);
	cr_assert_neq(pl_wait(&P, 10000), -1);
	char *err = h_slurp(P.err);
	cr_assert(strstr(err, "telem-ingest[ingest]: queue low still full at "
	    "shutdown: batch of ") != NULL, "%s", err);
	cr_assert(strstr(err, " records not sent to it nor to the queues after "
	    "it\n") != NULL, "%s", err);
	cr_assert(strstr(err, "telem-filter[high]: ") != NULL &&
	    strstr(err, "records sent to queue high never reached us (taken by "
	    "a killed high, or not sent by a writer that gave up at "
	    "shutdown): counted lost\n") != NULL, "%s", err);
	free(err);
}

/* ---- status during a shutdown ------------------------------------------- */

Test(edges, no_stage_shows_up_once_the_shutdown_has_begun)
{
	START("-m", "1024");
	pid_t ckms = pl_stage_pid(&P, "ckms");
	cr_assert_gt(ckms, 0);
	/* Held, so that the shutdown waits for it (SIGKILL after 2 s). */
	cr_assert_eq(kill(ckms, SIGSTOP), 0);
	char path[300];
	snprintf(path, sizeof(path), "%s/stop", P.dir);
	pid_t stop = pl_ctl_bg(&P, "stop", path);
	struct h_status s;
	int seen = 0;
	for (int i = 0; i < 300 && !seen; i++, fault_nap(10))
		seen = pl_status(&P, &s) && strcmp(s.st[H_INGEST].state, "down") == 0;
	cr_assert(seen, "the shutdown never showed:\n%s", s.raw);
	for (int k = 0; k < H_NSTAGES; k++)
		cr_assert_str_neq(s.st[k].state, "up", "%s", s.raw);
	cr_assert_str_eq(s.st[H_CKMS].state, "stopping", "%s", s.raw);
	kill(ckms, SIGCONT);
	cr_assert_eq(waitpid(stop, NULL, 0), stop);
}
