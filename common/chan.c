/* chan.c - dispatch of the channel interface to its two transports. */
#include "chan_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "wire.h"

static const struct chan_ops *
ops_of(enum chan_kind kind)
{
	return kind == CHAN_SHM ? &chan_shm_ops : &chan_mq_ops;
}

int
chan_kind_parse(const char *s, enum chan_kind *kind)
{
	if (strcmp(s, "mqueue") == 0)
		*kind = CHAN_MQUEUE;
	else if (strcmp(s, "shm") == 0)
		*kind = CHAN_SHM;
	else
		return -1;
	return 0;
}

const char *
chan_kind_name(enum chan_kind kind)
{
	return kind == CHAN_SHM ? "shm" : "mqueue";
}

int
chan_instance_ok(const char *name)
{
	size_t n = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789_.-");
	return n > 0 && n <= CHAN_INSTANCE_MAX && name[n] == '\0' &&
	    name[0] != '-' && strstr(name, "..") == NULL;
}

int
chan_objname(char *buf, size_t cap, const char *instance, const char *queue)
{
	if (*instance == '\0' || *queue == '\0' || strchr(instance, '/') ||
	    strchr(queue, '/')) {
		errno = EINVAL;
		return -1;
	}
	int n = snprintf(buf, cap, "/telem.%s.%s", instance, queue);
	if (n < 0 || (size_t)n >= cap || n > 255) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

int
chan_create(const struct chan_attr *attr, const char *objname)
{
	if (attr->msgsize < WIRE_MSG_MIN || attr->msgsize > WIRE_MSG_MAX) {
		errno = EINVAL;
		return -1;
	}
	return ops_of(attr->kind)->create(attr, objname);
}

int
chan_unlink(enum chan_kind kind, const char *objname)
{
	return ops_of(kind)->unlink(objname);
}

/* What the last chan_open of this thread refused, in words. */
static _Thread_local char open_why[128];

void
chan_why(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(open_why, sizeof(open_why), fmt, ap);
	va_end(ap);
}

struct chan *
chan_open(enum chan_kind kind, const char *objname, int mode)
{
	open_why[0] = '\0';
	return ops_of(kind)->open(objname, mode);
}

const char *
chan_open_why(void)
{
	return open_why;
}

void
chan_close(struct chan *c)
{
	if (c != NULL)
		c->ops->close(c);
}

size_t
chan_msgsize(const struct chan *c)
{
	return c->msgsize;
}

size_t
chan_capacity(const struct chan *c)
{
	return c->capacity;
}

ssize_t
chan_recv(struct chan *c, void *buf, size_t cap, int timeout_ms)
{
	if (cap < c->msgsize) {
		errno = EMSGSIZE;
		return -1;
	}
	return c->ops->recv(c, buf, cap, timeout_ms);
}

int
chan_send(struct chan *c, const void *msg, size_t len, int timeout_ms)
{
	if (len == 0 || len > c->msgsize) {
		errno = EMSGSIZE;
		return -1;
	}
	return c->ops->send(c, msg, len, timeout_ms);
}

long
chan_depth(struct chan *c)
{
	return c->ops->depth(c);
}
