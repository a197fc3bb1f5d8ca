/* e2e_statsd.c - telem as a statsd server (docs/design.md §14), end to
 * end with the real stages: bin/telem-ingest --protocol statsd writing to
 * a queue read by bin/telem-egress-statsd, on $TELEM_TRANSPORT. The test
 * plays the supervisor's part (stats segment, queue, the Flush record
 * with its interval), so that it decides when a flush happens: the values
 * are then exact. Clients: Debian's python3-statsd, unchanged (tests/clients/), and
 * 40+ malformed lines sent one per datagram. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "fault.h"
#include "harness.h"
#include "stats.h"
#include "wire.h"

#define FLUSH_MS 200

struct sd {
	char inst[32];
	int port;
	enum chan_kind kind;
	struct stats_seg *seg;
	struct chan *q;            /* the egress's in-queue, for Flush */
	pid_t ingest, egress, extra;
	char dir[128], out[160], err[160];
};

static struct sd S;

static void
objname(char *buf, size_t cap, const char *what)
{
	snprintf(buf, cap, "/telem.%s.%s", S.inst, what);
}

/* Start a stage with a readiness pipe; returns its pid once it said R\n
 * (fails the test otherwise). stdout to `out` when out is not NULL. */
static pid_t
spawn_stage(char *const argv[], const char *out)
{
	int rp[2];
	cr_assert_eq(pipe(rp), 0);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int e = open(S.err, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int o = out ? open(out, O_WRONLY | O_CREAT | O_APPEND, 0600) : -1;
		if (e == -1 || dup2(e, 2) == -1 || (o != -1 && dup2(o, 1) == -1) ||
		    dup2(rp[1], 3) == -1)
			_exit(127);
		close(rp[0]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(rp[1]);
	char got[3] = { 0 };
	ssize_t n = 0;
	for (int tries = 0; tries < 2 && n < 2; tries++) {
		ssize_t r = read(rp[0], got + n, 2 - (size_t)n);
		if (r <= 0)
			break;
		n += r;
	}
	close(rp[0]);
	cr_assert_str_eq(got, "R\n", "%s not ready: %s", argv[0], h_slurp(S.err));
	return pid;
}

/* ingest --protocol statsd -> queue "sd" -> telem-egress-statsd with the
 * extra egress arguments (NULL-terminated). */
static void
sd_start(const char *const *eargs)
{
	static int seq;
	char obj[64], exe_e[256], exe_i[256], port[16], rdy[] = "3";
	memset(&S, 0, sizeof(S));
	snprintf(S.inst, sizeof(S.inst), "sd%d_%d", (int)getpid(), seq++);
	S.port = h_free_port();
	cr_assert_eq(chan_kind_parse(h_transport(), &S.kind), 0);
	h_tmp_name(S.dir, sizeof(S.dir), "statsd");
	cr_assert_not_null(mkdtemp(S.dir));
	snprintf(S.out, sizeof(S.out), "%s/out", S.dir);
	snprintf(S.err, sizeof(S.err), "%s/err", S.dir);
	objname(obj, sizeof(obj), "stats");
	cr_assert_not_null(S.seg = stats_create(obj));
	objname(obj, sizeof(obj), "sd");
	struct chan_attr a = { S.kind, WIRE_MSG_MIN, 10 };  /* the smallest */
	cr_assert_eq(chan_create(&a, obj), 0, "create %s: %s", obj, strerror(errno));
	cr_assert_not_null(S.q = chan_open(S.kind, obj, CHAN_WRITE));
	snprintf(port, sizeof(port), "%d", S.port);

	char *ev[48] = { (char *)h_bin("telem-egress-statsd", exe_e, sizeof(exe_e)),
		"-i", S.inst, "-t", (char *)h_transport(), "--in", "sd", "--slot",
		"1", "--ready-fd", rdy };
	size_t n = 11;
	for (size_t i = 0; eargs != NULL && eargs[i] != NULL && n < 47; i++)
		ev[n++] = (char *)eargs[i];
	ev[n] = NULL;
	S.egress = spawn_stage(ev, S.out);
	char *iv[] = { (char *)h_bin("telem-ingest", exe_i, sizeof(exe_i)), "-i", S.inst,
		"-t", (char *)h_transport(), "--protocol", "statsd", "--port", port,
		"--out", "sd", "--slot", "0", "--ready-fd", rdy, NULL };
	S.ingest = spawn_stage(iv, NULL);
}

/* (Re)start the egress alone on S's queue and segment, with the extra
 * arguments (NULL-terminated, at most 4, copied), or those of the last
 * call when eargs is NULL. */
static void
sd_start_more(const char *const *eargs)
{
	static char kept[4][240];
	static size_t nkept;
	char exe_e[256], rdy[] = "3";
	char *ev[16] = { (char *)h_bin("telem-egress-statsd", exe_e, sizeof(exe_e)),
		"-i", S.inst, "-t", (char *)h_transport(), "--in", "sd", "--slot",
		"1", "--ready-fd", rdy };
	size_t n = 11;
	if (eargs != NULL)
		for (nkept = 0; nkept < 4 && eargs[nkept] != NULL; nkept++)
			snprintf(kept[nkept], sizeof(kept[nkept]), "%s", eargs[nkept]);
	for (size_t i = 0; i < nkept; i++)
		ev[n++] = kept[i];
	ev[n] = NULL;
	S.egress = spawn_stage(ev, S.out);
}

/* kill -9 and reap *pid. */
static void
kill9_pid(pid_t *pid)
{
	kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

static void
stop_pid(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	for (int i = 0; i < 300; i++) {
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			*pid = 0;
			return;
		}
		h_nap_ms(10);
	}
	kill9_pid(pid);
}

static void
sd_cleanup(void)
{
	char obj[64];
	stop_pid(&S.ingest);
	stop_pid(&S.egress);
	stop_pid(&S.extra);
	chan_close(S.q);
	S.q = NULL;
	if (S.seg != NULL)
		stats_detach(S.seg);
	S.seg = NULL;
	objname(obj, sizeof(obj), "sd");
	chan_unlink(S.kind, obj);
	objname(obj, sizeof(obj), "ck");
	chan_unlink(S.kind, obj);
	objname(obj, sizeof(obj), "stats");
	stats_unlink(obj);
	if (S.dir[0] != '\0' && getenv("TELEM_KEEP") == NULL)
		h_rm_dir(S.dir);
}

/* Wait until a slot's counter reaches want; 1 if so, 0 after 10 s. */
static int
wait_counter(_Atomic uint64_t *c, uint64_t want)
{
	for (int i = 0; i < 1000; i++) {
		if (stats_get(c) >= want)
			return 1;
		h_nap_ms(10);
	}
	return 0;
}

/* Wait until slot's records taken in (stats_in: its own `in` and what it
 * took from each writer) reach want; 1 if so, 0 after 10 s. */
static int
wait_in(int slot, uint64_t want)
{
	for (int i = 0; i < 1000; i++) {
		if (stats_in(&S.seg->slot[slot]) >= want)
			return 1;
		h_nap_ms(10);
	}
	return 0;
}

/* Write a Flush of `ms` into the egress's queue, as the supervisor does. */
static void
sd_flush(uint32_t ms)
{
	unsigned char buf[WIRE_HDR + WIRE_REC_HDR];
	struct wire_writer w;
	wire_writer_init(&w, buf, sizeof(buf));
	cr_assert_eq(wire_put(&w, WIRE_FLUSH, NULL, 0, ms), 0);
	size_t len = wire_finish(&w);
	cr_assert_eq(chan_send(S.q, buf, len, 5000), 0);
}

/* The value the egress wrote for path in its output, or NAN. The last
 * flush's line wins. */
static double
out_value(const char *text, const char *path)
{
	double v = NAN;
	size_t plen = strlen(path);
	for (const char *l = text; *l != '\0';) {
		const char *eol = strchr(l, '\n');
		if (strncmp(l, path, plen) == 0 && l[plen] == ' ')
			v = strtod(l + plen + 1, NULL);
		if (eol == NULL)
			break;
		l = eol + 1;
	}
	return v;
}

/* Wait until the egress's stdout has `lines` lines holding needle. */
static int
wait_out(const char *needle, int count)
{
	return h_wait_text(S.out, needle, count, 10000);
}

TestSuite(statsd, .fini = sd_cleanup, .timeout = 60);

/* Run a client script (cmd: a format with the port and the flush
 * interval), then a Flush, and compare every "PATH VALUE" it printed with
 * what the egress wrote. */
static void
client_exact(const char *fmt)
{
	sd_start(NULL);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), fmt, S.port, FLUSH_MS);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	char *want = malloc(1 << 16);
	size_t n = fread(want, 1, (1 << 16) - 1, f);
	want[n] = '\0';
	cr_assert_eq(pclose(f), 0, "client failed: %s", want);
	unsigned dgrams, metrics;
	cr_assert_eq(sscanf(want, "SENT %u %u", &dgrams, &metrics), 2, "%s", want);
	cr_assert_gt(metrics, 100);
	/* every metric reached the egress: then the Flush */
	cr_assert(wait_in(1, metrics), "egress in=%llu of %u",
	    (unsigned long long)stats_in(&S.seg->slot[1]), metrics);
	cr_expect_eq(stats_get(&S.seg->slot[0].bad), 0);
	sd_flush(FLUSH_MS);
	cr_assert(wait_out("statsd.numStats", 1), "%s", h_slurp(S.err));
	char *got = h_slurp(S.out);
	int checked = 0;
	for (char *l = strchr(want, '\n'); l != NULL && l[1] != '\0';
	    l = strchr(l + 1, '\n')) {
		char path[256];
		double v;
		if (sscanf(l + 1, "%255s %lf", path, &v) != 2)
			continue;
		double g = out_value(got, path);
		cr_expect(g == v, "%s: telem wrote %.17g, statsd writes %.17g", path,
		    g, v);
		checked++;
	}
	cr_expect_gt(checked, 20);
	/* the records are booked out once the flush wrote them: the books
	 * of both stages balance */
	cr_expect(wait_counter(&S.seg->slot[1].out, metrics));
	cr_expect_eq(stats_get(&S.seg->slot[0].out), metrics);
	cr_expect_eq(stats_in(&S.seg->slot[1]), stats_get(&S.seg->slot[1].out));
	free(got);
	free(want);
}

