/* statsd_agg.h - statsd 0.9.0's aggregation and Graphite names (docs/design.md
 * §14), pure: metrics from ingest/statsd.h in, one callback per Graphite
 * line out at each flush. No I/O, no clock unless one is given. Not yet
 * wired into a stage: telem-egress-statsd will call it.
 *
 * What a flush writes (statsd 0.9.0's stats.js, lib/process_metrics.js and
 * backends/graphite.js; telem follows them value for value unless noted):
 *
 * Counters: each metric adds value * (1 / rate) (statsd's own expression,
 *   not value / rate). At a flush: count = that sum, rate = count /
 *   (interval_ms / 1000). Then reset to 0 (kept, written as 0 at the next
 *   flush) or, with delete_counters, deleted -- except counters whose key
 *   contains "packets_received", "metrics_received" or "bad_lines_seen",
 *   which are reset to 0, as statsd does.
 * Timers (ms, and h, d in strict parsing): each metric adds its value
 *   (unscaled) and 1/rate to the timer's count. At a flush, over the values
 *   sorted ascending, with n values, for each percent threshold P in the
 *   order configured: k = Math.round(|P| / 100 * n) (k = n when n = 1;
 *   no fields for P when n > 1 and k = 0): count_P = k; for P > 0
 *   upper_P = the k-th smallest, sum_P and sum_squares_P of the k smallest
 *   (summed in sorted order), mean_P = sum_P / k; for P < 0 lower_P = the
 *   k-th largest, sum_P = sum(all) - sum(the n - k smallest), likewise
 *   sum_squares_P (statsd 0.9 writes NaN when k = n here: it reads index
 *   -1; telem subtracts nothing). Then std (population, two-pass), upper,
 *   lower, count (sum of 1/rate: 10 values at @0.1 count 100), count_ps =
 *   count / (interval_ms / 1000), sum, sum_squares, mean, median (the
 *   middle value, or the mean of the two middle ones). Then for a timer
 *   whose key contains a configured histogram's metric (the first such
 *   histogram; "" matches all): histogram.bin_E for each edge E, the number
 *   of values v with edge[i-1] <= v < E (bin_inf: all the rest); values past
 *   the last finite edge are not counted. Names: P and E written as
 *   JavaScript writes numbers (statsd_num.h), the first '.' made '_' and
 *   the first '-' made "top": 99.9 -> 99_9, -10 -> top10, 0.5 -> bin_0_5.
 *   A timer with no values this flush writes count_ps 0 and count 0 only.
 *   Reset each flush (or deleted, delete_timers). Past timer_exact_max
 *   values in one flush, a timer switches to the sketch of
 *   egress/statsd_timer.h for that flush (error bound there).
 * Gauges: a value without sign sets the gauge; with '+' or '-' it is added
 *   when the gauge exists and is not 0 (statsd tests the value's truth),
 *   else it sets the gauge to the signed value (a delta on an unset gauge:
 *   -5 sets -5). Kept across flushes; with delete_gauges, a gauge not
 *   updated for gauges_max_ttl flushes is deleted after the flush (written
 *   gauges_max_ttl times after its last update).
 * Sets: the number of distinct members ("" is "0"). Reset (count 0 next
 *   flush) or deleted (delete_sets).
 * statsd's own: the counters <prefix_stats>.packets_received,
 *   .metrics_received and .bad_lines_seen (statsd_agg_received feeds them;
 *   they exist, as 0, from the start), and the gauge
 *   <prefix_stats>.timestamp_lag = ts - previous flush's ts - interval_ms /
 *   1000, from the second flush on. numStats = counters + timers + gauges +
 *   sets written this flush. processing_time and calculationtime are the
 *   milliseconds the math and the naming took, by the clock given (0
 *   without one).
 *
 * Graphite names, legacy namespace (statsd's default), sfx = "." +
 * global_suffix when one is set, ";tags" = the key's tags:
 *   stats.KEY{sfx}{;tags}                  counter rate
 *   stats_counts.KEY{sfx}{;tags}           counter count (flush_counts)
 *   stats.timers.KEY.FIELD{sfx}{;tags}     timer fields, as listed above
 *   stats.gauges.KEY{sfx}{;tags}
 *   stats.sets.KEY.count{sfx}{;tags}
 *   PS.numStats{sfx}                       PS = prefix_stats ("statsd")
 *   stats.PS.graphiteStats.calculationtime{sfx}
 *   stats.PS.processing_time{sfx}
 * (global_prefix and prefix_counter/timer/gauge/set are ignored here.)
 * New namespace (legacy_namespace 0), G = global_prefix ("stats"),
 * C/T/GA/S = prefix_counter ("counters") / timer ("timers") / gauge
 * ("gauges") / set ("sets"); an empty prefix is left out with its dot:
 *   G.C.KEY.rate{sfx}{;tags}   G.C.KEY.count{sfx}{;tags}
 *   G.T.KEY.FIELD{sfx}{;tags}  G.GA.KEY{sfx}{;tags}  G.S.KEY.count{sfx}{;tags}
 *   G.PS.numStats{sfx}  G.PS.graphiteStats.calculationtime{sfx}
 *   G.PS.processing_time{sfx}
 * KEY is the key up to its first ';', tags are the rest (Graphite tags,
 * `name;k=v`, as statsd 0.9's backend writes them). statsd's backend also
 * writes PS.graphiteStats.last_exception, last_flush, flush_time and
 * flush_length: those describe the Graphite connection and belong to the
 * sink that writes to carbon, not here.
 *
 * What differs from statsd 0.9.0: lines come out grouped by kind in byte
 * order of the key (statsd: insertion order; carbon does not care); the
 * k = n NaN above; the empty key (COMPAT_090 parsing only) is dropped;
 * keys are capped (max_names of each kind: a new key past the cap is
 * dropped and counted, statsd has no cap), set members too (max_members
 * per flush over all sets); percent thresholds must satisfy 0 < |P| <= 100
 * and be distinct, histogram edges be ascending (statsd takes anything and
 * writes undefined or NaN). */
