/* Unit tests of blocks: round trips bit for bit, sizes, the encoder's rules, the decoder's refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "block.h"

#define T0	1800000000000LL		/* ms, in 2027 */
#define GUARD	64			/* bytes past block_bound that must stay untouched */
#define FILL	0xa5

static int64_t ts[BLOCK_MAX + 1], dts[BLOCK_MAX];
static double v[BLOCK_MAX + 1], dv[BLOCK_MAX];
static uint8_t blk[BLOCK_MAX * 24 + 64];

/* splitmix64: the same sequence on every run. */
static uint64_t rng;

static uint64_t
rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* In [lo, hi]. */
static int64_t
rnd_in(int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static uint64_t
bits(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return u;
}

static double
from_bits(uint64_t u)
{
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

/* A random finite double of any exponent, sign and mantissa. */
static double
rnd_double(void)
{
	double d;

	do
		d = from_bits(rnd());
	while (!isfinite(d));
	return d;
}

/* A finite value whose XOR with `prev` has a random run of bytes: records of every length. */
static double
rnd_xor_step(double prev)
{
	for (;;) {
		int lo = (int)(rnd() % 8), hi = lo + (int)(rnd() % (uint64_t)(8 - lo));
		uint64_t x = 0;
		double d;

		if (rnd() % 6 == 0)
			return prev;	/* an XOR of 0 */
		for (int i = lo; i <= hi; i++)
			x |= (rnd() & 0xff) << (8 * i);
		x |= (uint64_t)1 << (8 * lo);
		x |= (uint64_t)1 << (8 * hi);
		d = from_bits(bits(prev) ^ x);
		if (isfinite(d))
			return d;
	}
}

/*
 * Encodes ts/v[0..n) into a buffer of exactly block_bound(n) bytes and a
 * guard, checks that nothing was written past what was returned, decodes
 * and compares bit for bit. Returns the block's length; the block is left
 * in blk.
 */
static size_t
roundtrip(const int64_t *t, const double *x, int n)
{
	size_t bound = block_bound(n), len;
	uint8_t *out = malloc(bound + GUARD);
	int got;

	assert_non_null(out);
	memset(out, FILL, bound + GUARD);
	len = block_encode(t, x, n, out);
	assert_true(len > 0);
	if (len > bound)
		fail_msg("n %d: %zu bytes, bound %zu", n, len, bound);
	for (size_t i = len; i < bound + GUARD; i++)
		if (out[i] != FILL)
			fail_msg("n %d: byte %zu written past the %zu returned", n, i, len);
	assert_true(len <= sizeof(blk));
	memcpy(blk, out, len);
	free(out);

	memset(dts, 0, sizeof(dts));
	memset(dv, 0, sizeof(dv));
	got = block_decode(blk, len, dts, dv);
	assert_int_equal(got, n);
	assert_memory_equal(dts, t, (size_t)n * sizeof(*t));
	for (int i = 0; i < n; i++)
		if (memcmp(&dv[i], &x[i], sizeof(x[i])) != 0)
			fail_msg("n %d: v[%d] %.17g (%016llx) came back as %.17g (%016llx)", n, i,
			    x[i], (unsigned long long)bits(x[i]), dv[i], (unsigned long long)bits(dv[i]));
	return len;
}

/* Decodes a copy of exactly `len` bytes, so that any read past them is an ASan report. */
static int
decode_exact(const uint8_t *in, size_t len)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);
	int got;

	assert_non_null(copy);
	if (len > 0)
		memcpy(copy, in, len);
	got = block_decode(copy, len, dts, dv);
	free(copy);
	return got;
}

/* Every proper prefix of blk[0..len) is refused. */
static void
assert_prefixes_refused(size_t len)
{
	for (size_t k = 0; k < len; k++)
		if (decode_exact(blk, k) != -1)
			fail_msg("the %zu-byte prefix of a %zu-byte block decoded", k, len);
}

static void
steady_times(int n, int64_t start, int64_t step)
{
	for (int i = 0; i < n; i++)
		ts[i] = start + i * step;
}

/* Hand-made blocks, to break one rule at a time. */
struct hb {
	uint8_t b[256];
	size_t n;
};

static void
hb_byte(struct hb *h, unsigned x)
{
	assert_true(h->n < sizeof(h->b));
	h->b[h->n++] = (uint8_t)x;
}

static void
hb_varint(struct hb *h, uint64_t x)
{
	while (x >= 0x80) {
		hb_byte(h, (unsigned)(x & 0x7f) | 0x80);
		x >>= 7;
	}
	hb_byte(h, (unsigned)x);
}

/* A signed token, zigzagged. */
static void
hb_signed(struct hb *h, int64_t x)
{
	uint64_t u = (uint64_t)x;

	hb_varint(h, (u << 1) ^ (0 - (u >> 63)));
}

/* A run of k zero tokens. */
static void
hb_zeros(struct hb *h, uint64_t k)
{
	hb_varint(h, 0);
	hb_varint(h, k - 1);
}

static void
hb_double(struct hb *h, double d)
{
	uint8_t raw[8];

	memcpy(raw, &d, 8);
	for (int i = 0; i < 8; i++)
		hb_byte(h, raw[i]);
}

/* ---- round trips ---- */

