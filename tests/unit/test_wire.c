/*
 * The differential test of src/wire: every hand-written JSON reader and
 * writer of cohort (wire.h) against jansson, on the same inputs.  Each
 * input (chosen ones: valid and invalid, escapes, surrogates, numbers
 * beyond 64 bits, deep nesting, duplicate keys, the frames of a fixed
 * layout; then every prefix of them and random mutations) goes through
 * every reader, and whatever a reader takes must be what jansson reads
 * there, value for value; what a writer writes, jansson must read back as
 * the values written.  A reader may leave any input to jansson (that is
 * its "ask the parser"), but must never read one differently.
 */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "wire.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

static const char *const corpus[] = {
	/* requests of both sockets, flat and not */
	"{\"cmd\":\"lock.acquire\",\"name\":\"bench.client0\",\"ttl_ms\":30000,\"wait_ms\":0}",
	"{\"cmd\":\"log\",\"service\":\"a\",\"lines\":5,\"follow\":false,\"x\":null}",
	"  {  \"cmd\" :\t\"status\" ,\r\n \"json\" : true }  \n",
	"{\"cmd\":\"start\",\"targets\":[\"a\",\"@2\",\"all\"],\"wait\":true}",
	"{\"op\":\"hello\",\"id\":1,\"session\":\"s1\",\"token\":\"abc\"}",
	"{}", "[]", "{ }", "[1, [2, [3]], {\"a\": {}}]", "\"\"", "0", "-0", "null", "true",
	/* escapes and surrogates */
	"{\"a\":\"b\\n\\t\\\\\\\"\\/\\b\\f\\r\"}",
	"\"\\u00e9\\u20ac\\uD83D\\uDE00\"",		/* a pair */
	"\"\\ud83d\"",					/* a lone high surrogate */
	"\"\\ude00\"",					/* a lone low one */
	"\"\\ude00\\ud83d\"",				/* the pair reversed */
	"\"\\ud83d\\u0041\"",				/* high, then no low */
	"\"\\u0000\"", "{\"a\\u0000b\":1}", "\"a\\u0000b\"",
	"\"\\uZZZZ\"", "\"\\x41\"", "\"\\u12\"",
	"{\"caf\xc3\xa9\":\"\xe2\x82\xac \xf0\x9f\x98\x80\"}",
	"\"\xc3\"", "\"\xe2\x82\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"",
	"\"a\x01b\"", "\"tab\there\"", "\"\x7f\"",
	"{\"k\":\"st\\u0061tus\"}", "{\"st\\u0061tus\":1,\"b\":[1]}",
	/* numbers: of any size, and their spellings */
	"{\"n\":9223372036854775807}", "{\"n\":9223372036854775808}", "{\"n\":-9223372036854775808}",
	"{\"n\":-9223372036854775809}", "{\"n\":123456789012345678901234567890}",
	"{\"n\":1e400}", "{\"n\":-1e400}", "{\"n\":1.5e-400}", "{\"n\":1.50}", "{\"n\":1E+2}",
	"{\"n\":01}", "{\"n\":-}", "{\"n\":1.}", "{\"n\":.5}", "{\"n\":+1}", "{\"n\":0x10}",
	"[123456789012345678,1234567890123456789,12345678901234567890]",
	"99999999999999999999999", "1e309",
	/* duplicate keys */
	"{\"a\":1,\"a\":2}", "{\"cmd\":\"status\",\"cmd\":\"plan\"}", "{\"o\":{\"x\":1,\"x\":1}}",
	"{\"a\":1,\"\\u0061\":2}",
	/* not JSON */
	"", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "{'a':1}", "{\"a\":1} x",
	"{\"a\":tru}", "{\"a\":nul}", "nonsense", "{\"a\":\"unterminated}", "\"\\\"",
	/* the frames of a fixed layout */
	"{\"op\":\"msg\",\"topic\":\"a.b\",\"data\":{\"x\":[1,\"s\"]},\"seq\":7,\"qos\":1,\"ts_ms\":1795693514488,"
	"\"retained\":false,\"redelivered\":true}",
	"{\"op\":\"msg\",\"topic\":\"t\",\"data\":\"a,\\\"seq\\\":1\",\"seq\":1,\"qos\":0,\"ts_ms\":0,"
	"\"retained\":true,\"redelivered\":false}",
	"{\"op\":\"msg\",\"topic\":\"t\",\"data\":123456789012345678901234,\"seq\":2,\"qos\":0,\"ts_ms\":5,"
	"\"retained\":false,\"redelivered\":false}",
	"{\"op\":\"msg\",\"topic\":\"t\",\"data\":1,\"seq\":01,\"qos\":0,\"ts_ms\":5,"
	"\"retained\":false,\"redelivered\":false}",
	"{\"op\":\"msg\",\"topic\":\"t\",\"data\":1,\"seq\":1,\"qos\":2,\"ts_ms\":5,"
	"\"retained\":false,\"redelivered\":false}",
	"{\"op\":\"pub\",\"topic\":\"a.b\",\"data\":\"hello\",\"qos\":0,\"retain\":false}",
	"{\"op\":\"pub\",\"topic\":\"a.b\",\"data\":{\"n\":1e400},\"qos\":1,\"retain\":true,\"mid\":\"m-1\",\"id\":42}",
	"{\"op\":\"pub\",\"topic\":\"a\",\"data\":[1,2,{\"a\":null}],\"qos\":1,\"retain\":false,\"id\":0}",
	"{\"op\":\"pub\",\"topic\":\"a\",\"data\":{\"a\":1,\"a\":2},\"qos\":0,\"retain\":false}",
	"{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"x\\u0000y\",\"qos\":0,\"retain\":false}",
	"{\"op\":\"pub\",\"topic\":\"a\",\"data\": 1,\"qos\":0,\"retain\":false}",
	"{\"op\":\"pub\",\"topic\":\"a\",\"data\":1,\"qos\":0,\"retain\":false,\"mid\":\"\\u0041\"}",
	"{\"op\":\"pub\",\"topic\":\"a\",\"data\":1,\"qos\":0,\"retain\":false,\"id\":1234567890123456789}",
	"{\"op\":\"pub\",\"topic\":\"a\",\"data\":1,\"qos\":0,\"retain\":false,\"id\":01}",
	"{\"op\":\"pub\",\"topic\":\"a\",\"data\":1,\"qos\":0,\"retain\":false,\"qos\":1}",
	"{\"op\":\"ack\",\"seq\":17}", "{\"op\":\"ack\",\"seq\":0}", "{\"op\":\"ack\",\"seq\":01}",
	"{\"op\":\"ack\",\"seq\":123456789012345678}", "{\"op\":\"ack\",\"seq\":1234567890123456789}",
	"{\"op\":\"ack\",\"seq\":-1}", "{\"op\":\"ack\",\"seq\":1 }",
	"{\"op\":\"ok\",\"id\":3,\"seq\":9}", "{\"op\":\"ok\",\"id\":0,\"seq\":0}", "{\"op\":\"ok\",\"id\":-3,\"seq\":9}",
	"{\"ok\":true,\"table\":\"NAME  STATE\\nweb   \\u001b[32mrunning\\u001b[0m\\n\"}",
	"{\"ok\":true,\"table\":\"bad \\q escape\"}", "{\"ok\":true,\"table\":\"\\ud800\"}",
	"{\"ok\":false,\"error\":\"no\"}", "{\"ok\":true,\"table\":5}",
};

