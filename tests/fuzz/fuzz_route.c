/*
 * Fuzzes the REST path routing (route_match through http_route_lookup):
 * the input is "METHOD\npath". A found route must exist, and a path that
 * matched must say so.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size), *path;
	int known = -1, i;

	if (s == NULL)
		return 0;
	if ((path = strchr(s, '\n')) != NULL)
		*path++ = '\0';
	else
		path = s;
	i = http_route_lookup(s, path, &known);
	if (known != 0 && known != 1)
		abort();
	if (i >= 0 && !known)
		abort();
	free(s);
	return 0;
}
