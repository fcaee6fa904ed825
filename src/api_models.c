/* REST: the models and rules in force, as twind understood them. */
#include "api.h"
#include "model.h"
#include "rules.h"
#include "engine.h"

static cJSON *
prop_json(const struct model_prop *p)
{
	static const char *const schemas[] = { "", "number", "boolean", "string" };
	cJSON *o = cJSON_CreateObject();

	if (o == NULL ||
	    cJSON_AddStringToObject(o, "name", p->name) == NULL ||
	    cJSON_AddStringToObject(o, "kind",
	    p->kind == MODEL_PROPERTY ? "Property" : "Telemetry") == NULL ||
	    cJSON_AddStringToObject(o, "schema", p->integer ? "integer" : schemas[p->schema]) == NULL ||
	    cJSON_AddBoolToObject(o, "writable", p->writable) == NULL ||
	    (p->unit != NULL && cJSON_AddStringToObject(o, "unit", p->unit) == NULL) ||
	    (p->has_min && cJSON_AddNumberToObject(o, "minimum", p->min) == NULL) ||
	    (p->has_max && cJSON_AddNumberToObject(o, "maximum", p->max) == NULL) ||
	    (p->period_ms > 0 && cJSON_AddNumberToObject(o, "period_ms", (double)p->period_ms) == NULL) ||
	    (p->writable && cJSON_AddNumberToObject(o, "tolerance", p->tolerance) == NULL) ||
	    (p->converge_ms > 0 &&
	    cJSON_AddNumberToObject(o, "convergence_timeout_ms", (double)p->converge_ms) == NULL)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *
model_json(const struct model *m)
{
	cJSON *o = cJSON_CreateObject(), *props, *cmds, *rels, *r;

	if (o == NULL || cJSON_AddStringToObject(o, "id", m->id) == NULL ||
	    cJSON_AddStringToObject(o, "file", m->file) == NULL ||
	    (m->display_name != NULL &&
	    cJSON_AddStringToObject(o, "display_name", m->display_name) == NULL) ||
	    cJSON_AddBoolToObject(o, "strict", m->strict) == NULL ||
	    (props = cJSON_AddArrayToObject(o, "properties")) == NULL ||
	    (cmds = cJSON_AddArrayToObject(o, "commands")) == NULL ||
	    (rels = cJSON_AddArrayToObject(o, "relationships")) == NULL)
		goto fail;
	for (int i = 0; i < m->nprops; i++)
		if (!cJSON_AddItemToArray(props, prop_json(&m->props[i])))
			goto fail;
	for (int i = 0; i < m->ncommands; i++)
		if (!cJSON_AddItemToArray(cmds, cJSON_CreateString(m->commands[i].name)))
			goto fail;
	for (int i = 0; i < m->nrels; i++) {
		if ((r = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(rels, r) ||
		    cJSON_AddStringToObject(r, "name", m->rels[i].name) == NULL ||
		    (m->rels[i].target != NULL &&
		    cJSON_AddStringToObject(r, "target", m->rels[i].target) == NULL))
			goto fail;
	}
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

void
api_models_list(struct http_req *req, struct http_reply *rep)
{
	struct model_set *set = engine_models(req->ctx->engine);
	cJSON *doc = cJSON_CreateObject(), *arr;
	int ok = doc != NULL && (arr = cJSON_AddArrayToObject(doc, "models")) != NULL;

	for (int i = 0; ok && i < model_count(set); i++)
		ok = cJSON_AddItemToArray(arr, model_json(model_at(set, i)));
	model_set_unref(set);
	if (!ok) {
		cJSON_Delete(doc);
		http_error(rep, 500, "internal", "out of memory");
		return;
	}
	http_json(rep, 200, doc);
}

static cJSON *
rule_json(const struct rule *r)
{
	uint64_t evals = atomic_load(&r->stats->evaluations);
	cJSON *o = cJSON_Parse(r->source), *st;

	/* The rule as written, with what it has done beside it. */
	if (o == NULL || (st = cJSON_AddObjectToObject(o, "stats")) == NULL ||
	    cJSON_AddNumberToObject(st, "evaluations", (double)evals) == NULL ||
	    cJSON_AddNumberToObject(st, "raises", (double)atomic_load(&r->stats->raises)) == NULL ||
	    cJSON_AddNumberToObject(st, "clears", (double)atomic_load(&r->stats->clears)) == NULL ||
	    cJSON_AddNumberToObject(st, "errors", (double)atomic_load(&r->stats->errors)) == NULL ||
	    cJSON_AddNumberToObject(st, "cost_ns_per_evaluation", evals > 0 ?
	    (double)(atomic_load(&r->stats->cost_ns) / evals) : 0) == NULL) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

void
api_rules_list(struct http_req *req, struct http_reply *rep)
{
	struct rule_set *set = engine_rules(req->ctx->engine);
	cJSON *doc = cJSON_CreateObject(), *arr;
	int ok = doc != NULL && (arr = cJSON_AddArrayToObject(doc, "rules")) != NULL;

	for (int i = 0; ok && i < set->n; i++)
		ok = cJSON_AddItemToArray(arr, rule_json(&set->v[i]));
	rules_unref(set);
	if (!ok) {
		cJSON_Delete(doc);
		http_error(rep, 500, "internal", "out of memory");
		return;
	}
	http_json(rep, 200, doc);
}
