/* e2e_graphite.c - end to end: telem-supervisor -g adds the stage carbon
 * (telem-sink-carbon, fed by both egresses' report records), which sends
 * every report to a real carbon-cache (Debian's graphite-carbon), started
 * here on free loopback ports with its own carbon.conf and a 1-second
 * retention, and read back from its whisper files with whisper-fetch.
 * Also: carbon stopped and started again while telem runs, a full send
 * buffer, a carbon-relay with consistent hashing in front of two caches,
 * names that differ only in dots and slashes landing in distinct files,
 * names that cannot reach outside the prefix (egress/carbon_path.h), and
 * statsd's tagged series through telem-egress-statsd and the sink.
 * A carbon that cannot be started fails the test, with its log. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "clock.h"
#include "egress/carbon_path.h"
#include "harness.h"
#include "stats.h"

struct carbon_proc {
	const char *prog;          /* carbon-cache or carbon-relay */
	char dir[200];             /* its carbon.conf, storage, log */
	int line_port, pickle_port, query_port;
	pid_t pid;
};

static struct pl P;
static char tmp[128];
static struct carbon_proc C[3];

static void
setup(void)
{
	pl_init(&P);
	char what[64];
	snprintf(what, sizeof(what), "carbon-%s", P.instance);
	h_tmp_name(tmp, sizeof(tmp), what);
	if (mkdtemp(tmp) == NULL) {
		perror("mkdtemp");
		abort();
	}
}

static void carbon_stop_all(void);

static void
teardown(void)
{
	carbon_stop_all();
	pl_cleanup(&P);
	if (getenv("TELEM_KEEP") == NULL) {
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
		(void)!system(cmd);
	}
}

/* Carbon's start (about a second) and stop (about two, it writes its
 * cache out) dominate; 120 s is far above what a test needs. */
TestSuite(graphite, .init = setup, .fini = teardown, .timeout = 120);

#define START(...) cr_assert(pl_start(&P, __VA_ARGS__, NULL), \
	"supervisor did not come up:\n%s", h_slurp(P.err))
#define WAIT_OUT(text) cr_assert(h_wait_text(P.out, text, 1, 10000), \
	"stdout never held '%s':\n%s\nstderr:\n%s", text, h_slurp(P.out), \
	h_slurp(P.err))

static char *
carbon_log(const struct carbon_proc *cp)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/out.log", cp->dir);
	char *s = h_slurp(path);
	size_t n = strlen(s);
	return n > 3000 ? s + n - 3000 : s;  /* the end says why */
}

/* Write cp's carbon.conf and storage-schemas.conf under tmp/name: every
 * directory under it, loopback and free ports only, no tags, a 1-second
 * retention, and no throttling of creates or updates. A relay forwards
 * with consistent hashing to `destinations` (host:pickle_port:instance). */
