/* Unit tests of the rule expression language: operators, types, unknowns, functions against recomputed values, errors with columns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "expr.h"
#include "quantile.h"
#include "window.h"

#define T0	1800000000000LL
#define NPTS_MAX	64

/* A property of the fake twin: its value, previous value, age and history. */
struct fprop {
	const char *name;
	struct tw_val val, prev;
	int has_val, has_prev;
	double age;
	int npts;
	int64_t ts[NPTS_MAX];
	double v[NPTS_MAX];
};

/* The fake twin: properties by name, and real windows built from the compiled refs. */
struct fake {
	const struct expr *e;
	struct fprop *props;
	int nprops;
	double twin_age;
	int64_t now;
	struct window win[EXPR_WINDOWS_MAX];
	struct ewma ew[EXPR_WINDOWS_MAX];
	struct quantile qw[EXPR_WINDOWS_MAX];
};

static struct fprop *
fake_find(struct fake *f, int idx)
{
	const char *name = expr_refs(f->e)->props[idx];

	for (int i = 0; i < f->nprops; i++)
		if (strcmp(f->props[i].name, name) == 0)
			return &f->props[i];
	return NULL;
}

static int
fake_value(void *arg, int prop, struct tw_val *out)
{
	struct fprop *p = fake_find(arg, prop);

	if (p == NULL || !p->has_val)
		return -1;
	*out = p->val;
	return 0;
}

static int
fake_prev(void *arg, int prop, struct tw_val *out)
{
	struct fprop *p = fake_find(arg, prop);

	if (p == NULL || !p->has_prev)
		return -1;
	*out = p->prev;
	return 0;
}

static int
fake_age(void *arg, int prop, double *out)
{
	struct fake *f = arg;
	struct fprop *p;

	if (prop < 0) {
		*out = f->twin_age;
		return 0;
	}
	if ((p = fake_find(f, prop)) == NULL || !p->has_val)
		return -1;
	*out = p->age;
	return 0;
}

static int
fake_window(void *arg, int win, int fn, double param, double *out)
{
	struct fake *f = arg;
	struct fprop *p = fake_find(f, expr_refs(f->e)->windows[win].prop);

	if (fn == WFN_EWMA)
		return ewma_value(&f->ew[win], out);
	if (fn == WFN_QUANTILE)
		return quantile_value(&f->qw[win], f->now, param, out);
	return expr_window_value(&f->win[win], f->now, fn, param,
	    p != NULL && p->has_val ? &p->val : NULL, out);
}

/* Points the fake twin has seen, fed into a real window per (property, window) of the expr. */
static void
fake_bind(struct fake *f, const struct expr *e)
{
	const struct expr_refs *r = expr_refs(e);

	f->e = e;
	for (int i = 0; i < r->nwindows; i++) {
		struct fprop *p = fake_find(f, r->windows[i].prop);

		window_init(&f->win[i], r->windows[i].len_ms);
		memset(&f->ew[i], 0, sizeof(f->ew[i]));
		quantile_init(&f->qw[i], r->windows[i].len_ms);
		for (int j = 0; p != NULL && j < p->npts; j++) {
			window_add(&f->win[i], p->ts[j], p->v[j]);
			quantile_add(&f->qw[i], p->ts[j], p->v[j], 1);
			ewma_add(&f->ew[i], r->windows[i].len_ms, p->ts[j], p->v[j]);
		}
	}
}

static const struct expr_env fake_env_ops = {
	NULL, fake_value, fake_prev, fake_age, fake_window,
};

static struct fprop twin_props[8];
static struct fake twin;

static struct tw_val
num(double d)
{
	struct tw_val v = { VAL_NUM, d, NULL };

	return v;
}

static struct tw_val
boolean(int b)
{
	struct tw_val v = { VAL_BOOL, b, NULL };

	return v;
}

static struct tw_val
str(const char *s)
{
	struct tw_val v = { VAL_STR, 0, s };

	return v;
}

static void
set(int i, const char *name, struct tw_val v)
{
	twin_props[i].name = name;
	twin_props[i].val = v;
	twin_props[i].has_val = 1;
}

/*
 * The twin every test sees: a=5, b=false, s="a\"b\\c", motor.temp.c=61.5,
 * flag=true, t (a series, rising 0.5/s with a wobble), flat (constant 3),
 * lim=90; `ghost` was never reported.
 */
