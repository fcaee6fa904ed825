/* The browser guard: Host, Origin and Content-Type checks before any endpoint. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "http_guard.h"

static int
dns_name_valid(const char *s, size_t len)
{
	if (len == 0 || len > GUARD_NAME_MAX || s[0] == '.' || s[0] == '-')
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

int
guard_init(struct guard *g, const char *hosts, int tls, char *err, size_t errlen)
{
	const char *p = hosts != NULL ? hosts : "";

	memset(g, 0, sizeof(*g));
	g->scheme = tls ? "https" : "http";
	for (;;) {
		size_t len;

		p += strspn(p, ", \t");
		if (*p == '\0')
			return TW_OK;
		len = strcspn(p, ", \t");
		if (!dns_name_valid(p, len)) {
			snprintf(err, errlen, "'%.*s' is not a host name", (int)(len > 64 ? 64 : len), p);
			return TW_ERR_INVAL;
		}
		if (g->nhosts == GUARD_HOSTS_MAX) {
			snprintf(err, errlen, "more than %d host names", GUARD_HOSTS_MAX);
			return TW_ERR_INVAL;
		}
		memcpy(g->hosts[g->nhosts], p, len);
		g->hosts[g->nhosts++][len] = '\0';
		p += len;
	}
}

/*
 * Splits "name", "name:port", "1.2.3.4:port" or "[v6]:port" into its host
 * part (without brackets). 0 when it is none of these.
 */
static int
host_part(const char *host, char *out, size_t outlen, int *literal)
{
	const char *end;
	size_t len;
	unsigned char addr[16];

	*literal = 0;
	if (host[0] == '[') {
		if ((end = strchr(host, ']')) == NULL)
			return 0;
		len = (size_t)(end - host - 1);
		if (len == 0 || len >= outlen)
			return 0;
		memcpy(out, host + 1, len);
		out[len] = '\0';
		end++;
		if (inet_pton(AF_INET6, out, addr) != 1)
			return 0;
		*literal = 1;
	} else {
		len = strcspn(host, ":");
		if (len == 0 || len >= outlen)
			return 0;
		memcpy(out, host, len);
		out[len] = '\0';
		end = host + len;
		*literal = inet_pton(AF_INET, out, addr) == 1;
		if (!*literal && !dns_name_valid(out, len))
			return 0;
	}
	if (*end == '\0')
		return 1;
	if (*end != ':' || end[1] == '\0' || strlen(end + 1) > 5 ||
	    strspn(end + 1, "0123456789") != strlen(end + 1))
		return 0;
	return atoi(end + 1) >= 1 && atoi(end + 1) <= 65535;
}

/*
 * DNS rebinding needs a name the attacker controls, so IP literals are
 * safe whatever the listen address; a name must be localhost or configured.
 */
static int
host_allowed(const struct guard *g, const char *host)
{
	char name[GUARD_NAME_MAX + 2];
	size_t len;
	int literal;

	if (!host_part(host, name, sizeof(name), &literal))
		return 0;
	if (literal)
		return 1;
	len = strlen(name);
	if (len > 1 && name[len - 1] == '.')
		name[--len] = '\0';		/* "localhost." is localhost */
	if (strcasecmp(name, "localhost") == 0)
		return 1;
	for (int i = 0; i < g->nhosts; i++)
		if (strcasecmp(name, g->hosts[i]) == 0)
			return 1;
	return 0;
}

/* twind's own origin is its scheme and the Host the browser used. */
static int
origin_own(const struct guard *g, const char *origin, const char *host)
{
	size_t sl = strlen(g->scheme);

	if (host == NULL)
		return 0;
	return strncasecmp(origin, g->scheme, sl) == 0 && strncmp(origin + sl, "://", 3) == 0 &&
	    strcasecmp(origin + sl + 3, host) == 0;
}

static int
is_write(const char *method)
{
	return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
	    strcmp(method, "OPTIONS") != 0;
}

/* "application/json", any case, optionally followed by parameters (charset). */
static int
type_json(const char *type)
{
	static const char json[] = "application/json";
	const char *rest;

	type += strspn(type, " \t");
	if (strncasecmp(type, json, sizeof(json) - 1) != 0)
		return 0;
	rest = type + sizeof(json) - 1;
	rest += strspn(rest, " \t");
	return *rest == '\0' || *rest == ';';
}

static int
refuse(struct guard_refusal *out, int status, const char *code, const char *what, const char *val)
{
	out->status = status;
	out->code = code;
	snprintf(out->message, sizeof(out->message), what, val != NULL ? val : "");
	return TW_ERR_INVAL;
}

/* The page itself, which a link from anywhere may open (its own requests are then same-origin). */
static int
is_page(const char *path)
{
	return strcmp(path, "/") == 0 || strncmp(path, "/ui/", 4) == 0;
}

/*
 * Sec-Fetch-Site (every current browser sends it) says who asked: only the
 * page itself ("same-origin") or the user ("none": typed, bookmarked). A
 * no-cors fetch, an <img> or a <script> from another page carry no Origin
 * but do carry this, and "same-site" is another port of 127.0.0.1: without
 * this check such requests could hold every connection twind allows.
 */
static int
fetch_allowed(const struct guard_req *r)
{
	if (r->fetch_site == NULL || strcmp(r->fetch_site, "same-origin") == 0 ||
	    strcmp(r->fetch_site, "none") == 0)
		return 1;
	return r->fetch_mode != NULL && strcmp(r->fetch_mode, "navigate") == 0 &&
	    !is_write(r->method) && is_page(r->path);
}

int
guard_check(const struct guard *g, const struct guard_req *r, struct guard_refusal *out)
{
	if (r->nhost > 1 || r->norigin > 1)
		return refuse(out, 400, "bad_request", "more than one Host or Origin header%s", "");
	if (r->host == NULL && r->http11)
		return refuse(out, 400, "bad_request", "HTTP/1.1 needs a Host header%s", "");
	if (r->host != NULL && !host_allowed(g, r->host))
		return refuse(out, 421, "bad_host", "Host '%.64s' is not a name of this twind; "
		    "add it to [http] hosts", r->host);
	if (r->origin != NULL && !origin_own(g, r->origin, r->host))
		return refuse(out, 403, "bad_origin", "requests from pages at '%.64s' are refused",
		    r->origin);
	if (!fetch_allowed(r))
		return refuse(out, 403, "cross_site", "a request another page made (Sec-Fetch-Site: "
		    "%.32s) is refused", r->fetch_site);
	if (is_write(r->method) && (r->content_type == NULL || !type_json(r->content_type)))
		return refuse(out, 415, "bad_content_type", "a write needs Content-Type: "
		    "application/json, not '%.48s'", r->content_type != NULL ? r->content_type : "none");
	return TW_OK;
}
