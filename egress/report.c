/* report.c - line-atomic writes of an egress's report to stdout. */
#include "egress/report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "log.h"

void
report_flush(struct report *r)
{
	size_t off = 0;
	while (off < r->len && !r->failed) {
		ssize_t w = write(STDOUT_FILENO, r->buf + off, r->len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1) {
			log_warn("write report to stdout");
			r->failed = 1;
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
