/*
 * cli_lock.c - locks, lock: the lock table, and a command run holding a lease.
 */
#include "autoconfig.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "lock.h"

static int run_locks(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	char *raw;
	json_t *resp = call(c, json_pack("{s:s}", "cmd", "locks"), &raw);
	if (c->json) {
		printf("%s\n", raw);
	} else {
		static const char *const head[] = {"NAME", "MODE", "HOLDER", "TOKEN", "EXPIRES", "WAITERS"};
		int64_t now = json_integer_value(json_object_get(resp, "now_ms"));
		size_t n = 1, cap = 16, i, k;
		char ***rows = table_new(head, 6, cap);
		json_t *l, *h;
		json_array_foreach(json_object_get(resp, "locks"), i, l) {
			json_t *holders = json_object_get(l, "holders");
			size_t nw = json_array_size(json_object_get(l, "waiters"));
			size_t nh = json_array_size(holders);
			for (k = 0; k < (nh ? nh : 1); k++) {
				if (n + 1 >= cap)
					rows = xrealloc(rows, (cap *= 2) * sizeof(char **));
				char **row = rows[n++] = xcalloc(6, sizeof(char *));
				h = json_array_get(holders, k);
				char left[32] = "-";
				if (h)
					format_duration_ms(json_integer_value(json_object_get(h, "expires_ms")) - now,
							   left, sizeof(left));
				row[0] = xstrdup(str_of(l, "name"));
				row[1] = xstrdup(str_of(l, "mode"));
				row[2] = xstrdup(h ? str_of(h, "owner") : "-");
				row[3] = h ? xasprintf("%lld", json_integer_value(json_object_get(h, "token")))
					   : xstrdup("-");
				row[4] = !h ? xstrdup("-") : json_is_true(json_object_get(h, "stopping"))
					 ? xstrdup("stopping") : xasprintf("in %s", left);
				row[5] = xasprintf("%zu", nw);
			}
		}
		if (n > 1)
			print_table(rows, n, 6);
		else
			printf("no locks are held or awaited\n");
		free_rows(rows, n, 6);
	}
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}

/* --- cohortctl lock NAME -- CMD ---------------------------------------------- */

/* What `cohortctl lock` was asked. */
struct lock_args {
	const char *name;
	int64_t ttl, wait, stop;	/* milliseconds */
	bool shared;
	char **cmd;			/* CMD and its arguments */
};

/* The lease was not had: why, on standard error; returns the exit status. */
static int not_had(const struct lock_args *a, const char *err)
{
	char dur[32];

	format_duration_ms(a->wait, dur, sizeof(dur));
	if (strcmp(err, "timeout") == 0)
		fprintf(stderr, "cohortctl: lock %s not had within %s\n", a->name, dur);
	else
		fprintf(stderr, "cohortctl: lock %s: %s\n", a->name, err);
	return EXIT_FAILED;
}

/* lock NAME -- CMD through the bus, with $COHORT_TOKEN, and CMD's group as
 * on the control socket; over TCP cohortd has no uid to check a group with,
 * and only we stop it. */
