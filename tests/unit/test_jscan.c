/* Unit tests of jscan_member (jscan.c): the raw text of a member, or NULL. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* The member as a string, "(none)" when jscan_member says NULL. */
static const char *member(const char *text, const char *key)
{
	static char out[256];
	size_t len = strlen(text), n = 0;
	/* exactly len bytes, no NUL after them: ASan and valgrind see a read past the end */
	char *copy = malloc(len ? len : 1);
	memcpy(copy, text, len);
	const char *v = jscan_member(copy, len, key, &n);

	if (!v) {
		free(copy);
		return "(none)";
	}
	cr_assert_lt(n, sizeof(out));
	memcpy(out, v, n);
	out[n] = '\0';
	free(copy);
	return out;
}

Test(jscan, every_kind_of_value)
{
	const char *f = "{\"op\":\"pub\",\"s\":\"a\\\"b}\",\"n\":-1.5e+3,\"t\":true,\"z\":null,"
			"\"o\":{\"data\":[1,{\"x\":\"]\"}]},\"a\":[[],{}],\"data\":{\"k\":\"v\"}}";

	cr_assert_str_eq(member(f, "op"), "\"pub\"");
	cr_assert_str_eq(member(f, "s"), "\"a\\\"b}\"");
	cr_assert_str_eq(member(f, "n"), "-1.5e+3");
	cr_assert_str_eq(member(f, "t"), "true");
	cr_assert_str_eq(member(f, "z"), "null");
	cr_assert_str_eq(member(f, "o"), "{\"data\":[1,{\"x\":\"]\"}]}");
	cr_assert_str_eq(member(f, "a"), "[[],{}]");
	/* the top-level member, not the one nested in "o" */
	cr_assert_str_eq(member(f, "data"), "{\"k\":\"v\"}");
}

Test(jscan, white_space_is_kept_inside_and_dropped_around)
{
	cr_assert_str_eq(member(" { \"a\" : 1 ,\n \"data\"\t:  { \"k\" : [ 1 , 2 ] }  } ", "data"),
			 "{ \"k\" : [ 1 , 2 ] }");
	cr_assert_str_eq(member("{\"data\":7}", "data"), "7");
	cr_assert_str_eq(member("{\"data\":\"\\\\\"}", "data"), "\"\\\\\"");
}

Test(jscan, none)
{
	cr_assert_str_eq(member("{}", "data"), "(none)");
	cr_assert_str_eq(member("[{\"data\":1}]", "data"), "(none)");
	cr_assert_str_eq(member("\"data\"", "data"), "(none)");
	cr_assert_str_eq(member("{\"dat\":1,\"datum\":2}", "data"), "(none)");
	cr_assert_str_eq(member("{\"x\":\"\\\"data\\\":1\"}", "data"), "(none)");
	/* a key spelt with escapes is left to the parser */
	cr_assert_str_eq(member("{\"d\\u0061ta\":1}", "data"), "(none)");
	/* cut short: never read past the end */
	cr_assert_str_eq(member("{\"data\":\"abc", "data"), "(none)");
	cr_assert_str_eq(member("{\"data\":[1,2", "data"), "(none)");
	cr_assert_str_eq(member("{\"data\"", "data"), "(none)");
	cr_assert_str_eq(member("", "data"), "(none)");
}

/* jscan_check on exactly the bytes of TEXT (no NUL after them). */
static int check(const char *text, size_t flags)
{
	size_t len = strlen(text);
	char *copy = malloc(len ? len : 1);
	json_error_t err;

	memcpy(copy, text, len);
	int rc = jscan_check(copy, len, flags, &err);
	free(copy);
	return rc;
}

