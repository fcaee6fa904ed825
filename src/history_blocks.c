/*
 * Raw history in rows and blocks (history_blocks.h).
 *
 * The blocks of a series never overlap: the packer merges points that
 * fall inside or between blocks into the block they belong to (a late
 * point packed after its neighbours), splitting it in two when it
 * outgrows BLOCK_MAX. A point is looked up in the blocks before it is
 * written as a row when it is older than the packing edge, so a
 * redelivery of a packed point stays one point.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "err.h"
#include "history.h"
#include "history_blocks.h"
#include "log.h"
#include "metrics.h"
#include "store_sql.h"
#include "value.h"

enum hb_stmt {
	HB_AT, HB_AFTER, HB_ROWID, HB_PUT, HB_ADD, HB_DEL, HB_BAD, HB_ROWS, HB_ROWS_DEL, HB_LOST,
	HB_LOST_TRIM, HB_OLDEST, HB__COUNT
};

#define BLOCK_COLS "rowid, t0, t1, n, data"
#define COL_DATA 4

static const char *const hb_sql[HB__COUNT] = {
	/* The block that starts at or before ?2: the one holding ?2, if any does. */
	[HB_AT] = "SELECT " BLOCK_COLS " FROM history_block WHERE series = ?1 AND t0 <= ?2 "
	    "ORDER BY t0 DESC LIMIT 1",
	[HB_AFTER] = "SELECT " BLOCK_COLS " FROM history_block WHERE series = ?1 AND t0 > ?2 "
	    "ORDER BY t0 LIMIT 1",
	[HB_ROWID] = "SELECT " BLOCK_COLS " FROM history_block WHERE series = ?1 AND rowid = ?2",
	[HB_PUT] = "UPDATE history_block SET t0 = ?2, t1 = ?3, n = ?4, data = ?5 WHERE rowid = ?1",
	[HB_ADD] = "INSERT INTO history_block(series, t0, t1, n, data) VALUES(?1, ?2, ?3, ?4, ?5)",
	[HB_DEL] = "DELETE FROM history_block WHERE rowid = ?1",
	/* A block that does not decode is kept aside, not lost, and no longer in the way. */
	[HB_BAD] = "INSERT INTO history_block_bad(series, t0, t1, n, data) "
	    "SELECT series, t0, t1, n, data FROM history_block WHERE rowid = ?1",
	/*
	 * The same rows in both: what is packed is what is deleted. A value
	 * beyond 1e300 could only come from before ingest refused it (or a
	 * hand edit): it stays a row, so that no block ever fails to encode.
	 */
	[HB_ROWS] = "SELECT ts, value FROM history WHERE series = ?1 AND ts < ?2 AND ts >= ?4 "
	    "AND typeof(value) = 'real' AND abs(value) <= 1e300 ORDER BY ts LIMIT ?3",
	[HB_ROWS_DEL] = "DELETE FROM history WHERE series = ?1 AND ts >= ?2 AND ts <= ?3 "
	    "AND typeof(value) = 'real' AND abs(value) <= 1e300",
	[HB_LOST] = "SELECT t1 FROM history_block_bad WHERE series = ?1 AND t0 <= ?2 "
	    "ORDER BY t0 DESC LIMIT 1",
	/* Kept for a look as long as its points would have been. */
	[HB_LOST_TRIM] = "DELETE FROM history_block_bad WHERE series = ?1 AND t1 < ?2",
	[HB_OLDEST] = "SELECT " BLOCK_COLS " FROM history_block WHERE series = ?1 AND t0 < ?2 "
	    "ORDER BY t0 LIMIT 1",
};

struct hblocks {
	struct store *store;
	sqlite3_stmt *st[HB__COUNT];
};

/* Points in memory: one block decoded, or a block and the rows merged into it (2 x). */
struct pts {
	int64_t *ts;
	double *v;
	int n, cap;
	int64_t rowid;		/* the block they came from; 0: none */
	int64_t t0, t1, count;	/* that block's columns */
};

enum { PEEK, DECODE };

struct hblocks *
hblocks_open(struct store *s)
{
	struct hblocks *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->store = s;
	if (store_prepare_all(s, hb_sql, HB__COUNT, b->st) != TW_OK) {
		hblocks_close(b);
		return NULL;
	}
	return b;
}

void
hblocks_close(struct hblocks *b)
{
	if (b == NULL)
		return;
	for (int i = 0; i < HB__COUNT; i++)
		sqlite3_finalize(b->st[i]);
	free(b);
}

