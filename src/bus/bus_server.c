/*
 * bus_server.c - the bus's WebSocket side: libwebsockets on cohortd's own
 * libev loop (a foreign loop: cohortd runs ev_run, never lws_service),
 * one vhost for <run_dir>/bus.sock and one for bus_listen, the cohort.v1
 * subprotocol required, peers identified by SO_PEERCRED, messages
 * reassembled from fragments up to bus_max_message and handed to
 * bus_ops.c; what a connection is sent goes out through bus_write.c.
 * Plain HTTP on a listener, and the upgrade's checks (origin,
 * subprotocol), are answered here too.
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
#include "hostport.h"
#include "log.h"
#include "wire.h"
#include "peer.h"

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
	return intmap_get(&b->conns_by_id, (int64_t)id);
}

struct bus_conn *bus_conn_new(struct bus *b)
{
	struct bus_conn *c = xcalloc(1, sizeof(*c));

	c->bus = b;
	c->id = ++b->next_conn_id;
	STAILQ_INIT(&c->out);
	LIST_INSERT_HEAD(&b->conns, c, link);
	b->nconns++;
	intmap_put(&b->conns_by_id, (int64_t)c->id, c);
	return c;
}

static struct bus_conn *conn_new(struct bus *b, struct lws *wsi)
{
	struct bus_conn *c = bus_conn_new(b);
	int fd = lws_get_socket_fd(wsi);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	c->wsi = wsi;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX) {
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		c->unix_peer = true;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0) {
			c->uid = cr.uid;
			c->pid = cr.pid;
			/* The same people who may use the control socket are admins. */
			c->admin = peer_allowed(b->auth, cr.uid, cr.gid);
		}
	}
	bus_rx_watch(c);
	bus_live_start(c);
	return c;
}

