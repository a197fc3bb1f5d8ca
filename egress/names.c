/* names.c - the per-name table of the egresses: open addressing with
 * linear probing over a wyhash-style hash; names and payloads live in an
 * arena so payload pointers stay put as the table grows. */
#include "egress/names.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 255
#define CHUNK_SIZE   (64 * 1024)
#define SLOTS_MIN    16
#define ALIGN        (_Alignof(max_align_t))

/* A slot of the hash index: the upper half of the hash, to skip most
 * mismatches without touching the entry, and entry index + 1 (0: empty).
 * Tried and left out: 16-byte slots holding the arena block's address
 * and the name's length, so that a lookup skips ents[]. In the pipeline
 * (bench/stages.sh, three interleaved pairs) the egresses cost the same
 * at 100 names, and cma 0.218-0.230 against 0.200-0.218 CPU-s per million
 * events at 10 000 names, where the index doubles to 512 KiB. */
struct names_slot {
	uint32_t tag;
	uint32_t id;
};

/* One name: its arena block holds the payload, then the name bytes. */
struct names_entry {
	unsigned char *mem;
	size_t len;
};

struct names_chunk {
	struct names_chunk *next;
	size_t used, size;
	max_align_t data[]; /* aligned for any payload */
};

struct names {
	size_t payload_size;
	size_t max;
	size_t count;
	struct names_slot *slots;
	size_t mask;              /* slots - 1; slots is a power of two */
	struct names_entry *ents; /* by entry index, in order of creation */
	uint32_t *sorted;         /* entry indexes; the first nsorted sorted */
	uint32_t *scratch;        /* for merging new names into `sorted` */
	size_t nsorted, ecap;
	struct names_chunk *chunks;
};

/* Our own wyhash-style hash: 8-byte words folded by a 64x64->128-bit
 * multiply, the length folded in so zero padding cannot collide. A tail
 * (or a name) under 8 bytes is read as wyhash does, with fixed-size loads
 * that may overlap, so a lookup makes no call to memcpy. */
