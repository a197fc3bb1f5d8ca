/* carbon_path.h - telem names as Graphite paths, one to one. carbon-cache
 * stores metric "a.b.c" in <data dir>/a/b/c.wsp (it replaces every '.' by
 * '/' and strips leading '/'), and treats a name with ';' as a tagged
 * series; so a name taken unchanged lets `col.x`, `col/x` and `.col..x.`
 * share one file and `../x` walk out of the prefix. This encoding fixes
 * both:
 *
 *  - bytes [A-Za-z0-9_-] stay as they are;
 *  - a '.' stays a '.' (a level of the hierarchy) only when it has a byte
 *    other than '.' on both sides; every other '.' (leading, trailing,
 *    doubled) and every other byte ('/', ';', '%', '*', UTF-8 bytes, ...)
 *    becomes "%XX", its value in upper-case hex;
 *  - a level longer than CARBON_PATH_LEVEL_MAX characters is cut (only
 *    between escapes) into pieces joined by "%-." so that no directory or
 *    file name passes the file system's 255 bytes.
 *
 * Every literal '.' of the output is therefore a kept separator or ends a
 * "%-" cut, no level is empty, none is "." or "..", and none holds '/' or
 * ';': carbon writes under its prefix only, and decoding (split at '.',
 * join cut pieces, undo %XX) gives the name back, so two names never share
 * a whisper file. Names of only [A-Za-z0-9_-] and single inner dots (the
 * common case, and every name of the wave-1 tests) are unchanged.
 *
 * The writer appends ".<stat>" to the encoded name, the stat encoded by
 * carbon_stat_encode: [A-Za-z0-9_-] kept, every other byte, '.' too, as
 * "%XX". A stat is so one level (q25, cma, mean_90 unchanged; statsd's
 * "histogram.bin_10" is "histogram%2Ebin_10") and (name, stat) pairs stay
 * one to one: a stat "x.y" kept as it is after name "a" would meet stat
 * "y" after name "a.x".
 *
 * An entry's tags follow as Graphite's tagged-series form, ";k=v;k=v"
 * (carbon_tags_encode), as telem-egress-statsd writes a key's tags after
 * its path (egress/statsd_agg_flush.c). Tag keys and values keep
 * [A-Za-z0-9_.-] (and a value its '=' too: statsd's tags, "env=prod",
 * are unchanged); every other byte (';', ' ', '%', '~', '!', '^', '/',
 * UTF-8 bytes, ...) becomes "%XX". No ';' but the separators and no '='
 * in a key is left, so a different tag list is a different path, and
 * carbon reads each tag as it was meant (it refuses ';', '!', '^' and '='
 * in a tag's key and a value that starts with '~'). The tags are written
 * in the order carbon itself sorts a tagged path to (bytewise on the
 * encoded "k=v"), so the line is already the name carbon stores. Carbon
 * keeps a tagged series under _tagged/, its file named from the sha256
 * of the whole path. */
#ifndef TELEM_CARBON_PATH_H
#define TELEM_CARBON_PATH_H

#include <stddef.h>

#include "egress/report_rec.h"

#define CARBON_PATH_LEVEL_MAX 240   /* characters of one level, at most */
/* The longest encoding of a 255-byte name (765 escaped characters, cut
 * into 4 pieces), plus its NUL. */
#define CARBON_PATH_MAX 784

/* Encode name[0..len) (a wire_name_ok name, 1..255 bytes) into out[0..cap)
 * with a NUL. Returns the encoded length, or -1 (out unspecified) when the
 * name is empty or longer than 255 bytes, or cap is too small. */
int carbon_path_encode(const char *name, size_t len, char *out, size_t cap);
/* The inverse: decode path (NUL-terminated) into out[0..cap). Returns the
 * name's length, or -1 when path is not an encoding this module makes. */
int carbon_path_decode(const char *path, char *out, size_t cap);

/* The longest stat: a report field (REPORT_FIELD_MAX bytes) with each
 * byte escaped, plus its NUL. */
#define CARBON_STAT_MAX (3 * REPORT_FIELD_MAX + 1)
/* Encode the stat s[0..len) (1..REPORT_FIELD_MAX bytes) as one level into
 * out[0..cap) with a NUL. Returns the length, or -1 (out unspecified) when
 * len is 0 or over REPORT_FIELD_MAX, or cap is too small. */
int carbon_stat_encode(const char *s, size_t len, char *out, size_t cap);

/* ";k=v;k=v" of the longest tag list a report entry carries (each byte
 * escaped to 3), plus its NUL. */
#define CARBON_TAGS_MAX (3 * REPORT_TAGS_BYTES + 1)
/* Encode tag[0..n) (report_rec_tag_key_ok keys, distinct, and
 * report_rec_tag_val_ok values) as ";k=v" each, in carbon's order, into
 * out[0..cap) with a NUL; "" when n is 0. Returns the length, or -1 (out
 * unspecified) when n is over REPORT_TAGS_MAX or cap is too small. */
int carbon_tags_encode(const struct report_tag *tag, size_t n, char *out,
    size_t cap);

#endif
