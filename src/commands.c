/* Commands in flight: pending ones in memory, hashed twice; sent ones in SQLite only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "clock.h"
#include "commands.h"
#include "converge.h"
#include "envelope.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "request.h"
#include "twin.h"
#include "value.h"
#include "topic.h"

#define SWEEP_MAX	256	/* sent commands timed out per tick; the rest wait a second */

/* Pending commands of one twin, for the per-twin bound. */
struct commands_twin {
	char twin[TWIN_ID_MAX + 1];
	unsigned n;
	UT_hash_handle hh;
};

void
commands_init(struct commands *c, unsigned max, unsigned max_per_twin, int64_t ttl_ms,
    const char *topic_tmpl)
{
	memset(c, 0, sizeof(*c));
	c->max = max;
	c->max_per_twin = max_per_twin;
	c->ttl_ms = ttl_ms;
	c->topic_tmpl = topic_tmpl;
}

static void
command_free(struct command *cmd)
{
	if (cmd == NULL)
		return;
	free(cmd->command);
	free(cmd->params);
	free(cmd->rule);
	free(cmd->by);
	free(cmd->detail);
	free(cmd);
}

unsigned
commands_pending(const struct commands *c)
{
	return c->n;
}

static void
row_of(const struct command *cmd, const char *status, const char *reason,
    struct store_command_row *row)
{
	*row = (struct store_command_row){
		.id = cmd->id, .twin = cmd->twin, .command = cmd->command, .params = cmd->params,
		.rule = cmd->rule, .issued_by = cmd->by, .status = status, .reason = reason,
		.source_ts = cmd->source_ts, .issued_ts = cmd->issued_ts,
		.expires_ts = cmd->expires_ts, .sent_ts = cmd->sent_ts, .acked_ts = cmd->acked_ts,
	};
	if (strcmp(status, "sent") == 0)
		row->deadline_ts = cmd->sent_ts + cmd->timeout_ms;
}

/* Writes the row in the open batch, queues its event and counts the status. */
static int
write_row(struct store *st, struct outbox *o, const struct store_command_row *row)
{
	if (store_command_put(st, row) != TW_OK)
		return TW_ERR_DB;
	metrics_command(row->status);
	if (outbox_listening(o))
		outbox_queue(o, NULL, "command", row->twin, alert_command_json(row));
	return TW_OK;
}

static struct commands_twin *
pending_of(struct commands *c, const char *twin, int create)
{
	struct commands_twin *t;

	HASH_FIND_STR(c->twins, twin, t);
	if (t == NULL && create && (t = calloc(1, sizeof(*t))) != NULL) {
		snprintf(t->twin, sizeof(t->twin), "%s", twin);
		HASH_ADD_STR(c->twins, twin, t);
	}
	return t;
}

static void
twin_release(struct commands *c, const char *twin)
{
	struct commands_twin *t = pending_of(c, twin, 0);

	if (t != NULL && --t->n == 0) {
		HASH_DEL(c->twins, t);
		free(t);
	}
}

/* Takes `cmd` out of every index of pending commands (not off the fresh list). */
static void
unlink_pending(struct commands *c, struct command *cmd)
{
	HASH_DEL(c->by_id, cmd);
	if (cmd->prev != NULL)
		cmd->prev->next = cmd->next;
	else
		c->first = cmd->next;
	if (cmd->next != NULL)
		cmd->next->prev = cmd->prev;
	else
		c->last = cmd->prev;
	cmd->prev = cmd->next = NULL;
	twin_release(c, cmd->twin);
	c->n--;
}

/* Drops `cmd` from the to-publish queue, if it is on it: O(1), a list both ways. */
static void
unqueue(struct commands *c, struct command *cmd)
{
	if (!cmd->queued)
		return;
	if (cmd->qprev != NULL)
		cmd->qprev->qnext = cmd->qnext;
	else
		c->queue = cmd->qnext;
	if (cmd->qnext != NULL)
		cmd->qnext->qprev = cmd->qprev;
	else
		c->queue_last = cmd->qprev;
	cmd->qprev = cmd->qnext = NULL;
	cmd->queued = 0;
}

static void
enqueue(struct commands *c, struct command *cmd)
{
	if (cmd->queued)
		return;
	cmd->qnext = NULL;
	cmd->qprev = c->queue_last;
	if (c->queue_last != NULL)
		c->queue_last->qnext = cmd;
	else
		c->queue = cmd;
	c->queue_last = cmd;
	cmd->queued = 1;
}

