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
 * The writer appends ".<stat>" to the encoded name; (name, stat) pairs
 * stay one to one only while stats have no '.' (q25, cma, mean_90): a
 * stat "x.y" after name "a" would meet stat "y" after name "a.x". */
#ifndef TELEM_CARBON_PATH_H
#define TELEM_CARBON_PATH_H

#include <stddef.h>

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

#endif
