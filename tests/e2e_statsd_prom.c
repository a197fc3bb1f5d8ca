/* e2e_statsd_prom.c - statsd metrics on telem-sink-prom (docs/design.md
 * §14, §15), end to end with the real binaries under the supervisor: a
 * pipeline file (examples/statsd-prom.conf) with telem-ingest --protocol
 * statsd -> telem-egress-statsd --out prom -> telem-sink-prom on a free
 * port. Counters, a timer of ten
 * values, a gauge and a tagged counter are sent with `nc -u -q0`; after a
 * `telemctl flush` the page read with curl must hold the series as
 * statsd_exporter maps them (counters as _total, the timer as a summary
 * in seconds, tags as labels), and promtool must accept it. A value no
 * report entry can carry is left out of the page, counted and logged. An
 * egress killed in the middle of a report costs the page that report
 * only. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "harness.h"

static struct pl P;
static int sink_port;

static void
setup(void)
{
	pl_init(&P);
	h_tcp_ports(&sink_port, 1);
}

static void
teardown(void)
{
	pl_cleanup(&P);
}

TestSuite(statsd_prom, .init = setup, .fini = teardown, .timeout = 120);

/* text with every `from` made `to` (malloc'd); from must occur. */
static char *
replace(const char *text, const char *from, const char *to)
{
	size_t n = 0, fl = strlen(from), tl = strlen(to);
	for (const char *at = strstr(text, from); at; at = strstr(at + fl, from))
		n++;
	cr_assert_gt(n, 0, "'%s' not in examples/statsd-prom.conf", from);
	char *out = malloc(strlen(text) + n * tl + 1), *o = out;
	cr_assert_not_null(out);
	for (const char *at; (at = strstr(text, from)) != NULL; text = at + fl) {
		memcpy(o, text, (size_t)(at - text));
		o += at - text;
		memcpy(o, to, tl);
		o += tl;
	}
	strcpy(o, text);
	return out;
}

/* Every metric sent (one line each): what the egress must have read
 * before the flush. */
#define METRICS 17

static const char *const expected[] = {
	"# TYPE hits_total counter\nhits_total 15\n",
	"# TYPE temp gauge\ntemp 20\n",
	"# TYPE api_latency summary\n"
	"api_latency{quantile=\"0.5\"} 0.55\n"
	"api_latency{quantile=\"0.9\"} 0.9\n"
	"api_latency{quantile=\"0.99\"} 1\n"
	"api_latency_sum 5.5\n"
	"api_latency_count 10\n",
	"# TYPE reqs_total counter\nreqs_total{code=\"200\",env=\"prod\"} 4\n",
	"# TYPE dots_total counter\ndots_total{a=\"2\",a_b=\"1\"} 1\n",
	"# TYPE statsd_metrics_received_total counter\n"
	"statsd_metrics_received_total 17\n",
	"telem_sink_prom_reports_broken_total 0\n",
	"telem_sink_prom_series_dropped_total 0\n",
};

/* examples/statsd-prom.conf as shipped, with free ports, small messages,
 * and no flush but the test's telemctl flush, started. */
static void
start_example(void)
{
	char *text = h_slurp("examples/statsd-prom.conf"), udp[64], tcp[64];
	snprintf(udp, sizeof(udp), "127.0.0.1:%d", P.port);
	snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", sink_port);
	char *a = replace(text, "127.0.0.1:8125", udp);
	char *b = replace(a, "127.0.0.1:9102", tcp);
	char *c = replace(b, "flush_ms = 10000", "flush_ms = 3600000");
	char *d = replace(c, "msg_bytes = auto", "msg_bytes = 1024");
	char conf[256];
	pl_conf(&P, "statsd-prom.conf", conf, sizeof(conf), "%s", d);
	free(text);
	free(a);
	free(b);
	free(c);
	free(d);
	cr_assert(pl_start_conf(&P, conf, NULL), "supervisor did not come up:\n%s",
	    h_slurp(P.err));
}

