/* The anomaly() detector: decaying histograms, a point test and a calibrated shift test. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "anomaly.h"

/* A reading this rare under the long histogram scores severity 1. */
#define POINT_DECADES	2.5
/* A shift statistic this many of its own standard deviations above its mean scores 1. */
#define SHIFT_SIGMAS	4.0
/* The span grows by this share beyond a new extreme, so that it seldom has to grow again. */
#define SPAN_MARGIN	0.1
/*
 * A reading further than this many spans beyond the span (after the first
 * FAR_AFTER readings) is judged but not learned, unless far readings have
 * become a regime: at least FAR_MIN of them, and FAR_SHARE of the long
 * histogram's weight, counted on its half-life. One -9999 error code, even
 * in the first minutes, must not widen the bins for good and leave the
 * usual values in one of them; a pump that starts stopping for an hour in
 * three, or a new level far away, is learned within a few dozen readings.
 */
#define FAR_SPANS	4.0
#define FAR_AFTER	16
#define FAR_MIN		8.0
#define FAR_SHARE	0.01
#define STATE_MAGIC	"twA2"	/* twA1 (592 bytes, no far count) is not read */

void
anomaly_init(struct anomaly *a)
{
	memset(a, 0, sizeof(*a));
}

static double
decay(double half)
{
	return exp2(-1.0 / half);
}

/* The upper tail of the chi-square law with k degrees of freedom (Wilson-Hilferty). */
static double
chi2_upper(double x, double k)
{
	double z;

	if (x <= 0)
		return 1.0;
	z = (cbrt(x / k) - (1 - 2 / (9 * k))) / sqrt(2 / (9 * k));
	return 0.5 * erfc(z / M_SQRT2);
}

static int
bin_of(const struct anomaly *a, double v)
{
	double k = (v - a->lo) / (a->hi - a->lo) * ANOMALY_BINS;

	if (!(k >= 0))
		return 0;
	return k >= ANOMALY_BINS ? ANOMALY_BINS - 1 : (int)k;
}

/*
 * Whether 32 bins over [lo, hi] can be told apart: finite, each bin a
 * normal number wide and a few ulps of the values, far from overflow.
 */
static int
span_ok(double lo, double hi)
{
	double d = hi - lo;

	return isfinite(d) && d <= 1e300 && d / ANOMALY_BINS >= DBL_MIN &&
	    d >= 64 * DBL_EPSILON * fmax(fabs(lo), fabs(hi));
}

/*
 * Spreads each bin of `h` over the bins of the wider span [nlo, nhi]
 * it overlaps, evenly. Worked in new-bin units from the old span's start,
 * so that values far from 0 lose nothing to rounding; the total is kept
 * exactly, as rounding must neither make nor lose readings.
 */
static void
rebin(double *h, double lo, double hi, double nlo, double nhi)
{
	double out[ANOMALY_BINS] = { 0 }, before = 0, after = 0;
	double off = (lo - nlo) / (nhi - nlo) * ANOMALY_BINS, r = (hi - lo) / (nhi - nlo);

	for (int i = 0; i < ANOMALY_BINS; i++) {
		double from = off + i * r, to = from + r;
		int j0 = (int)fmin(fmax(floor(from), 0), ANOMALY_BINS - 1);
		int j1 = (int)fmin(fmax(floor(to), 0), ANOMALY_BINS - 1);

		if (h[i] == 0)
			continue;
		before += h[i];
		/* An old span tiny beside the new one: the whole bin lands in one. */
		if (j0 == j1) {
			out[j0] += h[i];
			continue;
		}
		for (int j = j0; j <= j1; j++) {
			double ov = fmin(to, j + 1) - fmax(from, j);

			if (ov > 0)
				out[j] += h[i] * (ov / r);
		}
	}
	for (int j = 0; j < ANOMALY_BINS; j++)
		after += out[j];
	for (int j = 0; j < ANOMALY_BINS && after > 0; j++)
		out[j] *= before / after;
	memcpy(h, out, sizeof(out));
}

/*
 * Makes the span cover `v`. Returns 0 once there is a span, -1 while
 * every value so far equals the first, 1 for a reading that is judged but
 * not learned (too far out, or beyond any span bins could tell apart),
 * -2 before there is a span when none could hold `v` (the reading is then
 * ignored).
 */
