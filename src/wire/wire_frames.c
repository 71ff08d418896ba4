/*
 * wire_frames.c - the frames of a fixed layout, written and read without
 * building a JSON value (see wire.h): the hot paths of the bus (msg, pub,
 * ack and their answers) and of the control socket (a lock's grant).
 * Each writer has its reader, and each reader takes only its writer's
 * exact bytes: anything else is "ask the parser" (false), never "invalid",
 * so jansson stays the one judge of what is JSON and what it means.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util.h"
#include "wire.h"

static char *put(char *w, const char *s, size_t n)
{
	memcpy(w, s, n);
	return w + n;
}

#define PUT_LIT(w, lit) put(w, lit, sizeof(lit) - 1)

/* Past LIT at *P: true and *P moved, else false and *P as it was. */
static bool take(const char **p, const char *end, const char *lit)
{
	const char *q = jstr_lit(*p, end, lit);

	if (q)
		*p = q;
	return q != NULL;
}

/* A decimal of 1 to MAXDIG digits without a leading 0 (a JSON integer of
 * that size: no overflow), followed by no further digit. */
static const char *take_u64(const char *p, const char *end, int maxdig, uint64_t *v)
{
	const char *q = p;

	*v = 0;
	if (!p)
		return NULL;
	while (q < end && q - p < maxdig && *q >= '0' && *q <= '9')
		*v = *v * 10 + (uint64_t)(*q++ - '0');
	if (q == p || (*p == '0' && q - p > 1) || (q < end && *q >= '0' && *q <= '9'))
		return NULL;
	return q;
}

static const char *take_bool(const char *p, const char *end, bool *v)
{
	const char *q = jstr_lit(p, end, "true");

	*v = q != NULL;
	return q ? q : jstr_lit(p, end, "false");
}

/* --- msg: cohortd -> client ------------------------------------------------------ */

static char *put_int64(char *w, int64_t v)
{
	if (v < 0)
		*w++ = '-';
	return put_decimal(w, v < 0 ? -(uint64_t)v : (uint64_t)v);
}

/* "topic":T,"data":D,"seq":N,"qos":Q,...}: a msg frame after its "op" */
static char *put_delivery(char *w, const struct wire_msg *m)
{
	/* Topics are [A-Za-z0-9_.$-]: nothing to escape. */
	w = PUT_LIT(w, "\"topic\":\"");
	w = put(w, m->topic, m->topic_len);
	w = PUT_LIT(w, "\",\"data\":");
	w = put(w, m->data, m->data_len);
	w = PUT_LIT(w, ",\"seq\":");
	w = put_decimal(w, m->seq);
	w = m->qos ? PUT_LIT(w, ",\"qos\":1,\"ts_ms\":") : PUT_LIT(w, ",\"qos\":0,\"ts_ms\":");
	w = put_decimal(w, m->ts_ms > 0 ? (uint64_t)m->ts_ms : 0);
	w = m->retained ? PUT_LIT(w, ",\"retained\":true") : PUT_LIT(w, ",\"retained\":false");
	return m->redelivered ? PUT_LIT(w, ",\"redelivered\":true}") : PUT_LIT(w, ",\"redelivered\":false}");
}

char *wire_write_msg(char *w, const struct wire_msg *m)
{
	return put_delivery(PUT_LIT(w, "{\"op\":\"msg\","), m);
}

char *wire_write_delivery(char *w, const struct wire_msg *m)
{
	return put_delivery(PUT_LIT(w, "{"), m);
}

/*
 * Inside DATA a quote is always escaped, so ,"seq": can only be one of the
 * frame's keys, and the last one followed by exactly that tail ends DATA.
 * DATA itself is not checked: cohortd checked it when it was published,
 * and every message a client receives passes here.
 */
bool wire_read_msg(const char *text, size_t len, struct wire_msg *m)
{
	static const char head[] = "{\"op\":\"msg\",\"topic\":\"", mid[] = "\",\"data\":", tail[] = ",\"seq\":";
	const char *end = text + len;

	if (len < sizeof(head) || memcmp(text, head, sizeof(head) - 1) != 0)
		return false;
	const char *topic = text + sizeof(head) - 1;
	const char *start = memmem(topic, (size_t)(end - topic), mid, sizeof(mid) - 1);
	if (!start)
		return false;
	for (const char *t = topic; t < start; t++)	/* cohortd's topics: nothing escaped */
		if (*t == '"' || *t == '\\' || (unsigned char)*t < 0x20 || (unsigned char)*t >= 0x80)
			return false;
	for (const char *p = end - (sizeof(tail) - 1); p > start + sizeof(mid) - 1; p--) {
		if (memcmp(p, tail, sizeof(tail) - 1) != 0)
			continue;
		uint64_t qos, ts;
		const char *q = take_u64(p + sizeof(tail) - 1, end, 18, &m->seq);
		q = take_u64(jstr_lit(q, end, ",\"qos\":"), end, 1, &qos);
		q = take_u64(jstr_lit(q, end, ",\"ts_ms\":"), end, 18, &ts);
		q = take_bool(jstr_lit(q, end, ",\"retained\":"), end, &m->retained);
		q = take_bool(jstr_lit(q, end, ",\"redelivered\":"), end, &m->redelivered);
		if (jstr_lit(q, end, "}") != end || qos > 1)
			return false;
		m->topic = topic;
		m->topic_len = (size_t)(start - topic);
		m->data = start + sizeof(mid) - 1;
		m->data_len = (size_t)(p - m->data);
		m->qos = (int)qos;
		m->ts_ms = (int64_t)ts;
		return true;
	}
	return false;
}

