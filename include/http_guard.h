/*
 * The checks every HTTP request passes before it reaches an endpoint, so
 * that a web page open in a browser on the gateway cannot drive twind:
 * a Host that names twind (DNS rebinding), an Origin that is twind's own
 * (cross-site requests), and JSON bodies on writes (no-preflight forms).
 * Pure functions of the request's headers, so they are unit-tested and fuzzed.
 */
#ifndef TW_HTTP_GUARD_H
#define TW_HTTP_GUARD_H

#include <stddef.h>

#define GUARD_HOSTS_MAX		16
#define GUARD_NAME_MAX		253	/* a DNS name */

struct guard {
	/* Names besides IP literals and localhost that may appear in Host. */
	char hosts[GUARD_HOSTS_MAX][GUARD_NAME_MAX + 1];
	int nhosts;
	const char *scheme;		/* "http" or "https": what twind's own Origin starts with */
};

/* What a refused request gets. */
struct guard_refusal {
	int status;			/* 400, 403, 415 or 421 */
	const char *code;
	char message[160];
};

/*
 * Fills `g` from `hosts`, a list of DNS names separated by commas or blanks
 * (the [http] hosts setting). TW_ERR_INVAL with `err` filled when a name is
 * not a DNS name or there are more than GUARD_HOSTS_MAX.
 */
int guard_init(struct guard *g, const char *hosts, int tls, char *err, size_t errlen);

/* The request as the guard sees it: headers are NULL when absent. */
struct guard_req {
	const char *method;
	const char *path;
	int http11;			/* HTTP/1.1 or newer: Host is required */
	int nhost, norigin;		/* how many Host and Origin headers came */
	const char *host;
	const char *origin;
	const char *content_type;
	const char *fetch_site;		/* Sec-Fetch-Site */
	const char *fetch_mode;		/* Sec-Fetch-Mode */
};

/*
 * 0 when the request may go on; otherwise TW_ERR_INVAL with `out` filled.
 * Only headers, so it runs before the body is read or a database handle
 * taken. A request with no Host must be HTTP/1.0, never a browser's.
 */
int guard_check(const struct guard *g, const struct guard_req *r, struct guard_refusal *out);

#endif
