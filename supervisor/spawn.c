/* spawn.c - the children: their command lines, fork/exec with a readiness
 * pipe and a parent-death signal, and reaping in a loop. Each stage runs in
 * a process group of its own, and every signal goes to the whole group, so
 * what a stage forked (a swapped-in script's children) goes with it. Each
 * spawn bumps the child's generation, so news of an old process is never
 * taken for the current one. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "supervisor/control.h"
#include "supervisor/sup.h"

static void
set_own(struct sup_child *c, const char *const *args)
{
	for (int i = 0; i < c->nown; i++)
		free(c->own[i]);
	c->nown = 0;
	for (; args != NULL && *args != NULL && c->nown < SUP_ARGS_MAX; args++)
		if ((c->own[c->nown++] = strdup(*args)) == NULL)
			fatal(EXIT_TEMPORARY, "strdup");
}

/* A stage's entry from the pipeline. Every stage that sends nowhere (a
 * sink: an egress) is given --state FILE: its aggregates live there across
 * its restarts (README "What a fault costs"). */
struct sup_child *
sup_define_stage(struct sup *s, const struct pipeline *p, int i)
{
	const struct pipeline_stage *ps = &p->stage[i];
	/* A slot never used in this run first: other slots' books name the
	 * slots they took from (common/stats.h), so a slot is taken again only
	 * when every one has been used. */
	struct sup_child *c = NULL;
	for (int pass = 0; pass < 2 && c == NULL; pass++)
		for (int k = 0; k < SUP_STAGES && c == NULL; k++)
			if (s->ch[k].name[0] == '\0' && s->ch[k].pid <= 0 &&
			    (pass == 1 || !s->slot_used[k]))
				c = &s->ch[k];
	if (c == NULL) {
		log_warnx("stage %s: no free stats slot (%d in use)", ps->name,
		    SUP_STAGES);
		return NULL;
	}
	int slot = (int)(c - s->ch);
	s->slot_used[slot] = 1;
	memset(c, 0, sizeof(*c));
	c->slot = slot;
	c->ready_fd = -1;
	c->reply_fd = -1;
	c->state = S_DOWN;
	snprintf(c->name, sizeof(c->name), "%s", ps->name);
	if (ps->in_queue)
		snprintf(c->in_queue, sizeof(c->in_queue), "%s", ps->name);
	for (int k = 0; k < ps->nout && k < STAGE_OUT_MAX; k++)
		snprintf(c->out_queue[c->nout++], sizeof(c->out_queue[0]), "%s",
		    p->stage[ps->out[k]].name);
	c->flush = ps->flush;
	c->level = ps->level;
	if (ps->udp) {
		c->udp = 1;
		snprintf(c->udp_host, sizeof(c->udp_host), "%s", ps->udp_host);
		snprintf(c->udp_port, sizeof(c->udp_port), "%s", ps->udp_port);
	}
	if (pipeline_exec_path(ps, s->cfg.bindir, c->exe, sizeof(c->exe)) == -1) {
		log_warnx("stage %s: path of %s is too long", ps->name, ps->exec);
		c->name[0] = '\0';
		return NULL;
	}
	if (ps->state && sup_state_path(&s->cfg, c->name, c->state_file,
	    sizeof(c->state_file)) == -1) {
		log_warnx("stage %s: path of its state file is too long", ps->name);
		c->name[0] = '\0';
		return NULL;
	}
	set_own(c, (const char *const *)ps->argv);
	struct stats_slot *st = &s->stats->slot[slot];
	/* A slot used before in this run: what other slots booked against it
	 * is moved out of its way (a reader's taken from it into its plain
	 * `in`, so its books stay whole; a writer's sent to it dropped). */
	for (int k = 0; k < STATS_SLOTS; k++) {
		struct stats_slot *o = &s->stats->slot[k];
		uint64_t t = atomic_exchange(&o->taken[slot], 0);
		if (t > 0)
			stats_add(&o->in, t);
		atomic_store(&o->sent[slot], 0);
	}
	memset(st, 0, sizeof(*st));
	st->born = ++s->births;
	snprintf(st->stage, STATS_NAME_MAX, "%s", c->name);
	snprintf(st->in_queue, STATS_NAME_MAX, "%s", c->in_queue);
	return c;
}