static void
test_steady_1hz_two_decimals(void **state)
{
	int64_t m = 2137;	/* 21.37 */
	size_t len;

	(void)state;
	rng = 1;
	steady_times(BLOCK_MAX, T0, 1000);
	for (int i = 0; i < BLOCK_MAX; i++) {
		/* A sensor drifting by at most 0.05 a second, at times unchanged. */
		if (rnd() % 4 != 0)
			m += rnd_in(-5, 5);
		v[i] = (double)m / 100;
	}
	v[0] = 21.37;
	len = roundtrip(ts, v, BLOCK_MAX);
	assert_int_equal(blk[0], 1);	/* decimals */
	assert_int_equal(blk[1], 2);
	print_message("steady 1 Hz, 2 decimals: %zu bytes for %d points, %.3f bytes a point\n",
	    len, BLOCK_MAX, (double)len / BLOCK_MAX);
	assert_true(len <= 3 * BLOCK_MAX);
	assert_prefixes_refused(len);
}

static void
test_noisy_series(void **state)
{
	int64_t prev = T0;
	size_t len;

	(void)state;
	rng = 2;
	/* Jittery 1 Hz times, values anywhere in 15.00 .. 25.00 each reading. */
	for (int i = 0; i < BLOCK_MAX; i++) {
		ts[i] = prev + (i > 0 ? rnd_in(950, 1050) : 0);
		prev = ts[i];
		v[i] = (double)rnd_in(1500, 2500) / 100;
	}
	len = roundtrip(ts, v, BLOCK_MAX);
	assert_int_equal(blk[0], 1);
	assert_int_equal(blk[1], 2);
	print_message("noisy, jittery times, 2 decimals: %zu bytes for %d points, %.3f bytes a point\n",
	    len, BLOCK_MAX, (double)len / BLOCK_MAX);
	assert_true(len <= 5 * BLOCK_MAX);

	/* And full-precision noise: the XOR records. */
	for (int i = 0; i < BLOCK_MAX; i++)
		v[i] = 20 + (double)(rnd() >> 11) / 9007199254740992.0;
	len = roundtrip(ts, v, BLOCK_MAX);
	assert_int_equal(blk[0], 2);
	print_message("noisy, jittery times, full doubles: %zu bytes for %d points, %.3f bytes a point\n",
	    len, BLOCK_MAX, (double)len / BLOCK_MAX);
}

static void
test_constant_values(void **state)
{
	static const double c[] = { 0, 42.125, 0.1, -7, 1e15, 3.14159265358979 };
	size_t len;

	(void)state;
	steady_times(BLOCK_MAX, T0, 1000);
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		for (int i = 0; i < BLOCK_MAX; i++)
			v[i] = c[k];
		len = roundtrip(ts, v, BLOCK_MAX);
		/* Both token streams are one run of zeros. */
		if (blk[0] == 1)
			assert_true(len <= 32);
		else
			assert_true(len <= 24 + (size_t)BLOCK_MAX);	/* one byte an XOR of 0 */
	}
	/* Constant 42.125 needs 3 decimals and takes a handful of bytes (21: 6 of them T0). */
	for (int i = 0; i < BLOCK_MAX; i++)
		v[i] = 42.125;
	len = roundtrip(ts, v, BLOCK_MAX);
	assert_int_equal(blk[0], 1);
	assert_int_equal(blk[1], 3);
	assert_true(len <= 24);
}

static void
test_integers(void **state)
{
	size_t len;

	(void)state;
	rng = 3;
	steady_times(1000, T0, 60000);
	for (int i = 0; i < 1000; i++)
		v[i] = (double)rnd_in(-1000000, 1000000);
	len = roundtrip(ts, v, 1000);
	assert_int_equal(blk[0], 1);
	assert_int_equal(blk[1], 0);
	assert_true(len <= 4 * 1000);

	/* The edges of exact integers in a double, and counters. */
	v[0] = 9007199254740991.0;	/* 2^53 - 1 */
	v[1] = -9007199254740991.0;
	v[2] = 0;
	v[3] = 4503599627370496.0;	/* 2^52 */
	v[4] = 1;
	roundtrip(ts, v, 5);
	assert_int_equal(blk[0], 1);
	assert_int_equal(blk[1], 0);
	for (int i = 0; i < 1000; i++)
		v[i] = (double)i * 17;
	roundtrip(ts, v, 1000);
	assert_int_equal(blk[1], 0);

	/* 2^53 and beyond are refused as decimals, yet come back whole. */
	v[0] = 9007199254740992.0;
	v[1] = 1e18;
	v[2] = -1e18;
	v[3] = 18446744073709551616.0;
	roundtrip(ts, v, 4);
	assert_int_equal(blk[0], 2);
}

