/* libmicrohttpd glue: binding, limits, routing, and the JSON reply helpers. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "err.h"
#include "http.h"
#include "http_guard.h"
#include "tokens.h"
#include "watchdog.h"
#include "events.h"
#include "request.h"
#include "log.h"
#include "metrics.h"

#define READERS_MAX	16		/* idle readers kept; more are opened and closed as needed */
#define STACK_BYTES	(512 * 1024)	/* per connection thread; SQLite and cJSON fit well within */
#define PATH_SEG_MAX	8
#define PEM_MAX		(64 * 1024)
/* GnuTLS priorities: TLS 1.2 and 1.3 only, GnuTLS's own choice of ciphers within them. */
#define TLS_PRIORITIES	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

typedef void (*http_handler)(struct http_req *, struct http_reply *);

struct route {
	const char *method;
	const char *pattern;		/* '*' matches one path segment */
	http_handler fn;
	unsigned role;			/* what a token needs (once tokens exist); 0: anyone */
};

/* The page's files are public: they hold no data, and the page asks for a token. */
static const struct route routes[] = {
	{ "GET", "/api/v1/twins", api_twins_list, ROLE_READ },
	{ "GET", "/api/v1/twins/*", api_twins_get, ROLE_READ },
	{ "GET", "/api/v1/twins/*/history", api_twins_history, ROLE_READ },
	{ "GET", "/api/v1/twins/*/forecast", api_twins_forecast, ROLE_READ },
	/* A dry run changes nothing: reading is enough. */
	{ "POST", "/api/v1/twins/*/simulate", api_twins_simulate, ROLE_READ },
	{ "PATCH", "/api/v1/twins/*/desired", api_twins_desired, ROLE_OPERATE },
	{ "POST", "/api/v1/twins/*/commands", api_commands_post, ROLE_COMMAND },
	{ "GET", "/api/v1/commands", api_commands_list, ROLE_READ },
	{ "GET", "/api/v1/alerts", api_alerts_list, ROLE_READ },
	{ "POST", "/api/v1/alerts/*/ack", api_alerts_ack, ROLE_OPERATE },
	{ "POST", "/api/v1/alerts/*/shelve", api_alerts_shelve, ROLE_OPERATE },
	{ "GET", "/api/v1/models", api_models_list, ROLE_READ },
	{ "GET", "/api/v1/rules", api_rules_list, ROLE_READ },
	{ "POST", "/api/v1/rules/test", api_rules_test, ROLE_OPERATE },
	{ "GET", "/api/v1/events", api_events_stream, ROLE_READ },
	{ "POST", "/api/v1/reload", api_system_reload, ROLE_ADMIN },
	{ "GET", "/api/v1/whoami", api_system_whoami, ROLE_READ },
	{ "GET", "/healthz", api_system_health, 0 },
	{ "GET", "/metrics", api_system_metrics, ROLE_READ },
	{ "GET", "/", api_page_index, 0 },
	{ "GET", "/ui/*", api_page_file, 0 },
};

struct http {
	struct MHD_Daemon *daemon;
	const struct api_ctx *ctx;
	struct guard guard;
	/* Swapped by main at a reload; matched under the lock by connection threads. */
	pthread_mutex_t tokens_lock;
	struct token_set *tokens;	/* NULL: no tokens, every request anonymous */
	char *tls_cert, *tls_key;	/* PEM, held for the daemon's life (HTTPS) */
};

/* The body of one request, gathered across calls of the access handler. */
struct body {
	char *buf;
	size_t len;
	int too_large;
	int refused;		/* the guard answered at the headers: the body is dropped */
	char who[TOKEN_NAME_MAX + 1];	/* the token's name; "" when anonymous */
	unsigned roles;
	const struct route *route;	/* found at the headers; NULL: 404 or 405 */
	int path_known;			/* the path exists under another method (405) */
};

/*
 * Read-only store connections, kept for reuse: each request takes one and
 * gives it back, so a connection thread never opens SQLite for itself.
 * At most max_connections exist, since each request holds one.
 */
static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store *readers[READERS_MAX];
static int nreaders;

static struct store *
reader_take(const struct conf *c)
{
	struct store *db = NULL;

	pthread_mutex_lock(&readers_lock);
	if (nreaders > 0)
		db = readers[--nreaders];
	pthread_mutex_unlock(&readers_lock);
	return db != NULL ? db : store_open(c->db_path, 0, 0);
}

