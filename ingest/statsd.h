/* statsd.h - the statsd line parser (docs/design.md §14): one datagram of
 * statsd lines in, one callback per good metric out, bad lines counted the
 * way statsd 0.9.0 counts them in its bad_lines_seen. Not yet called by the
 * ingest stage; egress/statsd_agg.h aggregates what it produces.
 *
 * What statsd 0.9.0 does (stats.js, handlePacket; lib/helpers.js,
 * is_valid_packet), and so what this parser does:
 *   - The datagram is decoded as UTF-8 (invalid bytes become U+FFFD) and
 *     split on '\n'; empty lines are skipped and not counted. Every other
 *     line counts once in metrics_received (struct statsd_result.lines).
 *   - A line is split at the first "|#": before it `name:v1|t1[|@r1]:v2|...`,
 *     between it and the next "|#" (if any; the rest is dropped) the
 *     DogStatsD tags, separated by ','.
 *   - The part before "|#" is split on ':': the first piece is the name,
 *     each further piece is one metric `value|type[|@rate][|ignored...]`,
 *     judged alone: each bad piece counts once in bad_lines_seen, so
 *     `a:1|c:2|c` is two counters and `a:1|c:x|c` one counter and one bad.
 *     A line with no ':' is one bad metric (no type).
 *   - The key is name + ";" + each tag with its first ';' made '_' and its
 *     first ':' made '=', then sanitized: every run of (Unicode) blanks
 *     becomes one '_', '/' becomes '-', and every character outside
 *     [A-Za-z0-9_.;=-] is removed (non-ASCII included).
 *   - A metric is bad when: there is no type field; a third field is present
 *     but is not '@' followed by a number that does not start with '-';
 *     the type is "g" and the value is not a number; the type is "ms" and
 *     the value is not a number >= 0; the type is anything else but "s"
 *     (unknown types included) and the value is not a number. "A number"
 *     is what JavaScript's Number() reads (ingest/jsstr.h): blanks around
 *     it allowed, decimal with exponent, 0x/0o/0b forms, Infinity; an
 *     empty value is bad, a value of blanks only is 0.
 *   - The type, with blanks trimmed, picks the kind: "ms" timer, "g" gauge,
 *     "s" set, anything else counter (statsd 0.9 knows no "h" or "d").
 *   - A gauge value starting with '+' or '-' is a delta (egress/statsd_agg.h
 *     says how it applies); a set member is the value as written, "" meaning
 *     "0"; the sample rate is the leading [0-9.]+ of what follows '@'.
 *
 * Two modes. STATSD_STRICT (the default, docs/design.md §14) is statsd's
 * rules plus these, each counted bad instead of being accepted:
 *   - a type other than c, ms, h, d, g, s after trimming ("h" and "d" are
 *     timers, like "ms"); a field after the rate;
 *   - a value that is not a plain decimal (no 0x/0o/0b, no Infinity, no
 *     blanks-only), is longer than STATSD_NUM_MAX bytes, or whose value is
 *     not finite (1e400); a negative timer, whatever the type's spelling;
 *   - a sample rate that is not [0-9.]+ (trailing blanks allowed; statsd
 *     would read "@1e-1" as 1) or not in (0, 1]: statsd 0.9 takes @0
 *     (its counts become Infinity or NaN) and @2;
 *   - a line that is not valid UTF-8; a name that is empty once sanitized;
 *   - a trailing "\r" is removed from the line first (CRLF clients), but
 *     as in statsd a set's member must then be a number unless the type
 *     was exactly "s" ("a:x|s\r" and "a:x| s" are bad; "a:1|c\r" is fine);
 *   - tags: the ';'-separated parts after the name's first ';' (those in the
 *     name and the DogStatsD ones) are sorted bytewise, empty ones dropped,
 *     so `a;y=1;x=2` and `a|#x:2,y:1` are one key `a;x=2;y=1`.
 * STATSD_COMPAT_090 follows statsd 0.9.0 itself (for checking against it),
 * tags in the order sent. In both modes, where telem must bound things:
 *   - a key longer than STATSD_KEY_MAX bytes or with more than
 *     STATSD_TAGS_MAX tags, a set member longer than STATSD_MEMBER_MAX bytes
 *     (after U+FFFD replacement), is bad (statsd takes any length);
 *   - a datagram longer than UDP_DGRAM_MAX (ingest/udp.h) is one bad
 *     line, its metrics dropped, before it reaches this parser (statsd
 *     reads up to 64 KiB);
 *   - a rate whose text does not start with [0-9.] (`@+0.5`, `@ 0.5`,
 *     `@Infinity`) is bad: statsd 0.9 dies on it (a TypeError, uncaught).
 * So strict mode rejects every metric statsd 0.9 rejects, and more.
 * The key or member "__proto__" is counted by telem; statsd's JavaScript
 * objects ignore it. */
