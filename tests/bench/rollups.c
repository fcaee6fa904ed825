/*
 * Rollup blocks as time goes, not as a backlog: the bytes on disk of a
 * packed minute and hour row when retention packs them round by round.
 *
 * A backlog (history.py restarts twind with a short `raw`) packs full
 * blocks of 1,024 rows at once; a gateway packs a series when 256 rows
 * wait under the raw edge or the oldest has waited a day, so its blocks
 * are smaller. This program writes telemetry through history.c and runs
 * retention (retention.c) every simulated 10 minutes, as the engine does,
 * on a clock of its own, then reads SQLite's dbstat: pages in use by the
 * block tables and their indexes (shared out between the series by their
 * blocks' bytes), over the rows they hold.
 *
 * usage: tests/bench/twind-rollups [DAYS] [DB]   (default 40 days, a file in /tmp)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "conf.h"
#include "err.h"
#include "history.h"
#include "log.h"
#include "retention.h"
#include "store.h"
#include "value.h"

#define DAY	86400000LL
#define ROUND	600000LL	/* retention packs every 10 minutes */
#define T0	(20000 * DAY)	/* a whole day, in 2024 */

struct series {
	const char *name;
	int64_t every_ms;
	double scale;		/* values are whole multiples of 1 / scale */
	int64_t id;
};

/* Two decimals at 1 Hz (the simulator's sensors), six every 5 minutes (NAB's series). */
static struct series series[] = {
	{ "1 Hz, 2 decimals", 1000, 100, 0 },
	{ "5 min, 6 decimals", 300000, 1000000, 0 },
};
#define NSERIES	(sizeof(series) / sizeof(series[0]))

static uint64_t rng = 7;

/* Noise around 20 in the series' resolution: the worst a codec sees, no trend to ride. */
static double
reading(const struct series *s)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(int64_t)((20.0 + (double)(rng >> 11) / 9007199254740992.0) * s->scale) /
	    s->scale;
}

static int
fail(const char *what)
{
	fprintf(stderr, "twind-rollups: %s failed\n", what);
	return 1;
}

/* Writes one round's readings of every series in one transaction. */
static int
write_round(struct store *w, struct history *h, int64_t from)
{
	int fresh;

	if (store_begin(w) != TW_OK)
		return TW_ERR_DB;
	for (size_t k = 0; k < NSERIES; k++) {
		int64_t first = (from + series[k].every_ms - 1) / series[k].every_ms *
		    series[k].every_ms;

		for (int64_t ts = first; ts < from + ROUND; ts += series[k].every_ms) {
			struct tw_val v = { .type = VAL_NUM, .num = reading(&series[k]) };

			if (history_put(h, series[k].id, ts, &v, &fresh) != TW_OK)
				return TW_ERR_DB;
		}
	}
	if (history_flush(h) != TW_OK)
		return TW_ERR_DB;
	return store_commit(w);
}

/* One retention round at `now`, to its end; the edges go to history.c as the engine does. */
static int
retain(struct store *w, const struct conf *c, struct history *h, const char *path, int64_t now)
{
	struct retention *r = retention_open(w, c, path);
	int rc;

	if (r == NULL)
		return TW_ERR_DB;
	while ((rc = retention_step(r, now)) == 1)
		;
	history_set_floor(h, retention_floor(r), retention_redo_floor(r), retention_pack_edge(r));
	retention_close(r);
	return rc == 0 ? TW_OK : TW_ERR_DB;
}

/* Prints one tier's packed rows of series k: rows per block, bytes of data and on disk. */
static int
report(sqlite3 *db, size_t k, const char *tier)
{
	char sql[512];
	sqlite3_stmt *st;
	int rc;

	snprintf(sql, sizeof(sql),
	    "SELECT count(*), sum(n), sum(length(data)), "
	    "(SELECT sum(pgsize) FROM dbstat WHERE name IN ('%s_block', '%s_block_at')) * "
	    "sum(length(data)) / (SELECT sum(length(data)) FROM %s_block) "
	    "FROM %s_block WHERE series = %lld",
	    tier, tier, tier, tier, (long long)series[k].id);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return fail(sqlite3_errmsg(db));
	if ((rc = sqlite3_step(st)) == SQLITE_ROW && sqlite3_column_int64(st, 1) > 0) {
		double blocks = (double)sqlite3_column_int64(st, 0);
		double rows = (double)sqlite3_column_int64(st, 1);

		printf("| %s | %s | %.0f | %.1f | %.1f |\n", series[k].name,
		    strcmp(tier, "rollup_1m") == 0 ? "minute" : "hour", rows / blocks,
		    sqlite3_column_double(st, 2) / rows, sqlite3_column_double(st, 3) / rows);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : fail("reading dbstat");
}

int
main(int argc, char **argv)
{
	int days = argc > 1 ? atoi(argv[1]) : 40;
	const char *path = argc > 2 ? argv[2] : "/tmp/twind-rollups.db";
	struct conf c;
	struct store *w;
	struct history *h;
	sqlite3 *db;
	int bad = 0;

	if (days < 3 || days > 400)
		return fail("DAYS (3 to 400)");
	log_set_level(LOG_LVL_WARN);	/* the schema's steps, at each start, are not the table */
	unlink(path);
	memset(&c, 0, sizeof(c));
	/* Raw kept a day, so that minutes and hours pack from the second day on. */
	c.keep_raw_ms = DAY;
	c.keep_minute_ms = 90 * DAY;
	c.keep_hour_ms = 1825 * DAY;
	c.keep_alerts_ms = c.keep_commands_ms = c.keep_quarantine_ms = 30 * DAY;
	if ((w = store_open(path, 1, 0)) == NULL || (h = history_open(w)) == NULL)
		return fail("opening the database");
	if (store_begin(w) != TW_OK)
		return fail("a transaction");
	for (size_t k = 0; k < NSERIES; k++)
		if (store_series_add(w, "rollups", series[k].name, &series[k].id, NULL, NULL) != TW_OK)
			return fail("adding a series");
	if (store_commit(w) != TW_OK)
		return fail("a commit");
	for (int64_t now = T0; now < T0 + days * DAY; now += ROUND)
		if (write_round(w, h, now) != TW_OK || retain(w, &c, h, path, now + ROUND) != TW_OK)
			return fail("a round");
	history_close(h);
	store_close(w);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return fail("reading the database");
	printf("\nrollup blocks packed round by round (%d days, raw kept a day, noise at the "
	    "series' resolution)\n\n", days);
	printf("| series | tier | rows a block | block data, B/row | on disk, B/row |\n");
	printf("| --- | --- | ---: | ---: | ---: |\n");
	for (size_t k = 0; k < NSERIES; k++)
		bad |= report(db, k, "rollup_1m") | report(db, k, "rollup_1h");
	sqlite3_close(db);
	unlink(path);
	return bad;
}