static void
test_negative_and_negative_zero(void **state)
{
	static const double neg[] = { -0.5, -1.25, -100, -0.01, -273.15, -1e-6, -999999.999999 };
	size_t n = sizeof(neg) / sizeof(neg[0]);

	(void)state;
	steady_times((int)n, T0, 1000);
	memcpy(v, neg, sizeof(neg));
	roundtrip(ts, v, (int)n);
	assert_int_equal(blk[0], 1);
	assert_int_equal(blk[1], 6);

	/*
	 * -0.0 is no number of decimals (0 / 10^d is +0.0): the decimals carry
	 * it as 0 and the list after them gives the sign back, so one -0.0
	 * (a printf of -0.04 as "%.1f") does not turn a block to XOR.
	 */
	v[0] = -0.0;
	roundtrip(ts, v, 1);
	assert_int_equal(blk[0], 1);
	assert_true(signbit(dv[0]));
	v[0] = 1.5;
	v[1] = -0.0;
	v[2] = 0.0;
	v[3] = -0.0;
	v[4] = -2.25;
	roundtrip(ts, v, 5);
	assert_int_equal(blk[0], 1);
	assert_true(signbit(dv[1]) && !signbit(dv[2]) && signbit(dv[3]));
	{
		/* The list refused where the encoder could not have written it. */
		static const uint8_t bad[][12] = {
			/* fmt, d, n = 2, ts 0, dod 1, value 0, delta 0 (run of 1), list: */
			{ 1, 0, 2, 0, 2, 0, 0, 0, 3, 0, 0, 0 },	/* 3 entries for 2 points */
			{ 1, 0, 2, 0, 2, 0, 0, 0, 1, 2, 0, 0 },	/* index 2 of 2 */
			{ 1, 0, 2, 0, 2, 0, 0, 0, 2, 0, 0, 0 },	/* index 0, then 1 ... */
			{ 1, 0, 2, 2, 2, 2, 0, 0, 1, 0, 0, 0 },	/* -0.0 where the value is 1 */
		};
		static const size_t len_of[] = { 12, 10, 11, 10 };

		/* (Indices 0 and 1, as gaps 0 and 0, are fine: two -0.0.) */
		assert_int_equal(decode_exact(bad[2], 11), 2);
		assert_true(signbit(dv[0]) && signbit(dv[1]));
		for (size_t k = 0; k < 4; k++)
			if (k != 2)
				assert_int_equal(decode_exact(bad[k], len_of[k]), -1);
	}
	for (int i = 0; i < BLOCK_MAX; i++)
		v[i] = -0.0;
	steady_times(BLOCK_MAX, T0, 1000);
	roundtrip(ts, v, BLOCK_MAX);
	for (int i = 0; i < BLOCK_MAX; i++)
		assert_true(signbit(dv[i]) && dv[i] == 0);
}

static void
test_seventeen_digits(void **state)
{
	(void)state;
	rng = 4;
	steady_times(BLOCK_MAX, T0, 1000);
	v[0] = 0.1 + 0.2;		/* 0.30000000000000004 */
	v[1] = 3.141592653589793;
	v[2] = 2.718281828459045;
	v[3] = 1.0 / 3;
	v[4] = 0.1;
	v[5] = 1234567.8901234567;
	for (int i = 6; i < BLOCK_MAX; i++)
		v[i] = v[i - 1] * 1.0000001 + 1e-9;
	roundtrip(ts, v, BLOCK_MAX);
	assert_int_equal(blk[0], 2);
	/* 7 decimals: one too many. */
	v[0] = 0.1234567;
	roundtrip(ts, v, 1);
	assert_int_equal(blk[0], 2);
	v[0] = 0.123456;
	roundtrip(ts, v, 1);
	assert_int_equal(blk[0], 1);
	assert_int_equal(blk[1], 6);
}

static void
test_extremes(void **state)
{
	static const double x[] = {
		1e300, -1e300, DBL_MAX, -DBL_MAX, DBL_MIN, -DBL_MIN,
		4.9406564584124654e-324, -4.9406564584124654e-324, 2.2250738585072009e-308,
		1e-310, 0, 1, 1e300, 1e300, -1e-320, 5e-324,
	};
	int n = (int)(sizeof(x) / sizeof(x[0]));

	(void)state;
	steady_times(n, T0, 1000);
	memcpy(v, x, sizeof(x));
	roundtrip(ts, v, n);
	assert_int_equal(blk[0], 2);
	for (int i = 0; i < n; i++) {
		v[0] = x[i];
		roundtrip(ts, v, 1);
	}
	/* 1e300 alone is far over 2^53: no decimals. */
	v[0] = 1e300;
	v[1] = -1e300;
	roundtrip(ts, v, 2);
	assert_int_equal(blk[0], 2);
	/* Every kind of finite double, at random. */
	rng = 5;
	steady_times(BLOCK_MAX, T0, 1000);
	for (int i = 0; i < BLOCK_MAX; i++)
		v[i] = rnd_double();
	roundtrip(ts, v, BLOCK_MAX);
}