static int
pts_alloc(struct pts *p, int cap)
{
	p->ts = malloc((size_t)cap * sizeof(*p->ts));
	p->v = malloc((size_t)cap * sizeof(*p->v));
	p->n = 0;
	p->cap = cap;
	p->rowid = 0;
	if (p->ts == NULL || p->v == NULL) {
		free(p->ts);
		free(p->v);
		p->ts = NULL;
		p->v = NULL;
		return TW_ERR_NOMEM;
	}
	return TW_OK;
}

static void
pts_free(struct pts *p)
{
	free(p->ts);
	free(p->v);
	p->ts = NULL;
	p->v = NULL;
}

/*
 * The points of the block in the row `st` is on (BLOCK_COLS); -1 when it
 * does not decode, or does not span what its row says: a damaged file
 * must not give points out of order, nor twice. (Its count is not
 * trusted, nor needed: the points are.)
 */
static int
decode_block(sqlite3_stmt *st, int64_t *ts, double *v)
{
	int n = block_decode(sqlite3_column_blob(st, COL_DATA),
	    (size_t)sqlite3_column_bytes(st, COL_DATA), ts, v);

	if (n > 0 && (ts[0] != sqlite3_column_int64(st, 1) ||
	    ts[n - 1] != sqlite3_column_int64(st, 2)))
		return -1;
	return n;
}

static int
step_fail(struct hblocks *b, sqlite3_stmt *st)
{
	log_warnx("database: %s", sqlite3_errmsg(store_handle(b->store)));
	sqlite3_reset(st);
	return TW_ERR_DB;
}

/* Moves block `rowid` to history_block_bad: it stays for a look, out of every path. */
static int
set_aside(struct hblocks *b, int64_t series, int64_t rowid)
{
	sqlite3_stmt *st = b->st[HB_BAD];

	log_warnx("database: block %lld of series %lld does not decode: moved to "
	    "history_block_bad, its points are missing", (long long)rowid, (long long)series);
	metrics_add(&metrics.blocks_bad, 1);
	sqlite3_bind_int64(st, 1, rowid);
	if (store_step_done(b->store, st) != TW_OK)
		return TW_ERR_DB;
	st = b->st[HB_DEL];
	sqlite3_bind_int64(st, 1, rowid);
	return store_step_done(b->store, st);
}

/*
 * Steps `id` (bound to series and key) for a block's columns into p,
 * and with DECODE its points; p->rowid stays 0 when there is none. A
 * block that does not decode is set aside and reads as none, so that one
 * bad block stops neither ingestion nor retention.
 */
static int
load(struct hblocks *b, enum hb_stmt id, int64_t series, int64_t key, int decode, struct pts *p)
{
	sqlite3_stmt *st = b->st[id];
	int rc;

	p->rowid = 0;
	p->n = 0;
	sqlite3_bind_int64(st, 1, series);
	sqlite3_bind_int64(st, 2, key);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return TW_OK;
	}
	if (rc != SQLITE_ROW)
		return step_fail(b, st);
	p->rowid = sqlite3_column_int64(st, 0);
	p->t0 = sqlite3_column_int64(st, 1);
	p->t1 = sqlite3_column_int64(st, 2);
	p->count = sqlite3_column_int64(st, 3);
	if (decode)
		p->n = decode_block(st, p->ts, p->v);
	sqlite3_reset(st);
	if (p->n >= 0)
		return TW_OK;
	rc = set_aside(b, series, p->rowid);
	p->rowid = 0;
	p->n = 0;
	return rc;
}

/* Writes points [from, from + n) of p as block `rowid` (0: a new block). */
static int
store_block(struct hblocks *b, int64_t series, int64_t rowid, const struct pts *p, int from,
    int n)
{
	sqlite3_stmt *st = b->st[rowid != 0 ? HB_PUT : HB_ADD];
	uint8_t *buf;
	size_t len;
	int rc;

	if (n == 0) {
		st = b->st[HB_DEL];
		sqlite3_bind_int64(st, 1, rowid);
		return store_step_done(b->store, st);
	}
	if ((buf = malloc(block_bound(n))) == NULL)
		return TW_ERR_NOMEM;
	if ((len = block_encode(p->ts + from, p->v + from, n, buf)) == 0) {
		free(buf);
		log_warnx("history: series %lld: points that no block can hold", (long long)series);
		return TW_ERR_INVAL;
	}
	sqlite3_bind_int64(st, 1, rowid != 0 ? rowid : series);
	sqlite3_bind_int64(st, 2, p->ts[from]);
	sqlite3_bind_int64(st, 3, p->ts[from + n - 1]);
	sqlite3_bind_int(st, 4, n);
	sqlite3_bind_blob(st, 5, buf, (int)len, SQLITE_STATIC);
	rc = store_step_done(b->store, st);
	free(buf);
	return rc;
}

