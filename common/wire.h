/* wire.h - the message format between stages (DESIGN §5).
 *
 * A message is a header {u16 version, u8 src, u8 reserved (0), u32 count,
 * u64 seq} and then `count` records {u8 type, u8 name_len, u32 value, name
 * bytes}, packed with no padding, integers in host byte order (every stage
 * runs on one host). `src` is the writer's stats slot (WIRE_SRC_NONE for
 * the supervisor or a writer without one) and `seq` the number of telemetry
 * records that writer sent before this message, so that a reader knows
 * which records of a writer it took and which went missing (common/stage.c).
 * Messages are at most the channel's message size; a stage fills one with
 * everything it has ready and sends it, never waiting for more. */
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
#define WIRE_MSG_MIN 512   /* smallest message size a channel may use */
#define WIRE_MSG_MAX (1 << 20)

enum wire_type {
	WIRE_TELEMETRY = 1, /* name, value */
	WIRE_FLUSH = 2,     /* report now; no name, value 0 */
	WIRE_STOP = 3,      /* drain: everything before it is done, then exit */
};

struct wire_rec {
	uint8_t type;
	uint8_t name_len;
	uint32_t value;
	const char *name; /* points into the message; not NUL-terminated */
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
void wire_writer_reset(struct wire_writer *w);

/* Check a whole received message before any record of it is used: version,
 * count, every record's type, length and name (wire_name_ok for telemetry,
 * empty for flush and stop), no trailing bytes. Returns the record count, or
 * -1 if anything is wrong (then nothing of the message may be used). */
long wire_check(const void *msg, size_t len);
/* wire_check, also counting the telemetry records into *telemetry (left
 * unspecified when the message is rejected). */
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
	r->p += WIRE_REC_HDR + rec->name_len;
	r->left--;
	return 1;
}

/* A name is 1..255 bytes of valid UTF-8 with no whitespace, no C0 or C1
 * control character and no DEL, so it cannot break or escape a report line. */
int wire_name_ok(const char *name, size_t len);

#endif
