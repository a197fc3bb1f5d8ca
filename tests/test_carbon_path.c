/* test_carbon_path.c - Graphite paths of telem names (egress/carbon_path.c):
 * names that shared a whisper file before get distinct paths, no name
 * leaves the prefix or makes a level carbon or a file system treats
 * specially, and the mapping is one to one (exhaustively over short names
 * of a hostile alphabet, and on random names by decoding back). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/carbon_path.h"
#include "wire.h"

TestSuite(carbon_path);

static const char *
enc(const char *name, char *buf)
{
	int n = carbon_path_encode(name, strlen(name), buf, CARBON_PATH_MAX);
	cr_assert_geq(n, 0, "encode %s failed", name);
	cr_assert_eq((size_t)n, strlen(buf));
	return buf;
}

Test(carbon_path, common_names_are_unchanged)
{
	static const char *const same[] = {
		"a", "col.x", "web-1.requests_total", "A.B.C.D", "x_y-z.0.9",
	};
	char buf[CARBON_PATH_MAX];
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
		cr_assert_str_eq(enc(same[i], buf), same[i]);
}

Test(carbon_path, escapes)
{
	static const struct { const char *in, *out; } t[] = {
		{ "col/x", "col%2Fx" },
		{ ".col..x.", "%2Ecol%2E%2Ex%2E" },
		{ "..", "%2E%2E" },
		{ ".", "%2E" },
		{ "../etc/passwd", "%2E%2E%2Fetc%2Fpasswd" },
		{ "/etc/passwd", "%2Fetc%2Fpasswd" },
		{ "a.b;tag=1", "a.b%3Btag%3D1" },
		{ "50%", "50%25" },
		{ "a*b?[c]{d,e}", "a%2Ab%3F%5Bc%5D%7Bd%2Ce%7D" },
		{ "é", "%C3%A9" },
		{ "a..b", "a%2E%2Eb" },
		{ "a.-.b", "a.-.b" },
		{ "~x", "%7Ex" },
	};
	char buf[CARBON_PATH_MAX];
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_assert_str_eq(enc(t[i].in, buf), t[i].out, "%s", t[i].in);
}

/* The three names of the report that all wrote telem/col/x/q50.wsp. */
Test(carbon_path, names_that_collided_get_distinct_paths)
{
	char a[CARBON_PATH_MAX], b[CARBON_PATH_MAX], c[CARBON_PATH_MAX];
	enc("col.x", a);
	enc("col/x", b);
	enc(".col..x.", c);
	cr_assert_str_neq(a, b);
	cr_assert_str_neq(a, c);
	cr_assert_str_neq(b, c);
}

/* What carbon-cache does with "<prefix>.<path>.<stat>": the file
 * <dir>/<prefix>/<levels...>/<stat>.wsp. Check every level. */