static int lock_over_bus(struct ctl *c, const struct lock_args *a)
{
	cohort_t *b = bus_connect(c, NULL, false, false);
	struct job job;
	uint64_t token;
	int64_t exp;
	int st;

	if (job_fork(&job, a->cmd, a->name) < 0) {
		perror("cohortctl: starting the command");
		cohort_free(b);
		return EXIT_FAILED;
	}
	int pgid = strncmp(bus_address(c), "unix:", 5) == 0 ? job.pid : 0;
	if (cohort_lock_acquire_group(b, a->name, a->ttl, a->wait, a->shared, pgid, a->stop, &token, &exp) < 0) {
		not_had(a, cohort_error(b));
		job_abandon(&job);
		cohort_free(b);
		return EXIT_FAILED;
	}
	job_start(&job, token);
	int64_t every = a->ttl / 3, next = now_mono_ms() + every;
	for (;;) {
		struct pollfd p[2] = {{job_signal_fd(), POLLIN, 0}, {cohort_fd(b), POLLIN, 0}};
		int64_t left = next - now_mono_ms();
		poll(p, 2, left > 0 ? (int)left : 0);
		if ((p[0].revents & POLLIN) && job_command_ended(&job, &st)) {
			cohort_lock_release(b, a->name, token);
			cohort_free(b);
			return job_status(&job, st);
		}
		if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) && (cohort_step(b, 0) < 0 || !cohort_connected(b))) {
			cohort_free(b);
			return job_lost_lease(&job, a->name, "the bus connection ended");
		}
		if (now_mono_ms() >= next) {
			if (cohort_lock_renew(b, a->name, token, a->ttl, &exp) < 0) {
				char why[300];
				snprintf(why, sizeof(why), "renew refused: %s", cohort_error(b));
				cohort_free(b);
				return job_lost_lease(&job, a->name, why);
			}
			next = now_mono_ms() + every;
		}
	}
}

static const struct option lock_opts[] = {
	{"ttl", required_argument, NULL, 't'},
	{"wait", required_argument, NULL, 'w'},
	{"shared", no_argument, NULL, 's'},
	{"stop-timeout", required_argument, NULL, 'k'},
	{0},
};

/* The options and operands, or exits 2 (usage). */
static void lock_parse_args(int argc, char **argv, struct lock_args *a)
{
	static const char usage[] = "usage: cohortctl lock [--ttl DUR] [--wait DUR] [--shared] "
				    "[--stop-timeout DUR] NAME -- CMD [ARG...]";
	const char *why;
	int o;

	*a = (struct lock_args){.ttl = 30000, .wait = 7 * 86400000LL, .stop = LOCK_STOP_TIMEOUT_MS};
	optind = 1;
	while ((o = getopt_long(argc, argv, "+", lock_opts, NULL)) != -1) {
		/* cohortd's bounds, checked here so that a bad value is a usage
		 * error (exit 2) like any other, before anything runs.  Under
		 * 100ms a lease would be renewed faster than a loaded machine
		 * answers. */
		if (o == 't' && parse_duration_ms(optarg, &a->ttl, &why) < 0)
			die_usage("--ttl: expected %s", why);
		else if (o == 't' && (a->ttl < 100 || a->ttl > LOCK_TTL_MAX_MS))
			die_usage("--ttl: expected a duration from 100ms to 1d, got %s", optarg);
		else if (o == 'w' && parse_duration_ms(optarg, &a->wait, &why) < 0)
			die_usage("--wait: expected %s", why);
		else if (o == 'w' && a->wait > LOCK_WAIT_MAX_MS)
			die_usage("--wait: expected a duration of at most 7d, got %s", optarg);
		else if (o == 'k' && parse_duration_ms(optarg, &a->stop, &why) < 0)
			die_usage("--stop-timeout: expected %s", why);
		else if (o == 'k' && a->stop > LOCK_STOP_TIMEOUT_MAX_MS)
			die_usage("--stop-timeout: expected a duration of at most 1h, got %s", optarg);
		else if (o == 's')
			a->shared = true;
		else if (o != 't' && o != 'w' && o != 'k')
			die_usage("%s", usage);
	}
	if (optind >= argc)
		die_usage("lock needs a NAME and a command: cohortctl lock NAME -- CMD [ARG...]");
	a->name = argv[optind++];
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	if (optind >= argc)
		die_usage("lock needs a command to run: cohortctl lock %s -- CMD [ARG...]", a->name);
	a->cmd = argv + optind;
}

/* Holds the lease over the control socket while CMD runs, renewing it
 * every ttl/3; returns the exit status. */
