/*
 * Unit tests of the browser guard: what a page on another site, a DNS
 * rebinding page and a no-preflight form can send, and what a script,
 * curl and twind's own page send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "http_guard.h"

static const char JSON[] = "application/json";

static int
check(const struct guard *g, const char *method, const char *host, const char *origin,
    const char *type, int *status)
{
	struct guard_refusal r = { 0 };
	int rc = guard_check(g, method, host, origin, type, &r);

	*status = rc == TW_OK ? 0 : r.status;
	if (rc != TW_OK) {
		assert_non_null(r.code);
		assert_true(strlen(r.message) > 0);
	}
	return rc;
}

static void
test_hosts_by_address_and_configured_name(void **state)
{
	static const char *const ok[] = { "127.0.0.1:8080", "127.0.0.1", "[::1]:8080",
		"localhost:8080", "LOCALHOST", "localhost.:8080", "10.1.2.3:80", "gw1.plant:8080",
		"GW1.PLANT", "scada:8080", NULL };
	static const char *const bad[] = { "attacker.example:8080", "gw1.plant.evil:8080",
		"localhost.evil", "[::1", "[zz]:8080", "127.0.0.1:", "127.0.0.1:99999999",
		"127.0.0.1:80x", "", ":8080", "a b", "gw1.plant:8080:1", NULL };
	struct guard g;
	char err[128];
	int st;

	(void)state;
	assert_int_equal(guard_init(&g, "gw1.plant, scada", 0, err, sizeof(err)), TW_OK);
	assert_int_equal(g.nhosts, 2);
	for (int i = 0; ok[i] != NULL; i++) {
		if (check(&g, "GET", ok[i], NULL, NULL, &st) != TW_OK)
			fail_msg("Host '%s' was refused", ok[i]);
	}
	for (int i = 0; bad[i] != NULL; i++) {
		if (check(&g, "GET", bad[i], NULL, NULL, &st) == TW_OK)
			fail_msg("Host '%s' was let through", bad[i]);
		assert_int_equal(st, 421);
	}
	/* No Host at all is HTTP/1.0, never a browser. */
	assert_int_equal(check(&g, "GET", NULL, NULL, NULL, &st), TW_OK);
}

static void
test_origin_must_be_twinds_own(void **state)
{
	struct guard g;
	char err[128];
	int st;

	(void)state;
	assert_int_equal(guard_init(&g, "", 0, err, sizeof(err)), TW_OK);
	assert_int_equal(check(&g, "POST", "127.0.0.1:8080", "http://127.0.0.1:8080", JSON, &st),
	    TW_OK);
	assert_int_equal(check(&g, "GET", "localhost:8080", "http://LOCALHOST:8080", NULL, &st),
	    TW_OK);
	assert_int_equal(check(&g, "POST", "127.0.0.1:8080", "http://127.0.0.1:9999", JSON, &st),
	    TW_ERR_INVAL);
	assert_int_equal(st, 403);
	assert_int_equal(check(&g, "POST", "127.0.0.1:8080", "null", JSON, &st), TW_ERR_INVAL);
	assert_int_equal(check(&g, "POST", "127.0.0.1:8080", "https://127.0.0.1:8080", JSON, &st),
	    TW_ERR_INVAL);
	assert_int_equal(check(&g, "GET", "127.0.0.1:8080", "http://evil.example", NULL, &st),
	    TW_ERR_INVAL);
	assert_int_equal(check(&g, "POST", NULL, "http://127.0.0.1:8080", JSON, &st),
	    TW_ERR_INVAL);
	assert_int_equal(check(&g, "POST", "127.0.0.1:8080", "http://127.0.0.1:8080/x", JSON, &st),
	    TW_ERR_INVAL);
	assert_int_equal(guard_init(&g, "", 1, err, sizeof(err)), TW_OK);
	assert_int_equal(check(&g, "POST", "127.0.0.1:8443", "https://127.0.0.1:8443", JSON, &st),
	    TW_OK);
	assert_int_equal(check(&g, "POST", "127.0.0.1:8443", "http://127.0.0.1:8443", JSON, &st),
	    TW_ERR_INVAL);
}

static void
test_writes_need_json(void **state)
{
	static const char *const ok[] = { "application/json", "Application/JSON",
		"application/json; charset=utf-8", " application/json ;charset=UTF-8", NULL };
	static const char *const bad[] = { "text/plain", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x", "application/jsonx", "application/json-seq",
		"", "text/plain; application/json", NULL };
	static const char *const writes[] = { "POST", "PATCH", "PUT", "DELETE", NULL };
	struct guard g;
	char err[128];
	int st;

	(void)state;
	assert_int_equal(guard_init(&g, NULL, 0, err, sizeof(err)), TW_OK);
	for (int w = 0; writes[w] != NULL; w++) {
		for (int i = 0; ok[i] != NULL; i++)
			assert_int_equal(check(&g, writes[w], "127.0.0.1", NULL, ok[i], &st), TW_OK);
		for (int i = 0; bad[i] != NULL; i++) {
			if (check(&g, writes[w], "127.0.0.1", NULL, bad[i], &st) == TW_OK)
				fail_msg("%s with '%s' was let through", writes[w], bad[i]);
			assert_int_equal(st, 415);
		}
		assert_int_equal(check(&g, writes[w], "127.0.0.1", NULL, NULL, &st), TW_ERR_INVAL);
	}
	assert_int_equal(check(&g, "GET", "127.0.0.1", NULL, "text/plain", &st), TW_OK);
}

static void
test_bad_host_lists(void **state)
{
	char many[GUARD_HOSTS_MAX * 4 + 8] = "";
	struct guard g;
	char err[128];

	(void)state;
	assert_int_equal(guard_init(&g, "ok.name, -bad", 0, err, sizeof(err)), TW_ERR_INVAL);
	assert_non_null(strstr(err, "-bad"));
	assert_int_equal(guard_init(&g, "a/b", 0, err, sizeof(err)), TW_ERR_INVAL);
	for (int i = 0; i <= GUARD_HOSTS_MAX; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "h%d,", i);
	assert_int_equal(guard_init(&g, many, 0, err, sizeof(err)), TW_ERR_INVAL);
	assert_non_null(strstr(err, "more than"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hosts_by_address_and_configured_name),
		cmocka_unit_test(test_origin_must_be_twinds_own),
		cmocka_unit_test(test_writes_need_json),
		cmocka_unit_test(test_bad_host_lists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
