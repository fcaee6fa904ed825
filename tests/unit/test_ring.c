/* Unit tests of the ring: order, wrap-around, bounds, blocking producer. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "ring.h"

static void
test_fifo_and_wrap(void **state)
{
	struct ring *r = ring_new(1024);
	char buf[200];
	const char *p;
	size_t len;

	(void)state;
	assert_non_null(r);
	/* Many rounds of odd sizes force every wrap position. */
	for (int round = 0; round < 500; round++) {
		size_t n = (size_t)(round % 190) + 1;

		memset(buf, 'a' + round % 26, n);
		assert_int_equal(ring_push(r, buf, n), TW_OK);
		assert_int_equal(ring_push(r, buf, n), TW_OK);
		for (int k = 0; k < 2; k++) {
			p = ring_peek(r, &len, 0);
			assert_non_null(p);
			assert_int_equal(len, n);
			assert_memory_equal(p, buf, n);
			assert_int_equal((uintptr_t)p % 8, 0);
			ring_pop(r);
		}
	}
	assert_null(ring_peek(r, &len, 0));
	assert_int_equal(ring_used(r), 0);
	assert_int_equal(ring_count(r), 0);
	ring_free(r);
}

static void
test_too_large(void **state)
{
	struct ring *r = ring_new(1024);
	char buf[300] = { 0 };

	(void)state;
	assert_int_equal(ring_push(r, buf, 257), TW_ERR_INVAL);
	assert_int_equal(ring_push(r, buf, 256), TW_OK);
	ring_free(r);
}

struct producer {
	struct ring *r;
	int pushed;
};

static void *
produce(void *arg)
{
	struct producer *pr = arg;
	uint32_t v;

	for (v = 0; v < 10000; v++) {
		if (ring_push(pr->r, &v, sizeof(v)) != TW_OK)
			break;
		pr->pushed++;
	}
	return NULL;
}

/* A producer far faster than the space: it blocks, nothing is lost or reordered. */
static void
test_backpressure(void **state)
{
	struct producer pr = { .r = ring_new(256) };
	pthread_t t;
	const uint32_t *p;
	size_t len;

	(void)state;
	assert_non_null(pr.r);
	assert_int_equal(pthread_create(&t, NULL, produce, &pr), 0);
	for (uint32_t want = 0; want < 10000; want++) {
		p = ring_peek(pr.r, &len, 1000);
		assert_non_null(p);
		assert_int_equal(*p, want);
		assert_true(ring_used(pr.r) <= ring_capacity(pr.r));
		ring_pop(pr.r);
	}
	pthread_join(t, NULL);
	assert_int_equal(pr.pushed, 10000);
	ring_free(pr.r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_and_wrap),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_backpressure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
