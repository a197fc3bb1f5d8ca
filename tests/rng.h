/* rng.h - the tests' random numbers: xorshift64 on a state of the test's
 * own, the same sequence in every run (bench/rng.h is the benchmarks'). */
#ifndef TELEM_TESTS_RNG_H
#define TELEM_TESTS_RNG_H

#include <stdint.h>

/* Advance *s (never 0) and return its new value. */
static inline uint64_t
xorshift64(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

#endif
