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
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_expect_eq(sup_next(t[i].s, t[i].e), t[i].next, "%s x %d",
		    sup_state_name(t[i].s), t[i].e);
	cr_expect_eq(sup_next(S_NSTATES, E_READY), -1);
	cr_expect_str_eq(sup_state_name(S_THROTTLED), "throttled");
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