static int
cover(struct anomaly *a, double v, int is_first)
{
	double lo, hi, span, nlo, nhi;

	if (!a->ranged) {
		if (is_first || v == a->first) {
			/* The first values wait in the totals for a span to bin them in. */
			a->first = is_first ? v : a->first;
			return -1;
		}
		lo = fmin(v, a->first);
		hi = fmax(v, a->first);
		span = hi - lo;
		nlo = lo - SPAN_MARGIN * span;
		nhi = hi + SPAN_MARGIN * span;
		if (!span_ok(nlo, nhi))
			return -2;
		a->lo = nlo;
		a->hi = nhi;
		a->ranged = 1;
		a->base[bin_of(a, a->first)] = a->nbase;
		a->recent[bin_of(a, a->first)] = a->nrecent;
		return 0;
	}
	if (v >= a->lo && v <= a->hi)
		return 0;
	span = a->hi - a->lo;
	if (a->n >= FAR_AFTER && (v < a->lo ? a->lo - v : v - a->hi) > FAR_SPANS * span &&
	    (a->far < FAR_MIN || a->far < FAR_SHARE * a->nbase))
		return 1;
	lo = fmin(a->lo, v);
	hi = fmax(a->hi, v);
	span = hi - lo;
	nlo = v < a->lo ? lo - SPAN_MARGIN * span : lo;
	nhi = v > a->hi ? hi + SPAN_MARGIN * span : hi;
	if (!span_ok(nlo, nhi))
		return 1;
	rebin(a->base, a->lo, a->hi, nlo, nhi);
	rebin(a->recent, a->lo, a->hi, nlo, nhi);
	a->lo = nlo;
	a->hi = nhi;
	/* The far readings are inside now: a glitch later must make its own case. */
	a->far = 0;
	return 0;
}

/* Severity of the point test: decades of rarity, over POINT_DECADES. */
static double
point_severity(const struct anomaly *a, int k)
{
	double below = 0, above, p;

	for (int i = 0; i < k; i++)
		below += a->base[i];
	below += 0.5 * a->base[k];
	/* A read-back state may hold bins a rounding above its total. */
	above = fmax(0, a->nbase - below);
	below = fmin(below, a->nbase);
	p = (fmin(below, above) + 0.5) / (a->nbase + 1);
	return -log10(p) / POINT_DECADES;
}

/* The G statistic of the short histogram against the long one. */
static double
shift_g(const struct anomaly *a)
{
	double g = 0, r = decay(ANOMALY_HALF_SHORT);

	for (int i = 0; i < ANOMALY_BINS; i++) {
		double pr, q;

		if (a->recent[i] <= 1e-9 * a->nrecent)
			continue;
		q = (a->base[i] + 0.5 / ANOMALY_BINS) / (a->nbase + 0.5);
		pr = a->recent[i] / a->nrecent;
		g += pr * log(pr / q);
	}
	/* The short histogram weighs as many independent readings as its effective size. */
	return 2 * (1 + r) / (1 - r) * g;
}

/* Severity of the shift test: the statistic's log in its own standard deviations. */
static double
shift_severity(struct anomaly *a)
{
	double p = chi2_upper(shift_g(a), ANOMALY_BINS - 1);
	double s = log1p(-log10(fmax(p, 1e-300))), z = 0, d;
	double c = 1 - decay(ANOMALY_HALF_CAL);

	if (!a->calibrated) {
		a->cal_mean = s;
		a->calibrated = 1;
		return 0;
	}
	if (a->cal_var > 0)
		z = (s - a->cal_mean) / sqrt(a->cal_var);
	else if (s > a->cal_mean)
		z = 1e9;
	d = s - a->cal_mean;
	a->cal_mean += c * d;
	a->cal_var = (1 - c) * (a->cal_var + c * d * d);
	/* Until then the spread is near 0 and any statistic looks many sigmas out. */
	if (a->ncal < UINT32_MAX)
		a->ncal++;
	return a->ncal > ANOMALY_CAL_WARMUP ? z / SHIFT_SIGMAS : 0;
}

void
anomaly_add(struct anomaly *a, double v)
{
	double lb = decay(ANOMALY_HALF_LONG), ls = decay(ANOMALY_HALF_SHORT);
	int k, rc;

	if (!isfinite(v) || (rc = cover(a, v, a->n == 0)) == -2)
		return;
	if (a->n < UINT32_MAX)
		a->n++;
	a->dirty = 1;
	a->severity = 0;
	a->far = a->far * lb + (rc == 1);
	if (rc == 1) {
		/* Rarer than anything in the long histogram, whatever its edge bin holds. */
		a->severity = fmax(-log10(0.5 / (a->nbase + 1)) / POINT_DECADES, shift_severity(a));
		return;
	}
	if (rc != 0) {
		a->nbase = a->nbase * lb + 1;
		a->nrecent = a->nrecent * ls + 1;
		return;
	}
	k = bin_of(a, v);
	/* Scored against what came before it: the reading is not its own baseline. */
	if (a->n > ANOMALY_WARMUP) {
		double p = point_severity(a, k), s = shift_severity(a);

		a->severity = fmax(0, fmax(p, s));
	}
	for (int i = 0; i < ANOMALY_BINS; i++) {
		a->base[i] *= lb;
		a->recent[i] *= ls;
	}
	a->base[k] += 1;
	a->recent[k] += 1;
	a->nbase = a->nbase * lb + 1;
	a->nrecent = a->nrecent * ls + 1;
}

