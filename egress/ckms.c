/* ckms.c - the CKMS sketch of docs/design.md §11 for the ckms egress.
 * Values are buffered and merged in sorted batches, yet every sample gets exactly the
 * (v, g, Δ) and position that one-at-a-time insertion would give it. */
#include "egress/ckms.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

/*
 * The rules, and what the 150 reference cases of the seed settle where
 * docs/design.md §11 could be read more than one way (checked against a
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
 *    fit in 32 bits: g <= f(r) after a merge and Δ < f(r). With r <= n,
 *    they fit in 16 bits while f(n) <= 65535: the narrow samples below.
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
 *
 * Cost. The pipeline's ckms egress holds 100 sketches fed values 0..100 in
 * turn, 80 000 each in its 5-second run; most of an insert's cost is its
 * share (1/50) of a compress walk over some 1300 samples. What the steps of
 * the present code bought there, counted by cachegrind over that load
 * (instructions and mispredicted branches per insert, flush and insert
 * together, the loop that feeds them apart):
 *    893 / 4.4  a walk keeping the pending sample field by field, an
 *               insertion sort, a binary search for the start
 *    833 / 4.7  old_run copies each unchanged sample memory to memory
 *    758 / 3.7  a counting sort for batches of narrow span (sort_keys)
 *    651 / 3.6  the merge test in integers (integer_period) and a
 *               sentinel in place of old_run's end test
 *    598 / 2.3  compress and plain merge apart, one comparison for "a
 *               buffered value comes next", no f(rcur) kept
 *    586 / 2.2  the g below the start summed four at a time, by the scan
 *               that finds the start (the binary search, 15% of flush in
 *               the pipeline where the array is cold, is gone)
 * In CPU time, that load alone (the 100-sketch line of bin/bench-ckms)
 * went from 94 to 56 ns per insert, medians of 9 runs on the project's
 * 2-vCPU VM while busy; the ckms stage of the pipeline at 3.2M events/s,
 * 32 lines a datagram, from about 0.080 to 0.063 CPU-s per million
 * events: there the array is cold at every flush (100 arrays of ~10 KiB
 * against a 1 MiB L2 shared with the other stages), which the count of
 * instructions does not see.
 *
 * Tried and left out, measured on that load (same VM, interleaved runs
 * against the code as it is, medians of 3 or 4):
 *  - A chained flush: a buffer of up to 10 periods for sketches with big
 *    arrays, merged and compressed in one left-to-right pass as a chain
 *    of streaming stages (stage k+1 fed stage k's output in blocks of 128
 *    samples, each stage the loop of merge with its state in registers),
 *    so each sample is loaded and stored once per 10 periods. Exact (it
 *    passed samples_same_as_one_at_a_time of tests/test_ckms.c), but each
 *    stage still tests every sample it passes, so the instructions do not
 *    drop (5.25G against 4.69G over the 8M inserts), and the misses it
 *    saves did not pay for them: 65 against 50 ns per insert in the
 *    100-sketch load alone (medians of 5) with every array of 1 KiB or
 *    more chained, and in the pipeline at 3.2M events/s, 32 lines a
 *    datagram, 0.0615 against 0.057 CPU-s per million events for the
 *    ckms stage; chained only from 8 KiB arrays (half of that run),
 *    0.0675 against 0.0655, and 0.067 against 0.063 with 4 periods a
 *    flush. The cold walk is sequential, and the hardware prefetcher
 *    seems to hide most of it: the stage costs about what the sketch
 *    alone costs per insert out of the pipeline.
 *  - Software prefetch of the whole array one insert before a sketch's
 *    flush: 0.0565 against 0.059, within the runs' spread (the other
 *    stages moved as much).
 *  - No gap: merge writes into a spare array of the same size, which then
 *    becomes the sketch's, and the sketch's old array the spare (one
 *    spare for all sketches). It takes off the memmove that opens the
 *    gap in merge (egress/ckms_walk.h), which `perf record` put at
 *    about a quarter of flush in the pipeline. But that memmove is where
 *    the cold array is first read; without it the walk meets the misses
 *    instead. The ckms stage at 3.2M events/s, 32 lines a datagram,
 *    three interleaved pairs on another VM of the same kind, slower than
 *    the one of the figures above: shm 0.071-0.076 against 0.074-0.076,
 *    mqueue 0.076-0.081 against 0.081-0.083 CPU-s per million events,
 *    inside the runs' spread, for a second array in flight and sizes
 *    that must match to swap.
 *  - Flushes back to back on a warm array: a buffer of 4 periods, merged
 *    as 4 flushes in a row when full, each on its own period's values
 *    (exact: tests/test_ckms.c passed). Fed alone, 100 sketches took
 *    76-86 ns an insert whether each got its values one at a time or in
 *    runs of 50 to 500, so the walk waits on its instructions, not on
 *    memory. In the pipeline (same load, three interleaved pairs on
 *    that slower VM, shm) the ckms stage cost 0.072-0.074 against
 *    0.073-0.079 CPU-s per million events and the sum of the stages did
 *    not move, for 1.2 KiB more buffer per sketch.
 *  - Two samples a step in old_run (ckms_walk.h), one branch for both
 *    merge tests: by cachegrind over that load 554 against 597
 *    instructions an insert, but 2.7 against 2.2 mispredicted branches
 *    (a pair that merges now costs a miss and the one-sample path), and
 *    no difference above the noise of the 100-sketch line alone.
 *  - An exact skip of old samples the compress cannot merge: blocks of up
 *    to 16 samples as the last compress wrote them, each with the g of
 *    all but its last and the least c·P - r + (rank of its first sample)
 *    over its pairs, in a side array rebuilt as the walk writes; a block
 *    whose first sample is the pending one, with no buffered value inside
 *    and that least margin above the present rank, is copied whole and
 *    its g added to r (each pair keeps its c, each rank moves by the
 *    same). Exact (tests/test_ckms.c and tests/test_state.c passed), but
 *    it does not pay. A compress walks about 930 of 1270 samples there,
 *    740 in old_run at 17 instructions each (260 of the 568 an insert the
 *    code as it is takes, counted here); only 2.7% of old neighbour pairs
 *    come within reach of a merge, but the 50 values land in 40 of the
 *    101 and the 50 merges spread too: of fixed blocks of 8/16/32/64 old
 *    samples, 23/19/15/10 of 141/71/36/18 get a value inside and
 *    17/16/13/9 hold a pair in reach, so at best 79/70/55/38% of the walk
 *    lies in skippable blocks. Built, it skipped 47% (blocks of 16) and
 *    30% (of 32) of old_run's samples, 6 100 instructions a compress
 *    saved at 16; the margins cost 6 more on each sample still walked and
 *    the blocks (one written per 16 samples, 48 reached, 21 skipped,
 *    their state carried through old_run) 13 000: 759 and 748
 *    instructions an insert against 568, 5.4 and 4.3 mispredicted
 *    branches against 2.2, and 175 and 159 against 110 ns an insert in
 *    the 100-sketch line of bin/bench-ckms (medians of 5, interleaved, on
 *    a busy VM). A first version, its blocks cut at every insert and
 *    merge (the runs of old_run), skipped 61% but 8 samples a skip on
 *    average: 763 instructions an insert.
 *  - old_run four narrow samples a step in SSE2 (the four merge tests
 *    against a prefix sum of the g in lanes, the four copies as two
 *    16-byte moves), handing the first group with a sample that stops or
 *    merges to the scalar loop. Exact (tests/test_ckms.c passed, and
 *    failed with each of three slips put in on purpose), but the runs are
 *    short (some 65 a compress, 40 for the values put in and 25 for the
 *    merges, about 11 samples each), so most of a run is its last group,
 *    walked twice: by cachegrind over that load 626 against 595
 *    instructions an insert (this count includes the feeding loop) and
 *    3.2 against 2.2 mispredicted branches; 10^7 uniform values into one
 *    sketch, 562 against 549.
 */

