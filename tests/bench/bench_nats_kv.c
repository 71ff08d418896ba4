/*
 * bench_nats_kv.c - the floor of the cluster lock benchmark
 * (bench_cluster.py): the same lock operations cohortd does on the NATS
 * key-value store, done directly with libnats from this process, so that
 * cohortd's figures can be read as "NATS, plus what cohort adds".
 *
 *   bench_nats_kv raw|kv URLS [SECONDS]
 *
 * BENCH_NATS_B_URLS: the hand-over's B connects there (its own
 * connection; else it shares A's).  BENCH_FLOOR_BESIDE=STREAM: the floor's
 * bucket is placed on the server that leads STREAM (cohortd's bucket), by
 * that server's tag (tests/cluster/natscluster.py tags each with its
 * name): the requests of both then travel the same way.
 *
 * raw: exactly cohortd's requests (cluster_conn.c): acquire = a publish
 *      expecting the delete marker known to be the key's last message (its
 *      own delete's, or the watch's), else the key's last message read
 *      first (js_GetLastMsg); release = a delete marker published
 *      expecting our revision.
 * kv:  the KV API a libnats user reaches for first: kvStore_Create (which
 *      in libnats 3.4 tries, then reads a delete marker, then updates on
 *      it) + the same guarded delete (kvStore_Delete checks no revision).
 *
 * Printed as bench_lock prints (bench_locks.py and bench_cluster.py parse
 * both): uncontended 1 and 16 clients, each its own key, one shared
 * connection (as cohortd has one); the hand-over: B watches the key A
 * holds (kvStore_Watch), and creates it when it sees the delete; from A
 * sending its delete to B's create acknowledged.
 */
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUCKET "COHORT_BENCH_FLOOR"

static natsConnection *nc, *nc_b;
static jsCtx *js_a, *js_b;
static kvStore *kv_a, *kv_b;
static __thread jsCtx *js;	/* this thread's side: A's, or the hand-over's B's */
static __thread kvStore *kv;
static bool raw;
static double seconds = 2.0;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, natsStatus s)
{
	fprintf(stderr, "bench_nats_kv: %s: %s (%s)\n", what, natsStatus_GetText(s), nats_GetLastError(NULL));
	exit(1);
}

static uint64_t put_expecting(const char *subj, uint64_t expect)
{
	jsPubOptions po;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	uint64_t rev = 0;

	jsPubOptions_Init(&po);
	if (expect)
		po.ExpectLastSubjectSeq = expect;
	else
		po.ExpectNoMessage = true;
	if (js_Publish(&pa, js, subj, "ttl_ms=10000 owner=bench", 24, &po, &jerr) == NATS_OK)
		rev = pa->Sequence;
	jsPubAck_Destroy(pa);
	return rev;
}

/* 0 when the key is taken; else the revision it got.  hint: a delete
 * marker known to be the key's last message (raw: written on at once, as
 * cohortd does; read first only if the key moved since). */
static uint64_t acquire(const char *key, uint64_t hint)
{
	char subj[256];
	uint64_t rev = 0;
	jsErrCode jerr = 0;
	natsStatus s;

	if (!raw) {
		s = kvStore_Create(&rev, kv, key, "ttl_ms=10000 owner=bench", 24);
		return s == NATS_OK ? rev : 0;
	}
	snprintf(subj, sizeof(subj), "$KV.%s.%s", BUCKET, key);
	if (hint && (rev = put_expecting(subj, hint)))
		return rev;
	natsMsg *last = NULL;
	uint64_t expect = 0;
	s = js_GetLastMsg(&last, js, "KV_" BUCKET, subj, NULL, &jerr);
	if (s == NATS_OK) {
		const char *op = NULL;
		bool deleted = natsMsgHeader_Get(last, "KV-Operation", &op) == NATS_OK && op;
		expect = natsMsg_GetSequence(last);
		natsMsg_Destroy(last);
		if (!deleted)
			return 0;
	} else if (s != NATS_NOT_FOUND) {
		die("read", s);
	}
	return put_expecting(subj, expect);
}

