/* The engine: the record loop on its thread, each record applied, and its life (new, start, stop). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "anomaly_store.h"
#include "clock.h"
#include "converge.h"
#include "engine_room.h"
#include "envelope.h"
#include "err.h"
#include "metrics.h"
#include "restore.h"
#include "retention.h"

static int
apply_update(struct engine *e, const struct rec *r)
{
	struct twin *t;
	int64_t seen;
	int reason, rc;

	if ((t = apply_twin(&e->apply, r, &reason)) == NULL) {
		metrics_add(&metrics.dropped[reason], 1);
		log_limited(&e->drop_log, "twin %s: message dropped: %s", r->id,
		    ingest_reason_name(reason));
		return TW_OK;
	}
	/* Windows and `for` timers as they were, should this batch fail. */
	if (t->nrs > 0)
		batch_touch(e, t);
	seen = t->last_seen_ts;
	if ((rc = apply_values(&e->apply, t, r)) != TW_OK ||
	    /* Nothing, not even the clock, while no command waits for its effect. */
	    (converge_watched(e->converge) > 0 &&
	    (rc = converge_reported(e->converge, t, clock_now_ms())) != TW_OK))
		return rc;
	e->batch_msgs++;
	e->batch_vals += r->nvals;
	/*
	 * Back online at its message, not up to a tick later: and the twins a
	 * burst created do not all change status together at the next tick,
	 * a burst that would cut off every screen with a small buffer. Only
	 * when the message was news of the twin (a retained one is not): a
	 * change that time made is the timer's, said at once, since a
	 * rollback would drop it and the reload would judge it silently.
	 * Judged on the timer's clock: with the message's arrival time instead,
	 * a backlog longer than stale_after made the two disagree, and flap.
	 */
	if (t->last_seen_ts != seen)
		timer_judge_status(e, t, clock_now_ms(), 1);
	/* Only the rules that read one of these properties. */
	return batch_run_rules(e, t, e->names, r->nvals, r->ts);
}


/*
 * Broker news (a PUBACK, a new connection) is applied in memory, whatever
 * the database does: the broker will not say it again. Its rows are
 * written with the next commit.
 */
static void
engine_news(struct engine *e, const struct rec *r)
{
	struct outbox_ack ack;

	if (r->kind == REC_CONNECTED) {
		/* The client started afresh: whatever the broker had not acknowledged goes again. */
		outbox_reconnected(&e->outbox, r->gen);
		commands_reconnected(&e->commands);
		if (!e->map_invalid)
			twin_each(e->twins, batch_want_pending, e);
		return;
	}
	if (!outbox_puback(&e->outbox, (int)r->mid, &ack))
		return;
	if (r->reason != 0) {
		log_limited(&e->drop_log, "mqtt: the broker refused our publication for %s "
		    "(reason code 0x%02x): check its ACL", ack.key, r->reason);
		/* A refused delta stays pending: it goes again after the next reconnect. */
		if (ack.kind == OUTBOX_COMMAND)
			commands_refused(&e->commands, ack.key, r->reason);
		return;
	}
	if (ack.kind == OUTBOX_COMMAND)
		commands_taken(&e->commands, ack.key);
	else if (!e->map_invalid)
		desired_taken(e->twins, &ack);
}

static int
engine_answer(struct engine *e, const struct rec *r)
{
	const char *id = rec_body(r), *status = id + strlen(id) + 1;
	const char *detail = status + strlen(status) + 1;
	int known;

	if (commands_answer(&e->commands, e->store, &e->outbox, r->id, id, status, detail,
	    r->arrival_ms, &known) != TW_OK)
		return TW_ERR_DB;
	if (!known)
		log_limited(&e->drop_log, "twin %s: answer to unknown or settled command %s (%s)",
		    r->id, id, status);
	return TW_OK;
}

static int
engine_record(struct engine *e, const struct rec *r)
{
	if (e->map_invalid && !e->in_txn) {
		if (batch_reload(e) == TW_OK)
			e->map_invalid = 0;
		else
			e->failed_gen = r->gen;
	}
	/*
	 * Records read on a connection whose batch failed are refused (their
	 * acknowledgements are never written), except what acknowledges
	 * nothing to the broker: PUBACKs and connection news.
	 */
	if (r->gen <= e->failed_gen && r->kind != REC_PUBACK && r->kind != REC_CONNECTED) {
		progress_advance(e->progress, 0, r->seq);
		return TW_OK;
	}
	if (r->kind == REC_PUBACK || r->kind == REC_CONNECTED) {
		engine_news(e, r);
		/* Committed with the next batch; opened here so that it comes. */
		if (!e->map_invalid && batch_begin(e) != TW_OK)
			batch_fail(e, "begin");
		/* A new connection: what waited for it goes out now, not with the next batch. */
		else if (r->kind == REC_CONNECTED && e->in_txn)
			batch_commit(e);
		return TW_OK;
	}
	if (r->kind == REC_FLUSH) {
		if (e->in_txn) {
			e->batch_seq = r->seq;
			batch_commit(e);
		} else {
			progress_advance(e->progress, r->seq, 0);
		}
		return TW_OK;
	}
	if (batch_begin(e) != TW_OK) {
		e->batch_gen = r->gen;
		e->batch_seq = r->seq;
		e->batch_msgs = 0;
		batch_fail(e, "begin");
		return TW_OK;
	}
	e->batch_seq = r->seq;
	e->batch_gen = r->gen;
	switch (r->kind) {
	case REC_QUARANTINE:
		if (e->conf->quarantine_max > 0 &&
		    store_quarantine_put(e->store, r->arrival_ms, r->id, ingest_reason_name(r->reason),
		    rec_body(r), (int)r->body_len, e->conf->quarantine_max) != TW_OK)
			return TW_ERR_DB;
		metrics_add(&metrics.quarantined, 1);
		return TW_OK;
	case REC_CMD_ACK:
		return engine_answer(e, r);
	}
	return apply_update(e, r);
}


