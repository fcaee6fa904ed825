/* Fixed-memory windows over a numeric series: per-bucket sums give mean, spread, extremes and a least-squares trend. */
#include <math.h>
#include <string.h>

#include "window.h"

/* Times beyond this are ignored, so that ts - len and friends never overflow. */
#define TS_LIMIT	(INT64_C(1) << 62)
/*
 * The least-squares sums are kept relative to ref_ms. Once the data is
 * further than this (or the window length, if longer) from ref_ms, the
 * sums move to a new ref: t and t^2 stay of the order of the window, so
 * N*Stt - St^2 does not lose its digits to cancellation.
 */
#define REBASE_MIN_MS	60000

static int64_t
bucket_width(const struct window *w)
{
	return (w->len_ms + WINDOW_BUCKETS - 1) / WINDOW_BUCKETS;
}

int64_t
window_floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	if (a % b != 0 && (a < 0) != (b < 0))
		q--;
	return q;
}

static struct window_bucket *
slot_of(struct window *w, int64_t start, int64_t width)
{
	int64_t i = window_floor_div(start, width) % WINDOW_BUCKETS;

	if (i < 0)
		i += WINDOW_BUCKETS;
	return &w->b[i];
}

void
window_init(struct window *w, int64_t len_ms)
{
	memset(w, 0, sizeof(*w));
	w->len_ms = len_ms > 0 ? len_ms : 1;
}

/* Moves the least-squares sums of every bucket to a new reference time. */
static void
window_rebase(struct window *w, int64_t ref_ms)
{
	double d = (double)(ref_ms - w->ref_ms) / 1000.0;

	for (int i = 0; i < WINDOW_BUCKETS; i++) {
		struct window_bucket *b = &w->b[i];

		if (b->n == 0)
			continue;
		/* t' = t - d: expand the sums of t', t'^2 and t'v. */
		b->stt = b->stt - 2.0 * d * b->st + (double)b->n * d * d;
		b->stv = b->stv - d * b->sum;
		b->st = b->st - (double)b->n * d;
	}
	w->ref_ms = ref_ms;
}

/*
 * Opens the bucket starting at `start` for a value at `ts`; returns NULL
 * when the value is too old to matter. Buckets that fall out of reach of
 * a new newest bucket are emptied here, so every non-empty bucket is
 * always within one window length of the newest.
 */
static struct window_bucket *
window_open(struct window *w, int64_t start, int64_t width, int64_t ts)
{
	struct window_bucket *b;
	int64_t newest = INT64_MIN, rebase;
	int used = 0;

	for (int i = 0; i < WINDOW_BUCKETS; i++) {
		if (w->b[i].n == 0)
			continue;
		used++;
		if (w->b[i].start_ms > newest)
			newest = w->b[i].start_ms;
	}
	if (used > 0 && start <= newest - w->len_ms)
		return NULL;
	if (used > 0 && start > newest) {
		for (int i = 0; i < WINDOW_BUCKETS; i++) {
			if (w->b[i].n > 0 && w->b[i].start_ms <= start - w->len_ms) {
				memset(&w->b[i], 0, sizeof(w->b[i]));
				used--;
			}
		}
	}
	/*
	 * Whatever the slot holds now is a bucket a multiple of 16 widths
	 * (>= len) away from `start`, so it is stale: reuse it.
	 */
	b = slot_of(w, start, width);
	if (b->n > 0)
		used--;
	memset(b, 0, sizeof(*b));
	b->start_ms = start;

	rebase = w->len_ms > REBASE_MIN_MS ? w->len_ms : REBASE_MIN_MS;
	if (used == 0)
		w->ref_ms = ts;
	else if (start - w->ref_ms > rebase || w->ref_ms - start > rebase)
		window_rebase(w, start);
	return b;
}

int64_t
window_bucket_width(const struct window *w)
{
	return bucket_width(w);
}

void
window_add(struct window *w, int64_t ts, double v)
{
	window_add_n(w, ts, v, 1);
}

void
window_add_n(struct window *w, int64_t ts, double v, uint32_t n)
{
	struct window_bucket *b;
	int64_t width, start;
	double t;

	if (!isfinite(v) || ts > TS_LIMIT || ts < -TS_LIMIT || n == 0)
		return;
	width = bucket_width(w);
	start = window_floor_div(ts, width) * width;
	b = slot_of(w, start, width);
	/* The common case, many points per bucket, needs no scan. */
	if (b->n == 0 || b->start_ms != start) {
		if ((b = window_open(w, start, width, ts)) == NULL)
			return;
	}
	if (b->n == 0) {
		b->min = b->max = v;
		b->first_v = b->last_v = v;
		b->first_ts = b->last_ts = ts;
	} else {
		if (v < b->min)
			b->min = v;
		if (v > b->max)
			b->max = v;
		/* Ties: the first to arrive stays first, the last to arrive is last. */
		if (ts < b->first_ts) {
			b->first_ts = ts;
			b->first_v = v;
		}
		if (ts >= b->last_ts) {
			b->last_ts = ts;
			b->last_v = v;
		}
	}
	t = (double)(ts - w->ref_ms) / 1000.0;
	b->n += n;
	b->sum += n * v;
	b->sumsq += n * v * v;
	b->st += n * t;
	b->stt += n * t * t;
	b->stv += n * t * v;
}

int
window_stats(const struct window *w, int64_t now, struct window_stats *out)
{
	return window_stats_skip(w, now, 0, out);
}

