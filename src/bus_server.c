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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus.h"
#include "daemon.h"
#include "log.h"

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
	char text[96];

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
	int n = snprintf(text, sizeof(text), "{\"op\":\"ok\",\"id\":%" JSON_INTEGER_FORMAT ",\"seq\":%" PRIu64 "}",
			 json_integer_value(id), seq);
	struct bus_frame *f = bus_frame_new(text, (size_t)n);
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
	bus_live_start(c);
	return c;
}

static void conn_free(struct bus_conn *c)
{
	struct bus *b = c->bus;

	bus_ops_conn_gone(c);
	bus_live_stop(c);
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
		unsigned char ping[LWS_PRE + 2] = {[LWS_PRE] = 0x89, [LWS_PRE + 1] = 0};
		c->ping_due = false;
		if (lws_write(c->wsi, ping + LWS_PRE, 2, LWS_WRITE_HTTP) < 2)
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
	if (c->rx_paused && c->out_bytes < BUS_OUT_MAX / 2) {
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

static int bus_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct bus *b = lws_context_user(lws_get_context(wsi));
	struct bus_conn **slot = user;
	struct bus_conn *c = slot ? *slot : NULL;
	char proto[128];

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		/* Only clients that speak cohort.v1 get the upgrade. */
		if (lws_hdr_copy(wsi, proto, sizeof(proto), WSI_TOKEN_PROTOCOL) <= 0 || !offers_protocol(proto))
			return -1;
		return 0;
	case LWS_CALLBACK_ESTABLISHED:
		*slot = conn_new(b, wsi);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (!c || c->closing)
			return 0;
		bus_live_progress(c);
		if (lws_frame_is_binary(wsi)) {
			bus_conn_error(c, NULL, "binary frames are not understood: send JSON text frames");
			return 0;
		}
		if (c->rx.len + len > b->max_message) {
			sbuf_free(&c->rx);
			bus_conn_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message over bus_max_message (%llu bytes)",
				       (unsigned long long)b->max_message);
			return 0;
		}
		sbuf_add(&c->rx, in, len);
		if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
			bus_handle(c, c->rx.buf, c->rx.len);
			c->rx.len = 0;
		}
		return 0;
	case LWS_CALLBACK_RECEIVE_PONG:
		if (c)
			bus_live_progress(c);
		return 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (c && c->close_sent)
			return -1;	/* the answer to ours: no second Close */
		if (c)
			stop_sending(c);	/* lws answers its Close */
		return 0;
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
	b->ack_timeout_ms = cfg->bus_ack_timeout_ms;
	b->queue_max = cfg->bus_queue_max;
	b->queue_age_ms = cfg->bus_queue_age_ms;
	b->max_message = cfg->bus_max_message;
	b->idle_timeout = (ev_tstamp)cfg->bus_idle_timeout_ms / 1000;
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
	ev_prepare_init(&b->flush_w, flush_cb);
	ev_prepare_start(b->loop, &b->flush_w);
	b->unix_path = xasprintf("%s/bus.sock", cfg->run_dir);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_UNIX_SOCK;
	info.iface = b->unix_path;
	info.port = 0;
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
	/* lws binds with our umask: set the mode (and group) ourselves. */
	if (chmod(b->unix_path, (mode_t)cfg->bus_mode) < 0 ||
	    (d->ctl.has_group && chown(b->unix_path, (uid_t)-1, d->ctl.group) < 0)) {
		snprintf(err, errlen, "%s: setting mode: %s", b->unix_path, strerror(errno));
		goto fail;
	}
	if (cfg->bus_listen) {
		char *host = NULL;
		int port = 0;
		if (split_listen(cfg->bus_listen, &host, &port) < 0) {
			snprintf(err, errlen, "bus_listen %s: expected HOST:PORT", cfg->bus_listen);
			goto fail;
		}
		memset(&info, 0, sizeof(info));
		info.iface = host;
		info.port = port;
		info.protocols = protocols;
	info.retry_and_idle_policy = &idle_policy;
		info.vhost_name = "bus-tcp";
		info.uid = -1;
		info.gid = -1;
		/* Without it, a vhost given 127.0.0.1 listens on every interface. */
		if (!strchr(host, ':'))
			info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
		b->tcp_vh = lws_create_vhost(b->ctx, &info);
		free(host);
		if (!b->tcp_vh) {
			snprintf(err, errlen, "cannot listen on %s", cfg->bus_listen);
			goto fail;
		}
	}
	return 0;