/* python3-statsd (Debian) as an application uses it: the values written
 * at a 200 ms flush are exactly statsd's, computed by the client script
 * from the datagrams the client really sent. */
Test(statsd, python_client_exact)
{
	client_exact("/usr/bin/python3 tests/clients/statsd_py.py %d %d");
}

/* hot-shots (npm, installed by tests/deps.sh into build/npm), with
 * DogStatsD tags, histogram and distribution. */
Test(statsd, node_hot_shots_exact)
{
	client_exact("NODE_PATH=build/npm/node_modules node "
	    "tests/clients/statsd_node.js %d %d");
}

/* Counters and timers reset each flush (written 0 / count 0), gauges
 * persist, the rate divides by the Flush's own interval, tags are kept
 * sorted, in both namespaces. */
static void
send_line(const char *s)
{
	struct pl p = { .port = S.port };
	pl_sendto(&p, s, strlen(s));
}

Test(statsd, flushes_and_tags)
{
	sd_start(NULL);
	send_line("c:3|c\nt:5|ms\ng:7|g\nu:x|s\ntg:1|c|#zone:b,app:a");
	cr_assert(wait_in(1, 5), "ingest in=%llu bad=%llu; egress in=%llu",
	    (unsigned long long)stats_in(&S.seg->slot[0]),
	    (unsigned long long)stats_get(&S.seg->slot[0].bad),
	    (unsigned long long)stats_in(&S.seg->slot[1]));
	sd_flush(500);
	cr_assert(wait_out("statsd.numStats", 1));
	char *got = h_slurp(S.out);
	cr_expect_eq(out_value(got, "stats.c"), 6.0, "rate = 3 / 0.5 s");
	cr_expect_eq(out_value(got, "stats_counts.c"), 3.0);
	cr_expect_eq(out_value(got, "stats.timers.t.count_ps"), 2.0);
	cr_expect_eq(out_value(got, "stats.gauges.g"), 7.0);
	cr_expect_eq(out_value(got, "stats.sets.u.count"), 1.0);
	cr_expect_eq(out_value(got, "stats_counts.tg;app=a;zone=b"), 1.0, "%s", got);
	free(got);
	send_line("g:+1|g");
	cr_assert(wait_in(1, 6));
	sd_flush(1000);
	cr_assert(wait_out("statsd.numStats", 2));
	got = h_slurp(S.out);
	cr_expect_eq(out_value(got, "stats_counts.c"), 0.0);
	cr_expect_eq(out_value(got, "stats.timers.t.count"), 0.0);
	cr_expect_eq(out_value(got, "stats.gauges.g"), 8.0);
	cr_expect_eq(out_value(got, "stats.sets.u.count"), 0.0);
	free(got);
}

Test(statsd, new_namespace_and_prefixes)
{
	static const char *const args[] = { "--legacy-namespace", "no",
		"--global-prefix", "gp", "--prefix-counter", "cc", "--global-suffix",
		"sfx", "--percent", "50,100", NULL };
	sd_start(args);
	send_line("c:2|c\nt:1|ms\nt:3|ms");
	cr_assert(wait_in(1, 3));
	sd_flush(1000);
	cr_assert(wait_out("numStats", 1), "%s", h_slurp(S.err));
	char *got = h_slurp(S.out);
	cr_expect_eq(out_value(got, "gp.cc.c.count.sfx"), 2.0, "%s", got);
	cr_expect_eq(out_value(got, "gp.cc.c.rate.sfx"), 2.0);
	cr_expect_eq(out_value(got, "gp.timers.t.upper_50.sfx"), 1.0);
	cr_expect_eq(out_value(got, "gp.timers.t.mean_100.sfx"), 2.0);
	free(got);
}

