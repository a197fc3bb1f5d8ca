/* test_state.c - state files (common/state.c) and the sketches and
 * averages saved in them: a loaded CKMS sketch answers and goes on exactly
 * as the saved one for every reference case cut at every point, a CMA
 * average comes back bit for bit, and a file truncated at every length,
 * with any byte changed, foreign, or with a well-summed but nonsensical
 * body is refused without a crash. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "egress/ckms.h"
#include "egress/cma.h"
#include "egress/egress.h"
#include "state.h"
#include "tests/rng.h"
#include "harness.h"

#define REFERENCE "tests/data/ckms-reference.txt"
#define MAXV 512

static const double qs[6] = {0, 0.25, 0.5, 0.75, 0.9, 0.99};
static char dir[128], path[160];

/* tmpfs when there is one: thousands of saves, each synced */
static void
setup(void)
{
	h_tmp_name_in(dir, sizeof(dir), "/dev/shm", "state");
	if (mkdtemp(dir) == NULL) {
		h_tmp_name(dir, sizeof(dir), "state");
		cr_assert_not_null(mkdtemp(dir));
	}
	snprintf(path, sizeof(path), "%s/egress.state", dir);
}

static void
teardown(void)
{
	char p[200];
	static const char *const ext[] = { "", ".tmp", ".bad" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", path, ext[i]);
		unlink(p);
	}
	rmdir(dir);
}

TestSuite(state, .init = setup, .fini = teardown, .timeout = 120);

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t
rng(void)
{
	xorshift64(&rng_state);
	return rng_state;
}

/* Save n sketches of error eps as a body: the count, then each sketch. */
static void
save_sketches(struct ckms *const *s, size_t n, double eps, uint64_t committed)
{
	static struct state_writer w;
	cr_assert_eq(state_begin(&w, path), 0, "state_begin %s", path);
	uint64_t cnt = n;
	state_put(&w, &cnt, sizeof(cnt));
	for (size_t i = 0; i < n; i++)
		ckms_save(s[i], &w);
	struct state_info info = { STATE_CKMS, eps, 7, committed };
	cr_assert_eq(state_end(&w, &info), 0, "state_end");
}

/* Load what save_sketches wrote: 1 with out[0..*n), 0 without a file, -1
 * when refused (nothing left allocated). */
static int
load_sketches(double eps, struct ckms **out, size_t max, size_t *n,
    struct state_info *info)
{
	struct state_reader r;
	const char *why = NULL;
	int rc = state_load(path, STATE_CKMS, eps, info, &r, &why);
	*n = 0;
	if (rc == 1) {
		uint64_t cnt;
		if (state_get(&r, &cnt, sizeof(cnt)) == -1 || cnt > max) {
			why = "count";
			rc = -1;
		}
		for (uint64_t i = 0; rc == 1 && i < cnt; i++) {
			if ((out[*n] = ckms_load(eps, &r, &why)) == NULL)
				rc = -1;
			else
				(*n)++;
		}
		if (rc == 1 && r.left != 0) {
			why = "trailing bytes";
			rc = -1;
		}
		if (rc == -1) {
			for (size_t i = 0; i < *n; i++)
				ckms_free(out[i]);
			*n = 0;
		}
	}
	if (rc == -1)
		cr_assert_not_null(why, "refused without a reason");
	state_close(&r);
	return rc;
}

static struct ckms *
reload_one(struct ckms *s, double eps)
{
	struct ckms *back[1];
	size_t n;
	struct state_info info;
	save_sketches(&s, 1, eps, 0);
	cr_assert_eq(load_sketches(eps, back, 1, &n, &info), 1);
	cr_assert_eq(n, 1);
	return back[0];
}

static void
assert_same(struct ckms *a, struct ckms *b, const char *what, size_t k)
{
	cr_assert_eq(ckms_count(a), ckms_count(b), "%s cut %zu: count", what, k);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(ckms_query(a, qs[i]), ckms_query(b, qs[i]),
		    "%s cut %zu q=%g: %u vs %u", what, k, qs[i],
		    ckms_query(a, qs[i]), ckms_query(b, qs[i]));
	cr_assert_eq(ckms_samples(a), ckms_samples(b), "%s cut %zu: samples",
	    what, k);
}

