/* report_rec.c - encoding and checked decoding of report entries
 * (report_rec.h); the sinks never use a byte of an entry before
 * report_rec_decode has checked all of it. */
#include "egress/report_rec.h"

#include <stdlib.h>
#include <string.h>

#include "wire.h"

static int
field_ok(const char *f, size_t len)
{
	if (len == 0 || len > REPORT_FIELD_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = f[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

/* digits[ sep digits ], at most 15 characters, into *v. */
static int
decimal(const char *s, size_t len, char sep, double *v)
{
	char buf[16];
	size_t seps = 0, digits = 0;
	if (len == 0 || len >= sizeof(buf))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] >= '0' && s[i] <= '9') {
			digits++;
			buf[i] = s[i];
		} else if (s[i] == sep && i > 0 && i + 1 < len && seps++ == 0) {
			buf[i] = '.';
		} else {
			return -1;
		}
	}
	buf[len] = '\0';
	*v = strtod(buf, NULL);
	return digits > 0 ? 0 : -1;
}

int
report_rec_quantile(const char *field, size_t len, double *q)
{
	double v;
	if (len > 1 && field[0] == 'q') {
		if (decimal(field + 1, len - 1, '.', &v) == -1 || v > 1)
			return -1;
		*q = v;
		return 0;
	}
	if (len > 6 && memcmp(field, "upper_", 6) == 0) {
		if (decimal(field + 6, len - 6, '_', &v) == -1 || v > 100)
			return -1;
		*q = v / 100;
		return 0;
	}
	return -1;
}

int
report_rec_tag_key_ok(const char *key, size_t klen)
{
	if (klen == 0 || klen > REPORT_TAG_KEY_MAX || !wire_name_ok(key, klen))
		return 0;
	return memchr(key, '=', klen) == NULL && memchr(key, ',', klen) == NULL;
}

int
report_rec_tag_val_ok(const char *val, size_t vlen)
{
	if (vlen == 0 || vlen > REPORT_TAG_VAL_MAX || !wire_name_ok(val, vlen))
		return 0;
	return memchr(val, ',', vlen) == NULL;
}

/* Keys strictly ascending, bytewise, a shorter key first on a tie. */
static int
key_cmp(const struct report_tag *a, const struct report_tag *b)
{
	size_t n = a->klen < b->klen ? a->klen : b->klen;
	int c = memcmp(a->key, b->key, n);
	return c != 0 ? c : (int)a->klen - (int)b->klen;
}

static size_t
tags_len(const struct report_rec *r)
{
	size_t n = 0;
	for (size_t i = 0; i < r->ntags; i++)
		n += 2 + (size_t)r->tag[i].klen + r->tag[i].vlen;
	return n;
}

/* Everything but the bytes' own encoding; NULL when r is valid. */
static const char *
rec_problem(const struct report_rec *r)
{
	if (r->source < 1 || r->source >= REPORT_SRC_N)
		return "unknown source";
	if (r->ts < 0 || r->ts > REPORT_TS_MAX)
		return "timestamp out of range";
	if (r->kind == REPORT_END) {
		if (r->name_len != 0 || r->field_len != 0 || r->ntags != 0)
			return "end of report with a name, field or tags";
		if (r->count > REPORT_END_MAX)
			return "end of report counts too many entries";
		return NULL;
	}
	if (r->kind < REPORT_GAUGE || r->kind > REPORT_DERIVED)
		return "unknown kind";
	if (!wire_name_ok(r->name, r->name_len))
		return "name not valid";
	if (!field_ok(r->field, r->field_len))
		return "field not valid";
	double q;
	if (r->kind == REPORT_SUM_QUANTILE &&
	    report_rec_quantile(r->field, r->field_len, &q) == -1)
		return "quantile field names no quantile in [0, 1]";
	if (r->ntags > REPORT_TAGS_MAX)
		return "too many tags";
	for (size_t i = 0; i < r->ntags; i++) {
		const struct report_tag *t = &r->tag[i];
		if (!report_rec_tag_key_ok(t->key, t->klen) ||
		    !report_rec_tag_val_ok(t->val, t->vlen))
			return "tag not valid";
		if (i > 0 && key_cmp(&r->tag[i - 1], t) >= 0)
			return "tag keys not strictly ascending";
	}
	if (tags_len(r) > REPORT_TAGS_BYTES)
		return "tags too long";
	return NULL;
}

