/* statsd_agg_flush.c - statsd 0.9's flush: each key's lines under the
 * Graphite names of statsd's backend, statsd's own metrics, then the reset
 * or deletion of what the flush wrote (statsd_agg.h has the contract). */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "egress/names.h"
#include "egress/statsd_agg_impl.h"
#include "egress/statsd_set.h"
#include "egress/statsd_timer.h"


static double
now_ms(const struct statsd_agg *a)
{
	return a->clock_ms ? a->clock_ms(a->clock_ctx) : 0;
}

enum ns { NS_RATE, NS_COUNT, NS_TIMER, NS_GAUGE, NS_SET, NS_GLOBAL, NS_NONE };

/* The namespace parts of statsd's Graphite backend for one kind. */
static size_t
ns_of(const struct statsd_agg *a, enum ns kind, const char **ns)
{
	static const char *legacy[][2] = {
		[NS_RATE] = { "stats", NULL }, [NS_COUNT] = { "stats_counts", NULL },
		[NS_TIMER] = { "stats", "timers" }, [NS_GAUGE] = { "stats", "gauges" },
		[NS_SET] = { "stats", "sets" }, [NS_GLOBAL] = { "stats", NULL },
		[NS_NONE] = { NULL, NULL },
	};
	static const int pfx[] = { [NS_RATE] = P_COUNTER, [NS_COUNT] = P_COUNTER,
		[NS_TIMER] = P_TIMER, [NS_GAUGE] = P_GAUGE, [NS_SET] = P_SET,
		[NS_GLOBAL] = -1, [NS_NONE] = -1 };
	size_t n = 0;

	if (kind == NS_NONE)
		return 0;
	if (a->legacy) {
		ns[n++] = legacy[kind][0];
		if (legacy[kind][1])
			ns[n++] = legacy[kind][1];
		return n;
	}
	if (a->pfx[P_GLOBAL][0])
		ns[n++] = a->pfx[P_GLOBAL];
	if (pfx[kind] >= 0 && a->pfx[pfx[kind]][0])
		ns[n++] = a->pfx[pfx[kind]];
	return n;
}

static void
put(char *p, size_t *o, const char *s, size_t n)
{
	if (*o + n > PATH_MAX_LEN)
		n = PATH_MAX_LEN - *o; /* cannot happen: the parts are bounded */
	memcpy(p + *o, s, n);
	*o += n;
}

/* One line, as graphite.js's format(): the namespace, the key's name and
 * the fields joined by '.', then the suffix, then the key's ";tags". */
static void
line(struct statsd_agg *a, enum ns kind, const char *key, size_t klen,
    const char *f1, const char *f2, double v)
{
	const char *ns[2];
	char p[PATH_MAX_LEN + 1];
	size_t o = 0, nns = ns_of(a, kind, ns);
	const char *semi = memchr(key, ';', klen);
	size_t nl = semi ? (size_t)(semi - key) : klen;

	for (size_t i = 0; i < nns; i++) {
		put(p, &o, ns[i], strlen(ns[i]));
		put(p, &o, ".", 1);
	}
	put(p, &o, key, nl);
	const char *f[2] = { f1, f2 };
	for (int i = 0; i < 2; i++) {
		if (f[i]) {
			put(p, &o, ".", 1);
			put(p, &o, f[i], strlen(f[i]));
		}
	}
	put(p, &o, a->sfx, strlen(a->sfx));
	if (semi)
		put(p, &o, semi, klen - nl);
	p[o] = '\0';
	a->fn(a->ctx, p, o, v, a->ts);
}

/* The typed entry of one field of key (statsd_entry_fn). */
static void
entry(struct statsd_agg *a, enum statsd_type type, const char *key,
    size_t klen, const char *field, double v)
{
	if (a->efn == NULL)
		return;
	const char *semi = memchr(key, ';', klen);
	size_t nl = semi ? (size_t)(semi - key) : klen;
	const char *tags = semi ? semi + 1 : key + klen;
	a->efn(a->ectx, type, key, nl, tags, semi ? klen - nl - 1 : 0, field, v,
	    a->ts);
}

