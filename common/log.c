/* log.c - stderr diagnostics shared by every telem program. Each line is
 * written with a single write(2) so lines of different stages never mix. */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"

static char tag[96] = "telem";
static enum log_level level = LOG_LEVEL_INFO;

void
log_set_level(enum log_level l)
{
	level = l;
}

enum log_level
log_get_level(void)
{
	return level;
}

void
log_init(const char *prog, const char *stage)
{
	if (stage != NULL && *stage != '\0')
		snprintf(tag, sizeof(tag), "%s[%s]", prog, stage);
	else
		snprintf(tag, sizeof(tag), "%s", prog);
}

const char *
log_tag(void)
{
	return tag;
}

static void
vlog(const char *fmt, va_list ap, int err)
{
	char line[1024];
	int n = snprintf(line, sizeof(line), "%s: ", tag);
	if (n < 0)
		return;
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (m < 0)
		return;
	size_t len = (size_t)n + (size_t)m;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	if (err >= 0)
		len += (size_t)snprintf(line + len, sizeof(line) - len, ": %s",
		    strerror(err));
	/* "Too many open files" alone does not say whether the limit is 16
	 * or a million; the reader needs the number to raise it. */
	struct rlimit rl;
	if (err == EMFILE && len < sizeof(line) - 2 &&
	    getrlimit(RLIMIT_NOFILE, &rl) == 0)
		len += (size_t)snprintf(line + len, sizeof(line) - len,
		    " (RLIMIT_NOFILE %llu)", (unsigned long long)rl.rlim_cur);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w; /* nowhere left to report a failing stderr */
}

void
log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, saved);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, -1);
	va_end(ap);
	errno = saved;
}

void
log_info(const char *fmt, ...)
{
	if (level < LOG_LEVEL_INFO)
		return;
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, -1);
	va_end(ap);
	errno = saved;
}

void
log_debug(const char *fmt, ...)
{
	if (level < LOG_LEVEL_DEBUG)
		return;
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, -1);
	va_end(ap);
	errno = saved;
}

void
fatal(int status, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, saved);
	va_end(ap);
	exit(status);
}

void
fatalx(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, -1);
	va_end(ap);
	exit(status);
}

long long
log_limit_pass(struct log_limit *l, long long interval_ms)
{
	long long now = clock_ms();
	if (l->last_ms != 0 && now - l->last_ms < interval_ms) {
		l->suppressed++;
		return -1;
	}
	long long s = (long long)l->suppressed;
	l->suppressed = 0;
	l->last_ms = now;
	return s;
}

const char *
log_more(char *buf, size_t cap, long long n, const char *what)
{
	if (n > 0)
		snprintf(buf, cap, " (%lld more %s)", n, what);
	else if (cap > 0)
		buf[0] = '\0';
	return buf;
}

const char *
log_escape(char *buf, size_t cap, const void *s, size_t len, size_t max)
{
	const unsigned char *p = s;
	size_t o = 0, i;
	/* Room for the longest escape (\xHH), "..." and the NUL. */
	for (i = 0; i < len && i < max && o + 8 < cap; i++) {
		unsigned c = p[i];
		if (c == '\\' || c == '"')
			o += (size_t)snprintf(buf + o, cap - o, "\\%c", c);
		else if (c == '\n')
			o += (size_t)snprintf(buf + o, cap - o, "\\n");
		else if (c == '\t')
			o += (size_t)snprintf(buf + o, cap - o, "\\t");
		else if (c == '\r')
			o += (size_t)snprintf(buf + o, cap - o, "\\r");
		else if (c < 0x20 || c >= 0x7f)
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	if (i < len && o + 4 <= cap) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	if (cap > 0)
		buf[o < cap ? o : cap - 1] = '\0';
	return buf;
}