/* How many inputs each reader took (rather than leave them to jansson):
 * a reader that takes nothing would agree with anything. */
enum { R_JFLAT, R_JSCAN, R_MEMBER, R_JSTR, R_MSG, R_PUB, R_ACK, R_OK, R_TABLE, R_COUNT };
static size_t taken[R_COUNT];

/* --- what jansson reads -------------------------------------------------------- */

static json_t *jansson(const char *text, size_t n, size_t flags)
{
	return json_loadb(text, n, flags | JSON_REJECT_DUPLICATES, NULL);
}

static char *dump(const json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
}

static void same_value(const json_t *a, const json_t *b, const char *what, const char *text, size_t n)
{
	if (json_equal(a, b))
		return;
	char *x = dump(a), *y = dump(b);
	cr_assert_fail("%s: read %s, jansson %s, in %.*s", what, x ? x : "?", y ? y : "?", (int)n, text);
}

/* The raw JSON text T (N bytes) as jansson reads it alone: it must. */
static json_t *raw_value(const char *t, size_t n, const char *what, const char *text, size_t len)
{
	json_t *v = jansson(t, n, JSON_DECODE_ANY);
	cr_assert(v, "%s: %.*s is not JSON to jansson, in %.*s", what, (int)n, t, (int)len, text);
	return v;
}

/* --- each reader on one input ---------------------------------------------------- */

static void check_jflat(const char *text, size_t n, json_t *ref)
{
	json_t *v = jflat_load(text, n);
	if (!v)
		return;
	cr_assert(ref, "jflat read what jansson refuses: %.*s", (int)n, text);
	taken[R_JFLAT]++;
	same_value(v, ref, "jflat", text, n);
	json_decref(v);
}

/* jscan_check accepts what jansson accepts, and beyond it only numbers
 * jansson cannot hold and \u0000 (JSON all the same). */
