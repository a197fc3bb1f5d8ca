/* telemctl: sends one command to a running telem-supervisor over its
 * control socket and prints the reply. Exit 0 when the reply ends in `ok`,
 * 1 on `error: ...`, a failure to talk or no whole reply in time
 * (wait_ms), 2 on a bad command line. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "chan.h"
#include "clock.h"
#include "ctlpath.h"
#include "log.h"
#include "supervisor/control.h"
#include "version.h"

static const char usage[] =
    "usage: telemctl [-i instance | --control path] COMMAND\n"
    "       telemctl -V | -h\n"
    "  status                     one line per stage, then ok\n"
    "  books                      each stage's and queue's equation, then\n"
    "                             balanced or what does not add up (after a drain)\n"
    "  restart STAGE              stop the stage and start it again\n"
    "  swap STAGE EXEC [ARGS...]  run EXEC with ARGS as the stage's program\n"
    "  flush                      send a Flush now\n"
    "  reload                     read the pipeline file again and apply it\n"
    "  stop                       shut the pipeline down in order\n"
    "STAGE: a stage name as `status` lists them. Each word is sent whole\n"
    "(an EXEC or ARG with blanks stays one word).\n"
    "The control socket is $XDG_RUNTIME_DIR/telem/INSTANCE.sock, else\n"
    "/tmp/telem-UID/INSTANCE.sock ($TMPDIR for /tmp if set); -i default.\n"
    "No whole reply within 10 s (restart, swap, reload: 60 s; stop: 10 min)\n"
    "is an error.\n";

/* How long the reply to a command may take: a stopped or hung supervisor
 * accepts the connection (or leaves it in its backlog) and never answers. */
