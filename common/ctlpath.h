/* ctlpath.h - where an instance's control socket and lock live:
 * $XDG_RUNTIME_DIR/telem/<instance>.sock, else
 * $TMPDIR (or /tmp)/telem-<uid>/<instance>.sock; the folder is 0700. */
#ifndef TELEM_CTLPATH_H
#define TELEM_CTLPATH_H

#include <stddef.h>

/* Write the folder into buf. With create, make it (0700) if missing and
 * refuse one owned by another user or open to others. Returns 0, or -1
 * with errno (ENAMETOOLONG, EPERM for a folder we must not trust, ...). */
int ctl_dir(char *buf, size_t cap, int create);
/* The default socket path of an instance. Returns 0 or -1 with errno. */
int ctl_default_path(char *buf, size_t cap, const char *instance, int create);

#endif
