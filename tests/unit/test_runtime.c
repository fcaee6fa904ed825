/*
 * Unit tests of the rules runtime on its own: a twin in memory, rules from
 * a file, clocks passed in. No database, no broker: what it returns is what
 * a what-if or a backtest would get.
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

#include "err.h"
#include "runtime.h"
#include "undo.h"

struct fix {
	struct twin_map *m;
	struct rule_set *rules;
	struct runtime rt;
	struct effects fx;
	struct twin *t;
};

/* A rule set from JSON text, through a temporary file as twind reads it. */
static struct rule_set *
rules_from(const char *json)
{
	char path[] = "/tmp/twind-test-runtime-XXXXXX";
	int fd = mkstemp(path);
	struct rule_set *s;
	FILE *f;

	assert_true(fd >= 0);
	assert_non_null(f = fdopen(fd, "w"));
	fputs(json, f);
	fclose(f);
	s = rules_load(path, NULL, stderr);
	unlink(path);
	assert_non_null(s);
	return s;
}

static void
fix_init(struct fix *f, const char *rules)
{
	memset(f, 0, sizeof(*f));
	assert_non_null(f->m = twin_map_new(10, 10));
	f->rules = rules_from(rules);
	assert_int_equal(runtime_init(&f->rt, f->rules, f->m), TW_OK);
	assert_non_null(f->t = twin_add(f->m, "pump-1", 1));
	assert_int_equal(runtime_bind(&f->rt, f->t, NULL), TW_OK);
}

static void
fix_cleanup(struct fix *f)
{
	effects_cleanup(&f->fx);
	runtime_cleanup(&f->rt);
	twin_map_free(f->m);
	rules_unref(f->rules);
}

/* A reading of `name` at measurement time `ts`, as the engine applies it. */
static void
report(struct fix *f, const char *name, int64_t ts, double v)
{
	const char *n = twin_intern(f->m, name);
	struct tw_val val = { .type = VAL_NUM, .num = v };
	struct prop *p = twin_prop(f->t, n);

	if (p == NULL)
		assert_non_null(p = twin_prop_add(f->m, f->t, n, 1));
	runtime_feed(f->t, n, ts, &val, 1);
	assert_true(twin_prop_set(p, ts, &val) >= 0);
	f->t->newest_ts = ts;
}

/* Evaluates every rule of the twin at twin clock `now`; returns how many effects came. */
static unsigned
eval(struct fix *f, int64_t now)
{
	f->fx.n = 0;
	assert_int_equal(runtime_eval(&f->rt, f->t, NULL, 0, now, now, &f->fx), TW_OK);
	return f->fx.n;
}

static void
test_for_then_clear_on_a_passed_clock(void **state)
{
	struct fix f;

	(void)state;
	fix_init(&f, "[{\"name\":\"hot\",\"when\":\"x > 10\",\"for\":\"5s\",\"clear\":\"x < 8\","
	    "\"message\":\"{twin} x {x}\"}]");
	assert_int_equal(f.t->nrs, 1);
	report(&f, "x", 1000000, 20);
	assert_int_equal(eval(&f, 1000000), 0);		/* true, but not for 5 s yet */
	assert_int_equal(eval(&f, 1004999), 0);
	assert_int_equal(eval(&f, 1005000), 1);		/* the clock says 5 s have passed */
	assert_int_equal(f.fx.v[0].type, EFFECT_RAISE);
	assert_string_equal(f.fx.v[0].message, "pump-1 x 20");
	assert_int_equal(f.fx.v[0].at, 1005000);
	assert_true(f.fx.v[0].val.type == VAL_NUM && f.fx.v[0].val.num == 20);
	/* The runtime decides, the caller applies: without an alert id it raises again. */
	assert_int_equal(eval(&f, 1006000), 1);
	f.fx.v[0].st->alert_id = 7;
	f.fx.v[0].st->raised_ts = 1006000;
	assert_int_equal(eval(&f, 1007000), 0);		/* raised: nothing new */
	report(&f, "x", 1008000, 9);			/* between clear and when: no flapping */
	assert_int_equal(eval(&f, 1008000), 0);
	report(&f, "x", 1009000, 7);
	assert_int_equal(eval(&f, 1009000), 1);
	assert_int_equal(f.fx.v[0].type, EFFECT_CLEAR);
	assert_int_equal(f.fx.v[0].st->alert_id, 7);
	fix_cleanup(&f);
}