/* Two sample layouts. Every g and Δ is at most f(n) (g <= f(r) after a
 * merge, Δ < f(r), r <= n), so while f(n) <= UINT16_MAX (n up to about
 * 3.27M values for ε = 0.01) they fit in 16 bits and a sample takes 8
 * bytes instead of 12. A sketch starts narrow; the first flush after which
 * f(n) could exceed UINT16_MAX widens its array once, in place, and it
 * stays wide. The passes over samples (ckms_walk.h) exist for each layout,
 * with a _n or _w suffix; only flush and query choose between them. */
struct ckms_nsample {
	uint32_t v;
	uint16_t g, delta;  /* <= f(n) <= UINT16_MAX while narrow */
};

struct ckms_wsample {
	uint32_t v;
	uint32_t g;     /* seed's u32: g <= f(r) <= UINT32_MAX by construction */
	uint32_t delta;
};

#define NSZ sizeof(struct ckms_nsample)
#define WSZ sizeof(struct ckms_wsample)

/* Low word of a batch key: before the annotation step, the arrival index
 * j as (KEY_COUNT - j) << 1 (so equal values sort latest arrival first) and
 * the new-minimum-or-maximum flag in bit 0; after it, the count of earlier
 * smaller values and that flag as KEY_EXTREME. */