/* Lines statsd rejects (and the ones telem's strict parsing adds), each
 * alone in a datagram: every one is counted bad at ingest and reaches
 * statsd.bad_lines_seen; good lines around them still count. */
#define B(s) { s, sizeof(s) - 1 }
static const struct { const char *s; size_t len; } bad[] = {
	B("nocolon"), B("a:1"), B("a:|c"), B("a:x|c"), B("a:1|c|@"),
	B("a:1|c|0.5"), B("a:1|c|@-0.5"), B("a:1|c|@x"), B("a:NaN|c"),
	B("a:inf|c"), B("a:-inf|g"), B("a:nan|ms"), B("a:-1|ms"),
	B("a:1|ms|@1.2.3"), B("a:1..2|c"), B("a:1e|c"), B("a:--1|c"),
	B("a:0x|c"), B("a:x|g"), B("a:x|ms"), B("a:|g"), B("a:1|@0.5|c"),
	B("a:1|c|@+0.5"), B("a:1|c|@ 0.5"), B("a:1|c|@Infinity"), B("a:1|c|@."),
	B("a:x|s\r"), B("a:1\0|c"), B("|c"), B("a|c"), B("a:1|x"), B("a:1|"),
	B("a:1|C"), B("a:2|c|@0"), B("a:2|c|@2"), B("a:5|c|@1.5"),
	B("a:Infinity|c"), B("a:1e400|ms"), B("a:0x1F|c"), B("a:   |c"),
	B("a:1|c|@0.5|junk"), B(":1|c"), B("a\xff\xfe" "b:1|c"), B("m:\xff|s"),
	B("a:1|msx"), B("a:1|c|#t:\xc0\xaf"),
};

Test(statsd, malformed_lines_counted_bad)
{
	size_t nbad = sizeof(bad) / sizeof(bad[0]);
	cr_assert_geq(nbad, 40);
	sd_start(NULL);
	struct pl p = { .port = S.port };
	char big[12000];
	for (size_t i = 0; i < nbad; i++)
		pl_sendto(&p, bad[i].s, bad[i].len);
	/* a 10 000-digit number, and 1 000 tags */
	memset(big, '9', 10000);
	memcpy(big, "a:", 2);
	memcpy(big + 10000, "|c", 2);
	pl_sendto(&p, big, 10002);
	size_t n = (size_t)sprintf(big, "a:1|c|#");
	for (int i = 0; i < 1000; i++)
		n += (size_t)sprintf(big + n, "t%d:v,", i);
	pl_sendto(&p, big, n - 1);
	nbad += 2;
	send_line("ok:1|c");
	cr_assert(wait_counter(&S.seg->slot[0].bad, nbad), "ingest bad=%llu of %zu",
	    (unsigned long long)stats_get(&S.seg->slot[0].bad), nbad);
	cr_assert(wait_in(1, 1));
	h_nap_ms(300);  /* the meta records follow their metrics */
	cr_expect_eq(stats_get(&S.seg->slot[0].bad), nbad);
	cr_expect_eq(stats_in(&S.seg->slot[0]), 1);
	sd_flush(1000);
	cr_assert(wait_out("statsd.numStats", 1));
	char *got = h_slurp(S.out);
	cr_expect_eq(out_value(got, "stats_counts.statsd.bad_lines_seen"),
	    (double)nbad, "%s", got);
	cr_expect_eq(out_value(got, "stats_counts.statsd.packets_received"),
	    (double)nbad + 1);
	cr_expect_eq(out_value(got, "stats_counts.ok"), 1.0);
	free(got);
	cr_expect_gt(h_count(h_slurp(S.err), "rejected"), 0);
}

/* The largest statsd record (a set of a 255-byte key and a 255-byte
 * member, 532 bytes) goes through the smallest message a queue may have
 * (sd_start's), and ingest goes on with the next: with 512-byte messages
 * it stopped ingest, and the next datagram was lost. */
Test(statsd, the_largest_record_fits_the_smallest_message)
{
	sd_start(NULL);
	struct pl p = { .port = S.port };
	char line[600];
	int n = snprintf(line, sizeof(line), "%.*s:%.*s|s", 255,
	    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
	    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
	    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
	    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
	    255,
	    "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm"
	    "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm"
	    "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm"
	    "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm");
	cr_assert_eq(n, 255 + 1 + 255 + 2);
	pl_sendto(&p, line, (size_t)n);
	send_line("ok:1|c");
	cr_assert(wait_in(1, 2), "egress in=%llu of 2\n%s",
	    (unsigned long long)stats_in(&S.seg->slot[1]), h_slurp(S.err));
	cr_expect_eq(stats_get(&S.seg->slot[0].bad), 0);
	cr_expect_eq(waitpid(S.ingest, NULL, WNOHANG), 0, "ingest is gone:\n%s",
	    h_slurp(S.err));
	cr_expect_eq(h_count(h_slurp(S.err), "does not fit"), 0, "%s",
	    h_slurp(S.err));
}

/* Through a real carbon-cache (Debian's graphite-carbon) started here on
 * free loopback ports with a 1-second retention, written to with
 * --connection per-flush: each flush is one TCP connection that carbon
 * logs, and the values read back from its whisper files are statsd's. */
struct carbon_run {
	char dir[160];
	int line_port, pickle_port, query_port;
	pid_t pid;
};

static struct carbon_run CR;

