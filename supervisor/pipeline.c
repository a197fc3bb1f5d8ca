/* pipeline.c - reading a pipeline file and checking it whole before the
 * supervisor creates anything (the format is in pipeline.h).
 *
 * libinih splits `key = value` lines and strips comments and blanks. It is
 * built on Debian without INI_HANDLER_LINENO, so its handler is not told
 * the line; instead libinih reads through our reader (ini_parse_stream),
 * which hands it exactly one line of the file per call and counts them:
 * when the handler runs, the line it is about is the last one the reader
 * gave. The reader also takes the section headers itself (so that an empty
 * or unknown section is seen, which the handler never is), refuses lines
 * longer than libinih's buffer instead of letting libinih cut them in two,
 * and drops leading blanks so that libinih never takes an indented line
 * for the continuation of the previous value. */
#include "supervisor/pipeline.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor/pipeline_impl.h"

enum sec { SEC_NONE, SEC_PIPELINE, SEC_STAGE, SEC_IGNORE };

struct ctx {
	struct pipeline *p;
	FILE *f;
	char *buf;                  /* getline's */
	size_t bufcap;
	int lineno;                 /* of the line last given to libinih */
	enum sec sec;
	int cur;                    /* the stage being read */
	char *outs[PIPELINE_STAGES_MAX];   /* out values, resolved at the end */
	struct pipeline_err e;      /* the first error */
};

/* The instance's own objects, and the last word of the state files'
 * names (/dev/shm/telem.INSTANCE.STAGE.state, .state.tmp, .state.bad):
 * instance names may hold dots, so a stage called "state" in instance
 * "a.b" would share its shm ring's name with stage b's state file in
 * instance "a". */
static const char *const reserved[] = { "stats", "lock", "state", "tmp",
	"bad" };

