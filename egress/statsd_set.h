/* statsd_set.h - one statsd set's distinct members for one flush, for
 * statsd_agg.c: a small open-addressing table over the members' bytes, so
 * that an empty or one-member set costs a few dozen bytes, not an arena. */
#ifndef TELEM_STATSD_SET_H
#define TELEM_STATSD_SET_H

#include <stddef.h>
#include <stdint.h>

struct statsd_set {
	uint32_t *slot;   /* offset + 1 into mem of a member, 0: empty */
	uint32_t *tag;    /* the member's hash, to skip most compares */
	size_t mask;      /* slots - 1, or 0 with no table yet */
	size_t n;         /* distinct members */
	unsigned char *mem; /* members as [len][bytes], len 1..255 */
	size_t used, cap;
};

/* Add member m[0..len), 1 <= len <= 255. Returns 1 when it is new, 0 when
 * it was there, -1 with errno ENOMEM (s unchanged) or EINVAL (bad len). */
int statsd_set_add(struct statsd_set *s, const char *m, size_t len);
/* Forget every member and free what s holds; s is then an empty set. */
void statsd_set_clear(struct statsd_set *s);

#endif
