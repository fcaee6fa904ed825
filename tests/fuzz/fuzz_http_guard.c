/*
 * Fuzzes the HTTP header checks. Input: one flags byte, then fields split
 * at '\n': hosts setting, method, path, Host, Origin, Content-Type,
 * Sec-Fetch-Site, Sec-Fetch-Mode. Flag bits: 0 tls, 1 HTTP/1.1, 2 two
 * Host headers, 3 two Origin headers; bits 4..7 drop Host, Origin,
 * Content-Type and the Sec-Fetch-* pair (absent headers are NULL).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "http_guard.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guard g;
	struct guard_req r = { 0 };
	struct guard_refusal out;
	char *s, *f[8], err[128];
	unsigned flags;
	int rc;

	if (size < 1)
		return 0;
	flags = data[0];
	s = fuzz_strndup(data + 1, size - 1);
	fuzz_fields(s, f, 8);
	err[0] = '\0';
	rc = guard_init(&g, f[0], flags & 1, err, sizeof(err));
	if (rc != TW_OK) {
		if (rc != TW_ERR_INVAL || err[0] == '\0')
			abort();
		free(s);
		return 0;
	}
	if (g.nhosts < 0 || g.nhosts > GUARD_HOSTS_MAX)
		abort();
	for (int i = 0; i < g.nhosts; i++)
		if (strlen(g.hosts[i]) == 0 || strlen(g.hosts[i]) > GUARD_NAME_MAX)
			abort();
	r.method = f[1] != NULL ? f[1] : "GET";
	r.path = f[2] != NULL ? f[2] : "/";
	r.http11 = (flags >> 1) & 1;
	r.host = flags & 0x10 ? NULL : f[3];
	r.origin = flags & 0x20 ? NULL : f[4];
	r.content_type = flags & 0x40 ? NULL : f[5];
	r.fetch_site = flags & 0x80 ? NULL : f[6];
	r.fetch_mode = flags & 0x80 ? NULL : f[7];
	r.nhost = r.host != NULL ? 1 + ((flags >> 2) & 1) : 0;
	r.norigin = r.origin != NULL ? 1 + ((flags >> 3) & 1) : 0;
	memset(&out, 0, sizeof(out));
	rc = guard_check(&g, &r, &out);
	if (rc != TW_OK) {
		if (rc != TW_ERR_INVAL || out.code == NULL || out.message[0] == '\0' ||
		    (out.status != 400 && out.status != 403 && out.status != 415 &&
		    out.status != 421) || strlen(out.message) >= sizeof(out.message))
			abort();
	} else if (r.nhost > 1 || r.norigin > 1 || (r.host == NULL && r.http11)) {
		abort();	/* let through what the guard promises to refuse */
	}
	free(s);
	return 0;
}
