/* What-if: the rules runtime on copies of twins, with what it decides described and never done. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "desired.h"
#include "envelope.h"
#include "err.h"
#include "ingest.h"
#include "model.h"
#include "names.h"
#include "twin_doc.h"
#include "whatif.h"

#define NEST_MAX	8	/* levels of {"bearing":{"temp":..}} in a step's readings */
#define FOR_ROUNDS_MAX	1000	/* `for` deadlines met between two steps */
#define HOLD_WEIGHT_MAX	100000	/* readings one chunk stands for */
#define INTERVAL_MIN_MS	10	/* a held value is taken as reported at most 100 times a second */

struct copy {
	struct twin *t;
	int depth;
};

struct sim {
	const struct whatif_env *w;
	struct runtime dry;
	struct copy v[WHATIF_TWINS_MAX];
	int n;
	int64_t base, wall;	/* the root's twin clock and the wall clock at the start */
	int64_t until;
	struct effects fx;
	int64_t raised;		/* alerts raised in the scenario: ids -1, -2, ... */
	long evals;		/* rule evaluations and windows held, so far */
	int64_t started;	/* monotonic ms */
	cJSON *alerts, *commands, *desired;
	struct request *r;
};

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

/* ---- describing what would happen ---- */

static int
add_ts(cJSON *o, const char *name, int64_t ts)
{
	return cJSON_AddNumberToObject(o, name, (double)ts) == NULL;
}

static cJSON *
entry(cJSON *arr, const struct twin *t, int64_t at)
{
	cJSON *o = cJSON_CreateObject();

	if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
		cJSON_Delete(o);
		return NULL;
	}
	if (cJSON_AddStringToObject(o, "twin", t->id) == NULL || add_ts(o, "ts", at))
		return NULL;
	return o;
}

/* A desired patch against the envelope, as live: a rule's (automatic) or the scenario's own. */
static int
envelope_refuses(struct sim *s, struct twin *t, const cJSON *patch, int64_t at, int automatic,
    struct request *why)
{
	struct envelope_ask a = { t->model, NULL, s->w->twins, t, at, s->wall + (at - s->base),
	    automatic, s->w->store, s->w->fresh };
	struct envelope_verdict v;

	envelope_desired(&a, patch, &v);
	if (v.refusal == ENVELOPE_OK)
		return 0;
	/* Answered as live would (desired_request), and named for the scenario's list. */
	request_fail(why, v.refusal == ENVELOPE_RATE ? TW_ERR_FULL : TW_ERR_REFUSED,
	    v.refusal == ENVELOPE_RATE ? "rate_limited" : v.refusal == ENVELOPE_MANUAL ?
	    "manual_mode" : "interlock", "%s", v.why);
	why->retry_ms = v.retry_ms;
	return 1;
}

/* The envelope's name of a refusal answered by envelope_refuses, for a scenario's entry. */
static const char *
refusal_of(const struct request *why)
{
	if (strcmp(why->code, "rate_limited") == 0)
		return "rate";
	if (strcmp(why->code, "manual_mode") == 0)
		return "manual";
	return strcmp(why->code, "interlock") == 0 ? "interlock" : NULL;
}

