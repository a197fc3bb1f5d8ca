/* e2e_input.c - bad input end to end (docs/design.md §9, and who may
 * write where): every kind of bad datagram, names that would
 * escape a report, rate-limited logs under a flood, kernel drops counted
 * across ingest restarts, what listens where and with which modes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctlpath.h"
#include "e2e.h"
#include "wire.h"

TestSuite(input, .init = setup, .fini = teardown, .timeout = 120);

/* ---- bad datagrams ------------------------------------------------- */

struct dgram {
	const char *data;
	size_t len;        /* 0: strlen(data) unless `empty` */
	int bad;           /* lines ingest must reject */
};

#define D(s, b) { s, sizeof(s) - 1, b }

static const struct dgram bad_dgrams[] = {
	D("\xff\xfe 5", 1),                 /* not UTF-8 */
	D("\xc3 5", 1),                     /* cut UTF-8 sequence */
	D("\xc0\xaf 5", 1),                 /* overlong '/' */
	D("\xed\xa0\x80 5", 1),             /* a surrogate */
	D("a\0b 5", 1),                     /* binary with a NUL */
	D("\0\0\0\0", 1),
	D("", 1),                           /* empty datagram */
	D("\n", 1),                         /* an empty line */
	D(" \t 7", 1),                      /* no name */
	D("novalue", 1),                    /* missing value */
	D("novalue ", 1),
	D("neg -5", 1),                     /* negative */
	D("plus +5", 1),
	D("big 4294967296", 1),             /* overflow */
	D("huge 99999999999999999999999", 1),
	D("frac 1.5", 1),                   /* not a whole number */
	D("hex 0x10", 1),
	D("three 1 2", 1),                  /* more than two fields */
	D("esc\x1b[31m 5", 1),              /* terminal escape (ESC) */
	D("csi\xc2\x9b""31m 5", 1),         /* CSI as C1 U+009B */
	D("nel\xc2\x85x 5", 1),             /* NEL, a C1 line break */
	D("cr\rx 5", 1),                    /* carriage return in a name */
	D("ls\xe2\x80\xa8x 5", 1),          /* U+2028 line separator */
	D("del\x7f 5", 1),
	D("vt\vx 5", 1),
	D("ok1 5\n\nbad\nok2 6\n", 2),      /* lines are judged alone */
	D("x\ny 5", 1),                     /* a newline splits the name */
};

Test(input, bad_datagrams_are_counted_and_never_reach_a_report)
{
	static char longname[400], big[60000];
	START("-f", "100", "-m", "1024");
	pid_t pid = pl_stage_pid(&P, "ingest");
	cr_assert_gt(pid, 0);
	int bad = 0;
	for (size_t i = 0; i < sizeof(bad_dgrams) / sizeof(bad_dgrams[0]); i++) {
		pl_sendto(&P, bad_dgrams[i].data, bad_dgrams[i].len);
		bad += bad_dgrams[i].bad;
	}
	/* A 300-byte name, one byte short of nothing else wrong. */
	memset(longname, 'n', 300);
	memcpy(longname + 300, " 5", 2);
	pl_sendto(&P, longname, 302);
	bad++;
	/* 60 000 bytes of valid lines: over the datagram limit, all rejected. */
	for (size_t i = 0; i + 4 <= sizeof(big); i += 4)
		memcpy(big + i, "z 1\n", 4);
	pl_sendto(&P, big, sizeof(big));
	bad++;

	cr_assert_eq(fault_wait_stat(&P, "ingest", "bad", bad), bad, "ingest bad != %d:\n%s",
	    bad, h_slurp(P.err));
	pl_nc(&P, "after 42\n");
	WAIT_OUT("[CKMS] after 0:42\n");
	cr_assert_eq(pl_stat(&P, "ingest", "in"), 4, "ok1, ok2, y, after");
	cr_assert_eq(pl_stat(&P, "ingest", "dropped_dgrams"), 0);
	cr_assert(fault_stage_up(&P, "ingest", pid), "ingest was restarted:\n%s", h_slurp(P.err));
	WAIT_OUT("[CKMS] y 0:5\n");

	/* stdout holds report lines of the accepted names only: no escape,
	 * C1 control, CR or line break of a sender got through. */
	char *out = h_slurp(P.out);
	for (const unsigned char *s = (const unsigned char *)out; *s; s++)
		cr_assert(*s == '\n' || (*s >= 0x20 && *s < 0x7f),
		    "byte 0x%02x on stdout:\n%s", *s, out);
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		char tag[16], name[64];
		cr_assert_eq(sscanf(line, "%15s %63s", tag, name), 2, "%s", line);
		cr_assert(strcmp(tag, "[CKMS]") == 0 || strcmp(tag, "[CMA]") == 0,
		    "%s", line);
		cr_assert(strcmp(name, "ok1") == 0 || strcmp(name, "ok2") == 0 ||
		    strcmp(name, "y") == 0 || strcmp(name, "after") == 0, "%s", line);
	}
	free(out);
}

