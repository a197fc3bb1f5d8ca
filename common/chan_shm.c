/* chan_shm.c - the shared-memory ring transport (docs/design.md §6), under
 * chan.c beside chan_mq.c: a segment holding a header and fixed slots, many writers
 * and one reader serialised by one process-shared robust mutex, sleepers
 * parked on two futex wait queues (not_empty, not_full). Layout: chan_shm.h.
 *
 * Why futex wait queues and not pthread_cond_t: glibc (2.36 here) keeps
 * per-group reference counts inside a condition variable, and a waiter
 * SIGKILLed while asleep in pthread_cond_wait never drops its reference; a
 * later pthread_cond_signal then waits for it forever inside
 * __condvar_quiesce_and_switch_g1, holding our mutex, and the whole
 * pipeline stalls with nobody dead to blame. A stage killed while idle in
 * recv is the common case of a restart, so the ring cannot use them. A wait
 * queue here is a 32-bit sequence word: a sleeper reads it under the lock,
 * drops the lock and FUTEX_WAITs on that value; a waker bumps it under the
 * lock and FUTEX_WAKEs after. A dead sleeper leaves nothing behind. */
#include "chan_impl.h"
#include "chan_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

#define SLICE_NS (100 * 1000000ULL) /* longest sleep: shutdown is noticed */
#define SEG_MAX ((size_t)1 << 30)
#define FOREVER UINT64_MAX

struct chan_shm {
	struct chan base;
	struct chan_shm_hdr *h;
	unsigned char *slots;
	size_t map_size;
	size_t stride;
	int mode;
	uint64_t spin_ns;
};

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t
deadline_after(int timeout_ms)
{
	if (timeout_ms < 0)
		return FOREVER;
	return now_ns() + (uint64_t)timeout_ms * 1000000ULL;
}

static uint64_t
load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void
store(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* Bytes of a segment with n slots of msgsize bytes, or 0 if too large. */
static size_t
seg_size(uint64_t msgsize, uint64_t n)
{
	if (msgsize > WIRE_MSG_MAX || n > CHAN_SHM_SLOTS_MAX)
		return 0;
	size_t size = CHAN_SHM_HDR_SIZE + (size_t)n * CHAN_SHM_STRIDE(msgsize);
	return size > SEG_MAX ? 0 : size;
}

size_t
chan_shm_bytes(const struct chan_attr *attr)
{
	return seg_size(attr->msgsize, attr->slots ? attr->slots :
	    CHAN_SHM_SLOTS_DEFAULT);
}

static struct chan_shm_slot *
slot_at(const struct chan_shm *c, uint64_t pos)
{
	return (struct chan_shm_slot *)(c->slots +
	    (pos % c->base.capacity) * c->stride);
}

/* The wait queues. */

static int
futex_wait_until(uint32_t *word, uint32_t val, uint64_t until_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(until_ns / 1000000000ULL),
	    .tv_nsec = (long)(until_ns % 1000000000ULL) };
	/* WAIT_BITSET takes an absolute CLOCK_MONOTONIC time; no PRIVATE
	 * flag, since the word is shared between processes. */
	if (syscall(SYS_futex, word, FUTEX_WAIT_BITSET, val, &ts, NULL,
	    FUTEX_BITSET_MATCH_ANY) == 0)
		return 0;
	return errno;
}

/* Called with the lock held by whoever made ev's condition true. Returns
 * whether someone may be asleep on ev; then the caller wakes them with
 * ev_wake once it has dropped the lock (so they do not wake into a held
 * lock). Clearing `waiting` here is what keeps a sleeper that died from
 * costing a wake-up on every later message. */
static bool
ev_claim(struct chan_shm_event *ev)
{
	if (__atomic_load_n(&ev->waiting, __ATOMIC_RELAXED) == 0)
		return false;
	__atomic_store_n(&ev->waiting, 0, __ATOMIC_RELAXED);
	__atomic_add_fetch(&ev->seq, 1, __ATOMIC_RELEASE);
	return true;
}

