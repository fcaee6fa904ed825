/* Unit tests of windows: statistics against a brute-force recount, edges, disorder, time jumps, fixed memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "window.h"

#define T0	1800000000000LL	/* a multiple of every bucket width used here */

struct pt {
	int64_t ts;
	double v;
};

/* What window_stats should say, computed the slow, obvious way. */
struct expect {
	uint64_t n;
	double mean, stddev, min, max, first_v, last_v, slope, at_last;
	int64_t first_ts, last_ts;
};

static int
close_to(double got, double want, double rel)
{
	return fabs(got - want) <= rel * (fabs(want) > 1 ? fabs(want) : 1);
}

#define assert_close(got, want, rel) do { \
	double g_ = (got), w_ = (want); \
	if (!close_to(g_, w_, rel)) \
		fail_msg("%s = %.17g, want %.17g", #got, g_, w_); \
} while (0)

/* Points whose ts lies in [lo, hi], two passes, times centred on their mean. */
static void
brute(const struct pt *p, size_t n, int64_t lo, int64_t hi, struct expect *x)
{
	double sum = 0, tsum = 0, sxx = 0, sxy = 0, ss = 0, tm;

	memset(x, 0, sizeof(*x));
	for (size_t i = 0; i < n; i++) {
		if (p[i].ts < lo || p[i].ts > hi)
			continue;
		if (x->n == 0 || p[i].v < x->min)
			x->min = p[i].v;
		if (x->n == 0 || p[i].v > x->max)
			x->max = p[i].v;
		if (x->n == 0 || p[i].ts < x->first_ts) {
			x->first_ts = p[i].ts;
			x->first_v = p[i].v;
		}
		if (x->n == 0 || p[i].ts >= x->last_ts) {
			x->last_ts = p[i].ts;
			x->last_v = p[i].v;
		}
		x->n++;
		sum += p[i].v;
		tsum += (double)(p[i].ts - lo) / 1000.0;
	}
	if (x->n == 0)
		return;
	x->mean = sum / (double)x->n;
	tm = tsum / (double)x->n;
	for (size_t i = 0; i < n; i++) {
		double t, d;

		if (p[i].ts < lo || p[i].ts > hi)
			continue;
		t = (double)(p[i].ts - lo) / 1000.0 - tm;
		d = p[i].v - x->mean;
		ss += d * d;
		sxx += t * t;
		sxy += t * d;
	}
	x->stddev = sqrt(ss / (double)x->n);
	x->slope = sxx > 0 ? sxy / sxx : 0;
	x->at_last = x->mean + x->slope * ((double)(x->last_ts - lo) / 1000.0 - tm);
}

static void
check(const struct window_stats *s, const struct expect *x)
{
	assert_int_equal(s->n, x->n);
	assert_close(s->mean, x->mean, 1e-12);
	assert_close(s->stddev, x->stddev, 1e-7);
	assert_true(s->min == x->min);
	assert_true(s->max == x->max);
	assert_int_equal(s->first_ts, x->first_ts);
	assert_int_equal(s->last_ts, x->last_ts);
	assert_true(s->first_v == x->first_v);
	assert_true(s->last_v == x->last_v);
	assert_close(s->slope, x->slope, 1e-7);
	assert_close(s->intercept_at_last, x->at_last, 1e-9);
}

/* The oldest included ts for a window asked at `now`: the first bucket starting after now - len. */
static int64_t
edge(int64_t now, int64_t len)
{
	int64_t w = (len + WINDOW_BUCKETS - 1) / WINDOW_BUCKETS, lo = now - len;

	return (lo / w + 1) * w;
}

static void
test_size_is_fixed(void **state)
{
	(void)state;
	/* The README states this number: memory per (twin, property, window). */
	assert_int_equal(sizeof(struct window_bucket), 104);
	assert_int_equal(sizeof(struct window), 1680);
}

