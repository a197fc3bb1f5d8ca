/* pipeline.h - the pipeline as data: the pipeline file (INI, read with
 * libinih), its validation, the built-in pipeline expressed in the same
 * format, printing a pipeline back as a file, the difference between two
 * pipelines for a reload, and msg_bytes = auto against the user's
 * RLIMIT_MSGQUEUE budget. Nothing here creates an IPC object or starts a
 * process: the supervisor reads a struct pipeline and does that.
 *
 * The file format:
 *
 *   [pipeline]                    optional; these are the defaults
 *   transport = mqueue            mqueue or shm
 *   msg_bytes = auto              auto, or 1024 .. 1048576
 *   flush_ms = 1000               1 .. 86400000
 *
 *   [stage NAME]                  NAME: 1..15 of a-z 0-9 _ -
 *   exec = telem-filter           a bare name (one of telem's stages, found
 *                                 where the supervisor finds them: its
 *                                 ../libexec/telem, else its own folder)
 *                                 or an absolute path; taken whole
 *   args = --keep-below 100       see below
 *   out = ckms cma                stage names, blank-separated; each one
 *                                 named gets an in-queue named after it
 *   flush = yes                   yes or no: Flush is written to its in-queue
 *   udp = 127.0.0.1:1990          host:port, [v6-address]:port or name:port,
 *                                 port 0..65535; sockets bound and lent
 *   state = yes                   yes or no: the stage is given --state
 *                                 FILE; default yes when it has no out (an
 *                                 egress that feeds sinks says yes, the
 *                                 sinks no)
 *
 * Lines: `;` or `#` first on a line is a comment, and ` ;` (a blank then
 * `;`) starts a comment after a value. Leading blanks are ignored, so
 * indentation means nothing (there are no continuation lines). A line
 * holds at most PIPELINE_LINE_MAX characters (libinih's line buffer).
 *
 * args are split on blanks, with no shell: "double quotes" keep blanks
 * (and may make an empty argument, ""), and can be joined to unquoted text
 * (--name="a b" is one argument, --name=a b). Inside quotes a backslash
 * escapes exactly three characters: \" \\ and \; (the last because a blank
 * before `;` would otherwise start a comment). Outside quotes a backslash
 * is an ordinary character.
 *
 * Rules checked before anything exists: every key in a known section, no
 * key twice in one section, every stage has an exec, out names existing
 * stages other than itself (at most STAGE_OUT_MAX, common/stage.h), no
 * cycle, no two stages of one name, at most PIPELINE_STAGES_MAX stages, a
 * flush stage has an in-queue, every stage gets input (an in-queue or
 * udp), no two stages bind the same udp (as written, or one IP address
 * written two ways; port 0 aside), the names
 * `stats` and `lock` are reserved (the instance's other IPC objects carry
 * them).
 * Each violation is one line "FILE:LINE: what is wrong"; the first found
 * is the one reported.
 *
 * What the supervisor makes of it (supervisor/spawn.c, loop.c, ipc.c):
 * one queue /telem.INSTANCE.NAME per stage with an in-queue; Flush ticks
 * into the in-queues of the flush stages; udp sockets bound by the
 * supervisor and lent to the stage as --udp-fd; every stage with `state`
 * (by default those with no out, such as an egress) is given --state FILE
 * for its aggregates (a stage of one's own must accept the option, and may
 * ignore it); start
 * in `order`, stop the stages with udp and no in-queue first, then level
 * by level from upstream with a Flush (flush stages) and a Stop behind
 * what their queue holds. */
#ifndef TELEM_PIPELINE_H
#define TELEM_PIPELINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "chan.h"
#include "wire.h"

