/*
 * Fuzzes rollup blocks (rollup_block.h). The first byte picks the
 * buckets' width (a minute, an hour, or 1..64 ms), the rest is a block:
 * rblock_decode must refuse it or give rows the encoder accepts, and
 * those rows must encode within rblock_bound(n) and decode back as
 * themselves, bit for bit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rollup_block.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct history_bucket rows[RBLOCK_MAX], back[RBLOCK_MAX];
static struct rblock_scratch scratch;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t width;
	uint8_t *out;
	size_t len;
	int n;

	if (size < 1)
		return 0;
	width = data[0] == 0 ? 60000 : data[0] == 1 ? 3600000 : 1 + data[0] % 64;
	n = rblock_decode(data + 1, size - 1, width, rows, &scratch);
	if (n < 0)
		return 0;
	if (n < 1 || n > RBLOCK_MAX || rblock_valid(rows, n, width) != n)
		abort();
	if ((out = malloc(rblock_bound(n))) == NULL)
		return 0;
	len = rblock_encode(rows, n, width, out);
	if (len == 0 || len > rblock_bound(n) ||
	    rblock_decode(out, len, width, back, &scratch) != n ||
	    memcmp(rows, back, (size_t)n * sizeof(rows[0])) != 0)
		abort();
	free(out);
	return 0;
}
