/*
 * History against a model, at random (a fixed seed; SEED= and ITERS= to
 * explore): live and late points, redeliveries, corrections by numbers
 * and strings, batches rolled back, retention and packing between batches
 * as the engine runs them, reopened each round (the packing edge read
 * back), then the raw edge moving through the points. After each round
 * every point read back (rows and blocks), the blocks' layout, and every
 * minute and hour rollup must be what the model says. Written by an
 * outside reviewer of the blocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "block.h"
#include "conf.h"
#include "err.h"
#include "history.h"
#include "retention.h"
#include "store.h"
#include "store_sql.h"

#include "tmpdb.h"

#define NS	2
#define SLOTS	26000
#define STEPMS	10007LL

static uint64_t rng = 88172645463325252ULL;
static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int64_t
rr(int64_t n)
{
	return (int64_t)(rnd() % (uint64_t)n);
}

struct model {
	signed char type[NS][SLOTS];	/* 0 none, 1 num, 2 str */
	double v[NS][SLOTS];
};
static struct model m, saved;
static int64_t base, now;
static int64_t sid[NS];
static const char *names[NS] = { "a", "b" };
static int64_t lowest_put;	/* no put under this ts */

static int64_t
slot_ts(int k)
{
	return base + k * STEPMS;
}

static void
do_put(struct history *h, int s, int k, int kind)
{
	struct tw_val val = { 0 };
	int fresh = -1;

	if (kind == 2) {
		val.type = VAL_STR;
		val.str = "txt";
	} else {
		val.type = VAL_NUM;
		if (kind == 0 && m.type[s][k] == 1)
			val.num = m.v[s][k];	/* redelivery */
		else
			val.num = (double)(rr(400) - 200) / 4;
	}
	assert_int_equal(history_put(h, sid[s], slot_ts(k), &val, &fresh), TW_OK);
	if (kind == 0 && m.type[s][k] == 1)
		assert_int_equal(fresh, 0);
	m.type[s][k] = (signed char)(val.type == VAL_STR ? 2 : 1);
	m.v[s][k] = val.num;
}

static int
pick_slot(void)
{
	int64_t hi = (now - base) / STEPMS;
	int64_t lo = lowest_put > base ? (lowest_put - base) / STEPMS + 1 : 0;

	if (hi >= SLOTS)
		hi = SLOTS - 1;
	if (hi <= lo)
		return -1;
	/* half near now (live), half anywhere (late) */
	if (rr(2) == 0) {
		int64_t a = hi - 500 > lo ? hi - 500 : lo;
		return (int)(a + rr(hi - a + 1));
	}
	return (int)(lo + rr(hi - lo + 1));
}

static void
batch(struct store *w, struct history *h, int nput)
{
	int rollback = rr(10) == 0;

	if (rollback)
		saved = m;
	assert_int_equal(store_begin(w), TW_OK);
	for (int i = 0; i < nput; i++) {
		int s = (int)rr(NS), k = pick_slot(), r = (int)rr(100);

		if (k < 0)
			continue;
		do_put(h, s, k, r < 30 ? 0 : r < 90 ? 1 : 2);
	}
	if (rollback) {
		store_rollback(w);
		history_rollback(h);
		m = saved;
		return;
	}
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
}

struct got { int n; int64_t ts[NS * SLOTS]; int type[NS * SLOTS]; double v[NS * SLOTS]; };
static struct got g;

static int
collect(void *arg, const struct store_point *p)
{
	struct got *gg = arg;

	gg->ts[gg->n] = p->ts;
	gg->type[gg->n] = p->val.type;
	gg->v[gg->n] = p->val.num;
	gg->n++;
	return 0;
}

static int64_t
raw_edge(sqlite3 *db)
{
	sqlite3_stmt *st;
	int64_t e = INT64_MIN;

	sqlite3_prepare_v2(db, "SELECT before_ts FROM trimmed WHERE tier = 'raw'", -1, &st, NULL);
	if (sqlite3_step(st) == SQLITE_ROW)
		e = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return e;
}

static int64_t ts_buf[BLOCK_MAX];
static double v_buf[BLOCK_MAX];

/* What a rollup row of `width` starting at slot *k must hold, per the model. */
struct want {
	int64_t bucket, n, fts, lts;
	double sum, lo, hi, fv, lv;
};

static void
fold_model(int s, int *k, int64_t width, struct want *w)
{
	memset(w, 0, sizeof(*w));
	w->bucket = history_bucket_of(slot_ts(*k), width);
	for (; *k < SLOTS && history_bucket_of(slot_ts(*k), width) == w->bucket; (*k)++) {
		double v = m.v[s][*k];

		if (m.type[s][*k] != 1)
			continue;
		if (w->n == 0 || v < w->lo)
			w->lo = v;
		if (w->n == 0 || v > w->hi)
			w->hi = v;
		if (w->n == 0) {
			w->fts = slot_ts(*k);
			w->fv = v;
		}
		w->lts = slot_ts(*k);
		w->lv = v;
		w->sum += v;
		w->n++;
	}
}

