/* ipc.c - the instance's IPC objects: the lock that makes an instance
 * ours, removal of what a crashed run left, the queues and the stats
 * segment, and their removal on every way out. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "chan_shm.h"
#include "ctlpath.h"
#include "log.h"
#include "supervisor/pipeline.h"
#include "supervisor/sup.h"
#include "wire.h"

int
sup_state_path(const struct sup_config *cfg, const char *stage, char *buf,
    size_t cap)
{
	int n = cfg->state_dir != NULL ?
	    snprintf(buf, cap, "%s/%s.state", cfg->state_dir, stage) :
	    snprintf(buf, cap, "/dev/shm/telem.%s.%s.state", cfg->instance, stage);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Without --state-dir the sinks' state lasts one run: a clean stop
 * removes it, and a start removes what a run that died left. What a
 * --state-dir holds is kept. */
static void
unlink_state(const struct sup_config *cfg, const char *stage, int stale)
{
	if (cfg->state_dir != NULL)
		return;
	{
		char path[PATH_MAX], other[PATH_MAX + 8];
		if (sup_state_path(cfg, stage, path, sizeof(path)) == -1)
			return;
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

/* The instance lock: a write lock (fcntl, classic) on
 * /dev/shm/telem.<instance>.lock, a file beside the shm objects that every
 * user and every environment sees, as the IPC names themselves are global.
 * A folder per user or per $XDG_RUNTIME_DIR would let a second supervisor
 * of the same instance take a lock of its own and remove live queues.
 *
 * Classic locks report the holder's pid (F_GETLK), which the refusal
 * names. They belong to this process: closing any descriptor of the file
 * here would drop the lock, so the file is opened once, and a child's
 * close of its inherited copy does not touch it.
 *
 * Removal on a clean stop: the file is unlinked while still locked, then
 * closed. Another supervisor may have opened the old file just before the
 * unlink and get its lock just after our close; so whoever locks checks
 * that the path still names the file it locked, and starts over if not.
 * Only one file can be at the path, and only one process can hold its
 * lock, so at most one supervisor holds "the" lock at any time. A file
 * left by a killed supervisor is unlocked (the kernel drops the lock with
 * the process) and is simply taken over. */
#define SHM_DIR "/dev/shm"   /* where glibc keeps shm_open's objects */

static void
lock_path(const struct sup *s, char *path, size_t cap)
{
	snprintf(path, cap, SHM_DIR "/telem.%s.lock", s->cfg.instance);
}

/* The uid a running process has, or the file's owner if /proc cannot tell
 * (a holder in another pid namespace shows as pid 0). */
static unsigned
holder_uid(pid_t pid, const struct stat *file)
{
	char proc[32];
	struct stat st;
	snprintf(proc, sizeof(proc), "/proc/%d", (int)pid);
	if (pid > 0 && stat(proc, &st) == 0)
		return (unsigned)st.st_uid;
	return (unsigned)file->st_uid;
}

/* Our fd's file is the one at path now. 1 yes, 0 no (start over), -1 on
 * an error (logged). */
static int
still_there(int fd, const char *path)
{
	struct stat a, b;
	if (fstat(fd, &a) == -1) {
		log_warn("fstat %s", path);
		return -1;
	}
	if (lstat(path, &b) == -1) {
		if (errno == ENOENT)
			return 0;
		log_warn("stat %s", path);
		return -1;
	}
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int
lock_once(struct sup *s, const char *path)
{
	struct stat st;
	/* Open what is there, else create it: O_CREAT on another user's
	 * file in sticky /dev/shm fails even for root where
	 * fs.protected_regular is set, and root may take over a stale one. */
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1 && errno == ENOENT) {
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0600);
		if (fd == -1 && errno == EEXIST)
			return 0;  /* made meanwhile: start over */
	}
	if (fd == -1) {
		/* Another user's lock, 0600: whoever made it may be running,
		 * and its objects are not ours to remove either way. */
		if (errno == EACCES && lstat(path, &st) == 0 &&
		    st.st_uid != geteuid()) {
			log_warnx("instance '%s' is in use by uid %u (lock %s is "
			    "theirs; choose another instance with -i)",
			    s->cfg.instance, (unsigned)st.st_uid, path);
			return -1;
		}
		log_warn("open %s", path);
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		log_warn("fstat %s", path);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		log_warnx("%s is not a regular file, so not a telem lock: remove "
		    "it or choose another instance", path);
		close(fd);
		return -1;
	}
	/* Another user's file that we could open all the same (its mode lets
	 * us): its owner may remove or replace it at any time, so a lock on
	 * it proves nothing. Only root, who may clean up after anyone, takes
	 * such a file over (below: when nobody holds it). */
	if (st.st_uid != geteuid() && geteuid() != 0) {
		log_warnx("instance '%s' is in use by uid %u (lock %s is theirs; "
		    "choose another instance with -i)", s->cfg.instance,
		    (unsigned)st.st_uid, path);
		close(fd);
		return -1;
	}
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_SETLK, &fl) == -1) {
		if (errno != EAGAIN && errno != EACCES) {
			log_warn("lock %s", path);
			close(fd);
			return -1;
		}
		fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET };
		if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
			log_warnx("instance '%s' is already run by another supervisor "
			    "(pid %d, uid %u; lock %s held): nothing removed",
			    s->cfg.instance, (int)fl.l_pid,
			    holder_uid(fl.l_pid, &st), path);
		else
			log_warnx("instance '%s' is already run by another supervisor "
			    "(lock %s held): nothing removed", s->cfg.instance, path);
		close(fd);
		return -1;
	}
	int r = still_there(fd, path);
	if (r != 1) {
		close(fd);  /* drops the lock of the file that was unlinked */
		return r == 0 ? 0 : -1;
	}
	/* The umask may have taken bits from 0600; one of ours only (root
	 * taking over another user's stale file leaves its mode alone). */
	if (st.st_uid == geteuid() && (st.st_mode & 0777) != 0600 &&
	    fchmod(fd, 0600) == -1)
		log_warn("chmod 0600 %s", path);
	s->lockfd = fd;
	return 1;
}

