/* chan_shm.h - the layout of a shm channel segment and the few hooks that
 * tests and benchmarks need beyond chan.h. Stages use chan.h only; this
 * header exists so a test can kill a lock holder at a chosen point, forge a
 * bad segment, and a benchmark can compare spinning budgets.
 *
 * Segment "/telem.<instance>.<queue>" (shm_open, mode 0600):
 *   struct chan_shm_hdr, then slot_count slots of `stride` bytes each,
 *   stride = CHAN_SHM_STRIDE(slot_size). A slot is struct chan_shm_slot
 *   followed by slot_size bytes of payload. Every field is in host byte
 *   order; the segment is never shared between hosts. */
#ifndef TELEM_CHAN_SHM_H
#define TELEM_CHAN_SHM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "chan.h"

#define CHAN_SHM_MAGIC 0x4d48534d454c4554ULL /* "TELEMSHM" */
#define CHAN_SHM_VERSION 1
#define CHAN_SHM_SLOTS_MAX 65536
/* A handle does not spin before it sleeps unless chan_shm_set_spin says
 * so: worth ~5x with one value per message, a waste of CPU once ingest
 * sends a message per millisecond. This is the spin bench-ipc and the
 * race test try. */
#define CHAN_SHM_SPIN_US 10

/* A futex-based wait queue: `seq` is bumped by whoever makes the condition
 * true, `waiting` says someone may sleep on it (cleared by the waker). */
struct chan_shm_event {
	uint32_t seq;
	uint32_t waiting;
};

struct chan_shm_hdr {
	uint64_t magic;      /* CHAN_SHM_MAGIC, written last by chan_create */
	uint32_t version;    /* CHAN_SHM_VERSION */
	uint32_t slot_count; /* 1..CHAN_SHM_SLOTS_MAX */
	uint64_t slot_size;  /* payload bytes per slot: the message size */
	uint64_t recoveries; /* times a locker repaired after an owner died */
	/* Messages published / consumed since creation; never wrap in
	 * practice (2^64). head - tail <= slot_count always. */
	_Alignas(64) uint64_t head;
	_Alignas(64) uint64_t tail;
	_Alignas(64) pthread_mutex_t lock; /* PROCESS_SHARED + ROBUST */
	struct chan_shm_event not_empty;
	struct chan_shm_event not_full;
};

struct chan_shm_slot {
	uint64_t seq; /* the value of head this slot was published at */
	uint32_t len; /* 1..slot_size */
	uint32_t reserved;
	/* then slot_size bytes */
};

#define CHAN_SHM_HDR_SIZE \
	((sizeof(struct chan_shm_hdr) + 63) & ~(size_t)63)
#define CHAN_SHM_STRIDE(slot_size) \
	((sizeof(struct chan_shm_slot) + (size_t)(slot_size) + 63) & ~(size_t)63)

/* Bytes of /dev/shm a ring with these attributes takes (reserved whole
 * when it is created), or 0 if they are out of range. */
size_t chan_shm_bytes(const struct chan_attr *attr);

/* Set the spin budget of a shm handle: how long a send or recv that would
 * block first polls the ring's indices before sleeping (0: never spin).
 * Returns 0, or -1 with EINVAL if c is not a shm channel. For benchmarks. */
int chan_shm_set_spin(struct chan *c, unsigned spin_us);

/* Times a locker of this segment found the lock's owner dead and repaired
 * the ring, or -1 with EINVAL if c is not a shm channel. */
long chan_shm_recoveries(struct chan *c);

/* For tests only: take the ring's lock and return still holding it, so the
 * caller can be SIGKILLed as the lock's owner. Returns 0 with the lock held,
 * or -1 with errno (the lock is not held). */
int chan_shm_test_lock(struct chan *c);

/* For tests only: do what chan_send does up to the middle of its copy --
 * take the lock, wait for room, write the slot's header and the first half
 * of msg into the next slot -- and return with the lock held and head not
 * advanced: a writer killed now died mid-copy. Returns 0 with the lock
 * held, or -1 with errno (the lock is not held). */
int chan_shm_test_send_torn(struct chan *c, const void *msg, size_t len);

#endif
