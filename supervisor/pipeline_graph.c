/* pipeline_graph.c - the checks that need the whole pipeline file read:
 * out names, cycles, in-queues, inputs, udp addresses; then the start
 * order. And what the supervisor asks of a checked pipeline: its queues,
 * its programs, a stage taken out of it again or put back. */
#include "supervisor/pipeline_impl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest/udp.h"
#include "stage.h"

/* Keep the first error only: it is the one the user meets first. */
void
pipeline_vfail(struct pipeline_err *e, int line, const char *fmt, va_list ap)
{
	if (e->line != 0)
		return;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	e->line = line > 0 ? line : 1;
}

void
pipeline_fail(struct pipeline_err *e, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pipeline_vfail(e, line, fmt, ap);
	va_end(ap);
}

/* Add the stage called w to stage i's outs. 0, or -1 with *e set. */
static int
add_out(struct pipeline *p, int i, const char *w, struct pipeline_err *e)
{
	struct pipeline_stage *st = &p->stage[i];
	int j = pipeline_find(p, w), line = st->line.out;
	if (j == -1) {
		pipeline_fail(e, line, "out names '%s', which is not a stage", w);
		return -1;
	}
	if (j == i) {
		pipeline_fail(e, line, "stage '%s' cannot send to itself", w);
		return -1;
	}
	for (int k = 0; k < st->nout; k++)
		if (st->out[k] == j) {
			pipeline_fail(e, line, "out names '%s' twice", w);
			return -1;
		}
	if (st->nout == STAGE_OUT_MAX) {
		pipeline_fail(e, line, "out names more than %d stages (a stage has "
		    "at most %d out-queues)", STAGE_OUT_MAX, STAGE_OUT_MAX);
		return -1;
	}
	st->out[st->nout++] = j;
	p->stage[j].in_queue = 1;
	return 0;
}

/* out names into indices; who has an in-queue. 0, or -1 with *e set. */
static int
resolve_outs(struct pipeline *p, char *const *outs, struct pipeline_err *e)
{
	for (int i = 0; i < p->nstage; i++) {
		char *save = NULL;
		for (char *w = outs[i] ? strtok_r(outs[i], " \t", &save) : NULL;
		    w != NULL; w = strtok_r(NULL, " \t", &save))
			if (add_out(p, i, w, e) == -1)
				return -1;
	}
	return 0;
}

/* Depth-first search for a cycle from stage i; path holds the stages on
 * the way (state 1). Returns 1 and reports the first cycle found. */
static int
find_cycle(const struct pipeline *p, struct pipeline_err *e, int i, int *state,
    int *path, int depth)
{
	state[i] = 1;
	path[depth] = i;
	for (int k = 0; k < p->stage[i].nout; k++) {
		int j = p->stage[i].out[k];
		if (state[j] == 1) {
			/* The cycle is path[from..depth] then j again; name
			 * it from its stage that comes first in the file. */
			int from = depth;
			while (path[from] != j)
				from--;
			int len = depth - from + 1, first = from;
			for (int m = from; m <= depth; m++)
				if (path[m] < path[first])
					first = m;
			char text[PIPELINE_ERR_MAX] = "";
			size_t off = 0;
			for (int m = 0; m <= len; m++) {
				int s = path[from + (first - from + m) % len];
				off += (size_t)snprintf(text + off,
				    sizeof(text) - off, "%s%s", m ? " -> " : "",
				    p->stage[s].name);
				if (off >= sizeof(text))
					break;
			}
			pipeline_fail(e, p->stage[path[first]].line.out,
			    "cycle: %s", text);
			return 1;
		}
		if (state[j] == 0 &&
		    find_cycle(p, e, j, state, path, depth + 1))
			return 1;
	}
	state[i] = 2;
	return 0;
}

static int
level_of(struct pipeline *p, int i)
{
	struct pipeline_stage *st = &p->stage[i];
	if (st->level >= 0)
		return st->level;
	int lv = 0;
	for (int k = 0; k < st->nout; k++) {
		int l = level_of(p, st->out[k]) + 1;
		if (l > lv)
			lv = l;
	}
	return st->level = lv;
}

/* Downstream first: sinks (level 0) first, ties in file order. */
static void
start_order(struct pipeline *p)
{
	int n = 0, top = 0;
	for (int i = 0; i < p->nstage; i++)
		p->stage[i].level = -1;
	for (int i = 0; i < p->nstage; i++)
		if (level_of(p, i) > top)
			top = p->stage[i].level;
	for (int lv = 0; lv <= top; lv++)
		for (int i = 0; i < p->nstage; i++)
			if (p->stage[i].level == lv)
				p->order[n++] = i;
}

/* The same host and port: the same text, or two spellings of what binds
 * the same addresses ([::1] and [0::1], localhost and 127.0.0.1 where
 * that is all localhost resolves to; ingest/udp.c udp_same_addrs). */
static int
same_udp(const char *a, const char *b, const char *port)
{
	return strcmp(a, b) == 0 || udp_same_addrs(a, port, b, port);
}