static void
carbon_conf(struct carbon_proc *cp, const char *prog, const char *name,
    const char *destinations)
{
	char path[300];
	int port[3];
	memset(cp, 0, sizeof(*cp));
	cp->prog = prog;
	snprintf(cp->dir, sizeof(cp->dir), "%s/%s", tmp, name);
	cr_assert_eq(mkdir(cp->dir, 0700), 0, "mkdir %s: %s", cp->dir, strerror(errno));
	h_tcp_ports(port, 3);
	cp->line_port = port[0];
	cp->pickle_port = port[1];
	cp->query_port = port[2];
	snprintf(path, sizeof(path), "%s/carbon.conf", cp->dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	const char *d = cp->dir;
	fprintf(f, "[cache]\n"
	    "STORAGE_DIR = %s/storage\n"
	    "LOCAL_DATA_DIR = %s/storage/whisper\n"
	    "WHISPER_DIR = %s/storage/whisper\n"
	    "LOG_DIR = %s/log\n"
	    "PID_DIR = %s\n"
	    "USER =\n"
	    "ENABLE_LOGROTATION = False\n"
	    "ENABLE_TAGS = False\n"
	    "MAX_CACHE_SIZE = inf\n"
	    "MAX_UPDATES_PER_SECOND = 100000\n"
	    "MAX_CREATES_PER_MINUTE = inf\n"
	    "LINE_RECEIVER_INTERFACE = 127.0.0.1\n"
	    "LINE_RECEIVER_PORT = %d\n"
	    "ENABLE_UDP_LISTENER = False\n"
	    "PICKLE_RECEIVER_INTERFACE = 127.0.0.1\n"
	    "PICKLE_RECEIVER_PORT = %d\n"
	    "CACHE_QUERY_INTERFACE = 127.0.0.1\n"
	    "CACHE_QUERY_PORT = %d\n"
	    "LOG_LISTENER_CONNECTIONS = True\n",
	    d, d, d, d, d, cp->line_port, cp->pickle_port, cp->query_port);
	if (destinations != NULL)
		fprintf(f, "\n[relay]\n"
		    "LINE_RECEIVER_INTERFACE = 127.0.0.1\n"
		    "LINE_RECEIVER_PORT = %d\n"
		    "PICKLE_RECEIVER_INTERFACE = 127.0.0.1\n"
		    "PICKLE_RECEIVER_PORT = %d\n"
		    "RELAY_METHOD = consistent-hashing\n"
		    "REPLICATION_FACTOR = 1\n"
		    "DESTINATIONS = %s\n"
		    "ENABLE_TAGS = False\n"
		    "USER =\n"
		    "LOG_DIR = %s/log\n"
		    "PID_DIR = %s\n",
		    cp->line_port, cp->pickle_port, destinations, d, d);
	cr_assert_eq(fclose(f), 0);
	snprintf(path, sizeof(path), "%s/storage-schemas.conf", cp->dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "[everything]\npattern = .*\nretentions = 1s:1h\n");
	cr_assert_eq(fclose(f), 0);
}

/* Start `prog --config=DIR/carbon.conf --nodaemon start` (it dies with
 * this test process); no waiting. */
static void
carbon_spawn(struct carbon_proc *cp)
{
	char conf[300], log[300];
	snprintf(conf, sizeof(conf), "--config=%s/carbon.conf", cp->dir);
	snprintf(log, sizeof(log), "%s/out.log", cp->dir);
	pid_t parent = getpid();
	cp->pid = fork();
	cr_assert(cp->pid != -1);
	if (cp->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		int o = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int z = open("/dev/null", O_RDONLY);
		if (o == -1 || z == -1)
			_exit(127);
		dup2(z, 0);
		dup2(o, 1);
		dup2(o, 2);
		execlp(cp->prog, cp->prog, conf, "--nodaemon", "start", (char *)NULL);
		dprintf(2, "cannot run %s: %s (install graphite-carbon: "
		    "tests/deps.sh)\n", cp->prog, strerror(errno));
		_exit(127);
	}
}

/* Wait until cp accepts connections on its line port (and, for a cache,
 * its pickle port, where a relay sends). Fails the test with carbon's own
 * words if it exits or is not up after 30 s. */
static void
carbon_wait_up(struct carbon_proc *cp)
{
	int cache = strcmp(cp->prog, "carbon-cache") == 0;
	for (int i = 0; i < 3000; i++) {
		int st;
		if (waitpid(cp->pid, &st, WNOHANG) == cp->pid) {
			cp->pid = 0;
			cr_assert_fail("%s exited (status %d) instead of starting:\n%s",
			    cp->prog, st, carbon_log(cp));
		}
		if (h_tcp_accepts(cp->line_port) && (!cache || h_tcp_accepts(cp->pickle_port)))
			return;
		h_nap_ms(10);
	}
	cr_assert_fail("%s not listening on %d after 30 s:\n%s", cp->prog,
	    cp->line_port, carbon_log(cp));
}

static void
carbon_start(struct carbon_proc *cp)
{
	carbon_spawn(cp);
	carbon_wait_up(cp);
}

/* SIGTERM to every carbon in `cps`, then wait for each (SIGKILL after
 * 20 s): carbon writes out its cache before it exits. */
static void
carbon_stop(struct carbon_proc *cps, int n)
{
	for (int i = 0; i < n; i++)
		if (cps[i].pid > 0)
			kill(cps[i].pid, SIGTERM);
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < 2000 && cps[i].pid > 0; k++) {
			if (waitpid(cps[i].pid, NULL, WNOHANG) == cps[i].pid)
				cps[i].pid = 0;
			else
				h_nap_ms(10);
		}
		if (cps[i].pid > 0) {
			kill(cps[i].pid, SIGKILL);
			waitpid(cps[i].pid, NULL, 0);
			cps[i].pid = 0;
		}
	}
}

static void
carbon_stop_all(void)
{
	carbon_stop(C, 3);
}

static void
wsp_path(const struct carbon_proc *cp, const char *metric, char *path, size_t cap)
{
	int n = snprintf(path, cap, "%s/storage/whisper/", cp->dir);
	for (const char *m = metric; *m && (size_t)n < cap - 5; m++)
		path[n++] = *m == '.' ? '/' : *m;
	snprintf(path + n, cap - (size_t)n, ".wsp");
}

static int
wsp_exists(const struct carbon_proc *cp, const char *metric)
{
	char path[512];
	wsp_path(cp, metric, path, sizeof(path));
	return access(path, F_OK) == 0;
}

struct point {
	long long ts;
	double v;
};

/* The points whisper-fetch reads from the file at `path` since `from`
 * (its None slots left out); returns how many, the last in *last. */
static int
file_points(const char *path, long long from, struct point *last)
{
	char cmd[1200], line[128];
	if (path[0] == '\0' || access(path, F_OK) != 0)
		return 0;
	/* Not --drop=nulls: whisper-fetch 1.1 then prints wrong times. */
	snprintf(cmd, sizeof(cmd), "whisper-fetch --from=%lld '%s' 2>&1", from, path);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	int n = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		long long ts;
		char val[64];
		if (sscanf(line, "%lld %63s", &ts, val) != 2 || strcmp(val, "None") == 0)
			continue;
		last->ts = ts;
		last->v = strtod(val, NULL);
		n++;
	}
	int st = pclose(f);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed (%d)", cmd, st);
	return n;
}

static int
wsp_points(const struct carbon_proc *cp, const char *metric, long long from,
    struct point *last)
{
	char path[512];
	wsp_path(cp, metric, path, sizeof(path));
	return file_points(path, from, last);
}

