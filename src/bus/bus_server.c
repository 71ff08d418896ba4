/*
 * bus_server.c - the bus's WebSocket side: libwebsockets on cohortd's own
 * libev loop (a foreign loop: cohortd runs ev_run, never lws_service),
 * one vhost for <run_dir>/bus.sock and one for bus_listen, the cohort.v1
 * subprotocol required, peers identified by SO_PEERCRED, messages
 * reassembled from fragments up to bus_max_message, and every write made
 * from the writeable callback, one queued frame at a time.
 */
#include "autoconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <libwebsockets.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus.h"
#include "daemon.h"
#include "log.h"
#include "wire.h"

static void lws_log(int level, const char *line)
{
	char buf[512];
	size_t n = strlen(line);

	(void)level;
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	snprintf(buf, sizeof(buf), "%.*s", (int)n, line);
	log_warn(NULL, "bus: libwebsockets: %s", buf);
}

struct bus_conn *bus_conn_by_id(struct bus *b, uint64_t id)
{
	return imap_get(&b->conns_by_id, (int64_t)id);
}

void bus_conn_send(struct bus_conn *c, struct bus_frame *f)
{
	if (c->closing)
		return;
	struct bus_out *o = xmalloc(sizeof(*o));
	o->f = f;
	f->refs++;
	o->next = NULL;
	if (c->out_tail)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	c->out_len++;
	c->out_bytes += f->len;
	if (!c->rx_paused && c->out_bytes > BUS_OUT_MAX) {
		/* It does not read what we send: stop reading what it sends. */
		lws_rx_flow_control(c->wsi, 0);
		c->rx_paused = true;
	}
	if (!c->write_asked && !c->flush_queued) {	/* flush_cb writes it */
		c->flush_queued = true;
		c->flush_next = c->bus->flush;
		c->bus->flush = c;
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

static struct bus_conn *conn_new(struct bus *b, struct lws *wsi)
{
	struct bus_conn *c = xcalloc(1, sizeof(*c));
	int fd = lws_get_socket_fd(wsi);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	c->bus = b;
	c->wsi = wsi;
	c->id = ++b->next_conn_id;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX) {
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		c->unix_peer = true;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0) {
			c->uid = cr.uid;
			c->pid = cr.pid;
			/* The same people who may use the control socket are admins. */
			c->admin = ctl_uid_allowed(&b->d->ctl, cr.uid, cr.gid);
		}
	}
	c->next = b->conns;
	if (c->next)
		c->next->prev = c;
	b->conns = c;
	b->nconns++;
	imap_put(&b->conns_by_id, (int64_t)c->id, c);
	bus_rx_watch(c);
	bus_live_start(c);
	return c;
}

static void conn_free(struct bus_conn *c)
{
	struct bus *b = c->bus;

	bus_ops_conn_gone(c);
	bus_live_stop(c);
	bus_rx_unwatch(c);
	if (c->flush_queued)
		for (struct bus_conn **p = &b->flush; *p; p = &(*p)->flush_next)
			if (*p == c) {
				*p = c->flush_next;
				break;
			}
	while (c->out_head) {
		struct bus_out *o = c->out_head;
		c->out_head = o->next;
		bus_frame_put(o->f);
		free(o);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		b->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	b->nconns--;
	imap_del(&b->conns_by_id, (int64_t)c->id);
	sbuf_free(&c->rx);
	free(c->identity);
	if (c->gone_owner)
		config_unref(c->gone_owner);
	free(c);
}

/* --- what is not a cohort.v1 WebSocket ------------------------------------------------ */

/*
 * Answers an HTTP request at once with STATUS and one line of TEXT, and
 * asks lws to close (the caller returns -1): a browser, curl or a client
 * that got the handshake wrong learns why, rather than waiting for a
 * timeout or reading an empty reply.  Written whole, as bytes: lws 4.1
 * knows no reason phrase for 426.  The answer is a few hundred bytes on a
 * socket that has sent nothing yet: the kernel takes it at once.
 */
static int http_answer(struct lws *wsi, unsigned status, const char *text)
{
	static const struct {
		unsigned status;
		const char *reason, *extra;
	} answers[] = {
		{400, "Bad Request", ""},
		{403, "Forbidden", ""},
		{404, "Not Found", ""},
		{426, "Upgrade Required", "Upgrade: websocket\r\nSec-WebSocket-Protocol: " BUS_PROTOCOL "\r\n"},
	};
	unsigned char buf[LWS_PRE + 1024];
	char *p = (char *)buf + LWS_PRE;
	size_t i = 0;

	while (i < ARRAY_LEN(answers) - 1 && answers[i].status != status)
		i++;
	bool head = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;	/* the headers alone */
	int n = snprintf(p, sizeof(buf) - LWS_PRE, "HTTP/1.1 %u %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n%s\r\n%s%s", answers[i].status,
			 answers[i].reason, strlen(text) + 1, answers[i].extra, head ? "" : text, head ? "" : "\n");
	if (n > 0 && (size_t)n < sizeof(buf) - LWS_PRE)
		(void)lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_HEADERS);
	return -1;
}