/* --- pub: client -> cohortd ------------------------------------------------------ */

void wire_write_pub(struct sbuf *b, const struct wire_pub *p)
{
	sbuf_adds(b, "{\"op\":\"pub\",\"topic\":\"");
	sbuf_add(b, p->topic, p->topic_len);	/* checked by the caller: nothing to escape */
	sbuf_adds(b, "\",\"data\":");
	sbuf_add(b, p->data, p->data_len);
	sbuf_adds(b, p->qos ? ",\"qos\":1" : ",\"qos\":0");
	sbuf_adds(b, p->retain ? ",\"retain\":true" : ",\"retain\":false");
	if (p->mid && !utf8_valid(p->mid, p->mid_len)) {
		sbuf_adds(b, ",\"mid\":null");	/* no JSON string: cohortd says so */
	} else if (p->mid) {
		sbuf_adds(b, ",\"mid\":\"");
		sbuf_commit(b, jstr_escape(sbuf_reserve(b, JSTR_ESCAPED_MAX(p->mid_len)), p->mid, p->mid_len));
		sbuf_addc(b, '"');
	}
	if (p->has_id) {
		sbuf_adds(b, ",\"id\":");
		sbuf_commit(b, put_decimal(sbuf_reserve(b, 20), p->id));
	}
	sbuf_addc(b, '}');
}

/* The deepest nesting of values in the valid JSON text at p, as jansson
 * counts it: a value inside N arrays or objects is at depth N + 1. */
static int depth_of(const char *p, const char *end)
{
	int depth = 0, deepest = 0;

	for (; p < end; p++) {
		if (*p == '[' || *p == '{') {
			if (++depth > deepest)
				deepest = depth;
		} else if (*p == ']' || *p == '}') {
			depth--;
		} else if (*p != ',' && *p != ':' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
			if (depth + 1 > deepest)	/* a string, number or literal */
				deepest = depth + 1;
			if (*p == '"')	/* skip the string: valid JSON, so it ends */
				for (p++; p < end && *p != '"'; p++)
					if (*p == '\\')
						p++;
		}
	}
	return deepest;
}

/* The end of the pub's data at P: JSON, checked (a plain string by a
 * loop, anything else by jscan_check), on one line; NULL to ask jansson. */
static const char *pub_data_end(const char *p, const char *end)
{
	const char *data = p, *data_end;

	if (p == end || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		return NULL;	/* the parser takes the data without the space */
	if (*p == '"') {
		data_end = jstr_plain_end(p, end);
	} else {
		json_error_t err;
		data_end = jscan_check(p, (size_t)(end - p), JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK |
				       JSON_REJECT_DUPLICATES, &err) == 0 ? p + err.position : NULL;
		/* jansson counts its depth limit from the frame, one level above
		 * the data: data that reaches it alone is refused there (and
		 * reaching it takes 2047 brackets each way and a value) */
		if (data_end && data_end - data >= 2 * JSON_PARSER_MAX_DEPTH - 1 &&
		    depth_of(data, data_end) >= JSON_PARSER_MAX_DEPTH)
			return NULL;
	}
	if (!data_end || memchr(data, '\n', (size_t)(data_end - data)) || memchr(data, '\r', (size_t)(data_end - data)))
		return NULL;
	return data_end;
}

bool wire_read_pub(const char *text, size_t len, struct wire_pub *out)
{
	const char *p = text, *end = text + len;
	struct wire_pub r = {0};

	if (!take(&p, end, "{\"op\":\"pub\",\"topic\":\""))
		return false;
	r.topic = p;
	while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80)
		p++;	/* topics are ASCII: anything else is the parser's to refuse */
	r.topic_len = (size_t)(p - r.topic);
	if (p == end || *p != '"' || !take(&p, end, "\",\"data\":"))
		return false;
	r.data = p;
	if (!(p = pub_data_end(p, end)))
		return false;
	r.data_len = (size_t)(p - r.data);
	if (!take(&p, end, ",\"qos\":") || p == end || (*p != '0' && *p != '1'))
		return false;
	r.qos = *p++ - '0';
	if (take(&p, end, ",\"retain\":true"))
		r.retain = true;
	else if (!take(&p, end, ",\"retain\":false"))
		return false;
	if (take(&p, end, ",\"mid\":\"")) {
		const char *m_end = jstr_plain_end(p - 1, end);
		if (!m_end)
			return false;
		r.mid = p;
		r.mid_len = (size_t)(m_end - 1 - p);
		p = m_end;
	}
	if (take(&p, end, ",\"id\":")) {
		r.has_id = true;
		if (!(p = take_u64(p, end, 18, &r.id)))
			return false;
	}
	if (p + 1 != end || *p != '}')
		return false;
	*out = r;
	return true;
}

