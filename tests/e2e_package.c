/* e2e_package.c - telem as an installed daemon: the version of every
 * program, the Makefile's flags and install layout, the man pages (mandoc
 * lint, every option covered), the systemd unit (systemd-analyze verify),
 * readiness and stopping told to a NOTIFY_SOCKET of the test's own, the
 * -q and -v log levels, and the Debian package run from its extracted
 * tree and installed, upgraded and purged with dpkg (as root). Run from the top of the source tree (tests/run.sh does). Checks
 * that do not depend on the transport run in the mqueue pass only. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct pl P;
static char tmp[256];

static void
setup(void)
{
	/* The make commands below are make's own, not part of a `make test`
	 * that runs this: no jobserver, no variables of that make. */
	unsetenv("MAKEFLAGS");
	unsetenv("MFLAGS");
	unsetenv("MAKELEVEL");
	unsetenv("MAKEOVERRIDES");
	pl_init(&P);
	snprintf(tmp, sizeof(tmp), "%s/pkg", P.dir);
	cr_assert_eq(mkdir(tmp, 0700), 0, "mkdir %s: %s", tmp, strerror(errno));
}

static void
teardown(void)
{
	pl_cleanup(&P);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", P.dir);
	(void)!system(cmd);
}

TestSuite(package, .init = setup, .fini = teardown, .timeout = 90);

static const char *const progs[] = {
	"telem-supervisor", "telemctl", "telem-ingest", "telem-filter",
	"telem-egress-ckms", "telem-egress-cma", "telem-example-prefix",
	"telem-egress-statsd", "telem-sink-carbon", "telem-sink-prom",
};
#define NPROGS (sizeof(progs) / sizeof(progs[0]))

/* Run a shell command; its stdout and stderr, malloc'd, into *out.
 * Returns the exit status, or -1 if it did not exit. */
static int
sh(char **out, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	char full[4200];
	snprintf(full, sizeof(full), "(%s) 2>&1", cmd);
	FILE *f = popen(full, "r");
	cr_assert_not_null(f, "popen %s", cmd);
	size_t cap = 4096, len = 0, n;
	char *buf = malloc(cap);
	cr_assert_not_null(buf);
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (len + 1 == cap) {
			buf = realloc(buf, cap *= 2);
			cr_assert_not_null(buf);
		}
	}
	buf[len] = '\0';
	int st = pclose(f);
	if (out != NULL)
		*out = buf;
	else
		free(buf);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Criterion runs no .fini after cr_skip_test: clean up first. */
static void
mqueue_pass_only(void)
{
	if (strcmp(h_transport(), "mqueue") != 0) {
		teardown();
		cr_skip_test("does not depend on the transport: mqueue pass only");
	}
}

static const char *
bindir(void)
{
	const char *b = getenv("TELEM_BIN");
	return b != NULL ? b : "bin";
}

Test(package, every_program_prints_the_makefile_version)
{
	mqueue_pass_only();
	char *want;
	cr_assert_eq(sh(&want, "make -s --no-print-directory version"), 0, "%s", want);
	want[strcspn(want, "\n")] = '\0';
	regex_t re;
	cr_assert_eq(regcomp(&re, "^[0-9]+\\.[0-9]+\\.[0-9]+", REG_EXTENDED), 0);
	cr_assert_eq(regexec(&re, want, 0, NULL, 0), 0,
	    "make version says '%s', not X.Y.Z...", want);
	regfree(&re);
	char line[256];
	snprintf(line, sizeof(line), "telem %s\n", want);
	for (size_t i = 0; i < NPROGS; i++) {
		for (int k = 0; k < 2; k++) {
			const char *opt = k ? "--version" : "-V";
			char *out;
			int rc = sh(&out, "'%s/%s' %s </dev/null", bindir(), progs[i], opt);
			cr_expect_eq(rc, 0, "%s %s exited %d: %s", progs[i], opt, rc, out);
			cr_expect_str_eq(out, line, "%s %s printed '%s', not '%s'", progs[i],
			    opt, out, line);
			free(out);
		}
	}
	free(want);
}

/* The Debian version make deb gives the package (DEB_VERSION, then -1 as
 * dist/mkdeb.sh adds) of the checkout in `dir`. */
static void
deb_version(const char *dir, char *buf, size_t cap)
{
	char *out;
	int rc = sh(&out, "make -s --no-print-directory -C '%s' --eval "
	    "'deb-version: ; @echo $(DEB_VERSION)-1' deb-version", dir);
	cr_assert_eq(rc, 0, "%s", out);
	out[strcspn(out, "\n")] = '\0';
	snprintf(buf, cap, "%s", out);
	free(out);
}

#define GIT_AS_T "git -c user.name=t -c user.email=t@example.org"

/* In a clone without tags, with this tree's Makefile committed: the
 * packages of commits before the tag vBASE sort before the release's, and
 * those after it after it. */
