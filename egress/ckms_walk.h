/* ckms_walk.h - the passes of ckms.c that read and write samples, written
 * once for both sample layouts. Not a header of its own: ckms.c includes it
 * once per layout, with SAMPLE defined as the sample struct and WALK(name)
 * as the function name with that layout's suffix, after everything the
 * passes use (struct ckms, invariant, u2d, the KEY_ bits). The file undefines
 * both macros at its end. The comments of ckms.c tell how the passes work. */
#if !defined(SAMPLE) || !defined(WALK)
#error "ckms_walk.h is included by ckms.c only, with SAMPLE and WALK defined"
#endif

/* First index whose value is >= v. */
static size_t
WALK(lower_bound)(const SAMPLE *smp, size_t n, uint32_t v)
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
WALK(mergeable)(SAMPLE a, SAMPLE b, uint64_t r_a, double twoeps)
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
WALK(old_run)(SAMPLE *smp, size_t ri, size_t re, uint64_t kv, double twoeps,
    size_t *w, uint64_t *rcur, SAMPLE *cur, uint64_t *gs)
{
	size_t j = ri, o = *w;
	uint64_t r = *rcur, g = *gs;
	SAMPLE prev = smp[j - 1];
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

/* The pass of flush: merge the sorted, annotated buffer into the samples
 * (room for them reserved), compressing too when `compress`. In the narrow
 * layout every g and Δ it writes is at most f(n) <= UINT16_MAX (flush
 * widens before that could fail), so the 16-bit fields truncate nothing. */
static void
WALK(merge)(struct ckms *s, int compress)
{
	size_t nb = s->nbuf;
	SAMPLE *smp = s->smp;
	size_t k = WALK(lower_bound)(smp, s->ns, (uint32_t)(s->keys[0] >> 32));
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
	SAMPLE cur = {0, 0, 0}, x;
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
			    WALK(mergeable)(smp[w - 1], cur,
			    rcur - smp[w - 1].g, twoeps))
				dirty = w;
			smp[w++] = cur;
			rcur += cur.g;
			cur = x;
			absorbed = 0;
			if (x_old)
				ri = WALK(old_run)(smp, ri, re, bi < nb ?
				    keys[bi] >> 32 : (uint64_t)UINT32_MAX + 1,
				    twoeps, &w, &rcur, &cur, &gs);
			fcur = invariant(twoeps, u2d(rcur));
		}
	}
	if (have) {
		if (absorbed && dirty == SIZE_MAX && w > 0 &&
		    WALK(mergeable)(smp[w - 1], cur, rcur - smp[w - 1].g,
		    twoeps))
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

#undef SAMPLE
#undef WALK
