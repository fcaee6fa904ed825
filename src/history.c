/* History tiers: raw points, minute and hour rollups kept in the raw points' commit. */
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "history.h"
#include "history_blocks.h"
#include "log.h"
#include "metrics.h"
#include "rollup_blocks.h"
#include "store_sql.h"

/*
 * A batch's rollups are summed in memory per (series, minute) and
 * written once per entry at the flush, so a series that reports every
 * 10 ms costs one upsert per minute tier row per batch, not one per
 * point. The table is bounded: when it is half full it is written out
 * early, still inside the batch's transaction.
 */
#define ACC_SLOTS	4096		/* a power of two */
#define ACC_MAX		(ACC_SLOTS / 2)
/* Rows one bucketed page may fold: its read transaction holds back the WAL meanwhile. */
#define SCAN_ROWS_MAX	2000000

struct acc {
	int64_t series, minute;
	int64_t n, first_ts, last_ts;
	double sum, lo, hi, first, last;
	int used;
	int redo;	/* a value was replaced: recompute the minute from raw rows */
};

enum hist_stmt {
	H_PUT_NEW, H_PUT_OVER, H_DEL_AT,
	H_MERGE_1M, H_MERGE_1H,
	H_REDO_1M_DEL, H_REDO_1H_DEL, H_REDO_1H,
	H__COUNT
};

/*
 * Merging a partial rollup into a row: every right-hand side reads the
 * row as it was, so first and last are chosen before their ts move.
 */
#define MERGE(table) "INSERT INTO " table "(series, ts, n, total, lo, hi, first_ts, first_v, " \
	"last_ts, last_v) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(series, ts) DO " \
	"UPDATE SET n = n + excluded.n, total = total + excluded.total, " \
	"lo = min(lo, excluded.lo), hi = max(hi, excluded.hi), " \
	"first_v = CASE WHEN excluded.first_ts < first_ts THEN excluded.first_v ELSE first_v END, " \
	"first_ts = min(first_ts, excluded.first_ts), " \
	"last_v = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last_v ELSE last_v END, " \
	"last_ts = max(last_ts, excluded.last_ts)"

static const char *const hist_sql[H__COUNT] = {
	[H_PUT_NEW] = "INSERT INTO history(series, ts, value) VALUES(?, ?, ?) "
	    "ON CONFLICT(series, ts) DO NOTHING",
	/* Only after a conflict: a redelivery (same value) changes no row. */
	[H_PUT_OVER] = "UPDATE history SET value = ?3 WHERE series = ?1 AND ts = ?2 "
	    "AND (value IS NOT ?3 OR typeof(value) != typeof(?3))",
	/* A number under the edge replaces a string there: it is gone, not shown. */
	[H_DEL_AT] = "DELETE FROM history WHERE series = ?1 AND ts = ?2",
	[H_MERGE_1M] = MERGE("rollup_1m"),
	[H_MERGE_1H] = MERGE("rollup_1h"),
	[H_REDO_1M_DEL] = "DELETE FROM rollup_1m WHERE series = ? AND ts = ?",
	[H_REDO_1H_DEL] = "DELETE FROM rollup_1h WHERE series = ? AND ts = ?",
	[H_REDO_1H] = "INSERT INTO rollup_1h SELECT ?1, ?2, sum(n), sum(total), min(lo), max(hi), "
	    "min(first_ts), (SELECT first_v FROM rollup_1m WHERE series = ?1 AND ts >= ?2 "
	    "AND ts < ?2 + 3600000 ORDER BY first_ts LIMIT 1), max(last_ts), "
	    "(SELECT last_v FROM rollup_1m WHERE series = ?1 AND ts >= ?2 AND ts < ?2 + 3600000 "
	    "ORDER BY last_ts DESC LIMIT 1) FROM rollup_1m WHERE series = ?1 AND ts >= ?2 "
	    "AND ts < ?2 + 3600000 HAVING count(*) > 0",
};

struct history {
	struct store *store;
	struct hblocks *blocks;
	sqlite3_stmt *st[H__COUNT];
	struct acc slot[ACC_SLOTS];
	uint16_t order[ACC_MAX];	/* the slots in use, in the order they were taken */
	int n;
	int64_t floor;			/* retention's age edge: no rollup takes older points */
	int64_t redo_floor;		/* the raw edge: no correction older rebuilds a minute */
	int64_t pack_edge;		/* points older may be in blocks */
};