/* Earlier versions kept an flock'ed <instance>.lock in the control folder,
 * one per instance ever run. Remove those nobody holds. */
static void
remove_old_locks(void)
{
	char dir[512], path[1024];
	if (ctl_dir(dir, sizeof(dir), 0) == -1)
		return;
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 6 || strcmp(e->d_name + n - 5, ".lock") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd == -1)
			continue;
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_uid == geteuid() && flock(fd, LOCK_EX | LOCK_NB) == 0)
			unlink(path);
		close(fd);
	}
	closedir(d);
}

static int
take_lock(struct sup *s)
{
	char path[600];
	lock_path(s, path, sizeof(path));
	/* Each retry means another supervisor removed the file between our
	 * open and our lock: a handful at most, unless one races us for ever. */
	for (int tries = 0; tries < 100; tries++) {
		int r = lock_once(s, path);
		if (r == -1)
			return -1;
		if (r == 1) {
			remove_old_locks();
			return 0;
		}
	}
	log_warnx("lock %s: the file kept being replaced; try again", path);
	return -1;
}

/* Every object a stage of the pipeline may have. */
void
sup_unlink_stage(struct sup *s, const char *name, int stale)
{
	char obj[CHAN_NAME_MAX];
	if (chan_objname(obj, sizeof(obj), s->cfg.instance, name) == 0) {
		if (chan_unlink(CHAN_MQUEUE, obj) == 0 && stale)
			log_info("removed stale mqueue %s", obj);
		if (chan_unlink(CHAN_SHM, obj) == 0 && stale)
			log_info("removed stale shm %s", obj);
	}
	unlink_state(&s->cfg, name, stale);
}

/* Queues and state files of this instance under names the pipeline does
 * not have (a run of another file that died). */