/* The delete marker's revision. */
static uint64_t release(const char *key, uint64_t rev)
{
	char subj[256];
	natsMsg *m = NULL;
	jsPubOptions po;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;

	snprintf(subj, sizeof(subj), "$KV.%s.%s", BUCKET, key);
	natsStatus s = natsMsg_Create(&m, subj, NULL, NULL, 0);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "KV-Operation", "DEL");
	jsPubOptions_Init(&po);
	po.ExpectLastSubjectSeq = rev;
	if (s == NATS_OK)
		s = js_PublishMsg(&pa, js, m, &po, &jerr);
	if (s != NATS_OK)
		die("release", s);
	uint64_t marker = pa->Sequence;
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(m);
	return marker;
}

/* --- uncontended ---------------------------------------------------------- */

struct worker {
	pthread_t th;
	int id;
	int64_t end_ns;
	int64_t *lat;
	size_t n, cap;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char key[64];

	uint64_t marker = 0;

	js = js_a;
	kv = kv_a;
	snprintf(key, sizeof(key), "bench=2Eclient%d", w->id);
	while (now_ns() < w->end_ns) {
		int64_t t0 = now_ns();
		uint64_t rev = acquire(key, marker);
		if (!rev) {
			fprintf(stderr, "uncontended create failed\n");
			exit(1);
		}
		marker = release(key, rev);
		if (w->n == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 65536;
			w->lat = realloc(w->lat, w->cap * sizeof(int64_t));
		}
		w->lat[w->n++] = now_ns() - t0;
	}
	return NULL;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void uncontended(int nclients)
{
	struct worker *ws = calloc((size_t)nclients, sizeof(*ws));
	int64_t start = now_ns(), end = start + (int64_t)(seconds * 1e9);
	size_t total = 0, k = 0;

	for (int i = 0; i < nclients; i++) {
		ws[i].id = i;
		ws[i].end_ns = end;
		pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
	}
	for (int i = 0; i < nclients; i++) {
		pthread_join(ws[i].th, NULL);
		total += ws[i].n;
	}
	double elapsed = (double)(now_ns() - start) / 1e9;
	int64_t *all = malloc(total * sizeof(int64_t));
	for (int i = 0; i < nclients; i++) {
		memcpy(all + k, ws[i].lat, ws[i].n * sizeof(int64_t));
		k += ws[i].n;
		free(ws[i].lat);
	}
	qsort(all, total, sizeof(int64_t), cmp64);
	printf("uncontended %2d client%s: acquire+release p50 %7.1f us  p99 %7.1f us  %9.0f pairs/s\n", nclients,
	       nclients == 1 ? " " : "s", (double)all[total / 2] / 1e3,
	       (double)all[(size_t)((double)total * 0.99)] / 1e3, (double)total / elapsed);
	free(all);
	free(ws);
}

/* --- hand-over ------------------------------------------------------------ */

/* A (the main thread) holds the key; B (its own thread, its own watch)
 * waits for the delete and creates the key then, as a cohortd does. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t held;		/* A's revision, for B to see go by */
	bool ready;		/* B has seen A's put: it waits for the delete */
	int64_t t0, got_ns;	/* A's release sent; B's create acknowledged */
	uint64_t got;		/* B's revision, 0 while not yet */
	uint64_t marker;	/* B's delete: A's next create writes on it */
	int rounds;
} ho = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false, 0, 0, 0, 0, 0};

static const char HO_KEY[] = "bench=2Ehandover";

static kvEntry *next_entry(kvWatcher *w)
{
	kvEntry *e = NULL;
	natsStatus s;

	while ((s = kvWatcher_Next(&e, w, 5000)) == NATS_OK && !e)
		;	/* the end of the initial values */
	if (s != NATS_OK)
		die("watch next", s);
	return e;
}

