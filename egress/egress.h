/* egress.h - what the two egresses share: the per-name table with its cap,
 * the "new data since the last report" flag, the report writer and the
 * optional graphite sink that gets every reported value too. */
#ifndef TELEM_EGRESS_H
#define TELEM_EGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "egress/carbon.h"
#include "egress/names.h"
#include "egress/report.h"
#include "log.h"
#include "stage.h"

#define EGRESS_MAX_NAMES_DEFAULT 100000
enum {
	EGRESS_OPT_MAX_NAMES = 300,
	EGRESS_OPT_GRAPHITE,
	EGRESS_OPT_GRAPHITE_PREFIX,
	EGRESS_OPT_GRAPHITE_BUFFER,
};
#define EGRESS_OPTS \
	{ "max-names", required_argument, NULL, EGRESS_OPT_MAX_NAMES }, \
	{ "graphite", required_argument, NULL, EGRESS_OPT_GRAPHITE }, \
	{ "graphite-prefix", required_argument, NULL, EGRESS_OPT_GRAPHITE_PREFIX }, \
	{ "graphite-buffer", required_argument, NULL, EGRESS_OPT_GRAPHITE_BUFFER }
#define EGRESS_SYNOPSIS "[--max-names N] [--graphite HOST:PORT " \
	"[--graphite-prefix P] [--graphite-buffer BYTES]] "
#define EGRESS_HELP \
	"      --max-names N    distinct names kept; new names past it are dropped\n" \
	"                       and counted (default 100000)\n" \
	"      --graphite HOST:PORT  also send every reported value to carbon\n" \
	"                       (plaintext over TCP, never blocking the egress)\n" \
	"      --graphite-prefix P   metric names are P.NAME.STAT (default telem)\n" \
	"      --graphite-buffer BYTES  lines kept while carbon is away; when full\n" \
	"                       the oldest are dropped and counted (default 4194304)\n"

struct egress {
	struct names *names;
	size_t max_names;
	size_t payload;      /* bytes of per-name state */
	int dirty;           /* data arrived since the last report */
	struct report rep;
	struct log_limit cap_log;
	/* --graphite: the sink, or NULL */
	char g_host[CARBON_HOST_MAX], g_port[8];
	const char *g_prefix;
	uint32_t g_buffer;
	struct carbon *sink;
	long long flush_ts;  /* the Flush being reported, unix seconds */
	uint64_t sink_dropped_seen; /* already added to the stats slot */
};

/* Take --max-names and the --graphite options. Returns 0 or -1 (logged). */
int egress_option(struct egress *e, int opt, const char *arg);
/* Allocate the table and the graphite sink if asked for. Returns 0 or -1
 * (logged). */
int egress_init(struct egress *e, size_t payload);
/* The state of r's name, created zeroed on first sight (*created = 1).
 * NULL when the name cap is reached: the record is counted in `dropped`
 * and logged at most once a minute. Exits 111 when memory runs out. */
void *egress_lookup(struct stage *st, struct egress *e, const char *name,
    size_t len, int *created);
/* On Flush: if data arrived since the last report, call one(e, name, len,
 * payload) for every name in ascending byte order, then write the report
 * and hand the graphite lines to the sink. e->flush_ts is the time of this
 * Flush, taken once, for every line of it. */
void egress_flush(struct stage *st, struct egress *e,
    void (*one)(void *e, const char *name, size_t len, void *payload));
/* Queue one value of a name for graphite, stamped e->flush_ts (nothing
 * without --graphite). */
void egress_graphite(struct egress *e, const char *name, size_t len,
    const char *stat, const char *value);
/* The receive loop's tick: let the sink make progress and book its drops
 * in the stats slot (sink_dropped). */
void egress_tick(struct stage *st, struct egress *e);
/* Write what is gathered, give the sink up to a second to deliver what it
 * holds, and free everything. */
void egress_fini(struct egress *e, void (*fini)(void *payload));

#endif
