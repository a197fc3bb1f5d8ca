/* racy_ring.c - the seed chapter's unsynchronised ring, in threads, for
 * `make race-demo`: a writer and a reader share a ring of 10 u32 and a
 * `size` both of them update with plain reads and writes. Built with
 * -fsanitize=thread it must be reported as a data race; that report is the
 * point of the demo (bench-ipc shows what the same ring does across
 * processes: values lost, repeated or out of order). Exits 0 if the order
 * held by luck, 1 if it broke, 2 if a lost update of `size` left both
 * sides waiting for each other. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define CAP 10
#define N 200000

/* volatile only so the compiler keeps re-reading memory: the accesses are
 * still unordered plain reads and writes from two threads. */
static struct {
	volatile uint32_t size;
	volatile uint32_t buf[CAP];
} ring;

/* Called while spinning: after a second without progress the two sides
 * wait for each other for good, a `size` update having been lost. */
static void
stall_check(unsigned long *spins)
{
	static __thread time_t since;
	if (++*spins % (1UL << 20) != 0)
		return;
	time_t now = time(NULL);
	if (*spins == (1UL << 20))
		since = now;
	else if (now - since > 1) {
		fprintf(stderr, "racy_ring: stalled (a lost update of size)\n");
		exit(2);
	}
}

static void *
writer(void *arg)
{
	(void)arg;
	uint32_t pos = 0;
	for (uint32_t i = 0; i < N; i++) {
		unsigned long spins = 0;
		while (ring.size == CAP)
			stall_check(&spins);
		ring.buf[pos] = i;
		pos = (pos + 1) % CAP;
		ring.size = ring.size + 1;
	}
	return NULL;
}

static void *
reader(void *arg)
{
	uint32_t *bad = arg, pos = 0;
	for (uint32_t i = 0; i < N; i++) {
		unsigned long spins = 0;
		while (ring.size == 0)
			stall_check(&spins);
		uint32_t v = ring.buf[pos];
		if (v != i && *bad == 0) {
			fprintf(stderr, "racy_ring: value %u read as %u\n", i, v);
			*bad = 1;
		}
		pos = (pos + 1) % CAP;
		ring.size = ring.size - 1;
	}
	return NULL;
}

int
main(void)
{
	pthread_t w, r;
	uint32_t bad = 0;
	if (pthread_create(&r, NULL, reader, &bad) != 0 ||
	    pthread_create(&w, NULL, writer, NULL) != 0)
		return 3;
	pthread_join(w, NULL);
	pthread_join(r, NULL);
	printf("racy_ring: order %s\n", bad ? "broken" : "held this time");
	return bad ? 1 : 0;
}