static void *b_main(void *arg)
{
	kvWatcher *w = NULL;
	kvWatchOptions o;
	natsStatus s;
	(void)arg;

	js = js_b;
	kv = kv_b;
	kvWatchOptions_Init(&o);
	if ((s = kvStore_Watch(&w, kv, HO_KEY, &o)) != NATS_OK)
		die("watch", s);
	for (int i = 0; i < ho.rounds; i++) {
		uint64_t held = 0;
		pthread_mutex_lock(&ho.mu);
		while (!ho.held)
			pthread_cond_wait(&ho.cv, &ho.mu);
		held = ho.held;
		pthread_mutex_unlock(&ho.mu);
		kvEntry *e;
		while ((e = next_entry(w)) && kvEntry_Revision(e) < held)
			kvEntry_Destroy(e);
		kvEntry_Destroy(e);
		pthread_mutex_lock(&ho.mu);
		ho.ready = true;
		pthread_cond_broadcast(&ho.cv);
		pthread_mutex_unlock(&ho.mu);
		uint64_t got = 0;
		while (!got) {
			e = next_entry(w);
			bool del = kvEntry_Operation(e) != kvOp_Put;
			uint64_t at = kvEntry_Revision(e);
			kvEntry_Destroy(e);
			if (del)
				got = acquire(HO_KEY, at);
		}
		int64_t t = now_ns();
		uint64_t marker = release(HO_KEY, got);
		while ((e = next_entry(w)) && kvEntry_Revision(e) <= got)
			kvEntry_Destroy(e);	/* its own create and delete go by */
		kvEntry_Destroy(e);
		pthread_mutex_lock(&ho.mu);
		ho.got = got;
		ho.got_ns = t;
		ho.marker = marker;
		pthread_cond_broadcast(&ho.cv);
		pthread_mutex_unlock(&ho.mu);
	}
	kvWatcher_Destroy(w);
	return NULL;
}

static void contended(int rounds)
{
	int64_t *lat = calloc((size_t)rounds, sizeof(int64_t));
	pthread_t b;

	ho.rounds = rounds;
	pthread_create(&b, NULL, b_main, NULL);
	for (int i = 0; i < rounds; i++) {
		uint64_t rev = 0;
		while (!(rev = acquire(HO_KEY, ho.marker)))
			;
		pthread_mutex_lock(&ho.mu);
		ho.held = rev;
		ho.ready = false;
		ho.got = 0;
		pthread_cond_broadcast(&ho.cv);
		while (!ho.ready)
			pthread_cond_wait(&ho.cv, &ho.mu);
		ho.held = 0;
		pthread_mutex_unlock(&ho.mu);
		int64_t t0 = now_ns();
		release(HO_KEY, rev);
		pthread_mutex_lock(&ho.mu);
		while (!ho.got)
			pthread_cond_wait(&ho.cv, &ho.mu);
		lat[i] = ho.got_ns - t0;
		pthread_mutex_unlock(&ho.mu);
	}
	pthread_join(b, NULL);
	qsort(lat, (size_t)rounds, sizeof(int64_t), cmp64);
	printf("contended hand-over (release -> next holder): p50 %7.1f us  p99 %7.1f us  (%d rounds)\n",
	       (double)lat[rounds / 2] / 1e3, (double)lat[(int)(rounds * 0.99)] / 1e3, rounds);
	free(lat);
}

static natsConnection *connect_to(const char *urls)
{
	natsOptions *opts = NULL;
	natsConnection *c = NULL;
	const char *servers[8];
	int nservers = 0;
	char *copy = strdup(urls), *save = NULL;
	natsStatus s;

	for (char *u = strtok_r(copy, ", ", &save); u && nservers < 8; u = strtok_r(NULL, ", ", &save))
		servers[nservers++] = u;
	if ((s = natsOptions_Create(&opts)) != NATS_OK ||
	    (s = natsOptions_SetServers(opts, servers, nservers)) != NATS_OK ||
	    (s = natsOptions_SetTimeout(opts, 2000)) != NATS_OK ||
	    (s = natsConnection_Connect(&c, opts)) != NATS_OK)
		die("connect", s);
	natsOptions_Destroy(opts);
	free(copy);
	return c;
}

static jsCtx *jetstream(natsConnection *c)
{
	jsOptions jo;
	jsCtx *j = NULL;
	natsStatus s;

	jsOptions_Init(&jo);
	jo.Wait = 2000;
	if ((s = natsConnection_JetStream(&j, c, &jo)) != NATS_OK)
		die("jetstream", s);
	return j;
}

