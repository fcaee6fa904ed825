/* GET / and /ui/{file}: the plant page, served from the files www.c holds in memory. */
#include <string.h>

#include "api.h"
#include "www.h"

static void
send_file(struct http_req *req, struct http_reply *rep, const char *name)
{
	const struct www_file *f = www_find(req->ctx->www, name);

	if (req->ctx->www == NULL) {
		http_error(rep, 404, "not_found", "the page is not installed: [http] www names "
		    "no readable folder (see the log at start)");
		return;
	}
	if (f == NULL) {
		http_error(rep, 404, "not_found", "no such file: %.80s", name);
		return;
	}
	rep->status = 200;
	/* Held in memory until the server stops: MHD may send it without a copy. */
	rep->body = f->data;
	rep->len = f->len;
	rep->borrowed = 1;
	rep->type = f->type;
	rep->page = 1;
}

void
api_page_index(struct http_req *req, struct http_reply *rep)
{
	send_file(req, rep, "index.html");
}

void
api_page_file(struct http_req *req, struct http_reply *rep)
{
	send_file(req, rep, req->params[0]);
}
