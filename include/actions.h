/*
 * The live side of the rules: the effects the runtime returns, made real
 * in the open batch. A raise becomes an alert row and its actions (a
 * command stored to be sent after the commit, a desired change checked
 * like an operator's); a clear clears the row, keeping its
 * acknowledgement. A what-if or a backtest applies the same effects
 * differently, or not at all. Owns nothing.
 */
#ifndef TW_ACTIONS_H
#define TW_ACTIONS_H

#include <stdint.h>

#include "alerts.h"
#include "commands.h"
#include "desired.h"
#include "log.h"
#include "runtime.h"

struct actions {
	struct alerts *alerts;		/* all borrowed */
	struct commands *commands;
	struct desired_out *desired;
	struct twin_map *twins;
	struct store *store;
	struct outbox *outbox;
	struct command_policy policy;	/* [commands] */
	const struct status_rule *status;	/* the envelope distrusts stale values */
	struct log_limit *log;		/* refusals are logged at a limited rate */
};

/*
 * Applies `fx` (from runtime_eval on `t`) in the open batch; `source_ts`
 * is the ts of the update that caused them. A refused action is logged
 * and counted on its rule. Returns 0 or TW_ERR_DB / TW_ERR_NOMEM.
 */
int actions_apply(struct actions *a, struct twin *t, const struct effects *fx,
    int64_t source_ts);

#endif
