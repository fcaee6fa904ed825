/*
 * Inside the store, for store.c, store_write.c and store_read.c only:
 * the statements prepared at open, the handle that holds them, and the
 * helpers the three share. Every other module goes through store.h (or
 * store_sql.h for tables of its own).
 */
#ifndef TW_STORE_DB_H
#define TW_STORE_DB_H

#include <sqlite3.h>

#include "store.h"
#include "store_sql.h"

enum stmt_id {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
	ST_SERIES_ADD, ST_SERIES_PUT, ST_TWIN_PUT,
	ST_QUARANTINE_PUT, ST_QUARANTINE_TRIM,
	ST_DESIRED_PUT, ST_DESIRED_DEL, ST_ALERT_ADD, ST_ALERT_PUT, ST_ALERT_GET, ST_ALERT_CLEAR,
	ST_CMD_PUT, ST_CMD_ANSWER, ST_CMDS_OVERDUE, ST_CMD_GET, ST_CMD_LAST, ST_CMD_MAX_ID, ST_TWIN_EXISTS,
	ST_LOAD_TWINS, ST_LOAD_SERIES, ST_LOAD_DESIRED, ST_LOAD_ALERTS, ST_LOAD_CMDS,
	ST_READ_TWINS, ST_READ_TWINS_PARENT, ST_READ_TWIN, ST_READ_CHILDREN,
	ST_READ_REPORTED, ST_SERIES_FIND,
	ST_READ_DESIRED, ST_READ_ALERTS_TWIN, ST_SNAP_BEGIN, ST_SNAP_END,
	ST_READ_ALERTS, ST_READ_COMMANDS,
	ST__COUNT
};

struct store {
	sqlite3 *db;
	int writer;
	sqlite3_stmt *st[ST__COUNT];
};

/* Binds `s`, or NULL when it is NULL. */
void store_bind_text_or_null(sqlite3_stmt *st, int col, const char *s);
/* Binds `ts`, or NULL when it is not a time (0 or less). */
void store_bind_ts_or_null(sqlite3_stmt *st, int col, int64_t ts);
/* The series row in the current row of `st` (id, twin, property, ts, value, out_of_range). */
void store_series_row(sqlite3_stmt *st, struct store_series_row *r);

#endif
