/* Unit tests of the store: schema, idempotent history, reads, quarantine bound. */
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

static char path[64];

static int
setup(void **state)
{
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/twind-test-store-XXXXXX");
	if ((fd = mkstemp(path)) < 0)
		return -1;
	close(fd);
	unlink(path);
	return 0;
}

static int
teardown(void **state)
{
	char p[80];

	(void)state;
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	return 0;
}

struct points {
	int n;
	int64_t ts[16];
	double v[16];
	int type[16];
};

static int
collect(void *arg, const struct store_point *p)
{
	struct points *ps = arg;

	ps->ts[ps->n] = p->ts;
	ps->v[ps->n] = p->val.num;
	ps->type[ps->n] = p->val.type;
	ps->n++;
	return ps->n == 16;
}

static void
test_history_is_idempotent(void **state)
{
	struct store *w = store_open(path, 1, 0), *r;
	struct tw_val one = { .type = VAL_NUM, .num = 1.5 }, two = { .type = VAL_NUM, .num = 2 };
	struct tw_val yes = { .type = VAL_BOOL, .num = 1 };
	struct points ps = { 0 };
	int64_t s1, s2;

	(void)state;
	assert_non_null(w);
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, "p1", "t", &s1), TW_OK);
	assert_int_equal(store_series_add(w, "p1", "on", &s2), TW_OK);
	assert_int_not_equal(s1, s2);
	assert_int_equal(store_history_put(w, s1, 1000, &one), TW_OK);
	assert_int_equal(store_history_put(w, s1, 2000, &two), TW_OK);
	assert_int_equal(store_history_put(w, s1, 1000, &one), TW_OK);	/* redelivered */
	assert_int_equal(store_history_put(w, s2, 1000, &yes), TW_OK);
	{
		struct store_twin_row row = { .id = "p1", .model = "dtmi:x:P;1", .version = 3,
		    .last_seen_ts = 5000, .created_ts = 1, .delta_pending = 1 };

		assert_int_equal(store_twin_put(w, &row), TW_OK);
	}
	assert_int_equal(store_commit(w), TW_OK);

	assert_non_null(r = store_open(path, 0, 0));
	assert_int_equal(store_read_history(r, "p1", "t", 0, INT64_MAX, 100, 0, collect, &ps),
	    TW_OK);
	assert_int_equal(ps.n, 2);
	assert_int_equal(ps.ts[0], 1000);
	assert_true(ps.v[0] == 1.5);
	assert_int_equal(ps.type[0], VAL_NUM);
	ps.n = 0;
	assert_int_equal(store_read_history(r, "p1", "t", 0, INT64_MAX, 1, 1, collect, &ps), TW_OK);
	assert_int_equal(ps.n, 1);
	assert_int_equal(ps.ts[0], 2000);	/* newest */
	ps.n = 0;
	assert_int_equal(store_read_history(r, "p1", "on", 0, INT64_MAX, 10, 0, collect, &ps),
	    TW_OK);
	assert_int_equal(ps.type[0], VAL_BOOL);
	assert_int_equal(store_read_history(r, "p1", "nope", 0, INT64_MAX, 10, 0, collect, &ps),
	    TW_ERR_NOTFOUND);
	store_close(r);
	store_close(w);
}

static int
collect_bucket(void *arg, const struct store_bucket *b)
{
	struct store_bucket *out = arg;

	out[out[15].count++] = *b;
	return 0;
}

static void
test_buckets(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct store_bucket out[16] = { 0 };
	struct tw_val v = { .type = VAL_NUM };
	int64_t s;

	(void)state;
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, "p2", "t", &s), TW_OK);
	/* 120 points at 1 s: two one-minute buckets, 0..59 and 60..119. */
	for (int i = 0; i < 120; i++) {
		v.num = i;
		assert_int_equal(store_history_put(w, s, 60000LL * 1000 + i * 1000LL, &v), TW_OK);
	}
	assert_int_equal(store_commit(w), TW_OK);
	assert_int_equal(store_read_buckets(w, "p2", "t", 0, INT64_MAX, 60000, 10,
	    collect_bucket, out), TW_OK);
	assert_int_equal(out[15].count, 2);
	assert_int_equal(out[0].count, 60);
	assert_true(out[0].min == 0 && out[0].max == 59 && out[0].avg == 29.5);
	assert_true(out[1].min == 60 && out[1].max == 119);
	store_close(w);
}

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_history_is_idempotent),
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_quarantine_is_bounded),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
