/* wire.c - encoding and checked decoding of inter-stage messages. */
#include "wire.h"

#include <string.h>

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
	*telemetry = 0;
	for (uint32_t i = 0; i < count; i++) {
		if ((size_t)(end - p) < WIRE_REC_HDR)
			return -1;
		uint8_t type = p[0], nlen = p[1];
		if ((size_t)(end - p) - WIRE_REC_HDR < nlen)
			return -1;
		switch (type) {
		case WIRE_TELEMETRY:
			if (!wire_name_ok((const char *)p + WIRE_REC_HDR, nlen))
				return -1;
			(*telemetry)++;
			break;
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

int
wire_name_ok(const char *name, size_t len)
{
	const unsigned char *s = (const unsigned char *)name, *end = s + len;

	if (len == 0 || len > WIRE_NAME_MAX)
		return 0;
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
