/* stage.h - the skeleton every stage executable runs on (cf. Postfix's
 * single-server skeleton). stage_main() owns the common options, logging,
 * signals, the stats slot, readiness, the out-queues and - for stages with
 * an in-queue - the receive loop; a stage supplies the callbacks below. */
#ifndef TELEM_STAGE_H
#define TELEM_STAGE_H

#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "chan.h"
#include "log.h"
#include "state.h"
#include "stats.h"
#include "wire.h"

#define STAGE_OUT_MAX 8

struct stage;

struct stage_ops {
	const char *prog;          /* "telem-filter" */
	const char *default_name;  /* stage name when --name is not given */
	const char *synopsis;      /* the stage's own options, for usage */
	const char *help;          /* their description, for -h */
	const struct option *longopts; /* the stage's own long options; val >= 256 */
	/* Take one of the stage's own options. Returns 0, or -1 after logging
	 * why the value is bad (the stage then exits 100). */
	int (*option)(struct stage *st, int opt, const char *arg);
	/* After the channels are open, before readiness. Returns 0 or -1. */
	int (*init)(struct stage *st);
	/* Stages without an in-queue (ingest) run their own loop here and
	 * return the exit status; NULL for queue-reading stages. */
	int (*run)(struct stage *st);
	/* One record. May be NULL with an on_msg hook that handles every
	 * record type the stage takes itself (the egresses' egress_msg). */
	void (*on_record)(struct stage *st, const struct wire_rec *r);
	/* Optional: take a whole message at once instead of one on_record
	 * call per record (no call per record through this table). The
	 * message msg[0..len) has passed wire_check and is booked in `in`; the hook
	 * walks it (wire_reader_init, wire_next), handles the records it
	 * wants and gives every other one to stage_take_record, exactly as
	 * the skeleton would have. Returns 1 when stage_take_record said
	 * Stop (the records after it are not taken), else 0. */
	int (*on_msg)(struct stage *st, const void *msg, size_t len);
	void (*on_flush)(struct stage *st);
	/* Optional: called by the receive loop after every round, whether it
	 * took messages or its wait (at most 100 ms) timed out, so that a
	 * stage can do background work while no data flows. Must not block. */
	void (*on_tick)(struct stage *st);
	void (*fini)(struct stage *st);
	int needs_in;              /* 1 if --in is required (else refused) */
	int no_out;                /* 1: writes no queue (an egress); --out is
	                            * refused and left out of -h */
	/* 1: the records the stage handles are not passed on when they are
	 * handled (an egress applies them to its aggregates), so the skeleton
	 * does not book them in `out`; the stage does, with stage_commit,
	 * once they are safe (saved). Until then they are in flight, lost if
	 * killed. Its out-queues, if any, carry only report records, which
	 * the books do not count: its messages name no writer slot. */
	int holds_records;
	/* 1: on_record also gets WIRE_STATSD and WIRE_STATSD_META records
	 * (wire_statsd_get, wire_meta_get). 0: the skeleton counts a statsd
	 * metric `dropped` (logged at most once a minute) and skips meta. */
	int takes_statsd;
	/* 1: on_record also gets WIRE_REPORT records (a sink); 0: the
	 * skeleton passes over them. */
	int takes_reports;
};

struct stage {
	const struct stage_ops *ops;
	void *ctx;                 /* the stage's own state */
	const char *name;
	const char *instance;
	enum chan_kind kind;
	const char *in_name;
	const char *out_name[STAGE_OUT_MAX];
	size_t nout;
	struct chan *in;
	struct chan *out[STAGE_OUT_MAX];
	/* Every out-queue gets every record: one batch is built and the same
	 * message sent to each queue (cap: the smallest message size). */
	struct wire_writer w;
	unsigned char *inbuf;
	size_t inbuf_cap;
	struct stats_seg *seg;
	struct stats_slot *stats;  /* the shared slot, or `local` */
	struct stats_slot local;
	int slot;
	int ready_fd;
	uint32_t flush_ms;         /* the value of the last Flush record */
	struct log_limit statsd_log; /* statsd records dropped: logged */
	/* The books (common/stats.h). out_total is the slot's `out`, kept
	 * here: only this process writes it. w_tel: records the books count
	 * (wire_counts: telemetry, statsd) in the batch being built.
	 * out_slot[i]: the stats slot of out-queue i's reader (-1: none
	 * known, nothing booked for it). */
	uint64_t out_total;
	long long stop_deadline;   /* stopping: sends give up after this */
	uint32_t w_tel;
	int out_slot[STAGE_OUT_MAX];
	/* Counted locally per round, added to the shared slot once: records
	 * passed on by a stage without out-queues, dropped by the stage's
	 * rule (stage_filtered), rejected input lines. */
	uint64_t n_out, n_filtered, n_bad;
	struct log_limit gap_log;
};

/* Set by SIGTERM/SIGINT (and the parent's death); the loops check it. */
extern volatile sig_atomic_t stage_stopping;

/* Parse argv, open everything, run the stage; returns the exit status
 * (0, EXIT_PERMANENT for configuration errors, EXIT_TEMPORARY otherwise). */
int stage_main(int argc, char **argv, const struct stage_ops *ops, void *ctx);

/* Append one record to every out-queue's batch, sending a batch first when
 * it is full. Telemetry counts once in `out`, whatever the fan-out. Returns
 * 0, or -1 if a send failed for good (logged). */