#define PIPELINE_STAGES_MAX 32
#define PIPELINE_NAME_MAX 15          /* characters of a stage name */
#define PIPELINE_ARGS_MAX 32          /* arguments of one stage */
#define PIPELINE_LINE_MAX 197         /* characters of a line, newline apart */
#define PIPELINE_HOST_MAX 253
#define PIPELINE_MSG_AUTO 0           /* msg_bytes = auto */
#define PIPELINE_MSG_PREFERRED 8192   /* what auto picks when it fits */
#define PIPELINE_MSG_MIN WIRE_MSG_MIN
#define PIPELINE_MSG_MAX 1048576
#define PIPELINE_FLUSH_MS_DEFAULT 1000
#define PIPELINE_FLUSH_MS_MAX 86400000
#define PIPELINE_ERR_MAX 512          /* room for one error line */

struct pipeline_stage {
	char name[PIPELINE_NAME_MAX + 1];
	char *exec;                 /* as written (owned) */
	char **argv;                /* nargs strings then NULL (owned) */
	int nargs;
	int out[PIPELINE_STAGES_MAX];   /* indices into pipeline.stage, as listed */
	int nout;
	int flush;                  /* 1: Flush goes into its in-queue */
	int state;                  /* 1: given --state FILE (its aggregates);
	                             * `state = yes|no`, by default yes for a
	                             * stage with no out */
	int in_queue;               /* 1: some stage sends to it; the queue is
	                             * named after the stage */
	int udp;                    /* 1: udp_host/udp_port are set */
	char udp_host[PIPELINE_HOST_MAX + 1];   /* without brackets */
	char udp_port[6];
	int level;                  /* 0: sends nowhere; else 1 + its outs' max */
	struct {                    /* where each key was (0: absent) */
		int section, exec, args, out, flush, udp, state;
	} line;
};

struct pipeline {
	char *file;                 /* the name errors use (owned) */
	enum chan_kind transport;
	size_t msg_bytes;           /* PIPELINE_MSG_AUTO or 1024..1048576 */
	long flush_ms;
	struct {
		int section, transport, msg_bytes, flush_ms;
	} line;
	int nstage;
	struct pipeline_stage stage[PIPELINE_STAGES_MAX];   /* file order */
	/* Start order, downstream first: by level (sinks first), ties in file
	 * order. Stop in the reverse order. */
	int order[PIPELINE_STAGES_MAX];
};

/* pipeline.c: reading and validating. */

/* Read and check the pipeline file `path`. Returns 0 with *p filled (free
 * it with pipeline_free), or -1 with one line "PATH:LINE: what is wrong"
 * (or "PATH: strerror" when it cannot be opened, "PATH: not a regular
 * file" for a FIFO or a device, which are not read) in err, *p left empty
 * (pipeline_free on it is harmless). Nothing else changes. */
int pipeline_load(struct pipeline *p, const char *path, char *err, size_t errcap);
/* The same from text in memory; `name` stands for the file in errors. */
int pipeline_parse_string(struct pipeline *p, const char *name,
    const char *text, char *err, size_t errcap);
/* Free what *p owns and empty it. */
void pipeline_free(struct pipeline *p);
/* The index of the stage called name, or -1. */
int pipeline_find(const struct pipeline *p, const char *name);
/* Take stage i out of p: it goes, and so does every out naming it; the
 * levels and the start order are made again. Whether a stage has an
 * in-queue is left as it was (its queue exists). */
void pipeline_drop(struct pipeline *p, int i);
/* Append the entry *st to p, which takes over what it owns (*st is left
 * empty), with no outs yet; the levels and the start order are made
 * again. Its index, or -1 when p is full (*st left as it was). */
int pipeline_put(struct pipeline *p, struct pipeline_stage *st);
/* Stage `from` of p sends to stage `to` too (which has an in-queue then);
 * the levels and the start order are made again. 0, or -1 with p as it
 * was when it sends to STAGE_OUT_MAX stages already (common/stage.h) or
 * that would close a cycle. */
int pipeline_link(struct pipeline *p, int from, int to);
/* How many in-queues (= queues) the pipeline has. */
int pipeline_nqueues(const struct pipeline *p);
/* 1 if host is what a udp value may hold before its port: a dotted IPv4
 * address, an IPv6 address (no scope id) or a host name; else 0. */
