/* REST: POST /api/v1/rules/test, a rule replayed over stored history (backtest.c). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "backtest.h"
#include "clock.h"
#include "engine.h"
#include "err.h"

#define GLOB_MAX	128

/* One backtest at a time: each may take seconds of one of the gateway's few cores. */
static atomic_flag busy = ATOMIC_FLAG_INIT;

/* A time in the body: epoch ms, or a string as the query parameters take it. 0 or -1. */
static int
time_of(const cJSON *v, int64_t now, int64_t *ms)
{
	if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e15) {
		*ms = (int64_t)v->valuedouble;
		return 0;
	}
	/* The same range as a number: the replay adds to it. */
	return cJSON_IsString(v) && clock_parse_time(v->valuestring, now, ms) == TW_OK &&
	    *ms >= 0 && *ms < 1000000000000000LL ? 0 : -1;
}

/* The rule to replay: the body's own (compiled here), or the live one by name. */
static struct rule_set *
rule_of(const cJSON *body, struct http_req *req, struct http_reply *rep, const struct rule **r)
{
	const cJSON *rule = cJSON_GetObjectItemCaseSensitive(body, "rule");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name");
	struct rule_set *set;
	char *msg = NULL, *nl;
	size_t mlen = 0;
	cJSON *arr;
	FILE *err;

	if ((rule != NULL) == (name != NULL)) {
		http_error(rep, 400, "bad_request", "give \"rule\" (a rule as in the rules file) "
		    "or \"name\" (a rule in force), not both");
		return NULL;
	}
	if (name != NULL) {
		set = engine_rules(req->ctx->engine);
		for (int i = 0; cJSON_IsString(name) && i < set->n; i++)
			if (strcmp(set->v[i].name, name->valuestring) == 0) {
				*r = &set->v[i];
				return set;
			}
		rules_unref(set);
		http_error(rep, 404, "not_found", "no rule '%.128s' in force",
		    cJSON_IsString(name) ? name->valuestring : "");
		return NULL;
	}
	if ((err = open_memstream(&msg, &mlen)) == NULL || (arr = cJSON_CreateArray()) == NULL) {
		if (err != NULL)
			fclose(err);
		free(msg);
		http_error(rep, 500, "internal", "out of memory");
		return NULL;
	}
	/* Borrowed into a one-rule array for the rules parser, then given back. */
	cJSON_AddItemReferenceToArray(arr, (cJSON *)rule);
	set = rules_from_json(arr, "rule", err);
	cJSON_Delete(arr);
	fclose(err);
	if (set == NULL) {
		if (msg != NULL && (nl = strchr(msg, '\n')) != NULL)
			*nl = '\0';
		http_error(rep, 400, "bad_rule", "%s", msg != NULL && *msg ? msg : "out of memory");
		free(msg);
		return NULL;
	}
	free(msg);
	*r = &set->v[0];
	return set;
}

/* from, to and twins of the body into `ask`; 0, or -1 after the answer. */
static int
range_of(const cJSON *body, struct http_reply *rep, struct backtest_ask *ask)
{
	const cJSON *from = cJSON_GetObjectItemCaseSensitive(body, "from");
	const cJSON *to = cJSON_GetObjectItemCaseSensitive(body, "to");
	const cJSON *twins = cJSON_GetObjectItemCaseSensitive(body, "twins");
	int64_t now = clock_now_ms();

	ask->to = now;
	if (from == NULL || time_of(from, now, &ask->from) != 0 ||
	    (to != NULL && time_of(to, now, &ask->to) != 0)) {
		http_error(rep, 400, "bad_request", "from (and to, default now) must be epoch ms, "
		    "RFC 3339, \"now\" or relative such as \"-7d\"");
		return -1;
	}
	if (ask->from > ask->to) {
		http_error(rep, 400, "bad_request", "from is after to");
		return -1;
	}
	if (twins != NULL && (!cJSON_IsString(twins) || twins->valuestring[0] == '\0' ||
	    strlen(twins->valuestring) > GLOB_MAX)) {
		http_error(rep, 400, "bad_request", "twins must be a glob over twin ids of at most "
		    "%d characters", GLOB_MAX);
		return -1;
	}
	ask->twins = twins != NULL ? twins->valuestring : NULL;
	return 0;
}

/* Only what the rule reads is replayed: it must read something, and not the whole twin. */
static int
replayable(const struct rule *r, struct http_reply *rep)
{
	const struct expr_refs *w = expr_refs(r->when), *c = r->clear ? expr_refs(r->clear) : NULL;

	if (w->nprops == 0 && (c == NULL || c->nprops == 0)) {
		http_error(rep, 400, "bad_rule", "rule %s reads no property: a backtest replays "
		    "the stored readings of the properties a rule reads", r->name);
		return 0;
	}
	if (w->uses_age_twin || (c != NULL && c->uses_age_twin)) {
		http_error(rep, 400, "bad_rule", "rule %s uses age() of the whole twin, which "
		    "needs every property's history; a backtest takes age(p)", r->name);
		return 0;
	}
	return 1;
}

static void
run(struct http_req *req, struct http_reply *rep, const cJSON *body)
{
	struct backtest_ask ask = { .points_max = req->ctx->conf->backtest_max_points,
	    .time_max_ms = req->ctx->conf->backtest_max_time_ms };
	struct rule_set *set;
	char why[256];
	cJSON *out;
	int rc;

	if (range_of(body, rep, &ask) != 0 || (set = rule_of(body, req, rep, &ask.rule)) == NULL)
		return;
	if (!replayable(ask.rule, rep)) {
		rules_unref(set);
		return;
	}
	ask.models = engine_models(req->ctx->engine);
	rc = backtest_run(&ask, req->db, &out, why, sizeof(why));
	model_set_unref((struct model_set *)ask.models);
	rules_unref(set);
	if (rc == TW_OK)
		http_json(rep, 200, out);
	else if (rc == TW_ERR_FULL)
		http_error(rep, 413, "too_large", "%s", why);
	else if (rc == TW_ERR_NOMEM)
		http_error(rep, 500, "internal", "out of memory");
	else
		http_error(rep, 503, "unavailable", "the database cannot be read");
}

void
api_rules_test(struct http_req *req, struct http_reply *rep)
{
	cJSON *body = req->body != NULL ? cJSON_ParseWithLength(req->body, req->body_len) : NULL;

	if (!cJSON_IsObject(body)) {
		http_error(rep, 400, "bad_request", "the body must be a JSON object: {\"rule\" or "
		    "\"name\", \"twins\", \"from\", \"to\"}");
	} else if (req->db == NULL) {
		http_error(rep, 503, "unavailable", "the database cannot be read");
	} else if (atomic_flag_test_and_set(&busy)) {
		http_error(rep, 429, "busy", "another backtest is running; one runs at a time");
	} else {
		run(req, rep, body);
		atomic_flag_clear(&busy);
	}
	cJSON_Delete(body);
}
