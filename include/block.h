/*
 * A block: up to BLOCK_MAX numeric points of one series, times strictly
 * ascending, packed into bytes. Pure code, no state: the engine's thread
 * encodes, any thread decodes.
 *
 * Times are stored as deltas of deltas, values either as decimals (the
 * smallest number of decimals, at most 6, that gives every value back
 * bit for bit: an integer delta each) or, when no such number exists,
 * as the XOR of each value with the one before. A run of zeros (a steady
 * rate, an unchanged value) takes two or three bytes. A steady 1 Hz
 * series with two decimals costs 1 to 3 bytes a point.
 */
#ifndef TW_BLOCK_H
#define TW_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#define BLOCK_MAX	4096	/* points per block: one decode is 64 KiB of arrays */

/* Bytes that block_encode may need for n points. */
size_t block_bound(int n);
/*
 * Encodes n points (1..BLOCK_MAX; ts strictly ascending, values finite)
 * into out (room for block_bound(n)). Returns the bytes written, or 0
 * when the points break those rules.
 */
size_t block_encode(const int64_t *ts, const double *v, int n, uint8_t *out);
/*
 * Decodes a block into ts and v (room for BLOCK_MAX each). Returns the
 * number of points, or -1 when `in` is not a whole, valid block (any
 * bytes may come in: the fuzzer sends them).
 */
int block_decode(const uint8_t *in, size_t len, int64_t *ts, double *v);

#endif