int
pipeline_graph(struct pipeline *p, char *const *outs, int last_line,
    struct pipeline_err *e)
{
	if (p->nstage == 0) {
		pipeline_fail(e, last_line, "no stage: a pipeline needs [stage NAME] "
		    "sections");
		return -1;
	}
	for (int i = 0; i < p->nstage; i++)
		if (p->stage[i].exec == NULL)
			pipeline_fail(e, p->stage[i].line.section,
			    "stage '%s' has no exec", p->stage[i].name);
	if (e->line != 0 || resolve_outs(p, outs, e) == -1)
		return -1;
	int state[PIPELINE_STAGES_MAX] = { 0 }, path[PIPELINE_STAGES_MAX];
	for (int i = 0; i < p->nstage; i++)
		if (state[i] == 0 && find_cycle(p, e, i, state, path, 0))
			return -1;
	for (int i = 0; i < p->nstage; i++) {
		struct pipeline_stage *st = &p->stage[i];
		if (st->line.state == 0)
			st->state = st->nout == 0;
		if (st->flush && !st->in_queue)
			pipeline_fail(e, st->line.flush, "flush = yes, but no "
			    "stage sends to '%s', so it has no in-queue to write "
			    "Flush into", st->name);
		if (!st->in_queue && !st->udp)
			pipeline_fail(e, st->line.section, "stage '%s' gets no "
			    "input: no out names it and it has no udp", st->name);
		/* Port 0 is a port of the kernel's choosing, never the same
		 * twice. */
		int v6 = strchr(st->udp_host, ':') != NULL;
		int any = strcmp(st->udp_port, "0") == 0;
		for (int j = 0; j < i && st->udp && !any; j++)
			if (p->stage[j].udp &&
			    strcmp(p->stage[j].udp_port, st->udp_port) == 0 &&
			    same_udp(p->stage[j].udp_host, st->udp_host,
			    st->udp_port))
				pipeline_fail(e, st->line.udp, "udp %s%s%s:%s: stage "
				    "'%s' binds it already (line %d)", v6 ? "[" : "",
				    st->udp_host, v6 ? "]" : "", st->udp_port,
				    p->stage[j].name, p->stage[j].line.udp);
	}
	if (e->line != 0)
		return -1;
	start_order(p);
	return 0;
}

void
pipeline_drop(struct pipeline *p, int i)
{
	struct pipeline_stage *st = &p->stage[i];
	free(st->exec);
	for (int k = 0; st->argv != NULL && k < st->nargs; k++)
		free(st->argv[k]);
	free(st->argv);
	memmove(st, st + 1, (size_t)(p->nstage - i - 1) * sizeof(*st));
	p->nstage--;
	memset(&p->stage[p->nstage], 0, sizeof(*st));
	for (int j = 0; j < p->nstage; j++) {
		struct pipeline_stage *o = &p->stage[j];
		int n = 0;
		for (int k = 0; k < o->nout; k++)
			if (o->out[k] != i)
				o->out[n++] = o->out[k] > i ? o->out[k] - 1 : o->out[k];
		o->nout = n;
	}
	start_order(p);
}

int
pipeline_put(struct pipeline *p, struct pipeline_stage *st)
{
	if (p->nstage >= PIPELINE_STAGES_MAX)
		return -1;
	p->stage[p->nstage] = *st;
	p->stage[p->nstage].nout = 0;
	memset(st, 0, sizeof(*st));
	p->nstage++;
	start_order(p);
	return p->nstage - 1;
}

/* Stage b is a, or downstream of it. */
static int
reaches(const struct pipeline *p, int a, int b)
{
	if (a == b)
		return 1;
	for (int k = 0; k < p->stage[a].nout; k++)
		if (reaches(p, p->stage[a].out[k], b))
			return 1;
	return 0;
}

int
pipeline_link(struct pipeline *p, int from, int to)
{
	struct pipeline_stage *st = &p->stage[from];
	for (int k = 0; k < st->nout; k++)
		if (st->out[k] == to)
			return 0;
	if (st->nout == STAGE_OUT_MAX || reaches(p, to, from))
		return -1;
	st->out[st->nout++] = to;
	p->stage[to].in_queue = 1;
	start_order(p);
	return 0;
}

int
pipeline_nqueues(const struct pipeline *p)
{
	int n = 0;
	for (int i = 0; i < p->nstage; i++)
		n += p->stage[i].in_queue;
	return n;
}

int
pipeline_exec_path(const struct pipeline_stage *st, const char *bindir,
    char *buf, size_t cap)
{
	int n = st->exec[0] == '/' ? snprintf(buf, cap, "%s", st->exec)
	    : snprintf(buf, cap, "%s/%s", bindir, st->exec);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int
pipeline_exec_ok(const char *path)
{
	struct stat st;
	if (access(path, X_OK) == -1 || stat(path, &st) == -1)
		return -1;
	if (!S_ISREG(st.st_mode)) {
		errno = S_ISDIR(st.st_mode) ? EISDIR : EACCES;
		return -1;
	}
	return 0;
}

int
pipeline_check_execs(const struct pipeline *p, const char *bindir, char *err,
    size_t errcap)
{
	char path[PATH_MAX];
	for (int i = 0; i < p->nstage; i++) {
		const struct pipeline_stage *st = &p->stage[i];
		const char *why = NULL;
		if (pipeline_exec_path(st, bindir, path, sizeof(path)) == -1)
			why = "the path is too long";
		else if (pipeline_exec_ok(path) == -1)
			why = strerror(errno);
		if (why != NULL) {
			snprintf(err, errcap, "%s:%d: exec %s: %s", p->file,
			    st->line.exec, path, why);
			return -1;
		}
	}
	return 0;
}
