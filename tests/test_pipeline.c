/* test_pipeline.c - the pipeline file (supervisor/pipeline.[ch]): a table
 * of files that must be refused, each with its FILE:LINE and message; valid
 * files (a 9-stage pipeline, quoted args, start order); the built-in
 * pipeline against the seed's topology; print and parse back; the diff a
 * reload acts on; msg_bytes = auto's arithmetic, checked against the
 * kernel in a user namespace of its own; and the examples. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor/pipeline.h"
#include "harness.h"

static char dir[64];
static char path[128];

static void
setup(void)
{
	h_tmp_name(dir, sizeof(dir), "pipeline");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/p.conf", dir);
}

static void
teardown(void)
{
	h_rm_dir(dir);
}

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 30);

/* Criterion runs no .fini after cr_skip_test: clean up first. */
#define SKIP(...) do { teardown(); cr_skip_test(__VA_ARGS__); } while (0)

static void
write_file(const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* Parse text as the file `path`; the caller checks the result. */
static int
load_text(struct pipeline *p, const char *text, char *err, size_t cap)
{
	write_file(text);
	return pipeline_load(p, path, err, cap);
}

static void
must_load(struct pipeline *p, const char *text)
{
	char err[PIPELINE_ERR_MAX] = "";
	cr_assert_eq(load_text(p, text, err, sizeof(err)), 0, "refused: %s", err);
}

/* ------------------------------------------------------------------ */
/* Refused files: the line and the message (a part of it that says what). */

#define IN "[stage in]\nexec = telem-ingest\nudp = 127.0.0.1:1990\n"  /* 3 lines */
#define SINK(n) "[stage " n "]\nexec = telem-egress-cma\n"

/* 191 characters: "args = " and these make a line of 198. */
#define X10 "xxxxxxxxxx"
#define X191 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 \
    X10 X10 "x"

struct bad {
	const char *text;
	int line;
	const char *msg;
};

static const struct bad bad[] = {
	/* 0 */ { "[foo]\n", 1, "unknown section [foo] (expected [pipeline] or [stage NAME])" },
	{ IN "out = a\n" SINK("a") "bogus = 1\n", 7, "unknown key 'bogus' in [stage a] "
	    "(expected exec, args, out, flush, udp or state)" },
	{ "[pipeline]\ncolor = red\n" IN, 2, "unknown key 'color' in [pipeline]" },
	{ "exec = x\n" IN, 1, "'exec' is outside any section" },
	{ IN "out = a\n\n[stage a]\nargs = -x\n", 6, "stage 'a' has no exec" },
	/* 5 */ { "[stage in]\nexec =\nudp = 127.0.0.1:1\n", 2, "exec is empty" },
	{ IN "out = a nope\n" SINK("a"), 4, "out names 'nope', which is not a stage" },
	{ IN "out = in\n", 4, "stage 'in' cannot send to itself" },
	{ IN "out = a\n" SINK("a") "out = b\n" SINK("b") "out = c\n" SINK("c") "out = a\n",
	    7, "cycle: a -> b -> c -> a" },
	{ IN "out = a\n" SINK("a") "\n" SINK("a"), 8, "stage 'a' is defined twice (first at line 5)" },
	/* 10 */ { IN "out = Low\n[stage Low]\nexec = x\n", 5, "stage name 'Low': must be 1 to 15 "
	    "characters of a-z, 0-9, '_' and '-'" },
	{ "[stage abcdefghijklmnop]\n", 1, "stage name 'abcdefghijklmnop': must be" },
	{ "[stage a b]\n", 1, "stage name 'a b': must be" },
	{ "[stage]\n", 1, "a stage needs a name: [stage NAME]" },
	{ "[stage a.b]\n", 1, "stage name 'a.b'" },
	/* 15 */ { IN "flush = yes\n", 4, "flush = yes, but no stage sends to 'in', so it has no "
	    "in-queue to write Flush into" },
	{ "[stage in]\nexec = x\nudp = 1.2.3:99\n", 3, "udp '1.2.3:99': not an IPv4 address or host name" },
	{ "[stage in]\nexec = x\nudp = 127.0.0.1:65536\n", 3, "the port must be a whole number in 0..65535" },
	{ "[stage in]\nexec = x\nudp = [::1]1990\n", 3, "an IPv6 address is written [address]:port" },
	{ "[stage in]\nexec = x\nudp = ::1:1990\n", 3, "an IPv6 address is written [address]:port" },
	/* 20 */ { "[stage in]\nexec = x\nudp = [zz]:1\n", 3, "udp '[zz]:1': not an IPv6 address" },
	{ "[stage in]\nexec = x\nudp = localhost\n", 3, "udp 'localhost': expected host:port" },
	{ "[stage in]\nexec = x\nudp = bad_name:1\n", 3, "not an IPv4 address or host name" },
	{ IN "out = a\n" SINK("a") SINK("lonely"), 7, "stage 'lonely' gets no input: no out "
	    "names it and it has no udp" },
	{ "[pipeline]\ntransport = tcp\n" IN, 2, "transport 'tcp': must be mqueue or shm" },
	/* 25 */ { "[pipeline]\nmsg_bytes = 1023\n" IN, 2, "msg_bytes '1023': must be auto or a whole "
	    "number in 1024..1048576" },
	{ "[pipeline]\nmsg_bytes = 1048577\n" IN, 2, "msg_bytes '1048577'" },
	{ "[pipeline]\nmsg_bytes = 8k\n" IN, 2, "msg_bytes '8k'" },
	{ "[pipeline]\nflush_ms = 0\n" IN, 2, "flush_ms '0': must be a whole number in 1..86400000" },
	{ "[pipeline]\nflush_ms = -5\n" IN, 2, "flush_ms '-5'" },
	/* 30 */ { IN "exec = y\n", 4, "exec is given twice in this section (first at line 2)" },
	{ "[pipeline]\nflush_ms = 5\nflush_ms = 5\n" IN, 3, "flush_ms is given twice" },
	{ "[stage in]\nexec = x\nudp = 127.0.0.1:1\nargs = " X191 "\n", 4,
	    "the line is longer than 197 characters" },
	{ IN "just some words\n", 4, "expected 'key = value', [section] or a comment" },
	{ "[stage in\nexec = x\n", 1, "a section header needs a closing ']'" },
	/* 35 */ { "[stage in] x\n", 1, "unexpected text after ']': x" },
	{ "[pipeline]\n[pipeline]\n" IN, 2, "[pipeline] appears twice (first at line 1)" },
	{ "[stage stats]\n", 1, "stage name 'stats' is reserved" },
	{ "[stage lock]\n", 1, "stage name 'lock' is reserved" },
	{ "[stage state]\n", 1, "stage name 'state' is reserved" },
	{ "[stage tmp]\n", 1, "stage name 'tmp' is reserved" },
	{ "[stage bad]\n", 1, "stage name 'bad' is reserved" },
	{ "[stage in]\nexec = bin/telem-ingest\n", 2, "exec 'bin/telem-ingest': must be a bare "
	    "name (one of telem's stages) or an absolute path" },
	/* 40 */ { IN "args = \"open\n", 4, "args: a double quote is not closed" },
	{ IN "args = \"a\\nb\"\n", 4, "args: inside quotes a backslash escapes only" },
	{ IN "flush = maybe\n", 4, "flush 'maybe': must be yes or no" },
	{ IN "state = 1\n", 4, "state '1': must be yes or no" },
	{ IN "state = no\nstate = no\n", 5, "state is given twice" },
	{ IN "out = a\n" SINK("a") "[stage in2]\nexec = x\nudp = 127.0.0.1:1990\n", 9,
	    "udp 127.0.0.1:1990: stage 'in' binds it already (line 3)" },
	{ "", 1, "no stage: a pipeline needs [stage NAME] sections" },
	/* 45 */ { "[pipeline]\ntransport = shm\n\n", 3, "no stage" },
	{ IN "out = a b c d e f g h i\n" SINK("a") SINK("b") SINK("c") SINK("d") SINK("e")
	    SINK("f") SINK("g") SINK("h") SINK("i"), 4, "out names more than 8 stages" },
	{ IN "args = 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 "
	    "29 30 31 32 33\n", 4, "args: more than 32 arguments" },
	/* comments, blank and indented lines, CRLF, a BOM all count as lines */
	{ "\xef\xbb\xbf; comment\r\n\r\n  # another\r\n[stage in]\r\n   exec = x\r\n"
	    "   udp = 127.0.0.1:1\r\n\tbogus = 2\r\n", 7, "unknown key 'bogus'" },
	{ "[stage in]\nexec = x\nudp = [::1]:1\n[stage in2]\nexec = x\nudp = [::1]:1\n", 6,
	    "udp [::1]:1: stage 'in' binds it already (line 3)" },
	/* 50 */ { IN "out = a\n" SINK("a") "out = b\n" SINK("b") "\n[stage x]\nexec=x\n"
	    "udp = 0.0.0.0:0\nout = b\n" SINK("c") "out = a\n", 15, "stage 'c' gets no input" },
	{ IN "out = a\n" SINK("a") "out = b\n" SINK("b") "out = a\n", 7, "cycle: a -> b -> a" },
	{ IN "out = a a\n" SINK("a"), 4, "out names 'a' twice" },
	{ IN "out = a\n" SINK("a") "[what ever]\n", 7, "unknown section [what ever]" },
	{ IN "udp = 127.0.0.1:2\n", 4, "udp is given twice in this section (first at line 3)" },
	/* 55 */ { IN "args = \"abc\\\n", 4, "args: inside quotes a backslash escapes only" },
	{ IN "args = \"abc\\\"\n", 4, "args: a double quote is not closed" },
	/* the supervisor's own options: the last one given would win */
	{ IN "out = a\n" SINK("a") "args = --max-names 5 --slot 0\n", 7,
	    "args: '--slot' would give --slot, which the supervisor gives each "
	    "stage itself" },
	{ IN "args = -vi other\n", 4, "args: '-vi' would give --instance" },
	/* one address written two ways is bound twice all the same */
	{ "[stage in]\nexec = x\nudp = [::1]:1\n[stage in2]\nexec = x\nudp = [0:0::1]:1\n", 6,
	    "udp [0:0::1]:1: stage 'in' binds it already (line 3)" },
	/* a host name written two ways resolves to the same addresses */
	{ "[stage in]\nexec = x\nudp = localhost:1\n[stage in2]\nexec = x\n"
	    "udp = LocalHost:1\n", 6, "udp LocalHost:1: stage 'in' binds it already "
	    "(line 3)" },
};
#define NBAD (sizeof(bad) / sizeof(bad[0]))

struct idx {
	size_t i;
};

ParameterizedTestParameters(pipeline, must_reject)
{
	struct idx *v = cr_malloc(NBAD * sizeof(*v));
	for (size_t i = 0; i < NBAD; i++)
		v[i].i = i;
	return cr_make_param_array(struct idx, v, NBAD);
}

ParameterizedTest(struct idx *x, pipeline, must_reject)
{
	const struct bad *b = &bad[x->i];
	struct pipeline p;
	char err[PIPELINE_ERR_MAX] = "", want[256];
	cr_assert_eq(load_text(&p, b->text, err, sizeof(err)), -1,
	    "case %zu was accepted", x->i);
	snprintf(want, sizeof(want), "%s:%d: ", path, b->line);
	cr_expect_eq(strncmp(err, want, strlen(want)), 0,
	    "case %zu: wanted line %d, got: %s", x->i, b->line, err);
	cr_expect_not_null(strstr(err, b->msg), "case %zu: wanted '%s', got: %s",
	    x->i, b->msg, err);
	cr_expect_null(strchr(err, '\n'), "case %zu: one line", x->i);
	cr_expect_eq(p.nstage, 0, "nothing kept");
	pipeline_free(&p);
}

static void expect_round_trip(const struct pipeline *p);

Test(pipeline, state_defaults_to_stages_with_no_out)
{
	struct pipeline p;
	must_load(&p, IN "out = e t\n" SINK("e") "out = s\nstate = yes\n"
	    SINK("s") "state = no\n" SINK("t") "out = u\n" SINK("u"));
	cr_expect_eq(p.stage[pipeline_find(&p, "in")].state, 0);
	cr_expect_eq(p.stage[pipeline_find(&p, "t")].state, 0);
	cr_expect_eq(p.stage[pipeline_find(&p, "e")].state, 1);
	cr_expect_eq(p.stage[pipeline_find(&p, "s")].state, 0);
	cr_expect_eq(p.stage[pipeline_find(&p, "u")].state, 1);
	expect_round_trip(&p);
	pipeline_free(&p);
}

Test(pipeline, more_than_32_stages)
{
	char text[8192];
	size_t off = (size_t)snprintf(text, sizeof(text), "%s", IN "out =");
	for (int i = 0; i < 8; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, " s%d", i);
	off += (size_t)snprintf(text + off, sizeof(text) - off, "\n");
	for (int i = 0; i < 32; i++)   /* the 33rd stage overall is s31 */
		off += (size_t)snprintf(text + off, sizeof(text) - off,
		    "[stage s%d]\nexec = telem-egress-cma\n", i);
	struct pipeline p;
	char err[PIPELINE_ERR_MAX], want[256];
	cr_assert_eq(load_text(&p, text, err, sizeof(err)), -1);
	/* in takes 4 lines, each stage 2: s31's header is line 4 + 62 + 1. */
	snprintf(want, sizeof(want), "%s:67: more than 32 stages", path);
	cr_expect_str_eq(err, want);
}

Test(pipeline, file_that_cannot_be_opened)
{
	struct pipeline p;
	char err[PIPELINE_ERR_MAX], want[256], none[128];
	snprintf(none, sizeof(none), "%s/none.conf", dir);
	cr_assert_eq(pipeline_load(&p, none, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s/none.conf: No such file or directory", dir);
	cr_expect_str_eq(err, want);
	snprintf(want, sizeof(want), "%s", dir);   /* a folder: read fails */
	cr_expect_eq(pipeline_load(&p, want, err, sizeof(err)), -1);
	cr_expect_not_null(strstr(err, "Is a directory"), "%s", err);
	snprintf(want, sizeof(want), "%s: Is a directory", dir);
	cr_expect_str_eq(err, want);
}

/* A FIFO nobody writes would hold pipeline_load (and so a reload, in the
 * supervisor's poll loop) in open(2) for good, and a device such as
 * /dev/urandom would be read for ever: only a regular file is read. */
Test(pipeline, only_a_regular_file_is_read)
{
	struct pipeline p;
	char err[PIPELINE_ERR_MAX], want[256], fifo[128];
	snprintf(fifo, sizeof(fifo), "%s/fifo.conf", dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0, "mkfifo: %s", strerror(errno));
	alarm(5);   /* without the check open(2) waits for a writer */
	cr_assert_eq(pipeline_load(&p, fifo, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: not a regular file", fifo);
	cr_expect_str_eq(err, want);
	cr_assert_eq(pipeline_load(&p, "/dev/urandom", err, sizeof(err)), -1);
	cr_expect_str_eq(err, "/dev/urandom: not a regular file");
	alarm(0);
	cr_expect_eq(p.nstage, 0);
	pipeline_free(&p);
}

Test(pipeline, longest_line_is_accepted)
{
	char text[1024], arg[256];
	memset(arg, 'y', sizeof(arg));
	arg[197 - strlen("args = ")] = '\0';
	snprintf(text, sizeof(text), IN "args = %s\n", arg);
	struct pipeline p;
	must_load(&p, text);
	cr_expect_eq(strlen(p.stage[0].argv[0]), 197 - strlen("args = "));
	pipeline_free(&p);
}

Test(pipeline, arguments_the_supervisor_gives_itself)
{
	static const char *const no[][2] = {
		{ "--slot", "slot" }, { "--slot=3", "slot" }, { "--sl", "slot" },
		{ "--in", "in" }, { "--i", "instance" }, { "--instance=x", "instance" },
		{ "--out=a", "out" }, { "--ready-fd", "ready-fd" }, { "--udp-fd=4", "udp-fd" },
		{ "--transport", "transport" }, { "-i", "instance" }, { "-t", "transport" },
		{ "-vi", "instance" }, { "-qt", "transport" }, { "-ishm", "instance" },
	};
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		const char *r = pipeline_arg_reserved(no[i][0]);
		cr_expect(r != NULL && strcmp(r, no[i][1]) == 0, "%s: %s", no[i][0],
		    r ? r : "(null)");
	}
	static const char *const yes[] = { "--keep-below", "-1", "--input",
	    "--outer", "--state", "-n", "ckms", "-v", "--", "-", "", "--prefix",
	    "--max-names=5", "in", "--slots" };
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		cr_expect_null(pipeline_arg_reserved(yes[i]), "%s", yes[i]);
}

/* ------------------------------------------------------------------ */
/* Valid files. */

static const char nine[] =
    "; nine stages: one ingest, four filters, four egresses\n"
    "[pipeline]\n"
    "transport = shm\n"
    "msg_bytes = 1024\n"
    "flush_ms = 200\n"
    "[stage ingest]\n"
    "exec = telem-ingest\n"
    "udp = [::1]:0\n"
    "out = f1 f2 f3 f4   ; all four filters\n"
    "[stage f1]\nexec = telem-filter\nargs = --keep-below 10\nout = e1\nflush = yes\n"
    "[stage f2]\nexec = telem-filter\nargs = --keep-above 10\nout = e2\nflush = yes\n"
    "[stage f3]\nexec = telem-filter\nargs = --keep-below 1000\nout = e3\nflush = yes\n"
    "[stage f4]\nexec = /opt/telem/my-filter\nargs = --keep-above 1000\nout = e4\nflush = no\n"
    "[stage e1]\nexec = telem-egress-ckms\nargs = --error 0.01\n"
    "[stage e2]\nexec = telem-egress-cma\n"
    "[stage e3]\nexec = telem-egress-ckms\nargs = --error 0.001\n"
    "[stage e4]\nexec = telem-egress-cma\n";

static void
expect_order(const struct pipeline *p, const char *want)
{
	char got[1024] = "";
	for (int i = 0; i < p->nstage; i++) {
		strcat(got, i ? " " : "");
		strcat(got, p->stage[p->order[i]].name);
	}
	cr_expect_str_eq(got, want);
}

Test(pipeline, nine_stages)
{
	struct pipeline p;
	must_load(&p, nine);
	cr_expect_eq(p.nstage, 9);
	cr_expect_eq(p.transport, CHAN_SHM);
	cr_expect_eq(p.msg_bytes, 1024);
	cr_expect_eq(p.flush_ms, 200);
	cr_expect_eq(pipeline_nqueues(&p), 8);
	const struct pipeline_stage *in = &p.stage[0];
	cr_expect_str_eq(in->name, "ingest");
	cr_expect(in->udp);
	cr_expect_str_eq(in->udp_host, "::1");
	cr_expect_str_eq(in->udp_port, "0");
	cr_expect(!in->in_queue);
	cr_expect_eq(in->nout, 4);
	for (int k = 0; k < 4; k++)
		cr_expect_eq(in->out[k], 1 + k);
	for (int i = 1; i <= 8; i++)
		cr_expect(p.stage[i].in_queue, "%s has an in-queue", p.stage[i].name);
	cr_expect(p.stage[1].flush);
	cr_expect(!p.stage[4].flush);
	cr_expect_str_eq(p.stage[4].exec, "/opt/telem/my-filter");
	cr_expect_eq(p.stage[5].nargs, 2);
	cr_expect_str_eq(p.stage[7].argv[1], "0.001");
	cr_expect_null(p.stage[7].argv[2]);
	cr_expect_eq(p.stage[6].nargs, 0);
	cr_expect_eq(p.stage[0].line.udp, 8);
	cr_expect_eq(p.stage[4].line.exec, 26);
	expect_order(&p, "e1 e2 e3 e4 f1 f2 f3 f4 ingest");
	char buf[256];
	cr_expect_eq(pipeline_exec_path(&p.stage[1], "/b", buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "/b/telem-filter");
	cr_expect_eq(pipeline_exec_path(&p.stage[4], "/b", buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "/opt/telem/my-filter");
	cr_expect_eq(pipeline_exec_path(&p.stage[4], "/b", buf, 5), -1);
	cr_expect_eq(pipeline_find(&p, "f3"), 3);
	cr_expect_eq(pipeline_find(&p, "f5"), -1);
	pipeline_free(&p);
}

Test(pipeline, defaults_without_a_pipeline_section)
{
	struct pipeline p;
	must_load(&p, IN "out = a\n" SINK("a"));
	cr_expect_eq(p.transport, CHAN_MQUEUE);
	cr_expect_eq(p.msg_bytes, PIPELINE_MSG_AUTO);
	cr_expect_eq(p.flush_ms, 1000);
	cr_expect_eq(p.line.section, 0);
	pipeline_free(&p);
}

Test(pipeline, quotes_in_args)
{
	struct pipeline p;
	must_load(&p, IN "args = plain  \"two words\"\t--x=\"a b\"c \"\" \"q\\\"uote\" "
	    "\"back\\\\slash\" \"semi \\; colon\" back\\slash a;b \"tab\there\"   ; comment\n");
	static const char *const want[] = { "plain", "two words", "--x=a bc", "",
	    "q\"uote", "back\\slash", "semi ; colon", "back\\slash", "a;b", "tab\there" };
	const struct pipeline_stage *st = &p.stage[0];
	cr_assert_eq(st->nargs, 10);
	for (int i = 0; i < 10; i++)
		cr_expect_str_eq(st->argv[i], want[i], "arg %d", i);
	cr_expect_null(st->argv[10]);
	pipeline_free(&p);
}

Test(pipeline, start_order_is_downstream_first_and_stable)
{
	struct pipeline p;
	/* A diamond written sinks-last, with a side branch: levels d=0, e=0,
	 * b=1, c=1 (c also feeds e), a=2, in=3. */
	must_load(&p, IN "out = a\n"
	    "[stage a]\nexec = x\nout = c b\n"
	    "[stage b]\nexec = x\nout = d\n"
	    "[stage c]\nexec = x\nout = e d\n"
	    "[stage e]\nexec = x\n"
	    "[stage d]\nexec = x\n");
	expect_order(&p, "e d b c a in");
	cr_expect_eq(p.stage[pipeline_find(&p, "a")].level, 2);
	pipeline_free(&p);
	/* The same graph written in another order starts in another order,
	 * still downstream first, ties in file order. */
	must_load(&p, "[stage d]\nexec = x\n[stage e]\nexec = x\n"
	    "[stage c]\nexec = x\nout = e d\n[stage b]\nexec = x\nout = d\n"
	    "[stage a]\nexec = x\nout = c b\n" IN "out = a\n");
	expect_order(&p, "d e c b a in");
	pipeline_free(&p);
}

Test(pipeline, names_and_hosts_that_are_fine)
{
	struct pipeline p;
	must_load(&p, "[stage a_b-9]\nexec = x\nudp = localhost:1990\n"
	    "[stage abcdefghijklmno]\nexec = x\nudp = my-host.example.org:65535\n"
	    "[stage c]\nexec = x\nudp = [fe80::1]:7\n"
	    "[stage d]\nexec = x\nudp: 10.0.0.1:8\n");
	cr_expect_str_eq(p.stage[1].name, "abcdefghijklmno");
	cr_expect_str_eq(p.stage[1].udp_host, "my-host.example.org");
	cr_expect_str_eq(p.stage[2].udp_host, "fe80::1");
	cr_expect_str_eq(p.stage[3].udp_port, "8");
	pipeline_free(&p);
	/* Two stages on port 0 get two ports of the kernel's choosing. */
	must_load(&p, "[stage a]\nexec = x\nudp = 127.0.0.1:0\n"
	    "[stage b]\nexec = x\nudp = 127.0.0.1:0\n");
	cr_expect_eq(p.nstage, 2);
	pipeline_free(&p);
}

Test(pipeline, check_execs)
{
	struct pipeline p;
	char err[PIPELINE_ERR_MAX], want[256];
	must_load(&p, "[stage in]\nexec = /bin/sh\nudp = 127.0.0.1:1\nout = a\n"
	    "[stage a]\nexec = no-such-stage\n");
	cr_expect_eq(pipeline_check_execs(&p, "/bin", err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:6: exec /bin/no-such-stage: No such file "
	    "or directory", path);
	cr_expect_str_eq(err, want);
	pipeline_free(&p);
	must_load(&p, "[stage in]\nexec = /bin/sh\nudp = 127.0.0.1:1\nout = a\n"
	    "[stage a]\nexec = true\n");
	cr_expect_eq(pipeline_check_execs(&p, "/bin", err, sizeof(err)), 0, "%s", err);
	pipeline_free(&p);
	/* A folder passes access(X_OK) but is no program: execve would
	 * refuse it only once the pipeline is being started. */
	must_load(&p, "[stage in]\nexec = /bin/sh\nudp = 127.0.0.1:1\nout = a\n"
	    "[stage a]\nexec = /tmp\n");
	cr_expect_eq(pipeline_check_execs(&p, "/bin", err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:6: exec /tmp: Is a directory", path);
	cr_expect_str_eq(err, want);
	pipeline_free(&p);
}

/* ------------------------------------------------------------------ */
/* The built-in pipeline, printing and parsing back. */

static const char *
arg_line(const struct pipeline_stage *st)
{
	static char buf[1024];
	buf[0] = '\0';
	for (int i = 0; i < st->nargs; i++) {
		strcat(buf, i ? " " : "");
		strcat(buf, st->argv[i]);
	}
	return buf;
}

static const char *
out_line(const struct pipeline *p, const struct pipeline_stage *st)
{
	static char buf[1024];
	buf[0] = '\0';
	for (int i = 0; i < st->nout; i++) {
		strcat(buf, i ? " " : "");
		strcat(buf, p->stage[st->out[i]].name);
	}
	return buf;
}

/* The seed's topology: ingest on UDP 127.0.0.1:1990 to low and high, low
 * (value <= limit) to ckms, high (>= limit) to cma; Flush into the
 * filters; started ckms, cma, low, high, ingest. */
static void
expect_seed(const struct pipeline *p, const char *limit, const char *eps)
{
	char a[64];
	cr_assert_eq(p->nstage, 5);
	expect_order(p, "ckms cma low high ingest");
	int in = pipeline_find(p, "ingest"), lo = pipeline_find(p, "low"),
	    hi = pipeline_find(p, "high"), ck = pipeline_find(p, "ckms"),
	    cm = pipeline_find(p, "cma");
	cr_assert(in >= 0 && lo >= 0 && hi >= 0 && ck >= 0 && cm >= 0);
	cr_expect_str_eq(p->stage[in].exec, "telem-ingest");
	cr_expect_str_eq(out_line(p, &p->stage[in]), "low high");
	cr_expect(p->stage[in].udp && !p->stage[in].in_queue && !p->stage[in].flush);
	cr_expect_eq(p->stage[in].nargs, 0);
	cr_expect_str_eq(p->stage[lo].exec, "telem-filter");
	snprintf(a, sizeof(a), "--keep-below %s", limit);
	cr_expect_str_eq(arg_line(&p->stage[lo]), a);
	cr_expect_str_eq(out_line(p, &p->stage[lo]), "ckms");
	cr_expect(p->stage[lo].flush && p->stage[lo].in_queue);
	cr_expect_str_eq(p->stage[hi].exec, "telem-filter");
	snprintf(a, sizeof(a), "--keep-above %s", limit);
	cr_expect_str_eq(arg_line(&p->stage[hi]), a);
	cr_expect_str_eq(out_line(p, &p->stage[hi]), "cma");
	cr_expect(p->stage[hi].flush && p->stage[hi].in_queue);
	cr_expect_str_eq(p->stage[ck].exec, "telem-egress-ckms");
	snprintf(a, sizeof(a), "--error %s", eps);
	cr_expect_eq(strncmp(arg_line(&p->stage[ck]), a, strlen(a)), 0, "%s",
	    arg_line(&p->stage[ck]));
	cr_expect(p->stage[ck].in_queue && !p->stage[ck].flush && p->stage[ck].nout == 0);
	cr_expect_str_eq(p->stage[cm].exec, "telem-egress-cma");
	cr_expect(p->stage[cm].in_queue && !p->stage[cm].flush && p->stage[cm].nout == 0);
	cr_expect_eq(pipeline_nqueues(p), 4);
}

Test(pipeline, builtin_is_the_seed)
{
	struct pipeline_opts o;
	struct pipeline p;
	char err[PIPELINE_ERR_MAX];
	pipeline_opts_default(&o);
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), 0, "%s", err);
	expect_seed(&p, "100", "0.01");
	cr_expect_str_eq(arg_line(&p.stage[pipeline_find(&p, "ckms")]), "--error 0.01");
	cr_expect_eq(p.stage[pipeline_find(&p, "cma")].nargs, 0);
	const struct pipeline_stage *in = &p.stage[pipeline_find(&p, "ingest")];
	cr_expect_str_eq(in->udp_host, "127.0.0.1");
	cr_expect_str_eq(in->udp_port, "1990");
	cr_expect_eq(p.transport, CHAN_MQUEUE);
	cr_expect_eq(p.msg_bytes, PIPELINE_MSG_AUTO);
	cr_expect_eq(p.flush_ms, 1000);
	cr_expect_str_eq(p.file, "built-in pipeline");
	pipeline_free(&p);
}

Test(pipeline, builtin_with_options)
{
	struct pipeline_opts o;
	struct pipeline p;
	char err[PIPELINE_ERR_MAX];
	pipeline_opts_default(&o);
	o.host = "::1";
	o.port = "0";
	o.limit = 4294967295u;
	o.eps = 0.001;
	o.flush_ms = 250;
	o.transport = CHAN_SHM;
	o.msg_bytes = 1024;
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), 0, "%s", err);
	expect_seed(&p, "4294967295", "0.001");
	pipeline_free(&p);
	/* -g and --prom: a sink stage each, fed by both egresses, started
	 * first and sent no Flush. */
	o.graphite = "carbon.example.org:2003";
	o.graphite_prefix = "a\"b\\c;d";
	o.graphite_buffer = "1024";
	o.prom = "127.0.0.1:9108";
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p.nstage, 7);
	expect_order(&p, "carbon prom ckms cma low high ingest");
	const struct pipeline_stage *eck = &p.stage[pipeline_find(&p, "ckms")],
	    *ecm = &p.stage[pipeline_find(&p, "cma")],
	    *sca = &p.stage[pipeline_find(&p, "carbon")],
	    *spr = &p.stage[pipeline_find(&p, "prom")];
	cr_expect_str_eq(arg_line(eck), "--error 0.001");
	cr_expect_eq(ecm->nargs, 0);
	cr_expect_str_eq(out_line(&p, eck), "carbon prom");
	cr_expect_str_eq(out_line(&p, ecm), "carbon prom");
	cr_expect_str_eq(sca->exec, "telem-sink-carbon");
	cr_expect_str_eq(arg_line(sca), "--graphite carbon.example.org:2003 "
	    "--graphite-prefix a\"b\\c;d --graphite-buffer 1024");
	cr_expect(sca->in_queue && !sca->flush && sca->nout == 0);
	cr_expect_str_eq(spr->exec, "telem-sink-prom");
	cr_expect_str_eq(arg_line(spr), "--listen 127.0.0.1:9108");
	cr_expect(spr->in_queue && !spr->flush && spr->nout == 0);
	cr_expect_eq(pipeline_nqueues(&p), 6);
	const struct pipeline_stage *in = &p.stage[pipeline_find(&p, "ingest")];
	cr_expect_str_eq(in->udp_host, "::1");
	cr_expect_str_eq(in->udp_port, "0");
	cr_expect_eq(p.transport, CHAN_SHM);
	cr_expect_eq(p.msg_bytes, 1024);
	cr_expect_eq(p.flush_ms, 250);
	pipeline_free(&p);
	/* An eps that needs 17 digits comes back as the same double. */
	o.eps = 0.1 + 0.2;
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(strtod(p.stage[pipeline_find(&p, "ckms")].argv[1], NULL), 0.1 + 0.2);
	pipeline_free(&p);
}

/* -g, --graphite-prefix and --graphite-buffer each within their limits
 * can make carbon's args longer than a file's line: said as such (it was
 * "built-in pipeline:36: the line is longer than 197 characters"). */
Test(pipeline, builtin_too_long_for_a_file_names_the_stage)
{
	struct pipeline_opts o;
	struct pipeline p;
	char err[PIPELINE_ERR_MAX], prefix[129];
	pipeline_opts_default(&o);
	memset(prefix, 'p', 128);
	prefix[128] = '\0';
	o.graphite = "127.0.0.1:2003";
	o.graphite_prefix = prefix;
	o.graphite_buffer = "1073741824";
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), -1);
	cr_expect_str_eq(err, "built-in pipeline: the options make stage carbon's "
	    "line 'args = --graphite 127.0.0.1:2003 --graph...' 208 characters "
	    "long, more than the 197 a line of a pipeline file holds: shorten them");
	cr_expect_eq(p.nstage, 0);
	o.graphite_buffer = NULL;   /* 179 characters: fine */
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), 0, "%s", err);
	expect_round_trip(&p);
	pipeline_free(&p);
}

