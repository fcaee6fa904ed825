/* SQLite: the schema and its migrations, every statement prepared once, transactions and values. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "store_db.h"

/*
 * Schema steps, applied in order and recorded in PRAGMA user_version.
 * Never edit a step that has shipped; add the next one.
 */
static const char *const migrations[] = {
	/* 1: twins, series with their reported value, history, quarantine */
	"CREATE TABLE twins("
	"  id TEXT PRIMARY KEY, model TEXT, parent TEXT,"
	"  version INTEGER NOT NULL, last_seen_ts INTEGER, created_ts INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE INDEX twins_parent ON twins(parent);"
	"CREATE TABLE series("
	"  id INTEGER PRIMARY KEY, twin TEXT NOT NULL, property TEXT NOT NULL,"
	"  value, ts INTEGER, UNIQUE(twin, property));"
	/* One row per (series, ts): a redelivered message lands on its own row. */
	"CREATE TABLE history("
	"  series INTEGER NOT NULL, ts INTEGER NOT NULL, value,"
	"  PRIMARY KEY(series, ts)) WITHOUT ROWID;"
	"CREATE TABLE quarantine("
	"  id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, topic TEXT NOT NULL,"
	"  reason TEXT NOT NULL, payload BLOB);",
	/* 2: models and parents in use, out-of-range flags, desired state, alerts */
	"ALTER TABLE series ADD COLUMN out_of_range INTEGER NOT NULL DEFAULT 0;"
	/* 1 while the delta on {twin}/desired is not acknowledged by the broker yet */
	"ALTER TABLE twins ADD COLUMN delta_pending INTEGER NOT NULL DEFAULT 0;"
	"CREATE TABLE desired("
	"  twin TEXT NOT NULL, property TEXT NOT NULL, value, ts INTEGER NOT NULL,"
	"  pending_since_ts INTEGER, published INTEGER NOT NULL DEFAULT 0,"
	"  converged_ts INTEGER, in_delta INTEGER NOT NULL,"
	"  PRIMARY KEY(twin, property)) WITHOUT ROWID;"
	"CREATE TABLE alerts("
	"  id INTEGER PRIMARY KEY, twin TEXT NOT NULL, rule TEXT NOT NULL,"
	"  severity TEXT NOT NULL, message TEXT NOT NULL, value,"
	"  active INTEGER NOT NULL, acknowledged INTEGER NOT NULL DEFAULT 0,"
	"  shelved_until_ts INTEGER, raised_ts INTEGER NOT NULL, acked_ts INTEGER,"
	"  cleared_ts INTEGER);"
	"CREATE INDEX alerts_twin ON alerts(twin, active);",
	/* 3: commands to assets, from operators and rules */
	"CREATE TABLE commands("
	"  id TEXT PRIMARY KEY, twin TEXT NOT NULL, command TEXT NOT NULL, params TEXT,"
	"  rule TEXT, status TEXT NOT NULL, reason TEXT, source_ts INTEGER,"
	"  issued_ts INTEGER NOT NULL, sent_ts INTEGER, acked_ts INTEGER) WITHOUT ROWID;"
	"CREATE INDEX commands_twin ON commands(twin, issued_ts);",
	/*
	 * 4: a command's expiry (it must not be executed after it), its answer
	 * timeout, and when a sent one times out: sent commands live here only.
	 */
	"ALTER TABLE commands ADD COLUMN expires_ts INTEGER;"
	"ALTER TABLE commands ADD COLUMN timeout_ms INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE commands ADD COLUMN deadline_ts INTEGER;"
	"CREATE INDEX commands_deadline ON commands(deadline_ts) WHERE status = 'sent';"
	/* Rows from step 3 were issued under the old defaults: a 30 s answer timeout, a 5 min TTL. */
	"UPDATE commands SET timeout_ms = 30000, expires_ts = issued_ts + 300000 "
	"  WHERE status IN ('pending', 'sent');"
	"UPDATE commands SET deadline_ts = sent_ts + 30000 WHERE status = 'sent';",
	/* 5: who did it: the token's name on commands, acknowledgements, shelves, desired values */
	"ALTER TABLE commands ADD COLUMN issued_by TEXT;"
	"ALTER TABLE alerts ADD COLUMN acked_by TEXT;"
	"ALTER TABLE alerts ADD COLUMN shelved_by TEXT;"
	"ALTER TABLE desired ADD COLUMN set_by TEXT;",
	/*
	 * 6: history tiers. Per series and minute, and per series and hour:
	 * count, sum, min, max, and the first and last value with their ts
	 * (history.c keeps them in the commit of their raw points). `trimmed`
	 * holds each tier's retention edge: nothing older is left in it.
	 * Existing numbers are rolled up once, here.
	 */
	"CREATE TABLE rollup_1m(series INTEGER NOT NULL, ts INTEGER NOT NULL,"
	"  n INTEGER NOT NULL, total REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL,"
	"  first_ts INTEGER NOT NULL, first_v REAL NOT NULL,"
	"  last_ts INTEGER NOT NULL, last_v REAL NOT NULL,"
	"  PRIMARY KEY(series, ts)) WITHOUT ROWID;"
	"CREATE TABLE rollup_1h(series INTEGER NOT NULL, ts INTEGER NOT NULL,"
	"  n INTEGER NOT NULL, total REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL,"
	"  first_ts INTEGER NOT NULL, first_v REAL NOT NULL,"
	"  last_ts INTEGER NOT NULL, last_v REAL NOT NULL,"
	"  PRIMARY KEY(series, ts)) WITHOUT ROWID;"
	"CREATE TABLE trimmed(tier TEXT PRIMARY KEY, before_ts INTEGER NOT NULL) WITHOUT ROWID;"
	"INSERT INTO rollup_1m SELECT series, b, count(*), sum(value), min(value), max(value),"
	"  min(ts), fv, max(ts), lv FROM (SELECT series, ts, value,"
	"  ts - ((ts % 60000) + 60000) % 60000 AS b,"
	"  first_value(value) OVER w AS fv, last_value(value) OVER w AS lv"
	"  FROM history WHERE typeof(value) = 'real' AND abs(value) <= 1e300"
	"  WINDOW w AS (PARTITION BY series,"
	"  ts - ((ts % 60000) + 60000) % 60000 ORDER BY ts"
	"  ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) GROUP BY series, b;"
	"INSERT INTO rollup_1h SELECT series, b, sum(n), sum(total), min(lo), max(hi),"
	"  min(first_ts), fv, max(last_ts), lv FROM (SELECT series, n, total, lo, hi, first_ts,"
	"  last_ts, ts - ((ts % 3600000) + 3600000) % 3600000 AS b,"
	"  first_value(first_v) OVER (PARTITION BY series, ts - ((ts % 3600000) + 3600000) "
	"  % 3600000 ORDER BY first_ts ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED "
	"  FOLLOWING) AS fv,"
	"  first_value(last_v) OVER (PARTITION BY series, ts - ((ts % 3600000) + 3600000) "
	"  % 3600000 ORDER BY last_ts DESC ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED "
	"  FOLLOWING) AS lv FROM rollup_1m) GROUP BY series, b;"
	/* What retention may delete, oldest first, without a scan. */
	"CREATE INDEX alerts_done ON alerts(cleared_ts) WHERE active = 0 AND acknowledged = 1;"
	"CREATE INDEX commands_done ON commands(issued_ts) "
	"  WHERE status NOT IN ('pending', 'sent');",
	/* 7: what each anomaly() detector has learned (anomaly_store.c) */
	"CREATE TABLE anomaly_state(twin TEXT NOT NULL, property TEXT NOT NULL,"
	"  state BLOB NOT NULL, saved_ts INTEGER NOT NULL, UNIQUE(twin, property));",
	/* 8: whether a command had its effect on the asset (converge.c) */
	"ALTER TABLE commands ADD COLUMN effect TEXT;"
	"ALTER TABLE commands ADD COLUMN effect_ts INTEGER;"
	"ALTER TABLE commands ADD COLUMN effect_deadline_ts INTEGER;"
	"ALTER TABLE commands ADD COLUMN effect_from;"
	"CREATE INDEX commands_effect ON commands(effect_deadline_ts) WHERE effect = 'waiting';",
	/*
	 * 9: raw numbers older than an hour packed per series into blocks
	 * (history_blocks.c); t0 and t1 are the first and last point's ts.
	 * A rowid table: a block is a few KiB, too large for an index's b-tree.
	 */
	"CREATE TABLE history_block(series INTEGER NOT NULL, t0 INTEGER NOT NULL,"
	"  t1 INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);"
	"CREATE UNIQUE INDEX history_block_at ON history_block(series, t0);"
	"CREATE TABLE history_block_bad(series INTEGER NOT NULL, t0 INTEGER NOT NULL,"
	"  t1 INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);"
	"CREATE INDEX history_block_bad_at ON history_block_bad(series, t0);",
	/*
	 * 10: minute and hour rollups older than the raw edge, which nothing
	 * changes any more, packed per series into blocks (rollup_blocks.c);
	 * t0 and t1 are the first and last row's ts. Found by t1: a range
	 * starts at the first block that ends in it.
	 */
	"CREATE TABLE rollup_1m_block(series INTEGER NOT NULL, t0 INTEGER NOT NULL,"
	"  t1 INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);"
	"CREATE UNIQUE INDEX rollup_1m_block_at ON rollup_1m_block(series, t1);"
	"CREATE TABLE rollup_1h_block(series INTEGER NOT NULL, t0 INTEGER NOT NULL,"
	"  t1 INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);"
	"CREATE UNIQUE INDEX rollup_1h_block_at ON rollup_1h_block(series, t1);",
};

