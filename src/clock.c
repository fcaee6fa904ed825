/* Clocks and the parsing of times and durations, kept free of locale and TZ. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "err.h"

int64_t
clock_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
clock_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
clock_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int
clock_cond_init(pthread_cond_t *c)
{
	pthread_condattr_t a;
	int rc;

	if (pthread_condattr_init(&a) != 0)
		return TW_ERR_NOMEM;
	rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC) != 0 || pthread_cond_init(c, &a) != 0;
	pthread_condattr_destroy(&a);
	return rc ? TW_ERR_NOMEM : TW_OK;
}

void
clock_deadline(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int
clock_parse_duration(const char *s, int64_t *ms)
{
	static const struct { const char *unit; int64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
		{ "d", 86400000 }, { "", 1000 },
	};
	char *end;
	double v;

	if (s == NULL || !isdigit((unsigned char)*s))
		return TW_ERR_INVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s)
		return TW_ERR_INVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		/* Ten years is far beyond any window or timeout we use. */
		if (v * (double)units[i].ms > 315360000000.0)
			return TW_ERR_INVAL;
		*ms = (int64_t)(v * (double)units[i].ms);
		return TW_OK;
	}
	return TW_ERR_INVAL;
}

/* Reads exactly n digits at *p; returns -1 if any is not a digit. */
static int
digits(const char **p, const char *end, int n)
{
	int v = 0;

	if (end - *p < n)
		return -1;
	for (int i = 0; i < n; i++, (*p)++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

static int
expect(const char **p, const char *end, const char *set)
{
	if (*p >= end || strchr(set, **p) == NULL || **p == '\0')
		return -1;
	(*p)++;
	return 0;
}

int
clock_parse_rfc3339(const char *s, size_t len, int64_t *ms)
{
	const char *p = s, *end = s + len;
	struct tm tm = { 0 };
	int64_t frac = 0, off = 0;
	int y, mo, d, h, mi, se;
	time_t t;

	if ((y = digits(&p, end, 4)) < 0 || expect(&p, end, "-") ||
	    (mo = digits(&p, end, 2)) < 0 || expect(&p, end, "-") ||
	    (d = digits(&p, end, 2)) < 0 || expect(&p, end, "Tt ") ||
	    (h = digits(&p, end, 2)) < 0 || expect(&p, end, ":") ||
	    (mi = digits(&p, end, 2)) < 0 || expect(&p, end, ":") ||
	    (se = digits(&p, end, 2)) < 0)
		return TW_ERR_INVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
		return TW_ERR_INVAL;
	if (p < end && *p == '.') {
		int n = 0;

		for (p++; p < end && isdigit((unsigned char)*p); p++, n++)
			if (n < 3)
				frac = frac * 10 + (*p - '0');
		if (n == 0)
			return TW_ERR_INVAL;
		for (; n < 3; n++)
			frac *= 10;
	}
	if (p < end && (*p == 'Z' || *p == 'z')) {
		p++;
	} else if (p < end && (*p == '+' || *p == '-')) {
		int sign = *p++ == '-' ? -1 : 1, oh, om;

		if ((oh = digits(&p, end, 2)) < 0 || expect(&p, end, ":") ||
		    (om = digits(&p, end, 2)) < 0 || oh > 23 || om > 59)
			return TW_ERR_INVAL;
		off = sign * ((int64_t)oh * 3600 + om * 60);
	} else {
		return TW_ERR_INVAL;
	}
	if (p != end)
		return TW_ERR_INVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	t = timegm(&tm);
	if (t == (time_t)-1 && y != 1969)
		return TW_ERR_INVAL;
	*ms = ((int64_t)t - off) * 1000 + frac;
	return TW_OK;
}

int
clock_parse_time(const char *s, int64_t now_ms, int64_t *ms)
{
	int64_t d;
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return TW_ERR_INVAL;
	if (strcmp(s, "now") == 0) {
		*ms = now_ms;
		return TW_OK;
	}
	if (*s == '-' || *s == '+') {
		if (clock_parse_duration(s + 1, &d) != TW_OK)
			return TW_ERR_INVAL;
		*ms = *s == '-' ? now_ms - d : now_ms + d;
		return TW_OK;
	}
	if (strchr(s, 'T') != NULL || strchr(s, 't') != NULL)
		return clock_parse_rfc3339(s, strlen(s), ms);
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		return TW_ERR_INVAL;
	*ms = v;
	return TW_OK;
}
