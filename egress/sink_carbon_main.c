/* telem-sink-carbon: reads the egresses' report records (docs/design.md §15,
 * egress/report_rec.h) from its in-queue and sends them to carbon as
 * plaintext lines "PREFIX.NAME.STAT[;k=v...] VALUE TS" over one TCP
 * connection (egress/carbon.h: non-blocking, reconnecting with backoff, a
 * bounded buffer whose drops are counted in sink_dropped). NAME is the
 * telem name and ";k=v..." the entry's tags (statsd's), both encoded by
 * egress/carbon_path.h, so two series never share a whisper file and none
 * reaches outside PREFIX.
 *
 * STAT is the wave-1 name of the entry's field: a quantile "q0.25" is
 * "q25" (its percent, any '.' made '_': q0.999 is "q99_9"), the CMA gauge
 * is "cma"; the summary's sum and count and the CMA's sample count are
 * for Prometheus and not sent. statsd entries keep their field as STAT,
 * but the median's copy as quantile "q0.5", for Prometheus (its value
 * goes as "median"). A stat is one level of the path: any byte but
 * [A-Za-z0-9_-] in it, the '.' of statsd's "histogram.bin_10", is %XX
 * (egress/carbon_path.h carbon_stat_encode). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/carbon.h"
#include "egress/carbon_path.h"
#include "egress/cma.h"
#include "egress/report_rec.h"
#include "log.h"
#include "stage.h"

#define DRAIN_MS 1000

struct sink_carbon {
	char host[CARBON_HOST_MAX], port[8];
	const char *prefix;
	uint32_t buffer;
	struct carbon *c;
	/* Lines of the message being taken not yet queued or dropped: held
	 * from the moment it is taken (sc_msg). */
	uint64_t coming;
	struct log_limit bad_log, drop_log;
};

enum { OPT_GRAPHITE = 256, OPT_PREFIX, OPT_BUFFER, OPT_STATE };
static const struct option opts[] = {
	/* A pipeline file gives --state to a stage with no out unless it
	 * says `state = no` (supervisor/pipeline.h): taken, and ignored. */
	{ "state", required_argument, NULL, OPT_STATE },
	{ "graphite", required_argument, NULL, OPT_GRAPHITE },
	{ "graphite-prefix", required_argument, NULL, OPT_PREFIX },
	{ "graphite-buffer", required_argument, NULL, OPT_BUFFER },
	{ NULL, 0, NULL, 0 },
};

static int
sc_option(struct stage *st, int opt, const char *arg)
{
	struct sink_carbon *s = st->ctx;
	const char *why;
	switch (opt) {
	case OPT_GRAPHITE:
		if (carbon_parse_addr(arg, s->host, sizeof(s->host), s->port,
		    sizeof(s->port), &why) == -1) {
			log_warnx("--graphite %s: %s", arg, why);
			return -1;
		}
		return 0;
	case OPT_PREFIX:
		if (!carbon_prefix_ok(arg)) {
			log_warnx("--graphite-prefix %s: must be 1..%d printable "
			    "characters without spaces or ';'", arg, CARBON_PREFIX_MAX);
			return -1;
		}
		s->prefix = arg;
		return 0;
	case OPT_BUFFER:
		if (stage_parse_u32(arg, &s->buffer) == -1 ||
		    s->buffer < CARBON_BUFFER_MIN || s->buffer > CARBON_BUFFER_MAX) {
			log_warnx("--graphite-buffer %s: must be %u..%u bytes", arg,
			    CARBON_BUFFER_MIN, CARBON_BUFFER_MAX);
			return -1;
		}
		return 0;
	case OPT_STATE:
		return 0;
	}
	return -1;
}

static int
sc_init(struct stage *st)
{
	struct sink_carbon *s = st->ctx;
	const char *why;
	if (s->host[0] == '\0') {
		log_warnx("--graphite HOST:PORT is required");
		return -1;
	}
	s->c = carbon_new(s->host, s->port, s->prefix ? s->prefix : "telem",
	    s->buffer ? s->buffer : CARBON_BUFFER_DEFAULT, &why);
	if (s->c == NULL) {
		log_warnx("--graphite %s:%s: %s", s->host, s->port, why);
		return -1;
	}
	return 0;
}

/* 1 if the entry is sent as a line; 0 for END and what is for
 * Prometheus only. */
static int
entry_sent(const struct report_rec *e)
{
	if (e->kind == REPORT_END || e->field_len == 0)
		return 0;
	/* statsd's quantiles are "upper_P"; a "q" one is the median's copy
	 * (egress/statsd_main.c one_entry). */
	if (e->source == REPORT_SRC_STATSD)
		return e->kind != REPORT_SUM_QUANTILE || e->field[0] != 'q';
	return e->kind == REPORT_GAUGE || e->kind == REPORT_SUM_QUANTILE;
}

/* entry_sent for a record of a checked message: 0 for any but a report,
 * and for one that does not decode (sc_entry counts it bad). */
static int
record_sent(const struct wire_rec *r)
{
	struct report_rec e;
	const char *why;
	return r->type == WIRE_REPORT && report_rec_decode(r->raw + WIRE_REC_HDR,
	    r->size - WIRE_REC_HDR, &e, &why) == 0 && entry_sent(&e);
}

/* The Graphite stat of an entry, encoded, into stat[0..cap): 1, or 0 when
 * the entry is not sent (entry_sent), or -1 when it cannot be encoded
 * (not reached: report_rec_decode checked the quantile, and cap is
 * CARBON_STAT_MAX). */
