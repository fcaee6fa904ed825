/* Unit tests of rollup blocks: round trips bit for bit, sizes, the encoder's rules, the decoder's refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rollup_block.h"

#define T0	1800000000000LL		/* ms, in 2027, a whole hour */
#define MIN	60000LL
#define HOUR	3600000LL

static struct history_bucket rows[RBLOCK_MAX + 1], back[RBLOCK_MAX];
static struct rblock_scratch scratch;
static uint8_t blk[RBLOCK_MAX * 200];

static uint64_t rng;

static uint64_t
rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A reading with two decimals around 20. */
static double
reading(void)
{
	return (double)(2000 + (int64_t)(rnd() % 200) - 100) / 100;
}

/* A row of one reading at `off` ms into bucket `ts`. */
static struct history_bucket
one(int64_t ts, int64_t off, double v)
{
	return (struct history_bucket){ .ts = ts, .count = 1, .sum = v, .min = v, .max = v,
	    .first_ts = ts + off, .last_ts = ts + off, .first = v, .last = v };
}

/* A row of k readings spread over the bucket, summed as history.c sums them. */
static struct history_bucket
many(int64_t ts, int64_t width, int k)
{
	struct history_bucket r = { .ts = ts };

	for (int i = 0; i < k; i++) {
		double v = reading();
		int64_t at = ts + (width / k) * i;

		if (r.count == 0 || v < r.min)
			r.min = v;
		if (r.count == 0 || v > r.max)
			r.max = v;
		if (r.count == 0) {
			r.first = v;
			r.first_ts = at;
		}
		r.last = v;
		r.last_ts = at;
		r.sum += v;
		r.count++;
	}
	return r;
}

/* Encodes n rows, decodes them, compares bit for bit; the bytes. */
static size_t
round_trip(int n, int64_t width)
{
	size_t len = rblock_encode(rows, n, width, blk);

	assert_true(len > 0);
	assert_true(len <= rblock_bound(n));
	assert_int_equal(rblock_decode(blk, len, width, back, &scratch), n);
	for (int i = 0; i < n; i++)
		assert_memory_equal(&rows[i], &back[i], sizeof(rows[i]));
	return len;
}

static void
test_sparse_series_costs_a_few_bytes_a_row(void **state)
{
	size_t len;

	(void)state;
	rng = 1;
	/* A sensor every 5 minutes, on the second: each minute row is one reading. */
	for (int i = 0; i < RBLOCK_MAX; i++)
		rows[i] = one(T0 + i * 5 * MIN, 1000, reading());
	len = round_trip(RBLOCK_MAX, MIN);
	print_message("one reading a row: %.2f bytes a row\n", (double)len / RBLOCK_MAX);
	assert_true(len <= 4 * RBLOCK_MAX);
}

static void
test_dense_rows_round_trip(void **state)
{
	size_t len;

	(void)state;
	rng = 2;
	for (int i = 0; i < RBLOCK_MAX; i++)
		rows[i] = many(T0 + i * MIN, MIN, 60);
	len = round_trip(RBLOCK_MAX, MIN);
	print_message("60 readings a row: %.2f bytes a row\n", (double)len / RBLOCK_MAX);
	assert_true(len <= 40 * RBLOCK_MAX);
	/* Hours of 12 readings, as a 5-minute sensor gives. */
	for (int i = 0; i < 500; i++)
		rows[i] = many(T0 + i * HOUR, HOUR, 12);
	round_trip(500, HOUR);
}

static void
test_mixed_gaps_and_odd_rows(void **state)
{
	(void)state;
	rng = 3;
	for (int i = 0; i < 300; i++) {
		int64_t ts = T0 + (int64_t)(i * 7 + (int)(rnd() % 5)) * MIN;

		if (i > 0 && ts <= rows[i - 1].ts)
			ts = rows[i - 1].ts + MIN;
		rows[i] = i % 3 ? one(ts, (int64_t)(rnd() % MIN), reading()) :
		    many(ts, MIN, 1 + (int)(rnd() % 30));
	}
	/* -0.0 alone: its sum is +0.0 as history.c sums it, so the row is full. */
	rows[10] = one(rows[10].ts, 0, -0.0);
	rows[10].sum = 0.0;
	/* A reading with 17 digits, and one of a thousand readings at once. */
	rows[11] = one(rows[11].ts, MIN - 1, 0.1 + 0.2);
	rows[12] = many(rows[12].ts, MIN, 1000);
	/* Before 1970. */
	rows[0] = one(-5 * MIN, 59999, -3.5);
	round_trip(300, MIN);
	rows[0] = one(T0, 0, 1.0);
	round_trip(1, MIN);
}

