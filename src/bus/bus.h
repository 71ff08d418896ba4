/*
 * bus.h - the message bus cohortd embeds for its children: WebSocket
 * (libwebsockets on cohortd's own libev loop), subprotocol cohort.v1, one
 * JSON object per text frame.
 *
 *   bus_server.c  libwebsockets: opening, connections, frames in, HTTP and upgrade checks
 *   bus_write.c   frames out: send queues, batched writes before the loop sleeps, goodbyes
 *   bus_accept.c  the listening sockets: accepting, caps, descriptors kept for supervision
 *   bus_live.c    liveness (hello deadline, pings, bus_idle_timeout) and closes
 *   bus_ops.c     one handler per op (hello, sub, unsub, pub, ack, get, ping, lock.*)
 *   bus_core.c    routing and delivery: sessions, subscriptions, fan-out,
 *                 qos-1 state (acks, redelivery, dead letters), retained values
 *   bus_store.c   what goes to the journal, recovery, compaction
 *   bus_rx.c      the client's frame headers, followed as recv() reads them
 *   bus_spill.c   queues of absent durable sessions kept in the journal only
 *   bus_spill_index.c  where each spilled delivery is in the journal
 *   bus_http.c    plain HTTP pages on the listeners, registered by the daemon
 *   bus_stats.c   counters and gauges for /metrics, read without changing anything
 *   bus_sys.c     cohortd's own topics ($sys.*): retained in memory, never journaled
 *   bus_remote.c  cluster mode: publishes to the cluster, what comes back from it
 *   bus_trie.c    subscriptions by topic pattern
 *   journal.c     the crash-safe log under it all
 *
 * A message is encoded once per variant (qos 0 / 1) into a reference-
 * counted frame that every subscriber's send queue shares.  A qos-1
 * message owed to a session is a struct bus_delivery in the session's
 * queue, in publish order, until acked; a durable session's queue outlives
 * its connection and a restart of cohortd.
 */
#ifndef COHORT_BUS_H
#define COHORT_BUS_H

#include <ev.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "bus_mirror.h"
#include "bus_remote.h"
#include "bus_trie.h"
#include "journal.h"
#include "map.h"
#include "util.h"
#include "wsscan.h"

#define BUS_PROTOCOL "cohort.v1"
#define BUS_MAX_DELIVERIES 10		/* then $dead.<topic> */
#define BUS_MID_WINDOW_MS 120000	/* a repeated mid within this is a no-op */
#define BUS_MID_MAX 500000		/* ... or among this many latest: bounds memory */
#define BUS_INFLIGHT_MAX 1000		/* qos-1 messages sent, unacked, per session */
#define BUS_OUT_MAX (8u << 20)		/* bytes queued for a client before qos 0 is dropped */
#define BUS_FANOUT_EARLY 1024		/* receivers of one message from which it is written as it goes */
#define BUS_FANOUT_FIRST 64		/* ... the first of them written together */
/* The close status of a connection whose session a new hello took: clients
 * do not reconnect after it (they would take it back, forever). */
#define BUS_CLOSE_TAKEN_OVER 4000
/* The close status of a connection closed for time: no hello within
 * BUS_HELLO_TIMEOUT_MS, or no progress for bus_idle_timeout.  Unlike 1008
 * and 4000, trying again may work. */
#define BUS_CLOSE_TIMEOUT 4001
#define BUS_HELLO_TIMEOUT_MS 5000	/* from the upgrade to hello */
#define BUS_MAX_HEAD 8192		/* bytes of a request's head: over it, 431 */
#define BUS_LINGER_MS 2000		/* our Close frame going out, then what the peer still sends */
/* A refused origin is logged at most once in this long. */
#define BUS_REFUSED_LOG_MS 10000
#define BUS_SUBS_MAX 10000		/* subscriptions of one session (a linear scan each) */
#define BUS_ABUSE_MAX 20		/* malformed requests before the connection is closed */
#define BUS_WRITE_BURST 64		/* frames written per bus_write_some, at most */
/* When the memory queues hold has fallen to half its peak, and by at least
 * BUS_TRIM_MIN, it is given back to the system (malloc_trim) once the
 * burst of frees is over: BUS_TRIM_DELAY later, so at most once a delay. */
#define BUS_TRIM_MIN (1u << 20)
#define BUS_TRIM_DELAY 1.0
#define BUS_BATCH_MAX 32768		/* bytes of frames per send(); under BUS_TX_PACKET */
/* What lws sends at once (its tx_packet_size), and the pieces it hands a
 * received message over in (rx_buffer_size, reassembled in bus_conn.rx).
 * lws allocates a buffer of the latter for every connection when it opens:
 * 64 KiB was 4 KiB of touched memory a connection, most of cohortd's with
 * 10,000 clients.  It also asks for at most that much (with LWS_PRE) of
 * a socket per wake-up, so cohortd reads BUS_RX_READ instead (bus_rx.c):
 * what lws did not take waits in the connection's read-ahead, handed to
 * lws before the loop sleeps.  Read-aheads hold at most BUS_RX_AHEAD_MAX
 * bytes in all; past that a socket is read as lws asks. */
