/* prom_http.c - /metrics over libmicrohttpd (prom_http.h): a refcounted
 * page swapped in whole, answers streamed from it by a content reader, and
 * every request's end booked as a scrape or a scrape error. */
#include "egress/prom_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

/* One published page: the sources' texts, then the counters (rendered per
 * answer). Shared by the answers that started while it was current. */
struct page {
	atomic_uint refs;
	struct prom_text *part[REPORT_SRC_N];
	size_t len;
	struct prom_self self;
};

struct prom_http {
	struct MHD_Daemon *d;
	unsigned port;
	unsigned answer_max_s;
	pthread_mutex_t lock;     /* guards cur only */
	struct page *cur;
	atomic_uint_least64_t scrapes, errors;
	atomic_int stopping;
	pthread_mutex_t log_lock;
	struct log_limit log_limit;
	/* Markers for a request's state, kept in its con_cls. */
	char seen, reading, served, refused;
};

/* One answer in progress: the page and the counters as of its start. */
struct answer {
	struct page *pg;
	char self[PROM_SELF_MAX];
	size_t self_len;
	uint64_t total;
	long long deadline_ms;
};

static void
page_unref(struct page *pg)
{
	if (pg != NULL && atomic_fetch_sub(&pg->refs, 1) == 1) {
		for (size_t i = 0; i < REPORT_SRC_N; i++)
			prom_text_unref(pg->part[i]);
		free(pg);
	}
}

static struct page *
page_get(struct prom_http *h)
{
	pthread_mutex_lock(&h->lock);
	struct page *pg = h->cur;
	atomic_fetch_add(&pg->refs, 1);
	pthread_mutex_unlock(&h->lock);
	return pg;
}

static ssize_t
answer_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct answer *a = cls;
	if (pos >= a->total)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (clock_ms() > a->deadline_ms)
		return MHD_CONTENT_READER_END_WITH_ERROR;  /* too slow a reader */
	size_t n = 0;
	uint64_t at = 0;
	for (size_t i = 0; i <= REPORT_SRC_N && n < max; i++) {
		const char *p;
		size_t len;
		if (i < REPORT_SRC_N) {
			if (a->pg->part[i] == NULL)
				continue;
			p = a->pg->part[i]->text;
			len = a->pg->part[i]->len;
		} else {
			p = a->self;
			len = a->self_len;
		}
		if (pos + n < at + len) {
			size_t off = (size_t)(pos + n - at);
			size_t k = len - off < max - n ? len - off : max - n;
			memcpy(buf + n, p + off, k);
			n += k;
		}
		at += len;
	}
	return (ssize_t)n;
}

static void
answer_free(void *cls)
{
	struct answer *a = cls;
	page_unref(a->pg);
	free(a);
}

static enum MHD_Result
refuse(struct MHD_Connection *c, unsigned status, const char *body,
    int allow)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body),
	    (void *)body, MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_size, void **con_cls)
{
	struct prom_http *h = cls;
	(void)version;
	(void)upload;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		*con_cls = &h->refused;
		return refuse(c, MHD_HTTP_METHOD_NOT_ALLOWED,
		    "only GET and HEAD\n", 1);
	}
	if (strcmp(url, "/metrics") != 0) {
		*con_cls = &h->refused;
		return refuse(c, MHD_HTTP_NOT_FOUND, "only /metrics\n", 0);
	}
	/* The page is queued once the whole request is in: libmicrohttpd
	 * closes a connection whose answer was queued at the first call
	 * (the headers), as the client may still be sending, so answering
	 * then would cost every scrape a new connection. A body, which a
	 * GET or HEAD has no use for, is read and ignored. */
	if (*con_cls == &h->seen) {
		*con_cls = &h->reading;
		return MHD_YES;
	}
	if (*upload_size != 0) {
		*upload_size = 0;
		return MHD_YES;
	}
	struct answer *a = malloc(sizeof(*a));
	if (a == NULL)
		return MHD_NO;
	a->pg = page_get(h);
	struct prom_self s = a->pg->self;
	s.scrapes = atomic_load(&h->scrapes);
	s.scrape_errors = atomic_load(&h->errors);
	a->self_len = prom_fmt_self(&s, a->self, sizeof(a->self));
	a->total = a->pg->len + a->self_len;
	a->deadline_ms = clock_ms() + (long long)h->answer_max_s * 1000;
	struct MHD_Response *r = MHD_create_response_from_callback(a->total,
	    64 * 1024, answer_read, a, answer_free);
	if (r == NULL) {
		answer_free(a);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
	    PROM_CONTENT_TYPE);
	enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	*con_cls = &h->served;
	return rc;
}

/* Called once per request, before its headers are read: marks it seen,
 * so that its end is booked even when libmicrohttpd answers it itself
 * (a malformed request, headers over the memory bound). */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct prom_http *h = cls;
	(void)uri;
	(void)c;
	return &h->seen;
}

/* Per connection: whether a request of it was booked. A connection
 * closed with none booked (a request line libmicrohttpd dropped unparsed,
 * a client idle until the timeout) is a scrape error too. Once one is
 * booked, a kept connection's later request line that libmicrohttpd
 * drops unparsed is not seen here (no callback names it), and its close,
 * like an idle one's, is no error (README, Prometheus). */
struct conn {
	int booked;
};

