/* harness.c - see harness.h. */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctlpath.h"

static long long
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
nap(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

const char *
h_transport(void)
{
	const char *t = getenv("TELEM_TRANSPORT");
	return t != NULL && *t != '\0' ? t : "mqueue";
}

const char *
h_bin(const char *prog, char *buf, size_t cap)
{
	const char *dir = getenv("TELEM_BIN");
	snprintf(buf, cap, "%s/%s", dir != NULL ? dir : "bin", prog);
	return buf;
}

int
h_free_port(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) == -1) {
		perror("h_free_port");
		abort();
	}
	close(fd);
	return ntohs(sa.sin_port);
}

void
h_tmp_name_in(char *buf, size_t cap, const char *base, const char *what)
{
	const char *tag = getenv("TELEM_TEST_TAG");
	if (tag != NULL && *tag != '\0')
		snprintf(buf, cap, "%s/telem-test-%s-%s-XXXXXX", base, tag, what);
	else
		snprintf(buf, cap, "%s/telem-test-%s-XXXXXX", base, what);
}

void
h_tmp_name(char *buf, size_t cap, const char *what)
{
	h_tmp_name_in(buf, cap, "/tmp", what);
}

int
h_rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	struct dirent *e;
	char path[512];
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		/* A folder: Linux says EISDIR, POSIX allows EPERM. */
		if (unlink(path) == -1 && (errno == EISDIR || errno == EPERM))
			h_rm_dir(path);
	}
	closedir(d);
	return rmdir(dir);
}

void
pl_init(struct pl *p)
{
	static int seq;
	memset(p, 0, sizeof(*p));
	snprintf(p->instance, sizeof(p->instance), "t%d_%d", (int)getpid(), seq++);
	p->port = h_free_port();
	p->transport = h_transport();
	p->status = -1;
	h_tmp_name(p->dir, sizeof(p->dir), p->instance);
	if (mkdtemp(p->dir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	snprintf(p->out, sizeof(p->out), "%s/out", p->dir);
	snprintf(p->err, sizeof(p->err), "%s/err", p->dir);
}

/* conf: run that pipeline file (no -p), else the built-in pipeline. */
static void
vspawn(struct pl *p, const char *conf, va_list ap)
{
	char exe[256], port[16];
	char *argv[64];
	int n = 0;
	h_bin("telem-supervisor", exe, sizeof(exe));
	snprintf(port, sizeof(port), "%d", p->port);
	argv[n++] = exe;
	argv[n++] = "-i";
	argv[n++] = p->instance;
	if (conf != NULL) {
		argv[n++] = "-c";
		argv[n++] = (char *)conf;
	} else {
		argv[n++] = "-p";
		argv[n++] = port;
	}
	argv[n++] = "-t";
	argv[n++] = (char *)p->transport;
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL && n < 62)
		argv[n++] = (char *)a;
	argv[n] = NULL;
	/* Emptied here, not only in the child: pl_start must not find the
	 * "pipeline up" of an earlier run of the same pl in them. */
	(void)!truncate(p->out, 0);
	(void)!truncate(p->err, 0);
	p->status = -1;
	pid_t parent = getpid();
	p->pid = fork();
	if (p->pid == -1) {
		perror("fork");
		abort();
	}
	if (p->pid == 0) {
		/* If the test process dies, the supervisor shuts down and
		 * removes the instance's objects itself. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		int o = open(p->out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
		int e = open(p->err, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
		int z = open("/dev/null", O_RDONLY);
		if (o == -1 || e == -1 || z == -1)
			_exit(127);
		dup2(z, 0);
		dup2(o, 1);
		dup2(e, 2);
		execv(exe, argv);
		_exit(127);
	}
}

void
pl_spawn(struct pl *p, ...)
{
	va_list ap;
	va_start(ap, p);
	vspawn(p, NULL, ap);
	va_end(ap);
}

static int
await_up(struct pl *p)
{
	long long end = now_ms() + 10000;
	while (now_ms() < end) {
		if (h_wait_text(p->err, "pipeline up", 1, 20))
			return 1;
		if (pl_wait(p, 0) != -1)
			return 0;
	}
	return 0;
}

int
pl_start_conf(struct pl *p, const char *conf, ...)
{
	va_list ap;
	va_start(ap, conf);
	vspawn(p, conf, ap);
	va_end(ap);
	return await_up(p);
}

const char *
pl_conf(const struct pl *p, const char *name, char *path, size_t cap,
    const char *fmt, ...)
{
	snprintf(path, cap, "%s/%s", p->dir, name);
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		abort();
	}
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	if (fclose(f) == EOF) {
		perror(path);
		abort();
	}
	return path;
}

int
pl_start(struct pl *p, ...)
{
	va_list ap;
	va_start(ap, p);
	vspawn(p, NULL, ap);
	va_end(ap);
	return await_up(p);
}

void
pl_nc(const struct pl *p, const char *payload)
{
	char cmd[512];
	int fd[2];
	if (pipe(fd) == -1)
		abort();
	snprintf(cmd, sizeof(cmd), "%d", p->port);
	/* The payload is in the pipe, and its end closed, before nc runs
	 * (`nc -u -q0` quits once stdin ends; a write after it quit would
	 * kill this process with SIGPIPE; the pipe holds 64 kB). */
	size_t len = strlen(payload);
	if (len >= 65536 || write(fd[1], payload, len) != (ssize_t)len) {
		perror("write to nc");
		abort();
	}
	close(fd[1]);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[0], 0);
		close(fd[0]);
		execlp("nc", "nc", "-u", "-q0", "127.0.0.1", cmd, (char *)NULL);
		_exit(127);
	}
	close(fd[0]);
	int st;
	waitpid(pid, &st, 0);
}

