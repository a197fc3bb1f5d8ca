/* test_carbon.c - the egresses' graphite sink (egress/carbon.c) against a
 * TCP listener of the test's own on 127.0.0.1: the line format, drop-oldest
 * with counts, reconnection, partial writes, and never blocking on a peer
 * that does not read. Waits are bounded polls, never timed assertions. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "egress/carbon.h"
#include "harness.h"

#define B(s) s, sizeof(s) - 1

TestSuite(carbon, .timeout = 60);

/* A non-blocking listener on 127.0.0.1:*port (0: any; the port is
 * written back). */
static int
listen_on(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(*port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	cr_assert(fd != -1);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0,
	    "bind %d: %s", *port, strerror(errno));
	cr_assert_eq(listen(fd, 8), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static struct carbon *
sink(int port, size_t cap)
{
	char p[8];
	const char *why = NULL;
	snprintf(p, sizeof(p), "%d", port);
	struct carbon *c = carbon_new("127.0.0.1", p, "telem", cap, &why);
	cr_assert_not_null(c, "carbon_new: %s", why);
	return c;
}

/* Poll the sink until the listener has its connection; non-blocking fd. */
static int
accept_from(int lfd, struct carbon *c)
{
	for (int i = 0; i < 4000; i++) {
		carbon_poll(c);
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd != -1)
			return fd;
		h_nap_ms(5);
	}
	cr_assert_fail("the sink never connected");
	return -1;
}

/* Poll the sink and read from fd until `want` bytes came (buf holds them,
 * NUL-terminated) or 20 s passed; returns the bytes read. */
static size_t
read_bytes(int fd, struct carbon *c, char *buf, size_t want)
{
	size_t got = 0;
	for (int i = 0; i < 4000 && got < want; i++) {
		carbon_poll(c);
		ssize_t n = read(fd, buf + got, want - got);
		if (n > 0)
			got += (size_t)n;
		else
			h_nap_ms(5);
	}
	buf[got] = '\0';
	return got;
}

static void
line_n(struct carbon *c, unsigned i)
{
	char name[16], val[16];
	int len = snprintf(name, sizeof(name), "n%u", i);
	snprintf(val, sizeof(val), "%u", i);
	carbon_line(c, name, (size_t)len, "cma", "", val, 1);
}

Test(carbon, lines_arrive_in_the_plaintext_format)
{
	int port = 0, lfd = listen_on(&port);
	struct carbon *c = sink(port, 4096);
	carbon_line(c, "a", 1, "q50", "", "10", 1700000000);
	carbon_line(c, "b", 1, "cma", ";k=v", "1666.6666666666667", 1700000000);
	carbon_line(c, "abc", 2, "q0", "", "0", 1700000001);  /* name is name[0..len) */
	static const char want[] = "telem.a.q50 10 1700000000\n"
	    "telem.b.cma;k=v 1666.6666666666667 1700000000\n"
	    "telem.ab.q0 0 1700000001\n";
	cr_assert_eq(carbon_pending(c), sizeof(want) - 1);
	int fd = accept_from(lfd, c);
	char buf[256];
	read_bytes(fd, c, buf, sizeof(want) - 1);
	cr_assert_str_eq(buf, want);
	cr_assert(carbon_connected(c));
	cr_assert_eq(carbon_pending(c), 0);
	cr_assert_eq(carbon_dropped(c), 0);
	carbon_free(c);
	close(fd);
	close(lfd);
}

Test(carbon, a_full_buffer_drops_the_oldest_whole_lines_and_counts_them)
{
	/* A port nobody listens on yet: every connect is refused. */
	int port = 0;
	close(listen_on(&port));
	struct carbon *c = sink(port, 100);
	for (unsigned i = 0; i < 10; i++) {  /* "telem.nI.cma I 1\n": 17 bytes */
		line_n(c, i);
		carbon_poll(c);
	}
	cr_assert(!carbon_connected(c));
	cr_assert_eq(carbon_dropped(c), 5);
	cr_assert_eq(carbon_pending(c), 85);
	/* Carbon comes: the five newest lines arrive, whole and in order. */
	int lfd = listen_on(&port);
	int fd = accept_from(lfd, c);
	char buf[256];
	read_bytes(fd, c, buf, 85);
	cr_assert_str_eq(buf, "telem.n5.cma 5 1\ntelem.n6.cma 6 1\n"
	    "telem.n7.cma 7 1\ntelem.n8.cma 8 1\ntelem.n9.cma 9 1\n");
	cr_assert_eq(carbon_dropped(c), 5);
	carbon_free(c);
	close(fd);
	close(lfd);
}

Test(carbon, a_line_longer_than_the_buffer_is_dropped_and_counted)
{
	int port = 0;
	close(listen_on(&port));
	struct carbon *c = sink(port, 20);
	carbon_line(c, "a_rather_long_name", 18, "cma", "", "1", 1);
	cr_assert_eq(carbon_dropped(c), 1);
	cr_assert_eq(carbon_pending(c), 0);
	line_n(c, 1);
	cr_assert_eq(carbon_pending(c), 17);
	cr_assert_eq(carbon_dropped(c), 1);
	carbon_free(c);
}

Test(carbon, reconnects_after_the_listener_closes_and_reopens)
{
	int port = 0, lfd = listen_on(&port);
	struct carbon *c = sink(port, 4096);
	char buf[256];
	line_n(c, 1);
	int fd = accept_from(lfd, c);
	read_bytes(fd, c, buf, 17);
	cr_assert_str_eq(buf, "telem.n1.cma 1 1\n");
	/* Carbon goes away: the sink notices, keeps new lines, retries. */
	close(fd);
	close(lfd);
	for (int i = 0; i < 2000 && carbon_connected(c); i++, h_nap_ms(5))
		carbon_poll(c);
	cr_assert(!carbon_connected(c), "the closed connection went unnoticed");
	line_n(c, 2);
	line_n(c, 3);
	for (int i = 0; i < 5; i++)
		carbon_poll(c);  /* refused: backoff */
	lfd = listen_on(&port);
	fd = accept_from(lfd, c);
	read_bytes(fd, c, buf, 34);
	cr_assert_str_eq(buf, "telem.n2.cma 2 1\ntelem.n3.cma 3 1\n");
	cr_assert_eq(carbon_dropped(c), 0);
	carbon_free(c);
	close(fd);
	close(lfd);
}

/* A peer that takes every connection and closes it at once (a proxy with
 * no carbon behind it): each such connection is a failure, so the retries
 * back off as for a refused connect, instead of coming every 100 ms with
 * two log lines each. Over 2.5 s: connects at about 0, 0.1, 0.3, 0.7 and
 * 1.5 s, not 20 or more; "connected" said twice (the first, and after the
 * outage was said), the drops after that once. */
Test(carbon, a_peer_that_drops_every_connection_is_retried_with_backoff)
{
	int port = 0, lfd = listen_on(&port);
	struct carbon *c = sink(port, 64 * 1024);
	char path[128];
	h_tmp_name(path, sizeof(path), "carbonlog");
	int logfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_neq(logfd, -1);
	int saved = dup(STDERR_FILENO);
	cr_assert_neq(saved, -1);
	cr_assert_neq(dup2(logfd, STDERR_FILENO), -1);
	int accepts = 0;
	for (int i = 0; i < 500; i++) {  /* 2.5 s and more */
		line_n(c, (unsigned)i);
		carbon_poll(c);
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd != -1) {
			accepts++;
			close(fd);
		}
		h_nap_ms(5);
	}
	cr_assert_neq(dup2(saved, STDERR_FILENO), -1);
	close(saved);
	close(logfd);
	char *log = h_slurp(path);
	unlink(path);
	cr_assert_not_null(log);
	cr_assert_geq(accepts, 2, "%d connections", accepts);
	cr_assert_leq(accepts, 7, "%d connections in 2.5 s", accepts);
	cr_assert_eq(h_count(log, ": connected"), 2, "%s", log);
	cr_assert_leq(h_count(log, "again, less than 10 s after connecting"), 1,
	    "%s", log);
	free(log);
	carbon_free(c);
	close(lfd);
}

