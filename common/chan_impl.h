/* chan_impl.h - what a channel implementation provides to chan.c. Private
 * to common/: stages use chan.h only. */
#ifndef TELEM_CHAN_IMPL_H
#define TELEM_CHAN_IMPL_H

#include "chan.h"

struct chan_ops {
	int (*create)(const struct chan_attr *attr, const char *objname);
	int (*unlink)(const char *objname);
	struct chan *(*open)(const char *objname, int mode);
	void (*close)(struct chan *c);
	ssize_t (*recv)(struct chan *c, void *buf, size_t cap, int timeout_ms);
	int (*send)(struct chan *c, const void *msg, size_t len, int timeout_ms);
	long (*depth)(struct chan *c);
};

/* Every implementation's handle starts with this. */
struct chan {
	const struct chan_ops *ops;
	size_t msgsize;
	size_t capacity;   /* messages it holds when full */
};

/* An open refusing an object with EPROTO says why (chan_open_why). */
void chan_why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

extern const struct chan_ops chan_mq_ops;
extern const struct chan_ops chan_shm_ops;

#endif