/* Every reference case, saved after every number of values (buffered
 * ones included) and loaded: the rest go into both, and the loaded one
 * answers as the seed did and as the one never saved. */
Test(state, ckms_reference_cases_cut_at_every_point)
{
	FILE *f = fopen(REFERENCE, "r");
	cr_assert_not_null(f, "open %s (run from the top of the tree)", REFERENCE);
	char line[8192];
	uint32_t v[MAXV];
	size_t nv = 0;
	int cases = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "in ", 3) == 0) {
			char *p = line + 3, *end;
			nv = 0;
			for (unsigned long x; nv < MAXV && (x = strtoul(p, &end, 10), end != p); p = end)
				v[nv++] = (uint32_t)x;
			continue;
		}
		if (strncmp(line, "out ", 4) != 0)
			continue;
		uint32_t want[6];
		const char *p = line + 4;
		for (int i = 0; i < 6; i++) {
			char *end;
			strtod(p, &end);
			want[i] = (uint32_t)strtoul(end + 1, &end, 10);
			p = end;
		}
		for (size_t k = 0; k <= nv; k++) {
			struct ckms *a = ckms_new(0.01);
			cr_assert_not_null(a);
			for (size_t i = 0; i < k; i++)
				ckms_insert(a, v[i]);
			if (k == 0)
				ckms_insert(a, v[0]); /* a name has a value */
			struct ckms *b = reload_one(a, 0.01);
			for (size_t i = k ? k : 1; i < nv; i++) {
				ckms_insert(a, v[i]);
				ckms_insert(b, v[i]);
			}
			for (int i = 0; i < 6; i++)
				cr_assert_eq(ckms_query(b, qs[i]), want[i],
				    "case %d cut %zu q=%g: got %u want %u", cases,
				    k, qs[i], ckms_query(b, qs[i]), want[i]);
			assert_same(a, b, "reference", k);
			ckms_free(a);
			ckms_free(b);
		}
		cases++;
	}
	fclose(f);
	cr_assert_eq(cases, 150, "%d reference cases read", cases);
}

/* Large sketches, narrow and wide, saved with values in the buffer. */
Test(state, ckms_large_round_trip_narrow_and_wide)
{
	static const double eps[] = { 0.01, 0.001, 0.3 };
	for (size_t e = 0; e < 3; e++) {
		for (int wide = 0; wide < 2; wide++) {
			struct ckms *a = ckms_new(eps[e]);
			cr_assert_not_null(a);
			for (int i = 0; i < 200003; i++)
				ckms_insert(a, (uint32_t)(rng() % 100000));
			if (wide)
				ckms_widen(a);
			if (wide)
				cr_assert_eq(ckms_sample_bytes(a), 12u);
			struct ckms *b = reload_one(a, eps[e]);
			cr_assert_eq(ckms_sample_bytes(b), ckms_sample_bytes(a));
			assert_same(a, b, "large", (size_t)e);
			for (int i = 0; i < 50021; i++) {
				uint32_t x = (uint32_t)(rng() % 1000000);
				ckms_insert(a, x);
				ckms_insert(b, x);
			}
			assert_same(a, b, "large, then more", (size_t)e);
			ckms_free(a);
			ckms_free(b);
		}
	}
}

