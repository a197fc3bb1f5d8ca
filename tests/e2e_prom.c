/* e2e_prom.c - telem-sink-prom end to end (docs/design.md §15): the supervisor's
 * --prom adds the sink to the built-in pipeline; a real Prometheus server
 * (Debian's prometheus), started here on loopback with its own config and
 * a 1 s scrape interval, scrapes it, and its HTTP API (/api/v1/query, read
 * with curl) must give back the numbers of the stdout report. Also:
 * promtool accepts the page, both sinks killed with -9 under load are
 * restarted like any stage, and bad --prom values are refused. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "harness.h"

static struct pl P;
static char tmp[128];
static pid_t prom_pid;
static int sink_port, web_port;
static char sink_addr[32];

static void
setup(void)
{
	pl_init(&P);
	h_tmp_name(tmp, sizeof(tmp), "prom");
	if (mkdtemp(tmp) == NULL) {
		perror("mkdtemp");
		abort();
	}
	int port[2];
	h_tcp_ports(port, 2);
	sink_port = port[0];
	web_port = port[1];
	snprintf(sink_addr, sizeof(sink_addr), "127.0.0.1:%d", sink_port);
}

static void
prom_stop(void)
{
	if (prom_pid <= 0)
		return;
	kill(prom_pid, SIGTERM);
	for (int i = 0; i < 1000; i++) {
		if (waitpid(prom_pid, NULL, WNOHANG) == prom_pid) {
			prom_pid = 0;
			return;
		}
		h_nap_ms(10);
	}
	kill(prom_pid, SIGKILL);
	waitpid(prom_pid, NULL, 0);
	prom_pid = 0;
}

static void
teardown(void)
{
	prom_stop();
	pl_cleanup(&P);
	if (getenv("TELEM_KEEP") == NULL) {
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
		(void)!system(cmd);
	}
}

TestSuite(prom, .init = setup, .fini = teardown, .timeout = 120);

#define START(...) cr_assert(pl_start(&P, __VA_ARGS__, NULL), \
	"supervisor did not come up:\n%s", h_slurp(P.err))
#define WAIT_OUT(text) cr_assert(h_wait_text(P.out, text, 1, 10000), \
	"stdout never held '%s':\n%s\nstderr:\n%s", text, h_slurp(P.out), \
	h_slurp(P.err))

static char *
prom_log(void)
{
	char path[200];
	snprintf(path, sizeof(path), "%s/prometheus.log", tmp);
	char *s = h_slurp(path);
	size_t n = strlen(s);
	return n > 3000 ? s + n - 3000 : s;
}

/* Start Prometheus scraping the sink every second, with its data in tmp;
 * returns once its API answers. */
static void
prom_start(void)
{
	char conf[200], data[200], log[200], web[64], cfg_arg[220], data_arg[220],
	    web_arg[100];
	snprintf(conf, sizeof(conf), "%s/prometheus.yml", tmp);
	snprintf(data, sizeof(data), "%s/data", tmp);
	snprintf(log, sizeof(log), "%s/prometheus.log", tmp);
	snprintf(web, sizeof(web), "127.0.0.1:%d", web_port);
	FILE *f = fopen(conf, "w");
	cr_assert_not_null(f);
	fprintf(f, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
	    "scrape_configs:\n  - job_name: telem\n    static_configs:\n"
	    "      - targets: ['%s']\n", sink_addr);
	cr_assert_eq(fclose(f), 0);
	snprintf(cfg_arg, sizeof(cfg_arg), "--config.file=%s", conf);
	snprintf(data_arg, sizeof(data_arg), "--storage.tsdb.path=%s", data);
	snprintf(web_arg, sizeof(web_arg), "--web.listen-address=%s", web);
	pid_t parent = getpid();
	prom_pid = fork();
	cr_assert(prom_pid != -1);
	if (prom_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		int o = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int z = open("/dev/null", O_RDONLY);
		if (o == -1 || z == -1 || chdir(tmp) == -1)
			_exit(127);
		dup2(z, 0);
		dup2(o, 1);
		dup2(o, 2);
		execlp("prometheus", "prometheus", cfg_arg, data_arg, web_arg,
		    "--log.level=warn", (char *)NULL);
		dprintf(2, "cannot run prometheus: %s (tests/deps.sh installs it)\n",
		    strerror(errno));
		_exit(127);
	}
	char cmd[300], out[256];
	snprintf(cmd, sizeof(cmd), "curl -s -o /dev/null -w '%%{http_code}' "
	    "http://%s/-/ready", web);
	for (int i = 0; i < 3000; i++) {
		int st;
		if (waitpid(prom_pid, &st, WNOHANG) == prom_pid) {
			prom_pid = 0;
			cr_assert_fail("prometheus exited (status %d):\n%s", st, prom_log());
		}
		if (h_run(cmd, out, sizeof(out)) == 0 && strcmp(out, "200") == 0)
			return;
		h_nap_ms(10);
	}
	cr_assert_fail("prometheus not ready after 30 s:\n%s", prom_log());
}

