/* What-if: the rules runtime on copies of twins, with what it decides described and never done. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "twin_doc.h"

#include "whatif_sim.h"

/* ---- the body's shape: checked on the REST side, trusted by the engine ---- */

static int
offset_of(const cJSON *at, int64_t *ms)
{
	const char *s;

	*ms = 0;
	if (at == NULL)
		return 0;
	if (!cJSON_IsString(at))
		return -1;
	s = at->valuestring[0] == '+' ? at->valuestring + 1 : at->valuestring;
	return clock_parse_duration(s, ms) == TW_OK && *ms >= 0 && *ms <= WHATIF_AT_MAX_MS ?
	    0 : -1;
}

static int
values_count(const cJSON *o, int level, int *n)
{
	const cJSON *it;

	if (!cJSON_IsObject(o) || level > NEST_MAX)
		return -1;
	cJSON_ArrayForEach(it, o) {
		if (cJSON_IsObject(it)) {
			if (values_count(it, level + 1, n) != 0)
				return -1;
		} else if (++*n > WHATIF_VALUES_MAX) {
			return -1;
		}
	}
	return 0;
}

static int
step_check(const cJSON *step, int top, int64_t *prev, int *nvalues, char *err, size_t len)
{
	const cJSON *it;
	int64_t at;

	cJSON_ArrayForEach(it, step) {
		if (strcmp(it->string, "reported") == 0 || strcmp(it->string, "desired") == 0) {
			if (values_count(it, 1, nvalues) != 0) {
				snprintf(err, len, "%s must be an object of at most %d values, nested at "
				    "most %d deep", it->string, WHATIF_VALUES_MAX, NEST_MAX);
				return -1;
			}
		} else if (strcmp(it->string, "at") == 0) {
			if (offset_of(it, &at) != 0) {
				snprintf(err, len, "at must be a duration from now such as \"+10m\", up "
				    "to 366d");
				return -1;
			}
			if (!top && at < *prev) {
				snprintf(err, len, "steps must be in time order");
				return -1;
			}
			if (!top)
				*prev = at;
		} else if (!top && strcmp(it->string, "twin") == 0) {
			if (!cJSON_IsString(it) ||
			    !name_twin_valid(it->valuestring, strlen(it->valuestring))) {
				snprintf(err, len, "a step's twin must be a twin id");
				return -1;
			}
		} else if (!(top && strcmp(it->string, "steps") == 0)) {
			snprintf(err, len, "unknown member '%.64s' (%s)", it->string, top ?
			    "reported, desired, at, steps" : "a step has at, twin, reported, desired");
			return -1;
		}
	}
	return 0;
}

int
whatif_check(const cJSON *body, char *err, size_t len)
{
	const cJSON *steps = cJSON_GetObjectItemCaseSensitive(body, "steps"), *it;
	int64_t prev = 0;
	int nvalues = 0;

	if (!cJSON_IsObject(body)) {
		snprintf(err, len, "the body must be an object: {\"reported\", \"desired\", \"at\", "
		    "\"steps\"}");
		return -1;
	}
	if (step_check(body, 1, &prev, &nvalues, err, len) != 0)
		return -1;
	if (steps != NULL && (!cJSON_IsArray(steps) ||
	    cJSON_GetArraySize(steps) > WHATIF_STEPS_MAX)) {
		snprintf(err, len, "steps must be an array of at most %d steps", WHATIF_STEPS_MAX);
		return -1;
	}
	cJSON_ArrayForEach(it, steps) {
		if (!cJSON_IsObject(it)) {
			snprintf(err, len, "a step must be an object");
			return -1;
		}
		if (step_check(it, 0, &prev, &nvalues, err, len) != 0)
			return -1;
	}
	return 0;
}

/* ---- the copies ---- */

struct children {
	struct sim *s;
	const char *parent;
	int depth;
	int full;
};

static int
add_child(void *arg, struct twin *t)
{
	struct children *c = arg;
	struct sim *s = c->s;

	if (t->parent == NULL || strcmp(t->parent, c->parent) != 0)
		return 0;
	if (s->n == WHATIF_TWINS_MAX) {
		c->full = 1;
		return 1;
	}
	if ((s->v[s->n].t = twin_copy(t)) == NULL)
		return 1;
	s->v[s->n++].depth = c->depth;
	return 0;
}

