/* Unit tests of the models: a good set resolved in full, and each kind of bad model named with its file and element. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dirent.h>
#include <unistd.h>

#include "model.h"

#define FIX	"tests/fixtures/models/"
#define MSG_MAX	16384

/* Loads `dir`; the error text goes to `msg`. */
static struct model_set *
load(const char *dir, char *msg, size_t len)
{
	FILE *err = fmemopen(msg, len, "w");
	struct model_set *s;

	assert_non_null(err);
	s = model_set_load(dir, err);
	fclose(err);
	return s;
}

/* The load of `dir` fails and its messages hold every string of the NULL-ended list. */
static void
expect_errors(const char *dir, ...)
{
	char *msg = calloc(1, MSG_MAX);
	struct model_set *s;
	const char *want;
	va_list ap;

	assert_non_null(msg);
	s = load(dir, msg, MSG_MAX);
	if (s != NULL)
		fail_msg("%s: loaded, but it should fail", dir);
	va_start(ap, dir);
	while ((want = va_arg(ap, const char *)) != NULL)
		if (strstr(msg, want) == NULL)
			fail_msg("%s: want '%s' in:\n%s", dir, want, msg);
	va_end(ap);
	free(msg);
}

static int
count_lines(const char *s)
{
	int n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

static const struct model_prop *
prop(const struct model *m, const char *name)
{
	const struct model_prop *p = model_prop(m, name);

	if (p == NULL)
		fail_msg("%s has no property %s", m->id, name);
	return p;
}

static int
has_command(const struct model *m, const char *name)
{
	for (int i = 0; i < m->ncommands; i++)
		if (strcmp(m->commands[i].name, name) == 0)
			return 1;
	return 0;
}

static const struct model_rel *
rel(const struct model *m, const char *name)
{
	for (int i = 0; i < m->nrels; i++)
		if (strcmp(m->rels[i].name, name) == 0)
			return &m->rels[i];
	fail_msg("%s has no relationship %s", m->id, name);
	return NULL;
}

static void
test_good_set(void **state)
{
	static const char *const ids[] = {
		"dtmi:test:Bearing;1", "dtmi:test:Device;1", "dtmi:test:Motor;1",
		"dtmi:test:Pump;1", "dtmi:test:SmartDevice;1", "dtmi:test:SmartPump;1",
	};
	char msg[MSG_MAX] = { 0 };
	struct model_set *s;
	const struct model *m, *dev, *motor, *smart;
	const struct model_prop *p;

	(void)state;
	s = load(FIX "good", msg, sizeof(msg));
	if (s == NULL)
		fail_msg("good: %s", msg);
	assert_string_equal(msg, "");
	/* Four Interfaces from one array file, one each from two others; README.txt ignored. */
	assert_int_equal(model_count(s), 6);
	for (int i = 0; i < 6; i++) {
		assert_string_equal(model_at(s, i)->id, ids[i]);
		assert_ptr_equal(model_find(s, ids[i]), model_at(s, i));
	}
	assert_null(model_at(s, 6));
	assert_null(model_at(s, -1));
	assert_null(model_find(s, "dtmi:test:Nope;1"));
	assert_null(model_find(s, MODEL_ANY_ID));	/* built in, not part of the set */

	m = model_find(s, "dtmi:test:Pump;1");
	assert_string_equal(m->file, FIX "good/pump.json");
	assert_string_equal(m->display_name, "Pump");
	assert_int_equal(m->strict, 0);		/* says false; its base says true */
	/* 10 own, 2 inherited from Device, 2 from the bearing Component */
	assert_int_equal(m->nprops, 14);
	for (int i = 1; i < m->nprops; i++)
		assert_true(strcmp(m->props[i - 1].name, m->props[i].name) < 0);

	p = prop(m, "temperature");
	assert_int_equal(p->kind, MODEL_TELEMETRY);
	assert_int_equal(p->schema, SCHEMA_NUMBER);
	assert_int_equal(p->integer, 0);
	assert_int_equal(p->writable, 0);
	assert_true(p->has_min && p->has_max);
	assert_true(p->min == 0 && p->max == 100);
	assert_int_equal(p->period_ms, 10000);
	assert_string_equal(p->unit, "degreeCelsius");

	p = prop(m, "flow");
	assert_int_equal(p->schema, SCHEMA_NUMBER);
	assert_int_equal(p->integer, 0);
	assert_false(p->has_min || p->has_max);
	assert_int_equal(p->period_ms, 0);
	p = prop(m, "starts");
	assert_int_equal(p->schema, SCHEMA_NUMBER);
	assert_int_equal(p->integer, 1);
	assert_null(p->unit);
	p = prop(m, "errors");
	assert_int_equal(p->integer, 1);
	assert_false(p->has_min);
	assert_true(p->has_max && p->max == 65535);
	p = prop(m, "running");
	assert_int_equal(p->schema, SCHEMA_BOOLEAN);
	assert_int_equal(p->period_ms, 500);
	assert_int_equal(prop(m, "state")->schema, SCHEMA_STRING);
	assert_int_equal(prop(m, "installed")->schema, SCHEMA_STRING);
	assert_int_equal(prop(m, "installed")->kind, MODEL_PROPERTY);
	assert_int_equal(prop(m, "serviceInterval")->schema, SCHEMA_STRING);

	p = prop(m, "speed");
	assert_int_equal(p->kind, MODEL_PROPERTY);
	assert_int_equal(p->writable, 1);
	assert_true(p->min == 0 && p->max == 3000);
	assert_true(p->tolerance == 5);
	assert_int_equal(p->converge_ms, 30000);
	assert_string_equal(p->unit, "revolutionPerMinute");
	p = prop(m, "mode");
	assert_int_equal(p->writable, 1);
	assert_int_equal(p->schema, SCHEMA_STRING);
	assert_true(p->tolerance == 0);
	assert_int_equal(p->converge_ms, 0);

	/* Inherited, with the base's extension values. */
	p = prop(m, "uptime");
	assert_int_equal(p->integer, 1);
	assert_true(p->has_min && p->min == 0 && !p->has_max);
	assert_int_equal(p->period_ms, 60000);
	assert_string_equal(p->unit, "second");
	assert_int_equal(prop(m, "serial")->schema, SCHEMA_STRING);

	/* The Component's elements, prefixed with its name. */
	p = prop(m, "bearing.temp");
	assert_int_equal(p->kind, MODEL_TELEMETRY);
	assert_true(p->min == -20 && p->max == 120);
	assert_int_equal(p->period_ms, 30000);
	assert_int_equal(prop(m, "bearing.lubricated")->schema, SCHEMA_STRING);
	assert_null(model_prop(m, "temp"));
	assert_null(model_prop(m, "bearing"));
	assert_null(model_prop(m, "nope"));

	assert_int_equal(m->ncommands, 3);
	assert_true(has_command(m, "stop"));
	assert_true(has_command(m, "reboot"));		/* inherited */
	assert_true(has_command(m, "bearing.grease"));	/* the Component's */
	assert_int_equal(m->nrels, 2);
	assert_string_equal(rel(m, "motor")->target, "dtmi:test:Motor;1");
	assert_null(rel(m, "feeds")->target);		/* inherited, any target */

	dev = model_find(s, "dtmi:test:Device;1");
	assert_string_equal(dev->display_name, "Device");	/* "en" of the language map */
	assert_string_equal(dev->file, FIX "good/base.json");
	assert_int_equal(dev->strict, 1);
	assert_int_equal(dev->nprops, 2);

	motor = model_find(s, "dtmi:test:Motor;1");
	assert_string_equal(motor->display_name, "Motor");	/* no "en": the first */
	assert_int_equal(motor->strict, 0);
	assert_int_equal(motor->ncommands, 0);
	assert_int_equal(prop(motor, "polePairs")->integer, 1);		/* byte */
	assert_int_equal(prop(motor, "faults")->integer, 1);		/* short */
	assert_int_equal(prop(motor, "revolutions")->integer, 1);	/* unsignedLong */
	assert_int_equal(prop(motor, "hours")->integer, 1);		/* unsignedInteger */
	assert_int_equal(prop(motor, "load")->integer, 1);		/* unsignedByte */
	assert_int_equal(prop(motor, "startTime")->schema, SCHEMA_STRING);	/* time */
	assert_int_equal(prop(motor, "enabled")->schema, SCHEMA_BOOLEAN);
	assert_int_equal(prop(motor, "enabled")->writable, 1);

	/* Not said: strict when a base is. */
	smart = model_find(s, "dtmi:test:SmartDevice;1");
	assert_null(smart->display_name);
	assert_int_equal(smart->strict, 1);
	assert_int_equal(smart->nprops, 3);
	/* Device is reached twice (Pump, SmartDevice) and counts once. */
	m = model_find(s, "dtmi:test:SmartPump;1");
	assert_int_equal(m->nprops, 15);
	assert_int_equal(m->strict, 1);
	assert_int_equal(m->ncommands, 3);
	assert_int_equal(m->nrels, 2);
	assert_int_equal(prop(m, "speed")->converge_ms, 30000);
	model_set_unref(s);
}

static void
test_empty_and_missing(void **state)
{
	char msg[MSG_MAX] = { 0 };
	char dir[] = "/tmp/test_model.XXXXXX";
	struct model_set *s;

	(void)state;
	s = load(NULL, msg, sizeof(msg));
	assert_non_null(s);
	assert_int_equal(model_count(s), 0);
	assert_null(model_at(s, 0));
	assert_null(model_find(s, "dtmi:test:Pump;1"));
	model_set_unref(s);
	s = load("", msg, sizeof(msg));
	assert_non_null(s);
	assert_int_equal(model_count(s), 0);
	model_set_unref(s);

	assert_non_null(mkdtemp(dir));
	s = load(dir, msg, sizeof(msg));
	assert_non_null(s);
	assert_int_equal(model_count(s), 0);
	model_set_unref(s);
	assert_int_equal(rmdir(dir), 0);

	/* Safe on what callers may hold: no set, no model. */
	assert_int_equal(model_count(NULL), 0);
	assert_null(model_find(NULL, "dtmi:test:Pump;1"));
	assert_null(model_prop(NULL, "x"));
	model_set_unref(NULL);

	memset(msg, 0, sizeof(msg));
	assert_null(load(FIX "no-such-folder", msg, sizeof(msg)));
	assert_non_null(strstr(msg, FIX "no-such-folder: cannot open"));
	assert_int_equal(count_lines(msg), 1);
}

static void
test_refcount(void **state)
{
	char msg[MSG_MAX] = { 0 };
	struct model_set *s = load(FIX "good", msg, sizeof(msg));

	(void)state;
	assert_non_null(s);
	model_set_ref(s);
	model_set_ref(s);
	model_set_unref(s);
	model_set_unref(s);
	/* Still alive: one reference left (ASan would see a use after free). */
	assert_non_null(model_find(s, "dtmi:test:Pump;1"));
	model_set_unref(s);
}

static void
test_bad_folders(void **state)
{
	(void)state;
	/* Line and column of the missing comma; the next file is still read. */
	expect_errors(FIX "syntax", "syntax/pump.json:6:50: JSON syntax error",
	    "syntax/valve.json: dtmi:test:Valve;1: contents[0] (open-ratio): name must be",
	    NULL);
	expect_errors(FIX "unknown-schema",
	    "unknown-schema/pump.json: dtmi:test:Pump;1: contents[1] (position): "
	    "unsupported schema",
	    "contents[2] (tag): unsupported schema \"uuid\"", NULL);
	expect_errors(FIX "dup-id",
	    "dup-id/b.json: dtmi:test:Pump;1: @id is already defined in "
	    FIX "dup-id/a.json", NULL);
	expect_errors(FIX "extends-missing",
	    "extends-missing/pump.json: dtmi:test:Pump;1: extends \"dtmi:test:Device;1\", "
	    "which is not an Interface", NULL);
	expect_errors(FIX "extends-cycle",
	    "extends-cycle/models.json: dtmi:test:A;1: extends forms a cycle: "
	    "dtmi:test:A;1 -> dtmi:test:B;1 -> dtmi:test:C;1 -> dtmi:test:A;1", NULL);
	expect_errors(FIX "no-context-ext",
	    "no-context-ext/pump.json: dtmi:test:Pump;1: \"strict\" is a twind extension: "
	    "add \"dtmi:twind:context;1\" to @context",
	    "dtmi:test:Pump;1: contents[0] (temperature): \"maximum\" is a twind extension",
	    NULL);
	expect_errors(FIX "bad-range",
	    "bad-range/pump.json: dtmi:test:Pump;1: contents[0] (temperature): "
	    "minimum 100 is above maximum 0",
	    "contents[1] (state): minimum and maximum need a numeric schema",
	    "contents[2] (speed): tolerance is only for writable Properties",
	    "contents[3] (current): period must be a duration",
	    "contents[4] (level): tolerance must be zero or more", NULL);
	expect_errors(FIX "bad-name",
	    "bad-name/pump.json: dtmi:test:Pump;1: contents[1] (2fast): name must be",
	    "contents[3] (flow_): name must be",
	    "contents[2] (temperature): name is already used by contents[0]", NULL);
	expect_errors(FIX "component-nested",
	    "component-nested/models.json: dtmi:test:Pump;1: contents[0] (bearing): "
	    "the Interface of a Component (dtmi:test:Bearing;1) may not itself contain "
	    "Components", NULL);
	expect_errors(FIX "bad-context",
	    "bad-context/pump.json: dtmi:test:Pump;1: @context \"dtmi:dtdl:context;2\" "
	    "is not supported", "twind reads DTDL v3", NULL);
	expect_errors(FIX "inherited-dup",
	    "inherited-dup/models.json: dtmi:test:Pump;1: contents[1] (temperature): "
	    "name is already inherited from dtmi:test:Device;1", NULL);
	expect_errors(FIX "unknown-key",
	    "unknown-key/pump.json: dtmi:test:Pump;1: contents[0] (temperature): "
	    "unknown key \"maximun\" on a Telemetry (allowed: ",
	    "contents[1] (vibration): \"writable\" is not allowed on a Telemetry", NULL);
}

static void
test_cycle_said_once(void **state)
{
	char msg[MSG_MAX] = { 0 };

	(void)state;
	/* D extends the cycle: it fails with it but adds no message. */
	assert_null(load(FIX "extends-cycle", msg, sizeof(msg)));
	assert_int_equal(count_lines(msg), 1);
}

/* A scratch folder of model files, written by the tests below. */
static void
put(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void
clear(const char *dir)
{
	struct dirent *d;
	char path[512];
	DIR *dp = opendir(dir);

	assert_non_null(dp);
	while ((d = readdir(dp)) != NULL) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		assert_int_equal(unlink(path), 0);
	}
	closedir(dp);
}

#define HEAD	"{\"@context\":\"dtmi:dtdl:context;3\",\"@type\":\"Interface\","

static void
test_file_edges(void **state)
{
	char dir[] = "/tmp/test_model.XXXXXX", msg[MSG_MAX], *big, *many;
	struct model_set *s;
	size_t off;

	(void)state;
	assert_non_null(mkdtemp(dir));

	/* A byte order mark is skipped; hidden and non-.json files are not read. */
	put(dir, "a.json", "\xEF\xBB\xBF" HEAD "\"@id\":\"dtmi:t:A;1\"}\n");
	put(dir, ".#a.json", "{ not json");
	put(dir, "a.json~", "{ not json");
	memset(msg, 0, sizeof(msg));
	s = load(dir, msg, sizeof(msg));
	if (s == NULL)
		fail_msg("%s", msg);
	assert_int_equal(model_count(s), 1);
	model_set_unref(s);
	clear(dir);

	/* Text after the value would otherwise be lost silently. */
	put(dir, "a.json", HEAD "\"@id\":\"dtmi:t:A;1\"}\n" HEAD "\"@id\":\"dtmi:t:B;1\"}\n");
	memset(msg, 0, sizeof(msg));
	assert_null(load(dir, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "a.json:2:1: JSON syntax error"));
	clear(dir);

	put(dir, "a.json", "  \n");
	memset(msg, 0, sizeof(msg));
	assert_null(load(dir, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "a.json: empty file"));
	clear(dir);

	/* Above 1 MiB: refused before parsing. */
	assert_non_null(big = malloc(1100000));
	off = (size_t)sprintf(big, HEAD "\"@id\":\"dtmi:t:A;1\",\"description\":\"");
	memset(big + off, 'x', 1100000 - off - 4);
	strcpy(big + 1100000 - 4, "\"}\n");
	put(dir, "big.json", big);
	free(big);
	memset(msg, 0, sizeof(msg));
	assert_null(load(dir, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "big.json: is 1099999 bytes; a model file may have at most 1 MiB"));
	clear(dir);

	/* Every problem is found, the first 50 shown, the rest counted. */
	assert_non_null(many = malloc(100000));
	off = (size_t)sprintf(many, HEAD "\"@id\":\"dtmi:t:A;1\",\"contents\":[");
	for (int i = 0; i < 70; i++)
		off += (size_t)sprintf(many + off, "%s{\"@type\":\"Telemetry\",\"name\":\"_%d\","
		    "\"schema\":\"double\"}", i > 0 ? "," : "", i);
	strcpy(many + off, "]}\n");
	put(dir, "many.json", many);
	free(many);
	memset(msg, 0, sizeof(msg));
	assert_null(load(dir, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "contents[0] (_0): name must be"));
	assert_non_null(strstr(msg, "contents[49] (_49): name must be"));
	assert_null(strstr(msg, "contents[50]"));
	assert_non_null(strstr(msg, ": 20 more problems not shown"));
	assert_int_equal(count_lines(msg), 51);
	clear(dir);

	/* Interface-level problems, all in one go. */
	put(dir, "a.json", "[{\"@type\":\"Interface\"},"
	    "{\"@context\":[\"dtmi:dtdl:context;3\",\"dtmi:other:context;1\"],"
	    "\"@id\":\"dtmi:t:_B;1\",\"@type\":\"Thing\",\"extends\":[{\"@type\":\"Interface\"}],"
	    "\"contents\":[{\"@type\":[\"Telemetry\",\"Property\"],\"name\":\"x\"},"
	    "{\"@type\":\"Component\",\"name\":\"c\",\"schema\":\"dtmi:t:Nope;1\"},"
	    "{\"@type\":\"Relationship\",\"name\":\"r\",\"target\":\"dtmi:t:Nope;1\"},"
	    "{\"@type\":\"Telemetry\",\"name\":\"y\",\"schema\":\"double\",\"name\":\"z\"},"
	    "{\"@type\":\"Telemetry\",\"name\":\"w\"}, 7]},"
	    "{\"@context\":\"dtmi:dtdl:context;3\",\"@id\":\"dtmi:t:C;1\",\"@type\":\"Interface\","
	    "\"contents\":[{\"@type\":\"Component\",\"name\":\"c\",\"schema\":\"dtmi:t:Nope;1\"},"
	    "{\"@type\":\"Relationship\",\"name\":\"r\",\"target\":\"dtmi:t:Nope;2\"}]}]");
	memset(msg, 0, sizeof(msg));
	assert_null(load(dir, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "a.json: [0]: @context is missing"));
	assert_non_null(strstr(msg, "a.json: [0]: @id is missing"));
	assert_non_null(strstr(msg, "dtmi:t:_B;1: @context \"dtmi:other:context;1\" is not supported"));
	assert_non_null(strstr(msg, "dtmi:t:_B;1: @id must be a DTMI"));
	assert_non_null(strstr(msg, "dtmi:t:_B;1: @type must be \"Interface\""));
	assert_non_null(strstr(msg, "dtmi:t:_B;1: extends[0]: inline Interfaces are not supported"));
	assert_non_null(strstr(msg, "contents[0] (x): @type names more than one"));
	assert_non_null(strstr(msg, "contents[3] (y): key \"name\" appears twice"));
	assert_non_null(strstr(msg, "contents[4] (w): schema is missing"));
	assert_non_null(strstr(msg, "contents[5]: expected an object"));
	assert_non_null(strstr(msg, "dtmi:t:_B;1: contents[1] (c): schema \"dtmi:t:Nope;1\" is not an Interface"));
	assert_non_null(strstr(msg, "dtmi:t:C;1: contents[0] (c): schema \"dtmi:t:Nope;1\" is not an Interface"));
	assert_non_null(strstr(msg, "dtmi:t:C;1: contents[1] (r): target \"dtmi:t:Nope;2\" is not an Interface"));
	clear(dir);
	assert_int_equal(rmdir(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_set),
		cmocka_unit_test(test_empty_and_missing),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_bad_folders),
		cmocka_unit_test(test_cycle_said_once),
		cmocka_unit_test(test_file_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
