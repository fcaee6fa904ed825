/*
 * Unit tests of history.c and retention.c on a real SQLite file: a
 * redelivery changes nothing, rollups are exact with late points and
 * corrections, the plan falls back to a coarser tier, and retention
 * trims exactly what is older than its edge.
 */
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

#include "conf.h"
#include "err.h"
#include "history.h"
#include "retention.h"
#include "store.h"

#include "tmpdb.h"

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

/* Raw points in rows and in blocks. */
#define POINTS "SELECT (SELECT count(*) FROM history) + " \
	"(SELECT coalesce(sum(n), 0) FROM history_block)"

struct many {
	int n;
	int64_t ts[2048];
	double v[2048];
};

static int
collect_many(void *arg, const struct store_point *p)
{
	struct many *ps = arg;

	ps->ts[ps->n] = p->ts;
	ps->v[ps->n] = p->val.num;
	return ++ps->n == 2048;
}

struct buckets {
	int n;
	struct history_bucket b[64];
};

static int
collect_bucket(void *arg, const struct history_bucket *b)
{
	struct buckets *out = arg;

	out->b[out->n++] = *b;
	return out->n == 64;
}

static void
put(struct history *h, int64_t series, int64_t ts, double v, int *fresh)
{
	struct tw_val val = { .type = VAL_NUM, .num = v };

	assert_int_equal(history_put(h, series, ts, &val, fresh), TW_OK);
}

static void
test_redelivery_changes_nothing(void **state)
{
	struct store *w = store_open(path, 1, 0), *r;
	struct tw_val one = { .type = VAL_NUM, .num = 1.5 }, two = { .type = VAL_NUM, .num = 2 };
	struct tw_val yes = { .type = VAL_BOOL, .num = 1 };
	struct points ps = { 0 };
	struct history *h;
	int64_t s1, s2;
	int fresh;

	(void)state;
	assert_non_null(w);
	assert_non_null(h = history_open(w));
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, "p1", "t", &s1, NULL, NULL), TW_OK);
	assert_int_equal(store_series_add(w, "p1", "on", &s2, NULL, NULL), TW_OK);
	assert_int_equal(history_put(h, s1, 1000, &one, &fresh), TW_OK);
	assert_int_equal(fresh, 1);
	assert_int_equal(history_put(h, s1, 2000, &two, &fresh), TW_OK);
	assert_int_equal(fresh, 1);
	/* A redelivery changes nothing, and says so: windows must not count it again. */
	assert_int_equal(history_put(h, s1, 1000, &one, &fresh), TW_OK);
	assert_int_equal(fresh, 0);
	/* A correction (same ts, another value) is news. */
	assert_int_equal(history_put(h, s1, 1000, &two, &fresh), TW_OK);
	assert_int_equal(fresh, 1);
	assert_int_equal(history_put(h, s1, 1000, &one, &fresh), TW_OK);
	assert_int_equal(history_put(h, s2, 1000, &yes, &fresh), TW_OK);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);

	assert_non_null(r = store_open(path, 0, 0));
	assert_int_equal(history_read(r, "p1", "t", 0, INT64_MAX, 100, 0, collect, &ps),
	    TW_OK);
	assert_int_equal(ps.n, 2);
	assert_int_equal(ps.ts[0], 1000);
	assert_true(ps.v[0] == 1.5);
	ps.n = 0;
	assert_int_equal(history_read(r, "p1", "t", 0, INT64_MAX, 1, 1, collect, &ps), TW_OK);
	assert_int_equal(ps.n, 1);
	assert_int_equal(ps.ts[0], 2000);	/* newest */
	ps.n = 0;
	assert_int_equal(history_read(r, "p1", "on", 0, INT64_MAX, 10, 0, collect, &ps),
	    TW_OK);
	assert_int_equal(ps.type[0], VAL_BOOL);
	store_close(r);
	history_close(h);
	store_close(w);
}

/* The same buckets from raw rows, from the minute tier and from the hour tier. */
static void
buckets_of(struct store *s, int64_t series, int64_t step, enum history_tier want,
    struct buckets *out)
{
	struct history_plan plan;

	memset(out, 0, sizeof(*out));
	assert_int_equal(history_plan(s, step, 0, INT64_MAX - 1, &plan), TW_OK);
	assert_int_equal(plan.tier, want);
	assert_int_equal(history_buckets(s, series, &plan, 64, collect_bucket, out), TW_OK);
}

