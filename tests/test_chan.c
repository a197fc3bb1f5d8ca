/* test_chan.c - the channel contract of chan.h, one table of tests run
 * against both transports: BOTH(name) registers the body twice, as
 * chan_mqueue::name and chan_shm::name. Every test makes its own object
 * "/telem.t<pid>x.<test>" and the fixture removes it, pass or fail. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "tests/chan_msg.h"
#include "clock.h"
#include "wire.h"

/* mqueue: msg_max 10 and RLIMIT_MSGQUEUE shared with every test running
 * beside us, so small messages; shm gets the same size and capacity. */
#define MSG 1024
#define SLOTS 10

static char objname[CHAN_NAME_MAX];

static void
setup(void)
{
	objname[0] = '\0';
}

static void
teardown(void)
{
	if (objname[0] != '\0') {
		chan_unlink(CHAN_MQUEUE, objname);
		chan_unlink(CHAN_SHM, objname);
	}
}

/* One timeout for every test: Criterion 2.4.1's runner leaks an entry of
 * its timeout queue when tests of different timeouts run side by side,
 * which fails the LeakSanitizer build. */
#define TIMEOUT_S 30

#define BOTH(name) \
	static void body_##name(enum chan_kind kind); \
	Test(chan_mqueue, name, .init = setup, .fini = teardown, \
	    .timeout = TIMEOUT_S) { body_##name(CHAN_MQUEUE); } \
	Test(chan_shm, name, .init = setup, .fini = teardown, \
	    .timeout = TIMEOUT_S) { body_##name(CHAN_SHM); } \
	static void body_##name(enum chan_kind kind)

/* Create the test's channel and open it with `mode`. */
static struct chan *
make(enum chan_kind kind, const char *queue, int mode)
{
	char inst[32];
	snprintf(inst, sizeof(inst), "t%dx", (int)getpid());
	cr_assert_eq(chan_objname(objname, sizeof(objname), inst, queue), 0);
	struct chan_attr a = { .kind = kind, .msgsize = MSG, .slots = SLOTS };
	cr_assert_eq(chan_create(&a, objname), 0, "chan_create %s: %s",
	    objname, strerror(errno));
	struct chan *c = chan_open(kind, objname, mode);
	cr_assert_not_null(c, "chan_open %s: %s", objname, strerror(errno));
	return c;
}

static size_t
msg_len(uint32_t writer, uint32_t seq)
{
	return sizeof(struct msg) + (seq * 7919u + writer) % (MSG - sizeof(struct msg) + 1);
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

/* Run fn in a child that dies with us; its exit code is its verdict. */
static pid_t
spawn(int (*fn)(enum chan_kind, int), enum chan_kind kind, int arg)
{
	pid_t pid = fork();
	cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(fn(kind, arg));
	}
	return pid;
}

static void
reap_ok(pid_t pid)
{
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "child %d: status 0x%x", (int)pid, st);
}

/* Writer child: messages 0..n-1 as writer `w` (n and w packed in arg). */
static int
writer(enum chan_kind kind, int arg)
{
	uint32_t w = (uint32_t)arg >> 24, n = (uint32_t)arg & 0xffffff;
	struct chan *c = chan_open(kind, objname, CHAN_WRITE);
	if (c == NULL)
		return 2;
	unsigned char buf[MSG];
	for (uint32_t i = 0; i < n; i++) {
		size_t len = msg_fill(buf, w, i);
		if (chan_send(c, buf, len, 10000) != 0)
			return 3;
	}
	chan_close(c);
	return 0;
}

BOTH(order_10000)
{
	struct chan *c = make(kind, "order", CHAN_READ);
	enum { N = 10000 };
	pid_t pid = spawn(writer, kind, N);
	unsigned char buf[MSG];
	struct msg m;
	for (uint32_t i = 0; i < N; i++) {
		ssize_t n = chan_recv(c, buf, sizeof(buf), 10000);
		cr_assert_gt(n, 0, "message %u: %zd (%s)", i, n, strerror(errno));
		cr_assert(msg_check(buf, n, &m), "message %u is damaged", i);
		cr_assert_eq(m.seq, i, "message %u came as %u", i, m.seq);
	}
	reap_ok(pid);
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 0), 0);
	chan_close(c);
}

