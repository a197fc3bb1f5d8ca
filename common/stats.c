/* stats.c - create, attach and remove the shared stats segment. */
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATS_MAGIC 0x7473746cU /* "ltst" */
#define STATS_VERSION 3 /* 2: sink_dropped; 3: run */

static struct stats_seg *
map(int fd)
{
	void *p = mmap(NULL, sizeof(struct stats_seg), PROT_READ | PROT_WRITE,
	    MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

struct stats_seg *
stats_create(const char *objname)
{
	int fd = shm_open(objname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1)
		return NULL;
	struct stats_seg *seg = NULL;
	/* Reserved now (see chan_shm.c): no SIGBUS at a first touch. */
	if (fchmod(fd, 0600) == 0) {
		int e = posix_fallocate(fd, 0, sizeof(struct stats_seg));
		if (e == 0)
			seg = map(fd);
		else
			errno = e;
	}
	int e = errno;
	close(fd);
	if (seg == NULL) {
		shm_unlink(objname);
		errno = e;
		return NULL;
	}
	seg->magic = STATS_MAGIC;
	seg->version = STATS_VERSION;
	seg->nslots = STATS_SLOTS;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	seg->run = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
	    (uint64_t)getpid() << 48;
	return seg;
}

struct stats_seg *
stats_attach(const char *objname)
{
	int fd = shm_open(objname, O_RDWR | O_CLOEXEC, 0);
	if (fd == -1)
		return NULL;
	struct stat st;
	struct stats_seg *seg = NULL;
	if (fstat(fd, &st) == 0) {
		if ((size_t)st.st_size != sizeof(struct stats_seg))
			errno = EPROTO;
		else
			seg = map(fd);
	}
	int e = errno;
	close(fd);
	if (seg != NULL && (seg->magic != STATS_MAGIC ||
	    seg->version != STATS_VERSION || seg->nslots != STATS_SLOTS)) {
		stats_detach(seg);
		seg = NULL;
		e = EPROTO;
	}
	errno = e;
	return seg;
}

void
stats_detach(struct stats_seg *seg)
{
	if (seg != NULL)
		munmap(seg, sizeof(*seg));
}

int
stats_unlink(const char *objname)
{
	return shm_unlink(objname);
}
