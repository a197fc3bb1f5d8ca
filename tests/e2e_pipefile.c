/* e2e_pipefile.c - pipeline files run for real (supervisor/pipeline.h):
 * the examples with `nc -u -q0`, a 9-stage pipeline with a stage of our
 * own (examples/stages/prefix_filter.c) and its books, files the real
 * binary refuses, reload under load, swap with blanks in its words, and
 * msg_bytes = auto against the user's RLIMIT_MSGQUEUE budget. Both
 * transports (TELEM_TRANSPORT). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "supervisor/pipeline.h"

static struct pl P;

/* Queues this test made to use up the budget: removed whatever happens. */
static char fillers[8][64];
static int nfillers;

static void setup(void) { pl_init(&P); }

static void
teardown(void)
{
	for (int i = 0; i < nfillers; i++)
		mq_unlink(fillers[i]);
	nfillers = 0;
	pl_cleanup(&P);
}

TestSuite(pipefile, .init = setup, .fini = teardown, .timeout = 120);

static void
nap(int ms)
{
	usleep((useconds_t)ms * 1000);
}

static char reply_buf[16384];

#define ctl(...) pl_ctlf(&P, reply_buf, sizeof(reply_buf), __VA_ARGS__)

static void
status(struct h_status *s)
{
	cr_assert(pl_status(&P, s), "status failed:\n%s\n%s", s->raw, h_slurp(P.err));
}

/* The same stages as in s0, in the same order, with the same pids: a
 * refused or empty reload touched nothing. */
static void
assert_untouched(const struct h_status *s0)
{
	struct h_status s;
	status(&s);
	cr_assert_eq(s.n, s0->n, "%s", s.raw);
	for (int i = 0; i < s.n; i++) {
		cr_assert_str_eq(s.st[i].name, s0->st[i].name, "%s", s.raw);
		cr_assert_eq(s.st[i].pid, s0->st[i].pid, "%s touched:\n%s",
		    s.st[i].name, s.raw);
	}
}

static struct h_stage *
stage(struct h_status *s, const char *name)
{
	struct h_stage *t = h_find(s, name);
	cr_assert_not_null(t, "no stage %s in status:\n%s", name, s->raw);
	return t;
}

/* A file of the repository with every "1990" (its UDP port) replaced by
 * our port, into our folder. */
static const char *
example(const char *file, char *path, size_t cap)
{
	char *text = h_slurp(file);
	cr_assert(text[0] != '\0', "%s is missing or empty", file);
	char port[16], *out = malloc(strlen(text) * 2 + 1), *o = out;
	snprintf(port, sizeof(port), "%d", P.port);
	for (const char *t = text; *t != '\0';) {
		if (strncmp(t, "1990", 4) == 0) {
			o += sprintf(o, "%s", port);
			t += 4;
		} else {
			*o++ = *t++;
		}
	}
	*o = '\0';
	const char *base = strrchr(file, '/');
	pl_conf(&P, base != NULL ? base + 1 : file, path, cap, "%s", out);
	free(text);
	free(out);
	return path;
}

#define START_CONF(conf, ...) cr_assert(pl_start_conf(&P, conf, __VA_ARGS__, NULL), \
	"supervisor did not come up with %s:\n%s", conf, h_slurp(P.err))
#define WAIT_OUT(text, n) cr_assert(h_wait_text(P.out, text, n, 5000), \
	"stdout never held %d x '%s':\n%s\nstderr:\n%s", n, text, \
	h_slurp(P.out), h_slurp(P.err))

/* ---- the built-in pipeline as a file ---------------------------------- */

Test(pipefile, print_pipeline_is_the_seed_example_and_creates_nothing)
{
	char cmd[1024], exe[256];
	h_bin("telem-supervisor", exe, sizeof(exe));
	snprintf(cmd, sizeof(cmd), "%s -i %s --print-pipeline >%s 2>&1", exe,
	    P.instance, P.out);
	cr_assert_eq(system(cmd), 0, "%s", h_slurp(P.out));
	char *printed = h_slurp(P.out), *seed = h_slurp("examples/seed.conf");
	cr_assert_str_eq(printed, seed, "--print-pipeline differs from examples/seed.conf");
	free(printed);
	free(seed);
	/* The options shape it. */
	snprintf(cmd, sizeof(cmd), "%s -i %s -l 50 -e 0.05 -p 4321 -H ::1 -t shm "
	    "-m 1024 -f 250 --max-names 77 --print-pipeline >%s 2>&1", exe,
	    P.instance, P.out);
	cr_assert_eq(system(cmd), 0, "%s", h_slurp(P.out));
	char *shaped = h_slurp(P.out);
	static const char *const want[] = {
		"transport = shm\n", "msg_bytes = 1024\n", "flush_ms = 250\n",
		"udp = [::1]:4321\n", "args = --keep-below 50\n",
		"args = --keep-above 50\n", "args = --error 0.05 --max-names 77\n",
		"args = --max-names 77\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert(strstr(shaped, want[i]) != NULL, "no '%s' in:\n%s", want[i], shaped);
	free(shaped);
	cr_assert_eq(pl_objects_left(&P), 0);
}

Test(pipefile, seed_conf_gives_the_seed_transcript)
{
	char conf[256];
	example("examples/seed.conf", conf, sizeof(conf));
	START_CONF(conf, "-f", "200", "-m", "1024");
	cr_assert(pl_seed_session(&P), "the session's reports did not come:\n%s"
	    "\nstderr:\n%s", h_slurp(P.out), h_slurp(P.err));
	int st = pl_signal_wait(&P, SIGTERM, 5000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_str_eq(h_slurp(P.out), H_SEED_OUT);
	cr_assert_eq(pl_objects_left(&P), 0, "objects left after a stop");
}

Test(pipefile, fanout_conf_both_ckms_egresses_report)
{
	char conf[256];
	example("examples/fanout.conf", conf, sizeof(conf));
	START_CONF(conf, "-f", "200", "-m", "1024");
	struct h_status s;
	status(&s);
	cr_assert_eq(s.n, 8, "fanout.conf has 8 stages:\n%s", s.raw);
	pl_nc(&P, "a 5\n");
	/* ckms and ckms-fine both report a; cma-tiny gets it from tiny. */
	WAIT_OUT("[CKMS] a 0.5:5\n", 2);
	WAIT_OUT("[CMA] a 5\n", 1);
	pl_nc(&P, "b 700\n");
	WAIT_OUT("[CMA] b 700\n", 1);
	status(&s);
	cr_assert_eq(stage(&s, "ckms")->in, 1, "%s", s.raw);
	cr_assert_eq(stage(&s, "ckms-fine")->in, 1, "%s", s.raw);
	cr_assert_eq(stage(&s, "cma-tiny")->in, 1, "%s", s.raw);
	cr_assert_eq(stage(&s, "cma")->in, 1, "%s", s.raw);
	cr_assert_str_eq(stage(&s, "ckms-fine")->args, "\"--error 0.001\"", "%s", s.raw);
	int st = pl_signal_wait(&P, SIGTERM, 8000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_eq(pl_objects_left(&P), 0);
}

/* ---- refused files ---------------------------------------------------- */

struct bad {
	const char *text;
	int line;
	const char *what;   /* a piece of the message */
};

static const struct bad bads[] = {
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1:1\n[wat]\n", 4, "section" },
	{ "[pipeline]\ncolour = red\n", 2, "colour" },
	{ "[stage a]\nudp = 127.0.0.1:1\n", 1, "exec" },
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1:1\nout = b\n", 4, "b" },
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1:1\nout = b\n"
	  "[stage b]\nexec = telem-filter\nout = c\n[stage c]\nexec = telem-filter\nout = b\n",
	  0, "cycle" },
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1:1\n[stage a]\nexec = telem-ingest\n",
	  4, "a" },
	{ "[stage Ab]\nexec = telem-ingest\nudp = 127.0.0.1:1\n", 1, "Ab" },
	{ "[stage abcdefghijklmnop]\nexec = telem-ingest\nudp = 127.0.0.1:1\n", 1,
	  "abcdefghijklmnop" },
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1:1\nflush = yes\n", 4, "flush" },
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1\n", 3, "udp" },
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1:70000\n", 3, "udp" },
	{ "[stage a]\nexec = telem-ingest\nudp = [::1:5\n", 3, "udp" },
	{ "[pipeline]\ntransport = pigeon\n", 2, "transport" },
	{ "[pipeline]\nmsg_bytes = 100\n", 2, "msg_bytes" },
	{ "[pipeline]\nmsg_bytes = 2000000\n", 2, "msg_bytes" },
	{ "[pipeline]\nflush_ms = 0\n", 2, "flush_ms" },
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1:1\nflush = maybe\n", 4, "flush" },
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1:1\nargs = \"open\n", 4, "args" },
	{ "[stage a]\nexec = telem-ingest\nexec = telem-ingest\nudp = 127.0.0.1:1\n", 3, "exec" },
	{ "[stage stats]\nexec = telem-ingest\nudp = 127.0.0.1:1\n", 1, "stats" },
	{ "[stage a]\nexec = telem-no-such-program\nudp = 127.0.0.1:1\n", 2, "telem-no-such-program" },
	{ "[stage a]\nexec = telem-ingest\n", 1, "input" },
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1:1\nout = a\n", 4, "a" },
	{ "[stage a]\nexec = telem-ingest\nudp = 127.0.0.1:1\n"
	  "[stage b]\nexec = telem-ingest\nudp = 127.0.0.1:1\n", 6, "udp" },
	{ "stray = line\n", 1, "" },
};

