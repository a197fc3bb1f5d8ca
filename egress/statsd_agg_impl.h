/* statsd_agg_impl.h - the aggregator's state, shared by statsd_agg.c
 * (configuration, adding metrics) and statsd_agg_flush.c (the flush, its
 * Graphite names and the clearing after it). Not for other files. */
#ifndef TELEM_STATSD_AGG_IMPL_H
#define TELEM_STATSD_AGG_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "egress/names.h"
#include "egress/statsd_agg.h"
#include "egress/statsd_timer.h"

#define PREFIX_MAX 128
#define PATH_MAX_LEN 1024

struct counter {
	double v;
};

struct gauge {
	double v;
	unsigned ttl;
	int has_ttl;
};

struct hist {
	char *metric;
	double *edge;
	char **name;
	struct statsd_bins bins;
};

struct statsd_agg {
	double *pct;
	char **pname;
	size_t npct;
	struct hist *hist;
	size_t nhist;
	int del_counters, del_timers, del_gauges, del_sets;
	unsigned ttl;
	int legacy, flush_counts;
	char *pfx[7];              /* global, counter, timer, gauge, set, stats */
	char sfx[PREFIX_MAX + 2];  /* "" or "." + global_suffix */
	size_t max_names, max_members, exact_max, exact_total;
	double (*clock_ms)(void *);
	void *clock_ctx;
	char **tmetric;            /* calculatedTimerMetrics, copied */
	size_t ntmetric;
	struct names *counters, *timers, *gauges, *sets;
	size_t members;            /* set members added this flush */
	size_t exact;              /* exact timer values held this flush */
	int64_t old_ts;
	struct statsd_agg_stats st;
	char k_bad[PREFIX_MAX + 20], k_packets[PREFIX_MAX + 20],
	    k_metrics[PREFIX_MAX + 20], k_lag[PREFIX_MAX + 20];
	/* flush-time state for the callbacks */
	statsd_line_fn *fn;
	void *ctx;
	statsd_entry_fn *efn;      /* NULL: no typed entries */
	void *ectx;
	int64_t ts;
	uint32_t interval_ms;
	uint64_t num_stats;
	const char *key;
	size_t key_len;
	int rebuild_failed;
	struct names *keep;        /* the table being rebuilt */
	size_t keep_size;
};

enum { P_GLOBAL, P_COUNTER, P_TIMER, P_GAUGE, P_SET, P_STATS, P_SUFFIX };

/* Payload finalizers for names_free (statsd_agg.c). */
void statsd_agg_timer_fini(void *payload);
void statsd_agg_set_fini(void *payload);

#endif
