/* loadgen.c - bench-loadgen, the load generator of telem's benchmarks.
 * Pre-generates a pool of "name value" (or statsd "name:value|ms") datagrams,
 * then sends them with sendmmsg to a loopback UDP address, paced or flat out. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "bench/loopback.h"

#define BATCH_MAX 64              /* datagrams per sendmmsg call */
#define DGRAM_MAX 65507           /* largest UDP payload over IPv4 */
#define POOL_BYTES_MAX (64u << 20) /* memory given to the datagram pool */
#define VALUE_MAX 4294967295.0    /* values are u32 on the wire */

enum dist_kind { DIST_UNIFORM, DIST_CONST, DIST_PARETO };

struct dist {
	enum dist_kind kind;
	double a, b; /* uniform LO,HI; const V; pareto ALPHA,SCALE */
};

struct opts {
	const char *host, *port;
	unsigned long long n;  /* datagrams to send */
	unsigned long lines;   /* lines per datagram */
	unsigned long names;   /* distinct names m0..m<k-1> */
	unsigned long pool;    /* datagrams pre-generated, then reused */
	struct dist dist;
	int statsd;
	uint64_t seed;
	double rate;           /* datagrams per second, 0 = flat out */
	double max_s;
};

struct tally {
	unsigned long long sent, retries, refused;
	double seconds;
};

static volatile sig_atomic_t stop_flag;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: bench-loadgen [-H host] [-p port] [-n datagrams] [-L lines]\n"
	    "                     [-k names] [-d dist] [-f telem|statsd] [-s seed]\n"
	    "                     [-r rate] [-t seconds] [-P pool]\n"
	    "  -H host      loopback destination only (default 127.0.0.1)\n"
	    "  -p port      UDP port (default 1990)\n"
	    "  -n N         datagrams to send (default 100000)\n"
	    "  -L N         lines (events) per datagram (default 1)\n"
	    "  -k N         distinct names m0..m<N-1> (default 10)\n"
	    "  -d dist      uniform:LO:HI | const:V | pareto:ALPHA:SCALE\n"
	    "               (default uniform:0:1000; values clamped to u32)\n"
	    "  -f format    telem (\"name value\") or statsd (\"name:value|ms\")\n"
	    "  -s seed      random seed (default 1)\n"
	    "  -r rate      datagrams per second, 0 = flat out (default 0)\n"
	    "  -t seconds   stop after this long (default 60)\n"
	    "  -P N         datagrams pre-generated and reused (default 1024)\n"
	    "  -h           this help\n");
}

static unsigned long long
parse_ull(int opt, const char *s, unsigned long long lo, unsigned long long hi)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s == '\0' || *s == '-' || *end != '\0' || errno != 0 || v < lo ||
	    v > hi)
		fatalx(EXIT_USAGE, "bad -%c value '%s': expected an integer in "
		    "[%llu, %llu]", opt, s, lo, hi);
	return v;
}

static double
parse_dbl(int opt, const char *s, double lo, double hi)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || errno != 0 || !(v >= lo && v <= hi))
		fatalx(EXIT_USAGE, "bad -%c value '%s': expected a number in "
		    "[%g, %g]", opt, s, lo, hi);
	return v;
}

/* Parse -d; a malformed spec is a usage error (exit 2). */
static struct dist
parse_dist(const char *s)
{
	struct dist d = { DIST_UNIFORM, 0, 0 };
	char buf[128], *a, *b, *extra;
	if (strlen(s) >= sizeof(buf))
		fatalx(EXIT_USAGE, "bad -d value: too long");
	strcpy(buf, s);
	a = strchr(buf, ':');
	if (a != NULL)
		*a++ = '\0';
	b = a != NULL ? strchr(a, ':') : NULL;
	if (b != NULL)
		*b++ = '\0';
	extra = b != NULL ? strchr(b, ':') : NULL;
	if (extra != NULL || a == NULL)
		goto bad;
	if (strcmp(buf, "uniform") == 0 && b != NULL) {
		d.kind = DIST_UNIFORM;
		d.a = (double)parse_ull('d', a, 0, 4294967295ULL);
		d.b = (double)parse_ull('d', b, 0, 4294967295ULL);
		if (d.a > d.b)
			fatalx(EXIT_USAGE, "bad -d value '%s': LO > HI", s);
	} else if (strcmp(buf, "const") == 0 && b == NULL) {
		d.kind = DIST_CONST;
		d.a = (double)parse_ull('d', a, 0, 4294967295ULL);
	} else if (strcmp(buf, "pareto") == 0 && b != NULL) {
		d.kind = DIST_PARETO;
		d.a = parse_dbl('d', a, 1e-6, 1e6);
		d.b = parse_dbl('d', b, 1e-9, VALUE_MAX);
	} else {
		goto bad;
	}
	return d;
bad:
	fatalx(EXIT_USAGE, "bad -d value '%s': expected uniform:LO:HI, const:V "
	    "or pareto:ALPHA:SCALE", s);
}

