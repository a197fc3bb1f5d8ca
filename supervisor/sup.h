/* sup.h - the supervisor's parts and what they share. One prototype group
 * per file, in the order a run uses them (cf. Postfix master.h).
 *
 * The shape of the pipeline (stages, queues, Flush targets, start order)
 * comes from one struct pipeline (supervisor/pipeline.h: a file given with
 * -c, or the built-in pipeline); nothing here names a stage.
 *
 * Modules call downward only:
 *   main.c                      options, the pipeline, the run
 *   control.c                   the control protocol (telemctl)
 *   reload.c                    a new pipeline file against the running one
 *   loop.c                      the poll loop, Flush ticks, ordered stops
 *   spawn.c                     stages from the pipeline, fork/exec, reaping
 *   ipc.c, listen.c             queues, stats segment, lock, UDP sockets
 *   policy.c, pipeline*.c       states x events, backoff; the pipeline as data
 * Upcalls go through the few hooks control.h declares for that
 * (ctl_stage_ready, ctl_stage_exited), never by reaching into a module
 * above. */
#ifndef TELEM_SUP_H
#define TELEM_SUP_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "chan.h"
#include "stage.h"
#include "ingest/udp.h"
#include "log.h"
#include "stats.h"
#include "supervisor/pipeline.h"

/* Children at once: the file's stages, plus those a reload removes that
 * are still draining while the new ones start. One stats slot each. */
#define SUP_STAGES (2 * PIPELINE_STAGES_MAX)
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
	const char *file;           /* -c FILE, or NULL: the built-in pipeline */
	struct pipeline_opts popts; /* what shapes the built-in pipeline */
	int shaped;                 /* -H -p -l -e -g given (not with -c) */
	int set_t, set_m, set_f;    /* -t -m -f given: they override the file */
	uint32_t rcvbuf;            /* UDP receive buffer asked for, bytes */
	long flush_ms;              /* the pipeline's */
	struct chan_attr chan;      /* msgsize: the size in use */
	const char *instance;
	const char *control;        /* control socket path, or NULL for default */
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
 * else 0; updates c's stall_* fields. A look stall_ms or more after the
 * one before (the supervisor stopped, or not run) starts the clock. */
int sup_stall_check(struct sup_child *c, uint64_t taken, long depth,
    int waiting_out, long long now, long stall_ms);
/* Why a start failed (sup_child.not_ready). */
enum sup_not_ready { NR_NONE, NR_TIMEOUT, NR_GARBAGE, NR_EOF };

