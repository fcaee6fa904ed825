/*
 * Fuzzes the rule expression language: the whole input is the source.
 * What compiles is evaluated against an environment whose values, ages and
 * windows are derived from the input (numbers, booleans, strings and
 * unknowns), the windows being real ones read through expr_window_value.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "anomaly.h"
#include "expr.h"
#include "ingest.h"
#include "value.h"
#include "quantile.h"
#include "window.h"
#include "fuzz_util.h"

#define NOW	1795496400000LL

struct env {
	const struct expr_refs *refs;
	uint32_t seed;
	struct window win[EXPR_WINDOWS_MAX];
	struct anomaly det[EXPR_WINDOWS_MAX];	/* for windows of kind EXPR_WIN_ANOMALY */
	struct ewma ewma[EXPR_WINDOWS_MAX];	/* for windows of kind EXPR_WIN_EWMA */
	struct quantile q[EXPR_WINDOWS_MAX];	/* for windows of kind EXPR_WIN_QUANT */
	const char *strs[4];
};

static uint32_t
mix(uint32_t h, uint32_t x)
{
	h ^= x + 0x9e3779b9u + (h << 6) + (h >> 2);
	return h;
}

static int
val_for(struct env *e, int prop, int prev, struct tw_val *out)
{
	static const double nums[] = { 0, 1, -1, 0.5, 90.1, 1e308, -1e308, 3, 1e-300, 100 };
	uint32_t h;

	if (prop < 0 || prop >= e->refs->nprops)
		abort();	/* the compiler handed out an index it never made */
	h = mix(e->seed, (uint32_t)prop * 2 + (uint32_t)prev);
	switch (h % 5) {
	case 0:
		return -1;
	case 1:
		out->type = VAL_BOOL;
		out->num = (h >> 3) & 1;
		return 0;
	case 2:
		out->type = VAL_STR;
		out->str = e->strs[(h >> 3) % 4];
		return 0;
	default:
		out->type = VAL_NUM;
		out->num = nums[(h >> 3) % 10];
		return 0;
	}
}

static int
env_value(void *arg, int prop, struct tw_val *out)
{
	return val_for(arg, prop, 0, out);
}

static int
env_prev(void *arg, int prop, struct tw_val *out)
{
	return val_for(arg, prop, 1, out);
}

static int
env_age(void *arg, int prop, double *out)
{
	struct env *e = arg;

	if (prop < -1 || prop >= e->refs->nprops || (prop == -1 && !e->refs->uses_age_twin))
		abort();
	*out = (double)(mix(e->seed, (uint32_t)prop + 77) % 1000);
	return 0;
}