static void
test_basic_stats(void **state)
{
	struct pt p[40];
	struct window w;
	struct window_stats s;
	struct expect x;

	(void)state;
	window_init(&w, 64000);
	assert_int_equal(window_stats(&w, T0, &s), -1);
	for (int i = 0; i < 40; i++) {
		p[i].ts = T0 + i * 1000 + 250;
		p[i].v = 20 + 0.3 * i + ((i * 7) % 5) - 2.0;
		window_add(&w, p[i].ts, p[i].v);
	}
	assert_int_equal(window_stats(&w, T0 + 40000, &s), 0);
	brute(p, 40, T0, T0 + 40000, &x);
	check(&s, &x);
	assert_true(s.has_slope);
}

static void
test_linear_trend(void **state)
{
	struct window w;
	struct window_stats s;
	double f, t;

	(void)state;
	window_init(&w, 60000);
	/* v = 10 + 0.5 per second. */
	for (int i = 0; i <= 30; i++)
		window_add(&w, T0 + i * 1000, 10 + 0.5 * i);
	assert_int_equal(window_stats(&w, T0 + 30000, &s), 0);
	assert_close(s.slope, 0.5, 1e-12);
	assert_close(s.intercept_at_last, 25, 1e-12);
	assert_int_equal(window_forecast(&s, T0 + 40000, &f), 0);
	assert_close(f, 30, 1e-12);
	/* From now (30 s, value 25) to 40: 30 s; to 25 exactly: 0. */
	assert_close(window_time_to(&s, T0 + 30000, 40), 30, 1e-12);
	assert_close(window_time_to(&s, T0 + 30000, 25), 0, 1e-12);
	/* Now later than the data: the line has moved on to 30 at 40 s. */
	assert_close(window_time_to(&s, T0 + 40000, 40), 20, 1e-12);
	/* Below the line and it rises: crossed before now, it never comes back. */
	assert_true(window_time_to(&s, T0 + 30000, 20) == -1);

	/* Falling: v = 100 - 2 per second. */
	window_init(&w, 60000);
	for (int i = 0; i <= 10; i++)
		window_add(&w, T0 + i * 1000, 100 - 2.0 * i);
	assert_int_equal(window_stats(&w, T0 + 10000, &s), 0);
	assert_close(s.slope, -2, 1e-12);
	t = window_time_to(&s, T0 + 10000, 50);
	assert_close(t, 15, 1e-12);
	assert_true(window_time_to(&s, T0 + 10000, 90) == -1);
}

/* The fit's quality, against ordinary least squares done directly. */
static void
fit_check(int n, double tq)
{
	struct window w;
	struct window_stats s;
	double x[256], y[256], xm = 0, ym = 0, sxx = 0, sxy = 0, syy = 0, ssr = 0, b, a, half;
	double x0;

	window_init(&w, 3600000);
	for (int i = 0; i < n; i++) {
		x[i] = i * 2.0;
		y[i] = 3 + 0.2 * x[i] + sin(i * 1.7) * 0.8;
		window_add(&w, T0 + (int64_t)(x[i] * 1000), y[i]);
		xm += x[i] / n;
		ym += y[i] / n;
	}
	for (int i = 0; i < n; i++) {
		sxx += (x[i] - xm) * (x[i] - xm);
		sxy += (x[i] - xm) * (y[i] - ym);
		syy += (y[i] - ym) * (y[i] - ym);
	}
	b = sxy / sxx;
	a = ym - b * xm;
	for (int i = 0; i < n; i++)
		ssr += (y[i] - a - b * x[i]) * (y[i] - a - b * x[i]);
	assert_int_equal(window_stats(&w, T0 + (int64_t)(x[n - 1] * 1000), &s), 0);
	assert_close(s.slope, b, 1e-9);
	assert_close(s.r2, 1 - ssr / syy, 1e-9);
	assert_close(s.resid_sd, sqrt(ssr / (n - 2)), 1e-9);
	/* 60 s after the last point. */
	x0 = x[n - 1] + 60;
	assert_int_equal(window_interval(&s, T0 + (int64_t)(x0 * 1000), &half), 0);
	assert_close(half, tq * sqrt(ssr / (n - 2)) * sqrt(1 + 1.0 / n + (x0 - xm) * (x0 - xm) / sxx),
	    1e-6);
}

