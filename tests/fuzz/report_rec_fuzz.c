/* report_rec_fuzz.c - libFuzzer target for the report entry decoder
 * (egress/report_rec.c) and the Prometheus renderer behind it. Any bytes go
 * to report_rec_decode; an entry it accepts must encode back to exactly the
 * input, point only inside it, and feed the renderer (with an END of the
 * right count) without harm, its page staying whole (`make fuzz`). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "egress/prom_expo.h"
#include "egress/report_rec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char out[REPORT_REC_MAX];
	struct report_rec r;
	const char *why;
	if (report_rec_decode(data, size, &r, &why) == -1)
		return 0;
	if (report_rec_encode(&r, out, sizeof(out)) != size ||
	    memcmp(out, data, size) != 0)
		abort();
	const uint8_t *end = data + size;
	if (r.kind != REPORT_END && ((const uint8_t *)r.name < data ||
	    (const uint8_t *)r.name + r.name_len > end ||
	    (const uint8_t *)r.field + r.field_len > end))
		abort();
	for (size_t i = 0; i < r.ntags; i++)
		if ((const uint8_t *)r.tag[i].val + r.tag[i].vlen > end)
			abort();
	struct prom_expo *x = prom_expo_new(0);
	if (x == NULL)
		return 0;
	int rendered = 0;
	if (r.kind != REPORT_END) {
		struct report_rec e = { .kind = REPORT_END, .source = r.source,
			.count = 1 };
		prom_expo_feed(x, &r);
		rendered = prom_expo_feed(x, &e) == PROM_RENDERED;
	} else {
		/* An END alone: with count 0 a reset (report_rec.h), which has
		 * nothing to drop and renders nothing; else a report cut. */
		rendered = prom_expo_feed(x, &r) == PROM_RENDERED;
		if (rendered)
			abort();
	}
	struct prom_text *p[REPORT_SRC_N];
	prom_expo_parts(x, p);
	if (rendered && p[r.source] == NULL)
		abort();
	for (size_t i = 0; i < REPORT_SRC_N; i++) {
		/* A page is whole lines. */
		if (p[i] != NULL && p[i]->len > 0 && p[i]->text[p[i]->len - 1] != '\n')
			abort();
		prom_text_unref(p[i]);
	}
	prom_expo_free(x);
	return 0;
}
