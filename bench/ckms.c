/* bench/ckms.c - bin/bench-ckms: throughput and memory of the egress math
 * (CKMS sketch, name table, CMA), one readable line per figure; no
 * asserts. Run by `make bench`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "egress/ckms.h"
#include "egress/cma.h"
#include "egress/names.h"
#include "bench/rng.h"
#include "bench/usage.h"

#define EPS     0.01
#define BIG     10000000
#define NAMES   10000
#define PERNAME 1000


/* A "VmRSS:"-style line of /proc/self/status, in KiB; -1 if missing. */
static long
status_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -1;
	char line[256];
	long kib = -1;
	size_t n = strlen(key);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, n) == 0) {
			kib = strtol(line + n, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n);
	if (p == NULL) {
		perror("bench-ckms: malloc");
		exit(1);
	}
	return p;
}

static struct ckms *
xckms(void)
{
	struct ckms *s = ckms_new(EPS);
	if (s == NULL) {
		perror("bench-ckms: ckms_new");
		exit(1);
	}
	return s;
}

struct named {
	struct ckms *s;
};

static char names[NAMES][16];
static size_t name_len[NAMES];

/* The egress's path for one event: find or create the name's sketch. */
static void
deliver(struct names *t, uint32_t name, uint32_t v)
{
	int created;
	struct named *p = names_get(t, names[name], name_len[name], &created);
	if (p == NULL) {
		perror("bench-ckms: names_get");
		exit(1);
	}
	if (created)
		p->s = xckms();
	ckms_insert(p->s, v);
}

static void
fini_named(void *payload)
{
	ckms_free(((struct named *)payload)->s);
}

static size_t samples_total, sample_bytes_total;

static void
count_samples(void *ctx, const char *name, size_t len, void *payload)
{
	(void)ctx;
	(void)name;
	(void)len;
	struct ckms *s = ((struct named *)payload)->s;
	samples_total += ckms_samples(s);
	sample_bytes_total += ckms_samples(s) * ckms_sample_bytes(s);
}

/* First, while the process is still small: RSS with 10 000 names holding
 * 1 000 values each, arriving interleaved as they would in the egress. */
static void
bench_rss(void)
{
	long base = status_kib("VmRSS:");
	struct names *t = names_new(sizeof(struct named), 100000);
	if (t == NULL) {
		perror("bench-ckms: names_new");
		exit(1);
	}
	uint32_t left[NAMES];
	for (int i = 0; i < NAMES; i++)
		left[i] = PERNAME;
	for (long k = 0; k < (long)NAMES * PERNAME; k++) {
		uint32_t name = rng32() % NAMES;
		while (left[name] == 0)
			name = (name + 1) % NAMES;
		left[name]--;
		deliver(t, name, rng32());
	}
	samples_total = sample_bytes_total = 0;
	names_foreach_sorted(t, count_samples, NULL);
	long rss = status_kib("VmRSS:"), hwm = status_kib("VmHWM:");
	printf("ckms RSS, %d names x %d values: VmRSS %.1f MiB "
	    "(%.1f MiB over the %.1f MiB before), VmHWM %.1f MiB; "
	    "%.0f samples per name, %.1f bytes each\n", NAMES, PERNAME,
	    rss / 1024.0, (rss - base) / 1024.0, base / 1024.0, hwm / 1024.0,
	    (double)samples_total / NAMES,
	    (double)sample_bytes_total / (double)samples_total);
	names_free(t, fini_named);
}

/* One sketch, 10^7 values; returns inserts per second. */
static double
one_sketch(const uint32_t *vals, size_t at[3], size_t bytes[3])
{
	struct ckms *s = xckms();
	double t0 = clock_s();
	for (long i = 0; i < BIG; i++) {
		ckms_insert(s, vals[i]);
		/* n is a multiple of 50 here: no buffer to flush */
		if (i + 1 == 10000) {
			at[0] = ckms_samples(s);
			bytes[0] = ckms_sample_bytes(s);
		} else if (i + 1 == 1000000) {
			at[1] = ckms_samples(s);
			bytes[1] = ckms_sample_bytes(s);
		}
	}
	volatile uint32_t med = ckms_query(s, 0.5); /* includes the flush */
	double dt = clock_s() - t0;
	(void)med;
	at[2] = ckms_samples(s);
	bytes[2] = ckms_sample_bytes(s);
	ckms_free(s);
	return BIG / dt;
}

