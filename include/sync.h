/*
 * The sync engine: one thread that drains the ring, applies updates to
 * the twins it owns, and commits them to the store in batches. It also
 * tells the MQTT thread how far the commits have come, so that the
 * broker is acknowledged only for what is on disk.
 */
#ifndef TW_SYNC_H
#define TW_SYNC_H

#include <stdint.h>

#include "conf.h"
#include "ring.h"
#include "store.h"

struct sync;

/*
 * Takes ownership of the writer `store` and loads the twins from it.
 * Borrows `c` and `r` for its lifetime. Returns NULL (and logs why) on failure.
 */
struct sync *sync_new(const struct conf *c, struct ring *r, struct store *store);
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

#endif