static void
reader_give(struct store *db)
{
	if (db == NULL)
		return;
	pthread_mutex_lock(&readers_lock);
	if (nreaders < READERS_MAX) {
		readers[nreaders++] = db;
		db = NULL;
	}
	pthread_mutex_unlock(&readers_lock);
	store_close(db);
}

const char *
http_arg(struct http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *
http_header(struct http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

void
http_json(struct http_reply *rep, int status, cJSON *doc)
{
	char *s = doc != NULL ? cJSON_PrintUnformatted(doc) : NULL;

	cJSON_Delete(doc);
	if (s == NULL) {
		http_error(rep, 500, "internal", "out of memory");
		return;
	}
	if (!rep->borrowed)
		free(rep->body);
	rep->borrowed = 0;
	rep->status = status;
	rep->body = s;
	rep->len = strlen(s);
	rep->type = "application/json";
}

void
http_add_header(struct http_reply *rep, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (rep->nextra >= (int)(sizeof(rep->extra) / sizeof(rep->extra[0])))
		return;
	snprintf(rep->extra[rep->nextra].name, sizeof(rep->extra[0].name), "%s", name);
	va_start(ap, fmt);
	vsnprintf(rep->extra[rep->nextra].value, sizeof(rep->extra[0].value), fmt, ap);
	va_end(ap);
	rep->nextra++;
}

void
http_request_error(struct http_reply *rep, const struct request *r)
{
	int status;

	switch (r->err) {
	case TW_ERR_INVAL:	status = 400; break;
	case TW_ERR_NOTFOUND:	status = 404; break;
	case TW_ERR_CONFLICT:	status = 412; break;
	case TW_ERR_REFUSED:	status = 422; break;
	case TW_ERR_FULL:	status = 429; break;
	case TW_ERR_UNAVAIL:	status = 503; break;
	default:		status = 500;
	}
	http_error(rep, status, r->code[0] != '\0' ? r->code : "internal", "%s", r->message);
	/* Refused by the envelope's rate: it may go again then (RFC 9110). */
	if (r->retry_ms > 0)
		http_add_header(rep, "Retry-After", "%lld", (long long)((r->retry_ms + 999) / 1000));
}

void
http_error(struct http_reply *rep, int status, const char *code, const char *fmt, ...)
{
	cJSON *doc, *err;
	char msg[512];
	va_list ap;
	char *s;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!rep->borrowed)
		free(rep->body);
	rep->borrowed = 0;
	rep->body = NULL;
	rep->page = 0;
	rep->status = status;
	rep->type = "application/json";
	if ((doc = cJSON_CreateObject()) == NULL ||
	    (err = cJSON_AddObjectToObject(doc, "error")) == NULL ||
	    cJSON_AddStringToObject(err, "code", code) == NULL ||
	    cJSON_AddStringToObject(err, "message", msg) == NULL ||
	    (s = cJSON_PrintUnformatted(doc)) == NULL) {
		cJSON_Delete(doc);
		return;		/* an empty body with the status still says what happened */
	}
	cJSON_Delete(doc);
	rep->body = s;
	rep->len = strlen(s);
}

/*
 * Matches `path` against a route pattern; on a match fills req->params
 * with the '*' segments, copied into `store` (one path's worth).
 */
static int
route_match(const char *pattern, const char *path, struct http_req *req, char *store)
{
	const char *p = pattern, *u = path;
	int np = 0;

	while (*p != '\0' && *u != '\0') {
		size_t pl = strcspn(p, "/"), ul = strcspn(u, "/");

		if (pl == 1 && *p == '*') {
			if (ul == 0 || np == HTTP_PARAMS_MAX)
				return 0;
			memcpy(store, u, ul);
			store[ul] = '\0';
			req->params[np++] = store;
			store += ul + 1;
		} else if (pl != ul || strncmp(p, u, pl) != 0) {
			return 0;
		}
		p += pl;
		u += ul;
		if (*p == '/' && *u == '/') {
			p++;
			u++;
		}
	}
	return *p == '\0' && *u == '\0';
}

/* The route `method` and `path` reach, or NULL (`*path_known` says whether the path exists). */
static const struct route *
route_find(const char *method, const char *path, int *path_known)
{
	struct http_req scratch = { 0 };
	char *store = malloc(strlen(path) + 1);
	const struct route *found = NULL;

	*path_known = 0;
	if (store == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]) && found == NULL; i++) {
		if (!route_match(routes[i].pattern, path, &scratch, store))
			continue;
		*path_known = 1;
		/* HEAD is GET without the body (MHD drops it); not for a stream that never ends. */
		if (strcmp(routes[i].method, method) == 0 ||
		    (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0 &&
		    routes[i].fn != api_events_stream))
			found = &routes[i];
	}
	free(store);
	return found;
}

