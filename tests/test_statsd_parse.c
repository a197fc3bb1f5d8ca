/* test_statsd_parse.c - the statsd line parser (ingest/statsd.c, with
 * JavaScript's Number() in ingest/jsstr.c): good lines
 * of every type, several per datagram, tags sorted; 40+ malformed lines each
 * counted bad; statsd 0.9.0's own verdicts in STATSD_COMPAT_090 mode.
 *
 * The COMPAT_090 expectations were checked against the real statsd 0.9.0
 * (npm statsd@0.9.0, node 20): each case was sent to it over UDP with
 * deleteIdleStats, its Graphite backend pointed at a loopback TCP listener,
 * and the flush that followed compared with this parser and
 * egress/statsd_agg.c fed the same datagrams (74 cases; the only
 * differences are the ones statsd.h lists: the empty key, 1000 tags,
 * "__proto__"). Strict-mode expectations follow docs/design.md §14. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/jsstr.h"
#include "ingest/statsd.h"
#include "tests/rng.h"

#define B(s) s, sizeof(s) - 1

/* The metrics of a datagram as text: one line each,
 * "<c|t|g|s>:KEY=VALUE[@RATE][~]" (~: gauge delta), sets "s:KEY=MEMBER",
 * and "#TAG" for each tag after a timer/counter/gauge/set line's key. */
struct out {
	char text[8192];
	size_t len;
};

static void
collect(void *ctx, const struct statsd_metric *m)
{
	struct out *o = ctx;
	static const char tc[] = "?ctgs";
	char *p = o->text + o->len;
	size_t room = sizeof(o->text) - o->len;
	int n;

	cr_assert_eq(m->key[m->key_len], '\0');
	cr_assert_leq(m->name_len, m->key_len);
	if (m->type == STATSD_SET)
		n = snprintf(p, room, "%c:%s=%s", tc[m->type], m->key, m->member);
	else
		n = snprintf(p, room, "%c:%s=%.17g", tc[m->type], m->key, m->value);
	if (m->rate != 1)
		n += snprintf(p + n, room - (size_t)n, "@%.17g", m->rate);
	if (m->delta)
		n += snprintf(p + n, room - (size_t)n, "~");
	for (size_t i = 0; i < m->ntags; i++)
		n += snprintf(p + n, room - (size_t)n, " #%.*s", (int)m->tags[i].len,
		    m->tags[i].s);
	n += snprintf(p + n, room - (size_t)n, "\n");
	o->len += (size_t)n;
}

/* Check what every metric must satisfy, and count it in o->len. */
static void
collect_count(void *ctx, const struct statsd_metric *m)
{
	struct out *o = ctx;

	cr_assert_leq(m->key_len, STATSD_KEY_MAX);
	cr_assert_eq(m->key[m->key_len], '\0');
	cr_assert_leq(m->name_len, m->key_len);
	cr_assert_leq(m->ntags, STATSD_TAGS_MAX);
	for (size_t i = 0; i < m->ntags; i++)
		cr_assert(m->tags[i].s > m->key &&
		    m->tags[i].s + m->tags[i].len <= m->key + m->key_len &&
		    m->tags[i].s[-1] == ';');
	if (m->type == STATSD_SET)
		cr_assert(m->member_len >= 1 && m->member_len <= STATSD_MEMBER_MAX &&
		    m->member[m->member_len] == '\0');
	else
		cr_assert(m->type >= STATSD_COUNTER && m->type <= STATSD_GAUGE);
	o->len++;
}

static struct statsd_result
run(enum statsd_mode mode, const char *in, size_t len, struct out *o)
{
	struct statsd_parser p;
	struct statsd_result r;
	size_t lines = 0;

	memset(o, 0, sizeof(*o));
	statsd_parser_init(&p, mode);
	statsd_parse(&p, in, len, collect, o, &r);
	for (size_t i = 0; i < o->len; i++)
		lines += o->text[i] == '\n';
	cr_assert_eq(r.metrics, lines, "one callback per good metric");
	return r;
}

struct good {
	const char *in;
	size_t len;
	const char *strict; /* NULL: bad in strict mode */
	const char *compat; /* NULL: bad in COMPAT_090 mode */
};