static void
parse_opts(int argc, char **argv, struct opts *o)
{
	int c;
	*o = (struct opts){ "127.0.0.1", "1990", 100000, 1, 10, 1024,
	    { DIST_UNIFORM, 0, 1000 }, 0, 1, 0, 60 };
	while ((c = getopt(argc, argv, "H:p:n:L:k:d:f:s:r:t:P:h")) != -1) {
		switch (c) {
		case 'H': o->host = optarg; break;
		case 'p': parse_ull(c, optarg, 1, 65535); o->port = optarg; break;
		case 'n': o->n = parse_ull(c, optarg, 1, 1ULL << 40); break;
		case 'L': o->lines = parse_ull(c, optarg, 1, DGRAM_MAX / 4); break;
		case 'k': o->names = parse_ull(c, optarg, 1, 100000000); break;
		case 'd': o->dist = parse_dist(optarg); break;
		case 'f':
			if (strcmp(optarg, "telem") != 0 &&
			    strcmp(optarg, "statsd") != 0)
				fatalx(EXIT_USAGE, "bad -f value '%s': expected "
				    "telem or statsd", optarg);
			o->statsd = optarg[0] == 's';
			break;
		case 's': o->seed = parse_ull(c, optarg, 0, UINT64_MAX); break;
		case 'r': o->rate = parse_dbl(c, optarg, 0, 1e9); break;
		case 't': o->max_s = parse_dbl(c, optarg, 0.001, 86400); break;
		case 'P': o->pool = parse_ull(c, optarg, 1, 1000000); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(EXIT_USAGE);
		}
	}
	if (optind != argc)
		fatalx(EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
}

/* splitmix64: small, seedable, good enough to shape benchmark values. */
static uint64_t
rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t
dist_draw(const struct dist *d, uint64_t *rng)
{
	double x;
	switch (d->kind) {
	case DIST_CONST:
		return (uint32_t)d->a;
	case DIST_UNIFORM: {
		uint64_t span = (uint64_t)(d->b - d->a) + 1;
		return (uint32_t)((uint64_t)d->a + rng_next(rng) % span);
	}
	case DIST_PARETO:
	default:
		/* u in (0, 1], so x = SCALE * u^(-1/ALPHA) is finite and >= SCALE. */
		x = ((double)(rng_next(rng) >> 11) + 1.0) * 0x1p-53;
		x = d->b * pow(x, -1.0 / d->a);
		return x >= VALUE_MAX ? UINT32_MAX : (uint32_t)x;
	}
}

/* A UDP socket connected to the first loopback address host:port resolves
 * to; any other destination is refused (exit 2). */
static int
open_sender(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM,
	    .ai_flags = AI_NUMERICSERV }, *res, *ai;
	int fd, rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		fatalx(EXIT_USAGE, "getaddrinfo %s: %s", host, gai_strerror(rc));
	for (ai = res; ai != NULL && !is_loopback(ai->ai_addr); ai = ai->ai_next)
		;
	if (ai == NULL)
		fatalx(EXIT_USAGE, "refusing destination %s: only loopback "
		    "(127.0.0.0/8, ::1) is allowed", host);
	fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fatal(EXIT_FAILURE, "socket");
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		fatal(EXIT_FAILURE, "connect %s:%s", host, port);
	freeaddrinfo(res);
	return fd;
}

/* Fill the pool: datagram i is laid out at buf + i * slot. Names go round
 * robin over all lines so each of the k names gets an equal share. */
static void
build_pool(const struct opts *o, char *buf, size_t slot, size_t pool,
    struct iovec *iov)
{
	uint64_t rng = o->seed;
	unsigned long long line = 0;
	for (size_t i = 0; i < pool; i++) {
		char *p = buf + i * slot;
		size_t len = 0;
		for (unsigned long j = 0; j < o->lines; j++, line++) {
			unsigned long name = (unsigned long)(line % o->names);
			uint32_t v = dist_draw(&o->dist, &rng);
			int w = snprintf(p + len, slot - len,
			    o->statsd ? "%sm%lu:%u|ms" : "%sm%lu %u",
			    j ? "\n" : "", name, v);
			if (w < 0 || (size_t)w >= slot - len)
				fatalx(EXIT_USAGE, "-L %lu lines do not fit in "
				    "one %d-byte datagram", o->lines, DGRAM_MAX);
			len += (size_t)w;
		}
		iov[i] = (struct iovec){ p, len };
	}
}

static void
sleep_until(double t)
{
	struct timespec ts = { (time_t)t, 0 };
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	if (ts.tv_nsec >= 1000000000L)
		ts.tv_nsec = 999999999L;
	int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	if (rc != 0 && rc != EINTR) {
		errno = rc;
		fatal(EXIT_FAILURE, "clock_nanosleep");
	}
}

