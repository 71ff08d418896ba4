/*
 * wire.h - cohort's JSON, read and written by hand where jansson would
 * cost too much, and the fields a request may carry, declared.  Every
 * hand-written reader and writer of the control and bus protocols is here
 * (and nowhere else), and tests/unit/test_wire.c runs the same inputs
 * through each of them and through jansson and checks that they agree.
 *
 *   jstr.c          JSON strings escaped and unescaped, plain ones found
 *   jflat.c         the common request, a flat object, read into a json_t
 *   jscan.c         a member's raw text, JSON checked as text
 *   wire_frames.c   the frames of a fixed layout: msg, pub, ack, ok, a
 *                   lock's grant, the status table
 *   wire_fields.c   a request's fields checked against a table
 *
 * A reader here never says "invalid": it takes what it is sure of, exactly
 * as jansson would read it, and leaves anything else to jansson (NULL or
 * false), which also gives the error message.
 */
#ifndef COHORT_WIRE_H
#define COHORT_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* --- JSON strings (jstr.c) ------------------------------------------------------ */

/* Writes S (N bytes) at W as the inside of a JSON string: quotes,
 * backslashes and control characters escaped, bytes that are not UTF-8
 * as U+FFFD. W has room for JSTR_ESCAPED_MAX(N) bytes; returns the end. */
#define JSTR_ESCAPED_MAX(n) (6 * (n))
char *jstr_escape(char *w, const char *s, size_t n);

/* Writes at W the value of the JSON string TEXT (N bytes, quotes
 * included), at most N - 2 bytes; W may be TEXT (decoding in place).
 * Returns the end, or NULL when TEXT is not a well-formed JSON string. */
char *jstr_unescape(char *w, const char *text, size_t n);

/* P (before END) starts a JSON string without escapes, valid UTF-8 and
 * free of control characters: the end past its closing quote, else NULL.
 * The common bus data, checked without jansson, which takes about 24 ns a
 * byte for strings; a NULL means "ask the parser", not "invalid". */
const char *jstr_plain_end(const char *p, const char *end);

/* Past LIT when the text at P (before END) starts with it, else NULL; a
 * NULL P gives NULL, so calls chain. For frames of a fixed layout. */
const char *jstr_lit(const char *p, const char *end, const char *lit);

/* --- the common request, flat (jflat.c) ----------------------------------------- */

/*
 * The object that json_loadb(TEXT, LEN, JSON_REJECT_DUPLICATES) would
 * return, when TEXT is an object whose members are all plain strings (no
 * escapes, valid UTF-8), integers of at most 18 digits, true, false or
 * null, with unique keys.  NULL for anything else, which means "ask
 * jansson" (it also gives the error message), never "invalid".
 */
json_t *jflat_load(const char *text, size_t len);

/* --- raw members, JSON checked as text (jscan.c) -------------------------------- */

/*
 * The text of member KEY of the object TEXT (LEN bytes, valid JSON that a
 * parser has accepted: this only scans), without the white space around
 * it; *n is its length.  NULL when TEXT is not an object, has no such
 * member, or spells the key with escapes (the caller then dumps the
 * parsed value instead).
 */
const char *jscan_member(const char *text, size_t len, const char *key, size_t *n);

/*
 * The next element of the array TEXT (LEN bytes, valid JSON), without the
 * white space around it: *AT is 0 for the first and is moved past each;
 * *n is its length.  NULL after the last, or when TEXT is not an array.
 */
const char *jscan_item(const char *text, size_t len, size_t *at, size_t *n);

/*
 * Copies the JSON text TEXT (N bytes, valid JSON) to OUT (room for N bytes)
 * without the white space between tokens; returns the length written.
 * Numbers and strings stay as written: 1.50 stays 1.50.
 */
size_t jscan_compact(char *out, const char *text, size_t n);

/*
 * JSON numbers have no limit of size or precision (RFC 8259); jansson
 * refuses integers beyond 64 bits and reals beyond a double.  The bus
 * passes data on as text, so it judges data by the grammar alone:
 *
 * jscan_check: 0 when TEXT (LEN bytes) is JSON that json_loadb(FLAGS)
 * accepts once every number in it is within jansson's range, with \u0000
 * in strings allowed as well (valid JSON); -1 and ERR (json_loadb's error,
 * its positions those of TEXT) otherwise.  With JSON_DISABLE_EOF_CHECK,
 * ERR->position is where the value ends, as with json_loadb.
 *
 * jscan_load_around: for an object TEXT that json_loadb(FLAGS) refused,
 * the object parsed with its top-level member MEMBER set to null, when
 * the rest is JSON that jansson holds and TEXT passes jscan_check: only
 * MEMBER may hold what jansson cannot (the caller takes its text from
 * TEXT with jscan_member).  NULL otherwise, with ERR saying why (of the
 * rest of the object first), or ERR left as it was when TEXT has no
 * MEMBER.
 */
int jscan_check(const char *text, size_t len, size_t flags, json_error_t *err);
json_t *jscan_load_around(const char *text, size_t len, const char *member, size_t flags, json_error_t *err);

/* --- frames of a fixed layout (wire_frames.c) ----------------------------------- */

/* A msg frame, cohortd -> client:
 *   {"op":"msg","topic":T,"data":D,"seq":N,"qos":Q,"ts_ms":N,"retained":B,"redelivered":B}
 * Its writer needs room for topic_len + data_len + WIRE_MSG_FIXED bytes. */
