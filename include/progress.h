/*
 * Commit progress: how far the engine has committed the records the
 * MQTT thread pushed, so that the broker is acknowledged only for what is
 * on disk. main owns it; the engine advances it, the MQTT thread waits on
 * it. Neither side needs to know the other.
 */
#ifndef TW_PROGRESS_H
#define TW_PROGRESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct progress {
	pthread_mutex_t lock;
	pthread_cond_t moved;		/* CLOCK_MONOTONIC */
	uint64_t committed;		/* every record up to here is on disk */
	uint64_t failed;		/* records up to here were not stored */
	atomic_int paused;		/* the disk is full: take no telemetry until it clears */
};

/* Returns 0 or TW_ERR_NOMEM. */
int progress_init(struct progress *p);
void progress_cleanup(struct progress *p);

/* Engine: records up to `committed` are on disk, those up to `failed` are not (0: no news). */
void progress_advance(struct progress *p, uint64_t committed, uint64_t failed);

/*
 * Engine: the disk is full (1) or has room again (0). While paused the
 * MQTT thread stays away from the broker, which keeps the telemetry.
 */
void progress_pause(struct progress *p, int paused);
int progress_paused(struct progress *p);

/*
 * MQTT thread: waits until every record up to `seq` is settled. Returns
 * 0 when all records in (after, seq] are committed; TW_ERR_DB when any of
 * them was not stored (their acknowledgements must not be written: the
 * broker will redeliver); or TW_ERR_TIMEOUT after `timeout_ms`.
 */
int progress_wait(struct progress *p, uint64_t after, uint64_t seq, int timeout_ms);

#endif
