/* prom_fmt.c - the pieces of Prometheus text (prom_fmt.h): numbers that
 * read back exactly, escaped label values, statsd_exporter's names,
 * quantile labels, the sink's own counters, and a growable buffer. */
#include "egress/prom_fmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/report_rec.h"

static int
buf_room(struct prom_buf *b, size_t n)
{
	if (b->failed)
		return -1;
	if (b->cap - b->len >= n)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < n)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (p == NULL) {
		b->failed = 1;
		return -1;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

void
prom_fmt_put(struct prom_buf *b, const void *s, size_t n)
{
	if (buf_room(b, n) == 0) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

void
prom_fmt_puts(struct prom_buf *b, const char *s)
{
	prom_fmt_put(b, s, strlen(s));
}

void
prom_fmt_free(struct prom_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

size_t
prom_fmt_double(double v, char *buf, size_t cap)
{
	const char *special = isnan(v) ? "NaN" : isinf(v) ?
	    (v > 0 ? "+Inf" : "-Inf") : NULL;
	if (special != NULL) {
		if (strlen(special) >= cap)
			return 0;
		strcpy(buf, special);
		return strlen(special);
	}
	for (int prec = 15; prec <= 17; prec++) {
		int n = snprintf(buf, cap, "%.*g", prec, v);
		if (n < 0 || (size_t)n >= cap)
			return 0;
		if (prec == 17 || strtod(buf, NULL) == v)
			return (size_t)n;
	}
	return 0;  /* not reached */
}

size_t
prom_fmt_label(const char *s, size_t len, char *buf, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		const char *e = s[i] == '\\' ? "\\\\" : s[i] == '"' ? "\\\"" :
		    s[i] == '\n' ? "\\n" : NULL;
		size_t n = e ? 2 : 1;
		if (o + n >= cap)
			return 0;
		if (e)
			memcpy(buf + o, e, 2);
		else
			buf[o] = s[i];
		o += n;
	}
	if (o >= cap)
		return 0;
	buf[o] = '\0';
	return o;
}

size_t
prom_fmt_statsd_name(const char *s, size_t len, char *buf, size_t cap)
{
	size_t o = 0;
	if (len == 0 || cap < 2)
		return 0;
	if (s[0] >= '0' && s[0] <= '9')
		buf[o++] = '_';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c & 0xc0) == 0x80)
			continue;  /* a UTF-8 continuation: one '_' per character */
		if (o + 1 >= cap)
			return 0;
		buf[o++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' ? (char)c : '_';
	}
	buf[o] = '\0';
	return o;
}

/* The decimal int.frac (frac may be empty) as a normalised quantile:
 * the value divided by 10^shift, no leading or trailing zeros. */
static size_t
quantile_text(const char *in, size_t ilen, const char *fr, size_t flen,
    int shift, char *buf, size_t cap)
{
	char d[64];
	size_t nd = 0;
	if (ilen + flen + (size_t)shift + 1 >= sizeof(d))
		return 0;
	for (int i = 0; i < shift; i++)
		d[nd++] = '0';
	memcpy(d + nd, in, ilen);
	nd += ilen;
	size_t point = nd - (size_t)shift;  /* digits before the point */
	memcpy(d + nd, fr, flen);
	nd += flen;
	size_t a = 0, z = nd;
	while (a + 1 < point && d[a] == '0')
		a++;
	while (z > point && d[z - 1] == '0')
		z--;
	size_t o = 0;
	if (z - a + 2 >= cap)
		return 0;
	for (size_t i = a; i < z; i++) {
		if (i == point)
			buf[o++] = '.';
		buf[o++] = d[i];
	}
	buf[o] = '\0';
	return o;
}

size_t
prom_fmt_quantile(const char *field, size_t len, char *buf, size_t cap)
{
	double q;
	if (report_rec_quantile(field, len, &q) == -1)
		return 0;
	const char *num = field[0] == 'q' ? field + 1 : field + 6;
	size_t nlen = len - (size_t)(num - field);
	char sep = field[0] == 'q' ? '.' : '_';
	const char *dot = memchr(num, sep, nlen);
	size_t ilen = dot ? (size_t)(dot - num) : nlen;
	const char *fr = dot ? dot + 1 : "";
	size_t flen = dot ? nlen - ilen - 1 : 0;
	return quantile_text(num, ilen, fr, flen, field[0] == 'q' ? 0 : 2, buf,
	    cap);
}

size_t
prom_fmt_self(const struct prom_self *s, char *buf, size_t cap)
{
	int n = snprintf(buf, cap,
	    "# HELP telem_sink_prom_reports_total Complete reports taken from "
	    "the egresses.\n"
	    "# TYPE telem_sink_prom_reports_total counter\n"
	    "telem_sink_prom_reports_total %llu\n"
	    "# HELP telem_sink_prom_reports_broken_total Reports discarded as "
	    "cut short or too big.\n"
	    "# TYPE telem_sink_prom_reports_broken_total counter\n"
	    "telem_sink_prom_reports_broken_total %llu\n"
	    "# HELP telem_sink_prom_scrape_errors_total Requests refused or "
	    "answers cut short.\n"
	    "# TYPE telem_sink_prom_scrape_errors_total counter\n"
	    "telem_sink_prom_scrape_errors_total %llu\n"
	    "# HELP telem_sink_prom_scrapes_total Scrapes of /metrics answered.\n"
	    "# TYPE telem_sink_prom_scrapes_total counter\n"
	    "telem_sink_prom_scrapes_total %llu\n"
	    "# HELP telem_sink_prom_series_dropped_total Series left out: a "
	    "name or label the mapping cannot show.\n"
	    "# TYPE telem_sink_prom_series_dropped_total counter\n"
	    "telem_sink_prom_series_dropped_total %llu\n",
	    (unsigned long long)s->reports,
	    (unsigned long long)s->reports_broken,
	    (unsigned long long)s->scrape_errors,
	    (unsigned long long)s->scrapes,
	    (unsigned long long)s->series_dropped);
	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}