/* Does the comma-separated header list name our subprotocol? */
static bool offers_protocol(const char *list)
{
	for (const char *p = list; *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t n = strcspn(p, ", ");
		if (n == strlen(BUS_PROTOCOL) && strncmp(p, BUS_PROTOCOL, n) == 0)
			return true;
		p += n;
	}
	return false;
}

/*
 * May a WebSocket opened from ORIGIN (the page's "scheme://host[:port]")
 * use the bus?  A browser sends the Origin of the page that opens it and
 * lets any page try, so a page of another site is refused unless it is the
 * same origin as the Host it asked for or bus_allowed_origins names it
 * ("*" for any).  Clients that are not browsers send no Origin: they pass.
 */
static bool origin_allowed(const struct bus *b, const char *origin, const char *host)
{
	const char *o = origin;

	for (size_t i = 0; i < b->allowed_origins.n; i++)
		if (strcmp(b->allowed_origins.v[i], "*") == 0 || strcasecmp(b->allowed_origins.v[i], origin) == 0)
			return true;
	if (strncasecmp(o, "http://", 7) == 0)
		o += 7;
	else if (strncasecmp(o, "https://", 8) == 0)
		o += 8;
	else
		return false;	/* "null" (a file, a sandbox) or a scheme no page has */
	return *host && strcasecmp(o, host) == 0;
}

/* The header value S as it may go into our log: what a client sent, so
 * a control character (an escape sequence for the terminal) becomes '?'. */
static void make_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
}

/* One line per BUS_REFUSED_LOG_MS at most: a page retrying in a loop must
 * not fill the log. */
static void log_refused_origin(struct bus *b, char *origin, char *host)
{
	int64_t now = now_mono_ms();

	if (b->refused_log_ms && now - b->refused_log_ms < BUS_REFUSED_LOG_MS) {
		b->refused_unlogged++;
		return;
	}
	make_printable(origin);
	make_printable(host);
	if (b->refused_unlogged)
		log_warn(NULL, "bus: refused a WebSocket from origin %s (Host %s): not the bus's own origin nor "
			 "in bus_allowed_origins (and %llu more such since the last line)", origin, host,
			 (unsigned long long)b->refused_unlogged);
	else
		log_warn(NULL, "bus: refused a WebSocket from origin %s (Host %s): not the bus's own origin nor "
			 "in bus_allowed_origins", origin, host);
	b->refused_log_ms = now;
	b->refused_unlogged = 0;
}

/*
 * The last word on an upgrade request before lws answers it: a foreign
 * origin gets 403, a handshake without cohort.v1 gets 400 (lws itself
 * would drop it without a word).  0 lets the upgrade go on.
 */