static void
test_rollups_exact_with_late_points_and_corrections(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct history *h;
	struct buckets raw, minute, hour;
	int64_t s, t0 = 3600000LL * 100;
	int fresh;

	(void)state;
	assert_non_null(h = history_open(w));
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, "p2", "t", &s, NULL, NULL), TW_OK);
	/* Two hours at 1 minute per point, 0..119, in one batch. */
	for (int i = 0; i < 120; i++)
		put(h, s, t0 + i * 60000LL + 500, i, &fresh);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	/* A later batch: a late point in the first minute, before its first, and a redelivery. */
	assert_int_equal(store_begin(w), TW_OK);
	put(h, s, t0 + 100, -5, &fresh);
	assert_int_equal(fresh, 1);
	put(h, s, t0 + 60000 + 500, 1, &fresh);
	assert_int_equal(fresh, 0);
	/* A correction of the point at minute 70, in the second hour: its max is now 1000. */
	put(h, s, t0 + 70 * 60000LL + 500, 1000, &fresh);
	assert_int_equal(fresh, 1);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);

	buckets_of(w, s, 3600000, TIER_HOUR, &hour);
	assert_int_equal(hour.n, 2);
	assert_int_equal(hour.b[0].ts, t0);
	assert_int_equal(hour.b[0].count, 61);
	assert_true(hour.b[0].min == -5 && hour.b[0].max == 59);
	assert_true(hour.b[0].first == -5 && hour.b[0].first_ts == t0 + 100);
	assert_true(hour.b[0].last == 59);
	assert_true(hour.b[0].sum == 59 * 60 / 2 - 5);
	assert_int_equal(hour.b[1].count, 60);
	assert_true(hour.b[1].max == 1000 && hour.b[1].min == 60 && hour.b[1].last == 119);
	assert_true(hour.b[1].sum == (60 + 119) * 60 / 2 - 70 + 1000);
	/* The same from minutes and from raw rows, bucket for bucket. */
	buckets_of(w, s, 1800000, TIER_MINUTE, &minute);
	buckets_of(w, s, 1800 * 1000 + 1000, TIER_RAW, &raw);
	assert_int_equal(minute.n, 4);
	memset(&raw, 0, sizeof(raw));
	{
		struct history_plan plan = { TIER_RAW, 1800000, 0, INT64_MAX - 1 };

		assert_int_equal(history_buckets(w, s, &plan, 64, collect_bucket, &raw), TW_OK);
	}
	assert_int_equal(raw.n, 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(raw.b[i].ts, minute.b[i].ts);
		assert_int_equal(raw.b[i].count, minute.b[i].count);
		assert_true(raw.b[i].sum == minute.b[i].sum);
		assert_true(raw.b[i].min == minute.b[i].min && raw.b[i].max == minute.b[i].max);
		assert_true(raw.b[i].first == minute.b[i].first && raw.b[i].last == minute.b[i].last);
	}
	history_close(h);
	store_close(w);
}

static void
test_plan_falls_back_where_a_tier_was_trimmed(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct history_plan plan;
	sqlite3 *db;

	(void)state;
	assert_non_null(w);
	assert_int_equal(history_plan(w, 60000, 0, 1000000, &plan), TW_OK);
	assert_int_equal(plan.tier, TIER_MINUTE);
	assert_int_equal(history_plan(w, 10000, 0, 1000000, &plan), TW_OK);
	assert_int_equal(plan.tier, TIER_RAW);
	assert_int_equal(history_plan(w, 7200000, 0, 1000000, &plan), TW_OK);
	assert_int_equal(plan.tier, TIER_HOUR);
	/* Raw rows before 10 h and minutes before 5 h are gone. */
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "INSERT INTO trimmed VALUES('raw', 36000000), "
	    "('1m', 18000000)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(history_plan(w, 10000, 36000000, 40000000, &plan), TW_OK);
	assert_int_equal(plan.tier, TIER_RAW);
	assert_int_equal(history_plan(w, 10000, 20000000, 40000000, &plan), TW_OK);
	assert_int_equal(plan.tier, TIER_MINUTE);
	assert_int_equal(plan.step_ms, 60000);	/* whole rows of the tier that answers */
	assert_int_equal(history_plan(w, 90000, 0, 40000000, &plan), TW_OK);
	assert_int_equal(plan.tier, TIER_HOUR);
	assert_int_equal(plan.step_ms, 3600000);
	assert_int_equal(plan.from, 0);
	store_close(w);
}

