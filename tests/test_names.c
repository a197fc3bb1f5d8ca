/* test_names.c - the egresses' name table (egress/names.c): lookups,
 * growth with stable payloads, the cap, and the sorted report order. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/names.h"
#include "tests/rng.h"

struct pay {
	size_t idx;
	char pad[20]; /* an odd size, to exercise the arena's alignment */
};

static struct names *
new_table(size_t max)
{
	struct names *t = names_new(sizeof(struct pay), max);
	cr_assert_not_null(t);
	return t;
}

Test(names, insert_and_lookup)
{
	struct names *t = new_table(100);
	int created = -1;
	struct pay *a = names_get(t, "alpha", 5, &created);
	cr_assert_not_null(a);
	cr_expect_eq(created, 1);
	cr_expect_eq(a->idx, 0, "a new payload is zeroed");
	a->idx = 42;
	struct pay *b = names_get(t, "beta", 4, &created);
	cr_assert_not_null(b);
	cr_expect_eq(created, 1);
	cr_expect_neq(a, b);
	cr_expect_eq(names_get(t, "alpha", 5, &created), a);
	cr_expect_eq(created, 0);
	cr_expect_eq(a->idx, 42);
	/* not NUL-terminated: a slice of a longer buffer */
	cr_expect_eq(names_get(t, "alphabet", 5, &created), a);
	cr_expect_eq(created, 0);
	cr_expect_neq(names_get(t, "alphabet", 8, &created), a);
	cr_expect_eq(created, 1);
	/* bytes, not strings: an embedded NUL makes another name */
	cr_expect_neq(names_get(t, "beta\0", 5, NULL), b);
	cr_expect_eq(names_count(t), 4);
	names_free(t, NULL);
}

/* Names that share their first bytes, or whose short forms read alike
 * ("a" and "aaa" in tail_word), at every length 1..40 around the 8-byte
 * words names.c compares: each is its own entry, found again after all
 * are in. */
Test(names, alike_names_apart)
{
	struct names *t = new_table(1000);
	struct pay *p[2][41];
	char a[41], b[41];
	memset(a, 'a', sizeof(a));
	memcpy(b, a, sizeof(b));
	for (size_t len = 1; len <= 40; len++) {
		b[len - 1] = 'b';   /* differs from a's only in its last byte */
		int created;
		p[0][len] = names_get(t, a, len, &created);
		cr_assert_not_null(p[0][len]);
		cr_expect_eq(created, 1, "a x %zu", len);
		p[0][len]->idx = len;
		p[1][len] = names_get(t, b, len, &created);
		cr_assert_not_null(p[1][len]);
		cr_expect_eq(created, 1, "b at %zu", len);
		p[1][len]->idx = 100 + len;
		b[len - 1] = 'a';
	}
	cr_expect_eq(names_count(t), 80);
	for (size_t len = 1; len <= 40; len++) {
		cr_expect_eq(names_get(t, a, len, NULL), p[0][len], "a x %zu", len);
		cr_expect_eq(p[0][len]->idx, len);
		b[len - 1] = 'b';
		cr_expect_eq(names_get(t, b, len, NULL), p[1][len], "b at %zu", len);
		cr_expect_eq(p[1][len]->idx, 100 + len);
		b[len - 1] = 'a';
	}
	names_free(t, NULL);
}

Test(names, bad_lengths)
{
	struct names *t = new_table(10);
	char big[256];
	memset(big, 'x', sizeof(big));
	errno = 0;
	cr_expect_null(names_get(t, big, 0, NULL));
	cr_expect_eq(errno, EINVAL);
	errno = 0;
	cr_expect_null(names_get(t, big, 256, NULL));
	cr_expect_eq(errno, EINVAL);
	cr_expect_not_null(names_get(t, big, 255, NULL));
	cr_expect_eq(names_count(t), 1);
	names_free(t, NULL);
}

Test(names, growth_keeps_payloads)
{
	enum { N = 200000 };
	struct names *t = new_table(N);
	struct pay **ptr = malloc(N * sizeof(*ptr));
	cr_assert_not_null(ptr);
	char name[32];
	for (size_t i = 0; i < N; i++) {
		int len = snprintf(name, sizeof(name), "host%zu.cpu", i);
		int created;
		ptr[i] = names_get(t, name, (size_t)len, &created);
		cr_assert_not_null(ptr[i]);
		cr_assert_eq(created, 1, "%s", name);
		cr_assert_eq(ptr[i]->idx, 0);
		cr_assert_eq((uintptr_t)ptr[i] % _Alignof(max_align_t), 0);
		ptr[i]->idx = i;
	}
	cr_expect_eq(names_count(t), N);
	for (size_t i = 0; i < N; i++) {
		int len = snprintf(name, sizeof(name), "host%zu.cpu", i);
		int created;
		struct pay *p = names_get(t, name, (size_t)len, &created);
		cr_assert_eq(p, ptr[i], "%s moved", name);
		cr_assert_eq(created, 0);
		cr_assert_eq(p->idx, i);
	}
	free(ptr);
	names_free(t, NULL);
}

