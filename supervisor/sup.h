/* sup.h - the supervisor's parts and what they share. One prototype group
 * per file, in the order a run uses them (cf. Postfix master.h). */
#ifndef TELEM_SUP_H
#define TELEM_SUP_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "chan.h"
#include "ingest/udp.h"
#include "log.h"
#include "stats.h"

#define SUP_STAGES 5
#define SUP_ARGS_MAX 32
#define SUP_BACKOFF_MIN_MS 100
#define SUP_BACKOFF_MAX_MS 5000
#define SUP_INTENSITY 5           /* more restarts than this ... */
#define SUP_PERIOD_MS 10000       /* ... within this: give up */
#define SUP_STOP_GRACE_MS 2000    /* SIGTERM, then SIGKILL after this */
#define SUP_READY_MS 10000        /* a stage not ready by then is killed */
#define SUP_STALL_MS 10000        /* default --stall-ms */
#define SUP_STALL_CHECK_MS 500    /* how often the in-queues are looked at */
/* What a stage writes on its ready fd, exactly (common/stage.c stage_ready);
 * other bytes, or the fd closed before all of these, is a failed start. */
#define SUP_READY_BYTES "R\n"
#define SUP_READY_EOF_MS 500      /* closed unready and still alive: killed */

struct sup_config {
	const char *host, *port;
	uint32_t rcvbuf;            /* UDP receive buffer asked for, bytes */
	uint32_t limit;
	double eps;
	long flush_ms;
	struct chan_attr chan;
	const char *instance;
	const char *control;        /* control socket path, or NULL for default */
	const char *graphite;       /* -g host:port for both egresses, or NULL */
	const char *graphite_prefix;  /* NULL: the egresses' default */
	const char *graphite_buffer;  /* bytes, validated; NULL: default */
	const char *max_names;      /* the egresses' --max-names; NULL: theirs */
	long stall_ms;              /* queued input, nothing taken: restart; 0: never */
	const char *state_dir;      /* --state-dir (absolute), or NULL: /dev/shm */
	char bindir[PATH_MAX];      /* where the stage executables are */
};

struct ctl_conn;

/* policy.c: supervision as a table of states x events (s6-style). */
/* S_STALLED: up, but took nothing from its queued input for stall_ms; it is
 * being stopped (like S_STOPPING) and starts again at once when it exits. */
enum sup_state { S_DOWN, S_STARTING, S_UP, S_STOPPING, S_THROTTLED, S_STALLED,
	S_NSTATES };
enum sup_event { E_SPAWNED, E_READY, E_EXITED, E_TIMER, E_STOP, E_STALL,
	E_NEVENTS };
const char *sup_state_name(enum sup_state s);
/* The next state, or -1 if the event cannot happen in that state. */
int sup_next(enum sup_state s, enum sup_event e);
/* After an exit with wait status `wst` of a child that had been up
 * `up_ms`: returns 1 to restart after *delay_ms, 0 to give up on the whole
 * pipeline (exit 100, or the intensity limit), updating the child's
 * backoff and restart history. */
struct sup_child;
int sup_after_exit(struct sup_child *c, int wst, long long now, long long *delay_ms);
/* Records a stage has taken off its in-queue so far (stats_in: its
 * slot's `in` and what it took of each writer, common/stats.h):
 * the one place that says what "taking" is for the stall check. */
uint64_t sup_slot_taken(const struct stats_slot *st);
/* One look at an up stage's in-queue at `now`: `taken` from
 * sup_slot_taken, `depth` of its in-queue, `waiting_out` 1 when one of its
 * out-queues holds messages (it may be held up downstream, not stalled).
 * Returns 1 when it held queued input and took nothing for stall_ms (> 0),
 * else 0; updates c's stall_* fields. */
int sup_stall_check(struct sup_child *c, uint64_t taken, long depth,
    int waiting_out, long long now, long stall_ms);
/* Why a start failed (sup_child.not_ready). */
enum sup_not_ready { NR_NONE, NR_TIMEOUT, NR_GARBAGE, NR_EOF };

