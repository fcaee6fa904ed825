/* The engine's batch: begun by the first change, committed or rolled back whole, then published. */
#include <stdatomic.h>

#include "anomaly_store.h"
#include "clock.h"
#include "converge.h"
#include "engine_room.h"
#include "err.h"
#include "metrics.h"
#include "restore.h"
#include "twin_doc.h"

int
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
int
batch_reload(struct engine *e)
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
	twin_each(e->twins, batch_want_pending, e);
	return TW_OK;
}

/*
 * A failed batch: roll back, put back the rule state it changed, rebuild
 * the twins from what is on disk, and refuse everything read on the same
 * connection, because its acknowledgements are queued behind those of
 * the failed records. The MQTT thread reconnects without writing them and
 * the broker redelivers.
 */

void
batch_fail(struct engine *e, const char *what)
{
	if (store_full(e->store))
		timer_disk_full_enter(e, "disk full: the database cannot grow");
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
	e->map_invalid = batch_reload(e) != TW_OK;
	if (e->map_invalid)
		log_warnx("database: reloading the twins failed; will retry with the next batch");
	/* The batch may have judged or added watches: the table says which hold (else the timer retries). */
	if (converge_reload(e->converge) != TW_OK)
		log_warnx("database: reloading the commands' effects failed; will retry");
	progress_advance(e->progress, 0, e->batch_seq);
}

int
batch_flush_twin(void *arg, struct twin *t)
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
		batch_touch(e, t);
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
void
batch_save_all_detectors(struct engine *e)
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


/* Publishes, after a commit, what only committed state may say. */
void
batch_publish_committed(struct engine *e)
{
	outbox_commit(&e->outbox);
	desired_publish(&e->desired, e->twins, &e->outbox);
	commands_publish(&e->commands, &e->outbox);
}

int
batch_commit(struct engine *e)
{
	int64_t t0 = clock_mono_us();

	if (commands_flush(&e->commands, e->store, &e->outbox) != TW_OK ||
	    converge_flush(e->converge, clock_now_ms()) != TW_OK ||
	    twin_flush_dirty(e->twins, batch_flush_twin, e) != TW_OK ||
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
	/* Before the count of what was applied: a reader that sees it sees this too. */
	atomic_store(&metrics.memory_bytes, twin_map_bytes(e->twins));
	metrics_add(&metrics.applied, e->batch_msgs);
	metrics_add(&metrics.values, e->batch_vals);
	if (atomic_exchange(&e->failing, 0)) {
		atomic_store(&metrics.db_failing, 0);
		log_info("database: commits work again");
	}
	undo_clear(&e->undo);
	commands_commit(&e->commands);
	converge_commit(e->converge);
	/*
	 * Only what is committed goes out: nothing may run ahead of the disk.
	 * Queued before the MQTT thread hears of the commit, so that its next
	 * write carries them: libmosquitto in threaded mode only queues, and
	 * once that thread has read more telemetry, its next write waits for
	 * the next batch's commit (commands, alerts and deltas alike).
	 */
	batch_publish_committed(e);
	progress_advance(e->progress, e->batch_seq, 0);
	atomic_store(&metrics.commands_pending, commands_pending(&e->commands));
	return TW_OK;
}

/* ---- rules: their effects applied ---- */

/* Keeps the rule state of `t` as it was before this batch, for a rollback. */
void
batch_touch(struct engine *e, struct twin *t)
{
	if (t->touched == e->batch_no)
		return;
	t->touched = e->batch_no;
	/* Without memory for the copy a rollback keeps what this batch did to the state. */
	undo_save(&e->undo, t);
}

/* Runs the rules of `t` that read `names` (NULL: all) and applies their effects. */
int
batch_run_rules(struct engine *e, struct twin *t, const char *const *names, int n, int64_t source_ts)
{
	int rc;

	if (t->nrs == 0)
		return TW_OK;
	e->effects.n = 0;
	rc = runtime_eval(&e->runtime, t, names, n, twin_clock(t, clock_mono_ms()),
	    clock_now_ms(), &e->effects);
	if (rc != TW_OK || e->effects.n == 0 || (rc = batch_begin(e)) != TW_OK)
		return rc;
	batch_touch(e, t);
	return actions_apply(&e->actions, t, &e->effects, source_ts);
}


int
batch_want_pending(void *arg, struct twin *t)
{
	struct engine *e = arg;

	if (t->delta_pending)
		desired_want(&e->desired, t);
	/* A state document in flight may have been lost with the connection: send it again. */
	t->state_dirty = 1;
	return 0;
}
