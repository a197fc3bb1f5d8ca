/* chan_mq.c - the POSIX message queue transport. One message of the wire
 * format is one mqueue message; the kernel does the blocking, ordering and
 * the many-writers case for us. Visible in /dev/mqueue when mounted. */
#include "chan_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "wire.h"

struct chan_mq {
	struct chan base;
	mqd_t mq;
	/* A reader's second descriptor, O_NONBLOCK, that every receive
	 * takes from (mq_recv says why). */
	mqd_t nb;
};

/* The most messages an unprivileged process may ask for: msg_max (10 by
 * default). Larger queues need CAP_SYS_RESOURCE, which we do not assume. */
static long
sys_msg_max(void)
{
	long v = 10;
	FILE *f = fopen("/proc/sys/fs/mqueue/msg_max", "r");
	if (f != NULL) {
		if (fscanf(f, "%ld", &v) != 1 || v < 1)
			v = 10;
		fclose(f);
	}
	return v;
}

static int
mq_create(const struct chan_attr *attr, const char *objname)
{
	struct mq_attr ma = { .mq_maxmsg = sys_msg_max(),
	    .mq_msgsize = (long)attr->msgsize };
	mqd_t mq = mq_open(objname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &ma);
	if (mq == (mqd_t)-1 && errno == EINVAL && ma.mq_maxmsg > 10) {
		ma.mq_maxmsg = 10;
		mq = mq_open(objname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &ma);
	}
	if (mq == (mqd_t)-1)
		return -1;
	mq_close(mq);
	return 0;
}

static int
mq_remove(const char *objname)
{
	return mq_unlink(objname);
}

static struct chan *
mq_attach(const char *objname, int mode)
{
	int flags = mode == (CHAN_READ | CHAN_WRITE) ? O_RDWR :
	    mode == CHAN_WRITE ? O_WRONLY : O_RDONLY;
	struct chan_mq *c = malloc(sizeof(*c));
	if (c == NULL)
		return NULL;
	c->mq = mq_open(objname, flags | O_CLOEXEC);
	if (c->mq == (mqd_t)-1) {
		int e = errno;
		free(c);
		errno = e;
		return NULL;
	}
	c->nb = (mqd_t)-1;
	if (mode & CHAN_READ)
		c->nb = mq_open(objname, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct mq_attr ma;
	int e = 0;
	if (((mode & CHAN_READ) && c->nb == (mqd_t)-1) ||
	    mq_getattr(c->mq, &ma) == -1) {
		e = errno;
	} else if (ma.mq_msgsize < WIRE_MSG_MIN || ma.mq_msgsize > WIRE_MSG_MAX) {
		/* Not a queue chan_create made (it keeps to the wire's sizes,
		 * as a ring's header must, chan_shm.c): a record that does not
		 * fit its messages would be held by the writer, booked nowhere. */
		chan_why("its messages are %ld bytes, not %d..%d", ma.mq_msgsize,
		    WIRE_MSG_MIN, WIRE_MSG_MAX);
		e = EPROTO;
	}
	if (e != 0) {
		if (c->nb != (mqd_t)-1)
			mq_close(c->nb);
		mq_close(c->mq);
		free(c);
		errno = e;
		return NULL;
	}
	c->base.ops = &chan_mq_ops;
	c->base.msgsize = (size_t)ma.mq_msgsize;
	c->base.capacity = (size_t)ma.mq_maxmsg;
	return &c->base;
}

static void
mq_detach(struct chan *base)
{
	struct chan_mq *c = (struct chan_mq *)base;
	if (c->nb != (mqd_t)-1)
		mq_close(c->nb);
	mq_close(c->mq);
	free(c);
}

/* A reader never sleeps in mq_receive: the kernel hands a message to a
 * receiver asleep there at the send, and one killed before it runs again
 * takes it along, out of the queue and out of every count (a carbon
 * sink's lines, egress/sink_carbon_main.c; tests/test_chan.c
 * a_reader_killed_while_waiting_leaves_the_message_queued). It waits in
 * poll (on Linux an mqd_t is a descriptor) and then takes the message
 * with a receive that does not wait, so a kill in the wait leaves the
 * message queued for the next reader. A message already there is taken
 * at once, without a poll first: under load a stage comes back from its
 * gather (common/stage.c) to a queue that holds some, where a poll
 * before each receive would be a second system call for nothing. */
static ssize_t
mq_recv(struct chan *base, void *buf, size_t cap, int timeout_ms)
{
	struct chan_mq *c = (struct chan_mq *)base;
	ssize_t n;
	for (int polled = 0;; polled = 1) {
		n = mq_receive(c->nb, buf, cap, NULL);
		if (n != -1 || errno != EAGAIN)
			break;
		/* Empty; or taken since poll saw it (not with one reader):
		 * as a timeout, unless the wait has no limit. */
		if (timeout_ms == 0 || (polled && timeout_ms > 0))
			return 0;
		struct pollfd p = { .fd = (int)c->nb, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms);
		if (r <= 0)
			return r;  /* 0: timeout; -1: errno (EINTR) */
	}
	/* mq_send takes empty messages, which would read as a timeout. */
	if (n == 0) {
		errno = EBADMSG;
		return -1;
	}
	return n;
}

static int
mq_send_msg(struct chan *base, const void *msg, size_t len, int timeout_ms)
{
	struct chan_mq *c = (struct chan_mq *)base;
	if (timeout_ms < 0)
		return mq_send(c->mq, msg, len, 0);
	struct timespec ts = clock_realtime_after(timeout_ms);
	if (mq_timedsend(c->mq, msg, len, 0, &ts) == 0)
		return 0;
	return errno == ETIMEDOUT ? 1 : -1;
}

static long
mq_depth(struct chan *base)
{
	struct chan_mq *c = (struct chan_mq *)base;
	struct mq_attr ma;
	if (mq_getattr(c->mq, &ma) == -1)
		return -1;
	return ma.mq_curmsgs;
}

const struct chan_ops chan_mq_ops = {
	.create = mq_create,
	.unlink = mq_remove,
	.open = mq_attach,
	.close = mq_detach,
	.recv = mq_recv,
	.send = mq_send_msg,
	.depth = mq_depth,
};
