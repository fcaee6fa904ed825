/* The rule expression language: a tokenizer and a Pratt parser that emit stack bytecode; lets written out. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "expr.h"
#include "expr_code.h"
#include "window.h"

enum tok_type {
	T_END, T_NUM, T_DUR, T_STR, T_NAME, T_TRUE, T_FALSE, T_AND, T_OR, T_NOT,
	T_LP, T_RP, T_COMMA, T_ADD, T_SUB, T_MUL, T_DIV, T_MOD,
	T_LT, T_LE, T_GT, T_GE, T_EQ, T_NE,
	T_SKIP,			/* skip= in a window function's arguments */
};

struct tok {
	int type;
	int col;		/* 1-based */
	const char *s;		/* its text in the source */
	size_t len;
	double num;		/* T_NUM */
	int64_t ms;		/* T_DUR */
};

/* Binding powers, low to high. */
enum { BP_NONE = 0, BP_OR, BP_AND, BP_NOT, BP_CMP, BP_ADD, BP_MUL, BP_NEG };

struct parser {
	struct expr *e;
	const char *src;
	struct tok *toks;
	int ntoks, pos;
	int code_cap;
	size_t text_len, text_cap;
	int depth, sp;
	char *err;
	size_t errlen;
	int *col;
};

enum fn_arg { A_EXPR = 'e', A_PROP = 'p', A_DUR = 'd', A_NUM = 'n', A_SKIP = 's', A_QUANT = 'q' };

#define SENSITIVITY_MAX	100.0

static const struct fn {
	const char *name;
	int op;
	int wfn;
	int min_args, max_args;
	const char *args;
} fns[] = {
	{ "abs", OP_ABS, 0, 1, 1, "e" },
	{ "min", OP_MIN, 0, 2, 2, "ee" },
	{ "max", OP_MAX, 0, 2, 2, "ee" },
	{ "sqrt", OP_SQRT, 0, 1, 1, "e" },
	{ "log", OP_LOG, 0, 1, 1, "e" },
	{ "exp", OP_EXP, 0, 1, 1, "e" },
	{ "clamp", OP_CLAMP, 0, 3, 3, "eee" },
	{ "avg_over", OP_WIN, WFN_AVG, 2, 3, "pds" },
	{ "min_over", OP_WIN, WFN_MIN, 2, 3, "pds" },
	{ "max_over", OP_WIN, WFN_MAX, 2, 3, "pds" },
	{ "stddev_over", OP_WIN, WFN_STDDEV, 2, 3, "pds" },
	{ "count_over", OP_WIN, WFN_COUNT, 2, 3, "pds" },
	{ "delta", OP_WIN, WFN_DELTA, 2, 3, "pds" },
	{ "rate", OP_WIN, WFN_RATE, 2, 3, "pds" },
	{ "zscore", OP_WIN, WFN_ZSCORE, 2, 3, "pds" },
	{ "forecast", OP_WIN, WFN_FORECAST, 3, 3, "pdd" },
	{ "time_to", OP_WIN, WFN_TIME_TO, 3, 3, "pde" },
	{ "anomaly", OP_WIN, WFN_ANOMALY, 1, 2, "pn" },
	{ "ewma", OP_WIN, WFN_EWMA, 2, 2, "pd" },
	{ "disagree", OP_WIN, WFN_DISAGREE, 2, 3, "ppn" },
	{ "quantile_over", OP_WIN, WFN_QUANTILE, 3, 3, "pdq" },
	{ "median_over", OP_WIN, WFN_QUANTILE, 2, 2, "pd" },
	{ "prev", OP_PREV, 0, 1, 1, "p" },
	{ "age", OP_AGE, 0, 0, 1, "p" },
};

