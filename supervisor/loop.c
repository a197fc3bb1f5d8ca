/* loop.c - the supervisor's one poll loop: signals from a signalfd, Flush
 * ticks from a timerfd, readiness pipes, restart deadlines, stalled stages
 * and the control socket's connections; then the ordered shutdown: ingest first, then each filter drains
 * its queue up to a final Flush and a Stop, then each egress. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "supervisor/control.h"
#include "supervisor/sup.h"
#include "wire.h"

enum { C_CKMS, C_CMA, C_LOW, C_HIGH, C_INGEST };

void
sup_begin_stop(struct sup *s, int status)
{
	if (!s->stopping) {
		s->stopping = 1;
		s->status = status;
	}
}

int
sup_flush(struct sup *s, int timeout_ms)
{
	static struct log_limit lim;
	int rc = 0;
	for (int i = C_LOW; i <= C_HIGH; i++) {
		/* A tick must not wait behind a full queue: it is late anyway,
		 * so it is skipped and said. */
		if (sup_send_record(s, s->ch[i].in_queue, WIRE_FLUSH, timeout_ms) != 0) {
			long long n = log_limit_pass(&lim, 10000);
			char more[64];
			if (n >= 0)
				log_warnx("queue %s full: Flush skipped%s",
				    s->ch[i].in_queue, log_more(more, sizeof(more), n,
				    "skipped since the last line"));
			rc = -1;
		}
	}
	return rc;
}

unsigned
sup_flush_try(struct sup *s, unsigned left)
{
	unsigned mask = 0;
	for (int i = C_LOW; i <= C_HIGH; i++) {
		mask |= 1u << i;
		if ((left & (1u << i)) &&
		    sup_send_record(s, s->ch[i].in_queue, WIRE_FLUSH, 0) == 0)
			left &= ~(1u << i);
	}
	return left & mask;
}

void
sup_restart(struct sup *s, struct sup_child *c)
{
	if (c->pid > 0) {
		c->state = (enum sup_state)sup_next(c->state, E_STOP);
		c->kill_at_ms = clock_ms() + SUP_STOP_GRACE_MS;
		sup_kill(c, SIGTERM);
	} else if (c->state == S_THROTTLED) {
		c->restart_at_ms = clock_ms();
	}
	(void)s;
}

static int
start_timer(struct sup *s)
{
	struct itimerspec its;
	memset(&its, 0, sizeof(its));
	its.it_interval.tv_sec = s->cfg.flush_ms / 1000;
	its.it_interval.tv_nsec = (s->cfg.flush_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	if (timerfd_settime(s->timerfd, 0, &its, NULL) == -1) {
		log_warn("timerfd_settime");
		return -1;
	}
	return 0;
}

static void
on_signal(struct sup *s)
{
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			sup_reap(s);
		else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			log_info("%s: stopping", strsignal((int)si.ssi_signo));
			sup_begin_stop(s, 0);
		}
	}
}

/* No descriptors or processes for a stage. Before the pipeline was ever
 * up, nothing that could free them runs yet: the limit is below what the
 * pipeline needs, and retrying would only repeat the line. Later the
 * shortage may pass (telemctl clients come and go), so it counts as a
 * failed start, like a stage that exits 111: backoff, and the intensity
 * limit stops a pipeline that never gets them. Returns 0 once stopping. */
static int
spawn_failed(struct sup *s, struct sup_child *c, const char *what, int booted,
    long long now, long long *next)
{
	long long delay;
	if (!booted) {
		log_warn("giving up: cannot start stage %s: %s", c->name, what);
		sup_begin_stop(s, 1);
		return 0;
	}
	log_warn("cannot start stage %s: %s", c->name, what);
	if (!sup_after_exit(c, W_EXITCODE(EXIT_TEMPORARY, 0), now, &delay)) {
		sup_begin_stop(s, 1);
		return 0;
	}
	c->state = S_THROTTLED;
	c->restart_at_ms = now + delay;
	*next = *next < 0 || delay < *next ? delay : *next;
	return 1;
}

/* Start whatever is due: at boot one stage at a time, each after the one
 * downstream of it is ready; afterwards any stage whose backoff ran out. */
