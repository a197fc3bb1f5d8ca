/* wire.h - the message format between stages (docs/design.md §5).
 *
 * A message is a header {u16 version, u8 src, u8 reserved (0), u32 count,
 * u64 seq} and then `count` records {u8 type, u8 name_len, u32 value, name
 * bytes}, packed with no padding, integers in host byte order (every stage
 * runs on one host). `src` is the writer's stats slot (WIRE_SRC_NONE for
 * the supervisor or a writer without one) and `seq` the number of counted
 * records (wire_counts) that writer sent before this message, so that a
 * reader knows which records of a writer it took and which went missing
 * (common/stage.c).
 * Messages are at most the channel's message size; a stage fills one with
 * everything it has ready and sends it, never waiting for more.
 *
 * Two record types carry statsd (docs/design.md §14) after that same
 * 6-byte head:
 *   WIRE_STATSD: name_len = the key's length (1..255), value = the metric's
 *     info {u8 statsd type, u8 flags (WIRE_STATSD_DELTA), u8 member_len,
 *     u8 0} (wire_statsd_info), then the key (name;tag=v;..., as
 *     ingest/statsd.h gives it), f64 value, f64 rate, and member_len bytes
 *     of a set's member.
 *   WIRE_STATSD_META: name_len 0, value 0, then u64 datagrams, u64 lines,
 *     u64 bad metrics of what one ingest message carries (statsd's
 *     packets_received, metrics_received, bad_lines_seen).
 * WIRE_TELEMETRY and WIRE_STATSD are the records the books count
 * (wire_counts); Flush, Stop and the meta record are not counted. Flush's
 * value is the Flush interval in milliseconds (0 from older writers).
 *
 * WIRE_REPORT carries one entry of an egress's report (docs/design.md
 * §15) after the same 6-byte head: name_len 0, value = the entry's length
 * (REPORT_REC_HDR..REPORT_REC_MAX, egress/report_rec.h), then the entry as
 * report_rec_encode writes it. The books do not count report records
 * (wire_counts): they are made by an egress on Flush, not taken from its
 * input, and a sink's page or carbon's whisper files are their account. */
#ifndef TELEM_WIRE_H
#define TELEM_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WIRE_VERSION 2
#define WIRE_HDR 16
#define WIRE_SRC_NONE 0xFF /* the supervisor, or a writer without a slot */
#define WIRE_REC_HDR 6
#define WIRE_NAME_MAX 255
/* The smallest message size a channel may use: room for the largest
 * record of any type after the header (a statsd set of a 255-byte key and
 * member, 532 bytes; a report record with tags, 604), asserted in
 * common/wire.c. A record that fits no message would stop its writer. */
#define WIRE_MSG_MIN 1024
#define WIRE_MSG_MAX (1 << 20)

enum wire_type {
	WIRE_TELEMETRY = 1, /* name, value */
	WIRE_FLUSH = 2,     /* report now; no name, value 0 */
	WIRE_STOP = 3,      /* drain: everything before it is done, then exit */
	WIRE_STATSD = 4,    /* one statsd metric (see above) */
	WIRE_STATSD_META = 5, /* statsd's own counts (see above) */
	WIRE_REPORT = 6,    /* one report entry (see above) */
};

#define WIRE_STATSD_BODY 16   /* f64 value, f64 rate after the key */
#define WIRE_META_BODY 24     /* u64 datagrams, lines, bad */
#define WIRE_STATSD_DELTA 1u  /* flags: a gauge written with '+' or '-' */
/* The largest record: a statsd metric with a 255-byte key and member. */
#define WIRE_REC_MAX (WIRE_REC_HDR + 255 + WIRE_STATSD_BODY + 255)

/* 1 for the record types the books count: data, not control. */
static inline int
wire_counts(uint8_t type)
{
	return type == WIRE_TELEMETRY || type == WIRE_STATSD;
}

/* The bytes after a record's name: 0 but for the statsd types and a
 * report record's entry. */
static inline size_t
wire_extra(uint8_t type, uint32_t value)
{
	if (type == WIRE_STATSD)
		return WIRE_STATSD_BODY + ((value >> 16) & 0xff);
	if (type == WIRE_REPORT)
		return value;
	return type == WIRE_STATSD_META ? WIRE_META_BODY : 0;
}