/* Send o->n datagrams cycling over the pool. With a rate, datagram i is due
 * at t0 + i/rate and the loop sends whatever is due, in bursts of about a
 * millisecond's worth (1..64), sleeping until the next burst is due; late
 * datagrams are caught up 64 at a time. msgs has pool + BATCH_MAX entries
 * (entry i is datagram i % pool) so any window of 64 is contiguous. */
static struct tally
send_loop(int fd, struct mmsghdr *msgs, size_t pool, const struct opts *o)
{
	struct tally t = { 0, 0, 0, 0 };
	double t0 = clock_s(), deadline = t0 + o->max_s, now = t0;
	unsigned long long burst = 1, iter_max;
	if (o->rate > 0) {
		burst = (unsigned long long)(o->rate / 1000.0);
		burst = burst < 1 ? 1 : burst > BATCH_MAX ? BATCH_MAX : burst;
	}
	/* Every pass sends, or sleeps/backs off for a while; this cap only
	 * guards against a clock that stops. */
	iter_max = 2 * o->n + (unsigned long long)(o->max_s * 1e6) + 1000;
	for (unsigned long long it = 0; t.sent < o->n && it < iter_max; it++) {
		unsigned long long left = o->n - t.sent;
		unsigned long long want = left < BATCH_MAX ? left : BATCH_MAX;
		now = clock_s();
		if (stop_flag || now >= deadline)
			break;
		if (o->rate > 0) {
			unsigned long long due =
			    (unsigned long long)((now - t0) * o->rate) + 1;
			unsigned long long need = burst < left ? burst : left;
			unsigned long long ok = due > t.sent ? due - t.sent : 0;
			if (ok < need) {
				double at = t0 + (double)(t.sent + need - 1) /
				    o->rate;
				sleep_until(at < deadline ? at : deadline);
				continue;
			}
			want = ok < want ? ok : want;
		}
		int r = sendmmsg(fd, &msgs[t.sent % pool], (unsigned)want, 0);
		if (r >= 0) {
			t.sent += (unsigned long long)r;
		} else if (errno == ENOBUFS || errno == EAGAIN) {
			/* Socket or device queue full: back off briefly. */
			t.retries++;
			sleep_until(clock_s() + 50e-6);
		} else if (errno == ECONNREFUSED) {
			/* ICMP port unreachable from an earlier datagram:
			 * nobody listens (yet); keep going until -t. */
			t.refused++;
			sleep_until(clock_s() + 1e-3);
		} else if (errno != EINTR) {
			fatal(EXIT_FAILURE, "sendmmsg");
		}
	}
	t.seconds = clock_s() - t0;
	return t;
}

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void
report(const struct opts *o, const struct tally *t)
{
	unsigned long long events = t->sent * o->lines;
	double s = t->seconds > 0 ? t->seconds : 1e-9;
	printf("loadgen: %llu datagrams, %llu events in %.3f s: %.0f datagrams/s, "
	    "%.0f events/s; ENOBUFS/EAGAIN retries %llu, ECONNREFUSED %llu\n",
	    t->sent, events, t->seconds, (double)t->sent / s,
	    (double)events / s, t->retries, t->refused);
	printf("sent_events=%llu sent_datagrams=%llu seconds=%.3f\n", events,
	    t->sent, t->seconds);
	if (fflush(stdout) != 0)
		fatal(EXIT_FAILURE, "fflush stdout");
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct sigaction sa = { .sa_handler = on_signal };

	log_init("bench-loadgen", NULL);
	parse_opts(argc, argv, &o);
	int fd = open_sender(o.host, o.port);

	size_t slot = o.lines * 26 + 1; /* "m99999999 4294967295|ms\n" < 26 */
	slot = slot > DGRAM_MAX + 1 ? DGRAM_MAX + 1 : slot;
	size_t pool = o.pool < o.n ? o.pool : (size_t)o.n;
	if (pool > POOL_BYTES_MAX / slot)
		pool = POOL_BYTES_MAX / slot;
	char *buf = malloc(pool * slot);
	struct iovec *iov = calloc(pool, sizeof(*iov));
	struct mmsghdr *msgs = calloc(pool + BATCH_MAX, sizeof(*msgs));
	if (buf == NULL || iov == NULL || msgs == NULL)
		fatal(EXIT_FAILURE, "malloc pool of %zu datagrams", pool);
	build_pool(&o, buf, slot, pool, iov);
	for (size_t i = 0; i < pool + BATCH_MAX; i++)
		msgs[i].msg_hdr = (struct msghdr){ .msg_iov = &iov[i % pool],
		    .msg_iovlen = 1 };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
		fatal(EXIT_FAILURE, "sigaction");
	struct tally t = send_loop(fd, msgs, pool, &o);
	report(&o, &t);
	if (t.sent < o.n)
		log_warnx("stopped early: %llu of %llu datagrams sent", t.sent, o.n);
	free(msgs);
	free(iov);
	free(buf);
	if (close(fd) < 0)
		fatal(EXIT_FAILURE, "close");
	return t.sent < o.n ? 1 : 0;
}
