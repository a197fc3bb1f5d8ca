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
 * Mapping (families sorted by name, # HELP and # TYPE once per family, the
 * lines of one series together):
 *   ckms   quantiles/sum/count -> summary telem_ckms{name="a",quantile="0.25"},
 *          telem_ckms_sum{name="a"}, telem_ckms_count{name="a"}
 *   cma    gauge   -> gauge   telem_cma{name="b"}
 *          counter -> counter telem_cma_samples_total{name="b"} (promtool
 *          refuses a counter named *_count, and one without _total)
 *   statsd as statsd_exporter maps a metric no mapping rule matches: the
 *          name with every character outside [A-Za-z0-9_] made '_' (one
 *          per UTF-8 character), '_' put before a leading digit; tags become
 *          labels (keys escaped the same way); gauges are gauges; counters
 *          are counters whose value is the sum of every flush's increment
 *          since the sink started, named with "_total" added unless the name
 *          already ends so (statsd_exporter keeps the bare name; promtool
 *          and OpenMetrics want the suffix); timers are summaries whose
 *          quantiles come from statsd's percent thresholds (upper_90 ->
 *          quantile="0.9") with quantiles and sum in seconds (statsd's
 *          milliseconds / 1000, as statsd_exporter does); REPORT_DERIVED
 *          values (mean, std, rate, ...) are left to PromQL.
 *   A statsd family whose name is taken by a family of another type (or by
 *   one of telem_*'s own), or a series that would repeat one already on
 *   the page, or a tag that makes no valid label, is left out and counted
 *   in telem_sink_prom_series_dropped_total; the first one wins.
 * Values are written so that Prometheus reads back the same double:
 * the shortest of %.15g..%.17g that round-trips, NaN, +Inf, -Inf. */
#ifndef TELEM_PROM_EXPO_H
#define TELEM_PROM_EXPO_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "egress/report_rec.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define PROM_ENTRIES_DEFAULT (4u << 20)  /* entries of one report, at most */

/* An immutable rendered text shared by reference between the thread that
 * renders and the threads that serve it. */
struct prom_text {
	atomic_uint refs;
	size_t len;
	char *text;
};

/* Take one more reference to t (NULL is allowed); returns t. */
struct prom_text *prom_text_ref(struct prom_text *t);
/* Drop a reference; the last one frees t. NULL is allowed. */
void prom_text_unref(struct prom_text *t);

/* The sink's own counters. */
struct prom_self {
	uint64_t reports;         /* complete reports taken */
	uint64_t reports_broken;  /* reports discarded as cut or too big */
	uint64_t series_dropped;  /* series left out by the mapping */
	uint64_t scrapes;         /* /metrics answered */
	uint64_t scrape_errors;   /* requests refused or answers cut short */
};

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
	PROM_FED = 0,        /* taken into its source's pending report */
	PROM_RENDERED = 1,   /* an END: the source's report is now on the page */
	PROM_BROKEN = -1,    /* the pending report of the entry's source was
	                        discarded (cut, too big, or out of memory to
	                        render; counted in reports_broken) */
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
void prom_expo_parts(struct prom_expo *x, struct prom_text *parts[REPORT_SRC_N]);
/* Counters so far (scrapes and scrape_errors are 0: the server has them). */
void prom_expo_self(const struct prom_expo *x, struct prom_self *s);

/* The sink's own counters as exposition text into buf[0..cap); returns
 * the length (less than cap; PROM_SELF_MAX always suffices). */
#define PROM_SELF_MAX 1536
size_t prom_render_self(const struct prom_self *s, char *buf, size_t cap);

/* Helpers, exposed for the tests. Each writes a NUL and returns the length,
 * or returns 0 when cap is too small. */
/* v as Prometheus reads it back exactly (cap >= 32 always suffices). */
size_t prom_fmt_double(double v, char *buf, size_t cap);
/* s[0..len) as a label value: \ -> \\, " -> \", newline -> \n. */
size_t prom_escape_label(const char *s, size_t len, char *buf, size_t cap);
/* s[0..len) as statsd_exporter makes a metric or label name of it. */
size_t prom_statsd_name(const char *s, size_t len, char *buf, size_t cap);
/* The quantile label of a REPORT_SUM_QUANTILE field, normalised ("q0.250"
 * -> "0.25", "upper_99_9" -> "0.999", "upper_100" -> "1"). */
size_t prom_quantile_label(const char *field, size_t len, char *buf,
    size_t cap);

#endif
