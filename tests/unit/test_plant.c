/* Unit tests of the twins file: good entries, and each kind of error named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "model.h"
#include "plant.h"

#define FIX	"tests/fixtures/plant/"

static struct model_set *models;

static int
setup(void **state)
{
	(void)state;
	models = model_set_load("config/models", stderr);
	return models == NULL;
}

static int
teardown(void **state)
{
	(void)state;
	model_set_unref(models);
	return 0;
}

static void
expect_error(const char *file, const char *words)
{
	char msg[512] = { 0 };
	FILE *err = fmemopen(msg, sizeof(msg), "w");
	struct plant p;

	assert_int_not_equal(plant_load(&p, file, models, err), TW_OK);
	fclose(err);
	if (strstr(msg, words) == NULL)
		fail_msg("%s: got '%s', want '%s'", file, msg, words);
	plant_cleanup(&p);
}

static void
test_good(void **state)
{
	struct plant p;

	(void)state;
	assert_int_equal(plant_load(&p, FIX "good.json", models, stderr), TW_OK);
	assert_int_equal(p.n, 2);
	assert_string_equal(p.v[1].id, "pump-1");
	assert_string_equal(p.v[1].parent, "line-1");
	assert_string_equal(p.v[1].model, "dtmi:twind:sim:Pump;1");
	assert_null(p.v[0].model);
	plant_cleanup(&p);
	assert_int_equal(plant_load(&p, "", models, stderr), TW_OK);
	assert_int_equal(p.n, 0);
	plant_cleanup(&p);
}

static void
test_errors(void **state)
{
	(void)state;
	expect_error(FIX "unknown-model.json", "no model \"dtmi:nope:X;1\"");
	expect_error(FIX "missing-parent.json", "parent \"line-9\" is not a twin");
	expect_error(FIX "cycle.json", "cycle");
	expect_error(FIX "duplicate.json", "listed twice");
	expect_error(FIX "syntax.json", "syntax.json:3:");
	expect_error(FIX "bad-id.json", "\"id\" must be");
	expect_error(FIX "missing.json", "cannot read");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