/* The file carbon keeps the tagged series `metric` ("a.b;k=v", tags in
 * carbon's order) in: _tagged/H[0..3)/H[3..6)/H.wsp, H the hex sha256
 * of the path (graphite-carbon's TaggedSeries.encode, with its default
 * TAG_HASH_FILENAMES). */
static void
tagged_path(const struct carbon_proc *cp, const char *metric, char *path,
    size_t cap)
{
	char cmd[1000], h[128];
	snprintf(cmd, sizeof(cmd), "printf %%s '%s' | sha256sum", metric);
	cr_assert_eq(h_run(cmd, h, sizeof(h)), 0, "%s", cmd);
	cr_assert_gt(strlen(h), 64, "%s: %s", cmd, h);
	snprintf(path, cap, "%s/storage/whisper/_tagged/%.3s/%.3s/%.64s.wsp",
	    cp->dir, h, h + 3, h);
}

/* wait_value for a tagged series. */
static void
wait_tagged(const struct carbon_proc *cp, const char *metric, long long from,
    double want, int ms)
{
	char path[1000];
	struct point p = { 0, 0 };
	int n = 0;
	for (int waited = 0; waited <= ms; waited += 100) {
		tagged_path(cp, metric, path, sizeof(path));
		n = file_points(path, from, &p);
		if (n > 0 && p.v == want)
			return;
		h_nap_ms(100);
	}
	char cmd[400], files[2048];
	snprintf(cmd, sizeof(cmd), "cd '%s/storage/whisper' && find . -name "
	    "'*.wsp' | head -40", cp->dir);
	h_run(cmd, files, sizeof(files));
	cr_assert_fail("%s: file '%s', %d points, last %.17g, never %.17g\n"
	    "files:\n%s\ntelem stderr:\n%s\n%s log:\n%s", metric, path, n, p.v,
	    want, files, h_slurp(P.err), cp->prog, carbon_log(cp));
}

/* Wait (up to `ms`) until whisper holds `want` for the metric; returns its
 * timestamp. Fails with what it holds and the logs otherwise. */
static long long
wait_value(const struct carbon_proc *cp, const char *metric, long long from,
    double want, int ms)
{
	struct point p = { 0, 0 };
	int n = 0;
	for (int waited = 0; waited <= ms; waited += 100) {
		n = wsp_points(cp, metric, from, &p);
		if (n > 0 && p.v == want)
			return p.ts;
		h_nap_ms(100);
	}
	cr_assert_fail("%s: %d points, last %.17g at %lld, never %.17g\n"
	    "telem stderr:\n%s\n%s log:\n%s", metric, n, p.v, p.ts, want,
	    h_slurp(P.err), cp->prog, carbon_log(cp));
	return -1;
}

static char spec[64];

static const char *
addr(const struct carbon_proc *cp)
{
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", cp->line_port);
	return spec;
}

Test(graphite, values_sent_over_udp_land_in_whisper)
{
	long long t0 = (long long)time(NULL) - 2;
	carbon_conf(&C[0], "carbon-cache", "cache", NULL);
	carbon_start(&C[0]);
	START("-f", "200", "-m", "1024", "-g", addr(&C[0]));
	pl_nc(&P, "a 10\na 55\nb 1000\nb 2000\n");
	WAIT_OUT("[CMA] b 1500\n");
	WAIT_OUT("[CKMS] a 0.99:55\n");
	/* The stdout report is the seed's, unchanged (the two egresses'
	 * blocks in either order). */
	static const char ckms[] = "[CKMS] a 0:10\n[CKMS] a 0.25:10\n"
	    "[CKMS] a 0.5:10\n[CKMS] a 0.75:55\n[CKMS] a 0.9:55\n[CKMS] a 0.99:55\n";
	static const char cma[] = "[CMA] b 1500\n";
	char *out = h_slurp(P.out);
	cr_assert(strstr(out, ckms) && strstr(out, cma) &&
	    strlen(out) == strlen(ckms) + strlen(cma), "%s", out);
	free(out);
	long long tb = wait_value(&C[0], "telem.b.cma", t0, 1500, 20000);
	/* One flush, one timestamp for all six quantiles of it. */
	static const char *const q[] = { "q0", "q25", "q50", "q75", "q90", "q99" };
	static const double want[] = { 10, 10, 10, 55, 55, 55 };
	long long ta = 0;
	for (int i = 0; i < 6; i++) {
		char metric[64];
		snprintf(metric, sizeof(metric), "telem.a.%s", q[i]);
		long long t = wait_value(&C[0], metric, t0, want[i], 20000);
		struct point p;
		cr_assert_eq(wsp_points(&C[0], metric, t0, &p), 1, "%s: one flush, one point", metric);
		if (i == 0)
			ta = t;
		cr_assert_eq(t, ta, "%s at %lld, q0 at %lld", metric, t, ta);
	}
	long long t1 = (long long)time(NULL) + 1;
	cr_assert(ta >= t0 && ta <= t1 && tb >= t0 && tb <= t1,
	    "timestamps %lld %lld outside [%lld, %lld]", ta, tb, t0, t1);
	struct h_status s;
	cr_assert(pl_status(&P, &s), "%s", s.raw);
	struct h_stage *sink = h_find(&s, "carbon");
	cr_assert_not_null(sink, "%s", s.raw);
	cr_assert_eq(sink->sink_dropped, 0, "%s", s.raw);
	cr_assert_str_eq(sink->state, "up");
	cr_assert_str_eq(sink->in_queue, "carbon");
}