/* Index of ts in p (ascending), or -1. */
static int
pts_index(const struct pts *p, int64_t ts)
{
	int lo = 0, hi = p->n - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;

		if (p->ts[mid] == ts)
			return mid;
		if (p->ts[mid] < ts)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

int
hblocks_find(struct hblocks *b, int64_t series, int64_t ts, int *found, double *old)
{
	struct pts p;
	int rc, i;

	*found = 0;
	if ((rc = pts_alloc(&p, BLOCK_MAX)) != TW_OK)
		return rc;
	/* Most lookups are of a ts after the last block: no decode for those. */
	rc = load(b, HB_AT, series, ts, PEEK, &p);
	if (rc == TW_OK && p.rowid != 0 && p.t1 >= ts)
		rc = load(b, HB_ROWID, series, p.rowid, DECODE, &p);
	if (rc == TW_OK && p.rowid != 0 && (i = pts_index(&p, ts)) >= 0) {
		*found = 1;
		*old = p.v[i];
	}
	pts_free(&p);
	return rc;
}

int
hblocks_lost(struct hblocks *b, int64_t series, int64_t ts, int *lost)
{
	sqlite3_stmt *st = b->st[HB_LOST];
	int rc;

	*lost = 0;
	sqlite3_bind_int64(st, 1, series);
	sqlite3_bind_int64(st, 2, ts);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*lost = sqlite3_column_int64(st, 0) >= ts;
	else if (rc != SQLITE_DONE)
		return step_fail(b, st);
	sqlite3_reset(st);
	return TW_OK;
}

int
hblocks_set(struct hblocks *b, int64_t series, int64_t ts, const double *v)
{
	struct pts p;
	int rc, i;

	if ((rc = pts_alloc(&p, BLOCK_MAX)) != TW_OK)
		return rc;
	rc = load(b, HB_AT, series, ts, DECODE, &p);
	if (rc == TW_OK && (p.rowid == 0 || (i = pts_index(&p, ts)) < 0))
		rc = TW_ERR_NOTFOUND;
	if (rc == TW_OK) {
		if (v != NULL) {
			p.v[i] = *v;
		} else {
			memmove(p.ts + i, p.ts + i + 1, (size_t)(p.n - i - 1) * sizeof(*p.ts));
			memmove(p.v + i, p.v + i + 1, (size_t)(p.n - i - 1) * sizeof(*p.v));
			p.n--;
		}
		rc = store_block(b, series, p.rowid, &p, 0, p.n);
	}
	pts_free(&p);
	return rc;
}

/* Up to `max` numeric rows of `series` in [floor, edge) into r; a negated error or 0. */
static int
read_rows(struct hblocks *b, int64_t series, int64_t floor, int64_t edge, int max,
    struct pts *r)
{
	sqlite3_stmt *st = b->st[HB_ROWS];
	int rc;

	r->n = 0;
	sqlite3_bind_int64(st, 1, series);
	sqlite3_bind_int64(st, 2, edge);
	sqlite3_bind_int(st, 3, max);
	sqlite3_bind_int64(st, 4, floor);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && r->n < r->cap) {
		r->ts[r->n] = sqlite3_column_int64(st, 0);
		r->v[r->n++] = sqlite3_column_double(st, 1);
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return step_fail(b, st);
	sqlite3_reset(st);
	return TW_OK;
}

/* m = blk and the first k rows of r merged (a row wins over a block point at its ts). */
static void
merge(const struct pts *blk, const struct pts *r, int k, struct pts *m)
{
	int i = 0, j = 0;

	m->n = 0;
	while (i < blk->n || j < k) {
		if (j < k && (i >= blk->n || r->ts[j] <= blk->ts[i])) {
			if (i < blk->n && r->ts[j] == blk->ts[i])
				i++;
			m->ts[m->n] = r->ts[j];
			m->v[m->n++] = r->v[j++];
		} else {
			m->ts[m->n] = blk->ts[i];
			m->v[m->n++] = blk->v[i++];
		}
	}
}

static int
delete_rows(struct hblocks *b, int64_t series, int64_t from, int64_t to)
{
	sqlite3_stmt *st = b->st[HB_ROWS_DEL];

	sqlite3_bind_int64(st, 1, series);
	sqlite3_bind_int64(st, 2, from);
	sqlite3_bind_int64(st, 3, to);
	return store_step_done(b->store, st);
}

/*
 * The block the rows starting at r->ts[0] go into (its columns in blk,
 * not decoded), and how many of them: those before the next block. None:
 * a new block.
 */
static int
target(struct hblocks *b, int64_t series, const struct pts *r, struct pts *blk, int *k)
{
	sqlite3_stmt *st = b->st[HB_AFTER];
	int64_t stop = INT64_MAX;
	int rc;

	*k = r->n;
	if ((rc = load(b, HB_AT, series, r->ts[0], PEEK, blk)) != TW_OK)
		return rc;
	if (blk->rowid == 0 || blk->t1 < r->ts[0]) {
		/* Not inside the block before: into the one after, if there is one. */
		if ((rc = load(b, HB_AFTER, series, r->ts[0], PEEK, blk)) != TW_OK)
			return rc;
		if (blk->rowid == 0)
			return TW_OK;
	}
	/* Only the next block's first ts is needed. */
	sqlite3_bind_int64(st, 1, series);
	sqlite3_bind_int64(st, 2, blk->t0);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		stop = sqlite3_column_int64(st, 1);
	else if (rc != SQLITE_DONE)
		return step_fail(b, st);
	sqlite3_reset(st);
	while (*k > 0 && r->ts[*k - 1] >= stop)
		(*k)--;
	return TW_OK;
}

int
hblocks_pack(struct hblocks *b, int64_t series, int64_t floor, int64_t edge, int64_t *moved)
{
	struct pts r = { 0 }, blk = { 0 }, m = { 0 };
	int rc, k;

	*moved = 0;
	if ((rc = pts_alloc(&r, BLOCK_MAX)) != TW_OK)
		return rc;
	if ((rc = read_rows(b, series, floor, edge, BLOCK_MAX, &r)) != TW_OK || r.n == 0)
		goto out;
	if ((rc = pts_alloc(&blk, BLOCK_MAX)) != TW_OK ||
	    (rc = target(b, series, &r, &blk, &k)) != TW_OK)
		goto out;
	/* A new block of few and recent points: wait for more, or blocks would be tiny. */
	if (blk.rowid == 0 && r.n < HBLOCKS_PACK_MIN && r.ts[0] >= edge - HBLOCKS_PACK_WAIT_MS)
		goto out;
	/* Decoded only now that it is known to take rows; set aside, it takes none. */
	if (blk.rowid != 0 && (rc = load(b, HB_ROWID, series, blk.rowid, DECODE, &blk)) != TW_OK)
		goto out;
	if (blk.rowid == 0) {
		r.n = k;
		rc = store_block(b, series, 0, &r, 0, r.n);
	} else {
		if ((rc = pts_alloc(&m, 2 * BLOCK_MAX)) != TW_OK)
			goto out;
		merge(&blk, &r, k, &m);
		if (m.n <= BLOCK_MAX) {
			rc = store_block(b, series, blk.rowid, &m, 0, m.n);
		} else {
			/* Outgrown: two halves, the first keeps the row. */
			rc = store_block(b, series, blk.rowid, &m, 0, m.n / 2);
			if (rc == TW_OK)
				rc = store_block(b, series, 0, &m, m.n / 2, m.n - m.n / 2);
		}
		r.n = k;
	}
	if (rc == TW_OK && (rc = delete_rows(b, series, r.ts[0], r.ts[r.n - 1])) == TW_OK)
		*moved = r.n;
out:
	pts_free(&r);
	pts_free(&blk);
	pts_free(&m);
	return rc;
}

int
hblocks_trim(struct hblocks *b, int64_t series, int64_t cutoff, int64_t max, int64_t *deleted,
    int *done)
{
	struct pts p;
	int rc = TW_OK;

	*deleted = 0;
	*done = 0;
	sqlite3_bind_int64(b->st[HB_LOST_TRIM], 1, series);
	sqlite3_bind_int64(b->st[HB_LOST_TRIM], 2, cutoff);
	if ((rc = store_step_done(b->store, b->st[HB_LOST_TRIM])) != TW_OK)
		return rc;
	if ((rc = pts_alloc(&p, BLOCK_MAX)) != TW_OK)
		return rc;
	while (*deleted < max) {
		int keep;

		if ((rc = load(b, HB_OLDEST, series, cutoff, PEEK, &p)) != TW_OK)
			break;
		if (p.rowid == 0) {
			*done = 1;
			break;
		}
		/*
		 * The block across the edge stays whole until all of it is older:
		 * cutting its older part off would write the block again each
		 * minute the edge moves (flash wear). Readers stop at the edge.
		 * Once its oldest point is a day under the edge, its older part
		 * goes: at most one write a day for a block that spans days.
		 */
		if (p.t1 >= cutoff) {
			*done = 1;
			if (p.t0 >= cutoff - HBLOCKS_KEEP_MS ||
			    (rc = load(b, HB_ROWID, series, p.rowid, DECODE, &p)) != TW_OK ||
			    p.rowid == 0)
				break;
			for (keep = 0; keep < p.n && p.ts[keep] < cutoff; keep++)
				;
			*deleted += keep;
			rc = store_block(b, series, p.rowid, &p, keep, p.n - keep);
			break;
		}
		/* A bad block goes too, without a decode, if its n is sane; else its n is read. */
		if ((p.count < 1 || p.count > BLOCK_MAX) &&
		    (rc = load(b, HB_ROWID, series, p.rowid, DECODE, &p)) != TW_OK)
			break;
		if (p.rowid == 0)
			continue;	/* set aside */
		*deleted += p.count < 1 || p.count > BLOCK_MAX ? p.n : p.count;
		if ((rc = store_block(b, series, p.rowid, &p, 0, 0)) != TW_OK)
			break;
	}
	pts_free(&p);
	return rc;
}

/* ---- readers ---- */

/* Shared by every reader thread (and the engine's, through redo_minute). */
static struct log_limit bad_log;
static pthread_mutex_t bad_log_lock = PTHREAD_MUTEX_INITIALIZER;

/* Packed points of a series in [from, to], one block decoded at a time. */
struct bcur {
	sqlite3_stmt *st;
	int desc;
	int64_t from, to;
	struct pts p;
	int i;
};

/* Rows of history and blocks: both in ts order, merged by hblocks_read. */
static const char *const read_sql[2][2] = {
	/* Numbers under the raw edge are history no more (rows there wait for their trim). */
	{ "SELECT ts, value FROM history WHERE series = ?1 AND ts >= ?2 AND ts <= ?3 "
	  "AND (ts >= ?4 OR typeof(value) != 'real') ORDER BY ts",
	  "SELECT ts, value FROM history WHERE series = ?1 AND ts >= ?2 AND ts <= ?3 "
	  "AND (ts >= ?4 OR typeof(value) != 'real') ORDER BY ts DESC" },
	/* From the block holding ?2 (blocks do not overlap), without a scan of older ones. */
	{ "SELECT " BLOCK_COLS " FROM history_block WHERE series = ?1 AND t0 >= coalesce((SELECT "
	  "t0 FROM history_block WHERE series = ?1 AND t0 <= ?2 ORDER BY t0 DESC LIMIT 1), ?2) "
	  "AND t0 <= ?3 ORDER BY t0",
	  "SELECT " BLOCK_COLS " FROM history_block WHERE series = ?1 AND t0 >= coalesce((SELECT "
	  "t0 FROM history_block WHERE series = ?1 AND t0 <= ?2 ORDER BY t0 DESC LIMIT 1), ?2) "
	  "AND t0 <= ?3 ORDER BY t0 DESC" },
};

/* The next packed point: 1, 0 at the end, or a negated TW_ERR_*. */
static int
bcur_next(struct bcur *c, sqlite3 *db, int64_t *ts, double *v)
{
	for (;;) {
		int rc;

		while (c->i >= 0 && c->i < c->p.n) {
			int i = c->desc ? c->i-- : c->i++;

			if (c->p.ts[i] < c->from || c->p.ts[i] > c->to) {
				/* Past the range's far end: nothing further can be in it. */
				if (c->desc ? c->p.ts[i] < c->from : c->p.ts[i] > c->to)
					return 0;
				continue;
			}
			*ts = c->p.ts[i];
			*v = c->p.v[i];
			return 1;
		}
		if ((rc = sqlite3_step(c->st)) == SQLITE_DONE)
			return 0;
		if (rc != SQLITE_ROW) {
			log_warnx("database: %s", sqlite3_errmsg(db));
			return -TW_ERR_DB;
		}
		c->p.n = decode_block(c->st, c->p.ts, c->p.v);
		/* Read around it: the writer sets it aside when it next meets it. */
		if (c->p.n < 0) {
			pthread_mutex_lock(&bad_log_lock);
			log_limited(&bad_log, "database: block %lld does not decode: its points "
			    "are left out of this answer", (long long)sqlite3_column_int64(c->st, 0));
			pthread_mutex_unlock(&bad_log_lock);
			c->p.n = 0;
		}
		c->i = c->desc ? c->p.n - 1 : 0;
	}
}

/* The next row: 1 (into *pt), 0 at the end, or a negated TW_ERR_*. */
static int
row_next(sqlite3_stmt *st, sqlite3 *db, struct store_point *pt)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW) {
		log_warnx("database: %s", sqlite3_errmsg(db));
		return -TW_ERR_DB;
	}
	pt->ts = sqlite3_column_int64(st, 0);
	store_column_value(st, 1, &pt->val);
	return 1;
}

