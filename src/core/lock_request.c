/*
 * lock_request.c - see lock_request.h.
 */
#include "autoconfig.h"

#include <stdint.h>

#include "lock_request.h"

#define LOCK_TTL_DEFAULT_MS 30000

static const char *const modes[] = {"exclusive", "shared", NULL};

#define NAME_FIELD {"name", WIRE_STRING, true, 0, 0, NULL, NULL}
#define TOKEN_FIELD {"token", WIRE_INT, true, 1, INT64_MAX, "a positive integer", NULL}
/* Their range is the lock table's to say (lock_acquire_work). */
#define TTL_FIELD {"ttl_ms", WIRE_INT, false, 0, 0, "an integer (milliseconds)", NULL}

const struct wire_field lock_acquire_fields[] = {
	NAME_FIELD,
	TTL_FIELD,
	{"wait_ms", WIRE_INT, false, 0, 0, "an integer (milliseconds)", NULL},
	{"mode", WIRE_STRING, false, 0, 0, NULL, modes},
	{"pgid", WIRE_INT, false, 2, INT32_MAX, NULL, NULL},
	{"stop_timeout_ms", WIRE_INT, false, 0, LOCK_STOP_TIMEOUT_MAX_MS, NULL, NULL},
	{NULL, 0, false, 0, 0, NULL, NULL},
};

const struct wire_field lock_renew_fields[] = {
	NAME_FIELD,
	TOKEN_FIELD,
	TTL_FIELD,
	{NULL, 0, false, 0, 0, NULL, NULL},
};

const struct wire_field lock_release_fields[] = {
	NAME_FIELD,
	TOKEN_FIELD,
	{NULL, 0, false, 0, 0, NULL, NULL},
};

static int64_t int_or(json_t *req, const char *field, int64_t dflt)
{
	json_t *v = json_object_get(req, field);
	return v ? (int64_t)json_integer_value(v) : dflt;
}

void lock_request_read(json_t *req, struct lock_request *r)
{
	const char *mode = json_string_value(json_object_get(req, "mode"));

	*r = (struct lock_request){
		.name = json_string_value(json_object_get(req, "name")),
		.mode = mode && mode[0] == 's' ? LOCK_SHARED : LOCK_EXCLUSIVE,
		.ttl_ms = int_or(req, "ttl_ms", LOCK_TTL_DEFAULT_MS),
		.wait_ms = int_or(req, "wait_ms", 0),
		.token = (uint64_t)int_or(req, "token", 0),
		.pgid = (pid_t)int_or(req, "pgid", 0),
		.stop_timeout_ms = int_or(req, "stop_timeout_ms", LOCK_STOP_TIMEOUT_MS),
	};
}

int lock_request_parse(json_t *req, enum lock_op op, struct lock_request *r, char *err, size_t errlen)
{
	static const struct wire_field *const fields[] = {
		[LOCK_OP_ACQUIRE] = lock_acquire_fields,
		[LOCK_OP_RENEW] = lock_renew_fields,
		[LOCK_OP_RELEASE] = lock_release_fields,
	};

	if (wire_check_fields(req, fields[op], false, NULL, err, errlen) < 0)
		return -1;
	lock_request_read(req, r);
	return 0;
}
