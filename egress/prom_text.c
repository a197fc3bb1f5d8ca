/* prom_text.c - one source's complete report as Prometheus text
 * (prom_text.h): entries turned into items (family, label block, part,
 * value), sorted so that each family and each series is together, and
 * written out once; scrapes only copy the result. */
#include "egress/prom_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct prom_text *
prom_text_ref(struct prom_text *t)
{
	if (t != NULL)
		atomic_fetch_add(&t->refs, 1);
	return t;
}

void
prom_text_unref(struct prom_text *t)
{
	if (t != NULL && atomic_fetch_sub(&t->refs, 1) == 1) {
		free(t->text);
		free(t);
	}
}

enum fam_type { F_RESERVED, F_GAUGE, F_COUNTER, F_SUMMARY };
static const char *const fam_type_name[] = { "untyped", "gauge", "counter",
	"summary" };
enum part { P_QUANTILE, P_SUM, P_COUNT, P_VALUE };
static const char *const part_suffix[] = { "", "_sum", "_count", "" };

struct fam {
	size_t name_off, name_len;   /* in render.str */
	const char *help;
	unsigned type, rank;
};

/* 24 bytes: a report of 10 000 names has 80 000 of them. Offsets into
 * render.str fit 32 bits: a report is at most PROM_ENTRIES_DEFAULT entries
 * of labels well under 1 KiB each. */
struct item {
	double v;
	uint32_t fam;
	uint32_t lab_off;            /* the label block, in render.str */
	uint32_t q_off;              /* the quantile label's value */
	uint16_t lab_len;
	uint8_t q_len, part;
};

struct render {
	struct prom_buf str;              /* names, label blocks, quantiles */
	struct fam *f;
	size_t nf, capf;
	size_t *map, mapcap;         /* family index + 1, open addressing */
	struct item *it;
	size_t ni, capi;
	size_t last_off, last_len;   /* the label block made last */
	uint64_t dropped;
	int nomem;
};

static uint64_t
hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

static const char *
str_at(const struct render *r, size_t off)
{
	return r->str.p + off;
}

static int
map_grow(struct render *r)
{
	size_t cap = r->mapcap ? r->mapcap * 2 : 256;
	size_t *m = calloc(cap, sizeof(*m));
	if (m == NULL)
		return -1;
	for (size_t i = 0; i < r->nf; i++) {
		size_t h = hash(str_at(r, r->f[i].name_off), r->f[i].name_len) &
		    (cap - 1);
		while (m[h] != 0)
			h = (h + 1) & (cap - 1);
		m[h] = i + 1;
	}
	free(r->map);
	r->map = m;
	r->mapcap = cap;
	return 0;
}

/* The family called name[0..len), or (size_t)-1. */
static size_t
fam_find(const struct render *r, const char *name, size_t len)
{
	if (r->mapcap == 0)
		return (size_t)-1;
	for (size_t h = hash(name, len) & (r->mapcap - 1); r->map[h] != 0;
	    h = (h + 1) & (r->mapcap - 1)) {
		const struct fam *f = &r->f[r->map[h] - 1];
		if (f->name_len == len && memcmp(str_at(r, f->name_off), name,
		    len) == 0)
			return r->map[h] - 1;
	}
	return (size_t)-1;
}

static size_t
fam_insert(struct render *r, const char *name, size_t len, unsigned type,
    const char *help)
{
	if ((r->nf + 1) * 2 > r->mapcap && map_grow(r) == -1)
		goto nomem;
	if (r->nf == r->capf) {
		size_t cap = r->capf ? r->capf * 2 : 64;
		struct fam *f = realloc(r->f, cap * sizeof(*f));
		if (f == NULL)
			goto nomem;
		r->f = f;
		r->capf = cap;
	}
	size_t off = r->str.len;
	prom_fmt_put(&r->str, name, len);
	if (r->str.failed)
		goto nomem;
	r->f[r->nf] = (struct fam){ off, len, help, type, 0 };
	size_t h = hash(name, len) & (r->mapcap - 1);
	while (r->map[h] != 0)
		h = (h + 1) & (r->mapcap - 1);
	r->map[h] = ++r->nf;
	return r->nf - 1;
nomem:
	r->nomem = 1;
	return (size_t)-1;
}