#define TWIN_COLS	"id, model, parent, version, last_seen_ts, created_ts, delta_pending, " \
	"(SELECT count(*) FROM alerts a WHERE a.twin = twins.id AND a.active = 1)"
#define ALERT_COLS	"id, twin, rule, severity, message, value, active, acknowledged, " \
	"shelved_until_ts, raised_ts, acked_ts, cleared_ts, acked_by, shelved_by"
#define CMD_COLS	"id, twin, command, params, rule, status, reason, source_ts, issued_ts, " \
	"sent_ts, acked_ts, expires_ts, timeout_ms, deadline_ts, issued_by"
/* What reading a command shows: its effect is written by converge.c, not by ST_CMD_PUT. */
#define CMD_READ_COLS	CMD_COLS ", effect, effect_ts, effect_deadline_ts"

static const char *const stmt_sql[ST__COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	/*
	 * A series that memory does not hold may exist on disk (a start that
	 * loaded only what fits the budget): its id, not a constraint error.
	 */
	[ST_SERIES_ADD] = "INSERT INTO series(twin, property) VALUES(?, ?) "
	    "ON CONFLICT(twin, property) DO UPDATE SET property = excluded.property "
	    "RETURNING id, twin, property, ts, value, out_of_range",
	[ST_SERIES_PUT] = "UPDATE series SET value = ?, ts = ?, out_of_range = ? WHERE id = ?",
	[ST_TWIN_PUT] = "INSERT INTO twins(id, model, parent, version, last_seen_ts, created_ts, "
	    "delta_pending) VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
	    "model = excluded.model, parent = excluded.parent, version = excluded.version, "
	    "last_seen_ts = excluded.last_seen_ts, delta_pending = excluded.delta_pending",
	[ST_QUARANTINE_PUT] = "INSERT INTO quarantine(ts, topic, reason, payload) "
	    "VALUES(?, ?, ?, ?)",
	[ST_QUARANTINE_TRIM] = "DELETE FROM quarantine WHERE id <= ?",
	[ST_DESIRED_PUT] = "INSERT INTO desired(twin, property, value, ts, pending_since_ts, "
	    "published, converged_ts, in_delta, set_by) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?) "
	    "ON CONFLICT(twin, property) DO UPDATE SET value = excluded.value, ts = excluded.ts, "
	    "pending_since_ts = excluded.pending_since_ts, published = excluded.published, "
	    "converged_ts = excluded.converged_ts, in_delta = excluded.in_delta, "
	    "set_by = excluded.set_by",
	[ST_DESIRED_DEL] = "DELETE FROM desired WHERE twin = ? AND property = ?",
	[ST_ALERT_ADD] = "INSERT INTO alerts(twin, rule, severity, message, value, active, "
	    "raised_ts) VALUES(?, ?, ?, ?, ?, 1, ?)",
	[ST_ALERT_PUT] = "UPDATE alerts SET message = ?, value = ?, active = ?, acknowledged = ?, "
	    "shelved_until_ts = ?, acked_ts = ?, cleared_ts = ?, acked_by = ?, shelved_by = ? "
	    "WHERE id = ?",
	[ST_ALERT_GET] = "SELECT " ALERT_COLS " FROM alerts WHERE id = ?",
	[ST_ALERT_CLEAR] = "UPDATE alerts SET active = 0, cleared_ts = ? WHERE id = ?",
	[ST_CMD_PUT] = "INSERT INTO commands(" CMD_COLS ") "
	    "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
	    "ON CONFLICT(id) DO UPDATE SET status = excluded.status, reason = excluded.reason, "
	    "sent_ts = excluded.sent_ts, acked_ts = excluded.acked_ts, "
	    "deadline_ts = excluded.deadline_ts",
	/* Only a sent command takes an answer or a time-out: a settled one stays settled. */
	[ST_CMD_ANSWER] = "UPDATE commands SET status = ?1, reason = ?2, acked_ts = ?3, "
	    "deadline_ts = NULL WHERE id = ?4 AND status = 'sent' AND (?5 IS NULL OR twin = ?5)",
	[ST_CMDS_OVERDUE] = "SELECT id FROM commands WHERE status = 'sent' AND deadline_ts <= ? "
	    "ORDER BY deadline_ts LIMIT ?",
	[ST_CMD_GET] = "SELECT " CMD_READ_COLS " FROM commands WHERE id = ?",
	/* The twin's commands since ?3 through commands_twin: those that may have reached it. */
	[ST_CMD_LAST] = "SELECT max(issued_ts) FROM commands WHERE twin = ?1 AND issued_ts >= ?3 "
	    "AND command = ?2 AND status <> 'refused'",
	/* The primary key's right edge: one step. */
	[ST_CMD_MAX_ID] = "SELECT max(id) FROM commands",
	[ST_TWIN_EXISTS] = "SELECT 1 FROM twins WHERE id = ?",
	[ST_LOAD_TWINS] = "SELECT " TWIN_COLS " FROM twins",
	[ST_LOAD_SERIES] = "SELECT id, twin, property, ts, value, out_of_range FROM series",
	[ST_LOAD_DESIRED] = "SELECT twin, property, value, ts, pending_since_ts, published, "
	    "converged_ts, in_delta, set_by FROM desired",
	/* Open alerts, and the last of each twin and rule: its raise time holds the cooldown. */
	[ST_LOAD_ALERTS] = "SELECT " ALERT_COLS " FROM alerts WHERE active = 1 "
	    "OR id IN (SELECT max(id) FROM alerts GROUP BY twin, rule) ORDER BY id",
	/* Sent ones stay in SQLite: their answer and their time-out find them there. */
	[ST_LOAD_CMDS] = "SELECT " CMD_READ_COLS " FROM commands WHERE status = 'pending' "
	    "ORDER BY issued_ts",
	[ST_READ_TWINS] = "SELECT " TWIN_COLS " FROM twins ORDER BY id",
	[ST_READ_TWINS_PARENT] = "SELECT " TWIN_COLS " FROM twins WHERE parent = ? ORDER BY id",
	[ST_READ_TWIN] = "SELECT " TWIN_COLS " FROM twins WHERE id = ?",
	[ST_READ_CHILDREN] = "SELECT id FROM twins WHERE parent = ? ORDER BY id",
	[ST_READ_REPORTED] = "SELECT id, twin, property, ts, value, out_of_range FROM series "
	    "WHERE twin = ? AND ts IS NOT NULL ORDER BY property",
	[ST_SERIES_FIND] = "SELECT id FROM series WHERE twin = ? AND property = ?",
	[ST_READ_DESIRED] = "SELECT twin, property, value, ts, pending_since_ts, published, "
	    "converged_ts, in_delta, set_by FROM desired WHERE twin = ? ORDER BY property",
	[ST_READ_ALERTS_TWIN] = "SELECT " ALERT_COLS " FROM alerts WHERE twin = ? AND active = 1 "
	    "ORDER BY id",
	[ST_SNAP_BEGIN] = "BEGIN",
	[ST_SNAP_END] = "COMMIT",
	/* ?5 is now: "active" hides shelved alerts, "shelved" shows only them. */
	[ST_READ_ALERTS] = "SELECT " ALERT_COLS " FROM alerts WHERE (?1 IS NULL OR twin = ?1) "
	    "AND (?2 IS NULL OR severity = ?2) AND CASE ?3 "
	    "WHEN 'active' THEN active = 1 AND coalesce(shelved_until_ts, 0) <= ?5 "
	    "WHEN 'cleared' THEN active = 0 "
	    "WHEN 'unacknowledged' THEN acknowledged = 0 "
	    "WHEN 'shelved' THEN coalesce(shelved_until_ts, 0) > ?5 "
	    "ELSE 1 END ORDER BY id DESC LIMIT ?4",
	[ST_READ_COMMANDS] = "SELECT " CMD_READ_COLS " FROM commands WHERE (?1 IS NULL OR twin = ?1) "
	    "AND (?2 IS NULL OR status = ?2) ORDER BY issued_ts DESC, id LIMIT ?3",
};

