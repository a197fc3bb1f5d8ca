/* statsd_set.c - a statsd set: distinct member strings, linear probing
 * over FNV-1a hashes, members packed in one growing byte array. */
#include "egress/statsd_set.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t
hash(const char *m, size_t len)
{
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)m[i]) * 1099511628211ull;
	return (uint32_t)(h ^ (h >> 32));
}

/* Slots for at least 2 * n entries, rehashing what is there. */
static int
grow_table(struct statsd_set *s)
{
	size_t slots = s->mask ? (s->mask + 1) * 2 : 8;
	uint32_t *slot = calloc(slots, sizeof(*slot));
	uint32_t *tag = malloc(slots * sizeof(*tag));
	if (slot == NULL || tag == NULL) {
		free(slot);
		free(tag);
		return -1;
	}
	for (size_t i = 0; s->mask && i <= s->mask; i++) {
		if (s->slot[i] == 0)
			continue;
		size_t j = s->tag[i] & (slots - 1);
		while (slot[j])
			j = (j + 1) & (slots - 1);
		slot[j] = s->slot[i];
		tag[j] = s->tag[i];
	}
	free(s->slot);
	free(s->tag);
	s->slot = slot;
	s->tag = tag;
	s->mask = slots - 1;
	return 0;
}

int
statsd_set_add(struct statsd_set *s, const char *m, size_t len)
{
	if (len == 0 || len > 255)
		return errno = EINVAL, -1;
	if ((s->n + 1) * 2 > s->mask + 1 && grow_table(s) < 0)
		return errno = ENOMEM, -1;
	uint32_t h = hash(m, len);
	size_t j = h & s->mask;
	for (; s->slot[j]; j = (j + 1) & s->mask) {
		const unsigned char *p = s->mem + s->slot[j] - 1;
		if (s->tag[j] == h && p[0] == len && memcmp(p + 1, m, len) == 0)
			return 0;
	}
	if (s->used + 1 + len > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		while (cap < s->used + 1 + len)
			cap *= 2;
		if (cap > UINT32_MAX)
			return errno = ENOMEM, -1;
		unsigned char *mem = realloc(s->mem, cap);
		if (mem == NULL)
			return errno = ENOMEM, -1;
		s->mem = mem;
		s->cap = cap;
	}
	s->mem[s->used] = (unsigned char)len;
	memcpy(s->mem + s->used + 1, m, len);
	s->slot[j] = (uint32_t)s->used + 1;
	s->tag[j] = h;
	s->used += 1 + len;
	s->n++;
	return 1;
}

void
statsd_set_clear(struct statsd_set *s)
{
	free(s->slot);
	free(s->tag);
	free(s->mem);
	memset(s, 0, sizeof(*s));
}
