/* telem-egress-statsd: statsd 0.9's aggregation at the end of a statsd
 * pipeline (docs/design.md §14). WIRE_STATSD records from `telem-ingest
 * --protocol statsd` go into egress/statsd_agg.h; each Flush writes
 * statsd's Graphite lines, `path value ts`, to carbon (--graphite) or to
 * stdout, and, with --out, the same values as report records
 * (egress/report_rec.h, source statsd) for telem-sink-prom. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "egress/carbon.h"
#include "egress/report.h"
#include "egress/report_emit.h"
#include "egress/statsd_agg.h"
#include "egress/statsd_num.h"
#include "egress/statsd_state.h"
#include "log.h"
#include "stage.h"

#define PERCENT_MAX 16
#define HISTOGRAM_MAX 16
#define BINS_MAX 64
#define SINK_DRAIN_MS 1000
#define FLUSH_MS_UNKNOWN 1000

#define STATSD_EGRESS_HELP \
	"  statsd's config keys:\n" \
	"      --percent P,...  percentThreshold (default 90)\n" \
	"      --histogram METRIC:BIN,...  histogram bins for timers whose key\n" \
	"                       holds METRIC (\"\" for all; inf allowed; repeatable)\n" \
	"      --delete-idle    deleteIdleStats: all four below\n" \
	"      --delete-counters, --delete-timers, --delete-gauges, --delete-sets\n" \
	"                       delete what got nothing since the last flush\n" \
	"      --legacy-namespace yes|no  graphite.legacyNamespace (default yes)\n" \
	"      --global-prefix S, --prefix-counter S, --prefix-timer S,\n" \
	"      --prefix-gauge S, --prefix-set S, --prefix-stats S, --global-suffix S\n" \
	"                       graphite.globalPrefix ... globalSuffix;\n" \
	"                       --prefix-stats is prefixStats (top level)\n" \
	"      --gauges-max-ttl N  flushes an idle gauge is still written before\n" \
	"                       --delete-gauges drops it (default 1)\n" \
	"      --max-names N    keys of each kind; new ones past it are dropped\n" \
	"                       and counted (default 100000)\n" \
	"      --state FILE     keep the gauges in FILE across restarts\n" \
	"      --graphite HOST:PORT  write the lines to carbon (else to stdout)\n" \
	"      --graphite-buffer BYTES  lines kept while carbon is away\n" \
	"      --connection persistent|per-flush  one connection, or one per\n" \
	"                       flush as statsd's graphite backend (default\n" \
	"                       persistent)\n"

struct sd {
	struct statsd_agg_config cfg;
	double percent[PERCENT_MAX];
	struct statsd_histogram hist[HISTOGRAM_MAX];
	double bins[HISTOGRAM_MAX][BINS_MAX];
	char *hist_metric[HISTOGRAM_MAX];
	int delete_idle, del_c, del_t, del_g, del_s;
	struct statsd_agg *agg;
	struct report rep;
	char g_host[CARBON_HOST_MAX], g_port[8];
	uint32_t g_buffer;
	int per_flush;
	struct carbon *sink;
	const char *state_path;
	uint64_t pending;      /* records applied, not yet reported (booked) */
	uint64_t applied;      /* records applied since the last flush */
	long long flushed_ms;  /* clock_ms of the last flush (or the start) */
	uint64_t dropped_seen; /* statsd_agg_stats drops already booked */
	struct log_limit drop_log, flush_log, entry_log, save_log;
	struct stage *st;
	uint64_t entries;      /* report entries sent this flush */
	int entries_failed;    /* one could not go out: no END this flush */
	int reset_due;         /* the sinks may hold part of a report of ours
	                          (a killed run's, or one not sent whole):
	                          report_emit_reset before the next one */
	int median_q;          /* median as quantile 0.5 (no threshold 50) */
};

enum {
	OPT_PERCENT = 256, OPT_HISTOGRAM, OPT_DELETE_IDLE, OPT_DELETE_COUNTERS,
	OPT_DELETE_TIMERS, OPT_DELETE_GAUGES, OPT_DELETE_SETS, OPT_LEGACY,
	OPT_GLOBAL_PREFIX, OPT_PREFIX_COUNTER, OPT_PREFIX_TIMER, OPT_PREFIX_GAUGE,
	OPT_PREFIX_SET, OPT_PREFIX_STATS, OPT_GLOBAL_SUFFIX, OPT_GAUGES_TTL,
	OPT_MAX_NAMES, OPT_GRAPHITE, OPT_GRAPHITE_BUFFER, OPT_CONNECTION,
	OPT_STATE,
};