static int perr(struct parser *p, int col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error; always returns -1. */
static int
perr(struct parser *p, int col, const char *fmt, ...)
{
	va_list ap;

	if (p->err != NULL && p->errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(p->err, p->errlen, fmt, ap);
		va_end(ap);
	}
	if (p->col != NULL)
		*p->col = col;
	return -1;
}

/* ---- tokenizer ---- */

static int
is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
tok_push(struct parser *p, int *cap, int type, const char *s, size_t len)
{
	struct tok *t;

	if (p->ntoks == *cap) {
		int ncap = *cap ? *cap * 2 : 32;
		struct tok *n = realloc(p->toks, (size_t)ncap * sizeof(*n));

		if (n == NULL)
			return perr(p, 0, "out of memory");
		p->toks = n;
		*cap = ncap;
	}
	t = &p->toks[p->ntoks++];
	memset(t, 0, sizeof(*t));
	t->type = type;
	t->s = s;
	t->len = len;
	t->col = (int)(s - p->src) + 1;
	return 0;
}

/* A number, or a duration when letters follow it directly: 90, 1.5, 1e3, 30s, 500ms. */
static int
lex_number(struct parser *p, int *cap, const char *s, const char **endp)
{
	const char *q = s;
	char buf[64];
	size_t n;
	int col = (int)(s - p->src) + 1;

	while (is_digit(*q))
		q++;
	if (*q == '.' && is_digit(q[1]))
		for (q++; is_digit(*q); q++)
			;
	if ((*q == 'e' || *q == 'E') && (is_digit(q[1]) ||
	    ((q[1] == '+' || q[1] == '-') && is_digit(q[2]))))
		for (q += 2; is_digit(*q); q++)
			;
	if (is_alpha(*q) && *q != '_') {
		const char *u = q;

		while ((*u >= 'a' && *u <= 'z') || (*u >= 'A' && *u <= 'Z'))
			u++;
		n = (size_t)(u - s);
		if (is_alpha(*u) || is_digit(*u) || *u == '.' || n >= sizeof(buf))
			return perr(p, col, "bad number '%.*s'", (int)(u - s + 1), s);
		memcpy(buf, s, n);
		buf[n] = '\0';
		if (tok_push(p, cap, T_DUR, s, n) < 0)
			return -1;
		if (clock_parse_duration(buf, &p->toks[p->ntoks - 1].ms) != TW_OK)
			return perr(p, col, "bad duration '%s' (use ms, s, m, h or d)", buf);
		*endp = u;
		return 0;
	}
	n = (size_t)(q - s);
	if (is_alpha(*q) || is_digit(*q) || *q == '.' || n >= sizeof(buf))
		return perr(p, col, "bad number '%.*s'", (int)(n + 1), s);
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (tok_push(p, cap, T_NUM, s, n) < 0)
		return -1;
	p->toks[p->ntoks - 1].num = strtod(buf, NULL);
	if (!isfinite(p->toks[p->ntoks - 1].num))
		return perr(p, col, "number out of range '%s'", buf);
	*endp = q;
	return 0;
}

static int
lex_name(struct parser *p, int *cap, const char *s, const char **endp)
{
	static const struct { const char *w; int type; } words[] = {
		{ "true", T_TRUE }, { "false", T_FALSE }, { "and", T_AND },
		{ "or", T_OR }, { "not", T_NOT },
	};
	const char *q = s;
	size_t n;
	int col = (int)(s - p->src) + 1;

	while (is_alpha(*q) || is_digit(*q) || *q == '.')
		q++;
	n = (size_t)(q - s);
	if (s[n - 1] == '.')
		return perr(p, col, "name '%.*s' ends with '.'", (int)n, s);
	if (n > PROP_NAME_MAX)
		return perr(p, col, "name longer than %d bytes", PROP_NAME_MAX);
	*endp = q;
	/* `skip=` is the one named argument; `skip == 1` is still a comparison. */
	if (n == 4 && memcmp(s, "skip", 4) == 0 && q[0] == '=' && q[1] != '=') {
		*endp = q + 1;
		return tok_push(p, cap, T_SKIP, s, 5);
	}
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strlen(words[i].w) == n && memcmp(words[i].w, s, n) == 0)
			return tok_push(p, cap, words[i].type, s, n);
	return tok_push(p, cap, T_NAME, s, n);
}

/* A string literal; its value is decoded later, into the expr's text. */
static int
lex_string(struct parser *p, int *cap, const char *s, const char **endp)
{
	const char *q = s + 1;

	for (; *q != '"'; q++) {
		if (*q == '\0')
			return perr(p, (int)(s - p->src) + 1, "unterminated string");
		if (*q == '\\') {
			if (q[1] != '"' && q[1] != '\\')
				return perr(p, (int)(q - p->src) + 1,
				    "unknown escape in string (only \\\" and \\\\)");
			q++;
		}
	}
	*endp = q + 1;
	return tok_push(p, cap, T_STR, s, (size_t)(q + 1 - s));
}