static long long
start_due(struct sup *s, int *booted)
{
	long long now = clock_ms(), next = -1;
	for (int i = 0; i < SUP_STAGES && !s->stopping; i++) {
		struct sup_child *c = &s->ch[i];
		if ((c->state == S_STOPPING || c->state == S_STALLED) &&
		    c->kill_at_ms > 0) {
			if (c->kill_at_ms <= now) {
				log_warnx("stage %s did not stop in %d ms: SIGKILL",
				    c->name, SUP_STOP_GRACE_MS);
				sup_kill(c, SIGKILL);
				c->kill_at_ms = 0;
			} else {
				long long d = c->kill_at_ms - now;
				next = next < 0 || d < next ? d : next;
			}
		}
		if (c->state == S_THROTTLED) {
			if (c->restart_at_ms > now) {
				long long d = c->restart_at_ms - now;
				next = next < 0 || d < next ? d : next;
				continue;
			}
			c->state = (enum sup_state)sup_next(c->state, E_TIMER);
		}
		if (c->state == S_DOWN && (*booted || i == 0 || s->ch[i - 1].state == S_UP)) {
			const char *what;
			if (sup_spawn(s, c, &what) == -1 &&
			    !spawn_failed(s, c, what, *booted, now, &next))
				break;
		}
		/* A stage that never says it is ready (hung in its start, or
		 * a swapped-in program that is no stage) would hold up the
		 * start or a telemctl swap for ever: it dies like any other. */
		if (c->state == S_STARTING && c->pid > 0 && !c->ready_killed) {
			long long d = c->ready_by_ms - now;
			if (d <= 0) {
				if (c->not_ready == NR_EOF)
					log_warnx("stage %s (pid %d) closed its ready fd "
					    "without writing \"R\\n\": SIGKILL", c->name,
					    (int)c->pid);
				else
					log_warnx("stage %s (pid %d) not ready in %d s: "
					    "SIGKILL", c->name, (int)c->pid,
					    SUP_READY_MS / 1000);
				sup_kill(c, SIGKILL);
				if (c->not_ready == NR_NONE)
					c->not_ready = NR_TIMEOUT;
				c->ready_killed = 1;
			} else {
				next = next < 0 || d < next ? d : next;
			}
		}
	}
	if (!*booted && s->ch[SUP_STAGES - 1].state == S_UP) {
		*booted = 1;
		log_info("pipeline up (instance %s, transport %s)", s->cfg.instance,
		    chan_kind_name(s->cfg.chan.kind));
		if (start_timer(s) == -1)
			sup_begin_stop(s, 1);
	}
	return next;
}

/* A stage with queued input that takes nothing for stall_ms (stopped, or
 * stuck writing its stdout) holds up everything upstream of it: it is
 * logged once, shown `stalled` and stopped like a `telemctl restart`
 * (its queue keeps its records; what it held is counted lost if it has to
 * be killed). Returns the ms until the next look, or -1 if none. */
static long long
check_stalls(struct sup *s, long long now)
{
	if (s->cfg.stall_ms <= 0)
		return -1;
	long long every = s->cfg.stall_ms / 2 < SUP_STALL_CHECK_MS ?
	    s->cfg.stall_ms / 2 : SUP_STALL_CHECK_MS;
	if (now < s->stall_check_ms)
		return s->stall_check_ms - now;
	s->stall_check_ms = now + every;
	for (int i = 0; i < SUP_STAGES; i++) {
		struct sup_child *c = &s->ch[i];
		if (c->state != S_UP || c->in_queue[0] == '\0')
			continue;
		long depth = sup_queue_depth(s, c->in_queue);
		int waiting_out = 0;
		for (int k = 0; k < c->nout; k++)
			waiting_out |= sup_queue_depth(s, c->out_queue[k]) > 0;
		uint64_t taken = sup_slot_taken(&s->stats->slot[c->slot]);
		if (!sup_stall_check(c, taken, depth, waiting_out, now, s->cfg.stall_ms))
			continue;
		log_warnx("stage %s (pid %d) stalled: took nothing from queue %s "
		    "(%ld messages waiting) for %lld ms: restarting", c->name,
		    (int)c->pid, c->in_queue, depth, now - c->stall_since_ms);
		c->state = (enum sup_state)sup_next(c->state, E_STALL);
		c->kill_at_ms = now + SUP_STOP_GRACE_MS;
		sup_kill(c, SIGTERM);
	}
	return every;
}