/* "Bearer <token>" -> the token, or NULL. */
static const char *
bearer(const char *auth)
{
	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
		return NULL;
	auth += 7;
	auth += strspn(auth, " ");
	return *auth != '\0' ? auth : NULL;
}

/*
 * Who asks, and may they: with no tokens file everyone is anonymous and
 * may do all; with one, a route's role needs a token that has it (401
 * without a valid token, 403 with one too weak). Returns 1 when `rep`
 * holds the refusal.
 */
static int
authorize(struct http *h, struct MHD_Connection *conn, struct body *b, struct http_reply *rep)
{
	struct http_req req = { .conn = conn };
	const struct token *t;
	const struct route *r = b->route;
	unsigned need;
	int have_tokens;

	need = r != NULL ? r->role : 0;
	if (r != NULL && r->fn == api_system_metrics && h->ctx->conf->http_metrics_public)
		need = 0;
	/* From the config, not from the set: no moment at start may be open to all. */
	have_tokens = h->ctx->conf->http_tokens[0] != '\0';
	if (!have_tokens) {
		b->roles = ROLE_READ | ROLE_OPERATE | ROLE_COMMAND | ROLE_ADMIN;
		return 0;
	}
	pthread_mutex_lock(&h->tokens_lock);
	if ((t = tokens_match(h->tokens, bearer(http_header(&req, "Authorization")))) != NULL) {
		snprintf(b->who, sizeof(b->who), "%s", t->name);
		b->roles = tokens_effective(t->roles);
	}
	pthread_mutex_unlock(&h->tokens_lock);
	if (need == 0 || (b->roles & need) == need)
		return 0;
	if (t == NULL) {
		http_error(rep, 401, "unauthorized", "this needs a token: Authorization: Bearer "
		    "<token> (a missing, unknown or revoked token)");
		http_add_header(rep, "WWW-Authenticate", "Bearer realm=\"twind\"");
	} else {
		http_error(rep, 403, "forbidden", "token '%s' lacks the %s role", b->who,
		    tokens_role_name(need));
	}
	return 1;
}

int
http_route_lookup(const char *method, const char *path, int *path_known)
{
	const struct route *r = route_find(method, path, path_known);

	return r != NULL ? (int)(r - routes) : -1;
}

void
http_set_tokens(struct http *h, struct token_set *set)
{
	struct token_set *old;

	pthread_mutex_lock(&h->tokens_lock);
	old = h->tokens;
	h->tokens = set;
	pthread_mutex_unlock(&h->tokens_lock);
	/* Streams were let in by the old tokens: they reconnect and are judged anew. */
	if (old != NULL && h->ctx->events != NULL)
		events_cut_all(h->ctx->events);
	tokens_free(old);
}

/*
 * Runs the route found at the headers, its '*' segments copied into
 * `store` (one path's worth) as req->params; or answers 405 / 404.
 */
static void
http_dispatch(struct http_req *req, struct http_reply *rep, const struct body *b, char *store)
{
	if (b->route != NULL && route_match(b->route->pattern, req->path, req, store))
		b->route->fn(req, rep);
	else if (b->path_known)
		http_error(rep, 405, "method_not_allowed", "%s is not allowed on %s",
		    req->method, req->path);
	else
		http_error(rep, 404, "not_found", "no such endpoint: %s", req->path);
}

static enum MHD_Result
http_send(struct MHD_Connection *conn, struct http_reply *rep)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (rep->stream != NULL)
		r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
		    (MHD_ContentReaderCallback)rep->stream, rep->stream_cls,
		    (MHD_ContentReaderFreeCallback)rep->stream_free);
	else
		r = MHD_create_response_from_buffer(rep->len, rep->body != NULL ? rep->body : "",
		    rep->body != NULL && !rep->borrowed ? MHD_RESPMEM_MUST_FREE :
		    MHD_RESPMEM_PERSISTENT);
	if (r == NULL) {
		if (!rep->borrowed)
			free(rep->body);
		if (rep->stream_free != NULL)
			rep->stream_free(rep->stream_cls);
		return MHD_NO;
	}
	rep->body = NULL;
	MHD_add_response_header(r, "Content-Type", rep->type != NULL ? rep->type : "text/plain");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	/* The page has buttons that move machines: no other site may frame it. */
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	if (rep->page)
		MHD_add_response_header(r, "Content-Security-Policy", "default-src 'self'; "
		    "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
		    "form-action 'self'; frame-ancestors 'none'");
	if (rep->etag[0] != '\0')
		MHD_add_response_header(r, "ETag", rep->etag);
	/* A refused client gets no idle connection to hold against the others. */
	if (rep->close)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	for (int i = 0; i < rep->nextra; i++)
		MHD_add_response_header(r, rep->extra[i].name, rep->extra[i].value);
	ret = MHD_queue_response(conn, (unsigned)rep->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct guard_req *g = cls;

	(void)kind;
	(void)value;
	if (strcasecmp(key, "Host") == 0)
		g->nhost++;
	else if (strcasecmp(key, "Origin") == 0)
		g->norigin++;
	return MHD_YES;
}