/* 1 when the row `q` stepped to is what w says. */
static int
row_is(sqlite3_stmt *q, const struct want *w)
{
	return sqlite3_column_int64(q, 0) == w->n && sqlite3_column_double(q, 1) == w->sum &&
	    sqlite3_column_double(q, 2) == w->lo && sqlite3_column_double(q, 3) == w->hi &&
	    sqlite3_column_int64(q, 4) == w->fts && sqlite3_column_double(q, 5) == w->fv &&
	    sqlite3_column_int64(q, 6) == w->lts && sqlite3_column_double(q, 7) == w->lv;
}

/* Every rollup row of `table` (rows of `width`) for series s at or over `floor`. */
static void
check_rollups(sqlite3 *db, int s, const char *table, int64_t width, int64_t floor)
{
	char sql[160];
	sqlite3_stmt *q;
	struct want w;
	int k = 0;

	snprintf(sql, sizeof(sql), "SELECT n, total, lo, hi, first_ts, first_v, last_ts, last_v "
	    "FROM %s WHERE series = ? AND ts = ?", table);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
	while (k < SLOTS) {
		fold_model(s, &k, width, &w);
		if (w.bucket < floor)
			continue;
		sqlite3_bind_int64(q, 1, sid[s]);
		sqlite3_bind_int64(q, 2, w.bucket);
		if (sqlite3_step(q) == SQLITE_ROW) {
			if (!row_is(q, &w)) {
				fprintf(stderr, "series %d %s %lld: n=%lld sum=%g lo=%g hi=%g, want "
				    "n=%lld sum=%g lo=%g hi=%g\n", s, table, (long long)w.bucket,
				    (long long)sqlite3_column_int64(q, 0), sqlite3_column_double(q, 1),
				    sqlite3_column_double(q, 2), sqlite3_column_double(q, 3),
				    (long long)w.n, w.sum, w.lo, w.hi);
				fail();
			}
		} else if (w.n != 0) {
			fprintf(stderr, "series %d %s %lld: no row, want n=%lld\n", s, table,
			    (long long)w.bucket, (long long)w.n);
			fail();
		}
		sqlite3_reset(q);
	}
	sqlite3_finalize(q);
}

static void
check(struct store *w, int64_t rollup_floor)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t edge;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	edge = raw_edge(db);
	rollup_floor = edge;
	/* drop model points under the raw edge (trimmed) */
	for (int s = 0; s < NS; s++)
		for (int k = 0; k < SLOTS; k++)
			if (slot_ts(k) < edge)
				m.type[s][k] = 0;
	for (int s = 0; s < NS; s++) {
		int j = 0;

		g.n = 0;
		assert_int_equal(history_read(w, names[s], "v", INT64_MIN, INT64_MAX, INT32_MAX, 0,
		    collect, &g), TW_OK);
		for (int k = 0; k < SLOTS; k++) {
			if (m.type[s][k] == 0)
				continue;
			if (j >= g.n || g.ts[j] != slot_ts(k)) {
				fprintf(stderr, "series %d slot %d ts %lld: missing (got ts %lld)\n", s, k,
				    (long long)slot_ts(k), j < g.n ? (long long)g.ts[j] : -1LL);
				fail();
			}
			if (m.type[s][k] == 1)
				assert_true(g.type[j] == VAL_NUM && g.v[j] == m.v[s][k]);
			else
				assert_int_equal(g.type[j], VAL_STR);
			j++;
		}
		if (j != g.n) {
			fprintf(stderr, "series %d: %d extra points, first ts %lld\n", s, g.n - j,
			    (long long)g.ts[j]);
			fail();
		}
	}
	/* blocks: ordered, not overlapping, consistent; no ts both in a row and a block */
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT series, t0, t1, n, data FROM history_block "
	    "ORDER BY series, t0", -1, &st, NULL), SQLITE_OK);
	{
		int64_t ps = -1, pt1 = INT64_MIN;
		sqlite3_stmt *q;

		sqlite3_prepare_v2(db, "SELECT count(*) FROM history WHERE series = ? AND ts >= ? "
		    "AND ts <= ?", -1, &q, NULL);
		while (sqlite3_step(st) == SQLITE_ROW) {
			int64_t s = sqlite3_column_int64(st, 0), t0 = sqlite3_column_int64(st, 1);
			int64_t t1 = sqlite3_column_int64(st, 2);
			int n = sqlite3_column_int(st, 3);
			int got = block_decode(sqlite3_column_blob(st, 4),
			    (size_t)sqlite3_column_bytes(st, 4), ts_buf, v_buf);

			assert_int_equal(got, n);
			assert_true(ts_buf[0] == t0 && ts_buf[n - 1] == t1);
			if (s == ps)
				assert_true(t0 > pt1);
			ps = s;
			pt1 = t1;
			for (int i = 0; i < n; i++) {
				sqlite3_bind_int64(q, 1, s);
				sqlite3_bind_int64(q, 2, ts_buf[i]);
				sqlite3_bind_int64(q, 3, ts_buf[i]);
				sqlite3_step(q);
				assert_int_equal(sqlite3_column_int(q, 0), 0);
				sqlite3_reset(q);
			}
		}
		sqlite3_finalize(q);
		sqlite3_finalize(st);
	}
	/* every minute and hour at or over the raw edge */
	for (int s = 0; s < NS; s++) {
		check_rollups(db, s, "rollup_1m", 60000, rollup_floor);
		check_rollups(db, s, "rollup_1h", 3600000, rollup_floor);
	}
	{
		sqlite3_stmt *q;
		sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM history_block), "
		    "(SELECT sum(n) FROM history_block), (SELECT count(*) FROM history), "
		    "(SELECT count(*) FROM history WHERE typeof(value) = 'real')", -1, &q, NULL);
		sqlite3_step(q);
		if (getenv("VERBOSE"))
			fprintf(stderr, "now %+.2fh edge %+.2fh: blocks %d packed %d rows %d real "
			    "rows %d\n", (now - base) / 3.6e6, (edge - base) / 3.6e6,
			    sqlite3_column_int(q, 0), sqlite3_column_int(q, 1),
			    sqlite3_column_int(q, 2), sqlite3_column_int(q, 3));
		sqlite3_finalize(q);
	}
	sqlite3_close(db);
}

