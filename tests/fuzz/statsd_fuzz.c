/* statsd_fuzz.c - libFuzzer target for the statsd line parser
 * (ingest/statsd.c) and, behind it, the statsd aggregation
 * (egress/statsd_agg.c) with a tiny exact threshold so that the sketch is
 * reached too (`make fuzz`). Checks every metric's invariants, that both
 * modes judge the same number of metrics, that strict mode accepts no
 * more than statsd 0.9's rules do, and that a datagram counts as its
 * lines parsed one by one. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "egress/statsd_agg.h"
#include "ingest/statsd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct statsd_agg *agg;

static void
check(void *ctx, const struct statsd_metric *m)
{
	size_t *n = ctx;

	if (m->key_len > STATSD_KEY_MAX || m->key[m->key_len] != '\0' ||
	    m->name_len > m->key_len || m->ntags > STATSD_TAGS_MAX)
		abort();
	for (size_t i = 0; i < m->ntags; i++)
		if (m->tags[i].s <= m->key || m->tags[i].s[-1] != ';' ||
		    m->tags[i].s + m->tags[i].len > m->key + m->key_len)
			abort();
	if (m->type == STATSD_SET) {
		if (m->member_len < 1 || m->member_len > STATSD_MEMBER_MAX ||
		    m->member[m->member_len] != '\0')
			abort();
	} else if (m->type < STATSD_COUNTER || m->type > STATSD_GAUGE ||
	    isnan(m->value) || isnan(m->rate)) {
		abort();
	}
	(*n)++;
	statsd_agg_add(agg, m);
}

static void
line(void *ctx, const char *path, size_t len, double v, int64_t ts)
{
	(void)v, (void)ts;
	if (strlen(path) != len)
		abort();
	(*(size_t *)ctx)++;
}

/* One line in both modes: strict must take no more than statsd's rules,
 * except where telem's own key caps reject the line in COMPAT_090 (strict
 * drops empty tags first, so it may fit where the other does not). */
static void
judge_line(const char *s, size_t n, uint64_t tot[2][3])
{
	static struct statsd_parser p;
	struct statsd_result r[2];
	size_t k[2] = { 0, 0 };

	for (int mode = 0; mode < 2; mode++) {
		statsd_parser_init(&p, mode);
		statsd_parse(&p, s, n, check, &k[mode], &r[mode]);
		tot[mode][0] += r[mode].lines;
		tot[mode][1] += r[mode].metrics;
		tot[mode][2] += r[mode].bad;
	}
	int capped = r[1].bad_why &&
	    (strcmp(r[1].bad_why, "more than 64 tags") == 0 ||
	    strcmp(r[1].bad_why, "key longer than 255 bytes") == 0);
	if (r[0].metrics + r[0].bad != r[1].metrics + r[1].bad ||
	    (!capped && r[0].metrics > r[1].metrics))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct statsd_parser p;
	static const double pct[] = { 90, -10, 50, 100 };
	static const double bins[] = { 1, 10, INFINITY };
	static const struct statsd_histogram h = { "", bins, 3 };
	struct statsd_agg_config c;
	struct statsd_result r[2];
	size_t n[2] = { 0, 0 }, lines = 0;
	uint64_t tot[2][3] = { { 0 } };
	const char *s = (const char *)data;

	if (size > 65535)
		return 0;
	statsd_agg_config_default(&c);
	c.percent = pct;
	c.npercent = 4;
	c.histogram = &h;
	c.nhistogram = 1;
	c.timer_exact_max = 4;
	c.max_names = 64;
	c.max_members = 64;
	c.delete_gauges = c.delete_counters = size & 1;
	agg = statsd_agg_new(&c);
	if (agg == NULL)
		abort();
	for (int mode = 0; mode < 2; mode++) {
		statsd_parser_init(&p, mode);
		statsd_parse(&p, s, size, check, &n[mode], &r[mode]);
		if (r[mode].metrics != n[mode] || r[mode].lines > size ||
		    (r[mode].bad > 0) != (r[mode].bad_why != NULL) ||
		    r[mode].metrics + r[mode].bad < r[mode].lines)
			abort();
	}
	/* line by line, the same counts as the whole datagram */
	for (size_t i = 0; i < size; ) {
		const char *nl = memchr(s + i, '\n', size - i);
		size_t l = nl ? (size_t)(nl - s) - i : size - i;
		judge_line(s + i, l, tot);
		i += l + 1;
	}
	for (int mode = 0; mode < 2; mode++)
		if (tot[mode][0] != r[mode].lines || tot[mode][1] != r[mode].metrics ||
		    tot[mode][2] != r[mode].bad)
			abort();
	statsd_agg_flush(agg, 1000, 1, line, &lines);
	statsd_agg_flush(agg, 200, 2, line, &lines);
	statsd_agg_free(agg);
	return 0;
}
