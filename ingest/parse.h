/* parse.h - the ingest stage's datagram parser (docs/design.md §9).
 *
 * A datagram holds `name value` lines separated by '\n'; each line is judged
 * alone. Parsing happens in place: nothing is allocated or copied. */
#ifndef TELEM_PARSE_H
#define TELEM_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* Called for each accepted line. name points into the datagram, not
 * NUL-terminated, and is valid only while the datagram is. */
typedef void parse_fn(void *ctx, const char *name, size_t name_len,
    uint32_t value);

/* Parse one datagram of len bytes (any bytes at all; buf may be NULL only
 * when len is 0). Lines are separated by '\n'; a trailing '\n' or "\r\n"
 * ends the last line and adds no empty line. Calls fn for every accepted
 * line, in order, and returns the number of rejected lines; an empty
 * datagram counts as one rejected line. Never fails otherwise. */
size_t parse_datagram(const char *buf, size_t len, parse_fn *fn, void *ctx);

/* Called by parse_encode when an accepted line's record does not fit in
 * w: make room (send w's records and reset it) and return 0, or return
 * -1 to give up. */
typedef int parse_full_fn(void *ctx, struct wire_writer *w);

/* parse_datagram, with every accepted line appended to w as the
 * WIRE_TELEMETRY record wire_put writes for it (name, value), in the same
 * pass: no call per line. When a record does not fit, full(ctx, w) is
 * called and the record put again. Returns the rejected lines (as
 * parse_datagram does), or -1 when full failed or left no room. */
long parse_encode(const char *buf, size_t len, struct wire_writer *w,
    parse_full_fn *full, void *ctx);

/* Judge one line of len bytes, without its '\n'; one final '\r' is allowed
 * and ignored. A line is two fields separated by spaces or tabs, leading and
 * trailing spaces or tabs allowed: a name that passes wire_name_ok and a
 * value of plain decimal digits (leading zeros allowed) <= 4294967295.
 * Returns 0 and fills *name (pointing into line), *name_len and *value, or
 * returns -1 and leaves them unchanged. */
int parse_line(const char *line, size_t len, const char **name,
    size_t *name_len, uint32_t *value);

/* Why parse_line rejects a line, in words for a log line ("no value",
 * "value is not a whole number 0..4294967295", ...), or NULL if it accepts
 * it. Slower than parse_line; for the rate-limited log only. */
const char *parse_line_why(const char *line, size_t len);

/* The first line of a datagram that parse_datagram rejects: returns 1 and
 * sets *line, *line_len (without its '\n') and *why; 0 if every line
 * passes. An empty datagram is one empty line. */
int parse_first_bad(const char *buf, size_t len, const char **line,
    size_t *line_len, const char **why);

#endif