/* The family name[0..len) of this type, made if new: (size_t)-1 when the
 * name is taken by another type, or by a summary's _sum/_count (a new
 * summary reserves those two, and needs them free). */
static size_t
fam_get(struct render *r, const char *name, size_t len, unsigned type,
    const char *help)
{
	size_t i = fam_find(r, name, len);
	if (i != (size_t)-1)
		return r->f[i].type == type ? i : (size_t)-1;
	if (type == F_SUMMARY) {
		char sub[300];
		if (len + 7 > sizeof(sub))
			return (size_t)-1;
		memcpy(sub, name, len);
		memcpy(sub + len, "_sum", 4);
		if (fam_find(r, sub, len + 4) != (size_t)-1)
			return (size_t)-1;
		memcpy(sub + len, "_count", 6);
		if (fam_find(r, sub, len + 6) != (size_t)-1)
			return (size_t)-1;
		i = fam_insert(r, name, len, type, help);
		fam_insert(r, sub, len + 6, F_RESERVED, NULL);
		memcpy(sub + len, "_sum", 4);
		fam_insert(r, sub, len + 4, F_RESERVED, NULL);
		return r->nomem ? (size_t)-1 : i;
	}
	return fam_insert(r, name, len, type, help);
}

static void
item_add(struct render *r, size_t fam, size_t lab_off, size_t lab_len,
    const char *q, size_t qlen, unsigned part, double v)
{
	if (r->ni == r->capi) {
		size_t cap = r->capi ? r->capi * 2 : 1024;
		struct item *it = realloc(r->it, cap * sizeof(*it));
		if (it == NULL) {
			r->nomem = 1;
			return;
		}
		r->it = it;
		r->capi = cap;
	}
	size_t q_off = r->str.len;
	prom_fmt_put(&r->str, q, qlen);
	r->it[r->ni++] = (struct item){ v, (uint32_t)fam, (uint32_t)lab_off,
		(uint32_t)q_off, (uint16_t)lab_len, (uint8_t)qlen, (uint8_t)part };
}

/* ---- label blocks ---- */

struct label {
	char name[REPORT_TAG_KEY_MAX * 2 + 2];
	const char *val;
	size_t nlen, vlen;
};

static int
label_cmp(const struct label *a, const struct label *b)
{
	size_t n = a->nlen < b->nlen ? a->nlen : b->nlen;
	int c = memcmp(a->name, b->name, n);
	return c != 0 ? c : (a->nlen > b->nlen) - (a->nlen < b->nlen);
}

/* Append the label block of r (name="..." for ckms and cma, then the tags
 * as labels, sorted by label name) to str; returns 0, or -1 when a tag
 * makes no valid or a repeated label (nothing is appended then). */
