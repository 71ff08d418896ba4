/*
 * bus_mirror.c - see bus_mirror.h.  A change only marks its topic; the
 * files are written from a prepare watcher, once per loop iteration, so a
 * burst of updates to one value (or the replay of the journal at start)
 * writes the file once, with its last value.  Each write is a .new file,
 * fsync, rename and fsync of the directory (write_file_atomic): a reader
 * sees the old file or the new one, never a part.  A value cleared
 * (retain with data null) removes its file.  Files of topics no retained
 * value has are left alone: programs not yet migrated may keep theirs
 * there.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "bus_trie.h"
#include "log.h"

const char *bus_mirror_name(const char *pattern, const char *topic)
{
	if (!topic_matches(pattern, topic))
		return NULL;
	/* Skip the segments the pattern spells out, up to its first wildcard. */
	const char *p = pattern, *t = topic;
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		if ((n == 1 && (*p == '*' || *p == '>')) || !dot)
			break;
		p = dot + 1;
		t = strchr(t, '.') + 1;	/* it matched: the topic has this segment */
	}
	return t;	/* no wildcard: its last segment */
}

static void write_one(struct bus *b, const char *topic)
{
	struct bus_mirror *mr = &b->mirror;
	const char *name = NULL;

	for (size_t i = 0; i < mr->topics.n && !name; i++)
		name = bus_mirror_name(mr->topics.v[i], topic);
	if (!name)
		return;
	char *path = xasprintf("%s/%s.json", mr->dir, name);
	struct bus_msg *m = map_get(&b->retained, topic);
	int rc;
	if (m) {
		char *text = xmalloc(m->data_len + 1);
		memcpy(text, m->data, m->data_len);
		text[m->data_len] = '\n';
		rc = write_file_atomic(path, text, m->data_len + 1);
		free(text);
	} else {
		rc = unlink(path) < 0 && errno != ENOENT ? -1 : 0;
	}
	if (rc < 0 && !mr->warned) {
		mr->warned = true;
		log_warn(NULL, "state_mirror_dir: cannot %s %s: %s (the bus keeps the value; not warning "
			 "again until a write works)", m ? "write" : "remove", path, strerror(errno));
	} else if (rc == 0 && mr->warned) {
		mr->warned = false;
		log_info(NULL, "state_mirror_dir: %s written again", path);
	}
	free(path);
}

static void write_pending(struct bus *b)
{
	struct bus_mirror *mr = &b->mirror;
	size_t it = 0;
	void *v;

	if (!mr->dirty.len)
		return;
	while (map_next(&mr->dirty, &it, NULL, &v))
		write_one(b, v);
	it = 0;
	while (map_next(&mr->dirty, &it, NULL, &v))
		free(v);
	map_free(&mr->dirty);
}

static void write_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct bus_mirror *mr = container_of(w, struct bus_mirror, write_w);
	(void)loop;
	(void)revents;

	write_pending(container_of(mr, struct bus, mirror));
}

void bus_mirror_open(struct bus *b, const char *dir, const struct strv *topics)
{
	struct bus_mirror *mr = &b->mirror;

	*mr = (struct bus_mirror){0};
	if (!dir)
		return;
	if (!topics->n) {
		log_warn(NULL, "state_mirror_dir is set but state_mirror_topics is empty: nothing is mirrored");
		return;
	}
	if (mkdir_p(dir, 0755) < 0)
		log_warn(NULL, "state_mirror_dir: cannot make %s: %s", dir, strerror(errno));
	mr->dir = xstrdup(dir);
	strv_copy(&mr->topics, topics);
	ev_prepare_init(&mr->write_w, write_cb);
	ev_prepare_start(b->loop, &mr->write_w);
}

void bus_mirror_changed(struct bus *b, const char *topic)
{
	struct bus_mirror *mr = &b->mirror;

	if (!mr->dir || map_get(&mr->dirty, topic))
		return;
	for (size_t i = 0; i < mr->topics.n; i++) {
		if (bus_mirror_name(mr->topics.v[i], topic)) {
			char *key = xstrdup(topic);
			map_put(&mr->dirty, key, key);
			return;
		}
	}
}

void bus_mirror_close(struct bus *b)
{
	struct bus_mirror *mr = &b->mirror;

	if (!mr->dir)
		return;
	write_pending(b);
	ev_prepare_stop(b->loop, &mr->write_w);
	free(mr->dir);
	mr->dir = NULL;
	strv_free(&mr->topics);
}
