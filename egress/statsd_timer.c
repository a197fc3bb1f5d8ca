/* statsd_timer.c - a statsd timer's flush: statsd 0.9's math over the
 * sorted values, or over a bucketed sketch past the exact threshold
 * (statsd_timer.h gives the error). */
#include "egress/statsd_timer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ZERO_MAX 1e-9 /* |v| below: the zero bucket */
#define BIG_MAX  1e15 /* |v| above: the top bucket */
#define KEEP_CAP 1024 /* value arrays up to this size survive a reset */

/* The counts of one sign's buckets lo..hi (a range grown as values come,
 * within imin..imax), or c NULL while that sign has no value. */
struct side {
	uint32_t *c;
	int lo, hi;
};

struct statsd_sketch {
	double lg;          /* log(gamma) */
	int imin, imax;     /* bucket index range */
	struct side pos, neg;
	uint64_t zero, n;
	double min, max, sum, sumsq, mean, m2;
	uint64_t *hist;     /* per bin, exact */
};

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* A double's bits made an unsigned key in the double's order: negatives
 * (sign set) flipped whole, positives with the sign set. */
static inline uint64_t
sort_key(double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	return u >> 63 ? ~u : u | (1ULL << 63);
}

/* Whole numbers whose range spans at most this many values (and not
 * many more than there are values) are sorted by counting. */
#define COUNT_SPAN 65536

/* Sort v[0..n) by counting when every value is a whole number of at most
 * 2^52 in magnitude, none is -0, and they span at most COUNT_SPAN (and 8n)
 * values: whole milliseconds, the usual timer. Such a double is the only
 * one of its value, so writing base + k back gives the very same bits.
 * Returns 0 when sorted, -1 when v is not such (or no memory). */
static int
count_sort(double *v, size_t n)
{
	double lo = v[0], hi = v[0];
	if (n > UINT32_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		double x = v[i];
		if (!(x >= -0x1p52 && x <= 0x1p52) || x != (double)(int64_t)x ||
		    (x == 0 && signbit(x)))
			return -1;
		lo = x < lo ? x : lo;
		hi = x > hi ? x : hi;
	}
	if (hi - lo >= COUNT_SPAN || hi - lo >= 8 * (double)n)
		return -1;
	int64_t base = (int64_t)lo;
	size_t span = (size_t)((int64_t)hi - base) + 1;
	uint32_t *c = calloc(span, sizeof(*c));
	if (c == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		c[(int64_t)v[i] - base]++;
	size_t o = 0;
	for (size_t k = 0; k < span; k++) {
		double x = (double)(base + (int64_t)k);
		for (uint32_t j = c[k]; j > 0; j--)
			v[o++] = x;
	}
	free(c);
	return 0;
}

/* Sort v[0..n) ascending. Whole numbers in a narrow range by counting
 * (count_sort); others by a radix sort on sort_key, 8 bits a pass, the
 * bytes that are the same in every value (found from the AND and OR of
 * all keys) neither counted nor passed over, so that a flush of 32 000
 * values a timer is not spent in qsort's comparator calls
 * (bench/statsd.sh). Short arrays, or no memory for the second buffer,
 * take qsort; all give the same order but for -0 and 0, which read and
 * add the same. */
static void
sort_values(double *v, size_t n)
{
	if (n < 256) {
		qsort(v, n, sizeof(*v), cmp_double);
		return;
	}
	if (count_sort(v, n) == 0)
		return;
	uint64_t *a = malloc(n * 2 * sizeof(*a));
	if (a == NULL) {
		qsort(v, n, sizeof(*v), cmp_double);
		return;
	}
	uint64_t *b = a + n, all = ~0ULL, any = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t k = a[i] = sort_key(v[i]);
		all &= k;
		any |= k;
	}
	int pass[8], np = 0;
	for (int p = 0; p < 8; p++)
		if (((all ^ any) >> (8 * p)) & 0xff)
			pass[np++] = p;
	size_t cnt[8][256];  /* 16 KiB */
	memset(cnt, 0, sizeof(cnt[0]) * (size_t)np);
	for (size_t i = 0; i < n; i++)
		for (int j = 0; j < np; j++)
			cnt[j][(a[i] >> (8 * pass[j])) & 0xff]++;
	for (int j = 0; j < np; j++) {
		size_t *c = cnt[j], sum = 0;
		int sh = 8 * pass[j];
		for (int d = 0; d < 256; d++) {
			size_t t = c[d];
			c[d] = sum;
			sum += t;
		}
		for (size_t i = 0; i < n; i++)
			b[c[(a[i] >> sh) & 0xff]++] = a[i];
		uint64_t *t = a;
		a = b;
		b = t;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t k = a[i];
		k = k >> 63 ? k & ~(1ULL << 63) : ~k;
		memcpy(&v[i], &k, 8);
	}
	free(a < b ? a : b);
}