static int
label_block(struct prom_buf *str, const struct report_rec *e, int summary)
{
	struct label l[REPORT_TAGS_MAX + 1];
	size_t n = 0;
	int named = e->source != REPORT_SRC_STATSD;
	if (named) {
		memcpy(l[0].name, "name", 5);
		l[0].nlen = 4;
		l[0].val = e->name;
		l[0].vlen = e->name_len;
		n = 1;
	}
	for (size_t i = 0; i < e->ntags; i++, n++) {
		l[n].nlen = prom_fmt_statsd_name(e->tag[i].key, e->tag[i].klen,
		    l[n].name, sizeof(l[n].name));
		l[n].val = e->tag[i].val;
		l[n].vlen = e->tag[i].vlen;
		if (l[n].nlen == 0 || (l[n].nlen >= 2 && l[n].name[0] == '_' &&
		    l[n].name[1] == '_') || (summary &&
		    strcmp(l[n].name, "quantile") == 0) || (named &&
		    strcmp(l[n].name, "name") == 0))
			return -1;
		/* insertion into sorted place */
		struct label t = l[n];
		size_t j = n;
		while (j > 0 && label_cmp(&l[j - 1], &t) > 0) {
			l[j] = l[j - 1];
			j--;
		}
		l[j] = t;
	}
	for (size_t i = 1; i < n; i++)
		if (label_cmp(&l[i - 1], &l[i]) == 0)
			return -1;
	for (size_t i = 0; i < n; i++) {
		char v[REPORT_TAG_VAL_MAX * 2 + 512];
		size_t vl = prom_fmt_label(l[i].val, l[i].vlen, v, sizeof(v));
		if (i > 0)
			prom_fmt_put(str, ",", 1);
		prom_fmt_put(str, l[i].name, l[i].nlen);
		prom_fmt_put(str, "=\"", 2);
		prom_fmt_put(str, v, vl);
		prom_fmt_put(str, "\"", 1);
	}
	return 0;
}

#define COUNTER_HELP "statsd counter (the sum of its increments since the " \
    "sink started, or since statsd last deleted it), as statsd_exporter " \
    "maps it."

/* ---- statsd counter totals (survive from report to report) ---- */

static int
totals_add(struct prom_totals *tt, const char *key, size_t klen, double v)
{
	if ((tt->n + 1) * 2 > tt->cap) {
		size_t cap = tt->cap ? tt->cap * 2 : 256;
		struct prom_total *t = calloc(cap, sizeof(*t));
		if (t == NULL)
			return -1;
		for (size_t i = 0; i < tt->cap; i++) {
			if (tt->t[i].key == NULL)
				continue;
			size_t h = hash(tt->t[i].key, tt->t[i].klen) & (cap - 1);
			while (t[h].key != NULL)
				h = (h + 1) & (cap - 1);
			t[h] = tt->t[i];
		}
		free(tt->t);
		tt->t = t;
		tt->cap = cap;
	}
	size_t h = hash(key, klen) & (tt->cap - 1);
	for (; tt->t[h].key != NULL; h = (h + 1) & (tt->cap - 1)) {
		if (tt->t[h].klen == klen && memcmp(tt->t[h].key, key, klen) == 0) {
			tt->t[h].v += v;
			tt->t[h].report = tt->report;
			return 0;
		}
	}
	char *k = malloc(klen);
	if (k == NULL)
		return -1;
	memcpy(k, key, klen);
	tt->t[h] = (struct prom_total){ k, klen, v, tt->report };
	tt->n++;
	return 0;
}

/* Forget the totals the report just rendered did not have. Linear
 * probing has no plain delete: the kept ones are placed again in place,
 * each probe starting from its hash, in a table of the same size. */
static int
totals_forget_unseen(struct prom_totals *tt)
{
	size_t seen = 0;
	for (size_t i = 0; i < tt->cap; i++)
		seen += tt->t[i].key != NULL && tt->t[i].report == tt->report;
	if (seen == tt->n)
		return 0;  /* the common case: statsd kept every counter */
	struct prom_total *t = calloc(tt->cap, sizeof(*t));
	if (t == NULL)
		return -1;
	size_t n = 0;
	for (size_t i = 0; i < tt->cap; i++) {
		struct prom_total *k = &tt->t[i];
		if (k->key == NULL)
			continue;
		if (k->report != tt->report) {
			free(k->key);
			continue;
		}
		size_t h = hash(k->key, k->klen) & (tt->cap - 1);
		while (t[h].key != NULL)
			h = (h + 1) & (tt->cap - 1);
		t[h] = *k;
		n++;
	}
	free(tt->t);
	tt->t = t;
	tt->n = n;
	return 0;
}

void
prom_text_totals_free(struct prom_totals *tt)
{
	for (size_t i = 0; i < tt->cap; i++)
		free(tt->t[i].key);
	free(tt->t);
	memset(tt, 0, sizeof(*tt));
}


