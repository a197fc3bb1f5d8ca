/* chan.h - the one channel interface between stages (docs/design.md §6),
 * with two implementations: POSIX message queues (chan_mq.c) and a
 * shared-memory ring guarded by a process-shared robust mutex (chan_shm.c).
 *
 * A channel carries whole messages of at most chan_msgsize() bytes, in
 * order, from any number of writers to one reader. A full channel blocks the
 * writer (backpressure); nothing is dropped here. Object names are
 * "/telem.<instance>.<queue>", created mode 0600. */
#ifndef TELEM_CHAN_H
#define TELEM_CHAN_H

#include <stddef.h>
#include <sys/types.h>

enum chan_kind { CHAN_MQUEUE, CHAN_SHM };

enum { CHAN_READ = 1, CHAN_WRITE = 2 };

#define CHAN_NAME_MAX 256
/* A ring's slots by default. A reader of a ring deeper than an mqueue
 * (msg_max 10) naps longer (common/stage.c): 24 slots took 6-10 % off the
 * CPU of the built-in pipeline at 3.2M events/s in interleaved runs, and
 * 32 little more (README, Performance, "Fewer wake-ups"); 96, with naps
 * four times as long, take some 10 % more (README, "Deeper rings"). 24
 * slots of 8 KiB are 192 KiB of /dev/shm per ring, resident in the stages
 * that touch it (the ckms egress's peak RSS, the largest, is 3.9 MB); 96
 * put the ckms egress at 4.3-4.5 MB and ingest at 4.0, so they are for
 * those who choose them (-s 96). */
#define CHAN_SHM_SLOTS_DEFAULT 24

struct chan_attr {
	enum chan_kind kind;
	size_t msgsize;   /* bytes per message, WIRE_MSG_MIN..WIRE_MSG_MAX */
	unsigned slots;   /* shm: ring capacity; mqueue: ignored (system max) */
};

struct chan;

/* "mqueue" or "shm" -> kind. Returns 0, or -1 for anything else. */
int chan_kind_parse(const char *s, enum chan_kind *kind);
const char *chan_kind_name(enum chan_kind kind);

/* An instance name every program takes (-i): 1..CHAN_INSTANCE_MAX of
 * [A-Za-z0-9_.-], never "..", so that it names objects and a control
 * socket and never a path elsewhere ("../../etc"), and not starting with
 * '-', so that an option given after a bare -i ("-i --print-pipeline") is
 * refused, not taken as the name. 1 if so, else 0. */
#define CHAN_INSTANCE_MAX 64
#define CHAN_INSTANCE_RULE "1..64 characters of A-Z a-z 0-9 _ . - without '..', " \
	"not starting with '-'"
int chan_instance_ok(const char *name);

/* Build "/telem.<instance>.<queue>" into buf. Returns 0, or -1 (EINVAL) if
 * it does not fit or a part is empty or holds a '/'. */
int chan_objname(char *buf, size_t cap, const char *instance, const char *queue);

/* Create the object, mode 0600, failing with EEXIST if it exists.
 * Returns 0 or -1 with errno set; nothing is left behind on failure. */
int chan_create(const struct chan_attr *attr, const char *objname);
/* Remove the object. Returns 0, or -1 with errno (ENOENT if absent). */
int chan_unlink(enum chan_kind kind, const char *objname);

/* Open an existing channel for CHAN_READ and/or CHAN_WRITE. Returns a handle
 * the caller frees with chan_close, or NULL with errno set: EPROTO for what
 * no chan_create made, a shm segment of another version or size, or a
 * queue whose messages are not WIRE_MSG_MIN..WIRE_MSG_MAX bytes (one of
 * another program's, say, at the name). */
struct chan *chan_open(enum chan_kind kind, const char *objname, int mode);
/* After chan_open failed with EPROTO in this thread: what was found, with
 * its size and the size a channel has, for the caller's line ("its messages
 * are 64 bytes, not 1024..1048576"), or "" when there is nothing to add. */
const char *chan_open_why(void);
void chan_close(struct chan *c);

size_t chan_msgsize(const struct chan *c);
/* How many messages the channel holds when full (mq_maxmsg, or the ring's
 * slot count). */
size_t chan_capacity(const struct chan *c);

/* Receive one message into buf (cap >= chan_msgsize). Waits up to
 * timeout_ms (< 0: no limit). Returns its length (> 0), 0 on timeout, or -1
 * with errno (EINTR when a signal arrived; EBADMSG when a message that
 * cannot be one was taken off the channel and dropped -- an empty mqueue
 * message, a shm slot that fails its checks -- so the caller counts it and
 * goes on). */
ssize_t chan_recv(struct chan *c, void *buf, size_t cap, int timeout_ms);

/* Send one message of len bytes (1..chan_msgsize). Waits up to timeout_ms
 * for room (< 0: no limit). Returns 0 once it is queued whole, 1 on timeout
 * (nothing queued), or -1 with errno (EINTR when a signal arrived).
 * With a limit, neither call hangs on a shm ring whose lock a stopped
 * process holds: that is a timeout 100 ms past the limit (chan_shm.c). */
int chan_send(struct chan *c, const void *msg, size_t len, int timeout_ms);

/* Messages now waiting, or -1 with errno. */
long chan_depth(struct chan *c);

#endif