Test(pipefile, invalid_files_are_refused_with_file_and_line)
{
	char path[256], why[4096];
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		char name[32], args[512];
		snprintf(name, sizeof(name), "bad%zu.conf", i);
		pl_conf(&P, name, path, sizeof(path), "%s", bads[i].text);
		snprintf(args, sizeof(args), "-i %s -c %s", P.instance, path);
		cr_assert(h_refuses(&P, args, why, sizeof(why)), "case %zu: %s", i, why);
		char *err = h_slurp(P.err), want[320];
		if (bads[i].line > 0)
			snprintf(want, sizeof(want), "telem-supervisor: %s:%d: ", path,
			    bads[i].line);
		else
			snprintf(want, sizeof(want), "telem-supervisor: %s:", path);
		cr_assert(strncmp(err, want, strlen(want)) == 0,
		    "case %zu: wanted '%s...', got: %s", i, want, err);
		cr_assert(strstr(err, bads[i].what) != NULL,
		    "case %zu: '%s' not named in: %s", i, bads[i].what, err);
		free(err);
		cr_assert_eq(pl_objects_left(&P), 0, "case %zu created objects", i);
	}
	cr_assert_geq(sizeof(bads) / sizeof(bads[0]), 20);
}

Test(pipefile, built_in_shaping_options_refused_with_a_file)
{
	char conf[256], why[4096], args[512];
	example("examples/seed.conf", conf, sizeof(conf));
	static const char *const opts[] = { "-l 5", "-e 0.1", "-H 127.0.0.1", "-p 5",
	    "-g 127.0.0.1:2003", "--max-names 5" };
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		snprintf(args, sizeof(args), "-i %s -c %s %s", P.instance, conf, opts[i]);
		cr_assert(h_refuses(&P, args, why, sizeof(why)), "%s", why);
	}
	snprintf(args, sizeof(args), "-i %s -c %s/none.conf", P.instance, P.dir);
	cr_assert(h_refuses(&P, args, why, sizeof(why)), "%s", why);
	cr_assert_eq(pl_objects_left(&P), 0);
}

/* ---- nine stages, one of our own --------------------------------------- */

static const char nine[] =
    "[pipeline]\nflush_ms = 200\n\n"
    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:%d\nout = low high web tiny\n\n"
    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\nout = ckms ckms-fine\nflush = yes\n\n"
    "[stage high]\nexec = telem-filter\nargs = --keep-above 100\nout = cma\nflush = yes\n\n"
    "[stage web]\nexec = telem-example-prefix\nargs = --prefix web.\nout = cma-web\nflush = yes\n\n"
    "[stage tiny]\nexec = telem-filter\nargs = --keep-below 10\nout = cma-web\nflush = yes\n\n"
    "[stage ckms]\nexec = telem-egress-ckms\n\n"
    "[stage ckms-fine]\nexec = telem-egress-ckms\nargs = --error 0.001\n\n"
    "[stage cma]\nexec = telem-egress-cma\n\n"
    "[stage cma-web]\nexec = telem-egress-cma\n";

struct want {
	const char *name;
	long long in, out;
};

/* `telemctl books` says balanced (docs/design.md §8), within 10 s: an
 * egress books its records out once it saved them. */
static void
assert_balanced(void)
{
	int rc = -1;
	for (int t = 0; t < 500; t++, nap(20))
		if ((rc = ctl("books")) == 0 && strstr(reply_buf, "\nbalanced\n") != NULL)
			return;
	cr_assert_fail("books not balanced (telemctl exit %d):\n%s", rc, reply_buf);
}

/* Wait (30 s at most) until every stage shows in and out as wanted, its
 * queue is empty and nothing is lost; then assert it, so a pipeline that
 * never balances fails with the figures. */
static void
wait_books(const struct want *w, size_t n, struct h_status *s)
{
	for (int t = 0; t < 1500; t++, nap(20)) {
		status(s);
		int ok = 1;
		for (size_t i = 0; i < n && ok; i++) {
			struct h_stage *x = h_find(s, w[i].name);
			ok = x != NULL && x->in == w[i].in && x->out == w[i].out &&
			    x->depth == 0 && x->lost == 0;
		}
		if (ok)
			break;
	}
	for (size_t i = 0; i < n; i++) {
		struct h_stage *x = stage(s, w[i].name);
		cr_assert_eq(x->in, w[i].in, "%s in:\n%s", w[i].name, s->raw);
		cr_assert_eq(x->out, w[i].out, "%s out:\n%s", w[i].name, s->raw);
		cr_assert_eq(x->lost, 0, "%s lost:\n%s", w[i].name, s->raw);
		cr_assert_eq(x->depth, 0, "%s depth:\n%s", w[i].name, s->raw);
		cr_assert_eq(x->bad, 0, "%s bad:\n%s", w[i].name, s->raw);
	}
}

