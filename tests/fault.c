/* fault.c - see fault.h. */
#include "fault.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

long long
fault_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
fault_nap(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

long long
fault_wait_stat(const struct pl *p, const char *stage, const char *field,
    long long want)
{
	long long v = -1;
	for (int i = 0; i < 1000 && (v = pl_stat(p, stage, field)) != want; i++)
		fault_nap(10);
	return v;
}

int
fault_stage_up(const struct pl *p, const char *stage, pid_t pid)
{
	char out[8192], key[64];
	snprintf(key, sizeof(key), "stage=%s pid=%d state=up", stage, (int)pid);
	return pl_ctl(p, out, sizeof(out), "status") == 0 && strstr(out, key) != NULL;
}

pid_t
fault_wait_restarted(const struct pl *p, const char *stage, pid_t old)
{
	for (int i = 0; i < 1000; i++, fault_nap(10)) {
		pid_t pid = pl_stage_pid(p, stage);
		if (pid > 0 && pid != old && fault_stage_up(p, stage, pid))
			return pid;
	}
	return -1;
}

struct chan *
fault_queue(const struct pl *p, const char *queue)
{
	char obj[CHAN_NAME_MAX];
	enum chan_kind kind;
	if (chan_kind_parse(p->transport, &kind) == -1 ||
	    chan_objname(obj, sizeof(obj), p->instance, queue) == -1)
		return NULL;
	return chan_open(kind, obj, CHAN_WRITE);
}
