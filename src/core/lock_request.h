/*
 * lock_request.h - the fields of lock.acquire, lock.renew and
 * lock.release, read the same way on the control socket and on the bus:
 * one declaration of each request's fields (wire.h), one reader, one set
 * of messages.  What only one transport can judge (whose process group
 * "pgid" is: its peer's uid) stays with it.
 */
#ifndef COHORT_LOCK_REQUEST_H
#define COHORT_LOCK_REQUEST_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "lock.h"
#include "wire.h"

enum lock_op { LOCK_OP_ACQUIRE, LOCK_OP_RENEW, LOCK_OP_RELEASE };

struct lock_request {
	const char *name;		/* points into the request */
	enum lock_mode mode;		/* exclusive unless "shared" */
	int64_t ttl_ms;			/* 30000 unless given; its range is lock.c's */
	int64_t wait_ms;		/* 0 (try once) unless given */
	uint64_t token;			/* renew, release: at least 1 */
	pid_t pgid;			/* acquire: 0, or the group of the holder's work */
	int64_t stop_timeout_ms;	/* with pgid: from TERM to KILL */
};

/* The fields each request takes; the control socket's table points here. */
extern const struct wire_field lock_acquire_fields[];
extern const struct wire_field lock_renew_fields[];
extern const struct wire_field lock_release_fields[];

/* Checks REQ's fields for OP (unknown fields let by: the bus's envelope
 * carries more) and reads them into R: 0, or -1 with ERR. */
int lock_request_parse(json_t *req, enum lock_op op, struct lock_request *r, char *err, size_t errlen);
/* Reads a request whose fields were checked already (the control socket
 * checks every command's before its handler). */
void lock_request_read(json_t *req, struct lock_request *r);

#endif