static void
test_only_rules_that_read_the_update(void **state)
{
	struct fix f;
	const char *names[1];

	(void)state;
	fix_init(&f, "[{\"name\":\"a\",\"when\":\"x > 1\"},{\"name\":\"b\",\"when\":\"y > 1\"}]");
	report(&f, "x", 1000, 5);
	report(&f, "y", 1000, 5);
	names[0] = twin_intern(f.m, "y");
	f.fx.n = 0;
	assert_int_equal(runtime_eval(&f.rt, f.t, names, 1, 1000, 1000, &f.fx), TW_OK);
	assert_int_equal(f.fx.n, 1);
	assert_string_equal(f.fx.v[0].rule->name, "b");
	fix_cleanup(&f);
}

static void
test_windows_cooldown_and_shelf(void **state)
{
	struct fix f;

	(void)state;
	fix_init(&f, "[{\"name\":\"three\",\"when\":\"count_over(x, 1m) >= 3\","
	    "\"cooldown\":\"10m\"}]");
	assert_int_equal(f.t->nwindows, 1);
	report(&f, "x", 10000, 1);
	report(&f, "x", 20000, 1);
	assert_int_equal(eval(&f, 20000), 0);
	report(&f, "x", 30000, 1);
	assert_int_equal(eval(&f, 30000), 1);
	/* Applied and cleared again: the cooldown holds off the next raise. */
	f.fx.v[0].st->raised_ts = 30000;
	assert_int_equal(eval(&f, 40000), 0);
	assert_int_equal(eval(&f, 30000 + 600000), 0);	/* the window has emptied by then */
	report(&f, "x", 700000, 1);
	report(&f, "x", 700001, 1);
	report(&f, "x", 700002, 1);
	/* Shelved until a wall time: the twin clock does not lift the shelf. */
	runtime_shelve(f.t, 0, "three", 5000000);
	f.fx.n = 0;
	assert_int_equal(runtime_eval(&f.rt, f.t, NULL, 0, 700002, 4999999, &f.fx), TW_OK);
	assert_int_equal(f.fx.n, 0);
	assert_int_equal(runtime_eval(&f.rt, f.t, NULL, 0, 700002, 5000000, &f.fx), TW_OK);
	assert_int_equal(f.fx.n, 1);
	fix_cleanup(&f);
}

static void
test_rebind_keeps_state_by_name(void **state)
{
	struct fix f;
	struct rule_set *edited;
	struct runtime rt2;

	(void)state;
	fix_init(&f, "[{\"name\":\"hot\",\"when\":\"avg_over(x, 1m) > 10\"}]");
	report(&f, "x", 1000, 20);
	assert_int_equal(eval(&f, 1000), 1);
	f.fx.v[0].st->alert_id = 42;
	/* An edited rule of the same name keeps its open alert and its window's data. */
	edited = rules_from("[{\"name\":\"hot\",\"when\":\"avg_over(x, 1m) > 15\","
	    "\"clear\":\"avg_over(x, 1m) < 5\"}]");
	assert_int_equal(runtime_init(&rt2, edited, f.m), TW_OK);
	assert_int_equal(runtime_bind(&rt2, f.t, NULL), TW_OK);
	assert_int_equal(f.t->rs[0].alert_id, 42);
	assert_int_equal(f.t->windows[0].w.b[0].n + f.t->windows[0].w.b[1].n +
	    f.t->windows[0].w.b[2].n + f.t->windows[0].w.b[3].n + f.t->windows[0].w.b[4].n +
	    f.t->windows[0].w.b[5].n + f.t->windows[0].w.b[6].n + f.t->windows[0].w.b[7].n +
	    f.t->windows[0].w.b[8].n + f.t->windows[0].w.b[9].n + f.t->windows[0].w.b[10].n +
	    f.t->windows[0].w.b[11].n + f.t->windows[0].w.b[12].n + f.t->windows[0].w.b[13].n +
	    f.t->windows[0].w.b[14].n + f.t->windows[0].w.b[15].n, 1);
	runtime_cleanup(&f.rt);
	f.rt = rt2;
	rules_unref(f.rules);
	f.rules = edited;
	fix_cleanup(&f);
}

