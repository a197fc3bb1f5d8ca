/* names.h - the egresses' table from a name (1..255 bytes, not
 * NUL-terminated) to a fixed-size payload, with a cap on distinct names and
 * a cached walk in ascending byte order for the report. */
#ifndef TELEM_NAMES_H
#define TELEM_NAMES_H

#include <stddef.h>

struct names;

/* A new empty table whose payloads are payload_size bytes (aligned for
 * any type) and which takes at most max_names distinct names. Returns NULL
 * with errno ENOMEM. */
struct names *names_new(size_t payload_size, size_t max_names);
/* Free t (NULL is allowed), first calling fini on every payload when fini
 * is not NULL. */
void names_free(struct names *t, void (*fini)(void *payload));
/* The payload of name[0..len): the existing one (*created = 0), or a new
 * zeroed one (*created = 1); created may be NULL. A payload never moves
 * while t lives. Returns NULL, t unchanged, with errno ENOSPC when the name
 * is new and the table already holds max_names names, ENOMEM when memory
 * runs out, EINVAL when len is 0 or over 255. A known name costs a hash and
 * a probe, no allocation; new names grow the table in amortised steps. */
void *names_get(struct names *t, const char *name, size_t len, int *created);
/* The number of distinct names held. */
size_t names_count(const struct names *t);
/* Call fn(ctx, name, len, payload) for every name in ascending byte order
 * (memcmp order; a prefix sorts before the longer name). The order is
 * cached and only the names added since the last walk are sorted and
 * merged in, so a walk allocates nothing. fn must not add names. */
void names_foreach_sorted(struct names *t,
    void (*fn)(void *ctx, const char *name, size_t len, void *payload),
    void *ctx);

#endif
