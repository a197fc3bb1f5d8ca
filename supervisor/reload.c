/* reload.c - `telemctl reload` and SIGHUP: the pipeline file is read
 * again and the difference to the running pipeline applied
 * (supervisor/pipeline.h pipeline_diff). An invalid file, or one that
 * changes what cannot change while queues exist (transport, msg_bytes),
 * or a stage's kind of input (gaining or losing its in-queue or udp),
 * changes nothing. Otherwise, in this order:
 *  - new stages: their queues are created and their entries made first
 *    (if one cannot be had, those made go again and nothing changes),
 *    then they start once every stage they send to is up (downstream
 *    first); one that fails before it is ever ready is taken back out
 *    (sup_reload_undo), and a removed stage that its writers were to
 *    leave for it is kept;
 *  - changed stages (exec, args, out or the udp address): swapped, that is
 *    stopped and started with the new command line; their queue keeps its
 *    records, and a new out-queue exists before they start (and its
 *    stage is up, when it is a new one);
 *  - removed stages: once every stage that wrote to them runs its new
 *    command line (or is gone), they get a Stop behind what their queue
 *    holds, drain it, exit, and their queue is removed (loop.c);
 *  - unchanged stages are not touched (a change of `flush` only changes
 *    where the supervisor writes Flush).
 * The reply lists "started X", "swapped Z", "stopped Y"; control.c sends
 * it once the started and swapped stages are up. Removed stages drain in
 * the background (status shows them `draining`). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>

#include "log.h"
#include "supervisor/sup.h"

struct out {
	char *buf;
	size_t cap, len;
};

static void say(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(struct out *o, const char *fmt, ...)
{
	if (o->buf == NULL || o->len + 1 >= o->cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

static void
msg_bytes_text(size_t v, char *buf, size_t cap)
{
	if (v == PIPELINE_MSG_AUTO)
		snprintf(buf, cap, "auto");
	else
		snprintf(buf, cap, "%zu", v);
}

/* Give c the queues, flags and program of stage i of p. */
static int
reshape(struct sup *s, struct sup_child *c, const struct pipeline *p, int i)
{
	const struct pipeline_stage *ps = &p->stage[i];
	c->nout = 0;
	for (int k = 0; k < ps->nout && k < STAGE_OUT_MAX; k++)
		snprintf(c->out_queue[c->nout++], sizeof(c->out_queue[0]), "%s",
		    p->stage[ps->out[k]].name);
	if (ps->in_queue)
		snprintf(c->in_queue, sizeof(c->in_queue), "%s", ps->name);
	c->level = ps->level;
	char exe[PATH_MAX];
	if (pipeline_exec_path(ps, s->cfg.bindir, exe, sizeof(exe)) == -1)
		return -1;
	c->state_file[0] = '\0';
	if (ps->state && sup_state_path(&s->cfg, c->name, c->state_file,
	    sizeof(c->state_file)) == -1)
		return -1;
	sup_set_program(c, exe, (const char *const *)ps->argv);
	snprintf(s->stats->slot[c->slot].in_queue, STATS_NAME_MAX, "%s", c->in_queue);
	return 0;
}

static void
set_flush(struct sup *s, struct sup_child *c, int flush)
{
	if (flush && c->inq == NULL && sup_open_inq(s, c) == -1)
		return;
	if (!flush) {
		chan_close(c->inq);
		c->inq = NULL;
	}
	c->flush = flush;
}

/* A kept stage's udp address written another way (a host name for its
 * address, [0::1] for [::1]) is no change: compared as what each
 * resolves to, which is what is bound (ingest/udp.c), it needs no new
 * socket, which could not be bound anyway while the stage holds its own.
 * A stage left with no other change is unchanged. */
static void
same_udp(const struct pipeline *old, const struct pipeline *np,
    struct pipeline_diff *d)
{
	int n = 0;
	for (int k = 0; k < d->nchanged; k++) {
		int i = d->changed[k];
		const struct pipeline_stage *nw = &np->stage[i];
		const struct pipeline_stage *od = &old->stage[d->old_of[i]];
		if ((d->what[i] & PIPELINE_CH_UDP) && nw->udp && od->udp &&
		    udp_same_addrs(od->udp_host, od->udp_port, nw->udp_host,
		    nw->udp_port))
			d->what[i] &= ~(unsigned)PIPELINE_CH_UDP;
		if (d->what[i] & PIPELINE_CH_SWAP)
			d->changed[n++] = i;
		else
			d->unchanged[d->nunchanged++] = i;
	}
	d->nchanged = n;
}

