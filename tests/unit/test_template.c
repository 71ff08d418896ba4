/*
 * Unit tests of service templates (config_template.c, and what config.c
 * and plan.c do with them): the expansion of %i, %{i+N} and %%, the
 * instances a section becomes, the names users write (config_match), the
 * dependencies on a template, and what a reload compares.
 */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <string.h>

#include "config_keys.h"
#include "helpers.h"
#include "plan.h"
#include "topic.h"

static struct diag d;
static struct cohort_config *cfg;

static void setup(void)
{
	d = (struct diag){0};
	cfg = NULL;
}

static void teardown(void)
{
	config_free(cfg);
	diag_free(&d);
	th_cleanup();
}

TestSuite(template, .init = setup, .fini = teardown);

static struct cohort_config *good(const char *text)
{
	cfg = th_load(text, &d);
	cr_assert_not_null(cfg);
	cr_assert_eq(d.count, 0, "unexpected errors:\n%s", th_diag_text(&d));
	return cfg;
}

static void bad(const char *text, const char *needle)
{
	struct cohort_config *c = th_load(text, &d);

	cr_assert_gt(d.count, 0, "no error for:\n%s", text);
	cr_assert(th_diag_has(&d, needle), "want \"%s\" in:\n%s", needle, th_diag_text(&d));
	config_free(c);
	diag_free(&d);
}

/* expand(in, i): the text, or "ERROR: why". */
static const char *expand(const char *in, uint64_t i)
{
	static char buf[512];
	struct sbuf out = {0}, why = {0};

	if (tmpl_expand(in, i, &out, &why) < 0)
		snprintf(buf, sizeof(buf), "ERROR: %s", why.buf);
	else
		snprintf(buf, sizeof(buf), "%s", out.buf ? out.buf : "");
	sbuf_free(&out);
	sbuf_free(&why);
	return buf;
}

Test(template, expansion_of_i_offsets_and_percent)
{
	cr_assert_str_eq(expand("worker --id %i", 7), "worker --id 7");
	cr_assert_str_eq(expand("tcp:127.0.0.1:%{i+8000}", 3), "tcp:127.0.0.1:8003");
	cr_assert_str_eq(expand("%{i}-%{i+0}-%i%i", 12), "12-12-1212");
	cr_assert_str_eq(expand("date +%%s; echo 100%%", 1), "date +%s; echo 100%");
	cr_assert_str_eq(expand("no percent", 1), "no percent");
	cr_assert_str_eq(expand("", 1), "");
	cr_assert_str_eq(expand("%{i+1000000}", 9999), "1009999");
	cr_assert(str_starts(expand("a %q b", 0), "ERROR: \"%q\" is not known: in a template %i"));
	cr_assert(str_starts(expand("%{i+x}", 0), "ERROR: \"%{i+x}\" is not known"));
	cr_assert(str_starts(expand("%{i+1000001}", 0), "ERROR: \"%{i+1000001}\" is not known"));
	cr_assert(str_starts(expand("%{j}", 0), "ERROR:"));
	cr_assert(str_starts(expand("%{i+5", 0), "ERROR:"));
	cr_assert(str_starts(expand("50%", 0), "ERROR: a \"%\" at the end"));
	cr_assert(str_starts(expand("%s", 0), "ERROR: \"%s\" is not known"));
}

