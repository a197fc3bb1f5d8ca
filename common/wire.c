/* wire.c - encoding and checked decoding of inter-stage messages. */
#include "wire.h"

#include <math.h>
#include <string.h>

#include "egress/report_rec.h"

_Static_assert(WIRE_MSG_MIN >= WIRE_HDR + WIRE_REC_MAX,
    "a message must hold the largest statsd record");
_Static_assert(WIRE_MSG_MIN >= WIRE_HDR + WIRE_REC_HDR + REPORT_REC_MAX,
    "a message must hold the largest report record");

static inline int name_ok(const unsigned char *s, size_t len);

void
wire_writer_init(struct wire_writer *w, void *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->src = WIRE_SRC_NONE;
	w->seq = 0;
	wire_writer_reset(w);
}

void
wire_writer_reset(struct wire_writer *w)
{
	w->len = WIRE_HDR;
	w->count = 0;
}

size_t
wire_finish(struct wire_writer *w)
{
	uint16_t version = WIRE_VERSION;
	memcpy(w->buf, &version, 2);
	w->buf[2] = w->src;
	w->buf[3] = 0;
	memcpy(w->buf + 4, &w->count, 4);
	memcpy(w->buf + 8, &w->seq, 8);
	return w->len;
}

int
wire_put_raw(struct wire_writer *w, const void *rec, size_t size)
{
	if (w->len + size > w->cap)
		return -1;
	memcpy(w->buf + w->len, rec, size);
	w->len += size;
	w->count++;
	return 0;
}

size_t
wire_encode_meta(void *buf, const struct wire_meta *m)
{
	unsigned char *p = buf;
	uint32_t zero = 0;
	p[0] = WIRE_STATSD_META;
	p[1] = 0;
	memcpy(p + 2, &zero, 4);
	memcpy(p + WIRE_REC_HDR, &m->packets, 8);
	memcpy(p + WIRE_REC_HDR + 8, &m->lines, 8);
	memcpy(p + WIRE_REC_HDR + 16, &m->bad, 8);
	return WIRE_REC_HDR + WIRE_META_BODY;
}

void
wire_meta_get(const struct wire_rec *r, struct wire_meta *m)
{
	const unsigned char *b = r->raw + WIRE_REC_HDR;
	memcpy(&m->packets, b, 8);
	memcpy(&m->lines, b + 8, 8);
	memcpy(&m->bad, b + 16, 8);
}

/* What ingest/statsd.c leaves in a key: [A-Za-z0-9_.;=-], a name first.
 * A byte's entry is 1 when it may be in a key (bytes from 0x80 on: 0). */
static const unsigned char key_byte[256] = {
	/* 0x00 */ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	/* 0x10 */ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	/* 0x20 */ 0,0,0,0,0,0,0,0,0,0,0,0,0,1,1,0,
	/* 0x30 */ 1,1,1,1,1,1,1,1,1,1,0,1,0,1,0,0,
	/* 0x40 */ 0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* 0x50 */ 1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,1,
	/* 0x60 */ 0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* 0x70 */ 1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,
};

static int
statsd_key_ok(const unsigned char *k, size_t len)
{
	if (len == 0 || k[0] == ';')
		return 0;
	/* no branch per byte: the verdicts are and-ed */
	unsigned ok = 1;
	for (size_t i = 0; i < len; i++)
		ok &= key_byte[k[i]];
	return (int)ok;
}

/* Check the statsd record at p (its head already in bounds); `avail`
 * bytes from p on. Returns its size, or 0 if it is not valid. */
static size_t
statsd_rec_ok(const unsigned char *p, size_t avail)
{
	uint32_t info;
	memcpy(&info, p + 2, 4);
	unsigned stype = info & 0xff, flags = (info >> 8) & 0xff;
	size_t klen = p[1], mlen = (info >> 16) & 0xff;
	size_t size = WIRE_REC_HDR + klen + WIRE_STATSD_BODY + mlen;
	if (size > avail || (info >> 24) != 0 || stype < 1 || stype > 4 ||
	    (flags & ~WIRE_STATSD_DELTA) != 0 || (flags != 0 && stype != 3) ||
	    (mlen != 0 && stype != 4) || !statsd_key_ok(p + WIRE_REC_HDR, klen))
		return 0;
	double v, rate;
	memcpy(&v, p + WIRE_REC_HDR + klen, 8);
	memcpy(&rate, p + WIRE_REC_HDR + klen + 8, 8);
	if (!isfinite(v) || !(rate > 0 && rate <= 1) || (stype == 2 && v < 0) ||
	    (stype == 4 && v != 0))
		return 0;
	return size;
}

size_t
wire_encode_report(void *buf, size_t cap, const void *entry, size_t len)
{
	unsigned char *p = buf;
	uint32_t v = (uint32_t)len;
	if (len == 0 || len > REPORT_REC_MAX || cap < WIRE_REC_HDR + len)
		return 0;
	p[0] = WIRE_REPORT;
	p[1] = 0;
	memcpy(p + 2, &v, 4);
	memcpy(p + WIRE_REC_HDR, entry, len);
	return WIRE_REC_HDR + len;
}

/* The report record at p (its head in bounds, avail bytes from p on):
 * its size, or 0 when it is not valid. */
static size_t
report_ok(const unsigned char *p, size_t avail)
{
	uint32_t v;
	struct report_rec r;
	const char *why;
	memcpy(&v, p + 2, 4);
	if (p[1] != 0 || v < REPORT_REC_HDR || v > REPORT_REC_MAX ||
	    avail - WIRE_REC_HDR < v ||
	    report_rec_decode(p + WIRE_REC_HDR, v, &r, &why) == -1)
		return 0;
	return WIRE_REC_HDR + v;
}

