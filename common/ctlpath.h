/* ctlpath.h - where an instance's control socket lives:
 * $XDG_RUNTIME_DIR/telem/<instance>.sock, else
 * $TMPDIR (or /tmp)/telem-<uid>/<instance>.sock; the folder is 0700.
 * A folder or socket that another user owns, or that others may write,
 * is never trusted: whoever controls it could answer for the supervisor. */
#ifndef TELEM_CTLPATH_H
#define TELEM_CTLPATH_H

#include <stddef.h>
#include <sys/stat.h>

/* Write the folder into buf. With create, make it (0700) if missing and
 * refuse one owned by another user or writable by others. Returns 0, or
 * -1 with errno (ENAMETOOLONG, EPERM for a folder we must not trust, ...). */
int ctl_dir(char *buf, size_t cap, int create);
/* ctl_dir, and on -1 a line for the user in why: what failed, and for a
 * folder we must not trust, its owner and mode (errno is kept). */
int ctl_dir_checked(char *buf, size_t cap, int create, char *why, size_t whycap);
/* dir (whose lstat is st) may be trusted: a folder owned by the effective
 * uid and writable by no one else. 0, or -1 with errno and why. */
int ctl_trust_dir(const char *dir, const struct stat *st, char *why, size_t cap);
/* What is at path: 0 nothing, 1 a socket of ours, -1 anything else (why
 * says what and whose) or an error (errno, why untouched). */
int ctl_trust_sock(const char *path, char *why, size_t cap);
/* The default socket path of an instance. Returns 0 or -1 with errno. */
int ctl_default_path(char *buf, size_t cap, const char *instance, int create);

#endif
