/* control.c - telemctl's side of the supervisor: status, books, restart,
 * swap, flush and stop over a UNIX stream socket. The socket and every
 * connection are non-blocking and served by the supervisor's one poll loop
 * (loop.c), so no client holds up Flush ticks, reaping or restarts: at most
 * CTL_CONNS connections, each with CTL_REQ_MS to send one line of at most
 * CTL_REQ_MAX bytes and CTL_REPLY_MS to read its reply, else it is dropped
 * (logged at most once a second, with a count). A restart or swap answers
 * once the new process is ready (or the swap was rolled back), a stop once
 * the pipeline is down. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "ctlpath.h"
#include "log.h"
#include "supervisor/control.h"
#include "supervisor/sup.h"

/* telemctl's waits (control.h) outlast what a request may take here: a
 * flush behind a full queue; a restart's or swap's stop (SIGKILL after
 * the grace, reaped within a second) and a ready wait, twice for a swap
 * rolled back; a reload's wait for its stages after such a stop; a stop
 * of every stage, level by level, in two rounds (loop.c). */
_Static_assert(CTL_REQ_MS + CTL_FLUSH_MS < CTL_CLIENT_MS, "flush");
_Static_assert(SUP_STOP_GRACE_MS + 1000 + 2 * SUP_READY_MS < CTL_CLIENT_WAIT_MS,
    "restart, swap");
_Static_assert(SUP_STOP_GRACE_MS + 1000 + CTL_RELOAD_MS < CTL_CLIENT_WAIT_MS,
    "reload");
_Static_assert(2 * SUP_STAGES * (SUP_STOP_GRACE_MS + 1000) < CTL_CLIENT_STOP_MS,
    "stop");

/* One client connection. READ: its request line is coming (deadline: the
 * request's); WAIT: the request is being carried out (a restart, a swap, a
 * stop, a flush behind a full queue); WRITE: its reply is going out
 * (deadline: the reply's), then it is closed. */
enum conn_phase { CONN_FREE, CONN_READ, CONN_WAIT, CONN_WRITE };

struct ctl_conn {
	int fd;
	enum conn_phase phase;
	long long deadline_ms;
	size_t inlen;
	char in[CTL_REQ_MAX + 1];
	char *out;                 /* the reply so far (malloc'd) */
	size_t outlen, outoff, outcap;
	int oom;                   /* the reply could not be kept whole */
	int waits_stop;
	int waits_reload;          /* reload: answered once its stages are up */
	long long reload_until_ms;
	uint64_t flush_left;       /* flush stages (bit: slot) still to get a
	                            * requested Flush */
	long long flush_until_ms;
	uint32_t flush_ms;         /* the interval that Flush carries */
};

/* A reply longer than this is cut (status of every stage is ~2 kB). */
#define OUT_MAX (256 * 1024)

static struct ctl_conn *
conn_of(struct sup *s, int fd)
{
	if (s->conn == NULL || fd < 0)
		return NULL;
	for (int i = 0; i < CTL_CONNS; i++)
		if (s->conn[i].phase != CONN_FREE && s->conn[i].fd == fd)
			return &s->conn[i];
	return NULL;
}

static void
conn_close(struct ctl_conn *k)
{
	if (k->fd != -1 && close(k->fd) == -1)
		log_warn("close control connection");
	free(k->out);
	k->out = NULL;
	k->fd = -1;
	k->phase = CONN_FREE;
}

/* Dropped for what it did (or did not do): one line a second at most. */
static void
conn_drop(struct sup *s, struct ctl_conn *k, const char *why)
{
	long long n = log_limit_pass(&s->ctl_drops, 1000);
	if (n > 0)
		log_warnx("control client dropped: %s (and %lld more since the last "
		    "line)", why, n);
	else if (n == 0)
		log_warnx("control client dropped: %s", why);
	conn_close(k);
}

static void
reply(struct ctl_conn *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append a line to k's reply; nothing is sent yet (see conn_send). */
static void
reply(struct ctl_conn *k, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || k->oom)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (k->outlen + (size_t)n > k->outcap) {
		size_t cap = k->outcap ? k->outcap * 2 : 4096;
		while (cap < k->outlen + (size_t)n)
			cap *= 2;
		char *p = cap <= OUT_MAX ? realloc(k->out, cap) : NULL;
		if (p == NULL) {
			log_warnx("control reply of more than %zu bytes: cut",
			    k->outcap);
			k->oom = 1;
			return;
		}
		k->out = p;
		k->outcap = cap;
	}
	memcpy(k->out + k->outlen, line, (size_t)n);
	k->outlen += (size_t)n;
}

/* Write what the socket takes now; the rest when poll says it may. Once
 * all is written the connection is closed. */