void
sup_undefine(struct sup *s, struct sup_child *c)
{
	for (int i = 0; i < c->nown; i++)
		free(c->own[i]);
	for (int i = 0; i < c->prev_nown; i++)
		free(c->prev_own[i]);
	c->nown = c->prev_nown = 0;
	chan_close(c->inq);
	c->inq = NULL;
	sup_listen_close(c);
	c->name[0] = '\0';
	/* The slot keeps its counters for status until it is taken again;
	 * only the name goes, so that nothing lists it. */
	s->stats->slot[c->slot].stage[0] = '\0';
	s->stats->slot[c->slot].in_queue[0] = '\0';
}

struct sup_child *
sup_stage_add(struct sup *s, const struct pipeline *p, int i, struct udp *bound)
{
	struct sup_child *c = sup_define_stage(s, p, i);
	if (c == NULL) {
		if (bound != NULL)
			udp_close(bound);
		return NULL;
	}
	if (c->udp && bound != NULL)
		sup_listen_replace(c, bound, c->udp_host, c->udp_port);
	if ((c->udp && bound == NULL && sup_listen_open(s, c) == -1) ||
	    (c->flush && sup_open_inq(s, c) == -1)) {
		sup_undefine(s, c);
		return NULL;
	}
	return c;
}

int
sup_stages_setup(struct sup *s)
{
	for (int i = 0; i < s->pl.nstage; i++)
		if (sup_stage_add(s, &s->pl, i, NULL) == NULL)
			return -1;
	sup_order(s);
	return 0;
}

void
sup_order(struct sup *s)
{
	s->nstage = s->pl.nstage;
	for (int i = 0; i < s->pl.nstage; i++) {
		struct sup_child *a = sup_find(s, s->pl.stage[i].name);
		struct sup_child *b = sup_find(s, s->pl.stage[s->pl.order[i]].name);
		s->shown[i] = a != NULL ? a->slot : 0;
		s->start[i] = b != NULL ? b->slot : 0;
	}
}

void
sup_set_program(struct sup_child *c, const char *exe, const char *const *own)
{
	snprintf(c->exe, sizeof(c->exe), "%s", exe);
	set_own(c, own);
}

/* A stage of the pipeline running (one a reload removed and that still
 * drains is not found: its name may be taken by a new one). */
struct sup_child *
sup_find(struct sup *s, const char *name)
{
	for (int i = 0; i < SUP_STAGES; i++)
		if (s->ch[i].name[0] != '\0' && !s->ch[i].retiring &&
		    strcmp(s->ch[i].name, name) == 0)
			return &s->ch[i];
	return NULL;
}

/* The UDP sockets go to fds 4, 5, ... of a udp stage (3 is readiness). */
#define UDP_FD0 4
static const char *const udp_fd_arg[UDP_MAX_SOCKS] = {
	"4", "5", "6", "7", "8", "9", "10", "11",
};

/* In the child, before exec: a descriptor it could not place. The
 * supervisor is one thread, so logging after fork is safe here. */
static _Noreturn void
child_fail(const struct sup_child *c, const char *what, int fd)
{
	if (errno == EINVAL)  /* F_DUPFD: the floor is past RLIMIT_NOFILE */
		errno = EMFILE;
	log_warn("stage %s: copy of the %s to fd %d", c->name, what, fd);
	_exit(EXIT_TEMPORARY);
}

/* In the child, between fork and exec: only async-signal-safe calls, and
 * the log line of child_fail (see there). */
