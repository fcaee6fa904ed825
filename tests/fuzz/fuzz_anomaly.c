/*
 * Fuzzes the anomaly() detector and its saved state: the first
 * ANOMALY_STATE_BYTES of the input are offered to anomaly_load as a saved
 * state (most are refused, which must change nothing), the rest are fed as
 * readings, 8 bytes each, raw doubles (NaN, infinities, subnormals, 1e308
 * included). Every score must be unknown or in [0, 1], and every state the
 * detector reaches must save and read back as itself: a state that
 * anomaly_load refused would be lost at the next restart.
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
	int fresh = 1;	/* the bins' sum is checked only on states the detector made itself */

	anomaly_init(&a);
	if (size >= ANOMALY_STATE_BYTES) {
		struct anomaly before = a;

		if (anomaly_load(&a, data, ANOMALY_STATE_BYTES) != 0 &&
		    memcmp(&before, &a, sizeof(a)) != 0)
			abort();	/* a refused state leaves the detector as it was */
		off = ANOMALY_STATE_BYTES;
		fresh = memcmp(&before, &a, sizeof(a)) == 0;
		check(&a, fresh);
	}
	for (; off + 8 <= size; off += 8) {
		double v;

		memcpy(&v, data + off, 8);
		anomaly_add(&a, v);
		check(&a, fresh);
	}
	return 0;
}
