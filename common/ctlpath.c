/* ctlpath.c - default location of the control socket (DESIGN §7). */
#include "ctlpath.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int
ctl_dir(char *buf, size_t cap, int create)
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
	if (!create)
		return 0;
	if (mkdir(buf, 0700) == -1 && errno != EEXIST)
		return -1;
	struct stat st;
	if (lstat(buf, &st) == -1)
		return -1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid()) {
		errno = EPERM;
		return -1;
	}
	if ((st.st_mode & 0777) != 0700 && chmod(buf, 0700) == -1)
		return -1;
	return 0;
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