/* telem's own names: a statsd metric cannot take them (not even the
 * summary telem_ckms, or the _sum and _count its series use). */
static const char *const reserved[] = {
	"telem_ckms", "telem_ckms_sum", "telem_ckms_count",
	"telem_cma", "telem_cma_samples_total",
	"telem_sink_prom_reports_total", "telem_sink_prom_reports_broken_total",
	"telem_sink_prom_series_dropped_total", "telem_sink_prom_scrapes_total",
	"telem_sink_prom_scrape_errors_total",
};

/* One entry into items of r; statsd counters go to the totals instead. */
static void
entry_item(struct prom_totals *tt, struct render *r, const struct report_rec *e)
{
	char name[600];
	size_t nlen;
	unsigned type, part;
	const char *help;
	double v = e->value;
	switch (e->kind) {
	case REPORT_SUM_QUANTILE: part = P_QUANTILE; type = F_SUMMARY; break;
	case REPORT_SUM_SUM:      part = P_SUM;      type = F_SUMMARY; break;
	case REPORT_SUM_COUNT:    part = P_COUNT;    type = F_SUMMARY; break;
	case REPORT_GAUGE:        part = P_VALUE;    type = F_GAUGE;   break;
	case REPORT_COUNTER:      part = P_VALUE;    type = F_COUNTER; break;
	default:                  return;  /* derived: for Graphite only */
	}
	if (e->source == REPORT_SRC_CKMS && type == F_SUMMARY) {
		nlen = (size_t)snprintf(name, sizeof(name), "telem_ckms");
		help = "Quantiles of each telem name's values (CKMS sketch), "
		    "with their sum and count.";
	} else if (e->source == REPORT_SRC_CMA && type == F_GAUGE) {
		nlen = (size_t)snprintf(name, sizeof(name), "telem_cma");
		help = "Cumulative moving average of each telem name's values.";
	} else if (e->source == REPORT_SRC_CMA && type == F_COUNTER) {
		nlen = (size_t)snprintf(name, sizeof(name),
		    "telem_cma_samples_total");
		help = "Values averaged into telem_cma, per name.";
	} else if (e->source == REPORT_SRC_STATSD) {
		nlen = prom_fmt_statsd_name(e->name, e->name_len, name, sizeof(name) - 8);
		if (type == F_COUNTER && (nlen < 6 ||
		    memcmp(name + nlen - 6, "_total", 6) != 0)) {
			memcpy(name + nlen, "_total", 7);
			nlen += 6;
		}
		help = type == F_GAUGE ? "statsd gauge, as statsd_exporter maps it." :
		    type == F_COUNTER ? COUNTER_HELP :
		    "statsd timer in seconds, as statsd_exporter maps it.";
		if (type == F_SUMMARY && part != P_COUNT)
			v /= 1000;
	} else {
		r->dropped++;  /* a kind this source does not report */
		return;
	}
	size_t lab_off = r->str.len;
	if (label_block(&r->str, e, type == F_SUMMARY) == -1) {
		r->str.len = lab_off;
		r->dropped++;
		return;
	}
	size_t lab_len = r->str.len - lab_off;
	if (e->source == REPORT_SRC_STATSD && type == F_COUNTER) {
		/* key: family name, NUL, label block. The block only passes
		 * through str: it is taken off again (str goes back to where
		 * it was), so it is never the block the next entry shares. */
		char key[600 + 2048];
		if (nlen + 1 + lab_len > sizeof(key) || r->str.failed) {
			r->dropped++;
			r->str.len = lab_off;
			return;
		}
		memcpy(key, name, nlen);
		key[nlen] = '\0';
		memcpy(key + nlen + 1, r->str.p + lab_off, lab_len);
		r->str.len = lab_off;
		if (totals_add(tt, key, nlen + 1 + lab_len, v) == -1)
			r->nomem = 1;
		return;
	}
	/* The entries of one series come together (a name's quantiles, sum
	 * and count): keep one copy of their label block. */
	if (lab_len == r->last_len && r->last_off + lab_len <= lab_off &&
	    !r->str.failed && memcmp(r->str.p + r->last_off, r->str.p + lab_off,
	    lab_len) == 0) {
		r->str.len = lab_off;
		lab_off = r->last_off;
	} else {
		r->last_off = lab_off;
		r->last_len = lab_len;
	}
	size_t f = fam_get(r, name, nlen, type, help);
	if (f == (size_t)-1) {
		r->dropped++;
		return;
	}
	char q[40];
	size_t qlen = 0;
	if (part == P_QUANTILE)
		qlen = prom_fmt_quantile(e->field, e->field_len, q, sizeof(q));
	item_add(r, f, lab_off, lab_len, q, qlen, part, v);
}