/* Bind the udp of every added stage (into fresh_add, by its index in
 * d->added) and every changed udp of a kept stage (into fresh, by its
 * index in d->changed). 0, or -1 with all of them closed and the error
 * said. */
static int
bind_all(struct sup *s, const struct pipeline *np, const struct pipeline_diff *d,
    struct udp *fresh, struct udp *fresh_add, struct out *o)
{
	const struct pipeline_stage *ps = NULL;
	for (int k = 0; k < d->nchanged; k++)
		fresh[k].n = 0;
	for (int k = 0; k < d->nadded; k++)
		fresh_add[k].n = 0;
	for (int k = 0; k < d->nchanged + d->nadded && ps == NULL; k++) {
		int add = k >= d->nchanged, i = add ? d->added[k - d->nchanged] :
		    d->changed[k];
		struct udp *u = add ? &fresh_add[k - d->nchanged] : &fresh[k];
		if (add ? !np->stage[i].udp : !(d->what[i] & PIPELINE_CH_UDP))
			continue;
		if (sup_listen_bind(s, u, np->stage[i].udp_host,
		    np->stage[i].udp_port) == -1)
			ps = &np->stage[i];
	}
	if (ps == NULL)
		return 0;
	for (int k = 0; k < d->nchanged; k++)
		udp_close(&fresh[k]);
	for (int k = 0; k < d->nadded; k++)
		udp_close(&fresh_add[k]);
	/* A stage this reload removes holds its sockets while it drains. */
	const char *holder = NULL;
	for (int k = 0; k < d->nremoved && holder == NULL; k++) {
		const struct pipeline_stage *r = &s->pl.stage[d->removed[k]];
		if (r->udp && udp_same_addrs(r->udp_host, r->udp_port,
		    ps->udp_host, ps->udp_port))
			holder = r->name;
	}
	int v6 = strchr(ps->udp_host, ':') != NULL;
	say(o, "error: %s:%d: udp %s%s%s:%s: cannot bind (see the log)", np->file,
	    ps->line.udp, v6 ? "[" : "", ps->udp_host, v6 ? "]" : "", ps->udp_port);
	if (holder != NULL)
		say(o, ": stage %s, which this reload removes, holds it until it "
		    "has drained; remove it in one reload and add %s in the next",
		    holder, ps->name);
	say(o, "; nothing changed\n");
	log_warnx("reload: %s:%d: cannot bind udp of stage %s: nothing changed",
	    np->file, ps->line.udp, ps->name);
	return -1;
}

static int
in_set(struct sup_child *const *t, int n, const struct sup_child *c)
{
	for (int k = 0; k < n; k++)
		if (t[k] == c)
			return 1;
	return 0;
}

static int
names_out(const struct sup_child *c, const char *name)
{
	for (int q = 0; q < c->nout; q++)
		if (strcmp(c->out_queue[q], name) == 0)
			return 1;
	return 0;
}

/* A stage a reload removed that drains and has not got its Stop, with its
 * entry kept (s->removed), called name; or NULL. */
static struct sup_child *
removed_named(struct sup *s, const char *name)
{
	for (int i = 0; i < SUP_STAGES; i++) {
		struct sup_child *r = &s->ch[i];
		if (r->name[0] != '\0' && r->retiring && !r->retire_sent &&
		    strcmp(r->name, name) == 0 &&
		    pipeline_find(&s->removed, name) >= 0)
			return r;
	}
	return NULL;
}

/* c's outs without those to the stages in t (join bits kept with theirs),
 * the stages of `back` (bit: slot) in the place of the first of them and
 * after the rest; how many went. */