static long long
wait_ms(const char *cmd)
{
	if (strcmp(cmd, "stop") == 0)
		return CTL_CLIENT_STOP_MS;
	if (strcmp(cmd, "restart") == 0 || strcmp(cmd, "swap") == 0 ||
	    strcmp(cmd, "reload") == 0)
		return CTL_CLIENT_WAIT_MS;
	return CTL_CLIENT_MS;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'C' },
		{ "instance", required_argument, NULL, 'i' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *instance = "default", *path = NULL;
	char def[108], req[4096];
	int c;
	log_init("telemctl", NULL);
	while ((c = getopt_long(argc, argv, "+hVi:", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (!chan_instance_ok(optarg))
				fatalx(EXIT_USAGE, "-i %s: must be " CHAN_INSTANCE_RULE,
				    optarg);
			instance = optarg;
			break;
		case 'C':
			if (*optarg == '\0')
				fatalx(EXIT_USAGE, "--control: must be a path");
			path = optarg;
			break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': return version_print();
		default: fputs(usage, stderr); return EXIT_USAGE;
		}
	}
	if (optind == argc) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	/* The supervisor's working folder is not ours: a relative EXEC is
	 * sent as an absolute path (a bare name means one of telem's own). */
	char exe[PATH_MAX + 1], cwd[PATH_MAX];
	if (argc - optind >= 3 && strcmp(argv[optind], "swap") == 0 &&
	    argv[optind + 2][0] != '/' && strchr(argv[optind + 2], '/') != NULL) {
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			fatal(1, "getcwd");
		if (snprintf(exe, sizeof(exe), "%s/%s", cwd, argv[optind + 2]) >=
		    (int)sizeof(exe))
			fatalx(EXIT_USAGE, "path %s is too long", argv[optind + 2]);
		argv[optind + 2] = exe;
	}
	/* Each word in double quotes, with \" \\ and \; for " \ and ;: the
	 * supervisor splits the line as a pipeline file's args
	 * (supervisor/pipeline.h), so blanks in a word keep it whole. */
	size_t len = 0;
	for (int i = optind; i < argc; i++) {
		if (strchr(argv[i], '\n') != NULL)
			fatalx(EXIT_USAGE, "a word holds a newline");
		for (const char *p = i == optind ? "\"" : " \""; *p; p++)
			if (len < sizeof(req))
				req[len++] = *p;
		for (const char *p = argv[i]; *p != '\0'; p++) {
			if ((*p == '"' || *p == '\\' || *p == ';') && len < sizeof(req))
				req[len++] = '\\';
			if (len < sizeof(req))
				req[len++] = *p;
		}
		if (len < sizeof(req))
			req[len++] = '"';
	}
	if (len + 1 >= sizeof(req))
		fatalx(EXIT_USAGE, "command too long");
	req[len++] = '\n';
	/* Whoever can put a socket where we connect answers for the
	 * supervisor: the folder must be ours and closed to others, the
	 * socket ours, and the process behind it must run as us. */
	char why[512];
	if (path == NULL) {
		char dir[512];
		struct stat st;
		if (ctl_dir(dir, sizeof(dir), 0) == -1 ||
		    ctl_default_path(def, sizeof(def), instance, 0) == -1)
			fatal(1, "control socket path of instance %s", instance);
		if (lstat(dir, &st) == 0 &&
		    ctl_trust_dir(dir, &st, why, sizeof(why)) == -1)
			fatalx(1, "%s", why);
		path = def;
	}
	if (ctl_trust_sock(path, why, sizeof(why)) == -1 &&
	    (errno == ENOTSOCK || errno == EPERM))
		fatalx(1, "%s: refusing to talk to it", why);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		fatalx(EXIT_USAGE, "control socket path %s is too long", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	const char *cmd = argv[optind];
	long long wait = wait_ms(cmd), deadline = clock_ms() + wait;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		fatal(1, "socket");
	/* A connect to a full backlog, and the send, wait this long at most
	 * (EAGAIN after it). */
	struct timeval tv = { .tv_sec = wait / 1000, .tv_usec = wait % 1000 * 1000 };
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1)
		fatal(1, "SO_SNDTIMEO on the control socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		if (errno == EAGAIN)
			fatalx(1, "connect %s: not accepted in %lld s (is its "
			    "telem-supervisor stopped or hung?)", path, wait / 1000);
		if (path == def)
			fatal(1, "connect %s (is telem-supervisor -i %s running?)", path,
			    instance);
		fatal(1, "connect %s (is a telem-supervisor running with "
		    "--control %s?)", path, path);
	}
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) == -1)
		fatal(1, "SO_PEERCRED on %s", path);
	if (cr.uid != geteuid())
		fatalx(1, "the process answering on %s (pid %d) runs as uid %u, not "
		    "as uid %u: refusing to talk to it", path, (int)cr.pid,
		    (unsigned)cr.uid, (unsigned)geteuid());
	if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len)
		fatal(1, "send to %s", path);
	/* Print the reply as it comes; remember how its last line starts. */
	char buf[4096], last[8] = "";
	size_t lastlen = 0;
	int at_start = 1;
	for (;;) {
		long long left = deadline - clock_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			fatal(1, "poll on %s", path);
		if (r == 0) {
			if (fflush(stdout) == EOF)
				fatal(1, "write the reply to stdout");
			fatalx(1, "no whole reply to %s from %s in %lld s (is its "
			    "telem-supervisor stopped or hung?)", cmd, path, wait / 1000);
		}
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			fatal(1, "read from %s", path);
		if (n == 0)
			break;
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			fatal(1, "write the reply to stdout");
		for (ssize_t i = 0; i < n; i++) {
			if (at_start)
				lastlen = 0;
			at_start = buf[i] == '\n';
			if (!at_start && lastlen < sizeof(last) - 1)
				last[lastlen++] = buf[i];
		}
	}
	last[lastlen] = '\0';
	if (fflush(stdout) == EOF)
		fatal(1, "write the reply to stdout");
	close(fd);
	return strcmp(last, "ok") == 0 ? 0 : 1;
}
