/* The anomaly() detector: decaying histograms, a point test and a calibrated shift test. */
#include <math.h>
#include <string.h>

#include "anomaly.h"

/* A reading this rare under the long histogram scores severity 1. */
#define POINT_DECADES	2.5
/* A shift statistic this many of its own standard deviations above its mean scores 1. */
#define SHIFT_SIGMAS	4.0
/* The span grows by this share beyond a new extreme, so that it seldom has to grow again. */
#define SPAN_MARGIN	0.1
#define STATE_MAGIC	"twA1"

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

/* Spreads each bin of `h` over the bins of the new span it overlaps, evenly. */
static void
rebin(double *h, double lo, double hi, double nlo, double nhi)
{
	double out[ANOMALY_BINS] = { 0 };
	double w = (hi - lo) / ANOMALY_BINS, nw = (nhi - nlo) / ANOMALY_BINS;

	for (int i = 0; i < ANOMALY_BINS; i++) {
		double from = lo + i * w, to = from + w;
		int j0 = (int)((from - nlo) / nw), j1 = (int)((to - nlo) / nw);

		if (h[i] == 0)
			continue;
		j0 = j0 < 0 ? 0 : j0 >= ANOMALY_BINS ? ANOMALY_BINS - 1 : j0;
		j1 = j1 < 0 ? 0 : j1 >= ANOMALY_BINS ? ANOMALY_BINS - 1 : j1;
		for (int j = j0; j <= j1; j++) {
			double ja = nlo + j * nw, jb = ja + nw;
			double ov = fmin(to, jb) - fmax(from, ja);

			if (ov > 0)
				out[j] += h[i] * ov / w;
		}
	}
	memcpy(h, out, sizeof(out));
}

/*
 * Makes the span cover `v`. Returns 0 once there is a span, -1 while
 * every value so far equals the first.
 */
static int
cover(struct anomaly *a, double v)
{
	double lo, hi, span, nlo, nhi;

	if (!a->ranged) {
		if (a->n == 1 || v == a->first) {
			/* The first values wait in the totals for a span to bin them in. */
			a->first = a->n == 1 ? v : a->first;
			return -1;
		}
		lo = fmin(v, a->first);
		hi = fmax(v, a->first);
		span = hi - lo;
		a->lo = lo - SPAN_MARGIN * span;
		a->hi = hi + SPAN_MARGIN * span;
		if (!(a->hi > a->lo) || !isfinite(a->hi - a->lo))
			return -1;
		a->ranged = 1;
		a->base[bin_of(a, a->first)] = a->nbase;
		a->recent[bin_of(a, a->first)] = a->nrecent;
		return 0;
	}
	if (v >= a->lo && v <= a->hi)
		return 0;
	lo = fmin(a->lo, v);
	hi = fmax(a->hi, v);
	span = hi - lo;
	nlo = v < a->lo ? lo - SPAN_MARGIN * span : lo;
	nhi = v > a->hi ? hi + SPAN_MARGIN * span : hi;
	if (!isfinite(nhi - nlo))
		return -1;
	rebin(a->base, a->lo, a->hi, nlo, nhi);
	rebin(a->recent, a->lo, a->hi, nlo, nhi);
	a->lo = nlo;
	a->hi = nhi;
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
	above = a->nbase - below;
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
	int k;

	if (!isfinite(v))
		return;
	a->dirty = 1;
	if (a->n < UINT32_MAX)
		a->n++;
	a->severity = 0;
	if (cover(a, v) != 0) {
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
	    !isfinite(a->nrecent))
		return 0;
	if (a->ranged && (!isfinite(a->lo) || !isfinite(a->hi) || !(a->hi > a->lo) ||
	    !isfinite(a->hi - a->lo)))
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