static int
mend_outs(struct sup *s, struct sup_child *c, struct sup_child *const *t,
    int n, uint64_t back)
{
	char was[STAGE_OUT_MAX][16], add[STAGE_OUT_MAX][16];
	int nwas = c->nout, nadd = 0, a = 0, gone = 0;
	unsigned join = c->join;
	memcpy(was, c->out_queue, sizeof(was));
	for (int j = 0; j < SUP_STAGES && nadd < STAGE_OUT_MAX; j++)
		if (back & (uint64_t)1 << j)
			memcpy(add[nadd++], s->ch[j].name, sizeof(add[0]));
	c->nout = 0;
	c->join = 0;
	for (int q = 0; q < nwas; q++) {
		int hit = 0;
		for (int k = 0; k < n && !hit; k++)
			hit = strcmp(was[q], t[k]->name) == 0;
		if (hit) {
			gone++;
			if (a < nadd)
				memcpy(c->out_queue[c->nout++], add[a++], sizeof(add[0]));
			continue;
		}
		if (join & (1u << q))
			c->join |= 1u << c->nout;
		memcpy(c->out_queue[c->nout++], was[q], sizeof(was[0]));
	}
	while (a < nadd && c->nout < STAGE_OUT_MAX)
		memcpy(c->out_queue[c->nout++], add[a++], sizeof(add[0]));
	return gone;
}

/* The removed stages that the writers of the stages in t were to leave
 * for them, with the removed stages those send to: each writer is
 * waiting on a new out (swap_wait), so its program of before still runs
 * and sends to them, and they have not got their Stop. They are put back
 * into s->pl, downstream first, and drain no more; back[w] (bit: slot)
 * gets the ones writer w sends to again. Returns them (bit: slot). */
static uint64_t
keep_removed(struct sup *s, struct sup_child *const *t, int n,
    uint64_t back[SUP_STAGES])
{
	uint64_t keep = 0, put = 0;
	for (int i = 0; i < SUP_STAGES; i++) {
		struct sup_child *w = &s->ch[i];
		back[i] = 0;
		if (w->name[0] == '\0' || w->retiring || !w->swap_wait ||
		    in_set(t, n, w))
			continue;
		int moved = 0;
		for (int k = 0; k < n && !moved; k++)
			moved = names_out(w, t[k]->name);
		for (int j = 0; j < SUP_STAGES && moved; j++) {
			struct sup_child *r = &s->ch[j];
			if ((r->retire_after & (uint64_t)1 << i) &&
			    removed_named(s, r->name) == r && !names_out(w, r->name))
				back[i] |= (uint64_t)1 << j;
		}
		keep |= back[i];
	}
	for (int grew = 1; grew;) {
		grew = 0;
		for (int j = 0; j < SUP_STAGES; j++) {
			for (int q = 0; (keep & (uint64_t)1 << j) && q < s->ch[j].nout; q++) {
				struct sup_child *o = sup_find(s, s->ch[j].out_queue[q]) ?
				    NULL : removed_named(s, s->ch[j].out_queue[q]);
				if (o != NULL && !(keep & (uint64_t)1 << o->slot)) {
					keep |= (uint64_t)1 << o->slot;
					grew = 1;
				}
			}
		}
	}
	for (int grew = 1; grew;) {
		grew = 0;
		for (int j = 0; j < SUP_STAGES; j++) {
			struct sup_child *r = &s->ch[j];
			uint64_t bit = (uint64_t)1 << j;
			int ready = (keep & bit) && !(put & bit);
			for (int q = 0; ready && q < r->nout; q++)
				for (int o = 0; o < SUP_STAGES && ready; o++)
					ready = !((keep & ~put) & (uint64_t)1 << o) ||
					    strcmp(s->ch[o].name, r->out_queue[q]) != 0;
			if (!ready)
				continue;
			int e = pipeline_find(&s->removed, r->name);
			int at = pipeline_put(&s->pl, &s->removed.stage[e]);
			if (at == -1) {
				log_warnx("reload: stage %s: no room to keep it", r->name);
				keep &= ~bit;
				continue;
			}
			pipeline_drop(&s->removed, e);
			r->retiring = 0;
			r->retire_after = 0;
			for (int q = 0; q < r->nout; q++) {
				int o = pipeline_find(&s->pl, r->out_queue[q]);
				if (o >= 0)
					(void)pipeline_link(&s->pl, at, o);
			}
			set_flush(s, r, s->pl.stage[at].flush);
			put |= bit;
			grew = 1;
		}
	}
	for (int i = 0; i < SUP_STAGES; i++) {
		back[i] &= put;
		int wi = back[i] ? pipeline_find(&s->pl, s->ch[i].name) : -1;
		for (int j = 0; j < SUP_STAGES && wi >= 0; j++) {
			if (!(back[i] & (uint64_t)1 << j))
				continue;
			/* Its program sends there, so no cycle in what runs;
			 * but the file may have turned a path around. */
			if (pipeline_link(&s->pl, wi, pipeline_find(&s->pl,
			    s->ch[j].name)) == -1) {
				log_warnx("reload: stage %s cannot send to %s again: it "
				    "would close a cycle", s->ch[i].name, s->ch[j].name);
				back[i] &= ~((uint64_t)1 << j);
			}
		}
	}
	return put;
}

