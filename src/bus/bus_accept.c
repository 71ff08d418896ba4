/*
 * bus_accept.c - the bus's listening sockets, accepted by cohortd itself
 * and handed to libwebsockets (lws_adopt_socket_vhost), so that no client
 * can take the descriptors supervision needs.
 *
 * lws's own listener accepted while accept() worked: at the descriptor
 * limit (EMFILE) it logged and returned with the client still queued, the
 * socket stayed readable, and the loop spun on it (237,000 lines a second)
 * while services could not get a pipe to start.  Here:
 *
 *   - at EMFILE/ENFILE the listeners pause (ACCEPT_PAUSE_MS), as the
 *     control socket's does: clients wait in the backlog, logged once;
 *   - connections are capped: bus_max_connections, and no more than the
 *     descriptor limit less what supervision keeps (FD_RESERVE, and
 *     FD_PER_SERVICE for each service: its output pipes, notify socket,
 *     exec-status pipe, probe, log files); on the unix socket, a uid that
 *     is not an admin has at most bus_max_connections_per_uid.  Over a cap
 *     a client is answered "HTTP/1.1 503" with the reason and closed; the
 *     log line says why (identical lines are counted by log.c, not
 *     repeated);
 *   - a request head (the request line and headers) over BUS_MAX_HEAD
 *     bytes is answered "HTTP/1.1 431" and closed (bus_accept_head): lws
 *     would drop it with no answer at all;
 *   - a client that has not completed the WebSocket upgrade within
 *     BUS_HELLO_TIMEOUT_MS is closed (after the upgrade bus_live.c's hello
 *     deadline takes over), so idle sockets cannot hold the cap for long.
 *
 * Every accepted socket is a struct bus_peer, keyed by its wsi, until lws
 * destroys the wsi (LWS_CALLBACK_WSI_DESTROY); lingering sockets
 * (bus_live.c) count too, as they hold a descriptor.
 */
#include "autoconfig.h"

#include <errno.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "bus.h"
#include "evtimer.h"
#include "log.h"
#include "peer.h"

#define ACCEPT_BURST 64		/* clients accepted per wake-up */
#define ACCEPT_PAUSE_MS 100	/* out of descriptors: try again after this */
#define FD_RESERVE 64		/* descriptors the bus leaves to cohortd itself */
#define FD_PER_SERVICE 8	/* ... and to each service */
/* Clients waiting to be accepted, at most (the kernel caps it at
 * net.core.somaxconn, 4096 by default): when cohortd restarts under
 * thousands of clients they come back together, and a full backlog
 * refuses a unix client at once (EAGAIN) and drops a TCP one's SYN (a
 * second's wait). */
#define BACKLOG 65535

struct bus_peer {
	struct bus *bus;
	struct lws *wsi;
	uid_t uid;		/* unix peers */
	bool unix_peer;
	bool counted_uid;	/* in per_uid (a unix peer that is no admin) */
	int fd;
	size_t head_len;	/* bytes of its first request's head so far */
	unsigned head_match;	/* of "\r\n\r\n", the head's end */
	ev_timer upgrade_w;	/* the WebSocket upgrade must come by then */
};

/* How many connections the descriptor limit leaves the bus. */
static size_t fd_budget(const struct bus *b)
{
	struct rlimit rl;
	size_t reserve = FD_RESERVE + FD_PER_SERVICE * b->hooks.services(b->hooks.arg);

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return SIZE_MAX;
	return rl.rlim_cur > reserve ? (size_t)rl.rlim_cur - reserve : 0;
}

static size_t uid_count(const struct bus *b, uid_t uid)
{
	return (size_t)(uintptr_t)intmap_get(&b->per_uid, (int64_t)uid);
}

static void uid_add(struct bus *b, uid_t uid, int delta)
{
	size_t n = uid_count(b, uid) + (size_t)(ssize_t)delta;

	if (n)
		intmap_put(&b->per_uid, (int64_t)uid, (void *)(uintptr_t)n);
	else
		intmap_del(&b->per_uid, (int64_t)uid);
}

/* Why a new client must be refused, or NULL. */
static const char *over_cap(struct bus *b, bool unix_peer, bool admin, uid_t uid, char *why, size_t len)
{
	size_t open = b->npeers + b->nlingering, budget = fd_budget(b);

	if (open >= b->max_connections) {
		snprintf(why, len, "%zu bus connections are open, the most allowed (bus_max_connections)", open);
		return why;
	}
	if (open >= budget) {
		snprintf(why, len, "%zu bus connections are open, the most the descriptor limit leaves "
			 "(the rest is kept for supervision)", open);
		return why;
	}
	if (unix_peer && !admin && uid_count(b, uid) >= b->max_connections_per_uid) {
		snprintf(why, len, "uid %u has %zu bus connections open, the most allowed "
			 "(bus_max_connections_per_uid)", (unsigned)uid, uid_count(b, uid));
		return why;
	}
	return NULL;
}

