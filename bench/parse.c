/* parse.c - bench-parse: the ingest's own work per line of the seed's
 * format, without a socket: parse_encode (ingest/parse.h) over datagrams
 * of `name value` lines as bench-loadgen sends them (100 names mNN, values
 * uniform 0..199, 32 lines or 1 line a datagram), and over 32-line ones
 * with 24-byte names, each record written into an 8 KiB message that is
 * begun again when full, as ingest does. Prints the best of five rounds,
 * CPU time per line. Figures only, no asserts.
 *   usage: bench-parse [datagrams a round (200000)] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/parse.h"
#include "wire.h"
#include "bench/usage.h"
#include "bench/cputime.h"
#include "bench/rng.h"

#define POOL 4096       /* distinct datagrams */
#define LINES_MAX 32
#define ROUNDS 5

static char dgram[POOL][LINES_MAX * 40];
static size_t dlen[POOL];
static unsigned char wbuf[8192];

static int
restart(void *ctx, struct wire_writer *w)
{
	(void)ctx;
	wire_writer_reset(w);
	return 0;
}

/* Fill the pool with datagrams of `lines` lines whose names are `prefix`
 * and the name's number. */
static void
fill(unsigned lines, const char *prefix)
{
	unsigned long line = 0;
	for (size_t i = 0; i < POOL; i++) {
		size_t len = 0;
		for (unsigned j = 0; j < lines; j++, line++) {
			len += (size_t)snprintf(dgram[i] + len, sizeof(dgram[i]) - len,
			    "%s%s%lu %u", j ? "\n" : "", prefix, line % 100,
			    rng32() % 200);
		}
		dlen[i] = len;
	}
}

/* Best of ROUNDS of `n` datagrams through parse_encode: ns per line. */
static double
rounds(long n, unsigned lines)
{
	struct wire_writer w;
	double best = 1e30;
	long bad = 0;
	for (int r = 0; r < ROUNDS; r++) {
		wire_writer_init(&w, wbuf, sizeof(wbuf));
		double t0 = cpu_s();
		for (long i = 0; i < n; i++)
			bad += parse_encode(dgram[i % POOL], dlen[i % POOL], &w,
			    restart, NULL);
		double t = cpu_s() - t0;
		best = t < best ? t : best;
	}
	if (bad != 0) {
		fprintf(stderr, "bench-parse: %ld lines rejected\n", bad);
		exit(1);
	}
	return best * 1e9 / ((double)n * lines);
}

int
main(int argc, char **argv)
{
	long n = bench_count(argc, argv, 200000, 1,
	    "[datagrams a round (200000)]",
	    "(prints ingest's parse and encode cost per line)");
	fill(32, "m");
	printf("parse_encode, 32 lines a datagram, names m0..m99: %.2f ns/line\n",
	    rounds(n, 32));
	fill(1, "m");
	printf("parse_encode, 1 line a datagram, names m0..m99: %.2f ns/line\n",
	    rounds(n * 8, 1));
	fill(32, "service.requests.total.");
	printf("parse_encode, 32 lines a datagram, 24-byte names: %.2f ns/line\n",
	    rounds(n, 32));
	return 0;
}
