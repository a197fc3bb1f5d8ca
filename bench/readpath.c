/* bench/readpath.c - bin/bench-readpath: what a queue-reading stage pays
 * per record for the messages of the 32-line benchmark (names m0..m99,
 * values uniform 0..199, 8192-byte messages as ingest sends them): the
 * whole-message check, a filter's pass and the cma egress's update, each
 * the way the stages did it before and the way they do it now. One
 * readable line per figure, no asserts. Run by `make bench`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "egress/cma.h"
#include "egress/egress.h"
#include "egress/names.h"
#include "filter/filter.h"
#include "stage.h"
#include "wire.h"
#include "bench/rng.h"
#include "bench/usage.h"

#define MSG 8192
#define NMSG 64
/* Each figure is the best of TRIES runs of ROUNDS passes over the
 * messages; `bench-readpath 1` makes it one of each (for callgrind). */
static int ROUNDS = 100, TRIES = 7;

static unsigned char msgs[NMSG][MSG];
static size_t msg_len[NMSG];
static uint64_t nrec;  /* records in all NMSG messages */


static void
build(size_t name_pad)
{
	nrec = 0;
	for (int m = 0; m < NMSG; m++) {
		struct wire_writer w;
		wire_writer_init(&w, msgs[m], MSG);
		for (unsigned i = 0;; i++) {
			char name[64];
			int n = snprintf(name, sizeof(name), "%.*sm%u", (int)name_pad,
			    "bench.pipeline.metric.", (unsigned)(rng32() % 100));
			if (wire_put(&w, WIRE_TELEMETRY, name, (size_t)n,
			    rng32() % 200) == -1)
				break;
		}
		nrec += w.count;
		msg_len[m] = wire_finish(&w);
	}
}

static void
xcheck(long r)
{
	if (r < 0) {
		fprintf(stderr, "bench-readpath: a message failed its check\n");
		exit(1);
	}
}

static double
ns_per_rec(double t0)
{
	return (clock_s() - t0) * 1e9 / ((double)nrec * ROUNDS);
}

/* The best of TRIES runs of fn: the machine may be shared. */
static double
best_of(void (*fn)(void))
{
	double best = 1e9;
	for (int i = 0; i < TRIES; i++) {
		double t0 = clock_s();
		fn();
		double ns = ns_per_rec(t0);
		best = ns < best ? ns : best;
	}
	return best;
}

static void
run_check(void)
{
	uint32_t tel;
	for (int k = 0; k < ROUNDS; k++)
		for (int m = 0; m < NMSG; m++)
			xcheck(wire_check_telemetry(msgs[m], msg_len[m], &tel));
}

/* A stage with one out-queue whose batch never fills (it is emptied after
 * every message), so nothing is sent. */
static struct stage st;
static struct filter flt = { 1, 1, 100 };

static void
stage_setup(void)
{
	static unsigned char out[1 << 20];
	memset(&st, 0, sizeof(st));
	st.stats = &st.local;
	st.nout = 1;
	st.ctx = &flt;
	wire_writer_init(&st.w, out, sizeof(out));
}

static void
batch_done(void)
{
	wire_writer_reset(&st.w);
	st.w_tel = 0;
}

/* The filter before: a call per record through the ops table, the kept
 * record encoded again by stage_emit. */
static void
old_record(struct stage *s, const struct wire_rec *r)
{
	const struct filter *f = s->ctx;
	if (f->below ? r->value <= f->limit : r->value >= f->limit)
		stage_emit(s, WIRE_TELEMETRY, r->name, r->name_len, r->value);
	else
		stage_filtered(s);
}

static void (*volatile old_cb)(struct stage *, const struct wire_rec *) =
    old_record;

static void
run_filter_old(void)
{
	uint32_t tel;
	for (int k = 0; k < ROUNDS; k++)
		for (int m = 0; m < NMSG; m++) {
			xcheck(wire_check_telemetry(msgs[m], msg_len[m], &tel));
			struct wire_reader r;
			struct wire_rec rec;
			wire_reader_init(&r, msgs[m]);
			while (wire_next(&r, &rec))
				old_cb(&st, &rec);
			batch_done();
		}
}

static void
run_filter_new(void)
{
	uint32_t tel;
	for (int k = 0; k < ROUNDS; k++)
		for (int m = 0; m < NMSG; m++) {
			xcheck(wire_check_telemetry(msgs[m], msg_len[m], &tel));
			filter_msg(&st, msgs[m], msg_len[m]);
			batch_done();
		}
}

static struct names *tab;

static void
run_cma_old(void)
{
	for (int k = 0; k < ROUNDS; k++)
		for (int m = 0; m < NMSG; m++) {
			struct wire_reader r;
			struct wire_rec rec;
			wire_reader_init(&r, msgs[m]);
			while (wire_next(&r, &rec)) {
				int created;
				struct cma *c = names_get(tab, rec.name, rec.name_len,
				    &created);
				if (c != NULL)
					cma_add(c, rec.value);
			}
		}
}

static struct stage cst;
static struct egress eg;

static void
run_cma_new(void)
{
	for (int k = 0; k < ROUNDS; k++)
		for (int m = 0; m < NMSG; m++)
			cma_msg(&cst, msgs[m], msg_len[m]);
}

int
main(int argc, char **argv)
{
	long rounds = bench_count(argc, argv, 0, 1, "[rounds]", "(prints the "
	    "cost per record of each step of a stage's read path;\nrounds: "
	    "that many rounds, one try each)");
	if (rounds > 0)
		ROUNDS = (int)rounds, TRIES = 1;
	static const size_t pads[] = { 0, 22 };
	for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
		build(pads[i]);
		printf("readpath, %llu records in %d messages of %d bytes, names "
		    "of %zu..%zu bytes:\n", (unsigned long long)nrec, NMSG, MSG,
		    pads[i] + 2, pads[i] + 3);
		stage_setup();
		printf("  wire_check_telemetry: %.2f ns/record\n",
		    best_of(run_check));
		printf("  filter, check + a call per record + re-encode: %.2f "
		    "ns/record\n", best_of(run_filter_old));
		printf("  filter, check + filter_msg: %.2f ns/record\n",
		    best_of(run_filter_new));
		if ((tab = names_new(sizeof(struct cma), 100000)) == NULL) {
			perror("bench-readpath: names_new");
			return 1;
		}
		printf("  cma, a call per record to names_get + cma_add: %.2f "
		    "ns/record\n", best_of(run_cma_old));
		names_free(tab, NULL);
		memset(&cst, 0, sizeof(cst));
		memset(&eg, 0, sizeof(eg));
		cst.stats = &cst.local;
		cst.ctx = &eg;
		eg.max_names = 100000;
		if ((eg.names = names_new(sizeof(struct cma), 100000)) == NULL) {
			perror("bench-readpath: names_new");
			return 1;
		}
		printf("  cma, cma_msg: %.2f ns/record\n", best_of(run_cma_new));
		names_free(eg.names, NULL);
	}
	return 0;
}