/* A desired patch on a copy, checked as it would be live. Returns 0, TW_ERR_REFUSED or TW_ERR_NOMEM. */
static int
desired_put(struct sim *s, struct twin *t, const cJSON *patch, const char *by, int64_t at,
    int automatic, struct request *why)
{
	const cJSON *it;

	if (desired_check(s->w->twins, t, patch, why) != TW_OK ||
	    envelope_refuses(s, t, patch, at, automatic, why))
		return TW_ERR_REFUSED;
	cJSON_ArrayForEach(it, patch) {
		const struct model_prop *mp = model_prop(t->model, it->string);
		const char *name = twin_intern_find(s->w->twins, it->string);
		struct tw_val v = { 0 };
		struct desired *d = NULL;
		cJSON *o;

		/* desired_check proved the model names it writable. */
		if (name == NULL)
			name = mp->name;
		for (uint32_t i = 0; i < t->ndesired && d == NULL; i++)
			if (strcmp(t->desired[i].name, it->string) == 0)
				d = &t->desired[i];
		if (cJSON_IsNull(it)) {
			if (d != NULL)
				d->removed = 1;
		} else {
			if (cJSON_IsNumber(it))
				v = (struct tw_val){ .type = VAL_NUM, .num = it->valuedouble };
			else if (cJSON_IsBool(it))
				v = (struct tw_val){ .type = VAL_BOOL, .num = cJSON_IsTrue(it) };
			else
				v = (struct tw_val){ .type = VAL_STR, .str = it->valuestring };
			/* As live: the same value again changes nothing; a new one is set at wall time. */
			if (d != NULL && !d->removed && value_equal(&d->val, &v))
				goto described;
			if ((d = twin_desired_set(t, d != NULL ? d->name : name, &v,
			    s->wall + (at - s->base))) == NULL)
				return TW_ERR_NOMEM;
			snprintf(d->set_by, sizeof(d->set_by), "%s", by);
			d->converged_ts = 0;
		}
described:
		if ((o = entry(s->desired, t, at)) == NULL ||
		    cJSON_AddStringToObject(o, "property", it->string) == NULL ||
		    !cJSON_AddItemToObject(o, "value", cJSON_Duplicate(it, 1)) ||
		    cJSON_AddStringToObject(o, "by", by) == NULL ||
		    cJSON_AddStringToObject(o, "status", "would_set") == NULL)
			return TW_ERR_NOMEM;
	}
	return TW_OK;
}

static int
refused(cJSON *o, const char *reason)
{
	return cJSON_AddStringToObject(o, "status", "refused") == NULL ||
	    cJSON_AddStringToObject(o, "reason", reason) == NULL;
}

/*
 * When the scenario itself last sent `command` to `t` (wall ms; 0: not):
 * the rate counts the what-if's own commands as well as the stored ones.
 */
static int64_t
scenario_last(const struct sim *s, const struct twin *t, const char *command)
{
	const cJSON *o, *st, *tw, *cmd, *ts;
	int64_t last = 0;

	cJSON_ArrayForEach(o, s->commands) {
		st = cJSON_GetObjectItemCaseSensitive(o, "status");
		tw = cJSON_GetObjectItemCaseSensitive(o, "twin");
		cmd = cJSON_GetObjectItemCaseSensitive(o, "command");
		ts = cJSON_GetObjectItemCaseSensitive(o, "ts");
		if (cJSON_IsString(st) && strcmp(st->valuestring, "would_send") == 0 &&
		    cJSON_IsString(tw) && strcmp(tw->valuestring, t->id) == 0 &&
		    cJSON_IsString(cmd) && strcmp(cmd->valuestring, command) == 0 &&
		    cJSON_IsNumber(ts))
			last = s->wall + ((int64_t)ts->valuedouble - s->base);
	}
	return last;
}

/*
 * The safety envelope's verdict on a rule's command in the scenario, as
 * the live engine would give it (clamping `params` in place), with the
 * scenario's own earlier commands counted by the rate.
 */
static int
judge(struct sim *s, struct twin *t, const char *command, cJSON *params, int64_t at,
    struct envelope_verdict *v)
{
	const struct model_command *mc = model_command(t->model, command);
	int64_t wall = s->wall + (at - s->base), last;
	struct envelope_ask a = { t->model, command, s->w->twins, t, at, wall, 1, s->w->store,
	    s->w->fresh };

	int rc = envelope_check(&a, params, v);

