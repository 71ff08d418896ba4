/*
 * ctl_stats.c - control requests counted by command, for /metrics.  A
 * command's slot is found by its table entry's name pointer (a few dozen
 * commands: a short scan, no hashing, nothing allocated).
 */
#include "autoconfig.h"

#include "control.h"

void ctl_stats_count(struct control *ctl, const struct ctl_command *cmd, bool error)
{
	if (!cmd) {
		ctl->bad_requests++;
		return;
	}
	size_t i = 0;
	while (i < ctl->nstats && ctl->stats[i].cmd != cmd->name)
		i++;
	if (i == ctl->nstats) {
		if (i == ARRAY_LEN(ctl->stats))
			return;	/* more commands than slots: a new table outgrew it */
		ctl->stats[ctl->nstats++] = (struct ctl_stat){.cmd = cmd->name};
	}
	ctl->stats[i].requests++;
	ctl->stats[i].errors += error;
}