Test(graphite, what_is_sent_while_carbon_is_down_arrives_once_it_is_back)
{
	long long t0 = (long long)time(NULL) - 2;
	carbon_conf(&C[0], "carbon-cache", "cache", NULL);
	carbon_start(&C[0]);
	START("-f", "200", "-m", "1024", "-g", addr(&C[0]));
	pl_nc(&P, "c 1000\n");
	wait_value(&C[0], "telem.c.cma", t0, 1000, 20000);

	carbon_stop(&C[0], 1);
	pl_nc(&P, "d 2000\ne 5\n");
	WAIT_OUT("[CMA] d 2000\n");
	WAIT_OUT("[CKMS] e 0.99:5\n");
	cr_assert(!wsp_exists(&C[0], "telem.d.cma") && !wsp_exists(&C[0], "telem.e.q50"));

	/* The sink retries with backoff (at most 10 s apart) and sends what
	 * it kept. */
	carbon_start(&C[0]);
	wait_value(&C[0], "telem.d.cma", t0, 2000, 40000);
	static const char *const q[] = { "q0", "q25", "q50", "q75", "q90", "q99" };
	for (int i = 0; i < 6; i++) {
		char metric[64];
		snprintf(metric, sizeof(metric), "telem.e.%s", q[i]);
		wait_value(&C[0], metric, t0, 5, 40000);
	}
	char *err = h_slurp(P.err);
	char text[128];
	snprintf(text, sizeof(text), "carbon 127.0.0.1:%d: connected", C[0].line_port);
	cr_assert_geq(h_count(err, text), 2, "the sink connected twice:\n%s", err);
	free(err);
	struct h_status s;
	cr_assert(pl_status(&P, &s), "%s", s.raw);
	cr_assert_not_null(h_find(&s, "carbon"), "%s", s.raw);
	cr_assert_eq(h_find(&s, "carbon")->sink_dropped, 0, "%s", s.raw);
}

/* "127.0.0.1:PORT" into g, a port nobody listens on (h_tcp_ports holds
 * it, so no carbon of a test run beside this one can be given it). */
static void
away_addr(char *g, size_t cap)
{
	int port;
	h_tcp_ports(&port, 1);
	snprintf(g, cap, "127.0.0.1:%d", port);
}

/* The carbon stage's slot in the instance's stats segment (common/stats.h),
 * which the supervisor maps and the stage writes: its sink_held, and its
 * pid into *pid unless pid is NULL. */
static _Atomic uint64_t *
carbon_held_word(_Atomic int64_t **pid)
{
	char obj[CHAN_NAME_MAX];
	cr_assert_eq(chan_objname(obj, sizeof(obj), P.instance, "stats"), 0);
	struct stats_seg *seg = stats_attach(obj);
	cr_assert_not_null(seg, "attach %s", obj);
	for (int i = 0; i < STATS_SLOTS; i++)
		if (strncmp(seg->slot[i].stage, "carbon", STATS_NAME_MAX) == 0) {
			if (pid != NULL)
				*pid = &seg->slot[i].pid;
			return &seg->slot[i].sink_held;
		}
	cr_assert_fail("no slot for the stage carbon");
	return NULL;
}

/* The built-in pipeline with -g to a port nobody listens on (its
 * host:port into g), Flush every 200 ms, messages of msg_bytes: the
 * carbon sink holds every line. */
static void
start_carbon_away(const char *msg_bytes, char *g, size_t cap)
{
	away_addr(g, cap);
	START("-f", "200", "-m", msg_bytes, "-g", g);
}

/* Wait (up to 10 s) until the carbon sink holds `lines` lines. */
static void
wait_held(uint64_t lines)
{
	_Atomic uint64_t *held = carbon_held_word(NULL);
	for (int i = 0; i < 1000 && atomic_load(held) != lines; i++)
		h_nap_ms(10);
	cr_assert_eq(atomic_load(held), lines, "the sink holds %llu lines, not %llu\n%s",
	    (unsigned long long)atomic_load(held), (unsigned long long)lines,
	    h_slurp(P.err));
}

