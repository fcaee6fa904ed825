/* The anomaly() detector: decaying histograms, a point test and a calibrated shift test. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "anomaly.h"

/* A reading this rare under the long histogram scores severity 1. */
#define POINT_DECADES	2.5
/* A shift statistic this many of its own standard deviations above its mean scores 1. */
#define SHIFT_SIGMAS	4.0
/*
 * On a faster series the sigmas asked grow SHIFT_RATE times as fast as the
 * point test's decades: the statistic's tail is heavier than a normal
 * law's, and this is what held it to one or two false episodes a day of
 * noise at every rate from 5 min to 20 a second (README). It speaks once
 * it has been calibrated on SHIFT_WARMUP_S of the series' time.
 */
#define SHIFT_RATE	3.0
#define SHIFT_WARMUP_S	86400.0
#define CAL_SD_MIN	0.03
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
/*
 * A reading beyond all seen is as rare as its distance beyond the
 * quartile says (tail_share): TAIL_SHARE is the quartile's share.
 */
#define TAIL_SHARE	0.25
/*
 * The rate is intervals over their seconds, both decayed with a half-life
 * of RATE_HALF_S of series time: readings per second, however uneven
 * (a pair fed by two records a few ms apart is two readings per cycle, not
 * one per few ms), and a burst moves it only by its share of an hour's
 * readings. A gap counts for at most RATE_GAP usual intervals, so that the
 * readings after it are not judged as if the series were slow; a lasting
 * slowdown is learned as the hour's count decays.
 */
#define RATE_HALF_S	3600.0
#define RATE_GAP	8.0
/* The fastest rate judged: a reading every ms. */
#define RATE_MAX	(ANOMALY_RATE_REF_S * 1000.0)
#define STATE_MAGIC	"twA3"
#define STATE_MAGIC_V2	"twA2"	/* 600 bytes, no rate: read back, the rate learned anew */
#define STATE_BYTES_V2	600

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

/*
 * How many readings the series makes in ANOMALY_RATE_REF_S, at least 1.
 * Severity 1 asks log10 of it more decades of rarity, and the half-lives
 * are that many times longer, so that a series read every second is held
 * to as few false alarms a day, and remembers as many days, as one read
 * every 5 minutes; a slower one is judged per reading.
 */
struct pace {
	double m;		/* readings per ANOMALY_RATE_REF_S, at least 1 */
	double decades;		/* log10(m) */
	double lb, ls, lc;	/* per-reading decay of the long and short histograms, the calibration */
};

static void
pace_of(const struct anomaly *a, struct pace *pc)
{
	double per_ref = a->rate_s > 0 ? ANOMALY_RATE_REF_S * a->rate_n / a->rate_s : 0;

	/* Exactly 1 at the reference rate or slower: those series are judged as they always were. */
	pc->m = per_ref > 1 ? fmin(per_ref, RATE_MAX) : 1;
	pc->decades = log10(pc->m);
	pc->lb = decay(ANOMALY_HALF_LONG * pc->m);
	pc->ls = decay(ANOMALY_HALF_SHORT * pc->m);
	pc->lc = decay(ANOMALY_HALF_CAL * pc->m);
}

/* The value under which `share` of the long histogram's weight lies, each bin's spread evenly. */
static double
quantile_of(const struct anomaly *a, double share)
{
	double w = (a->hi - a->lo) / ANOMALY_BINS, want = share * a->nbase, cum = 0;
	int i;

	for (i = 0; i < ANOMALY_BINS - 1; i++) {
		if (cum + a->base[i] >= want && a->base[i] > 0)
			break;
		cum += a->base[i];
	}
	if (!(a->base[i] > 0))
		return a->lo + (i + 1) * w;
	return a->lo + (i + fmin(1, fmax(0, (want - cum) / a->base[i]))) * w;
}

/*
 * The share of readings beyond `v` on its side, for a reading beyond all
 * seen: an exponential tail (extreme value theory's peaks-over-threshold
 * model, of shape 0) from the quartile, whose share is TAIL_SHARE, halving
 * with every quartile-to-median distance beyond it (as an exponential law
 * does). It is anchored on the bulk, which an anomaly must make up a
 * quarter of to move: a drift that creeps on past the last readings is
 * measured against the usual spread, not against its own last steps. For
 * Gaussian noise it overstates the tail (ten standard deviations out is
 * taken as 1 in 60,000, not as never), so it errs towards quiet. The
 * scale is at least half a bin, the finest the histogram knows.
 */
