/* e2e_guard.c - what one supervisor, user or environment must not be able
 * to do to another, and the limits it must survive with one clear line
 * (docs/design.md §6, §7): the instance lock seen across
 * $XDG_RUNTIME_DIR and users, a small or full /dev/shm (inside `unshare
 * -m`), --control on a file that is not a socket, control folders and
 * sockets of someone else, and low RLIMIT_NOFILE. Real binaries; the tests that switch users or
 * mount need root, as CI runs the suite, and fail (never skip) without. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <mqueue.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "chan.h"
#include "control.h"

TestSuite(guard, .init = setup, .fini = teardown, .timeout = 90);

#define NOBODY "65534"
#define AS_NOBODY "setpriv --reuid=" NOBODY " --regid=" NOBODY " --clear-groups"

#define NEED_ROOT() cr_assert_eq(geteuid(), 0, "this test needs root (CI runs " \
	"the suite as root): it switches users or mounts a tmpfs")

/* Start the supervisor of p's instance, port and transport through
 * `sh -c "PRE exec WRAP telem-supervisor -i I -p PORT -t T EXTRA"`, its
 * stdout and stderr in p's files, with no descriptor but 0-2 inherited
 * (so a `ulimit -n` in PRE is what it gets). p->pid is the supervisor's
 * (sh and WRAP exec it). */