/* Read everything the sink sends to fd until it holds nothing more and
 * `expect` lines came or were dropped; check that every line is whole,
 * well formed and numbered above the one before (drops are whole lines,
 * a cut line goes on from the right byte). Returns the lines read. */
static unsigned
read_stream(int fd, struct carbon *c, unsigned expect, long long first)
{
	static char buf[1 << 16];
	char line[64];
	size_t ll = 0;
	unsigned lines = 0;
	long long last = first - 1;
	for (int idle = 0; idle < 4000; ) {
		carbon_poll(c);
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0) {
			if (carbon_pending(c) == 0 && lines + carbon_dropped(c) >= expect)
				break;
			idle++;
			h_nap_ms(5);
			continue;
		}
		for (ssize_t i = 0; i < n; i++) {
			cr_assert_lt(ll, sizeof(line) - 1, "line too long: %.*s",
			    (int)ll, line);
			line[ll++] = buf[i];
			if (buf[i] != '\n')
				continue;
			line[ll] = '\0';
			unsigned a, b, ts;
			char end;
			cr_assert_eq(sscanf(line, "telem.n%u.cma %u %u%c", &a, &b, &ts,
			    &end), 4, "bad line '%s'", line);
			cr_assert(a == b && ts == 1 && end == '\n', "bad line '%s'", line);
			cr_assert_gt((long long)a, last, "line '%s' after n%lld", line, last);
			last = a;
			lines++;
			ll = 0;
		}
	}
	cr_assert_eq(ll, 0, "a cut line at the end: %.*s", (int)ll, line);
	return lines;
}