int
window_stats_skip(const struct window *w, int64_t now, int64_t skip, struct window_stats *out)
{
	double sum = 0, sumsq = 0, st = 0, stt = 0, stv = 0, var, tmean;
	int64_t lo, hi;
	uint64_t n = 0;

	memset(out, 0, sizeof(*out));
	if (now > TS_LIMIT)
		now = TS_LIMIT;
	if (now < -TS_LIMIT)
		now = -TS_LIMIT;
	if (skip < 0)
		skip = 0;
	lo = now - w->len_ms;
	/* With skip=, only buckets that end by now - skip: none of the skipped part is in. */
	hi = skip <= 0 ? now : skip + window_bucket_width(w) > now - lo ? lo :
	    now - skip - window_bucket_width(w);
	for (int i = 0; i < WINDOW_BUCKETS; i++) {
		const struct window_bucket *b = &w->b[i];

		if (b->n == 0 || b->start_ms <= lo || b->start_ms > hi)
			continue;
		if (n == 0 || b->min < out->min)
			out->min = b->min;
		if (n == 0 || b->max > out->max)
			out->max = b->max;
		if (n == 0 || b->first_ts < out->first_ts) {
			out->first_ts = b->first_ts;
			out->first_v = b->first_v;
		}
		if (n == 0 || b->last_ts > out->last_ts) {
			out->last_ts = b->last_ts;
			out->last_v = b->last_v;
		}
		n += b->n;
		sum += b->sum;
		sumsq += b->sumsq;
		st += b->st;
		stt += b->stt;
		stv += b->stv;
	}
	if (n == 0)
		return -1;
	out->n = n;
	out->mean = sum / (double)n;
	/*
	 * Equal values must give exactly 0 (zscore is unknown then), which
	 * the sums alone only give up to rounding.
	 */
	var = out->min == out->max ? 0 : (sumsq - sum * out->mean) / (double)n;
	out->stddev = var > 0 ? sqrt(var) : 0;
	out->intercept_at_last = out->mean;
	if (n < 2 || out->first_ts == out->last_ts)
		return 0;
	tmean = st / (double)n;
	{
		double sxx = stt - st * tmean, sxy = stv - tmean * sum;
		double syy = var * (double)n, ssr;
		double tlast = (double)(out->last_ts - w->ref_ms) / 1000.0;

		if (!(sxx > 0))
			return 0;
		out->has_slope = 1;
		out->slope = out->min == out->max ? 0 : sxy / sxx;
		out->intercept_at_last = out->mean + out->slope * (tlast - tmean);
		out->sxx = sxx;
		out->t_mean_s = tmean - tlast;
		/* SSR = Syy - b Sxy; rounding may take it a hair below 0. */
		ssr = syy - out->slope * sxy;
		if (!(ssr > 0))
			ssr = 0;
		out->r2 = syy > 0 ? 1.0 - ssr / syy : 1.0;
		if (out->r2 < 0)
			out->r2 = 0;
		out->resid_sd = n > 2 ? sqrt(ssr / (double)(n - 2)) : 0;
	}
	return 0;
}

/* Student's t, two-sided 95 %, for 1..30 degrees of freedom; beyond, the normal's 1.96 is within 2 %. */
static double
t975(uint64_t df)
{
	static const double t[30] = {
		12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
		2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
		2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
	};

	if (df <= 30)
		return t[df - 1];
	return df <= 60 ? 2.000 : df <= 120 ? 1.980 : 1.960;
}

int
window_interval(const struct window_stats *s, int64_t at_ms, double *half)
{
	double dt;

	if (!s->has_slope || s->n < 3)
		return -1;
	dt = (double)(at_ms - s->last_ts) / 1000.0 - s->t_mean_s;
	*half = t975(s->n - 2) * s->resid_sd *
	    sqrt(1.0 + 1.0 / (double)s->n + dt * dt / s->sxx);
	return 0;
}

int
window_forecast(const struct window_stats *s, int64_t at_ms, double *out)
{
	if (!s->has_slope)
		return -1;
	*out = s->intercept_at_last + s->slope * ((double)(at_ms - s->last_ts) / 1000.0);
	return 0;
}

double
window_time_to(const struct window_stats *s, int64_t now_ms, double limit)
{
	double cur, dt;

	if (!s->has_slope || s->slope == 0)
		return -1;
	cur = s->intercept_at_last + s->slope * ((double)(now_ms - s->last_ts) / 1000.0);
	if (cur == limit)
		return 0;
	dt = (limit - cur) / s->slope;
	/* Negative: reached before now, the line now moves away from it. */
	if (!isfinite(dt) || dt <= 0)
		return -1;
	return dt;
}

void
ewma_add(struct ewma *e, int64_t half_ms, int64_t ts, double v)
{
	double w;

	if (!isfinite(v) || ts > TS_LIMIT || ts < -TS_LIMIT)
		return;
	if (!e->has) {
		e->v = v;
		e->ts = ts;
		e->has = 1;
		return;
	}
	if (ts <= e->ts)
		return;
	/* A reading stands for the time since the last one; weighted, so that 1e308 then -1e308 stay finite. */
	w = 1 - exp2(-(double)(ts - e->ts) / (double)(half_ms > 0 ? half_ms : 1));
	e->v = w * v + (1 - w) * e->v;
	e->ts = ts;
}

int
ewma_value(const struct ewma *e, double *out)
{
	if (!e->has || !isfinite(e->v))
		return -1;
	*out = e->v;
	return 0;
}
