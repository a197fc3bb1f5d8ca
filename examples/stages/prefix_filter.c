/* telem-example-prefix: a stage of one's own on common/stage.h. It keeps
 * the events whose name starts with --prefix P, drops the others (counted
 * `filtered`, for the books), and passes Flush on. Declared in a pipeline
 * file like any stage (README "Writing a stage"):
 *   [stage web]
 *   exec = telem-example-prefix
 *   args = --prefix web.
 *   out = ckms
 *   flush = yes */
#include <string.h>

#include "log.h"
#include "stage.h"

struct prefix {
	const char *p;
	size_t n;
};

static const struct option opts[] = {
	{ "prefix", required_argument, NULL, 256 },
	{ NULL, 0, NULL, 0 },
};

static int
take_option(struct stage *st, int opt, const char *arg)
{
	struct prefix *f = st->ctx;
	(void)opt;
	f->p = arg;
	f->n = strlen(arg);
	return 0;
}

static void
on_record(struct stage *st, const struct wire_rec *r)
{
	const struct prefix *f = st->ctx;
	if (r->name_len >= f->n && memcmp(r->name, f->p, f->n) == 0)
		stage_emit(st, WIRE_TELEMETRY, r->name, r->name_len, r->value);
	else
		stage_filtered(st);    /* counted, so that the books balance */
}

static void
on_flush(struct stage *st)
{
	stage_emit(st, WIRE_FLUSH, NULL, 0, 0);
}

int
main(int argc, char **argv)
{
	static const struct stage_ops ops = {
		.prog = "telem-example-prefix",
		.default_name = "prefix",
		.synopsis = "--prefix P ",
		.help = "      --prefix P       pass events whose name starts with P\n",
		.longopts = opts,
		.option = take_option,
		.on_record = on_record,
		.on_flush = on_flush,
		.needs_in = 1,
	};
	struct prefix f = { "", 0 };
	return stage_main(argc, argv, &ops, &f);
}
