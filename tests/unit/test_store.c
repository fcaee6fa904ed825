/* Unit tests of the store: schema, reads, the quarantine bound (history: test_history.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "err.h"
#include "store.h"

#include "tmpdb.h"

static void
test_quarantine_is_bounded(void **state)
{
	struct store *w = store_open(path, 1, 0);

	(void)state;
	assert_int_equal(store_begin(w), TW_OK);
	for (int i = 0; i < 50; i++)
		assert_int_equal(store_quarantine_put(w, i, "plant/x/telemetry", "malformed",
		    "{bad", 4, 10), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	store_close(w);
	/* Reopening applies no schema step twice and keeps the rows. */
	assert_non_null(w = store_open(path, 1, 0));
	store_close(w);
	{
		sqlite3 *db;
		sqlite3_stmt *st;

		assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*), min(ts) FROM quarantine",
		    -1, &st, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(st, 0), 10);	/* the newest 10 */
		assert_int_equal(sqlite3_column_int(st, 1), 40);
		sqlite3_finalize(st);
		sqlite3_close(db);
	}
}

/* ---- store_load: a callback's error code aborts the load and is returned ---- */

struct load_count {
	int twins, series, fail_twin_at, fail_series_at;
};

static int
load_twin_cb(void *arg, const struct store_twin_row *row)
{
	struct load_count *c = arg;

	(void)row;
	return ++c->twins == c->fail_twin_at ? TW_ERR_NOMEM : 0;
}

static int
load_series_cb(void *arg, const struct store_series_row *row)
{
	struct load_count *c = arg;

	(void)row;
	return ++c->series == c->fail_series_at ? TW_ERR_NOMEM : 0;
}

static int
load_desired_nop(void *arg, const struct store_desired_row *row)
{
	(void)arg;
	(void)row;
	return 0;
}

static int
load_alert_nop(void *arg, const struct store_alert_row *row)
{
	(void)arg;
	(void)row;
	return 0;
}

static int
load_command_nop(void *arg, const struct store_command_row *row)
{
	(void)arg;
	(void)row;
	return 0;
}

/*
 * Defect: store_load's callbacks mix "stop" and "fail": a non-zero return
 * only stops the rows of that table and store_load still returns 0, so an
 * out-of-memory in a callback during a reload (after a failed commit) is
 * taken for success with a partial map. Contract: a loader callback returns
 * 0 to go on or a TW_ERR_* code to abort, and store_load returns that code.
 */
static void
test_load_callback_error_aborts_and_is_returned(void **state)
{
	static const struct store_loader loader = {
		load_twin_cb, load_series_cb, load_desired_nop, load_alert_nop, load_command_nop,
	};
	char db[64], p[80];
	struct load_count c = { 0 }, ok_c, twin_c;
	struct store *w;
	int64_t s1, s2;
	int ok, rc, rc2, fd;

	(void)state;
	/* A database of its own: the group's file holds the other tests' twins. */
	snprintf(db, sizeof(db), "/tmp/twind-test-load-XXXXXX");
	assert_true((fd = mkstemp(db)) >= 0);
	close(fd);
	unlink(db);
	assert_non_null(w = store_open(db, 1, 0));
	assert_int_equal(store_begin(w), TW_OK);
	{
		struct store_twin_row a = { .id = "ld-a", .version = 1, .created_ts = 1 };
		struct store_twin_row b = { .id = "ld-b", .version = 1, .created_ts = 2 };

		assert_int_equal(store_twin_put(w, &a), TW_OK);
		assert_int_equal(store_twin_put(w, &b), TW_OK);
	}
	assert_int_equal(store_series_add(w, "ld-a", "t", &s1, NULL, NULL), TW_OK);
	assert_int_equal(store_series_add(w, "ld-b", "t", &s2, NULL, NULL), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);

	/* Sanity: with callbacks that go on, the load sees both twins and returns 0. */
	ok = store_load(w, &loader, &c);
	ok_c = c;
	/* Out of memory on the first twin row: the load stops and says so. */
	c = (struct load_count){ .fail_twin_at = 1 };
	rc = store_load(w, &loader, &c);
	twin_c = c;
	/* The same from a later table: the series callback fails on its first row. */
	c = (struct load_count){ .fail_series_at = 1 };
	rc2 = store_load(w, &loader, &c);
	store_close(w);
	unlink(db);
	snprintf(p, sizeof(p), "%s-wal", db);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", db);
	unlink(p);

	assert_int_equal(ok, TW_OK);
	assert_int_equal(ok_c.twins, 2);
	assert_int_equal(ok_c.series, 2);
	if (rc != TW_ERR_NOMEM)
		fail_msg("store_load returned %d (%s) after the twin callback returned "
		    "TW_ERR_NOMEM; want TW_ERR_NOMEM (%d)", rc, tw_strerror(rc), TW_ERR_NOMEM);
	assert_int_equal(twin_c.twins, 1);	/* aborted at that row */
	assert_int_equal(twin_c.series, 0);	/* and nothing after it was loaded */
	if (rc2 != TW_ERR_NOMEM)
		fail_msg("store_load returned %d (%s) after the series callback returned "
		    "TW_ERR_NOMEM; want TW_ERR_NOMEM (%d)", rc2, tw_strerror(rc2), TW_ERR_NOMEM);
	assert_int_equal(c.series, 1);
}

struct seen {
	int64_t ts;
	double num;
	int calls;
};

static int
seen_row(void *arg, const struct store_series_row *row)
{
	struct seen *s = arg;

	s->ts = row->ts;
	s->num = row->val.num;
	s->calls++;
	return 0;
}

/* A series memory does not hold: found again with its reported value, not a new row or an error. */
static void
test_series_found_again(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct tw_val v = { .type = VAL_NUM, .num = 7.25 };
	struct seen s = { 0 };
	int64_t a, b;

	(void)state;
	assert_non_null(w);
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, "again", "t", &a, seen_row, &s), TW_OK);
	assert_int_equal(s.calls, 0);		/* new: nothing reported yet */
	assert_int_equal(store_series_put(w, a, 5000, &v, 0), TW_OK);
	assert_int_equal(store_series_add(w, "again", "t", &b, seen_row, &s), TW_OK);
	assert_int_equal(b, a);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.ts, 5000);
	assert_true(s.num == 7.25);
	assert_int_equal(store_commit(w), TW_OK);
	store_close(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quarantine_is_bounded),
		cmocka_unit_test(test_load_callback_error_aborts_and_is_returned),
		cmocka_unit_test(test_series_found_again),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
