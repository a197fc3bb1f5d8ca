/* pipeline_mq.c - msg_bytes = auto: how big a message every queue of the
 * pipeline can have within what is left of the user's RLIMIT_MSGQUEUE
 * budget, and how much of it the user's queues already use. */
#include "supervisor/pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <mqueue.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* What Linux charges a user for one queue, from ipc/mqueue.c
 * (mqueue_get_inode, and mqueue_evict_inode gives it back):
 *
 *   mq_treesize = mq_maxmsg * sizeof(struct msg_msg) +
 *                 min(mq_maxmsg, MQ_PRIO_MAX) * sizeof(struct posix_msg_tree_node)
 *   mq_bytes    = mq_maxmsg * mq_msgsize + mq_treesize
 *
 * and mq_open fails with EMFILE when the user's total would pass
 * RLIMIT_MSGQUEUE. MQ_PRIO_MAX is 32768. struct msg_msg is a list_head,
 * a long, a size_t and two pointers; struct posix_msg_tree_node an
 * rb_node (three words), a list_head and an int: six words each, 48 bytes
 * on a 64-bit kernel, 24 on a 32-bit one. The same formula is in
 * getrlimit(2) under RLIMIT_MSGQUEUE. Measured on Linux 6.18 (x86_64):
 * 10 x 8192 needs exactly 82880 bytes, 10 x 512 exactly 6080, 1 x 504
 * exactly 600. */
#define KERNEL_MQ_PRIO_MAX 32768
#define MSG_MSG_BYTES (6 * sizeof(void *))
#define TREE_NODE_BYTES (6 * sizeof(void *))

uint64_t
pipeline_mq_charge(long maxmsg, long msgsize)
{
	if (maxmsg <= 0 || msgsize <= 0)
		return 0;
	uint64_t m = (uint64_t)maxmsg;
	uint64_t nodes = m < KERNEL_MQ_PRIO_MAX ? m : KERNEL_MQ_PRIO_MAX;
	return m * (uint64_t)msgsize + m * MSG_MSG_BYTES + nodes * TREE_NODE_BYTES;
}

size_t
pipeline_auto_msg_bytes(int nqueues, long maxmsg, uint64_t limit,
    uint64_t in_use, char *why, size_t whycap)
{
	uint64_t avail = limit == RLIM_INFINITY ? UINT64_MAX
	    : limit > in_use ? limit - in_use : 0;
	uint64_t want = (uint64_t)nqueues * pipeline_mq_charge(maxmsg,
	    PIPELINE_MSG_PREFERRED);
	if (nqueues <= 0 || maxmsg <= 0 || limit == RLIM_INFINITY || want <= avail) {
		if (limit == RLIM_INFINITY)
			snprintf(why, whycap, "msg_bytes %d: RLIMIT_MSGQUEUE is "
			    "unlimited", PIPELINE_MSG_PREFERRED);
		else
			snprintf(why, whycap, "msg_bytes %d: %d queues of %ld messages "
			    "need %" PRIu64 " bytes of RLIMIT_MSGQUEUE; limit %" PRIu64
			    ", in use %" PRIu64, PIPELINE_MSG_PREFERRED, nqueues, maxmsg,
			    want, limit, in_use);
		return PIPELINE_MSG_PREFERRED;
	}
	/* The largest s with nqueues * charge(maxmsg, s) <= avail. */
	uint64_t per_queue = avail / (uint64_t)nqueues;
	uint64_t fixed = pipeline_mq_charge(maxmsg, 1) - (uint64_t)maxmsg;
	uint64_t s = per_queue > fixed ? (per_queue - fixed) / (uint64_t)maxmsg : 0;
	if (s >= PIPELINE_MSG_MIN) {
		snprintf(why, whycap, "msg_bytes %" PRIu64 ": %d would need %" PRIu64
		    " bytes of RLIMIT_MSGQUEUE for %d queues of %ld messages; limit %"
		    PRIu64 ", in use %" PRIu64 " (other queues of this user)", s,
		    PIPELINE_MSG_PREFERRED, want, nqueues, maxmsg, limit, in_use);
		return (size_t)s;
	}
	uint64_t need = (uint64_t)nqueues * pipeline_mq_charge(maxmsg,
	    PIPELINE_MSG_MIN);
	snprintf(why, whycap, "msg_bytes = auto: %d queues of %ld messages of %d "
	    "bytes need %" PRIu64 " bytes of RLIMIT_MSGQUEUE; limit %" PRIu64
	    ", in use %" PRIu64 "; remove unused queues in /dev/mqueue, raise the "
	    "limit (ulimit -q), or use the shm transport (-t shm, transport = shm)",
	    nqueues, maxmsg, PIPELINE_MSG_MIN, need, limit, in_use);
	return 0;
}