static const char *const tier_names[TIER__COUNT] = { "raw", "1m", "1h" };
static const int64_t tier_ms[TIER__COUNT] = { 0, HISTORY_MINUTE_MS, HISTORY_HOUR_MS };

const char *
history_tier_name(enum history_tier t)
{
	return tier_names[t];
}

int64_t
history_bucket_of(int64_t ts, int64_t step_ms)
{
	int64_t r = ts % step_ms;

	if (r >= 0)
		return ts - r;
	/* No ts that twind stores is near this; a query's bound may be: saturate, never wrap. */
	return ts - r < INT64_MIN + step_ms ? INT64_MIN : ts - r - step_ms;
}

struct history *
history_open(struct store *s)
{
	struct history *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->store = s;
	h->floor = h->redo_floor = INT64_MIN;	/* until retention says where its edges are */
	h->pack_edge = INT64_MAX;		/* until then, any point may be packed */
	if ((h->blocks = hblocks_open(s)) == NULL ||
	    store_prepare_all(s, hist_sql, H__COUNT, h->st) != TW_OK) {
		history_close(h);
		return NULL;
	}
	return h;
}

void
history_close(struct history *h)
{
	if (h == NULL)
		return;
	for (int i = 0; i < H__COUNT; i++)
		sqlite3_finalize(h->st[i]);
	hblocks_close(h->blocks);
	free(h);
}

void
history_set_floor(struct history *h, int64_t floor_ts, int64_t redo_floor_ts, int64_t pack_edge)
{
	h->floor = floor_ts;
	h->redo_floor = redo_floor_ts;
	h->pack_edge = pack_edge;
}

static struct acc *
acc_find(struct history *h, int64_t series, int64_t minute)
{
	uint64_t k = (uint64_t)series * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(minute / 60000);
	size_t i = (size_t)((k ^ (k >> 29)) & (ACC_SLOTS - 1));

	for (;;) {
		struct acc *a = &h->slot[i];

		if (!a->used) {
			memset(a, 0, sizeof(*a));
			a->used = 1;
			a->series = series;
			a->minute = minute;
			h->order[h->n++] = (uint16_t)i;
			return a;
		}
		if (a->series == series && a->minute == minute)
			return a;
		i = (i + 1) & (ACC_SLOTS - 1);
	}
}

static void
acc_add(struct acc *a, int64_t ts, double v)
{
	if (a->n == 0 || ts < a->first_ts) {
		a->first_ts = ts;
		a->first = v;
	}
	if (a->n == 0 || ts >= a->last_ts) {
		a->last_ts = ts;
		a->last = v;
	}
	if (a->n == 0 || v < a->lo)
		a->lo = v;
	if (a->n == 0 || v > a->hi)
		a->hi = v;
	a->sum += v;
	a->n++;
}

/*
 * A point that a block may hold. Found with this value: a redelivery
 * (*fresh 0). Found with another: the block takes a number, or lets go
 * of the point for a string or a boolean, which goes to a row (*redo 1).
 * Not found: *fresh 1, and the caller writes a row as for any point;
 * *lost 1 when a block set aside held its range (its minute may count it).
 */
static int
put_packed(struct history *h, int64_t series, int64_t ts, const struct tw_val *v, int *fresh,
    int *redo, int *lost)
{
	double old;
	int found, rc;

	*fresh = 1;
	if ((rc = hblocks_find(h->blocks, series, ts, &found, &old)) != TW_OK)
		return rc;
	if (!found)
		return hblocks_lost(h->blocks, series, ts, lost);
	if (v->type == VAL_NUM && v->num == old) {
		*fresh = 0;
		return TW_OK;
	}
	*redo = 1;
	return hblocks_set(h->blocks, series, ts, v->type == VAL_NUM ? &v->num : NULL);
}

