/*
 * cohortctl.c - the command-line client of cohortd's control socket.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("cohortctl %s\n", PACKAGE_VERSION);
		return 0;
	}
	fprintf(argc > 1 && strcmp(argv[1], "--help") == 0 ? stdout : stderr,
		"usage: cohortctl [-s SOCKET] [-c CONFIG] [--json] COMMAND ...\n");
	return argc > 1 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
}
