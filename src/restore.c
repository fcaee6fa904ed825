/* Restore: the store read back into the engine's memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "restore.h"

#define CONVERGE_RULE	"desired_not_converged"

/* A twin's rule states and windows, off the twin while the map is rebuilt. */
struct restore_kept {
	char *id;
	struct rule_state *rs;
	uint16_t nrs;
	struct twin_window *windows;
	uint16_t nwindows;
	UT_hash_handle hh;
};

static int
keep_twin(void *arg, struct twin *t)
{
	struct restore *r = arg;
	struct restore_kept *k;

	if (t->nrs == 0 && t->nwindows == 0)
		return 0;
	if ((k = calloc(1, sizeof(*k))) == NULL || (k->id = strdup(t->id)) == NULL) {
		free(k);
		return TW_ERR_NOMEM;
	}
	k->rs = t->rs;
	k->nrs = t->nrs;
	k->windows = t->windows;
	k->nwindows = t->nwindows;
	t->rs = NULL;
	t->windows = NULL;
	t->nrs = t->nwindows = 0;
	HASH_ADD_KEYPTR(hh, r->kept, k->id, strlen(k->id), k);
	return 0;
}

static void
kept_free(struct restore *r)
{
	struct restore_kept *k, *tmp;

	HASH_ITER(hh, r->kept, k, tmp) {
		HASH_DEL(r->kept, k);
		free(k->rs);
		twin_windows_free(k->windows, k->nwindows);
		free(k->id);
		free(k);
	}
}

static int
load_twin(void *arg, const struct store_twin_row *row)
{
	struct restore *r = arg;
	struct twin *t = NULL;
	struct restore_kept *k;

	size_t rules = runtime_cost(r->runtime, row->id, row->model);
	size_t cost = sizeof(*t) + strlen(row->id) + 1 + (row->model ? strlen(row->model) + 1 : 0) +
	    (row->parent ? strlen(row->parent) + 1 : 0) + rules;

	/*
	 * Over max_twins or [twins] memory_max, the rest are not loaded: the
	 * gateway still starts. Rules are bound once all is read: what they
	 * will cost is reserved meanwhile.
	 */
	if (twin_map_room(r->twins, cost + r->reserved) &&
	    (t = twin_add(r->twins, row->id, row->created_ts)) != NULL)
		r->reserved += rules;
	if (t == NULL) {
		r->partial = 1;
		if (twin_count(r->twins) > 0 && r->skipped++ == 0)
			log_warnx("database holds more twins than [twins] max_twins or memory_max "
			    "allow; the others are not loaded");
		return twin_count(r->twins) > 0 ? 0 : TW_ERR_NOMEM;
	}
	t->version = row->version;
	t->last_seen_ts = row->last_seen_ts;
	t->delta_pending = row->delta_pending;
	if (twin_set_meta(t, row->model, row->model != NULL ?
	    model_find(r->models, row->model) : NULL, row->parent) != TW_OK)
		return TW_ERR_NOMEM;
	/* Judged now, so that a start is not a storm of status events. */
	t->status = twin_status_of(r->status, t->model, t->last_seen_ts, r->now);
	HASH_FIND(hh, r->kept, t->id, strlen(t->id), k);
	if (k != NULL) {
		t->rs = k->rs;
		t->nrs = k->nrs;
		t->windows = k->windows;
		t->nwindows = k->nwindows;
		HASH_DEL(r->kept, k);
		free(k->id);
		free(k);
	}
	twin_charge(r->twins, t);
	return 0;
}

/* The twin of a row: rows come grouped by twin, so the last one found is most often it. */
static struct twin *
twin_of(struct restore *r, const char *id)
{
	if (r->last == NULL || strcmp(r->last->id, id) != 0)
		r->last = twin_find(r->twins, id, strlen(id));
	return r->last;
}

