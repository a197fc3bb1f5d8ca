/* wire_fuzz.c - libFuzzer target for the inter-stage message decoder.
 * Any bytes go to wire_check; a message it accepts is walked with
 * wire_reader, every record is checked, and the records are encoded again
 * with wire_writer, which must give back exactly the input (`make fuzz`). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "egress/report_rec.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char out[WIRE_MSG_MAX];
static unsigned char shifted[WIRE_MSG_MAX + 1];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > WIRE_MSG_MAX)
		return 0;
	long n = wire_check(data, size);

	/* The verdict may not depend on alignment. */
	memcpy(shifted + 1, data, size);
	if (wire_check(shifted + 1, size) != n)
		abort();
	if (n < 0)
		return 0;

	struct wire_reader r;
	struct wire_rec rec;
	struct wire_writer w;
	const unsigned char *end = data + size;
	long seen = 0;

	wire_reader_init(&r, data);
	wire_writer_init(&w, out, size);
	wire_origin(data, &w.src, &w.seq);
	while (wire_next(&r, &rec)) {
		const unsigned char *name = (const unsigned char *)rec.name;
		if (name < data + WIRE_HDR || name + rec.name_len > end)
			abort();
		if (rec.raw != (const unsigned char *)rec.name - WIRE_REC_HDR ||
		    rec.raw + rec.size > end)
			abort();
		switch (rec.type) {
		case WIRE_STATSD: {
			struct wire_statsd s;
			wire_statsd_get(&rec, &s);
			if (s.stype < 1 || s.stype > 4 || !(s.rate > 0 && s.rate <= 1) ||
			    s.value != s.value || s.key_len == 0 ||
			    !wire_name_ok(s.key, s.key_len))
				abort();
			if (wire_put_raw(&w, rec.raw, rec.size))
				abort();
			seen++;
			continue;
		}
		case WIRE_STATSD_META:
			if (rec.name_len != 0 || rec.value != 0 ||
			    rec.size != WIRE_REC_HDR + WIRE_META_BODY)
				abort();
			if (wire_put_raw(&w, rec.raw, rec.size))
				abort();
			seen++;
			continue;
		case WIRE_TELEMETRY:
			if (!wire_name_ok(rec.name, rec.name_len))
				abort();
			break;
		case WIRE_FLUSH:
		case WIRE_STOP:
			if (rec.name_len != 0)
				abort();
			break;
		case WIRE_REPORT: {
			/* The entry decodes, and encodes back to the same bytes. */
			struct report_rec e;
			const char *why;
			unsigned char ent[REPORT_REC_MAX];
			if (rec.name_len != 0 || rec.raw + rec.size > end ||
			    rec.size != WIRE_REC_HDR + rec.value ||
			    report_rec_decode(rec.raw + WIRE_REC_HDR, rec.value, &e,
			    &why) != 0 ||
			    report_rec_encode(&e, ent, sizeof(ent)) != rec.value ||
			    memcmp(ent, rec.raw + WIRE_REC_HDR, rec.value) != 0)
				abort();
			if (wire_put_raw(&w, rec.raw, rec.size))
				abort();
			seen++;
			continue;
		}
		default:
			abort();
		}
		/* The re-encoded message gets exactly the input's size, so
		 * every record must fit. */
		if (wire_put(&w, rec.type, rec.name, rec.name_len, rec.value))
			abort();
		seen++;
	}
	if (seen != n)
		abort();
	if (wire_finish(&w) != size || memcmp(out, data, size) != 0)
		abort();
	return 0;
}
