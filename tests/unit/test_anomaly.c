/* Unit tests of the anomaly() detector: warm-up, invariance, spikes, shifts, a new normal, saved state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "anomaly.h"

/* A deterministic noisy series: a daily-ish wave plus noise, in [-1, 1] roughly. */
static double
noise(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return ((double)(*s >> 8) / (double)(1u << 24)) * 2 - 1;
}

static double
normal_reading(int i, uint32_t *s)
{
	return 20 + 3 * sin(i * 2 * M_PI / 288) + noise(s);
}

static double
score(const struct anomaly *a)
{
	double s = -1;

	return anomaly_score(a, 1, &s) == 0 ? s : -1;
}

static void
test_warmup_and_constant(void **state)
{
	struct anomaly a;
	double s;

	(void)state;
	anomaly_init(&a);
	for (int i = 0; i < ANOMALY_WARMUP; i++) {
		anomaly_add(&a, 5);
		assert_int_equal(anomaly_score(&a, 1, &s), -1);
	}
	/* A constant series has no span to judge in: still unknown. */
	anomaly_add(&a, 5);
	assert_int_equal(anomaly_score(&a, 1, &s), -1);
	anomaly_add(&a, NAN);
	anomaly_add(&a, INFINITY);
	assert_int_equal(a.n, ANOMALY_WARMUP + 1);
	/* The first change gives it a span; the many 5s were kept, so 6 is rare. */
	anomaly_add(&a, 6);
	assert_int_equal(anomaly_score(&a, 1, &s), 0);
	assert_true(s > 0.999);
	assert_int_equal(anomaly_score(&a, 0, &s), -1);
}

/* The same scores for the series scaled, offset, negated and in Fahrenheit. */
static void
test_scale_free(void **state)
{
	struct anomaly a[5];
	uint32_t seed = 7;

	(void)state;
	for (int k = 0; k < 5; k++)
		anomaly_init(&a[k]);
	for (int i = 0; i < 4000; i++) {
		double v = normal_reading(i, &seed) + (i == 3000 ? 15 : 0) + (i > 3500 ? 6 : 0);
		double s0;

		anomaly_add(&a[0], v);
		anomaly_add(&a[1], v * 1000);
		anomaly_add(&a[2], v + 12345.678);
		anomaly_add(&a[3], -v);
		anomaly_add(&a[4], v * 1.8 + 32);
		s0 = score(&a[0]);
		for (int k = 1; k < 5; k++)
			if (fabs(score(&a[k]) - s0) > 1e-6)
				fail_msg("reading %d: series %d scores %.9f, the original %.9f", i, k,
				    score(&a[k]), s0);
	}
}

static void
test_spike_and_shift(void **state)
{
	struct anomaly a;
	uint32_t seed = 11;
	int high = 0, i;

	(void)state;
	anomaly_init(&a);
	for (i = 0; i < 3000; i++) {
		anomaly_add(&a, normal_reading(i, &seed));
		if (i > ANOMALY_WARMUP + 300 && score(&a) > 0.999)
			high++;
	}
	/* Ordinary readings seldom pass the default threshold. */
	assert_true(high < 10);
	/* A spike far outside anything seen. */
	anomaly_add(&a, 60);
	assert_true(score(&a) > 0.999);
	anomaly_add(&a, normal_reading(i++, &seed));
	assert_true(score(&a) < 0.97);
	/* A lasting step to a level seen before only at the edge: caught as a shift... */
	high = 0;
	for (int k = 0; k < 60; k++, i++) {
		anomaly_add(&a, normal_reading(i, &seed) + 4);
		high += score(&a) > 0.999;
	}
	assert_true(high > 0);
	/* ... then learned as the new normal: it stops firing. */
	for (int k = 0; k < 3000; k++, i++)
		anomaly_add(&a, normal_reading(i, &seed) + 4);
	high = 0;
	for (int k = 0; k < 300; k++, i++) {
		anomaly_add(&a, normal_reading(i, &seed) + 4);
		high += score(&a) > 0.999;
	}
	assert_true(high < 3);
	/* Sensitivity scales the severity. */
	{
		double s1, s2;

		anomaly_add(&a, 40);
		assert_int_equal(anomaly_score(&a, 1, &s1), 0);
		assert_int_equal(anomaly_score(&a, 0.5, &s2), 0);
		assert_true(s2 < s1);
	}
}

