/* cma.h - the cumulative moving average of the cma egress, one per name,
 * and the seed's way of printing it (Rust's `{}` for f64,
 * docs/design.md §4). */
#ifndef TELEM_CMA_H
#define TELEM_CMA_H

#include <stddef.h>
#include <stdint.h>

/* A zeroed struct cma is an empty average. */
struct cma {
	double mean;
	uint64_t n;
};

/* Count x in: n += 1, then mean += (x - mean) / n, in double as the seed
 * does (the first value becomes the mean exactly). */
void cma_add(struct cma *c, uint32_t x);
/* Write v into buf as the shortest decimal that reads back (strtod) to the
 * same double, never with an exponent: 1500, 1666.6666666666667, 0.1,
 * -0, NaN, inf. NUL-terminated. Returns the length without the NUL, or -1
 * (buf unspecified) when cap is too small; 330 bytes always suffice. */
int cma_format(double v, char *buf, size_t cap);

struct stage;
/* The cma egress's on_msg hook (st->ctx is its struct egress, whose
 * payloads are struct cma): every telemetry record of the checked message
 * msg[0..len) counted into its name's average, any other record handed
 * to stage_take_record. Returns 1 after a Stop record, else 0. */
int cma_msg(struct stage *st, const void *msg, size_t len);

#endif
