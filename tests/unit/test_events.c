/* Unit tests of the event hub: filters, bounded buffers, cut-off and shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "events.h"

static void
test_filter_and_format(void **state)
{
	struct events *e = events_new(4, 4096);
	struct events_client *all, *pumps;
	char buf[512];
	ssize_t n;

	(void)state;
	assert_false(events_listening(e));
	all = events_subscribe(e, NULL);
	pumps = events_subscribe(e, "pump-*");
	assert_true(events_listening(e));
	events_emit(e, "twin", "pump-1", "{\"v\":1}");
	events_emit(e, "twin", "line-1", "{\"v\":2}");
	n = events_read(pumps, buf, sizeof(buf) - 1, 100);
	buf[n] = '\0';
	assert_string_equal(buf, "event: twin\ndata: {\"v\":1}\n\n");
	assert_int_equal(events_read(pumps, buf, sizeof(buf), 50), 0);	/* timeout: nothing */
	n = events_read(all, buf, sizeof(buf) - 1, 100);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "{\"v\":1}"));
	assert_non_null(strstr(buf, "{\"v\":2}"));
	events_unsubscribe(all);
	events_unsubscribe(pumps);
	assert_false(events_listening(e));
	events_free(e);
}

/* A client that never reads is cut off when its buffer would overflow; others go on. */
static void
test_slow_client_cut(void **state)
{
	struct events *e = events_new(2, 256);
	struct events_client *slow = events_subscribe(e, NULL), *fast = events_subscribe(e, NULL);
	char buf[256];

	(void)state;
	for (int i = 0; i < 100; i++) {
		events_emit(e, "twin", "a", "{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}");
		assert_true(events_read(fast, buf, sizeof(buf), 10) > 0);
	}
	assert_int_equal(events_read(slow, buf, sizeof(buf), 10), -1);
	assert_null(events_subscribe(e, NULL));		/* at capacity (2) */
	events_unsubscribe(slow);
	events_unsubscribe(fast);
	events_free(e);
}

static void
test_shutdown_ends_readers(void **state)
{
	struct events *e = events_new(2, 1024);
	struct events_client *c = events_subscribe(e, NULL);
	char buf[64];

	(void)state;
	events_shutdown(e);
	assert_int_equal(events_read(c, buf, sizeof(buf), 1000), -1);
	assert_null(events_subscribe(e, NULL));
	events_unsubscribe(c);
	events_free(e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filter_and_format),
		cmocka_unit_test(test_slow_client_cut),
		cmocka_unit_test(test_shutdown_ends_readers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
