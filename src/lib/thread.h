/*
 * thread.h - starting a helper thread (the journal's and the log's
 * writers, the lock table's token counter) that never takes a signal:
 * signals are the loop's, and one that lands on a helper thread would not
 * interrupt the loop's wait.
 */
#ifndef COHORT_THREAD_H
#define COHORT_THREAD_H

#include <pthread.h>

/* pthread_create with every signal blocked in the new thread; 0, or the
 * error number pthread_create returned.  The caller's mask is unchanged. */
int thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