long
wire_check(const void *msg, size_t len)
{
	uint32_t telemetry;
	return wire_check_telemetry(msg, len, &telemetry);
}

long
wire_check_telemetry(const void *msg, size_t len, uint32_t *telemetry)
{
	const unsigned char *p = msg, *end = p + len;
	uint16_t version;
	uint32_t count;

	if (len < WIRE_HDR)
		return -1;
	memcpy(&version, p, 2);
	memcpy(&count, p + 4, 4);
	if (version != WIRE_VERSION || p[3] != 0)
		return -1;
	/* A lying count cannot make us read far: each record is >= 6 bytes. */
	if (count > (len - WIRE_HDR) / WIRE_REC_HDR)
		return -1;
	p += WIRE_HDR;
	uint32_t tel = 0;
	for (uint32_t i = 0; i < count; i++) {
		if ((size_t)(end - p) < WIRE_REC_HDR)
			return -1;
		uint8_t type = p[0], nlen = p[1];
		if ((size_t)(end - p) - WIRE_REC_HDR < nlen)
			return -1;
		/* The common record first, without the switch's jump. */
		if (type == WIRE_TELEMETRY) {
			if (!name_ok(p + WIRE_REC_HDR, nlen))
				return -1;
			tel++;
			p += WIRE_REC_HDR + nlen;
			continue;
		}
		size_t size;
		uint32_t value;
		switch (type) {
		case WIRE_REPORT:
			if ((size = report_ok(p, (size_t)(end - p))) == 0)
				return -1;
			p += size;
			continue;
		case WIRE_STATSD:
			if ((size = statsd_rec_ok(p, (size_t)(end - p))) == 0)
				return -1;
			tel++;
			p += size;
			continue;
		case WIRE_STATSD_META:
			memcpy(&value, p + 2, 4);
			if (nlen != 0 || value != 0 ||
			    (size_t)(end - p) < WIRE_REC_HDR + WIRE_META_BODY)
				return -1;
			p += WIRE_REC_HDR + WIRE_META_BODY;
			continue;
		case WIRE_FLUSH:
		case WIRE_STOP:
			if (nlen != 0)
				return -1;
			break;
		default:
			return -1;
		}
		p += WIRE_REC_HDR + nlen;
	}
	*telemetry = tel;
	return p == end ? (long)count : -1;
}

void
wire_origin(const void *msg, uint8_t *src, uint64_t *seq)
{
	const unsigned char *p = msg;
	*src = p[2];
	memcpy(seq, p + 8, 8);
}

void
wire_reader_init(struct wire_reader *r, const void *msg)
{
	const unsigned char *p = msg;
	memcpy(&r->left, p + 4, 4);
	r->p = p + WIRE_HDR;
}

/* The reference rule for the bytes s[0..end), called from the first byte
 * that is not printable ASCII: a state machine with no state between
 * characters, so it may start at any character boundary. */
static int
name_tail_ok(const unsigned char *s, const unsigned char *end)
{
	while (s < end) {
		unsigned c = *s;
		if (c < 0x80) {
			if (c <= 0x20 || c == 0x7f)
				return 0;
			s++;
			continue;
		}
		/* Multi-byte UTF-8: reject overlongs, surrogates, > U+10FFFF
		 * and the C1 controls U+0080..U+009F (terminal escapes). */
		size_t n;
		unsigned cp, min;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 2; cp = c & 0x1f; min = 0xa0;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 3; cp = c & 0x0f; min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 4; cp = c & 0x07; min = 0x10000;
		} else {
			return 0;
		}
		if ((size_t)(end - s) < n)
			return 0;
		for (size_t i = 1; i < n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		/* Unicode white space beyond ASCII is no name either. */
		if (cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
		    cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
		    cp == 0x3000 || cp == 0x85)
			return 0;
		s += n;
	}
	return 1;
}

/* Printable ASCII but space (0x21..0x7e) is a whole character of a name
 * by itself, and nearly every name is only that: one unsigned compare a
 * byte, or 8 bytes at a time with wire_not_printable (wire.h), exact as a
 * yes/no for the whole word. The first word or byte that is not all
 * printable goes to name_tail_ok from there (UTF-8, or a reject).
 * Before this every byte went through name_tail_ok's branches in a call
 * per name: the whole-message check of bench/readpath.c's messages went
 * from 131 instructions and 1.0 mispredicted branch a record to 58 and
 * 0.03 (callgrind), 4.7 to 2.8 ns a record with 2..3-byte names. */
static inline int
word_printable(uint64_t w)
{
	return wire_not_printable(w) == 0;
}

static inline uint64_t
load32(const unsigned char *p)
{
	uint32_t w;
	memcpy(&w, p, 4);
	return w;
}

/* All of s[0..len) as words that may overlap (a byte seen twice is
 * checked twice: no harm), so that no name costs a loop over its bytes;
 * under 4 bytes the missing ones are filled with printable '!'. */
static inline int
name_ok(const unsigned char *s, size_t len)
{
	const unsigned char *end = s + len;
	uint64_t w;
	if (len >= 8) {
		for (; end - s > 8; s += 8) {
			if (!word_printable(wire_load8(s)))
				return name_tail_ok(s, end);
		}
		w = wire_load8(end - 8);
	} else if (len >= 4) {
		w = load32(s) | load32(end - 4) << 32;
	} else if (len > 0) {
		w = WIRE_ONES * 0x21 << 24 | (uint64_t)s[0] << 16 |
		    (uint64_t)s[len >> 1] << 8 | s[len - 1];
	} else {
		return 0;
	}
	return word_printable(w) ? 1 : name_tail_ok(s, end);
}

int
wire_name_ok(const char *name, size_t len)
{
	if (len > WIRE_NAME_MAX)
		return 0;
	return name_ok((const unsigned char *)name, len);
}
