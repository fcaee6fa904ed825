/*
 * Commands until convergence: a command is not done when the broker or
 * the asset acknowledges it, but when the twin's reported state shows its
 * effect. The model says what that is, on a Command (twind's DTDL
 * extension "effect"):
 *
 *   "effect": {"property": "speed", "param": "rpm", "timeout": "30s"}
 *       speed reaches params.rpm (within "tolerance", else the
 *       property's model tolerance, else exactly);
 *   "effect": {"property": "running", "value": false}
 *       running reaches that value;
 *   "effect": {"property": "state"}
 *       state is reported with a value other than the one it had when
 *       the command was issued.
 *
 * From its issue, a watched command's effect is `waiting`; it is
 * `converged` (at the reading's ts) by the first reading measured between
 * the issue and the deadline (issued + timeout, default 60 s) that shows
 * it, whatever the asset answered: the state is what counts. A target
 * that already held, with no reading since, is converged once the
 * deadline has passed (an asset that reports on change says nothing new).
 * Otherwise it is `not_converged` at the deadline: judged by a later
 * reading, or by the timer CONVERGE_GRACE_MS after it (readings in the
 * ring or redelivered by the broker are judged by their ts first). A
 * command that never reached the broker (expired unsent, or refused by
 * it, or by the envelope when it was to go) is `not_sent`.
 *
 * The watches are kept in memory, by twin, and in the commands table
 * (effect, effect_deadline_ts, effect_from), written in the batch that
 * issued or judged them; after a failed batch or at start they are read
 * back from the table. Bounded by CONVERGE_PER_TWIN per twin and
 * CONVERGE_MAX plant-wide: beyond, a command goes unwatched (its effect
 * stays null) and is counted. Owned by the engine's thread.
 */
#ifndef TW_CONVERGE_H
#define TW_CONVERGE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "outbox.h"
#include "store.h"
#include "twin.h"
#include "value.h"

#define CONVERGE_MAX		10000	/* commands watched at once, plant-wide */
#define CONVERGE_PER_TWIN	100	/* and per twin: each of its updates looks at them all */
#define CONVERGE_GRACE_MS	2000	/* after a deadline, for readings on their way */
#define CONVERGE_OVER_MAX	64	/* rows beyond the bounds ended per reload (more: the next) */

enum converge_outcome {
	CONVERGE_CONVERGED, CONVERGE_NOT_CONVERGED, CONVERGE_NOT_WATCHED, CONVERGE_NOT_SENT,
	CONVERGE_OUTCOMES
};
/* "converged", "not_converged", "not_watched", "not_sent": the metric's label. */
const char *converge_outcome_name(int outcome);
#define CONVERGE_TIMEOUT_MS	60000	/* "timeout" when the effect does not say */

/* What a Command's effect is, from the model. Immutable; owned by the model. */
struct command_effect {
	char *property;		/* full (dotted) name */
	char *param;		/* reaches params[param]; NULL: see value */
	int has_value;
	struct tw_val value;	/* reaches this (a string is owned); neither: changes */
	int has_tolerance;
	double tolerance;
	int64_t timeout_ms;
};

/* Parses the "effect" object; NULL with a message in `err`. */
struct command_effect *converge_parse(const cJSON *o, char *err, size_t len);
void converge_effect_free(struct command_effect *e);

struct converge;

/* NULL on allocation failure or when the statements cannot be prepared (logged). */
struct converge *converge_open(struct store *st, struct outbox *o, struct twin_map *m);
void converge_close(struct converge *c);

/*
 * Watches command `id` (just issued at `issued` in the open batch, params
 * as JSON text) on twin `t`, whose model names `effect`: its row becomes
 * `waiting`. Returns TW_OK (also when unwatched beyond a bound or when
 * its target cannot be read from the params: logged and counted), or
 * TW_ERR_DB / TW_ERR_NOMEM.
 */
int converge_watch(struct converge *c, struct twin *t, const char *id,
    const struct command_effect *effect, const char *params, int64_t issued);
/*
 * Command `id` of `twin` never reached the broker: its watch ends, and
 * the next batch writes it `not_sent` (converge_flush). In memory.
 */
void converge_cancel(struct converge *c, const char *twin, const char *id);
/* Before the commit: writes the cancelled watches. TW_OK or TW_ERR_DB. */
int converge_flush(struct converge *c, int64_t now);
/* The batch is on disk: the cancelled are written (a failed one keeps them for the next). */
void converge_commit(struct converge *c);

/* Twin `t` has new reported values (in the open batch): judges its watches. TW_OK or TW_ERR_DB. */
int converge_reported(struct converge *c, struct twin *t, int64_t now);
/* The 1-s timer: watches past their deadline are not converged. TW_OK or TW_ERR_DB. */
int converge_expire(struct converge *c, int64_t now);
/*
 * The watches as the store has them: at start, and after a failed batch
 * (which may have judged or added some). TW_OK, or TW_ERR_DB / TW_ERR_NOMEM.
 */
int converge_reload(struct converge *c);
/* Commands watched now (for /metrics). */
unsigned converge_watched(const struct converge *c);

#endif
