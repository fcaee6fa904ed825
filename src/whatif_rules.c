/* What-if: what the rules of a copy would decide (alerts, desired, commands judged by the envelope), and the timer between steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "desired.h"
#include "envelope.h"
#include "err.h"

#include "whatif_sim.h"

int
whatif_add_ts(cJSON *o, const char *name, int64_t ts)
{
	return cJSON_AddNumberToObject(o, name, (double)ts) == NULL;
}

static cJSON *
entry(cJSON *arr, const struct twin *t, int64_t at)
{
	cJSON *o = cJSON_CreateObject();

	if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
		cJSON_Delete(o);
		return NULL;
	}
	if (cJSON_AddStringToObject(o, "twin", t->id) == NULL || whatif_add_ts(o, "ts", at))
		return NULL;
	return o;
}

/* A desired patch against the envelope, as live: a rule's (automatic) or the scenario's own. */
static int
envelope_refuses(struct sim *s, struct twin *t, const cJSON *patch, int64_t at, int automatic,
    struct request *why)
{
	struct envelope_ask a = { t->model, NULL, s->w->twins, t, at, s->wall + (at - s->base),
	    automatic, s->w->store, s->w->fresh };
	struct envelope_verdict v;

	envelope_desired(&a, patch, &v);
	if (v.refusal == ENVELOPE_OK)
		return 0;
	/* Answered as live would (desired_request), and named for the scenario's list. */
	request_fail(why, v.refusal == ENVELOPE_RATE ? TW_ERR_FULL : TW_ERR_REFUSED,
	    v.refusal == ENVELOPE_RATE ? "rate_limited" : v.refusal == ENVELOPE_MANUAL ?
	    "manual_mode" : "interlock", "%s", v.why);
	why->retry_ms = v.retry_ms;
	return 1;
}

/* The envelope's name of a refusal answered by envelope_refuses, for a scenario's entry. */
static const char *
refusal_of(const struct request *why)
{
	if (strcmp(why->code, "rate_limited") == 0)
		return "rate";
	if (strcmp(why->code, "manual_mode") == 0)
		return "manual";
	return strcmp(why->code, "interlock") == 0 ? "interlock" : NULL;
}

/* A desired patch on a copy, checked as it would be live. Returns 0, TW_ERR_REFUSED or TW_ERR_NOMEM. */
int
whatif_desired_put(struct sim *s, struct twin *t, const cJSON *patch, const char *by, int64_t at,
    int automatic, struct request *why)
{
	const cJSON *it;

	if (desired_check(s->w->twins, t, patch, why) != TW_OK ||
	    envelope_refuses(s, t, patch, at, automatic, why))
		return TW_ERR_REFUSED;
	cJSON_ArrayForEach(it, patch) {
		const struct model_prop *mp = model_prop(t->model, it->string);
		const char *name = twin_intern_find(s->w->twins, it->string);
		struct tw_val v = { 0 };
		struct desired *d = NULL;
		cJSON *o;

		/* desired_check proved the model names it writable. */
		if (name == NULL)
			name = mp->name;
		for (uint32_t i = 0; i < t->ndesired && d == NULL; i++)
			if (strcmp(t->desired[i].name, it->string) == 0)
				d = &t->desired[i];
		if (cJSON_IsNull(it)) {
			if (d != NULL)
				d->removed = 1;
		} else {
			if (cJSON_IsNumber(it))
				v = (struct tw_val){ .type = VAL_NUM, .num = it->valuedouble };
			else if (cJSON_IsBool(it))
				v = (struct tw_val){ .type = VAL_BOOL, .num = cJSON_IsTrue(it) };
			else
				v = (struct tw_val){ .type = VAL_STR, .str = it->valuestring };
			/* As live: the same value again changes nothing; a new one is set at wall time. */
			if (d != NULL && !d->removed && value_equal(&d->val, &v))
				goto described;
			if ((d = twin_desired_set(t, d != NULL ? d->name : name, &v,
			    s->wall + (at - s->base))) == NULL)
				return TW_ERR_NOMEM;
			snprintf(d->set_by, sizeof(d->set_by), "%s", by);
			d->converged_ts = 0;
		}
described:
		if ((o = entry(s->desired, t, at)) == NULL ||
		    cJSON_AddStringToObject(o, "property", it->string) == NULL ||
		    !cJSON_AddItemToObject(o, "value", cJSON_Duplicate(it, 1)) ||
		    cJSON_AddStringToObject(o, "by", by) == NULL ||
		    cJSON_AddStringToObject(o, "status", "would_set") == NULL)
			return TW_ERR_NOMEM;
	}
	return TW_OK;
}

static int
refused(cJSON *o, const char *reason)
{
	return cJSON_AddStringToObject(o, "status", "refused") == NULL ||
	    cJSON_AddStringToObject(o, "reason", reason) == NULL;
}

