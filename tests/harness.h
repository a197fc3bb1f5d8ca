/* harness.h - end-to-end test support: runs the real bin/telem-supervisor
 * on a unique instance and a free port, sends with real clients, reads its
 * stdout and stderr, and removes every IPC object of the instance after. */
#ifndef TELEM_HARNESS_H
#define TELEM_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

struct pl {
	char instance[32];
	int port;
	pid_t pid;
	char dir[128];          /* temp folder holding out, err */
	char out[160], err[160];
	const char *transport;  /* "mqueue" or "shm" */
	int status;             /* wait status once reaped, else -1 */
};

/* The transport the suite runs with: $TELEM_TRANSPORT, else "mqueue". */
const char *h_transport(void);
/* Path of a program in bin/ ($TELEM_BIN, else ./bin). */
const char *h_bin(const char *prog, char *buf, size_t cap);
/* A UDP port free on 127.0.0.1 now. */
int h_free_port(void);
/* n distinct TCP ports free on 127.0.0.1, each held by a socket of this
 * process bound to it, never listening, until the process (one test)
 * ends: a port asked for here or bound by the kernel for anyone else's
 * bind to port 0 or connect never comes up again meanwhile, so tests run
 * side by side cannot be given one another's ports. The socket has
 * SO_REUSEADDR and SO_REUSEPORT, so the server the test starts there
 * binds it too (carbon sets both, libmicrohttpd and Go SO_REUSEADDR), and
 * while none listens a connect is refused. */
void h_tcp_ports(int *port, int n);
/* Sleep ms milliseconds. */
void h_nap_ms(int ms);
/* 1 if something accepts a TCP connection on 127.0.0.1:port now. */
int h_tcp_accepts(int port);
/* Run a shell command; its stdout (at most cap - 1 bytes) into out.
 * Returns its exit status, or -1 (not started, or killed). */
int h_run(const char *cmd, char *out, size_t cap);

/* A mkdtemp or mkstemp template in /tmp for `what`:
 * /tmp/telem-test-[TAG-]what-XXXXXX, TAG being $TELEM_TEST_TAG
 * (tests/run.sh sets one per binary and checks that nothing with it is
 * left in /tmp or /dev/shm after the binary has run). */
void h_tmp_name(char *buf, size_t cap, const char *what);
/* The same in the folder `base` (/dev/shm for a tmpfs). */
void h_tmp_name_in(char *buf, size_t cap, const char *base, const char *what);
/* Remove a folder and everything in it. 0, or -1 with errno. */
int h_rm_dir(const char *dir);

/* Prepare p (instance, port, temp files); nothing started yet. */
void pl_init(struct pl *p);
/* Start the supervisor with "-i inst -p port -t transport" and the extra
 * arguments (NULL-terminated); returns once its log says the pipeline is
 * up (1), or when it exited or 10 s passed (0). */
int pl_start(struct pl *p, ...);
/* Like pl_start but does not wait for anything. */
void pl_spawn(struct pl *p, ...);
/* Start the supervisor with "-i inst -t transport -c conf" and the extra
 * arguments (no -p: the file says where to listen); as pl_start. */
int pl_start_conf(struct pl *p, const char *conf, ...);
/* Write a pipeline file `name` in p's folder (printf format; the caller
 * puts p->port where the file listens); returns its path (static buffer
 * per call site: copy it). */
const char *pl_conf(const struct pl *p, const char *name, char *path,
    size_t cap, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Send one datagram with `nc -u -q0` (the real client). */
void pl_nc(const struct pl *p, const char *payload);
/* Send datagrams from this process (for volume). */
void pl_sendto(const struct pl *p, const void *buf, size_t len);
/* Send `count` copies of a datagram, sleeping `gap_us` us between them. */
void pl_burst(const struct pl *p, const char *payload, unsigned count,
    unsigned gap_us);
/* Wait until the file holds `needle` `count` times; 1 if so, 0 on timeout. */
int h_wait_text(const char *path, const char *needle, int count, int timeout_ms);
/* The file's whole content (malloc'd, NUL-terminated; "" if missing). */
char *h_slurp(const char *path);
int h_count(const char *hay, const char *needle);
/* Signal the supervisor and wait up to timeout_ms for it; returns its wait
 * status, or -1 if it did not exit. */
int pl_signal_wait(struct pl *p, int sig, int timeout_ms);
int pl_wait(struct pl *p, int timeout_ms);
/* Run telemctl for this instance; the reply goes into out. Exit status. */
int pl_ctl(const struct pl *p, char *out, size_t cap, const char *cmd);
/* pl_ctl with the command made by printf. */
int pl_ctlf(const struct pl *p, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The seed chapter's session (a 10, a 55, b 1000, b 2000, b 3000 sent one
 * by one, each waited for in the report it makes, 10 s at most): 1 when
 * every report came, else 0. H_SEED_OUT is the whole stdout it gives. */
int pl_seed_session(struct pl *p);
extern const char H_SEED_OUT[];
/* The pid of a stage from `telemctl status`, or -1. */
pid_t pl_stage_pid(const struct pl *p, const char *stage);
/* A counter of a stage from `telemctl status` (e.g. "in"), or -1. */
long long pl_stat(const struct pl *p, const char *stage, const char *field);
/* Run telemctl for this instance in the background, its output (stdout
 * and stderr) into `path`; returns its pid for waitpid. */
pid_t pl_ctl_bg(const struct pl *p, const char *cmd, const char *path);

/* One `telemctl status` reply, parsed: every stage it lists, in its order
 * (the pipeline file's). The stages come from the reply itself; the
 * built-in pipeline's are, in that order, the ones below (tests of the
 * seed's pipeline use these indices). */
enum { H_INGEST, H_LOW, H_HIGH, H_CKMS, H_CMA, H_NSTAGES };
extern const char *const h_stage_name[H_NSTAGES];
#define H_STAGES_MAX 64
struct h_stage {
	long long pid, restarts, uptime_s, depth, in, out, filtered, bad, dropped,
	    dropped_dgrams, lost, inflight, sink_dropped;   /* dropped_dgrams: -1
	                                                      * when not shown */
	char name[16], state[16], in_queue[16], exe[256], args[512];
};
struct h_status {
	struct h_stage st[H_STAGES_MAX];
	int n;
	char raw[16384];
};
/* 1 if telemctl exited 0, the reply ended in `ok` and every stage's line
 * held every field (dropped_dgrams: ingest's only; -1 for the others); 0
 * otherwise (raw still holds the reply). */
int pl_status(const struct pl *p, struct h_status *s);
/* The stage of that name in a parsed status, or NULL. */
struct h_stage *h_find(struct h_status *s, const char *name);

/* Run `telemctl books` into out: 1 if it exited 0 and said `balanced`. */
int pl_books(const struct pl *p, char *out, size_t cap);

/* Count /dev/mqueue and /dev/shm entries named telem.<instance>.* */
int pl_objects_left(const struct pl *p);
/* Run bin/telem-supervisor with `args` (shell words) and p's stderr file:
 * 1 if it refused them as a bad command line should (exit 2, exactly one
 * stderr line, tagged "telem-supervisor: "), else 0 with the reason in why. */
int h_refuses(const struct pl *p, const char *args, char *why, size_t cap);
/* Processes running a telem-* program with "-i instance" among their
 * arguments, read from /proc (no procps needed). Aborts if /proc cannot
 * be read, so that 0 always means none. */
int h_procs_of(const char *instance);
/* Kill everything left and remove the instance's objects and files. */
void pl_cleanup(struct pl *p);

#endif