static void
ev_wake(struct chan_shm_event *ev)
{
	/* It can only fail on a bad address, which the mapping is not; and a
	 * lost wake-up would cost a sleeper one slice (SLICE_NS), no more. */
	(void)syscall(SYS_futex, &ev->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* The lock. */

/* The previous owner died holding the lock, anywhere in a send or a recv.
 * What it can have left: a slot written partly or wholly but not published
 * (invisible, since head moves only after the copy: the next send writes
 * over it), a tail not advanced (the message stays queued for the next
 * reader, as its reader died before returning it), and a wake-up it owed
 * to sleepers (given here). None of that breaks the ring. A header that
 * does not hold together can only come from a stray write: then the mutex
 * is left unrecoverable, and every later locker fails too. */
static int
ring_recover(struct chan_shm *c)
{
	struct chan_shm_hdr *h = c->h;
	uint64_t head = load(&h->head), tail = load(&h->tail);
	if (h->magic != CHAN_SHM_MAGIC || h->version != CHAN_SHM_VERSION ||
	    h->slot_count != c->base.capacity || h->slot_size != c->base.msgsize ||
	    head - tail > c->base.capacity) {
		pthread_mutex_unlock(&h->lock);
		errno = EPROTO;
		return -1;
	}
	__atomic_add_fetch(&h->recoveries, 1, __ATOMIC_RELAXED);
	int e = pthread_mutex_consistent(&h->lock);
	if (e != 0) {
		pthread_mutex_unlock(&h->lock);
		errno = e;
		return -1;
	}
	__atomic_store_n(&h->not_empty.waiting, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&h->not_full.waiting, 0, __ATOMIC_RELAXED);
	__atomic_add_fetch(&h->not_empty.seq, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&h->not_full.seq, 1, __ATOMIC_RELEASE);
	ev_wake(&h->not_empty);
	ev_wake(&h->not_full);
	return 0;
}

/* The lock is held for a copy of one message, so a wait much longer than
 * that means its holder is stopped (SIGSTOP, a debugger). A caller with a
 * deadline waits for the lock until LOCK_GRACE_NS past it, then gives up
 * as on a timeout: the supervisor's Flush and Stop must not hang on a
 * stopped stage. A caller without one waits as for room in a full ring. */
#define LOCK_GRACE_NS (100 * 1000000ULL)

/* Returns 0 with the lock held; 1 when until_ns (CLOCK_MONOTONIC, or
 * FOREVER) passed first; or -1 with errno, the lock not held: EPROTO
 * (this locker found the ring beyond repair), ENOTRECOVERABLE (an earlier
 * one did). */
static int
ring_lock_until(struct chan_shm *c, uint64_t until_ns)
{
	int e = pthread_mutex_trylock(&c->h->lock);
	if (e == EBUSY && until_ns == FOREVER) {
		e = pthread_mutex_lock(&c->h->lock);
	} else if (e == EBUSY) {
		/* The mutex's clock is CLOCK_REALTIME: the same distance ahead. */
		uint64_t now = now_ns(), left = until_ns > now ? until_ns - now : 0;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + left % 1000000000ULL;
		ts.tv_sec += (time_t)(left / 1000000000ULL + ns / 1000000000ULL);
		ts.tv_nsec = (long)(ns % 1000000000ULL);
		e = pthread_mutex_timedlock(&c->h->lock, &ts);
	}
	if (e == 0)
		return 0;
	if (e == EOWNERDEAD)
		return ring_recover(c);
	if (e == ETIMEDOUT)
		return 1;
	errno = e;
	return -1;
}

static uint64_t
lock_until(uint64_t deadline)
{
	return deadline == FOREVER ? FOREVER : deadline + LOCK_GRACE_NS;
}

static void
ring_unlock(struct chan_shm *c)
{
	pthread_mutex_unlock(&c->h->lock);
}

/* With the lock held: drop it, sleep on ev until woken or until_ns, take
 * it again (waiting for it until lock_by). The caller re-checks its
 * condition. Returns 0 with the lock held, 1 when lock_by passed before
 * the lock came back, or -1 with errno (EINTR: a signal handler ran);
 * the lock is not held unless 0. */
static int
ring_sleep(struct chan_shm *c, struct chan_shm_event *ev, uint64_t until_ns,
    uint64_t lock_by)
{
	uint32_t seq = __atomic_load_n(&ev->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&ev->waiting, 1, __ATOMIC_RELAXED);
	ring_unlock(c);
	int e = futex_wait_until(&ev->seq, seq, until_ns);
	int r = ring_lock_until(c, lock_by);
	if (r != 0)
		return r;
	if (e == 0 || e == EAGAIN || e == ETIMEDOUT)
		return 0;
	ring_unlock(c);
	errno = e;
	return -1;
}

/* Sleep in slices of at most SLICE_NS, so a wait with no deadline still
 * comes back to re-check (and a lost wake-up costs one slice at most). */
static uint64_t
slice_end(uint64_t deadline)
{
	uint64_t end = now_ns() + SLICE_NS;
	return end < deadline ? end : deadline;
}

/* Spinning. A cross-core wake-up costs about 25 µs here, more than a whole
 * message takes to pass, so a send or recv that would block first watches
 * the indices for a few µs; most of the time the peer gets there first. */

static bool
has_msg(const struct chan_shm *c)
{
	return load(&c->h->tail) != load(&c->h->head);
}

static bool
has_room(const struct chan_shm *c)
{
	/* tail first: head read later is at least the head of that time */
	uint64_t tail = load(&c->h->tail);
	return load(&c->h->head) - tail < c->base.capacity;
}

static void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
#endif
}

static void
spin_until(const struct chan_shm *c, bool (*ready)(const struct chan_shm *))
{
	if (c->spin_ns == 0 || ready(c))
		return;
	uint64_t end = now_ns() + c->spin_ns;
	do {
		for (int i = 0; i < 32; i++) {
			if (ready(c))
				return;
			cpu_relax();
		}
		/* let a peer that shares this core run */
		sched_yield();
	} while (now_ns() < end);
}

/* Creation and attachment. */

static int
hdr_init(struct chan_shm_hdr *h, size_t msgsize, uint32_t n)
{
	pthread_mutexattr_t ma;
	int e = pthread_mutexattr_init(&ma);
	if (e == 0) {
		if ((e = pthread_mutexattr_setpshared(&ma,
		    PTHREAD_PROCESS_SHARED)) == 0 &&
		    (e = pthread_mutexattr_setrobust(&ma,
		    PTHREAD_MUTEX_ROBUST)) == 0)
			e = pthread_mutex_init(&h->lock, &ma);
		pthread_mutexattr_destroy(&ma);
	}
	if (e != 0) {
		errno = e;
		return -1;
	}
	h->version = CHAN_SHM_VERSION;
	h->slot_count = n;
	h->slot_size = msgsize;
	/* last: an opener that sees the magic sees everything above */
	__atomic_store_n(&h->magic, CHAN_SHM_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

static int
shm_create(const struct chan_attr *attr, const char *objname)
{
	uint32_t n = attr->slots ? attr->slots : CHAN_SHM_SLOTS_DEFAULT;
	size_t size = seg_size(attr->msgsize, n);
	if (size == 0) {
		errno = EINVAL;
		return -1;
	}
	int fd = shm_open(objname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	void *p = MAP_FAILED;
	/* fchmod: the umask may have taken bits from 0600. The pages are
	 * reserved now, not at first touch: on a full /dev/shm that touch
	 * would be a SIGBUS in whichever stage wrote first; here it is
	 * ENOSPC, told before anything runs (chan_shm_bytes says how much). */
	if (fchmod(fd, 0600) == -1)
		goto fail;
	int fe = posix_fallocate(fd, 0, (off_t)size);
	if (fe != 0) {
		errno = fe;
		goto fail;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED || hdr_init(p, attr->msgsize, n) == -1)
		goto fail;
	munmap(p, size);
	close(fd);
	return 0;
fail:;
	int e = errno;
	if (p != MAP_FAILED)
		munmap(p, size);
	close(fd);
	shm_unlink(objname);
	errno = e;
	return -1;
}

static int
shm_remove(const char *objname)
{
	return shm_unlink(objname);
}

/* A segment is trusted only if its header says what its size says. The
 * geometry is read once into g and only g is used from then on, so a
 * header rewritten after the check cannot move a slot outside the map. */
struct geometry {
	uint64_t slot_size;
	uint32_t slot_count;
};

static bool
hdr_read(const struct chan_shm_hdr *h, size_t size, struct geometry *g)
{
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != CHAN_SHM_MAGIC ||
	    __atomic_load_n(&h->version, __ATOMIC_RELAXED) != CHAN_SHM_VERSION)
		return false;
	g->slot_size = __atomic_load_n(&h->slot_size, __ATOMIC_RELAXED);
	g->slot_count = __atomic_load_n(&h->slot_count, __ATOMIC_RELAXED);
	return g->slot_size >= WIRE_MSG_MIN && g->slot_size <= WIRE_MSG_MAX &&
	    g->slot_count >= 1 && g->slot_count <= CHAN_SHM_SLOTS_MAX &&
	    seg_size(g->slot_size, g->slot_count) == size;
}

static struct chan *
shm_attach(const char *objname, int mode)
{
	if (mode == 0 || (mode & ~(CHAN_READ | CHAN_WRITE)) != 0) {
		errno = EINVAL;
		return NULL;
	}
	/* read-write either way: readers take the lock too */
	int fd = shm_open(objname, O_RDWR | O_CLOEXEC, 0);
	if (fd == -1)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) == -1) {
		int e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	if (st.st_size < (off_t)CHAN_SHM_HDR_SIZE || st.st_size > (off_t)SEG_MAX) {
		close(fd);
		errno = EPROTO;
		return NULL;
	}
	size_t size = (size_t)st.st_size;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd);
	if (p == MAP_FAILED) {
		errno = e;
		return NULL;
	}
	struct chan_shm *c = NULL;
	struct geometry g;
	if (!hdr_read(p, size, &g)) {
		e = EPROTO;
	} else if ((c = malloc(sizeof(*c))) == NULL) {
		e = ENOMEM;
	}
	if (c == NULL) {
		munmap(p, size);
		errno = e;
		return NULL;
	}
	c->h = p;
	c->base.ops = &chan_shm_ops;
	c->base.msgsize = (size_t)g.slot_size;
	c->base.capacity = g.slot_count;
	c->stride = CHAN_SHM_STRIDE(c->base.msgsize);
	c->slots = (unsigned char *)p + CHAN_SHM_HDR_SIZE;
	c->map_size = size;
	c->mode = mode;
	c->spin_ns = 0;
	return &c->base;
}

static void
shm_detach(struct chan *base)
{
	struct chan_shm *c = (struct chan_shm *)base;
	munmap(c->h, c->map_size);
	free(c);
}

/* Receiving and sending. */

static ssize_t
shm_recv(struct chan *base, void *buf, size_t cap, int timeout_ms)
{
	struct chan_shm *c = (struct chan_shm *)base;
	struct chan_shm_hdr *h = c->h;
	if (!(c->mode & CHAN_READ)) {
		errno = EBADF;
		return -1;
	}
	uint64_t deadline = deadline_after(timeout_ms);
	if (timeout_ms != 0)
		spin_until(c, has_msg);
	int r = ring_lock_until(c, lock_until(deadline));
	if (r != 0)
		return r == 1 ? 0 : -1;
	uint64_t tail;
	while ((tail = load(&h->tail)) == load(&h->head)) {
		if (now_ns() >= deadline) {
			ring_unlock(c);
			return 0;
		}
		r = ring_sleep(c, &h->not_empty, slice_end(deadline),
		    lock_until(deadline));
		if (r != 0)
			return r == 1 ? 0 : -1;
	}
	if (load(&h->head) - tail > c->base.capacity) {
		ring_unlock(c);
		errno = EPROTO;
		return -1;
	}
	/* The slot is checked, not trusted: a stray write could have put
	 * anything there. A bad one is dropped so the ring goes on. */
	const struct chan_shm_slot *s = slot_at(c, tail);
	uint32_t len = s->len;
	bool ok = s->seq == tail && len >= 1 && len <= c->base.msgsize &&
	    len <= cap;
	if (ok)
		memcpy(buf, s + 1, len);
	store(&h->tail, tail + 1);
	bool wake = ev_claim(&h->not_full);
	ring_unlock(c);
	if (wake)
		ev_wake(&h->not_full);
	if (!ok) {
		errno = EBADMSG;
		return -1;
	}
	return (ssize_t)len;
}

/* Take the lock and wait until there is room. Returns 0 with the lock
 * held, 1 on timeout, or -1 with errno; the lock is not held unless 0. */
static int
ring_reserve(struct chan_shm *c, int timeout_ms)
{
	struct chan_shm_hdr *h = c->h;
	if (!(c->mode & CHAN_WRITE)) {
		errno = EBADF;
		return -1;
	}
	uint64_t deadline = deadline_after(timeout_ms);
	if (timeout_ms != 0)
		spin_until(c, has_room);
	int r = ring_lock_until(c, lock_until(deadline));
	if (r != 0)
		return r;
	uint64_t used;
	while ((used = load(&h->head) - load(&h->tail)) >= c->base.capacity) {
		if (used > c->base.capacity) {
			ring_unlock(c);
			errno = EPROTO;
			return -1;
		}
		if (now_ns() >= deadline) {
			ring_unlock(c);
			return 1;
		}
		r = ring_sleep(c, &h->not_full, slice_end(deadline),
		    lock_until(deadline));
		if (r != 0)
			return r;
	}
	return 0;
}

static int
shm_send(struct chan *base, const void *msg, size_t len, int timeout_ms)
{
	struct chan_shm *c = (struct chan_shm *)base;
	struct chan_shm_hdr *h = c->h;
	int r = ring_reserve(c, timeout_ms);
	if (r != 0)
		return r;
	/* The copy is made under the lock and head moves only once it is
	 * complete. A writer killed mid-copy has published nothing: the next
	 * locker gets EOWNERDEAD, the half-written slot lies beyond head where
	 * no reader looks, and the next send writes over it. Copying outside
	 * the lock would need per-slot commit flags and would let a dead
	 * writer's reserved slot block every message behind it. */
	uint64_t head = load(&h->head);
	struct chan_shm_slot *s = slot_at(c, head);
	s->seq = head;
	s->len = (uint32_t)len;
	memcpy(s + 1, msg, len);
	store(&h->head, head + 1);
	bool wake = ev_claim(&h->not_empty);
	ring_unlock(c);
	if (wake)
		ev_wake(&h->not_empty);
	return 0;
}

static long
shm_depth(struct chan *base)
{
	struct chan_shm *c = (struct chan_shm *)base;
	uint64_t tail = load(&c->h->tail);
	uint64_t d = load(&c->h->head) - tail;
	/* both indices may move between the two loads: clamp */
	return (long)(d > c->base.capacity ? c->base.capacity : d);
}

const struct chan_ops chan_shm_ops = {
	.create = shm_create,
	.unlink = shm_remove,
	.open = shm_attach,
	.close = shm_detach,
	.recv = shm_recv,
	.send = shm_send,
	.depth = shm_depth,
};

/* Hooks for tests and benchmarks (chan_shm.h). */

static struct chan_shm *
as_shm(struct chan *c)
{
	if (c == NULL || c->ops != &chan_shm_ops) {
		errno = EINVAL;
		return NULL;
	}
	return (struct chan_shm *)c;
}

int
chan_shm_set_spin(struct chan *c, unsigned spin_us)
{
	struct chan_shm *s = as_shm(c);
	if (s == NULL)
		return -1;
	s->spin_ns = (uint64_t)spin_us * 1000;
	return 0;
}

long
chan_shm_recoveries(struct chan *c)
{
	struct chan_shm *s = as_shm(c);
	if (s == NULL)
		return -1;
	return (long)__atomic_load_n(&s->h->recoveries, __ATOMIC_RELAXED);
}

int
chan_shm_test_lock(struct chan *c)
{
	struct chan_shm *s = as_shm(c);
	return s == NULL ? -1 : ring_lock_until(s, FOREVER);
}

int
chan_shm_test_send_torn(struct chan *c, const void *msg, size_t len)
{
	struct chan_shm *s = as_shm(c);
	if (s == NULL)
		return -1;
	if (len == 0 || len > c->msgsize) {
		errno = EMSGSIZE;
		return -1;
	}
	int r = ring_reserve(s, -1);
	if (r != 0)
		return -1;
	uint64_t head = load(&s->h->head);
	struct chan_shm_slot *slot = slot_at(s, head);
	slot->seq = head;
	slot->len = (uint32_t)len;
	memcpy(slot + 1, msg, len / 2);
	return 0;
}