/* The value Prometheus's API gives for an instant query of `expr` (one
 * series); 1 and *v once it has one, 0 when it has none (yet). */
static int
prom_query(const char *expr, double *v)
{
	char cmd[600], out[8192];
	snprintf(cmd, sizeof(cmd), "curl -s -G 'http://127.0.0.1:%d/api/v1/query' "
	    "--data-urlencode 'query=%s'", web_port, expr);
	if (h_run(cmd, out, sizeof(out)) != 0)
		return 0;
	/* {"status":"success","data":{"resultType":"vector","result":[{
	 * "metric":{...},"value":[1700000000.123,"55"]}]}} */
	if (strstr(out, "\"status\":\"success\"") == NULL)
		return 0;
	const char *val = strstr(out, "\"value\":[");
	if (val == NULL)
		return 0;
	cr_assert_null(strstr(val + 1, "\"value\":["), "%s: more than one series:\n%s",
	    expr, out);
	const char *q = strchr(val, ',');
	if (q == NULL || q[1] != '"')
		return 0;
	*v = strtod(q + 2, NULL);
	return 1;
}

/* Wait until Prometheus gives `want` for expr (scrapes come each second). */
static void
prom_expect(const char *expr, double want)
{
	double v = -1;
	int have = 0;
	for (int i = 0; i < 300; i++) {
		have = prom_query(expr, &v);
		if (have && v == want)
			return;
		h_nap_ms(100);
	}
	char page[200];
	snprintf(page, sizeof(page), "curl -s http://%s/metrics", sink_addr);
	char body[16384];
	h_run(page, body, sizeof(body));
	cr_assert_fail("%s: Prometheus has %s%.17g, want %.17g\nsink page:\n%s\n"
	    "prometheus log:\n%s\ntelem stderr:\n%s", expr, have ? "" : "nothing, last ",
	    v, want, body, prom_log(), h_slurp(P.err));
}

Test(prom, prometheus_reads_the_seed_session_and_known_values)
{
	prom_start();
	START("-f", "200", "-m", "1024", "--prom", sink_addr);
	cr_assert(pl_seed_session(&P), "the session's reports did not come:\n%s"
	    "\nstderr:\n%s", h_slurp(P.out), h_slurp(P.err));
	/* The stdout report is the seed's, byte for byte, with the sink on. */
	char *out = h_slurp(P.out);
	cr_assert_str_eq(out, H_SEED_OUT);
	free(out);
	prom_expect("telem_ckms{name=\"a\",quantile=\"0.75\"}", 55);
	prom_expect("telem_ckms{name=\"a\",quantile=\"0.25\"}", 10);
	prom_expect("telem_ckms_count{name=\"a\"}", 2);
	prom_expect("telem_ckms_sum{name=\"a\"}", 65);
	prom_expect("telem_cma{name=\"b\"}", 2000);
	prom_expect("telem_cma_samples_total{name=\"b\"}", 3);

	/* A known set: k takes 1..200 (the low filter keeps 1..100), m
	 * takes 150, 250, 350. Prometheus must give the report's numbers. */
	char buf[2048];
	size_t len = 0;
	for (int i = 1; i <= 200; i++) {
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "k %d\n", i);
		if (i % 100 == 0) {
			pl_nc(&P, buf);
			len = 0;
		}
	}
	pl_nc(&P, "m 150\nm 250\nm 350\n");
	WAIT_OUT("[CMA] m 250\n");
	WAIT_OUT("[CKMS] k 0.99:");
	/* The report's k lines: the last of each quantile. */
	static const char *const label[] = { "0", "0.25", "0.5", "0.75", "0.9", "0.99" };
	out = h_slurp(P.out);
	for (int i = 0; i < 6; i++) {
		char key[32], expr[96];
		snprintf(key, sizeof(key), "[CKMS] k %s:", label[i]);
		const char *at = NULL;
		for (const char *p = strstr(out, key); p; p = strstr(p + 1, key))
			at = p;
		cr_assert_not_null(at, "%s", out);
		double want = strtod(at + strlen(key), NULL);
		snprintf(expr, sizeof(expr), "telem_ckms{name=\"k\",quantile=\"%s\"}",
		    label[i]);
		prom_expect(expr, want);
	}
	free(out);
	prom_expect("telem_ckms_count{name=\"k\"}", 100);
	prom_expect("telem_ckms_sum{name=\"k\"}", 5050);
	prom_expect("telem_cma{name=\"m\"}", 250);
	prom_expect("telem_sink_prom_reports_broken_total", 0);

	/* The sink is a stage like any: status shows it, fed by no Flush. */
	struct h_status s;
	cr_assert(pl_status(&P, &s), "%s", s.raw);
	struct h_stage *ps = h_find(&s, "prom");
	cr_assert_not_null(ps, "%s", s.raw);
	cr_assert_str_eq(ps->state, "up");
	cr_assert_str_eq(ps->in_queue, "prom");
	cr_assert_eq(ps->bad, 0, "%s", s.raw);
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", h_slurp(P.err));
}

