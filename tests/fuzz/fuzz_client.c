/*
 * fuzz_client.c - libcohort's frame reader: what cohortd sends a client,
 * read by a real cohort_t (cohort_connect, cohort_subscribe, cohort_step:
 * wsc_read and wsc_next below, the fast msg and ok readers and jansson in
 * dispatch above) from a unix socket.  The server end (wsserver.c) says
 * welcome and answers the subscription, then sends the input as it is:
 * frames, fragments, pings, closes, or garbage.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cohort.h"
#include "fuzz.h"
#include "wsserver.h"

static void on_msg(cohort_t *c, const struct cohort_msg *m, void *arg)
{
	(void)arg;
	/* What a callback may do with a message: read all of it. */
	if (strlen(m->topic) > (1u << 20) || memchr(m->data, '\0', m->data_len + 1) == NULL)
		abort();
	if (m->seq & 1)
		cohort_keep(c);
}

static void on_closed(cohort_t *c, int code, const char *reason, void *arg)
{
	(void)c;
	(void)code;
	(void)reason;
	(void)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cohort_options o = {.bus = ws_url(), .token = "", .no_reconnect = true};
	cohort_t *c = cohort_new(&o);

	cohort_on_closed(c, on_closed, NULL);
	ws_serve(data, size, false);
	if (cohort_connect(c) == 0 && cohort_subscribe(c, ">", 1, on_msg, NULL) == 0)
		for (int i = 0; i < 1000 && cohort_step(c, 2000) == 0 && cohort_connected(c); i++)
			;
	cohort_free(c);
	ws_done();
	return 0;
}
