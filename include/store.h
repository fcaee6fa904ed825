/*
 * The SQLite store. One writer connection belongs to the engine;
 * each REST thread opens a reader of its own. WAL lets readers run while
 * the writer commits, so REST never blocks ingestion.
 */
#ifndef TW_STORE_H
#define TW_STORE_H

#include <stdint.h>

#include "value.h"

struct store;

/*
 * Opens (creating and migrating when `writer`) the database at `path`.
 * `full_sync` makes every commit wait for the disk (synchronous=FULL);
 * otherwise a commit survives a crash of twind but not of the machine.
 * Returns NULL and logs the reason on failure.
 */
struct store *store_open(const char *path, int writer, int full_sync);
/*
 * Called every 5 s or so while a schema step runs, so main can tell
 * systemd the start takes longer (EXTEND_TIMEOUT_USEC).
 */
void store_set_migrate_hook(void (*fn)(void));
void store_close(struct store *s);
/*
 * Bounds the connection's page cache at about `bytes` (SQLite counts a
 * page with its header). Returns 0 or TW_ERR_DB.
 */
int store_cache_size(struct store *s, int64_t bytes);
/* Bytes its page cache holds now; the connection's own thread asks. */
int64_t store_cache_used(struct store *s);

/* Writer: transactions. Return 0 or TW_ERR_DB. */
int store_begin(struct store *s);
int store_commit(struct store *s);
void store_rollback(struct store *s);

/*
 * Reader: the reads between these see one committed state (a read
 * transaction), so a document's version matches its values.
 */
int store_snapshot_begin(struct store *s);
void store_snapshot_end(struct store *s);

struct store_series_row;
/*
 * Writer: the series (twin, property), made if new; its id in *id. When
 * it was there already with a reported value (memory did not hold it),
 * `cb` (if not NULL) gets that row, and its return is returned.
 */
int store_series_add(struct store *s, const char *twin, const char *prop, int64_t *id,
    int (*cb)(void *arg, const struct store_series_row *row), void *arg);
/* Writer: 1 if the twin `id` is in the database. */
int store_twin_exists(struct store *s, const char *id);
/* Writer: the reported value of a series and whether it is outside the model's range. */
int store_series_put(struct store *s, int64_t series, int64_t ts, const struct tw_val *v,
    int out_of_range);
struct store_twin_row;
struct store_desired_row;
struct store_alert_row;
struct store_command_row;
/* Writer: the twin row (every column). */
int store_twin_put(struct store *s, const struct store_twin_row *t);
/* Writer: one desired entry, or its removal. */
int store_desired_put(struct store *s, const char *twin, const struct store_desired_row *d);
int store_desired_del(struct store *s, const char *twin, const char *prop);
/* Writer: a new alert (its id stored in *id), or a change of an open one. */
int store_alert_add(struct store *s, const struct store_alert_row *a, int64_t *id);
int store_alert_put(struct store *s, const struct store_alert_row *a);
/* Writer: an alert no longer active, leaving its acknowledgement as it is. */
int store_alert_clear(struct store *s, int64_t id, int64_t cleared_ts);
/* Writer: a command, new or with a new status. */
int store_command_put(struct store *s, const struct store_command_row *c);
/*
 * Writer: the answer (or time-out) of a sent command: only a command
 * whose status is `sent` (and, if `twin` is not NULL, of that twin)
 * changes; *changed says whether one did.
 */
int store_command_answer(struct store *s, const char *id, const char *twin, const char *status,
    const char *reason, int64_t acked_ts, int *changed);
/* Writer: up to `max` ids of sent commands whose deadline is at or before `now`. */
int store_commands_overdue(struct store *s, int64_t now, int max, char (*ids)[24], int *n);
/* The largest command id stored (its 16 hex digits; 0 with none): new ids start above it. */
int store_command_max_id(struct store *s, uint64_t *id);
/*
 * Writer: when the newest command `command` of `twin` issued at or after
 * `since` was issued, refused and expired ones left out (0: none). It
 * sees the open batch.
 */
int store_command_last(struct store *s, const char *twin, const char *command, int64_t since,
    int64_t *ts);
/* Writer: one command by id (TW_ERR_NOTFOUND if none). */
int store_command_get(struct store *s, const char *id,
    int (*cb)(void *arg, const struct store_command_row *row), void *arg);
/* Writer: a poison message, keeping only the newest `keep` of them. */
int store_quarantine_put(struct store *s, int64_t ts, const char *topic, const char *reason,
    const void *payload, int len, int keep);