Test(state, cma_round_trip_is_exact)
{
	struct cma m[3] = { { 0, 0 }, { 0, 0 }, { 0, 0 } };
	for (int i = 0; i < 100; i++)
		cma_add(&m[0], 1000);
	cma_add(&m[1], 3);
	for (int i = 0; i < 100000; i++)
		cma_add(&m[2], (uint32_t)rng());
	static struct state_writer w;
	cr_assert_eq(state_begin(&w, path), 0);
	state_put(&w, m, sizeof(m));
	struct state_info info = { STATE_CMA, 0, 1, 100101 }, got;
	cr_assert_eq(state_end(&w, &info), 0);
	struct state_reader r;
	const char *why;
	struct cma back[3];
	cr_assert_eq(state_load(path, STATE_CMA, 0, &got, &r, &why), 1);
	cr_assert_eq(state_get(&r, back, sizeof(back)), 0);
	cr_assert_eq(r.left, 0);
	state_close(&r);
	cr_assert_eq(got.committed, 100101);
	cr_assert_eq(got.run, 1);
	cr_assert_eq(memcmp(back, m, sizeof(m)), 0);
	/* and they go on alike: (100 * 1000 + 2000) / 101, as the report
	 * prints it */
	cma_add(&back[0], 2000);
	cma_add(&m[0], 2000);
	cr_assert_eq(memcmp(&back[0], &m[0], sizeof(m[0])), 0);
	char s[64];
	cma_format(back[0].mean, s, sizeof(s));
	cr_assert_str_eq(s, "1009.9009900990098");
}

/* ---- damaged and foreign files ------------------------------------------ */

static unsigned char *
slurp(size_t *n)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	unsigned char *b = malloc(1 << 22);
	cr_assert_not_null(b);
	*n = fread(b, 1, 1 << 22, f);
	fclose(f);
	return b;
}

static void
spit(const void *b, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_neq(fd, -1);
	cr_assert_eq(write(fd, b, n), (ssize_t)n);
	close(fd);
}

/* A file of three sketches: a few buffered values, a narrow one, a wide
 * one. */
static unsigned char *
valid_file(size_t *n)
{
	struct ckms *s[3];
	for (int i = 0; i < 3; i++)
		cr_assert_not_null(s[i] = ckms_new(0.01));
	for (int i = 0; i < 7; i++)
		ckms_insert(s[0], (uint32_t)(i * 37 % 11));
	for (int i = 0; i < 3000; i++)
		ckms_insert(s[1], (uint32_t)(rng() % 5000));
	for (int i = 0; i < 1021; i++)
		ckms_insert(s[2], (uint32_t)rng());
	ckms_widen(s[2]);
	save_sketches(s, 3, 0.01, 42);
	for (int i = 0; i < 3; i++)
		ckms_free(s[i]);
	return slurp(n);
}

Test(state, truncated_at_every_length_is_refused)
{
	size_t n;
	unsigned char *b = valid_file(&n);
	struct ckms *out[3];
	size_t got;
	struct state_info info;
	cr_assert_eq(load_sketches(0.01, out, 3, &got, &info), 1);
	cr_assert_eq(got, 3);
	cr_assert_eq(info.committed, 42);
	for (size_t i = 0; i < got; i++)
		ckms_free(out[i]);
	for (size_t len = 0; len < n; len++) {
		spit(b, len);
		cr_assert_eq(load_sketches(0.01, out, 3, &got, &info), -1,
		    "cut at %zu of %zu loaded", len, n);
	}
	free(b);
}

Test(state, any_changed_byte_is_refused)
{
	size_t n;
	unsigned char *b = valid_file(&n);
	struct ckms *out[3];
	size_t got;
	struct state_info info;
	for (size_t i = 0; i < n; i++) {
		unsigned char keep = b[i];
		b[i] ^= (unsigned char)(1u << (i % 8));
		spit(b, n);
		cr_assert_eq(load_sketches(0.01, out, 3, &got, &info), -1,
		    "bit %zu of byte %zu flipped: loaded", i % 8, i);
		b[i] = (unsigned char)~keep;
		spit(b, n);
		cr_assert_eq(load_sketches(0.01, out, 3, &got, &info), -1,
		    "byte %zu inverted: loaded", i);
		b[i] = keep;
	}
	/* one byte more */
	b[n] = 0;
	spit(b, n + 1);
	cr_assert_eq(load_sketches(0.01, out, 3, &got, &info), -1);
	free(b);
}

