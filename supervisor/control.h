/* control.h - the supervisor's control socket (docs/design.md §7): one
 * request line per connection, reply lines, last line `ok` or `error: ...`.
 * Every connection is non-blocking and served by the supervisor's one poll
 * loop, bounded in number, in request size and in time (control.c). */
#ifndef TELEM_CONTROL_H
#define TELEM_CONTROL_H

#include <poll.h>

#define CTL_CONNS 64          /* open connections; past that, closed at once */
#define CTL_REQ_MAX 4096      /* bytes of a request line, newline included */
#define CTL_REQ_MS 2000       /* a whole request line within this of connecting */
#define CTL_REPLY_MS 2000     /* a reply must be read within this */
#define CTL_FLUSH_MS 1000     /* `flush` waits this long behind a full queue */
#define CTL_RELOAD_MS 15000   /* `reload` waits this long for its stages */
/* How long telemctl waits for the whole reply, from before it connects
 * (man/telemctl.8); past it, it says so and exits 1. Each is longer than
 * the supervisor's own bound on the request (checked in control.c). */
#define CTL_CLIENT_MS 10000         /* status, books, flush */
#define CTL_CLIENT_WAIT_MS 60000    /* restart, swap, reload */
#define CTL_CLIENT_STOP_MS 600000   /* stop */
/* Entries ctl_pollfds may fill. */
#define CTL_POLLFDS (CTL_CONNS + 1)

struct sup;
struct sup_child;

/* Bind and listen (0600, in a 0700 folder of ours), and make the table of
 * connections. A live socket of another supervisor is refused; a stale
 * socket of ours is replaced. 0; -1 logged (nothing left open); or -2
 * (EXIT_USAGE negated), logged, when something that is not a socket of
 * ours is at the path: refused, never removed. */
int ctl_open(struct sup *s);
/* Before anything is created: --control PATH names nothing yet, or a
 * socket of ours. 0, or -1 with one line logged (exit 2). */
int ctl_check_path(const char *path);
/* Fill pfd (room for CTL_POLLFDS) with what the control side waits on:
 * the listening socket and each connection reading its request or
 * writing its reply. Returns how many entries were filled. */
nfds_t ctl_pollfds(struct sup *s, struct pollfd *pfd);
/* Act on the poll results of those entries: accept, read, answer, write.
 * Never waits. */
void ctl_events(struct sup *s, const struct pollfd *pfd, nfds_t n);
/* Drop the connections past their deadline (logged, at most a line a
 * second) and retry a `flush` waiting behind a full queue. Returns the ms
 * until it needs to run again, or -1 if nothing is due. */
long long ctl_tick(struct sup *s);
/* A stage a request waits on became ready, or exited (wst >= 0). */
void ctl_stage_ready(struct sup *s, struct sup_child *c);
int ctl_stage_exited(struct sup *s, struct sup_child *c, int wst);
/* Stop listening and remove the socket file (idempotent). */
void ctl_close(struct sup *s);
/* At the very end: answer what still waits (every `stop` gets ok), give
 * the replies up to CTL_REPLY_MS to be read, close everything. */
void ctl_finish(struct sup *s);

#endif