void
pl_sendto(const struct pl *p, const void *buf, size_t len)
{
	static int fd = -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(p->port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1)
		fd = socket(AF_INET, SOCK_DGRAM, 0);
	while (sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) {
			perror("sendto");
			return;
		}
		nap(1);
	}
}

void
pl_burst(const struct pl *p, const char *payload, unsigned count, unsigned gap_us)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(p->port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd == -1) {
		perror("socket");
		return;
	}
	for (unsigned i = 0; i < count; i++) {
		if (i > 0) {
			/* A sleep, not a spin: the receiver may share our core. */
			struct timespec ts = { 0, gap_us * 1000L };
			nanosleep(&ts, NULL);
		}
		if (sendto(fd, payload, strlen(payload), 0, (struct sockaddr *)&sa,
		    sizeof(sa)) == -1)
			perror("sendto");
	}
	close(fd);
}

char *
h_slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (buf == NULL)
		abort();
	if (f != NULL) {
		size_t n;
		while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
			len += n;
			if (cap - len - 1 == 0 && (buf = realloc(buf, cap *= 2)) == NULL)
				abort();
		}
		fclose(f);
	}
	buf[len] = '\0';
	return buf;
}

int
h_count(const char *hay, const char *needle)
{
	int n = 0;
	size_t l = strlen(needle);
	for (const char *s = hay; (s = strstr(s, needle)) != NULL; s += l)
		n++;
	return n;
}

int
h_wait_text(const char *path, const char *needle, int count, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;
	for (;;) {
		char *s = h_slurp(path);
		int n = h_count(s, needle);
		free(s);
		if (n >= count)
			return 1;
		if (now_ms() >= end)
			return 0;
		nap(10);
	}
}

int
pl_wait(struct pl *p, int timeout_ms)
{
	if (p->status != -1)
		return p->status;
	if (p->pid <= 0)
		return -1;
	long long end = now_ms() + timeout_ms;
	for (;;) {
		int st;
		pid_t r = waitpid(p->pid, &st, WNOHANG);
		if (r == p->pid) {
			p->status = st;
			return st;
		}
		if (now_ms() >= end)
			return -1;
		nap(5);
	}
}

