/* test_policy.c - the supervisor's state table, backoff and intensity
 * limit, each transition on its own (no processes involved). */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/wait.h>

#include "log.h"
#include "supervisor/sup.h"

#define EXITED(code) ((code) << 8)   /* a wait status for exit(code) */
#define KILLED(sig) (sig)            /* a wait status for death by sig */

Test(policy, table_transitions)
{
	struct { enum sup_state s; enum sup_event e; int next; } t[] = {
		{ S_DOWN, E_SPAWNED, S_STARTING },
		{ S_STARTING, E_READY, S_UP },
		{ S_STARTING, E_EXITED, S_THROTTLED },
		{ S_UP, E_EXITED, S_THROTTLED },
		{ S_UP, E_STOP, S_STOPPING },
		{ S_STOPPING, E_EXITED, S_DOWN },
		{ S_THROTTLED, E_TIMER, S_DOWN },
		{ S_THROTTLED, E_STOP, S_DOWN },
		{ S_UP, E_READY, -1 },
		{ S_DOWN, E_EXITED, -1 },
		{ S_UP, E_SPAWNED, -1 },
		/* stalled: only from up; it is stopped, and exits into down */
		{ S_UP, E_STALL, S_STALLED },
		{ S_STALLED, E_EXITED, S_DOWN },
		{ S_STALLED, E_STOP, S_STOPPING },
		{ S_STALLED, E_READY, -1 },
		{ S_STALLED, E_STALL, -1 },
		{ S_STARTING, E_STALL, -1 },
		{ S_STOPPING, E_STALL, -1 },
		{ S_THROTTLED, E_STALL, -1 },
		{ S_DOWN, E_STALL, -1 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_expect_eq(sup_next(t[i].s, t[i].e), t[i].next, "%s x %d",
		    sup_state_name(t[i].s), t[i].e);
	cr_expect_eq(sup_next(S_NSTATES, E_READY), -1);
	cr_expect_str_eq(sup_state_name(S_THROTTLED), "throttled");
	cr_expect_str_eq(sup_state_name(S_STALLED), "stalled");
	cr_expect_eq(sup_next(S_UP, E_NEVENTS), -1);
}

/* ---- the stall check: one look at a time ---------------------------- */

Test(policy, queued_input_not_taken_for_stall_ms_is_a_stall)
{
	struct sup_child c;
	memset(&c, 0, sizeof(c));
	/* The first look starts the clock. */
	cr_expect_eq(sup_stall_check(&c, 100, 5, 0, 1000, 3000), 0);
	cr_expect_eq(sup_stall_check(&c, 100, 5, 0, 2000, 3000), 0);
	cr_expect_eq(sup_stall_check(&c, 100, 7, 0, 3999, 3000), 0);
	cr_expect_eq(sup_stall_check(&c, 100, 7, 0, 4000, 3000), 1);
	cr_expect_eq(c.stall_since_ms, 1000);
}

Test(policy, taking_anything_restarts_the_clock)
{
	struct sup_child c;
	memset(&c, 0, sizeof(c));
	sup_stall_check(&c, 100, 5, 0, 1000, 3000);
	/* A record taken. */
	cr_expect_eq(sup_stall_check(&c, 101, 5, 0, 3500, 3000), 0);
	cr_expect_eq(sup_stall_check(&c, 101, 5, 0, 6000, 3000), 0);
	cr_expect_eq(sup_stall_check(&c, 101, 5, 0, 6500, 3000), 1);
	/* A message taken that held no record (a Flush): a shorter queue. */
	memset(&c, 0, sizeof(c));
	sup_stall_check(&c, 100, 5, 0, 1000, 3000);
	cr_expect_eq(sup_stall_check(&c, 100, 4, 0, 3500, 3000), 0);
	cr_expect_eq(sup_stall_check(&c, 100, 4, 0, 6000, 3000), 0);
}

Test(policy, a_look_after_a_whole_stall_time_unseen_starts_the_clock)
{
	/* The supervisor stopped (SIGSTOP) with low's queue empty: on waking,
	 * the tick's Flush is in the queue before low can take it. That look
	 * saw nothing of the 5 s before it: no stall yet. */
	struct sup_child c;
	memset(&c, 0, sizeof(c));
	cr_expect_eq(sup_stall_check(&c, 100, 0, 0, 1000, 3000), 0);
	cr_expect_eq(sup_stall_check(&c, 100, 1, 0, 6000, 3000), 0);
	cr_expect_eq(c.stall_since_ms, 6000);
	/* A real stall after it is still one, a stall time later. */
	cr_expect_eq(sup_stall_check(&c, 100, 1, 0, 6500, 3000), 0);
	cr_expect_eq(sup_stall_check(&c, 100, 1, 0, 8999, 3000), 0);
	cr_expect_eq(sup_stall_check(&c, 100, 1, 0, 9000, 3000), 1);
	/* Looks closer than that keep counting from the one before. */
	memset(&c, 0, sizeof(c));
	sup_stall_check(&c, 100, 0, 0, 1000, 3000);
	cr_expect_eq(sup_stall_check(&c, 100, 1, 0, 3999, 3000), 0);
	cr_expect_eq(sup_stall_check(&c, 100, 1, 0, 4000, 3000), 1);
	cr_expect_eq(c.stall_since_ms, 1000);
}

Test(policy, an_empty_queue_or_a_full_downstream_is_no_stall)
{
	struct sup_child c;
	memset(&c, 0, sizeof(c));
	/* Idle: nothing queued, nothing taken, for ever. */
	for (long long t = 0; t < 100000; t += 500)
		cr_expect_eq(sup_stall_check(&c, 7, 0, 0, t, 3000), 0, "at %lld", t);
	/* Held up by the stage after it: that one is judged, not this. */
	memset(&c, 0, sizeof(c));
	for (long long t = 0; t < 100000; t += 500)
		cr_expect_eq(sup_stall_check(&c, 7, 10, 1, t, 3000), 0, "at %lld", t);
	/* A queue that cannot be read (-1) is no stall either. */
	memset(&c, 0, sizeof(c));
	for (long long t = 0; t < 100000; t += 500)
		cr_expect_eq(sup_stall_check(&c, 7, -1, 0, t, 3000), 0, "at %lld", t);
	/* stall_ms 0: never. */
	memset(&c, 0, sizeof(c));
	for (long long t = 0; t < 100000; t += 500)
		cr_expect_eq(sup_stall_check(&c, 7, 10, 0, t, 0), 0, "at %lld", t);
}

Test(policy, slot_taken_is_the_in_counter)
{
	struct stats_slot st;
	memset(&st, 0, sizeof(st));
	cr_expect_eq(sup_slot_taken(&st), 0);
	stats_add(&st.in, 42);
	stats_add(&st.out, 7);
	cr_expect_eq(sup_slot_taken(&st), 42);
	/* What it took of each writer (common/stats.h) is taken too. */
	atomic_store(&st.taken[4], 100);
	atomic_store(&st.taken[15], 1);
	cr_expect_eq(sup_slot_taken(&st), 143);
}

Test(policy, backoff_doubles_to_five_seconds)
{
	struct sup_child c;
	memset(&c, 0, sizeof(c));
	long long want[] = { 100, 200, 400, 800, 1600, 3200, 5000, 5000 };
	long long now = 0, d;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		now += 3000;  /* far enough apart for the intensity limit */
		c.started_ms = now - 10;
		cr_assert_eq(sup_after_exit(&c, KILLED(9), now, &d), 1);
		cr_expect_eq(d, want[i], "restart %zu", i);
	}
}

Test(policy, long_uptime_resets_the_backoff)
{
	struct sup_child c;
	memset(&c, 0, sizeof(c));
	long long d;
	sup_after_exit(&c, EXITED(111), 100, &d);
	sup_after_exit(&c, EXITED(111), 400, &d);
	cr_assert_eq(d, 200);
	c.started_ms = 1000;
	cr_assert_eq(sup_after_exit(&c, EXITED(111), 1000 + 10000, &d), 1);
	cr_expect_eq(d, 100);
}

Test(policy, more_than_five_restarts_in_ten_seconds_gives_up)
{
	struct sup_child c;
	memset(&c, 0, sizeof(c));
	long long d;
	for (int i = 0; i < SUP_INTENSITY; i++)
		cr_assert_eq(sup_after_exit(&c, KILLED(9), 1000 + i * 1000, &d), 1);
	/* The sixth within 10 s is one too many. */
	cr_expect_eq(sup_after_exit(&c, KILLED(9), 1000 + 9000, &d), 0);
}

Test(policy, restarts_spread_over_time_go_on)
{
	struct sup_child c;
	memset(&c, 0, sizeof(c));
	long long d;
	for (int i = 0; i < 20; i++)
		cr_assert_eq(sup_after_exit(&c, KILLED(9), i * 2100LL, &d), 1, "exit %d", i);
}

Test(policy, exit_100_is_not_restarted)
{
	struct sup_child c;
	memset(&c, 0, sizeof(c));
	long long d;
	cr_expect_eq(sup_after_exit(&c, EXITED(EXIT_PERMANENT), 0, &d), 0);
	cr_expect_eq(sup_after_exit(&c, EXITED(EXIT_TEMPORARY), 0, &d), 1);
	cr_expect_eq(sup_after_exit(&c, EXITED(0), 5000, &d), 1);
}
