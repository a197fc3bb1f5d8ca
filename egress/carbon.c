/* carbon.c - the graphite sink of carbon.h: a ring of whole lines, the line
 * being written kept whole on the side, and a connection driven by
 * non-blocking calls only (connect, sendmsg, recv), with backoff. */
#include "egress/carbon.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "stats.h"

#define CARBON_ADDRS 8
#define CONNECT_TIMEOUT_MS 10000
#define DROP_LOG_MS 60000

enum carbon_state { C_DOWN, C_CONNECTING, C_UP };

struct carbon_addr {
	struct sockaddr_storage sa;
	socklen_t len;
};

struct carbon {
	char where[CARBON_HOST_MAX + 16];   /* "host:port", for logs */
	char prefix[CARBON_PREFIX_MAX + 1];
	struct carbon_addr addr[CARBON_ADDRS];
	int naddr, next_addr;               /* tried in turn, one per attempt */
	enum carbon_state state;
	int fd;
	long long retry_at_ms, backoff_ms, connect_deadline_ms;
	int outage_logged;                  /* "connect failed" said this outage */
	int up_told;                        /* "connected" said since then */
	long long up_at_ms;                 /* when the connection was made */
	struct log_limit flap_log;          /* connections that did not last */
	/* Whole lines not yet begun, oldest at head: dropping the oldest is
	 * cutting at the first '\n'. */
	char *ring;
	size_t cap, head, used;
	uint64_t ring_lines;                /* the lines in it */
	/* The line being written, whole, sent up to cur_off: a lost
	 * connection sends it again from 0 on the next one. */
	char cur[CARBON_LINE_MAX];
	size_t cur_len, cur_off;
	uint64_t dropped;
	uint64_t dropped_told;      /* returned by carbon_dropped_new so far */
	struct log_limit drop_log;
	/* carbon_set_per_flush: a connection per flush. flush_left is the
	 * bytes of ended flushes not yet sent: the connection carries those
	 * and is closed once they are out; the next flush opens another. */
	int per_flush;
	size_t flush_left;
	/* carbon_begin_flush .. carbon_end_flush: a flush being written.
	 * bound is the buffer size asked for, which the ring outgrows only to
	 * hold that flush whole; open is the flush's bytes, the ring's newest. */
	size_t bound, open;
	int in_flush;
};

int
carbon_parse_addr(const char *spec, char *host, size_t hcap, char *port,
    size_t pcap, const char **why)
{
	const char *h = spec, *colon;
	size_t hlen;
	if (*spec == '[') {
		const char *end = strchr(spec, ']');
		if (end == NULL || end[1] != ':') {
			*why = "must be [address]:port";
			return -1;
		}
		h = spec + 1;
		hlen = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL || memchr(spec, ':', (size_t)(colon - spec))) {
			*why = "must be host:port (an IPv6 address in brackets)";
			return -1;
		}
		hlen = (size_t)(colon - spec);
	}
	const char *p = colon + 1;
	size_t plen = strlen(p);
	if (hlen == 0 || hlen >= hcap || hlen >= CARBON_HOST_MAX) {
		*why = "the host is empty or too long";
		return -1;
	}
	long v = 0;
	for (size_t i = 0; i < plen && plen <= 5; i++)
		v = p[i] >= '0' && p[i] <= '9' ? v * 10 + (p[i] - '0') : -1000000;
	if (plen == 0 || plen > 5 || plen >= pcap || v < 1 || v > 65535) {
		*why = "the port must be a number in 1..65535";
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memcpy(port, p, plen + 1);
	return 0;
}

int
carbon_prefix_ok(const char *p)
{
	size_t n = strlen(p);
	if (n == 0 || n > CARBON_PREFIX_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] <= ' ' || p[i] > '~' || p[i] == ';')
			return 0;  /* ';' would start carbon's tags */
	return 1;
}

long long
carbon_backoff_next(long long prev_ms)
{
	if (prev_ms < CARBON_BACKOFF_MIN_MS)
		return CARBON_BACKOFF_MIN_MS;
	return prev_ms >= CARBON_BACKOFF_MAX_MS / 2 ? CARBON_BACKOFF_MAX_MS :
	    prev_ms * 2;
}

