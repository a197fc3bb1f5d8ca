/* ring_threads.c - the shm ring driven by threads of one process, built
 * with -fsanitize=thread by `make check-race`. A plain program rather than
 * a Criterion test (Criterion forks every test, which ThreadSanitizer does
 * not follow well); exit 0 when every check passed.
 *
 * Writers and a reader first share one handle: one mapping of the segment,
 * so ThreadSanitizer sees every access to the ring at one address and
 * judges the locking. Threads with a handle each map the segment at
 * different addresses, which hides their accesses from each other; that
 * round checks the results, not the races. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chan.h"
#include "chan_shm.h"
#include "wire.h"

#define MSG WIRE_MSG_MIN
#define WRITERS 4
#define PER_WRITER 20000

static char objname[CHAN_NAME_MAX];
static int failures;

#define CHECK(cond, ...) do { \
	if (!(cond)) { \
		fprintf(stderr, "ring_threads: " __VA_ARGS__); \
		fputc('\n', stderr); \
		__atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED); \
	} \
} while (0)

struct msg {
	uint32_t writer;
	uint32_t seq;
	uint32_t sum;
};

static size_t
msg_fill(unsigned char *buf, uint32_t w, uint32_t seq)
{
	size_t len = sizeof(struct msg) + (seq * 31u + w) % (MSG - sizeof(struct msg));
	uint32_t sum = 0;
	for (size_t i = sizeof(struct msg); i < len; i++) {
		buf[i] = (unsigned char)(seq ^ (w << 4) ^ i);
		sum = sum * 31 + buf[i];
	}
	struct msg m = { w, seq, sum };
	memcpy(buf, &m, sizeof(m));
	return len;
}

static int
msg_ok(const unsigned char *buf, ssize_t len, struct msg *m)
{
	unsigned char want[MSG];
	if (len < (ssize_t)sizeof(*m))
		return 0;
	memcpy(m, buf, sizeof(*m));
	return m->writer < WRITERS &&
	    msg_fill(want, m->writer, m->seq) == (size_t)len &&
	    memcmp(want, buf, (size_t)len) == 0;
}

struct role {
	struct chan *shared; /* NULL: open a handle of its own */
	uint32_t writer;
	unsigned spin_us;
};

static struct chan *
handle(const struct role *r, int mode)
{
	if (r->shared != NULL)
		return r->shared;
	struct chan *c = chan_open(CHAN_SHM, objname, mode);
	CHECK(c != NULL, "chan_open: %s", strerror(errno));
	if (c != NULL)
		chan_shm_set_spin(c, r->spin_us);
	return c;
}

static void *
writer(void *arg)
{
	const struct role *r = arg;
	struct chan *c = handle(r, CHAN_WRITE);
	unsigned char buf[MSG];
	if (c == NULL)
		return NULL;
	for (uint32_t i = 0; i < PER_WRITER; i++) {
		size_t len = msg_fill(buf, r->writer, i);
		int rc;
		/* short timeouts on purpose: the timeout path races too */
		while ((rc = chan_send(c, buf, len, i % 3)) == 1)
			;
		CHECK(rc == 0, "send: %s", strerror(errno));
		if (i % 4096 == 0)
			CHECK(chan_depth(c) >= 0, "depth: %s", strerror(errno));
	}
	if (r->shared == NULL)
		chan_close(c);
	return NULL;
}

static void *
reader(void *arg)
{
	const struct role *r = arg;
	struct chan *c = handle(r, CHAN_READ);
	unsigned char buf[MSG];
	uint32_t next[WRITERS] = { 0 };
	struct msg m;
	if (c == NULL)
		return NULL;
	for (long got = 0; got < (long)WRITERS * PER_WRITER; ) {
		ssize_t n = chan_recv(c, buf, sizeof(buf), got % 2 ? 5 : -1);
		if (n == 0)
			continue;
		if (n < 0) {
			CHECK(0, "recv: %s", strerror(errno));
			break;
		}
		if (!msg_ok(buf, n, &m)) {
			CHECK(0, "message %ld is damaged", got);
			break;
		}
		CHECK(m.seq == next[m.writer], "writer %u: got %u, want %u",
		    m.writer, m.seq, next[m.writer]);
		next[m.writer] = m.seq + 1;
		got++;
	}
	CHECK(chan_recv(c, buf, sizeof(buf), 0) == 0, "a message too many");
	if (r->shared == NULL)
		chan_close(c);
	return NULL;
}

static void
round_trip(const char *what, struct chan *shared, unsigned spin_us)
{
	pthread_t wt[WRITERS], rt;
	struct role roles[WRITERS + 1];
	for (int i = 0; i <= WRITERS; i++)
		roles[i] = (struct role){ shared, (uint32_t)i, spin_us };
	int e = pthread_create(&rt, NULL, reader, &roles[WRITERS]);
	CHECK(e == 0, "pthread_create: %s", strerror(e));
	for (int i = 0; i < WRITERS; i++) {
		e = pthread_create(&wt[i], NULL, writer, &roles[i]);
		CHECK(e == 0, "pthread_create: %s", strerror(e));
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	pthread_join(rt, NULL);
	printf("ring_threads: %s, spin %u us: %d failures so far\n", what,
	    spin_us, __atomic_load_n(&failures, __ATOMIC_RELAXED));
}

static void
cleanup(void)
{
	chan_unlink(CHAN_SHM, objname);
}

int
main(void)
{
	char inst[32];
	snprintf(inst, sizeof(inst), "r%dx", (int)getpid());
	if (chan_objname(objname, sizeof(objname), inst, "ring") == -1)
		return 1;
	struct chan_attr a = { .kind = CHAN_SHM, .msgsize = MSG, .slots = 8 };
	if (chan_create(&a, objname) == -1) {
		fprintf(stderr, "ring_threads: chan_create %s: %s\n", objname,
		    strerror(errno));
		return 1;
	}
	atexit(cleanup);
	struct chan *shared = chan_open(CHAN_SHM, objname, CHAN_READ | CHAN_WRITE);
	if (shared == NULL) {
		fprintf(stderr, "ring_threads: chan_open: %s\n", strerror(errno));
		return 1;
	}
	round_trip("one shared handle", shared, CHAN_SHM_SPIN_US);
	chan_shm_set_spin(shared, 0);
	round_trip("one shared handle", shared, 0);
	round_trip("a handle per thread", NULL, CHAN_SHM_SPIN_US);
	chan_close(shared);
	return failures == 0 ? 0 : 1;
}
