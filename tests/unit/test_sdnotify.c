/* Unit tests of sdnotify.c's pure parts: the message and the address. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <string.h>

#include "sdnotify.h"

Test(sdnotify, messages)
{
	char b[160];

	sdn_format(b, sizeof(b), true, false, 2, 3);
	cr_assert_str_eq(b, "READY=1\nSTATUS=2 of 3 services running");
	sdn_format(b, sizeof(b), false, false, 1, 1);
	cr_assert_str_eq(b, "STATUS=1 of 1 service running");
	sdn_format(b, sizeof(b), false, true, 0, 4);
	cr_assert_str_eq(b, "STOPPING=1\nSTATUS=stopping: 0 of 4 services running");
}

Test(sdnotify, addresses)
{
	struct sockaddr_un sa;
	socklen_t len;

	cr_assert_eq(sdn_parse_address("/run/systemd/notify", &sa, &len), 0);
	cr_assert_str_eq(sa.sun_path, "/run/systemd/notify");
	cr_assert_eq(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);
	cr_assert_eq(sdn_parse_address("@abc", &sa, &len), 0);
	cr_assert_eq(sa.sun_path[0], '\0');
	cr_assert_eq(memcmp(sa.sun_path + 1, "abc", 3), 0);
	cr_assert_eq(len, offsetof(struct sockaddr_un, sun_path) + 4);
	cr_assert_eq(sdn_parse_address("relative/path", &sa, &len), -1);
	cr_assert_eq(sdn_parse_address("@", &sa, &len), -1);
	cr_assert_eq(sdn_parse_address("", &sa, &len), -1);
	cr_assert_eq(sdn_parse_address(NULL, &sa, &len), -1);
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	cr_assert_eq(sdn_parse_address(longp, &sa, &len), -1);
}
