/* One-line-per-event logging to stderr, as journald expects it. */
#ifndef TW_LOG_H
#define TW_LOG_H

#include <stdint.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Sets the most verbose level that is written. Thread-safe. */
void log_set_level(enum log_level level);
/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int log_level_parse(const char *name);
int log_enabled(enum log_level level);

/* log_warn appends the errno text; the x variants do not (as in OpenBSD). */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs at error level and exits with status 1. Start-up and broken invariants only. */
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * A rate limit for noisy causes (bad payloads): at most one line per
 * interval; the next line that passes says how many were suppressed.
 * Embedded in its owner; one owning thread, no locking.
 */
struct log_limit {
	int64_t next_ms;	/* earliest time the next line may be written */
	uint64_t suppressed;	/* lines dropped since the last one written */
};

/* Warns through the limit `lim` (interval 10 s). */
void log_limited(struct log_limit *lim, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
