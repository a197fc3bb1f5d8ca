/* pipeline_impl.h - what the files of the pipeline module share with
 * each other and with nobody else. */
#ifndef TELEM_PIPELINE_IMPL_H
#define TELEM_PIPELINE_IMPL_H

#include <stdarg.h>

#include "supervisor/pipeline.h"

struct pipeline_err {
	int line;                   /* 0: no error yet */
	char msg[PIPELINE_ERR_MAX];
};

/* pipeline_graph.c */
/* Record an error at line (1 if line < 1) unless one is recorded already. */
void pipeline_fail(struct pipeline_err *e, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void pipeline_vfail(struct pipeline_err *e, int line, const char *fmt,
    va_list ap) __attribute__((format(printf, 3, 0)));
/* The checks across stages of a pipeline whose sections and keys were
 * read: outs[i] is stage i's out value (or NULL), split here; last_line
 * is the file's last line (for an empty pipeline). Sets out, nout,
 * in_queue, level and the start order. 0, or -1 with *e set. */
int pipeline_graph(struct pipeline *p, char *const *outs, int last_line,
    struct pipeline_err *e);

#endif
