/* Unit tests of wire_fields.c: a request's fields checked against their
 * declaration, with the messages the control socket and the bus send. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>

#include "lock_request.h"
#include "wire.h"

static const char *const modes[] = {"exclusive", "shared", NULL};
static const struct wire_field fields[] = {
	{"name", WIRE_STRING, true, 0, 0, NULL, NULL},
	{"lines", WIRE_INT, false, 0, 100000, NULL, NULL},
	{"ttl_ms", WIRE_INT, false, 0, 0, "an integer (milliseconds)", NULL},
	{"mode", WIRE_STRING, false, 0, 0, NULL, modes},
	{"follow", WIRE_BOOL, false, 0, 0, NULL, NULL},
	{"targets", WIRE_LIST, false, 0, 0, NULL, NULL},
	{NULL, 0, false, 0, 0, NULL, NULL},
};

/* The error for TEXT, or "" when it passes. */
static const char *check(const char *text, bool strict)
{
	static char err[300];
	json_t *req = json_loads(text, 0, NULL);

	cr_assert(req, "%s", text);
	err[0] = '\0';
	if (wire_check_fields(req, fields, strict, "cmd", err, sizeof(err)) == 0)
		cr_assert_str_empty(err);
	else
		cr_assert_str_not_empty(err);
	json_decref(req);
	return err;
}

Test(fields, what_passes)
{
	cr_assert_str_empty(check("{\"cmd\":\"x\",\"name\":\"a\"}", true));
	cr_assert_str_empty(check("{\"name\":\"a\",\"lines\":0,\"ttl_ms\":-5,\"mode\":\"shared\",\"follow\":false,"
				  "\"targets\":[1]}", true));
	cr_assert_str_empty(check("{\"name\":\"a\",\"lines\":100000}", true));
	cr_assert_str_empty(check("{\"name\":\"a\",\"op\":\"lock.acquire\",\"id\":[]}", false));
}

Test(fields, each_mistake_is_named)
{
	static const char *const cases[][2] = {
		{"{\"cmd\":\"x\"}", "missing field \"name\" (a string)"},
		{"{\"name\":5}", "field \"name\" must be a string"},
		{"{\"name\":\"a\",\"lines\":100001}", "field \"lines\" must be an integer from 0 to 100000"},
		{"{\"name\":\"a\",\"lines\":1.0}", "field \"lines\" must be an integer from 0 to 100000"},
		{"{\"name\":\"a\",\"ttl_ms\":\"5s\"}", "field \"ttl_ms\" must be an integer (milliseconds)"},
		{"{\"name\":\"a\",\"mode\":\"both\"}", "field \"mode\" must be \"exclusive\" or \"shared\""},
		{"{\"name\":\"a\",\"follow\":1}", "field \"follow\" must be true or false"},
		{"{\"name\":\"a\",\"targets\":\"a\"}", "field \"targets\" must be a list"},
		{"{\"name\":\"a\",\"line\":5}", "unknown field \"line\" (did you mean \"lines\"?)"},
		{"{\"name\":\"a\",\"xyzzy\":5}",
		 "unknown field \"xyzzy\" (known: name, lines, ttl_ms, mode, follow, targets)"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_str_eq(check(cases[i][0], true), cases[i][1], "%s", cases[i][0]);
	/* not strict (the bus's envelope): unknown fields pass, the rest not */
	cr_assert_str_empty(check("{\"name\":\"a\",\"line\":5}", false));
	cr_assert_str_eq(check("{\"line\":5}", false), "missing field \"name\" (a string)");
}

Test(fields, a_request_that_takes_none)
{
	static const struct wire_field none[] = {{NULL, 0, false, 0, 0, NULL, NULL}};
	json_t *req = json_pack("{s:s,s:b}", "cmd", "plan", "verbose", 1);
	char err[200];

	cr_assert_eq(wire_check_fields(req, none, true, "cmd", err, sizeof(err)), -1);
	cr_assert_str_eq(err, "unknown field \"verbose\" (this request takes none)");
	json_decref(req);
}

/* The lock requests as both transports read them. */
Test(fields, lock_requests)
{
	struct lock_request r;
	char err[300];
	json_t *req = json_pack("{s:s,s:s,s:i,s:i}", "op", "lock.acquire", "name", "db", "pgid", 77, "wait_ms", 5);

	cr_assert_eq(lock_request_parse(req, LOCK_OP_ACQUIRE, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(r.name, "db");
	cr_assert(r.mode == LOCK_EXCLUSIVE && r.ttl_ms == 30000 && r.wait_ms == 5 && r.pgid == 77 &&
		  r.stop_timeout_ms == LOCK_STOP_TIMEOUT_MS);
	json_decref(req);
	req = json_pack("{s:s,s:I}", "name", "db", "token", (json_int_t)0);
	cr_assert_eq(lock_request_parse(req, LOCK_OP_RELEASE, &r, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "field \"token\" must be a positive integer");
	json_decref(req);
	req = json_pack("{s:s,s:s}", "name", "db", "mode", "shared");
	cr_assert_eq(lock_request_parse(req, LOCK_OP_RENEW, &r, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "missing field \"token\" (a positive integer)");
	cr_assert_eq(lock_request_parse(req, LOCK_OP_ACQUIRE, &r, err, sizeof(err)), 0);
	cr_assert_eq(r.mode, LOCK_SHARED);
	json_decref(req);
}
