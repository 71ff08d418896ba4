/*
 * cohort.h - libcohort, the C client of cohortd's bus and lock service.
 */
#ifndef COHORT_H
#define COHORT_H

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *cohort_version(void);

#ifdef __cplusplus
}
#endif

#endif
