/*
 * REST: a property's trend and when it reaches a limit. The stored
 * history of the window is fed through the same window code that
 * forecast() and time_to() read in rules, so a forecast on the page and
 * a rule's decision cannot disagree. It is anchored at the property's
 * newest reading: "now" for a live twin, and the right moment for one
 * that was replayed or has gone quiet.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "engine.h"
#include "err.h"
#include "history.h"
#include "model.h"
#include "names.h"
#include "store.h"
#include "window.h"

#define WINDOW_DEFAULT_MS	3600000LL
#define WINDOW_MIN_MS		1000LL
#define WINDOW_MAX_MS		(400LL * 86400000LL)	/* a year and a season: past it, use the hour tier's own view */
#define HORIZON_MAX_MS		(10LL * 365 * 86400000LL)	/* as the rule language's durations */

struct forecast_query {
	char props[API_PROPS_MAX][PROP_NAME_MAX + 1];
	int nprops;
	int64_t window_ms, horizon_ms;
	int has_limit;
	double limit;
};

/* What the store says of one property before its history is read. */
struct reported {
	const char *want;
	int found;
	int64_t series, ts;
	int type;
	double num;
};

static int
reported_row(void *arg, const struct store_series_row *row)
{
	struct reported *r = arg;

	if (strcmp(row->prop, r->want) != 0)
		return 0;
	r->found = 1;
	r->series = row->id;
	r->ts = row->ts;
	r->type = row->val.type;
	r->num = row->val.num;
	return 0;
}

static int
model_row(void *arg, const struct store_twin_row *row)
{
	char *model = arg;

	snprintf(model, 256, "%s", row->model != NULL ? row->model : "");
	return 0;
}

static int
duration_arg(struct http_req *req, struct http_reply *rep, const char *name, int64_t dflt,
    int64_t min, int64_t max, int64_t *out)
{
	const char *v = http_arg(req, name);

	*out = dflt;
	if (v == NULL)
		return 0;
	if (clock_parse_duration(v, out) != TW_OK || *out < min || *out > max) {
		http_error(rep, 400, "bad_request", "%s: '%.32s' is not a duration from %llds to "
		    "%lldd (such as 30s, 10m, 1h, 7d)", name, v, (long long)(min / 1000),
		    (long long)(max / 86400000));
		return -1;
	}
	return 0;
}

static int
parse_query(struct http_req *req, struct http_reply *rep, struct forecast_query *q)
{
	const char *lim = http_arg(req, "limit");
	char *end;

	memset(q, 0, sizeof(*q));
	if (api_props_arg(req, rep, q->props, &q->nprops) ||
	    duration_arg(req, rep, "window", WINDOW_DEFAULT_MS, WINDOW_MIN_MS, WINDOW_MAX_MS,
	    &q->window_ms))
		return -1;
	/* Without a horizon the trend looks as far ahead as it looked back. */
	if (duration_arg(req, rep, "horizon", q->window_ms, 0, HORIZON_MAX_MS, &q->horizon_ms))
		return -1;
	if (lim != NULL) {
		q->limit = strtod(lim, &end);
		if (end == lim || *end != '\0' || !isfinite(q->limit) || fabs(q->limit) > 1e300) {
			http_error(rep, 400, "bad_request", "limit: '%.32s' is not a finite number",
			    lim);
			return -1;
		}
		q->has_limit = 1;
	}
	return 0;
}

/*
 * Buckets of the plan into the window: raw points as they are; where raw
 * points are gone, a minute (or hour) row as one point, its mean at the
 * middle of its first and last reading.
 */
/*
 * Values go in relative to the newest one: the window's sums of squares
 * are not centred, and a counter at 1e10 would lose every digit of its
 * residuals to cancellation. The slope and r2 do not move; levels are
 * given back with the offset.
 */
struct fed {
	struct window w;
	double off;
};

static int
feed(void *arg, const struct history_bucket *b)
{
	struct fed *f = arg;

	if (b->count == 1)
		window_add(&f->w, b->first_ts, b->first - f->off);
	else
		window_add(&f->w, b->first_ts + (b->last_ts - b->first_ts) / 2,
		    b->sum / (double)b->count - f->off);
	return 0;
}

static int
add_number_or_null(cJSON *o, const char *name, int has, double v)
{
	if (has && isfinite(v))
		return cJSON_AddNumberToObject(o, name, v) == NULL;
	return cJSON_AddNullToObject(o, name) == NULL;
}

/* The limit the trend is judged against: the query's, else the model's bound it heads for. */
static const char *
pick_limit(const struct forecast_query *q, const struct model_prop *mp,
    const struct window_stats *s, double *limit)
{
	if (q->has_limit) {
		*limit = q->limit;
		return "query";
	}
	if (mp == NULL || !s->has_slope || s->slope == 0)
		return NULL;
	if (s->slope > 0 && mp->has_max) {
		*limit = mp->max;
		return "maximum";
	}
	if (s->slope < 0 && mp->has_min) {
		*limit = mp->min;
		return "minimum";
	}
	return NULL;
}