static struct conf c;

/* One round of retention at `at`, with a batch between steps (as the engine). */
static void
round_with_batches(struct store *w, struct history *h, int64_t at, int between)
{
	struct retention *r;
	int rc, steps = 0;

	assert_non_null(r = retention_open(w, &c, path));
	while ((rc = retention_step(r, at)) == 1) {
		history_set_floor(h, retention_floor(r), retention_redo_floor(r),
		    retention_pack_edge(r));
		if (between)
			batch(w, h, (int)rr(40));
		assert_true(++steps < 100000);
	}
	assert_int_equal(rc, 0);
	history_set_floor(h, retention_floor(r), retention_redo_floor(r), retention_pack_edge(r));
	retention_close(r);
}

static void
test_random(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct history *h;
	int64_t now0 = 1000LL * 86400000;
	const char *seed = getenv("SEED");
	int iters = getenv("ITERS") ? atoi(getenv("ITERS")) : 20;

	(void)state;
	if (seed)
		rng = strtoull(seed, NULL, 10);
	c.keep_raw_ms = 30 * 86400000LL;
	c.keep_minute_ms = 90 * 86400000LL;
	c.keep_hour_ms = 1825 * 86400000LL;
	c.keep_alerts_ms = c.keep_commands_ms = c.keep_quarantine_ms = 30 * 86400000LL;
	base = now0 - 2 * 86400000LL;
	now = now0;
	lowest_put = INT64_MIN;
	assert_non_null(h = history_open(w));
	assert_int_equal(store_begin(w), TW_OK);
	for (int s = 0; s < NS; s++)
		assert_int_equal(store_series_add(w, names[s], "v", &sid[s], NULL, NULL), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	round_with_batches(w, h, now, 0);
	/* a bulk of points, out of order */
	for (int i = 0; i < 60; i++)
		batch(w, h, 500);
	check(w, 0);
	for (int it = 0; it < iters; it++) {
		now += rr(1800000LL);
		if (now > base + (SLOTS - 1) * STEPMS)
			now = base + (SLOTS - 1) * STEPMS;
		for (int i = 0; i < 5; i++)
			batch(w, h, (int)rr(300));
		round_with_batches(w, h, now, 1);
		for (int i = 0; i < 5; i++)
			batch(w, h, (int)rr(300));
		check(w, 0);
	}
	/* phase 2: trimming moves through the points */
	c.keep_raw_ms = 3600000LL * 30;
	for (int it = 0; it < iters; it++) {
		int64_t adv = rr(1800000LL);

		lowest_put = now + adv - c.keep_raw_ms + 60000;
		now += adv;
		if (now > base + (SLOTS - 1) * STEPMS)
			now = base + (SLOTS - 1) * STEPMS;
		for (int i = 0; i < 3; i++)
			batch(w, h, (int)rr(300));
		round_with_batches(w, h, now, 1);
		for (int i = 0; i < 3; i++)
			batch(w, h, (int)rr(300));
		check(w, 0);
	}
	history_close(h);
	store_close(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_random, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