#define BUS_TX_PACKET 65536
#define BUS_RX_PIECE 1000
#define BUS_RX_READ 16384
#define BUS_RX_AHEAD_MAX (1u << 20)
#define BUS_RX_TURN (32u << 10)	/* read-ahead handed to lws a loop iteration, at most */
/* A buffer a large message needed is given back once it was handled. */
#define BUS_RX_KEEP 4096
/* A spilled queue is read back from the journal this much at a time, once
 * the ring has sent what it holds. */
#define BUS_SPILL_CHUNK 512
#define BUS_SPILL_CHUNK_BYTES (4u << 20)
/* The scan that finds where spilled records are reads this much of the
 * journal a loop iteration (about 1 ms). */
#define BUS_SPILL_SCAN (256u << 10)
/* Records read back in one loop iteration, all sessions together. */
#define BUS_SPILL_TURN 1024

struct lws;
struct lws_context;
struct lws_vhost;
struct lock_session;
struct lock_table;
struct peer_auth;

/*
 * Who a COHORT_TOKEN names: the service that was given it, and the
 * patterns that service is held to, as they were when the token was
 * presented.  Reference counted: a connection keeps its identity until it
 * closes, whatever a reload does to the service meanwhile.
 */
struct bus_identity {
	unsigned refs;
	char *name;		/* the service's name */
	struct strv locks;	/* lock name patterns it may take */
	struct strv publish;	/* topic patterns it may publish to */
	struct strv subscribe;	/* ... and subscribe to */
	/* The lock table's owner of its sessions (the service, whose exit
	 * ends their leases); NULL once the service is gone (bus_forget_owner). */
	void *owner;
};

/* What the bus asks of the daemon, wired when it opens. */
struct bus_hooks {
	/* The identity TOKEN names (a new reference), or NULL when it is not
	 * the token of a running service. */
	struct bus_identity *(*resolve)(const char *token, void *arg);
	/* How many services the supervisor keeps (each holds descriptors the
	 * bus must leave it). */
	size_t (*services)(void *arg);
	void *arg;
};

/* The [cohort] keys the bus runs by.  The live ones may change at a
 * reload (bus_set_policy); the others are read once, by bus_open. */
struct bus_policy {
	/* live */
	int64_t ack_timeout_ms;		/* bus_ack_timeout */
	uint64_t queue_max;		/* bus_queue_max */
	int64_t queue_age_ms;		/* bus_queue_age */
	uint64_t memory_max;		/* bus_memory_max */
	uint64_t max_connections;	/* bus_max_connections */
	uint64_t max_connections_per_uid;	/* bus_max_connections_per_uid */
	/* at bus_open */
	const char *run_dir;		/* where bus.sock goes */
	const char *state_dir;		/* the journal, in its bus/ */
	const char *listen;		/* bus_listen, HOST:PORT, or NULL */
	unsigned mode;			/* bus_mode, of bus.sock */
	enum fsync_policy fsync;	/* bus_fsync */
	uint64_t max_message;		/* bus_max_message */
	int64_t idle_timeout_ms;	/* bus_idle_timeout */
	const struct strv *allowed_origins;	/* bus_allowed_origins */
	const char *state_mirror_dir;	/* retained values also as files here, or NULL */
	const struct strv *state_mirror_topics;	/* which ones */
};

/* An encoded text frame, with LWS_PRE bytes of room in front for lws. */
struct bus_frame {
	int refs;
	size_t len;
	unsigned char data[];
};

struct bus_msg {
	uint64_t seq;
	char *topic;
	char *data;		/* the JSON text of "data" */
	size_t data_len;
	int64_t ts_ms;
	char *mid;		/* NULL if none */
	const char *publisher;	/* identity; bus_sys_publisher is not freed */
	struct bus_frame *frame[2];	/* by delivered qos; built on first use */
	struct intmap *cache;	/* read back from the journal: bus->spill_cache, while alive */
	/* cluster mode (bus_remote.c): ack: the consumer's message a durable
	 * session owes an ack for; remote: it came from the cluster, which
	 * stored it. */
	char *ack;
	/* (The small fields together, after the large ones: no padding; a
	 * message is 112 bytes, not 128, and a host keeps one a service.) */
	int refs;
	unsigned durable_refs;	/* durable queues holding it (liveness for compaction) */
	uint32_t queued_refs;	/* queue slots holding it (queued_mem counts it once) */
	uint8_t qos;
	bool retain;
	bool packed;		/* its strings are in its own block (bus_msg_put) */
	bool retained;		/* it is its topic's retained value now */
	bool remote;
};

struct bus_session;