#define T64 "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22," \
	"23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42," \
	"43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62," \
	"63"

static const struct good goods[] = {
	{ B("a:1|c"), "c:a=1\n", "c:a=1\n" },
	{ B("a:1|c:2|c"), "c:a=1\nc:a=2\n", "c:a=1\nc:a=2\n" },
	{ B("a:3|c|@0.5"), "c:a=3@0.5\n", "c:a=3@0.5\n" },
	{ B("a:-1.5|c|@0.25"), "c:a=-1.5@0.25\n", "c:a=-1.5@0.25\n" },
	{ B("a:1|c|@1"), "c:a=1\n", "c:a=1\n" },
	{ B("a:1|c|@.5"), "c:a=1@0.5\n", "c:a=1@0.5\n" },
	{ B("a:1|c|@0.5 "), "c:a=1@0.5\n", "c:a=1@0.5\n" },
	{ B("g:5|g"), "g:g=5\n", "g:g=5\n" },
	{ B("g:+3|g"), "g:g=3~\n", "g:g=3~\n" },
	{ B("g:-10|g"), "g:g=-10~\n", "g:g=-10~\n" },
	{ B("g: +3|g"), "g:g=3\n", "g:g=3\n" },
	{ B("g:1|g "), "g:g=1\n", "g:g=1\n" },
	{ B("t:2|ms"), "t:t=2\n", "t:t=2\n" },
	{ B("t:2.25|ms|@0.1"), "t:t=2.25@0.10000000000000001\n",
	  "t:t=2.25@0.10000000000000001\n" },
	{ B("t:-0|ms"), "t:t=-0\n", "t:t=-0\n" },
	{ B("t:2|h"), "t:t=2\n", "c:t=2\n" },  /* statsd 0.9: "h" is a counter */
	{ B("t:2|d"), "t:t=2\n", "c:t=2\n" },
	{ B("s:abc|s"), "s:s=abc\n", "s:s=abc\n" },
	{ B("s:|s"), "s:s=0\n", "s:s=0\n" },
	{ B("s:1|s\r"), "s:s=1\n", "s:s=1\n" },
	{ B("a:1|c\r"), "c:a=1\n", "c:a=1\n" },
	{ B("a: 5 |c"), "c:a=5\n", "c:a=5\n" },
	{ B("a:5.|c"), "c:a=5\n", "c:a=5\n" },
	{ B("a:.5|c"), "c:a=0.5\n", "c:a=0.5\n" },
	{ B("a:1e3|c"), "c:a=1000\n", "c:a=1000\n" },
	{ B("a:+5|c"), "c:a=5\n", "c:a=5\n" },
	{ B("a:1|c|@0.5:2|ms"), "c:a=1@0.5\nt:a=2\n", "c:a=1@0.5\nt:a=2\n" },
	/* tags: sorted in strict mode, as sent in statsd's */
	{ B("tg:1|c|#env:prod,b:x"), "c:tg;b=x;env=prod=1 #b=x #env=prod\n",
	  "c:tg;env=prod;b=x=1 #env=prod #b=x\n" },
	{ B("tg:1|c|#k:v:w,a;b:c;d,noval,"),
	  "c:tg;a_b=c;d;k=vw;noval=1 #a_b=c #d #k=vw #noval\n",
	  "c:tg;k=vw;a_b=c;d;noval;=1 #k=vw #a_b=c #d #noval #\n" },
	{ B("tg:1|c|#x|#y"), "c:tg;x=1 #x\n", "c:tg;x=1 #x\n" },
	{ B("tg:1|c|#"), "c:tg=1\n", "c:tg=1\n" },
	{ B("nm;z=1;x=2:2|c"), "c:nm;x=2;z=1=2 #x=2 #z=1\n",
	  "c:nm;z=1;x=2=2 #z=1 #x=2\n" },
	{ B("a:1|c|#t:v|@0.5"), "c:a;t=v0.5=1 #t=v0.5\n", "c:a;t=v0.5=1 #t=v0.5\n" },
	{ B("a:1|c|#t:v\r"), "c:a;t=v=1 #t=v\n", "c:a;t=v_=1 #t=v_\n" },
	/* name sanitization */
	{ B("na me/x\xc2\xa0y\xe3\x80\x80z!@#$:1|c"), "c:na_me-x_y_z=1\n",
	  "c:na_me-x_y_z=1\n" },
	{ B("a\tb  c:1|c"), "c:a_b_c=1\n", "c:a_b_c=1\n" },
	{ B("a\0b:1|c"), "c:ab=1\n", "c:ab=1\n" },
	{ B("A-z_0.9;=:1|c"), "c:A-z_0.9;==1 #=\n", "c:A-z_0.9;==1 #=\n" },
	{ B("caf\xc3\xa9:1|c"), "c:caf=1\n", "c:caf=1\n" },
	/* statsd 0.9 takes these; strict mode counts them bad */
	{ B("a:1|x"), NULL, "c:a=1\n" },
	{ B("a:1|"), NULL, "c:a=1\n" },
	{ B("a:2|c|@0"), NULL, "c:a=2@0\n" },
	{ B("a:2|c|@2"), NULL, "c:a=2@2\n" },
	{ B("a:Infinity|c"), NULL, "c:a=inf\n" },
	{ B("a:-Infinity|g"), NULL, "g:a=-inf~\n" },
	{ B("a:1e400|c"), NULL, "c:a=inf\n" },
	{ B("a:0x1F|c"), NULL, "c:a=31\n" },
	{ B("a:0o17|c"), NULL, "c:a=15\n" },
	{ B("a:0b101|c"), NULL, "c:a=5\n" },
	{ B("a:   |c"), NULL, "c:a=0\n" },
	{ B("a:1|c|@1e-1"), NULL, "c:a=1\n" },  /* statsd reads "@1e-1" as 1 */
	{ B("a:1|c|@0x10"), NULL, "c:a=1@0\n" },
	{ B("a:-1|ms\r"), NULL, "t:a=-1\n" },
	{ B("a:1|c|@0.5|junk"), NULL, "c:a=1@0.5\n" },
	{ B("@@@:1|c"), NULL, "c:=1\n" },
	{ B(":1|c"), NULL, "c:=1\n" },
	{ B("a\xff\xfe" "b:1|c"), NULL, "c:ab=1\n" },
	{ B("m:\xff|s"), NULL, "s:m=\xef\xbf\xbd\n" },
	{ B("m:\xe2\x82|s"), NULL, "s:m=\xef\xbf\xbd\n" },
	{ B("m:\xe2\x82\xe2\x82\xac\xf0|s"), NULL,
	  "s:m=\xef\xbf\xbd\xe2\x82\xac\xef\xbf\xbd\n" },
	{ B("\xed\xa0\x80x:1|c"), NULL, "c:x=1\n" },
	{ B("a:1|C"), NULL, "c:a=1\n" },
	{ B("a:1|msx"), NULL, "c:a=1\n" },
};

