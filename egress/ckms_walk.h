/* ckms_walk.h - the passes of ckms.c that read and write samples, written
 * once for both sample layouts. Not a header of its own: ckms.c includes it
 * once per layout, with SAMPLE defined as the sample struct and WALK(name)
 * as the function name with that layout's suffix, after everything the
 * passes use (struct ckms, invariant, u2d, the KEY_ bits). The file undefines
 * both macros at its end. The comments of ckms.c tell how the passes work. */
#if !defined(SAMPLE) || !defined(WALK)
#error "ckms_walk.h is included by ckms.c only, with SAMPLE and WALK defined"
#endif

/* The merge test: does a pair whose merge would give g + Δ = c (>= 2)
 * pass it at rank r? c <= f(r), in integers when per allows (ckms.c),
 * else as c <= 2εr in doubles (see old_run). */
#define MERGES(c, r) (per ? (c) * per <= (r) : \
	(double)(c) <= twoeps * u2d(r) && (c) <= UINT32_MAX)

/* The compress walk over old samples, from cur = smp[ri - 1] (not yet
 * written, rcur the g below it) up to the next buffered value `kv`: as long
 * as no pair merges, each sample is written out unchanged, so this loop
 * does only that. It stops before the first old sample that cur would merge
 * into or that a buffered value goes before, and returns the new ri, with
 * *w, *rcur and *cur (the last sample of the run, still pending) updated.
 * The merge test c <= f(r) is written c <= 2εr: for an integer c >= 2 it is
 * the same (f floors 2εr, and is 1 only when 2εr < 1 < c), with f's cap at
 * UINT32_MAX kept by the second test (always true for narrow samples).
 *
 * Inside a run every sample moves down by the same distance, ri - 1 - *w,
 * so the loop copies each one as it is, memory to memory, and keeps only
 * the g of the pending one in a register; the caller recomputes the g of
 * the old samples read from r (see merge). Against a loop that kept the
 * pending sample field by field and stored it back field by field, this
 * took 60 instructions per insert off (the header comment of ckms.c). */
static inline __attribute__((always_inline)) size_t
WALK(run)(SAMPLE *smp, size_t ri, size_t re, uint64_t kv, double twoeps,
    uint64_t per, int to_end, size_t *w, uint64_t *rcur, SAMPLE *cur)
{
	const SAMPLE *in = smp + ri, *end = smp + re;
	SAMPLE *out = smp + *w;
	uint64_t r = *rcur, pg = in[-1].g;
	for (;; in++) {
		if (to_end ? in == end : in->v >= kv)
			break;
		uint64_t c = pg + in->g + in->delta;
		if (MERGES(c, r))
			break;
		*out++ = in[-1];
		r += pg;
		pg = in->g;
	}
	*w = (size_t)(out - smp);
	*rcur = r;
	*cur = in[-1];
	return (size_t)(in - smp);
}

/* The run up to the next buffered value `kv` (smp[re] is a sentinel that
 * stops it: a value >= kv), or with none left (kv > UINT32_MAX) to the end;
 * with the merge test in integers when s->per (ckms.c) allows. */
static size_t
WALK(old_run)(SAMPLE *smp, size_t ri, size_t re, uint64_t kv, double twoeps,
    uint64_t per, size_t *w, uint64_t *rcur, SAMPLE *cur)
{
	if (kv > UINT32_MAX)
		return per ?
		    WALK(run)(smp, ri, re, kv, twoeps, per, 1, w, rcur, cur) :
		    WALK(run)(smp, ri, re, kv, twoeps, 0, 1, w, rcur, cur);
	return per ?
	    WALK(run)(smp, ri, re, kv, twoeps, per, 0, w, rcur, cur) :
	    WALK(run)(smp, ri, re, kv, twoeps, 0, 0, w, rcur, cur);
}

/* The next buffered value as a new sample, taking it off the sorted keys
 * (bi, nextv: the value after it, 2^32 past the last): g 1, and Δ 0 for a
 * new minimum or maximum, else f(r) - 1 at the rank r it was inserted at,
 * the g below it (gs) plus the earlier arrivals below it (ckms.c). */
static inline __attribute__((always_inline)) SAMPLE
WALK(take_key)(const uint64_t *keys, size_t nb, size_t *bi, uint64_t *nextv,
    double twoeps, uint64_t gs)
{
	uint64_t key = keys[(*bi)++];
	*nextv = *bi < nb ? keys[*bi] >> 32 : (uint64_t)1 << 32;
	SAMPLE x;
	x.v = (uint32_t)(key >> 32);
	x.g = 1;
	x.delta = (key & KEY_EXTREME) ? 0 :
	    invariant(twoeps, u2d(gs + (key & KEY_COUNT))) - 1;
	return x;
}

/* The pass of flush: merge the sorted, annotated buffer into the samples
 * (room for them reserved, and for a sentinel after them), compressing too
 * when `compress`. In the narrow layout every g and Δ it writes is at most
 * f(n) <= UINT16_MAX (flush widens before that could fail), so the 16-bit
 * fields truncate nothing.
 *
 * The sentinel smp[re], a value of UINT32_MAX above the old samples, and
 * `nextv`, the next buffered value or 2^32 when there is none, make "does
 * a buffered value come next" one comparison, nextv <= smp[ri].v. */
