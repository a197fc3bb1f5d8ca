/* egress.h - what the two egresses share: the per-name table with its cap,
 * the "new data since the last report" flag, the report writer and the
 * report entries sent on the out-queues (--out) to the sinks (docs/design.md §15,
 * egress/report_rec.h). */
#ifndef TELEM_EGRESS_H
#define TELEM_EGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "egress/names.h"
#include "egress/report.h"
#include "egress/report_rec.h"
#include "log.h"
#include "stage.h"
#include "state.h"

#define EGRESS_MAX_NAMES_DEFAULT 100000
enum {
	EGRESS_OPT_MAX_NAMES = 300,
	EGRESS_OPT_STATE,
};
#define EGRESS_OPTS \
	{ "max-names", required_argument, NULL, EGRESS_OPT_MAX_NAMES }, \
	{ "state", required_argument, NULL, EGRESS_OPT_STATE }
#define EGRESS_SYNOPSIS "[--max-names N] [--state FILE] "
#define EGRESS_HELP \
	"      --max-names N    distinct names kept; new names past it are dropped\n" \
	"                       and counted (default 100000)\n" \
	"      --state FILE     keep the aggregates in FILE: loaded at start, saved\n" \
	"                       after each report, 1 s after unsaved data and at stop\n" \
	"  With --out QUEUE, each report also goes to QUEUE as report records\n" \
	"  (for telem-sink-carbon, telem-sink-prom), ended by an end-of-report.\n"

/* What an egress keeps per name, as its state file holds it. */
struct egress_kind {
	uint32_t kind;             /* STATE_CKMS, STATE_CMA */
	void (*save_one)(struct state_writer *w, const void *payload);
	/* Fill a zeroed payload from r; 0, or -1 with *why. */
	int (*load_one)(void *e, struct state_reader *r, void *payload,
	    const char **why);
	void (*free_one)(void *payload);   /* NULL: nothing to free */
};

struct egress {
	struct names *names;
	const struct egress_kind *kind;
	double state_param;  /* must match the file's (the ckms error) */
	size_t max_names;
	size_t payload;      /* bytes of per-name state */
	int dirty;           /* data arrived since the last report */
	struct report rep;
	struct log_limit cap_log;
	/* Report entries for the out-queues (nothing without --out). */
	struct stage *st;
	uint8_t source;      /* enum report_source */
	long long flush_ts;  /* the Flush being reported, unix seconds */
	uint64_t entries;    /* entries of the report being sent */
	int entries_failed;  /* one did not go out: the END is withheld */
	int reset_due;       /* the sinks may hold part of a report of ours
	                        (a killed run's, or one not sent whole):
	                        report_emit_reset before the next one */
	/* --state: records applied are booked `out` only once a save holds
	 * them (docs/design.md §13); without it, once applied. */
	const char *state_path;
	uint64_t pending;    /* records applied and not yet booked */
	int unsaved;         /* the state changed since the last save */
	long long unsaved_ms; /* when it first did */
	double saved_s;      /* when the last save ended (clock_s) */
	double save_cost_s;  /* and how long it took */
	int save_failed;     /* the last save failed: egress_tick tries again */
	struct state_writer *sw;
	struct log_limit save_log;
};

/* Take --max-names and --state. Returns 0 or -1 (logged). */
int egress_option(struct egress *e, int opt, const char *arg);
/* Allocate the table and load the state file of --state (a bad one is logged, set aside and the egress
 * starts empty). Returns 0 or -1 (logged). */
int egress_init(struct stage *st, struct egress *e, size_t payload,
    const struct egress_kind *kind, uint8_t source);
/* A record was applied to name's payload: it is booked `out` once saved. */
void egress_applied(struct egress *e);
/* n records were (egress_applied n times, in one step; n may be 0). */
void egress_applied_n(struct egress *e, uint64_t n);
/* The state of r's name, created zeroed on first sight (*created = 1).
 * NULL when the name cap is reached: the record is counted in `dropped`
 * and logged at most once a minute. Exits 111 when memory runs out. */
static inline void *egress_lookup(struct stage *st, struct egress *e,
    const char *name, size_t len, int *created);
/* egress_lookup's way when names_get said NULL (errno as it left it). */
void *egress_lookup_miss(struct stage *st, struct egress *e);
/* Inline: the egresses look up a name per record, nearly always a hit. */
static inline void *
egress_lookup(struct stage *st, struct egress *e, const char *name,
    size_t len, int *created)
{
	void *p = names_get(e->names, name, len, created);
	return p != NULL ? p : egress_lookup_miss(st, e);
}
/* An egress's on_msg loop (common/stage.h): every telemetry record of the
 * checked message applied with apply(ctx, payload, created, value) to
 * its name's payload (egress_lookup; a record over the name cap is
 * skipped, counted there), booked applied once per run of them; every
 * other record goes to stage_take_record, so what came before a Flush is
 * in the report it makes. Inline, so that a constant apply is inlined
 * into the loop: no record costs an indirect call. Returns 1 after a
 * Stop record, else 0. */
static inline int
egress_msg(struct stage *st, struct egress *e, const void *msg,
    void (*apply)(void *ctx, void *payload, int created, uint32_t value),
    void *ctx)
{
	struct wire_reader r;
	struct wire_rec rec;
	uint64_t applied = 0;
	wire_reader_init(&r, msg);
	while (wire_next(&r, &rec)) {
		if (rec.type == WIRE_TELEMETRY) {
			int created;
			void *p = egress_lookup(st, e, rec.name, rec.name_len,
			    &created);
			if (p != NULL) {
				apply(ctx, p, created, rec.value);
				applied++;
			}
			continue;
		}
		egress_applied_n(e, applied);
		applied = 0;
		if (stage_take_record(st, &rec))
			return 1;
	}
	egress_applied_n(e, applied);
	return 0;
}
/* On Flush: if data arrived since the last report, call one(e, name, len,
 * payload) for every name in ascending byte order, then write the report
 * and, with out-queues, end the report entries with REPORT_END and send
 * them. e->flush_ts is the time of this Flush, taken once, for every
 * entry of it. */
void egress_flush(struct stage *st, struct egress *e,
    void (*one)(void *e, const char *name, size_t len, void *payload));
/* Send one report entry of a name (kind: enum report_kind, field as
 * report_rec.h says), stamped e->flush_ts, to the out-queues (nothing
 * without --out). An entry that cannot go out is logged, and that
 * report gets no REPORT_END, so sinks drop it whole. */
void egress_entry(struct egress *e, const char *name, size_t len,
    uint8_t kind, const char *field, double value);
/* 1 if report entries go anywhere (the egress has --out). */
static inline int
egress_entries_wanted(const struct egress *e)
{
	return e->st != NULL && e->st->nout > 0;
}
/* The receive loop's tick: save the state if records have waited
 * unsaved for EGRESS_SAVE_AFTER_MS (without --state: book them). Saves
 * after a report or a tick are spaced by EGRESS_SAVE_SPACING times the
 * last one's duration, so that saving takes at most 1/SPACING of the
 * egress's time however many names it holds (bench/state.c). */
void egress_tick(struct stage *st, struct egress *e);
#define EGRESS_SAVE_AFTER_MS 1000
#define EGRESS_SAVE_SPACING 50
/* Save the state now if it changed, and book what the save holds as
 * `out`. Returns 0, or -1 (logged at most every 10 s; the records stay in
 * flight and the next tick tries again). */
int egress_save(struct stage *st, struct egress *e);
/* Write what is gathered, save the state and free everything. */
void egress_fini(struct stage *st, struct egress *e);

#endif