/*
 * The browser guard, on the headers alone: a refused request costs no
 * database handle and no body buffer. Returns 1 when `rep` holds a refusal.
 */
static int
guard_headers(struct http *h, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, struct http_reply *rep)
{
	struct guard_req g = { .method = method, .path = url };
	struct guard_refusal gr;
	struct http_req req = { .conn = conn };

	g.http11 = strcmp(version, MHD_HTTP_VERSION_1_0) != 0;
	MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header, &g);
	g.host = http_header(&req, "Host");
	g.origin = http_header(&req, "Origin");
	g.content_type = http_header(&req, "Content-Type");
	g.fetch_site = http_header(&req, "Sec-Fetch-Site");
	g.fetch_mode = http_header(&req, "Sec-Fetch-Mode");
	if (guard_check(&h->guard, &g, &gr) == TW_OK)
		return 0;
	metrics_add(&metrics.http_refused, 1);
	http_error(rep, gr.status, gr.code, "%s", gr.message);
	return 1;
}

/* A declared body beyond max_body is refused before a byte of it is read. */
static int
body_too_large(struct http *h, struct MHD_Connection *conn, struct http_reply *rep)
{
	struct http_req req = { .conn = conn };
	const char *cl = http_header(&req, MHD_HTTP_HEADER_CONTENT_LENGTH);

	if (cl == NULL || strtoull(cl, NULL, 10) <= (unsigned long long)h->ctx->conf->http_max_body)
		return 0;
	http_error(rep, 413, "too_large", "the body is larger than %d bytes",
	    h->ctx->conf->http_max_body);
	return 1;
}

static enum MHD_Result
http_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct http *h = cls;
	struct body *b = *con_cls;
	struct http_reply rep = { 0 };
	struct http_req req = { 0 };
	char *params;
	enum MHD_Result ret;
	int busy;

	if (b == NULL) {
		/* First call: headers only. The body, if any, comes in the next calls. */
		if ((b = calloc(1, sizeof(*b))) == NULL)
			return MHD_NO;
		*con_cls = b;
		/* The route once, here: its role decides the rest, and dispatch runs it. */
		b->route = route_find(method, url, &b->path_known);
		if (!guard_headers(h, conn, url, method, version, &rep) &&
		    !authorize(h, conn, b, &rep) && !body_too_large(h, conn, &rep))
			return MHD_YES;
		rep.close = 1;
		metrics_add(&metrics.http_requests, 1);
		b->refused = 1;
		return http_send(conn, &rep);
	}
	if (b->refused) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		if (!b->too_large && b->len + n <= (size_t)h->ctx->conf->http_max_body) {
			char *nb = realloc(b->buf, b->len + n + 1);

			if (nb == NULL)
				return MHD_NO;
			b->buf = nb;
			memcpy(b->buf + b->len, upload_data, n);
			b->len += n;
			b->buf[b->len] = '\0';
		} else {
			b->too_large = 1;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	metrics_add(&metrics.http_requests, 1);
	if ((params = malloc(strlen(url) + 1)) == NULL)
		return MHD_NO;
	req.conn = conn;
	req.method = method;
	req.path = url;
	req.body = b->buf;
	req.body_len = b->len;
	req.ctx = h->ctx;
	req.who = b->who[0] != '\0' ? b->who : NULL;
	req.roles = b->roles;
	/* From here to the answer is the handler's: the watchdog sees one that never ends. */
	busy = watchdog_busy_enter();
	req.db = reader_take(h->ctx->conf);
	if (b->too_large)
		http_error(&rep, 413, "too_large", "the body is larger than %d bytes",
		    h->ctx->conf->http_max_body);
	else if (req.db == NULL)
		http_error(&rep, 503, "unavailable", "cannot open the database");
	else
		http_dispatch(&req, &rep, b, params);
	reader_give(req.db);
	watchdog_busy_leave(busy);
	ret = http_send(conn, &rep);
	free(params);
	return ret;
}