static void
WALK(merge)(struct ckms *s, int compress)
{
	size_t nb = s->nbuf;
	SAMPLE *smp = s->smp;
	const uint64_t *keys = s->keys;
	double twoeps = s->twoeps;
	uint64_t per = s->wide ? 0 : s->per;
	/* The pass starts at start = min(k, clean), k the first sample not
	 * below the smallest buffered value (they go before equal ones):
	 * below k nothing changes but through compress, and below clean no
	 * pair merges. Found by a forward scan that sums the g below it on
	 * the way, four samples at a time while all four lie below (values
	 * ascend). A binary search for k was 15% of flush in the pipeline
	 * at 3.2M events/s, 32 lines a datagram (bench/pipeline.sh's step;
	 * a cold array, a cache miss per probe), and the g below start
	 * needed a pass over those samples anyway. */
	uint32_t v0 = (uint32_t)(keys[0] >> 32);
	size_t lim = s->clean, i = 0;
	uint64_t g0 = 0, g1 = 0, g2 = 0, g3 = 0;
	for (; i + 4 <= lim && smp[i + 3].v < v0; i += 4) {
		g0 += smp[i].g;
		g1 += smp[i + 1].g;
		g2 += smp[i + 2].g;
		g3 += smp[i + 3].g;
	}
	for (; i < lim && smp[i].v < v0; i++)
		g0 += smp[i].g;
	size_t start = i;
	uint64_t gs = g0 + g1 + g2 + g3; /* g of the old samples passed */
	/* a compress walks from the sample below start, whose merge into
	 * the first one at or above it was not tested yet */
	size_t w0 = start;
	if (compress && start > 0)
		gs -= smp[--w0].g;

	/* Open a gap of nb slots: the pass reads old samples from above the
	 * gap and writes its output from w0, never overtaking its reads (nor
	 * reaching the sentinel: it writes ns + nb samples at most). */
	memmove(smp + w0 + nb, smp + w0, (s->ns - w0) * sizeof(*smp));
	size_t ri = w0 + nb, re = s->ns + nb, bi = 0, w = w0;
	smp[re].v = UINT32_MAX;
	uint64_t nextv = keys[0] >> 32;
	SAMPLE x;

	if (!compress) {
		for (;;) {
			if (nextv <= smp[ri].v) {
				x = WALK(take_key)(keys, nb, &bi, &nextv, twoeps, gs);
			} else if (ri < re) {
				x = smp[ri++];
				gs += x.g;
			} else {
				break;
			}
			smp[w++] = x;
		}
		s->ns = w;
		s->nbuf = 0;
		s->clean = start;
		return;
	}

	size_t dirty = SIZE_MAX;
	uint64_t rcur = gs; /* g of the output below cur */
	SAMPLE cur;         /* the sample pending, not yet written */
	int absorbed = 0;   /* cur has absorbed others */
	if (nextv <= smp[ri].v) {
		cur = WALK(take_key)(keys, nb, &bi, &nextv, twoeps, gs);
	} else {
		cur = smp[ri++];
		gs += cur.g;
	}
	for (;;) {
		int x_old = 0; /* x is an old sample, smp[ri - 1] */
		if (nextv <= smp[ri].v) {
			x = WALK(take_key)(keys, nb, &bi, &nextv, twoeps, gs);
		} else if (ri < re) {
			x = smp[ri++];
			gs += x.g;
			x_old = 1;
		} else {
			break;
		}
		uint64_t c = (uint64_t)cur.g + x.g + x.delta;
		if (MERGES(c, rcur)) {
			/* cur merges into x: x's v and Δ, the summed g */
			cur.v = x.v;
			cur.g += x.g;
			cur.delta = x.delta;
			absorbed = 1;
			continue;
		}
		if (absorbed && dirty == SIZE_MAX && w > 0) {
			uint64_t cb = (uint64_t)smp[w - 1].g + cur.g + cur.delta;
			if (MERGES(cb, rcur - smp[w - 1].g))
				dirty = w;
		}
		smp[w++] = cur;
		rcur += cur.g;
		cur = x;
		absorbed = 0;
		if (x_old) {
			ri = WALK(old_run)(smp, ri, re, nextv, twoeps, per,
			    &w, &rcur, &cur);
			/* everything read is written or cur: the old
			 * samples' g is that less the bi buffered
			 * values' g of 1 */
			gs = rcur + cur.g - bi;
		}
	}
	if (absorbed && dirty == SIZE_MAX && w > 0) {
		uint64_t cb = (uint64_t)smp[w - 1].g + cur.g + cur.delta;
		if (MERGES(cb, rcur - smp[w - 1].g))
			dirty = w;
	}
	smp[w++] = cur;
	s->ns = w;
	s->nbuf = 0;
	s->clean = dirty < w ? dirty : w;
}

/* The value at quantile q of the n values the ns >= 1 samples stand for. */
static uint32_t
WALK(query)(const SAMPLE *smp, size_t ns, uint64_t n, double twoeps, double q)
{
	double t = q * (double)n;
	double rhs = t + (double)invariant(twoeps, t) / 2.0;
	uint64_t r = 0;
	for (size_t i = 1; i < ns; i++) {
		r += smp[i - 1].g;
		if ((double)(r + smp[i].g + smp[i].delta) > rhs)
			return smp[i - 1].v;
	}
	return smp[ns - 1].v;
}

#undef MERGES
#undef SAMPLE
#undef WALK
