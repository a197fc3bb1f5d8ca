/* loop.c - the supervisor's one poll loop: signals from a signalfd, Flush
 * ticks from a timerfd, readiness pipes, restart deadlines, stalled stages
 * and the control socket's connections; then the ordered shutdown, level
 * by level from upstream: the stages with UDP sockets first, then each
 * stage drains its queue up to a final Flush (flush stages) and a Stop
 * behind it, the stages it sends to after it. */
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

void
sup_begin_stop(struct sup *s, int status)
{
	if (!s->stopping) {
		s->stopping = 1;
		s->status = status;
		sup_notify_stopping(s);
	}
}

/* A tick: a Flush into each flush stage's queue, without waiting. A full
 * queue keeps its stage's bit in s->tick_left, and the loop tries again
 * every TICK_RETRY_MS (retry_tick) until the Flush fits, so a queue full
 * for a moment costs that report a few milliseconds (the records that
 * reach the queue meanwhile go into it), not a whole interval. Only a
 * queue still full at the next tick gets one Flush for both: said, rate
 * limited. A skipped tick is no small thing downstream: a statsd timer
 * then holds two intervals of values, which can pass its exact budget
 * (egress/statsd_agg.c) and switch it to the sketch. */
#define TICK_RETRY_MS 1

static void
on_tick(struct sup *s)
{
	static struct log_limit lim;
	for (int i = 0; i < SUP_STAGES && s->tick_left != 0; i++) {
		if (!(s->tick_left & (uint64_t)1 << i) || s->ch[i].name[0] == '\0')
			continue;
		long long n = log_limit_pass(&lim, 10000);
		char more[64];
		if (n >= 0)
			log_warnx("queue %s full since the last tick: one Flush "
			    "for two ticks%s", s->ch[i].in_queue,
			    log_more(more, sizeof(more), n, "since the last line"));
	}
	s->tick_ms = sup_flush_mark(s, s->flush_next_ms - s->cfg.flush_ms);
	s->tick_left = sup_flush_try(s, ~(uint64_t)0, s->tick_ms);
	if (s->tick_left == 0)
		log_debug("Flush sent");
}

/* The tick's Flush into the queues that were full; the next try in ms,
 * or -1 when every one has it. */
static long long
retry_tick(struct sup *s)
{
	if (s->tick_left == 0)
		return -1;
	s->tick_left = sup_flush_try(s, s->tick_left, s->tick_ms);
	if (s->tick_left != 0)
		return TICK_RETRY_MS;
	log_debug("Flush sent, late");
	return -1;
}

/* The interval a Flush carries (docs/design.md §14: telem-egress-statsd's
 * rates divide by it) is the time it covers: a whole flush_ms for a tick
 * on time, the ticks' worth for a late timer read, and what is left of the
 * interval for the tick after a `telemctl flush` or for a stop's final
 * Flush. */
