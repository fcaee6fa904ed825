/* One telemetry update onto its twin: checks, history, reported state, windows. */
#include <string.h>

#include "apply.h"
#include "clock.h"
#include "err.h"
#include "metrics.h"
#include "model.h"

static void
rec_value(const struct rec_val *v, struct tw_val *out)
{
	out->type = v->type;
	out->num = v->num;
	out->str = v->type == VAL_STR ? rec_val_str(v) : NULL;
}

/* Checks the values of `r` against the model of `t` (NULL: a twin to create). */
/*
 * Checks the values of `r` against the model of `t` (NULL: a twin to
 * create), and adds up what accepting them would cost: the string bytes
 * they add and the names they intern.
 */
static int
check_values(struct apply *a, struct twin *t, const struct rec *r, int *fresh, size_t *cost)
{
	const struct rec_val *v = rec_val_first(r);

	*fresh = 0;
	*cost = 0;
	for (uint16_t i = 0; i < r->nvals; i++, v = rec_val_next(v)) {
		const struct model_prop *mp;
		struct prop *p = NULL;
		struct tw_val val;

		a->names[i] = twin_intern_find(a->twins, v->name);
		if (t != NULL && a->names[i] != NULL)
			p = twin_prop(t, a->names[i]);
		if (p == NULL) {
			(*fresh)++;
			*cost += twin_name_cost(a->twins, v->name);
		}
		/* A string replaces a string: only what it adds counts. */
		if (v->type == VAL_STR) {
			size_t old = p != NULL && p->val.type == VAL_STR ? strlen(p->val.str) + 1 : 0;

			if ((size_t)v->str_len + 1 > old)
				*cost += (size_t)v->str_len + 1 - old;
		}
		if (t == NULL || t->model == NULL)
			continue;
		rec_value(v, &val);
		if ((mp = model_prop(t->model, v->name)) == NULL) {
			if (t->model->strict)
				return DROP_UNKNOWN_PROPERTY;
		} else if (!model_value_ok(mp, &val)) {
			return DROP_WRONG_TYPE;
		}
	}
	return INGEST_OK;
}

struct twin *
apply_twin(struct apply *a, const struct rec *r, int *reason)
{
	struct twin *t = twin_find(a->twins, r->id, r->id_len);
	const struct rec_val *v;
	size_t cost;
	int fresh;

	if (t == NULL && !a->auto_create) {
		*reason = DROP_UNKNOWN_TWIN;
		return NULL;
	}
	/* Before any name is interned: a refused twin must leave nothing behind. */
	if (t == NULL && twin_count(a->twins) >= (unsigned)a->max_twins) {
		*reason = DROP_TWIN_LIMIT;
		return NULL;
	}
	if ((*reason = check_values(a, t, r, &fresh, &cost)) != INGEST_OK)
		return NULL;
	if (t != NULL ? !twin_props_room(a->twins, t, fresh) : fresh > a->max_props_per_twin) {
		*reason = DROP_PROPERTY_LIMIT;
		return NULL;
	}
	/*
	 * An upper bound of what accepting it costs, so that no publisher can
	 * push twind past its budget: new slots (grown as twin_prop_add grows
	 * them), names and string bytes, and for a new twin itself and the rule
	 * states and windows it will be bound to.
	 */
	cost += twin_props_growth(t, (uint32_t)fresh);
	if (t == NULL)
		cost += sizeof(struct twin) + r->id_len + 1 + runtime_cost(a->runtime, r->id, NULL);
	if (!twin_map_room(a->twins, cost)) {
		*reason = DROP_MEMORY_LIMIT;
		return NULL;
	}
	/* A twin a budget-limited start left on disk is not made anew: it would lose its model. */
	if (t == NULL && a->partial && store_twin_exists(a->store, r->id)) {
		*reason = DROP_MEMORY_LIMIT;
		return NULL;
	}
	/* Accepted: only now do new names and a new twin come into being. */
	v = rec_val_first(r);
	for (uint16_t i = 0; i < r->nvals; i++, v = rec_val_next(v))
		if (a->names[i] == NULL && (a->names[i] = twin_intern(a->twins, v->name)) == NULL) {
			*reason = DROP_PROPERTY_LIMIT;
			return NULL;
		}
	atomic_store(&metrics.property_names, twin_names_count(a->twins));
	if (t != NULL)
		return t;
	if ((t = twin_add(a->twins, r->id, r->arrival_ms)) == NULL) {
		*reason = DROP_TWIN_LIMIT;
		return NULL;
	}
	twin_mark_dirty(a->twins, t);
	atomic_store(&metrics.twins, twin_count(a->twins));
	/* Without memory for its rule states the twin still ingests; the next reload binds it. */
	runtime_bind(a->runtime, t, NULL);
	return t;
}