/* A qos-1 message owed to a session, or a qos-0 one queued behind those
 * to keep a publisher's order (sent once, never acked, never stored): one
 * 16-byte slot of the session's ring.  The message itself is shared by all
 * its deliveries; an ack deadline is sent_ms + bus_ack_timeout, watched by
 * the session's one timer, so a delivery carries no timer of its own.  A
 * delivery acked or dropped before the ones ahead of it leaves a hole
 * that keeps its seq (the ring stays sorted for bus_queue_find) until the
 * head passes it. */
struct bus_delivery {
	union {
		struct bus_msg *msg;	/* live */
		uint64_t hole_seq;	/* BUS_D_HOLE */
	};
	uint32_t sent_ms;	/* BUS_D_INFLIGHT: when it went out (monotonic ms, wraps) */
	uint8_t deliveries;	/* times sent; BUS_MAX_DELIVERIES, then $dead */
	uint8_t flags;
};
_Static_assert(sizeof(struct bus_delivery) == 16, "a queued delivery is 16 bytes");

#define BUS_D_HOLE 1u
#define BUS_D_INFLIGHT 2u
#define BUS_D_QOS0 4u

struct bus_sub {
	struct bus_session *s;
	char *pattern;
	uint8_t qos;
};

struct bus_session {
	struct bus *bus;
	char *key;		/* durable: identity "/" name; else NULL */
	char *name;		/* as the client gave it; NULL: not durable */
	char *identity;		/* "service:core", "admin" */
	struct bus_conn *conn;	/* NULL while away */
	struct bus_sub **subs;
	size_t nsubs;
	/* The queue, in publish order: a ring of qcap slots (a power of 2, or
	 * 0), qcount of them used from qhead, holes included.  Slots before
	 * cursor (an index from the head) were sent: in flight, or holes. */
	struct bus_delivery *q;
	size_t qcap, qhead, qcount, cursor;
	size_t qlen;		/* live deliveries */
	ev_timer ack_w;		/* the first ack deadline of what is in flight */
	uint64_t qbytes;
	size_t inflight;
	uint64_t inflight_bytes;	/* of qbytes */
	uint64_t epoch;		/* the last publish that reached it (no double delivery) */
	uint8_t epoch_qos;
	uint64_t dropped;	/* queue bound or age */
	uint64_t dead;		/* sent to $dead after too many deliveries */
	uint64_t delivered;
	/* Spilled: the newest `spilled` qos-1 deliveries owed to a durable
	 * session are not in the ring but only in the journal (PUB records
	 * naming it), from seq spill_next on.  While it spills, what comes is
	 * spilled too (the order); once the ring has sent all it holds, they
	 * are read back, BUS_SPILL_CHUNK at a time (bus_spill_load). */
	size_t spilled;
	uint64_t spill_bytes;		/* their msg_size (bus_queue_max counts them) */
	uint64_t spill_next;		/* the first seq not read back yet */
	uint64_t spill_resent;		/* recovered ones up to it may have been sent: redelivered */
	struct jrnl_pos spill_pos;	/* where reading them back goes on */
	struct intmap spill_acked;	/* recovery: spilled seqs acked since; skipped when read */
	struct bus_spill_ix *ix;	/* the places of its spilled records (bus_spill_index.c) */
	/* cluster mode: its consumer is read here (once the hello's answer came) */
	bool remote_ready;
	bool remote_nak;	/* what leaves its ring now is to be sent again, not acked */
};

struct bus_out {
	struct bus_frame *f;
	STAILQ_ENTRY(bus_out) link;
};

struct bus_conn {
	struct bus *bus;
	struct lws *wsi;
	uint64_t id;
	bool unix_peer;
	bool admin;
	uid_t uid;
	pid_t pid;
	/* The service whose token it presented (NULL: an admin, or no hello
	 * yet): the patterns it is held to. */
	struct bus_identity *service;
	char *identity;		/* "service:NAME" or "admin", after hello */
	struct bus_session *session;	/* after hello */
	STAILQ_HEAD(bus_outq, bus_out) out;	/* frames to send, in order */
	size_t out_len;
	uint64_t out_bytes;
	bool rx_paused;
	bool write_asked;	/* a writeable callback is on its way */
	bool flush_queued;	/* on bus->flush: written before the loop sleeps */
	SLIST_ENTRY(bus_conn) flush_link;
	struct sbuf rx;		/* fragments of the message being received */
	int rx_fd;		/* its socket, as bus_rx.c knows it */
	struct ws_scan rx_scan;	/* the client's frame headers, followed (bus_rx.c) */
	struct bus_ahead *ahead;	/* read from its socket, not yet by lws */
	LIST_ENTRY(bus_conn) ahead_link;	/* on bus->aheads while it has one */
	bool rx_failed;		/* a frame lws must not see came: lws reads no more */
	enum ws_fault rx_fault;	/* ... and the close it calls for, due at flush_cb (bus_write.c) */
	const char *frame;	/* the text bus_handle is handling, for its ops */
	size_t frame_len;
	bool rx_too_big;
	unsigned errors;
	uint64_t dropped_qos0;
	uint64_t published;	/* messages it published, for its rate ($sys.bus) */
	bool closing;		/* close at the next writeable callback */
	bool failed;		/* its socket failed under a write: close it */
	bool close_sent;	/* our Close frame is written: linger, then close */
	int close_status;
	char close_reason[96];
	/* liveness (bus_live.c) */
	ev_timer live_w;	/* the next deadline: hello, ping, idle, close */
	ev_tstamp opened;	/* ev_now at the upgrade */
	ev_tstamp progress;	/* ev_now when the peer last read or sent something */
	bool choked;		/* the socket took no more: the next writeable is progress */
	bool pinged;		/* a PING went out since the last progress */
	bool ping_due;		/* bus_write_some sends a PING */
	int outq;		/* unread bytes in the socket at the last check */
	struct lock_session *locks;
	struct intmap lock_waits;	/* cookie -> json id of a waiting lock.acquire */
	uint64_t next_cookie;
	LIST_ENTRY(bus_conn) link;	/* in bus->conns */
};

