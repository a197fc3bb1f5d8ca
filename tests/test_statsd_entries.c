/* test_statsd_entries.c - the aggregator's typed flush output
 * (egress/statsd_agg.h statsd_agg_flush_entries): the Graphite lines are
 * those of statsd_agg_flush byte for byte, and every value of every key
 * comes out once more as (type, name, tags, field, value), without the
 * namespace, prefixes or suffix. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/statsd_agg.h"
#include "egress/statsd_num.h"
#include "ingest/statsd.h"

#define MAXL 256

struct out {
	char line[MAXL][300];
	size_t nl;
	char ent[MAXL][300];      /* "type name [tags] field value" */
	size_t ne;
};

static void
on_line(void *ctx, const char *path, size_t len, double v, int64_t ts)
{
	struct out *o = ctx;
	char num[STATSD_NUM_BUF];
	statsd_num_format(num, v);
	cr_assert_lt(o->nl, MAXL);
	snprintf(o->line[o->nl++], 300, "%.*s %s %lld", (int)len, path, num,
	    (long long)ts);
}

static void
on_entry(void *ctx, enum statsd_type type, const char *name, size_t nlen,
    const char *tags, size_t tlen, const char *field, double v, int64_t ts)
{
	struct out *o = ctx;
	char num[STATSD_NUM_BUF];
	static const char *const tn[] = { "?", "c", "ms", "g", "s" };
	statsd_num_format(num, v);
	cr_assert_lt(o->ne, MAXL);
	cr_assert_eq(ts, 1000);
	snprintf(o->ent[o->ne++], 300, "%s %.*s [%.*s] %s %s", tn[type],
	    (int)nlen, name, (int)tlen, tags, field, num);
}

static struct statsd_agg *cur;

static void
feed(void *ctx, const struct statsd_metric *m)
{
	(void)ctx;
	cr_expect_eq(statsd_agg_add(cur, m), 0, "%s", m->key);
}

static void
send(struct statsd_agg *a, const char *dg)
{
	struct statsd_parser p;
	struct statsd_result r;
	cur = a;
	statsd_parser_init(&p, STATSD_STRICT);
	statsd_parse(&p, dg, strlen(dg), feed, NULL, &r);
	statsd_agg_received(a, 1, r.lines, r.bad);
}

static const char dgram[] =
    "hits:2|c\nhits:3|c|@0.5\n"
    "t:10|ms\nt:20|ms\nt:30|ms\nt:40|ms\n"
    "temp:5|g\nu:a|s\nu:b|s\nu:a|s\n"
    "reqs:1|c|#z:1,a.b:2,a:3";

static int
has(const struct out *o, const char *e)
{
	for (size_t i = 0; i < o->ne; i++)
		if (strcmp(o->ent[i], e) == 0)
			return 1;
	return 0;
}

static void
check_config(const struct statsd_agg_config *c, const char *what)
{
	struct statsd_agg *a = statsd_agg_new(c), *b = statsd_agg_new(c);
	cr_assert(a != NULL && b != NULL);
	static struct out plain, typed;
	memset(&plain, 0, sizeof(plain));
	memset(&typed, 0, sizeof(typed));
	send(a, dgram);
	send(b, dgram);
	cr_assert_eq(statsd_agg_flush(a, 10000, 1000, on_line, &plain), 0);
	cr_assert_eq(statsd_agg_flush_entries(b, 10000, 1000, on_line, &typed,
	    on_entry, &typed), 0);
	cr_assert_eq(plain.nl, typed.nl, "%s", what);
	for (size_t i = 0; i < plain.nl; i++)
		cr_expect_str_eq(typed.line[i], plain.line[i], "%s", what);
	cr_expect_eq(plain.ne, 0);

	const char *want[] = {
		"c hits [] rate 0.8", "c hits [] count 8",
		"c reqs [a.b=2;a=3;z=1] count 1",
		"c statsd.metrics_received [] count 11",
		"c statsd.packets_received [] count 1",
		"c statsd.bad_lines_seen [] count 0",
		"ms t [] upper_90 40", "ms t [] count_90 4", "ms t [] mean_90 25",
		"ms t [] sum_90 100", "ms t [] sum_squares_90 3000",
		"ms t [] count 4", "ms t [] count_ps 0.4", "ms t [] lower 10",
		"ms t [] upper 40", "ms t [] mean 25", "ms t [] median 25",
		"ms t [] sum 100", "ms t [] sum_squares 3000",
		"g temp [] value 5", "s u [] count 2",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++)
		cr_expect(has(&typed, want[i]), "%s: no entry '%s'", what, want[i]);
	for (size_t i = 0; i < typed.ne; i++) {
		cr_expect_null(strstr(typed.ent[i], "numStats"), "%s", typed.ent[i]);
		cr_expect_null(strstr(typed.ent[i], "processing_time"), "%s",
		    typed.ent[i]);
		cr_expect_null(strstr(typed.ent[i], "stats."), "%s", typed.ent[i]);
	}
	/* A second flush: kept keys give their reset values again. */
	typed.ne = typed.nl = 0;
	cr_assert_eq(statsd_agg_flush_entries(b, 10000, 1000, on_line, &typed,
	    on_entry, &typed), 0);
	cr_expect(has(&typed, "c hits [] count 0"), "%s", what);
	cr_expect(has(&typed, "ms t [] count 0"), "%s", what);
	cr_expect(!has(&typed, "ms t [] upper_90 40"), "%s", what);
	cr_expect(has(&typed, "g temp [] value 5"), "%s", what);
	statsd_agg_free(a);
	statsd_agg_free(b);
}

Test(statsd_entries, legacy_namespace)
{
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	check_config(&c, "legacy");
}

Test(statsd_entries, new_namespace_prefixes_and_suffix_stay_out)
{
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	c.legacy_namespace = 0;
	c.global_prefix = "gp";
	c.prefix_counter = "cnt";
	c.global_suffix = "sfx";
	c.flush_counts = 0;  /* the count entry is there all the same */
	check_config(&c, "new namespace");
}

Test(statsd_entries, calculated_timer_metrics_filter_entries_too)
{
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	const char *const only[] = { "upper_percent", "count" };
	c.timer_metrics = only;
	c.ntimer_metrics = 2;
	struct statsd_agg *a = statsd_agg_new(&c);
	cr_assert_not_null(a);
	static struct out o;
	memset(&o, 0, sizeof(o));
	send(a, "t:10|ms\nt:20|ms");
	cr_assert_eq(statsd_agg_flush_entries(a, 1000, 1000, on_line, &o, on_entry,
	    &o), 0);
	size_t timers = 0;
	for (size_t i = 0; i < o.ne; i++)
		timers += strncmp(o.ent[i], "ms ", 3) == 0;
	cr_expect_eq(timers, 2);
	cr_expect(has(&o, "ms t [] upper_90 20"));
	cr_expect(has(&o, "ms t [] count 2"));
	statsd_agg_free(a);
}