BOTH(many_writers_one_reader)
{
	struct chan *c = make(kind, "writers", CHAN_READ);
	enum { W = 4, N = 2500 };
	pid_t pids[W];
	for (int w = 0; w < W; w++)
		pids[w] = spawn(writer, kind, w << 24 | N);
	uint32_t next[W] = { 0 };
	unsigned char buf[MSG];
	struct msg m;
	for (int i = 0; i < W * N; i++) {
		ssize_t n = chan_recv(c, buf, sizeof(buf), 10000);
		cr_assert_gt(n, 0, "message %d: %zd (%s)", i, n, strerror(errno));
		cr_assert(msg_check(buf, n, &m), "message %d is damaged", i);
		cr_assert_lt(m.writer, W);
		cr_assert_eq(m.seq, next[m.writer], "writer %u: got %u, want %u",
		    m.writer, m.seq, next[m.writer]);
		next[m.writer]++;
	}
	for (int w = 0; w < W; w++)
		reap_ok(pids[w]);
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 0), 0, "a message too many");
	chan_close(c);
}

/* Blocked-writer child: a byte on fd before the send, one after. */
static int
blocked_writer(enum chan_kind kind, int fd)
{
	struct chan *c = chan_open(kind, objname, CHAN_WRITE);
	unsigned char buf[MSG];
	if (c == NULL || write(fd, "a", 1) != 1)
		return 2;
	if (chan_send(c, buf, msg_fill(buf, 9, 9), -1) != 0)
		return 3;
	return write(fd, "b", 1) == 1 ? 0 : 4;
}

static int
byte_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b;
	return poll(&p, 1, ms) == 1 && read(fd, &b, 1) == 1;
}

BOTH(full_blocks_writer)
{
	struct chan *c = make(kind, "full", CHAN_READ | CHAN_WRITE);
	unsigned char buf[MSG];
	long cap = 0;
	int r;
	while ((r = chan_send(c, buf, msg_fill(buf, 0, (uint32_t)cap), 0)) == 0)
		cap++;
	cr_assert_eq(r, 1, "send on a full channel: %d (%s)", r, strerror(errno));
	cr_assert_geq(cap, 1);
	cr_assert_eq(chan_depth(c), cap);

	long long t0 = clock_ms();
	cr_assert_eq(chan_send(c, buf, 100, 100), 1);
	long long dt = clock_ms() - t0;
	cr_assert(dt >= 90 && dt < 1000, "timed send took %lld ms", dt);

	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = spawn(blocked_writer, kind, fds[1]);
	cr_assert(byte_within(fds[0], 5000), "writer did not start");
	cr_assert(!byte_within(fds[0], 200), "writer did not block");
	struct msg m;
	ssize_t n = chan_recv(c, buf, sizeof(buf), 1000);
	cr_assert(msg_check(buf, n, &m) && m.seq == 0);
	cr_assert(byte_within(fds[0], 5000), "writer still blocked");
	reap_ok(pid);
	cr_assert_eq(chan_depth(c), cap);
	for (long i = 1; i <= cap; i++) {
		n = chan_recv(c, buf, sizeof(buf), 1000);
		cr_assert(msg_check(buf, n, &m));
		cr_assert_eq(m.seq, i < cap ? (uint32_t)i : 9u);
	}
	close(fds[0]);
	close(fds[1]);
	chan_close(c);
}

/* Reader child: takes `n` messages, checks they are 0..n-1, exits. */
static int
short_reader(enum chan_kind kind, int n)
{
	struct chan *c = chan_open(kind, objname, CHAN_READ);
	unsigned char buf[MSG];
	struct msg m;
	if (c == NULL)
		return 2;
	for (int i = 0; i < n; i++) {
		ssize_t len = chan_recv(c, buf, sizeof(buf), 5000);
		if (!msg_check(buf, len, &m) || m.seq != (uint32_t)i)
			return 3;
	}
	return 0; /* no chan_close: a reader that just goes away */
}

BOTH(reader_gone_messages_stay)
{
	struct chan *c = make(kind, "gone", CHAN_WRITE);
	unsigned char buf[MSG];
	for (uint32_t i = 0; i < 5; i++)
		cr_assert_eq(chan_send(c, buf, msg_fill(buf, 0, i), 1000), 0);
	reap_ok(spawn(short_reader, kind, 2));
	cr_assert_eq(chan_depth(c), 3);
	chan_close(c);

	c = chan_open(kind, objname, CHAN_READ);
	cr_assert_not_null(c);
	struct msg m;
	for (uint32_t i = 2; i < 5; i++) {
		ssize_t n = chan_recv(c, buf, sizeof(buf), 1000);
		cr_assert(msg_check(buf, n, &m));
		cr_assert_eq(m.seq, i);
	}
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 0), 0);
	chan_close(c);
}