static void check_jscan_check(const char *text, size_t n, json_t *ref)
{
	json_error_t err, jerr;
	int rc = jscan_check(text, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);

	taken[R_JSCAN] += rc == 0;
	if (ref) {
		cr_assert_eq(rc, 0, "jscan_check refuses what jansson takes: %.*s (%s)", (int)n, text, err.text);
		return;
	}
	if (rc == 0) {
		json_t *v = json_loadb(text, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
		cr_assert_null(v);
		cr_assert(strstr(jerr.text, "too big") || strstr(jerr.text, "overflow") || strstr(jerr.text, "\\u0000"),
			  "jscan_check takes %.*s, which jansson refuses for more than its number range: %s",
			  (int)n, text, jerr.text);
	}
}

/* Every member's raw text (jscan_member) and every item's (jscan_item),
 * compacted too, is the value jansson read there. */
static void check_jscan_members(const char *text, size_t n, json_t *ref)
{
	const char *key;
	json_t *v;
	size_t len, at = 0, i = 0;

	if (json_is_object(ref)) {
		json_object_foreach(ref, key, v) {
			const char *raw = jscan_member(text, n, key, &len);
			if (!raw)	/* a key spelt with escapes: left to the parser */
				continue;
			taken[R_MEMBER]++;
			json_t *got = raw_value(raw, len, "jscan_member", text, n);
			same_value(got, v, "jscan_member", text, n);
			char *small = malloc(len + 1);
			size_t m = jscan_compact(small, raw, len);
			json_t *c = raw_value(small, m, "jscan_compact", text, n);
			same_value(c, v, "jscan_compact", text, n);
			json_decref(c);
			json_decref(got);
			free(small);
		}
	}
	if (json_is_array(ref)) {
		const char *item;
		while ((item = jscan_item(text, n, &at, &len))) {
			cr_assert_lt(i, json_array_size(ref), "jscan_item: more items than jansson in %.*s", (int)n, text);
			json_t *got = raw_value(item, len, "jscan_item", text, n);
			same_value(got, json_array_get(ref, i++), "jscan_item", text, n);
			json_decref(got);
		}
		cr_assert_eq(i, json_array_size(ref), "jscan_item: fewer items than jansson in %.*s", (int)n, text);
	}
}

/* A string: jstr_unescape and jstr_plain_end read its value as jansson
 * does, and refuse it where jansson does. */
static void check_jstr(const char *text, size_t n)
{
	json_t *ref = json_loadb(text, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	char *w = malloc(n + 1);
	char *end = jstr_unescape(w, text, n);

	if (!json_is_string(ref)) {
		cr_assert_null(end, "jstr_unescape reads %.*s, which is no JSON string to jansson", (int)n, text);
	} else {
		if (!end) {
			char hex[1024] = "";
			for (size_t i = 0; i < n && i < 300; i++)
				snprintf(hex + 3 * i, 4, "%02x ", (unsigned char)text[i]);
			cr_assert_fail("jstr_unescape refuses the JSON string %.*s (%s)", (int)n, text, hex);
		}
		taken[R_JSTR]++;
		cr_assert(end - w == (ptrdiff_t)json_string_length(ref) &&
			  memcmp(w, json_string_value(ref), json_string_length(ref)) == 0,
			  "jstr_unescape reads %.*s otherwise than jansson", (int)n, text);
	}
	const char *plain = n ? jstr_plain_end(text, text + n) : NULL;
	if (plain == text + n) {
		cr_assert(json_is_string(ref), "jstr_plain_end takes %.*s", (int)n, text);
		cr_assert(json_string_length(ref) == n - 2 && memcmp(json_string_value(ref), text + 1, n - 2) == 0,
			  "jstr_plain_end: %.*s is not as plain as that", (int)n, text);
	}
	json_decref(ref);
	free(w);
}

/* The bus's and the client's slow path for a frame: jansson, else the
 * frame with its "data" left to text (numbers of any size are JSON). */
static json_t *frame_value(const char *text, size_t n)
{
	json_error_t err;
	json_t *v = jansson(text, n, 0);

	return v ? v : jscan_load_around(text, n, "data", JSON_REJECT_DUPLICATES, &err);
}

static void same_int(json_t *o, const char *key, long long want, const char *what, const char *text, size_t n)
{
	json_t *v = json_object_get(o, key);
	cr_assert(json_is_integer(v) && json_integer_value(v) == want, "%s: \"%s\" is %lld, jansson says otherwise in %.*s",
		  what, key, want, (int)n, text);
}

static void same_bool(json_t *o, const char *key, bool want, const char *what, const char *text, size_t n)
{
	json_t *v = json_object_get(o, key);
	cr_assert(json_is_boolean(v) && json_is_true(v) == want, "%s: \"%s\" differs in %.*s", what, key, (int)n, text);
}

static void same_str(json_t *o, const char *key, const char *s, size_t len, const char *what, const char *text,
		     size_t n)
{
	json_t *v = json_object_get(o, key);
	cr_assert(json_is_string(v) && json_string_length(v) == len && memcmp(json_string_value(v), s, len) == 0,
		  "%s: \"%s\" differs in %.*s", what, key, (int)n, text);
}

/* The data a frame reader took (D, DLEN bytes) is the frame's "data". */
static void same_data(json_t *frame, const char *d, size_t dlen, const char *what, const char *text, size_t n)
{
	json_t *data = json_object_get(frame, "data");
	if (json_is_null(data) && !(dlen == 4 && memcmp(d, "null", 4) == 0)) {
		/* jansson could not hold it: the text is what the peer receives */
		size_t rn;
		const char *raw = jscan_member(text, n, "data", &rn);
		cr_assert(raw && rn == dlen && memcmp(raw, d, dlen) == 0, "%s: data differs in %.*s", what, (int)n, text);
		cr_assert_eq(jscan_check(d, dlen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL), 0);
		return;
	}
	json_t *got = raw_value(d, dlen, what, text, n);
	same_value(got, data, what, text, n);
	json_decref(got);
}

static void check_frames(const char *text, size_t n)
{
	struct wire_msg m;
	struct wire_pub p;
	uint64_t a, b;
	json_t *f;

	/* wire_read_msg takes the data on trust (wire.h): cohortd checked it */
	if (wire_read_msg(text, n, &m) && jscan_check(m.data, m.data_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL) == 0) {
		taken[R_MSG]++;
		cr_assert((f = frame_value(text, n)), "wire_read_msg takes %.*s, jansson does not", (int)n, text);
		same_str(f, "op", "msg", 3, "wire_read_msg", text, n);
		same_str(f, "topic", m.topic, m.topic_len, "wire_read_msg", text, n);
		same_data(f, m.data, m.data_len, "wire_read_msg", text, n);
		same_int(f, "seq", (long long)m.seq, "wire_read_msg", text, n);
		same_int(f, "qos", m.qos, "wire_read_msg", text, n);
		same_int(f, "ts_ms", m.ts_ms, "wire_read_msg", text, n);
		same_bool(f, "retained", m.retained, "wire_read_msg", text, n);
		same_bool(f, "redelivered", m.redelivered, "wire_read_msg", text, n);
		cr_assert_eq(json_object_size(f), 8);
		json_decref(f);
	}
	if (wire_read_pub(text, n, &p)) {
		taken[R_PUB]++;
		cr_assert((f = frame_value(text, n)), "wire_read_pub takes %.*s, jansson does not", (int)n, text);
		same_str(f, "op", "pub", 3, "wire_read_pub", text, n);
		same_str(f, "topic", p.topic, p.topic_len, "wire_read_pub", text, n);
		same_data(f, p.data, p.data_len, "wire_read_pub", text, n);
		same_int(f, "qos", p.qos, "wire_read_pub", text, n);
		same_bool(f, "retain", p.retain, "wire_read_pub", text, n);
		if (p.mid)
			same_str(f, "mid", p.mid, p.mid_len, "wire_read_pub", text, n);
		cr_assert_eq(p.mid != NULL, json_object_get(f, "mid") != NULL);
		if (p.has_id)
			same_int(f, "id", (long long)p.id, "wire_read_pub", text, n);
		cr_assert_eq(p.has_id, json_object_get(f, "id") != NULL);
		json_decref(f);
	}
	if (wire_read_ack(text, n, &a)) {
		taken[R_ACK]++;
		cr_assert((f = jansson(text, n, 0)), "wire_read_ack takes %.*s, jansson does not", (int)n, text);
		same_str(f, "op", "ack", 3, "wire_read_ack", text, n);
		same_int(f, "seq", (long long)a, "wire_read_ack", text, n);
		cr_assert_eq(json_object_size(f), 2);
		json_decref(f);
	}
	if (wire_read_ok_seq(text, n, &a, &b)) {
		taken[R_OK]++;
		cr_assert((f = jansson(text, n, 0)), "wire_read_ok_seq takes %.*s, jansson does not", (int)n, text);
		same_str(f, "op", "ok", 2, "wire_read_ok_seq", text, n);
		same_int(f, "id", (long long)a, "wire_read_ok_seq", text, n);
		same_int(f, "seq", (long long)b, "wire_read_ok_seq", text, n);
		cr_assert_eq(json_object_size(f), 3);
		json_decref(f);
	}
	char *line = malloc(n + 1), *end;
	memcpy(line, text, n);
	line[n] = '\0';
	int t = wire_read_table(line, n, &end);
	f = jansson(text, n, 0);
	if (t == 1) {
		taken[R_TABLE]++;
		cr_assert(f, "wire_read_table takes %.*s, jansson does not", (int)n, text);
		same_str(f, "table", line, (size_t)(end - line), "wire_read_table", text, n);
	} else if (t == -1) {
		cr_assert(!json_is_string(json_object_get(f, "table")), "wire_read_table refuses the table of %.*s",
			  (int)n, text);
	}
	json_decref(f);
	free(line);
}

/* Every reader on TEXT (exactly N bytes, in a copy of its own so that
 * ASan and valgrind see a read past the end). */
static void check_all(const char *text, size_t n)
{
	char *copy = malloc(n ? n : 1);
	memcpy(copy, text, n);
	json_t *ref = jansson(copy, n, JSON_DECODE_ANY);

	check_jflat(copy, n, ref);
	check_jscan_check(copy, n, ref);
	check_jscan_members(copy, n, ref);
	if (n >= 2 && copy[0] == '"' && copy[n - 1] == '"')	/* jstr reads a string token alone */
		check_jstr(copy, n);
	check_frames(copy, n);
	json_decref(ref);
	free(copy);
}

Test(wire, the_readers_agree_with_jansson_on_the_corpus)
{
	for (size_t i = 0; i < LEN(corpus); i++)
		check_all(corpus[i], strlen(corpus[i]));
	for (int r = 0; r < R_COUNT; r++)
		cr_assert_gt(taken[r], 0, "reader %d took no input of the corpus: it is not tested", r);
}

Test(wire, the_readers_agree_with_jansson_on_every_prefix)
{
	for (size_t i = 0; i < LEN(corpus); i++)
		for (size_t n = 0; n < strlen(corpus[i]); n++)
			check_all(corpus[i], n);
}

/* ROUNDS random edits of the first N inputs of the corpus, from an
 * alphabet rich in what JSON cares about; a fixed seed, so a failure
 * repeats. */
static void mutants(size_t n_inputs, int rounds, unsigned seed)
{
	static const char alphabet[] = "{}[]\",:\\ \t\r\n-+.eE0123456789truefalsnu\x01\x7f\xc3\xa9\xed\xa0\xf0\x9f\x80\xff";
	char buf[512];

	for (int round = 0; round < rounds; round++) {
		const char *src = corpus[(size_t)rand_r(&seed) % n_inputs];
		size_t n = strlen(src);
		if (n >= sizeof(buf) - 4)
			continue;
		memcpy(buf, src, n);
		for (int edits = 1 + rand_r(&seed) % 3; edits > 0; edits--) {
			size_t at = n ? (size_t)rand_r(&seed) % n : 0;
			char c = alphabet[(size_t)rand_r(&seed) % (sizeof(alphabet) - 1)];
			switch (rand_r(&seed) % 3) {
			case 0:	/* replace */
				if (n)
					buf[at] = c;
				break;
			case 1:	/* insert */
				memmove(buf + at + 1, buf + at, n - at);
				buf[at] = c;
				n++;
				break;
			default:	/* delete */
				if (n) {
					memmove(buf + at, buf + at + 1, n - at - 1);
					n--;
				}
			}
		}
		check_all(buf, n);
	}
}

Test(wire, the_readers_agree_with_jansson_on_mutations)
{
	mutants(LEN(corpus), 40000, 15);
	/* enough mutants stay readable for the comparison to mean something */
	cr_assert_gt(taken[R_PUB] + taken[R_MSG] + taken[R_ACK], 100, "frames read: pub %zu, msg %zu, ack %zu",
		     taken[R_PUB], taken[R_MSG], taken[R_ACK]);
}

/* The flat requests (jflat's, the control socket's every line) more. */
Test(wire, the_flat_request_reader_agrees_with_jansson_on_mutations)
{
	mutants(5, 60000, 12345);
	cr_assert_gt(taken[R_JFLAT], 1000, "the mutations should leave many lines readable: %zu", taken[R_JFLAT]);
}

/* NUL bytes inside: every reader leaves them to jansson, or agrees. */
Test(wire, embedded_nul)
{
	static const char key[] = "{\"a\0b\":1}", val[] = "{\"a\":\"x\0y\"}", after[] = "{\"a\":1}\0",
			  ack[] = "{\"op\":\"ack\",\"seq\":1}\0";

	check_all(key, sizeof(key) - 1);
	check_all(val, sizeof(val) - 1);
	check_all(after, sizeof(after) - 1);
	check_all(ack, sizeof(ack) - 1);
	cr_assert_null(jflat_load(after, sizeof(after) - 1));
}

/* Deep nesting: jansson's limit (JSON_PARSER_MAX_DEPTH) counted from the
 * frame, which holds the data one level down. */
Test(wire, nesting_at_jansson_depth_limit)
{
	for (int depth = JSON_PARSER_MAX_DEPTH - 2; depth <= JSON_PARSER_MAX_DEPTH + 1; depth++) {
		struct sbuf b = {0};
		sbuf_adds(&b, "{\"op\":\"pub\",\"topic\":\"a\",\"data\":");
		for (int i = 0; i < depth; i++)
			sbuf_addc(&b, '[');
		sbuf_addc(&b, '1');
		for (int i = 0; i < depth; i++)
			sbuf_addc(&b, ']');
		sbuf_adds(&b, ",\"qos\":0,\"retain\":false}");
		check_all(b.buf, b.len);
		struct wire_pub p;
		json_t *ref = jansson(b.buf, b.len, 0);
		cr_assert_eq(wire_read_pub(b.buf, b.len, &p), ref != NULL, "depth %d", depth);
		json_decref(ref);
		size_t head = strlen("{\"op\":\"pub\",\"topic\":\"a\",\"data\":");
		size_t tail = strlen(",\"qos\":0,\"retain\":false}");
		check_all(b.buf + head, b.len - head - tail);	/* the data alone */
		sbuf_free(&b);
	}
}

/* --- the writers: what they write, jansson reads as the values written,
 * and the reader of the layout reads it back --------------------------------------- */

static const char *const datas[] = {
	"1", "\"x\"", "\"a,\\\"seq\\\":1\"", "{\"a\":[1,2,{\"b\":null}]}", "123456789012345678901234567890",
	"[]", "-0.5e-3", "\"\\ud83d\\ude00\"", "null", "true",
};

Test(wire, msg_writer_and_reader_round_trip_through_jansson)
{
	char buf[1024];

	for (size_t i = 0; i < LEN(datas); i++)
		for (int bits = 0; bits < 8; bits++) {
			struct wire_msg m = {.topic = "stack.a-b_c", .topic_len = 11, .data = datas[i],
					     .data_len = strlen(datas[i]), .seq = 1 + i * 1000003, .qos = bits & 1,
					     .ts_ms = bits & 2 ? 1795693514488 : -5, .retained = bits & 2,
					     .redelivered = bits & 4};
			char *end = wire_write_msg(buf, &m);
			cr_assert_leq((size_t)(end - buf), m.topic_len + m.data_len + WIRE_MSG_FIXED);
			struct wire_msg r;
			cr_assert(wire_read_msg(buf, (size_t)(end - buf), &r), "%.*s", (int)(end - buf), buf);
			cr_assert(r.topic_len == m.topic_len && r.data_len == m.data_len && r.seq == m.seq &&
				  r.qos == m.qos && r.ts_ms == (m.ts_ms > 0 ? m.ts_ms : 0) && r.retained == m.retained &&
				  r.redelivered == m.redelivered, "%.*s", (int)(end - buf), buf);
			check_all(buf, (size_t)(end - buf));	/* and jansson reads the same */
		}
}

Test(wire, pub_writer_and_reader_round_trip_through_jansson)
{
	static const char *const mids[] = {NULL, "m-1", "with \"quotes\" and \\ and \n", "caf\xc3\xa9", "bad \xff"};

	for (size_t i = 0; i < LEN(datas); i++)
		for (size_t k = 0; k < LEN(mids); k++) {
			struct wire_pub p = {.topic = "a.b", .topic_len = 3, .data = datas[i], .data_len = strlen(datas[i]),
					     .qos = (int)(k & 1), .retain = i & 1, .mid = mids[k],
					     .mid_len = mids[k] ? strlen(mids[k]) : 0, .has_id = k > 1, .id = 77 * k};
			struct sbuf b = {0};
			wire_write_pub(&b, &p);
			check_all(b.buf, b.len);
			json_t *f = frame_value(b.buf, b.len);
			cr_assert(f, "jansson refuses the pub written: %s", b.buf);
			if (mids[k] && utf8_valid(mids[k], strlen(mids[k])))
				same_str(f, "mid", mids[k], strlen(mids[k]), "wire_write_pub", b.buf, b.len);
			else if (mids[k])	/* no JSON string: cohortd refuses it, as before */
				cr_assert(json_is_null(json_object_get(f, "mid")));
			/* the reader takes plain strings only (no escapes, UTF-8):
			 * the rest is jansson's */
			struct wire_pub r;
			const char *d = datas[i], *d_end = d + strlen(d);
			bool plain = (!mids[k] || k == 1 || k == 3) && (d[0] != '"' || jstr_plain_end(d, d_end) == d_end);
			cr_assert_eq(wire_read_pub(b.buf, b.len, &r), plain, "%s", b.buf);
			json_decref(f);
			sbuf_free(&b);
		}
}

Test(wire, small_frames_round_trip_through_jansson)
{
	static const uint64_t seqs[] = {1, 9, 10, 123456789, 999999999999999999ULL};
	static const int64_t ids[] = {0, 1, -1, 42, INT64_MAX, INT64_MIN};
	char buf[WIRE_OK_SEQ_MAX + WIRE_ACK_MAX + WIRE_LOCK_OK_MAX];
	uint64_t a, b;

	for (size_t i = 0; i < LEN(seqs); i++) {
		char *end = wire_write_ack(buf, seqs[i]);
		cr_assert_leq((size_t)(end - buf), WIRE_ACK_MAX);
		cr_assert(wire_read_ack(buf, (size_t)(end - buf), &a) && a == seqs[i]);
		check_all(buf, (size_t)(end - buf));
	}
	for (size_t i = 0; i < LEN(ids); i++) {
		char *end = wire_write_ok_seq(buf, ids[i], seqs[i % LEN(seqs)]);
		cr_assert_leq((size_t)(end - buf), WIRE_OK_SEQ_MAX);
		json_t *f = jansson(buf, (size_t)(end - buf), 0);
		cr_assert(f, "%.*s", (int)(end - buf), buf);
		same_int(f, "id", ids[i], "wire_write_ok_seq", buf, (size_t)(end - buf));
		json_decref(f);
		check_all(buf, (size_t)(end - buf));
		bool small = ids[i] >= 0 && ids[i] < 1000000000000000000LL;
		cr_assert_eq(wire_read_ok_seq(buf, (size_t)(end - buf), &a, &b), small, "%.*s", (int)(end - buf), buf);
	}
	for (int with_token = 0; with_token < 2; with_token++) {
		uint64_t token = 123456789;
		char *end = wire_write_lock_ok(buf, with_token ? &token : NULL, 1795693514488);
		cr_assert_leq((size_t)(end - buf), WIRE_LOCK_OK_MAX);
		cr_assert_eq(end[-1], '\n');
		json_t *f = jansson(buf, (size_t)(end - buf - 1), 0);
		cr_assert(f && json_is_true(json_object_get(f, "ok")), "%.*s", (int)(end - buf), buf);
		same_int(f, "expires_ms", 1795693514488, "wire_write_lock_ok", buf, (size_t)(end - buf));
		if (with_token)
			same_int(f, "token", 123456789, "wire_write_lock_ok", buf, (size_t)(end - buf));
		cr_assert_eq(json_object_size(f), 2u + (size_t)with_token);
		json_decref(f);
	}
}

/* jstr_escape writes a string jansson reads back as it was (bytes that
 * are not UTF-8 as U+FFFD), and the status table read back is the same. */
Test(wire, escaped_strings_and_tables_round_trip_through_jansson)
{
	static const char *const strs[] = {
		"", "plain", "quote \" backslash \\ slash /", "\x01\x02\x1f\x7f", "tab\tline\nret\r",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\x1b[32mrunning\x1b[0m", "\xc3", "\xed\xa0\x80",
	};
	char out[256], line[512];

	for (size_t i = 0; i < LEN(strs); i++) {
		size_t n = strlen(strs[i]);
		out[0] = '"';
		char *end = jstr_escape(out + 1, strs[i], n);
		*end++ = '"';
		json_t *v = jansson(out, (size_t)(end - out), JSON_DECODE_ANY);
		cr_assert(json_is_string(v), "jansson refuses %.*s", (int)(end - out), out);
		if (utf8_valid(strs[i], n))
			cr_assert(json_string_length(v) == n && memcmp(json_string_value(v), strs[i], n) == 0,
				  "escaped %s reads back otherwise", strs[i]);
		json_decref(v);
		check_all(out, (size_t)(end - out));
		int m = snprintf(line, sizeof(line), "{\"ok\":true,\"table\":%.*s}", (int)(end - out), out);
		check_all(line, (size_t)m);
		char *tend;
		cr_assert_eq(wire_read_table(line, (size_t)m, &tend), 1, "%s", line);
	}
}

/* get's answer (written by bus_ops, read by libcohort and cohortctl with
 * jscan), sub (written by libcohort), a delivery (cohortctl sub --json). */
Test(wire, get_sub_and_delivery_writers_agree_with_jansson)
{
	struct sbuf b = {0};
	char line[1024];

	wire_write_get_begin(&b, "\"req-1\"");
	for (size_t i = 0; i < LEN(datas); i++) {
		struct wire_msg m = {.topic = "t.x", .topic_len = 3, .data = datas[i], .data_len = strlen(datas[i]),
				     .seq = i + 1, .ts_ms = 1000 * (int64_t)i};
		wire_write_get_item(&b, i == 0, &m);
	}
	wire_write_get_end(&b);
	json_t *f = frame_value(b.buf, b.len);
	if (!f)	/* numbers beyond jansson: as the client reads it */
		f = jscan_load_around(b.buf, b.len, "messages", 0, NULL);
	cr_assert(f, "%s", b.buf);
	same_str(f, "id", "req-1", 5, "wire_write_get", b.buf, b.len);
	size_t n, at = 0, i = 0, dn;
	const char *list = jscan_member(b.buf, b.len, "messages", &n), *item;
	cr_assert(list);
	while ((item = jscan_item(list, n, &at, &dn))) {
		json_t *o = jansson(item, dn, 0);
		json_t *ref = o ? o : jscan_load_around(item, dn, "data", JSON_REJECT_DUPLICATES, NULL);
		cr_assert(ref, "%.*s", (int)dn, item);
		same_data(ref, datas[i], strlen(datas[i]), "wire_write_get_item", item, dn);
		same_int(ref, "seq", (long long)i + 1, "wire_write_get_item", item, dn);
		same_int(ref, "ts_ms", 1000 * (long long)i, "wire_write_get_item", item, dn);
		same_str(ref, "topic", "t.x", 3, "wire_write_get_item", item, dn);
		json_decref(ref);
		i++;
	}
	cr_assert_eq(i, LEN(datas));
	json_decref(f);
	sbuf_free(&b);

	wire_write_sub(&b, 12, "stack.>", 1);
	f = jansson(b.buf, b.len, 0);
	cr_assert(f, "%s", b.buf);
	same_str(f, "op", "sub", 3, "wire_write_sub", b.buf, b.len);
	same_str(f, "topic", "stack.>", 7, "wire_write_sub", b.buf, b.len);
	same_int(f, "id", 12, "wire_write_sub", b.buf, b.len);
	same_int(f, "qos", 1, "wire_write_sub", b.buf, b.len);
	json_decref(f);
	sbuf_free(&b);

	struct wire_msg m = {.topic = "a", .topic_len = 1, .data = "{\"k\":[true]}", .data_len = 12, .seq = 5,
			     .qos = 1, .ts_ms = 7, .retained = true};
	char *end = wire_write_delivery(line, &m);
	f = jansson(line, (size_t)(end - line), 0);
	cr_assert(f, "%.*s", (int)(end - line), line);
	same_data(f, m.data, m.data_len, "wire_write_delivery", line, (size_t)(end - line));
	same_bool(f, "retained", true, "wire_write_delivery", line, (size_t)(end - line));
	same_bool(f, "redelivered", false, "wire_write_delivery", line, (size_t)(end - line));
	cr_assert_null(json_object_get(f, "op"));
	cr_assert_eq(json_object_size(f), 7);
	json_decref(f);
}

/* The $sys documents (sys_topics.c) are what jansson made of the same
 * fields before: equal as JSON values, for names and reasons with quotes,
 * backslashes, control characters and non-ASCII text. */
Test(wire, sys_service_documents_agree_with_jansson)
{
	static const char *const reasons[] = {"", "exited with code 1; restart in 2s (failure 3)",
					      "said \"no\" \\ then\ttab\nnewline \x01", "caf\xc3\xa9 \xe2\x82\xac"};
	const char *const reqs[] = {"db", "cache@2"};
	const char *const afters[] = {"migrate"};

	for (size_t i = 0; i < LEN(reasons); i++) {
		for (int variant = 0; variant < 3; variant++) {
			struct wire_svc_state st = {
				.name = "web@1", .state = "running", .reason = reasons[i], .pid = variant ? 4242 : 0,
				.since_ms = 1796375101336, .restarts = (int)i, .wanted_up = variant != 1,
				.phase = variant == 2 ? -1 : 3, .requires = reqs, .nrequires = variant == 1 ? 0 : 2,
				.after = afters, .nafter = variant == 2 ? 1 : 0,
				.log = variant == 0, .has_exit = variant != 0,
				.exit_signal = variant == 2 ? "KILL" : NULL, .exit_code = 7,
			};
			struct sbuf b = {0};
			wire_write_svc_state(&b, &st);
			json_t *got = jansson(b.buf, b.len, JSON_REJECT_DUPLICATES);
			cr_assert(got, "%s", b.buf);
			json_t *req = json_array(), *aft = json_array();
			for (size_t k = 0; k < st.nrequires; k++)
				json_array_append_new(req, json_string(reqs[k]));
			for (size_t k = 0; k < st.nafter; k++)
				json_array_append_new(aft, json_string(afters[k]));
			json_t *want = json_pack("{s:s,s:s,s:o,s:I,s:s,s:i,s:s,s:o,s:o,s:o,s:b}", "name", st.name, "state",
						 st.state, "pid", st.pid ? json_integer(st.pid) : json_null(),
						 "since_ms", (json_int_t)st.since_ms, "reason", st.reason, "restarts", st.restarts,
						 "wanted", st.wanted_up ? "up" : "down", "phase",
						 st.phase >= 0 ? json_integer(st.phase) : json_null(), "requires", req,
						 "after", aft, "log", st.log);
			cr_assert(want);
			if (st.has_exit)
				json_object_set_new(want, "last_exit", st.exit_signal
						    ? json_pack("{s:s}", "signal", st.exit_signal)
						    : json_pack("{s:i}", "code", st.exit_code));
			cr_assert(json_equal(got, want), "%s", b.buf);
			json_decref(got);
			json_decref(want);
			sbuf_free(&b);

			struct wire_svc_event ev = {.name = "web@1", .from = "starting", .to = "backoff",
						    .reason = reasons[i], .pid = st.pid, .restarts = 3,
						    .ts_ms = 1796375101337};
			wire_write_svc_event(&b, &ev);
			got = jansson(b.buf, b.len, JSON_REJECT_DUPLICATES);
			cr_assert(got, "%s", b.buf);
			want = json_pack("{s:s,s:s,s:s,s:s,s:o,s:i,s:I}", "name", ev.name, "from", ev.from, "to", ev.to,
					 "reason", ev.reason, "pid", ev.pid ? json_integer(ev.pid) : json_null(),
					 "restarts", ev.restarts, "ts_ms", (json_int_t)ev.ts_ms);
			cr_assert(json_equal(got, want), "%s", b.buf);
			json_decref(got);
			json_decref(want);
			sbuf_free(&b);
		}
	}
}
