/* Desired state and its delta: checked patches, convergence, retained publication. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "desired.h"
#include "envelope.h"
#include "err.h"
#include "log.h"
#include "model.h"
#include "topic.h"

void
desired_out_init(struct desired_out *d, const char *topic_tmpl)
{
	memset(d, 0, sizeof(*d));
	d->topic_tmpl = topic_tmpl;
}

void
desired_out_cleanup(struct desired_out *d)
{
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}

void
desired_out_clear(struct desired_out *d)
{
	d->n = 0;
}

void
desired_want(struct desired_out *d, struct twin *t)
{
	t->delta_pending = 1;
	if (t->delta_queued)
		return;
	if (d->n == d->cap) {
		unsigned cap = d->cap == 0 ? 16 : d->cap * 2;
		struct twin **v = realloc(d->v, cap * sizeof(*v));

		/* Without room, delta_pending still republishes it after the next start. */
		if (v == NULL)
			return;
		d->v = v;
		d->cap = cap;
	}
	t->delta_queued = 1;
	d->v[d->n++] = t;
}

static double
tolerance_of(const struct desired *de)
{
	return de->mp != NULL ? de->mp->tolerance : 0;
}

int
desired_eval(struct twin *t, struct desired *de, int64_t now)
{
	struct prop *p = twin_prop(t, de->name);
	int meets = p != NULL && p->val.type != 0 &&
	    twin_value_meets(&p->val, &de->val, tolerance_of(de));

	if (meets && (de->in_delta || de->converged_ts == 0)) {
		de->in_delta = 0;
		de->pending_since_ts = 0;
		de->converged_ts = now;
		de->dirty = 1;
		return 1;
	}
	if (!meets && !de->in_delta) {
		de->in_delta = 1;
		de->pending_since_ts = now;
		de->converged_ts = 0;
		de->dirty = 1;
		return 1;
	}
	return 0;
}

/* Checks one entry of a patch; 0, or TW_ERR_REFUSED with `r` filled. */
static int
check_entry(const struct twin *t, const cJSON *it, struct tw_val *v, struct request *r)
{
	const struct model_prop *mp = t->model != NULL ? model_prop(t->model, it->string) : NULL;

	v->type = 0;
	if (mp == NULL || mp->kind != MODEL_PROPERTY || !mp->writable) {
		request_fail(r, TW_ERR_REFUSED, "not_writable", "'%.128s' is not a writable "
		    "property of %s", it->string,
		    t->model_id != NULL ? t->model_id : "a twin without a model");
		return TW_ERR_REFUSED;
	}
	if (cJSON_IsNull(it))
		return TW_OK;
	if (cJSON_IsNumber(it))
		*v = (struct tw_val){ .type = VAL_NUM, .num = it->valuedouble };
	else if (cJSON_IsBool(it))
		*v = (struct tw_val){ .type = VAL_BOOL, .num = cJSON_IsTrue(it) };
	else if (cJSON_IsString(it) && strlen(it->valuestring) <= STR_VALUE_MAX)
		*v = (struct tw_val){ .type = VAL_STR, .str = it->valuestring };
	/* cJSON reads 1e999 as infinity, which JSON cannot carry back: it would go out as null. */
	if (v->type == VAL_NUM && !isfinite(v->num)) {
		request_fail(r, TW_ERR_REFUSED, "bad_value", "'%.128s' must be a finite number",
		    it->string);
		return TW_ERR_REFUSED;
	}
	if (v->type == 0 || !model_value_ok(mp, v)) {
		request_fail(r, TW_ERR_REFUSED, "wrong_type", "'%.128s' must be a%s %s", it->string,
		    mp->integer ? " whole" : "", mp->schema == SCHEMA_NUMBER ? "number" :
		    mp->schema == SCHEMA_BOOLEAN ? "boolean" : "string");
		return TW_ERR_REFUSED;
	}
	if (model_out_of_range(mp, v)) {
		request_fail(r, TW_ERR_REFUSED, "out_of_range", "'%.128s' must be within [%g, %g]",
		    it->string, mp->has_min ? mp->min : -1e308, mp->has_max ? mp->max : 1e308);
		return TW_ERR_REFUSED;
	}
	return TW_OK;
}