static int
setup(void **state)
{
	struct fprop *t = &twin_props[5], *fl = &twin_props[6];

	(void)state;
	memset(twin_props, 0, sizeof(twin_props));
	memset(&twin, 0, sizeof(twin));
	set(0, "a", num(5));
	set(1, "b", boolean(0));
	set(2, "s", str("a\"b\\c"));
	set(3, "motor.temp.c", num(61.5));
	set(4, "flag", boolean(1));
	set(5, "t", num(0));
	set(6, "flat", num(3));
	set(7, "lim", num(90));
	twin_props[0].prev = num(4);
	twin_props[0].has_prev = 1;
	twin_props[0].age = 12.5;
	twin.twin_age = 2.25;
	twin.now = T0 + 40000;
	/* t: 40 points one a second, 50 + 0.5 s + wobble; the last is the current value. */
	for (int i = 0; i < 40; i++) {
		t->ts[i] = T0 + 1000 + i * 1000;
		t->v[i] = 50 + 0.5 * i + ((i * 7) % 3 - 1) * 0.4;
	}
	t->npts = 40;
	t->val = num(t->v[39]);
	for (int i = 0; i < 10; i++) {
		fl->ts[i] = T0 + 31000 + i * 1000;
		fl->v[i] = 3;
	}
	fl->npts = 10;
	twin.props = twin_props;
	twin.nprops = 8;
	return 0;
}

static struct expr *
compile_ok(const char *src)
{
	char err[256];
	int col;
	struct expr *e = expr_compile(src, err, sizeof(err), &col);

	if (e == NULL)
		fail_msg("'%s': %s at column %d", src, err, col);
	fake_bind(&twin, e);
	return e;
}

/* Evaluates `src`; returns expr_eval's code and the value in *out. */
static int
eval(const char *src, struct tw_val *out)
{
	struct expr_env env = fake_env_ops;
	struct expr *e = compile_ok(src);
	int rc;

	env.arg = &twin;
	rc = expr_eval(e, &env, out);
	/* Strings would point into the freed expr: keep only the verdict. */
	if (out->type == VAL_STR)
		out->str = NULL;
	expr_free(e);
	return rc;
}

static double
num_of(const char *src)
{
	struct tw_val v;

	if (eval(src, &v) != 0 || v.type != VAL_NUM)
		fail_msg("'%s': not a number (rc type %d)", src, v.type);
	return v.num;
}

static void
is_bool(const char *src, int want)
{
	struct tw_val v;

	if (eval(src, &v) != 0 || v.type != VAL_BOOL)
		fail_msg("'%s': not a boolean (type %d)", src, v.type);
	if ((v.num != 0) != want)
		fail_msg("'%s': %s, want %s", src, v.num ? "true" : "false", want ? "true" : "false");
}

static void
is_unknown(const char *src)
{
	struct tw_val v;
	struct expr_env env = fake_env_ops;
	struct expr *e;

	if (eval(src, &v) != -1 || v.type != 0)
		fail_msg("'%s': known (type %d, %g), want unknown", src, v.type, v.num);
	/* ... and as a condition it is false. */
	e = compile_ok(src);
	env.arg = &twin;
	assert_int_equal(expr_true(e, &env), 0);
	expr_free(e);
}

static void
near(const char *src, double want)
{
	double got = num_of(src);

	if (!(fabs(got - want) <= 1e-9 * (fabs(want) > 1 ? fabs(want) : 1)))
		fail_msg("'%s' = %.17g, want %.17g", src, got, want);
}

static void
bad(const char *src, int want_col, const char *words)
{
	char err[256] = "";
	int col = -1;
	struct expr *e = expr_compile(src, err, sizeof(err), &col);

	if (e != NULL) {
		expr_free(e);
		fail_msg("'%s' compiled, want an error", src);
	}
	if (col != want_col || strstr(err, words) == NULL)
		fail_msg("'%s': '%s' at column %d, want '%s' at %d", src, err, col, words, want_col);
}

static void
test_arithmetic_and_precedence(void **state)
{
	(void)state;
	is_bool("1 + 2 * 3 == 7", 1);
	near("(1 + 2) * 3", 9);
	near("-2 * -3", 6);
	near("- -3", 3);
	near("-(2 + 3)", -5);
	near("-a * 2", -10);
	near("10 - 4 - 3", 3);
	near("100 / 10 / 5", 2);
	near("2 * 3 % 4", 2);
	near("7 % 3", 1);
	near("-7 % 3", -1);
	near("7.5 % 2", 1.5);
	near("1e3 + 1.5", 1001.5);
	near("2E-1", 0.2);
	near("a-1", 4);		/* `-` is never part of a name */
	near("1 + 2 - 3 * 4 / 8", 1.5);
	near("motor.temp.c * 2", 123);
	is_unknown("1 / 0");
	is_unknown("a % 0");
	is_unknown("1e308 * 10");
	is_unknown("s + 1");
	is_unknown("flag + 1");
	is_unknown("-s");
	/* A long flat chain is not deep: it needs no nesting. */
	{
		char buf[4100];
		size_t n = 0;

		for (int i = 0; i < 1000; i++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, i ? "+1" : "1");
		near(buf, 1000);
	}
}

