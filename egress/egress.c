/* egress.c - name table, cap, report and report-entry bookkeeping shared
 * by both egresses. */
#include "egress/egress.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "egress/report_emit.h"
#include "wire.h"

int
egress_option(struct egress *e, int opt, const char *arg)
{
	uint32_t v;
	switch (opt) {
	case EGRESS_OPT_MAX_NAMES:
		if (stage_parse_u32(arg, &v) == -1 || v == 0) {
			log_warnx("--max-names %s: must be 1..4294967295", arg);
			return -1;
		}
		e->max_names = v;
		return 0;
	case EGRESS_OPT_STATE:
		if (*arg == '\0' || strlen(arg) > sizeof(e->sw->tmp) - 8) {
			log_warnx("--state %s: must be a path of 1..%zu bytes", arg,
			    sizeof(e->sw->tmp) - 8);
			return -1;
		}
		e->state_path = arg;
		return 0;
	}
	return -1;
}

/* The body of a state file: the name count and the report flag, then per
 * name its length (1 byte), its bytes and its payload (kind->save_one). */
struct body_hdr {
	uint64_t nnames;
	uint64_t dirty;
};

/* Fill the empty table from r. Returns 0, or -1 with *why. */
static int
load_body(struct egress *e, struct state_reader *r, const char **why)
{
	struct body_hdr h;
	if (state_get(r, &h, sizeof(h)) == -1 || h.dirty > 1) {
		*why = "body header cut short or wrong";
		return -1;
	}
	for (uint64_t i = 0; i < h.nnames; i++) {
		uint8_t len;
		const char *name;
		int created;
		if (state_get(r, &len, 1) == -1 ||
		    (name = state_take(r, len)) == NULL) {
			*why = "name cut short";
			return -1;
		}
		if (!wire_name_ok(name, len)) {
			*why = "holds a name that is not valid";
			return -1;
		}
		void *p = names_get(e->names, name, len, &created);
		if (p == NULL) {
			*why = errno == ENOSPC ? "holds more names than --max-names" :
			    "no memory for its names";
			return -1;
		}
		if (!created) {
			*why = "holds a name twice";
			return -1;
		}
		if (e->kind->load_one(e, r, p, why) == -1)
			return -1;
	}
	if (r->left != 0) {
		*why = "bytes after the last name";
		return -1;
	}
	e->dirty = (int)h.dirty;
	return 0;
}

static void
load_state(struct stage *st, struct egress *e)
{
	struct state_info info;
	struct state_reader r;
	const char *why = NULL;
	int rc = state_load(e->state_path, e->kind->kind, e->state_param, &info,
	    &r, &why);
	if (rc == 1 && load_body(e, &r, &why) == -1)
		rc = -1;
	state_close(&r);
	/* Records this run saved that the file does not hold went with the
	 * file that held them: lost, and said (docs/design.md §13). */
	uint64_t gone = stage_book_gone(st, rc == 1 &&
	    info.run == stage_books_id(st) ? info.committed : 0, 1);
	if (rc == 0) {
		if (gone > 0)
			log_warnx("state file %s is missing, without the %llu "
			    "records applied in this run: counted lost, starting "
			    "empty", e->state_path, (unsigned long long)gone);
		return;
	}
	if (rc == -1) {
		names_free(e->names, e->kind->free_one);
		e->names = names_new(e->payload, e->max_names);
		if (e->names == NULL)
			fatal(EXIT_TEMPORARY, "names_new");
		e->dirty = 0;
		char more[256];
		if (gone > 0) {
			snprintf(more, sizeof(more), "%s (%llu records applied in "
			    "this run counted lost)", why, (unsigned long long)gone);
			why = more;
		}
		state_reject(e->state_path, why);
		return;
	}
	if (gone > 0)
		log_warnx("state file %s is an older save, without %llu records "
		    "applied in this run: counted lost", e->state_path,
		    (unsigned long long)gone);
	stage_book_saved(st, e->state_path, info.run, info.committed);
	log_info("state of %zu names loaded from %s", names_count(e->names),
	    e->state_path);
}

int
egress_init(struct stage *st, struct egress *e, size_t payload,
    const struct egress_kind *kind, uint8_t source)
{
	e->st = st;
	e->rep.dropped = &st->stats->sink_dropped;
	e->source = source;
	e->reset_due = 1;  /* a run before this one may have died mid-report */
	if (e->max_names == 0)
		e->max_names = EGRESS_MAX_NAMES_DEFAULT;
	e->payload = payload;
	e->kind = kind;
	e->names = names_new(payload, e->max_names);
	if (e->names == NULL) {
		log_warn("names_new");
		return -1;
	}
	if (e->state_path != NULL) {
		if ((e->sw = malloc(sizeof(*e->sw))) == NULL) {
			log_warn("malloc");
			return -1;
		}
		load_state(st, e);
	}
	return 0;
}

void *
egress_lookup_miss(struct stage *st, struct egress *e)
{
	if (errno != ENOSPC)
		fatal(EXIT_TEMPORARY, "out of memory for name table");
	stats_add(&st->stats->dropped, 1);
	long long s = log_limit_pass(&e->cap_log, 60000);
	char more[64];
	if (s >= 0)
		log_warnx("name cap of %zu reached (--max-names): records of new "
		    "names dropped, counted in dropped=%s", e->max_names,
		    log_more(more, sizeof(more), s, "since the last line"));
	return NULL;
}