static const struct option opts[] = {
	{ "percent", required_argument, NULL, OPT_PERCENT },
	{ "histogram", required_argument, NULL, OPT_HISTOGRAM },
	{ "delete-idle", no_argument, NULL, OPT_DELETE_IDLE },
	{ "delete-counters", no_argument, NULL, OPT_DELETE_COUNTERS },
	{ "delete-timers", no_argument, NULL, OPT_DELETE_TIMERS },
	{ "delete-gauges", no_argument, NULL, OPT_DELETE_GAUGES },
	{ "delete-sets", no_argument, NULL, OPT_DELETE_SETS },
	{ "legacy-namespace", required_argument, NULL, OPT_LEGACY },
	{ "global-prefix", required_argument, NULL, OPT_GLOBAL_PREFIX },
	{ "prefix-counter", required_argument, NULL, OPT_PREFIX_COUNTER },
	{ "prefix-timer", required_argument, NULL, OPT_PREFIX_TIMER },
	{ "prefix-gauge", required_argument, NULL, OPT_PREFIX_GAUGE },
	{ "prefix-set", required_argument, NULL, OPT_PREFIX_SET },
	{ "prefix-stats", required_argument, NULL, OPT_PREFIX_STATS },
	{ "global-suffix", required_argument, NULL, OPT_GLOBAL_SUFFIX },
	{ "gauges-max-ttl", required_argument, NULL, OPT_GAUGES_TTL },
	{ "max-names", required_argument, NULL, OPT_MAX_NAMES },
	{ "graphite", required_argument, NULL, OPT_GRAPHITE },
	{ "graphite-buffer", required_argument, NULL, OPT_GRAPHITE_BUFFER },
	{ "connection", required_argument, NULL, OPT_CONNECTION },
	{ "state", required_argument, NULL, OPT_STATE },
	{ NULL, 0, NULL, 0 },
};

/* A number as statsd's config takes one, or "inf" (inf_ok). 0 or -1. */
static int
parse_num(const char *s, size_t len, int inf_ok, double *v)
{
	char buf[64], *end;
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inf_ok && strcmp(buf, "inf") == 0) {
		*v = INFINITY;
		return 0;
	}
	errno = 0;
	*v = strtod(buf, &end);
	return errno != 0 || *end != '\0' || !isfinite(*v) ? -1 : 0;
}

/* "a,b,c" into v[0..max); returns the count, or -1. */
static long
parse_list(const char *s, int inf_ok, double *v, size_t max)
{
	size_t n = 0;
	for (;;) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		if (n == max || parse_num(s, len, inf_ok, &v[n]) == -1)
			return -1;
		n++;
		if (comma == NULL)
			return (long)n;
		s = comma + 1;
	}
}

static int
opt_histogram(struct sd *d, const char *arg)
{
	size_t i = d->cfg.nhistogram;
	const char *colon = strrchr(arg, ':');
	long n;
	if (i == HISTOGRAM_MAX || colon == NULL ||
	    (n = parse_list(colon + 1, 1, d->bins[i], BINS_MAX)) < 1) {
		log_warnx("--histogram %s: must be METRIC:BIN,BIN,... (numbers or "
		    "inf, at most %d bins, at most %d times)", arg, BINS_MAX,
		    HISTOGRAM_MAX);
		return -1;
	}
	d->hist_metric[i] = strndup(arg, (size_t)(colon - arg));
	if (d->hist_metric[i] == NULL) {
		log_warn("malloc");
		return -1;
	}
	d->hist[i] = (struct statsd_histogram){ d->hist_metric[i], d->bins[i],
	    (size_t)n };
	d->cfg.histogram = d->hist;
	d->cfg.nhistogram = i + 1;
	return 0;
}

static int
opt_prefix(const char **slot, const char *opt, const char *arg)
{
	if (strlen(arg) > 128) {
		log_warnx("--%s: at most 128 bytes", opt);
		return -1;
	}
	*slot = arg;
	return 0;
}

