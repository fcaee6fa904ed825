/*
 * Restore: the twins, their reported and desired state, open alerts and
 * pending commands, read back from the store at start and after a failed
 * commit. After a failure the rule states and windows in memory are the
 * truth (the store has no copy of them): they are carried across the
 * reload by twin id. Holds nothing once it returns.
 */
#ifndef TW_RESTORE_H
#define TW_RESTORE_H

#include "commands.h"
#include "model.h"
#include "plant.h"
#include "runtime.h"
#include "store.h"
#include "twin.h"

struct restore {
	struct twin_map *twins;		/* borrowed: emptied and refilled */
	const struct model_set *models;	/* borrowed */
	const struct status_rule *status;
	const struct runtime *runtime;	/* binds every twin to its rules and open alerts */
	struct commands *commands;	/* pending commands go here; NULL: keep those in memory */
	struct runtime_opened opened;	/* scratch */
	struct restore_kept *kept;	/* scratch: rule state carried across a reload */
	unsigned skipped;		/* twins beyond max_twins or memory_max */
	unsigned skipped_props;		/* properties beyond memory_max */
	int partial;			/* out: twins on disk were not loaded */
	size_t reserved;		/* scratch: what binding the loaded twins' rules will cost */
	struct twin *last;		/* scratch: the twin of the last row */
	int64_t now, mono;		/* the clocks when the load began */
};

/*
 * Empties the map and loads it from `st`. With `keep_rules`, each twin
 * gets back the rule states and windows it had. Returns 0, or a TW_ERR_*
 * code (the map is then partial and must not be used).
 */
int restore_load(struct restore *r, struct store *st, int keep_rules);

/*
 * Applies the twins file in the open batch: creates missing twins, sets
 * models and parents, binds their rules. 0 or TW_ERR_NOMEM.
 */
int restore_plant(struct twin_map *m, const struct model_set *models, const struct runtime *rt,
    const struct plant *p);

/*
 * After a reload: every twin gets its model from `models` and its rules
 * from `rt`, keeping rule state by name. On TW_ERR_NOMEM no twin has rule
 * state left (none points into a freed set).
 */
int restore_rebind(struct twin_map *m, const struct model_set *models, const struct runtime *rt);

#endif