/* A publisher's ok, sent once its record is durable. */
struct bus_ok {
	uint64_t ticket;
	uint64_t conn_id;
	json_t *id;
	uint64_t seq;
	bool duplicate;		/* the answer to a retry (same mid) */
	STAILQ_ENTRY(bus_ok) link;
};

struct bus_mid {
	char *key;		/* publisher "\n" mid */
	uint64_t seq;
	uint64_t ticket;	/* its journal ticket: a retry's ok waits for it too */
	int64_t ts_ms;
	STAILQ_ENTRY(bus_mid) link;	/* in bus->mid_order */
};

/* A page of the bus listeners' plain HTTP (bus_http.c): writes the body,
 * may set the content type (text/plain by default), returns the status. */
typedef unsigned (*bus_http_fn)(void *arg, const char *path, struct sbuf *body, const char **type);
struct bus_http_page {
	const char *path;	/* exactly, without the query */
	bus_http_fn fn;
	void *arg;
};

/* A listening socket of the bus (bus_accept.c). */
struct bus_listener {
	struct bus *bus;
	ev_io io;
	struct lws_vhost *vh;	/* where its clients are adopted */
	bool unix_sock;
};

struct bus {
	struct ev_loop *loop;
	struct lock_table *locks;	/* the lock service, for lock.* ops */
	struct peer_auth *auth;		/* who is an admin (the control socket's rule) */
	struct bus_hooks hooks;
	char *listen;			/* bus_listen as it was opened, or NULL */
	struct lws_context *ctx;
	struct lws_vhost *unix_vh, *tcp_vh;
	char *unix_path;
	struct trie subs;
	struct map sessions;		/* durable sessions by key */
	struct map retained;		/* topic -> struct bus_msg */
	LIST_HEAD(bus_conns, bus_conn) conns;
	size_t nconns;
	struct intmap conns_by_id;
	struct intmap conns_by_fd;	/* socket -> bus_conn, for bus_rx.c */
	uint64_t next_conn_id;
	struct journal *j;
	uint64_t seq;			/* last message seq */
	struct map mids;		/* key -> struct bus_mid */
	STAILQ_HEAD(bus_mids, bus_mid) mid_order;	/* the mids, oldest first */
	STAILQ_HEAD(bus_oks, bus_ok) oks;	/* publishers' oks waiting for the disk, by ticket */
	uint64_t durable_ticket;
	uint64_t live_bytes;		/* of retained and durably queued messages */
	uint64_t mid_bytes;		/* of the remembered mids (a compaction keeps them) */
	size_t nmids;
	uint64_t last_snapshot;		/* bytes the last compaction wrote */
	uint64_t compact_from;		/* the journal's size when the last one started */
	int64_t compact_t0;		/* ... when (monotonic ms) */
	double compact_fork_ms;		/* ... and how long its fork held the loop */
	ev_check compact_w;		/* once per loop iteration: compact? */
	ev_prepare flush_w;		/* before the loop sleeps: write what is queued */
	SLIST_HEAD(bus_flushq, bus_conn) flush;	/* connections with frames queued this iteration */
	/* bus_spill_index.c: the scan that finds where spilled records are */
	struct {
		struct jrnl_pos pos;	/* where it goes on */
		uint64_t gen;		/* the journal's generation the places are of */
		bool done;		/* at the end of what is written */
		bool off;		/* the journal does not read whole: no index */
		ev_prepare step_w;	/* a step each loop iteration */
		ev_idle awake_w;	/* ... without sleeping in between */
		ev_timer busy_w;	/* ... or a little later: the writer was writing */
		LIST_HEAD(bus_spill_waits, bus_spill_ix) waiting;
		uint64_t want;		/* the journal ticket of the last delivery spilled */
		bool after_write;	/* at the end of the files, before that one was written */
		unsigned turn_iter;	/* the loop iteration turn_left is of */
		size_t turn_left;	/* records it may still read back */
	} sx;
	LIST_HEAD(bus_aheads, bus_conn) aheads;	/* connections with a read-ahead (bus_rx.c) */
	size_t ahead_bytes;		/* ... what they hold */
	ev_idle ahead_w;		/* the loop does not sleep while lws may take one */
	/* limits, from [cohort] */
	int64_t ack_timeout_ms;
	uint64_t queue_max;
	uint64_t memory_max;		/* bus_memory_max */
	int64_t queue_age_ms;
	uint64_t max_message;
	uint64_t max_connections;
	uint64_t max_connections_per_uid;
	unsigned mode;			/* of bus.sock */
	enum fsync_policy fsync;
	/* Memory held by queues: their rings and each message they hold (once,
	 * with its frame).  Over bus_memory_max, qos-1 publishes are refused. */
	uint64_t queued_mem;
	uint64_t queued_mem_peak;	/* since the last malloc_trim */
	ev_timer trim_w;		/* a malloc_trim after a queue drained */
	uint64_t spilled_bytes;		/* of every spilled queue: live, on disk only */
	/* seq -> struct bus_msg read back for a spilled queue, while a queue
	 * holds it: sessions reading back the same messages share them. */
	struct intmap spill_cache;
	ev_tstamp idle_timeout;		/* 0: no liveness closes */
	LIST_HEAD(bus_lingers, bus_linger) lingering;	/* closed sockets still read until the peer's end */
	struct strv allowed_origins;	/* bus_allowed_origins: pages of other sites let in */
	int64_t refused_log_ms;		/* when a refused origin was last logged */
	uint64_t refused_unlogged;	/* refused since, not logged */
	size_t nlingering;
	/* bus_accept.c */
	struct bus_listener listeners[2];	/* bus.sock, bus_listen */
	size_t nlisteners;
	ev_timer accept_pause_w;	/* out of descriptors: accepting again after it */
	bool accept_paused;
	struct intmap peers;		/* wsi -> struct bus_peer, every accepted socket */
	size_t npeers;
	struct intmap per_uid;		/* uid -> its unix connections (admins not counted) */
	struct intmap heads_by_fd;	/* socket -> struct bus_peer, until its first request head ends */
	/* counters, for status */
	uint64_t published, delivered, dropped_qos0, dropped_queue, dead_lettered, duplicates;
	struct jrnl_recovery recovery;
	struct bus_mirror mirror;	/* retained values as files (bus_mirror.c) */
	/* admin: a hello with this token is an admin's, over TCP too (NULL: none) */
	char *admin_token;
	/* what an admin's "service" op does (the daemon's; NULL: refused) */
	int (*service_fn)(void *arg, const char *action, const char *name, char *err, size_t errlen);
	void *service_arg;
	/* bus_http.c */
	struct bus_http_page pages[8];
	size_t npages;
	struct intmap http_replies;	/* wsi -> the reply being written */
	/* bus_stats.c: what only /metrics reads */
	uint64_t published_qos[2];	/* by the qos it was published with */
	uint64_t delivered_qos[2];	/* by the qos it was delivered with */
	uint64_t redelivered;		/* qos-1 deliveries sent again (ack timeout, reconnect) */
	uint64_t sys_published;		/* cohortd's own $sys messages (bus_sys.c) */
	/* cluster mode (bus_remote.c): NULL on one host */
	const struct bus_remote_ops *remote;
	void *remote_arg;
	struct intmap remote_pending;	/* cookie -> what waits for the cluster's answer */
	uint64_t remote_cookie;
	uint64_t remote_dropped;	/* qos-0 messages dropped, the cluster away */
	uint64_t remote_refused;	/* qos-1, retained, durable hello and sub refused, the cluster away */
};