/* n readings at once are n readings, one by one. */
static void
test_add_n(void **state)
{
	struct window a, b;
	struct window_stats sa, sb;

	(void)state;
	window_init(&a, 60000);
	window_init(&b, 60000);
	for (int i = 0; i < 10; i++) {
		window_add(&a, T0 + i * 5000, 3.0 + i);
		for (int k = 0; k < 7; k++)
			window_add(&a, T0 + i * 5000 + 100, 9.5);
		window_add(&b, T0 + i * 5000, 3.0 + i);
		window_add_n(&b, T0 + i * 5000 + 100, 9.5, 7);
	}
	window_add_n(&b, T0 + 60000, 1.0, 0);	/* none: nothing */
	assert_int_equal(window_stats(&a, T0 + 50000, &sa), 0);
	assert_int_equal(window_stats(&b, T0 + 50000, &sb), 0);
	assert_int_equal(sa.n, sb.n);
	assert_close(sa.mean, sb.mean, 1e-12);
	assert_close(sa.stddev, sb.stddev, 1e-9);
	assert_close(sa.slope, sb.slope, 1e-9);
	assert_close(sa.r2, sb.r2, 1e-9);
	assert_int_equal(window_bucket_width(&a), 3750);
}

static void
test_fit_quality(void **state)
{
	struct window w;
	struct window_stats s;
	double half;

	(void)state;
	fit_check(5, 3.182);
	fit_check(200, 1.960);
	/* An exact line explains everything and has no spread around it. */
	window_init(&w, 60000);
	for (int i = 0; i <= 30; i++)
		window_add(&w, T0 + i * 1000, 10 + 0.5 * i);
	assert_int_equal(window_stats(&w, T0 + 30000, &s), 0);
	assert_close(s.r2, 1, 1e-9);
	assert_true(s.resid_sd < 1e-6);
	/* Two points: a line, but nothing to judge its spread by. */
	window_init(&w, 60000);
	window_add(&w, T0, 1);
	window_add(&w, T0 + 1000, 2);
	assert_int_equal(window_stats(&w, T0 + 1000, &s), 0);
	assert_int_equal(window_interval(&s, T0 + 2000, &half), -1);
}

static void
test_flat_and_degenerate(void **state)
{
	struct window w;
	struct window_stats s;
	double f;

	(void)state;
	/* Equal values: spread and slope are exactly 0, the line is flat. */
	window_init(&w, 60000);
	for (int i = 0; i < 10; i++)
		window_add(&w, T0 + i * 1000, 0.1);
	assert_int_equal(window_stats(&w, T0 + 10000, &s), 0);
	assert_true(s.stddev == 0);
	assert_true(s.has_slope);
	assert_true(s.slope == 0);
	assert_true(s.min == 0.1 && s.max == 0.1);
	assert_true(window_time_to(&s, T0 + 10000, 1) == -1);
	assert_int_equal(window_forecast(&s, T0 + 99000, &f), 0);
	assert_close(f, 0.1, 1e-12);

	/* One point: no slope. */
	window_init(&w, 60000);
	window_add(&w, T0 + 5000, 7);
	assert_int_equal(window_stats(&w, T0 + 5000, &s), 0);
	assert_int_equal(s.n, 1);
	assert_false(s.has_slope);
	assert_true(s.intercept_at_last == 7);
	assert_int_equal(window_forecast(&s, T0 + 6000, &f), -1);
	assert_true(window_time_to(&s, T0 + 5000, 8) == -1);

	/* Two points at the same time: no slope either. */
	window_add(&w, T0 + 5000, 9);
	assert_int_equal(window_stats(&w, T0 + 5000, &s), 0);
	assert_int_equal(s.n, 2);
	assert_false(s.has_slope);
	assert_true(s.last_v == 9);	/* the later arrival is last on a tie */
	assert_true(s.first_v == 7);

	/* Not numbers: ignored. */
	window_add(&w, T0 + 5001, NAN);
	window_add(&w, T0 + 5001, INFINITY);
	assert_int_equal(window_stats(&w, T0 + 5001, &s), 0);
	assert_int_equal(s.n, 2);
}