int
history_put(struct history *h, int64_t series, int64_t ts, const struct tw_val *v, int *fresh)
{
	sqlite3 *db = store_handle(h->store);
	sqlite3_stmt *st = h->st[H_PUT_NEW];
	struct acc *a;
	int redo = 0, lost = 0, packed, rc;

	/*
	 * Under retention's edge a number is history no more: no reader shows
	 * it, and no rollup could take it right (a redelivery of a trimmed
	 * point looks new, a correction would rebuild a minute from rows that
	 * are gone). It is not stored either, so that no row waits for a trim
	 * that never looks there again (in a series of strings, retention
	 * looks at each row once); a string it corrects goes. Whether it is a
	 * redelivery cannot be told (*fresh 2): the rules see it if it changes
	 * the property's newest reading (a replay of old data).
	 */
	if (v->type == VAL_NUM && ts < h->floor) {
		metrics_add(&metrics.values_too_old, 1);
		*fresh = 2;
		st = h->st[H_DEL_AT];
		sqlite3_bind_int64(st, 1, series);
		sqlite3_bind_int64(st, 2, ts);
		return store_step_done(h->store, st) == TW_OK ? TW_OK : TW_ERR_DB;
	}
	/*
	 * Old enough to be packed: a block may hold it (a redelivery, a
	 * correction). Under retention's edge it is no longer history, though
	 * a block across the edge still holds it: a row, trimmed next round.
	 */
	packed = ts < h->pack_edge && ts >= h->floor;
	if (packed && (rc = put_packed(h, series, ts, v, fresh, &redo, &lost)) != TW_OK)
		return rc;
	if (packed && !*fresh)
		return TW_OK;
	if (redo && v->type == VAL_NUM)
		goto rollup;
	sqlite3_bind_int64(st, 1, series);
	sqlite3_bind_int64(st, 2, ts);
	store_bind_value(st, 3, v);
	if (store_step_done(h->store, st) != TW_OK)
		return TW_ERR_DB;
	*fresh = sqlite3_changes(db) > 0;
	if (!*fresh) {
		st = h->st[H_PUT_OVER];
		sqlite3_bind_int64(st, 1, series);
		sqlite3_bind_int64(st, 2, ts);
		store_bind_value(st, 3, v);
		if (store_step_done(h->store, st) != TW_OK)
			return TW_ERR_DB;
		if (sqlite3_changes(db) == 0)
			return TW_OK;		/* a redelivery */
		*fresh = redo = 1;
	}
	/*
	 * In the range of a block that was set aside: stored (a replay puts
	 * back what was lost), but it may be a redelivery of a lost point that
	 * its minute counts already: no rollup, and no rule sees it again.
	 */
	if (lost && !redo) {
		*fresh = 0;
		metrics_add(&metrics.values_too_old, 1);
		return TW_OK;
	}
rollup:
	if (!redo && v->type != VAL_NUM)
		return TW_OK;			/* only numbers are rolled up */
	/*
	 * A string under the edge (kept with its series' strings, or gone at
	 * the next trim in a series of numbers), or a correction under the
	 * edge of whole minutes: as above.
	 */
	if (ts < h->floor || (redo && ts < h->redo_floor)) {
		metrics_add(&metrics.values_too_old, 1);
		return TW_OK;
	}
	if (h->n >= ACC_MAX && history_flush(h) != TW_OK)
		return TW_ERR_DB;
	a = acc_find(h, series, history_bucket_of(ts, HISTORY_MINUTE_MS));
	if (redo)
		a->redo = 1;
	else
		acc_add(a, ts, v->num);
	return TW_OK;
}

static int
bind_merge(struct history *h, sqlite3_stmt *st, const struct acc *a, int64_t bucket)
{
	sqlite3_bind_int64(st, 1, a->series);
	sqlite3_bind_int64(st, 2, bucket);
	sqlite3_bind_int64(st, 3, a->n);
	sqlite3_bind_double(st, 4, a->sum);
	sqlite3_bind_double(st, 5, a->lo);
	sqlite3_bind_double(st, 6, a->hi);
	sqlite3_bind_int64(st, 7, a->first_ts);
	sqlite3_bind_double(st, 8, a->first);
	sqlite3_bind_int64(st, 9, a->last_ts);
	sqlite3_bind_double(st, 10, a->last);
	return store_step_done(h->store, st);
}

/* Deletes the row (series, bucket) of a tier and builds it again from the finer tier's rows. */
static int
redo(struct history *h, enum hist_stmt del, enum hist_stmt ins, int64_t series, int64_t bucket)
{
	for (enum hist_stmt i = del; i <= ins; i++) {
		sqlite3_bind_int64(h->st[i], 1, series);
		sqlite3_bind_int64(h->st[i], 2, bucket);
		if (store_step_done(h->store, h->st[i]) != TW_OK)
			return TW_ERR_DB;
	}
	return TW_OK;
}