static int
resolve(struct carbon *c, const char *host, const char *port, const char **why)
{
	struct addrinfo hints, *res, *ai;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		*why = rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
		return -1;
	}
	for (ai = res; ai != NULL && c->naddr < CARBON_ADDRS; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(c->addr[0].sa))
			continue;
		memcpy(&c->addr[c->naddr].sa, ai->ai_addr, ai->ai_addrlen);
		c->addr[c->naddr++].len = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	if (c->naddr == 0) {
		*why = "no usable address";
		return -1;
	}
	return 0;
}

struct carbon *
carbon_new(const char *host, const char *port, const char *prefix,
    size_t buffer_bytes, const char **why)
{
	if (!carbon_prefix_ok(prefix) || strlen(host) >= CARBON_HOST_MAX ||
	    buffer_bytes == 0) {
		*why = "prefix, host or buffer size not valid";
		errno = EINVAL;
		return NULL;
	}
	struct carbon *c = calloc(1, sizeof(*c));
	if (c == NULL || (c->ring = malloc(buffer_bytes)) == NULL) {
		free(c);
		*why = "out of memory for the send buffer";
		errno = ENOMEM;
		return NULL;
	}
	c->cap = c->bound = buffer_bytes;
	c->fd = -1;
	c->state = C_DOWN;
	snprintf(c->prefix, sizeof(c->prefix), "%s", prefix);
	snprintf(c->where, sizeof(c->where), strchr(host, ':') ? "[%s]:%s" :
	    "%s:%s", host, port);
	if (resolve(c, host, port, why) == -1) {
		carbon_free(c);
		errno = EINVAL;
		return NULL;
	}
	return c;
}

void
carbon_free(struct carbon *c)
{
	if (c == NULL)
		return;
	if (c->fd != -1)
		close(c->fd);
	free(c->ring);
	free(c);
}

/* The offset from head of the first '\n' in the ring's first `used`
 * bytes; the ring holds whole lines only, so there is one. */
static size_t
ring_eol(const struct carbon *c, size_t from)
{
	for (size_t i = from; i < c->used; i++)
		if (c->ring[(c->head + i) % c->cap] == '\n')
			return i;
	return c->used - 1;  /* not reached */
}

static void
ring_drop_oldest(struct carbon *c)
{
	size_t n = ring_eol(c, 0) + 1;
	c->head = (c->head + n) % c->cap;
	c->used -= n;
	if (c->open > c->used)
		c->open = c->used;
	c->ring_lines--;
	c->dropped++;
	/* The ring's oldest bytes are the ended flushes' first. */
	c->flush_left -= n < c->flush_left ? n : c->flush_left;
}

static void
log_drops(struct carbon *c)
{
	if (log_limit_pass(&c->drop_log, DROP_LOG_MS) >= 0)
		log_warnx("carbon %s: send buffer of %zu bytes full: oldest lines "
		    "dropped (%llu so far)", c->where, c->cap,
		    (unsigned long long)c->dropped);
}

/* Make the ring at least `need` bytes (doubling, at most
 * CARBON_BUFFER_MAX), its lines moved to the start. Returns 0, or -1 when
 * it cannot (nothing changed then). */
static int
ring_grow(struct carbon *c, size_t need)
{
	size_t cap = c->cap;
	while (cap < need && cap <= CARBON_BUFFER_MAX / 2)
		cap *= 2;
	if (cap < need)
		return -1;
	char *r = malloc(cap);
	if (r == NULL)
		return -1;
	size_t first = c->cap - c->head < c->used ? c->cap - c->head : c->used;
	memcpy(r, c->ring + c->head, first);
	memcpy(r + first, c->ring, c->used - first);
	free(c->ring);
	c->ring = r;
	c->cap = cap;
	c->head = 0;
	log_info("carbon %s: send buffer grown to %zu bytes to hold a whole "
	    "flush", c->where, cap);
	return 0;
}