Test(carbon, a_peer_that_does_not_read_never_blocks_the_sink)
{
	int port = 0, lfd = listen_on(&port);
	struct carbon *c = sink(port, 64 * 1024);
	int fd = accept_from(lfd, c);
	/* ~6 MB into a 64 KiB buffer and whatever the socket holds, with a
	 * poll every 100 lines: if a write blocked, the test would time out. */
	const unsigned total = 200000;
	for (unsigned i = 0; i < total; i++) {
		line_n(c, i);
		if (i % 100 == 0)
			carbon_poll(c);
	}
	cr_assert(carbon_connected(c));
	cr_assert_gt(carbon_dropped(c), 0);
	cr_assert_leq(carbon_pending(c), 64 * 1024 + CARBON_LINE_MAX);
	/* Now it reads: the stream is whole lines, oldest dropped first. */
	unsigned lines = read_stream(fd, c, total, 0);
	cr_assert_eq(lines + carbon_dropped(c), total, "%u read + %llu dropped",
	    lines, (unsigned long long)carbon_dropped(c));
	carbon_free(c);
	close(fd);
	close(lfd);
}

Test(carbon, a_line_cut_by_a_lost_connection_is_sent_whole_on_the_next)
{
	int port = 0, lfd = listen_on(&port);
	struct carbon *c = sink(port, 1 << 20);
	int fd = accept_from(lfd, c);
	/* Fill the socket until the sink holds some back: most likely the
	 * socket took part of a line. */
	unsigned i = 0;
	while (carbon_pending(c) == 0 && i < 2000000) {
		for (unsigned k = 0; k < 1000; k++, i++)
			line_n(c, i);
		carbon_poll(c);
	}
	cr_assert_gt(carbon_pending(c), 0);
	/* The peer resets the connection with data unread. */
	struct linger lg = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	close(lfd);
	for (int k = 0; k < 2000 && carbon_connected(c); k++, h_nap_ms(5))
		carbon_poll(c);
	cr_assert(!carbon_connected(c), "the reset went unnoticed");
	size_t held = carbon_pending(c);
	uint64_t held_lines = carbon_held(c);
	lfd = listen_on(&port);
	fd = accept_from(lfd, c);
	/* The new connection starts on a line boundary: every line whole,
	 * as many as carbon_held said (the cut one among them). */
	unsigned lines = read_stream(fd, c, 0, 0);
	cr_assert_gt(lines, 0);
	cr_assert_eq(lines, held_lines, "%u read, %llu held", lines,
	    (unsigned long long)held_lines);
	cr_assert_eq(carbon_held(c), 0);
	cr_assert_eq(carbon_pending(c), 0, "%zu held", held);
	cr_assert_eq(carbon_dropped(c), 0);
	carbon_free(c);
	close(fd);
	close(lfd);
}

