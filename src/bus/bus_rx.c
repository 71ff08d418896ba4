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
 */
#include "autoconfig.h"

#include <errno.h>
#include <libwebsockets.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "bus.h"

/* The one bus whose sockets recv() follows: recv() has no other way to
 * reach it.  Set by bus_rx_start, cleared by bus_rx_stop. */
static struct bus *rx_bus;

void bus_rx_start(struct bus *b)
{
	rx_bus = b;
}

void bus_rx_stop(struct bus *b)
{
	if (rx_bus == b)
		rx_bus = NULL;
	intmap_free(&b->conns_by_fd);
}

void bus_rx_watch(struct bus_conn *c)
{
	c->rx_fd = lws_get_socket_fd(c->wsi);
	intmap_put(&c->bus->conns_by_fd, c->rx_fd, c);
}

void bus_rx_unwatch(struct bus_conn *c)
{
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

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	ssize_t n = recvfrom(fd, buf, len, flags, NULL, NULL);

	if (n > 0 && rx_bus && !(flags & MSG_PEEK)) {
		struct bus_conn *c = intmap_get(&rx_bus->conns_by_fd, fd);
		if (c)
			return rx_check(c, buf, n);
		return bus_accept_head(rx_bus, fd, buf, n);
	}
	return n;
}
