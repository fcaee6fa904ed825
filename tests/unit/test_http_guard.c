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
check_req(const struct guard *g, const struct guard_req *req, int *status)
{
	struct guard_refusal r = { 0 };
	int rc = guard_check(g, req, &r);

	*status = rc == TW_OK ? 0 : r.status;
	if (rc != TW_OK) {
		assert_non_null(r.code);
		assert_true(strlen(r.message) > 0);
	}
	return rc;
}

/* A request as curl or a script sends it: one Host, no Sec-Fetch-* headers. */
static int
check(const struct guard *g, const char *method, const char *host, const char *origin,
    const char *type, int *status)
{
	struct guard_req req = { .method = method, .path = "/api/v1/twins", .http11 = 1,
		.nhost = host != NULL, .norigin = origin != NULL, .host = host, .origin = origin,
		.content_type = type };

	return check_req(g, &req, status);
}

static void
test_hosts_by_address_and_configured_name(void **state)
{
	static const char *const ok[] = { "127.0.0.1:8080", "127.0.0.1", "[::1]:8080",
		"localhost:8080", "LOCALHOST", "localhost.:8080", "10.1.2.3:80", "gw1.plant:8080",
		"GW1.PLANT", "scada:8080", NULL };
	static const char *const bad[] = { "attacker.example:8080", "gw1.plant.evil:8080",
		"localhost.evil", "[::1", "[zz]:8080", "127.0.0.1:", "127.0.0.1:99999999",
		"127.0.0.1:80x", "", ":8080", "a b", "gw1.plant:8080:1", "127.0.0.1:0",
		"127.0.0.1:65536", "[::1]:", "[fe80::1%eth0]:8080", NULL };
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
	/* No Host at all is HTTP/1.0, never a browser; HTTP/1.1 must send one. */
	struct guard_req old = { .method = "GET", .path = "/", .http11 = 0 };

	assert_int_equal(check_req(&g, &old, &st), TW_OK);
	old.http11 = 1;
	assert_int_equal(check_req(&g, &old, &st), TW_ERR_INVAL);
	assert_int_equal(st, 400);
}

static void
test_duplicate_host_or_origin(void **state)
{
	struct guard g;
	char err[128];
	int st;
	struct guard_req req = { .method = "GET", .path = "/api/v1/twins", .http11 = 1, .nhost = 2,
		.host = "127.0.0.1:8080" };

	(void)state;
	assert_int_equal(guard_init(&g, "", 0, err, sizeof(err)), TW_OK);
	assert_int_equal(check_req(&g, &req, &st), TW_ERR_INVAL);
	assert_int_equal(st, 400);
	req.nhost = 1;
	req.norigin = 2;
	req.origin = "http://127.0.0.1:8080";
	assert_int_equal(check_req(&g, &req, &st), TW_ERR_INVAL);
	req.norigin = 1;
	assert_int_equal(check_req(&g, &req, &st), TW_OK);
}

/*
 * What Chromium sends for requests of another page that carry no Origin
 * (no-cors fetch, <img>, <script>) and for the user's own navigations.
 */
static void
test_fetch_metadata(void **state)
{
	static const struct {
		const char *method, *path, *site, *mode;
		int ok;
	} cases[] = {
		{ "GET", "/api/v1/events", "same-origin", "cors", 1 },
		{ "GET", "/api/v1/events", "none", "navigate", 1 },
		{ "GET", "/api/v1/events", "same-site", "no-cors", 0 },
		{ "GET", "/api/v1/events", "cross-site", "no-cors", 0 },
		{ "GET", "/api/v1/twins/p-1/history", "cross-site", "navigate", 0 },
		{ "GET", "/", "cross-site", "navigate", 1 },	/* a link to the page */
		{ "GET", "/ui/app.js", "same-site", "navigate", 1 },
		{ "GET", "/", "cross-site", "no-cors", 0 },	/* an <img src=/> */
		{ "POST", "/", "cross-site", "navigate", 0 },	/* a form */
		{ "GET", "/", "same-site", "cors", 0 },
		{ "GET", "/", NULL, NULL, 1 },			/* curl, older browsers */
	};
	struct guard g;
	char err[128];
	int st;

	(void)state;
	assert_int_equal(guard_init(&g, "", 0, err, sizeof(err)), TW_OK);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct guard_req req = { .method = cases[i].method, .path = cases[i].path,
			.http11 = 1, .nhost = 1, .host = "127.0.0.1:8080",
			.content_type = "application/json", .fetch_site = cases[i].site,
			.fetch_mode = cases[i].mode };
		int rc = check_req(&g, &req, &st);

		if ((rc == TW_OK) != cases[i].ok)
			fail_msg("%s %s site=%s mode=%s: %s", cases[i].method, cases[i].path,
			    cases[i].site, cases[i].mode, rc == TW_OK ? "let through" : "refused");
		if (!cases[i].ok)
			assert_int_equal(st, 403);
	}
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
		cmocka_unit_test(test_duplicate_host_or_origin),
		cmocka_unit_test(test_fetch_metadata),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