#define KEY_EXTREME 0x80000000u /* new minimum or maximum: Δ = 0 */
#define KEY_COUNT   0x7fffffffu
#define BUF_MAX     512         /* buffer at most this many values */
#define SMALL_SORT  64          /* insertion sort up to this many keys */
#define SPAN_MAX    256         /* counting sort when values span this few */
#define MAPPED_MIN  8192        /* bytes: sample arrays this big are mapped */

struct ckms {
	double twoeps;          /* 2·ε: f(x) = max(1, floor(twoeps·x)) */
	uint64_t per;           /* narrow merge test c*per <= r; 0: none */
	uint64_t n;             /* values inserted, buffered ones included */
	uint64_t period;        /* compress every `period` inserts */
	uint64_t to_compress;   /* inserts left until the next compress */
	uint32_t minv, maxv;    /* of everything inserted (valid when n > 0) */
	void *smp;              /* ckms_nsample, or ckms_wsample when wide */
	size_t ns, cap;         /* cap: in samples of the current layout */
	size_t mapped;          /* bytes of smp's own mapping; 0: on the heap */
	size_t clean;           /* no mergeable pair inside smp[0..clean) */
	size_t nbuf, bufcap;
	int wide;               /* 12-byte samples: f(n) may pass UINT16_MAX */
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

/* The compress walk's merge test c <= f(r) (c >= 2) as the integer test
 * c * P <= r, where it is exactly the same for every r of a narrow sketch
 * (r <= n <= RMAX_NARROW, see flush); else 0. That holds when twoeps is
 * 1/P or a little above it, as the double nearest 1/P often is (2·0.01,
 * 2·0.001, ...): with twoeps = (1 + d)/P, d >= 0, and k = floor(r/P),
 *  - twoeps·r >= r/P >= k, and rounding to a double keeps it >= k;
 *  - twoeps·r <= k + 1 - 1/P + r·d/P, and rounding adds at most a
 *    relative 2^-53, which stays below k + 1 while
 *    RMAX·d + (RMAX + P)·2^-52 < 1,
 * so floor(fl(twoeps·r)) = k. d is computed exactly but for one rounding,
 * which keeps its sign. It replaces a conversion, a multiply and a compare of
 * doubles per sample by a multiply and a compare of integers. */
#define RMAX_NARROW(p) (65537.0 * (p))

static uint64_t
integer_period(double twoeps)
{
	double q = 1.0 / twoeps;
	if (!(q >= 1.5 && q < 32768.0))
		return 0;
	double p = (double)(uint64_t)(q + 0.5);
	/* d = twoeps·p - 1 with one rounding, without fma (libm): twoeps
	 * split into 26 high and 27 low bits makes hi·p and lo·p exact
	 * (p < 2^15), hi·p - 1 is exact as hi·p lies in [1/2, 2], and only
	 * the final sum rounds, which keeps its sign */
	double big = 134217729.0 * twoeps; /* 2^27 + 1 */
	double hi = big - (big - twoeps), lo = twoeps - hi;
	double d = (hi * p - 1.0) + lo * p;
	double rmax = RMAX_NARROW(p);
	if (!(d >= 0.0) || !(rmax * d + (rmax + p) * 0x1p-52 < 0.5))
		return 0;
	return (uint64_t)p;
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
	s->per = integer_period(s->twoeps);
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

/* Sort n keys ascending: by value, then latest arrival first. Keys arrive
 * in arrival order, one per index, so that second order is the reverse of
 * the input's.
 *
 * When the values of the batch span at most SPAN_MAX (a few distinct
 * values, the common case of a sketch per name), one stable counting pass
 * on v - lo, taking the input from the last key down, gives exactly that:
 * no comparisons, no branch on the data. The pipeline's ckms egress sees
 * values 0..100 in batches of 50; there the insertion sort took about a
 * sixth of flush, and the counting pass took 75 instructions per insert
 * off (the header comment). Wider batches take the insertion sort below
 * SMALL_SORT keys and the radix sort above. `tmp` has room for n keys. */
static void
sort_keys(uint64_t *a, uint64_t *tmp, size_t n)
{
	if (n < 2)
		return;
	uint32_t lo = UINT32_MAX, hi = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t v = (uint32_t)(a[i] >> 32);
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
	}
	if (hi - lo < SPAN_MAX) {
		uint16_t count[SPAN_MAX];   /* n <= BUF_MAX < 65536 */
		uint32_t span = hi - lo + 1;
		memset(count, 0, span * sizeof(count[0]));
		for (size_t i = 0; i < n; i++)
			count[(uint32_t)(a[i] >> 32) - lo]++;
		uint32_t sum = 0;
		for (uint32_t b = 0; b < span; b++) {
			uint32_t c = count[b];
			count[b] = (uint16_t)sum;
			sum += c;
		}
		for (size_t i = n; i-- > 0;)
			tmp[count[(uint32_t)(a[i] >> 32) - lo]++] = a[i];
		memcpy(a, tmp, n * sizeof(*a));
		return;
	}
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

void
ckms_sort_keys(uint64_t *keys, size_t n)
{
	uint64_t tmp[BUF_MAX];
	if (n <= BUF_MAX)
		sort_keys(keys, tmp, n);
}

uint64_t
ckms_integer_period(double eps)
{
	return integer_period(2.0 * eps);
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

/* Room for `need` samples of the current layout, keeping the first `keep`
 * bytes of the array. A small array lives on the heap; from MAPPED_MIN
 * bytes on it gets a mapping of its own, grown by mremap. Many sketches
 * growing side by side on the heap leave holes behind every realloc that
 * moves (with 100 names, heap holes and slack came to 1.4 MB for 1.75 MB
 * of samples), while a mapping grows without copying and costs only the
 * pages the samples have touched: past the last sample it is address
 * space, not memory. Below MAPPED_MIN the page granularity of a mapping
 * would cost more than the heap does (10 000 sketches of 300 samples). */
static void
grow(struct ckms *s, size_t need, size_t keep)
{
	size_t size = s->wide ? WSZ : NSZ;
	/* grow by half: the count grows only logarithmically, and with many
	 * names the slack of doubling would be a third of the memory */
	size_t cap = s->cap ? s->cap : 16;
	while (cap < need)
		cap += cap / 2;
	size_t bytes = cap * size;
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
				if (keep)
					memcpy(m, s->smp, keep);
				free(s->smp);
			}
			s->smp = m;
			s->mapped = bytes;
			s->cap = bytes / size;
			return;
		}
		if (s->mapped)
			fatal(EXIT_TEMPORARY, "ckms: grow to %zu samples", cap);
		/* no new mapping to be had (vm.max_map_count?): the heap */
	}
	void *p = realloc(s->smp, cap * size);
	if (p == NULL)
		fatal(EXIT_TEMPORARY, "ckms: grow to %zu samples", cap);
	s->smp = p;
	s->cap = cap;
}