Test(pipefile, nine_stages_run_and_their_books_balance)
{
	char conf[256];
	pl_conf(&P, "nine.conf", conf, sizeof(conf), nine, P.port);
	START_CONF(conf, "-m", "1024");
	struct h_status s;
	status(&s);
	cr_assert_eq(s.n, 9, "%s", s.raw);
	/* File order, each with its own queue and arguments. */
	static const char *const order[] = { "ingest", "low", "high", "web", "tiny",
	    "ckms", "ckms-fine", "cma", "cma-web" };
	for (int i = 0; i < 9; i++) {
		cr_assert_str_eq(s.st[i].name, order[i], "%s", s.raw);
		cr_assert_str_eq(s.st[i].in_queue, i == 0 ? "-" : order[i], "%s", s.raw);
		cr_assert_str_eq(s.st[i].state, "up", "%s", s.raw);
	}
	cr_assert_str_eq(stage(&s, "web")->args, "\"--prefix web.\"", "%s", s.raw);
	const char dgram[] = "web.a 5\nweb.b 500\nx 50\n";
	const long n = 500;
	for (long i = 0; i < n; i++) {
		pl_sendto(&P, dgram, sizeof(dgram) - 1);
		if (i % 50 == 49)
			nap(5);
	}
	/* ingest 3n events; low keeps <= 100 (web.a, x), high >= 100 (web.b),
	 * web the names starting web. (web.a, web.b), tiny <= 10 (web.a);
	 * cma-web reads what web and tiny send. */
	const struct want w[] = {
		{ "ingest", 3 * n, 3 * n },
		{ "low", 3 * n, 2 * n }, { "high", 3 * n, n },
		{ "web", 3 * n, 2 * n }, { "tiny", 3 * n, n },
		{ "ckms", 2 * n, 2 * n }, { "ckms-fine", 2 * n, 2 * n },
		{ "cma", n, n }, { "cma-web", 3 * n, 3 * n },
	};
	wait_books(w, sizeof(w) / sizeof(w[0]), &s);
	assert_balanced();
	cr_assert_eq(stage(&s, "web")->filtered, n, "%s", s.raw);
	WAIT_OUT("[CMA] web.a 5\n", 1);
	WAIT_OUT("[CKMS] x 0.5:50\n", 2);
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", h_slurp(P.err));
	cr_assert_eq(pl_objects_left(&P), 0);
}

/* ---- reload ----------------------------------------------------------- */

static const char before[] =
    "[pipeline]\nflush_ms = 200\n"
    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:%d\nout = low high tiny\n"
    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\nout = ckms\nflush = yes\n"
    "[stage high]\nexec = telem-filter\nargs = --keep-above 100\nout = cma\nflush = yes\n"
    "[stage tiny]\nexec = telem-filter\nargs = --keep-below 10\nout = cma-tiny\nflush = yes\n"
    "[stage ckms]\nexec = telem-egress-ckms\n"
    "[stage cma]\nexec = telem-egress-cma\n"
    "[stage cma-tiny]\nexec = telem-egress-cma\n";

/* The pipeline of `before` in p.conf, up, and its status in *s0. */
static void
start_before(char *conf, size_t cap, struct h_status *s0)
{
	pl_conf(&P, "p.conf", conf, cap, before, P.port);
	START_CONF(conf, "-m", "1024");
	status(s0);
}

/* An egress added (ckms2), a filter and its egress removed (tiny,
 * cma-tiny), a filter's limit changed (low); ingest loses an out. */
static const char after[] =
    "[pipeline]\nflush_ms = 200\n"
    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:%d\nout = low high\n"
    "[stage low]\nexec = telem-filter\nargs = --keep-below 50\nout = ckms ckms2\nflush = yes\n"
    "[stage high]\nexec = telem-filter\nargs = --keep-above 100\nout = cma\nflush = yes\n"
    "[stage ckms]\nexec = telem-egress-ckms\n"
    "[stage ckms2]\nexec = telem-egress-ckms\nargs = --error 0.001\n"
    "[stage cma]\nexec = telem-egress-cma\n";

/* Line 5 names a stage that does not exist. */
static const char broken[] =
    "[pipeline]\nflush_ms = 200\n"
    "[stage ingest]\nexec = telem-ingest\nout = low nowhere\nudp = 127.0.0.1:%d\n"
    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\n";

static pid_t
sender(long datagrams)
{
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		const char d[] = "r 5\nr 500\n";
		for (long i = 0; i < datagrams; i++) {
			pl_sendto(&P, d, sizeof(d) - 1);
			usleep(400);
		}
		_exit(0);
	}
	return pid;
}

Test(pipefile, reload_under_load_keeps_unchanged_stages_and_every_record)
{
	char conf[256];
	pl_conf(&P, "p.conf", conf, sizeof(conf), before, P.port);
	START_CONF(conf, "-m", "1024");
	struct h_status s0, s;
	status(&s0);
	const long n = 4000;
	pid_t load = sender(n);
	nap(500);
	pl_conf(&P, "p.conf", conf, sizeof(conf), after, P.port);
	int rc = ctl("reload");
	cr_assert_eq(rc, 0, "reload: %d:\n%s\n%s", rc, reply_buf, h_slurp(P.err));
	static const char *const said[] = { "started ckms2\n", "swapped ingest\n",
	    "swapped low\n", "stopped tiny\n", "stopped cma-tiny\n" };
	for (size_t i = 0; i < sizeof(said) / sizeof(said[0]); i++)
		cr_assert(strstr(reply_buf, said[i]) != NULL, "no '%s' in:\n%s", said[i],
		    reply_buf);
	size_t len = strlen(reply_buf);
	cr_assert(len >= 3 && strcmp(reply_buf + len - 3, "ok\n") == 0, "%s", reply_buf);
	int wst;
	cr_assert_eq(waitpid(load, &wst, 0), load);
	/* Every event went in; high, cma and ckms were not touched. */
	const struct want w[] = {
		{ "ingest", 2 * n, 2 * n }, { "high", 2 * n, n }, { "cma", n, n },
	};
	wait_books(w, sizeof(w) / sizeof(w[0]), &s);
	for (int t = 0; t < 500 && (h_find(&s, "tiny") || h_find(&s, "cma-tiny")); t++) {
		nap(20);
		status(&s);
	}
	cr_assert_eq(s.n, 6, "the removed stages are gone:\n%s", s.raw);
	static const char *const same[] = { "high", "cma", "ckms" };
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(stage(&s, same[i])->pid, stage(&s0, same[i])->pid,
		    "%s was touched:\n%s\n%s", same[i], s0.raw, s.raw);
	cr_assert_neq(stage(&s, "low")->pid, stage(&s0, "low")->pid, "%s", s.raw);
	cr_assert_str_eq(stage(&s, "low")->args, "\"--keep-below 50\"", "%s", s.raw);
	/* low's records all reached ckms; ckms2 got those after the swap. */
	struct h_stage *lo = stage(&s, "low"), *ck = stage(&s, "ckms"),
	    *ck2 = stage(&s, "ckms2");
	cr_assert_eq(lo->in, 2 * n, "%s", s.raw);
	cr_assert_eq(lo->out, n, "r 5 passes both limits:\n%s", s.raw);
	cr_assert_eq(ck->in, lo->out, "%s", s.raw);
	cr_assert(ck2->in > 0 && ck2->in <= lo->out, "%s", s.raw);
	for (int i = 0; i < s.n; i++)
		cr_assert_eq(s.st[i].lost, 0, "%s lost:\n%s", s.st[i].name, s.raw);
	assert_balanced();
	/* The removed stages' queues went with them. */
	char obj[128];
	snprintf(obj, sizeof(obj), "/dev/%s/telem.%s.tiny",
	    strcmp(P.transport, "shm") == 0 ? "shm" : "mqueue", P.instance);
	cr_assert_neq(access(obj, F_OK), 0, "%s is still there", obj);
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", h_slurp(P.err));
	cr_assert_eq(pl_objects_left(&P), 0);
}