/* Reader child: on the CPU its parent pinned, at SCHED_IDLE (it runs only
 * while the parent does not), opens the channel, says so on fd and waits
 * for a message; exits 0 if one came. */
static int
idle_reader(enum chan_kind kind, int fd)
{
	struct sched_param sp = { .sched_priority = 0 };
	if (sched_setscheduler(0, SCHED_IDLE, &sp) == -1)
		return 2;
	struct chan *c = chan_open(kind, objname, CHAN_READ);
	unsigned char buf[MSG];
	if (c == NULL || write(fd, "r", 1) != 1)
		return 3;
	return chan_recv(c, buf, sizeof(buf), 10000) > 0 ? 0 : 1;
}

/* The state letter of /proc/PID/stat, or '?'. */
static char
proc_state(pid_t pid)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return '?';
	size_t n = fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[n] = '\0';
	const char *p = strrchr(line, ')');
	return p != NULL && p[1] == ' ' ? p[2] : '?';
}

/* A reader killed while it waits takes no message with it: a message sent
 * as it waits, the kill right after, before it has run again (it shares
 * our CPU at SCHED_IDLE), is still in the channel for the next reader.
 * Sleeping in mq_timedreceive, the reader was handed the message by the
 * send itself, and the kernel dropped it with the killed process. */
BOTH(a_reader_killed_while_waiting_leaves_the_message_queued)
{
	struct chan *c = make(kind, "waiting", CHAN_READ | CHAN_WRITE);
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0,
	    "sched_setaffinity: %s", strerror(errno));
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = spawn(idle_reader, kind, fds[1]);
	cr_assert(byte_within(fds[0], 5000), "reader did not start");
	char state = '?';
	for (int i = 0; i < 5000 && (state = proc_state(pid)) != 'S'; i++)
		usleep(1000);
	cr_assert_eq(state, 'S', "reader not asleep in its receive: %c", state);
	unsigned char buf[MSG];
	size_t len = msg_fill(buf, 3, 7);
	cr_assert_eq(chan_send(c, buf, len, 1000), 0);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
	    "reader: status 0x%x", st);
	struct msg m;
	ssize_t n = chan_recv(c, buf, sizeof(buf), 0);
	cr_assert_eq(n, (ssize_t)len, "the message went with the killed reader");
	cr_assert(msg_check(buf, n, &m) && m.writer == 3 && m.seq == 7);
	close(fds[0]);
	close(fds[1]);
	chan_close(c);
}

BOTH(message_too_large)
{
	struct chan *c = make(kind, "large", CHAN_READ | CHAN_WRITE);
	static unsigned char buf[MSG + 1];
	cr_assert_eq(chan_msgsize(c), MSG);
	errno = 0;
	cr_assert_eq(chan_send(c, buf, MSG + 1, 0), -1);
	cr_assert_eq(errno, EMSGSIZE);
	errno = 0;
	cr_assert_eq(chan_send(c, buf, 0, 0), -1);
	cr_assert_eq(errno, EMSGSIZE);
	cr_assert_eq(chan_depth(c), 0);
	memset(buf, 0xa5, MSG);
	cr_assert_eq(chan_send(c, buf, MSG, 0), 0);
	errno = 0;
	cr_assert_eq(chan_recv(c, buf, MSG - 1, 0), -1);
	cr_assert_eq(errno, EMSGSIZE);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 0), MSG);
	cr_assert_eq(buf[0], 0xa5);
	cr_assert_eq(buf[MSG - 1], 0xa5);
	cr_assert_eq(buf[MSG], 0);
	chan_close(c);
}

BOTH(depth)
{
	struct chan *c = make(kind, "depth", CHAN_READ | CHAN_WRITE);
	unsigned char buf[MSG];
	cr_assert_eq(chan_depth(c), 0);
	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(chan_send(c, buf, msg_fill(buf, 0, i), 0), 0);
	cr_assert_eq(chan_depth(c), 3);
	cr_assert_gt(chan_recv(c, buf, sizeof(buf), 0), 0);
	cr_assert_eq(chan_depth(c), 2);
	struct chan *other = chan_open(kind, objname, CHAN_WRITE);
	cr_assert_not_null(other);
	cr_assert_eq(chan_depth(other), 2, "depth seen from another handle");
	chan_close(other);
	chan_close(c);
}