int
pl_signal_wait(struct pl *p, int sig, int timeout_ms)
{
	if (p->status == -1 && p->pid > 0)
		kill(p->pid, sig);
	return pl_wait(p, timeout_ms);
}

int
pl_ctl(const struct pl *p, char *out, size_t cap, const char *cmd)
{
	char exe[256], line[1024];
	h_bin("telemctl", exe, sizeof(exe));
	snprintf(line, sizeof(line), "%s -i %s %s 2>&1", exe, p->instance, cmd);
	FILE *f = popen(line, "r");
	if (f == NULL)
		abort();
	size_t len = 0, n;
	while (len < cap - 1 && (n = fread(out + len, 1, cap - 1 - len, f)) > 0)
		len += n;
	out[len] = '\0';
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *
status_line(const char *all, const char *stage, char *line, size_t cap)
{
	char key[64];
	snprintf(key, sizeof(key), "stage=%s ", stage);
	const char *s = strstr(all, key);
	if (s == NULL)
		return NULL;
	size_t n = strcspn(s, "\n");
	if (n >= cap)
		n = cap - 1;
	memcpy(line, s, n);
	line[n] = '\0';
	return line;
}

long long
pl_stat(const struct pl *p, const char *stage, const char *field)
{
	char out[8192], line[1024], key[64];
	if (pl_ctl(p, out, sizeof(out), "status") != 0)
		return -1;
	if (status_line(out, stage, line, sizeof(line)) == NULL)
		return -1;
	snprintf(key, sizeof(key), " %s=", field);
	const char *v = strstr(line, key);
	return v == NULL ? -1 : strtoll(v + strlen(key), NULL, 10);
}

pid_t
pl_stage_pid(const struct pl *p, const char *stage)
{
	return (pid_t)pl_stat(p, stage, "pid");
}

pid_t
pl_ctl_bg(const struct pl *p, const char *cmd, const char *path)
{
	char exe[256], line[1024];
	h_bin("telemctl", exe, sizeof(exe));
	snprintf(line, sizeof(line), "exec %s -i %s %s >%s 2>&1", exe, p->instance,
	    cmd, path);
	pid_t pid = fork();
	if (pid == -1) {
		perror("fork");
		abort();
	}
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", line, (char *)NULL);
		_exit(127);
	}
	return pid;
}

const char *const h_stage_name[H_NSTAGES] = { "ingest", "low", "high", "ckms", "cma" };

/* The value of `key=` in line (up to the next space) into buf. */
static int
field(const char *line, const char *key, char *buf, size_t cap)
{
	char k[32];
	snprintf(k, sizeof(k), " %s=", key);
	const char *v = strstr(line, k);
	if (v == NULL)
		return -1;
	v += strlen(k);
	size_t n;
	if (*v == '"') {
		/* A quoted logfmt value: up to the closing quote, \" and \\
		 * taken whole. */
		n = 1;
		while (v[n] != '\0' && v[n] != '"' && v[n] != '\n')
			n += v[n] == '\\' && v[n + 1] != '\0' ? 2 : 1;
		n += v[n] == '"';
	} else {
		n = strcspn(v, " \n");
	}
	if (n >= cap)
		n = cap - 1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	return 0;
}

static int
num_field(const char *line, const char *key, long long *v)
{
	char buf[32], *end;
	if (field(line, key, buf, sizeof(buf)) == -1 || buf[0] == '\0')
		return -1;
	*v = strtoll(buf, &end, 10);
	return *end == '\0' ? 0 : -1;
}

