/* Unit tests of the rules file: compiled rules, matching, and errors named by file and rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "rules.h"

#define FIX	"tests/fixtures/rules/"

static void
expect_error(const char *file, const char *words)
{
	char msg[1024] = { 0 };
	FILE *err = fmemopen(msg, sizeof(msg), "w");
	struct rule_set *s = rules_load(file, NULL, err);

	fclose(err);
	assert_null(s);
	if (strstr(msg, words) == NULL)
		fail_msg("%s: got '%s', want '%s'", file, msg, words);
}

static void
test_good(void **state)
{
	struct rule_set *s = rules_load(FIX "good.json", NULL, stderr), *again;
	const struct rule *r;

	(void)state;
	assert_non_null(s);
	assert_int_equal(s->n, 2);
	r = &s->v[0];
	assert_string_equal(r->name, "hot");
	assert_int_equal(r->for_ms, 30000);
	assert_int_equal(r->cooldown_ms, 300000);
	assert_string_equal(r->severity, "critical");
	assert_non_null(r->clear);
	assert_int_equal(r->nactions, 2);
	assert_int_equal(r->actions[0].type, ACTION_COMMAND);
	assert_string_equal(r->actions[0].command, "reduce_load");
	assert_string_equal(r->actions[0].json, "{\"percent\":20}");
	assert_int_equal(r->actions[1].type, ACTION_DESIRED);
	assert_int_equal(expr_refs(r->when)->nprops, 1);
	assert_true(rules_match(r, "pump-1", "dtmi:x:P;1"));
	assert_false(rules_match(r, "pump-1", "dtmi:x:Q;1"));
	assert_false(rules_match(r, "motor-1", "dtmi:x:P;1"));
	assert_false(rules_match(r, "pump-1", NULL));
	assert_true(rules_match(&s->v[1], "anything", NULL));
	assert_string_equal(s->v[1].severity, "warning");	/* the default */
	/* An unchanged rule carries its statistics into the new set. */
	atomic_store(&s->v[0].stats->raises, 7);
	again = rules_load(FIX "good.json", s, stderr);
	assert_non_null(again);
	assert_int_equal(atomic_load(&again->v[0].stats->raises), 7);
	rules_unref(again);
	rules_unref(s);
	assert_non_null(s = rules_load("", NULL, stderr));
	assert_int_equal(s->n, 0);
	rules_unref(s);
}

static void
test_errors(void **state)
{
	(void)state;
	expect_error(FIX "bad-expr.json", "bad-expr.json: rule a: when: column");
	expect_error(FIX "bad-severity.json", "severity \"huge\"");
	expect_error(FIX "unknown-key.json", "unknown key \"colour\"");
	expect_error(FIX "dup-name.json", "used twice");
	expect_error(FIX "bad-for.json", "\"for\" must be a duration");
	expect_error(FIX "bad-action.json", "actions[0]");
	expect_error(FIX "syntax.json", "syntax.json:2:");
	expect_error(FIX "missing.json", "cannot read");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