static int
entry_stat(const struct report_rec *e, char *stat, size_t cap)
{
	const char *f = e->field;
	size_t len = e->field_len;
	char q_stat[32];
	if (!entry_sent(e))
		return 0;
	if (e->source != REPORT_SRC_STATSD && e->kind != REPORT_GAUGE) {
		double q;
		if (report_rec_quantile(f, len, &q) == -1)
			return -1;
		int n = snprintf(q_stat, sizeof(q_stat), "q%.10g", q * 100);
		if (n < 0 || (size_t)n >= sizeof(q_stat))
			return -1;
		for (char *p = q_stat; *p; p++)
			if (*p == '.')
				*p = '_';
		f = q_stat;
		len = (size_t)n;
	}
	return carbon_stat_encode(f, len, stat, cap) < 0 ? -1 : 1;
}

/* One report entry: a line queued, or counted in bad or sink_dropped, or
 * nothing for an entry not sent. */
static void
sc_entry(struct stage *st, const struct wire_rec *r)
{
	struct sink_carbon *s = st->ctx;
	struct report_rec e;
	const char *why;
	if (report_rec_decode(r->raw + WIRE_REC_HDR, r->size - WIRE_REC_HDR,
	    &e, &why) == -1) {
		stats_add(&st->stats->bad, 1);
		long long n = log_limit_pass(&s->bad_log, 60000);
		if (n >= 0)
			log_warnx("report entry dropped: %s (%lld more)", why, n);
		return;
	}
	char stat[CARBON_STAT_MAX], path[CARBON_PATH_MAX], num[336];
	char tags[CARBON_TAGS_MAX];
	int sent = entry_stat(&e, stat, sizeof(stat));
	if (sent == 0)
		return;
	/* None of these fails on an entry report_rec_decode took. */
	int plen = carbon_path_encode(e.name, e.name_len, path, sizeof(path));
	if (sent < 0 || plen < 0 || carbon_tags_encode(e.tag, e.ntags, tags,
	    sizeof(tags)) < 0 || cma_format(e.value, num, sizeof(num)) < 0) {
		stats_add(&st->stats->sink_dropped, 1);
		long long n = log_limit_pass(&s->drop_log, 60000);
		if (n >= 0)
			log_warnx("report entry of %.*s %.*s dropped: no line can "
			    "carry it (%lld more)", (int)e.name_len, e.name,
			    (int)e.field_len, e.field, n);
		return;
	}
	carbon_line(s->c, path, (size_t)plen, stat, tags, num, e.ts);
}

static void
sc_record(struct stage *st, const struct wire_rec *r)
{
	struct sink_carbon *s = st->ctx;
	int sent = record_sent(r);
	sc_entry(st, r);
	if (sent) {
		/* Queued (or dropped, counted): no longer coming. */
		s->coming -= s->coming > 0;
		carbon_book(s->c, st->stats, s->coming);
	}
}

/* The lines a message makes are held from the moment it is taken: they
 * are counted first (up to a Stop: nothing after it is taken) and booked
 * in sink_held, beside the lines already queued, before the first entry
 * is made one; each then moves from `coming` to the queue (sc_record).
 * A kill -9 anywhere in the message so leaves each of them in sink_held,
 * which the supervisor adds to sink_dropped (common/stats.h), instead of
 * losing the entries not yet made lines from every counter. */
static int
sc_msg(struct stage *st, const void *msg, size_t len)
{
	struct sink_carbon *s = st->ctx;
	struct wire_reader r;
	struct wire_rec rec;
	(void)len;
	s->coming = 0;
	wire_reader_init(&r, msg);
	while (wire_next(&r, &rec) && rec.type != WIRE_STOP)
		s->coming += (uint64_t)record_sent(&rec);
	if (s->coming > 0)
		carbon_book(s->c, st->stats, s->coming);
	wire_reader_init(&r, msg);
	while (wire_next(&r, &rec))
		if (stage_take_record(st, &rec))
			return 1;
	return 0;
}

static void
sc_flush(struct stage *st)
{
	(void)st;  /* lines go out as they come, not on Flush */
}

static void
sc_tick(struct stage *st)
{
	struct sink_carbon *s = st->ctx;
	carbon_poll(s->c);
	carbon_book(s->c, st->stats, 0);
}

/* What the drain could not send is dropped, counted and logged. */
static void
sc_fini(struct stage *st)
{
	struct sink_carbon *s = st->ctx;
	if (s->c == NULL)
		return;
	carbon_drain(s->c, DRAIN_MS);
	carbon_book(s->c, st->stats, 0);
	carbon_free(s->c);
	s->c = NULL;
}

int
main(int argc, char **argv)
{
	static const struct stage_ops ops = {
		.prog = "telem-sink-carbon",
		.default_name = "carbon",
		.synopsis = "--graphite HOST:PORT [--graphite-prefix P] "
		    "[--graphite-buffer BYTES] ",
		.help =
		    "      --graphite HOST:PORT  send every report entry to carbon\n"
		    "                       (plaintext over TCP, never blocking)\n"
		    "      --graphite-prefix P   metric names are P.NAME.STAT (default\n"
		    "                       telem); NAME encoded one to one (README)\n"
		    "      --graphite-buffer BYTES  lines kept while carbon is away; when\n"
		    "                       full the oldest are dropped and counted\n"
		    "                       (default 4194304)\n"
		    "      --state FILE     ignored: the sink keeps no state\n",
		.longopts = opts,
		.option = sc_option,
		.init = sc_init,
		.on_record = sc_record,
		.on_msg = sc_msg,
		.on_flush = sc_flush,
		.on_tick = sc_tick,
		.fini = sc_fini,
		.needs_in = 1,
		.takes_reports = 1,
		.no_out = 1,
	};
	static struct sink_carbon s;
	return stage_main(argc, argv, &ops, &s);
}
