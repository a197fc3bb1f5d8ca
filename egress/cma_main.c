/* telem-egress-cma: a cumulative moving average per name; on Flush, if
 * anything arrived since the last report, prints every name's average as
 * the shortest decimal that reads back to the same double
 * (docs/design.md §4). */
#include "egress/cma.h"
#include "egress/egress.h"

static const struct option opts[] = {
	EGRESS_OPTS,
	{ NULL, 0, NULL, 0 },
};

static int
cma_option(struct stage *st, int opt, const char *arg)
{
	return egress_option(st->ctx, opt, arg);
}

static void
save_average(struct state_writer *w, const void *payload)
{
	state_put(w, payload, sizeof(struct cma));
}

static int
load_average(void *e, struct state_reader *r, void *payload, const char **why)
{
	(void)e;
	struct cma *m = payload;
	/* A name exists once it has a value; values are 0..UINT32_MAX, and
	 * so is their mean (NaN fails too). */
	if (state_get(r, m, sizeof(*m)) == -1 || m->n == 0 ||
	    !(m->mean >= 0 && m->mean <= (double)UINT32_MAX)) {
		*why = "average cut short or impossible";
		return -1;
	}
	return 0;
}

static const struct egress_kind averages = {
	.kind = STATE_CMA,
	.save_one = save_average,
	.load_one = load_average,
};

static int
cma_init(struct stage *st)
{
	return egress_init(st, st->ctx, sizeof(struct cma), &averages,
	    REPORT_SRC_CMA);
}

static void
report_one(void *ctx, const char *name, size_t len, void *payload)
{
	struct egress *e = ctx;
	const struct cma *m = payload;
	char num[64];
	if (cma_format(m->mean, num, sizeof(num)) < 0)
		return;
	report_printf(&e->rep, "[CMA] %.*s %s\n", (int)len, name, num);
	if (egress_entries_wanted(e)) {
		egress_entry(e, name, len, REPORT_GAUGE, "cma", m->mean);
		egress_entry(e, name, len, REPORT_COUNTER, "count", (double)m->n);
	}
}

static void
cma_flush(struct stage *st)
{
	egress_flush(st, st->ctx, report_one);
}

static void
cma_tick(struct stage *st)
{
	egress_tick(st, st->ctx);
}

static void
cma_fini(struct stage *st)
{
	egress_fini(st, st->ctx);
}

int
main(int argc, char **argv)
{
	static const struct stage_ops ops = {
		.prog = "telem-egress-cma",
		.default_name = "cma",
		.synopsis = EGRESS_SYNOPSIS,
		.help = EGRESS_HELP,
		.longopts = opts,
		.option = cma_option,
		.init = cma_init,
		.on_msg = cma_msg,
		.on_flush = cma_flush,
		.on_tick = cma_tick,
		.fini = cma_fini,
		.needs_in = 1,
		.holds_records = 1,
	};
	struct egress e = { 0 };
	return stage_main(argc, argv, &ops, &e);
}