/* ---- rate-limited logging ------------------------------------------ */

/* Lines of stderr holding `what`, and the sum over them of 1 + the
 * suppressed count each one reports: the events the limiter saw up to its
 * last line. */
static int
log_lines(const char *what, long long *events)
{
	char *err = h_slurp(P.err);
	int n = 0;
	*events = 0;
	for (char *s = err; (s = strstr(s, what)) != NULL; s++) {
		/* "(N more ...)" on this line; a line that stands for nothing
		 * suppressed has none. */
		char *eol = strchr(s, '\n'), *p = s, *q;
		long long k = 0;
		while ((p = strchr(p, '(')) != NULL && (eol == NULL || p < eol)) {
			long long v = strtoll(++p, &q, 10);
			if (q > p && strncmp(q, " more ", 6) == 0)
				k = v;
		}
		*events += 1 + k;
		n++;
	}
	free(err);
	return n;
}

/* After a flood, send one more bad input at a time until the limiter
 * prints again (its interval is 1 s); returns how many it took. */
static int
until_next_line(const char *what, void (*send_one)(void))
{
	long long ev;
	int before = log_lines(what, &ev), extra = 0;
	for (int i = 0; i < 50 && log_lines(what, &ev) == before; i++) {
		send_one();
		extra++;
		for (int k = 0; k < 10 && log_lines(what, &ev) == before; k++)
			fault_nap(10);
	}
	cr_assert_gt(log_lines(what, &ev), before, "no line after the flood");
	return extra;
}

static void
one_bad_datagram(void)
{
	pl_sendto(&P, "bad", 3);
}

static void
one_bad_message(void)
{
	struct chan *c = open_queue("low");
	put(c, "junk", 4);
	chan_close(c);
}

Test(input, a_flood_of_bad_input_logs_one_line_a_second_per_stage)
{
	const char *ing = "telem-ingest[ingest]: rejected";
	const char *low = "telem-filter[low]: malformed message";
	START("-f", "1000", "-m", "1024");
	long long t0 = fault_ms();
	for (int i = 0; i < 10000; i++)
		pl_sendto(&P, "bad", 3);
	struct chan *c = open_queue("low");
	for (int i = 0; i < 3000; i++)
		put(c, "junk", 4);
	chan_close(c);
	long long got = 0;
	for (int i = 0; i < 3000; i++, fault_nap(10)) {
		long long dr = pl_stat(&P, "ingest", "dropped_dgrams");
		got = pl_stat(&P, "ingest", "bad") + dr;
		if (got == 10000 && pl_stat(&P, "low", "bad") == 3000)
			break;
	}
	long long elapsed = fault_ms() - t0, ev;
	cr_assert_eq(got, 10000, "bad + dropped");
	cr_assert_eq(pl_stat(&P, "low", "bad"), 3000);
	/* One line at the first event, then at most one per second. */
	int limit = 1 + (int)((elapsed + 999) / 1000);
	int ni = log_lines(ing, &ev), nl = log_lines(low, &ev);
	cr_assert(ni >= 1 && ni <= limit, "%d ingest lines in %lld ms", ni, elapsed);
	cr_assert(nl >= 1 && nl <= limit, "%d low lines in %lld ms", nl, elapsed);

	/* The counts of what was suppressed add up: every bad datagram
	 * the stage received (dropped ones never arrived) and every bad
	 * message is either a line or in a line's count. */
	long long dropped = pl_stat(&P, "ingest", "dropped_dgrams");
	int extra = until_next_line(ing, one_bad_datagram);
	log_lines(ing, &ev);
	cr_assert_eq(ev, 10000 - dropped + extra, "ingest lines account for %lld", ev);
	extra = until_next_line(low, one_bad_message);
	log_lines(low, &ev);
	cr_assert_eq(ev, 3000 + extra, "low lines account for %lld", ev);
}

