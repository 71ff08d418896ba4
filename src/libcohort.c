/*
 * libcohort.c - the client library (see cohort.h).
 */
#include "autoconfig.h"

#include "cohort.h"

const char *cohort_version(void)
{
	return PACKAGE_VERSION;
}
