/* test_chan_shm.c - what only the shm ring must survive: processes killed
 * while holding its lock (a writer mid-copy, a reader), processes killed
 * while asleep in it, and segments that are not what they claim. Every kill
 * happens in a child process; the test process is the survivor that checks
 * every committed message arrives once, in order, intact. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chan.h"
#include "tests/chan_msg.h"
#include "chan_shm.h"
#include "clock.h"

#define MSG 1024
/* One timeout for every test: Criterion 2.4.1's runner leaks an entry of
 * its timeout queue when tests of different timeouts run side by side,
 * which fails the LeakSanitizer build. */
#define TIMEOUT_S 20

static char objname[CHAN_NAME_MAX];

static void
setup(void)
{
	objname[0] = '\0';
}

static void
teardown(void)
{
	if (objname[0] != '\0')
		chan_unlink(CHAN_SHM, objname);
}

static void
name_for(const char *queue)
{
	char inst[32];
	snprintf(inst, sizeof(inst), "t%dx", (int)getpid());
	cr_assert_eq(chan_objname(objname, sizeof(objname), inst, queue), 0);
}

static struct chan *
make(const char *queue, unsigned slots, int mode)
{
	name_for(queue);
	struct chan_attr a = { .kind = CHAN_SHM, .msgsize = MSG, .slots = slots };
	cr_assert_eq(chan_create(&a, objname), 0, "chan_create %s: %s",
	    objname, strerror(errno));
	struct chan *c = chan_open(CHAN_SHM, objname, mode);
	cr_assert_not_null(c, "chan_open %s: %s", objname, strerror(errno));
	return c;
}

static size_t
msg_len(uint32_t writer, uint32_t seq)
{
	(void)writer;
	return MSG - seq % 64;
}

static size_t
msg_fill(unsigned char *buf, uint32_t writer, uint32_t seq)
{
	return msg_make(buf, msg_len(writer, seq), writer, seq);
}

/* 1 if buf[0..len) is an intact message; its header in *m. */
static int
msg_check(const unsigned char *buf, ssize_t len, struct msg *m)
{
	return msg_verify(buf, len, m, msg_len);
}

/* Take `n` messages from c: writer w, numbers first..first+n-1. */
static void
expect(struct chan *c, uint32_t w, uint32_t first, uint32_t n)
{
	unsigned char buf[MSG];
	struct msg m;
	for (uint32_t i = first; i < first + n; i++) {
		ssize_t len = chan_recv(c, buf, sizeof(buf), 5000);
		cr_assert_gt(len, 0, "message %u of writer %u: %zd (%s)", i, w,
		    len, strerror(errno));
		cr_assert(msg_check(buf, len, &m), "message %u is damaged", i);
		cr_assert(m.writer == w && m.seq == i,
		    "got %u/%u, want %u/%u", m.writer, m.seq, w, i);
	}
}

/* Children. Each gets the channel name from the fixture's global, opens
 * its own handle, and reports through its exit code. `fd` is a pipe it
 * writes a byte on when it reaches the point the test waits for. */
struct job {
	int (*fn)(const struct job *);
	uint32_t writer, first, n;
	int fd;
	int drained; /* torn_writer: wait for the reader to take all first */
};

static pid_t
spawn(const struct job *j)
{
	pid_t pid = fork();
	cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(j->fn(j));
	}
	return pid;
}

static int
tell(int fd)
{
	return fd < 0 || write(fd, "!", 1) == 1;
}

static int
send_some(struct chan *c, const struct job *j)
{
	unsigned char buf[MSG];
	for (uint32_t i = j->first; i < j->first + j->n; i++)
		if (chan_send(c, buf, msg_fill(buf, j->writer, i), 10000) != 0)
			return 0;
	return 1;
}

/* Send n messages, then die mid-copy of the next one. */
static int
torn_writer(const struct job *j)
{
	struct chan *c = chan_open(CHAN_SHM, objname, CHAN_WRITE);
	unsigned char buf[MSG];
	if (c == NULL || !send_some(c, j))
		return 2;
	/* A reader taking them as they come must have had them all before
	 * the lock goes with us, or it waits behind it for the last one. */
	while (j->drained && chan_depth(c) > 0)
		usleep(1000);
	size_t len = msg_fill(buf, j->writer, j->first + j->n);
	if (chan_shm_test_send_torn(c, buf, len) != 0 || !tell(j->fd))
		return 3;
	pause();
	return 4;
}

static int
plain_writer(const struct job *j)
{
	struct chan *c = chan_open(CHAN_SHM, objname, CHAN_WRITE);
	if (c == NULL || !tell(j->fd) || !send_some(c, j))
		return 2;
	chan_close(c);
	return 0;
}