static void bad(struct ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* An error about the line being read. */
static void
bad(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pipeline_vfail(&c->e, c->lineno, fmt, ap);
	va_end(ap);
}

static int
is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

static int
name_ok(const char *s, size_t n)
{
	if (n == 0 || n > PIPELINE_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return 0;
	return 1;
}

int
pipeline_find(const struct pipeline *p, const char *name)
{
	for (int i = 0; i < p->nstage; i++)
		if (strcmp(p->stage[i].name, name) == 0)
			return i;
	return -1;
}

/* "[stage NAME]" or "[pipeline]": s starts at the '['. */
static void
on_section(struct ctx *c, const char *s)
{
	struct pipeline *p = c->p;
	const char *end = strchr(s, ']');
	c->sec = SEC_IGNORE;
	if (end == NULL) {
		bad(c, "a section header needs a closing ']'");
		return;
	}
	const char *t = end + 1;
	while (is_blank(*t))
		t++;
	if (*t != '\0' && *t != ';' && *t != '#') {
		bad(c, "unexpected text after ']': %s", t);
		return;
	}
	/* Up to three words between the brackets. */
	const char *w[3];
	size_t wl[3];
	int nw = 0;
	for (const char *q = s + 1; q < end;) {
		while (q < end && is_blank(*q))
			q++;
		if (q == end)
			break;
		const char *b = q;
		while (q < end && !is_blank(*q))
			q++;
		if (nw < 3) {
			w[nw] = b;
			wl[nw] = (size_t)(q - b);
		}
		nw++;
	}
	int inner = (int)(end - s - 1);
	if (nw == 1 && wl[0] == 8 && memcmp(w[0], "pipeline", 8) == 0) {
		if (p->line.section != 0) {
			bad(c, "[pipeline] appears twice (first at line %d)",
			    p->line.section);
			return;
		}
		p->line.section = c->lineno;
		c->sec = SEC_PIPELINE;
		return;
	}
	if (nw == 0 || wl[0] != 5 || memcmp(w[0], "stage", 5) != 0) {
		bad(c, "unknown section [%.*s] (expected [pipeline] or "
		    "[stage NAME])", inner, s + 1);
		return;
	}
	if (nw == 1) {
		bad(c, "a stage needs a name: [stage NAME]");
		return;
	}
	if (nw > 2 || !name_ok(w[1], wl[1])) {
		/* Everything after "stage", as written, is the bad name. */
		const char *nb = w[1];
		int nl = (int)(end - nb);
		while (nl > 0 && is_blank(nb[nl - 1]))
			nl--;
		bad(c, "stage name '%.*s': must be 1 to %d characters "
		    "of a-z, 0-9, '_' and '-'", nl, nb, PIPELINE_NAME_MAX);
		return;
	}
	char name[PIPELINE_NAME_MAX + 1];
	memcpy(name, w[1], wl[1]);
	name[wl[1]] = '\0';
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcmp(name, reserved[i]) == 0) {
			bad(c, "stage name '%s' is reserved (the "
			    "instance's IPC objects use it)", name);
			return;
		}
	int dup = pipeline_find(p, name);
	if (dup != -1) {
		bad(c, "stage '%s' is defined twice (first at line %d)",
		    name, p->stage[dup].line.section);
		return;
	}
	if (p->nstage == PIPELINE_STAGES_MAX) {
		bad(c, "more than %d stages", PIPELINE_STAGES_MAX);
		return;
	}
	c->cur = p->nstage++;
	struct pipeline_stage *st = &p->stage[c->cur];
	memcpy(st->name, name, sizeof(name));
	st->line.section = c->lineno;
	c->sec = SEC_STAGE;
}

/* libinih's reader: one line of the file per call, as fgets would give it
 * (num is libinih's buffer; it asks for room for "\r\n\0" beyond the text,
 * hence num - 3). */
static char *
reader(char *str, int num, void *stream)
{
	struct ctx *c = stream;
	ssize_t n = getline(&c->buf, &c->bufcap, c->f);
	if (n == -1) {
		if (ferror(c->f))
			bad(c, "read: %s", strerror(errno));
		return NULL;
	}
	c->lineno++;
	size_t len = (size_t)n;
	if (len > 0 && c->buf[len - 1] == '\n')
		len--;
	if (len > 0 && c->buf[len - 1] == '\r')
		len--;
	c->buf[len] = '\0';
	if (strlen(c->buf) != len) {
		bad(c, "the line holds a NUL byte");
		strcpy(str, "\n");
		return str;
	}
	if (num < 4 || len > (size_t)num - 3) {
		bad(c, "the line is longer than %d characters",
		    num < 4 ? 0 : num - 3);
		strcpy(str, "\n");
		return str;
	}
	const char *s = c->buf;
	if (c->lineno == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;   /* a UTF-8 byte order mark */
	while (is_blank(*s))
		s++;
	if (*s == '[')
		on_section(c, s);
	snprintf(str, (size_t)num, "%s\n", s);
	return str;
}

/* A whole number in lo..hi, digits only. */
static int
number(const char *s, long lo, long hi, long *v)
{
	size_t n = strlen(s);
	if (n == 0 || n > 12 || strspn(s, "0123456789") != n)
		return -1;
	*v = strtol(s, NULL, 10);
	return *v < lo || *v > hi ? -1 : 0;
}

static int
parse_host(const char *h, size_t n, int bracketed)
{
	char tmp[PIPELINE_HOST_MAX + 1];
	unsigned char addr[16];
	if (n == 0 || n > PIPELINE_HOST_MAX)
		return -1;
	memcpy(tmp, h, n);
	tmp[n] = '\0';
	if (bracketed)
		return inet_pton(AF_INET6, tmp, addr) == 1 ? 0 : -1;
	/* All digits and dots: it must be an IPv4 address, not a name. */
	if (strspn(tmp, "0123456789.") == n)
		return inet_pton(AF_INET, tmp, addr) == 1 ? 0 : -1;
	/* A host name: labels of letters, digits and '-', 1..63 each, not
	 * starting or ending with '-'. */
	size_t lab = 0;
	for (size_t i = 0; i <= n; i++) {
		char ch = tmp[i];
		if (ch == '.' || ch == '\0') {
			if (lab == 0 || lab > 63 || tmp[i - 1] == '-')
				return -1;
			lab = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-'))
			return -1;
		if (lab == 0 && ch == '-')
			return -1;
		lab++;
	}
	return 0;
}

int
pipeline_host_ok(const char *host)
{
	return parse_host(host, strlen(host), strchr(host, ':') != NULL) == 0;
}

/* host:port, [v6]:port or name:port into the stage. */
static int
parse_udp(struct pipeline_stage *st, const char *v, const char **why)
{
	const char *h = v, *colon;
	size_t hl;
	int br = *v == '[';
	if (br) {
		const char *e = strchr(v, ']');
		if (e == NULL || e[1] != ':') {
			*why = "an IPv6 address is written [address]:port";
			return -1;
		}
		h = v + 1;
		hl = (size_t)(e - h);
		colon = e + 1;
	} else {
		colon = strrchr(v, ':');
		if (colon == NULL) {
			*why = "expected host:port";
			return -1;
		}
		if (memchr(v, ':', (size_t)(colon - v)) != NULL) {
			*why = "an IPv6 address is written [address]:port";
			return -1;
		}
		hl = (size_t)(colon - v);
	}
	long port;
	if (number(colon + 1, 0, 65535, &port) == -1) {
		*why = "the port must be a whole number in 0..65535";
		return -1;
	}
	if (parse_host(h, hl, br) == -1) {
		*why = br ? "not an IPv6 address"
		    : "not an IPv4 address or host name";
		return -1;
	}
	memcpy(st->udp_host, h, hl);
	st->udp_host[hl] = '\0';
	snprintf(st->udp_port, sizeof(st->udp_port), "%ld", port);
	st->udp = 1;
	return 0;
}

int
pipeline_split_args(const char *s, char ***argvp, const char **why)
{
	char **argv = calloc(PIPELINE_ARGS_MAX + 1, sizeof(*argv));
	char *word = malloc(strlen(s) + 1);
	int n = 0;
	*argvp = NULL;
	if (argv == NULL || word == NULL) {
		*why = "out of memory";
		goto bad;
	}
	for (;;) {
		while (is_blank(*s))
			s++;
		if (*s == '\0')
			break;
		size_t w = 0;
		while (*s != '\0' && !is_blank(*s)) {
			if (*s != '"') {
				word[w++] = *s++;
				continue;
			}
			for (s++; *s != '"'; s++) {
				if (*s == '\0') {
					*why = "a double quote is not closed";
					goto bad;
				}
				if (*s == '\\' && (*++s == '\0' ||
				    strchr("\"\\;", *s) == NULL)) {
					*why = "inside quotes a backslash escapes "
					    "only \\\", \\\\ and \\;";
					goto bad;
				}
				word[w++] = *s;
			}
			s++;
		}
		if (n == PIPELINE_ARGS_MAX) {
			*why = "more than 32 arguments";
			goto bad;
		}
		word[w] = '\0';
		if ((argv[n] = strdup(word)) == NULL) {
			*why = "out of memory";
			goto bad;
		}
		n++;
	}
	free(word);
	*argvp = argv;
	return n;
bad:
	for (int i = 0; i < n; i++)
		free(argv[i]);
	free(argv);
	free(word);
	return -1;
}

const char *
pipeline_arg_reserved(const char *w)
{
	/* What the supervisor gives every stage itself (spawn.c); a second
	 * one after it would win: another instance's queues, another stage's
	 * counters, readers and writers the books do not know. */
	static const char *const longs[] = { "instance", "transport", "in", "out",
		"slot", "ready-fd", "udp-fd" };
	if (w[0] == '-' && w[1] == '-' && w[2] != '\0') {
		size_t n = strcspn(w + 2, "="), nl = sizeof(longs) / sizeof(longs[0]);
		for (size_t i = 0; i < nl; i++)
			if (n == strlen(longs[i]) && strncmp(w + 2, longs[i], n) == 0)
				return longs[i];
		/* getopt_long takes an abbreviation too. */
		for (size_t i = 0; i < nl; i++)
			if (n < strlen(longs[i]) && strncmp(w + 2, longs[i], n) == 0)
				return longs[i];
		return NULL;
	}
	/* -i and -t, alone or after flags in one word (-vi). */
	for (const char *c = w[0] == '-' ? w + 1 : ""; *c != '\0'; c++) {
		if (*c == 'i')
			return "instance";
		if (*c == 't')
			return "transport";
		if (strchr("hvqV", *c) == NULL)
			break;
	}
	return NULL;
}

/* Record a key's line; refuse it the second time. */
static int
first_time(struct ctx *c, int *line, const char *name)
{
	if (*line != 0) {
		bad(c, "%s is given twice in this section (first at "
		    "line %d)", name, *line);
		return 0;
	}
	*line = c->lineno;
	return 1;
}

static void
on_pipeline_key(struct ctx *c, const char *name, const char *value)
{
	struct pipeline *p = c->p;
	long v;
	if (strcmp(name, "transport") == 0) {
		if (first_time(c, &p->line.transport, name) &&
		    chan_kind_parse(value, &p->transport) == -1)
			bad(c, "transport '%s': must be mqueue or shm", value);
	} else if (strcmp(name, "msg_bytes") == 0) {
		if (!first_time(c, &p->line.msg_bytes, name))
			return;
		if (strcmp(value, "auto") == 0)
			p->msg_bytes = PIPELINE_MSG_AUTO;
		else if (number(value, PIPELINE_MSG_MIN, PIPELINE_MSG_MAX, &v) == -1)
			bad(c, "msg_bytes '%s': must be auto or a whole number "
			    "in %d..%d", value, PIPELINE_MSG_MIN, PIPELINE_MSG_MAX);
		else
			p->msg_bytes = (size_t)v;
	} else if (strcmp(name, "flush_ms") == 0) {
		if (!first_time(c, &p->line.flush_ms, name))
			return;
		if (number(value, 1, PIPELINE_FLUSH_MS_MAX, &v) == 0)
			p->flush_ms = v;
		else
			bad(c, "flush_ms '%s': must be a whole number in "
			    "1..%d", value, PIPELINE_FLUSH_MS_MAX);
	} else {
		bad(c, "unknown key '%s' in [pipeline] (expected "
		    "transport, msg_bytes or flush_ms)", name);
	}
}

static void
on_stage_key(struct ctx *c, const char *name, const char *value)
{
	struct pipeline_stage *st = &c->p->stage[c->cur];
	const char *why;
	if (strcmp(name, "exec") == 0) {
		if (!first_time(c, &st->line.exec, name))
			return;
		if (*value == '\0')
			bad(c, "exec is empty");
		else if ((strchr(value, '/') && *value != '/') ||
		    strcmp(value, ".") == 0 || strcmp(value, "..") == 0)
			bad(c, "exec '%s': must be a bare name (one of "
			    "telem's stages) or an absolute path", value);
		else if ((st->exec = strdup(value)) == NULL)
			bad(c, "out of memory");
	} else if (strcmp(name, "args") == 0) {
		if (!first_time(c, &st->line.args, name))
			return;
		st->nargs = pipeline_split_args(value, &st->argv, &why);
		if (st->nargs == -1) {
			st->nargs = 0;
			bad(c, "args: %s", why);
		}
		for (int k = 0; k < st->nargs; k++)
			if ((why = pipeline_arg_reserved(st->argv[k])) != NULL) {
				bad(c, "args: '%s' would give --%s, which the "
				    "supervisor gives each stage itself", st->argv[k],
				    why);
				break;
			}
	} else if (strcmp(name, "out") == 0) {
		if (first_time(c, &st->line.out, name) &&
		    (c->outs[c->cur] = strdup(value)) == NULL)
			bad(c, "out of memory");
	} else if (strcmp(name, "flush") == 0) {
		if (!first_time(c, &st->line.flush, name))
			return;
		if (strcmp(value, "yes") == 0)
			st->flush = 1;
		else if (strcmp(value, "no") == 0)
			st->flush = 0;
		else
			bad(c, "flush '%s': must be yes or no", value);
	} else if (strcmp(name, "state") == 0) {
		if (!first_time(c, &st->line.state, name))
			return;
		if (strcmp(value, "yes") == 0)
			st->state = 1;
		else if (strcmp(value, "no") == 0)
			st->state = 0;
		else
			bad(c, "state '%s': must be yes or no", value);
	} else if (strcmp(name, "udp") == 0) {
		if (first_time(c, &st->line.udp, name) &&
		    parse_udp(st, value, &why) == -1)
			bad(c, "udp '%s': %s", value, why);
	} else {
		bad(c, "unknown key '%s' in [stage %s] (expected exec, "
		    "args, out, flush, udp or state)", name, st->name);
	}
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct ctx *c = user;
	(void)section;   /* ours, from the reader, also knows bad sections */
	switch (c->sec) {
	case SEC_NONE:
		bad(c, "'%s' is outside any section (put it under "
		    "[pipeline] or [stage NAME])", name);
		break;
	case SEC_PIPELINE:
		on_pipeline_key(c, name, value);
		break;
	case SEC_STAGE:
		on_stage_key(c, name, value);
		break;
	case SEC_IGNORE:
		break;   /* its header was wrong, and said so */
	}
	return 1;
}

static void
empty(struct pipeline *p)
{
	memset(p, 0, sizeof(*p));
	p->transport = CHAN_MQUEUE;
	p->msg_bytes = PIPELINE_MSG_AUTO;
	p->flush_ms = PIPELINE_FLUSH_MS_DEFAULT;
}

void
pipeline_free(struct pipeline *p)
{
	for (int i = 0; i < p->nstage; i++) {
		struct pipeline_stage *st = &p->stage[i];
		free(st->exec);
		for (int k = 0; st->argv != NULL && k < st->nargs; k++)
			free(st->argv[k]);
		free(st->argv);
	}
	free(p->file);
	empty(p);
}

/* Parse the open stream f as the file `name`. */
static int
parse_stream(struct pipeline *p, const char *name, FILE *f, char *err,
    size_t errcap)
{
	struct ctx c = { .p = p, .f = f, .sec = SEC_NONE };
	empty(p);
	int rc = ini_parse_stream(reader, &c, handler, &c);
	/* libinih's own complaint: a line that is neither a comment, a
	 * section nor key = value (ours, about the same line, say more). */
	if (rc > 0 && (c.e.line == 0 || rc < c.e.line)) {
		c.e.line = 0;
		pipeline_fail(&c.e, rc, "expected 'key = value', [section] or "
		    "a comment");
	} else if (rc < 0 && c.e.line == 0) {
		pipeline_fail(&c.e, c.lineno, "out of memory");
	}
	if (c.e.line == 0)
		pipeline_graph(p, c.outs, c.lineno, &c.e);
	for (int i = 0; i < PIPELINE_STAGES_MAX; i++)
		free(c.outs[i]);
	free(c.buf);
	if (c.e.line == 0 && (p->file = strdup(name)) == NULL)
		pipeline_fail(&c.e, 1, "out of memory");
	if (c.e.line != 0) {
		snprintf(err, errcap, "%s:%d: %s", name, c.e.line, c.e.msg);
		pipeline_free(p);
		return -1;
	}
	return 0;
}

int
pipeline_load(struct pipeline *p, const char *path, char *err, size_t errcap)
{
	/* Only a regular file: a reload reads it again from the supervisor's
	 * poll loop, where opening a FIFO would wait for a writer and reading
	 * a device might never end (O_NONBLOCK lets the open return to say
	 * so). */
	struct stat sb;
	const char *why = NULL;
	FILE *f = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd == -1 || fstat(fd, &sb) == -1)
		why = strerror(errno);
	else if (S_ISDIR(sb.st_mode))
		why = strerror(EISDIR);
	else if (!S_ISREG(sb.st_mode))
		why = "not a regular file";
	else if ((f = fdopen(fd, "r")) == NULL)
		why = strerror(errno);
	if (why != NULL) {
		if (fd != -1)
			close(fd);
		empty(p);
		snprintf(err, errcap, "%s: %s", path, why);
		return -1;
	}
	int rc = parse_stream(p, path, f, err, errcap);
	fclose(f);
	return rc;
}

int
pipeline_parse_string(struct pipeline *p, const char *name, const char *text,
    char *err, size_t errcap)
{
	size_t len = strlen(text);
	/* fmemopen refuses a size of 0. */
	FILE *f = fmemopen((void *)(len ? text : "\n"), len ? len : 1, "r");
	if (f == NULL) {
		empty(p);
		snprintf(err, errcap, "%s: %s", name, strerror(errno));
		return -1;
	}
	int rc = parse_stream(p, name, f, err, errcap);
	fclose(f);
	return rc;
}
