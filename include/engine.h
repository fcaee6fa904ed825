/*
 * The engine: one thread that drains the ring, applies updates to the
 * twins it alone owns, runs the rules, and commits everything a batch
 * changed (telemetry, alerts, commands, desired state) in one SQLite
 * transaction: a group commit. Only after the commit does anything go out
 * (the outbox), and only then does the MQTT thread acknowledge (the
 * progress it advances). Other threads ask for changes through requests.
 *
 * It calls down into its rooms (apply, runtime, alerts, desired,
 * commands, outbox, restore, twin_doc); none of them knows the engine.
 */
#ifndef TW_ENGINE_H
#define TW_ENGINE_H

#include "conf.h"
#include "events.h"
#include "model.h"
#include "plant.h"
#include "progress.h"
#include "publish.h"
#include "request.h"
#include "ring.h"
#include "rules.h"
#include "store.h"

struct engine;

/*
 * Takes ownership of the writer `store`, of one reference to `models` and
 * `rules`, and of `plant` (moved out: the caller's struct is left empty);
 * loads the twins, applies the plant and binds the rules. Borrows the
 * rest for its lifetime. Returns NULL (and logs why) on failure.
 */
struct engine *engine_new(const struct conf *c, struct ring *r, struct progress *p,
    const struct publisher *pub, struct events *ev, struct store *store,
    struct model_set *models, struct plant *plant, struct rule_set *rules);
/* Starts the thread. Returns 0 or TW_ERR_IO. */
int engine_start(struct engine *e);
/* Once the producer has stopped: drains the ring, commits, and joins the thread. */
void engine_stop(struct engine *e);
void engine_free(struct engine *e);

/* Any thread: queues `r` and waits for the answer (see request.h). */
void engine_request(struct engine *e, struct request *r);
/* Any thread: the model set in force, referenced; drop it with model_set_unref. */
struct model_set *engine_models(struct engine *e);
/* Any thread: the rule set in force, referenced; drop it with rules_unref. */
struct rule_set *engine_rules(struct engine *e);
/* Any thread: NULL while ingesting, else why not (broker, subscription, database). */
const char *engine_health(struct engine *e);

#endif