	if (rc != TW_OK)
		return rc;
	if (v->refusal != ENVELOPE_OK || mc == NULL || mc->envelope == NULL ||
	    mc->envelope->min_interval_ms == 0)
		return TW_OK;
	last = scenario_last(s, t, command);
	if (last != 0 && wall - last < mc->envelope->min_interval_ms) {
		v->refusal = ENVELOPE_RATE;
		snprintf(v->why, sizeof(v->why), "rate: %s would go to %s %.1f s after the "
		    "scenario's last one; the model allows one every %.1f s", command, t->id,
		    (double)(wall - last) / 1000.0,
		    (double)mc->envelope->min_interval_ms / 1000.0);
	}
	return TW_OK;
}

/* A raised rule's actions, as actions.c would do them, described. */
static int
rule_actions(struct sim *s, struct twin *t, const struct rule *r, int64_t at)
{
	char by[136], reason[256];

	snprintf(by, sizeof(by), "rule:%s", r->name);
	for (int i = 0; i < r->nactions; i++) {
		const struct rule_action *ra = &r->actions[i];
		struct request why = { 0 };
		cJSON *o, *patch;
		int rc;

		if (ra->type == ACTION_COMMAND) {
			struct envelope_verdict v;
			cJSON *params = cJSON_Parse(ra->json);

			if (params == NULL)
				return TW_ERR_NOMEM;
			/* Judged before it joins the list, so that it does not count against itself. */
			if (commands_named(t->model, ra->command, s->w->policy) &&
			    (rc = judge(s, t, ra->command, params, at, &v)) != TW_OK) {
				cJSON_Delete(params);
				return rc;
			}
			if ((o = entry(s->commands, t, at)) == NULL ||
			    !cJSON_AddItemToObject(o, "params", params)) {
				cJSON_Delete(params);
				return TW_ERR_NOMEM;
			}
			if (cJSON_AddStringToObject(o, "command", ra->command) == NULL ||
			    cJSON_AddStringToObject(o, "rule", r->name) == NULL)
				return TW_ERR_NOMEM;
			if (!commands_named(t->model, ra->command, s->w->policy)) {
				snprintf(reason, sizeof(reason), "model %s takes no command %s",
				    t->model_id != NULL ? t->model_id : "(none)", ra->command);
				if (refused(o, reason))
					return TW_ERR_NOMEM;
			} else if (v.refusal != ENVELOPE_OK) {
				if (refused(o, v.why) || cJSON_AddStringToObject(o, "refusal",
				    envelope_refusal_name(v.refusal)) == NULL)
					return TW_ERR_NOMEM;
			} else if (cJSON_AddStringToObject(o, "status", "would_send") == NULL ||
			    (v.clamped && cJSON_AddTrueToObject(o, "clamped") == NULL)) {
				return TW_ERR_NOMEM;
			}
			continue;
		}
		if ((patch = cJSON_Parse(ra->json)) == NULL)
			return TW_ERR_NOMEM;
		rc = desired_put(s, t, patch, by, at, 1, &why);
		if (rc == TW_ERR_REFUSED) {
			/* Described like the others, with the refusal. */
			if ((o = entry(s->desired, t, at)) == NULL ||
			    !cJSON_AddItemToObject(o, "patch", patch)) {
				cJSON_Delete(patch);
				return TW_ERR_NOMEM;
			}
			if (cJSON_AddStringToObject(o, "by", by) == NULL || refused(o, why.message) ||
			    (refusal_of(&why) != NULL && cJSON_AddStringToObject(o, "refusal",
			    refusal_of(&why)) == NULL))
				return TW_ERR_NOMEM;
			continue;
		}
		cJSON_Delete(patch);
		if (rc != TW_OK)
			return rc;
	}
	return TW_OK;
}

