/*
 * What-if: a dry run of the rules on copies of a twin and its children.
 * The copies carry the twins' values, desired state, windows and rule
 * states; the given readings and desired values are applied to them at
 * scenario times, and the rules runtime decides on them exactly as it
 * does live. What it decides (alerts raised and cleared, commands and
 * desired changes of the rules' actions, after the checks they would
 * meet) is described, never done: nothing is stored, published or
 * counted. Runs on the engine's thread, which alone may read the twins;
 * holds nothing between calls.
 */
#ifndef TW_WHATIF_H
#define TW_WHATIF_H

#include "commands.h"
#include "request.h"
#include "runtime.h"
#include "twin.h"

#define WHATIF_TWINS_MAX	64	/* the twin and its children, copied */
#define WHATIF_STEPS_MAX	100
#define WHATIF_VALUES_MAX	256	/* readings and desired values in one request, all steps */
#define WHATIF_EVALS_MAX	200000	/* rule evaluations (and windows held) one request may cost */
#define WHATIF_TIME_MAX_MS	200	/* engine time one request may take; ingestion waits meanwhile */
#define WHATIF_AT_MAX_MS	(366LL * 86400000LL)	/* how far ahead a scenario may look */

struct whatif_env {
	struct twin_map *twins;			/* borrowed: read, never changed */
	const struct runtime *runtime;		/* borrowed */
	const struct command_policy *policy;	/* borrowed: [commands] */
	struct store *store;			/* the writer's: read for the envelope's rate */
	const struct status_rule *fresh;	/* the envelope's conditions distrust stale values */
	int stale_factor;			/* [twins] */
};

/*
 * The body's shape, on the REST side: {"reported", "desired", "at",
 * "steps": [{"at", "twin", "reported", "desired"}]}, with bounds. 0, or
 * -1 with a message in `err`.
 */
int whatif_check(const cJSON *body, char *err, size_t len);

/*
 * REQ_SIMULATE: r->twin, r->depth, and r->patch the request body, whose
 * shape the REST side checked. Answers r->result, or fails `r` with
 * TW_ERR_NOTFOUND (an unknown twin), TW_ERR_REFUSED (a value the model
 * refuses, a step for a twin outside the copy, too many twins or too
 * much work), or TW_ERR_NOMEM.
 */
void whatif_run(const struct whatif_env *w, struct request *r);

#endif