static void
test_comparisons(void **state)
{
	(void)state;
	is_bool("a < 6", 1);
	is_bool("a < 5", 0);
	is_bool("a <= 5", 1);
	is_bool("a > 5", 0);
	is_bool("a >= 5", 1);
	is_bool("a == 5", 1);
	is_bool("a != 5", 0);
	is_bool("motor.temp.c > 61", 1);
	/* Strings: strcmp order, escapes. */
	is_bool("\"abc\" < \"abd\"", 1);
	is_bool("\"b\" > \"abc\"", 1);
	is_bool("\"abc\" <= \"abc\"", 1);
	is_bool("\"abc\" >= \"abd\"", 0);
	is_bool("s == \"a\\\"b\\\\c\"", 1);
	is_bool("s != \"a\"", 1);
	is_bool("\"\" == \"\"", 1);
	/* Booleans: equality only. */
	is_bool("true == true", 1);
	is_bool("flag != b", 1);
	is_bool("b == false", 1);
	is_unknown("true < false");
	is_unknown("flag >= b");
	/* Mixed types: unknown, whichever way round. */
	is_unknown("a == \"5\"");
	is_unknown("\"5\" != a");
	is_unknown("flag == 1");
	is_unknown("s > 1");
}

static void
test_logic(void **state)
{
	(void)state;
	/* not binds looser than comparisons: not (a > 1) or b. */
	is_bool("not a > 1 or b", 0);
	is_bool("not a > 9 or b", 1);
	is_bool("not a > 1 or flag", 1);
	is_bool("! a > 1 || b", 0);
	is_bool("true or false and false", 1);
	is_bool("(true or false) and false", 0);
	is_bool("not true and false", 0);
	is_bool("not (true and false)", 1);
	is_bool("not not true", 1);
	is_bool("a > 1 && a < 10", 1);
	is_bool("a > 1 and a > 10", 0);
	is_bool("b || flag", 1);
	/* Numbers are truthy when non-zero. */
	is_bool("1 and 2", 1);
	is_bool("0 or 0", 0);
	is_bool("not 0", 1);
	is_unknown("s and true");
	/* Names that start like keywords are names. */
	is_unknown("trueish > 1 or notable");
}

/* A property never reported is unknown, and unknown follows SQL NULL through and/or/not. */
static void
test_three_valued(void **state)
{
	struct expr_env env = fake_env_ops;
	struct expr *e;

	(void)state;
	is_unknown("ghost");
	is_unknown("ghost > 1");
	is_unknown("ghost + 1 > 0");
	is_unknown("not (ghost > 1)");
	is_unknown("not ghost");
	is_unknown("ghost > 1 and true");
	is_unknown("true and ghost > 1");
	is_unknown("ghost > 1 or false");
	is_unknown("ghost == ghost");
	is_bool("ghost > 1 and false", 0);
	is_bool("false and ghost > 1", 0);
	is_bool("ghost > 1 or true", 1);
	is_bool("true or ghost > 1", 1);
	is_bool("ghost > 1 or a == 5", 1);
	is_unknown("abs(ghost)");
	is_unknown("min(ghost, 1)");
	is_unknown("prev(b)");		/* b has no previous value */
	is_unknown("age(ghost)");
	is_unknown("avg_over(ghost, 1m)");
	near("count_over(ghost, 1m)", 0);
	/* expr_true: only true and non-zero numbers hold. */
	env.arg = &twin;
	e = compile_ok("a");
	assert_int_equal(expr_true(e, &env), 1);
	expr_free(e);
	e = compile_ok("a - 5");
	assert_int_equal(expr_true(e, &env), 0);
	expr_free(e);
	e = compile_ok("s");
	assert_int_equal(expr_true(e, &env), 0);
	expr_free(e);
	e = compile_ok("flag");
	assert_int_equal(expr_true(e, &env), 1);
	expr_free(e);
	/* An environment that knows nothing: every callback NULL. */
	{
		struct expr_env none = { NULL, NULL, NULL, NULL, NULL };
		struct tw_val v;

		e = compile_ok("a > 1 or age() > 1 or prev(a) > 1 or avg_over(a, 1m) > 1");
		assert_int_equal(expr_eval(e, &none, &v), -1);
		expr_free(e);
	}
}

static void
test_plain_functions(void **state)
{
	struct tw_val v;

	(void)state;
	near("abs(-3)", 3);
	near("abs(a - 7.5)", 2.5);
	near("min(2, 5)", 2);
	near("max(2, 5)", 5);
	near("max(min(a, 3), -1)", 3);
	is_unknown("abs(\"x\")");
	is_unknown("max(flag, 1)");
	near("prev(a)", 4);
	near("a - prev(a)", 1);
	near("age(a)", 12.5);
	near("age()", 2.25);
	is_bool("age() < 5 and age(a) > 10", 1);
	/* A string result comes back as a string. */
	assert_int_equal(eval("s", &v), 0);
	assert_int_equal(v.type, VAL_STR);
}

