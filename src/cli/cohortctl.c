/*
 * cohortctl.c - the command-line client of cohortd's control socket:
 * global options, the table of commands, help, and a command's options
 * moved before its operands.  The commands are in the cli_*.c files, one
 * per family (see cli.h).
 *
 * One table of command entries (name, usage, summary, runner, options)
 * gives the help, the per-command --help and the list the shell
 * completion reads.  Each runner builds one JSON request, sends it, and
 * prints the answer for humans (or as the daemon wrote it, with --json).
 */
#include "autoconfig.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"

static int run_help(struct ctl *c, int argc, char **argv);

static const struct command cmd_help_entry = {"help", "[COMMAND]", "this help, or one command's", run_help,
					      NULL, NULL, false};

/* In the order of the help. */
static const struct command *const commands[] = {
	&cmd_status_entry, &cmd_start_entry, &cmd_stop_entry, &cmd_restart_entry, &cmd_signal_entry,
	&cmd_reload_entry, &cmd_shutdown_entry, &cmd_plan_entry, &cmd_log_entry, &cmd_events_entry,
	&cmd_locks_entry, &cmd_pub_entry, &cmd_sub_entry, &cmd_get_entry, &cmd_bus_entry, &cmd_dashboard_entry, &cmd_lock_entry,
	&cmd_import_entry, &cmd_help_entry,
};

#define FOR_EACH_COMMAND(cmd) \
	for (size_t i_ = 0; i_ < ARRAY_LEN(commands) && ((cmd) = commands[i_]); i_++)

static const struct command *find(const char *name)
{
	const struct command *cmd;

	FOR_EACH_COMMAND(cmd)
		if (strcmp(cmd->name, name) == 0)
			return cmd;
	return NULL;
}

static void usage(FILE *f)
{
	const struct command *cmd;

	fprintf(f, "usage: cohortctl [-s SOCKET] [-c CONFIG] [--json] COMMAND [ARGS...]\n\n"
		   "Drive cohortd through its control socket.\n\ncommands:\n");
	FOR_EACH_COMMAND(cmd)
		fprintf(f, "  %-9s %s\n", cmd->name, cmd->summary);
	fprintf(f, "\noptions:\n"
		   "  -s, --socket SOCKET  the control socket (default: $COHORT_SOCKET, else the\n"
		   "                       run_dir of -c / $COHORT_CONFIG, else %s)\n"
		   "  -c, --config CONFIG  find the socket through this config file\n"
		   "      --json           print cohortd's JSON answers as they are\n"
		   "  -h, --help           this help; cohortctl COMMAND --help for one command\n"
		   "      --version        print the version\n\n"
		   "exit status: 0 success, 1 the operation failed, 2 usage error, 3 cohortd unreachable\n",
		DEFAULT_SOCKET);
}

static void command_help(const struct command *cmd)
{
	printf("usage: cohortctl %s%s%s\n\n%s\n", cmd->name, *cmd->usage ? " " : "", cmd->usage,
	       cmd->summary);
}

static int run_help(struct ctl *c, int argc, char **argv)
{
	(void)c;
	if (argc > 1) {
		const struct command *cmd = find(argv[1]);
		if (!cmd)
			die_usage("unknown command \"%s\"", argv[1]);
		command_help(cmd);
	} else {
		usage(stdout);
	}
	return EXIT_OK;
}

/* An operand: a word that is not an option, or "-", or a negative number
 * (pub's DATA may be one). */
static bool is_operand(const char *w)
{
	return w[0] != '-' || w[1] == '\0' || (w[1] >= '0' && w[1] <= '9') ||
	       (w[1] == '.' && w[2] >= '0' && w[2] <= '9');
}

/* Does option word W of CMD take the next word as its argument? */
static bool takes_next(const struct command *cmd, const char *w)
{
	if (w[1] == '-') {
		size_t n = strcspn(w + 2, "=");
		if (w[2 + n] == '=' || !cmd->longopts)
			return false;
		for (const struct option *o = cmd->longopts; o->name; o++)	/* getopt takes prefixes */
			if (strncmp(o->name, w + 2, n) == 0)
				return o->has_arg == required_argument;
		return false;
	}
	for (const char *p = w + 1; *p && cmd->shortopts; p++) {
		const char *def = *p == '+' || *p == ':' ? NULL : strchr(cmd->shortopts, *p);
		if (!def)
			return false;
		if (def[1] == ':')
			return p[1] == '\0';	/* -n5 holds its argument, -n takes the next word */
	}
	return false;
}

/*
 * Options may come after the operands, as in most CLIs (log NAME -n 5):
 * returns CMD's words with its options first, then "--" when CMD has
 * options (the runner's getopt stops there, so an operand such as -5 is
 * not read as one), then the operands, in their order; *nopts is the
 * number of option words.  "--" ends the options; so does, for lock, the
 * word after NAME: CMD and its arguments are never ours.
 */
