/* test_prom_http.c - the Prometheus sink's HTTP endpoint (egress/prom_http.c)
 * over real HTTP on a free loopback port: curl for the ordinary answers
 * (200 with the 0.0.4 content type, HEAD, 404, 405 with Allow), raw
 * sockets for hostile clients (malformed request lines, a 1 MiB header,
 * 1 000 idle connections, one client address over its limit, a reader
 * taking one byte a second) while other scrapes go on, and scrapes during
 * a stream of page swaps that must each see one whole page. Waits are
 * bounded polls for an event, never timed assertions. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "egress/prom_http.h"
#include "harness.h"

TestSuite(prom_http, .timeout = 180);

static struct prom_http *
start(struct prom_http_opts o)
{
	const char *why = NULL;
	o.port = "0";
	struct prom_http *h = prom_http_start(&o, &why);
	cr_assert_not_null(h, "prom_http_start: %s", why);
	cr_assert_gt(prom_http_port(h), 0);
	return h;
}

static struct prom_text *
text(const char *s, size_t len)
{
	struct prom_text *t = malloc(sizeof(*t));
	cr_assert_not_null(t);
	atomic_init(&t->refs, 1);
	t->len = len;
	t->text = malloc(len ? len : 1);
	cr_assert_not_null(t->text);
	memcpy(t->text, s, len);
	return t;
}

/* Publish one page: body as the cma source's text. */
static void
publish(struct prom_http *h, const char *body, size_t len)
{
	struct prom_text *parts[REPORT_SRC_N] = { 0 };
	struct prom_self s = { .reports = 1 };
	parts[REPORT_SRC_CMA] = text(body, len);
	cr_assert_eq(prom_http_publish(h, parts, &s), 0);
}

/* Run curl; the status code, the headers and the body into malloc'd
 * strings (NULL when not wanted). */
static int
curl(struct prom_http *h, const char *extra, const char *path, char **hdr,
    char **body, size_t *body_len)
{
	char hf[128], bf[128];
	h_tmp_name(hf, sizeof(hf), "promhttp-h");
	h_tmp_name(bf, sizeof(bf), "promhttp-b");
	int hfd = mkstemp(hf), bfd = mkstemp(bf);
	cr_assert(hfd != -1 && bfd != -1);
	close(hfd);
	close(bfd);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "curl -s --max-time 60 %s -D %s -o %s "
	    "-w '%%{http_code}' http://127.0.0.1:%u%s", extra, hf, bf,
	    prom_http_port(h), path);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	int code = 0;
	if (fscanf(p, "%d", &code) != 1)
		code = -1;
	pclose(p);
	char *files[2] = { hf, bf };
	char **out[2] = { hdr, body };
	for (int i = 0; i < 2; i++) {
		if (out[i] != NULL) {
			FILE *f = fopen(files[i], "r");
			cr_assert_not_null(f);
			fseek(f, 0, SEEK_END);
			long n = ftell(f);
			rewind(f);
			*out[i] = malloc((size_t)n + 1);
			cr_assert_not_null(*out[i]);
			cr_assert_eq(fread(*out[i], 1, (size_t)n, f), (size_t)n);
			(*out[i])[n] = '\0';
			if (i == 1 && body_len)
				*body_len = (size_t)n;
			fclose(f);
		}
		unlink(files[i]);
	}
	return code;
}

static int
scrape_ok(struct prom_http *h)
{
	char *body = NULL;
	int code = curl(h, "", "/metrics", NULL, &body, NULL);
	int ok = code == 200 && strstr(body, "telem_sink_prom_scrapes_total") != NULL;
	free(body);
	return ok;
}

/* A scrape's page shows `scrapes` answered and `errors` scrape errors. */
static void
assert_counted(struct prom_http *h, unsigned scrapes, unsigned errors)
{
	char *body = NULL, want[2][80];
	cr_assert_eq(curl(h, "", "/metrics", NULL, &body, NULL), 200);
	snprintf(want[0], sizeof(want[0]), "telem_sink_prom_scrapes_total %u\n",
	    scrapes);
	snprintf(want[1], sizeof(want[1]),
	    "telem_sink_prom_scrape_errors_total %u\n", errors);
	for (int i = 0; i < 2; i++)
		cr_assert_neq(strstr(body, want[i]), NULL, "no %s in:\n%s",
		    want[i], body);
	free(body);
}