static int upgrade_check(struct bus *b, struct lws *wsi, const char *upgrade)
{
	char origin[256], host[256], proto[128];

	if (!upgrade || strcasecmp(upgrade, "websocket") != 0)
		return http_answer(wsi, 400, "the cohort bus takes only WebSocket upgrades "
				   "(subprotocol " BUS_PROTOCOL ")");
	if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) > 0) {
		if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) < 0)
			str_copy(origin, sizeof(origin), "(too long)");
		if (lws_hdr_copy(wsi, host, sizeof(host), WSI_TOKEN_HOST) < 0)
			host[0] = '\0';
		if (!origin_allowed(b, origin, host)) {
			log_refused_origin(b, origin, host);
			return http_answer(wsi, 403, "origin not allowed: a page may open the "
					   "cohort bus only from its own origin or one in bus_allowed_origins");
		}
	}
	if (lws_hdr_copy(wsi, proto, sizeof(proto), WSI_TOKEN_PROTOCOL) <= 0 || !offers_protocol(proto))
		return http_answer(wsi, 400, "the cohort bus needs the WebSocket subprotocol "
				   BUS_PROTOCOL " (Sec-WebSocket-Protocol: " BUS_PROTOCOL ")");
	/* lws would drop a handshake without them, without a word */
	if (lws_hdr_total_length(wsi, WSI_TOKEN_HOST) <= 0 || lws_hdr_total_length(wsi, WSI_TOKEN_KEY) <= 0)
		return http_answer(wsi, 400, "a WebSocket handshake needs a Host and a Sec-WebSocket-Key header");
	return 0;
}

/* The RFC 6455 header of an unmasked, final text frame of len bytes (a
 * batch is under 64 KiB: two sizes of header). */
_Static_assert(BUS_BATCH_MAX < 65536, "a batched frame needs at most a 4-byte header");
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
	struct bus_out *o = c->out_head;

	c->out_head = o->next;
	if (!c->out_head)
		c->out_tail = NULL;
	c->out_len--;
	c->out_bytes -= o->f->len;
	bus_frame_put(o->f);
	free(o);
}

