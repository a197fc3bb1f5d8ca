/* cputime.h - the in-process benchmarks' clock: this process's CPU time in
 * seconds (CLOCK_PROCESS_CPUTIME_ID), so that a busy machine slows a round
 * without charging it. Included by one bench file each. */
#ifndef TELEM_BENCH_CPUTIME_H
#define TELEM_BENCH_CPUTIME_H

#include <time.h>

static inline double
cpu_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#endif