/* The server leading stream, and its cluster; "" if none is known. */
static void leader_of(const char *stream, char *out, size_t len, char *cluster, size_t clen)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;

	out[0] = cluster[0] = '\0';
	if (js_GetStreamInfo(&si, js, stream, NULL, &jerr) == NATS_OK && si->Cluster && si->Cluster->Leader) {
		snprintf(out, len, "%s", si->Cluster->Leader);
		snprintf(cluster, clen, "%s", si->Cluster->Name ? si->Cluster->Name : "");
	}
	jsStreamInfo_Destroy(si);
}

/* The bucket as js_CreateKeyValue makes it (libnats 3.4.1, kv.c), its
 * stream placed on the server tagged `tag`. */
static void bucket_on(const char *cluster, const char *tag)
{
	jsStreamConfig sc;
	jsPlacement pl;
	const char *subjects[] = {"$KV." BUCKET ".>"};
	const char *tags[] = {tag};
	jsErrCode jerr = 0;
	natsStatus s;

	js_DeleteStream(js, "KV_" BUCKET, NULL, &jerr);
	jsStreamConfig_Init(&sc);
	jsPlacement_Init(&pl);
	pl.Cluster = cluster;
	pl.Tags = tags;
	pl.TagsLen = 1;
	sc.Name = "KV_" BUCKET;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.MaxMsgsPerSubject = 1;
	sc.MaxBytes = -1;
	sc.MaxMsgSize = -1;
	sc.Storage = js_FileStorage;
	sc.Replicas = 1;	/* as cohortd's bucket (cluster.c says why) */
	sc.AllowRollup = true;
	sc.DenyDelete = true;
	sc.AllowDirect = true;
	sc.Discard = js_DiscardNew;
	sc.Duplicates = 120LL * 1000000000;
	sc.Placement = &pl;
	if ((s = js_AddStream(NULL, js, &sc, NULL, &jerr)) != NATS_OK)
		die("bucket placed", s);
}

int main(int argc, char **argv)
{
	kvConfig kc;
	natsStatus s;
	const char *beside = getenv("BENCH_FLOOR_BESIDE"), *b_urls = getenv("BENCH_NATS_B_URLS");

	if (argc < 3 || (strcmp(argv[1], "raw") && strcmp(argv[1], "kv"))) {
		fprintf(stderr, "usage: bench_nats_kv raw|kv URLS [SECONDS]\n");
		return 2;
	}
	raw = strcmp(argv[1], "raw") == 0;
	if (argc > 3)
		seconds = atof(argv[3]);
	nc = connect_to(argv[2]);
	js = js_a = jetstream(nc);
	if (beside && *beside) {
		char want[128], have[128], cluster[128], other[128];
		leader_of(beside, want, sizeof(want), cluster, sizeof(cluster));
		leader_of("KV_" BUCKET, have, sizeof(have), other, sizeof(other));
		if (!*want)
			die("no leader for BENCH_FLOOR_BESIDE's stream", NATS_NOT_FOUND);
		if (strcmp(want, have) != 0)
			bucket_on(cluster, want);
	}
	kvConfig_Init(&kc);
	kc.Bucket = BUCKET;
	kc.History = 1;
	kc.Replicas = 1;	/* as cohortd's bucket (cluster.c says why) */
	if ((s = js_KeyValue(&kv_a, js, BUCKET)) != NATS_OK && (s = js_CreateKeyValue(&kv_a, js, &kc)) != NATS_OK)
		die("bucket", s);
	kv = kv_a;
	nc_b = b_urls && *b_urls ? connect_to(b_urls) : NULL;
	js_b = nc_b ? jetstream(nc_b) : js_a;
	if (nc_b && (s = js_KeyValue(&kv_b, js_b, BUCKET)) != NATS_OK)
		die("bucket (B)", s);
	if (!nc_b)
		kv_b = kv_a;
	uncontended(1);
	uncontended(16);
	contended(getenv("BENCH_HANDOVER_ROUNDS") ? atoi(getenv("BENCH_HANDOVER_ROUNDS")) : 300);
	if (nc_b) {
		kvStore_Destroy(kv_b);
		jsCtx_Destroy(js_b);
		natsConnection_Destroy(nc_b);
	}
	kvStore_Destroy(kv_a);
	jsCtx_Destroy(js_a);
	natsConnection_Destroy(nc);
	nats_Close();
	return 0;
}