static int64_t
count(const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t n = -1;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static int
add_count(void *arg, const struct history_bucket *b)
{
	*(int64_t *)arg += b->count;
	return 0;
}

/* Readings tier t counts for `series`, in its rows and its blocks, as a reader sees them. */
static int64_t
rolled(struct store *s, int64_t series, enum history_tier t)
{
	struct history_plan plan = { t, t == TIER_MINUTE ? 60000 : 3600000, INT64_MIN + 3600000,
	    INT64_MAX - 3600000 };
	int64_t n = 0;

	assert_int_equal(history_buckets(s, series, &plan, INT32_MAX, add_count, &n), TW_OK);
	return n;
}

static void
test_retention_trims_exactly_what_is_old(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct conf c = { 0 };
	struct history *h;
	struct retention *r;
	int64_t now = 1000LL * 86400000, s[3];
	int fresh, rc, steps = 0;
	char name[16];

	(void)state;
	c.keep_raw_ms = 7 * 86400000LL;
	c.keep_minute_ms = 90 * 86400000LL;
	c.keep_hour_ms = 1825 * 86400000LL;
	c.keep_alerts_ms = c.keep_commands_ms = c.keep_quarantine_ms = 30 * 86400000LL;
	assert_non_null(h = history_open(w));
	assert_non_null(r = retention_open(w, &c, path));
	assert_int_equal(store_begin(w), TW_OK);
	/* Three series, a point every 10 min over 10 days: 1440 points each. */
	for (int k = 0; k < 3; k++) {
		snprintf(name, sizeof(name), "r%d", k);
		assert_int_equal(store_series_add(w, name, "t", &s[k], NULL, NULL), TW_OK);
		for (int i = 0; i < 1440; i++)
			put(h, s[k], now - 10 * 86400000LL + i * 600000LL, i, &fresh);
	}
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	/* Steps of at most 2000 rows: 3 x 432 old raw rows take one or two. */
	while ((rc = retention_step(r, now)) == 1)
		assert_true(++steps < 100);
	assert_int_equal(rc, 0);
	assert_int_equal(count("SELECT count(*) FROM history WHERE ts < "
	    "(SELECT before_ts FROM trimmed WHERE tier = 'raw')"), 0);
	assert_int_equal(count("SELECT count(*) FROM history_block WHERE t0 < "
	    "(SELECT before_ts FROM trimmed WHERE tier = 'raw')"), 0);
	assert_int_equal(count(POINTS), 3 * (1440 - 432));
	/* What is older than an hour is packed, and reads back exact. */
	assert_int_equal(count("SELECT count(*) FROM history"), 3 * 6);
	for (int k = 0; k < 3; k++) {
		static struct many ps;

		ps.n = 0;
		snprintf(name, sizeof(name), "r%d", k);
		assert_int_equal(history_read(w, name, "t", 0, INT64_MAX, 2000, 0, collect_many, &ps),
		    TW_OK);
		assert_int_equal(ps.n, 1440 - 432);
		for (int i = 0; i < ps.n; i++) {
			assert_int_equal(ps.ts[i], now - 7 * 86400000LL + i * 600000LL);
			assert_true(ps.v[i] == 432 + i);
		}
	}
	assert_int_equal(count("SELECT before_ts FROM trimmed WHERE tier = 'raw'"),
	    now - 7 * 86400000LL);
	/* The minutes and hours of the trimmed raw rows are all still there, in rows and blocks. */
	for (int k = 0; k < 3; k++) {
		assert_int_equal(rolled(w, s[k], TIER_MINUTE), 1440);
		assert_int_equal(rolled(w, s[k], TIER_HOUR), 1440);
	}
	/* Those under the raw edge are packed: no point changes them any more. */
	assert_int_equal(count("SELECT count(*) FROM trimmed WHERE tier = 'packed:rollups'"), 1);
	assert_int_equal(count("SELECT count(*) FROM rollup_1m WHERE ts < "
	    "(SELECT before_ts FROM trimmed WHERE tier = 'packed:rollups')"), 0);
	assert_int_equal(count("SELECT sum(n) FROM rollup_1m_block"), 3 * 432);
	assert_int_equal(retention_trimmed_rows(r), 3 * 432);
	retention_close(r);
	history_close(h);
	store_close(w);
}


static void
conf_default_ages(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->keep_raw_ms = 7 * 86400000LL;
	c->keep_minute_ms = 90 * 86400000LL;
	c->keep_hour_ms = 1825 * 86400000LL;
	c->keep_alerts_ms = c->keep_commands_ms = c->keep_quarantine_ms = 30 * 86400000LL;
}

/* Runs retention to its end at `now`, from a fresh open (its clock anchors there). */
static void
retain(struct store *w, const struct conf *c, struct history *h, int64_t now)
{
	struct retention *r;
	int rc, steps = 0;

	assert_non_null(r = retention_open(w, c, path));
	while ((rc = retention_step(r, now)) == 1)
		assert_true(++steps < 200);
	assert_int_equal(rc, 0);
	history_set_floor(h, retention_floor(r), retention_redo_floor(r), retention_pack_edge(r));
	retention_close(r);
}

/* Series `twin`.t with n points `every` ms apart from `from` (the value is the index), committed. */
static int64_t
fill(struct store *w, struct history *h, const char *twin, int n, int64_t from, int64_t every)
{
	int64_t s;
	int fresh;

	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, twin, "t", &s, NULL, NULL), TW_OK);
	for (int i = 0; i < n; i++)
		put(h, s, from + i * every, i, &fresh);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	return s;
}

