/* test_books.c - the books of common/stats.h on a private segment: a
 * reader's booking of messages (taken, gaps, duplicates), the idle check,
 * the supervisor's settling of a dead stage, and the kill -9 windows the
 * design closes, each played out store by store. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

enum { W = 4, A = 2, B = 3 };   /* a writer's slot, its two readers' slots */

#define ANY UINT64_MAX          /* the writer's out, when it does not matter */

static struct stats_seg *seg;

static void
fresh(void)
{
	seg = calloc(1, sizeof(*seg));
	cr_assert_not_null(seg);
	strcpy(seg->slot[W].stage, "ingest");
	strcpy(seg->slot[A].stage, "low");
	strcpy(seg->slot[A].in_queue, "low");
	strcpy(seg->slot[B].stage, "high");
	strcpy(seg->slot[B].in_queue, "high");
}

static void
gone(void)
{
	free(seg);
}

TestSuite(books, .init = fresh, .fini = gone);

/* The writer's side of one message of n records to reader r: out first,
 * then (if the send completed) sent[r]. */
static uint64_t
writer_out(uint64_t n)
{
	uint64_t seq = stats_get(&seg->slot[W].out);
	atomic_store(&seg->slot[W].out, seq + n);
	return seq;
}

static void
idle(int r)
{
	uint64_t sent[STATS_SLOTS];
	stats_sent_to(seg, r, sent);
	/* (the queue is checked empty here) */
	stats_close_gaps(&seg->slot[r], sent);
}

static int
balanced(int s)
{
	return stats_inflight(&seg->slot[s]) == 0;
}

Test(books, messages_in_order_add_up)
{
	struct stats_slot *a = &seg->slot[A];
	uint64_t gap;
	cr_assert_eq(stats_take(a, W, 0, 10, ANY, &gap), 0);
	cr_assert_eq(gap, 0);
	cr_assert_eq(stats_take(a, W, 10, 5, ANY, &gap), 0);
	cr_assert_eq(stats_take(a, W, 15, 0, ANY, &gap), 0);  /* a Flush only */
	cr_assert_eq(stats_in(a), 15);
	cr_assert_eq(stats_get(&a->lost), 0);
	stats_add(&a->in, 7);                             /* no writer slot */
	cr_assert_eq(stats_in(a), 22);
	cr_assert_eq(stats_inflight(a), 22);
	atomic_store(&a->out, 12);
	stats_add(&a->filtered, 10);
	cr_assert(balanced(A));
}

Test(books, a_gap_is_booked_lost_once)
{
	struct stats_slot *a = &seg->slot[A];
	uint64_t gap;
	cr_assert_eq(stats_take(a, W, 0, 10, ANY, &gap), 0);
	cr_assert_eq(stats_take(a, W, 20, 5, ANY, &gap), 0);
	cr_assert_eq(gap, 10);
	cr_assert_eq(stats_in(a), 25);
	cr_assert_eq(stats_get(&a->lost), 10);
	cr_assert_eq(stats_inflight(a), 15);
}

Test(books, a_duplicate_is_refused_and_changes_nothing)
{
	struct stats_slot *a = &seg->slot[A];
	uint64_t gap;
	cr_assert_eq(stats_take(a, W, 0, 10, ANY, &gap), 0);
	cr_assert_eq(stats_take(a, W, 5, 10, ANY, &gap), -1);
	cr_assert_eq(stats_take(a, W, 0, 10, ANY, &gap), -1);
	cr_assert_eq(stats_in(a), 10);
	cr_assert_eq(stats_get(&a->lost), 0);
	/* Other writers have their own numbering. */
	cr_assert_eq(stats_take(a, 7, 0, 3, ANY, &gap), 0);
	cr_assert_eq(stats_in(a), 13);
}

Test(books, a_message_past_the_writers_out_is_refused)
{
	struct stats_slot *a = &seg->slot[A];
	uint64_t gap;
	cr_assert_eq(stats_take(a, W, 0, 10, 10, &gap), 0);
	cr_assert_eq(stats_take(a, W, 10, 5, 14, &gap), STATS_BEYOND);
	cr_assert_eq(stats_take(a, W, 1ULL << 40, 1, 14, &gap), STATS_BEYOND);
	cr_assert_eq(stats_take(a, W, UINT64_MAX, 2, 14, &gap), STATS_BEYOND);
	cr_assert_eq(stats_in(a), 10);
	cr_assert_eq(stats_get(&a->lost), 0);
	/* The writer's real next message still goes in. */
	cr_assert_eq(stats_take(a, W, 10, 5, 15, &gap), 0);
	cr_assert_eq(gap, 0);
	cr_assert_eq(stats_take(a, W, 5, 1, 15, &gap), STATS_DUP);
}

Test(books, settling_a_dead_stage_is_idempotent)
{
	struct stats_slot *a = &seg->slot[A];
	uint64_t gap;
	cr_assert_eq(stats_take(a, W, 0, 25, ANY, &gap), 0);
	atomic_store(&a->out, 10);
	stats_add(&a->filtered, 5);
	stats_add(&a->dropped, 1);
	cr_assert_eq(stats_settle_dead(a), 9);
	cr_assert_eq(stats_get(&a->lost), 9);
	cr_assert_eq(stats_settle_dead(a), 0);
	cr_assert_eq(stats_get(&a->lost), 9);
	cr_assert(balanced(A));
}

/* A reader killed after taking a message off the queue and before its
 * store of taken[]: the message is in nobody's in. Its successor sees the
 * gap with the writer's next message. */