struct sup_child {
	char name[16];
	char in_queue[16];
	char out_queue[2][16];
	int nout;
	int slot;
	int udp;                   /* 1: gets the instance's UDP sockets */
	char exe[PATH_MAX];
	char state_file[PATH_MAX]; /* its --state FILE (kept across swaps), or "" */
	char *own[SUP_ARGS_MAX];   /* the stage's own options (owned strings) */
	int nown;
	pid_t pid;
	unsigned gen;              /* bumped per spawn */
	enum sup_state state;
	int ready_fd;              /* read end of the readiness pipe, or -1 */
	long long started_ms;
	int not_ready;             /* enum sup_not_ready: why its start failed */
	int ready_killed;          /* ... and it was killed for that */
	size_t ready_got;          /* bytes of SUP_READY_BYTES read so far */
	long long ready_by_ms;     /* not ready by then: killed */
	uint64_t stall_taken;      /* slot_taken() at the last change */
	long stall_depth;          /* in-queue depth at the last look */
	long long stall_since_ms;  /* when it last took something */
	long long restart_at_ms;
	long long backoff_ms;
	long long history[SUP_INTENSITY + 1]; /* times of recent restarts */
	unsigned nhistory;
	long long kill_at_ms;      /* stopping: SIGKILL if still alive then */
	int reply_fd;              /* control connection (its fd) waiting for
	                            * this stage, or -1 */
	int swapping;              /* running a swapped-in program, not yet ready */
	int rolling_back;          /* next start brings back the program a failed
	                            * swap replaced (not counted in restarts) */
	char prev_exe[PATH_MAX];   /* what a failed swap rolls back to */
	char *prev_own[SUP_ARGS_MAX];
	int prev_nown;
	char reply_err[1024];      /* rolled back: said once the old one is ready */
};

struct sup {
	struct sup_config cfg;
	struct sup_child ch[SUP_STAGES];  /* downstream first: start order */
	struct stats_seg *stats;
	struct chan *flushq[2];           /* the filters' in-queues */
	struct udp udp;                   /* bound here, lent to ingest */
	int sigfd;
	int timerfd;
	int lockfd;
	int ctlfd;                        /* listening control socket */
	char ctlpath[PATH_MAX];
	struct ctl_conn *conn;            /* control.c's client connections */
	struct log_limit ctl_drops;       /* control clients dropped: logged */
	struct log_limit ctl_full;        /* connections refused: logged */
	long long stall_check_ms;         /* next look at the in-queues */
	int stopping;
	int status;                       /* exit status once stopping */
	int bad_host;                     /* -H/-p cannot be bound here, ever */
};

/* ipc.c: the instance's IPC objects. */
int sup_ipc_setup(struct sup *s);      /* 0, or -1 logged */
void sup_ipc_teardown(struct sup *s);
void sup_ipc_unlink_all(const struct sup_config *cfg, int stale);
/* The state file of an egress: DIR/STAGE.state with --state-dir, else
 * /dev/shm/telem.INSTANCE.STAGE.state. 0, or -1 if it does not fit. */
int sup_state_path(const struct sup_config *cfg, const char *stage, char *buf,
    size_t cap);
int sup_send_record(struct sup *s, const char *queue, uint8_t type, int timeout_ms);
/* Messages waiting in a queue of the instance, or -1. */
long sup_queue_depth(struct sup *s, const char *queue);

/* listen.c: the UDP sockets, bound once and lent to each ingest. */
int sup_listen_open(struct sup *s);    /* 0, or -1 logged */
void sup_listen_close(struct sup *s);

/* spawn.c: starting, signalling and reaping children. */
void sup_define_stages(struct sup *s);
/* 0, or -1 with errno and *what naming what it could not get (not
 * logged: the caller says what follows from it). */
int sup_spawn(struct sup *s, struct sup_child *c, const char **what);
void sup_reap(struct sup *s);
void sup_on_ready(struct sup *s, struct sup_child *c);
void sup_kill(struct sup_child *c, int sig);
struct sup_child *sup_find(struct sup *s, const char *name);
/* Replace the program and its own options (for swap). */
void sup_set_program(struct sup_child *c, const char *exe, const char *const *own);

/* loop.c: the event loop, Flush ticks and the ordered shutdown. */
int sup_run(struct sup *s);
/* A Flush into each filter's queue, waiting up to timeout_ms for room.
 * 0, or -1 if a queue stayed full (logged; the other one got it). */
int sup_flush(struct sup *s, int timeout_ms);
/* Try, without waiting, to send a Flush to each filter whose bit
 * (1 << its index in ch[]) is set in `left`; ~0u means every filter.
 * Returns the bits of the filters whose queue was full (0: all sent). */
unsigned sup_flush_try(struct sup *s, unsigned left);
void sup_begin_stop(struct sup *s, int status);
/* Stop c (SIGTERM, SIGKILL after the grace period); it starts again. */
void sup_restart(struct sup *s, struct sup_child *c);

#endif