/* commands.c's recheck: a command that waited, judged by its envelope as the twin is now. */
static int
recheck(void *arg, const char *twin, const char *command, int automatic,
    struct envelope_verdict *v)
{
	struct engine *e = arg;
	struct twin *t = twin_find(e->twins, twin, strlen(twin));
	struct envelope_ask a = { t != NULL ? t->model : NULL, command, e->twins, t,
	    t != NULL ? twin_clock(t, clock_mono_ms()) : 0, clock_now_ms(), automatic, e->store,
	    &e->status_rule };

	return envelope_recheck(&a, v);
}

/* ---- the thread ---- */

/*
 * Batches end where the MQTT thread puts a flush record (after each read
 * burst, when it wants to acknowledge), at batch_max, or when the ring
 * stays empty for a while with a batch open. Requests and timers are
 * served between records, so a busy ring does not starve them.
 */
static void *
engine_main(void *arg)
{
	struct engine *e = arg;
	const void *p;
	size_t len;
	int stopping;

	e->next_tick = clock_mono_ms() + TICK_MS;
	for (;;) {
		/* Requests left by serve_requests' budget: no wait for the ring. */
		p = ring_peek(e->ring, &len, request_pending(&e->requests) ? 0 : 100);
		if (p != NULL) {
			int rc = engine_record(e, p);

			ring_pop(e->ring);
			if (rc != TW_OK && e->in_txn)
				batch_fail(e, "applying an update");
			else if (e->in_txn && e->batch_msgs >= (uint64_t)e->conf->batch_max)
				batch_commit(e);
		} else if (e->in_txn) {
			batch_commit(e);
		}
		timer_trim_step(e);
		if (serve_due(e, p != NULL))
			serve_requests(e);
		timer_tick(e);
		if (p != NULL)
			continue;
		pthread_mutex_lock(&e->lock);
		stopping = e->stopping;
		pthread_mutex_unlock(&e->lock);
		if (stopping && ring_count(e->ring) == 0)
			break;
	}
	/* What settled since a failed batch (commands the broker took) is written now. */
	if (!e->in_txn && e->commands.settled != NULL && batch_begin(e) != TW_OK)
		log_warnx("database: at stop, %s", store_errmsg(e->store));
	if (e->in_txn)
		batch_commit(e);
	batch_save_all_detectors(e);
	request_close(&e->requests);
	return NULL;
}

static void
wake(void *arg)
{
	ring_wake(arg);
}

struct engine *
engine_new(const struct conf *c, struct ring *r, struct progress *p, const struct publisher *pub,
    struct events *ev, struct store *store, struct model_set *models, struct plant *plant,
    struct rule_set *rules)
{
	struct engine *e = calloc(1, sizeof(*e));
	struct restore rs = { 0 };

