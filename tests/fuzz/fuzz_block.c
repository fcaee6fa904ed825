/*
 * Fuzzes blocks of points (block.h) two ways at once.
 *
 * The input as a block: block_decode must refuse it or give points the
 * encoder accepts (times strictly ascending, values finite), and those
 * points must encode within block_bound(n) and decode back as themselves,
 * bit for bit.
 *
 * The input as a recipe of points, each a control byte and its operands:
 * bits 0-1 the time step (0 the step before, 1 one byte, 2 four bytes, 3
 * eight bytes: any uint64, wrapping), bits 2-4 the value (0 the one before,
 * 1 two bytes as hundredths, 2 four bytes with bits 5-7 decimals, 3 the
 * eight raw bytes of a double, 4 the one before with a few bits flipped,
 * 5 -0.0, 6 the one before plus a signed byte, 7 a ten-thousandth). Points
 * whose time does not ascend or whose value is not finite are dropped:
 * the rest must encode within block_bound(n), decode back bit for bit,
 * and every prefix tried of the block must be refused.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int64_t ts[BLOCK_MAX], ts2[BLOCK_MAX];
static double v[BLOCK_MAX], v2[BLOCK_MAX];
static uint8_t out[BLOCK_MAX * 24 + 64];

static const double pow10s[8] = { 1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7 };

static uint64_t
take(const uint8_t *data, size_t size, size_t *off, int bytes)
{
	uint64_t x = 0;

	for (int i = 0; i < bytes && *off < size; i++)
		x |= (uint64_t)data[(*off)++] << (8 * i);
	return x;
}

/* Decodes an exact-size copy, so that ASan sees any read past `len`. */
static int
decode_copy(const uint8_t *in, size_t len, int64_t *t, double *x)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);
	int n;

	if (copy == NULL)
		abort();
	if (len > 0)
		memcpy(copy, in, len);
	n = block_decode(copy, len, t, x);
	free(copy);
	return n;
}

/*
 * t/x[0..n) are valid points: they encode within the bound, decode back
 * bit for bit, and a few prefixes of their block are refused.
 */
static void
check_roundtrip(const int64_t *t, const double *x, int n)
{
	size_t len, bound = block_bound(n);

	len = block_encode(t, x, n, out);
	if (len == 0 || len > bound)
		abort();
	if (block_decode(out, len, ts2, v2) != n)
		abort();
	if (memcmp(ts2, t, (size_t)n * sizeof(*t)) != 0 ||
	    memcmp(v2, x, (size_t)n * sizeof(*x)) != 0)
		abort();
	if (decode_copy(out, len - 1, ts2, v2) != -1 || decode_copy(out, len / 2, ts2, v2) != -1)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t step = 1000;
	size_t off = 0;
	double prev;
	int n;

	/* As a block. */
	n = block_decode(data, size, ts, v);
	if (n != -1) {
		if (n < 1 || n > BLOCK_MAX)
			abort();
		for (int i = 0; i < n; i++)
			if (!isfinite(v[i]) || (i > 0 && ts[i] <= ts[i - 1]))
				abort();
		check_roundtrip(ts, v, n);
	}

	/* As a recipe. */
	if (block_encode(ts, v, 0, out) != 0)
		abort();
	if (size < 8)
		return 0;
	ts[0] = (int64_t)take(data, size, &off, 8);
	v[0] = prev = 0;
	n = 0;
	while (off < size && n < BLOCK_MAX) {
		uint8_t c = data[off++];
		uint64_t t, u;
		double x;

		switch (c & 3) {
		case 0: break;
		case 1: step = take(data, size, &off, 1); break;
		case 2: step = take(data, size, &off, 4); break;
		default: step = take(data, size, &off, 8); break;
		}
		switch (c >> 2 & 7) {
		case 0: x = prev; break;
		case 1: x = (double)(int16_t)take(data, size, &off, 2) / 100; break;
		case 2: x = (double)(int32_t)take(data, size, &off, 4) / pow10s[c >> 5]; break;
		case 3: u = take(data, size, &off, 8); memcpy(&x, &u, 8); break;
		case 4:
			memcpy(&u, &prev, 8);
			u ^= take(data, size, &off, 1) << (8 * (c >> 5));
			memcpy(&x, &u, 8);
			break;
		case 5: x = -0.0; break;
		case 6: x = prev + (int8_t)take(data, size, &off, 1); break;
		default: x = prev + 1e-4; break;
		}
		if (!isfinite(x))
			continue;
		if (n == 0) {
			/* The first point's time is the 8 bytes up front. */
			v[n++] = prev = x;
			continue;
		}
		t = (uint64_t)ts[n - 1] + step;
		if ((int64_t)t <= ts[n - 1])
			continue;
		ts[n] = (int64_t)t;
		v[n++] = prev = x;
	}
	if (n == 0)
		return 0;
	check_roundtrip(ts, v, n);
	/* The same points with the last time not ascending, or the last value NaN, are refused. */
	if (n >= 2) {
		int64_t keep = ts[n - 1];

		ts[n - 1] = ts[n - 2];
		if (block_encode(ts, v, n, out) != 0)
			abort();
		ts[n - 1] = keep;
		v[n - 1] = NAN;
		if (block_encode(ts, v, n, out) != 0)
			abort();
	}
	return 0;
}
