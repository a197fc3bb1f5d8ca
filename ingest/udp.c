/* udp.c - binding and batch receiving for telem-ingest. */
#include "udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static void
fmt_addr(const struct sockaddr *sa, char *buf, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, cap, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, cap, "[%s]:%u", host, port);
	} else {
		snprintf(buf, cap, "?");
	}
}

/* Ask for `want` bytes; SO_RCVBUFFORCE passes net.core.rmem_max when we
 * may, else SO_RCVBUF gives what the system allows. Returns the effective
 * size (the kernel reports double what it grants; we report half). */
static int
set_rcvbuf(int fd, int want)
{
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) == -1)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
	int got = 0;
	socklen_t len = sizeof(got);
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) == -1)
		return -1;
	return got / 2;
}

static int
open_one(struct udp *u, const struct addrinfo *ai, int rcvbuf)
{
	struct udp_sock *s = &u->s[u->n];
	fmt_addr(ai->ai_addr, s->addr, sizeof(s->addr));
	s->drops = 0;
	s->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    ai->ai_protocol);
	if (s->fd == -1) {
		log_warn("socket %s", s->addr);
		return -1;
	}
	/* IPv6 only, but for an IPv4-mapped address (::ffff:a.b.c.d): that
	 * one is bound only by a socket that takes IPv4 too, and then
	 * receives what is sent to a.b.c.d. */
	int one = 1;
	if (ai->ai_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(
	    &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr))
		(void)setsockopt(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	int got = set_rcvbuf(s->fd, rcvbuf);
	if (got < 0) {
		log_warn("getsockopt SO_RCVBUF %s", s->addr);
		close(s->fd);
		return -1;
	}
	u->rcvbuf = got;
	if (bind(s->fd, ai->ai_addr, ai->ai_addrlen) == -1) {
		int e = errno;
		log_warn("bind %s", s->addr);
		close(s->fd);
		errno = e;
		return -1;
	}
	/* Port 0 is the kernel's choice: name the port it gave. */
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(s->fd, (struct sockaddr *)&ss, &sl) == 0)
		fmt_addr((struct sockaddr *)&ss, s->addr, sizeof(s->addr));
	else
		log_warn("getsockname %s", s->addr);
	u->n++;
	return 0;
}

void
udp_log_listening(const struct udp *u, const char *how)
{
	char addrs[UDP_MAX_SOCKS * 66] = "";
	size_t len = 0;
	for (size_t i = 0; i < u->n && len < sizeof(addrs); i++)
		len += (size_t)snprintf(addrs + len, sizeof(addrs) - len, "%s%s",
		    i ? ", " : "", u->s[i].addr);
	if (u->asked > 0 && u->rcvbuf != u->asked)
		log_info("listening on %s%s, receive buffer %d bytes (asked for %d%s)",
		    addrs, how, u->rcvbuf, u->asked, u->rcvbuf < u->asked ?
		    ": the kernel gives at most net.core.rmem_max without "
		    "CAP_NET_ADMIN" : "");
	else
		log_info("listening on %s%s, receive buffer %d bytes", addrs, how,
		    u->rcvbuf);
}

/* getaddrinfo for a UDP socket of host and a numeric port, any family:
 * what udp_open binds and udp_same_addrs compares. */
static int
resolve(const char *host, const char *port, struct addrinfo **res)
{
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_flags = AI_NUMERICSERV;
	return getaddrinfo(host, port, &hints, res);
}

int
udp_open(struct udp *u, const char *host, const char *port, int rcvbuf,
    int *permanent)
{
	struct addrinfo *res, *ai;
	u->n = 0;
	u->asked = rcvbuf;
	*permanent = 0;
	int rc = resolve(host, port, &res);
	if (rc != 0) {
		log_warnx("resolve %s port %s: %s", host, port, gai_strerror(rc));
		*permanent = rc != EAI_AGAIN;
		return -1;
	}
	for (ai = res; ai != NULL && u->n < UDP_MAX_SOCKS; ai = ai->ai_next) {
		size_t i;
		for (i = 0; i < u->n; i++) {  /* getaddrinfo repeats addresses */
			char a[64];
			fmt_addr(ai->ai_addr, a, sizeof(a));
			if (strcmp(a, u->s[i].addr) == 0)
				break;
		}
		if (i < u->n)
			continue;
		if (open_one(u, ai, rcvbuf) == -1) {
			/* Not an address of this machine: no retry helps. */
			*permanent = errno == EADDRNOTAVAIL;
			freeaddrinfo(res);
			udp_close(u);
			return -1;
		}
	}
	freeaddrinfo(res);
	return 0;
}

/* The addresses udp_open would bind for host and port, as fmt_addr
 * writes them, each once, into a (UDP_MAX_SOCKS of them); how many, or
 * -1 when host does not resolve. */
