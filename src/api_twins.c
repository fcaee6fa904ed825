/* REST: the twin list, the twin document, desired state; the checks of a twin id, a time and a property list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "names.h"
#include "api.h"
#include "clock.h"
#include "err.h"
#include "model.h"
#include "engine.h"
#include "request.h"
#include "twin_doc.h"
#include "twin.h"


#define DEPTH_MAX	8


static void
doc_ctx_init(struct twin_doc_ctx *dc, struct http_req *req)
{
	dc->conf = req->ctx->conf;
	dc->models = engine_models(req->ctx->engine);
	dc->db = req->db;
	dc->now = clock_now_ms();
}

static void
doc_ctx_cleanup(struct twin_doc_ctx *dc)
{
	model_set_unref((struct model_set *)dc->models);
}

struct list_ctx {
	struct twin_doc_ctx *dc;
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
	    (lc->status >= 0 && twin_doc_status(lc->dc, row) != lc->status))
		return 0;
	if ((o = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(lc->out, o) ||
	    twin_doc_summary(lc->dc, o, row)) {
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
	struct twin_doc_ctx dc;
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
	doc_ctx_cleanup(&dc);
}

const char *
api_twin_id(struct http_req *req, struct http_reply *rep)
{
	const char *id = req->params[0];

	if (!name_twin_valid(id, strlen(id))) {
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
	struct twin_doc_ctx dc;
	uint64_t version = 0;
	cJSON *doc;
	int rc;

	doc_ctx_init(&dc, req);
	if ((rc = store_snapshot_begin(req->db)) == TW_OK)
		rc = twin_doc_build(&dc, id, depth, &doc, &version);
	store_snapshot_end(req->db);
	doc_ctx_cleanup(&dc);
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

	if ((id = api_twin_id(req, rep)) == NULL)
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
	struct request sr = { .type = REQ_DESIRED };
	const char *id, *im;
	cJSON *patch;

	if ((id = api_twin_id(req, rep)) == NULL)
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
	snprintf(sr.who, sizeof(sr.who), "%s", req->who != NULL ? req->who : "");
	engine_request(req->ctx->engine, &sr);
	cJSON_Delete(patch);
	cJSON_Delete(sr.result);
	if (sr.err != TW_OK) {
		http_request_error(rep, &sr);
		if (sr.err == TW_ERR_CONFLICT)
			snprintf(rep->etag, sizeof(rep->etag), "\"%llu\"",
			    (unsigned long long)sr.version);
		return;
	}
	reply_document(req, rep, id, 0);
}

int
api_time_arg(struct http_req *req, struct http_reply *rep, const char *name, int64_t now,
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

int
api_props_arg(struct http_req *req, struct http_reply *rep,
    char (*props)[PROP_NAME_MAX + 1], int *nprops)
{
	const char *v = http_arg(req, "property");

	*nprops = 0;
	while (v != NULL && *v != '\0') {
		size_t n = strcspn(v, ",");

		if (*nprops == API_PROPS_MAX || n == 0 || n > PROP_NAME_MAX || !name_prop_valid(v, n)) {
			http_error(rep, 400, "bad_request", "property: '%.*s' is not a property name "
			    "(up to %d, separated by commas)", (int)(n > 64 ? 64 : n), v, API_PROPS_MAX);
			return -1;
		}
		memcpy(props[*nprops], v, n);
		props[*nprops][n] = '\0';
		for (int i = 0; i < *nprops; i++)
			if (strcmp(props[i], props[*nprops]) == 0) {
				http_error(rep, 400, "bad_request", "property: '%s' is named twice",
				    props[i]);
				return -1;
			}
		(*nprops)++;
		v += n;
		if (*v == ',')
			v++;
	}
	if (*nprops == 0) {
		http_error(rep, 400, "bad_request", "the property parameter is required");
		return -1;
	}
	return 0;
}