/*
 * `cmd` leaves memory with a new status. Its row is written when the
 * batch commits (commands_flush), and it is kept until then: a rollback
 * does not lose a PUBACK or an expiry, which nobody would send again.
 */
static void
settle(struct commands *c, struct command *cmd, const char *status, const char *reason)
{
	unqueue(c, cmd);
	unlink_pending(c, cmd);
	cmd->status = status;
	cmd->reason = reason;
	cmd->bnext = c->settled;
	c->settled = cmd;
	HASH_ADD(hh_settled, c->settled_by_id, id, strlen(cmd->id), cmd);
}

static struct command *
command_new(struct commands *c, const struct command_spec *spec, int64_t now)
{
	struct command *cmd = calloc(1, sizeof(*cmd));

	if (cmd == NULL)
		return NULL;
	alert_command_id(cmd->id, sizeof(cmd->id), &c->last_id);
	snprintf(cmd->twin, sizeof(cmd->twin), "%s", spec->twin);
	cmd->command = strdup(spec->command);
	cmd->params = strdup(spec->params != NULL ? spec->params : "{}");
	cmd->rule = spec->rule != NULL ? strdup(spec->rule) : NULL;
	cmd->by = spec->by != NULL ? strdup(spec->by) : NULL;
	cmd->source_ts = spec->source_ts;
	cmd->issued_ts = now;
	cmd->expires_ts = now + c->ttl_ms;
	cmd->timeout_ms = spec->timeout_ms;
	if (cmd->command == NULL || cmd->params == NULL || (spec->rule != NULL && cmd->rule == NULL) ||
	    (spec->by != NULL && cmd->by == NULL)) {
		command_free(cmd);
		return NULL;
	}
	return cmd;
}

/* Adds `cmd` to the pending indexes, at the end of the issue order. */
static void
link_pending(struct commands *c, struct command *cmd, struct commands_twin *t)
{
	HASH_ADD_STR(c->by_id, id, cmd);
	cmd->prev = c->last;
	if (c->last != NULL)
		c->last->next = cmd;
	else
		c->first = cmd;
	c->last = cmd;
	t->n++;
	c->n++;
}

int
commands_issue(struct commands *c, struct store *st, struct outbox *o,
    const struct command_spec *spec, char *id, const char **reason)
{
	struct store_command_row row;
	struct commands_twin *t;
	struct command *cmd;
	int rc;

	*reason = NULL;
	if ((cmd = command_new(c, spec, clock_now_ms())) == NULL)
		return TW_ERR_NOMEM;
	memcpy(id, cmd->id, COMMAND_ID_MAX);
	t = pending_of(c, spec->twin, 0);
	/* Per twin first: one asset that stopped taking commands must not starve the others. */
	if (spec->refusal != ENVELOPE_OK)
		*reason = spec->why;
	else if (t != NULL && t->n >= c->max_per_twin)
		*reason = "inflight: too many commands of this twin wait for the broker "
		    "([commands] max_inflight_per_twin)";
	else if (c->n >= c->max)
		*reason = "inflight: too many commands wait for the broker ([commands] max_inflight)";
	if (*reason != NULL) {
		row_of(cmd, "refused", *reason, &row);
		rc = write_row(st, o, &row);
		command_free(cmd);
		if (rc == TW_OK)
			metrics_add(&metrics.refusals[spec->refusal != ENVELOPE_OK ? spec->refusal :
			    ENVELOPE_INFLIGHT], 1);
		return rc != TW_OK ? rc : TW_ERR_FULL;
	}
	if (t == NULL && (t = pending_of(c, spec->twin, 1)) == NULL) {
		command_free(cmd);
		return TW_ERR_NOMEM;
	}
	link_pending(c, cmd, t);
	row_of(cmd, "pending", NULL, &row);
	if (write_row(st, o, &row) != TW_OK) {
		unlink_pending(c, cmd);
		command_free(cmd);
		return TW_ERR_DB;
	}
	cmd->bnext = c->fresh;
	c->fresh = cmd;
	return TW_OK;
}

int
commands_issue_judged(struct commands *c, struct store *st, struct outbox *o,
    struct twin_map *m, struct twin *t, const struct command_spec *spec,
    struct envelope_verdict *v, char *id, const char **reason)
{
	const struct model_command *mc = model_command(t->model, spec->command);
	struct envelope_ask a = { t->model, spec->command, m, t, twin_clock(t, clock_mono_ms()),
	    clock_now_ms(), spec->rule != NULL, st, c->status };
	struct command_spec judged = *spec;
	cJSON *params = NULL;
	char *text = NULL;
	int rc;

