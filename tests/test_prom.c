/* test_prom.c - the Prometheus exposition of reports (egress/prom_expo.c):
 * number formatting that reads back exactly, label escaping, statsd_exporter
 * names, the exact text of small reports of each source, reports cut short
 * (never half shown), statsd counters added up over reports, conflicts left
 * out and counted; and promtool (Debian prometheus, tests/deps.sh) checking
 * the page of a 10 000-name report and of hostile names. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "egress/prom_expo.h"
#include "harness.h"

TestSuite(prom, .timeout = 120);

static struct report_rec
ent(uint8_t kind, uint8_t src, const char *name, const char *field, double v)
{
	struct report_rec r;
	memset(&r, 0, sizeof(r));
	r.kind = kind;
	r.source = src;
	r.name = name;
	r.name_len = (uint8_t)strlen(name);
	r.field = field;
	r.field_len = (uint8_t)strlen(field);
	r.ts = 1700000000;
	r.value = v;
	return r;
}

static void
tag(struct report_rec *r, const char *k, const char *v)
{
	struct report_tag *t = &r->tag[r->ntags++];
	t->key = k;
	t->klen = (uint8_t)strlen(k);
	t->val = v;
	t->vlen = (uint8_t)strlen(v);
}

static enum prom_feed
feed(struct prom_expo *x, struct report_rec r)
{
	cr_assert(report_rec_ok(&r), "test entry %.*s not valid", r.name_len,
	    r.name);
	return prom_expo_feed(x, &r);
}

static enum prom_feed
end(struct prom_expo *x, uint8_t src, uint64_t count)
{
	struct report_rec r;
	memset(&r, 0, sizeof(r));
	r.kind = REPORT_END;
	r.source = src;
	r.count = count;
	return prom_expo_feed(x, &r);
}

/* The text of one source (malloc'd, NUL-terminated; "" when none). */
static char *
part(struct prom_expo *x, unsigned src)
{
	struct prom_text *p[REPORT_SRC_N];
	prom_expo_parts(x, p);
	char *s = malloc(p[src] ? p[src]->len + 1 : 1);
	cr_assert_not_null(s);
	if (p[src])
		memcpy(s, p[src]->text, p[src]->len);
	s[p[src] ? p[src]->len : 0] = '\0';
	for (size_t i = 0; i < REPORT_SRC_N; i++)
		prom_text_unref(p[i]);
	return s;
}

Test(prom, doubles_read_back_exactly)
{
	static const struct { double v; const char *s; } t[] = {
		{ 0, "0" }, { 1, "1" }, { -2.5, "-2.5" }, { 0.1, "0.1" },
		{ 4000000000.0, "4000000000" }, { 1e300, "1e+300" },
		{ 0.30000000000000004, "0.30000000000000004" },
		{ 123456789012345678.0, "1.2345678901234568e+17" },
		{ INFINITY, "+Inf" }, { -INFINITY, "-Inf" }, { NAN, "NaN" },
		{ 5e-324, "4.94065645841247e-324" },
	};
	char buf[40];
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		cr_assert_gt(prom_fmt_double(t[i].v, buf, sizeof(buf)), 0);
		cr_assert_str_eq(buf, t[i].s);
	}
	srand(7);
	for (int i = 0; i < 200000; i++) {
		uint64_t bits = ((uint64_t)rand() << 42) ^ ((uint64_t)rand() << 21) ^
		    (uint64_t)rand();
		double v;
		memcpy(&v, &bits, 8);
		if (!isfinite(v))
			continue;
		prom_fmt_double(v, buf, sizeof(buf));
		cr_assert(strtod(buf, NULL) == v, "%s does not read back", buf);
	}
	cr_assert_eq(prom_fmt_double(1.0 / 3, buf, 5), 0, "too small a buffer");
}

Test(prom, label_values_are_escaped)
{
	char buf[64];
	cr_assert_eq(prom_fmt_label("a\"b\\c\nd", 7, buf, sizeof(buf)), 10);
	cr_assert_str_eq(buf, "a\\\"b\\\\c\\nd");
	cr_assert_eq(prom_fmt_label("é{}", 4, buf, sizeof(buf)), 4);
	cr_assert_str_eq(buf, "é{}");
	cr_assert_eq(prom_fmt_label("\"\"\"", 3, buf, 6), 0);
}

