/* The safety envelope of commands: parsed from the model, judged before a command is issued. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "envelope.h"
#include "err.h"
#include "expr.h"
#include "model.h"
#include "names.h"
#include "runtime.h"
#include "store.h"
#include "twin.h"
#include "value.h"

static const char *const refusal_names[ENVELOPE__COUNT] = {
	[ENVELOPE_OK] = "ok", [ENVELOPE_RANGE] = "range", [ENVELOPE_RATE] = "rate",
	[ENVELOPE_INTERLOCK] = "interlock", [ENVELOPE_MANUAL] = "manual",
	[ENVELOPE_INFLIGHT] = "inflight",
};

const char *
envelope_refusal_name(int refusal)
{
	return refusal >= 0 && refusal < ENVELOPE__COUNT ? refusal_names[refusal] : "unknown";
}

void
envelope_free(struct envelope *e)
{
	if (e == NULL)
		return;
	for (int i = 0; i < e->nparams; i++)
		free(e->params[i].name);
	free(e->params);
	free(e->interlock_src);
	expr_free(e->interlock);
	free(e->prefix);
	free(e);
}

/* A finite number at `key` of `o`: 1 there, 0 absent, -1 not a number. */
static int
bound(const cJSON *o, const char *key, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (v == NULL)
		return 0;
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
		return -1;
	*out = v->valuedouble;
	return 1;
}

static int
parse_param(struct envelope_param *p, const cJSON *o, char *err, size_t len)
{
	const cJSON *k;
	int lo, hi;

	if (!name_prop_valid(o->string, strlen(o->string))) {
		snprintf(err, len, "params: \"%.64s\" is not a parameter name", o->string);
		return -1;
	}
	if (!cJSON_IsObject(o)) {
		snprintf(err, len, "params: %s must be an object with minimum and/or maximum",
		    o->string);
		return -1;
	}
	cJSON_ArrayForEach(k, o)
		if (strcmp(k->string, "minimum") != 0 && strcmp(k->string, "maximum") != 0) {
			snprintf(err, len, "params: %s: unknown key \"%.64s\" (minimum, maximum)",
			    o->string, k->string);
			return -1;
		}
	lo = bound(o, "minimum", &p->min);
	hi = bound(o, "maximum", &p->max);
	if (lo < 0 || hi < 0 || (lo == 0 && hi == 0)) {
		snprintf(err, len, "params: %s needs a numeric minimum and/or maximum", o->string);
		return -1;
	}
	if (lo > 0 && hi > 0 && p->min > p->max) {
		snprintf(err, len, "params: %s: minimum %g is above maximum %g", o->string,
		    p->min, p->max);
		return -1;
	}
	p->has_min = lo > 0;
	p->has_max = hi > 0;
	if ((p->name = strdup(o->string)) == NULL) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	return 0;
}

static int
parse_params(struct envelope *e, const cJSON *o, char *err, size_t len)
{
	const cJSON *it;
	int n = cJSON_GetArraySize(o);

	if (!cJSON_IsObject(o)) {
		snprintf(err, len, "params must be an object: {\"name\": {\"minimum\": .., "
		    "\"maximum\": ..}}");
		return -1;
	}
	if (n > ENVELOPE_PARAMS_MAX) {
		snprintf(err, len, "params: more than %d", ENVELOPE_PARAMS_MAX);
		return -1;
	}
	if ((e->params = calloc((size_t)n + 1, sizeof(*e->params))) == NULL) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	cJSON_ArrayForEach(it, o) {
		for (int i = 0; i < e->nparams; i++)
			if (strcmp(e->params[i].name, it->string) == 0) {
				snprintf(err, len, "params: %s is given twice", it->string);
				return -1;
			}
		if (parse_param(&e->params[e->nparams], it, err, len) != 0)
			return -1;
		e->nparams++;
	}
	return 0;
}

static int
parse_interlock(struct envelope *e, const cJSON *o, char *err, size_t len)
{
	char msg[200];
	int col;

	if (!cJSON_IsString(o) || o->valuestring[0] == '\0') {
		snprintf(err, len, "interlock must be a rule condition as a string");
		return -1;
	}
	if ((e->interlock = expr_compile(o->valuestring, msg, sizeof(msg), &col)) == NULL) {
		snprintf(err, len, "interlock: column %d: %s", col, msg);
		return -1;
	}
	if (expr_refs(e->interlock)->nwindows > 0) {
		snprintf(err, len, "interlock: window functions (avg_over, anomaly, ...) are not "
		    "allowed: an interlock judges the twin's current values");
		return -1;
	}
	if ((e->interlock_src = strdup(o->valuestring)) == NULL) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	return 0;
}

