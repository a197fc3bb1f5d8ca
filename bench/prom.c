/* bench/prom.c - bin/bench-prom: the Prometheus sink's costs with a report
 * of 10 000 names (60 000 quantile samples, with sum and count each): the
 * time to render it, the time to serve one scrape of it over loopback HTTP
 * (median and worst of 20), and the process's RSS with the page published
 * and once scraped. One readable line per figure; no asserts. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "egress/prom_expo.h"
#include "egress/prom_http.h"
#include "bench/usage.h"

#define NAMES 10000
#define SCRAPES 20

static long
status_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, strlen(key)) == 0)
			kib = strtol(line + strlen(key), NULL, 10);
	fclose(f);
	return kib;
}

static void
feed(struct prom_expo *x, uint8_t kind, const char *name, const char *field,
    double v)
{
	struct report_rec r;
	memset(&r, 0, sizeof(r));
	r.kind = kind;
	r.source = REPORT_SRC_CKMS;
	r.name = name;
	r.name_len = (uint8_t)strlen(name);
	r.field = field;
	r.field_len = (uint8_t)strlen(field);
	r.ts = 1700000000;
	r.value = v;
	prom_expo_feed(x, &r);
}

/* GET /metrics over a fresh connection, read to the end; bytes read or -1. */
static long
scrape(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1 || connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1) {
		perror("bench-prom: connect");
		if (fd != -1)
			close(fd);
		return -1;
	}
	const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1) {
		perror("bench-prom: send");
		close(fd);
		return -1;
	}
	static char buf[1 << 16];
	long total = 0;
	ssize_t n;
	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
		total += n;
	close(fd);
	return total;
}

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	bench_usage(argc, argv, "(no arguments: prints what a /metrics "
	    "report of many names costs\nto gather, render and serve, and the "
	    "memory it takes)");
	static const char *const q[] = { "q0", "q0.25", "q0.5", "q0.75", "q0.9",
		"q0.99" };
	prom_malloc_tune();  /* as the sink's main does */
	long rss0 = status_kib("VmRSS:");
	struct prom_expo *x = prom_expo_new(0);
	const char *why;
	struct prom_http_opts o = { .port = "0" };
	struct prom_http *h = prom_http_start(&o, &why);
	if (x == NULL || h == NULL) {
		fprintf(stderr, "bench-prom: %s\n", h == NULL ? why : "out of memory");
		return 1;
	}
	double render_best = 1e9;
	for (int round = 0; round < 3; round++) {
		char name[64];
		size_t n = 0;
		double t0 = clock_s();
		for (int k = 0; k < NAMES; k++) {
			snprintf(name, sizeof(name), "host%03d.service.latency_%d", k % 500, k);
			for (int i = 0; i < 6; i++, n++)
				feed(x, REPORT_SUM_QUANTILE, name, q[i], k * 10.0 + i + round);
			feed(x, REPORT_SUM_SUM, name, "sum", k * 1234.5);
			feed(x, REPORT_SUM_COUNT, name, "count", k + 1000);
			n += 2;
		}
		struct report_rec end = { .kind = REPORT_END, .source = REPORT_SRC_CKMS,
			.count = n };
		if (prom_expo_feed(x, &end) != PROM_RENDERED) {
			fprintf(stderr, "bench-prom: report not rendered\n");
			return 1;
		}
		struct prom_text *parts[REPORT_SRC_N];
		struct prom_self s;
		prom_expo_parts(x, parts);
		prom_expo_self(x, &s);
		if (prom_http_publish(h, parts, &s) == -1) {
			fprintf(stderr, "bench-prom: publish failed\n");
			return 1;
		}
		double dt = clock_s() - t0;
		render_best = dt < render_best ? dt : render_best;
	}
	long rss_pub = status_kib("VmRSS:");
	double t[SCRAPES];
	long bytes = 0;
	for (int i = 0; i < SCRAPES; i++) {
		double t0 = clock_s();
		bytes = scrape(prom_http_port(h));
		t[i] = clock_s() - t0;
		if (bytes <= 0)
			return 1;
	}
	qsort(t, SCRAPES, sizeof(t[0]), cmp_d);
	printf("prom: report of %d names (%d quantile samples): gather+render+publish "
	    "%.1f ms (best of 3)\n", NAMES, NAMES * 6, render_best * 1e3);
	printf("prom: scrape of %ld bytes over loopback HTTP: median %.1f ms, "
	    "worst %.1f ms of %d (target < 50 ms)\n", bytes, t[SCRAPES / 2] * 1e3,
	    t[SCRAPES - 1] * 1e3, SCRAPES);
	printf("prom: RSS %ld KiB at start, %ld KiB with the page published, "
	    "%ld KiB after the scrapes, peak %ld KiB (target < 20 MB)\n", rss0,
	    rss_pub, status_kib("VmRSS:"), status_kib("VmHWM:"));
	prom_http_stop(h);
	prom_expo_free(x);
	return 0;
}