/* At exit, what is still buffered is counted: the whole lines of the
 * ring (wrapped around its end here) ... */
Test(carbon, lines_left_at_exit_are_counted_dropped)
{
	int port = 0;
	close(listen_on(&port));
	struct carbon *c = sink(port, 100);
	for (unsigned i = 0; i < 10; i++) {  /* 17 bytes each: 5 fit */
		line_n(c, i);
		carbon_poll(c);
	}
	cr_assert_eq(carbon_dropped(c), 5);
	/* gives up (carbon is unreachable) and drops what is left */
	cr_assert_eq(carbon_drain(c, 200), 5);
	cr_assert_eq(carbon_dropped(c), 10);
	cr_assert_eq(carbon_dropped_new(c), 10);
	cr_assert_eq(carbon_dropped_new(c), 0);
	cr_assert_eq(carbon_pending(c), 0);
	cr_assert_eq(carbon_drop_pending(c), 0);
	/* The sink goes on afterwards as an empty one. */
	line_n(c, 1);
	cr_assert_eq(carbon_pending(c), 17);
	cr_assert_eq(carbon_drop_pending(c), 1);
	carbon_free(c);
}

/* ... and the line a full socket cut: every line is either read whole by
 * the peer or counted dropped, never both, never neither. */
Test(carbon, a_cut_line_left_at_exit_is_counted_too)
{
	int port = 0, lfd = listen_on(&port);
	struct carbon *c = sink(port, 64 * 1024);
	int fd = accept_from(lfd, c);
	/* ~7 MB: past what the socket takes, so the buffer is full and the
	 * last poll most likely leaves a line cut in the socket. */
	const unsigned total = 300000;
	for (unsigned i = 0; i < total; i++) {
		line_n(c, i);
		if (i % 100 == 0)
			carbon_poll(c);
	}
	carbon_poll(c);
	cr_assert_gt(carbon_dropped(c), 0);
	cr_assert_gt(carbon_pending(c), 0);
	uint64_t left = carbon_drop_pending(c);
	cr_assert_gt(left, 0);
	cr_assert_eq(carbon_pending(c), 0);
	uint64_t dropped = carbon_dropped(c);
	cr_assert_geq(dropped, left);
	carbon_free(c);
	/* The peer reads what the kernel took, to the end. */
	int fl = fcntl(fd, F_GETFL);
	cr_assert_eq(fcntl(fd, F_SETFL, fl & ~O_NONBLOCK), 0);
	static char buf[1 << 16];
	unsigned long long lines = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t k = 0; k < n; k++)
			lines += buf[k] == '\n';
	cr_assert_eq(n, 0, "read: %s", strerror(errno));
	cr_assert_eq(lines + dropped, total, "%llu read + %llu dropped", lines,
	    (unsigned long long)dropped);
	close(fd);
	close(lfd);
}

struct addr_case {
	const char *spec, *host, *port;  /* host NULL: must be refused */
};

