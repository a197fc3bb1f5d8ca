/* carbon.h - the egresses' graphite sink: report values as carbon plaintext
 * lines "<prefix>.<name>.<stat> <value> <unix-seconds>\n" over TCP. Nothing
 * here ever blocks: the connect and the writes are non-blocking, lines wait
 * in a bounded buffer (the oldest are dropped and counted when it is full),
 * and the owner drives it by calling carbon_poll() often (the egress does so
 * on every tick of its receive loop, at most 100 ms apart). */
#ifndef TELEM_CARBON_H
#define TELEM_CARBON_H

#include <stddef.h>
#include <stdint.h>

#define CARBON_LINE_MAX 1024      /* a longer line is dropped (and counted) */
#define CARBON_PREFIX_MAX 128
#define CARBON_HOST_MAX 256
#define CARBON_BACKOFF_MIN_MS 100
#define CARBON_BACKOFF_MAX_MS 10000
#define CARBON_STEADY_MS 10000    /* a connection this old resets the backoff */
#define CARBON_BUFFER_DEFAULT (4u << 20)
#define CARBON_BUFFER_MIN 1024
#define CARBON_BUFFER_MAX (1u << 30)

struct carbon;
struct stats_slot;

/* Split "host:port" or "[v6-address]:port" into host and port (1..65535,
 * decimal). Returns 0, or -1 with *why saying what is wrong (host and port
 * unspecified). Nothing is resolved. */
int carbon_parse_addr(const char *spec, char *host, size_t hcap, char *port,
    size_t pcap, const char **why);
/* 1 if p can prefix metric names: 1..CARBON_PREFIX_MAX printable ASCII
 * characters without spaces or ';' (which starts carbon's tags); else 0. */
int carbon_prefix_ok(const char *p);
/* The wait before the next connect attempt after a failure, given the last
 * one (0 after a connection that lasted CARBON_STEADY_MS or carried its
 * flush to the end): 100 ms doubling up to 10 s. A connection the peer
 * closes sooner counts as a failure, however it began. */
long long carbon_backoff_next(long long prev_ms);

/* A sink sending to host:port with metric names under `prefix`, buffering
 * at most buffer_bytes of lines. The host is resolved here, once (a name
 * may take the resolver's time; an address never does); no connection is
 * made before the first carbon_poll. Returns NULL with *why set (and errno
 * ENOMEM, or EINVAL when the address or prefix is not valid or the host
 * does not resolve); nothing to free then. */
struct carbon *carbon_new(const char *host, const char *port,
    const char *prefix, size_t buffer_bytes, const char **why);
/* Close the connection and free c (NULL is allowed). Lines still
 * buffered are lost: carbon_drain counts them first. */
void carbon_free(struct carbon *c);
/* Queue "<prefix>.<name>.<stat><tags> <value> <ts>\n" (name is
 * name[0..len), tags "" or ";k=v;..." as egress/carbon_path.h encodes
 * them, value already formatted). When the buffer cannot take it, the
 * oldest whole lines not yet begun are dropped to make room (within a
 * flush, see carbon_begin_flush); a line longer than the buffer (or
 * CARBON_LINE_MAX) is itself dropped. Drops are
 * counted and logged at most once a minute. Never sends: see carbon_poll. */
void carbon_line(struct carbon *c, const char *name, size_t len,
    const char *stat, const char *tags, const char *value, long long ts);
/* Queue "<path> <value> <ts>\n" as carbon_line does, with no prefix and
 * no stat: path[0..len) is the whole metric path (the statsd egress's
 * names). */
void carbon_path_line(struct carbon *c, const char *path, size_t len,
    const char *value, long long ts);
/* Switch c to a connection per flush (--connection per-flush, docs/design.md
 * §14), before its first carbon_poll: lines queued up to each
 * carbon_end_flush go on one connection, opened when there are some and
 * closed once they are written; a flush's lines never share a connection
 * with a later flush's. (A line cut by a lost connection is sent whole on
 * the next, as always.) The default is one persistent connection. */
void carbon_set_per_flush(struct carbon *c);
/* The lines queued from here to carbon_end_flush are one flush, kept
 * whole: when the buffer is full, lines of earlier flushes are dropped
 * first, and then the buffer grows (doubling, up to CARBON_BUFFER_MAX)
 * rather than drop the flush's own lines, so that a healthy carbon gets
 * every flush however large. What the buffer keeps of earlier flushes is
 * first cut to the size asked of carbon_new (the oldest lines dropped and
 * counted). A sink that never calls this keeps that size throughout. */
void carbon_begin_flush(struct carbon *c);
/* The lines queued so far end a flush (for a per-flush connection, and
 * the end of what carbon_begin_flush keeps whole). */
void carbon_end_flush(struct carbon *c);
/* Make progress without blocking: notice a connection the peer closed or
 * reset, connect (again) when the backoff allows, and write what the
 * socket takes. A line cut by a full socket goes on from the same byte
 * next time; a line cut by a lost connection is sent again whole on the
 * next one (carbon discards the half it got). Bytes the kernel accepted
 * shortly before the peer went away may still be lost: TCP has no
 * acknowledgement carbon's plaintext protocol could use. */
void carbon_poll(struct carbon *c);
/* At exit: keep polling while lines are pending and a connection is up or
 * being made, for at most timeout_ms (giving up at the first failure),
 * then carbon_drop_pending. Returns how many lines that dropped. */
uint64_t carbon_drain(struct carbon *c, int timeout_ms);
/* The lines not yet sent (whole, or the one cut by a full socket) are
 * dropped, added to carbon_dropped, and said in one log line when there
 * are any; c goes on as an empty buffer. Returns how many. */
uint64_t carbon_drop_pending(struct carbon *c);
/* Lines dropped so far (buffer full, line too long, carbon_drop_pending). */
uint64_t carbon_dropped(const struct carbon *c);
/* Lines dropped since the last call: what a stage adds to sink_dropped. */
uint64_t carbon_dropped_new(struct carbon *c);
/* Lines not yet sent whole: what carbon_drop_pending would drop. */
uint64_t carbon_held(const struct carbon *c);
/* A stage's account of its lines in its stats slot: the drops since the
 * last call added to sink_dropped, then sink_held made carbon_held plus
 * `coming`, the lines the stage has taken on and not yet queued (a sink's
 * entries of the message it is in), so that the supervisor counts the
 * lines a stage killed with them took along (common/stats.h). Called
 * after every change: a kill between the two stores counts the lines one
 * call dropped twice. */
void carbon_book(struct carbon *c, struct stats_slot *slot, uint64_t coming);
/* Bytes queued and not yet accepted by the kernel. */
size_t carbon_pending(const struct carbon *c);
/* 1 while a connection is established, else 0. */
int carbon_connected(const struct carbon *c);

#endif