Test(prom, statsd_names_as_statsd_exporter_makes_them)
{
	static const struct { const char *in, *out; } t[] = {
		{ "test.web-server.foo.bar", "test_web_server_foo_bar" },
		{ "a_b", "a_b" }, { "1abc", "_1abc" }, { "é.x", "__x" },
		{ "a/b:c", "a_b_c" }, { "\xf0\x9f\x98\x80", "_" }, { "Ab9", "Ab9" },
	};
	char buf[64];
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		cr_assert_gt(prom_fmt_statsd_name(t[i].in, strlen(t[i].in), buf,
		    sizeof(buf)), 0);
		cr_assert_str_eq(buf, t[i].out, "%s", t[i].in);
	}
}

Test(prom, quantile_labels)
{
	static const struct { const char *f, *q; } t[] = {
		{ "q0", "0" }, { "q0.25", "0.25" }, { "q0.250", "0.25" },
		{ "q1", "1" }, { "q1.0", "1" }, { "q00.5", "0.5" },
		{ "upper_90", "0.9" }, { "upper_99_9", "0.999" }, { "upper_100", "1" },
		{ "upper_5", "0.05" }, { "upper_0", "0" }, { "upper_50_25", "0.5025" },
	};
	char buf[40];
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		cr_assert_gt(prom_fmt_quantile(t[i].f, strlen(t[i].f), buf,
		    sizeof(buf)), 0, "%s", t[i].f);
		cr_assert_str_eq(buf, t[i].q, "%s", t[i].f);
	}
	cr_assert_eq(prom_fmt_quantile("mean", 4, buf, sizeof(buf)), 0);
}

Test(prom, ckms_and_cma_exact_text)
{
	struct prom_expo *x = prom_expo_new(0);
	cr_assert_not_null(x);
	static const char *const q[] = { "q0", "q0.25", "q0.5", "q0.75", "q0.9",
		"q0.99" };
	/* "b" before "a" in the report: the page is sorted anyway. */
	const char *names[] = { "b\"x", "a" };
	size_t n = 0;
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < 6; i++, n++)
			cr_assert_eq(feed(x, ent(REPORT_SUM_QUANTILE, REPORT_SRC_CKMS,
			    names[k], q[i], 10 * (i + 1) + k)), PROM_FED);
		feed(x, ent(REPORT_SUM_SUM, REPORT_SRC_CKMS, names[k], "sum", 0.5));
		feed(x, ent(REPORT_SUM_COUNT, REPORT_SRC_CKMS, names[k], "count", 7));
		n += 2;
	}
	cr_assert_eq(end(x, REPORT_SRC_CKMS, n), PROM_RENDERED);
	feed(x, ent(REPORT_GAUGE, REPORT_SRC_CMA, "b", "cma", 0.1 + 0.2));
	feed(x, ent(REPORT_COUNTER, REPORT_SRC_CMA, "b", "count", 3));
	cr_assert_eq(end(x, REPORT_SRC_CMA, 2), PROM_RENDERED);

	char *ck = part(x, REPORT_SRC_CKMS), *cm = part(x, REPORT_SRC_CMA);
	cr_assert_str_eq(ck,
	    "# HELP telem_ckms Quantiles of each telem name's values (CKMS "
	    "sketch), with their sum and count.\n"
	    "# TYPE telem_ckms summary\n"
	    "telem_ckms{name=\"a\",quantile=\"0\"} 11\n"
	    "telem_ckms{name=\"a\",quantile=\"0.25\"} 21\n"
	    "telem_ckms{name=\"a\",quantile=\"0.5\"} 31\n"
	    "telem_ckms{name=\"a\",quantile=\"0.75\"} 41\n"
	    "telem_ckms{name=\"a\",quantile=\"0.9\"} 51\n"
	    "telem_ckms{name=\"a\",quantile=\"0.99\"} 61\n"
	    "telem_ckms_sum{name=\"a\"} 0.5\n"
	    "telem_ckms_count{name=\"a\"} 7\n"
	    "telem_ckms{name=\"b\\\"x\",quantile=\"0\"} 10\n"
	    "telem_ckms{name=\"b\\\"x\",quantile=\"0.25\"} 20\n"
	    "telem_ckms{name=\"b\\\"x\",quantile=\"0.5\"} 30\n"
	    "telem_ckms{name=\"b\\\"x\",quantile=\"0.75\"} 40\n"
	    "telem_ckms{name=\"b\\\"x\",quantile=\"0.9\"} 50\n"
	    "telem_ckms{name=\"b\\\"x\",quantile=\"0.99\"} 60\n"
	    "telem_ckms_sum{name=\"b\\\"x\"} 0.5\n"
	    "telem_ckms_count{name=\"b\\\"x\"} 7\n");
	cr_assert_str_eq(cm,
	    "# HELP telem_cma Cumulative moving average of each telem name's "
	    "values.\n"
	    "# TYPE telem_cma gauge\n"
	    "telem_cma{name=\"b\"} 0.30000000000000004\n"
	    "# HELP telem_cma_samples_total Values averaged into telem_cma, per "
	    "name.\n"
	    "# TYPE telem_cma_samples_total counter\n"
	    "telem_cma_samples_total{name=\"b\"} 3\n");
	struct prom_self s;
	prom_expo_self(x, &s);
	cr_assert_eq(s.reports, 2);
	cr_assert_eq(s.reports_broken, 0);
	cr_assert_eq(s.series_dropped, 0);
	free(ck);
	free(cm);
	prom_expo_free(x);
}

