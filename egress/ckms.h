/* ckms.h - the CKMS quantile sketch of docs/design.md §11, one per name in the
 * ckms egress. It answers exactly as the seed's sketch does, but inserts in
 * batches so that millions of values per second go in. */
#ifndef TELEM_CKMS_H
#define TELEM_CKMS_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"

struct ckms;

/* A new empty sketch with error eps, which must lie in (0, 0.5): the caller
 * validates it. Returns NULL with errno ENOMEM; free it with ckms_free. */
struct ckms *ckms_new(double eps);
/* Free s and everything it holds; NULL is allowed. */
void ckms_free(struct ckms *s);
/* Add one value. Usually only buffers it; every floor(1/(2eps)) values the
 * buffer is merged in and the sketch compressed. There is no error return:
 * if memory runs out while the sample array grows, the process exits 111
 * (EXIT_TEMPORARY) through fatal(), as the egress does on ENOMEM. */
void ckms_insert(struct ckms *s, uint32_t v);
/* The value at quantile q (0 <= q <= 1) over every value inserted so far;
 * s must hold at least one value. Merges a partly filled buffer first (so s
 * is not const); the answer is the same as with one-at-a-time insertion.
 * Exits 111 on ENOMEM like ckms_insert. */
uint32_t ckms_query(struct ckms *s, double q);
/* The number of values inserted. */
uint64_t ckms_count(const struct ckms *s);
/* The number of stored samples after merging any buffered values (for
 * memory figures and tests). Exits 111 on ENOMEM like ckms_insert. */
size_t ckms_samples(struct ckms *s);
/* Bytes a stored sample takes: 8 while g and Δ fit in 16 bits, 12 from
 * the first merge after which they might not (f(n) > 65535: n above about
 * 3.27M values for eps 0.01). For memory figures and tests. */
size_t ckms_sample_bytes(const struct ckms *s);
/* Switch s to 12-byte samples now, as it does by itself once f(n) passes
 * 65535; no answer changes. For tests, which compare a sketch widened
 * early with one that is not. Exits 111 on ENOMEM like ckms_insert. */
void ckms_widen(struct ckms *s);
/* For tests: the integer P with which the compress walk tests c <= f(r)
 * as c * P <= r while samples are 8 bytes (exact there), or 0 when eps
 * has none and the walk tests in doubles. */
uint64_t ckms_integer_period(double eps);
/* For tests: sort n <= 512 buffered keys as a merge does, ascending. A key
 * is v << 32 | (0x7fffffff - j) << 1 | b, where j is its index on input
 * (keys come in arrival order) and b a flag bit; n > 512 is refused (no
 * change). */
void ckms_sort_keys(uint64_t *keys, size_t n);
/* For tests: sample i (< ckms_samples(s)) after merging any buffered
 * values, as its v, g and Δ. Exits 111 on ENOMEM like ckms_insert. */
void ckms_sample(struct ckms *s, size_t i, uint32_t *v, uint32_t *g,
    uint32_t *delta);
/* Append s, whole (its buffered values too), to a state file's body. */
void ckms_save(const struct ckms *s, struct state_writer *w);
/* A sketch of error eps read from r as ckms_save wrote it (with the same
 * eps), or NULL with *why saying what is wrong (r is then left anywhere).
 * It answers every query and takes every insert as the saved one would.
 * Everything it indexes by is checked, so any bytes are safe to give it. */
struct ckms *ckms_load(double eps, struct state_reader *r, const char **why);

#endif
