/* REST: what-if, a dry run of the rules on copies of a twin and its children (whatif.c). */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "engine.h"
#include "err.h"
#include "request.h"
#include "whatif.h"

#define DEPTH_MAX	8

void
api_twins_simulate(struct http_req *req, struct http_reply *rep)
{
	struct request sr = { .type = REQ_SIMULATE };
	const char *d = http_arg(req, "depth");
	cJSON *body = NULL;
	char err[160], *end;
	long depth = 0;

	if ((sr.twin = api_twin_id(req, rep)) == NULL)
		return;
	if (d != NULL && ((depth = strtol(d, &end, 10)) < 0 || depth > DEPTH_MAX ||
	    *end != '\0' || end == d)) {
		http_error(rep, 400, "bad_request", "depth must be 0 to %d", DEPTH_MAX);
		return;
	}
	body = req->body != NULL ? cJSON_ParseWithLength(req->body, req->body_len) : NULL;
	if (body == NULL) {
		http_error(rep, 400, "bad_request", "the body must be JSON: {\"reported\", "
		    "\"desired\", \"at\", \"steps\"}");
		return;
	}
	if (whatif_check(body, err, sizeof(err)) != 0) {
		http_error(rep, 400, "bad_request", "%s", err);
		cJSON_Delete(body);
		return;
	}
	sr.patch = body;
	sr.depth = (int)depth;
	snprintf(sr.who, sizeof(sr.who), "%s", req->who != NULL ? req->who : "");
	engine_request(req->ctx->engine, &sr);
	if (sr.err != TW_OK)
		http_request_error(rep, &sr);
	else
		http_json(rep, 200, sr.result);
	if (sr.err != TW_OK)
		cJSON_Delete(sr.result);
	cJSON_Delete(body);
}