static int
sd_option(struct stage *st, int opt, const char *arg)
{
	struct sd *d = st->ctx;
	struct statsd_agg_config *c = &d->cfg;
	uint32_t v;
	long n;
	const char *why;
	switch (opt) {
	case OPT_PERCENT:
		if ((n = parse_list(arg, 0, d->percent, PERCENT_MAX)) < 1) {
			log_warnx("--percent %s: must be numbers separated by ','",
			    arg);
			return -1;
		}
		c->percent = d->percent;
		c->npercent = (size_t)n;
		return 0;
	case OPT_HISTOGRAM:
		return opt_histogram(d, arg);
	case OPT_DELETE_IDLE: d->delete_idle = 1; return 0;
	case OPT_DELETE_COUNTERS: d->del_c = 1; return 0;
	case OPT_DELETE_TIMERS: d->del_t = 1; return 0;
	case OPT_DELETE_GAUGES: d->del_g = 1; return 0;
	case OPT_DELETE_SETS: d->del_s = 1; return 0;
	case OPT_LEGACY:
		if (strcmp(arg, "yes") != 0 && strcmp(arg, "no") != 0) {
			log_warnx("--legacy-namespace %s: must be yes or no", arg);
			return -1;
		}
		c->legacy_namespace = arg[0] == 'y';
		return 0;
	case OPT_GLOBAL_PREFIX: return opt_prefix(&c->global_prefix, "global-prefix", arg);
	case OPT_PREFIX_COUNTER: return opt_prefix(&c->prefix_counter, "prefix-counter", arg);
	case OPT_PREFIX_TIMER: return opt_prefix(&c->prefix_timer, "prefix-timer", arg);
	case OPT_PREFIX_GAUGE: return opt_prefix(&c->prefix_gauge, "prefix-gauge", arg);
	case OPT_PREFIX_SET: return opt_prefix(&c->prefix_set, "prefix-set", arg);
	case OPT_PREFIX_STATS: return opt_prefix(&c->prefix_stats, "prefix-stats", arg);
	case OPT_GLOBAL_SUFFIX: return opt_prefix(&c->global_suffix, "global-suffix", arg);
	case OPT_GAUGES_TTL:
		if (stage_parse_u32(arg, &v) == -1 || v == 0) {
			log_warnx("--gauges-max-ttl %s: must be 1..4294967295", arg);
			return -1;
		}
		c->gauges_max_ttl = v;
		return 0;
	case OPT_MAX_NAMES:
		if (stage_parse_u32(arg, &v) == -1 || v == 0) {
			log_warnx("--max-names %s: must be 1..4294967295", arg);
			return -1;
		}
		c->max_names = v;
		return 0;
	case OPT_GRAPHITE:
		if (carbon_parse_addr(arg, d->g_host, sizeof(d->g_host), d->g_port,
		    sizeof(d->g_port), &why) == -1) {
			log_warnx("--graphite %s: %s", arg, why);
			return -1;
		}
		return 0;
	case OPT_GRAPHITE_BUFFER:
		if (stage_parse_u32(arg, &v) == -1 || v < CARBON_BUFFER_MIN ||
		    v > CARBON_BUFFER_MAX) {
			log_warnx("--graphite-buffer %s: must be %u..%u bytes", arg,
			    CARBON_BUFFER_MIN, CARBON_BUFFER_MAX);
			return -1;
		}
		d->g_buffer = v;
		return 0;
	case OPT_CONNECTION:
		if (strcmp(arg, "persistent") != 0 && strcmp(arg, "per-flush") != 0) {
			log_warnx("--connection %s: must be persistent or per-flush", arg);
			return -1;
		}
		d->per_flush = strcmp(arg, "per-flush") == 0;
		return 0;
	case OPT_STATE:
		if (*arg == '\0' || strlen(arg) > 4000) {
			log_warnx("--state %s: must be a path of 1..4000 bytes", arg);
			return -1;
		}
		d->state_path = arg;
		return 0;
	}
	return -1;
}

/* statsd's processing_time and calculationtime: milliseconds. */
static double
now_ms(void *ctx)
{
	(void)ctx;
	return clock_s() * 1000.0;
}

