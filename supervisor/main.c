/* telem-supervisor: creates the instance's queues and stats segment,
 * starts every stage downstream-first, restarts what dies, sends Flush
 * every interval, serves telemctl, and shuts down in order
 * (docs/design.md §3, §7). */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "egress/carbon.h"
#include "log.h"
#include "supervisor/control.h"
#include "supervisor/pipeline.h"
#include "supervisor/sup.h"
#include "version.h"
#include "wire.h"

static const char usage[] =
    "usage: telem-supervisor [-c file | [-H host] [-p port] [-l limit] [-e error]\n"
    "                        [-g host:port [--graphite-prefix p] [--graphite-buffer bytes]]\n"
    "                        [--prom host:port]]\n"
    "                        [-f flush_ms] [-t mqueue|shm] [-m msg_bytes] [-s slots]\n"
    "                        [-i instance] [--control path] [--rcvbuf bytes]\n"
    "                        [--stall-ms ms] [--state-dir dir] [--max-names n]\n"
    "                        [--print-pipeline] [-v | -q] [-V]\n"
    "  -c file      run the pipeline file (README \"Pipeline files\"); without it\n"
    "               the built-in pipeline, shaped by -H -p -l -e -g --prom\n"
    "               --max-names\n"
    "  --print-pipeline  print the pipeline (built-in, or the file's) as a\n"
    "               pipeline file, with the options applied, and exit\n"
    "  -H host      UDP address or name to listen on (default 127.0.0.1)\n"
    "  -p port      UDP port (default 1990)\n"
    "  -l limit     low keeps value <= limit, high keeps value >= limit (default 100)\n"
    "  -e error     CKMS rank error, in (0, 0.5) (default 0.01)\n"
    "  -f flush_ms  report interval in milliseconds (default 1000)\n"
    "  -t kind      transport between stages: mqueue (default) or shm\n"
    "  -m bytes     message size, 1024..1048576 (default auto: 8192 when every\n"
    "               queue fits the user's RLIMIT_MSGQUEUE budget, else less)\n"
    "               -f -t -m given with -c override the file's [pipeline]\n"
    "  -s slots     shm ring capacity in messages (default 24); a deeper ring\n"
    "               costs less CPU under load and more memory (see the man page)\n"
    "  -i instance  IPC objects are /telem.INSTANCE.* (default: default)\n"
    "  --control p  control socket (default $XDG_RUNTIME_DIR/telem/INSTANCE.sock,\n"
    "               else /tmp/telem-UID/INSTANCE.sock)\n"
    "  --rcvbuf b   UDP receive buffer in bytes (default 4194304, or the most the\n"
    "               system allows); the socket is kept across ingest restarts\n"
    "  --stall-ms n a stage with queued input that takes nothing for n ms is\n"
    "               stalled: restarted (default 10000; 0: never)\n"
    "  -g host:port add the stage carbon (telem-sink-carbon), fed by both\n"
    "               egresses: every report to carbon too (plaintext over TCP),\n"
    "               one line per value: PREFIX.NAME.STAT VALUE UNIX-SECONDS\n"
    "  --graphite-prefix p  first part of the metric names (default telem)\n"
    "  --graphite-buffer b  bytes of lines the sink keeps while carbon is\n"
    "               away, oldest dropped first (default 4194304)\n"
    "  --prom host:port  add the stage prom (telem-sink-prom), fed by both\n"
    "               egresses: GET /metrics for Prometheus on that numeric\n"
    "               address (e.g. 127.0.0.1:9108)\n"
    "  --state-dir dir  keep the egresses' aggregates in dir/STAGE.state across\n"
    "               stops and starts (default: /dev/shm, removed at stop)\n"
    "  --max-names n  names each egress keeps (default 100000); records of\n"
    "               new names past it are dropped, counted in its dropped=\n"
    "  -v           log debug lines too (the stages as well)\n"
    "  -q           log warnings and errors only (the stages as well)\n"
    "  -V           print the version and exit\n"
    "Reports go to stdout, logs to stderr. telemctl talks to a running one.\n";

static _Noreturn void
bad(const char *opt, const char *val, const char *why)
{
	log_warnx("-%s %s: %s", opt, val, why);
	exit(EXIT_USAGE);
}

