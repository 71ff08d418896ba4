/*
 * cli_job.c - the command `cohortctl lock NAME -- CMD` runs (see cli.h): forked
 * into a process group of its own before the lease is asked for, given the
 * token once it is granted, handed the terminal, and passed our signals.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t forward_sig;

/*
 * TERM, INT and HUP sent to cohortctl go on to the command's group; the
 * terminal's Ctrl-C too, as it reaches us only when our group, not the
 * command's, is the terminal's foreground.  A hangup the kernel sends
 * reaches only the session leader, so it goes on as well.  CONT only
 * wakes the loop: we may be in the foreground again (fg).
 */
static void on_signal(int sig, siginfo_t *si, void *ctx)
{
	int saved = errno;
	char b = (char)sig;

	(void)si;
	(void)ctx;
	if (sig != SIGCHLD && sig != SIGCONT)
		forward_sig = sig;
	(void)!write(sig_pipe[1], &b, 1);
	errno = saved;
}

static int child_status(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Makes pgrp the terminal's foreground group.  From the background that
 * would stop us with TTOU: it is blocked meanwhile. */
static void tty_give(int tty, pid_t pgrp)
{
	sigset_t ttou, old;

	sigemptyset(&ttou);
	sigaddset(&ttou, SIGTTOU);
	sigprocmask(SIG_BLOCK, &ttou, &old);
	(void)tcsetpgrp(tty, pgrp);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* If the terminal's foreground is FROM's, it becomes TO's. */
static void tty_pass(int tty, pid_t from, pid_t to)
{
	if (tty >= 0 && tcgetpgrp(tty) == from)
		tty_give(tty, to);
}

/* CMD's process, waiting in its own group for the token. */
int job_fork(struct job *job, char **cmd, const char *name)
{
	int go[2];

	*job = (struct job){.pid = -1, .go = -1, .tty = -1};
	if (pipe2(go, O_CLOEXEC) < 0)
		return -1;
	pid_t parent = getpid();
	pid_t child = fork();
	if (child < 0) {
		close(go[0]);
		close(go[1]);
		return -1;
	}
	if (child == 0) {
		char tok[32];
		size_t n = 0;
		ssize_t r;
		close(go[1]);
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);	/* ours is ignored: CMD's must not be */
		/* The lease is ours, not CMD's: it ends when we do (kill -9
		 * included), and then CMD gets TERM as on any lost lease. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
			_exit(1);
		while (n < sizeof(tok) - 1 && (r = read(go[0], tok + n, sizeof(tok) - 1 - n)) != 0)
			if (r > 0)
				n += (size_t)r;
			else if (errno != EINTR)
				_exit(1);
		if (n == 0)
			_exit(0);	/* no lease: CMD does not run */
		tok[n] = '\0';
		setenv("COHORT_LOCK_TOKEN", tok, 1);
		setenv("COHORT_LOCK_NAME", name, 1);
		execvp(cmd[0], cmd);
		fprintf(stderr, "cohortctl: %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	setpgid(child, child);	/* as the child does: whichever runs first */
	close(go[0]);
	job->pid = child;
	job->go = go[1];
	job->tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	return 0;
}

/* No lease: CMD's process goes without running CMD. */
void job_abandon(struct job *job)
{
	close(job->go);
	while (waitpid(job->pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (job->tty >= 0)
		close(job->tty);
}

/* The lease is granted: CMD runs, with the terminal if we have it. */
void job_start(struct job *job, uint64_t token)
{
	struct sigaction sa = {.sa_sigaction = on_signal};
	int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGCONT};
	char tok[32];

	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		perror("cohortctl: pipe");
		exit(EXIT_FAILED);
	}
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART | SA_SIGINFO;
	for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
		sigaction(sigs[i], &sa, NULL);
	tty_pass(job->tty, getpgrp(), job->pid);
	int n = snprintf(tok, sizeof(tok), "%llu", (unsigned long long)token);
	(void)!write(job->go, tok, (size_t)n);
	close(job->go);
	job->go = -1;
	/* A look at it first thing: if it died while it waited, its SIGCHLD
	 * came before our handler did. */
	(void)!write(sig_pipe[1], "", 1);
}

/* CMD's leader ended: the terminal comes back to us. */
static void job_ended(struct job *job)
{
	if (job->tty >= 0) {
		job->had_tty = tcgetpgrp(job->tty) == job->pid;
		tty_pass(job->tty, job->pid, getpgrp());
		close(job->tty);
		job->tty = -1;
	}
}

/* CMD's status as ours, once the lock is released.  Ended by INT or QUIT
 * while it had the terminal (Ctrl-C, Ctrl-\), our group gets the signal
 * too, as it would have with CMD in it: a shell script that ran us stops,
 * as the user meant, rather than go on to its next command. */
int job_status(const struct job *job, int st)
{
	int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;

	if (job->had_tty && (sig == SIGINT || sig == SIGQUIT)) {
		signal(sig, SIG_DFL);
		killpg(getpgrp(), sig);
	}
	return child_status(st);
}

/* CMD stopped for the terminal (Ctrl-Z, or it read or wrote it from the
 * background): our group stops too, as it would have with CMD in it, so
 * that the shell sees its job stopped (a script that ran us included) and
 * takes the terminal; once continued, CMD is continued too. */
static void job_suspend(struct job *job, int sig)
{
	tty_pass(job->tty, job->pid, getpgrp());
	killpg(getpgrp(), sig);
	tty_pass(job->tty, getpgrp(), job->pid);
	killpg(job->pid, SIGCONT);
}

int job_lost_lease(struct job *job, const char *name, const char *why)
{
	int st;

	fprintf(stderr, "cohortctl: lock %s lost (%s): stopping the command\n", name, why);
	/* What CMD started must not go on without the lock either: its whole
	 * group is stopped (cohortd does the same when it sees the loss). */
	killpg(job->pid, SIGTERM);
	killpg(job->pid, SIGCONT);
	while (waitpid(job->pid, &st, 0) < 0 && errno == EINTR)
		;
	job_ended(job);
	return EXIT_FAILED;
}

/* After a signal: forwards TERM/INT/HUP to the command's group, relays a
 * stop; its status if it ended. */
bool job_command_ended(struct job *job, int *status)
{
	char b[64];

	while (read(sig_pipe[0], b, sizeof(b)) > 0)
		;
	tty_pass(job->tty, getpgrp(), job->pid);	/* continued in the foreground */
	if (forward_sig) {
		killpg(job->pid, forward_sig);
		forward_sig = 0;
	}
	if (waitpid(job->pid, status, WNOHANG | WUNTRACED) != job->pid)
		return false;
	if (WIFSTOPPED(*status)) {
		int sig = WSTOPSIG(*status);
		/* Without a terminal, whoever stopped it meant it alone. */
		if (job->tty >= 0 && (sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU))
			job_suspend(job, sig);
		return false;
	}
	job_ended(job);
	return true;
}

int job_signal_fd(void)
{
	return sig_pipe[0];
}