static void
test_huge_timestamps(void **state)
{
	(void)state;
	for (int i = 0; i < 8; i++)
		v[i] = i * 0.5;

	/* The whole int64 span: a delta of 2^64 - 1, wrapping in uint64. */
	ts[0] = INT64_MIN;
	ts[1] = INT64_MAX;
	roundtrip(ts, v, 2);
	ts[0] = INT64_MIN + 1;
	ts[1] = INT64_MAX;
	roundtrip(ts, v, 2);

	/* Deltas of deltas of both signs near 2^63. */
	ts[0] = INT64_MIN + 1;
	ts[1] = INT64_MIN + 2;
	ts[2] = -1;
	ts[3] = 0;
	ts[4] = 1;
	ts[5] = INT64_MAX - 2;
	ts[6] = INT64_MAX - 1;
	ts[7] = INT64_MAX;
	roundtrip(ts, v, 8);

	/* Negative times, steady, and one point at the far ends. */
	steady_times(BLOCK_MAX, -T0, 1000);
	for (int i = 0; i < BLOCK_MAX; i++)
		v[i] = 1;
	assert_true(roundtrip(ts, v, BLOCK_MAX) <= 24);
	ts[0] = INT64_MIN;
	roundtrip(ts, v, 1);
	ts[0] = INT64_MAX;
	roundtrip(ts, v, 1);
	ts[0] = -1;
	roundtrip(ts, v, 1);

	/* Steps of about 2^62, one way then the other. */
	ts[0] = INT64_MIN;
	ts[1] = INT64_MIN + (INT64_C(1) << 62);
	ts[2] = ts[1] + 1;
	ts[3] = ts[2] + (INT64_C(1) << 62) + 12345;
	ts[4] = ts[3] + 3;
	ts[5] = INT64_MAX - 7;
	ts[6] = INT64_MAX;
	roundtrip(ts, v, 7);

	/* Random ascending times anywhere in int64. */
	rng = 6;
	for (int round = 0; round < 20; round++) {
		int n = (int)rnd_in(2, 64);
		uint64_t span = ~(uint64_t)0 / (uint64_t)n;

		ts[0] = (int64_t)(rnd() | (UINT64_C(1) << 63));	/* negative */
		for (int i = 1; i < n; i++) {
			uint64_t room = (uint64_t)INT64_MAX - (uint64_t)ts[i - 1];

			if (room == 0) {
				n = i;
				break;
			}
			ts[i] = (int64_t)((uint64_t)ts[i - 1] + 1 + rnd() % (span < room ? span : room));
		}
		for (int i = 0; i < n; i++)
			v[i] = rnd_double();
		roundtrip(ts, v, n);
	}
}

static void
test_irregular_times(void **state)
{
	size_t len;

	(void)state;
	rng = 7;
	ts[0] = T0;
	for (int i = 1; i < BLOCK_MAX; i++) {
		int64_t step;

		switch (rnd() % 8) {
		case 0: step = 1; break;
		case 1: step = rnd_in(1, 1000000000); break;		/* gaps up to 11 days */
		case 2: step = i > 1 ? ts[i - 1] - ts[i - 2] : 1000; break;	/* same as before */
		default: step = 1000 + rnd_in(-30, 30); break;
		}
		ts[i] = ts[i - 1] + step;
		v[i] = (double)rnd_in(-50000, 50000) / 1000;
	}
	v[0] = 0.001;
	len = roundtrip(ts, v, BLOCK_MAX);
	assert_int_equal(blk[0], 1);
	assert_int_equal(blk[1], 3);
	assert_true(len < block_bound(BLOCK_MAX));

	/* Bursts: many equal deltas, then one different, repeatedly (runs of every length). */
	ts[0] = T0;
	for (int i = 1, run = 1, k = 0; i < BLOCK_MAX; i++, k++) {
		if (k == run) {
			k = 0;
			run = run * 2 + 1;
			ts[i] = ts[i - 1] + 7;
		} else
			ts[i] = ts[i - 1] + 1000;
		v[i] = (double)(run % 5);
	}
	roundtrip(ts, v, BLOCK_MAX);
}

static void
test_one_and_max_points(void **state)
{
	(void)state;
	ts[0] = T0;
	v[0] = 21.5;
	assert_true(roundtrip(ts, v, 1) <= 12);
	assert_int_equal(blk[0], 1);
	v[0] = M_PI;
	roundtrip(ts, v, 1);
	assert_int_equal(blk[0], 2);

	rng = 8;
	for (int round = 0; round < 3; round++) {
		ts[0] = (int64_t)rnd() >> 2;
		for (int i = 1; i < BLOCK_MAX; i++)
			ts[i] = ts[i - 1] + rnd_in(1, 1 << 20);
		for (int i = 0; i < BLOCK_MAX; i++)
			v[i] = round == 0 ? (double)rnd_in(-99999, 99999) / 100 :
			    round == 1 ? rnd_double() : (double)(i % 3);
		roundtrip(ts, v, BLOCK_MAX);
	}
}

/* ---- the encoder's rules ---- */

static void
test_encode_refuses(void **state)
{
	uint8_t out[BLOCK_MAX * 24 + 64];

	(void)state;
	steady_times(BLOCK_MAX + 1, T0, 1000);
	for (int i = 0; i <= BLOCK_MAX; i++)
		v[i] = 1.5;
	assert_true(block_bound(BLOCK_MAX + 1) <= sizeof(out));
	assert_int_equal(block_encode(ts, v, 0, out), 0);
	assert_int_equal(block_encode(ts, v, -1, out), 0);
	assert_int_equal(block_encode(ts, v, BLOCK_MAX + 1, out), 0);
	assert_true(block_encode(ts, v, BLOCK_MAX, out) > 0);

	/* Equal or descending times, anywhere. */
	for (int at = 1; at < 5; at++) {
		int64_t keep = ts[at];

		ts[at] = ts[at - 1];
		assert_int_equal(block_encode(ts, v, 5, out), 0);
		ts[at] = ts[at - 1] - 1;
		assert_int_equal(block_encode(ts, v, 5, out), 0);
		ts[at] = INT64_MIN;
		assert_int_equal(block_encode(ts, v, 5, out), 0);
		ts[at] = keep;
		assert_true(block_encode(ts, v, 5, out) > 0);
	}
	ts[BLOCK_MAX - 1] = ts[BLOCK_MAX - 2];
	assert_int_equal(block_encode(ts, v, BLOCK_MAX, out), 0);
	steady_times(BLOCK_MAX, T0, 1000);
	ts[0] = INT64_MAX;
	assert_int_equal(block_encode(ts, v, 2, out), 0);
	assert_true(block_encode(ts, v, 1, out) > 0);
	ts[0] = T0;

	/* NaN and infinities, first, in the middle and last. */
	static const int where[] = { 0, 2, 4 };
	for (size_t k = 0; k < 3; k++) {
		int at = where[k];

		v[at] = NAN;
		assert_int_equal(block_encode(ts, v, 5, out), 0);
		v[at] = -NAN;
		assert_int_equal(block_encode(ts, v, 5, out), 0);
		v[at] = from_bits(0x7ff0000000000001ULL);	/* a signalling NaN */
		assert_int_equal(block_encode(ts, v, 5, out), 0);
		v[at] = INFINITY;
		assert_int_equal(block_encode(ts, v, 5, out), 0);
		v[at] = -INFINITY;
		assert_int_equal(block_encode(ts, v, 5, out), 0);
		v[at] = 1.5;
	}
	v[BLOCK_MAX - 1] = NAN;
	assert_int_equal(block_encode(ts, v, BLOCK_MAX, out), 0);
	v[BLOCK_MAX - 1] = 1.5;
}

