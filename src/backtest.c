/* Backtest: one rule replayed over stored history on the rules runtime, changing nothing. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backtest.h"
#include "clock.h"
#include "err.h"
#include "history.h"
#include "runtime.h"
#include "twin.h"
#include "value.h"

/* One property's stored readings, a page at a time. */
struct cursor {
	const char *name;		/* interned in the private map */
	struct store_point *pts;	/* BACKTEST_PAGE; strings owned */
	int n, i;
	size_t bytes;			/* of the page's strings */
	int64_t next_from;		/* where the next page starts */
	int last_page;			/* fewer than a page came: no more after these */
};

struct run {
	const struct backtest_ask *ask;
	struct store *db;
	cJSON *alerts, *counts;
	long points, ticks, nalerts;
	long unchecked;			/* readings and ticks since the clock was last read */
	int truncated;			/* an alert was counted and not listed */
	int64_t ticking;		/* how long after a reading the timer ticks each second; 0 never */
	int64_t started;
	int64_t fake_id;		/* alert ids of the replay: 1, 2, ... */
	char *why;
	size_t len;
	int full;
};

static void
page_clear(struct cursor *c)
{
	for (int k = 0; k < c->n; k++)
		if (c->pts[k].val.type == VAL_STR)
			free((char *)c->pts[k].val.str);
	c->n = c->i = 0;
	c->bytes = 0;
}

static int
page_add(void *arg, const struct store_point *p)
{
	struct cursor *c = arg;
	struct store_point *q = &c->pts[c->n];

	if (c->n >= BACKTEST_PAGE)
		return TW_ERR_FULL;
	*q = *p;
	if (p->val.type == VAL_STR) {
		if ((q->val.str = strdup(p->val.str)) == NULL)
			return TW_ERR_NOMEM;
		c->bytes += strlen(p->val.str) + 1;
	}
	c->n++;
	/* Strings of up to 4 KiB each: the page ends early rather than grow past its bytes. */
	return c->bytes >= BACKTEST_PAGE_BYTES ? TW_ERR_FULL : 0;
}

/* The cursor's current reading, reading the next page when this one is used up; NULL at the end. */
static int
cursor_peek(struct run *r, const char *twin, struct cursor *c, const struct store_point **out)
{
	int rc;

	*out = NULL;
	if (c->i < c->n) {
		*out = &c->pts[c->i];
		return TW_OK;
	}
	if (c->last_page)
		return TW_OK;
	page_clear(c);
	rc = history_read(r->db, twin, c->name, c->next_from, r->ask->to,
	    BACKTEST_PAGE, 0, page_add, c);
	if (rc == TW_ERR_NOTFOUND)
		rc = TW_OK;	/* never reported */
	if (rc == TW_ERR_FULL)
		rc = TW_OK;	/* ended early by its bytes: more may follow */
	else if (rc == TW_OK)
		c->last_page = c->n < BACKTEST_PAGE;
	if (rc != TW_OK)
		return rc;
	if (c->n > 0) {
		/* (series, ts) is the history's key: the next page starts after this one. */
		c->next_from = c->pts[c->n - 1].ts + 1;
		*out = &c->pts[0];
	}
	return TW_OK;
}

/* The value that raised an alert, for the answer: a long string is cut (the answer is bounded). */
static cJSON *
alert_value(const struct tw_val *v)
{
	char cut[BACKTEST_VALUE_MAX + 1];

	if (v->type == 0)
		return cJSON_CreateNull();
	if (v->type == VAL_STR && strlen(v->str) > BACKTEST_VALUE_MAX) {
		size_t n = BACKTEST_VALUE_MAX;

		/* Not inside a UTF-8 sequence: v->str[n] would be a continuation byte. */
		while (n > 0 && ((unsigned char)v->str[n] & 0xC0) == 0x80)
			n--;
		memcpy(cut, v->str, n);
		cut[n] = '\0';
		return cJSON_CreateString(cut);
	}
	return value_to_json(v);
}

