/*
 * Rollup rows and blocks (rollup_blocks.h).
 *
 * Blocks of a series never overlap, and every block is older than every
 * row of its series that packing took after it: a block is made only of
 * rows newer than the series' last block, and no row is ever written
 * under the edge that packing keeps (retention's `packed:rollups`). A
 * row that no block can hold (a hand edit) stays a row; readers merge
 * rows and blocks by ts, so an answer is right either way.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "rollup_block.h"
#include "rollup_blocks.h"
#include "store_sql.h"

enum rb_stmt { RB_LAST, RB_WAITING, RB_ROWS, RB_ROWS_DEL, RB_ADD, RB_TRIM, RB__COUNT };

#define ROW_COLS "ts, n, total, lo, hi, first_ts, first_v, last_ts, last_v"

#define RB_SQL(tier) { \
	[RB_LAST] = "SELECT max(t1) FROM " tier "_block WHERE series = ?1", \
	/* The oldest row waiting, and whether RBLOCKS_PACK_MIN are: their ts only, off the key. */ \
	[RB_WAITING] = "SELECT min(ts), count(*) FROM (SELECT ts FROM " tier " WHERE series = ?1 " \
	    "AND ts > ?2 AND ts < ?3 ORDER BY ts LIMIT ?4)", \
	[RB_ROWS] = "SELECT " ROW_COLS " FROM " tier " WHERE series = ?1 AND ts > ?2 " \
	    "AND ts < ?3 ORDER BY ts LIMIT ?4", \
	[RB_ROWS_DEL] = "DELETE FROM " tier " WHERE series = ?1 AND ts >= ?2 AND ts <= ?3", \
	[RB_ADD] = "INSERT INTO " tier "_block(series, t0, t1, n, data) " \
	    "VALUES(?1, ?2, ?3, ?4, ?5)", \
	[RB_TRIM] = "DELETE FROM " tier "_block WHERE rowid = (SELECT rowid FROM " tier \
	    "_block WHERE series = ?1 AND t1 < ?2 ORDER BY t1 LIMIT 1) RETURNING n", \
}

/* Indexed by tier - TIER_MINUTE. */
static const char *const rb_sql[2][RB__COUNT] = { RB_SQL("rollup_1m"), RB_SQL("rollup_1h") };
static const int64_t width_of[2] = { HISTORY_MINUTE_MS, HISTORY_HOUR_MS };
static const int64_t span_of[2] = { RBLOCKS_SPAN_MINUTE_MS, RBLOCKS_SPAN_HOUR_MS };

struct rblocks {
	struct store *store;
	sqlite3_stmt *st[2][RB__COUNT];
	struct log_limit bad_log;
};

struct rblocks *
rblocks_open(struct store *s)
{
	struct rblocks *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->store = s;
	for (int t = 0; t < 2; t++)
		if (store_prepare_all(s, rb_sql[t], RB__COUNT, b->st[t]) != TW_OK) {
			rblocks_close(b);
			return NULL;
		}
	return b;
}

void
rblocks_close(struct rblocks *b)
{
	if (b == NULL)
		return;
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < RB__COUNT; i++)
			sqlite3_finalize(b->st[t][i]);
	free(b);
}

static int
step_fail(struct rblocks *b, sqlite3_stmt *st)
{
	log_warnx("database: %s", sqlite3_errmsg(store_handle(b->store)));
	sqlite3_reset(st);
	return TW_ERR_DB;
}

static void
column_row(sqlite3_stmt *st, struct history_bucket *r)
{
	r->ts = sqlite3_column_int64(st, 0);
	r->count = sqlite3_column_int64(st, 1);
	r->sum = sqlite3_column_double(st, 2);
	r->min = sqlite3_column_double(st, 3);
	r->max = sqlite3_column_double(st, 4);
	r->first_ts = sqlite3_column_int64(st, 5);
	r->first = sqlite3_column_double(st, 6);
	r->last_ts = sqlite3_column_int64(st, 7);
	r->last = sqlite3_column_double(st, 8);
}