/* Read n messages, checking them, then die holding the lock. */
static int
locked_reader(const struct job *j)
{
	struct chan *c = chan_open(CHAN_SHM, objname, CHAN_READ);
	unsigned char buf[MSG];
	struct msg m;
	if (c == NULL)
		return 2;
	for (uint32_t i = j->first; i < j->first + j->n; i++) {
		ssize_t len = chan_recv(c, buf, sizeof(buf), 5000);
		if (!msg_check(buf, len, &m) || m.writer != j->writer || m.seq != i)
			return 3;
	}
	if (chan_shm_test_lock(c) != 0 || !tell(j->fd))
		return 4;
	pause();
	return 5;
}

/* Block in recv (n == 0) or in a send to a full ring (n == 1) forever. */
static int
sleeper(const struct job *j)
{
	struct chan *c = chan_open(CHAN_SHM, objname, CHAN_READ | CHAN_WRITE);
	unsigned char buf[MSG];
	if (c == NULL || !tell(j->fd))
		return 2;
	if (j->n == 0)
		chan_recv(c, buf, sizeof(buf), -1);
	else
		chan_send(c, buf, msg_fill(buf, 7, 7), -1);
	return 3;
}

static void
wait_byte(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b;
	cr_assert_eq(poll(&p, 1, 10000), 1, "child never got there");
	cr_assert_eq(read(fd, &b, 1), 1);
}

static void
reap_ok(pid_t pid)
{
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "child %d: status 0x%x", (int)pid, st);
}

static void
kill9(pid_t pid)
{
	int st;
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
	    "child %d: status 0x%x", (int)pid, st);
}

/* Wait until pid sleeps on a futex (the ring's wait queue or its lock). */
static void
wait_asleep(pid_t pid)
{
	char path[64], wchan[64];
	snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
	for (int i = 0; i < 1000; i++) {
		FILE *f = fopen(path, "r");
		cr_assert_not_null(f);
		size_t n = fread(wchan, 1, sizeof(wchan) - 1, f);
		fclose(f);
		wchan[n] = '\0';
		if (strstr(wchan, "futex") != NULL)
			return;
		usleep(2000);
	}
	cr_assert_fail("child %d never slept (wchan %s)", (int)pid, wchan);
}

Test(chan_shm_death, writer_killed_mid_copy_reader_recovers,
    .init = setup, .fini = teardown, .timeout = TIMEOUT_S)
{
	struct chan *c = make("wdeath1", 16, CHAN_READ);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	enum { K = 1000 };
	struct job a = { .fn = torn_writer, .n = K, .fd = fds[1], .drained = 1 };
	pid_t pid = spawn(&a);
	expect(c, 0, 0, K);
	wait_byte(fds[0]);
	kill9(pid);
	cr_assert_eq(chan_shm_recoveries(c), 0);

	/* The reader is the next locker: it repairs, finds nothing. */
	unsigned char buf[MSG];
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 100), 0,
	    "the half-written message was delivered");
	cr_assert_eq(chan_shm_recoveries(c), 1);
	cr_assert_eq(chan_depth(c), 0);

	struct job b = { .fn = plain_writer, .writer = 1, .n = 500, .fd = -1 };
	pid = spawn(&b);
	expect(c, 1, 0, 500);
	reap_ok(pid);
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 0), 0);
	cr_assert_eq(chan_shm_recoveries(c), 1);
	chan_close(c);
}

Test(chan_shm_death, writer_killed_mid_copy_writer_recovers,
    .init = setup, .fini = teardown, .timeout = TIMEOUT_S)
{
	struct chan *c = make("wdeath2", 16, CHAN_READ);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	struct job a = { .fn = torn_writer, .n = 5, .fd = fds[1] };
	pid_t pa = spawn(&a);
	wait_byte(fds[0]);
	/* B blocks on the lock A holds; A's death hands it EOWNERDEAD. */
	struct job b = { .fn = plain_writer, .writer = 1, .n = 5, .fd = fds[1] };
	pid_t pb = spawn(&b);
	wait_byte(fds[0]);
	wait_asleep(pb);
	kill9(pa);
	reap_ok(pb);
	cr_assert_eq(chan_shm_recoveries(c), 1);
	cr_assert_eq(chan_depth(c), 10);
	expect(c, 0, 0, 5);
	expect(c, 1, 0, 5);
	unsigned char buf[MSG];
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 0), 0);
	chan_close(c);
}

