/* stats.h - the stats segment (DESIGN §8): one slot of 64-bit atomic
 * counters per stage in "/telem.<instance>.stats", shared by the supervisor
 * (which owns the segment and writes pid, restarts, lost) and the stages
 * (which add to their own slot). Counters survive a stage's restart. */
#ifndef TELEM_STATS_H
#define TELEM_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define STATS_SLOTS 16
#define STATS_NAME_MAX 32

struct stats_slot {
	char stage[STATS_NAME_MAX];    /* written by the supervisor only */
	_Atomic uint64_t in;        /* records taken in (telemetry only) */
	_Atomic uint64_t out;       /* records passed on / reported into */
	_Atomic uint64_t bad;       /* rejected lines or malformed messages */
	_Atomic uint64_t dropped;   /* kernel UDP drops, names over the cap */
	_Atomic uint64_t inflight;  /* records taken and not yet passed on */
	_Atomic uint64_t lost;      /* inflight of stages that were killed */
	_Atomic uint64_t sink_dropped; /* egress lines a full graphite buffer dropped */
	_Atomic int64_t pid;
	_Atomic uint64_t restarts;
};

struct stats_seg {
	uint32_t magic;
	uint32_t version;
	uint32_t nslots;
	uint32_t reserved;
	/* Set once at creation, different for every run of a supervisor: a
	 * stage's state file tells by it whether its booked counts belong to
	 * this segment. */
	uint64_t run;
	struct stats_slot slot[STATS_SLOTS];
};

/* Create "/telem.<instance>.stats" (0600, zeroed). Returns the mapping or
 * NULL with errno (EEXIST if it exists); nothing is left behind on error. */
struct stats_seg *stats_create(const char *objname);
/* Map an existing segment read-write. NULL with errno (EPROTO if it is not
 * a stats segment of this version). */
struct stats_seg *stats_attach(const char *objname);
void stats_detach(struct stats_seg *seg);
/* Remove the segment; 0 or -1 with errno. */
int stats_unlink(const char *objname);

static inline void
stats_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t
stats_get(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

#endif