	if (e == NULL) {
		store_close(store);
		model_set_unref(models);
		rules_unref(rules);
		plant_cleanup(plant);
		return NULL;
	}
	e->conf = c;
	e->ring = r;
	e->progress = p;
	e->store = store;
	e->models = models;
	e->rules = rules;
	e->status_rule = (struct status_rule){ c->stale_factor, c->offline_factor,
	    c->stale_after_ms, c->offline_after_ms };
	pthread_mutex_init(&e->lock, NULL);
	outbox_init(&e->outbox, pub, ev);
	commands_init(&e->commands, (unsigned)c->cmd_max_inflight,
	    (unsigned)c->cmd_max_inflight_per_twin, c->cmd_ttl_ms, c->command_topic);
	desired_out_init(&e->desired, c->desired_topic);
	e->alerts = (struct alerts){ store, &e->outbox, c->alert_topic, c->converge_timeout_ms };
	e->actions = (struct actions){ &e->alerts, &e->commands, &e->desired, NULL, store,
	    &e->outbox, { c->cmd_acknowledged, c->cmd_timeout_ms, c->cmd_allow_unmodelled },
	    &e->status_rule, &e->drop_log };
	e->twins = twin_map_new(c->max_twins, c->max_props_per_twin);
	e->actions.twins = e->twins;
	if (e->twins != NULL)
		twin_map_set_budget(e->twins, (size_t)c->memory_max_mb << 20);
	atomic_store(&metrics.memory_budget, (uint64_t)c->memory_max_mb << 20);
	e->names = calloc((size_t)c->max_properties, sizeof(*e->names));
	e->hist = history_open(store);
	e->converge = converge_open(store, &e->outbox, e->twins);
	e->commands.converge = e->converge;
	e->commands.status = &e->status_rule;
	e->commands.recheck = recheck;
	e->commands.recheck_arg = e;
	/* Without its table the detectors learn, unsaved: not a reason to refuse the start. */
	if ((e->anomalies = anomaly_store_open(store)) == NULL)
		log_warnx("the anomaly detectors' states cannot be saved: they learn anew at each "
		    "start");
	e->retention = retention_open(store, c, c->db_path);
	e->apply = (struct apply){ e->twins, store, e->hist, &e->desired, &e->runtime,
	    c->auto_create, c->max_twins, c->max_props_per_twin, e->names, 0 };
	rs = (struct restore){ .twins = e->twins, .models = e->models, .status = &e->status_rule,
	    .runtime = &e->runtime, .commands = &e->commands };
	/* Names first: the load binds every twin to its rules and open alerts. */
	if (request_queue_init(&e->requests, wake, r) != TW_OK || e->twins == NULL ||
	    e->names == NULL || e->hist == NULL || e->retention == NULL || e->converge == NULL ||
	    runtime_init(&e->runtime, rules, e->twins) != TW_OK ||
	    /* Command ids grow across restarts too, whatever the wall clock did meanwhile. */
	    store_command_max_id(store, &e->commands.last_id) != TW_OK ||
	    restore_load(&rs, store, 0) != TW_OK || converge_reload(e->converge) != TW_OK)
		goto fail;
	/* What the detectors learned is worth having, not worth refusing to start for. */
	if (anomaly_store_load(e->anomalies, e->twins, clock_now_ms()) < 0)
		log_warnx("the anomaly detectors learn anew");
	e->apply.partial = rs.partial;
	history_set_floor(e->hist, retention_floor(e->retention),
	    retention_redo_floor(e->retention), retention_pack_edge(e->retention));
	if (store_begin(store) != TW_OK || restore_plant(e->twins, e->models, &e->runtime, plant) != TW_OK ||
	    twin_flush_dirty(e->twins, batch_flush_twin, e) != TW_OK || store_commit(store) != TW_OK) {
		log_warnx("cannot apply the twins file: %s", store_errmsg(store));
		store_rollback(store);
		goto fail;
	}
	/* Deltas the broker never acknowledged (also from before a restart) go out once connected. */
	twin_each(e->twins, batch_want_pending, e);
	outbox_rollback(&e->outbox);
	plant_cleanup(plant);
	return e;
fail:
	plant_cleanup(plant);
	engine_free(e);
	return NULL;
}

void
engine_free(struct engine *e)
{
	if (e == NULL)
		return;
	commands_cleanup(&e->commands);
	outbox_cleanup(&e->outbox);
	desired_out_cleanup(&e->desired);
	undo_cleanup(&e->undo);
	effects_cleanup(&e->effects);
	runtime_cleanup(&e->runtime);
	twin_map_free(e->twins);
	history_close(e->hist);
	converge_close(e->converge);
	anomaly_store_close(e->anomalies);
	retention_close(e->retention);
	store_close(e->store);
	model_set_unref(e->models);
	rules_unref(e->rules);
	free(e->names);
	request_queue_cleanup(&e->requests);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

int
engine_start(struct engine *e)
{
	if (pthread_create(&e->thread, NULL, engine_main, e) != 0)
		return TW_ERR_IO;
	e->started = 1;
	return TW_OK;
}

void
engine_stop(struct engine *e)
{
	if (!e->started)
		return;
	pthread_mutex_lock(&e->lock);
	e->stopping = 1;
	pthread_mutex_unlock(&e->lock);
	pthread_join(e->thread, NULL);
	e->started = 0;
}

void
engine_request(struct engine *e, struct request *r)
{
	request_submit(&e->requests, r);
}

struct rule_set *
engine_rules(struct engine *e)
{
	struct rule_set *r;

	pthread_mutex_lock(&e->lock);
	r = e->rules;
	rules_ref(r);
	pthread_mutex_unlock(&e->lock);
	return r;
}

struct model_set *
engine_models(struct engine *e)
{
	struct model_set *m;

	pthread_mutex_lock(&e->lock);
	m = e->models;
	model_set_ref(m);
	pthread_mutex_unlock(&e->lock);
	return m;
}

const char *
engine_health(struct engine *e)
{
	const struct publisher *pub = e->outbox.pub;
	const char *why = pub != NULL ? pub->trouble(pub->arg) : NULL;

	const char *full = atomic_load(&e->disk_full);

	if (full != NULL)
		return full;
	if (why != NULL)
		return why;
	return atomic_load(&e->failing) ? "database commits are failing" : NULL;
}