/* A report whose END counts another number of entries is discarded whole;
 * the previous report of that source stays on the page, and a report of
 * another source interleaved with it is not disturbed. */
Test(prom, a_cut_report_is_never_shown)
{
	struct prom_expo *x = prom_expo_new(0);
	feed(x, ent(REPORT_GAUGE, REPORT_SRC_CMA, "old", "cma", 1));
	cr_assert_eq(end(x, REPORT_SRC_CMA, 1), PROM_RENDERED);
	char *before = part(x, REPORT_SRC_CMA);
	cr_assert_neq(strstr(before, "name=\"old\"} 1\n"), NULL);

	feed(x, ent(REPORT_GAUGE, REPORT_SRC_CMA, "new1", "cma", 2));
	feed(x, ent(REPORT_SUM_QUANTILE, REPORT_SRC_CKMS, "k", "q0.5", 5));
	feed(x, ent(REPORT_GAUGE, REPORT_SRC_CMA, "new2", "cma", 2));
	cr_assert_eq(end(x, REPORT_SRC_CKMS, 1), PROM_RENDERED);
	/* An egress restarted mid-report: 2 entries came, END says 3. */
	cr_assert_eq(end(x, REPORT_SRC_CMA, 3), PROM_BROKEN);
	char *after = part(x, REPORT_SRC_CMA);
	cr_assert_str_eq(after, before);
	/* The next whole report replaces it. */
	feed(x, ent(REPORT_GAUGE, REPORT_SRC_CMA, "new", "cma", 3));
	cr_assert_eq(end(x, REPORT_SRC_CMA, 1), PROM_RENDERED);
	char *third = part(x, REPORT_SRC_CMA);
	cr_assert_eq(strstr(third, "old"), NULL);
	cr_assert_neq(strstr(third, "telem_cma{name=\"new\"} 3\n"), NULL);
	/* A report over the bound, and an abort, are discarded too. */
	struct prom_expo *small = prom_expo_new(2);
	for (int i = 0; i < 3; i++)
		feed(small, ent(REPORT_GAUGE, REPORT_SRC_CMA, "z", "cma", i));
	cr_assert_eq(end(small, REPORT_SRC_CMA, 3), PROM_BROKEN);
	feed(small, ent(REPORT_GAUGE, REPORT_SRC_CMA, "z", "cma", 1));
	prom_expo_abort(small);
	cr_assert_eq(end(small, REPORT_SRC_CMA, 1), PROM_BROKEN);
	struct prom_self s;
	prom_expo_self(small, &s);
	cr_assert_eq(s.reports_broken, 2);
	cr_assert_eq(s.reports, 0);
	prom_expo_self(x, &s);
	cr_assert_eq(s.reports_broken, 1);
	cr_assert_eq(s.reports, 3);
	free(before);
	free(after);
	free(third);
	prom_expo_free(small);
	prom_expo_free(x);
}