Test(pipefile, reload_of_a_broken_file_changes_nothing)
{
	char conf[256];
	pl_conf(&P, "p.conf", conf, sizeof(conf), before, P.port);
	START_CONF(conf, "-m", "1024");
	struct h_status s0, s;
	status(&s0);
	pl_conf(&P, "p.conf", conf, sizeof(conf), broken, P.port);
	int rc = ctl("reload");
	char want[320];
	snprintf(want, sizeof(want), "error: %s:5: ", conf);
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert(strncmp(reply_buf, want, strlen(want)) == 0, "wanted %s..., got:\n%s",
	    want, reply_buf);
	cr_assert_eq(h_count(reply_buf, "\n"), 1, "%s", reply_buf);
	/* SIGHUP with the same file: logged, nothing changes either. */
	kill(P.pid, SIGHUP);
	cr_assert(h_wait_text(P.err, want + 7, 2, 5000), "%s", h_slurp(P.err));
	assert_untouched(&s0);
	/* The same file again: nothing to do. */
	pl_conf(&P, "p.conf", conf, sizeof(conf), before, P.port);
	rc = ctl("reload");
	cr_assert_eq(rc, 0, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, "no change\nok\n");
	status(&s);
	for (int i = 0; i < s.n; i++)
		cr_assert_eq(s.st[i].pid, s0.st[i].pid, "%s touched:\n%s", s.st[i].name, s.raw);
}

/* A folder passes access(X_OK) but runs nothing: a stage added with one
 * is the file's error, not a stage that exits 100 and stops the
 * pipeline. */
Test(pipefile, reload_of_a_stage_whose_exec_is_a_folder_changes_nothing)
{
	char conf[256], text[1024];
	start_before(conf, sizeof(conf), &(struct h_status){ 0 });
	snprintf(text, sizeof(text), "%s[stage extra]\nexec = %s\nout = ckms\n"
	    "udp = 127.0.0.1:0\n", before, P.dir);
	pl_conf(&P, "p.conf", conf, sizeof(conf), text, P.port);
	int rc = ctl("reload");
	char want[512];
	snprintf(want, sizeof(want), "error: %s:29: exec %s: Is a directory\n",
	    conf, P.dir);
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, want);
	h_nap_ms(300);
	cr_assert_eq(pl_wait(&P, 0), -1, "the supervisor stopped:\n%s",
	    h_slurp(P.err));
	/* At start, the same: one line, exit 2. */
	cr_assert_eq(ctl("stop"), 0, "%s", reply_buf);
	cr_assert_neq(pl_wait(&P, 10000), -1);
	char args[512], why[2048];
	snprintf(args, sizeof(args), "-i %s -c %s", P.instance, conf);
	cr_assert(h_refuses(&P, args, why, sizeof(why)), "%s", why);
	cr_assert(strstr(h_slurp(P.err), "Is a directory") != NULL, "%s",
	    h_slurp(P.err));
}

Test(pipefile, reload_refuses_a_new_msg_bytes)
{
	char conf[256], text[2048];
	/* No -m: the file's msg_bytes counts. */
	snprintf(text, sizeof(text), before, P.port);
	const char *rest = text + strlen("[pipeline]\n");
	pl_conf(&P, "p.conf", conf, sizeof(conf), "[pipeline]\nmsg_bytes = 1024\n%s", rest);
	START_CONF(conf, "-f", "200");
	pl_conf(&P, "p.conf", conf, sizeof(conf), "[pipeline]\nmsg_bytes = 2048\n%s", rest);
	int rc = ctl("reload");
	cr_assert_eq(rc, 1, "%s", reply_buf);
	char want[320];
	snprintf(want, sizeof(want), "error: %s:2: msg_bytes changed", conf);
	cr_assert(strncmp(reply_buf, want, strlen(want)) == 0, "wanted %s..., got:\n%s",
	    want, reply_buf);
}

/* msg_bytes left out of the new file is auto, a change too: the error
 * names the line of [pipeline] (it named line 0). */
Test(pipefile, reload_of_a_msg_bytes_left_out_names_its_section)
{
	char conf[256], text[2048];
	snprintf(text, sizeof(text), before, P.port);
	const char *stages = strstr(text, "[stage ingest]");
	cr_assert_not_null(stages);
	pl_conf(&P, "p.conf", conf, sizeof(conf), "[pipeline]\nmsg_bytes = 1024\n%s",
	    text + strlen("[pipeline]\n"));
	START_CONF(conf, "-f", "200");
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s\n[pipeline]\nflush_ms = 200\n",
	    stages);
	int line = 2;
	for (const char *c = stages; *c != '\0'; c++)
		line += *c == '\n';
	int rc = ctl("reload");
	cr_assert_eq(rc, 1, "%s", reply_buf);
	char want[512];
	snprintf(want, sizeof(want), "error: %s:%d: msg_bytes changed (auto, the "
	    "default, running 1024): the queues exist; stop and start the "
	    "supervisor to change it\n", conf, line);
	cr_assert_str_eq(reply_buf, want);
}

/* tiny turned into a second ingest: it would lose its in-queue, so
 * the reload is refused whole and every stage keeps its pid. */
Test(pipefile, reload_refuses_a_stage_that_changes_its_input)
{
	char conf[256], text[2048];
	struct h_status s0;
	start_before(conf, sizeof(conf), &s0);
	snprintf(text, sizeof(text), before, P.port);
	char *out = strstr(text, "out = low high tiny\n");
	cr_assert_not_null(out);
	memcpy(out + strlen("out = low high"), "     ", 5);
	const char *old = "[stage tiny]\nexec = telem-filter\nargs = --keep-below 10\n";
	char *t = strstr(text, old);
	cr_assert_not_null(t);
	char tail[1024];
	snprintf(tail, sizeof(tail), "%s", t + strlen(old));
	char *fl = strstr(tail, "flush = yes\n");   /* tiny's: it has no queue */
	cr_assert_not_null(fl);
	memmove(fl, fl + 12, strlen(fl + 12) + 1);
	snprintf(t, sizeof(text) - (size_t)(t - text),
	    "[stage tiny]\nexec = telem-ingest\nudp = 127.0.0.1:%d\n%s",
	    P.port == 65535 ? 1 : P.port + 1, tail);
	int line = 1;
	for (const char *c = text; c < t; c++)
		line += *c == '\n';
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	int rc = ctl("reload");
	cr_assert_eq(rc, 1, "%s", reply_buf);
	char want[320];
	snprintf(want, sizeof(want), "error: %s:%d: stage tiny would lose its "
	    "in-queue", conf, line);
	cr_assert(strncmp(reply_buf, want, strlen(want)) == 0, "wanted %s..., got:\n%s",
	    want, reply_buf);
	assert_untouched(&s0);
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 1);
}

/* The file replaced by a FIFO nobody writes: the reload is refused at
 * once, and the supervisor goes on serving (it used to wait in open(2)
 * for a writer, deaf to telemctl, SIGTERM and its stages). */