Test(package, packages_before_a_release_tag_sort_before_the_release)
{
	mqueue_pass_only();
	char *out;
	int rc = sh(&out, "git clone -q . '%s/src' && cp Makefile '%s/src/' && "
	    "cd '%s/src' && git tag -l | xargs -r git tag -d >/dev/null && "
	    GIT_AS_T " commit -q --allow-empty -am Makefile", tmp, tmp, tmp);
	cr_assert_eq(rc, 0, "git clone: %s", out);
	free(out);
	char dir[300], before[128], at[128], after[128], base[64];
	snprintf(dir, sizeof(dir), "%s/src", tmp);
	deb_version(dir, before, sizeof(before));
	size_t n = strcspn(before, "~");
	cr_assert(before[n] == '~' && strncmp(before + n, "~git", 4) == 0 &&
	    n < sizeof(base), "before any tag: %s", before);
	memcpy(base, before, n);
	base[n] = '\0';
	rc = sh(&out, "cd '%s' && git tag 'v%s'", dir, base);
	cr_assert_eq(rc, 0, "git tag: %s", out);
	free(out);
	deb_version(dir, at, sizeof(at));
	char want[80];
	snprintf(want, sizeof(want), "%s-1", base);
	cr_assert_str_eq(at, want);
	rc = sh(&out, "cd '%s' && " GIT_AS_T " commit -q --allow-empty -m after",
	    dir);
	cr_assert_eq(rc, 0, "git commit: %s", out);
	free(out);
	deb_version(dir, after, sizeof(after));
	rc = sh(&out, "dpkg --compare-versions '%s' lt '%s' && "
	    "dpkg --compare-versions '%s' gt '%s'", before, at, after, at);
	cr_assert_eq(rc, 0, "not %s < %s < %s: %s", before, at, after, out);
	free(out);
}

Test(package, user_flags_are_added_to_the_projects_own)
{
	mqueue_pass_only();
	/* From the command line and from the environment alike: the
	 * project's -Werror stays, the user's flags come after it. */
	char *out;
	int rc = sh(&out, "CPPFLAGS=-DTELEM_ENV_CPP make -n -B --no-print-directory "
	    "BUILD='%s/b' BIN='%s/b/bin' CFLAGS='-DTELEM_USER_CFLAG -O0' "
	    "LDFLAGS=-Wl,--as-needed '%s/b/bin/telemctl'", tmp, tmp, tmp);
	cr_assert_eq(rc, 0, "make -n: %s", out);
	int compiles = 0, links = 0;
	for (char *l = strtok(out, "\n"); l != NULL; l = strtok(NULL, "\n")) {
		if (strstr(l, " -c -o ") != NULL) {
			compiles++;
			cr_expect(strstr(l, "-Werror") && strstr(l, "-DTELEM_USER_CFLAG") &&
			    strstr(l, "-DTELEM_ENV_CPP") && strstr(l, "-std=c11"),
			    "compile line lacks the project's or the user's flags: %s", l);
			char *w = strstr(l, "-O2"), *u = strstr(l, "-O0");
			cr_expect(w && u && w < u, "the user's -O0 must come after -O2: %s", l);
		} else if (strstr(l, "-o ") != NULL && strstr(l, "bin/telemctl") != NULL) {
			links++;
			cr_expect(strstr(l, "-Wl,--as-needed") && strstr(l, "-lrt"),
			    "link line lacks LDFLAGS or the project's libraries: %s", l);
		}
	}
	cr_expect_gt(compiles, 10, "only %d compile lines", compiles);
	cr_expect_eq(links, 1);
	free(out);
}

static int
exists(const char *dir, const char *rel)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	return access(path, F_OK) == 0;
}

Test(package, install_puts_stages_in_libexec_and_uninstall_removes_all)
{
	mqueue_pass_only();
	char *out;
	int rc = sh(&out, "make -s --no-print-directory install-files DESTDIR='%s' "
	    "PREFIX=/opt/t BIN='%s'", tmp, bindir());
	cr_assert_eq(rc, 0, "make install-files: %s", out);
	free(out);
	char root[300];
	snprintf(root, sizeof(root), "%s/opt/t", tmp);
	cr_expect(exists(root, "bin/telem-supervisor") && exists(root, "bin/telemctl"));
	cr_expect(!exists(root, "bin/telem-ingest"), "a stage in bin/");
	const char *stages[] = { "telem-ingest", "telem-filter", "telem-egress-ckms",
		"telem-egress-cma" };
	char rel[128];
	for (size_t i = 0; i < 4; i++) {
		snprintf(rel, sizeof(rel), "libexec/telem/%s", stages[i]);
		cr_expect(exists(root, rel), "%s missing", rel);
	}
	for (size_t i = 0; i < NPROGS; i++) {
		snprintf(rel, sizeof(rel), "share/man/man8/%s.8", progs[i]);
		cr_expect(exists(root, rel), "%s missing", rel);
	}
	cr_expect(exists(root, "lib/systemd/system/telem.service"));
	cr_expect(exists(root, "share/doc/telem/examples/seed.conf"));
	cr_expect(exists(root, "etc/telem/telem.conf"));
	cr_expect(exists(root, "share/man/man5/telem.conf.5"));
	char unitpath[400];
	snprintf(unitpath, sizeof(unitpath), "%s/lib/systemd/system/telem.service", root);
	char *unit = h_slurp(unitpath);
	cr_expect(strstr(unit, "ExecStart=/opt/t/bin/telem-supervisor -c "
	    "/opt/t/etc/telem/telem.conf ") != NULL &&
	    strstr(unit, "\nExecReload=/opt/t/bin/telemctl --control "
	    "/run/telem/default.sock reload\n") != NULL,
	    "unit not pointed at the installed programs:\n%s", unit);
	free(unit);

	rc = sh(&out, "make -s --no-print-directory uninstall DESTDIR='%s' PREFIX=/opt/t "
	    "&& find '%s' -type f", tmp, tmp);
	cr_assert_eq(rc, 0, "make uninstall: %s", out);
	cr_expect_str_eq(out, "", "left after uninstall:\n%s", out);
	free(out);
}

