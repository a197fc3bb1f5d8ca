/* rng.h - the benchmarks' random numbers: xorshift64, the same sequence in
 * every run, so that runs compare. Included by one bench file each. */
#ifndef TELEM_BENCH_RNG_H
#define TELEM_BENCH_RNG_H

#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static inline uint32_t
rng32(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 32);
}

#endif
