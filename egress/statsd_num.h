/* statsd_num.h - numbers written as statsd 0.9 writes them: JavaScript's
 * Number.prototype.toString, which its Graphite backend uses for every
 * value and for the names of percent thresholds and histogram bins. */
#ifndef TELEM_STATSD_NUM_H
#define TELEM_STATSD_NUM_H

#include <stddef.h>

#define STATSD_NUM_BUF 32 /* enough for any double */

/* Write v into buf (at least STATSD_NUM_BUF bytes) as JavaScript's
 * String(v) does: the shortest digits that read back as v; plain notation
 * for 1e-7 < |v| < 1e21, else "1.5e+21", "1e-7"; "NaN", "Infinity",
 * "-Infinity"; -0 as "0". Returns the length (NUL written too). */
size_t statsd_num_format(char *buf, double v);

#endif
