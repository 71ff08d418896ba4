/*
 * config_cluster.c - the values of the cluster keys of [cohort]: the NATS
 * servers' URLs and the cluster's name.  Checked here, at --check, so a
 * typo is a "FILE:LINE" error rather than a connection that never comes.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_keys.h"
#include "util.h"

#define CLUSTER_NAME_MAX 64

static bool url_ok(const char *u)
{
	const char *h;
	size_t n;

	if (strncasecmp(u, "nats://", 7) == 0)
		h = u + 7;
	else if (strncasecmp(u, "tls://", 6) == 0)
		h = u + 6;
	else
		return false;
	n = strlen(h);
	/* user:password@host:port is a NATS URL too; no path, no spaces. */
	return n > 0 && n < 250 && strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789.-_:[]@%+!$&'()*=~") == n;
}

/* "a, b,c" -> "a", "b", "c" (spaces around items dropped, empty ones kept
 * so that "a,,b" is an error). */
static void split_urls(const char *v, struct strv *out)
{
	memset(out, 0, sizeof(*out));
	for (;;) {
		const char *end = strchr(v, ',');
		size_t n = end ? (size_t)(end - v) : strlen(v);
		const char *a = v;
		char *item;
		while (n && (*a == ' ' || *a == '\t'))
			a++, n--;
		while (n && (a[n - 1] == ' ' || a[n - 1] == '\t'))
			n--;
		item = xmalloc(n + 1);
		memcpy(item, a, n);
		item[n] = '\0';
		strv_push_owned(out, item);
		if (!end)
			break;
		v = end + 1;
	}
}

int cluster_urls_parse(const char *v, char **out, struct sbuf *why)
{
	struct strv items;

	if (!*v) {
		free(*out);
		*out = NULL;
		return 0;
	}
#ifndef HAVE_LIBNATS
	sbuf_addf(why, "this cohortd was built without the cluster mode (configure found no libnats: "
		       "install libnats-dev and build again), so it cannot join a cluster");
	return -1;
#endif
	split_urls(v, &items);
	for (size_t i = 0; i < items.n; i++)
		if (!url_ok(items.v[i])) {
			sbuf_addf(why, "\"%s\" is no NATS URL: expected nats://HOST:PORT or tls://HOST:PORT",
				  items.v[i]);
			strv_free(&items);
			return -1;
		}
	strv_free(&items);
	free(*out);
	*out = xstrdup(v);
	return 0;
}

int cluster_name_parse(const char *v, char **out, struct sbuf *why)
{
	size_t n = strlen(v);

	if (n == 0 || n > CLUSTER_NAME_MAX ||
	    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != n) {
		sbuf_addf(why, "expected 1 to %d letters, digits, - or _ (it names a JetStream bucket)",
			  CLUSTER_NAME_MAX);
		return -1;
	}
	free(*out);
	*out = xstrdup(v);
	return 0;
}
