/*
 * peer.c - peer authorisation, shared by the control socket and the bus
 * (see peer.h).
 */
#include "autoconfig.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <unistd.h>

#include "peer.h"
#include "util.h"

int peer_auth_init(struct peer_auth *a, const char *group, char *err, size_t errlen)
{
	*a = (struct peer_auth){.has_group = false};
	if (!group)
		return 0;
	struct group gr, *grp = NULL;
	char buf[8192];
	getgrnam_r(group, &gr, buf, sizeof(buf), &grp);
	if (!grp) {
		snprintf(err, errlen, "control_group \"%s\": no such group", group);
		return -1;
	}
	a->group = gr.gr_gid;
	a->has_group = true;
	return 0;
}

static bool in_group(struct peer_auth *a, uid_t uid)
{
	void *cached = intmap_get(&a->members, uid);

	if (cached)
		return cached == (void *)1;
	bool member = false;
	struct passwd pw, *pwp = NULL;
	char buf[8192];
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &pwp) == 0 && pwp) {
		gid_t groups[256];
		int n = ARRAY_LEN(groups);
		if (pw.pw_gid == a->group)
			member = true;
		else if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) >= 0)
			for (int i = 0; i < n && !member; i++)
				member = groups[i] == a->group;
	}
	intmap_put(&a->members, uid, member ? (void *)1 : (void *)2);
	return member;
}

bool peer_allowed(struct peer_auth *a, uid_t uid, gid_t gid)
{
	if (uid == 0 || uid == geteuid())
		return true;
	if (!a->has_group)
		return false;
	return gid == a->group || in_group(a, uid);
}

void peer_auth_free(struct peer_auth *a)
{
	intmap_free(&a->members);
}