static int
lex(struct parser *p)
{
	static const struct { const char *s; int type; } ops[] = {
		{ "<=", T_LE }, { ">=", T_GE }, { "==", T_EQ }, { "!=", T_NE },
		{ "&&", T_AND }, { "||", T_OR },
		{ "<", T_LT }, { ">", T_GT }, { "!", T_NOT }, { "(", T_LP },
		{ ")", T_RP }, { ",", T_COMMA }, { "+", T_ADD }, { "-", T_SUB },
		{ "*", T_MUL }, { "/", T_DIV }, { "%", T_MOD },
	};
	const char *s = p->src;
	int cap = 0;

	for (;;) {
		size_t i;

		while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
			s++;
		if (*s == '\0')
			return tok_push(p, &cap, T_END, s, 0);
		if (is_digit(*s)) {
			if (lex_number(p, &cap, s, &s) < 0)
				return -1;
			continue;
		}
		if (is_alpha(*s)) {
			if (lex_name(p, &cap, s, &s) < 0)
				return -1;
			continue;
		}
		if (*s == '"') {
			if (lex_string(p, &cap, s, &s) < 0)
				return -1;
			continue;
		}
		for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
			if (strncmp(s, ops[i].s, strlen(ops[i].s)) == 0)
				break;
		if (i == sizeof(ops) / sizeof(ops[0])) {
			if (*s == '=')
				return perr(p, (int)(s - p->src) + 1, "unexpected '=' (use '==')");
			if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
				return perr(p, (int)(s - p->src) + 1, "unexpected byte 0x%02x",
				    (unsigned char)*s);
			return perr(p, (int)(s - p->src) + 1, "unexpected '%c'", *s);
		}
		if (tok_push(p, &cap, ops[i].type, s, strlen(ops[i].s)) < 0)
			return -1;
		s += strlen(ops[i].s);
	}
}

/* ---- code generation ---- */

/* How each instruction changes the stack depth. */
static int
op_effect(int op, int fn)
{
	switch (op) {
	case OP_NUM: case OP_STR: case OP_BOOL: case OP_LOAD: case OP_PREV: case OP_AGE:
		return 1;
	case OP_WIN:
		return fn == WFN_TIME_TO ? 0 : 1;	/* time_to pops its limit */
	case OP_NEG: case OP_NOT: case OP_ABS: case OP_SQRT: case OP_LOG: case OP_EXP:
	case OP_AND_TEST: case OP_OR_TEST:
		return 0;
	case OP_CLAMP:
		return -2;
	}
	return -1;	/* binary operators */
}

/* Returns the index of the new instruction, or -1. */
static int
emit(struct parser *p, int op, int fn, int a, int32_t b, double k, int col)
{
	struct ins *in;

	if (p->e->ncode == p->code_cap)
		return perr(p, col, "expression too long");
	p->sp += op_effect(op, fn);
	if (p->sp > EXPR_STACK_MAX)
		return perr(p, col, "expression too complex");
	in = &p->e->code[p->e->ncode];
	in->op = (uint8_t)op;
	in->fn = (uint8_t)fn;
	in->a = (int16_t)a;
	in->b = b;
	in->k = k;
	return p->e->ncode++;
}

/* Copies `n` bytes into the expr's text; returns the offset. */
static size_t
text_add(struct parser *p, const char *s, size_t n)
{
	size_t off = p->text_len;

	/* The buffer holds the whole source plus a NUL per token: never full. */
	memcpy(p->e->text + off, s, n);
	p->e->text[off + n] = '\0';
	p->text_len += n + 1;
	return off;
}

static int
prop_index(struct parser *p, const struct tok *t)
{
	struct expr_refs *r = &p->e->refs;

	for (int i = 0; i < r->nprops; i++)
		if (strlen(r->props[i]) == t->len && memcmp(r->props[i], t->s, t->len) == 0)
			return i;
	if (r->nprops == EXPR_REFS_MAX)
		return perr(p, t->col, "more than %d distinct properties", EXPR_REFS_MAX);
	r->props[r->nprops] = p->e->text + text_add(p, t->s, t->len);
	return r->nprops++;
}

