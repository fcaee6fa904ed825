/* Retention and the disk budget: old rows trimmed in small steps between batches. */
#include <libgen.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "clock.h"
#include "err.h"
#include "history.h"
#include "history_blocks.h"
#include "log.h"
#include "retention.h"
#include "rollup_blocks.h"
#include "store_sql.h"

#define STEP_ROWS	2000		/* rows deleted per step: a few ms, so a batch waits little */
#define STEP_SERIES	512		/* series looked at per step, found rows or not */
#define ROUND_MS	10000		/* cutoffs and the budget are looked at again this often */
#define RAW_FLOOR_MS	HISTORY_HOUR_MS	/* the budget never takes the last hour of raw points */
/*
 * ... and raw has nothing more to give once its oldest point is this
 * near that hour: the edge is on whole minutes and a round behind, so
 * with points in the last hour it never quite reaches it.
 */
#define RAW_SLACK_MS	(5 * HISTORY_MINUTE_MS)
#define MINUTE_FLOOR_MS	86400000LL	/* ... nor the last day of minutes */
/* ... which likewise is reached only to within a whole hour and a round. */
#define MINUTE_SLACK_MS	(HISTORY_HOUR_MS + RAW_SLACK_MS)
#define VACUUM_PAGES	1024		/* pages given back to the file system per step */
#define AHEAD_MS	86400000LL	/* at start, the clock may run this far past the newest data */
#define JUMP_MS		HISTORY_HOUR_MS	/* a wall clock this far from the anchored one has jumped */
#define PACK_ROUND_MS	600000		/* packing looks at every series this often */
#define PACK_ROUND_POINTS 1000000	/* ... packing at most this many a round (an upgrade's backlog) */

/*
 * The jobs of a round, in order. Raw numbers go at `raw`, in every
 * series; the raw booleans and strings of a series whose newest value is
 * one, which no rollup summarises, at `hour`. Packing comes
 * after trimming, so that no point is packed only to be deleted: raw
 * points older than an hour (J_PACK), then the rollups under the raw
 * edge, which no point changes any more (J_RPACK).
 */
enum job { J_RAW, J_MINUTE, J_HOUR, J_RAW_OTHER, J_PACK, J_RPACK, J_ALERTS, J_COMMANDS,
	J_QUARANTINE, J__COUNT };

enum ret_stmt {
	R_BEGIN, R_COMMIT, R_ROLLBACK, R_SERIES_NEXT, R_SERIES_NEXT_RAW, R_SERIES_NEXT_OTHER,
	R_NUM_SPAN_END, R_DEL_NUM_SPAN, R_DEL_RAW, R_DEL_MINUTE, R_DEL_HOUR, R_DEL_ALERTS, R_DEL_COMMANDS,
	R_DEL_QUARANTINE, R_MARK, R_MARKS, R_OLDEST_RAW, R_OLDEST_MINUTE, R_PAGES, R_FREE,
	R_PAGE_SIZE, R_VACUUM, R_NEWEST, R_OLDEST_PACKED, R_OLDEST_MINUTE_PACKED,
	R__COUNT
};

/* At most ?3 rows of series ?1 older than ?2: those before the (?3 + 1)-th such row. */
#define DEL_TIER(t) "DELETE FROM " t " WHERE series = ?1 AND ts < coalesce((SELECT ts FROM " \
	t " WHERE series = ?1 AND ts < ?2 ORDER BY ts LIMIT 1 OFFSET ?3), ?2)"
#define OLDEST(t) "SELECT min((SELECT ts FROM " t " h WHERE h.series = s.id ORDER BY ts " \
	"LIMIT 1)) FROM series s"