static cJSON *
forecast_json(const struct forecast_query *q, const struct model_prop *mp, int64_t anchor,
    const struct history_plan *plan, const struct fed *f)
{
	const struct window *w = &f->w;
	struct window_stats s;
	int64_t at = anchor + q->horizon_ms;
	double fitted = 0, projected = 0, half = 0, limit = 0, ttl = -1;
	int has_fit, has_half;
	const char *source;
	cJSON *o = cJSON_CreateObject(), *iv;

	if (window_stats(w, anchor, &s) != 0)
		s.n = 0;
	has_fit = s.n > 0 && window_forecast(&s, anchor, &fitted) == 0 &&
	    window_forecast(&s, at, &projected) == 0;
	has_half = has_fit && window_interval(&s, at, &half) == 0;
	source = pick_limit(q, mp, &s, &limit);
	if (source != NULL && has_fit)
		ttl = window_time_to(&s, anchor, limit - f->off);
	fitted += f->off;
	projected += f->off;
	if (o == NULL ||
	    cJSON_AddNumberToObject(o, "ts", (double)anchor) == NULL ||
	    cJSON_AddNumberToObject(o, "window_s", (double)q->window_ms / 1000.0) == NULL ||
	    cJSON_AddNumberToObject(o, "horizon_s", (double)q->horizon_ms / 1000.0) == NULL ||
	    cJSON_AddStringToObject(o, "tier", history_tier_name(plan->tier)) == NULL ||
	    cJSON_AddNumberToObject(o, "points", (double)s.n) == NULL ||
	    add_number_or_null(o, "slope_per_s", has_fit, s.slope) ||
	    add_number_or_null(o, "fitted", has_fit, fitted) ||
	    add_number_or_null(o, "projected", has_fit, projected) ||
	    add_number_or_null(o, "r2", has_fit, s.r2) ||
	    add_number_or_null(o, "residual_sd", has_half, s.resid_sd))
		goto fail;
	if (has_half) {
		if ((iv = cJSON_AddObjectToObject(o, "interval")) == NULL ||
		    cJSON_AddNumberToObject(iv, "level", 0.95) == NULL ||
		    cJSON_AddNumberToObject(iv, "low", projected - half) == NULL ||
		    cJSON_AddNumberToObject(iv, "high", projected + half) == NULL)
			goto fail;
	} else if (cJSON_AddNullToObject(o, "interval") == NULL) {
		goto fail;
	}
	if (add_number_or_null(o, "limit", source != NULL, limit) ||
	    (source != NULL ? cJSON_AddStringToObject(o, "limit_source", source) :
	    cJSON_AddNullToObject(o, "limit_source")) == NULL ||
	    add_number_or_null(o, "time_to_limit_s", ttl >= 0, ttl) ||
	    add_number_or_null(o, "limit_ts", ttl >= 0, (double)anchor + round(ttl * 1000.0)))
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

/* One property's forecast, or an error in `rep` (returns non-zero then). */
static int
forecast_prop(struct http_req *req, struct http_reply *rep, const struct forecast_query *q,
    const char *id, const struct model *m, const char *prop, cJSON **out)
{
	struct reported r = { .want = prop };
	struct history_plan plan;
	struct fed f;
	int rc;

	rc = store_read_reported(req->db, id, reported_row, &r);
	if (rc != TW_OK && rc != TW_ERR_NOTFOUND)
		return TW_ERR_DB;
	if (!r.found) {
		http_error(rep, 404, "not_found", "twin '%s' has no property '%s'", id, prop);
		return TW_ERR_NOTFOUND;
	}
	if (r.type != VAL_NUM) {
		http_error(rep, 422, "not_numeric", "'%s' of twin '%s' is not a number: it has no "
		    "trend", prop, id);
		return TW_ERR_INVAL;
	}
	/* Every raw point is its own bucket; a trimmed tier hands over to the next. */
	if (history_plan(req->db, 1, r.ts - q->window_ms, r.ts, &plan) != TW_OK)
		return TW_ERR_DB;
	window_init(&f.w, q->window_ms);
	f.off = r.num;
	rc = history_buckets(req->db, r.series, &plan, INT32_MAX, feed, &f);
	if (rc == TW_ERR_FULL || rc == TW_ERR_REFUSED) {
		http_error(rep, 413, "too_large", "the %llds window of '%s' holds more than 2 "
		    "million points: ask for a shorter window", (long long)(q->window_ms / 1000),
		    prop);
		return TW_ERR_FULL;
	}
	if (rc != TW_OK)
		return TW_ERR_DB;
	if ((*out = forecast_json(q, m != NULL ? model_prop(m, prop) : NULL, r.ts, &plan,
	    &f)) == NULL)
		return TW_ERR_NOMEM;
	return TW_OK;
}

void
api_twins_forecast(struct http_req *req, struct http_reply *rep)
{
	struct forecast_query q;
	struct model_set *models;
	char model_id[256] = "";
	cJSON *doc = NULL, *one = NULL;
	const char *id;
	int rc;

	if ((id = api_twin_id(req, rep)) == NULL || parse_query(req, rep, &q) != 0)
		return;
	if (store_snapshot_begin(req->db) != TW_OK) {
		http_error(rep, 503, "unavailable", "cannot read the database now");
		return;
	}
	models = engine_models(req->ctx->engine);
	rc = store_read_twin(req->db, id, model_row, model_id);
	if (rc == TW_ERR_NOTFOUND)
		http_error(rep, 404, "not_found", "no twin '%s'", id);
	if (rc == TW_OK && q.nprops > 1 && (doc = cJSON_CreateObject()) == NULL)
		rc = TW_ERR_NOMEM;
	for (int i = 0; i < q.nprops && rc == TW_OK; i++) {
		rc = forecast_prop(req, rep, &q, id, model_find(models, model_id), q.props[i],
		    &one);
		if (rc == TW_OK && doc != NULL && !cJSON_AddItemToObject(doc, q.props[i], one)) {
			cJSON_Delete(one);
			rc = TW_ERR_NOMEM;
		}
	}
	model_set_unref(models);
	store_snapshot_end(req->db);
	if (rc == TW_ERR_DB || rc == TW_ERR_NOMEM) {
		http_error(rep, 500, "internal", "cannot read history");
	} else if (rc == TW_OK) {
		http_json(rep, 200, doc != NULL ? doc : one);
		return;
	}
	cJSON_Delete(doc);
}
