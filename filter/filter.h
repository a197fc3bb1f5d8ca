/* filter.h - telem-filter's rule and its pass over a message: what the
 * filter executable (filter/main.c) runs, in the library so that tests and
 * bench/readpath.c can run it too. */
#ifndef TELEM_FILTER_H
#define TELEM_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "stage.h"

struct filter {
	int below;      /* 1: keep value <= limit; 0: keep value >= limit */
	int set;
	uint32_t limit;
};

/* The stage's on_msg hook (st->ctx is the struct filter) for the checked
 * message msg[0..len): every telemetry
 * record whose value the rule keeps is passed on as it came
 * (stage_pass_raw), every other one booked `filtered`; any other record
 * goes to stage_take_record (statsd records, meta and reports pass
 * unchanged through the filter's on_record, a Flush through on_flush).
 * Returns 1 after a Stop record, else 0. */
int filter_msg(struct stage *st, const void *msg, size_t len);
/* The on_record of the records filter_msg does not take itself. */
void filter_record(struct stage *st, const struct wire_rec *r);
/* Its on_flush: the Flush goes on with its interval. */
void filter_flush(struct stage *st);

#endif