uint32_t
sup_flush_interval(const struct sup *s, long long now_ms)
{
	long long d = now_ms - s->flushed_ms;
	return d < 1 ? 1 : d > (long long)UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

uint32_t
sup_flush_mark(struct sup *s, long long now_ms)
{
	uint32_t ms = sup_flush_interval(s, now_ms);
	if (now_ms > s->flushed_ms)
		s->flushed_ms = now_ms;
	return ms;
}

uint64_t
sup_flush_try(struct sup *s, uint64_t left, uint32_t ms)
{
	uint64_t mask = 0;
	for (int i = 0; i < SUP_STAGES; i++) {
		struct sup_child *c = &s->ch[i];
		if (c->name[0] == '\0' || !c->flush || c->retiring)
			continue;
		uint64_t bit = (uint64_t)1 << i;
		mask |= bit;
		if ((left & bit) &&
		    sup_send_record(s, c->in_queue, WIRE_FLUSH, ms, 0) == 0)
			left &= ~bit;
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

/* Ticks fall on a fixed grid of CLOCK_MONOTONIC (an absolute timer: the
 * kernel keeps expiries at first + k * interval, however late they are
 * read), so the next one is known in advance: ingest reads it from the
 * stats segment and sends what it gathered before it (ingest/main.c). */
static void
publish_next_tick(struct sup *s)
{
	atomic_store_explicit(&s->stats->flush_next_ms,
	    (uint32_t)s->flush_next_ms, memory_order_relaxed);
}

int
sup_start_timer(struct sup *s)
{
	struct itimerspec its;
	long long first = clock_ms() + s->cfg.flush_ms;
	memset(&its, 0, sizeof(its));
	its.it_interval.tv_sec = s->cfg.flush_ms / 1000;
	its.it_interval.tv_nsec = (s->cfg.flush_ms % 1000) * 1000000L;
	its.it_value.tv_sec = first / 1000;
	its.it_value.tv_nsec = (first % 1000) * 1000000L;
	if (timerfd_settime(s->timerfd, TFD_TIMER_ABSTIME, &its, NULL) == -1) {
		log_warn("timerfd_settime");
		return -1;
	}
	s->flush_next_ms = first;
	/* The first start; a reload's new flush_ms keeps the interval running
	 * since the last Flush. */
	if (s->flushed_ms == 0)
		s->flushed_ms = first - s->cfg.flush_ms;
	publish_next_tick(s);
	return 0;
}

static void
on_signal(struct sup *s)
{
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			sup_reap(s);
		else if (si.ssi_signo == SIGHUP && !s->stopping && s->on_hup != NULL)
			s->on_hup(s);
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

/* Every stage c sends to is up. */
static int
outs_up(struct sup *s, const struct sup_child *c)
{
	for (int k = 0; k < c->nout; k++) {
		const struct sup_child *o = sup_find(s, c->out_queue[k]);
		if (o != NULL && o->state != S_UP)
			return 0;
	}
	return 1;
}

/* At boot, stages start one at a time in start order, each once the one
 * before it is ready; a reload's new stage, or a stage it swapped to send
 * to new stages, once every stage it sends to is; afterwards any stage
 * whose backoff ran out. */
static int
may_start(struct sup *s, const struct sup_child *c, int booted)
{
	if (c->fresh || c->swap_wait)
		return outs_up(s, c);
	if (booted)
		return 1;
	for (int k = 0; k < s->nstage; k++)
		if (s->start[k] == c->slot)
			return k == 0 || s->ch[s->start[k - 1]].state == S_UP;
	return 0;
}

/* Start whatever is due. */
static long long
start_due(struct sup *s, int *booted)
{
	long long now = clock_ms(), next = -1;
	for (int i = 0; i < SUP_STAGES && !s->stopping; i++) {
		struct sup_child *c = &s->ch[i];
		if (c->name[0] == '\0')
			continue;
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
		/* A reload's swap to send to new stages, once they are up
		 * (reload.c: one that fails first is taken back out). */
		if (c->swap_wait && c->state == S_UP && outs_up(s, c)) {
			c->swap_wait = 0;
			sup_restart(s, c);
		}
		if (c->state == S_DOWN && !c->retiring && may_start(s, c, *booted)) {
			const char *what;
			c->fresh = 0;
			c->swap_wait = 0;
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
	if (!*booted && s->nstage > 0 &&
	    s->ch[s->start[s->nstage - 1]].state == S_UP) {
		*booted = 1;
		log_info("pipeline up (instance %s, transport %s)", s->cfg.instance,
		    chan_kind_name(s->cfg.chan.kind));
		if (sup_start_timer(s) == -1)
			sup_begin_stop(s, 1);
		else
			sup_notify_ready(s);
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
		if (c->name[0] == '\0' || c->state != S_UP || c->in_queue[0] == '\0')
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
		if (s->ch[i].ready_fd == -1 || s->ch[i].name[0] == '\0')
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
		if (read(s->timerfd, &ticks, sizeof(ticks)) == sizeof(ticks)) {
			s->flush_next_ms += (long long)ticks * s->cfg.flush_ms;
			publish_next_tick(s);
			on_tick(s);
		}
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
			c->stop_hung = 1;
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

/* Stop one stage as the shutdown does: its queue's reader reads up to a
 * final Flush (a flush stage) and the Stop behind it; without a queue (or
 * with a full one) it gets SIGTERM. The final Flush covers the time since
 * the last one, not a whole interval: telem-egress-statsd's rates divide
 * by it. */
static void
stop_by_queue(struct sup *s, struct sup_child *c, int flush)
{
	if (c->pid <= 0)
		return;
	uint32_t ms = sup_flush_interval(s, clock_ms());
	if (c->in_queue[0] == '\0' || (flush &&
	    sup_send_record(s, c->in_queue, WIRE_FLUSH, ms, 1000) != 0) ||
	    sup_send_record(s, c->in_queue, WIRE_STOP, 0, 1000) != 0)
		sup_kill(c, SIGTERM);
}

/* A stage that is down at the stop (killed and waiting for its restart)
 * or was killed while it read its queue, with records left in its queue:
 * started again to read them, as reap_retired does for a removed stage,
 * so that a stop loses nothing queued. */
static void
start_to_drain(struct sup *s, struct sup_child *c)
{
	const char *what;
	if (c->pid > 0 || c->in_queue[0] == '\0' || c->state != S_DOWN ||
	    c->stop_hung || c->stop_drained ||
	    sup_queue_depth(s, c->in_queue) <= 0)
		return;
	c->stop_drained = 1;
	log_info("stage %s is down with records in its queue: started to read "
	    "them before the stop", c->name);
	if (sup_spawn(s, c, &what) == -1)
		log_warn("cannot start stage %s: %s", c->name, what);
}

static void
shutdown_pipeline(struct sup *s)
{
	int top = 0;
	for (int i = 0; i < SUP_STAGES; i++) {
		struct sup_child *c = &s->ch[i];
		if (c->name[0] == '\0')
			continue;
		if (c->state != S_STOPPING)
			c->state = (enum sup_state)sup_next(c->state, E_STOP);
		if (c->level > top)
			top = c->level;
	}
	/* The stages reading sockets first: nothing new enters once they are
	 * gone (their sockets stay bound until the end, so nothing is refused). */
	for (int i = 0; i < SUP_STAGES; i++)
		if (s->ch[i].name[0] != '\0' && s->ch[i].udp &&
		    s->ch[i].in_queue[0] == '\0')
			sup_kill(&s->ch[i], SIGTERM);
	for (int i = 0; i < SUP_STAGES; i++)
		if (s->ch[i].name[0] != '\0' && s->ch[i].udp &&
		    s->ch[i].in_queue[0] == '\0')
			await_exit(s, &s->ch[i], SUP_STOP_GRACE_MS);
	/* Then level by level, upstream first: each reads up to the final
	 * Flush and the Stop behind it, so the last events reach the next
	 * level before the Flush does. A stage down, or killed in the
	 * first round, with records in its queue gets a second. */
	for (int lv = top; lv >= 0; lv--) {
		for (int round = 0; round < 2; round++) {
			for (int i = 0; i < SUP_STAGES; i++) {
				struct sup_child *c = &s->ch[i];
				if (c->name[0] == '\0' || c->level != lv ||
				    (c->udp && c->in_queue[0] == '\0'))
					continue;
				start_to_drain(s, c);
				if (round == 0 || c->state == S_STARTING)
					stop_by_queue(s, c, c->flush && !c->retiring);
			}
			for (int i = 0; i < SUP_STAGES; i++)
				if (s->ch[i].name[0] != '\0' && s->ch[i].level == lv)
					await_exit(s, &s->ch[i], SUP_STOP_GRACE_MS);
		}
	}
}

/* The stages that wrote into a removed stage's queue run their new
 * command lines (no longer naming it), or are gone themselves. */
static int
writers_done(struct sup *s, const struct sup_child *c)
{
	for (int i = 0; i < SUP_STAGES; i++) {
		const struct sup_child *w = &s->ch[i];
		if (!(c->retire_after & ((uint64_t)1 << i)) || w->name[0] == '\0')
			continue;
		if (w->retiring ? w->pid > 0 : w->reloading)
			return 0;
	}
	return 1;
}

/* Stages a reload removed: a Stop behind what their queue holds once
 * nothing writes there any more; once the process is gone, their queue
 * (empty by then) and their entry go. A stage that died before its Stop
 * is started again to drain what is left. */
static void
reap_retired(struct sup *s)
{
	for (int i = 0; i < SUP_STAGES; i++) {
		struct sup_child *c = &s->ch[i];
		if (c->name[0] == '\0' || !c->retiring)
			continue;
		if (!c->retire_sent) {
			if (!writers_done(s, c) || c->state == S_STARTING)
				continue;
			c->retire_sent = 1;
			/* Gone for good now: no reload taken back keeps it. */
			int r = pipeline_find(&s->removed, c->name);
			if (r >= 0)
				pipeline_drop(&s->removed, r);
			if (c->pid > 0 && c->in_queue[0] != '\0')
				stop_by_queue(s, c, 0);
			else if (c->pid > 0)
				sup_kill(c, SIGTERM);
			continue;
		}
		if (c->pid > 0)
			continue;
		if (c->in_queue[0] != '\0') {
			long d = sup_queue_depth(s, c->in_queue);
			if (d > 0) {
				const char *what;
				if (c->state == S_DOWN && sup_spawn(s, c, &what) == 0)
					c->retire_sent = 0;
				continue;
			}
		}
		sup_unlink_stage(s, c->name, 0);
		log_info("stage %s removed", c->name);
		sup_undefine(s, c);
	}
}

int
sup_run(struct sup *s)
{
	int booted = 0;
	while (!s->stopping) {
		reap_retired(s);
		long long next = start_due(s, &booted);
		next = soonest(next, check_stalls(s, clock_ms()));
		next = soonest(next, ctl_tick(s));
		next = soonest(next, retry_tick(s));
		if (s->stopping)
			break;
		wait_events(s, next);
	}
	shutdown_pipeline(s);
	return s->status;
}