/* --- get's answer, and sub: the values as published ------------------------------ */

void wire_write_get_begin(struct sbuf *b, const char *id_json)
{
	sbuf_adds(b, "{\"op\":\"ok\",\"id\":");
	sbuf_adds(b, id_json);
	sbuf_adds(b, ",\"messages\":[");
}

void wire_write_get_item(struct sbuf *b, bool first, const struct wire_msg *m)
{
	char *w = sbuf_reserve(b, m->topic_len + m->data_len + WIRE_MSG_FIXED);

	w = first ? PUT_LIT(w, "{\"topic\":\"") : PUT_LIT(w, ",{\"topic\":\"");
	w = put(w, m->topic, m->topic_len);	/* checked [A-Za-z0-9_.-]: nothing to escape */
	w = PUT_LIT(w, "\",\"data\":");
	w = put(w, m->data, m->data_len);
	w = PUT_LIT(w, ",\"seq\":");
	w = put_decimal(w, m->seq);
	w = PUT_LIT(w, ",\"ts_ms\":");
	w = put_int64(w, m->ts_ms);
	sbuf_commit(b, PUT_LIT(w, "}"));
}

void wire_write_get_end(struct sbuf *b)
{
	sbuf_adds(b, "]}");
}

void wire_write_sub(struct sbuf *b, uint64_t id, const char *pattern, int qos)
{
	sbuf_adds(b, "{\"op\":\"sub\",\"id\":");
	sbuf_commit(b, put_decimal(sbuf_reserve(b, 20), id));
	sbuf_adds(b, ",\"topic\":\"");
	sbuf_adds(b, pattern);	/* checked [A-Za-z0-9_.*>-]: nothing to escape */
	sbuf_adds(b, qos ? "\",\"qos\":1}" : "\",\"qos\":0}");
}

/* --- ack: client -> cohortd ------------------------------------------------------ */

char *wire_write_ack(char *w, uint64_t seq)
{
	w = PUT_LIT(w, "{\"op\":\"ack\",\"seq\":");
	w = put_decimal(w, seq);
	return PUT_LIT(w, "}");
}

bool wire_read_ack(const char *text, size_t len, uint64_t *seq)
{
	const char *p = text, *end = text + len;

	/* at most 18 digits: every such number is a valid (positive) JSON integer */
	return take(&p, end, "{\"op\":\"ack\",\"seq\":") && (p = take_u64(p, end, 18, seq)) && *seq > 0 &&
	       jstr_lit(p, end, "}") == end;
}

/* --- ok with a seq: cohortd -> client, for a stored qos-1 pub -------------------- */

char *wire_write_ok_seq(char *w, int64_t id, uint64_t seq)
{
	w = PUT_LIT(w, "{\"op\":\"ok\",\"id\":");
	w = put_int64(w, id);
	w = PUT_LIT(w, ",\"seq\":");
	w = put_decimal(w, seq);
	return PUT_LIT(w, "}");
}

bool wire_read_ok_seq(const char *text, size_t len, uint64_t *id, uint64_t *seq)
{
	const char *p = text, *end = text + len;

	return take(&p, end, "{\"op\":\"ok\",\"id\":") && (p = take_u64(p, end, 18, id)) &&
	       (p = take_u64(jstr_lit(p, end, ",\"seq\":"), end, 18, seq)) && jstr_lit(p, end, "}") == end;
}

/* --- control: a lock's grant or renewal, and a status table ---------------------- */

char *wire_write_lock_ok(char *w, const uint64_t *token, int64_t expires_ms)
{
	w = PUT_LIT(w, "{\"ok\":true");
	if (token) {
		w = PUT_LIT(w, ",\"token\":");
		w = put_decimal(w, *token);
	}
	w = PUT_LIT(w, ",\"expires_ms\":");
	w = put_decimal(w, expires_ms > 0 ? (uint64_t)expires_ms : 0);
	return PUT_LIT(w, "}\n");
}

int wire_read_table(char *line, size_t len, char **end)
{
	size_t n;
	const char *v = jscan_member(line, len, "ok", &n);

	if (!v || n != 4 || memcmp(v, "true", 4) != 0 || !(v = jscan_member(line, len, "table", &n)))
		return 0;
	/* cohortd writes {"ok":true,"table":"..."}: anything after the table
	 * (a cut line, say) goes through the parser, which says what is wrong */
	if (v + n != line + len - 1 || line[len - 1] != '}')
		return 0;
	*end = jstr_unescape(line, v, n);	/* decoded in place: line is spoilt */
	return *end ? 1 : -1;
}
