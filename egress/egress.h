/* egress.h - what the two egresses share: the per-name table with its cap,
 * the "new data since the last report" flag and the report writer. */
#ifndef TELEM_EGRESS_H
#define TELEM_EGRESS_H

#include <stddef.h>

#include "egress/names.h"
#include "egress/report.h"
#include "log.h"
#include "stage.h"

#define EGRESS_MAX_NAMES_DEFAULT 100000
#define EGRESS_OPT_MAX_NAMES 300
#define EGRESS_OPTS \
	{ "max-names", required_argument, NULL, EGRESS_OPT_MAX_NAMES }
#define EGRESS_HELP \
	"      --max-names N    distinct names kept; new names past it are dropped\n" \
	"                       and counted (default 100000)\n"

struct egress {
	struct names *names;
	size_t max_names;
	size_t payload;      /* bytes of per-name state */
	int dirty;           /* data arrived since the last report */
	struct report rep;
	struct log_limit cap_log;
};

/* Take --max-names. Returns 0 or -1 (logged). */
int egress_option(struct egress *e, int opt, const char *arg);
/* Allocate the table. Returns 0 or -1 (logged). */
int egress_init(struct egress *e, size_t payload);
/* The state of r's name, created zeroed on first sight (*created = 1).
 * NULL when the name cap is reached: the record is counted in `dropped`
 * and logged at most once a minute. Exits 111 when memory runs out. */
void *egress_lookup(struct stage *st, struct egress *e, const char *name,
    size_t len, int *created);
void egress_fini(struct egress *e, void (*fini)(void *payload));

#endif
