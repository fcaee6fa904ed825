/*
 * quantile_over(p, w, q) and median_over(p, w): a quantile of a property
 * over a window of measurement time, in fixed memory.
 *
 * The window is cut into QUANTILE_BUCKETS sixteenths, as the windows of
 * window.h are, so that its edge is exact to len/16. Each sixteenth keeps
 * its readings, sorted, up to QUANTILE_SLOTS of them: while no sixteenth
 * holds more, the quantile is exact (linear between the two nearest
 * readings, as most tools define it). Beyond that a sixteenth keeps a
 * sample of its readings instead: each kept with the same chance, which
 * halves (every other reading of the sorted sample is kept, from a random
 * one of the two) each time the sample fills, so a sixteenth always holds
 * between QUANTILE_SLOTS / 2 and QUANTILE_SLOTS of them, each standing for
 * its share of the sixteenth's exact count. The answer is then off by a
 * rank error: measured, its standard deviation stays under
 * sqrt(q (1 - q) / 512) of the window's readings (2.2 % of them for the
 * median) when the readings are spread over the window, and under
 * sqrt(q (1 - q) / 32) (8.8 %) when one sixteenth holds nearly all of them
 * (a window just begun, after a gap, a burst); test_quantile.c checks both.
 * and 1 are always exact and no answer leaves their range. The chance is a hash of the sixteenth's start and its count, so
 * the same readings always give the same answer (a what-if, a backtest).
 */
#ifndef TW_QUANTILE_H
#define TW_QUANTILE_H

#include <stdint.h>

#define QUANTILE_BUCKETS	16
#define QUANTILE_SLOTS		64

struct quantile_bucket {
	int64_t start_ms;	/* a multiple of the width; meaningful when n > 0 */
	uint32_t n;		/* readings that fell in it: 0, the slot is empty */
	uint16_t m;		/* readings kept in v[], sorted */
	uint8_t shift;		/* a reading is kept with chance 2^-shift */
	double min, max;	/* of every reading, kept or not: the 0 and 1 quantiles stay exact */
	double v[QUANTILE_SLOTS];
};

/* 8,768 bytes on LP64, whatever the rate; allocated apart from the twin's window slots. */
struct quantile {
	int64_t len_ms;
	uint64_t gen;		/* counts the readings taken: a new one voids the answer kept below */
	/* The last answer, for the rules' 1-s tick, which asks again with no new reading. */
	struct {
		double p, v;
		int64_t lo, hi;	/* the sixteenths the window spanned: a window that moved is asked anew */
		uint64_t gen;
		int ok;		/* 1: v is the answer; 0: the window was empty; -1: none kept */
	} last;
	struct quantile_bucket b[QUANTILE_BUCKETS];
};

/* Empties `q` and sets its length (> 0; anything less is taken as 1 ms). */
void quantile_init(struct quantile *q, int64_t len_ms);
/*
 * A reading at measurement time `ts_ms`, `n` times (a what-if's held
 * value). As window_add: older than the newest sixteenth minus the length
 * is ignored, out of order within it is kept, non-finite values and times
 * beyond +-2^62 ms are ignored. Never allocates.
 */
void quantile_add(struct quantile *q, int64_t ts_ms, double v, uint32_t n);
/*
 * The `p` quantile (0 <= p <= 1) of the window ending at `now_ms`:
 * returns 0 with *out, or -1 when the window is empty or p is out of
 * [0, 1].
 */
int quantile_value(struct quantile *q, int64_t now_ms, double p, double *out);
/*
 * How often readings came, in ms between two, over the sixteenths in use
 * (to a sixteenth): 0 with *every_ms, or -1 with fewer than two readings.
 */
int quantile_every(const struct quantile *q, int64_t *every_ms);

#endif
