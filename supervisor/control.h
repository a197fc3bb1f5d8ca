/* control.h - the supervisor's control socket (DESIGN §7): one request
 * line per connection, reply lines, last line `ok` or `error: ...`. */
#ifndef TELEM_CONTROL_H
#define TELEM_CONTROL_H

struct sup;
struct sup_child;

/* Bind and listen (0600, in a 0700 folder). A live socket of another
 * supervisor is refused; a stale one is replaced. 0, or -1 logged. */
int ctl_open(struct sup *s);
/* Serve one waiting connection. */
void ctl_accept(struct sup *s);
/* A stage a request waits on became ready, or exited (wst >= 0). */
void ctl_stage_ready(struct sup *s, struct sup_child *c);
int ctl_stage_exited(struct sup *s, struct sup_child *c, int wst);
/* Stop listening and remove the socket file (idempotent). */
void ctl_close(struct sup *s);
/* At the very end: answer what still waits (a `stop` gets ok). */
void ctl_finish(struct sup *s);

#endif
