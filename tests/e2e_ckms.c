/* e2e_ckms.c - the seed's 150 CKMS reference cases end to end: each case's
 * values go over UDP under a name of its own, with -l 4294967295 so every
 * value reaches the CKMS egress, and the report must match the seed's. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct pl P;

static void setup(void) { pl_init(&P); }
static void teardown(void) { pl_cleanup(&P); }

#define MAXCASES 200

Test(ckms_e2e, reference_cases_over_udp, .init = setup, .fini = teardown,
    .timeout = 60)
{
	FILE *f = fopen("tests/data/ckms-reference.txt", "r");
	cr_assert_not_null(f, "tests/data/ckms-reference.txt");
	static char want[MAXCASES][256];
	static char dgram[8192];
	char line[8192];
	int ncase = 0;
	long long values = 0;

	cr_assert(pl_start(&P, "-l", "4294967295", "-f", "60000", "-m", "2048", NULL),
	    "%s", h_slurp(P.err));
	while (fgets(line, sizeof(line), f) != NULL && ncase < MAXCASES) {
		if (strncmp(line, "in ", 3) == 0) {
			/* One datagram per case keeps the values in order. */
			size_t len = 0;
			for (char *t = strtok(line + 3, " \n"); t; t = strtok(NULL, " \n")) {
				len += (size_t)snprintf(dgram + len, sizeof(dgram) - len,
				    "r%d %s\n", ncase, t);
				values++;
			}
			pl_sendto(&P, dgram, len);
		} else if (strncmp(line, "out ", 4) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(want[ncase++], sizeof(want[0]), "%.250s", line + 4);
		}
	}
	fclose(f);
	cr_assert_eq(ncase, 150);

	int drained = 0;
	for (int i = 0; i < 1000 && !drained; i++) {
		drained = pl_stat(&P, "ckms", "in") == values;
		if (!drained)
			usleep(10000);
	}
	cr_assert(drained, "ckms took in %lld of %lld values", pl_stat(&P, "ckms", "in"), values);
	char reply[256];
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "flush"), 0, "%s", reply);
	cr_assert(h_wait_text(P.out, "[CKMS] ", ncase * 6, 5000), "%s", h_slurp(P.out));

	char *out = h_slurp(P.out);
	for (int c = 0; c < ncase; c++) {
		/* Rebuild "0:x 0.25:x ..." from the six report lines of r<c>. */
		char got[256] = "", key[32];
		size_t glen = 0;
		snprintf(key, sizeof(key), "[CKMS] r%d ", c);
		for (const char *s = out; (s = strstr(s, key)) != NULL; s += strlen(key)) {
			const char *v = s + strlen(key);
			size_t n = strcspn(v, "\n");
			glen += (size_t)snprintf(got + glen, sizeof(got) - glen, "%s%.*s",
			    glen ? " " : "", (int)n, v);
		}
		cr_expect_str_eq(got, want[c], "case %d", c);
	}
	free(out);
}

Test(ckms_e2e, name_cap_drops_and_counts_new_names, .init = setup,
    .fini = teardown, .timeout = 60)
{
	char reply[4096], cmd[512], exe[256];
	cr_assert(pl_start(&P, "-f", "100", "-m", "1024", NULL), "%s", h_slurp(P.err));
	/* The egress's own options come with a swap: a cap of 2 names. */
	snprintf(cmd, sizeof(cmd), "swap cma %s --max-names 2",
	    h_bin("telem-egress-cma", exe, sizeof(exe)));
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), cmd), 0, "%s", reply);
	pl_nc(&P, "n1 500\nn2 600\nn3 700\nn4 800\nn1 700\n");
	cr_assert(h_wait_text(P.out, "[CMA] n2 600\n", 1, 5000), "%s", h_slurp(P.out));
	int counted = 0;
	for (int i = 0; i < 500 && !counted; i++, usleep(10000))
		counted = pl_stat(&P, "cma", "dropped") == 2 && pl_stat(&P, "cma", "in") == 5;
	cr_assert(counted, "cma in=%lld dropped=%lld", pl_stat(&P, "cma", "in"),
	    pl_stat(&P, "cma", "dropped"));
	/* out: once a save of the state holds them (docs/design.md §13) */
	for (int i = 0; i < 500 && pl_stat(&P, "cma", "out") != 3; i++)
		usleep(10000);
	cr_assert_eq(pl_stat(&P, "cma", "out"), 3);
	cr_assert(h_wait_text(P.out, "[CMA] n1 600\n", 1, 5000), "%s", h_slurp(P.out));
	char *out = h_slurp(P.out);
	cr_assert(strstr(out, " n3 ") == NULL && strstr(out, " n4 ") == NULL, "%s", out);
	free(out);
	cr_assert(h_wait_text(P.err, "name cap of 2 reached", 1, 5000), "%s", h_slurp(P.err));
}

Test(ckms_e2e, error_outside_open_interval_is_refused, .timeout = 60)
{
	static const char *const bad[] = { "0", "0.5", "0.75", "-0.1", "x", "" };
	char exe[256], cmd[512], err[128];
	h_tmp_name(err, sizeof(err), "ckms-err");
	int fd = mkstemp(err);
	cr_assert_neq(fd, -1, "mkstemp %s", err);
	close(fd);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s --in ckms --error '%s' 2>%s",
		    h_bin("telem-egress-ckms", exe, sizeof(exe)), bad[i], err);
		int st = system(cmd);
		char *e = h_slurp(err);
		cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 100, "'%s' -> %d", bad[i], st);
		cr_expect(strstr(e, "must be a number in (0, 0.5)") != NULL &&
		    h_count(e, "\n") == 1, "'%s': %s", bad[i], e);
		free(e);
	}
	unlink(err);
}