Test(template, instances_become_services_with_their_values_expanded)
{
	good("[service:worker]\ninstances = 3\n"
	     "command = /bin/worker --port %{i+8000} --id %i\n"
	     "environment = ID=%i, PCT=100%%\n"
	     "directory = /srv/w%i\n"
	     "stdout = /tmp/w%i.out\n"
	     "ready = tcp:127.0.0.1:%{i+8000}\n"
	     "health = http://127.0.0.1:%{i+9000}/health\n"
	     "requires = db\n"
	     "[service:db]\ncommand = /bin/db %s\n");
	cr_assert_eq(cfg->nservices, 4);
	cr_assert_null(config_find(cfg, "worker"), "the template itself is no service");
	for (unsigned i = 0; i < 3; i++) {
		char name[32], buf[64];
		snprintf(name, sizeof(name), "worker@%u", i);
		const struct svc_config *s = config_find(cfg, name);
		cr_assert_not_null(s, "%s", name);
		cr_assert_eq(s->index, i, "the instances come in a row, in order");
		cr_assert_str_eq(s->template_name, "worker");
		cr_assert_eq(s->instance, i);
		cr_assert_eq(s->instances, 3);
		snprintf(buf, sizeof(buf), "%u", 8000 + i);
		cr_assert_str_eq(s->argv.v[2], buf);
		cr_assert_str_eq(s->ready.to->port, buf);
		snprintf(buf, sizeof(buf), "%u", 9000 + i);
		cr_assert_str_eq(s->rare->health.to->port, buf);
		snprintf(buf, sizeof(buf), "%u", i);
		cr_assert_str_eq(s->argv.v[4], buf);
		snprintf(buf, sizeof(buf), "ID=%u", i);
		cr_assert_str_eq(s->environment.v[0], buf);
		cr_assert_str_eq(s->environment.v[1], "PCT=100%");
		snprintf(buf, sizeof(buf), "/srv/w%u", i);
		cr_assert_str_eq(s->directory, buf);
		snprintf(buf, sizeof(buf), "/tmp/w%u.out", i);
		cr_assert_str_eq(s->out.path, buf);
		cr_assert_str_eq(s->requires.v[0], "db", "requires is the template's, as written");
	}
	cr_assert_eq(config_template(cfg, "worker"), config_find(cfg, "worker@0"));
	/* Outside a template "%" is an ordinary character. */
	cr_assert_str_eq(config_find(cfg, "db")->argv.v[1], "%s");
	cr_assert_null(config_find(cfg, "db")->template_name);
	cr_assert_eq(config_find(cfg, "db")->instances, 0);
}

Test(template, keys_that_do_not_differ_per_instance_are_not_expanded)
{
	good("[service:w]\ninstances = 2\ncommand = x\nuser = a%i\n");
	cr_assert_str_eq(config_find(cfg, "w@1")->user, "a%i");
}

Test(template, bad_instances_and_percent_name_file_line_and_key)
{
	bad("[service:w]\ncommand = x\ninstances = 0\n",
	    "cohort.ini:3: [service:w]: instances = \"0\": expected a number of instances from 1 to 10000");
	bad("[service:w]\ncommand = x\ninstances = abc\n", "cohort.ini:3: [service:w]: instances = \"abc\": expected");
	bad("[service:w]\ncommand = x\ninstances = 10001\n", "instances = \"10001\": expected");
	bad("[service:w]\ncommand = x\ninstances = 6000\n[service:v]\ncommand = x\ninstances = 5000\n",
	    "cohort.ini:6: [service:v]: instances = 5000: more than 10000 instances in all the templates "
	    "(6000 before this one)");
	bad("[service:w]\ninstances = 2\n\ncommand = x %q\n",
	    "cohort.ini:4: [service:w]: command = \"x %q\": \"%q\" is not known: in a template %i is the "
	    "instance number, %{i+N} adds N to it (N at most 1000000) and %% is a %");
	bad("[service:w]\ninstances = 2\ncommand = x\nready = tcp:127.0.0.1:%p\n",
	    "cohort.ini:4: [service:w]: ready = \"tcp:127.0.0.1:%p\": \"%p\" is not known");
	/* An error that depends on the instance names the instance. */
	bad("[service:w]\ninstances = 12\ncommand = x\nready = tcp:127.0.0.1:6553%i\n",
	    "cohort.ini:4: [service:w@6]: ready = \"tcp:127.0.0.1:65536\"");
	bad("[service:w@1]\ncommand = x\n",
	    "cohort.ini:1: [service:w@1]: \"@\" is for the names of instances: write [service:w] with instances = N");
	bad("[service:w]\ninstances = 2\ncommand = x\n[service:w]\ncommand = y\n",
	    "cohort.ini:4: duplicate service \"w\" (first defined at");
	bad("[service:w]\ncommand = y\n[service:w]\ninstances = 2\ncommand = x\n",
	    "cohort.ini:3: duplicate service \"w\"");
	bad("[service:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\ninstances = 100\ncommand = x\n",
	    "@99 would be longer than 64 characters");
}