Test(statsd_prom, statsd_metrics_as_statsd_exporter_maps_them)
{
	start_example();
	pl_nc(&P, "hits:2|c");
	pl_nc(&P, "hits:3|c\nhits:5|c|@0.5");
	pl_nc(&P, "api.latency:300|ms\napi.latency:100|ms\napi.latency:200|ms\n"
	    "api.latency:1000|ms\napi.latency:500|ms\napi.latency:400|ms\n"
	    "api.latency:900|ms\napi.latency:600|ms\napi.latency:800|ms\n"
	    "api.latency:700|ms");
	pl_nc(&P, "temp:21.5|g");
	pl_nc(&P, "temp:-1.5|g");
	pl_nc(&P, "reqs:4|c|#env:prod,code:200");
	/* The key holds its tags in byte order, "a.b=1;a=2"; a report wants
	 * them in key order. */
	pl_nc(&P, "dots:1|c|#a:2,a.b:1");
	/* The egress books a record `in` when it read it; Flush after all. */
	long long in = -1;
	for (int i = 0; i < 1000 && (in = pl_stat(&P, "ingest", "out")) < METRICS; i++)
		h_nap_ms(10);
	cr_assert_geq(in, METRICS, "ingest sent %lld:\n%s", in, h_slurp(P.err));
	for (int i = 0; i < 1000 && (in = pl_stat(&P, "statsd", "in")) < METRICS; i++)
		h_nap_ms(10);
	cr_assert_geq(in, METRICS, "egress read %lld:\n%s", in, h_slurp(P.err));
	char reply[512];
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "flush"), 0, "flush: %s", reply);

	char cmd[200], page[16384];
	snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/metrics", sink_port);
	int all = 0;
	for (int i = 0; i < 1000 && !all; i++) {
		if (h_run(cmd, page, sizeof(page)) == 0) {
			all = 1;
			for (size_t k = 0; k < sizeof(expected) / sizeof(*expected); k++)
				all &= strstr(page, expected[k]) != NULL;
		}
		if (!all)
			h_nap_ms(20);
	}
	for (size_t k = 0; k < sizeof(expected) / sizeof(*expected); k++)
		cr_expect_not_null(strstr(page, expected[k]), "page lacks:\n%s\npage:\n%s"
		    "\nstderr:\n%s", expected[k], page, h_slurp(P.err));
	/* Derived fields (rate, mean, std, ...) are for Graphite only. */
	cr_expect_null(strstr(page, "mean"), "%s", page);
	cr_expect_null(strstr(page, "rate"), "%s", page);

	char check[4096];
	snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/metrics | "
	    "promtool check metrics 2>&1", sink_port);
	int rc = h_run(cmd, check, sizeof(check));
	cr_expect_eq(rc, 0, "promtool: %s\npage:\n%s", check, page);

	/* A second flush: counters add up in the sink, the timer (kept, with
	 * no values) is its count 0 only, the gauge stays. */
	pl_nc(&P, "hits:5|c");
	for (int i = 0; i < 1000 && (in = pl_stat(&P, "statsd", "in")) < METRICS + 1; i++)
		h_nap_ms(10);
	cr_assert_geq(in, METRICS + 1, "egress read %lld:\n%s", in, h_slurp(P.err));
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "flush"), 0, "flush: %s", reply);
	static const char *const second[] = {
		"hits_total 20\n", "temp 20\n", "api_latency_count 0\n",
		"reqs_total{code=\"200\",env=\"prod\"} 4\n",
	};
	all = 0;
	for (int i = 0; i < 1000 && !all; i++) {
		snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/metrics",
		    sink_port);
		if (h_run(cmd, page, sizeof(page)) == 0) {
			all = 1;
			for (size_t k = 0; k < sizeof(second) / sizeof(*second); k++)
				all &= strstr(page, second[k]) != NULL;
		}
		if (!all)
			h_nap_ms(20);
	}
	for (size_t k = 0; k < sizeof(second) / sizeof(*second); k++)
		cr_expect_not_null(strstr(page, second[k]), "second flush, page "
		    "lacks: %s\npage:\n%s", second[k], page);
	cr_expect_null(strstr(page, "quantile"), "%s", page);
	snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/metrics | "
	    "promtool check metrics 2>&1", sink_port);
	rc = h_run(cmd, check, sizeof(check));
	cr_expect_eq(rc, 0, "promtool, second flush: %s\npage:\n%s", check, page);

	/* The books still balance: report records are not counted. */
	char books[4096];
	cr_expect(pl_books(&P, books, sizeof(books)), "books:\n%s", books);
	int st = pl_signal_wait(&P, SIGTERM, 10000);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d:\n%s", st,
	    h_slurp(P.err));
	cr_expect_eq(pl_objects_left(&P), 0);
}

/* A value no report entry can carry (more than REPORT_TAGS_MAX tags, a
 * tag value over REPORT_TAG_VAL_MAX bytes, a tag without a value) is left
 * out of the page: counted in the egress's sink_dropped, one per field,
 * and logged. */
Test(statsd_prom, values_no_report_can_carry_are_counted)
{
	start_example();
	char line[512], val[130];
	int n = snprintf(line, sizeof(line), "many:1|c|#");
	for (int i = 0; i < 17; i++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%st%d:1",
		    i ? "," : "", i);
	pl_nc(&P, line);  /* a counter: rate and count, 2 entries */
	memset(val, 'v', 129);
	val[129] = '\0';
	snprintf(line, sizeof(line), "long:1|g|#k:%s", val);
	pl_nc(&P, line);  /* a gauge: 1 entry */
	pl_nc(&P, "bare:2|g|#flag");  /* a tag with no value: 1 entry */
	pl_nc(&P, "ok:3|g|#k:v");
	long long in = -1;
	for (int i = 0; i < 1000 && (in = pl_stat(&P, "statsd", "in")) < 4; i++)
		h_nap_ms(10);
	cr_assert_geq(in, 4, "egress read %lld:\n%s", in, h_slurp(P.err));
	char reply[512];
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "flush"), 0, "flush: %s", reply);
	char cmd[200], page[16384];
	snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/metrics", sink_port);
	int seen = 0;
	for (int i = 0; i < 1000 && !seen; i++) {
		seen = h_run(cmd, page, sizeof(page)) == 0 &&
		    strstr(page, "ok{k=\"v\"} 3\n") != NULL;
		if (!seen)
			h_nap_ms(20);
	}
	cr_assert(seen, "page:\n%s\nstderr:\n%s", page, h_slurp(P.err));
	cr_expect_null(strstr(page, "many"), "%s", page);
	cr_expect_null(strstr(page, "long"), "%s", page);
	cr_expect_null(strstr(page, "bare"), "%s", page);
	cr_expect_eq(pl_stat(&P, "statsd", "sink_dropped"), 4, "%s",
	    h_slurp(P.err));
	cr_expect_eq(pl_stat(&P, "statsd", "dropped"), 0);
	cr_expect_eq(h_count(h_slurp(P.err), "no report entry can carry it "
	    "(name, tags or field); left out of the report, counted in "
	    "sink_dropped"), 1, "%s", h_slurp(P.err));
}

