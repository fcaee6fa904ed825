/*
 * Fuzzes the anomaly() detector and its saved state: the first
 * ANOMALY_STATE_BYTES of the input (600 if it begins "twA2", a state
 * saved before the rate was kept) are offered to anomaly_load as a saved
 * state (most are refused, which must change nothing), the rest are fed as
 * readings, 8 bytes each, raw doubles (NaN, infinities, subnormals, 1e308
 * included), whose low bits also move the clock (by ms, by up to a
 * minute on or back, now and then by days). Every score must be unknown
 * or in [0, 1], and every state the detector reaches must save and read
 * back as itself: a state that anomaly_load refused would be lost at the
 * next restart.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "anomaly.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const struct anomaly *a, int fresh)
{
	unsigned char buf[ANOMALY_STATE_BYTES], again[ANOMALY_STATE_BYTES];
	struct anomaly b;
	double s;

	if (anomaly_score(a, 1, &s) == 0 && !(s >= 0 && s <= 1))
		abort();
	if (anomaly_score(a, 100, &s) == 0 && !(s >= 0 && s <= 1))
		abort();
	if (!(a->severity >= 0) || !isfinite(a->severity))
		abort();
	/* Re-binning and decay keep the bins' sum at the total: no reading made or lost. */
	if (fresh && a->ranged) {
		double sb = 0, sr = 0;

		for (int i = 0; i < ANOMALY_BINS; i++) {
			sb += a->base[i];
			sr += a->recent[i];
		}
		if (fabs(sb - a->nbase) > 1e-6 * a->nbase + 1e-9 ||
		    fabs(sr - a->nrecent) > 1e-6 * a->nrecent + 1e-9)
			abort();
	}
	anomaly_save(a, buf);
	anomaly_init(&b);
	if (anomaly_load(&b, buf, sizeof(buf)) != 0)
		abort();
	anomaly_save(&b, again);
	if (memcmp(buf, again, sizeof(buf)) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct anomaly a;
	size_t off = 0;
	int64_t ts = 1800000000000LL;
	int fresh = 1;	/* the bins' sum is checked only on states the detector made itself */

	/* A state from before the rate was kept is 600 bytes. */
	size_t state = size >= 4 && memcmp(data, "twA2", 4) == 0 ? 600 : ANOMALY_STATE_BYTES;

	anomaly_init(&a);
	if (size >= state) {
		struct anomaly before = a;

		if (anomaly_load(&a, data, state) != 0 &&
		    memcmp(&before, &a, sizeof(a)) != 0)
			abort();	/* a refused state leaves the detector as it was */
		off = state;
		fresh = memcmp(&before, &a, sizeof(a)) == 0;
		check(&a, fresh);
	}
	for (; off + 8 <= size; off += 8) {
		uint64_t bits;
		double v;

		memcpy(&v, data + off, 8);
		memcpy(&bits, data + off, 8);
		/*
		 * The clock moves by the value's low bits: still, ms apart, up to
		 * a minute on or back, and now and then days on or back.
		 */
		ts += (int64_t)(bits & 0xffff) - (bits & 0x10000 ? 30000 : 0);
		if ((bits & 0xe0000) == 0xe0000)
			ts += (int64_t)((bits >> 20) & 0xff) * 86400000 * (bits & 0x10000000 ? -1 : 1);
		anomaly_add(&a, ts, v);
		check(&a, fresh);
	}
	return 0;
}