Test(statsd_parse, good_lines)
{
	struct out o;
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];
		for (int mode = 0; mode < 2; mode++) {
			const char *want = mode ? g->compat : g->strict;
			struct statsd_result r = run(mode, g->in, g->len, &o);
			cr_expect_eq(r.lines, 1, "case %zu", i);
			if (want) {
				cr_expect_str_eq(o.text, want, "case %zu mode %d: %s", i,
				    mode, g->in);
				cr_expect_eq(r.bad, 0, "case %zu mode %d: %s", i, mode,
				    r.bad_why);
			} else {
				cr_expect_eq(r.metrics, 0, "case %zu mode %d: %s", i, mode,
				    o.text);
				cr_expect_eq(r.bad, 1, "case %zu mode %d", i, mode);
				cr_expect_not_null(r.bad_why);
				cr_expect_eq(r.bad_line, g->in);
			}
		}
	}
}

Test(statsd_parse, sixty_four_tags_fit_sixty_five_do_not)
{
	struct out o;
	static const char in64[] = "a:1|g|#" T64;
	static const char in65[] = "a:1|g|#" T64 ",64";
	for (int mode = 0; mode < 2; mode++) {
		struct statsd_result r = run(mode, B(in64), &o);
		cr_expect_eq(r.metrics, 1);
		cr_expect_eq(r.bad, 0, "%s", r.bad_why);
		r = run(mode, B(in65), &o);
		cr_expect_eq(r.metrics, 0);
		cr_expect_eq(r.bad, 1);
		cr_expect_str_eq(r.bad_why, "more than 64 tags");
	}
	/* empty tags count in statsd's key, not in strict mode's (a case the
	 * fuzz target found: strict takes it, COMPAT_090 passes the cap) */
	static char semis[128] = "a";
	memset(semis + 1, ';', 100);
	memcpy(semis + 101, ":1|c", 4);
	struct statsd_result r = run(STATSD_STRICT, semis, 105, &o);
	cr_expect_str_eq(o.text, "c:a=1\n");
	r = run(STATSD_COMPAT_090, semis, 105, &o);
	cr_expect_eq(r.bad, 1);
	cr_expect_str_eq(r.bad_why, "more than 64 tags");
	/* strict: sorted bytewise, so 10 comes before 2 */
	run(STATSD_STRICT, B(in64), &o);
	cr_expect(strncmp(o.text, "g:a;0;1;10;11;", 14) == 0, "%s", o.text);
}