#ifndef TELEM_STATSD_AGG_H
#define TELEM_STATSD_AGG_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/statsd.h"

struct statsd_agg;

struct statsd_histogram {
	const char *metric;  /* matched as a substring of the key */
	const double *bins;  /* ascending; INFINITY is statsd's 'inf' */
	size_t nbins;
};

struct statsd_agg_config {
	const double *percent;   /* percentThreshold; default {90} */
	size_t npercent;
	const struct statsd_histogram *histogram;
	size_t nhistogram;
	/* deleteIdleStats sets the four below unless each is given alone;
	 * the caller resolves that, as statsd's stats.js does. */
	int delete_counters, delete_timers, delete_gauges, delete_sets;
	unsigned gauges_max_ttl; /* gaugesMaxTTL; 1 (also for 0) */
	int legacy_namespace;    /* graphite.legacyNamespace; default 1 */
	int flush_counts;        /* flush_counts; default 1 */
	/* graphite.globalPrefix ... globalSuffix, prefixStats; NULL means
	 * unset (the default above), "" is empty. At most 128 bytes each. */
	const char *global_prefix, *prefix_counter, *prefix_timer,
	    *prefix_gauge, *prefix_set, *prefix_stats, *global_suffix;
	size_t max_names;        /* keys of each kind; default 100000
	                          * (statsd's 3 counters and timestamp_lag
	                          * are keys too) */
	size_t max_members;      /* set members a flush, all sets; 1<<22 */
	size_t timer_exact_max;  /* values a timer a flush before the sketch;
	                          * default 65536. All timers together keep
	                          * at most 128 times that exactly a flush
	                          * (64 MiB of doubles by default); past it a
	                          * timer holding 1024 or more switches to the
	                          * sketch when its array next grows. */
	double (*clock_ms)(void *); /* milliseconds, any origin; NULL: none */
	void *clock_ctx;
	/* calculatedTimerMetrics: when ntimer_metrics > 0, only the timer
	 * fields named here are written, a field's name cleaned as statsd
	 * cleans it: a trailing "_<digits>" or "_top<digits>" becomes
	 * "_percent" (so "mean_90" is "mean_percent", and "mean_99_9" is
	 * "mean_99_percent", as in statsd 0.9), all bins are "histogram". */
	const char *const *timer_metrics;
	size_t ntimer_metrics;
};