Test(pipefile, reload_of_a_fifo_is_refused_and_the_supervisor_serves_on)
{
	char conf[256];
	struct h_status s0;
	start_before(conf, sizeof(conf), &s0);
	cr_assert_eq(unlink(conf), 0);
	cr_assert_eq(mkfifo(conf, 0600), 0, "mkfifo: %s", strerror(errno));
	int rc = ctl("reload");
	char want[320];
	snprintf(want, sizeof(want), "error: %s: not a regular file\n", conf);
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, want);
	assert_untouched(&s0);
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 1);
}

/* ingest moved to a port another socket holds: the reload is refused and
 * ingest keeps its socket, also for its next start (the supervisor used
 * to close its copy first, so a restart ran ingest without --udp-fd, on
 * 127.0.0.1:1990, whatever the file said). */
Test(pipefile, reload_to_a_port_in_use_keeps_the_socket)
{
	char conf[256], text[2048];
	struct h_status s0, s;
	start_before(conf, sizeof(conf), &s0);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	cr_assert(fd != -1 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0, "%s", strerror(errno));
	int taken = ntohs(sa.sin_port);
	snprintf(text, sizeof(text), before, taken);
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	int rc = ctl("reload");
	char want[512];
	snprintf(want, sizeof(want), "error: %s:5: udp 127.0.0.1:%d: cannot bind (see "
	    "the log); nothing changed\n", conf, taken);
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, want);
	close(fd);
	assert_untouched(&s0);
	/* The file back as it runs: nothing to do. */
	pl_conf(&P, "p.conf", conf, sizeof(conf), before, P.port);
	cr_assert_eq(ctl("reload"), 0, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, "no change\nok\n");
	cr_assert_eq(ctl("restart ingest"), 0, "%s", reply_buf);
	status(&s);
	snprintf(want, sizeof(want), " listen=127.0.0.1:%d ", P.port);
	cr_assert_not_null(strstr(s.raw, want), "no%s in:\n%s", want, s.raw);
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 1);
}

/* ingest renamed ingest2 on the same address: the removed ingest holds
 * the socket while it drains, so the new stage cannot bind it. The reload
 * used to go on without ingest2 and stop ingest, leaving nothing on the
 * port; it is refused whole, naming the holder. */
Test(pipefile, reload_that_moves_an_address_to_a_new_stage_changes_nothing)
{
	char conf[256], text[2048];
	struct h_status s0;
	start_before(conf, sizeof(conf), &s0);
	snprintf(text, sizeof(text), before, P.port);
	char *hdr = strstr(text, "[stage ingest]");
	cr_assert_not_null(hdr);
	memmove(hdr + strlen("[stage ingest2"), hdr + strlen("[stage ingest"),
	    strlen(hdr + strlen("[stage ingest")) + 1);
	memcpy(hdr, "[stage ingest2", strlen("[stage ingest2"));
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	int rc = ctl("reload");
	char want[512];
	snprintf(want, sizeof(want), "error: %s:5: udp 127.0.0.1:%d: cannot bind (see "
	    "the log): stage ingest, which this reload removes, holds it until it "
	    "has drained; remove it in one reload and add ingest2 in the next; "
	    "nothing changed\n", conf, P.port);
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, want);
	assert_untouched(&s0);
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 1);
}

/* 1 if `host` resolves to 127.0.0.1 and nothing else (for datagrams). */
static int
only_loopback4(const char *host)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *res, *ai;
	int n = 0, other = 0;
	if (getaddrinfo(host, "1", &hints, &res) != 0)
		return 0;
	for (ai = res; ai != NULL; ai = ai->ai_next, n++)
		other |= ai->ai_family != AF_INET ||
		    ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr !=
		    htonl(INADDR_LOOPBACK);
	freeaddrinfo(res);
	return n > 0 && !other;
}

/* ingest's address written another way (a host name in other letters,
 * the address the name stands for): the same socket, so no change. The
 * address was compared as text: the reload bound the new spelling while
 * ingest held the old one, and was refused as "cannot bind". */
Test(pipefile, reload_that_respells_the_udp_address_keeps_the_socket)
{
	char conf[256], text[2048];
	struct h_status s0;
	snprintf(text, sizeof(text), before, P.port);
	char *host = strstr(text, "udp = 127.0.0.1:");
	cr_assert_not_null(host);
	host += strlen("udp = ");
	memcpy(host, "localhost", 9);
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	START_CONF(conf, "-m", "1024");
	status(&s0);
	static const char *const spelt[] = { "LocalHost", "127.0.0.1" };
	for (size_t k = 0; k < 2; k++) {
		if (k == 1 && !only_loopback4("localhost"))
			continue;   /* localhost has ::1 here too: another address */
		memcpy(host, spelt[k], 9);
		pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
		int rc = ctl("reload");
		cr_assert_eq(rc, 0, "udp = %s: %s\n%s", spelt[k], reply_buf,
		    h_slurp(P.err));
		cr_assert_str_eq(reply_buf, "no change\nok\n", "udp = %s", spelt[k]);
	}
	assert_untouched(&s0);
	/* A real change still is one. */
	memcpy(host, "localhost", 9);
	cr_assert(strstr(text, "--keep-below 100") != NULL);
	memcpy(strstr(text, "--keep-below 100"), "--keep-below 200", 16);
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	cr_assert_eq(ctl("reload"), 0, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, "swapped low\nok\n");
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 1);
}

/* The names of the instance's objects in /dev/mqueue and /dev/shm, one
 * a line, sorted, into buf. */
static void
objects(char *buf, size_t cap)
{
	static const char *const dirs[] = { "/dev/mqueue", "/dev/shm" };
	char prefix[64];
	size_t len = 0;
	snprintf(prefix, sizeof(prefix), "telem.%s.", P.instance);
	buf[0] = '\0';
	for (size_t d = 0; d < 2; d++) {
		struct dirent **e;
		int n = scandir(dirs[d], &e, NULL, alphasort);
		cr_assert_geq(n, 0, "scandir %s: %s", dirs[d], strerror(errno));
		for (int i = 0; i < n; i++) {
			if (strncmp(e[i]->d_name, prefix, strlen(prefix)) == 0 &&
			    len < cap)
				len += (size_t)snprintf(buf + len, cap - len, "%s/%s\n",
				    dirs[d], e[i]->d_name);
			free(e[i]);
		}
		free(e);
	}
}

/* `before` with low sending to `outs` in place of ckms alone, and the
 * sections `more` after the file's own. */
static void
with_low_out(char *text, size_t cap, const char *outs, const char *more)
{
	char tail[2048];
	snprintf(text, cap, before, P.port);
	char *lo = strstr(text, "out = ckms\n");
	cr_assert_not_null(lo);
	snprintf(tail, sizeof(tail), "%s", lo + strlen("out = ckms\n"));
	snprintf(lo, cap - (size_t)(lo - text), "out = %s\n%s%s", outs, tail,
	    more);
}

/* `before` with low sending to two new egresses, ckms2 and ckms3, too. */
static void
with_ckms2_3(char *text, size_t cap)
{
	with_low_out(text, cap, "ckms ckms2 ckms3",
	    "[stage ckms2]\nexec = telem-egress-ckms\n"
	    "[stage ckms3]\nexec = telem-egress-ckms\n");
}

