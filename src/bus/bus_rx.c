/*
 * bus_rx.c - a bus client's bytes, seen before libwebsockets parses them.
 *
 * lws 4.1 takes a client frame without a mask as if it had one (RFC 6455
 * 5.1: the server must fail the connection), and ends a connection that
 * sends a control frame announcing more than 125 bytes without a Close
 * frame.  Its callbacks show neither: they get payloads, not headers.  So
 * cohortd defines recv(), which lws reads its sockets with (the
 * executable's definition comes before libc's for every library), and
 * follows the frame headers of each bus connection through it (wsscan.c).
 * Every other descriptor, and every other program linking this code,
 * gets libc's recvfrom() untouched.
 *
 * On a fault lws is handed only the bytes before the faulty frame and
 * then reads nothing more (EAGAIN, then rx flow control); once it has
 * handled those, cohortd
 * closes with 1002 by its own path (bus_conn_close: logged, Close frame,
 * linger, which reads and drops the rest).
 *
 * The scan starts with the first byte read after the upgrade: a client
 * that sends frames before it has the server's 101 (RFC 6455 4.1 forbids
 * it) may have some read with its request, and is then followed out of
 * step.
 *
 * lws reads a socket no more than its receive buffer at a wake-up, which
 * is small (BUS_RX_PIECE: lws keeps one for every connection), so a
 * client sending a burst would cost a wake-up, an epoll round and a
 * recv() per kilobyte.  recv() reads BUS_RX_READ instead; lws gets what
 * it asked for and the rest waits in the connection's read-ahead, which
 * bus_rx_drain hands lws (by servicing the socket as if it were
 * readable) before the loop sleeps.  It lives only until then: memory
 * per connection stays what lws keeps.
 */
#include "autoconfig.h"

#include <errno.h>
#include <libwebsockets.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "bus.h"

/* The one bus whose sockets recv() follows: recv() has no other way to
 * reach it.  Set by bus_rx_start, cleared by bus_rx_stop. */
static struct bus *rx_bus;

/* What was read of a socket past what lws asked for. */
struct bus_ahead {
	size_t len, off;
	unsigned char data[];
};

static void ahead_drop(struct bus_conn *c)
{
	if (!c->ahead)
		return;
	c->bus->ahead_bytes -= c->ahead->len;
	LIST_REMOVE(c, ahead_link);
	free(c->ahead);
	c->ahead = NULL;
}

/* The idle watcher only keeps the loop from sleeping: flush_cb, before
 * the next sleep, does the work. */
static void ahead_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w);
}

void bus_rx_start(struct bus *b)
{
	rx_bus = b;
	ev_idle_init(&b->ahead_w, ahead_idle_cb);
}

void bus_rx_stop(struct bus *b)
{
	if (rx_bus == b)
		rx_bus = NULL;
	ev_idle_stop(b->loop, &b->ahead_w);
	intmap_free(&b->conns_by_fd);
}

void bus_rx_watch(struct bus_conn *c)
{
	c->rx_fd = lws_get_socket_fd(c->wsi);
	intmap_put(&c->bus->conns_by_fd, c->rx_fd, c);
}

void bus_rx_unwatch(struct bus_conn *c)
{
	ahead_drop(c);
	if (intmap_get(&c->bus->conns_by_fd, c->rx_fd) == c)
		intmap_del(&c->bus->conns_by_fd, c->rx_fd);
}

/* What lws may have of the n bytes read for c: those before a faulty
 * frame, or -1 (EAGAIN) when that is none (0 would be the end of the
 * stream, which lws closes on at once, without our Close frame).  The
 * close waits for flush_cb (bus_write.c), before the loop sleeps: the
 * frames before the faulty one are handled and answered first. */
static ssize_t rx_check(struct bus_conn *c, const void *buf, ssize_t n)
{
	/* Bytes from the peer are progress (bus_live.c), whatever frame they
	 * belong to: lws tells us of no PING, and of no empty PONG. */
	if (!c->closing)
		bus_live_progress(c);
	if (c->rx_failed) {
		errno = EAGAIN;
		return -1;
	}
	size_t keep = ws_scan(&c->rx_scan, buf, (size_t)n, &c->rx_fault);
	if (c->rx_fault == WS_FAULT_NONE)
		return n;
	c->rx_failed = true;	/* lws gets EAGAIN from now on */
	if (!c->flush_queued) {
		c->flush_queued = true;
		SLIST_INSERT_HEAD(&c->bus->flush, c, flush_link);
	}
	if (keep == 0) {
		errno = EAGAIN;
		return -1;
	}
	return (ssize_t)keep;
}

