/* test_statsd_agg.c - statsd 0.9's aggregation (egress/statsd_agg.c,
 * statsd_timer.c, statsd_num.c): the real statsd 0.9.0's Graphite output
 * for one scenario in both namespaces and with every prefix option
 * (tests/data/statsd_090_graphite.h says how it was recorded), and
 * hand-computed statsd results for every field, sample rates, gauges,
 * sets of 100 000 members, deletes, caps and a timer past the exact
 * threshold. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/statsd_agg.h"
#include "egress/statsd_num.h"
#include "egress/statsd_timer.h"
#include "ingest/statsd.h"
#include "tests/data/statsd_090_graphite.h"
#include "tests/rng.h"

/* The lines of one flush as "path value" (value as statsd writes it). */
struct lines {
	char **l;
	size_t n, cap;
	int64_t ts;
};

static void
on_line(void *ctx, const char *path, size_t len, double v, int64_t ts)
{
	struct lines *o = ctx;
	char num[STATSD_NUM_BUF];

	cr_assert_eq(strlen(path), len);
	o->ts = ts;
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 64;
		o->l = realloc(o->l, o->cap * sizeof(*o->l));
		cr_assert_not_null(o->l);
	}
	statsd_num_format(num, v);
	o->l[o->n] = malloc(len + strlen(num) + 2);
	cr_assert_not_null(o->l[o->n]);
	sprintf(o->l[o->n++], "%s %s", path, num);
}

static void
lines_free(struct lines *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->l[i]);
	free(o->l);
	memset(o, 0, sizeof(*o));
}

/* The value of the line whose path is `path`, or NAN when none is. */
static double
value_of(const struct lines *o, const char *path)
{
	size_t pl = strlen(path);
	for (size_t i = 0; i < o->n; i++)
		if (strncmp(o->l[i], path, pl) == 0 && o->l[i][pl] == ' ')
			return strtod(o->l[i] + pl + 1, NULL);
	return NAN;
}