/* Two new stages, and the second cannot get its queue (an object of its
 * name is in the way): the reload changes nothing, and the queue it made
 * for the first goes again. That queue used to stay behind, holding the
 * user's RLIMIT_MSGQUEUE even after the supervisor stopped, and every
 * later reload adding that stage failed on it. */
Test(pipefile, reload_whose_second_new_queue_fails_leaves_no_queue)
{
	char conf[256], text[2048], was[4096], now[4096], obj[128];
	struct h_status s0;
	start_before(conf, sizeof(conf), &s0);
	snprintf(obj, sizeof(obj), "/telem.%s.ckms3", P.instance);
	if (strcmp(P.transport, "shm") == 0) {
		int fd = shm_open(obj, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
		cr_assert_neq(fd, -1, "shm_open %s: %s", obj, strerror(errno));
		close(fd);
	} else {
		struct mq_attr a = { .mq_maxmsg = 1, .mq_msgsize = 64 };
		mqd_t q = mq_open(obj, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &a);
		cr_assert_neq(q, (mqd_t)-1, "mq_open %s: %s", obj, strerror(errno));
		mq_close(q);
	}
	objects(was, sizeof(was));
	with_ckms2_3(text, sizeof(text));
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	int rc = ctl("reload");
	cr_assert_eq(rc, 1, "%s", reply_buf);
	objects(now, sizeof(now));
	cr_assert_str_eq(now, was, "objects before the reload:\n%s\nafter:\n%s", was,
	    now);
	cr_assert_str_eq(reply_buf, "error: queue of stage ckms3 could not be "
	    "created (see the log); nothing changed\n");
	assert_untouched(&s0);
	/* Out of the way, the same file adds both. */
	if (strcmp(P.transport, "shm") == 0)
		cr_assert_eq(shm_unlink(obj), 0, "%s", strerror(errno));
	else
		cr_assert_eq(mq_unlink(obj), 0, "%s", strerror(errno));
	rc = ctl("reload");
	cr_assert_eq(rc, 0, "%s\n%s", reply_buf, h_slurp(P.err));
	cr_assert(strstr(reply_buf, "started ckms2\n") != NULL &&
	    strstr(reply_buf, "started ckms3\n") != NULL, "%s", reply_buf);
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 3);
	assert_balanced();
}

/* A reload's new queue refused by RLIMIT_MSGQUEUE: the log line tells the
 * budget against the queues of the new file (8: `before`'s 6, ckms2 and
 * ckms3), where it used to count the running pipeline's (6). The
 * supervisor's limit is set to 1 byte, which no new queue fits in. */
Test(pipefile, reload_past_the_mqueue_budget_counts_the_new_files_queues)
{
	char conf[256], text[2048];
	struct h_status s0;
	start_before(conf, sizeof(conf), &s0);
	with_ckms2_3(text, sizeof(text));
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	if (strcmp(P.transport, "mqueue") == 0) {
		struct rlimit one = { 1, 1 }, got;
		cr_assert_eq(prlimit(P.pid, RLIMIT_MSGQUEUE, &one, NULL), 0,
		    "prlimit: %s", strerror(errno));
		cr_assert_eq(prlimit(P.pid, RLIMIT_MSGQUEUE, NULL, &got), 0);
		cr_assert_eq(got.rlim_cur, 1);
		cr_assert_eq(ctl("reload"), 1, "%s", reply_buf);
		cr_assert_str_eq(reply_buf, "error: queue of stage ckms2 could not "
		    "be created (see the log); nothing changed\n");
		char *err = h_slurp(P.err);
		const char *m = strstr(err, "RLIMIT_MSGQUEUE is 1 bytes");
		cr_assert_not_null(m, "%s", err);
		cr_assert(strstr(m, "(8 queues: ") != NULL, "%s", err);
		return;
	}
	/* shm has no such budget: the reload adds both. */
	cr_assert_eq(ctl("reload"), 0, "%s", reply_buf);
	assert_balanced();
}

/* `before` with low sending to a new egress ckms2 too, given `args`. */
static void
with_ckms2(char *text, size_t cap, const char *args)
{
	char more[256];
	snprintf(more, sizeof(more), "[stage ckms2]\nexec = telem-egress-ckms\n"
	    "args = %s\n", args);
	with_low_out(text, cap, "ckms ckms2", more);
}

/* A new stage that refuses its arguments (exit 100) is taken back out, as
 * a changed one is rolled back: its queue and entry go, low, which was
 * to send to it and changed in nothing else, runs on untouched, and the
 * reply is an error. It used to count as a stage of the pipeline failing
 * for good: the supervisor stopped the whole pipeline and exited 1. */
Test(pipefile, reload_whose_new_stage_exits_100_takes_it_back_out)
{
	char conf[256], text[2048], was[4096], now[4096];
	struct h_status s0;
	start_before(conf, sizeof(conf), &s0);
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 1);
	objects(was, sizeof(was));
	with_ckms2(text, sizeof(text), "--error abc");
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	int rc = ctl("reload");
	h_nap_ms(200);
	cr_assert_eq(pl_wait(&P, 0), -1, "the supervisor stopped:\n%s",
	    h_slurp(P.err));
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, "started ckms2\nswapped low\n"
	    "new stage ckms2 exited 100 (configuration error) before it was "
	    "ready: taken back out\n"
	    "error: not every new stage came up: those above were taken back "
	    "out; the rest of the reload is applied\n");
	cr_assert(strstr(h_slurp(P.err), "reload: new stage ckms2 exited 100 "
	    "(configuration error) before it was ready: taken back out\n") != NULL,
	    "%s", h_slurp(P.err));
	objects(now, sizeof(now));
	cr_assert_str_eq(now, was, "objects before the reload:\n%s\nafter:\n%s", was,
	    now);
	assert_untouched(&s0);
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 2);
	assert_balanced();
	/* The file as the pipeline runs now: nothing to do. */
	pl_conf(&P, "p.conf", conf, sizeof(conf), before, P.port);
	cr_assert_eq(ctl("reload"), 0, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, "no change\nok\n");
	/* Mended, it comes: ckms2 reports what low passes from now on. */
	with_ckms2(text, sizeof(text), "--error 0.001");
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	cr_assert_eq(ctl("reload"), 0, "%s\n%s", reply_buf, h_slurp(P.err));
	cr_assert_str_eq(reply_buf, "started ckms2\nswapped low\nok\n");
	pl_nc(&P, "b 7\n");
	WAIT_OUT("[CKMS] b 0.99:7\n", 2);
	assert_balanced();
}

/* `before` with ckms replaced by a new stage cks2 (as long a name) given
 * `args`: low, changed in nothing but its out, is to send to it. */
static void
with_cks2(char *text, size_t cap, const char *args)
{
	snprintf(text, cap, before, P.port);
	char *lo = strstr(text, "out = ckms\n"), *ck = strstr(text, "[stage ckms]\n");
	cr_assert(lo != NULL && ck != NULL);
	memcpy(lo, "out = cks2\n", 11);
	char tail[1024];
	snprintf(tail, sizeof(tail), "%s", ck + strlen("[stage ckms]\nexec = "
	    "telem-egress-ckms\n"));
	snprintf(ck, cap - (size_t)(ck - text), "[stage cks2]\nexec = "
	    "telem-egress-ckms\nargs = %s\n%s", args, tail);
}