/* Lines every mode counts bad: statsd 0.9.0 rejects them too (or dies on
 * them: the "@+0.5" family throws a TypeError in its handler). */
static const struct { const char *in; size_t len; } bad_both[] = {
	{ B("nocolon") }, { B("a:1") }, { B("a:|c") }, { B("a:x|c") },
	{ B("a:1|c|@") }, { B("a:1|c|0.5") }, { B("a:1|c|@-0.5") },
	{ B("a:1|c|@x") }, { B("a:NaN|c") }, { B("a:inf|c") },
	{ B("a:-inf|g") }, { B("a:nan|ms") }, { B("a:-1|ms") },
	{ B("a:1|ms|@1.2.3") }, { B("a:1..2|c") }, { B("a:1e|c") },
	{ B("a:--1|c") }, { B("a:0x|c") }, { B("a:1_0|c") }, { B("a:x|g") },
	{ B("a:x|ms") }, { B("a:|g") }, { B("a:|ms") }, { B("a:1|@0.5|c") },
	{ B("a:1|c|@+0.5") }, { B("a:1|c|@ 0.5") }, { B("a:1|c|@Infinity") },
	{ B("a:1|c|@.") }, { B("a:x|s\r") }, { B("a:x| s") },
	{ B("a:1\0|c") }, { B("|c") }, { B("a|c") }, { B("a:1|c|@0.5x") },
	{ B("a:Infinityx|c") }, { B("a:0x1g|c") }, { B("a:-0x1|c") },
	{ B("a:1|c|@-") },
};

/* Lines strict mode counts bad and statsd 0.9.0 takes. */
static const struct { const char *in; size_t len; } bad_strict[] = {
	{ B("a:1|x") }, { B("a:1|") }, { B("a:1|C") }, { B("a:2|c|@0") },
	{ B("a:0|c|@0") }, { B("a:2|c|@2") }, { B("a:2|ms|@0") },
	{ B("a:5|c|@1.5") }, { B("a:Infinity|c") }, { B("a:-Infinity|g") },
	{ B("a:1e400|ms") }, { B("a:-1e400|g") }, { B("a:0x1F|c") },
	{ B("a:0o17|c") }, { B("a:0b101|c") }, { B("a:   |c") },
	{ B("a:1|c|@1e-1") }, { B("a:1|c|@0x10") }, { B("a:-1|ms\r") },
	{ B("a:-1|h") }, { B("a:1|c|@0.5|junk") }, { B("@@@:1|c") },
	{ B(":1|c") }, { B("a\xff\xfe" "b:1|c") }, { B("m:\xff|s") },
	{ B("m:\xe2\x82|s") }, { B("\xed\xa0\x80x:1|c") }, { B("a:1|msx") },
	{ B("a:1|c|#t:\xc0\xaf") },
};

