/*
 * The twin document of INTERFACE.md, built in one place from committed
 * state: REST answers it, the state topic publishes it, and the "twin"
 * live event carries its reported entries. Reads through the store
 * connection it is given (a REST thread's reader, or the engine's writer
 * between its commits).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "err.h"
#include "names.h"
#include "twin.h"
#include "twin_doc.h"

#define ROLLUP_MAX	10000	/* twins visited for one roll-up */

static cJSON *
add_str_or_null(cJSON *obj, const char *name, const char *s)
{
	return s != NULL ? cJSON_AddStringToObject(obj, name, s) : cJSON_AddNullToObject(obj, name);
}

static cJSON *
add_ts_or_null(cJSON *obj, const char *name, int64_t ts)
{
	return ts > 0 ? cJSON_AddNumberToObject(obj, name, (double)ts) :
	    cJSON_AddNullToObject(obj, name);
}

int
twin_doc_status(const struct twin_doc_ctx *dc, const struct store_twin_row *row)
{
	const struct status_rule rule = {
		dc->conf->stale_factor, dc->conf->offline_factor,
		dc->conf->stale_after_ms, dc->conf->offline_after_ms,
	};

	return twin_status_of(&rule, row->model != NULL ? model_find(dc->models, row->model) :
	    NULL, row->last_seen_ts, dc->now);
}

int
twin_doc_summary(const struct twin_doc_ctx *dc, cJSON *o, const struct store_twin_row *row)
{
	if (cJSON_AddStringToObject(o, "id", row->id) == NULL ||
	    cJSON_AddStringToObject(o, "model",
	    row->model != NULL ? row->model : MODEL_ANY_ID) == NULL ||
	    add_str_or_null(o, "parent", row->parent) == NULL ||
	    cJSON_AddStringToObject(o, "status", twin_status_name(twin_doc_status(dc, row))) == NULL ||
	    add_ts_or_null(o, "last_seen_ts", row->last_seen_ts) == NULL ||
	    cJSON_AddNumberToObject(o, "version", (double)row->version) == NULL ||
	    cJSON_AddNumberToObject(o, "active_alerts", row->active_alerts) == NULL)
		return 1;
	return 0;
}

/* ---- the twin document ---- */

struct row_copy {
	struct store_twin_row row;
	char id[TWIN_ID_MAX + 1];
	char model[256];
	char parent[TWIN_ID_MAX + 1];
	int found;
};

/* Copies a twin row out of the statement, so that other queries may run. */
static int
copy_row(void *arg, const struct store_twin_row *row)
{
	struct row_copy *c = arg;

	c->row = *row;
	snprintf(c->id, sizeof(c->id), "%s", row->id);
	c->row.id = c->id;
	if (row->model != NULL) {
		snprintf(c->model, sizeof(c->model), "%s", row->model);
		c->row.model = c->model;
	}
	if (row->parent != NULL) {
		snprintf(c->parent, sizeof(c->parent), "%s", row->parent);
		c->row.parent = c->parent;
	}
	c->found = 1;
	return 0;
}

struct reported_ctx {
	const struct twin_doc_ctx *dc;
	const struct model *model;
	cJSON *out;
};

int
twin_doc_stale(const struct model_prop *mp, int64_t ts, int64_t now, int stale_factor)
{
	return mp != NULL && mp->period_ms > 0 && now - ts > mp->period_ms * stale_factor;
}

cJSON *
twin_doc_reported(const struct model_prop *mp, const struct tw_val *v, int64_t ts,
    int out_of_range, int stale)
{
	cJSON *p = cJSON_CreateObject();

	if (p == NULL || !cJSON_AddItemToObject(p, "value", value_to_json(v)) ||
	    cJSON_AddNumberToObject(p, "ts", (double)ts) == NULL ||
	    cJSON_AddBoolToObject(p, "stale", stale) == NULL ||
	    cJSON_AddBoolToObject(p, "out_of_range", out_of_range) == NULL ||
	    (mp != NULL && mp->unit != NULL && cJSON_AddStringToObject(p, "unit", mp->unit) == NULL)) {
		cJSON_Delete(p);
		return NULL;
	}
	return p;
}

