/*
 * children.c - the child registry: which service each child pid is of,
 * and whether it is the service's main process or a probe's.
 *
 * The daemon's one child watcher reaps every child (and every orphan we
 * inherit as a subreaper) and hands each status here; a pid we do not
 * track is an orphan.  A service freed by a reload leaves its children
 * here no more: what is left of them is reaped as orphans.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <sys/wait.h>

#include "supervise.h"

struct child_ref {
	enum child_kind kind;
	struct service *svc;
};

void children_track(struct supervisor *sup, pid_t pid, enum child_kind kind, struct service *s)
{
	struct child_ref *ref = xmalloc(sizeof(*ref));

	*ref = (struct child_ref){kind, s};
	free(intmap_put(&sup->children, pid, ref));
}

bool children_exited(struct supervisor *sup, pid_t pid, int status)
{
	struct child_ref *ref = intmap_del(&sup->children, pid);

	if (!ref)
		return false;
	struct service *s = ref->svc;
	enum child_kind kind = ref->kind;
	free(ref);
	if (kind == CHILD_PROBE)
		probe_child_exited(s->probe, pid, status);	/* made before its child */
	else if (pid == s->pid)
		svc_main_exited(s, status);
	return true;
}

/* Still a child.  Only a main process's pause is shown; a probe's or an
 * orphan's is nobody's business. */
void children_paused(struct supervisor *sup, pid_t pid, int status)
{
	const struct child_ref *ref = intmap_get(&sup->children, pid);

	if (ref && ref->kind == CHILD_MAIN && ref->svc->pid == pid)
		svc_main_paused(ref->svc, WIFSTOPPED(status) ? WSTOPSIG(status) : 0);
}

void children_forget(struct supervisor *sup, const struct service *s)
{
	size_t it = 0;
	int64_t pid;
	void *v;

	while (intmap_next(&sup->children, &it, &pid, &v)) {
		struct child_ref *ref = v;
		if (ref->svc == s) {
			intmap_del(&sup->children, pid);
			free(ref);
		}
	}
}

void children_free(struct supervisor *sup)
{
	size_t it = 0;
	void *v;

	while (intmap_next(&sup->children, &it, NULL, &v))
		free(v);
	intmap_free(&sup->children);
}