static int
parse_key(struct envelope *e, const cJSON *k, char *err, size_t len)
{
	if (strcmp(k->string, "params") == 0)
		return parse_params(e, k, err, len);
	if (strcmp(k->string, "interlock") == 0)
		return parse_interlock(e, k, err, len);
	if (strcmp(k->string, "clamp") == 0 || strcmp(k->string, "allowInManual") == 0) {
		if (!cJSON_IsBool(k)) {
			snprintf(err, len, "%s must be true or false", k->string);
			return -1;
		}
		*(strcmp(k->string, "clamp") == 0 ? &e->clamp : &e->allow_in_manual) =
		    cJSON_IsTrue(k);
		return 0;
	}
	if (strcmp(k->string, "minInterval") == 0) {
		if (!cJSON_IsString(k) ||
		    clock_parse_duration(k->valuestring, &e->min_interval_ms) != TW_OK ||
		    e->min_interval_ms <= 0) {
			snprintf(err, len, "minInterval must be a duration above zero such as "
			    "\"30s\" or \"5m\"");
			return -1;
		}
		return 0;
	}
	snprintf(err, len, "unknown key \"%.64s\" (params, clamp, minInterval, interlock, "
	    "allowInManual)", k->string);
	return -1;
}

struct envelope *
envelope_parse(const cJSON *o, char *err, size_t len)
{
	struct envelope *e;
	const cJSON *k;

	const char *dup;

	if (!cJSON_IsObject(o)) {
		snprintf(err, len, "envelope must be an object (params, clamp, minInterval, "
		    "interlock)");
		return NULL;
	}
	if ((dup = value_json_dup_key(o)) != NULL) {
		snprintf(err, len, "\"%.64s\" is given twice", dup);
		return NULL;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	cJSON_ArrayForEach(k, o)
		if (parse_key(e, k, err, len) != 0) {
			envelope_free(e);
			return NULL;
		}
	if (e->clamp && e->nparams == 0) {
		snprintf(err, len, "clamp needs params with a range");
		envelope_free(e);
		return NULL;
	}
	return e;
}

int
envelope_prefix(struct envelope *e, const char *prefix)
{
	free(e->prefix);
	return (e->prefix = strdup(prefix)) != NULL ? TW_OK : TW_ERR_NOMEM;
}

/* ---- the checks ---- */

static int
refuse(struct envelope_verdict *v, int refusal, const char *fmt, const char *a, const char *b)
{
	v->refusal = refusal;
	snprintf(v->why, sizeof(v->why), fmt, a, b);
	return TW_OK;
}

static int
check_params(const struct envelope *e, cJSON *params, struct envelope_verdict *v)
{
	for (int i = 0; i < e->nparams; i++) {
		const struct envelope_param *p = &e->params[i];
		cJSON *it = cJSON_IsObject(params) ?
		    cJSON_GetObjectItemCaseSensitive(params, p->name) : NULL;
		double x, lo = p->has_min ? p->min : -INFINITY, hi = p->has_max ? p->max : INFINITY;

		if (it == NULL)
			return refuse(v, ENVELOPE_RANGE, "range: parameter %s is missing "
			    "(the model gives it a range)%s", p->name, "");
		if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
			return refuse(v, ENVELOPE_RANGE, "range: parameter %s must be a number%s",
			    p->name, "");
		x = it->valuedouble;
		if (x >= lo && x <= hi)
			continue;
		if (!e->clamp) {
			snprintf(v->why, sizeof(v->why), "range: parameter %s = %g is outside "
			    "[%g, %g]", p->name, x, lo, hi);
			v->refusal = ENVELOPE_RANGE;
			return TW_OK;
		}
		cJSON_SetNumberValue(it, x < lo ? lo : hi);
		v->clamped = 1;
	}
	return TW_OK;
}

/* Manual mode, then the interlock: the verdict's refusal stays ENVELOPE_OK when both pass. */
static void
check_conditions(const struct envelope_ask *a, const struct envelope *e,
    struct envelope_verdict *v)
{
	int holds;

	if (a->automatic && a->model->manual != NULL && (e == NULL || !e->allow_in_manual) &&
	    runtime_condition(a->twins, a->twin, a->model->manual, NULL, a->clock, a->fresh) != 0) {
		refuse(v, ENVELOPE_MANUAL, "manual: %s is in manual mode (%s holds, or is unknown "
		    "or stale): a rule's action is refused", a->twin->id, a->model->manual_src);
		return;
	}
	if (e != NULL && e->interlock != NULL &&
	    (holds = runtime_condition(a->twins, a->twin, e->interlock, e->prefix, a->clock,
	    a->fresh)) != 1)
		refuse(v, ENVELOPE_INTERLOCK, holds == 0 ? "interlock: %s does not hold%s" :
		    "interlock: %s is unknown (a value it reads was never reported, or is "
		    "stale)%s", e->interlock_src, "");
}

static const struct envelope *
envelope_of(const struct envelope_ask *a)
{
	const struct model_command *mc = model_command(a->model, a->command);

	return mc != NULL ? mc->envelope : NULL;
}

int
envelope_recheck(const struct envelope_ask *a, struct envelope_verdict *v)
{
	memset(v, 0, sizeof(*v));
	if (a->model != NULL)
		check_conditions(a, envelope_of(a), v);
	return TW_OK;
}

int
envelope_check(const struct envelope_ask *a, cJSON *params, struct envelope_verdict *v)
{
	const struct envelope *e = envelope_of(a);
	int64_t last = 0;
	int rc;

	memset(v, 0, sizeof(*v));
	if (a->model == NULL)
		return TW_OK;
	check_conditions(a, e, v);
	if (v->refusal != ENVELOPE_OK || e == NULL)
		return TW_OK;
	if ((rc = check_params(e, params, v)) != TW_OK || v->refusal != ENVELOPE_OK)
		return rc;
	/* No store (a unit test's what-if): no command was stored to count. */
	if (e->min_interval_ms == 0 || a->store == NULL)
		return TW_OK;
	if (store_command_last(a->store, a->twin->id, a->command, a->now - e->min_interval_ms,
	    &last) != TW_OK)
		return TW_ERR_DB;
	/* A wall clock stepped back makes the last one look newer than now: it counts as now. */
	if (last > a->now)
		last = a->now;
	if (last != 0 && a->now - last < e->min_interval_ms) {
		v->retry_ms = last + e->min_interval_ms - a->now;
		v->refusal = ENVELOPE_RATE;
		snprintf(v->why, sizeof(v->why), "rate: %s went to %s %.1f s ago; the model "
		    "allows one every %.1f s", a->command, a->twin->id,
		    (double)(a->now - last) / 1000.0, (double)e->min_interval_ms / 1000.0);
	}
	return TW_OK;
}

/* The entry's value, for comparing with the one set (null: type 0). */
static struct tw_val
entry_value(const cJSON *it)
{
	if (cJSON_IsNumber(it))
		return (struct tw_val){ .type = VAL_NUM, .num = it->valuedouble };
	if (cJSON_IsBool(it))
		return (struct tw_val){ .type = VAL_BOOL, .num = cJSON_IsTrue(it) };
	if (cJSON_IsString(it))
		return (struct tw_val){ .type = VAL_STR, .str = it->valuestring };
	return (struct tw_val){ 0 };
}

/*
 * One entry of a desired patch against its property's envelope. The same
 * value again changes nothing and is not judged. A withdrawal (null) is
 * safe whatever the conditions, but it counts for the rate: a value,
 * withdrawn and set anew, must not change the set point faster than the
 * model allows.
 */
static void
desired_entry(const struct envelope_ask *a, const cJSON *it, struct envelope_verdict *v)
{
	const struct model_prop *mp = model_prop(a->model, it->string);
	const struct envelope *e = mp != NULL ? mp->envelope : NULL;
	const struct desired *d = NULL;
	struct tw_val nv = entry_value(it);
	int64_t set;

	for (uint32_t i = 0; i < a->twin->ndesired && d == NULL; i++)
		if (strcmp(a->twin->desired[i].name, it->string) == 0 && !a->twin->desired[i].removed)
			d = &a->twin->desired[i];
	if (d != NULL && nv.type != 0 && value_equal(&d->val, &nv))
		return;
	if (d == NULL && nv.type == 0)
		return;		/* withdrawing what is not there */
	if (nv.type != 0) {
		check_conditions(a, e, v);
		if (v->refusal != ENVELOPE_OK) {
			/* Name the property: a patch may set several. */
			char why[sizeof(v->why) + PROP_NAME_MAX + 4];

			snprintf(why, sizeof(why), "%s: %s", it->string, v->why);
			memcpy(v->why, why, sizeof(v->why) - 1);
			v->why[sizeof(v->why) - 1] = '\0';
			return;
		}
	}
	if (e == NULL || e->min_interval_ms == 0 || d == NULL)
		return;
	/* A wall clock stepped back makes the last one look newer than now: it counts as now. */
	set = d->ts > a->now ? a->now : d->ts;
	if (a->now - set >= e->min_interval_ms)
		return;
	v->refusal = ENVELOPE_RATE;
	v->retry_ms = set + e->min_interval_ms - a->now;
	snprintf(v->why, sizeof(v->why), "rate: %s was set on %s %.1f s ago; the model allows a "
	    "change every %.1f s", it->string, a->twin->id, (double)(a->now - set) / 1000.0,
	    (double)e->min_interval_ms / 1000.0);
}

int
envelope_desired(const struct envelope_ask *a, const cJSON *patch, struct envelope_verdict *v)
{
	struct envelope_verdict one;
	const cJSON *it;

	memset(v, 0, sizeof(*v));
	if (a->model == NULL)
		return TW_OK;
	/* The first refusal is the reason; a rate's wait is the longest of them. */
	cJSON_ArrayForEach(it, patch) {
		memset(&one, 0, sizeof(one));
		desired_entry(a, it, &one);
		if (one.refusal == ENVELOPE_OK)
			continue;
		if (v->refusal == ENVELOPE_OK)
			*v = one;
		else if (one.refusal == ENVELOPE_RATE && one.retry_ms > v->retry_ms)
			v->retry_ms = one.retry_ms;
	}
	return TW_OK;
}