static inline uint64_t
fold(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t
load32(const char *p)
{
	uint32_t w;
	memcpy(&w, p, 4);
	return w;
}

static inline uint64_t
load64(const char *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

/* The last len (0..7) bytes before end, as one word. */
static inline uint64_t
tail_word(const char *end, size_t len)
{
	const unsigned char *p = (const unsigned char *)end - len;
	if (len >= 4)
		return load32((const char *)p) << 32 | load32(end - 4);
	if (len > 0)
		return (uint64_t)p[0] << 16 | (uint64_t)p[len >> 1] << 8 | p[len - 1];
	return 0;
}

static inline uint64_t
hash(const char *p, size_t len)
{
	const uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL;
	const uint64_t k2 = 0x8ebc6af09c88c6e3ULL;
	uint64_t h = fold(len ^ k0, k1);
	size_t n = len;
	while (n >= 8) {
		h = fold(h ^ load64(p) ^ k2, k1);
		p += 8;
		n -= 8;
	}
	return fold(h ^ tail_word(p + n, n) ^ k0, k2 ^ ((uint64_t)len << 56));
}

/* a[0..len) == b[0..len), without a call or a loop over bytes for the
 * short names we expect: under 8 bytes, tail_word holds every byte of a
 * name (for a given length it is one-to-one), so one word compare does;
 * longer names compare 8-byte words, the last one overlapping. A loop
 * over 2..3 bytes was mispredicted whenever the length changed
 * (bench/readpath.c, cma). */
static inline int
same_bytes(const unsigned char *a, const char *b, size_t len)
{
	const char *ac = (const char *)a;
	if (len < 8)
		return tail_word(ac + len, len) == tail_word(b + len, len);
	for (size_t i = 0; i + 8 < len; i += 8)
		if (load64(ac + i) != load64(b + i))
			return 0;
	return load64(ac + len - 8) == load64(b + len - 8);
}

struct names *
names_new(size_t payload_size, size_t max_names)
{
	struct names *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->slots = calloc(SLOTS_MIN, sizeof(*t->slots));
	if (t->slots == NULL) {
		free(t);
		return NULL;
	}
	t->mask = SLOTS_MIN - 1;
	t->payload_size = payload_size;
	/* entry indexes are 32-bit */
	t->max = max_names < UINT32_MAX - 1 ? max_names : UINT32_MAX - 1;
	return t;
}

void
names_free(struct names *t, void (*fini)(void *payload))
{
	if (t == NULL)
		return;
	if (fini != NULL)
		for (size_t i = 0; i < t->count; i++)
			fini(t->ents[i].mem);
	struct names_chunk *c = t->chunks;
	while (c != NULL) {
		struct names_chunk *next = c->next;
		free(c);
		c = next;
	}
	free(t->slots);
	free(t->ents);
	free(t->sorted);
	free(t->scratch);
	free(t);
}

/* size bytes aligned for any type, from the arena; NULL on ENOMEM. */
static unsigned char *
arena_alloc(struct names *t, size_t size)
{
	size = (size + ALIGN - 1) / ALIGN * ALIGN;
	struct names_chunk *c = t->chunks;
	if (c == NULL || c->size - c->used < size) {
		size_t want = size > CHUNK_SIZE ? size : CHUNK_SIZE;
		c = malloc(sizeof(*c) + want);
		if (c == NULL)
			return NULL;
		c->size = want;
		c->used = 0;
		c->next = t->chunks;
		t->chunks = c;
	}
	unsigned char *p = (unsigned char *)c->data + c->used;
	c->used += size;
	return p;
}

/* Room for one more entry in ents, sorted and scratch; -1 on ENOMEM with
 * nothing lost (arrays already grown stay valid, just larger). */
static int
grow_entries(struct names *t)
{
	if (t->count < t->ecap)
		return 0;
	size_t cap = t->ecap ? t->ecap * 2 : 16;
	struct names_entry *e = realloc(t->ents, cap * sizeof(*e));
	if (e == NULL)
		return -1;
	t->ents = e;
	uint32_t *s = realloc(t->sorted, cap * sizeof(*s));
	if (s == NULL)
		return -1;
	t->sorted = s;
	s = realloc(t->scratch, cap * sizeof(*s));
	if (s == NULL)
		return -1;
	t->scratch = s;
	t->ecap = cap;
	return 0;
}

/* Double the hash index once it would be more than 1/8 full while it is
 * small (up to SLOTS_SPARSE slots: 32 KiB, 512 names), more than half
 * full past that. A lookup whose first slot holds another name's tag is
 * a mispredicted branch; at the default benchmark's 100 names a half-full
 * index (256 slots) had that on 44 % of the lookups (callgrind's branch
 * simulation of bench/readpath.c), 1/8 (1024 slots) on 6 %. */
#define SLOTS_SPARSE 4096

static int
grow_slots(struct names *t)
{
	size_t n = t->mask + 1;
	if ((t->count + 1) * (n <= SLOTS_SPARSE / 2 ? 8 : 2) <= n)
		return 0;
	size_t n2 = n * 2;
	struct names_slot *s = calloc(n2, sizeof(*s));
	if (s == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct names_slot sl = t->slots[i];
		if (sl.id == 0)
			continue;
		const struct names_entry *e = &t->ents[sl.id - 1];
		uint64_t h = hash((const char *)e->mem + t->payload_size,
		    e->len);
		size_t j = h & (n2 - 1);
		while (s[j].id != 0)
			j = (j + 1) & (n2 - 1);
		s[j] = sl;
	}
	free(t->slots);
	t->slots = s;
	t->mask = n2 - 1;
	return 0;
}

void *
names_get(struct names *t, const char *name, size_t len, int *created)
{
	if (created != NULL)
		*created = 0;
	if (len == 0 || len > NAME_MAX_LEN) {
		errno = EINVAL;
		return NULL;
	}
	uint64_t h = hash(name, len);
	uint32_t tag = (uint32_t)(h >> 32);
	size_t i = h & t->mask;
	for (; t->slots[i].id != 0; i = (i + 1) & t->mask) {
		if (t->slots[i].tag != tag)
			continue;
		const struct names_entry *e = &t->ents[t->slots[i].id - 1];
		if (e->len == len && same_bytes(e->mem + t->payload_size, name, len))
			return e->mem;
	}

	if (t->count >= t->max) {
		errno = ENOSPC;
		return NULL;
	}
	unsigned char *mem;
	if (grow_entries(t) == -1 || grow_slots(t) == -1 ||
	    (mem = arena_alloc(t, t->payload_size + len)) == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	memset(mem, 0, t->payload_size);
	memcpy(mem + t->payload_size, name, len);
	i = h & t->mask; /* the index may have grown */
	while (t->slots[i].id != 0)
		i = (i + 1) & t->mask;
	t->ents[t->count].mem = mem;
	t->ents[t->count].len = len;
	t->count++;
	t->slots[i].tag = tag;
	t->slots[i].id = (uint32_t)t->count;
	if (created != NULL)
		*created = 1;
	return mem;
}

size_t
names_count(const struct names *t)
{
	return t->count;
}

static int
cmp_ids(const void *a, const void *b, void *arg)
{
	const struct names *t = arg;
	const struct names_entry *x = &t->ents[*(const uint32_t *)a];
	const struct names_entry *y = &t->ents[*(const uint32_t *)b];
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->mem + t->payload_size, y->mem + t->payload_size, n);
	if (c != 0)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

/* Sort the names added since the last walk and merge them into the
 * sorted prefix, through scratch. */
static void
update_order(struct names *t)
{
	size_t old = t->nsorted, n = t->count;
	if (old == n)
		return;
	for (size_t i = old; i < n; i++)
		t->sorted[i] = (uint32_t)i;
	qsort_r(t->sorted + old, n - old, sizeof(uint32_t), cmp_ids, t);
	size_t a = 0, b = old, o = 0;
	while (a < old && b < n) {
		if (cmp_ids(&t->sorted[b], &t->sorted[a], t) < 0)
			t->scratch[o++] = t->sorted[b++];
		else
			t->scratch[o++] = t->sorted[a++];
	}
	while (a < old)
		t->scratch[o++] = t->sorted[a++];
	while (b < n)
		t->scratch[o++] = t->sorted[b++];
	uint32_t *tmp = t->sorted;
	t->sorted = t->scratch;
	t->scratch = tmp;
	t->nsorted = n;
}

void
names_foreach_sorted(struct names *t,
    void (*fn)(void *ctx, const char *name, size_t len, void *payload),
    void *ctx)
{
	update_order(t);
	for (size_t i = 0; i < t->count; i++) {
		const struct names_entry *e = &t->ents[t->sorted[i]];
		fn(ctx, (const char *)e->mem + t->payload_size, e->len, e->mem);
	}
}
