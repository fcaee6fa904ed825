/* REST: the twin list, the twin document and history. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "api.h"
#include "clock.h"
#include "err.h"
#include "ingest.h"
#include "model.h"
#include "sync.h"
#include "twin.h"

#define HISTORY_LIMIT_DEFAULT	1000
#define HISTORY_LIMIT_MAX	100000

#define ROLLUP_MAX	10000	/* twins visited for one roll-up */
#define DEPTH_MAX	8


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

/* What building documents needs; one per request. */
struct doc_ctx {
	const struct conf *conf;
	struct model_set *models;	/* referenced for the request */
	struct store *db;
	int64_t now;
};

static int
status_of(const struct doc_ctx *dc, const struct store_twin_row *row)
{
	const struct status_rule rule = {
		dc->conf->stale_factor, dc->conf->offline_factor,
		dc->conf->stale_after_ms, dc->conf->offline_after_ms,
	};

	return twin_status_of(&rule, row->model != NULL ? model_find(dc->models, row->model) :
	    NULL, row->last_seen_ts, dc->now);
}

/* The fields a list entry and a document share. */
static int
twin_summary(const struct doc_ctx *dc, cJSON *o, const struct store_twin_row *row)
{
	if (cJSON_AddStringToObject(o, "id", row->id) == NULL ||
	    cJSON_AddStringToObject(o, "model",
	    row->model != NULL ? row->model : MODEL_ANY_ID) == NULL ||
	    add_str_or_null(o, "parent", row->parent) == NULL ||
	    cJSON_AddStringToObject(o, "status", twin_status_name(status_of(dc, row))) == NULL ||
	    add_ts_or_null(o, "last_seen_ts", row->last_seen_ts) == NULL ||
	    cJSON_AddNumberToObject(o, "version", (double)row->version) == NULL ||
	    cJSON_AddNumberToObject(o, "active_alerts", row->active_alerts) == NULL)
		return 1;
	return 0;
}

static void
doc_ctx_init(struct doc_ctx *dc, struct http_req *req)
{
	dc->conf = req->ctx->conf;
	dc->models = sync_models(req->ctx->sync);
	dc->db = req->db;
	dc->now = clock_now_ms();
}

struct list_ctx {
	struct doc_ctx *dc;
	cJSON *out;
	const char *model;
	int status;		/* -1: any */
	int failed;
};