/*
 * When the scenario itself last sent `command` to `t` (wall ms; 0: not):
 * the rate counts the what-if's own commands as well as the stored ones.
 */
static int64_t
scenario_last(const struct sim *s, const struct twin *t, const char *command)
{
	const cJSON *o, *st, *tw, *cmd, *ts;
	int64_t last = 0;

	cJSON_ArrayForEach(o, s->commands) {
		st = cJSON_GetObjectItemCaseSensitive(o, "status");
		tw = cJSON_GetObjectItemCaseSensitive(o, "twin");
		cmd = cJSON_GetObjectItemCaseSensitive(o, "command");
		ts = cJSON_GetObjectItemCaseSensitive(o, "ts");
		if (cJSON_IsString(st) && strcmp(st->valuestring, "would_send") == 0 &&
		    cJSON_IsString(tw) && strcmp(tw->valuestring, t->id) == 0 &&
		    cJSON_IsString(cmd) && strcmp(cmd->valuestring, command) == 0 &&
		    cJSON_IsNumber(ts))
			last = s->wall + ((int64_t)ts->valuedouble - s->base);
	}
	return last;
}

/*
 * The safety envelope's verdict on a rule's command in the scenario, as
 * the live engine would give it (clamping `params` in place), with the
 * scenario's own earlier commands counted by the rate.
 */
static int
judge(struct sim *s, struct twin *t, const char *command, cJSON *params, int64_t at,
    struct envelope_verdict *v)
{
	const struct model_command *mc = model_command(t->model, command);
	int64_t wall = s->wall + (at - s->base), last;
	struct envelope_ask a = { t->model, command, s->w->twins, t, at, wall, 1, s->w->store,
	    s->w->fresh };

	int rc = envelope_check(&a, params, v);

	if (rc != TW_OK)
		return rc;
	if (v->refusal != ENVELOPE_OK || mc == NULL || mc->envelope == NULL ||
	    mc->envelope->min_interval_ms == 0)
		return TW_OK;
	last = scenario_last(s, t, command);
	if (last != 0 && wall - last < mc->envelope->min_interval_ms) {
		v->refusal = ENVELOPE_RATE;
		snprintf(v->why, sizeof(v->why), "rate: %s would go to %s %.1f s after the "
		    "scenario's last one; the model allows one every %.1f s", command, t->id,
		    (double)(wall - last) / 1000.0,
		    (double)mc->envelope->min_interval_ms / 1000.0);
	}
	return TW_OK;
}

/* A raised rule's actions, as actions.c would do them, described. */
static int
rule_actions(struct sim *s, struct twin *t, const struct rule *r, int64_t at)
{
	char by[136], reason[256];

	snprintf(by, sizeof(by), "rule:%s", r->name);
	for (int i = 0; i < r->nactions; i++) {
		const struct rule_action *ra = &r->actions[i];
		struct request why = { 0 };
		cJSON *o, *patch;
		int rc;

		if (ra->type == ACTION_COMMAND) {
			struct envelope_verdict v;
			cJSON *params = cJSON_Parse(ra->json);

			if (params == NULL)
				return TW_ERR_NOMEM;
			/* Judged before it joins the list, so that it does not count against itself. */
			if (commands_named(t->model, ra->command, s->w->policy) &&
			    (rc = judge(s, t, ra->command, params, at, &v)) != TW_OK) {
				cJSON_Delete(params);
				return rc;
			}
			if ((o = entry(s->commands, t, at)) == NULL ||
			    !cJSON_AddItemToObject(o, "params", params)) {
				cJSON_Delete(params);
				return TW_ERR_NOMEM;
			}
			if (cJSON_AddStringToObject(o, "command", ra->command) == NULL ||
			    cJSON_AddStringToObject(o, "rule", r->name) == NULL)
				return TW_ERR_NOMEM;
			if (!commands_named(t->model, ra->command, s->w->policy)) {
				snprintf(reason, sizeof(reason), "model %s takes no command %s",
				    t->model_id != NULL ? t->model_id : "(none)", ra->command);
				if (refused(o, reason))
					return TW_ERR_NOMEM;
			} else if (v.refusal != ENVELOPE_OK) {
				if (refused(o, v.why) || cJSON_AddStringToObject(o, "refusal",
				    envelope_refusal_name(v.refusal)) == NULL)
					return TW_ERR_NOMEM;
			} else if (cJSON_AddStringToObject(o, "status", "would_send") == NULL ||
			    (v.clamped && cJSON_AddTrueToObject(o, "clamped") == NULL)) {
				return TW_ERR_NOMEM;
			}
			continue;
		}
		if ((patch = cJSON_Parse(ra->json)) == NULL)
			return TW_ERR_NOMEM;
		rc = whatif_desired_put(s, t, patch, by, at, 1, &why);
		if (rc == TW_ERR_REFUSED) {
			/* Described like the others, with the refusal. */
			if ((o = entry(s->desired, t, at)) == NULL ||
			    !cJSON_AddItemToObject(o, "patch", patch)) {
				cJSON_Delete(patch);
				return TW_ERR_NOMEM;
			}
			if (cJSON_AddStringToObject(o, "by", by) == NULL || refused(o, why.message) ||
			    (refusal_of(&why) != NULL && cJSON_AddStringToObject(o, "refusal",
			    refusal_of(&why)) == NULL))
				return TW_ERR_NOMEM;
			continue;
		}
		cJSON_Delete(patch);
		if (rc != TW_OK)
			return rc;
	}
	return TW_OK;
}