/* BINDIR alone moves the stages with it (README: LIBEXECDIR follows
 * BINDIR), and uninstall with the same BINDIR removes them. */
Test(package, install_with_bindir_puts_stages_beside_it)
{
	mqueue_pass_only();
	char *out;
	int rc = sh(&out, "make -s --no-print-directory install-files DESTDIR='%s' "
	    "BINDIR=/opt/b/sbin BIN='%s' && find '%s/opt/b' -type f | sort", tmp, bindir(),
	    tmp);
	cr_assert_eq(rc, 0, "make install-files BINDIR=/opt/b/sbin: %s", out);
	char want[600];
	snprintf(want, sizeof(want), "%s/opt/b/libexec/telem/telem-ingest\n", tmp);
	cr_expect(strstr(out, want) != NULL && h_count(out, "/libexec/telem/") == 8 &&
	    h_count(out, "/opt/b/sbin/telem") == 2, "installed:\n%s", out);
	free(out);
	rc = sh(&out, "make -s --no-print-directory uninstall DESTDIR='%s' "
	    "BINDIR=/opt/b/sbin && find '%s' -type f", tmp, tmp);
	cr_assert_eq(rc, 0, "make uninstall: %s", out);
	cr_expect_str_eq(out, "", "left after uninstall:\n%s", out);
	free(out);
}

/* mandoc -T lint prints nothing but the references to pages that are not
 * installed on this machine (the project's own, before make install). */
Test(package, man_pages_are_lint_clean)
{
	mqueue_pass_only();
	char *out;
	int rc = sh(&out, "mandoc -T lint man/*.[58] 2>&1 | grep -v -e 'referenced manual "
	    "not found' -e 'mandoc.db' || true");
	cr_assert_eq(rc, 0);
	cr_expect_str_eq(out, "", "mandoc -T lint:\n%s", out);
	free(out);
	/* And they do parse: a page renders to text. */
	rc = sh(&out, "mandoc -T markdown man/telem-supervisor.8 | grep -c '^# EXIT STATUS'");
	cr_expect_eq(rc, 0, "%s", out);
	free(out);
}

/* Every option a program's -h lists is in its man page. */
Test(package, man_pages_cover_every_option)
{
	mqueue_pass_only();
	for (size_t i = 0; i < NPROGS; i++) {
		char *help, page[128];
		cr_assert_eq(sh(&help, "'%s/%s' -h", bindir(), progs[i]), 0, "%s -h", progs[i]);
		snprintf(page, sizeof(page), "man/%s.8", progs[i]);
		char *man = h_slurp(page);
		cr_assert_neq(man[0], '\0', "%s is missing", page);
		regex_t re;
		cr_assert_eq(regcomp(&re, "(^|[ \\[,])(--?[A-Za-z][a-z-]*)", REG_EXTENDED), 0);
		regmatch_t m[3];
		int n = 0;
		for (const char *s = help; regexec(&re, s, 3, m, 0) == 0; s += m[2].rm_eo) {
			char opt[64], want[80];
			int len = (int)(m[2].rm_eo - m[2].rm_so);
			snprintf(opt, sizeof(opt), "%.*s", len, s + m[2].rm_so);
			/* "Fl x" for -x, "Fl -long" for --long. */
			snprintf(want, sizeof(want), "Fl %s", opt + 1);
			const char *hit = man;
			char end = 0;
			while ((hit = strstr(hit, want)) != NULL) {
				end = hit[strlen(want)];
				if (end == ' ' || end == '\n' || end == ',')
					break;
				hit++;
			}
			cr_expect(hit != NULL,
			    "%s: option %s of -h is not in %s", progs[i], opt, page);
			n++;
		}
		regfree(&re);
		cr_expect_gt(n, 3, "%s -h: only %d options found", progs[i], n);
		/* telemctl's commands: "  status    ..." lines of its -h. */
		for (const char *l = help; i == 1 && l != NULL && *l != '\0';
		    l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
			char cmd[32], want[48];
			if (l[0] != ' ' || l[1] != ' ' || l[2] < 'a' || l[2] > 'z' ||
			    sscanf(l + 2, "%31[a-z]", cmd) != 1)
				continue;
			snprintf(want, sizeof(want), ".It Cm %s", cmd);
			cr_expect(strstr(man, want) != NULL,
			    "telemctl: command %s of -h is not in %s", cmd, page);
		}
		free(help);
		free(man);
	}
}