static int
window_index(struct parser *p, int prop, int prop2, int64_t len_ms, int kind, int col)
{
	struct expr_refs *r = &p->e->refs;

	for (int i = 0; i < r->nwindows; i++)
		if (r->windows[i].prop == prop && r->windows[i].len_ms == len_ms &&
		    r->windows[i].kind == kind && r->windows[i].prop2 == prop2)
			return i;
	if (r->nwindows == EXPR_WINDOWS_MAX)
		return perr(p, col, "more than %d distinct (property, window) pairs",
		    EXPR_WINDOWS_MAX);
	r->windows[r->nwindows].prop = prop;
	r->windows[r->nwindows].len_ms = len_ms;
	r->windows[r->nwindows].kind = kind;
	r->windows[r->nwindows].prop2 = prop2;
	return r->nwindows++;
}

/* ---- parser ---- */

static const struct tok *
peek(const struct parser *p)
{
	return &p->toks[p->pos];
}

static const struct tok *
peek2(const struct parser *p)
{
	return p->pos + 1 < p->ntoks ? &p->toks[p->pos + 1] : &p->toks[p->ntoks - 1];
}

/* Takes the current token; T_END stays put. */
static const struct tok *
next(struct parser *p)
{
	const struct tok *t = &p->toks[p->pos];

	if (t->type != T_END)
		p->pos++;
	return t;
}

static int
unexpected(struct parser *p, const struct tok *t)
{
	if (t->type == T_END)
		return perr(p, t->col, "unexpected end of expression");
	if (t->type == T_STR)
		return perr(p, t->col, "unexpected string");
	return perr(p, t->col, "unexpected '%.*s'", t->len > 32 ? 32 : (int)t->len, t->s);
}

static int parse_expr(struct parser *p, int minbp);

static int
arg_ends(const struct parser *p)
{
	int type = peek2(p)->type;

	return type == T_COMMA || type == T_RP;
}