static int
item_cmp(const void *pa, const void *pb, void *ctx)
{
	const struct item *a = pa, *b = pb;
	const struct render *r = ctx;
	unsigned ra = r->f[a->fam].rank, rb = r->f[b->fam].rank;
	if (ra != rb)
		return ra < rb ? -1 : 1;
	size_t n = a->lab_len < b->lab_len ? a->lab_len : b->lab_len;
	int c = memcmp(str_at(r, a->lab_off), str_at(r, b->lab_off), n);
	if (c != 0)
		return c;
	if (a->lab_len != b->lab_len)
		return a->lab_len < b->lab_len ? -1 : 1;
	if (a->part != b->part)
		return a->part < b->part ? -1 : 1;
	n = a->q_len < b->q_len ? a->q_len : b->q_len;
	c = memcmp(str_at(r, a->q_off), str_at(r, b->q_off), n);
	if (c != 0)
		return c;
	return (a->q_len > b->q_len) - (a->q_len < b->q_len);
}

static int
fam_cmp(const void *pa, const void *pb, void *ctx)
{
	const struct fam *a = *(struct fam *const *)pa, *b = *(struct fam *const *)pb;
	const struct render *r = ctx;
	size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
	int c = memcmp(str_at(r, a->name_off), str_at(r, b->name_off), n);
	return c != 0 ? c : (a->name_len > b->name_len) - (a->name_len < b->name_len);
}

static void
write_help(struct prom_buf *out, const char *help)
{
	for (const char *p = help; *p; p++) {
		if (*p == '\\')
			prom_fmt_put(out, "\\\\", 2);
		else if (*p == '\n')
			prom_fmt_put(out, "\\n", 2);
		else
			prom_fmt_put(out, p, 1);
	}
}

static void
write_items(struct render *r, struct prom_buf *out)
{
	struct fam **order = malloc((r->nf ? r->nf : 1) * sizeof(*order));
	if (order == NULL) {
		r->nomem = 1;
		return;
	}
	for (size_t i = 0; i < r->nf; i++)
		order[i] = &r->f[i];
	qsort_r(order, r->nf, sizeof(*order), fam_cmp, r);
	for (size_t i = 0; i < r->nf; i++)
		order[i]->rank = (unsigned)i;
	free(order);
	if (r->ni > 0)
		qsort_r(r->it, r->ni, sizeof(*r->it), item_cmp, r);
	size_t prev_fam = (size_t)-1;
	for (size_t i = 0; i < r->ni; i++) {
		const struct item *it = &r->it[i];
		if (i > 0 && item_cmp(&r->it[i - 1], it, r) == 0) {
			r->dropped++;  /* the same series and part again */
			continue;
		}
		const struct fam *f = &r->f[it->fam];
		if (it->fam != prev_fam) {
			prom_fmt_puts(out, "# HELP ");
			prom_fmt_put(out, str_at(r, f->name_off), f->name_len);
			prom_fmt_put(out, " ", 1);
			write_help(out, f->help);
			prom_fmt_puts(out, "\n# TYPE ");
			prom_fmt_put(out, str_at(r, f->name_off), f->name_len);
			prom_fmt_put(out, " ", 1);
			prom_fmt_puts(out, fam_type_name[f->type]);
			prom_fmt_put(out, "\n", 1);
			prev_fam = it->fam;
		}
		prom_fmt_put(out, str_at(r, f->name_off), f->name_len);
		prom_fmt_puts(out, part_suffix[it->part]);
		if (it->lab_len > 0 || it->part == P_QUANTILE) {
			prom_fmt_put(out, "{", 1);
			prom_fmt_put(out, str_at(r, it->lab_off), it->lab_len);
			if (it->part == P_QUANTILE) {
				if (it->lab_len > 0)
					prom_fmt_put(out, ",", 1);
				prom_fmt_puts(out, "quantile=\"");
				prom_fmt_put(out, str_at(r, it->q_off), it->q_len);
				prom_fmt_put(out, "\"", 1);
			}
			prom_fmt_put(out, "}", 1);
		}
		char num[40];
		size_t n = prom_fmt_double(it->v, num, sizeof(num));
		prom_fmt_put(out, " ", 1);
		prom_fmt_put(out, num, n);
		prom_fmt_put(out, "\n", 1);
	}
}