static void
flush_counter(void *ctx, const char *key, size_t len, void *payload)
{
	struct statsd_agg *a = ctx;
	struct counter *c = payload;
	double rate = c->v / (a->interval_ms / 1000.0);

	if (a->legacy) {
		line(a, NS_RATE, key, len, NULL, NULL, rate);
		entry(a, STATSD_COUNTER, key, len, "rate", rate);
		if (a->flush_counts)
			line(a, NS_COUNT, key, len, NULL, NULL, c->v);
	} else {
		line(a, NS_RATE, key, len, "rate", NULL, rate);
		entry(a, STATSD_COUNTER, key, len, "rate", rate);
		if (a->flush_counts)
			line(a, NS_COUNT, key, len, "count", NULL, c->v);
	}
	/* The count is the counter's entry even without flush_counts: it is
	 * what a report needs (egress/report_rec.h REPORT_COUNTER). */
	entry(a, STATSD_COUNTER, key, len, "count", c->v);
	a->num_stats++;
}

/* calculatedTimerMetrics (process_metrics.js, filter_timer_metrics):
 * the field's name with /_(top)?\d+$/ made "_percent", bins "histogram",
 * must be listed. */
static int
timer_field_wanted(const struct statsd_agg *a, const char *field)
{
	char clean[64];
	size_t n = strlen(field), d = n;

	if (a->ntmetric == 0)
		return 1;
	if (strncmp(field, "histogram.", 10) == 0) {
		n = 9;
	} else {
		while (d > 0 && field[d - 1] >= '0' && field[d - 1] <= '9')
			d--;
		if (d < n && d >= 4 && strncmp(field + d - 4, "_top", 4) == 0)
			n = d - 4;
		else if (d < n && d >= 1 && field[d - 1] == '_')
			n = d - 1;
	}
	if (n + 9 > sizeof(clean))
		return 0;
	memcpy(clean, field, n);
	strcpy(clean + n, n < strlen(field) && strncmp(field, "histogram.", 10) ?
	    "_percent" : "");
	for (size_t i = 0; i < a->ntmetric; i++)
		if (strcmp(a->tmetric[i], clean) == 0)
			return 1;
	return 0;
}

static void
timer_field(void *ctx, const char *field, double v)
{
	struct statsd_agg *a = ctx;
	if (timer_field_wanted(a, field)) {
		line(a, NS_TIMER, a->key, a->key_len, field, NULL, v);
		entry(a, STATSD_TIMER, a->key, a->key_len, field, v);
	}
}

static void
flush_timer(void *ctx, const char *key, size_t len, void *payload)
{
	struct statsd_agg *a = ctx;
	struct statsd_timer *t = payload;

	a->key = key;
	a->key_len = len;
	if (statsd_timer_sketched(t))
		a->st.sketched++;
	statsd_timer_report(t, a->pct, (const char *const *)a->pname, a->npct,
	    a->interval_ms, timer_field, a);
	a->num_stats++;
}

static void
flush_gauge(void *ctx, const char *key, size_t len, void *payload)
{
	struct statsd_agg *a = ctx;
	line(a, NS_GAUGE, key, len, NULL, NULL, ((struct gauge *)payload)->v);
	entry(a, STATSD_GAUGE, key, len, "value", ((struct gauge *)payload)->v);
	a->num_stats++;
}

static void
flush_set(void *ctx, const char *key, size_t len, void *payload)
{
	struct statsd_agg *a = ctx;
	struct statsd_set *s = payload;
	line(a, NS_SET, key, len, "count", NULL, (double)s->n);
	entry(a, STATSD_SET, key, len, "count", (double)s->n);
	a->num_stats++;
}

/* Clearing after the flush. */

static void
zero_counter(void *ctx, const char *key, size_t len, void *payload)
{
	(void)ctx, (void)key, (void)len;
	((struct counter *)payload)->v = 0;
}

static void
reset_timer(void *ctx, const char *key, size_t len, void *payload)
{
	(void)ctx, (void)key, (void)len;
	statsd_timer_reset(payload);
}

static void
reset_set(void *ctx, const char *key, size_t len, void *payload)
{
	(void)ctx, (void)key, (void)len;
	statsd_set_clear(payload);
}

static void
age_gauge(void *ctx, const char *key, size_t len, void *payload)
{
	struct statsd_agg *a = ctx;
	struct gauge *g = payload;
	(void)key, (void)len;
	if (g->has_ttl) {
		if (g->ttl > 0)
			g->ttl--;
		if (g->ttl == 0)
			a->num_stats++; /* reused: gauges to delete */
	}
}

static int
keeps(const struct statsd_agg *a, const char *key, size_t len,
    const void *payload)
{
	if (a->keep_size == sizeof(struct gauge)) {
		const struct gauge *g = payload;
		return !g->has_ttl || g->ttl > 0;
	}
	return memmem(key, len, "packets_received", 16) ||
	    memmem(key, len, "metrics_received", 16) ||
	    memmem(key, len, "bad_lines_seen", 14);
}

