/* Unit tests of the configuration: defaults, good files, and errors with file and line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "conf.h"
#include "err.h"
#include "log.h"

#define FIX	"tests/fixtures/conf/"

/* Loads `path`; returns the code and the error text in `msg`. */
static int
load(struct conf *c, const char *path, char *msg, size_t len)
{
	FILE *err = fmemopen(msg, len, "w");
	int rc;

	assert_non_null(err);
	rc = conf_load(c, path, err);
	fclose(err);
	return rc;
}

static void
expect_error(const char *path, const char *where, const char *words)
{
	struct conf c;
	char msg[512] = { 0 };

	assert_int_not_equal(load(&c, path, msg, sizeof(msg)), TW_OK);
	if (strstr(msg, where) == NULL || strstr(msg, words) == NULL)
		fail_msg("%s: got '%s', want '%s' and '%s'", path, msg, where, words);
	conf_cleanup(&c);
}

static void
test_good_file(void **state)
{
	struct conf c;
	char msg[512] = { 0 };

	(void)state;
	assert_int_equal(load(&c, FIX "good.conf", msg, sizeof(msg)), TW_OK);
	assert_string_equal(c.mqtt_host, "127.0.0.1");
	assert_int_equal(c.mqtt_port, 1884);
	assert_string_equal(c.mqtt_client_id, "gw-7");
	assert_int_equal(c.mqtt_keepalive_ms, 60000);
	assert_string_equal(c.http_listen, "127.0.0.1:9090");
	/* Relative to the file's directory. */
	assert_string_equal(c.db_path, FIX "data/t.db");
	assert_int_equal(c.db_sync, CONF_SYNC_FULL);
	assert_int_equal(c.max_future_ms, 600000);
	assert_int_equal(c.auto_create, 0);
	assert_int_equal(c.log_level, LOG_LVL_DEBUG);
	/* Untouched keys keep their defaults. */
	assert_string_equal(c.telemetry_topic, "plant/{twin}/telemetry");
	assert_int_equal(c.max_payload, 65536);
	assert_int_equal(c.max_depth, 32);
	assert_int_equal(c.max_properties, 256);
	conf_cleanup(&c);
}

static void
test_errors_name_file_and_line(void **state)
{
	(void)state;
	expect_error(FIX "unknown-key.conf", "unknown-key.conf:3:", "unknown key 'prot'");
	expect_error(FIX "bad-port.conf", "bad-port.conf:3:", "port");
	expect_error(FIX "unknown-section.conf", "unknown-section.conf:3:", "unknown section [mqqt]");
	expect_error(FIX "empty-section.conf", "empty-section.conf:3:", "unknown section [empty]");
	expect_error(FIX "bad-duration.conf", "bad-duration.conf:2:", "keepalive");
	expect_error(FIX "syntax.conf", "syntax.conf:2:", "syntax");
	expect_error(FIX "remote.conf", "remote.conf", "allow_remote_without_tokens");
	expect_error(FIX "bad-topic.conf", "bad-topic.conf", "telemetry_topic");
	expect_error(FIX "missing.conf", "missing.conf", "cannot open");
}

static void
test_remote_allowed_in_plain_words(void **state)
{
	struct conf c;
	char msg[512] = { 0 };

	(void)state;
	assert_int_equal(load(&c, FIX "remote-allowed.conf", msg, sizeof(msg)), TW_OK);
	conf_cleanup(&c);
}

static void
test_overrides(void **state)
{
	struct conf c;
	char msg[512] = { 0 };
	FILE *err = fmemopen(msg, sizeof(msg), "w");

	(void)state;
	assert_int_equal(load(&c, FIX "good.conf", msg, sizeof(msg)), TW_OK);
	assert_int_equal(conf_set(&c, "mqtt.port=1999", err), TW_OK);
	assert_int_equal(c.mqtt_port, 1999);
	assert_int_equal(conf_set(&c, "storage.database=/tmp/x.db", err), TW_OK);
	assert_string_equal(c.db_path, "/tmp/x.db");
	assert_int_not_equal(conf_set(&c, "mqtt.port=0", err), TW_OK);
	assert_int_not_equal(conf_set(&c, "mqtt.nope=1", err), TW_OK);
	assert_int_not_equal(conf_set(&c, "port=1", err), TW_OK);
	fclose(err);
	conf_cleanup(&c);
}

static void
test_listen_split(void **state)
{
	char host[64];
	int port;

	(void)state;
	assert_int_equal(conf_listen_split("127.0.0.1:8080", host, sizeof(host), &port), TW_OK);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 8080);
	assert_int_equal(conf_listen_split("[::1]:80", host, sizeof(host), &port), TW_OK);
	assert_string_equal(host, "::1");
	assert_int_not_equal(conf_listen_split("8080", host, sizeof(host), &port), TW_OK);
	assert_int_not_equal(conf_listen_split("h:99999", host, sizeof(host), &port), TW_OK);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_file),
		cmocka_unit_test(test_errors_name_file_and_line),
		cmocka_unit_test(test_remote_allowed_in_plain_words),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_listen_split),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
