/*
 * The anomaly() detectors' learned state in the store, so that it
 * survives a restart: one row per (twin, property), written in the
 * engine's batch at most once per ANOMALY_SAVE_MS for each detector that
 * learned since, and for all of them at shutdown. A crash loses at most
 * that much learning, never a reading (those are in history). A row
 * older than ANOMALY_STALE_MS is not read back (the series may have
 * changed since) and is deleted at the next load, so the table holds one
 * row per detector in use within that time. Owned by the engine thread.
 */
#ifndef TW_ANOMALY_STORE_H
#define TW_ANOMALY_STORE_H

#include <stdint.h>

#include "store.h"
#include "twin.h"

#define ANOMALY_SAVE_MS		300000			/* 5 min, on the monotonic clock */
#define ANOMALY_STALE_MS	(30LL * 86400000)	/* 30 days, on the wall clock */

struct anomaly_store;

/* NULL when its table cannot be used: save and load then do nothing (load returns -1). */
struct anomaly_store *anomaly_store_open(struct store *st);
void anomaly_store_close(struct anomaly_store *s);
/* 1 if a detector of `t` learned since its last save, ANOMALY_SAVE_MS or more before `mono`. */
int anomaly_store_due(const struct twin *t, int64_t mono);
/*
 * Inside the open batch: writes the detectors of `t` that are due, or
 * every one that learned with `all`, stamped with the wall clock `now`.
 * TW_OK or TW_ERR_DB.
 */
int anomaly_store_save(struct anomaly_store *s, struct twin *t, int64_t mono, int64_t now,
    int all);
/*
 * Gives each detector of the twins in `m` that has taken no reading yet
 * its saved state (at start, and for rules a reload added). A row that
 * does not read back as a state is logged and skipped (that detector
 * learns anew). Returns the number loaded, or -1 (TW_ERR_DB logged).
 */
int anomaly_store_load(struct anomaly_store *s, struct twin_map *m, int64_t now);

#endif
