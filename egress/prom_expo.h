/* prom_expo.h - reports (report_rec.h) rendered in the Prometheus text
 * exposition format 0.0.4, for the Prometheus sink's /metrics.
 *
 * Entries are gathered per source (ckms, cma, statsd) until that source's
 * REPORT_END; only then is the source's report rendered, into a text of
 * its own that replaces the one of its previous report. A report cut
 * short (the END counts another number of entries, or it outgrows the
 * bound) is discarded whole and counted: a page never shows half a
 * report. The page is the texts of the sources plus the sink's own
 * counters, which change per scrape and are rendered then.
 *
 * The text of a report, and how each source's entries map to Prometheus
 * families, is prom_text.h's. */
#ifndef TELEM_PROM_EXPO_H
#define TELEM_PROM_EXPO_H

#include <stddef.h>
#include <stdint.h>

#include "egress/prom_fmt.h"
#include "egress/prom_text.h"
#include "egress/report_rec.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define PROM_ENTRIES_DEFAULT (4u << 20)  /* entries of one report, at most */

struct prom_expo;

/* Call once at the sink's start: big buffers (reports, pages) then always
 * come from mmap and go back to the system when freed. glibc otherwise
 * raises its mmap threshold after the first such free and keeps later
 * pages in the heap: with 10 000 names the sink's RSS is 24 MB without
 * this and 10 MB (17 MB at the peak of a render) with it (bench-prom).
 * Process-wide (mallopt), hence not done behind the caller's back. */
void prom_malloc_tune(void);

/* A renderer keeping at most max_entries entries of a report being
 * gathered (0: PROM_ENTRIES_DEFAULT). NULL (errno ENOMEM) on failure. */
struct prom_expo *prom_expo_new(size_t max_entries);
/* Free x and drop its texts' references (NULL is allowed). */
void prom_expo_free(struct prom_expo *x);

enum prom_feed {
	PROM_FED = 0,        /* taken into its source's pending report (or a
	                        reset with nothing pending) */
	PROM_RENDERED = 1,   /* an END: the source's report is now on the page */
	PROM_BROKEN = -1,    /* the pending report of the entry's source was
	                        discarded (cut, too big, or out of memory to
	                        render; counted in reports_broken); a reset
	                        (egress/report_rec.h) drops one so */
};
/* Feed one entry that report_rec_decode accepted (or that passes
 * report_rec_ok). */
enum prom_feed prom_expo_feed(struct prom_expo *x, const struct report_rec *r);
/* Discard every pending (incomplete) report, for example when the queue
 * the entries come from was cut; the rendered texts stay. */
void prom_expo_abort(struct prom_expo *x);
/* New references to the latest text of each source (parts[src], NULL
 * where a source has no report yet; parts[0] is always NULL). The caller
 * owns them. */
void prom_expo_parts(struct prom_expo *x,
    struct prom_text *parts[REPORT_SRC_N]);
/* Counters so far (scrapes and scrape_errors are 0: the server has them). */
void prom_expo_self(const struct prom_expo *x, struct prom_self *s);

#endif