/* Statements only the writer runs; readers leave them unprepared. */
#define WRITER_ONLY(id)	((id) <= ST_LOAD_CMDS)

int
store_prepare_all(struct store *s, const char *const *sql, int n, sqlite3_stmt **st)
{
	for (int i = 0; i < n; i++)
		if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i],
		    NULL) != SQLITE_OK) {
			log_warnx("database: preparing '%s': %s", sql[i], sqlite3_errmsg(s->db));
			return TW_ERR_DB;
		}
	return TW_OK;
}

int
store_prepare_range(struct store *s, const char *sql, int64_t series, int64_t from, int64_t to,
    sqlite3_stmt **st)
{
	if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) {
		log_warnx("database: %s", sqlite3_errmsg(s->db));
		return TW_ERR_DB;
	}
	sqlite3_bind_int64(*st, 1, series);
	sqlite3_bind_int64(*st, 2, from);
	sqlite3_bind_int64(*st, 3, to);
	return TW_OK;
}

int
store_full(struct store *s)
{
	return sqlite3_errcode(s->db) == SQLITE_FULL;
}

sqlite3 *
store_handle(struct store *s)
{
	return s->db;
}

const char *
store_errmsg(struct store *s)
{
	return sqlite3_errmsg(s->db);
}

static int
store_exec(struct store *s, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_warnx("database: %s: %s", sql, msg != NULL ? msg : "?");
		sqlite3_free(msg);
		return TW_ERR_DB;
	}
	return TW_OK;
}