static void
unlink_leftovers(struct sup *s)
{
	static const char *const dirs[] = { "/dev/mqueue", "/dev/shm" };
	char prefix[96];
	int n = snprintf(prefix, sizeof(prefix), "telem.%s.", s->cfg.instance);
	if (n < 0 || (size_t)n >= sizeof(prefix))
		return;
	for (size_t d = 0; d < 2; d++) {
		DIR *dir = opendir(dirs[d]);
		if (dir == NULL)
			continue;
		struct dirent *e;
		while ((e = readdir(dir)) != NULL) {
			if (strncmp(e->d_name, prefix, (size_t)n) != 0)
				continue;
			char stage[64];
			snprintf(stage, sizeof(stage), "%s", e->d_name + n);
			char *dot = strchr(stage, '.');
			if (dot != NULL && strcmp(dot, ".state") != 0 &&
			    strcmp(dot, ".state.tmp") != 0 && strcmp(dot, ".state.bad") != 0)
				continue;
			if (dot != NULL)
				*dot = '\0';
			if (strcmp(stage, "stats") == 0 || strcmp(stage, "lock") == 0 ||
			    strlen(stage) > PIPELINE_NAME_MAX)
				continue;
			sup_unlink_stage(s, stage, 1);
		}
		closedir(dir);
	}
}

/* What this instance's objects are: the stages of the pipeline running,
 * and those a reload removed that are still draining. A crashed run of
 * another pipeline file may have left other names: at the start every
 * queue and state file of the instance goes (we hold the lock). */
void
sup_ipc_unlink_all(struct sup *s, int stale)
{
	char obj[CHAN_NAME_MAX];
	for (int i = 0; i < s->pl.nstage; i++)
		sup_unlink_stage(s, s->pl.stage[i].name, stale);
	for (int i = 0; i < SUP_STAGES; i++)
		if (s->ch[i].name[0] != '\0')
			sup_unlink_stage(s, s->ch[i].name, stale);
	if (stale)
		unlink_leftovers(s);
	if (chan_objname(obj, sizeof(obj), s->cfg.instance, "stats") == 0)
		stats_unlink(obj);
}

/* /dev/shm ran out: say how much it has and how much we wanted, for the
 * object and for the whole instance (its rings and stats segment). */
static void
explain_no_room(const struct sup *s, const char *what, const char *obj,
    size_t need)
{
	struct statvfs vs;
	size_t all = sizeof(struct stats_seg);
	if (s->cfg.chan.kind == CHAN_SHM)
		all += (size_t)pipeline_nqueues(&s->pl) * chan_shm_bytes(&s->cfg.chan);
	if (statvfs(SHM_DIR, &vs) == -1) {
		log_warn("create %s %s: needs %zu bytes; statvfs " SHM_DIR, what,
		    obj, need);
		return;
	}
	log_warnx("create %s %s: " SHM_DIR " has %llu bytes free, needs %zu "
	    "(%zu for the whole instance)", what, obj,
	    (unsigned long long)vs.f_bavail * vs.f_frsize, need, all);
}

/* mq_open says EMFILE both when RLIMIT_MSGQUEUE is spent and when no
 * descriptor is left: 1 if one is left (so it was the budget). Keeps errno. */
static int
fd_free(void)
{
	int e = errno, fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
	if (fd != -1)
		close(fd);
	errno = e;
	return fd != -1;
}

/* A number from /proc/sys (fs.mqueue.*), or `dflt`. */
static long
sysctl_long(const char *path, long dflt)
{
	long v = dflt;
	FILE *f = fopen(path, "re");
	if (f != NULL) {
		if (fscanf(f, "%ld", &v) != 1 || v < 1)
			v = dflt;
		fclose(f);
	}
	return v;
}

/* -t shm with -s and -m beyond what one ring may be (chan_shm_bytes 0):
 * how much /dev/shm that would take, and how much there is. */
