/* telem-egress-ckms: one CKMS sketch per name; on Flush, if anything
 * arrived since the last report, prints quantiles 0, 0.25, 0.5, 0.75, 0.9
 * and 0.99 of every name, names in ascending byte order
 * (docs/design.md §4). */
#include <malloc.h>
#include <stdlib.h>

#include "egress/ckms.h"
#include "egress/egress.h"

struct ckms_egress {
	struct egress e;
	double eps;
};

/* A name's state: its sketch, and the sum of its values for the
 * summary's sum (report entries; the sketch keeps no sum). */
struct ckms_name {
	struct ckms *s;
	double sum;
};

enum { OPT_ERROR = 256 };

static const struct option opts[] = {
	{ "error", required_argument, NULL, OPT_ERROR },
	EGRESS_OPTS,
	{ NULL, 0, NULL, 0 },
};

static int
ckms_option(struct stage *st, int opt, const char *arg)
{
	struct ckms_egress *c = st->ctx;
	if (opt != OPT_ERROR)
		return egress_option(&c->e, opt, arg);
	char *end;
	c->eps = strtod(arg, &end);
	if (*arg == '\0' || *end != '\0' || !(c->eps > 0 && c->eps < 0.5)) {
		log_warnx("--error %s: must be a number in (0, 0.5)", arg);
		return -1;
	}
	return 0;
}

static void
save_sketch(struct state_writer *w, const void *payload)
{
	const struct ckms_name *n = payload;
	ckms_save(n->s, w);
	state_put(w, &n->sum, sizeof(n->sum));
}

static int
load_sketch(void *e, struct state_reader *r, void *payload, const char **why)
{
	struct ckms_egress *c = e;  /* e is its first member */
	struct ckms_name *n = payload;
	n->s = ckms_load(c->eps, r, why);
	if (n->s == NULL)
		return -1;
	if (state_get(r, &n->sum, sizeof(n->sum)) == -1 || !(n->sum >= 0)) {
		*why = "sum cut short or impossible";
		return -1;
	}
	return 0;
}

static void
free_sketch(void *payload)
{
	ckms_free(((struct ckms_name *)payload)->s);
}

static const struct egress_kind sketches = {
	.kind = STATE_CKMS,
	.save_one = save_sketch,
	.load_one = load_sketch,
	.free_one = free_sketch,
};

static int
ckms_init(struct stage *st)
{
	struct ckms_egress *c = st->ctx;
	c->e.state_param = c->eps;
	return egress_init(st, &c->e, sizeof(struct ckms_name), &sketches,
	    REPORT_SRC_CKMS);
}

static inline void
insert_one(void *ctx, void *payload, int created, uint32_t value)
{
	const struct ckms_egress *c = ctx;
	struct ckms_name *n = payload;
	if (created && (n->s = ckms_new(c->eps)) == NULL)
		fatal(EXIT_TEMPORARY, "ckms_new");
	ckms_insert(n->s, value);
	n->sum += value;
}

/* The on_msg hook: egress_msg's loop with insert_one. */
static int
ckms_msg(struct stage *st, const void *msg, size_t len)
{
	struct ckms_egress *c = st->ctx;
	(void)len;
	return egress_msg(st, &c->e, msg, insert_one, c);
}

static void
report_one(void *ctx, const char *name, size_t len, void *payload)
{
	static const double q[] = { 0, 0.25, 0.5, 0.75, 0.9, 0.99 };
	static const char *const label[] = { "0", "0.25", "0.5", "0.75", "0.9", "0.99" };
	static const char *const field[] = { "q0", "q0.25", "q0.5", "q0.75",
	    "q0.9", "q0.99" };
	struct egress *e = ctx;
	struct ckms_name *n = payload;
	int entries = egress_entries_wanted(e);
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		unsigned v = (unsigned)ckms_query(n->s, q[i]);
		report_printf(&e->rep, "[CKMS] %.*s %s:%u\n", (int)len, name,
		    label[i], v);
		if (entries)
			egress_entry(e, name, len, REPORT_SUM_QUANTILE, field[i], v);
	}
	if (entries) {
		egress_entry(e, name, len, REPORT_SUM_SUM, "sum", n->sum);
		egress_entry(e, name, len, REPORT_SUM_COUNT, "count",
		    (double)ckms_count(n->s));
	}
}

static void
ckms_flush(struct stage *st)
{
	struct ckms_egress *c = st->ctx;
	egress_flush(st, &c->e, report_one);
	/* Sample arrays start on the heap and move to mappings of their own
	 * as they grow (ckms.c); the holes they leave stay resident until
	 * given back. Once a Flush is cheap (well under a millisecond with
	 * 100 000 names) and keeps the peak RSS of a young egress down. */
	malloc_trim(0);
}

static void
ckms_tick(struct stage *st)
{
	struct ckms_egress *c = st->ctx;
	egress_tick(st, &c->e);
}

static void
ckms_fini(struct stage *st)
{
	struct ckms_egress *c = st->ctx;
	egress_fini(st, &c->e);
}

int
main(int argc, char **argv)
{
	static const struct stage_ops ops = {
		.prog = "telem-egress-ckms",
		.default_name = "ckms",
		.synopsis = "[--error EPS] " EGRESS_SYNOPSIS,
		.help = "      --error EPS      rank error of the sketch, in (0, 0.5)"
		        " (default 0.01)\n" EGRESS_HELP,
		.longopts = opts,
		.option = ckms_option,
		.init = ckms_init,
		.on_msg = ckms_msg,
		.on_flush = ckms_flush,
		.on_tick = ckms_tick,
		.fini = ckms_fini,
		.needs_in = 1,
		.holds_records = 1,
	};
	struct ckms_egress c = { .eps = 0.01 };
	return stage_main(argc, argv, &ops, &c);
}