int pipeline_host_ok(const char *host);
/* The program a stage runs: exec itself when absolute, else bindir/exec.
 * Returns 0, or -1 if it does not fit in cap. */
int pipeline_exec_path(const struct pipeline_stage *st, const char *bindir,
    char *buf, size_t cap);
/* 0 if path is a program a stage can run: a regular file we may execute
 * (a folder passes access(X_OK), but exec fails on it, which the stage
 * reports as a configuration error). Else -1 with errno set (EISDIR for a
 * folder, EACCES for anything else that is not a regular file). */
int pipeline_exec_ok(const char *path);
/* Check that every stage's program exists and is executable
 * (pipeline_exec_ok; bare names in bindir). Returns 0, or -1 with "FILE:LINE: exec NAME: strerror" in err. */
int pipeline_check_execs(const struct pipeline *p, const char *bindir,
    char *err, size_t errcap);
/* Split an args value as the file does. Returns the count (argv[count] =
 * NULL; free each string and argv), or -1 with why set to a static text;
 * *argv is then NULL. */
int pipeline_split_args(const char *s, char ***argv, const char **why);
/* The option of the supervisor's own (instance, transport, in, out,
 * slot, ready-fd, udp-fd) that the stage argument w would give again, or
 * NULL: --NAME, --NAME=V or an abbreviation of NAME, and -i or -t (also
 * after -v -q -h -V in one word). */
const char *pipeline_arg_reserved(const char *w);

/* pipeline_seed.c: the built-in pipeline, printing, comparing. */

/* What the supervisor's options give the built-in pipeline. */
struct pipeline_opts {
	const char *host;           /* -H, 127.0.0.1 */
	const char *port;           /* -p, 1990 */
	uint32_t limit;             /* -l, 100 */
	double eps;                 /* -e, 0.01 */
	long flush_ms;              /* -f, 1000 */
	enum chan_kind transport;   /* -t, mqueue */
	size_t msg_bytes;           /* -m, or PIPELINE_MSG_AUTO */
	const char *graphite;       /* -g host:port, or NULL */
	const char *graphite_prefix;  /* or NULL */
	const char *graphite_buffer;  /* or NULL */
	const char *max_names;      /* --max-names of both egresses, or NULL */
	const char *prom;           /* --prom host:port, or NULL */
};
/* The seed's defaults, as above. */
void pipeline_opts_default(struct pipeline_opts *o);
/* The built-in pipeline for o as pipeline-file text (malloc'ed, the
 * caller frees it), or NULL with errno set (ENOMEM). */
char *pipeline_builtin_text(const struct pipeline_opts *o);
/* The built-in pipeline for o, parsed from that text by the same parser
 * (named "built-in pipeline" in errors: an option that makes a bad value,
 * such as -H "a b", is refused there). 0 or -1 as pipeline_load. */
int pipeline_builtin(struct pipeline *p, const struct pipeline_opts *o,
    char *err, size_t errcap);
/* Print p as a valid, commented pipeline file that parses back to an
 * equal pipeline. Returns 0, or -1 if a write failed (errno set). */
int pipeline_print(FILE *f, const struct pipeline *p);
/* 1 if a and b describe the same pipeline (line numbers and the file name
 * aside), else 0. */
int pipeline_equal(const struct pipeline *a, const struct pipeline *b);

/* What changed for a stage between two pipelines. */
enum {
	PIPELINE_CH_EXEC = 1,
	PIPELINE_CH_ARGS = 2,
	PIPELINE_CH_OUT = 4,        /* the set of stages it sends to */
	PIPELINE_CH_IN = 8,         /* gained or lost its in-queue */
	PIPELINE_CH_UDP = 16,
	PIPELINE_CH_FLUSH = 32,     /* the supervisor's business only */
};
/* Changes that change the stage's command line: it must be swapped. */
#define PIPELINE_CH_SWAP (PIPELINE_CH_EXEC | PIPELINE_CH_ARGS | \
    PIPELINE_CH_OUT | PIPELINE_CH_IN | PIPELINE_CH_UDP)
