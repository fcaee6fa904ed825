/* The rule expression language's evaluator: the bytecode on a fixed stack, and every window function. */
#include <math.h>
#include <string.h>

#include "expr.h"
#include "expr_code.h"
#include "window.h"

static const struct tw_val unknown = { 0, 0, NULL };

static struct tw_val
num_val(double d)
{
	struct tw_val v = { VAL_NUM, d, NULL };

	if (!isfinite(d))
		v.type = 0;
	return v;
}

static struct tw_val
bool_val(int b)
{
	struct tw_val v = { VAL_BOOL, b ? 1 : 0, NULL };

	return v;
}

/* 1 true, 0 false, -1 unknown: the operand of and, or, not. */
static int
truth(const struct tw_val *v)
{
	if (v->type == VAL_BOOL || v->type == VAL_NUM)
		return v->num != 0;
	return -1;
}

static struct tw_val
compare(int op, const struct tw_val *a, const struct tw_val *b)
{
	int c;

	if (a->type != b->type || a->type == 0)
		return unknown;
	switch (a->type) {
	case VAL_NUM:
		c = a->num < b->num ? -1 : a->num > b->num ? 1 : 0;
		break;
	case VAL_STR:
		c = strcmp(a->str, b->str);
		break;
	default:
		if (op != OP_EQ && op != OP_NE)
			return unknown;
		c = a->num != b->num;
		break;
	}
	switch (op) {
	case OP_LT: return bool_val(c < 0);
	case OP_LE: return bool_val(c <= 0);
	case OP_GT: return bool_val(c > 0);
	case OP_GE: return bool_val(c >= 0);
	case OP_EQ: return bool_val(c == 0);
	}
	return bool_val(c != 0);
}

static struct tw_val
arith(int op, const struct tw_val *a, const struct tw_val *b)
{
	if (a->type != VAL_NUM || b->type != VAL_NUM)
		return unknown;
	switch (op) {
	case OP_ADD: return num_val(a->num + b->num);
	case OP_SUB: return num_val(a->num - b->num);
	case OP_MUL: return num_val(a->num * b->num);
	case OP_DIV: return b->num == 0 ? unknown : num_val(a->num / b->num);
	case OP_MOD: return b->num == 0 ? unknown : num_val(fmod(a->num, b->num));
	case OP_MIN: return num_val(a->num < b->num ? a->num : b->num);
	}
	return num_val(a->num > b->num ? a->num : b->num);
}

static struct tw_val
unary(int op, const struct tw_val *a)
{
	if (a->type != VAL_NUM)
		return unknown;
	switch (op) {
	case OP_ABS: return num_val(fabs(a->num));
	case OP_SQRT: return a->num < 0 ? unknown : num_val(sqrt(a->num));
	/* log(0) is -inf: unknown, as every non-finite result. */
	case OP_LOG: return a->num <= 0 ? unknown : num_val(log(a->num));
	}
	return num_val(exp(a->num));
}

static struct tw_val
clamp(const struct tw_val *x, const struct tw_val *lo, const struct tw_val *hi)
{
	if (x->type != VAL_NUM || lo->type != VAL_NUM || hi->type != VAL_NUM ||
	    lo->num > hi->num)
		return unknown;
	return num_val(x->num < lo->num ? lo->num : x->num > hi->num ? hi->num : x->num);
}

/* A value from the environment, checked: unknown unless well-formed. */
static struct tw_val
checked(int rc, const struct tw_val *v)
{
	if (rc != 0)
		return unknown;
	switch (v->type) {
	case VAL_NUM:
		return num_val(v->num);
	case VAL_BOOL:
		return bool_val(v->num != 0);
	case VAL_STR:
		return v->str != NULL ? *v : unknown;
	}
	return unknown;
}

static struct tw_val
eval_window(const struct ins *in, const struct expr_env *env, const struct tw_val *limit)
{
	double param = in->k, d;

	if (in->fn == WFN_TIME_TO) {
		if (limit->type != VAL_NUM)
			return unknown;
		param = limit->num;
	}
	if (env->window == NULL || env->window(env->arg, in->a, in->fn, param, &d) != 0)
		return unknown;
	if (in->fn == WFN_TIME_TO && d < 0)
		d = EXPR_NEVER;
	return num_val(d);
}