Test(state, foreign_files_are_refused)
{
	struct state_info info;
	struct state_reader r;
	const char *why;
	size_t n, got;
	struct ckms *out[3];
	unsigned char *b = valid_file(&n);
	/* another error bound, another kind */
	cr_assert_eq(state_load(path, STATE_CKMS, 0.001, &info, &r, &why), -1);
	cr_assert_str_eq(why, "written with another --error");
	state_close(&r);
	cr_assert_eq(state_load(path, STATE_CMA, 0.01, &info, &r, &why), -1);
	cr_assert_str_eq(why, "written by another kind of egress");
	state_close(&r);
	/* another magic */
	b[0] = 'X';
	spit(b, n);
	cr_assert_eq(state_load(path, STATE_CKMS, 0.01, &info, &r, &why), -1);
	cr_assert_str_eq(why, "not a telem state file");
	state_close(&r);
	/* garbage of every size up to a few headers */
	for (size_t len = 0; len < 300; len++) {
		for (size_t i = 0; i < len; i++)
			b[i] = (unsigned char)rng();
		spit(b, len);
		cr_assert_eq(load_sketches(0.01, out, 3, &got, &info), -1);
	}
	/* open to others */
	valid_file(&n);
	cr_assert_eq(chmod(path, 0622), 0);
	cr_assert_eq(state_load(path, STATE_CKMS, 0.01, &info, &r, &why), -1);
	cr_assert_str_eq(why, "writable by others");
	state_close(&r);
	cr_assert_eq(chmod(path, 0600), 0);
	/* a text file, a folder */
	spit("hello\n", 6);
	cr_assert_eq(load_sketches(0.01, out, 3, &got, &info), -1);
	unlink(path);
	cr_assert_eq(load_sketches(0.01, out, 3, &got, &info), 0, "no file");
	cr_assert_eq(mkdir(path, 0700), 0);
	cr_assert_eq(state_load(path, STATE_CKMS, 0.01, &info, &r, &why), -1);
	state_close(&r);
	rmdir(path);
	/* a symbolic link, even to a good file: refused, said as such */
	char target[200];
	snprintf(target, sizeof(target), "%s/target", dir);
	free(valid_file(&n));
	cr_assert_eq(rename(path, target), 0);
	cr_assert_eq(symlink(target, path), 0);
	cr_assert_eq(state_load(path, STATE_CKMS, 0.01, &info, &r, &why), -1);
	cr_assert_str_eq(why, "a symbolic link, not followed");
	state_close(&r);
	unlink(path);
	unlink(target);
	/* a FIFO, which nobody writes: refused, not waited on */
	cr_assert_eq(mkfifo(path, 0600), 0);
	cr_assert_eq(state_load(path, STATE_CKMS, 0.01, &info, &r, &why), -1);
	cr_assert_str_eq(why, "not a regular file");
	state_close(&r);
	unlink(path);
	free(b);
}

/* Bodies with a right sum but wrong content (a bug, or someone else's
 * file): changed bytes of a valid body, summed again. Each is refused or
 * gives sketches that can be queried and fed; none crashes (run this under
 * `make check` for the sanitizers' word on it). */
Test(state, well_summed_nonsense_never_crashes)
{
	size_t n;
	unsigned char *b = valid_file(&n);
	const size_t hdr = 64;
	unsigned char *body = b + hdr;
	size_t blen = n - hdr;
	int refused = 0, loaded = 0;
	static struct state_writer w;
	for (int it = 0; it < 20000; it++) {
		unsigned char *m = malloc(blen);
		cr_assert_not_null(m);
		memcpy(m, body, blen);
		int k = 1 + (int)(rng() % 4);
		for (int j = 0; j < k; j++) {
			size_t at = (size_t)(rng() % (it % 2 ? 200 : blen));
			m[at] = (unsigned char)(rng() % 3 == 0 ? 0 : rng());
		}
		size_t len = rng() % 8 == 0 ? (size_t)(rng() % blen) : blen;
		cr_assert_eq(state_begin(&w, path), 0);
		state_put(&w, m, len);
		struct state_info info = { STATE_CKMS, 0.01, 7, 42 };
		cr_assert_eq(state_end(&w, &info), 0);
		free(m);
		struct ckms *out[3];
		size_t got;
		if (load_sketches(0.01, out, 3, &got, &info) == -1) {
			refused++;
			continue;
		}
		loaded++;
		for (size_t i = 0; i < got; i++) {
			for (int q = 0; q < 6; q++)
				ckms_query(out[i], qs[q]);
			for (int x = 0; x < 120; x++)
				ckms_insert(out[i], (uint32_t)rng());
			ckms_query(out[i], 0.5);
			ckms_free(out[i]);
		}
	}
	cr_log_info("nonsense bodies: %d refused, %d loaded", refused, loaded);
	cr_assert_gt(refused, 0);
	free(b);
}