static void
exec_sql(const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/*
 * A series of numbers whose newest value is a string ("offline"): its
 * numbers still go at `raw` (they were kept hidden for `hour`, five
 * years, as rows), its strings at `hour`, like every string.
 */
static void
test_numbers_go_at_raw_in_a_series_now_of_strings(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct tw_val off = { .type = VAL_STR, .str = "offline" };
	struct conf c;
	struct history *h;
	int64_t now = 1000LL * 86400000, day = 86400000LL, s;
	int fresh;
	static struct many ps;

	(void)state;
	conf_default_ages(&c);
	assert_non_null(h = history_open(w));
	s = fill(w, h, "o", 1440, now - 10 * day, 600000);
	/* A string nine days old, among the old numbers, and the newest. */
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(history_put(h, s, now - 9 * day + 1, &off, &fresh), TW_OK);
	assert_int_equal(history_put(h, s, now - 1000, &off, &fresh), TW_OK);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	assert_int_equal(count("SELECT count(*) FROM history"), 1442);
	exec_sql("UPDATE series SET value = 'offline'");
	retain(w, &c, h, now);
	assert_int_equal(count("SELECT count(*) FROM history WHERE typeof(value) = 'real' AND "
	    "ts < (SELECT before_ts FROM trimmed WHERE tier = 'raw')"), 0);
	assert_int_equal(count("SELECT count(*) FROM history_block WHERE t0 < "
	    "(SELECT before_ts FROM trimmed WHERE tier = 'raw')"), 0);
	/* The strings stay, the old one too. */
	assert_int_equal(count("SELECT count(*) FROM history WHERE typeof(value) = 'text'"), 2);
	assert_int_equal(history_read(w, "o", "t", 0, INT64_MAX, 2000, 0, collect_many, &ps),
	    TW_OK);
	assert_int_equal(ps.n, 1 + (1440 - 432) + 1);
	assert_int_equal(ps.ts[0], now - 9 * day + 1);
	assert_int_equal(ps.ts[1], now - 7 * day);
	/* A number under the edge corrects the old string: not stored, and the string goes. */
	assert_int_equal(store_begin(w), TW_OK);
	put(h, s, now - 9 * day + 1, 42, &fresh);
	assert_int_equal(fresh, 2);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	assert_int_equal(count("SELECT count(*) FROM history WHERE typeof(value) = 'text'"), 1);
	assert_int_equal(count("SELECT count(*) FROM history WHERE typeof(value) = 'real' AND "
	    "ts < (SELECT before_ts FROM trimmed WHERE tier = 'raw')"), 0);
	history_close(h);
	store_close(w);
}

/*
 * Ten series of strings, each with 1,000 old strings among 50 old numbers:
 * every number goes, every string stays, and a step looks at no more than
 * 2,000 rows (the strings it walks over count), so it takes several steps;
 * a late number under the edge is not stored, where no trim would look.
 */
static void
test_numbers_among_many_strings_go_a_step_at_a_time(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct tw_val str = { .type = VAL_STR, .str = "idle" };
	struct conf c;
	struct history *h;
	struct retention *r;
	int64_t now = 1000LL * 86400000, day = 86400000LL, s[10];
	int fresh, rc, steps = 0;
	char name[16];

	(void)state;
	conf_default_ages(&c);
	assert_non_null(h = history_open(w));
	assert_int_equal(store_begin(w), TW_OK);
	for (int k = 0; k < 10; k++) {
		snprintf(name, sizeof(name), "s%d", k);
		assert_int_equal(store_series_add(w, name, "t", &s[k], NULL, NULL), TW_OK);
		for (int i = 0; i < 1050; i++) {
			int64_t ts = now - 9 * day + i * 60000LL;

			if (i % 21 == 20)
				put(h, s[k], ts, i, &fresh);
			else
				assert_int_equal(history_put(h, s[k], ts, &str, &fresh), TW_OK);
		}
		assert_int_equal(history_put(h, s[k], now - 1000, &str, &fresh), TW_OK);
	}
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	exec_sql("UPDATE series SET value = 'idle'");
	assert_non_null(r = retention_open(w, &c, path));
	/* The first step looks at 2,000 rows: the numbers of two series, not of ten. */
	assert_int_equal(retention_step(r, now), 1);
	assert_true(count("SELECT count(*) FROM history WHERE typeof(value) = 'real'") >= 7 * 50);
	while ((rc = retention_step(r, now)) == 1)
		assert_true(++steps < 100);
	assert_int_equal(rc, 0);
	assert_int_equal(count("SELECT count(*) FROM history WHERE typeof(value) = 'real'"), 0);
	assert_int_equal(count("SELECT count(*) FROM history WHERE typeof(value) = 'text'"),
	    10 * 1001);
	history_set_floor(h, retention_floor(r), retention_redo_floor(r), retention_pack_edge(r));
	/* A bridge's late number, 8 days old: under the edge, not stored. */
	assert_int_equal(store_begin(w), TW_OK);
	put(h, s[3], now - 8 * day, 42, &fresh);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	assert_int_equal(count("SELECT count(*) FROM history WHERE typeof(value) = 'real'"), 0);
	retention_close(r);
	history_close(h);
	store_close(w);
}

/*
 * A step whose transaction is rolled back (here a trigger refuses the raw
 * edge's mark, as a full disk would) leaves the edges where the file has
 * them: history.c must not refuse points under an edge that is not there.
 */
static void
test_a_rolled_back_step_moves_no_edge(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct conf c;
	struct history *h;
	struct retention *r;
	int64_t now = 1000LL * 86400000, day = 86400000LL;

	(void)state;
	conf_default_ages(&c);
	assert_non_null(h = history_open(w));
	fill(w, h, "e", 144, now - 10 * day, 6000000);
	retain(w, &c, h, now);
	assert_int_equal(count("SELECT before_ts FROM trimmed WHERE tier = 'raw'"), now - 7 * day);
	exec_sql("CREATE TRIGGER refuse BEFORE UPDATE ON trimmed "
	    "WHEN new.tier = 'raw' BEGIN SELECT RAISE(ABORT, 'refused'); END");
	/* A day later: the step that would move the raw edge fails. */
	assert_non_null(r = retention_open(w, &c, path));
	assert_int_equal(retention_floor(r), now - 7 * day);
	assert_true(retention_step(r, now + day) < 0);
	assert_int_equal(count("SELECT before_ts FROM trimmed WHERE tier = 'raw'"), now - 7 * day);
	assert_int_equal(retention_floor(r), now - 7 * day);
	retention_close(r);
	history_close(h);
	store_close(w);
}

/* A rollup block whose row count is damaged is trimmed like any other: retention goes on. */
static void
test_a_damaged_block_count_does_not_stop_retention(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct conf c;
	struct history *h;
	int64_t now = 1000LL * 86400000, day = 86400000LL;

	(void)state;
	conf_default_ages(&c);
	assert_non_null(h = history_open(w));
	fill(w, h, "d", 1440, now - 10 * day, 600000);
	retain(w, &c, h, now);
	assert_true(count("SELECT count(*) FROM rollup_1m_block") > 0);
	/* Read as an int, it would be negative: the step failed, each round again. */
	exec_sql("UPDATE rollup_1m_block SET n = 3000000000");
	/* 90 days on, the minutes go, and the round ends. */
	retain(w, &c, h, now + 90 * day);
	assert_int_equal(count("SELECT count(*) FROM rollup_1m_block"), 0);
	history_close(h);
	store_close(w);
}

struct ordered {
	int64_t last, n;
	int out_of_order;
};

static int
check_order(void *arg, const struct history_bucket *b)
{
	struct ordered *o = arg;

	o->out_of_order += o->n > 0 && b->ts <= o->last;
	o->last = b->ts;
	o->n++;
	return 0;
}

/*
 * A block that decodes but is not the one its row says (here the first
 * block's bytes under the second's row) is left out of answers: read
 * as it is, its rows would come twice and out of order.
 */
static void
test_a_block_unlike_its_row_is_left_out(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct conf c;
	struct history *h;
	int64_t now = 1000LL * 86400000, day = 86400000LL, s;
	struct history_plan plan = { TIER_MINUTE, 60000, 0, now };
	struct ordered o = { 0 };

	(void)state;
	conf_default_ages(&c);
	assert_non_null(h = history_open(w));
	/* 13 days at 10 min: 6 days of minutes under the raw edge, two blocks (4 days at most). */
	s = fill(w, h, "b", 1872, now - 13 * day, 600000);
	retain(w, &c, h, now);
	assert_int_equal(count("SELECT count(*) FROM rollup_1m_block"), 2);
	assert_int_equal(history_buckets(w, s, &plan, INT32_MAX, check_order, &o), TW_OK);
	assert_int_equal(o.n, 1872);
	assert_int_equal(o.out_of_order, 0);
	exec_sql("UPDATE rollup_1m_block SET data = (SELECT data FROM rollup_1m_block "
	    "ORDER BY t0 LIMIT 1) WHERE t0 = (SELECT max(t0) FROM rollup_1m_block)");
	memset(&o, 0, sizeof(o));
	assert_int_equal(history_buckets(w, s, &plan, INT32_MAX, check_order, &o), TW_OK);
	assert_int_equal(o.out_of_order, 0);
	assert_int_equal(o.n, 1872 - count("SELECT n FROM rollup_1m_block ORDER BY t0 DESC LIMIT 1"));
	history_close(h);
	store_close(w);
}

/*
 * Packed points: read exactly from the edge on (a block across it is kept
 * whole, not written again as the edge moves, until all of it is older or
 * its oldest point is a day under the edge, when its older part goes once),
 * a redelivery is no new point, and corrections by a number or a string
 * rebuild the minute they fall in.
 */
static void
test_packed_points_trim_and_take_corrections(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct conf c;
	struct history *h;
	int64_t now = 1000LL * 86400000, s, cutoff, t, kept;
	static struct many ps;
	struct points one = { 0 };
	struct tw_val str = { .type = VAL_STR, .str = "stuck" };
	char sql[160];
	int fresh;

	(void)state;
	conf_default_ages(&c);
	assert_non_null(h = history_open(w));
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, "pk", "t", &s, NULL, NULL), TW_OK);
	for (int i = 0; i < 1440; i++)
		put(h, s, now - 10 * 86400000LL + i * 600000LL, i * 0.5, &fresh);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	retain(w, &c, h, now);
	assert_true(count("SELECT count(*) FROM history_block") >= 1);
	/* Half a day on, the edge falls inside the block. */
	retain(w, &c, h, now + 43200000LL);
	cutoff = now + 43200000LL - 7 * 86400000LL;
	ps.n = 0;
	assert_int_equal(history_read(w, "pk", "t", INT64_MIN, INT64_MAX, 2048, 0, collect_many,
	    &ps), TW_OK);
	assert_int_equal(ps.n, 1440 - 504);
	/* Stored: those, and the older part of the one block across the edge. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM history_block WHERE t1 < %lld",
	    (long long)cutoff);
	assert_int_equal(count(sql), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM history_block WHERE t0 < %lld",
	    (long long)cutoff);
	assert_int_equal(count(sql), 1);
	kept = count(POINTS);
	assert_int_equal(kept, 1440 - 432);	/* the block as it was packed */
	for (int i = 0; i < ps.n; i++) {
		assert_int_equal(ps.ts[i], cutoff + i * 600000LL);
		assert_true(ps.v[i] == (504 + i) * 0.5);
	}
	/* The newest hour's 6 points wait for a block of their own. */
	assert_int_equal(count("SELECT count(*) FROM history"), 6);
	/* A redelivery, a number and a string at packed points. */
	t = cutoff + 100 * 600000LL;
	assert_int_equal(store_begin(w), TW_OK);
	put(h, s, t, 302, &fresh);		/* point 604 */
	assert_int_equal(fresh, 0);
	put(h, s, t, 1000, &fresh);
	assert_int_equal(fresh, 1);
	assert_int_equal(history_put(h, s, t + 600000LL, &str, &fresh), TW_OK);
	assert_int_equal(fresh, 1);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	assert_int_equal(count(POINTS), kept);
	assert_int_equal(history_read(w, "pk", "t", t, t + 600000LL, 16, 0, collect, &one), TW_OK);
	assert_int_equal(one.n, 2);
	assert_true(one.type[0] == VAL_NUM && one.v[0] == 1000);
	assert_true(one.type[1] == VAL_STR);
	assert_int_equal(count("SELECT count(*) FROM history"), 7);
	/* The minute of the number has it; the string's minute has no numbers left. */
	snprintf(sql, sizeof(sql), "SELECT hi FROM rollup_1m WHERE series = %lld AND ts = %lld",
	    (long long)s, (long long)history_bucket_of(t, HISTORY_MINUTE_MS));
	assert_int_equal(count(sql), 1000);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM rollup_1m WHERE series = %lld AND "
	    "ts = %lld", (long long)s, (long long)history_bucket_of(t + 600000LL, HISTORY_MINUTE_MS));
	assert_int_equal(count(sql), 0);
	/* Two days on, the block's oldest point is a day under the edge: its older part goes. */
	retain(w, &c, h, now + 2 * 86400000LL);
	cutoff = now + 2 * 86400000LL - 7 * 86400000LL;
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM history_block WHERE t0 < %lld",
	    (long long)cutoff);
	assert_int_equal(count(sql), 0);
	assert_int_equal(count(POINTS), 1440 - 720);
	ps.n = 0;
	assert_int_equal(history_read(w, "pk", "t", INT64_MIN, INT64_MAX, 2048, 0, collect_many,
	    &ps), TW_OK);
	assert_int_equal(ps.n, 1440 - 720);
	history_close(h);
	store_close(w);
}