static void
conn_send(struct sup *s, struct ctl_conn *k)
{
	while (k->outoff < k->outlen) {
		/* A client that went away is no reason to stop: MSG_NOSIGNAL. */
		ssize_t w = send(k->fd, k->out + k->outoff, k->outlen - k->outoff,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (w == -1) {
			if (errno != EPIPE && errno != ECONNRESET)
				log_warn("control reply");
			conn_close(k);
			return;
		}
		k->outoff += (size_t)w;
	}
	(void)s;
	conn_close(k);
}

/* The reply is complete: send it, within CTL_REPLY_MS. */
static void
conn_reply_done(struct sup *s, struct ctl_conn *k)
{
	k->phase = CONN_WRITE;
	k->deadline_ms = clock_ms() + CTL_REPLY_MS;
	conn_send(s, k);
}

static void
finish(struct sup *s, int *fd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The last line of the reply to the connection with this fd, then it is
 * sent; *fd becomes -1. Nothing if *fd is -1. */
static void
finish(struct sup *s, int *fd, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	struct ctl_conn *k = conn_of(s, *fd);
	*fd = -1;
	if (k == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	reply(k, "%s\n", line);
	conn_reply_done(s, k);
}

int
ctl_open(struct sup *s)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (s->cfg.control != NULL) {
		if (strlen(s->cfg.control) >= sizeof(sa.sun_path)) {
			log_warnx("control socket path %s is too long", s->cfg.control);
			return -1;
		}
		snprintf(s->ctlpath, sizeof(s->ctlpath), "%s", s->cfg.control);
	} else {
		char dir[512], why[512];
		if (ctl_dir_checked(dir, sizeof(dir), 1, why, sizeof(why)) == -1) {
			if (errno == EPERM || errno == ENOTDIR)
				log_warnx("%s", why);
			else
				log_warn("%s", why);
			return -1;
		}
		if (ctl_default_path(s->ctlpath, sizeof(sa.sun_path),
		    s->cfg.instance, 0) == -1) {
			log_warn("control socket path in %s", dir);
			return -1;
		}
	}
	memcpy(sa.sun_path, s->ctlpath, strlen(s->ctlpath) + 1);
	if (s->conn == NULL &&
	    (s->conn = calloc(CTL_CONNS, sizeof(*s->conn))) == NULL) {
		log_warn("control connections");
		return -1;
	}
	/* Field by field: the request buffers stay untouched pages. */
	for (int i = 0; i < CTL_CONNS; i++) {
		s->conn[i].fd = -1;
		s->conn[i].phase = CONN_FREE;
	}
	int rc = -1;
	s->ctlfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->ctlfd == -1) {
		log_warn("socket for the control socket %s", s->ctlpath);
		return -1;
	}
	/* A socket file nobody answers on is left by a killed supervisor. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe != -1 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		log_warnx("control socket %s is in use by a running supervisor",
		    s->ctlpath);
		close(probe);
		goto fail;
	}
	if (probe != -1)
		close(probe);
	/* Only a socket of ours is replaced; whatever else is there is the
	 * user's mistake in --control, and not ours to delete. */
	char why[512];
	int what = ctl_trust_sock(s->ctlpath, why, sizeof(why));
	if (what == -1) {
		if (errno == ENOTSOCK || errno == EPERM) {
			log_warnx("%s: refusing to replace it", why);
			rc = -EXIT_USAGE;
		} else {
			log_warn("stat %s", s->ctlpath);
		}
		goto fail;
	}
	if (what == 1 && unlink(s->ctlpath) == -1 && errno != ENOENT) {
		log_warn("unlink stale %s", s->ctlpath);
		goto fail;
	}
	mode_t old = umask(0177);
	int b = bind(s->ctlfd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (b == -1) {
		log_warn("bind %s", s->ctlpath);
		goto fail;
	}
	if (listen(s->ctlfd, CTL_CONNS) == -1) {
		log_warn("listen %s", s->ctlpath);
		unlink(s->ctlpath);
		goto fail;
	}
	return 0;
fail:
	close(s->ctlfd);
	s->ctlfd = -1;
	s->ctlpath[0] = '\0';
	return rc;
}

int
ctl_check_path(const char *path)
{
	char why[512];
	if (ctl_trust_sock(path, why, sizeof(why)) != -1)
		return 0;
	if (errno == ENOTSOCK || errno == EPERM)
		log_warnx("--control %s: refusing to replace it", why);
	else
		log_warn("--control %s", path);
	return -1;
}

/* Append c to buf as a logfmt value character: " and \ escaped. */
static size_t
put_lf(char *buf, size_t n, size_t cap, char c)
{
	if (n + 3 >= cap)
		return n;
	if (c == '"' || c == '\\')
		buf[n++] = '\\';
	buf[n++] = c;
	return n;
}

/* A value for status: bare when it has no blank, quote or backslash,
 * else in double quotes with " and \ escaped (logfmt). */
static void
lf_value(const char *v, char *buf, size_t cap)
{
	if (*v != '\0' && strpbrk(v, " \t\"\\") == NULL) {
		snprintf(buf, cap, "%s", v);
		return;
	}
	size_t n = 0;
	buf[n++] = '"';
	for (; *v != '\0'; v++)
		n = put_lf(buf, n, cap, *v);
	buf[n++] = '"';
	buf[n] = '\0';
}

/* The arguments as one logfmt value: each argument as the pipeline
 * file's args would hold it (bare, or in double quotes with \" \\ and \;
 * escaped; supervisor/pipeline.h), blank-separated, and that in double
 * quotes, logfmt-escaped. */
static void
quoted_args(const struct sup_child *c, char *buf, size_t cap)
{
	size_t n = 0;
	buf[n++] = '"';
	for (int i = 0; i < c->nown; i++) {
		const char *a = c->own[i];
		int bare = *a != '\0' && *a != ';' && strpbrk(a, " \t\"") == NULL;
		if (i > 0)
			n = put_lf(buf, n, cap, ' ');
		if (!bare)
			n = put_lf(buf, n, cap, '"');
		for (; *a != '\0'; a++) {
			if (!bare && (*a == '"' || *a == '\\' || *a == ';'))
				n = put_lf(buf, n, cap, '\\');
			n = put_lf(buf, n, cap, *a);
		}
		if (!bare)
			n = put_lf(buf, n, cap, '"');
	}
	buf[n++] = '"';
	buf[n] = '\0';
}

#define U(x) ((unsigned long long)(x))

/* Ingest's kernel drops: the larger of what it booked and what the kernel
 * says now on our copy of its sockets (it may be stuck sending, or dead). */
static uint64_t
dgram_drops(struct sup_child *c, struct stats_slot *st)
{
	uint64_t booked = stats_get(&st->dropped_dgrams), now = udp_total_drops(&c->sock);
	return now > booked ? now : booked;
}

/* The stages as status and books list them: in file order, then any that
 * a reload removed and that still drain. Returns how many. */
static int
listed(struct sup *s, int order[SUP_STAGES])
{
	int n = 0;
	for (int i = 0; i < s->nstage; i++)
		order[n++] = s->shown[i];
	for (int i = 0; i < SUP_STAGES; i++)
		if (s->ch[i].name[0] != '\0' && s->ch[i].retiring)
			order[n++] = i;
	return n;
}

/* What status shows as a stage's state: the supervisor's, except that an
 * up stage whose process is stopped by a signal (SIGSTOP, a debugger) is
 * "stopped": it is alive but takes nothing (with queued input it becomes
 * stalled after --stall-ms). Read from /proc/PID/stat, state field. */
static const char *
shown_state(const struct sup_child *c)
{
	if (c->state != S_UP || c->pid <= 0)
		return sup_state_name(c->state);
	int st = sup_proc_state(c->pid);
	return st == 'T' || st == 't' ? "stopped" : sup_state_name(c->state);
}

static void
do_status(struct sup *s, struct ctl_conn *k)
{
	long long now = clock_ms();
	int order[SUP_STAGES], n = listed(s, order);
	for (int i = 0; i < n; i++) {
		struct sup_child *c = &s->ch[order[i]];
		struct stats_slot *st = &s->stats->slot[c->slot];
		long depth = c->in_queue[0] ? sup_queue_depth(s, c->in_queue) : 0;
		char dgrams[48] = "", args[1024], exe[PATH_MAX + 64];
		/* A stage with UDP sockets: where they are bound (the kernel's
		 * port, for port 0), comma-separated. */
		char listen_on[UDP_MAX_SOCKS * 66 + 8] = "";
		size_t len = 0;
		for (size_t j = 0; c->udp && j < c->sock.n &&
		    len < sizeof(listen_on); j++)
			len += (size_t)snprintf(listen_on + len, sizeof(listen_on) - len,
			    "%s%s", j ? "," : "listen=", c->sock.s[j].addr);
		if (c->udp)
			snprintf(dgrams, sizeof(dgrams), "dropped_dgrams=%llu ",
			    U(dgram_drops(c, st)));
		quoted_args(c, args, sizeof(args));
		lf_value(c->exe, exe, sizeof(exe));
		reply(k, "stage=%s pid=%d state=%s restarts=%llu uptime_s=%lld "
		    "in_queue=%s depth=%ld in=%llu out=%llu filtered=%llu bad=%llu "
		    "dropped=%llu %slost=%llu inflight=%lld sink_dropped=%llu "
		    "%s%sexe=%s args=%s\n", c->name, (int)c->pid,
		    c->retiring ? "draining" : shown_state(c),
		    U(stats_get(&st->restarts)),
		    c->pid > 0 ? (now - c->started_ms) / 1000 : 0,
		    c->in_queue[0] ? c->in_queue : "-", depth,
		    U(stats_in(st)), U(stats_get(&st->out)),
		    U(stats_get(&st->filtered)), U(stats_get(&st->bad)),
		    U(stats_get(&st->dropped)), dgrams, U(stats_get(&st->lost)),
		    (long long)stats_inflight(st), U(stats_get(&st->sink_dropped)),
		    listen_on, *listen_on ? " " : "", exe, args);
	}
	reply(k, "ok\n");
	conn_reply_done(s, k);
}

/* `books`: every stage's equation and every queue's (common/stats.h),
 * then `balanced` or what does not add up. Meant after a drain: a live
 * stage holding records shows them as in flight. */
static void
do_books(struct sup *s, struct ctl_conn *k)
{
	char bad[512] = "";
	size_t blen = 0;
	int order[SUP_STAGES], n = listed(s, order);
	for (int i = 0; i < n; i++) {
		struct sup_child *c = &s->ch[order[i]];
		struct stats_slot *st = &s->stats->slot[c->slot];
		uint64_t in = stats_in(st), out = stats_get(&st->out),
		    filtered = stats_get(&st->filtered), dropped = stats_get(&st->dropped),
		    lost = stats_get(&st->lost);
		int64_t diff = (int64_t)(in - out - filtered - dropped - lost);
		char verdict[128] = " ok";
		if (diff != 0) {
			snprintf(verdict, sizeof(verdict), " MISMATCH (diff %lld%s)",
			    (long long)diff, diff <= 0 || c->pid <= 0 ? "" :
			    stats_get(&st->save_failing) ? ": in flight in a live "
			    "stage whose state saves fail, see its log" :
			    ": in flight in a live stage, wait for a drain");
			if (blen < sizeof(bad))
				blen += (size_t)snprintf(bad + blen, sizeof(bad) - blen,
				    "%sstage %s", blen ? ", " : " ", c->name);
		}
		reply(k, "%s: in=%llu == out=%llu + filtered=%llu + dropped=%llu + "
		    "lost=%llu%s\n", c->name, U(in), U(out), U(filtered), U(dropped),
		    U(lost), verdict);
	}
	/* A queue's writers: the stages that send to it now, and any slot
	 * that sent to it before (a reload may have changed who writes
	 * where). Each writer's part is what it put in this queue by its own
	 * books (its sent[] for the queue's reader: its `out`, for a writer
	 * that always wrote here), less what a writer that joined at a reload
	 * had counted out before (spawn.c join_readers). */
	for (int i = 0; i < n; i++) {
		struct sup_child *r = &s->ch[order[i]];
		if (r->in_queue[0] == '\0')
			continue;
		struct stats_slot *rs = &s->stats->slot[r->slot];
		char who[128] = "";
		size_t wlen = 0;
		uint64_t wout = 0 - r->joined;
		int reports = 0;
		for (int j = 0; j < SUP_STAGES; j++) {
			struct sup_child *w = &s->ch[j];
			int now = 0;
			for (int q = 0; w->name[0] != '\0' && q < w->nout && !now; q++)
				now = strcmp(w->out_queue[q], r->in_queue) == 0;
			/* An egress sends report records, which are not booked
			 * (common/stats.h unbooked_out). */
			if (now && stats_get(&s->stats->slot[j].unbooked_out)) {
				reports = 1;
				continue;
			}
			uint64_t sent = stats_get(&s->stats->slot[j].sent[r->slot]);
			if (!now && sent == 0 && stats_get(&rs->taken[j]) == 0)
				continue;
			wout += sent;
			if (wlen < sizeof(who))
				wlen += (size_t)snprintf(who + wlen, sizeof(who) - wlen,
				    "%s%.*s.out", wlen ? "+" : "", STATS_NAME_MAX,
				    s->stats->slot[j].stage[0] ?
				    s->stats->slot[j].stage : "(removed)");
		}
		uint64_t rin = stats_in(rs);
		if (wout != rin && blen < sizeof(bad))
			blen += (size_t)snprintf(bad + blen, sizeof(bad) - blen,
			    "%squeue %s", blen ? ", " : " ", r->in_queue);
		reply(k, "%s: %s=%llu == %s.in=%llu %s\n", r->in_queue,
		    wlen ? who : reports ? "(report records only).out" :
		    "(no writer).out", U(wout), r->name, U(rin),
		    wout == rin ? "ok" : "MISMATCH");
	}
	if (blen == 0)
		reply(k, "balanced\nok\n");
	else
		reply(k, "not balanced:%s\nok\n", bad);
	conn_reply_done(s, k);
}

static void
free_prev(struct sup_child *c)
{
	for (int i = 0; i < c->prev_nown; i++)
		free(c->prev_own[i]);
	c->prev_nown = 0;
	c->swapping = 0;
}

static int
do_swap(struct sup *s, struct sup_child *c, char **argv, int argc,
    struct ctl_conn *k)
{
	char exe[PATH_MAX];
	/* A bare name is one of ours, next to the supervisor (telemctl makes
	 * relative paths absolute: our working folder is not the caller's). */
	if (strchr(argv[0], '/') == NULL) {
		if (snprintf(exe, sizeof(exe), "%s/%s", s->cfg.bindir, argv[0]) >=
		    (int)sizeof(exe)) {
			reply(k, "error: %s: path too long\n", argv[0]);
			return -1;
		}
		argv[0] = exe;
	}
	if (pipeline_exec_ok(argv[0]) == -1) {
		reply(k, "error: %s: %s\n", argv[0], strerror(errno));
		return -1;
	}
	for (int i = 1; i < argc; i++) {
		const char *opt = pipeline_arg_reserved(argv[i]);
		if (opt != NULL) {
			reply(k, "error: '%s' would give --%s, which the supervisor "
			    "gives each stage itself\n", argv[i], opt);
			return -1;
		}
	}
	/* Keep the running program to roll back to if the new one fails. */
	if (!c->swapping) {
		snprintf(c->prev_exe, sizeof(c->prev_exe), "%s", c->exe);
		memcpy(c->prev_own, c->own, sizeof(c->own));
		c->prev_nown = c->nown;
		c->nown = 0;
	}
	argv[argc] = NULL;
	sup_set_program(c, argv[0], (const char *const *)argv + 1);
	c->swapping = 1;
	c->reply_err[0] = '\0';
	return 0;
}

/* A requested Flush, to the flush stages not served yet: without waiting, so a
 * full queue holds up nothing else; retried by ctl_tick until
 * CTL_FLUSH_MS has passed. */
static void
try_flush(struct sup *s, struct ctl_conn *k)
{
	k->flush_left = sup_flush_try(s, k->flush_left, k->flush_ms);
	if (k->flush_left == 0) {
		reply(k, "ok\n");
		conn_reply_done(s, k);
	} else if (clock_ms() >= k->flush_until_ms) {
		reply(k, "error: a flush stage's queue stayed full for %d s: Flush not "
		    "sent to it\n", CTL_FLUSH_MS / 1000);
		conn_reply_done(s, k);
	}
}

static void handle_words(struct sup *s, struct ctl_conn *k, char **argv,
    int argc);
static void reload_done(struct sup *s, struct ctl_conn *k);

/* `reload`: the reply lists what was done, then ok once every stage it
 * started or swapped is up (or one error line, nothing changed). */
static void
do_reload(struct sup *s, struct ctl_conn *k)
{
	char out[4096];
	int rc = sup_reload(s, out, sizeof(out));
	reply(k, "%s", out);
	if (rc == -1) {
		conn_reply_done(s, k);
		return;
	}
	k->waits_reload = 1;
	k->reload_until_ms = clock_ms() + CTL_RELOAD_MS;
	reload_done(s, k);
}

/* Answer a reload once no stage it started or swapped is still coming
 * up; after CTL_RELOAD_MS, say which are not and answer anyway (the
 * change is made; status shows them). */
static void
reload_done(struct sup *s, struct ctl_conn *k)
{
	int late = 0;
	for (int i = 0; i < SUP_STAGES; i++)
		late += s->ch[i].name[0] != '\0' && s->ch[i].reloading;
	if (late > 0 && clock_ms() < k->reload_until_ms)
		return;
	for (int i = 0; i < SUP_STAGES; i++) {
		struct sup_child *c = &s->ch[i];
		if (c->name[0] != '\0' && c->reloading)
			reply(k, "stage %s not up after %d s (see status)\n", c->name,
			    CTL_RELOAD_MS / 1000);
		else if (c->name[0] != '\0' && c->reload_failed)
			reply(k, "swap of %s failed: its previous program runs again "
			    "(see the log)\n", c->name);
		c->reload_failed = 0;
	}
	k->waits_reload = 0;
	/* A new stage that failed before it was ready is no rollback of
	 * the same program: the pipeline runs without it, and the reload
	 * did not do what the file says. */
	if (s->reload_undone[0] != '\0') {
		reply(k, "%s", s->reload_undone);
		reply(k, "error: not every new stage came up: those above were "
		    "taken back out; the rest of the reload is applied\n");
	} else {
		reply(k, "ok\n");
	}
	conn_reply_done(s, k);
}

static void
handle(struct sup *s, struct ctl_conn *k, char *line)
{
	/* Words as the pipeline file's args are split (supervisor/pipeline.h):
	 * telemctl sends each in double quotes, so that one with blanks (a
	 * path, an argument) stays whole. "swap STAGE EXEC", up to
	 * SUP_ARGS_MAX arguments, and a NULL. */
	char *argv[SUP_ARGS_MAX + 4];
	char **words = NULL;
	const char *why = NULL;
	int fd = k->fd;
	size_t len = strlen(line);
	if (len > 0 && line[len - 1] == '\r')
		line[len - 1] = '\0';
	int argc = pipeline_split_args(line, &words, &why);
	if (argc == -1) {
		finish(s, &fd, "error: %s", why);
		return;
	}
	if (argc > SUP_ARGS_MAX + 3) {
		for (int i = 0; i < argc; i++)
			free(words[i]);
		free(words);
		finish(s, &fd, "error: at most %d arguments", SUP_ARGS_MAX);
		return;
	}
	for (int i = 0; i < argc; i++)
		argv[i] = words[i];
	argv[argc] = NULL;
	if (argc == 0) {
		free(words);
		finish(s, &fd, "error: empty request");
		return;
	}
	handle_words(s, k, argv, argc);
	for (int i = 0; i < argc; i++)
		free(words[i]);
	free(words);
}

static void
handle_words(struct sup *s, struct ctl_conn *k, char **argv, int argc)
{
	int fd = k->fd;
	const char *cmd = argv[0];
	k->phase = CONN_WAIT;
	if (strcmp(cmd, "status") == 0 && argc == 1) {
		do_status(s, k);
	} else if (strcmp(cmd, "books") == 0 && argc == 1) {
		do_books(s, k);
	} else if (strcmp(cmd, "reload") == 0 && argc == 1) {
		if (s->stopping)
			finish(s, &fd, "error: the supervisor is stopping");
		else
			do_reload(s, k);
	} else if (strcmp(cmd, "stop") == 0 && argc == 1) {
		/* Answered once the pipeline is down; every `stop` is. */
		k->waits_stop = 1;
		sup_begin_stop(s, 0);
	} else if (s->stopping && (strcmp(cmd, "flush") == 0 ||
	    strcmp(cmd, "restart") == 0 || strcmp(cmd, "swap") == 0)) {
		finish(s, &fd, "error: the supervisor is stopping");
	} else if (strcmp(cmd, "flush") == 0 && argc == 1) {
		k->flush_left = ~(uint64_t)0;
		k->flush_until_ms = clock_ms() + CTL_FLUSH_MS;
		k->flush_ms = sup_flush_mark(s, clock_ms());
		try_flush(s, k);
	} else if ((strcmp(cmd, "restart") == 0 && argc == 2) ||
	    (strcmp(cmd, "swap") == 0 && argc >= 3)) {
		struct sup_child *c = sup_find(s, argv[1]);
		if (c == NULL) {
			finish(s, &fd, "error: no stage '%s'", argv[1]);
			return;
		}
		if (c->reply_fd != -1) {
			finish(s, &fd, "error: stage %s is busy with another request",
			    c->name);
			return;
		}
		if (cmd[1] == 'w' && do_swap(s, c, argv + 2, argc - 2, k) == -1) {
			conn_reply_done(s, k);
			return;
		}
		/* Answered by ctl_stage_ready or ctl_stage_exited. */
		c->reply_fd = fd;
		sup_restart(s, c);
	} else {
		finish(s, &fd, "error: usage: status | books | restart STAGE | swap "
		    "STAGE EXEC [ARGS...] | flush | reload | stop");
	}
}

/* Read what has come; a whole line is handled, anything else waits for
 * more up to CTL_REQ_MAX bytes and the deadline. */
static void
conn_read(struct sup *s, struct ctl_conn *k)
{
	ssize_t n = read(k->fd, k->in + k->inlen, CTL_REQ_MAX - k->inlen);
	if (n == -1 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n == -1) {
		if (errno != ECONNRESET)
			log_warn("read control request");
		conn_close(k);
		return;
	}
	k->inlen += (size_t)n;
	k->in[k->inlen] = '\0';
	char *nl = memchr(k->in, '\n', k->inlen);
	if (nl != NULL) {
		*nl = '\0';
		handle(s, k, k->in);
	} else if (k->inlen == CTL_REQ_MAX) {
		/* Told why, then dropped once the reply is out. */
		reply(k, "error: request longer than %d bytes\n", CTL_REQ_MAX);
		conn_reply_done(s, k);
		long long m = log_limit_pass(&s->ctl_drops, 1000);
		if (m > 0)
			log_warnx("control client dropped: request of more than %d "
			    "bytes (and %lld more since the last line)", CTL_REQ_MAX, m);
		else if (m == 0)
			log_warnx("control client dropped: request of more than %d "
			    "bytes", CTL_REQ_MAX);
	} else if (n == 0) {
		if (k->inlen > 0)
			reply(k, "error: request must be one line ending in a newline\n");
		conn_reply_done(s, k);
	}
}

/* Take every waiting connection; past CTL_CONNS they are closed at once. */
static void
ctl_accept(struct sup *s)
{
	for (int taken = 0; taken < CTL_CONNS; taken++) {
		int fd = accept4(s->ctlfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED) {
				/* Out of descriptors, say: the next round may do. */
				long long m = log_limit_pass(&s->ctl_full, 1000);
				if (m >= 0)
					log_warn("accept on %s", s->ctlpath);
			}
			return;
		}
		struct ctl_conn *k = NULL;
		for (int i = 0; i < CTL_CONNS && k == NULL; i++)
			if (s->conn[i].phase == CONN_FREE)
				k = &s->conn[i];
		if (k == NULL) {
			long long m = log_limit_pass(&s->ctl_full, 1000);
			if (m >= 0)
				log_warnx("control socket: %d connections open, a new one "
				    "closed at once (%lld in all since the last line)",
				    CTL_CONNS, m + 1);
			close(fd);
			continue;
		}
		k->fd = fd;
		k->phase = CONN_READ;
		k->deadline_ms = clock_ms() + CTL_REQ_MS;
		k->inlen = 0;
		k->out = NULL;
		k->outlen = k->outoff = k->outcap = 0;
		k->oom = 0;
		k->waits_stop = 0;
		k->waits_reload = 0;
		k->flush_left = 0;
	}
}

nfds_t
ctl_pollfds(struct sup *s, struct pollfd *pfd)
{
	nfds_t n = 0;
	if (s->ctlfd != -1)
		pfd[n++] = (struct pollfd){ .fd = s->ctlfd, .events = POLLIN };
	if (s->conn == NULL)
		return n;
	/* A connection waiting on a stage is not polled: its peer's hang-up
	 * would wake every round; it hears its reply (or EPIPE) then. */
	for (int i = 0; i < CTL_CONNS; i++) {
		struct ctl_conn *k = &s->conn[i];
		if (k->phase == CONN_READ)
			pfd[n++] = (struct pollfd){ .fd = k->fd, .events = POLLIN };
		else if (k->phase == CONN_WRITE)
			pfd[n++] = (struct pollfd){ .fd = k->fd, .events = POLLOUT };
	}
	return n;
}

void
ctl_events(struct sup *s, const struct pollfd *pfd, nfds_t n)
{
	int listening = 0;
	for (nfds_t i = 0; i < n; i++) {
		if (!pfd[i].revents)
			continue;
		if (pfd[i].fd == s->ctlfd) {
			listening = 1;
			continue;
		}
		/* Looked up again: an answer given above may have closed it. */
		struct ctl_conn *k = conn_of(s, pfd[i].fd);
		if (k == NULL)
			continue;
		if (k->phase == CONN_READ)
			conn_read(s, k);
		else if (k->phase == CONN_WRITE)
			conn_send(s, k);
	}
	/* Last, so that no fd closed above is reused in this round. */
	if (listening)
		ctl_accept(s);
}

long long
ctl_tick(struct sup *s)
{
	if (s->conn == NULL)
		return -1;
	long long now = clock_ms(), next = -1;
	for (int i = 0; i < CTL_CONNS; i++) {
		struct ctl_conn *k = &s->conn[i];
		if (k->phase == CONN_WAIT && k->waits_reload) {
			reload_done(s, k);
			if (k->phase == CONN_WAIT)
				next = next < 0 || next > 10 ? 10 : next;
			continue;
		}
		if (k->phase == CONN_WAIT && k->flush_left != 0) {
			try_flush(s, k);
			if (k->phase == CONN_WAIT)
				next = 10;   /* a queue may have room soon */
			continue;
		}
		if (k->phase != CONN_READ && k->phase != CONN_WRITE)
			continue;
		if (k->deadline_ms <= now) {
			conn_drop(s, k, k->phase == CONN_READ ?
			    "no whole request line in 2 s" :
			    "reply not read in 2 s");
			continue;
		}
		long long d = k->deadline_ms - now;
		next = next < 0 || d < next ? d : next;
	}
	return next;
}

void
ctl_stage_ready(struct sup *s, struct sup_child *c)
{
	if (c->swapping)
		free_prev(c);
	if (c->reply_err[0] != '\0') {
		finish(s, &c->reply_fd, "%s", c->reply_err);
		c->reply_err[0] = '\0';
	} else {
		finish(s, &c->reply_fd, "ok");
	}
}

static void
not_ready_why(const struct sup_child *c, int wst, char *why, size_t cap)
{
	if (c->ready_killed && c->not_ready == NR_TIMEOUT)
		snprintf(why, cap, "was not ready in %d s and was killed",
		    SUP_READY_MS / 1000);
	else if (c->ready_killed && c->not_ready == NR_GARBAGE)
		snprintf(why, cap, "wrote something else than \"R\\n\" on its "
		    "ready fd and was killed");
	else if (c->ready_killed && c->not_ready == NR_EOF)
		snprintf(why, cap, "closed its ready fd without writing \"R\\n\" "
		    "and was killed");
	else if (WIFSIGNALED(wst))
		snprintf(why, cap, "was killed by signal %d (%s) before it "
		    "was ready", WTERMSIG(wst), strsignal(WTERMSIG(wst)));
	else
		snprintf(why, cap, "exited %d%s before it was ready",
		    WEXITSTATUS(wst),
		    WEXITSTATUS(wst) == EXIT_PERMANENT ? " (configuration error)" : "");
}

/* A swapped-in program that dies before it is ready - exit 100, another
 * exit, a signal, a wrong readiness - does not get the restart policy
 * (which would retry it and then stop the whole pipeline): the program
 * that ran before comes back at once, and the request is answered once
 * that one is ready. */
int
ctl_stage_exited(struct sup *s, struct sup_child *c, int wst)
{
	char failed[PATH_MAX], why[128];
	/* A stage a reload added that never came up: taken back out. */
	if (c->added) {
		not_ready_why(c, wst, why, sizeof(why));
		finish(s, &c->reply_fd, "error: new stage %s %s: taken back out",
		    c->name, why);
		sup_reload_undo(s, c, why);
		return 1;
	}
	/* Its old program, still running while a reload's swap waits for
	 * its new outs (loop.c), failed on its own: restarted as usual. */
	if (!c->swapping || c->swap_wait)
		return 0;
	snprintf(failed, sizeof(failed), "%s", c->exe);
	not_ready_why(c, wst, why, sizeof(why));
	for (int i = 0; i < c->nown; i++)
		free(c->own[i]);
	memcpy(c->own, c->prev_own, sizeof(c->own));
	c->nown = c->prev_nown;
	c->prev_nown = 0;
	snprintf(c->exe, sizeof(c->exe), "%s", c->prev_exe);
	c->swapping = 0;
	c->reload_failed = c->reloading;
	c->rolling_back = 1;
	log_warnx("swap of stage %s to %s failed (it %s): rolled back to %s",
	    c->name, failed, why, c->exe);
	/* Long paths are cut; the reply still starts with what happened. */
	if (c->reply_fd != -1 && snprintf(c->reply_err, sizeof(c->reply_err),
	    "error: swap of %s to %s failed: it %s; rolled back to %s", c->name,
	    failed, why, c->exe) >= (int)sizeof(c->reply_err))
		log_warnx("reply to the swap of %s cut at %zu bytes", c->name,
		    sizeof(c->reply_err) - 1);
	return 1;
}

void
ctl_close(struct sup *s)
{
	if (s->ctlfd != -1) {
		close(s->ctlfd);
		s->ctlfd = -1;
		unlink(s->ctlpath);
	}
}

void
ctl_finish(struct sup *s)
{
	for (int i = 0; i < SUP_STAGES; i++)
		finish(s, &s->ch[i].reply_fd, "%s", s->ch[i].reply_err[0] != '\0' ?
		    s->ch[i].reply_err : "error: supervisor stopping");
	ctl_close(s);
	if (s->conn == NULL)
		return;
	for (int i = 0; i < CTL_CONNS; i++) {
		struct ctl_conn *k = &s->conn[i];
		if (k->phase == CONN_WAIT) {
			reply(k, "%s\n", k->waits_stop ? "ok" :
			    "error: supervisor stopping");
			conn_reply_done(s, k);
		} else if (k->phase == CONN_READ) {
			conn_close(k);
		}
	}
	/* The replies left get their time to be read, then all is closed. */
	struct pollfd pfd[CTL_POLLFDS];
	long long left;
	nfds_t n;
	while ((n = ctl_pollfds(s, pfd)) > 0 && (left = ctl_tick(s)) >= 0) {
		if (poll(pfd, n, (int)left) == -1 && errno != EINTR) {
			log_warn("poll");
			break;
		}
		ctl_events(s, pfd, n);
	}
	for (int i = 0; i < CTL_CONNS; i++)
		if (s->conn[i].phase != CONN_FREE)
			conn_close(&s->conn[i]);
	free(s->conn);
	s->conn = NULL;
}
