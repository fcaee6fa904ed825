/* The engine's timer: status, rules and convergence on time, the state topic, the disk. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "converge.h"
#include "engine_room.h"
#include "err.h"
#include "metrics.h"
#include "retention.h"
#include "topic.h"
#include "twin_doc.h"
#include "watchdog.h"

/*
 * Judges the status of `t` at `now`; a change is a status event. One that a
 * message made (`queued`) goes out with that message's commit; one that
 * time made needs no commit and goes out at once.
 */
void
timer_judge_status(struct engine *e, struct twin *t, int64_t now, int queued)
{
	int st = twin_status_of(&e->status_rule, t->model, t->last_seen_ts, now);
	char js[320];

	if (st == t->status)
		return;
	if (outbox_listening(&e->outbox)) {
		snprintf(js, sizeof(js), "{\"twin\":\"%s\",\"status\":\"%s\",\"previous\":\"%s\","
		    "\"last_seen_ts\":%lld}", t->id, twin_status_name(st), twin_status_name(t->status),
		    (long long)t->last_seen_ts);
		if (!queued) {
			outbox_emit(&e->outbox, "status", t->id, js);
		} else if (outbox_queue_text(&e->outbox, "status", t->id, js) != TW_OK) {
			/* Unchanged, so the timer says it at its next tick. */
			log_limited(&e->drop_log, "twin %s: status event delayed: out of memory",
			    t->id);
			return;
		}
	}
	t->status = st;
	t->state_dirty = 1;
}

/* Status moves with time alone: judged on the timer. */
static int
check_status(void *arg, struct twin *t)
{
	timer_judge_status(arg, t, clock_now_ms(), 0);
	return 0;
}

static int
tick_rules(void *arg, struct twin *t)
{
	/* Raised by the timer: the newest update is the one that made it so. */
	return batch_run_rules(arg, t, NULL, 0, t->newest_ts);
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
void
timer_disk_full_enter(struct engine *e, const char *why)
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
		timer_disk_full_enter(e, "disk full: free space is under [storage] disk_reserve");
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
void
timer_trim_step(struct engine *e)
{
	int64_t now = clock_mono_ms();
	int rc;

	if (now < e->next_trim || e->in_txn)
		return;
	rc = retention_step(e->retention, clock_now_ms());
	e->next_trim = now + (rc == 1 ? 20 : TICK_MS);
	history_set_floor(e->hist, retention_floor(e->retention),
	    retention_redo_floor(e->retention), retention_pack_edge(e->retention));
	atomic_store(&metrics.trimmed, retention_trimmed_rows(e->retention));
	atomic_store(&metrics.packed, retention_packed_points(e->retention));
	atomic_store(&metrics.rollups_packed, retention_packed_rollups(e->retention));
	if (rc == -TW_ERR_FULL)
		timer_disk_full_enter(e, "disk full: the database cannot grow");
}

void
timer_tick(struct engine *e)
{
	int64_t now = clock_mono_ms(), used;

	/* Once round the loop, with the clock this tick reads anyway: no cost per record. */
	watchdog_beat_at(WD_ENGINE, now);
	if (now < e->next_tick)
		return;
	e->next_tick = now + TICK_MS;
	watchdog_test_hang("TWIND_TEST_HANG_ENGINE", "engine");
	/* The writer's connection is this thread's: only it may ask. */
	if ((used = store_cache_used(e->store)) >= 0)
		atomic_store(&metrics.db_cache, (uint64_t)used);
	/* Nothing the timer changes could be stored: it waits for room too. */
	if (disk_check(e))
		return;
	/* A reload that failed (a full disk, say) is tried again here, not only by a record. */
	if (e->map_invalid && !e->in_txn)
		e->map_invalid = batch_reload(e) != TW_OK;
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
	/* A commit publishes what it made; without one, what waited for the broker goes now. */
	if (e->in_txn) {
		if (batch_commit(e) != TW_OK)
			return;
	} else
		batch_publish_committed(e);
	/* Only committed state goes out, and only while connected. */
	if (e->conf->state_topic[0] != '\0' && outbox_connected(&e->outbox))
		twin_each(e->twins, publish_state, e);
}