/* Changes of the [pipeline] section. */
enum {
	PIPELINE_CH_TRANSPORT = 1,
	PIPELINE_CH_MSG_BYTES = 2,
	PIPELINE_CH_FLUSH_MS = 4,
};
struct pipeline_diff {
	/* Indices in the new pipeline, in its start order (downstream first). */
	int added[PIPELINE_STAGES_MAX], nadded;
	/* Indices in the old pipeline, in its stop order (upstream first). */
	int removed[PIPELINE_STAGES_MAX], nremoved;
	/* Indices in the new pipeline, in its start order: a PIPELINE_CH_SWAP
	 * change (changed) or none of them (unchanged: leave it running; its
	 * flush may still have changed, see what[]). */
	int changed[PIPELINE_STAGES_MAX], nchanged;
	int unchanged[PIPELINE_STAGES_MAX], nunchanged;
	unsigned what[PIPELINE_STAGES_MAX];    /* PIPELINE_CH_* by new index */
	int old_of[PIPELINE_STAGES_MAX];       /* old index by new index, or -1 */
	unsigned pipeline;                     /* PIPELINE_CH_TRANSPORT ... */
};
/* Compare two valid pipelines by stage name (a renamed stage is one
 * removed and one added). Fills *d; changes nothing else. */
void pipeline_diff(const struct pipeline *old, const struct pipeline *new,
    struct pipeline_diff *d);

/* pipeline_mq.c: msg_bytes = auto. */

/* What Linux charges against RLIMIT_MSGQUEUE for one queue of maxmsg
 * messages of msgsize bytes (see pipeline_mq.c for the kernel's rule). */
uint64_t pipeline_mq_charge(long maxmsg, long msgsize);
/* The message size for msg_bytes = auto: PIPELINE_MSG_PREFERRED if nqueues
 * queues of maxmsg messages of that size fit in limit - in_use, else the
 * largest size >= PIPELINE_MSG_MIN that fits. Writes one line saying which
 * and why into why. Returns the size, or 0 when even PIPELINE_MSG_MIN does
 * not fit, why then giving the numbers (needed, limit, in use) and
 * suggesting the shm transport. limit may be RLIM_INFINITY. */
size_t pipeline_auto_msg_bytes(int nqueues, long maxmsg, uint64_t limit,
    uint64_t in_use, char *why, size_t whycap);
/* The message size to create p's queues with: p->msg_bytes when the file
 * gives one; for auto, PIPELINE_MSG_PREFERRED on shm, and on mqueue what
 * pipeline_auto_msg_bytes gives for p's queues, each of the system's
 * msg_max messages (/proc/sys/fs/mqueue/msg_max), within this process's
 * RLIMIT_MSGQUEUE less what this user's queues in mqdir use (call it once
 * the instance's own stale queues are gone). Returns the size with one
 * line for the start log in why, or 0 with why giving the numbers. */
size_t pipeline_msg_bytes(const struct pipeline *p, const char *mqdir,
    char *why, size_t whycap);
/* What the user `uid` already uses of the budget, as far as can be seen:
 * the sum of pipeline_mq_charge over the queues in dir (the mqueue mount,
 * normally /dev/mqueue) owned by uid whose names start with prefix (NULL:
 * all), with each queue's mq_maxmsg and mq_msgsize from mq_getattr. Not
 * seen: queues unlinked but still open, queues of the user in another IPC
 * namespace or mount, and queues it cannot open (counted in *unknown).
 * Returns 0 with *bytes and *nqueues set, or -1 with errno set (dir cannot
 * be read). dir is read as it is: an empty folder where mqueue is not
 * mounted reads as nothing in use. */
int pipeline_mq_usage(const char *dir, uid_t uid, const char *prefix,
    uint64_t *bytes, int *nqueues, int *unknown);

#endif