static inline uint32_t
wire_statsd_info(unsigned stype, unsigned flags, size_t member_len)
{
	return (uint32_t)stype | (uint32_t)flags << 8 | (uint32_t)member_len << 16;
}

struct wire_rec {
	uint8_t type;
	uint8_t name_len;
	uint32_t value;
	const char *name; /* points into the message; not NUL-terminated */
	const unsigned char *raw; /* the whole record, size bytes */
	size_t size;
};

/* A statsd record's fields (wire_statsd_get), pointing into the message. */
struct wire_statsd {
	unsigned stype;   /* enum statsd_type (ingest/statsd.h): 1..4 */
	unsigned flags;
	const char *key;
	size_t key_len;
	double value, rate;
	const char *member;
	size_t member_len;
};

/* statsd's own counts (WIRE_STATSD_META). */
struct wire_meta {
	uint64_t packets, lines, bad;
};

struct wire_writer {
	unsigned char *buf;
	size_t cap;
	size_t len;
	uint32_t count;
	uint8_t src;     /* written into the header by wire_finish */
	uint64_t seq;
};

/* Start an empty message in buf[0..cap). cap must be >= WIRE_HDR. The
 * origin is WIRE_SRC_NONE, seq 0 until the caller sets w->src and w->seq. */
void wire_writer_init(struct wire_writer *w, void *buf, size_t cap);
/* Append one record. Returns 0, or -1 (nothing written) when it does not fit.
 * (Inline, with wire_next below: every stage runs them once per record.) */
static inline int
wire_put(struct wire_writer *w, uint8_t type, const char *name,
    size_t name_len, uint32_t value)
{
	if (name_len > WIRE_NAME_MAX || w->len + WIRE_REC_HDR + name_len > w->cap)
		return -1;
	unsigned char *p = w->buf + w->len;
	p[0] = type;
	p[1] = (uint8_t)name_len;
	memcpy(p + 2, &value, sizeof(value));
	if (name_len > 0)
		memcpy(p + WIRE_REC_HDR, name, name_len);
	w->len += WIRE_REC_HDR + name_len;
	w->count++;
	return 0;
}
/* Write the header (with w->src and w->seq) and return the message length;
 * the writer stays usable only after wire_writer_reset (which keeps src and
 * seq). */
size_t wire_finish(struct wire_writer *w);
/* Append a record already encoded (rec[0..size), as wire_encode_statsd,
 * wire_encode_report or wire_rec.raw give it). Returns 0, or -1
 * (nothing written) when it does not fit. The record is not checked: the reader's wire_check does. */
int wire_put_raw(struct wire_writer *w, const void *rec, size_t size);
/* Encode a WIRE_STATSD record into buf (at least WIRE_REC_MAX bytes).
 * Returns its size, or 0 when key_len is not 1..255 or member_len over
 * 255 (nothing written). Inline, with wire_statsd_get: ingest and the
 * statsd egress run them once per metric. */
static inline size_t
wire_encode_statsd(void *buf, unsigned stype, unsigned flags, const char *key,
    size_t key_len, double value, double rate, const char *member,
    size_t member_len)
{
	unsigned char *p = buf;
	if (key_len == 0 || key_len > WIRE_NAME_MAX || member_len > 255)
		return 0;
	uint32_t info = wire_statsd_info(stype, flags, member_len);
	p[0] = WIRE_STATSD;
	p[1] = (uint8_t)key_len;
	memcpy(p + 2, &info, 4);
	p += WIRE_REC_HDR;
	memcpy(p, key, key_len);
	p += key_len;
	memcpy(p, &value, 8);
	memcpy(p + 8, &rate, 8);
	if (member_len > 0)
		memcpy(p + 16, member, member_len);
	return WIRE_REC_HDR + key_len + WIRE_STATSD_BODY + member_len;
}
/* Encode a WIRE_STATSD_META record into buf (WIRE_REC_HDR + WIRE_META_BODY
 * bytes); returns its size. */
