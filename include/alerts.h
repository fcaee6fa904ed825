/*
 * Alerts: rows in the store, raised and cleared by rules and by the
 * engine's own convergence check, acknowledged and shelved by operators
 * (ISA-18.2). Every change is published on {alert_topic} and sent as a
 * live event after its commit. Holds no state of its own: the rows live
 * in SQLite, the rule state that points at them in each twin.
 */
#ifndef TW_ALERTS_H
#define TW_ALERTS_H

#include <stdint.h>

#include "ingest.h"
#include "outbox.h"
#include "request.h"
#include "store.h"
#include "twin.h"

struct alerts {
	struct store *store;		/* borrowed: the writer */
	struct outbox *outbox;		/* borrowed */
	const char *topic_tmpl;		/* borrowed: [mqtt] alert_topic */
	int64_t converge_ms;		/* [twins] converge_timeout */
};

/* An alert row copied out of its statement, so that other statements may run. */
struct alert_copy {
	struct store_alert_row row;
	char twin[TWIN_ID_MAX + 1], rule[128], severity[16], message[512], str[STR_VALUE_MAX + 1];
	char acked_by[TOKEN_NAME_MAX + 1], shelved_by[TOKEN_NAME_MAX + 1];
	int found;
};

/* Raises `a` (active, with its raise time) in the open batch; its id goes into a->id. 0 or TW_ERR_DB. */
int alerts_raise(struct alerts *al, struct store_alert_row *a);
/*
 * Clears alert `id` in the open batch: only active and cleared_ts change,
 * so the message and value that raised it, and the operator's
 * acknowledgement and shelf, stay. 0 or TW_ERR_DB.
 */
int alerts_clear(struct alerts *al, int64_t id, int64_t now);
/*
 * An operator's REQ_ALERT_ACK or REQ_ALERT_SHELVE in the open batch.
 * Returns 0 with the changed row in *out, or TW_ERR_NOTFOUND / TW_ERR_DB
 * (with `r` filled).
 */
int alerts_operate(struct alerts *al, struct request *r, int64_t now, struct alert_copy *out);
/*
 * desired_not_converged on `t` at wall time `now`: raised once per episode
 * when a desired value is still not reported past its timeout, cleared
 * when nothing is overdue. 0 or TW_ERR_DB.
 */
int alerts_converge(struct alerts *al, struct twin *t, int64_t now);

#endif