static char **args_hoist(const struct command *cmd, int argc, char **argv, int *newargc, int *nopts)
{
	char **out = xcalloc((size_t)argc + 2, sizeof(char *));
	char **operands = xcalloc((size_t)argc + 1, sizeof(char *));
	int no = 0, nop = 0, i;

	for (i = 1; i < argc; i++) {
		const char *w = argv[i];
		if (strcmp(w, "--") == 0) {
			i++;
			break;
		}
		if (is_operand(w)) {
			if (cmd->then_command && nop == 1)
				break;
			operands[nop++] = argv[i];
			continue;
		}
		out[1 + no++] = argv[i];
		if (takes_next(cmd, w) && i + 1 < argc)
			out[1 + no++] = argv[++i];
	}
	while (i < argc)
		operands[nop++] = argv[i++];
	out[0] = argv[0];
	*nopts = no;
	int n = 1 + no;
	if (cmd->shortopts || cmd->longopts)
		out[n++] = (char *)"--";
	memcpy(out + n, operands, (size_t)nop * sizeof(char *));
	free(operands);
	*newargc = n + nop;
	return out;
}

/* -s, else $COHORT_SOCKET, else run_dir of -c / $COHORT_CONFIG, else the default. */
static const char *find_socket(const char *opt_socket, const char *opt_config)
{
	static char path[4096];
	const char *env = getenv("COHORT_SOCKET");
	const char *config = opt_config ? opt_config : getenv("COHORT_CONFIG");

	if (opt_socket)
		return opt_socket;
	if (env && *env)
		return env;
	if (config && *config) {
		struct diag d = {0};
		struct cohort_config *cfg = config_load(config, &d);
		if (!cfg) {
			fprintf(stderr, "cohortctl: cannot read %s:\n", config);
			diag_print(&d, stderr);
			exit(EXIT_USAGE);
		}
		snprintf(path, sizeof(path), "%s/control.sock", cfg->run_dir);
		config_free(cfg);
		diag_free(&d);
		return path;
	}
	/* cohortd's own default config may move run_dir; use it when it reads. */
	struct diag d = {0};
	struct cohort_config *cfg = access(DEFAULT_CONFIG, R_OK) == 0 ? config_load(DEFAULT_CONFIG, &d) : NULL;
	diag_free(&d);
	if (cfg) {
		snprintf(path, sizeof(path), "%s/control.sock", cfg->run_dir);
		config_free(cfg);
		return path;
	}
	return DEFAULT_SOCKET;
}

/* The options before the command; returns an exit status when they are
 * all there is to do (--help, --version, --commands, a mistake), else -1. */
static int global_options(int argc, char **argv, struct ctl *c, const char **opt_socket, const char **opt_config)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"config", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"commands", no_argument, NULL, 'L'},
		{0},
	};
	const struct command *cmd;
	int o;

	while ((o = getopt_long(argc, argv, "+s:c:h", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			*opt_socket = optarg;
			break;
		case 'c':
			*opt_config = optarg;
			break;
		case 'j':
			c->json = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("cohortctl %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		case 'L':	/* for shell completion */
			FOR_EACH_COMMAND(cmd)
				printf("%s\n", cmd->name);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	return -1;
}

/* CMD's words with its options first (args_hoist), --json taken out
 * wherever it stands; NULL once --help has been answered. */
static char **command_words(const struct command *cmd, int argc, char **argv, struct ctl *c, int *cargc)
{
	int nopts;
	char **cargv = args_hoist(cmd, argc, argv, cargc, &nopts);

	for (int i = 1; i <= nopts; i++) {
		if (strcmp(cargv[i], "--help") == 0 || strcmp(cargv[i], "-h") == 0) {
			command_help(cmd);
			free(cargv);
			return NULL;
		}
		if (strcmp(cargv[i], "--json") == 0) {	/* after the command too, as people type it */
			c->json = true;
			memmove(cargv + i, cargv + i + 1, (size_t)(*cargc - i) * sizeof(*cargv));
			(*cargc)--;
			nopts--;
			i--;
		} else if (!cmd->shortopts && !cmd->longopts) {
			die_usage("%s: unknown option %s", cmd->name, cargv[i]);
		}
	}
	return cargv;
}

int main(int argc, char **argv)
{
	struct ctl c = {.fd = -1};
	const char *opt_socket = NULL, *opt_config = NULL;
	int cargc;

	signal(SIGPIPE, SIG_IGN);
	int rc = global_options(argc, argv, &c, &opt_socket, &opt_config);
	if (rc >= 0)
		return rc;
	const struct command *cmd = find(argv[optind]);
	if (!cmd)
		die_usage("unknown command \"%s\"", argv[optind]);
	char **cargv = command_words(cmd, argc - optind, argv + optind, &c, &cargc);
	if (!cargv)
		return EXIT_OK;
	c.color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
	if (cmd->run != run_help && cmd != &cmd_import_entry)	/* they work without cohortd */
		c.socket = find_socket(opt_socket, opt_config);
	rc = cmd->run(&c, cargc, cargv);
	free(cargv);
	if (c.fd >= 0)
		close(c.fd);
	sbuf_free(&c.in);
	return rc;
}