/* sqrt, log, exp and clamp: values, and unknown outside their domain. */
static void
test_math_functions(void **state)
{
	(void)state;
	near("sqrt(a + 4)", 3);
	near("log(exp(2.5))", 2.5);
	near("exp(0)", 1);
	near("log(a)", log(5));
	near("clamp(a, 0, 3)", 3);
	near("clamp(a, 6, 9)", 6);
	near("clamp(a, 0, 10)", 5);
	near("sqrt(0)", 0);
	is_unknown("sqrt(-1)");
	is_unknown("log(0)");
	is_unknown("log(-a)");
	is_unknown("exp(1000)");	/* overflows: not finite */
	is_unknown("clamp(a, 3, 1)");
	is_unknown("clamp(s, 0, 1)");
	is_unknown("sqrt(ghost)");
}

/* What anomaly() asks of the environment: its own kind of window, and the sensitivity. */
static double seen_param;
static int seen_fn, seen_kind;

static int
spy_window(void *arg, int win, int fn, double param, double *out)
{
	const struct expr *e = arg;

	seen_fn = fn;
	seen_param = param;
	seen_kind = expr_refs(e)->windows[win].kind;
	*out = 0.5;
	return 0;
}

static void
test_anomaly_call(void **state)
{
	struct expr_env env = { NULL, NULL, NULL, NULL, spy_window };
	struct expr *e = compile_ok("anomaly(a) > 0.4 and anomaly(a, 2.5) < 0.6 and "
	    "avg_over(a, 1m) > 0");
	const struct expr_refs *r = expr_refs(e);

	(void)state;
	/* One detector for both calls, beside the window. */
	assert_int_equal(r->nwindows, 2);
	assert_int_equal(r->windows[0].kind, EXPR_WIN_ANOMALY);
	assert_int_equal(r->windows[0].len_ms, 0);
	assert_int_equal(r->windows[1].kind, EXPR_WIN_SPAN);
	expr_free(e);
	e = compile_ok("anomaly(a, 2.5)");
	env.arg = e;
	assert_int_equal(expr_true(e, &env), 1);
	assert_int_equal(seen_fn, WFN_ANOMALY);
	assert_int_equal(seen_kind, EXPR_WIN_ANOMALY);
	assert_true(seen_param == 2.5);
	expr_free(e);
	e = compile_ok("anomaly(a)");
	env.arg = e;
	assert_int_equal(expr_true(e, &env), 1);
	assert_true(seen_param == 1.0);
	expr_free(e);
	/* disagree(p, q): a detector of its own for the pair, p first. */
	e = compile_ok("disagree(a, b) > 0.4 and disagree(a, b, 0.5) < 0.6 and anomaly(a) > 0.4 "
	    "and disagree(b, a) > 0.4");
	r = expr_refs(e);
	assert_int_equal(r->nwindows, 3);
	assert_int_equal(r->windows[0].kind, EXPR_WIN_DIFF);
	assert_string_equal(r->props[r->windows[0].prop], "a");
	assert_string_equal(r->props[r->windows[0].prop2], "b");
	assert_int_equal(r->windows[1].kind, EXPR_WIN_ANOMALY);
	assert_int_equal(r->windows[1].prop2, -1);
	assert_int_equal(r->windows[2].kind, EXPR_WIN_DIFF);
	assert_string_equal(r->props[r->windows[2].prop], "b");
	expr_free(e);
	e = compile_ok("disagree(a, b, 0.5)");
	env.arg = e;
	assert_int_equal(expr_true(e, &env), 1);
	assert_int_equal(seen_fn, WFN_DISAGREE);
	assert_int_equal(seen_kind, EXPR_WIN_DIFF);
	assert_true(seen_param == 0.5);
	expr_free(e);
}

/* A let is written out in parentheses, an alias as a bare name; calls keep their names. */
static void
test_expand(void **state)
{
	struct expr_let lets[] = {
		{ "x", "temperature" },
		{ "base", "avg_over(x, 1h)" },
		{ "dev", "abs(a - 2)" },
	};
	char out[EXPR_LEN_MAX + 1], err[200], big[EXPR_LEN_MAX];
	int col;

	(void)state;
	assert_int_equal(expr_expand("anomaly(x) > 0.9 and dev * 2 > base", lets, 3, out,
	    sizeof(out), err, sizeof(err), &col), 0);
	assert_string_equal(out, "anomaly(temperature) > 0.9 and (abs(a - 2)) * 2 > "
	    "(avg_over(x, 1h))");
	/* A dotted name is a property, not the let `x`; a string is left alone. */
	assert_int_equal(expr_expand("x.y + 1 == 2 and s == \"x\"", lets, 3, out, sizeof(out),
	    err, sizeof(err), &col), 0);
	assert_string_equal(out, "x.y + 1 == 2 and s == \"x\"");
	assert_int_equal(expr_expand("1 +", lets, 3, out, sizeof(out), err, sizeof(err), &col), 0);
	assert_int_equal(expr_expand("a # 1", lets, 3, out, sizeof(out), err, sizeof(err), &col), -1);
	assert_int_equal(col, 3);
	/* Written out past EXPR_LEN_MAX: refused at the name that made it too long. */
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[0] = 'b';
	big[1] = ' ';
	big[2] = '+';
	big[3] = ' ';
	{
		struct expr_let l2[] = { { "b", big + 4 } };
		char src[] = "b + b";

		assert_int_equal(expr_expand(src, l2, 1, out, sizeof(out), err, sizeof(err), &col), -1);
		assert_non_null(strstr(err, "longer than"));
		assert_int_equal(col, 5);
	}
	assert_true(expr_let_name_ok("base_1"));
	assert_false(expr_let_name_ok("avg_over"));
	assert_false(expr_let_name_ok("and"));
	assert_false(expr_let_name_ok("a.b"));
	assert_false(expr_let_name_ok("1a"));
	assert_false(expr_let_name_ok(""));
}

