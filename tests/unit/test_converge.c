/*
 * Unit tests of commands until convergence with a real SQLite store and a
 * twin in memory: the model's "effect" parsed and refused, a target reached
 * within tolerance, a change, the deadline, and the watches read back from
 * the table as after a restart or a failed batch.
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

#include "commands.h"
#include "converge.h"
#include "err.h"
#include "model.h"
#include "store_sql.h"

static struct command_effect *
parse(const char *json, char *err, size_t len)
{
	cJSON *o = cJSON_Parse(json);
	struct command_effect *e;

	assert_non_null(o);
	e = converge_parse(o, err, len);
	cJSON_Delete(o);
	return e;
}

static void
test_parse(void **state)
{
	static const struct { const char *json, *needle; } bad[] = {
		{ "1", "effect must be an object" },
		{ "{}", "property is missing" },
		{ "{\"property\": \"a b\"}", "property must be a property name" },
		{ "{\"property\": \"x\", \"param\": 3}", "param must be a property name" },
		{ "{\"property\": \"x\", \"value\": null}", "value must be a number" },
		{ "{\"property\": \"x\", \"value\": 1, \"param\": \"p\"}", "give one" },
		{ "{\"property\": \"x\", \"tolerance\": -0.1}", "tolerance must be" },
		{ "{\"property\": \"x\", \"timeout\": \"0s\"}", "timeout must be" },
		{ "{\"property\": \"x\", \"timeout\": \"25h\"}", "timeout must be" },
		{ "{\"property\": \"x\", \"at\": 1}", "unknown key \"at\"" },
	};
	struct command_effect *e;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		e = parse(bad[i].json, err, sizeof(err));
		if (e != NULL || strstr(err, bad[i].needle) == NULL)
			fail_msg("%s: got \"%s\", want \"%s\"", bad[i].json, err, bad[i].needle);
	}
	assert_non_null(e = parse("{\"property\": \"state\", \"value\": \"open\"}", err, sizeof(err)));
	assert_int_equal(e->timeout_ms, CONVERGE_TIMEOUT_MS);
	assert_int_equal(e->value.type, VAL_STR);
	assert_string_equal(e->value.str, "open");
	converge_effect_free(e);
}

struct fix {
	char path[64];
	struct store *st;
	struct outbox o;
	struct twin_map *m;
	struct twin *t;
	struct converge *c;
	struct model model;
	struct model_prop props[2];
	struct model_command cmds[3];
};

static void
fix_init(struct fix *f)
{
	char err[128];
	int fd;

	memset(f, 0, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "/tmp/twind-test-converge-XXXXXX");
	assert_true((fd = mkstemp(f->path)) >= 0);
	close(fd);
	unlink(f->path);
	assert_non_null(f->st = store_open(f->path, 1, 0));
	outbox_init(&f->o, NULL, NULL);
	assert_non_null(f->m = twin_map_new(4, 8));
	assert_non_null(f->t = twin_add(f->m, "d-1", 1));
	/* Sorted by name, as model_prop and model_command search them. */
	f->props[0] = (struct model_prop){ .name = "speed", .schema = SCHEMA_NUMBER, .tolerance = 2 };
	f->props[1] = (struct model_prop){ .name = "state", .schema = SCHEMA_STRING };
	f->cmds[0] = (struct model_command){ .name = "set",
	    .effect = parse("{\"property\": \"speed\", \"param\": \"rpm\", \"timeout\": \"10s\"}",
	    err, sizeof(err)) };
	f->cmds[1] = (struct model_command){ .name = "stop",
	    .effect = parse("{\"property\": \"speed\", \"value\": 0, \"timeout\": \"10s\"}", err,
	    sizeof(err)) };
	f->cmds[2] = (struct model_command){ .name = "toggle",
	    .effect = parse("{\"property\": \"state\", \"timeout\": \"10s\"}", err, sizeof(err)) };
	f->model = (struct model){ .id = "dtmi:test:D;1", .props = f->props, .nprops = 2,
	    .commands = f->cmds, .ncommands = 3 };
	f->t->model = &f->model;
	assert_non_null(f->c = converge_open(f->st, &f->o, f->m));
	assert_int_equal(store_begin(f->st), TW_OK);
}