static int
addrs_of(const char *host, const char *port, char a[][64])
{
	struct addrinfo *res, *ai;
	if (resolve(host, port, &res) != 0)
		return -1;
	int n = 0;
	for (ai = res; ai != NULL && n < UDP_MAX_SOCKS; ai = ai->ai_next) {
		int i;
		fmt_addr(ai->ai_addr, a[n], sizeof(a[0]));
		for (i = 0; i < n && strcmp(a[i], a[n]) != 0; i++)
			;
		n += i == n;
	}
	freeaddrinfo(res);
	return n;
}

int
udp_same_addrs(const char *host1, const char *port1, const char *host2,
    const char *port2)
{
	char a[UDP_MAX_SOCKS][64], b[UDP_MAX_SOCKS][64];
	int na = addrs_of(host1, port1, a), nb = addrs_of(host2, port2, b);
	if (na <= 0 || na != nb)
		return 0;
	for (int i = 0; i < na; i++) {
		int j;
		for (j = 0; j < nb && strcmp(a[i], b[j]) != 0; j++)
			;
		if (j == nb)
			return 0;
	}
	return 1;
}

/* The kernel's drop count of a socket (SO_MEMINFO; the count SO_RXQ_OVFL
 * would attach to each datagram). 0 if the kernel cannot tell. */
static uint32_t
kernel_drops(int fd)
{
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mem);
	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) == -1 ||
	    len < sizeof(mem[0]) * (SK_MEMINFO_DROPS + 1))
		return 0;
	return mem[SK_MEMINFO_DROPS];
}

int
udp_adopt(struct udp *u, const int *fds, size_t n, uint64_t *drops)
{
	u->n = 0;
	u->asked = 0;
	*drops = 0;
	for (size_t i = 0; i < n && u->n < UDP_MAX_SOCKS; i++) {
		struct udp_sock *s = &u->s[u->n];
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss), tl = sizeof(int);
		int type = 0, got = 0;
		if (getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &type, &tl) == -1 ||
		    type != SOCK_DGRAM ||
		    getsockname(fds[i], (struct sockaddr *)&ss, &sl) == -1 ||
		    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
			log_warnx("fd %d is not a bound UDP socket", fds[i]);
			u->n = 0;
			return -1;
		}
		s->fd = fds[i];
		fmt_addr((struct sockaddr *)&ss, s->addr, sizeof(s->addr));
		(void)fcntl(s->fd, F_SETFD, FD_CLOEXEC);
		/* Drops from here on are what udp_recv reports. */
		s->drops = kernel_drops(s->fd);
		*drops += s->drops;
		sl = sizeof(got);
		if (getsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &got, &sl) == 0)
			u->rcvbuf = got / 2;
		u->n++;
	}
	return 0;
}

void
udp_close(struct udp *u)
{
	for (size_t i = 0; i < u->n; i++)
		close(u->s[i].fd);
	u->n = 0;
}

/* The drops of socket s since the last look. */
static uint64_t
new_drops_of(struct udp_sock *s)
{
	uint32_t d = kernel_drops(s->fd);
	if ((int32_t)(d - s->drops) <= 0)
		return 0;
	uint32_t n = d - s->drops;
	s->drops = d;
	return n;
}

/* No control messages: with SO_RXQ_OVFL the kernel writes one into every
 * datagram once the socket has ever dropped one (its count is cumulative),
 * which cost ingest an eighth of its time at 100 000 datagrams/s; one
 * SO_MEMINFO read per call gives the same count. */
int
udp_recv(struct udp *u, size_t i, struct udp_batch *b, uint64_t *new_drops)
{
	struct udp_sock *s = &u->s[i];
	struct mmsghdr msgs[UDP_BATCH];
	struct iovec iov[UDP_BATCH];

	for (size_t k = 0; k < UDP_BATCH; k++) {
		iov[k].iov_base = b->buf[k];
		iov[k].iov_len = UDP_DGRAM_MAX;
		memset(&msgs[k].msg_hdr, 0, sizeof(msgs[k].msg_hdr));
		msgs[k].msg_hdr.msg_iov = &iov[k];
		msgs[k].msg_hdr.msg_iovlen = 1;
	}
	*new_drops = 0;
	b->n = 0;
	int n = recvmmsg(s->fd, msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
	if (n == -1)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	for (int k = 0; k < n; k++) {
		b->len[k] = msgs[k].msg_len < UDP_DGRAM_MAX ? msgs[k].msg_len : UDP_DGRAM_MAX;
		b->trunc[k] = (msgs[k].msg_hdr.msg_flags & MSG_TRUNC) != 0;
	}
	b->n = (size_t)n;
	*new_drops = new_drops_of(s);
	return n;
}

uint64_t
udp_new_drops(struct udp *u)
{
	uint64_t total = 0;
	for (size_t i = 0; i < u->n; i++)
		total += new_drops_of(&u->s[i]);
	return total;
}

uint64_t
udp_total_drops(const struct udp *u)
{
	uint64_t total = 0;
	for (size_t i = 0; i < u->n; i++)
		total += kernel_drops(u->s[i].fd);
	return total;
}