static int
sd_init(struct stage *st)
{
	struct sd *d = st->ctx;
	struct statsd_agg_config *c = &d->cfg;
	/* deleteIdleStats gives each delete* its value unless set alone, as
	 * statsd's stats.js resolves them. */
	c->delete_counters = d->del_c || d->delete_idle;
	c->delete_timers = d->del_t || d->delete_idle;
	c->delete_gauges = d->del_g || d->delete_idle;
	c->delete_sets = d->del_s || d->delete_idle;
	c->clock_ms = now_ms;
	d->st = st;
	d->rep.dropped = &st->stats->sink_dropped;
	d->median_q = 1;
	d->reset_due = 1;  /* a run before this one may have died mid-report */
	const double *pct = c->npercent ? c->percent : (const double[]){ 90 };
	for (size_t i = 0; i < (c->npercent ? c->npercent : 1); i++)
		if (pct[i] == 50)
			d->median_q = 0;  /* upper_50 is quantile 0.5 */
	if ((d->agg = statsd_agg_new(c)) == NULL) {
		if (errno == EINVAL) {
			log_warnx("the statsd options do not hold together (percent "
			    "thresholds 0 < |P| <= 100 and distinct, histogram bins "
			    "ascending)");
			exit(EXIT_PERMANENT);
		}
		log_warn("statsd_agg_new");
		return -1;
	}
	d->flushed_ms = clock_ms();
	if (d->state_path != NULL) {
		struct state_info info;
		long n = statsd_state_load(d->agg, d->state_path, &info);
		if (n > 0)
			log_info("gauges loaded from %s", d->state_path);
		/* No file, though this run booked records (saved in a file
		 * since removed, or held by an egress without --state before
		 * a reload gave it one): their gauges are gone. The records
		 * stay booked, written by the flushes that booked them
		 * (docs/design.md §13). */
		if (n == 0 && info.kind == 0 && stage_book_gone(st, 0, 0) > 0)
			log_warnx("state file %s is missing, though this run has "
			    "booked records: its gauges start afresh", d->state_path);
		if (n >= 0)
			stage_book_saved(st, d->state_path, info.run, info.committed);
	}
	if (d->g_host[0] != '\0') {
		const char *why;
		d->sink = carbon_new(d->g_host, d->g_port, "statsd",
		    d->g_buffer ? d->g_buffer : CARBON_BUFFER_DEFAULT, &why);
		if (d->sink == NULL) {
			log_warnx("--graphite %s:%s: %s", d->g_host, d->g_port, why);
			return -1;
		}
		if (d->per_flush)
			carbon_set_per_flush(d->sink);
	}
	return 0;
}

/* Book the metrics the aggregator turned away (caps, memory) as
 * `dropped`: settled, not held. */
static void
book_drops(struct stage *st, struct sd *d)
{
	struct statsd_agg_stats s;
	statsd_agg_stats(d->agg, &s);
	uint64_t all = s.dropped_names + s.dropped_members + s.dropped_nomem;
	if (all <= d->dropped_seen)
		return;
	uint64_t n = all - d->dropped_seen;
	d->dropped_seen = all;
	stats_add(&st->stats->dropped, n);
	long long k = log_limit_pass(&d->drop_log, 60000);
	if (k >= 0)
		log_warnx("statsd metrics dropped at the cap (--max-names %zu, or "
		    "set members) or for lack of memory: %llu so far (%lld more "
		    "lines suppressed)", d->cfg.max_names,
		    (unsigned long long)all, k);
}

static void apply_metric(struct stage *st, struct sd *d,
    const struct wire_rec *r);

static void
sd_record(struct stage *st, const struct wire_rec *r)
{
	struct sd *d = st->ctx;
	if (r->type == WIRE_STATSD_META) {
		struct wire_meta m;
		wire_meta_get(r, &m);
		statsd_agg_received(d->agg, m.packets, m.lines, m.bad);
		return;
	}
	if (r->type != WIRE_STATSD) {
		/* A telem record: nothing statsd can make of it. */
		stats_add(&st->stats->dropped, 1);
		return;
	}
	apply_metric(st, d, r);
}

/* One checked WIRE_STATSD record into the aggregator: pending when
 * applied, else booked dropped. */
