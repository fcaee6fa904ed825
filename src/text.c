/* A growing text buffer. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "text.h"

void
text_printf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	size_t cap;
	char *nb;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = t->buf != NULL ? vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap) : 0;
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if (t->buf != NULL && (size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		cap = t->cap < 4096 ? 4096 : t->cap * 2;
		if ((nb = realloc(t->buf, cap)) == NULL) {
			t->failed = 1;
			return;
		}
		t->buf = nb;
		t->cap = cap;
	}
}

void
text_number(struct text *t, double v)
{
	char s[32];

	/* JSON has no inf or nan: a sum folded past DBL_MAX is said as null. */
	if (!isfinite(v)) {
		text_printf(t, "null");
		return;
	}
	snprintf(s, sizeof(s), "%.15g", v);
	if (strtod(s, NULL) != v)
		snprintf(s, sizeof(s), "%.17g", v);
	text_printf(t, "%s", s);
}

void
text_free(struct text *t)
{
	free(t->buf);
	t->buf = NULL;
	t->len = t->cap = 0;
}