/* The median of the twin's x over 1 m, from its window; -1 when unknown. */
static double
median_of(struct fix *f, int64_t now)
{
	double v;

	return quantile_value(f->t->windows[0].q, now, 0.5, &v) == 0 ? v : -1;
}

/*
 * A quantile window owns its 8.7 KB beside its slot: a what-if's copy and
 * a batch's undo copy must be copies, never the live window, and a
 * rollback must give back exactly what was there (also when the undo's
 * quantile budget is spent: then the live window is kept as it is).
 */
static void
test_quantile_windows_are_copied_not_shared(void **state)
{
	struct fix f;
	struct twin *c;
	struct undo u = { 0 };
	struct quantile before;

	(void)state;
	fix_init(&f, "[{\"name\":\"m\",\"when\":\"median_over(x, 1m) > 0\","
	    "\"message\":\"{x}\"}]");
	assert_int_equal(f.t->nwindows, 1);
	assert_int_equal(f.t->windows[0].kind, EXPR_WIN_QUANT);
	for (int i = 0; i < 5; i++)
		report(&f, "x", 1000000 + i * 100, 10 + i);
	memcpy(&before, f.t->windows[0].q, sizeof(before));
	/* A what-if's copy: what it learns stays its own. */
	assert_non_null(c = twin_copy(f.t));
	assert_ptr_not_equal(c->windows[0].q, f.t->windows[0].q);
	for (int i = 0; i < 50; i++)
		quantile_add(c->windows[0].q, 1001000 + i, 1000, 1);
	assert_memory_equal(f.t->windows[0].q, &before, sizeof(before));
	twin_copy_free(c);
	/* A batch that fails: the undo copy goes back in. */
	assert_int_equal(undo_save(&u, f.t), TW_OK);
	assert_ptr_not_equal(u.v[0].windows[0].q, f.t->windows[0].q);
	for (int i = 0; i < 50; i++)
		report(&f, "x", 1001000 + i, 1000);
	assert_true(median_of(&f, 1001100) == 1000);
	undo_restore(&u, f.m);
	assert_memory_equal(f.t->windows[0].q, &before, sizeof(before));
	assert_true(median_of(&f, 1001100) == 12);
	/* Past the undo's quantile budget the window is not copied, and stays live. */
	u.quant_bytes = UNDO_QUANT_MAX;
	assert_int_equal(undo_save(&u, f.t), TW_OK);
	assert_null(u.v[0].windows[0].q);
	report(&f, "x", 1001000, 1000);
	undo_restore(&u, f.m);
	assert_non_null(f.t->windows[0].q);
	assert_true(median_of(&f, 1001100) == 12.5);	/* 10..14 and the 1000 kept */
	undo_cleanup(&u);
	fix_cleanup(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_for_then_clear_on_a_passed_clock),
		cmocka_unit_test(test_only_rules_that_read_the_update),
		cmocka_unit_test(test_windows_cooldown_and_shelf),
		cmocka_unit_test(test_rebind_keeps_state_by_name),
		cmocka_unit_test(test_quantile_windows_are_copied_not_shared),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