Test(package, systemd_unit_verifies)
{
	mqueue_pass_only();
	/* Installed under a temporary prefix, so that ExecStart names a real
	 * program and man: references find the pages. */
	char *out;
	int rc = sh(&out, "make -s --no-print-directory install-files PREFIX='%s/u' "
	    "BIN='%s' >/dev/null && MANPATH='%s/u/share/man' systemd-analyze verify "
	    "'%s/u/lib/systemd/system/telem.service'", tmp, bindir(), tmp, tmp);
	cr_expect_eq(rc, 0, "systemd-analyze verify exited %d:\n%s", rc, out);
	/* It also reads the units ours refers to and may say things about
	 * those (other packages' units): nothing may be about telem's. */
	for (char *l = strtok(out, "\n"); l != NULL; l = strtok(NULL, "\n"))
		cr_expect(strstr(l, "telem") == NULL, "systemd-analyze verify: %s", l);
	free(out);
	/* README's drop-in that changes the options is accepted with it. */
	rc = sh(&out, "d='%s/u/lib/systemd/system/telem.service.d' && mkdir \"$d\" && "
	    "sed -n '/^\\[Service\\]$/,/^```$/p' README.md | sed -e '$d' "
	    "-e 's|/usr/bin/|%s/u/bin/|' > \"$d/options.conf\" && "
	    "grep -q '^ExecStart=$' \"$d/options.conf\" && "
	    "MANPATH='%s/u/share/man' systemd-analyze verify "
	    "'%s/u/lib/systemd/system/telem.service'", tmp, tmp, tmp, tmp);
	cr_expect_eq(rc, 0, "README's drop-in: systemd-analyze verify exited %d:\n%s",
	    rc, out);
	for (char *l = strtok(out, "\n"); l != NULL; l = strtok(NULL, "\n"))
		cr_expect(strstr(l, "telem") == NULL, "README's drop-in: %s", l);
	free(out);
	char unit[400];
	snprintf(unit, sizeof(unit), "%s/u/lib/systemd/system/telem.service", tmp);
	char *u = h_slurp(unit);
	cr_expect(strstr(u, "\nType=notify\n") && strstr(u, "\nUser=telem\n") &&
	    strstr(u, "\nRuntimeDirectory=telem\n") && strstr(u, "\nKillMode=mixed\n") &&
	    strstr(u, "--state-dir /var/lib/telem\n") && strstr(u, "\nStateDirectory=telem\n") &&
	    strstr(u, "\nExecReload="),
	    "unit:\n%s", u);
	free(u);
}

/* A datagram socket bound at P.dir/notify (its path into path), and
 * NOTIFY_SOCKET naming it for the supervisor started next. */
static int
notify_listen(char *path, size_t cap)
{
	cr_assert_lt(snprintf(path, cap, "%s/notify", P.dir), (int)cap);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_neq(fd, -1);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s", path);
	setenv("NOTIFY_SOCKET", path, 1);
	return fd;
}

/* One datagram from the notify socket, or "" after timeout_ms. */
static void
notify_recv(int fd, char *buf, size_t cap, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	buf[0] = '\0';
	if (poll(&p, 1, timeout_ms) == 1) {
		ssize_t n = recv(fd, buf, cap - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
	}
}

Test(package, notify_socket_hears_ready_after_pipeline_up_and_stopping)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd = notify_listen(path, sizeof(path));
	pl_spawn(&P, "-m", "1024", NULL);
	char msg[512];
	notify_recv(fd, msg, sizeof(msg), 15000);
	/* The first thing it says is READY=1, and only once all is up. */
	cr_assert(strncmp(msg, "READY=1\n", 8) == 0, "first message: '%s'\nstderr:\n%s",
	    msg, h_slurp(P.err));
	cr_expect(strstr(msg, "STATUS=pipeline up: 5 stages") != NULL, "'%s'", msg);
	char *err = h_slurp(P.err);
	cr_expect(strstr(err, "pipeline up") != NULL && strstr(err, "stage ingest (pid") &&
	    h_count(err, ") ready") == 5, "READY=1 before the pipeline was up:\n%s", err);
	free(err);
	/* It works, too. */
	pl_nc(&P, "a 10\n");
	cr_expect(h_wait_text(P.out, "[CKMS] a 0.99:10\n", 1, 10000));
	cr_assert_eq(kill(P.pid, SIGTERM), 0);
	notify_recv(fd, msg, sizeof(msg), 10000);
	cr_expect(strncmp(msg, "STOPPING=1\n", 11) == 0, "after SIGTERM: '%s'", msg);
	int st = pl_wait(&P, 10000);
	cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	notify_recv(fd, msg, sizeof(msg), 200);
	cr_expect_str_eq(msg, "", "nothing after STOPPING=1");
	close(fd);
	unlink(path);
}

