/* statsd_timer.h - one statsd timer's values for one flush and statsd
 * 0.9's timer math over them (lib/process_metrics.js), for statsd_agg.c.
 *
 * Up to `exact_max` values a flush the values are kept and the report is
 * statsd's, value for value: the values sorted ascending, sums and sums of
 * squares accumulated in that order, thresholds by Math.round, the median
 * as statsd takes it. Past exact_max the timer switches, for the rest of
 * that flush, to a bounded sketch (STATSD_SKETCH_ALPHA below), so a flush
 * of any size costs at most exact_max doubles plus the sketch. */
#ifndef TELEM_STATSD_TIMER_H
#define TELEM_STATSD_TIMER_H

#include <stddef.h>
#include <stdint.h>

/* The sketch's relative error. Each value v is kept as the representative
 * of its bucket (buckets are powers of gamma = (1+a)/(1-a)), within a*|v|
 * of v. count, lower, upper (exact min and max), sum, sum_squares, mean and
 * std stay exact up to floating-point rounding (they are summed in arrival
 * order, statsd sums in sorted order; std by Welford's method), count_P is
 * exact, histogram bins are exact. Values are read at exact ranks from
 * the buckets: median, upper_P and lower_P are within a relative (within
 * a*|v| of the value statsd would write); sum_P within a*sum|v| of the
 * threshold's values, mean_P likewise divided by count_P, sum_squares_P
 * within (2a+a^2)*sum v^2. |v| below 1e-9 is kept as 0 (absolute error
 * under 1e-9); |v| above 1e15 as 1e15. Each sign keeps uint32 counts
 * for the range of buckets its values reach (grown by doubling): values
 * within a factor of 1000 of each other take about 3 500 buckets (14 KiB),
 * the whole range from 1e-9 to 1e15 about 27 600 (110 KiB), the most a
 * sign can take. */
#define STATSD_SKETCH_ALPHA 0.001

struct statsd_sketch;

struct statsd_bins;

struct statsd_timer {
	double *v;          /* exact values, n of cap */
	size_t n, cap;
	double count;       /* statsd's timer_counters: sum of 1/rate */
	struct statsd_sketch *sk; /* non-NULL once switched, this flush */
	const struct statsd_bins *bins; /* its histogram, or NULL: set once */
};

/* One histogram configuration: values < bins[0] go to bin 0, values >=
 * bins[i-1] and < bins[i] to bin i; INFINITY as an edge is statsd's 'inf'
 * (takes every value left). Values at or past the last finite edge, with
 * no inf, are not counted, as in statsd. bins ascending. */
struct statsd_bins {
	const double *edge;
	const char *const *name; /* "histogram.bin_10", "histogram.bin_inf" */
	size_t n;
};

/* Called for each field of the report in statsd's order: the name as
 * statsd's timer_data key ("mean_90", "histogram.bin_10") and its value. */
typedef void statsd_field_fn(void *ctx, const char *field, double value);

/* Add value v with sample rate 1/inv_rate (count += inv_rate). Returns 0,
 * or -1 with errno ENOMEM (the value is lost, count raised anyway). */
int statsd_timer_add(struct statsd_timer *t, double v, double inv_rate,
    size_t exact_max);
/* Values ahead of the next store whose cache line is asked for. */
#define STATSD_PREFETCH_AHEAD 16

/* statsd_timer_add's usual case, inline: an exact timer with room in its
 * array takes v (and inv_rate into count), as statsd_timer_add would.
 * Returns 1 when it did, 0 when statsd_timer_add must be called. Many
 * timers fill their arrays at once, each a cache line at a time: the line
 * after next is asked for now, so that a store rarely waits for memory. */
static inline int
statsd_timer_add_room(struct statsd_timer *t, double v, double inv_rate)
{
	if (t->sk != NULL || t->n >= t->cap)
		return 0;
	t->count += inv_rate;
	if (t->n + STATSD_PREFETCH_AHEAD < t->cap)
		__builtin_prefetch(t->v + t->n + STATSD_PREFETCH_AHEAD, 1);
	t->v[t->n++] = v;
	return 1;
}

/* Report t in statsd's order: for each percent pct[i] (0 < |pct| <= 100):
 * count_P, mean_P, upper_P or lower_P, sum_P, sum_squares_P (all five left
 * out when count > 1 and round(|P|/100*count) is 0); then std, upper,
 * lower, count, count_ps, sum, sum_squares, mean, median, then the bins of
 * t->bins ("histogram.bin_10", ...) if it has any. With no values:
 * count_ps and count only, both 0. pnames[i] is the percent's name part
 * ("90", "99_9", "top10"). Sorts the exact values in place. interval_ms > 0. */
void statsd_timer_report(struct statsd_timer *t, const double *pct,
    const char *const *pnames, size_t npct, uint32_t interval_ms,
    statsd_field_fn *fn, void *ctx);
/* Empty t for the next flush (count 0, no values), keeping its value
 * array for reuse when small or at least half filled this flush, freeing
 * it otherwise, and any sketch. */
void statsd_timer_reset(struct statsd_timer *t);
/* Free everything t holds; t may then be discarded. */
void statsd_timer_fini(struct statsd_timer *t);
/* 1 when t is past its exact threshold this flush. */
int statsd_timer_sketched(const struct statsd_timer *t);

#endif
