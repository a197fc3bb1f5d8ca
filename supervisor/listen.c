/* listen.c - the instance's UDP sockets. The supervisor binds them and
 * lends them to every process of the stage that reads them (--udp-fd), as Postfix's master
 * opens its services' sockets for the children: the socket, its receive
 * buffer and its kernel drop count outlive an ingest that is killed, so
 * datagrams sent while it restarts wait in the kernel instead of being
 * refused, and the only UDP loss left is the kernel's, counted. */
#include <stdio.h>

#include "log.h"
#include "supervisor/sup.h"

int
sup_listen_open(struct sup *s, struct sup_child *c)
{
	int permanent;
	if (udp_open(&c->sock, c->udp_host, c->udp_port, (int)s->cfg.rcvbuf,
	    &permanent) == -1) {
		s->bad_host = permanent;
		return -1;
	}
	udp_log_listening(&c->sock, "");
	return 0;
}

void
sup_listen_close(struct sup_child *c)
{
	if (c->udp && c->sock.n > 0)
		udp_close(&c->sock);
	c->sock.n = 0;
}

int
sup_listen_bind(struct sup *s, struct udp *u, const char *host, const char *port)
{
	int permanent;
	u->n = 0;
	return udp_open(u, host, port, (int)s->cfg.rcvbuf, &permanent);
}

void
sup_listen_replace(struct sup_child *c, struct udp *u, const char *host,
    const char *port)
{
	sup_listen_close(c);
	c->sock = *u;
	u->n = 0;
	snprintf(c->udp_host, sizeof(c->udp_host), "%s", host);
	snprintf(c->udp_port, sizeof(c->udp_port), "%s", port);
	udp_log_listening(&c->sock, "");
}