static int
parse_call(struct parser *p, const struct tok *name)
{
	const struct fn *f = NULL;
	const struct tok *t;
	int nargs = 0, prop = -1, prop2 = -1, win = -1;
	int64_t len_ms = 0, skip_ms = 0;
	double horizon = 0;
	int len_col = 0;

	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
		if (strlen(fns[i].name) == name->len && memcmp(fns[i].name, name->s, name->len) == 0)
			f = &fns[i];
	if (f == NULL)
		return perr(p, name->col, "unknown function '%.*s'", (int)name->len, name->s);
	next(p);	/* ( */
	if (peek(p)->type == T_RP) {
		t = next(p);
	} else {
		for (;;) {
			t = peek(p);
			if (nargs == f->max_args)
				goto count;
			switch (f->args[nargs]) {
			case A_PROP:
				if (t->type != T_NAME || !arg_ends(p))
					return perr(p, t->col, "%s() needs a property name here", f->name);
				if (nargs == 0 && (prop = prop_index(p, next(p))) < 0)
					return -1;
				if (nargs == 1 && (prop2 = prop_index(p, next(p))) < 0)
					return -1;
				if (prop2 >= 0 && prop2 == prop)
					return perr(p, t->col, "%s() compares two different properties",
					    f->name);
				break;
			case A_DUR:
				if (t->type != T_DUR || !arg_ends(p))
					return perr(p, t->col, "%s() needs a duration such as 5m here",
					    f->name);
				next(p);
				if (nargs == 1) {
					if (t->ms <= 0)
						return perr(p, t->col, "%s must be longer than 0",
						    f->wfn == WFN_EWMA ? "a half-life" : "a window");
					len_ms = t->ms;
					len_col = t->col;
				} else {
					horizon = (double)t->ms / 1000.0;
				}
				break;
			case A_SKIP:
				if (t->type != T_SKIP || peek2(p)->type != T_DUR)
					return perr(p, t->col, "%s() takes skip=DURATION here", f->name);
				next(p);
				t = next(p);
				/* Kept beside the window: a window of len + skip holds both. */
				if (t->ms <= 0 || t->ms > INT64_MAX / 4 - len_ms)
					return perr(p, t->col, "skip= must be longer than 0");
				skip_ms = t->ms;
				break;
			case A_NUM:
				if (t->type != T_NUM || !arg_ends(p) || !(t->num > 0) ||
				    t->num > SENSITIVITY_MAX)
					return perr(p, t->col, "%s() needs a number in (0, %g] here",
					    f->name, SENSITIVITY_MAX);
				horizon = next(p)->num;
				break;
			case A_QUANT:
				if (t->type != T_NUM || !arg_ends(p) || !(t->num >= 0 && t->num <= 1))
					return perr(p, t->col, "%s() needs a number in [0, 1] here, "
					    "such as 0.95", f->name);
				horizon = next(p)->num;
				break;
			default:
				if (parse_expr(p, BP_NONE) < 0)
					return -1;
				break;
			}
			nargs++;
			t = next(p);
			if (t->type == T_RP)
				break;
			if (t->type != T_COMMA)
				return perr(p, t->col, "expected ',' or ')'");
		}
	}
	if (nargs < f->min_args)
		goto count;
	switch (f->op) {
	case OP_WIN:
		if (f->wfn == WFN_ANOMALY) {
			win = window_index(p, prop, -1, 0, EXPR_WIN_ANOMALY, name->col);
			horizon = nargs == 2 ? horizon : 1.0;
		} else if (f->wfn == WFN_DISAGREE) {
			win = window_index(p, prop, prop2, 0, EXPR_WIN_DIFF, name->col);
			horizon = nargs == 3 ? horizon : 1.0;
		} else if (f->wfn == WFN_EWMA) {
			win = window_index(p, prop, -1, len_ms, EXPR_WIN_EWMA, len_col);
		} else if (f->wfn == WFN_QUANTILE) {
			win = window_index(p, prop, -1, len_ms, EXPR_WIN_QUANT, len_col);
			horizon = nargs == 3 ? horizon : 0.5;	/* median_over */
		} else {
			win = window_index(p, prop, -1, len_ms + skip_ms, EXPR_WIN_SPAN, len_col);
			if (skip_ms > 0)
				horizon = (double)skip_ms / 1000.0;
		}
		if (win < 0)
			return -1;
		return emit(p, OP_WIN, f->wfn, win, 0, horizon, name->col);
	case OP_PREV:
		return emit(p, OP_PREV, 0, prop, 0, 0, name->col);
	case OP_AGE:
		if (nargs == 0)
			p->e->refs.uses_age_twin = 1;
		p->e->refs.uses_age = 1;
		return emit(p, OP_AGE, 0, nargs == 0 ? -1 : prop, 0, 0, name->col);
	}
	return emit(p, f->op, 0, 0, 0, 0, name->col);
count:
	if (f->min_args == f->max_args)
		return perr(p, t->col, "%s() takes %d argument%s", f->name, f->min_args,
		    f->min_args == 1 ? "" : "s");
	return perr(p, t->col, "%s() takes %d %s %d arguments", f->name, f->min_args,
	    f->max_args == f->min_args + 1 ? "or" : "to", f->max_args);
}

/* An operand: a literal, a name, a call, a parenthesised or prefixed expression. */
static int
parse_prefix(struct parser *p, int minbp)
{
	const struct tok *t = next(p);
	int at;

	switch (t->type) {
	case T_NUM:
		return emit(p, OP_NUM, 0, 0, 0, t->num, t->col);
	case T_TRUE:
	case T_FALSE:
		return emit(p, OP_BOOL, 0, t->type == T_TRUE, 0, 0, t->col);
	case T_STR: {
		size_t off = p->text_len, n = 0;

		/* The lexer checked the escapes; copy without them. */
		for (size_t i = 1; i + 1 < t->len; i++) {
			if (t->s[i] == '\\')
				i++;
			p->e->text[off + n++] = t->s[i];
		}
		p->e->text[off + n] = '\0';
		p->text_len += n + 1;
		return emit(p, OP_STR, 0, 0, (int32_t)off, 0, t->col);
	}
	case T_NAME: {
		int prop;

		if (peek(p)->type == T_LP)
			return parse_call(p, t);
		if ((prop = prop_index(p, t)) < 0)
			return -1;
		return emit(p, OP_LOAD, 0, prop, 0, 0, t->col);
	}
	case T_LP:
		if (parse_expr(p, BP_NONE) < 0)
			return -1;
		if (peek(p)->type != T_RP)
			return perr(p, peek(p)->col, "expected ')'");
		next(p);
		return 0;
	case T_SUB:
		at = p->e->ncode;
		if (parse_expr(p, BP_NEG) < 0)
			return -1;
		/* A literal folds: -3 is one constant. */
		if (p->e->ncode == at + 1 && p->e->code[at].op == OP_NUM) {
			p->e->code[at].k = -p->e->code[at].k;
			return 0;
		}
		return emit(p, OP_NEG, 0, 0, 0, 0, t->col);
	case T_NOT:
		/* As in Python: `1 + not x` or `a == not b` reads as a mistake. */
		if (minbp > BP_NOT)
			return perr(p, t->col, "'%.*s' needs parentheses here", (int)t->len, t->s);
		if (parse_expr(p, BP_NOT) < 0)
			return -1;
		return emit(p, OP_NOT, 0, 0, 0, 0, t->col);
	case T_DUR:
		return perr(p, t->col, "a duration is only allowed as a window or horizon");
	}
	return unexpected(p, t);
}

