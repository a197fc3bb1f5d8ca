/* chan_msg.h - the checksummed messages the channel tests send: who wrote
 * it, its number, and a body a checksum covers, so that a torn, reordered
 * or duplicated message is caught. Each test file chooses the lengths. */
#ifndef TELEM_TEST_CHAN_MSG_H
#define TELEM_TEST_CHAN_MSG_H

#include <stdint.h>
#include <string.h>
#include <sys/types.h>

struct msg {
	uint32_t writer;
	uint32_t seq;
	uint32_t sum;
};

static inline uint32_t
body_sum(const unsigned char *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

/* Write message `seq` of `writer`, len bytes (>= sizeof(struct msg)). */
static inline size_t
msg_make(unsigned char *buf, size_t len, uint32_t writer, uint32_t seq)
{
	for (size_t i = sizeof(struct msg); i < len; i++)
		buf[i] = (unsigned char)(seq * 13 + writer * 31 + i);
	struct msg m = { writer, seq,
	    body_sum(buf + sizeof(m), len - sizeof(m)) };
	memcpy(buf, &m, sizeof(m));
	return len;
}

/* 1 if buf[0..len) is, byte for byte, the message of the length len_of
 * gives for its writer and number; its header in *m. */
#define MSG_VERIFY_MAX 8192
static inline int
msg_verify(const unsigned char *buf, ssize_t len, struct msg *m,
    size_t (*len_of)(uint32_t writer, uint32_t seq))
{
	unsigned char want[MSG_VERIFY_MAX];
	if (len < (ssize_t)sizeof(*m) || len > MSG_VERIFY_MAX)
		return 0;
	memcpy(m, buf, sizeof(*m));
	return len_of(m->writer, m->seq) == (size_t)len &&
	    msg_make(want, (size_t)len, m->writer, m->seq) == (size_t)len &&
	    memcmp(want, buf, (size_t)len) == 0;
}

#endif
