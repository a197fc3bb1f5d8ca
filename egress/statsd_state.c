/* statsd_state.c - telem-egress-statsd's state file: per gauge its key
 * (1 byte length, bytes), value and TTL (common/state.h does the rest). */
#include "egress/statsd_state.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "egress/statsd_agg_impl.h"
#include "log.h"
#include "state.h"
#include "wire.h"

struct gauge_rec {
	double v;
	uint32_t ttl;
	uint32_t has_ttl;
};

static void
save_one(void *ctx, const char *key, size_t len, void *payload)
{
	struct state_writer *w = ctx;
	const struct gauge *g = payload;
	uint8_t l = (uint8_t)len;
	struct gauge_rec r = { g->v, g->ttl, (uint32_t)g->has_ttl };
	state_put(w, &l, 1);
	state_put(w, key, len);
	state_put(w, &r, sizeof(r));
}

int
statsd_state_save(struct state_writer *w, struct statsd_agg *a,
    const char *path, uint64_t run, uint64_t committed)
{
	uint64_t n = names_count(a->gauges);
	if (state_begin(w, path) == -1)
		return -1;
	state_put(w, &n, sizeof(n));
	names_foreach_sorted(a->gauges, save_one, w);
	struct state_info info = {
		.kind = STATE_STATSD, .run = run, .committed = committed,
	};
	return state_end(w, &info);
}

static long
load_body(struct statsd_agg *a, struct state_reader *r, const char **why)
{
	uint64_t n;
	if (state_get(r, &n, sizeof(n)) == -1) {
		*why = "cut short";
		return -1;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint8_t len;
		const char *key;
		struct gauge_rec g;
		int created;
		if (state_get(r, &len, 1) == -1 || (key = state_take(r, len)) == NULL ||
		    state_get(r, &g, sizeof(g)) == -1) {
			*why = "cut short";
			return -1;
		}
		if (!wire_name_ok(key, len) || !isfinite(g.v) || g.has_ttl > 1) {
			*why = "holds a gauge that is not valid";
			return -1;
		}
		struct gauge *p = names_get(a->gauges, key, len, &created);
		if (p == NULL || !created) {
			*why = p != NULL ? "holds a gauge twice" : errno == ENOSPC ?
			    "holds more gauges than --max-names" : "no memory";
			return -1;
		}
		p->v = g.v;
		p->ttl = g.ttl;
		p->has_ttl = (int)g.has_ttl;
	}
	if (r->left != 0) {
		*why = "bytes after the last gauge";
		return -1;
	}
	return (long)n;
}

long
statsd_state_load(struct statsd_agg *a, const char *path,
    struct state_info *info)
{
	struct state_reader r;
	const char *why = NULL;
	long n = -1;
	memset(info, 0, sizeof(*info));
	int rc = state_load(path, STATE_STATSD, 0, info, &r, &why);
	if (rc == 1)
		n = load_body(a, &r, &why);
	state_close(&r);
	if (rc == 0)
		return 0;
	if (n >= 0)
		return n;
	memset(info, 0, sizeof(*info));
	/* Leave the table as a fresh one: the gauges read so far go. */
	struct names *fresh = names_new(sizeof(struct gauge), a->max_names);
	if (fresh != NULL) {
		names_free(a->gauges, NULL);
		a->gauges = fresh;
	}
	state_reject(path, why);
	return -1;
}
