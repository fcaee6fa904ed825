/*
 * Windows over a numeric series, keyed by measurement time: the state
 * behind avg_over, min_over, max_over, stddev_over, count_over, delta,
 * rate, zscore, forecast and time_to. Memory is fixed per window
 * (WINDOW_BUCKETS sub-buckets), whatever the update rate.
 */
#ifndef TW_WINDOW_H
#define TW_WINDOW_H

#include <stdint.h>

#define WINDOW_BUCKETS	16	/* the window edge is exact to len/16 */

/*
 * Bucket width: len / WINDOW_BUCKETS rounded up, so that the 16 slots
 * always cover a whole window. sizeof(struct window) is 1680 bytes on
 * LP64, whatever the update rate.
 */
struct window_bucket {
	int64_t start_ms;	/* bucket start (a multiple of the bucket width); meaningful when n > 0 */
	uint32_t n;		/* 0: the slot is empty */
	double min, max;	/* double, not float: min_over(p,w) >= 90.1 must hold when every value is 90.1 */
	double sum, sumsq;	/* of values */
	double st, stt, stv;	/* of (ts - ref) in seconds, squared, and times value: least squares */
	double first_v, last_v;
	int64_t first_ts, last_ts;
};

struct window {
	int64_t len_ms;		/* window length */
	int64_t ref_ms;		/* reference time for the least-squares sums (keeps them precise) */
	struct window_bucket b[WINDOW_BUCKETS];
};

/*
 * The aggregate of the buckets whose start lies in (now - len, now]: the
 * edge is exact to one bucket width (a point up to len/16 younger than
 * now - len may be left out; none older is counted). `now_ms` is meant
 * to be at or after the newest value added (the twin's clock): earlier,
 * the window no longer holds what was older than newest - len.
 */
struct window_stats {
	uint64_t n;
	double min, max, mean, stddev;	/* population standard deviation */
	double first_v, last_v;		/* oldest and newest values in the window */
	int64_t first_ts, last_ts;
	double slope;			/* least-squares slope, per second; 0 without has_slope, exactly 0 when min == max */
	double intercept_at_last;	/* the fitted line's value at last_ts (the mean without has_slope) */
	int has_slope;			/* 1 when n >= 2 and the times differ */
	/* The fit's quality, for a forecast's interval (meaningful with has_slope). */
	double r2;			/* share of the variance the line explains; 1 when the values are equal */
	double resid_sd;		/* residual standard deviation, sqrt(SSR / (n - 2)); 0 for n == 2 */
	double t_mean_s;		/* mean time of the points, seconds after last_ts (<= 0) */
	double sxx;			/* sum of (t - t_mean)^2, seconds^2 */
};

/* Empties `w` and sets its length (> 0; anything less is taken as 1 ms). */
void window_init(struct window *w, int64_t len_ms);
/*
 * Adds a value at measurement time `ts_ms`. Values older than the
 * window's newest bucket minus its length are ignored (they would be
 * outside any window asked later); out-of-order values inside it are kept.
 * Non-finite values and times beyond +-2^62 ms are ignored. Never allocates.
 */
void window_add(struct window *w, int64_t ts_ms, double v);
/* As window_add, for `n` readings of `v` at `ts_ms` (a what-if's held value, in chunks). */
void window_add_n(struct window *w, int64_t ts_ms, double v, uint32_t n);
/* a / b rounded towards minus infinity (b > 0): the grid of buckets, shared with quantile.h. */
int64_t window_floor_div(int64_t a, int64_t b);
/* The bucket width: the window's edge is exact to it. */
int64_t window_bucket_width(const struct window *w);
/* Aggregates the window ending at `now_ms`; returns 0 with `out` filled, or -1 when empty. */
int window_stats(const struct window *w, int64_t now_ms, struct window_stats *out);
/*
 * As window_stats for the part of the window that ends `skip_ms` before
 * `now_ms` (avg_over(p, 7d, skip=1d) keeps a window of 8 days and asks for
 * its older 7): the buckets that start after now - len and end by
 * now - skip, so that nothing of the skipped part is in (up to one bucket
 * before it is left out too).
 */
int window_stats_skip(const struct window *w, int64_t now_ms, int64_t skip_ms,
    struct window_stats *out);

/*
 * ewma(p, half_life): an exponentially weighted mean on measurement time,
 * so that irregular readings weigh by the time they stand for: a reading
 * dt after the last moves the mean by 1 - 2^(-dt / half_life). A reading
 * older than the newest taken is ignored. 24 bytes.
 */
struct ewma {
	double v;
	int64_t ts;
	int has;
};

void ewma_add(struct ewma *e, int64_t half_ms, int64_t ts_ms, double v);
/* 0 with the mean, -1 before the first reading. */
int ewma_value(const struct ewma *e, double *out);

/* The least-squares line's value at `at_ms`; returns 0, or -1 without a slope. */
int window_forecast(const struct window_stats *s, int64_t at_ms, double *out);
/*
 * The half-width of the 95 % prediction interval of one new reading at
 * `at_ms` around the line: t(0.975, n - 2) x resid_sd x
 * sqrt(1 + 1/n + (t - t_mean)^2 / sxx). Returns 0, or -1 without a
 * slope or with fewer than 3 points (no residual to judge by).
 */
int window_interval(const struct window_stats *s, int64_t at_ms, double *half);

/*
 * Seconds from `now_ms` until the line reaches `limit`, or -1 when it
 * never does (no slope, flat, or moving away, or crossed in the past).
 * For a straight line "moving away" and "crossed before now" are the same
 * case: the fitted value at now is beyond the limit in the direction the
 * line travels. That gives -1, not 0: otherwise time_to(t,5m,90) < 600
 * would hold for any temperature below 90 that is falling. Exactly at
 * the limit now gives 0.
 */
double window_time_to(const struct window_stats *s, int64_t now_ms, double limit);

#endif