void
sup_reload_undo(struct sup *s, struct sup_child *x, const char *why)
{
	struct sup_child *t[SUP_STAGES];
	int n = 0;
	t[n++] = x;
	/* The new stages that were to send to it: they start only once it
	 * is up (loop.c may_start), so none has. */
	for (int grew = 1; grew;) {
		grew = 0;
		for (int i = 0; i < SUP_STAGES; i++) {
			struct sup_child *w = &s->ch[i];
			if (w->name[0] == '\0' || w->retiring || !w->added ||
			    w->pid > 0 || in_set(t, n, w))
				continue;
			for (int q = 0; q < w->nout; q++) {
				const struct sup_child *r = sup_find(s, w->out_queue[q]);
				if (r != NULL && in_set(t, n, r)) {
					t[n++] = w;
					grew = 1;
					break;
				}
			}
		}
	}
	char with[256] = "";
	size_t len = 0;
	for (int k = 1; k < n && len < sizeof(with); k++)
		len += (size_t)snprintf(with + len, sizeof(with) - len, "%s%s",
		    k > 1 ? ", " : ", with the new stages upstream of it: ",
		    t[k]->name);
	log_warnx("reload: new stage %s %s: taken back out%s", x->name, why, with);
	/* Lines for the reply to the reload (control.c reload_done). */
	struct out u = { s->reload_undone, sizeof(s->reload_undone),
	    strlen(s->reload_undone) };
	say(&u, "new stage %s %s: taken back out%s\n", x->name, why, with);
	for (int k = 0; k < n; k++) {
		int i = pipeline_find(&s->pl, t[k]->name);
		if (i >= 0)
			pipeline_drop(&s->pl, i);
	}
	uint64_t back[SUP_STAGES], kept = keep_removed(s, t, n, back);
	for (int j = 0; j < SUP_STAGES; j++) {
		if (!(kept & (uint64_t)1 << j))
			continue;
		char by[256] = "";
		int nby = 0;
		len = 0;
		for (int i = 0; i < SUP_STAGES && len < sizeof(by); i++)
			if ((back[i] & (uint64_t)1 << j) || ((kept & (uint64_t)1 << i) &&
			    names_out(&s->ch[i], s->ch[j].name)))
				len += (size_t)snprintf(by + len, sizeof(by) - len, "%s%s",
				    nby++ ? ", " : "", s->ch[i].name);
		const char *as = nby == 0 ? "" : ", as ", *sends = nby == 0 ? "" :
		    nby > 1 ? " still send to it" : " still sends to it";
		log_warnx("reload: stage %s kept%s%s%s", s->ch[j].name, as, by, sends);
		say(&u, "stage %s kept%s%s%s\n", s->ch[j].name, as, by, sends);
	}
	/* The stages swapped to send to them: none sent anything yet (their
	 * new program waits for its new outs), so they go on without them,
	 * and with the removed stages they were to leave for them. */
	for (int i = 0; i < SUP_STAGES; i++) {
		struct sup_child *w = &s->ch[i];
		if (w->name[0] == '\0' || w->retiring || in_set(t, n, w) ||
		    mend_outs(s, w, t, n, back[i]) == 0)
			continue;
		if (w->swap_wait) {
			int wait = 0;
			for (int q = 0; q < w->nout; q++) {
				const struct sup_child *r = sup_find(s, w->out_queue[q]);
				wait |= r != NULL && r->added;
			}
			if (wait)
				continue;   /* for its other new outs */
			w->swap_wait = 0;
			if (w->swap_outs && w->join == 0 && w->nout == w->swap_nout) {
				/* Its outs are those it had: it runs on as it is. */
				for (int k = 0; k < w->prev_nown; k++)
					free(w->prev_own[k]);
				w->prev_nown = 0;
				w->swapping = 0;
				w->reloading = 0;
				log_info("reload: stage %s runs on as it was", w->name);
				continue;
			}
		}
		sup_restart(s, w);
		/* The file gave it only new outs, all taken back out: said,
		 * as what it passes on now reaches no stage. */
		if (w->nout == 0) {
			log_warnx("reload: stage %s sends to no stage now: the new "
			    "ones it was to send to were taken back out", w->name);
			say(&u, "stage %s sends to no stage now\n", w->name);
		}
	}
	for (int k = 0; k < n; k++) {
		sup_unlink_stage(s, t[k]->name, 0);
		sup_undefine(s, t[k]);
	}
	sup_order(s);
	for (int i = 0; i < s->pl.nstage; i++) {
		struct sup_child *c = sup_find(s, s->pl.stage[i].name);
		if (c != NULL)
			c->level = s->pl.stage[i].level;
	}
	sup_notify_reloaded(s);
}