static void
expect_bad(enum statsd_mode mode, const char *in, size_t len, size_t i)
{
	struct out o;
	struct statsd_result r = run(mode, in, len, &o);
	cr_expect_eq(r.metrics, 0, "case %zu mode %d: %s", i, mode, o.text);
	cr_expect_eq(r.bad, 1, "case %zu mode %d", i, mode);
	cr_expect_eq(r.lines, 1);
	cr_expect_not_null(r.bad_why);
	/* between two good lines: those still count, the bad one only once */
	char buf[12000];
	cr_assert_lt(len + 16, sizeof(buf));
	memcpy(buf, "x:1|c\n", 6);
	memcpy(buf + 6, in, len);
	memcpy(buf + 6 + len, "\ny:2|g\n", 7);
	r = run(mode, buf, len + 13, &o);
	cr_expect_eq(r.metrics, 2, "case %zu mode %d", i, mode);
	cr_expect_eq(r.bad, 1, "case %zu mode %d", i, mode);
	cr_expect_eq(r.lines, 3);
	cr_expect_eq(r.bad_line, buf + 6);
	cr_expect_eq(r.bad_len, len);
}

Test(statsd_parse, malformed_lines_counted_bad)
{
	size_t n = 0;
	for (size_t i = 0; i < sizeof(bad_both) / sizeof(bad_both[0]); i++, n++)
		for (int mode = 0; mode < 2; mode++)
			expect_bad(mode, bad_both[i].in, bad_both[i].len, i);
	for (size_t i = 0; i < sizeof(bad_strict) / sizeof(bad_strict[0]);
	    i++, n++)
		expect_bad(STATSD_STRICT, bad_strict[i].in, bad_strict[i].len, i);
	cr_expect_geq(n, 60);
}

/* Built at run time: a 10 000-digit value, 1 000 tags, long names. */
Test(statsd_parse, huge_inputs)
{
	static char buf[20000];
	struct out o;
	struct statsd_result r;
	size_t n;

	/* 10 000 nines: Infinity for statsd, bad in strict mode */
	n = (size_t)sprintf(buf, "a:");
	memset(buf + n, '9', 10000);
	n += 10000;
	n += (size_t)sprintf(buf + n, "|c");
	expect_bad(STATSD_STRICT, buf, n, 0);
	r = run(STATSD_COMPAT_090, buf, n, &o);
	cr_expect_str_eq(o.text, "c:a=inf\n");
	/* 9 999 zeros and a one: 1 for statsd, too long for strict mode */
	memset(buf + 2, '0', 9999);
	buf[2 + 9999] = '1';
	expect_bad(STATSD_STRICT, buf, n, 1);
	r = run(STATSD_COMPAT_090, buf, n, &o);
	cr_expect_str_eq(o.text, "c:a=1\n");
	/* 1 000 tags: bad in both modes (statsd would take them) */
	n = (size_t)sprintf(buf, "a:1|c|#");
	for (int i = 0; i < 1000; i++)
		n += (size_t)sprintf(buf + n, "%st%d:v", i ? "," : "", i);
	for (int mode = 0; mode < 2; mode++)
		expect_bad(mode, buf, n, 2);
	/* a name of 255 bytes fits, 256 does not; a member likewise */
	memset(buf, 'n', 255);
	memcpy(buf + 255, ":1|c", 4);
	r = run(STATSD_STRICT, buf, 259, &o);
	cr_expect_eq(r.metrics, 1);
	memset(buf, 'n', 256);
	memcpy(buf + 256, ":1|c", 4);
	for (int mode = 0; mode < 2; mode++)
		expect_bad(mode, buf, 260, 3);
	memcpy(buf, "s:", 2);
	memset(buf + 2, 'm', 255);
	memcpy(buf + 257, "|s", 2);
	r = run(STATSD_STRICT, buf, 259, &o);
	cr_expect_eq(r.metrics, 1);
	cr_expect_eq(strlen(o.text), 2 + 2 + 255 + 1);
	memset(buf + 2, 'm', 256);
	memcpy(buf + 258, "|s", 2);
	for (int mode = 0; mode < 2; mode++)
		expect_bad(mode, buf, 260, 4);
	/* a member whose U+FFFD replacements pass 255 bytes (COMPAT_090) */
	memset(buf + 2, 0xff, 100);
	memcpy(buf + 102, "|s", 2);
	expect_bad(STATSD_COMPAT_090, buf, 104, 5);
}