int
report_rec_ok(const struct report_rec *r)
{
	return rec_problem(r) == NULL;
}

size_t
report_rec_encode(const struct report_rec *r, void *buf, size_t cap)
{
	if (rec_problem(r) != NULL)
		return 0;
	size_t tl = tags_len(r);
	size_t total = REPORT_REC_HDR + r->name_len + r->field_len + tl;
	if (total > cap)
		return 0;
	unsigned char *p = buf;
	uint16_t tl16 = (uint16_t)tl;
	p[0] = r->kind;
	p[1] = r->source;
	p[2] = r->name_len;
	p[3] = r->field_len;
	p[4] = r->ntags;
	p[5] = 0;
	memcpy(p + 6, &tl16, 2);
	memcpy(p + 8, &r->ts, 8);
	if (r->kind == REPORT_END)
		memcpy(p + 16, &r->count, 8);
	else
		memcpy(p + 16, &r->value, 8);
	p += REPORT_REC_HDR;
	if (r->kind == REPORT_END)
		return total;  /* no name, field or tags (maybe NULL pointers) */
	memcpy(p, r->name, r->name_len);
	p += r->name_len;
	memcpy(p, r->field, r->field_len);
	p += r->field_len;
	for (size_t i = 0; i < r->ntags; i++) {
		*p++ = r->tag[i].klen;
		memcpy(p, r->tag[i].key, r->tag[i].klen);
		p += r->tag[i].klen;
		*p++ = r->tag[i].vlen;
		memcpy(p, r->tag[i].val, r->tag[i].vlen);
		p += r->tag[i].vlen;
	}
	return total;
}

int
report_rec_decode(const void *buf, size_t len, struct report_rec *r,
    const char **why)
{
	const unsigned char *p = buf, *end;
	uint16_t tl;
	if (len < REPORT_REC_HDR || len > REPORT_REC_MAX) {
		*why = "length out of range";
		return -1;
	}
	memset(r, 0, sizeof(*r));
	r->kind = p[0];
	r->source = p[1];
	r->name_len = p[2];
	r->field_len = p[3];
	r->ntags = p[4];
	memcpy(&tl, p + 6, 2);
	memcpy(&r->ts, p + 8, 8);
	if (p[5] != 0) {
		*why = "pad byte not zero";
		return -1;
	}
	if (r->ntags > REPORT_TAGS_MAX || tl > REPORT_TAGS_BYTES) {
		*why = "too many tags";
		return -1;
	}
	if ((size_t)REPORT_REC_HDR + r->name_len + r->field_len + tl != len) {
		*why = "lengths do not add up to the record's";
		return -1;
	}
	if (r->kind == REPORT_END)
		memcpy(&r->count, p + 16, 8);
	else
		memcpy(&r->value, p + 16, 8);
	p += REPORT_REC_HDR;
	r->name = (const char *)p;
	p += r->name_len;
	r->field = (const char *)p;
	p += r->field_len;
	/* Each tag's lengths are checked against what is left of the tag
	 * list before its bytes are looked at. */
	end = p + tl;
	for (size_t i = 0; i < r->ntags; i++) {
		struct report_tag *t = &r->tag[i];
		if (end - p < 1 || (t->klen = p[0], end - p - 1 < t->klen + 1)) {
			*why = "tag runs past the record";
			return -1;
		}
		t->key = (const char *)p + 1;
		p += 1 + t->klen;
		t->vlen = p[0];
		if (end - p - 1 < t->vlen) {
			*why = "tag runs past the record";
			return -1;
		}
		t->val = (const char *)p + 1;
		p += 1 + t->vlen;
	}
	if (p != end) {
		*why = "bytes after the last tag";
		return -1;
	}
	const char *problem = rec_problem(r);
	if (problem != NULL) {
		*why = problem;
		return -1;
	}
	return 0;
}
