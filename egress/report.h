/* report.h - report lines to stdout, gathered into writes of at most
 * PIPE_BUF bytes that always end on a line boundary, so lines of two
 * egresses sharing the supervisor's stdout never interleave mid-line. */
#ifndef TELEM_REPORT_H
#define TELEM_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define REPORT_BUF 4096 /* PIPE_BUF on Linux: writes up to it are atomic */
#define REPORT_LOG_MS 10000 /* a failing stdout is said once in this */

struct report {
	char buf[REPORT_BUF];
	size_t len;
	/* Lines a failing stdout did not take are added here (the stage's
	 * sink_dropped, docs/design.md §8); NULL: they are only said. */
	_Atomic uint64_t *dropped;
	struct log_limit fail_log;
};

/* Append printf-formatted text forming one whole line (with its '\n');
 * writes out what is gathered first when the line would not fit. */
void report_printf(struct report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Write out everything gathered. When stdout fails (a closed pipe, a full
 * disk), the lines not written are dropped, counted in *dropped and said
 * at most once every REPORT_LOG_MS; the next write tries stdout again. */
void report_flush(struct report *r);

#endif