static inline void
apply_metric(struct stage *st, struct sd *d, const struct wire_rec *r)
{
	struct wire_statsd w;
	wire_statsd_get(r, &w);
	/* statsd_agg_add reads neither name_len nor the tags. */
	struct statsd_metric m = {
		.type = (enum statsd_type)w.stype,
		.key = w.key,
		.key_len = w.key_len,
		.value = w.value,
		.delta = (w.flags & WIRE_STATSD_DELTA) != 0,
		.rate = w.rate,
		.member = w.member,
		.member_len = w.member_len,
	};
	if (statsd_agg_add(d->agg, &m) == 0) {
		d->pending++;
		d->applied++;
		return;
	}
	uint64_t before = d->dropped_seen;
	book_drops(st, d);
	if (d->dropped_seen == before) {
		/* Refused for another reason (not reached for a checked
		 * record): still settled, as dropped. */
		stats_add(&st->stats->dropped, 1);
	}
}

/* The on_msg hook: the message's statsd metrics applied in one loop,
 * without an indirect call each; every other record (statsd's own counts,
 * a Flush, a Stop, a telem record) goes to stage_take_record, which calls
 * sd_record or sd_flush as the skeleton would. */
static int
sd_msg(struct stage *st, const void *msg, size_t len)
{
	struct sd *d = st->ctx;
	struct wire_reader r;
	struct wire_rec rec;
	(void)len;
	wire_reader_init(&r, msg);
	while (wire_next(&r, &rec)) {
		if (rec.type == WIRE_STATSD)
			apply_metric(st, d, &rec);
		else if (stage_take_record(st, &rec))
			return 1;
	}
	return 0;
}

static void
one_line(void *ctx, const char *path, size_t path_len, double value,
    int64_t ts)
{
	struct sd *d = ctx;
	char num[STATSD_NUM_BUF];
	statsd_num_format(num, value);
	if (d->sink != NULL)
		carbon_path_line(d->sink, path, path_len, num, (long long)ts);
	else
		report_printf(&d->rep, "%.*s %s %lld\n", (int)path_len, path, num,
		    (long long)ts);
}

/* The report entry kind of a statsd field (egress/report_rec.h), as
 * telem-sink-prom maps them the way statsd_exporter does: a counter's
 * count, a gauge, a set's count (a gauge); a timer's upper_P (P > 0) as
 * its summary's quantiles, sum and count as the summary's. The rest
 * (median included: one_entry adds it as quantile 0.5) is REPORT_DERIVED,
 * which telem-sink-carbon writes and Prometheus computes itself. */
static uint8_t
entry_kind(enum statsd_type type, const char *f)
{
	switch (type) {
	case STATSD_COUNTER:
		return strcmp(f, "count") == 0 ? REPORT_COUNTER : REPORT_DERIVED;
	case STATSD_GAUGE:
	case STATSD_SET:
		return REPORT_GAUGE;
	case STATSD_TIMER:
		if (strcmp(f, "sum") == 0)
			return REPORT_SUM_SUM;
		if (strcmp(f, "count") == 0)
			return REPORT_SUM_COUNT;
		double q;
		if (strncmp(f, "upper_", 6) == 0 &&
		    report_rec_quantile(f, strlen(f), &q) == 0)
			return REPORT_SUM_QUANTILE;
		return REPORT_DERIVED;
	}
	return 0;
}

/* The tags "k=v;k=v" of a key into r, ordered by key (report_rec.h wants
 * keys strictly ascending; the key's bytewise order of "k=v" is not
 * quite that: "a.b=1" sorts before "a=1"). 0, or -1 when a tag has no
 * '=' or there are too many. */