int
pl_status(const struct pl *p, struct h_status *s)
{
	char line[2048];
	memset(s, 0, sizeof(*s));
	if (pl_ctl(p, s->raw, sizeof(s->raw), "status") != 0)
		return 0;
	size_t len = strlen(s->raw);
	if (len < 3 || strcmp(s->raw + len - 3, "ok\n") != 0)
		return 0;
	for (const char *l = s->raw; *l != '\0' && s->n < H_STAGES_MAX;) {
		const char *nl = strchr(l, '\n');
		size_t n = nl != NULL ? (size_t)(nl - l) : strlen(l);
		if (strncmp(l, "stage=", 6) == 0) {
			struct h_stage *t = &s->st[s->n++];
			/* A leading blank, so that every key is found as " key=". */
			snprintf(line, sizeof(line), " %.*s", (int)n, l);
			/* Only a stage with sockets shows its kernel drops. */
			t->dropped_dgrams = -1;
			if (strstr(line, " dropped_dgrams=") != NULL &&
			    num_field(line, "dropped_dgrams", &t->dropped_dgrams))
				return 0;
			if (field(line, "stage", t->name, sizeof(t->name)) ||
			    num_field(line, "pid", &t->pid) || num_field(line, "restarts", &t->restarts) ||
			    num_field(line, "uptime_s", &t->uptime_s) ||
			    num_field(line, "depth", &t->depth) || num_field(line, "in", &t->in) ||
			    num_field(line, "out", &t->out) || num_field(line, "bad", &t->bad) ||
			    num_field(line, "filtered", &t->filtered) ||
			    num_field(line, "inflight", &t->inflight) ||
			    num_field(line, "dropped", &t->dropped) || num_field(line, "lost", &t->lost) ||
			    num_field(line, "sink_dropped", &t->sink_dropped) ||
			    field(line, "state", t->state, sizeof(t->state)) ||
			    field(line, "in_queue", t->in_queue, sizeof(t->in_queue)) ||
			    field(line, "exe", t->exe, sizeof(t->exe)) ||
			    field(line, "args", t->args, sizeof(t->args)))
				return 0;
		}
		l += n + (nl != NULL);
	}
	return s->n > 0;
}

struct h_stage *
h_find(struct h_status *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->st[i].name, name) == 0)
			return &s->st[i];
	return NULL;
}

int
pl_books(const struct pl *p, char *out, size_t cap)
{
	if (pl_ctl(p, out, cap, "books") != 0)
		return 0;
	static const char tail[] = "\nbalanced\nok\n";
	size_t len = strlen(out), n = sizeof(tail) - 1;
	return len >= n && strcmp(out + len - n, tail) == 0;
}

static int
scan(const char *dir, const char *prefix, int remove_them)
{
	DIR *d = opendir(dir);
	int n = 0;
	if (d == NULL)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		n++;
		if (remove_them) {
			char name[300];
			snprintf(name, sizeof(name), "/%s", e->d_name);
			if (strcmp(dir, "/dev/mqueue") == 0)
				mq_unlink(name);
			else
				shm_unlink(name);
		}
	}
	closedir(d);
	return n;
}

int
pl_objects_left(const struct pl *p)
{
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "telem.%s.", p->instance);
	return scan("/dev/mqueue", prefix, 0) + scan("/dev/shm", prefix, 0);
}

int
h_refuses(const struct pl *p, const char *args, char *why, size_t cap)
{
	char exe[256], cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s %s 2>%s >/dev/null",
	    h_bin("telem-supervisor", exe, sizeof(exe)), args, p->err);
	int st = system(cmd);
	char *err = h_slurp(p->err);
	int ok = WIFEXITED(st) && WEXITSTATUS(st) == 2 && h_count(err, "\n") == 1 &&
	    strncmp(err, "telem-supervisor: ", 18) == 0;
	if (!ok)
		snprintf(why, cap, "'%s' -> status %d, stderr:\n%s", args, st, err);
	free(err);
	return ok;
}

