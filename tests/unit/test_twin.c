/* Unit tests of the twin map: newer-wins, limits, interning, dirty tracking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "twin.h"

static void
test_newer_wins(void **state)
{
	struct twin_map *m = twin_map_new(10, 4);
	struct twin *t = twin_add(m, "pump-1", 1);
	struct tw_val a = { .type = VAL_NUM, .num = 1 }, b = { .type = VAL_NUM, .num = 2 };
	struct tw_val s = { .type = VAL_STR, .str = "auto" };
	struct prop *p;

	(void)state;
	p = twin_prop_add(m, t, twin_intern(m, "temp"), 7);
	assert_int_equal(twin_prop_set(p, 100, &a), 1);
	assert_int_equal(twin_prop_set(p, 100, &a), 0);	/* redelivery: nothing */
	assert_int_equal(twin_prop_set(p, 99, &b), 0);	/* older: nothing */
	assert_true(p->val.num == 1);
	assert_int_equal(twin_prop_set(p, 100, &b), 1);	/* same time, corrected */
	assert_int_equal(twin_prop_set(p, 101, &s), 1);	/* type may change */
	assert_string_equal(p->val.str, "auto");
	assert_ptr_not_equal(p->val.str, s.str);	/* owned copy */
	assert_int_equal(p->ts, 101);
	twin_map_free(m);
}

static void
test_limits_and_interning(void **state)
{
	struct twin_map *m = twin_map_new(2, 2);
	struct twin *t;
	const char *n1, *n2;

	(void)state;
	assert_non_null(t = twin_add(m, "a", 1));
	assert_non_null(twin_add(m, "b", 1));
	assert_null(twin_add(m, "c", 1));
	assert_int_equal(twin_count(m), 2);
	assert_ptr_equal(twin_find(m, "a", 1), t);
	assert_null(twin_find(m, "c", 1));
	n1 = twin_intern(m, "temp");
	n2 = twin_intern(m, "temp");
	assert_ptr_equal(n1, n2);
	assert_true(twin_props_room(m, t, 2));
	assert_false(twin_props_room(m, t, 3));
	assert_non_null(twin_prop_add(m, t, n1, 1));
	assert_non_null(twin_prop_add(m, t, twin_intern(m, "speed"), 2));
	assert_null(twin_prop_add(m, t, twin_intern(m, "x"), 3));
	assert_ptr_equal(twin_prop(t, n2)->name, n1);
	twin_map_clear(m);
	assert_int_equal(twin_count(m), 0);
	twin_map_free(m);
}

static int
count_flush(void *arg, struct twin *t)
{
	(void)t;
	(*(int *)arg)++;
	return 0;
}

static void
test_dirty_once_per_flush(void **state)
{
	struct twin_map *m = twin_map_new(100, 4);
	struct twin *a = twin_add(m, "a", 1), *b = twin_add(m, "b", 1);
	int n = 0;

	(void)state;
	for (int i = 0; i < 100; i++) {
		twin_mark_dirty(m, a);
		twin_mark_dirty(m, b);
	}
	assert_int_equal(twin_flush_dirty(m, count_flush, &n), TW_OK);
	assert_int_equal(n, 2);
	n = 0;
	assert_int_equal(twin_flush_dirty(m, count_flush, &n), TW_OK);
	assert_int_equal(n, 0);
	twin_map_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_newer_wins),
		cmocka_unit_test(test_limits_and_interning),
		cmocka_unit_test(test_dirty_once_per_flush),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