/* JavaScript's Math.round for x >= 0 (no x + 0.5 rounding slip). */
static double
js_round(double x)
{
	double r = floor(x);
	return x - r >= 0.5 ? r + 1 : r;
}

static size_t
bin_of(const struct statsd_bins *b, double v)
{
	for (size_t i = 0; i < b->n; i++)
		if (isinf(b->edge[i]) ? 1 : v < b->edge[i])
			return i;
	return b->n;
}

/* The bucket of each whole number 1..WHOLE_MAX, as sk_add computes it:
 * whole milliseconds are the usual timer value, and log() was most of
 * sk_add's time. Filled on first use from the very same expression
 * (double arithmetic is exact IEEE here, log a fixed function of its
 * argument), so a value's bucket does not depend on the way it took. */
#define WHOLE_MAX 4096
static int whole_bucket[WHOLE_MAX + 1];
static int whole_ready;

static inline int
bucket_of(const struct statsd_sketch *s, double a)
{
	return (int)ceil(log(a) / s->lg);
}

static struct statsd_sketch *
sk_new(const struct statsd_bins *b)
{
	struct statsd_sketch *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	double gamma = (1 + STATSD_SKETCH_ALPHA) / (1 - STATSD_SKETCH_ALPHA);
	s->lg = log(gamma);
	s->imin = (int)floor(log(ZERO_MAX) / s->lg);
	s->imax = (int)ceil(log(BIG_MAX) / s->lg);
	if (!whole_ready) {
		for (int k = 1; k <= WHOLE_MAX; k++)
			whole_bucket[k] = bucket_of(s, k);
		whole_ready = 1;
	}
	if (b && b->n > 0 && (s->hist = calloc(b->n, sizeof(*s->hist))) == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

static void
sk_free(struct statsd_sketch *s)
{
	if (s == NULL)
		return;
	free(s->pos.c);
	free(s->neg.c);
	free(s->hist);
	free(s);
}

/* Make bucket i part of d's range, at least doubling the range when it
 * grows so that growth costs O(1) a value amortised. -1 on ENOMEM. */
static int
side_reach(const struct statsd_sketch *s, struct side *d, int i)
{
	int lo = d->lo, hi = d->hi;

	if (d->c == NULL) {
		lo = i - 32 < s->imin ? s->imin : i - 32;
		hi = i + 32 > s->imax ? s->imax : i + 32;
	} else if (i < d->lo) {
		int w = d->hi - d->lo + 1;
		lo = i < d->lo - w ? i : d->lo - w;
		lo = lo < s->imin ? s->imin : lo;
	} else if (i > d->hi) {
		int w = d->hi - d->lo + 1;
		hi = i > d->hi + w ? i : d->hi + w;
		hi = hi > s->imax ? s->imax : hi;
	} else {
		return 0;
	}
	size_t n = (size_t)(hi - lo + 1);
	uint32_t *c = calloc(n, sizeof(*c));
	if (c == NULL)
		return -1;
	if (d->c)
		memcpy(c + (d->lo - lo), d->c,
		    (size_t)(d->hi - d->lo + 1) * sizeof(*c));
	free(d->c);
	d->c = c;
	d->lo = lo;
	d->hi = hi;
	return 0;
}

static int
sk_add(struct statsd_sketch *s, double v, const struct statsd_bins *b)
{
	double a = fabs(v);
	if (a >= ZERO_MAX) {
		struct side *d = v > 0 ? &s->pos : &s->neg;
		int i = a <= WHOLE_MAX && a == (double)(int)a ?
		    whole_bucket[(int)a] :
		    a >= BIG_MAX ? s->imax : bucket_of(s, a);
		if (i < s->imin)
			i = s->imin;
		if (i > s->imax)
			i = s->imax;
		if (side_reach(s, d, i) < 0)
			return -1;
		d->c[i - d->lo]++;
	} else {
		s->zero++;
	}
	if (s->n == 0 || v < s->min)
		s->min = v;
	if (s->n == 0 || v > s->max)
		s->max = v;
	s->n++;
	s->sum += v;
	s->sumsq += v * v;
	double d = v - s->mean;
	s->mean += d / (double)s->n;
	s->m2 += d * (v - s->mean);
	if (s->hist) {
		size_t k = bin_of(b, v);
		if (k < b->n)
			s->hist[k]++;
	}
	return 0;
}

static double
sk_rep(const struct statsd_sketch *s, int i)
{
	double gamma = exp(s->lg);
	return exp(i * s->lg) * 2 / (gamma + 1);
}

/* Walk the first `upto` values in ascending order: their sum, sum of
 * squares, and the value at rank upto - 1 (upto >= 1). */
static void
sk_walk(const struct statsd_sketch *s, uint64_t upto, double *sum,
    double *sumsq, double *last)
{
	uint64_t left = upto;
	int nn = s->neg.c ? s->neg.hi - s->neg.lo + 1 : 0;
	int np = s->pos.c ? s->pos.hi - s->pos.lo + 1 : 0;

	*sum = *sumsq = *last = 0;
	for (int k = 0; left > 0 && k < nn + 1 + np; k++) {
		uint64_t c;
		double r;
		if (k < nn) {        /* negative side, most negative first */
			c = s->neg.c[nn - 1 - k];
			r = -sk_rep(s, s->neg.hi - k);
		} else if (k == nn) {
			c = s->zero;
			r = 0;
		} else {
			c = s->pos.c[k - nn - 1];
			r = sk_rep(s, s->pos.lo + (k - nn - 1));
		}
		if (c == 0)
			continue;
		if (c > left)
			c = left;
		*sum += (double)c * r;
		*sumsq += (double)c * r * r;
		*last = r;
		left -= c;
	}
}

/* The value at rank r (0-based), the exact min and max at the ends. */
static double
sk_at(const struct statsd_sketch *s, uint64_t r)
{
	double a, b, v;

	if (r == 0)
		return s->min;
	if (r + 1 >= s->n)
		return s->max;
	sk_walk(s, r + 1, &a, &b, &v);
	return v;
}

static int
sk_switch(struct statsd_timer *t)
{
	t->sk = sk_new(t->bins);
	if (t->sk == NULL)
		return -1;
	for (size_t i = 0; i < t->n; i++) {
		if (sk_add(t->sk, t->v[i], t->bins) < 0) {
			sk_free(t->sk);
			t->sk = NULL;
			return -1;
		}
	}
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
	return 0;
}

int
statsd_timer_add(struct statsd_timer *t, double v, double inv_rate,
    size_t exact_max)
{
	t->count += inv_rate;
	if (t->sk == NULL && t->n == t->cap) {
		if (t->n >= exact_max) {
			if (sk_switch(t) < 0)
				goto nomem;
		} else {
			size_t cap = t->cap ? t->cap * 2 : 16;
			if (cap > exact_max)
				cap = exact_max;
			double *nv = realloc(t->v, cap * sizeof(*nv));
			if (nv == NULL)
				goto nomem;
			t->v = nv;
			t->cap = cap;
		}
	}
	if (t->sk)
		return sk_add(t->sk, v, t->bins) < 0 ? (errno = ENOMEM, -1) : 0;
	t->v[t->n++] = v;
	return 0;
nomem:
	errno = ENOMEM;
	return -1;
}

/* Sum (and sum of squares) of the sorted exact values v[0..k], in order. */
static void
prefix(const double *v, long k, double *sum, double *sumsq)
{
	double s = 0, q = 0;
	for (long i = 0; i <= k; i++) {
		s = v[i] + s;
		q = v[i] * v[i] + q;
	}
	*sum = s;
	*sumsq = q;
}

/* The sums of the first k values (ranks 0..k-1) in either form. */
static void
first_k(const struct statsd_timer *t, uint64_t k, double *sum, double *sumsq)
{
	double last;

	if (k == 0) {
		*sum = *sumsq = 0;
	} else if (t->sk) {
		sk_walk(t->sk, k, sum, sumsq, &last);
		if (k == t->sk->n) {
			*sum = t->sk->sum;
			*sumsq = t->sk->sumsq;
		}
	} else {
		prefix(t->v, (long)k - 1, sum, sumsq);
	}
}

/* statsd's count of values for threshold p of count values (count > 1):
 * Math.round(|p| / 100 * count). */
static double
pct_rank(double p, uint64_t count)
{
	return js_round(fabs(p) / 100 * (double)count);
}

/* Marks of the running sums: as many as the thresholds, plus the whole. */
#define MARKS_MAX 33

/* statsd's running sums over the sorted v (s = v[i] + s, q = v[i] * v[i]
 * + q, as prefix does), in one pass, read off after the first ks[j]
 * values for each j (any order) into s[j] and q[j]. */
static void
prefix_marks(const double *v, const uint64_t *ks, size_t nk, double *s,
    double *q)
{
	size_t ord[MARKS_MAX];
	for (size_t j = 0; j < nk; j++) {
		size_t i = j;
		for (; i > 0 && ks[ord[i - 1]] > ks[j]; i--)
			ord[i] = ord[i - 1];
		ord[i] = j;
	}
	double a = 0, b = 0;
	uint64_t i = 0;
	for (size_t j = 0; j < nk; j++) {
		for (uint64_t k = ks[ord[j]]; i < k; i++) {
			a = v[i] + a;
			b = v[i] * v[i] + b;
		}
		s[ord[j]] = a;
		q[ord[j]] = b;
	}
}

static double
at(const struct statsd_timer *t, uint64_t r)
{
	return t->sk ? sk_at(t->sk, r) : t->v[r];
}

void
statsd_timer_report(struct statsd_timer *t, const double *pct,
    const char *const *pnames, size_t npct, uint32_t interval_ms,
    statsd_field_fn *fn, void *ctx)
{
	uint64_t count = t->sk ? t->sk->n : t->n;
	double per_s = interval_ms / 1000.0;
	char name[64];

	if (count == 0) {
		/* statsd: `d.count = d.count_ps = 0` creates count_ps first */
		fn(ctx, "count_ps", 0);
		fn(ctx, "count", 0);
		return;
	}
	if (!t->sk)
		sort_values(t->v, t->n);
	double min = at(t, 0), max = at(t, count - 1);
	double all_sum, all_sq;
	/* The exact sums all come from one pass of the running sums: the
	 * whole, and the prefix each threshold needs (mark i + 1). */
	uint64_t mk[MARKS_MAX];
	double ms[MARKS_MAX], mq[MARKS_MAX];
	int marks = !t->sk && npct < MARKS_MAX;
	if (marks) {
		mk[0] = count;
		for (size_t i = 0; i < npct; i++) {
			uint64_t k = (uint64_t)pct_rank(pct[i], count);
			mk[i + 1] = count == 1 ? 0 : pct[i] > 0 ? k : count - k;
		}
		prefix_marks(t->v, mk, npct + 1, ms, mq);
		all_sum = ms[0];
		all_sq = mq[0];
	} else {
		first_k(t, count, &all_sum, &all_sq);
	}
	for (size_t i = 0; i < npct; i++) {
		double p = pct[i], n = (double)count, bound = max, sum = min,
		    sq = min * min, mean = min;
		if (count > 1) {
			n = pct_rank(p, count);
			if (n == 0)
				continue;
			uint64_t k = (uint64_t)n;
			if (p > 0) {
				bound = at(t, k - 1);
				if (marks)
					sum = ms[i + 1], sq = mq[i + 1];
				else
					first_k(t, k, &sum, &sq);
			} else {
				/* statsd subtracts the prefix before the top k; when
				 * k is all of them it reads index -1 and writes NaN:
				 * here the prefix is then empty (0). */
				double s0, q0;
				bound = at(t, count - k);
				if (marks)
					s0 = ms[i + 1], q0 = mq[i + 1];
				else
					first_k(t, count - k, &s0, &q0);
				sum = all_sum - s0;
				sq = all_sq - q0;
			}
			mean = sum / n;
		}
		const char *f[5] = { "count_", "mean_", p > 0 ? "upper_" :
		    "lower_", "sum_", "sum_squares_" };
		double val[5] = { n, mean, bound, sum, sq };
		for (int j = 0; j < 5; j++) {
			size_t fl = strlen(f[j]), pl = strlen(pnames[i]);
			if (fl + pl >= sizeof(name))
				pl = sizeof(name) - fl - 1;
			memcpy(name, f[j], fl);
			memcpy(name + fl, pnames[i], pl);
			name[fl + pl] = '\0';
			fn(ctx, name, val[j]);
		}
	}
	double mean = all_sum / (double)count, std;
	if (t->sk) {
		std = sqrt(t->sk->m2 / (double)count);
	} else {
		double d = 0;
		for (size_t i = 0; i < count; i++)
			d += (t->v[i] - mean) * (t->v[i] - mean);
		std = sqrt(d / (double)count);
	}
	uint64_t mid = count / 2;
	double median = count % 2 ? at(t, mid) : (at(t, mid - 1) + at(t, mid)) / 2;
	fn(ctx, "std", std);
	fn(ctx, "upper", max);
	fn(ctx, "lower", min);
	fn(ctx, "count", t->count);
	fn(ctx, "count_ps", t->count / per_s);
	fn(ctx, "sum", all_sum);
	fn(ctx, "sum_squares", all_sq);
	fn(ctx, "mean", mean);
	fn(ctx, "median", median);
	const struct statsd_bins *b = t->bins;
	if (b == NULL)
		return;
	/* statsd walks the sorted values once, bin by bin; with ascending
	 * edges that is "the first bin whose edge is above the value". */
	size_t i = 0;
	for (size_t k = 0; k < b->n; k++) {
		double freq = 0;
		if (t->sk) {
			freq = (double)t->sk->hist[k];
		} else {
			for (; i < t->n && (isinf(b->edge[k]) || t->v[i] < b->edge[k]);
			    i++)
				freq++;
		}
		fn(ctx, b->name[k], freq);
	}
}

void
statsd_timer_reset(struct statsd_timer *t)
{
	sk_free(t->sk);
	t->sk = NULL;
	/* A large array that was at least half filled is kept for the
	 * next flush: reused, its pages cost no faults again. */
	if (t->cap > KEEP_CAP && t->n < t->cap / 2) {
		free(t->v);
		t->v = NULL;
		t->cap = 0;
	}
	t->n = 0;
	t->count = 0;
}

void
statsd_timer_fini(struct statsd_timer *t)
{
	sk_free(t->sk);
	free(t->v);
	memset(t, 0, sizeof(*t));
}

int
statsd_timer_sketched(const struct statsd_timer *t)
{
	return t->sk != NULL;
}