/* What the runtime decided on `t`, made true on the copy and described. */
static int
settle(struct sim *s, struct twin *t)
{
	for (unsigned i = 0; i < s->fx.n; i++) {
		struct effect *f = &s->fx.v[i];
		cJSON *o = entry(s->alerts, t, f->at);

		if (o == NULL || cJSON_AddStringToObject(o, "rule", f->rule->name) == NULL ||
		    cJSON_AddStringToObject(o, "severity", f->rule->severity) == NULL)
			return TW_ERR_NOMEM;
		if (f->type == EFFECT_CLEAR) {
			if (cJSON_AddStringToObject(o, "action", "clear") == NULL ||
			    (f->st->alert_id > 0 ? cJSON_AddNumberToObject(o, "alert_id",
			    (double)f->st->alert_id) : cJSON_AddNullToObject(o, "alert_id")) == NULL)
				return TW_ERR_NOMEM;
			f->st->alert_id = 0;
			f->st->true_since = 0;
			continue;
		}
		if (cJSON_AddStringToObject(o, "action", "raise") == NULL ||
		    cJSON_AddStringToObject(o, "message", f->message) == NULL ||
		    !cJSON_AddItemToObject(o, "value", value_to_json(&f->val)))
			return TW_ERR_NOMEM;
		f->st->alert_id = -++s->raised;
		f->st->raised_ts = f->at;
		if (rule_actions(s, t, f->rule, f->at) != TW_OK)
			return TW_ERR_NOMEM;
	}
	s->fx.n = 0;
	return TW_OK;
}

/* How often `p` is reported: its model's period, else what its longest window saw. */
static int64_t
interval_of(const struct twin *t, const struct prop *p)
{
	const struct window *longest = NULL;
	struct window_stats st;

	if (p->mp != NULL && p->mp->period_ms > 0)
		return p->mp->period_ms;
	for (uint16_t i = 0; i < t->nwindows; i++)
		if (t->windows[i].name == p->name && t->windows[i].kind == EXPR_WIN_SPAN &&
		    (longest == NULL || t->windows[i].w.len_ms > longest->len_ms))
			longest = &t->windows[i].w;
	if (longest != NULL && window_stats(longest, p->ts, &st) == 0 && st.n >= 2 &&
	    st.last_ts > st.first_ts)
		return (st.last_ts - st.first_ts) / (int64_t)(st.n - 1);
	return 1000;
}

/* `p`'s value held from its ts to `at`, fed to its windows as readings every interval. */
static void
hold(struct twin *t, struct prop *p, int64_t at)
{
	int64_t every = interval_of(t, p);

	if (every < INTERVAL_MIN_MS)
		every = INTERVAL_MIN_MS;
	for (uint16_t i = 0; i < t->nwindows; i++) {
		struct window *w = &t->windows[i].w;
		int64_t from, chunk;

		if (t->windows[i].name != p->name || p->val.type != VAL_NUM)
			continue;
		/*
		 * Only windows: an ewma weighs the next reading by the time since
		 * the last, held or not; a detector learns from readings only.
		 */
		if (t->windows[i].kind != EXPR_WIN_SPAN)
			continue;
		from = p->ts > at - w->len_ms ? p->ts : at - w->len_ms;
		chunk = window_bucket_width(w);
		/* A bucket at a time, the window's own grain: from >= at - len, so 17 at most. */
		for (int64_t ts = from; ts < at; ) {
			int64_t next = ts + chunk < at ? ts + chunk : at;
			int64_t n = (next - ts) / every;

			/* n readings at ts + every, ..., ts + n every: as one, at their mean time. */
			if (n > 0)
				window_add_n(w, ts + every * (n + 1) / 2, p->val.num,
				    (uint32_t)(n < HOLD_WEIGHT_MAX ? n : HOLD_WEIGHT_MAX));
			/* What does not make a whole reading is carried into the next chunk. */
			ts = n > 0 ? ts + n * every : next;
			if (n == 0 && next == at)
				break;
		}
	}
}

/*
 * A twin in the scenario goes on reporting what it last reported: a
 * what-if is about the change it names, not about everything falling
 * silent while it runs. Its ages stay small and its windows fill with the
 * held values at the rate it reports them.
 */
