/* carbon_path.c - the one-to-one encoding of telem names as Graphite paths
 * described in carbon_path.h. */
#include "egress/carbon_path.h"

#include <string.h>

static const char hex[] = "0123456789ABCDEF";

static int
plain(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-';
}

int
carbon_path_encode(const char *name, size_t len, char *out, size_t cap)
{
	const unsigned char *s = (const unsigned char *)name;
	size_t o = 0, level = 0;  /* characters in the current level piece */
	if (len == 0 || len > 255)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.' && i > 0 && i + 1 < len && s[i - 1] != '.' &&
		    s[i + 1] != '.') {
			if (o + 1 >= cap)
				return -1;
			out[o++] = '.';
			level = 0;
			continue;
		}
		size_t unit = plain(s[i]) ? 1 : 3;
		/* Cut before a unit that would leave no room for "%-". */
		if (level > 0 && level + unit + 2 > CARBON_PATH_LEVEL_MAX) {
			if (o + 3 >= cap)
				return -1;
			memcpy(out + o, "%-.", 3);
			o += 3;
			level = 0;
		}
		if (o + unit >= cap)
			return -1;
		if (unit == 1) {
			out[o++] = (char)s[i];
		} else {
			out[o++] = '%';
			out[o++] = hex[s[i] >> 4];
			out[o++] = hex[s[i] & 15];
		}
		level += unit;
	}
	out[o] = '\0';
	return (int)o;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
carbon_path_decode(const char *path, char *out, size_t cap)
{
	size_t n = 0;
	for (const char *p = path; *p != '\0'; ) {
		int c;
		if (p[0] == '%' && p[1] == '-' && p[2] == '.') {
			p += 3;
			continue;
		}
		if (p[0] == '%') {
			int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = hi * 16 + lo;
			p += 3;
		} else {
			c = (unsigned char)*p++;
		}
		if (n >= cap || n >= 255)
			return -1;
		out[n++] = (char)c;
	}
	/* Only the canonical form is an encoding: encode back and compare. */
	char again[CARBON_PATH_MAX];
	if (n == 0 || carbon_path_encode(out, n, again, sizeof(again)) < 0 ||
	    strcmp(again, path) != 0)
		return -1;
	return (int)n;
}

/* Append s[0..len) to out[*o..cap) with every byte but [A-Za-z0-9_-]
 * and those in `keep` as %XX. -1 when it does not fit (room is kept for
 * a NUL). */
static int
put_escaped(const char *s, size_t len, const char *keep, char *out,
    size_t *o, size_t cap)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < len; i++) {
		if (plain(u[i]) || (u[i] != '\0' && strchr(keep, u[i]) != NULL)) {
			if (*o + 1 >= cap)
				return -1;
			out[(*o)++] = (char)u[i];
			continue;
		}
		if (*o + 3 >= cap)
			return -1;
		out[(*o)++] = '%';
		out[(*o)++] = hex[u[i] >> 4];
		out[(*o)++] = hex[u[i] & 15];
	}
	return 0;
}

int
carbon_stat_encode(const char *s, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	if (len == 0 || len > REPORT_FIELD_MAX ||
	    put_escaped(s, len, "", out, &o, cap) == -1)
		return -1;
	out[o] = '\0';
	return (int)o;
}

int
carbon_tags_encode(const struct report_tag *tag, size_t n, char *out,
    size_t cap)
{
	char piece[CARBON_TAGS_MAX];
	size_t off[REPORT_TAGS_MAX], len[REPORT_TAGS_MAX], order[REPORT_TAGS_MAX];
	size_t o = 0;
	if (n > REPORT_TAGS_MAX || cap == 0)
		return -1;
	/* Each "k=v" into piece, then their order: carbon sorts a tagged
	 * path's ";k=v" strings (TaggedSeries.format in graphite-carbon). */
	for (size_t i = 0; i < n; i++) {
		off[i] = o;
		if (put_escaped(tag[i].key, tag[i].klen, ".", piece, &o,
		    sizeof(piece)) == -1 || o + 1 >= sizeof(piece))
			return -1;
		piece[o++] = '=';
		if (put_escaped(tag[i].val, tag[i].vlen, ".=", piece, &o,
		    sizeof(piece)) == -1)
			return -1;
		len[i] = o - off[i];
		size_t j = i;
		for (; j > 0; j--) {
			size_t a = order[j - 1], m = len[a] < len[i] ? len[a] : len[i];
			int c = memcmp(piece + off[a], piece + off[i], m);
			if (c < 0 || (c == 0 && len[a] <= len[i]))
				break;
			order[j] = a;
		}
		order[j] = i;
	}
	o = 0;
	for (size_t k = 0; k < n; k++) {
		size_t i = order[k];
		if (o + 1 + len[i] >= cap)
			return -1;
		out[o++] = ';';
		memcpy(out + o, piece + off[i], len[i]);
		o += len[i];
	}
	out[o] = '\0';
	return (int)o;
}
