/* The engine's service to other threads: REST writes, simulations and reloads, between records. */
#include <pthread.h>
#include <string.h>

#include "alert.h"
#include "anomaly_store.h"
#include "clock.h"
#include "engine_room.h"
#include "err.h"
#include "restore.h"
#include "whatif.h"

/* Commits the open batch so that a request starts from committed state. */
static int
serve_begin(struct engine *e, struct request *r)
{
	if ((e->in_txn && batch_commit(e) != TW_OK) || batch_begin(e) != TW_OK) {
		if (e->in_txn)
			batch_fail(e, "begin");
		request_fail(r, TW_ERR_UNAVAIL, "unavailable", "the database is failing; try again");
		return TW_ERR_DB;
	}
	return TW_OK;
}

/* Commits what a request changed; on failure nothing of it happened. */
static void
serve_commit(struct engine *e, struct request *r)
{
	if (batch_commit(e) != TW_OK)
		request_fail(r, TW_ERR_UNAVAIL, "unavailable",
		    "the database is failing; nothing was changed");
}

static struct twin *
serve_twin(struct engine *e, struct request *r)
{
	struct twin *t = twin_find(e->twins, r->twin, strlen(r->twin));

	if (t == NULL)
		request_fail(r, TW_ERR_NOTFOUND, "not_found", "no twin '%s'", r->twin);
	return t;
}

/* A desired patch or a command: the room's work in a batch of its own. */
static void
serve_twin_request(struct engine *e, struct request *r)
{
	struct twin *t = serve_twin(e, r);
	int rc;

	if (t == NULL || serve_begin(e, r) != TW_OK)
		return;
	if (r->type == REQ_DESIRED)
		rc = desired_request(&e->desired, e->twins, t, r, clock_now_ms(), &e->status_rule);
	else
		rc = commands_request(&e->commands, e->store, &e->outbox, e->twins, t, r,
		    &e->actions.policy);
	if (rc == TW_ERR_DB || rc == TW_ERR_NOMEM) {
		batch_fail(e, "serving a request");
		cJSON_Delete(r->result);
		r->result = NULL;
		request_fail(r, TW_ERR_UNAVAIL, "unavailable",
		    "the database is failing; nothing was changed");
		return;
	}
	/* A refusal commits too: a refused command is stored with its reason. */
	serve_commit(e, r);
}

/* Acknowledge or shelve an alert: the operator's side of its life (ISA-18.2). */
static void
serve_alert(struct engine *e, struct request *r)
{
	struct alert_copy a = { 0 };
	struct twin *t;

	if (serve_begin(e, r) != TW_OK)
		return;
	if (alerts_operate(&e->alerts, r, clock_now_ms(), &a) != TW_OK) {
		/* Nothing was written: the open batch commits empty. */
		batch_commit(e);
		return;
	}
	/* A shelved rule does not raise again until the shelf expires. */
	if ((t = twin_find(e->twins, a.row.twin, strlen(a.row.twin))) != NULL) {
		batch_touch(e, t);
		runtime_shelve(t, a.row.id, a.row.rule, a.row.shelved_until_ts);
	}
	serve_commit(e, r);
	if (r->err == TW_OK)
		r->result = alert_json(&a.row);
}

static void
serve_reload(struct engine *e, struct request *r)
{
	struct model_set *old_models;
	struct rule_set *old_rules;
	struct runtime old_rt = e->runtime;

	if (e->in_txn && batch_commit(e) != TW_OK) {
		request_fail(r, TW_ERR_UNAVAIL, "unavailable", "the database is failing; try again");
		return;
	}
	pthread_mutex_lock(&e->lock);
	old_models = e->models;
	e->models = r->models;
	old_rules = e->rules;
	e->rules = r->rules;
	pthread_mutex_unlock(&e->lock);
	r->models = NULL;
	r->rules = NULL;
	/* Unchanged rules keep their state: the old set lives until every twin is rebound. */
	if (runtime_init(&e->runtime, e->rules, e->twins) != TW_OK ||
	    restore_rebind(e->twins, e->models, &e->runtime) != TW_OK)
		log_warnx("reload: out of memory binding the rules; no rule runs until the next "
		    "reload");
	runtime_cleanup(&old_rt);
	/* A rule the reload added may read a detector saved before. */
	if (anomaly_store_load(e->anomalies, e->twins, clock_now_ms()) < 0)
		log_warnx("reload: the anomaly detectors learn anew");
	if (batch_begin(e) != TW_OK || restore_plant(e->twins, e->models, &e->runtime, &r->plant) != TW_OK ||
	    batch_commit(e) != TW_OK) {
		if (e->in_txn)
			batch_fail(e, "applying the twins file");
		request_fail(r, TW_ERR_UNAVAIL, "unavailable", "reload failed; see the log");
	} else {
		log_info("reloaded: %d models, %d twins in the twins file, %d rules",
		    model_count(e->models), r->plant.n, e->rules->n);
	}
	plant_cleanup(&r->plant);
	/* Twins now point into the new sets only. */
	model_set_unref(old_models);
	rules_unref(old_rules);
}

/*
 * At most SERVE_BUDGET_MS of requests at a time (one at least), then back
 * to the ring and the timer: clients that keep the queue full (two
 * what-ifs in a loop) must not stop ingestion, nor the engine's heartbeat.
 * The ring then gets as long as the requests took (serve_due).
 */
#define SERVE_BUDGET_MS	50
/* A failing database is not reloaded for every request: the timer retries too. */
#define SERVE_RELOAD_MS	200

int
serve_due(struct engine *e, int ring_busy)
{
	if (!request_pending(&e->requests))
		return 0;
	return !ring_busy || clock_mono_ms() >= e->serve_next_ms;
}

void
serve_requests(struct engine *e)
{
	int64_t start = clock_mono_ms(), until;
	struct request *r;

	if (e->map_invalid && !e->in_txn && start >= e->serve_reload_ms) {
		e->serve_reload_ms = start + SERVE_RELOAD_MS;
		if (batch_reload(e) == TW_OK)
			e->map_invalid = 0;
	}
	/* Counted after the reload: a slow reload still leaves a request served. */
	until = clock_mono_ms() + SERVE_BUDGET_MS;
	while ((r = request_next(&e->requests)) != NULL) {
		r->err = TW_OK;
		/* The twins in memory are not the truth until a load works. */
		if (e->map_invalid) {
			request_fail(r, TW_ERR_UNAVAIL, "unavailable", "the database is failing; try "
			    "again");
		} else switch (r->type) {
		case REQ_DESIRED:
		case REQ_COMMAND:
			serve_twin_request(e, r);
			break;
		case REQ_RELOAD:
			serve_reload(e, r);
			break;
		case REQ_SIMULATE: {
			/* Reads the twins and changes nothing: no batch of its own. */
			struct whatif_env w = { e->twins, &e->runtime, &e->actions.policy,
			    e->store, &e->status_rule, e->conf->stale_factor };

			whatif_run(&w, r);
			break;
		}
		default:
			serve_alert(e, r);
		}
		request_done(&e->requests, r);
		if (clock_mono_ms() >= until)
			break;
	}
	/* The ring's share: as long as these requests took. */
	e->serve_next_ms = 2 * clock_mono_ms() - start;
}