static int
binop(int type, int *op)
{
	static const struct { int type, op, bp; } tab[] = {
		{ T_OR, OP_OR, BP_OR }, { T_AND, OP_AND, BP_AND },
		{ T_LT, OP_LT, BP_CMP }, { T_LE, OP_LE, BP_CMP }, { T_GT, OP_GT, BP_CMP },
		{ T_GE, OP_GE, BP_CMP }, { T_EQ, OP_EQ, BP_CMP }, { T_NE, OP_NE, BP_CMP },
		{ T_ADD, OP_ADD, BP_ADD }, { T_SUB, OP_SUB, BP_ADD },
		{ T_MUL, OP_MUL, BP_MUL }, { T_DIV, OP_DIV, BP_MUL }, { T_MOD, OP_MOD, BP_MUL },
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		if (tab[i].type == type) {
			*op = tab[i].op;
			return tab[i].bp;
		}
	}
	return BP_NONE;
}

/*
 * Precedence climbing: operators binding tighter than `minbp` are taken
 * here, left-associative. Each call is one nesting level; the depth
 * limit bounds both this recursion and the evaluation stack.
 */
static int
parse_expr(struct parser *p, int minbp)
{
	int compared = 0, rc = -1;

	if (++p->depth > EXPR_DEPTH_MAX) {
		perr(p, peek(p)->col, "expression nested deeper than %d levels", EXPR_DEPTH_MAX);
		goto out;
	}
	if (parse_prefix(p, minbp) < 0)
		goto out;
	for (;;) {
		const struct tok *t = peek(p);
		int op, bp = binop(t->type, &op), jump = -1;

		if (bp == BP_NONE || bp <= minbp)
			break;
		if (bp == BP_CMP && compared++) {
			perr(p, t->col, "comparisons do not chain; use 'and'");
			goto out;
		}
		next(p);
		if (op == OP_AND || op == OP_OR) {
			jump = emit(p, op == OP_AND ? OP_AND_TEST : OP_OR_TEST, 0, 0, 0, 0, t->col);
			if (jump < 0)
				goto out;
		}
		if (parse_expr(p, bp) < 0 || emit(p, op, 0, 0, 0, 0, t->col) < 0)
			goto out;
		if (jump >= 0)
			p->e->code[jump].b = p->e->ncode;
	}
	rc = 0;
out:
	p->depth--;
	return rc;
}

struct expr *
expr_compile(const char *src, char *err, size_t errlen, int *col)
{
	struct parser p = { .src = src, .err = err, .errlen = errlen, .col = col };
	size_t len = strlen(src);
	struct ins *shrunk;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (col != NULL)
		*col = 0;
	if (len > EXPR_LEN_MAX) {
		perr(&p, EXPR_LEN_MAX + 1, "expression longer than %d bytes", EXPR_LEN_MAX);
		return NULL;
	}
	if ((p.e = calloc(1, sizeof(*p.e))) == NULL) {
		perr(&p, 0, "out of memory");
		return NULL;
	}
	if (lex(&p) < 0)
		goto fail;
	if (p.toks[0].type == T_END) {
		perr(&p, 1, "empty expression");
		goto fail;
	}
	/* Every token emits at most two instructions and copies at most its bytes. */
	p.code_cap = 2 * p.ntoks;
	p.text_cap = len + (size_t)p.ntoks + 1;
	p.e->code = calloc((size_t)p.code_cap, sizeof(*p.e->code));
	p.e->text = malloc(p.text_cap);
	if (p.e->code == NULL || p.e->text == NULL) {
		perr(&p, 0, "out of memory");
		goto fail;
	}
	if (parse_expr(&p, BP_NONE) < 0)
		goto fail;
	if (peek(&p)->type != T_END) {
		perr(&p, peek(&p)->col, "unexpected '%.*s' after the expression",
		    peek(&p)->len > 32 ? 32 : (int)peek(&p)->len, peek(&p)->s);
		goto fail;
	}
	/* Give back what the bound over-counted; the old block is fine if this fails. */
	if ((shrunk = realloc(p.e->code, (size_t)p.e->ncode * sizeof(*shrunk))) != NULL)
		p.e->code = shrunk;
	free(p.toks);
	return p.e;
fail:
	free(p.toks);
	expr_free(p.e);
	return NULL;
}

