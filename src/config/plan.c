/*
 * plan.c - see plan.h.  One iterative depth-first search over the
 * requires + after graph computes every phase in post-order and finds
 * every cycle (an edge back to a service still on the stack); the stack
 * itself gives the cycle's path for the message.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "util.h"

enum color { WHITE, GRAY, BLACK };

static void edges_free(struct edges *e)
{
	free(e->off);
	free(e->to);
}

static const struct strv *list_of(const struct svc_config *s, size_t off)
{
	return (const struct strv *)((const char *)s + off);
}

/* The section a service comes from, for messages: a template's
 * [service:NAME] is one section for all its instances. */
static const char *section_name(const struct svc_config *s)
{
	return s->template_name ? s->template_name : s->name;
}

/* One name of s's list: its services' indexes pushed to *to, or an error
 * (once for a template: its instances share the list). */
static void resolve_one(const struct cohort_config *cfg, struct diag *d, const struct svc_config *s,
			const char *key, const char *dep, const char **names, size_t **to, size_t *n, size_t *cap)
{
	struct strv found = {0};
	struct sbuf why = {0};
	bool speak = s->instance == 0;
	int line = svc_key_line(s, key);

	if (config_match(cfg, dep, &found, &why) < 0) {
		const char *m = strchr(dep, '@') ? NULL : did_you_mean(dep, names, cfg->nservices);
		const char *has = strstr(why.buf, " (");
		if (speak)
			diag_add(d, s->file, line, "[service:%s]: %s \"%s\": no such service%s%s%s%s",
				 section_name(s), key, dep, m ? " (did you mean \"" : "", m ? m : "",
				 m ? "\"?)" : "", has ? has : "");
	}
	for (size_t k = 0; k < found.n; k++) {
		const struct svc_config *t = config_find(cfg, found.v[k]);
		if (t == s || (s->template_name && t->template_name && !strcmp(s->template_name, t->template_name))) {
			if (speak)
				diag_add(d, s->file, line, "[service:%s]: %s itself%s", section_name(s), key,
					 s->template_name ? " (an instance of the same template)" : "");
			break;
		}
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			*to = xrealloc(*to, *cap * sizeof(**to));
		}
		(*to)[(*n)++] = t->index;
	}
	strv_free(&found);
	sbuf_free(&why);
}

/* Resolves the names of one list (requires or after) into edges: a
 * template's NAME is an edge to each of its instances. */
static void resolve(const struct cohort_config *cfg, struct diag *d, size_t list_off,
		    const char *key, const char **names, struct edges *e)
{
	size_t n = cfg->nservices, total = 0, cap = 16;

	e->off = xcalloc(n + 1, sizeof(size_t));
	e->to = xcalloc(cap, sizeof(size_t));
	for (size_t i = 0; i < n; i++) {
		const struct svc_config *s = cfg->services[i];
		const struct strv *list = list_of(s, list_off);

		e->off[i] = total;
		for (size_t k = 0; k < list->n; k++)
			resolve_one(cfg, d, s, key, list->v[k], names, &e->to, &total, &cap);
	}
	e->off[n] = total;
}

static void report_cycle(const struct cohort_config *cfg, struct diag *d,
			 const size_t *stack, size_t depth, size_t target)
{
	struct sbuf b = {0};
	size_t from = depth;

	while (from > 0 && stack[from - 1] != target)
		from--;
	from = from ? from - 1 : 0;
	for (size_t k = from; k < depth; k++)
		sbuf_addf(&b, "%s -> ", section_name(cfg->services[stack[k]]));
	sbuf_adds(&b, section_name(cfg->services[target]));
	const struct svc_config *s = cfg->services[target];
	int line = svc_key_line(s, s->requires.n ? "requires" : "after");
	diag_add(d, s->file, line, "[service:%s]: dependency cycle: %s", section_name(s), b.buf);
	sbuf_free(&b);
}