int
anomaly_score(const struct anomaly *a, double sensitivity, double *out)
{
	if (a->n <= ANOMALY_WARMUP || !a->ranged || !(sensitivity > 0))
		return -1;
	*out = 1 - exp10(-3 * a->severity * sensitivity);
	return 0;
}

/* ---- the saved state ---- */

static void
put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t
get_u32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static void
put_f64(unsigned char **p, double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	for (int i = 0; i < 8; i++)
		(*p)[i] = (unsigned char)(u >> (8 * i));
	*p += 8;
}

static double
get_f64(const unsigned char **p)
{
	uint64_t u = 0;
	double d;

	for (int i = 0; i < 8; i++)
		u |= (uint64_t)(*p)[i] << (8 * i);
	*p += 8;
	memcpy(&d, &u, sizeof(d));
	return d;
}

void
anomaly_save(const struct anomaly *a, unsigned char *buf)
{
	unsigned char *p = buf + 16;

	memcpy(buf, STATE_MAGIC, 4);
	put_u32(buf + 4, a->n);
	memset(buf + 8, 0, 8);
	buf[8] = a->ranged;
	buf[9] = a->calibrated;
	put_u32(buf + 12, a->ncal);
	put_f64(&p, a->lo);
	put_f64(&p, a->hi);
	put_f64(&p, a->first);
	put_f64(&p, a->nbase);
	put_f64(&p, a->nrecent);
	put_f64(&p, a->cal_mean);
	put_f64(&p, a->cal_var);
	put_f64(&p, a->severity);
	put_f64(&p, a->far);
	for (int i = 0; i < ANOMALY_BINS; i++)
		put_f64(&p, a->base[i]);
	for (int i = 0; i < ANOMALY_BINS; i++)
		put_f64(&p, a->recent[i]);
}

/* Whether a read-back state could have been written by anomaly_add. */
static int
sane(const struct anomaly *a)
{
	double sb = 0, sr = 0;

	if (!isfinite(a->first) || !isfinite(a->cal_mean) || !isfinite(a->severity) ||
	    !(a->cal_var >= 0) || !isfinite(a->cal_var) || !(a->severity >= 0) ||
	    !(a->nbase >= 0) || !(a->nrecent >= 0) || !isfinite(a->nbase) ||
	    !isfinite(a->nrecent) || !(a->far >= 0) || !isfinite(a->far))
		return 0;
	if (a->ranged && (!isfinite(a->lo) || !isfinite(a->hi) || !span_ok(a->lo, a->hi)))
		return 0;
	for (int i = 0; i < ANOMALY_BINS; i++) {
		if (!(a->base[i] >= 0) || !(a->recent[i] >= 0) || !isfinite(a->base[i]) ||
		    !isfinite(a->recent[i]))
			return 0;
		sb += a->base[i];
		sr += a->recent[i];
	}
	/* Bins hold the totals, give or take rounding (none before the span is known). */
	return a->ranged ? sb <= a->nbase * 1.001 + 1e-9 && sr <= a->nrecent * 1.001 + 1e-9 :
	    sb == 0 && sr == 0;
}

int
anomaly_load(struct anomaly *a, const unsigned char *buf, size_t len)
{
	const unsigned char *p = buf + 16;
	struct anomaly t;

	if (len != ANOMALY_STATE_BYTES || memcmp(buf, STATE_MAGIC, 4) != 0 ||
	    buf[8] > 1 || buf[9] > 1)
		return -1;
	if (buf[10] != 0 || buf[11] != 0)
		return -1;
	anomaly_init(&t);
	t.n = get_u32(buf + 4);
	t.ranged = buf[8];
	t.calibrated = buf[9];
	t.ncal = get_u32(buf + 12);
	t.lo = get_f64(&p);
	t.hi = get_f64(&p);
	t.first = get_f64(&p);
	t.nbase = get_f64(&p);
	t.nrecent = get_f64(&p);
	t.cal_mean = get_f64(&p);
	t.cal_var = get_f64(&p);
	t.severity = get_f64(&p);
	t.far = get_f64(&p);
	for (int i = 0; i < ANOMALY_BINS; i++)
		t.base[i] = get_f64(&p);
	for (int i = 0; i < ANOMALY_BINS; i++)
		t.recent[i] = get_f64(&p);
	if (!sane(&t))
		return -1;
	t.saved_ms = a->saved_ms;
	*a = t;
	return 0;
}