/* A series on disk that memory did not hold: the property starts from its reported value. */
static int
seed_prop(void *arg, const struct store_series_row *row)
{
	struct prop *p = arg;

	if (row->val.type != 0 && twin_prop_set(p, row->ts, &row->val) < 0)
		return TW_ERR_NOMEM;
	p->out_of_range = row->out_of_range;
	p->dirty = 0;
	return TW_OK;
}

/* The property `name` of `t`, created (with its history series) when new. */
static struct prop *
prop_of(struct apply *a, struct twin *t, const char *name, int *err)
{
	struct prop *p = twin_prop(t, name);

	*err = TW_OK;
	if (p != NULL)
		return p;
	if ((p = twin_prop_add(a->twins, t, name, 0)) == NULL) {
		*err = TW_ERR_NOMEM;
		return NULL;
	}
	p->mp = t->model != NULL ? model_prop(t->model, name) : NULL;
	/* On failure the batch rolls back and the twins are reloaded: the slot goes with them. */
	if ((*err = store_series_add(a->store, t->id, name, &p->series, seed_prop, p)) != TW_OK)
		return NULL;
	return p;
}

int
apply_values(struct apply *a, struct twin *t, const struct rec *r)
{
	const struct rec_val *v = rec_val_first(r);
	int changed = 0, rc, fresh, newest;
	struct tw_val val;
	struct desired *de;
	struct prop *p;

	for (uint16_t i = 0; i < r->nvals; i++, v = rec_val_next(v)) {
		rec_value(v, &val);
		if ((p = prop_of(a, t, a->names[i], &rc)) == NULL)
			return rc;
		/* Every value lands in history, also one older than the reported one. */
		if (history_put(a->hist, p->series, r->ts, &val, &fresh) != TW_OK)
			return TW_ERR_DB;
		/* A redelivery is in history already: counted once in the windows too. */
		newest = r->ts >= p->ts;
		if (fresh == 1)
			runtime_feed(t, p->name, r->ts, &val, newest);
		if ((rc = twin_prop_set(p, r->ts, &val)) < 0)
			return -rc;
		/*
		 * One under retention's edge is not in history to tell it from a
		 * redelivery: it is news when it changed the property (a newer
		 * reading, as in a replay, or a correction of the newest, fed as
		 * a correction in range is), and then it is the newest.
		 */
		if (fresh == 2 && rc > 0)
			runtime_feed(t, p->name, r->ts, &val, newest);
		if (rc == 0)
			continue;
		changed = 1;
		/* A sensor that reads out of range is news: stored, flagged and counted. */
		p->out_of_range = model_out_of_range(p->mp, &val);
		if (p->out_of_range)
			metrics_add(&metrics.out_of_range, 1);
		if ((de = twin_desired(t, p->name)) != NULL && desired_eval(t, de, r->ts))
			desired_want(a->desired, t);
	}
	/* Pairs compared by disagree() see both values of this record, not one and a stale other. */
	runtime_feed_pairs(t);
	if (changed)
		t->version++;
	if (r->arrival_ms > t->last_seen_ts && !(r->flags & REC_F_RETAINED))
		t->last_seen_ts = r->arrival_ms;
	if (r->ts >= t->newest_ts) {
		t->newest_ts = r->ts;
		t->newest_mono = clock_mono_ms();
	}
	twin_mark_dirty(a->twins, t);
	twin_charge(a->twins, t);
	return TW_OK;
}