static long
number(const char *opt, const char *val, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(val, &end, 10);
	/* Digits only, as the stages read what is passed on to them. */
	if (*val == '\0' || strspn(val, "0123456789") != strlen(val) ||
	    *end != '\0' || errno != 0 || v < lo || v > hi) {
		char why[80];
		snprintf(why, sizeof(why), "must be a whole number in %ld..%ld", lo, hi);
		bad(opt, val, why);
	}
	return v;
}

/* -H: a name that does not resolve is a bad value, said now (a DNS that
 * cannot answer yet, EAI_AGAIN, is left to the bind, exit 1). */
static void
check_host(const char *host)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM };
	struct addrinfo *res;
	if (!pipeline_host_ok(host))
		bad("H", host, "must be an IPv4 address (a.b.c.d), an IPv6 address "
		    "without a scope, or a host name");
	int rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc == 0)
		freeaddrinfo(res);
	else if (rc != EAI_AGAIN)
		bad("H", host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
}

/* -g: the host must resolve now, as it will in telem-sink-carbon (which
 * resolves it once, at its start). */
static void
check_graphite(const char *spec)
{
	char host[CARBON_HOST_MAX], port[8];
	const char *why;
	if (carbon_parse_addr(spec, host, sizeof(host), port, sizeof(port), &why) == -1)
		bad("g", spec, why);
	struct carbon *c = carbon_new(host, port, "telem", CARBON_BUFFER_MIN, &why);
	if (c == NULL)
		bad("g", spec, why);
	carbon_free(c);
}

/* --prom: a numeric address and a port, as telem-sink-prom takes them. */
static void
check_prom(const char *spec)
{
	char host[CARBON_HOST_MAX], port[8];
	const char *why;
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
	    .ai_socktype = SOCK_STREAM }, *ai;
	if (carbon_parse_addr(spec, host, sizeof(host), port, sizeof(port), &why) == -1)
		bad("-prom", spec, why);
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		bad("-prom", spec, "the host must be a numeric IPv4 or IPv6 address");
	freeaddrinfo(ai);
}

/* --state-dir: an existing folder we can write in, made absolute because
 * the stages are given paths in it. */
