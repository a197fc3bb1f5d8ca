/* stats.c - create, attach and remove the shared stats segment. */
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATS_MAGIC 0x7473746cU /* "ltst" */
#define STATS_VERSION 9 /* 2: sink_dropped; 3: run; 4: taken/sent books;
                          * 5: 64 slots, in_queue, "" for a free slot;
                          * 6: unbooked_out; 7: born; 8: sink_held;
                          * 9: save_failing */

static struct stats_seg *
map(int fd)
{
	void *p = mmap(NULL, sizeof(struct stats_seg), PROT_READ | PROT_WRITE,
	    MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

struct stats_seg *
stats_create(const char *objname)
{
	int fd = shm_open(objname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1)
		return NULL;
	struct stats_seg *seg = NULL;
	/* Reserved now (see chan_shm.c): no SIGBUS at a first touch. */
	if (fchmod(fd, 0600) == 0) {
		int e = posix_fallocate(fd, 0, sizeof(struct stats_seg));
		if (e == 0)
			seg = map(fd);
		else
			errno = e;
	}
	int e = errno;
	close(fd);
	if (seg == NULL) {
		shm_unlink(objname);
		errno = e;
		return NULL;
	}
	seg->magic = STATS_MAGIC;
	seg->version = STATS_VERSION;
	seg->nslots = STATS_SLOTS;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	seg->run = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
	    (uint64_t)getpid() << 48;
	return seg;
}

struct stats_seg *
stats_attach(const char *objname)
{
	int fd = shm_open(objname, O_RDWR | O_CLOEXEC, 0);
	if (fd == -1)
		return NULL;
	struct stat st;
	struct stats_seg *seg = NULL;
	if (fstat(fd, &st) == 0) {
		if ((size_t)st.st_size != sizeof(struct stats_seg))
			errno = EPROTO;
		else
			seg = map(fd);
	}
	int e = errno;
	close(fd);
	if (seg != NULL && (seg->magic != STATS_MAGIC ||
	    seg->version != STATS_VERSION || seg->nslots != STATS_SLOTS)) {
		stats_detach(seg);
		seg = NULL;
		e = EPROTO;
	}
	errno = e;
	return seg;
}

void
stats_detach(struct stats_seg *seg)
{
	if (seg != NULL)
		munmap(seg, sizeof(*seg));
}

int
stats_unlink(const char *objname)
{
	return shm_unlink(objname);
}

uint64_t
stats_in(const struct stats_slot *s)
{
	uint64_t n = stats_get(&s->in);
	for (int w = 0; w < STATS_SLOTS; w++)
		n += stats_get(&s->taken[w]);
	return n;
}

int64_t
stats_inflight(const struct stats_slot *s)
{
	return (int64_t)(stats_in(s) - stats_get(&s->out) - stats_get(&s->filtered) -
	    stats_get(&s->dropped) - stats_get(&s->lost));
}

int64_t
stats_settle_dead(struct stats_slot *s)
{
	uint64_t lost = stats_in(s) - stats_get(&s->out) - stats_get(&s->filtered) -
	    stats_get(&s->dropped);
	uint64_t was = atomic_exchange(&s->lost, lost);
	return (int64_t)(lost - was);
}

uint64_t
stats_settle_held(struct stats_slot *s)
{
	uint64_t n = atomic_exchange(&s->sink_held, 0);
	stats_add(&s->sink_dropped, n);
	return n;
}

int
stats_reader_of(const struct stats_seg *seg, const char *queue)
{
	for (int r = 0; r < STATS_SLOTS; r++)
		if (seg->slot[r].in_queue[0] != '\0' &&
		    strncmp(seg->slot[r].in_queue, queue, STATS_NAME_MAX) == 0)
			return r;
	return -1;
}

int
stats_take(struct stats_slot *me, unsigned src, uint64_t seq, uint64_t n,
    uint64_t writer_out, uint64_t *gap)
{
	uint64_t t = atomic_load_explicit(&me->taken[src], memory_order_relaxed);
	*gap = 0;
	if (seq > writer_out || n > writer_out - seq)
		return STATS_BEYOND;
	if (seq < t)
		return STATS_DUP;
	/* A kill between these two stores books the gap again next time,
	 * counted once: the supervisor resets lost from the others. */
	if (seq > t) {
		*gap = seq - t;
		stats_add(&me->lost, *gap);
	}
	atomic_store_explicit(&me->taken[src], seq + n, memory_order_release);
	return 0;
}

void
stats_sent_to(const struct stats_seg *seg, int me, uint64_t sent[STATS_SLOTS])
{
	for (int w = 0; w < STATS_SLOTS; w++)
		sent[w] = atomic_load_explicit(&seg->slot[w].sent[me],
		    memory_order_acquire);
}

uint64_t
stats_close_gaps(struct stats_slot *me, const uint64_t sent[STATS_SLOTS])
{
	uint64_t total = 0;
	for (int w = 0; w < STATS_SLOTS; w++) {
		uint64_t t = atomic_load(&me->taken[w]);
		if (t < sent[w]) {
			stats_add(&me->lost, sent[w] - t);
			atomic_store(&me->taken[w], sent[w]);
			total += sent[w] - t;
		}
	}
	return total;
}
