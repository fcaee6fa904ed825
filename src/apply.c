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
static int
check_values(struct apply *a, struct twin *t, const struct rec *r, int *fresh, size_t *strs)
{
	const struct rec_val *v = rec_val_first(r);

	*fresh = 0;
	*strs = 0;
	for (uint16_t i = 0; i < r->nvals; i++, v = rec_val_next(v)) {
		const struct model_prop *mp;
		struct tw_val val;

		if (v->type == VAL_STR)
			*strs += (size_t)v->str_len + 1;
		a->names[i] = twin_intern_find(a->twins, v->name);
		if (t == NULL || a->names[i] == NULL || twin_prop(t, a->names[i]) == NULL)
			(*fresh)++;
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
	size_t strs, cost;
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
	if ((*reason = check_values(a, t, r, &fresh, &strs)) != INGEST_OK)
		return NULL;
	if (t != NULL ? !twin_props_room(a->twins, t, fresh) : fresh > a->max_props_per_twin) {
		*reason = DROP_PROPERTY_LIMIT;
		return NULL;
	}
	/* An upper bound of what accepting it costs: no publisher can push twind past its budget. */
	cost = (size_t)fresh * TWIN_PROP_COST + strs +
	    (t == NULL ? sizeof(struct twin) + r->id_len + 1 : 0);
	if (!twin_map_room(a->twins, cost)) {
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

/* The property `name` of `t`, created (with its history series) when new. */
static struct prop *
prop_of(struct apply *a, struct twin *t, const char *name, int *err)
{
	struct prop *p = twin_prop(t, name);
	int64_t series;

	*err = TW_OK;
	if (p != NULL)
		return p;
	if (store_series_add(a->store, t->id, name, &series) != TW_OK) {
		*err = TW_ERR_DB;
		return NULL;
	}
	if ((p = twin_prop_add(a->twins, t, name, series)) == NULL) {
		*err = TW_ERR_NOMEM;
		return NULL;
	}
	p->mp = t->model != NULL ? model_prop(t->model, name) : NULL;
	return p;
}

int
apply_values(struct apply *a, struct twin *t, const struct rec *r)
{
	const struct rec_val *v = rec_val_first(r);
	int changed = 0, rc, fresh;
	struct tw_val val;
	struct desired *de;
	struct prop *p;

	for (uint16_t i = 0; i < r->nvals; i++, v = rec_val_next(v)) {
		rec_value(v, &val);
		if ((p = prop_of(a, t, a->names[i], &rc)) == NULL)
			return rc;
		/* Every value lands in history, also one older than the reported one. */
		if (store_history_put(a->store, p->series, r->ts, &val, &fresh) != TW_OK)
			return TW_ERR_DB;
		/* A redelivery is in history already: counted once in the windows too. */
		if (fresh)
			runtime_feed(t, p->name, r->ts, &val);
		if ((rc = twin_prop_set(p, r->ts, &val)) < 0)
			return -rc;
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