/* Has the last save's time been made up for? (EGRESS_SAVE_SPACING) */
static int
save_spaced(const struct egress *e)
{
	return clock_s() - e->saved_s >= EGRESS_SAVE_SPACING * e->save_cost_s;
}

static void
send_entry(struct egress *e, const struct report_rec *r)
{
	int rc = r->kind == REPORT_END ?
	    report_emit_end(e->st, r->source, r->ts, r->count) :
	    report_emit(e->st, r);
	if (rc == -1) {
		if (!e->entries_failed)
			log_warnx("report entry of %.*s %.*s not sent: the rest of "
			    "this report is not sent either", (int)r->name_len,
			    r->name ? r->name : "", (int)r->field_len,
			    r->field ? r->field : "");
		e->entries_failed = 1;
		e->reset_due = 1;
		return;
	}
	e->entries++;
}

/* End the report's entries and send them. A report with an entry that
 * could not go out gets no END: the sinks discard it whole. */
static void
end_entries(struct stage *st, struct egress *e)
{
	if (!e->entries_failed) {
		struct report_rec end = {
			.kind = REPORT_END, .source = e->source,
			.ts = e->flush_ts, .count = e->entries,
		};
		send_entry(e, &end);
	}
	if (stage_push(st) == -1) {
		log_warnx("report entries not sent");
		e->reset_due = 1;
	}
}

void
egress_entry(struct egress *e, const char *name, size_t len, uint8_t kind,
    const char *field, double value)
{
	if (!egress_entries_wanted(e) || e->entries_failed)
		return;
	struct report_rec r = {
		.kind = kind, .source = e->source,
		.name = name, .name_len = (uint8_t)len,
		.field = field, .field_len = (uint8_t)strlen(field),
		.ts = e->flush_ts, .value = value,
	};
	send_entry(e, &r);
}

void
egress_flush(struct stage *st, struct egress *e,
    void (*one)(void *e, const char *name, size_t len, void *payload))
{
	if (!e->dirty)
		return;
	e->flush_ts = (long long)time(NULL);
	e->entries = 0;
	e->entries_failed = 0;
	if (egress_entries_wanted(e) && e->reset_due)
		e->reset_due = report_emit_reset(st, e->source, e->flush_ts) == -1;
	names_foreach_sorted(e->names, one, e);
	report_flush(&e->rep);
	if (egress_entries_wanted(e))
		end_entries(st, e);
	e->dirty = 0;
	if (e->state_path != NULL) {
		/* Saved as reported, so that a restart does not report the
		 * same data again at the next Flush. */
		if (!e->unsaved) {
			e->unsaved = 1;
			e->unsaved_ms = clock_ms();
		}
		if (save_spaced(e) && !e->save_failed)
			egress_save(st, e);
	}
	egress_tick(st, e);  /* send now, not a tick later */
}

void
egress_applied(struct egress *e)
{
	egress_applied_n(e, 1);
}

void
egress_applied_n(struct egress *e, uint64_t n)
{
	if (n == 0)
		return;
	e->pending += n;
	e->dirty = 1;
	if (!e->unsaved) {
		e->unsaved = 1;
		e->unsaved_ms = clock_ms();
	}
}

static void
save_name(void *ctx, const char *name, size_t len, void *payload)
{
	struct egress *e = ctx;
	uint8_t l = (uint8_t)len;
	state_put(e->sw, &l, 1);
	state_put(e->sw, name, len);
	e->kind->save_one(e->sw, payload);
}

int
egress_save(struct stage *st, struct egress *e)
{
	if (e->state_path == NULL) {
		stage_commit(st, e->pending);
		e->pending = 0;
		e->unsaved = 0;
		return 0;
	}
	if (!e->unsaved)
		return 0;
	double t0 = clock_s();
	if (state_begin(e->sw, e->state_path) == -1)
		goto fail;
	struct body_hdr h = { names_count(e->names), (uint64_t)e->dirty };
	state_put(e->sw, &h, sizeof(h));
	names_foreach_sorted(e->names, save_name, e);
	struct state_info info = {
		.kind = e->kind->kind,
		.param = e->state_param,
		.run = stage_books_id(st),
		.committed = stats_get(&st->stats->out) + e->pending,
	};
	if (state_end(e->sw, &info) == -1)
		goto fail;
	/* Only now are these records safe from a kill: book them. */
	stage_commit(st, e->pending);
	e->pending = 0;
	e->unsaved = 0;
	e->saved_s = clock_s();
	e->save_cost_s = e->saved_s - t0;
	e->save_failed = 0;
	stage_save_done(st);
	return 0;
fail:
	stage_save_failed(st, e->sw, &e->save_log);
	/* Tried again by egress_tick an interval later, and spaced by what
	 * this attempt cost as a save is: not at every report, where a save
	 * that fails late (a rename refused, a full disk) would write the
	 * whole state each time. */
	e->unsaved_ms = clock_ms();
	e->saved_s = clock_s();
	e->save_cost_s = e->saved_s - t0;
	e->save_failed = 1;
	return -1;
}

void
egress_tick(struct stage *st, struct egress *e)
{
	if (e->unsaved && (e->state_path == NULL ||
	    (clock_ms() - e->unsaved_ms >= EGRESS_SAVE_AFTER_MS && save_spaced(e))))
		egress_save(st, e);
}

void
egress_fini(struct stage *st, struct egress *e)
{
	report_flush(&e->rep);
	egress_save(st, e);
	if (e->names != NULL)
		names_free(e->names, e->kind->free_one);
	e->names = NULL;
	free(e->sw);
	e->sw = NULL;
}
