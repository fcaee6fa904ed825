/*
 * Unit tests of what-if on its own: twins in memory bound to rules from a
 * file, no database, no broker. The live twins must be exactly as before,
 * and what the copies' rules decide is described.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "clock.h"
#include "err.h"
#include "whatif.h"

static const char *const RULES =
    "[{\"name\":\"hot\",\"when\":\"t > 90\",\"for\":\"10s\",\"clear\":\"t < 80\","
    "\"severity\":\"major\",\"message\":\"{twin} {t}\",\"actions\":[{\"command\":\"cool\"}]},"
    " {\"name\":\"fast\",\"when\":\"rate(t, 1m) > 1\",\"severity\":\"info\",\"message\":\"x\"}]";

struct fix {
	struct twin_map *m;
	struct rule_set *rules;
	struct runtime rt;
	struct command_policy policy;
	struct whatif_env w;
	struct twin *p, *c;
	int64_t ts;
};

static void
fix_init(struct fix *f)
{
	char path[] = "/tmp/twind-test-whatif-XXXXXX";
	int fd = mkstemp(path);
	FILE *fp;
	struct tw_val v = { .type = VAL_NUM, .num = 70 };
	const char *t;

	memset(f, 0, sizeof(*f));
	assert_true(fd >= 0);
	assert_non_null(fp = fdopen(fd, "w"));
	fputs(RULES, fp);
	fclose(fp);
	assert_non_null(f->rules = rules_load(path, NULL, stderr));
	unlink(path);
	assert_non_null(f->m = twin_map_new(10, 10));
	assert_int_equal(runtime_init(&f->rt, f->rules, f->m), TW_OK);
	assert_non_null(f->p = twin_add(f->m, "line", 1));
	assert_non_null(f->c = twin_add(f->m, "pump", 1));
	assert_int_equal(twin_set_meta(f->c, NULL, NULL, "line"), TW_OK);
	assert_int_equal(runtime_bind(&f->rt, f->p, NULL), TW_OK);
	assert_int_equal(runtime_bind(&f->rt, f->c, NULL), TW_OK);
	assert_non_null(t = twin_intern(f->m, "t"));
	/* 5 s ago, on the wall clock that a twin never heard from starts at. */
	f->ts = clock_now_ms() - 5000;
	assert_int_equal(twin_prop_set(twin_prop_add(f->m, f->c, t, 1), f->ts, &v), 1);
	runtime_feed(f->c, t, f->ts, &v, 1);
	f->c->newest_ts = f->ts;
	f->c->newest_mono = clock_mono_ms();
	f->policy.allow_unmodelled = 1;
	f->w = (struct whatif_env){ f->m, &f->rt, &f->policy, NULL, NULL, 2 };
}

static void
fix_cleanup(struct fix *f)
{
	runtime_cleanup(&f->rt);
	twin_map_free(f->m);
	rules_unref(f->rules);
}

static cJSON *
run(struct fix *f, const char *twin, int depth, const char *body, int want)
{
	struct request r = { .type = REQ_SIMULATE, .twin = twin, .depth = depth };
	cJSON *b = cJSON_Parse(body);
	char err[160];

	assert_non_null(b);
	assert_int_equal(whatif_check(b, err, sizeof(err)), 0);
	r.patch = b;
	whatif_run(&f->w, &r);
	cJSON_Delete(b);
	assert_int_equal(r.err, want);
	return r.result;
}

static int
count(const cJSON *arr, const char *rule, const char *action)
{
	const cJSON *it;
	int n = 0;

	cJSON_ArrayForEach(it, arr)
		n += strcmp(cJSON_GetObjectItem(it, "rule")->valuestring, rule) == 0 &&
		    strcmp(cJSON_GetObjectItem(it, "action")->valuestring, action) == 0;
	return n;
}

static void
test_live_twins_untouched(void **state)
{
	struct fix f;
	struct window before;
	cJSON *out;

	(void)state;
	fix_init(&f);
	before = f.c->windows[0].w;
	out = run(&f, "line", 1, "{\"steps\":[{\"twin\":\"pump\",\"reported\":{\"t\":95,\"new\":\"x\"}},"
	    "{\"twin\":\"pump\",\"at\":\"+20s\",\"reported\":{\"t\":96}}]}", TW_OK);
	assert_non_null(out);
	/* `for` ended 10 s in; the rate rule saw 70 -> 95 at once. */
	assert_int_equal(count(cJSON_GetObjectItem(out, "alerts"), "hot", "raise"), 1);
	assert_int_equal(count(cJSON_GetObjectItem(out, "alerts"), "fast", "raise"), 1);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(out, "commands")), 1);
	cJSON_Delete(out);
	/* Nothing of it stayed: values, names, windows, rule states. */
	assert_int_equal(f.c->nprops, 1);
	assert_true(f.c->props[0].val.num == 70);
	assert_int_equal(f.c->props[0].ts, f.ts);
	assert_null(twin_intern_find(f.m, "new"));
	assert_memory_equal(&f.c->windows[0].w, &before, sizeof(before));
	for (int i = 0; i < f.c->nrs; i++)
		assert_true(f.c->rs[i].alert_id == 0 && f.c->rs[i].true_since == 0);
	assert_int_equal(atomic_load(&f.rules->v[0].stats->evaluations), 0);
	fix_cleanup(&f);
}

static void
test_refusals(void **state)
{
	struct fix f;

	(void)state;
	fix_init(&f);
	assert_null(run(&f, "nope", 0, "{}", TW_ERR_NOTFOUND));
	assert_null(run(&f, "line", 0, "{\"steps\":[{\"twin\":\"pump\",\"reported\":{\"t\":1}}]}",
	    TW_ERR_REFUSED));
	assert_null(run(&f, "pump", 0, "{\"reported\":{\"t\":null}}", TW_ERR_REFUSED));
	assert_null(run(&f, "pump", 0, "{\"reported\":{\"a.\":1}}", TW_ERR_INVAL));
	fix_cleanup(&f);
}

static void
test_check(void **state)
{
	static const char *const bad[] = {
		"[]", "{\"x\":1}", "{\"at\":5}", "{\"at\":\"-1m\"}", "{\"steps\":{}}",
		"{\"steps\":[1]}", "{\"steps\":[{\"twin\":\"a b\"}]}", "{\"reported\":[]}",
		"{\"steps\":[{\"at\":\"+1m\"},{\"at\":\"+30s\"}]}", "{\"steps\":[{\"steps\":[]}]}",
	};
	char err[160];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *b = cJSON_Parse(bad[i]);

		assert_non_null(b);
		assert_int_equal(whatif_check(b, err, sizeof(err)), -1);
		assert_true(err[0] != '\0');
		cJSON_Delete(b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_live_twins_untouched),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