int
expr_let_name_ok(const char *name)
{
	static const char *const words[] = { "true", "false", "and", "or", "not" };
	size_t n = strlen(name);

	if (n == 0 || n > 64 || !is_alpha(name[0]))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!is_alpha(name[i]) && !is_digit(name[i]))
			return 0;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(name, words[i]) == 0)
			return 0;
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
		if (strcmp(name, fns[i].name) == 0)
			return 0;
	return 1;
}

/* 1 if `s` is one property name, blanks aside. */
static int
name_only(const char *s)
{
	const char *e;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	if (!is_alpha(*s))
		return 0;
	for (e = s; is_alpha(*e) || is_digit(*e) || *e == '.'; e++)
		;
	while (*e == ' ' || *e == '\t' || *e == '\n' || *e == '\r')
		e++;
	return *e == '\0';
}

/* Appends `n` bytes of `s` to out; -1 when that would pass EXPR_LEN_MAX or outlen. */
static int
out_add(char *out, size_t outlen, size_t *used, const char *s, size_t n)
{
	if (*used + n > EXPR_LEN_MAX || *used + n + 1 > outlen)
		return -1;
	memcpy(out + *used, s, n);
	*used += n;
	out[*used] = '\0';
	return 0;
}

int
expr_expand(const char *src, const struct expr_let *lets, int nlets, char *out,
    size_t outlen, char *err, size_t errlen, int *col)
{
	struct parser p = { .src = src, .err = err, .errlen = errlen, .col = col };
	const char *from = src;
	size_t used = 0, paren;
	int rc = -1;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (col != NULL)
		*col = 0;
	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if (strlen(src) > EXPR_LEN_MAX)
		return perr(&p, EXPR_LEN_MAX + 1, "expression longer than %d bytes", EXPR_LEN_MAX);
	if (lex(&p) < 0)
		goto done;
	for (int i = 0; i < p.ntoks; i++) {
		const struct tok *t = &p.toks[i];
		const struct expr_let *l = NULL;

		if (t->type == T_NAME && p.toks[i + (i + 1 < p.ntoks)].type != T_LP)
			for (int k = 0; k < nlets && l == NULL; k++)
				if (strlen(lets[k].name) == t->len &&
				    memcmp(lets[k].name, t->s, t->len) == 0)
					l = &lets[k];
		if (l == NULL)
			continue;
		/* A let that is a property name is an alias: anomaly(x) must still see a name. */
		paren = !name_only(l->src);
		if (out_add(out, outlen, &used, from, (size_t)(t->s - from)) < 0 ||
		    out_add(out, outlen, &used, "(", paren) < 0 ||
		    out_add(out, outlen, &used, l->src, strlen(l->src)) < 0 ||
		    out_add(out, outlen, &used, ")", paren) < 0) {
			perr(&p, t->col, "with '%s' written out, longer than %d bytes", l->name,
			    EXPR_LEN_MAX);
			goto done;
		}
		from = t->s + t->len;
	}
	if (out_add(out, outlen, &used, from, strlen(from)) < 0) {
		perr(&p, (int)(from - src) + 1, "with its lets written out, longer than %d bytes",
		    EXPR_LEN_MAX);
		goto done;
	}
	rc = 0;
done:
	free(p.toks);
	return rc;
}

void
expr_free(struct expr *e)
{
	if (e == NULL)
		return;
	free(e->code);
	free(e->text);
	free(e);
}

const struct expr_refs *
expr_refs(const struct expr *e)
{
	return &e->refs;
}