struct sup_child {
	char name[16];             /* "": a free entry */
	char in_queue[16];         /* its name when it has one, else "" */
	char out_queue[STAGE_OUT_MAX][16];
	int nout;
	int slot;                  /* its index in sup.ch and its stats slot */
	int flush;                 /* 1: Flush ticks go into its in-queue */
	int level;                 /* 0: sends nowhere; else 1 + its outs' max */
	int udp;                   /* 1: gets the sockets below */
	char udp_host[PIPELINE_HOST_MAX + 1], udp_port[6];
	struct udp sock;           /* bound here, lent to every process of it */
	struct chan *inq;          /* its in-queue, open for writing (flush) */
	int fresh;                 /* added by a reload: starts once its outs are up */
	int added;                 /* added by a reload and not ready yet: if it
	                            * fails before it is, it is taken back out
	                            * (reload.c sup_reload_undo) */
	int swap_wait;             /* swapped by a reload to send to an added
	                            * stage: its new program starts once its
	                            * outs are up (loop.c) */
	int swap_outs;             /* ... and that swap changed only its outs, */
	int swap_nout;             /* ... of which it had this many before */
	int retiring;              /* removed by a reload: draining, then gone */
	uint64_t retire_after;     /* ... once these writers (bit: slot) run
	                            * their new command line or are gone */
	int retire_sent;           /* ... and its Stop is on its way */
	int reloading;             /* swapped by a reload, not yet ready again */
	unsigned reload_gen;       /* gen when that swap began */
	int reload_failed;         /* ... and its new program was rolled back */
	int stop_hung;             /* did not stop in time at the shutdown: not
	                            * started again to read its queue */
	int stop_drained;          /* started again at the shutdown to read its
	                            * queue: not a second time */
	unsigned join;             /* out_queue bits a reload added: readers to
	                            * join at its next start (spawn.c) */
	uint64_t joined;           /* as a reader: what writers that joined it
	                            * had counted out before (spawn.c) */
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
	long long stall_look_ms;   /* when the last look was */
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
	struct pipeline pl;               /* the pipeline running */
	/* The entries of stages a reload removed (no outs) while they drain
	 * and have not got their Stop: a new stage taken back out puts one
	 * that its writers were to leave for it back into pl (reload.c
	 * sup_reload_undo). */
	struct pipeline removed;
	struct sup_child ch[SUP_STAGES];  /* by slot; name "" is free */
	/* ch indices of pl's stages: in file order (status lists them so),
	 * and in start order (downstream first; stops go in reverse). */
	int shown[PIPELINE_STAGES_MAX], start[PIPELINE_STAGES_MAX];
	int nstage;
	unsigned char slot_used[SUP_STAGES];  /* ever, in this run */
	uint64_t births;                      /* stages defined, in this run */
	struct stats_seg *stats;
	int sigfd;
	int timerfd;
	long long flush_next_ms;   /* CLOCK_MONOTONIC ms of the next tick */
	long long flushed_ms;      /* where the last Flush's interval ended:
	                            * a tick's time on the grid, or the time
	                            * of a `telemctl flush` (loop.c) */
	uint32_t tick_ms;          /* the interval the last tick's Flush
	                            * carries, for its retries */
	uint64_t tick_left;        /* flush stages (bit: slot) whose queue was
	                            * full at the last tick: retried (loop.c) */
	int lockfd;
	int statelockfd;                  /* --state-dir's lock (ipc.c) */
	int statedirfd;                   /* --state-dir itself, flock'ed */
	int ctlfd;                        /* listening control socket */
	char ctlpath[PATH_MAX];
	struct ctl_conn *conn;            /* control.c's client connections */
	struct log_limit ctl_drops;       /* control clients dropped: logged */
	struct log_limit ctl_full;        /* connections refused: logged */
	long long stall_check_ms;         /* next look at the in-queues */
	int stopping;
	int status;                       /* exit status once stopping */
	/* SIGHUP: set by main.c to the reload (a module above the loop). */
	void (*on_hup)(struct sup *s);
	int bad_host;                     /* -H/-p cannot be bound here, ever */
	char msg_why[PIPELINE_ERR_MAX];   /* how msg_bytes = auto chose, for
	                                   * the start log */
	char reload_undone[1024];         /* a line per new stage the last
	                                   * reload took back out, for its
	                                   * reply (control.c) */
};

/* ipc.c: the instance's IPC objects. */
/* The lock, stale objects removed, the message size settled (msg_bytes =
 * auto), every queue of s->pl and the stats segment created. 0, or -1
 * logged (one line). */
int sup_ipc_setup(struct sup *s);
void sup_ipc_teardown(struct sup *s);
void sup_ipc_unlink_all(struct sup *s, int stale);
/* Create the queue of one stage of a pipeline of nq queues (s->pl's at
 * the start, the new file's for a reload's new stage); 0 or -1 logged,
 * and a spent RLIMIT_MSGQUEUE told against what those nq queues need. */
int sup_queue_create(struct sup *s, const char *name, int nq);
/* Remove that queue again (a reload that could not add every new stage);
 * 0 or -1 logged. */
int sup_queue_unlink(struct sup *s, const char *name);
/* Open c's in-queue for writing into c->inq (a flush stage's); 0 or -1. */
int sup_open_inq(struct sup *s, struct sup_child *c);
/* Remove a stage's queue and (without --state-dir) its state file: a
 * stage a reload removed, once drained; stale: say so in the log. */
void sup_unlink_stage(struct sup *s, const char *name, int stale);
/* The state file of an egress: DIR/STAGE.state with --state-dir, else
 * /dev/shm/telem.INSTANCE.STAGE.state. 0, or -1 if it does not fit. */
int sup_state_path(const struct sup_config *cfg, const char *stage, char *buf,
    size_t cap);
/* Send one record of `type` into a queue: a Flush carries flush_ms (the
 * interval its rates divide by, docs/design.md §14), other records 0. */
int sup_send_record(struct sup *s, const char *queue, uint8_t type,
    uint32_t flush_ms, int timeout_ms);
/* Messages waiting in a queue of the instance, or -1. */
long sup_queue_depth(struct sup *s, const char *queue);

/* listen.c: the UDP sockets of a stage, bound once and lent to each of
 * its processes. */
int sup_listen_open(struct sup *s, struct sup_child *c);  /* 0, or -1 logged */
void sup_listen_close(struct sup_child *c);
/* A reload's new address for a stage: bound into *u while the stage's
 * own sockets stay open (0, or -1 logged), then put in their place. */
