/*
 * metrics.h - what cohortd shows of itself outside cohortctl: the HTTP pages
 * of the bus listeners (/metrics, /healthz, /api/status, the dashboard) and
 * its own topics on the bus ($sys.*).
 *
 *   metrics.c        the Prometheus text (format 0.0.4) of the whole stack
 *   metrics_proc.c   /proc readings: a process's CPU and memory, our descriptors
 *   pages.c          the pages, registered with the bus at start
 *   sys_topics.c     $sys.service.<name>, $sys.event.service, $sys.event.lock
 *
 * This is the daemon layer: it reads each layer through its stats
 * accessors (bus_stats_read, lock_table_counts, the control counters) and
 * the services through the state-change subscription; the bus knows only
 * the page callbacks it is handed.
 */
#ifndef COHORT_METRICS_H
#define COHORT_METRICS_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "histo.h"
#include "map.h"
#include "util.h"

#define HISTORY_MAX 2000		/* transitions the timeline keeps, at most */
#define HISTORY_MS 3600000		/* ... and for at most an hour */

struct cohortd;
struct service;
enum svc_state;

/* What only /metrics needs of a service, kept by name from its first state
 * change (a service re-added by a reload keeps its history). */
/* From /proc/<pid>/stat (metrics_proc.c). */
struct proc_usage {
	uint64_t cpu_ms;	/* user + system, the process and its waited-for children */
	uint64_t rss_bytes;
	uint64_t start_ticks;	/* since boot, in clock ticks */
};

struct svc_metrics {
	uint64_t failures;	/* exits and start failures counted as such, ever */
	struct histo_ready ready;	/* from spawn to ready */
	int usage_pid;		/* the process usage was read of, 0: none */
	struct proc_usage usage;
	char name[];		/* in the same block: one allocation per service */
};

struct metrics {
	struct cohortd *d;
	struct map svcs;		/* name -> struct svc_metrics */
	int64_t render_us;		/* how long the last /metrics took to render */
	struct sbuf scratch;		/* lines written ahead of their family, reused */
	size_t last_size;		/* of the last page: the next one's buffer */
	/* metrics_proc.c: /proc read after a scrape, for the next */
	ev_idle refresh_w;
	size_t refresh_next;		/* the next service to read */
	long open_fds;			/* cohortd's, as last counted; -1: unknown */
	ev_timer sys_initial_w;		/* sys_topics.c: the first values, once the services exist */
	ev_timer sys_bus_w;		/* sys_topics.c: $sys.bus, while watched */
	/* sys_topics.c: the last hour's transitions, for the dashboard's timeline
	 * (a ring of the JSON texts of $sys.event.service) */
	struct history_entry {
		int64_t ts_ms;
		char *json;
	} history[HISTORY_MAX];
	size_t history_head, history_len;
	int64_t started_wall_ms;	/* cohortd's start */
	char *admin_token;		/* admin_token_file's, NULL: none */
	char *admin_token_path;
};

/* Starts the pages and the $sys topics (after bus_open); 0, or -1 with err. */
int metrics_start(struct cohortd *d, char *err, size_t errlen);
void metrics_stop(struct cohortd *d);

/* metrics.c */
/* Service i of the plan's order, then those a reload removed (i < n + nleaving). */
const struct service *metrics_svc_at(const struct cohortd *d, size_t i);
/* Appends the whole exposition to out. */
void metrics_render(struct metrics *m, struct sbuf *out);
/* A service changed state: $sys.service.<name> and $sys.event.service
 * (called with metrics_on_event from the daemon's supervise hook). */
void sys_topics_on_service(struct cohortd *d, struct service *s, enum svc_state from, enum svc_state to,
			   const char *reason, void *arg);
/* s's main process started (or a daemon was adopted): $sys.service.<name>
 * again with its pid, which the value made at the start of "starting" has
 * not yet. */
void sys_topics_on_process(struct cohortd *d, struct service *s);
/* A reload may change a service's value with no change of its state (its
 * phase, what it requires, whether its output is logged; a service added
 * that does not start has none yet): each one the reload touched is
 * published again if its value changed. */
void sys_topics_on_reload(struct cohortd *d);
/* The state-change subscriber that keeps struct svc_metrics. */
void metrics_on_event(struct cohortd *d, struct service *s, enum svc_state from, enum svc_state to,
		      const char *reason, void *arg);

/* metrics_proc.c */
/* After a scrape: reads /proc again for every running service, in slices
 * of PROC_SLICE_US from an idle watcher, for the next scrape. */
void proc_refresh_start(struct metrics *m);
void proc_refresh_stop(struct metrics *m);
/* From /proc/<pid>/stat (pid 0: ourselves); -1 when it is gone. */
int proc_usage_read(int pid, struct proc_usage *u);
/* Our open descriptors (counted in /proc/self/fd), -1 when unknown. */
long proc_open_fds(void);
/* The descriptor limit (RLIMIT_NOFILE), -1 when unlimited. */
long proc_max_fds(void);

/* admin_token.c: reads admin_token_file (makes it when absent) and hands
 * the token to the bus; -1 with err. */
int admin_token_load(struct cohortd *d, char *err, size_t errlen);

/* sys_topics.c */
void sys_topics_start(struct cohortd *d);
void sys_topics_stop(struct cohortd *d);
/* New output lines of a service (whole lines), for $sys.log.<name>. */
void sys_log_lines(struct cohortd *d, const struct service *s, const char *data, size_t len);
/* The last hour's transitions as a JSON array text, into out. */
void sys_history_json(struct metrics *m, struct sbuf *out);

/* dashboard.c: the page, /api/dashboard, and the admin's service actions. */
void dashboard_start(struct cohortd *d);
/* "http://HOST:PORT/#token=..." into buf; -1 with why in buf. */
int dashboard_url(const struct cohortd *d, char *buf, size_t len);

#endif
