/*
 * Retention and the disk budget, run by the engine's thread between
 * batches in small transactions of its own: each history tier, alerts,
 * commands and the quarantine are trimmed to their age; over
 * `max_db_size` the oldest raw rows go first, then the oldest minutes;
 * freed pages go back to the file system where that pays. It also reads
 * the free space on the database's file system against the reserve.
 */
#ifndef TW_RETENTION_H
#define TW_RETENTION_H

#include <stdint.h>

#include "conf.h"
#include "store.h"

struct retention;

/* On the writer `s` (borrowed) with the [history] and [storage] settings. NULL on failure. */
struct retention *retention_open(struct store *s, const struct conf *c, const char *db_path);
void retention_close(struct retention *r);

/*
 * One small step (at most a few thousand rows) in its own transaction;
 * no transaction may be open. Returns 1 while more is to be trimmed, 0
 * when caught up, or TW_ERR_DB (negated: -TW_ERR_DB) when it failed.
 */
int retention_step(struct retention *r, int64_t now_ms);

/* A small write in its own transaction: TW_OK when SQLite can write again after a full disk. */
int retention_probe(struct retention *r, int64_t now_ms);

/* Bytes free for twind on the database's file system, or -1 when unknown. */
int64_t retention_disk_free(const struct retention *r);

/* Rows deleted so far, per what (for metrics and the README's figures). */
uint64_t retention_trimmed_rows(const struct retention *r);

#endif