static void
explain_ring_too_big(const struct sup *s, const char *obj)
{
	unsigned n = s->cfg.chan.slots ? s->cfg.chan.slots : CHAN_SHM_SLOTS_DEFAULT;
	unsigned long long ring = CHAN_SHM_HDR_SIZE +
	    (unsigned long long)n * CHAN_SHM_STRIDE(s->cfg.chan.msgsize);
	struct statvfs vs;
	char room[96] = "";
	if (statvfs(SHM_DIR, &vs) == 0)
		snprintf(room, sizeof(room), "; " SHM_DIR " has %llu bytes free",
		    (unsigned long long)vs.f_bavail * vs.f_frsize);
	log_warnx("create shm %s: -s %u -m %zu: a ring needs %llu bytes of "
	    SHM_DIR " (%llu for the instance's %zu rings), more than the %zu "
	    "one ring may have%s: use a smaller -s or -m", obj, n,
	    s->cfg.chan.msgsize, ring, ring * (unsigned)pipeline_nqueues(&s->pl),
	    (size_t)pipeline_nqueues(&s->pl),
	    (size_t)1 << 30, room);
}

/* mq_open said EINVAL: -m above fs.mqueue.msgsize_max (what a queue's
 * message may be without CAP_SYS_RESOURCE) is the case a user meets. */
static void
explain_mq_invalid(const struct sup *s, const char *obj)
{
	long max = sysctl_long("/proc/sys/fs/mqueue/msgsize_max", 8192);
	if ((long)s->cfg.chan.msgsize > max)
		log_warnx("create mqueue %s: -m %zu is more than "
		    "fs.mqueue.msgsize_max (%ld): use -m %ld or less, -t shm, or "
		    "raise it as root: sysctl -w fs.mqueue.msgsize_max=%zu", obj,
		    s->cfg.chan.msgsize, max, max, s->cfg.chan.msgsize);
	else
		log_warn("create mqueue %s", obj);
}

/* mq_open said EMFILE/ENOSPC with descriptors to spare: the user's
 * RLIMIT_MSGQUEUE. Say the limit, what one queue of ours needs and what
 * the nq queues of the pipeline being made need, and what the user's
 * queues use - this instance's apart from the others, so that a limit
 * too small for even one queue is not blamed on anyone else. */