static int hold_over_control(struct ctl *c, const struct lock_args *a, struct job *job, uint64_t token)
{
	int64_t every = a->ttl / 3, next = now_mono_ms() + every;

	job_start(job, token);
	for (;;) {
		struct pollfd p[2] = {{job_signal_fd(), POLLIN, 0}, {c->fd, POLLIN, 0}};
		int64_t left = next - now_mono_ms();
		int n = poll(p, 2, left > 0 ? (int)left : 0);
		if (n < 0 && errno != EINTR)
			return job_lost_lease(job, a->name, strerror(errno));
		int st;
		if ((p[0].revents & POLLIN) && job_command_ended(job, &st)) {
			json_decref(roundtrip(c, json_pack("{s:s,s:s,s:I}", "cmd", "lock.release", "name", a->name,
							   "token", (json_int_t)token)));
			return job_status(job, st);
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
			return job_lost_lease(job, a->name, "cohortd closed the connection");
		if (now_mono_ms() >= next) {
			json_t *r = roundtrip(c, json_pack("{s:s,s:s,s:I,s:I}", "cmd", "lock.renew", "name", a->name,
							   "token", (json_int_t)token, "ttl_ms", (json_int_t)a->ttl));
			if (!r)
				return job_lost_lease(job, a->name, "cohortd went away");
			if (!json_is_true(json_object_get(r, "ok"))) {
				char why[200];
				snprintf(why, sizeof(why), "renew refused: %s", str_of(r, "error"));
				json_decref(r);
				return job_lost_lease(job, a->name, why);
			}
			json_decref(r);
			next = now_mono_ms() + every;
		}
	}
}

static int run_lock(struct ctl *c, int argc, char **argv)
{
	struct lock_args a;

	lock_parse_args(argc, argv, &a);
	/* The control socket when we may use it, else the bus with our token
	 * (a service running as another user). */
	const char *bus_token = getenv("COHORT_TOKEN");
	bool may_bus = bus_token && *bus_token;
	if (try_connect(c) < 0) {
		if (errno == EACCES && may_bus)
			return lock_over_bus(c, &a);
		connect_daemon(c);
	}
	struct job job;
	if (job_fork(&job, a.cmd, a.name) < 0) {
		perror("cohortctl: starting the command");
		return EXIT_FAILED;
	}
	json_t *resp = roundtrip(c, json_pack("{s:s,s:s,s:I,s:I,s:s,s:i,s:I}", "cmd", "lock.acquire",
					      "name", a.name, "ttl_ms", (json_int_t)a.ttl, "wait_ms",
					      (json_int_t)a.wait, "mode", a.shared ? "shared" : "exclusive",
					      "pgid", (int)job.pid, "stop_timeout_ms", (json_int_t)a.stop));
	bool ok = json_is_true(json_object_get(resp, "ok"));
	if (!ok)
		job_abandon(&job);
	if (!resp) {
		fprintf(stderr, "cohortctl: cohortd at %s went away\n", c->socket);
		return EXIT_UNREACHABLE;
	}
	uint64_t token = (uint64_t)json_integer_value(json_object_get(resp, "token"));
	bool denied = !ok && strstr(str_of(resp, "error"), "permission denied") && may_bus;
	if (!ok && !denied)
		not_had(&a, str_of(resp, "error"));
	json_decref(resp);
	if (ok)
		return hold_over_control(c, &a, &job, token);
	if (!denied)
		return EXIT_FAILED;
	close(c->fd);
	c->fd = -1;
	return lock_over_bus(c, &a);
}

const struct command cmd_locks_entry = {
	.name = "locks",
	.usage = "",
	.summary = "every lock: name, mode, holder, token, expiry, waiters",
	.run = run_locks,
};

const struct command cmd_lock_entry = {
	.name = "lock",
	.usage = "[--ttl DUR] [--wait DUR] [--shared] [--stop-timeout DUR] NAME -- CMD [ARG...]",
	.summary = "run CMD holding the lock NAME (like flock(1)), renewing it; exits with CMD's status",
	.run = run_lock,
	.shortopts = "+",
	.longopts = lock_opts,
	.then_command = true,
};