static int
list_row(void *arg, const struct store_twin_row *row)
{
	struct list_ctx *lc = arg;
	const char *model = row->model != NULL ? row->model : MODEL_ANY_ID;
	cJSON *o;

	/* Status is derived at read time, so it and the model are filtered here. */
	if ((lc->model != NULL && strcmp(lc->model, model) != 0) ||
	    (lc->status >= 0 && status_of(lc->dc, row) != lc->status))
		return 0;
	if ((o = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(lc->out, o) ||
	    twin_summary(lc->dc, o, row)) {
		lc->failed = 1;
		return 1;
	}
	return 0;
}

static int
status_parse(const char *s)
{
	for (int i = TWIN_OFFLINE; i <= TWIN_ONLINE; i++)
		if (strcmp(s, twin_status_name(i)) == 0)
			return i;
	return -1;
}

void
api_twins_list(struct http_req *req, struct http_reply *rep)
{
	struct doc_ctx dc;
	struct list_ctx lc = { .dc = &dc, .model = http_arg(req, "model"), .status = -1 };
	const char *parent = http_arg(req, "parent"), *status = http_arg(req, "status");
	cJSON *doc;

	if (status != NULL && (lc.status = status_parse(status)) < 0) {
		http_error(rep, 400, "bad_request", "status must be online, stale or offline");
		return;
	}
	doc_ctx_init(&dc, req);
	if ((doc = cJSON_CreateObject()) == NULL ||
	    (lc.out = cJSON_AddArrayToObject(doc, "twins")) == NULL ||
	    store_read_twins(req->db, parent, list_row, &lc) != TW_OK || lc.failed) {
		cJSON_Delete(doc);
		http_error(rep, 500, "internal", "cannot read the twins");
	} else {
		http_json(rep, 200, doc);
	}
	model_set_unref(dc.models);
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
	const struct doc_ctx *dc;
	const struct model *model;
	cJSON *out;
};

static int
reported_row(void *arg, const struct store_series_row *row)
{
	struct reported_ctx *rc = arg;
	const struct model_prop *mp = rc->model != NULL ? model_prop(rc->model, row->prop) : NULL;
	int stale = mp != NULL && mp->period_ms > 0 &&
	    rc->dc->now - row->ts > mp->period_ms * rc->dc->conf->stale_factor;
	cJSON *p = cJSON_CreateObject();

	if (p == NULL || !cJSON_AddItemToObject(rc->out, row->prop, p) ||
	    !cJSON_AddItemToObject(p, "value", value_to_json(&row->val)) ||
	    cJSON_AddNumberToObject(p, "ts", (double)row->ts) == NULL ||
	    cJSON_AddBoolToObject(p, "stale", stale) == NULL ||
	    cJSON_AddBoolToObject(p, "out_of_range", row->out_of_range) == NULL ||
	    (mp != NULL && mp->unit != NULL && cJSON_AddStringToObject(p, "unit", mp->unit) == NULL))
		return 1;
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
	    add_ts_or_null(d, "converged_ts", row->converged_ts) == NULL)
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
	const struct doc_ctx *dc;
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
	int st = status_of(r->dc, row);

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
twin_rollup(const struct doc_ctx *dc, const char *id, cJSON *doc)
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

static int twin_document(const struct doc_ctx *dc, const char *id, int depth, cJSON **out,
    uint64_t *version);

struct children_ctx {
	const struct doc_ctx *dc;
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
		cc->failed = twin_document(cc->dc, id, cc->depth - 1, &c, NULL) != TW_OK;
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
twin_children(const struct doc_ctx *dc, const char *id, int depth, cJSON *doc)
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

static int
twin_document(const struct doc_ctx *dc, const char *id, int depth, cJSON **out,
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
	if ((doc = cJSON_CreateObject()) == NULL || twin_summary(dc, doc, &rc.row) ||
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

/* Checks the {id} segment; fills `rep` and returns NULL when it is bad. */
static const char *
twin_id_param(struct http_req *req, struct http_reply *rep)
{
	const char *id = req->params[0];

	if (!ingest_id_valid(id, strlen(id))) {
		http_error(rep, 400, "bad_request",
		    "'%.140s' is not a twin id ([A-Za-z0-9_.:-], 1 to 128 characters)", id);
		return NULL;
	}
	return id;
}

/* Replies with the document of `id`, its version as ETag. */
static void
reply_document(struct http_req *req, struct http_reply *rep, const char *id, int depth)
{
	struct doc_ctx dc;
	uint64_t version = 0;
	cJSON *doc;
	int rc;

	doc_ctx_init(&dc, req);
	if ((rc = store_snapshot_begin(req->db)) == TW_OK)
		rc = twin_document(&dc, id, depth, &doc, &version);
	store_snapshot_end(req->db);
	model_set_unref(dc.models);
	if (rc == TW_ERR_NOTFOUND) {
		http_error(rep, 404, "not_found", "no twin '%s'", id);
		return;
	}
	if (rc != TW_OK) {
		http_error(rep, 500, "internal", "cannot read twin '%s'", id);
		return;
	}
	snprintf(rep->etag, sizeof(rep->etag), "\"%llu\"", (unsigned long long)version);
	http_json(rep, 200, doc);
}

void
api_twins_get(struct http_req *req, struct http_reply *rep)
{
	const char *id, *d = http_arg(req, "depth");
	long depth = 0;
	char *end;

	if ((id = twin_id_param(req, rep)) == NULL)
		return;
	if (d != NULL) {
		depth = strtol(d, &end, 10);
		if (*end != '\0' || end == d || depth < 0 || depth > DEPTH_MAX) {
			http_error(rep, 400, "bad_request", "depth must be 0 to %d", DEPTH_MAX);
			return;
		}
	}
	reply_document(req, rep, id, (int)depth);
}

/* If-Match: "42", W/"42" or 42. Returns 0 and the version, or -1. */
static int
if_match_parse(const char *h, uint64_t *v)
{
	char *end;

	if (strncmp(h, "W/", 2) == 0)
		h += 2;
	if (*h == '"')
		h++;
	if (*h < '0' || *h > '9')
		return -1;
	*v = strtoull(h, &end, 10);
	if (*end == '"')
		end++;
	return *end == '\0' ? 0 : -1;
}

void
api_twins_desired(struct http_req *req, struct http_reply *rep)
{
	struct sync_req sr = { .type = SYNC_REQ_DESIRED };
	const char *id, *im;
	cJSON *patch;

	if ((id = twin_id_param(req, rep)) == NULL)
		return;
	sr.twin = id;
	/* "If-Match: *" matches any current version (RFC 7232): no condition. */
	if ((im = http_header(req, "If-Match")) != NULL && strcmp(im, "*") != 0) {
		if (if_match_parse(im, &sr.if_match) != 0) {
			http_error(rep, 400, "bad_request", "If-Match must be a version, such as \"42\"");
			return;
		}
		sr.has_if_match = 1;
	}
	patch = req->body != NULL ? cJSON_ParseWithLength(req->body, req->body_len) : NULL;
	if (!cJSON_IsObject(patch) || patch->child == NULL) {
		cJSON_Delete(patch);
		http_error(rep, 400, "bad_request",
		    "the body must be a JSON object of properties, such as {\"speed\":1200}");
		return;
	}
	sr.patch = patch;
	sync_request(req->ctx->sync, &sr);
	cJSON_Delete(patch);
	if (sr.status != 200) {
		http_error(rep, sr.status, sr.code, "%s", sr.message);
		if (sr.status == 412)
			snprintf(rep->etag, sizeof(rep->etag), "\"%llu\"",
			    (unsigned long long)sr.version);
		return;
	}
	reply_document(req, rep, id, 0);
}

/* Parses an optional time argument; returns 0, or fills `rep` and returns -1. */
static int
time_arg(struct http_req *req, struct http_reply *rep, const char *name, int64_t now,
    int64_t *out)
{
	const char *v = http_arg(req, name);

	if (v == NULL)
		return 0;
	if (clock_parse_time(v, now, out) != TW_OK) {
		http_error(rep, 400, "bad_request", "%s: '%.64s' is not a time (epoch ms, "
		    "RFC 3339, now, or relative such as -15m)", name, v);
		return -1;
	}
	return 0;
}

struct history_ctx {
	cJSON *points;
	const char *agg;	/* NULL: all of min, max, avg, count */
	int failed;
};

static int
point_row(void *arg, const struct store_point *p)
{
	struct history_ctx *hc = arg;
	cJSON *o = cJSON_CreateObject();

	if (o == NULL || !cJSON_AddItemToArray(hc->points, o) ||
	    cJSON_AddNumberToObject(o, "ts", (double)p->ts) == NULL ||
	    !cJSON_AddItemToObject(o, "value", value_to_json(&p->val))) {
		hc->failed = 1;
		return 1;
	}
	return 0;
}

static int
bucket_row(void *arg, const struct store_bucket *b)
{
	struct history_ctx *hc = arg;
	const char *agg = hc->agg;
	cJSON *o = cJSON_CreateObject();
	int bad = o == NULL || !cJSON_AddItemToArray(hc->points, o) ||
	    cJSON_AddNumberToObject(o, "ts", (double)b->ts) == NULL;

	if (!bad && (agg == NULL || strcmp(agg, "min") == 0))
		bad = cJSON_AddNumberToObject(o, "min", b->min) == NULL;
	if (!bad && (agg == NULL || strcmp(agg, "max") == 0))
		bad = cJSON_AddNumberToObject(o, "max", b->max) == NULL;
	if (!bad && (agg == NULL || strcmp(agg, "avg") == 0))
		bad = cJSON_AddNumberToObject(o, "avg", b->avg) == NULL;
	if (!bad && (agg == NULL || strcmp(agg, "count") == 0))
		bad = cJSON_AddNumberToObject(o, "count", (double)b->count) == NULL;
	hc->failed |= bad;
	return bad;
}

void
api_twins_history(struct http_req *req, struct http_reply *rep)
{
	struct history_ctx hc = { 0 };
	const char *id, *prop = http_arg(req, "property"), *lim = http_arg(req, "limit");
	const char *step = http_arg(req, "step");
	int64_t now = clock_now_ms(), from = -1, to = INT64_MAX, step_ms = 0;
	long limit = HISTORY_LIMIT_DEFAULT;
	char *end;
	int rc;

	if ((id = twin_id_param(req, rep)) == NULL)
		return;
	if (prop == NULL || *prop == '\0') {
		http_error(rep, 400, "bad_request", "the property parameter is required");
		return;
	}
	if (time_arg(req, rep, "from", now, &from) || time_arg(req, rep, "to", now, &to))
		return;
	if (lim != NULL) {
		limit = strtol(lim, &end, 10);
		if (*end != '\0' || end == lim || limit < 1 || limit > HISTORY_LIMIT_MAX) {
			http_error(rep, 400, "bad_request", "limit must be 1 to %d",
			    HISTORY_LIMIT_MAX);
			return;
		}
	}
	if (step != NULL && (clock_parse_duration(step, &step_ms) != TW_OK || step_ms < 1)) {
		http_error(rep, 400, "bad_request", "step: '%.32s' is not a duration", step);
		return;
	}
	hc.agg = http_arg(req, "agg");
	if (hc.agg != NULL && strcmp(hc.agg, "min") != 0 && strcmp(hc.agg, "max") != 0 &&
	    strcmp(hc.agg, "avg") != 0 && strcmp(hc.agg, "count") != 0) {
		http_error(rep, 400, "bad_request", "agg must be min, max, avg or count");
		return;
	}
	if ((hc.points = cJSON_CreateArray()) == NULL) {
		http_error(rep, 500, "internal", "out of memory");
		return;
	}
	if (step_ms > 0)
		rc = store_read_buckets(req->db, id, prop, from < 0 ? 0 : from, to, step_ms,
		    (int)limit, bucket_row, &hc);
	else
		/* Without from, the newest points are what anyone looking wants. */
		rc = store_read_history(req->db, id, prop, from < 0 ? 0 : from, to, (int)limit,
		    from < 0, point_row, &hc);
	if (rc == TW_ERR_NOTFOUND) {
		cJSON_Delete(hc.points);
		http_error(rep, 404, "not_found", "twin '%s' has no property '%.128s'", id, prop);
		return;
	}
	if (rc != TW_OK || hc.failed) {
		cJSON_Delete(hc.points);
		http_error(rep, 500, "internal", "cannot read history");
		return;
	}
	if (cJSON_GetArraySize(hc.points) == limit) {
		snprintf(rep->header_name, sizeof(rep->header_name), "X-Truncated");
		snprintf(rep->header_value, sizeof(rep->header_value), "true");
	}
	http_json(rep, 200, hc.points);
}
