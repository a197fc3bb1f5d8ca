/* prom_text.h - one source's complete report rendered as Prometheus text
 * (format 0.0.4) for the Prometheus sink's /metrics, and the text's shared,
 * reference-counted form.
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
 *          since the sink started (or since the counter came back after a
 *          report without it, which forgets it), named with "_total" added unless the name
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
#ifndef TELEM_PROM_TEXT_H
#define TELEM_PROM_TEXT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "egress/prom_fmt.h"
#include "egress/report_rec.h"

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

/* statsd counters' running totals, kept from report to report: an open
 * addressing table keyed by family name, NUL, label block. Zero it to
 * start. A counter missing from a whole report is forgotten: the statsd
 * egress reports every counter it keeps at each flush, so one missing was
 * deleted there (--delete-counters) and its key may never come back; kept,
 * such keys would grow the table for ever. */
struct prom_total {
	char *key;
	size_t klen;
	double v;
	uint64_t report;            /* the last report that had it */
};
struct prom_totals {
	struct prom_total *t;
	size_t cap, n;
	uint64_t report;            /* reports rendered */
};
void prom_text_totals_free(struct prom_totals *tt);

/* Render the complete report of source src (enum report_source) whose
 * entries are back to back in *entries, each a 2-byte little-endian length
 * and a report_rec encoding of that length. *entries is freed
 * (prom_fmt_free) once read, to keep the peak of memory low. statsd
 * counters are added into *tt, the totals the report did not have are
 * forgotten, and every total left is shown. Series left
 * out are added to *dropped. Returns a new text (one reference), or NULL
 * when memory ran out or an entry does not decode (nothing shown then;
 * *tt may have taken part of the report). */
struct prom_text *prom_text_render(struct prom_buf *entries, unsigned src,
    struct prom_totals *tt, uint64_t *dropped);

#endif
