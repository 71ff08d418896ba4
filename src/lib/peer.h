/*
 * peer.h - who may drive cohortd: root, cohortd's own uid, and the members
 * of control_group.  Both sockets ask here (the control socket admits only
 * them; the bus makes them admins), so the rule lives in one place.
 */
#ifndef COHORT_PEER_H
#define COHORT_PEER_H

#include <stdbool.h>
#include <sys/types.h>

#include "map.h"

struct peer_auth {
	bool has_group;		/* control_group is set */
	gid_t group;		/* ... and its gid */
	/* uid -> 1 member of control_group, 2 not; cached because the
	 * group lookup may block */
	struct intmap members;
};

/* Resolves control_group (NULL: none).  -1 with the reason in err when
 * there is no such group. */
int peer_auth_init(struct peer_auth *a, const char *group, char *err, size_t errlen);
/* May a peer with these credentials drive cohortd? */
bool peer_allowed(struct peer_auth *a, uid_t uid, gid_t gid);
void peer_auth_free(struct peer_auth *a);

#endif
