/* state.h - an egress's state file (docs/design.md §13): a header that
 * says what the file is and covers, then a body the egress writes and
 * reads field by field. A save goes to PATH.tmp, is synced and renamed
 * over PATH, so PATH is always a whole save; a load checks everything
 * before anything of the body is used, and a file that is damaged,
 * truncated or foreign is set aside as PATH.bad. */
#ifndef TELEM_STATE_H
#define TELEM_STATE_H

#include <stddef.h>
#include <stdint.h>

#define STATE_VERSION 1
#define STATE_BUF 65536       /* a multiple of 8: the sum goes by words */

/* Which program wrote the body: a program reads only its own kind. */
enum state_kind { STATE_CKMS = 1, STATE_CMA = 2, STATE_STATSD = 3 };

/* What a file holds besides the body. `param` must match exactly (the
 * ckms error bound; 0 for cma); `run` and `committed` are the books the
 * slot's counters are (stage_books_id: the supervisor's run and the
 * stage's definition in it) and the slot's `out` once this save is
 * booked. */
struct state_info {
	uint32_t kind;
	double param;
	uint64_t run;
	uint64_t committed;
};

struct state_writer {
	int fd;
	int err;                  /* a write failed: errno, or 0 */
	const char *step;         /* what failed, of tmp (state_failed) */
	const char *path;
	char tmp[4096];
	uint64_t len, sum;        /* body bytes so far and their running sum */
	size_t n;                 /* bytes waiting in buf */
	unsigned char buf[STATE_BUF];
};

/* Start a save to path (through path.tmp, created anew, 0600; a path.tmp
 * left by an earlier save is removed first). Returns 0, or -1 with errno
 * (nothing is left behind). */
int state_begin(struct state_writer *w, const char *path);
/* Append n bytes to the body. Errors are kept for state_end. */
void state_put(struct state_writer *w, const void *p, size_t n);
/* Write the header for `info`, sync, rename over the path and sync the
 * folder. Returns 0 once path holds the new save, or -1 with errno (then
 * path still holds the previous one, and the temporary is removed). */
int state_end(struct state_writer *w, const struct state_info *info);
/* Give a save up: the temporary is removed, path is untouched. */
void state_abort(struct state_writer *w);
/* After a failed state_begin or state_end: what failed, naming the file
 * it failed on ("create PATH.tmp", "rename PATH.tmp over PATH"), in buf. */
const char *state_failed(const struct state_writer *w, char *buf, size_t cap);

struct state_reader {
	unsigned char *data;      /* the whole file (malloc'd) */
	const unsigned char *p;   /* next body byte */
	size_t left;              /* body bytes not read yet */
};

/* Read path and check its header and sum against `kind` and `param`; a
 * file not owned by the effective user or writable by others is refused.
 * Returns 1 with *info and r ready at the body, 0 when there is no file
 * (r empty), or -1 with *why saying what is wrong (a damaged, truncated or
 * foreign file, or one that cannot be read): the caller then calls
 * state_reject. Free r with state_close in every case. */
int state_load(const char *path, uint32_t kind, double param,
    struct state_info *info, struct state_reader *r, const char **why);
/* Take n bytes of the body into p. Returns 0, or -1 (p untouched) when
 * fewer are left. */
int state_get(struct state_reader *r, void *p, size_t n);
/* Point at the next n bytes of the body and skip them; NULL when fewer are
 * left. */
const void *state_take(struct state_reader *r, size_t n);
void state_close(struct state_reader *r);
/* One log line saying why path is not used, and path renamed to path.bad
 * (replacing an older one) so that the next save starts afresh. */
void state_reject(const char *path, const char *why);
/* Remove path and path.tmp (a path.bad is kept). 0, or -1 with errno if
 * path existed and could not be removed. */
int state_remove(const char *path);

#endif