/*
 * A block that does not decode (a damaged file) is set aside at the first
 * writer that meets it: a late point into its range is stored, retention
 * goes on, readers read around it. It must not wedge ingestion (the
 * batch would fail, the broker redeliver, for ever).
 */
static void
test_a_bad_block_is_set_aside(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct conf c;
	struct history *h;
	int64_t now = 1000LL * 86400000, s, t0, rollups;
	static struct many ps;
	char sql[128];
	int fresh;

	(void)state;
	conf_default_ages(&c);
	assert_non_null(h = history_open(w));
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, "bad", "t", &s, NULL, NULL), TW_OK);
	/* 6,000 points a minute apart: a block of 4,096 and one of 1,844, and 60 rows. */
	for (int i = 0; i < 6000; i++)
		put(h, s, now - 6000 * 60000LL + i * 60000LL, i, &fresh);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	/* A value no block can hold (a hand edit): it stays a row, packing goes on around it. */
	snprintf(sql, sizeof(sql), "UPDATE history SET value = 1e301 WHERE ts = %lld",
	    (long long)(now - 1000 * 60000LL));
	count(sql);
	retain(w, &c, h, now);
	assert_int_equal(count("SELECT count(*) FROM history_block"), 2);
	assert_int_equal(count("SELECT count(*) FROM history"), 61);
	t0 = count("SELECT min(t0) FROM history_block");
	count("UPDATE history_block SET data = x'01020304' WHERE t0 = "
	    "(SELECT min(t0) FROM history_block)");
	/* Readers leave it out and say so; no error. */
	ps.n = 0;
	assert_int_equal(history_read(w, "bad", "t", INT64_MIN, INT64_MAX, 2048, 1, collect_many,
	    &ps), TW_OK);
	assert_int_equal(ps.n, 1904);
	/*
	 * A late point into its range: the block is set aside, the point
	 * stored, but as no new point (the minute may count a lost one there).
	 */
	assert_int_equal(store_begin(w), TW_OK);
	put(h, s, t0 + 30000, -1, &fresh);
	assert_int_equal(fresh, 0);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	assert_int_equal(count("SELECT count(*) FROM history_block_bad"), 1);
	assert_int_equal(count("SELECT n FROM history_block_bad"), 4096);
	assert_int_equal(count(POINTS), 6000 - 4096 + 1);
	/* A redelivery into the lost range is stored, but counted in no minute again. */
	rollups = count("SELECT sum(n) FROM rollup_1m");
	assert_int_equal(store_begin(w), TW_OK);
	put(h, s, t0 + 60000, 1, &fresh);
	assert_int_equal(fresh, 0);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	assert_int_equal(count("SELECT sum(n) FROM rollup_1m"), rollups);
	assert_int_equal(count(POINTS), 6000 - 4096 + 2);
	/* Retention and packing go on past it. */
	retain(w, &c, h, now + 86400000LL);
	assert_int_equal(count(POINTS), 6000 - 4096 + 2);
	/* A count that is not one (a damaged row) is not trusted: the block is read instead. */
	count("UPDATE history_block SET n = -100000");
	retain(w, &c, h, now + 7 * 86400000LL);
	assert_int_equal(count("SELECT count(*) FROM history_block"), 0);
	/* The block set aside goes when its points would have gone. */
	assert_int_equal(count("SELECT count(*) FROM history_block_bad"), 0);
	history_close(h);
	store_close(w);
}

