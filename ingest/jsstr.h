/* jsstr.h - a statsd line's text as statsd 0.9 (JavaScript on Node) sees
 * it: UTF-8 decoded with replacement, JavaScript's blanks, and Number(),
 * for the statsd parser (ingest/statsd.c). */
#ifndef TELEM_JSSTR_H
#define TELEM_JSSTR_H

#include <stddef.h>
#include <stdint.h>

/* One step of a WHATWG UTF-8 decoder at s[0..n), n >= 1: returns the bytes
 * taken, *cp = the code point, or -1 when they are an invalid sequence
 * (its maximal subpart, which the decoder replaces with one U+FFFD). */
static inline size_t
jsstr_u8_step(const unsigned char *s, size_t n, int32_t *cp)
{
	unsigned c = s[0], lo = 0x80, hi = 0xBF;
	size_t need;
	int32_t v;

	if (c < 0x80) {
		*cp = (int32_t)c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		need = 1;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 2;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F;
	} else {
		*cp = -1;
		return 1;
	}
	size_t i = 1;
	for (; i <= need; i++) {
		if (i >= n || s[i] < lo || s[i] > hi) {
			*cp = -1;
			return i;
		}
		v = (v << 6) | (s[i] & 0x3F);
		lo = 0x80;
		hi = 0xBF;
	}
	*cp = v;
	return i;
}

/* JavaScript's WhiteSpace and LineTerminator: what \s matches and what
 * trim() and Number() remove. */
static inline int
jsstr_space(int32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 ||
	    c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
	    c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000 ||
	    c == 0xFEFF;
}

/* Trim JavaScript blanks (jsstr_space) from both ends of s[*b..*e). */
void jsstr_trim(const char *s, size_t *b, size_t *e);

/* JavaScript's Number(str) for str[0..len) (as statsd 0.9 calls it), str
 * being UTF-8: blanks around it allowed, decimal with exponent (correctly
 * rounded whatever its length), 0x/0o/0b forms, Infinity; "" and blanks
 * only are 0. Returns 0 and sets *v, or -1 for NaN. *decimal is set to 1
 * when the text (blanks trimmed) is a non-empty plain decimal literal, to
 * 0 for the other forms. */
int jsstr_number(const char *str, size_t len, double *v, int *decimal);

#endif