static double
tail_share(const struct anomaly *a, double v, int upper)
{
	double w = (a->hi - a->lo) / ANOMALY_BINS, mid = quantile_of(a, 0.5);
	double spread = fmin(quantile_of(a, 1 - TAIL_SHARE) - mid, mid - quantile_of(a, TAIL_SHARE));
	double scale = fmax(spread, w / 2), d = upper ? v - (mid + scale) : mid - scale - v;

	return d > 0 ? TAIL_SHARE * exp2(-d / scale) : 1;
}

/* Severity of the point test: decades of rarity, over POINT_DECADES and the rate's. */
static double
point_severity(const struct anomaly *a, const struct pace *pc, int k, double v)
{
	double below = 0, above, p, rd = pc->decades;

	for (int i = 0; i < k; i++)
		below += a->base[i];
	below += 0.5 * a->base[k];
	/* A read-back state may hold bins a rounding above its total. */
	above = fmax(0, a->nbase - below);
	below = fmin(below, a->nbase);
	p = (fmin(below, above) + 0.5) / (a->nbase + 1);
	/*
	 * Beyond every reading seen (less than half a reading's weight at or
	 * beyond it), the histogram says only "rarer than 1 in its weight";
	 * the tail model says how much rarer, by how far out it is.
	 */
	if (fmin(below, above) < 0.5)
		p = fmin(p, tail_share(a, v, above < below));
	return -log10(fmax(p, 1e-300)) / (POINT_DECADES + rd);
}