static void
carbon_up_in(const char *under)
{
	char path[300];
	snprintf(CR.dir, sizeof(CR.dir), "%s/carbon", under);
	cr_assert_eq(mkdir(CR.dir, 0700), 0);
	int port[3];
	h_tcp_ports(port, 3);
	CR.line_port = port[0];
	CR.pickle_port = port[1];
	CR.query_port = port[2];
	snprintf(path, sizeof(path), "%s/carbon.conf", CR.dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	const char *d = CR.dir;
	fprintf(f, "[cache]\nSTORAGE_DIR = %s/storage\n"
	    "LOCAL_DATA_DIR = %s/storage/whisper\nWHISPER_DIR = %s/storage/whisper\n"
	    "LOG_DIR = %s/log\nPID_DIR = %s\nUSER =\nENABLE_LOGROTATION = False\n"
	    "ENABLE_TAGS = False\nMAX_CACHE_SIZE = inf\n"
	    "MAX_UPDATES_PER_SECOND = 100000\nMAX_CREATES_PER_MINUTE = inf\n"
	    "LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = %d\n"
	    "ENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\n"
	    "PICKLE_RECEIVER_PORT = %d\nCACHE_QUERY_INTERFACE = 127.0.0.1\n"
	    "CACHE_QUERY_PORT = %d\nLOG_LISTENER_CONNECTIONS = True\n",
	    d, d, d, d, d, CR.line_port, CR.pickle_port, CR.query_port);
	cr_assert_eq(fclose(f), 0);
	snprintf(path, sizeof(path), "%s/storage-schemas.conf", CR.dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "[everything]\npattern = .*\nretentions = 1s:1h\n");
	cr_assert_eq(fclose(f), 0);
	char conf[300], log[300];
	snprintf(conf, sizeof(conf), "--config=%s/carbon.conf", CR.dir);
	snprintf(log, sizeof(log), "%s/out.log", CR.dir);
	pid_t parent = getpid();
	CR.pid = fork();
	cr_assert_neq(CR.pid, -1);
	if (CR.pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		int o = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int z = open("/dev/null", O_RDONLY);
		if (getppid() != parent || o == -1 || z == -1)
			_exit(127);
		dup2(z, 0);
		dup2(o, 1);
		dup2(o, 2);
		execlp("carbon-cache", "carbon-cache", conf, "--nodaemon", "start",
		    (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 3000; i++) {
		if (waitpid(CR.pid, NULL, WNOHANG) == CR.pid) {
			CR.pid = 0;
			cr_assert_fail("carbon-cache exited:\n%s", h_slurp(log));
		}
		if (h_tcp_accepts(CR.line_port) && h_tcp_accepts(CR.pickle_port))
			return;
		h_nap_ms(10);
	}
	cr_assert_fail("carbon-cache not up after 30 s:\n%s", h_slurp(log));
}

static void
carbon_up(void)
{
	carbon_up_in(S.dir);
}

static void
carbon_down(void)
{
	if (CR.pid > 0) {
		kill(CR.pid, SIGTERM);
		for (int k = 0; k < 2000 && CR.pid > 0; k++) {
			if (waitpid(CR.pid, NULL, WNOHANG) == CR.pid)
				CR.pid = 0;
			else
				h_nap_ms(10);
		}
		if (CR.pid > 0) {
			kill(CR.pid, SIGKILL);
			waitpid(CR.pid, NULL, 0);
		}
		CR.pid = 0;
	}
	if (CR.dir[0] != '\0' && getenv("TELEM_KEEP") == NULL)
		h_rm_dir(CR.dir);
	memset(&CR, 0, sizeof(CR));
}

static void
graphite_fini(void)
{
	carbon_down();
	sd_cleanup();
}

/* The last value whisper holds for a metric (path with '.' as '/'), or
 * NAN when it holds none; *sum gets the sum of its points when not NULL. */
static double
wsp_read(const char *metric, double *sum)
{
	if (sum != NULL)
		*sum = NAN;
	char path[600], cmd[800], line[160];
	int n = snprintf(path, sizeof(path), "%s/storage/whisper/", CR.dir);
	for (const char *m = metric; *m && (size_t)n < sizeof(path) - 5; m++)
		path[n++] = *m == '.' ? '/' : *m;
	snprintf(path + n, sizeof(path) - (size_t)n, ".wsp");
	if (access(path, F_OK) != 0)
		return NAN;
	snprintf(cmd, sizeof(cmd), "whisper-fetch --from=%lld '%s' 2>&1",
	    (long long)time(NULL) - 600, path);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	double v = NAN, s = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		long long ts;
		char val[64];
		if (sscanf(line, "%lld %63s", &ts, val) == 2 && strcmp(val, "None") != 0) {
			v = strtod(val, NULL);
			s += v;
		}
	}
	pclose(f);
	if (sum != NULL)
		*sum = s;
	return v;
}

static double
wsp_last(const char *metric)
{
	return wsp_read(metric, NULL);
}

Test(statsd, python_client_through_carbon_per_flush, .fini = graphite_fini,
    .timeout = 120)
{
	/* S.dir is made by sd_start; carbon needs its port first */
	char gspec[64];
	memset(&CR, 0, sizeof(CR));
	sd_start(NULL);
	carbon_up();
	stop_pid(&S.egress);  /* again, now writing to carbon */
	snprintf(gspec, sizeof(gspec), "127.0.0.1:%d", CR.line_port);
	char exe_e[256], rdy[] = "3";
	char *ev[] = { (char *)h_bin("telem-egress-statsd", exe_e, sizeof(exe_e)),
		"-i", S.inst, "-t", (char *)h_transport(), "--in", "sd", "--slot",
		"1", "--ready-fd", rdy, "--graphite", gspec, "--connection",
		"per-flush", NULL };
	S.egress = spawn_stage(ev, S.out);

	char cmd[512];
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 tests/clients/statsd_py.py "
	    "%d %d", S.port, FLUSH_MS);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	static char want[1 << 16];
	size_t n = fread(want, 1, sizeof(want) - 1, f);
	want[n] = '\0';
	cr_assert_eq(pclose(f), 0, "client failed: %s", want);
	unsigned dgrams, metrics;
	cr_assert_eq(sscanf(want, "SENT %u %u", &dgrams, &metrics), 2);
	cr_assert(wait_in(1, metrics));
	/* carbon-cache --nodaemon logs each connection in out.log; those
	 * of carbon_up's probes come before the flushes */
	char log[300];
	snprintf(log, sizeof(log), "%s/out.log", CR.dir);
	char *before = h_slurp(log);
	int conns = h_count(before, "MetricLineReceiver connection with");
	free(before);
	sd_flush(FLUSH_MS);
	/* wait until carbon has the last line's metric, then compare all */
	int checked = 0;
	for (char *l = strchr(want, '\n'); l != NULL && l[1] != '\0';
	    l = strchr(l + 1, '\n')) {
		char path[256];
		double v, g = NAN;
		if (sscanf(l + 1, "%255s %lf", path, &v) != 2)
			continue;
		for (int i = 0; i < 1500 && !(g == v); i++) {
			g = wsp_last(path);
			if (!(g == v))
				h_nap_ms(20);
		}
		cr_expect(g == v, "%s: whisper holds %.17g, statsd writes %.17g", path,
		    g, v);
		checked++;
	}
	cr_expect_gt(checked, 20);
	/* a second flush: a second connection; each closed after its lines */
	sd_flush(FLUSH_MS);
	cr_expect(h_wait_text(log, "MetricLineReceiver connection with", conns + 4,
	    10000), "%s", h_slurp(log));
	char *all = h_slurp(log);
	cr_expect_eq(h_count(all, "MetricLineReceiver connection with"), conns + 4,
	    "two flushes: two connections, each opened and closed:\n%s", all);
	free(all);
	cr_expect_eq(stats_get(&S.seg->slot[1].sink_dropped), 0);
}

/* telem-egress-statsd --graphite: the lines carbon did not take before
 * the egress stopped are dropped, counted in sink_dropped and said in one
 * log line. The first flush of a fresh egress after one datagram is
 * first written to stdout to know how many lines it has. */
Test(statsd, lines_left_for_carbon_at_exit_are_counted_and_logged)
{
	memset(&S, 0, sizeof(S));
	sd_start(NULL);
	send_line("c:1|c");
	cr_assert(wait_in(1, 1));
	sd_flush(FLUSH_MS);
	cr_assert(wait_out("statsd.numStats", 1), "%s", h_slurp(S.err));
	char *out = h_slurp(S.out);
	int lines = h_count(out, "\n");
	free(out);
	cr_assert_gt(lines, 5);
	stop_pid(&S.egress);

	int port;
	h_tcp_ports(&port, 1);  /* nobody listens there */
	char gspec[32], exe_e[256], rdy[] = "3";
	snprintf(gspec, sizeof(gspec), "127.0.0.1:%d", port);
	char *ev[] = { (char *)h_bin("telem-egress-statsd", exe_e, sizeof(exe_e)),
		"-i", S.inst, "-t", (char *)h_transport(), "--in", "sd", "--slot",
		"1", "--ready-fd", rdy, "--graphite", gspec, NULL };
	S.egress = spawn_stage(ev, S.out);
	send_line("c:1|c");
	cr_assert(wait_in(1, 2));
	sd_flush(FLUSH_MS);
	cr_assert(wait_counter(&S.seg->slot[1].out, 2), "flushed");
	stop_pid(&S.egress);
	cr_expect_eq(stats_get(&S.seg->slot[1].sink_dropped), (uint64_t)lines,
	    "%s", h_slurp(S.err));
	char text[128];
	snprintf(text, sizeof(text), "carbon %s: %d lines not sent before exit "
	    "(carbon unreachable): dropped", gspec, lines);
	cr_expect_eq(h_count(h_slurp(S.err), text), 1, "%s", h_slurp(S.err));
}

/* telem-egress-statsd --graphite --graphite-buffer 1024: a flush of
 * about 100 KiB, far over the buffer, reaches a carbon that reads as fast
 * as it can whole, on its per-flush connection: the buffer bounds what is
 * kept of earlier flushes while carbon is away, it never cuts the flush
 * being written (statsd writes every flush whole). */
Test(statsd, a_flush_larger_than_the_graphite_buffer_arrives_whole)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sa);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_neq(lfd, -1);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &slen), 0);
	char gspec[32];
	snprintf(gspec, sizeof(gspec), "127.0.0.1:%d", ntohs(sa.sin_port));
	const char *eargs[] = { "--graphite", gspec, "--graphite-buffer", "1024",
		"--connection", "per-flush", NULL };
	sd_start(eargs);
	/* 200 timers of one value: 14 lines each at the default --percent */
	static char dgram[8192];
	size_t n = 0;
	for (int i = 0; i < 200; i++)
		n += (size_t)snprintf(dgram + n, sizeof(dgram) - n,
		    "%sapp.endpoint%03d.latency:12|ms", i ? "\n" : "", i);
	send_line(dgram);
	cr_assert(wait_in(1, 200), "%s", h_slurp(S.err));
	sd_flush(FLUSH_MS);
	struct timeval tv = { .tv_sec = 10 };
	cr_assert_eq(setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	int fd = accept(lfd, NULL, NULL);
	cr_assert_neq(fd, -1, "no connection: %s", h_slurp(S.err));
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	size_t cap = 1 << 20, got = 0;
	char *text = malloc(cap);
	cr_assert_not_null(text);
	for (ssize_t r; got < cap - 1 && (r = read(fd, text + got,
	    cap - 1 - got)) > 0;)
		got += (size_t)r;  /* to the close that ends the flush */
	text[got] = '\0';
	close(fd);
	close(lfd);
	cr_assert_gt(got, 100000, "%zu bytes", got);
	cr_expect_eq(h_count(text, "stats.timers.app.endpoint"), 200 * 14,
	    "%s", h_slurp(S.err));
	cr_expect_eq(h_count(text, ".latency.upper_90 12 "), 200);
	cr_expect_eq(h_count(text, "\nstatsd.numStats 203 "), 1, "%s",
	    strstr(text, "statsd.numStats"));
	cr_expect(wait_counter(&S.seg->slot[1].out, 200));
	cr_expect_eq(stats_get(&S.seg->slot[1].sink_dropped), 0, "%s",
	    h_slurp(S.err));
	free(text);
}