Test(prom_http, get_head_404_405)
{
	cr_assert_eq(system("command -v curl >/dev/null"), 0, "curl missing: make deps");
	struct prom_http *h = start((struct prom_http_opts){ 0 });
	const char page[] = "# HELP x y\n# TYPE x gauge\nx 1\n";
	publish(h, page, sizeof(page) - 1);
	char *hdr, *body;
	size_t len;
	cr_assert_eq(curl(h, "", "/metrics", &hdr, &body, &len), 200);
	cr_assert_neq(strcasestr(hdr, "Content-Type: text/plain; version=0.0.4"),
	    NULL, "%s", hdr);
	cr_assert_eq(strncmp(body, page, sizeof(page) - 1), 0);
	cr_assert_neq(strstr(body, "telem_sink_prom_reports_total 1\n"), NULL);
	cr_assert_neq(strstr(body, "telem_sink_prom_scrapes_total 0\n"), NULL);
	char want[64];
	snprintf(want, sizeof(want), "Content-Length: %zu", len);
	cr_assert_neq(strcasestr(hdr, want), NULL, "%s", hdr);
	free(hdr);
	free(body);

	cr_assert_eq(curl(h, "-I", "/metrics", &hdr, &body, &len), 200);
	/* curl -I writes the headers where the body would go: no body. */
	cr_assert_eq(strstr(body, "telem_sink_prom"), NULL, "HEAD has no body");
	cr_assert_neq(strcasestr(body, "Content-Length:"), NULL);
	free(hdr);
	free(body);

	cr_assert_eq(curl(h, "", "/", NULL, NULL, NULL), 404);
	cr_assert_eq(curl(h, "", "/metrics/x", NULL, NULL, NULL), 404);
	cr_assert_eq(curl(h, "", "/metricsx", NULL, NULL, NULL), 404);
	static const char *const methods[] = { "POST", "PUT", "DELETE", "PATCH",
		"OPTIONS", "BREW" };
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		char x[32];
		snprintf(x, sizeof(x), "-X %s", methods[i]);
		cr_assert_eq(curl(h, x, "/metrics", &hdr, NULL, NULL), 405, "%s",
		    methods[i]);
		cr_assert_neq(strcasestr(hdr, "Allow: GET"), NULL, "%s", hdr);
		free(hdr);
	}
	/* The second GET sees the first counted; 3 + 6 refusals counted. */
	assert_counted(h, 2, 9);
	prom_http_stop(h);
}

/* A TCP connection to the server from source address src (NULL: any). */
static int
dial(struct prom_http *h, const char *src)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_neq(fd, -1, "socket: %s", strerror(errno));
	if (src != NULL) {
		struct sockaddr_in s = { .sin_family = AF_INET };
		inet_pton(AF_INET, src, &s.sin_addr);
		cr_assert_eq(bind(fd, (struct sockaddr *)&s, sizeof(s)), 0,
		    "bind %s: %s", src, strerror(errno));
	}
	struct sockaddr_in a = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)prom_http_port(h)) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0,
	    "connect: %s", strerror(errno));
	return fd;
}

static void
send_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;  /* the server may close first: that is allowed */
		s += w;
		n -= (size_t)w;
	}
}

/* Read until the server closes, or for 20 s at most, or until 1 s passes
 * without a byte after some came; the bytes, NUL-terminated. */
static size_t
read_reply(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	for (int i = 0, quiet = 0; i < 200 && got + 1 < cap && quiet < 10; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0) {
			quiet += got > 0;
			continue;
		}
		ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return got;
}