/* The root and its children to `depth`, breadth first. 0 or a TW_ERR_*, with `r` failed. */
static int
copy_all(struct sim *s, struct twin *root, int depth)
{
	if ((s->v[0].t = twin_copy(root)) == NULL)
		return TW_ERR_NOMEM;
	s->n = 1;
	for (int i = 0; i < s->n; i++) {
		struct children c = { s, s->v[i].t->id, s->v[i].depth + 1, 0 };

		if (s->v[i].depth >= depth)
			continue;
		if (twin_each(s->w->twins, add_child, &c) != 0) {
			if (!c.full)
				return TW_ERR_NOMEM;
			request_fail(s->r, TW_ERR_REFUSED, "too_large", "'%s' has more than %d twins "
			    "within depth %d: ask for a smaller depth", root->id, WHATIF_TWINS_MAX,
			    depth);
			return TW_ERR_REFUSED;
		}
	}
	return TW_OK;
}

static struct copy *
copy_find(struct sim *s, const char *id)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->v[i].t->id, id) == 0)
			return &s->v[i];
	return NULL;
}

static void
copies_free(struct sim *s)
{
	for (int i = 0; i < s->n; i++)
		twin_copy_free(s->v[i].t);
	s->n = 0;
}

/* ---- applying a step ---- */

static struct prop *
copy_prop(struct sim *s, struct twin *t, const char *name)
{
	const char *in = twin_intern_find(s->w->twins, name);
	struct prop *p;

	for (uint32_t i = 0; i < t->nprops; i++)
		if (t->props[i].name == in || strcmp(t->props[i].name, name) == 0)
			return &t->props[i];
	/* Growing the copy, by the cap of its map as live. */
	if (!twin_props_room(s->w->twins, t, 1))
		return NULL;
	if ((p = realloc(t->props, (t->nprops + 1) * sizeof(*p))) == NULL)
		return NULL;
	t->props = p;
	t->cap = t->nprops + 1;
	p = &t->props[t->nprops++];
	memset(p, 0, sizeof(*p));
	/* A name no rule reads needs no interning: the body's key outlives the copy. */
	p->name = in != NULL ? in : name;
	p->mp = t->model != NULL ? model_prop(t->model, name) : NULL;
	return p;
}

struct reading {
	char name[PROP_NAME_MAX + 1];
	struct tw_val v;
	const char *key;	/* the body's own copy of a flat name */
};

static int
reading_of(struct sim *s, const struct twin *t, const cJSON *it, struct reading *out)
{
	const struct model_prop *mp = t->model != NULL ? model_prop(t->model, out->name) : NULL;

	if (cJSON_IsNumber(it) && isfinite(it->valuedouble) && fabs(it->valuedouble) <= 1e300)
		out->v = (struct tw_val){ .type = VAL_NUM, .num = it->valuedouble };
	else if (cJSON_IsBool(it))
		out->v = (struct tw_val){ .type = VAL_BOOL, .num = cJSON_IsTrue(it) };
	else if (cJSON_IsString(it) && strlen(it->valuestring) <= STR_VALUE_MAX)
		out->v = (struct tw_val){ .type = VAL_STR, .str = it->valuestring };
	else {
		request_fail(s->r, TW_ERR_REFUSED, "bad_value", "%s: '%.128s' must be a finite "
		    "number, a boolean or a string", t->id, out->name);
		return TW_ERR_REFUSED;
	}
	if (mp == NULL && t->model != NULL && t->model->strict) {
		request_fail(s->r, TW_ERR_REFUSED, "unknown_property", "%s: '%.128s' is not a "
		    "property of %s", t->id, out->name, t->model_id);
		return TW_ERR_REFUSED;
	}
	if (mp != NULL && !model_value_ok(mp, &out->v)) {
		request_fail(s->r, TW_ERR_REFUSED, "wrong_type", "%s: '%.128s' has the wrong type "
		    "for %s", t->id, out->name, t->model_id);
		return TW_ERR_REFUSED;
	}
	return TW_OK;
}