/*
 * One pass in one direction. *count: points passed to cb, *last the ts of
 * the last of them. cb NULL: only counted.
 */
static int
read_pass(struct store *s, int64_t series, int64_t from, int64_t to, int64_t edge, int64_t limit,
    int desc, int (*cb)(void *, const struct store_point *), void *arg, int64_t *count,
    int64_t *last)
{
	struct bcur c = { NULL, desc, from > edge ? from : edge, to, { 0 }, -1 };
	sqlite3 *db = store_handle(s);
	sqlite3_stmt *rows = NULL;
	struct store_point hp, bp = { 0, { VAL_NUM, 0, NULL } };
	int rc, hn, bn;

	*count = 0;
	if ((rc = store_prepare_range(s, read_sql[0][desc], series, from, to, &rows)) != TW_OK ||
	    sqlite3_bind_int64(rows, 4, edge) != SQLITE_OK ||
	    (rc = store_prepare_range(s, read_sql[1][desc], series, c.from, to, &c.st)) != TW_OK ||
	    (rc = pts_alloc(&c.p, BLOCK_MAX)) != TW_OK)
		goto out;
	hn = row_next(rows, db, &hp);
	bn = bcur_next(&c, db, &bp.ts, &bp.val.num);
	while (hn > 0 || bn > 0) {
		int take_row = hn > 0 && (bn <= 0 || (desc ? hp.ts >= bp.ts : hp.ts <= bp.ts));
		const struct store_point *pt = take_row ? &hp : &bp;

		if (hn < 0 || bn < 0)
			break;
		if (*count >= limit)
			break;
		++*count;
		*last = pt->ts;
		if (cb != NULL && (rc = cb(arg, pt)) != 0)
			goto out;
		/* Never both at one ts; if a database had it, the row is the newer write. */
		if (take_row && bn > 0 && bp.ts == hp.ts)
			bn = bcur_next(&c, db, &bp.ts, &bp.val.num);
		if (take_row)
			hn = row_next(rows, db, &hp);
		else
			bn = bcur_next(&c, db, &bp.ts, &bp.val.num);
	}
	if (hn < 0 || bn < 0)
		rc = TW_ERR_DB;
out:
	sqlite3_finalize(rows);
	sqlite3_finalize(c.st);
	pts_free(&c.p);
	return rc;
}