/* The page after a flush: waits (5 s at most) for needle, returns 1 if
 * it came. */
static int
page_has(char *page, size_t cap, const char *needle)
{
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/metrics", sink_port);
	for (int i = 0; i < 250; i++) {
		if (h_run(cmd, page, cap) == 0 && strstr(page, needle) != NULL)
			return 1;
		h_nap_ms(20);
	}
	return 0;
}

/* An egress killed in the middle of a report (its sink stopped, the
 * queue full) leaves the sink the first part of it. That part is dropped
 * and counted broken, and only it: the restarted egress's next report,
 * whose counts it booked `out`, is shown whole (it was dropped with the
 * part, the counter of hits:5 never reaching hits_total). */
Test(statsd_prom, a_report_cut_by_a_kill_costs_only_that_report)
{
	start_example();
	/* 1000 counters: 2000 entries of about 40 bytes, far more 1024-byte
	 * messages than the sink's queue holds. */
	char line[2048];
	for (int b = 0; b < 1000 / 40; b++) {
		int n = 0;
		for (int i = 0; i < 40; i++)
			n += snprintf(line + n, sizeof(line) - (size_t)n, "%sk%04d:1|c",
			    i ? "\n" : "", b * 40 + i);
		pl_nc(&P, line);
	}
	cr_assert_eq(fault_wait_stat(&P, "statsd", "in", 1000), 1000, "%s",
	    h_slurp(P.err));
	pid_t sink = pl_stage_pid(&P, "prom"), egress = pl_stage_pid(&P, "statsd");
	cr_assert_gt(sink, 0);
	cr_assert_gt(egress, 0);
	cr_assert_eq(kill(sink, SIGSTOP), 0);
	char reply[512];
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "flush"), 0, "flush: %s", reply);
	/* The egress fills the sink's queue and waits: nothing booked yet. */
	long long depth = 0;
	for (int i = 0; i < 500 && (depth = pl_stat(&P, "prom", "depth")) < 5; i++)
		h_nap_ms(10);
	h_nap_ms(300);
	cr_assert_geq(depth, 5, "%s", h_slurp(P.err));
	cr_assert_eq(pl_stat(&P, "statsd", "out"), 0, "the report went through");
	cr_assert_eq(kill(egress, SIGKILL), 0);
	cr_assert_gt(fault_wait_restarted(&P, "statsd", egress), 0, "%s",
	    h_slurp(P.err));
	cr_assert_eq(kill(sink, SIGCONT), 0);

	char page[65536];
	pl_nc(&P, "hits:5|c");
	cr_assert_eq(fault_wait_stat(&P, "statsd", "in", 1001), 1001);
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "flush"), 0, "flush: %s", reply);
	cr_assert_eq(fault_wait_stat(&P, "statsd", "out", 1), 1, "%s",
	    h_slurp(P.err));
	cr_expect(page_has(page, sizeof(page), "hits_total 5\n"),
	    "the first report after the kill is not on the page:\n%s\n%s", page,
	    h_slurp(P.err));
	pl_nc(&P, "hits:7|c");
	cr_assert_eq(fault_wait_stat(&P, "statsd", "in", 1002), 1002);
	cr_assert_eq(pl_ctl(&P, reply, sizeof(reply), "flush"), 0, "flush: %s", reply);
	cr_assert_eq(fault_wait_stat(&P, "statsd", "out", 2), 2);
	cr_expect(page_has(page, sizeof(page), "statsd_metrics_received_total 2\n"),
	    "%s", page);
	cr_expect_not_null(strstr(page, "hits_total 12\n"), "%s", page);
	cr_expect_not_null(strstr(page, "telem_sink_prom_reports_total 2\n"), "%s",
	    page);
	cr_expect_not_null(strstr(page, "telem_sink_prom_reports_broken_total 1\n"),
	    "%s", page);
	cr_expect_null(strstr(page, "k0000"), "%s", page);
	char books[4096];
	cr_expect(pl_books(&P, books, sizeof(books)), "books:\n%s", books);
	cr_expect_eq(pl_stat(&P, "statsd", "lost"), 1000);
}