static _Noreturn void
exec_child(struct sup *s, struct sup_child *c, int ready_wr, pid_t parent)
{
	int udp_hi[UDP_MAX_SOCKS];
	size_t nudp = c->udp ? c->sock.n : 0;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Its own process group: a terminal's ^C reaches the supervisor only,
	 * which then stops the stages in order, and sup_kill reaches whatever
	 * the stage forks. Done here and in the parent, whichever runs first. */
	if (setpgid(0, 0) == -1)
		_exit(EXIT_TEMPORARY);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() != parent)
		_exit(EXIT_TEMPORARY);
	/* All the supervisor's other descriptors are close-on-exec and the
	 * stage never sees them; closed now, they leave room to place what
	 * it gets under a tight RLIMIT_NOFILE. (The instance's lock is a
	 * lock of the supervisor's process: a child closing a copy of its
	 * descriptor does not release it.) */
	unsigned keep[UDP_MAX_SOCKS + 1];
	size_t nkeep = 0;
	keep[nkeep++] = (unsigned)ready_wr;
	for (size_t i = 0; i < nudp; i++)
		keep[nkeep++] = (unsigned)c->sock.s[i].fd;
	for (size_t i = 1; i < nkeep; i++)  /* a handful: insertion sort */
		for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			unsigned t = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	unsigned lo = 3;
	for (size_t i = 0; i < nkeep; lo = keep[i++] + 1)
		if (keep[i] > lo)
			(void)close_range(lo, keep[i] - 1, 0);
	(void)close_range(lo, ~0U, 0);  /* fails only on old kernels: harmless */

	/* Out of the way first, above every fd a dup2 below writes to (3 for
	 * readiness, then the sockets), so that none lands on one still to
	 * be moved. F_DUPFD takes the lowest free fd from there, so this
	 * needs no more than RLIMIT_NOFILE allows (a fixed floor such as 64
	 * fails with EINVAL under `ulimit -n 64`). */
	int base = UDP_FD0 + (int)nudp, ready_hi;
	if ((ready_hi = fcntl(ready_wr, F_DUPFD_CLOEXEC, base)) == -1)
		child_fail(c, "readiness pipe", base);
	for (size_t i = 0; i < nudp; i++)
		if ((udp_hi[i] = fcntl(c->sock.s[i].fd, F_DUPFD_CLOEXEC, base)) == -1)
			child_fail(c, "UDP socket", base);
	if (dup2(ready_hi, 3) == -1)
		child_fail(c, "readiness pipe", 3);
	for (size_t i = 0; i < nudp; i++)
		if (dup2(udp_hi[i], UDP_FD0 + (int)i) == -1)
			child_fail(c, "UDP socket", UDP_FD0 + (int)i);

	char slot[8];
	char *argv[SUP_ARGS_MAX + 24 + 2 * STAGE_OUT_MAX + 2 * UDP_MAX_SOCKS];
	int n = 0;
	snprintf(slot, sizeof(slot), "%d", c->slot);
	argv[n++] = c->exe;
	argv[n++] = "-i";
	argv[n++] = (char *)s->cfg.instance;
	argv[n++] = "-n";
	argv[n++] = c->name;
	argv[n++] = "-t";
	argv[n++] = (char *)chan_kind_name(s->cfg.chan.kind);
	/* The supervisor's -v or -q holds for its stages too. */
	if (log_get_level() == LOG_LEVEL_DEBUG)
		argv[n++] = "-v";
	else if (log_get_level() == LOG_LEVEL_WARN)
		argv[n++] = "-q";
	if (c->in_queue[0] != '\0') {
		argv[n++] = "--in";
		argv[n++] = c->in_queue;
	}
	for (int i = 0; i < c->nout; i++) {
		argv[n++] = "--out";
		argv[n++] = c->out_queue[i];
	}
	argv[n++] = "--slot";
	argv[n++] = slot;
	argv[n++] = "--ready-fd";
	argv[n++] = "3";
	for (size_t i = 0; i < nudp; i++) {
		argv[n++] = "--udp-fd";
		argv[n++] = (char *)udp_fd_arg[i];
	}
	if (c->state_file[0] != '\0') {
		argv[n++] = "--state";
		argv[n++] = c->state_file;
	}
	for (int i = 0; i < c->nown; i++)
		argv[n++] = c->own[i];
	argv[n] = NULL;
	execv(c->exe, argv);
	log_warn("exec %s", c->exe);
	_exit(errno == ENOENT || errno == EACCES ? EXIT_PERMANENT : EXIT_TEMPORARY);
}

