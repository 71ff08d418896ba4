/* Unit tests of jflat.c: what it reads (the flat requests), and what it
 * leaves to jansson.  That whatever it reads jansson reads the same, on
 * every prefix and on random mutations, is test_wire.c's to check, with
 * every other reader of src/wire. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* jflat_load of exactly N bytes (a copy with nothing after it, so that
 * ASan and valgrind see a read past the end), checked against jansson.
 * Returns whether jflat read it. */
static bool agrees(const char *text, size_t n)
{
	char *copy = malloc(n ? n : 1);
	memcpy(copy, text, n);
	json_t *fast = jflat_load(copy, n);
	json_t *ref = json_loadb(copy, n, JSON_REJECT_DUPLICATES, NULL);
	bool read = fast != NULL;

	if (fast) {
		cr_assert(ref, "jflat read what jansson refuses: %.*s", (int)n, text);
		char *a = json_dumps(fast, JSON_COMPACT | JSON_ENCODE_ANY);
		char *b = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
		cr_assert_str_eq(a, b, "jflat and jansson differ on %.*s", (int)n, text);
		free(a);
		free(b);
	}
	json_decref(fast);
	json_decref(ref);
	free(copy);
	return read;
}

static const char *const flat[] = {
	"{\"cmd\":\"lock.acquire\",\"name\":\"bench.client0\",\"ttl_ms\":30000,\"wait_ms\":0}",
	"{\"cmd\":\"lock.release\",\"name\":\"db\",\"token\":123456789012345678}",
	"  {  \"cmd\" :\t\"status\" ,\r\n \"json\" : true , \"x\":false,\"y\":null }  \n",
	"{}",
	"{ }",
	"{\"n\":-0}",
	"{\"n\":-42,\"m\":0}",
	"{\"caf\xc3\xa9\":\"\xe2\x82\xac \xf0\x9f\x98\x80\"}",
	"{\"del\":\"\x7f\"}",
	"{\"op\":\"hello\",\"id\":1,\"session\":\"s1\",\"token\":\"abc\"}",
};

Test(jflat, reads_flat_requests_as_jansson_does)
{
	for (size_t i = 0; i < sizeof(flat) / sizeof(flat[0]); i++)
		cr_assert(agrees(flat[i], strlen(flat[i])), "not read by jflat: %s", flat[i]);
}

/* Valid JSON outside jflat's grammar, and JSON that is not valid: both go
 * to jansson (agrees() checks that jflat said nothing of them). */
static const char *const others[] = {
	"{\"a\":\"b\\n\"}",			/* an escape */
	"{\"a\\u0041\":1}",
	"{\"a\":1.5}",
	"{\"a\":1e3}",
	"{\"a\":1E3}",
	"{\"a\":-1.0}",
	"{\"a\":1234567890123456789}",	/* 19 digits */
	"{\"a\":99999999999999999999999}",
	"{\"a\":[1,2]}",
	"{\"a\":{\"b\":1}}",
	"[1]",
	"\"s\"",
	"1",
	"{\"a\":1,\"a\":2}",			/* a duplicate key */
	"{\"a\":01}",
	"{\"a\":-}",
	"{\"a\":+1}",
	"{\"a\":tru}",
	"{\"a\":truex}",
	"{\"a\":nulll}",
	"{\"a\":1,}",
	"{,}",
	"{\"a\"}",
	"{\"a\":}",
	"{\"a\" 1}",
	"{a:1}",
	"{'a':1}",
	"{\"a\":1}x",
	"{\"a\":1}{}",
	"{\"a\":1",
	"{\"a\":\"b",
	"{\"a\":\"\x01\"}",			/* a control character */
	"{\"a\":\"\xc3\"}",			/* not UTF-8 */
	"{\"a\":\"\xc0\xaf\"}",			/* overlong */
	"{\"a\":\"\xed\xa0\x80\"}",		/* a surrogate */
	"{\"a\":\"\xf4\x90\x80\x80\"}",		/* above U+10FFFF */
	"\xef\xbb\xbf{}",			/* a BOM */
	"{\"a\":1}\v",
	"{\"a\":1,\"b\":2\f}",
	"",
	"   ",
};

Test(jflat, leaves_everything_else_to_jansson)
{
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		cr_assert_not(agrees(others[i], strlen(others[i])), "jflat read: %s", others[i]);
}

Test(jflat, embedded_nul_goes_to_jansson)
{
	static const char key[] = "{\"a\0b\":1}", val[] = "{\"a\":\"x\0y\"}", after[] = "{\"a\":1}\0";

	cr_assert_not(agrees(key, sizeof(key) - 1));
	cr_assert_not(agrees(val, sizeof(val) - 1));
	cr_assert_not(agrees(after, sizeof(after) - 1));
}
