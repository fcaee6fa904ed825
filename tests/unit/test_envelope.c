/*
 * Unit tests of the safety envelope on its own: parsing, the range with and
 * without clamping, interlocks and the manual mode judged on a twin in
 * memory. The rate reads the store; the integration tests cover it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "envelope.h"
#include "err.h"
#include "expr.h"
#include "model.h"
#include "runtime.h"

static struct envelope *
parse(const char *json, char *err, size_t len)
{
	cJSON *o = cJSON_Parse(json);
	struct envelope *e;

	assert_non_null(o);
	e = envelope_parse(o, err, len);
	cJSON_Delete(o);
	return e;
}

static void
test_parse(void **state)
{
	static const struct { const char *json, *needle; } bad[] = {
		{ "[]", "must be an object" },
		{ "{\"when\": 1}", "unknown key \"when\"" },
		{ "{\"clamp\": 1}", "clamp must be true or false" },
		{ "{\"clamp\": true}", "clamp needs params" },
		{ "{\"minInterval\": \"0s\"}", "minInterval must be a duration above zero" },
		{ "{\"minInterval\": 5}", "minInterval must be a duration" },
		{ "{\"interlock\": \"\"}", "interlock must be a rule condition" },
		{ "{\"interlock\": \"x >\"}", "interlock: column" },
		{ "{\"interlock\": \"rate(x, 1m) > 0\"}", "window functions" },
		{ "{\"params\": []}", "params must be an object" },
		{ "{\"params\": {\"p\": 3}}", "p must be an object" },
		{ "{\"params\": {\"p\": {}}}", "needs a numeric minimum" },
		{ "{\"params\": {\"p\": {\"minimum\": \"1\"}}}", "needs a numeric minimum" },
		{ "{\"params\": {\"p\": {\"minimum\": 2, \"maximum\": 1}}}", "minimum 2 is above" },
		{ "{\"params\": {\"p\": {\"minimum\": 1, \"step\": 1}}}", "unknown key \"step\"" },
		{ "{\"params\": {\"p q\": {\"minimum\": 1}}}", "is not a parameter name" },
		{ "{\"params\": {\"p\": {\"minimum\": 1}, \"p\": {\"maximum\": 1}}}", "given twice" },
	};
	struct envelope *e;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		e = parse(bad[i].json, err, sizeof(err));
		if (e != NULL || strstr(err, bad[i].needle) == NULL)
			fail_msg("%s: got \"%s\", want \"%s\"", bad[i].json, err, bad[i].needle);
	}
	e = parse("{\"params\": {\"p\": {\"minimum\": -1, \"maximum\": 1}, \"q\": {\"maximum\": 9}},"
	    "\"clamp\": true, \"minInterval\": \"90s\", \"interlock\": \"a < 1 and not b\"}",
	    err, sizeof(err));
	assert_non_null(e);
	assert_int_equal(e->nparams, 2);
	assert_true(e->params[1].has_max && !e->params[1].has_min);
	assert_int_equal(e->min_interval_ms, 90000);
	assert_string_equal(e->interlock_src, "a < 1 and not b");
	assert_true(e->clamp);
	envelope_free(e);
}

/* A model with one command whose envelope is `json`, and manualMode `manual` (or NULL). */
struct fix {
	struct model m;
	struct model_command mc;
	struct twin_map *map;
	struct twin *t;
};

static void
fix_init(struct fix *f, const char *json, const char *manual)
{
	char err[256];

	memset(f, 0, sizeof(*f));
	f->mc.name = "go";
	f->mc.envelope = json != NULL ? parse(json, err, sizeof(err)) : NULL;
	assert_true(json == NULL || f->mc.envelope != NULL);
	f->m.id = "dtmi:test:M;1";
	f->m.commands = &f->mc;
	f->m.ncommands = 1;
	if (manual != NULL) {
		f->m.manual_src = (char *)manual;
		assert_non_null(f->m.manual = expr_compile(manual, NULL, 0, NULL));
	}
	assert_non_null(f->map = twin_map_new(4, 8));
	assert_non_null(f->t = twin_add(f->map, "m-1", 1));
}

static void
fix_cleanup(struct fix *f)
{
	envelope_free(f->mc.envelope);
	expr_free(f->m.manual);
	twin_map_free(f->map);
}

static void
report(struct fix *f, const char *name, const struct tw_val *v)
{
	const char *n = twin_intern(f->map, name);
	struct prop *p = twin_prop(f->t, n);

	if (p == NULL)
		assert_non_null(p = twin_prop_add(f->map, f->t, n, 1));
	assert_true(twin_prop_set(p, 1000, v) >= 0);
}

