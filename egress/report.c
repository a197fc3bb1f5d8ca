/* report.c - line-atomic writes of an egress's report to stdout. */
#include "egress/report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "stats.h"

void
report_flush(struct report *r)
{
	size_t off = 0;
	while (off < r->len) {
		ssize_t w = write(STDOUT_FILENO, r->buf + off, r->len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1) {
			/* The lines not written whole are gone; the next
			 * report tries again (a reader may be back, the disk
			 * may have room). */
			int e = errno;
			uint64_t lines = 0;
			for (size_t i = off; i < r->len; i++)
				lines += r->buf[i] == '\n';
			if (r->dropped != NULL)
				stats_add(r->dropped, lines);
			long long n = log_limit_pass(&r->fail_log, REPORT_LOG_MS);
			char more[64];
			if (n >= 0)
				log_warnx("write report to stdout: %s: %llu lines dropped, "
				    "counted in sink_dropped%s", strerror(e),
				    (unsigned long long)lines, log_more(more, sizeof(more),
				    n, "failed writes since the last line"));
			break;
		}
		off += (size_t)w;
	}
	r->len = 0;
}

void
report_printf(struct report *r, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1; /* cannot happen: names are <= 255 bytes */
	if (r->len + (size_t)n > sizeof(r->buf))
		report_flush(r);
	for (int i = 0; i < n; i++)
		r->buf[r->len++] = line[i];
}
