/*
 * Raw history in two places: the newest hour in rows of `history` (one
 * per point, where redeliveries and corrections are cheap), and numbers
 * older than that packed per series into blocks of `history_block`
 * (block.h), about a tenth of the bytes. Every point is in exactly one
 * place. Readers see both through hblocks_read; the writer side (packing,
 * lookups of late points, trimming) runs on the engine's thread inside
 * its transactions.
 */
#ifndef TW_HISTORY_BLOCKS_H
#define TW_HISTORY_BLOCKS_H

#include <stdint.h>

#include "store.h"

/* Numbers older than this (by retention's clock) are packed. */
#define HBLOCKS_PACK_AGE_MS	3600000LL
/* A series packs once it has this many such points, or one a day older than the edge. */
#define HBLOCKS_PACK_MIN	256
#define HBLOCKS_PACK_WAIT_MS	86400000LL
/*
 * A block across retention's edge is kept whole while its oldest point
 * is at most this far under the edge, then cut once: a sparse series' or
 * a backlog's block may span days, and on disk nothing may outlive the
 * age by more than this.
 */
#define HBLOCKS_KEEP_MS		86400000LL

/* ---- the writer (the engine's thread; a transaction open) ---- */

struct hblocks;

/* Statements on the writer `s`; NULL on failure. */
struct hblocks *hblocks_open(struct store *s);
void hblocks_close(struct hblocks *b);
/* Whether a block of `series` holds a point at `ts` (*found), and its value (*old). */
int hblocks_find(struct hblocks *b, int64_t series, int64_t ts, int *found, double *old);
/*
 * Whether `ts` falls in the range of a block of `series` that was set
 * aside (it did not decode): the rollups may count a point there already.
 */
int hblocks_lost(struct hblocks *b, int64_t series, int64_t ts, int *lost);
/* The packed point at `ts` takes value *v, or with v NULL leaves the block. */
int hblocks_set(struct hblocks *b, int64_t series, int64_t ts, const double *v);
/*
 * Packs up to BLOCK_MAX row points of `series` older than `edge` into
 * blocks (merging with a block they fall into), when there are enough
 * (see above). *moved: points packed, 0 when the series has none to pack.
 * Rows under `floor` (retention's raw edge) wait for their trim: packed,
 * they would write a block across the edge again.
 */
int hblocks_pack(struct hblocks *b, int64_t series, int64_t floor, int64_t edge,
    int64_t *moved);
/*
 * Removes packed points of `series` older than `cutoff`, at most about
 * `max` of them; *deleted counts them, *done is 1 when none older is left.
 */
int hblocks_trim(struct hblocks *b, int64_t series, int64_t cutoff, int64_t max,
    int64_t *deleted, int *done);

/* ---- readers (any connection) ---- */

/*
 * Points of `series` in [from, to], rows and blocks merged, ascending:
 * the oldest `limit`, or with `newest` the newest `limit`. A callback
 * that returns non-zero stops the read, and that is returned. One read
 * transaction, so that a packing meanwhile is seen whole or not at all.
 */
int hblocks_read(struct store *s, int64_t series, int64_t from, int64_t to, int64_t limit,
    int newest, int (*cb)(void *arg, const struct store_point *p), void *arg);

#endif
