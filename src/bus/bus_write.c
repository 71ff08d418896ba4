/*
 * bus_write.c - what the bus sends: each connection's queue of shared,
 * reference-counted frames, and the writes that empty it.  Frames are
 * queued by bus_conn_send and written in batches (several frames per
 * send()) before the loop sleeps, by flush_cb; only a connection whose
 * socket is full (lws holds the tail of a write) or that is closing waits
 * for lws's writeable callback, which calls bus_write_some too.  At
 * shutdown every connection gets its Close frame here (bus_say_goodbye).
 */
#include "autoconfig.h"

#include <inttypes.h>
#include <libwebsockets.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"
#include "wire.h"

void bus_conn_send(struct bus_conn *c, struct bus_frame *f)
{
	if (c->closing)
		return;
	struct bus_out *o = xmalloc(sizeof(*o));
	o->f = f;
	f->refs++;
	STAILQ_INSERT_TAIL(&c->out, o, link);
	c->out_len++;
	c->out_bytes += f->len;
	if (!c->rx_paused && c->out_bytes > BUS_OUT_MAX) {
		/* It does not read what we send: stop reading what it sends. */
		lws_rx_flow_control(c->wsi, 0);
		c->rx_paused = true;
	}
	if (!c->write_asked && !c->flush_queued) {	/* flush_cb writes it */
		c->flush_queued = true;
		SLIST_INSERT_HEAD(&c->bus->flush, c, flush_link);
	}
}

void bus_conn_send_json(struct bus_conn *c, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);

	json_decref(o);
	if (!text)
		return;
	struct bus_frame *f = bus_frame_new(text, strlen(text));
	free(text);
	bus_conn_send(c, f);
	bus_frame_put(f);
}

void bus_conn_send_ok(struct bus_conn *c, json_t *id, uint64_t seq, bool duplicate)
{
	char text[WIRE_OK_SEQ_MAX];

	/* A publisher's ok follows every qos-1 message: ids are numbers in
	 * every client we know, and those skip jansson. */
	if (duplicate) {
		bus_conn_send_json(c, json_pack("{s:s,s:O,s:I,s:b}", "op", "ok", "id", id, "seq", (json_int_t)seq,
						"duplicate", 1));
		return;
	}
	if (!json_is_integer(id)) {
		bus_conn_send_json(c, json_pack("{s:s,s:O,s:I}", "op", "ok", "id", id, "seq", (json_int_t)seq));
		return;
	}
	char *end = wire_write_ok_seq(text, json_integer_value(id), seq);
	struct bus_frame *f = bus_frame_new(text, (size_t)(end - text));
	bus_conn_send(c, f);
	bus_frame_put(f);
}

void bus_conn_close(struct bus_conn *c, int status, const char *fmt, ...)
{
	va_list ap;

	if (c->closing)
		return;
	c->closing = true;
	c->close_status = status;
	va_start(ap, fmt);
	vsnprintf(c->close_reason, sizeof(c->close_reason), fmt, ap);
	va_end(ap);
	log_info(NULL, "bus: closing connection %llu (%s, %s, pid %ld): %s (%d)", (unsigned long long)c->id,
		 c->identity ? c->identity : "no hello", c->unix_peer ? "unix" : "tcp", (long)c->pid,
		 c->close_reason, status);
	bus_live_closing(c);
	lws_callback_on_writable(c->wsi);
}