struct prom_text *
prom_text_render(struct prom_buf *entries, unsigned src,
    struct prom_totals *tt, uint64_t *dropped)
{
	struct render r;
	struct prom_buf out = { 0 };
	struct prom_text *t = NULL;
	memset(&r, 0, sizeof(r));
	if (src == REPORT_SRC_STATSD)
		tt->report++;
	if (src == REPORT_SRC_STATSD)
		for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
			fam_get(&r, reserved[i], strlen(reserved[i]), F_RESERVED,
			    NULL);
	for (size_t off = 0; off + 2 <= entries->len && !r.nomem; ) {
		struct report_rec e;
		const char *why;
		size_t len = (unsigned char)entries->p[off] |
		    (size_t)(unsigned char)entries->p[off + 1] << 8;
		if (off + 2 + len > entries->len || report_rec_decode(entries->p +
		    off + 2, len, &e, &why) == -1) {
			r.nomem = 1;  /* not made by prom_expo: refuse the report */
			break;
		}
		entry_item(tt, &r, &e);
		off += 2 + len;
	}
	prom_fmt_free(entries);  /* the items hold all that is needed */
	/* A report cut short keeps them all (see prom_text.h). */
	if (src == REPORT_SRC_STATSD && !r.nomem && totals_forget_unseen(tt) == -1)
		r.nomem = 1;
	if (src == REPORT_SRC_STATSD) {
		/* Every counter of this report, with its running total. */
		for (size_t i = 0; i < tt->cap && !r.nomem; i++) {
			const struct prom_total *k = &tt->t[i];
			if (k->key == NULL)
				continue;
			size_t nlen = strlen(k->key);
			size_t f = fam_get(&r, k->key, nlen, F_COUNTER,
			    COUNTER_HELP);
			if (f == (size_t)-1) {
				r.dropped++;
				continue;
			}
			size_t lab_off = r.str.len;
			prom_fmt_put(&r.str, k->key + nlen + 1, k->klen - nlen - 1);
			item_add(&r, f, lab_off, k->klen - nlen - 1, "", 0, P_VALUE,
			    k->v);
		}
	}
	if (!r.nomem && !r.str.failed)
		write_items(&r, &out);
	if (!r.nomem && !r.str.failed && !out.failed) {
		t = malloc(sizeof(*t));
		char *shrunk = out.len ? realloc(out.p, out.len) : out.p;
		if (t != NULL && (shrunk != NULL || out.len == 0)) {
			atomic_init(&t->refs, 1);
			t->len = out.len;
			t->text = shrunk;
			out.p = NULL;
		} else {
			free(t);
			t = NULL;
			if (shrunk != NULL)
				out.p = shrunk;
		}
	}
	*dropped += r.dropped;
	prom_fmt_free(&out);
	prom_fmt_free(&r.str);
	free(r.f);
	free(r.map);
	free(r.it);
	return t;
}