Test(pipeline, builtin_refuses_a_bad_host)
{
	struct pipeline_opts o;
	struct pipeline p;
	char err[PIPELINE_ERR_MAX];
	pipeline_opts_default(&o);
	o.host = "no such host";
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), -1);
	cr_expect_str_eq(err, "built-in pipeline:8: udp 'no such host:1990': not an "
	    "IPv4 address or host name");
}

static char *
print_to_string(const struct pipeline *p)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_not_null(f);
	cr_assert_eq(pipeline_print(f, p), 0);
	cr_assert_eq(fclose(f), 0);
	return text;
}

/* print, parse back: the same pipeline, and printing that gives the same
 * text; every printed line fits the limit. */
static void
expect_round_trip(const struct pipeline *p)
{
	char *text = print_to_string(p), err[PIPELINE_ERR_MAX];
	struct pipeline q;
	cr_assert_eq(pipeline_parse_string(&q, "printed", text, err, sizeof(err)), 0,
	    "%s\n%s", err, text);
	cr_expect(pipeline_equal(p, &q), "not equal after the round trip:\n%s", text);
	char *again = print_to_string(&q);
	cr_expect_str_eq(again, text);
	for (char *l = text, *nl; *l; l = nl + 1) {
		nl = strchr(l, '\n');
		cr_assert_not_null(nl);
		cr_expect_leq(nl - l, PIPELINE_LINE_MAX);
	}
	free(again);
	free(text);
	pipeline_free(&q);
}

