/* A growing text buffer for replies written as text (metrics, history pages). */
#ifndef TW_TEXT_H
#define TW_TEXT_H

#include <stddef.h>

struct text {
	char *buf;
	size_t len, cap;
	int failed;		/* out of memory: later calls do nothing */
};

/* Appends; on allocation failure sets `failed` and keeps what it had. */
void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A double as JSON writes it (the shorter of %.15g and %.17g that reads back the same); null if not finite. */
void text_number(struct text *t, double v);
void text_free(struct text *t);

#endif
