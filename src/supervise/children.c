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

#include <stdint.h>
#include <sys/wait.h>

#include "supervise.h"

/*
 * A pid's entry is its service's pointer with the kind in the lowest bit
 * (a struct service is aligned to 8, so the bit is free): 10,000 services
 * kept a 16-byte allocation each for the two.
 */
_Static_assert(CHILD_MAIN == 0 && CHILD_PROBE == 1, "a kind is one bit");
_Static_assert(_Alignof(struct service) >= 2, "the lowest bit of a service's pointer is free");

static void *ref_of(struct service *s, enum child_kind kind)
{
	return (void *)((uintptr_t)s | (uintptr_t)kind);
}

static struct service *ref_svc(const void *ref)
{
	return (struct service *)((uintptr_t)ref & ~(uintptr_t)1);
}

static enum child_kind ref_kind(const void *ref)
{
	return (enum child_kind)((uintptr_t)ref & 1);
}

void children_track(struct supervisor *sup, pid_t pid, enum child_kind kind, struct service *s)
{
	intmap_put(&sup->children, pid, ref_of(s, kind));
}

bool children_exited(struct supervisor *sup, pid_t pid, int status)
{
	void *ref = intmap_del(&sup->children, pid);

	if (!ref)
		return false;
	struct service *s = ref_svc(ref);
	enum child_kind kind = ref_kind(ref);
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
	const void *ref = intmap_get(&sup->children, pid);

	if (ref && ref_kind(ref) == CHILD_MAIN && ref_svc(ref)->pid == pid)
		svc_main_paused(ref_svc(ref), WIFSTOPPED(status) ? WSTOPSIG(status) : 0);
}

void children_forget(struct supervisor *sup, const struct service *s)
{
	size_t it = 0;
	int64_t pid;
	void *v;

	while (intmap_next(&sup->children, &it, &pid, &v))
		if (ref_svc(v) == s)
			intmap_del(&sup->children, pid);
}

void children_free(struct supervisor *sup)
{
	intmap_free(&sup->children);
}
