/*
 * Fuzzes history.c: the input is a run of points (ts, value) put into one
 * series in one transaction, with corrections and redeliveries as the
 * bytes fall, then a query (step, from, to) planned and folded from every
 * tier. The minute and hour rollups must give the same buckets as the raw
 * rows; buckets must be aligned, ascending and sane. All is rolled back,
 * so memory stays flat.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "history.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXB	256

static struct store *db;
static struct history *hist;
static int64_t series;

struct fold {
	int n;
	int64_t step;
	struct history_bucket b[MAXB];
};

static int
take(void *arg, const struct history_bucket *b)
{
	struct fold *f = arg;

	if (b->count <= 0 || b->min > b->max || history_bucket_of(b->ts, f->step) != b->ts ||
	    (f->n > 0 && b->ts <= f->b[f->n - 1].ts) || b->first_ts > b->last_ts)
		abort();
	f->b[f->n++] = *b;
	return f->n == MAXB;
}

static int64_t
rd64(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;

	for (int i = 0; i < 8 && *p < end; i++)
		v = v << 8 | *(*p)++;
	return (int64_t)v;
}

static void
fold(enum history_tier tier, int64_t step, int64_t from, int64_t to, struct fold *f)
{
	struct history_plan plan = { tier, step, from, to };

	memset(f, 0, sizeof(*f));
	f->step = step;
	if (history_buckets(db, series, &plan, MAXB, take, f) != TW_OK)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	struct history_plan plan;
	struct fold raw, minute, hour;
	int64_t base, step, from, to;
	int fresh;

	if (db == NULL) {
		if ((db = store_open(":memory:", 1, 0)) == NULL || (hist = history_open(db)) == NULL)
			abort();
		if (store_begin(db) != TW_OK || store_series_add(db, "f", "v", &series, NULL,
		    NULL) != TW_OK || store_commit(db) != TW_OK)
			abort();
	}
	if (size < 24)
		return 0;
	/* The query: any range, a step of 1 s to 10 years, as the API allows. */
	step = 1000 + (int64_t)((uint64_t)rd64(&p, end) % 315360000000ULL);
	from = rd64(&p, end);
	to = rd64(&p, end);
	if (from > to) {
		int64_t t = from;

		from = to;
		to = t;
	}
	if (history_plan(db, step, from, to, &plan) != TW_OK || plan.from > from ||
	    plan.to < to || plan.step_ms < step)
		abort();
	/* Points near an hour boundary somewhere in int64, 3 bytes each. */
	base = history_bucket_of(from / 2, HISTORY_HOUR_MS);
	if (store_begin(db) != TW_OK)
		abort();
	while (end - p >= 3) {
		int64_t ts = base + (int64_t)(p[0] | (p[1] & 0x7f) << 8) * 1000 - 4000000;
		struct tw_val v = { .type = (p[1] & 0x80) ? VAL_BOOL : VAL_NUM, .num = p[2] - 128 };

		if (history_put(hist, series, ts, &v, &fresh) != TW_OK)
			abort();
		p += 3;
	}
	if (history_flush(hist) != TW_OK)
		abort();
	/* Minute and hour tiers against raw rows, over every point put. */
	fold(TIER_RAW, HISTORY_HOUR_MS, base - 2 * HISTORY_HOUR_MS, base + 12 * HISTORY_HOUR_MS, &raw);
	fold(TIER_MINUTE, HISTORY_HOUR_MS, base - 2 * HISTORY_HOUR_MS, base + 12 * HISTORY_HOUR_MS,
	    &minute);
	fold(TIER_HOUR, HISTORY_HOUR_MS, base - 2 * HISTORY_HOUR_MS, base + 12 * HISTORY_HOUR_MS,
	    &hour);
	if (raw.n != minute.n || raw.n != hour.n)
		abort();
	for (int i = 0; i < raw.n; i++) {
		const struct history_bucket *a = &raw.b[i], *b = &minute.b[i], *c = &hour.b[i];

		/* Sums of small integers are exact in any order. */
		if (a->ts != b->ts || a->ts != c->ts || a->count != b->count || a->count != c->count ||
		    a->sum != b->sum || a->sum != c->sum || a->min != b->min || a->min != c->min ||
		    a->max != b->max || a->max != c->max || a->first != b->first ||
		    a->first != c->first || a->last != b->last || a->last != c->last ||
		    a->first_ts != c->first_ts || a->last_ts != c->last_ts)
			abort();
	}
	/* The asked query, on whatever it finds. */
	fold(plan.tier, plan.step_ms, plan.from, plan.to, &raw);
	store_rollback(db);
	history_rollback(hist);
	return 0;
}