static const char *const ret_sql[R__COUNT] = {
	[R_BEGIN] = "BEGIN IMMEDIATE",
	[R_COMMIT] = "COMMIT",
	[R_ROLLBACK] = "ROLLBACK",
	/*
	 * A series of numbers (or none reported yet) and a series of booleans
	 * or strings are trimmed by different ages, each as a whole: a DELETE
	 * never walks over rows it must keep.
	 */
	[R_SERIES_NEXT] = "SELECT id FROM series WHERE id > ? ORDER BY id LIMIT 1",
	[R_SERIES_NEXT_RAW] = "SELECT id, typeof(value) IN ('real', 'null') FROM series "
	    "WHERE id > ? ORDER BY id LIMIT 1",
	[R_SERIES_NEXT_OTHER] = "SELECT id FROM series WHERE id > ? "
	    "AND typeof(value) NOT IN ('real', 'null') ORDER BY id LIMIT 1",
	/*
	 * The numbers among a series of strings: a span of at most ?4 rows
	 * looked at per step from ?2 (its end, when there are more), then its
	 * numbers deleted, so that the strings kept are walked over once.
	 */
	[R_NUM_SPAN_END] = "SELECT max(ts), count(*) FROM (SELECT ts FROM history "
	    "WHERE series = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts LIMIT ?4 + 1)",
	[R_DEL_NUM_SPAN] = "DELETE FROM history WHERE series = ?1 AND ts >= ?2 AND ts < ?3 "
	    "AND typeof(value) = 'real'",
	[R_DEL_RAW] = DEL_TIER("history"),
	[R_DEL_MINUTE] = DEL_TIER("rollup_1m"),
	[R_DEL_HOUR] = DEL_TIER("rollup_1h"),
	/* Cleared and acknowledged only: an alarm nobody has seen stays (ISA-18.2). */
	/* Never the newest row: its id would be given again to the next alert. */
	[R_DEL_ALERTS] = "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts "
	    "WHERE active = 0 AND acknowledged = 1 AND cleared_ts < ?2 "
	    "AND id < (SELECT max(id) FROM alerts) LIMIT ?3)",
	/* Finished commands only: one pending or sent is still owed an answer. */
	[R_DEL_COMMANDS] = "DELETE FROM commands WHERE id IN (SELECT id FROM commands "
	    "WHERE status NOT IN ('pending', 'sent') AND issued_ts < ?2 LIMIT ?3)",
	[R_DEL_QUARANTINE] = "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine "
	    "WHERE ts < ?2 ORDER BY id LIMIT ?3)",
	[R_MARK] = "INSERT INTO trimmed(tier, before_ts) VALUES(?, ?) ON CONFLICT(tier) "
	    "DO UPDATE SET before_ts = max(before_ts, excluded.before_ts)",
	[R_MARKS] = "SELECT tier, before_ts FROM trimmed",
	[R_OLDEST_RAW] = OLDEST("history"),
	[R_OLDEST_MINUTE] = OLDEST("rollup_1m"),
	[R_PAGES] = "PRAGMA page_count",
	[R_FREE] = "PRAGMA freelist_count",
	[R_PAGE_SIZE] = "PRAGMA page_size",
	[R_VACUUM] = "PRAGMA incremental_vacuum(1024)",
	[R_NEWEST] = "SELECT max(ts) FROM series",
	[R_OLDEST_PACKED] = "SELECT min((SELECT t0 FROM history_block b WHERE b.series = s.id "
	    "ORDER BY t0 LIMIT 1)) FROM series s",
	[R_OLDEST_MINUTE_PACKED] = "SELECT min((SELECT t0 FROM rollup_1m_block b "
	    "WHERE b.series = s.id ORDER BY t1 LIMIT 1)) FROM series s",
};

static const struct {
	enum ret_stmt del;
	enum ret_stmt next;	/* a tier's table: series by series, these series; else 0 */
	int mark;		/* the tier whose edge it moves, or -1 */
} jobs[J__COUNT] = {
	[J_RAW] = { R_DEL_RAW, R_SERIES_NEXT_RAW, TIER_RAW },
	[J_MINUTE] = { R_DEL_MINUTE, R_SERIES_NEXT, TIER_MINUTE },
	[J_HOUR] = { R_DEL_HOUR, R_SERIES_NEXT, TIER_HOUR },
	[J_RAW_OTHER] = { R_DEL_RAW, R_SERIES_NEXT_OTHER, -1 },
	/* Any series: one that holds strings now may hold older numbers. */
	[J_PACK] = { 0, R_SERIES_NEXT, -1 },
	[J_RPACK] = { 0, R_SERIES_NEXT, -1 },
	[J_ALERTS] = { R_DEL_ALERTS, 0, -1 },
	[J_COMMANDS] = { R_DEL_COMMANDS, 0, -1 },
	[J_QUARANTINE] = { R_DEL_QUARANTINE, 0, -1 },
};

/* The budget's own edges, apart from the tiers' (which the age moves too). */
static const char *const budget_names[TIER_HOUR] = { "budget:raw", "budget:1m" };

/* The edges a step moves in memory: put back when its transaction is rolled back. */
struct edges {
	int64_t redo_floor;		/* the raw edge with the budget's: no minute is whole before */
	int64_t raw_mark;		/* the raw edge: it never moves back, no rollup takes older */
	int64_t pack_edge;		/* points older may be packed; marked before any is */
	int64_t rollup_edge;		/* rollups older are packed, and no point goes into them */
	int64_t raw_done;		/* no number older is left in any series (a whole J_RAW's cutoff) */
};