Test(pipeline, print_and_parse_back)
{
	struct pipeline_opts o;
	struct pipeline p;
	char err[PIPELINE_ERR_MAX];
	pipeline_opts_default(&o);
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), 0, "%s", err);
	expect_round_trip(&p);
	pipeline_free(&p);
	o.host = "fe80::2";
	o.graphite = "[::1]:2003";
	o.graphite_prefix = "x;y";
	o.msg_bytes = 1100;
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), 0, "%s", err);
	expect_round_trip(&p);
	pipeline_free(&p);
	must_load(&p, nine);
	expect_round_trip(&p);
	pipeline_free(&p);
	must_load(&p, IN "args = plain \"two words\" \"\" \"q\\\"uote\" \"back\\\\slash\" "
	    "\"semi \\; colon\" \";x\" back\\slash \"tab\there\" \"end \"\n");
	cr_expect_str_eq(p.stage[0].argv[6], ";x");
	expect_round_trip(&p);
	pipeline_free(&p);
}

Test(pipeline, equal_sees_differences)
{
	struct pipeline a, b;
	must_load(&a, nine);
	must_load(&b, nine);
	cr_expect(pipeline_equal(&a, &b));
	pipeline_free(&b);
	char *text = strdup(nine);
	*strstr(text, "0.001") = '9';   /* e3's error bound */
	must_load(&b, text);
	cr_expect(!pipeline_equal(&a, &b));
	free(text);
	pipeline_free(&b);
	pipeline_free(&a);
}

