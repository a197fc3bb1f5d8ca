/* fault.h - helpers the fault-injection tests share (e2e_faults.c,
 * e2e_input.c): bounded waits on `telemctl status`, and a write handle on
 * a stage's in-queue of the instance's transport. */
#ifndef TELEM_TEST_FAULT_H
#define TELEM_TEST_FAULT_H

#include <sys/types.h>

#include "chan.h"
#include "harness.h"

long long fault_ms(void);        /* CLOCK_MONOTONIC, milliseconds */
void fault_nap(int ms);
/* Poll a counter of a stage until it equals want (10 s at most); returns
 * the last value read. */
long long fault_wait_stat(const struct pl *p, const char *stage,
    const char *field, long long want);
/* 1 if status shows the stage up with this pid. */
int fault_stage_up(const struct pl *p, const char *stage, pid_t pid);
/* Wait (10 s at most) until the stage is up with a pid other than `old`:
 * its new pid, or -1. */
pid_t fault_wait_restarted(const struct pl *p, const char *stage, pid_t old);
/* Open /telem.<instance>.<queue> for writing, as a stage would (chan.h),
 * with the transport the pipeline runs. NULL with errno on failure. */
struct chan *fault_queue(const struct pl *p, const char *queue);

#endif
