/*
 * History in tiers: raw points, and rollups per minute and per hour
 * (count, sum, min, max, first and last with their ts) kept in the same
 * commit as the raw points they summarise. The writer side belongs to
 * the engine's thread; the readers are REST threads, each with its own
 * store connection.
 */
#ifndef TW_HISTORY_H
#define TW_HISTORY_H

#include <stdint.h>

#include "store.h"
#include "value.h"

enum history_tier { TIER_RAW, TIER_MINUTE, TIER_HOUR, TIER__COUNT };

#define HISTORY_MINUTE_MS	60000LL
#define HISTORY_HOUR_MS		3600000LL

/* "raw", "1m", "1h": the names in `trimmed`, the API and the README. */
const char *history_tier_name(enum history_tier t);
/* The start of the bucket of `step_ms` that holds `ts` (aligned to the epoch, also for ts < 0). */
int64_t history_bucket_of(int64_t ts, int64_t step_ms);

/* ---- the writer (the engine's thread) ---- */

struct history;

/* Statements on the writer `s`, and the batch's rollup accumulator. NULL (logged) on failure. */
struct history *history_open(struct store *s);
void history_close(struct history *h);
/*
 * One point, in the open transaction. *fresh is 0 when it was there
 * already with this value (a redelivery: nothing changes), else 1; 2 for
 * a number under retention's edge, which is not stored, so that whether
 * it is a redelivery cannot be told. A new
 * number is added to the batch's rollups; a value that replaces another
 * at the same ts has its minute and hour recomputed at the flush.
 */
int history_put(struct history *h, int64_t series, int64_t ts, const struct tw_val *v,
    int *fresh);
/*
 * Retention's edges. A point older than `floor_ts` (raw numbers' edge,
 * the disk budget's included) is stored as a row until the next trim,
 * which rules see and readers do not, but goes into no rollup, since a
 * redelivery of it cannot be told from a new point; so does a
 * correction older than `redo_floor_ts` (the raw edge, the disk budget's
 * included), whose minute has lost rows. Both are counted
 * (twind_values_too_old_total).
 */
/* `pack_edge`: points older may be in blocks (history_blocks.h), so they are looked up there. */
void history_set_floor(struct history *h, int64_t floor_ts, int64_t redo_floor_ts,
    int64_t pack_edge);
/* Writes the batch's rollups; called before the commit, inside the transaction. */
int history_flush(struct history *h);
/* The batch was rolled back: its rollups are forgotten. */
void history_rollback(struct history *h);

/* ---- readers ---- */

/* Tier t's retention edge (`trimmed`): nothing older is history; INT64_MIN when none. */
int history_edge(struct store *s, enum history_tier t, int64_t *edge);

struct history_bucket {
	int64_t ts;		/* the bucket's start */
	int64_t count;
	double sum, min, max;
	int64_t first_ts, last_ts;
	double first, last;
};

/* Which tier answers a bucketed query, and the bucket width it answers with. */
struct history_plan {
	enum history_tier tier;
	int64_t step_ms;	/* the asked step, or the tier's if that is coarser (a fallback) */
	int64_t from, to;	/* widened to whole buckets */
};

/*
 * Plans a query of `step_ms` buckets over [from, to]: the coarsest tier
 * whose rows divide the step, unless its retention edge (in `trimmed`)
 * is after `from`; then the next coarser one that still holds it.
 */
int history_plan(struct store *s, int64_t step_ms, int64_t from, int64_t to,
    struct history_plan *plan);
/*
 * Numeric buckets of `series` as `plan` says, ascending; `cb` returns 0
 * to go on. At most `limit` buckets; TW_ERR_FULL when it stopped early,
 * before the bucket it was folding, because the page had folded 2
 * million rows; TW_ERR_REFUSED when the first bucket alone holds more.
 */
int history_buckets(struct store *s, int64_t series, const struct history_plan *plan,
    int limit, int (*cb)(void *arg, const struct history_bucket *b), void *arg);

/*
 * Raw history of (twin, prop) in [from, to], ascending by ts: the oldest
 * `limit` points, or with `newest` the newest ones, from rows and blocks.
 * Returns TW_ERR_NOTFOUND for an unknown series.
 */
int history_read(struct store *s, const char *twin, const char *prop, int64_t from, int64_t to,
    int limit, int newest, int (*cb)(void *arg, const struct store_point *p), void *arg);

#endif