struct retention {
	struct store *store;
	const struct conf *conf;
	char *dir;			/* the database's directory, for statvfs */
	sqlite3_stmt *st[R__COUNT];
	int64_t cutoff[J__COUNT];	/* this round: rows older than this go */
	int64_t budget_edge[TIER_HOUR];	/* raw, minute: moved forward by max_db_size */
	int64_t round_mono;		/* when this round began (monotonic); 0: none yet */
	struct edges e;			/* as the file has them, once each step commits */
	int64_t next_pack;		/* monotonic ms: when packing runs again */
	int pack_due;			/* this round packs */
	int64_t pack_cursor[2];		/* the series J_PACK, J_RPACK go on from next round */
	int64_t pack_round_points;	/* packed this round */
	struct hblocks *blocks;
	struct rblocks *rblocks;
	int64_t newest;			/* the newest ts on disk at open */
	int64_t wall0, mono0;		/* retention's clock: wall0 + (monotonic - mono0); 0: unset */
	struct log_limit clock_log;
	int64_t fs_bytes;		/* the file system's size, at open */
	enum job job;			/* the job this round is on; J__COUNT: caught up */
	int64_t series;			/* the tier job's cursor */
	int64_t span_series, span_from;	/* J_RAW in a series of strings: from where it looks on */
	uint64_t trimmed;
	uint64_t packed;		/* points moved from rows into blocks */
	uint64_t rollups_packed;	/* rollup rows moved into blocks */
	struct log_limit budget_log;
};

/* In `trimmed`: rollup rows older are in blocks, and no point goes into them. */
#define ROLLUP_MARK	"packed:rollups"
/* ... and no raw number is older, in any series: J_RAW need not look under it again. */
#define NUMBERS_MARK	"raw:numbers"

static int64_t scalar(struct retention *r, enum ret_stmt id, int64_t def);
static int64_t max64(int64_t a, int64_t b);

static int64_t
fs_size(const char *dir)
{
	struct statvfs v;

	return statvfs(dir, &v) == 0 ? (int64_t)v.f_blocks * (int64_t)v.f_frsize : -1;
}

struct retention *
retention_open(struct store *s, const struct conf *c, const char *db_path)
{
	struct retention *r = calloc(1, sizeof(*r));
	/* The file system of the file a symlink names: its WAL and the budget's bytes live there. */
	char *copy = realpath(db_path, NULL);
	int rc;

	if (copy == NULL)
		copy = strdup(db_path);
	if (r == NULL || copy == NULL)
		goto fail;
	r->store = s;
	r->conf = c;
	r->job = J__COUNT;
	r->e.redo_floor = r->e.pack_edge = r->e.rollup_edge = r->e.raw_mark = INT64_MIN;
	r->e.raw_done = INT64_MIN;
	if ((r->dir = strdup(dirname(copy))) == NULL)
		goto fail;
	if (store_prepare_all(s, ret_sql, R__COUNT, r->st) != TW_OK ||
	    (r->blocks = hblocks_open(s)) == NULL || (r->rblocks = rblocks_open(s)) == NULL)
		goto fail;
	/*
	 * What the budget took before a restart stays taken (its own rows);
	 * the tiers' edges say where writing a late point would be pointless.
	 */
	while ((rc = sqlite3_step(r->st[R_MARKS])) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(r->st[R_MARKS], 0);
		int64_t at = sqlite3_column_int64(r->st[R_MARKS], 1);

		if (name != NULL && strcmp(name, "packed") == 0)
			r->e.pack_edge = at;
		if (name != NULL && strcmp(name, ROLLUP_MARK) == 0)
			r->e.rollup_edge = at;
		if (name != NULL && strcmp(name, NUMBERS_MARK) == 0)
			r->e.raw_done = at;
		if (name != NULL && strcmp(name, history_tier_name(TIER_RAW)) == 0)
			r->e.raw_mark = at;
		for (int t = TIER_RAW; t < TIER_HOUR && name != NULL; t++) {
			if (strcmp(name, budget_names[t]) == 0)
				r->budget_edge[t] = at;
			if (strcmp(name, history_tier_name(t)) == 0)
				r->e.redo_floor = max64(r->e.redo_floor, at);
		}
	}
	sqlite3_reset(r->st[R_MARKS]);
	/* Without the packing edge, a redelivery of a packed point would count twice. */
	if (rc != SQLITE_DONE) {
		log_warnx("database: cannot read retention's edges: %s",
		    sqlite3_errmsg(store_handle(s)));
		goto fail;
	}
	r->newest = scalar(r, R_NEWEST, 0);
	r->fs_bytes = fs_size(r->dir);
	if (retention_reserve(r) < c->disk_reserve_bytes)
		log_warnx("[storage] disk_reserve (%lld MiB) is large for a file system of %lld MiB: "
		    "using an eighth of it", (long long)(c->disk_reserve_bytes >> 20),
		    (long long)(r->fs_bytes >> 20));
	free(copy);
	return r;
fail:
	free(copy);
	retention_close(r);
	return NULL;
}

