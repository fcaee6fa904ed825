/*
 * anomaly(p): a streaming detector per (twin, property) that scores how
 * unusual the newest reading is against what the series has done.
 *
 * Two tests on decaying histograms of the series' own values, combined:
 * - the point test: the two-sided tail mass of the reading under the
 *   long histogram (about a week of readings at 5 min), so a value that
 *   was seldom or never seen scores high and a spike the series makes
 *   every day does not;
 * - the shift test: the relative entropy between the short histogram
 *   (the last day or so) and the long one, a G-test against the
 *   chi-square law (Wang et al. 2011, the NAB "relativeEntropy"
 *   detector, made incremental), whose log is then judged against its
 *   own running mean and spread, because the readings of a real series
 *   are not independent and the raw statistic is never small.
 *
 * The bins span the smallest and largest value seen, so the score is the
 * same for the series scaled, offset, negated or in other units. Memory
 * decays per reading, not per second: a gap changes nothing, and after a
 * lasting change the long histogram learns the new level and the score
 * falls back. A series read more often than every 5 minutes (its usual
 * interval is learned) is held to the false alarms a day, and the memory
 * in days, of one read every 5 minutes: its thresholds ask for rarer
 * readings, its half-lives hold more of them, and beyond what its
 * histogram can resolve an exponential tail from its quartiles judges.
 * The state is a fixed-size struct, saved as a blob (anomaly_store.c) so
 * that it survives a restart.
 */
#ifndef TW_ANOMALY_H
#define TW_ANOMALY_H

#include <stddef.h>
#include <stdint.h>

#define ANOMALY_BINS		32
#define ANOMALY_WARMUP		288	/* readings before the first score: a day at 5 min */
#define ANOMALY_HALF_LONG	2016.0	/* readings: a week at 5 min */
#define ANOMALY_HALF_SHORT	24.0	/* readings: two hours at 5 min */
#define ANOMALY_HALF_CAL	2016.0	/* readings: how the shift statistic is calibrated */
/* The shift test speaks only after this many statistics: its spread must be known first. */
#define ANOMALY_CAL_WARMUP	288
/*
 * The rate that the thresholds are stated at: a series read more often than
 * this is held to the same number of false alarms a day, not a reading.
 */
#define ANOMALY_RATE_REF_S	300.0
#define ANOMALY_STATE_BYTES	(16 + (2 * ANOMALY_BINS + 13) * 8)	/* 632 */

struct anomaly {
	double lo, hi;			/* the bins' span; meaningful once ranged */
	double first;			/* the first value, until a second one sets the span */
	double base[ANOMALY_BINS];	/* the long histogram: decayed counts */
	double recent[ANOMALY_BINS];	/* the short one */
	double nbase, nrecent;		/* their totals */
	double cal_mean, cal_var;	/* of the shift statistic's log */
	double severity;		/* of the newest reading: 1 is the default threshold */
	double far;			/* readings judged too far out to learn, decayed on the long half-life */
	double rate_n, rate_s;		/* intervals and their seconds, decayed over an hour of series time */
	double age_s;			/* series time seen, gaps clamped: the shift test's warm-up clock */
	int64_t last_ts;		/* ms of the newest reading */
	uint32_t n;			/* readings taken (saturates) */
	uint32_t ncal;			/* shift statistics calibrated on (saturates) */
	uint8_t ranged;			/* the span is known */
	uint8_t calibrated;		/* cal_mean holds a first value */
	uint8_t dirty;			/* changed since anomaly_store saved it */
	int64_t saved_ms;		/* monotonic clock of the last save */
};

void anomaly_init(struct anomaly *a);
/*
 * Takes a reading taken at ts (ms; non-finite values are ignored) and
 * scores it. A few hundred ns.
 */
void anomaly_add(struct anomaly *a, int64_t ts, double v);
/*
 * The score of the newest reading in [0, 1]: 1 - 10^(-3 x severity x
 * sensitivity), so 0.999 is the default threshold. -1 while warming up
 * (fewer than ANOMALY_WARMUP readings) or for a constant series.
 */
int anomaly_score(const struct anomaly *a, double sensitivity, double *out);

/* The learned state as ANOMALY_STATE_BYTES bytes, little-endian, versioned. */
void anomaly_save(const struct anomaly *a, unsigned char *buf);
/*
 * Reads a saved state back (or one of 600 bytes from before the rate was
 * kept: the rate is then learned anew); -1 (and `a` untouched) if it is
 * not one.
 */
int anomaly_load(struct anomaly *a, const unsigned char *buf, size_t len);

#endif