static void
reserve(struct ckms *s, size_t need)
{
	if (need > s->cap)
		grow(s, need, s->ns * (s->wide ? WSZ : NSZ));
}

/* Narrow to wide, in place: the array grows to hold the samples at 12
 * bytes, and they are rewritten from the last down. Wide sample i covers
 * bytes [12i, 12i + 12), where only narrow samples i and above lie, and
 * those have been read already. The copies go through memcpy, which the
 * compiler may not reorder across as it might accesses to two struct
 * types in the same memory. */
static void
widen(struct ckms *s)
{
	if (s->wide)
		return;
	size_t ns = s->ns;
	s->wide = 1;
	s->cap = s->cap * NSZ / WSZ;
	if (ns > s->cap)
		grow(s, ns, ns * NSZ);
	unsigned char *b = s->smp;
	for (size_t i = ns; i-- > 0;) {
		struct ckms_nsample x;
		memcpy(&x, b + i * NSZ, NSZ);
		struct ckms_wsample y = {x.v, x.g, x.delta};
		memcpy(b + i * WSZ, &y, WSZ);
	}
}

#define SAMPLE struct ckms_nsample
#define WALK(name) name##_n
#include "egress/ckms_walk.h"
#define SAMPLE struct ckms_wsample
#define WALK(name) name##_w
#include "egress/ckms_walk.h"