static void
sh_spawn(struct pl *p, const char *pre, const char *wrap, const char *extra)
{
	char exe[256], cmd[2048];
	h_bin("telem-supervisor", exe, sizeof(exe));
	snprintf(cmd, sizeof(cmd), "%s exec %s %s -i %s -p %d -t %s %s", pre, wrap,
	    exe, p->instance, p->port, p->transport, extra);
	cr_assert(truncate(p->out, 0) == 0 || errno == ENOENT);
	cr_assert(truncate(p->err, 0) == 0 || errno == ENOENT);
	p->status = -1;
	pid_t parent = getpid();
	p->pid = fork();
	cr_assert_neq(p->pid, -1, "fork: %s", strerror(errno));
	if (p->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		int o = open(p->out, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int e = open(p->err, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int z = open("/dev/null", O_RDONLY);
		if (o == -1 || e == -1 || z == -1)
			_exit(127);
		dup2(z, 0);
		dup2(o, 1);
		dup2(e, 2);
		close_range(3, ~0U, 0);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
}

/* 1 once p's log says the pipeline is up, 0 if it exited or 10 s passed. */
static int
came_up(struct pl *p)
{
	for (int t = 0; t < 1000; t++) {
		if (h_wait_text(p->err, "pipeline up", 1, 10))
			return 1;
		if (pl_wait(p, 0) != -1)
			return 0;
	}
	return 0;
}

/* Remove q's files only: its instance may be P's, whose objects stay. */
static void
forget(struct pl *q)
{
	h_rm_dir(q->dir);
}

static void
rm_rf(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* A folder for $XDG_RUNTIME_DIR (0700), owned by uid (or ours if -1). */
static void
runtime_dir(char *buf, size_t cap, int uid)
{
	h_tmp_name(buf, cap, "guard");
	cr_assert_not_null(mkdtemp(buf), "mkdtemp: %s", strerror(errno));
	if (uid >= 0)
		cr_assert_eq(chown(buf, (uid_t)uid, (gid_t)uid), 0, "chown %s", buf);
}

/* P is healthy: every stage up with its queue there (depth >= 0; a
 * removed queue shows -1), the pids of s0, and a value sent now reported
 * at the next Flush. */
static void
assert_healthy(const struct h_status *s0, const char *name)
{
	struct h_status s;
	status(&s);
	for (int i = 0; i < H_NSTAGES; i++) {
		cr_assert_str_eq(s.st[i].state, "up", "%s", s.raw);
		cr_assert_geq(s.st[i].depth, 0, "%s", s.raw);
		cr_assert_eq(s.st[i].pid, s0->st[i].pid, "%s restarted:\n%s",
		    h_stage_name[i], s.raw);
	}
	assert_flows();
	char line[64], want[64];
	snprintf(line, sizeof(line), "%s 500\n", name);
	snprintf(want, sizeof(want), "[CMA] %s 500\n", name);
	pl_nc(&P, line);
	WAIT_OUT(want, 1);
}

/* ---- the instance lock is global ----------------------------------- */

Test(guard, a_second_supervisor_from_another_runtime_dir_is_refused_and_removes_nothing)
{
	START("-m", "1024", "-f", "200");
	struct h_status s0;
	status(&s0);
	int objects = pl_objects_left(&P);
	char lock[128];
	struct stat lst;
	snprintf(lock, sizeof(lock), "/dev/shm/telem.%s.lock", P.instance);
	cr_assert_eq(stat(lock, &lst), 0, "%s", lock);

	char xdg[64], pre[128];
	runtime_dir(xdg, sizeof(xdg), -1);
	snprintf(pre, sizeof(pre), "XDG_RUNTIME_DIR=%s", xdg);
	struct pl Q;
	pl_init(&Q);
	snprintf(Q.instance, sizeof(Q.instance), "%s", P.instance);
	sh_spawn(&Q, pre, "", "-m 1024");
	int st = pl_wait(&Q, 20000);
	char *err = h_slurp(Q.err);
	forget(&Q);
	rm_rf(xdg);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "%d:\n%s", st, err);
	cr_assert_eq(h_count(err, "\n"), 1, "not one line:\n%s", err);
	char text[256];
	snprintf(text, sizeof(text), "instance '%s' is already run by another "
	    "supervisor (pid %d, uid 0; lock /dev/shm/telem.%s.lock held): "
	    "nothing removed\n", P.instance, (int)P.pid, P.instance);
	cr_assert(strstr(err, text) != NULL, "wanted\n%sgot\n%s", text, err);
	cr_assert(strstr(err, "removed stale") == NULL, "%s", err);
	free(err);
	cr_assert_eq(pl_objects_left(&P), objects);
	assert_healthy(&s0, "xdg");
	/* Stopped cleanly, it leaves nothing, the lock file included. */
	cr_assert_eq(ctl("stop"), 0, "%s", reply_buf);
	cr_assert_eq(pl_objects_left(&P), 0);
}

Test(guard, another_user_cannot_take_or_wipe_a_running_instance)
{
	NEED_ROOT();
	START("-m", "1024", "-f", "200");
	struct h_status s0;
	status(&s0);
	int objects = pl_objects_left(&P);

	char xdg[64], pre[128];
	runtime_dir(xdg, sizeof(xdg), 65534);
	snprintf(pre, sizeof(pre), "XDG_RUNTIME_DIR=%s", xdg);
	struct pl Q;
	pl_init(&Q);
	snprintf(Q.instance, sizeof(Q.instance), "%s", P.instance);
	sh_spawn(&Q, pre, AS_NOBODY, "-m 1024");
	int st = pl_wait(&Q, 20000);
	char *err = h_slurp(Q.err);
	forget(&Q);
	rm_rf(xdg);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "%d:\n%s", st, err);
	cr_assert_eq(h_count(err, "\n"), 1, "not one line:\n%s", err);
	char text[128];
	snprintf(text, sizeof(text), "instance '%s' is in use by uid 0", P.instance);
	cr_assert(strstr(err, text) != NULL, "%s", err);
	free(err);
	cr_assert_eq(pl_objects_left(&P), objects);
	assert_healthy(&s0, "other");
}

/* Run telemctl as nobody with $XDG_RUNTIME_DIR=xdg; its output in out. */
static int
ctl_as_nobody(const char *xdg, const char *args, char *out, size_t cap)
{
	char exe[256], cmd[1024];
	h_bin("telemctl", exe, sizeof(exe));
	snprintf(cmd, sizeof(cmd), "XDG_RUNTIME_DIR=%s " AS_NOBODY " %s %s 2>&1",
	    xdg, exe, args);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	size_t len = fread(out, 1, cap - 1, f);
	out[len] = '\0';
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(guard, root_cannot_take_or_wipe_another_users_running_instance)
{
	NEED_ROOT();
	char xdg[64], pre[128], out[8192], args[128];
	runtime_dir(xdg, sizeof(xdg), 65534);
	snprintf(pre, sizeof(pre), "XDG_RUNTIME_DIR=%s", xdg);
	/* Its files must be writable by it (they are opened before the
	 * switch, but the test reads them as they grow). */
	sh_spawn(&P, pre, AS_NOBODY, "-m 1024 -f 200");
	if (!came_up(&P)) {
		char *e = h_slurp(P.err);
		rm_rf(xdg);
		cr_assert_fail("nobody's supervisor did not come up:\n%s", e);
	}
	int objects = pl_objects_left(&P);
	snprintf(args, sizeof(args), "-i %s status", P.instance);
	cr_assert_eq(ctl_as_nobody(xdg, args, out, sizeof(out)), 0, "%s", out);

	struct pl Q;
	pl_init(&Q);
	snprintf(Q.instance, sizeof(Q.instance), "%s", P.instance);
	pl_spawn(&Q, "-m", "1024", NULL);
	int st = pl_wait(&Q, 20000);
	char *err = h_slurp(Q.err);
	forget(&Q);
	char text[256];
	snprintf(text, sizeof(text), "instance '%s' is already run by another "
	    "supervisor (pid %d, uid 65534;", P.instance, (int)P.pid);
	int ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1 &&
	    h_count(err, "\n") == 1 && strstr(err, text) != NULL;
	/* Still whole: its objects, its stages, its reports. */
	int left = pl_objects_left(&P);
	int rc = ctl_as_nobody(xdg, args, out, sizeof(out));
	pl_nc(&P, "nobodys 500\n");
	int reported = h_wait_text(P.out, "[CMA] nobodys 500\n", 1, 10000);
	pl_signal_wait(&P, SIGTERM, 10000);
	rm_rf(xdg);
	cr_assert(ok, "status %d:\n%s", st, err);
	cr_assert_eq(left, objects);
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_eq(h_count(out, "state=up"), H_NSTAGES, "%s", out);
	cr_assert_eq(h_count(out, "depth=-1"), 0, "%s", out);
	cr_assert(reported, "%s", h_slurp(P.out));
	free(err);
}

/* ---- /dev/shm too small or full ------------------------------------ */

/* Run the supervisor of P in a mount namespace of its own whose /dev/shm
 * is a 100 KiB tmpfs (FILL runs first, in it); its wait status. */
static int
run_small_shm(const char *transport, const char *fill, const char *msg)
{
	NEED_ROOT();
	char exe[256], cmd[1024];
	h_bin("telem-supervisor", exe, sizeof(exe));
	snprintf(cmd, sizeof(cmd), "unshare -m sh -c 'mount -t tmpfs -o size=100k "
	    "tmpfs /dev/shm && %s exec %s -i %s -p %d -t %s -m %s' 2>%s >%s",
	    fill, exe, P.instance, P.port, transport, msg, P.err, P.out);
	return system(cmd);
}

static void
assert_no_room(int st, const char *what)
{
	char *err = h_slurp(P.err);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "wait status %d (exit %d, "
	    "signal %d) instead of exit 1:\n%s", st, WEXITSTATUS(st),
	    WIFSIGNALED(st) ? WTERMSIG(st) : 0, err);
	char text[128];
	snprintf(text, sizeof(text), "telem-supervisor: create %s /telem.%s.", what,
	    P.instance);
	cr_assert_eq(h_count(err, text), 1, "no line '%s':\n%s", text, err);
	cr_assert(strstr(err, ": /dev/shm has ") != NULL &&
	    strstr(err, " bytes free, needs ") != NULL, "%s", err);
	cr_assert(strstr(err, "signal") == NULL && strstr(err, "pipeline up") == NULL,
	    "%s", err);
	free(err);
	/* What it made in the real /dev/mqueue went with it. */
	cr_assert_eq(pl_objects_left(&P), 0);
}

Test(guard, rings_that_do_not_fit_dev_shm_are_one_line_and_exit_1)
{
	/* 4 rings of 10 x 8 kB: the second does not fit in 100 KiB. */
	assert_no_room(run_small_shm("shm", "", "8192"), "shm");
}

Test(guard, a_full_dev_shm_is_one_line_and_exit_1_on_either_transport)
{
	int st = run_small_shm(P.transport,
	    "{ dd if=/dev/zero of=/dev/shm/fill bs=4k 2>/dev/null; true; } &&", "1024");
	assert_no_room(st, strcmp(P.transport, "shm") == 0 ? "shm" : "stats segment");
}

/* ---- the control socket ---------------------------------------------- */

Test(guard, control_on_a_file_that_is_not_a_socket_is_refused_and_kept)
{
	char file[256], link[256], args[768];
	snprintf(file, sizeof(file), "%s/precious", P.dir);
	snprintf(link, sizeof(link), "%s/link", P.dir);
	FILE *f = fopen(file, "w");
	cr_assert_not_null(f);
	fputs("keep me\n", f);
	fclose(f);
	cr_assert_eq(symlink(file, link), 0);
	const char *paths[] = { file, link, P.dir };
	for (size_t i = 0; i < 3; i++) {
		/* As h_refuses checks, but never waiting for ever on a
		 * supervisor that took the path and runs. */
		snprintf(args, sizeof(args), "-m 1024 --control %s", paths[i]);
		sh_spawn(&P, "", "", args);
		int st = pl_wait(&P, 20000);
		char *err = h_slurp(P.err);
		cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2,
		    "--control %s: wait status %d:\n%s", paths[i], st, err);
		cr_assert_eq(h_count(err, "\n"), 1, "%s", err);
		char text[512];
		snprintf(text, sizeof(text), "telem-supervisor: --control %s is not a "
		    "socket (mode ", paths[i]);
		cr_assert(strncmp(err, text, strlen(text)) == 0 &&
		    strstr(err, "): refusing to replace it\n") != NULL, "%s", err);
		free(err);
		cr_assert_eq(pl_objects_left(&P), 0, "objects made before refusing");
	}
	char *s = h_slurp(file);
	cr_assert_str_eq(s, "keep me\n");
	free(s);
	struct stat st;
	cr_assert_eq(lstat(link, &st), 0);
	cr_assert(S_ISLNK(st.st_mode));
	unlink(link);
	unlink(file);
}

/* A socket listening at path (made by this process), non-blocking. */
static int
fake_server(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert_neq(fd, -1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s",
	    path, strerror(errno));
	cr_assert_eq(listen(fd, 4), 0);
	return fd;
}

/* Nobody connected to the fake server. */
static void
assert_untouched(int fd)
{
	int c = accept(fd, NULL, NULL);
	cr_assert(c == -1 && errno == EAGAIN, "telemctl connected to a socket it "
	    "should not trust");
}

Test(guard, telemctl_and_the_supervisor_refuse_a_control_folder_open_to_others)
{
	char xdg[64], dir[128], sock[192], cmd[1024], out[4096], exe[256];
	runtime_dir(xdg, sizeof(xdg), -1);
	snprintf(dir, sizeof(dir), "%s/telem", xdg);
	cr_assert_eq(mkdir(dir, 0777), 0);
	cr_assert_eq(chmod(dir, 0777), 0);
	snprintf(sock, sizeof(sock), "%s/%s.sock", dir, P.instance);
	int fd = fake_server(sock);

	snprintf(cmd, sizeof(cmd), "XDG_RUNTIME_DIR=%s %s -i %s status 2>&1", xdg,
	    h_bin("telemctl", exe, sizeof(exe)), P.instance);
	FILE *f = popen(cmd, "r");
	size_t len = fread(out, 1, sizeof(out) - 1, f);
	out[len] = '\0';
	int st = pclose(f);
	assert_untouched(fd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "%d: %s", st, out);
	cr_assert_eq(h_count(out, "\n"), 1, "%s", out);
	char text[256];
	snprintf(text, sizeof(text), "telemctl: control folder %s is owned by uid 0 "
	    "with mode 0777: refusing it", dir);
	cr_assert(strstr(out, text) != NULL, "%s", out);

	/* The supervisor will not use it either, and leaves nothing. */
	char pre[128];
	snprintf(pre, sizeof(pre), "XDG_RUNTIME_DIR=%s", xdg);
	sh_spawn(&P, pre, "", "-m 1024");
	st = pl_wait(&P, 20000);
	char *err = h_slurp(P.err);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "%d:\n%s", st, err);
	snprintf(text, sizeof(text), "telem-supervisor: control folder %s is owned by "
	    "uid 0 with mode 0777: refusing it", dir);
	cr_assert(strstr(err, text) != NULL, "%s", err);
	free(err);
	cr_assert_eq(pl_objects_left(&P), 0);
	struct stat sb;
	cr_assert_eq(lstat(sock, &sb), 0, "the socket in it was removed");
	assert_untouched(fd);
	close(fd);
	rm_rf(xdg);
}