/* A writer that a reload gave a new reader (c->join: bits of out_queue)
 * starts counting for it from now: the reader books the writer's `out`
 * so far as taken, so that the first message it gets shows no gap (which
 * it would book lost), and takes the same amount off its own `in`
 * (common/stats.h stats_in: in + every taken[W]; the word wraps), so that
 * its books hold only what it did take; `joined` keeps the sum for the
 * queue's equation (control.c do_books). The writer is dead here. */
static void
join_readers(struct sup *s, struct sup_child *c)
{
	uint64_t out = stats_get(&s->stats->slot[c->slot].out);
	/* An egress's out-queues carry no booked records (common/stats.h). */
	if (stats_get(&s->stats->slot[c->slot].unbooked_out))
		c->join = 0;
	for (int q = 0; q < c->nout; q++) {
		if (!(c->join & (1u << q)))
			continue;
		int r = stats_reader_of(s->stats, c->out_queue[q]);
		if (r < 0)
			continue;
		struct stats_slot *rs = &s->stats->slot[r];
		uint64_t had = stats_get(&rs->taken[c->slot]);
		if (out > had) {
			atomic_store(&rs->taken[c->slot], out);
			atomic_fetch_sub(&rs->in, out - had);
			s->ch[r].joined += out - had;
		}
		atomic_store(&s->stats->slot[c->slot].sent[r], out);
	}
	c->join = 0;
}

int
sup_spawn(struct sup *s, struct sup_child *c, const char **what)
{
	int p[2];
	if (c->join != 0)
		join_readers(s, c);
	if (pipe2(p, O_CLOEXEC) == -1) {
		*what = "pipe for its readiness";
		return -1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == -1) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		errno = e;
		*what = "fork";
		return -1;
	}
	if (pid == 0)
		exec_child(s, c, p[1], parent);
	close(p[1]);
	/* EACCES: the child has exec'd, after its own setpgid; ESRCH: it is
	 * gone already. Either way there is nothing to do here. */
	if (setpgid(pid, pid) == -1 && errno != EACCES && errno != ESRCH)
		log_warn("setpgid for stage %s (pid %d)", c->name, (int)pid);
	/* Every start after the first counts, whatever caused it: a crash,
	 * `restart` or `swap`; the start that rolls a failed swap back is
	 * part of that swap, which counted once already. */
	if (c->gen > 0 && !c->rolling_back)
		stats_add(&s->stats->slot[c->slot].restarts, 1);
	c->rolling_back = 0;
	log_info("stage %s started (pid %d): %s", c->name, (int)pid, c->exe);
	c->pid = pid;
	c->gen++;
	c->ready_fd = p[0];
	c->started_ms = clock_ms();
	c->ready_by_ms = c->started_ms + SUP_READY_MS;
	c->not_ready = NR_NONE;
	c->ready_killed = 0;
	c->ready_got = 0;
	c->stall_since_ms = 0;
	c->state = (enum sup_state)sup_next(c->state, E_SPAWNED);
	atomic_store(&s->stats->slot[c->slot].pid, pid);
	return 0;
}

/* A failed start: the stage (its group) is killed at once, and its exit
 * is then handled like any death before readiness. */
static void
fail_start(struct sup_child *c, enum sup_not_ready why, const char *what)
{
	log_warnx("stage %s (pid %d) %s: killed", c->name, (int)c->pid, what);
	c->not_ready = why;
	c->ready_killed = 1;
	sup_kill(c, SIGKILL);
}