static void
http_done(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct body *b = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (b != NULL) {
		free(b->buf);
		free(b);
		*con_cls = NULL;
	}
}

static void
http_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_warnx("http: %s", line);
}

static void
free_pems(struct http *h)
{
	if (h->tls_key != NULL)
		explicit_bzero(h->tls_key, strlen(h->tls_key));
	free(h->tls_key);
	free(h->tls_cert);
}

/* A whole small file (a PEM certificate or key) as a string; NULL (logged) on failure. */
static char *
read_pem(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t n = 0;

	if (f == NULL || (buf = malloc(PEM_MAX + 1)) == NULL ||
	    (n = fread(buf, 1, PEM_MAX + 1, f)) == 0 || n > PEM_MAX) {
		log_warnx("http: TLS: cannot read %s (missing, unreadable, empty or over %d bytes)",
		    path, PEM_MAX);
		free(buf);
		buf = NULL;
	} else {
		buf[n] = '\0';
	}
	if (f != NULL)
		fclose(f);
	return buf;
}

struct http *
http_start(const struct api_ctx *ctx, struct token_set *tokens)
{
	const struct conf *c = ctx->conf;
	struct addrinfo hints = { .ai_flags = AI_NUMERICSERV, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	/*
	 * A thread per connection: an event stream may wait for events without
	 * holding up other clients; max_connections bounds the threads.
	 */
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_ERROR_LOG;
	char host[256], port[16], gerr[128];
	struct MHD_OptionItem tls[4] = { { MHD_OPTION_END, 0, NULL }, { MHD_OPTION_END, 0, NULL },
		{ MHD_OPTION_END, 0, NULL }, { MHD_OPTION_END, 0, NULL } };
	struct http *h;
	int p;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->ctx = ctx;
	h->tokens = tokens;		/* before the first connection */
	pthread_mutex_init(&h->tokens_lock, NULL);
	if (c->http_tls_cert[0] != '\0') {
		if ((h->tls_cert = read_pem(c->http_tls_cert)) == NULL ||
		    (h->tls_key = read_pem(c->http_tls_key)) == NULL)
			goto fail;
		flags |= MHD_USE_TLS;
		tls[0] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert };
		tls[1] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key };
		tls[2] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_PRIORITIES, 0,
		    (void *)TLS_PRIORITIES };
	}
	if (guard_init(&h->guard, c->http_hosts, h->tls_cert != NULL, gerr, sizeof(gerr)) !=
	    TW_OK) {
		log_warnx("http: [http] hosts: %s", gerr);
		goto fail;
	}
	if (conf_listen_split(c->http_listen, host, sizeof(host), &p) != TW_OK)
		goto fail;
	snprintf(port, sizeof(port), "%d", p);
	if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
		log_warnx("http: cannot resolve listen address %s", c->http_listen);
		goto fail;
	}
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	h->daemon = MHD_start_daemon(flags, (uint16_t)p, NULL, NULL, http_access, h,
	    MHD_OPTION_EXTERNAL_LOGGER, http_log, NULL,
	    MHD_OPTION_SOCK_ADDR, ai->ai_addr,
	    MHD_OPTION_THREAD_STACK_SIZE, (size_t)STACK_BYTES,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->http_max_connections,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)c->http_max_per_ip,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(c->http_timeout_ms / 1000),
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
	    MHD_OPTION_NOTIFY_COMPLETED, http_done, h,
	    MHD_OPTION_ARRAY, tls,
	    MHD_OPTION_END);
	freeaddrinfo(ai);
	if (h->daemon == NULL) {
		log_warnx("http: cannot listen on %s (in use, not an address of this host%s)",
		    c->http_listen, h->tls_cert != NULL ? ", or the TLS certificate and key were "
		    "refused: see above" : "");
		goto fail;
	}
	log_info("http: listening on %s%s", c->http_listen, h->tls_cert != NULL ? " (HTTPS)" : "");
	return h;
fail:
	free_pems(h);
	tokens_free(h->tokens);
	pthread_mutex_destroy(&h->tokens_lock);
	free(h);
	return NULL;
}

void
http_stop(struct http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->daemon);
	pthread_mutex_lock(&readers_lock);
	for (int i = 0; i < nreaders; i++)
		store_close(readers[i]);
	nreaders = 0;
	pthread_mutex_unlock(&readers_lock);
	tokens_free(h->tokens);
	free_pems(h);
	pthread_mutex_destroy(&h->tokens_lock);
	free(h);
}