void
retention_close(struct retention *r)
{
	if (r == NULL)
		return;
	for (int i = 0; i < R__COUNT; i++)
		sqlite3_finalize(r->st[i]);
	hblocks_close(r->blocks);
	rblocks_close(r->rblocks);
	free(r->dir);
	free(r);
}

int64_t
retention_disk_free(struct retention *r, int with_free_pages)
{
	struct statvfs v;
	int64_t pages = 0;

	if (statvfs(r->dir, &v) != 0)
		return -1;
	/* Pages freed inside the file are room for twind (SQLite writes there first), not others. */
	if (with_free_pages)
		pages = scalar(r, R_FREE, 0) * scalar(r, R_PAGE_SIZE, 4096);
	return (int64_t)v.f_bavail * (int64_t)v.f_frsize + pages;
}

int64_t
retention_reserve(const struct retention *r)
{
	int64_t want = r->conf->disk_reserve_bytes;

	/* A reserve near the file system's size would pause twind for good. */
	if (r->fs_bytes > 0 && want > r->fs_bytes / 8)
		return r->fs_bytes / 8;
	return want;
}

/* The raw edge, and the packed rollups' edge, which takes no point even if the raw one moved back. */
int64_t
retention_floor(const struct retention *r)
{
	return max64(r->e.raw_mark, r->e.rollup_edge);
}

int64_t
retention_redo_floor(const struct retention *r)
{
	return r->e.redo_floor;
}

int64_t
retention_pack_edge(const struct retention *r)
{
	return r->e.pack_edge;
}

/*
 * Retention's clock: the wall clock at the first step (at start, no more
 * than a day past the newest data on disk), moved on by the monotonic
 * clock. A wall clock that jumps ahead while twind runs (a typo, a bad
 * NTP answer) ages nothing away until a restart; one that steps back is
 * followed, since that only keeps more.
 */
static int64_t
retention_clock(struct retention *r, int64_t wall)
{
	int64_t mono = clock_mono_ms(), now;

	if (r->mono0 == 0) {
		if (r->newest > 0 && wall > r->newest + AHEAD_MS) {
			log_warnx("retention: the clock is %lld h past the newest data; ages count "
			    "from a day past it", (long long)((wall - r->newest) / HISTORY_HOUR_MS));
			wall = r->newest + AHEAD_MS;
		}
		r->wall0 = wall;
		r->mono0 = mono;
		return wall;
	}
	now = r->wall0 + (mono - r->mono0);
	if (wall < now - JUMP_MS) {
		r->wall0 = wall;
		r->mono0 = mono;
		return wall;
	}
	if (wall > now + JUMP_MS)
		log_limited(&r->clock_log, "retention: the wall clock jumped %lld min ahead; ages "
		    "count by the monotonic clock until twind restarts",
		    (long long)((wall - now) / 60000));
	return now;
}

uint64_t
retention_trimmed_rows(const struct retention *r)
{
	return r->trimmed;
}

uint64_t
retention_packed_points(const struct retention *r)
{
	return r->packed;
}

uint64_t
retention_packed_rollups(const struct retention *r)
{
	return r->rollups_packed;
}

/* A one-value query (a PRAGMA, a min()); `def` when it gives NULL or fails. */
static int64_t
scalar(struct retention *r, enum ret_stmt id, int64_t def)
{
	sqlite3_stmt *st = r->st[id];
	int64_t v = def;

	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return v;
}

static int64_t
max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/*
 * Over budget: the oldest raw hour-or-tenth goes, until only the last
 * hour is left; then the oldest minutes, down to the last day. Hours
 * are never taken for space: they are what years of history are.
 */