void
sup_on_ready(struct sup *s, struct sup_child *c)
{
	static const char want[] = SUP_READY_BYTES;
	char b[16];
	ssize_t n = read(c->ready_fd, b, sizeof(b));
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n == -1)
		log_warn("read ready fd of stage %s", c->name);
	if (n > 0 && c->state == S_STARTING) {
		/* Exactly SUP_READY_BYTES, which may come in pieces. */
		size_t k = (size_t)n;
		if (c->ready_got + k > sizeof(want) - 1 ||
		    memcmp(b, want + c->ready_got, k) != 0) {
			char shown[64];
			size_t m = 0;
			for (size_t i = 0; i < k && m + 5 < sizeof(shown); i++)
				m += (size_t)snprintf(shown + m, sizeof(shown) - m,
				    (unsigned char)b[i] >= 0x20 && (unsigned char)b[i] < 0x7f &&
				    b[i] != '\\' ? "%c" : "\\x%02x", (unsigned char)b[i]);
			char what[128];
			snprintf(what, sizeof(what), "wrote \"%s\" on its ready fd, not "
			    "\"R\\n\"", shown);
			fail_start(c, NR_GARBAGE, what);
		} else if ((c->ready_got += k) < sizeof(want) - 1) {
			return;   /* the rest is still to come */
		} else {
			log_info("stage %s (pid %d) ready", c->name, (int)c->pid);
			if (c->reloading && c->gen > c->reload_gen)
				c->reloading = 0;
			c->added = 0;
			c->state = (enum sup_state)sup_next(c->state, E_READY);
			ctl_stage_ready(s, c);
		}
	} else if (c->state == S_STARTING && !c->ready_killed) {
		/* Closed before "R\n". A stage that exits closes it too, just
		 * before its exit is reported: it gets a moment to be reaped as
		 * what it is (an exit 100, say) before it is killed for this. */
		c->not_ready = NR_EOF;
		long long soon = clock_ms() + SUP_READY_EOF_MS;
		if (soon < c->ready_by_ms)
			c->ready_by_ms = soon;
	}
	close(c->ready_fd);
	c->ready_fd = -1;
}

int
sup_proc_state(pid_t pid)
{
	char path[32], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return errno == ENOENT ? 0 : -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* "pid (comm) S ...": comm may hold ')' itself, so the last one. */
	const char *p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' && p[2] != '\0' ? (unsigned char)p[2] : -1;
}

void
sup_kill(struct sup_child *c, int sig)
{
	if (c->pid <= 0)
		return;
	/* A stage stopped by a signal (SIGSTOP; /proc says 'T') would hold
	 * SIGTERM pending for ever: SIGCONT first lets it run to act on it.
	 * Any other stage gets none. A SIGCONT discards a pending SIGSTOP,
	 * and a stage already exiting (told to stop before, or leaving on
	 * its own) may have one pending from LeakSanitizer's exit scan in
	 * `make check`: its tracer attaches with a SIGSTOP and waits for the
	 * stop for ever, while the stage spins on a CPU until a SIGKILL -- and
	 * none comes if the supervisor is gone by then. Unknown (no /proc):
	 * SIGCONT, so that a stopped stage is never left stopped. */
	int state = sig == SIGTERM ? sup_proc_state(c->pid) : 0;
	if ((state == 'T' || state == -1) && kill(-c->pid, SIGCONT) == -1 &&
	    errno != ESRCH)
		log_warn("kill %s (pid %d) SIGCONT", c->name, (int)c->pid);
	/* The group first; the pid alone if the group is not there (the
	 * child died before either setpgid). */
	if (kill(-c->pid, sig) == -1 && (errno != ESRCH ||
	    (kill(c->pid, sig) == -1 && errno != ESRCH)))
		log_warn("kill %s (pid %d)", c->name, (int)c->pid);
}

