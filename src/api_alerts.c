/* REST: alerts and commands, listed from the store, changed through the engine. */
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "names.h"
#include "api.h"
#include "clock.h"
#include "err.h"
#include "engine.h"
#include "request.h"

#define LIST_LIMIT	1000

static int
add_alert(void *arg, const struct store_alert_row *a)
{
	return cJSON_AddItemToArray(arg, alert_json(a)) ? 0 : 1;
}

static int
one_of(const char *v, const char *const *set)
{
	for (; *set != NULL; set++)
		if (strcmp(v, *set) == 0)
			return 1;
	return 0;
}

void
api_alerts_list(struct http_req *req, struct http_reply *rep)
{
	static const char *const states[] = { "active", "cleared", "unacknowledged", "shelved", NULL };
	static const char *const severities[] = { "info", "warning", "major", "critical", NULL };
	const char *twin = http_arg(req, "twin"), *state = http_arg(req, "state");
	const char *severity = http_arg(req, "severity");
	cJSON *doc, *arr;

	if (state != NULL && !one_of(state, states)) {
		http_error(rep, 400, "bad_request", "state must be active, cleared, unacknowledged "
		    "or shelved");
		return;
	}
	if (severity != NULL && !one_of(severity, severities)) {
		http_error(rep, 400, "bad_request", "severity must be info, warning, major or critical");
		return;
	}
	if ((doc = cJSON_CreateObject()) == NULL ||
	    (arr = cJSON_AddArrayToObject(doc, "alerts")) == NULL ||
	    store_read_alert_list(req->db, twin, severity, state, clock_now_ms(), LIST_LIMIT,
	    add_alert, arr) != TW_OK) {
		cJSON_Delete(doc);
		http_error(rep, 500, "internal", "cannot read the alerts");
		return;
	}
	http_json(rep, 200, doc);
}

/* Sends a request to the engine and replies with its result (status `ok`) or its error. */
static void
reply_request(struct http_req *req, struct http_reply *rep, struct request *sr, int ok)
{
	snprintf(sr->who, sizeof(sr->who), "%s", req->who != NULL ? req->who : "");
	engine_request(req->ctx->engine, sr);
	if (sr->err != TW_OK) {
		http_request_error(rep, sr);
		cJSON_Delete(sr->result);
		return;
	}
	http_json(rep, ok, sr->result);
}

static int
alert_id_param(struct http_req *req, struct http_reply *rep, int64_t *id)
{
	char *end;
	long long v = strtoll(req->params[0], &end, 10);

	if (*end != '\0' || end == req->params[0] || v <= 0) {
		http_error(rep, 400, "bad_request", "'%.32s' is not an alert id", req->params[0]);
		return -1;
	}
	*id = v;
	return 0;
}

void
api_alerts_ack(struct http_req *req, struct http_reply *rep)
{
	struct request sr = { .type = REQ_ALERT_ACK };

	if (alert_id_param(req, rep, &sr.alert_id) == 0)
		reply_request(req, rep, &sr, 200);
}

void
api_alerts_shelve(struct http_req *req, struct http_reply *rep)
{
	struct request sr = { .type = REQ_ALERT_SHELVE };
	cJSON *body = req->body != NULL ? cJSON_ParseWithLength(req->body, req->body_len) : NULL;
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, "for");

	if (alert_id_param(req, rep, &sr.alert_id) != 0) {
		cJSON_Delete(body);
		return;
	}
	if (!cJSON_IsString(f) || clock_parse_duration(f->valuestring, &sr.shelve_ms) != TW_OK ||
	    sr.shelve_ms <= 0) {
		cJSON_Delete(body);
		http_error(rep, 400, "bad_request", "the body must be {\"for\": a duration such as \"1h\"}");
		return;
	}
	/* ISA-18.2: shelving is temporary, never a way to silence an alarm for good. */
	if (sr.shelve_ms > req->ctx->conf->shelve_max_ms) {
		cJSON_Delete(body);
		http_error(rep, 422, "shelve_too_long", "shelving is temporary: at most %lld minutes "
		    "([alerts] shelve_max)", (long long)(req->ctx->conf->shelve_max_ms / 60000));
		return;
	}
	cJSON_Delete(body);
	reply_request(req, rep, &sr, 200);
}

void
api_commands_post(struct http_req *req, struct http_reply *rep)
{
	struct request sr = { .type = REQ_COMMAND, .twin = req->params[0] };
	cJSON *body = req->body != NULL ? cJSON_ParseWithLength(req->body, req->body_len) : NULL;
	const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(body, "command");
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(body, "params");

	if (!name_twin_valid(sr.twin, strlen(sr.twin))) {
		http_error(rep, 400, "bad_request", "'%.140s' is not a twin id", sr.twin);
	} else if (!cJSON_IsObject(body) || !cJSON_IsString(cmd) ||
	    !name_twin_valid(cmd->valuestring, strlen(cmd->valuestring)) ||
	    (params != NULL && !cJSON_IsObject(params))) {
		http_error(rep, 400, "bad_request", "the body must be {\"command\": a name, "
		    "\"params\": an object (optional)}");
	} else {
		sr.command = cmd->valuestring;
		sr.params = params;
		reply_request(req, rep, &sr, 202);
	}
	cJSON_Delete(body);
}

static int
add_command(void *arg, const struct store_command_row *c)
{
	return cJSON_AddItemToArray(arg, alert_command_json(c)) ? 0 : 1;
}

void
api_commands_list(struct http_req *req, struct http_reply *rep)
{
	static const char *const statuses[] = { "pending", "sent", "done", "rejected", "failed",
	    "timed_out", "expired", "refused", NULL };
	const char *twin = http_arg(req, "twin"), *status = http_arg(req, "status");
	cJSON *doc, *arr;

	if (status != NULL && !one_of(status, statuses)) {
		http_error(rep, 400, "bad_request", "status must be one of pending, sent, done, "
		    "rejected, failed, timed_out, expired, refused");
		return;
	}
	if ((doc = cJSON_CreateObject()) == NULL ||
	    (arr = cJSON_AddArrayToObject(doc, "commands")) == NULL ||
	    store_read_commands(req->db, twin, status, LIST_LIMIT, add_command, arr) != TW_OK) {
		cJSON_Delete(doc);
		http_error(rep, 500, "internal", "cannot read the commands");
		return;
	}
	http_json(rep, 200, doc);
}
