/* Logging to stderr: level checked before formatting, one write per line. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define LOG_LINE_MAX	1024
#define LOG_LIMIT_MS	10000

static atomic_int log_level = LOG_LVL_INFO;	/* set on SIGHUP, read by every thread */

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
log_set_level(enum log_level level)
{
	log_level = level;
}

int
log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

int
log_enabled(enum log_level level)
{
	return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

/*
 * Formats the whole line first and writes it with one write(2), so lines
 * from different threads never interleave.
 */
static void
log_emit(enum log_level level, const char *errstr, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	int n;

	n = snprintf(line, sizeof(line), "%s: ", level_names[level]);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (n >= (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	if (errstr != NULL && n < (int)sizeof(line) - 2)
		n += snprintf(line + n, sizeof(line) - (size_t)n, ": %s", errstr);
	if (n >= (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	if (!log_enabled(LOG_LVL_WARN))
		return;
	va_start(ap, fmt);
	log_emit(LOG_LVL_WARN, strerror(saved), fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(LOG_LVL_WARN))
		return;
	va_start(ap, fmt);
	log_emit(LOG_LVL_WARN, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(LOG_LVL_INFO))
		return;
	va_start(ap, fmt);
	log_emit(LOG_LVL_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(LOG_LVL_DEBUG))
		return;
	va_start(ap, fmt);
	log_emit(LOG_LVL_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LVL_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

void
log_limited(struct log_limit *lim, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	int64_t now;
	va_list ap;

	if (!log_enabled(LOG_LVL_WARN))
		return;
	now = clock_mono_ms();
	if (now < lim->next_ms) {
		lim->suppressed++;
		return;
	}
	lim->next_ms = now + LOG_LIMIT_MS;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (lim->suppressed > 0)
		log_warnx("%s (%llu similar suppressed)", line,
		    (unsigned long long)lim->suppressed);
	else
		log_warnx("%s", line);
	lim->suppressed = 0;
}