Test(graphite, a_full_buffer_drops_the_oldest_lines_and_status_counts_them)
{
	/* Nobody listens: every line waits in a 1024-byte buffer. */
	char g[32];
	away_addr(g, sizeof(g));
	START("-f", "200", "-m", "1024", "-g", g, "--graphite-buffer", "1024");
	/* 60 names x 6 quantiles: "telem.nNN.q0 1 T\n" is 26 bytes, the
	 * other five 27, 161 a name. The newest whole lines that fit in
	 * 1024 bytes: 6 names (966 bytes) and n53's q99 and q90 (54): 38
	 * kept, 322 dropped. */
	char buf[1024];
	size_t len = 0;
	for (int i = 0; i < 60; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "n%02d 1\n", i);
	pl_nc(&P, buf);
	WAIT_OUT("[CKMS] n59 0.99:1\n");
	struct h_status s;
	int seen = 0;
	for (int i = 0; i < 500 && seen != 322; i++) {
		cr_assert(pl_status(&P, &s), "%s", s.raw);
		cr_assert_not_null(h_find(&s, "carbon"), "%s", s.raw);
		seen = (int)h_find(&s, "carbon")->sink_dropped;
		if (seen != 322)
			h_nap_ms(10);
	}
	cr_assert_eq(seen, 322, "%s", s.raw);
	/* The egress goes on reporting; one log line about the drops. */
	pl_nc(&P, "n00 3\n");
	WAIT_OUT("[CKMS] n00 0.99:3\n");
	char *err = h_slurp(P.err);
	cr_assert_eq(h_count(err, "send buffer of 1024 bytes full: oldest lines dropped"),
	    1, "%s", err);
	free(err);
	/* The options reach the sink's command line, and no egress's. */
	const char *stage[] = { "carbon", "ckms", "cma" };
	for (int i = 0; i < 3; i++) {
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "tr '\\0' ' ' </proc/%d/cmdline | grep -q -- "
		    "'--graphite %s --graphite-buffer 1024 '", (int)pl_stage_pid(&P, stage[i]), g);
		cr_assert_eq(system(cmd), i == 0 ? 0 : 256, "%s: graphite options %s",
		    stage[i], i == 0 ? "missing" : "where they do not belong");
	}
}

/* Lines still waiting for carbon when the sink stops (here a restart)
 * are dropped: counted in sink_dropped, and said in one log line. */
Test(graphite, lines_left_at_a_restart_are_counted_and_logged)
{
	char g[32];
	start_carbon_away("1024", g, sizeof(g));
	pl_nc(&P, "a 1\nb 500\n");
	WAIT_OUT("[CKMS] a 0.99:1\n");
	WAIT_OUT("[CMA] b 500\n");
	wait_held(7);  /* the sink has read the reports: 6 + 1 lines */
	char reply[512];
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "restart carbon"), 0,
	    "%s", reply);
	long long n = -1;
	for (int i = 0; i < 500 && n != 7; i++) {
		n = pl_stat(&P, "carbon", "sink_dropped");
		if (n != 7)
			h_nap_ms(10);
	}
	cr_assert_eq(n, 7, "sink_dropped=%lld\n%s", n, h_slurp(P.err));
	char text[128];
	snprintf(text, sizeof(text), "carbon %s: 7 lines not sent before exit "
	    "(carbon unreachable): dropped", g);
	cr_assert(h_wait_text(P.err, text, 1, 5000), "%s", h_slurp(P.err));
}

/* A sink killed with -9 cannot count what it held: the supervisor does,
 * from the sink_held its slot kept (common/stats.h), and says so. */
Test(graphite, lines_held_by_a_killed_sink_are_counted)
{
	char g[32];
	start_carbon_away("1024", g, sizeof(g));
	pl_nc(&P, "a 1\nb 500\n");
	WAIT_OUT("[CKMS] a 0.99:1\n");
	WAIT_OUT("[CMA] b 500\n");
	wait_held(7);  /* the sink has read the reports: 6 + 1 lines */
	pid_t pid = pl_stage_pid(&P, "carbon");
	cr_assert_gt(pid, 0);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	long long n = -1;
	for (int i = 0; i < 500 && n != 7; i++) {
		n = pl_stat(&P, "carbon", "sink_dropped");
		if (n != 7)
			h_nap_ms(10);
	}
	cr_assert_eq(n, 7, "sink_dropped=%lld\n%s", n, h_slurp(P.err));
	cr_assert(h_wait_text(P.err, "stage carbon held 7 carbon lines unsent: "
	    "counted in sink_dropped", 1, 5000), "%s", h_slurp(P.err));
	/* Restarted, the sink holds none of them: still 7 after a while. */
	h_nap_ms(500);
	cr_assert_eq(pl_stat(&P, "carbon", "sink_dropped"), 7);
}

/* Run pid (0: this process) on that CPU only. */
static void
pin(pid_t pid, int cpu)
{
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	cr_assert_eq(sched_setaffinity(pid, sizeof(one), &one), 0,
	    "sched_setaffinity %d to CPU %d: %s", (int)pid, cpu, strerror(errno));
}

/* A sink killed in the middle of a message: the lines its entries were to
 * make are in sink_held from the moment the sink took it
 * (egress/sink_carbon_main.c sc_msg), so the supervisor counts them all,
 * not only those queued before the kill. 50 names at 1 in one datagram
 * make one ckms report of 300 lines (its sum and count are not lines) in
 * 2048-byte messages of some 50 entries, which the stopped sink's queue
 * holds whole (so that no egress waits on it: a sink whose receive wakes
 * a waiting writer can lose the CPU before it counts what it took). Each
 * sink, stopped as soon as it is started and let go on a CPU of its own,
 * is then killed -9 by this test, spinning on another, at its first store
 * of sink_held, while it makes the lines of the first message it took,
 * up to three times (fewer when a killed sink had taken every message
 * left); all 300 lines are counted in the end. */