Test(guard, telemctl_run_by_another_user_refuses_what_it_does_not_own)
{
	NEED_ROOT();
	char xdg[64], dir[128], sock[192], out[4096], args[512];
	/* root's folder, closed to others' writes, with a socket anyone may
	 * connect to: not nobody's, so not trusted by nobody. */
	runtime_dir(xdg, sizeof(xdg), -1);
	cr_assert_eq(chmod(xdg, 0755), 0);
	snprintf(dir, sizeof(dir), "%s/telem", xdg);
	cr_assert_eq(mkdir(dir, 0755), 0);
	snprintf(sock, sizeof(sock), "%s/%s.sock", dir, P.instance);
	int fd = fake_server(sock);
	cr_assert_eq(chmod(sock, 0777), 0);
	snprintf(args, sizeof(args), "-i %s status", P.instance);
	int rc = ctl_as_nobody(xdg, args, out, sizeof(out));
	assert_untouched(fd);
	cr_assert_eq(rc, 1, "%s", out);
	cr_assert(strstr(out, "is owned by uid 0 with mode 0755: refusing it") != NULL,
	    "%s", out);

	/* --control names the socket itself: its owner is checked. */
	snprintf(args, sizeof(args), "--control %s status", sock);
	rc = ctl_as_nobody(xdg, args, out, sizeof(out));
	assert_untouched(fd);
	cr_assert_eq(rc, 1, "%s", out);
	cr_assert(strstr(out, "is owned by uid 0, not by uid 65534: refusing to "
	    "talk to it") != NULL, "%s", out);

	/* A socket file handed to nobody in nobody's own folder, but served
	 * by root: the process answering is what counts (SO_PEERCRED). */
	close(fd);
	unlink(sock);
	cr_assert_eq(chown(dir, 65534, 65534), 0);
	cr_assert_eq(chmod(dir, 0700), 0);
	fd = fake_server(sock);
	cr_assert_eq(chown(sock, 65534, 65534), 0);
	snprintf(args, sizeof(args), "-i %s status", P.instance);
	rc = ctl_as_nobody(xdg, args, out, sizeof(out));
	cr_assert_eq(rc, 1, "%s", out);
	cr_assert(strstr(out, "runs as uid 0, not as uid 65534: refusing to talk to "
	    "it") != NULL, "%s", out);
	cr_assert(strstr(out, "ok") == NULL, "%s", out);
	close(fd);
	rm_rf(xdg);
}

