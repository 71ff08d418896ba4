/* Unit tests of jscan_member (jscan.c): the raw text of a member, or NULL. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

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