/* bus_server.c */
/* Opens the journal and the listeners.  locks and auth are the daemon's
 * and outlive the bus; hooks are copied.  -1 with err. */
int bus_open(struct bus *b, struct ev_loop *loop, const struct bus_policy *pol, struct lock_table *locks,
	     struct peer_auth *auth, const struct bus_hooks *hooks, char *err, size_t errlen);
/* The policy's live keys (a reload). */
void bus_set_policy(struct bus *b, const struct bus_policy *pol);
/* The bus's keys of a config, as bus_open and bus_set_policy take them
 * (pointing into cfg). */
void bus_policy_from_config(struct bus_policy *pol, const struct cohort_config *cfg);
void bus_close(struct bus *b);
struct bus_conn *bus_conn_by_id(struct bus *b, uint64_t id);
/* A connection of b's, put in its lists (an upgrade makes
 * one so; the tests that drive the bus without a socket too).  Its
 * peer's fields are the caller's to fill in; then bus_live_start. */
struct bus_conn *bus_conn_new(struct bus *b);
/* Takes c out of b's lists and frees it, with what it had yet to send. */
void bus_conn_free(struct bus_conn *c);
json_t *bus_status_json(struct bus *b);

/* bus_write.c */
/* Queues a frame (takes a reference): written before the loop sleeps. */
void bus_conn_send(struct bus_conn *c, struct bus_frame *f);
/* Sends one JSON object (takes it). */
void bus_conn_send_json(struct bus_conn *c, json_t *o);
/* {"op":"ok","id":ID,"seq":SEQ}, the answer to a qos-1 pub */
void bus_conn_send_ok(struct bus_conn *c, json_t *id, uint64_t seq, bool duplicate);
/* An error frame; closes the connection after too many. */
void bus_conn_error(struct bus_conn *c, json_t *id, const char *fmt, ...) PRINTF(3, 4);
/* An error frame for a well-formed request that was refused (not allowed,
 * lock busy, not held): unlike bus_conn_error it is no abuse. */
