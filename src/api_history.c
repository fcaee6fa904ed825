/*
 * REST: a twin's history. Raw points, or buckets served from the tier
 * that answers them (history.c); JSON or CSV; one page at a time, written
 * as text while the rows pass, never as a tree of the whole answer.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "err.h"
#include "history.h"
#include "names.h"
#include "store.h"
#include "text.h"

#define LIMIT_DEFAULT	1000
#define LIMIT_MAX	10000	/* a page: the next one starts at X-Next-From */
#define STEP_MIN_MS	1000
#define PAGE_BYTES_MAX	(8 << 20)	/* a page stops here too: strings can be long */

enum agg { AGG_ALL, AGG_MIN, AGG_MAX, AGG_AVG, AGG_COUNT, AGG_FIRST, AGG_LAST, AGG__COUNT };

static const char *const agg_names[AGG__COUNT] = {
	"", "min", "max", "avg", "count", "first", "last",
};

struct query {
	char props[API_PROPS_MAX][PROP_NAME_MAX + 1];
	int nprops;
	int64_t from, to, step_ms;
	int has_from;
	int limit;
	enum agg agg;
	int csv;
};

/* What one property's page wrote: how many rows, and the edge ts for the next page. */
struct page {
	struct text *out;
	const struct query *q;
	const char *prop;
	int rows;
	int64_t first_ts, last_ts;
	int full;		/* stopped at PAGE_BYTES_MAX */
	int more;		/* read again with fewer rows to fit: older ones are left */
};

static int
parse_query(struct http_req *req, struct http_reply *rep, struct query *q)
{
	const char *lim = http_arg(req, "limit"), *step = http_arg(req, "step");
	const char *agg = http_arg(req, "agg"), *accept = http_header(req, "Accept");
	int64_t now = clock_now_ms();
	char *end;
	long n;

	memset(q, 0, sizeof(*q));
	q->from = 0;
	q->to = INT64_MAX;
	q->limit = LIMIT_DEFAULT;
	if (api_props_arg(req, rep, q->props, &q->nprops) ||
	    api_time_arg(req, rep, "from", now, &q->from) ||
	    api_time_arg(req, rep, "to", now, &q->to))
		return -1;
	q->has_from = http_arg(req, "from") != NULL;
	if (lim != NULL) {
		n = strtol(lim, &end, 10);
		if (*end != '\0' || end == lim || n < 1 || n > LIMIT_MAX) {
			http_error(rep, 400, "bad_request", "limit must be 1 to %d (a page; "
			    "X-Next-From says where the next one starts)", LIMIT_MAX);
			return -1;
		}
		q->limit = (int)n;
	}
	if (step != NULL && (clock_parse_duration(step, &q->step_ms) != TW_OK ||
	    q->step_ms < STEP_MIN_MS)) {
		http_error(rep, 400, "bad_request", "step: '%.32s' is not a duration of 1s or more "
		    "(such as 10s, 1m, 15m, 1h, 1d)", step);
		return -1;
	}
	/* Buckets without from: the newest `limit` of them up to `to`. */
	if (!q->has_from && q->step_ms > 0) {
		int64_t until = q->to == INT64_MAX ? now : q->to;

		q->from = until - (int64_t)(q->limit - 1) * q->step_ms;
		if (q->from < 0)
			q->from = 0;
	}
	if (q->from > q->to) {
		http_error(rep, 400, "bad_request", "from is after to");
		return -1;
	}
	if (agg != NULL) {
		for (q->agg = AGG_MIN; q->agg < AGG__COUNT; q->agg++)
			if (strcmp(agg, agg_names[q->agg]) == 0)
				break;
		if (q->agg == AGG__COUNT) {
			http_error(rep, 400, "bad_request", "agg must be min, max, avg, count, first "
			    "or last");
			return -1;
		}
	}
	q->csv = accept != NULL && strstr(accept, "text/csv") != NULL;
	return 0;
}

/* A string as CSV: quoted, and a leading = + - @ defused, so a spreadsheet runs nothing. */
static void
csv_string(struct text *t, const char *s)
{
	size_t n;

	text_printf(t, "\"%s", strchr("=+-@\t\r", *s) != NULL && *s != '\0' ? "'" : "");
	while (*s != '\0') {
		n = strcspn(s, "\"");
		text_printf(t, "%.*s%s", (int)n, s, s[n] == '"' ? "\"\"" : "");
		s += n + (s[n] == '"');
	}
	text_printf(t, "\"");
}

