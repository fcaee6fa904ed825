/* SQLite: every row the writer stores (twins, series, desired, alerts, commands, quarantine). */
#include "err.h"
#include "log.h"
#include "store_db.h"

int
store_series_add(struct store *s, const char *twin, const char *prop, int64_t *id,
    int (*cb)(void *arg, const struct store_series_row *row), void *arg)
{
	sqlite3_stmt *st = s->st[ST_SERIES_ADD];
	struct store_series_row row;
	int rc, cbrc = 0;

	sqlite3_bind_text(st, 1, twin, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, prop, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		/* It was there already, with its reported value: the caller starts from it. */
		if (sqlite3_column_type(st, 3) != SQLITE_NULL && cb != NULL) {
			store_series_row(st, &row);
			cbrc = cb(arg, &row);
		}
		rc = sqlite3_step(st);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		log_warnx("database: %s", sqlite3_errmsg(s->db));
		return TW_ERR_DB;
	}
	return cbrc;
}

int
store_series_put(struct store *s, int64_t series, int64_t ts, const struct tw_val *v,
    int out_of_range)
{
	sqlite3_stmt *st = s->st[ST_SERIES_PUT];

	store_bind_value(st, 1, v);
	sqlite3_bind_int64(st, 2, ts);
	sqlite3_bind_int(st, 3, out_of_range);
	sqlite3_bind_int64(st, 4, series);
	return store_step_done(s, st);
}

int
store_desired_put(struct store *s, const char *twin, const struct store_desired_row *d)
{
	sqlite3_stmt *st = s->st[ST_DESIRED_PUT];

	sqlite3_bind_text(st, 1, twin, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, d->prop, -1, SQLITE_STATIC);
	store_bind_value(st, 3, &d->val);
	sqlite3_bind_int64(st, 4, d->ts);
	store_bind_ts_or_null(st, 5, d->pending_since_ts);
	sqlite3_bind_int64(st, 6, d->published);
	store_bind_ts_or_null(st, 7, d->converged_ts);
	sqlite3_bind_int(st, 8, d->in_delta);
	store_bind_text_or_null(st, 9, d->set_by);
	return store_step_done(s, st);
}

int
store_desired_del(struct store *s, const char *twin, const char *prop)
{
	sqlite3_stmt *st = s->st[ST_DESIRED_DEL];

	sqlite3_bind_text(st, 1, twin, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, prop, -1, SQLITE_STATIC);
	return store_step_done(s, st);
}

int
store_alert_add(struct store *s, const struct store_alert_row *a, int64_t *id)
{
	sqlite3_stmt *st = s->st[ST_ALERT_ADD];

	sqlite3_bind_text(st, 1, a->twin, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->rule, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->severity, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, a->message, -1, SQLITE_STATIC);
	store_bind_value(st, 5, &a->val);
	sqlite3_bind_int64(st, 6, a->raised_ts);
	if (store_step_done(s, st) != TW_OK)
		return TW_ERR_DB;
	*id = sqlite3_last_insert_rowid(s->db);
	return TW_OK;
}

int
store_alert_put(struct store *s, const struct store_alert_row *a)
{
	sqlite3_stmt *st = s->st[ST_ALERT_PUT];

	sqlite3_bind_text(st, 1, a->message, -1, SQLITE_STATIC);
	store_bind_value(st, 2, &a->val);
	sqlite3_bind_int(st, 3, a->active);
	sqlite3_bind_int(st, 4, a->acknowledged);
	store_bind_ts_or_null(st, 5, a->shelved_until_ts);
	store_bind_ts_or_null(st, 6, a->acked_ts);
	store_bind_ts_or_null(st, 7, a->cleared_ts);
	store_bind_text_or_null(st, 8, a->acked_by);
	store_bind_text_or_null(st, 9, a->shelved_by);
	sqlite3_bind_int64(st, 10, a->id);
	return store_step_done(s, st);
}

int
store_alert_clear(struct store *s, int64_t id, int64_t cleared_ts)
{
	sqlite3_stmt *st = s->st[ST_ALERT_CLEAR];

	sqlite3_bind_int64(st, 1, cleared_ts);
	sqlite3_bind_int64(st, 2, id);
	return store_step_done(s, st);
}

int
store_command_put(struct store *s, const struct store_command_row *c)
{
	sqlite3_stmt *st = s->st[ST_CMD_PUT];

	sqlite3_bind_text(st, 1, c->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, c->twin, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, c->command, -1, SQLITE_STATIC);
	store_bind_text_or_null(st, 4, c->params);
	store_bind_text_or_null(st, 5, c->rule);
	sqlite3_bind_text(st, 6, c->status, -1, SQLITE_STATIC);
	store_bind_text_or_null(st, 7, c->reason);
	store_bind_ts_or_null(st, 8, c->source_ts);
	sqlite3_bind_int64(st, 9, c->issued_ts);
	store_bind_ts_or_null(st, 10, c->sent_ts);
	store_bind_ts_or_null(st, 11, c->acked_ts);
	store_bind_ts_or_null(st, 12, c->expires_ts);
	sqlite3_bind_int64(st, 13, c->timeout_ms);
	store_bind_ts_or_null(st, 14, c->deadline_ts);
	store_bind_text_or_null(st, 15, c->issued_by);
	return store_step_done(s, st);
}

int
store_command_answer(struct store *s, const char *id, const char *twin, const char *status,
    const char *reason, int64_t acked_ts, int *changed)
{
	sqlite3_stmt *st = s->st[ST_CMD_ANSWER];

	sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
	store_bind_text_or_null(st, 2, reason);
	store_bind_ts_or_null(st, 3, acked_ts);
	sqlite3_bind_text(st, 4, id, -1, SQLITE_STATIC);
	store_bind_text_or_null(st, 5, twin);
	if (store_step_done(s, st) != TW_OK)
		return TW_ERR_DB;
	*changed = sqlite3_changes(s->db) > 0;
	return TW_OK;
}

int
store_twin_put(struct store *s, const struct store_twin_row *t)
{
	sqlite3_stmt *st = s->st[ST_TWIN_PUT];

	sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
	store_bind_text_or_null(st, 2, t->model);
	store_bind_text_or_null(st, 3, t->parent);
	sqlite3_bind_int64(st, 4, (int64_t)t->version);
	store_bind_ts_or_null(st, 5, t->last_seen_ts);
	sqlite3_bind_int64(st, 6, t->created_ts);
	sqlite3_bind_int(st, 7, t->delta_pending);
	return store_step_done(s, st);
}

int
store_quarantine_put(struct store *s, int64_t ts, const char *topic, const char *reason,
    const void *payload, int len, int keep)
{
	sqlite3_stmt *st = s->st[ST_QUARANTINE_PUT];
	int64_t last;

	sqlite3_bind_int64(st, 1, ts);
	sqlite3_bind_text(st, 2, topic, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, reason, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, payload, len, SQLITE_STATIC);
	if (store_step_done(s, st) != TW_OK)
		return TW_ERR_DB;
	last = sqlite3_last_insert_rowid(s->db);
	st = s->st[ST_QUARANTINE_TRIM];
	sqlite3_bind_int64(st, 1, last - keep);
	return store_step_done(s, st);
}