/* What the runtime decided on `t`, made true on the copy and described. */
static int
settle(struct sim *s, struct twin *t)
{
	for (unsigned i = 0; i < s->fx.n; i++) {
		struct effect *f = &s->fx.v[i];
		cJSON *o = entry(s->alerts, t, f->at);

		if (o == NULL || cJSON_AddStringToObject(o, "rule", f->rule->name) == NULL ||
		    cJSON_AddStringToObject(o, "severity", f->rule->severity) == NULL)
			return TW_ERR_NOMEM;
		if (f->type == EFFECT_CLEAR) {
			if (cJSON_AddStringToObject(o, "action", "clear") == NULL ||
			    (f->st->alert_id > 0 ? cJSON_AddNumberToObject(o, "alert_id",
			    (double)f->st->alert_id) : cJSON_AddNullToObject(o, "alert_id")) == NULL)
				return TW_ERR_NOMEM;
			f->st->alert_id = 0;
			f->st->true_since = 0;
			continue;
		}
		if (cJSON_AddStringToObject(o, "action", "raise") == NULL ||
		    cJSON_AddStringToObject(o, "message", f->message) == NULL ||
		    !cJSON_AddItemToObject(o, "value", value_to_json(&f->val)))
			return TW_ERR_NOMEM;
		f->st->alert_id = -++s->raised;
		f->st->raised_ts = f->at;
		if (rule_actions(s, t, f->rule, f->at) != TW_OK)
			return TW_ERR_NOMEM;
	}
	s->fx.n = 0;
	return TW_OK;
}

/* How often `p` is reported: its model's period, else what its longest window saw. */
static int64_t
interval_of(const struct twin *t, const struct prop *p)
{
	const struct window *longest = NULL;
	struct window_stats st;

	if (p->mp != NULL && p->mp->period_ms > 0)
		return p->mp->period_ms;
	for (uint16_t i = 0; i < t->nwindows; i++)
		if (t->windows[i].name == p->name && t->windows[i].kind == EXPR_WIN_SPAN &&
		    (longest == NULL || t->windows[i].w.len_ms > longest->len_ms))
			longest = &t->windows[i].w;
	if (longest != NULL && window_stats(longest, p->ts, &st) == 0 && st.n >= 2 &&
	    st.last_ts > st.first_ts)
		return (st.last_ts - st.first_ts) / (int64_t)(st.n - 1);
	/* Read only by quantile windows: what they counted, to a sixteenth of them. */
	for (uint16_t i = 0; i < t->nwindows; i++) {
		int64_t every;

		if (t->windows[i].name == p->name && t->windows[i].kind == EXPR_WIN_QUANT &&
		    quantile_every(t->windows[i].q, &every) == 0 && every > 0)
			return every;
	}
	return 1000;
}

/* As hold() for a quantile window: the held readings, a sixteenth of the window at a time. */
static void
hold_quantile(struct quantile *q, const struct prop *p, int64_t at, int64_t every)
{
	int64_t from = p->ts > at - q->len_ms ? p->ts : at - q->len_ms;
	int64_t chunk = (q->len_ms + QUANTILE_BUCKETS - 1) / QUANTILE_BUCKETS;

	for (int64_t ts = from + every; ts <= at; ) {
		/* The readings of [ts, end) all fall in the sixteenth of ts. */
		int64_t end = (window_floor_div(ts, chunk) + 1) * chunk, n;

		if (end > at + 1)
			end = at + 1;
		n = (end - ts + every - 1) / every;
		quantile_add(q, ts, p->val.num, (uint32_t)(n < HOLD_WEIGHT_MAX ? n : HOLD_WEIGHT_MAX));
		ts += n * every;
	}
}