/* After a reload the STATUS= line names the stages now running, not the
 * ones the pipeline started with (`systemctl status` shows it). */
Test(package, notify_socket_hears_the_status_after_a_reload)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd = notify_listen(path, sizeof(path));
	static const char two[] =
	    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:%d\nout = ckms\n"
	    "[stage ckms]\nexec = telem-egress-ckms\nflush = yes\n";
	static const char three[] =
	    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:%d\nout = ckms cma\n"
	    "[stage ckms]\nexec = telem-egress-ckms\nflush = yes\n"
	    "[stage cma]\nexec = telem-egress-cma\nflush = yes\n";
	char conf[256], msg[512];
	pl_conf(&P, "p.conf", conf, sizeof(conf), two, P.port);
	cr_assert(pl_start_conf(&P, conf, "-m", "1024", NULL), "not up:\n%s",
	    h_slurp(P.err));
	notify_recv(fd, msg, sizeof(msg), 10000);
	cr_expect(strstr(msg, "READY=1\nSTATUS=pipeline up: 2 stages") == msg, "'%s'", msg);
	pl_conf(&P, "p.conf", conf, sizeof(conf), three, P.port);
	char reply[1024];
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "reload"), 0, "%s", reply);
	notify_recv(fd, msg, sizeof(msg), 10000);
	cr_expect(strstr(msg, "STATUS=pipeline reloaded: 3 stages") == msg,
	    "after the reload: '%s'", msg);
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(fd);
	unlink(path);
}

/* The argument list of a running process, NULs made spaces. */
static void
cmdline(pid_t pid, char *buf, size_t cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	int fd = open(path, O_RDONLY);
	ssize_t n = fd == -1 ? 0 : read(fd, buf, cap - 1);
	if (fd != -1)
		close(fd);
	if (n < 0)
		n = 0;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
}

Test(package, quiet_hides_notices_of_supervisor_and_stages)
{
	pl_spawn(&P, "-m", "1024", "-q", "-f", "200", NULL);
	struct h_status s;
	int up = 0;
	for (int i = 0; i < 1000 && !up; i++) {
		up = pl_status(&P, &s) && strcmp(s.st[H_INGEST].state, "up") == 0;
		if (!up)
			usleep(10000);
	}
	cr_assert(up, "never up:\n%s\n%s", s.raw, h_slurp(P.err));
	char args[1024];
	cmdline((pid_t)s.st[H_CKMS].pid, args, sizeof(args));
	cr_expect(strstr(args, " -q ") != NULL, "ckms not started with -q: %s", args);
	pl_nc(&P, "a 10\n");
	cr_expect(h_wait_text(P.out, "[CKMS] a 0.99:10\n", 1, 10000));
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* No notice of the supervisor or of a stage (a clean run logs
	 * nothing at all; a warning, say of a slow stop, still shows). */
	char *err = h_slurp(P.err);
	static const char *const notices[] = { "listening on", "started (pid",
		") ready", "pipeline up", "stopping", "exited 0" };
	for (size_t i = 0; i < sizeof(notices) / sizeof(notices[0]); i++)
		cr_expect(strstr(err, notices[i]) == NULL, "-q run logged '%s':\n%s",
		    notices[i], err);
	free(err);
}

Test(package, verbose_adds_debug_lines_of_supervisor_and_stages)
{
	cr_assert(pl_start(&P, "-m", "1024", "-v", "-f", "100", NULL),
	    "not up:\n%s", h_slurp(P.err));
	cr_expect(h_wait_text(P.err, "telem-supervisor: Flush sent\n", 2, 10000),
	    "%s", h_slurp(P.err));
	char *err = h_slurp(P.err);
	cr_expect(strstr(err, "telem-egress-ckms[ckms]: ready (fd 3)") &&
	    strstr(err, "telem-ingest[ingest]: ready (fd 3)"),
	    "stages did not log at debug level:\n%s", err);
	free(err);
	/* Default output has neither. */
	struct pl q;
	pl_init(&q);
	int ok = pl_start(&q, "-m", "1024", "-f", "100", NULL);
	if (ok) {
		pl_nc(&q, "a 1\n");
		ok = h_wait_text(q.out, "[CKMS] a 0.99:1\n", 1, 10000);
	}
	err = h_slurp(q.err);
	pl_cleanup(&q);
	cr_assert(ok, "default run failed:\n%s", err);
	cr_expect(strstr(err, "Flush sent") == NULL && strstr(err, "ready (fd") == NULL,
	    "debug lines by default:\n%s", err);
	free(err);
}