/* The G statistic of the short histogram against the long one. */
static double
shift_g(const struct anomaly *a)
{
	/*
	 * Weighed as the short histogram of a series at the reference rate:
	 * readings many times a second are not that many times as independent,
	 * and the statistic would sit at its cap on any wave or drift.
	 */
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

/*
 * Whether the shift test has been calibrated on a day's worth of
 * statistics at the series' usual rate (as many as ANOMALY_CAL_WARMUP
 * are at 5 min): on a fast series, a few hundred statistics are minutes,
 * whose spread is not yet the spread of a day.
 */
static int
shift_timed(const struct anomaly *a)
{
	return a->age_s >= SHIFT_WARMUP_S;
}

/* Severity of the shift test: the statistic's log in its own standard deviations. */
static double
shift_severity(struct anomaly *a, const struct pace *pc)
{
	double p = chi2_upper(shift_g(a), ANOMALY_BINS - 1);
	double s = log1p(-log10(fmax(p, 1e-300))), z = 0, d;
	double c = 1 - pc->lc;

	if (!a->calibrated) {
		a->cal_mean = s;
		a->calibrated = 1;
		return 0;
	}
	/*
	 * A floor on the spread: on a smooth fast series the statistic can sit
	 * at exactly 0 for days, and any statistic above it would be many
	 * sigmas out.
	 */
	z = (s - a->cal_mean) / fmax(sqrt(a->cal_var), CAL_SD_MIN);
	d = s - a->cal_mean;
	a->cal_mean += c * d;
	a->cal_var = (1 - c) * (a->cal_var + c * d * d);
	/* Until then the spread is near 0 and any statistic looks many sigmas out. */
	if (a->ncal < UINT32_MAX)
		a->ncal++;
	return a->ncal > ANOMALY_CAL_WARMUP && shift_timed(a) ?
	    z / (SHIFT_SIGMAS * (1 + SHIFT_RATE * pc->decades / POINT_DECADES)) : 0;
}

/* Learns the rate from the interval since the reading before `ts`. */
static void
learn_rate(struct anomaly *a, int64_t ts)
{
	double dt, usual, keep;

	/*
	 * The first reading (or the first after a state saved without its
	 * time), or a clock that went far back (or a saved one far ahead):
	 * the clock starts again from it.
	 */
	if (a->n == 0 || a->last_ts == 0 || (double)ts < (double)a->last_ts - 86400000.0) {
		a->last_ts = ts;
		return;
	}
	if (ts <= a->last_ts)
		return;
	/* At least a ms, also where doubles round two int64 times together. */
	dt = fmax(((double)ts - (double)a->last_ts) / 1000.0, 1e-3);
	a->last_ts = ts;
	/* The hour forgets by the real series time, so a burst cannot slow it down. */
	keep = exp2(-dt / RATE_HALF_S);
	if (a->rate_n >= 1 && a->rate_s > 0) {
		usual = a->rate_s / a->rate_n;
		dt = fmin(dt, RATE_GAP * usual);
	} else {
		/* A first interval (an old retained message, say) says little. */
		dt = fmin(dt, ANOMALY_RATE_REF_S);
	}
	a->rate_n = a->rate_n * keep + 1;
	a->rate_s = a->rate_s * keep + dt;
	a->age_s = fmin(a->age_s + dt, 1e15);
}

void
anomaly_add(struct anomaly *a, int64_t ts, double v)
{
	struct pace pc;
	double lb, ls;
	int k, rc;

	if (!isfinite(v) || (rc = cover(a, v, a->n == 0)) == -2)
		return;
	learn_rate(a, ts);
	pace_of(a, &pc);
	lb = pc.lb;
	ls = pc.ls;
	if (a->n < UINT32_MAX)
		a->n++;
	a->dirty = 1;
	a->severity = 0;
	a->far = a->far * lb + (rc == 1);
	if (rc == 1) {
		/* Rarer than anything in the long histogram, whatever its edge bin holds. */
		double p = fmin(0.5 / (a->nbase + 1), tail_share(a, v, v > a->hi));

		a->severity = fmax(-log10(fmax(p, 1e-300)) / (POINT_DECADES + pc.decades),
		    shift_severity(a, &pc));
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
		double p = point_severity(a, &pc, k, v), s = shift_severity(a, &pc);

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
put_u64(unsigned char **p, uint64_t u)
{
	for (int i = 0; i < 8; i++)
		(*p)[i] = (unsigned char)(u >> (8 * i));
	*p += 8;
}

static uint64_t
get_u64(const unsigned char **p)
{
	uint64_t u = 0;

	for (int i = 0; i < 8; i++)
		u |= (uint64_t)(*p)[i] << (8 * i);
	*p += 8;
	return u;
}

static void
put_f64(unsigned char **p, double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	put_u64(p, u);
}

static double
get_f64(const unsigned char **p)
{
	uint64_t u = get_u64(p);
	double d;

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
	put_f64(&p, a->rate_n);
	put_f64(&p, a->rate_s);
	put_f64(&p, a->age_s);
	put_u64(&p, (uint64_t)a->last_ts);
}

/* Whether a read-back state could have been written by anomaly_add. */
static int
sane(const struct anomaly *a)
{
	double sb = 0, sr = 0;

	/*
	 * The shift statistic's log lies in [0, log1p(300)]: a mean or spread
	 * beyond would overflow its running variance.
	 */
	if (!(a->cal_mean >= 0 && a->cal_mean <= 6) || !(a->cal_var <= 36))
		return 0;
	/* At most a reading a ms over the hour's half-life: about 5.2e6 intervals. */
	if (!(a->rate_n >= 0 && a->rate_n <= 6e6) || !(a->rate_s >= 0 && a->rate_s <= 1e18) ||
	    (a->rate_n >= 1 && !(a->rate_s >= 1e-3 * a->rate_n)) ||
	    !(a->age_s >= 0 && a->age_s <= 1e15))
		return 0;
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

	int v2 = len == STATE_BYTES_V2 && memcmp(buf, STATE_MAGIC_V2, 4) == 0;

	if (!v2 && (len != ANOMALY_STATE_BYTES || memcmp(buf, STATE_MAGIC, 4) != 0))
		return -1;
	if (buf[8] > 1 || buf[9] > 1 || buf[10] != 0 || buf[11] != 0)
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
	if (!v2) {
		t.rate_n = get_f64(&p);
		t.rate_s = get_f64(&p);
		t.age_s = get_f64(&p);
		t.last_ts = (int64_t)get_u64(&p);
	} else if (t.ncal > ANOMALY_CAL_WARMUP) {
		/* Its shift test spoke already: not muted for a day by an upgrade. */
		t.age_s = SHIFT_WARMUP_S;
	}
	if (!sane(&t))
		return -1;
	t.saved_ms = a->saved_ms;
	*a = t;
	return 0;
}
