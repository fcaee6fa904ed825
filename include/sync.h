/*
 * The sync engine: one thread that drains the ring, applies updates to
 * the twins it owns, and commits them to the store in batches. It also
 * tells the MQTT thread how far the commits have come, so that the
 * broker is acknowledged only for what is on disk, and it serves the
 * changes other threads ask for (desired state, reloads) through a
 * request queue, so the twins keep one owner.
 */
#ifndef TW_SYNC_H
#define TW_SYNC_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "conf.h"
#include "model.h"
#include "plant.h"
#include "ring.h"
#include "rules.h"
#include "store.h"

struct sync;
struct mqtt;

/*
 * Takes ownership of the writer `store`, of one reference to `models` and
 * `rules`, and of `plant` (moved out: the caller's struct is left empty),
 * loads the twins from the store, applies the plant and binds the rules. Borrows `c` and `r`.
 * Returns NULL (and logs why) on failure.
 */
struct sync *sync_new(const struct conf *c, struct ring *r, struct store *store,
    struct model_set *models, struct plant *plant, struct rule_set *rules);
struct events;
/* Where it publishes (desired deltas, alerts) and emits live events; set before sync_start. */
void sync_set_mqtt(struct sync *s, struct mqtt *m, struct events *e);
/* Starts the thread. Returns 0 or TW_ERR_IO. */
int sync_start(struct sync *s);
/*
 * Once the producer has stopped: drains the ring, commits, and joins
 * the thread. Call after the MQTT thread has ended.
 */
void sync_stop(struct sync *s);
void sync_free(struct sync *s);

/*
 * MQTT thread: waits until every record up to `seq` is settled. Returns
 * 0 when all records in (after, seq] are committed; TW_ERR_DB when any of
 * them was not stored (their acknowledgements must not be written: the
 * broker will redeliver); or TW_ERR_TIMEOUT after `timeout_ms`.
 */
int sync_wait(struct sync *s, uint64_t after, uint64_t seq, int timeout_ms);

/* 1 while the last commit failed (for /healthz). */
int sync_failing(struct sync *s);

/* The model set in force, with a reference the caller drops with model_set_unref. */
struct model_set *sync_models(struct sync *s);
/* The rule set in force, with a reference the caller drops with rules_unref. */
struct rule_set *sync_rules(struct sync *s);

enum sync_req_type {
	SYNC_REQ_DESIRED = 1, SYNC_REQ_RELOAD, SYNC_REQ_COMMAND, SYNC_REQ_ALERT_ACK,
	SYNC_REQ_ALERT_SHELVE,
};

/*
 * A request to the sync engine, owned by the caller, who blocks in
 * sync_request until it is answered.
 */
struct sync_req {
	int type;
	/* SYNC_REQ_DESIRED */
	const char *twin;
	const cJSON *patch;		/* an object: property -> value, or null to remove */
	int has_if_match;
	uint64_t if_match;
	/* SYNC_REQ_RELOAD: ownership passes to the engine, even on failure */
	struct model_set *models;
	struct plant plant;
	struct rule_set *rules;
	/* SYNC_REQ_COMMAND (with twin) */
	const char *command;
	const cJSON *params;		/* an object, or NULL */
	/* SYNC_REQ_ALERT_ACK, SYNC_REQ_ALERT_SHELVE */
	int64_t alert_id;
	int64_t shelve_ms;
	/* The answer. */
	int status;			/* 200, 202, 404, 412, 422, 500, 503 */
	cJSON *result;			/* COMMAND, ALERT_*: the object; the caller frees it */
	char code[32];			/* error code for the REST error object */
	char message[256];
	uint64_t version;		/* the twin's version afterwards */
	/* Engine's bookkeeping. */
	int done;
	struct sync_req *next;
};

/* Queues `r` and waits for the answer. Thread-safe. */
void sync_request(struct sync *s, struct sync_req *r);

#endif
