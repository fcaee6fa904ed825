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

#define T0	1800000000000LL

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

/* A reading every 5 minutes, the rate the thresholds are stated at. */
static void
feed(struct anomaly *a, double v)
{
	anomaly_add(a, a->n == 0 ? T0 : a->last_ts + 300000, v);
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
		feed(&a, 5);
		assert_int_equal(anomaly_score(&a, 1, &s), -1);
	}
	/* A constant series has no span to judge in: still unknown. */
	feed(&a, 5);
	assert_int_equal(anomaly_score(&a, 1, &s), -1);
	feed(&a, NAN);
	feed(&a, INFINITY);
	assert_int_equal(a.n, ANOMALY_WARMUP + 1);
	/* The first change gives it a span; the many 5s were kept, so 6 is rare. */
	feed(&a, 6);
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

		feed(&a[0], v);
		feed(&a[1], v * 1000);
		feed(&a[2], v + 12345.678);
		feed(&a[3], -v);
		feed(&a[4], v * 1.8 + 32);
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
		feed(&a, normal_reading(i, &seed));
		if (i > ANOMALY_WARMUP + 300 && score(&a) > 0.999)
			high++;
	}
	/* Ordinary readings seldom pass the default threshold. */
	assert_true(high < 10);
	/* A spike far outside anything seen. */
	feed(&a, 60);
	assert_true(score(&a) > 0.999);
	feed(&a, normal_reading(i++, &seed));
	assert_true(score(&a) < 0.97);
	/* A lasting step to a level seen before only at the edge: caught as a shift... */
	high = 0;
	for (int k = 0; k < 60; k++, i++) {
		feed(&a, normal_reading(i, &seed) + 4);
		high += score(&a) > 0.999;
	}
	assert_true(high > 0);
	/* ... then learned as the new normal: it stops firing. */
	for (int k = 0; k < 3000; k++, i++)
		feed(&a, normal_reading(i, &seed) + 4);
	high = 0;
	for (int k = 0; k < 300; k++, i++) {
		feed(&a, normal_reading(i, &seed) + 4);
		high += score(&a) > 0.999;
	}
	assert_true(high < 3);
	/* Sensitivity scales the severity. */
	{
		double s1, s2;

		feed(&a, 40);
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
		feed(&a, normal_reading(i, &seed) * (i % 97 == 0 ? 5 : 1));
	anomaly_save(&a, buf);
	anomaly_init(&b);
	assert_int_equal(anomaly_load(&b, buf, sizeof(buf)), 0);
	/* Read back, it goes on exactly as the original. */
	for (int i = 1000; i < 1500; i++) {
		double v = normal_reading(i, &seed);

		feed(&a, v);
		feed(&b, v);
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
		feed(&a, normal_reading(i, &seed));
	feed(&a, -9999);
	assert_true(score(&a) > 0.999);
	/* The bins still fit the usual values: a spike to 60 is seen at once. */
	assert_true(a.lo > 0 && a.hi < 100);
	feed(&a, normal_reading(i++, &seed));
	feed(&a, 60);
	assert_true(score(&a) > 0.999);
	/* A new regime a thousand away: judged at first, then learned as normal. */
	for (int k = 0; k < 4000; k++, i++) {
		feed(&a, normal_reading(i, &seed) + 1000);
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
		feed(&a, normal_reading(i, &seed));
	feed(&a, 65535);
	for (; i < 5000; i++)
		feed(&a, normal_reading(i, &seed));
	assert_true(a.hi < 100);
	feed(&a, 60);
	assert_true(score(&a) > 0.999);
	/* Running (about 20) two hours, stopped (0, far below) one: learned, then quiet. */
	for (int k = 0; k < 36 * 40; k++, i++) {
		double v = k % 36 < 24 ? normal_reading(i, &seed) : 0;

		feed(&a, v);
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
	assert_true(sizeof(struct anomaly) <= 640);
	assert_int_equal(ANOMALY_STATE_BYTES, 632);
}

/* Independent Gaussian noise around 60, sd 0.3, as the simulator's healthy pumps. */
static double
gauss(uint64_t *s)
{
	double u, v;

	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	u = ((*s >> 11) + 0.5) / 9007199254740992.0;
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	v = ((*s >> 11) + 0.5) / 9007199254740992.0;
	return 60 + 0.3 * sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/*
 * Read twice a second, a healthy series is held to as few false alarms a
 * day as one read every 5 minutes: none in 14 hours of noise (1 reading in
 * 53 passed 0.999 when the thresholds were per reading; a pump then raised
 * one within a minute of its warm-up). A real fault still shows at once.
 */
static void
test_fast_series_quiet_on_noise(void **state)
{
	struct anomaly a;
	uint64_t seed = 88172645463325252ULL;
	int64_t ts = T0;
	int high = 0, i;

	(void)state;
	anomaly_init(&a);
	for (i = 0; i < 100000; i++, ts += 500) {
		anomaly_add(&a, ts, gauss(&seed));
		high += score(&a) > 0.999;
	}
	assert_int_equal(high, 0);
	assert_true(fabs(a.rate_s / a.rate_n - 0.5) < 0.01);
	/* A gap of an hour, then the same rate: the usual interval hardly moves. */
	ts += 3600000;
	for (i = 0; i < 3; i++, ts += 500)
		anomaly_add(&a, ts, gauss(&seed));
	assert_true(a.rate_s / a.rate_n < 0.6);
	/* With a day of readings, the histogram itself judges: 6 standard deviations are unusual. */
	for (i = 0; i < 80000; i++, ts += 500)
		anomaly_add(&a, ts, gauss(&seed));
	anomaly_add(&a, ts, 61.8);
	assert_true(score(&a) > 0.999);
}

/* A pump that starts overheating, read every 50 ms: unusual long before a hand-written 85. */
static void
test_fast_series_ramp(void **state)
{
	struct anomaly a;
	uint64_t seed = 7;
	int64_t ts = T0;
	double v = 0;
	int i;

	(void)state;
	anomaly_init(&a);
	for (i = 0; i < 5000; i++, ts += 50)
		anomaly_add(&a, ts, gauss(&seed));
	for (i = 0; i < 1000; i++, ts += 50) {
		v = gauss(&seed) + 0.01 * i;
		anomaly_add(&a, ts, v);
		if (score(&a) > 0.999)
			break;
	}
	/*
	 * In its first minutes the tail is extrapolated from the quartiles,
	 * which errs towards quiet: some 15 standard deviations out.
	 */
	assert_true(i < 1000);
	assert_true(v < 66);
}

/*
 * The rate is readings per second, however uneven: a pair detector fed by
 * two records 5 ms apart every 5 minutes is two readings a cycle (as an
 * interval learned by its geometric mean, 6.5 ms, it went blind); a burst
 * of 200 readings 1 ms apart moves it by its share of an hour's readings
 * only, and a reading beyond all seen is still unusual after it.
 */
static void
test_rate_of_uneven_readings(void **state)
{
	struct anomaly a, b;
	uint64_t seed = 3;
	int64_t ts = T0;
	int i;

	(void)state;
	anomaly_init(&a);
	for (i = 0; i < 4032; i++) {
		anomaly_add(&a, ts, gauss(&seed));
		ts += i % 2 == 0 ? 5 : 300000 - 5;
	}
	assert_true(a.rate_s / a.rate_n > 140 && a.rate_s / a.rate_n < 160);
	anomaly_init(&b);
	for (i = 0, ts = T0; i < 4032; i++, ts += 300000)
		anomaly_add(&b, ts, gauss(&seed));
	for (i = 0; i < 200; i++)
		anomaly_add(&b, ++ts, gauss(&seed));
	assert_true(b.rate_s / b.rate_n > 10);
	anomaly_add(&b, ts + 300000, 61.5);
	assert_true(score(&b) > 0.999);
	/* A saved clock far ahead does not stop the learning: it starts again. */
	b.last_ts = INT64_MAX;
	b.rate_n = b.rate_s = 0;
	anomaly_add(&b, ts + 600000, gauss(&seed));
	anomaly_add(&b, ts + 900000, gauss(&seed));
	assert_true(b.rate_n == 1 && b.rate_s == 300);
}

/*
 * A pump that stops for 12 minutes an hour, read every second: its
 * stopped readings are a second mode, not beyond all seen, and are not
 * unusual once it has stopped a few times (the tail model, which judges
 * only beyond all seen, called 9,360 of them unusual when it judged
 * anything past the quartile).
 */
static void
test_fast_duty_cycle(void **state)
{
	struct anomaly a;
	uint64_t seed = 9;
	int64_t ts = T0;
	int high = 0;

	(void)state;
	anomaly_init(&a);
	for (int i = 0; i < 86400; i++, ts += 1000) {
		int off = i % 3600 >= 2880;

		anomaly_add(&a, ts, off ? gauss(&seed) - 35 : gauss(&seed));
		if (off && i >= 3 * 3600)
			high += score(&a) > 0.999;
	}
	assert_int_equal(high, 0);
}

/* A state saved before the rate was kept (600 bytes, "twA2") reads back and learns its rate. */
static void
test_saved_state_without_rate(void **state)
{
	struct anomaly a, b;
	unsigned char buf[ANOMALY_STATE_BYTES], old[600];
	uint32_t seed = 5;

	(void)state;
	anomaly_init(&a);
	for (int i = 0; i < 1000; i++)
		feed(&a, normal_reading(i, &seed));
	anomaly_save(&a, buf);
	memcpy(old, buf, sizeof(old));
	memcpy(old, "twA2", 4);
	old[10] = 0;
	anomaly_init(&b);
	assert_int_equal(anomaly_load(&b, old, sizeof(old)), 0);
	assert_true(b.rate_n == 0 && b.rate_s == 0 && b.last_ts == 0);
	assert_int_equal(b.n, a.n);
	assert_true(b.nbase == a.nbase && b.lo == a.lo && b.hi == a.hi);
	/* The first reading after it sets the clock; the next one the rate. */
	anomaly_add(&b, T0 + 1000, 20);
	assert_true(b.rate_n == 0 && b.last_ts == T0 + 1000);
	anomaly_add(&b, T0 + 1500, 20);
	assert_true(b.rate_n == 1 && b.rate_s == 0.5);
	/* A 632-byte state named twA2, or a 600-byte one named twA3, is not one. */
	assert_int_equal(anomaly_load(&b, buf, sizeof(old)), -1);
	memcpy(buf, "twA2", 4);
	assert_int_equal(anomaly_load(&b, buf, sizeof(buf)), -1);
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
		cmocka_unit_test(test_fast_series_quiet_on_noise),
		cmocka_unit_test(test_fast_series_ramp),
		cmocka_unit_test(test_saved_state_without_rate),
		cmocka_unit_test(test_rate_of_uneven_readings),
		cmocka_unit_test(test_fast_duty_cycle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