/* An END of no entries is a reset (egress/report_rec.h): with nothing
 * pending it changes nothing; after the part of a report a killed egress
 * left, it drops that part (counted broken), so that the next whole
 * report is shown rather than added to the part and dropped with it. */
Test(prom, a_reset_drops_only_the_part_before_it)
{
	struct prom_expo *x = prom_expo_new(0);
	feed(x, ent(REPORT_COUNTER, REPORT_SRC_STATSD, "hits", "count", 2));
	cr_assert_eq(end(x, REPORT_SRC_STATSD, 1), PROM_RENDERED);
	char *before = part(x, REPORT_SRC_STATSD);
	cr_assert_neq(strstr(before, "hits_total 2\n"), NULL, "%s", before);
	cr_assert_eq(end(x, REPORT_SRC_STATSD, 0), PROM_FED);
	char *same = part(x, REPORT_SRC_STATSD);
	cr_assert_str_eq(same, before);

	/* two entries of a report of three, then the egress died */
	feed(x, ent(REPORT_COUNTER, REPORT_SRC_STATSD, "a", "count", 1));
	feed(x, ent(REPORT_COUNTER, REPORT_SRC_STATSD, "b", "count", 1));
	feed(x, ent(REPORT_GAUGE, REPORT_SRC_CMA, "c", "cma", 7));
	/* the restarted one's reset, then its whole report */
	cr_assert_eq(end(x, REPORT_SRC_STATSD, 0), PROM_BROKEN);
	feed(x, ent(REPORT_COUNTER, REPORT_SRC_STATSD, "hits", "count", 5));
	cr_assert_eq(end(x, REPORT_SRC_STATSD, 1), PROM_RENDERED);
	char *after = part(x, REPORT_SRC_STATSD);
	cr_assert_neq(strstr(after, "hits_total 7\n"), NULL, "%s", after);
	cr_assert_eq(strstr(after, "a_total"), NULL, "%s", after);
	/* another source's pending report is not touched */
	cr_assert_eq(end(x, REPORT_SRC_CMA, 1), PROM_RENDERED);
	/* a reset after a report too big drops it as well */
	struct prom_expo *small = prom_expo_new(1);
	feed(small, ent(REPORT_GAUGE, REPORT_SRC_CMA, "z", "cma", 1));
	feed(small, ent(REPORT_GAUGE, REPORT_SRC_CMA, "z", "cma", 2));
	cr_assert_eq(end(small, REPORT_SRC_CMA, 0), PROM_BROKEN);
	feed(small, ent(REPORT_GAUGE, REPORT_SRC_CMA, "z", "cma", 3));
	cr_assert_eq(end(small, REPORT_SRC_CMA, 1), PROM_RENDERED);
	struct prom_self s;
	prom_expo_self(x, &s);
	cr_assert_eq(s.reports_broken, 1);
	cr_assert_eq(s.reports, 3);
	prom_expo_self(small, &s);
	cr_assert_eq(s.reports_broken, 1);
	cr_assert_eq(s.reports, 1);
	free(before);
	free(same);
	free(after);
	prom_expo_free(small);
	prom_expo_free(x);
}

