/* Unit tests of quantile windows: exact while small, a bounded rank error beyond, edges, replays, fixed memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "quantile.h"

#define T0	1800000000000LL	/* a multiple of every sixteenth used here */

static struct quantile q, q2;

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The quantile as most tools define it: linear between the two nearest of the sorted values. */
static double
exact(double *v, int n, double p)
{
	double h = p * (n - 1);
	int i = (int)h;

	qsort(v, (size_t)n, sizeof(*v), cmp);
	return i + 1 < n ? v[i] + (h - i) * (v[i + 1] - v[i]) : v[i];
}

static double
value(struct quantile *w, int64_t now, double p)
{
	double out = NAN;

	assert_int_equal(quantile_value(w, now, p, &out), 0);
	return out;
}

/* A small pseudo-random sequence, the same on every run. */
static double
noise(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(*s >> 11) / 9007199254740992.0;
}

/*
 * For U(0, 1) readings in `q` (window 16 s ending at T0 + 16 s), 19
 * quantiles' rank errors within 4 standard deviations of a sample of
 * `kept` readings; returns the worst, in those deviations.
 */
static double
worst_rank_error(int kept)
{
	double worst = 0;

	for (int k = 1; k < 20; k++) {
		double p = k / 20.0, err = fabs(value(&q, T0 + 15999, p) - p);
		double sd = sqrt(p * (1 - p) / kept);

		if (err / sd > worst)
			worst = err / sd;
		assert_true(err < 4 * sd);
	}
	return worst;
}

static void
test_exact_while_small(void **state)
{
	double v[200], c[200];
	uint64_t s = 1;

	(void)state;
	quantile_init(&q, 16000);
	assert_int_equal(quantile_value(&q, T0, 0.5, &v[0]), -1);	/* empty */
	for (int i = 0; i < 200; i++) {
		v[i] = 20 + 60 * noise(&s);
		quantile_add(&q, T0 + i * 80, v[i], 1);	/* 200 over 16 s: 12 or 13 a sixteenth */
	}
	for (int k = 0; k <= 20; k++) {
		memcpy(c, v, sizeof(v));
		assert_true(fabs(value(&q, T0 + 15999, k / 20.0) - exact(c, 200, k / 20.0)) < 1e-12);
	}
	/* Two readings: the median is their mean; p outside [0, 1] is no quantile. */
	quantile_init(&q, 1000);
	quantile_add(&q, T0, 1, 1);
	quantile_add(&q, T0 + 1, 4, 1);
	assert_true(value(&q, T0 + 1, 0.5) == 2.5);
	assert_int_equal(quantile_value(&q, T0 + 1, 1.5, &v[0]), -1);
	assert_int_equal(quantile_value(&q, T0 + 1, NAN, &v[0]), -1);
	/* Non-finite readings are not readings. */
	quantile_add(&q, T0 + 2, NAN, 1);
	quantile_add(&q, T0 + 2, INFINITY, 1);
	assert_true(value(&q, T0 + 2, 1) == 4);
}

static void
test_window_edge_and_order(void **state)
{
	(void)state;
	quantile_init(&q, 16000);	/* sixteenths of 1 s */
	for (int i = 0; i < 32; i++)
		quantile_add(&q, T0 + i * 1000, i, 1);
	/* At T0 + 31 s the window holds the sixteenths starting after T0 + 15 s: 16..31. */
	assert_true(value(&q, T0 + 31000, 0) == 16);
	assert_true(value(&q, T0 + 31000, 1) == 31);
	/* A reading older than the window's reach is ignored; one inside it, out of order, is kept. */
	quantile_add(&q, T0 + 2000, -100, 1);
	assert_true(value(&q, T0 + 31000, 0) == 16);
	quantile_add(&q, T0 + 20500, -5, 1);
	assert_true(value(&q, T0 + 31000, 0) == -5);
	/* Later, without new readings, it empties. */
	assert_int_equal(quantile_value(&q, T0 + 60000, 0.5, &(double){ 0 }), -1);
}

