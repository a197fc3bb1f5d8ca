/* filter.c - telem-filter's pass over a message (filter/filter.h). */
#include "filter/filter.h"

#include <string.h>

void
filter_record(struct stage *st, const struct wire_rec *r)
{
	const struct filter *f = st->ctx;
	if (r->type != WIRE_TELEMETRY) {
		stage_emit_raw(st, r->type, r->raw, r->size);
		return;
	}
	if (f->below ? r->value <= f->limit : r->value >= f->limit)
		stage_pass_raw(st, WIRE_TELEMETRY, r->raw, r->size);
	else
		stage_filtered(st);
}

void
filter_flush(struct stage *st)
{
	stage_emit(st, WIRE_FLUSH, NULL, 0, st->flush_ms);
}

#define CHUNK 16

/* One pass over the checked message, telemetry records handled inline,
 * without a branch on the rule: the rule is one unsigned range compare
 * (lo <= value <= hi); every record is copied as it is (the in and out
 * encodings are the same) in 16-byte chunks to the end of the out batch,
 * and the batch grows by the record's size only if it is kept. With
 * values on both sides of the limit in random order a branch on the rule
 * is mispredicted half the time, which cost more than the copy. Only a
 * record that does not fit in whole chunks (near the end of the message
 * or of the batch), and any record but telemetry, takes the general way
 * (stage_pass_raw, stage_take_record) with the writer's state synced.
 * Before this the skeleton made one indirect on_record call per record
 * and stage_emit encoded each kept record again; bench/readpath.c
 * measures both ways. */
int
filter_msg(struct stage *st, const void *msg, size_t len)
{
	const struct filter *f = st->ctx;
	const uint32_t lo = f->below ? 0 : f->limit;
	const uint32_t span = (f->below ? f->limit : UINT32_MAX) - lo;
	struct wire_writer *w = &st->w;
	struct wire_reader r;
	struct wire_rec rec;
	const unsigned char *end = (const unsigned char *)msg + len;
	int stop = 0;
	wire_reader_init(&r, msg);
	const unsigned char *p = r.p;
	uint32_t left = r.left;
	while (left > 0) {
		uint64_t kept = 0, seen = 0;
		/* The fast run: nothing but the local pointers change. With
		 * no out-queue (w->buf NULL) there is nowhere to copy to. */
		if (w->buf != NULL) {
			unsigned char *dst = w->buf + w->len;
			size_t room = w->cap - w->len;
			for (; seen < left && p[0] == WIRE_TELEMETRY; seen++) {
				size_t size = WIRE_REC_HDR + p[1];
				size_t whole = (size + CHUNK - 1) & ~(size_t)(CHUNK - 1);
				if (whole > room || whole > (size_t)(end - p))
					break;
				for (size_t o = 0; o < whole; o += CHUNK)
					memcpy(dst + o, p + o, CHUNK);
				uint32_t v;
				memcpy(&v, p + 2, 4);
				size_t keep = v - lo <= span;
				size_t adv = size & (0 - keep);
				dst += adv;
				room -= adv;
				kept += keep;
				p += size;
			}
			w->len = (size_t)(dst - w->buf);
			w->count += (uint32_t)kept;
			st->w_tel += (uint32_t)kept;
			st->n_filtered += seen - kept;
			left -= (uint32_t)seen;
		}
		if (left == 0)
			break;
		/* One record the general way. */
		r.p = p;
		r.left = left;
		wire_next(&r, &rec);
		p = r.p;
		left = r.left;
		if (rec.type == WIRE_TELEMETRY) {
			if (rec.value - lo <= span)
				stage_pass_raw(st, WIRE_TELEMETRY, rec.raw, rec.size);
			else
				stage_filtered(st);
		} else if (stage_take_record(st, &rec)) {
			stop = 1;
			break;
		}
	}
	return stop;
}