/* Collects what the runtime decided, as actions.c would apply it, into the answer. */
static int
collect(struct run *r, struct twin *t, struct effects *fx)
{
	for (unsigned i = 0; i < fx->n; i++) {
		struct effect *f = &fx->v[i];
		cJSON *a, *n;

		if (f->type == EFFECT_CLEAR) {
			/*
			 * Twins are replayed one after the other: the twin's open alert
			 * is the last one listed, if it was listed (not past the bound).
			 */
			a = r->alerts->child != NULL ? r->alerts->child->prev : NULL;
			if (a != NULL && strcmp(cJSON_GetObjectItemCaseSensitive(a, "twin")->valuestring,
			    t->id) == 0 && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(a,
			    "cleared_ts")) && (n = cJSON_CreateNumber((double)f->at)) != NULL &&
			    !cJSON_ReplaceItemInObject(a, "cleared_ts", n))
				cJSON_Delete(n);
			f->st->alert_id = 0;
			f->st->true_since = 0;
			continue;
		}
		f->st->alert_id = ++r->fake_id;
		f->st->raised_ts = f->at;
		if ((n = cJSON_GetObjectItemCaseSensitive(r->counts, t->id)) != NULL)
			cJSON_SetNumberValue(n, n->valuedouble + 1);
		else if (cJSON_AddNumberToObject(r->counts, t->id, 1) == NULL)
			return TW_ERR_NOMEM;
		if (r->nalerts >= BACKTEST_ALERTS_MAX) {
			r->truncated = 1;	/* counted, not listed */
			continue;
		}
		r->nalerts++;
		if ((a = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(r->alerts, a) ||
		    cJSON_AddStringToObject(a, "twin", t->id) == NULL ||
		    cJSON_AddNumberToObject(a, "raised_ts", (double)f->at) == NULL ||
		    cJSON_AddNullToObject(a, "cleared_ts") == NULL ||
		    !cJSON_AddItemToObject(a, "value", alert_value(&f->val)))
			return TW_ERR_NOMEM;
	}
	fx->n = 0;
	return TW_OK;
}

/*
 * When the live timer would next judge a rule whose condition holds but
 * has not raised: its `for`, or the end of its cooldown. 0: none.
 */
static int64_t
next_deadline(const struct twin *t)
{
	int64_t best = 0;

	for (uint16_t i = 0; i < t->nrs; i++) {
		const struct rule_state *st = &t->rs[i];
		int64_t d;

		if (st->true_since == 0 || st->alert_id != 0)
			continue;
		d = st->true_since + st->rule->for_ms;
		if (st->raised_ts > 0 && st->rule->cooldown_ms > 0 &&
		    st->raised_ts + st->rule->cooldown_ms > d)
			d = st->raised_ts + st->rule->cooldown_ms;
		if (best == 0 || d < best)
			best = d;
	}
	return best;
}

static int
over_budget(struct run *r)
{
	if (r->points + r->ticks > r->ask->points_max) {
		snprintf(r->why, r->len, "the backtest would replay more than %ld readings and "
		    "timer ticks; narrow from/to or twins", r->ask->points_max);
		r->full = 1;
		return 1;
	}
	if (r->unchecked < 1024)
		return 0;
	r->unchecked = 0;
	if (clock_mono_ms() - r->started > r->ask->time_max_ms) {
		snprintf(r->why, r->len, "the backtest took more than %lld ms of work; narrow "
		    "from/to or twins", (long long)r->ask->time_max_ms);
		r->full = 1;
		return 1;
	}
	return 0;
}

/*
 * The live timer's judgements between the last reading (at `from`) and
 * `until` (exclusive): at each `for` or cooldown deadline, each at its
 * own time, and, for a rule that moves with time alone (windows, age()),
 * every second as the 1-s timer does, counted as work.
 */
static int
timer_until(struct run *r, const struct runtime *rt, struct twin *t, struct effects *fx,
    int64_t from, int64_t until)
{
	int64_t tick = r->ticking > 0 && from > 0 ? from + 1000 : INT64_MAX;
	int64_t stop = from + r->ticking;	/* nothing moves with time after this */

	for (;;) {
		int64_t d = next_deadline(t), at;

		if (d == 0 || d >= until)
			d = INT64_MAX;
		if (tick > stop)
			tick = INT64_MAX;
		at = d < tick ? d : tick;
		if (at >= until || at == INT64_MAX)
			return TW_OK;
		if (runtime_eval(rt, t, NULL, 0, at, at, fx) != TW_OK || collect(r, t, fx) != TW_OK)
			return TW_ERR_NOMEM;
		if (at == tick) {
			tick += 1000;
			r->ticks++;
			r->unchecked++;
			if (over_budget(r))
				return TW_ERR_FULL;
		}
	}
}

/* One update: every cursor's reading at `ts`, applied together, then judged. */
static int
step(struct run *r, const struct runtime *rt, struct twin_map *m, struct twin *t,
    struct cursor *cs, int nc, int64_t ts, struct effects *fx)
{
	const char *names[2 * EXPR_REFS_MAX];
	const struct store_point *p;
	int n = 0, rc;