/* ---- low descriptor limits ------------------------------------------- */

Test(guard, under_ulimit_n_16_and_64_the_pipeline_runs_and_reports)
{
	static const int limits[] = { 16, 64 };
	for (size_t i = 0; i < 2; i++) {
		char pre[64], name[32], want[96], line[96];
		snprintf(pre, sizeof(pre), "ulimit -n %d;", limits[i]);
		sh_spawn(&P, pre, "", "-m 1024 -f 200");
		cr_assert(came_up(&P), "not up under ulimit -n %d:\n%s", limits[i],
		    h_slurp(P.err));
		snprintf(name, sizeof(name), "fd%d", limits[i]);
		snprintf(line, sizeof(line), "%s 500\n%s 5\n", name, name);
		snprintf(want, sizeof(want), "[CMA] %s 500\n", name);
		pl_nc(&P, line);
		WAIT_OUT(want, 1);
		snprintf(want, sizeof(want), "[CKMS] %s 0.5:5\n", name);
		WAIT_OUT(want, 1);
		struct h_status s;
		status(&s);
		for (int k = 0; k < H_NSTAGES; k++)
			cr_assert(strcmp(s.st[k].state, "up") == 0 && s.st[k].restarts == 0,
			    "under ulimit -n %d:\n%s\n%s", limits[i], s.raw, h_slurp(P.err));
		char *err = h_slurp(P.err);
		cr_assert(strstr(err, "Too many open files") == NULL, "%s", err);
		free(err);
		cr_assert_eq(ctl("stop"), 0, "%s", reply_buf);
		int st = pl_wait(&P, 10000);
		cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%d", st);
	}
}