	/* Parsed only when the envelope reads them: the closed loop's commands pay nothing. */
	if (mc != NULL && mc->envelope != NULL && mc->envelope->nparams > 0 &&
	    spec->params != NULL && (params = cJSON_Parse(spec->params)) == NULL)
		return TW_ERR_NOMEM;
	rc = envelope_check(&a, params, v);
	if (rc == TW_OK && v->clamped && (text = cJSON_PrintUnformatted(params)) == NULL)
		rc = TW_ERR_NOMEM;
	cJSON_Delete(params);
	if (rc != TW_OK)
		return rc;
	if (text != NULL)
		judged.params = text;
	judged.refusal = v->refusal;
	judged.why = v->why;
	rc = commands_issue(c, st, o, &judged, id, reason);
	if (rc == TW_ERR_FULL && v->refusal == ENVELOPE_OK)
		v->refusal = ENVELOPE_INFLIGHT;
	/* Issued: done only once the reported state shows it. */
	if (rc == TW_OK && mc != NULL && mc->effect != NULL && c->converge != NULL) {
		struct command *cmd;

		HASH_FIND_STR(c->by_id, id, cmd);
		rc = converge_watch(c->converge, t, id, mc->effect, judged.params,
		    cmd != NULL ? cmd->issued_ts : a.now);
	}
	cJSON_free(text);
	return rc;
}

static void
free_settled(struct commands *c)
{
	while (c->settled != NULL) {
		struct command *cmd = c->settled;

		c->settled = cmd->bnext;
		HASH_DELETE(hh_settled, c->settled_by_id, cmd);
		command_free(cmd);
	}
}

int
commands_flush(struct commands *c, struct store *st, struct outbox *o)
{
	struct store_command_row row;

	for (struct command *cmd = c->settled; cmd != NULL; cmd = cmd->bnext) {
		row_of(cmd, cmd->status, cmd->reason, &row);
		if (write_row(st, o, &row) != TW_OK)
			return TW_ERR_DB;
	}
	return TW_OK;
}

void
commands_commit(struct commands *c)
{
	struct command *fresh = NULL;

	/* The fresh list is newest first: reversed, they go out in issue order. */
	while (c->fresh != NULL) {
		struct command *cmd = c->fresh;

		c->fresh = cmd->bnext;
		cmd->bnext = fresh;
		fresh = cmd;
	}
	while (fresh != NULL) {
		struct command *cmd = fresh;

		fresh = cmd->bnext;
		cmd->bnext = NULL;
		cmd->committed = 1;
		enqueue(c, cmd);
	}
	free_settled(c);
}

void
commands_rollback(struct commands *c)
{
	while (c->fresh != NULL) {
		struct command *cmd = c->fresh;

		c->fresh = cmd->bnext;
		unlink_pending(c, cmd);
		command_free(cmd);
	}
	/* The settled stay: their rows are written with the next commit. */
}

/* The payload on plant/{twin}/cmd. */
static char *
wire_payload(const struct command *cmd)
{
	struct store_command_row row;
	cJSON *o;
	char *js;

	row_of(cmd, "pending", NULL, &row);
	if ((o = alert_command_wire(&row)) == NULL)
		return NULL;
	js = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return js;
}

/*
 * Judges a command that waited again, by the envelope's manual mode and
 * interlock as they hold now; refused, it is settled so and never sent.
 */
static int
still_refused(struct commands *c, struct command *cmd)
{
	struct envelope_verdict v;
	char why[320];

	if (c->recheck(c->recheck_arg, cmd->twin, cmd->command, cmd->rule != NULL, &v) != TW_OK ||
	    v.refusal == ENVELOPE_OK)
		return 0;
	snprintf(why, sizeof(why), "%s (judged again when it was to be sent, %.1f s after its "
	    "issue)", v.why, (double)(clock_now_ms() - cmd->issued_ts) / 1000.0);
	free(cmd->detail);
	cmd->detail = strdup(why);
	metrics_add(&metrics.refusals[v.refusal], 1);
	log_limited(&c->recheck_log, "command %s to %s: refused before it was sent: %s", cmd->id,
	    cmd->twin, why);
	settle(c, cmd, "refused", cmd->detail != NULL ? cmd->detail : envelope_refusal_name(
	    v.refusal));
	converge_cancel(c->converge, cmd->twin, cmd->id);
	return 1;
}

