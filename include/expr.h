/*
 * The rule expression language of INTERFACE.md: compiled once at load
 * time, evaluated per update against a twin through callbacks.
 *
 * Semantics beyond INTERFACE.md:
 * - Property names are [A-Za-z_][A-Za-z0-9_.]*, not ending in '.', at
 *   most PROP_NAME_MAX bytes; `-` is always the minus operator (`a-b` is
 *   a minus b). `true false and or not` are keywords (case-sensitive).
 * - Precedence, low to high: or, and, not, comparisons (they do not
 *   chain: `a < b < c` is an error), + -, * / %, unary minus. `not`
 *   inside a tighter operator needs parentheses (`1 + not x` is an error).
 * - Arithmetic takes numbers only; `%` is fmod (sign of the dividend).
 *   Comparisons: number with number, string with string (strcmp order),
 *   boolean with boolean (== and != only). Anything else, a division by
 *   zero or a non-finite result is unknown.
 * - and/or/not use three-valued logic (SQL NULL): false and unknown is
 *   false, true or unknown is true, otherwise unknown spreads. Their
 *   operands are booleans or numbers (non-zero is true). expr_true maps
 *   unknown to false, so `not (x > 1)` is false, too, when x is unknown.
 * - Windows and the forecast horizon are duration literals (500ms, 30s,
 *   5m, 1h, 2d); a duration anywhere else is an error.
 * - sqrt, log (natural) and exp of a number outside their domain, or
 *   with a non-finite result, are unknown; clamp(x, lo, hi) with lo > hi
 *   is unknown.
 * - anomaly(p[, sensitivity]) and disagree(p, q[, sensitivity]):
 *   sensitivity is a number literal in (0, 100], default 1.
 * - The aggregates over a window (avg_over ... rate, zscore) take an
 *   optional `skip=DURATION` after the window: the window then ends that
 *   long before now. Their `param` is the skip in seconds.
 */
#ifndef TW_EXPR_H
#define TW_EXPR_H

#include <stddef.h>
#include <stdint.h>

#include "value.h"

#define EXPR_REFS_MAX		32	/* distinct properties one expression names */
#define EXPR_WINDOWS_MAX	16	/* distinct (property, window) pairs */
#define EXPR_DEPTH_MAX		64	/* nesting levels (parentheses, operators, calls) */
#define EXPR_LEN_MAX		8192	/* bytes of source */
#define EXPR_NEVER		1e18	/* time_to when the trend never reaches the limit */
#define EXPR_STACK_MAX		160	/* evaluation stack, in values; bounded by the depth limit */

/* Window functions; the evaluator asks the environment for their value. */
enum expr_wfn {
	WFN_AVG = 1, WFN_MIN, WFN_MAX, WFN_STDDEV, WFN_COUNT, WFN_DELTA, WFN_RATE,
	WFN_ZSCORE, WFN_FORECAST, WFN_TIME_TO,
	WFN_ANOMALY,		/* anomaly(p[, sensitivity]): param is the sensitivity */
	WFN_EWMA,		/* ewma(p, half_life) */
	WFN_DISAGREE,		/* disagree(p, q[, sensitivity]): param is the sensitivity */
	WFN_QUANTILE,		/* quantile_over(p, w, q), median_over(p, w): param is q */
};

/* What a windows[] entry asks the twin to keep for a property. */
enum expr_win_kind {
	EXPR_WIN_SPAN = 0,	/* a window of len_ms (window.h) */
	EXPR_WIN_ANOMALY = 1,	/* the anomaly() detector (anomaly.h); len_ms is 0 */
	EXPR_WIN_EWMA = 2,	/* ewma() (window.h); len_ms is the half-life */
	EXPR_WIN_DIFF = 3,	/* disagree(): an anomaly detector fed with p - q; prop2 is q */
	EXPR_WIN_QUANT = 4,	/* quantile_over(), median_over(): a quantile.h window of len_ms */
};

/* What a compiled expression reads: filled by expr_compile, owned by the expr. */
struct expr_refs {
	const char *props[EXPR_REFS_MAX];	/* property names, dotted */
	int nprops;
	struct {
		int prop;		/* index into props */
		int64_t len_ms;		/* the window to keep: with skip=, the skip is in it */
		int kind;		/* enum expr_win_kind */
		int prop2;		/* EXPR_WIN_DIFF: the second property; else -1 */
	} windows[EXPR_WINDOWS_MAX];
	int nwindows;
	int uses_age_twin;		/* age() without a property */
	int uses_age;			/* age() with or without one: its value moves with time alone */
};

