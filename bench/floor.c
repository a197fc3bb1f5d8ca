/* floor.c - bench-floor, the physical reference for telem's ingest: a bare
 * recvmmsg loop on a loopback UDP socket that only counts datagrams and bytes,
 * so the cost of ingest can be read against what the kernel alone costs. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "bench/loopback.h"

#define BATCH 64            /* datagrams per recvmmsg call */
#define BUF_BYTES 65536     /* one datagram buffer: any UDP payload fits */

struct opts {
	const char *host, *port;
	int rcvbuf;     /* bytes asked for */
	long quiet_ms;  /* stop after this long without a datagram */
	double max_s;   /* stop after this long in all */
	long wait_us;   /* once a datagram waits, let more gather this long */
};

struct counts {
	unsigned long long dgrams, bytes;
	uint32_t ovfl;          /* last SO_RXQ_OVFL counter seen */
	double first, last;     /* monotonic seconds of first/last batch */
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: bench-floor [-H host] [-p port] [-b bytes] [-q ms] [-t seconds]\n"
	    "                   [-w us]\n"
	    "  -H host      loopback address to bind (default 127.0.0.1)\n"
	    "  -p port      UDP port, 0 = any free one (default 1990)\n"
	    "  -b bytes     SO_RCVBUF asked for (default 4194304)\n"
	    "  -q ms        stop this long after the last datagram (default 500)\n"
	    "  -t seconds   stop after this long in all (default 60)\n"
	    "  -w us        once a datagram waits, sleep this long before reading\n"
	    "               (telem-ingest waits 1000; default 0: read at once)\n"
	    "  -h           this help\n"
	    "prints port=<N> and ready once bound; at the end a summary and\n"
	    "recv_datagrams=<N> drops=<N> cpu_s=<S>\n");
}

static long long
parse_ll(int opt, const char *s, long long lo, long long hi)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi)
		fatalx(EXIT_USAGE, "bad -%c value '%s': expected an integer in "
		    "[%lld, %lld]", opt, s, lo, hi);
	return v;
}

static void
parse_opts(int argc, char **argv, struct opts *o)
{
	int c;
	char *end;
	*o = (struct opts){ "127.0.0.1", "1990", 4 << 20, 500, 60, 0 };
	while ((c = getopt(argc, argv, "H:p:b:q:t:w:h")) != -1) {
		switch (c) {
		case 'H': o->host = optarg; break;
		case 'p': parse_ll(c, optarg, 0, 65535); o->port = optarg; break;
		case 'b': o->rcvbuf = (int)parse_ll(c, optarg, 1, INT_MAX / 2); break;
		case 'q': o->quiet_ms = (long)parse_ll(c, optarg, 1, 3600000); break;
		case 'w': o->wait_us = (long)parse_ll(c, optarg, 0, 999999); break;
		case 't':
			errno = 0;
			o->max_s = strtod(optarg, &end);
			if (*optarg == '\0' || *end != '\0' || errno != 0 ||
			    !(o->max_s >= 0.001 && o->max_s <= 86400))
				fatalx(EXIT_USAGE, "bad -t value '%s': expected "
				    "seconds in [0.001, 86400]", optarg);
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(EXIT_USAGE);
		}
	}
	if (optind != argc)
		fatalx(EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
}

/* Ask for `want` bytes of receive buffer: SO_RCVBUFFORCE passes
 * net.core.rmem_max but needs CAP_NET_ADMIN, so fall back to SO_RCVBUF.
 * Returns the size the kernel reports (it doubles the request for its
 * bookkeeping) and names the option that worked in *how. */
static int
set_rcvbuf(int fd, int want, const char **how)
{
	int got;
	socklen_t len = sizeof(got);
	*how = "SO_RCVBUFFORCE";
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) < 0) {
		*how = "SO_RCVBUF";
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want)) < 0)
			fatal(EXIT_FAILURE, "setsockopt SO_RCVBUF");
	}
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) < 0)
		fatal(EXIT_FAILURE, "getsockopt SO_RCVBUF");
	return got;
}

/* Bind a UDP socket to the first loopback address host:port resolves to,
 * with the receive buffer and SO_RXQ_OVFL set; *port gets the bound port. */
