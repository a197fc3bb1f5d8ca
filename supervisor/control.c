/* control.c - telemctl's side of the supervisor: status, restart, swap,
 * flush and stop over a UNIX stream socket. Requests are served inline by
 * the one loop; a restart or swap answers once the new process is ready
 * (or the swap was rolled back), a stop once the pipeline is down. */
#include <errno.h>
#include <fcntl.h>
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

#define REQ_MAX 4096
#define IO_TIMEOUT_S 2

static void
reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(int fd, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	/* A client that went away is no reason to stop: MSG_NOSIGNAL. */
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) == -1 && errno != EPIPE)
		log_warn("control reply");
}

static void
finish(int *fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
finish(int *fd, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	if (*fd == -1)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	reply(*fd, "%s\n", line);
	close(*fd);
	*fd = -1;
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
	} else if (ctl_default_path(s->ctlpath, sizeof(sa.sun_path),
	    s->cfg.instance, 1) == -1) {
		log_warn("control socket folder");
		return -1;
	}
	memcpy(sa.sun_path, s->ctlpath, strlen(s->ctlpath) + 1);
	s->ctlfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->ctlfd == -1) {
		log_warn("socket");
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
	if (unlink(s->ctlpath) == -1 && errno != ENOENT) {
		log_warn("unlink stale %s", s->ctlpath);
		goto fail;
	}
	mode_t old = umask(0177);
	int rc = bind(s->ctlfd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc == -1) {
		log_warn("bind %s", s->ctlpath);
		goto fail;
	}
	if (listen(s->ctlfd, 16) == -1) {
		log_warn("listen %s", s->ctlpath);
		unlink(s->ctlpath);
		goto fail;
	}
	return 0;
fail:
	close(s->ctlfd);
	s->ctlfd = -1;
	s->ctlpath[0] = '\0';
	return -1;
}

static const int display_order[SUP_STAGES] = { 4, 2, 3, 0, 1 };

