/* e2e.h - the opening every fault-injection test file shares: one pipeline
 * P per test, set up and removed by the suite's fixtures, assertions that
 * show the pipeline's output when they fail, and checked queue writes.
 * Include it once, in a test file, after <criterion/criterion.h>. */
#ifndef TELEM_TEST_E2E_H
#define TELEM_TEST_E2E_H

#include <errno.h>
#include <string.h>

#include "fault.h"
#include "harness.h"

static struct pl P;

static void setup(void) { pl_init(&P); }
static void teardown(void) { pl_cleanup(&P); }

#define START(...) cr_assert(pl_start(&P, __VA_ARGS__, NULL), \
	"supervisor did not come up:\n%s", h_slurp(P.err))
#define WAIT_OUT(text) cr_assert(h_wait_text(P.out, text, 1, 10000), \
	"stdout never held '%s':\n%s\nstderr:\n%s", text, h_slurp(P.out), \
	h_slurp(P.err))

/* A write handle on a stage's in-queue of P, or the test fails. */
static inline struct chan *
open_queue(const char *queue)
{
	struct chan *c = fault_queue(&P, queue);
	cr_assert_not_null(c, "open queue %s: %s", queue, strerror(errno));
	return c;
}

/* Queue one message (5 s at most), or the test fails. */
static inline void
put(struct chan *c, const void *msg, size_t len)
{
	cr_assert_eq(chan_send(c, msg, len, 5000), 0, "send %zu bytes: %s", len,
	    strerror(errno));
}

#endif