static int
fold_point(void *arg, const struct store_point *p)
{
	/* Beyond 1e300 a value could only come from before ingest refused it: left out. */
	if (p->val.type == VAL_NUM && fabs(p->val.num) <= 1e300)
		acc_add(arg, p->ts, p->val.num);
	return 0;
}

/* Rebuilds the minute row (series, minute) from the raw points, rows and blocks. */
static int
redo_minute(struct history *h, int64_t series, int64_t minute)
{
	struct acc a = { .series = series, .minute = minute };
	sqlite3_stmt *del = h->st[H_REDO_1M_DEL];
	int rc;

	sqlite3_bind_int64(del, 1, series);
	sqlite3_bind_int64(del, 2, minute);
	if (store_step_done(h->store, del) != TW_OK)
		return TW_ERR_DB;
	rc = hblocks_read(h->store, series, minute, minute + HISTORY_MINUTE_MS - 1, INT64_MAX, 0,
	    fold_point, &a);
	if (rc != TW_OK || a.n == 0)
		return rc;
	return bind_merge(h, h->st[H_MERGE_1M], &a, minute);
}

/*
 * Minutes first, then hours: an hour that holds a replaced value is
 * rebuilt from its minutes once those are right (the config keeps every
 * minute of an hour that still has raw rows); the others take the
 * batch's partial sums as they are.
 */
int
history_flush(struct history *h)
{
	int rc = TW_OK;

	for (int i = 0; i < h->n && rc == TW_OK; i++) {
		const struct acc *a = &h->slot[h->order[i]];

		rc = a->redo ? redo_minute(h, a->series, a->minute) :
		    bind_merge(h, h->st[H_MERGE_1M], a, a->minute);
	}
	for (int i = 0; i < h->n && rc == TW_OK; i++) {
		const struct acc *a = &h->slot[h->order[i]];
		int64_t hour = history_bucket_of(a->minute, HISTORY_HOUR_MS);

		if (!a->redo)
			rc = bind_merge(h, h->st[H_MERGE_1H], a, hour);
	}
	/* Rebuilt last, from minutes that are all written: merges into it above are replaced. */
	for (int i = 0; i < h->n && rc == TW_OK; i++) {
		const struct acc *a = &h->slot[h->order[i]];

		if (a->redo)
			rc = redo(h, H_REDO_1H_DEL, H_REDO_1H, a->series,
			    history_bucket_of(a->minute, HISTORY_HOUR_MS));
	}
	history_rollback(h);
	return rc;
}

void
history_rollback(struct history *h)
{
	for (int i = 0; i < h->n; i++)
		h->slot[h->order[i]].used = 0;
	h->n = 0;
}

/* ---- readers ---- */

int
history_edge(struct store *s, enum history_tier t, int64_t *edge)
{
	sqlite3 *db = store_handle(s);
	sqlite3_stmt *st;
	int rc;

	*edge = INT64_MIN;
	if (sqlite3_prepare_v2(db, "SELECT before_ts FROM trimmed WHERE tier = ?", -1, &st,
	    NULL) != SQLITE_OK) {
		log_warnx("database: %s", sqlite3_errmsg(db));
		return TW_ERR_DB;
	}
	sqlite3_bind_text(st, 1, tier_names[t], -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*edge = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		log_warnx("database: %s", sqlite3_errmsg(db));
		return TW_ERR_DB;
	}
	return TW_OK;
}

int
history_plan(struct store *s, int64_t step_ms, int64_t from, int64_t to,
    struct history_plan *plan)
{
	sqlite3_stmt *st;
	int64_t before[TIER__COUNT] = { INT64_MIN, INT64_MIN, INT64_MIN };
	enum history_tier t = TIER_RAW;
	int rc;