BOTH(recv_timeout)
{
	struct chan *c = make(kind, "timeout", CHAN_READ);
	unsigned char buf[MSG];
	long long t0 = clock_ms();
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 0), 0);
	cr_assert_lt(clock_ms() - t0, 50);
	t0 = clock_ms();
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), 100), 0);
	long long dt = clock_ms() - t0;
	cr_assert(dt >= 90 && dt < 300, "recv(100) took %lld ms", dt);
	chan_close(c);
}

BOTH(create_open_unlink_errors)
{
	struct chan *c = make(kind, "errors", CHAN_READ);
	struct chan_attr a = { .kind = kind, .msgsize = MSG, .slots = SLOTS };
	errno = 0;
	cr_assert_eq(chan_create(&a, objname), -1);
	cr_assert_eq(errno, EEXIST);
	errno = 0;
	cr_assert_eq(chan_send(c, "x", 1, 0), -1, "send on a read-only handle");
	cr_assert_eq(errno, EBADF);
	chan_close(c);
	cr_assert_eq(chan_unlink(kind, objname), 0);
	errno = 0;
	cr_assert_eq(chan_unlink(kind, objname), -1);
	cr_assert_eq(errno, ENOENT);
	errno = 0;
	cr_assert_null(chan_open(kind, objname, CHAN_READ));
	cr_assert_eq(errno, ENOENT);
	a.msgsize = 100;
	errno = 0;
	cr_assert_eq(chan_create(&a, objname), -1, "a message size below the minimum");
	cr_assert_eq(errno, EINVAL);
}

static void
on_alarm(int sig)
{
	(void)sig;
}

/* A stage's signal handler only sets a flag (no SA_RESTART): the wait it
 * interrupts must come back with EINTR so the flag is seen at once. */
BOTH(signal_interrupts_recv)
{
	struct chan *c = make(kind, "eintr", CHAN_READ);
	struct sigaction sa = { .sa_handler = on_alarm };
	cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0);
	struct itimerval it = { .it_value = { .tv_usec = 50000 } };
	cr_assert_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
	unsigned char buf[MSG];
	long long t0 = clock_ms();
	errno = 0;
	cr_assert_eq(chan_recv(c, buf, sizeof(buf), -1), -1);
	cr_assert_eq(errno, EINTR);
	cr_assert_lt(clock_ms() - t0, 1000);
	chan_close(c);
}

/* A queue chan_create did not make, of messages outside the wire's sizes
 * (a program of the same user's at the name): refused, as a ring of
 * another geometry is (test_chan_shm.c), and chan_open_why says with
 * what size. */
Test(chan_mqueue, a_queue_of_messages_outside_the_wire_sizes_is_refused,
    .init = setup, .fini = teardown, .timeout = TIMEOUT_S)
{
	char inst[32];
	snprintf(inst, sizeof(inst), "t%dx", (int)getpid());
	cr_assert_eq(chan_objname(objname, sizeof(objname), inst, "small"), 0);
	struct mq_attr a = { .mq_maxmsg = 1, .mq_msgsize = WIRE_MSG_MIN - 1 };
	mqd_t q = mq_open(objname, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &a);
	cr_assert_neq(q, (mqd_t)-1, "mq_open %s: %s", objname, strerror(errno));
	mq_close(q);
	static const int modes[] = { CHAN_READ, CHAN_WRITE, CHAN_READ | CHAN_WRITE };
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		errno = 0;
		struct chan *c = chan_open(CHAN_MQUEUE, objname, modes[i]);
		cr_assert_null(c, "mode %d: accepted", modes[i]);
		cr_assert_eq(errno, EPROTO, "mode %d: %s", modes[i], strerror(errno));
		cr_assert_str_eq(chan_open_why(),
		    "its messages are 1023 bytes, not 1024..1048576");
	}
	/* Another failure has nothing to add. */
	cr_assert_null(chan_open(CHAN_MQUEUE, "/telem.no-such-queue", CHAN_READ));
	cr_assert_eq(errno, ENOENT);
	cr_assert_str_eq(chan_open_why(), "");
}
