/* prom_http.h - the Prometheus sink's HTTP endpoint (libmicrohttpd): GET
 * or HEAD /metrics answers the latest complete page; any other path is
 * 404, any other method 405 (Allow: GET, HEAD).
 *
 * Threads: libmicrohttpd runs one internal thread of its own with epoll
 * (MHD_USE_AUTO_INTERNAL_THREAD), every socket non-blocking. The stage's
 * thread never waits on a client: it builds the next page aside
 * (prom_expo.h) and publishes it with a pointer swap under a mutex held
 * for a few instructions. The server thread never waits on the stage: a
 * scrape takes a reference to the page current when it starts and copies
 * from it as the client's socket takes bytes, so a slow reader costs only
 * its own connection (and keeps the page it started with alive until it
 * ends), and a scrape during an update sees the old page or the new one,
 * whole. A thread per connection was not chosen: 1 000 idle clients would
 * be 1 000 threads. A connection stays open between scrapes (HTTP/1.1
 * keep-alive, as Prometheus uses it) until it is idle longer than its
 * bound.
 *
 * Bounds: connections in all and per client address, the time a
 * connection may stay idle, the memory of one request (its request line
 * and headers: a larger request is answered 431 by libmicrohttpd and
 * closed), and the time one answer may take (a reader slower than that is
 * cut off and counted as a scrape error). */
#ifndef TELEM_PROM_HTTP_H
#define TELEM_PROM_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "egress/prom_expo.h"

#define PROM_HTTP_HOST "127.0.0.1"
#define PROM_HTTP_PORT "9108"

struct prom_http_opts {
	const char *host;         /* numeric IPv4 or IPv6 address; NULL: 127.0.0.1 */
	const char *port;         /* decimal, "0" for any free port; NULL: 9108 */
	unsigned max_conns;       /* 0: 1024 */
	unsigned max_per_ip;      /* 0: 64 */
	unsigned idle_timeout_s;  /* 0: 10 */
	size_t req_mem;           /* bytes for one request's line and headers;
	                             0: 16384 */
	unsigned answer_max_s;    /* 0: 60 */
};

struct prom_http;

/* Listen and start serving (an empty page until the first publish).
 * Returns NULL with *why set when the address does not parse or the
 * server cannot start (the port is taken, no memory, no thread). */
struct prom_http *prom_http_start(const struct prom_http_opts *o,
    const char **why);
/* The port bound (useful after port "0"). */
unsigned prom_http_port(const struct prom_http *h);
/* Make parts (one text per source, NULL where none; the references are
 * taken over, also on error) the page served from now on, with the
 * renderer's counters s (reports, broken reports, dropped series) shown
 * among the sink's own. Returns 0, or -1 (errno ENOMEM) when the page
 * could not be made; the old page stays then. */
int prom_http_publish(struct prom_http *h,
    struct prom_text *parts[REPORT_SRC_N], const struct prom_self *s);
/* Scrapes answered in full, and requests refused or answers cut short. */
void prom_http_counters(const struct prom_http *h, uint64_t *scrapes,
    uint64_t *errors);
/* Stop serving (open connections are closed) and free h (NULL allowed). */
void prom_http_stop(struct prom_http *h);

#endif