static void (*migrate_hook)(void);

void
store_set_migrate_hook(void (*fn)(void))
{
	migrate_hook = fn;
}

/* SQLite calls this while a schema step runs; the hook is told at most every 5 s. */
static int
migrate_progress(void *arg)
{
	static int64_t last;
	int64_t now = clock_mono_ms();

	(void)arg;
	if (migrate_hook != NULL && now - last >= 5000) {
		last = now;
		migrate_hook();
	}
	return 0;
}

static int
store_migrate(struct store *s)
{
	int nmig = (int)(sizeof(migrations) / sizeof(migrations[0]));
	sqlite3_stmt *st;
	int version = 0, rc;
	char pragma[64];

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return TW_ERR_DB;
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version > nmig) {
		log_warnx("database schema version %d is newer than this twind knows (%d)",
		    version, nmig);
		return TW_ERR_DB;
	}
	for (; version < nmig; version++) {
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", version + 1);
		if (store_exec(s, "BEGIN IMMEDIATE") != TW_OK)
			return TW_ERR_DB;
		/* A step over years of history (the rollups of step 6) outlasts a start timeout. */
		sqlite3_progress_handler(s->db, 100000, migrate_progress, NULL);
		rc = store_exec(s, migrations[version]);
		sqlite3_progress_handler(s->db, 0, NULL, NULL);
		if (rc != TW_OK || store_exec(s, pragma) != TW_OK) {
			store_exec(s, "ROLLBACK");
			return TW_ERR_DB;
		}
		if (store_exec(s, "COMMIT") != TW_OK)
			return TW_ERR_DB;
		log_info("database: schema step %d applied", version + 1);
	}
	return TW_OK;
}