/* ------------------------------------------------------------------ */
/* The diff a reload acts on. */

static const char *
names(const struct pipeline *p, const int *idx, int n)
{
	static char buf[4][512];
	static int k;
	char *b = buf[k++ % 4];
	b[0] = '\0';
	for (int i = 0; i < n; i++) {
		strcat(b, i ? " " : "");
		strcat(b, p->stage[idx[i]].name);
	}
	return b;
}

/* A stage a reload added and then took back out (supervisor/reload.c):
 * the pipeline is the one without it, as far as a diff can tell. */
Test(pipeline, drop_takes_a_stage_and_its_outs_out)
{
	struct pipeline old, p;
	struct pipeline_diff d;
	must_load(&old, "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:1990\n"
	    "out = low high\n"
	    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\n"
	    "out = ckms\nflush = yes\n"
	    "[stage high]\nexec = telem-filter\nargs = --keep-above 100\nout = cma\n"
	    "flush = yes\n"
	    "[stage ckms]\nexec = telem-egress-ckms\n"
	    "[stage cma]\nexec = telem-egress-cma\n");
	must_load(&p, "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:1990\n"
	    "out = low high\n"
	    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\n"
	    "out = fine ckms\nflush = yes\n"
	    "[stage fine]\nexec = telem-egress-ckms\nargs = --error 0.001\n"
	    "[stage high]\nexec = telem-filter\nargs = --keep-above 100\nout = cma\n"
	    "flush = yes\n"
	    "[stage ckms]\nexec = telem-egress-ckms\n"
	    "[stage cma]\nexec = telem-egress-cma\n");
	pipeline_drop(&p, pipeline_find(&p, "fine"));
	cr_assert_eq(p.nstage, 5);
	cr_expect_eq(pipeline_find(&p, "fine"), -1);
	cr_expect_str_eq(names(&p, p.stage[pipeline_find(&p, "low")].out,
	    p.stage[pipeline_find(&p, "low")].nout), "ckms");
	cr_expect_str_eq(names(&p, p.stage[pipeline_find(&p, "high")].out,
	    p.stage[pipeline_find(&p, "high")].nout), "cma");
	cr_expect_str_eq(names(&p, p.order, p.nstage), "ckms cma low high ingest");
	pipeline_diff(&old, &p, &d);
	cr_expect_eq(d.nadded + d.nremoved + d.nchanged, 0);
	cr_expect(pipeline_equal(&old, &p));
	pipeline_free(&p);
	pipeline_free(&old);
}