Test(state, reject_sets_the_file_aside)
{
	spit("garbage", 7);
	state_reject(path, "test");
	char bad[200];
	snprintf(bad, sizeof(bad), "%s.bad", path);
	struct stat st;
	cr_assert_eq(stat(bad, &st), 0, "%s missing", bad);
	cr_assert_eq(st.st_size, 7);
	cr_assert_neq(stat(path, &st), 0, "%s still there", path);
}

Test(state, a_failed_save_keeps_the_previous_file)
{
	size_t n;
	unsigned char *b = valid_file(&n);
	static struct state_writer w;
	cr_assert_eq(state_begin(&w, path), 0);
	state_put(&w, "half", 4);
	state_abort(&w);
	size_t n2;
	unsigned char *b2 = slurp(&n2);
	cr_assert_eq(n2, n);
	cr_assert_eq(memcmp(b, b2, n), 0);
	char tmp[200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(access(tmp, F_OK), -1, "temporary left behind");
	/* a temporary left by a killed save is replaced; a symlink there is
	 * removed, never followed */
	char target[200];
	snprintf(target, sizeof(target), "%s/target", dir);
	cr_assert_eq(symlink(target, tmp), 0);
	cr_assert_eq(state_begin(&w, path), 0);
	state_put(&w, "x", 1);
	struct state_info info = { STATE_CMA, 0, 0, 0 };
	cr_assert_eq(state_end(&w, &info), 0);
	cr_assert_eq(access(target, F_OK), -1, "the symlink was followed");
	/* a folder that is not there: begin fails, nothing changes */
	cr_assert_eq(state_begin(&w, "/nonexistent-telem/x.state"), -1);
	free(b);
	free(b2);
}

/* A failed save says what failed, on which file: a folder at PATH.tmp
 * is not PATH's fault, nor a folder at PATH the temporary's. */
Test(state, a_failed_save_names_the_step_and_its_file)
{
	static struct state_writer w;
	char tmp[200], want[500], got[600];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(mkdir(tmp, 0700), 0);
	cr_assert_eq(state_begin(&w, path), -1);
	cr_assert_eq(errno, EISDIR, "%s", strerror(errno));
	snprintf(want, sizeof(want), "remove %s", tmp);
	cr_assert_str_eq(state_failed(&w, got, sizeof(got)), want);
	cr_assert_eq(errno, EISDIR, "state_failed kept errno");
	cr_assert_eq(rmdir(tmp), 0);

	cr_assert_eq(mkdir(path, 0700), 0);
	char inside[300];
	snprintf(inside, sizeof(inside), "%s/x", path);
	cr_assert_eq(mkdir(inside, 0700), 0);  /* not empty: rename refuses */
	cr_assert_eq(state_begin(&w, path), 0);
	state_put(&w, "x", 1);
	struct state_info info = { STATE_CMA, 0, 0, 0 };
	cr_assert_eq(state_end(&w, &info), -1);
	snprintf(want, sizeof(want), "rename %s over %s", tmp, path);
	cr_assert_str_eq(state_failed(&w, got, sizeof(got)), want);
	cr_assert_eq(access(tmp, F_OK), -1, "temporary left behind");
	cr_assert_eq(rmdir(inside), 0);
	cr_assert_eq(rmdir(path), 0);

	cr_assert_eq(state_begin(&w, "/nonexistent-telem/x.state"), -1);
	cr_assert_str_eq(state_failed(&w, got, sizeof(got)),
	    "create /nonexistent-telem/x.state.tmp");
}

/* ---- an egress's whole state (egress/egress.c) ---------------------------- */

static void
save_avg(struct state_writer *w, const void *payload)
{
	state_put(w, payload, sizeof(struct cma));
}

static int
load_avg(void *e, struct state_reader *r, void *payload, const char **why)
{
	(void)e;
	struct cma *m = payload;
	if (state_get(r, m, sizeof(*m)) == -1 || m->n == 0) {
		*why = "average";
		return -1;
	}
	return 0;
}

static const struct egress_kind avg_kind = { STATE_CMA, save_avg, load_avg, NULL };

/* A stage with a stats segment of its own (in memory) and slot 0. */
struct fake {
	struct stage st;
	struct stats_seg seg;
	struct egress e;
};

static void
fake_init(struct fake *f, uint64_t run)
{
	memset(f, 0, sizeof(*f));
	f->seg.run = run;
	f->st.seg = &f->seg;
	f->st.stats = &f->seg.slot[0];
	f->st.name = "test";
	f->e.state_path = path;
	cr_assert_eq(egress_init(&f->st, &f->e, sizeof(struct cma), &avg_kind,
	    REPORT_SRC_CMA), 0);
}

static void
feed(struct fake *f, const char *name, uint32_t v)
{
	int created;
	struct cma *m = egress_lookup(&f->st, &f->e, name, strlen(name), &created);
	cr_assert_not_null(m);
	stats_add(&f->st.stats->in, 1);
	cma_add(m, v);
	egress_applied(&f->e);
}

static const struct cma *
avg_of(struct fake *f, const char *name)
{
	int created;
	const struct cma *m = names_get(f->e.names, name, strlen(name), &created);
	cr_assert_not_null(m);
	cr_assert_eq(created, 0, "%s not loaded", name);
	return m;
}

Test(state, egress_saves_books_out_and_loads_everything)
{
	struct fake *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	cr_assert(a != NULL && b != NULL);
	fake_init(a, 99);
	for (int i = 0; i < 100; i++)
		feed(a, "y", 1000);
	feed(a, "x", 3);
	/* applied, not saved: in flight */
	cr_assert_eq(stats_get(&a->st.stats->out), 0);
	cr_assert_eq(stats_inflight(a->st.stats), 101);
	cr_assert_eq(egress_save(&a->st, &a->e), 0);
	cr_assert_eq(stats_get(&a->st.stats->out), 101);
	cr_assert_eq(stats_inflight(a->st.stats), 0);
	/* another run of the pipeline: everything loads, nothing is booked */
	fake_init(b, 100);
	cr_assert_eq(names_count(b->e.names), 2);
	cr_assert_eq(memcmp(avg_of(b, "y"), avg_of(a, "y"), sizeof(struct cma)), 0);
	cr_assert_eq(memcmp(avg_of(b, "x"), avg_of(a, "x"), sizeof(struct cma)), 0);
	cr_assert_eq(b->e.dirty, 1, "data since the last report is remembered");
	cr_assert_eq(stats_get(&b->st.stats->out), 0);
	b->e.state_path = NULL;
	egress_fini(&b->st, &b->e);
	/* the same run, but a slot that took nothing: never more out than in */
	fake_init(b, 99);
	cr_assert_eq(stats_get(&b->st.stats->out), 0);
	b->e.state_path = NULL;
	egress_fini(&b->st, &b->e);
	/* killed after the save was in place but before it was booked: the
	 * supervisor had booked those records lost */
	memset(&b->seg.slot[0], 0, sizeof(b->seg.slot[0]));
	b->seg.run = 99;
	stats_add(&b->seg.slot[0].in, 101);
	stats_add(&b->seg.slot[0].out, 60);
	stats_add(&b->seg.slot[0].lost, 41);
	b->st.out_total = 60;  /* what stage_main reads from the slot */
	b->e.state_path = path;
	b->e.names = NULL;
	cr_assert_eq(egress_init(&b->st, &b->e, sizeof(struct cma), &avg_kind,
	    REPORT_SRC_CMA), 0);
	cr_assert_eq(stats_get(&b->st.stats->out), 101);
	cr_assert_eq(stats_get(&b->st.stats->lost), 0);
	b->e.state_path = NULL;
	egress_fini(&b->st, &b->e);
	/* the same run, but the stage defined again in it (removed and added
	 * by reloads: another `born`): its books began anew, so the file's
	 * count is not booked against them */
	memset(&b->seg.slot[0], 0, sizeof(b->seg.slot[0]));
	b->seg.slot[0].born = 2;
	stats_add(&b->seg.slot[0].in, 30);
	stats_add(&b->seg.slot[0].lost, 30);
	b->st.out_total = 0;
	b->e.state_path = path;
	b->e.names = NULL;
	cr_assert_eq(egress_init(&b->st, &b->e, sizeof(struct cma), &avg_kind,
	    REPORT_SRC_CMA), 0);
	cr_assert_eq(names_count(b->e.names), 2, "the aggregates still load");
	cr_assert_eq(stats_get(&b->st.stats->out), 0);
	cr_assert_eq(stats_get(&b->st.stats->lost), 30);
	b->e.state_path = NULL;
	egress_fini(&b->st, &b->e);
	a->e.state_path = NULL;
	egress_fini(&a->st, &a->e);
	free(a);
	free(b);
}

/* The slot of a, as a restart of its egress in the same run finds it. */
static void
restart_as(struct fake *b, const struct fake *a)
{
	memset(b, 0, sizeof(*b));
	memcpy(&b->seg, &a->seg, sizeof(b->seg));
	b->st.seg = &b->seg;
	b->st.stats = &b->seg.slot[0];
	b->st.name = "test";
	b->st.out_total = stats_get(&b->seg.slot[0].out);
	b->e.state_path = path;
	cr_assert_eq(egress_init(&b->st, &b->e, sizeof(struct cma), &avg_kind,
	    REPORT_SRC_CMA), 0);
}

/* What this run saved and the file the egress starts from lacks went with
 * the file that held it (removed, set aside, replaced by an older save):
 * moved from `out` to `lost`, so that lost is what the aggregates lack. */
Test(state, egress_without_what_it_saved_counts_it_lost)
{
	struct fake *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	cr_assert(a != NULL && b != NULL);
	fake_init(a, 99);
	for (int i = 0; i < 40; i++)
		feed(a, "y", 1000);
	cr_assert_eq(egress_save(&a->st, &a->e), 0);
	size_t n;
	unsigned char *older = slurp(&n);  /* a save holding 40 */
	for (int i = 0; i < 60; i++)
		feed(a, "y", 1000);
	cr_assert_eq(egress_save(&a->st, &a->e), 0);
	cr_assert_eq(stats_get(&a->st.stats->out), 100);
	/* removed */
	cr_assert_eq(unlink(path), 0);
	restart_as(b, a);
	cr_assert_eq(names_count(b->e.names), 0);
	cr_assert_eq(stats_get(&b->st.stats->out), 0);
	cr_assert_eq(stats_get(&b->st.stats->lost), 100);
	cr_assert_eq(stats_inflight(b->st.stats), 0);
	b->e.state_path = NULL;
	egress_fini(&b->st, &b->e);
	/* set aside */
	spit("garbage", 7);
	restart_as(b, a);
	cr_assert_eq(names_count(b->e.names), 0);
	cr_assert_eq(stats_get(&b->st.stats->out), 0);
	cr_assert_eq(stats_get(&b->st.stats->lost), 100);
	b->e.state_path = NULL;
	egress_fini(&b->st, &b->e);
	/* an older save of this run: it lacks the last 60 */
	spit(older, n);
	restart_as(b, a);
	cr_assert_eq(avg_of(b, "y")->n, 40);
	cr_assert_eq(stats_get(&b->st.stats->out), 40);
	cr_assert_eq(stats_get(&b->st.stats->lost), 60);
	b->e.state_path = NULL;
	egress_fini(&b->st, &b->e);
	/* the same file of another run: none of this run's records */
	a->seg.run = 100;
	restart_as(b, a);
	cr_assert_eq(avg_of(b, "y")->n, 40);
	cr_assert_eq(stats_get(&b->st.stats->out), 0);
	cr_assert_eq(stats_get(&b->st.stats->lost), 100);
	b->e.state_path = NULL;
	egress_fini(&b->st, &b->e);
	free(older);
	a->e.state_path = NULL;
	egress_fini(&a->st, &a->e);
	free(a);
	free(b);
}

static void
report_none(void *e, const char *name, size_t len, void *payload)
{
	(void)e;
	(void)name;
	(void)len;
	(void)payload;
}

/* A save that fails (here late, at the rename over a folder in the way,
 * having written the whole state) is tried again by the tick an interval
 * later, spaced as saves are: not at each report, which would write the
 * whole state at every Flush for as long as the fault lasts. */
Test(state, a_failed_save_is_tried_again_by_the_tick_not_at_each_report)
{
	struct fake *a = malloc(sizeof(*a));
	cr_assert_not_null(a);
	fake_init(a, 5);
	cr_assert_eq(mkdir(path, 0700), 0);
	for (int i = 0; i < 10; i++)
		feed(a, "y", 1000);
	cr_assert_eq(egress_save(&a->st, &a->e), -1);
	cr_assert_eq(rmdir(path), 0);  /* the fault is gone */
	egress_flush(&a->st, &a->e, report_none);
	cr_assert_eq(access(path, F_OK), -1, "saved at the report");
	cr_assert_eq(stats_get(&a->st.stats->out), 0);
	egress_tick(&a->st, &a->e);
	cr_assert_eq(access(path, F_OK), -1, "saved at once by the tick");
	/* an interval later */
	a->e.unsaved_ms -= EGRESS_SAVE_AFTER_MS;
	a->e.saved_s -= 1 + EGRESS_SAVE_SPACING * a->e.save_cost_s;
	egress_tick(&a->st, &a->e);
	cr_assert_eq(access(path, F_OK), 0, "not saved an interval later");
	cr_assert_eq(stats_get(&a->st.stats->out), 10);
	a->e.state_path = NULL;
	egress_fini(&a->st, &a->e);
	free(a);
}

/* Changed bytes of a saved egress body, summed again: loaded or set
 * aside, never a crash; a set-aside file leaves the egress empty. */
Test(state, egress_body_nonsense_never_crashes)
{
	struct fake *a = malloc(sizeof(*a));
	cr_assert_not_null(a);
	fake_init(a, 1);
	char name[16];
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		feed(a, name, (uint32_t)i);
	}
	cr_assert_eq(egress_save(&a->st, &a->e), 0);
	a->e.state_path = NULL;
	egress_fini(&a->st, &a->e);
	size_t n;
	unsigned char *b = slurp(&n);
	static struct state_writer w;
	char bad[200];
	snprintf(bad, sizeof(bad), "%s.bad", path);
	int refused = 0;
	for (int it = 0; it < 3000; it++) {
		unsigned char *m = malloc(n);
		cr_assert_not_null(m);
		memcpy(m, b + 64, n - 64);
		for (int j = 0; j < 1 + (int)(rng() % 3); j++)
			m[rng() % (n - 64)] = (unsigned char)rng();
		cr_assert_eq(state_begin(&w, path), 0);
		state_put(&w, m, n - 64 - (rng() % 4 == 0 ? rng() % (n - 64) : 0));
		struct state_info info = { STATE_CMA, 0, 1, 20 };
		cr_assert_eq(state_end(&w, &info), 0);
		free(m);
		fake_init(a, 2);
		if (access(bad, F_OK) == 0) {
			refused++;
			cr_assert_eq(names_count(a->e.names), 0, "set aside, yet names");
			unlink(bad);
		}
		a->e.state_path = NULL;
		egress_fini(&a->st, &a->e);
	}
	cr_log_info("egress bodies: %d of 3000 set aside", refused);
	cr_assert_gt(refused, 0);
	free(b);
	free(a);
}