static void
safe_levels(const char *path, const char *name)
{
	char copy[CARBON_PATH_MAX];
	snprintf(copy, sizeof(copy), "%s", path);
	cr_assert_eq(strchr(path, '/'), NULL, "%s: '/' in %s", name, path);
	cr_assert_eq(strchr(path, ';'), NULL, "%s: ';' in %s", name, path);
	cr_assert_neq(path[0], '.', "%s: leading dot", name);
	cr_assert_neq(path[strlen(path) - 1], '.', "%s: trailing dot", name);
	cr_assert_eq(strstr(path, ".."), NULL, "%s: empty level", name);
	for (char *save = NULL, *l = strtok_r(copy, ".", &save); l != NULL;
	    l = strtok_r(NULL, ".", &save)) {
		cr_assert_leq(strlen(l), CARBON_PATH_LEVEL_MAX, "%s: long level",
		    name);
		cr_assert(strcmp(l, ".") != 0 && strcmp(l, "..") != 0);
		for (const char *p = l; *p; p++)
			cr_assert((*p >= 'a' && *p <= 'z') || (*p >= 'A' &&
			    *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
			    *p == '-' || *p == '%', "%s: byte %02x in %s", name,
			    (unsigned char)*p, path);
	}
}

Test(carbon_path, hostile_names_stay_under_the_prefix)
{
	static const char *const bad[] = {
		"..", "../", "../..", "../../etc/passwd", "/etc/passwd", "./x",
		"x/..", "x/../..", ".", "...", "a...b", "%2E%2E", "%-.x", "a;b=c",
		"..%2F..", "~root", "a.b.", ".a.b", "\\..\\x", "a/./b",
	};
	char buf[CARBON_PATH_MAX], back[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enc(bad[i], buf);
		safe_levels(buf, bad[i]);
		int n = carbon_path_decode(buf, back, sizeof(back));
		cr_assert_eq((size_t)n, strlen(bad[i]));
		cr_assert_eq(memcmp(back, bad[i], (size_t)n), 0);
	}
}

Test(carbon_path, long_names_are_cut_into_short_levels)
{
	char name[256], buf[CARBON_PATH_MAX], back[256];
	memset(name, '/', 255);
	name[255] = '\0';
	int n = carbon_path_encode(name, 255, buf, sizeof(buf));
	cr_assert_gt(n, 765, "every byte escaped, and cut");
	cr_assert_lt(n, CARBON_PATH_MAX);
	safe_levels(buf, "255 slashes");
	cr_assert_eq(carbon_path_decode(buf, back, sizeof(back)), 255);
	cr_assert_eq(memcmp(back, name, 255), 0);
	/* Too small a buffer, an empty or a 256-byte name: refused. */
	cr_assert_eq(carbon_path_encode(name, 255, buf, 700), -1);
	cr_assert_eq(carbon_path_encode(name, 0, buf, sizeof(buf)), -1);
	cr_assert_eq(carbon_path_encode(name, 256, buf, sizeof(buf)), -1);
	memset(name, 'a', 255);
	cr_assert_eq(carbon_path_encode(name, 255, buf, sizeof(buf)), 255 + 3);
	safe_levels(buf, "255 a");
}

Test(carbon_path, decode_refuses_what_encode_never_makes)
{
	static const char *const bad[] = {
		"", ".a", "a.", "a..b", "%2e", "%2", "%G0", "%41", "a%-.",
		"%-.a", "a/b", "a;b", "a%-b",
	};
	char back[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(carbon_path_decode(bad[i], back, sizeof(back)), -1,
		    "%s decoded", bad[i]);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every name of 1..4 bytes over an alphabet of separators, escapes and
 * plain bytes: all encodings distinct. */
Test(carbon_path, exhaustive_short_names_are_one_to_one)
{
	static const char alpha[] = { 'a', '.', '/', '%', '-', '2', 'E', ';' };
	const size_t k = sizeof(alpha);
	size_t total = k + k * k + k * k * k + k * k * k * k;
	char **out = calloc(total, sizeof(*out));
	cr_assert_not_null(out);
	size_t m = 0;
	for (size_t len = 1; len <= 4; len++) {
		size_t combos = 1;
		for (size_t i = 0; i < len; i++)
			combos *= k;
		for (size_t c = 0; c < combos; c++) {
			char name[5], buf[CARBON_PATH_MAX];
			size_t x = c;
			for (size_t i = 0; i < len; i++, x /= k)
				name[i] = alpha[x % k];
			name[len] = '\0';
			enc(name, buf);
			safe_levels(buf, name);
			out[m] = strdup(buf);
			cr_assert_not_null(out[m]);
			m++;
		}
	}
	cr_assert_eq(m, total);
	qsort(out, m, sizeof(*out), cmp_str);
	for (size_t i = 1; i < m; i++)
		cr_assert_str_neq(out[i - 1], out[i], "two names share %s", out[i]);
	for (size_t i = 0; i < m; i++)
		free(out[i]);
	free(out);
}

/* Random valid names, long ones included: decoding gives each back, so
 * no two can share a path. */
Test(carbon_path, random_names_decode_back)
{
	static const char *const piece[] = {
		"a", "Z", "9", "_", "-", ".", ".", "/", "%", ";", "*", "é",
		"\xe2\x82\xac", "\xf0\x9f\x98\x80", "..", "~", "=", ",",
	};
	srand(4242);
	for (int i = 0; i < 100000; i++) {
		char name[256], buf[CARBON_PATH_MAX], back[256];
		size_t want = 1 + (size_t)rand() % (i % 10 == 0 ? 255 : 20), len = 0;
		while (len < want) {
			const char *p = piece[(size_t)rand() %
			    (sizeof(piece) / sizeof(piece[0]))];
			size_t pl = strlen(p);
			if (len + pl > want)
				break;
			memcpy(name + len, p, pl);
			len += pl;
		}
		if (len == 0)
			continue;
		cr_assert(wire_name_ok(name, len));
		int n = carbon_path_encode(name, len, buf, sizeof(buf));
		cr_assert_gt(n, 0);
		name[len] = '\0';
		safe_levels(buf, name);
		cr_assert_eq(carbon_path_decode(buf, back, sizeof(back)), (int)len);
		cr_assert_eq(memcmp(back, name, len), 0);
	}
}

static struct report_tag
tag(const char *k, const char *v)
{
	return (struct report_tag){ k, v, (uint8_t)strlen(k), (uint8_t)strlen(v) };
}

static size_t
count_char(const char *s, char c)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == c;
	return n;
}

static const char *
tags_enc(const struct report_tag *t, size_t n, char *buf)
{
	int len = carbon_tags_encode(t, n, buf, CARBON_TAGS_MAX);
	cr_assert_geq(len, 0, "encode of %zu tags failed", n);
	cr_assert_eq((size_t)len, strlen(buf));
	return buf;
}

/* statsd's tags (keys [A-Za-z0-9_.-], values also '=') are written as
 * telem-egress-statsd writes them; anything that would end the line, the
 * path or a tag, or that carbon refuses in a tag, is escaped. */
Test(carbon_path, tags_as_graphite_tagged_series)
{
	char buf[CARBON_TAGS_MAX];
	cr_assert_str_eq(tags_enc(NULL, 0, buf), "");
	struct report_tag one[] = { tag("env", "prod") };
	cr_assert_str_eq(tags_enc(one, 1, buf), ";env=prod");
	struct report_tag t[] = { tag("code", "200"), tag("env", "prod") };
	cr_assert_str_eq(tags_enc(t, 2, buf), ";code=200;env=prod");
	/* Report order is by key ("a" before "a.b"); carbon's, and the statsd
	 * key's, is by "k=v" ("a.b=1" before "a=2"). */
	struct report_tag o[] = { tag("a", "2"), tag("a.b", "1"), tag("a1", "x") };
	cr_assert_str_eq(tags_enc(o, 3, buf), ";a.b=1;a1=x;a=2");
	struct report_tag eq[] = { tag("k", "b=c"), tag("k-2", "x_y.z") };
	cr_assert_str_eq(tags_enc(eq, 2, buf), ";k-2=x_y.z;k=b=c");
	static const struct { const char *k, *v, *out; } esc[] = {
		{ "k", "a;b", ";k=a%3Bb" },
		{ "a;b", "v", ";a%3Bb=v" },
		{ "k", "~x", ";k=%7Ex" },
		{ "a!b^c", "v", ";a%21b%5Ec=v" },
		{ "k", "50%", ";k=50%25" },
		{ "k", "a/b", ";k=a%2Fb" },
		{ "k", "\xc3\xa9", ";k=%C3%A9" },
		{ "k", "a\nb c\t", ";k=a%0Ab%20c%09" },
	};
	for (size_t i = 0; i < sizeof(esc) / sizeof(esc[0]); i++) {
		struct report_tag x = tag(esc[i].k, esc[i].v);
		cr_assert_str_eq(tags_enc(&x, 1, buf), esc[i].out, "%s=%s",
		    esc[i].k, esc[i].v);
		for (const char *p = buf; *p; p++)
			cr_assert(*p > ' ' && *p <= '~', "byte %02x", (unsigned char)*p);
		cr_assert_eq(count_char(buf, ';'), 1);
		cr_assert_eq(count_char(buf, '='), 1 + count_char(esc[i].v, '='));
	}
	/* The largest tag list a report carries fits; a small buffer or too
	 * many tags do not. */
	char k[REPORT_TAGS_MAX][8], v[REPORT_TAGS_MAX][10];
	struct report_tag big[REPORT_TAGS_MAX + 1];
	for (int i = 0; i < REPORT_TAGS_MAX; i++) {
		snprintf(k[i], sizeof(k[i]), ";;;%03u", (unsigned)i % 1000);
		memset(v[i], ';', 9);
		v[i][9] = '\0';
		big[i] = tag(k[i], v[i]);
	}
	cr_assert_eq(carbon_tags_encode(big, REPORT_TAGS_MAX, buf, sizeof(buf)),
	    REPORT_TAGS_MAX * (2 + 3 * 3 + 3 + 3 * 9));
	cr_assert_eq(carbon_tags_encode(big, REPORT_TAGS_MAX, buf, 100), -1);
	big[REPORT_TAGS_MAX] = tag("z", "z");
	cr_assert_eq(carbon_tags_encode(big, REPORT_TAGS_MAX + 1, buf,
	    sizeof(buf)), -1);
}

/* Every one-tag list over a hostile alphabet (keys of 1..2 bytes,
 * values of 1..3, as report_rec takes them): distinct lists, distinct
 * encodings. */
Test(carbon_path, tags_are_one_to_one)
{
	static const char alpha[] = { 'a', '.', ';', '=', '%', '2', ',', '~' };
	enum { K = sizeof(alpha) };
	static char str[K + K * K + K * K * K][4];
	size_t nstr = 0, upto2 = 0;
	for (size_t len = 1; len <= 3; len++) {
		size_t combos = len == 1 ? K : len == 2 ? K * K : K * K * K;
		for (size_t c = 0; c < combos; c++, nstr++) {
			size_t x = c;
			for (size_t i = 0; i < len; i++, x /= K)
				str[nstr][i] = alpha[x % K];
		}
		if (len == 2)
			upto2 = nstr;
	}
	char **out = calloc(upto2 * nstr, sizeof(*out));
	cr_assert_not_null(out);
	size_t m = 0;
	for (size_t i = 0; i < upto2; i++) {
		for (size_t j = 0; j < nstr; j++) {
			const char *key = str[i], *val = str[j];
			if (!report_rec_tag_key_ok(key, strlen(key)) ||
			    !report_rec_tag_val_ok(val, strlen(val)))
				continue;
			struct report_tag t = tag(key, val);
			char buf[CARBON_TAGS_MAX];
			out[m] = strdup(tags_enc(&t, 1, buf));
			cr_assert_not_null(out[m]);
			m++;
		}
	}
	cr_assert_gt(m, 10000);
	qsort(out, m, sizeof(*out), cmp_str);
	for (size_t i = 1; i < m; i++)
		cr_assert_str_neq(out[i - 1], out[i], "two tag lists share %s", out[i]);
	for (size_t i = 0; i < m; i++)
		free(out[i]);
	free(out);
}

/* A stat is one level: statsd's histogram.bin_10 after name "a" cannot
 * meet bin_10 after name "a.histogram" (egress/carbon_path.h). */
Test(carbon_path, stats_are_one_level)
{
	static const struct { const char *in, *out; } t[] = {
		{ "q25", "q25" }, { "cma", "cma" }, { "mean_90", "mean_90" },
		{ "upper_99_9", "upper_99_9" }, { "count-x", "count-x" },
		{ "histogram.bin_10", "histogram%2Ebin_10" },
		{ "histogram.bin_0_5", "histogram%2Ebin_0_5" },
		{ "histogram.bin_inf", "histogram%2Ebin_inf" },
		{ "q0.5", "q0%2E5" }, { ".", "%2E" },
	};
	char buf[CARBON_STAT_MAX];
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int n = carbon_stat_encode(t[i].in, strlen(t[i].in), buf, sizeof(buf));
		cr_assert_eq(n, (int)strlen(t[i].out), "%s", t[i].in);
		cr_assert_str_eq(buf, t[i].out);
	}
	/* "a" + "histogram.bin_10" and "a.histogram" + "bin_10": two paths. */
	char p1[CARBON_PATH_MAX + CARBON_STAT_MAX], p2[sizeof(p1)];
	char s[CARBON_STAT_MAX], name[CARBON_PATH_MAX];
	carbon_stat_encode("histogram.bin_10", 16, s, sizeof(s));
	snprintf(p1, sizeof(p1), "%s.%s", enc("a", name), s);
	carbon_stat_encode("bin_10", 6, s, sizeof(s));
	snprintf(p2, sizeof(p2), "%s.%s", enc("a.histogram", name), s);
	cr_assert_str_neq(p1, p2);
	/* The longest field, every byte escaped, fits; more or none does not. */
	char f[REPORT_FIELD_MAX + 1];
	memset(f, '.', sizeof(f));
	cr_assert_eq(carbon_stat_encode(f, REPORT_FIELD_MAX, buf, sizeof(buf)),
	    3 * REPORT_FIELD_MAX);
	cr_assert_eq(carbon_stat_encode(f, REPORT_FIELD_MAX + 1, buf,
	    sizeof(buf)), -1);
	cr_assert_eq(carbon_stat_encode(f, 0, buf, sizeof(buf)), -1);
	cr_assert_eq(carbon_stat_encode(f, 4, buf, 12), -1);
}