/* "503" with the reason, to a client we will not serve; what it sent is
 * read first so that closing sends no RST ahead of the answer. */
static void refuse(int fd, const char *why)
{
	char buf[512];
	int body = (int)strlen(why) + (int)strlen("cohortd: \n");

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	int n = snprintf(buf, sizeof(buf), "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
			 "Content-Length: %d\r\nConnection: close\r\n\r\ncohortd: %s\n", body, why);
	if (n > 0 && (size_t)n < sizeof(buf))
		(void)!send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

static void upgrade_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct bus_peer *p = container_of(w, struct bus_peer, upgrade_w);
	(void)loop;
	(void)revents;

	if (p->unix_peer)
		log_info(NULL, "bus: closing a connection from uid %u: no WebSocket upgrade within %d s",
			 (unsigned)p->uid, BUS_HELLO_TIMEOUT_MS / 1000);
	else
		log_info(NULL, "bus: closing a connection on %s: no WebSocket upgrade within %d s",
			 p->bus->listen, BUS_HELLO_TIMEOUT_MS / 1000);
	lws_set_timeout(p->wsi, PENDING_TIMEOUT_AWAITING_PROXY_RESPONSE, LWS_TO_KILL_ASYNC);
}

static void adopt(struct bus *b, struct bus_listener *l, int fd)
{
	struct ucred cr = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
	socklen_t cl = sizeof(cr);
	bool admin = false;
	char why[200];

	if (l->unix_sock) {
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0) {
			close(fd);
			return;
		}
		admin = peer_allowed(b->auth, cr.uid, cr.gid);
	}
	if (over_cap(b, l->unix_sock, admin, cr.uid, why, sizeof(why))) {
		if (l->unix_sock)
			log_warn(NULL, "bus: refused a connection from uid %u: %s", (unsigned)cr.uid, why);
		else
			log_warn(NULL, "bus: refused a connection on %s: %s", b->listen, why);
		refuse(fd, why);
		return;
	}
	struct lws *wsi = lws_adopt_socket_vhost(l->vh, fd);
	if (!wsi)
		return;	/* lws closed it, and said why */
	struct bus_peer *p = xcalloc(1, sizeof(*p));
	p->bus = b;
	p->wsi = wsi;
	p->uid = cr.uid;
	p->unix_peer = l->unix_sock;
	p->counted_uid = l->unix_sock && !admin;
	p->fd = fd;
	intmap_put(&b->heads_by_fd, fd, p);
	if (p->counted_uid)
		uid_add(b, cr.uid, 1);
	b->npeers++;
	intmap_put(&b->peers, (int64_t)(intptr_t)wsi, p);
	ev_timer_init(&p->upgrade_w, upgrade_timeout_cb, BUS_HELLO_TIMEOUT_MS / 1000.0, 0);
	ev_timer_start(b->loop, &p->upgrade_w);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct bus_listener *l = container_of(w, struct bus_listener, io);
	struct bus *b = l->bus;
	(void)revents;

	for (int i = 0; i < ACCEPT_BURST; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
			/* The client stays queued and the socket readable: accepting
			 * again at once would spin.  Wait for a descriptor to free. */
			if (!b->accept_paused)
				log_warn(NULL, "bus: accept: %s: new clients wait until descriptors free up",
					 strerror(errno));
			b->accept_paused = true;
			for (size_t k = 0; k < b->nlisteners; k++)
				ev_io_stop(loop, &b->listeners[k].io);
			evtimer_start_ms(loop, &b->accept_pause_w, ACCEPT_PAUSE_MS);
			return;
		}
		if (fd < 0) {
			/* The wait ends when every waiting client is in (as the
			 * control socket's does). */
			if (errno == EAGAIN && b->accept_paused) {
				log_info(NULL, "bus: accepting clients again");
				b->accept_paused = false;
			} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				log_warn(NULL, "bus: accept: %s", strerror(errno));
			}
			return;
		}
		adopt(b, l, fd);
	}
}

static void accept_again_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct bus *b = container_of(w, struct bus, accept_pause_w);
	(void)revents;

	for (size_t k = 0; k < b->nlisteners; k++)
		ev_io_start(loop, &b->listeners[k].io);
}

void bus_accept_upgraded(struct bus *b, struct lws *wsi)
{
	struct bus_peer *p = intmap_get(&b->peers, (int64_t)(intptr_t)wsi);

	if (!p)
		return;
	ev_timer_stop(b->loop, &p->upgrade_w);	/* bus_live.c's hello deadline now */
	if (intmap_get(&b->heads_by_fd, p->fd) == p)
		intmap_del(&b->heads_by_fd, p->fd);
}

/* 431 (RFC 6585) to a client whose request head is too long.  What it
 * sent is read first so that closing sends no RST ahead of the answer;
 * lws then reads the end of the stream and closes the socket. */
