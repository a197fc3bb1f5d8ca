/* report.h - report lines to stdout, gathered into writes of at most
 * PIPE_BUF bytes that always end on a line boundary, so lines of two
 * egresses sharing the supervisor's stdout never interleave mid-line. */
#ifndef TELEM_REPORT_H
#define TELEM_REPORT_H

#include <stddef.h>

#define REPORT_BUF 4096 /* PIPE_BUF on Linux: writes up to it are atomic */

struct report {
	char buf[REPORT_BUF];
	size_t len;
	int failed;  /* stdout failed once (logged); later lines are dropped */
};

/* Append printf-formatted text forming one whole line (with its '\n');
 * writes out what is gathered first when the line would not fit. */
void report_printf(struct report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Write out everything gathered. A failing stdout is logged once. */
void report_flush(struct report *r);

#endif
