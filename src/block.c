/*
 * Blocks of points (block.h). Byte-aligned rather than bit-packed as in
 * Gorilla: sensor values are mostly short decimals, whose integer deltas
 * take one or two bytes, and bytes keep the decoder short enough to read.
 *
 * Layout: format (1 decimals, 2 XOR), for decimals their count, n, the
 * first ts, n - 1 time tokens (deltas of deltas), then the first value
 * and n - 1 value tokens (decimals: integer deltas) or XOR records.
 * A token is a zigzag varint; a zero is followed by how many more zeros
 * come after it.
 */
#include <math.h>
#include <string.h>

#include "block.h"

enum { FMT_DEC = 1, FMT_XOR = 2 };

#define DEC_MAX		6
#define VARINT_MAX	10

static const double pow10_tab[DEC_MAX + 1] = { 1, 10, 100, 1e3, 1e4, 1e5, 1e6 };

struct wbuf {
	uint8_t *p;
	uint64_t zeros;		/* a run of zero tokens not written yet */
};

struct rbuf {
	const uint8_t *p, *end;
	uint64_t zeros;		/* zero tokens still owed by the last run */
	int bad;
};

static uint64_t
zigzag(uint64_t u)
{
	return (u << 1) ^ (0 - (u >> 63));
}

static uint64_t
unzigzag(uint64_t z)
{
	return (z >> 1) ^ (0 - (z & 1));
}

static void
put_varint(struct wbuf *w, uint64_t x)
{
	while (x >= 0x80) {
		*w->p++ = (uint8_t)(x | 0x80);
		x >>= 7;
	}
	*w->p++ = (uint8_t)x;
}

static uint64_t
get_varint(struct rbuf *r)
{
	uint64_t x = 0;

	for (int shift = 0; shift < 7 * VARINT_MAX; shift += 7) {
		uint8_t b;

		if (r->p >= r->end)
			break;
		b = *r->p++;
		/* The tenth byte holds bit 63 only. */
		if (shift == 63 && b > 1)
			break;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return x;
	}
	r->bad = 1;
	return 0;
}

static void
flush_zeros(struct wbuf *w)
{
	if (w->zeros == 0)
		return;
	put_varint(w, 0);
	put_varint(w, w->zeros - 1);
	w->zeros = 0;
}

static void
put_token(struct wbuf *w, uint64_t x)
{
	if (x == 0) {
		w->zeros++;
		return;
	}
	flush_zeros(w);
	put_varint(w, zigzag(x));
}

static uint64_t
get_token(struct rbuf *r)
{
	uint64_t z;

	if (r->zeros > 0) {
		r->zeros--;
		return 0;
	}
	z = get_varint(r);
	if (z != 0)
		return unzigzag(z);
	r->zeros = get_varint(r);
	if (r->zeros >= BLOCK_MAX)
		r->bad = 1;
	return 0;
}

size_t
block_bound(int n)
{
	/* Per point: a time token and a value token (or an XOR record of 9). */
	return (size_t)n * 2 * VARINT_MAX + 4 * VARINT_MAX;
}

/* The fewest decimals that give every value back bit for bit, or -1. */
static int
decimals(const double *v, int n)
{
	for (int d = 0; d <= DEC_MAX; d++) {
		int i;

		for (i = 0; i < n; i++) {
			double scaled = v[i] * pow10_tab[d], back;

			/* -0.0 is 0 here; the list after the values gives its sign back. */
			if (v[i] == 0)
				continue;
			if (!(fabs(scaled) < 9007199254740992.0))
				break;
			back = (double)llround(scaled) / pow10_tab[d];
			if (memcmp(&back, &v[i], sizeof(back)) != 0)
				break;
		}
		if (i == n)
			return d;
	}
	return -1;
}

static uint64_t
bits_of(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return u;
}

static void
put_xor(struct wbuf *w, uint64_t x)
{
	int lead = 0, trail = 0;

	if (x == 0) {
		*w->p++ = 8 << 4;
		return;
	}
	while (!(x >> (56 - 8 * lead) & 0xff))
		lead++;
	while (!(x >> (8 * trail) & 0xff))
		trail++;
	*w->p++ = (uint8_t)(lead << 4 | trail);
	for (int i = trail; i < 8 - lead; i++)
		*w->p++ = (uint8_t)(x >> (8 * i));
}

static uint64_t
get_xor(struct rbuf *r)
{
	uint64_t x = 0;
	int lead, trail;

	if (r->p >= r->end) {
		r->bad = 1;
		return 0;
	}
	lead = *r->p >> 4;
	trail = *r->p++ & 0xf;
	if (lead == 8 && trail == 0)
		return 0;
	if (lead + trail >= 8 || r->end - r->p < 8 - lead - trail) {
		r->bad = 1;
		return 0;
	}
	for (int i = trail; i < 8 - lead; i++)
		x |= (uint64_t)*r->p++ << (8 * i);
	return x;
}

/*
 * A printf of -0.04 as "%.1f" says -0.0, and one of it would turn a
 * block to XOR: the decimals carry it as 0, and this list (how many,
 * then each index as a gap from the one before) puts the sign back.
 */