Test(prom_http, malformed_requests_are_refused_and_counted)
{
	struct prom_http *h = start((struct prom_http_opts){ 0 });
	publish(h, "x 1\n", 4);
	static const char *const bad[] = {
		"GARBAGE\r\n\r\n",
		"GET\r\n\r\n",
		"GET /metrics\r\n\r\n",
		"GET /metrics HTTP/9.9\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
		"\x01\x02\x03\x04 / HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
		" GET /metrics HTTP/1.0\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = dial(h, NULL);
		send_all(fd, bad[i], strlen(bad[i]));
		shutdown(fd, SHUT_WR);
		char reply[4096];
		read_reply(fd, reply, sizeof(reply));
		close(fd);
		cr_assert(strstr(reply, " 200 ") == NULL, "case %zu answered 200: %s",
		    i, reply);
		cr_assert(scrape_ok(h), "no scrape after case %zu", i);
		if (getenv("DEBUG_PROM")) {
			uint64_t sc, er;
			prom_http_counters(h, &sc, &er);
			fprintf(stderr, "case %zu: %.20s errors %llu\n", i, reply,
			    (unsigned long long)er);
		}
	}
	/* A 100 KiB URL. */
	size_t n = 100 * 1024;
	char *big = malloc(n + 64);
	cr_assert_not_null(big);
	memcpy(big, "GET /", 5);
	memset(big + 5, 'a', n);
	strcpy(big + 5 + n, " HTTP/1.1\r\nHost: x\r\n\r\n");
	int fd = dial(h, NULL);
	send_all(fd, big, strlen(big));
	char reply[4096];
	read_reply(fd, reply, sizeof(reply));
	close(fd);
	free(big);
	cr_assert(strstr(reply, " 200 ") == NULL);
	cr_assert(scrape_ok(h));
	uint64_t scrapes, errors;
	prom_http_counters(h, &scrapes, &errors);
	cr_assert_geq(scrapes, 9);
	cr_assert_eq(errors, 9, "errors %llu", (unsigned long long)errors);
	prom_http_stop(h);
}

Test(prom_http, a_1mib_header_is_refused)
{
	struct prom_http *h = start((struct prom_http_opts){ 0 });
	publish(h, "x 1\n", 4);
	size_t n = 1 << 20;
	char *req = malloc(n + 128);
	cr_assert_not_null(req);
	int k = sprintf(req, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(req + k, 'a', n);
	strcpy(req + k + n, "\r\n\r\n");
	int fd = dial(h, NULL);
	send_all(fd, req, strlen(req));
	char reply[4096];
	read_reply(fd, reply, sizeof(reply));
	close(fd);
	free(req);
	cr_assert(strstr(reply, " 200 ") == NULL, "a 1 MiB header was served");
	cr_assert(reply[0] == '\0' || strstr(reply, " 431 ") != NULL ||
	    strstr(reply, " 413 ") != NULL || strstr(reply, " 400 ") != NULL,
	    "%s", reply);
	cr_assert(scrape_ok(h));
	prom_http_stop(h);
}

static void
more_files(rlim_t want)
{
	struct rlimit r;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &r), 0);
	if (r.rlim_cur < want) {
		r.rlim_cur = r.rlim_max < want ? r.rlim_max : want;
		cr_assert_eq(setrlimit(RLIMIT_NOFILE, &r), 0);
	}
	cr_assert_geq(r.rlim_cur, want, "RLIMIT_NOFILE hard limit below %lu",
	    (unsigned long)want);
}

/* Scrapes one after the other on one connection (as Prometheus makes
 * them) are answered on it: curl opens one connection for both, and
 * reuses it for a GET with a body, which is read and ignored. */
Test(prom_http, scrapes_keep_their_connection)
{
	struct prom_http *h = start((struct prom_http_opts){ 0 });
	publish(h, "x 1\n", 4);
	char cmd[512], got[256] = "";
	unsigned port = prom_http_port(h);
	snprintf(cmd, sizeof(cmd), "curl -s --max-time 60 -w '%%{http_code} "
	    "%%{num_connects}\\n' -o /dev/null http://127.0.0.1:%u/metrics "
	    "-o /dev/null http://127.0.0.1:%u/metrics -o /dev/null -d abc "
	    "-X GET http://127.0.0.1:%u/metrics", port, port, port);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t n = fread(got, 1, sizeof(got) - 1, p);
	got[n] = '\0';
	pclose(p);
	cr_assert_str_eq(got, "200 1\n200 0\n200 0\n", "%s", cmd);
	assert_counted(h, 3, 0);
	prom_http_stop(h);
}

