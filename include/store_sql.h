/*
 * For the modules that own tables of their own in the store's database
 * (history.c, retention.c): its SQLite handle and the store's way of
 * binding a value, reading one back and running a statement.
 */
#ifndef TW_STORE_SQL_H
#define TW_STORE_SQL_H

#include <sqlite3.h>

#include "store.h"

sqlite3 *store_handle(struct store *s);
/* A value as its storage class: REAL a number, INTEGER a boolean, TEXT a string. */
void store_bind_value(sqlite3_stmt *st, int col, const struct tw_val *v);
/* The value in column `col` of the current row; a string is borrowed until the next step. */
void store_column_value(sqlite3_stmt *st, int col, struct tw_val *v);
/* Prepares `n` persistent statements of `sql` into `st`; TW_ERR_DB (logged) if one fails. */
int store_prepare_all(struct store *s, const char *const *sql, int n, sqlite3_stmt **st);
/* A one-off read of a series' range: `sql` prepared with ?1 series, ?2 from and ?3 to bound. */
int store_prepare_range(struct store *s, const char *sql, int64_t series, int64_t from,
    int64_t to, sqlite3_stmt **st);
/* Runs a statement that returns no rows, then resets it; TW_ERR_DB (logged) on failure. */
int store_step_done(struct store *s, sqlite3_stmt *st);

#endif