/* Random worst cases: the encoding never passes block_bound(n) (roundtrip checks it with a guard). */
static void
test_bound_holds(void **state)
{
	size_t len, worst = 0;

	(void)state;
	rng = 9;
	assert_true(block_bound(1) >= 2 + 2 + 10 + 8);
	for (int round = 0; round < 60; round++) {
		int n = round < 4 ? BLOCK_MAX : (int)rnd_in(1, 300);
		int kind = round % 4;

		/* Times: alternating tiny and huge deltas, so deltas of deltas are near +-2^60 each. */
		ts[0] = INT64_MIN + (int64_t)(rnd() % 1000);
		for (int i = 1; i < n; i++) {
			uint64_t room = (uint64_t)INT64_MAX - (uint64_t)ts[i - 1];
			uint64_t big = (uint64_t)1 << (kind == 0 ? 50 : 48);
			uint64_t step = (i % 2 ? big + rnd() % big : 1 + rnd() % 3);

			if (room < 4) {
				n = i;
				break;
			}
			if (step > room / 2)
				step = 1 + rnd() % 2;
			ts[i] = (int64_t)((uint64_t)ts[i - 1] + step);
		}
		for (int i = 0; i < n; i++) {
			switch (kind) {
			case 0:		/* random bits: XOR records of 9 bytes */
			case 1:
				v[i] = rnd_double();
				break;
			case 2:		/* 6 decimals swinging across +-9e8 (deltas of 1.8e15 millionths) */
				v[i] = (double)((i % 2 ? 1 : -1) * rnd_in(100000000000000LL,
				    900000000000000LL)) / 1e6;
				break;
			default:	/* integers swinging across +-2^53 */
				v[i] = (double)((i % 2 ? 1 : -1) * rnd_in(9000000000000000LL,
				    9007199254740991LL));
				break;
			}
		}
		len = roundtrip(ts, v, n);
		assert_int_equal(blk[0], kind < 2 ? 2 : 1);
		if (len * 1000 / (size_t)n > worst)
			worst = len * 1000 / (size_t)n;
	}
	/* Every point's time and value alone, both streams of alternating zero and non-zero tokens. */
	for (int i = 0; i < BLOCK_MAX; i++) {
		ts[i] = T0 + i * 1000 + (i % 4 == 1 ? 1 : 0);
		v[i] = i % 4 < 2 ? 0 : 1e-6 * (double)(i % 3);
	}
	roundtrip(ts, v, BLOCK_MAX);
	print_message("worst case seen: %.3f bytes a point, bound %.3f for %d points\n",
	    (double)worst / 1000, (double)block_bound(BLOCK_MAX) / BLOCK_MAX, BLOCK_MAX);
}

/* ---- the decoder's refusals ---- */

static void
test_decode_truncated(void **state)
{
	size_t len;

	(void)state;
	/* Decimals with runs in both streams. */
	steady_times(200, T0, 1000);
	for (int i = 0; i < 200; i++)
		v[i] = i < 100 ? 20.5 : 20.5 + (i % 7) * 0.25;
	ts[150] += 3;
	len = roundtrip(ts, v, 200);
	assert_prefixes_refused(len);
	/* XOR records of every length, zero ones included. */
	rng = 10;
	v[0] = M_PI;
	for (int i = 1; i < 200; i++)
		v[i] = rnd_xor_step(v[i - 1]);
	len = roundtrip(ts, v, 200);
	assert_int_equal(blk[0], 2);
	assert_prefixes_refused(len);
	/* One point, either format; and huge times (ten-byte varints). */
	v[0] = 1;
	assert_prefixes_refused(roundtrip(ts, v, 1));
	v[0] = -0.0;
	assert_prefixes_refused(roundtrip(ts, v, 1));
	ts[0] = INT64_MIN;
	ts[1] = INT64_MAX;
	v[1] = 2;
	assert_prefixes_refused(roundtrip(ts, v, 2));
	/* The empty input, and one or two bytes. */
	for (size_t k = 0; k < 3; k++)
		assert_int_equal(decode_exact((const uint8_t *)"\x01\x00\x01", k), -1);
}