/* 1 000 idle clients, each from its own loopback address, stay connected
 * (the limit is 1 024) and a scrape is answered meanwhile. */
Test(prom_http, idle_connections_do_not_stop_scrapes)
{
	more_files(4096);
	struct prom_http *h = start((struct prom_http_opts){ .idle_timeout_s = 60 });
	publish(h, "x 1\n", 4);
	int fd[1000];
	for (int i = 0; i < 1000; i++) {
		char src[32];
		snprintf(src, sizeof(src), "127.0.%d.%d", 1 + i / 200, 1 + i % 200);
		fd[i] = dial(h, src);
	}
	/* Half of them also start a request and never finish it. */
	for (int i = 0; i < 1000; i += 2)
		send_all(fd[i], "GET /metrics HTTP/1.1\r\nHo", 25);
	cr_assert(scrape_ok(h), "scrape with 1 000 idle connections");
	cr_assert(scrape_ok(h));
	/* They are all still open: none has been answered or closed. */
	int open = 0;
	for (int i = 0; i < 1000; i++) {
		struct pollfd p = { .fd = fd[i], .events = POLLIN };
		if (poll(&p, 1, 0) == 0)
			open++;
	}
	cr_assert_eq(open, 1000);
	for (int i = 0; i < 1000; i++)
		close(fd[i]);
	prom_http_stop(h);
}

/* One address opening 200 connections keeps only max_per_ip of them; the
 * others are closed by the server, and another address is served. */
Test(prom_http, one_address_over_its_limit)
{
	more_files(1024);
	struct prom_http *h = start((struct prom_http_opts){ .max_per_ip = 16,
		.idle_timeout_s = 60 });
	publish(h, "x 1\n", 4);
	int fd[200];
	for (int i = 0; i < 200; i++)
		fd[i] = dial(h, "127.0.0.2");
	/* Wait (bounded) until the server closed the ones over the limit. */
	int closed = 0;
	for (int round = 0; round < 100 && closed < 200 - 16; round++) {
		closed = 0;
		for (int i = 0; i < 200; i++) {
			struct pollfd p = { .fd = fd[i], .events = POLLIN };
			char c;
			if (poll(&p, 1, 0) == 1 && recv(fd[i], &c, 1, MSG_PEEK) <= 0)
				closed++;
		}
		if (closed < 200 - 16)
			usleep(50000);
	}
	cr_assert_eq(closed, 200 - 16, "closed %d", closed);
	/* Each one closed unanswered is a scrape error (prom_fmt.h). */
	uint64_t scrapes, errors;
	prom_http_counters(h, &scrapes, &errors);
	cr_assert_eq(errors, 200 - 16, "scrape errors %llu",
	    (unsigned long long)errors);
	cr_assert(scrape_ok(h));
	for (int i = 0; i < 200; i++)
		close(fd[i]);
	prom_http_stop(h);
}

/* A big page; a client with a small receive buffer asks for it and reads
 * a byte a second; other scrapes are served in full meanwhile. */
Test(prom_http, a_slow_reader_does_not_stop_others)
{
	struct prom_http *h = start((struct prom_http_opts){ 0 });
	size_t n = 4u << 20;
	char *page = malloc(n);
	cr_assert_not_null(page);
	for (size_t i = 0; i < n; i += 16)
		memcpy(page + i, "slow_reader 1.5\n", 16);
	publish(h, page, n);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	struct sockaddr_in a = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)prom_http_port(h)) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	send_all(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 35);
	size_t got = 0;
	for (int s = 0; s < 4; s++) {
		char c;
		if (recv(fd, &c, 1, 0) == 1)
			got++;
		char *body = NULL;
		size_t len = 0;
		cr_assert_eq(curl(h, "", "/metrics", NULL, &body, &len), 200);
		cr_assert_gt(len, n, "a whole page while the slow reader reads");
		free(body);
		sleep(1);
	}
	cr_assert_eq(got, 4);
	close(fd);
	free(page);
	prom_http_stop(h);
}

/* Pages A and B swapped in as fast as possible while scrapes run: every
 * scrape gets all of one page, never a mix, never a part. */
