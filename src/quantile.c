/* Quantiles over a window of measurement time: sorted readings per sixteenth, thinned to a uniform sample when full. */
#include <math.h>
#include <string.h>

#include "quantile.h"
#include "window.h"

/* As window.c: times beyond this are ignored, so that ts - len never overflows. */
#define TS_LIMIT	(INT64_C(1) << 62)

static int64_t
width_of(const struct quantile *q)
{
	return (q->len_ms + QUANTILE_BUCKETS - 1) / QUANTILE_BUCKETS;
}

static struct quantile_bucket *
slot_of(struct quantile *q, int64_t start, int64_t width)
{
	int64_t i = window_floor_div(start, width) % QUANTILE_BUCKETS;

	return &q->b[i < 0 ? i + QUANTILE_BUCKETS : i];
}

/* splitmix64: the chance of a reading, from where it falls, so that a replay gives the same sample. */
static uint64_t
chance(const struct quantile_bucket *b)
{
	uint64_t z = (uint64_t)b->start_ms * 0x9e3779b97f4a7c15ULL + b->n;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void
quantile_init(struct quantile *q, int64_t len_ms)
{
	memset(q, 0, sizeof(*q));
	q->len_ms = len_ms > 0 ? len_ms : 1;
	q->last.ok = -1;
}

/*
 * The bucket for a reading in the sixteenth starting at `start`, or NULL
 * when it is older than the window reaches. A new newest sixteenth empties
 * those it puts out of reach, so every bucket in use is within one window
 * length of the newest (window.c's rule).
 */
static struct quantile_bucket *
quantile_open(struct quantile *q, int64_t start, int64_t width)
{
	struct quantile_bucket *b;
	int64_t newest = INT64_MIN;

	for (int i = 0; i < QUANTILE_BUCKETS; i++)
		if (q->b[i].n > 0 && q->b[i].start_ms > newest)
			newest = q->b[i].start_ms;
	if (newest != INT64_MIN && start <= newest - q->len_ms)
		return NULL;
	if (newest != INT64_MIN && start > newest)
		for (int i = 0; i < QUANTILE_BUCKETS; i++)
			if (q->b[i].n > 0 && q->b[i].start_ms <= start - q->len_ms)
				q->b[i].n = 0;
	/* What the slot holds is 16 widths (>= len) from `start`: stale. */
	b = slot_of(q, start, width);
	b->n = 0;
	b->m = 0;
	b->shift = 0;
	b->start_ms = start;
	return b;
}

/* Every other kept reading, from the first or the second: the sample stays uniform and sorted. */
static void
thin(struct quantile_bucket *b)
{
	uint16_t from = (uint16_t)(chance(b) >> 63), k = 0;

	for (uint16_t i = from; i < b->m; i += 2)
		b->v[k++] = b->v[i];
	b->m = k;
	b->shift++;
}

static void
keep(struct quantile_bucket *b, double v)
{
	uint16_t lo = 0, hi;

	if (b->m == QUANTILE_SLOTS)
		thin(b);
	/* After the equal ones: the first to arrive stays first. */
	hi = b->m;
	while (lo < hi) {
		uint16_t mid = (uint16_t)((lo + hi) / 2);

		if (b->v[mid] <= v)
			lo = (uint16_t)(mid + 1);
		else
			hi = mid;
	}
	memmove(&b->v[lo + 1], &b->v[lo], (size_t)(b->m - lo) * sizeof(b->v[0]));
	b->v[lo] = v;
	b->m++;
}

void
quantile_add(struct quantile *q, int64_t ts, double v, uint32_t n)
{
	struct quantile_bucket *b;
	int64_t width, start;

	if (!isfinite(v) || ts > TS_LIMIT || ts < -TS_LIMIT || n == 0)
		return;
	width = width_of(q);
	start = window_floor_div(ts, width) * width;
	b = slot_of(q, start, width);
	if ((b->n == 0 || b->start_ms != start) && (b = quantile_open(q, start, width)) == NULL)
		return;
	q->gen++;
	if (b->n == 0 || v < b->min)
		b->min = v;
	if (b->n == 0 || v > b->max)
		b->max = v;
	if (n == 1) {
		uint64_t every = UINT64_C(1) << b->shift;

		if ((chance(b) & (every - 1)) == 0)
			keep(b, v);
		b->n = b->n < UINT32_MAX ? b->n + 1 : b->n;
		return;
	}
	/* Equal readings need no chance: every 2^shift-th of them is kept. */
	while (n > 0 && b->n < UINT32_MAX) {
		uint32_t every = UINT32_C(1) << b->shift;
		uint32_t until = every - b->n % every;

		if (until > n || until > UINT32_MAX - b->n) {
			b->n += n < UINT32_MAX - b->n ? n : UINT32_MAX - b->n;
			return;
		}
		b->n += until - 1;
		n -= until;
		keep(b, v);
		b->n++;
	}
}

/*
 * The reading at rank `h` (from 0, fractional: linear between its two
 * neighbours) of the merged samples, each kept reading standing for w[] of
 * them, counted from the low end, or from the high end when `desc`: a
 * quantile above the median is reached in fewer steps from above, and the
 * linear rule gives the same value counted from either end. The merge
 * keeps each sample's head as a key (negated from the high end), so a step
 * is a scan of 16 doubles.
 */
static double
walk(const struct quantile_bucket *const *in, const double *w, int nin, double h, int desc)
{
	double key[QUANTILE_BUCKETS], cum = 0, x = 0, f, sign = desc ? -1 : 1;
	uint16_t at[QUANTILE_BUCKETS];
	int best = -1;

	for (int i = 0; i < nin; i++) {
		at[i] = 0;
		key[i] = sign * in[i]->v[desc ? in[i]->m - 1 : 0];
	}
	for (;;) {
		best = 0;
		for (int i = 1; i < nin; i++)
			if (key[i] < key[best])
				best = i;
		if (key[best] == INFINITY)
			return x;	/* rounding past the end: the last reading */
		x = sign * key[best];
		at[best]++;
		key[best] = at[best] < in[best]->m ?
		    sign * in[best]->v[desc ? in[best]->m - 1 - at[best] : at[best]] : INFINITY;
		if (cum + w[best] > h)
			break;
		cum += w[best];
	}
	/* Inside this reading's share; in its last unit, part of the way to the next. */
	f = h - cum - (w[best] - 1);
	if (f > 0) {
		best = 0;
		for (int i = 1; i < nin; i++)
			if (key[i] < key[best])
				best = i;
		/*
		 * x + f (next - x): exact when they are equal; weighted only when
		 * next - x overflows (between -1e308 and 1e308).
		 */
		if (key[best] != INFINITY) {
			double y = sign * key[best];

			x = isfinite(y - x) ? x + f * (y - x) : (1 - f) * x + f * y;
		}
	}
	return x;
}

/* The answer, without the one kept from last time. */
static int
quantile_compute(const struct quantile *q, int64_t now, double p, double *out)
{
	const struct quantile_bucket *in[QUANTILE_BUCKETS];
	double w[QUANTILE_BUCKETS], total = 0, min = 0, max = 0, x;
	int nin = 0;
	int64_t lo;

	lo = now - q->len_ms;
	for (int i = 0; i < QUANTILE_BUCKETS; i++) {
		const struct quantile_bucket *b = &q->b[i];

		if (b->n == 0 || b->m == 0 || b->start_ms <= lo || b->start_ms > now)
			continue;
		if (nin == 0 || b->min < min)
			min = b->min;
		if (nin == 0 || b->max > max)
			max = b->max;
		/* Each kept reading stands for its share of the exact count. */
		w[nin] = (double)b->n / b->m;
		total += b->n;
		in[nin++] = b;
	}
	if (nin == 0)
		return -1;
	if (p == 0 || p == 1) {
		*out = p == 0 ? min : max;
		return 0;
	}
	x = p <= 0.5 ? walk(in, w, nin, p * (total - 1), 0) :
	    walk(in, w, nin, (1 - p) * (total - 1), 1);
	*out = x < min ? min : x > max ? max : x;
	return 0;
}

int
quantile_value(struct quantile *q, int64_t now, double p, double *out)
{
	int64_t width = width_of(q), lo, hi;

	if (!(p >= 0 && p <= 1))
		return -1;
	if (now > TS_LIMIT)
		now = TS_LIMIT;
	if (now < -TS_LIMIT)
		now = -TS_LIMIT;
	/* Which sixteenths are in depends on `now` only through these two. */
	lo = window_floor_div(now - q->len_ms, width);
	hi = window_floor_div(now, width);
	if (q->last.ok < 0 || q->last.gen != q->gen || q->last.p != p || q->last.lo != lo ||
	    q->last.hi != hi) {
		q->last.ok = quantile_compute(q, now, p, &q->last.v) == 0;
		q->last.p = p;
		q->last.lo = lo;
		q->last.hi = hi;
		q->last.gen = q->gen;
	}
	if (!q->last.ok)
		return -1;
	*out = q->last.v;
	return 0;
}

int
quantile_every(const struct quantile *q, int64_t *every_ms)
{
	int64_t first = INT64_MAX, last = INT64_MIN;
	uint64_t n = 0;

	for (int i = 0; i < QUANTILE_BUCKETS; i++) {
		if (q->b[i].n == 0)
			continue;
		n += q->b[i].n;
		first = q->b[i].start_ms < first ? q->b[i].start_ms : first;
		last = q->b[i].start_ms > last ? q->b[i].start_ms : last;
	}
	if (n < 2)
		return -1;
	*every_ms = (last - first + width_of(q)) / (int64_t)n;
	return 0;
}
