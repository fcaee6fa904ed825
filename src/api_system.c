/* REST: health and metrics, for supervisors and Prometheus; who am I; reload. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "api.h"
#include "metrics.h"
#include "ring.h"
#include "engine.h"
#include "tokens.h"
#include "watchdog.h"

void
api_system_health(struct http_req *req, struct http_reply *rep)
{
	const char *reason = engine_health(req->ctx->engine);
	cJSON *doc;

	watchdog_test_hang("TWIND_TEST_HANG_HTTP", "http");
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

/* What the caller's token may do: the page shows only the buttons that will work. */
void
api_system_whoami(struct http_req *req, struct http_reply *rep)
{
	static const unsigned bits[] = { ROLE_READ, ROLE_OPERATE, ROLE_COMMAND, ROLE_ADMIN };
	cJSON *doc = cJSON_CreateObject(), *roles;
	int ok = doc != NULL && (roles = cJSON_AddArrayToObject(doc, "roles")) != NULL &&
	    (req->who != NULL ? cJSON_AddStringToObject(doc, "name", req->who) :
	    cJSON_AddNullToObject(doc, "name")) != NULL &&
	    cJSON_AddBoolToObject(doc, "tokens", req->ctx->conf->http_tokens[0] != '\0') != NULL;

	for (size_t i = 0; ok && i < sizeof(bits) / sizeof(bits[0]); i++)
		if ((req->roles & bits[i]) != 0)
			ok = cJSON_AddItemToArray(roles, cJSON_CreateString(tokens_role_name(bits[i])));
	if (!ok) {
		cJSON_Delete(doc);
		http_error(rep, 500, "internal", "out of memory");
		return;
	}
	http_json(rep, 200, doc);
}

/*
 * The same as SIGHUP, which main handles: files are read again and swapped
 * in only when all are valid. The answer is that it was asked; the log and
 * GET /api/v1/rules say what came of it.
 */
void
api_system_reload(struct http_req *req, struct http_reply *rep)
{
	cJSON *doc = cJSON_CreateObject();

	(void)req;
	if (kill(getpid(), SIGHUP) != 0 || doc == NULL ||
	    cJSON_AddStringToObject(doc, "status", "reload requested") == NULL) {
		cJSON_Delete(doc);
		http_error(rep, 500, "internal", "cannot ask for a reload");
		return;
	}
	http_json(rep, 202, doc);
}