static void
test_decode_trailing_garbage(void **state)
{
	uint8_t more[sizeof(blk) + 8];
	size_t len;

	(void)state;
	steady_times(50, T0, 1000);
	for (int i = 0; i < 50; i++)
		v[i] = i * 0.5;
	len = roundtrip(ts, v, 50);
	memcpy(more, blk, len);
	for (unsigned b = 0; b < 256; b += 17) {
		more[len] = (uint8_t)b;
		assert_int_equal(decode_exact(more, len + 1), -1);
	}
	memset(more + len, 0, 8);
	assert_int_equal(decode_exact(more, len + 8), -1);
	v[3] = M_PI;
	len = roundtrip(ts, v, 50);
	memcpy(more, blk, len);
	more[len] = 0x80;
	assert_int_equal(decode_exact(more, len + 1), -1);
	more[len] = 0;
	assert_int_equal(decode_exact(more, len + 1), -1);
}

static void
test_decode_bad_header(void **state)
{
	struct hb h;

	(void)state;
	/* A valid one-point block: decimals 0, n 1, ts 5, value 3. */
	for (int fmt = 0; fmt < 256; fmt++) {
		memset(&h, 0, sizeof(h));
		hb_byte(&h, (unsigned)fmt);
		if (fmt == 1)
			hb_byte(&h, 0);
		hb_varint(&h, 1);
		hb_signed(&h, 5);
		if (fmt == 2)
			hb_double(&h, 3);
		else
			hb_signed(&h, 3);
		if (fmt == 1)
			hb_varint(&h, 0);	/* no -0.0 */
		assert_int_equal(decode_exact(h.b, h.n), fmt == 1 || fmt == 2 ? 1 : -1);
		if (fmt == 1 || fmt == 2)
			assert_true(dts[0] == 5 && dv[0] == 3);
	}
	/* Decimals 0 .. 6 are read, 7 and more refused. */
	for (int d = 0; d < 256; d++) {
		memset(&h, 0, sizeof(h));
		hb_byte(&h, 1);
		hb_byte(&h, (unsigned)d);
		hb_varint(&h, 1);
		hb_signed(&h, 5);
		hb_signed(&h, 12345);
		if (d <= 6) {
			hb_varint(&h, 0);	/* no -0.0 */
			assert_int_equal(decode_exact(h.b, h.n), 1);
			assert_true(dv[0] == 12345 / pow(10, d));
		} else
			assert_int_equal(decode_exact(h.b, h.n), -1);
	}
}

/* n = 0 and n > BLOCK_MAX, with the rest of the block as it would be. */
static void
test_decode_bad_count(void **state)
{
	static const uint64_t counts[] = { 0, BLOCK_MAX + 1, BLOCK_MAX * 2, 1ULL << 32, UINT64_MAX };
	struct hb h;
	size_t len;

	(void)state;
	/* BLOCK_MAX points one ms apart, all 0: written by hand, as the encoder writes them. */
	memset(&h, 0, sizeof(h));
	hb_byte(&h, 1);
	hb_byte(&h, 0);
	hb_varint(&h, BLOCK_MAX);
	hb_signed(&h, 0);
	hb_signed(&h, 1);
	hb_zeros(&h, BLOCK_MAX - 2);
	hb_signed(&h, 0);
	hb_zeros(&h, BLOCK_MAX - 1);
	steady_times(BLOCK_MAX, 0, 1);
	memset(v, 0, sizeof(v));
	len = roundtrip(ts, v, BLOCK_MAX);
	hb_varint(&h, 0);	/* no -0.0 */
	assert_int_equal(len, h.n);
	assert_memory_equal(blk, h.b, len);
	assert_int_equal(decode_exact(h.b, h.n), BLOCK_MAX);

	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		memset(&h, 0, sizeof(h));
		hb_byte(&h, 1);
		hb_byte(&h, 0);
		hb_varint(&h, counts[k]);
		hb_signed(&h, 0);
		if (counts[k] > 1) {
			hb_signed(&h, 1);
			hb_zeros(&h, BLOCK_MAX - 1);	/* as many as the run may say */
		}
		hb_signed(&h, 0);
		if (counts[k] > 1)
			hb_zeros(&h, BLOCK_MAX - 1);
		hb_varint(&h, 0);	/* no -0.0 */
		assert_int_equal(decode_exact(h.b, h.n), -1);
	}
	/* A count in a varint that does not end, or runs past 64 bits. */
	memset(&h, 0, sizeof(h));
	hb_byte(&h, 2);
	for (int i = 0; i < 12; i++)
		hb_byte(&h, 0x81);
	hb_byte(&h, 0);
	assert_int_equal(decode_exact(h.b, h.n), -1);
	memset(&h, 0, sizeof(h));
	hb_byte(&h, 2);
	for (int i = 0; i < 9; i++)
		hb_byte(&h, 0x80);
	hb_byte(&h, 0x02);	/* bit 64 */
	hb_signed(&h, 0);
	hb_double(&h, 1);
	assert_int_equal(decode_exact(h.b, h.n), -1);
}