Test(guard, under_a_too_low_ulimit_n_the_supervisor_says_why_once_and_exits_1)
{
	/* Each limit runs out at another descriptor: the UDP socket, a
	 * queue, the control socket, a stage's readiness pipe. */
	for (int lim = 6; lim <= 9; lim++) {
		char pre[64], text[64];
		snprintf(pre, sizeof(pre), "ulimit -n %d;", lim);
		sh_spawn(&P, pre, "", "-m 1024");
		int st = pl_wait(&P, 20000);
		char *err = h_slurp(P.err);
		cr_assert(strstr(err, "pipeline up") == NULL, "came up under ulimit "
		    "-n %d:\n%s", lim, err);
		cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1,
		    "ulimit -n %d: wait status %d:\n%s", lim, st, err);
		snprintf(text, sizeof(text), ": Too many open files (RLIMIT_NOFILE %d)\n",
		    lim);
		cr_assert_eq(h_count(err, text), 1, "ulimit -n %d: not one line with "
		    "'%s':\n%s", lim, text, err);
		cr_assert(strstr(err, "exited 111") == NULL, "%s", err);
		free(err);
		cr_assert_eq(pl_objects_left(&P), 0, "ulimit -n %d left objects", lim);
	}
}

Test(guard, a_stage_short_of_descriptors_says_which_and_the_limit)
{
	/* A stage run by hand on a live instance, with room for its mqueue
	 * descriptors but one: it names the queue and the limit. (On shm a
	 * queue holds no descriptor; the mqueue case is the one that needs
	 * them, so this runs mqueue whatever the suite's transport.) */
	P.transport = "mqueue";
	START("-m", "1024");
	char exe[256], cmd[1024];
	h_bin("telem-ingest", exe, sizeof(exe));
	snprintf(cmd, sizeof(cmd), "sh -c 'ulimit -n 4; exec %s -i %s -t mqueue "
	    "--port 0 --out low --out high' 2>%s/stage.err", exe, P.instance, P.dir);
	int st = system(cmd);
	char path[256];
	snprintf(path, sizeof(path), "%s/stage.err", P.dir);
	char *err = h_slurp(path);
	unlink(path);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 111, "%d:\n%s", st, err);
	char text[128];
	snprintf(text, sizeof(text), "telem-ingest[ingest]: open mqueue /telem.%s.high: "
	    "Too many open files (RLIMIT_NOFILE 4)\n", P.instance);
	cr_assert_str_eq(err, text);
	free(err);
}

