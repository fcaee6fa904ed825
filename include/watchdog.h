/*
 * Heartbeats of the threads that own state (engine, MQTT), and the REST
 * handlers at work, so that the systemd watchdog is fed only while they
 * make progress: a hung engine, MQTT thread or REST handler is then
 * restarted by systemd instead of being pinged for by main forever.
 */
#ifndef TW_WATCHDOG_H
#define TW_WATCHDOG_H

#include <stdint.h>

enum watchdog_part { WD_ENGINE, WD_MQTT, WD_HTTP, WD__COUNT };

/* REST handlers tracked at once: [http] max_connections is bounded by it. */
#define WATCHDOG_BUSY_SLOTS	1024

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
 * A REST handler starts (the request read, up to its answer): a slot, or
 * -1 when all are taken (then it is not watched). Its thread calls
 * watchdog_busy_leave(slot) when the answer is made.
 */
int watchdog_busy_enter(void);
void watchdog_busy_leave(int slot);
/*
 * 1 when every part beat within `max_age_ms` of `now_ms` (monotonic) and
 * no REST handler has run for longer than `busy_max_ms`; otherwise 0 with
 * the first stale part in *stale (WD_HTTP for a handler).
 */
int watchdog_fresh(int64_t now_ms, int64_t max_age_ms, int64_t busy_max_ms,
    enum watchdog_part *stale);
/* "engine", "mqtt", "http": for the log and STATUS=. */
const char *watchdog_name(enum watchdog_part part);
/*
 * A test hook: when the environment variable `env` names a file that
 * exists, the caller waits until it is gone, as a hung part would
 * (TWIND_TEST_HANG_ENGINE on the engine's timer, TWIND_TEST_HANG_HTTP in
 * /healthz). `who` names it in the log.
 */
void watchdog_test_hang(const char *env, const char *who);

#endif