size_t wire_encode_meta(void *buf, const struct wire_meta *m);
/* The fields of a checked WIRE_STATSD record / WIRE_STATSD_META record. */
static inline void
wire_statsd_get(const struct wire_rec *r, struct wire_statsd *s)
{
	const unsigned char *b = (const unsigned char *)r->name + r->name_len;
	s->stype = r->value & 0xff;
	s->flags = (r->value >> 8) & 0xff;
	s->key = r->name;
	s->key_len = r->name_len;
	memcpy(&s->value, b, 8);
	memcpy(&s->rate, b + 8, 8);
	s->member = (const char *)b + WIRE_STATSD_BODY;
	s->member_len = (r->value >> 16) & 0xff;
}

void wire_meta_get(const struct wire_rec *r, struct wire_meta *m);
/* Encode a WIRE_REPORT record holding entry[0..len) (a report_rec
 * encoding) into buf[0..cap). Returns its size, or 0 when len is not
 * 1..REPORT_REC_MAX or cap is too small. */
size_t wire_encode_report(void *buf, size_t cap, const void *entry, size_t len);
void wire_writer_reset(struct wire_writer *w);

/* Check a whole received message before any record of it is used: version,
 * count, every record's type, length and name (wire_name_ok for telemetry,
 * empty for flush and stop, a report entry that report_rec_decode takes
 * for a report record), no trailing bytes. Returns the record count, or
 * -1 if anything is wrong (then nothing of the message may be used). */
long wire_check(const void *msg, size_t len);
/* wire_check, also counting the records the books count (wire_counts)
 * into *telemetry (left unspecified when the message is rejected).
 * A statsd record must hold: a statsd type 1..4, no flag but
 * WIRE_STATSD_DELTA and that only on a gauge, the info's last byte 0, a
 * key of [A-Za-z0-9_.;=-] not starting with ';' (what ingest/statsd.c's
 * sanitizing leaves), a finite value (>= 0 for a timer, 0 for a set), a
 * rate in (0, 1], a member only in a set. A meta record: empty name,
 * value 0. */
long wire_check_telemetry(const void *msg, size_t len, uint32_t *telemetry);

/* The origin of a message that passed wire_check: its writer's slot (or
 * WIRE_SRC_NONE) and the writer's telemetry records sent before it. */
void wire_origin(const void *msg, uint8_t *src, uint64_t *seq);

/* Iterate over a message that passed wire_check. */
struct wire_reader {
	const unsigned char *p;
	uint32_t left;
};
void wire_reader_init(struct wire_reader *r, const void *msg);
/* Returns 1 and fills rec, or 0 at the end. */
static inline int
wire_next(struct wire_reader *r, struct wire_rec *rec)
{
	if (r->left == 0)
		return 0;
	rec->type = r->p[0];
	rec->name_len = r->p[1];
	memcpy(&rec->value, r->p + 2, 4);
	rec->name = (const char *)r->p + WIRE_REC_HDR;
	rec->raw = r->p;
	rec->size = WIRE_REC_HDR + rec->name_len +
	    wire_extra(rec->type, rec->value);
	r->p += rec->size;
	r->left--;
	return 1;
}

/* A name is 1..255 bytes of valid UTF-8 with no whitespace, no C0 or C1
 * control character and no DEL, so it cannot break or escape a report line. */
int wire_name_ok(const char *name, size_t len);

/* A byte of 1 in each of a word's eight lanes (ONES * c: c in each), and
 * eight bytes from memory as they lie, for the word-at-a-time scans of
 * names and lines (wire.c's name check, ingest/parse.c). */
#define WIRE_ONES 0x0101010101010101ULL

static inline uint64_t
wire_load8(const unsigned char *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

/* The eight bytes of w (loaded from memory as they lie) that are not
 * printable ASCII but space (0x21..0x7e), the bytes nearly every name is
 * made of: 0x80 in each such byte, 0 when there is none. Two carry
 * tricks: a byte below 0x21 borrows into its top bit, which it lacked;
 * adding 1 to a byte above 0x7e sets its top bit, or it was set. A
 * borrow or carry into the next byte comes only from a flagged byte, so
 * the zero test is exact, and so is the first flagged byte in memory on
 * a little-endian machine (wire.c's name check, ingest/parse.c). */
static inline uint64_t
wire_not_printable(uint64_t w)
{
	const uint64_t highs = WIRE_ONES << 7;
	uint64_t below = (w - WIRE_ONES * 0x21) & ~w & highs;
	uint64_t above = ((w + WIRE_ONES) | w) & highs;
	return below | above;
}

#endif