void bus_rx_fail(struct bus_conn *c)
{
	enum ws_fault fault = c->rx_fault;

	c->rx_fault = WS_FAULT_NONE;
	/* Only now: lws keeps what it read while rx is off unparsed. */
	lws_rx_flow_control(c->wsi, 0);
	bus_conn_close(c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "%s", ws_fault_text(fault));
}

/* What lws reads of c's socket: its read-ahead first, else a read of up
 * to BUS_RX_READ, of which what lws did not ask for becomes one. */
static ssize_t read_socket(struct bus_conn *c, int fd, void *buf, size_t len, int flags)
{
	static unsigned char spare[BUS_RX_READ];
	struct bus *b = c->bus;
	struct bus_ahead *a = c->ahead;

	if (a) {
		size_t n = len < a->len - a->off ? len : a->len - a->off;
		memcpy(buf, a->data + a->off, n);
		a->off += n;
		if (a->off == a->len)
			ahead_drop(c);
		return (ssize_t)n;
	}
	if (len >= sizeof(spare) || b->ahead_bytes >= BUS_RX_AHEAD_MAX)
		return recvfrom(fd, buf, len, flags, NULL, NULL);
	struct iovec iov[2] = {{buf, len}, {spare, sizeof(spare) - len}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
	ssize_t n = recvmsg(fd, &m, flags);
	if (n <= (ssize_t)len)
		return n;
	size_t more = (size_t)n - len;
	a = xmalloc(sizeof(*a) + more);
	a->len = more;
	a->off = 0;
	memcpy(a->data, spare, more);
	c->ahead = a;
	b->ahead_bytes += more;
	LIST_INSERT_HEAD(&b->aheads, c, ahead_link);
	return (ssize_t)len;
}

/*
 * Services each connection with a read-ahead as lws would a readable
 * socket, until lws has taken it all.  One lws no longer reads (its
 * reading paused because it does not read what we send, bus_write.c) keeps
 * it for when it reads again.  Servicing one may free any connection: the
 * list is taken over first, and each is found again by its id.
 */
void bus_rx_drain(struct bus *b)
{
	struct bus_aheads round = LIST_HEAD_INITIALIZER(round);
	struct bus_conn *c;
	/* What the read-aheads hand lws in one loop iteration: 50 clients
	 * acking a backlog sent 16 KiB each, 25,000 requests, all in one
	 * iteration while every other client waited.  The rest waits for the
	 * next iteration. */
	size_t budget = BUS_RX_TURN;

	while ((c = LIST_FIRST(&b->aheads))) {
		LIST_REMOVE(c, ahead_link);
		LIST_INSERT_HEAD(&round, c, ahead_link);
	}
	while ((c = LIST_FIRST(&round))) {
		LIST_REMOVE(c, ahead_link);
		LIST_INSERT_HEAD(&b->aheads, c, ahead_link);
		uint64_t id = c->id;
		/* lws first hands over what it kept while it did not read (then
		 * it reads nothing): a few rounds without progress are allowed. */
		for (int idle = 0; c && c->ahead && !c->rx_paused && idle < 3 && budget;) {
			size_t left = c->ahead->len - c->ahead->off;
			struct lws_pollfd p = {.fd = c->rx_fd, .events = POLLIN, .revents = POLLIN};
			(void)lws_service_fd(b->ctx, &p);
			c = intmap_get(&b->conns_by_id, (int64_t)id);
			size_t now = c && c->ahead ? c->ahead->len - c->ahead->off : 0;
			if (c && now == left)
				idle++;
			budget = budget > left - now ? budget - (left - now) : 0;
		}
	}
}

void bus_rx_keep_awake(struct bus *b)
{
	struct bus_conn *c;

	LIST_FOREACH(c, &b->aheads, ahead_link)
		if (!c->rx_paused && !c->rx_failed) {
			ev_idle_start(b->loop, &b->ahead_w);
			return;
		}
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	if (rx_bus && !(flags & MSG_PEEK)) {
		struct bus_conn *c = intmap_get(&rx_bus->conns_by_fd, fd);
		if (c) {
			ssize_t n = read_socket(c, fd, buf, len, flags);
			if (n <= 0)
				return n;
			n = rx_check(c, buf, n);
			if (c->rx_failed)
				ahead_drop(c);	/* what followed the fault */
			return n;
		}
	}
	ssize_t n = recvfrom(fd, buf, len, flags, NULL, NULL);
	if (n > 0 && rx_bus && !(flags & MSG_PEEK))
		return bus_accept_head(rx_bus, fd, buf, n);
	return n;
}
