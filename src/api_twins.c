/* REST: the twin list, the twin document and history. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "err.h"
#include "ingest.h"

#define HISTORY_LIMIT_DEFAULT	1000
#define HISTORY_LIMIT_MAX	100000

static const char *
twin_status(const struct conf *c, int64_t last_seen_ts, int64_t now)
{
	if (last_seen_ts <= 0 || now - last_seen_ts > c->offline_after_ms)
		return "offline";
	if (now - last_seen_ts > c->stale_after_ms)
		return "stale";
	return "online";
}

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

struct twin_ctx {
	const struct conf *conf;
	int64_t now;
	cJSON *out;		/* the array (list) or the object (document) to fill */
	int failed;
};

/* The fields a list entry and a document share. */
static int
twin_summary(struct twin_ctx *tc, cJSON *o, const struct store_twin_row *row)
{
	if (cJSON_AddStringToObject(o, "id", row->id) == NULL ||
	    add_str_or_null(o, "model", row->model) == NULL ||
	    add_str_or_null(o, "parent", row->parent) == NULL ||
	    cJSON_AddStringToObject(o, "status",
	    twin_status(tc->conf, row->last_seen_ts, tc->now)) == NULL ||
	    add_ts_or_null(o, "last_seen_ts", row->last_seen_ts) == NULL ||
	    cJSON_AddNumberToObject(o, "version", (double)row->version) == NULL)
		return 1;
	return 0;
}

static int
list_row(void *arg, const struct store_twin_row *row)
{
	struct twin_ctx *tc = arg;
	cJSON *o = cJSON_CreateObject();

	if (o == NULL || !cJSON_AddItemToArray(tc->out, o) || twin_summary(tc, o, row)) {
		tc->failed = 1;
		return 1;
	}
	return 0;
}

void
api_twins_list(struct http_req *req, struct http_reply *rep)
{
	struct twin_ctx tc = { .conf = req->ctx->conf, .now = clock_now_ms() };
	const char *parent = http_arg(req, "parent");
	const char *status = http_arg(req, "status");
	cJSON *doc = cJSON_CreateObject();

	if (doc == NULL || (tc.out = cJSON_AddArrayToObject(doc, "twins")) == NULL) {
		cJSON_Delete(doc);
		http_error(rep, 500, "internal", "out of memory");
		return;
	}
	if (status != NULL && strcmp(status, "online") != 0 && strcmp(status, "stale") != 0 &&
	    strcmp(status, "offline") != 0) {
		cJSON_Delete(doc);
		http_error(rep, 400, "bad_request", "status must be online, stale or offline");
		return;
	}
	if (store_read_twins(req->db, parent, list_row, &tc) != TW_OK || tc.failed) {
		cJSON_Delete(doc);
		http_error(rep, 500, "internal", "cannot read the twins");
		return;
	}
	if (status != NULL) {
		/* Status is derived from last_seen_ts at read time, so it is filtered here. */
		cJSON *t = tc.out->child, *next;

		for (; t != NULL; t = next) {
			next = t->next;
			if (strcmp(cJSON_GetObjectItemCaseSensitive(t, "status")->valuestring,
			    status) != 0)
				cJSON_Delete(cJSON_DetachItemViaPointer(tc.out, t));
		}
	}
	http_json(rep, 200, doc);
}

static int
doc_row(void *arg, const struct store_twin_row *row)
{
	struct twin_ctx *tc = arg;

	tc->failed = twin_summary(tc, tc->out, row);
	return 0;
}

static int
child_row(void *arg, const char *child)
{
	return cJSON_AddItemToArray(arg, cJSON_CreateString(child)) ? 0 : 1;
}

static int
reported_row(void *arg, const struct store_series_row *row)
{
	cJSON *p = cJSON_CreateObject();

	if (p == NULL || !cJSON_AddItemToObject(arg, row->prop, p) ||
	    !cJSON_AddItemToObject(p, "value", value_to_json(&row->val)) ||
	    cJSON_AddNumberToObject(p, "ts", (double)row->ts) == NULL)
		return 1;
	return 0;
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

void
api_twins_get(struct http_req *req, struct http_reply *rep)
{
	struct twin_ctx tc = { .conf = req->ctx->conf, .now = clock_now_ms() };
	cJSON *children, *reported;
	const char *id;
	int rc;

	if ((id = twin_id_param(req, rep)) == NULL)
		return;
	if ((tc.out = cJSON_CreateObject()) == NULL) {
		http_error(rep, 500, "internal", "out of memory");
		return;
	}
	rc = store_read_twin(req->db, id, doc_row, &tc);
	if (rc == TW_ERR_NOTFOUND) {
		cJSON_Delete(tc.out);
		http_error(rep, 404, "not_found", "no twin '%s'", id);
		return;
	}
	if (rc != TW_OK || tc.failed ||
	    (children = cJSON_AddArrayToObject(tc.out, "children")) == NULL ||
	    store_read_children(req->db, id, child_row, children) != TW_OK ||
	    (reported = cJSON_AddObjectToObject(tc.out, "reported")) == NULL ||
	    store_read_reported(req->db, id, reported_row, reported) != TW_OK) {
		cJSON_Delete(tc.out);
		http_error(rep, 500, "internal", "cannot read twin '%s'", id);
		return;
	}
	snprintf(rep->etag, sizeof(rep->etag), "\"%.0f\"",
	    cJSON_GetObjectItemCaseSensitive(tc.out, "version")->valuedouble);
	http_json(rep, 200, tc.out);
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
