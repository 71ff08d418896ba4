/*
 * config_template.c - service templates: a [service:NAME] section with
 * instances = N stands for the services NAME@0 .. NAME@N-1 (supervisord's
 * numprocs, systemd's name@.service).  config.c parses such a section once
 * per instance, each time with the values of the keys tmpl_key_expands
 * names expanded here first; plan.c and the control commands resolve the
 * names users write through config_match, so that NAME (every instance),
 * NAME@K and NAME@* mean the same in a dependency and on the command line.
 *
 * The "%" rule: only in a section with instances, and only in those keys,
 * "%i" is the instance number, "%{i+N}" the number plus N (ports: 8000
 * for @0, 8001 for @1) and "%%" a "%"; any other "%" there is an error.
 * Everywhere else "%" is an ordinary character, so a command such as
 * date +%s in a config written before templates means what it did.
 */
#include "autoconfig.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"

int tmpl_parse_instances(const char *v, uint64_t *out, struct sbuf *why)
{
	uint64_t n = 0;
	const char *w;

	if (*v && (parse_uint(v, TMPL_INSTANCES_MAX, &n, &w) < 0 || n == 0)) {
		sbuf_addf(why, "expected a number of instances from 1 to %d (the services NAME@0 to "
			  "NAME@N-1), or nothing", TMPL_INSTANCES_MAX);
		return -1;
	}
	*out = n;
	return 0;
}

int tmpl_instances(const char *name, const char *v, uint64_t *n, struct sbuf *why)
{
	if (tmpl_parse_instances(v, n, why) < 0) {
		*n = 1;
		return -1;
	}
	if (*n && strlen(name) + 1 + (size_t)snprintf(NULL, 0, "%" PRIu64, *n - 1) > SVC_NAME_MAX) {
		sbuf_addf(why, "the name %s@%" PRIu64 " would be longer than %d characters", name, *n - 1,
			  SVC_NAME_MAX);
		*n = 1;
		return -1;
	}
	return 0;
}

/* What differs from one instance to the next: what it runs, where, with
 * what around it, where its output goes, and the addresses it is probed
 * on.  The rest (dependencies, timings, rights) is the template's.  A name
 * here that is no key yet (pidfile, for a daemon that forks) is never
 * looked up: config.c walks the key table. */
bool tmpl_key_expands(const char *key)
{
	static const char *const keys[] = {
		"command", "directory", "environment", "environment_file",
		"stdout", "stderr", "ready", "health", "pidfile",
	};

	for (size_t i = 0; i < ARRAY_LEN(keys); i++)
		if (strcmp(keys[i], key) == 0)
			return true;
	return false;
}

/* "%{i}" or "%{i+N}" at p: the number added (0 for "%{i}") and the end,
 * just past "}"; NULL when it is neither. */
static const char *offset_form(const char *p, uint64_t *add)
{
	const char *q = p + 2;
	uint64_t v = 0;

	if (*q++ != 'i')
		return NULL;
	if (*q == '+') {
		size_t nd = strspn(++q, "0123456789");
		if (nd == 0 || nd > 7)
			return NULL;
		for (size_t k = 0; k < nd; k++)
			v = v * 10 + (uint64_t)(q[k] - '0');
		if (v > TMPL_OFFSET_MAX)
			return NULL;
		q += nd;
	}
	if (*q != '}')
		return NULL;
	*add = v;
	return q + 1;
}

int tmpl_expand(const char *in, uint64_t instance, struct sbuf *out, struct sbuf *why)
{
	const char *p = in;

	while (*p) {
		const char *pct = strchr(p, '%');
		if (!pct) {
			sbuf_adds(out, p);
			break;
		}
		sbuf_add(out, p, (size_t)(pct - p));
		uint64_t add = 0;
		const char *end;
		if (pct[1] == '%') {
			sbuf_addc(out, '%');
			p = pct + 2;
		} else if (pct[1] == 'i') {
			sbuf_addf(out, "%" PRIu64, instance);
			p = pct + 2;
		} else if (pct[1] == '{' && (end = offset_form(pct, &add))) {
			sbuf_addf(out, "%" PRIu64, instance + add);
			p = end;
		} else {
			size_t shown = pct[1] == '{' ? strcspn(pct, "} ") + (pct[strcspn(pct, "} ")] == '}') : 2;
			if (!pct[1])
				sbuf_adds(why, "a \"%\" at the end");
			else
				sbuf_addf(why, "\"%.*s\" is not known", (int)(shown > 12 ? 12 : shown), pct);
			sbuf_addf(why, ": in a template %%i is the instance number, %%{i+N} adds N to it "
				  "(N at most %d) and %%%% is a %%", TMPL_OFFSET_MAX);
			return -1;
		}
	}
	return 0;
}

const struct svc_config *config_template(const struct cohort_config *c, const char *name)
{
	return map_get(&c->templates, name);
}

static void push_instances(const struct cohort_config *c, const struct svc_config *first, struct strv *out)
{
	for (uint64_t k = 0; k < first->instances; k++)
		strv_push(out, c->services[first->index + k]->name);
}

int config_match(const struct cohort_config *c, const char *pattern, struct strv *out, struct sbuf *why)
{
	const struct svc_config *s = config_find(c, pattern);
	size_t before = out->n;

	if (s) {
		strv_push(out, s->name);
		return 1;
	}
	if ((s = config_template(c, pattern))) {
		push_instances(c, s, out);
		return (int)s->instances;
	}
	if (strpbrk(pattern, "*?[")) {
		for (size_t i = 0; i < c->nservices; i++)
			if (fnmatch(pattern, c->services[i]->name, 0) == 0)
				strv_push(out, c->services[i]->name);
		if (out->n > before)
			return (int)(out->n - before);
		sbuf_addf(why, "no service matches \"%s\"", pattern);
		return -1;
	}
	sbuf_addf(why, "no such service: %s", pattern);
	const char *at = strrchr(pattern, '@');
	if (at) {
		char *base = xstrndup(pattern, (size_t)(at - pattern));
		if ((s = config_template(c, base)))
			sbuf_addf(why, " (%s has the instances %s@0 to %s@%" PRIu64 ")", base, base, base,
				  s->instances - 1);
		free(base);
	}
	return -1;
}