Test(template, one_error_for_all_the_instances)
{
	struct cohort_config *c = th_load("[service:w]\ninstances = 50\ncommand = x %q\nready = bogus\n", &d);

	cr_assert_eq(d.count, 2, "%s", th_diag_text(&d));
	config_free(c);
}

Test(template, names_users_write)
{
	good("[service:worker]\ninstances = 3\ncommand = x\n[service:web]\ncommand = x\n"
	     "[service:web2]\ncommand = x\n");
	struct strv out = {0};
	struct sbuf why = {0};

	cr_assert_eq(config_match(cfg, "worker", &out, &why), 3);
	cr_assert_str_eq(out.v[0], "worker@0");
	cr_assert_str_eq(out.v[2], "worker@2");
	strv_free(&out);
	cr_assert_eq(config_match(cfg, "worker@*", &out, &why), 3);
	strv_free(&out);
	cr_assert_eq(config_match(cfg, "worker@1", &out, &why), 1);
	cr_assert_str_eq(out.v[0], "worker@1");
	strv_free(&out);
	cr_assert_eq(config_match(cfg, "web*", &out, &why), 2);
	strv_free(&out);
	cr_assert_eq(config_match(cfg, "worker@[02]", &out, &why), 2);
	cr_assert_str_eq(out.v[1], "worker@2");
	strv_free(&out);
	cr_assert_eq(config_match(cfg, "worker@x", &out, &why), -1);
	cr_assert_str_eq(why.buf, "no such service: worker@x (worker has the instances worker@0 to worker@2)");
	why.len = 0;
	cr_assert_eq(config_match(cfg, "worker@3", &out, &why), -1);
	cr_assert(str_starts(why.buf, "no such service: worker@3 ("));
	why.len = 0;
	cr_assert_eq(config_match(cfg, "nope@*", &out, &why), -1);
	cr_assert_str_eq(why.buf, "no service matches \"nope@*\"");
	why.len = 0;
	cr_assert_eq(config_match(cfg, "nope", &out, &why), -1);
	cr_assert_str_eq(why.buf, "no such service: nope");
	cr_assert_eq(out.n, 0);
	sbuf_free(&why);
	cr_assert(svc_name_valid("worker@12"));
	cr_assert(!svc_name_valid("worker@"));
	cr_assert(!svc_name_valid("@1"));
	cr_assert(!svc_name_valid("worker@01"));
	cr_assert(!svc_name_valid("worker@x"));
	cr_assert(!svc_name_valid("a@1@2"));
}

Test(template, a_dependency_on_a_template_is_on_every_instance)
{
	good("[service:db]\ncommand = x\n"
	     "[service:worker]\ninstances = 3\ncommand = x\nrequires = db\n"
	     "[service:api]\ncommand = x\nrequires = worker\n"
	     "[service:one]\ncommand = x\nafter = worker@1\n");
	struct plan *p = plan_build(cfg, &d);

	cr_assert_not_null(p, "%s", th_diag_text(&d));
	size_t api = plan_index(p, "api"), one = plan_index(p, "one");
	size_t n = 0;
	PLAN_EACH_EDGE(&p->requires, api, j) {
		cr_assert_str_eq(cfg->services[j]->name, cfg->services[plan_index(p, "worker@0") + n]->name);
		n++;
	}
	cr_assert_eq(n, 3);
	cr_assert_eq(p->phase[plan_index(p, "worker@2")], 2);
	cr_assert_eq(p->phase[api], 3);
	n = 0;
	PLAN_EACH_EDGE(&p->after, one, j) {
		cr_assert_str_eq(cfg->services[j]->name, "worker@1");
		n++;
	}
	cr_assert_eq(n, 1);
	n = 0;
	PLAN_EACH_EDGE(&p->required_by, plan_index(p, "worker@1"), j) {
		cr_assert_str_eq(cfg->services[j]->name, "api");
		n++;
	}
	cr_assert_eq(n, 1);
	plan_free(p);
}