static void
fix_cleanup(struct fix *f)
{
	char p[80];

	store_commit(f->st);
	converge_close(f->c);
	for (int i = 0; i < 3; i++)
		converge_effect_free(f->cmds[i].effect);
	twin_map_free(f->m);
	outbox_cleanup(&f->o);
	store_close(f->st);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
}

/* A reading measured at `ts`. */
static void
report(struct fix *f, const char *name, const struct tw_val *v, int64_t ts)
{
	const char *n = twin_intern(f->m, name);
	struct prop *p = twin_prop(f->t, n);

	if (p == NULL)
		assert_non_null(p = twin_prop_add(f->m, f->t, n, 1));
	assert_true(twin_prop_set(p, ts, v) >= 0);
}

/* A command row as commands.c writes it, then watched. */
static void
issue(struct fix *f, const char *id, int cmd, const char *params, int64_t now)
{
	struct store_command_row row = { .id = id, .twin = "d-1", .command = f->cmds[cmd].name,
	    .params = params, .status = "pending", .issued_ts = now, .expires_ts = now + 60000 };

	assert_int_equal(store_command_put(f->st, &row), TW_OK);
	assert_int_equal(converge_watch(f->c, f->t, id, f->cmds[cmd].effect, params, now), TW_OK);
}

static int
copy_effect(void *arg, const struct store_command_row *row)
{
	snprintf(arg, 32, "%s", row->effect != NULL ? row->effect : "(null)");
	return 0;
}

static const char *
effect_of(struct fix *f, const char *id)
{
	static char s[32];

	s[0] = '\0';
	assert_int_equal(store_command_get(f->st, id, copy_effect, s), TW_OK);
	return s;
}

static void
test_reach_change_deadline(void **state)
{
	struct tw_val v = { .type = VAL_NUM, .num = 1450 };
	struct tw_val a = { .type = VAL_STR, .str = "a" }, b = { .type = VAL_STR, .str = "b" };
	struct fix f;

	(void)state;
	fix_init(&f);
	report(&f, "speed", &v, 500);
	report(&f, "state", &a, 500);
	issue(&f, "c-1", 0, "{\"rpm\": 900}", 1000);
	issue(&f, "c-2", 1, "{}", 1000);
	issue(&f, "c-3", 2, "{}", 1000);
	issue(&f, "c-4", 0, "{\"speed\": 900}", 1000);	/* no rpm: not watched */
	assert_int_equal(converge_watched(f.c), 3);
	assert_string_equal(effect_of(&f, "c-1"), "waiting");
	assert_string_equal(effect_of(&f, "c-4"), "(null)");
	v.num = 903;			/* outside the model's tolerance of 2 */
	report(&f, "speed", &v, 2000);
	report(&f, "state", &a, 2000);	/* the same value: no change */
	assert_int_equal(converge_reported(f.c, f.t, 2000), TW_OK);
	assert_int_equal(converge_watched(f.c), 3);
	/* Measured before the issue (a bridge's buffer): it does not count. */
	v.num = 901.5;
	report(&f, "speed", &v, 900);
	report(&f, "state", &b, 900);
	assert_int_equal(converge_reported(f.c, f.t, 2100), TW_OK);
	assert_int_equal(converge_watched(f.c), 3);
	report(&f, "speed", &v, 3000);
	report(&f, "state", &b, 3000);
	assert_int_equal(converge_reported(f.c, f.t, 3000), TW_OK);
	assert_string_equal(effect_of(&f, "c-1"), "converged");
	assert_string_equal(effect_of(&f, "c-3"), "converged");
	assert_string_equal(effect_of(&f, "c-2"), "waiting");
	/* The deadline (11000) and its grace for readings on their way. */
	assert_int_equal(converge_expire(f.c, 11000 + CONVERGE_GRACE_MS - 1), TW_OK);
	assert_string_equal(effect_of(&f, "c-2"), "waiting");
	assert_int_equal(converge_expire(f.c, 11000 + CONVERGE_GRACE_MS), TW_OK);
	assert_string_equal(effect_of(&f, "c-2"), "not_converged");
	assert_int_equal(converge_watched(f.c), 0);
	fix_cleanup(&f);
}