Test(prom, statsd_as_statsd_exporter_maps_it)
{
	struct prom_expo *x = prom_expo_new(0);
	struct report_rec t90 = ent(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD,
	    "api.latency", "upper_90", 250);
	tag(&t90, "env", "prod");
	struct report_rec t99 = t90, sum = t90, cnt = t90, mean = t90;
	t99.field = "upper_99_9";
	t99.field_len = 10;
	t99.value = 900;
	sum.kind = REPORT_SUM_SUM;
	sum.field = "sum";
	sum.field_len = 3;
	sum.value = 1500;
	cnt.kind = REPORT_SUM_COUNT;
	cnt.field = "count";
	cnt.field_len = 5;
	cnt.value = 10;
	mean.kind = REPORT_DERIVED;
	mean.field = "mean_90";
	mean.field_len = 7;
	struct report_rec c = ent(REPORT_COUNTER, REPORT_SRC_STATSD, "hits", "count", 5);
	struct report_rec g = ent(REPORT_GAUGE, REPORT_SRC_STATSD, "1temp.é", "value", -3);
	struct report_rec recs[] = { t90, t99, sum, cnt, mean, c, g };
	for (size_t i = 0; i < 7; i++)
		feed(x, recs[i]);
	cr_assert_eq(end(x, REPORT_SRC_STATSD, 7), PROM_RENDERED);
	/* A second flush: hits adds up, the timer is replaced. */
	c.value = 2;
	feed(x, c);
	cr_assert_eq(end(x, REPORT_SRC_STATSD, 1), PROM_RENDERED);
	char *s = part(x, REPORT_SRC_STATSD);
	cr_assert_str_eq(s,
	    "# HELP hits_total statsd counter (the sum of its increments since "
	    "the sink started, or since statsd last deleted it), as "
	    "statsd_exporter maps it.\n"
	    "# TYPE hits_total counter\n"
	    "hits_total 7\n");
	free(s);
	/* A flush without counts for hits still reports it, as 0. */
	c.value = 0;
	feed(x, t90);
	feed(x, t99);
	feed(x, sum);
	feed(x, cnt);
	feed(x, g);
	feed(x, c);
	cr_assert_eq(end(x, REPORT_SRC_STATSD, 6), PROM_RENDERED);
	s = part(x, REPORT_SRC_STATSD);
	cr_assert_str_eq(s,
	    "# HELP _1temp__ statsd gauge, as statsd_exporter maps it.\n"
	    "# TYPE _1temp__ gauge\n"
	    "_1temp__ -3\n"
	    "# HELP api_latency statsd timer in seconds, as statsd_exporter "
	    "maps it.\n"
	    "# TYPE api_latency summary\n"
	    "api_latency{env=\"prod\",quantile=\"0.9\"} 0.25\n"
	    "api_latency{env=\"prod\",quantile=\"0.999\"} 0.9\n"
	    "api_latency_sum{env=\"prod\"} 1.5\n"
	    "api_latency_count{env=\"prod\"} 10\n"
	    "# HELP hits_total statsd counter (the sum of its increments since "
	    "the sink started, or since statsd last deleted it), as "
	    "statsd_exporter maps it.\n"
	    "# TYPE hits_total counter\n"
	    "hits_total 7\n");
	free(s);
	/* A report without hits (statsd deleted it: --delete-counters)
	 * forgets it; back, it counts from its new increments. */
	feed(x, g);
	cr_assert_eq(end(x, REPORT_SRC_STATSD, 1), PROM_RENDERED);
	s = part(x, REPORT_SRC_STATSD);
	cr_assert_null(strstr(s, "hits_total"), "%s", s);
	free(s);
	c.value = 1;
	feed(x, c);
	cr_assert_eq(end(x, REPORT_SRC_STATSD, 1), PROM_RENDERED);
	s = part(x, REPORT_SRC_STATSD);
	cr_assert(strstr(s, "\nhits_total 1\n") != NULL, "%s", s);
	free(s);
	prom_expo_free(x);
}

/* Counters whose names keep changing, each in one report only (statsd
 * with --delete-counters): the totals hold what the last report had, not
 * every name ever seen. */
Test(prom, statsd_totals_hold_only_the_last_reports_counters)
{
	struct prom_expo *x = prom_expo_new(0);
	char name[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "churn%d", i);
		feed(x, ent(REPORT_COUNTER, REPORT_SRC_STATSD, name, "count", 1));
		snprintf(name, sizeof(name), "steady");
		feed(x, ent(REPORT_COUNTER, REPORT_SRC_STATSD, name, "count", 1));
		cr_assert_eq(end(x, REPORT_SRC_STATSD, 2), PROM_RENDERED);
	}
	char *s = part(x, REPORT_SRC_STATSD);
	cr_assert(strstr(s, "\nchurn1999_total 1\n") != NULL, "%s", s);
	cr_assert(strstr(s, "\nsteady_total 2000\n") != NULL, "%s", s);
	cr_assert_eq(h_count(s, "# TYPE "), 2, "%s", s);
	free(s);
	prom_expo_free(x);
}

/* Names that meet after escaping, types that disagree, tags that make no
 * label, names of telem's own families: the first wins, the rest are
 * counted, and what is shown stays valid (checked by promtool below). */