static void
budget_check(struct retention *r, int64_t now)
{
	int64_t page = scalar(r, R_PAGE_SIZE, 4096);
	int64_t used = (scalar(r, R_PAGES, 0) - scalar(r, R_FREE, 0)) * page;
	int64_t oldest, packed;

	if (r->conf->max_db_bytes == 0 || used <= r->conf->max_db_bytes)
		return;
	oldest = scalar(r, R_OLDEST_RAW, now);
	packed = scalar(r, R_OLDEST_PACKED, now);
	if (packed < oldest)
		oldest = packed;
	/* A block across the last edge holds older points, gone for readers: not a reason to stop. */
	if (oldest < r->cutoff[J_RAW])
		oldest = r->cutoff[J_RAW];
	if (oldest < now - RAW_FLOOR_MS - RAW_SLACK_MS) {
		r->budget_edge[TIER_RAW] = max64(r->budget_edge[TIER_RAW], oldest +
		    max64(HISTORY_MINUTE_MS, (now - oldest) / 10));
		if (r->budget_edge[TIER_RAW] > now - RAW_FLOOR_MS)
			r->budget_edge[TIER_RAW] = now - RAW_FLOOR_MS;
		log_limited(&r->budget_log, "database: %lld MiB used, over max_db_size (%lld MiB): "
		    "trimming raw history older than %lld s ago", (long long)(used >> 20),
		    (long long)(r->conf->max_db_bytes >> 20),
		    (long long)((now - r->budget_edge[TIER_RAW]) / 1000));
		return;
	}
	oldest = scalar(r, R_OLDEST_MINUTE, now);
	packed = scalar(r, R_OLDEST_MINUTE_PACKED, now);
	if (packed < oldest)
		oldest = packed;
	if (oldest < r->cutoff[J_MINUTE])
		oldest = r->cutoff[J_MINUTE];
	if (oldest < now - MINUTE_FLOOR_MS - MINUTE_SLACK_MS) {
		r->budget_edge[TIER_MINUTE] = history_bucket_of(max64(r->budget_edge[TIER_MINUTE],
		    oldest + max64(HISTORY_HOUR_MS, (now - oldest) / 10)), HISTORY_HOUR_MS);
		if (r->budget_edge[TIER_MINUTE] > now - MINUTE_FLOOR_MS)
			r->budget_edge[TIER_MINUTE] = history_bucket_of(now - MINUTE_FLOOR_MS,
			    HISTORY_HOUR_MS);
		log_limited(&r->budget_log, "database: over max_db_size with one hour of raw "
		    "history left: trimming minutes older than %lld s ago",
		    (long long)((now - r->budget_edge[TIER_MINUTE]) / 1000));
		return;
	}
	log_limited(&r->budget_log, "database: %lld MiB used, over max_db_size (%lld MiB), with "
	    "only the last hour of raw points and day of minutes left; hours are kept",
	    (long long)(used >> 20), (long long)(r->conf->max_db_bytes >> 20));
}

static void
round_begin(struct retention *r, int64_t now)
{
	const struct conf *c = r->conf;

	budget_check(r, now);
	/*
	 * Whole minutes: no minute straddles the edge, so a correction finds
	 * all its points. Never under the last edge: what went before it is
	 * gone (a longer `raw`, a clock stepped back), and a point stored
	 * under it now would be half history (its row shown, its block not).
	 */
	r->cutoff[J_RAW] = history_bucket_of(max64(max64(now - c->keep_raw_ms,
	    r->budget_edge[TIER_RAW]), r->e.raw_mark), HISTORY_MINUTE_MS);
	/* Minutes go in whole hours, so an hour with raw points keeps all its minutes. */
	r->cutoff[J_MINUTE] = history_bucket_of(max64(now - c->keep_minute_ms,
	    r->budget_edge[TIER_MINUTE]), HISTORY_HOUR_MS);
	r->cutoff[J_HOUR] = history_bucket_of(now - c->keep_hour_ms, HISTORY_HOUR_MS);
	r->cutoff[J_RAW_OTHER] = history_bucket_of(max64(now - c->keep_hour_ms,
	    r->budget_edge[TIER_RAW]), HISTORY_MINUTE_MS);
	/* Whole minutes too: a minute is all rows or all packed, until a late point comes. */
	r->cutoff[J_PACK] = history_bucket_of(now - HBLOCKS_PACK_AGE_MS, HISTORY_MINUTE_MS);
	r->cutoff[J_ALERTS] = now - c->keep_alerts_ms;
	r->cutoff[J_COMMANDS] = now - c->keep_commands_ms;
	r->cutoff[J_QUARANTINE] = now - c->keep_quarantine_ms;
	r->round_mono = clock_mono_ms();
	r->pack_due = r->round_mono >= r->next_pack;
	r->pack_round_points = 0;
	r->job = J_RAW;
	r->series = 0;
	r->span_series = 0;
}