/* The series `t`, recomputed here the obvious way. */
struct series {
	double mean, sd, min, max, first, last, slope, fit_last;
	int n;
};

static void
recompute(const struct fprop *p, int64_t lo, int64_t hi, struct series *s)
{
	double sum = 0, ss = 0, tm = 0, sxx = 0, sxy = 0;

	memset(s, 0, sizeof(*s));
	for (int i = 0; i < p->npts; i++) {
		if (p->ts[i] < lo || p->ts[i] > hi)
			continue;
		if (s->n == 0) {
			s->min = s->max = s->first = p->v[i];
		}
		s->min = p->v[i] < s->min ? p->v[i] : s->min;
		s->max = p->v[i] > s->max ? p->v[i] : s->max;
		s->last = p->v[i];
		sum += p->v[i];
		tm += (double)(p->ts[i] - lo) / 1000.0;
		s->n++;
	}
	s->mean = sum / s->n;
	tm /= s->n;
	for (int i = 0; i < p->npts; i++) {
		double t = (double)(p->ts[i] - lo) / 1000.0 - tm;

		if (p->ts[i] < lo || p->ts[i] > hi)
			continue;
		ss += (p->v[i] - s->mean) * (p->v[i] - s->mean);
		sxx += t * t;
		sxy += t * (p->v[i] - s->mean);
	}
	s->sd = sqrt(ss / s->n);
	s->slope = sxy / sxx;
	s->fit_last = s->mean + s->slope * ((double)(p->ts[p->npts - 1] - lo) / 1000.0 - tm);
}

static void
test_window_functions(void **state)
{
	const struct fprop *t = &twin_props[5];
	struct series w1, w10;
	char src[128];
	double cur, when;

	(void)state;
	/* 1m holds all 40 points; 10s (buckets of 625 ms) the last ten, 31..40 s. */
	recompute(t, T0, twin.now, &w1);
	recompute(t, T0 + 31000, twin.now, &w10);
	assert_int_equal(w1.n, 40);
	assert_int_equal(w10.n, 10);
	near("avg_over(t, 1m)", w1.mean);
	near("avg_over(t, 10s)", w10.mean);
	near("min_over(t, 1m)", w1.min);
	near("max_over(t, 10s)", w10.max);
	near("stddev_over(t, 1m)", w1.sd);
	near("count_over(t, 1m)", 40);
	near("count_over(t, 10s)", 10);
	/* 500 ms: only the newest point, so no trend. */
	near("count_over(t, 500ms)", 1);
	near("avg_over(t, 500ms)", t->v[39]);
	is_unknown("rate(t, 500ms)");
	is_unknown("forecast(t, 500ms, 1s)");
	is_unknown("time_to(t, 500ms, 90)");
	near("delta(t, 1m)", w1.last - w1.first);
	near("delta(t, 10s)", w10.last - w10.first);
	near("rate(t, 1m)", w1.slope);
	near("zscore(t, 1m)", (t->val.num - w1.mean) / w1.sd);
	near("zscore(t, 10s)", (t->val.num - w10.mean) / w10.sd);
	/* The fit at now (the last point's time), then 30 s on. */
	assert_int_equal(t->ts[39], twin.now);
	cur = w1.fit_last;
	near("forecast(t, 1m, 30s)", cur + 30 * w1.slope);
	near("forecast(t, 1m, 0s)", cur);
	when = (90 - cur) / w1.slope;
	near("time_to(t, 1m, 90)", when);
	near("time_to(t, 1m, lim)", when);
	near("time_to(t, 1m, lim - 20 + 20)", when);
	is_bool("time_to(t, 1m, 90) < 600", 1);
	assert_true(when > 30 && when < 60);
	is_bool("time_to(t, 1m, 90) < 60", 1);
	is_bool("time_to(t, 1m, 90) < 30", 0);
	/* A limit the rising line left behind: never, a very large number. */
	near("time_to(t, 1m, 0)", EXPR_NEVER);
	is_bool("time_to(t, 1m, 0) < 600", 0);
	is_unknown("time_to(t, 1m, ghost)");
	is_unknown("time_to(t, 1m, s)");
	/* Constant: no spread, a flat line. */
	near("stddev_over(flat, 1m)", 0);
	is_unknown("zscore(flat, 1m)");
	near("rate(flat, 1m)", 0);
	near("forecast(flat, 1m, 1h)", 3);
	near("time_to(flat, 1m, 4)", EXPR_NEVER);
	/* The same pair twice is one window; a zscore of a string is unknown. */
	snprintf(src, sizeof(src), "avg_over(t, 1m) == avg_over(t, 60s)");
	is_bool(src, 1);
	is_unknown("zscore(s, 1m)");
}