/* An upper bound of what applying `patch` to `t` costs in bytes. */
static size_t
patch_cost(const struct twin_map *m, const struct twin *t, const cJSON *patch)
{
	const cJSON *it;
	size_t cost = 0;
	uint32_t fresh = 0;

	cJSON_ArrayForEach(it, patch) {
		cost += twin_name_cost(m, it->string);
		fresh++;
		if (cJSON_IsString(it))
			cost += strlen(it->valuestring) + 1;
	}
	return cost + twin_desired_growth(t, fresh);
}

int
desired_check(const struct twin_map *m, const struct twin *t, const cJSON *patch,
    struct request *r)
{
	struct tw_val v;
	const cJSON *it;

	cJSON_ArrayForEach(it, patch)
		if (check_entry(t, it, &v, r) != TW_OK)
			return TW_ERR_REFUSED;
	if (!twin_map_room(m, patch_cost(m, t, patch))) {
		request_fail(r, TW_ERR_REFUSED, "memory_limit", "the twins hold [twins] memory_max "
		    "already; nothing was changed");
		return TW_ERR_REFUSED;
	}
	return TW_OK;
}

int
desired_apply(struct desired_out *d, struct twin_map *m, struct twin *t,
    const cJSON *patch, const char *by, int64_t now, int *changed)
{
	struct request scratch = { 0 };
	struct tw_val v;
	const cJSON *it;

	*changed = 0;
	cJSON_ArrayForEach(it, patch) {
		const char *name = twin_intern(m, it->string);
		struct desired *de = name != NULL ? twin_desired(t, name) : NULL;

		check_entry(t, it, &v, &scratch);	/* checked already: this reads the value */
		if (name == NULL)
			return TW_ERR_NOMEM;
		if (cJSON_IsNull(it)) {
			if (de == NULL || de->removed)
				continue;
			de->removed = 1;
			de->dirty = 1;
			*changed = 1;
			if (de->in_delta)
				desired_want(d, t);
			continue;
		}
		if (de != NULL && !de->removed && value_equal(&de->val, &v))
			continue;
		if ((de = twin_desired_set(t, name, &v, now)) == NULL)
			return TW_ERR_NOMEM;
		/* A new value starts a new episode: not yet published, not yet reached. */
		snprintf(de->set_by, sizeof(de->set_by), "%s", by);
		de->published = 0;
		de->converged_ts = 0;
		de->in_delta = 0;
		de->removed = 0;
		desired_eval(t, de, now);
		*changed = 1;
		desired_want(d, t);
	}
	if (*changed) {
		t->version++;
		twin_mark_dirty(m, t);
		twin_charge(m, t);
	}
	return TW_OK;
}

cJSON *
desired_delta_json(const struct twin *t)
{
	cJSON *o = cJSON_CreateObject();

	for (uint32_t i = 0; o != NULL && i < t->ndesired; i++) {
		const struct desired *de = &t->desired[i];

		if (de->in_delta && !de->removed &&
		    !cJSON_AddItemToObject(o, de->name, value_to_json(&de->val))) {
			cJSON_Delete(o);
			return NULL;
		}
	}
	return o;
}

/* The "desired" live event: the delta as published. */
static void
emit_event(struct outbox *o, const struct twin *t, cJSON *delta)
{
	cJSON *ev;
	char *js;

	if (!outbox_listening(o) || (ev = cJSON_CreateObject()) == NULL)
		return;
	if (cJSON_AddStringToObject(ev, "twin", t->id) != NULL &&
	    cJSON_AddNumberToObject(ev, "version", (double)t->version) != NULL &&
	    cJSON_AddItemReferenceToObject(ev, "delta", delta) &&
	    (js = cJSON_PrintUnformatted(ev)) != NULL) {
		outbox_emit(o, "desired", t->id, js);
		cJSON_free(js);
	}
	cJSON_Delete(ev);
}