Test(statsd_parse, several_lines_a_datagram)
{
	struct out o;
	static const char in[] = "a:1|c\nb:2|ms\nc:3|g\nd:x|s\n\n\ne:1|c:x|c:2|c\n";
	struct statsd_result r = run(STATSD_STRICT, B(in), &o);
	cr_expect_str_eq(o.text,
	    "c:a=1\nt:b=2\ng:c=3\ns:d=x\nc:e=1\nc:e=2\n");
	cr_expect_eq(r.lines, 5, "empty lines are not counted, as in statsd");
	cr_expect_eq(r.metrics, 6);
	cr_expect_eq(r.bad, 1, "each bad piece of a multi-value line counts");
	cr_expect_str_eq(r.bad_why, "value not a decimal number");
	cr_expect_eq(r.bad_len, strlen("e:1|c:x|c:2|c"));
	/* empty datagrams are nothing at all (statsd skips empty lines) */
	r = run(STATSD_STRICT, "", 0, &o);
	cr_expect_eq(r.lines + r.bad + r.metrics, 0);
	r = run(STATSD_STRICT, NULL, 0, &o);
	cr_expect_eq(r.lines + r.bad + r.metrics, 0);
	r = run(STATSD_STRICT, B("\n\n"), &o);
	cr_expect_eq(r.lines + r.bad + r.metrics, 0);
	/* a line with no ':' and several bad pieces */
	r = run(STATSD_STRICT, B("x\ny:a|c:b|c:c|c"), &o);
	cr_expect_eq(r.bad, 4);
	cr_expect_str_eq(r.bad_why, "missing type");
	/* a key error makes every piece of the line bad */
	r = run(STATSD_STRICT, B("\xff:1|c:2|c"), &o);
	cr_expect_eq(r.bad, 2);
	cr_expect_str_eq(r.bad_why, "not UTF-8");
}

Test(statsd_parse, js_number)
{
	static const struct { const char *s; double v; int dec; } ok[] = {
		{ "0", 0, 1 }, { "-0", -0.0, 1 }, { "1", 1, 1 }, { "0.1", 0.1, 1 },
		{ " \t1.5\n", 1.5, 1 }, { "\xc2\xa0" "2", 2, 1 }, { "1e3", 1000, 1 },
		{ "1E-3", 0.001, 1 }, { ".5", 0.5, 1 }, { "5.", 5, 1 },
		{ "+7", 7, 1 }, { "", 0, 0 }, { "   ", 0, 0 }, { "0x10", 16, 0 },
		{ "0XfF", 255, 0 }, { "0o17", 15, 0 }, { "0b101", 5, 0 },
		{ "Infinity", INFINITY, 0 }, { "-Infinity", -INFINITY, 0 },
		{ "9007199254740993", 9007199254740992.0, 1 }, /* tie to even */
		{ "0x20000000000001", 9007199254740992.0, 0 },
		{ "0x20000000000003", 9007199254740996.0, 0 },
		{ "123456789012345678901234567890", 1.2345678901234568e29, 1 },
		{ "1e-400", 0, 1 }, { "4.9e-324", 4.9e-324, 1 },
	};
	static const char *nan[] = { "x", "1x", "--1", "1e", "e5", ".", "+",
		"0x", "-0x1", "0b2", "0o8", "infinity", "NaN", "1 2", "1_0",
		"\xff", "0x1p3", "1,5" };
	double v;
	int dec;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_expect_eq(jsstr_number(ok[i].s, strlen(ok[i].s), &v, &dec), 0,
		    "%s", ok[i].s);
		cr_expect(v == ok[i].v && signbit(v) == signbit(ok[i].v),
		    "%s: %.17g", ok[i].s, v);
		cr_expect_eq(dec, ok[i].dec, "%s", ok[i].s);
	}
	for (size_t i = 0; i < sizeof(nan) / sizeof(nan[0]); i++)
		cr_expect_eq(jsstr_number(nan[i], strlen(nan[i]), &v, &dec), -1,
		    "%s", nan[i]);
	/* correct rounding past the 800 digits kept: 2^53 + 1 + tiny rounds
	 * up, 2^53 + 1 exactly rounds to even (down) */
	static char big[2000];
	int n = sprintf(big, "9007199254740993.");
	memset(big + n, '0', 1200);
	big[n + 1200] = '1';
	cr_expect_eq(jsstr_number(big, (size_t)n + 1201, &v, &dec), 0);
	cr_expect(v == 9007199254740994.0, "%.17g", v);
	cr_expect_eq(jsstr_number(big, (size_t)n + 1200, &v, &dec), 0);
	cr_expect(v == 9007199254740992.0, "%.17g", v);
	/* 0.000...1e400 with 400 zeros is 0.1 */
	n = sprintf(big, "0.");
	memset(big + n, '0', 400);
	n += 400;
	n += sprintf(big + n, "1e400");
	cr_expect_eq(jsstr_number(big, (size_t)n, &v, &dec), 0);
	cr_expect(v == 0.1, "%.17g", v);
}