/* Rows as they are read and written; strings borrowed until the callback returns. */
struct store_twin_row {
	const char *id;
	const char *model;	/* NULL when unset */
	const char *parent;	/* NULL when unset */
	uint64_t version;
	int64_t last_seen_ts;	/* 0 when never seen */
	int64_t created_ts;
	int delta_pending;	/* the delta's publication is not acknowledged yet */
	int active_alerts;	/* read only */
};
struct store_series_row {
	int64_t id;
	const char *twin;
	const char *prop;
	int64_t ts;
	struct tw_val val;
	int out_of_range;
};
struct store_desired_row {
	const char *twin;	/* read only */
	const char *prop;
	struct tw_val val;
	int64_t ts;		/* when it was set */
	int64_t pending_since_ts;	/* 0: null */
	int64_t published;	/* times the delta holding it was published */
	int64_t converged_ts;	/* 0: null */
	int in_delta;
	const char *set_by;	/* a token's name, "rule:NAME", or NULL */
};
struct store_alert_row {
	int64_t id;
	const char *twin;
	const char *rule;
	const char *severity;
	const char *message;
	struct tw_val val;
	int active;
	int acknowledged;
	int64_t shelved_until_ts, raised_ts, acked_ts, cleared_ts;	/* 0: null */
	const char *acked_by, *shelved_by;	/* token names, or NULL */
};

struct store_command_row {
	const char *id;
	const char *twin;
	const char *command;
	const char *params;	/* JSON text, or NULL */
	const char *rule;	/* NULL for an operator's command */
	const char *issued_by;	/* the operator's token name, or NULL */
	const char *status;	/* pending, sent, done, rejected, failed, timed_out, expired, refused */
	const char *reason;	/* or NULL */
	int64_t source_ts, issued_ts, sent_ts, acked_ts;	/* 0: null */
	int64_t expires_ts;	/* it must not be executed after this */
	int64_t timeout_ms;	/* its answer is awaited this long after sent_ts; 0: none */
	int64_t deadline_ts;	/* a sent command: when it times out */
	/* Read from the store only (converge.c writes them): NULL when its model names no effect. */
	int effect_read;	/* the three below were read: a row from memory does not have them */
	const char *effect;	/* waiting, converged, not_converged */
	int64_t effect_ts;	/* when it was judged; 0 while waiting */
	int64_t effect_deadline_ts;	/* while waiting: not converged after this */
};

/*
 * Start-up load, in the writer's thread. Callbacks return 0 to go on, or
 * a TW_ERR_* code that aborts the load and is returned by store_load.
 */
struct store_loader {
	int (*twin)(void *arg, const struct store_twin_row *row);
	int (*series)(void *arg, const struct store_series_row *row);
	int (*desired)(void *arg, const struct store_desired_row *row);
	/* open alerts, and the newest alert of each twin and rule */
	int (*alert)(void *arg, const struct store_alert_row *row);
	int (*command)(void *arg, const struct store_command_row *row);	/* pending, oldest first */
};
/* Writer: one alert by id (TW_ERR_NOTFOUND if none). */
int store_alert_get(struct store *s, int64_t id,
    int (*cb)(void *arg, const struct store_alert_row *row), void *arg);
int store_load(struct store *s, const struct store_loader *l, void *arg);

/*
 * Readers. Rows are borrowed until the callback returns, which returns 0
 * to go on or an error code that aborts the read and is returned. 0 or
 * TW_ERR_DB / TW_ERR_NOTFOUND.
 */
int store_read_twins(struct store *s, const char *parent,
    int (*cb)(void *arg, const struct store_twin_row *row), void *arg);
int store_read_twin(struct store *s, const char *id,
    int (*cb)(void *arg, const struct store_twin_row *row), void *arg);
int store_read_children(struct store *s, const char *id,
    int (*cb)(void *arg, const char *child), void *arg);
int store_read_reported(struct store *s, const char *twin,
    int (*cb)(void *arg, const struct store_series_row *row), void *arg);
int store_read_desired(struct store *s, const char *twin,
    int (*cb)(void *arg, const struct store_desired_row *row), void *arg);
/* The active alerts of a twin, oldest first. */
int store_read_alerts(struct store *s, const char *twin,
    int (*cb)(void *arg, const struct store_alert_row *row), void *arg);
/*
 * Alerts, newest first, filtered by twin, severity and state ("active",
 * "cleared", "unacknowledged", "shelved"); NULL filters nothing.
 */
int store_read_alert_list(struct store *s, const char *twin, const char *severity,
    const char *state, int64_t now, int limit,
    int (*cb)(void *arg, const struct store_alert_row *row), void *arg);
/* Commands, newest first, filtered by twin and status (NULL: any). */
int store_read_commands(struct store *s, const char *twin, const char *status, int limit,
    int (*cb)(void *arg, const struct store_command_row *row), void *arg);

struct store_point {
	int64_t ts;
	struct tw_val val;
};
/* The id of series (twin, prop): TW_ERR_NOTFOUND if there is none. */
int store_series_find(struct store *s, const char *twin, const char *prop, int64_t *id);

/* 1 when this connection's last error was SQLITE_FULL (the disk or its quota). */
int store_full(struct store *s);

/* The last SQLite error text of this connection, for logs. */
const char *store_errmsg(struct store *s);

#endif
