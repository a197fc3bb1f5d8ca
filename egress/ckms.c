/* ckms.c - the CKMS sketch of DESIGN §11 for the ckms egress. Values are
 * buffered and merged in sorted batches, yet every sample gets exactly the
 * (v, g, Δ) and position that one-at-a-time insertion would give it. */
#include "egress/ckms.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

/*
 * The rules, and what the 150 reference cases of the seed settle where
 * DESIGN §11 could be read more than one way (checked against a
 * one-at-a-time model with each reading switched on in turn):
 *
 *  - Settled: compress runs right after the period-th, 2·period-th, ...
 *    insert (period = floor(1/(2ε)) in double: 50 for ε = 0.01). Running
 *    it after insert 51, 102, ... instead breaks 12 of the 150 cases.
 *  - Settled: f(t)/2 in the query is a real division (an integer one
 *    breaks 116 cases), and an inner value gets Δ = f(r) - 1 (Δ = 0 for
 *    every value breaks one case).
 *  - Not settled, because in these cases (at most 120 values) the
 *    compresses after inserts 50 and 100 never change an answer (leaving
 *    compress out also passes all 150; compressing after 51 and 102 does
 *    not): whether r counts g or samples (the seed's store counts samples;
 *    they differ only after a merge), whether a merged sample is tested
 *    again against its new successor, whether a value goes before or after
 *    equal ones, and how a value equal to the maximum is treated. We follow
 *    the design: r is the sum of g; the walk re-tests a merged sample with
 *    the same r (the g below it did not change) and moves on, adding g,
 *    only when a test fails; a value goes before equal ones, so one equal
 *    to the current maximum gets Δ = f(r) - 1 and one equal to the minimum
 *    is a new minimum (Δ = 0).
 *  - f saturates at UINT32_MAX as the seed's `as u32` does, so g and Δ
 *    fit in 32 bits: g <= f(r) after a merge and Δ < f(r).
 *  - The smallest sample is never merged: f(0) = 1 < g_0 + g_1.
 *
 * Batching. The buffer holds up to `bufcap` values; at a period boundary, or
 * when it is full, or before a query, it is merged into the sample array:
 *  - a value's Δ needs r at the time it would have been inserted: the g of
 *    the samples below it (accumulated during the merge, since a buffered
 *    value goes before existing samples of equal value) plus the number of
 *    earlier-arriving buffered values strictly below it (counted with a
 *    bitset of arrival indices while walking the sorted batch);
 *  - whether it was a new minimum or maximum is known when it arrives, from
 *    the running minimum and maximum of everything inserted before it;
 *  - among equal values the later arrival goes first (it was inserted before
 *    the earlier one), so the batch is sorted by (value, arrival descending).
 * Compress is fused into the same forward pass. Its walk starts just below
 * the smallest new value, or lower if the last compress left a mergeable
 * pair (see flush): below that, samples keep their g, Δ and r, and every
 * neighbour pair there already failed the merge test. `clean` tracks it.
 */

struct ckms_sample {
	uint32_t v;
	uint32_t g;     /* seed's u32: g <= f(r) <= UINT32_MAX by construction */
	uint32_t delta;
};

/* Low word of a batch key: before the annotation step, the arrival index
 * j as (KEY_COUNT - j) << 1 (so equal values sort latest arrival first) and
 * the new-minimum-or-maximum flag in bit 0; after it, the count of earlier
 * smaller values and that flag as KEY_EXTREME. */
#define KEY_EXTREME 0x80000000u /* new minimum or maximum: Δ = 0 */
#define KEY_COUNT   0x7fffffffu
#define BUF_MAX     512         /* buffer at most this many values */
#define SMALL_SORT  64          /* insertion sort up to this many keys */
#define MAPPED_MIN  8192        /* bytes: sample arrays this big are mapped */

struct ckms {
	double twoeps;          /* 2·ε: f(x) = max(1, floor(twoeps·x)) */
	uint64_t n;             /* values inserted, buffered ones included */
	uint64_t period;        /* compress every `period` inserts */
	uint64_t to_compress;   /* inserts left until the next compress */
	uint32_t minv, maxv;    /* of everything inserted (valid when n > 0) */
	struct ckms_sample *smp;
	size_t ns, cap;
	size_t mapped;          /* bytes of smp's own mapping; 0: on the heap */
	size_t clean;           /* no mergeable pair inside smp[0..clean) */
	size_t nbuf, bufcap;
	uint64_t keys[];        /* buffered values: v << 32 | low word above */
};

