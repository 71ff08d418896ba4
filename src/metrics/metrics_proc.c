/*
 * metrics_proc.c - what /proc says of a process (its CPU time and resident
 * memory) and of cohortd's descriptors, read into stack buffers: a scrape
 * allocates nothing here (no stdio, no opendir); and when it is read.
 */
#include "autoconfig.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pgroup.h"
#include "daemon.h"
#include "metrics.h"

int proc_usage_read(int pid, struct proc_usage *u)
{
	char path[48], buf[1024];
	static long hz, page;

	if (!hz) {
		hz = sysconf(_SC_CLK_TCK);
		page = sysconf(_SC_PAGESIZE);
		if (hz <= 0)
			hz = 100;
	}
	if (pid)
		snprintf(path, sizeof(path), "%d", pid);
	else
		strcpy(path, "self");
	/* Field 3 (state) on.  utime 14, stime 15, cutime 16, cstime 17,
	 * starttime 22, rss 24 (pages).  The fields are in buf: p may move. */
	char *p = (char *)proc_stat_fields(path, buf, sizeof(buf));
	if (!p)
		return -1;
	unsigned long long f[25] = {0};
	for (int field = 3; field <= 24 && *p; field++) {
		while (*p == ' ')
			p++;
		if (field == 3) {	/* a letter */
			while (*p && *p != ' ')
				p++;
			continue;
		}
		f[field] = strtoull(p, &p, 10);
	}
	u->cpu_ms = (f[14] + f[15] + f[16] + f[17]) * 1000 / (unsigned long long)hz;
	u->rss_bytes = f[24] * (unsigned long long)page;
	u->start_ticks = f[22];
	return 0;
}

long proc_open_fds(void)
{
	char buf[4096];
	long count = 0;
	int fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	for (;;) {
		long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
		if (n < 0) {
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		for (long off = 0; off < n;) {
			struct dirent64 *e = (struct dirent64 *)(buf + off);
			if (e->d_name[0] != '.')
				count++;
			off += e->d_reclen;
		}
	}
	close(fd);
	return count - 1;	/* the one reading it */
}

long proc_max_fds(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return -1;
	return (long)rl.rlim_cur;
}

/* --- read after a scrape, for the next ---------------------------------------------- */

/*
 * Reading /proc/<pid>/stat costs an open, a read and a close, some
 * microseconds each in the kernel: for 500 services that alone is several
 * milliseconds, over the 2 ms a scrape may take.  So a scrape renders what
 * was read after the previous one (at most a scrape interval old; a process
 * not read yet is read during the scrape, within PROC_SCRAPE_US), and
 * then this reads every running service again, PROC_SLICE_US at a time
 * from an idle watcher, and stops until the next scrape.  With no scraper
 * nothing is read at all.
 */
#define PROC_SLICE_US 1000

static void refresh_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct metrics *m = container_of(w, struct metrics, refresh_w);
	const struct cohortd *d = m->d;
	size_t n = d->sup.plan->n + d->sup.nleaving;
	int64_t t0 = histo_now_us();
	(void)revents;

	if (m->refresh_next == 0)
		m->open_fds = proc_open_fds();
	while (m->refresh_next < n) {
		const struct service *s = metrics_svc_at(d, m->refresh_next++);
		struct svc_metrics *sm = map_get(&m->svcs, s->name);
		if (sm && s->pid > 0 && proc_usage_read(s->pid, &sm->usage) == 0)
			sm->usage_pid = s->pid;
		else if (sm)
			sm->usage_pid = 0;
		if ((m->refresh_next & 15) == 0 && histo_now_us() - t0 > PROC_SLICE_US)
			return;	/* the rest at the next idle moment */
	}
	ev_idle_stop(loop, w);
}

void proc_refresh_start(struct metrics *m)
{
	if (!m->refresh_w.cb)
		ev_idle_init(&m->refresh_w, refresh_cb);
	m->refresh_next = 0;
	ev_idle_start(m->d->loop, &m->refresh_w);
}

void proc_refresh_stop(struct metrics *m)
{
	if (m->refresh_w.cb)
		ev_idle_stop(m->d->loop, &m->refresh_w);
}
