/* The engine: the record loop, the batch and its commit, the timer, and requests served. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "actions.h"
#include "alerts.h"
#include "anomaly_store.h"
#include "anomaly_store.h"
#include "apply.h"
#include "clock.h"
#include "commands.h"
#include "converge.h"
#include "envelope.h"
#include "desired.h"
#include "engine.h"
#include "err.h"
#include "history.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "restore.h"
#include "retention.h"
#include "runtime.h"
#include "topic.h"
#include "twin.h"
#include "twin_doc.h"
#include "undo.h"
#include "watchdog.h"
#include "whatif.h"

#define TICK_MS		1000	/* status, convergence, rules and command timers */

struct engine {
	const struct conf *conf;
	struct ring *ring;
	struct progress *progress;	/* borrowed: main owns it, the MQTT thread waits on it */
	struct store *store;		/* owned; this thread only */
	struct history *hist;		/* owned; this thread only: the batch's rollups */
	struct anomaly_store *anomalies;	/* owned; this thread only */
	struct converge *converge;		/* owned: commands waiting for their effect */
	struct retention *retention;	/* owned; this thread only */
	struct twin_map *twins;		/* owned; this thread only */
	struct status_rule status_rule;
	struct outbox outbox;
	struct commands commands;
	struct desired_out desired;
	struct alerts alerts;
	struct runtime runtime;
	struct apply apply;
	struct effects effects;
	struct actions actions;
	struct undo undo;
	struct request_queue requests;
	const char **names;		/* scratch: interned names of one record */
	pthread_t thread;
	int started;

	/* The open batch; this thread only. */
	int in_txn;
	uint64_t batch_no;		/* grows per transaction: twins touched in it know it */
	uint64_t batch_seq;		/* highest record seq in it */
	uint32_t batch_gen;		/* highest connection generation in it */
	uint64_t batch_msgs, batch_vals;
	uint32_t failed_gen;		/* records of this generation or older are refused */
	int map_invalid;		/* a reload after a rollback failed: the twins are unknown */
	int64_t next_tick;
	int64_t next_trim;		/* retention's next step, monotonic ms */
	int64_t disk_retry_ms;		/* a full disk is not looked at again before this */
	int64_t disk_backoff_ms;	/* doubles when twind comes back only to fill up again */
	int64_t disk_resumed_ms;	/* when ingestion last resumed */
	struct log_limit drop_log;

	/* Shared with other threads. */
	pthread_mutex_t lock;		/* guards the three below */
	int stopping;
	struct model_set *models;	/* in force; swapped on reload */
	struct rule_set *rules;		/* in force; swapped on reload */
	atomic_int failing;		/* the last commit failed */
	_Atomic(const char *) disk_full;	/* why ingestion is paused for space, or NULL */
};

static void engine_tick(struct engine *e);
static void touch(struct engine *e, struct twin *t);
static int want_pending(void *arg, struct twin *t);
static void judge_status(struct engine *e, struct twin *t, int queued);

/* ---- the batch and its commit ---- */

static int
batch_begin(struct engine *e)
{
	if (e->in_txn)
		return TW_OK;
	if (store_begin(e->store) != TW_OK)
		return TW_ERR_DB;
	e->in_txn = 1;
	e->batch_no++;
	e->batch_msgs = e->batch_vals = 0;
	/* Records set these; a batch of requests or of the timer alone covers none. */
	e->batch_seq = 0;
	/* A batch of requests or of the timer alone refuses no connection when it fails. */
	e->batch_gen = 0;
	return TW_OK;
}

/* Reloads the twins from the store, keeping the rule state memory holds. */
static int
engine_reload_twins(struct engine *e)
{
	struct restore r = {
		.twins = e->twins, .models = e->models, .status = &e->status_rule,
		.runtime = &e->runtime, .commands = NULL,
	};

	desired_out_clear(&e->desired);
	if (restore_load(&r, e->store, 1) != TW_OK)
		return TW_ERR_DB;
	e->apply.partial = r.partial;
	/* Deltas not acknowledged by the broker (pending on disk) go out again. */
	twin_each(e->twins, want_pending, e);
	return TW_OK;
}

/*
 * A failed batch: roll back, put back the rule state it changed, rebuild
 * the twins from what is on disk, and refuse everything read on the same
 * connection, because its acknowledgements are queued behind those of
 * the failed records. The MQTT thread reconnects without writing them and
 * the broker redelivers.
 */
static void disk_full_enter(struct engine *e, const char *why);