/* ckms replaced by a new cks2 that refuses its arguments: cks2 is taken
 * back out, and ckms, which low was to leave for it, is kept: up again,
 * not draining, and low, changed in nothing else, runs on as it was and
 * still sends to it. What is sent after the reload reaches ckms and its
 * report. It used to be half taken back: ckms drained and went as the
 * file said, and low ran on with no out ("stage low sends to no stage
 * now"), so everything it passed on was lost. A later reload removes
 * ckms as any other stage. */
Test(pipefile, reload_whose_new_stage_fails_in_place_of_a_removed_one)
{
	char conf[256], text[2048];
	struct h_status s0, s;
	start_before(conf, sizeof(conf), &s0);
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 1);
	with_cks2(text, sizeof(text), "--error abc");
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	int rc = ctl("reload");
	h_nap_ms(200);
	cr_assert_eq(pl_wait(&P, 0), -1, "the supervisor stopped:\n%s",
	    h_slurp(P.err));
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert_str_eq(reply_buf, "started cks2\nswapped low\nstopped ckms\n"
	    "new stage cks2 exited 100 (configuration error) before it was "
	    "ready: taken back out\n"
	    "stage ckms kept, as low still sends to it\n"
	    "error: not every new stage came up: those above were taken back "
	    "out; the rest of the reload is applied\n");
	cr_assert(strstr(h_slurp(P.err), "reload: stage ckms kept, as low still "
	    "sends to it\n") != NULL, "%s", h_slurp(P.err));
	status(&s);
	cr_assert_eq(s.n, s0.n, "%s", s.raw);
	cr_assert_null(h_find(&s, "cks2"), "%s", s.raw);
	for (int i = 0; i < s0.n; i++) {
		struct h_stage *x = stage(&s, s0.st[i].name);
		cr_assert_eq(x->pid, s0.st[i].pid, "%s touched:\n%s", x->name, s.raw);
		cr_assert_str_eq(x->state, "up", "%s", s.raw);
	}
	pl_nc(&P, "a 20\n");
	WAIT_OUT("[CKMS] a 0.99:20\n", 1);
	const struct want w[] = {
		{ "ingest", 2, 2 }, { "low", 2, 2 }, { "ckms", 2, 2 },
	};
	wait_books(w, sizeof(w) / sizeof(w[0]), &s);
	assert_balanced();
	/* ckms is a stage of the pipeline again: the mended file removes it. */
	with_cks2(text, sizeof(text), "--error 0.001");
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	cr_assert_eq(ctl("reload"), 0, "%s\n%s", reply_buf, h_slurp(P.err));
	cr_assert_str_eq(reply_buf, "started cks2\nswapped low\nstopped ckms\nok\n");
	for (int t = 0; t < 500; t++, nap(20)) {
		status(&s);
		if (h_find(&s, "ckms") == NULL)
			break;
	}
	cr_assert_null(h_find(&s, "ckms"), "ckms is gone:\n%s", s.raw);
	pl_nc(&P, "b 7\n");
	WAIT_OUT("[CKMS] b 0.99:7\n", 1);
	assert_balanced();
}

/* ckms has two writers: low is changed to send to a new cks2 that refuses
 * its arguments, with a new limit too, and high to a new cma. cks2 is
 * taken back out; ckms is kept for low, which starts with its new limit
 * and ckms as its out; high's move to cma stands. Records sent after it
 * reach ckms and cma, and the books (ckms's old writer high among them)
 * balance. */
Test(pipefile, reload_whose_new_stage_fails_keeps_the_removed_one_for_its_writer)
{
	static const char two[] =
	    "[pipeline]\nflush_ms = 200\n"
	    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:%d\nout = low high\n"
	    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\nout = ckms\nflush = yes\n"
	    "[stage high]\nexec = telem-filter\nargs = --keep-above 100\nout = ckms\nflush = yes\n"
	    "[stage ckms]\nexec = telem-egress-ckms\n";
	static const char moved[] =
	    "[pipeline]\nflush_ms = 200\n"
	    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:%d\nout = low high\n"
	    "[stage low]\nexec = telem-filter\nargs = --keep-below 50\nout = cks2\nflush = yes\n"
	    "[stage high]\nexec = telem-filter\nargs = --keep-above 100\nout = cma\nflush = yes\n"
	    "[stage cks2]\nexec = telem-egress-ckms\nargs = --error abc\n"
	    "[stage cma]\nexec = telem-egress-cma\n";
	char conf[256];
	struct h_status s0, s;
	pl_conf(&P, "p.conf", conf, sizeof(conf), two, P.port);
	START_CONF(conf, "-m", "1024");
	pl_nc(&P, "a 10\nc 500\n");
	WAIT_OUT("[CKMS] c 0.99:500\n", 1);
	status(&s0);
	pl_conf(&P, "p.conf", conf, sizeof(conf), moved, P.port);
	int rc = ctl("reload");
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert(strstr(reply_buf, "new stage cks2 exited 100 (configuration "
	    "error) before it was ready: taken back out\nstage ckms kept, as low "
	    "still sends to it\nerror: ") != NULL, "%s", reply_buf);
	status(&s);
	cr_assert_null(h_find(&s, "cks2"), "%s", s.raw);
	cr_assert_str_eq(stage(&s, "ckms")->state, "up", "%s", s.raw);
	cr_assert_eq(stage(&s, "ckms")->pid, stage(&s0, "ckms")->pid, "%s", s.raw);
	cr_assert_str_eq(stage(&s, "cma")->state, "up", "%s", s.raw);
	cr_assert_neq(stage(&s, "low")->pid, stage(&s0, "low")->pid, "%s", s.raw);
	cr_assert_str_eq(stage(&s, "low")->args, "\"--keep-below 50\"", "%s", s.raw);
	cr_assert_neq(stage(&s, "high")->pid, stage(&s0, "high")->pid, "%s", s.raw);
	cr_assert_eq(s.n, 5, "%s", s.raw);
	pl_nc(&P, "a 20\nb 70\nc 600\n");
	WAIT_OUT("[CKMS] a 0.99:20\n", 1);
	WAIT_OUT("[CMA] c 600\n", 1);
	const struct want w[] = {
		{ "ingest", 5, 5 }, { "low", 5, 2 }, { "high", 5, 2 },
		{ "ckms", 3, 3 }, { "cma", 1, 1 },
	};
	wait_books(w, sizeof(w) / sizeof(w[0]), &s);
	assert_balanced();
	cr_assert_eq(h_count(h_slurp(P.out), "[CKMS] b "), 0, "%s", h_slurp(P.out));
}

Test(pipefile, reload_without_a_file_says_so)
{
	cr_assert(pl_start(&P, "-m", "1024", NULL), "%s", h_slurp(P.err));
	int rc = ctl("reload");
	cr_assert_eq(rc, 1);
	cr_assert_str_eq(reply_buf, "error: no pipeline file (started without -c)\n");
}

/* ---- swap keeps words whole ------------------------------------------- */