static int
open_receiver(const struct opts *o, int *rcvbuf, unsigned *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM,
	    .ai_flags = AI_NUMERICSERV | AI_PASSIVE }, *res, *ai;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	const char *how;
	int fd, one = 1, rc = getaddrinfo(o->host, o->port, &hints, &res);
	if (rc != 0)
		fatalx(EXIT_USAGE, "getaddrinfo %s: %s", o->host, gai_strerror(rc));
	for (ai = res; ai != NULL && !is_loopback(ai->ai_addr); ai = ai->ai_next)
		;
	if (ai == NULL)
		fatalx(EXIT_USAGE, "refusing %s: only loopback (127.0.0.0/8, ::1) "
		    "is allowed", o->host);
	fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fatal(EXIT_FAILURE, "socket");
	*rcvbuf = set_rcvbuf(fd, o->rcvbuf, &how);
	if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one)) < 0)
		fatal(EXIT_FAILURE, "setsockopt SO_RXQ_OVFL");
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		fatal(EXIT_FAILURE, "bind %s:%s", o->host, o->port);
	freeaddrinfo(res);
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0)
		fatal(EXIT_FAILURE, "getsockname");
	*port = ntohs(ss.ss_family == AF_INET6 ?
	    ((struct sockaddr_in6 *)&ss)->sin6_port :
	    ((struct sockaddr_in *)&ss)->sin_port);
	log_info("rcvbuf asked %d, effective %d (%s)", o->rcvbuf, *rcvbuf, how);
	return fd;
}

/* SIGINT/SIGTERM arrive on an fd polled with the socket, so the loop never
 * sleeps through a stop request. */
static int
open_signalfd(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		fatal(EXIT_FAILURE, "sigprocmask");
	int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		fatal(EXIT_FAILURE, "signalfd");
	return fd;
}

/* The kernel attaches SO_RXQ_OVFL (a running u32 count of drops on this
 * socket) only to datagrams queued after a drop; keep the latest. */
static void
account(struct counts *c, struct mmsghdr *m, int n)
{
	for (int i = 0; i < n; i++) {
		struct msghdr *h = &m[i].msg_hdr;
		c->bytes += m[i].msg_len;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm != NULL;
		    cm = CMSG_NXTHDR(h, cm))
			if (cm->cmsg_level == SOL_SOCKET &&
			    cm->cmsg_type == SO_RXQ_OVFL)
				memcpy(&c->ovfl, CMSG_DATA(cm), sizeof(c->ovfl));
		h->msg_controllen = CMSG_SPACE(sizeof(uint32_t));
	}
	c->dgrams += (unsigned long long)n;
}

/* Drain the socket with recvmmsg until -q ms of silence after the first
 * datagram, -t seconds in all, or a signal. Each pass either takes at least
 * one datagram or waits in poll, so the loop is bounded by time; the pass
 * cap is only a guard. */