	for (int k = 0; k < nc; k++) {
		struct prop *pr;

		if (cs[k].i >= cs[k].n || cs[k].pts[cs[k].i].ts != ts)
			continue;
		p = &cs[k].pts[cs[k].i++];
		if ((pr = twin_prop(t, cs[k].name)) == NULL &&
		    (pr = twin_prop_add(m, t, cs[k].name, 0)) == NULL)
			return TW_ERR_NOMEM;
		if (p->val.type == VAL_NUM || p->val.type == VAL_BOOL)
			runtime_feed(t, cs[k].name, ts, &p->val, 1);
		if (twin_prop_set(pr, ts, &p->val) < 0)
			return TW_ERR_NOMEM;
		names[n++] = cs[k].name;
		r->points++;
		r->unchecked++;
	}
	t->newest_ts = ts;
	runtime_feed_pairs(t);
	if ((rc = runtime_eval(rt, t, names, n, ts, ts, fx)) != TW_OK)
		return rc;
	return collect(r, t, fx);
}

/* The properties the rule reads, as cursors over `twin`'s history, counted in *n. 0 or -1. */
static int
cursors_of(const struct rule *rule, struct twin_map *m, struct cursor *cs, int64_t from, int *n)
{
	const struct expr *xs[2] = { rule->when, rule->clear };

	for (int j = 0; j < 2; j++) {
		const struct expr_refs *refs = xs[j] != NULL ? expr_refs(xs[j]) : NULL;

		for (int k = 0; refs != NULL && k < refs->nprops; k++) {
			const char *name = twin_intern(m, refs->props[k]);
			int dup = 0;

			if (name == NULL)
				return -1;
			for (int q = 0; q < *n; q++)
				dup |= cs[q].name == name;
			if (dup)
				continue;
			cs[*n] = (struct cursor){ .name = name, .next_from = from };
			if ((cs[*n].pts = calloc(BACKTEST_PAGE, sizeof(*cs[*n].pts))) == NULL)
				return -1;
			(*n)++;
		}
	}
	return 0;
}

/* Replays the rule over one twin, rebuilt alone in a map of its own. */
static int
replay_twin(struct run *r, const char *id, const char *model_id)
{
	struct rule_set view = { .v = (struct rule *)r->ask->rule, .n = 1 };
	struct cursor cs[2 * EXPR_REFS_MAX] = { { 0 } };
	struct runtime rt = { 0 };
	struct effects fx = { 0 };
	struct twin_map *m = twin_map_new(1, 2 * EXPR_REFS_MAX);
	struct twin *t = NULL;
	int nc = 0, rc = TW_ERR_NOMEM;
	int64_t last = 0;

	if (m == NULL || (t = twin_add(m, id, 0)) == NULL ||
	    (model_id != NULL && (t->model_id = strdup(model_id)) == NULL))
		goto out;
	t->model = model_id != NULL ? model_find(r->ask->models, model_id) : NULL;
	if (cursors_of(r->ask->rule, m, cs, r->ask->from, &nc) != 0)
		goto out;
	if (runtime_init(&rt, &view, m) != TW_OK)
		goto out;
	rt.dry = 1;	/* counts nothing: the live rule's statistics stay the live ones */
	if (runtime_bind(&rt, t, NULL) != TW_OK)
		goto out;
	for (;;) {
		const struct store_point *p;
		int64_t ts = INT64_MAX;

		for (int k = 0; k < nc; k++) {
			if ((rc = cursor_peek(r, id, &cs[k], &p)) != TW_OK)
				goto out;
			if (p != NULL && p->ts < ts)
				ts = p->ts;
		}
		if (ts == INT64_MAX)
			break;
		if ((rc = timer_until(r, &rt, t, &fx, last, ts)) != TW_OK ||
		    (rc = step(r, &rt, m, t, cs, nc, ts, &fx)) != TW_OK)
			goto out;
		if (over_budget(r)) {
			rc = TW_ERR_FULL;
			goto out;
		}
		last = ts;
		if (last == r->ask->to)
			break;
	}
	/* To the end of the range, as the timer would have gone on (to is below 1e15). */
	rc = timer_until(r, &rt, t, &fx, last, r->ask->to + 1);
out:
	for (int k = 0; k < nc; k++) {
		if (cs[k].pts != NULL)
			page_clear(&cs[k]);
		free(cs[k].pts);
	}
	effects_cleanup(&fx);
	if (t != NULL)
		runtime_unbind(t);
	runtime_cleanup(&rt);
	twin_map_free(m);
	return rc;
}