/* Publishes the delta of `t`, retained; an empty retained message when nothing is pending. */
static int
publish_one(struct desired_out *d, struct twin_map *m, struct outbox *o, struct twin *t)
{
	char topic[TOPIC_MAX], *payload = NULL;
	cJSON *delta;
	int len = 0, rc;

	if (topic_format(d->topic_tmpl, t->id, topic, sizeof(topic)) != TW_OK)
		return TW_ERR_INVAL;
	if ((delta = desired_delta_json(t)) == NULL)
		return TW_ERR_NOMEM;
	/* Out of memory: publish nothing rather than an empty "all reached". */
	if (delta->child != NULL && (payload = cJSON_PrintUnformatted(delta)) == NULL) {
		cJSON_Delete(delta);
		return TW_ERR_NOMEM;
	}
	if (payload != NULL)
		len = (int)strlen(payload);
	rc = outbox_send(o, OUTBOX_DELTA, t->id, d->seq + 1, topic, payload, len, 1, 0);
	if (rc == TW_OK) {
		t->delta_seq = ++d->seq;
		for (uint32_t i = 0; i < t->ndesired; i++)
			if (t->desired[i].in_delta) {
				t->desired[i].published++;
				t->desired[i].dirty = 1;
			}
		twin_mark_dirty(m, t);
		emit_event(o, t, delta);
	}
	cJSON_Delete(delta);
	cJSON_free(payload);
	return rc;
}

void
desired_publish(struct desired_out *d, struct twin_map *m, struct outbox *o)
{
	unsigned keep = 0;

	for (unsigned i = 0; i < d->n; i++) {
		struct twin *t = d->v[i];

		/*
		 * The broker is away, or the flights are full: the twin stays
		 * pending and goes out later. Asked first, so that a full outbox
		 * does not cost a delta document per pending twin per commit.
		 */
		if (!outbox_connected(o) || publish_one(d, m, o, t) == TW_ERR_UNAVAIL) {
			d->v[keep++] = t;
			continue;
		}
		t->delta_queued = 0;
	}
	d->n = keep;
}

void
desired_taken(struct twin_map *m, const struct outbox_ack *ack)
{
	struct twin *t = twin_find(m, ack->key, strlen(ack->key));

	/* A newer delta is out: the twin stays pending until that one is taken. */
	if (t == NULL || t->delta_seq != ack->seq || !t->delta_pending)
		return;
	t->delta_pending = 0;
	twin_mark_dirty(m, t);
}

int64_t
desired_timeout(const struct desired *de, int64_t dflt_ms)
{
	return de->mp != NULL && de->mp->converge_ms > 0 ? de->mp->converge_ms : dflt_ms;
}

const struct desired *
desired_overdue(const struct twin *t, int64_t now, int64_t dflt_ms)
{
	for (uint32_t i = 0; i < t->ndesired; i++) {
		const struct desired *de = &t->desired[i];

		if (de->in_delta && !de->removed && de->pending_since_ts > 0 &&
		    now - de->pending_since_ts >= desired_timeout(de, dflt_ms))
			return de;
	}
	return NULL;
}

int
desired_request(struct desired_out *d, struct twin_map *m, struct twin *t, struct request *r,
    int64_t now, const struct status_rule *fresh)
{
	struct envelope_ask a = { t->model, NULL, m, t, twin_clock(t, clock_mono_ms()), now, 0,
	    NULL, fresh };
	struct envelope_verdict v;
	int changed;

	if (r->has_if_match && r->if_match != t->version) {
		request_fail(r, TW_ERR_CONFLICT, "version_mismatch", "twin '%s' is at version %llu, "
		    "not %llu", t->id, (unsigned long long)t->version,
		    (unsigned long long)r->if_match);
		r->version = t->version;
		return TW_ERR_CONFLICT;
	}
	if (desired_check(m, t, r->patch, r) != TW_OK)
		return TW_ERR_REFUSED;
	envelope_desired(&a, r->patch, &v);
	if (v.refusal != ENVELOPE_OK) {
		request_fail(r, v.refusal == ENVELOPE_RATE ? TW_ERR_FULL : TW_ERR_REFUSED,
		    v.refusal == ENVELOPE_RATE ? "rate_limited" : "interlock", "%s", v.why);
		r->retry_ms = v.retry_ms;
		return v.refusal == ENVELOPE_RATE ? TW_ERR_FULL : TW_ERR_REFUSED;
	}
	if (desired_apply(d, m, t, r->patch, r->who, now, &changed) != TW_OK)
		return TW_ERR_NOMEM;
	if (changed) {
		char *what = cJSON_PrintUnformatted(r->patch);

		log_info("twin %s: desired %.200s set by %s", t->id, what != NULL ? what : "?",
		    r->who[0] != '\0' ? r->who : "anonymous");
		cJSON_free(what);
	}
	r->version = t->version;
	return TW_OK;
}
