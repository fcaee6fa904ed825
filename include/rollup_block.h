/*
 * A rollup block: up to RBLOCK_MAX rollup rows of one series and tier
 * (minutes or hours), ts strictly ascending and on the tier's whole
 * buckets, packed into bytes. Pure code, no state: the engine's thread
 * encodes, any thread decodes.
 *
 * Each column is a block of points (block.h) over the rows' ts, so a
 * steady series costs a byte or two a column. A row of one reading (a
 * series sparser than its tier: a minute of a 5-minute sensor) is that
 * reading alone, its value and its offset in the bucket: the count, the
 * sum, the min and the max and the last are the same number and are not
 * stored again.
 */
#ifndef TW_ROLLUP_BLOCK_H
#define TW_ROLLUP_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "block.h"
#include "history.h"

#define RBLOCK_MAX	1024	/* rows per block: one decode is 72 KiB of rows */

/* Column buffers of one decode (room for BLOCK_MAX points): 64 KiB, the caller's. */
struct rblock_scratch {
	int64_t ts[BLOCK_MAX];
	double v[BLOCK_MAX];
};

/* How many of the first n rows keep the rules of rblock_encode (below). */
int rblock_valid(const struct history_bucket *rows, int n, int64_t width);
/* Bytes that rblock_encode may need for n rows. */
size_t rblock_bound(int n);
/*
 * Encodes n rows (1..RBLOCK_MAX) of buckets `width` ms wide into out
 * (room for rblock_bound(n)). The rows: ts strictly ascending and a
 * multiple of width, count >= 1, first_ts <= last_ts both inside the
 * bucket, values finite. Returns the bytes written, or 0 when the rows
 * break those rules.
 */
size_t rblock_encode(const struct history_bucket *rows, int n, int64_t width, uint8_t *out);
/*
 * Decodes a block of buckets `width` ms wide into rows (room for
 * RBLOCK_MAX). Returns the number of rows, or -1 when `in` is not a
 * whole, valid block (any bytes may come in: the fuzzer sends them).
 * Every row given back keeps the rules above.
 */
int rblock_decode(const uint8_t *in, size_t len, int64_t width, struct history_bucket *rows,
    struct rblock_scratch *s);

#endif
