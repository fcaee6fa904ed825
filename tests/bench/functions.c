/*
 * The cost of the rule language's functions, per evaluation, and of the
 * anomaly() detector per reading, as ratios to a plain comparison
 * (`x > 1`, the floor) measured in the same run: shared machines are too
 * noisy for absolute numbers alone. Each expression is compiled once and
 * evaluated against a real window and a real detector, filled with a day
 * of readings every 5 s, as the runtime would.
 *
 * usage: tests/bench/twind-functions [EVALUATIONS]   (default 2,000,000)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anomaly.h"
#include "expr.h"
#include "quantile.h"
#include "window.h"

#define NOW	1800000000000LL
#define READINGS	17280	/* a day every 5 s */

struct bench_env {
	const struct expr *e;
	struct window win[EXPR_WINDOWS_MAX];
	struct anomaly det;
	struct ewma ew;
	struct quantile qw[EXPR_WINDOWS_MAX];
	double x;
};

static int quantile_fresh;	/* 1: every evaluation as after a new reading */

static int
env_value(void *arg, int prop, struct tw_val *out)
{
	struct bench_env *b = arg;

	(void)prop;
	out->type = VAL_NUM;
	out->num = b->x;
	out->str = NULL;
	return 0;
}

static int
env_window(void *arg, int win, int fn, double param, double *out)
{
	struct bench_env *b = arg;
	struct tw_val cur = { VAL_NUM, b->x, NULL };

	if (fn == WFN_ANOMALY)
		return anomaly_score(&b->det, param, out);
	if (fn == WFN_EWMA)
		return ewma_value(&b->ew, out);
	if (fn == WFN_QUANTILE) {
		/* As after a new reading: the answer kept for the tick is void. */
		if (quantile_fresh)
			b->qw[win].gen++;
		return quantile_value(&b->qw[win], NOW, param, out);
	}
	return expr_window_value(&b->win[win], NOW, fn, param, &cur, out);
}

static double
reading(int i)
{
	return 20 + 3 * sin(i * 2 * M_PI / READINGS) + ((i * 7919) % 101) / 100.0;
}

static double
now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

/* ns per evaluation of `src`. */
static double
measure(const char *src, long n)
{
	static struct bench_env b;
	struct expr_env env = { &b, env_value, env_value, NULL, env_window };
	char err[200];
	struct expr *e = expr_compile(src, err, sizeof(err), NULL);
	const struct expr_refs *r;
	volatile int sink = 0;
	double t0;

	if (e == NULL) {
		fprintf(stderr, "bench: %s: %s\n", src, err);
		exit(1);
	}
	r = expr_refs(e);
	b.e = e;
	anomaly_init(&b.det);
	memset(&b.ew, 0, sizeof(b.ew));
	for (int w = 0; w < r->nwindows; w++) {
		if (r->windows[w].kind == EXPR_WIN_SPAN)
			window_init(&b.win[w], r->windows[w].len_ms);
		if (r->windows[w].kind == EXPR_WIN_QUANT)
			quantile_init(&b.qw[w], r->windows[w].len_ms);
	}
	for (int i = 0; i < READINGS; i++) {
		int64_t ts = NOW - (int64_t)(READINGS - i) * 5000;

		for (int w = 0; w < r->nwindows; w++) {
			if (r->windows[w].kind == EXPR_WIN_SPAN)
				window_add(&b.win[w], ts, reading(i));
			if (r->windows[w].kind == EXPR_WIN_QUANT)
				quantile_add(&b.qw[w], ts, reading(i), 1);
		}
		anomaly_add(&b.det, ts, reading(i));
		ewma_add(&b.ew, 3600000, ts, reading(i));
	}
	b.x = reading(READINGS);
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		sink += expr_true(e, &env);
	(void)sink;
	expr_free(e);
	return (now_ns() - t0) / (double)n;
}

/* ns per reading that a fresh detector learns, the readings step_ms apart. */
static double
learn_ns(long n, int64_t step_ms)
{
	struct anomaly a;
	double t0;

	anomaly_init(&a);
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		anomaly_add(&a, NOW + i * step_ms, reading((int)(i % 1000003)));
	return (now_ns() - t0) / (double)n;
}

int
main(int argc, char **argv)
{
	static const char *const exprs[] = {
		"sqrt(x) > 1", "log(x) > 1", "exp(x / 100) > 1", "clamp(x, 0, 50) > 1",
		"avg_over(x, 1h) > 1", "stddev_over(x, 1d) > 1", "zscore(x, 1h) > 1",
		"forecast(x, 1h, 30m) > 1", "avg_over(x, 6h, skip=6h) > 1", "ewma(x, 1h) > 1",
		"anomaly(x) > 0.999",
		/* 720 readings in the hour: exact; 17,280 in the day: sampled */
		"median_over(x, 1h) > 1", "quantile_over(x, 1d, 0.95) > 1",
	};
	static struct quantile qa;
	long n = argc > 1 ? atol(argv[1]) : 2000000;
	double floor_ns, t0, add_ns;

	if (n < 1000)
		n = 1000;
	floor_ns = measure("x > 1", n);
	printf("%-28s %10s %8s\n", "expression", "ns/eval", "x floor");
	printf("%-28s %10.1f %8.2f\n", "x > 1 (the floor)", floor_ns, 1.0);
	for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
		int quant = strstr(exprs[i], "quantile") != NULL || strstr(exprs[i], "median") != NULL;
		double ns = measure(exprs[i], n);

		printf("%-28s %10.1f %8.2f%s\n", exprs[i], ns, ns / floor_ns,
		    quant ? "  (no new reading: the tick)" : "");
		if (!quant)
			continue;
		/* After a new reading: a merge of up to 1,024 kept readings, a tenth of the evaluations. */
		quantile_fresh = 1;
		ns = measure(exprs[i], n / 10);
		quantile_fresh = 0;
		printf("%-28s %10.1f %8.2f  (after a new reading)\n", exprs[i], ns, ns / floor_ns);
	}
	add_ns = learn_ns(n, 300000);
	printf("%-28s %10.1f %8.2f\n", "anomaly: one reading learned", add_ns, add_ns / floor_ns);
	/* Read 20 times a second: longer half-lives, and the tail model in the first minutes. */
	add_ns = learn_ns(n, 50);
	printf("%-28s %10.1f %8.2f\n", "  the same, at 20 a second", add_ns, add_ns / floor_ns);
	quantile_init(&qa, 86400000);
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		quantile_add(&qa, NOW + i * 43, reading((int)(i % 1000003)), 1);
	add_ns = (now_ns() - t0) / (double)n;
	printf("%-28s %10.1f %8.2f\n", "quantile: one reading added", add_ns, add_ns / floor_ns);
	printf("memory: a window %zu bytes, an anomaly detector %zu bytes (saved: %d), "
	    "an ewma %zu bytes, a quantile window %zu bytes\n", sizeof(struct window),
	    sizeof(struct anomaly), ANOMALY_STATE_BYTES, sizeof(struct ewma),
	    sizeof(struct quantile));
	return 0;
}
