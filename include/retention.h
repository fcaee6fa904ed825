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
 * no transaction may be open. `now_ms` is the wall clock, `newest_ts` the
 * newest ts stored (0: unknown): ages count from the earlier of now and a
 * day past the newest data. Returns 1 while more is to be trimmed, 0 when
 * caught up, or a negated TW_ERR_* (-TW_ERR_FULL: the disk is full).
 */
int retention_step(struct retention *r, int64_t now_ms, int64_t newest_ts);
/* No tier keeps a point older than this (a raw or minute edge): writing one is pointless. */
int64_t retention_floor(const struct retention *r);
/* The newest ts in the database when it was opened. */
int64_t retention_newest(const struct retention *r);
/* [storage] disk_reserve, at most an eighth of the file system (a larger one would never clear). */
int64_t retention_reserve(const struct retention *r);

/* A small write in its own transaction: TW_OK when SQLite can write again after a full disk. */
int retention_probe(struct retention *r, int64_t now_ms);

/* Bytes free for twind: the file system's, and the free pages inside the database; -1 unknown. */
int64_t retention_disk_free(struct retention *r);

/* Rows deleted so far, per what (for metrics and the README's figures). */
uint64_t retention_trimmed_rows(const struct retention *r);

#endif