void
commands_publish(struct commands *c, struct outbox *o)
{
	char topic[TOPIC_MAX];
	int64_t now = clock_now_ms();

	while (c->queue != NULL && outbox_connected(o)) {
		struct command *cmd = c->queue;
		char *js;
		int rc = TW_ERR_NOMEM;

		/* The timer expires it; an expired command is never handed over. */
		if (now >= cmd->expires_ts)
			return;
		/* It waited (a broker away, a restart): the asset may have changed meanwhile. */
		if (now - cmd->issued_ts >= COMMANDS_RECHECK_MS && c->recheck != NULL &&
		    still_refused(c, cmd))
			continue;
		if (topic_format(c->topic_tmpl, cmd->twin, topic, sizeof(topic)) != TW_OK)
			rc = TW_ERR_INVAL;
		else if ((js = wire_payload(cmd)) != NULL) {
			/* The broker drops it at expires_ts too (MQTT v5), for a bridge that was away. */
			uint32_t expiry = (uint32_t)((cmd->expires_ts - now + 999) / 1000);

			rc = outbox_send(o, OUTBOX_COMMAND, cmd->id, 0, topic, js, (int)strlen(js), 0,
			    expiry);
			cJSON_free(js);
		}
		if (rc == TW_ERR_UNAVAIL || rc == TW_ERR_NOMEM)
			return;		/* stays first in the queue */
		unqueue(c, cmd);	/* in flight until its PUBACK, or until a reconnect */
		cmd->handed = 1;
		if (rc != TW_OK) {
			log_warnx("command %s: cannot be published on the topic of %s", cmd->id,
			    cmd->twin);
			continue;	/* the timer expires it */
		}
	}
}

void
commands_reconnected(struct commands *c)
{
	/* In issue order, rebuilt from the pending list; in-flight ids are void now. */
	c->queue = c->queue_last = NULL;
	for (struct command *cmd = c->first; cmd != NULL; cmd = cmd->next) {
		cmd->queued = 0;
		cmd->qprev = cmd->qnext = NULL;
		if (cmd->committed)
			enqueue(c, cmd);
	}
}

void
commands_taken(struct commands *c, const char *id)
{
	struct command *cmd;

	HASH_FIND_STR(c->by_id, id, cmd);
	if (cmd == NULL || cmd->queued)
		return;	/* answered before the PUBACK came, or a PUBACK of another connection */
	cmd->sent_ts = clock_now_ms();
	if (cmd->timeout_ms == 0) {
		cmd->acked_ts = cmd->sent_ts;
		settle(c, cmd, "done", "the asset does not answer commands: done when the broker "
		    "took it");
		return;
	}
	settle(c, cmd, "sent", NULL);
}

static int
event_row(void *arg, const struct store_command_row *row)
{
	return outbox_queue(arg, NULL, "command", row->twin, alert_command_json(row));
}

/* The event of a command that lives in SQLite only, read back after its change. */
static int
queue_event(struct store *st, struct outbox *o, const char *id)
{
	if (!outbox_listening(o))
		return TW_OK;
	return store_command_get(st, id, event_row, o) == TW_ERR_DB ? TW_ERR_DB : TW_OK;
}

void
commands_refused(struct commands *c, const char *id, int code)
{
	struct command *cmd;
	char why[96];

	HASH_FIND_STR(c->by_id, id, cmd);
	if (cmd == NULL || cmd->queued)
		return;
	snprintf(why, sizeof(why), "the broker refused it (MQTT reason code 0x%02x%s)", code,
	    code == 0x87 ? ", not authorized: check its ACL" : "");
	free(cmd->detail);
	cmd->detail = strdup(why);
	cmd->acked_ts = clock_now_ms();
	settle(c, cmd, "failed", cmd->detail != NULL ? cmd->detail : "the broker refused it");
	converge_cancel(c->converge, cmd->twin, cmd->id);
}

/* The answers an asset may give, as static strings: the record they came in is gone soon. */
static const char *
answer_status(const char *s)
{
	static const char *const known[] = { "done", "rejected", "failed" };

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(s, known[i]) == 0)
			return known[i];
	return NULL;
}

