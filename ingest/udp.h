/* udp.h - the ingest's sockets: one UDP socket per address the host
 * resolves to, each with a large receive buffer and the kernel's drop
 * counter (SO_MEMINFO), drained with recvmmsg in batches. */
#ifndef TELEM_UDP_H
#define TELEM_UDP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define UDP_MAX_SOCKS 8
#define UDP_BATCH 64
#define UDP_DGRAM_MAX 16384  /* longer datagrams are counted bad */

struct udp_sock {
	int fd;
	uint32_t drops;   /* last kernel drop count seen */
	char addr[64];    /* "127.0.0.1:1990" for messages */
};

struct udp {
	struct udp_sock s[UDP_MAX_SOCKS];
	size_t n;
	int rcvbuf;       /* effective receive buffer, bytes */
	int asked;        /* what udp_open asked for (0: taken over) */
};

/* The smallest receive buffer --rcvbuf takes: below this the kernel gives
 * a buffer that holds a datagram or two. */
#define UDP_RCVBUF_MIN 4096

/* "listening on ADDR[, ADDR...], receive buffer N bytes", and when the
 * kernel gave another size than asked, what was asked (and why, when it
 * gave less). `how` follows the addresses ("" or " (socket of ...)"). */
void udp_log_listening(const struct udp *u, const char *how);

/* Bind every address `host` resolves to on `port`, with a receive buffer
 * of `rcvbuf` bytes (or the most the system allows). Each socket's addr is
 * what it is bound to (the kernel's port for port 0). Returns 0, or -1
 * after logging the failing call ("bind 127.0.0.1:1990: Address already in
 * use") with *permanent set when retrying cannot help (host does not
 * resolve, or is not an address of this machine). */
int udp_open(struct udp *u, const char *host, const char *port, int rcvbuf,
    int *permanent);
/* Take over n bound UDP sockets instead of binding: fds inherited from
 * telem-supervisor, which keeps the same sockets for every ingest it
 * starts. *drops gets what the kernel has dropped on them so far (read
 * with SO_MEMINFO); udp_recv reports only drops after that. Returns 0, or
 * -1 after logging if an fd is not a bound UDP socket. */
int udp_adopt(struct udp *u, const int *fds, size_t n, uint64_t *drops);
void udp_close(struct udp *u);
/* 1 if host1:port1 and host2:port2 resolve to the same addresses, the
 * ones udp_open would bind (a name and its address, or one IPv6 address
 * written two ways); 0 if not, or if either does not resolve. */
int udp_same_addrs(const char *host1, const char *port1, const char *host2,
    const char *port2);

/* One received batch: datagram i is buf[i][0..len[i]), trunc[i] set when it
 * was longer than UDP_DGRAM_MAX. */
struct udp_batch {
	char buf[UDP_BATCH][UDP_DGRAM_MAX];
	size_t len[UDP_BATCH];
	int trunc[UDP_BATCH];
	size_t n;
};

/* Receive what is waiting on socket i without blocking. Returns the number
 * of datagrams (0 if none), or -1 with errno. *new_drops gets the kernel
 * drops counted since the last call. */
int udp_recv(struct udp *u, size_t i, struct udp_batch *b, uint64_t *new_drops);
/* The kernel drops on every socket since the last udp_recv or
 * udp_new_drops, read now without receiving (SO_MEMINFO). */
uint64_t udp_new_drops(struct udp *u);
/* What the kernel has dropped on all the sockets since they were opened. */
uint64_t udp_total_drops(const struct udp *u);

#endif