Test(template, bad_dependencies_are_said_once_per_section)
{
	struct plan *p;

	cfg = th_load("[service:w]\ninstances = 4\ncommand = x\nrequires = nosuch\n"
		      "[service:a]\ncommand = x\nrequires = w@4\n", &d);
	cr_assert_eq(d.count, 0);
	p = plan_build(cfg, &d);
	cr_assert_null(p);
	cr_assert_eq(d.count, 2, "%s", th_diag_text(&d));
	cr_assert(th_diag_has(&d, "cohort.ini:4: [service:w]: requires \"nosuch\": no such service"));
	cr_assert(th_diag_has(&d, "cohort.ini:7: [service:a]: requires \"w@4\": no such service "
			      "(w has the instances w@0 to w@3)"), "%s", th_diag_text(&d));
	config_free(cfg);
	diag_free(&d);
	cfg = th_load("[service:w]\ninstances = 2\ncommand = x\nafter = w\n", &d);
	p = plan_build(cfg, &d);
	cr_assert_null(p);
	cr_assert_eq(d.count, 1, "%s", th_diag_text(&d));
	cr_assert(th_diag_has(&d, "[service:w]: after itself (an instance of the same template)"));
}

Test(template, a_new_instance_count_is_no_change_to_the_instances)
{
	struct cohort_config *a = good("[service:w]\ninstances = 3\ncommand = x %i\n");
	struct diag d2 = {0};
	struct cohort_config *b = config_load(th_write("cohort.ini", "[service:w]\ninstances = 5\ncommand = x %i\n"),
					      &d2);

	cr_assert_eq(d2.count, 0);
	cr_assert(svc_config_equal(config_find(a, "w@2"), config_find(b, "w@2")));
	cr_assert_eq(config_find(b, "w@4")->instances, 5);
	cr_assert(!svc_config_equal(config_find(a, "w@1"), config_find(b, "w@2")), "%%i differs");
	config_free(b);
	diag_free(&d2);
}

/* An instance's $sys topics can be named, and subscribed to, exactly. */
Test(template, instance_names_make_topics)
{
	cr_assert(topic_pattern_valid("$sys.service.worker@1", false));
	cr_assert(topic_pattern_valid("$sys.log.worker@12", true));
	cr_assert(topic_matches("$sys.service.*", "$sys.service.worker@1"));
}

/* A cycle or a phase too low in a template is one section's error: said
 * with the section's name, not once per instance. */
Test(template, graph_errors_of_a_template_are_said_once)
{
	cfg = th_load("[service:w]\ninstances = 5\ncommand = x\nrequires = api\n"
		      "[service:api]\ncommand = y\nrequires = w\n", &d);
	cr_assert_null(plan_build(cfg, &d));
	cr_assert(th_diag_has(&d, "cohort.ini:4: [service:w]: dependency cycle: w -> api -> w"), "%s",
		  th_diag_text(&d));
	cr_assert_leq(d.count, 2, "%s", th_diag_text(&d));
	cr_assert_eq(d.count, d.lines.n);
	config_free(cfg);
	diag_free(&d);
	cfg = th_load("[service:w]\ninstances = 5\ncommand = x\nphase = 1\nrequires = db\n"
		      "[service:db]\ncommand = y\n", &d);
	cr_assert_null(plan_build(cfg, &d));
	cr_assert_eq(d.count, 1, "%s", th_diag_text(&d));
	cr_assert(th_diag_has(&d, "cohort.ini:4: [service:w]: phase = 1 is lower than the 2"));
}