/* Counts of what the caps turned away (cumulative). */
struct statsd_agg_stats {
	uint64_t dropped_names;   /* metrics whose new key passed max_names */
	uint64_t dropped_members; /* set members past max_members */
	uint64_t dropped_nomem;   /* metrics lost to ENOMEM */
	uint64_t sketched;        /* timer flushes that used the sketch */
};

/* One Graphite line: path (NUL-terminated, path_len bytes), value, and
 * the flush's timestamp. Format the value with statsd_num_format
 * (egress/statsd_num.h) to write it as statsd does. */
typedef void statsd_line_fn(void *ctx, const char *path, size_t path_len,
    double value, int64_t ts);

/* One value of one metric at a flush, typed (for a report, as
 * egress/report_rec.h carries it): the key's name (already sanitized by
 * the parser; no namespace, prefix or suffix), its tags (the key's
 * ';'-separated parts after the name, "k=v" each, in the key's order, which
 * ingest/statsd.h sorts bytewise; tags_len 0 when none), the metric's type,
 * and the field as statsd names it: counters "count" and "rate"; timers the
 * fields listed above (the same ones the Graphite lines get, after
 * calculatedTimerMetrics); gauges "value"; sets "count". statsd's own
 * numStats, calculationtime and processing_time are not entries (its three
 * counters and timestamp_lag are: they are keys). */
typedef void statsd_entry_fn(void *ctx, enum statsd_type type,
    const char *name, size_t name_len, const char *tags, size_t tags_len,
    const char *field, double value, int64_t ts);

/* Fill c with statsd's defaults (pointers NULL, counts as above). */
void statsd_agg_config_default(struct statsd_agg_config *c);
/* A new aggregator; c and everything it points to are copied. Returns
 * NULL with errno EINVAL (a threshold outside 0 < |P| <= 100 or repeated,
 * bins not ascending, a prefix over 128 bytes, a cap of 0) or ENOMEM. */
struct statsd_agg *statsd_agg_new(const struct statsd_agg_config *c);
/* Free a and everything it holds; NULL is allowed. */
void statsd_agg_free(struct statsd_agg *a);
/* Apply one metric (from statsd_parse, or built by the caller with the
 * same fields; only type, key, key_len, value, delta, rate, member and
 * member_len are read: name_len and the tags need not be set). Returns 0, or -1 with errno ENOSPC (a new key past
 * max_names, or a set member past max_members: counted in the stats),
 * ENOMEM (counted too) or EINVAL (key_len 0 or over STATSD_KEY_MAX, an
 * unknown type); nothing else changes then, except a timer's count, which
 * statsd raises before it stores the value. */
int statsd_agg_add(struct statsd_agg *a, const struct statsd_metric *m);
/* Add to statsd's own counters: datagrams received, non-empty lines
 * (statsd_result.lines) and bad metrics (statsd_result.bad). */
void statsd_agg_received(struct statsd_agg *a, uint64_t packets,
    uint64_t lines, uint64_t bad);
/* Flush: call fn for every Graphite line of statsd's flush of interval_ms
 * milliseconds at ts (Unix seconds, as statsd's Math.round(Date.now() /
 * 1000)), then reset or delete as configured. Returns 0; -1 with errno
 * EINVAL when interval_ms is 0 (nothing done); -1 with errno ENOMEM when
 * a table could not be rebuilt to delete keys (the lines were written,
 * the keys are kept, reset). Allocates only to rebuild tables when
 * deleting keys and to create the timestamp_lag gauge once. */
int statsd_agg_flush(struct statsd_agg *a, uint32_t interval_ms, int64_t ts,
    statsd_line_fn *fn, void *ctx);
/* statsd_agg_flush, and also efn (when not NULL) for every value of every
 * key, in the order of the Graphite lines, each just after its line. The
 * Graphite lines are the same as statsd_agg_flush's. */
int statsd_agg_flush_entries(struct statsd_agg *a, uint32_t interval_ms,
    int64_t ts, statsd_line_fn *fn, void *ctx, statsd_entry_fn *efn,
    void *ectx);
/* What the caps turned away so far. */
void statsd_agg_stats(const struct statsd_agg *a, struct statsd_agg_stats *s);

#endif
