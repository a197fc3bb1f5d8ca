/* egress.c - name table, cap, report and graphite bookkeeping shared by
 * both egresses. */
#include "egress/egress.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#define SINK_DRAIN_MS 1000

int
egress_option(struct egress *e, int opt, const char *arg)
{
	uint32_t v;
	const char *why;
	switch (opt) {
	case EGRESS_OPT_MAX_NAMES:
		if (stage_parse_u32(arg, &v) == -1 || v == 0) {
			log_warnx("--max-names %s: must be 1..4294967295", arg);
			return -1;
		}
		e->max_names = v;
		return 0;
	case EGRESS_OPT_GRAPHITE:
		if (carbon_parse_addr(arg, e->g_host, sizeof(e->g_host), e->g_port,
		    sizeof(e->g_port), &why) == -1) {
			log_warnx("--graphite %s: %s", arg, why);
			return -1;
		}
		return 0;
	case EGRESS_OPT_GRAPHITE_PREFIX:
		if (!carbon_prefix_ok(arg)) {
			log_warnx("--graphite-prefix %s: must be 1..%d printable "
			    "characters without spaces", arg, CARBON_PREFIX_MAX);
			return -1;
		}
		e->g_prefix = arg;
		return 0;
	case EGRESS_OPT_GRAPHITE_BUFFER:
		if (stage_parse_u32(arg, &v) == -1 || v < CARBON_BUFFER_MIN ||
		    v > CARBON_BUFFER_MAX) {
			log_warnx("--graphite-buffer %s: must be %u..%u bytes", arg,
			    CARBON_BUFFER_MIN, CARBON_BUFFER_MAX);
			return -1;
		}
		e->g_buffer = v;
		return 0;
	}
	return -1;
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
	if (e->g_host[0] != '\0') {
		const char *why;
		e->sink = carbon_new(e->g_host, e->g_port,
		    e->g_prefix ? e->g_prefix : "telem",
		    e->g_buffer ? e->g_buffer : CARBON_BUFFER_DEFAULT, &why);
		if (e->sink == NULL) {
			log_warnx("--graphite %s:%s: %s", e->g_host, e->g_port, why);
			return -1;
		}
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
egress_flush(struct stage *st, struct egress *e,
    void (*one)(void *e, const char *name, size_t len, void *payload))
{
	if (!e->dirty)
		return;
	e->flush_ts = (long long)time(NULL);
	names_foreach_sorted(e->names, one, e);
	report_flush(&e->rep);
	e->dirty = 0;
	egress_tick(st, e);  /* send now, not a tick later */
}

void
egress_graphite(struct egress *e, const char *name, size_t len,
    const char *stat, const char *value)
{
	if (e->sink != NULL)
		carbon_line(e->sink, name, len, stat, value, e->flush_ts);
}

void
egress_tick(struct stage *st, struct egress *e)
{
	if (e->sink == NULL)
		return;
	carbon_poll(e->sink);
	uint64_t d = carbon_dropped(e->sink);
	if (d > e->sink_dropped_seen) {
		stats_add(&st->stats->sink_dropped, d - e->sink_dropped_seen);
		e->sink_dropped_seen = d;
	}
}

void
egress_fini(struct egress *e, void (*fini)(void *payload))
{
	report_flush(&e->rep);
	if (e->sink != NULL) {
		carbon_drain(e->sink, SINK_DRAIN_MS);
		carbon_free(e->sink);
		e->sink = NULL;
	}
	if (e->names != NULL)
		names_free(e->names, fini);
	e->names = NULL;
}
