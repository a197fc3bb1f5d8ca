/* prom_fmt.h - the pieces of the Prometheus text format 0.0.4 that the
 * Prometheus sink writes (prom_text.h puts them together): numbers written
 * so that Prometheus reads back the same double, label values escaped,
 * statsd names made as statsd_exporter makes them, quantile labels, the
 * sink's own counters, and the growable buffer they are written into. */
#ifndef TELEM_PROM_FMT_H
#define TELEM_PROM_FMT_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer; `failed` is set (and sticks) when memory ran
 * out, so a long run of appends is checked once at the end. Zero it to
 * start; prom_fmt_free frees it and zeroes it again. */
struct prom_buf {
	char *p;
	size_t len, cap;
	int failed;
};
/* Append s[0..n) (nothing once failed is set). */
void prom_fmt_put(struct prom_buf *b, const void *s, size_t n);
void prom_fmt_puts(struct prom_buf *b, const char *s);
void prom_fmt_free(struct prom_buf *b);

/* The sink's own counters. */
struct prom_self {
	uint64_t reports;         /* complete reports taken */
	uint64_t reports_broken;  /* reports discarded as cut or too big */
	uint64_t series_dropped;  /* series left out by the mapping */
	uint64_t scrapes;         /* /metrics answered in full */
	uint64_t scrape_errors;   /* requests refused, connections closed
	                             with no answer, answers cut short */
};

/* Each of these writes a NUL and returns the length, or returns 0 when
 * cap is too small. */
/* v as Prometheus reads it back exactly: the shortest of %.15g..%.17g
 * that strtod gives back as v, or NaN, +Inf, -Inf (cap >= 32 suffices). */
size_t prom_fmt_double(double v, char *buf, size_t cap);
/* s[0..len) as a label value: \ -> \\, " -> \", newline -> \n. */
size_t prom_fmt_label(const char *s, size_t len, char *buf, size_t cap);
/* s[0..len) as statsd_exporter makes a metric or label name of a name no
 * mapping rule matches: every character outside [A-Za-z0-9_] made '_'
 * (one per UTF-8 character), '_' put before a leading digit. */
size_t prom_fmt_statsd_name(const char *s, size_t len, char *buf, size_t cap);
/* The quantile label of a REPORT_SUM_QUANTILE field, normalised ("q0.250"
 * -> "0.25", "upper_99_9" -> "0.999", "upper_100" -> "1"). */
size_t prom_fmt_quantile(const char *field, size_t len, char *buf,
    size_t cap);
/* The sink's own counters as exposition text (PROM_SELF_MAX suffices). */
#define PROM_SELF_MAX 1536
size_t prom_fmt_self(const struct prom_self *s, char *buf, size_t cap);

#endif
