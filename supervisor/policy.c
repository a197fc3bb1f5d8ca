/* policy.c - when a stage is restarted, and when the supervisor gives up:
 * an explicit state x event table, exponential backoff (100 ms doubling to
 * 5 s), and an intensity limit (more than 5 restarts of one stage in 10 s
 * stops the whole pipeline), as an OTP supervisor would. */
#include <stdatomic.h>
#include <sys/wait.h>

#include "log.h"
#include "supervisor/sup.h"

static const char *const names[S_NSTATES] = {
	"down", "starting", "up", "stopping", "throttled", "stalled",
};

const char *
sup_state_name(enum sup_state s)
{
	return (unsigned)s < S_NSTATES ? names[s] : "?";
}

/* -1: the event cannot happen in that state and is ignored. A stalled
 * stage is being stopped: it exits into S_DOWN and starts again at once,
 * as a `telemctl restart` would. */
static const signed char table[S_NSTATES][E_NEVENTS] = {
	/*               SPAWNED      READY  EXITED       TIMER   STOP        STALL */
	[S_DOWN]      = { S_STARTING, -1,    -1,          -1,     S_DOWN,     -1 },
	[S_STARTING]  = { -1,         S_UP,  S_THROTTLED, -1,     S_STOPPING, -1 },
	[S_UP]        = { -1,         -1,    S_THROTTLED, -1,     S_STOPPING, S_STALLED },
	[S_STOPPING]  = { -1,         -1,    S_DOWN,      -1,     S_STOPPING, -1 },
	[S_THROTTLED] = { -1,         -1,    -1,          S_DOWN, S_DOWN,     -1 },
	[S_STALLED]   = { -1,         -1,    S_DOWN,      -1,     S_STOPPING, -1 },
};

int
sup_next(enum sup_state s, enum sup_event e)
{
	if ((unsigned)s >= S_NSTATES || (unsigned)e >= E_NEVENTS)
		return -1;
	return table[s][e];
}

int
sup_after_exit(struct sup_child *c, int wst, long long now, long long *delay_ms)
{
	if (WIFEXITED(wst) && WEXITSTATUS(wst) == EXIT_PERMANENT) {
		log_warnx("stage %s exited 100 (configuration error): not restarted",
		    c->name);
		return 0;
	}
	/* A stage that ran long enough earned a fresh start. */
	if (now - c->started_ms >= SUP_PERIOD_MS)
		c->backoff_ms = 0;
	c->backoff_ms = c->backoff_ms == 0 ? SUP_BACKOFF_MIN_MS :
	    c->backoff_ms * 2 > SUP_BACKOFF_MAX_MS ? SUP_BACKOFF_MAX_MS :
	    c->backoff_ms * 2;

	/* Keep the times of the last SUP_INTENSITY + 1 restarts; if the oldest
	 * of them is inside the period, that is one too many. */
	unsigned n = c->nhistory < SUP_INTENSITY + 1 ? c->nhistory : SUP_INTENSITY + 1;
	if (n == SUP_INTENSITY + 1)
		for (unsigned i = 1; i < n; i++)
			c->history[i - 1] = c->history[i];
	else
		n++;
	c->history[n - 1] = now;
	c->nhistory = n;
	if (n == SUP_INTENSITY + 1 && now - c->history[0] <= SUP_PERIOD_MS) {
		log_warnx("stage %s restarted more than %d times in %d s: giving up",
		    c->name, SUP_INTENSITY, SUP_PERIOD_MS / 1000);
		return 0;
	}
	*delay_ms = c->backoff_ms;
	return 1;
}

uint64_t
sup_slot_taken(const struct stats_slot *st)
{
	return stats_in(st);
}

int
sup_stall_check(struct sup_child *c, uint64_t taken, long depth,
    int waiting_out, long long now, long stall_ms)
{
	/* Progress is a record taken, or a shorter queue (a Flush taken is
	 * no record). Nothing queued, or an out-queue not yet emptied by the
	 * stage after it, is no stall of this one: the clock starts again. */
	int moved = taken != c->stall_taken || (depth >= 0 && depth < c->stall_depth);
	/* Nobody looked for a whole stall time (the supervisor was stopped
	 * or not scheduled): what the stage did meanwhile is unknown, and the
	 * Flush of the tick due on waking may sit in its queue right now. */
	int unseen = now - c->stall_look_ms >= stall_ms;
	c->stall_taken = taken;
	c->stall_depth = depth;
	c->stall_look_ms = now;
	if (moved || depth <= 0 || waiting_out || c->stall_since_ms == 0 || unseen) {
		c->stall_since_ms = now;
		return 0;
	}
	return stall_ms > 0 && now - c->stall_since_ms >= stall_ms;
}