static void
batch_fail(struct engine *e, const char *what)
{
	if (store_full(e->store))
		disk_full_enter(e, "disk full: the database cannot grow");
	log_warnx("database: %s failed (%s); rolling back %llu messages, the broker will "
	    "redeliver them", what, store_errmsg(e->store), (unsigned long long)e->batch_msgs);
	store_rollback(e->store);
	e->in_txn = 0;
	metrics_add(&metrics.commit_failures, 1);
	atomic_store(&e->failing, 1);
	atomic_store(&metrics.db_failing, 1);
	if (e->batch_gen > e->failed_gen)
		e->failed_gen = e->batch_gen;
	outbox_rollback(&e->outbox);
	commands_rollback(&e->commands);
	undo_restore(&e->undo, e->twins);
	history_rollback(e->hist);
	/* Until a reload works, the map is not the truth: nothing may be applied to it. */
	e->map_invalid = engine_reload_twins(e) != TW_OK;
	if (e->map_invalid)
		log_warnx("database: reloading the twins failed; will retry with the next batch");
	/* The batch may have judged or added watches: the table says which hold (else the timer retries). */
	if (converge_reload(e->converge) != TW_OK)
		log_warnx("database: reloading the commands' effects failed; will retry");
	progress_advance(e->progress, 0, e->batch_seq);
}

static int
flush_twin(void *arg, struct twin *t)
{
	struct engine *e = arg;
	struct store_twin_row row = {
		.id = t->id, .model = t->model_id, .parent = t->parent, .version = t->version,
		.last_seen_ts = t->last_seen_ts, .created_ts = t->created_ts,
		.delta_pending = t->delta_pending,
	};
	int64_t mono;

	if (store_twin_put(e->store, &row) != TW_OK)
		return TW_ERR_DB;
	t->state_dirty = 1;
	/* Formatting costs: only when someone listens, and only for a new version. */
	if (t->version != t->event_version && outbox_listening(&e->outbox))
		outbox_queue(&e->outbox, NULL, "twin", t->id,
		    twin_doc_event(t, clock_now_ms(), e->conf->stale_factor));
	t->event_version = t->version;
	for (uint32_t i = 0; i < t->nprops; i++) {
		struct prop *p = &t->props[i];

		if (!p->dirty)
			continue;
		if (store_series_put(e->store, p->series, p->ts, &p->val, p->out_of_range) != TW_OK)
			return TW_ERR_DB;
		p->dirty = 0;
	}
	for (uint32_t i = 0; i < t->ndesired; i++) {
		struct desired *d = &t->desired[i];
		struct store_desired_row dr = {
			.prop = d->name, .val = d->val, .ts = d->ts,
			.pending_since_ts = d->pending_since_ts, .published = d->published,
			.converged_ts = d->converged_ts, .in_delta = d->in_delta,
			.set_by = d->set_by[0] != '\0' ? d->set_by : NULL,
		};

		if (!d->dirty)
			continue;
		if ((d->removed ? store_desired_del(e->store, t->id, d->name) :
		    store_desired_put(e->store, t->id, &dr)) != TW_OK)
			return TW_ERR_DB;
		d->dirty = 0;
	}
	/* Their saved marks go back with the rest should this batch fail: an undo copy. */
	mono = clock_mono_ms();
	if (e->anomalies != NULL && anomaly_store_due(t, mono))
		touch(e, t);
	if (anomaly_store_save(e->anomalies, t, mono, clock_now_ms(), 0) != TW_OK)
		return TW_ERR_DB;
	twin_desired_compact(t);
	twin_charge(e->twins, t);
	return TW_OK;
}

static int
save_detectors(void *arg, struct twin *t)
{
	struct engine *e = arg;

	return anomaly_store_save(e->anomalies, t, clock_mono_ms(), clock_now_ms(), 1);
}

/*
 * At stop: what every detector learned since its last save, in a
 * transaction of its own. Not on a failing or full disk (the reserve is
 * for telemetry); a failure costs at most ANOMALY_SAVE_MS of learning.
 */