Test(graphite, a_sink_killed_in_the_middle_of_a_message_counts_all_its_lines)
{
	char g[32];
	start_carbon_away("2048", g, sizeof(g));
	_Atomic int64_t *pid_word;
	_Atomic uint64_t *held = carbon_held_word(&pid_word);
	pid_t pid = pl_stage_pid(&P, "carbon");
	cr_assert_gt(pid, 0);
	cr_assert_eq(kill(pid, SIGSTOP), 0);
	enum { N = 50, LINES = 6 * N };
	char buf[1024];
	size_t len = 0;
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "k%02d 1\n", i);
	pl_sendto(&P, buf, len);
	WAIT_OUT("[CKMS] k49 0.99:1\n");
	/* The report's messages follow its stdout. */
	for (int i = 0; i < 1000 && pl_stat(&P, "carbon", "depth") < 6; i++)
		h_nap_ms(10);
	h_nap_ms(300);
	char *out = h_slurp(P.out);
	cr_assert_eq(h_count(out, "[CKMS] "), LINES, "not one report:\n%s", out);
	free(out);
	long long depth = pl_stat(&P, "carbon", "depth");
	/* Not full (an mqueue holds 10): no egress waits to send. */
	cr_assert(depth >= 6 && depth < 10, "%lld messages queued", depth);
	cpu_set_t cpus;
	cr_assert_eq(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
	int cpu[2], ncpu = 0;
	for (int i = 0; i < CPU_SETSIZE && ncpu < 2; i++)
		if (CPU_ISSET(i, &cpus))
			cpu[ncpu++] = i;
	cr_assert_eq(ncpu, 2, "the test needs two CPUs");
	pin(0, cpu[0]);
	pin(pid, cpu[1]);
	cr_assert_eq(kill(pid, SIGCONT), 0);
	int kills = 0;
	for (int round = 0; round < 3; round++) {
		long long end = clock_ms() + 10000;
		while (atomic_load(held) == 0 && clock_ms() < end)
			;
		cr_assert_gt(atomic_load(held), 0, "round %d: the sink never held "
		    "lines\n%s", round, h_slurp(P.err));
		cr_assert_gt(pid, 0);
		cr_assert_eq(kill(pid, SIGKILL), 0);
		kills++;
		/* The supervisor settles the slot (sink_held 0), then starts
		 * another sink, whose first store the next round waits for. */
		pid_t old = pid;
		int64_t p;
		end = clock_ms() + 10000;
		while (((p = atomic_load(pid_word)) <= 0 || p == old) &&
		    clock_ms() < end)
			;
		cr_assert(p > 0 && p != old, "round %d: the sink was not restarted",
		    round);
		pid = (pid_t)p;
		/* Stopped at once, while it is still starting, so that it
		 * takes its first message only once it is pinned and this
		 * test spins again: left running through the looks below, it
		 * could be well into the messages when the next round began,
		 * and a kill then can fall between a receive and its store. */
		cr_assert_eq(kill(pid, SIGSTOP), 0, "round %d: %s", round,
		    strerror(errno));
		/* It took a message before it stopped (no kill), or the
		 * killed one took every message left (it takes several at a
		 * time): nothing for another round. */
		if (atomic_load(held) != 0 ||
		    pl_stat(&P, "carbon", "depth") == 0) {
			cr_assert_eq(kill(pid, SIGCONT), 0);
			break;
		}
		pin(pid, cpu[1]);
		cr_assert_eq(kill(pid, SIGCONT), 0);
	}
	for (int i = 0; i < 500 && pl_stat(&P, "carbon", "depth") != 0; i++)
		h_nap_ms(10);
	h_nap_ms(200);
	/* A clean stop drops and counts what the last sink holds. */
	char reply[512];
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "restart carbon"), 0,
	    "%s", reply);
	long long n = -1;
	for (int i = 0; i < 500 && n != LINES; i++) {
		n = pl_stat(&P, "carbon", "sink_dropped");
		if (n != LINES)
			h_nap_ms(10);
	}
	char *err = h_slurp(P.err);
	cr_assert_eq(n, LINES, "sink_dropped=%lld of %d lines\n%s", n, LINES, err);
	cr_assert_eq(h_count(err, "stage carbon held "), kills, "%s", err);
	cr_log_info("%d kills, all %d lines counted", kills, LINES);
	free(err);
}

