/* report_rec.h - one entry of an egress's report as a record: what the
 * egresses emit on each Flush and the sinks (carbon, Prometheus) read
 * (docs/design.md §15). A report is the entries of one Flush of one
 * egress, ended by an entry of kind REPORT_END that carries the number of
 * entries before it, so a sink can tell a whole report from a cut one.
 * An END that counts no entries is a reset, not a report: what a sink
 * holds of that source's report was cut short (the egress that sent it
 * was killed, or could not send it whole) and is dropped. An egress sends
 * one before its first report and before the report after one it could
 * not send whole (egress/report_emit.h), so that the part left over is
 * not taken for the start of the next report, which would then be
 * dropped too.
 *
 * The encoding is a self-delimiting byte string of at most REPORT_REC_MAX
 * bytes, meant to travel as the payload of one message record; integers
 * and the double are in host byte order (every stage runs on one host):
 *
 *   u8 kind, u8 source, u8 name_len, u8 field_len, u8 ntags, u8 zero,
 *   u16 tags_len, i64 ts, f64 value (u64 entry count for REPORT_END),
 *   name, field, then ntags times {u8 klen, key, u8 vlen, value}
 *
 * tags_len is the byte length of the tag list. Decoding trusts nothing:
 * every length, enum, name, field and tag is checked, and the input must
 * end exactly where the entry ends. */
#ifndef TELEM_REPORT_REC_H
#define TELEM_REPORT_REC_H

#include <stddef.h>
#include <stdint.h>

#define REPORT_REC_HDR 24
#define REPORT_FIELD_MAX 31     /* [A-Za-z0-9_.-], 1..31 bytes */
#define REPORT_TAGS_MAX 16      /* tags per entry */
#define REPORT_TAG_KEY_MAX 64
#define REPORT_TAG_VAL_MAX 128
#define REPORT_TAGS_BYTES 288   /* the encoded tag list, at most */
#define REPORT_REC_MAX (REPORT_REC_HDR + 255 + REPORT_FIELD_MAX + \
	REPORT_TAGS_BYTES)          /* 598 */
#define REPORT_TS_MAX 253402300799LL  /* 9999-12-31T23:59:59Z */
#define REPORT_END_MAX (1u << 30)     /* entries in one report, at most */

enum report_kind {
	REPORT_GAUGE = 1,       /* a value as of the flush (cma, a statsd gauge) */
	REPORT_COUNTER = 2,     /* ckms/cma: a total since the egress began;
	                           statsd: the increment of this flush, as
	                           statsd's `count` (the Prometheus sink adds
	                           them up, as statsd_exporter does) */
	REPORT_SUM_QUANTILE = 3, /* a summary's quantile; the field names it:
	                            "q0.25", or statsd's "upper_90" / "upper_99_9" */
	REPORT_SUM_SUM = 4,     /* a summary's sum of observations */
	REPORT_SUM_COUNT = 5,   /* a summary's count of observations */
	REPORT_DERIVED = 6,     /* a value Graphite gets and Prometheus derives
	                           itself (statsd's mean_90, std, rate, ...) */
	REPORT_END = 7,         /* end of report; no name, field or tags;
	                           with count 0, a reset (above) */
};

enum report_source {
	REPORT_SRC_CKMS = 1,
	REPORT_SRC_CMA = 2,
	REPORT_SRC_STATSD = 3,
};
#define REPORT_SRC_N 4          /* sources are 1..REPORT_SRC_N-1 */

struct report_tag {
	const char *key, *val;      /* not NUL-terminated */
	uint8_t klen, vlen;
};

/* A decoded entry points into the buffer it was decoded from; an entry to
 * encode points wherever its owner keeps the bytes. */
struct report_rec {
	uint8_t kind;               /* enum report_kind */
	uint8_t source;             /* enum report_source */
	uint8_t name_len, field_len;
	uint8_t ntags;
	const char *name;           /* 1..255 bytes, wire_name_ok; none at END */
	const char *field;          /* 1..REPORT_FIELD_MAX bytes; none at END */
	int64_t ts;                 /* the Flush, unix seconds, 0..REPORT_TS_MAX */
	double value;               /* any double, NaN and infinities included */
	uint64_t count;             /* REPORT_END only: entries before it */
	struct report_tag tag[REPORT_TAGS_MAX]; /* keys strictly ascending */
};

/* 1 if r is an entry report_rec_encode accepts (the rules above and in
 * report_rec_decode), else 0. */
int report_rec_ok(const struct report_rec *r);
/* Encode r into buf[0..cap). Returns the encoded length (at most
 * REPORT_REC_MAX), or 0 when r is not valid or does not fit; nothing
 * useful is in buf then. */
size_t report_rec_encode(const struct report_rec *r, void *buf, size_t cap);
/* Decode exactly len bytes into *r, whose pointers then point into buf.
 * Returns 0, or -1 with *why saying what is wrong (r unspecified): a
 * length that lies, an unknown kind or source, a name that is not
 * wire_name_ok, a field outside [A-Za-z0-9_.-], a quantile field that
 * names no quantile in [0, 1], tags out of order or malformed, a
 * timestamp out of range, an END with a name, a nonzero pad byte, or
 * bytes left over. */
int report_rec_decode(const void *buf, size_t len, struct report_rec *r,
    const char **why);
/* The quantile a REPORT_SUM_QUANTILE field names: "q<decimal>" (q0.25),
 * or statsd's "upper_<pct>" with '_' for the decimal point (upper_99_9 is
 * 0.999). Returns 0 and *q in [0, 1], or -1. */
int report_rec_quantile(const char *field, size_t len, double *q);
/* 1 if key[0..klen) can be a tag key: 1..REPORT_TAG_KEY_MAX bytes of
 * wire_name_ok text without '=' or ','; values are 1..REPORT_TAG_VAL_MAX
 * bytes of wire_name_ok text without ','. */
int report_rec_tag_key_ok(const char *key, size_t klen);
int report_rec_tag_val_ok(const char *val, size_t vlen);

#endif