int
expr_eval(const struct expr *e, const struct expr_env *env, struct tw_val *out)
{
	/* The compiler proved the code never needs more (see emit). */
	struct tw_val st[EXPR_STACK_MAX], v;
	int sp = 0, t, u;
	double d;

	for (int pc = 0; pc < e->ncode; pc++) {
		const struct ins *in = &e->code[pc];

		switch (in->op) {
		case OP_NUM:
			st[sp++] = num_val(in->k);
			break;
		case OP_STR:
			st[sp].type = VAL_STR;
			st[sp].num = 0;
			st[sp++].str = e->text + in->b;
			break;
		case OP_BOOL:
			st[sp++] = bool_val(in->a);
			break;
		case OP_LOAD:
			v = unknown;
			st[sp++] = env->value == NULL ? unknown :
			    checked(env->value(env->arg, in->a, &v), &v);
			break;
		case OP_PREV:
			v = unknown;
			st[sp++] = env->prev == NULL ? unknown :
			    checked(env->prev(env->arg, in->a, &v), &v);
			break;
		case OP_AGE:
			st[sp++] = env->age == NULL || env->age(env->arg, in->a, &d) != 0 ?
			    unknown : num_val(d);
			break;
		case OP_WIN:
			if (in->fn == WFN_TIME_TO) {
				st[sp - 1] = eval_window(in, env, &st[sp - 1]);
			} else {
				st[sp++] = eval_window(in, env, NULL);
			}
			break;
		case OP_NEG:
			st[sp - 1] = st[sp - 1].type == VAL_NUM ? num_val(-st[sp - 1].num) : unknown;
			break;
		case OP_ABS: case OP_SQRT: case OP_LOG: case OP_EXP:
			st[sp - 1] = unary(in->op, &st[sp - 1]);
			break;
		case OP_CLAMP:
			sp -= 2;
			st[sp - 1] = clamp(&st[sp - 1], &st[sp], &st[sp + 1]);
			break;
		case OP_NOT:
			t = truth(&st[sp - 1]);
			st[sp - 1] = t < 0 ? unknown : bool_val(!t);
			break;
		case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MOD:
		case OP_MIN: case OP_MAX:
			sp--;
			st[sp - 1] = arith(in->op, &st[sp - 1], &st[sp]);
			break;
		case OP_LT: case OP_LE: case OP_GT: case OP_GE: case OP_EQ: case OP_NE:
			sp--;
			st[sp - 1] = compare(in->op, &st[sp - 1], &st[sp]);
			break;
		case OP_AND_TEST:
			/* false and anything is false: skip the right side. */
			if (truth(&st[sp - 1]) == 0) {
				st[sp - 1] = bool_val(0);
				pc = in->b - 1;
			}
			break;
		case OP_OR_TEST:
			if (truth(&st[sp - 1]) == 1) {
				st[sp - 1] = bool_val(1);
				pc = in->b - 1;
			}
			break;
		case OP_AND:
			sp--;
			t = truth(&st[sp - 1]);
			u = truth(&st[sp]);
			st[sp - 1] = t == 0 || u == 0 ? bool_val(0) :
			    t < 0 || u < 0 ? unknown : bool_val(1);
			break;
		case OP_OR:
			sp--;
			t = truth(&st[sp - 1]);
			u = truth(&st[sp]);
			st[sp - 1] = t == 1 || u == 1 ? bool_val(1) :
			    t < 0 || u < 0 ? unknown : bool_val(0);
			break;
		}
	}
	*out = st[0];
	return out->type == 0 ? -1 : 0;
}

int
expr_true(const struct expr *e, const struct expr_env *env)
{
	struct tw_val v;

	if (expr_eval(e, env, &v) != 0)
		return 0;
	return (v.type == VAL_BOOL || v.type == VAL_NUM) && v.num != 0;
}

int
expr_window_value(const struct window *w, int64_t now_ms, int fn, double param,
    const struct tw_val *cur, double *out)
{
	struct window_stats s;
	double v;
	int64_t skip = 0;

	/* For the aggregates `param` is skip=, in seconds (0: none). */
	if (fn != WFN_FORECAST && fn != WFN_TIME_TO && isfinite(param) && param > 0 &&
	    param < 1e15)
		skip = (int64_t)llround(param * 1000.0);
	if (window_stats_skip(w, now_ms, skip, &s) != 0) {
		if (fn != WFN_COUNT)
			return -1;
		*out = 0;
		return 0;
	}
	switch (fn) {
	case WFN_AVG:
		v = s.mean;
		break;
	case WFN_MIN:
		v = s.min;
		break;
	case WFN_MAX:
		v = s.max;
		break;
	case WFN_STDDEV:
		v = s.stddev;
		break;
	case WFN_COUNT:
		v = (double)s.n;
		break;
	case WFN_DELTA:
		v = s.last_v - s.first_v;
		break;
	case WFN_RATE:
		if (!s.has_slope)
			return -1;
		v = s.slope;
		break;
	case WFN_ZSCORE:
		if (cur == NULL || cur->type != VAL_NUM || s.stddev == 0)
			return -1;
		v = (cur->num - s.mean) / s.stddev;
		break;
	case WFN_FORECAST:
		/* The horizon came from a duration: at most ten years. */
		if (!isfinite(param) || fabs(param) > 1e10 ||
		    window_forecast(&s, now_ms + (int64_t)llround(param * 1000.0), &v) != 0)
			return -1;
		break;
	case WFN_TIME_TO:
		if (!s.has_slope || !isfinite(param))
			return -1;
		v = window_time_to(&s, now_ms, param);
		if (v < 0)
			v = EXPR_NEVER;
		break;
	default:
		return -1;
	}
	if (!isfinite(v))
		return -1;
	*out = v;
	return 0;
}