fail:
	ev_prepare_stop(b->loop, &b->flush_w);
	if (b->ctx)
		lws_context_destroy(b->ctx);
	b->ctx = NULL;
	bus_store_close(b);
	bus_free_all(b);
	free(b->unix_path);
	b->unix_path = NULL;
	return -1;
}

/*
 * lws_context_destroy drops the sockets without a Close frame: clients
 * would see 1006, "abnormal closure", for an orderly stop.  So each gets
 * 1001, "going away", first, written as write_some writes (the loop no
 * longer runs to drive a writeable callback), after the queued frames the
 * socket takes at once; the rest are not sent (qos 1 ones are redelivered
 * after the restart).  Then they linger as every close we decide does
 * (bus_close waits for them).  A socket holding the tail of a frame lws
 * could not write cannot take a Close frame: it gets none.
 */
static void say_goodbye(struct bus *b)
{
	size_t n = 0;

	for (struct bus_conn *c = b->conns; c; c = c->next) {
		if (c->close_sent || lws_partial_buffered(c->wsi))
			continue;
		if (c->out_head)
			(void)write_some(c);	/* what the socket takes now */
		if (c->close_sent || lws_partial_buffered(c->wsi))
			continue;
		if (!c->closing) {
			c->close_status = LWS_CLOSE_STATUS_GOINGAWAY;
			str_copy(c->close_reason, sizeof(c->close_reason), "cohortd is stopping");
		}
		stop_sending(c);
		(void)write_some(c);
		n++;
	}
	if (n)
		log_info(NULL, "bus: closing %zu connection%s: cohortd is stopping (%d)", n, n == 1 ? "" : "s",
			 LWS_CLOSE_STATUS_GOINGAWAY);
}

void bus_close(struct bus *b)
{
	if (!b->ctx)
		return;
	ev_prepare_stop(b->loop, &b->flush_w);
	say_goodbye(b);
	lws_context_destroy(b->ctx);	/* closes every connection (CLOSED for each) */
	b->ctx = NULL;
	bus_linger_finish(b);
	bus_store_close(b);
	bus_free_all(b);
	imap_free(&b->conns_by_id);
	unlink(b->unix_path);
	free(b->unix_path);
	b->unix_path = NULL;
}

json_t *bus_status_json(struct bus *b)
{
	size_t subs = b->subs.nsubs, queued = 0, inflight = 0, durable_away = 0, it = 0;
	void *v;

	while (map_next(&b->sessions, &it, NULL, &v)) {
		struct bus_session *s = v;
		queued += s->qlen;
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
		json_array_append_new(sessions, json_pack("{s:s,s:b,s:I,s:I,s:I,s:I,s:I}", "session", s->key,
			"connected", s->conn != NULL, "subscriptions", (json_int_t)s->nsubs,
			"queued", (json_int_t)s->qlen, "queued_bytes", (json_int_t)s->qbytes,
			"dropped", (json_int_t)s->dropped, "dead", (json_int_t)s->dead));
	}
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}",
		"connections", (json_int_t)b->nconns, "subscriptions", (json_int_t)subs,
		"durable_sessions", (json_int_t)b->sessions.len, "durable_away", (json_int_t)durable_away,
		"queued", (json_int_t)queued, "inflight", (json_int_t)inflight,
		"retained", (json_int_t)b->retained.len, "published", (json_int_t)b->published,
		"dropped_qos0", (json_int_t)b->dropped_qos0, "dropped_queue", (json_int_t)b->dropped_queue,
		"dead_lettered", (json_int_t)b->dead_lettered, "journal_bytes",
		(json_int_t)(b->j ? jrnl_size(b->j) : 0), "live_bytes", (json_int_t)b->live_bytes,
		"conns", conns, "sessions", sessions);
}