int stage_emit(struct stage *st, uint8_t type, const char *name,
    size_t name_len, uint32_t value);
/* Append one encoded record (wire_rec.raw, or wire_encode_*) of `type`
 * to every out-queue's batch, as stage_emit does. Returns 0 or -1. */
int stage_emit_raw(struct stage *st, uint8_t type, const void *rec,
    size_t size);
/* Send every non-empty batch now and settle the counters of the records
 * handled so far. Returns 0 or -1 (logged). */
int stage_push(struct stage *st);
/* Append a record of `type` exactly as it
 * came in (rec[0..size), wire_rec.raw: the in and out encodings are the
 * same) to every out-queue's batch: stage_emit_raw, with the common case
 * of a batch that has room inline. Returns 0 or -1. */
static inline int
stage_pass_raw(struct stage *st, uint8_t type, const void *rec, size_t size)
{
	struct wire_writer *w = &st->w;
	if (st->nout == 0 || w->cap - w->len < size)
		return stage_emit_raw(st, type, rec, size);
	memcpy(w->buf + w->len, rec, size);
	w->len += size;
	w->count++;
	if (wire_counts(type))
		st->w_tel++;
	return 0;
}
/* What the skeleton does with one record of a checked, booked message:
 * on_record, or the rule for statsd and report records a stage does not
 * take, on_flush for a Flush. Returns 1 for a Stop record (nothing after
 * it in the message may be taken), else 0. For an on_msg hook. */
int stage_take_record(struct stage *st, const struct wire_rec *r);
/* A record the stage's rule drops: booked in `filtered` with the batch. */
static inline void
stage_filtered(struct stage *st)
{
	st->n_filtered++;
}
/* Book n records of a holds_records stage as `out` (no longer in
 * flight), one store: call it only once they survive the stage's death. */
void stage_commit(struct stage *st, uint64_t n);
/* Which books the stage's counters are: this run of the supervisor and
 * this definition of the stage (common/stats.h born); 0 without a stats
 * segment. A state file records it beside the `out` it booked. */
uint64_t stage_books_id(const struct stage *st);
/* At the load of a holds_records stage's state file (common/state.h)
 * written for the books `run` (stage_books_id) when its slot's `out` would be
 * `committed` once booked: raise `out` to that, and `lost` down by as
 * much, when this run's `out` is behind it (killed after the save was
 * in place, before booking it, those records were booked lost). */
void stage_book_saved(struct stage *st, const char *path, uint64_t run,
    uint64_t committed);
/* At the load of a holds_records stage's state file that holds `held` of
 * the records its books (stage_books_id) booked `out`: the file's
 * `committed` if it was written for these books, else 0 (no file, one set
 * aside, one of another run). The rest were saved in a file that is gone
 * (removed by hand, with its folder, set aside, replaced by an older
 * one): returns how many, and with `lose` moves them from `out` to
 * `lost`, since the aggregates the stage starts from lack them. */
uint64_t stage_book_gone(struct stage *st, uint64_t held, int lose);
/* A save of the stage's state file with w failed: one line naming the
 * step and its file, at most every 10 s by lim, and save_failing set in
 * its slot so that `telemctl books` says why its records stay in flight;
 * stage_save_done clears it after a save that succeeded. */
void stage_save_failed(struct stage *st, const struct state_writer *w,
    struct log_limit *lim);
void stage_save_done(struct stage *st);
/* Announce readiness on --ready-fd by writing "R\n", exactly (once; later
 * calls do nothing). */
void stage_ready(struct stage *st);

/* How many messages a reader of a queue of `capacity` messages lets
 * gather before it takes them (and ingest, for its out-queues): half of a
 * queue deeper than 10, two fifths of a shallower one, one at least. */
size_t stage_gather_msgs(size_t capacity);
/* The receive loop's nap before its next round, in µs (0: wait on the
 * queue at once; common/stage.c says why): `got` messages came in the
 * `spent_us` since the last round began (its nap and the wait for the
 * first), the first one after a wait of `waited_us`; `emptied`: the round
 * ended on an empty queue; long enough for stage_gather_msgs(capacity)
 * more at that rate, at most stage_gather_max_us(capacity). */
long stage_gather_nap(long got, long spent_us, long waited_us, int emptied,
    size_t capacity);
/* The bound on that nap for a queue of `capacity` messages: 1 ms for 10
 * or fewer; for a deeper ring STAGE_GATHER_RING_US for the default depth
 * (CHAN_SHM_SLOTS_DEFAULT) and in proportion to its depth for others, at
 * most STAGE_GATHER_MAX_US. */
#define STAGE_GATHER_RING_US 4000
#define STAGE_GATHER_MAX_US 16000
long stage_gather_max_us(size_t capacity);
/* A nap of `nap` µs from `now` (CLOCK_MONOTONIC µs) cut to end 1 ms before
 * the tick at next_ms (the low 32 bits of CLOCK_MONOTONIC ms, as
 * stats_seg.flush_next_ms; 0: no schedule), and 0 within that last
 * millisecond. A tick more than 1 ms past (the supervisor has not moved
 * it yet) leaves the nap as it is. */
long stage_nap_before_tick(long nap, long now, uint32_t next_ms);

/* Parse a decimal u32 option value. Returns 0 or -1. */
int stage_parse_u32(const char *s, uint32_t *v);

#endif