Test(chan_shm_death, reader_killed_holding_lock,
    .init = setup, .fini = teardown, .timeout = TIMEOUT_S)
{
	struct chan *c = make("rdeath", 16, CHAN_READ);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	enum { N = 1000, FIRST = 300 };
	struct job w = { .fn = plain_writer, .n = N, .fd = -1 };
	pid_t pw = spawn(&w);
	struct job r = { .fn = locked_reader, .n = FIRST, .fd = fds[1] };
	pid_t pr = spawn(&r);
	wait_byte(fds[0]);
	wait_asleep(pw); /* the writer now waits for the dead reader's lock */
	kill9(pr);
	/* The survivor reads on from where the dead reader stopped. */
	expect(c, 0, FIRST, N - FIRST);
	reap_ok(pw);
	unsigned char buf[MSG];
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 0), 0);
	cr_assert_eq(chan_shm_recoveries(c), 1);
	chan_close(c);
}

/* glibc's pthread_cond_t hangs the next signaller when a waiter dies in
 * it; the ring's wait queues must not. */
Test(chan_shm_death, sleepers_killed_leave_no_trace,
    .init = setup, .fini = teardown, .timeout = TIMEOUT_S)
{
	struct chan *c = make("sleepers", 4, CHAN_READ | CHAN_WRITE);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	for (int round = 0; round < 3; round++) {
		struct job r = { .fn = sleeper, .n = 0, .fd = fds[1] };
		pid_t pid = spawn(&r);
		wait_byte(fds[0]);
		wait_asleep(pid);
		kill9(pid);
		struct job w = { .fn = plain_writer, .n = 50, .fd = -1 };
		pid = spawn(&w);
		expect(c, 0, 0, 50);
		reap_ok(pid);
	}
	/* Writers asleep on a full ring, killed. */
	unsigned char buf[MSG];
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(chan_send(c, buf, msg_fill(buf, 5, i), 0), 0);
	pid_t pids[3];
	for (int i = 0; i < 3; i++) {
		struct job s = { .fn = sleeper, .n = 1, .fd = fds[1] };
		pids[i] = spawn(&s);
		wait_byte(fds[0]);
		wait_asleep(pids[i]);
	}
	for (int i = 0; i < 3; i++)
		kill9(pids[i]);
	expect(c, 5, 0, 4);
	struct job w = { .fn = plain_writer, .writer = 6, .n = 200, .fd = -1 };
	pid_t pid = spawn(&w);
	expect(c, 6, 0, 200);
	reap_ok(pid);
	cr_assert_eq(chan_shm_recoveries(c), 0);
	chan_close(c);
}

/* Raw access to a segment, as a stray or foreign writer would have. */
struct raw {
	struct chan_shm_hdr *h;
	size_t size;
	int fd;
};