Test(prom, statsd_conflicts_are_left_out_and_counted)
{
	struct prom_expo *x = prom_expo_new(0);
	struct report_rec bad_tag = ent(REPORT_GAUGE, REPORT_SRC_STATSD, "t1", "value", 1);
	tag(&bad_tag, "__x", "1");
	struct report_rec twin_tags = ent(REPORT_GAUGE, REPORT_SRC_STATSD, "t2", "value", 1);
	tag(&twin_tags, "a.b", "1");
	tag(&twin_tags, "a_b", "2");
	struct report_rec qtag = ent(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD, "t3", "upper_50", 1);
	tag(&qtag, "quantile", "1");
	struct report_rec recs[] = {
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "a.b", "value", 1),
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "a_b", "value", 2),   /* same series */
		ent(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD, "a.b", "upper_50", 1), /* type */
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "telem.cma", "value", 1),
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "telem_ckms_count", "value", 1),
		ent(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD, "s", "upper_50", 1),
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "s_count", "value", 1),
		bad_tag, twin_tags, qtag,
		ent(REPORT_GAUGE, REPORT_SRC_CKMS, "x", "q", 1),  /* not a ckms kind */
	};
	size_t n = sizeof(recs) / sizeof(recs[0]);
	for (size_t i = 0; i < n - 1; i++)
		feed(x, recs[i]);
	cr_assert_eq(end(x, REPORT_SRC_STATSD, n - 1), PROM_RENDERED);
	feed(x, recs[n - 1]);
	cr_assert_eq(end(x, REPORT_SRC_CKMS, 1), PROM_RENDERED);
	char *s = part(x, REPORT_SRC_STATSD);
	cr_assert_neq(strstr(s, "\na_b 1\n"), NULL, "%s", s);
	cr_assert_eq(strstr(s, "a_b 2"), NULL);
	cr_assert_eq(strstr(s, "telem_"), NULL);
	cr_assert_eq(strstr(s, "s_count 1"), NULL);
	cr_assert_neq(strstr(s, "s{quantile=\"0.5\"} 0.001\n"), NULL);
	struct prom_self st;
	prom_expo_self(x, &st);
	cr_assert_eq(st.series_dropped, 9, "dropped %llu",
	    (unsigned long long)st.series_dropped);
	free(s);
	prom_expo_free(x);
}

/* The page as the sink serves it: every source's text, then its own
 * counters. Written to a temporary file; promtool's exit status. */
static int
promtool(struct prom_expo *x, size_t *bytes)
{
	char path[128];
	h_tmp_name(path, sizeof(path), "prom");
	int fd = mkstemp(path);
	cr_assert_neq(fd, -1);
	FILE *f = fdopen(fd, "w");
	cr_assert_not_null(f);
	struct prom_text *p[REPORT_SRC_N];
	prom_expo_parts(x, p);
	*bytes = 0;
	for (size_t i = 0; i < REPORT_SRC_N; i++) {
		if (p[i] != NULL) {
			fwrite(p[i]->text, 1, p[i]->len, f);
			*bytes += p[i]->len;
		}
		prom_text_unref(p[i]);
	}
	struct prom_self s;
	char self[PROM_SELF_MAX];
	prom_expo_self(x, &s);
	s.scrapes = 12;
	s.scrape_errors = 1;
	size_t n = prom_fmt_self(&s, self, sizeof(self));
	cr_assert_gt(n, 0);
	fwrite(self, 1, n, f);
	cr_assert_eq(fclose(f), 0);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
	int rc = system(cmd);
	unlink(path);
	return rc;
}

/* statsd counters go to the running totals, not onto the page as they
 * come: one that shares its label block with the entry before it (the
 * empty block of every untagged name, or the same tags) must not give back
 * any of the names and blocks written before it (egress/prom_text.c,
 * entry_item). Every family once, every name one that was sent, telem's
 * own names left out and counted. */