/*
 * How the evaluator reads a twin. Each callback returns 0 with the value,
 * or -1 when it is unknown (never reported, empty window): the expression
 * is then false, never an error.
 */
struct expr_env {
	void *arg;
	int (*value)(void *arg, int prop, struct tw_val *out);
	int (*prev)(void *arg, int prop, struct tw_val *out);
	/* seconds since prop was last reported; prop -1: since the twin was */
	int (*age)(void *arg, int prop, double *out);
	/*
	 * A window function over windows[win]: `param` is the horizon in
	 * seconds for WFN_FORECAST, the limit for WFN_TIME_TO, else unused.
	 * WFN_ZSCORE gets the current value from the environment itself.
	 * WFN_ANOMALY asks for windows[win] of kind EXPR_WIN_ANOMALY, with the
	 * sensitivity as `param`; WFN_QUANTILE for one of kind EXPR_WIN_QUANT,
	 * with the quantile as `param`.
	 * For WFN_TIME_TO a negative *out means "never" and becomes
	 * EXPR_NEVER. expr_window_value computes all of them from a window.
	 * A NULL callback reads as unknown.
	 */
	int (*window)(void *arg, int win, int fn, double param, double *out);
};

struct expr;

/*
 * Compiles `src`. On error returns NULL and writes a message and the
 * 1-based column (in bytes) of the problem: `err` and `col` may be NULL.
 * Allocation failure is reported as "out of memory" at column 0.
 * Property names and windows it reads are in expr_refs(e); their strings
 * belong to the expr.
 */
struct expr *expr_compile(const char *src, char *err, size_t errlen, int *col);
void expr_free(struct expr *e);

/* A rule's named sub-expression: `name` stands for `src`, in parentheses. */
struct expr_let {
	const char *name;	/* [A-Za-z_][A-Za-z0-9_]*, neither a keyword nor a function */
	const char *src;	/* already expanded: it may name only the lets before it */
};
/* 1 if `name` can name a let. */
int expr_let_name_ok(const char *name);
/*
 * Writes `src` into `out` (outlen bytes, at most EXPR_LEN_MAX + 1 are
 * used) with every name of a let that is not a call replaced by its
 * source in parentheses. Returns 0, or -1 with a message and column as
 * expr_compile (a lexical error, or a result longer than EXPR_LEN_MAX).
 */
int expr_expand(const char *src, const struct expr_let *lets, int nlets, char *out,
    size_t outlen, char *err, size_t errlen, int *col);
const struct expr_refs *expr_refs(const struct expr *e);

/*
 * Evaluates to a value: 0 with *out set, or -1 when the result is
 * unknown (an unknown input reached it, a division by zero); out->type
 * is then 0. A string result points into the expr or into what the
 * environment returned, and is borrowed until either changes. A rule
 * condition is true only for a boolean true, or a non-zero number.
 * Never allocates; uses a fixed stack of EXPR_STACK_MAX values.
 */
int expr_eval(const struct expr *e, const struct expr_env *env, struct tw_val *out);
/* expr_eval as a condition: 1 true, 0 false or unknown. */
int expr_true(const struct expr *e, const struct expr_env *env);

struct window;
/*
 * The value of window function `fn` (enum expr_wfn) over `w` at `now_ms`,
 * for an environment's window callback. `param` as in expr_env.window;
 * `cur` is the property's current value, read by WFN_ZSCORE (NULL: unknown).
 * Returns 0 with *out, or -1 when unknown:
 * - count_over of an empty window is 0; every other function of an
 *   empty window is unknown;
 * - delta is last minus first by ts (0 with one point);
 * - rate, forecast and time_to need two points at different times;
 * - zscore is unknown when the current value is not a number or the
 *   standard deviation is 0;
 * - time_to gives 0 when the fitted value at now equals the limit,
 *   EXPR_NEVER when the line is flat or moves away from the limit
 *   (which includes having crossed it before now).
 */
int expr_window_value(const struct window *w, int64_t now_ms, int fn, double param,
    const struct tw_val *cur, double *out);

#endif