Test(carbon, addresses_are_parsed_or_refused)
{
	static const struct addr_case cases[] = {
		{ "127.0.0.1:2003", "127.0.0.1", "2003" },
		{ "localhost:1", "localhost", "1" },
		{ "carbon.example:65535", "carbon.example", "65535" },
		{ "[::1]:2003", "::1", "2003" },
		{ "", NULL, NULL }, { "host", NULL, NULL }, { ":2003", NULL, NULL },
		{ "host:", NULL, NULL }, { "host:0", NULL, NULL },
		{ "host:65536", NULL, NULL }, { "host:20x3", NULL, NULL },
		{ "host:-1", NULL, NULL }, { "host:000002003", NULL, NULL },
		{ "::1:2003", NULL, NULL }, { "[::1]", NULL, NULL },
		{ "[::1]2003", NULL, NULL }, { "[]:2003", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char host[CARBON_HOST_MAX], port[8];
		const char *why = NULL;
		int r = carbon_parse_addr(cases[i].spec, host, sizeof(host), port,
		    sizeof(port), &why);
		if (cases[i].host == NULL) {
			cr_expect_eq(r, -1, "'%s' accepted", cases[i].spec);
			cr_expect_not_null(why);
			continue;
		}
		cr_expect_eq(r, 0, "'%s': %s", cases[i].spec, why);
		cr_expect_str_eq(host, cases[i].host);
		cr_expect_str_eq(port, cases[i].port);
	}
}

Test(carbon, prefixes_backoff_and_bad_hosts)
{
	cr_expect(carbon_prefix_ok("telem"));
	cr_expect(carbon_prefix_ok("site1.telem"));
	cr_expect(!carbon_prefix_ok(""));
	cr_expect(!carbon_prefix_ok("a b"));
	cr_expect(!carbon_prefix_ok("a\tb"));
	cr_expect(!carbon_prefix_ok("a;b=c"));
	cr_expect(!carbon_prefix_ok("caf\xc3\xa9"));
	char longp[CARBON_PREFIX_MAX + 2];
	memset(longp, 'p', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	cr_expect(!carbon_prefix_ok(longp));
	longp[CARBON_PREFIX_MAX] = '\0';
	cr_expect(carbon_prefix_ok(longp));

	/* 100 ms doubling to 10 s, and 100 ms again after a success. */
	static const long long want[] = { 100, 200, 400, 800, 1600, 3200, 6400,
	    10000, 10000 };
	long long b = 0;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		b = carbon_backoff_next(b);
		cr_expect_eq(b, want[i], "step %zu: %lld", i, b);
	}
	cr_expect_eq(carbon_backoff_next(0), 100);

	const char *why = NULL;
	errno = 0;
	cr_expect_null(carbon_new("no-such-host.invalid", "2003", "telem", 4096, &why));
	cr_expect_eq(errno, EINVAL);
	cr_expect_not_null(why);
	cr_expect_null(carbon_new("127.0.0.1", "2003", "bad prefix", 4096, &why));
}

/* Read fd until the peer closes it (polling the sink meanwhile); returns
 * the bytes read, or -1 if it stayed open for 20 s. */
static long
read_to_eof(int fd, struct carbon *c, char *buf, size_t cap)
{
	size_t got = 0;
	for (int i = 0; i < 4000; i++) {
		carbon_poll(c);
		ssize_t n = read(fd, buf + got, cap - 1 - got);
		if (n == 0) {
			buf[got] = '\0';
			return (long)got;
		}
		if (n > 0)
			got += (size_t)n;
		else
			h_nap_ms(5);
	}
	buf[got] = '\0';
	return -1;
}

/* --connection per-flush (docs/design.md §14): no connection while nothing is
 * due; each flush's lines on their own connection, closed after them; the
 * next flush's lines never on the previous flush's connection. */
Test(carbon, per_flush_connection_carries_one_flush_and_closes)
{
	int port = 0, lfd = listen_on(&port);
	struct carbon *c = sink(port, 4096);
	carbon_set_per_flush(c);
	for (int i = 0; i < 20; i++) {
		carbon_poll(c);
		h_nap_ms(5);
	}
	cr_assert_eq(accept(lfd, NULL, NULL), -1, "connected with nothing to send");
	carbon_path_line(c, B("stats.a"), "1", 100);
	carbon_path_line(c, B("stats.b;k=v"), "2.5", 100);
	carbon_end_flush(c);
	carbon_path_line(c, B("stats.a"), "3", 110);  /* the next flush, not ended */
	char buf[512];
	int fd = accept_from(lfd, c);
	cr_assert_eq(read_to_eof(fd, c, buf, sizeof(buf)), 34, "%s", buf);
	cr_assert_str_eq(buf, "stats.a 1 100\nstats.b;k=v 2.5 100\n");
	close(fd);
	cr_assert_eq(carbon_pending(c), 14);
	for (int i = 0; i < 20; i++) {
		carbon_poll(c);
		h_nap_ms(5);
	}
	cr_assert_eq(accept(lfd, NULL, NULL), -1, "a flush not ended was sent");
	carbon_end_flush(c);
	fd = accept_from(lfd, c);
	cr_assert_eq(read_to_eof(fd, c, buf, sizeof(buf)), 14);
	cr_assert_str_eq(buf, "stats.a 3 110\n");
	cr_assert_eq(carbon_pending(c), 0);
	cr_assert_eq(carbon_dropped(c), 0);
	close(fd);
	carbon_free(c);
	close(lfd);
}

/* carbon_begin_flush .. carbon_end_flush (the statsd egress's flushes): a
 * flush over the buffer's size is kept whole, the ring growing for it;
 * while carbon is away, what is kept of earlier flushes is first cut to
 * that size, and dropped before any line of the flush being written. */
Test(carbon, a_flush_is_kept_whole_and_earlier_flushes_dropped_first)
{
	int port = 0;
	close(listen_on(&port));  /* carbon away */
	struct carbon *c = sink(port, 100);
	carbon_begin_flush(c);
	for (unsigned i = 0; i < 10; i++)  /* "telem.nI.cma I 1\n": 17 bytes */
		line_n(c, i);
	carbon_end_flush(c);
	carbon_poll(c);
	cr_assert_eq(carbon_dropped(c), 0);
	cr_assert_eq(carbon_pending(c), 170);
	/* the next flush: the first is cut to 100 bytes (its last 5 lines),
	 * then 3 of those make room in the grown ring (200 bytes) for the
	 * new flush's 8 lines, none of which is dropped */
	carbon_begin_flush(c);
	cr_assert_eq(carbon_dropped(c), 5);
	cr_assert_eq(carbon_pending(c), 85);
	for (unsigned i = 10; i < 18; i++)  /* 19 bytes each */
		line_n(c, i);
	carbon_end_flush(c);
	cr_assert_eq(carbon_dropped(c), 8);
	cr_assert_eq(carbon_pending(c), 2 * 17 + 8 * 19);
	int lfd = listen_on(&port);
	int fd = accept_from(lfd, c);
	char buf[512];
	read_bytes(fd, c, buf, 2 * 17 + 8 * 19);
	cr_assert_str_eq(buf, "telem.n8.cma 8 1\ntelem.n9.cma 9 1\n"
	    "telem.n10.cma 10 1\ntelem.n11.cma 11 1\ntelem.n12.cma 12 1\n"
	    "telem.n13.cma 13 1\ntelem.n14.cma 14 1\ntelem.n15.cma 15 1\n"
	    "telem.n16.cma 16 1\ntelem.n17.cma 17 1\n");
	cr_assert_eq(carbon_pending(c), 0);
	cr_assert_eq(carbon_dropped(c), 8);
	carbon_free(c);
	close(fd);
	close(lfd);
}
