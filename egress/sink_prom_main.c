/* telem-sink-prom: reads the egresses' report records (docs/design.md §15,
 * egress/report_rec.h) from its in-queue and serves the latest complete
 * report of each source as Prometheus text on GET /metrics (egress/
 * prom_expo.h renders, egress/prom_http.h serves). The stage's thread only
 * renders and swaps pages; the server's own thread answers scrapes, so a
 * scrape never holds up the records, and a report cut short never shows. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "egress/carbon.h"
#include "egress/prom_expo.h"
#include "egress/prom_http.h"
#include "log.h"
#include "stage.h"

#define FD_SPARE 64   /* descriptors besides the connections */

struct sink_prom {
	char host[CARBON_HOST_MAX], port[8];
	uint32_t max_conns;
	struct prom_expo *x;
	struct prom_http *h;
	struct log_limit bad_log, pub_log;
};

enum { OPT_LISTEN = 256, OPT_MAX_CONNS, OPT_STATE };
static const struct option opts[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "max-conns", required_argument, NULL, OPT_MAX_CONNS },
	/* A pipeline file gives --state to a stage with no out unless it
	 * says `state = no` (supervisor/pipeline.h): taken, and ignored. */
	{ "state", required_argument, NULL, OPT_STATE },
	{ NULL, 0, NULL, 0 },
};

static int
sp_option(struct stage *st, int opt, const char *arg)
{
	struct sink_prom *p = st->ctx;
	const char *why;
	switch (opt) {
	case OPT_LISTEN:
		if (carbon_parse_addr(arg, p->host, sizeof(p->host), p->port,
		    sizeof(p->port), &why) == -1) {
			log_warnx("--listen %s: %s", arg, why);
			return -1;
		}
		/* A name is a configuration error here, not a failed start
		 * to retry (prom_http_start would refuse it every time). */
		unsigned char a[sizeof(struct in6_addr)];
		if (inet_pton(AF_INET, p->host, a) != 1 &&
		    inet_pton(AF_INET6, p->host, a) != 1) {
			log_warnx("--listen %s: the host must be a numeric IPv4 or "
			    "IPv6 address", arg);
			return -1;
		}
		return 0;
	case OPT_MAX_CONNS:
		if (stage_parse_u32(arg, &p->max_conns) == -1 ||
		    p->max_conns == 0 || p->max_conns > 65536) {
			log_warnx("--max-conns %s: must be 1..65536", arg);
			return -1;
		}
		return 0;
	case OPT_STATE:
		return 0;
	}
	return -1;
}

/* Make room for max_conns connections: raise the soft descriptor limit
 * toward the hard one. A limit that stays lower is logged; the server
 * then stops accepting at it (libmicrohttpd says so), and connections
 * past it wait in the listen backlog until one closes. */
static void
raise_nofile(rlim_t want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit RLIMIT_NOFILE");
		return;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want)
		return;
	if (rl.rlim_cur == RLIM_INFINITY)
		return;
	rlim_t to = want;
	if (rl.rlim_max != RLIM_INFINITY && to > rl.rlim_max)
		to = rl.rlim_max;
	if (to > rl.rlim_cur) {
		rl.rlim_cur = to;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit RLIMIT_NOFILE to %llu", (unsigned long long)to);
	}
	if (to < want)
		log_warnx("RLIMIT_NOFILE is %llu: fewer than %llu descriptors for "
		    "connections", (unsigned long long)to,
		    (unsigned long long)(want - FD_SPARE));
}

static int
sp_init(struct stage *st)
{
	struct sink_prom *p = st->ctx;
	prom_malloc_tune();
	if (p->max_conns == 0)
		p->max_conns = 1024;
	raise_nofile((rlim_t)p->max_conns + FD_SPARE);
	if ((p->x = prom_expo_new(0)) == NULL) {
		log_warn("prom_expo_new");
		return -1;
	}
	struct prom_http_opts o = {
		.host = p->host[0] ? p->host : PROM_HTTP_HOST,
		.port = p->port[0] ? p->port : PROM_HTTP_PORT,
		.max_conns = p->max_conns,
	};
	const char *why;
	if ((p->h = prom_http_start(&o, &why)) == NULL) {
		log_warnx("listen on %s port %s: %s", o.host, o.port, why);
		return -1;
	}
	log_info("serving /metrics on %s port %u", o.host, prom_http_port(p->h));
	return 0;
}

static void
publish(struct sink_prom *p)
{
	struct prom_text *parts[REPORT_SRC_N];
	struct prom_self s;
	prom_expo_parts(p->x, parts);
	prom_expo_self(p->x, &s);
	if (prom_http_publish(p->h, parts, &s) == -1) {
		long long n = log_limit_pass(&p->pub_log, 60000);
		if (n >= 0)
			log_warn("page not published; the previous one stays "
			    "(%lld more since the last line)", n);
	}
}

static void
sp_record(struct stage *st, const struct wire_rec *r)
{
	struct sink_prom *p = st->ctx;
	struct report_rec e;
	const char *why;
	/* wire_check took it already; decoded again for its fields. */
	if (report_rec_decode(r->raw + WIRE_REC_HDR, r->size - WIRE_REC_HDR,
	    &e, &why) == -1) {
		stats_add(&st->stats->bad, 1);
		long long n = log_limit_pass(&p->bad_log, 60000);
		if (n >= 0)
			log_warnx("report entry dropped: %s (%lld more)", why, n);
		return;
	}
	/* A report thrown away is published too: the page keeps the last
	 * whole reports, and its own telem_sink_prom_reports_broken_total
	 * says so now, not at the next report that renders. */
	if (prom_expo_feed(p->x, &e) != PROM_FED)
		publish(p);
}

static void
sp_flush(struct stage *st)
{
	(void)st;  /* a sink publishes at each end of report, not on Flush */
}

static void
sp_fini(struct stage *st)
{
	struct sink_prom *p = st->ctx;
	prom_http_stop(p->h);
	p->h = NULL;
	prom_expo_free(p->x);
	p->x = NULL;
}

int
main(int argc, char **argv)
{
	static const struct stage_ops ops = {
		.prog = "telem-sink-prom",
		.default_name = "prom",
		.synopsis = "[--listen HOST:PORT] [--max-conns N] ",
		.help =
		    "      --listen HOST:PORT  serve GET /metrics (Prometheus text\n"
		    "                       0.0.4) on this numeric address\n"
		    "                       (default " PROM_HTTP_HOST ":" PROM_HTTP_PORT ")\n"
		    "      --max-conns N    connections at once (default 1024)\n"
		    "      --state FILE     ignored: the sink keeps no state\n",
		.longopts = opts,
		.option = sp_option,
		.init = sp_init,
		.on_record = sp_record,
		.on_flush = sp_flush,
		.fini = sp_fini,
		.needs_in = 1,
		.takes_reports = 1,
		.no_out = 1,
	};
	static struct sink_prom p;
	return stage_main(argc, argv, &ops, &p);
}