/* Random bytes and random statsd-ish tokens never crash or overrun, and
 * the counts add up (the fuzz target goes further: make fuzz). */
Test(statsd_parse, random_datagrams)
{
	static const char *tok[] = { "a", ":", "|", "c", "ms", "g", "s", "@",
		"0.5", "#", ",", "k:v", "\n", "\r", "-", "+", "1", "1e5", " ",
		"\xff", "\xe2\x82", ";", "=", "/", "h", "d", "." };
	static char buf[65536];
	struct statsd_parser p;
	struct statsd_result r;
	struct out o;

	srand(7);
	for (int round = 0; round < 400; round++) {
		size_t n = 0, target = (size_t)(rand() % 4000);
		while (n < target) {
			if (rand() % 4 == 0) {
				buf[n++] = (char)(rand() & 0xff);
			} else {
				const char *t = tok[rand() % (sizeof(tok) / sizeof(tok[0]))];
				memcpy(buf + n, t, strlen(t));
				n += strlen(t);
			}
		}
		for (int mode = 0; mode < 2; mode++) {
			statsd_parser_init(&p, mode);
			memset(&o, 0, sizeof(o));
			o.len = 0;
			statsd_parse(&p, buf, n, collect_count, &o, &r);
			cr_assert_eq(r.metrics, o.len);
			cr_assert_leq(r.lines, n);
		}
	}
}

/* What a parse gave, for comparing two parsers on one datagram. */
struct verdict {
	struct out o;
	struct statsd_result r;
	size_t bad_off;
};

static void
parse_with(int no_fast, const char *buf, size_t n, struct verdict *v)
{
	struct statsd_parser p;

	statsd_parser_init(&p, STATSD_STRICT);
	p.no_fast = no_fast;
	memset(v, 0, sizeof(*v));
	statsd_parse(&p, buf, n, collect, &v->o, &v->r);
	v->bad_off = v->r.bad_line ? (size_t)(v->r.bad_line - buf) : SIZE_MAX;
}

static uint64_t
next(uint64_t *x)
{
	xorshift64(x);
	return *x;
}

/* The fast path of strict parsing (ingest/statsd.c, parse_fast) against
 * the general one on 20 000 random datagrams of lines built near the
 * plainly good ones: the same metrics with the same values (%.17g keeps
 * every bit, -0 included), the same counts, the same first bad line and
 * reason. */