/*
 * The numbers of r->series, a series of strings, from r->span_from to
 * `cutoff`, looking at no more than `max` rows (*seen of them; at least
 * 1, so that a step ends); *more when it has not reached the cutoff.
 * Returns the rows deleted, or -1.
 */
static int
trim_numbers(struct retention *r, int64_t cutoff, int max, int *more, int *seen)
{
	sqlite3_stmt *st = r->st[R_NUM_SPAN_END];
	int64_t end = cutoff, rows;
	int rc;

	sqlite3_bind_int64(st, 1, r->series);
	sqlite3_bind_int64(st, 2, r->span_from);
	sqlite3_bind_int64(st, 3, cutoff);
	sqlite3_bind_int(st, 4, max);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		sqlite3_reset(st);
		return -1;
	}
	rows = sqlite3_column_int64(st, 1);
	/* One row past the span: where the next one starts. */
	if ((*more = rows > max))
		end = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	*seen = rows > max ? max : rows > 0 ? (int)rows : 1;
	st = r->st[R_DEL_NUM_SPAN];
	sqlite3_bind_int64(st, 1, r->series);
	sqlite3_bind_int64(st, 2, r->span_from);
	sqlite3_bind_int64(st, 3, end);
	if (store_step_done(r->store, st) != TW_OK)
		return -1;
	r->span_from = end;
	return sqlite3_changes(store_handle(r->store));
}

/*
 * Deletes rows of one tier, series by series from the cursor, within a
 * step's work of `max` rows deleted or looked at (the rows of a series of
 * strings that its numbers are looked for among). Returns the work done,
 * or -1; *deleted says how many rows went.
 */
static int
trim_tier(struct retention *r, enum ret_stmt del, enum ret_stmt which, int64_t cutoff, int max,
    int *done, int *deleted)
{
	sqlite3 *db = store_handle(r->store);
	int work = 0;

	*deleted = 0;
	for (int looked = 0; looked < STEP_SERIES && work < max; looked++) {
		sqlite3_stmt *next = r->st[which];
		int changed, numbers = 1, more, seen;

		sqlite3_bind_int64(next, 1, r->series);
		if (sqlite3_step(next) != SQLITE_ROW) {
			sqlite3_reset(next);
			*done = 1;
			return work;
		}
		r->series = sqlite3_column_int64(next, 0);
		if (which == R_SERIES_NEXT_RAW)
			numbers = sqlite3_column_int(next, 1);
		sqlite3_reset(next);
		if (!numbers) {
			/* Its strings stay: only its numbers go, looked for once each. */
			if (r->span_series != r->series) {
				r->span_series = r->series;
				r->span_from = r->e.raw_done;
			}
			if ((changed = trim_numbers(r, cutoff, max - work, &more, &seen)) < 0)
				return -1;
			*deleted += changed;
			work += seen;
			if (more) {
				r->series--;	/* a step's worth looked at: on from there next step */
				return work;
			}
		} else {
			sqlite3_bind_int64(r->st[del], 1, r->series);
			sqlite3_bind_int64(r->st[del], 2, cutoff);
			sqlite3_bind_int(r->st[del], 3, max - work);
			if (store_step_done(r->store, r->st[del]) != TW_OK)
				return -1;
			changed = sqlite3_changes(db);
			*deleted += changed;
			work += changed;
		}
		/* Raw points are rows and blocks: the blocks' older points (numbers) go too. */
		if (which == R_SERIES_NEXT_RAW && work < max) {
			int64_t packed;
			int all;

			if (hblocks_trim(r->blocks, r->series, cutoff, max - work, &packed, &all) !=
			    TW_OK)
				return -1;
			*deleted += (int)packed;
			work += (int)packed;
			if (!all)
				changed = 1;
		}
		/* So are rollups: whole blocks of them. */
		if ((del == R_DEL_MINUTE || del == R_DEL_HOUR) && work < max) {
			int64_t packed;
			int all;

			if (rblocks_trim(r->rblocks, del == R_DEL_MINUTE ? TIER_MINUTE : TIER_HOUR,
			    r->series, cutoff, max - work, &packed, &all) != TW_OK)
				return -1;
			*deleted += (int)packed;
			work += (int)packed;
			if (!all)
				changed = 1;
		}
		/* This series may have more (a series of strings: its blocks still): come back. */
		if (work >= max && (changed > 0 || !numbers))
			r->series--;
	}
	return work;
}