static const char with_mid[] =
    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:1990\nout = low\n"
    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\n"
    "out = mid\nflush = yes\n"
    "[stage mid]\nexec = telem-filter\nargs = --keep-above 5\nout = ckms\n"
    "[stage ckms]\nexec = telem-egress-ckms\n";

/* A removed stage a reload puts back (supervisor/reload.c
 * sup_reload_undo): its entry, taken over, then its outs and its writer's
 * out to it; the pipeline is the one before the reload, as far as a diff
 * can tell. A link that would close a cycle is refused. */
Test(pipeline, put_and_link_bring_a_removed_stage_back)
{
	struct pipeline old, p;
	struct pipeline_diff d;
	must_load(&old, with_mid);
	must_load(&p, "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:1990\n"
	    "out = low\n"
	    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\n"
	    "flush = yes\nout = ckms\n"
	    "[stage ckms]\nexec = telem-egress-ckms\n");
	pipeline_diff(&old, &p, &d);
	cr_assert_eq(d.nremoved, 1);
	struct pipeline_stage st = old.stage[d.removed[0]];
	int mid = pipeline_put(&p, &old.stage[d.removed[0]]);
	cr_assert_eq(mid, 3);
	cr_expect_eq(old.stage[d.removed[0]].exec, NULL, "taken over");
	cr_expect_str_eq(p.stage[mid].name, "mid");
	cr_expect_eq(p.stage[mid].exec, st.exec);
	cr_expect_eq(p.stage[mid].nout, 0);
	int low = pipeline_find(&p, "low"), ckms = pipeline_find(&p, "ckms");
	cr_assert_eq(pipeline_link(&p, mid, ckms), 0);
	cr_assert_eq(pipeline_link(&p, low, mid), 0);
	cr_expect_eq(pipeline_link(&p, low, mid), 0, "a link there already");
	cr_expect_eq(pipeline_link(&p, ckms, low), -1, "a cycle");
	cr_expect_eq(pipeline_link(&p, mid, low), -1, "a cycle");
	cr_expect_str_eq(names(&p, p.stage[low].out, p.stage[low].nout), "ckms mid");
	cr_expect_str_eq(names(&p, p.order, p.nstage), "ckms mid low ingest");
	cr_expect_eq(p.stage[ckms].nout, 0);
	/* low keeps ckms, which the file gave it: that much differs from
	 * the pipeline before (old lent its entry of mid). */
	pipeline_free(&old);
	must_load(&old, with_mid);
	pipeline_diff(&old, &p, &d);
	cr_expect_eq(d.nadded + d.nremoved, 0);
	cr_expect_eq(d.nchanged, 1);
	cr_expect_eq(d.what[low], PIPELINE_CH_OUT);
	pipeline_free(&p);
	pipeline_free(&old);
}