static int
reported_row(void *arg, const struct store_series_row *row)
{
	struct reported_ctx *rc = arg;
	const struct model_prop *mp = rc->model != NULL ? model_prop(rc->model, row->prop) : NULL;
	cJSON *p = twin_doc_reported(mp, &row->val, row->ts, row->out_of_range,
	    twin_doc_stale(mp, row->ts, rc->dc->now, rc->dc->conf->stale_factor));

	if (p == NULL || !cJSON_AddItemToObject(rc->out, row->prop, p)) {
		cJSON_Delete(p);
		return TW_ERR_NOMEM;
	}
	return 0;
}

struct desired_ctx {
	cJSON *desired;
	cJSON *delta;
};

static int
desired_row(void *arg, const struct store_desired_row *row)
{
	struct desired_ctx *dc = arg;
	cJSON *d = cJSON_CreateObject();

	if (d == NULL || !cJSON_AddItemToObject(dc->desired, row->prop, d) ||
	    !cJSON_AddItemToObject(d, "value", value_to_json(&row->val)) ||
	    cJSON_AddNumberToObject(d, "ts", (double)row->ts) == NULL ||
	    add_ts_or_null(d, "pending_since_ts", row->pending_since_ts) == NULL ||
	    cJSON_AddNumberToObject(d, "published", (double)row->published) == NULL ||
	    add_ts_or_null(d, "converged_ts", row->converged_ts) == NULL ||
	    (row->set_by != NULL ? cJSON_AddStringToObject(d, "set_by", row->set_by) :
	    cJSON_AddNullToObject(d, "set_by")) == NULL)
		return 1;
	if (row->in_delta && !cJSON_AddItemToObject(dc->delta, row->prop, value_to_json(&row->val)))
		return 1;
	return 0;
}

static int
alert_row(void *arg, const struct store_alert_row *a)
{
	return cJSON_AddItemToArray(arg, alert_json(a)) ? 0 : 1;
}

struct rollup {
	const struct twin_doc_ctx *dc;
	int worst;		/* enum twin_status; TWIN_ONLINE when nothing is below */
	int alerts;
	int twins;
	char (*queue)[TWIN_ID_MAX + 1];	/* ids still to visit */
	int head, tail;
};

static int
rollup_row(void *arg, const struct store_twin_row *row)
{
	struct rollup *r = arg;
	int st = twin_doc_status(r->dc, row);

	if (st < r->worst)
		r->worst = st;
	r->alerts += row->active_alerts;
	r->twins++;
	if (r->tail < ROLLUP_MAX)
		snprintf(r->queue[r->tail++], TWIN_ID_MAX + 1, "%s", row->id);
	return 0;
}

/* The worst status and the active alerts of every twin below `id`, breadth first. */
static int
twin_rollup(const struct twin_doc_ctx *dc, const char *id, cJSON *doc)
{
	struct rollup r = { .dc = dc, .worst = TWIN_ONLINE };
	cJSON *o;
	int rc = TW_OK;

	if ((r.queue = malloc(sizeof(*r.queue) * ROLLUP_MAX)) == NULL)
		return TW_ERR_NOMEM;
	rc = store_read_twins(dc->db, id, rollup_row, &r);
	while (rc == TW_OK && r.head < r.tail)
		rc = store_read_twins(dc->db, r.queue[r.head++], rollup_row, &r);
	free(r.queue);
	if (rc != TW_OK)
		return rc;
	if (r.twins == 0)
		return TW_OK;
	if ((o = cJSON_AddObjectToObject(doc, "rollup")) == NULL ||
	    cJSON_AddStringToObject(o, "status", twin_status_name(r.worst)) == NULL ||
	    cJSON_AddNumberToObject(o, "active_alerts", r.alerts) == NULL ||
	    cJSON_AddNumberToObject(o, "twins", r.twins) == NULL)
		return TW_ERR_NOMEM;
	return TW_OK;
}


struct children_ctx {
	const struct twin_doc_ctx *dc;
	cJSON *arr;
	int depth;
	int failed;
};

static int
child_row(void *arg, const char *child)
{
	struct children_ctx *cc = arg;
	cJSON *c = NULL;

	/* With depth left, the child's document; otherwise its id. */
	if (cc->depth > 0) {
		char id[TWIN_ID_MAX + 1];

		snprintf(id, sizeof(id), "%s", child);
		cc->failed = twin_doc_build(cc->dc, id, cc->depth - 1, &c, NULL) != TW_OK;
	} else {
		c = cJSON_CreateString(child);
	}
	if (cc->failed || c == NULL || !cJSON_AddItemToArray(cc->arr, c)) {
		cJSON_Delete(c);
		cc->failed = 1;
		return 1;
	}
	return 0;
}