static int
entry_tags(struct report_rec *r, const char *tags, size_t len)
{
	r->ntags = 0;
	while (len > 0) {
		const char *semi = memchr(tags, ';', len);
		size_t tl = semi ? (size_t)(semi - tags) : len;
		const char *eq = memchr(tags, '=', tl);
		if (eq == NULL || r->ntags == REPORT_TAGS_MAX)
			return -1;
		size_t kl = (size_t)(eq - tags), vl = tl - kl - 1;
		if (kl > REPORT_TAG_KEY_MAX || vl > REPORT_TAG_VAL_MAX)
			return -1;
		struct report_tag t = { tags, eq + 1, (uint8_t)kl, (uint8_t)vl };
		size_t j = r->ntags++;
		for (; j > 0; j--) {
			const struct report_tag *p = &r->tag[j - 1];
			size_t n = p->klen < t.klen ? p->klen : t.klen;
			int c = memcmp(p->key, t.key, n);
			if (c < 0 || (c == 0 && p->klen <= t.klen))
				break;
			r->tag[j] = *p;
		}
		r->tag[j] = t;
		if (semi == NULL)
			break;
		tags = semi + 1;
		len -= tl + 1;
	}
	return 0;
}

static void
send_entry(struct sd *d, const struct report_rec *r)
{
	if (d->entries_failed)
		return;
	if (report_emit(d->st, r) == -1) {
		log_warnx("report entry of %.*s %.*s not sent: the rest of this "
		    "report is not sent either", (int)r->name_len, r->name,
		    (int)r->field_len, r->field);
		d->entries_failed = 1;
		d->reset_due = 1;
		return;
	}
	d->entries++;
}

/* One value of the flush as a report entry (statsd_entry_fn). An entry
 * that cannot be one (a name over 255 bytes, a tag without '=' or that a
 * report cannot carry: more than REPORT_TAGS_MAX, a key or value over
 * its limit; a field name over REPORT_FIELD_MAX) is left out, counted in
 * sink_dropped and logged; one that could not be sent ends the report:
 * no END, so the sinks drop it whole. */
static void
one_entry(void *ctx, enum statsd_type type, const char *name, size_t name_len,
    const char *tags, size_t tags_len, const char *field, double value,
    int64_t ts)
{
	struct sd *d = ctx;
	if (d->entries_failed)
		return;
	struct report_rec r = {
		.source = REPORT_SRC_STATSD, .ts = ts, .value = value,
		.name = name, .name_len = (uint8_t)name_len,
	};
	r.kind = entry_kind(type, field);
	r.field = field;
	r.field_len = (uint8_t)strlen(field);
	if (name_len > 255 || strlen(field) > REPORT_FIELD_MAX ||
	    entry_tags(&r, tags, tags_len) == -1 || !report_rec_ok(&r)) {
		stats_add(&d->st->stats->sink_dropped, 1);
		long long k = log_limit_pass(&d->entry_log, 60000);
		if (k >= 0)
			log_warnx("%.*s%s%.*s %s: no report entry can carry it "
			    "(name, tags or field); left out of the report, "
			    "counted in sink_dropped (%lld more lines suppressed)",
			    (int)name_len, name, tags_len ? ";" : "",
			    (int)tags_len, tags, field, k);
		return;
	}
	send_entry(d, &r);
	/* The median is also the summary's quantile 0.5 (as "q0.5", which
	 * telem-sink-carbon leaves out: it sends the value as "median"),
	 * unless upper_50 is. */
	if (type == STATSD_TIMER && d->median_q && strcmp(field, "median") == 0) {
		r.kind = REPORT_SUM_QUANTILE;
		r.field = "q0.5";
		r.field_len = 4;
		send_entry(d, &r);
	}
}

static void
sd_tick(struct stage *st)
{
	struct sd *d = st->ctx;
	if (d->sink == NULL)
		return;
	carbon_poll(d->sink);
	carbon_book(d->sink, st->stats, 0);
}

/* Save the gauges (with --state) and book the records applied so far
 * `out`: the flush that wrote them is done. A failed save leaves them in
 * flight until a later one (logged at most once in 10 s). */
static void
save_commit(struct stage *st, struct sd *d)
{
	static struct state_writer w;  /* 64 KiB: not on the stack */
	if (d->state_path != NULL && statsd_state_save(&w, d->agg,
	    d->state_path, stage_books_id(st),
	    stats_get(&st->stats->out) + d->pending) == -1) {
		stage_save_failed(st, &w, &d->save_log);
		return;
	}
	stage_save_done(st);
	stage_commit(st, d->pending);
	d->pending = 0;
}

/* statsd's flush of an interval of `ms`: the lines to carbon or stdout,
 * the report records to --out, then the records applied so far are
 * booked `out` (the gauges' state saved first). */