/* Queue one formatted line of n bytes (n < 0: formatting failed). */
static void
queue_line(struct carbon *c, const char *line, int n)
{
	if (n >= 0 && (size_t)n > c->cap && c->in_flush)
		(void)ring_grow(c, (size_t)n);
	if (n < 0 || (size_t)n >= CARBON_LINE_MAX || (size_t)n > c->cap) {
		c->dropped++;
		if (log_limit_pass(&c->drop_log, DROP_LOG_MS) >= 0)
			log_warnx("carbon %s: a line of %d bytes dropped: a line "
			    "is at most %d bytes and the send buffer's %zu (%llu "
			    "dropped so far)", c->where, n, CARBON_LINE_MAX - 1,
			    c->cap, (unsigned long long)c->dropped);
		return;
	}
	if (c->cap - c->used < (size_t)n) {
		uint64_t before = c->dropped;
		/* Earlier flushes' lines go first; the flush being written is
		 * not cut for its own size: the ring grows to hold it. */
		while (c->cap - c->used < (size_t)n && c->used > c->open)
			ring_drop_oldest(c);
		if (c->cap - c->used < (size_t)n && c->in_flush)
			(void)ring_grow(c, c->used + (size_t)n);
		while (c->cap - c->used < (size_t)n)
			ring_drop_oldest(c);
		if (c->dropped != before)
			log_drops(c);
	}
	size_t tail = (c->head + c->used) % c->cap;
	size_t first = c->cap - tail < (size_t)n ? c->cap - tail : (size_t)n;
	memcpy(c->ring + tail, line, first);
	memcpy(c->ring, line + first, (size_t)n - first);
	c->used += (size_t)n;
	if (c->in_flush)
		c->open += (size_t)n;
	c->ring_lines++;
}

void
carbon_line(struct carbon *c, const char *name, size_t len, const char *stat,
    const char *tags, const char *value, long long ts)
{
	char line[CARBON_LINE_MAX];
	int n = snprintf(line, sizeof(line), "%s.%.*s.%s%s %s %lld\n", c->prefix,
	    (int)len, name, stat, tags, value, ts);
	queue_line(c, line, n);
}

void
carbon_path_line(struct carbon *c, const char *path, size_t len,
    const char *value, long long ts)
{
	char line[CARBON_LINE_MAX];
	int n = snprintf(line, sizeof(line), "%.*s %s %lld\n", (int)len, path,
	    value, ts);
	queue_line(c, line, n);
}

void
carbon_set_per_flush(struct carbon *c)
{
	c->per_flush = 1;
}

void
carbon_begin_flush(struct carbon *c)
{
	uint64_t before = c->dropped;
	while (c->used > c->bound)
		ring_drop_oldest(c);
	if (c->dropped != before)
		log_drops(c);
	c->in_flush = 1;
	c->open = 0;
}

void
carbon_end_flush(struct carbon *c)
{
	c->flush_left = carbon_pending(c);
	c->in_flush = 0;
	c->open = 0;
}

static void
outage(struct carbon *c, const char *what, int err)
{
	long long now = clock_ms();
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	int was_up = c->state == C_UP;
	c->state = C_DOWN;
	/* The cut line goes again whole: its sent part is pending again. */
	if (c->flush_left > 0)
		c->flush_left += c->cur_off;
	c->cur_off = 0;
	c->next_addr = (c->next_addr + 1) % c->naddr;
	c->backoff_ms = carbon_backoff_next(c->backoff_ms);
	c->retry_at_ms = now + c->backoff_ms;
	if (!c->outage_logged) {
		log_warnx("carbon %s: %s%s%s; lines wait in the buffer, retrying "
		    "with backoff", c->where, what, err ? ": " : "",
		    err ? strerror(err) : "");
		c->outage_logged = 1;
		c->up_told = 0;
	} else if (was_up) {
		/* A peer that takes connections and drops them (a proxy with
		 * no carbon behind it) is said once a minute, not each time. */
		char more[64];
		long long n = log_limit_pass(&c->flap_log, DROP_LOG_MS);
		if (n >= 0)
			log_warnx("carbon %s: %s%s%s again, less than %d s after "
			    "connecting; what was written on it may be lost%s",
			    c->where, what, err ? ": " : "", err ? strerror(err) : "",
			    CARBON_STEADY_MS / 1000, log_more(more, sizeof(more), n,
			    "since the last line"));
	}
}

