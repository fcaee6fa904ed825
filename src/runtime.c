/* The rules runtime: rule states, windows and evaluation, with effects returned, not applied. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "runtime.h"
#include "metrics.h"

/* ---- start-up alerts ---- */

static int
open_cmp2(const struct runtime_open *a, const char *twin, const char *rule)
{
	int c = strcmp(a->twin, twin);

	return c != 0 ? c : strcmp(a->rule, rule);
}

static int
open_cmp(const void *x, const void *y)
{
	const struct runtime_open *a = x, *b = y;
	int c = open_cmp2(a, b->twin, b->rule);

	/* Oldest raise first, so that the newest of a (twin, rule) wins when bound. */
	return c != 0 ? c : (a->raised_ts > b->raised_ts) - (a->raised_ts < b->raised_ts);
}

void
runtime_open_sort(struct runtime_opened *o)
{
	if (o->n > 1)
		qsort(o->v, (size_t)o->n, sizeof(*o->v), open_cmp);
}

/* The first entry for (twin, rule), or n: binding stays O(log n) per twin and rule. */
static int
open_first(const struct runtime_opened *o, const char *twin, const char *rule)
{
	int lo = 0, hi = o->n;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (open_cmp2(&o->v[mid], twin, rule) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* ---- names and binding ---- */

static int
bind_names(struct twin_map *m, const struct expr *e, const char **out)
{
	const struct expr_refs *r = expr_refs(e);

	for (int k = 0; k < r->nprops; k++)
		if ((out[k] = twin_intern(m, r->props[k])) == NULL)
			return TW_ERR_NOMEM;
	return TW_OK;
}

int
runtime_init(struct runtime *rt, const struct rule_set *rules, struct twin_map *m)
{
	rt->rules = rules;
	rt->dry = 0;
	if ((rt->binds = calloc((size_t)rules->n + 1, sizeof(*rt->binds))) == NULL)
		return TW_ERR_NOMEM;
	/* Interned once: windows and evaluation then compare pointers, not strings. */
	for (int i = 0; i < rules->n; i++)
		if (bind_names(m, rules->v[i].when, rt->binds[i].when) != TW_OK ||
		    (rules->v[i].clear != NULL &&
		    bind_names(m, rules->v[i].clear, rt->binds[i].clear) != TW_OK)) {
			runtime_cleanup(rt);
			return TW_ERR_NOMEM;
		}
	return TW_OK;
}

void
runtime_cleanup(struct runtime *rt)
{
	free(rt->binds);
	rt->binds = NULL;
}

static struct twin_window *
window_of(struct twin_window *ws, int n, const char *name, const char *name2, int kind,
    int64_t len)
{
	for (int i = 0; i < n; i++)
		if (ws[i].name == name && ws[i].name2 == name2 && ws[i].kind == kind &&
		    ws[i].len_ms == len)
			return &ws[i];
	return NULL;
}

/* The interned second property of windows[k], or NULL. */
static const char *
name2_of(const struct expr_refs *r, int k, const char *const *names)
{
	return r->windows[k].prop2 >= 0 ? names[r->windows[k].prop2] : NULL;
}

/* Adds the windows `e` reads to `w` (n of max), once each. */
static void
want_windows(struct twin_window *w, int *n, int max, const struct expr *e,
    const char *const *names)
{
	const struct expr_refs *r = expr_refs(e);

	for (int k = 0; k < r->nwindows; k++) {
		const char *name = names[r->windows[k].prop], *name2 = name2_of(r, k, names);

		if (window_of(w, *n, name, name2, r->windows[k].kind, r->windows[k].len_ms) != NULL ||
		    *n == max)
			continue;
		w[*n].name = name;
		w[*n].name2 = name2;
		w[*n].kind = (uint8_t)r->windows[k].kind;
		w[*n].len_ms = r->windows[k].len_ms;
		(*n)++;
	}
}

/* Carries the state of the rule named like `r` (and its open alert at start) into `st`. */
static void
carry_state(const struct twin *t, const struct rule *r, const struct runtime_opened *opened,
    struct rule_state *st)
{
	/* State goes with the rule's name: an edited rule keeps its open alert, judged anew. */
	for (uint16_t j = 0; j < t->nrs; j++)
		if (strcmp(t->rs[j].rule->name, r->name) == 0)
			*st = t->rs[j];
	st->rule = r;
	if (opened == NULL)
		return;
	for (int j = open_first(opened, t->id, r->name); j < opened->n &&
	    open_cmp2(&opened->v[j], t->id, r->name) == 0; j++)
		if (opened->v[j].raised_ts >= st->raised_ts) {
			st->alert_id = opened->v[j].id;
			st->raised_ts = opened->v[j].raised_ts;
			st->shelved_until = opened->v[j].shelved_until;
		}
}

int
runtime_bind(const struct runtime *rt, struct twin *t, const struct runtime_opened *opened)
{
	const struct rule_set *rs_set = rt->rules;
	struct rule_state *rs = NULL;
	struct twin_window *ws = NULL;
	int nrs = 0, nws = 0, maxw = 0, wmax;

	/* A reload that ran out of memory left no names bound: no rule runs until the next. */
	if (rt->binds == NULL) {
		runtime_unbind(t);
		return TW_OK;
	}
	for (int i = 0; i < rs_set->n; i++)
		if (rules_match(&rs_set->v[i], t->id, t->model_id)) {
			nrs++;
			maxw += expr_refs(rs_set->v[i].when)->nwindows +
			    (rs_set->v[i].clear ? expr_refs(rs_set->v[i].clear)->nwindows : 0);
		}
	if ((nrs > 0 && (rs = calloc((size_t)nrs, sizeof(*rs))) == NULL) ||
	    (maxw > 0 && (ws = calloc((size_t)maxw, sizeof(*ws))) == NULL)) {
		free(rs);
		return TW_ERR_NOMEM;
	}
	/* A twin counts its windows in 16 bits: beyond, a window is not kept and reads unknown. */
	wmax = maxw < UINT16_MAX ? maxw : UINT16_MAX;
	nrs = 0;
	for (int i = 0; i < rs_set->n; i++) {
		const struct rule *r = &rs_set->v[i];

		if (!rules_match(r, t->id, t->model_id))
			continue;
		carry_state(t, r, opened, &rs[nrs++]);
		want_windows(ws, &nws, wmax, r->when, rt->binds[i].when);
		if (r->clear != NULL)
			want_windows(ws, &nws, wmax, r->clear, rt->binds[i].clear);
	}
	/* New quantile windows first: out of memory, `t` must stay as it was. */
	for (int j = 0; j < nws; j++) {
		if (ws[j].kind != EXPR_WIN_QUANT || window_of(t->windows, t->nwindows,
		    ws[j].name, ws[j].name2, ws[j].kind, ws[j].len_ms) != NULL)
			continue;
		if ((ws[j].q = malloc(sizeof(*ws[j].q))) == NULL) {
			for (int k = nws; k < maxw; k++)
				ws[k].kind = EXPR_WIN_SPAN;	/* unused slots own nothing */
			for (int k = j; k < nws; k++)
				twin_window_forget(&ws[k]);
			twin_windows_free(ws, (uint16_t)nws);
			free(rs);
			return TW_ERR_NOMEM;
		}
		quantile_init(ws[j].q, ws[j].len_ms);
	}
	for (int j = 0; j < nws; j++) {
		struct twin_window *old = window_of(t->windows, t->nwindows, ws[j].name,
		    ws[j].name2, ws[j].kind, ws[j].len_ms);

		if (old != NULL) {
			/* Its data moves here: the old array, freed below, no longer owns it. */
			ws[j] = *old;
			twin_window_forget(old);
		} else if (ws[j].kind == EXPR_WIN_ANOMALY || ws[j].kind == EXPR_WIN_DIFF) {
			anomaly_init(&ws[j].a);
		} else if (ws[j].kind == EXPR_WIN_EWMA) {
			memset(&ws[j].e, 0, sizeof(ws[j].e));
		} else if (ws[j].kind == EXPR_WIN_SPAN) {
			window_init(&ws[j].w, ws[j].len_ms);
		}
	}
	/* Many rules share few windows: keep only what is used. */
	if (nws == 0) {
		free(ws);
		ws = NULL;
	} else if (nws < maxw) {
		struct twin_window *fit = realloc(ws, (size_t)nws * sizeof(*ws));

		if (fit != NULL)
			ws = fit;
	}
	runtime_unbind(t);
	t->rs = rs;
	t->nrs = (uint16_t)nrs;
	t->windows = ws;
	t->nwindows = (uint16_t)nws;
	return TW_OK;
}

void
runtime_unbind(struct twin *t)
{
	free(t->rs);
	twin_windows_free(t->windows, t->nwindows);
	t->rs = NULL;
	t->windows = NULL;
	t->nrs = 0;
	t->nwindows = 0;
}

void
runtime_feed(struct twin *t, const char *name, int64_t ts, const struct tw_val *v, int newest)
{
	if (v->type != VAL_NUM && v->type != VAL_BOOL)
		return;
	for (uint16_t i = 0; i < t->nwindows; i++) {
		struct twin_window *w = &t->windows[i];

		if (w->kind == EXPR_WIN_DIFF && (w->name == name || w->name2 == name)) {
			w->pending |= newest;
			continue;
		}
		if (w->name != name)
			continue;
		/* A detector scores the newest reading: a late one is in history, not news. */
		if (w->kind == EXPR_WIN_ANOMALY) {
			if (newest)
				anomaly_add(&w->a, ts, v->num);
		} else if (w->kind == EXPR_WIN_EWMA) {
			ewma_add(&w->e, w->len_ms, ts, v->num);
		} else if (w->kind == EXPR_WIN_QUANT) {
			quantile_add(w->q, ts, v->num, 1);
		} else {
			window_add(&w->w, ts, v->num);
		}
	}
}

static int
numeric(const struct prop *p)
{
	return p != NULL && (p->val.type == VAL_NUM || p->val.type == VAL_BOOL);
}

void
runtime_feed_pairs(struct twin *t)
{
	for (uint16_t i = 0; i < t->nwindows; i++) {
		struct twin_window *w = &t->windows[i];
		struct prop *p, *q;

		if (w->kind != EXPR_WIN_DIFF || !w->pending)
			continue;
		w->pending = 0;
		p = twin_prop(t, w->name);
		q = w->name2 != NULL ? twin_prop(t, w->name2) : NULL;
		if (numeric(p) && numeric(q))
			anomaly_add(&w->a, p->ts > q->ts ? p->ts : q->ts,
			    p->val.num - q->val.num);
	}
}

void
runtime_shelve(struct twin *t, int64_t id, const char *rule, int64_t until)
{
	for (uint16_t i = 0; i < t->nrs; i++)
		if (t->rs[i].alert_id == id || strcmp(t->rs[i].rule->name, rule) == 0)
			t->rs[i].shelved_until = until;
}

/* ---- evaluation ---- */

struct eval_ctx {
	struct twin *t;
	const char *const *names;	/* interned, by expr_refs index */
	const struct expr_refs *refs;
	int64_t now;			/* the twin's clock */
	const struct status_rule *fresh;	/* not NULL: a stale value reads as unknown */
	int twin_stale;			/* with fresh: the twin as a whole is stale or offline */
};

/* A value a safety condition must not trust: the twin or the property went quiet. */
static int
stale(const struct eval_ctx *c, const struct prop *p)
{
	int64_t period;

	if (c->fresh == NULL)
		return 0;
	if (c->twin_stale)
		return 1;
	period = p->mp != NULL ? p->mp->period_ms : 0;
	return period > 0 && c->now - p->ts > period * c->fresh->stale_factor;
}

static struct prop *
eval_prop(struct eval_ctx *c, int i)
{
	return c->names[i] != NULL ? twin_prop(c->t, c->names[i]) : NULL;
}

static int
env_value(void *arg, int i, struct tw_val *out)
{
	struct prop *p = eval_prop(arg, i);

	if (p == NULL || p->val.type == 0 || stale(arg, p))
		return -1;
	*out = p->val;
	return 0;
}

static int
env_prev(void *arg, int i, struct tw_val *out)
{
	struct prop *p = eval_prop(arg, i);

	if (p == NULL || p->prev_type == 0 || stale(arg, p))
		return -1;
	*out = (struct tw_val){ .type = p->prev_type, .num = p->prev_num };
	return 0;
}

static int
env_age(void *arg, int i, double *out)
{
	struct eval_ctx *c = arg;
	struct prop *p;

	if (i < 0) {
		if (c->t->newest_ts == 0)
			return -1;
		*out = (double)(c->now - c->t->newest_ts) / 1000.0;
		return 0;
	}
	if ((p = eval_prop(c, i)) == NULL || p->ts == 0)
		return -1;
	*out = (double)(c->now - p->ts) / 1000.0;
	return 0;
}

static int
env_window(void *arg, int win, int fn, double param, double *out)
{
	struct eval_ctx *c = arg;
	const char *name = c->names[c->refs->windows[win].prop];
	struct twin_window *tw = name != NULL ? window_of(c->t->windows, c->t->nwindows, name,
	    name2_of(c->refs, win, c->names), c->refs->windows[win].kind,
	    c->refs->windows[win].len_ms) : NULL;
	struct tw_val cur = { 0 };

	if (tw == NULL)
		return -1;
	if (tw->kind == EXPR_WIN_ANOMALY)
		return fn == WFN_ANOMALY ? anomaly_score(&tw->a, param, out) : -1;
	if (tw->kind == EXPR_WIN_DIFF)
		return fn == WFN_DISAGREE ? anomaly_score(&tw->a, param, out) : -1;
	if (tw->kind == EXPR_WIN_EWMA)
		return fn == WFN_EWMA ? ewma_value(&tw->e, out) : -1;
	if (tw->kind == EXPR_WIN_QUANT)
		return fn == WFN_QUANTILE ? quantile_value(tw->q, c->now, param, out) : -1;
	if (fn == WFN_ZSCORE && env_value(arg, c->refs->windows[win].prop, &cur) != 0)
		return -1;
	/* One definition of every window function, shared with the unit tests. */
	return expr_window_value(&tw->w, c->now, fn, param, &cur, out);
}

static int
eval_expr(struct twin *t, const struct expr *e, const char *const *names, int64_t now)
{
	struct eval_ctx c = { t, names, expr_refs(e), now, NULL, 0 };
	struct expr_env env = { &c, env_value, env_prev, env_age, env_window };

	return expr_true(e, &env);
}

int
runtime_condition(struct twin_map *m, struct twin *t, const struct expr *e, const char *prefix,
    int64_t now, const struct status_rule *fresh)
{
	const struct expr_refs *r = expr_refs(e);
	const char *names[EXPR_REFS_MAX];
	char full[2 * PROP_NAME_MAX + 2];
	struct eval_ctx c = { t, names, r, now, fresh, fresh != NULL &&
	    twin_status_of(fresh, t->model, t->newest_ts, now) != TWIN_ONLINE };
	struct expr_env env = { &c, env_value, env_prev, env_age, env_window };
	struct tw_val v;

	/* A name no twin ever reported is not interned: unknown, like any unreported value. */
	for (int k = 0; k < r->nprops; k++) {
		if (prefix != NULL)
			snprintf(full, sizeof(full), "%s.%s", prefix, r->props[k]);
		names[k] = twin_intern_find(m, prefix != NULL ? full : r->props[k]);
	}
	if (expr_eval(e, &env, &v) != 0)
		return -1;
	if (v.type != VAL_BOOL && v.type != VAL_NUM)
		return -1;
	return v.num != 0;
}

/* "temperature {temperature} above 90" with the current values filled in. */
static void
render_message(const struct rule *r, struct twin *t, char *out, size_t len)
{
	const char *p = r->message;
	size_t n = 0;

	while (*p != '\0' && n + 1 < len) {
		const char *close;

		if (*p == '{' && (close = strchr(p, '}')) != NULL && close - p < 130) {
			char name[132];
			const struct prop *pr = NULL;

			snprintf(name, sizeof(name), "%.*s", (int)(close - p - 1), p + 1);
			for (uint32_t i = 0; i < t->nprops && pr == NULL; i++)
				if (strcmp(t->props[i].name, name) == 0)
					pr = &t->props[i];
			if (strcmp(name, "twin") == 0)
				n += (size_t)snprintf(out + n, len - n, "%s", t->id);
			else if (pr == NULL || pr->val.type == 0)
				n += (size_t)snprintf(out + n, len - n, "?");
			else if (pr->val.type == VAL_NUM)
				n += (size_t)snprintf(out + n, len - n, "%g", pr->val.num);
			else if (pr->val.type == VAL_BOOL)
				n += (size_t)snprintf(out + n, len - n, "%s", pr->val.num ? "true" : "false");
			else
				n += (size_t)snprintf(out + n, len - n, "%s", pr->val.str);
			p = close + 1;
			continue;
		}
		out[n++] = *p++;
	}
	out[n < len ? n : len - 1] = '\0';
}

static struct effect *
effect_add(struct effects *e, int type, struct rule_state *st, int64_t now)
{
	struct effect *f;

	if (e->n == e->cap) {
		unsigned cap = e->cap == 0 ? 8 : e->cap * 2;

		if ((f = realloc(e->v, cap * sizeof(*f))) == NULL)
			return NULL;
		e->v = f;
		e->cap = cap;
	}
	f = &e->v[e->n++];
	f->type = type;
	f->st = st;
	f->rule = st->rule;
	f->at = now;
	f->val.type = 0;
	f->message[0] = '\0';
	return f;
}

void
effects_cleanup(struct effects *e)
{
	free(e->v);
	e->v = NULL;
	e->n = e->cap = 0;
}

/* One rule on one twin. */
static int
rule_step(const struct runtime *rt, struct twin *t, struct rule_state *st, int64_t now,
    int64_t wall, struct effects *out)
{
	const struct rule *r = st->rule;
	const struct rule_bind *b = &rt->binds[r - rt->rules->v];
	struct effect *f;
	struct prop *p;

	if (!rt->dry) {
		atomic_fetch_add(&r->stats->evaluations, 1);
		metrics_add(&metrics.rule_evaluations, 1);
	}
	if (st->alert_id != 0) {
		int cond = r->clear != NULL ? eval_expr(t, r->clear, b->clear, now) :
		    !eval_expr(t, r->when, b->when, now);

		if (cond && effect_add(out, EFFECT_CLEAR, st, now) == NULL)
			return TW_ERR_NOMEM;
		return TW_OK;
	}
	if (!eval_expr(t, r->when, b->when, now)) {
		st->true_since = 0;
		return TW_OK;
	}
	if (st->true_since == 0)
		st->true_since = now;
	if (now - st->true_since < r->for_ms ||
	    (st->raised_ts > 0 && r->cooldown_ms > 0 && now - st->raised_ts < r->cooldown_ms) ||
	    wall < st->shelved_until)
		return TW_OK;
	if ((f = effect_add(out, EFFECT_RAISE, st, now)) == NULL)
		return TW_ERR_NOMEM;
	render_message(r, t, f->message, sizeof(f->message));
	/* The value that raised it: the first property the condition reads. */
	if (b->when[0] != NULL && (p = twin_prop(t, b->when[0])) != NULL)
		f->val = p->val;
	return TW_OK;
}

/* Whether the expressions of rule `i` read `name` (interned). */
static int
rule_reads(const struct runtime *rt, int i, const char *name)
{
	const struct rule *r = &rt->rules->v[i];
	const struct expr_refs *w = expr_refs(r->when), *c = r->clear ? expr_refs(r->clear) : NULL;

	for (int k = 0; k < w->nprops; k++)
		if (rt->binds[i].when[k] == name)
			return 1;
	for (int k = 0; c != NULL && k < c->nprops; k++)
		if (rt->binds[i].clear[k] == name)
			return 1;
	return 0;
}

int
runtime_eval(const struct runtime *rt, struct twin *t, const char *const *names,
    int nnames, int64_t now, int64_t wall, struct effects *out)
{
	if (now == 0)
		return TW_OK;
	for (uint16_t i = 0; i < t->nrs; i++) {
		struct rule_state *st = &t->rs[i];
		int idx = (int)(st->rule - rt->rules->v), hit = names == NULL, rc;
		int64_t t0;

		for (int k = 0; !hit && k < nnames; k++)
			hit = rule_reads(rt, idx, names[k]);
		if (!hit)
			continue;
		t0 = clock_mono_ns();
		rc = rule_step(rt, t, st, now, wall, out);
		if (!rt->dry)
			atomic_fetch_add(&st->rule->stats->cost_ns, (uint64_t)(clock_mono_ns() - t0));
		if (rc != TW_OK)
			return rc;
	}
	return TW_OK;
}

/* The slots of the windows `e` reads, and what a quantile window owns beside its slot. */
static size_t
window_cost(const struct expr *e)
{
	const struct expr_refs *r = expr_refs(e);
	size_t b = (size_t)r->nwindows * sizeof(struct twin_window);

	for (int k = 0; k < r->nwindows; k++)
		if (r->windows[k].kind == EXPR_WIN_QUANT)
			b += sizeof(struct quantile);
	return b;
}

size_t
runtime_cost(const struct runtime *rt, const char *twin, const char *model)
{
	size_t b = 0;

	if (rt->binds == NULL)
		return 0;
	/* An upper bound: windows that rules share are counted once per rule here. */
	for (int i = 0; i < rt->rules->n; i++) {
		const struct rule *r = &rt->rules->v[i];

		if (!rules_match(r, twin, model))
			continue;
		b += sizeof(struct rule_state) + window_cost(r->when) +
		    (r->clear != NULL ? window_cost(r->clear) : 0);
	}
	return b;
}
