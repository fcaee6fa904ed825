/*
 * Unit tests of the request queue: submitters that give up while the
 * engine takes requests must never hand it a request that is gone (at
 * 33bd248 the engine read the count without the lock and dereferenced an
 * empty list when a timed-out request had just unlinked itself).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "err.h"
#include "request.h"

#define SUBMITTERS	4
#define EACH		300

struct run {
	struct request_queue q;
	atomic_int answered, busy, stop;
};

static void *
submitter(void *arg)
{
	struct run *run = arg;

	for (int i = 0; i < EACH; i++) {
		struct request r = { .type = REQ_DESIRED };

		request_submit(&run->q, &r);
		if (r.err == TW_OK)
			atomic_fetch_add(&run->answered, 1);
		else if (r.err == TW_ERR_UNAVAIL && strcmp(r.code, "busy") == 0)
			atomic_fetch_add(&run->busy, 1);
	}
	return NULL;
}

/* An engine that looks at the hint, dawdles (the window of the old race), then takes. */
static void *
engine(void *arg)
{
	struct run *run = arg;
	struct timespec nap = { 0, 1000000 };

	while (!atomic_load(&run->stop)) {
		struct request *r;

		if (!request_pending(&run->q)) {
			nanosleep(&(struct timespec){ 0, 50000 }, NULL);
			continue;
		}
		nanosleep(&nap, NULL);
		while ((r = request_next(&run->q)) != NULL) {
			r->err = TW_OK;
			request_done(&run->q, r);
		}
	}
	return NULL;
}

static void
test_withdrawn_requests_race_the_engine(void **state)
{
	static struct run run;
	pthread_t sub[SUBMITTERS], eng;

	(void)state;
	assert_int_equal(request_queue_init(&run.q, NULL, NULL), TW_OK);
	run.q.wait_ms = 1;	/* most requests give up while the engine dawdles */
	assert_int_equal(pthread_create(&eng, NULL, engine, &run), 0);
	for (int i = 0; i < SUBMITTERS; i++)
		assert_int_equal(pthread_create(&sub[i], NULL, submitter, &run), 0);
	for (int i = 0; i < SUBMITTERS; i++)
		pthread_join(sub[i], NULL);
	atomic_store(&run.stop, 1);
	pthread_join(eng, NULL);
	/* Every request has exactly one answer: taken and answered, or withdrawn as busy. */
	assert_int_equal(atomic_load(&run.answered) + atomic_load(&run.busy), SUBMITTERS * EACH);
	assert_true(atomic_load(&run.busy) > 0);
	assert_int_equal(atomic_load(&run.q.n), 0);
	assert_null(request_next(&run.q));
	request_queue_cleanup(&run.q);
}

static void
test_closed_queue_answers_unavailable(void **state)
{
	struct request_queue q;
	struct request r = { .type = REQ_COMMAND };

	(void)state;
	assert_int_equal(request_queue_init(&q, NULL, NULL), TW_OK);
	request_close(&q);
	request_submit(&q, &r);
	assert_int_equal(r.err, TW_ERR_UNAVAIL);
	assert_string_equal(r.code, "unavailable");
	request_queue_cleanup(&q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_withdrawn_requests_race_the_engine),
		cmocka_unit_test(test_closed_queue_answers_unavailable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