Test(jscan, numbers_of_any_size_are_json)
{
	static const char *const good[] = {
		"123456789012345678901234567890", "-123456789012345678901234567890", "1e400", "-1e-400",
		"1E+2", "-0.0", "0", "3.14159265358979323846264338327950288", "[1e400,{\"a\":-9e99999}]",
		"{\"n\":123456789012345678901234567890,\"s\":\"1e400 \\\" 01\"}", "\"a\\u0000b\"",
	};
	static const char *const bad[] = {
		"01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "1.5.3", "--1", "1e5.5",
		"[1e400,]", "{\"a\":1e400,\"a\":1}", "[1e400", "\"1e400", "1e400 x", "[-]", "[123456789012345678901234567890 1]",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		cr_assert_eq(check(good[i], JSON_DECODE_ANY | JSON_REJECT_DUPLICATES), 0, "%s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		cr_assert_eq(check(bad[i], JSON_DECODE_ANY | JSON_REJECT_DUPLICATES), -1, "%s", bad[i]);
	/* with JSON_DISABLE_EOF_CHECK: where the value ends, as json_loadb says */
	json_error_t err;
	const char *t = "[123456789012345678901234567890],\"qos\":1}";
	cr_assert_eq(jscan_check(t, strlen(t), JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &err), 0);
	cr_assert_eq(err.position, 32);
	/* a bare number too: the value ends where the number does */
	t = "-123456789012345678901234567890.5e+999,\"qos\":1}";
	cr_assert_eq(jscan_check(t, strlen(t), JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &err), 0);
	cr_assert_eq(err.position, 38, "%d", err.position);
}

Test(jscan, load_around_a_member_jansson_cannot_hold)
{
	const char *f = "{\"op\":\"pub\",\"data\":{\"n\":123456789012345678901234567890},\"id\":7}";
	json_error_t err;
	json_t *v = json_loadb(f, strlen(f), 0, &err);

	cr_assert_null(v);	/* what jansson alone says */
	v = jscan_load_around(f, strlen(f), "data", 0, &err);
	cr_assert_not_null(v);
	cr_assert(json_is_null(json_object_get(v, "data")));
	cr_assert_eq(json_integer_value(json_object_get(v, "id")), 7);
	json_decref(v);
	/* the rest must be JSON jansson holds: a big id is refused, said where */
	const char *g = "{\"op\":\"pub\",\"data\":{\"n\":123456789012345678901234567890},\"id\":123456789012345678901}";
	cr_assert_null(jscan_load_around(g, strlen(g), "data", 0, &err));
	cr_assert_str_eq(err.text, "too big integer");
	/* a mistake inside the member: its place in the whole text */
	const char *h = "{\"op\":\"pub\",\"data\":[123456789012345678901234567890,01]}";
	cr_assert_null(jscan_load_around(h, strlen(h), "data", 0, &err));
	cr_assert_eq(err.position, (int)(strstr(h, ",01") - h) + 2, "%d", err.position);
	/* no such member: the caller's error stands */
	err.position = 99;
	cr_assert_null(jscan_load_around("{\"id\":123456789012345678901}", 28, "data", 0, &err));
	cr_assert_eq(err.position, 99);
}

Test(jscan, items_and_compact)
{
	const char *a = " [ {\"t\":\"x\", \"d\": [1, 2]} ,7,\"s,]\" ,[] ] ";
	size_t at = 0, n;
	const char *want[] = {"{\"t\":\"x\", \"d\": [1, 2]}", "7", "\"s,]\"", "[]"}, *v;
	size_t i = 0;

	while ((v = jscan_item(a, strlen(a), &at, &n))) {
		cr_assert_lt(i, 4);
		cr_assert_eq(n, strlen(want[i]));
		cr_assert(memcmp(v, want[i], n) == 0, "%zu: %.*s", i, (int)n, v);
		i++;
	}
	cr_assert_eq(i, 4);
	at = 0;
	cr_assert_null(jscan_item("[]", 2, &at, &n));
	at = 0;
	cr_assert_null(jscan_item("{\"a\":1}", 7, &at, &n));

	const char *t = "{ \"a\" :\n 1.50 ,\r\n \"s\": \" keep  this \\\" \" }";
	char out[64];
	size_t len = jscan_compact(out, t, strlen(t));
	out[len] = '\0';
	cr_assert_str_eq(out, "{\"a\":1.50,\"s\":\" keep  this \\\" \"}");
}
