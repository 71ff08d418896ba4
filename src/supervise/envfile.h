/*
 * envfile.h - environment_file: files of NAME=VALUE lines in the format of
 * systemd's EnvironmentFile=, read at each start of the service.
 */
#ifndef COHORT_ENVFILE_H
#define COHORT_ENVFILE_H

#include <stddef.h>

#include "util.h"

/* Parses text (the contents of file, for messages) into "NAME=VALUE"
 * items appended to out.  -1 with err ("FILE:LINE: ...") on a bad line. */
int envfile_parse(const char *text, size_t len, const char *file, struct strv *out, char *err, size_t errlen);
/* Reads every file of files ("-PATH": may be missing) in order; -1 with
 * err and errno (0 for a bad line) when one cannot be read or parsed. */
int envfile_load(const struct strv *files, struct strv *out, char *err, size_t errlen);

#endif