/* skip= and ewma() against the series recomputed here. */
static void
test_skip_and_ewma(void **state)
{
	const struct fprop *t = &twin_props[5];
	struct series old;
	double e = t->v[0];
	struct expr *x;

	(void)state;
	/*
	 * 16 s ending 16 s ago: a window of 32 s (buckets of 2 s) asked for its
	 * older half, the buckets that end by then: 10..23 s, nothing newer.
	 */
	recompute(t, T0 + 10000, T0 + 23000, &old);
	assert_int_equal(old.n, 14);
	near("count_over(t, 16s, skip=16s)", 14);
	near("avg_over(t, 16s, skip=16s)", old.mean);
	near("min_over(t, 16s, skip=16s)", old.min);
	near("max_over(t, 16s, skip=16s)", old.max);
	near("stddev_over(t, 16s, skip=16s)", old.sd);
	near("delta(t, 16s, skip=16s)", old.last - old.first);
	near("rate(t, 16s, skip=16s)", old.slope);
	near("zscore(t, 16s, skip=16s)", (t->val.num - old.mean) / old.sd);
	/* It shares the window a plain 32 s asks for. */
	x = compile_ok("avg_over(t, 16s, skip=16s) < avg_over(t, 32s)");
	assert_int_equal(expr_refs(x)->nwindows, 1);
	assert_int_equal(expr_refs(x)->windows[0].len_ms, 32000);
	expr_free(x);
	/* A skip past the window leaves nothing. */
	near("count_over(t, 10s, skip=1h)", 0);
	is_unknown("avg_over(t, 10s, skip=1h)");
	/* `skip` is still a name where no window is. */
	is_unknown("skip == 1");
	/* ewma on measurement time: each reading 1 s after the last weighs 1 - 2^(-1/2). */
	for (int i = 1; i < t->npts; i++)
		e += (1 - exp2(-1.0 / 2.0)) * (t->v[i] - e);
	near("ewma(t, 2s)", e);
	is_unknown("ewma(ghost, 2s)");
	near("ewma(flat, 1h)", 3);
}

/* quantile_over and median_over: their own window, exact for few readings, their errors said. */
static void
test_quantiles(void **state)
{
	const struct fprop *t = &twin_props[5];
	double v[NPTS_MAX];
	int n = 0;
	struct expr *x;

	(void)state;
	/* The readings of the last 8 s, sorted: the median and the 0.9 quantile by hand. */
	for (int i = 0; i < t->npts; i++)
		if (t->ts[i] > twin.now - 8000)
			v[n++] = t->v[i];
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double k = v[j];

			v[j] = v[j - 1];
			v[j - 1] = k;
		}
	assert_true(n >= 3);
	near("count_over(t, 8s)", n);
	near("median_over(t, 8s)", n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
	near("quantile_over(t, 8s, 0)", v[0]);
	near("quantile_over(t, 8s, 1)", v[n - 1]);
	near("quantile_over(t, 8s, 0.9)", v[(int)(0.9 * (n - 1))] +
	    (0.9 * (n - 1) - (int)(0.9 * (n - 1))) * (v[(int)(0.9 * (n - 1)) + 1] -
	    v[(int)(0.9 * (n - 1))]));
	near("median_over(flat, 1h)", 3);
	is_unknown("median_over(ghost, 1m)");
	/* median_over is the 0.5 quantile: one window for both; none shared with avg_over. */
	x = compile_ok("median_over(t, 8s) <= quantile_over(t, 8s, 0.5) and avg_over(t, 8s) > 0");
	assert_int_equal(expr_refs(x)->nwindows, 2);
	assert_int_equal(expr_refs(x)->windows[0].kind, EXPR_WIN_QUANT);
	assert_int_equal(expr_refs(x)->windows[1].kind, EXPR_WIN_SPAN);
	expr_free(x);
	bad("quantile_over(t, 8s, 1.5)", 22, "needs a number in [0, 1] here");
	bad("quantile_over(t, 8s, x)", 22, "needs a number in [0, 1] here");
	bad("quantile_over(t, 8s)", 20, "takes 3 arguments");
	bad("median_over(t, 8s, skip=1s)", 20, "takes 2 arguments");
	bad("median_over(t, 0s)", 16, "a window must be longer than 0");
}