#define WIRE_MSG_FIXED 160
struct wire_msg {
	const char *topic;	/* [A-Za-z0-9_.$-]: nothing to escape */
	size_t topic_len;
	const char *data;	/* JSON text, as published */
	size_t data_len;
	uint64_t seq;
	int qos;
	int64_t ts_ms;
	bool retained, redelivered;
};
char *wire_write_msg(char *w, const struct wire_msg *m);
/* The same without its "op" (`cohortctl sub --json` prints one a line). */
char *wire_write_delivery(char *w, const struct wire_msg *m);
/* A msg frame of exactly that layout: true, with M's spans in TEXT.  Its
 * data is taken as cohortd wrote it, not checked again (cohortd checked
 * it when it was published): the one thing read here on trust. */
bool wire_read_msg(const char *text, size_t len, struct wire_msg *m);

/* A pub frame, client -> cohortd, as libcohort writes it:
 *   {"op":"pub","topic":T,"data":D,"qos":Q,"retain":B[,"mid":M][,"id":N]} */
struct wire_pub {
	const char *topic;	/* plain ASCII: no escapes, no control characters */
	size_t topic_len;
	const char *data;	/* JSON text, checked by the reader */
	size_t data_len;
	int qos;
	bool retain;
	const char *mid;	/* NULL, or its text (plain, when read) */
	size_t mid_len;
	bool has_id;
	uint64_t id;
};
void wire_write_pub(struct sbuf *b, const struct wire_pub *p);
/* A pub frame of exactly that layout, its data JSON that jansson takes on
 * one line, its topic and mid plain: true, with P's spans in TEXT. */
bool wire_read_pub(const char *text, size_t len, struct wire_pub *p);

/* The answer to get, {"op":"ok","id":ID,"messages":[{"topic":T,"data":D,
 * "seq":N,"ts_ms":N},...]}: ID_JSON is the request's id as JSON text; each
 * item (M's topic, data, seq, ts_ms) as published, FIRST for the first. */
void wire_write_get_begin(struct sbuf *b, const char *id_json);
void wire_write_get_item(struct sbuf *b, bool first, const struct wire_msg *m);
void wire_write_get_end(struct sbuf *b);

/* {"op":"sub","id":N,"topic":P,"qos":Q}: PATTERN is a checked pattern. */
void wire_write_sub(struct sbuf *b, uint64_t id, const char *pattern, int qos);

/* {"op":"ack","seq":N}, client -> cohortd; the reader takes N of 1 to 18
 * digits.  The writer needs WIRE_ACK_MAX bytes. */
#define WIRE_ACK_MAX 48
char *wire_write_ack(char *w, uint64_t seq);
bool wire_read_ack(const char *text, size_t len, uint64_t *seq);

/* {"op":"ok","id":N,"seq":N}, cohortd -> client: a qos-1 pub stored.  The
 * writer needs WIRE_OK_SEQ_MAX bytes; the reader takes an id of 0 or more. */
#define WIRE_OK_SEQ_MAX 64
char *wire_write_ok_seq(char *w, int64_t id, uint64_t seq);
bool wire_read_ok_seq(const char *text, size_t len, uint64_t *id, uint64_t *seq);

/* {"ok":true[,"token":N],"expires_ms":N}\n: the control socket's answer
 * to a lock granted (with its token) or renewed; WIRE_LOCK_OK_MAX bytes. */
#define WIRE_LOCK_OK_MAX 80
char *wire_write_lock_ok(char *w, const uint64_t *token, int64_t expires_ms);

/* --- $sys documents (wire_sys.c) ---------------------------------------------------- */

/* $sys.service.NAME: a service's state, as sys_topics.c fills it. */
struct wire_svc_state {
	const char *name, *state, *reason;
	int pid;			/* 0: null */
	int64_t since_ms;
	int restarts;
	bool wanted_up;
	int64_t phase;			/* -1: null */
	const char *const *requires, *const *after;
	size_t nrequires, nafter;
	bool log;
	bool has_exit;			/* last_exit: exit_signal's name, else exit_code */
	const char *exit_signal;
	int exit_code;
};
void wire_write_svc_state(struct sbuf *b, const struct wire_svc_state *s);

/* $sys.event.service: one transition. */
struct wire_svc_event {
	const char *name, *from, *to, *reason;
	int pid;			/* 0: null */
	int restarts;
	int64_t ts_ms;
};
void wire_write_svc_event(struct sbuf *b, const struct wire_svc_event *e);

/* The control socket's {"ok":true,"table":"..."} (LINE, LEN bytes): 1 with
 * the table decoded in place at LINE up to *END; 0 for any other answer
 * (LINE untouched: an error, a cut line, for the parser); -1 when the
 * table is not a JSON string (LINE spoilt). */
int wire_read_table(char *line, size_t len, char **end);

/* --- a request's fields, declared (wire_fields.c) ---------------------------- */

enum wire_type {
	WIRE_STRING = 1,
	WIRE_INT,
	WIRE_BOOL,
	WIRE_LIST,	/* an array; its items are the handler's to check */
};

struct wire_field {
	const char *name;
	enum wire_type type;
	bool required;
	long long min, max;		/* WIRE_INT: its range, when min < max */
	const char *what;		/* what it must be, for errors; else by type */
	const char *const *choices;	/* WIRE_STRING: its only values, NULL-ended */
};

/*
 * Checks the object REQ against FIELDS (ended by a NULL name): a required
 * field missing, or one of the wrong type, out of range or not one of its
 * choices, gives -1 and ERR naming it (`field "lines" must be an integer
 * from 0 to 100000`).  With STRICT, so does a member that is neither
 * declared nor ENVELOPE (the member naming the request, as "cmd"): `unknown
 * field "line" (did you mean "lines"?)`, as the config loader says it.
 */
int wire_check_fields(json_t *req, const struct wire_field *fields, bool strict, const char *envelope,
		      char *err, size_t errlen);

#endif
