/* Topic templates, shared by the engine's publications and the configuration check. */
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "topic.h"

int
topic_format(const char *tmpl, const char *twin, char *buf, size_t len)
{
	const char *p = strstr(tmpl, "{twin}");
	int n;

	if (p == NULL)
		return TW_ERR_INVAL;
	n = snprintf(buf, len, "%.*s%s%s", (int)(p - tmpl), tmpl, twin, p + 6);
	return n < 0 || (size_t)n >= len ? TW_ERR_FULL : TW_OK;
}