Test(guard, a_queue_of_messages_no_stage_is_for_is_refused_in_one_line)
{
	/* A queue at an instance's name that chan_create did not make (a
	 * program of the same user's): its messages of 64 bytes would hold
	 * any longer record in its writer for ever. A stage run by hand on
	 * it names the queue and both sizes, and exits 100. */
	P.transport = "mqueue";
	START("-m", "1024");
	char obj[CHAN_NAME_MAX];
	cr_assert_eq(chan_objname(obj, sizeof(obj), P.instance, "odd"), 0);
	struct mq_attr a = { .mq_maxmsg = 1, .mq_msgsize = 64 };
	mqd_t q = mq_open(obj, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &a);
	cr_assert_neq(q, (mqd_t)-1, "mq_open %s: %s", obj, strerror(errno));
	mq_close(q);
	char exe[256], cmd[1024], path[256];
	h_bin("telem-egress-cma", exe, sizeof(exe));
	snprintf(path, sizeof(path), "%s/stage.err", P.dir);
	snprintf(cmd, sizeof(cmd), "timeout -s KILL 10 %s -i %s -t mqueue --in odd "
	    "2>%s", exe, P.instance, path);
	int st = system(cmd);
	char *err = h_slurp(path);
	unlink(path);
	mq_unlink(obj);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 100, "%d:\n%s", st, err);
	char text[CHAN_NAME_MAX + 128];
	snprintf(text, sizeof(text), "telem-egress-cma[cma]: open mqueue %s: its "
	    "messages are 64 bytes, not 1024..1048576\n", obj);
	cr_assert_str_eq(err, text);
	free(err);
}

/* ---- the control folder no longer collects lock files ---------------- */

Test(guard, old_lock_files_in_the_control_folder_are_removed_unless_held)
{
	/* Earlier versions left an flock'ed <instance>.lock there per
	 * instance ever run; one still held belongs to a running one. */
	char dir[512], stale[600], held[600];
	cr_assert_eq(ctl_dir(dir, sizeof(dir), 1), 0);
	snprintf(stale, sizeof(stale), "%s/%s-old.lock", dir, P.instance);
	snprintf(held, sizeof(held), "%s/%s-held.lock", dir, P.instance);
	int s = open(stale, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int h = open(held, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert(s != -1 && h != -1);
	close(s);
	cr_assert_eq(flock(h, LOCK_EX | LOCK_NB), 0);
	START("-m", "1024");
	struct stat st;
	int stale_gone = lstat(stale, &st) == -1 && errno == ENOENT;
	int held_kept = lstat(held, &st) == 0;
	unlink(stale);
	unlink(held);
	close(h);
	cr_assert(stale_gone, "%s is still there", stale);
	cr_assert(held_kept, "%s, still locked, was removed", held);
	snprintf(stale, sizeof(stale), "%s/%s.lock", dir, P.instance);
	cr_assert_eq(lstat(stale, &st), -1, "%s made again", stale);
}