/* One series' minute rows, else its hour rows, under the rollup edge into a block. */
static int
pack_rollups(struct retention *r, int64_t series, int64_t *moved)
{
	int rc = rblocks_pack(r->rblocks, TIER_MINUTE, series, r->e.rollup_edge, moved);

	if (rc == TW_OK && *moved == 0)
		rc = rblocks_pack(r->rblocks, TIER_HOUR, series, r->e.rollup_edge, moved);
	return rc;
}

/*
 * Packs one series' old rows from the cursor (raw points for J_PACK,
 * rollups for J_RPACK): one block's worth at most per step, since one is
 * up to BLOCK_MAX rows. Returns the points or rows packed.
 */
static int
pack_step(struct retention *r, int *done)
{
	int64_t *cursor = &r->pack_cursor[r->job == J_RPACK];

	/* A backlog goes on next round: the other jobs and the budget must run meanwhile. */
	if (r->pack_round_points >= PACK_ROUND_POINTS) {
		*cursor = r->series;
		r->next_pack = 0;
		*done = 1;
		return 0;
	}
	for (int looked = 0; looked < STEP_SERIES; looked++) {
		sqlite3_stmt *next = r->st[R_SERIES_NEXT];
		int64_t moved;

		sqlite3_bind_int64(next, 1, r->series);
		if (sqlite3_step(next) != SQLITE_ROW) {
			sqlite3_reset(next);
			/* Due again in a while; a round that fails before this packs again next round. */
			*cursor = 0;
			/* A backlog J_PACK left stays due next round. */
			if (r->next_pack != 0 || r->job == J_PACK)
				r->next_pack = clock_mono_ms() + PACK_ROUND_MS;
			*done = 1;
			return 0;
		}
		r->series = sqlite3_column_int64(next, 0);
		sqlite3_reset(next);
		if ((r->job == J_PACK ? hblocks_pack(r->blocks, r->series, r->e.raw_mark,
		    r->cutoff[J_PACK], &moved) :
		    pack_rollups(r, r->series, &moved)) != TW_OK)
			return -1;
		if (moved > 0) {
			r->series--;	/* it may have more */
			r->pack_round_points += moved;
			return (int)moved;
		}
	}
	return 0;
}

static int
trim_table(struct retention *r, enum ret_stmt del, int64_t cutoff, int max, int *done)
{
	sqlite3_stmt *st = r->st[del];
	int n;

	sqlite3_bind_int64(st, 2, cutoff);
	sqlite3_bind_int(st, 3, max);
	if (store_step_done(r->store, st) != TW_OK)
		return -1;
	n = sqlite3_changes(store_handle(r->store));
	*done = n < max;
	return n;
}