static void
recv_loop(int fd, int sfd, const struct opts *o, struct mmsghdr *m,
    struct counts *c)
{
	double deadline = clock_s() + o->max_s;
	for (unsigned long long pass = 0; pass < (1ULL << 40); pass++) {
		int n = recvmmsg(fd, m, BATCH, MSG_DONTWAIT, NULL);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			fatal(EXIT_FAILURE, "recvmmsg");
		if (n > 0) {
			account(c, m, n);
			c->last = clock_s();
			if (c->dgrams == (unsigned long long)n)
				c->first = c->last;
			if (n == BATCH)
				continue; /* likely more queued: skip poll */
		}
		double now = clock_s(), until = deadline;
		if (c->dgrams > 0 && c->last + o->quiet_ms / 1e3 < until)
			until = c->last + o->quiet_ms / 1e3;
		if (now >= until)
			return;
		struct pollfd pf[2] = { { fd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		int r = poll(pf, 2, (int)((until - now) * 1e3) + 1);
		if (r < 0 && errno != EINTR)
			fatal(EXIT_FAILURE, "poll");
		if (r > 0 && pf[1].revents != 0)
			return;
		if (r > 0 && o->wait_us > 0) {
			struct timespec ts = { 0, o->wait_us * 1000 };
			(void)nanosleep(&ts, NULL);
		}
	}
}

/* Drops from /proc/net/udp{,6}, found by the socket's inode: this also sees
 * drops after the last datagram received, which SO_RXQ_OVFL cannot report.
 * Returns -1 when the line is not found. */
static long long
proc_drops(int fd, int family)
{
	const char *path = family == AF_INET6 ? "/proc/net/udp6" : "/proc/net/udp";
	struct stat st;
	char line[512];
	long long drops = -1;
	if (fstat(fd, &st) < 0)
		fatal(EXIT_FAILURE, "fstat socket");
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		log_warn("fopen %s", path);
		return -1;
	}
	for (int i = 0; i < 1000000 && fgets(line, sizeof(line), f) != NULL; i++) {
		unsigned long long ino, d;
		/* sl local rem st tx:rx tr:when retr uid timeout inode ref ptr drops */
		if (sscanf(line, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %*s %*s %llu",
		    &ino, &d) == 2 && ino == (unsigned long long)st.st_ino) {
			drops = (long long)d;
			break;
		}
	}
	if (fclose(f) != 0)
		log_warn("fclose %s", path);
	return drops;
}

static void
report(const struct counts *c, long long drops, int rcvbuf)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		fatal(EXIT_FAILURE, "getrusage");
	double user = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
	double sys = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	double secs = c->dgrams > 0 ? c->last - c->first : 0;
	double per_m = c->dgrams > 0 ? (user + sys) / (c->dgrams / 1e6) : 0;
	printf("floor: %llu datagrams, %llu bytes in %.3f s (first to last): "
	    "%.0f datagrams/s; kernel drops %lld; cpu %.3f s (user %.3f, sys "
	    "%.3f) = %.3f cpu-s per million datagrams; rcvbuf %d\n",
	    c->dgrams, c->bytes, secs, secs > 0 ? c->dgrams / secs : 0, drops,
	    user + sys, user, sys, per_m, rcvbuf);
	printf("recv_datagrams=%llu drops=%lld cpu_s=%.3f\n", c->dgrams, drops,
	    user + sys);
	if (fflush(stdout) != 0)
		fatal(EXIT_FAILURE, "fflush stdout");
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct counts c = { 0, 0, 0, 0, 0 };
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	int rcvbuf;
	unsigned port;

	log_init("bench-floor", NULL);
	parse_opts(argc, argv, &o);
	int sfd = open_signalfd();
	int fd = open_receiver(&o, &rcvbuf, &port);

	char *bufs = malloc((size_t)BATCH * BUF_BYTES);
	struct iovec *iov = calloc(BATCH, sizeof(*iov));
	struct mmsghdr *m = calloc(BATCH, sizeof(*m));
	char (*ctl)[CMSG_SPACE(sizeof(uint32_t))] = calloc(BATCH, sizeof(*ctl));
	if (bufs == NULL || iov == NULL || m == NULL || ctl == NULL)
		fatal(EXIT_FAILURE, "malloc");
	for (int i = 0; i < BATCH; i++) {
		iov[i] = (struct iovec){ bufs + (size_t)i * BUF_BYTES, BUF_BYTES };
		m[i].msg_hdr = (struct msghdr){ .msg_iov = &iov[i], .msg_iovlen = 1,
		    .msg_control = ctl[i], .msg_controllen = sizeof(ctl[i]) };
	}
	printf("port=%u\nready\n", port);
	if (fflush(stdout) != 0)
		fatal(EXIT_FAILURE, "fflush stdout");

	recv_loop(fd, sfd, &o, m, &c);
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0)
		fatal(EXIT_FAILURE, "getsockname");
	long long drops = proc_drops(fd, ss.ss_family);
	if (drops < (long long)c.ovfl)
		drops = c.ovfl;
	report(&c, drops, rcvbuf);
	free(ctl);
	free(m);
	free(iov);
	free(bufs);
	if (close(fd) < 0 || close(sfd) < 0)
		fatal(EXIT_FAILURE, "close");
	return 0;
}