static void
test_decode_zero_run_past_n(void **state)
{
	struct hb h;

	(void)state;
	/* n 3: two time tokens, two value tokens. A time run of 2 after nothing: delta 0. */
	memset(&h, 0, sizeof(h));
	hb_byte(&h, 1);
	hb_byte(&h, 1);
	hb_varint(&h, 3);
	hb_signed(&h, 1000);
	hb_zeros(&h, 2);
	hb_signed(&h, 215);
	hb_zeros(&h, 2);
	hb_varint(&h, 0);	/* no -0.0 */
	assert_int_equal(decode_exact(h.b, h.n), -1);

	memset(&h, 0, sizeof(h));
	hb_byte(&h, 1);
	hb_byte(&h, 1);
	hb_varint(&h, 3);
	hb_signed(&h, 1000);
	hb_signed(&h, 10);
	hb_zeros(&h, 1);
	hb_signed(&h, 215);
	hb_zeros(&h, 2);
	hb_varint(&h, 0);	/* no -0.0 */
	assert_int_equal(decode_exact(h.b, h.n), 3);
	assert_true(dts[0] == 1000 && dts[1] == 1010 && dts[2] == 1020);
	assert_true(dv[0] == 21.5 && dv[1] == 21.5 && dv[2] == 21.5);

	/* The time run one too long: it would spill into the values. */
	memset(&h, 0, sizeof(h));
	hb_byte(&h, 1);
	hb_byte(&h, 1);
	hb_varint(&h, 3);
	hb_signed(&h, 1000);
	hb_signed(&h, 10);
	hb_zeros(&h, 2);
	hb_signed(&h, 215);
	hb_zeros(&h, 2);
	hb_varint(&h, 0);	/* no -0.0 */
	assert_int_equal(decode_exact(h.b, h.n), -1);

	/* The value run one too long, or far too long. */
	static const uint64_t runs[] = { 3, 4, BLOCK_MAX, BLOCK_MAX + 1, 1ULL << 40, UINT64_MAX };
	for (size_t k = 0; k < sizeof(runs) / sizeof(runs[0]); k++) {
		memset(&h, 0, sizeof(h));
		hb_byte(&h, 1);
		hb_byte(&h, 1);
		hb_varint(&h, 3);
		hb_signed(&h, 1000);
		hb_signed(&h, 10);
		hb_zeros(&h, 1);
		hb_signed(&h, 215);
		hb_zeros(&h, runs[k]);
		hb_varint(&h, 0);	/* no -0.0 */
		assert_int_equal(decode_exact(h.b, h.n), -1);
	}
	/* At BLOCK_MAX points: BLOCK_MAX zeros are one too many in either stream. */
	for (int k = 0; k < 4; k++) {
		memset(&h, 0, sizeof(h));
		hb_byte(&h, 1);
		hb_byte(&h, 0);
		hb_varint(&h, BLOCK_MAX);
		hb_signed(&h, 0);
		hb_signed(&h, 1);
		hb_zeros(&h, BLOCK_MAX - 2 + (k == 1));
		hb_signed(&h, 0);
		hb_zeros(&h, BLOCK_MAX - 1 + (k == 2) + 2 * (k == 3));
		hb_varint(&h, 0);	/* no -0.0 */
		assert_int_equal(decode_exact(h.b, h.n), k == 0 ? BLOCK_MAX : -1);
	}
}

static void
test_decode_non_ascending(void **state)
{
	static const int64_t first_dd[] = { 0, -1, -1000 };
	struct hb h;

	(void)state;
	/* Delta 0 or negative at the first step. */
	for (size_t k = 0; k < sizeof(first_dd) / sizeof(first_dd[0]); k++) {
		memset(&h, 0, sizeof(h));
		hb_byte(&h, 1);
		hb_byte(&h, 0);
		hb_varint(&h, 2);
		hb_signed(&h, T0);
		if (first_dd[k] == 0)
			hb_zeros(&h, 1);
		else
			hb_signed(&h, first_dd[k]);
		hb_signed(&h, 1);
		hb_signed(&h, 1);
		hb_varint(&h, 0);	/* no -0.0 */
		assert_int_equal(decode_exact(h.b, h.n), -1);
	}
	/* Ascending, then a delta of delta that brings the delta to 0, then below. */
	for (int64_t dd = -1000; dd >= -1001; dd--) {
		memset(&h, 0, sizeof(h));
		hb_byte(&h, 1);
		hb_byte(&h, 0);
		hb_varint(&h, 4);
		hb_signed(&h, T0);
		hb_signed(&h, 1000);
		hb_zeros(&h, 1);
		hb_signed(&h, dd);
		hb_signed(&h, 1);
		hb_zeros(&h, 3);
		hb_varint(&h, 0);	/* no -0.0 */
		assert_int_equal(decode_exact(h.b, h.n), -1);
	}
	/* Past INT64_MAX: wraps to INT64_MIN. */
	memset(&h, 0, sizeof(h));
	hb_byte(&h, 1);
	hb_byte(&h, 0);
	hb_varint(&h, 2);
	hb_signed(&h, INT64_MAX);
	hb_signed(&h, 1);
	hb_signed(&h, 1);
	hb_signed(&h, 1);
	hb_varint(&h, 0);	/* no -0.0 */
	assert_int_equal(decode_exact(h.b, h.n), -1);
	/* And a delta of 2^64 - 1 from INT64_MIN is fine, 2^64 - 1 from INT64_MIN + 1 is not. */
	memset(&h, 0, sizeof(h));
	hb_byte(&h, 1);
	hb_byte(&h, 0);
	hb_varint(&h, 2);
	hb_signed(&h, INT64_MIN);
	hb_signed(&h, -1);		/* (uint64) 2^64 - 1 */
	hb_signed(&h, 1);
	hb_signed(&h, 1);
	hb_varint(&h, 0);	/* no -0.0 */
	assert_int_equal(decode_exact(h.b, h.n), 2);
	assert_true(dts[0] == INT64_MIN && dts[1] == INT64_MAX);
	memset(&h, 0, sizeof(h));
	hb_byte(&h, 1);
	hb_byte(&h, 0);
	hb_varint(&h, 2);
	hb_signed(&h, INT64_MIN + 1);
	hb_signed(&h, -1);
	hb_signed(&h, 1);
	hb_signed(&h, 1);
	hb_varint(&h, 0);	/* no -0.0 */
	assert_int_equal(decode_exact(h.b, h.n), -1);
}