static int
mark(struct retention *r, const char *name, int64_t before)
{
	sqlite3_bind_text(r->st[R_MARK], 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(r->st[R_MARK], 2, before);
	return store_step_done(r->store, r->st[R_MARK]);
}

/*
 * At a job's start, its tier's edge, before any row goes: a reader falls
 * back to a coarser tier for what may be gone, and history.c refuses to
 * write under it. The first job also keeps the budget's edges.
 */
static int
job_begin(struct retention *r)
{
	int t;

	if (r->job == J_PACK || r->job == J_RPACK) {
		if (!r->pack_due) {
			r->job++;
			return job_begin(r);
		}
		if (r->series == 0)
			r->series = r->pack_cursor[r->job == J_RPACK];
		/* Marked before any point is packed: history.c looks in blocks under it. */
		if (r->job == J_PACK) {
			r->e.pack_edge = max64(r->e.pack_edge, r->cutoff[J_PACK]);
			return mark(r, "packed", r->e.pack_edge);
		}
		/*
		 * Whole hours under the raw edge (set by J_RAW this round):
		 * no point goes into their minutes or hours any more, and
		 * history.c takes none under this mark, which never moves back.
		 */
		r->e.rollup_edge = max64(r->e.rollup_edge,
		    history_bucket_of(r->e.raw_mark, HISTORY_HOUR_MS));
		return mark(r, ROLLUP_MARK, r->e.rollup_edge);
	}
	if (r->job == J__COUNT || (t = jobs[r->job].mark) < 0)
		return TW_OK;
	if (t < TIER_HOUR)
		r->e.redo_floor = max64(r->e.redo_floor, r->cutoff[r->job]);
	if (r->job == J_RAW)
		r->e.raw_mark = r->cutoff[J_RAW];
	if (r->job == J_RAW)
		for (int b = TIER_RAW; b < TIER_HOUR; b++)
			if (r->budget_edge[b] != 0 &&
			    mark(r, budget_names[b], r->budget_edge[b]) != TW_OK)
				return TW_ERR_DB;
	return mark(r, history_tier_name(t), r->cutoff[r->job]);
}

/* Free pages are reused by new rows; only a large surplus is worth giving back. */
static void
vacuum_if_it_pays(struct retention *r)
{
	int64_t pages = scalar(r, R_PAGES, 0), free_pages = scalar(r, R_FREE, 0);
	sqlite3_stmt *st = r->st[R_VACUUM];

	if (free_pages < VACUUM_PAGES || free_pages * 10 < pages)
		return;
	while (sqlite3_step(st) == SQLITE_ROW)
		;
	sqlite3_reset(st);
}

int
retention_probe(struct retention *r, int64_t now)
{
	if (store_step_done(r->store, r->st[R_BEGIN]) != TW_OK)
		return TW_ERR_DB;
	sqlite3_bind_text(r->st[R_MARK], 1, "probe", -1, SQLITE_STATIC);
	sqlite3_bind_int64(r->st[R_MARK], 2, now);
	if (store_step_done(r->store, r->st[R_MARK]) != TW_OK ||
	    store_step_done(r->store, r->st[R_COMMIT]) != TW_OK) {
		if (!sqlite3_get_autocommit(store_handle(r->store)))
			store_step_done(r->store, r->st[R_ROLLBACK]);
		return TW_ERR_DB;
	}
	return TW_OK;
}

/*
 * A step of the current job within `max` rows of work; returns the work
 * (-1 on an error), and in *count the rows it deleted or packed.
 */
static int
job_step(struct retention *r, int max, int *done, int *count)
{
	enum ret_stmt del = jobs[r->job].del;

	if (r->job == J_PACK || r->job == J_RPACK)
		return *count = pack_step(r, done);
	if (jobs[r->job].next != 0)
		return trim_tier(r, del, jobs[r->job].next, r->cutoff[r->job], max, done, count);
	return *count = trim_table(r, del, r->cutoff[r->job], max, done);
}

int
retention_step(struct retention *r, int64_t wall)
{
	int n = 0, done = 0, got, count, full;
	uint64_t trimmed = 0, packed = 0, rpacked = 0;
	struct edges before;

	if (r->job == J__COUNT) {
		if (r->round_mono != 0 && clock_mono_ms() - r->round_mono < ROUND_MS)
			return 0;
		round_begin(r, retention_clock(r, wall));
	}
	/* The edges move in memory as the step goes, and only hold if its transaction does. */
	before = r->e;
	if (store_step_done(r->store, r->st[R_BEGIN]) != TW_OK)
		return -TW_ERR_DB;
	if (r->series == 0 && job_begin(r) != TW_OK)
		goto fail;
	while (r->job < J__COUNT && n < STEP_ROWS) {
		done = 0;
		if ((got = job_step(r, STEP_ROWS - n, &done, &count)) < 0)
			goto fail;
		n += got;
		*(r->job == J_RPACK ? &rpacked : r->job == J_PACK ? &packed : &trimmed) +=
		    (uint64_t)count;
		if (!done)
			break;
		if (r->job == J_RAW) {
			r->e.raw_done = r->cutoff[J_RAW];
			if (mark(r, NUMBERS_MARK, r->e.raw_done) != TW_OK)
				goto fail;
		}
		r->job++;
		r->series = 0;
		if (job_begin(r) != TW_OK)
			goto fail;
	}
	if (store_step_done(r->store, r->st[R_COMMIT]) != TW_OK)
		goto fail;
	r->trimmed += trimmed;
	r->packed += packed;
	r->rollups_packed += rpacked;
	if (r->job == J__COUNT)
		vacuum_if_it_pays(r);
	return r->job < J__COUNT;
fail:
	/* Read before the rollback, which clears it. */
	full = store_full(r->store);
	if (!sqlite3_get_autocommit(store_handle(r->store)))
		store_step_done(r->store, r->st[R_ROLLBACK]);
	r->e = before;
	/* The next round starts over; what was deleted before stays deleted. */
	r->job = J__COUNT;
	return full ? -TW_ERR_FULL : -TW_ERR_DB;
}
