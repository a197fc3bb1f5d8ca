/* statsdpath.c - bench-statsdpath: the user-space work of the statsd
 * pipeline per metric, in one process, without queues or sockets: the
 * datagrams bench-loadgen -f statsd sends (32 lines `mNN:V|ms`, 100 names,
 * V uniform 1..1000) through the parser (ingest/statsd.h) alone, and
 * encoded as WIRE_STATSD records into 8 KiB messages as the ingest does;
 * those messages checked and applied to the aggregator
 * (egress/statsd_agg.h) as telem-egress-statsd does, with a flush of every
 * 3.2 M metrics (one second of the 32-line step). Prints the best of five
 * rounds, CPU time per metric. Figures only, no asserts.
 *   usage: bench-statsdpath [datagrams a round, >= 1000 (100000)] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/cputime.h"
#include "bench/usage.h"
#include "egress/statsd_agg.h"
#include "ingest/statsd.h"
#include "wire.h"

#define POOL 4096        /* distinct datagrams */
#define LINES 32
#define MSGS 64          /* messages replayed into the aggregator */
#define MSG_BYTES 8192
#define FLUSH_EVERY 3200000
#define ROUNDS 5

static char dgram[POOL][LINES * 16];
static size_t dlen[POOL];
static unsigned char msg[MSGS][MSG_BYTES];
static size_t msg_len[MSGS];
static size_t nmsg;
static unsigned char wbuf[MSG_BYTES];
static struct wire_writer w;
static uint64_t metrics;

static void
count_only(void *ctx, const struct statsd_metric *m)
{
	(void)ctx, (void)m;
	metrics++;
}

/* As ingest/main.c's take_metric: the record straight into the message;
 * a full message is kept (the first MSGS of them) and a new one begun. */
static void
encode(void *ctx, const struct statsd_metric *m)
{
	(void)ctx;
	size_t size = WIRE_REC_HDR + m->key_len + WIRE_STATSD_BODY;
	if (w.len + size > w.cap) {
		size_t l = wire_finish(&w);
		if (nmsg < MSGS) {
			memcpy(msg[nmsg], wbuf, l);
			msg_len[nmsg++] = l;
		}
		wire_writer_reset(&w);
	}
	w.len += wire_encode_statsd(w.buf + w.len, m->type, 0, m->key,
	    m->key_len, m->value, m->rate, NULL, 0);
	w.count++;
	metrics++;
}

static void
no_line(void *ctx, const char *path, size_t len, double v, int64_t ts)
{
	(void)ctx, (void)path, (void)len, (void)v, (void)ts;
}

/* Best of ROUNDS of fn over `rounds` datagrams: ns of CPU per metric. */
static double
parse_rounds(struct statsd_parser *p, long rounds, statsd_metric_fn *fn)
{
	double best = 1e30;
	struct statsd_result res;
	for (int k = 0; k < ROUNDS; k++) {
		double t0 = cpu_s();
		metrics = 0;
		for (long r = 0; r < rounds; r++)
			statsd_parse(p, dgram[r % POOL], dlen[r % POOL], fn, NULL, &res);
		double ns = (cpu_s() - t0) / (double)metrics * 1e9;
		best = ns < best ? ns : best;
	}
	return best;
}

int
main(int argc, char **argv)
{
	long rounds = bench_count(argc, argv, 100000, 1000,
	    "[datagrams a round, >= 1000 (100000)]",
	    "(prints the statsd path's cost per metric: parse, wire, aggregate)");
	uint64_t x = 1;
	struct statsd_parser p;

	for (int i = 0; i < POOL; i++) {
		size_t o = 0;
		for (int k = 0; k < LINES; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			o += (size_t)sprintf(dgram[i] + o, "%sm%u:%u|ms", k ? "\n" : "",
			    (unsigned)(x % 100), (unsigned)(1 + (x >> 20) % 1000));
		}
		dlen[i] = o;
	}
	statsd_parser_init(&p, STATSD_STRICT);
	wire_writer_init(&w, wbuf, sizeof(wbuf));
	printf("parse: %.1f ns a metric\n", parse_rounds(&p, rounds, count_only));
	printf("parse and encode into messages: %.1f ns a metric\n",
	    parse_rounds(&p, rounds, encode));

	if (nmsg == 0) {
		fprintf(stderr, "no message filled\n");
		return 1;
	}
	struct statsd_agg_config c;
	statsd_agg_config_default(&c);
	struct statsd_agg *a = statsd_agg_new(&c);
	if (a == NULL) {
		perror("statsd_agg_new");
		return 1;
	}
	double best_add = 1e30, best_flush = 1e30;
	for (int k = 0; k < ROUNDS; k++) {
		double t0 = cpu_s();
		uint64_t n = 0;
		while (n < FLUSH_EVERY) {
			for (size_t i = 0; i < nmsg; i++) {
				uint32_t tel;
				struct wire_reader rd;
				struct wire_rec rec;
				if (wire_check_telemetry(msg[i], msg_len[i], &tel) < 0) {
					fprintf(stderr, "message %zu does not check\n", i);
					return 1;
				}
				wire_reader_init(&rd, msg[i]);
				while (wire_next(&rd, &rec)) {
					struct wire_statsd s;
					wire_statsd_get(&rec, &s);
					struct statsd_metric m = {
						.type = (enum statsd_type)s.stype, .key = s.key,
						.key_len = s.key_len, .value = s.value,
						.rate = s.rate,
					};
					statsd_agg_add(a, &m);
					n++;
				}
			}
		}
		double t1 = cpu_s();
		statsd_agg_flush(a, 1000, 1000, no_line, NULL);
		double t2 = cpu_s(), add = (t1 - t0) / (double)n * 1e9;
		best_add = add < best_add ? add : best_add;
		best_flush = t2 - t1 < best_flush ? t2 - t1 : best_flush;
	}
	printf("check and apply: %.1f ns a metric\n", best_add);
	printf("flush of %d metrics (100 timers): %.1f ms, %.1f ns a metric\n",
	    FLUSH_EVERY, best_flush * 1e3, best_flush / FLUSH_EVERY * 1e9);
	statsd_agg_free(a);
	return 0;
}