static void
explain_mq_budget(const struct sup *s, const char *obj, int nq)
{
	struct rlimit rl;
	char limit[32] = "unknown", use[256];
	if (getrlimit(RLIMIT_MSGQUEUE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		snprintf(limit, sizeof(limit), "%llu", (unsigned long long)rl.rlim_cur);
	long maxmsg = sysctl_long("/proc/sys/fs/mqueue/msg_max", 10);
	uint64_t one = pipeline_mq_charge(maxmsg, (long)s->cfg.chan.msgsize);
	uint64_t ours = 0, all = 0;
	int nours = 0, nall = 0, unknown = 0;
	char prefix[CHAN_NAME_MAX + 2];
	snprintf(prefix, sizeof(prefix), "telem.%s.", s->cfg.instance);
	if (pipeline_mq_usage("/dev/mqueue", geteuid(), prefix, &ours, &nours,
	    &unknown) == -1 ||
	    pipeline_mq_usage("/dev/mqueue", geteuid(), NULL, &all, &nall,
	    &unknown) == -1)
		snprintf(use, sizeof(use), "what this user's queues use is not "
		    "known (/dev/mqueue: %s)", strerror(errno));
	else if (nall > nours)
		snprintf(use, sizeof(use), "this instance's %d queue(s) use %llu and "
		    "%d other queue(s) of this user use %llu (see /dev/mqueue)",
		    nours, (unsigned long long)ours, nall - nours,
		    (unsigned long long)(all - ours));
	else
		snprintf(use, sizeof(use), "this instance's %d queue(s) use %llu, "
		    "and this user has no other", nours, (unsigned long long)ours);
	log_warnx("create mqueue %s: RLIMIT_MSGQUEUE is %s bytes; one queue of "
	    "%ld messages of %zu bytes needs %llu (%zu queues: %llu); %s: use a "
	    "smaller -m, raise the limit (ulimit -q), or use -t shm", obj, limit,
	    maxmsg, s->cfg.chan.msgsize, (unsigned long long)one,
	    (size_t)nq, (unsigned long long)one * (unsigned)nq, use);
}

static void
explain_create(const struct sup *s, const char *obj, int nq)
{
	int e = errno;
	if (s->cfg.chan.kind == CHAN_SHM && e == ENOSPC)
		explain_no_room(s, "shm", obj, chan_shm_bytes(&s->cfg.chan));
	else if (s->cfg.chan.kind == CHAN_SHM && e == EINVAL &&
	    chan_shm_bytes(&s->cfg.chan) == 0)
		explain_ring_too_big(s, obj);
	else if (s->cfg.chan.kind == CHAN_MQUEUE && e == EINVAL)
		explain_mq_invalid(s, obj);
	else if (s->cfg.chan.kind == CHAN_MQUEUE && e == EMFILE && !fd_free())
		log_warn("create mqueue %s", obj);  /* RLIMIT_NOFILE, said */
	else if (s->cfg.chan.kind == CHAN_MQUEUE && (e == EMFILE || e == ENOSPC))
		explain_mq_budget(s, obj, nq);
	else
		log_warn("create %s %s", chan_kind_name(s->cfg.chan.kind), obj);
}

int
sup_queue_create(struct sup *s, const char *name, int nq)
{
	char obj[CHAN_NAME_MAX];
	if (chan_objname(obj, sizeof(obj), s->cfg.instance, name) == -1) {
		log_warnx("queue name of stage %s in instance '%s' is too long",
		    name, s->cfg.instance);
		return -1;
	}
	if (chan_create(&s->cfg.chan, obj) == -1) {
		explain_create(s, obj, nq);
		return -1;
	}
	return 0;
}

int
sup_queue_unlink(struct sup *s, const char *name)
{
	char obj[CHAN_NAME_MAX];
	if (chan_objname(obj, sizeof(obj), s->cfg.instance, name) == -1)
		return -1;
	if (chan_unlink(s->cfg.chan.kind, obj) == -1) {
		log_warn("remove %s %s", chan_kind_name(s->cfg.chan.kind), obj);
		return -1;
	}
	return 0;
}

int
sup_open_inq(struct sup *s, struct sup_child *c)
{
	char obj[CHAN_NAME_MAX];
	if (chan_objname(obj, sizeof(obj), s->cfg.instance, c->in_queue) == -1 ||
	    (c->inq = chan_open(s->cfg.chan.kind, obj, CHAN_WRITE)) == NULL) {
		log_warn("open %s", obj);
		return -1;
	}
	return 0;
}


/* msg_bytes: as given, or (auto) what the user's budget leaves room for,
 * said in the start log. Called with the stale queues gone. */
static int
settle_msg_bytes(struct sup *s)
{
	char why[PIPELINE_ERR_MAX];
	if (s->pl.msg_bytes != PIPELINE_MSG_AUTO) {
		s->cfg.chan.msgsize = s->pl.msg_bytes;
		return 0;
	}
	size_t m = pipeline_msg_bytes(&s->pl, "/dev/mqueue", why, sizeof(why));
	if (m == 0) {
		log_warnx("%s", why);
		return -1;
	}
	/* Said once the sockets are bound (main.c): a bad -H stays one line. */
	snprintf(s->msg_why, sizeof(s->msg_why), "%s", why);
	s->cfg.chan.msgsize = m;
	return 0;
}

/* The folder itself is locked too, with flock: DIR/lock can be removed
 * while we run (a clean-up of the folder's files), and a second
 * supervisor would then lock a new one, but no removal of a file takes
 * the folder's lock away. A file system that cannot flock a folder
 * leaves DIR/lock alone to guard it. */
static int
lock_state_folder(struct sup *s)
{
	int fd = open(s->cfg.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1) {
		log_warn("open --state-dir %s", s->cfg.state_dir);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		s->statedirfd = fd;
		return 0;
	}
	int e = errno;
	close(fd);
	if (e == EWOULDBLOCK) {
		log_warnx("--state-dir %s is used by another supervisor (the "
		    "folder is locked; %s/lock was removed while it ran): give "
		    "each instance a folder of its own", s->cfg.state_dir,
		    s->cfg.state_dir);
		return -1;
	}
	errno = e;
	log_warn("flock --state-dir %s (%s/lock alone guards it)",
	    s->cfg.state_dir, s->cfg.state_dir);
	return 0;
}

/* --state-dir: one supervisor at a time. DIR/STAGE.state names no
 * instance, so two instances given one folder would each load the other's
 * files and save over them. A classic write lock on DIR/lock, held while
 * we run (the kernel drops it if we are killed). The file is left in
 * place: removing it would race a newcomer's open (see take_lock) for
 * nothing, as nobody holds it then. */
static int
lock_state_dir(struct sup *s)
{
	char path[PATH_MAX + 8];
	if (s->cfg.state_dir == NULL)
		return 0;
	snprintf(path, sizeof(path), "%s/lock", s->cfg.state_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1) {
		log_warn("open %s", path);
		return -1;
	}
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_SETLK, &fl) == 0) {
		s->statelockfd = fd;
		return lock_state_folder(s);
	}
	if (errno != EAGAIN && errno != EACCES) {
		log_warn("lock %s", path);
	} else {
		fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET };
		if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
			log_warnx("--state-dir %s is used by another supervisor (pid "
			    "%d; lock %s held): give each instance a folder of its "
			    "own", s->cfg.state_dir, (int)fl.l_pid, path);
		else
			log_warnx("--state-dir %s is used by another supervisor (lock "
			    "%s held): give each instance a folder of its own",
			    s->cfg.state_dir, path);
	}
	close(fd);
	return -1;
}