Test(prom, promtool_accepts_the_page)
{
	START("-f", "200", "-m", "1024", "--prom", sink_addr);
	pl_nc(&P, "a 10\na 55\nb 1000\nweird\"name\\x 5\nutf8-é 7\n");
	WAIT_OUT("[CMA] b 1000\n");
	WAIT_OUT("[CKMS] utf8-é 0.99:7\n");
	char cmd[300], out[16384];
	for (int i = 0; i < 100; i++) {
		snprintf(cmd, sizeof(cmd), "curl -s http://%s/metrics", sink_addr);
		cr_assert_eq(h_run(cmd, out, sizeof(out)), 0);
		if (strstr(out, "utf8-é") && strstr(out, "telem_cma{"))
			break;
		h_nap_ms(50);
	}
	cr_assert(strstr(out, "telem_ckms{name=\"weird\\\"name\\\\x\",quantile=\"0.5\"} 5\n"),
	    "label value escaped:\n%s", out);
	snprintf(cmd, sizeof(cmd), "curl -s http://%s/metrics | promtool check metrics "
	    "2>&1", sink_addr);
	char check[4096];
	int rc = h_run(cmd, check, sizeof(check));
	cr_assert_eq(rc, 0, "promtool: %s\npage:\n%s", check, out);
	/* The egresses keep their state though they now have an out; the
	 * sink gets none (the pipeline file's state key, set by the
	 * built-in pipeline). */
	static const char *const stage[] = { "ckms", "cma", "prom" };
	for (int i = 0; i < 3; i++) {
		snprintf(cmd, sizeof(cmd), "tr '\\0' ' ' </proc/%d/cmdline | grep -q -- "
		    "' --state '", (int)pl_stage_pid(&P, stage[i]));
		cr_assert_eq(system(cmd), i < 2 ? 0 : 256, "%s: --state %s", stage[i],
		    i < 2 ? "missing" : "given");
	}
	/* Only GET /metrics. */
	snprintf(cmd, sizeof(cmd), "curl -s -o /dev/null -w '%%{http_code}' "
	    "http://%s/other", sink_addr);
	cr_assert_eq(h_run(cmd, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "404");
	snprintf(cmd, sizeof(cmd), "curl -s -o /dev/null -w '%%{http_code}' -X POST "
	    "http://%s/metrics", sink_addr);
	cr_assert_eq(h_run(cmd, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "405");
}

/* Wait until status shows the stage up with restarts >= n; its pid. */
static long long
wait_up_again(const char *stage, long long old, int n)
{
	struct h_status s;
	for (int i = 0; i < 1000; i++) {
		if (pl_status(&P, &s)) {
			struct h_stage *x = h_find(&s, stage);
			if (x && x->pid > 0 && x->pid != old && x->restarts >= n &&
			    strcmp(x->state, "up") == 0)
				return x->pid;
		}
		h_nap_ms(10);
	}
	cr_assert_fail("%s not up again:\n%s\n%s", stage, s.raw, h_slurp(P.err));
	return -1;
}

Test(prom, sinks_and_an_egress_killed_under_load_are_restarted_and_the_books_balance)
{
	/* carbon: nobody listens there; its lines wait and are dropped. */
	int cport;
	h_tcp_ports(&cport, 1);
	char g[32];
	snprintf(g, sizeof(g), "127.0.0.1:%d", cport);
	START("-f", "100", "-m", "1024", "--prom", sink_addr, "-g", g);
	/* Each sink, then an egress that feeds them (its reports to the
	 * sinks are not booked, so its death costs the sinks nothing). */
	const char *sink[] = { "prom", "carbon", "ckms" };
	for (int k = 0; k < 3; k++) {
		long long pid = pl_stat(&P, sink[k], "pid");
		cr_assert_gt(pid, 0);
		/* Load through the kill: 32 lines a datagram. */
		char dgram[512];
		size_t len = 0;
		for (int i = 0; i < 32; i++)
			len += (size_t)snprintf(dgram + len, sizeof(dgram) - len,
			    "n%d %d\n", i, i * 7);
		pid_t load = fork();
		cr_assert(load != -1);
		if (load == 0) {
			pl_burst(&P, dgram, 4000, 200);
			_exit(0);
		}
		h_nap_ms(300);
		cr_assert_eq(kill((pid_t)pid, SIGKILL), 0);
		wait_up_again(sink[k], pid, 1);
		waitpid(load, NULL, 0);
	}
	/* After the storm, a new value reaches the restarted prom sink. */
	pl_nc(&P, "fresh 42\n");
	WAIT_OUT("[CKMS] fresh 0.99:42\n");
	char cmd[300], out[65536];
	int found = 0;
	for (int i = 0; i < 200 && !found; i++) {
		snprintf(cmd, sizeof(cmd), "curl -s http://%s/metrics", sink_addr);
		found = h_run(cmd, out, sizeof(out)) == 0 &&
		    strstr(out, "telem_ckms{name=\"fresh\",quantile=\"0.5\"} 42\n") &&
		    strstr(out, "telem_ckms_count{name=\"n1\"}");
		if (!found)
			h_nap_ms(50);
	}
	cr_assert(found, "page after the restart:\n%s", out);
	struct h_status s;
	cr_assert(pl_status(&P, &s), "%s", s.raw);
	for (int k = 0; k < 3; k++) {
		struct h_stage *x = h_find(&s, sink[k]);
		cr_assert_not_null(x);
		cr_expect_eq(x->restarts, 1, "%s", s.raw);
	}
	/* The egresses did not stop: every datagram's 32 records were taken
	 * (those the kernel dropped are counted by ingest). */
	int even = 0;
	for (int i = 0; i < 500 && !even; i++) {
		cr_assert(pl_status(&P, &s), "%s", s.raw);
		struct h_stage *in = h_find(&s, "ingest"), *lo = h_find(&s, "low");
		cr_assert(in && lo);
		even = lo->in == in->out && lo->depth == 0;
		if (!even)
			h_nap_ms(10);
	}
	cr_expect(even, "%s", s.raw);
	/* The books balance with the sinks in the pipeline: report records
	 * are not counted, and the kills of the sinks cost no record. */
	char books[8192];
	int balanced = 0;
	for (int i = 0; i < 300 && !balanced; i++) {
		balanced = pl_books(&P, books, sizeof(books));
		if (!balanced)
			h_nap_ms(50);
	}
	cr_assert(balanced, "%s\n%s", books, h_slurp(P.err));
	cr_assert(pl_status(&P, &s), "%s", s.raw);
	cr_expect_eq(h_find(&s, "prom")->lost + h_find(&s, "carbon")->lost, 0,
	    "%s", s.raw);
	cr_expect(strstr(books, "prom: (report records only).out=0 == prom.in=0 ok"),
	    "%s", books);
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", h_slurp(P.err));
}

Test(prom, in_a_pipeline_file_a_sink_is_an_ordinary_stage)
{
	/* Only ckms feeds the sink: cma's names never show. The sink says
	 * no `state = no`: it is given --state, and takes it. */
	char path[300];
	const char *conf = pl_conf(&P, "sink.conf", path, sizeof(path),
	    "[pipeline]\nflush_ms = 200\nmsg_bytes = 1024\n"
	    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:%d\nout = low high\n"
	    "[stage low]\nexec = telem-filter\nargs = --keep-below 100\nout = ckms\nflush = yes\n"
	    "[stage high]\nexec = telem-filter\nargs = --keep-above 100\nout = cma\nflush = yes\n"
	    "[stage ckms]\nexec = telem-egress-ckms\nout = web\nstate = yes\n"
	    "[stage cma]\nexec = telem-egress-cma\n"
	    "[stage web]\nexec = telem-sink-prom\nargs = --listen %s\n",
	    P.port, sink_addr);
	cr_assert(pl_start_conf(&P, conf, NULL), "%s", h_slurp(P.err));
	pl_nc(&P, "a 10\nb 1000\n");
	WAIT_OUT("[CMA] b 1000\n");
	WAIT_OUT("[CKMS] a 0.99:10\n");
	char cmd[300], out[16384];
	int found = 0;
	for (int i = 0; i < 200 && !found; i++) {
		snprintf(cmd, sizeof(cmd), "curl -s http://%s/metrics", sink_addr);
		found = h_run(cmd, out, sizeof(out)) == 0 &&
		    strstr(out, "telem_ckms{name=\"a\",quantile=\"0.5\"} 10\n");
		if (!found)
			h_nap_ms(50);
	}
	cr_assert(found, "%s", out);
	cr_assert_null(strstr(out, "telem_cma{"), "%s", out);
	struct h_status s;
	cr_assert(pl_status(&P, &s), "%s", s.raw);
	cr_assert_not_null(h_find(&s, "web"), "%s", s.raw);
	cr_assert_str_eq(h_find(&s, "web")->in_queue, "web");
}

static int
tcp_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd != -1 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

Test(prom, hostile_clients_do_not_stop_scrapes_or_reports)
{
	START("-f", "200", "-m", "1024", "--prom", sink_addr);
	pl_nc(&P, "a 10\n");
	WAIT_OUT("[CKMS] a 0.99:10\n");
	/* 500 idle connections, a malformed request line, a 1 MiB header. */
	enum { IDLE = 500 };
	int fds[IDLE], n = 0;
	for (int i = 0; i < IDLE; i++)
		if ((fds[n] = tcp_connect(sink_port)) != -1)
			n++;
	cr_assert_gt(n, 100, "only %d connections", n);
	int bad = tcp_connect(sink_port);
	cr_assert_neq(bad, -1);
	static const char garbage[] = "GARBAGE \x01\x02 HTTP/9\r\n\r\n";
	(void)!send(bad, garbage, sizeof(garbage) - 1, MSG_NOSIGNAL);
	int big = tcp_connect(sink_port);
	cr_assert_neq(big, -1);
	static char hdr[1 << 20];
	memset(hdr, 'x', sizeof(hdr));
	memcpy(hdr, "GET /metrics HTTP/1.1\r\nX: ", 27);
	/* As much as the socket takes without waiting: the server may
	 * refuse it (431) and close long before the end. */
	(void)!send(big, hdr, sizeof(hdr), MSG_NOSIGNAL | MSG_DONTWAIT);
	/* Reports go on, and another client's scrape is answered. */
	pl_nc(&P, "a 55\n");
	WAIT_OUT("[CKMS] a 0.99:55\n");
	char cmd[300], out[16384];
	int found = 0;
	for (int i = 0; i < 200 && !found; i++) {
		snprintf(cmd, sizeof(cmd), "curl -s -m 5 http://%s/metrics", sink_addr);
		found = h_run(cmd, out, sizeof(out)) == 0 &&
		    strstr(out, "telem_ckms_count{name=\"a\"} 2\n");
		if (!found)
			h_nap_ms(50);
	}
	cr_assert(found, "%s", out);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	close(bad);
	close(big);
	struct h_status s;
	cr_assert(pl_status(&P, &s), "%s", s.raw);
	cr_assert_eq(h_find(&s, "prom")->restarts, 0, "%s", s.raw);
	cr_assert_eq(h_find(&s, "ckms")->lost, 0, "%s", s.raw);
}

/* In a pipeline file the supervisor does not read a stage's args: the
 * sink itself refuses a --listen name as a configuration error (100),
 * which stops the pipeline at once, not after five failed restarts. */
Test(prom, a_listen_name_in_a_pipeline_file_is_a_configuration_error)
{
	char path[300];
	const char *conf = pl_conf(&P, "name.conf", path, sizeof(path),
	    "[pipeline]\nflush_ms = 200\nmsg_bytes = 1024\n"
	    "[stage ingest]\nexec = telem-ingest\nudp = 127.0.0.1:%d\nout = ckms\n"
	    "[stage ckms]\nexec = telem-egress-ckms\nout = web\nstate = yes\n"
	    "flush = yes\n"
	    "[stage web]\nexec = telem-sink-prom\nargs = --listen localhost:%d\n",
	    P.port, sink_port);
	cr_assert_not(pl_start_conf(&P, conf, NULL), "%s", h_slurp(P.err));
	int st = pl_wait(&P, 10000);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "%d\n%s", st,
	    h_slurp(P.err));
	char *err = h_slurp(P.err), text[256];
	snprintf(text, sizeof(text), "telem-sink-prom[web]: --listen localhost:%d: "
	    "the host must be a numeric IPv4 or IPv6 address\n", sink_port);
	cr_assert_eq(h_count(err, text), 1, "%s", err);
	cr_assert(strstr(err, "stage web exited 100 (configuration error): "
	    "not restarted") != NULL, "%s", err);
	free(err);
}

/* The sink's page as curl gets it, into buf. */
static void
sink_page(char *buf, size_t cap)
{
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "curl -s http://%s/metrics", sink_addr);
	h_run(cmd, buf, cap);
}