static int
load_series(void *arg, const struct store_series_row *row)
{
	struct restore *r = arg;
	struct twin *t = twin_of(r, row->twin);
	const char *name;
	struct prop *p;

	if (t == NULL)
		return 0;	/* the twin was beyond max_twins, already reported */
	if (!twin_map_room(r->twins, r->reserved + twin_props_growth(t, 1) +
	    twin_name_cost(r->twins, row->prop) +
	    (row->val.type == VAL_STR ? strlen(row->val.str) + 1 : 0))) {
		if (r->skipped_props++ == 0)
			log_warnx("twin %s: property %s not loaded: [twins] memory_max", row->twin,
			    row->prop);
		return 0;
	}
	if ((name = twin_intern(r->twins, row->prop)) == NULL)
		return TW_ERR_NOMEM;
	if ((p = twin_prop_add(r->twins, t, name, row->id)) == NULL) {
		log_warnx("twin %s: cannot load property %s (max_properties_per_twin?)",
		    row->twin, row->prop);
		return 0;
	}
	p->mp = t->model != NULL ? model_prop(t->model, name) : NULL;
	if (row->val.type != 0 && twin_prop_set(p, row->ts, &row->val) < 0)
		return TW_ERR_NOMEM;
	p->out_of_range = row->out_of_range;
	p->dirty = 0;
	twin_charge(r->twins, t);
	/* The twin clock goes on from the newest value and the time since it arrived. */
	if (row->ts > t->newest_ts) {
		t->newest_ts = row->ts;
		t->newest_mono = r->mono - (r->now - t->last_seen_ts);
	}
	return 0;
}

static int
load_desired(void *arg, const struct store_desired_row *row)
{
	struct restore *r = arg;
	struct twin *t = twin_of(r, row->twin);
	const char *name;
	struct desired *d;

	if (t == NULL)
		return 0;
	if (!twin_map_room(r->twins, r->reserved + twin_desired_growth(t, 1) +
	    twin_name_cost(r->twins, row->prop) +
	    (row->val.type == VAL_STR ? strlen(row->val.str) + 1 : 0))) {
		if (r->skipped_props++ == 0)
			log_warnx("twin %s: desired %s not loaded: [twins] memory_max", row->twin,
			    row->prop);
		return 0;
	}
	if ((name = twin_intern(r->twins, row->prop)) == NULL ||
	    (d = twin_desired_set(t, name, &row->val, row->ts)) == NULL)
		return TW_ERR_NOMEM;
	d->pending_since_ts = row->pending_since_ts;
	d->published = row->published;
	d->converged_ts = row->converged_ts;
	d->in_delta = row->in_delta;
	snprintf(d->set_by, sizeof(d->set_by), "%s", row->set_by != NULL ? row->set_by : "");
	d->dirty = 0;
	twin_charge(r->twins, t);
	return 0;
}

static int
load_alert(void *arg, const struct store_alert_row *row)
{
	struct restore *r = arg;
	struct twin *t = twin_find(r->twins, row->twin, strlen(row->twin));
	struct runtime_open *o;

	if (t == NULL)
		return 0;
	if (strcmp(row->rule, CONVERGE_RULE) == 0) {
		if (row->active) {
			t->alert_id = row->id;
			t->alert_raised_ts = row->raised_ts;
		}
		return 0;
	}
	if ((o = realloc(r->opened.v, (size_t)(r->opened.n + 1) * sizeof(*o))) == NULL)
		return TW_ERR_NOMEM;
	r->opened.v = o;
	o = &r->opened.v[r->opened.n++];
	snprintf(o->twin, sizeof(o->twin), "%s", row->twin);
	snprintf(o->rule, sizeof(o->rule), "%s", row->rule);
	o->id = row->active ? row->id : 0;
	o->raised_ts = row->raised_ts;
	o->shelved_until = row->shelved_until_ts;
	return 0;
}