static void
carry_on(struct sim *s, struct twin *t, int64_t at)
{
	if (t->newest_ts == 0)
		return;
	if (at > t->newest_ts)
		t->newest_ts = at;
	t->last_seen_ts = s->wall + (at - s->base);
	for (uint32_t i = 0; i < t->nprops; i++) {
		struct prop *p = &t->props[i];

		if (p->ts == 0 || at <= p->ts)
			continue;
		hold(t, p, at);
		p->ts = at;
	}
}

static int
evaluate(struct sim *s, struct twin *t, const char *const *names, int n, int64_t at)
{
	carry_on(s, t, at);
	/*
	 * `for` ends add work the bound checked up front cannot see, and held
	 * values cost a window each: counted as they go, and the engine's time
	 * is capped too, since ingestion waits while a what-if runs.
	 */
	s->evals += (long)t->nrs + t->nwindows + 1;
	if (s->evals > WHATIF_EVALS_MAX || clock_mono_ms() - s->started > WHATIF_TIME_MAX_MS) {
		request_fail(s->r, TW_ERR_REFUSED, "too_large", "this scenario costs more than %d "
		    "evaluations or %d ms of the engine's time: fewer steps or a smaller depth",
		    WHATIF_EVALS_MAX, WHATIF_TIME_MAX_MS);
		return TW_ERR_REFUSED;
	}
	if (runtime_eval(&s->dry, t, names, n, at, s->wall + (at - s->base), &s->fx) != TW_OK)
		return TW_ERR_NOMEM;
	return settle(s, t);
}

/* The earliest `for` that ends after `from` and before `to` on any copy, or 0. */
static int64_t
next_deadline(const struct sim *s, int64_t from, int64_t to)
{
	int64_t best = 0;

	for (int i = 0; i < s->n; i++) {
		const struct twin *t = s->v[i].t;

		for (uint16_t k = 0; k < t->nrs; k++) {
			const struct rule_state *st = &t->rs[k];
			int64_t due = st->true_since + st->rule->for_ms;

			if (st->alert_id == 0 && st->true_since != 0 && st->rule->for_ms > 0 &&
			    due > from && due < to && (best == 0 || due < best))
				best = due;
		}
	}
	return best;
}

/*
 * The timer, as live: every rule of every copy at `to`, and before it at
 * each moment a `for` ends, so a condition held raises when it would.
 */
static int
timer_until(struct sim *s, int64_t from, int64_t to)
{
	int64_t due;
	int rc;

	for (int round = 0; round < FOR_ROUNDS_MAX &&
	    (due = next_deadline(s, from, to)) != 0; round++) {
		for (int i = 0; i < s->n; i++)
			if ((rc = evaluate(s, s->v[i].t, NULL, 0, due)) != TW_OK)
				return rc;
		from = due;
	}
	for (int i = 0; i < s->n; i++)
		if ((rc = evaluate(s, s->v[i].t, NULL, 0, to)) != TW_OK)
			return rc;
	return TW_OK;
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
	return evaluate(s, c->t, names, nn, at);
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
		rc = desired_put(s, c->t, des, s->r->who, at, 0, &why);
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
	    add_ts(o, "last_seen_ts", t->last_seen_ts) ||
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
		    !cJSON_AddItemToObject(a, "value", value_to_json(&d->val)) || add_ts(a, "ts", d->ts) ||
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
		    cJSON_AddNullToObject(a, "id")) == NULL || add_ts(a, "raised_ts", st->raised_ts))
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
	    add_ts(o, "from_ts", s->base) || add_ts(o, "until_ts", s->until) ||
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
		if ((rc = timer_until(s, now, s->base + off)) != TW_OK ||
		    (rc = run_step(s, it, c, s->base + off)) != TW_OK)
			return rc;
		now = s->base + off;
		last = off;
	}
	s->until = s->base + (at > last ? at : last);
	if ((rc = timer_until(s, now, s->until)) != TW_OK)
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
