/* report_emit.c - report entries onto a stage's out-queues. */
#include "egress/report_emit.h"

#include "wire.h"

int
report_emit(struct stage *st, const struct report_rec *r)
{
	unsigned char ent[REPORT_REC_MAX], rec[WIRE_REC_HDR + REPORT_REC_MAX];
	if (st->nout == 0)
		return 0;
	size_t n = report_rec_encode(r, ent, sizeof(ent));
	size_t m = n > 0 ? wire_encode_report(rec, sizeof(rec), ent, n) : 0;
	if (m == 0)
		return -1;
	return stage_emit_raw(st, WIRE_REPORT, rec, m);
}

int
report_emit_end(struct stage *st, uint8_t source, int64_t ts, uint64_t count)
{
	struct report_rec end = {
		.kind = REPORT_END, .source = source, .ts = ts, .count = count,
	};
	return report_emit(st, &end);
}

int
report_emit_reset(struct stage *st, uint8_t source, int64_t ts)
{
	return report_emit_end(st, source, ts, 0);
}