Test(statsd_parse, fast_path_same_as_general)
{
	static const char *names[] = { "a", "m12", "A.b-c_d=e", "x;t=1", "",
		"sp ace", "sl/ash", "caf\xc3\xa9", "0", "n:" };
	static const char *vals[] = { "1", "0", "-0", "+0", "517", "-5", "+3",
		"1.5", ".5", "5.", ".", "-", "+", "", "1e3", " 1", "1 ",
		"123456789012345", "1234567890123456", "0.000000000000001",
		"12345678.1234567", "99999999999999.9", "1.2.3", "0x10", "--1",
		"Infinity", "007", "3|c", "2:3" };
	static const char *types[] = { "c", "ms", "g", "h", "d", "s", "x", "",
		"mss", " c", "c ", "C", "m" };
	static const char *rates[] = { "", "|@0.5", "|@1", "|@.5", "|@1.",
		"|@0", "|@2", "|@", "|@1e-1", "|@ 0.5", "|@0.5 ", "|x", "|@0.5|x",
		"|#t:v", "|@0.1:2|c", "|@0.0000001", "|@1.5.2" };
	static const char *ends[] = { "\n", "\r\n", "\n\n", "\r", "\r\r\n" };
	static char buf[16384];
	struct verdict fast, slow;
	uint64_t x = 0x9E3779B97F4A7C15ULL;
#define PICK(a) (a[next(&x) % (sizeof(a) / sizeof(a[0]))])
	for (int round = 0; round < 20000; round++) {
		size_t n = 0;
		int lines = 1 + (int)(round % 40);
		for (int l = 0; l < lines && n < sizeof(buf) - 200; l++) {
			const char *nm = PICK(names), *v = PICK(vals),
			    *t = PICK(types), *r = PICK(rates);
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s:%s|%s%s",
			    nm, v, t, r);
			if (l + 1 < lines || x % 2)
				n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s",
				    PICK(ends));
		}
		parse_with(0, buf, n, &fast);
		parse_with(1, buf, n, &slow);
		cr_assert_eq(fast.r.lines, slow.r.lines, "round %d", round);
		cr_assert_eq(fast.r.metrics, slow.r.metrics, "round %d", round);
		cr_assert_eq(fast.r.bad, slow.r.bad, "round %d", round);
		cr_assert_eq(fast.bad_off, slow.bad_off, "round %d", round);
		cr_assert_eq(fast.r.bad_len, slow.r.bad_len, "round %d", round);
		cr_assert_eq(fast.r.bad_why, slow.r.bad_why, "round %d", round);
		cr_assert_eq(fast.o.len, slow.o.len, "round %d", round);
		cr_assert(memcmp(fast.o.text, slow.o.text, fast.o.len) == 0,
		    "round %d:\n%.*s\nvs\n%.*s", round, (int)fast.o.len,
		    fast.o.text, (int)slow.o.len, slow.o.text);
	}
#undef PICK
}

static void
take_value(void *ctx, const struct statsd_metric *m)
{
	*(double *)ctx = m->value;
}

static void
collect_rate(void *ctx, const struct statsd_metric *m)
{
	*(double *)ctx = m->rate;
}

/* Values and rates as the parser reads them are exactly strtod's, on
 * 200 000 random decimals: up to 20 digits, the point anywhere or
 * nowhere, leading zeros, a sign; timers, counters, and rates in (0, 1]. */
Test(statsd_parse, values_exactly_strtod)
{
	struct statsd_parser p;
	struct statsd_result r;
	char num[64], line[128];
	uint64_t x = 12345;

	statsd_parser_init(&p, STATSD_STRICT);
	for (int i = 0; i < 200000; i++) {
		xorshift64(&x);
		int nd = 1 + (int)(x % 20), point = (int)((x >> 8) % (nd + 2));
		size_t o = 0;
		if ((x >> 16) % 4 == 0)
			num[o++] = (x >> 18) % 2 ? '-' : '+';
		for (int d = 0; d < nd; d++) {
			if (d == point)
				num[o++] = '.';
			xorshift64(&x);
			num[o++] = (char)('0' + (d < 3 && x % 3 == 0 ? 0 : x % 10));
		}
		num[o] = '\0';
		double want = strtod(num, NULL), got = NAN;
		snprintf(line, sizeof(line), "v:%s|c", num);
		statsd_parse(&p, line, strlen(line), take_value, &got, &r);
		cr_assert_eq(r.metrics, 1, "%s", line);
		cr_assert(memcmp(&got, &want, 8) == 0, "%s: %.17g, strtod %.17g",
		    line, got, want);
		/* the same digits as a rate, when it is one */
		const char *digits = num + (num[0] == '-' || num[0] == '+');
		if (!(want > 0 && want <= 1) || digits != num)
			continue;
		snprintf(line, sizeof(line), "v:1|ms|@%s", digits);
		statsd_parse(&p, line, strlen(line), collect_rate, &got, &r);
		cr_assert_eq(r.metrics, 1, "%s", line);
		cr_assert(memcmp(&got, &want, 8) == 0, "%s: %.17g, strtod %.17g",
		    line, got, want);
	}
}