static void
flush_ms(struct stage *st, struct sd *d, uint32_t ms)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t ts = (int64_t)now.tv_sec + (now.tv_nsec >= 500000000L);
	d->entries = 0;
	d->entries_failed = 0;
	d->applied = 0;
	d->flushed_ms = clock_ms();
	if (d->sink != NULL)
		carbon_begin_flush(d->sink);
	if (st->nout > 0 && d->reset_due)
		d->reset_due = report_emit_reset(st, REPORT_SRC_STATSD, ts) == -1;
	statsd_agg_flush_entries(d->agg, ms, ts, one_line, d,
	    st->nout > 0 ? one_entry : NULL, d);
	report_flush(&d->rep);
	if (st->nout > 0) {
		/* Report records are not booked (common/stats.h unbooked_out):
		 * the records applied are booked `out` below, as without --out. */
		if (!d->entries_failed && report_emit_end(st, REPORT_SRC_STATSD, ts,
		    d->entries) == -1)
			log_warnx("report end not sent: this report is dropped by "
			    "the sinks");
		if (stage_push(st) == -1) {
			log_warnx("report entries not sent");
			d->reset_due = 1;
		}
	}
	if (d->sink != NULL) {
		carbon_end_flush(d->sink);
		carbon_book(d->sink, st->stats, 0);  /* before the records are out */
	}
	save_commit(st, d);
}

static void
sd_flush(struct stage *st)
{
	struct sd *d = st->ctx;
	uint32_t ms = st->flush_ms;
	if (ms == 0) {
		long long k = log_limit_pass(&d->flush_log, 60000);
		if (k >= 0)
			log_warnx("a Flush without its interval: rates divide by %d "
			    "ms", FLUSH_MS_UNKNOWN);
		ms = FLUSH_MS_UNKNOWN;
	}
	flush_ms(st, d, ms);
	sd_tick(st);
}

/* A clean stop (docs/design.md §13): what was applied since the last
 * flush goes out in a last flush over the time since then, so that
 * nothing held is lost; its lines and report go before the drain. */
static void
sd_fini(struct stage *st)
{
	struct sd *d = st->ctx;
	if (d->applied > 0) {
		long long ms = clock_ms() - d->flushed_ms;
		flush_ms(st, d, ms < 1 ? 1 : ms > UINT32_MAX ? UINT32_MAX :
		    (uint32_t)ms);
	} else if (d->pending > 0) {
		save_commit(st, d);  /* a save that failed at the last flush */
	}
	report_flush(&d->rep);
	if (d->sink != NULL) {
		/* What the drain could not send is dropped, counted and logged. */
		carbon_end_flush(d->sink);
		carbon_drain(d->sink, SINK_DRAIN_MS);
		carbon_book(d->sink, st->stats, 0);
		carbon_free(d->sink);
	}
	statsd_agg_free(d->agg);
	for (size_t i = 0; i < d->cfg.nhistogram; i++)
		free(d->hist_metric[i]);
}

int
main(int argc, char **argv)
{
	static const struct stage_ops ops = {
		.prog = "telem-egress-statsd",
		.default_name = "statsd",
		.synopsis = "[--percent P[,P...]] [--histogram METRIC:BINS]... "
		    "[--delete-idle] [--delete-counters] [--delete-timers] "
		    "[--delete-gauges] [--delete-sets] [--legacy-namespace yes|no] "
		    "[--global-prefix S] [--prefix-counter S] [--prefix-timer S] "
		    "[--prefix-gauge S] [--prefix-set S] [--prefix-stats S] "
		    "[--global-suffix S] [--gauges-max-ttl N] [--max-names N] "
		    "[--state FILE] [--graphite HOST:PORT [--graphite-buffer BYTES] "
		    "[--connection persistent|per-flush]] ",
		.help = STATSD_EGRESS_HELP,
		.longopts = opts,
		.option = sd_option,
		.init = sd_init,
		.on_record = sd_record,
		.on_msg = sd_msg,
		.on_flush = sd_flush,
		.on_tick = sd_tick,
		.fini = sd_fini,
		.needs_in = 1,
		.holds_records = 1,
		.takes_statsd = 1,
	};
	static struct sd d;
	statsd_agg_config_default(&d.cfg);
	return stage_main(argc, argv, &ops, &d);
}