int
commands_answer(struct commands *c, struct store *st, struct outbox *o, const char *twin,
    const char *id, const char *status, const char *detail, int64_t ts, int *known)
{
	const char *reason = detail != NULL && detail[0] != '\0' ? detail : NULL;
	struct command *cmd;
	int changed = 0;

	*known = 0;
	if ((status = answer_status(status)) == NULL)
		return TW_OK;
	HASH_FIND_STR(c->by_id, id, cmd);
	if (cmd != NULL && strcmp(cmd->twin, twin) == 0 && cmd->committed) {
		/* The asset was faster than the broker's PUBACK: settled from memory. */
		cmd->sent_ts = cmd->sent_ts != 0 ? cmd->sent_ts : ts;
		settle(c, cmd, status, NULL);
	} else if (cmd == NULL) {
		/* Sent, but its row not committed yet: the answer goes into that row. */
		HASH_FIND(hh_settled, c->settled_by_id, id, strlen(id), cmd);
		if (cmd == NULL || strcmp(cmd->twin, twin) != 0 || strcmp(cmd->status, "sent") != 0)
			cmd = NULL;
		else
			cmd->status = status;
	} else {
		return TW_OK;
	}
	if (cmd != NULL) {
		*known = 1;
		cmd->acked_ts = ts;
		free(cmd->detail);
		cmd->detail = reason != NULL ? strdup(reason) : NULL;
		cmd->reason = cmd->detail;
		return reason != NULL && cmd->detail == NULL ? TW_ERR_NOMEM : TW_OK;
	}
	if (store_command_answer(st, id, twin, status, reason, ts, &changed) != TW_OK)
		return TW_ERR_DB;
	if (!changed)
		return TW_OK;
	*known = 1;
	metrics_command(status);
	return queue_event(st, o, id);
}

int
commands_expire(struct commands *c, struct store *st, struct outbox *o, int64_t now)
{
	char ids[SWEEP_MAX][COMMAND_ID_MAX];
	int n = 0;

	struct command *cmd, *next;

	/*
	 * Expired ones are the oldest (one TTL for all): a prefix of the issue
	 * order. Commands of the open batch are the newest, so the walk stops
	 * before them.
	 */
	for (cmd = c->first; cmd != NULL && cmd->committed && now >= cmd->expires_ts; cmd = next) {
		next = cmd->next;
		/* Queued again after a reconnect, it may have gone out before: not "not sent". */
		if (!cmd->handed)
			converge_cancel(c->converge, cmd->twin, cmd->id);
		settle(c, cmd, "expired", !cmd->handed ?
		    "not sent: the broker did not take it before expires_ts" :
		    "handed to the broker, which did not acknowledge it before expires_ts; "
		    "a bridge must not execute it after expires_ts");
	}
	if (store_commands_overdue(st, now, SWEEP_MAX, ids, &n) != TW_OK)
		return TW_ERR_DB;
	for (int i = 0; i < n; i++) {
		int changed;

		if (store_command_answer(st, ids[i], NULL, "timed_out",
		    "no answer from the asset in time", 0, &changed) != TW_OK)
			return TW_ERR_DB;
		if (changed) {
			metrics_command("timed_out");
			if (queue_event(st, o, ids[i]) != TW_OK)
				return TW_ERR_DB;
		}
	}
	return TW_OK;
}

int
commands_restore(struct commands *c, const struct store_command_row *row)
{
	struct commands_twin *t;
	struct command *cmd;

	if ((t = pending_of(c, row->twin, 1)) == NULL || (cmd = calloc(1, sizeof(*cmd))) == NULL)
		return TW_ERR_NOMEM;
	snprintf(cmd->id, sizeof(cmd->id), "%s", row->id);
	snprintf(cmd->twin, sizeof(cmd->twin), "%s", row->twin);
	cmd->command = strdup(row->command);
	cmd->params = strdup(row->params != NULL ? row->params : "{}");
	cmd->rule = row->rule != NULL ? strdup(row->rule) : NULL;
	cmd->by = row->issued_by != NULL ? strdup(row->issued_by) : NULL;
	if (cmd->command == NULL || cmd->params == NULL || (row->rule != NULL && cmd->rule == NULL) ||
	    (row->issued_by != NULL && cmd->by == NULL)) {
		command_free(cmd);
		return TW_ERR_NOMEM;
	}
	cmd->source_ts = row->source_ts;
	cmd->issued_ts = row->issued_ts;
	cmd->expires_ts = row->expires_ts > 0 ? row->expires_ts : row->issued_ts + c->ttl_ms;
	cmd->timeout_ms = row->timeout_ms;
	cmd->committed = 1;
	cmd->handed = 1;	/* a run before may have handed it over: it may have reached the asset */
	link_pending(c, cmd, t);
	/* Published once the broker is there. */
	enqueue(c, cmd);
	return TW_OK;
}

