/* cma_msg.c - the cma egress's pass over a message (egress/cma.h). */
#include "egress/cma.h"
#include "egress/egress.h"

static inline void
add_one(void *ctx, void *payload, int created, uint32_t value)
{
	(void)ctx;
	(void)created;  /* a new average is all zeros, as cma_add expects */
	cma_add(payload, value);
}

/* The on_msg hook: egress_msg's loop with cma_add. */
int
cma_msg(struct stage *st, const void *msg, size_t len)
{
	(void)len;
	return egress_msg(st, st->ctx, msg, add_one, NULL);
}