/* Merge the buffer into the samples; compress too when `compress`.
 *
 * The compress walk tests a sample against its successor before that
 * successor absorbs the samples after it, so a pair can become mergeable
 * once both are final. When `cur` is written out having absorbed samples,
 * it is tested against the sample below it, and the first such pair is
 * remembered in `dirty`: the next compress must walk from there.
 *
 * A narrow sketch widens first when f(n), n counting the buffered values,
 * passes UINT16_MAX: no g or Δ of this merge can exceed f(n). */
static void
flush(struct ckms *s, int compress)
{
	size_t nb = s->nbuf;
	uint64_t scratch[BUF_MAX]; /* for the sort, then the bitset */
	if (!s->wide && invariant(s->twoeps, u2d(s->n)) > UINT16_MAX)
		widen(s);
	reserve(s, s->ns + nb + 1); /* + 1: old_run's sentinel */
	sort_keys(s->keys, scratch, nb);
	annotate(s->keys, nb, scratch);
	if (s->wide)
		merge_w(s, compress);
	else
		merge_n(s, compress);
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
	return s->wide ? query_w(s->smp, s->ns, s->n, s->twoeps, q) :
	    query_n(s->smp, s->ns, s->n, s->twoeps, q);
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

void
ckms_sample(struct ckms *s, size_t i, uint32_t *v, uint32_t *g,
    uint32_t *delta)
{
	if (s->nbuf)
		flush(s, 0);
	if (s->wide) {
		const struct ckms_wsample *x = (const struct ckms_wsample *)s->smp + i;
		*v = x->v, *g = x->g, *delta = x->delta;
	} else {
		const struct ckms_nsample *x = (const struct ckms_nsample *)s->smp + i;
		*v = x->v, *g = x->g, *delta = x->delta;
	}
}

size_t
ckms_sample_bytes(const struct ckms *s)
{
	return s->wide ? WSZ : NSZ;
}

void
ckms_widen(struct ckms *s)
{
	widen(s);
}

/* Saved: n, to_compress, minv, maxv, ns, clean, nbuf, wide (as u64), then
 * the ns samples in their layout as they are in memory and the nbuf
 * buffered keys as they are: a loaded sketch is the saved one, field for
 * field, so it answers and goes on exactly as the saved one would. */
struct saved {
	uint64_t n, to_compress;
	uint32_t minv, maxv;
	uint64_t ns, clean, nbuf, wide;
};

void
ckms_save(const struct ckms *s, struct state_writer *w)
{
	struct saved h = { s->n, s->to_compress, s->minv, s->maxv, s->ns,
	    s->clean, s->nbuf, (uint64_t)s->wide };
	state_put(w, &h, sizeof(h));
	state_put(w, s->smp, s->ns * (s->wide ? WSZ : NSZ));
	state_put(w, s->keys, s->nbuf * sizeof(s->keys[0]));
}

/* Check the samples of a loaded sketch: ascending values within
 * [minv, maxv], every g at least 1; returns the sum of g, or UINT64_MAX. */
static uint64_t
check_samples(const struct ckms *s)
{
	uint64_t sum = 0;
	uint32_t prev = s->minv;
	for (size_t i = 0; i < s->ns; i++) {
		uint32_t v, g;
		if (s->wide) {
			const struct ckms_wsample *x = (const struct ckms_wsample *)s->smp + i;
			v = x->v;
			g = x->g;
		} else {
			const struct ckms_nsample *x = (const struct ckms_nsample *)s->smp + i;
			v = x->v;
			g = x->g;
		}
		if (v < prev || v > s->maxv || g == 0)
			return UINT64_MAX;
		prev = v;
		sum += g;
	}
	return sum;
}

struct ckms *
ckms_load(double eps, struct state_reader *r, const char **why)
{
	struct saved h;
	*why = "sketch cut short";
	if (state_get(r, &h, sizeof(h)) == -1)
		return NULL;
	struct ckms *s = ckms_new(eps);
	if (s == NULL) {
		*why = "no memory for a sketch";
		return NULL;
	}
	*why = "sketch does not add up";
	/* Everything an insert, merge or query indexes by is checked here;
	 * the rest must be what the saving sketch could have held. */
	if (h.n == 0 || h.nbuf > h.n || h.nbuf >= s->bufcap ||
	    h.ns > h.n - h.nbuf || h.clean > h.ns || h.wide > 1 || h.minv > h.maxv ||
	    h.to_compress != s->period - h.n % s->period ||
	    (h.ns == 0) != (h.n == h.nbuf))
		goto bad;
	size_t size = h.wide ? WSZ : NSZ;
	if (h.ns > r->left / size)
		goto cut;
	s->n = h.n;
	s->to_compress = h.to_compress;
	s->minv = h.minv;
	s->maxv = h.maxv;
	s->wide = (int)h.wide;
	if (h.ns > 0) {
		reserve(s, (size_t)h.ns);
		if (state_get(r, s->smp, (size_t)h.ns * size) == -1)
			goto cut;
	}
	s->ns = (size_t)h.ns;
	s->clean = (size_t)h.clean;
	if (check_samples(s) != h.n - h.nbuf)
		goto bad;
	if (!s->wide && h.ns > 0 &&
	    invariant(s->twoeps, u2d(h.n - h.nbuf)) > UINT16_MAX)
		goto bad;
	if (state_get(r, s->keys, (size_t)h.nbuf * sizeof(s->keys[0])) == -1)
		goto cut;
	s->nbuf = (size_t)h.nbuf;
	/* Buffered key j holds arrival index j (annotate indexes a bitset
	 * by it) and a value within [minv, maxv]. */
	for (size_t j = 0; j < s->nbuf; j++) {
		uint32_t low = (uint32_t)s->keys[j], v = (uint32_t)(s->keys[j] >> 32);
		if (low >> 1 != KEY_COUNT - (uint32_t)j || v < s->minv || v > s->maxv)
			goto bad;
	}
	return s;
cut:
	*why = "sketch cut short";
bad:
	ckms_free(s);
	return NULL;
}