static int
apply_value(struct sim *s, struct twin *t, const char *name, const struct tw_val *v,
    int64_t at, const char **names, int *nn)
{
	struct prop *p = copy_prop(s, t, name);
	int rc;

	if (p == NULL) {
		request_fail(s->r, TW_ERR_REFUSED, "too_many_properties", "%s: no room for '%.128s'",
		    t->id, name);
		return TW_ERR_REFUSED;
	}
	/* A twin whose clock runs ahead of the scenario's would drop it: say so instead. */
	if (at < p->ts) {
		request_fail(s->r, TW_ERR_REFUSED, "behind", "%s: '%.128s' was last reported at %lld, "
		    "after the scenario's time %lld (its clock runs ahead of %s's): step later",
		    t->id, name, (long long)p->ts, (long long)at, s->v[0].t->id);
		return TW_ERR_REFUSED;
	}
	if ((rc = twin_prop_set(p, at, v)) < 0)
		return TW_ERR_NOMEM;
	p->out_of_range = (uint8_t)model_out_of_range(p->mp, v);
	if (rc == 0)
		return TW_OK;
	if (v->type == VAL_NUM)
		runtime_feed(t, p->name, at, v, 1);
	if (*nn < WHATIF_VALUES_MAX)
		names[(*nn)++] = p->name;
	return TW_OK;
}

/* A step's readings, flattened ("bearing":{"temp":1} is bearing.temp), applied at `at`. */
static int
apply_reported(struct sim *s, struct twin *t, const cJSON *o, const char *prefix, int64_t at,
    const char **names, int *nn)
{
	const cJSON *it;
	int rc;

	cJSON_ArrayForEach(it, o) {
		struct reading rd = { .key = it->string };
		int len = snprintf(rd.name, sizeof(rd.name), "%s%s%s", prefix, *prefix ? "." : "",
		    it->string);

		if (len < 0 || (size_t)len >= sizeof(rd.name) ||
		    !name_prop_valid(rd.name, (size_t)len)) {
			request_fail(s->r, TW_ERR_INVAL, "bad_request", "'%.128s' is not a property "
			    "name", rd.name);
			return TW_ERR_INVAL;
		}
		if (cJSON_IsObject(it)) {
			if ((rc = apply_reported(s, t, it, rd.name, at, names, nn)) != TW_OK)
				return rc;
			continue;
		}
		if ((rc = reading_of(s, t, it, &rd)) != TW_OK)
			return rc;
		/* The flat key outlives the copy; a dotted name needs the interned one or the model's. */
		if (*prefix == '\0')
			rc = apply_value(s, t, it->string, &rd.v, at, names, nn);
		else if (twin_intern_find(s->w->twins, rd.name) != NULL)
			rc = apply_value(s, t, twin_intern_find(s->w->twins, rd.name), &rd.v, at,
			    names, nn);
		else if (t->model != NULL && model_prop(t->model, rd.name) != NULL)
			rc = apply_value(s, t, model_prop(t->model, rd.name)->name, &rd.v, at, names,
			    nn);
		else {
			request_fail(s->r, TW_ERR_REFUSED, "unknown_property", "%s: '%.128s' is not "
			    "known: name a nested property the twin has, or its model's", t->id,
			    rd.name);
			return TW_ERR_REFUSED;
		}
		if (rc != TW_OK)
			return rc;
	}
	return TW_OK;
}

/* Readings arriving at `at`, and the rules that read them. */
static int
report(struct sim *s, struct copy *c, const cJSON *rep, int64_t at)
{
	const char *names[WHATIF_VALUES_MAX];
	int nn = 0, rc;

	if ((rc = apply_reported(s, c->t, rep, "", at, names, &nn)) != TW_OK)
		return rc;
	runtime_feed_pairs(c->t);
	if (c->t->newest_ts == 0)
		c->t->newest_ts = at;	/* heard from, in the scenario */
	return whatif_evaluate(s, c->t, names, nn, at);
}

static int
run_step(struct sim *s, const cJSON *step, struct copy *c, int64_t at)
{
	const cJSON *rep = cJSON_GetObjectItemCaseSensitive(step, "reported");
	const cJSON *des = cJSON_GetObjectItemCaseSensitive(step, "desired");
	struct request why = { 0 };
	int rc;

	if (rep != NULL && (rc = report(s, c, rep, at)) != TW_OK)
		return rc;
	if (des != NULL) {
		rc = whatif_desired_put(s, c->t, des, s->r->who, at, 0, &why);
		if (rc == TW_ERR_REFUSED) {
			request_fail(s->r, why.err == TW_ERR_FULL ? TW_ERR_FULL : TW_ERR_REFUSED,
			    why.code, "%s: %s", c->t->id, why.message);
			s->r->retry_ms = why.retry_ms;
		}
		if (rc != TW_OK)
			return rc;
	}
	return TW_OK;
}