/* The postinst, run with stand-ins for getent, addgroup, adduser and
 * deb-systemd-helper that log their calls: it creates the group and the
 * user once, and a second configure (an upgrade) creates nothing. */
static void
write_exe(const char *dir, const char *name, const char *text)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(chmod(path, 0755), 0);
}

Test(package, postinst_creates_the_telem_user_once)
{
	mqueue_pass_only();
	char stubs[400], top[512];
	snprintf(stubs, sizeof(stubs), "%s/stubs", tmp);
	cr_assert_eq(mkdir(stubs, 0700), 0);
	cr_assert_not_null(getcwd(top, sizeof(top)));
	/* getent finds what the stand-ins made; they log each call. */
	write_exe(stubs, "getent", "#!/bin/sh\necho \"getent $*\" >> calls\n"
	    "grep -qx \"made $1 $2\" calls\n");
	write_exe(stubs, "addgroup", "#!/bin/sh\necho \"addgroup $*\" >> calls\n"
	    "for a; do n=$a; done; echo \"made group $n\" >> calls\n");
	write_exe(stubs, "adduser", "#!/bin/sh\necho \"adduser $*\" >> calls\n"
	    "for a; do n=$a; done; echo \"made passwd $n\" >> calls\n");
	write_exe(stubs, "deb-systemd-helper",
	    "#!/bin/sh\necho \"deb-systemd-helper $*\" >> calls\n");
	char *out;
	int rc = sh(&out, "cd '%s' && PATH='%s':$PATH && export PATH && "
	    "sh '%s/dist/debian/postinst' configure && "
	    "sh '%s/dist/debian/postinst' configure 0.1.0-1 && "
	    "grep -c '^addgroup --system telem$' calls && "
	    "grep -c '^adduser --system .* telem$' calls && cat calls",
	    tmp, stubs, top, top);
	cr_assert_eq(rc, 0, "postinst: %s", out);
	cr_expect(strncmp(out, "1\n1\n", 4) == 0,
	    "group and user not created exactly once:\n%s", out);
	cr_expect_eq(h_count(out, "getent"), 4, "%s", out);
	/* Each configure records the unit's links for the purge. */
	cr_expect_eq(h_count(out, "deb-systemd-helper update-state telem.service\n"), 2,
	    "%s", out);
	free(out);
}

/* make deb; the package unpacked with dpkg-deb -x; the seed session run by
 * the supervisor of the unpacked tree, which finds its stages in
 * usr/libexec/telem. */