/* The bad lines ingest's log lines stand for: N of each "rejected N bad
 * line(s)" plus K of its "(K more ...)". */
static long long
logged_bad_lines(void)
{
	const char *what = "telem-ingest[ingest]: rejected ";
	char *err = h_slurp(P.err), *q;
	long long sum = 0;
	for (char *s = err; (s = strstr(s, what)) != NULL; s++) {
		char *eol = strchr(s, '\n'), *p = s + strlen(what);
		sum += strtoll(p, NULL, 10);
		while ((p = strchr(p, '(')) != NULL && (eol == NULL || p < eol)) {
			long long v = strtoll(++p, &q, 10);
			if (q > p && strncmp(q, " more ", 6) == 0)
				sum += v;
		}
	}
	free(err);
	return sum;
}

Test(input, the_log_of_bad_lines_adds_up_to_bad_with_many_per_datagram)
{
	/* Datagrams of 10 bad lines each: what a log line says was
	 * suppressed is lines, as its own count is, not datagrams. */
	static const char ten[] = "x\nx\nx\nx\nx\nx\nx\nx\nx\nx\n";
	START("-m", "1024");
	for (int i = 0; i < 300; i++)
		pl_sendto(&P, ten, sizeof(ten) - 1);
	long long got = 0;
	for (int i = 0; i < 3000; i++, fault_nap(10)) {
		got = pl_stat(&P, "ingest", "bad") +
		    10 * pl_stat(&P, "ingest", "dropped_dgrams");
		if (got == 3000)
			break;
	}
	cr_assert_eq(got, 3000, "bad + 10 x dropped");
	until_next_line("telem-ingest[ingest]: rejected", one_bad_datagram);
	long long bad = pl_stat(&P, "ingest", "bad"), sum = logged_bad_lines();
	cr_assert_eq(sum, bad, "the log accounts for %lld bad lines of %lld",
	    sum, bad);
	char *err = h_slurp(P.err);
	cr_assert(strstr(err, " more bad line(s) since the last of these lines)"),
	    "%s", err);
	free(err);
}

/* ---- the security paragraph ---------------------------------------- */

static int
check_modes(const char *dir, const char *prefix)
{
	char path[512];
	int n = 0;
	for (int i = 0; i < 5; i++) {
		static const char *const q[] = { "low", "high", "ckms", "cma", "stats" };
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s%s", dir, prefix, q[i]);
		if (stat(path, &st) == -1)
			continue;
		cr_assert_eq(st.st_mode & 0777, 0600, "%s is %o", path, st.st_mode & 0777);
		n++;
	}
	return n;
}

Test(input, listens_on_loopback_and_every_object_is_0600_in_a_0700_folder)
{
	START("-m", "1024");
	/* The UDP socket: 127.0.0.1 only (no -H). */
	char *udp = h_slurp("/proc/net/udp"), want[32], any[32];
	snprintf(want, sizeof(want), " 0100007F:%04X ", P.port);
	snprintf(any, sizeof(any), ":%04X 00000000:0000", P.port);
	cr_assert_eq(h_count(udp, any), 1, "port %d bound more than once:\n%s", P.port, udp);
	cr_assert_eq(h_count(udp, want), 1, "not on 127.0.0.1:%d:\n%s", P.port, udp);
	free(udp);
	/* The queues and the stats segment. */
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "telem.%s.", P.instance);
	int n = check_modes("/dev/shm", prefix) + check_modes("/dev/mqueue", prefix);
	cr_assert_eq(n, 5, "4 queues and the stats segment, found %d", n);
	/* The control socket, in a folder of our own. */
	char path[600], dir[512];
	struct stat st;
	cr_assert_eq(ctl_dir(dir, sizeof(dir), 0), 0);
	cr_assert_eq(stat(dir, &st), 0, "%s", dir);
	cr_assert_eq(st.st_mode & 0777, 0700, "%s is %o", dir, st.st_mode & 0777);
	cr_assert_eq(st.st_uid, getuid());
	snprintf(path, sizeof(path), "%s/%s.sock", dir, P.instance);
	cr_assert_eq(stat(path, &st), 0, "%s", path);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "%s is %o", path, st.st_mode & 0777);
	/* The instance lock: beside the objects, global, 0600; none in the
	 * control folder any more. */
	snprintf(path, sizeof(path), "%s/%s.lock", dir, P.instance);
	cr_assert_eq(stat(path, &st), -1, "%s is still made", path);
	snprintf(path, sizeof(path), "/dev/shm/telem.%s.lock", P.instance);
	cr_assert_eq(stat(path, &st), 0, "%s", path);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "%s is %o", path, st.st_mode & 0777);
	cr_assert_eq(st.st_uid, geteuid());
}

