/* statsd_num.c - JavaScript's Number-to-String for statsd's output
 * (ECMAScript Number::toString, radix 10). */
#include "egress/statsd_num.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t
statsd_num_format(char *buf, double v)
{
	char e[40], d[20];
	size_t o = 0, k = 0;
	int n = 0;

	if (isnan(v))
		return (size_t)snprintf(buf, STATSD_NUM_BUF, "NaN");
	if (v == 0)
		return (size_t)snprintf(buf, STATSD_NUM_BUF, "0");
	if (v < 0)
		buf[o++] = '-', v = -v;
	if (isinf(v))
		return o + (size_t)snprintf(buf + o, STATSD_NUM_BUF - o, "Infinity");
	/* The shortest digits that read back as v; %.*e rounds correctly, so
	 * the first precision that reads back gives the closest such digits. */
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(e, sizeof(e), "%.*e", prec - 1, v);
		if (strtod(e, NULL) == v || prec == 17)
			break;
	}
	char *x = strchr(e, 'e');
	n = atoi(x + 1) + 1; /* v = 0.d1d2... * 10^n */
	for (char *p = e; p < x; p++)
		if (*p != '.')
			d[k++] = *p;
	while (k > 1 && d[k - 1] == '0')
		k--;
	if ((int)k <= n && n <= 21) {
		memcpy(buf + o, d, k), o += k;
		for (int i = (int)k; i < n; i++)
			buf[o++] = '0';
	} else if (0 < n && n <= 21) {
		memcpy(buf + o, d, (size_t)n), o += (size_t)n;
		buf[o++] = '.';
		memcpy(buf + o, d + n, k - (size_t)n), o += k - (size_t)n;
	} else if (-6 < n && n <= 0) {
		buf[o++] = '0';
		buf[o++] = '.';
		for (int i = 0; i < -n; i++)
			buf[o++] = '0';
		memcpy(buf + o, d, k), o += k;
	} else {
		buf[o++] = d[0];
		if (k > 1) {
			buf[o++] = '.';
			memcpy(buf + o, d + 1, k - 1), o += k - 1;
		}
		o += (size_t)snprintf(buf + o, STATSD_NUM_BUF - o, "e%c%d",
		    n - 1 < 0 ? '-' : '+', abs(n - 1));
	}
	buf[o] = '\0';
	return o;
}