static void
test_encode_refuses_rows_that_break_the_rules(void **state)
{
	static const struct {
		const char *what;
		int field;
	} cases[] = {
		{ "ts not on a bucket", 0 }, { "ts not ascending", 1 }, { "count 0", 2 },
		{ "first before the bucket", 3 }, { "last after the bucket", 4 },
		{ "last before first", 5 }, { "NaN", 6 }, { "inf", 7 },
	};

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (int i = 0; i < 4; i++)
			rows[i] = one(T0 + i * MIN, 5, 1.5);
		switch (cases[c].field) {
		case 0: rows[2].ts += 1; rows[2].first_ts = rows[2].last_ts = rows[2].ts; break;
		case 1: rows[2] = one(T0 + MIN, 5, 1.5); break;
		case 2: rows[2].count = 0; break;
		case 3: rows[2].first_ts = rows[2].ts - 1; break;
		case 4: rows[2].count = 2; rows[2].last_ts = rows[2].ts + MIN; break;
		case 5: rows[2].count = 2; rows[2].last_ts = rows[2].first_ts - 1; break;
		case 6: rows[2].max = NAN; break;
		default: rows[2].sum = INFINITY; break;
		}
		assert_int_equal(rblock_valid(rows, 4, MIN), 2);
		assert_int_equal(rblock_encode(rows, 4, MIN, blk), 0);
		/* The rows before it still make a block. */
		assert_true(rblock_encode(rows, 2, MIN, blk) > 0);
	}
	assert_int_equal(rblock_encode(rows, 0, MIN, blk), 0);
	assert_int_equal(rblock_encode(rows, RBLOCK_MAX + 1, MIN, blk), 0);
	assert_int_equal(rblock_encode(rows, 1, 0, blk), 0);
}

static void
test_decode_refuses_prefixes_other_widths_and_garbage(void **state)
{
	size_t len;

	(void)state;
	rng = 4;
	for (int i = 0; i < 50; i++)
		rows[i] = i % 2 ? one(T0 + i * MIN, 30, reading()) : many(T0 + i * MIN, MIN, 6);
	len = rblock_encode(rows, 50, MIN, blk);
	assert_true(len > 0);
	for (size_t k = 0; k < len; k++)
		assert_int_equal(rblock_decode(blk, k, MIN, back, &scratch), -1);
	blk[len] = 0;
	assert_int_equal(rblock_decode(blk, len + 1, MIN, back, &scratch), -1);
	/* Read as hours, the minutes are off the buckets. */
	assert_int_equal(rblock_decode(blk, len, HOUR, back, &scratch), -1);
	assert_int_equal(rblock_decode(blk, len, 0, back, &scratch), -1);
	blk[0] = 2;
	assert_int_equal(rblock_decode(blk, len, MIN, back, &scratch), -1);
	blk[0] = 1;
	/* Every single bit flipped: refused, or rows that keep the rules. */
	for (size_t k = 0; k < len * 8; k++) {
		int n;

		blk[k / 8] ^= (uint8_t)(1u << (k % 8));
		n = rblock_decode(blk, len, MIN, back, &scratch);
		if (n > 0)
			assert_int_equal(rblock_valid(back, n, MIN), n);
		blk[k / 8] ^= (uint8_t)(1u << (k % 8));
	}
	assert_int_equal(rblock_decode(blk, len, MIN, back, &scratch), 50);
}

static void
put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * A damaged block whose one row sits in the last minute an int64 can
 * count, its first reading 59,999 ms in: ts + offset would overflow (and
 * came back as a first_ts in 1677). It must be refused.
 */
static void
test_decode_refuses_a_bucket_at_the_end_of_time(void **state)
{
	int64_t ts = INT64_MAX - INT64_MAX % MIN;
	double col[3] = { 1.0, 59999.0, 5.0 };	/* kind (one reading), its offset, its value */
	size_t at = 1 + 2 + 2 + 4 * 8;

	(void)state;
	blk[0] = 1;
	put_le(blk + 1, 1, 2);
	put_le(blk + 3, 0, 2);
	for (int c = 0; c < 8; c++) {
		size_t len = c < 3 ? block_encode(&ts, &col[c], 1, blk + at) : 0;

		assert_true(c >= 3 || len > 0);
		put_le(blk + 5 + 4 * c, len, 4);
		at += len;
	}
	assert_int_equal(rblock_decode(blk, at, MIN, back, &scratch), -1);
	/* The same row a minute earlier is a row the encoder takes. */
	ts -= MIN;
	at = 1 + 2 + 2 + 4 * 8;
	for (int c = 0; c < 3; c++) {
		size_t len = block_encode(&ts, &col[c], 1, blk + at);

		put_le(blk + 5 + 4 * c, len, 4);
		at += len;
	}
	assert_int_equal(rblock_decode(blk, at, MIN, back, &scratch), 1);
	assert_int_equal(back[0].first_ts, ts + 59999);
	assert_int_equal(rblock_valid(back, 1, MIN), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sparse_series_costs_a_few_bytes_a_row),
		cmocka_unit_test(test_dense_rows_round_trip),
		cmocka_unit_test(test_mixed_gaps_and_odd_rows),
		cmocka_unit_test(test_encode_refuses_rows_that_break_the_rules),
		cmocka_unit_test(test_decode_refuses_prefixes_other_widths_and_garbage),
		cmocka_unit_test(test_decode_refuses_a_bucket_at_the_end_of_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
