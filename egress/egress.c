/* egress.c - name table, cap and bookkeeping shared by both egresses. */
#include "egress/egress.h"

#include <errno.h>
#include <stdlib.h>

int
egress_option(struct egress *e, int opt, const char *arg)
{
	uint32_t v;
	if (opt != EGRESS_OPT_MAX_NAMES)
		return -1;
	if (stage_parse_u32(arg, &v) == -1 || v == 0) {
		log_warnx("--max-names %s: must be 1..4294967295", arg);
		return -1;
	}
	e->max_names = v;
	return 0;
}

int
egress_init(struct egress *e, size_t payload)
{
	if (e->max_names == 0)
		e->max_names = EGRESS_MAX_NAMES_DEFAULT;
	e->payload = payload;
	e->names = names_new(payload, e->max_names);
	if (e->names == NULL) {
		log_warn("names_new");
		return -1;
	}
	return 0;
}

void *
egress_lookup(struct stage *st, struct egress *e, const char *name, size_t len,
    int *created)
{
	*created = 0;
	void *p = names_get(e->names, name, len, created);
	if (p != NULL)
		return p;
	if (errno != ENOSPC)
		fatal(EXIT_TEMPORARY, "out of memory for name table");
	stats_add(&st->stats->dropped, 1);
	long long s = log_limit_pass(&e->cap_log, 60000);
	if (s >= 0)
		log_warnx("name cap of %zu reached: new names dropped "
		    "(%lld more since the last line)", e->max_names, s);
	return NULL;
}

void
egress_fini(struct egress *e, void (*fini)(void *payload))
{
	report_flush(&e->rep);
	if (e->names != NULL)
		names_free(e->names, fini);
	e->names = NULL;
}
