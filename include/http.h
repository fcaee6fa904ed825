/*
 * The REST server: libmicrohttpd with a thread pool, routing, JSON
 * replies and errors. Handlers run on the pool's threads; each thread has
 * its own read-only store connection.
 */
#ifndef TW_HTTP_H
#define TW_HTTP_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "conf.h"
#include "store.h"

struct ring;
struct engine;
struct events;
struct request;
struct www;

/* What the handlers may look at; all borrowed, all outlive the server. */
struct api_ctx {
	const struct conf *conf;
	struct ring *ring;
	struct engine *engine;
	struct events *events;
	const struct www *www;		/* the page's files; NULL when not installed */
};

#define HTTP_PARAMS_MAX	4

struct http_req {
	void *conn;			/* struct MHD_Connection */
	const char *method;
	const char *path;
	const char *params[HTTP_PARAMS_MAX];	/* path segments matched by '*' */
	const char *body;
	size_t body_len;
	struct store *db;		/* this thread's reader; NULL if it could not open */
	const char *who;		/* the token's name; NULL when anonymous */
	unsigned roles;			/* ROLE_* it has (all of them without tokens) */
	const struct api_ctx *ctx;
};

struct http_reply {
	int status;
	char *body;			/* owned, freed after sending */
	size_t len;
	const char *type;		/* Content-Type */
	char etag[48];			/* sent when not empty */
	struct { char name[32], value[64]; } extra[4];	/* more headers, http_add_header */
	int nextra;
	int page;			/* one of the page's files: sent with its Content-Security-Policy */
	int borrowed;			/* `body` is not owned: it outlives the reply */
	int close;			/* refused at the headers: the connection ends with it */
	/*
	 * A stream instead of a body (Server-Sent Events): `stream` is called
	 * for more bytes as MHD's content reader, and may block; stream_free
	 * releases stream_cls when the connection ends.
	 */
	long (*stream)(void *cls, uint64_t pos, char *buf, size_t max);
	void (*stream_free)(void *cls);
	void *stream_cls;
};

/* A query argument, or NULL. Borrowed from the request. */
const char *http_arg(struct http_req *req, const char *name);
/* A request header, or NULL. Borrowed from the request. */
const char *http_header(struct http_req *req, const char *name);

/* Fills `rep` with `doc` printed (doc is freed) and `status`. */
void http_json(struct http_reply *rep, int status, cJSON *doc);
/* Fills `rep` with the engine's refusal of `r`, its TW_ERR_* code turned into an HTTP status. */
void http_request_error(struct http_reply *rep, const struct request *r);
/* One more header on the reply (up to four; a fifth is not sent). */
void http_add_header(struct http_reply *rep, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fills `rep` with the error object {"error":{"code","message"}}. */
void http_error(struct http_reply *rep, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

struct http;

struct token_set;
/*
 * Binds the listen address and starts the pool, with `tokens` (owned from
 * now on, also on failure; NULL: none) in force from the first connection.
 * NULL (logged) on failure.
 */
struct http *http_start(const struct api_ctx *ctx, struct token_set *tokens);
void http_stop(struct http *h);
/*
 * The index of the route `method` and `path` reach, or -1 (*path_known
 * says whether the path exists under another method). For the fuzzer.
 */
int http_route_lookup(const char *method, const char *path, int *path_known);
/* Puts `set` (owned from now on; NULL: no tokens) in force; the old set is freed. */
void http_set_tokens(struct http *h, struct token_set *set);

#endif