#ifndef TELEM_STATSD_H
#define TELEM_STATSD_H

#include <stddef.h>
#include <stdint.h>

#define STATSD_KEY_MAX 255    /* bytes of a key: name and tags (names.h) */
#define STATSD_TAGS_MAX 64    /* tags per key */
#define STATSD_MEMBER_MAX 255 /* bytes of a set member */
#define STATSD_NUM_MAX 64     /* bytes of a value in STATSD_STRICT */

enum statsd_mode {
	STATSD_STRICT = 0,
	STATSD_COMPAT_090 = 1,
};

enum statsd_type {
	STATSD_COUNTER = 1,
	STATSD_TIMER = 2, /* ms, h, d */
	STATSD_GAUGE = 3,
	STATSD_SET = 4,
};

struct statsd_tag {
	const char *s; /* "k=v" or "k", inside statsd_metric.key */
	size_t len;
};

/* One good metric. Every pointer is into the parser (valid until the next
 * metric is reported) or, for nothing here, into the datagram. */
struct statsd_metric {
	enum statsd_type type;
	const char *key;   /* sanitized name, then ";tag" for each tag */
	size_t key_len;    /* 1..STATSD_KEY_MAX (0 possible in COMPAT_090) */
	size_t name_len;   /* key[0..name_len) is the name, up to the first ';' */
	size_t ntags;
	const struct statsd_tag *tags; /* key's ';'-separated parts, in order */
	double value;      /* counter, timer, gauge; unscaled by the rate */
	int delta;         /* gauge: the value was written with '+' or '-' */
	double rate;       /* sample rate, 1 when none was given */
	const char *member; /* set: the member (NUL-terminated too) */
	size_t member_len;
};

/* What one datagram held. bad_line points into the datagram. */
struct statsd_result {
	uint64_t lines;       /* non-empty lines: statsd's metrics_received */
	uint64_t metrics;     /* good metrics, one callback each */
	uint64_t bad;         /* bad metrics: statsd's bad_lines_seen */
	const char *bad_line; /* the first line with a bad metric, or NULL */
	size_t bad_len;       /* its length, without the '\n' */
	const char *bad_why;  /* a static string: why it was bad */
};

/* The parser's buffers: a key, tag slots and a member, so that nothing is
 * allocated per line. About 2 KiB; one per ingest, not shared. */
struct statsd_parser {
	enum statsd_mode mode;
	int no_fast;  /* 1: every line by the general path (for tests) */
	char key[STATSD_KEY_MAX + 1];
	char scratch[STATSD_KEY_MAX + 1];
	char member[STATSD_MEMBER_MAX + 1];
	struct statsd_tag tags[STATSD_TAGS_MAX];
	uint16_t piece_off[STATSD_TAGS_MAX + 1];
	uint16_t piece_len[STATSD_TAGS_MAX + 1];
};

typedef void statsd_metric_fn(void *ctx, const struct statsd_metric *m);

/* Set p up for mode. Cannot fail. */
void statsd_parser_init(struct statsd_parser *p, enum statsd_mode mode);

/* Parse one datagram buf[0..len) (any bytes; buf may be NULL when len is
 * 0): calls fn(ctx, m) for each good metric in order, and fills *res
 * (overwriting it). Work is linear in len (tags: at most STATSD_TAGS_MAX^2
 * comparisons a line); nothing is allocated; there is no failure. In
 * STATSD_STRICT a plainly good line (statsd.c, parse_fast) is read in one
 * pass; every other line by the general rules above, with the same
 * result for every line both can read. */
void statsd_parse(struct statsd_parser *p, const char *buf, size_t len,
    statsd_metric_fn *fn, void *ctx, struct statsd_result *res);

#endif