/* The ts of the series' last block; INT64_MIN when it has none. */
static int
last_packed(struct rblocks *b, int t, int64_t series, int64_t *last)
{
	sqlite3_stmt *st = b->st[t][RB_LAST];
	int rc;

	*last = INT64_MIN;
	sqlite3_bind_int64(st, 1, series);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		*last = sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return step_fail(b, st);
	sqlite3_reset(st);
	return TW_OK;
}

/*
 * Whether tier t's rows after `after` and before `edge` make a block now:
 * enough of them, or the oldest long enough under the edge. Asked before
 * any row is read, since most series wait most of the time.
 */
static int
block_due(struct rblocks *b, int t, int64_t series, int64_t after, int64_t edge, int *due)
{
	sqlite3_stmt *st = b->st[t][RB_WAITING];
	int rc;

	*due = 0;
	sqlite3_bind_int64(st, 1, series);
	sqlite3_bind_int64(st, 2, after);
	sqlite3_bind_int64(st, 3, edge);
	sqlite3_bind_int(st, 4, RBLOCKS_PACK_MIN);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return step_fail(b, st);
	/* A block of few and recent rows: wait for more, or blocks would be tiny. */
	if (sqlite3_column_type(st, 0) != SQLITE_NULL)
		*due = sqlite3_column_int64(st, 1) >= RBLOCKS_PACK_MIN ||
		    sqlite3_column_int64(st, 0) < edge - RBLOCKS_PACK_WAIT_MS;
	sqlite3_reset(st);
	return TW_OK;
}

/* Up to RBLOCK_MAX rows of tier t after `after` and before `edge`, oldest first. */
static int
read_rows(struct rblocks *b, int t, int64_t series, int64_t after, int64_t edge,
    struct history_bucket *rows, int *n)
{
	sqlite3_stmt *st = b->st[t][RB_ROWS];
	int rc;

	*n = 0;
	sqlite3_bind_int64(st, 1, series);
	sqlite3_bind_int64(st, 2, after);
	sqlite3_bind_int64(st, 3, edge);
	sqlite3_bind_int(st, 4, RBLOCK_MAX);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < RBLOCK_MAX)
		column_row(st, &rows[(*n)++]);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return step_fail(b, st);
	sqlite3_reset(st);
	return TW_OK;
}

/* Rows [0, n) as one new block, and out of the rows table. */
static int
write_block(struct rblocks *b, int t, int64_t series, const struct history_bucket *rows, int n)
{
	sqlite3_stmt *st = b->st[t][RB_ADD];
	uint8_t *buf = malloc(rblock_bound(n));
	size_t len;
	int rc;

	if (buf == NULL)
		return TW_ERR_NOMEM;
	if ((len = rblock_encode(rows, n, width_of[t], buf)) == 0) {
		free(buf);
		return TW_ERR_INVAL;	/* rblock_valid said otherwise: a bug */
	}
	sqlite3_bind_int64(st, 1, series);
	sqlite3_bind_int64(st, 2, rows[0].ts);
	sqlite3_bind_int64(st, 3, rows[n - 1].ts);
	sqlite3_bind_int(st, 4, n);
	sqlite3_bind_blob(st, 5, buf, (int)len, SQLITE_STATIC);
	rc = store_step_done(b->store, st);
	free(buf);
	if (rc != TW_OK)
		return rc;
	st = b->st[t][RB_ROWS_DEL];
	sqlite3_bind_int64(st, 1, series);
	sqlite3_bind_int64(st, 2, rows[0].ts);
	sqlite3_bind_int64(st, 3, rows[n - 1].ts);
	return store_step_done(b->store, st);
}

