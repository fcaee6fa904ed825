/* The live side of the rules: what the runtime decided, made real in the open batch. */
#include <stdatomic.h>

#include "actions.h"
#include "clock.h"
#include "envelope.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "model.h"

/* A rule's desired change against the envelope: manual mode, interlocks, rates. */
static int
envelope_refuses(struct actions *e, struct twin *t, const struct rule *r, const cJSON *patch)
{
	struct envelope_ask a = { t->model, NULL, e->twins, t, twin_clock(t, clock_mono_ms()),
	    clock_now_ms(), 1, e->store, e->status };
	struct envelope_verdict v;

	envelope_desired(&a, patch, &v);
	if (v.refusal == ENVELOPE_OK)
		return 0;
	log_limited(e->log, "rule %s: desired action on %s refused: %s", r->name, t->id, v.why);
	atomic_fetch_add(&r->stats->errors, 1);
	return 1;
}

static int
rule_actions(struct actions *e, struct twin *t, const struct rule *r, int64_t source_ts)
{
	struct request scratch = { 0 };
	char id[COMMAND_ID_MAX], by[136];
	const char *reason;
	int changed, rc;

	for (int i = 0; i < r->nactions; i++) {
		const struct rule_action *ra = &r->actions[i];
		cJSON *patch;

		if (ra->type == ACTION_COMMAND) {
			struct command_spec spec = { t->id, ra->command, ra->json, r->name, NULL, source_ts,
			    commands_timeout(t->model, ra->command, &e->policy), ENVELOPE_OK, NULL };
			struct envelope_verdict v;

			if (!commands_named(t->model, ra->command, &e->policy)) {
				log_limited(e->log, "rule %s: %s (model %s) takes no command %s",
				    r->name, t->id, t->model_id != NULL ? t->model_id : "none",
				    ra->command);
				atomic_fetch_add(&r->stats->errors, 1);
				continue;
			}
			rc = commands_issue_judged(e->commands, e->store, e->outbox, e->twins, t, &spec,
			    &v, id, &reason);
			if (rc == TW_ERR_FULL) {
				log_limited(e->log, "rule %s: command %s on %s refused: %s",
				    r->name, ra->command, t->id, reason);
				atomic_fetch_add(&r->stats->errors, 1);
			} else if (rc != TW_OK) {
				return rc;
			}
			continue;
		}
		if ((patch = cJSON_Parse(ra->json)) == NULL)
			return TW_ERR_NOMEM;
		/* Checked like an operator's PATCH: a rule cannot write what an operator may not. */
		rc = desired_check(e->twins, t, patch, &scratch);
		if (rc == TW_OK && envelope_refuses(e, t, r, patch)) {
			cJSON_Delete(patch);
			continue;
		}
		snprintf(by, sizeof(by), "rule:%s", r->name);
		if (rc == TW_OK)
			rc = desired_apply(e->desired, e->twins, t, patch, by, clock_now_ms(), &changed);
		cJSON_Delete(patch);
		if (rc == TW_ERR_REFUSED) {
			log_limited(e->log, "rule %s: desired action on %s refused: %s",
			    r->name, t->id, scratch.message);
			atomic_fetch_add(&r->stats->errors, 1);
		} else if (rc != TW_OK) {
			return rc;
		}
	}
	return TW_OK;
}

int
actions_apply(struct actions *a, struct twin *t, const struct effects *fx, int64_t source_ts)
{
	for (unsigned i = 0; i < fx->n; i++) {
		struct effect *f = &fx->v[i];
		const struct rule *r = f->rule;
		struct store_alert_row row;

		if (f->type == EFFECT_CLEAR) {
			if (alerts_clear(a->alerts, f->st->alert_id, f->at) != TW_OK)
				return TW_ERR_DB;
			f->st->alert_id = 0;
			f->st->true_since = 0;
			atomic_fetch_add(&r->stats->clears, 1);
			log_info("twin %s: alert %s cleared", t->id, r->name);
			continue;
		}
		row = (struct store_alert_row){ .twin = t->id, .rule = r->name,
		    .severity = r->severity, .message = f->message, .val = f->val,
		    .raised_ts = f->at };
		if (alerts_raise(a->alerts, &row) != TW_OK)
			return TW_ERR_DB;
		f->st->alert_id = row.id;
		f->st->raised_ts = f->at;
		metrics_add(&metrics.alerts_raised, 1);
		atomic_fetch_add(&r->stats->raises, 1);
		log_info("twin %s: alert %s (%s) raised: %s", t->id, r->name, r->severity, f->message);
		if (rule_actions(a, t, r, source_ts) != TW_OK)
			return TW_ERR_DB;
	}
	return TW_OK;
}