void bus_conn_free(struct bus_conn *c)
{
	struct bus *b = c->bus;

	bus_ops_conn_gone(c);
	bus_live_stop(c);
	bus_rx_unwatch(c);
	if (c->flush_queued)
		SLIST_REMOVE(&b->flush, c, bus_conn, flush_link);
	while (!STAILQ_EMPTY(&c->out)) {
		struct bus_out *o = STAILQ_FIRST(&c->out);
		STAILQ_REMOVE_HEAD(&c->out, link);
		bus_frame_put(o->f);
		free(o);
	}
	LIST_REMOVE(c, link);
	b->nconns--;
	intmap_del(&b->conns_by_id, (int64_t)c->id);
	sbuf_free(&c->rx);
	free(c->identity);
	bus_identity_unref(c->service);
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

/*
 * A piece of a data message (lws hands a frame over in pieces of at most
 * the protocol's rx_buffer_size, BUS_RX_PIECE).  RFC 6455 8.1: a text message must be
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
	if (c->rx.cap > BUS_RX_KEEP)
		sbuf_free(&c->rx);
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
			bus_stop_sending(c);
			(void)bus_write_some(c);
			return -1;
		}
		bus_stop_sending(c);
		return 0;	/* lws answers its Close */
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (c && c->failed)
			return -1;
		return c ? bus_write_some(c) : 0;
	case LWS_CALLBACK_CLOSED:
		if (c) {
			if (c->close_sent)
				bus_linger(b, lws_get_socket_fd(wsi));
			bus_conn_free(c);
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
	{BUS_PROTOCOL, bus_cb, sizeof(struct bus_conn *), BUS_RX_PIECE, 0, NULL, BUS_TX_PACKET},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/*
 * lws's own idle policy, off (bus_live.c does it): with a hang-up time of
 * 0, lws arms no validity timer.  One of 18 hours, as before, was a timer
 * per connection in lws's sorted list of timers, whose insert walks the
 * list from its earliest: every connection's walked every other one's,
 * O(n^2), 42 % of cohortd's CPU while 10,000 clients came back after a
 * restart.
 */
static const lws_retry_bo_t idle_policy = {
	.secs_since_valid_ping = 0,
	.secs_since_valid_hangup = 0,
};

void bus_policy_from_config(struct bus_policy *pol, const struct cohort_config *cfg)
{
	*pol = (struct bus_policy){
		.ack_timeout_ms = cfg->bus_ack_timeout_ms,
		.queue_max = cfg->bus_queue_max,
		.queue_age_ms = cfg->bus_queue_age_ms,
		.memory_max = cfg->bus_memory_max,
		.max_connections = cfg->bus_max_connections,
		.max_connections_per_uid = cfg->bus_max_connections_per_uid,
		.run_dir = cfg->run_dir,
		.state_dir = cfg->state_dir,
		.listen = cfg->bus_listen,
		.mode = (unsigned)cfg->bus_mode,
		.fsync = cfg->bus_fsync,
		.max_message = cfg->bus_max_message,
		.idle_timeout_ms = cfg->bus_idle_timeout_ms,
		.allowed_origins = &cfg->bus_allowed_origins,
		.state_mirror_dir = cfg->state_mirror_dir,
		.state_mirror_topics = &cfg->state_mirror_topics,
	};
}

void bus_set_policy(struct bus *b, const struct bus_policy *pol)
{
	b->ack_timeout_ms = pol->ack_timeout_ms;
	b->queue_max = pol->queue_max;
	b->queue_age_ms = pol->queue_age_ms;
	b->memory_max = pol->memory_max;
	b->max_connections = pol->max_connections;
	b->max_connections_per_uid = pol->max_connections_per_uid;
}

/* The lws context, on cohortd's loop, with no listener of its own. */
static int start_lws(struct bus *b, char *err, size_t errlen)
{
	struct lws_context_creation_info info;
	void *loops[1] = {b->loop};

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_LIBEV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.foreign_loops = loops;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.user = b;
	info.uid = -1;
	info.gid = -1;
	/* Above BUS_MAX_HEAD, which bus_accept_head answers 431: lws keeps
	 * less of a head than its bytes, and would drop one it cannot keep. */
	info.max_http_header_data = BUS_MAX_HEAD + 1024;
	b->ctx = lws_create_context(&info);
	if (!b->ctx) {
		snprintf(err, errlen, "libwebsockets could not start on the libev loop (is the package "
			 "libwebsockets-evlib-ev installed?)");
		return -1;
	}
	return 0;
}

/* A vhost for the sockets of one listener: cohortd listens and accepts
 * itself (bus_accept.c); lws serves the sockets it is handed. */
static struct lws_vhost *new_vhost(struct bus *b, const char *name)
{
	struct lws_context_creation_info info;

	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	info.retry_and_idle_policy = &idle_policy;
	info.vhost_name = name;
	info.uid = -1;
	info.gid = -1;
	return lws_create_vhost(b->ctx, &info);
}

static int listen_unix(struct bus *b, const char *run_dir, char *err, size_t errlen)
{
	b->unix_path = xasprintf("%s/bus.sock", run_dir);
	b->unix_vh = new_vhost(b, "bus-unix");
	if (!b->unix_vh) {
		snprintf(err, errlen, "cannot listen on %s", b->unix_path);
		return -1;
	}
	return bus_accept_listen(b, b->unix_vh, b->unix_path, NULL, NULL, err, errlen);
}

static int listen_tcp(struct bus *b, char *err, size_t errlen)
{
	char *host, *port;
	int rc = -1;

	if (hostport_split(b->listen, NULL, &host, &port) < 0) {
		snprintf(err, errlen, "bus_listen %s: expected HOST:PORT", b->listen);
		return -1;
	}
	b->tcp_vh = new_vhost(b, "bus-tcp");
	if (!b->tcp_vh)
		snprintf(err, errlen, "cannot listen on %s", b->listen);
	else
		rc = bus_accept_listen(b, b->tcp_vh, NULL, host, port, err, errlen);
	free(host);
	free(port);
	return rc;
}

/* Undoes what bus_open did before a step failed. */
static void open_failed(struct bus *b)
{
	bus_write_stop(b);
	bus_accept_close(b);
	if (b->ctx)
		lws_context_destroy(b->ctx);
	b->ctx = NULL;
	bus_rx_stop(b);
	bus_accept_free(b);
	bus_mirror_close(b);
	bus_store_close(b);
	bus_free_all(b);
	bus_remote_free(b);
	if (b->unix_path)
		unlink(b->unix_path);	/* bound before a later step failed */
	free(b->unix_path);
	b->unix_path = NULL;
	free(b->listen);
	b->listen = NULL;
	strv_free(&b->allowed_origins);
}

int bus_open(struct bus *b, struct ev_loop *loop, const struct bus_policy *pol, struct lock_table *locks,
	     struct peer_auth *auth, const struct bus_hooks *hooks, char *err, size_t errlen)
{
	*b = (struct bus){.loop = loop, .locks = locks, .auth = auth, .hooks = *hooks};
	bus_set_policy(b, pol);
	b->max_message = pol->max_message;
	b->idle_timeout = (ev_tstamp)pol->idle_timeout_ms / 1000;
	b->mode = pol->mode;
	b->fsync = pol->fsync;
	b->listen = pol->listen ? xstrdup(pol->listen) : NULL;
	strv_copy(&b->allowed_origins, pol->allowed_origins);
	bus_mirror_open(b, pol->state_mirror_dir, pol->state_mirror_topics);
	char *dir = xasprintf("%s/bus", pol->state_dir);
	int rc = bus_store_open(b, dir, err, errlen);
	free(dir);
	if (rc < 0) {
		bus_mirror_close(b);
		free(b->listen);
		b->listen = NULL;
		strv_free(&b->allowed_origins);
		return -1;
	}
	if (start_lws(b, err, errlen) < 0)
		goto fail;
	bus_rx_start(b);
	bus_write_start(b);
	if (listen_unix(b, pol->run_dir, err, errlen) < 0 || (b->listen && listen_tcp(b, err, errlen) < 0))
		goto fail;
	return 0;
fail:
	open_failed(b);
	return -1;
}
void bus_close(struct bus *b)
{
	if (!b->ctx)
		return;
	bus_write_stop(b);
	bus_accept_close(b);
	bus_say_goodbye(b);
	lws_context_destroy(b->ctx);	/* closes every connection (CLOSED for each) */
	b->ctx = NULL;
	bus_rx_stop(b);
	bus_accept_free(b);
	bus_http_free(b);
	bus_linger_finish(b);
	bus_mirror_close(b);
	bus_store_close(b);
	bus_free_all(b);
	bus_remote_free(b);
	intmap_free(&b->conns_by_id);
	unlink(b->unix_path);
	free(b->unix_path);
	b->unix_path = NULL;
	free(b->listen);
	b->listen = NULL;
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
	for (struct bus_conn *c = LIST_FIRST(&b->conns); c; c = LIST_NEXT(c, link)) {
		struct bus_session *s = c->session;
		if (s && !s->key) {
			queued += s->qlen;
			inflight += s->inflight;
		}
		json_array_append_new(conns, json_pack("{s:I,s:s,s:s?,s:s?,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
			"id", (json_int_t)c->id, "identity", c->identity ? c->identity : "(no hello yet)",
			"session", s && s->name ? s->name : NULL, "transport", c->unix_peer ? "unix" : "tcp",
			"subscriptions", (json_int_t)(s ? s->nsubs : 0), "queued", (json_int_t)(s ? s->qlen : 0),
			"inflight", (json_int_t)(s ? s->inflight : 0), "out_bytes", (json_int_t)c->out_bytes,
			"dropped_qos0", (json_int_t)c->dropped_qos0, "published", (json_int_t)c->published,
			"delivered", (json_int_t)(s ? s->delivered : 0)));
	}
	json_t *sessions = json_array();
	it = 0;
	while (map_next(&b->sessions, &it, NULL, &v)) {
		struct bus_session *s = v;
		json_array_append_new(sessions, json_pack("{s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "session", s->key,
			"connected", s->conn != NULL, "subscriptions", (json_int_t)s->nsubs,
			"queued", (json_int_t)s->qlen, "queued_bytes", (json_int_t)s->qbytes,
			"spilled", (json_int_t)s->spilled, "spill_places", (json_int_t)bus_spill_ix_places(s),
			"dropped", (json_int_t)s->dropped, "dead", (json_int_t)s->dead));
	}
	json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}",
		"connections", (json_int_t)b->nconns, "subscriptions", (json_int_t)subs,
		"durable_sessions", (json_int_t)b->sessions.len, "durable_away", (json_int_t)durable_away,
		"queued", (json_int_t)queued, "inflight", (json_int_t)inflight,
		"retained", (json_int_t)b->retained.len, "published", (json_int_t)b->published,
		"dropped_qos0", (json_int_t)b->dropped_qos0, "dropped_queue", (json_int_t)b->dropped_queue,
		"dead_lettered", (json_int_t)b->dead_lettered, "journal_bytes",
		(json_int_t)(b->j ? jrnl_size(b->j) : 0), "live_bytes", (json_int_t)b->live_bytes,
		"spilled", (json_int_t)spilled, "queued_memory", (json_int_t)b->queued_mem,
		"conns", conns, "sessions", sessions);
	if (b->remote) {	/* cluster mode: reachable, or why not; qos 0 dropped for it */
		char why[256];
		bool up = b->remote->up(b->remote_arg, why, sizeof(why));
		json_object_set_new(o, "cluster", json_pack("{s:b,s:s?,s:I,s:I}", "up", up, "unreachable",
							    up ? NULL : why, "dropped_qos0",
							    (json_int_t)b->remote_dropped, "refused",
							    (json_int_t)b->remote_refused));
	}
	return o;
}

