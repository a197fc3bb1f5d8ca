/* pipeline_seed.c - the built-in pipeline (the seed's five stages, shaped
 * by the supervisor's options) written as pipeline-file text and read by
 * the same parser as any file; printing a pipeline back as a file; and
 * comparing two pipelines, for a reload. */
#include "supervisor/pipeline.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUILTIN_NAME "built-in pipeline"
#define WRAP 76     /* comment lines, well under PIPELINE_LINE_MAX */

void
pipeline_opts_default(struct pipeline_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	o->port = "1990";
	o->limit = 100;
	o->eps = 0.01;
	o->flush_ms = PIPELINE_FLUSH_MS_DEFAULT;
	o->transport = CHAN_MQUEUE;
	o->msg_bytes = PIPELINE_MSG_AUTO;
}

/* One argument as the args key reads it back: bare when it can be, else
 * in double quotes with \" \\ and \; escaped. Bare it cannot be when it is
 * empty, holds a quote or white space (libinih trims any isspace at the
 * ends of a value), or starts with ';' (after a blank: a comment). */
static void
put_arg(FILE *f, const char *a)
{
	int bare = *a != '\0' && *a != ';' && strchr(a, '"') == NULL;
	for (const char *q = a; bare && *q != '\0'; q++)
		bare = !isspace((unsigned char)*q);
	if (bare) {
		fputs(a, f);
		return;
	}
	fputc('"', f);
	for (; *a != '\0'; a++) {
		if (*a == '"' || *a == '\\' || *a == ';')
			fputc('\\', f);
		fputc(*a, f);
	}
	fputc('"', f);
}

static void
put_args(FILE *f, const char *const *argv, int n)
{
	if (n == 0)
		return;
	fputs("args =", f);
	for (int i = 0; i < n; i++) {
		fputc(' ', f);
		put_arg(f, argv[i]);
	}
	fputc('\n', f);
}