static void
test_edge_within_one_bucket(void **state)
{
	enum { N = 6000 };
	static struct pt p[N];
	const int64_t len = 60000, width = len / WINDOW_BUCKETS;
	struct window w;
	struct window_stats s;
	struct expect x;

	(void)state;
	window_init(&w, len);
	/*
	 * One point every 100 ms for 10 minutes, asked as a twin would: at
	 * the newest point or some time after it.
	 */
	for (int i = 0; i < N; i++) {
		static const int64_t after[] = { 0, 1, 1234, 3749, 3750, 20000, 59999 };

		p[i].ts = T0 + i * 100;
		p[i].v = sin(i * 0.01) * 10;
		window_add(&w, p[i].ts, p[i].v);
		if (i % 97 != 0)
			continue;
		for (size_t k = 0; k < sizeof(after) / sizeof(after[0]); k++) {
			int64_t now = p[i].ts + after[k];

			brute(p, (size_t)i + 1, edge(now, len), now, &x);
			if (x.n == 0) {
				assert_int_equal(window_stats(&w, now, &s), -1);
				continue;
			}
			assert_int_equal(window_stats(&w, now, &s), 0);
			/*
			 * Nothing older than the window, nothing more than a
			 * bucket short of it (plus the 100 ms to the next point).
			 */
			assert_true(s.first_ts > now - len);
			assert_true(i < 600 || s.first_ts < now - len + width + 100);
			check(&s, &x);
		}
	}
	/* A minute after the last point, nothing is left. */
	assert_int_equal(window_stats(&w, p[N - 1].ts + len + width, &s), -1);
}

static void
test_out_of_order(void **state)
{
	struct pt p[50];
	struct window a, b;
	struct window_stats sa, sb;
	struct expect x;

	(void)state;
	window_init(&a, 30000);
	window_init(&b, 30000);
	for (int i = 0; i < 50; i++) {
		p[i].ts = T0 + i * 500;
		p[i].v = (i * 37) % 11;
		window_add(&a, p[i].ts, p[i].v);
	}
	/* The same points shuffled: a fixed stride through 50 (coprime with 17). */
	for (int i = 0; i < 50; i++) {
		int j = (i * 17) % 50;

		window_add(&b, p[j].ts, p[j].v);
	}
	assert_int_equal(window_stats(&a, T0 + 25000, &sa), 0);
	assert_int_equal(window_stats(&b, T0 + 25000, &sb), 0);
	brute(p, 50, edge(T0 + 25000, 30000), T0 + 25000, &x);
	check(&sa, &x);
	check(&sb, &x);
	assert_int_equal(sb.first_ts, x.first_ts);
	assert_int_equal(sb.last_ts, T0 + 49 * 500);

	/* A late point older than a window behind the newest is dropped. */
	window_add(&b, T0 + 24500 - 30000, 1000);
	assert_int_equal(window_stats(&b, T0 + 25000, &sb), 0);
	assert_int_equal(sb.n, x.n);
	assert_true(sb.max < 1000);
	/* A late point inside it is kept, and becomes the first. */
	window_add(&b, T0 + 25000 - 20000 - 1, -5);
	assert_int_equal(window_stats(&b, T0 + 25000, &sb), 0);
	assert_int_equal(sb.n, x.n + 1);
	assert_true(sb.min == -5);
}

static void
test_time_jump(void **state)
{
	struct window w;
	struct window_stats s;
	int used = 0;

	(void)state;
	window_init(&w, 60000);
	for (int i = 0; i < 600; i++)
		window_add(&w, T0 + i * 100, i);
	/* A year later: every old bucket goes. */
	window_add(&w, T0 + 365LL * 86400000, 42);
	for (int i = 0; i < WINDOW_BUCKETS; i++)
		used += w.b[i].n > 0;
	assert_int_equal(used, 1);
	assert_int_equal(window_stats(&w, T0 + 59000, &s), -1);
	assert_int_equal(window_stats(&w, T0 + 365LL * 86400000, &s), 0);
	assert_int_equal(s.n, 1);
	assert_true(s.mean == 42);
	/* And the old times are now too old to add. */
	window_add(&w, T0, 1);
	assert_int_equal(window_stats(&w, T0 + 365LL * 86400000, &s), 0);
	assert_int_equal(s.n, 1);
	/* Negative times bucket by floor division; the older point falls out. */
	window_init(&w, 1000);
	window_add(&w, -1500, 3);	/* negative times bucket by floor */
	window_add(&w, -1, 4);
	assert_int_equal(window_stats(&w, 0, &s), 0);
	assert_int_equal(s.n, 1);
	assert_true(s.mean == 4);
}