/* --connection per-flush: a connection a flush, as statsd's graphite
 * backend opens, is not news: "connected" is logged for the first one
 * only (examples/statsd.conf would log it 8640 times a day). */
Test(statsd, per_flush_connections_are_not_logged_at_every_flush)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sa);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_neq(lfd, -1);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &slen), 0);
	struct timeval tv = { .tv_sec = 10 };
	cr_assert_eq(setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	char gspec[32];
	snprintf(gspec, sizeof(gspec), "127.0.0.1:%d", ntohs(sa.sin_port));
	const char *eargs[] = { "--graphite", gspec, "--connection", "per-flush",
		NULL };
	sd_start(eargs);
	for (int i = 0; i < 3; i++) {
		send_line("c:1|c");
		cr_assert(wait_in(1, (uint64_t)i + 1));
		sd_flush(FLUSH_MS);
		int fd = accept(lfd, NULL, NULL);
		cr_assert_neq(fd, -1, "flush %d: no connection: %s", i, h_slurp(S.err));
		cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
		    sizeof(tv)), 0);
		char buf[4096];
		ssize_t r;
		size_t got = 0;
		while ((r = read(fd, buf, sizeof(buf))) > 0)
			got += (size_t)r;  /* to the close that ends the flush */
		close(fd);
		cr_assert_gt(got, 0);
	}
	close(lfd);
	char text[64];
	snprintf(text, sizeof(text), "carbon %s: connected", gspec);
	cr_expect_eq(h_count(h_slurp(S.err), text), 1, "%s", h_slurp(S.err));
}

/* --state FILE: the gauges survive the egress's restart (kill -9 after
 * the flush that saved them); counters start afresh. A file that is not a
 * state file is set aside and the egress starts empty. */
