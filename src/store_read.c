/* SQLite: every read (the load at start, the writer's lookups, and the reads of REST). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "store_db.h"

int
store_twin_exists(struct store *s, const char *id)
{
	sqlite3_stmt *st = s->st[ST_TWIN_EXISTS];
	int rc;

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_ROW;
}

int
store_commands_overdue(struct store *s, int64_t now, int max, char (*ids)[24], int *n)
{
	sqlite3_stmt *st = s->st[ST_CMDS_OVERDUE];
	int rc;

	*n = 0;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int(st, 2, max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
		snprintf(ids[*n], 24, "%s", (const char *)sqlite3_column_text(st, 0));
		(*n)++;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_warnx("database: %s", sqlite3_errmsg(s->db));
		return TW_ERR_DB;
	}
	return TW_OK;
}

int
store_command_last(struct store *s, const char *twin, const char *command, int64_t since,
    int64_t *ts)
{
	sqlite3_stmt *st = s->st[ST_CMD_LAST];
	int rc;

	*ts = 0;
	sqlite3_bind_text(st, 1, twin, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, command, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, since);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*ts = sqlite3_column_int64(st, 0);	/* NULL (none) reads as 0 */
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_warnx("database: %s", sqlite3_errmsg(s->db));
		return TW_ERR_DB;
	}
	return TW_OK;
}

int
store_command_max_id(struct store *s, uint64_t *id)
{
	sqlite3_stmt *st = s->st[ST_CMD_MAX_ID];
	const char *text;
	int rc;

	*id = 0;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW &&
	    (text = (const char *)sqlite3_column_text(st, 0)) != NULL &&
	    strncmp(text, "c-", 2) == 0 && strlen(text) == 18 &&
	    strspn(text + 2, "0123456789abcdef") == 16)
		*id = strtoull(text + 2, NULL, 16);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_warnx("database: %s", sqlite3_errmsg(s->db));
		return TW_ERR_DB;
	}
	return TW_OK;
}

static void
twin_row(sqlite3_stmt *st, struct store_twin_row *r)
{
	r->id = (const char *)sqlite3_column_text(st, 0);
	r->model = (const char *)sqlite3_column_text(st, 1);
	r->parent = (const char *)sqlite3_column_text(st, 2);
	r->version = (uint64_t)sqlite3_column_int64(st, 3);
	r->last_seen_ts = sqlite3_column_int64(st, 4);
	r->created_ts = sqlite3_column_int64(st, 5);
	r->delta_pending = sqlite3_column_int(st, 6);
	r->active_alerts = sqlite3_column_int(st, 7);
}

static void
desired_row(sqlite3_stmt *st, struct store_desired_row *r)
{
	r->twin = (const char *)sqlite3_column_text(st, 0);
	r->prop = (const char *)sqlite3_column_text(st, 1);
	store_column_value(st, 2, &r->val);
	r->ts = sqlite3_column_int64(st, 3);
	r->pending_since_ts = sqlite3_column_int64(st, 4);
	r->published = sqlite3_column_int64(st, 5);
	r->converged_ts = sqlite3_column_int64(st, 6);
	r->in_delta = sqlite3_column_int(st, 7);
	r->set_by = (const char *)sqlite3_column_text(st, 8);
}

static void
command_row(sqlite3_stmt *st, struct store_command_row *r)
{
	r->id = (const char *)sqlite3_column_text(st, 0);
	r->twin = (const char *)sqlite3_column_text(st, 1);
	r->command = (const char *)sqlite3_column_text(st, 2);
	r->params = (const char *)sqlite3_column_text(st, 3);
	r->rule = (const char *)sqlite3_column_text(st, 4);
	r->status = (const char *)sqlite3_column_text(st, 5);
	r->reason = (const char *)sqlite3_column_text(st, 6);
	r->source_ts = sqlite3_column_int64(st, 7);
	r->issued_ts = sqlite3_column_int64(st, 8);
	r->sent_ts = sqlite3_column_int64(st, 9);
	r->acked_ts = sqlite3_column_int64(st, 10);
	r->expires_ts = sqlite3_column_int64(st, 11);
	r->timeout_ms = sqlite3_column_int64(st, 12);
	r->deadline_ts = sqlite3_column_int64(st, 13);
	r->issued_by = (const char *)sqlite3_column_text(st, 14);
	r->effect_read = 1;
	r->effect = (const char *)sqlite3_column_text(st, 15);
	r->effect_ts = sqlite3_column_int64(st, 16);
	r->effect_deadline_ts = sqlite3_column_int64(st, 17);
}