int
rblocks_pack(struct rblocks *b, enum history_tier tier, int64_t series, int64_t edge,
    int64_t *moved)
{
	struct history_bucket *rows;
	int64_t last;
	int t = tier - TIER_MINUTE, n, ok, rc, due;

	*moved = 0;
	if (t < 0 || t > 1)
		return TW_ERR_INVAL;
	if ((rc = last_packed(b, t, series, &last)) != TW_OK ||
	    (rc = block_due(b, t, series, last, edge, &due)) != TW_OK || !due)
		return rc;
	if ((rows = malloc(RBLOCK_MAX * sizeof(*rows))) == NULL)
		return TW_ERR_NOMEM;
	if ((rc = read_rows(b, t, series, last, edge, rows, &n)) != TW_OK || n == 0)
		goto out;
	/* A block's rows span at most span_of[t]. */
	for (ok = 1; ok < n && (uint64_t)rows[ok].ts - (uint64_t)rows[0].ts <
	    (uint64_t)span_of[t]; ok++)
		;
	n = ok;
	/* Only a hand edit makes a row no block can hold: it and what follows stay rows. */
	if ((ok = rblock_valid(rows, n, width_of[t])) == 0) {
		log_limited(&b->bad_log, "history: series %lld: a %s rollup row at %lld that no "
		    "block can hold stays a row, and the rows after it too", (long long)series,
		    history_tier_name(tier), (long long)rows[0].ts);
		goto out;
	}
	if ((rc = write_block(b, t, series, rows, ok)) == TW_OK) {
		*moved = ok;
	} else if (rc == TW_ERR_INVAL) {
		/* A bug (rblock_valid took what the encoder refuses): the rows stay, retention goes on. */
		log_limited(&b->bad_log, "history: series %lld: %s rollup rows from %lld could not be "
		    "packed and stay rows", (long long)series, history_tier_name(tier),
		    (long long)rows[0].ts);
		rc = TW_OK;
	}
out:
	free(rows);
	return rc;
}

int
rblocks_trim(struct rblocks *b, enum history_tier tier, int64_t series, int64_t cutoff,
    int64_t max, int64_t *deleted, int *done)
{
	int t = tier - TIER_MINUTE, rc;
	int64_t n;

	*deleted = 0;
	*done = 0;
	if (t < 0 || t > 1)
		return TW_ERR_INVAL;
	while (*deleted < max) {
		sqlite3_stmt *st = b->st[t][RB_TRIM];

		sqlite3_bind_int64(st, 1, series);
		sqlite3_bind_int64(st, 2, cutoff);
		if ((rc = sqlite3_step(st)) == SQLITE_DONE) {
			sqlite3_reset(st);
			*done = 1;
			break;
		}
		if (rc != SQLITE_ROW)
			return step_fail(b, st);
		/* A damaged count must neither stop retention nor wrap: a block is 1..RBLOCK_MAX rows. */
		n = sqlite3_column_int64(st, 0);
		*deleted += n >= 1 && n <= RBLOCK_MAX ? n : 1;
		/* RETURNING's statement finishes its DELETE at the next step. */
		if (sqlite3_step(st) != SQLITE_DONE)
			return step_fail(b, st);
		sqlite3_reset(st);
	}
	return TW_OK;
}

/* ---- readers ---- */

static struct log_limit read_bad_log;
static pthread_mutex_t read_bad_lock = PTHREAD_MUTEX_INITIALIZER;

/* The rows of the blocks in a range, one block decoded at a time. */
struct rcur {
	sqlite3_stmt *st;
	int64_t from, to, width;
	struct history_bucket *rows;
	struct rblock_scratch *scratch;
	int n, i;
};

static const char *const read_sql[2][2] = {
	{ "SELECT " ROW_COLS " FROM rollup_1m WHERE series = ?1 AND ts >= ?2 AND ts <= ?3 "
	  "ORDER BY ts",
	  "SELECT rowid, data, t0, t1, n FROM rollup_1m_block WHERE series = ?1 AND t1 >= ?2 "
	  "AND t1 < ?3 + ?4 AND t0 <= ?3 ORDER BY t1" },
	{ "SELECT " ROW_COLS " FROM rollup_1h WHERE series = ?1 AND ts >= ?2 AND ts <= ?3 "
	  "ORDER BY ts",
	  "SELECT rowid, data, t0, t1, n FROM rollup_1h_block WHERE series = ?1 AND t1 >= ?2 "
	  "AND t1 < ?3 + ?4 AND t0 <= ?3 ORDER BY t1" },
};

