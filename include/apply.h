/*
 * Applying one telemetry update to its twin: finding or creating the twin,
 * checking every value against its model, writing history and the
 * reported state into the open batch, and feeding the rules' windows with
 * what is new. Owns nothing; works on the engine's twins and store.
 */
#ifndef TW_APPLY_H
#define TW_APPLY_H

#include "desired.h"
#include "history.h"
#include "ingest.h"
#include "runtime.h"
#include "store.h"
#include "twin.h"

struct apply {
	struct twin_map *twins;		/* borrowed */
	struct store *store;		/* borrowed: the writer */
	struct history *hist;		/* borrowed: the writer's history tiers */
	struct desired_out *desired;	/* borrowed */
	const struct runtime *runtime;	/* borrowed: binds a new twin to its rules */
	int auto_create;
	int max_twins;
	int max_props_per_twin;
	const char **names;		/* scratch: the interned names of one record, max_properties */
	int partial;			/* the last load left twins on disk that memory lacks */
};

/*
 * The twin of update `r`, created when it is new and may be: with every
 * value checked against the model and every name interned into
 * a->names. NULL with *reason (enum ingest_reason) when the update is to
 * be dropped; nothing is changed then, not even the name table.
 */
struct twin *apply_twin(struct apply *a, const struct rec *r, int *reason);

/*
 * Applies `r` to `t` (from apply_twin) in the open batch. Returns 0 or
 * TW_ERR_DB / TW_ERR_NOMEM.
 */
int apply_values(struct apply *a, struct twin *t, const struct rec *r);

#endif