Test(prom, statsd_counters_among_gauges_keep_every_name)
{
	struct prom_expo *x = prom_expo_new(0);
	char longname[242];
	longname[0] = 'g';
	memset(longname + 1, 'z', 240);
	longname[241] = '\0';
	struct report_rec up = ent(REPORT_GAUGE, REPORT_SRC_STATSD, "up",
	    "value", 2);
	tag(&up, "host", "a");
	struct report_rec req_a = ent(REPORT_COUNTER, REPORT_SRC_STATSD, "req",
	    "count", 3);
	tag(&req_a, "host", "a");
	struct report_rec req_b = req_a;
	req_b.tag[0].val = "b";
	req_b.value = 1;
	struct report_rec recs[] = {
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "g.a", "value", 1),
		ent(REPORT_COUNTER, REPORT_SRC_STATSD, "hits", "count", 5),
		/* telem's own names */
		ent(REPORT_COUNTER, REPORT_SRC_STATSD, "telem_sink_prom_scrapes",
		    "count", 7),
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "telem_ckms", "value", 1),
		up, req_a,
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, longname, "value", 4),
		req_b,
		ent(REPORT_COUNTER, REPORT_SRC_STATSD, "hits", "count", 1),
	};
	size_t n = sizeof(recs) / sizeof(recs[0]);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(feed(x, recs[i]), PROM_FED);
	cr_assert_eq(end(x, REPORT_SRC_STATSD, n), PROM_RENDERED);
	char *s = part(x, REPORT_SRC_STATSD);
	char want[4096];
	snprintf(want, sizeof(want),
	    "# HELP g_a statsd gauge, as statsd_exporter maps it.\n"
	    "# TYPE g_a gauge\n"
	    "g_a 1\n"
	    "# HELP %s statsd gauge, as statsd_exporter maps it.\n"
	    "# TYPE %s gauge\n"
	    "%s 4\n"
	    "# HELP hits_total statsd counter (the sum of its increments since "
	    "the sink started, or since statsd last deleted it), as "
	    "statsd_exporter maps it.\n"
	    "# TYPE hits_total counter\n"
	    "hits_total 6\n"
	    "# HELP req_total statsd counter (the sum of its increments since "
	    "the sink started, or since statsd last deleted it), as "
	    "statsd_exporter maps it.\n"
	    "# TYPE req_total counter\n"
	    "req_total{host=\"a\"} 3\n"
	    "req_total{host=\"b\"} 1\n"
	    "# HELP up statsd gauge, as statsd_exporter maps it.\n"
	    "# TYPE up gauge\n"
	    "up{host=\"a\"} 2\n", longname, longname, longname);
	cr_assert_str_eq(s, want);
	struct prom_self st;
	prom_expo_self(x, &st);
	cr_assert_eq(st.series_dropped, 2, "dropped %llu",
	    (unsigned long long)st.series_dropped);
	free(s);
	size_t bytes;
	cr_assert_eq(promtool(x, &bytes), 0, "promtool check metrics failed");
	prom_expo_free(x);
}

/* A statsd timer named telem_ckms (statsd's telem.ckms:5|ms) is a
 * summary of the name telem's CKMS family has: it is left out and
 * counted, as the names of its _sum and _count are, and the page is
 * rendered. It had taken the family reserved for CKMS, which has no HELP,
 * and the sink died rendering the page (a NULL HELP). */
Test(prom, a_statsd_timer_named_telem_ckms_is_left_out)
{
	struct prom_expo *x = prom_expo_new(0);
	struct report_rec recs[] = {
		ent(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD, "telem.ckms", "upper_90",
		    5),
		ent(REPORT_SUM_SUM, REPORT_SRC_STATSD, "telem.ckms", "sum", 5),
		ent(REPORT_SUM_COUNT, REPORT_SRC_STATSD, "telem.ckms", "count", 1),
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "telem_ckms_sum", "value", 1),
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "telem_ckms_count", "value", 1),
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "up", "value", 2),
	};
	size_t n = sizeof(recs) / sizeof(recs[0]);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(feed(x, recs[i]), PROM_FED);
	cr_assert_eq(end(x, REPORT_SRC_STATSD, n), PROM_RENDERED);
	char *s = part(x, REPORT_SRC_STATSD);
	cr_assert_str_eq(s, "# HELP up statsd gauge, as statsd_exporter maps it.\n"
	    "# TYPE up gauge\n"
	    "up 2\n");
	struct prom_self st;
	prom_expo_self(x, &st);
	cr_assert_eq(st.series_dropped, 5, "dropped %llu",
	    (unsigned long long)st.series_dropped);
	free(s);
	prom_expo_free(x);
}