int sup_listen_bind(struct sup *s, struct udp *u, const char *host, const char *port);
void sup_listen_replace(struct sup_child *c, struct udp *u, const char *host,
    const char *port);

/* spawn.c: starting, signalling and reaping children. */
/* Fill a free entry of s->ch from stage i of p (slot, queues, program,
 * arguments, state file); returns it, or NULL when none is free or a path
 * does not fit (logged). Its stats slot is zeroed and named. */
struct sup_child *sup_define_stage(struct sup *s, const struct pipeline *p, int i);
/* Forget a child that is gone for good (a reload removed it). */
void sup_undefine(struct sup *s, struct sup_child *c);
/* s->shown and s->start from s->pl (children found by name). */
void sup_order(struct sup *s);
/* Define every stage of s->pl, bind the udp stages' sockets and open the
 * flush stages' queues: 0, or -1 logged. */
int sup_stages_setup(struct sup *s);
/* The same for one stage of a reload, given its sockets when bound
 * already (sup_listen_bind; taken over, closed on failure) or NULL; NULL,
 * logged, on failure. */
struct sup_child *sup_stage_add(struct sup *s, const struct pipeline *p, int i,
    struct udp *bound);
/* 0, or -1 with errno and *what naming what it could not get (not
 * logged: the caller says what follows from it). */
int sup_spawn(struct sup *s, struct sup_child *c, const char **what);
void sup_reap(struct sup *s);
void sup_on_ready(struct sup *s, struct sup_child *c);
/* SIGTERM or SIGKILL to the stage's group; SIGTERM with a SIGCONT first
 * when the stage is stopped. */
void sup_kill(struct sup_child *c, int sig);
/* The state letter of /proc/PID/stat ('R', 'S', 'T' stopped by a signal,
 * 't' held by a tracer, ...), 0 when the process is gone, -1 when /proc
 * cannot tell. */
int sup_proc_state(pid_t pid);
struct sup_child *sup_find(struct sup *s, const char *name);
/* Replace the program and its own options (for swap). */
void sup_set_program(struct sup_child *c, const char *exe, const char *const *own);

/* notify.c: the service manager (sd_notify); no-ops without one. */
void sup_notify_ready(const struct sup *s);
void sup_notify_stopping(const struct sup *s);
void sup_notify_reloaded(const struct sup *s);

/* loop.c: the event loop, Flush ticks and the ordered shutdown. */
int sup_run(struct sup *s);
/* Try, without waiting, to send a Flush carrying the interval `ms` to each
 * flush stage whose bit (1 << its slot) is set in `left`; ~0 means every
 * one. Returns the bits of those whose queue was full (0: all sent). */
uint64_t sup_flush_try(struct sup *s, uint64_t left, uint32_t ms);
/* The interval a Flush sent at now_ms covers: the milliseconds since the
 * last one's interval ended (s->flushed_ms), at least 1. */
uint32_t sup_flush_interval(const struct sup *s, long long now_ms);
/* A Flush for every flush stage covers up to now_ms: the next one's
 * interval starts there. Returns the interval this one covers. */
uint32_t sup_flush_mark(struct sup *s, long long now_ms);
void sup_begin_stop(struct sup *s, int status);
/* Stop c (SIGTERM, SIGKILL after the grace period); it starts again. */
void sup_restart(struct sup *s, struct sup_child *c);
/* (Re)arm the Flush timer with s->cfg.flush_ms, the first tick one
 * interval from now, and publish the tick schedule in the stats segment
 * (flush_next_ms); 0 or -1 logged. */
int sup_start_timer(struct sup *s);

/* reload.c: `telemctl reload` and SIGHUP. */
/* Read s->cfg.file again and apply the difference. Lines of what was done
 * ("started X", ...) or one "error: ..." line go to out (may be NULL).
 * Returns 0 or -1 (nothing changed). */
int sup_reload(struct sup *s, char *out, size_t cap);
/* A stage a reload added failed before it was ever ready (`why`: "exited
 * 100 ...", as control.c says it): it is taken back out, with the new
 * stages that were to send to it (none of them started), and the stages
 * a reload swapped to send to it do without it. A stage the reload
 * removed that such a stage was to leave for it is kept (back in s->pl,
 * no longer draining, with the removed stages it sends to), and the
 * writer sends to it again: their swap goes on with those outs, or is
 * called off when it did nothing else. Its queue, entry and place in
 * s->pl go; logged, and said in s->reload_undone. */
void sup_reload_undo(struct sup *s, struct sup_child *c, const char *why);

#endif