/* `p`'s value held from its ts to `at`, fed to its windows as readings every interval. */
static void
hold(struct twin *t, struct prop *p, int64_t at)
{
	int64_t every = interval_of(t, p);

	if (every < INTERVAL_MIN_MS)
		every = INTERVAL_MIN_MS;
	for (uint16_t i = 0; i < t->nwindows; i++) {
		struct window *w = &t->windows[i].w;
		int64_t from, chunk;

		if (t->windows[i].name != p->name || p->val.type != VAL_NUM)
			continue;
		/*
		 * Only windows: an ewma weighs the next reading by the time since
		 * the last, held or not; a detector learns from readings only.
		 */
		if (t->windows[i].kind == EXPR_WIN_QUANT) {
			hold_quantile(t->windows[i].q, p, at, every);
			continue;
		}
		if (t->windows[i].kind != EXPR_WIN_SPAN)
			continue;
		from = p->ts > at - w->len_ms ? p->ts : at - w->len_ms;
		chunk = window_bucket_width(w);
		/* A bucket at a time, the window's own grain: from >= at - len, so 17 at most. */
		for (int64_t ts = from; ts < at; ) {
			int64_t next = ts + chunk < at ? ts + chunk : at;
			int64_t n = (next - ts) / every;

			/* n readings at ts + every, ..., ts + n every: as one, at their mean time. */
			if (n > 0)
				window_add_n(w, ts + every * (n + 1) / 2, p->val.num,
				    (uint32_t)(n < HOLD_WEIGHT_MAX ? n : HOLD_WEIGHT_MAX));
			/* What does not make a whole reading is carried into the next chunk. */
			ts = n > 0 ? ts + n * every : next;
			if (n == 0 && next == at)
				break;
		}
	}
}

/*
 * A twin in the scenario goes on reporting what it last reported: a
 * what-if is about the change it names, not about everything falling
 * silent while it runs. Its ages stay small and its windows fill with the
 * held values at the rate it reports them.
 */
static void
carry_on(struct sim *s, struct twin *t, int64_t at)
{
	if (t->newest_ts == 0)
		return;
	if (at > t->newest_ts)
		t->newest_ts = at;
	t->last_seen_ts = s->wall + (at - s->base);
	for (uint32_t i = 0; i < t->nprops; i++) {
		struct prop *p = &t->props[i];

		if (p->ts == 0 || at <= p->ts)
			continue;
		hold(t, p, at);
		p->ts = at;
	}
}

int
whatif_evaluate(struct sim *s, struct twin *t, const char *const *names, int n, int64_t at)
{
	carry_on(s, t, at);
	/*
	 * `for` ends add work the bound checked up front cannot see, and held
	 * values cost a window each: counted as they go, and the engine's time
	 * is capped too, since ingestion waits while a what-if runs.
	 */
	s->evals += (long)t->nrs + t->nwindows + 1;
	if (s->evals > WHATIF_EVALS_MAX || clock_mono_ms() - s->started > WHATIF_TIME_MAX_MS) {
		request_fail(s->r, TW_ERR_REFUSED, "too_large", "this scenario costs more than %d "
		    "evaluations or %d ms of the engine's time: fewer steps or a smaller depth",
		    WHATIF_EVALS_MAX, WHATIF_TIME_MAX_MS);
		return TW_ERR_REFUSED;
	}
	if (runtime_eval(&s->dry, t, names, n, at, s->wall + (at - s->base), &s->fx) != TW_OK)
		return TW_ERR_NOMEM;
	return settle(s, t);
}

/* The earliest `for` that ends after `from` and before `to` on any copy, or 0. */
static int64_t
next_deadline(const struct sim *s, int64_t from, int64_t to)
{
	int64_t best = 0;

	for (int i = 0; i < s->n; i++) {
		const struct twin *t = s->v[i].t;

		for (uint16_t k = 0; k < t->nrs; k++) {
			const struct rule_state *st = &t->rs[k];
			int64_t due = st->true_since + st->rule->for_ms;

			if (st->alert_id == 0 && st->true_since != 0 && st->rule->for_ms > 0 &&
			    due > from && due < to && (best == 0 || due < best))
				best = due;
		}
	}
	return best;
}

/*
 * The timer, as live: every rule of every copy at `to`, and before it at
 * each moment a `for` ends, so a condition held raises when it would.
 */
int
whatif_timer_until(struct sim *s, int64_t from, int64_t to)
{
	int64_t due;
	int rc;

	for (int round = 0; round < FOR_ROUNDS_MAX &&
	    (due = next_deadline(s, from, to)) != 0; round++) {
		for (int i = 0; i < s->n; i++)
			if ((rc = whatif_evaluate(s, s->v[i].t, NULL, 0, due)) != TW_OK)
				return rc;
		from = due;
	}
	for (int i = 0; i < s->n; i++)
		if ((rc = whatif_evaluate(s, s->v[i].t, NULL, 0, to)) != TW_OK)
			return rc;
	return TW_OK;
}