/* Children are gathered first: a document read inside the children query would reuse its statement. */
static int
twin_children(const struct twin_doc_ctx *dc, const char *id, int depth, cJSON *doc)
{
	struct children_ctx cc = { .dc = dc, .depth = 0 };
	cJSON *ids, *arr, *it;
	int rc;

	if ((ids = cJSON_CreateArray()) == NULL)
		return TW_ERR_NOMEM;
	cc.arr = ids;
	rc = store_read_children(dc->db, id, child_row, &cc);
	if (rc != TW_OK || cc.failed) {
		cJSON_Delete(ids);
		return rc != TW_OK ? rc : TW_ERR_NOMEM;
	}
	if (depth == 0) {
		cJSON_AddItemToObject(doc, "children", ids);
		return TW_OK;
	}
	if ((arr = cJSON_AddArrayToObject(doc, "children")) == NULL) {
		cJSON_Delete(ids);
		return TW_ERR_NOMEM;
	}
	cc.arr = arr;
	cc.depth = depth;
	cJSON_ArrayForEach(it, ids)
		if (child_row(&cc, it->valuestring) != 0)
			break;
	cJSON_Delete(ids);
	return cc.failed ? TW_ERR_NOMEM : TW_OK;
}

int
twin_doc_build(const struct twin_doc_ctx *dc, const char *id, int depth, cJSON **out,
    uint64_t *version)
{
	struct row_copy rc = { 0 };
	struct reported_ctx rep = { .dc = dc };
	struct desired_ctx des;
	cJSON *doc, *alerts;
	int err;

	*out = NULL;
	if ((err = store_read_twin(dc->db, id, copy_row, &rc)) != TW_OK)
		return err;
	rep.model = rc.row.model != NULL ? model_find(dc->models, rc.row.model) : NULL;
	if ((doc = cJSON_CreateObject()) == NULL || twin_doc_summary(dc, doc, &rc.row) ||
	    (err = twin_children(dc, id, depth, doc)) != TW_OK ||
	    (err = twin_rollup(dc, id, doc)) != TW_OK ||
	    (rep.out = cJSON_AddObjectToObject(doc, "reported")) == NULL ||
	    (err = store_read_reported(dc->db, id, reported_row, &rep)) != TW_OK ||
	    (des.desired = cJSON_AddObjectToObject(doc, "desired")) == NULL ||
	    (des.delta = cJSON_AddObjectToObject(doc, "delta")) == NULL ||
	    (err = store_read_desired(dc->db, id, desired_row, &des)) != TW_OK ||
	    (alerts = cJSON_AddArrayToObject(doc, "alerts")) == NULL ||
	    (err = store_read_alerts(dc->db, id, alert_row, alerts)) != TW_OK) {
		cJSON_Delete(doc);
		return err != TW_OK ? err : TW_ERR_NOMEM;
	}
	if (version != NULL)
		*version = rc.row.version;
	*out = doc;
	return TW_OK;
}


cJSON *
twin_doc_event(const struct twin *t, int64_t now, int stale_factor)
{
	cJSON *o = cJSON_CreateObject(), *rep;

	if (o == NULL || cJSON_AddStringToObject(o, "twin", t->id) == NULL ||
	    cJSON_AddNumberToObject(o, "version", (double)t->version) == NULL ||
	    add_ts_or_null(o, "last_seen_ts", t->last_seen_ts) == NULL ||
	    (rep = cJSON_AddObjectToObject(o, "reported")) == NULL) {
		cJSON_Delete(o);
		return NULL;
	}
	for (uint32_t i = 0; i < t->nprops; i++) {
		const struct prop *p = &t->props[i];
		cJSON *v;

		if (!p->dirty)
			continue;
		/* The same entry as the document's, so a screen can merge it in. */
		v = twin_doc_reported(p->mp, &p->val, p->ts, p->out_of_range,
		    twin_doc_stale(p->mp, p->ts, now, stale_factor));
		if (v == NULL || !cJSON_AddItemToObject(rep, p->name, v)) {
			cJSON_Delete(v);
			cJSON_Delete(o);
			return NULL;
		}
	}
	return o;
}
