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
 * no transaction may be open. `wall_ms` is the wall clock; ages count by
 * retention's own clock (see retention_clock in retention.c). Returns 1
 * while more is to be trimmed, 0 when caught up, or a negated TW_ERR_*
 * (-TW_ERR_FULL: the disk is full).
 */
int retention_step(struct retention *r, int64_t wall_ms);
/*
 * The raw edge of numbers (by age or by the disk budget, never moving
 * back): a point older than this goes into no rollup, since a redelivery
 * of a trimmed point could not be told from a new one.
 */
int64_t retention_floor(const struct retention *r);
/* The raw edge, the budget's included: a correction older than this rebuilds no minute. */
int64_t retention_redo_floor(const struct retention *r);
/* Points older than this may be packed into blocks (history_blocks.h). */
int64_t retention_pack_edge(const struct retention *r);
/* [storage] disk_reserve, at most an eighth of the file system (a larger one would never clear). */
int64_t retention_reserve(const struct retention *r);

/* A small write in its own transaction: TW_OK when SQLite can write again after a full disk. */
int retention_probe(struct retention *r, int64_t now_ms);

/*
 * Bytes free on the database's file system (-1 unknown), and with
 * `with_free_pages` the pages free inside the database too: room for
 * twind to resume in, but not for the other users of the disk.
 */
int64_t retention_disk_free(struct retention *r, int with_free_pages);

/* Rows deleted so far, per what (for metrics and the README's figures). */
uint64_t retention_trimmed_rows(const struct retention *r);
/* Points packed from rows into blocks so far. */
uint64_t retention_packed_points(const struct retention *r);
/* Rollup rows packed into blocks so far. */
uint64_t retention_packed_rollups(const struct retention *r);

#endif