static void
write_value(struct text *t, const struct tw_val *v, int csv)
{
	cJSON *s;
	char *js;

	switch (v->type) {
	case VAL_NUM:
		text_number(t, v->num);
		break;
	case VAL_BOOL:
		text_printf(t, "%s", v->num != 0 ? "true" : "false");
		break;
	case VAL_STR:
		if (csv) {
			csv_string(t, v->str);
			break;
		}
		if ((s = cJSON_CreateString(v->str)) == NULL ||
		    (js = cJSON_PrintUnformatted(s)) == NULL) {
			cJSON_Delete(s);
			t->failed = 1;
			break;
		}
		text_printf(t, "%s", js);
		cJSON_free(js);
		cJSON_Delete(s);
		break;
	default:
		text_printf(t, csv ? "" : "null");
	}
}

static void
page_row(struct page *pg, int64_t ts)
{
	if (pg->rows++ == 0)
		pg->first_ts = ts;
	pg->last_ts = ts;
	if (pg->q->csv)
		text_printf(pg->out, "%s,%lld,", pg->prop, (long long)ts);
	else
		text_printf(pg->out, "%s{\"ts\":%lld", pg->rows > 1 ? "," : "", (long long)ts);
}

static int
point_row(void *arg, const struct store_point *p)
{
	struct page *pg = arg;

	page_row(pg, p->ts);
	if (!pg->q->csv)
		text_printf(pg->out, ",\"value\":");
	write_value(pg->out, &p->val, pg->q->csv);
	text_printf(pg->out, pg->q->csv ? "\r\n" : "}");
	pg->full = pg->out->len >= PAGE_BYTES_MAX;
	return pg->out->failed || pg->full;
}

static int
bucket_row(void *arg, const struct history_bucket *b)
{
	struct page *pg = arg;
	const double v[AGG__COUNT] = { 0, b->min, b->max, b->sum / (double)b->count,
	    (double)b->count, b->first, b->last };
	enum agg only = pg->q->agg;

	page_row(pg, b->ts);
	for (enum agg a = AGG_MIN; a < AGG__COUNT; a++) {
		if (only != AGG_ALL && a != only)
			continue;
		if (pg->q->csv)
			text_printf(pg->out, "%s", a > AGG_MIN && only == AGG_ALL ? "," : "");
		else
			text_printf(pg->out, ",\"%s\":", agg_names[a]);
		text_number(pg->out, v[a]);
	}
	text_printf(pg->out, pg->q->csv ? "\r\n" : "}");
	pg->full = pg->out->len >= PAGE_BYTES_MAX;
	return pg->out->failed || pg->full;
}

static void
csv_header(struct text *t, const struct query *q)
{
	if (q->step_ms == 0) {
		text_printf(t, "property,ts,value\r\n");
		return;
	}
	text_printf(t, "property,ts");
	for (enum agg a = AGG_MIN; a < AGG__COUNT; a++)
		if (q->agg == AGG_ALL || a == q->agg)
			text_printf(t, ",%s", agg_names[a]);
	text_printf(t, "\r\n");
}

/* One property's page into `out`; its rows and edges in *pg. */
static int
read_prop(struct http_req *req, const struct query *q, const struct history_plan *plan,
    const char *id, struct page *pg)
{
	int64_t series;
	int rc;

	if ((rc = store_series_find(req->db, id, pg->prop, &series)) != TW_OK)
		return rc;
	if (q->step_ms > 0)
		return history_buckets(req->db, series, plan, q->limit, bucket_row, pg);
	/* Without from, the newest points are what anyone looking wants. */
	if (q->has_from)
		return history_read(req->db, id, pg->prop, q->from, q->to, q->limit, 0,
		    point_row, pg);
	/*
	 * The newest points, oldest first: a page cut by its bytes would keep
	 * the oldest of them, so it is read again with fewer, until the newest
	 * fit (X-Next-To then reaches the rest).
	 */
	for (int limit = q->limit, tries = 0; ; tries++) {
		size_t start = pg->out->len;

		rc = history_read(req->db, id, pg->prop, q->from, q->to, limit, 1, point_row,
		    pg);
		if (!pg->full || pg->out->failed || pg->rows <= 1 || tries == 8) {
			pg->more = tries > 0 && pg->rows == limit;
			return rc;
		}
		pg->out->len = start;
		limit = pg->rows * 3 / 4;
		pg->rows = 0;
		pg->full = 0;
	}
}