static void head_too_large(struct bus_peer *p)
{
	char buf[512];
	static const char body[] = "cohortd: the request's head (request line and headers) is over 8192 bytes\n";

	if (p->unix_peer)
		log_warn(NULL, "bus: refused a request from uid %u: its head is over %d bytes (431)",
			 (unsigned)p->uid, BUS_MAX_HEAD);
	else
		log_warn(NULL, "bus: refused a request on %s: its head is over %d bytes (431)",
			 p->bus->listen, BUS_MAX_HEAD);
	while (recvfrom(p->fd, buf, sizeof(buf), MSG_DONTWAIT, NULL, NULL) > 0)
		;
	int n = snprintf(buf, sizeof(buf), "HTTP/1.1 431 Request Header Fields Too Large\r\n"
			 "Content-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
			 sizeof(body) - 1, body);
	if (n > 0 && (size_t)n < sizeof(buf))
		(void)!send(p->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(p->fd, SHUT_WR);
}

ssize_t bus_accept_head(struct bus *b, int fd, void *buf, ssize_t n)
{
	static const char end[] = "\r\n\r\n";
	struct bus_peer *p = intmap_get(&b->heads_by_fd, fd);
	const char *s = buf;

	if (!p)
		return n;
	/* Only the first request is followed: after it comes the WebSocket,
	 * or a GET of a page, whose next request lws limits (its own
	 * max_http_header_data, set above BUS_MAX_HEAD) without an answer. */
	for (ssize_t i = 0; i < n; i++) {
		if (++p->head_len > BUS_MAX_HEAD) {
			intmap_del(&b->heads_by_fd, fd);
			head_too_large(p);
			return 0;
		}
		p->head_match = s[i] == end[p->head_match] ? p->head_match + 1 : s[i] == '\r';
		if (p->head_match == 4) {
			intmap_del(&b->heads_by_fd, fd);
			return n;
		}
	}
	return n;
}

void bus_accept_gone(struct bus *b, struct lws *wsi)
{
	struct bus_peer *p = intmap_del(&b->peers, (int64_t)(intptr_t)wsi);

	if (!p)
		return;
	ev_timer_stop(b->loop, &p->upgrade_w);
	if (intmap_get(&b->heads_by_fd, p->fd) == p)
		intmap_del(&b->heads_by_fd, p->fd);
	if (p->counted_uid)
		uid_add(b, p->uid, -1);
	b->npeers--;
	free(p);
}

static int listen_unix(struct bus *b, const char *path, mode_t mode, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long for a unix socket", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	unlink(path);	/* the single-instance lock says no cohortd uses it */
	/* Bind under a umask that lets nobody in before the chmod. */
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, BACKLOG) < 0 || chmod(path, mode) < 0 ||
	    (b->auth->has_group && chown(path, (uid_t)-1, b->auth->group) < 0)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int listen_tcp(const char *host, const char *port, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res;
	int one = 1, fd = -1, rc = getaddrinfo(host, port, &hints, &res);

	if (rc) {
		snprintf(err, errlen, "bus_listen %s:%s: %s", host, port, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		/* Exactly the address given: [::1] is not 127.0.0.1 too. */
		if (a->ai_family == AF_INET6)
			(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, BACKLOG) < 0) {
			snprintf(err, errlen, "bus_listen %s:%s: %s", host, port, strerror(errno));
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

int bus_accept_listen(struct bus *b, struct lws_vhost *vh, const char *unix_path, const char *host,
		      const char *port, char *err, size_t errlen)
{
	int fd = unix_path ? listen_unix(b, unix_path, (mode_t)b->mode, err, errlen)
			   : listen_tcp(host, port, err, errlen);

	if (fd < 0)
		return -1;
	if (!b->nlisteners)
		ev_init(&b->accept_pause_w, accept_again_cb);
	struct bus_listener *l = &b->listeners[b->nlisteners++];
	l->bus = b;
	l->vh = vh;
	l->unix_sock = unix_path != NULL;
	ev_io_init(&l->io, accept_cb, fd, EV_READ);
	ev_io_start(b->loop, &l->io);
	return 0;
}

void bus_accept_close(struct bus *b)
{
	ev_timer_stop(b->loop, &b->accept_pause_w);
	for (size_t k = 0; k < b->nlisteners; k++) {
		ev_io_stop(b->loop, &b->listeners[k].io);
		close(b->listeners[k].io.fd);
	}
	b->nlisteners = 0;
}

void bus_accept_free(struct bus *b)
{
	size_t it = 0;
	void *v;

	while (intmap_next(&b->peers, &it, NULL, &v)) {
		struct bus_peer *p = v;
		ev_timer_stop(b->loop, &p->upgrade_w);
		free(p);
	}
	intmap_free(&b->peers);
	intmap_free(&b->per_uid);
	intmap_free(&b->heads_by_fd);
	b->npeers = 0;
}
