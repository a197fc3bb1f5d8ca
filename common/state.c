/* state.c - writing a state file atomically (temporary, fsync, rename) and
 * reading one back with every byte checked before it is trusted. */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* The header, 64 bytes in host order (a file from another byte order
 * fails the magic): magic, version, kind, param, run, committed, body
 * length, body sum, and the sum of the 56 bytes before it. */
#define HDR_SIZE 64
#define SUM_INIT UINT64_C(0xcbf29ce484222325)
#define SUM_PRIME UINT64_C(0x100000001b3)
#define LOAD_MAX ((size_t)1 << 34)  /* 16 GiB: anything bigger is not ours */

static const char magic[8] = { 'T', 'L', 'M', 'S', 'T', 'A', 'T', 'E' };

/* FNV-1a over 64-bit words (a short tail padded with zeros): a change in
 * any one word always changes the sum, since each step is invertible. */
static uint64_t
sum_words(uint64_t h, const unsigned char *p, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = (h ^ w) * SUM_PRIME;
	}
	if (i < n) {
		uint64_t w = 0;
		memcpy(&w, p + i, n - i);
		h = (h ^ w) * SUM_PRIME;
	}
	return h;
}

static int
write_all(int fd, const void *buf, size_t n, off_t off)
{
	const unsigned char *p = buf;
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			return -1;
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

int
state_begin(struct state_writer *w, const char *path)
{
	w->path = path;
	w->err = 0;
	w->len = 0;
	w->n = 0;
	w->sum = SUM_INIT;
	w->step = "name";
	if (snprintf(w->tmp, sizeof(w->tmp), "%s.tmp", path) >= (int)sizeof(w->tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* A fresh file of our own: never one someone else put there (in a
	 * shared folder such as /dev/shm), never through a symlink. */
	w->step = "remove";
	if (unlink(w->tmp) == -1 && errno != ENOENT)
		return -1;
	w->step = "create";
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (w->fd == -1)
		return -1;
	return 0;
}

/* Write out the buffer: it holds whole words except at the very end. */
static void
drain(struct state_writer *w)
{
	if (w->n == 0)
		return;
	w->sum = sum_words(w->sum, w->buf, w->n);
	if (w->err == 0 &&
	    write_all(w->fd, w->buf, w->n, (off_t)(HDR_SIZE + w->len - w->n)) == -1)
		w->err = errno;
	w->n = 0;
}

void
state_put(struct state_writer *w, const void *p, size_t n)
{
	const unsigned char *b = p;
	while (n > 0) {
		size_t k = sizeof(w->buf) - w->n;
		if (k > n)
			k = n;
		memcpy(w->buf + w->n, b, k);
		w->n += k;
		w->len += k;
		b += k;
		n -= k;
		if (w->n == sizeof(w->buf))
			drain(w);
	}
}

void
state_abort(struct state_writer *w)
{
	if (w->fd != -1) {
		close(w->fd);
		unlink(w->tmp);
		w->fd = -1;
	}
}

const char *
state_failed(const struct state_writer *w, char *buf, size_t cap)
{
	int e = errno;  /* for the caller's log_warn */
	if (strcmp(w->step, "rename") == 0)
		snprintf(buf, cap, "rename %s over %s", w->tmp, w->path);
	else if (strcmp(w->step, "name") == 0)
		snprintf(buf, cap, "name %s.tmp", w->path);
	else
		snprintf(buf, cap, "%s %s", w->step, w->tmp);
	errno = e;
	return buf;
}

/* The folder holding path, synced so that the rename itself is kept. */
static int
sync_dir(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		return -1;
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

int
state_end(struct state_writer *w, const struct state_info *info)
{
	drain(w);
	unsigned char h[HDR_SIZE];
	uint32_t version = STATE_VERSION;
	memcpy(h, magic, 8);
	memcpy(h + 8, &version, 4);
	memcpy(h + 12, &info->kind, 4);
	memcpy(h + 16, &info->param, 8);
	memcpy(h + 24, &info->run, 8);
	memcpy(h + 32, &info->committed, 8);
	memcpy(h + 40, &w->len, 8);
	memcpy(h + 48, &w->sum, 8);
	uint64_t hs = sum_words(SUM_INIT, h, 56);
	memcpy(h + 56, &hs, 8);
	w->step = "write";
	if (w->err != 0) {
		errno = w->err;
		goto fail;
	}
	if (write_all(w->fd, h, sizeof(h), 0) == -1)
		goto fail;
	w->step = "sync";
	if (fsync(w->fd) == -1)
		goto fail;
	w->step = "close";
	if (close(w->fd) == -1) {
		w->fd = -1;
		int e = errno;
		unlink(w->tmp);
		errno = e;
		return -1;
	}
	w->fd = -1;
	w->step = "rename";
	if (rename(w->tmp, w->path) == -1) {
		int e = errno;
		unlink(w->tmp);
		errno = e;
		return -1;
	}
	/* The new file is in place; a failed folder sync only weakens what
	 * survives a machine crash, so it does not fail the save. */
	if (sync_dir(w->path) == -1)
		log_warn("fsync of the folder of %s", w->path);
	return 0;
fail:;
	int e = errno;
	state_abort(w);
	errno = e;
	return -1;
}

static int
read_file(const char *path, struct state_reader *r, size_t *size, const char **why)
{
	/* O_NONBLOCK: a FIFO put at the path must not hang the open. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd == -1) {
		if (errno == ENOENT)
			return 0;
		/* O_NOFOLLOW's ELOOP reads "Too many levels of symbolic links" */
		*why = errno == ELOOP ? "a symbolic link, not followed" :
		    strerror(errno);
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) == -1) {
		*why = strerror(errno);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > LOAD_MAX ||
	    st.st_uid != geteuid() || (st.st_mode & 022) != 0) {
		*why = !S_ISREG(st.st_mode) ? "not a regular file" :
		    st.st_uid != geteuid() ? "owned by another user" :
		    (st.st_mode & 022) != 0 ? "writable by others" : "too large";
		close(fd);
		return -1;
	}
	size_t n = (size_t)st.st_size, got = 0;
	r->data = malloc(n ? n : 1);
	if (r->data == NULL) {
		*why = "no memory to read it";
		close(fd);
		return -1;
	}
	while (got < n) {
		ssize_t k = read(fd, r->data + got, n - got);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			*why = k == 0 ? "shorter than its size" : strerror(errno);
			close(fd);
			return -1;
		}
		got += (size_t)k;
	}
	close(fd);
	*size = n;
	return 1;
}

int
state_load(const char *path, uint32_t kind, double param,
    struct state_info *info, struct state_reader *r, const char **why)
{
	memset(r, 0, sizeof(*r));
	size_t size = 0;
	int rc = read_file(path, r, &size, why);
	if (rc <= 0)
		return rc;
	const unsigned char *h = r->data;
	uint32_t version;
	uint64_t len, sum, hs;
	if (size < HDR_SIZE || memcmp(h, magic, 8) != 0) {
		*why = size < HDR_SIZE ? "shorter than a header" : "not a telem state file";
		return -1;
	}
	memcpy(&hs, h + 56, 8);
	if (sum_words(SUM_INIT, h, 56) != hs) {
		*why = "header checksum does not match";
		return -1;
	}
	memcpy(&version, h + 8, 4);
	memcpy(&info->kind, h + 12, 4);
	memcpy(&info->param, h + 16, 8);
	memcpy(&info->run, h + 24, 8);
	memcpy(&info->committed, h + 32, 8);
	memcpy(&len, h + 40, 8);
	memcpy(&sum, h + 48, 8);
	if (version != STATE_VERSION) {
		*why = "written by another version of telem";
		return -1;
	}
	if (info->kind != kind) {
		*why = "written by another kind of egress";
		return -1;
	}
	if (memcmp(&info->param, &param, sizeof(param)) != 0) {
		*why = kind == STATE_CKMS ? "written with another --error" :
		    "written with other parameters";
		return -1;
	}
	if (len != size - HDR_SIZE) {
		*why = len > size - HDR_SIZE ? "truncated" : "longer than its header says";
		return -1;
	}
	if (sum_words(SUM_INIT, h + HDR_SIZE, (size_t)len) != sum) {
		*why = "body checksum does not match";
		return -1;
	}
	r->p = h + HDR_SIZE;
	r->left = (size_t)len;
	return 1;
}

const void *
state_take(struct state_reader *r, size_t n)
{
	if (n > r->left)
		return NULL;
	const void *p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

int
state_get(struct state_reader *r, void *p, size_t n)
{
	const void *q = state_take(r, n);
	if (q == NULL)
		return -1;
	memcpy(p, q, n);
	return 0;
}

void
state_close(struct state_reader *r)
{
	free(r->data);
	memset(r, 0, sizeof(*r));
}

void
state_reject(const char *path, const char *why)
{
	char bad[4096 + 8];
	snprintf(bad, sizeof(bad), "%s.bad", path);
	if (rename(path, bad) == 0)
		log_warnx("state file %s: %s; set aside as %s, starting empty",
		    path, why, bad);
	else
		log_warnx("state file %s: %s; starting empty (rename to %s: %s)",
		    path, why, bad, strerror(errno));
}

int
state_remove(const char *path)
{
	char tmp[4096 + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	if (unlink(path) == -1 && errno != ENOENT)
		return -1;
	return 0;
}