static int
read_all(struct http_req *req, struct http_reply *rep, const struct query *q, const char *id,
    struct text *out)
{
	struct history_plan plan = { TIER_RAW, 0, q->from, q->to };
	int64_t next_from = INT64_MAX, next_to = INT64_MIN;
	int truncated = 0, rc = TW_OK;

	if (q->step_ms > 0 && history_plan(req->db, q->step_ms, q->from, q->to, &plan) != TW_OK)
		return TW_ERR_DB;
	if (q->csv)
		csv_header(out, q);
	else if (q->nprops > 1)
		text_printf(out, "{");
	for (int i = 0; i < q->nprops && rc == TW_OK; i++) {
		struct page pg = { out, q, q->props[i], 0, 0, 0, 0, 0 };

		if (!q->csv && q->nprops > 1)
			text_printf(out, "%s\"%s\":", i > 0 ? "," : "", q->props[i]);
		if (!q->csv)
			text_printf(out, "[");
		rc = read_prop(req, q, &plan, id, &pg);
		/* Stopped by the page's bounds (bytes, rows folded), not by an error. */
		if ((pg.full || rc == TW_ERR_FULL) && !out->failed) {
			pg.full = 1;
			rc = TW_OK;
		}
		if (rc == TW_ERR_NOTFOUND) {
			http_error(rep, 404, "not_found", "twin '%s' has no property '%s'", id,
			    q->props[i]);
			return rc;
		}
		if (rc == TW_ERR_REFUSED) {
			http_error(rep, 413, "too_large", "one %lld ms bucket of '%s' holds more than 2 "
			    "million points: ask for a step of whole minutes (served from rollups)",
			    (long long)plan.step_ms, q->props[i]);
			return TW_ERR_FULL;
		}
		if (!q->csv)
			text_printf(out, "]");
		if (pg.full && q->nprops > 1) {
			http_error(rep, 413, "too_large", "the answer is too large for one page (%d "
			    "MiB, 2 million rows folded): ask for fewer properties at once, a "
			    "smaller limit or a coarser step", PAGE_BYTES_MAX >> 20);
			return TW_ERR_FULL;
		}
		if (pg.rows == q->limit || pg.full || pg.more) {
			truncated = 1;
			if (pg.last_ts < next_from)
				next_from = pg.last_ts;
			if (pg.first_ts > next_to)
				next_to = pg.first_ts;
		}
	}
	if (!q->csv && q->nprops > 1)
		text_printf(out, "}");
	if (rc != TW_OK)
		return rc;
	if (q->step_ms > 0) {
		http_add_header(rep, "X-History-Tier", "%s", history_tier_name(plan.tier));
		http_add_header(rep, "X-History-Step", "%lld", (long long)plan.step_ms);
	}
	if (truncated) {
		http_add_header(rep, "X-Truncated", "true");
		/* The newest page goes back in time; the others go forward. */
		if (q->step_ms == 0 && !q->has_from)
			http_add_header(rep, "X-Next-To", "%lld", (long long)(next_to - 1));
		else
			http_add_header(rep, "X-Next-From", "%lld", (long long)(next_from +
			    (q->step_ms > 0 ? plan.step_ms : 1)));
	}
	return TW_OK;
}

void
api_twins_history(struct http_req *req, struct http_reply *rep)
{
	struct text out = { 0 };
	struct query q;
	const char *id;
	int rc;

	if ((id = api_twin_id(req, rep)) == NULL || parse_query(req, rep, &q) != 0)
		return;
	/* One read transaction: every property's page is of the same moment. */
	if (store_snapshot_begin(req->db) != TW_OK) {
		http_error(rep, 503, "unavailable", "cannot read the database now");
		return;
	}
	rc = read_all(req, rep, &q, id, &out);
	store_snapshot_end(req->db);
	if (rc == TW_ERR_NOTFOUND || rc == TW_ERR_FULL) {
		text_free(&out);
		return;
	}
	if (rc != TW_OK || out.failed) {
		text_free(&out);
		http_error(rep, 500, "internal", "cannot read history");
		return;
	}
	if (!rep->borrowed)
		free(rep->body);
	rep->borrowed = 0;
	rep->status = 200;
	rep->body = out.buf;	/* never NULL: a page has at least its brackets or header */
	rep->len = out.len;
	rep->type = q.csv ? "text/csv; charset=utf-8" : "application/json";
}