/* A wall clock a year ahead of the data (a bad RTC) ages nothing away. */
static void
test_retention_ignores_a_clock_far_ahead(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct conf c;
	struct history *h;
	struct retention *r;
	int64_t now = 1000LL * 86400000, s;
	int fresh, rc, steps = 0;

	(void)state;
	conf_default_ages(&c);
	assert_non_null(h = history_open(w));
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, "ahead", "t", &s, NULL, NULL), TW_OK);
	for (int i = 0; i < 100; i++)
		put(h, s, now - 100 * 60000LL + i * 60000LL, i, &fresh);
	{
		struct tw_val last = { .type = VAL_NUM, .num = 99 };

		assert_int_equal(store_series_put(w, s, now - 60000, &last, 0), TW_OK);
	}
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	/* twind starts with its clock a year ahead of the data it stored */
	assert_non_null(r = retention_open(w, &c, path));
	while ((rc = retention_step(r, now + 365 * 86400000LL)) == 1)
		assert_true(++steps < 100);
	assert_int_equal(rc, 0);
	assert_int_equal(count(POINTS), 100);
	assert_int_equal(count("SELECT sum(n) FROM rollup_1m"), 100);
	/* The edge is a day past the newest data, minus the age, on a whole minute. */
	assert_int_equal(count("SELECT before_ts FROM trimmed WHERE tier = 'raw'"),
	    now - 60000 + 86400000LL - 7 * 86400000LL);
	retention_close(r);
	history_close(h);
	store_close(w);
}

