/* prom_expo.c - reports gathered per source until their end and handed
 * to the renderer (prom_expo.h); a report cut short never reaches it. */
#include "egress/prom_expo.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

struct pending {
	struct prom_buf a;     /* encoded entries, back to back */
	size_t n;
	int over;         /* outgrew max_entries: discard at END */
};

struct prom_expo {
	size_t max_entries;
	struct pending pend[REPORT_SRC_N];
	struct prom_text *text[REPORT_SRC_N];
	struct prom_totals totals;
	uint64_t reports, broken, dropped;
};

void
prom_malloc_tune(void)
{
	(void)mallopt(M_MMAP_THRESHOLD, 256 * 1024);
}

struct prom_expo *
prom_expo_new(size_t max_entries)
{
	struct prom_expo *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return NULL;
	x->max_entries = max_entries ? max_entries : PROM_ENTRIES_DEFAULT;
	return x;
}

void
prom_expo_free(struct prom_expo *x)
{
	if (x == NULL)
		return;
	for (size_t s = 0; s < REPORT_SRC_N; s++) {
		prom_fmt_free(&x->pend[s].a);
		prom_text_unref(x->text[s]);
	}
	prom_text_totals_free(&x->totals);
	free(x);
}

/* The memory of a report goes back as soon as it is rendered or
 * discarded: between reports the sink holds only its pages. */
static void
pending_reset(struct pending *p)
{
	prom_fmt_free(&p->a);
	p->n = 0;
	p->over = 0;
}

void
prom_expo_abort(struct prom_expo *x)
{
	for (size_t s = 0; s < REPORT_SRC_N; s++)
		pending_reset(&x->pend[s]);
}

enum prom_feed
prom_expo_feed(struct prom_expo *x, const struct report_rec *e)
{
	if (e->source < 1 || e->source >= REPORT_SRC_N)
		return PROM_BROKEN;
	struct pending *p = &x->pend[e->source];
	if (e->kind != REPORT_END) {
		unsigned char rec[REPORT_REC_MAX + 2];
		size_t n = report_rec_encode(e, rec + 2, REPORT_REC_MAX);
		if (p->over || n == 0 || p->n >= x->max_entries) {
			p->over = 1;
			return PROM_FED;  /* discarded at its END */
		}
		rec[0] = (unsigned char)(n & 0xff);
		rec[1] = (unsigned char)(n >> 8);
		prom_fmt_put(&p->a, rec, n + 2);
		if (p->a.failed)
			p->over = 1;
		p->n++;
		return PROM_FED;
	}
	if (e->count == 0) {
		/* A reset (egress/report_rec.h): what came of this source's
		 * report was cut short; nothing to show. */
		if (p->n == 0 && !p->over)
			return PROM_FED;
		pending_reset(p);
		x->broken++;
		return PROM_BROKEN;
	}
	if (p->over || p->n != e->count) {
		pending_reset(p);
		x->broken++;
		return PROM_BROKEN;
	}
	struct prom_text *t = prom_text_render(&p->a, e->source, &x->totals,
	    &x->dropped);
	pending_reset(p);
	if (t == NULL) {
		x->broken++;
		return PROM_BROKEN;
	}
	prom_text_unref(x->text[e->source]);
	x->text[e->source] = t;
	x->reports++;
	return PROM_RENDERED;
}

void
prom_expo_parts(struct prom_expo *x, struct prom_text *parts[REPORT_SRC_N])
{
	for (size_t s = 0; s < REPORT_SRC_N; s++)
		parts[s] = prom_text_ref(x->text[s]);
}

void
prom_expo_self(const struct prom_expo *x, struct prom_self *s)
{
	memset(s, 0, sizeof(*s));
	s->reports = x->reports;
	s->reports_broken = x->broken;
	s->series_dropped = x->dropped;
}
