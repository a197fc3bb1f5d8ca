/* stats.h - the stats segment (docs/design.md §8): one slot of 64-bit atomic
 * counters per stage in "/telem.<instance>.stats", shared by the supervisor
 * (which owns the segment and writes the names, pid, restarts, and `lost`
 * of a stage it reaped) and the stages (each writes its own slot).
 *
 * The books. Every counter is a single monotonic word written by one party
 * (the stage; the supervisor only while the stage is dead), so a kill -9
 * between two stores can leave a record in no counter yet -- it is then in
 * flight, and becomes `lost` -- but never in two:
 *  - A writer W numbers the telemetry records it sends: `out` is the count
 *    sent, and each message carries {src = W's slot, seq = out before it}
 *    (common/wire.h). W stores `out = seq + n` before sending a message,
 *    and `sent[R] = seq + n` in its own slot once reader R's queue has it.
 *  - A reader R stores `taken[W] = seq + n` in its own slot when it takes
 *    a message of W. A message starting past taken[W] shows records that a
 *    killed predecessor of R took or a killed W never sent: R books that
 *    gap in `lost`. So R's `in` is the sum of taken[] (plus `in`, records
 *    with no writer: the events ingest parsed), and `in == W.out` per
 *    queue once drained.
 *  - Nothing stores "in flight": it is in - out - filtered - dropped - lost,
 *    and when a stage dies the supervisor sets lost to what makes that 0.
 * Counters survive a stage's restart. */
#ifndef TELEM_STATS_H
#define TELEM_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* One per child of the supervisor (supervisor/sup.h SUP_STAGES). */
#define STATS_SLOTS 64
#define STATS_NAME_MAX 32

struct stats_slot {
	char stage[STATS_NAME_MAX];    /* written by the supervisor only; "":
	                                * a free slot */
	char in_queue[STATS_NAME_MAX]; /* ditto, "" for none */
	uint64_t born;              /* set by the supervisor when it defines a
	                             * stage in this slot, different for every
	                             * definition of a run: a stage removed and
	                             * added again by reloads starts new books,
	                             * which its state file must not be read
	                             * against (stage_books_id) */
	_Atomic uint64_t in;        /* telemetry taken with no writer slot
	                             * (ingest: events parsed); see stats_in */
	_Atomic uint64_t out;       /* passed on; egress: applied (stage_commit),
	                             * lowered at a load by what its state file
	                             * lacks (stage_book_gone) */
	_Atomic uint64_t filtered;  /* dropped by the stage's rule */
	_Atomic uint64_t bad;       /* rejected lines or malformed messages */
	_Atomic uint64_t dropped;   /* names over the cap */
	_Atomic uint64_t dropped_dgrams; /* ingest: datagrams the kernel dropped */
	_Atomic uint64_t lost;      /* held by killed stages, or taken by them,
	                             * or saved in a state file that is gone */
	_Atomic uint64_t sink_dropped; /* carbon lines dropped (a full buffer,
	                             * unsent at exit), report entries the
	                             * statsd egress could not make */
	_Atomic uint64_t sink_held;  /* carbon lines the stage holds unsent
	                             * (written by the stage as they change;
	                             * a sink's count includes, from the moment
	                             * it takes a message, the lines its
	                             * entries are yet to make): when it dies
	                             * the supervisor moves them into
	                             * sink_dropped (stats_settle_held), so a
	                             * kill -9 loses none uncounted */
	_Atomic uint64_t unbooked_out; /* 1: its out-queues carry no records of
	                             * the books (an egress sending report
	                             * records, common/wire.h): its `out` is
	                             * not what it sent, and no sent[] is kept
	                             * for its readers (written by the stage at
	                             * its start) */
	_Atomic uint64_t save_failing; /* 1 while the stage's saves of its
	                             * state file fail, which keeps its
	                             * records in flight (written by the
	                             * stage, cleared by the supervisor when
	                             * it dies) */
	_Atomic int64_t pid;
	_Atomic uint64_t restarts;
	_Atomic uint64_t taken[STATS_SLOTS]; /* reader: end of the last message
	                                      * taken from the writer in slot W */
	_Atomic uint64_t sent[STATS_SLOTS];  /* writer: end of the last message
	                                      * in the queue of the reader R */
};

struct stats_seg {
	uint32_t magic;
	uint32_t version;
	uint32_t nslots;
	/* The supervisor's next Flush tick: CLOCK_MONOTONIC milliseconds,
	 * low 32 bits (0: none known). Written by the supervisor when it arms
	 * its timer and after every tick, so that ingest can send what it
	 * gathered before the tick (ingest/main.c). */
	_Atomic uint32_t flush_next_ms;
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
stats_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Records the stage has taken in: `in` plus every taken[W]. */
uint64_t stats_in(const struct stats_slot *s);
/* Records taken and not yet in out, filtered, dropped or lost (negative
 * only if the books are broken). */
int64_t stats_inflight(const struct stats_slot *s);
/* The supervisor, for a stage that is dead: lost := in - out - filtered -
 * dropped (idempotent). Returns how much lost grew (negative if it shrank,
 * which the books never should make it do). */
int64_t stats_settle_dead(struct stats_slot *s);

/* The supervisor, for a stage that is dead: its sink_held lines are
 * added to sink_dropped and sink_held is 0 (idempotent). Returns how many
 * moved. */
uint64_t stats_settle_held(struct stats_slot *s);

/* The slot whose in_queue is `queue`, or -1. */
int stats_reader_of(const struct stats_seg *seg, const char *queue);

/* A reader's booking of a message [seq, seq + n) from writer slot src,
 * whose `out` is now writer_out (UINT64_MAX if unknown): records before
 * seq not yet taken are booked lost (*gap), then taken[src] = seq + n.
 * Returns 0; or, booking nothing, STATS_DUP if the message starts before
 * what was already taken, STATS_BEYOND if it ends past what the writer
 * has counted out (a writer counts a message before sending it, so no
 * message of it can: this one is not what it claims, and booking it
 * would make every later message of the writer look like a duplicate). */
enum { STATS_DUP = -1, STATS_BEYOND = -2 };
int stats_take(struct stats_slot *me, unsigned src, uint64_t seq, uint64_t n,
    uint64_t writer_out, uint64_t *gap);
/* For a reader idle on an empty queue: first stats_sent_to (every
 * writer's sent[me]), THEN check that the queue is empty, then
 * stats_close_gaps: every message ending at or before sent[me] has left
 * the queue, so what is not in taken[] was taken by a killed predecessor or
 * never sent by a killed writer. Returns the records booked lost. */
void stats_sent_to(const struct stats_seg *seg, int me, uint64_t sent[STATS_SLOTS]);
uint64_t stats_close_gaps(struct stats_slot *me, const uint64_t sent[STATS_SLOTS]);

#endif
