/* bench/state.c - bin/bench-state: what an egress's state save costs
 * (egress_save: every name and sketch or average written to a temporary
 * file, synced, renamed) with 100 and 10 000 names, on tmpfs (/dev/shm,
 * where the supervisor keeps state by default) and on the disk holding the
 * current folder (as with --state-dir there), and what a load at start
 * costs. One readable line per figure; no asserts. Run by `make bench`. */
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "bench/usage.h"
#include "egress/ckms.h"
#include "egress/cma.h"
#include "egress/egress.h"
#include "bench/rng.h"

#define PERNAME 1000   /* values per name, 1..1000 */
#define RUNS    9      /* saves timed per figure; the median is printed */


/* The two egresses' kinds, as egress/ckms_main.c and cma_main.c have
 * them. */
static void
save_sketch(struct state_writer *w, const void *payload)
{
	ckms_save(*(struct ckms *const *)payload, w);
}

static int
load_sketch(void *e, struct state_reader *r, void *payload, const char **why)
{
	struct ckms *s = ckms_load(((struct egress *)e)->state_param, r, why);
	*(struct ckms **)payload = s;
	return s != NULL ? 0 : -1;
}

static void
free_sketch(void *payload)
{
	ckms_free(*(struct ckms **)payload);
}

static void
save_average(struct state_writer *w, const void *payload)
{
	state_put(w, payload, sizeof(struct cma));
}

static int
load_average(void *e, struct state_reader *r, void *payload, const char **why)
{
	(void)e;
	*why = "cut short";
	return state_get(r, payload, sizeof(struct cma));
}

static const struct egress_kind kinds[2] = {
	{ STATE_CKMS, save_sketch, load_sketch, free_sketch },
	{ STATE_CMA, save_average, load_average, NULL },
};

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void
fill(struct stage *st, struct egress *e, int ckms, size_t nnames)
{
	char name[32];
	for (size_t k = 0; k < PERNAME; k++) {
		for (size_t i = 0; i < nnames; i++) {
			int created;
			size_t len = (size_t)snprintf(name, sizeof(name), "bench.name.%zu", i);
			void *p = egress_lookup(st, e, name, len, &created);
			if (p == NULL) {
				fprintf(stderr, "bench-state: names_get failed\n");
				exit(1);
			}
			uint32_t v = 1 + rng32() % 1000;
			if (!ckms) {
				cma_add(p, v);
				continue;
			}
			if (created && (*(struct ckms **)p = ckms_new(0.01)) == NULL) {
				fprintf(stderr, "bench-state: ckms_new failed\n");
				exit(1);
			}
			ckms_insert(*(struct ckms **)p, v);
		}
	}
}

/* The median time of RUNS saves of e to path, in ms; *bytes the size. */
static double
time_saves(struct stage *st, struct egress *e, const char *path, long *bytes)
{
	double t[RUNS];
	e->state_path = path;
	for (int r = 0; r < RUNS; r++) {
		e->unsaved = 1;
		e->pending = 1;
		double t0 = clock_s();
		if (egress_save(st, e) == -1) {
			fprintf(stderr, "bench-state: save to %s failed\n", path);
			exit(1);
		}
		t[r] = (clock_s() - t0) * 1e3;
	}
	qsort(t, RUNS, sizeof(t[0]), cmp_double);
	struct stat sb;
	*bytes = stat(path, &sb) == 0 ? (long)sb.st_size : -1;
	return t[RUNS / 2];
}

/* The least a copy of the same bytes into a shared-memory segment costs
 * (the segment's pages already in place): the alternative of keeping a
 * snapshot in a segment instead of a file. In ms, the median of RUNS. */
static double
time_segment_copy(long bytes)
{
	char name[64];
	snprintf(name, sizeof(name), "/telem-bench-state-seg.%d", (int)getpid());
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd == -1 || ftruncate(fd, bytes) == -1) {
		perror("bench-state: shm segment");
		exit(1);
	}
	shm_unlink(name);
	void *seg = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	char *src = malloc((size_t)bytes);
	if (seg == MAP_FAILED || src == NULL) {
		perror("bench-state: segment");
		exit(1);
	}
	memset(src, 1, (size_t)bytes);
	memset(seg, 0, (size_t)bytes);
	double t[RUNS];
	for (int r = 0; r < RUNS; r++) {
		double t0 = clock_s();
		memcpy(seg, src, (size_t)bytes);
		t[r] = (clock_s() - t0) * 1e3;
	}
	munmap(seg, (size_t)bytes);
	free(src);
	qsort(t, RUNS, sizeof(t[0]), cmp_double);
	return t[RUNS / 2];
}

static void
bench(int ckms, size_t nnames, const char *shm_path, const char *disk_path)
{
	struct stage st;
	memset(&st, 0, sizeof(st));
	st.stats = &st.local;
	st.name = "bench";
	struct egress e;
	memset(&e, 0, sizeof(e));
	e.state_param = ckms ? 0.01 : 0;
	uint8_t src = ckms ? REPORT_SRC_CKMS : REPORT_SRC_CMA;
	if (egress_init(&st, &e, ckms ? sizeof(struct ckms *) : sizeof(struct cma),
	    &kinds[ckms ? 0 : 1], src) == -1 ||
	    (e.sw = malloc(sizeof(*e.sw))) == NULL)
		exit(1);
	fill(&st, &e, ckms, nnames);
	long bytes;
	double shm = time_saves(&st, &e, shm_path, &bytes);
	double disk = disk_path ? time_saves(&st, &e, disk_path, &bytes) : -1;
	e.state_path = NULL;
	egress_fini(&st, &e);

	/* a load at start, from tmpfs */
	struct egress l;
	memset(&l, 0, sizeof(l));
	l.state_param = e.state_param;
	l.state_path = shm_path;
	double t0 = clock_s();
	if (egress_init(&st, &l, ckms ? sizeof(struct ckms *) : sizeof(struct cma),
	    &kinds[ckms ? 0 : 1], src) == -1)
		exit(1);
	double load = (clock_s() - t0) * 1e3;
	size_t back = names_count(l.names);
	l.unsaved = 0;
	l.state_path = NULL;  /* no save at the end */
	egress_fini(&st, &l);
	printf("state %-4s %5zu names x %d values: %8ld bytes, save %7.3f ms "
	    "on tmpfs, %7.3f ms on disk (fsync), load %7.3f ms (%zu names); "
	    "bare copy into a shm segment %7.3f ms\n",
	    ckms ? "ckms" : "cma", nnames, PERNAME, bytes, shm, disk, load, back,
	    time_segment_copy(bytes));
	unlink(shm_path);
	if (disk_path)
		unlink(disk_path);
}

/* The two state files, removed by on_signal when the run is stopped. */
static char shm[96], disk[96];

static void
on_signal(int sig)
{
	(void)sig;
	unlink(shm);
	unlink(disk);
	_exit(1);
}

int
main(int argc, char **argv)
{
	bench_usage(argc, argv, "(no arguments: prints what saving and "
	    "loading an egress's state costs,\non /dev/shm and on disk)");
	snprintf(shm, sizeof(shm), "/dev/shm/telem-bench-state.%d", (int)getpid());
	snprintf(disk, sizeof(disk), "bench-state.%d.state", (int)getpid());
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (signal(sigs[i], on_signal) == SIG_ERR) {
			perror("bench-state: signal");
			return 1;
		}
	static const size_t counts[] = { 100, 10000 };
	for (int ckms = 1; ckms >= 0; ckms--)
		for (size_t i = 0; i < 2; i++)
			bench(ckms, counts[i], shm, disk);
	return 0;
}