/* One queue's charge, from its attributes. Opening a queue does not
 * change it. -1 if it cannot be opened. */
static int
charge_of(const char *name, uint64_t *bytes)
{
	char obj[NAME_MAX + 2];
	snprintf(obj, sizeof(obj), "/%s", name);
	mqd_t q = mq_open(obj, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (q == (mqd_t)-1)
		q = mq_open(obj, O_WRONLY | O_CLOEXEC | O_NONBLOCK);
	if (q == (mqd_t)-1)
		return -1;
	struct mq_attr a;
	int rc = mq_getattr(q, &a);
	mq_close(q);
	if (rc == -1)
		return -1;
	*bytes = pipeline_mq_charge(a.mq_maxmsg, a.mq_msgsize);
	return 0;
}

int
pipeline_mq_usage(const char *dir, uid_t uid, const char *prefix,
    uint64_t *bytes, int *nqueues, int *unknown)
{
	DIR *d = opendir(dir);
	*bytes = 0;
	*nqueues = 0;
	*unknown = 0;
	if (d == NULL)
		return -1;
	struct dirent *e;
	while ((errno = 0, e = readdir(d)) != NULL) {
		struct stat sb;
		uint64_t b;
		if (e->d_name[0] == '.' ||
		    (prefix != NULL && strncmp(e->d_name, prefix, strlen(prefix)) != 0))
			continue;
		/* Gone since readdir, or not a queue: not charged to anyone. */
		if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == -1 ||
		    !S_ISREG(sb.st_mode) || sb.st_uid != uid)
			continue;
		if (charge_of(e->d_name, &b) == -1) {
			if (errno != ENOENT)
				(*unknown)++;
			continue;
		}
		*bytes += b;
		(*nqueues)++;
	}
	int e_read = errno;
	closedir(d);
	if (e_read != 0) {
		errno = e_read;
		return -1;
	}
	return 0;
}

/* msg_max: what an unprivileged queue may hold (chan_mq.c asks for it). */
static long
sys_msg_max(void)
{
	long v = 10;
	FILE *f = fopen("/proc/sys/fs/mqueue/msg_max", "re");
	if (f != NULL) {
		if (fscanf(f, "%ld", &v) != 1 || v < 1)
			v = 10;
		fclose(f);
	}
	return v;
}

size_t
pipeline_msg_bytes(const struct pipeline *p, const char *mqdir, char *why,
    size_t whycap)
{
	if (p->msg_bytes != PIPELINE_MSG_AUTO) {
		snprintf(why, whycap, "msg_bytes %zu: as the pipeline says",
		    p->msg_bytes);
		return p->msg_bytes;
	}
	if (p->transport != CHAN_MQUEUE) {
		snprintf(why, whycap, "msg_bytes %d: auto, on %s",
		    PIPELINE_MSG_PREFERRED, chan_kind_name(p->transport));
		return PIPELINE_MSG_PREFERRED;
	}
	struct rlimit rl;
	uint64_t in_use = 0;
	int nq = 0, unknown = 0;
	char note[160] = "";
	if (getrlimit(RLIMIT_MSGQUEUE, &rl) == -1)
		rl.rlim_cur = RLIM_INFINITY;
	if (pipeline_mq_usage(mqdir, geteuid(), NULL, &in_use, &nq, &unknown) == -1)
		snprintf(note, sizeof(note), " (the queues in use are not known: "
		    "%s: %s)", mqdir, strerror(errno));
	else if (unknown > 0)
		snprintf(note, sizeof(note), " (and %d queue%s in %s that could not "
		    "be read)", unknown, unknown > 1 ? "s" : "", mqdir);
	size_t n = pipeline_auto_msg_bytes(pipeline_nqueues(p), sys_msg_max(),
	    (uint64_t)rl.rlim_cur, in_use, why, whycap);
	size_t len = strlen(why);
	if (len < whycap)
		snprintf(why + len, whycap - len, "%s", note);
	return n;
}
