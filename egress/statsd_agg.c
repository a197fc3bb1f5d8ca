/* statsd_agg.c - statsd 0.9's aggregation: its configuration and four
 * tables of keys (counters, timers, gauges, sets) that metrics are applied
 * to; statsd_agg_flush.c writes and clears them (statsd_agg.h has the
 * whole contract). */
#include "egress/statsd_agg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/names.h"
#include "egress/statsd_agg_impl.h"
#include "egress/statsd_num.h"
#include "egress/statsd_set.h"
#include "egress/statsd_timer.h"

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
	a->ntmetric = c->ntimer_metrics;
	a->tmetric = calloc(a->ntmetric ? a->ntmetric : 1, sizeof(char *));
	if (a->tmetric == NULL)
		return -1;
	for (size_t i = 0; i < a->ntmetric; i++)
		if ((a->tmetric[i] = dup_str(c->timer_metrics[i])) == NULL)
			return -1;
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
	a->sets = names_new(sizeof(struct statsd_set), a->max_names);
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

void
statsd_agg_timer_fini(void *p)
{
	statsd_timer_fini(p);
}

void
statsd_agg_set_fini(void *p)
{
	statsd_set_clear(p);
}

void
statsd_agg_free(struct statsd_agg *a)
{
	if (a == NULL)
		return;
	names_free(a->counters, NULL);
	names_free(a->timers, statsd_agg_timer_fini);
	names_free(a->gauges, NULL);
	names_free(a->sets, statsd_agg_set_fini);
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
	for (size_t i = 0; i < a->ntmetric && a->tmetric; i++)
		free(a->tmetric[i]);
	free(a->tmetric);
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
add_member(struct statsd_agg *a, struct statsd_set *s,
    const struct statsd_metric *m)
{
	if (a->members >= a->max_members) {
		a->st.dropped_members++;
		return errno = ENOSPC, -1;
	}
	int created = statsd_set_add(s, m->member, m->member_len);
	if (created < 0) {
		a->st.dropped_nomem++;
		return -1;
	}
	a->members += (size_t)created;
	return 0;
}

/* 1 / rate, statsd's factor, without a division for the usual rate 1
 * (1 / 1 is 1 exactly). */
static inline double
inv_rate(double rate)
{
	return rate == 1 ? 1 : 1 / rate;
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
		c->v += m->value * inv_rate(m->rate);
		return 0;
	}
	case STATSD_TIMER: {
		struct statsd_timer *t = get(a, a->timers, m, &created);
		if (t == NULL)
			return -1;
		if (created)
			t->bins = bins_for(a, m->key, m->key_len);
		if (statsd_timer_add_room(t, m->value, inv_rate(m->rate))) {
			a->exact++;
			return 0;
		}
		int exact = !statsd_timer_sketched(t);
		/* Past the budget of exact values for all timers, a timer that
		 * holds 1024 or more switches to the sketch when it next grows. */
		size_t max = a->exact >= a->exact_total && t->n >= 1024 &&
		    t->n < a->exact_max ? t->n : a->exact_max;
		if (statsd_timer_add(t, m->value, inv_rate(m->rate), max) < 0) {
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
		struct statsd_set *s = get(a, a->sets, m, NULL);
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