/* The backoff goes back to its start, and the next outage is said, only
 * once a connection lasts (carbon_poll) or carries its flush: a peer that
 * drops every connection at once is retried less and less often, as one
 * that refuses them. */
static void
established(struct carbon *c)
{
	c->state = C_UP;
	c->up_at_ms = clock_ms();
	if (!c->up_told)
		log_info("carbon %s: connected", c->where);
	c->up_told = 1;
}

static void
steady(struct carbon *c)
{
	c->backoff_ms = 0;
	c->outage_logged = 0;
}

static void
start_connect(struct carbon *c)
{
	const struct carbon_addr *a = &c->addr[c->next_addr];
	c->fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		int e = errno;
		char what[64] = "socket";
		struct rlimit rl;
		if (e == EMFILE && getrlimit(RLIMIT_NOFILE, &rl) == 0)
			snprintf(what, sizeof(what), "socket (RLIMIT_NOFILE %llu)",
			    (unsigned long long)rl.rlim_cur);
		outage(c, what, e);
		return;
	}
	if (connect(c->fd, (const struct sockaddr *)&a->sa, a->len) == 0) {
		established(c);
	} else if (errno == EINPROGRESS) {
		c->state = C_CONNECTING;
		c->connect_deadline_ms = clock_ms() + CONNECT_TIMEOUT_MS;
	} else {
		outage(c, "connect", errno);
	}
}

static void
finish_connect(struct carbon *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLOUT };
	int r = poll(&p, 1, 0);
	if (r == 0) {
		if (clock_ms() >= c->connect_deadline_ms)
			outage(c, "connect", ETIMEDOUT);
		return;
	}
	int err = 0;
	socklen_t len = sizeof(err);
	if (r == -1)
		err = errno;
	else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err == EINTR)
		return;
	if (err != 0)
		outage(c, "connect", err);
	else
		established(c);
}

/* Carbon never speaks on this connection: a read that ends (0) or fails
 * says the peer closed or reset it. Checked before every write so that
 * lines are not written into a connection already gone. */
static int
peer_gone(struct carbon *c)
{
	char junk[256];
	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n == 0) {
			outage(c, "connection closed by peer", 0);
			return 1;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		outage(c, "connection lost", errno);
		return 1;
	}
	return 0;
}

/* The '\n's in the ring's n bytes from head: the lines they end. */
static uint64_t
ring_count_eol(const struct carbon *c, size_t n)
{
	size_t first = c->cap - c->head < n ? c->cap - c->head : n;
	const char *part[2] = { c->ring + c->head, c->ring };
	size_t len[2] = { first, n - first };
	uint64_t k = 0;
	for (int i = 0; i < 2; i++) {
		const char *p = part[i], *end = part[i] + len[i];
		while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
			k++;
			p++;
		}
	}
	return k;
}

/* Take `n` bytes sent off cur, then off the ring. If the ring part ends
 * inside a line, that line moves whole into cur with its offset. */
static void
consume(struct carbon *c, size_t n)
{
	c->flush_left -= n < c->flush_left ? n : c->flush_left;
	size_t k = c->cur_len - c->cur_off < n ? c->cur_len - c->cur_off : n;
	c->cur_off += k;
	n -= k;
	if (c->cur_off == c->cur_len)
		c->cur_off = c->cur_len = 0;
	if (n == 0)
		return;
	c->ring_lines -= ring_count_eol(c, n);
	c->head = (c->head + n) % c->cap;
	c->used -= n;
	if (c->open > c->used)
		c->open = c->used;
	size_t back = 0;  /* bytes of the cut line already sent */
	while (back < n && c->ring[(c->head + c->cap - 1 - back) % c->cap] != '\n')
		back++;
	if (back == 0)
		return;
	size_t rest = ring_eol(c, 0) + 1;
	size_t start = (c->head + c->cap - back) % c->cap;
	for (size_t i = 0; i < back + rest; i++)
		c->cur[i] = c->ring[(start + i) % c->cap];
	c->cur_len = back + rest;
	c->cur_off = back;
	c->head = (c->head + rest) % c->cap;
	c->used -= rest;
	if (c->open > c->used)
		c->open = c->used;
	c->ring_lines--;
}