Test(statsd, gauges_survive_a_restart_with_state)
{
	char state[200], arg_state[220];
	memset(&S, 0, sizeof(S));
	sd_start(NULL);
	stop_pid(&S.egress);
	snprintf(state, sizeof(state), "%s/state", S.dir);
	snprintf(arg_state, sizeof(arg_state), "%s", state);
	char exe_e[256], rdy[] = "3";
	char *ev[] = { (char *)h_bin("telem-egress-statsd", exe_e, sizeof(exe_e)),
		"-i", S.inst, "-t", (char *)h_transport(), "--in", "sd", "--slot",
		"1", "--ready-fd", rdy, "--state", arg_state, "--histogram",
		"t:2,inf", NULL };
	S.egress = spawn_stage(ev, S.out);
	send_line("g:5|g\nc:1|c\nt:1|ms\nt:3|ms");
	cr_assert(wait_in(1, 4));
	sd_flush(1000);
	cr_assert(wait_out("statsd.numStats", 1));
	char *got = h_slurp(S.out);
	cr_expect_eq(out_value(got, "stats.timers.t.histogram.bin_2"), 1.0, "%s", got);
	cr_expect_eq(out_value(got, "stats.timers.t.histogram.bin_inf"), 1.0);
	free(got);
	cr_assert(wait_counter(&S.seg->slot[1].out, 4), "booked once saved");
	kill9_pid(&S.egress);
	S.egress = spawn_stage(ev, S.out);
	sd_flush(1000);
	cr_assert(wait_out("statsd.numStats", 2));
	got = h_slurp(S.out);
	cr_expect_eq(out_value(got, "stats.gauges.g"), 5.0, "%s", got);
	cr_expect_eq(h_count(got, "stats_counts.c "), 1,
	    "counters start afresh (unknown, not written)");
	free(got);
	/* a foreign file: one log line, set aside, the egress starts empty */
	stop_pid(&S.egress);
	FILE *f = fopen(state, "w");
	cr_assert_not_null(f);
	fputs("not a state file\n", f);
	fclose(f);
	S.egress = spawn_stage(ev, S.out);
	sd_flush(1000);
	cr_assert(wait_out("statsd.numStats", 3));
	got = h_slurp(S.out);
	cr_expect_eq(h_count(got, "stats.gauges.g "), 2, "no gauge g now:\n%s", got);
	free(got);
	char aside[220];
	snprintf(aside, sizeof(aside), "%s.bad", state);
	cr_expect_eq(access(aside, F_OK), 0, "set aside as .bad");
	cr_expect_gt(h_count(h_slurp(S.err), "state"), 0);
	unlink(aside);
	unlink(state);
}

/* The egress with --state FILE and the extra arguments (NULL-ended). */
static void
sd_start_state(char *state, size_t cap)
{
	char arg[232];
	snprintf(state, cap, "%s/state", S.dir);
	snprintf(arg, sizeof(arg), "%s", state);
	const char *ea[] = { "--state", arg, NULL };
	stop_pid(&S.egress);
	sd_start_more(ea);
}

/* Killed after its save was in place but before booking it, the egress
 * finds in the file the `out` that save was to book (common/state.h):
 * restarted, it books those records out, not lost. The kill between the
 * rename and stage_commit is played by putting the slot back as the
 * supervisor finds it then: out as before the flush, the rest lost. */
Test(statsd, records_saved_but_not_booked_are_booked_at_load)
{
	char state[200];
	memset(&S, 0, sizeof(S));
	sd_start(NULL);
	sd_start_state(state, sizeof(state));
	send_line("g:5|g\nc:1|c\nc:2|c");
	cr_assert(wait_in(1, 3));
	sd_flush(1000);
	cr_assert(wait_counter(&S.seg->slot[1].out, 3), "booked once saved");
	kill9_pid(&S.egress);
	atomic_store(&S.seg->slot[1].out, 0);
	atomic_store(&S.seg->slot[1].lost, 3);
	sd_start_more(NULL);
	cr_expect_eq(stats_get(&S.seg->slot[1].out), 3, "%s", h_slurp(S.err));
	cr_expect_eq(stats_get(&S.seg->slot[1].lost), 0);
	cr_expect_eq(h_count(h_slurp(S.err), "saved but not booked"), 1, "%s",
	    h_slurp(S.err));
	/* a file of another run (the segment's run id differs) books nothing */
	kill9_pid(&S.egress);
	atomic_store(&S.seg->slot[1].out, 0);
	atomic_store(&S.seg->slot[1].lost, 3);
	S.seg->run++;
	sd_start_more(NULL);
	cr_expect_eq(stats_get(&S.seg->slot[1].out), 0);
	cr_expect_eq(stats_get(&S.seg->slot[1].lost), 3);
}

/* A state file removed while the egress runs: restarted (kill -9), it
 * starts without the gauges and says so in one line; the records stay
 * booked, written by the flush that booked them. */
Test(statsd, a_removed_state_file_is_said_at_the_restart)
{
	char state[200];
	memset(&S, 0, sizeof(S));
	sd_start(NULL);
	sd_start_state(state, sizeof(state));
	send_line("g:5|g\nc:1|c");
	cr_assert(wait_in(1, 2));
	sd_flush(1000);
	cr_assert(wait_counter(&S.seg->slot[1].out, 2), "booked once saved");
	cr_assert_eq(unlink(state), 0);
	kill9_pid(&S.egress);
	sd_start_more(NULL);
	char text[300];
	snprintf(text, sizeof(text), "state file %s is missing, though this run has "
	    "booked records: its gauges start afresh\n", state);
	cr_expect_eq(h_count(h_slurp(S.err), text), 1, "%s", h_slurp(S.err));
	cr_expect_eq(stats_get(&S.seg->slot[1].out), 2);
	/* a first start without a file says nothing */
	cr_expect_eq(h_count(h_slurp(S.err), "is missing"), 1, "%s", h_slurp(S.err));
}

/* A state file that cannot be saved: the warning comes at most once in
 * 10 s, however many flushes fail (as the ckms and cma egresses'). */
Test(statsd, failed_saves_are_logged_once_in_10_s)
{
	memset(&S, 0, sizeof(S));
	sd_start(NULL);
	stop_pid(&S.egress);
	char arg[232];
	snprintf(arg, sizeof(arg), "%s/no/such/folder/state", S.dir);
	const char *ea[] = { "--state", arg, NULL };
	sd_start_more(ea);
	send_line("c:1|c");
	cr_assert(wait_in(1, 1));
	for (int i = 1; i <= 5; i++) {
		sd_flush(1000);
		cr_assert(wait_out("statsd.numStats", i));
	}
	char *err = h_slurp(S.err);
	cr_expect_eq(h_count(err, "save state to"), 1, "%s", err);
	cr_expect_eq(stats_get(&S.seg->slot[1].out), 0, "in flight, not booked");
	free(err);
}

/* A mixed pipeline: statsd records through telem-filter (passed
 * unchanged, having no u32 to compare; the Flush keeps its interval) into
 * telem-egress-ckms, which counts each one dropped and reports nothing. */
Test(statsd, through_a_filter_into_ckms)
{
	char obj[64], exe_f[256], exe_c[256], rdy[] = "3";
	sd_start(NULL);
	stop_pid(&S.egress);
	objname(obj, sizeof(obj), "ck");
	struct chan_attr a = { S.kind, 1024, 10 };
	cr_assert_eq(chan_create(&a, obj), 0);
	char *fv[] = { (char *)h_bin("telem-filter", exe_f, sizeof(exe_f)), "-i",
		S.inst, "-t", (char *)h_transport(), "--in", "sd", "--out", "ck",
		"--slot", "1", "--ready-fd", rdy, "--keep-below", "100", NULL };
	char *cv[] = { (char *)h_bin("telem-egress-ckms", exe_c, sizeof(exe_c)),
		"-i", S.inst, "-t", (char *)h_transport(), "--in", "ck", "--slot",
		"2", "--ready-fd", rdy, NULL };
	S.extra = spawn_stage(cv, S.out);
	S.egress = spawn_stage(fv, NULL);
	send_line("a:1|c\nt:5|ms\ng:+2|g\nu:x|s");
	cr_assert(wait_counter(&S.seg->slot[2].dropped, 4), "ckms dropped=%llu\n%s",
	    (unsigned long long)stats_get(&S.seg->slot[2].dropped), h_slurp(S.err));
	cr_expect_eq(stats_get(&S.seg->slot[1].out), 4, "the filter passed them");
	cr_expect_eq(stats_in(&S.seg->slot[2]), 4);
	sd_flush(250);
	h_nap_ms(300);
	stop_pid(&S.extra);
	cr_expect_eq(h_count(h_slurp(S.out), "[CKMS]"), 0, "nothing to report");
	cr_expect_gt(h_count(h_slurp(S.err), "takes only telem records"), 0);
}