void bus_conn_refuse(struct bus_conn *c, json_t *id, const char *fmt, ...) PRINTF(3, 4);
/* Sends what is queued, then a Close frame with status and the reason;
 * logs it, once. */
void bus_conn_close(struct bus_conn *c, int status, const char *fmt, ...) PRINTF(3, 4);
/* Writes what the socket takes of c's queue (and its Close frame once the
 * queue is empty and it is closing); -1 when the socket failed. */
int bus_write_some(struct bus_conn *c);
/* lws is closing c: nothing more may follow its Close frame. */
void bus_stop_sending(struct bus_conn *c);
/* The writes before the loop sleeps start, and stop. */
void bus_write_start(struct bus *b);
void bus_write_stop(struct bus *b);
/* At shutdown: every connection's Close frame (1001), as far as the
 * sockets take them within BUS_LINGER_MS. */
void bus_say_goodbye(struct bus *b);

/* bus_accept.c */
/* Listens on unix_path (mode bus_mode), or on host:port, and adopts
 * clients into vh.  -1 with err. */
int bus_accept_listen(struct bus *b, struct lws_vhost *vh, const char *unix_path, const char *host,
		      const char *port, char *err, size_t errlen);
/* A connection made its WebSocket upgrade (ESTABLISHED). */
void bus_accept_upgraded(struct bus *b, struct lws *wsi);
/* recv() of a socket whose first request head has not ended: what lws
 * may have of the n bytes read (0 after answering 431). */
ssize_t bus_accept_head(struct bus *b, int fd, void *buf, ssize_t n);
/* lws destroyed a wsi (LWS_CALLBACK_WSI_DESTROY): its descriptor is free. */
void bus_accept_gone(struct bus *b, struct lws *wsi);
/* Stops listening (before lws closes the connections). */
void bus_accept_close(struct bus *b);
/* After lws_context_destroy: what is left of the bookkeeping. */
void bus_accept_free(struct bus *b);

/* bus_http.c */
/* Serves path with fn from now on (after bus_open); -1 when the table is full. */
int bus_http_page(struct bus *b, const char *path, bus_http_fn fn, void *arg);
/* LWS_CALLBACK_HTTP, LWS_CALLBACK_HTTP_WRITEABLE: 0 to go on, -1 to close. */
int bus_http_serve(struct bus *b, struct lws *wsi, const char *path);
int bus_http_writeable(struct bus *b, struct lws *wsi);
/* The wsi is destroyed: its reply, if any, goes. */
void bus_http_gone(struct bus *b, struct lws *wsi);
void bus_http_free(struct bus *b);

/* bus_sys.c: the admin token (copied; NULL: none), and the handler of an
 * admin's {"op":"service","action":"start|stop|restart","name":...}. */
void bus_set_admin_token(struct bus *b, const char *token);
bool bus_is_admin_token(const struct bus *b, const char *token);
/* {"op":"service","action":"start|stop|restart","name":NAME,"id":N}: an
 * admin's, answered ok once asked (the $sys events show what follows). */
void bus_op_service(struct bus_conn *c, json_t *req, json_t *id);
void bus_set_service_fn(struct bus *b, int (*fn)(void *arg, const char *action, const char *name, char *err,
						  size_t errlen), void *arg);
/* bus_sys.c: cohortd's own messages ($sys.*), qos 0, never journaled; a
 * retained one is kept in memory only.  json is the data (LEN bytes). */
void bus_publish_sys(struct bus *b, const char *topic, const char *json, size_t len, bool retain);
bool bus_has_retained(const struct bus *b, const char *topic);
/* Is json (LEN bytes) topic's retained value already? */
bool bus_retained_is(const struct bus *b, const char *topic, const char *json, size_t len);
/* Does any subscription match topic?  (What is costly to make is made
 * only for someone.) */
bool bus_has_subscribers(const struct bus *b, const char *topic);