static int
load_command(void *arg, const struct store_command_row *row)
{
	struct restore *r = arg;

	/* After a rollback the commands in memory are the truth: they know what was published. */
	return r->commands != NULL ? commands_restore(r->commands, row) : 0;
}

static int
bind_twin(void *arg, struct twin *t)
{
	struct restore *r = arg;
	int rc = runtime_bind(r->runtime, t, &r->opened);

	twin_charge(r->twins, t);
	return rc;
}

int
restore_load(struct restore *r, struct store *st, int keep_rules)
{
	static const struct store_loader loader = {
		load_twin, load_series, load_desired, load_alert, load_command,
	};
	int64_t t0 = clock_mono_us();
	int rc = TW_OK;

	r->kept = NULL;
	r->skipped = r->skipped_props = 0;
	r->partial = 0;
	r->reserved = 0;
	r->last = NULL;
	r->now = clock_now_ms();
	r->mono = clock_mono_ms();
	r->opened.v = NULL;
	r->opened.n = 0;
	if (keep_rules)
		rc = twin_each(r->twins, keep_twin, r);
	twin_map_clear(r->twins);
	if (rc == TW_OK)
		rc = store_load(st, &loader, r);
	runtime_open_sort(&r->opened);
	/* Rules come back with their open alerts; then the list has served. */
	if (rc == TW_OK)
		rc = twin_each(r->twins, bind_twin, r);
	kept_free(r);
	free(r->opened.v);
	r->opened.v = NULL;
	r->opened.n = 0;
	if (rc != TW_OK)
		return rc;
	atomic_store(&metrics.twins, twin_count(r->twins));
	atomic_store(&metrics.property_names, twin_names_count(r->twins));
	atomic_store(&metrics.memory_bytes, twin_map_bytes(r->twins));
	log_info("loaded %u twins in %.1f ms", twin_count(r->twins),
	    (double)(clock_mono_us() - t0) / 1000.0);
	return TW_OK;
}

int
restore_plant(struct twin_map *m, const struct model_set *models, const struct runtime *rt,
    const struct plant *p)
{
	for (int i = 0; i < p->n; i++) {
		const struct plant_entry *pe = &p->v[i];
		struct twin *t = twin_find(m, pe->id, strlen(pe->id));
		const struct model *md = pe->model != NULL ? model_find(models, pe->model) : NULL;

		if (t == NULL && (t = twin_add(m, pe->id, clock_now_ms())) == NULL) {
			log_warnx("twins file: %s: max_twins reached", pe->id);
			continue;
		}
		if (twin_set_meta(t, pe->model, md, pe->parent) != TW_OK ||
		    runtime_bind(rt, t, NULL) != TW_OK)
			return TW_ERR_NOMEM;
		twin_charge(m, t);
		twin_mark_dirty(m, t);
	}
	atomic_store(&metrics.twins, twin_count(m));
	return TW_OK;
}

struct rebind {
	struct twin_map *m;
	const struct model_set *models;
	const struct runtime *rt;
};

static int
rebind_one(void *arg, struct twin *t)
{
	struct rebind *rb = arg;

	int rc;

	if (twin_set_meta(t, t->model_id, t->model_id != NULL ?
	    model_find(rb->models, t->model_id) : NULL, t->parent) != TW_OK)
		return TW_ERR_NOMEM;
	rc = runtime_bind(rb->rt, t, NULL);
	twin_charge(rb->m, t);
	return rc;
}

static int
unbind_one(void *arg, struct twin *t)
{
	runtime_unbind(t);
	twin_charge(arg, t);
	return 0;
}

int
restore_rebind(struct twin_map *m, const struct model_set *models, const struct runtime *rt)
{
	struct rebind rb = { m, models, rt };

	if (twin_each(m, rebind_one, &rb) == 0)
		return TW_OK;
	/* No twin may keep a rule state pointing into a set about to be freed. */
	twin_each(m, unbind_one, m);
	return TW_ERR_NOMEM;
}
