/* ctlpath.c - default location of the control socket (docs/design.md
 * §7), and the checks that keep a client and the supervisor from trusting
 * a folder or socket someone else controls. */
#include "ctlpath.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int
build_dir(char *buf, size_t cap)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	const char *tmp = getenv("TMPDIR");
	int n;
	if (xdg != NULL && *xdg == '/')
		n = snprintf(buf, cap, "%s/telem", xdg);
	else
		n = snprintf(buf, cap, "%s/telem-%u",
		    tmp != NULL && *tmp == '/' ? tmp : "/tmp", (unsigned)getuid());
	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static void
say(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
say(char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;
	if (why == NULL || cap == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
}

int
ctl_trust_dir(const char *dir, const struct stat *st, char *why, size_t cap)
{
	if (!S_ISDIR(st->st_mode)) {
		say(why, cap, "control folder %s is not a folder (mode %04o): "
		    "refusing it", dir, (unsigned)(st->st_mode & 07777));
		errno = ENOTDIR;
		return -1;
	}
	if (st->st_uid != geteuid() || (st->st_mode & 022) != 0) {
		say(why, cap, "control folder %s is owned by uid %u with mode %04o: "
		    "refusing it (it must be owned by uid %u and writable by no "
		    "one else)", dir, (unsigned)st->st_uid,
		    (unsigned)(st->st_mode & 07777), (unsigned)geteuid());
		errno = EPERM;
		return -1;
	}
	return 0;
}

int
ctl_trust_sock(const char *path, char *why, size_t cap)
{
	struct stat st;
	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		say(why, cap, "%s is not a socket (mode %06o, owned by uid %u)",
		    path, (unsigned)st.st_mode, (unsigned)st.st_uid);
		errno = ENOTSOCK;
		return -1;
	}
	if (st.st_uid != geteuid()) {
		say(why, cap, "socket %s is owned by uid %u, not by uid %u", path,
		    (unsigned)st.st_uid, (unsigned)geteuid());
		errno = EPERM;
		return -1;
	}
	return 1;
}

int
ctl_dir_checked(char *buf, size_t cap, int create, char *why, size_t whycap)
{
	say(why, whycap, "control folder");
	if (build_dir(buf, cap) == -1) {
		say(why, whycap, "control folder path (from $XDG_RUNTIME_DIR or "
		    "$TMPDIR)");
		return -1;
	}
	if (!create)
		return 0;
	int made = mkdir(buf, 0700) == 0;
	if (!made && errno != EEXIST) {
		say(why, whycap, "control folder %s", buf);
		return -1;
	}
	struct stat st;
	if (lstat(buf, &st) == -1) {
		say(why, whycap, "control folder %s", buf);
		return -1;
	}
	/* One we just made may lack bits the umask took; one that was there
	 * must already be ours and closed to others (else anyone could have
	 * put a socket of theirs in it), and is tightened to 0700. */
	if (!made && ctl_trust_dir(buf, &st, why, whycap) == -1)
		return -1;
	if ((st.st_mode & 0777) != 0700 && chmod(buf, 0700) == -1) {
		say(why, whycap, "chmod 0700 %s", buf);
		return -1;
	}
	return 0;
}

int
ctl_dir(char *buf, size_t cap, int create)
{
	return ctl_dir_checked(buf, cap, create, NULL, 0);
}

int
ctl_default_path(char *buf, size_t cap, const char *instance, int create)
{
	char dir[512];
	if (ctl_dir(dir, sizeof(dir), create) == -1)
		return -1;
	int n = snprintf(buf, cap, "%s/%s.sock", dir, instance);
	if (n < 0 || (size_t)n >= cap || (size_t)n >= 108) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}
