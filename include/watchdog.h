/*
 * Heartbeats of the threads that own state (engine, MQTT), so that the
 * systemd watchdog is fed only while they make progress: a hung engine is
 * then restarted by systemd instead of being pinged for by main forever.
 */
#ifndef TW_WATCHDOG_H
#define TW_WATCHDOG_H

#include <stdint.h>

enum watchdog_part { WD_ENGINE, WD_MQTT, WD__COUNT };

/* Called by the part's own thread each time round its loop. */
void watchdog_beat(enum watchdog_part part);
/* The same, with the monotonic `now_ms` the caller has read already. */
void watchdog_beat_at(enum watchdog_part part, int64_t now_ms);
/*
 * Before a call that may rightly block for up to `ms` (a TCP connect to a
 * broker that does not answer): the part counts as alive until then.
 */
void watchdog_beat_ahead(enum watchdog_part part, int64_t ms);
/*
 * 1 when every part beat within `max_age_ms` of `now_ms` (monotonic);
 * otherwise 0 with the first stale part in *stale.
 */
int watchdog_fresh(int64_t now_ms, int64_t max_age_ms, enum watchdog_part *stale);
/* "engine", "mqtt": for the log and STATUS=. */
const char *watchdog_name(enum watchdog_part part);
/*
 * A test hook: when the environment names TWIND_TEST_HANG_ENGINE and that
 * file exists, the engine stops beating and waits until it is gone, as a
 * hung engine would. Called by the engine on its timer.
 */
void watchdog_test_hang(void);

#endif