/* ---- kernel drops --------------------------------------------------- */

/* Send one more datagram (drops after the last one received are told with
 * the next) and wait until ingest has booked or seen dropped `want`. */
static long long
sentinel_and_wait(long long want)
{
	long long got = -1;
	pl_sendto(&P, "d 1", 3);
	for (int i = 0; i < 1000; i++, fault_nap(10))
		if ((got = pl_stat(&P, "ingest", "in") + pl_stat(&P, "ingest", "dropped_dgrams")) >= want)
			break;
	return got;
}

static void
burst(int n)
{
	for (int i = 0; i < n; i++)
		pl_sendto(&P, "d 1", 3);
}

Test(input, kernel_drops_are_counted_in_dropped_across_ingest_restarts)
{
	char text[128];
	START("-f", "100", "-m", "1024", "--rcvbuf", "4096");
	/* The effective size is said at start, by both. */
	snprintf(text, sizeof(text), "telem-supervisor: listening on 127.0.0.1:%d, "
	    "receive buffer 4096 bytes\n", P.port);
	cr_assert(h_wait_text(P.err, text, 1, 5000), "%s", h_slurp(P.err));
	snprintf(text, sizeof(text), "telem-ingest[ingest]: listening on 127.0.0.1:%d "
	    "(socket of the supervisor), receive buffer 4096 bytes\n", P.port);
	cr_assert(h_wait_text(P.err, text, 1, 5000), "%s", h_slurp(P.err));

	/* A frozen ingest: its 4 kB buffer holds a few datagrams only. */
	pid_t pid = pl_stage_pid(&P, "ingest");
	cr_assert_eq(kill(pid, SIGSTOP), 0);
	burst(500);
	/* Current without waiting for a read: shown while ingest is frozen. */
	long long d0 = pl_stat(&P, "ingest", "dropped_dgrams");
	cr_assert_gt(d0, 400, "only %lld of 500 dropped (ingest frozen)", d0);
	cr_assert_eq(kill(pid, SIGCONT), 0);
	cr_assert_eq(fault_wait_stat(&P, "ingest", "in", pl_stat(&P, "ingest", "in")),
	    pl_stat(&P, "ingest", "in"));
	/* Every datagram of the burst is in one or the other, with none after. */
	long long seen = 0;
	for (int i = 0; i < 500 && seen != 500; i++, fault_nap(10))
		seen = pl_stat(&P, "ingest", "in") + pl_stat(&P, "ingest", "dropped_dgrams");
	cr_assert_eq(seen, 500, "in + dropped_dgrams");
	cr_assert_eq(sentinel_and_wait(501), 501, "in %lld dropped %lld",
	    pl_stat(&P, "ingest", "in"), pl_stat(&P, "ingest", "dropped_dgrams"));
	long long d1 = pl_stat(&P, "ingest", "dropped_dgrams");
	cr_assert_gt(d1, 400, "only %lld of 500 dropped", d1);

	/* No ingest at all: the socket stays (the supervisor's), and what
	 * it drops meanwhile is counted once by the next ingest. */
	cr_assert_eq(kill(pid, SIGKILL), 0);
	burst(500);
	cr_assert_gt(fault_wait_restarted(&P, "ingest", pid), 0);
	cr_assert_eq(sentinel_and_wait(1002), 1002, "in %lld dropped %lld",
	    pl_stat(&P, "ingest", "in"), pl_stat(&P, "ingest", "dropped_dgrams"));
	cr_assert_gt(pl_stat(&P, "ingest", "dropped_dgrams"), d1);
	cr_assert_eq(pl_stat(&P, "ingest", "bad"), 0);
	WAIT_OUT("[CKMS] d 0:1\n");
}

