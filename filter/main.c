/* telem-filter: keeps the events on one side of a limit and forwards Flush.
 * In the default pipeline `low` runs --keep-below 100 (value <= 100) into
 * the CKMS egress and `high` runs --keep-above 100 (value >= 100) into CMA.
 * statsd records (docs/design.md §14) have no u32 value to compare: they
 * and their meta records pass unchanged, as does the Flush's interval. */
#include <stdlib.h>

#include "filter/filter.h"
#include "log.h"
#include "stage.h"

enum { OPT_BELOW = 256, OPT_ABOVE };

static const struct option opts[] = {
	{ "keep-below", required_argument, NULL, OPT_BELOW },
	{ "keep-above", required_argument, NULL, OPT_ABOVE },
	{ NULL, 0, NULL, 0 },
};

static int
filter_option(struct stage *st, int opt, const char *arg)
{
	struct filter *f = st->ctx;
	if (f->set) {
		log_warnx("--keep-%s %s: give one of --keep-below and --keep-above, "
		    "once", opt == OPT_BELOW ? "below" : "above", arg);
		return -1;
	}
	if (stage_parse_u32(arg, &f->limit) == -1) {
		log_warnx("--keep-%s %s: limit must be 0..4294967295",
		    opt == OPT_BELOW ? "below" : "above", arg);
		return -1;
	}
	f->below = opt == OPT_BELOW;
	f->set = 1;
	return 0;
}

static int
filter_init(struct stage *st)
{
	const struct filter *f = st->ctx;
	if (!f->set) {
		log_warnx("one of --keep-below N or --keep-above N is required");
		exit(EXIT_PERMANENT);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct stage_ops ops = {
		.prog = "telem-filter",
		.default_name = "filter",
		.synopsis = "--keep-below N | --keep-above N ",
		.help = "      --keep-below N   pass events with value <= N\n"
		        "      --keep-above N   pass events with value >= N\n"
		        "                       (statsd metrics pass unchanged)\n",
		.longopts = opts,
		.option = filter_option,
		.init = filter_init,
		.on_record = filter_record,
		.on_msg = filter_msg,
		.on_flush = filter_flush,
		.needs_in = 1,
		.takes_statsd = 1,
	};
	struct filter f = { 0, 0, 0 };
	return stage_main(argc, argv, &ops, &f);
}
