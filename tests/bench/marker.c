/*
 * marker.c - the service every supervisor runs in the benchmarks.  The
 * first thing it does is read CLOCK_MONOTONIC and send "NAME PID SEC NSEC"
 * to the unix datagram socket in $MARKER_SOCK, so the bench sees the
 * moment a replacement was exec'd; then it waits for a signal.
 * NAME is argv[1], or the current directory's name (runit and s6 run
 * ./run in the service directory with no arguments).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct timespec ts;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char cwd[PATH_MAX], msg[512];
	const char *name = argc > 1 ? argv[1] : NULL;
	const char *sock = getenv("MARKER_SOCK");

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (!name) {
		name = getcwd(cwd, sizeof(cwd)) ? strrchr(cwd, '/') + 1 : "?";
	}
	if (sock && strlen(sock) < sizeof(sa.sun_path)) {
		int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
		strcpy(sa.sun_path, sock);
		int n = snprintf(msg, sizeof(msg), "%s %d %lld %ld", name, (int)getpid(),
				 (long long)ts.tv_sec, ts.tv_nsec);
		sendto(fd, msg, (size_t)n, 0, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
	}
	for (;;)
		pause();
}