/* examples/statsd.conf as shipped, with free ports for 8125 and 2003 and
 * a 1 s flush (whisper keeps one point a second): telem-supervisor runs
 * it, python3-statsd sends, and carbon's whisper files hold statsd's numbers. Flushes fall where they
 * fall, so what is compared is what adds up across them: the counts of
 * counters and timers summed over the points, and each gauge's last. */
static struct pl P;

static void
conf_fini(void)
{
	carbon_down();
	pl_cleanup(&P);
}

/* text with every `from` made `to` (malloc'd); from must occur. */
static char *
replace(const char *text, const char *from, const char *to)
{
	size_t n = 0, fl = strlen(from), tl = strlen(to);
	for (const char *at = strstr(text, from); at; at = strstr(at + fl, from))
		n++;
	cr_assert_gt(n, 0, "'%s' not in examples/statsd.conf", from);
	char *out = malloc(strlen(text) + n * tl + 1), *o = out;
	for (const char *at; (at = strstr(text, from)) != NULL; text = at + fl) {
		memcpy(o, text, (size_t)(at - text));
		o += at - text;
		memcpy(o, to, tl);
		o += tl;
	}
	strcpy(o, text);
	return out;
}

Test(statsd, example_conf_with_carbon, .fini = conf_fini, .timeout = 120)
{
	memset(&CR, 0, sizeof(CR));
	pl_init(&P);
	carbon_up_in(P.dir);
	char *text = h_slurp("examples/statsd.conf"), udp[64], tcp[64];
	snprintf(udp, sizeof(udp), "127.0.0.1:%d", P.port);
	snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", CR.line_port);
	char *a = replace(text, "127.0.0.1:8125", udp);
	char *b = replace(a, "127.0.0.1:2003", tcp);
	char *c = replace(b, "flush_ms = 10000", "flush_ms = 1000");
	char path[300];
	pl_conf(&P, "statsd.conf", path, sizeof(path), "%s", c);
	free(a);
	free(b);
	free(c);
	cr_assert(pl_start_conf(&P, path, NULL), "%s", h_slurp(P.err));

	char cmd[512];
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 tests/clients/statsd_py.py "
	    "%d 1000", P.port);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	static char want[1 << 16];
	size_t n = fread(want, 1, sizeof(want) - 1, f);
	want[n] = '\0';
	cr_assert_eq(pclose(f), 0, "client failed: %s", want);
	int checked = 0;
	for (char *l = strchr(want, '\n'); l != NULL && l[1] != '\0';
	    l = strchr(l + 1, '\n')) {
		char p[256];
		double v, g = NAN;
		if (sscanf(l + 1, "%255s %lf", p, &v) != 2)
			continue;
		int sum = strncmp(p, "stats_counts.", 13) == 0 ||
		    (strncmp(p, "stats.timers.", 13) == 0 &&
		    strcmp(p + strlen(p) - 6, ".count") == 0);
		if (!sum && strncmp(p, "stats.gauges.", 13) != 0)
			continue;
		for (int i = 0; i < 1500 && !(g == v); i++) {
			double s;
			g = wsp_read(p, &s);
			if (sum)
				g = s;
			if (!(g == v))
				h_nap_ms(20);
		}
		cr_expect(g == v, "%s: whisper holds %.17g, statsd writes %.17g", p,
		    g, v);
		if (!(g == v))
			cr_assert_fail("supervisor:\n%s", h_slurp(P.err));
		checked++;
	}
	cr_expect_gt(checked, 10);
}

/* A pipeline file for P: ingest (statsd) into the statsd egress, with
 * ticks a minute apart, so that only the Flushes a test causes report. */
static void
slow_statsd_conf(char *path, size_t cap)
{
	memset(&CR, 0, sizeof(CR));
	pl_init(&P);
	pl_conf(&P, "sd.conf", path, cap,
	    "[pipeline]\nflush_ms = 60000\n\n"
	    "[stage ingest]\nexec = telem-ingest\nargs = --protocol statsd\n"
	    "udp = 127.0.0.1:%d\nout = statsd\n\n"
	    "[stage statsd]\nexec = telem-egress-statsd\nflush = yes\n", P.port);
}

/* A clean stop of the statsd egress between two flushes (`telemctl
 * restart`): what it held goes out in a last flush over the time since
 * the last one and its gauges are saved (docs/design.md §13), so nothing
 * is lost, the books balance and the restarted egress goes on from the
 * gauges. */
Test(statsd, restart_before_a_flush_loses_nothing, .fini = conf_fini)
{
	char path[300], out[4096];
	slow_statsd_conf(path, sizeof(path));
	cr_assert(pl_start_conf(&P, path, "--state-dir", P.dir, NULL), "%s",
	    h_slurp(P.err));
	for (int i = 0; i < 5; i++)
		pl_nc(&P, "g:+1|g\nk:1|c");
	cr_assert_eq(fault_wait_stat(&P, "statsd", "in", 10), 10, "%s",
	    h_slurp(P.err));
	pid_t old = pl_stage_pid(&P, "statsd");
	cr_assert_eq(pl_ctl(&P, out, sizeof(out), "restart statsd"), 0, "%s", out);
	cr_assert_gt(fault_wait_restarted(&P, "statsd", old), 0, "%s",
	    h_slurp(P.err));
	cr_assert(h_wait_text(P.out, "statsd.numStats", 1, 10000), "%s\n%s",
	    h_slurp(P.out), h_slurp(P.err));
	char *o = h_slurp(P.out);
	cr_expect_eq(out_value(o, "stats_counts.k"), 5.0, "%s", o);
	cr_expect_eq(out_value(o, "stats.gauges.g"), 5.0, "%s", o);
	free(o);
	cr_expect_eq(fault_wait_stat(&P, "statsd", "out", 10), 10);
	cr_expect_eq(pl_stat(&P, "statsd", "lost"), 0, "%s", h_slurp(P.err));
	cr_expect(pl_books(&P, out, sizeof(out)), "%s", out);
	/* the gauge was saved at the stop: the next one goes on from 5 */
	pl_nc(&P, "g:+1|g");
	cr_assert_eq(fault_wait_stat(&P, "statsd", "in", 11), 11);
	old = pl_stage_pid(&P, "statsd");
	cr_assert_eq(pl_ctl(&P, out, sizeof(out), "restart statsd"), 0, "%s", out);
	cr_assert_gt(fault_wait_restarted(&P, "statsd", old), 0);
	cr_assert(h_wait_text(P.out, "statsd.numStats", 2, 10000), "%s",
	    h_slurp(P.err));
	o = h_slurp(P.out);
	cr_expect_eq(out_value(o, "stats.gauges.g"), 6.0, "%s", o);
	free(o);
	cr_expect_eq(fault_wait_stat(&P, "statsd", "out", 11), 11);
	cr_expect_eq(pl_stat(&P, "statsd", "lost"), 0);
	cr_expect(pl_books(&P, out, sizeof(out)), "%s", out);
}