static struct raw
raw_map(void)
{
	struct raw r;
	r.fd = shm_open(objname, O_RDWR, 0);
	cr_assert_neq(r.fd, -1, "shm_open: %s", strerror(errno));
	struct stat st;
	cr_assert_eq(fstat(r.fd, &st), 0);
	r.size = (size_t)st.st_size;
	r.h = mmap(NULL, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
	cr_assert_neq(r.h, MAP_FAILED);
	return r;
}

static void
raw_unmap(struct raw *r)
{
	munmap(r->h, r->size);
	close(r->fd);
}

static void
refused(const char *why)
{
	errno = 0;
	struct chan *c = chan_open(CHAN_SHM, objname, CHAN_READ);
	cr_assert_null(c, "%s: accepted", why);
	cr_assert_eq(errno, EPROTO, "%s: %s", why, strerror(errno));
}

Test(chan_shm_segment, foreign_segments_refused,
    .init = setup, .fini = teardown, .timeout = TIMEOUT_S)
{
	chan_close(make("foreign", 8, CHAN_READ));
	struct raw r = raw_map();
	struct chan_shm_hdr saved = *r.h;

	r.h->magic ^= 1;
	refused("wrong magic");
	r.h->magic = saved.magic;
	r.h->version = CHAN_SHM_VERSION + 1;
	refused("wrong version");
	r.h->version = saved.version;
	r.h->slot_count = 9;
	refused("slot count not matching the size");
	r.h->slot_count = saved.slot_count;
	r.h->slot_size = 1u << 30;
	refused("absurd slot size");
	r.h->slot_size = saved.slot_size;

	cr_assert_eq(ftruncate(r.fd, (off_t)r.size + 4096), 0);
	refused("segment larger than its header says");
	cr_assert_eq(ftruncate(r.fd, (off_t)r.size - 64), 0);
	refused("segment smaller than its header says");
	cr_assert_eq(ftruncate(r.fd, 16), 0);
	refused("segment smaller than a header");
	cr_assert_eq(ftruncate(r.fd, (off_t)r.size), 0);
	raw_unmap(&r);
	r = raw_map();
	*r.h = saved;
	struct chan *c = chan_open(CHAN_SHM, objname, CHAN_READ);
	cr_assert_not_null(c, "the restored header is refused: %s",
	    strerror(errno));
	chan_close(c);
	raw_unmap(&r);
}

static int
lock_holder(const struct job *j)
{
	struct chan *c = chan_open(CHAN_SHM, objname, CHAN_WRITE);
	if (c == NULL || chan_shm_test_lock(c) != 0 || !tell(j->fd))
		return 2;
	pause();
	return 3;
}

/* A live process that holds the lock (stopped, say) makes a call with a
 * limit time out, a little past its limit, instead of hanging; once it
 * dies the ring is recovered and works. */
Test(chan_shm_segment, a_held_lock_is_a_timeout_for_a_call_with_a_limit,
    .init = setup, .fini = teardown, .timeout = TIMEOUT_S)
{
	struct chan *c = make("held", 8, CHAN_READ | CHAN_WRITE);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	struct job j = { .fn = lock_holder, .n = 0, .fd = fds[1] };
	pid_t pid = spawn(&j);
	wait_byte(fds[0]);
	unsigned char buf[MSG] = { 1 };
	cr_assert_eq(chan_send(c, buf, 8, 0), 1, "%s", strerror(errno));
	cr_assert_eq(chan_send(c, buf, 8, 50), 1, "%s", strerror(errno));
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 0), 0, "%s", strerror(errno));
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 50), 0, "%s", strerror(errno));
	kill9(pid);
	cr_assert_eq(chan_send(c, buf, 8, 0), 0, "%s", strerror(errno));
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 0), 8, "%s", strerror(errno));
	cr_assert_eq(chan_shm_recoveries(c), 1);
	close(fds[0]);
	close(fds[1]);
	chan_close(c);
}

Test(chan_shm_segment, header_beyond_repair,
    .init = setup, .fini = teardown, .timeout = TIMEOUT_S)
{
	struct chan *c = make("repair", 8, CHAN_READ | CHAN_WRITE);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	struct job j = { .fn = lock_holder, .n = 0, .fd = fds[1] };
	pid_t pid = spawn(&j);
	wait_byte(fds[0]);
	struct raw r = raw_map();
	r.h->head = r.h->tail + 8 + 5; /* more queued than there are slots */
	kill9(pid);
	unsigned char buf[MSG];
	errno = 0;
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 100), -1);
	cr_assert_eq(errno, EPROTO, "%s", strerror(errno));
	errno = 0;
	cr_assert_eq(chan_send(c, "x", 1, 100), -1);
	cr_assert_eq(errno, ENOTRECOVERABLE, "%s", strerror(errno));
	raw_unmap(&r);
	chan_close(c);
}

Test(chan_shm_segment, created_0600_whatever_the_umask,
    .init = setup, .fini = teardown, .timeout = TIMEOUT_S)
{
	mode_t old = umask(0277);
	struct chan *c = make("mode", 0, CHAN_READ);
	umask(old);
	char path[CHAN_NAME_MAX + 16];
	snprintf(path, sizeof(path), "/dev/shm%s", objname);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
	chan_close(c);
}

Test(chan_shm_segment, slot_count_option,
    .init = setup, .fini = teardown, .timeout = TIMEOUT_S)
{
	struct chan *c = make("slots", 0, CHAN_READ | CHAN_WRITE);
	long n = 0;
	while (chan_send(c, "x", 1, 0) == 0)
		n++;
	cr_assert_eq(n, CHAN_SHM_SLOTS_DEFAULT);
	chan_close(c);
	cr_assert_eq(chan_unlink(CHAN_SHM, objname), 0);

	c = make("slots", 3, CHAN_READ | CHAN_WRITE);
	for (n = 0; chan_send(c, "x", 1, 0) == 0; n++)
		;
	cr_assert_eq(n, 3);
	cr_assert_eq(chan_depth(c), 3);
	chan_close(c);
	cr_assert_eq(chan_unlink(CHAN_SHM, objname), 0);

	struct chan_attr a = { .kind = CHAN_SHM, .msgsize = MSG,
	    .slots = CHAN_SHM_SLOTS_MAX + 1 };
	errno = 0;
	cr_assert_eq(chan_create(&a, objname), -1);
	cr_assert_eq(errno, EINVAL);
}
