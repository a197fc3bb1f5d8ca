/* clock.c - time helpers used by the channel timeouts and the supervisor. */
#include "clock.h"

long long
clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double
clock_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static struct timespec
after(clockid_t id, long ms)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

struct timespec
clock_realtime_after(long ms)
{
	return after(CLOCK_REALTIME, ms);
}

struct timespec
clock_monotonic_after(long ms)
{
	return after(CLOCK_MONOTONIC, ms);
}