/*
 * How long after a reading the rule's outcome can still change with time
 * alone: its longest sliding window (they empty), or BACKTEST_AGE_MS when
 * it reads age(). 0: only readings change it (anomaly() and ewma() move
 * with readings, not with time). A quantile window empties as the others.
 */
static int64_t
moves_with_time(const struct rule *rule)
{
	const struct expr *xs[2] = { rule->when, rule->clear };
	int64_t span = 0;

	for (int j = 0; j < 2; j++) {
		const struct expr_refs *r = xs[j] != NULL ? expr_refs(xs[j]) : NULL;

		for (int k = 0; r != NULL && k < r->nwindows; k++)
			if ((r->windows[k].kind == EXPR_WIN_SPAN ||
			    r->windows[k].kind == EXPR_WIN_QUANT) && r->windows[k].len_ms > span)
				span = r->windows[k].len_ms;
		if (r != NULL && r->uses_age && span < BACKTEST_AGE_MS)
			span = BACKTEST_AGE_MS;
	}
	return span;
}

/* The twins to replay: in the store, matching the glob and the rule. */
struct pick {
	const struct backtest_ask *ask;
	cJSON *list;		/* [[id, model or null], ...] */
	int n;
};

static int
pick_twin(void *arg, const struct store_twin_row *row)
{
	struct pick *p = arg;
	cJSON *e;

	if ((p->ask->twins != NULL && fnmatch(p->ask->twins, row->id, 0) != 0) ||
	    !rules_match(p->ask->rule, row->id, row->model))
		return 0;
	if (++p->n > BACKTEST_TWINS_MAX)
		return TW_ERR_FULL;
	if ((e = cJSON_CreateArray()) == NULL || !cJSON_AddItemToArray(p->list, e) ||
	    !cJSON_AddItemToArray(e, cJSON_CreateString(row->id)) ||
	    !cJSON_AddItemToArray(e, row->model != NULL ? cJSON_CreateString(row->model) :
	    cJSON_CreateNull()))
		return TW_ERR_NOMEM;
	return 0;
}

static cJSON *
answer(const struct backtest_ask *ask, struct run *r, int ntwins)
{
	cJSON *o = cJSON_CreateObject();

	if (o == NULL || cJSON_AddStringToObject(o, "rule", ask->rule->name) == NULL ||
	    cJSON_AddNumberToObject(o, "from", (double)ask->from) == NULL ||
	    cJSON_AddNumberToObject(o, "to", (double)ask->to) == NULL ||
	    cJSON_AddNumberToObject(o, "twins", ntwins) == NULL ||
	    cJSON_AddNumberToObject(o, "points", (double)r->points) == NULL ||
	    cJSON_AddNumberToObject(o, "ticks", (double)r->ticks) == NULL ||
	    !cJSON_AddItemToObject(o, "alerts", r->alerts) ||
	    (r->alerts = NULL, !cJSON_AddItemToObject(o, "counts", r->counts)) ||
	    (r->counts = NULL, cJSON_AddBoolToObject(o, "truncated", r->truncated) == NULL)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

int
backtest_run(const struct backtest_ask *ask, struct store *db, cJSON **out, char *why,
    size_t len)
{
	struct run r = { .ask = ask, .db = db, .alerts = cJSON_CreateArray(),
	    .counts = cJSON_CreateObject(), .started = clock_mono_ms(), .why = why, .len = len };
	struct pick p = { ask, cJSON_CreateArray(), 0 };
	const cJSON *e;
	int rc = TW_ERR_NOMEM;

	*out = NULL;
	if (r.alerts == NULL || r.counts == NULL || p.list == NULL)
		goto out;
	r.ticking = moves_with_time(ask->rule);
	rc = store_read_twins(db, NULL, pick_twin, &p);
	if (rc == TW_ERR_FULL)
		snprintf(why, len, "more than %d twins match; narrow twins", BACKTEST_TWINS_MAX);
	if (rc != TW_OK)
		goto out;
	cJSON_ArrayForEach(e, p.list) {
		const cJSON *model = cJSON_GetArrayItem(e, 1);

		if ((rc = replay_twin(&r, cJSON_GetArrayItem(e, 0)->valuestring,
		    cJSON_IsString(model) ? model->valuestring : NULL)) != TW_OK)
			goto out;
	}
	rc = (*out = answer(ask, &r, p.n)) != NULL ? TW_OK : TW_ERR_NOMEM;
out:
	cJSON_Delete(r.alerts);
	cJSON_Delete(r.counts);
	cJSON_Delete(p.list);
	return rc;
}
