/* statsd_agg.c - statsd 0.9's flush: four tables of keys (counters, timers,
 * gauges, sets), the timer math of statsd_timer.c, and the Graphite names
 * of statsd's backend (statsd_agg.h has the whole contract). */
#include "egress/statsd_agg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/names.h"
#include "egress/statsd_num.h"
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

struct set {
	struct names *members; /* NULL: empty this flush */
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

void
statsd_agg_config_default(struct statsd_agg_config *c)
{
	static const double ninety = 90;

	memset(c, 0, sizeof(*c));
	c->percent = &ninety;
	c->npercent = 1;
	c->gauges_max_ttl = 1;
	c->legacy_namespace = 1;
	c->flush_counts = 1;
	c->max_names = 100000;
	c->max_members = 1 << 22;
	c->timer_exact_max = 65536;
}

static char *
dup_str(const char *s)
{
	size_t l = strlen(s);
	char *d = malloc(l + 1);
	if (d)
		memcpy(d, s, l + 1);
	return d;
}

/* statsd's name for a number: JavaScript's String(v), then the first '.'
 * to '_' and, for thresholds, the first '-' to "top". */
static char *
num_name(const char *lead, double v, int top)
{
	char n[STATSD_NUM_BUF], out[STATSD_NUM_BUF + 32];
	size_t o = strlen(lead);

	if (isinf(v))
		strcpy(n, "inf");
	else
		statsd_num_format(n, v);
	char *dot = strchr(n, '.');
	if (dot)
		*dot = '_';
	memcpy(out, lead, o);
	for (char *p = n; *p; p++) {
		if (*p == '-' && top) {
			memcpy(out + o, "top", 3);
			o += 3;
			top = 0;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	return dup_str(out);
}

static int
copy_config(struct statsd_agg *a, const struct statsd_agg_config *c)
{
	const char *def[7] = { "stats", "counters", "timers", "gauges", "sets",
	    "statsd", NULL };
	const char *given[7] = { c->global_prefix, c->prefix_counter,
	    c->prefix_timer, c->prefix_gauge, c->prefix_set, c->prefix_stats,
	    c->global_suffix };

	for (int i = 0; i < 7; i++) {
		const char *s = given[i] ? given[i] : def[i];
		if (s && strlen(s) > PREFIX_MAX)
			return errno = EINVAL, -1;
		if (i < P_SUFFIX && (a->pfx[i] = dup_str(s)) == NULL)
			return -1;
	}
	if (c->global_suffix) {
		a->sfx[0] = '.';
		strcpy(a->sfx + 1, c->global_suffix);
	}
	a->npct = c->npercent;
	a->pct = calloc(a->npct ? a->npct : 1, sizeof(*a->pct));
	a->pname = calloc(a->npct ? a->npct : 1, sizeof(*a->pname));
	if (a->pct == NULL || a->pname == NULL)
		return -1;
	for (size_t i = 0; i < a->npct; i++) {
		double p = c->percent[i];
		if (!(fabs(p) <= 100) || p == 0)
			return errno = EINVAL, -1;
		for (size_t j = 0; j < i; j++)
			if (a->pct[j] == p)
				return errno = EINVAL, -1;
		a->pct[i] = p;
		if ((a->pname[i] = num_name("", p, 1)) == NULL)
			return -1;
	}
	a->nhist = c->nhistogram;
	a->hist = calloc(a->nhist ? a->nhist : 1, sizeof(*a->hist));
	if (a->hist == NULL)
		return -1;
	for (size_t i = 0; i < a->nhist; i++) {
		const struct statsd_histogram *h = &c->histogram[i];
		struct hist *d = &a->hist[i];
		size_t n = h->nbins;
		if ((d->metric = dup_str(h->metric ? h->metric : "")) == NULL ||
		    (d->edge = calloc(n ? n : 1, sizeof(double))) == NULL ||
		    (d->name = calloc(n ? n : 1, sizeof(char *))) == NULL)
			return -1;
		d->bins = (struct statsd_bins){ d->edge,
		    (const char *const *)d->name, 0 };
		for (size_t k = 0; k < n; k++) {
			double e = h->bins[k];
			if (isnan(e) || (k > 0 && !(e > h->bins[k - 1])))
				return errno = EINVAL, -1;
			d->edge[k] = e;
			if ((d->name[k] = num_name("histogram.bin_", e, 0)) == NULL)
				return -1;
			d->bins.n = k + 1;
		}
	}
	return 0;
}

struct statsd_agg *
statsd_agg_new(const struct statsd_agg_config *c)
{
	struct statsd_agg *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	if (c->max_names == 0 || c->max_members == 0 ||
	    c->timer_exact_max == 0) {
		free(a);
		errno = EINVAL;
		return NULL;
	}
	a->del_counters = c->delete_counters;
	a->del_timers = c->delete_timers;
	a->del_gauges = c->delete_gauges;
	a->del_sets = c->delete_sets;
	a->ttl = c->gauges_max_ttl > 1 ? c->gauges_max_ttl : 1;
	a->legacy = c->legacy_namespace;
	a->flush_counts = c->flush_counts;
	a->max_names = c->max_names;
	a->max_members = c->max_members;
	a->exact_max = c->timer_exact_max;
	a->exact_total = c->timer_exact_max * 128;
	a->clock_ms = c->clock_ms;
	a->clock_ctx = c->clock_ctx;
	if (copy_config(a, c) < 0)
		goto fail;
	const char *ps = a->pfx[P_STATS];
	snprintf(a->k_bad, sizeof(a->k_bad), "%s.bad_lines_seen", ps);
	snprintf(a->k_packets, sizeof(a->k_packets), "%s.packets_received", ps);
	snprintf(a->k_metrics, sizeof(a->k_metrics), "%s.metrics_received", ps);
	snprintf(a->k_lag, sizeof(a->k_lag), "%s.timestamp_lag", ps);
	a->counters = names_new(sizeof(struct counter), a->max_names);
	a->timers = names_new(sizeof(struct statsd_timer), a->max_names);
	a->gauges = names_new(sizeof(struct gauge), a->max_names);
	a->sets = names_new(sizeof(struct set), a->max_names);
	if (!a->counters || !a->timers || !a->gauges || !a->sets)
		goto fail;
	const char *own[3] = { a->k_bad, a->k_packets, a->k_metrics };
	for (int i = 0; i < 3; i++)
		if (names_get(a->counters, own[i], strlen(own[i]), NULL) == NULL)
			goto fail;
	return a;
fail:
	{
		int e = errno;
		statsd_agg_free(a);
		errno = e;
	}
	return NULL;
}

static void
timer_fini(void *p)
{
	statsd_timer_fini(p);
}

static void
set_fini(void *p)
{
	struct set *s = p;
	names_free(s->members, NULL);
	s->members = NULL;
}

void
statsd_agg_free(struct statsd_agg *a)
{
	if (a == NULL)
		return;
	names_free(a->counters, NULL);
	names_free(a->timers, timer_fini);
	names_free(a->gauges, NULL);
	names_free(a->sets, set_fini);
	for (size_t i = 0; i < a->npct && a->pname; i++)
		free(a->pname[i]);
	free(a->pname);
	free(a->pct);
	for (size_t i = 0; i < a->nhist && a->hist; i++) {
		for (size_t k = 0; a->hist[i].name && k < a->hist[i].bins.n; k++)
			free(a->hist[i].name[k]);
		free(a->hist[i].name);
		free(a->hist[i].edge);
		free(a->hist[i].metric);
	}
	free(a->hist);
	for (int i = 0; i < P_SUFFIX; i++)
		free(a->pfx[i]);
	free(a);
}

static void *
get(struct statsd_agg *a, struct names *t, const struct statsd_metric *m,
    int *created)
{
	void *p = names_get(t, m->key, m->key_len, created);
	if (p == NULL) {
		if (errno == ENOSPC)
			a->st.dropped_names++;
		else if (errno == ENOMEM)
			a->st.dropped_nomem++;
	}
	return p;
}

static const struct statsd_bins *
bins_for(const struct statsd_agg *a, const char *key, size_t len)
{
	for (size_t i = 0; i < a->nhist; i++) {
		const struct hist *h = &a->hist[i];
		if (memmem(key, len, h->metric, strlen(h->metric)))
			return h->bins.n ? &h->bins : NULL;
	}
	return NULL;
}

static int
add_member(struct statsd_agg *a, struct set *s, const struct statsd_metric *m)
{
	int created;

	if (a->members >= a->max_members) {
		a->st.dropped_members++;
		return errno = ENOSPC, -1;
	}
	if (s->members == NULL &&
	    (s->members = names_new(1, a->max_members)) == NULL) {
		a->st.dropped_nomem++;
		return -1;
	}
	if (names_get(s->members, m->member, m->member_len, &created) == NULL) {
		a->st.dropped_nomem++;
		return -1;
	}
	a->members += (size_t)created;
	return 0;
}

int
statsd_agg_add(struct statsd_agg *a, const struct statsd_metric *m)
{
	int created;

	if (m->key_len == 0 || m->key_len > STATSD_KEY_MAX)
		return errno = EINVAL, -1;
	switch (m->type) {
	case STATSD_COUNTER: {
		struct counter *c = get(a, a->counters, m, NULL);
		if (c == NULL)
			return -1;
		if (isnan(c->v))
			c->v = 0; /* statsd: `if (!counters[key]) counters[key] = 0` */
		c->v += m->value * (1 / m->rate);
		return 0;
	}
	case STATSD_TIMER: {
		struct statsd_timer *t = get(a, a->timers, m, &created);
		if (t == NULL)
			return -1;
		if (created)
			t->bins = bins_for(a, m->key, m->key_len);
		int exact = !statsd_timer_sketched(t);
		/* Past the budget of exact values for all timers, a timer that
		 * holds 1024 or more switches to the sketch when it next grows. */
		size_t max = a->exact >= a->exact_total && t->n >= 1024 &&
		    t->n < a->exact_max ? t->n : a->exact_max;
		if (statsd_timer_add(t, m->value, 1 / m->rate, max) < 0) {
			a->st.dropped_nomem++;
			return -1;
		}
		if (exact && !statsd_timer_sketched(t))
			a->exact++;
		return 0;
	}
	case STATSD_GAUGE: {
		struct gauge *g = get(a, a->gauges, m, &created);
		if (g == NULL)
			return -1;
		if (a->del_gauges) {
			g->ttl = a->ttl;
			g->has_ttl = 1;
		}
		/* statsd: `if (gauges[key] && /^[-+]/)`: 0 and NaN are false */
		if (!created && m->delta && g->v != 0 && !isnan(g->v))
			g->v += m->value;
		else
			g->v = m->value;
		return 0;
	}
	case STATSD_SET: {
		struct set *s = get(a, a->sets, m, NULL);
		if (s == NULL)
			return -1;
		return add_member(a, s, m);
	}
	}
	return errno = EINVAL, -1;
}

void
statsd_agg_received(struct statsd_agg *a, uint64_t packets, uint64_t lines,
    uint64_t bad)
{
	struct counter *c;

	if ((c = names_get(a->counters, a->k_packets, strlen(a->k_packets), NULL)))
		c->v += (double)packets;
	if ((c = names_get(a->counters, a->k_metrics, strlen(a->k_metrics), NULL)))
		c->v += (double)lines;
	if ((c = names_get(a->counters, a->k_bad, strlen(a->k_bad), NULL)))
		c->v += (double)bad;
}

void
statsd_agg_stats(const struct statsd_agg *a, struct statsd_agg_stats *s)
{
	*s = a->st;
}

/* Flush. */

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

static void
flush_counter(void *ctx, const char *key, size_t len, void *payload)
{
	struct statsd_agg *a = ctx;
	struct counter *c = payload;
	double rate = c->v / (a->interval_ms / 1000.0);

	if (a->legacy) {
		line(a, NS_RATE, key, len, NULL, NULL, rate);
		if (a->flush_counts)
			line(a, NS_COUNT, key, len, NULL, NULL, c->v);
	} else {
		line(a, NS_RATE, key, len, "rate", NULL, rate);
		if (a->flush_counts)
			line(a, NS_COUNT, key, len, "count", NULL, c->v);
	}
	a->num_stats++;
}

static void
timer_field(void *ctx, const char *field, double v)
{
	struct statsd_agg *a = ctx;
	line(a, NS_TIMER, a->key, a->key_len, field, NULL, v);
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
	a->num_stats++;
}

static void
flush_set(void *ctx, const char *key, size_t len, void *payload)
{
	struct statsd_agg *a = ctx;
	struct set *s = payload;
	line(a, NS_SET, key, len, "count", NULL,
	    s->members ? (double)names_count(s->members) : 0);
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
	set_fini(payload);
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
	if (!a->del_timers ||
	    empty(a, &a->timers, sizeof(struct statsd_timer), timer_fini) < 0) {
		names_foreach_sorted(a->timers, reset_timer, a);
		rc = a->del_timers ? -1 : rc;
	}
	if (!a->del_sets ||
	    empty(a, &a->sets, sizeof(struct set), set_fini) < 0) {
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
	double t0 = now_ms(a);
	const char *ps = a->pfx[P_STATS];
	size_t pl = strlen(ps);

	a->fn = fn;
	a->ctx = ctx;
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