struct swapper {
	struct prom_http *h;
	char *page[2];
	size_t len;
	atomic_int stop;
	unsigned long swaps;
};

static void *
swap_loop(void *arg)
{
	struct swapper *s = arg;
	for (unsigned long i = 0; !atomic_load(&s->stop); i++) {
		publish(s->h, s->page[i & 1], s->len);
		s->swaps++;
	}
	return NULL;
}

Test(prom_http, scrapes_during_updates_see_one_whole_page)
{
	struct swapper s = { .h = start((struct prom_http_opts){ 0 }) };
	size_t lines = 50000;
	s.len = lines * 11;
	for (int k = 0; k < 2; k++) {
		s.page[k] = malloc(s.len);
		cr_assert_not_null(s.page[k]);
		for (size_t i = 0; i < lines; i++)
			memcpy(s.page[k] + i * 11, k ? "page_b 22\n\n" : "page_a 11\n\n",
			    11);
	}
	publish(s.h, s.page[0], s.len);
	atomic_init(&s.stop, 0);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, swap_loop, &s), 0);
	int seen[2] = { 0, 0 };
	for (int i = 0; i < 40; i++) {
		char *body = NULL;
		size_t len = 0;
		cr_assert_eq(curl(s.h, "", "/metrics", NULL, &body, &len), 200);
		cr_assert_gt(len, s.len);
		int which = body[5] == 'a' ? 0 : 1;
		cr_assert_eq(memcmp(body, s.page[which], s.len), 0,
		    "scrape %d mixes pages", i);
		cr_assert_neq(strstr(body + s.len, "telem_sink_prom_scrapes_total"),
		    NULL);
		seen[which]++;
		free(body);
	}
	atomic_store(&s.stop, 1);
	pthread_join(t, NULL);
	cr_assert_gt(s.swaps, 40, "the pages were swapped during the scrapes");
	prom_http_stop(s.h);
	free(s.page[0]);
	free(s.page[1]);
}

Test(prom_http, bad_addresses_are_refused)
{
	static const struct prom_http_opts bad[] = {
		{ .host = "localhost", .port = "0" },
		{ .host = "127.0.0.1", .port = "65536" },
		{ .host = "127.0.0.1", .port = "" },
		{ .host = "127.0.0.1", .port = "9x" },
		{ .host = "::1::", .port = "0" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = NULL;
		cr_assert_null(prom_http_start(&bad[i], &why), "case %zu", i);
		cr_assert_not_null(why);
	}
	/* The same port twice: the second start fails. */
	struct prom_http *h = start((struct prom_http_opts){ 0 });
	char port[8];
	snprintf(port, sizeof(port), "%u", prom_http_port(h));
	const char *why = NULL;
	struct prom_http_opts o = { .port = port };
	cr_assert_null(prom_http_start(&o, &why));
	prom_http_stop(h);
}

/* A reader too slow to ever finish does not hold its page for ever: once
 * its socket stays full past the idle timeout (or its answer passes
 * answer_max_s) the server cuts it off and counts a scrape error, while
 * the client is still reading a byte a second. */
Test(prom_http, a_reader_that_never_finishes_is_cut_off)
{
	struct prom_http *h = start((struct prom_http_opts){ .idle_timeout_s = 2,
		.answer_max_s = 3 });
	size_t n = 16u << 20;
	char *page = malloc(n);
	cr_assert_not_null(page);
	for (size_t i = 0; i < n; i += 16)
		memcpy(page + i, "slow_reader 1.5\n", 16);
	publish(h, page, n);
	free(page);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	struct sockaddr_in a = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)prom_http_port(h)) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	send_all(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 35);
	uint64_t scrapes = 0, errors = 0;
	for (int s = 0; s < 60 && errors == 0; s++) {
		char c;
		(void)recv(fd, &c, 1, MSG_DONTWAIT);
		sleep(1);
		prom_http_counters(h, &scrapes, &errors);
	}
	cr_assert_eq(errors, 1, "the slow reader was not cut off");
	cr_assert_eq(scrapes, 0);
	cr_assert(scrape_ok(h), "others are still served");
	close(fd);
	prom_http_stop(h);
}