int
h_procs_of(const char *instance)
{
	DIR *d = opendir("/proc");
	if (d == NULL) {
		perror("opendir /proc");
		abort();  /* the caller's assertion could not mean anything */
	}
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char path[300], cmd[4096];
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd == -1)
			continue;  /* gone meanwhile */
		ssize_t len = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (len <= 0)
			continue;  /* a kernel thread, or a zombie */
		cmd[len] = '\0';
		/* argv[0] is a telem program; some later argument pair is
		 * "-i INSTANCE" (the words are NUL-separated). */
		const char *base = strrchr(cmd, '/');
		base = base != NULL ? base + 1 : cmd;
		if (strncmp(base, "telem-", 6) != 0)
			continue;
		for (const char *a = cmd + strlen(cmd) + 1; a < cmd + len;
		    a += strlen(a) + 1) {
			const char *v = a + strlen(a) + 1;
			if (strcmp(a, "-i") == 0 && v < cmd + len &&
			    strcmp(v, instance) == 0) {
				n++;
				break;
			}
		}
	}
	closedir(d);
	return n;
}

void
pl_cleanup(struct pl *p)
{
	if (p->pid > 0 && pl_signal_wait(p, SIGTERM, 6000) == -1) {
		kill(p->pid, SIGKILL);
		pl_wait(p, 2000);
	}
	/* Stages leave with their supervisor (parent-death signal); then
	 * remove whatever a failed test may have left behind. */
	nap(50);
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "telem.%s.", p->instance);
	scan("/dev/mqueue", prefix, 1);
	scan("/dev/shm", prefix, 1);
	/* The socket a killed supervisor left (its lock file, in /dev/shm,
	 * went with the scan above). */
	char dir[512], path[600];
	if (ctl_dir(dir, sizeof(dir), 0) == 0) {
		snprintf(path, sizeof(path), "%s/%s.sock", dir, p->instance);
		unlink(path);
	}
	/* The whole folder: tests keep files of their own beside out and
	 * err (replies, scripts' marks). */
	if (getenv("TELEM_KEEP") == NULL && p->dir[0] != '\0')
		h_rm_dir(p->dir);
}

void
h_tcp_ports(int *port, int n)
{
	static const int on = 1;
	for (int i = 0; i < n; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t len = sizeof(sa);
		/* Kept open, never listening, until this process ends. */
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd == -1 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) == -1 ||
		    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
		    getsockname(fd, (struct sockaddr *)&sa, &len) == -1) {
			perror("h_tcp_ports");
			abort();
		}
		port[i] = ntohs(sa.sin_port);
	}
}

void
h_nap_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

int
h_tcp_accepts(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int ok = fd != -1 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd != -1)
		close(fd);
	return ok;
}

int
h_run(const char *cmd, char *out, size_t cap)
{
	FILE *f = popen(cmd, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = '\0';
	int st = pclose(f);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int
pl_ctlf(const struct pl *p, char *out, size_t cap, const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return pl_ctl(p, out, cap, cmd);
}

const char H_SEED_OUT[] =
    "[CKMS] a 0:10\n[CKMS] a 0.25:10\n[CKMS] a 0.5:10\n"
    "[CKMS] a 0.75:10\n[CKMS] a 0.9:10\n[CKMS] a 0.99:10\n"
    "[CKMS] a 0:10\n[CKMS] a 0.25:10\n[CKMS] a 0.5:10\n"
    "[CKMS] a 0.75:55\n[CKMS] a 0.9:55\n[CKMS] a 0.99:55\n"
    "[CMA] b 1000\n[CMA] b 1500\n[CMA] b 2000\n";

int
pl_seed_session(struct pl *p)
{
	static const char *const step[][2] = {
		{ "a 10\n", "[CKMS] a 0.99:10\n" },
		{ "a 55\n", "[CKMS] a 0.99:55\n" },
		{ "b 1000\n", "[CMA] b 1000\n" },
		{ "b 2000\n", "[CMA] b 1500\n" },
		{ "b 3000\n", "[CMA] b 2000\n" },
	};
	for (size_t i = 0; i < sizeof(step) / sizeof(step[0]); i++) {
		pl_nc(p, step[i][0]);
		if (!h_wait_text(p->out, step[i][1], 1, 10000))
			return 0;
	}
	return 1;
}