Test(package, deb_installs_a_tree_that_runs_the_seed_session, .timeout = 120)
{
	char *out;
	int rc = sh(&out, "make -s --no-print-directory deb DEB_BIN='%s' DEB_OUT='%s'",
	    bindir(), tmp);
	cr_assert_eq(rc, 0, "make deb: %s", out);
	char deb[512];
	snprintf(deb, sizeof(deb), "%s", out);
	deb[strcspn(deb, "\n")] = '\0';
	free(out);
	cr_assert(strstr(deb, "/telem_") && strstr(deb, "_amd64.deb") && access(deb, R_OK) == 0,
	    "no package: '%s'", deb);
	rc = sh(&out, "cd '%s' && mkdir x && dpkg-deb -x '%s' x && find x -type f | sort",
	    tmp, deb);
	cr_assert_eq(rc, 0, "dpkg-deb -x: %s", out);
	const char *want[] = { "x/usr/bin/telem-supervisor\n", "x/usr/bin/telemctl\n",
		"x/usr/libexec/telem/telem-ingest\n", "x/usr/libexec/telem/telem-filter\n",
		"x/usr/libexec/telem/telem-egress-ckms\n",
		"x/usr/libexec/telem/telem-egress-cma\n",
		"x/usr/share/man/man8/telem-supervisor.8.gz\n",
		"x/usr/share/man/man8/telemctl.8.gz\n",
		"x/lib/systemd/system/telem.service\n",
		"x/usr/share/doc/telem/copyright\n",
		"x/usr/share/doc/telem/changelog.Debian.gz\n",
		"x/usr/share/man/man5/telem.conf.5.gz\n",
		"x/etc/telem/telem.conf\n",
		"x/usr/libexec/telem/telem-example-prefix\n" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(strstr(out, want[i]) != NULL, "package lacks %s", want[i]);
	free(out);
	rc = sh(&out, "dpkg-deb -f '%s' Package Depends && dpkg-deb -I '%s' postinst "
	    "&& dpkg-deb -I '%s' conffiles", deb, deb, deb);
	cr_expect_eq(rc, 0, "%s", out);
	cr_expect(strstr(out, "Package: telem\n") && strstr(out, "libc6") &&
	    strstr(out, "libsystemd0") && strstr(out, "adduser --system") &&
	    strstr(out, "/etc/telem/telem.conf\n"), "%s", out);
	free(out);
	/* The service's pipeline file names stages the package has. */
	rc = sh(&out, "cd '%s' && x/usr/bin/telem-supervisor -c x/etc/telem/telem.conf "
	    "--print-pipeline", tmp);
	cr_expect_eq(rc, 0, "--print-pipeline of the packaged telem.conf: %s", out);
	cr_expect(strstr(out, "[stage ckms]") != NULL, "%s", out);
	free(out);

	char xbin[400], libexec[400];
	snprintf(xbin, sizeof(xbin), "%s/x/usr/bin", tmp);
	snprintf(libexec, sizeof(libexec), "%s/x/usr/libexec/telem/", tmp);
	setenv("TELEM_BIN", xbin, 1);
	cr_assert(pl_start(&P, "-m", "1024", "-f", "200", NULL), "not up:\n%s",
	    h_slurp(P.err));
	char *err = h_slurp(P.err);
	cr_expect(strstr(err, "stage ckms started (pid") && strstr(err, libexec) &&
	    h_count(err, libexec) == 5, "stages not run from %s:\n%s", libexec, err);
	free(err);
	pl_nc(&P, "a 10\n");
	cr_assert(h_wait_text(P.out, "[CKMS] a 0.99:10\n", 1, 10000), "%s", h_slurp(P.err));
	pl_nc(&P, "a 55\n");
	cr_assert(h_wait_text(P.out, "[CKMS] a 0.99:55\n", 1, 10000), "%s", h_slurp(P.err));
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_expect_str_eq(h_slurp(P.out),
	    "[CKMS] a 0:10\n[CKMS] a 0.25:10\n[CKMS] a 0.5:10\n"
	    "[CKMS] a 0.75:10\n[CKMS] a 0.9:10\n[CKMS] a 0.99:10\n"
	    "[CKMS] a 0:10\n[CKMS] a 0.25:10\n[CKMS] a 0.5:10\n"
	    "[CKMS] a 0.75:55\n[CKMS] a 0.9:55\n[CKMS] a 0.99:55\n");

	/* lintian accepts it: no E: lines (warnings are allowed). */
	if (strcmp(h_transport(), "mqueue") == 0) {
		rc = sh(&out, "lintian '%s'", deb);
		cr_expect(strstr(out, "\nE: ") == NULL && strncmp(out, "E: ", 3) != 0,
		    "lintian errors:\n%s", out);
		free(out);
	}
}

/* The package installed for real with dpkg, as root: once the test
 * begins to install, teardown purges it, removes the link the test's
 * `systemctl enable` made, the pages man-db formatted into its cache when
 * systemd-analyze verify looked up the unit's Documentation=, and the
 * telem user and group the postinst made, whatever failed. */
static int dpkg_began, dpkg_made_user;

static void
dpkg_teardown(void)
{
	if (dpkg_began) {
		(void)sh(NULL, "dpkg-query -W telem && dpkg -P telem </dev/null");
		(void)sh(NULL, "rm -f /etc/systemd/system/multi-user.target.wants/"
		    "telem.service /var/cache/man/cat5/telem.conf.5.gz "
		    "/var/cache/man/cat8/telem-*.8.gz /var/cache/man/cat8/telemctl.8.gz");
	}
	if (dpkg_made_user)
		(void)sh(NULL, "userdel telem; groupdel telem");
	teardown();
}

/* dpkg -i, an upgrade to a second build with a later version, dpkg -r and
 * dpkg -P, with the maintainer scripts on a machine whose PID 1 is not
 * systemd, as on a build machine or in a container. The installed
 * programs run, the man pages are found, the unit verifies where it is
 * installed; an edited /etc/telem/telem.conf survives the upgrade and the
 * removal and goes with the purge; the link `systemctl enable telem`
 * makes goes with the purge too. Only as root, and only where no telem
 * package is installed (a real one is not touched). */
Test(package, dpkg_installs_upgrades_removes_and_purges, .fini = dpkg_teardown,
    .timeout = 180)
{
	mqueue_pass_only();
	if (geteuid() != 0 || sh(NULL, "command -v dpkg") != 0 ||
	    sh(NULL, "dpkg-query -W telem") == 0) {
		teardown();
		cr_skip_test("needs root and dpkg, and no telem package installed");
	}
	dpkg_made_user = sh(NULL, "getent passwd telem || getent group telem") != 0;
	char *out, deb[2][512];
	for (int v = 0; v < 2; v++) {
		int rc = sh(&out, "make -s --no-print-directory deb DEB_BIN='%s' "
		    "DEB_OUT='%s/v%d' VERSION=0.0.%d", bindir(), tmp, v + 1, v + 1);
		cr_assert_eq(rc, 0, "make deb: %s", out);
		snprintf(deb[v], sizeof(deb[v]), "%s", out);
		deb[v][strcspn(deb[v], "\n")] = '\0';
		free(out);
	}
	dpkg_began = 1;
	int rc = sh(&out, "dpkg -i '%s' </dev/null", deb[0]);
	cr_assert_eq(rc, 0, "dpkg -i: %s", out);
	free(out);
	rc = sh(&out, "dpkg -L telem && dpkg-query -W -f='${Conffiles}\\n' telem && "
	    "getent passwd telem");
	cr_assert_eq(rc, 0, "%s", out);
	cr_expect(strstr(out, "\n/usr/libexec/telem/telem-ingest\n") &&
	    strstr(out, "\n/usr/bin/telem-supervisor\n") &&
	    strstr(out, "\n/lib/systemd/system/telem.service\n") &&
	    strstr(out, " /etc/telem/telem.conf ") &&
	    strstr(out, "\ntelem:x:"), "installed:\n%s", out);
	free(out);

	/* The installed programs and pages. */
	rc = sh(&out, "/usr/bin/telem-supervisor -h >/dev/null && man -w telem-supervisor "
	    "telemctl telem.conf && /usr/bin/telem-supervisor -c /etc/telem/telem.conf "
	    "--print-pipeline >/dev/null");
	cr_expect_eq(rc, 0, "%s", out);
	cr_expect(strstr(out, "/usr/share/man/man8/telem-supervisor.8.gz\n") &&
	    strstr(out, "/usr/share/man/man5/telem.conf.5.gz\n"), "%s", out);
	free(out);
	setenv("TELEM_BIN", "/usr/bin", 1);
	cr_assert(pl_start(&P, "-m", "1024", "-f", "200", NULL), "not up:\n%s",
	    h_slurp(P.err));
	pl_nc(&P, "a 10\n");
	cr_expect(h_wait_text(P.out, "[CKMS] a 0.99:10\n", 1, 10000), "%s", h_slurp(P.err));
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char *err = h_slurp(P.err);
	cr_expect(h_count(err, "started (pid") == 5 &&
	    h_count(err, ": /usr/libexec/telem/telem-") == 5,
	    "stages not run from /usr/libexec/telem:\n%s", err);
	free(err);
	rc = sh(&out, "systemd-analyze verify /lib/systemd/system/telem.service");
	cr_expect_eq(rc, 0, "systemd-analyze verify exited %d:\n%s", rc, out);
	for (char *l = strtok(out, "\n"); l != NULL; l = strtok(NULL, "\n"))
		cr_expect(strstr(l, "telem") == NULL, "systemd-analyze verify: %s", l);
	free(out);

	/* Enabled as README says, the pipeline file edited, then upgraded. */
	rc = sh(&out, "systemctl enable telem && test -L "
	    "/etc/systemd/system/multi-user.target.wants/telem.service && "
	    "echo '# edited here' >> /etc/telem/telem.conf");
	cr_assert_eq(rc, 0, "%s", out);
	free(out);
	rc = sh(&out, "dpkg -i '%s' </dev/null && dpkg-query -W telem", deb[1]);
	cr_assert_eq(rc, 0, "upgrade: %s", out);
	cr_expect(strstr(out, "telem\t0.0.2-1") != NULL, "upgrade: %s", out);
	free(out);
	rc = sh(&out, "tail -n 1 /etc/telem/telem.conf; ls /etc/telem");
	cr_expect_str_eq(out, "# edited here\ntelem.conf\n", "after the upgrade:\n%s", out);
	free(out);

	/* Removed: the programs go, the edited pipeline file stays. */
	rc = sh(&out, "dpkg -r telem </dev/null");
	cr_assert_eq(rc, 0, "dpkg -r: %s", out);
	free(out);
	cr_expect(access("/usr/bin/telem-supervisor", F_OK) == -1 &&
	    access("/usr/libexec/telem", F_OK) == -1 &&
	    access("/lib/systemd/system/telem.service", F_OK) == -1);
	rc = sh(&out, "tail -n 1 /etc/telem/telem.conf");
	cr_expect_str_eq(out, "# edited here\n", "after dpkg -r: %s", out);
	free(out);

	/* Purged: nothing of the package is left. */
	rc = sh(&out, "dpkg -P telem </dev/null");
	cr_assert_eq(rc, 0, "dpkg -P: %s", out);
	free(out);
	rc = sh(&out, "dpkg-query -W telem");
	cr_expect_neq(rc, 0, "still known to dpkg: %s", out);
	free(out);
	rc = sh(&out, "ls -d /etc/telem /usr/share/doc/telem /var/lib/dpkg/info/telem.* "
	    "/etc/systemd/system/*/telem.service "
	    "/var/lib/systemd/deb-systemd-helper-enabled/telem.service* "
	    "/var/lib/systemd/deb-systemd-helper-enabled/*/telem.service 2>/dev/null");
	cr_expect_str_eq(out, "", "left after dpkg -P:\n%s", out);
	free(out);
}