/* A report the sink throws away (its first message taken from the sink's
 * queue here, while the sink is stopped: its END's count then does not
 * match) shows in telem_sink_prom_reports_broken_total at once, not at
 * the next report that renders - a minute later at -f 60000. */
Test(prom, a_report_thrown_away_is_on_the_page_at_once)
{
	START("-f", "60000", "-m", "1024", "--prom", sink_addr);
	char buf[1024];
	size_t len = 0;
	for (int i = 0; i < 20; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "n%02d 5\n", i);
	pl_sendto(&P, buf, len);
	for (int i = 0; i < 500 && pl_stat(&P, "ckms", "in") < 20; i++)
		h_nap_ms(10);
	cr_assert_eq(pl_stat(&P, "ckms", "in"), 20, "%s", h_slurp(P.err));
	char page[16384];
	sink_page(page, sizeof(page));
	cr_assert_not_null(strstr(page, "telem_sink_prom_reports_broken_total 0\n"),
	    "%s", page);
	pid_t sink = pl_stage_pid(&P, "prom");
	cr_assert_gt(sink, 0);
	cr_assert_eq(kill(sink, SIGSTOP), 0);
	char reply[512];
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "flush"), 0, "%s", reply);
	WAIT_OUT("[CKMS] n19 0.99:5\n");
	/* 160 entries of 1024-byte messages: several, all queued */
	long long depth = 0;
	for (int i = 0; i < 300 && (depth = pl_stat(&P, "prom", "depth")) < 3; i++)
		h_nap_ms(10);
	h_nap_ms(200);
	cr_assert_geq(depth, 3, "%s", h_slurp(P.err));
	enum chan_kind kind;
	char obj[CHAN_NAME_MAX];
	cr_assert_eq(chan_kind_parse(P.transport, &kind), 0);
	cr_assert_eq(chan_objname(obj, sizeof(obj), P.instance, "prom"), 0);
	struct chan *q = chan_open(kind, obj, CHAN_READ);
	cr_assert_not_null(q, "open %s: %s", obj, strerror(errno));
	unsigned char msg[1024];
	cr_assert_gt(chan_recv(q, msg, sizeof(msg), 0), 0);
	chan_close(q);
	cr_assert_eq(kill(sink, SIGCONT), 0);
	int seen = 0;
	for (int i = 0; i < 100 && !seen; i++) {
		sink_page(page, sizeof(page));
		seen = strstr(page, "telem_sink_prom_reports_broken_total 1\n") != NULL;
		if (!seen)
			h_nap_ms(50);
	}
	cr_assert(seen, "the page does not count the report thrown away:\n%s\n%s",
	    page, h_slurp(P.err));
	cr_assert_null(strstr(page, "n19"), "a report thrown away is on the page:\n%s",
	    page);
}

Test(prom, bad_prom_options_are_one_line_and_exit_2)
{
	char exe[256], cmd[512];
	h_bin("telem-supervisor", exe, sizeof(exe));
	snprintf(cmd, sizeof(cmd), "%s -h | grep -q -- '--prom host:port'", exe);
	cr_assert_eq(system(cmd), 0);
	static const char *const bad[] = {
		"--prom x", "--prom :9108", "--prom 127.0.0.1:", "--prom 127.0.0.1:0",
		"--prom 127.0.0.1:65536", "--prom localhost:9108", "--prom ::1:9108",
		"--prom", "-c examples/seed.conf --prom 127.0.0.1:9108",
	};
	char why[4096];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(h_refuses(&P, bad[i], why, sizeof(why)), "%s", why);
}
