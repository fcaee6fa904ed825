/* REST: health and metrics, for supervisors and Prometheus. */
#include <stdlib.h>

#include "api.h"
#include "metrics.h"
#include "ring.h"
#include "engine.h"

void
api_system_health(struct http_req *req, struct http_reply *rep)
{
	const char *reason = engine_health(req->ctx->engine);
	cJSON *doc;

	if ((doc = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(doc, "status", reason != NULL ? "unavailable" : "ok") == NULL ||
	    (reason != NULL && cJSON_AddStringToObject(doc, "reason", reason) == NULL)) {
		cJSON_Delete(doc);
		http_error(rep, 500, "internal", "out of memory");
		return;
	}
	http_json(rep, reason != NULL ? 503 : 200, doc);
}

void
api_system_metrics(struct http_req *req, struct http_reply *rep)
{
	size_t len;
	char *text = metrics_render(&len, ring_used(req->ctx->ring),
	    ring_capacity(req->ctx->ring));

	if (text == NULL) {
		http_error(rep, 500, "internal", "out of memory");
		return;
	}
	rep->status = 200;
	rep->body = text;
	rep->len = len;
	rep->type = "text/plain; version=0.0.4";
}
