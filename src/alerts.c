/* Alert rows: raise, clear, acknowledge, shelve, and the engine's convergence alert. */
#include <stdio.h>
#include <string.h>

#include "alert.h"
#include "alerts.h"
#include "desired.h"
#include "err.h"
#include "log.h"
#include "topic.h"

#define CONVERGE_RULE	"desired_not_converged"

/* Queues the row (REST shape) for {alert_topic} and the event stream, after the commit. */
static int
queue(struct alerts *al, const struct store_alert_row *a)
{
	char topic[TOPIC_MAX];

	if (topic_format(al->topic_tmpl, a->twin, topic, sizeof(topic)) != TW_OK)
		return TW_OK;	/* the configuration check refuses such templates */
	/* Out of memory: the row is stored; only its announcement is lost. */
	outbox_queue(al->outbox, topic, "alert", a->twin, alert_json(a));
	return TW_OK;
}

static int
copy_row(void *arg, const struct store_alert_row *a)
{
	struct alert_copy *c = arg;

	c->row = *a;
	snprintf(c->twin, sizeof(c->twin), "%s", a->twin);
	snprintf(c->rule, sizeof(c->rule), "%s", a->rule);
	snprintf(c->severity, sizeof(c->severity), "%s", a->severity);
	snprintf(c->message, sizeof(c->message), "%s", a->message);
	c->row.twin = c->twin;
	c->row.rule = c->rule;
	c->row.severity = c->severity;
	c->row.message = c->message;
	snprintf(c->acked_by, sizeof(c->acked_by), "%s", a->acked_by != NULL ? a->acked_by : "");
	snprintf(c->shelved_by, sizeof(c->shelved_by), "%s",
	    a->shelved_by != NULL ? a->shelved_by : "");
	c->row.acked_by = a->acked_by != NULL ? c->acked_by : NULL;
	c->row.shelved_by = a->shelved_by != NULL ? c->shelved_by : NULL;
	if (a->val.type == VAL_STR) {
		snprintf(c->str, sizeof(c->str), "%s", a->val.str);
		c->row.val.str = c->str;
	}
	c->found = 1;
	return 0;
}

int
alerts_raise(struct alerts *al, struct store_alert_row *a)
{
	a->active = 1;
	if (store_alert_add(al->store, a, &a->id) != TW_OK)
		return TW_ERR_DB;
	return queue(al, a);
}

int
alerts_clear(struct alerts *al, int64_t id, int64_t now)
{
	struct alert_copy a = { 0 };

	if (store_alert_clear(al->store, id, now) != TW_OK ||
	    store_alert_get(al->store, id, copy_row, &a) != TW_OK)
		return TW_ERR_DB;
	return queue(al, &a.row);
}

int
alerts_operate(struct alerts *al, struct request *r, int64_t now, struct alert_copy *out)
{
	int rc = store_alert_get(al->store, r->alert_id, copy_row, out);

	if (rc == TW_ERR_NOTFOUND || (rc == TW_OK && !out->found)) {
		request_fail(r, TW_ERR_NOTFOUND, "not_found", "no alert %lld", (long long)r->alert_id);
		return TW_ERR_NOTFOUND;
	}
	if (rc != TW_OK) {
		request_fail(r, TW_ERR_DB, "internal", "the database is failing");
		return TW_ERR_DB;
	}
	if (r->type == REQ_ALERT_ACK) {
		/* The first acknowledgement stands: its time and who gave it. */
		if (!out->row.acknowledged) {
			out->row.acknowledged = 1;
			out->row.acked_ts = now;
			snprintf(out->acked_by, sizeof(out->acked_by), "%s", r->who);
			out->row.acked_by = r->who[0] != '\0' ? out->acked_by : NULL;
			log_info("alert %lld (%s %s) acknowledged by %s", (long long)out->row.id,
			    out->row.twin, out->row.rule, r->who[0] != '\0' ? r->who : "anonymous");
		}
	} else {
		out->row.shelved_until_ts = now + r->shelve_ms;
		snprintf(out->shelved_by, sizeof(out->shelved_by), "%s", r->who);
		out->row.shelved_by = r->who[0] != '\0' ? out->shelved_by : NULL;
		log_info("alert %lld (%s %s) shelved for %llds by %s", (long long)out->row.id,
		    out->row.twin, out->row.rule, (long long)(r->shelve_ms / 1000),
		    r->who[0] != '\0' ? r->who : "anonymous");
	}
	if (store_alert_put(al->store, &out->row) != TW_OK) {
		request_fail(r, TW_ERR_DB, "internal", "the database is failing");
		return TW_ERR_DB;
	}
	return queue(al, &out->row);
}

int
alerts_converge(struct alerts *al, struct twin *t, int64_t now)
{
	const struct desired *de = desired_overdue(t, now, al->converge_ms);
	struct store_alert_row a = { .twin = t->id, .rule = CONVERGE_RULE, .severity = "warning" };
	char msg[256];

	if ((de != NULL) == (t->alert_id != 0))
		return TW_OK;
	if (de == NULL) {
		if (alerts_clear(al, t->alert_id, now) != TW_OK)
			return TW_ERR_DB;
		t->alert_id = 0;
		log_info("twin %s: alert " CONVERGE_RULE " cleared", t->id);
		return TW_OK;
	}
	snprintf(msg, sizeof(msg), "%s has not reached its desired value within %llds",
	    de->name, (long long)(desired_timeout(de, al->converge_ms) / 1000));
	a.message = msg;
	a.val = de->val;
	a.raised_ts = now;
	if (alerts_raise(al, &a) != TW_OK)
		return TW_ERR_DB;
	t->alert_id = a.id;
	t->alert_raised_ts = now;
	log_info("twin %s: alert " CONVERGE_RULE " raised: %s", t->id, msg);
	return TW_OK;
}
