/* cma_msg.c - the cma egress's pass over a message (egress/cma.h). */
#include "egress/cma.h"
#include "egress/egress.h"

/* The on_msg hook: the message's telemetry records applied in one loop,
 * without an indirect call per record, and booked applied once for the
 * message; any other record goes to stage_take_record (a Flush to
 * cma_flush, which reports what came before it in this message). */
int
cma_msg(struct stage *st, const void *msg, size_t len)
{
	struct egress *e = st->ctx;
	struct wire_reader r;
	struct wire_rec rec;
	uint64_t applied = 0;
	int stop = 0;
	(void)len;
	wire_reader_init(&r, msg);
	while (wire_next(&r, &rec)) {
		if (rec.type == WIRE_TELEMETRY) {
			int created;
			struct cma *m = egress_lookup(st, e, rec.name, rec.name_len,
			    &created);
			if (m != NULL) {
				cma_add(m, rec.value);
				applied++;
			}
			continue;
		}
		/* What came before a Flush is in the report it makes. */
		egress_applied_n(e, applied);
		applied = 0;
		if (stage_take_record(st, &rec)) {
			stop = 1;
			break;
		}
	}
	egress_applied_n(e, applied);
	return stop;
}