static void
on_conn(void *cls, struct MHD_Connection *c, void **socket_context,
    enum MHD_ConnectionNotificationCode code)
{
	struct prom_http *h = cls;
	(void)c;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_context = calloc(1, sizeof(struct conn));
		return;
	}
	struct conn *k = *socket_context;
	if (k != NULL && !k->booked && !atomic_load(&h->stopping))
		atomic_fetch_add(&h->errors, 1);
	free(k);
	*socket_context = NULL;
}

static void
on_done(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct prom_http *h = cls;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c,
	    MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci != NULL && ci->socket_context != NULL)
		((struct conn *)ci->socket_context)->booked = 1;
	if (*con_cls == &h->served && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		atomic_fetch_add(&h->scrapes, 1);
	else if (*con_cls != NULL && toe != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN)
		atomic_fetch_add(&h->errors, 1);
	*con_cls = NULL;
}

/* libmicrohttpd's own complaints (connection limits reached, a bad
 * request), one line a second at most. A connection closed at once for
 * its address's limit gets no callback of its own: this line, which
 * libmicrohttpd writes just before closing it, is the only sign of it,
 * and counts it as a scrape error. (Past the limit of all connections
 * libmicrohttpd stops accepting: the rest wait in the listen backlog.) */
#define LIMIT_LINE "Server reached connection limit"

static void
on_log(void *cls, const char *fmt, va_list ap)
{
	struct prom_http *h = cls;
	char line[256];
	if (strncmp(fmt, LIMIT_LINE, strlen(LIMIT_LINE)) == 0 &&
	    !atomic_load(&h->stopping))
		atomic_fetch_add(&h->errors, 1);
	pthread_mutex_lock(&h->log_lock);
	long long s = log_limit_pass(&h->log_limit, 1000);
	pthread_mutex_unlock(&h->log_lock);
	if (s < 0)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	char more[64];
	log_warnx("http: %s%s", line, log_more(more, sizeof(more), s,
	    "since the last line"));
}

struct prom_http *
prom_http_start(const struct prom_http_opts *o, const char **why)
{
	const char *host = o->host ? o->host : PROM_HTTP_HOST;
	const char *port = o->port ? o->port : PROM_HTTP_PORT;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	char *end;
	errno = 0;
	unsigned long p = strtoul(port, &end, 10);
	if (*port == '\0' || *end != '\0' || errno != 0 || p > 65535) {
		*why = "the port must be a number in 0..65535";
		return NULL;
	}
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)p);
	} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)p);
		flags |= MHD_USE_IPv6;
	} else {
		*why = "the host must be a numeric IPv4 or IPv6 address";
		return NULL;
	}
	struct prom_http *h = calloc(1, sizeof(*h));
	struct page *pg = calloc(1, sizeof(*pg));
	if (h == NULL || pg == NULL) {
		free(h);
		free(pg);
		*why = "out of memory";
		return NULL;
	}
	atomic_init(&pg->refs, 1);
	h->cur = pg;
	h->answer_max_s = o->answer_max_s ? o->answer_max_s : 60;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->log_lock, NULL);
	h->d = MHD_start_daemon(flags, (uint16_t)p, NULL, NULL, on_request, h,
	    MHD_OPTION_EXTERNAL_LOGGER, on_log, h,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)(o->max_conns ? o->max_conns : 1024),
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned)(o->max_per_ip ? o->max_per_ip : 64),
	    MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)(o->idle_timeout_s ? o->idle_timeout_s : 10),
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)(o->req_mem ? o->req_mem : 16384),
	    MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
	    MHD_OPTION_NOTIFY_COMPLETED, on_done, h,
	    MHD_OPTION_NOTIFY_CONNECTION, on_conn, h,
	    MHD_OPTION_END);
	if (h->d == NULL) {
		*why = "libmicrohttpd could not start (address in use, or no "
		    "thread or memory)";
		prom_http_stop(h);
		return NULL;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d,
	    MHD_DAEMON_INFO_BIND_PORT);
	h->port = info != NULL ? info->port : (unsigned)p;
	return h;
}

unsigned
prom_http_port(const struct prom_http *h)
{
	return h->port;
}

int
prom_http_publish(struct prom_http *h, struct prom_text *parts[REPORT_SRC_N],
    const struct prom_self *s)
{
	struct page *pg = calloc(1, sizeof(*pg));
	if (pg == NULL) {
		for (size_t i = 0; i < REPORT_SRC_N; i++)
			prom_text_unref(parts[i]);
		errno = ENOMEM;
		return -1;
	}
	atomic_init(&pg->refs, 1);
	for (size_t i = 0; i < REPORT_SRC_N; i++) {
		pg->part[i] = parts[i];
		pg->len += parts[i] ? parts[i]->len : 0;
	}
	pg->self = *s;
	pthread_mutex_lock(&h->lock);
	struct page *old = h->cur;
	h->cur = pg;
	pthread_mutex_unlock(&h->lock);
	page_unref(old);
	return 0;
}

void
prom_http_counters(const struct prom_http *h, uint64_t *scrapes,
    uint64_t *errors)
{
	*scrapes = atomic_load(&((struct prom_http *)h)->scrapes);
	*errors = atomic_load(&((struct prom_http *)h)->errors);
}

void
prom_http_stop(struct prom_http *h)
{
	if (h == NULL)
		return;
	atomic_store(&h->stopping, 1);
	if (h->d != NULL)
		MHD_stop_daemon(h->d);
	page_unref(h->cur);
	pthread_mutex_destroy(&h->lock);
	pthread_mutex_destroy(&h->log_lock);
	free(h);
}