/*
 * A number under retention's edge goes into no rollup: a redelivery of a
 * trimmed point would count twice, and a correction would rebuild its
 * minute from rows that are gone. It is not stored as a row either.
 */
static void
test_a_point_under_the_edge_changes_nothing(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct conf c;
	struct history *h;
	struct retention *r;
	struct tw_val yes = { .type = VAL_BOOL, .num = 1 };
	int64_t now = 1000LL * 86400000, s, old = now - 10 * 86400000LL;
	int fresh, steps = 0;

	(void)state;
	conf_default_ages(&c);
	assert_non_null(h = history_open(w));
	assert_non_null(r = retention_open(w, &c, path));
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, "edge", "t", &s, NULL, NULL), TW_OK);
	for (int i = 0; i < 60; i++)
		put(h, s, old + i * 1000LL, 1, &fresh);
	put(h, s, now - 1000, 5, &fresh);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	while (retention_step(r, now) == 1)
		assert_true(++steps < 100);
	history_set_floor(h, retention_floor(r), retention_redo_floor(r), retention_pack_edge(r));
	assert_true(retention_floor(r) > old);
	assert_int_equal(count("SELECT count(*) FROM history"), 1);
	/* The old minute and hour are packed now; the blocks stay as they are. */
	assert_int_equal(count("SELECT sum(n) FROM rollup_1m_block"), 1);
	assert_int_equal(count("SELECT sum(n) FROM rollup_1h_block"), 1);
	assert_int_equal(store_begin(w), TW_OK);
	put(h, s, old + 5000, 1, &fresh);		/* a redelivery, its raw row gone */
	put(h, s, old + 6000, 99, &fresh);		/* a correction of a trimmed point */
	put(h, s, old + 6000, 98, &fresh);		/* ... and of that one */
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	assert_int_equal(rolled(w, s, TIER_HOUR), 61);
	assert_int_equal(count("SELECT sum(total) FROM rollup_1m"), 5);
	assert_int_equal(count("SELECT n FROM rollup_1m_block"), 1);
	assert_int_equal(count("SELECT count(*) FROM history"), 1);
	/* Number 1 and true at one ts are two values, not a redelivery. */
	assert_int_equal(store_begin(w), TW_OK);
	put(h, s, now - 2000, 1, &fresh);
	assert_int_equal(history_put(h, s, now - 2000, &yes, &fresh), TW_OK);
	assert_int_equal(fresh, 1);
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	assert_int_equal(rolled(w, s, TIER_HOUR), 61);
	retention_close(r);
	history_close(h);
	store_close(w);
}