/* lws is closing it: nothing more may follow its Close frame. */
static void stop_sending(struct bus_conn *c)
{
	c->closing = true;
	while (c->out_head)
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
static int write_some(struct bus_conn *c)
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
	for (int i = 0; i < BUS_WRITE_BURST && c->out_head; ) {
		if (i > 0 && lws_send_pipe_choked(c->wsi))
			break;
		struct bus_frame *f = c->out_head->f;
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
		while (c->out_head && i < BUS_WRITE_BURST) {
			f = c->out_head->f;
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
	if (c->out_head) {
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

	while (b->flush) {
		struct bus_conn *c = b->flush;
		b->flush = c->flush_next;
		c->flush_queued = false;
		if (c->rx_fault)
			bus_rx_fail(c);
		if (c->write_asked || !c->out_head)
			continue;
		if (c->closing || lws_partial_buffered(c->wsi)) {
			c->write_asked = true;
			lws_callback_on_writable(c->wsi);
		} else if (write_some(c) < 0) {
			/* The socket failed.  Not inside a callback, we cannot return
			 * -1: the writeable callback does, at the next epoll round. */
			c->closing = c->failed = true;
			c->write_asked = true;
			lws_callback_on_writable(c->wsi);
		}
	}
}

/*
 * A piece of a data message (lws hands a frame over in pieces of at most
 * the protocol's rx_buffer_size).  RFC 6455 8.1: a text message must be
 * UTF-8 as a whole, so it is checked once complete (a character may
 * straddle two fragments); one that is not fails the connection (1007).
 * The protocol is text only: a binary message is data of a type we
 * cannot take (7.4.1: 1003), answered once, whatever its size.
 */
static void receive(struct bus_conn *c, const void *in, size_t len)
{
	struct lws *wsi = c->wsi;

	if (lws_frame_is_binary(wsi)) {
		bus_conn_close(c, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
			       "binary frames are not understood: send JSON text frames");
		return;
	}
	if (c->rx.len + len > c->bus->max_message) {
		sbuf_free(&c->rx);
		bus_conn_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message over bus_max_message (%llu bytes)",
			       (unsigned long long)c->bus->max_message);
		return;
	}
	sbuf_add(&c->rx, in, len);
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
		return;
	if (!utf8_valid(c->rx.buf, c->rx.len)) {
		sbuf_free(&c->rx);
		bus_conn_close(c, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "a text message that is not UTF-8");
		return;
	}
	bus_handle(c, c->rx.buf, c->rx.len);
	c->rx.len = 0;
}

/*
 * The payload of the peer's Close frame (RFC 6455 5.5.1): empty, or a
 * status code and a UTF-8 reason.  A 1-byte payload, or a code no
 * endpoint may send (7.4.1, 7.4.2), is a protocol error (1002); a reason
 * that is not UTF-8 is 1007.  (lws 4.1 turns the codes under 3000 it
 * knows to be bad into 1002 before we see them, and answers 1002 itself:
 * what reaches this check is 5000 and over.)
 * False when it is bad: the connection is closed with that code.
 */
static bool close_payload_ok(struct bus_conn *c, const unsigned char *p, size_t len)
{
	if (len == 0)
		return true;
	if (len == 1) {
		bus_conn_close(c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "a Close frame with a 1-byte payload");
		return false;
	}
	int code = p[0] << 8 | p[1];
	if (code < 1000 || (code >= 1004 && code <= 1006) || (code >= 1012 && code < 3000) || code >= 5000) {
		bus_conn_close(c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "a Close frame with status %d", code);
		return false;
	}
	if (!utf8_valid(p + 2, len - 2)) {
		bus_conn_close(c, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "a Close frame whose reason is not UTF-8");
		return false;
	}
	return true;
}

static int bus_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct bus *b = lws_context_user(lws_get_context(wsi));
	struct bus_conn **slot = user;
	struct bus_conn *c = slot ? *slot : NULL;
	char proto[128];

	switch (reason) {
	case LWS_CALLBACK_HTTP:	/* plain HTTP: the pages (bus_http.c) */
		return bus_http_serve(b, wsi, in);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return bus_http_writeable(b, wsi);
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		return upgrade_check(b, wsi, in);
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		/* Only clients that speak cohort.v1 get the upgrade (upgrade_check
		 * has answered the others; this is the backstop). */
		if (lws_hdr_copy(wsi, proto, sizeof(proto), WSI_TOKEN_PROTOCOL) <= 0 || !offers_protocol(proto))
			return -1;
		return 0;
	case LWS_CALLBACK_ESTABLISHED:
		bus_accept_upgraded(b, wsi);
		*slot = conn_new(b, wsi);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (!c || c->closing)
			return 0;
		bus_live_progress(c);
		receive(c, in, len);
		return 0;
	case LWS_CALLBACK_RECEIVE_PONG:
		if (c)
			bus_live_progress(c);
		return 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (c && c->close_sent)
			return -1;	/* the answer to ours: no second Close */
		if (!c)
			return 0;
		if (!c->closing && !close_payload_ok(c, in, len)) {
			/* Ours goes out now, instead of lws's echo of theirs. */
			stop_sending(c);
			(void)write_some(c);
			return -1;
		}
		stop_sending(c);
		return 0;	/* lws answers its Close */
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (c && c->failed)
			return -1;
		return c ? write_some(c) : 0;
	case LWS_CALLBACK_CLOSED:
		if (c) {
			if (c->close_sent)
				bus_linger(b, lws_get_socket_fd(wsi));
			conn_free(c);
			*slot = NULL;
		}
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:	/* every accepted socket, upgraded or not */
		bus_http_gone(b, wsi);
		bus_accept_gone(b, wsi);
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols protocols[] = {
	{BUS_PROTOCOL, bus_cb, sizeof(struct bus_conn *), 65536, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/* lws's own idle policy, out of the way (see bus_live.c): 18 hours. */
static const lws_retry_bo_t idle_policy = {
	.secs_since_valid_ping = 65000,
	.secs_since_valid_hangup = 65535,
};

static int split_listen(const char *hp, char **host, int *port)
{
	const char *colon = strrchr(hp, ':');

	if (!colon)
		return -1;
	const char *h = hp;
	size_t hl = (size_t)(colon - hp);
	if (*h == '[') {
		h++;
		hl -= 2;
	}
	*host = xstrndup(h, hl);
	*port = atoi(colon + 1);
	return 0;
}

int bus_open(struct bus *b, struct cohortd *d, char *err, size_t errlen)
{
	const struct cohort_config *cfg = d->cfg;
	struct lws_context_creation_info info;
	void *loops[1] = {d->loop};
	char *dir;

	*b = (struct bus){.d = d, .loop = d->loop};
	bus_mirror_open(b, cfg->state_mirror_dir, &cfg->state_mirror_topics);
	b->ack_timeout_ms = cfg->bus_ack_timeout_ms;
	b->queue_max = cfg->bus_queue_max;
	b->memory_max = cfg->bus_memory_max;
	b->queue_age_ms = cfg->bus_queue_age_ms;
	b->max_message = cfg->bus_max_message;
	b->idle_timeout = (ev_tstamp)cfg->bus_idle_timeout_ms / 1000;
	for (size_t i = 0; i < cfg->bus_allowed_origins.n; i++)
		strv_push(&b->allowed_origins, cfg->bus_allowed_origins.v[i]);
	dir = xasprintf("%s/bus", cfg->state_dir);
	int rc = bus_store_open(b, dir, err, errlen);
	free(dir);
	if (rc < 0)
		return -1;

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_LIBEV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.foreign_loops = loops;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.user = b;
	info.uid = -1;
	info.gid = -1;
	b->ctx = lws_create_context(&info);
	if (!b->ctx) {
		snprintf(err, errlen, "libwebsockets could not start on the libev loop (is the package "
			 "libwebsockets-evlib-ev installed?)");
		goto fail;
	}
	bus_rx_start(b);
	ev_prepare_init(&b->flush_w, flush_cb);
	ev_prepare_start(b->loop, &b->flush_w);
	b->unix_path = xasprintf("%s/bus.sock", cfg->run_dir);
	/* cohortd listens and accepts itself (bus_accept.c); lws serves the
	 * sockets it is handed. */
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	info.retry_and_idle_policy = &idle_policy;
	info.vhost_name = "bus-unix";
	info.uid = -1;
	info.gid = -1;
	b->unix_vh = lws_create_vhost(b->ctx, &info);
	if (!b->unix_vh) {
		snprintf(err, errlen, "cannot listen on %s", b->unix_path);
		goto fail;
	}
	if (bus_accept_listen(b, b->unix_vh, b->unix_path, NULL, NULL, err, errlen) < 0)
		goto fail;
	if (cfg->bus_listen) {
		char *host = NULL;
		int port = 0;
		if (split_listen(cfg->bus_listen, &host, &port) < 0) {
			snprintf(err, errlen, "bus_listen %s: expected HOST:PORT", cfg->bus_listen);
			goto fail;
		}
		char port_text[16];
		snprintf(port_text, sizeof(port_text), "%d", port);
		memset(&info, 0, sizeof(info));
		info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
		info.protocols = protocols;
	info.retry_and_idle_policy = &idle_policy;
		info.vhost_name = "bus-tcp";
		info.uid = -1;
		info.gid = -1;
		b->tcp_vh = lws_create_vhost(b->ctx, &info);
		if (!b->tcp_vh) {
			free(host);
			snprintf(err, errlen, "cannot listen on %s", cfg->bus_listen);
			goto fail;
		}
		rc = bus_accept_listen(b, b->tcp_vh, NULL, host, port_text, err, errlen);
		free(host);
		if (rc < 0)
			goto fail;
	}
	return 0;
fail:
	ev_prepare_stop(b->loop, &b->flush_w);
	bus_accept_close(b);
	if (b->ctx)
		lws_context_destroy(b->ctx);
	b->ctx = NULL;
	bus_rx_stop(b);
	bus_accept_free(b);
	bus_mirror_close(b);
	bus_store_close(b);
	bus_free_all(b);
	if (b->unix_path)
		unlink(b->unix_path);	/* bound before a later step failed */
	free(b->unix_path);
	b->unix_path = NULL;
	strv_free(&b->allowed_origins);
	return -1;
}

/*
 * lws_context_destroy drops the sockets without a Close frame: clients
 * would see 1006, "abnormal closure", for an orderly stop.  So each gets
 * 1001, "going away", first, written as write_some writes (the loop no
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

	for (struct bus_conn *c = b->conns; c; c = c->next) {
		if (c->close_sent)
			continue;
		if (c->out_head && !lws_partial_buffered(c->wsi))
			(void)write_some(c);	/* what the socket takes now */
		if (c->close_sent)
			continue;
		if (!c->closing) {
			c->close_status = LWS_CLOSE_STATUS_GOINGAWAY;
			str_copy(c->close_reason, sizeof(c->close_reason), "cohortd is stopping");
		}
		stop_sending(c);
		if (lws_partial_buffered(c->wsi)) {
			c->write_asked = true;	/* finish_frames writes it */
			lws_callback_on_writable(c->wsi);
		} else {
			(void)write_some(c);
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
 * (it writes the tail, then calls write_some for the Close frame), for
 * BUS_LINGER_MS at most.  What is still stuck then gets no Close frame.
 */
static void finish_frames(struct bus *b)
{
	int64_t deadline = now_mono_ms() + BUS_LINGER_MS;

	for (;;) {
		struct pollfd p[64];
		nfds_t n = 0;
		for (struct bus_conn *c = b->conns; c && n < ARRAY_LEN(p); c = c->next)
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

void bus_close(struct bus *b)
{
	if (!b->ctx)
		return;
	ev_prepare_stop(b->loop, &b->flush_w);
	bus_accept_close(b);
	say_goodbye(b);
	finish_frames(b);
	lws_context_destroy(b->ctx);	/* closes every connection (CLOSED for each) */
	b->ctx = NULL;
	bus_rx_stop(b);
	bus_accept_free(b);
	bus_http_free(b);
	bus_linger_finish(b);
	bus_mirror_close(b);
	bus_store_close(b);
	bus_free_all(b);
	imap_free(&b->conns_by_id);
	unlink(b->unix_path);
	free(b->unix_path);
	b->unix_path = NULL;
	strv_free(&b->allowed_origins);
	free(b->admin_token);
	b->admin_token = NULL;
}

json_t *bus_status_json(struct bus *b)
{
	size_t subs = b->subs.nsubs, queued = 0, inflight = 0, durable_away = 0, spilled = 0, it = 0;
	void *v;

	while (map_next(&b->sessions, &it, NULL, &v)) {
		struct bus_session *s = v;
		queued += s->qlen;
		spilled += s->spilled;
		inflight += s->inflight;
		durable_away += s->conn == NULL;
	}
	json_t *conns = json_array();
	for (struct bus_conn *c = b->conns; c; c = c->next) {
		struct bus_session *s = c->session;
		if (s && !s->key) {
			queued += s->qlen;
			inflight += s->inflight;
		}
		json_array_append_new(conns, json_pack("{s:I,s:s,s:s?,s:s?,s:I,s:I,s:I,s:I,s:I}",
			"id", (json_int_t)c->id, "identity", c->identity ? c->identity : "(no hello yet)",
			"session", s && s->name ? s->name : NULL, "transport", c->unix_peer ? "unix" : "tcp",
			"subscriptions", (json_int_t)(s ? s->nsubs : 0), "queued", (json_int_t)(s ? s->qlen : 0),
			"inflight", (json_int_t)(s ? s->inflight : 0), "out_bytes", (json_int_t)c->out_bytes,
			"dropped_qos0", (json_int_t)c->dropped_qos0));
	}
	json_t *sessions = json_array();
	it = 0;
	while (map_next(&b->sessions, &it, NULL, &v)) {
		struct bus_session *s = v;
		json_array_append_new(sessions, json_pack("{s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:I}", "session", s->key,
			"connected", s->conn != NULL, "subscriptions", (json_int_t)s->nsubs,
			"queued", (json_int_t)s->qlen, "queued_bytes", (json_int_t)s->qbytes,
			"spilled", (json_int_t)s->spilled,
			"dropped", (json_int_t)s->dropped, "dead", (json_int_t)s->dead));
	}
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}",
		"connections", (json_int_t)b->nconns, "subscriptions", (json_int_t)subs,
		"durable_sessions", (json_int_t)b->sessions.len, "durable_away", (json_int_t)durable_away,
		"queued", (json_int_t)queued, "inflight", (json_int_t)inflight,
		"retained", (json_int_t)b->retained.len, "published", (json_int_t)b->published,
		"dropped_qos0", (json_int_t)b->dropped_qos0, "dropped_queue", (json_int_t)b->dropped_queue,
		"dead_lettered", (json_int_t)b->dead_lettered, "journal_bytes",
		(json_int_t)(b->j ? jrnl_size(b->j) : 0), "live_bytes", (json_int_t)b->live_bytes,
		"spilled", (json_int_t)spilled, "queued_memory", (json_int_t)b->queued_mem,
		"conns", conns, "sessions", sessions);
}