/* 0 when `file` is missing or twind may write it; else the errno, as twind's effective ids see it. */
static int
store_writable(const char *file, int dir)
{
	if (faccessat(AT_FDCWD, file, W_OK | (dir ? X_OK : 0), AT_EACCESS) == 0 ||
	    (!dir && errno == ENOENT))
		return 0;
	return errno;
}

/*
 * What `path` names when realpath cannot say (the file is not there yet):
 * the last target of its symlinks (up to 8 hops, each relative to its own
 * link's directory), or the path itself. 0, or -1 when it does not fit.
 */
static int
store_link_target(const char *path, char *out, size_t len)
{
	char cur[PATH_MAX], link[PATH_MAX], dir[PATH_MAX];
	ssize_t n;

	if (snprintf(cur, sizeof(cur), "%s", path) >= (int)sizeof(cur))
		return -1;
	for (int hop = 0; hop < 8 && (n = readlink(cur, link, sizeof(link) - 1)) > 0; hop++) {
		if ((size_t)n >= sizeof(link) - 1)
			return -1;	/* may have been cut */
		link[n] = '\0';
		memcpy(dir, cur, sizeof(dir));
		if ((link[0] == '/' ? snprintf(cur, sizeof(cur), "%s", link) :
		    snprintf(cur, sizeof(cur), "%s/%s", dirname(dir), link)) >= (int)sizeof(cur))
			return -1;
	}
	return snprintf(out, len, "%s", cur) < (int)len ? 0 : -1;
}