static void
test_held_already_cancel_and_late(void **state)
{
	struct tw_val v = { .type = VAL_NUM, .num = 0 };
	struct fix f;

	(void)state;
	fix_init(&f);
	report(&f, "speed", &v, 500);
	issue(&f, "c-1", 1, "{}", 1000);	/* stop, already stopped: nothing new is reported */
	issue(&f, "c-2", 1, "{}", 1000);
	issue(&f, "c-3", 0, "{\"rpm\": 5}", 1000);
	converge_cancel(f.c, "d-1", "c-2");	/* expired before the broker took it */
	assert_int_equal(converge_watched(f.c), 2);
	assert_int_equal(converge_flush(f.c, 1500), TW_OK);
	converge_commit(f.c);
	assert_string_equal(effect_of(&f, "c-2"), "not_sent");
	/* The deadline passed with no new reading: the stop's target held all along. */
	assert_int_equal(converge_expire(f.c, 11000 + CONVERGE_GRACE_MS), TW_OK);
	assert_string_equal(effect_of(&f, "c-1"), "converged");
	assert_string_equal(effect_of(&f, "c-3"), "not_converged");
	/* A reading after the deadline that shows it: too late. */
	issue(&f, "c-4", 0, "{\"rpm\": 5}", 20000);
	v.num = 5;
	report(&f, "speed", &v, 30001);
	assert_int_equal(converge_reported(f.c, f.t, 30001), TW_OK);
	assert_string_equal(effect_of(&f, "c-4"), "not_converged");
	fix_cleanup(&f);
}

static void
test_reload(void **state)
{
	struct tw_val v = { .type = VAL_NUM, .num = 1450 }, a = { .type = VAL_STR, .str = "a" };
	struct tw_val b = { .type = VAL_STR, .str = "b" };
	struct fix f;

	(void)state;
	fix_init(&f);
	report(&f, "speed", &v, 500);
	report(&f, "state", &a, 500);
	issue(&f, "c-1", 1, "{}", 1000);
	issue(&f, "c-2", 2, "{}", 1000);
	issue(&f, "c-3", 2, "{}", 1000);
	converge_cancel(f.c, "d-1", "c-3");
	/* As after a failed batch: only the table is left, and what the batch could not write. */
	assert_int_equal(converge_reload(f.c), TW_OK);
	assert_int_equal(converge_watched(f.c), 2);
	report(&f, "state", &a, 2000);
	assert_int_equal(converge_reported(f.c, f.t, 2000), TW_OK);
	assert_string_equal(effect_of(&f, "c-2"), "waiting");
	report(&f, "state", &b, 2000);
	v.num = 0.5;			/* the model's tolerance of 2 */
	report(&f, "speed", &v, 2000);
	assert_int_equal(converge_reported(f.c, f.t, 2000), TW_OK);
	assert_string_equal(effect_of(&f, "c-1"), "converged");
	assert_string_equal(effect_of(&f, "c-2"), "converged");
	assert_int_equal(converge_flush(f.c, 2000), TW_OK);
	converge_commit(f.c);
	assert_string_equal(effect_of(&f, "c-3"), "not_sent");
	/* Judged once: a reload after it finds nothing waiting. */
	assert_int_equal(converge_reload(f.c), TW_OK);
	assert_int_equal(converge_watched(f.c), 0);
	fix_cleanup(&f);
}

static void
test_per_twin_bound(void **state)
{
	char id[32];
	struct fix f;

	(void)state;
	fix_init(&f);
	for (int i = 0; i < CONVERGE_PER_TWIN + 5; i++) {
		snprintf(id, sizeof(id), "c-%d", i);
		issue(&f, id, 2, "{}", 1000);
	}
	assert_int_equal(converge_watched(f.c), CONVERGE_PER_TWIN);
	assert_string_equal(effect_of(&f, id), "(null)");
	/* As after a crash that lost cancellations: more rows wait than the bound takes. */
	assert_int_equal(sqlite3_exec(store_handle(f.st), "UPDATE commands SET effect = 'waiting', "
	    "effect_deadline_ts = 99000 WHERE effect IS NULL", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(converge_reload(f.c), TW_OK);
	assert_int_equal(converge_watched(f.c), CONVERGE_PER_TWIN);
	assert_string_equal(effect_of(&f, id), "not_watched");
	fix_cleanup(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_reach_change_deadline),
		cmocka_unit_test(test_held_already_cancel_and_late),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_per_twin_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