static int
env_window(void *arg, int win, int fn, double param, double *out)
{
	struct env *e = arg;
	struct tw_val cur = { 0 };

	if (win < 0 || win >= e->refs->nwindows || fn < WFN_AVG || fn > WFN_QUANTILE ||
	    (fn == WFN_ANOMALY) != (e->refs->windows[win].kind == EXPR_WIN_ANOMALY) ||
	    (fn == WFN_DISAGREE) != (e->refs->windows[win].kind == EXPR_WIN_DIFF) ||
	    (e->refs->windows[win].kind == EXPR_WIN_DIFF) != (e->refs->windows[win].prop2 >= 0) ||
	    (fn == WFN_EWMA) != (e->refs->windows[win].kind == EXPR_WIN_EWMA) ||
	    (fn == WFN_QUANTILE) != (e->refs->windows[win].kind == EXPR_WIN_QUANT))
		abort();
	if (fn == WFN_QUANTILE) {
		/* The readings fed are in [-25, 25): every quantile of them is too. */
		if (!(param >= 0 && param <= 1))
			abort();
		if (quantile_value(&e->q[win], NOW, param, out) != 0)
			return -1;
		if (!(*out >= -25 && *out < 25))
			abort();
		return 0;
	}
	if (fn == WFN_EWMA)
		return ewma_value(&e->ewma[win], out);
	if (fn == WFN_ANOMALY || fn == WFN_DISAGREE) {
		if (!(param > 0) || param > 100)
			abort();
		if (anomaly_score(&e->det[win], param, out) != 0)
			return -1;
		if (!(*out >= 0 && *out <= 1))
			abort();
		return 0;
	}
	if (fn == WFN_ZSCORE)
		val_for(e, e->refs->windows[win].prop, 0, &cur);
	return expr_window_value(&e->win[win], NOW, fn, param, &cur, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct env env;
	struct expr_env ee = { &env, env_value, env_prev, env_age, env_window };
	char *src, err[200];
	struct expr *e;
	struct tw_val v;
	int col = -1;

	if (size > EXPR_LEN_MAX + 16)
		return 0;
	src = fuzz_strndup(data, size);
	e = expr_compile(src, err, sizeof(err), &col);
	if (e == NULL) {
		if (err[0] == '\0' || col < 0 || col > (int)size + 1)
			abort();	/* every error says what and where */
		free(src);
		return 0;
	}
	env.refs = expr_refs(e);
	if (env.refs->nprops > EXPR_REFS_MAX || env.refs->nwindows > EXPR_WINDOWS_MAX)
		abort();
	env.seed = 2166136261u;
	for (size_t i = 0; i < size; i++)
		env.seed = (env.seed ^ data[i]) * 16777619u;
	env.strs[0] = "";
	env.strs[1] = "auto";
	env.strs[2] = "manual";
	env.strs[3] = "auto";
	for (int w = 0; w < env.refs->nwindows; w++) {
		int64_t len = env.refs->windows[w].len_ms;
		uint32_t h = mix(env.seed, (uint32_t)w);
		int n = (int)(h % 6);

		if (env.refs->windows[w].kind == EXPR_WIN_ANOMALY ||
		    env.refs->windows[w].kind == EXPR_WIN_DIFF) {
			if (len != 0)
				abort();
			anomaly_init(&env.det[w]);
			/* Past the warm-up, so that its score is known half the time. */
			for (int i = 0; i < (int)(h % 2) * (ANOMALY_WARMUP + 40); i++)
				anomaly_add(&env.det[w], NOW + i * 300000LL, (double)((h >> (i % 24)) % 97) + i % 5);
			continue;
		}
		if (len <= 0)
			abort();
		if (env.refs->windows[w].kind == EXPR_WIN_EWMA) {
			memset(&env.ewma[w], 0, sizeof(env.ewma[w]));
			for (int i = 0; i < n; i++)
				ewma_add(&env.ewma[w], len, NOW - (int64_t)(n - i) * (len / 7 + 1),
				    (double)((int)((h >> i) % 200) - 100) / 4.0);
			continue;
		}
		if (env.refs->windows[w].kind == EXPR_WIN_QUANT) {
			/* Enough readings, some out of order, to fill and thin a sixteenth. */
			quantile_init(&env.q[w], len);
			for (int i = 0; i < n * 40; i++)
				quantile_add(&env.q[w], NOW - (int64_t)((h >> (i % 29)) % 7) *
				    (len / 7 + 1), (double)((int)((h >> (i % 24)) % 200) - 100) / 4.0,
				    1 + (uint32_t)(i % 3 == 0) * (h % 50));
			continue;
		}
		window_init(&env.win[w], len);
		for (int i = 0; i < n; i++)
			window_add(&env.win[w], NOW - (int64_t)((h >> (i + 3)) % 7) * (len / 7 + 1),
			    (double)((int)((h >> i) % 200) - 100) / 4.0);
	}
	/* Three environments: all values, none, and no callbacks at all. */
	if (expr_eval(e, &ee, &v) == 0 && v.type != VAL_NUM && v.type != VAL_BOOL &&
	    v.type != VAL_STR)
		abort();
	if (v.type == VAL_NUM && !isfinite(v.num))
		abort();
	(void)expr_true(e, &ee);
	env.seed ^= 0x5bd1e995u;
	(void)expr_true(e, &ee);
	{
		struct expr_env none = { 0 };

		(void)expr_eval(e, &none, &v);
	}
	expr_free(e);
	free(src);
	return 0;
}