static void
save_all_detectors(struct engine *e)
{
	if (e->anomalies == NULL || atomic_load(&e->failing) || atomic_load(&e->disk_full) != NULL)
		return;
	if (store_begin(e->store) != TW_OK)
		goto fail;
	if (twin_each(e->twins, save_detectors, e) != TW_OK || store_commit(e->store) != TW_OK) {
		store_rollback(e->store);
		goto fail;
	}
	return;
fail:
	log_warnx("database: at stop, the anomaly detectors were not saved: %s",
	    store_errmsg(e->store));
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

/* Publishes, after a commit, what only committed state may say. */
static void
publish_committed(struct engine *e)
{
	outbox_commit(&e->outbox);
	desired_publish(&e->desired, e->twins, &e->outbox);
	commands_publish(&e->commands, &e->outbox);
}

static int
batch_commit(struct engine *e)
{
	int64_t t0 = clock_mono_us();

	if (commands_flush(&e->commands, e->store, &e->outbox) != TW_OK ||
	    converge_flush(e->converge, clock_now_ms()) != TW_OK ||
	    twin_flush_dirty(e->twins, flush_twin, e) != TW_OK ||
	    history_flush(e->hist) != TW_OK) {
		batch_fail(e, "writing twin state");
		return TW_ERR_DB;
	}
	if (store_commit(e->store) != TW_OK) {
		batch_fail(e, "commit");
		return TW_ERR_DB;
	}
	e->in_txn = 0;
	metrics_commit(e->batch_msgs, clock_mono_us() - t0);
	metrics_add(&metrics.applied, e->batch_msgs);
	metrics_add(&metrics.values, e->batch_vals);
	if (atomic_exchange(&e->failing, 0)) {
		atomic_store(&metrics.db_failing, 0);
		log_info("database: commits work again");
	}
	progress_advance(e->progress, e->batch_seq, 0);
	undo_clear(&e->undo);
	commands_commit(&e->commands);
	converge_commit(e->converge);
	/* Only what is committed goes out: nothing may run ahead of the disk. */
	publish_committed(e);
	atomic_store(&metrics.commands_pending, commands_pending(&e->commands));
	atomic_store(&metrics.memory_bytes, twin_map_bytes(e->twins));
	return TW_OK;
}

/* ---- rules: their effects applied ---- */

/* Keeps the rule state of `t` as it was before this batch, for a rollback. */
static void
touch(struct engine *e, struct twin *t)
{
	if (t->touched == e->batch_no)
		return;
	t->touched = e->batch_no;
	/* Without memory for the copy a rollback keeps what this batch did to the state. */
	undo_save(&e->undo, t);
}

/* Runs the rules of `t` that read `names` (NULL: all) and applies their effects. */
static int
run_rules(struct engine *e, struct twin *t, const char *const *names, int n, int64_t source_ts)
{
	int rc;

	if (t->nrs == 0)
		return TW_OK;
	e->effects.n = 0;
	rc = runtime_eval(&e->runtime, t, names, n, twin_clock(t, clock_mono_ms()),
	    clock_now_ms(), &e->effects);
	if (rc != TW_OK || e->effects.n == 0 || (rc = batch_begin(e)) != TW_OK)
		return rc;
	touch(e, t);
	return actions_apply(&e->actions, t, &e->effects, source_ts);
}

/* ---- records ---- */

static int
apply_update(struct engine *e, const struct rec *r)
{
	struct twin *t;
	int reason, rc;

	if ((t = apply_twin(&e->apply, r, &reason)) == NULL) {
		metrics_add(&metrics.dropped[reason], 1);
		log_limited(&e->drop_log, "twin %s: message dropped: %s", r->id,
		    ingest_reason_name(reason));
		return TW_OK;
	}
	/* Windows and `for` timers as they were, should this batch fail. */
	if (t->nrs > 0)
		touch(e, t);
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
	 * a burst that would cut off every screen with a small buffer.
	 */
	judge_status(e, t, 1);
	/* Only the rules that read one of these properties. */
	return run_rules(e, t, e->names, r->nvals, r->ts);
}

static int
want_pending(void *arg, struct twin *t)
{
	struct engine *e = arg;

	if (t->delta_pending)
		desired_want(&e->desired, t);
	/* A state document in flight may have been lost with the connection: send it again. */
	t->state_dirty = 1;
	return 0;
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
			twin_each(e->twins, want_pending, e);
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
		if (engine_reload_twins(e) == TW_OK)
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

/* ---- the timer ---- */

/*
 * Judges the status of `t` now; a change is a status event. One that a
 * message made (`queued`) goes out with that message's commit; one that
 * time made needs no commit and goes out at once.
 */
static void
judge_status(struct engine *e, struct twin *t, int queued)
{
	int st = twin_status_of(&e->status_rule, t->model, t->last_seen_ts, clock_now_ms());
	char js[320];

	if (st == t->status)
		return;
	if (outbox_listening(&e->outbox)) {
		snprintf(js, sizeof(js), "{\"twin\":\"%s\",\"status\":\"%s\",\"previous\":\"%s\","
		    "\"last_seen_ts\":%lld}", t->id, twin_status_name(st), twin_status_name(t->status),
		    (long long)t->last_seen_ts);
		if (!queued)
			outbox_emit(&e->outbox, "status", t->id, js);
		else if (outbox_queue_text(&e->outbox, "status", t->id, js) != TW_OK)
			log_limited(&e->drop_log, "twin %s: status event lost: out of memory", t->id);
	}
	t->status = st;
	t->state_dirty = 1;
}

/* Status moves with time alone: judged on the timer. */
static int
check_status(void *arg, struct twin *t)
{
	judge_status(arg, t, 0);
	return 0;
}

static int
tick_rules(void *arg, struct twin *t)
{
	/* Raised by the timer: the newest update is the one that made it so. */
	return run_rules(arg, t, NULL, 0, t->newest_ts);
}

static int
tick_converge(void *arg, struct twin *t)
{
	struct engine *e = arg;
	int64_t now = clock_now_ms();

	/* Most twins have nothing to say: a transaction only for those that do. */
	if ((desired_overdue(t, now, e->conf->converge_timeout_ms) != NULL) == (t->alert_id != 0))
		return 0;
	if (batch_begin(e) != TW_OK)
		return TW_ERR_DB;
	return alerts_converge(&e->alerts, t, now);
}

/*
 * The optional state topic: each changed twin's document, retained, at
 * most once per state_interval, so that a busy twin costs one message per
 * interval however fast it reports. Built from committed state by the one
 * document builder that REST uses.
 */
static int
publish_state(void *arg, struct twin *t)
{
	struct engine *e = arg;
	int64_t mono = clock_mono_ms();
	struct twin_doc_ctx dc = { e->conf, e->models, e->store, clock_now_ms() };
	char topic[TOPIC_MAX], *js = NULL;
	cJSON *doc;

	if (!t->state_dirty || mono - t->state_published_ms < e->conf->state_interval_ms ||
	    topic_format(e->conf->state_topic, t->id, topic, sizeof(topic)) != TW_OK)
		return 0;
	if (twin_doc_build(&dc, t->id, 0, &doc, NULL) != TW_OK)
		return 0;
	if ((js = cJSON_PrintUnformatted(doc)) != NULL &&
	    outbox_send(&e->outbox, OUTBOX_STATE, NULL, 0, topic, js, (int)strlen(js), 1, 0) ==
	    TW_OK) {
		t->state_dirty = 0;
		t->state_published_ms = mono;
	}
	cJSON_free(js);
	cJSON_Delete(doc);
	return 0;
}

/* ---- the disk ---- */

/* Ingestion pauses: the MQTT thread leaves the broker, which keeps the telemetry. */
static void
disk_full_enter(struct engine *e, const char *why)
{
	int64_t now = clock_mono_ms();

	if (atomic_exchange(&e->disk_full, why) == NULL) {
		/* Full again within a minute of resuming: wait longer each time, up to 5 min. */
		e->disk_backoff_ms = e->disk_resumed_ms != 0 && now - e->disk_resumed_ms < 60000 ?
		    (e->disk_backoff_ms * 2 > 300000 ? 300000 : e->disk_backoff_ms * 2) : 1000;
		e->disk_retry_ms = now + e->disk_backoff_ms;
		log_warnx("%s: ingestion pauses; the broker keeps the telemetry, REST serves what "
		    "is stored", why);
	}
	atomic_store(&metrics.disk_full, 1);
	progress_pause(e->progress, 1);
}

/*
 * Each tick: free space against the reserve, and whether a full disk has
 * room again. Leaving takes an eighth more than the reserve, so twind
 * does not step in and out at its edge. Returns 1 while full.
 */
static int
disk_check(struct engine *e)
{
	/* Free pages in the file are room for twind both ways, or it would step in and out. */
	int64_t free_b = retention_disk_free(e->retention, 1);
	int64_t reserve = retention_reserve(e->retention);

	atomic_store(&metrics.disk_free, retention_disk_free(e->retention, 0));
	if (free_b >= 0 && free_b < reserve) {
		disk_full_enter(e, "disk full: free space is under [storage] disk_reserve");
		return 1;
	}
	if (atomic_load(&e->disk_full) == NULL)
		return 0;
	if ((free_b >= 0 && free_b < reserve + reserve / 8) || e->in_txn ||
	    clock_mono_ms() < e->disk_retry_ms ||
	    retention_probe(e->retention, clock_now_ms()) != TW_OK)
		return 1;
	e->disk_resumed_ms = clock_mono_ms();
	atomic_store(&e->disk_full, NULL);
	atomic_store(&metrics.disk_full, 0);
	progress_pause(e->progress, 0);
	log_info("disk: room again (%lld MiB free); ingestion resumes",
	    (long long)(free_b >> 20));
	return 0;
}

/*
 * One step of retention between batches, paced so that ingestion keeps
 * the thread: 20 ms apart while there is work, a tick apart when not.
 */
static void
trim_step(struct engine *e)
{
	int64_t now = clock_mono_ms();
	int rc;

	if (now < e->next_trim || e->in_txn)
		return;
	rc = retention_step(e->retention, clock_now_ms());
	e->next_trim = now + (rc == 1 ? 20 : TICK_MS);
	history_set_floor(e->hist, retention_floor(e->retention),
	    retention_redo_floor(e->retention));
	atomic_store(&metrics.trimmed, retention_trimmed_rows(e->retention));
	if (rc == -TW_ERR_FULL)
		disk_full_enter(e, "disk full: the database cannot grow");
}

static void
engine_tick(struct engine *e)
{
	int64_t now = clock_mono_ms();

	/* Once round the loop, with the clock this tick reads anyway: no cost per record. */
	watchdog_beat_at(WD_ENGINE, now);
	if (now < e->next_tick)
		return;
	e->next_tick = now + TICK_MS;
	watchdog_test_hang();
	/* Nothing the timer changes could be stored: it waits for room too. */
	if (disk_check(e))
		return;
	/* A reload that failed (a full disk, say) is tried again here, not only by a record. */
	if (e->map_invalid && !e->in_txn)
		e->map_invalid = engine_reload_twins(e) != TW_OK;
	if (e->map_invalid)
		return;
	twin_each(e->twins, check_status, e);
	if (batch_begin(e) != TW_OK) {
		batch_fail(e, "begin");
		return;
	}
	if (commands_expire(&e->commands, e->store, &e->outbox, clock_now_ms()) != TW_OK ||
	    converge_expire(e->converge, clock_now_ms()) != TW_OK) {
		batch_fail(e, "writing a command's status");
		return;
	}
	/* for, age() and clearing move with time: every rule is judged on the timer too. */
	if (e->rules->n > 0 && twin_each(e->twins, tick_rules, e) != 0) {
		batch_fail(e, "writing an alert");
		return;
	}
	if (twin_each(e->twins, tick_converge, e) != 0) {
		batch_fail(e, "writing an alert");
		return;
	}
	if (e->in_txn && batch_commit(e) != TW_OK)
		return;
	publish_committed(e);
	/* Only committed state goes out, and only while connected. */
	if (e->conf->state_topic[0] != '\0' && outbox_connected(&e->outbox))
		twin_each(e->twins, publish_state, e);
}

/* ---- requests from other threads ---- */

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
		touch(e, t);
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

static void
serve_requests(struct engine *e)
{
	struct request *r;

	if (e->map_invalid && !e->in_txn && engine_reload_twins(e) == TW_OK)
		e->map_invalid = 0;
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
	}
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
		p = ring_peek(e->ring, &len, 100);
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
		trim_step(e);
		if (request_pending(&e->requests))
			serve_requests(e);
		engine_tick(e);
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
	save_all_detectors(e);
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
	    restore_load(&rs, store, 0) != TW_OK || converge_reload(e->converge) != TW_OK)
		goto fail;
	/* What the detectors learned is worth having, not worth refusing to start for. */
	if (anomaly_store_load(e->anomalies, e->twins, clock_now_ms()) < 0)
		log_warnx("the anomaly detectors learn anew");
	e->apply.partial = rs.partial;
	history_set_floor(e->hist, retention_floor(e->retention),
	    retention_redo_floor(e->retention));
	if (store_begin(store) != TW_OK || restore_plant(e->twins, e->models, &e->runtime, plant) != TW_OK ||
	    twin_flush_dirty(e->twins, flush_twin, e) != TW_OK || store_commit(store) != TW_OK) {
		log_warnx("cannot apply the twins file: %s", store_errmsg(store));
		store_rollback(store);
		goto fail;
	}
	/* Deltas the broker never acknowledged (also from before a restart) go out once connected. */
	twin_each(e->twins, want_pending, e);
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