static void
do_status(struct sup *s, int fd)
{
	long long now = clock_ms();
	for (int k = 0; k < SUP_STAGES; k++) {
		struct sup_child *c = &s->ch[display_order[k]];
		struct stats_slot *st = &s->stats->slot[c->slot];
		long depth = c->in_queue[0] ? sup_queue_depth(s, c->in_queue) : 0;
		reply(fd, "stage=%s pid=%d state=%s restarts=%llu uptime_s=%lld "
		    "in_queue=%s depth=%ld in=%llu out=%llu bad=%llu dropped=%llu "
		    "lost=%llu sink_dropped=%llu exe=%s\n", c->name, (int)c->pid,
		    sup_state_name(c->state),
		    (unsigned long long)stats_get(&st->restarts),
		    c->pid > 0 ? (now - c->started_ms) / 1000 : 0,
		    c->in_queue[0] ? c->in_queue : "-", depth,
		    (unsigned long long)stats_get(&st->in),
		    (unsigned long long)stats_get(&st->out),
		    (unsigned long long)stats_get(&st->bad),
		    (unsigned long long)stats_get(&st->dropped),
		    (unsigned long long)stats_get(&st->lost),
		    (unsigned long long)stats_get(&st->sink_dropped), c->exe);
	}
	reply(fd, "ok\n");
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
do_swap(struct sup *s, struct sup_child *c, char **argv, int argc, int fd)
{
	char exe[PATH_MAX];
	/* A bare name is one of ours, next to the supervisor (telemctl makes
	 * relative paths absolute: our working folder is not the caller's). */
	if (strchr(argv[0], '/') == NULL) {
		if (snprintf(exe, sizeof(exe), "%s/%s", s->cfg.bindir, argv[0]) >=
		    (int)sizeof(exe)) {
			reply(fd, "error: %s: path too long\n", argv[0]);
			return -1;
		}
		argv[0] = exe;
	}
	if (access(argv[0], X_OK) == -1) {
		reply(fd, "error: %s: %s\n", argv[0], strerror(errno));
		return -1;
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

static void
handle(struct sup *s, int fd, char *line)
{
	/* "swap STAGE EXEC" and up to SUP_ARGS_MAX arguments, and a NULL. */
	char *argv[SUP_ARGS_MAX + 4];
	int argc = 0;
	for (char *tok = strtok(line, " \t\r"); tok != NULL;
	    tok = strtok(NULL, " \t\r")) {
		if (argc == SUP_ARGS_MAX + 3) {
			finish(&fd, "error: at most %d arguments", SUP_ARGS_MAX);
			return;
		}
		argv[argc++] = tok;
	}
	if (argc == 0) {
		finish(&fd, "error: empty request");
		return;
	}
	const char *cmd = argv[0];
	if (strcmp(cmd, "status") == 0 && argc == 1) {
		do_status(s, fd);
		close(fd);
	} else if (strcmp(cmd, "flush") == 0 && argc == 1) {
		/* Asked for: worth a short wait behind a busy queue. */
		if (sup_flush(s, 1000) == 0)
			finish(&fd, "ok");
		else
			finish(&fd, "error: a filter's queue stayed full for 1 s: "
			    "Flush not sent to it");
	} else if (strcmp(cmd, "stop") == 0 && argc == 1) {
		if (s->stop_fd != -1)
			close(s->stop_fd);
		s->stop_fd = fd;
		sup_begin_stop(s, 0);
	} else if ((strcmp(cmd, "restart") == 0 && argc == 2) ||
	    (strcmp(cmd, "swap") == 0 && argc >= 3)) {
		struct sup_child *c = sup_find(s, argv[1]);
		if (c == NULL) {
			finish(&fd, "error: no stage '%s'", argv[1]);
			return;
		}
		if (c->reply_fd != -1) {
			finish(&fd, "error: stage %s is busy with another request", c->name);
			return;
		}
		if (cmd[1] == 'w' && do_swap(s, c, argv + 2, argc - 2, fd) == -1) {
			close(fd);
			return;
		}
		c->reply_fd = fd;
		sup_restart(s, c);
	} else {
		finish(&fd, "error: usage: status | restart STAGE | swap STAGE EXEC "
		    "[ARGS...] | flush | stop");
	}
}

void
ctl_accept(struct sup *s)
{
	int fd = accept4(s->ctlfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd == -1) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("accept on %s", s->ctlpath);
		return;
	}
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char req[REQ_MAX];
	size_t len = 0;
	while (len < sizeof(req) - 1) {
		ssize_t n = read(fd, req + len, sizeof(req) - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(req, '\n', len) != NULL)
			break;
	}
	req[len] = '\0';
	char *nl = strchr(req, '\n');
	if (nl == NULL) {
		finish(&fd, "error: request must be one line ending in a newline");
		return;
	}
	*nl = '\0';
	handle(s, fd, req);
}

void
ctl_stage_ready(struct sup *s, struct sup_child *c)
{
	(void)s;
	if (c->swapping)
		free_prev(c);
	if (c->reply_err[0] != '\0') {
		finish(&c->reply_fd, "%s", c->reply_err);
		c->reply_err[0] = '\0';
	} else {
		finish(&c->reply_fd, "ok");
	}
}

/* A swapped-in program that dies before it is ready - exit 100, another
 * exit, a signal - does not get the restart policy (which would retry it
 * and then stop the whole pipeline): the program that ran before comes
 * back at once, and the request is answered once that one is ready. */
int
ctl_stage_exited(struct sup *s, struct sup_child *c, int wst)
{
	(void)s;
	if (!c->swapping)
		return 0;
	char failed[PATH_MAX], why[128];
	snprintf(failed, sizeof(failed), "%s", c->exe);
	if (c->not_ready)
		snprintf(why, sizeof(why), "was not ready in %d s and was killed",
		    SUP_READY_MS / 1000);
	else if (WIFSIGNALED(wst))
		snprintf(why, sizeof(why), "was killed by signal %d (%s) before it "
		    "was ready", WTERMSIG(wst), strsignal(WTERMSIG(wst)));
	else
		snprintf(why, sizeof(why), "exited %d%s before it was ready",
		    WEXITSTATUS(wst),
		    WEXITSTATUS(wst) == EXIT_PERMANENT ? " (configuration error)" : "");
	for (int i = 0; i < c->nown; i++)
		free(c->own[i]);
	memcpy(c->own, c->prev_own, sizeof(c->own));
	c->nown = c->prev_nown;
	c->prev_nown = 0;
	snprintf(c->exe, sizeof(c->exe), "%s", c->prev_exe);
	c->swapping = 0;
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
		finish(&s->ch[i].reply_fd, "%s", s->ch[i].reply_err[0] != '\0' ?
		    s->ch[i].reply_err : "error: supervisor stopping");
	finish(&s->stop_fd, "ok");
	ctl_close(s);
}