/*
 * SQLite says only "unable to open database file" (or opens the file read
 * only without a word) when the writer cannot write the database or make
 * its WAL and shared-memory files beside it: after such a failure, say
 * which directory or file, and why. Judged only after SQLite failed, so a
 * setup it can use (a symlink to a data partition, CAP_DAC_OVERRIDE) is
 * never refused by a check of ours.
 */
static void
store_explain(const char *path)
{
	char real[PATH_MAX], buf[PATH_MAX], side[PATH_MAX + 8], dir[PATH_MAX];
	static const char *const sides[] = { "", "-wal", "-shm" };
	int why;

	/* The WAL and -shm go beside the file a symlink names, also one not there yet. */
	if (realpath(path, real) == NULL && store_link_target(path, real, sizeof(real)) != 0)
		return;
	memcpy(buf, real, sizeof(buf));
	if (realpath(dirname(buf), dir) == NULL) {
		why = errno;
		memcpy(buf, real, sizeof(buf));
		snprintf(dir, sizeof(dir), "%s", dirname(buf));
		if (why == ENOENT) {
			log_warnx("database %s: the state directory %s does not exist", path, dir);
			return;
		}
	}
	if ((why = store_writable(dir, 1)) == EROFS) {
		log_warnx("database %s: the state directory %s is read-only (its file system is "
		    "mounted read-only): twind writes its database, WAL and shared-memory files "
		    "there", path, dir);
		return;
	}
	for (size_t i = 0; i < sizeof(sides) / sizeof(sides[0]); i++) {
		int w;

		snprintf(side, sizeof(side), "%s%s", real, sides[i]);
		if ((w = store_writable(side, 0)) != 0) {
			log_warnx("database %s: twind cannot write %s (%s): its owner or mode is "
			    "not twind's (was it made by another user, sqlite3 run as root?)", path,
			    side, strerror(w));
			return;
		}
	}
	if (why != 0)
		log_warnx("database %s: twind cannot write in the state directory %s (%s), where "
		    "SQLite makes the WAL and shared-memory files", path, dir, strerror(why));
}

struct store *
store_open(const char *path, int writer, int full_sync)
{
	int flags = SQLITE_OPEN_NOMUTEX |
	    (writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY);
	struct store *s;
	struct stat st;
	/* Only a new file is touched before it is read: a damaged one must stay as it is. */
	int fresh = stat(path, &st) != 0 || st.st_size == 0;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->writer = writer;
	if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
		log_warnx("database %s: %s", path, s->db != NULL ? sqlite3_errmsg(s->db) : "?");
		goto fail;
	}
	/* SQLite falls back to reading a file it may not write; the writer must write. */
	if (writer && sqlite3_db_readonly(s->db, "main") == 1) {
		log_warnx("database %s: opened read-only", path);
		goto fail;
	}
	/* A reader waits briefly for a checkpoint rather than failing a request. */
	sqlite3_busy_timeout(s->db, writer ? 5000 : 2000);
	if (writer) {
		/*
		 * Incremental vacuum can only be chosen before the first table:
		 * a new database gets it, so trimming can give pages back to
		 * the file system. The WAL is cut back to 64 MiB after a
		 * checkpoint, so one burst does not keep the file large.
		 */
		if ((fresh && store_exec(s, "PRAGMA auto_vacuum = INCREMENTAL") != TW_OK) ||
		    store_exec(s, "PRAGMA journal_size_limit = 67108864") != TW_OK ||
		    store_exec(s, "PRAGMA journal_mode = WAL") != TW_OK ||
		    store_exec(s, full_sync ? "PRAGMA synchronous = FULL" :
		    "PRAGMA synchronous = NORMAL") != TW_OK ||
		    store_migrate(s) != TW_OK ||
		    /* A write lock needs the WAL and -shm writable: a failed start, not a failed first batch. */
		    store_exec(s, "BEGIN IMMEDIATE") != TW_OK || store_exec(s, "COMMIT") != TW_OK)
			goto fail;
	}
	for (int i = 0; i < ST__COUNT; i++) {
		if (!writer && WRITER_ONLY(i))
			continue;
		if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		    &s->st[i], NULL) != SQLITE_OK) {
			log_warnx("database %s: preparing '%s': %s", path, stmt_sql[i],
			    sqlite3_errmsg(s->db));
			goto fail;
		}
	}
	return s;