/* bus_stats.c: the figures /metrics shows. */
struct histo;
struct bus_stats {
	size_t connections[2];		/* unix, tcp */
	size_t subscriptions, durable_sessions, durable_away, retained, queued;
	uint64_t published_qos[2], delivered_qos[2], redelivered, sys_published;
	uint64_t dropped_qos0, dropped_queue, dead_lettered;
	uint64_t queued_bytes;		/* memory held by queues */
	uint64_t journal_bytes;
	const struct histo *fsync;	/* the journal's fdatasyncs; NULL: no journal */
};
void bus_stats_read(const struct bus *b, struct bus_stats *st);

/* bus_live.c */
/* A connection upgraded: the hello deadline starts, and the idle one. */
void bus_live_start(struct bus_conn *c);
void bus_live_stop(struct bus_conn *c);
/* The peer sent something, or read what was waiting. */
void bus_live_progress(struct bus_conn *c);
/* Our Close frame is queued: bounds how long it may take to go out. */
void bus_live_closing(struct bus_conn *c);
/* lws is about to close the socket of a connection whose Close frame we
 * sent: keep it open, its write side shut, reading and dropping what the
 * peer still sends until it closes too or BUS_LINGER_MS pass.  Closing
 * with unread input would send a RST, which loses our Close frame. */
void bus_linger(struct bus *b, int fd);
/* At shutdown: waits (at most BUS_LINGER_MS) for the lingering sockets. */
void bus_linger_finish(struct bus *b);

/* bus_rx.c */
/* recv() follows the frame headers of b's connections from now on ... */
void bus_rx_start(struct bus *b);
/* ... and no longer. */
void bus_rx_stop(struct bus *b);
/* A connection upgraded (from its next byte), or going. */
void bus_rx_watch(struct bus_conn *c);
void bus_rx_unwatch(struct bus_conn *c);
/* Writes now what the connections have queued (the rest of this
 * iteration's frames still go before the loop sleeps). */
void bus_flush_now(struct bus *b);
/* Closes c for the fault its frames showed (from bus_write.c's flush_cb). */
void bus_rx_fail(struct bus_conn *c);
/* Hands lws what was read ahead of it (from flush_cb, before the writes). */
void bus_rx_drain(struct bus *b);
/* After the writes: keeps the loop from sleeping while lws may take a
 * read-ahead (its connection was let read again meanwhile). */
void bus_rx_keep_awake(struct bus *b);

/* bus_ops.c */
void bus_handle(struct bus_conn *c, const char *text, size_t len);
/* The connection is going: what it held ends. */
void bus_ops_conn_gone(struct bus_conn *c);
/* The service owner stands for is about to be freed: connections that
 * presented its token keep their patterns, but no longer point to it. */
void bus_forget_owner(struct bus *b, const void *owner);
/* A new identity (one reference); the patterns are copied. */
struct bus_identity *bus_identity_new(const char *name, const struct strv *locks, const struct strv *publish,
				      const struct strv *subscribe, void *owner);
struct bus_identity *bus_identity_ref(struct bus_identity *id);
void bus_identity_unref(struct bus_identity *id);

/* bus_core.c */
struct bus_frame *bus_frame_new(const char *text, size_t len);
void bus_frame_put(struct bus_frame *f);
void bus_msg_put(struct bus_msg *m);
/* The publisher of cohortd's own messages ($sys, $dead), one copy for them all. */
extern const char bus_sys_publisher[];
/* A message (one reference) in one block with copies of its strings
 * (packed; bus_sys_publisher is not copied): mid NULL when mn is 0.  For
 * the many that never change: a replayed journal's, and the retained $sys
 * values of every service. */
struct bus_msg *bus_msg_new_packed(const char *topic, size_t tn, const char *data, size_t dn, const char *mid,
				   size_t mn, const char *publisher, size_t pn);
/* Stores (qos 1, retain) and routes a message to every matching
 * subscription; returns the journal ticket to wait for, or 0. */
uint64_t bus_publish(struct bus *b, struct bus_msg *m);
struct bus_session *bus_session_new(struct bus *b, const char *identity, const char *name);
void bus_session_free(struct bus_session *s);
void bus_session_attach(struct bus_session *s, struct bus_conn *c);
void bus_session_detach(struct bus_session *s);
/* 1: a new subscription; 0: the pattern was there (its qos is set); -1: the
 * session has BUS_SUBS_MAX already. */