Test(names, cap_gives_enospc)
{
	struct names *t = new_table(3);
	cr_assert_not_null(names_get(t, "a", 1, NULL));
	cr_assert_not_null(names_get(t, "b", 1, NULL));
	cr_assert_not_null(names_get(t, "c", 1, NULL));
	errno = 0;
	int created = -1;
	cr_expect_null(names_get(t, "d", 1, &created));
	cr_expect_eq(errno, ENOSPC);
	cr_expect_eq(created, 0);
	cr_expect_eq(names_count(t), 3);
	cr_expect_not_null(names_get(t, "b", 1, NULL),
	    "known names still work at the cap");
	names_free(t, NULL);

	t = new_table(0);
	errno = 0;
	cr_expect_null(names_get(t, "a", 1, NULL));
	cr_expect_eq(errno, ENOSPC);
	names_free(t, NULL);
}

static size_t finis;

static void
count_fini(void *payload)
{
	struct pay *p = payload;
	cr_expect_eq(p->idx, 7);
	finis++;
}

Test(names, free_calls_fini)
{
	struct names *t = new_table(100);
	for (int i = 0; i < 50; i++) {
		char name[8];
		int len = snprintf(name, sizeof(name), "n%d", i);
		struct pay *p = names_get(t, name, (size_t)len, NULL);
		cr_assert_not_null(p);
		p->idx = 7;
	}
	finis = 0;
	names_free(t, count_fini);
	cr_expect_eq(finis, 50);
	names_free(NULL, NULL);
}

/* ---- sorted order ------------------------------------------------------ */

struct walk {
	char names[4096][24];
	size_t lens[4096];
	size_t n;
};

static void
record(void *ctx, const char *name, size_t len, void *payload)
{
	struct walk *w = ctx;
	cr_assert_lt(w->n, 4096);
	cr_assert_leq(len, 24);
	memcpy(w->names[w->n], name, len);
	w->lens[w->n] = len;
	w->n++;
	(void)payload;
}

static int
cmp_bytes(const void *a, const void *b, size_t la, size_t lb)
{
	int c = memcmp(a, b, la < lb ? la : lb);
	return c ? c : (la > lb) - (la < lb);
}

Test(names, sorted_fixed_table)
{
	/* in the order they must come out */
	static const char *const want[] = {
		"0", "A", "Z", "a", "aa", "ab", "abc", "abd", "a\x80", "b",
		"b.x", "\x7f", "\x80", "\x80\x01", "\xfe", "\xff", "\xff\xff",
	};
	size_t n = sizeof(want) / sizeof(want[0]);
	struct names *t = new_table(100);
	for (size_t i = n; i-- > 0;)        /* reversed */
		cr_assert_not_null(names_get(t, want[i], strlen(want[i]),
		    NULL));
	static struct walk w;
	w.n = 0;
	names_foreach_sorted(t, record, &w);
	cr_assert_eq(w.n, n);
	for (size_t i = 0; i < n; i++)
		cr_expect(w.lens[i] == strlen(want[i]) &&
		    memcmp(w.names[i], want[i], w.lens[i]) == 0,
		    "position %zu: got %.*s, want %s", i, (int)w.lens[i],
		    w.names[i], want[i]);
	names_free(t, NULL);
}

static char all[4000][24];
static size_t all_lens[4000];

static int
cmp_all(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return cmp_bytes(all[x], all[y], all_lens[x], all_lens[y]);
}

Test(names, sorted_random_rounds)
{
	/* names added between walks are merged into the cached order */
	static struct walk w;
	static size_t ref[4000];
	struct names *t = new_table(4000);
	uint64_t s = 0x853c49e6748fea9bULL;
	size_t n = 0;
	for (int round = 0; round < 6; round++) {
		size_t add = round == 0 ? 1 : round == 5 ? 0 : 1000;
		for (size_t k = 0; k < add; k++) {
			xorshift64(&s);
			size_t len = 1 + (s >> 59) % 6;  /* short: many prefixes */
			for (size_t j = 0; j < len; j++)
				all[n][j] = "ab\x80\xff"[(s >> (8 * j)) & 3];
			int created;
			cr_assert_not_null(names_get(t, all[n], len, &created));
			if (created)
				all_lens[n++] = len;
		}
		cr_assert_eq(names_count(t), n);
		for (size_t i = 0; i < n; i++)
			ref[i] = i;
		qsort(ref, n, sizeof(ref[0]), cmp_all);
		w.n = 0;
		names_foreach_sorted(t, record, &w);
		cr_assert_eq(w.n, n);
		for (size_t i = 0; i < n; i++)
			cr_assert(w.lens[i] == all_lens[ref[i]] &&
			    memcmp(w.names[i], all[ref[i]], w.lens[i]) == 0,
			    "round %d: position %zu differs", round, i);
	}
	names_free(t, NULL);
}