Test(graphite, past_one_machine_a_relay_stores_every_metric_in_exactly_one_cache)
{
	long long t0 = (long long)time(NULL) - 2;
	carbon_conf(&C[0], "carbon-cache", "cache-a", NULL);
	carbon_conf(&C[1], "carbon-cache", "cache-b", NULL);
	char dest[128];
	snprintf(dest, sizeof(dest), "127.0.0.1:%d:a, 127.0.0.1:%d:b",
	    C[0].pickle_port, C[1].pickle_port);
	carbon_conf(&C[2], "carbon-relay", "relay", dest);
	carbon_spawn(&C[0]);
	carbon_spawn(&C[1]);
	carbon_wait_up(&C[0]);
	carbon_wait_up(&C[1]);
	carbon_start(&C[2]);
	START("-f", "200", "-m", "1024", "-g", addr(&C[2]), "--graphite-prefix", "site1");
	pl_nc(&P, "l0 7\nl1 7\nl2 7\nl3 7\nl4 7\nl5 7\nl6 7\nl7 7\n"
	    "h0 500\nh1 500\nh2 500\nh3 500\nh4 500\nh5 500\nh6 500\nh7 500\n");
	WAIT_OUT("[CKMS] l7 0.99:7\n");
	WAIT_OUT("[CMA] h7 500\n");

	/* 8 names x 6 quantiles + 8 averages. */
	static const char *const q[] = { "q0", "q25", "q50", "q75", "q90", "q99" };
	char metric[56][48];
	int n = 0;
	for (int i = 0; i < 8; i++) {
		for (int k = 0; k < 6; k++)
			snprintf(metric[n++], sizeof(metric[0]), "site1.l%d.%s", i, q[k]);
		snprintf(metric[n++], sizeof(metric[0]), "site1.h%d.cma", i);
	}
	int in[2] = { 0, 0 };
	for (int i = 0; i < n; i++) {
		int where = -1;
		for (int k = 0; k < 3000 && where < 0; k++) {
			if (wsp_exists(&C[0], metric[i]))
				where = 0;
			else if (wsp_exists(&C[1], metric[i]))
				where = 1;
			else
				h_nap_ms(10);
		}
		cr_assert(where >= 0, "%s stored nowhere\nrelay log:\n%s", metric[i],
		    carbon_log(&C[2]));
		wait_value(&C[where], metric[i], t0, metric[i][6] == 'l' ? 7 : 500, 20000);
		in[where]++;
	}
	/* Now that all arrived: none is in the other cache too. */
	for (int i = 0; i < n; i++)
		cr_assert(!(wsp_exists(&C[0], metric[i]) && wsp_exists(&C[1], metric[i])),
		    "%s stored in both caches", metric[i]);
	cr_assert(in[0] > 0 && in[1] > 0, "the relay used one cache only: %d + %d",
	    in[0], in[1]);
	cr_log_info("cache a holds %d metrics, cache b %d", in[0], in[1]);
}

Test(graphite, bad_graphite_options_are_one_line_and_exit_2)
{
	char exe[256], cmd[512];
	h_bin("telem-supervisor", exe, sizeof(exe));
	snprintf(cmd, sizeof(cmd), "%s -h | grep -q -- '-g host:port'", exe);
	cr_assert_eq(system(cmd), 0);
	static const char *const bad[] = {
		"-g x", "-g :2003", "-g 127.0.0.1:", "-g 127.0.0.1:0",
		"-g 127.0.0.1:65536", "-g ::1:2003", "-g [::1]", "-g",
		"-g 127.0.0.1:2003 --graphite-prefix ''",
		"-g 127.0.0.1:2003 --graphite-prefix 'a b'",
		"-g 127.0.0.1:2003 --graphite-prefix 'a;b=c'",
		"-g 127.0.0.1:2003 --graphite-buffer 1023",
		"-g 127.0.0.1:2003 --graphite-buffer 1073741825",
		"-g 127.0.0.1:2003 --graphite-buffer x",
		"--graphite-prefix p", "--graphite-buffer 4096",
	};
	char why[4096];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(h_refuses(&P, bad[i], why, sizeof(why)), "%s", why);
}

/* The whisper file of `name`'s stat under prefix telem, as carbon stores
 * the sink's path for it. */
static void
encoded_metric(const char *name, const char *stat, char *metric, size_t cap)
{
	char path[CARBON_PATH_MAX];
	cr_assert_gt(carbon_path_encode(name, strlen(name), path, sizeof(path)), 0);
	snprintf(metric, cap, "telem.%s.%s", path, stat);
}

Test(graphite, names_that_collided_land_in_distinct_files_and_stay_under_the_prefix)
{
	long long t0 = (long long)time(NULL) - 2;
	carbon_conf(&C[0], "carbon-cache", "cache", NULL);
	carbon_start(&C[0]);
	START("-f", "200", "-m", "1024", "-g", addr(&C[0]));
	/* Taken unchanged, these three were one file, telem/col/x/q50.wsp,
	 * and ../ and /-led names walked out of telem/. */
	static const char *const name[] = { "col.x", "col/x", ".col..x.",
	    "../../escaped", "/abs", "a;tag=x", "..", "col%2Fx" };
	static const double want[] = { 10, 90, 50, 20, 30, 40, 60, 70 };
	enum { N = sizeof(name) / sizeof(name[0]) };
	char buf[512];
	size_t len = 0;
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s %g\n",
		    name[i], want[i]);
	pl_nc(&P, buf);
	WAIT_OUT("[CKMS] col%2Fx 0.99:70\n");
	char metric[N][CARBON_PATH_MAX + 16];
	for (int i = 0; i < N; i++) {
		encoded_metric(name[i], "q50", metric[i], sizeof(metric[i]));
		wait_value(&C[0], metric[i], t0, want[i], 20000);
	}
	/* Eight names, eight files, each with its own value. */
	for (int i = 0; i < N; i++)
		for (int j = 0; j < i; j++)
			cr_assert_str_neq(metric[i], metric[j]);
	cr_assert(wsp_exists(&C[0], "telem.col.x.q50"), "the plain name is unchanged");
	/* Every file carbon made is under storage/whisper/telem/, and
	 * nothing outside it holds a whisper file. */
	char cmd[600], out[256];
	snprintf(cmd, sizeof(cmd), "cd '%s' && find . -name '*.wsp' | grep -v "
	    "'^./storage/whisper/telem/' | head -5", C[0].dir);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	size_t n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	pclose(f);
	cr_assert_str_eq(out, "", "whisper files outside the prefix:\n%s", out);
	snprintf(cmd, sizeof(cmd), "test $(find '%s/storage/whisper/telem' -name "
	    "q50.wsp | wc -l) -eq %d", C[0].dir, N);
	cr_assert_eq(system(cmd), 0, "not one q50 file per name");
}