/* telemctl stop: the supervisor's final Flush covers the time since the
 * last tick, not a whole flush_ms: the rates of the last flush divide by
 * that (README: a clean stop writes its rates over the time since the
 * previous flush). With flush_ms 60000 and a stop about a second after
 * the start, 30 counts are a rate of 30 / (about 1 s), not 30 / 60. */
Test(statsd, a_stop_writes_its_rates_over_the_time_since_the_last_tick,
    .fini = conf_fini)
{
	char path[300], out[4096];
	slow_statsd_conf(path, sizeof(path));
	cr_assert(pl_start_conf(&P, path, NULL), "%s", h_slurp(P.err));
	pl_nc(&P, "r:30|c\nt:5|ms");
	cr_assert_eq(fault_wait_stat(&P, "statsd", "in", 2), 2, "%s",
	    h_slurp(P.err));
	cr_assert_eq(pl_ctl(&P, out, sizeof(out), "stop"), 0, "%s", out);
	cr_assert_neq(pl_wait(&P, 20000), -1, "%s", h_slurp(P.err));
	char *o = h_slurp(P.out);
	cr_expect_eq(out_value(o, "stats_counts.r"), 30.0, "%s", o);
	/* the stop came within 30 s of the start (a test's timeout is 60) */
	cr_expect_gt(out_value(o, "stats.r"), 1.0, "%s", o);
	cr_expect_gt(out_value(o, "stats.timers.t.count_ps"), 1.0 / 30, "%s", o);
	free(o);
}

/* telemctl flush: the Flush it asks for covers the time since the last
 * one, and the next covers the time from there, so each flush's rates
 * divide by the time its counts came in, not by a whole flush_ms. With
 * flush_ms 60000 and flushes asked for within seconds, 30 counts are a
 * rate above 1 each time (30 / 60 = 0.5 when each Flush said 60 s). */
Test(statsd, a_flush_asked_for_writes_its_rates_over_the_time_it_covers,
    .fini = conf_fini)
{
	char path[300], out[4096];
	slow_statsd_conf(path, sizeof(path));
	cr_assert(pl_start_conf(&P, path, NULL), "%s", h_slurp(P.err));
	for (int round = 1; round <= 2; round++) {
		pl_nc(&P, "r:30|c");
		cr_assert_eq(fault_wait_stat(&P, "statsd", "in", round), round,
		    "%s", h_slurp(P.err));
		cr_assert_eq(pl_ctl(&P, out, sizeof(out), "flush"), 0, "%s", out);
		cr_assert(h_wait_text(P.out, "stats.r ", round, 10000), "%s\n%s",
		    h_slurp(P.out), h_slurp(P.err));
		char *o = h_slurp(P.out);
		/* out_value: the last flush's line; both came within 30 s */
		cr_expect_eq(out_value(o, "stats_counts.r"), 30.0, "%s", o);
		cr_expect_gt(out_value(o, "stats.r"), 1.0, "round %d:\n%s", round, o);
		free(o);
	}
	cr_assert_eq(pl_ctl(&P, out, sizeof(out), "stop"), 0, "%s", out);
	cr_assert_neq(pl_wait(&P, 20000), -1, "%s", h_slurp(P.err));
}

/* A stop while the statsd egress is down, killed and waiting for its
 * restart, with records in its queue: the supervisor starts it again to
 * read them up to the final Flush and the Stop, so the stop loses nothing
 * queued (it dropped the queue unread, with no word), and the gauges it
 * saves go on at the next start (--state-dir). */
Test(statsd, a_stop_while_the_egress_is_down_reads_its_queue, .fini = conf_fini)
{
	char path[300], out[4096];
	slow_statsd_conf(path, sizeof(path));
	cr_assert(pl_start_conf(&P, path, "--state-dir", P.dir, NULL), "%s",
	    h_slurp(P.err));
	/* Four kills in a row: the restart waits 100, 200, 400, 800 ms. */
	for (int k = 0; k < 4; k++) {
		pid_t old = pl_stage_pid(&P, "statsd");
		cr_assert_gt(old, 0);
		cr_assert_eq(kill(old, SIGKILL), 0);
		if (k < 3)
			cr_assert_gt(fault_wait_restarted(&P, "statsd", old), 0, "%s",
			    h_slurp(P.err));
	}
	for (int i = 0; i < 5; i++)
		pl_nc(&P, "g:+1|g\nk:1|c");
	cr_assert_eq(fault_wait_stat(&P, "ingest", "out", 10), 10, "%s",
	    h_slurp(P.err));
	cr_assert_eq(pl_ctl(&P, out, sizeof(out), "status"), 0, "%s", out);
	cr_assert_not_null(strstr(out, "stage=statsd pid=0 state=throttled"),
	    "the egress came back before the stop: %s", out);
	cr_assert_gt(pl_stat(&P, "statsd", "depth"), 0, "%s", out);
	int st = pl_signal_wait(&P, SIGTERM, 15000);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d:\n%s", st,
	    h_slurp(P.err));
	char *o = h_slurp(P.out);
	cr_expect_eq(out_value(o, "stats_counts.k"), 5.0, "%s\n%s", o,
	    h_slurp(P.err));
	cr_expect_eq(out_value(o, "stats.gauges.g"), 5.0, "%s", o);
	free(o);
	cr_expect_eq(h_count(h_slurp(P.err), "stage statsd is down with records "
	    "in its queue: started to read them before the stop"), 1, "%s",
	    h_slurp(P.err));
	cr_expect_eq(pl_objects_left(&P), 0);

	/* The gauge was saved at that stop: the next start goes on from 5. */
	cr_assert(pl_start_conf(&P, path, "--state-dir", P.dir, NULL), "%s",
	    h_slurp(P.err));
	pl_nc(&P, "g:+1|g");
	cr_assert_eq(fault_wait_stat(&P, "statsd", "in", 1), 1, "%s",
	    h_slurp(P.err));
	cr_assert_eq(pl_ctl(&P, out, sizeof(out), "flush"), 0, "%s", out);
	cr_assert(h_wait_text(P.out, "stats.gauges.g 6 ", 1, 10000), "%s\n%s",
	    h_slurp(P.out), h_slurp(P.err));
}