static const char *
check_state_dir(const char *dir)
{
	static char abs[PATH_MAX];
	struct stat st;
	if (stat(dir, &st) == -1)
		bad("-state-dir", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		bad("-state-dir", dir, "not a directory");
	if (access(dir, W_OK | X_OK) == -1)
		bad("-state-dir", dir, "not writable");
	if (realpath(dir, abs) == NULL)
		bad("-state-dir", dir, strerror(errno));
	if (strlen(abs) > PATH_MAX - 32)
		bad("-state-dir", dir, "path too long");
	return abs;
}

static void
parse(struct sup_config *cfg, int argc, char **argv, int *print)
{
	struct pipeline_opts *o = &cfg->popts;
	static const struct option opts[] = {
		{ "print-pipeline", no_argument, NULL, 'X' },
		{ "control", required_argument, NULL, 'C' },
		{ "rcvbuf", required_argument, NULL, 'R' },
		{ "stall-ms", required_argument, NULL, 'S' },
		{ "graphite", required_argument, NULL, 'g' },
		{ "graphite-prefix", required_argument, NULL, 'P' },
		{ "graphite-buffer", required_argument, NULL, 'B' },
		{ "prom", required_argument, NULL, 'M' },
		{ "state-dir", required_argument, NULL, 'D' },
		{ "max-names", required_argument, NULL, 'N' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	char *end;
	opterr = 0;  /* our own one-line messages */
	while ((c = getopt_long(argc, argv, ":hvqVc:H:p:l:e:f:t:m:s:i:g:", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cfg->file = optarg; break;
		case 'X': *print = 1; break;
		case 'H': check_host(optarg); o->host = optarg; cfg->shaped |= 1; break;
		case 'p': number("p", optarg, 0, 65535); o->port = optarg; cfg->shaped |= 2; break;
		case 'l':
			o->limit = (uint32_t)number("l", optarg, 0, UINT32_MAX);
			cfg->shaped |= 4;
			break;
		case 'e':
			o->eps = strtod(optarg, &end);
			if (*optarg == '\0' || *end != '\0' || !(o->eps > 0 && o->eps < 0.5))
				bad("e", optarg, "must be a number in (0, 0.5)");
			cfg->shaped |= 8;
			break;
		case 'f': o->flush_ms = number("f", optarg, 1, 86400000); cfg->set_f = 1; break;
		case 't':
			if (chan_kind_parse(optarg, &o->transport) == -1)
				bad("t", optarg, "must be mqueue or shm");
			cfg->set_t = 1;
			break;
		case 'm':
			o->msg_bytes = (size_t)number("m", optarg, WIRE_MSG_MIN, WIRE_MSG_MAX);
			cfg->set_m = 1;
			break;
		case 's': cfg->chan.slots = (unsigned)number("s", optarg, 2, 65536); break;
		case 'i':
			if (!chan_instance_ok(optarg))
				bad("i", optarg, "must be " CHAN_INSTANCE_RULE);
			cfg->instance = optarg;
			break;
		case 'C':
			/* An empty path would bind an abstract socket, which has
			 * no file mode: any user could then drive the supervisor. */
			if (*optarg == '\0')
				bad("-control", optarg, "must be a path");
			cfg->control = optarg;
			break;
		case 'S':
			cfg->stall_ms = number("-stall-ms", optarg, 0, 86400000);
			if (cfg->stall_ms > 0 && cfg->stall_ms < 100)
				bad("-stall-ms", optarg, "must be 0 (never) or 100..86400000");
			break;
		case 'R': cfg->rcvbuf = (uint32_t)number("-rcvbuf", optarg, UDP_RCVBUF_MIN, 1073741823); break;
		case 'g':
			check_graphite(optarg);
			o->graphite = optarg;
			cfg->shaped |= 16;
			break;
		case 'P':
			if (!carbon_prefix_ok(optarg))
				bad("-graphite-prefix", optarg,
				    "must be 1..128 printable characters without spaces or ';'");
			o->graphite_prefix = optarg;
			break;
		case 'B':
			number("-graphite-buffer", optarg, CARBON_BUFFER_MIN, CARBON_BUFFER_MAX);
			o->graphite_buffer = optarg;
			break;
		case 'M':
			check_prom(optarg);
			o->prom = optarg;
			cfg->shaped |= 64;
			break;
		case 'D': cfg->state_dir = check_state_dir(optarg); break;
		case 'N':
			number("-max-names", optarg, 1, 4294967295L);
			o->max_names = optarg;
			cfg->shaped |= 32;
			break;
		case 'h': fputs(usage, stdout); exit(0);
		case 'V': exit(version_print());
		case 'v': log_set_level(LOG_LEVEL_DEBUG); break;
		case 'q': log_set_level(LOG_LEVEL_WARN); break;
		case ':':
			log_warnx("option %s needs a value (see -h)", argv[optind - 1]);
			exit(EXIT_USAGE);
		default:
			log_warnx("unknown option %s (see -h)", argv[optind - 1]);
			exit(EXIT_USAGE);
		}
	}
	if (optind < argc) {
		log_warnx("unexpected argument '%s'", argv[optind]);
		exit(EXIT_USAGE);
	}
	if (o->graphite == NULL && (o->graphite_prefix || o->graphite_buffer)) {
		log_warnx("--graphite-prefix and --graphite-buffer need -g host:port");
		exit(EXIT_USAGE);
	}
	if (cfg->file != NULL && cfg->shaped) {
		log_warnx("-H -p -l -e -g --prom --max-names shape the built-in "
		    "pipeline: with -c %s, write them in the file", cfg->file);
		exit(EXIT_USAGE);
	}
}

/* The pipeline to run: the file's (with -f -t -m over its [pipeline]) or
 * the built-in one; every program must be there. Any error is one line
 * "FILE:LINE: what" and exit 2, before anything is created. */
static void
load_pipeline(struct sup *s)
{
	char err[PIPELINE_ERR_MAX];
	struct sup_config *cfg = &s->cfg;
	int rc = cfg->file != NULL ? pipeline_load(&s->pl, cfg->file, err, sizeof(err)) :
	    pipeline_builtin(&s->pl, &cfg->popts, err, sizeof(err));
	if (rc == -1 || (pipeline_check_execs(&s->pl, cfg->bindir, err,
	    sizeof(err)) == -1)) {
		log_warnx("%s", err);
		exit(EXIT_USAGE);
	}
	if (cfg->file != NULL) {
		if (cfg->set_t)
			s->pl.transport = cfg->popts.transport;
		if (cfg->set_m)
			s->pl.msg_bytes = cfg->popts.msg_bytes;
		if (cfg->set_f)
			s->pl.flush_ms = cfg->popts.flush_ms;
	}
	cfg->chan.kind = s->pl.transport;
	cfg->flush_ms = s->pl.flush_ms;
}

/* Where the stage executables are: installed, in ../libexec/telem beside
 * the folder of this executable (PREFIX/bin and PREFIX/libexec/telem);
 * built, next to it (bin/). */
static int
find_bindir(char *dir, size_t cap)
{
	char self[PATH_MAX], libexec[PATH_MAX + 32], probe[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n == -1) {
		log_warn("readlink /proc/self/exe");
		return -1;
	}
	self[n] = '\0';
	const char *here = dirname(self);
	snprintf(libexec, sizeof(libexec), "%s/../libexec/telem", here);
	snprintf(probe, sizeof(probe), "%s/telem-ingest", libexec);
	if (access(probe, X_OK) == 0 && realpath(libexec, dir) != NULL &&
	    strlen(dir) < cap)
		return 0;
	if (strlen(here) >= cap) {
		log_warnx("folder %s: path too long", here);
		return -1;
	}
	snprintf(dir, cap, "%s", here);
	return 0;
}

static int
open_fds(struct sup *s)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGPIPE);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1 ||
	    (s->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) == -1) {
		log_warn("signalfd");
		return -1;
	}
	s->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (s->timerfd == -1) {
		log_warn("timerfd_create");
		return -1;
	}
	return 0;
}

/* SIGHUP: a reload, its outcome in the log only. */
static void
on_hup(struct sup *s)
{
	char out[2048];
	log_info("SIGHUP: reloading %s", s->cfg.file ? s->cfg.file : "(no file)");
	if (sup_reload(s, out, sizeof(out)) == -1 && s->cfg.file == NULL)
		log_warnx("SIGHUP: no pipeline file (started without -c): ignored");
}

int
main(int argc, char **argv)
{
	static struct sup s = {
		.cfg = { .rcvbuf = 4u << 20, .flush_ms = 1000, .instance = "default",
		    .stall_ms = SUP_STALL_MS,
		    .chan = { CHAN_MQUEUE, 8192, CHAN_SHM_SLOTS_DEFAULT } },
		.sigfd = -1, .timerfd = -1, .lockfd = -1, .statelockfd = -1,
		.statedirfd = -1,
		.ctlfd = -1,
		.on_hup = on_hup,
	};
	int print = 0;
	log_init("telem-supervisor", NULL);
	/* Nothing may mistake fd 0 for a pending reply or readiness pipe if
	 * we give up before the stages are defined (ctl_finish closes them). */
	for (int i = 0; i < SUP_STAGES; i++)
		s.ch[i].reply_fd = s.ch[i].ready_fd = -1;
	pipeline_opts_default(&s.cfg.popts);
	parse(&s.cfg, argc, argv, &print);
	if (find_bindir(s.cfg.bindir, sizeof(s.cfg.bindir)) == -1)
		return 1;
	load_pipeline(&s);
	if (print) {
		if (pipeline_print(stdout, &s.pl) == -1 || fflush(stdout) == EOF) {
			log_warn("write the pipeline");
			return 1;
		}
		return 0;
	}
	if (s.cfg.control != NULL && ctl_check_path(s.cfg.control) == -1)
		return EXIT_USAGE;
	if (open_fds(&s) == -1)
		return 1;
	int status = 1, rc;
	if (sup_ipc_setup(&s) == 0 && sup_stages_setup(&s) == 0) {
		if (s.msg_why[0] != '\0')
			log_info("%s", s.msg_why);
		if ((rc = ctl_open(&s)) == 0)
			status = sup_run(&s);
		else if (rc == -EXIT_USAGE)
			status = EXIT_USAGE;
	} else if (s.bad_host) {
		status = EXIT_USAGE;  /* -H is not an address of this machine */
	}
	/* Everything is removed before the pending `stop` hears `ok`: once
	 * telemctl returns, the instance is free to be started again. */
	ctl_close(&s);
	sup_ipc_teardown(&s);
	ctl_finish(&s);
	for (int i = 0; i < SUP_STAGES; i++)
		if (s.ch[i].name[0] != '\0') {
			for (int k = 0; k < s.ch[i].nown; k++)
				free(s.ch[i].own[k]);
			s.ch[i].nown = 0;
		}
	pipeline_free(&s.pl);
	pipeline_free(&s.removed);
	return status;
}