static struct envelope_verdict
judge(struct fix *f, cJSON *params, int automatic)
{
	struct envelope_ask a = { &f->m, "go", f->map, f->t, 2000, 2000, automatic, NULL, NULL };
	struct envelope_verdict v;

	assert_int_equal(envelope_check(&a, params, &v), TW_OK);
	return v;
}

static void
test_range(void **state)
{
	struct fix f;
	struct envelope_verdict v;
	cJSON *p = cJSON_Parse("{\"pct\": 80, \"other\": \"left alone\"}");

	(void)state;
	fix_init(&f, "{\"params\": {\"pct\": {\"minimum\": 1, \"maximum\": 50}}}", NULL);
	v = judge(&f, p, 0);
	assert_int_equal(v.refusal, ENVELOPE_RANGE);
	assert_string_equal(v.why, "range: parameter pct = 80 is outside [1, 50]");
	assert_int_equal(cJSON_GetObjectItem(p, "pct")->valuedouble, 80);
	cJSON_SetNumberValue(cJSON_GetObjectItem(p, "pct"), 50);
	assert_int_equal(judge(&f, p, 0).refusal, ENVELOPE_OK);
	assert_int_equal(judge(&f, NULL, 0).refusal, ENVELOPE_RANGE);
	fix_cleanup(&f);

	fix_init(&f, "{\"params\": {\"pct\": {\"minimum\": 1, \"maximum\": 50}}, \"clamp\": true}",
	    NULL);
	cJSON_SetNumberValue(cJSON_GetObjectItem(p, "pct"), 80);
	v = judge(&f, p, 1);
	assert_int_equal(v.refusal, ENVELOPE_OK);
	assert_true(v.clamped);
	assert_int_equal(cJSON_GetObjectItem(p, "pct")->valuedouble, 50);
	cJSON_SetNumberValue(cJSON_GetObjectItem(p, "pct"), -3);
	assert_true(judge(&f, p, 1).clamped);
	assert_int_equal(cJSON_GetObjectItem(p, "pct")->valuedouble, 1);
	/* Clamping never makes a number of a string. */
	cJSON_ReplaceItemInObject(p, "pct", cJSON_CreateString("80"));
	assert_int_equal(judge(&f, p, 1).refusal, ENVELOPE_RANGE);
	cJSON_Delete(p);
	fix_cleanup(&f);
}

static void
test_interlock_and_manual(void **state)
{
	struct tw_val num = { .type = VAL_NUM, .num = 9 }, yes = { .type = VAL_BOOL, .num = 1 };
	struct tw_val local = { .type = VAL_STR, .str = "local" };
	struct tw_val remote = { .type = VAL_STR, .str = "remote" };
	struct envelope_verdict v;
	struct fix f;

	(void)state;
	fix_init(&f, "{\"interlock\": \"not maintenance and pressure < 8\"}", "mode == \"local\"");
	/* Nothing reported: the interlock is unknown, and so is the mode. */
	v = judge(&f, NULL, 0);
	assert_int_equal(v.refusal, ENVELOPE_INTERLOCK);
	assert_non_null(strstr(v.why, "is unknown"));
	v = judge(&f, NULL, 1);
	assert_int_equal(v.refusal, ENVELOPE_MANUAL);
	report(&f, "mode", &remote);
	report(&f, "pressure", &num);
	yes.num = 0;
	report(&f, "maintenance", &yes);
	v = judge(&f, NULL, 1);
	assert_int_equal(v.refusal, ENVELOPE_INTERLOCK);
	assert_string_equal(v.why, "interlock: not maintenance and pressure < 8 does not hold");
	num.num = 7.9;
	report(&f, "pressure", &num);
	assert_int_equal(judge(&f, NULL, 1).refusal, ENVELOPE_OK);
	report(&f, "mode", &local);
	assert_int_equal(judge(&f, NULL, 1).refusal, ENVELOPE_MANUAL);
	/* An operator is the one in charge in manual mode. */
	assert_int_equal(judge(&f, NULL, 0).refusal, ENVELOPE_OK);
	yes.num = 1;
	report(&f, "maintenance", &yes);
	assert_int_equal(judge(&f, NULL, 0).refusal, ENVELOPE_INTERLOCK);
	fix_cleanup(&f);
}

static void
test_no_envelope(void **state)
{
	struct fix f;

	(void)state;
	fix_init(&f, NULL, NULL);
	assert_int_equal(judge(&f, NULL, 1).refusal, ENVELOPE_OK);
	assert_string_equal(envelope_refusal_name(ENVELOPE_INFLIGHT), "inflight");
	assert_string_equal(envelope_refusal_name(99), "unknown");
	fix_cleanup(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_interlock_and_manual),
		cmocka_unit_test(test_no_envelope),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