static void
test_decode_bad_xor(void **state)
{
	struct hb h;

	(void)state;
	/* lead + trail must stay under 8 bytes, bar 0x80 (a zero XOR). */
	for (unsigned hdr = 0; hdr < 256; hdr++) {
		int lead = (int)(hdr >> 4), trail = (int)(hdr & 15), want;

		memset(&h, 0, sizeof(h));
		hb_byte(&h, 2);
		hb_varint(&h, 2);
		hb_signed(&h, T0);
		hb_signed(&h, 1000);
		hb_double(&h, 1.5);
		hb_byte(&h, hdr);
		if (hdr == 0x80)
			want = 2;
		else if (lead + trail >= 8)
			want = -1;
		else {
			for (int i = trail; i < 8 - lead; i++)
				hb_byte(&h, 0x01);	/* small changes of a finite value stay finite */
			want = 2;
		}
		assert_int_equal(decode_exact(h.b, h.n), want);
		if (want > 0 && lead + trail < 8) {
			/* One byte short. */
			assert_int_equal(decode_exact(h.b, h.n - 1), -1);
		}
	}
	/* The XOR that turns 1.5 into infinity or NaN. */
	static const double bad[] = { INFINITY, -INFINITY, NAN };
	for (size_t k = 0; k < 3; k++) {
		uint64_t a, b, x;
		double one = 1.5;

		memcpy(&a, &one, 8);
		memcpy(&b, &bad[k], 8);
		x = a ^ b;
		memset(&h, 0, sizeof(h));
		hb_byte(&h, 2);
		hb_varint(&h, 2);
		hb_signed(&h, T0);
		hb_signed(&h, 1000);
		hb_double(&h, 1.5);
		hb_byte(&h, 0x00);
		for (int i = 0; i < 8; i++)
			hb_byte(&h, (unsigned)(x >> (8 * i)) & 0xff);
		assert_int_equal(decode_exact(h.b, h.n), -1);
		/* Or as the first value. */
		memset(&h, 0, sizeof(h));
		hb_byte(&h, 2);
		hb_varint(&h, 1);
		hb_signed(&h, T0);
		hb_double(&h, bad[k]);
		assert_int_equal(decode_exact(h.b, h.n), -1);
	}
}

/* Random bytes and random damage to valid blocks: never a crash, and what decodes re-encodes to the same points. */
static void
test_decode_damaged(void **state)
{
	static int64_t t2[BLOCK_MAX];
	static double v2[BLOCK_MAX];
	size_t len;

	(void)state;
	rng = 11;
	steady_times(300, T0, 1000);
	for (int i = 0; i < 300; i++)
		v[i] = (double)rnd_in(0, 3000) / 100;
	len = roundtrip(ts, v, 300);
	for (int round = 0; round < 3000; round++) {
		uint8_t copy[sizeof(blk)];
		int got;

		memcpy(copy, blk, len);
		for (int k = 0; k < 1 + round % 3; k++)
			copy[rnd() % len] ^= (uint8_t)(1 + rnd() % 255);
		got = decode_exact(copy, len);
		assert_true(got == -1 || (got >= 1 && got <= BLOCK_MAX));
		if (got > 0) {
			uint8_t again[BLOCK_MAX * 24 + 64];
			size_t len2;

			memcpy(t2, dts, sizeof(t2));
			memcpy(v2, dv, sizeof(v2));
			len2 = block_encode(t2, v2, got, again);
			assert_true(len2 > 0 && len2 <= block_bound(got));
			assert_int_equal(block_decode(again, len2, dts, dv), got);
			assert_memory_equal(dts, t2, (size_t)got * sizeof(*t2));
			assert_memory_equal(dv, v2, (size_t)got * sizeof(*v2));
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_steady_1hz_two_decimals),
		cmocka_unit_test(test_noisy_series),
		cmocka_unit_test(test_constant_values),
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_negative_and_negative_zero),
		cmocka_unit_test(test_seventeen_digits),
		cmocka_unit_test(test_extremes),
		cmocka_unit_test(test_huge_timestamps),
		cmocka_unit_test(test_irregular_times),
		cmocka_unit_test(test_one_and_max_points),
		cmocka_unit_test(test_encode_refuses),
		cmocka_unit_test(test_bound_holds),
		cmocka_unit_test(test_decode_truncated),
		cmocka_unit_test(test_decode_trailing_garbage),
		cmocka_unit_test(test_decode_bad_header),
		cmocka_unit_test(test_decode_bad_count),
		cmocka_unit_test(test_decode_zero_run_past_n),
		cmocka_unit_test(test_decode_non_ascending),
		cmocka_unit_test(test_decode_bad_xor),
		cmocka_unit_test(test_decode_damaged),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