void
commands_cleanup(struct commands *c)
{
	struct commands_twin *t, *tmp;

	while (c->first != NULL) {
		struct command *cmd = c->first;

		unlink_pending(c, cmd);
		command_free(cmd);
	}
	free_settled(c);
	HASH_ITER(hh, c->twins, t, tmp) {
		HASH_DEL(c->twins, t);
		free(t);
	}
	commands_init(c, c->max, c->max_per_twin, c->ttl_ms, c->topic_tmpl);
}

int
commands_named(const struct model *m, const char *command, const struct command_policy *p)
{
	return m != NULL ? model_has_command(m, command) : p->allow_unmodelled;
}

int64_t
commands_timeout(const struct model *m, const char *command, const struct command_policy *p)
{
	const struct model_command *mc = model_command(m, command);
	int acked = mc != NULL && mc->acknowledged >= 0 ? mc->acknowledged : p->acknowledged;

	if (!acked)
		return 0;
	return mc != NULL && mc->timeout_ms > 0 ? mc->timeout_ms : p->timeout_ms;
}

/* The REST answer to a refusal; the command is stored refused either way. */
static void
refusal_answer(struct request *r, const struct envelope_verdict *v, const char *reason,
    const char *id)
{
	static const char *const codes[ENVELOPE__COUNT] = {
		[ENVELOPE_RANGE] = "out_of_range", [ENVELOPE_RATE] = "rate_limited",
		[ENVELOPE_INTERLOCK] = "interlock", [ENVELOPE_MANUAL] = "manual_mode",
		[ENVELOPE_INFLIGHT] = "refused",
	};
	int rate = v->refusal == ENVELOPE_RATE || v->refusal == ENVELOPE_INFLIGHT;

	request_fail(r, rate ? TW_ERR_FULL : TW_ERR_REFUSED, codes[v->refusal] != NULL ?
	    codes[v->refusal] : "refused", "%s (stored as refused: %s)", reason, id);
	r->retry_ms = v->retry_ms;
}

static int
result_row(void *arg, const struct store_command_row *row)
{
	cJSON **out = arg;

	*out = alert_command_json(row);
	return *out != NULL ? 0 : TW_ERR_NOMEM;
}

int
commands_request(struct commands *c, struct store *st, struct outbox *o, struct twin_map *m,
    struct twin *t, struct request *r, const struct command_policy *p)
{
	struct envelope_verdict v;
	struct command_spec spec;
	const char *dup;
	char id[COMMAND_ID_MAX], *params = NULL;
	const char *reason;
	int rc;

	if (!commands_named(t->model, r->command, p)) {
		if (t->model != NULL)
			request_fail(r, TW_ERR_REFUSED, "unknown_command", "%s has no command "
			    "'%.64s'", t->model_id, r->command);
		else
			request_fail(r, TW_ERR_REFUSED, "unknown_command", "%s has no model, so it "
			    "takes no command ([commands] allow_unmodelled = no)", t->id);
		return TW_ERR_REFUSED;
	}
	if (r->params != NULL && (params = cJSON_PrintUnformatted(r->params)) == NULL)
		return TW_ERR_NOMEM;
	/* Each waiting command holds its params: their size is part of the memory bound. */
	if (params != NULL && strlen(params) > COMMAND_PARAMS_MAX) {
		request_fail(r, TW_ERR_INVAL, "bad_request", "params are over %d bytes as JSON",
		    COMMAND_PARAMS_MAX);
		cJSON_free(params);
		return TW_ERR_INVAL;
	}
	/* The envelope reads the first of two, a bridge would execute the last. */
	if ((dup = value_json_dup_key(r->params)) != NULL) {
		request_fail(r, TW_ERR_INVAL, "bad_request", "params give \"%.64s\" twice", dup);
		cJSON_free(params);
		return TW_ERR_INVAL;
	}
	spec = (struct command_spec){ t->id, r->command, params, NULL, r->who[0] != '\0' ? r->who : NULL,
	    0, commands_timeout(t->model, r->command, p), ENVELOPE_OK, NULL };
	rc = commands_issue_judged(c, st, o, m, t, &spec, &v, id, &reason);
	cJSON_free(params);
	if (rc == TW_ERR_FULL) {
		refusal_answer(r, &v, reason, id);
		return TW_ERR_FULL;
	}
	if (rc != TW_OK)
		return rc;
	/* Its row, as the REST answer shows it (in the open batch, on the writer). */
	return store_command_get(st, id, result_row, &r->result) == TW_ERR_DB ? TW_ERR_DB : TW_OK;
}