/*
 * 200,000 readings of U(0, 1) in one window: each sixteenth keeps 32 to 64
 * of them, so the answer's rank error has a standard deviation of at most
 * sqrt(p (1 - p) / 512): 0.022 for the median. Checked at 4 of those.
 */
static void
test_sampled_rank_error_is_bounded(void **state)
{
	uint64_t s = 7;

	(void)state;
	quantile_init(&q, 16000);
	for (int i = 0; i < 200000; i++)
		quantile_add(&q, T0 + i * 16000LL / 200000, noise(&s), 1);
	print_message("worst rank error: %.2f standard deviations\n", worst_rank_error(512));
	/* Kept between 32 and 64 a sixteenth: bounded memory whatever the rate. */
	for (int i = 0; i < QUANTILE_BUCKETS; i++)
		assert_true(q.b[i].m >= QUANTILE_SLOTS / 2 && q.b[i].m <= QUANTILE_SLOTS);
}

/* All readings in one sixteenth: 32 to 64 kept stand for all, the error bound of 32. */
static void
test_sampled_in_one_sixteenth(void **state)
{
	uint64_t s = 3;

	(void)state;
	quantile_init(&q, 16000);
	for (int i = 0; i < 200000; i++)
		quantile_add(&q, T0 + 15000 + i * 1000LL / 200000, noise(&s), 1);
	print_message("worst rank error in one sixteenth: %.2f standard deviations\n",
	    worst_rank_error(32));
}

/* The same readings give the same answer (a what-if, a backtest); a unit change is the same answer in it. */
static void
test_replay_and_units(void **state)
{
	uint64_t s = 11;

	(void)state;
	quantile_init(&q, 60000);
	quantile_init(&q2, 60000);
	for (int i = 0; i < 50000; i++) {
		double v = 50 + 10 * noise(&s);

		quantile_add(&q, T0 + i, v, 1);
		quantile_add(&q2, T0 + i, v * 1.8 + 32, 1);	/* in degrees Fahrenheit */
	}
	for (int k = 0; k <= 10; k++) {
		double c = value(&q, T0 + 49999, k / 10.0), f = value(&q2, T0 + 49999, k / 10.0);

		assert_true(fabs(f - (c * 1.8 + 32)) < 1e-9 * fabs(f));
	}
	/* Replayed into a fresh window, the same readings give the very same window. */
	s = 11;
	quantile_init(&q2, 60000);
	for (int i = 0; i < 50000; i++)
		quantile_add(&q2, T0 + i, 50 + 10 * noise(&s), 1);
	assert_memory_equal(q.b, q2.b, sizeof(q.b));
}

/* n readings at once (a what-if's held value) are n readings. */
static void
test_held_readings(void **state)
{
	(void)state;
	quantile_init(&q, 16000);
	quantile_add(&q, T0, 10, 1);
	quantile_add(&q, T0 + 100, 20, 99);
	/* Past 64 readings a sixteenth samples, but its smallest and largest stay exact. */
	assert_true(value(&q, T0 + 200, 0) == 10);
	assert_true(value(&q, T0 + 200, 0.5) == 20);
	assert_int_equal(q.b[0].n, 100);
	quantile_init(&q, 16000);
	quantile_add(&q, T0, 1, 100000);
	quantile_add(&q, T0, 2, 100000);
	assert_int_equal(q.b[0].n, 200000);
	assert_true(q.b[0].m <= QUANTILE_SLOTS);
	assert_true(fabs(value(&q, T0, 0.25) - 1) < 1e-12 && fabs(value(&q, T0, 0.75) - 2) < 1e-12);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_while_small),
		cmocka_unit_test(test_window_edge_and_order),
		cmocka_unit_test(test_sampled_rank_error_is_bounded),
		cmocka_unit_test(test_sampled_in_one_sixteenth),
		cmocka_unit_test(test_replay_and_units),
		cmocka_unit_test(test_held_readings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