static void
alert_row(sqlite3_stmt *st, struct store_alert_row *r)
{
	r->id = sqlite3_column_int64(st, 0);
	r->twin = (const char *)sqlite3_column_text(st, 1);
	r->rule = (const char *)sqlite3_column_text(st, 2);
	r->severity = (const char *)sqlite3_column_text(st, 3);
	r->message = (const char *)sqlite3_column_text(st, 4);
	store_column_value(st, 5, &r->val);
	r->active = sqlite3_column_int(st, 6);
	r->acknowledged = sqlite3_column_int(st, 7);
	r->shelved_until_ts = sqlite3_column_int64(st, 8);
	r->raised_ts = sqlite3_column_int64(st, 9);
	r->acked_ts = sqlite3_column_int64(st, 10);
	r->cleared_ts = sqlite3_column_int64(st, 11);
	r->acked_by = (const char *)sqlite3_column_text(st, 12);
	r->shelved_by = (const char *)sqlite3_column_text(st, 13);
}

/*
 * Steps through rows, handing each to `row`. A non-zero return aborts the
 * walk and is returned as it is: a callback that ran out of memory must
 * not look like one that finished.
 */
static int
step_rows(struct store *s, sqlite3_stmt *st, int (*row)(void *, sqlite3_stmt *), void *arg)
{
	int rc, n = 0, cb = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		n++;
		if ((cb = row(arg, st)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (cb != 0)
		return cb;
	if (rc != SQLITE_DONE) {
		log_warnx("database: %s", sqlite3_errmsg(s->db));
		return TW_ERR_DB;
	}
	return n > 0 ? TW_OK : TW_ERR_NOTFOUND;
}

struct twin_cb { int (*cb)(void *, const struct store_twin_row *); void *arg; };
struct series_cb { int (*cb)(void *, const struct store_series_row *); void *arg; };
struct desired_cb { int (*cb)(void *, const struct store_desired_row *); void *arg; };
struct alert_cb { int (*cb)(void *, const struct store_alert_row *); void *arg; };
struct command_cb { int (*cb)(void *, const struct store_command_row *); void *arg; };

static int
twin_row_cb(void *p, sqlite3_stmt *st)
{
	struct twin_cb *c = p;
	struct store_twin_row r;

	twin_row(st, &r);
	return c->cb(c->arg, &r);
}

static int
series_row_cb(void *p, sqlite3_stmt *st)
{
	struct series_cb *c = p;
	struct store_series_row r;

	store_series_row(st, &r);
	return c->cb(c->arg, &r);
}

static int
desired_row_cb(void *p, sqlite3_stmt *st)
{
	struct desired_cb *c = p;
	struct store_desired_row r;

	desired_row(st, &r);
	return c->cb(c->arg, &r);
}

static int
alert_row_cb(void *p, sqlite3_stmt *st)
{
	struct alert_cb *c = p;
	struct store_alert_row r;

	alert_row(st, &r);
	return c->cb(c->arg, &r);
}

static int
command_row_cb(void *p, sqlite3_stmt *st)
{
	struct command_cb *c = p;
	struct store_command_row r;

	command_row(st, &r);
	return c->cb(c->arg, &r);
}

static int
found_or_empty(int rc)
{
	return rc == TW_ERR_NOTFOUND ? TW_OK : rc;
}

int
store_load(struct store *s, const struct store_loader *l, void *arg)
{
	struct twin_cb tc = { l->twin, arg };
	struct series_cb sc = { l->series, arg };
	struct desired_cb dc = { l->desired, arg };
	struct alert_cb ac = { l->alert, arg };
	struct command_cb cc = { l->command, arg };
	int rc;

	if ((rc = found_or_empty(step_rows(s, s->st[ST_LOAD_TWINS], twin_row_cb, &tc))) != TW_OK ||
	    (rc = found_or_empty(step_rows(s, s->st[ST_LOAD_SERIES], series_row_cb, &sc))) != TW_OK ||
	    (rc = found_or_empty(step_rows(s, s->st[ST_LOAD_DESIRED], desired_row_cb, &dc))) != TW_OK)
		return rc;
	if ((rc = found_or_empty(step_rows(s, s->st[ST_LOAD_ALERTS], alert_row_cb, &ac))) != TW_OK)
		return rc;
	return found_or_empty(step_rows(s, s->st[ST_LOAD_CMDS], command_row_cb, &cc));
}

int
store_command_get(struct store *s, const char *id,
    int (*cb)(void *, const struct store_command_row *), void *arg)
{
	struct command_cb cc = { cb, arg };
	sqlite3_stmt *st = s->st[ST_CMD_GET];

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	return step_rows(s, st, command_row_cb, &cc);
}

int
store_alert_get(struct store *s, int64_t id,
    int (*cb)(void *, const struct store_alert_row *), void *arg)
{
	struct alert_cb ac = { cb, arg };
	sqlite3_stmt *st = s->st[ST_ALERT_GET];

	sqlite3_bind_int64(st, 1, id);
	return step_rows(s, st, alert_row_cb, &ac);
}

int
store_read_alert_list(struct store *s, const char *twin, const char *severity,
    const char *state, int64_t now, int limit,
    int (*cb)(void *, const struct store_alert_row *), void *arg)
{
	struct alert_cb ac = { cb, arg };
	sqlite3_stmt *st = s->st[ST_READ_ALERTS];

	store_bind_text_or_null(st, 1, twin);
	store_bind_text_or_null(st, 2, severity);
	store_bind_text_or_null(st, 3, state);
	sqlite3_bind_int(st, 4, limit);
	sqlite3_bind_int64(st, 5, now);
	return found_or_empty(step_rows(s, st, alert_row_cb, &ac));
}

int
store_read_commands(struct store *s, const char *twin, const char *status, int limit,
    int (*cb)(void *, const struct store_command_row *), void *arg)
{
	struct command_cb cc = { cb, arg };
	sqlite3_stmt *st = s->st[ST_READ_COMMANDS];

	store_bind_text_or_null(st, 1, twin);
	store_bind_text_or_null(st, 2, status);
	sqlite3_bind_int(st, 3, limit);
	return found_or_empty(step_rows(s, st, command_row_cb, &cc));
}

int
store_read_desired(struct store *s, const char *twin,
    int (*cb)(void *, const struct store_desired_row *), void *arg)
{
	struct desired_cb dc = { cb, arg };
	sqlite3_stmt *st = s->st[ST_READ_DESIRED];

	sqlite3_bind_text(st, 1, twin, -1, SQLITE_STATIC);
	return found_or_empty(step_rows(s, st, desired_row_cb, &dc));
}

int
store_read_alerts(struct store *s, const char *twin,
    int (*cb)(void *, const struct store_alert_row *), void *arg)
{
	struct alert_cb ac = { cb, arg };
	sqlite3_stmt *st = s->st[ST_READ_ALERTS_TWIN];

	sqlite3_bind_text(st, 1, twin, -1, SQLITE_STATIC);
	return found_or_empty(step_rows(s, st, alert_row_cb, &ac));
}

int
store_read_twins(struct store *s, const char *parent,
    int (*cb)(void *, const struct store_twin_row *), void *arg)
{
	struct twin_cb tc = { cb, arg };
	sqlite3_stmt *st = s->st[parent != NULL ? ST_READ_TWINS_PARENT : ST_READ_TWINS];

	if (parent != NULL)
		sqlite3_bind_text(st, 1, parent, -1, SQLITE_STATIC);
	return found_or_empty(step_rows(s, st, twin_row_cb, &tc));
}

int
store_read_twin(struct store *s, const char *id,
    int (*cb)(void *, const struct store_twin_row *), void *arg)
{
	struct twin_cb tc = { cb, arg };
	sqlite3_stmt *st = s->st[ST_READ_TWIN];

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	return step_rows(s, st, twin_row_cb, &tc);
}

struct child_cb { int (*cb)(void *, const char *); void *arg; };

static int
child_row_cb(void *p, sqlite3_stmt *st)
{
	struct child_cb *c = p;

	return c->cb(c->arg, (const char *)sqlite3_column_text(st, 0));
}

int
store_read_children(struct store *s, const char *id, int (*cb)(void *, const char *),
    void *arg)
{
	struct child_cb cc = { cb, arg };
	sqlite3_stmt *st = s->st[ST_READ_CHILDREN];

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	return found_or_empty(step_rows(s, st, child_row_cb, &cc));
}

int
store_read_reported(struct store *s, const char *twin,
    int (*cb)(void *, const struct store_series_row *), void *arg)
{
	struct series_cb sc = { cb, arg };
	sqlite3_stmt *st = s->st[ST_READ_REPORTED];

	sqlite3_bind_text(st, 1, twin, -1, SQLITE_STATIC);
	return found_or_empty(step_rows(s, st, series_row_cb, &sc));
}

int
store_series_find(struct store *s, const char *twin, const char *prop, int64_t *id)
{
	sqlite3_stmt *st = s->st[ST_SERIES_FIND];
	int rc;

	sqlite3_bind_text(st, 1, twin, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, prop, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*id = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_ROW)
		return TW_OK;
	if (rc == SQLITE_DONE)
		return TW_ERR_NOTFOUND;
	log_warnx("database: %s", sqlite3_errmsg(s->db));
	return TW_ERR_DB;
}

