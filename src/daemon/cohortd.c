/*
 * cohortd.c - the daemon's entry point: options, --check, then the
 * supervisor (daemon.c) on one libev loop.  Only main() exits.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "plan.h"

#define DEFAULT_CONFIG "/etc/cohort/cohort.ini"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cohortd [-c FILE] [--check] [--log-file FILE] [--foreground|-F] [-v|-q] [--version]\n"
		"\n"
		"Supervise the services of FILE on one event loop.\n"
		"\n"
		"  -c, --config FILE  config file (default: $COHORT_CONFIG, else %s)\n"
		"      --check        validate the config, print the phase plan and exit\n"
		"      --log-file FILE  log to FILE as well as stderr (over log_file; reopened on SIGUSR1)\n"
		"  -F, --foreground   run in the foreground (the default; cohortd never forks away)\n"
		"  -v, --verbose      log debug lines too\n"
		"  -q, --quiet        log warnings and errors only\n"
		"      --version      print the version and exit\n"
		"  -h, --help         print this help and exit\n"
		"\n"
		"Exit status: 0 clean shutdown or valid config; 1 invalid config or failure;\n"
		"2 usage error.  See cohortd(8) and cohort.ini(5).\n",
		DEFAULT_CONFIG);
}

/* Loads and plans the config; prints every error.  NULL when invalid. */
static struct cohort_config *load_checked(const char *path, struct plan **plan)
{
	struct diag d = {0};
	struct cohort_config *cfg = plan_load(path, plan, &d);

	if (!cfg) {
		diag_print(&d, stderr);
		diag_free(&d);
	}
	return cfg;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check", no_argument, NULL, 'C'},
		{"log-file", required_argument, NULL, 'l'},
		{"foreground", no_argument, NULL, 'F'},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *path = getenv("COHORT_CONFIG");
	const char *log_file = NULL;
	bool check = false;
	int c;

	/* Started with 0-2 closed (some inits do), our own sockets and pipes
	 * would land there and be handed to children as their stdio. */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
			return 1;

	if (!path || !*path)
		path = DEFAULT_CONFIG;
	while ((c = getopt_long(argc, argv, "c:Fvqh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'l':
			log_file = optarg;
			break;
		case 'F':
			break;
		case 'v':
			log_set_level(LOG_DEBUG);
			break;
		case 'q':
			log_set_level(LOG_WARN);
			break;
		case 'V':
			printf("cohortd %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cohortd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	struct plan *plan;
	struct cohort_config *cfg = load_checked(path, &plan);
	if (!cfg)
		return 1;
	if (check) {
		plan_print(plan, stdout);
		plan_free(plan);
		config_free(cfg);
		return 0;
	}
	/* Before anything is logged: the file must have every line of this run. */
	const char *lf = log_file ? log_file : cfg->log_file;
	if (lf && log_file_open(lf, log_file != NULL) < 0) {
		fprintf(stderr, "cohortd: cannot open the log file %s: %s\n", lf, strerror(errno));
		plan_free(plan);
		config_free(cfg);
		return 1;
	}
	int rc = daemon_run(path, cfg, plan);
	log_file_open(NULL, false);
	return rc;
}
