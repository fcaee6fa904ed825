/*
 * The SQLite store. One writer connection belongs to the sync engine;
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
void store_close(struct store *s);

/* Writer: transactions. Return 0 or TW_ERR_DB. */
int store_begin(struct store *s);
int store_commit(struct store *s);
void store_rollback(struct store *s);

/* Writer: a new series (twin, property); stores its id in *id. */
int store_series_add(struct store *s, const char *twin, const char *prop, int64_t *id);
/* Writer: one history point; a second point at the same (series, ts) replaces the first. */
int store_history_put(struct store *s, int64_t series, int64_t ts, const struct tw_val *v);
/* Writer: the reported value of a series. */
int store_series_put(struct store *s, int64_t series, int64_t ts, const struct tw_val *v);
/* Writer: the twin row. */
int store_twin_put(struct store *s, const char *id, uint64_t version, int64_t last_seen_ts,
    int64_t created_ts);
/* Writer: a poison message, keeping only the newest `keep` of them. */
int store_quarantine_put(struct store *s, int64_t ts, const char *topic, const char *reason,
    const void *payload, int len, int keep);

/* Start-up load, in the writer's thread. Callbacks return 0 to go on. */
struct store_twin_row {
	const char *id;
	const char *model;	/* NULL when unset */
	const char *parent;	/* NULL when unset */
	uint64_t version;
	int64_t last_seen_ts;	/* 0 when never seen */
	int64_t created_ts;
};
struct store_series_row {
	int64_t id;
	const char *twin;
	const char *prop;
	int64_t ts;
	struct tw_val val;	/* strings borrowed until the callback returns */
};
int store_load(struct store *s,
    int (*twin_cb)(void *arg, const struct store_twin_row *row),
    int (*series_cb)(void *arg, const struct store_series_row *row), void *arg);

/* Readers. Rows are borrowed until the callback returns. 0 or TW_ERR_DB / TW_ERR_NOTFOUND. */
int store_read_twins(struct store *s, const char *parent,
    int (*cb)(void *arg, const struct store_twin_row *row), void *arg);
int store_read_twin(struct store *s, const char *id,
    int (*cb)(void *arg, const struct store_twin_row *row), void *arg);
int store_read_children(struct store *s, const char *id,
    int (*cb)(void *arg, const char *child), void *arg);
int store_read_reported(struct store *s, const char *twin,
    int (*cb)(void *arg, const struct store_series_row *row), void *arg);

struct store_point {
	int64_t ts;
	struct tw_val val;
};
struct store_bucket {
	int64_t ts;
	double min, max, avg;
	int64_t count;
};
/*
 * History of (twin, prop) in [from, to], ascending by ts: the oldest
 * `limit` points, or with `newest` the newest ones. Returns
 * TW_ERR_NOTFOUND for an unknown series.
 */
int store_read_history(struct store *s, const char *twin, const char *prop, int64_t from,
    int64_t to, int limit, int newest,
    int (*cb)(void *arg, const struct store_point *p), void *arg);
/* Numeric buckets of `step_ms`, aligned to multiples of it, ascending. */
int store_read_buckets(struct store *s, const char *twin, const char *prop, int64_t from,
    int64_t to, int64_t step_ms, int limit,
    int (*cb)(void *arg, const struct store_bucket *b), void *arg);

/* The last SQLite error text of this connection, for logs. */
const char *store_errmsg(struct store *s);

#endif