int
hblocks_read(struct store *s, int64_t series, int64_t from, int64_t to, int64_t limit,
    int newest, int (*cb)(void *, const struct store_point *), void *arg)
{
	sqlite3 *db = store_handle(s);
	int own = sqlite3_get_autocommit(db), rc;
	int64_t count = 0, last = from, edge;

	if (limit <= 0 || from > to)
		return TW_OK;
	if (own && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		log_warnx("database: %s", sqlite3_errmsg(db));
		return TW_ERR_DB;
	}
	/*
	 * Retention's raw edge: a block across it keeps its older points
	 * until all of it is older (hblocks_trim), and they are no longer
	 * history; nor is a row under it that the next trim takes (one from
	 * before twind stopped storing numbers there). Strings and booleans
	 * are kept as long as hours.
	 */
	rc = history_edge(s, TIER_RAW, &edge);
	/* The newest `limit`: counted back from `to`, then read forward from the last counted. */
	if (rc == TW_OK && newest)
		rc = read_pass(s, series, from, to, edge, limit, 1, NULL, NULL, &count, &last);
	if (rc == TW_OK && (!newest || count > 0))
		rc = read_pass(s, series, newest ? last : from, to, edge, limit, 0, cb, arg, &count,
		    &last);
	if (own)
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	return rc;
}
