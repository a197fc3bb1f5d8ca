/* report_emit.h - sending report entries (egress/report_rec.h) on a
 * stage's out-queues, for any egress: ckms and cma through egress.c's
 * egress_entry, and an egress of another shape (telem-egress-statsd,
 * docs/design.md §14) directly: one report_emit per entry of its Flush, then
 * report_emit_end with how many it sent, then stage_push; before its
 * first report, and after one it could not send whole, report_emit_reset. */
#ifndef TELEM_REPORT_EMIT_H
#define TELEM_REPORT_EMIT_H

#include <stdint.h>

#include "egress/report_rec.h"
#include "stage.h"

/* Encode r and append it to the stage's out batches as a WIRE_REPORT
 * record. Returns 0, or -1 (logged by the caller) when r is not a valid
 * entry or could not be sent. Nothing happens without out-queues. */
int report_emit(struct stage *st, const struct report_rec *r);
/* End a report of `source` stamped ts, after `count` entries. */
int report_emit_end(struct stage *st, uint8_t source, int64_t ts,
    uint64_t count);
/* The reset of report_rec.h (an END of no entries), stamped ts: to go
 * before an egress's first report and before the report after one that
 * it could not send whole. 0, or -1 as report_emit. */
int report_emit_reset(struct stage *st, uint8_t source, int64_t ts);

#endif