fail:
	if (writer && s->db != NULL && sqlite3_errcode(s->db) == SQLITE_BUSY)
		log_warnx("database %s: another process holds its write lock (a second twind, or "
		    "sqlite3 in a transaction?)", path);
	else if (writer)
		store_explain(path);
	store_close(s);
	return NULL;
}

int
store_cache_size(struct store *s, int64_t bytes)
{
	char sql[64];

	/* A negative size is in KiB: SQLite turns it into pages of whatever size the file has. */
	snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%lld", (long long)(bytes / 1024));
	return store_exec(s, sql);
}

int64_t
store_cache_used(struct store *s)
{
	int cur = 0, hi = 0;

	/* The pagers' heap, pages and their headers: what cache_size bounds. */
	if (sqlite3_db_status(s->db, SQLITE_DBSTATUS_CACHE_USED, &cur, &hi, 0) != SQLITE_OK)
		return -1;
	return cur;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s);
}

int
store_step_done(struct store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		log_warnx("database: %s", sqlite3_errmsg(s->db));
		return TW_ERR_DB;
	}
	return TW_OK;
}

int
store_begin(struct store *s)
{
	return store_step_done(s, s->st[ST_BEGIN]);
}

int
store_commit(struct store *s)
{
	return store_step_done(s, s->st[ST_COMMIT]);
}

int
store_snapshot_begin(struct store *s)
{
	return store_step_done(s, s->st[ST_SNAP_BEGIN]);
}

void
store_snapshot_end(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		store_step_done(s, s->st[ST_SNAP_END]);
}

void
store_rollback(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		store_step_done(s, s->st[ST_ROLLBACK]);
}

void
store_bind_value(sqlite3_stmt *st, int col, const struct tw_val *v)
{
	/*
	 * The storage class keeps the type: REAL is a number, INTEGER a
	 * boolean, TEXT a string. The columns have no affinity, so SQLite
	 * stores each as it is bound.
	 */
	switch (v->type) {
	case VAL_NUM:
		sqlite3_bind_double(st, col, v->num);
		break;
	case VAL_BOOL:
		sqlite3_bind_int(st, col, v->num != 0);
		break;
	case VAL_STR:
		sqlite3_bind_text(st, col, v->str, -1, SQLITE_STATIC);
		break;
	default:
		sqlite3_bind_null(st, col);
	}
}

void
store_column_value(sqlite3_stmt *st, int col, struct tw_val *v)
{
	switch (sqlite3_column_type(st, col)) {
	case SQLITE_FLOAT:
		v->type = VAL_NUM;
		v->num = sqlite3_column_double(st, col);
		break;
	case SQLITE_INTEGER:
		v->type = VAL_BOOL;
		v->num = sqlite3_column_int64(st, col) != 0;
		break;
	case SQLITE_TEXT:
		v->type = VAL_STR;
		v->str = (const char *)sqlite3_column_text(st, col);
		break;
	default:
		v->type = 0;
	}
}

void
store_bind_text_or_null(sqlite3_stmt *st, int col, const char *s)
{
	if (s != NULL)
		sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, col);
}

void
store_bind_ts_or_null(sqlite3_stmt *st, int col, int64_t ts)
{
	if (ts > 0)
		sqlite3_bind_int64(st, col, ts);
	else
		sqlite3_bind_null(st, col);
}

void
store_series_row(sqlite3_stmt *st, struct store_series_row *r)
{
	r->id = sqlite3_column_int64(st, 0);
	r->twin = (const char *)sqlite3_column_text(st, 1);
	r->prop = (const char *)sqlite3_column_text(st, 2);
	r->ts = sqlite3_column_int64(st, 3);
	store_column_value(st, 4, &r->val);
	r->out_of_range = sqlite3_column_int(st, 5);
}
