/* The anomaly() detectors' state: saved with the batches, read back at start. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anomaly_store.h"
#include "err.h"
#include "expr.h"
#include "log.h"
#include "names.h"
#include "store_sql.h"

enum { AS_PUT, AS_LOAD, AS_FORGET, AS__COUNT };

static const char *const as_sql[AS__COUNT] = {
	[AS_PUT] = "INSERT INTO anomaly_state(twin, property, state, saved_ts) VALUES(?, ?, ?, ?) "
	    "ON CONFLICT(twin, property) DO UPDATE SET state = excluded.state, "
	    "saved_ts = excluded.saved_ts",
	[AS_LOAD] = "SELECT twin, property, state FROM anomaly_state WHERE saved_ts >= ?",
	/* Rows of twins or rules gone for that long: the table holds what is in use. */
	[AS_FORGET] = "DELETE FROM anomaly_state WHERE saved_ts < ?",
};

struct anomaly_store {
	struct store *store;
	sqlite3_stmt *st[AS__COUNT];
};

struct anomaly_store *
anomaly_store_open(struct store *st)
{
	struct anomaly_store *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->store = st;
	if (store_prepare_all(st, as_sql, AS__COUNT, s->st) != TW_OK) {
		anomaly_store_close(s);
		return NULL;
	}
	return s;
}

void
anomaly_store_close(struct anomaly_store *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < AS__COUNT; i++)
		sqlite3_finalize(s->st[i]);
	free(s);
}

static int
is_detector(const struct twin_window *w)
{
	return w->kind == EXPR_WIN_ANOMALY || (w->kind == EXPR_WIN_DIFF && w->name2 != NULL);
}

static int
due(const struct twin_window *w, int64_t mono, int all)
{
	return is_detector(w) && w->a.dirty && (all || mono - w->a.saved_ms >= ANOMALY_SAVE_MS);
}

/*
 * The row's property: the property, or "p-q" for the disagreement of p
 * with q (a name never holds '-', so it cannot be mistaken for one).
 */
static const char *
key_of(const struct twin_window *w, char *buf, size_t len)
{
	if (w->kind != EXPR_WIN_DIFF)
		return w->name;
	snprintf(buf, len, "%s-%s", w->name, w->name2);
	return buf;
}

int
anomaly_store_due(const struct twin *t, int64_t mono)
{
	for (uint16_t i = 0; i < t->nwindows; i++)
		if (due(&t->windows[i], mono, 0))
			return 1;
	return 0;
}

int
anomaly_store_save(struct anomaly_store *s, struct twin *t, int64_t mono, int64_t now, int all)
{
	unsigned char buf[ANOMALY_STATE_BYTES];
	char key[2 * PROP_NAME_MAX + 2];
	sqlite3_stmt *st;

	if (s == NULL)
		return TW_OK;	/* no table: nothing is saved */
	st = s->st[AS_PUT];
	for (uint16_t i = 0; i < t->nwindows; i++) {
		struct anomaly *a = &t->windows[i].a;

		if (!due(&t->windows[i], mono, all))
			continue;
		anomaly_save(a, buf);
		sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, key_of(&t->windows[i], key, sizeof(key)), -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 3, buf, (int)sizeof(buf), SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, now);
		if (store_step_done(s->store, st) != TW_OK)
			return TW_ERR_DB;
		/* Should the batch roll back, the twin's undo copy puts these back. */
		a->dirty = 0;
		a->saved_ms = mono;
	}
	return TW_OK;
}

/* The detector of `t` for the row's property `name`, if a rule asks for one. */
static struct anomaly *
detector_of(struct twin *t, const char *name)
{
	char key[2 * PROP_NAME_MAX + 2];

	for (uint16_t i = 0; i < t->nwindows; i++)
		if (is_detector(&t->windows[i]) &&
		    strcmp(key_of(&t->windows[i], key, sizeof(key)), name) == 0)
			return &t->windows[i].a;
	return NULL;
}

int
anomaly_store_load(struct anomaly_store *s, struct twin_map *m, int64_t now)
{
	sqlite3_stmt *st;
	int rc, n = 0, bad = 0;

	if (s == NULL)
		return -1;
	st = s->st[AS_LOAD];
	sqlite3_bind_int64(st, 1, now - ANOMALY_STALE_MS);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		const char *prop = (const char *)sqlite3_column_text(st, 1);
		const void *blob = sqlite3_column_blob(st, 2);
		int len = sqlite3_column_bytes(st, 2);
		struct twin *t = id != NULL ? twin_find(m, id, strlen(id)) : NULL;
		struct anomaly *a = t != NULL && prop != NULL ? detector_of(t, prop) : NULL;

		/*
		 * A twin or a rule that is gone leaves its row; it costs one row
		 * each. A detector that has learned in memory knows better.
		 */
		if (a == NULL || a->n > 0)
			continue;
		if (blob == NULL || len < 0 || anomaly_load(a, blob, (size_t)len) != 0) {
			bad++;
			continue;
		}
		a->dirty = 0;
		n++;
	}
	sqlite3_reset(st);
	if (bad > 0)
		log_warnx("%d anomaly detector state%s did not read back: %s anew", bad,
		    bad == 1 ? "" : "s", bad == 1 ? "it learns" : "they learn");
	if (rc != SQLITE_DONE) {
		log_warnx("database: reading the anomaly states: %s", store_errmsg(s->store));
		return -1;
	}
	sqlite3_bind_int64(s->st[AS_FORGET], 1, now - ANOMALY_STALE_MS);
	if (store_step_done(s->store, s->st[AS_FORGET]) != TW_OK)
		log_warnx("database: old anomaly states stay for now");
	return n;
}