static void
put_udp(FILE *f, const char *host, const char *port)
{
	int v6 = strchr(host, ':') != NULL && host[0] != '[';
	fprintf(f, "udp = %s%s%s:%s\n", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

/* The shortest text strtod reads back as the same double. */
static void
fmt_double(char *buf, size_t cap, double v)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, cap, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

char *
pipeline_builtin_text(const struct pipeline_opts *o)
{
	char *text = NULL, eps[32];
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (f == NULL)
		return NULL;
	/* Both egresses get --max-names after their own options; -g and
	 * --prom add a sink stage each, fed by both egresses. */
	const char *ckms[4] = { "--error", eps }, *cma[2];
	int nck = 2, ncm = 0;
	if (o->max_names != NULL) {
		ckms[nck++] = cma[ncm++] = "--max-names";
		ckms[nck++] = cma[ncm++] = o->max_names;
	}
	const char *g[6];
	int ng = 0;
	if (o->graphite != NULL) {
		g[ng++] = "--graphite";
		g[ng++] = o->graphite;
		if (o->graphite_prefix != NULL) {
			g[ng++] = "--graphite-prefix";
			g[ng++] = o->graphite_prefix;
		}
		if (o->graphite_buffer != NULL) {
			g[ng++] = "--graphite-buffer";
			g[ng++] = o->graphite_buffer;
		}
	}
	const char *prom[2] = { "--listen", o->prom };
	char outs[32];
	snprintf(outs, sizeof(outs), "%s%s", o->graphite ? " carbon" : "",
	    o->prom ? " prom" : "");
	fmt_double(eps, sizeof(eps), o->eps);

	fprintf(f, "[pipeline]\ntransport = %s\n", chan_kind_name(o->transport));
	if (o->msg_bytes == PIPELINE_MSG_AUTO)
		fprintf(f, "msg_bytes = auto\n");
	else
		fprintf(f, "msg_bytes = %zu\n", o->msg_bytes);
	fprintf(f, "flush_ms = %ld\n", o->flush_ms);
	/* ingest's sockets come from the supervisor (--udp-fd). */
	fprintf(f, "\n[stage ingest]\nexec = telem-ingest\n");
	put_udp(f, o->host, o->port);
	fprintf(f, "out = low high\n");
	fprintf(f, "\n[stage low]\nexec = telem-filter\n"
	    "args = --keep-below %u\nout = ckms\nflush = yes\n", (unsigned)o->limit);
	fprintf(f, "\n[stage high]\nexec = telem-filter\n"
	    "args = --keep-above %u\nout = cma\nflush = yes\n", (unsigned)o->limit);
	fprintf(f, "\n[stage ckms]\nexec = telem-egress-ckms\n");
	put_args(f, ckms, nck);
	/* With sinks the egresses have an out, and keep their state. */
	if (outs[0] != '\0')
		fprintf(f, "out =%s\nstate = yes\n", outs);
	fprintf(f, "\n[stage cma]\nexec = telem-egress-cma\n");
	put_args(f, cma, ncm);
	if (outs[0] != '\0')
		fprintf(f, "out =%s\nstate = yes\n", outs);
	if (o->graphite != NULL) {
		fprintf(f, "\n[stage carbon]\nexec = telem-sink-carbon\n");
		put_args(f, g, ng);
		fprintf(f, "state = no\n");
	}
	if (o->prom != NULL) {
		fprintf(f, "\n[stage prom]\nexec = telem-sink-prom\n");
		put_args(f, prom, 2);
		fprintf(f, "state = no\n");
	}
	if (fclose(f) == EOF) {
		free(text);
		errno = ENOMEM;
		return NULL;
	}
	return text;
}

/* A line of the built-in text longer than a file's: the options made it
 * (-g with --graphite-prefix and --graphite-buffer near their limits, a
 * long -H name), so say which stage and what, not a line number of a
 * file nobody wrote. 0 if every line fits. */
static int
long_line(const char *text, char *err, size_t errcap)
{
	char stage[PIPELINE_NAME_MAX + 1] = "";
	for (const char *l = text; *l != '\0';) {
		size_t n = strcspn(l, "\n");
		if (strncmp(l, "[stage ", 7) == 0)
			snprintf(stage, sizeof(stage), "%.*s", (int)strcspn(l + 7, "]"),
			    l + 7);
		if (n > PIPELINE_LINE_MAX) {
			snprintf(err, errcap, "%s: the options make stage %s's line "
			    "'%.40s...' %zu characters long, more than the %d a line of a "
			    "pipeline file holds: shorten them", BUILTIN_NAME, stage, l,
			    n, PIPELINE_LINE_MAX);
			return -1;
		}
		l += n + (l[n] == '\n');
	}
	return 0;
}

int
pipeline_builtin(struct pipeline *p, const struct pipeline_opts *o, char *err,
    size_t errcap)
{
	char *text = pipeline_builtin_text(o);
	if (text == NULL) {
		memset(p, 0, sizeof(*p));
		snprintf(err, errcap, "%s: %s", BUILTIN_NAME, strerror(errno));
		return -1;
	}
	if (long_line(text, err, errcap) == -1) {
		memset(p, 0, sizeof(*p));
		free(text);
		return -1;
	}
	int rc = pipeline_parse_string(p, BUILTIN_NAME, text, err, errcap);
	free(text);
	return rc;
}

/* Comment lines "# words...", wrapped at WRAP columns; a continuation
 * starts with "#   ". */
struct para {
	FILE *f;
	size_t col;
};

static void
para_word(struct para *pa, const char *w)
{
	size_t n = strlen(w);
	if (pa->col == 0) {
		fputs("#", pa->f);
		pa->col = 1;
	} else if (pa->col + 1 + n > WRAP) {
		fputs("\n#  ", pa->f);
		pa->col = 4;
	}
	fprintf(pa->f, " %s", w);
	pa->col += 1 + n;
}

static void
para_end(struct para *pa)
{
	if (pa->col > 0)
		fputc('\n', pa->f);
	pa->col = 0;
}

static void
para_text(struct para *pa, const char *text)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", text);
	char *save = NULL;
	for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
		para_word(pa, w);
}

static const char header[] =
    "# A telem pipeline file: telem-supervisor -c FILE runs it, and\n"
    "# telem-supervisor --print-pipeline prints the built-in one.\n"
    "#\n"
    "# [pipeline]    transport = mqueue or shm\n"
    "#               msg_bytes = auto, or 1024 .. 1048576 bytes; auto is 8192\n"
    "#                 when every queue fits what is left of the user's\n"
    "#                 RLIMIT_MSGQUEUE budget, else the largest size that fits\n"
    "#               flush_ms = the Flush interval in milliseconds\n"
    "# [stage NAME]  NAME: 1 to 15 of a-z 0-9 _ -\n"
    "#               exec = a bare name (one of telem's stages, found where\n"
    "#                 telem-supervisor finds them) or an absolute path\n"
    "#               args = split on blanks, no shell; \"double quotes\" keep\n"
    "#                 blanks, and inside them \\\" \\\\ and \\; stand for \" \\ and ;\n"
    "#               out = the stages it sends to; each gets an in-queue\n"
    "#                 named after it\n"
    "#               flush = yes: the supervisor writes Flush into its in-queue\n"
    "#               udp = host:port, [IPv6-address]:port or name:port, bound\n"
    "#                 by the supervisor and lent to the stage\n"
    "#               state = yes: the stage is given --state FILE for its\n"
    "#                 aggregates (default: yes when it has no out)\n"
    "# A line starting with ';' or '#' is a comment; so is ' ;' to the end of\n"
    "# a line. Lines hold at most 197 characters.\n";

/* "# NAME: reads UDP HOST:PORT and its in-queue (written by A B, and
 * Flush); sends to C D", wrapped. */
static void
put_stage_comment(struct para *pa, const struct pipeline *p, int i)
{
	const struct pipeline_stage *st = &p->stage[i];
	char buf[PIPELINE_HOST_MAX + 64];
	int nw = 0, writers = 0;
	for (int j = 0; j < p->nstage; j++)
		for (int k = 0; k < p->stage[j].nout; k++)
			writers += p->stage[j].out[k] == i;
	snprintf(buf, sizeof(buf), "%s:", st->name);
	para_word(pa, buf);
	para_word(pa, "reads");
	if (st->udp) {
		int v6 = strchr(st->udp_host, ':') != NULL;
		para_word(pa, "UDP");
		snprintf(buf, sizeof(buf), "%s%s%s:%s%s", v6 ? "[" : "",
		    st->udp_host, v6 ? "]" : "", st->udp_port, st->in_queue ? "" : ";");
		para_word(pa, buf);
		if (st->in_queue)
			para_word(pa, "and");
	}
	if (st->in_queue) {
		para_text(pa, "its in-queue (written by");
		for (int j = 0; j < p->nstage; j++)
			for (int k = 0; k < p->stage[j].nout; k++)
				if (p->stage[j].out[k] == i) {
					snprintf(buf, sizeof(buf), "%s%s", p->stage[j].name,
					    ++nw < writers ? "" : st->flush ? "," : ");");
					para_word(pa, buf);
				}
		if (st->flush)
			para_text(pa, "and Flush);");
	}
	para_text(pa, st->nout ? "sends to" : "sends nowhere");
	for (int k = 0; k < st->nout; k++)
		para_word(pa, p->stage[st->out[k]].name);
	para_end(pa);
}

int
pipeline_print(FILE *f, const struct pipeline *p)
{
	struct para pa = { f, 0 };
	fputs(header, f);
	fputs("#\n", f);
	para_text(&pa, "Start order (downstream first):");
	for (int i = 0; i < p->nstage; i++)
		para_word(&pa, p->stage[p->order[i]].name);
	para_end(&pa);

	fprintf(f, "\n[pipeline]\ntransport = %s\n", chan_kind_name(p->transport));
	if (p->msg_bytes == PIPELINE_MSG_AUTO)
		fprintf(f, "msg_bytes = auto\n");
	else
		fprintf(f, "msg_bytes = %zu\n", p->msg_bytes);
	fprintf(f, "flush_ms = %ld\n", p->flush_ms);
	for (int i = 0; i < p->nstage; i++) {
		const struct pipeline_stage *st = &p->stage[i];
		fputc('\n', f);
		put_stage_comment(&pa, p, i);
		fprintf(f, "[stage %s]\nexec = %s\n", st->name, st->exec);
		put_args(f, (const char *const *)st->argv, st->nargs);
		if (st->udp)
			put_udp(f, st->udp_host, st->udp_port);
		if (st->nout > 0) {
			fputs("out =", f);
			for (int k = 0; k < st->nout; k++)
				fprintf(f, " %s", p->stage[st->out[k]].name);
			fputc('\n', f);
		}
		if (st->flush)
			fputs("flush = yes\n", f);
		if (st->state != (st->nout == 0))
			fprintf(f, "state = %s\n", st->state ? "yes" : "no");
	}
	return fflush(f) == EOF || ferror(f) ? -1 : 0;
}

static int
same_args(const struct pipeline_stage *a, const struct pipeline_stage *b)
{
	if (a->nargs != b->nargs)
		return 0;
	for (int i = 0; i < a->nargs; i++)
		if (strcmp(a->argv[i], b->argv[i]) != 0)
			return 0;
	return 1;
}

/* The out lists as sets of names (the order of out is not a change). */
static int
same_outs(const struct pipeline *pa, const struct pipeline_stage *a,
    const struct pipeline *pb, const struct pipeline_stage *b)
{
	if (a->nout != b->nout)
		return 0;
	for (int i = 0; i < a->nout; i++) {
		int found = 0;
		for (int j = 0; j < b->nout && !found; j++)
			found = strcmp(pa->stage[a->out[i]].name,
			    pb->stage[b->out[j]].name) == 0;
		if (!found)
			return 0;
	}
	return 1;
}

static unsigned
stage_changes(const struct pipeline *pa, const struct pipeline_stage *a,
    const struct pipeline *pb, const struct pipeline_stage *b)
{
	unsigned w = 0;
	if (strcmp(a->exec, b->exec) != 0)
		w |= PIPELINE_CH_EXEC;
	if (!same_args(a, b))
		w |= PIPELINE_CH_ARGS;
	if (!same_outs(pa, a, pb, b))
		w |= PIPELINE_CH_OUT;
	if (a->in_queue != b->in_queue)
		w |= PIPELINE_CH_IN;
	if (a->udp != b->udp || (a->udp && (strcmp(a->udp_host, b->udp_host) != 0 ||
	    strcmp(a->udp_port, b->udp_port) != 0)))
		w |= PIPELINE_CH_UDP;
	if (a->flush != b->flush)
		w |= PIPELINE_CH_FLUSH;
	if (a->state != b->state)
		w |= PIPELINE_CH_ARGS;   /* --state comes or goes: a swap */
	return w;
}

void
pipeline_diff(const struct pipeline *old, const struct pipeline *new,
    struct pipeline_diff *d)
{
	memset(d, 0, sizeof(*d));
	if (old->transport != new->transport)
		d->pipeline |= PIPELINE_CH_TRANSPORT;
	if (old->msg_bytes != new->msg_bytes)
		d->pipeline |= PIPELINE_CH_MSG_BYTES;
	if (old->flush_ms != new->flush_ms)
		d->pipeline |= PIPELINE_CH_FLUSH_MS;
	for (int k = 0; k < new->nstage; k++) {
		int i = new->order[k];
		int o = pipeline_find(old, new->stage[i].name);
		d->old_of[i] = o;
		if (o == -1) {
			d->added[d->nadded++] = i;
			continue;
		}
		d->what[i] = stage_changes(old, &old->stage[o], new, &new->stage[i]);
		if (d->what[i] & PIPELINE_CH_SWAP)
			d->changed[d->nchanged++] = i;
		else
			d->unchanged[d->nunchanged++] = i;
	}
	for (int k = old->nstage - 1; k >= 0; k--) {
		int o = old->order[k];
		if (pipeline_find(new, old->stage[o].name) == -1)
			d->removed[d->nremoved++] = o;
	}
}

int
pipeline_equal(const struct pipeline *a, const struct pipeline *b)
{
	if (a->transport != b->transport || a->msg_bytes != b->msg_bytes ||
	    a->flush_ms != b->flush_ms || a->nstage != b->nstage)
		return 0;
	for (int i = 0; i < a->nstage; i++) {
		const struct pipeline_stage *x = &a->stage[i], *y = &b->stage[i];
		if (strcmp(x->name, y->name) != 0 || a->order[i] != b->order[i] ||
		    x->level != y->level || stage_changes(a, x, b, y) != 0)
			return 0;
		/* Same order of out too: the command lines are the same. */
		for (int k = 0; k < x->nout; k++)
			if (x->out[k] != y->out[k])
				return 0;
	}
	return 1;
}
