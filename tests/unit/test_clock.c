/* Unit tests of time and duration parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "clock.h"
#include "err.h"

static void
test_durations(void **state)
{
	static const struct { const char *s; int64_t ms; } good[] = {
		{ "500ms", 500 }, { "30s", 30000 }, { "5m", 300000 }, { "2h", 7200000 },
		{ "7d", 604800000 }, { "10", 10000 }, { "1.5s", 1500 },
	};
	static const char *const bad[] = { "", "s", "-5m", "5x", "5 m", "m5", "99999999d" };
	int64_t ms;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(clock_parse_duration(good[i].s, &ms), TW_OK);
		assert_int_equal(ms, good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(clock_parse_duration(bad[i], &ms), TW_ERR_INVAL);
}

static void
test_rfc3339(void **state)
{
	static const struct { const char *s; int64_t ms; } good[] = {
		{ "2026-11-24T05:00:00Z", 1795496400000LL },
		{ "2026-11-24T05:00:00.250Z", 1795496400250LL },
		{ "2026-11-24T06:00:00+01:00", 1795496400000LL },
		{ "2026-11-24T04:30:00-00:30", 1795496400000LL },
		{ "1970-01-01T00:00:00Z", 0 },
	};
	static const char *const bad[] = {
		"2026-11-24", "2026-11-24T05:00:00", "2026-13-24T05:00:00Z",
		"2026-11-24T25:00:00Z", "2026-11-24T05:00:00ZZ", "2026-11-24T05:00:00.Z",
		"20261124T050000Z",
	};
	int64_t ms;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(clock_parse_rfc3339(good[i].s, strlen(good[i].s), &ms), TW_OK);
		assert_int_equal(ms, good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(clock_parse_rfc3339(bad[i], strlen(bad[i]), &ms), TW_ERR_INVAL);
}

static void
test_rest_times(void **state)
{
	int64_t now = 1795496400000LL, ms;

	(void)state;
	assert_int_equal(clock_parse_time("now", now, &ms), TW_OK);
	assert_int_equal(ms, now);
	assert_int_equal(clock_parse_time("-15m", now, &ms), TW_OK);
	assert_int_equal(ms, now - 900000);
	assert_int_equal(clock_parse_time("-7d", now, &ms), TW_OK);
	assert_int_equal(ms, now - 7 * 86400000LL);
	assert_int_equal(clock_parse_time("1764000000000", now, &ms), TW_OK);
	assert_int_equal(ms, 1764000000000LL);
	assert_int_equal(clock_parse_time("2026-11-24T05:00:00Z", now, &ms), TW_OK);
	assert_int_equal(ms, 1795496400000LL);
	assert_int_equal(clock_parse_time("yesterday", now, &ms), TW_ERR_INVAL);
	assert_int_equal(clock_parse_time("12abc", now, &ms), TW_ERR_INVAL);
	assert_int_equal(clock_parse_time("", now, &ms), TW_ERR_INVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_rest_times),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