Test(prom, promtool_accepts_10000_names)
{
	cr_assert_eq(system("command -v promtool >/dev/null"), 0,
	    "promtool missing: run make deps (Debian prometheus)");
	struct prom_expo *x = prom_expo_new(0);
	static const char *const q[] = { "q0", "q0.25", "q0.5", "q0.75", "q0.9",
		"q0.99" };
	char name[64];
	size_t n = 0;
	for (int k = 0; k < 10000; k++) {
		snprintf(name, sizeof(name), "host%d.cpu\\x\"%d", k % 97, k);
		for (int i = 0; i < 6; i++, n++)
			feed(x, ent(REPORT_SUM_QUANTILE, REPORT_SRC_CKMS, name, q[i],
			    k * 10 + i));
		feed(x, ent(REPORT_SUM_SUM, REPORT_SRC_CKMS, name, "sum", k * 1.5));
		feed(x, ent(REPORT_SUM_COUNT, REPORT_SRC_CKMS, name, "count", k));
		n += 2;
	}
	cr_assert_eq(end(x, REPORT_SRC_CKMS, n), PROM_RENDERED);
	for (int k = 0; k < 10000; k++) {
		snprintf(name, sizeof(name), "m%d", k);
		feed(x, ent(REPORT_GAUGE, REPORT_SRC_CMA, name, "cma", k / 3.0));
		feed(x, ent(REPORT_COUNTER, REPORT_SRC_CMA, name, "count", k));
	}
	cr_assert_eq(end(x, REPORT_SRC_CMA, 20000), PROM_RENDERED);
	n = 0;
	for (int k = 0; k < 1000; k++, n += 3) {
		struct report_rec r = ent(REPORT_GAUGE, REPORT_SRC_STATSD, name,
		    "value", k);
		snprintf(name, sizeof(name), "app.g%d", k);
		r.name_len = (uint8_t)strlen(name);
		tag(&r, "host", "web-1");
		feed(x, r);
		snprintf(name, sizeof(name), "app.c%d", k);
		r = ent(REPORT_COUNTER, REPORT_SRC_STATSD, name, "count", k);
		feed(x, r);
		snprintf(name, sizeof(name), "app.t%d", k);
		r = ent(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD, name, "upper_90", k);
		tag(&r, "path", "/a\"b\\c");
		feed(x, r);
	}
	cr_assert_eq(end(x, REPORT_SRC_STATSD, n), PROM_RENDERED);
	size_t bytes;
	cr_assert_eq(promtool(x, &bytes), 0, "promtool check metrics failed");
	cr_assert_gt(bytes, 80000 * 20);
	prom_expo_free(x);
}

Test(prom, promtool_accepts_the_conflicts_page)
{
	struct prom_expo *x = prom_expo_new(0);
	struct report_rec recs[] = {
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "aa.bb", "value", 1),
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "aa_bb", "value", 2),
		ent(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD, "aa.bb", "upper_50", 1),
		ent(REPORT_SUM_QUANTILE, REPORT_SRC_STATSD, "s", "upper_50", NAN),
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "s_count", "value", INFINITY),
		ent(REPORT_GAUGE, REPORT_SRC_STATSD, "telem_cma", "value", 1),
		ent(REPORT_COUNTER, REPORT_SRC_STATSD, "s_sum", "count", 1),
	};
	size_t n = sizeof(recs) / sizeof(recs[0]);
	for (size_t i = 0; i < n; i++)
		feed(x, recs[i]);
	cr_assert_eq(end(x, REPORT_SRC_STATSD, n), PROM_RENDERED);
	feed(x, ent(REPORT_GAUGE, REPORT_SRC_CMA, "telem_cma", "cma", -INFINITY));
	cr_assert_eq(end(x, REPORT_SRC_CMA, 1), PROM_RENDERED);
	size_t bytes;
	cr_assert_eq(promtool(x, &bytes), 0);
	prom_expo_free(x);
}

/* The check above can fail: promtool refuses a family typed twice. */
Test(prom, promtool_refuses_a_broken_page)
{
	char path[128];
	h_tmp_name(path, sizeof(path), "prom");
	int fd = mkstemp(path);
	cr_assert_neq(fd, -1);
	const char bad[] = "# TYPE x gauge\nx 1\n# TYPE x gauge\nx{a=\"1\"} 2\n";
	cr_assert_eq(write(fd, bad, sizeof(bad) - 1), (ssize_t)sizeof(bad) - 1);
	close(fd);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>/dev/null", path);
	int rc = system(cmd);
	unlink(path);
	cr_assert_neq(rc, 0);
}
