/* log.h - one-line diagnostics on stderr, tagged with the program and stage.
 * OpenBSD style: the *warn forms append strerror(errno) (and, for EMFILE,
 * the RLIMIT_NOFILE in force), the *warnx forms do not; fatal/fatalx exit
 * with the given status after logging. */
#ifndef TELEM_LOG_H
#define TELEM_LOG_H

#include <stdarg.h>
#include <stddef.h>

/* Exit codes that steer the supervisor (skarnet convention). */
enum {
	EXIT_USAGE = 2,     /* bad command line of a user-facing program */
	EXIT_PERMANENT = 100, /* configuration error: do not restart */
	EXIT_TEMPORARY = 111, /* transient failure: restart with backoff */
};

/* Set the tag printed before every line: "prog" or "prog[stage]". */
void log_init(const char *prog, const char *stage);
const char *log_tag(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Levels: warnings (log_warn, log_warnx, fatal) always print; notices (a
 * stage restarted, the pipeline is up) print at LOG_LEVEL_INFO, the
 * default, and above; details print at LOG_LEVEL_DEBUG only. */
enum log_level { LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatal(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
_Noreturn void fatalx(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Rate limiter for noisy warnings: returns how many events were suppressed
 * since the last line it allowed (>= 0) when a line may be printed now, or -1
 * when this event must stay silent. One line per `interval_ms` at most. */
struct log_limit {
	long long last_ms;
	unsigned long long suppressed;
};
long long log_limit_pass(struct log_limit *l, long long interval_ms);
/* For the line a log_limit let through: " (N more WHAT)" in buf when it
 * stands for N > 0 suppressed events, else "" (never "0 more"). Returns
 * buf. */
const char *log_more(char *buf, size_t cap, long long n, const char *what);
/* Outside bytes made safe for one log line: printable ASCII as is, '"' and
 * '\' escaped, other bytes as \n, \t, \r or \xHH; at most `max` input
 * bytes, then "..." if there were more. Always NUL-terminated within cap
 * (cut shorter if cap is small). Returns buf. */
const char *log_escape(char *buf, size_t cap, const void *s, size_t len,
    size_t max);

#endif