Test(books, reader_killed_between_dequeue_and_booking)
{
	struct stats_slot *a = &seg->slot[A];
	uint64_t gap;
	cr_assert_eq(stats_take(a, W, writer_out(10), 10, ANY, &gap), 0);
	atomic_store(&a->out, 10);
	(void)writer_out(8);              /* dequeued by a reader then killed */
	cr_assert_eq(stats_settle_dead(a), 0);  /* it booked nothing of it */
	cr_assert_eq(stats_take(a, W, writer_out(4), 4, ANY, &gap), 0);
	cr_assert_eq(gap, 8);
	atomic_store(&a->out, 14);
	cr_assert(balanced(A));
	cr_assert_eq(stats_in(a), stats_get(&seg->slot[W].out));
	cr_assert_eq(stats_get(&a->lost), 8);
}

/* The same, with no message after it: the idle check on an empty queue
 * books it, from what the writer says it sent. */
Test(books, reader_killed_then_idle_check)
{
	struct stats_slot *a = &seg->slot[A];
	uint64_t gap, seq = writer_out(6);
	atomic_store(&seg->slot[W].sent[A], seq + 6);
	cr_assert_eq(stats_take(a, W, seq, 6, ANY, &gap), 0);
	seq = writer_out(9);
	atomic_store(&seg->slot[W].sent[A], seq + 9);
	/* dequeued by a reader killed before booking it */
	stats_settle_dead(a);
	idle(A);
	cr_assert_eq(stats_in(a), 15);
	cr_assert_eq(stats_get(&a->lost), 9 + 6);  /* + the 6 it held */
	cr_assert(balanced(A));
	idle(A);                                    /* nothing twice */
	cr_assert_eq(stats_get(&a->lost), 15);
}

/* A reader killed between its two stores of a gap (lost, then taken):
 * the supervisor's settling drops the half-booked gap from lost, and the
 * successor books it again: once in all. */
Test(books, reader_killed_inside_a_gap_booking)
{
	struct stats_slot *a = &seg->slot[A];
	uint64_t gap;
	cr_assert_eq(stats_take(a, W, 0, 10, ANY, &gap), 0);
	atomic_store(&a->out, 10);
	stats_add(&a->lost, 5);                      /* gap [10, 15): first store */
	cr_assert_eq(stats_settle_dead(a), -5);      /* killed before the second */
	cr_assert_eq(stats_take(a, W, 15, 2, ANY, &gap), 0);
	cr_assert_eq(gap, 5);
	atomic_store(&a->out, 12);
	cr_assert(balanced(A));
	cr_assert_eq(stats_get(&a->lost), 5);
}

/* Fan-out: a writer killed after its message reached A and before it
 * reached B. Its out counts it; A has it; B books it lost once its queue
 * is empty, as the supervisor (or the restarted writer) marks it sent. */
Test(books, writer_killed_between_two_sends)
{
	uint64_t gap, seq;
	atomic_store(&seg->slot[W].in, 20);
	seq = writer_out(20);
	atomic_store(&seg->slot[W].sent[A], seq + 20);
	cr_assert_eq(stats_take(&seg->slot[A], W, seq, 20, ANY, &gap), 0);
	/* killed: the supervisor settles W and marks everything sent */
	cr_assert_eq(stats_settle_dead(&seg->slot[W]), 0);
	cr_assert_eq(stats_reader_of(seg, "high"), B);
	atomic_store(&seg->slot[W].sent[B], stats_get(&seg->slot[W].out));
	idle(B);
	cr_assert_eq(stats_in(&seg->slot[A]), 20);
	cr_assert_eq(stats_in(&seg->slot[B]), 20);
	cr_assert_eq(stats_get(&seg->slot[B].lost), 20);
	cr_assert(balanced(W));
	/* The restarted writer numbers on: B sees no gap, no duplicate. */
	seq = writer_out(3);
	cr_assert_eq(seq, 20);
	cr_assert_eq(stats_take(&seg->slot[B], W, seq, 3, ANY, &gap), 0);
	cr_assert_eq(gap, 0);
}

/* A writer killed after its `out` store and before any send: the records
 * are its out, and its readers' lost. */
Test(books, writer_killed_before_sending)
{
	atomic_store(&seg->slot[W].in, 5);
	(void)writer_out(5);
	cr_assert_eq(stats_settle_dead(&seg->slot[W]), 0);
	atomic_store(&seg->slot[W].sent[A], 5);
	atomic_store(&seg->slot[W].sent[B], 5);
	idle(A);
	idle(B);
	cr_assert_eq(stats_in(&seg->slot[A]), 5);
	cr_assert_eq(stats_get(&seg->slot[A].lost), 5);
	cr_assert_eq(stats_get(&seg->slot[B].lost), 5);
}

/* A writer killed before its `out` store: the records are its in only,
 * and the supervisor books them lost there. */
Test(books, writer_killed_holding_records)
{
	atomic_store(&seg->slot[W].in, 32);
	cr_assert_eq(stats_settle_dead(&seg->slot[W]), 32);
	cr_assert(balanced(W));
	idle(A);
	cr_assert_eq(stats_in(&seg->slot[A]), 0);
}

Test(books, reader_of_a_queue)
{
	cr_assert_eq(stats_reader_of(seg, "low"), A);
	cr_assert_eq(stats_reader_of(seg, "high"), B);
	cr_assert_eq(stats_reader_of(seg, "ckms"), -1);
	cr_assert_eq(stats_reader_of(seg, ""), -1);
}
