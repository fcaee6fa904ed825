/* Time: clocks, and the time and duration syntax of the interface. */
#ifndef TW_CLOCK_H
#define TW_CLOCK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Wall clock, milliseconds since the Unix epoch, UTC. */
int64_t clock_now_ms(void);
/* Monotonic clock in milliseconds and microseconds, for intervals. */
int64_t clock_mono_ms(void);
int64_t clock_mono_us(void);
int64_t clock_mono_ns(void);

struct timespec;
/*
 * An absolute CLOCK_MONOTONIC deadline `ms` from now, for
 * pthread_cond_timedwait on a condition made by clock_cond_init: a step
 * of the wall clock (NTP, an operator) must not stretch or freeze a wait.
 */
void clock_deadline(struct timespec *ts, int ms);
/* pthread_cond_init with CLOCK_MONOTONIC. Returns 0 or TW_ERR_NOMEM. */
int clock_cond_init(pthread_cond_t *c);

/*
 * Parses a duration: "500ms", "30s", "5m", "2h", "7d"; a bare number is
 * seconds. Returns 0 and stores milliseconds, or TW_ERR_INVAL.
 */
int clock_parse_duration(const char *s, int64_t *ms);

/*
 * Parses an RFC 3339 time ("2026-11-24T05:00:00Z", optional fraction,
 * "Z" or "+hh:mm") of exactly `len` bytes. Returns 0 or TW_ERR_INVAL.
 */
int clock_parse_rfc3339(const char *s, size_t len, int64_t *ms);

/*
 * Parses a REST time: epoch milliseconds, RFC 3339, "now", or a relative
 * "-15m" (any duration with a leading '-' or '+') from `now_ms`.
 * Returns 0 or TW_ERR_INVAL.
 */
int clock_parse_time(const char *s, int64_t now_ms, int64_t *ms);

#endif
