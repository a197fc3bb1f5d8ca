/* statsd_state.h - what telem-egress-statsd keeps across a restart
 * (--state FILE, common/state.h's file format): the gauges, with their
 * TTLs, since statsd keeps them from flush to flush. Counters, timers and
 * sets start afresh at every flush anyway: the egress books their records
 * `out` only once a flush has written them, so a kill between two
 * flushes counts what it loses in `lost` instead of saving it. */
#ifndef TELEM_STATSD_STATE_H
#define TELEM_STATSD_STATE_H

#include "egress/statsd_agg.h"
#include "state.h"

/* Save every gauge of a to path with the writer w (through path.tmp,
 * renamed), with the stage's books id (stage_books_id) and the slot's
 * `out` once this save is booked (common/state.h's state_info). Returns 0,
 * or -1 with errno and state_failed(w) saying what failed (not logged;
 * path keeps the previous save). */
int statsd_state_save(struct state_writer *w, struct statsd_agg *a,
    const char *path, uint64_t run, uint64_t committed);
/* Load the gauges saved at path into a fresh a, and the file's run and
 * committed into *info (zeros when nothing was loaded). Returns the
 * number loaded, 0 when there is no file, or -1 when the file was
 * refused (logged, renamed aside to path.bad, a left empty). */
long statsd_state_load(struct statsd_agg *a, const char *path,
    struct state_info *info);

#endif
