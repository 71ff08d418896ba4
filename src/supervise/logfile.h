/*
 * logfile.h - services' stdout and stderr, into time-stamped, rotated log
 * files, without ever blocking the event loop on the disk.
 *
 * The loop reads each service's output pipe (struct outpipe) a bounded
 * chunk at a time, stamps every line, and appends it to the file's sink.
 * One writer thread (struct logwriter) owns every file descriptor of every
 * log file: it writes what the sinks hold and rotates the files.  A sink
 * holds at most LOG_PENDING_MAX bytes; what does not fit is dropped,
 * counted, and said in the log file once there is room again.
 */
#ifndef COHORT_LOGFILE_H
#define COHORT_LOGFILE_H

#include <ev.h>
#include <stdint.h>

#include "util.h"

#define LOG_PENDING_MAX (1u << 20)	/* bytes a sink buffers for the writer */
#define LOG_READ_CHUNK (64u << 10)	/* bytes read from a pipe per wake-up */
#define LOG_LINE_MAX (16u << 10)	/* a longer line is cut into pieces */

struct logwriter;
struct logsink;

/* loop: where answers to logfile_tail() are delivered (through an ev_async). */
struct logwriter *logfile_start(struct ev_loop *loop);
/* Writes out what is pending, stops the thread, closes every file. */
void logfile_stop(struct logwriter *w);
/* The sink of path, shared by everyone who writes there (refcounted). */
struct logsink *logfile_sink(struct logwriter *w, const char *path, uint64_t max_size,
			  unsigned backups);
void logfile_sink_put(struct logsink *s);
/* New rotation limits (a reload): the writer uses them from its next write. */
void logfile_sink_limits(struct logsink *s, uint64_t max_size, unsigned backups);
/* Appends whole lines; drops (and counts) what does not fit. */
void logfile_append(struct logsink *s, const char *data, size_t n);
/* Counters of a sink, for status. */
void logfile_sink_stats(struct logsink *s, uint64_t *dropped_lines, uint64_t *written);
const char *logfile_sink_path(const struct logsink *s);

/* The last `lines` lines of path (rotated files included), read by the
 * writer thread once everything pending has been written.  fn runs on the
 * loop with the text (NULL and err set on failure); tag is passed back. */
typedef void (*logfile_tail_fn)(void *arg, uint64_t tag, const char *text, size_t len, const char *err);
void logfile_tail(struct logwriter *w, const char *path, unsigned backups, unsigned lines,
	       logfile_tail_fn fn, void *arg, uint64_t tag);

/* A pipe from a service's stdout/stderr into a sink. */
struct outpipe;
/* Sees every stamped line as it is logged (for `log --follow`). */
typedef void (*outpipe_lines_fn)(struct outpipe *p, const char *lines, size_t len);

struct outpipe {
	ev_io io;		/* read end, non-blocking */
	outpipe_lines_fn on_lines;	/* optional */
	void *owner;
	int wfd;		/* write end, handed to each new child */
	struct logsink *sink;
	struct sbuf partial;	/* a line not yet ended */
	uint64_t dropped_lines;	/* dropped by the sink while we wrote */
};

/* Opens the pipe and starts reading it on loop.  -1 with errno. */
int outpipe_open(struct outpipe *p, struct ev_loop *loop, struct logsink *sink);
/* Reads whatever is there now (used before shutdown), then stops. */
void outpipe_close(struct outpipe *p, struct ev_loop *loop);

#endif