static const char *
text_of(const struct lines *o, const char *path)
{
	size_t pl = strlen(path);
	for (size_t i = 0; i < o->n; i++)
		if (strncmp(o->l[i], path, pl) == 0 && o->l[i][pl] == ' ')
			return o->l[i] + pl + 1;
	return "(none)";
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Our lines, without the two timing ones, equal want (any order). */
static void
expect_same(struct lines *o, const char **want, const char *what)
{
	size_t nw = 0, k = 0;
	char **mine = calloc(o->n + 1, sizeof(char *));
	const char **w = calloc(256, sizeof(char *));

	for (size_t i = 0; i < o->n; i++)
		if (!strstr(o->l[i], "calculationtime") &&
		    !strstr(o->l[i], "processing_time"))
			mine[k++] = o->l[i];
	while (want[nw]) {
		w[nw] = want[nw];
		nw++;
	}
	qsort(mine, k, sizeof(char *), cmp_str);
	qsort(w, nw, sizeof(char *), cmp_str);
	cr_expect_eq(k, nw, "%s: %zu lines, statsd wrote %zu", what, k, nw);
	for (size_t i = 0; i < k && i < nw; i++)
		cr_expect_str_eq(mine[i], w[i], "%s: %s, statsd %s", what, mine[i],
		    w[i]);
	free(mine);
	free(w);
}

static struct statsd_agg *agg;

static void
feed(void *ctx, const struct statsd_metric *m)
{
	(void)ctx;
	cr_expect_eq(statsd_agg_add(agg, m), 0, "%s", m->key);
}

/* Parse datagrams as ingest will and hand the counts to the aggregator. */
static void
send(struct statsd_agg *a, const char *dg)
{
	struct statsd_parser p;
	struct statsd_result r;

	agg = a;
	statsd_parser_init(&p, STATSD_STRICT);
	statsd_parse(&p, dg, strlen(dg), feed, NULL, &r);
	statsd_agg_received(a, 1, r.lines, r.bad);
}

static double fake_now;

static double
fake_clock(void *ctx)
{
	(void)ctx;
	return fake_now += 1;
}

/* statsd's scenario: an empty flush first (so timestamp_lag exists, as it
 * did in statsd), then the two datagrams and a 2 s flush. */
static void
scenario(struct statsd_agg_config *c, const char **want0, const char **want1,
    const char *what)
{
	struct lines o = { 0 };
	c->clock_ms = fake_clock;
	struct statsd_agg *a = statsd_agg_new(c);
	cr_assert_not_null(a);
	cr_assert_eq(statsd_agg_flush(a, 2000, 1700000000, on_line, &o), 0);
	lines_free(&o);
	send(a, SCENARIO_1);
	send(a, SCENARIO_2);
	cr_assert_eq(statsd_agg_flush(a, 2000, 1700000002, on_line, &o), 0);
	expect_same(&o, want0, what);
	cr_expect_eq(o.ts, 1700000002);
	lines_free(&o);
	if (want1) {
		cr_assert_eq(statsd_agg_flush(a, 2000, 1700000004, on_line, &o), 0);
		expect_same(&o, want1, what);
		lines_free(&o);
	}
	statsd_agg_free(a);
}

static const double pct_a[] = { 90, -50, 99.9 };
static const double bins_a[] = { 5, 25, INFINITY };
static const struct statsd_histogram hist_a = { "t1", bins_a, 3 };

Test(statsd_agg, statsd_090_legacy_namespace_suffix_prefix_stats)
{
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	c.percent = pct_a;
	c.npercent = 3;
	c.histogram = &hist_a;
	c.nhistogram = 1;
	c.global_suffix = "sfx";
	c.prefix_stats = "ps";
	/* ignored in the legacy namespace, as by statsd */
	c.global_prefix = "ignored";
	c.prefix_counter = "ignored";
	scenario(&c, legacy_a_0, legacy_a_1, "legacy_a");
}

Test(statsd_agg, statsd_090_new_namespace_every_prefix)
{
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	c.percent = pct_a;
	c.npercent = 3;
	c.histogram = &hist_a;
	c.nhistogram = 1;
	c.global_suffix = "sfx";
	c.prefix_stats = "ps";
	c.legacy_namespace = 0;
	c.global_prefix = "gp";
	c.prefix_counter = "pc";
	c.prefix_timer = "pt";
	c.prefix_gauge = "pg";
	c.prefix_set = "pset";
	scenario(&c, new_b_0, NULL, "new_b");
}

Test(statsd_agg, statsd_090_new_namespace_empty_prefixes_no_counts)
{
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	c.legacy_namespace = 0;
	c.global_prefix = c.prefix_counter = c.prefix_timer = "";
	c.prefix_gauge = c.prefix_set = "";
	c.flush_counts = 0;
	scenario(&c, empty_c_0, NULL, "empty_c");
}

Test(statsd_agg, statsd_090_new_namespace_defaults)
{
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	c.legacy_namespace = 0;
	scenario(&c, new_d_0, NULL, "new_d");
}

Test(statsd_agg, statsd_090_thresholds_ttl_delete_counters_histograms)
{
	static const double pct[] = { 90, 50, 12.5, 10, -25, -100 };
	static const double b1[] = { 0.5, 2, 1e21 };
	static const double b2[] = { 1, INFINITY };
	const struct statsd_histogram h[] = { { "lat", b1, 3 }, { "", b2, 2 } };
	const char **want[] = { legacy_e_0, legacy_e_1, legacy_e_2 };
	struct statsd_agg_config c;
	struct lines o = { 0 };
	statsd_agg_config_default(&c);
	c.percent = pct;
	c.npercent = 6;
	c.histogram = h;
	c.nhistogram = 2;
	c.delete_gauges = 1;
	c.gauges_max_ttl = 2;
	c.delete_counters = 1;
	struct statsd_agg *a = statsd_agg_new(&c);
	cr_assert_not_null(a);
	statsd_agg_flush(a, 2000, 1000, on_line, &o);
	lines_free(&o);
	send(a, SCENARIO_E);
	for (int f = 0; f < 3; f++) {
		cr_assert_eq(statsd_agg_flush(a, 2000, 1002 + 2 * f, on_line, &o), 0);
		expect_same(&o, want[f], "legacy_e");
		lines_free(&o);
	}
	statsd_agg_free(a);
}

/* The two timing lines, by the clock given: processing_time covers the
 * counters and timers, calculationtime everything. */
Test(statsd_agg, timing_lines)
{
	struct statsd_agg_config c;
	struct lines o = { 0 };
	statsd_agg_config_default(&c);
	c.clock_ms = fake_clock;
	struct statsd_agg *a = statsd_agg_new(&c);
	cr_assert_not_null(a);
	statsd_agg_flush(a, 1000, 5, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.statsd.processing_time"), 1);
	cr_expect_eq(value_of(&o, "stats.statsd.graphiteStats.calculationtime"), 2);
	cr_expect_eq(value_of(&o, "statsd.numStats"), 3, "statsd's 3 counters");
	lines_free(&o);
	statsd_agg_free(a);
	c.clock_ms = NULL;
	a = statsd_agg_new(&c);
	statsd_agg_flush(a, 1000, 5, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.statsd.processing_time"), 0);
	lines_free(&o);
	statsd_agg_free(a);
}

static struct statsd_agg *
new_agg(const double *pct, size_t npct)
{
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	if (pct) {
		c.percent = pct;
		c.npercent = npct;
	}
	struct statsd_agg *a = statsd_agg_new(&c);
	cr_assert_not_null(a);
	return a;
}

/* Hand-computed from process_metrics.js: values 4, 1, 3, 2 sorted 1 2 3 4;
 * k = Math.round(|P|/100 * 4): P=90 -> 3.6 -> 4; P=50 -> 2; P=12.5 -> 0.5
 * -> 1 (half rounds up); P=10 -> 0.4 -> 0: no fields; P=-25 -> 1: the
 * largest; P=-100 -> 4 (statsd: NaN sums, telem: all of them). */
Test(statsd_agg, percentiles_by_hand)
{
	static const double pct[] = { 90, 50, 12.5, 10, -25, -100 };
	struct lines o = { 0 };
	struct statsd_agg *a = new_agg(pct, 6);

	send(a, "t:4|ms\nt:1|ms\nt:3|ms\nt:2|ms");
	statsd_agg_flush(a, 1000, 1, on_line, &o);
	static const struct { const char *f; double v; } want[] = {
		{ "count_90", 4 }, { "upper_90", 4 }, { "sum_90", 10 },
		{ "mean_90", 2.5 }, { "sum_squares_90", 30 },
		{ "count_50", 2 }, { "upper_50", 2 }, { "sum_50", 3 },
		{ "mean_50", 1.5 }, { "sum_squares_50", 5 },
		{ "count_12_5", 1 }, { "upper_12_5", 1 }, { "sum_12_5", 1 },
		{ "mean_12_5", 1 }, { "sum_squares_12_5", 1 },
		{ "count_top25", 1 }, { "lower_top25", 4 }, { "sum_top25", 4 },
		{ "mean_top25", 4 }, { "sum_squares_top25", 16 },
		{ "count_top100", 4 }, { "lower_top100", 1 }, { "sum_top100", 10 },
		{ "mean_top100", 2.5 }, { "sum_squares_top100", 30 },
		{ "std", 1.118033988749895 }, /* sqrt(5/4) */
		{ "upper", 4 }, { "lower", 1 }, { "count", 4 }, { "count_ps", 4 },
		{ "sum", 10 }, { "sum_squares", 30 }, { "mean", 2.5 },
		{ "median", 2.5 },
	};
	char path[128];
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		snprintf(path, sizeof(path), "stats.timers.t.%s", want[i].f);
		cr_expect_eq(value_of(&o, path), want[i].v, "%s: %s", path,
		    text_of(&o, path));
	}
	cr_expect(isnan(value_of(&o, "stats.timers.t.count_10")),
	    "k = 0: no fields for 10");
	/* 34 fields and nothing else for t */
	size_t n = 0;
	for (size_t i = 0; i < o.n; i++)
		n += strncmp(o.l[i], "stats.timers.t.", 15) == 0;
	cr_expect_eq(n, 34);
	lines_free(&o);
	/* one value: every threshold has k = 1, even 10 */
	send(a, "t:7|ms");
	statsd_agg_flush(a, 1000, 2, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.timers.t.count_10"), 1);
	cr_expect_eq(value_of(&o, "stats.timers.t.upper_10"), 7);
	cr_expect_eq(value_of(&o, "stats.timers.t.lower_top25"), 7);
	cr_expect_eq(value_of(&o, "stats.timers.t.sum_squares_top100"), 49);
	cr_expect_eq(value_of(&o, "stats.timers.t.median"), 7);
	cr_expect_eq(value_of(&o, "stats.timers.t.std"), 0);
	lines_free(&o);
	/* odd count: the middle value */
	send(a, "t:5|ms\nt:100|ms\nt:1|ms");
	statsd_agg_flush(a, 1000, 3, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.timers.t.median"), 5);
	lines_free(&o);
	statsd_agg_free(a);
}

/* Rates divide by the flush interval; counts scale by 1/rate as statsd
 * writes it (value * (1 / rate), which is not value / rate: 3 at @0.9 is
 * 3.3333333333333335, not 3.333333333333333). */
Test(statsd_agg, sample_rates_and_intervals)
{
	struct lines o = { 0 };
	struct statsd_agg *a = new_agg(NULL, 0);

	send(a, "t:12|ms\nc:3|c|@0.9\nd:1|c|@0.1\nd:1|c|@0.1\n"
	    "u:5|ms|@0.25\nu:7|ms|@0.5");
	statsd_agg_flush(a, 200, 10, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.timers.t.count"), 1);
	cr_expect_eq(value_of(&o, "stats.timers.t.count_ps"), 5,
	    "one value at a 200 ms flush");
	cr_expect_str_eq(text_of(&o, "stats_counts.c"), "3.3333333333333335");
	cr_expect_eq(value_of(&o, "stats_counts.d"), 20);
	cr_expect_eq(value_of(&o, "stats.d"), 100);
	cr_expect_eq(value_of(&o, "stats.timers.u.count"), 6, "4 + 2");
	cr_expect_eq(value_of(&o, "stats.timers.u.count_ps"), 30);
	cr_expect_eq(value_of(&o, "stats.timers.u.sum"), 12, "values unscaled");
	cr_expect_eq(value_of(&o, "stats.statsd.metrics_received"), 30);
	cr_expect_eq(value_of(&o, "stats_counts.statsd.metrics_received"), 6);
	cr_expect_eq(value_of(&o, "stats_counts.statsd.packets_received"), 1);
	lines_free(&o);
	/* next flush: counters and timers reset but kept */
	statsd_agg_flush(a, 10000, 20, on_line, &o);
	cr_expect_eq(value_of(&o, "stats_counts.d"), 0);
	cr_expect_eq(value_of(&o, "stats.timers.u.count"), 0);
	cr_expect_eq(value_of(&o, "stats.timers.u.count_ps"), 0);
	cr_expect(isnan(value_of(&o, "stats.timers.u.mean")));
	cr_expect_eq(value_of(&o, "stats.gauges.statsd.timestamp_lag"), 0,
	    "20 - 10 - 10");
	cr_expect_eq(value_of(&o, "statsd.numStats"), 3 + 2 + 2 + 1);
	lines_free(&o);
	statsd_agg_free(a);
}

Test(statsd_agg, gauges_deltas_and_ttl)
{
	struct lines o = { 0 };
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	struct statsd_agg *a = statsd_agg_new(&c);

	/* a delta on an unset gauge sets it to the signed value; on 0 too
	 * (statsd tests the gauge's truth) */
	send(a, "x:-5|g\nx:+3|g\ny:+4|g\nz:0|g\nz:-4|g\nw:9|g\nw:2|g\nv:1.5|g\n"
	    "v:-0.25|g");
	statsd_agg_flush(a, 1000, 100, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.gauges.x"), -2);
	cr_expect_eq(value_of(&o, "stats.gauges.y"), 4);
	cr_expect_eq(value_of(&o, "stats.gauges.z"), -4);
	cr_expect_eq(value_of(&o, "stats.gauges.w"), 2);
	cr_expect_eq(value_of(&o, "stats.gauges.v"), 1.25);
	lines_free(&o);
	statsd_agg_flush(a, 1000, 101, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.gauges.x"), -2, "kept across flushes");
	cr_expect_eq(value_of(&o, "stats.gauges.statsd.timestamp_lag"), 0);
	lines_free(&o);
	statsd_agg_flush(a, 1000, 104, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.gauges.statsd.timestamp_lag"), 2);
	lines_free(&o);
	statsd_agg_free(a);

	/* deleteGauges with gaugesMaxTTL 2: written twice after the update */
	c.delete_gauges = 1;
	c.gauges_max_ttl = 2;
	a = statsd_agg_new(&c);
	send(a, "g:1|g");
	for (int f = 0; f < 3; f++) {
		statsd_agg_flush(a, 1000, 200 + f, on_line, &o);
		cr_expect_eq(!isnan(value_of(&o, "stats.gauges.g")), f < 2, "flush %d",
		    f);
		lines_free(&o);
	}
	send(a, "g:+1|g");
	statsd_agg_flush(a, 1000, 300, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.gauges.g"), 1, "deleted: a delta sets");
	cr_expect_eq(value_of(&o, "stats.gauges.statsd.timestamp_lag"), 97,
	    "the lag gauge is never deleted");
	lines_free(&o);
	statsd_agg_free(a);
}

Test(statsd_agg, sets_of_100000_members)
{
	struct lines o = { 0 };
	struct statsd_agg *a = new_agg(NULL, 0);
	struct statsd_parser p;
	struct statsd_result r;
	char dg[64];

	agg = a;
	statsd_parser_init(&p, STATSD_STRICT);
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 100000; i++) {
			int n = snprintf(dg, sizeof(dg), "u:m%d|s\nv:%d|s", i, i % 7);
			statsd_parse(&p, dg, (size_t)n, feed, NULL, &r);
		}
	send(a, "w:|s\nw:0|s");
	statsd_agg_flush(a, 1000, 1, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.sets.u.count"), 100000);
	cr_expect_eq(value_of(&o, "stats.sets.v.count"), 7);
	cr_expect_eq(value_of(&o, "stats.sets.w.count"), 1, "\"\" is \"0\"");
	lines_free(&o);
	statsd_agg_flush(a, 1000, 2, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.sets.u.count"), 0, "reset, kept");
	lines_free(&o);
	statsd_agg_free(a);
}

Test(statsd_agg, delete_idle_stats)
{
	struct lines o = { 0 };
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	c.delete_counters = c.delete_timers = c.delete_gauges = c.delete_sets = 1;
	struct statsd_agg *a = statsd_agg_new(&c);

	send(a, "c:1|c\nmy_packets_received_x:1|c\nt:1|ms\ng:1|g\ns:a|s");
	statsd_agg_flush(a, 1000, 1, on_line, &o);
	cr_expect_eq(value_of(&o, "statsd.numStats"), 3 + 2 + 1 + 1 + 1);
	lines_free(&o);
	statsd_agg_flush(a, 1000, 2, on_line, &o);
	for (size_t i = 0; i < o.n; i++)
		cr_expect(strstr(o.l[i], ".c ") == NULL &&
		    strstr(o.l[i], "timers.t") == NULL &&
		    strstr(o.l[i], "gauges.g ") == NULL &&
		    strstr(o.l[i], "sets.s") == NULL, "%s", o.l[i]);
	/* statsd keeps (as 0) any counter whose key names its own three */
	cr_expect_eq(value_of(&o, "stats_counts.my_packets_received_x"), 0);
	cr_expect_eq(value_of(&o, "stats_counts.statsd.bad_lines_seen"), 0);
	cr_expect_eq(value_of(&o, "statsd.numStats"), 4 + 1, "+ timestamp_lag");
	lines_free(&o);
	statsd_agg_free(a);
}

Test(statsd_agg, caps_and_bad_configs)
{
	struct statsd_agg_config c;
	struct statsd_agg_stats st;
	statsd_agg_config_default(&c);
	c.max_names = 4; /* of each kind: statsd's own 3 counters take 3 */
	c.max_members = 3;
	struct statsd_agg *a;

	a = statsd_agg_new(&c);
	cr_assert_not_null(a);
	struct statsd_metric m = { .type = STATSD_COUNTER, .key = "a",
		.key_len = 1, .name_len = 1, .value = 1, .rate = 1 };
	cr_expect_eq(statsd_agg_add(a, &m), 0);
	m.key = "b";
	cr_expect_eq(statsd_agg_add(a, &m), -1);
	cr_expect_eq(errno, ENOSPC);
	m.type = STATSD_SET;
	m.member = "x";
	m.member_len = 1;
	for (int i = 0; i < 4; i++) {
		char mem[2] = { (char)('a' + i), 0 };
		m.member = mem;
		int rc = statsd_agg_add(a, &m);
		cr_expect_eq(rc, i < 3 ? 0 : -1, "member %d", i);
	}
	m.key_len = 0;
	cr_expect_eq(statsd_agg_add(a, &m), -1);
	cr_expect_eq(errno, EINVAL);
	statsd_agg_stats(a, &st);
	cr_expect_eq(st.dropped_names, 1);
	cr_expect_eq(st.dropped_members, 1);
	struct lines o = { 0 };
	cr_expect_eq(statsd_agg_flush(a, 0, 1, on_line, &o), -1);
	cr_expect_eq(errno, EINVAL);
	cr_expect_eq(o.n, 0, "an interval of 0 writes nothing");
	statsd_agg_free(a);

	static const double bad_pct[][2] = { { 0, 1 }, { 101, 1 }, { -101, 1 },
		{ 90, 90 }, { NAN, 1 } };
	for (size_t i = 0; i < 5; i++) {
		statsd_agg_config_default(&c);
		c.percent = bad_pct[i];
		c.npercent = 2;
		errno = 0;
		cr_expect_null(statsd_agg_new(&c), "percent case %zu", i);
		cr_expect_eq(errno, EINVAL);
	}
	static const double desc[] = { 10, 5 };
	struct statsd_histogram h = { "x", desc, 2 };
	statsd_agg_config_default(&c);
	c.histogram = &h;
	c.nhistogram = 1;
	cr_expect_null(statsd_agg_new(&c));
	statsd_agg_config_default(&c);
	c.prefix_stats = "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"
	    "pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp";
	cr_expect_null(statsd_agg_new(&c), "prefix over 128 bytes");
	statsd_agg_config_default(&c);
	c.max_names = 0;
	cr_expect_null(statsd_agg_new(&c));
}

/* Histogram names and bins: the first configured metric contained in the
 * key wins, "" matches everything; values past the last finite edge are
 * not counted; edges are written as statsd writes numbers. */
Test(statsd_agg, histogram_bins)
{
	static const double b1[] = { 0.5, 2, 1e21 };
	static const double b2[] = { 1, INFINITY };
	const struct statsd_histogram h[] = { { "lat", b1, 3 }, { "", b2, 2 } };
	struct statsd_agg_config c;
	struct lines o = { 0 };
	statsd_agg_config_default(&c);
	c.histogram = h;
	c.nhistogram = 2;
	struct statsd_agg *a = statsd_agg_new(&c);
	cr_assert_not_null(a);

	send(a, "api.lat:0.1|ms\napi.lat:0.5|ms\napi.lat:1.9|ms\napi.lat:2|ms\n"
	    "api.lat:5e21|ms\nother:0.5|ms\nother:1|ms\nother:7|ms");
	statsd_agg_flush(a, 1000, 1, on_line, &o);
	cr_expect_eq(value_of(&o, "stats.timers.api.lat.histogram.bin_0_5"), 1);
	cr_expect_eq(value_of(&o, "stats.timers.api.lat.histogram.bin_2"), 2);
	cr_expect_eq(value_of(&o, "stats.timers.api.lat.histogram.bin_1e+21"), 1);
	cr_expect_eq(value_of(&o, "stats.timers.other.histogram.bin_1"), 1);
	cr_expect_eq(value_of(&o, "stats.timers.other.histogram.bin_inf"), 2);
	lines_free(&o);
	statsd_agg_free(a);
}

/* A timer past the exact threshold: the sketch's answers against the
 * exact ones (a second aggregator with a large threshold), within
 * STATSD_SKETCH_ALPHA as statsd_timer.h documents. */
Test(statsd_agg, timer_past_exact_threshold)
{
	static const double pct[] = { 90, -10, 50 };
	static const double bins[] = { 100, 500, INFINITY };
	const struct statsd_histogram h = { "", bins, 3 };
	struct statsd_agg_config c;
	struct lines ex = { 0 }, sk = { 0 };
	struct statsd_agg_stats st;
	statsd_agg_config_default(&c);
	c.percent = pct;
	c.npercent = 3;
	c.histogram = &h;
	c.nhistogram = 1;
	c.timer_exact_max = 1 << 20;
	struct statsd_agg *exact = statsd_agg_new(&c);
	c.timer_exact_max = 65536;
	struct statsd_agg *sketch = statsd_agg_new(&c);
	cr_assert(exact && sketch);

	struct statsd_metric m = { .type = STATSD_TIMER, .key = "t",
		.key_len = 1, .name_len = 1, .rate = 0.5 };
	uint64_t x = 88172645463325252ull;
	double sum_abs = 0;
	for (int i = 0; i < 200000; i++) {
		xorshift64(&x);
		m.value = 1 + (double)(x % 100000) / 100; /* 1 .. 1000.99 */
		sum_abs += m.value;
		cr_assert_eq(statsd_agg_add(exact, &m), 0);
		cr_assert_eq(statsd_agg_add(sketch, &m), 0);
	}
	statsd_agg_flush(exact, 1000, 1, on_line, &ex);
	statsd_agg_flush(sketch, 1000, 1, on_line, &sk);
	statsd_agg_stats(sketch, &st);
	cr_expect_eq(st.sketched, 1);
	statsd_agg_stats(exact, &st);
	cr_expect_eq(st.sketched, 0);
	double alpha = STATSD_SKETCH_ALPHA;
	/* exact in the sketch too */
	static const char *same[] = { "count", "count_ps", "upper", "lower",
		"count_90", "count_top10", "count_50", "histogram.bin_100",
		"histogram.bin_500", "histogram.bin_inf" };
	char path[64];
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		snprintf(path, sizeof(path), "stats.timers.t.%s", same[i]);
		cr_expect_eq(value_of(&sk, path), value_of(&ex, path), "%s", path);
	}
	cr_expect_eq(value_of(&sk, "stats.timers.t.count"), 400000);
	/* floating-point rounding only (arrival order vs sorted order) */
	static const char *close[] = { "sum", "sum_squares", "mean", "std" };
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "stats.timers.t.%s", close[i]);
		double e = value_of(&ex, path), s = value_of(&sk, path);
		cr_expect(fabs(s - e) <= 1e-9 * fabs(e), "%s: %.17g vs %.17g", path,
		    s, e);
	}
	/* values at ranks: within alpha relative */
	static const char *rank[] = { "median", "upper_90", "lower_top10",
		"upper_50" };
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "stats.timers.t.%s", rank[i]);
		double e = value_of(&ex, path), s = value_of(&sk, path);
		cr_expect(fabs(s - e) <= alpha * fabs(e) * (1 + 1e-9),
		    "%s: %.17g vs %.17g", path, s, e);
	}
	/* sums over a threshold: within alpha * sum |v| */
	static const char *sums[] = { "sum_90", "sum_top10", "sum_50", "mean_90",
		"mean_50", "mean_top10" };
	for (size_t i = 0; i < 6; i++) {
		snprintf(path, sizeof(path), "stats.timers.t.%s", sums[i]);
		double e = value_of(&ex, path), s = value_of(&sk, path);
		double k = strncmp(sums[i], "mean", 4) ? 1 :
		    value_of(&ex, strstr(sums[i], "top") ? "stats.timers.t.count_top10"
		    : strstr(sums[i], "90") ? "stats.timers.t.count_90" :
		    "stats.timers.t.count_50");
		cr_expect(fabs(s - e) <= alpha * sum_abs / k, "%s: %.17g vs %.17g",
		    path, s, e);
	}
	lines_free(&ex);
	lines_free(&sk);
	/* the next flush is exact again */
	m.rate = 1;
	for (int v = 1; v <= 5; v++) {
		m.value = v;
		statsd_agg_add(sketch, &m);
	}
	statsd_agg_flush(sketch, 1000, 2, on_line, &sk);
	cr_expect_eq(value_of(&sk, "stats.timers.t.median"), 3);
	cr_expect_eq(value_of(&sk, "stats.timers.t.sum_50"), 6, "1 + 2 + 3");
	statsd_agg_stats(sketch, &st);
	cr_expect_eq(st.sketched, 1);
	lines_free(&sk);
	statsd_agg_free(exact);
	statsd_agg_free(sketch);
}

/* A sketched timer buckets a whole number of milliseconds from a table
 * (egress/statsd_timer.c), any other value with log(): a whole value k
 * and the next double above it must land in the same bucket, so two
 * timers fed one and the other answer every interior rank alike. */
Test(statsd_agg, sketch_buckets_whole_values_as_any_other)
{
	static const double pct[] = { 10, 20, 30, 40, 50, 60, 70, 80, 90, 99 };
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	c.percent = pct;
	c.npercent = 10;
	c.timer_exact_max = 16;
	struct statsd_agg *whole = statsd_agg_new(&c), *above = statsd_agg_new(&c);
	cr_assert(whole && above);
	struct statsd_metric m = { .type = STATSD_TIMER, .key = "t",
		.key_len = 1, .name_len = 1, .rate = 1 };
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (int i = 0; i < 20000; i++) {
		xorshift64(&x);
		double k = (double)(1 + x % 5000); /* past the table's 4096 too */
		m.value = k;
		cr_assert_eq(statsd_agg_add(whole, &m), 0);
		m.value = nextafter(k, INFINITY);
		cr_assert_eq(statsd_agg_add(above, &m), 0);
	}
	struct lines w = { 0 }, a = { 0 };
	statsd_agg_flush(whole, 1000, 1, on_line, &w);
	statsd_agg_flush(above, 1000, 1, on_line, &a);
	struct statsd_agg_stats st;
	statsd_agg_stats(whole, &st);
	cr_assert_eq(st.sketched, 1);
	char path[64];
	cr_expect_eq(value_of(&w, "stats.timers.t.median"),
	    value_of(&a, "stats.timers.t.median"));
	for (size_t i = 0; i < 10; i++) {
		snprintf(path, sizeof(path), "stats.timers.t.upper_%g", pct[i]);
		double vw = value_of(&w, path), va = value_of(&a, path);
		cr_expect(vw == va, "%s: %.17g vs %.17g", path, vw, va);
		cr_expect(vw > 1 && vw < 5001, "%s: %.17g", path, vw);
	}
	lines_free(&w);
	lines_free(&a);
	statsd_agg_free(whole);
	statsd_agg_free(above);
}

struct fields {
	char name[40][32];
	double v[40];
	int n;
};

static void
field(void *ctx, const char *f, double v)
{
	struct fields *F = ctx;
	cr_assert_lt(F->n, 40);
	snprintf(F->name[F->n], sizeof(F->name[0]), "%s", f);
	F->v[F->n++] = v;
}

/* statsd's field order, exact and sketched; a threshold of 4 values
 * reaches the sketch with 6, negative values too (COMPAT_090 lets a
 * negative timer through). */
Test(statsd_agg, sketch_small_and_negative)
{
	static const double pct[] = { 90, -10 };
	static const char *pn[] = { "90", "top10" };
	static const char *order[] = { "count_90", "mean_90", "upper_90",
		"sum_90", "sum_squares_90", "count_top10", "mean_top10",
		"lower_top10", "sum_top10", "sum_squares_top10", "std", "upper",
		"lower", "count", "count_ps", "sum", "sum_squares", "mean", "median" };
	static const double vals[] = { 8, -1, 0, 5, -3, 2 };
	double a = STATSD_SKETCH_ALPHA;

	for (int exact_max = 4; exact_max <= 8; exact_max += 4) {
		struct statsd_timer t = { 0 };
		struct fields F = { 0 };
		for (int i = 0; i < 6; i++)
			cr_assert_eq(statsd_timer_add(&t, vals[i], 2, (size_t)exact_max),
			    0);
		cr_expect_eq(statsd_timer_sketched(&t), exact_max == 4);
		statsd_timer_report(&t, pct, pn, 2, 500, field, &F);
		cr_assert_eq(F.n, 19);
		for (int i = 0; i < 19; i++)
			cr_expect_str_eq(F.name[i], order[i]);
		/* sorted: -3 -1 0 2 5 8; 90: k = round(5.4) = 5; -10: k = 1 */
		double want[] = { 5, 0.6, 5, 3, 39, 1, 8, 8, 8, 64,
			0 /* std, below */,
			8, -3, 12, 24, 11, 103, 11.0 / 6, 1 };
		double mean = 11.0 / 6, d = 0;
		for (int i = 0; i < 6; i++)
			d += (vals[i] - mean) * (vals[i] - mean);
		want[10] = sqrt(d / 6); /* 3.7155828016013257 */
		for (int i = 0; i < 19; i++) {
			double tol = exact_max == 4 ? a * 20 * (1 + fabs(want[i])) : 1e-12;
			cr_expect(fabs(F.v[i] - want[i]) <= tol, "%d %s: %.17g vs %.17g",
			    exact_max, order[i], F.v[i], want[i]);
		}
		statsd_timer_reset(&t);
		cr_expect_eq(statsd_timer_sketched(&t), 0);
		F.n = 0;
		statsd_timer_report(&t, pct, pn, 2, 500, field, &F);
		cr_expect_eq(F.n, 2);
		cr_expect_str_eq(F.name[0], "count_ps");
		cr_expect_str_eq(F.name[1], "count");
		statsd_timer_fini(&t);
	}
}

/* calculatedTimerMetrics: only the fields listed, names cleaned as
 * statsd 0.9 cleans them ("mean_99_9" is "mean_99_percent"). */
Test(statsd_agg, calculated_timer_metrics)
{
	static const double pct[] = { 90, -10, 99.9 };
	static const double bins[] = { 5, INFINITY };
	static const struct statsd_histogram h = { "", bins, 2 };
	static const char *keep[] = { "mean_percent", "lower_percent", "count",
		"histogram", "mean_99_percent" };
	struct statsd_agg_config c;
	struct lines o = { 0 };
	statsd_agg_config_default(&c);
	c.percent = pct;
	c.npercent = 3;
	c.histogram = &h;
	c.nhistogram = 1;
	c.timer_metrics = keep;
	c.ntimer_metrics = 5;
	struct statsd_agg *a = statsd_agg_new(&c);
	cr_assert_not_null(a);
	send(a, "t:1|ms\nt:2|ms\nt:3|ms\nt:4|ms\nt:5|ms\nt:6|ms\nt:7|ms\n"
	    "t:8|ms\nt:9|ms\nt:10|ms");
	statsd_agg_flush(a, 1000, 1, on_line, &o);
	static const char *want[] = { "mean_90", "mean_top10", "lower_top10",
		"mean_99_9", "count", "histogram.bin_5", "histogram.bin_inf" };
	size_t n = 0;
	for (size_t i = 0; i < o.n; i++)
		n += strncmp(o.l[i], "stats.timers.t.", 15) == 0;
	cr_expect_eq(n, 7);
	char path[64];
	for (size_t i = 0; i < 7; i++) {
		snprintf(path, sizeof(path), "stats.timers.t.%s", want[i]);
		cr_expect(!isnan(value_of(&o, path)), "%s", path);
	}
	/* statsd 0.9.0 wrote exactly these 7 lines for this configuration
	 * (recorded as for tests/data/statsd_090_graphite.h) */
	static const double v[] = { 5, 10, 10, 5.5, 10, 4, 6 };
	for (size_t i = 0; i < 7; i++) {
		snprintf(path, sizeof(path), "stats.timers.t.%s", want[i]);
		cr_expect_eq(value_of(&o, path), v[i], "%s", path);
	}
	lines_free(&o);
	statsd_agg_free(a);
}

/* Values over 22 decades and both signs: the sketch's bucket ranges grow
 * both ways and every value read at a rank stays within alpha of the
 * exact one. */
Test(statsd_agg, sketch_wide_range)
{
	static const double pct[] = { 90, -10, 50, 25 };
	static const char *pn[] = { "90", "top10", "50", "25" };
	struct statsd_timer ex = { 0 }, sk = { 0 };
	struct fields E = { 0 }, S = { 0 };
	uint64_t x = 1234567;

	for (int i = 0; i < 100000; i++) {
		xorshift64(&x);
		double v = pow(10, -8 + (double)(x % 22000) / 1000);
		if (x % 3 == 0)
			v = -v;
		cr_assert_eq(statsd_timer_add(&ex, v, 1, 1 << 20), 0);
		cr_assert_eq(statsd_timer_add(&sk, v, 1, 1000), 0);
	}
	cr_assert(statsd_timer_sketched(&sk) && !statsd_timer_sketched(&ex));
	statsd_timer_report(&ex, pct, pn, 4, 1000, field, &E);
	statsd_timer_report(&sk, pct, pn, 4, 1000, field, &S);
	cr_assert_eq(E.n, S.n);
	for (int i = 0; i < E.n; i++) {
		cr_assert_str_eq(E.name[i], S.name[i]);
		const char *f = E.name[i];
		if (strncmp(f, "upper", 5) && strncmp(f, "lower", 5) &&
		    strcmp(f, "median") && strncmp(f, "count", 5))
			continue;
		cr_expect(fabs(S.v[i] - E.v[i]) <= STATSD_SKETCH_ALPHA *
		    fabs(E.v[i]) * (1 + 1e-9), "%s: %.17g vs %.17g", f, S.v[i],
		    E.v[i]);
	}
	statsd_timer_fini(&ex);
	statsd_timer_fini(&sk);
}

Test(statsd_agg, number_format)
{
	static const struct { double v; const char *s; } c[] = {
		{ 0, "0" }, { -0.0, "0" }, { 1, "1" }, { -1.5, "-1.5" },
		{ 0.1 + 0.2, "0.30000000000000004" }, { 100, "100" },
		{ 1e20, "100000000000000000000" }, { 1e21, "1e+21" },
		{ 1.5e300, "1.5e+300" }, { 0.000001, "0.000001" }, { 1e-7, "1e-7" },
		{ 1.23e-7, "1.23e-7" }, { 123456789.125, "123456789.125" },
		{ 20.3, "20.3" }, { 13.72443077143821, "13.72443077143821" },
		{ 5e-324, "5e-324" }, { 1.7976931348623157e308,
		  "1.7976931348623157e+308" }, { NAN, "NaN" },
		{ INFINITY, "Infinity" }, { -INFINITY, "-Infinity" },
		{ 3.3333333333333335, "3.3333333333333335" }, { 99.9, "99.9" },
	};
	char buf[STATSD_NUM_BUF];
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		size_t n = statsd_num_format(buf, c[i].v);
		cr_expect_str_eq(buf, c[i].s);
		cr_expect_eq(n, strlen(c[i].s));
	}
}

/* The timer's own sort (a radix sort past 256 values) orders as qsort
 * does: every percentile bound and the median of 5 000 values of both
 * signs, zeros, subnormals and huge ones match a qsort of the same. */
struct sort_fields {
	double upper_50, lower_top10, median, upper, lower, sum_50;
};

static void
take_sort_field(void *ctx, const char *field, double v)
{
	struct sort_fields *f = ctx;
	if (strcmp(field, "upper_50") == 0) f->upper_50 = v;
	else if (strcmp(field, "lower_top10") == 0) f->lower_top10 = v;
	else if (strcmp(field, "median") == 0) f->median = v;
	else if (strcmp(field, "upper") == 0) f->upper = v;
	else if (strcmp(field, "lower") == 0) f->lower = v;
	else if (strcmp(field, "sum_50") == 0) f->sum_50 = v;
}

static int
cmp_sort_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

Test(statsd_agg, timer_sort_matches_qsort)
{
	enum { N = 5000 };
	static double v[N];
	struct statsd_timer t;
	memset(&t, 0, sizeof(t));
	srand(14);
	for (int i = 0; i < N; i++) {
		double x = (double)rand() / RAND_MAX - 0.5;
		switch (i % 7) {
		case 0: x *= 1e300; break;
		case 1: x *= 1e-310; break;  /* subnormal */
		case 2: x = i % 2 ? 0.0 : -0.0; break;
		case 3: x = (double)(rand() % 1000); break;
		default: x *= 1000; break;
		}
		v[i] = x;
		cr_assert_eq(statsd_timer_add(&t, x, 1, 1u << 20), 0);
	}
	static const double pct[] = { 50, -10 };
	static const char *const pn[] = { "50", "top10" };
	struct sort_fields f;
	statsd_timer_report(&t, pct, pn, 2, 1000, take_sort_field, &f);
	qsort(v, N, sizeof(v[0]), cmp_sort_d);
	double s50 = 0;
	for (int i = 0; i < N / 2; i++)
		s50 += v[i];
	cr_expect_eq(f.lower, v[0]);
	cr_expect_eq(f.upper, v[N - 1]);
	cr_expect_eq(f.upper_50, v[N / 2 - 1]);
	cr_expect_eq(f.lower_top10, v[N - N / 10]);
	cr_expect_eq(f.median, (v[N / 2 - 1] + v[N / 2]) / 2);
	cr_expect_eq(f.sum_50, s50);
	for (size_t i = 1; i < t.n; i++)
		cr_assert_leq(t.v[i - 1], t.v[i], "value %zu out of order", i);
	statsd_timer_fini(&t);
}

/* The sorts a timer's flush picks from (egress/statsd_timer.c): counting
 * for whole numbers in a narrow range, radix otherwise, each against
 * qsort's order, value for value and bit for bit: whole numbers at the
 * ends of the range counting takes and just past it, negative ones, a
 * single -0, 0.5 or NaN-free huge value among whole ones. */
Test(statsd_agg, timer_sorts_match_qsort)
{
	enum { N = 4000 };
	static double v[N];
	uint64_t x = 77;

	for (int kind = 0; kind < 9; kind++) {
		struct statsd_timer t;
		memset(&t, 0, sizeof(t));
		for (int i = 0; i < N; i++) {
			xorshift64(&x);
			double d;
			switch (kind) {
			case 0: d = (double)(1 + x % 1000); break;
			case 1: d = (double)(int64_t)(x % 1001) - 500; break;
			case 2: d = 0x1p52 - (double)(x % 100); break;
			case 3: d = (double)(x % 2) * 32000 + (double)(x % 7); break;
			case 4: d = (double)(x % 2) * 65536 + (double)(x % 7); break;
			case 5: d = (double)(x % 1000); if (i == N / 2) d = -0.0; break;
			case 6: d = (double)(x % 1000); if (i == 7) d = 0.5; break;
			case 7: d = (double)(x % 1000); if (i == 9) d = 1e300; break;
			default: d = (double)(x % 100000) / 1000 - 50; break;
			}
			v[i] = d;
			cr_assert_eq(statsd_timer_add(&t, d, 1, 1u << 20), 0);
		}
		static const double pct[] = { 90 };
		static const char *const pn[] = { "90" };
		struct sort_fields f;
		statsd_timer_report(&t, pct, pn, 1, 1000, take_sort_field, &f);
		qsort(v, N, sizeof(v[0]), cmp_sort_d);
		for (size_t i = 0; i < N; i++)
			cr_assert(t.v[i] == v[i] && (v[i] == 0 ||
			    memcmp(&t.v[i], &v[i], 8) == 0),
			    "kind %d, value %zu: %.17g vs %.17g", kind, i, t.v[i], v[i]);
		cr_expect_eq(f.lower, v[0]);
		cr_expect_eq(f.upper, v[N - 1]);
		statsd_timer_fini(&t);
	}
}

/* Up to 256 fields of a report, names and values. */
struct many {
	char name[256][32];
	double v[256];
	int n;
};

static void
many_field(void *ctx, const char *f, double v)
{
	struct many *M = ctx;
	cr_assert_lt(M->n, 256);
	snprintf(M->name[M->n], sizeof(M->name[0]), "%s", f);
	M->v[M->n++] = v;
}

/* The sums of many thresholds, taken from one pass of the running sums
 * (up to 32 thresholds) or one pass each (more), are the same, bit for
 * bit: 40 thresholds on both sides of 0 against their first 32 alone. */
Test(statsd_agg, many_thresholds_one_pass)
{
	static double pct[40];
	static char pnb[40][16];
	static const char *pn[40];
	static struct many M[2];

	for (int i = 0; i < 40; i++) {
		pct[i] = (i % 2 ? -1 : 1) * (2.5 * (i + 1));
		snprintf(pnb[i], sizeof(pnb[i]), "p%d", i);
		pn[i] = pnb[i];
	}
	for (int round = 0; round < 2; round++) {
		struct statsd_timer t;
		uint64_t x = 5;
		memset(&t, 0, sizeof(t));
		for (int i = 0; i < 3001; i++) {
			xorshift64(&x);
			cr_assert_eq(statsd_timer_add(&t, (double)(x % 100000) / 1000,
			    1, 1u << 20), 0);
		}
		statsd_timer_report(&t, pct, pn, round ? 40 : 32, 1000, many_field,
		    &M[round]);
		statsd_timer_fini(&t);
	}
	cr_assert_eq(M[0].n, 32 * 5 + 9);
	cr_assert_eq(M[1].n, 40 * 5 + 9);
	for (int i = 0; i < 32 * 5; i++) {
		cr_assert_str_eq(M[0].name[i], M[1].name[i]);
		cr_expect(memcmp(&M[0].v[i], &M[1].v[i], 8) == 0, "%s: %.17g vs "
		    "%.17g", M[0].name[i], M[0].v[i], M[1].v[i]);
	}
	for (int i = 0; i < 9; i++)
		cr_expect(memcmp(&M[0].v[32 * 5 + i], &M[1].v[40 * 5 + i], 8) == 0,
		    "%s", M[0].name[32 * 5 + i]);
}