/* The next packed row in range: 1, 0 at the end, or -1 on a database error. */
static int
rcur_next(struct rcur *c, sqlite3 *db, const struct history_bucket **row)
{
	for (;;) {
		int rc;

		while (c->i < c->n) {
			const struct history_bucket *r = &c->rows[c->i++];

			if (r->ts > c->to)
				return 0;
			if (r->ts >= c->from) {
				*row = r;
				return 1;
			}
		}
		if ((rc = sqlite3_step(c->st)) == SQLITE_DONE)
			return 0;
		if (rc != SQLITE_ROW) {
			log_warnx("database: %s", sqlite3_errmsg(db));
			return -1;
		}
		c->i = 0;
		c->n = rblock_decode(sqlite3_column_blob(c->st, 1),
		    (size_t)sqlite3_column_bytes(c->st, 1), c->width, c->rows, c->scratch);
		/*
		 * A damaged file: its rows are missing from answers until
		 * retention deletes it. A block that decodes but is not what
		 * its row says would break the merge's order.
		 */
		if (c->n > 0 && (c->rows[0].ts != sqlite3_column_int64(c->st, 2) ||
		    c->rows[c->n - 1].ts != sqlite3_column_int64(c->st, 3) ||
		    c->n != sqlite3_column_int64(c->st, 4)))
			c->n = -1;
		if (c->n < 0) {
			pthread_mutex_lock(&read_bad_lock);
			log_limited(&read_bad_log, "database: rollup block %lld does not decode: its "
			    "rows are left out of this answer", (long long)sqlite3_column_int64(c->st, 0));
			pthread_mutex_unlock(&read_bad_lock);
			c->n = 0;
		}
	}
}

/* The next row of the rows table: 1, 0 at the end, -1 on an error. */
static int
row_next(sqlite3_stmt *st, sqlite3 *db, struct history_bucket *r)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW) {
		log_warnx("database: %s", sqlite3_errmsg(db));
		return -1;
	}
	column_row(st, r);
	return 1;
}

static int
merge(sqlite3 *db, sqlite3_stmt *rows, struct rcur *c,
    int (*cb)(void *, const struct history_bucket *), void *arg)
{
	struct history_bucket hr;
	const struct history_bucket *br = NULL;
	int hn = row_next(rows, db, &hr), bn = rcur_next(c, db, &br);

	while (hn > 0 || bn > 0) {
		int take_row = hn > 0 && (bn <= 0 || hr.ts <= br->ts);

		if (hn < 0 || bn < 0)
			break;
		if (cb(arg, take_row ? &hr : br) != 0)
			return TW_OK;
		if (take_row)
			hn = row_next(rows, db, &hr);
		else
			bn = rcur_next(c, db, &br);
	}
	return hn < 0 || bn < 0 ? TW_ERR_DB : TW_OK;
}

int
rblocks_read(struct store *s, enum history_tier tier, int64_t series, int64_t from, int64_t to,
    int (*cb)(void *, const struct history_bucket *), void *arg)
{
	sqlite3 *db = store_handle(s);
	int t = tier - TIER_MINUTE, own = sqlite3_get_autocommit(db), rc;
	struct rcur c = { .width = 0 };
	sqlite3_stmt *rows = NULL;
	int64_t edge;

	if (t < 0 || t > 1)
		return TW_ERR_INVAL;
	if (from > to)
		return TW_OK;
	if (own && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		log_warnx("database: %s", sqlite3_errmsg(db));
		return TW_ERR_DB;
	}
	c.width = width_of[t];
	c.to = to;
	c.rows = malloc(RBLOCK_MAX * sizeof(*c.rows));
	c.scratch = malloc(sizeof(*c.scratch));
	rc = c.rows == NULL || c.scratch == NULL ? TW_ERR_NOMEM : history_edge(s, tier, &edge);
	/* A block across the tier's edge keeps older rows, which are history no more. */
	if (rc == TW_OK) {
		c.from = from > edge ? from : edge;
		if ((rc = store_prepare_range(s, read_sql[t][0], series, from, to, &rows)) == TW_OK &&
		    (rc = store_prepare_range(s, read_sql[t][1], series, c.from, to, &c.st)) == TW_OK) {
			/* A block ends within its span of its start: the index is bounded on both sides. */
			sqlite3_bind_int64(c.st, 4, span_of[t]);
			rc = merge(db, rows, &c, cb, arg);
		}
	}
	sqlite3_finalize(rows);
	sqlite3_finalize(c.st);
	free(c.rows);
	free(c.scratch);
	if (own)
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	return rc;
}