static void send_error(struct bus_conn *c, json_t *id, const char *fmt, va_list ap)
{
	char buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* It may quote the frame (jansson's "near '...'"), which need not be
	 * UTF-8: json_pack refuses a string that is not, and nothing went. */
	utf8_fix(buf, strlen(buf));
	bus_conn_send_json(c, json_pack("{s:s,s:O,s:s}", "op", "error", "id", id ? id : json_null(), "error", buf));
}

void bus_conn_refuse(struct bus_conn *c, json_t *id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_error(c, id, fmt, ap);
	va_end(ap);
}

void bus_conn_error(struct bus_conn *c, json_t *id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_error(c, id, fmt, ap);
	va_end(ap);
	if (++c->errors >= BUS_ABUSE_MAX) {
		bus_conn_send_json(c, json_pack("{s:s,s:n,s:s}", "op", "error", "id", "error",
						"too many bad requests: closing"));
		bus_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many bad requests");
	}
}

/* The RFC 6455 header of an unmasked, final text frame of len bytes (a
 * batch is under 64 KiB: two sizes of header). */
_Static_assert(BUS_BATCH_MAX < 65536, "a batched frame needs at most a 4-byte header");
_Static_assert(BUS_BATCH_MAX + 4 <= BUS_TX_PACKET, "lws sends a batch in one piece");
static size_t ws_header(unsigned char *h, size_t len)
{
	h[0] = 0x81;
	if (len < 126) {
		h[1] = (unsigned char)len;
		return 2;
	}
	h[1] = 126;
	h[2] = (unsigned char)(len >> 8);
	h[3] = (unsigned char)len;
	return 4;
}

/* A Close frame with status and reason (at most 123 bytes), unmasked, at f;
 * its length. */
static size_t close_frame(unsigned char *f, int status, const char *reason)
{
	size_t n = strlen(reason);

	if (n > 123)
		n = 123;
	f[0] = 0x88;	/* FIN, Close */
	f[1] = (unsigned char)(2 + n);
	f[2] = (unsigned char)(status >> 8);
	f[3] = (unsigned char)status;
	memcpy(f + 4, reason, n);
	return 4 + n;
}

static void out_pop(struct bus_conn *c)
{
	struct bus_out *o = STAILQ_FIRST(&c->out);

	STAILQ_REMOVE_HEAD(&c->out, link);
	c->out_len--;
	c->out_bytes -= o->f->len;
	bus_frame_put(o->f);
	free(o);
}

/* lws is closing it: nothing more may follow its Close frame. */
void bus_stop_sending(struct bus_conn *c)
{
	c->closing = true;
	while (!STAILQ_EMPTY(&c->out))
		out_pop(c);
}

/*
 * Writes queued frames while the socket takes them: one frame per writeable
 * callback would cost an epoll round per message and let a busy subscriber's
 * queue grow although it reads as fast as we write.  And one send() per
 * frame is most of the cost of a fan-out, so frames go out together: their
 * headers are written here and the batch handed to lws as bytes that need
 * no framing (LWS_WRITE_HTTP, which goes straight to lws_issue_raw; lws
 * still buffers the tail of a short write and sends it first).  A frame
 * too big for a batch goes alone through lws's own framing.
 * lws_send_pipe_choked() says when to stop.
 */
int bus_write_some(struct bus_conn *c)
{
	static unsigned char batch[LWS_PRE + BUS_BATCH_MAX];

	c->write_asked = false;
	if (c->choked)	/* the socket was full and took more: the peer reads */
		bus_live_progress(c);
	c->choked = false;
	if (c->ping_due && !c->closing) {
		/* One byte of payload: lws 4.1 reports no PONG
		 * (LWS_CALLBACK_RECEIVE_PONG) for an empty one. */
		unsigned char ping[LWS_PRE + 3] = {[LWS_PRE] = 0x89, [LWS_PRE + 1] = 1, [LWS_PRE + 2] = 'p'};
		c->ping_due = false;
		if (lws_write(c->wsi, ping + LWS_PRE, 3, LWS_WRITE_HTTP) < 3)
			return -1;
	}
	for (int i = 0; i < BUS_WRITE_BURST && !STAILQ_EMPTY(&c->out); ) {
		if (i > 0 && lws_send_pipe_choked(c->wsi))
			break;
		struct bus_frame *f = STAILQ_FIRST(&c->out)->f;
		if (f->len + 4 > BUS_BATCH_MAX) {
			int n = lws_write(c->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
			bool short_write = n < (int)f->len;
			out_pop(c);
			i++;
			if (short_write)
				return -1;
			continue;
		}
		size_t used = 0;
		while (!STAILQ_EMPTY(&c->out) && i < BUS_WRITE_BURST) {
			f = STAILQ_FIRST(&c->out)->f;
			if (used + f->len + 4 > BUS_BATCH_MAX)
				break;
			used += ws_header(batch + LWS_PRE + used, f->len);
			memcpy(batch + LWS_PRE + used, f->data + LWS_PRE, f->len);
			used += f->len;
			out_pop(c);
			i++;
		}
		if (lws_write(c->wsi, batch + LWS_PRE, used, LWS_WRITE_HTTP) < (int)used)
			return -1;
	}
	if (c->rx_paused && !c->rx_failed && c->out_bytes < BUS_OUT_MAX / 2) {
		lws_rx_flow_control(c->wsi, 1);
		c->rx_paused = false;
	}
	if (!STAILQ_EMPTY(&c->out)) {
		c->choked = lws_send_pipe_choked(c->wsi);
		c->write_asked = true;
		lws_callback_on_writable(c->wsi);
	} else if (c->closing) {
		/* Our Close frame, after what was queued; lws is not told (it
		 * would close the socket at once, see bus_live.c): once the
		 * frame is out, the connection is closed and lingers. */
		unsigned char f[LWS_PRE + 4 + 123];
		if (c->close_sent)
			return -1;
		size_t n = close_frame(f + LWS_PRE, c->close_status, c->close_reason);
		if (lws_write(c->wsi, f + LWS_PRE, n, LWS_WRITE_HTTP) < (int)n)
			return -1;
		c->close_sent = true;
		if (!lws_partial_buffered(c->wsi))
			return -1;
		c->write_asked = true;
		lws_callback_on_writable(c->wsi);
	} else if (lws_partial_buffered(c->wsi)) {
		c->choked = true;
	}
	return 0;
}

/* Writes what c has queued, or leaves it to the writeable callback. */
static void flush_one(struct bus_conn *c)
{
	if (c->write_asked || STAILQ_EMPTY(&c->out))
		return;
	if (c->closing || lws_partial_buffered(c->wsi)) {
		c->write_asked = true;
		lws_callback_on_writable(c->wsi);
	} else if (bus_write_some(c) < 0) {
		/* The socket failed.  Not inside a callback, we cannot return
		 * -1: the writeable callback does, at the next epoll round. */
		c->closing = c->failed = true;
		c->write_asked = true;
		lws_callback_on_writable(c->wsi);
	}
}

/*
 * Before the loop sleeps, writes what this iteration queued, from here
 * rather than from a writeable callback, which would cost every message an
 * epoll_ctl and an epoll round before its send() (and another epoll_ctl
 * after).  lws takes a write outside its callbacks; what the socket does
 * not take it buffers and sends first when it can.  A connection with
 * such a tail pending, or closing, is left to the writeable callback.
 */
static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct bus *b = container_of(w, struct bus, flush_w);
	(void)loop;
	(void)revents;

	bus_rx_drain(b);
	while (!SLIST_EMPTY(&b->flush)) {
		struct bus_conn *c = SLIST_FIRST(&b->flush);
		SLIST_REMOVE_HEAD(&b->flush, flush_link);
		c->flush_queued = false;
		if (c->rx_fault)
			bus_rx_fail(c);
		flush_one(c);
	}
	bus_rx_keep_awake(b);
}

void bus_flush_now(struct bus *b)
{
	struct bus_flushq later = SLIST_HEAD_INITIALIZER(later);
	struct bus_conn *c;

	while ((c = SLIST_FIRST(&b->flush))) {
		SLIST_REMOVE_HEAD(&b->flush, flush_link);
		if (c->rx_fault) {	/* its close is flush_cb's, out of the caller's way */
			SLIST_INSERT_HEAD(&later, c, flush_link);
			continue;
		}
		c->flush_queued = false;
		flush_one(c);
	}
	b->flush = later;
}

/*
 * lws_context_destroy drops the sockets without a Close frame: clients
 * would see 1006, "abnormal closure", for an orderly stop.  So each gets
 * 1001, "going away", first, written as bus_write_some writes (the loop no
 * longer runs to drive a writeable callback), after the queued frames the
 * socket takes at once; the rest are not sent (qos 1 ones are redelivered
 * after the restart).  A socket full with the tail of a frame (a
 * subscriber behind on reading) takes its Close frame once the peer has
 * read that tail: finish_frames waits for it.  Then they linger as every
 * close we decide does (bus_close waits for them).
 */
static void say_goodbye(struct bus *b)
{
	size_t n = 0;

	for (struct bus_conn *c = LIST_FIRST(&b->conns); c; c = LIST_NEXT(c, link)) {
		if (c->close_sent)
			continue;
		if (!STAILQ_EMPTY(&c->out) && !lws_partial_buffered(c->wsi))
			(void)bus_write_some(c);	/* what the socket takes now */
		if (c->close_sent)
			continue;
		if (!c->closing) {
			c->close_status = LWS_CLOSE_STATUS_GOINGAWAY;
			str_copy(c->close_reason, sizeof(c->close_reason), "cohortd is stopping");
		}
		bus_stop_sending(c);
		if (lws_partial_buffered(c->wsi)) {
			c->write_asked = true;	/* finish_frames writes it */
			lws_callback_on_writable(c->wsi);
		} else {
			(void)bus_write_some(c);
		}
		n++;
	}
	if (n)
		log_info(NULL, "bus: closing %zu connection%s: cohortd is stopping (%d)", n, n == 1 ? "" : "s",
			 LWS_CLOSE_STATUS_GOINGAWAY);
}

/*
 * The Close frames that wait behind the tail of a frame: the loop no
 * longer runs, so the sockets are polled here and lws serviced by hand
 * (it writes the tail, then calls bus_write_some for the Close frame), for
 * BUS_LINGER_MS at most.  What is still stuck then gets no Close frame.
 */
static void finish_frames(struct bus *b)
{
	int64_t deadline = now_mono_ms() + BUS_LINGER_MS;

	for (;;) {
		struct pollfd p[64];
		nfds_t n = 0;
		for (struct bus_conn *c = LIST_FIRST(&b->conns); c && n < ARRAY_LEN(p); c = LIST_NEXT(c, link))
			if (!c->close_sent || lws_partial_buffered(c->wsi))
				p[n++] = (struct pollfd){lws_get_socket_fd(c->wsi), POLLOUT, 0};
		int left = (int)(deadline - now_mono_ms());
		if (n == 0 || left <= 0 || poll(p, n, left) < 0)
			return;
		/* Servicing one may free its connection: only p[] is walked. */
		for (nfds_t i = 0; i < n; i++)
			if (p[i].revents)
				(void)lws_service_fd(b->ctx, &p[i]);
	}
}


void bus_write_start(struct bus *b)
{
	ev_prepare_init(&b->flush_w, flush_cb);
	ev_prepare_start(b->loop, &b->flush_w);
}

void bus_write_stop(struct bus *b)
{
	ev_prepare_stop(b->loop, &b->flush_w);
}

void bus_say_goodbye(struct bus *b)
{
	say_goodbye(b);
	finish_frames(b);
}