/* Phases by iterative DFS.  deps(i) = requires(i) + after(i). */
static int compute_phases(struct plan *p, struct diag *d)
{
	size_t n = p->n;
	unsigned char *color = xcalloc(n ? n : 1, 1);
	size_t *stack = xmalloc((n ? n : 1) * sizeof(size_t));
	size_t *next = xcalloc(n ? n : 1, sizeof(size_t));	/* next edge to visit */
	bool *broken = xcalloc(n ? n : 1, sizeof(bool));
	size_t before = d->count;

	for (size_t root = 0; root < n; root++) {
		if (color[root] != WHITE)
			continue;
		size_t depth = 0;
		stack[depth++] = root;
		color[root] = GRAY;
		while (depth) {
			size_t i = stack[depth - 1];
			size_t nreq = p->requires.off[i + 1] - p->requires.off[i];
			size_t nall = nreq + p->after.off[i + 1] - p->after.off[i];
			if (next[i] < nall) {
				size_t k = next[i]++;
				size_t j = k < nreq ? p->requires.to[p->requires.off[i] + k]
						    : p->after.to[p->after.off[i] + k - nreq];
				if (color[j] == WHITE) {
					color[j] = GRAY;
					stack[depth++] = j;
				} else if (color[j] == GRAY) {
					report_cycle(p->cfg, d, stack, depth, j);
					broken[j] = true;
				} else if (broken[j]) {
					broken[i] = true;
				} else if (p->phase[j] + 1 > p->phase[i]) {
					p->phase[i] = p->phase[j] + 1;
				}
				continue;
			}
			/* All deps done: i's implied phase is final. */
			depth--;
			color[i] = BLACK;
			if (p->phase[i] == 0)
				p->phase[i] = 1;
			const struct svc_config *s = p->cfg->services[i];
			if (s->phase && s->phase < p->phase[i] && !broken[i]) {
				diag_add(d, s->file, svc_key_line(s, "phase"),
					 "[service:%s]: phase = %llu is lower than the %u its dependencies imply",
					 section_name(s), (unsigned long long)s->phase, p->phase[i]);
			} else if (s->phase) {
				p->phase[i] = (unsigned)s->phase;
			}
			if (depth) {
				size_t parent = stack[depth - 1];
				if (broken[i])
					broken[parent] = true;
				else if (p->phase[i] + 1 > p->phase[parent])
					p->phase[parent] = p->phase[i] + 1;
			}
		}
	}
	free(color);
	free(stack);
	free(next);
	free(broken);
	return d->count > before ? -1 : 0;
}

/* Counting sort of services by phase, keeping config order. */
static void order_by_phase(struct plan *p)
{
	p->nphases = 0;
	for (size_t i = 0; i < p->n; i++)
		if (p->phase[i] > p->nphases)
			p->nphases = p->phase[i];
	p->phase_start = xcalloc(p->nphases + 2, sizeof(size_t));
	for (size_t i = 0; i < p->n; i++)
		p->phase_start[p->phase[i] + 1]++;
	for (unsigned ph = 1; ph <= p->nphases; ph++)
		p->phase_start[ph + 1] += p->phase_start[ph];
	size_t *fill = xmalloc((p->nphases + 2) * sizeof(size_t));
	memcpy(fill, p->phase_start, (p->nphases + 2) * sizeof(size_t));
	p->order = xmalloc((p->n ? p->n : 1) * sizeof(size_t));
	for (size_t i = 0; i < p->n; i++)
		p->order[fill[p->phase[i]]++] = i;
	free(fill);
}