int
sup_reload(struct sup *s, char *buf, size_t cap)
{
	struct out o = { buf, cap, 0 };
	char err[PIPELINE_ERR_MAX];
	struct pipeline np;
	struct pipeline_diff d;
	if (buf != NULL && cap > 0)
		buf[0] = '\0';
	s->reload_undone[0] = '\0';
	if (s->cfg.file == NULL) {
		say(&o, "error: no pipeline file (started without -c)\n");
		return -1;
	}
	if (pipeline_load(&np, s->cfg.file, err, sizeof(err)) == -1 ||
	    pipeline_check_execs(&np, s->cfg.bindir, err, sizeof(err)) == -1) {
		log_warnx("reload: %s: nothing changed", err);
		say(&o, "error: %s\n", err);
		pipeline_free(&np);
		return -1;
	}
	/* -t -m -f on the command line still win over the file. */
	if (s->cfg.set_t)
		np.transport = s->cfg.popts.transport;
	if (s->cfg.set_m)
		np.msg_bytes = s->cfg.popts.msg_bytes;
	if (s->cfg.set_f)
		np.flush_ms = s->cfg.popts.flush_ms;
	pipeline_diff(&s->pl, &np, &d);
	same_udp(&s->pl, &np, &d);
	if (d.pipeline & (PIPELINE_CH_TRANSPORT | PIPELINE_CH_MSG_BYTES)) {
		/* A key left out means its default: name its section then, or
		 * the first line when the file has no [pipeline]. */
		int tr = d.pipeline & PIPELINE_CH_TRANSPORT;
		int line = tr ? np.line.transport : np.line.msg_bytes;
		char now[32], was[32];
		if (line == 0)
			line = np.line.section > 0 ? np.line.section : 1;
		if (tr) {
			snprintf(now, sizeof(now), "%s", chan_kind_name(np.transport));
			snprintf(was, sizeof(was), "%s", chan_kind_name(s->pl.transport));
		} else {
			msg_bytes_text(np.msg_bytes, now, sizeof(now));
			msg_bytes_text(s->pl.msg_bytes, was, sizeof(was));
		}
		snprintf(err, sizeof(err), "%s:%d: %s changed (%s%s, running %s): "
		    "the queues exist; stop and start the supervisor to change it",
		    np.file, line, tr ? "transport" : "msg_bytes", now,
		    (tr ? np.line.transport : np.line.msg_bytes) ? "" :
		    ", the default", was);
		log_warnx("reload: %s: nothing changed", err);
		say(&o, "error: %s\n", err);
		pipeline_free(&np);
		return -1;
	}
	/* A stage keeps the kind of its input: one that lost its in-queue
	 * would leave what the queue holds unread, and the program a failed
	 * swap rolls back to expects the input it had. */
	for (int k = 0; k < d.nchanged; k++) {
		int i = d.changed[k];
		const struct pipeline_stage *nw = &np.stage[i];
		const struct pipeline_stage *od = &s->pl.stage[d.old_of[i]];
		if (!(d.what[i] & PIPELINE_CH_IN) && nw->udp == od->udp)
			continue;
		snprintf(err, sizeof(err), "%s:%d: stage %s would %s %s: a stage "
		    "keeps its kind of input across a reload; give the new one "
		    "another name", np.file, nw->line.section, nw->name,
		    (d.what[i] & PIPELINE_CH_IN ? od->in_queue : od->udp) ?
		    "lose" : "gain", d.what[i] & PIPELINE_CH_IN ? "its in-queue" :
		    "its udp socket");
		log_warnx("reload: %s: nothing changed", err);
		say(&o, "error: %s\n", err);
		pipeline_free(&np);
		return -1;
	}
	int used = 0;
	for (int i = 0; i < SUP_STAGES; i++)
		used += s->ch[i].name[0] != '\0';
	if (used + d.nadded > SUP_STAGES) {
		say(&o, "error: %d stages still running or draining and %d new: "
		    "at most %d at once\n", used, d.nadded, SUP_STAGES);
		pipeline_free(&np);
		return -1;
	}
	/* The udp addresses of new stages and the changed ones of kept
	 * stages are bound before anything else changes, while every
	 * running stage's sockets are still open (its process holds them
	 * anyway): if one cannot be bound, nothing changes. */
	static struct udp fresh[PIPELINE_STAGES_MAX], fresh_add[PIPELINE_STAGES_MAX];
	if (bind_all(s, &np, &d, fresh, fresh_add, &o) == -1) {
		pipeline_free(&np);
		return -1;
	}
	/* New queues first: the new stages' (a kept stage keeps its input),
	 * and their entries. If one of them cannot be had, what this reload
	 * made goes again, so that nothing changed (a queue left behind
	 * would hold the user's RLIMIT_MSGQUEUE, and its name, which the
	 * next reload adding that stage could then not create). */
	struct sup_child *added[PIPELINE_STAGES_MAX];
	int made = 0, defined = 0;
	while (made < d.nadded && (!np.stage[d.added[made]].in_queue ||
	    sup_queue_create(s, np.stage[d.added[made]].name,
	    pipeline_nqueues(&np)) == 0))
		made++;
	while (made == d.nadded && defined < d.nadded) {
		int i = d.added[defined];
		if ((added[defined] = sup_stage_add(s, &np, i,
		    np.stage[i].udp ? &fresh_add[defined] : NULL)) == NULL)
			break;
		defined++;
	}
	if (defined < d.nadded) {
		const char *name = np.stage[d.added[made < d.nadded ? made :
		    defined]].name;
		if (made < d.nadded)
			say(&o, "error: queue of stage %s could not be created (see "
			    "the log); nothing changed\n", name);
		else
			say(&o, "error: stage %s could not be set up (see the log); "
			    "nothing changed\n", name);
		log_warnx("reload: stage %s could not be added: nothing changed",
		    name);
		for (int k = 0; k < defined; k++)
			sup_undefine(s, added[k]);
		for (int k = 0; k < made; k++)
			if (np.stage[d.added[k]].in_queue)
				sup_queue_unlink(s, np.stage[d.added[k]].name);
		for (int k = 0; k < d.nchanged; k++)
			udp_close(&fresh[k]);
		for (int k = defined; k < d.nadded; k++)
			udp_close(&fresh_add[k]);
		pipeline_free(&np);
		return -1;
	}
	for (int k = 0; k < d.nchanged; k++) {
		const struct pipeline_stage *ps = &np.stage[d.changed[k]];
		if (d.what[d.changed[k]] & PIPELINE_CH_UDP)
			sup_listen_replace(sup_find(s, ps->name), &fresh[k],
			    ps->udp_host, ps->udp_port);
	}
	for (int k = 0; k < d.nadded; k++) {
		struct sup_child *c = added[k];
		c->fresh = 1;
		c->added = 1;
		c->reloading = 1;
		c->reload_gen = c->gen;
		say(&o, "started %s\n", c->name);
		log_info("reload: stage %s added", c->name);
	}
	/* The writers of removed stages, as they are now. */
	uint64_t writers[PIPELINE_STAGES_MAX];
	for (int k = 0; k < d.nremoved; k++) {
		const char *name = s->pl.stage[d.removed[k]].name;
		writers[k] = 0;
		for (int i = 0; i < SUP_STAGES; i++) {
			struct sup_child *w = &s->ch[i];
			for (int q = 0; w->name[0] != '\0' && q < w->nout; q++)
				if (strcmp(w->out_queue[q], name) == 0)
					writers[k] |= (uint64_t)1 << i;
		}
	}
	for (int k = 0; k < d.nchanged; k++) {
		int i = d.changed[k];
		struct sup_child *c = sup_find(s, np.stage[i].name);
		if (c == NULL)
			continue;
		/* As `telemctl swap`: a new program that fails before it is ready
		 * is rolled back to the one running now (control.c). */
		if (!c->swapping) {
			snprintf(c->prev_exe, sizeof(c->prev_exe), "%s", c->exe);
			memcpy(c->prev_own, c->own, sizeof(c->own));
			c->prev_nown = c->nown;
			c->nown = 0;
		}
		c->swapping = 1;
		c->reload_failed = 0;
		/* The readers it did not write to before start counting it at
		 * its next start (spawn.c join_readers). */
		char before[STAGE_OUT_MAX][16];
		int nbefore = c->nout;
		memcpy(before, c->out_queue, sizeof(before));
		if (reshape(s, c, &np, i) == -1) {
			say(&o, "error: stage %s: a path is too long\n", c->name);
			continue;
		}
		c->join = 0;
		for (int q = 0; q < c->nout; q++) {
			int had = 0;
			for (int b = 0; b < nbefore && !had; b++)
				had = strcmp(before[b], c->out_queue[q]) == 0;
			if (!had)
				c->join |= 1u << q;
		}
		set_flush(s, c, np.stage[i].flush);
		c->reload_gen = c->gen;
		c->reloading = 1;
		/* A new stage it is to send to may yet fail to come up and be
		 * taken back out (sup_reload_undo): its program runs on until
		 * they are up (loop.c), so that nothing is sent to one that
		 * never reads. */
		c->swap_outs = !(d.what[i] & (PIPELINE_CH_EXEC | PIPELINE_CH_ARGS |
		    PIPELINE_CH_UDP));
		c->swap_nout = nbefore;
		c->swap_wait = 0;
		for (int q = 0; q < c->nout; q++) {
			const struct sup_child *r = sup_find(s, c->out_queue[q]);
			c->swap_wait |= r != NULL && r->added;
		}
		if (!c->swap_wait)
			sup_restart(s, c);
		say(&o, "swapped %s\n", c->name);
		log_info("reload: stage %s swapped", c->name);
	}
	for (int k = 0; k < d.nunchanged; k++) {
		int i = d.unchanged[k];
		struct sup_child *c = sup_find(s, np.stage[i].name);
		if (c == NULL)
			continue;
		c->level = np.stage[i].level;
		if (d.what[i] & PIPELINE_CH_FLUSH)
			set_flush(s, c, np.stage[i].flush);
	}
	for (int k = 0; k < d.nremoved; k++) {
		struct sup_child *c = sup_find(s, s->pl.stage[d.removed[k]].name);
		if (c == NULL)
			continue;
		c->retire_after = writers[k];
		c->retiring = 1;
		set_flush(s, c, 0);
		say(&o, "stopped %s\n", c->name);
		log_info("reload: stage %s removed: draining", c->name);
	}
	if (d.pipeline & PIPELINE_CH_FLUSH_MS) {
		s->cfg.flush_ms = np.flush_ms;
		if (sup_start_timer(s) == -1)
			say(&o, "error: the new flush_ms could not be set (see the log)\n");
		else
			say(&o, "flush_ms %ld\n", np.flush_ms);
	}
	/* The removed stages' entries, while they drain: a new stage that
	 * fails may yet need one back (sup_reload_undo). */
	for (int k = 0; k < d.nremoved; k++) {
		struct pipeline_stage *r = &s->pl.stage[d.removed[k]];
		int was = pipeline_find(&s->removed, r->name);
		if (was >= 0)
			pipeline_drop(&s->removed, was);
		if (pipeline_put(&s->removed, r) == -1)
			log_warnx("reload: stage %s removed: no room to keep its "
			    "entry while it drains", r->name);
	}
	pipeline_free(&s->pl);
	s->pl = np;
	sup_order(s);
	if (d.nadded + d.nremoved + d.nchanged == 0 && d.pipeline == 0)
		say(&o, "no change\n");
	log_info("reload of %s: %d started, %d swapped, %d stopped", s->cfg.file,
	    d.nadded, d.nchanged, d.nremoved);
	sup_notify_reloaded(s);
	return 0;
}