/* statsd -> telem-egress-statsd -> telem-sink-carbon -> carbon-cache: an
 * entry's tags follow its path as Graphite's tagged-series form, as the
 * statsd egress writes them itself (egress/carbon_path.h), so two series
 * that differ only in a tag keep a file each. */
static const char statsd_sink_conf[] =
    "[pipeline]\n"
    "flush_ms = 200\n"
    "[stage ingest]\n"
    "exec = telem-ingest\n"
    "args = --protocol statsd\n"
    "udp = 127.0.0.1:%d\n"
    "out = statsd\n"
    "[stage statsd]\n"
    "exec = telem-egress-statsd\n"
    "args = --histogram lat:10,inf\n"
    "out = carbon\n"
    "flush = yes\n"
    "[stage carbon]\n"
    "exec = telem-sink-carbon\n"
    "args = --graphite 127.0.0.1:%d\n"
    "state = no\n";

/* carbon-cache, and the pipeline of statsd_sink_conf sending to it;
 * returns a time before anything was sent. */
static long long
start_statsd_sink(void)
{
	long long t0 = (long long)time(NULL) - 2;
	carbon_conf(&C[0], "carbon-cache", "cache", NULL);
	carbon_start(&C[0]);
	char conf[256];
	pl_conf(&P, "statsd-carbon.conf", conf, sizeof(conf), statsd_sink_conf,
	    P.port, C[0].line_port);
	cr_assert(pl_start_conf(&P, conf, "-m", "1024", NULL),
	    "supervisor did not come up:\n%s", h_slurp(P.err));
	return t0;
}

Test(graphite, statsd_tags_through_the_sink_keep_series_apart)
{
	long long t0 = start_statsd_sink();
	/* Two series of one name, and tags whose key order ("a", "a.b") is
	 * not carbon's ("a.b=1" before "a=2"). */
	pl_nc(&P, "tg:1|g|#k:v\ntg:2|g|#k:w\nmt:3|g|#a:2,a.b:1\nplain:4|g\n");
	/* The statsd egress's own lines (stdout: it has no --graphite). */
	WAIT_OUT("stats.gauges.tg;k=v 1 ");
	WAIT_OUT("stats.gauges.tg;k=w 2 ");
	WAIT_OUT("stats.gauges.mt;a.b=1;a=2 3 ");
	/* The sink's: the same tags after telem.NAME.value. */
	wait_tagged(&C[0], "telem.tg.value;k=v", t0, 1, 20000);
	wait_tagged(&C[0], "telem.tg.value;k=w", t0, 2, 20000);
	wait_tagged(&C[0], "telem.mt.value;a.b=1;a=2", t0, 3, 20000);
	wait_value(&C[0], "telem.plain.value", t0, 4, 20000);
	cr_assert(!wsp_exists(&C[0], "telem.tg.value"),
	    "the tagged series also went to the untagged file");
	char *log = carbon_log(&C[0]);
	cr_assert_null(strstr(log, "Error parsing metric"), "%s", log);
	struct h_status s;
	cr_assert(pl_status(&P, &s), "%s", s.raw);
	cr_assert_not_null(h_find(&s, "carbon"), "%s", s.raw);
	cr_assert_eq(h_find(&s, "carbon")->sink_dropped, 0, "%s", s.raw);
	cr_assert_eq(h_find(&s, "carbon")->bad, 0, "%s", s.raw);
}

/* --histogram's fields, "histogram.bin_10", reach carbon as one level,
 * histogram%2Ebin_10, so no name's path can meet them; the median's copy
 * as quantile 0.5 (for Prometheus) is not sent, its value is the median. */
Test(graphite, statsd_histogram_bins_through_the_sink_are_one_level)
{
	long long t0 = start_statsd_sink();
	/* A timer "lat" with a bin field, and a gauge whose name ends where
	 * the timer's bin path would begin ("lat.histogram" + "bin_10"). */
	pl_nc(&P, "lat:5|ms\nlat:20|ms\nlat:7|ms|#k:v\nlat.histogram:9|g\n");
	WAIT_OUT("stats.timers.lat.histogram.bin_10 1 ");
	WAIT_OUT("stats.timers.lat.histogram.bin_inf 1 ");
	wait_value(&C[0], "telem.lat.histogram%2Ebin_10", t0, 1, 20000);
	wait_value(&C[0], "telem.lat.histogram%2Ebin_inf", t0, 1, 20000);
	wait_tagged(&C[0], "telem.lat.histogram%2Ebin_10;k=v", t0, 1, 20000);
	wait_value(&C[0], "telem.lat.median", t0, 12.5, 20000);
	wait_value(&C[0], "telem.lat.histogram.value", t0, 9, 20000);
	cr_assert(!wsp_exists(&C[0], "telem.lat.q0%2E5"), "the median's copy was sent");
	struct h_status s;
	cr_assert(pl_status(&P, &s), "%s", s.raw);
	cr_assert_not_null(h_find(&s, "carbon"), "%s", s.raw);
	cr_assert_eq(h_find(&s, "carbon")->sink_dropped, 0, "%s", s.raw);
}
