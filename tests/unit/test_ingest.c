/* Unit tests of ingest: topic mapping, flattening, limits and drop reasons. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "ingest.h"

#define NOW	1795496400000LL

static struct ingest in;

static int
setup(void **state)
{
	(void)state;
	return ingest_init(&in, "plant/{twin}/telemetry", 65536, 32, 256, 3600000);
}

static int
teardown(void **state)
{
	(void)state;
	ingest_cleanup(&in);
	return 0;
}

static int
parse(const char *topic, const char *payload, struct rec **r)
{
	size_t len;

	return ingest_message(&in, topic, payload, strlen(payload), NOW, r, &len);
}

/* Finds value `name` in the record; NULL if absent. */
static const struct rec_val *
val(const struct rec *r, const char *name)
{
	const struct rec_val *v = rec_val_first(r);

	for (int i = 0; i < r->nvals; i++, v = rec_val_next(v))
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

static void
test_object_flatten(void **state)
{
	struct rec *r;
	const struct rec_val *v;

	(void)state;
	assert_int_equal(parse("plant/pump-1/telemetry",
	    "{\"ts\":1764000000000,\"t\":71.5,\"on\":true,\"mode\":\"auto\","
	    "\"bearing\":{\"temp\":70,\"x\":{\"y\":-1}}}", &r), INGEST_OK);
	assert_int_equal(r->kind, REC_UPDATE);
	assert_string_equal(r->id, "pump-1");
	assert_int_equal(r->ts, 1764000000000LL);
	assert_int_equal(r->arrival_ms, NOW);
	assert_int_equal(r->nvals, 5);
	v = val(r, "t");
	assert_int_equal(v->type, VAL_NUM);
	assert_true(v->num == 71.5);
	assert_int_equal(val(r, "on")->type, VAL_BOOL);
	assert_true(val(r, "on")->num == 1);
	v = val(r, "mode");
	assert_int_equal(v->type, VAL_STR);
	assert_string_equal(rec_val_str(v), "auto");
	assert_true(val(r, "bearing.temp")->num == 70);
	assert_true(val(r, "bearing.x.y")->num == -1);
	assert_null(val(r, "ts"));
}

static void
test_single_value_topic(void **state)
{
	struct rec *r;

	(void)state;
	assert_int_equal(parse("plant/p1/telemetry/speed", "1450", &r), INGEST_OK);
	assert_int_equal(r->nvals, 1);
	assert_true(val(r, "speed")->num == 1450);
	assert_int_equal(r->ts, NOW);
	assert_int_equal(parse("plant/p1/telemetry/bearing/temp", "71.2", &r), INGEST_OK);
	assert_non_null(val(r, "bearing.temp"));
	assert_int_equal(parse("plant/p1/telemetry/running", "false", &r), INGEST_OK);
	assert_int_equal(val(r, "running")->type, VAL_BOOL);
	assert_int_equal(parse("plant/p1/telemetry/mode", "\"manual\"", &r), INGEST_OK);
	assert_string_equal(rec_val_str(val(r, "mode")), "manual");
	assert_int_equal(parse("plant/p1/telemetry/mode", "manual", &r), DROP_MALFORMED);
}

static void
test_ts_forms(void **state)
{
	struct rec *r;

	(void)state;
	assert_int_equal(parse("plant/a/telemetry",
	    "{\"ts\":\"2026-11-24T05:00:00Z\",\"v\":1}", &r), INGEST_OK);
	assert_int_equal(r->ts, 1795496400000LL);
	assert_int_equal(parse("plant/a/telemetry", "{\"v\":1}", &r), INGEST_OK);
	assert_int_equal(r->ts, NOW);
	/* Seconds instead of ms, a fraction, a string, the far future: refused. */
	assert_int_equal(parse("plant/a/telemetry", "{\"ts\":1764000000,\"v\":1}", &r), DROP_BAD_TS);
	assert_int_equal(parse("plant/a/telemetry", "{\"ts\":1764000000000.5,\"v\":1}", &r),
	    DROP_BAD_TS);
	assert_int_equal(parse("plant/a/telemetry", "{\"ts\":\"today\",\"v\":1}", &r), DROP_BAD_TS);
	assert_int_equal(parse("plant/a/telemetry", "{\"ts\":1895496400000,\"v\":1}", &r),
	    DROP_BAD_TS);
	assert_int_equal(parse("plant/a/telemetry", "{\"ts\":true,\"v\":1}", &r), DROP_BAD_TS);
	/* beyond int64_t: the cast would be undefined (fuzz_ingest found it; UBSan says so) */
	assert_int_equal(parse("plant/a/telemetry", "{\"ts\":-1e308,\"v\":1}", &r), DROP_BAD_TS);
	assert_int_equal(parse("plant/a/telemetry", "{\"ts\":1e300,\"v\":1}", &r), DROP_BAD_TS);
}

static void
test_drop_reasons(void **state)
{
	char deep[200], many[8192], big_name[300];
	size_t n = 0;
	struct rec *r;
	char *huge;

	(void)state;
	assert_int_equal(parse("plant/a/telemetry", "{\"v\":", &r), DROP_MALFORMED);
	assert_int_equal(parse("plant/a/telemetry", "[1,2]", &r), DROP_MALFORMED);
	assert_int_equal(parse("plant/a/telemetry", "{}", &r), DROP_NO_VALUES);
	assert_int_equal(parse("plant/a/telemetry", "{\"ts\":1764000000000}", &r), DROP_NO_VALUES);
	assert_int_equal(parse("plant/a/telemetry", "{\"v\":null}", &r), DROP_BAD_VALUE);
	assert_int_equal(parse("plant/a/telemetry", "{\"v\":[1]}", &r), DROP_BAD_VALUE);
	assert_int_equal(parse("plant/a/telemetry", "{\"v w\":1}", &r), DROP_BAD_PROPERTY);
	assert_int_equal(parse("plant/a/telemetry", "{\"\":1}", &r), DROP_BAD_PROPERTY);
	assert_int_equal(parse("plant/a$b/telemetry", "{\"v\":1}", &r), DROP_BAD_TWIN_ID);
	assert_int_equal(parse("plant//telemetry", "{\"v\":1}", &r), DROP_BAD_TWIN_ID);
	/* path segments in a URL: the page could never open such a twin */
	assert_int_equal(parse("plant/../telemetry", "{\"v\":1}", &r), DROP_BAD_TWIN_ID);
	assert_int_equal(parse("plant/./telemetry", "{\"v\":1}", &r), DROP_BAD_TWIN_ID);
	assert_int_equal(parse("plant/.../telemetry", "{\"v\":1}", &r), INGEST_OK);
	assert_int_equal(parse("other/a/telemetry", "{\"v\":1}", &r), DROP_UNMAPPED_TOPIC);
	assert_int_equal(parse("plant/a/status", "{\"v\":1}", &r), DROP_UNMAPPED_TOPIC);

	/* Depth 33 with a '{' inside a string that must not count. */
	for (int i = 0; i < 33; i++)
		deep[n++] = '[';
	deep[n] = '\0';
	assert_int_equal(parse("plant/a/telemetry", deep, &r), DROP_TOO_DEEP);
	snprintf(deep, sizeof(deep), "{\"s\":\"%s\",\"v\":1}", "{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{");
	assert_int_equal(parse("plant/a/telemetry", deep, &r), INGEST_OK);

	n = (size_t)snprintf(many, sizeof(many), "{");
	for (int i = 0; i < 257; i++)
		n += (size_t)snprintf(many + n, sizeof(many) - n, "%s\"p%d\":%d", i ? "," : "", i, i);
	snprintf(many + n, sizeof(many) - n, "}");
	assert_int_equal(parse("plant/a/telemetry", many, &r), DROP_TOO_MANY_PROPERTIES);

	memset(big_name, 'n', 129);
	big_name[129] = '\0';
	snprintf(many, sizeof(many), "{\"%s\":1}", big_name);
	assert_int_equal(parse("plant/a/telemetry", many, &r), DROP_BAD_PROPERTY);

	huge = malloc(200 * 1024);
	memset(huge, ' ', 200 * 1024);
	memcpy(huge, "{\"v\":1}", 7);
	assert_int_equal(ingest_message(&in, "plant/a/telemetry", huge, 200 * 1024, NOW, &r, &n),
	    DROP_TOO_LARGE);
	free(huge);
}

/* The payload is not NUL-terminated: bytes past its length must not be read. */
static void
test_explicit_length(void **state)
{
	const char buf[] = "{\"v\":1}GARBAGE";
	struct rec *r;
	size_t len;

	(void)state;
	assert_int_equal(ingest_message(&in, "plant/a/telemetry", buf, 7, NOW, &r, &len), INGEST_OK);
	assert_int_equal(ingest_message(&in, "plant/a/telemetry", buf, 6, NOW, &r, &len),
	    DROP_MALFORMED);
}

/* cJSON stops after the first value; what follows must not be ignored. */
static void
test_trailing_garbage_and_utf8(void **state)
{
	struct rec *r;

	(void)state;
	assert_int_equal(parse("plant/a/telemetry", "{\"t\":71.2} garbage", &r), DROP_MALFORMED);
	assert_int_equal(parse("plant/a/telemetry", "{\"a\":1}{\"a\":2}", &r), DROP_MALFORMED);
	assert_int_equal(parse("plant/a/telemetry/t", "71.2abc", &r), DROP_MALFORMED);
	assert_int_equal(parse("plant/a/telemetry/t", "true,false", &r), DROP_MALFORMED);
	assert_int_equal(parse("plant/a/telemetry", "{\"t\":71.2}\r\n ", &r), INGEST_OK);
	assert_int_equal(parse("plant/a/telemetry", "{\"s\":\"\xff\xfe\"}", &r), DROP_BAD_VALUE);
	assert_int_equal(parse("plant/a/telemetry", "{\"s\":\"\xc0\xaf\"}", &r), DROP_BAD_VALUE);
	assert_int_equal(parse("plant/a/telemetry", "{\"s\":\"\xed\xa0\x80\"}", &r),
	    DROP_BAD_VALUE);
	assert_int_equal(parse("plant/a/telemetry", "{\"s\":\"gr\xc3\xbc\xc3\x9f \xe2\x82\xac\"}",
	    &r), INGEST_OK);
	assert_int_equal(r->flags & REC_F_HAS_TS, 0);
	assert_int_equal(parse("plant/a/telemetry", "{\"ts\":1764000000000,\"t\":1}", &r),
	    INGEST_OK);
	assert_int_equal(r->flags & REC_F_HAS_TS, REC_F_HAS_TS);
}

static void
test_quarantine_record(void **state)
{
	char payload[3000];
	struct rec *r;
	size_t len;

	(void)state;
	memset(payload, 'x', sizeof(payload));
	ingest_quarantine(&in, "plant/a/telemetry", payload, sizeof(payload), DROP_MALFORMED, NOW,
	    &r, &len);
	assert_int_equal(r->kind, REC_QUARANTINE);
	assert_string_equal(r->id, "plant/a/telemetry");
	assert_int_equal(r->body_len, QUARANTINE_KEEP);
	assert_int_equal(r->reason, DROP_MALFORMED);
	assert_true(len < 4096);
}

static void
test_subscriptions(void **state)
{
	char a[128], b[128];

	(void)state;
	ingest_subscriptions(&in, a, b, sizeof(a));
	assert_string_equal(a, "plant/+/telemetry");
	assert_string_equal(b, "plant/+/telemetry/#");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_object_flatten),
		cmocka_unit_test(test_single_value_topic),
		cmocka_unit_test(test_ts_forms),
		cmocka_unit_test(test_drop_reasons),
		cmocka_unit_test(test_explicit_length),
		cmocka_unit_test(test_trailing_garbage_and_utf8),
		cmocka_unit_test(test_quarantine_record),
		cmocka_unit_test(test_subscriptions),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