/* Values up to 1e300 (ingest refuses beyond) keep every sum finite. */
static void
test_huge_values_keep_sums_finite(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct history *h;
	struct buckets b;
	int64_t s, t0 = 3600000LL * 10;
	int fresh;

	(void)state;
	assert_non_null(h = history_open(w));
	assert_int_equal(store_begin(w), TW_OK);
	assert_int_equal(store_series_add(w, "huge", "t", &s, NULL, NULL), TW_OK);
	for (int i = 0; i < 100; i++)
		put(h, s, t0 + i * 1000LL, i % 2 ? 1e300 : -1e300, &fresh);
	put(h, s, t0 + 62000, 1e300, &fresh);		/* a correction: redo of minute and hour */
	assert_int_equal(history_flush(h), TW_OK);
	assert_int_equal(store_commit(w), TW_OK);
	buckets_of(w, s, 3600000, TIER_HOUR, &b);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.b[0].count, 100);
	assert_true(b.b[0].sum == 2e300);
	history_close(h);
	store_close(w);
}

/*
 * Old alerts go only when cleared and acknowledged, and never the newest
 * row (its id would be given again); old commands only when finished.
 */
static void
test_retention_keeps_what_is_owed(void **state)
{
	struct store *w = store_open(path, 1, 0);
	struct conf c;
	struct retention *r;
	int64_t now = 1000LL * 86400000;
	int steps = 0;

	(void)state;
	conf_default_ages(&c);
	exec_sql("INSERT INTO alerts(id, twin, rule, severity, message, active, acknowledged, "
	    "raised_ts, cleared_ts) VALUES"
	    "(1, 'a', 'r', 'warning', 'm', 0, 1, 1000, 2000),"	/* old, cleared, acked: goes */
	    "(2, 'a', 'r', 'warning', 'm', 0, 0, 1000, 2000),"	/* nobody acknowledged it */
	    "(3, 'a', 'r', 'warning', 'm', 1, 1, 1000, NULL),"	/* still active */
	    "(4, 'a', 'r', 'warning', 'm', 0, 1, 1000, 2000);"	/* the newest row */
	    "INSERT INTO commands(id, twin, command, status, issued_ts) VALUES"
	    "('c1', 'a', 'stop', 'done', 1000), ('c2', 'a', 'stop', 'sent', 1000),"
	    "('c3', 'a', 'stop', 'pending', 1000), ('c4', 'a', 'stop', 'done', 86400000000);");
	assert_non_null(r = retention_open(w, &c, path));
	while (retention_step(r, now) == 1)
		assert_true(++steps < 100);
	assert_int_equal(count("SELECT count(*) FROM alerts WHERE id IN (2, 3, 4)"), 3);
	assert_int_equal(count("SELECT count(*) FROM alerts"), 3);
	assert_int_equal(count("SELECT count(*) FROM commands WHERE id IN ('c2', 'c3', 'c4')"), 3);
	assert_int_equal(count("SELECT count(*) FROM commands"), 3);
	retention_close(r);
	store_close(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_redelivery_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollups_exact_with_late_points_and_corrections,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_falls_back_where_a_tier_was_trimmed, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_retention_trims_exactly_what_is_old, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_numbers_go_at_raw_in_a_series_now_of_strings,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_numbers_among_many_strings_go_a_step_at_a_time,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_rolled_back_step_moves_no_edge, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_a_damaged_block_count_does_not_stop_retention,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_block_unlike_its_row_is_left_out, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_retention_ignores_a_clock_far_ahead, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_a_point_under_the_edge_changes_nothing, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_huge_values_keep_sums_finite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_keeps_what_is_owed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packed_points_trim_and_take_corrections, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_a_bad_block_is_set_aside, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