static void
send_some(struct carbon *c)
{
	while (carbon_pending(c) > 0) {
		struct iovec iov[3];
		int n = 0;
		if (c->cur_off < c->cur_len)
			iov[n++] = (struct iovec){ c->cur + c->cur_off,
			    c->cur_len - c->cur_off };
		if (c->used > 0) {
			size_t first = c->cap - c->head < c->used ?
			    c->cap - c->head : c->used;
			iov[n++] = (struct iovec){ c->ring + c->head, first };
			if (first < c->used)
				iov[n++] = (struct iovec){ c->ring, c->used - first };
		}
		if (c->per_flush) {
			/* Only the ended flushes' bytes go on this connection. */
			size_t room = c->flush_left;
			for (int i = 0; i < n; i++) {
				if (iov[i].iov_len > room)
					iov[i].iov_len = room;
				room -= iov[i].iov_len;
			}
			while (n > 0 && iov[n - 1].iov_len == 0)
				n--;
			if (n == 0)
				return;
		}
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				outage(c, "send", errno);
			return;
		}
		consume(c, (size_t)w);
	}
}

/* per-flush mode: the ended flushes are out, so the connection is
 * closed, as statsd's graphite backend closes its own after a flush; the
 * next flush connects at once, without backoff. */
static void
close_flush(struct carbon *c)
{
	if (close(c->fd) == -1)
		log_warn("carbon %s: close", c->where);
	c->fd = -1;
	c->state = C_DOWN;
	c->retry_at_ms = 0;
	steady(c);
}

void
carbon_poll(struct carbon *c)
{
	if (c->state == C_DOWN && clock_ms() >= c->retry_at_ms &&
	    (!c->per_flush || c->flush_left > 0))
		start_connect(c);
	if (c->state == C_CONNECTING)
		finish_connect(c);
	if (c->state == C_UP && !peer_gone(c))
		send_some(c);
	if (c->state == C_UP && (c->backoff_ms != 0 || c->outage_logged) &&
	    clock_ms() - c->up_at_ms >= CARBON_STEADY_MS)
		steady(c);
	if (c->per_flush && c->state == C_UP && c->flush_left == 0 &&
	    c->cur_off == 0)
		close_flush(c);
}

uint64_t
carbon_drain(struct carbon *c, int timeout_ms)
{
	long long end = clock_ms() + timeout_ms;
	carbon_poll(c);
	while (carbon_pending(c) > 0 && c->state != C_DOWN && clock_ms() < end) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		(void)poll(&p, 1, 10);
		carbon_poll(c);
	}
	return carbon_drop_pending(c);
}

uint64_t
carbon_drop_pending(struct carbon *c)
{
	uint64_t n = carbon_held(c);
	c->head = c->used = c->open = 0;
	c->ring_lines = 0;
	c->cur_len = c->cur_off = 0;
	c->flush_left = 0;
	if (n > 0) {
		c->dropped += n;
		log_warnx("carbon %s: %llu lines not sent before exit (carbon %s): "
		    "dropped", c->where, (unsigned long long)n,
		    c->state == C_UP ? "too slow" : "unreachable");
	}
	return n;
}

uint64_t
carbon_dropped(const struct carbon *c)
{
	return c->dropped;
}

uint64_t
carbon_dropped_new(struct carbon *c)
{
	uint64_t n = c->dropped - c->dropped_told;
	c->dropped_told = c->dropped;
	return n;
}

uint64_t
carbon_held(const struct carbon *c)
{
	return c->ring_lines + (c->cur_off < c->cur_len);
}

void
carbon_book(struct carbon *c, struct stats_slot *slot, uint64_t coming)
{
	uint64_t n = carbon_dropped_new(c);
	if (n > 0)
		stats_add(&slot->sink_dropped, n);
	atomic_store_explicit(&slot->sink_held, carbon_held(c) + coming,
	    memory_order_relaxed);
}

size_t
carbon_pending(const struct carbon *c)
{
	return c->used + (c->cur_len - c->cur_off);
}

int
carbon_connected(const struct carbon *c)
{
	return c->state == C_UP;
}