static long long
soonest(long long a, long long b)
{
	return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

static void
wait_events(struct sup *s, long long timeout_ms)
{
	struct pollfd pfd[2 + SUP_STAGES + CTL_POLLFDS];
	struct sup_child *who[2 + SUP_STAGES];
	nfds_t n = 0;
	pfd[n++] = (struct pollfd){ .fd = s->sigfd, .events = POLLIN };
	pfd[n++] = (struct pollfd){ .fd = s->timerfd, .events = POLLIN };
	for (int i = 0; i < SUP_STAGES; i++) {
		if (s->ch[i].ready_fd == -1)
			continue;
		who[n] = &s->ch[i];
		pfd[n++] = (struct pollfd){ .fd = s->ch[i].ready_fd, .events = POLLIN };
	}
	nfds_t nready = n;
	n += ctl_pollfds(s, pfd + n);
	if (poll(pfd, n, (int)timeout_ms) == -1) {
		if (errno != EINTR) {
			log_warn("poll");
			sup_begin_stop(s, 1);
		}
		return;
	}
	if (pfd[0].revents)
		on_signal(s);
	if (pfd[1].revents) {
		uint64_t ticks;
		if (read(s->timerfd, &ticks, sizeof(ticks)) == sizeof(ticks))
			sup_flush(s, 0);
	}
	/* A reaped stage's pipe is closed already (and the fd maybe taken). */
	for (nfds_t i = 2; i < nready; i++)
		if (pfd[i].revents && who[i]->ready_fd == pfd[i].fd)
			sup_on_ready(s, who[i]);
	ctl_events(s, pfd + nready, n - nready);
}

/* Wait for c to exit, up to ms; then SIGKILL it and wait for that. */
static void
await_exit(struct sup *s, struct sup_child *c, long long ms)
{
	long long deadline = clock_ms() + ms;
	int killed = 0;
	while (c->pid > 0) {
		long long left = deadline - clock_ms();
		if (left <= 0 && !killed) {
			log_warnx("stage %s did not stop in time: SIGKILL", c->name);
			sup_kill(c, SIGKILL);
			killed = 1;
			deadline = clock_ms() + 1000;
			continue;
		}
		if (left <= 0)
			break;
		/* telemctl is still answered meanwhile (status; stop waits). */
		struct pollfd pfd[1 + CTL_POLLFDS];
		pfd[0] = (struct pollfd){ .fd = s->sigfd, .events = POLLIN };
		nfds_t n = 1 + ctl_pollfds(s, pfd + 1);
		left = soonest(left, ctl_tick(s));
		if (poll(pfd, n, (int)left) > 0) {
			if (pfd[0].revents)
				on_signal(s);
			ctl_events(s, pfd + 1, n - 1);
		}
	}
}

static void
shutdown_pipeline(struct sup *s)
{
	struct sup_child *c = &s->ch[C_INGEST];
	for (int i = 0; i < SUP_STAGES; i++)
		if (s->ch[i].state != S_STOPPING)
			s->ch[i].state = (enum sup_state)sup_next(s->ch[i].state, E_STOP);
	/* Ingest first: nothing new enters once it is gone. */
	sup_kill(c, SIGTERM);
	await_exit(s, c, SUP_STOP_GRACE_MS);
	/* Each filter reads up to the final Flush and the Stop behind it, so
	 * the last events reach the egresses before the Flush does. */
	for (int i = C_LOW; i <= C_HIGH; i++) {
		c = &s->ch[i];
		if (sup_send_record(s, c->in_queue, WIRE_FLUSH, 1000) != 0 ||
		    sup_send_record(s, c->in_queue, WIRE_STOP, 1000) != 0)
			sup_kill(c, SIGTERM);
	}
	for (int i = C_LOW; i <= C_HIGH; i++)
		await_exit(s, &s->ch[i], SUP_STOP_GRACE_MS);
	for (int i = C_CKMS; i <= C_CMA; i++) {
		c = &s->ch[i];
		if (sup_send_record(s, c->in_queue, WIRE_STOP, 1000) != 0)
			sup_kill(c, SIGTERM);
	}
	for (int i = C_CKMS; i <= C_CMA; i++)
		await_exit(s, &s->ch[i], SUP_STOP_GRACE_MS);
}

int
sup_run(struct sup *s)
{
	int booted = 0;
	while (!s->stopping) {
		long long next = start_due(s, &booted);
		next = soonest(next, check_stalls(s, clock_ms()));
		next = soonest(next, ctl_tick(s));
		if (s->stopping)
			break;
		wait_events(s, next);
	}
	shutdown_pipeline(s);
	return s->status;
}
