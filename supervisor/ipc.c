/* ipc.c - the instance's IPC objects: the lock that makes an instance
 * ours, removal of what a crashed run left, the queues and the stats
 * segment, and their removal on every way out. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "ctlpath.h"
#include "log.h"
#include "supervisor/sup.h"
#include "wire.h"

static const char *const queues[] = { "low", "high", "ckms", "cma" };
#define NQUEUES (sizeof(queues) / sizeof(queues[0]))
/* The stages that keep a state file (the egresses). */
static const char *const keepers[] = { "ckms", "cma" };
#define NKEEPERS (sizeof(keepers) / sizeof(keepers[0]))

int
sup_state_path(const struct sup_config *cfg, const char *stage, char *buf,
    size_t cap)
{
	int n = cfg->state_dir != NULL ?
	    snprintf(buf, cap, "%s/%s.state", cfg->state_dir, stage) :
	    snprintf(buf, cap, "/dev/shm/telem.%s.%s.state", cfg->instance, stage);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Without --state-dir the egresses' state lasts one run: a clean stop
 * removes it, and a start removes what a run that died left. What a
 * --state-dir holds is kept. */
static void
unlink_state(const struct sup_config *cfg, int stale)
{
	if (cfg->state_dir != NULL)
		return;
	for (size_t i = 0; i < NKEEPERS; i++) {
		char path[PATH_MAX], other[PATH_MAX + 8];
		if (sup_state_path(cfg, keepers[i], path, sizeof(path)) == -1)
			continue;
		if (unlink(path) == 0) {
			if (stale)
				log_info("removed stale state file %s", path);
		} else if (errno != ENOENT) {
			log_warn("remove state file %s", path);
		}
		snprintf(other, sizeof(other), "%s.tmp", path);
		unlink(other);
		snprintf(other, sizeof(other), "%s.bad", path);
		unlink(other);
	}
}

static int
take_lock(struct sup *s)
{
	char dir[512], path[600];
	if (ctl_dir(dir, sizeof(dir), 1) == -1) {
		log_warn("control folder %s", dir);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s.lock", dir, s->cfg.instance);
	s->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lockfd == -1) {
		log_warn("open %s", path);
		return -1;
	}
	if (flock(s->lockfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			log_warnx("instance '%s' is already run by another supervisor "
			    "(lock %s held)", s->cfg.instance, path);
		else
			log_warn("flock %s", path);
		close(s->lockfd);
		s->lockfd = -1;
		return -1;
	}
	return 0;
}

void
sup_ipc_unlink_all(const struct sup_config *cfg, int stale)
{
	char obj[CHAN_NAME_MAX];
	for (size_t i = 0; i < NQUEUES; i++) {
		if (chan_objname(obj, sizeof(obj), cfg->instance, queues[i]) == -1)
			continue;
		if (chan_unlink(CHAN_MQUEUE, obj) == 0 && stale)
			log_info("removed stale mqueue %s", obj);
		if (chan_unlink(CHAN_SHM, obj) == 0 && stale)
			log_info("removed stale shm %s", obj);
	}
	if (chan_objname(obj, sizeof(obj), cfg->instance, "stats") == 0)
		stats_unlink(obj);
	unlink_state(cfg, stale);
}

static void
explain_create(const struct sup *s, const char *obj)
{
	int e = errno;
	if (s->cfg.chan.kind == CHAN_MQUEUE && (e == EMFILE || e == ENOSPC))
		log_warnx("mq_open %s: RLIMIT_MSGQUEUE exhausted: the queues of "
		    "this user (all instances) use the budget; use -m or remove "
		    "stale queues in /dev/mqueue", obj);
	else
		log_warn("create %s %s", chan_kind_name(s->cfg.chan.kind), obj);
}

int
sup_ipc_setup(struct sup *s)
{
	char obj[CHAN_NAME_MAX];
	if (take_lock(s) == -1)
		return -1;
	/* We hold the lock, so whatever carries this instance's name is left
	 * over from a run that died: remove it before creating ours. */
	sup_ipc_unlink_all(&s->cfg, 1);
	if (sup_listen_open(s) == -1)
		return -1;
	for (size_t i = 0; i < NQUEUES; i++) {
		if (chan_objname(obj, sizeof(obj), s->cfg.instance, queues[i]) == -1) {
			log_warnx("instance name '%s' is not usable", s->cfg.instance);
			return -1;
		}
		if (chan_create(&s->cfg.chan, obj) == -1) {
			explain_create(s, obj);
			return -1;
		}
	}
	if (chan_objname(obj, sizeof(obj), s->cfg.instance, "stats") == -1 ||
	    (s->stats = stats_create(obj)) == NULL) {
		log_warn("create stats segment %s", obj);
		return -1;
	}
	for (size_t i = 0; i < 2; i++) {
		chan_objname(obj, sizeof(obj), s->cfg.instance, queues[i]);
		if ((s->flushq[i] = chan_open(s->cfg.chan.kind, obj, CHAN_WRITE)) == NULL) {
			log_warn("open %s", obj);
			return -1;
		}
	}
	return 0;
}

void
sup_ipc_teardown(struct sup *s)
{
	for (size_t i = 0; i < 2; i++) {
		chan_close(s->flushq[i]);
		s->flushq[i] = NULL;
	}
	stats_detach(s->stats);
	s->stats = NULL;
	sup_listen_close(s);
	if (s->lockfd != -1) {
		sup_ipc_unlink_all(&s->cfg, 0);
		close(s->lockfd);  /* releases the lock; the file may stay */
		s->lockfd = -1;
	}
}

int
sup_send_record(struct sup *s, const char *queue, uint8_t type, int timeout_ms)
{
	char obj[CHAN_NAME_MAX];
	unsigned char buf[WIRE_HDR + WIRE_REC_HDR];
	struct wire_writer w;
	wire_writer_init(&w, buf, sizeof(buf));
	wire_put(&w, type, NULL, 0, 0);
	size_t len = wire_finish(&w);

	/* The filters' queues stay open for the Flush ticks; others are
	 * written only at shutdown and opened for it. */
	for (size_t i = 0; i < 2; i++)
		if (strcmp(queue, queues[i]) == 0)
			return chan_send(s->flushq[i], buf, len, timeout_ms);
	if (chan_objname(obj, sizeof(obj), s->cfg.instance, queue) == -1)
		return -1;
	struct chan *c = chan_open(s->cfg.chan.kind, obj, CHAN_WRITE);
	if (c == NULL)
		return -1;
	int rc = chan_send(c, buf, len, timeout_ms);
	chan_close(c);
	return rc;
}

long
sup_queue_depth(struct sup *s, const char *queue)
{
	char obj[CHAN_NAME_MAX];
	if (chan_objname(obj, sizeof(obj), s->cfg.instance, queue) == -1)
		return -1;
	struct chan *c = chan_open(s->cfg.chan.kind, obj, CHAN_WRITE);
	if (c == NULL)
		return -1;
	long d = chan_depth(c);
	chan_close(c);
	return d;
}