/*
 * 100,000 points at 1 kHz through a 10 s window: the stats stay exact
 * against a recount, the least-squares sums survive many rebases, and
 * the heap does not move.
 */
static void
test_flat_memory_high_rate(void **state)
{
	enum { N = 100000 };
	static struct pt p[N];
	const int64_t len = 10000;
	struct window w;
	struct window_stats s;
	struct expect x;
	struct mallinfo2 before, after;

	(void)state;
	for (int i = 0; i < N; i++) {
		p[i].ts = T0 + i;
		/* A trend of 0.25 per second plus a wobble. */
		p[i].v = 1000 + 0.00025 * i + ((i * 7919) % 13) * 0.01;
	}
	before = mallinfo2();
	window_init(&w, len);
	for (int i = 0; i < N; i++) {
		window_add(&w, p[i].ts, p[i].v);
		if (i % 9973 == 9972) {
			int64_t now = p[i].ts;

			assert_int_equal(window_stats(&w, now, &s), 0);
			brute(p, N, edge(now, len), now, &x);
			check(&s, &x);
			assert_close(s.slope, 0.25, 1e-2);
		}
	}
	after = mallinfo2();
	assert_true(before.uordblks == after.uordblks);
	assert_int_equal(sizeof(w), 1680);
}

/* Epoch-scale times a long way from the first point: the rebase keeps the slope exact. */
static void
test_precision_after_days(void **state)
{
	struct window w;
	struct window_stats s;
	int64_t t = T0;

	(void)state;
	window_init(&w, 10000);
	/* Three days of one point a second, v = 0.001 per second. */
	for (int i = 0; i < 3 * 86400; i++, t += 1000)
		window_add(&w, t, 0.001 * i);
	assert_int_equal(window_stats(&w, t - 1000, &s), 0);
	assert_close(s.slope, 0.001, 1e-9);
	assert_close(s.intercept_at_last, 0.001 * (3 * 86400 - 1), 1e-9);
	assert_true(s.stddev > 0);
}

static void
test_tiny_window(void **state)
{
	struct window w;
	struct window_stats s;

	(void)state;
	/* 5 ms: buckets 1 ms wide. */
	window_init(&w, 5);
	for (int i = 0; i < 10; i++)
		window_add(&w, T0 + i, i);
	assert_int_equal(window_stats(&w, T0 + 9, &s), 0);
	assert_int_equal(s.n, 5);
	assert_true(s.min == 5 && s.max == 9);
	window_init(&w, 0);
	assert_int_equal(w.len_ms, 1);
}

/* ewma on measurement time: weights by time, older readings left out, extremes stay finite. */
static void
test_ewma(void **state)
{
	struct ewma e = { 0 };
	double v;

	(void)state;
	assert_int_equal(ewma_value(&e, &v), -1);
	ewma_add(&e, 1000, 0, 10);
	ewma_add(&e, 1000, 1000, 20);	/* one half-life: half way */
	assert_int_equal(ewma_value(&e, &v), 0);
	assert_true(fabs(v - 15) < 1e-12);
	ewma_add(&e, 1000, 500, 1000);	/* older than the newest: left out */
	ewma_add(&e, 1000, 1000, 1000);	/* the same time: no weight */
	assert_int_equal(ewma_value(&e, &v), 0);
	assert_true(fabs(v - 15) < 1e-12);
	ewma_add(&e, 1000, 2000, 1e308);
	ewma_add(&e, 1000, 3000, -1e308);
	assert_int_equal(ewma_value(&e, &v), 0);
	assert_true(isfinite(v));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ewma),
		cmocka_unit_test(test_size_is_fixed),
		cmocka_unit_test(test_basic_stats),
		cmocka_unit_test(test_linear_trend),
		cmocka_unit_test(test_fit_quality),
		cmocka_unit_test(test_add_n),
		cmocka_unit_test(test_flat_and_degenerate),
		cmocka_unit_test(test_edge_within_one_bucket),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_time_jump),
		cmocka_unit_test(test_flat_memory_high_rate),
		cmocka_unit_test(test_precision_after_days),
		cmocka_unit_test(test_tiny_window),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
