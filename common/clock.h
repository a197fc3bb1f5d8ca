/* clock.h - monotonic time in milliseconds and deadlines for timed waits. */
#ifndef TELEM_CLOCK_H
#define TELEM_CLOCK_H

#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC; never fails on Linux. */
long long clock_ms(void);
/* Seconds on CLOCK_MONOTONIC, to the nanosecond (for benchmarks). */
double clock_s(void);
/* An absolute CLOCK_REALTIME timespec `ms` from now (for mq_timed*). */
struct timespec clock_realtime_after(long ms);
/* The same on CLOCK_MONOTONIC (for condition variables set to it). */
struct timespec clock_monotonic_after(long ms);

#endif
