/* cputime.h - the in-process benchmarks' clock: this process's CPU time in
 * seconds (CLOCK_PROCESS_CPUTIME_ID), so that a busy machine slows a round
 * without charging it; and the CPU seconds (user + system) a getrusage
 * reported, for children. Included by one bench file each. */
#ifndef TELEM_BENCH_CPUTIME_H
#define TELEM_BENCH_CPUTIME_H

#include <sys/resource.h>
#include <time.h>

static inline double
cpu_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline double
rusage_s(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec * 1e-6 +
	    (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec * 1e-6;
}

#endif
