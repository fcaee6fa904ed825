/* REST: /api/v1/events, the live stream of twin, status, desired and alert events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "events.h"

#define HEARTBEAT_MS	15000	/* a comment line this often keeps proxies and clients sure */

struct stream {
	struct events_client *client;
	int greeted;
};

static long
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *st = cls;
	ssize_t n;

	(void)pos;
	if (!st->greeted) {
		st->greeted = 1;
		return snprintf(buf, max, "retry: 3000\n: twind events\n\n");
	}
	n = events_read(st->client, buf, max, HEARTBEAT_MS);
	if (n < 0)
		return -1;	/* MHD_CONTENT_READER_END_OF_STREAM: cut off or shutting down */
	if (n == 0)
		return snprintf(buf, max, ": keepalive\n\n");
	return (long)n;
}

static void
stream_free(void *cls)
{
	struct stream *st = cls;

	events_unsubscribe(st->client);
	free(st);
}

static int
glob_valid(const char *g)
{
	size_t n = strlen(g);

	if (n == 0 || n > 128)
		return 0;
	return strspn(g, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-*?[]!") == n;
}

void
api_events_stream(struct http_req *req, struct http_reply *rep)
{
	const char *glob = http_arg(req, "twin");
	struct stream *st;

	if (glob != NULL && !glob_valid(glob)) {
		http_error(rep, 400, "bad_request", "twin must be an id or a glob such as pump-*");
		return;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL) {
		http_error(rep, 500, "internal", "out of memory");
		return;
	}
	if ((st->client = events_subscribe(req->ctx->events, glob)) == NULL) {
		free(st);
		http_error(rep, 503, "too_many_clients", "the event stream has no room for another "
		    "client (max_event_clients)");
		return;
	}
	rep->status = 200;
	rep->type = "text/event-stream";
	rep->stream = stream_read;
	rep->stream_free = stream_free;
	rep->stream_cls = st;
}