Test(pipefile, swap_to_a_path_with_blanks)
{
	cr_assert(pl_start(&P, "-m", "1024", NULL), "%s", h_slurp(P.err));
	char dir[256], prog[320], cmd[1024], exe[256];
	snprintf(dir, sizeof(dir), "%s/my bin", P.dir);
	cr_assert_eq(mkdir(dir, 0700), 0);
	snprintf(prog, sizeof(prog), "%s/telem filter", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", h_bin("telem-filter", exe, sizeof(exe)),
	    prog);
	cr_assert_eq(system(cmd), 0);
	pid_t old = pl_stage_pid(&P, "low");
	int rc = ctl("swap low '%s' --keep-below 7", prog);
	cr_assert_eq(rc, 0, "%s\n%s", reply_buf, h_slurp(P.err));
	struct h_status s;
	status(&s);
	struct h_stage *lo = stage(&s, "low");
	char q[400];
	snprintf(q, sizeof(q), "\"%s\"", prog);
	cr_assert_str_eq(lo->exe, q, "%s", s.raw);
	cr_assert_str_eq(lo->args, "\"--keep-below 7\"", "%s", s.raw);
	cr_assert_neq(lo->pid, old);
	pl_nc(&P, "z 3\nz 8\n");
	for (int t = 0; t < 500 && stage(&s, "ckms")->in < 1; t++, nap(10))
		status(&s);
	nap(100);
	status(&s);
	cr_assert_eq(stage(&s, "ckms")->in, 1, "only z 3 passes 7:\n%s", s.raw);
	/* An argument with blanks stays one argument: the filter refuses it
	 * as one bad limit (and the swap is rolled back). */
	rc = ctl("swap low telem-filter --keep-below '1 2'");
	cr_assert_eq(rc, 1, "%s", reply_buf);
	cr_assert(strstr(h_slurp(P.err), "--keep-below 1 2: limit must be") != NULL,
	    "%s", h_slurp(P.err));
}

/* ---- msg_bytes = auto -------------------------------------------------- */

/* Two queues of 10 x 8192 of our own, then this process's RLIMIT_MSGQUEUE
 * set to what the user uses now plus `room` (the supervisor started next
 * inherits it). Returns the old limit. */
static struct rlimit
squeeze(uint64_t room)
{
	struct mq_attr a = { .mq_maxmsg = 10, .mq_msgsize = 8192 };
	for (int i = 0; i < 2; i++) {
		snprintf(fillers[nfillers], sizeof(fillers[0]), "/telem-test-fill-%d-%d",
		    (int)getpid(), i);
		mqd_t q = mq_open(fillers[nfillers], O_CREAT | O_RDWR | O_CLOEXEC, 0600, &a);
		if (q == (mqd_t)-1 && (errno == EMFILE || errno == ENOSPC || errno == EINVAL)) {
			int e = errno;
			teardown();   /* Criterion runs no .fini after a skip */
			cr_skip_test("no room for a queue of 10 x 8192 now (%s)", strerror(e));
		}
		cr_assert_neq(q, (mqd_t)-1, "mq_open: %s", strerror(errno));
		nfillers++;
		mq_close(q);
	}
	uint64_t used = 0;
	int nq = 0, unknown = 0;
	cr_assert_eq(pipeline_mq_usage("/dev/mqueue", geteuid(), NULL, &used, &nq,
	    &unknown), 0);
	struct rlimit old, low;
	cr_assert_eq(getrlimit(RLIMIT_MSGQUEUE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)(used + room);
	if (old.rlim_max != RLIM_INFINITY && low.rlim_cur > old.rlim_max)
		low.rlim_cur = old.rlim_max;
	cr_assert_eq(setrlimit(RLIMIT_MSGQUEUE, &low), 0);
	return old;
}

Test(pipefile, msg_bytes_auto_takes_what_the_budget_leaves)
{
	if (strcmp(P.transport, "mqueue") != 0) {
		/* shm has no such budget: auto is 8192. */
		cr_assert(pl_start(&P, NULL), "%s", h_slurp(P.err));
		cr_assert(strstr(h_slurp(P.err), "msg_bytes 8192: auto, on shm") != NULL,
		    "%s", h_slurp(P.err));
		return;
	}
	/* Four queues need 4 x 82880 at 8192; leave room for about 2/3. */
	struct rlimit old = squeeze(220000);
	int up = pl_start(&P, NULL);
	setrlimit(RLIMIT_MSGQUEUE, &old);
	char *err = h_slurp(P.err);
	cr_assert(up, "%s", err);
	const char *m = strstr(err, "telem-supervisor: msg_bytes ");
	cr_assert_not_null(m, "no msg_bytes line:\n%s", err);
	long size = strtol(m + strlen("telem-supervisor: msg_bytes "), NULL, 10);
	cr_assert(size >= WIRE_MSG_MIN && size < 8192, "msg_bytes %ld:\n%s", size, err);
	cr_assert(strstr(m, "other queues of this user") != NULL, "%s", err);
	/* And it works at that size. */
	pl_nc(&P, "a 10\n");
	cr_assert(h_wait_text(P.out, "[CKMS] a 0.99:10\n", 1, 5000), "%s", h_slurp(P.err));
}

Test(pipefile, msg_bytes_auto_too_small_gives_the_numbers)
{
	if (strcmp(P.transport, "mqueue") != 0) {
		teardown();   /* Criterion runs no .fini after a skip */
		cr_skip_test("RLIMIT_MSGQUEUE is mqueue's");
	}
	struct rlimit old = squeeze(8000);
	pl_spawn(&P, NULL);
	int st = pl_wait(&P, 10000);
	setrlimit(RLIMIT_MSGQUEUE, &old);
	char *err = h_slurp(P.err);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d:\n%s",
	    st, err);
	cr_assert(strstr(err, "need") && strstr(err, "limit") && strstr(err, "in use") &&
	    strstr(err, "-t shm"), "%s", err);
	cr_assert_eq(h_count(err, "\n"), 1, "one line:\n%s", err);
	cr_assert_eq(pl_objects_left(&P), 0);
}

Test(pipefile, reload_with_a_bad_argument_rolls_that_stage_back)
{
	char conf[256], text[2048];
	struct h_status s0, s;
	start_before(conf, sizeof(conf), &s0);
	/* low's new limit is no number: telem-filter exits 100 at start. */
	snprintf(text, sizeof(text), before, P.port);
	char *lim = strstr(text, "--keep-below 100");
	cr_assert_not_null(lim);
	memcpy(lim, "--keep-below abc", 16);
	pl_conf(&P, "p.conf", conf, sizeof(conf), "%s", text);
	int rc = ctl("reload");
	cr_assert_eq(rc, 0, "%s\n%s", reply_buf, h_slurp(P.err));
	cr_assert(strstr(reply_buf, "swapped low\n") != NULL, "%s", reply_buf);
	cr_assert(strstr(reply_buf, "swap of low failed") != NULL, "%s", reply_buf);
	/* The reply came once low was up again, with its old arguments. */
	status(&s);
	struct h_stage *lo = stage(&s, "low");
	cr_assert_str_eq(lo->state, "up", "%s", s.raw);
	cr_assert_str_eq(lo->args, "\"--keep-below 100\"", "%s", s.raw);
	cr_assert_neq(lo->pid, stage(&s0, "low")->pid);
	for (int i = 0; i < s.n; i++)
		if (strcmp(s.st[i].name, "low") != 0)
			cr_assert_eq(s.st[i].pid, s0.st[i].pid, "%s touched:\n%s",
			    s.st[i].name, s.raw);
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n", 1);
}
