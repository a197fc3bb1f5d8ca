/* chan_shm.c - placeholder until the shared-memory ring lands: every call
 * fails with ENOTSUP, so `-t shm` is refused with a clear error. */
#include "chan_impl.h"

#include <errno.h>

static int
shm_create(const struct chan_attr *attr, const char *objname)
{
	(void)attr; (void)objname;
	errno = ENOTSUP;
	return -1;
}

static int
shm_remove(const char *objname)
{
	(void)objname;
	errno = ENOENT;
	return -1;
}

static struct chan *
shm_attach(const char *objname, int mode)
{
	(void)objname; (void)mode;
	errno = ENOTSUP;
	return NULL;
}

const struct chan_ops chan_shm_ops = {
	.create = shm_create,
	.unlink = shm_remove,
	.open = shm_attach,
};