static void
log_exit(const struct sup_child *c, int wst)
{
	if (WIFSIGNALED(wst))
		log_warnx("stage %s (pid %d) killed by signal %d (%s)", c->name,
		    (int)c->pid, WTERMSIG(wst), strsignal(WTERMSIG(wst)));
	else if (WEXITSTATUS(wst) == 0)  /* a notice: hidden by -q */
		log_info("stage %s (pid %d) exited 0", c->name, (int)c->pid);
	else
		log_warnx("stage %s (pid %d) exited %d", c->name, (int)c->pid,
		    WEXITSTATUS(wst));
}

static void
on_exit_of(struct sup *s, struct sup_child *c, int wst)
{
	struct stats_slot *st = &s->stats->slot[c->slot];
	long long now = clock_ms(), delay;

	log_exit(c, wst);
	/* Whatever the stage left in its group (a script's children) goes
	 * with it. Its pid names the group until the last member is gone, so
	 * this reaches no one else. */
	if (kill(-c->pid, SIGKILL) == 0)
		log_warnx("stage %s (pid %d) left processes in its group: killed",
		    c->name, (int)c->pid);
	else if (errno != ESRCH)
		log_warn("kill group of stage %s (pid %d)", c->name, (int)c->pid);
	if (c->ready_fd != -1) {
		close(c->ready_fd);
		c->ready_fd = -1;
	}
	c->pid = 0;
	atomic_store(&st->pid, 0);
	/* What the stage had taken and not passed on went with it: set lost
	 * from the other counters (common/stats.h), which stays right however
	 * far a stage got, and whether or not this was done before. And
	 * nothing more of what it counted out is on its way: its readers may
	 * book what did not reach them as lost as soon as their queue is
	 * empty, restarted or not. */
	int64_t held = stats_settle_dead(st);
	if (held > 0)
		log_warnx("stage %s lost %lld records it held", c->name, (long long)held);
	else if (held < 0)
		log_warnx("stage %s: books off by %lld (lost shrank)", c->name,
		    (long long)-held);
	/* Carbon lines it held unsent went with it too (none after a clean
	 * stop, whose drain counts them itself). */
	uint64_t lines = stats_settle_held(st);
	if (lines > 0)
		log_warnx("stage %s held %llu carbon lines unsent: counted in "
		    "sink_dropped", c->name, (unsigned long long)lines);
	atomic_store(&st->save_failing, 0);
	uint64_t out = stats_get(&st->out);
	for (int q = 0; q < c->nout && !stats_get(&st->unbooked_out); q++) {
		int r = stats_reader_of(s->stats, c->out_queue[q]);
		if (r >= 0)
			atomic_store(&st->sent[r], out);
	}
	int was_stopping = c->state == S_STOPPING || c->state == S_STALLED;
	c->state = (enum sup_state)sup_next(c->state, E_EXITED);
	c->kill_at_ms = 0;
	/* Stopped on purpose (restart, swap, shutdown), or a swapped-in
	 * program that failed and was rolled back: start it again now. */
	if (s->stopping || was_stopping || c->retiring ||
	    ctl_stage_exited(s, c, wst)) {
		c->state = S_DOWN;
		return;
	}
	if (!sup_after_exit(c, wst, now, &delay)) {
		sup_begin_stop(s, 1);
		return;
	}
	c->restart_at_ms = now + delay;
	log_info("restarting stage %s in %lld ms", c->name, delay);
}

void
sup_reap(struct sup *s)
{
	for (;;) {
		int wst;
		pid_t pid = waitpid(-1, &wst, WNOHANG);
		if (pid == 0 || (pid == -1 && errno == ECHILD))
			return;
		if (pid == -1) {
			if (errno != EINTR)
				log_warn("waitpid");
			return;
		}
		for (int i = 0; i < SUP_STAGES; i++)
			if (s->ch[i].pid == pid && s->ch[i].name[0] != '\0')
				on_exit_of(s, &s->ch[i], wst);
	}
}