Test(pipeline, diff_for_reload)
{
	struct pipeline_opts o;
	struct pipeline old, new;
	struct pipeline_diff d;
	char err[PIPELINE_ERR_MAX];
	pipeline_opts_default(&o);
	cr_assert_eq(pipeline_builtin(&old, &o, err, sizeof(err)), 0, "%s", err);
	/* Add an egress behind low, change high's limit, drop nothing. */
	must_load(&new, "[pipeline]\nflush_ms = 500\n"
	    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:1990\nout = high low\n"
	    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\nout = ckms fine\nflush = yes\n"
	    "[stage high]\nexec = telem-filter\nargs = --keep-above 50\nout = cma\nflush = yes\n"
	    "[stage ckms]\nexec = telem-egress-ckms\nargs = --error 0.01\n"
	    "[stage fine]\nexec = telem-egress-ckms\nargs = --error 0.001\n"
	    "[stage cma]\nexec = telem-egress-cma\n");
	pipeline_diff(&old, &new, &d);
	cr_expect_str_eq(names(&new, d.added, d.nadded), "fine");
	cr_expect_eq(d.nremoved, 0);
	cr_expect_str_eq(names(&new, d.changed, d.nchanged), "low high");
	/* ingest's out is the same set in another order: untouched. */
	cr_expect_str_eq(names(&new, d.unchanged, d.nunchanged), "ckms cma ingest");
	cr_expect_eq(d.what[pipeline_find(&new, "low")], PIPELINE_CH_OUT);
	cr_expect_eq(d.what[pipeline_find(&new, "high")], PIPELINE_CH_ARGS);
	cr_expect_eq(d.what[pipeline_find(&new, "ingest")], 0);
	cr_expect_eq(d.old_of[pipeline_find(&new, "cma")], pipeline_find(&old, "cma"));
	cr_expect_eq(d.old_of[pipeline_find(&new, "fine")], -1);
	cr_expect_eq(d.pipeline, PIPELINE_CH_FLUSH_MS);

	/* Back again: fine is removed, low and high change back. */
	pipeline_diff(&new, &old, &d);
	cr_expect_str_eq(names(&new, d.removed, d.nremoved), "fine");
	cr_expect_eq(d.nadded, 0);
	cr_expect_str_eq(names(&old, d.changed, d.nchanged), "low high");
	pipeline_free(&new);

	/* Remove the high branch; ingest's out changes; an exec change and
	 * a flush-only change; a stage that gains an in-queue. */
	must_load(&new, "[pipeline]\ntransport = shm\nmsg_bytes = 1024\n"
	    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:1990\nout = low\n"
	    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\nout = ckms\n"
	    "[stage ckms]\nexec = /usr/local/bin/my-ckms\nargs = --error 0.01\n");
	pipeline_diff(&old, &new, &d);
	cr_expect_eq(d.nadded, 0);
	cr_expect_str_eq(names(&old, d.removed, d.nremoved), "high cma",
	    "upstream first: the stop order");
	cr_expect_str_eq(names(&new, d.changed, d.nchanged), "ckms ingest");
	cr_expect_eq(d.what[pipeline_find(&new, "ckms")], PIPELINE_CH_EXEC);
	cr_expect_eq(d.what[pipeline_find(&new, "ingest")], PIPELINE_CH_OUT);
	cr_expect_str_eq(names(&new, d.unchanged, d.nunchanged), "low");
	cr_expect_eq(d.what[pipeline_find(&new, "low")], PIPELINE_CH_FLUSH);
	cr_expect_eq(d.pipeline, PIPELINE_CH_TRANSPORT | PIPELINE_CH_MSG_BYTES);
	pipeline_free(&new);

	/* An unchanged file: nothing to do. */
	cr_assert_eq(pipeline_builtin(&new, &o, err, sizeof(err)), 0, "%s", err);
	pipeline_diff(&old, &new, &d);
	cr_expect_eq(d.nadded + d.nremoved + d.nchanged, 0);
	cr_expect_eq(d.nunchanged, 5);
	cr_expect_eq(d.pipeline, 0);
	pipeline_free(&new);
	pipeline_free(&old);
}

Test(pipeline, diff_in_queue_and_udp)
{
	struct pipeline a, b;
	struct pipeline_diff d;
	must_load(&a, IN "out = x\n[stage x]\nexec = e\n[stage y]\nexec = e\nudp = 127.0.0.1:2\n");
	must_load(&b, "[stage in]\nexec = telem-ingest\nudp = 127.0.0.1:1991\nout = x y\n"
	    "[stage x]\nexec = e\n[stage y]\nexec = e\nudp = 127.0.0.1:2\n");
	pipeline_diff(&a, &b, &d);
	cr_expect_eq(d.what[pipeline_find(&b, "y")], PIPELINE_CH_IN);
	cr_expect_eq(d.what[pipeline_find(&b, "in")], PIPELINE_CH_UDP | PIPELINE_CH_OUT);
	cr_expect_eq(d.what[pipeline_find(&b, "x")], 0);
	pipeline_free(&a);
	pipeline_free(&b);
}

/* ------------------------------------------------------------------ */
/* msg_bytes = auto. */

Test(pipeline, mq_charge_is_the_kernels)
{
	/* 48-byte struct msg_msg and tree node on a 64-bit kernel. */
	if (sizeof(void *) != 8)
		SKIP("the figures below are a 64-bit kernel's");
	cr_expect_eq(pipeline_mq_charge(10, 8192), 82880);
	cr_expect_eq(pipeline_mq_charge(10, 512), 6080);
	cr_expect_eq(pipeline_mq_charge(1, 504), 600);
	cr_expect_eq(pipeline_mq_charge(40000, 1), 40000 * 49 + 32768 * 48);
	cr_expect_eq(pipeline_mq_charge(0, 512), 0);
}