int
sup_ipc_setup(struct sup *s)
{
	char obj[CHAN_NAME_MAX];
	if (take_lock(s) == -1 || lock_state_dir(s) == -1)
		return -1;
	/* We hold the lock, so whatever carries this instance's name is left
	 * over from a run that died: remove it before creating ours. */
	sup_ipc_unlink_all(s, 1);
	if (settle_msg_bytes(s) == -1)
		return -1;
	for (int i = 0; i < s->pl.nstage; i++)
		if (s->pl.stage[i].in_queue &&
		    sup_queue_create(s, s->pl.stage[i].name,
		    pipeline_nqueues(&s->pl)) == -1)
			return -1;
	if (chan_objname(obj, sizeof(obj), s->cfg.instance, "stats") == -1 ||
	    (s->stats = stats_create(obj)) == NULL) {
		if (errno == ENOSPC)
			explain_no_room(s, "stats segment", obj,
			    sizeof(struct stats_seg));
		else
			log_warn("create stats segment %s", obj);
		return -1;
	}
	return 0;
}

void
sup_ipc_teardown(struct sup *s)
{
	for (int i = 0; i < SUP_STAGES; i++) {
		chan_close(s->ch[i].inq);
		s->ch[i].inq = NULL;
		sup_listen_close(&s->ch[i]);
	}
	stats_detach(s->stats);
	s->stats = NULL;
	if (s->lockfd != -1) {
		char path[600];
		sup_ipc_unlink_all(s, 0);
		/* Unlinked while locked, then closed (see take_lock). */
		lock_path(s, path, sizeof(path));
		if (unlink(path) == -1 && errno != ENOENT)
			log_warn("remove %s", path);
		close(s->lockfd);
		s->lockfd = -1;
	}
	if (s->statelockfd != -1) {
		close(s->statelockfd);
		s->statelockfd = -1;
	}
	if (s->statedirfd != -1) {
		close(s->statedirfd);
		s->statedirfd = -1;
	}
}

int
sup_send_record(struct sup *s, const char *queue, uint8_t type,
    uint32_t flush_ms, int timeout_ms)
{
	char obj[CHAN_NAME_MAX];
	unsigned char buf[WIRE_HDR + WIRE_REC_HDR];
	struct wire_writer w;
	wire_writer_init(&w, buf, sizeof(buf));
	/* A Flush carries the interval (docs/design.md §14): statsd's rates
	 * divide by it. */
	wire_put(&w, type, NULL, 0, type == WIRE_FLUSH ? flush_ms : 0);
	size_t len = wire_finish(&w);

	/* The flush stages' queues stay open for the Flush ticks; others are
	 * written only to stop their reader and opened for it. */
	for (int i = 0; i < SUP_STAGES; i++)
		if (s->ch[i].inq != NULL && strcmp(s->ch[i].in_queue, queue) == 0)
			return chan_send(s->ch[i].inq, buf, len, timeout_ms);
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
