/*
 * Inside the engine, for its rooms only (engine.c the records and the
 * thread, engine_batch.c the batch and its commit, engine_timer.c the
 * timer and the disk, engine_serve.c the requests of other threads):
 * the engine's state and what the rooms call of each other. All of it
 * runs on the engine thread; the fields under `lock` and the two atomics
 * at the end are the only ones other threads touch, through engine.h.
 */
#ifndef TW_ENGINE_ROOM_H
#define TW_ENGINE_ROOM_H

#include <pthread.h>
#include <stdatomic.h>

#include "actions.h"
#include "alerts.h"
#include "apply.h"
#include "commands.h"
#include "desired.h"
#include "engine.h"
#include "log.h"
#include "outbox.h"
#include "request.h"
#include "runtime.h"
#include "twin.h"
#include "undo.h"

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
	int64_t serve_reload_ms;	/* a request does not retry a failed reload before this */
	int64_t serve_next_ms;		/* requests wait for the ring's share until this */
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

/* engine_batch.c: the batch and its commit */
int batch_begin(struct engine *e);
/* Reloads the twins from the store, keeping the rule state memory holds. */
int batch_reload(struct engine *e);
/* A failed batch: rolled back, and what it changed in memory put back. */
void batch_fail(struct engine *e, const char *what);
int batch_flush_twin(void *arg, struct twin *t);
void batch_save_all_detectors(struct engine *e);
void batch_publish_committed(struct engine *e);
int batch_commit(struct engine *e);
/* Keeps the rule state of `t` as it was before this batch, for a rollback. */
void batch_touch(struct engine *e, struct twin *t);
/* Runs the rules of `t` that read `names` (NULL: all) and applies their effects. */
int batch_run_rules(struct engine *e, struct twin *t, const char *const *names, int n,
    int64_t source_ts);
/* After a reload or a new connection: what the broker may not have got goes again. */
int batch_want_pending(void *arg, struct twin *t);

/* engine_timer.c: the timer and the disk */
/* The status of `t` at `now` (wall ms); `queued`: its event goes out with the commit. */
void timer_judge_status(struct engine *e, struct twin *t, int64_t now, int queued);
void timer_disk_full_enter(struct engine *e, const char *why);
void timer_trim_step(struct engine *e);
void timer_tick(struct engine *e);

/* engine_serve.c: requests from other threads, served between records */
/* 1 when requests wait and it is their turn (`ring_busy`: records wait too). */
int serve_due(struct engine *e, int ring_busy);
void serve_requests(struct engine *e);

#endif
