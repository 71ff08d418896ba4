/* Unit tests of the small pieces of src/lib both sockets and several
 * layers share: the HOST:PORT parser, the peer rule, the thread starter. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostport.h"
#include "peer.h"
#include "thread.h"

static void split_ok(const char *in, const char *def, const char *host, const char *port)
{
	char *h = NULL, *p = NULL;

	cr_assert_eq(hostport_split(in, def, &h, &p), 0, "%s", in);
	cr_assert_str_eq(h, host, "%s", in);
	cr_assert_str_eq(p, port, "%s", in);
	free(h);
	free(p);
}

Test(hostport, host_and_port)
{
	split_ok("127.0.0.1:7420", NULL, "127.0.0.1", "7420");
	split_ok("localhost:1", NULL, "localhost", "1");
	split_ok("[::1]:65535", NULL, "::1", "65535");
	split_ok("::1:8080", NULL, "::1", "8080");	/* the last colon, as ws:// took it */
	/* A default port, for ws:// addresses. */
	split_ok("example.org", "80", "example.org", "80");
	split_ok("[::1]", "80", "::1", "80");
	split_ok("example.org:8080", "80", "example.org", "8080");
}

Test(hostport, refused)
{
	const char *bad[] = {
		"localhost", "[::1]", ":80", "h:", "h:0", "h:65536", "h:8o", "h:-1",
		"a b:80", "a/b:80", "[::1:80", "[::1]80", "[]:80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *h = NULL, *p = NULL;
		cr_assert_eq(hostport_split(bad[i], NULL, &h, &p), -1, "%s", bad[i]);
		cr_assert_null(h);
		cr_assert_null(p);
	}
	char *h = NULL, *p = NULL;
	cr_assert_eq(hostport_split("h:0", "80", &h, &p), -1);	/* a bad port is no missing one */
}

Test(peer, root_and_own_uid_only_without_a_group)
{
	struct peer_auth a;
	char err[128];

	cr_assert_eq(peer_auth_init(&a, NULL, err, sizeof(err)), 0);
	cr_assert(peer_allowed(&a, 0, 0));
	cr_assert(peer_allowed(&a, geteuid(), 12345));
	uid_t other = geteuid() == 4242 ? 4243 : 4242;
	cr_assert_not(peer_allowed(&a, other, 4242));
	peer_auth_free(&a);
}

Test(peer, a_group_that_does_not_exist)
{
	struct peer_auth a;
	char err[128];

	cr_assert_eq(peer_auth_init(&a, "no-such-group-of-cohort", err, sizeof(err)), -1);
	cr_assert_str_eq(err, "control_group \"no-such-group-of-cohort\": no such group");
	peer_auth_free(&a);
}

Test(peer, the_group_by_gid)
{
	struct peer_auth a;
	char err[128];

	cr_assert_eq(peer_auth_init(&a, "root", err, sizeof(err)), 0, "%s", err);
	cr_assert(a.has_group);
	uid_t other = geteuid() == 4242 ? 4243 : 4242;
	cr_assert(peer_allowed(&a, other, a.group));	/* its primary group is control_group */
	peer_auth_free(&a);
}

static void *report_mask(void *arg)
{
	sigset_t *mask = arg;

	pthread_sigmask(SIG_SETMASK, NULL, mask);
	return NULL;
}

Test(thread, starts_with_every_signal_blocked_and_leaves_ours_alone)
{
	sigset_t before, after, theirs;
	pthread_t t;

	sigemptyset(&before);
	pthread_sigmask(SIG_SETMASK, &before, NULL);
	cr_assert_eq(thread_start(&t, report_mask, &theirs), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert(sigismember(&theirs, SIGTERM));
	cr_assert(sigismember(&theirs, SIGHUP));
	cr_assert(sigismember(&theirs, SIGCHLD));
	pthread_sigmask(SIG_SETMASK, NULL, &after);
	cr_assert_not(sigismember(&after, SIGTERM));
	cr_assert_not(sigismember(&after, SIGHUP));
}