static void
put_neg_zeros(struct wbuf *w, const double *v, int n)
{
	int count = 0, last = -1;

	for (int i = 0; i < n; i++)
		count += v[i] == 0 && signbit(v[i]);
	put_varint(w, (uint64_t)count);
	for (int i = 0; i < n; i++)
		if (v[i] == 0 && signbit(v[i])) {
			put_varint(w, (uint64_t)(i - last - 1));
			last = i;
		}
}

size_t
block_encode(const int64_t *ts, const double *v, int n, uint8_t *out)
{
	struct wbuf w = { out, 0 };
	uint64_t prev_d = 0;
	int d;

	if (n < 1 || n > BLOCK_MAX)
		return 0;
	for (int i = 0; i < n; i++)
		if (!isfinite(v[i]) || (i > 0 && ts[i] <= ts[i - 1]))
			return 0;
	d = decimals(v, n);
	*w.p++ = d >= 0 ? FMT_DEC : FMT_XOR;
	if (d >= 0)
		*w.p++ = (uint8_t)d;
	put_varint(&w, (uint64_t)n);
	put_varint(&w, zigzag((uint64_t)ts[0]));
	for (int i = 1; i < n; i++) {
		uint64_t delta = (uint64_t)ts[i] - (uint64_t)ts[i - 1];

		put_token(&w, delta - prev_d);
		prev_d = delta;
	}
	flush_zeros(&w);
	if (d >= 0) {
		int64_t prev = llround(v[0] * pow10_tab[d]);

		put_varint(&w, zigzag((uint64_t)prev));
		for (int i = 1; i < n; i++) {
			int64_t m = llround(v[i] * pow10_tab[d]);

			put_token(&w, (uint64_t)m - (uint64_t)prev);
			prev = m;
		}
		flush_zeros(&w);
		put_neg_zeros(&w, v, n);
	} else {
		/* Little-endian, as the XOR records: a block reads the same on any machine. */
		for (int i = 0; i < 8; i++)
			*w.p++ = (uint8_t)(bits_of(v[0]) >> (8 * i));
		for (int i = 1; i < n; i++)
			put_xor(&w, bits_of(v[i]) ^ bits_of(v[i - 1]));
	}
	return (size_t)(w.p - out);
}

static int
get_neg_zeros(struct rbuf *r, int n, double *v)
{
	uint64_t count = get_varint(r);
	int64_t at = -1;

	if (count > (uint64_t)n)
		return -1;
	for (uint64_t k = 0; k < count && !r->bad; k++) {
		uint64_t gap = get_varint(r);

		/* Only a zero the decimals gave, once each: what the encoder writes. */
		if (gap >= (uint64_t)n || (at += (int64_t)gap + 1) >= n || v[at] != 0 ||
		    signbit(v[at]))
			return -1;
		v[at] = -0.0;
	}
	return r->bad ? -1 : 0;
}

/* Times and values decoded; 0, or -1 when the bytes break a rule. */
static int
decode_values(struct rbuf *r, int fmt, int d, int n, double *v)
{
	uint64_t first = 0;

	if (fmt == FMT_DEC) {
		uint64_t m = unzigzag(get_varint(r));

		for (int i = 0; i < n && !r->bad; i++) {
			if (i > 0)
				m += get_token(r);
			v[i] = (double)(int64_t)m / pow10_tab[d];
		}
		if (r->bad || r->zeros != 0)
			return -1;
		return get_neg_zeros(r, n, v);
	}
	if (r->end - r->p < 8)
		return -1;
	for (int i = 0; i < 8; i++)
		first |= (uint64_t)*r->p++ << (8 * i);
	memcpy(&v[0], &first, sizeof(first));
	for (int i = 1; i < n && !r->bad; i++) {
		uint64_t u = bits_of(v[i - 1]) ^ get_xor(r);

		memcpy(&v[i], &u, sizeof(u));
	}
	if (r->bad)
		return -1;
	for (int i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return -1;
	return 0;
}

int
block_decode(const uint8_t *in, size_t len, int64_t *ts, double *v)
{
	struct rbuf r = { in, in + len, 0, 0 };
	uint64_t n, t, prev_d = 0;
	int fmt, d = 0;

	if (len < 3)
		return -1;
	fmt = *r.p++;
	if (fmt == FMT_DEC && (d = *r.p++) > DEC_MAX)
		return -1;
	if (fmt != FMT_DEC && fmt != FMT_XOR)
		return -1;
	n = get_varint(&r);
	if (r.bad || n < 1 || n > BLOCK_MAX)
		return -1;
	t = unzigzag(get_varint(&r));
	ts[0] = (int64_t)t;
	for (uint64_t i = 1; i < n && !r.bad; i++) {
		prev_d += get_token(&r);
		t += prev_d;
		ts[i] = (int64_t)t;
		if (ts[i] <= ts[i - 1])
			return -1;
	}
	if (r.bad || r.zeros != 0)
		return -1;
	if (decode_values(&r, fmt, d, (int)n, v) != 0 || r.p != r.end)
		return -1;
	return (int)n;
}