int bus_subscribe(struct bus_session *s, const char *pattern, uint8_t qos);
bool bus_unsubscribe(struct bus_session *s, const char *pattern);
void bus_send_retained(struct bus_session *s, const char *pattern);
/* The client acked seq: -1 when it owed nothing by that number. */
int bus_ack(struct bus_session *s, uint64_t seq);
/* The delivery of seq in the session's queue, or NULL. */
struct bus_delivery *bus_queue_find(struct bus_session *s, uint64_t seq);
/* Slot i of the queue, 0 the head (i < s->qcount). */
static inline struct bus_delivery *bus_queue_at(const struct bus_session *s, size_t i)
{
	return &s->q[(s->qhead + i) & (s->qcap - 1)];
}
/* Sends what the session's queue holds, up to the in-flight window. */
void bus_pump(struct bus_session *s);
void bus_free_all(struct bus *b);
/* Recovery: a message the session still owes an ack for; one it no longer does. */
void bus_session_restore(struct bus_session *s, struct bus_msg *m);
void bus_session_forget(struct bus_session *s, uint64_t seq);
/* What a message counts for in bus_queue_max and the compaction's estimate. */
size_t bus_msg_size(const struct bus_msg *m);
/* Queues m for s (qos0: a qos-0 one behind qos-1 ones), within the bounds. */
void bus_enqueue(struct bus_session *s, struct bus_msg *m, uint8_t deliveries, bool qos0);
/* Recovery: m is its topic's retained value (NULL data clears it). */
void bus_retain(struct bus *b, struct bus_msg *m);

/* bus_store.c */
int bus_store_open(struct bus *b, const char *dir, char *err, size_t errlen);
void bus_store_close(struct bus *b);
/* Appends the records; returns the ticket to wait for (0: none written). */
uint64_t bus_store_pub(struct bus *b, const struct bus_msg *m, struct bus_session **durable,
		       size_t ndurable);
void bus_store_ack(struct bus *b, const struct bus_session *s, uint64_t seq);
void bus_store_sub(struct bus *b, const struct bus_session *s, const char *pattern, uint8_t qos);
void bus_store_unsub(struct bus *b, const struct bus_session *s, const char *pattern);
void bus_store_session(struct bus *b, const struct bus_session *s, bool clean);
void bus_store_retdel(struct bus *b, const char *topic, uint64_t seq);
/* A PUB record's seq (0: another record, or malformed), *keys left at
 * the session keys it names (*nkeys), its message not read. */
uint64_t bus_store_pub_keys(const unsigned char *p, size_t len, struct jreader *keys, uint64_t *nkeys);
/* The session the next key of a record names (r is moved past it), or NULL. */
struct bus_session *bus_store_session_of(struct bus *b, struct jreader *r);
/* The message of a PUB record (payload p, len), *keys left at the
 * session keys it names (*nkeys); NULL if it is another record, is
 * malformed, or its seq is under min_seq. */
struct bus_msg *bus_store_read_pub(const unsigned char *p, size_t len, uint64_t min_seq, struct jreader *keys,
				   uint64_t *nkeys);

/* bus_spill.c */
/* Does a qos-1 delivery to s go to the journal only?  A durable session
 * starts spilling when it is away and the queues hold half of
 * bus_memory_max (its ring stays as it is); once it spills, all that
 * comes for it does, until what it spilled is read back (the order). */
bool bus_spills(const struct bus_session *s);
/* m (its PUB record names s) is spilled for s. */
void bus_spill_add(struct bus_session *s, const struct bus_msg *m);
/* Recovery: an ack of seq; false if seq is not among s's spilled ones. */
bool bus_spill_forget(struct bus_session *s, uint64_t seq);
/* Does a qos-1 publish to topic take memory?  Not if every session it
 * reaches spills it. */
bool bus_publish_takes_memory(struct bus *b, const char *topic);
/* Reads the next of s's spilled deliveries back into its ring; returns
 * how many it read. */
size_t bus_spill_load(struct bus_session *s);

/* bus_spill_index.c */
/* After recovery: the places of what is spilled are found. */
void bus_spill_ix_start(struct bus *b);
void bus_spill_ix_stop(struct bus *b);
/* Something was spilled: the scan goes on to find its place. */
void bus_spill_ix_more(struct bus *b);
/* May s read back now?  Else it does at the next loop iteration. */
bool bus_spill_ix_turn(struct bus_session *s);
/* n records were read back in this iteration. */
void bus_spill_ix_used(struct bus *b, size_t n);
/* The journal wrote up to b->durable_ticket. */
void bus_spill_ix_written(struct bus *b);
/* Is there an index (a journal, not damaged)? */
bool bus_spill_ix_on(const struct bus *b);
/* Reads the records at s's next places (a chunk) into fn. */
void bus_spill_ix_take(struct bus_session *s, jrnl_read_fn fn, void *arg);
/* s has no place left: true if it is to wait for the scan (it is pumped
 * when the scan found more); else *from is where to scan on from. */
bool bus_spill_ix_wait(struct bus_session *s, struct jrnl_pos *from);
void bus_spill_ix_free(struct bus_session *s);
/* How many of s's spilled deliveries have their place noted, not read yet. */
size_t bus_spill_ix_places(const struct bus_session *s);
/* Compacts when the journal has grown well past the live data. */
/* mid de-duplication: the seq of an earlier publish, or 0. */
const struct bus_mid *bus_mid_seen(struct bus *b, const char *publisher, const char *mid);
void bus_mid_add(struct bus *b, const char *publisher, const char *mid, uint64_t seq, uint64_t ticket,
		 int64_t ts_ms);

#endif