	if (sqlite3_prepare_v2(store_handle(s), "SELECT tier, before_ts FROM trimmed", -1, &st,
	    NULL) != SQLITE_OK)
		return TW_ERR_DB;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);

		for (int i = 0; i < TIER__COUNT; i++)
			if (name != NULL && strcmp(name, tier_names[i]) == 0)
				before[i] = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return TW_ERR_DB;
	if (step_ms % HISTORY_HOUR_MS == 0)
		t = TIER_HOUR;
	else if (step_ms % HISTORY_MINUTE_MS == 0)
		t = TIER_MINUTE;
	/* Where the finer tier was trimmed under `from`, a coarser one still answers. */
	while (t + 1 < TIER__COUNT && history_bucket_of(from, step_ms) < before[t])
		t++;
	plan->tier = t;
	plan->step_ms = step_ms;
	/* A fallback answers in whole rows of its tier: a 90 s step from minutes is 2 m. */
	if (t != TIER_RAW && step_ms % tier_ms[t] != 0)
		plan->step_ms = (step_ms / tier_ms[t] + 1) * tier_ms[t];
	plan->from = history_bucket_of(from, plan->step_ms);
	plan->to = to > INT64_MAX - plan->step_ms ? INT64_MAX :
	    history_bucket_of(to, plan->step_ms) + plan->step_ms - 1;
	return TW_OK;
}

static void
bucket_add(struct history_bucket *b, const struct history_bucket *row)
{
	if (b->count == 0 || row->first_ts < b->first_ts) {
		b->first_ts = row->first_ts;
		b->first = row->first;
	}
	if (b->count == 0 || row->last_ts >= b->last_ts) {
		b->last_ts = row->last_ts;
		b->last = row->last;
	}
	if (b->count == 0 || row->min < b->min)
		b->min = row->min;
	if (b->count == 0 || row->max > b->max)
		b->max = row->max;
	b->sum += row->sum;
	b->count += row->count;
}

/* Buckets folded as rows pass, in ts order: one bucket in memory, whatever the range. */
struct fold {
	const struct history_plan *plan;
	int limit, n, stop, cut;
	int64_t scanned;
	struct history_bucket b;
	int (*cb)(void *, const struct history_bucket *);
	void *arg;
};

/* Takes one row (a raw point is a row of one); non-zero to stop. */
static int
fold_row(struct fold *f, const struct history_bucket *row)
{
	int64_t at = history_bucket_of(row->ts, f->plan->step_ms);

	if (f->b.count > 0 && at != f->b.ts) {
		if (f->cb(f->arg, &f->b) != 0 || ++f->n >= f->limit)
			f->stop = 1;
		f->b.count = 0;
		f->b.sum = 0;
		if (f->stop)
			return 1;
	}
	/* Cut before the bucket being folded: the next page starts with it. */
	if (++f->scanned > SCAN_ROWS_MAX) {
		f->stop = f->cut = 1;
		return 1;
	}
	f->b.ts = at;
	bucket_add(&f->b, row);
	return 0;
}

static int
fold_raw(void *arg, const struct store_point *p)
{
	struct history_bucket row = { .ts = p->ts, .count = 1, .first_ts = p->ts,
	    .last_ts = p->ts };

	if (p->val.type != VAL_NUM)
		return 0;
	row.sum = row.min = row.max = row.first = row.last = p->val.num;
	return fold_row(arg, &row) ? -1 : 0;
}

/* One rollup row through f; non-zero to stop. */
static int
fold_rollup(void *arg, const struct history_bucket *row)
{
	return fold_row(arg, row);
}

int
history_buckets(struct store *s, int64_t series, const struct history_plan *plan, int limit,
    int (*cb)(void *, const struct history_bucket *), void *arg)
{
	struct fold f = { .plan = plan, .limit = limit, .cb = cb, .arg = arg };
	int rc;

	if (plan->tier == TIER_RAW) {
		rc = hblocks_read(s, series, plan->from, plan->to, INT64_MAX, 0, fold_raw, &f);
		/* fold_raw's stop is not an error (errors are positive). */
		if (rc == -1)
			rc = TW_OK;
	} else {
		rc = rblocks_read(s, plan->tier, series, plan->from, plan->to, fold_rollup, &f);
	}
	if (rc != TW_OK)
		return rc;
	if (!f.stop && f.b.count > 0)
		cb(arg, &f.b);
	if (f.cut && f.n == 0)
		return TW_ERR_REFUSED;	/* one bucket holds more rows than a page may fold */
	return f.cut ? TW_ERR_FULL : TW_OK;
}

/* ---- raw points by twin and property ---- */

int
history_read(struct store *s, const char *twin, const char *prop, int64_t from, int64_t to,
    int limit, int newest, int (*cb)(void *, const struct store_point *), void *arg)
{
	int64_t series;
	int rc;

	if ((rc = store_series_find(s, twin, prop, &series)) != TW_OK)
		return rc;
	return hblocks_read(s, series, from, to, limit, newest, cb, arg);
}
