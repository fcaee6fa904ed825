/*
 * Rollup blocks (rollup_block.h). Layout: the format, n rows and m full
 * rows (16 bits each), eight column lengths (32 bits each), then the
 * columns, each a block of points (block.h). The first three columns
 * have a point per row over the rows' ts: the kind (1: a row of one
 * reading, -count: a full row), first's offset in the bucket and first.
 * The other five have a point per full row: last's offset, last, min,
 * max and sum. A column with no point is empty.
 */
#include <math.h>
#include <string.h>

#include "rollup_block.h"

#define FORMAT		1
#define COUNT_MAX	9007199254740992.0	/* 2^53: a count a double holds exactly */

enum col { C_KIND, C_FIRST_OFF, C_FIRST, C_LAST_OFF, C_LAST, C_MIN, C_MAX, C_SUM, C__COUNT };
#define C_FULL	C_LAST_OFF	/* columns from here on hold full rows only */
#define HEADER	(1 + 2 + 2 + 4 * C__COUNT)

static int
same(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

/* A row of one reading: every value is that reading, bit for bit (-0.0 too). */
static int
single(const struct history_bucket *r)
{
	return r->count == 1 && r->first_ts == r->last_ts && same(r->first, r->last) &&
	    same(r->first, r->min) && same(r->first, r->max) && same(r->first, r->sum);
}

/* ts - bucket as an offset, computed without overflow (ts >= bucket). */
static double
offset(int64_t ts, int64_t bucket)
{
	return (double)((uint64_t)ts - (uint64_t)bucket);
}

static int
row_ok(const struct history_bucket *r, const struct history_bucket *prev, int64_t width)
{
	return r->ts % width == 0 && r->ts <= INT64_MAX - width &&
	    (prev == NULL || r->ts > prev->ts) && r->count >= 1 && (double)r->count <= COUNT_MAX &&
	    r->first_ts >= r->ts && r->last_ts >= r->first_ts &&
	    offset(r->last_ts, r->ts) < (double)width && isfinite(r->first) &&
	    isfinite(r->last) && isfinite(r->min) && isfinite(r->max) && isfinite(r->sum);
}

static void
put_u(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get_u(const uint8_t *p, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

int
rblock_valid(const struct history_bucket *rows, int n, int64_t width)
{
	int i = 0;

	while (i < n && width > 0 && row_ok(&rows[i], i > 0 ? &rows[i - 1] : NULL, width))
		i++;
	return i;
}

size_t
rblock_bound(int n)
{
	return HEADER + C__COUNT * block_bound(n);
}

static double
column(const struct history_bucket *r, enum col c)
{
	switch (c) {
	case C_KIND:
		return single(r) ? 1.0 : -(double)r->count;
	case C_FIRST_OFF:
		return offset(r->first_ts, r->ts);
	case C_FIRST:
		return r->first;
	case C_LAST_OFF:
		return offset(r->last_ts, r->ts);
	case C_LAST:
		return r->last;
	case C_MIN:
		return r->min;
	case C_MAX:
		return r->max;
	default:
		return r->sum;
	}
}

size_t
rblock_encode(const struct history_bucket *rows, int n, int64_t width, uint8_t *out)
{
	int64_t ts[RBLOCK_MAX];
	double v[RBLOCK_MAX];
	size_t at = HEADER;
	int m = 0;

	if (n < 1 || n > RBLOCK_MAX || rblock_valid(rows, n, width) != n)
		return 0;
	for (int i = 0; i < n; i++)
		m += !single(&rows[i]);
	out[0] = FORMAT;
	put_u(out + 1, (uint64_t)n, 2);
	put_u(out + 3, (uint64_t)m, 2);
	for (enum col c = 0; c < C__COUNT; c++) {
		size_t len = 0;
		int k = 0;

		for (int i = 0; i < n; i++) {
			if (c >= C_FULL && single(&rows[i]))
				continue;
			ts[k] = rows[i].ts;
			v[k++] = column(&rows[i], c);
		}
		if (k > 0 && (len = block_encode(ts, v, k, out + at)) == 0)
			return 0;
		put_u(out + 5 + 4 * c, len, 4);
		at += len;
	}
	return at;
}

/* An offset column's point: a whole number of ms inside the bucket. */
static int
offset_ok(double v, int64_t width)
{
	return v >= 0 && v < (double)width && v == floor(v);
}

/* Takes column c (k points in s) into the rows; full[] lists the full rows. */
static int
take(struct history_bucket *rows, int n, const int *full, enum col c,
    const struct rblock_scratch *s, int64_t width)
{
	int k = c < C_FULL ? n : 0;

	for (int j = 0; c >= C_FULL && j < n; j++)
		k += full[j];
	for (int i = 0, j = 0; j < k; i++) {
		struct history_bucket *r = &rows[i];
		double v;

		if (c >= C_FULL && !full[i])
			continue;
		v = s->v[j];
		if (s->ts[j++] != r->ts)
			return -1;
		switch (c) {
		case C_FIRST_OFF:
		case C_LAST_OFF:
			if (!offset_ok(v, width))
				return -1;
			*(c == C_FIRST_OFF ? &r->first_ts : &r->last_ts) = r->ts + (int64_t)v;
			break;
		case C_FIRST:
			r->first = v;
			break;
		case C_LAST:
			r->last = v;
			break;
		case C_MIN:
			r->min = v;
			break;
		case C_MAX:
			r->max = v;
			break;
		default:
			r->sum = v;
			break;
		}
	}
	return 0;
}

/* The kind column: each row's ts and count, and which rows are full; -1 if m disagrees. */
static int
take_kind(struct history_bucket *rows, int n, int m, int *full, const struct rblock_scratch *s,
    int64_t width)
{
	int fulls = 0;

	for (int i = 0; i < n; i++) {
		double k = s->v[i];

		rows[i].ts = s->ts[i];
		/* A bucket must end inside int64: its offsets are added to its ts. */
		if (rows[i].ts % width != 0 || rows[i].ts > INT64_MAX - width)
			return -1;
		if (k == 1.0) {
			full[i] = 0;
			rows[i].count = 1;
		} else if (k <= -1.0 && k >= -COUNT_MAX && k == floor(k)) {
			full[i] = 1;
			rows[i].count = (int64_t)-k;
			fulls++;
		} else {
			return -1;
		}
	}
	return fulls == m ? 0 : -1;
}

int
rblock_decode(const uint8_t *in, size_t len, int64_t width, struct history_bucket *rows,
    struct rblock_scratch *s)
{
	int full[RBLOCK_MAX], n, m;
	size_t at = HEADER;

	if (len < HEADER || in[0] != FORMAT || width <= 0)
		return -1;
	n = (int)get_u(in + 1, 2);
	m = (int)get_u(in + 3, 2);
	if (n < 1 || n > RBLOCK_MAX || m > n)
		return -1;
	for (enum col c = 0; c < C__COUNT; c++) {
		size_t clen = get_u(in + 5 + 4 * c, 4);
		int want = c < C_FULL ? n : m;

		if (clen > len - at)
			return -1;
		if (want == 0 ? clen != 0 :
		    block_decode(in + at, clen, s->ts, s->v) != want)
			return -1;
		if (want > 0 && (c == C_KIND ? take_kind(rows, n, m, full, s, width) :
		    take(rows, n, full, c, s, width)) != 0)
			return -1;
		at += clen;
	}
	if (at != len)
		return -1;
	for (int i = 0; i < n; i++) {
		struct history_bucket *r = &rows[i];

		if (!full[i]) {
			r->last_ts = r->first_ts;
			r->last = r->min = r->max = r->sum = r->first;
		} else if (r->last_ts < r->first_ts) {
			return -1;
		}
	}
	/* What comes out keeps the encoder's rules, whatever came in. */
	return rblock_valid(rows, n, width) == n ? n : -1;
}