/* ---- the resulting documents ---- */

static cJSON *
copy_doc(struct sim *s, int i)
{
	const struct twin *t = s->v[i].t;
	cJSON *o = cJSON_CreateObject(), *rep, *des, *delta, *alerts, *kids, *a;

	if (o == NULL || cJSON_AddStringToObject(o, "id", t->id) == NULL ||
	    cJSON_AddStringToObject(o, "model", t->model_id != NULL ? t->model_id :
	    MODEL_ANY_ID) == NULL ||
	    (t->parent != NULL ? cJSON_AddStringToObject(o, "parent", t->parent) :
	    cJSON_AddNullToObject(o, "parent")) == NULL ||
	    whatif_add_ts(o, "last_seen_ts", t->last_seen_ts) ||
	    (rep = cJSON_AddObjectToObject(o, "reported")) == NULL ||
	    (des = cJSON_AddObjectToObject(o, "desired")) == NULL ||
	    (delta = cJSON_AddObjectToObject(o, "delta")) == NULL ||
	    (alerts = cJSON_AddArrayToObject(o, "alerts")) == NULL)
		goto fail;
	for (uint32_t k = 0; k < t->nprops; k++) {
		const struct prop *p = &t->props[k];

		if (p->val.type != 0 && !cJSON_AddItemToObject(rep, p->name, twin_doc_reported(p->mp,
		    &p->val, p->ts, p->out_of_range, twin_doc_stale(p->mp, p->ts, s->until,
		    s->w->stale_factor))))
			goto fail;
	}
	for (uint32_t k = 0; k < t->ndesired; k++) {
		const struct desired *d = &t->desired[k];
		const struct prop *p = NULL;

		if (d->removed)
			continue;
		for (uint32_t j = 0; j < t->nprops && p == NULL; j++)
			if (strcmp(t->props[j].name, d->name) == 0)
				p = &t->props[j];
		if ((a = cJSON_AddObjectToObject(des, d->name)) == NULL ||
		    !cJSON_AddItemToObject(a, "value", value_to_json(&d->val)) || whatif_add_ts(a, "ts", d->ts) ||
		    cJSON_AddStringToObject(a, "set_by", d->set_by) == NULL)
			goto fail;
		if ((p == NULL || !twin_value_meets(&p->val, &d->val, d->mp != NULL ?
		    d->mp->tolerance : 0)) &&
		    !cJSON_AddItemToObject(delta, d->name, value_to_json(&d->val)))
			goto fail;
	}
	for (uint16_t k = 0; k < t->nrs; k++) {
		const struct rule_state *st = &t->rs[k];

		if (st->alert_id == 0)
			continue;
		if ((a = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(alerts, a) ||
		    cJSON_AddStringToObject(a, "rule", st->rule->name) == NULL ||
		    cJSON_AddStringToObject(a, "severity", st->rule->severity) == NULL ||
		    (st->alert_id > 0 ? cJSON_AddNumberToObject(a, "id", (double)st->alert_id) :
		    cJSON_AddNullToObject(a, "id")) == NULL || whatif_add_ts(a, "raised_ts", st->raised_ts))
			goto fail;
	}
	if (s->v[i].depth < s->r->depth) {
		if ((kids = cJSON_AddArrayToObject(o, "children")) == NULL)
			goto fail;
		for (int k = i + 1; k < s->n; k++)
			if (s->v[k].t->parent != NULL && strcmp(s->v[k].t->parent, t->id) == 0 &&
			    !cJSON_AddItemToArray(kids, copy_doc(s, k)))
				goto fail;
	}
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

static int
answer(struct sim *s)
{
	cJSON *o = cJSON_CreateObject();

	if (o == NULL || cJSON_AddStringToObject(o, "twin_id", s->v[0].t->id) == NULL ||
	    whatif_add_ts(o, "from_ts", s->base) || whatif_add_ts(o, "until_ts", s->until) ||
	    !cJSON_AddItemToObject(o, "alerts", s->alerts) ||
	    (s->alerts = NULL, !cJSON_AddItemToObject(o, "commands", s->commands)) ||
	    (s->commands = NULL, !cJSON_AddItemToObject(o, "desired", s->desired)) ||
	    (s->desired = NULL, !cJSON_AddItemToObject(o, "twin", copy_doc(s, 0)))) {
		cJSON_Delete(o);
		return TW_ERR_NOMEM;
	}
	s->r->result = o;
	return TW_OK;
}

/* ---- the run ---- */

static int
evals_bound(struct sim *s, const cJSON *steps)
{
	long long per = 0;

	for (int i = 0; i < s->n; i++)
		per += s->v[i].t->nrs;
	/* Each step and the final timer evaluate every copy once (`for` ends are counted as they go). */
	if (per * (cJSON_GetArraySize(steps) + 3) > WHATIF_EVALS_MAX) {
		request_fail(s->r, TW_ERR_REFUSED, "too_large", "this scenario would cost more than "
		    "%d rule evaluations: fewer steps or a smaller depth", WHATIF_EVALS_MAX);
		return TW_ERR_REFUSED;
	}
	return TW_OK;
}

static int
run(struct sim *s, struct twin *root, const cJSON *body)
{
	const cJSON *steps = cJSON_GetObjectItemCaseSensitive(body, "steps"), *it;
	int64_t at = 0, last = 0, now = s->base;
	int rc;

	if ((rc = copy_all(s, root, s->r->depth)) != TW_OK || (rc = evals_bound(s, steps)) != TW_OK)
		return rc;
	offset_of(cJSON_GetObjectItemCaseSensitive(body, "at"), &at);
	s->until = s->base + at;
	if ((rc = run_step(s, body, &s->v[0], now)) != TW_OK)
		return rc;
	cJSON_ArrayForEach(it, steps) {
		const cJSON *who = cJSON_GetObjectItemCaseSensitive(it, "twin");
		struct copy *c = who != NULL ? copy_find(s, who->valuestring) : &s->v[0];
		int64_t off;

		if (c == NULL) {
			request_fail(s->r, TW_ERR_REFUSED, "not_in_scope", "'%s' is not %s or one of its "
			    "children within depth %d", who->valuestring, root->id, s->r->depth);
			return TW_ERR_REFUSED;
		}
		offset_of(cJSON_GetObjectItemCaseSensitive(it, "at"), &off);
		if (off < last)
			off = last;
		if ((rc = whatif_timer_until(s, now, s->base + off)) != TW_OK ||
		    (rc = run_step(s, it, c, s->base + off)) != TW_OK)
			return rc;
		now = s->base + off;
		last = off;
	}
	s->until = s->base + (at > last ? at : last);
	if ((rc = whatif_timer_until(s, now, s->until)) != TW_OK)
		return rc;
	return answer(s);
}

void
whatif_run(const struct whatif_env *w, struct request *r)
{
	struct twin *root = twin_find(w->twins, r->twin, strlen(r->twin));
	struct sim *s;

	if (root == NULL) {
		request_fail(r, TW_ERR_NOTFOUND, "not_found", "no twin '%s'", r->twin);
		return;
	}
	/* About 60 KiB: on the heap, not on the engine's stack. */
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		request_fail(r, TW_ERR_NOMEM, "internal", "out of memory");
		return;
	}
	s->w = w;
	s->r = r;
	s->dry = *w->runtime;
	s->dry.dry = 1;
	s->wall = clock_now_ms();
	s->started = clock_mono_ms();
	s->base = twin_clock(root, clock_mono_ms());
	if (s->base == 0)
		s->base = s->wall;	/* a twin never heard from: its clock starts now */
	s->alerts = cJSON_CreateArray();
	s->commands = cJSON_CreateArray();
	s->desired = cJSON_CreateArray();
	if (s->alerts == NULL || s->commands == NULL || s->desired == NULL ||
	    run(s, root, r->patch) == TW_ERR_NOMEM) {
		if (r->err == TW_OK)
			request_fail(r, TW_ERR_NOMEM, "internal", "out of memory");
		cJSON_Delete(r->result);
		r->result = NULL;
	}
	effects_cleanup(&s->fx);
	copies_free(s);
	cJSON_Delete(s->alerts);
	cJSON_Delete(s->commands);
	cJSON_Delete(s->desired);
	free(s);
}
