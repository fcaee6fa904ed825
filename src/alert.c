/* The shapes of alerts and commands that every interface shows alike. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "alert.h"
#include "clock.h"

static int
add_ts(cJSON *o, const char *name, int64_t ts)
{
	return (ts > 0 ? cJSON_AddNumberToObject(o, name, (double)ts) :
	    cJSON_AddNullToObject(o, name)) != NULL;
}

static int
add_str(cJSON *o, const char *name, const char *s)
{
	return (s != NULL ? cJSON_AddStringToObject(o, name, s) :
	    cJSON_AddNullToObject(o, name)) != NULL;
}

cJSON *
alert_json(const struct store_alert_row *a)
{
	cJSON *o = cJSON_CreateObject();

	if (o == NULL || cJSON_AddNumberToObject(o, "id", (double)a->id) == NULL ||
	    !add_str(o, "twin", a->twin) || !add_str(o, "rule", a->rule) ||
	    !add_str(o, "severity", a->severity) || !add_str(o, "message", a->message) ||
	    !cJSON_AddItemToObject(o, "value", value_to_json(&a->val)) ||
	    cJSON_AddBoolToObject(o, "active", a->active) == NULL ||
	    cJSON_AddBoolToObject(o, "acknowledged", a->acknowledged) == NULL ||
	    !add_ts(o, "shelved_until_ts", a->shelved_until_ts) ||
	    !add_ts(o, "raised_ts", a->raised_ts) || !add_ts(o, "acked_ts", a->acked_ts) ||
	    !add_ts(o, "cleared_ts", a->cleared_ts) || !add_str(o, "acked_by", a->acked_by) ||
	    !add_str(o, "shelved_by", a->shelved_by)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *
params_json(const char *params)
{
	cJSON *p = params != NULL ? cJSON_Parse(params) : NULL;

	return p != NULL ? p : cJSON_CreateObject();
}

cJSON *
alert_command_json(const struct store_command_row *c)
{
	cJSON *o = cJSON_CreateObject();

	if (o == NULL || !add_str(o, "id", c->id) || !add_str(o, "twin", c->twin) ||
	    !add_str(o, "command", c->command) ||
	    !cJSON_AddItemToObject(o, "params", params_json(c->params)) ||
	    !add_str(o, "rule", c->rule) || !add_str(o, "issued_by", c->issued_by) ||
	    !add_str(o, "status", c->status) ||
	    !add_str(o, "reason", c->reason) || !add_ts(o, "source_ts", c->source_ts) ||
	    !add_ts(o, "issued_ts", c->issued_ts) || !add_ts(o, "sent_ts", c->sent_ts) ||
	    !add_ts(o, "acked_ts", c->acked_ts) || !add_ts(o, "expires_ts", c->expires_ts) ||
	    (c->effect_read && (!add_str(o, "effect", c->effect) ||
	    !add_ts(o, "effect_ts", c->effect_ts) ||
	    !add_ts(o, "effect_deadline_ts", c->effect_deadline_ts)))) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

cJSON *
alert_command_wire(const struct store_command_row *c)
{
	cJSON *o = cJSON_CreateObject();

	if (o == NULL || !add_str(o, "id", c->id) || !add_str(o, "twin", c->twin) ||
	    !add_str(o, "command", c->command) ||
	    !cJSON_AddItemToObject(o, "params", params_json(c->params)) ||
	    (c->rule != NULL && !add_str(o, "rule", c->rule)) ||
	    (c->source_ts > 0 && !add_ts(o, "source_ts", c->source_ts)) ||
	    !add_ts(o, "issued_ts", c->issued_ts) ||
	    /* A bridge must not execute it after this: it may have been queued somewhere. */
	    !add_ts(o, "expires_ts", c->expires_ts)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

#define ID_RANDOM_BITS	20

void
alert_command_id(char *buf, size_t len, uint64_t *last)
{
	uint32_t r;
	int64_t ms = clock_now_ms();
	uint64_t id;

	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (uint32_t)((uint64_t)clock_mono_us() * 6364136223846793005ULL >> 32);
	/* 44 bits of milliseconds last until the year 2527; a clock before 1970 counts as 1970. */
	if (ms < 0)
		ms = 0;
	if (ms >= INT64_C(1) << (64 - ID_RANDOM_BITS))
		ms = (INT64_C(1) << (64 - ID_RANDOM_BITS)) - 1;
	id = ((uint64_t)ms << ID_RANDOM_BITS) | (r & ((1u << ID_RANDOM_BITS) - 1));
	/* A clock that steps back, or a second id in one millisecond, still sorts after (never wraps). */
	if (id <= *last)
		id = *last < UINT64_MAX ? *last + 1 : UINT64_MAX;
	*last = id;
	snprintf(buf, len, "c-%016llx", (unsigned long long)id);
}