static void
test_refs(void **state)
{
	const struct expr_refs *r;
	struct expr *e;

	(void)state;
	e = compile_ok("a + a > b.c and avg_over(a, 1m) > avg_over(a, 60s) and "
	    "max_over(b.c, 5m) > 0 and time_to(x, 1h, y) < 1 and age() < 1");
	r = expr_refs(e);
	assert_int_equal(r->nprops, 4);
	assert_string_equal(r->props[0], "a");
	assert_string_equal(r->props[1], "b.c");
	assert_string_equal(r->props[2], "x");
	assert_string_equal(r->props[3], "y");
	assert_int_equal(r->nwindows, 3);
	assert_int_equal(r->windows[0].prop, 0);
	assert_int_equal(r->windows[0].len_ms, 60000);
	assert_int_equal(r->windows[1].prop, 1);
	assert_int_equal(r->windows[1].len_ms, 300000);
	assert_int_equal(r->windows[2].prop, 2);
	assert_int_equal(r->windows[2].len_ms, 3600000);
	assert_int_equal(r->uses_age_twin, 1);
	expr_free(e);
	e = compile_ok("age(a) > 1 and prev(q) == 1");
	assert_int_equal(expr_refs(e)->uses_age_twin, 0);
	assert_int_equal(expr_refs(e)->nprops, 2);
	expr_free(e);
	expr_free(NULL);
}

