/*
 * Minute and hour rollups in two places: rows (rollup_1m, rollup_1h),
 * where the batches merge into them, and blocks (rollup_block.h) for
 * the rows under retention's raw edge, which no point changes any more:
 * a point older than that edge goes into no rollup (history.h). So a
 * block is written once and never again until retention deletes it
 * whole. Readers see both through rblocks_read; the writer side
 * (packing, trimming) runs on the engine's thread inside retention's
 * transactions.
 */
#ifndef TW_ROLLUP_BLOCKS_H
#define TW_ROLLUP_BLOCKS_H

#include <stdint.h>

#include "history.h"
#include "store.h"

/* A series' rows of a tier pack once this many wait, or one waits a day past the edge. */
#define RBLOCKS_PACK_MIN	256
#define RBLOCKS_PACK_WAIT_MS	86400000LL
/*
 * A block spans at most 4 days of minutes or 32 days of hours: retention
 * deletes blocks whole, so a block across its edge outlives the tier's
 * age by up to that much (readers stop at the edge). Shorter spans make
 * a sparse series' blocks smaller than a page, which wastes the rest.
 */
#define RBLOCKS_SPAN_MINUTE_MS	(4 * 86400000LL)
#define RBLOCKS_SPAN_HOUR_MS	(32 * 86400000LL)

/* ---- the writer (the engine's thread; a transaction open) ---- */

struct rblocks;

/* Statements on the writer `s`; NULL on failure. */
struct rblocks *rblocks_open(struct store *s);
void rblocks_close(struct rblocks *b);
/*
 * Packs up to RBLOCK_MAX rows of tier t (TIER_MINUTE or TIER_HOUR) of
 * `series` older than `edge`, and newer than its last block, into a new
 * block, when there are enough (see above). *moved: rows packed.
 */
int rblocks_pack(struct rblocks *b, enum history_tier t, int64_t series, int64_t edge,
    int64_t *moved);
/*
 * Deletes whole blocks of tier t of `series` that end before `cutoff`,
 * until about `max` rows went; *deleted counts the rows, *done is 1 when
 * none is left. A block across the cutoff stays whole: readers stop at
 * the tier's edge.
 */
int rblocks_trim(struct rblocks *b, enum history_tier t, int64_t series, int64_t cutoff,
    int64_t max, int64_t *deleted, int *done);

/* ---- readers (any connection) ---- */

/*
 * Rows of tier t of `series` with ts in [from, to], rows and blocks
 * merged, ascending, in one read transaction. A callback that returns
 * non-zero stops the read (TW_OK).
 */
int rblocks_read(struct store *s, enum history_tier t, int64_t series, int64_t from, int64_t to,
    int (*cb)(void *arg, const struct history_bucket *row), void *arg);

#endif