static void
test_saved_state(void **state)
{
	struct anomaly a, b, c;
	unsigned char buf[ANOMALY_STATE_BYTES], bad[ANOMALY_STATE_BYTES];
	uint32_t seed = 3;

	(void)state;
	anomaly_init(&a);
	for (int i = 0; i < 1000; i++)
		anomaly_add(&a, normal_reading(i, &seed) * (i % 97 == 0 ? 5 : 1));
	anomaly_save(&a, buf);
	anomaly_init(&b);
	assert_int_equal(anomaly_load(&b, buf, sizeof(buf)), 0);
	/* Read back, it goes on exactly as the original. */
	for (int i = 1000; i < 1500; i++) {
		double v = normal_reading(i, &seed);

		anomaly_add(&a, v);
		anomaly_add(&b, v);
		assert_true(score(&a) == score(&b));
	}
	/* What is not a state is refused, and changes nothing. */
	anomaly_init(&c);
	assert_int_equal(anomaly_load(&c, buf, sizeof(buf) - 1), -1);
	memcpy(bad, buf, sizeof(bad));
	bad[0] = 'x';
	assert_int_equal(anomaly_load(&c, bad, sizeof(bad)), -1);
	memcpy(bad, buf, sizeof(bad));
	bad[8] = 2;
	assert_int_equal(anomaly_load(&c, bad, sizeof(bad)), -1);
	memcpy(bad, buf, sizeof(bad));
	memset(bad + 16 + 9 * 8, 0xff, 8);	/* base[0] = NaN */
	assert_int_equal(anomaly_load(&c, bad, sizeof(bad)), -1);
	memcpy(bad, buf, sizeof(bad));
	memcpy(bad + 16 + 8, bad + 16, 8);	/* hi = lo */
	assert_int_equal(anomaly_load(&c, bad, sizeof(bad)), -1);
	assert_int_equal(c.n, 0);
}

/* One glitch far out (an error code) is judged, not learned; a lasting far regime is learned. */
static void
test_glitch_and_far_regime(void **state)
{
	struct anomaly a;
	uint32_t seed = 13;
	int i = 0, high = 0;

	(void)state;
	anomaly_init(&a);
	for (; i < 3000; i++)
		anomaly_add(&a, normal_reading(i, &seed));
	anomaly_add(&a, -9999);
	assert_true(score(&a) > 0.999);
	/* The bins still fit the usual values: a spike to 60 is seen at once. */
	assert_true(a.lo > 0 && a.hi < 100);
	anomaly_add(&a, normal_reading(i++, &seed));
	anomaly_add(&a, 60);
	assert_true(score(&a) > 0.999);
	/* A new regime a thousand away: judged at first, then learned as normal. */
	for (int k = 0; k < 4000; k++, i++) {
		anomaly_add(&a, normal_reading(i, &seed) + 1000);
		if (k >= 3700)
			high += score(&a) > 0.999;
	}
	assert_true(a.hi > 1000);
	assert_true(high < 5);
}

/* A glitch in the first minutes, and a pump that starts stopping an hour in three. */
static void
test_early_glitch_and_duty_cycle(void **state)
{
	struct anomaly a;
	uint32_t seed = 17;
	int i = 0, high = 0;

	(void)state;
	anomaly_init(&a);
	for (; i < 50; i++)
		anomaly_add(&a, normal_reading(i, &seed));
	anomaly_add(&a, 65535);
	for (; i < 5000; i++)
		anomaly_add(&a, normal_reading(i, &seed));
	assert_true(a.hi < 100);
	anomaly_add(&a, 60);
	assert_true(score(&a) > 0.999);
	/* Running (about 20) two hours, stopped (0, far below) one: learned, then quiet. */
	for (int k = 0; k < 36 * 40; k++, i++) {
		double v = k % 36 < 24 ? normal_reading(i, &seed) : 0;

		anomaly_add(&a, v);
		if (k >= 36 * 20 && v == 0)
			high += score(&a) > 0.999;
	}
	assert_true(a.lo < 0);
	assert_true(high < 20);
}

/* The state's size, as the README states it (its cost is measured by make bench). */
static void
test_bounded(void **state)
{
	(void)state;
	assert_true(sizeof(struct anomaly) <= 616);
	assert_int_equal(ANOMALY_STATE_BYTES, 600);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_warmup_and_constant),
		cmocka_unit_test(test_scale_free),
		cmocka_unit_test(test_spike_and_shift),
		cmocka_unit_test(test_saved_state),
		cmocka_unit_test(test_glitch_and_far_regime),
		cmocka_unit_test(test_early_glitch_and_duty_cycle),
		cmocka_unit_test(test_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