static uint32_t
invariant(double twoeps, double x)
{
	double y = twoeps * x; /* >= 0, so truncation is floor */
	if (!(y >= 1.0))
		return 1;
	if (y >= 4294967295.0)
		return UINT32_MAX;
	return (uint32_t)y;
}

/* A rank as a double. Ranks stay far below 2^63, and the signed conversion
 * is one instruction where the unsigned one branches. */
static double
u2d(uint64_t r)
{
	return (double)(int64_t)r;
}

/* Set bits of w; the portable SWAR count (no popcnt in the baseline ISA,
 * and the libgcc fallback is a call). */
static uint32_t
popcount64(uint64_t w)
{
	w -= (w >> 1) & 0x5555555555555555ULL;
	w = (w & 0x3333333333333333ULL) + ((w >> 2) & 0x3333333333333333ULL);
	w = (w + (w >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (uint32_t)((w * 0x0101010101010101ULL) >> 56);
}

struct ckms *
ckms_new(double eps)
{
	double p = 1.0 / (2.0 * eps);
	uint64_t period = p >= 18446744073709551615.0 ? UINT64_MAX :
	    p < 1.0 ? 1 : (uint64_t)p;
	size_t bufcap = period < BUF_MAX ? (size_t)period : BUF_MAX;

	/* Only the buffer is per sketch: the scratch of a merge lives on
	 * flush's stack. */
	struct ckms *s = malloc(sizeof(*s) + bufcap * sizeof(s->keys[0]));
	if (s == NULL)
		return NULL;
	memset(s, 0, sizeof(*s));
	s->twoeps = 2.0 * eps;
	s->period = period;
	s->to_compress = period;
	s->bufcap = bufcap;
	return s;
}

void
ckms_free(struct ckms *s)
{
	if (s == NULL)
		return;
	if (s->mapped)
		munmap(s->smp, s->mapped);
	else
		free(s->smp);
	free(s);
}

static void
sort_keys(uint64_t *a, uint64_t *tmp, size_t n)
{
	if (n <= SMALL_SORT) {
		for (size_t i = 1; i < n; i++) {
			uint64_t k = a[i];
			size_t j = i;
			for (; j > 0 && a[j - 1] > k; j--)
				a[j] = a[j - 1];
			a[j] = k;
		}
		return;
	}
	/* LSD radix by bytes, skipping bytes every key shares. */
	uint64_t *src = a, *dst = tmp;
	for (unsigned shift = 0; shift < 64; shift += 8) {
		size_t count[256] = {0};
		for (size_t i = 0; i < n; i++)
			count[(src[i] >> shift) & 0xff]++;
		if (count[(src[0] >> shift) & 0xff] == n)
			continue;
		size_t sum = 0;
		for (size_t b = 0; b < 256; b++) {
			size_t c = count[b];
			count[b] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[count[(src[i] >> shift) & 0xff]++] = src[i];
		uint64_t *t = src;
		src = dst;
		dst = t;
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
}

/* Replace each sorted key's arrival index by the number of earlier arrivals
 * strictly below it, plus KEY_EXTREME; seen is a bitset of arrival indices.
 * Equal values come latest-arrival first, so setting a bit right after
 * counting never counts an equal one. */
static void
annotate(uint64_t *keys, size_t nb, uint64_t *seen)
{
	memset(seen, 0, (nb + 63) / 64 * sizeof(uint64_t));
	for (size_t i = 0; i < nb; i++) {
		uint32_t low = (uint32_t)keys[i];
		uint32_t j = KEY_COUNT - (low >> 1);
		uint32_t c = 0;
		for (uint32_t w = 0; w < j / 64; w++)
			c += popcount64(seen[w]);
		if (j % 64)
			c += popcount64(seen[j / 64] &
			    ((UINT64_C(1) << (j % 64)) - 1));
		seen[j / 64] |= UINT64_C(1) << (j % 64);
		keys[i] = (keys[i] & ~(uint64_t)UINT32_MAX) | c |
		    (low & 1 ? KEY_EXTREME : 0);
	}
}

/* Room for `need` samples. A small array lives on the heap; from
 * MAPPED_MIN bytes on it gets a mapping of its own, grown by mremap. Many
 * sketches growing side by side on the heap leave holes behind every
 * realloc that moves (with 100 names, heap holes and slack came to 1.4 MB
 * for 1.75 MB of samples), while a mapping grows without copying and
 * costs only the pages the samples have touched: past the last sample it
 * is address space, not memory. Below MAPPED_MIN the page granularity of a
 * mapping would cost more than the heap does (10 000 sketches of 300
 * samples). */
static void
reserve(struct ckms *s, size_t need)
{
	if (need <= s->cap)
		return;
	/* grow by half: the count grows only logarithmically, and with many
	 * names the slack of doubling would be a third of the memory */
	size_t cap = s->cap ? s->cap : 16;
	while (cap < need)
		cap += cap / 2;
	size_t bytes = cap * sizeof(*s->smp);
	if (bytes >= MAPPED_MIN) {
		long page = sysconf(_SC_PAGESIZE);
		if (page > 0)
			bytes = (bytes + (size_t)page - 1) / (size_t)page *
			    (size_t)page;
		void *m = s->mapped ?
		    mremap(s->smp, s->mapped, bytes, MREMAP_MAYMOVE) :
		    mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m != MAP_FAILED) {
			if (!s->mapped) {
				memcpy(m, s->smp, s->ns * sizeof(*s->smp));
				free(s->smp);
			}
			s->smp = m;
			s->mapped = bytes;
			s->cap = bytes / sizeof(*s->smp);
			return;
		}
		if (s->mapped)
			fatal(EXIT_TEMPORARY, "ckms: grow to %zu samples", cap);
		/* no new mapping to be had (vm.max_map_count?): the heap */
	}
	struct ckms_sample *p = realloc(s->smp, cap * sizeof(*p));
	if (p == NULL)
		fatal(EXIT_TEMPORARY, "ckms: grow to %zu samples", cap);
	s->smp = p;
	s->cap = cap;
}

/* First index whose value is >= v. */
static size_t
lower_bound(const struct ckms_sample *smp, size_t n, uint32_t v)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (smp[mid].v < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Would a merge into b, a's successor, pass the compress test? r_a is the
 * g below a. */
static int
mergeable(struct ckms_sample a, struct ckms_sample b, uint64_t r_a,
    double twoeps)
{
	return (uint64_t)a.g + b.g + b.delta <= invariant(twoeps, u2d(r_a));
}

/* The compress walk over old samples, from cur = smp[ri - 1] (not yet
 * written, rcur the g below it) up to the next buffered value `kv`: as long
 * as no pair merges, each sample is written out unchanged, so this loop
 * does only that. It stops before the first old sample that cur would merge
 * into or that a buffered value goes before, and returns the new ri, with
 * *w, *rcur, *cur (the last sample of the run, still pending) and *gs (g
 * of the old samples read) updated. The merge test c <= f(r) is written
 * c <= 2εr: for an integer c >= 2 it is the same (f floors 2εr, and is 1
 * only when 2εr < 1 < c), with f's cap at UINT32_MAX kept by the second
 * test. */
static size_t
old_run(struct ckms_sample *smp, size_t ri, size_t re, uint64_t kv,
    double twoeps, size_t *w, uint64_t *rcur, struct ckms_sample *cur,
    uint64_t *gs)
{
	size_t j = ri, o = *w;
	uint64_t r = *rcur, g = *gs;
	struct ckms_sample prev = smp[j - 1];
	for (; j < re && smp[j].v < kv; j++) {
		uint64_t c = (uint64_t)prev.g + smp[j].g + smp[j].delta;
		if ((double)c <= twoeps * u2d(r) && c <= UINT32_MAX)
			break;
		smp[o++] = prev;
		r += prev.g;
		prev = smp[j];
		g += prev.g;
	}
	*w = o;
	*rcur = r;
	*gs = g;
	*cur = prev;
	return j;
}

/* Merge the buffer into the samples; compress too when `compress`.
 *
 * The compress walk tests a sample against its successor before that
 * successor absorbs the samples after it, so a pair can become mergeable
 * once both are final. When `cur` is written out having absorbed samples,
 * it is tested against the sample below it, and the first such pair is
 * remembered in `dirty`: the next compress must walk from there. */
static void
flush(struct ckms *s, int compress)
{
	size_t nb = s->nbuf;
	uint64_t scratch[BUF_MAX]; /* for the sort, then the bitset */
	reserve(s, s->ns + nb);
	sort_keys(s->keys, scratch, nb);
	annotate(s->keys, nb, scratch);

	struct ckms_sample *smp = s->smp;
	size_t k = lower_bound(smp, s->ns, (uint32_t)(s->keys[0] >> 32));
	size_t w0 = k;
	if (compress) {
		size_t start = k < s->clean ? k : s->clean;
		w0 = start ? start - 1 : 0;
	}
	uint64_t gs = 0; /* g of the old samples passed so far */
	for (size_t i = 0; i < w0; i++)
		gs += smp[i].g;

	/* Open a gap of nb slots: the pass reads old samples from above the
	 * gap and writes its output from w0, never overtaking its reads. */
	memmove(smp + w0 + nb, smp + w0, (s->ns - w0) * sizeof(*smp));
	size_t ri = w0 + nb, re = s->ns + nb, bi = 0, w = w0;
	size_t dirty = SIZE_MAX;
	const uint64_t *keys = s->keys;
	double twoeps = s->twoeps;
	uint64_t rcur = gs; /* g of the output below cur */
	uint64_t fcur = 0;  /* f(rcur) */
	struct ckms_sample cur = {0, 0, 0}, x;
	int have = 0, absorbed = 0;

	for (;;) {
		int x_old = 0; /* x is an old sample, smp[ri - 1] */
		if (bi < nb && (ri == re ||
		    (uint32_t)(keys[bi] >> 32) <= smp[ri].v)) {
			uint64_t key = keys[bi++];
			x.v = (uint32_t)(key >> 32);
			x.g = 1;
			x.delta = (key & KEY_EXTREME) ? 0 :
			    invariant(twoeps, u2d(gs + (key & KEY_COUNT))) - 1;
		} else if (ri < re) {
			x = smp[ri++];
			gs += x.g;
			x_old = 1;
		} else {
			break;
		}
		if (!compress) {
			smp[w++] = x;
		} else if (!have) {
			cur = x;
			have = 1;
			fcur = invariant(twoeps, u2d(rcur));
		} else if ((uint64_t)cur.g + x.g + x.delta <= fcur) {
			/* cur merges into x: x's v and Δ, the summed g */
			cur.v = x.v;
			cur.g += x.g;
			cur.delta = x.delta;
			absorbed = 1;
		} else {
			if (absorbed && dirty == SIZE_MAX && w > 0 &&
			    mergeable(smp[w - 1], cur, rcur - smp[w - 1].g,
			    twoeps))
				dirty = w;
			smp[w++] = cur;
			rcur += cur.g;
			cur = x;
			absorbed = 0;
			if (x_old)
				ri = old_run(smp, ri, re, bi < nb ?
				    keys[bi] >> 32 : (uint64_t)UINT32_MAX + 1,
				    twoeps, &w, &rcur, &cur, &gs);
			fcur = invariant(twoeps, u2d(rcur));
		}
	}
	if (have) {
		if (absorbed && dirty == SIZE_MAX && w > 0 &&
		    mergeable(smp[w - 1], cur, rcur - smp[w - 1].g, twoeps))
			dirty = w;
		smp[w++] = cur;
	}
	s->ns = w;
	s->nbuf = 0;
	if (compress)
		s->clean = dirty < w ? dirty : w;
	else if (k < s->clean)
		s->clean = k;
}

void
ckms_insert(struct ckms *s, uint32_t v)
{
	uint32_t extreme = 0;
	if (s->n == 0) {
		s->minv = s->maxv = v;
		extreme = 1;
	} else if (v <= s->minv) {
		s->minv = v;
		extreme = 1;
	} else if (v > s->maxv) {
		s->maxv = v;
		extreme = 1;
	}
	size_t j = s->nbuf++;
	s->keys[j] = (uint64_t)v << 32 | (KEY_COUNT - (uint32_t)j) << 1 | extreme;
	s->n++;
	if (--s->to_compress == 0) {
		s->to_compress = s->period;
		flush(s, 1);
	} else if (s->nbuf == s->bufcap) {
		flush(s, 0);
	}
}

uint32_t
ckms_query(struct ckms *s, double q)
{
	if (s->nbuf)
		flush(s, 0);
	const struct ckms_sample *smp = s->smp;
	double t = q * (double)s->n;
	double rhs = t + (double)invariant(s->twoeps, t) / 2.0;
	uint64_t r = 0;
	for (size_t i = 1; i < s->ns; i++) {
		r += smp[i - 1].g;
		if ((double)(r + smp[i].g + smp[i].delta) > rhs)
			return smp[i - 1].v;
	}
	return smp[s->ns - 1].v;
}

uint64_t
ckms_count(const struct ckms *s)
{
	return s->n;
}

size_t
ckms_samples(struct ckms *s)
{
	if (s->nbuf)
		flush(s, 0);
	return s->ns;
}