/* The reverse of a set of edges. */
static void reverse(size_t n, const struct edges *fwd, struct edges *r)
{
	r->off = xcalloc(n + 1, sizeof(size_t));
	r->to = xcalloc(fwd->off[n] + 1, sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		PLAN_EACH_EDGE(fwd, i, j)
			r->off[j + 1]++;
	for (size_t i = 0; i < n; i++)
		r->off[i + 1] += r->off[i];
	size_t *fill = xmalloc((n + 1) * sizeof(size_t));
	memcpy(fill, r->off, (n + 1) * sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		PLAN_EACH_EDGE(fwd, i, j)
			r->to[fill[j]++] = i;
	free(fill);
}

struct plan *plan_build(const struct cohort_config *cfg, struct diag *d)
{
	struct plan *p = xcalloc(1, sizeof(*p));
	size_t before = d->count;
	const char **names = xmalloc((cfg->nservices + 1) * sizeof(char *));

	p->cfg = cfg;
	p->n = cfg->nservices;
	for (size_t i = 0; i < p->n; i++)
		names[i] = cfg->services[i]->name;
	resolve(cfg, d, offsetof(struct svc_config, requires), "requires", names, &p->requires);
	resolve(cfg, d, offsetof(struct svc_config, after), "after", names, &p->after);
	free(names);
	p->phase = xcalloc(p->n + 1, sizeof(unsigned));
	if (compute_phases(p, d) < 0 || d->count > before) {
		plan_free(p);
		return NULL;
	}
	order_by_phase(p);
	reverse(p->n, &p->requires, &p->required_by);
	reverse(p->n, &p->after, &p->after_by);
	return p;
}

void plan_free(struct plan *p)
{
	if (!p)
		return;
	edges_free(&p->requires);
	edges_free(&p->after);
	edges_free(&p->required_by);
	edges_free(&p->after_by);
	free(p->phase);
	free(p->order);
	free(p->phase_start);
	free(p);
}

struct cohort_config *plan_load(const char *path, struct plan **plan, struct diag *d)
{
	size_t before = d->count;
	struct cohort_config *cfg = config_load(path, d);

	*plan = NULL;
	/* No services is an error config_load reported: nothing to plan. */
	if (cfg && cfg->nservices)
		*plan = plan_build(cfg, d);
	if (d->count == before)
		return cfg;
	plan_free(*plan);
	*plan = NULL;
	config_free(cfg);
	return NULL;
}

size_t plan_index(const struct plan *p, const char *name)
{
	const struct svc_config *s = config_find(p->cfg, name);

	return s ? s->index : (size_t)-1;
}

static void print_names(FILE *f, const char *label, const struct strv *names, bool *first)
{
	if (!names->n)
		return;
	fprintf(f, "%s%s ", *first ? "" : "; ", label);
	for (size_t i = 0; i < names->n; i++)
		fprintf(f, "%s%s", i ? ", " : "", names->v[i]);
	*first = false;
}

void plan_print(const struct plan *p, FILE *f)
{
	unsigned used = 0;
	size_t width = 4;

	for (unsigned ph = 1; ph <= p->nphases; ph++)
		if (p->phase_start[ph + 1] > p->phase_start[ph])
			used++;
	for (size_t i = 0; i < p->n; i++)
		if (strlen(p->cfg->services[i]->name) > width)
			width = strlen(p->cfg->services[i]->name);
	fprintf(f, "%s: %zu service%s in %u phase%s\n", p->cfg->file, p->n, p->n == 1 ? "" : "s",
		used, used == 1 ? "" : "s");
	for (unsigned ph = 1; ph <= p->nphases; ph++) {
		if (p->phase_start[ph + 1] == p->phase_start[ph])
			continue;
		fprintf(f, "phase %u:\n", ph);
		for (size_t k = p->phase_start[ph]; k < p->phase_start[ph + 1]; k++) {
			const struct svc_config *s = p->cfg->services[p->order[k]];
			bool first = true;
			fprintf(f, "  %-*s  ", (int)width, s->name);
			print_names(f, "requires", &s->requires, &first);
			print_names(f, "after", &s->after, &first);
			fprintf(f, "%sready %s", first ? "" : "; ", s->ready.text);
			if (s->rare->health.kind != CHECK_NONE) {
				char every[32];
				format_duration_ms(s->rare->health_interval_ms, every, sizeof(every));
				fprintf(f, "; health %s every %s", s->rare->health.text, every);
			}
			if (!s->autostart)
				fprintf(f, "; autostart no");
			fprintf(f, "\n");
		}
	}
}