static void
keep_cb(void *ctx, const char *key, size_t len, void *payload)
{
	struct statsd_agg *a = ctx;
	if (a->rebuild_failed || !keeps(a, key, len, payload))
		return;
	void *p = names_get(a->keep, key, len, NULL);
	if (p == NULL)
		a->rebuild_failed = 1;
	else
		memcpy(p, payload, a->keep_size);
}

/* Replace *t by a table of the entries `keeps` accepts. On ENOMEM *t is
 * unchanged and -1 is returned. */
static int
rebuild(struct statsd_agg *a, struct names **t, size_t psize)
{
	a->keep = names_new(psize, a->max_names);
	if (a->keep == NULL)
		return -1;
	a->keep_size = psize;
	a->rebuild_failed = 0;
	names_foreach_sorted(*t, keep_cb, a);
	if (a->rebuild_failed) {
		names_free(a->keep, NULL);
		return errno = ENOMEM, -1;
	}
	names_free(*t, NULL);
	*t = a->keep;
	return 0;
}

/* Replace *t by an empty table, freeing the old one's payloads. */
static int
empty(struct statsd_agg *a, struct names **t, size_t psize,
    void (*fini)(void *))
{
	struct names *n = names_new(psize, a->max_names);
	if (n == NULL)
		return -1;
	names_free(*t, fini);
	*t = n;
	return 0;
}

static int
clear(struct statsd_agg *a)
{
	int rc = 0;

	names_foreach_sorted(a->counters, zero_counter, a);
	if (a->del_counters && rebuild(a, &a->counters, sizeof(struct counter)))
		rc = -1;
	if (!a->del_timers || empty(a, &a->timers, sizeof(struct statsd_timer),
	    statsd_agg_timer_fini) < 0) {
		names_foreach_sorted(a->timers, reset_timer, a);
		rc = a->del_timers ? -1 : rc;
	}
	if (!a->del_sets ||
	    empty(a, &a->sets, sizeof(struct statsd_set), statsd_agg_set_fini) < 0) {
		names_foreach_sorted(a->sets, reset_set, a);
		rc = a->del_sets ? -1 : rc;
	}
	if (a->del_gauges) {
		a->num_stats = 0;
		names_foreach_sorted(a->gauges, age_gauge, a);
		if (a->num_stats > 0 && rebuild(a, &a->gauges, sizeof(struct gauge)))
			rc = -1;
	}
	a->members = 0;
	a->exact = 0;
	return rc;
}

int
statsd_agg_flush(struct statsd_agg *a, uint32_t interval_ms, int64_t ts,
    statsd_line_fn *fn, void *ctx)
{
	return statsd_agg_flush_entries(a, interval_ms, ts, fn, ctx, NULL, NULL);
}

int
statsd_agg_flush_entries(struct statsd_agg *a, uint32_t interval_ms,
    int64_t ts, statsd_line_fn *fn, void *ctx, statsd_entry_fn *efn,
    void *ectx)
{
	double t0 = now_ms(a);
	const char *ps = a->pfx[P_STATS];
	size_t pl = strlen(ps);

	if (interval_ms == 0)
		return errno = EINVAL, -1;
	a->fn = fn;
	a->ctx = ctx;
	a->efn = efn;
	a->ectx = ectx;
	a->ts = ts;
	a->interval_ms = interval_ms;
	a->num_stats = 0;
	if (a->old_ts > 0) {
		struct gauge *g = names_get(a->gauges, a->k_lag, strlen(a->k_lag),
		    NULL);
		if (g)
			g->v = (double)(ts - a->old_ts) - interval_ms / 1000.0;
	}
	a->old_ts = ts;
	names_foreach_sorted(a->counters, flush_counter, a);
	names_foreach_sorted(a->timers, flush_timer, a);
	double t1 = now_ms(a);
	names_foreach_sorted(a->gauges, flush_gauge, a);
	names_foreach_sorted(a->sets, flush_set, a);
	double t2 = now_ms(a);
	/* legacy: PS.numStats, without "stats." (graphite.js) */
	line(a, a->legacy ? NS_NONE : NS_GLOBAL, ps, pl, "numStats", NULL,
	    (double)a->num_stats);
	line(a, NS_GLOBAL, ps, pl, "graphiteStats", "calculationtime",
	    round(t2 - t0));
	line(a, NS_GLOBAL, ps, pl, "processing_time", NULL, round(t1 - t0));
	return clear(a);
}