Test(pipeline, auto_msg_bytes)
{
	char why[512];
	uint64_t one = pipeline_mq_charge(10, 8192);
	/* Room for all: 8192. */
	cr_expect_eq(pipeline_auto_msg_bytes(4, 10, 819200, 0, why, sizeof(why)), 8192);
	cr_expect_str_eq(why, "msg_bytes 8192: 4 queues of 10 messages need 331520 "
	    "bytes of RLIMIT_MSGQUEUE; limit 819200, in use 0");
	/* Exactly room for all. */
	cr_expect_eq(pipeline_auto_msg_bytes(4, 10, 819200, 819200 - 4 * one, why,
	    sizeof(why)), 8192);
	/* One byte short: the largest size that fits. */
	size_t s = pipeline_auto_msg_bytes(4, 10, 819200, 819200 - 4 * one + 1, why,
	    sizeof(why));
	cr_expect_eq(s, 8191, "%s", why);
	cr_expect_leq(4 * pipeline_mq_charge(10, (long)s), 4 * one - 1);
	/* Most of the budget in use by other queues. */
	s = pipeline_auto_msg_bytes(8, 10, 819200, 700000, why, sizeof(why));
	cr_expect_eq(s, 1394, "%s", why);
	cr_expect_leq(8 * pipeline_mq_charge(10, 1394), 819200 - 700000);
	cr_expect_gt(8 * pipeline_mq_charge(10, 1395), 819200 - 700000);
	cr_expect_str_eq(why, "msg_bytes 1394: 8192 would need 663040 bytes of "
	    "RLIMIT_MSGQUEUE for 8 queues of 10 messages; limit 819200, in use "
	    "700000 (other queues of this user)");
	/* The smallest size just fits, then does not. */
	uint64_t min = 4 * pipeline_mq_charge(10, 1024);
	cr_expect_eq(pipeline_auto_msg_bytes(4, 10, 819200, 819200 - min, why,
	    sizeof(why)), 1024);
	cr_expect_eq(pipeline_auto_msg_bytes(4, 10, 819200, 819200 - min + 1, why,
	    sizeof(why)), 0);
	cr_expect_str_eq(why, "msg_bytes = auto: 4 queues of 10 messages of 1024 bytes "
	    "need 44800 bytes of RLIMIT_MSGQUEUE; limit 819200, in use 774401; "
	    "remove unused queues in /dev/mqueue, raise the limit (ulimit -q), or "
	    "use the shm transport (-t shm, transport = shm)");
	/* More in use than the limit (another process raised it, then...). */
	cr_expect_eq(pipeline_auto_msg_bytes(1, 10, 1000, 5000, why, sizeof(why)), 0);
	cr_expect_not_null(strstr(why, "limit 1000, in use 5000"));
	/* No limit. */
	cr_expect_eq(pipeline_auto_msg_bytes(32, 10, RLIM_INFINITY, 0, why,
	    sizeof(why)), 8192);
	cr_expect_str_eq(why, "msg_bytes 8192: RLIMIT_MSGQUEUE is unlimited");
}

/* The kernel agrees: in a user namespace of its own (its own count of
 * the budget) a queue opens with a limit of exactly its charge, and not
 * with one byte less. */
static int
write_proc(const char *file, const char *text)
{
	int fd = open(file, O_WRONLY | O_CLOEXEC);
	ssize_t n = fd == -1 ? -1 : write(fd, text, strlen(text));
	if (fd != -1)
		close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int
open_with_limit(long maxmsg, long msgsize, uint64_t limit)
{
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit r = { limit, limit };
		struct mq_attr a = { .mq_maxmsg = maxmsg, .mq_msgsize = msgsize };
		char umap[32], gmap[32];
		snprintf(umap, sizeof(umap), "0 %d 1\n", (int)getuid());
		snprintf(gmap, sizeof(gmap), "0 %d 1\n", (int)getgid());
		if (unshare(CLONE_NEWUSER | CLONE_NEWIPC) == -1)
			_exit(3);
		/* A queue's owner and group must be ones the namespace can
		 * name, or mq_open fails with EOVERFLOW. */
		if (write_proc("/proc/self/uid_map", umap) == -1 ||
		    write_proc("/proc/self/setgroups", "deny") == -1 ||
		    write_proc("/proc/self/gid_map", gmap) == -1)
			_exit(6);
		if (setrlimit(RLIMIT_MSGQUEUE, &r) == -1)
			_exit(4);
		mqd_t q = mq_open("/telem-test-charge", O_CREAT | O_EXCL | O_RDWR, 0600, &a);
		if (q == (mqd_t)-1)
			_exit(errno == EMFILE ? 1 : 5);
		mq_close(q);
		mq_unlink("/telem-test-charge");
		_exit(0);
	}
	int st;
	cr_assert_neq(pid, -1);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

Test(pipeline, mq_charge_against_the_kernel)
{
	uint64_t c = pipeline_mq_charge(2, 600);
	int rc = open_with_limit(2, 600, c);
	if (rc == 3)
		SKIP("no user namespace here (unshare refused)");
	cr_expect_eq(rc, 0, "(exit %d) a queue did not open with a limit of its charge %llu",
	    rc, (unsigned long long)c);
	cr_expect_eq(open_with_limit(2, 600, c - 1), 1, "one byte less must be EMFILE");
	c = pipeline_mq_charge(1, 512);
	cr_expect_eq(open_with_limit(1, 512, c), 0);
	cr_expect_eq(open_with_limit(1, 512, c - 1), 1);
}

/* pipeline_msg_bytes in a child with a lowered RLIMIT_MSGQUEUE and an
 * empty folder for the user's queues: the four seed queues of msg_max
 * messages each. Returns what it picked, or -1. */
static long
msg_bytes_with_limit(const struct pipeline *p, uint64_t limit)
{
	int fds[2];
	long got = -1;
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit r = { limit, limit };
		char why[512];
		long v = -1;
		if (setrlimit(RLIMIT_MSGQUEUE, &r) == 0)
			v = (long)pipeline_msg_bytes(p, dir, why, sizeof(why));
		_exit(write(fds[1], &v, sizeof(v)) == sizeof(v) ? 0 : 1);
	}
	close(fds[1]);
	cr_assert_eq(read(fds[0], &got, sizeof(got)), (ssize_t)sizeof(got));
	close(fds[0]);
	waitpid(pid, NULL, 0);
	return got;
}

static long
msg_max(void)
{
	long v = 10;
	FILE *f = fopen("/proc/sys/fs/mqueue/msg_max", "r");
	if (f != NULL) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 10;
		fclose(f);
	}
	return v;
}