static void
bench_one_sketch(const uint32_t *vals)
{
	size_t at[3] = {0, 0, 0}, bytes[3] = {0, 0, 0};
	double r[3], best = 0;
	for (int i = 0; i < 3; i++) {
		r[i] = one_sketch(vals, at, bytes);
		best = r[i] > best ? r[i] : best;
	}
	printf("ckms insert, one sketch, 10^7 uniform u32: %.1f M inserts/s "
	    "(best of 3 runs: %.1f, %.1f, %.1f)\n", best / 1e6, r[0] / 1e6,
	    r[1] / 1e6, r[2] / 1e6);
	printf("ckms samples after 10^4 / 10^6 / 10^7 uniform values: "
	    "%zu / %zu / %zu of %zu / %zu / %zu bytes (eps %g)\n", at[0],
	    at[1], at[2], bytes[0], bytes[1], bytes[2], EPS);
}

static void
bench_many_names(const uint32_t *vals, const uint32_t *who)
{
	struct names *t = names_new(sizeof(struct named), 100000);
	if (t == NULL) {
		perror("bench-ckms: names_new");
		exit(1);
	}
	double t0 = clock_s();
	for (long i = 0; i < BIG; i++)
		deliver(t, who[i], vals[i]);
	double dt = clock_s() - t0;
	printf("ckms insert, 10^7 values over %d names (names_get + "
	    "ckms_insert): %.1f M inserts/s (%.3f s)\n", NAMES,
	    BIG / dt / 1e6, dt);
	names_free(t, fini_named);
}

/* The load of the pipeline's ckms egress: 100 sketches, values 0..100
 * (what its filter passes of uniform 0..199), 80 000 per sketch arriving
 * interleaved; the time per insert is mostly each one's share of the
 * compress walks (egress/ckms.c's header comment). Best of 3. */
static void
bench_pipeline_load(void)
{
	enum { SKETCHES = 100, EACH = 80000 };
	double best = 0;
	for (int run = 0; run < 3; run++) {
		struct ckms *s[SKETCHES];
		for (int i = 0; i < SKETCHES; i++)
			s[i] = xckms();
		double t0 = clock_s();
		for (long k = 0; k < (long)SKETCHES * EACH; k++) {
			uint32_t x = rng32();
			ckms_insert(s[x % SKETCHES], (x >> 8) % 101);
		}
		double rate = (double)SKETCHES * EACH / (clock_s() - t0);
		best = rate > best ? rate : best;
		for (int i = 0; i < SKETCHES; i++)
			ckms_free(s[i]);
	}
	printf("ckms insert, 100 sketches x 80 000 values 0..100 interleaved: "
	    "%.1f ns/insert (best of 3)\n", 1e9 / best);
}

static void
bench_cma(const uint32_t *vals)
{
	struct cma c = {0, 0};
	double t0 = clock_s();
	for (int r = 0; r < 10; r++)
		for (long i = 0; i < BIG; i++)
			cma_add(&c, vals[i]);
	double dt = clock_s() - t0;
	char buf[400];
	cma_format(c.mean, buf, sizeof(buf));
	printf("cma add: %.1f M adds/s (10^8 adds, %.3f s; mean %s)\n",
	    10.0 * BIG / dt / 1e6, dt, buf);

	t0 = clock_s();
	size_t len = 0;
	for (long i = 0; i < 100000; i++) {
		struct cma m = {(double)vals[i] / 3.0 + 0.1, 1};
		len += (size_t)cma_format(m.mean, buf, sizeof(buf));
	}
	dt = clock_s() - t0;
	printf("cma format (17-digit means): %.2f M/s (%zu bytes)\n",
	    1e5 / dt / 1e6, len);
}

int
main(int argc, char **argv)
{
	bench_usage(argc, argv, "(no arguments: prints the speed and "
	    "memory of the CKMS sketch,\nthe name table and the CMA of the "
	    "egresses)");
	for (int i = 0; i < NAMES; i++)
		name_len[i] = (size_t)snprintf(names[i], sizeof(names[i]),
		    "svc.%04d.lat", i);
	bench_rss();

	uint32_t *vals = xmalloc(BIG * sizeof(*vals));
	uint32_t *who = xmalloc(BIG * sizeof(*who));
	for (long i = 0; i < BIG; i++) {
		vals[i] = rng32();
		who[i] = rng32() % NAMES;
	}
	bench_one_sketch(vals);
	bench_many_names(vals, who);
	bench_pipeline_load();
	bench_cma(vals);
	free(vals);
	free(who);
	return 0;
}