static void
test_errors(void **state)
{
	char buf[EXPR_LEN_MAX + 64];
	size_t n;

	(void)state;
	bad("", 1, "empty expression");
	bad("   ", 1, "empty expression");
	bad("foo(1)", 1, "unknown function 'foo'");
	bad("a > 1 and cbrt(a)", 11, "unknown function 'cbrt'");
	bad("clamp(a, 1)", 11, "clamp() takes 3 arguments");
	bad("anomaly(a + 1)", 9, "property name");
	bad("anomaly(a, 0)", 12, "number in (0, 100]");
	bad("anomaly(a, 101)", 12, "number in (0, 100]");
	bad("anomaly(a, b)", 12, "number in (0, 100]");
	bad("anomaly(a, 1, 2)", 15, "anomaly() takes 1 or 2 arguments");
	bad("avg_over(t, 1h, 5)", 17, "takes skip=DURATION");
	bad("avg_over(t, 1h, skip=5)", 17, "takes skip=DURATION");
	bad("avg_over(t, 1h, skip=0s)", 22, "skip= must be longer than 0");
	bad("forecast(t, 1m, skip=1m)", 17, "duration");
	bad("avg_over(t, 1h, skip=1m, 2)", 26, "avg_over() takes 2 or 3 arguments");
	bad("1 + skip=1", 5, "unexpected 'skip='");
	bad("ewma(t, 0s)", 9, "a half-life must be longer than 0");
	bad("disagree(a, a)", 13, "two different properties");
	bad("disagree(a)", 11, "disagree() takes 2 or 3 arguments");
	bad("disagree(a, b, 0)", 16, "number in (0, 100]");
	bad("disagree(a, 1)", 13, "property name");
	bad("ewma(t)", 7, "ewma() takes 2 arguments");
	bad("abs(1, 2)", 8, "abs() takes 1 argument");
	bad("min(1)", 6, "min() takes 2 arguments");
	bad("avg_over(t)", 11, "avg_over() takes 2 or 3 arguments");
	bad("forecast(t, 1m)", 15, "forecast() takes 3 arguments");
	bad("age(a, b)", 8, "age() takes 0 or 1 arguments");
	bad("avg_over(1, 5m)", 10, "property name");
	bad("avg_over(t + 1, 5m)", 10, "property name");
	bad("prev(\"a\")", 6, "property name");
	bad("avg_over(t, 5)", 13, "duration");
	bad("avg_over(t, x)", 13, "duration");
	bad("forecast(t, 1m, 30)", 17, "duration");
	bad("avg_over(t, 0s)", 13, "longer than 0");
	bad("avg_over(t, 5min)", 13, "bad duration '5min'");
	bad("a > 5m", 5, "only allowed as a window");
	bad("1 +", 4, "unexpected end of expression");
	bad("* 3", 1, "unexpected '*'");
	bad("a > > 1", 5, "unexpected '>'");
	bad("+1", 1, "unexpected '+'");
	bad("\"abc", 1, "unterminated string");
	bad("s == \"ab", 6, "unterminated string");
	bad("\"a\\nb\"", 3, "unknown escape");
	bad("1 2", 3, "unexpected '2' after the expression");
	bad("a > 1 b", 7, "after the expression");
	bad("(1 + 2", 7, "expected ')'");
	bad("min(1 2)", 7, "expected ',' or ')'");
	bad("()", 2, "unexpected ')'");
	bad("a < b < c", 7, "do not chain");
	bad("a == b != c", 8, "do not chain");
	bad("1 + not a", 5, "needs parentheses");
	bad("a == !b", 6, "needs parentheses");
	bad("a = 1", 3, "use '=='");
	bad("a # 1", 3, "unexpected '#'");
	bad("temp. > 1", 1, "ends with '.'");
	bad("1.2.3", 1, "bad number");
	bad("12abc3", 1, "bad number");
	bad("a & b", 3, "unexpected '&'");
	/* Room for the message and column is optional. */
	assert_null(expr_compile("(", NULL, 0, NULL));

	/* Too many distinct names or windows. */
	n = 0;
	for (int i = 0; i < EXPR_REFS_MAX + 1; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%sp%02d", i ? "+" : "", i);
	bad(buf, 32 * 4 + 1, "more than 32 distinct properties");
	n = 0;
	for (int i = 0; i < EXPR_WINDOWS_MAX + 1; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%savg_over(p, %ds)",
		    i ? "+" : "", i + 10);
	/* Reported at the 17th window's duration. */
	bad(buf, (int)(strstr(buf, "26s") - buf) + 1, "more than 16 distinct");
	/* Too long. */
	memset(buf, ' ', EXPR_LEN_MAX + 1);
	buf[0] = '1';
	buf[EXPR_LEN_MAX + 1] = '\0';
	bad(buf, EXPR_LEN_MAX + 1, "longer than");
	/* A name too long. */
	memset(buf, 'x', PROP_NAME_MAX + 1);
	buf[PROP_NAME_MAX + 1] = '\0';
	bad(buf, 1, "name longer than");
}

/* 63 nested parentheses are fine; the 64th goes past EXPR_DEPTH_MAX levels. */
static void
test_depth_limit(void **state)
{
	char buf[512];
	struct expr *e;
	int k;

	(void)state;
	for (k = 0; k < 63; k++)
		buf[k] = '(';
	buf[k] = '1';
	for (int i = 0; i < 63; i++)
		buf[k + 1 + i] = ')';
	buf[k + 64] = '\0';
	e = compile_ok(buf);
	expr_free(e);
	memmove(buf + 1, buf, strlen(buf) + 1);
	strcat(buf, ")");
	bad(buf, 65, "nested deeper than 64");
	/* The same through prefixes, with no parentheses to help. */
	buf[0] = '\0';
	for (int i = 0; i < 100; i++)
		strcat(buf, "not ");
	strcat(buf, "a");
	bad(buf, 4 * 64 + 1, "nested deeper");
	buf[0] = '\0';
	for (int i = 0; i < 100; i++)
		strcat(buf, "-");
	strcat(buf, "1");
	bad(buf, 65, "nested deeper");
	/* Nested calls, hostile length: still a clean error, no stack exhaustion. */
	{
		static char big[EXPR_LEN_MAX + 1];
		size_t n = 0;

		while (n + 4 < EXPR_LEN_MAX)
			n += (size_t)snprintf(big + n, sizeof(big) - n, "abs(");
		assert_null(expr_compile(big, NULL, 0, NULL));
	}
}

/* The evaluator allocates nothing, whatever it evaluates. */
static void
test_eval_does_not_allocate(void **state)
{
	struct expr_env env = fake_env_ops;
	struct mallinfo2 before, after;
	struct tw_val v;
	struct expr *e;
	int hits = 0;

	(void)state;
	env.arg = &twin;
	e = compile_ok("(a > 1 and s == \"a\\\"b\\\\c\" or ghost) and "
	    "time_to(t, 1m, lim) < 600 and zscore(t, 10s) > -5 and age() < 10");
	before = mallinfo2();
	for (int i = 0; i < 100000; i++)
		hits += expr_true(e, &env);
	after = mallinfo2();
	assert_int_equal(hits, 100000);
	assert_true(before.uordblks == after.uordblks);
	assert_int_equal(expr_eval(e, &env, &v), 0);
	assert_int_equal(v.type, VAL_BOOL);
	expr_free(e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_arithmetic_and_precedence, setup),
		cmocka_unit_test_setup(test_comparisons, setup),
		cmocka_unit_test_setup(test_logic, setup),
		cmocka_unit_test_setup(test_three_valued, setup),
		cmocka_unit_test_setup(test_plain_functions, setup),
		cmocka_unit_test_setup(test_math_functions, setup),
		cmocka_unit_test_setup(test_anomaly_call, setup),
		cmocka_unit_test_setup(test_expand, setup),
		cmocka_unit_test_setup(test_window_functions, setup),
		cmocka_unit_test_setup(test_skip_and_ewma, setup),
		cmocka_unit_test_setup(test_quantiles, setup),
		cmocka_unit_test_setup(test_refs, setup),
		cmocka_unit_test_setup(test_errors, setup),
		cmocka_unit_test_setup(test_depth_limit, setup),
		cmocka_unit_test_setup(test_eval_does_not_allocate, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