Test(pipeline, msg_bytes_for_a_pipeline)
{
	struct pipeline_opts o;
	struct pipeline p;
	char err[PIPELINE_ERR_MAX], why[512];
	pipeline_opts_default(&o);
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), 0, "%s", err);
	uint64_t one = pipeline_mq_charge(msg_max(), 8192);
	cr_expect_eq(msg_bytes_with_limit(&p, 4 * one), 8192);
	cr_expect_eq(msg_bytes_with_limit(&p, 4 * one - 4), 8191);
	cr_expect_eq(msg_bytes_with_limit(&p, 4 * pipeline_mq_charge(msg_max(),
	    1024) - 1), 0);
	/* An empty folder: nothing in use, and it says so. */
	cr_expect_eq(pipeline_msg_bytes(&p, dir, why, sizeof(why)), 8192);
	cr_expect_not_null(strstr(why, "in use 0"), "%s", why);
	cr_expect_eq(pipeline_msg_bytes(&p, "/nonexistent", why, sizeof(why)), 8192);
	cr_expect_not_null(strstr(why, "(the queues in use are not known: "
	    "/nonexistent: No such file or directory)"), "%s", why);
	pipeline_free(&p);
	o.msg_bytes = 2048;
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(pipeline_msg_bytes(&p, dir, why, sizeof(why)), 2048);
	pipeline_free(&p);
	o.msg_bytes = PIPELINE_MSG_AUTO;
	o.transport = CHAN_SHM;
	cr_assert_eq(pipeline_builtin(&p, &o, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(msg_bytes_with_limit(&p, 1000), 8192, "shm: no mqueue budget");
	pipeline_free(&p);
}

static char qname[2][96];

static void
unlink_queues(void)
{
	for (int i = 0; i < 2; i++)
		if (qname[i][0] != '\0')
			mq_unlink(qname[i]);
	teardown();
}

Test(pipeline, mq_usage_sums_this_users_queues, .fini = unlink_queues)
{
	struct stat sb;
	if (stat("/dev/mqueue", &sb) == -1)
		SKIP("/dev/mqueue is not mounted");
	char prefix[64];
	uint64_t bytes;
	int n, unknown;
	snprintf(prefix, sizeof(prefix), "telem.test-usage-%d.", (int)getpid());
	cr_assert_eq(pipeline_mq_usage("/dev/mqueue", getuid(), prefix, &bytes, &n,
	    &unknown), 0, "%s", strerror(errno));
	cr_expect_eq(bytes, 0);
	cr_expect_eq(n, 0);
	long attr[2][2] = { { 2, 600 }, { 1, 512 } };
	for (int i = 0; i < 2; i++) {
		struct mq_attr a = { .mq_maxmsg = attr[i][0], .mq_msgsize = attr[i][1] };
		snprintf(qname[i], sizeof(qname[i]), "/%s%c", prefix, 'a' + i);
		mqd_t q = mq_open(qname[i], O_CREAT | O_EXCL | O_RDWR, 0600, &a);
		cr_assert_neq(q, (mqd_t)-1, "mq_open %s: %s", qname[i], strerror(errno));
		mq_close(q);
	}
	cr_assert_eq(pipeline_mq_usage("/dev/mqueue", getuid(), prefix, &bytes, &n,
	    &unknown), 0);
	cr_expect_eq(n, 2);
	cr_expect_eq(unknown, 0);
	cr_expect_eq(bytes, pipeline_mq_charge(2, 600) + pipeline_mq_charge(1, 512));
	/* Another user's queues are not this user's. */
	cr_assert_eq(pipeline_mq_usage("/dev/mqueue", getuid() + 1, prefix, &bytes, &n,
	    &unknown), 0);
	cr_expect_eq(n, 0);
	cr_expect_eq(pipeline_mq_usage("/nonexistent-mqueue", getuid(), NULL, &bytes,
	    &n, &unknown), -1);
	cr_expect_eq(errno, ENOENT);
}

/* ------------------------------------------------------------------ */
/* The examples. */

static char *
read_all(const char *file)
{
	FILE *f = fopen(file, "r");
	cr_assert_not_null(f, "%s: %s", file, strerror(errno));
	char *text = NULL;
	size_t cap = 0;
	ssize_t n = getdelim(&text, &cap, '\0', f);
	cr_assert_gt(n, 0);
	fclose(f);
	return text;
}

Test(pipeline, example_seed_is_the_builtin_as_printed)
{
	struct pipeline_opts o;
	struct pipeline b, p;
	char err[PIPELINE_ERR_MAX];
	pipeline_opts_default(&o);
	cr_assert_eq(pipeline_builtin(&b, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(pipeline_load(&p, "examples/seed.conf", err, sizeof(err)), 0,
	    "%s", err);
	cr_expect(pipeline_equal(&b, &p));
	expect_seed(&p, "100", "0.01");
	char *printed = print_to_string(&b), *file = read_all("examples/seed.conf");
	cr_expect_str_eq(file, printed, "examples/seed.conf is not what "
	    "--print-pipeline prints");
	free(printed);
	free(file);
	pipeline_free(&p);
	pipeline_free(&b);
}

Test(pipeline, example_fanout)
{
	struct pipeline p;
	char err[PIPELINE_ERR_MAX];
	cr_assert_eq(pipeline_load(&p, "examples/fanout.conf", err, sizeof(err)), 0,
	    "%s", err);
	cr_expect_eq(p.nstage, 8);
	cr_expect_eq(pipeline_nqueues(&p), 7);
	int lo = pipeline_find(&p, "low"), fine = pipeline_find(&p, "ckms-fine"),
	    ck = pipeline_find(&p, "ckms"), tiny = pipeline_find(&p, "tiny");
	cr_assert(lo >= 0 && fine >= 0 && ck >= 0 && tiny >= 0);
	cr_expect_str_eq(out_line(&p, &p.stage[lo]), "ckms ckms-fine");
	cr_expect_str_eq(p.stage[fine].exec, "telem-egress-ckms");
	cr_expect_str_eq(arg_line(&p.stage[fine]), "--error 0.001");
	cr_expect_str_eq(arg_line(&p.stage[ck]), "--error 0.01");
	cr_expect_str_eq(p.stage[tiny].exec, "telem-filter");
	cr_expect_str_eq(arg_line(&p.stage[tiny]), "--keep-below 10");
	cr_expect(p.stage[tiny].flush);
	cr_expect_str_eq(out_line(&p, &p.stage[pipeline_find(&p, "ingest")]),
	    "low high tiny");
	expect_order(&p, "ckms ckms-fine cma cma-tiny low high tiny ingest");
	expect_round_trip(&p);
	pipeline_free(&p);
}

Test(pipeline, example_sinks_is_the_builtin_with_g_and_prom)
{
	struct pipeline_opts o;
	struct pipeline b, p;
	char err[PIPELINE_ERR_MAX];
	pipeline_opts_default(&o);
	o.graphite = "127.0.0.1:2003";
	o.graphite_prefix = "telem";
	o.prom = "127.0.0.1:9108";
	cr_assert_eq(pipeline_builtin(&b, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(pipeline_load(&p, "examples/sinks.conf", err, sizeof(err)), 0,
	    "%s", err);
	cr_expect(pipeline_equal(&b, &p));
	expect_order(&p, "carbon prom ckms cma low high ingest");
	cr_expect(p.stage[pipeline_find(&p, "ckms")].state);
	cr_expect(!p.stage[pipeline_find(&p, "prom")].state);
	expect_round_trip(&p);
	pipeline_free(&p);
	pipeline_free(&b);
}

/* ------------------------------------------------------------------ */
/* Mutated files (a fixed seed, so every run tries the same ones): each
 * is either refused with one "name:LINE: ..." line whose LINE is in the
 * file, or accepted, and then prints and parses back to the same. */

static unsigned long rng = 12345;

static unsigned
next_rand(void)
{
	rng = rng * 6364136223846793005UL + 1442695040888963407UL;
	return (unsigned)(rng >> 33);
}

static void
mutate(char *s, size_t cap)
{
	static const char alphabet[] = "[]=:;#\"\\ \t\nab-_0.1/";
	size_t n = strlen(s);
	for (int k = 1 + (int)(next_rand() % 4); k > 0; k--) {
		size_t at = n ? next_rand() % n : 0;
		char ch = alphabet[next_rand() % (sizeof(alphabet) - 1)];
		switch (next_rand() % 3) {
		case 0:   /* replace */
			if (n)
				s[at] = ch;
			break;
		case 1:   /* insert */
			if (n + 1 < cap) {
				memmove(s + at + 1, s + at, n - at + 1);
				s[at] = ch;
				n++;
			}
			break;
		default:  /* delete */
			if (n) {
				memmove(s + at, s + at + 1, n - at);
				n--;
			}
		}
	}
}

Test(pipeline, mutated_files)
{
	static const char *const bases[] = { nine, IN "out = a\n" SINK("a"),
	    "[pipeline]\nflush_ms = 5\n" IN "args = \"a b\" c\nout = a b\n"
	    SINK("a") "[stage b]\nexec = /x\nargs = \"\\\"\"\n" };
	int accepted = 0, refused = 0;
	for (int t = 0; t < 3000; t++) {
		char text[4096], err[PIPELINE_ERR_MAX], want[32];
		struct pipeline p;
		snprintf(text, sizeof(text), "%s", bases[t % 3]);
		mutate(text, sizeof(text));
		int lines = 1;
		for (const char *q = text; *q; q++)
			lines += *q == '\n';
		if (pipeline_parse_string(&p, "m", text, err, sizeof(err)) == 0) {
			accepted++;
			expect_round_trip(&p);
			pipeline_free(&p);
			continue;
		}
		refused++;
		int line = 0;
		cr_assert_eq(sscanf(err, "m:%d: ", &line), 1, "%s", err);
		cr_assert(line >= 1 && line <= lines, "line %d of %d: %s\n%s", line,
		    lines, err, text);
		snprintf(want, sizeof(want), "m:%d: ", line);
		cr_assert_gt(strlen(err), strlen(want), "%s", err);
		cr_assert_null(strchr(err, '\n'), "%s", err);
	}
	cr_expect_gt(accepted, 100, "the mutations left too few valid files");
	cr_expect_gt(refused, 100, "the mutations left too few invalid files");
}
