/* Commands until convergence: what the asset reports after a command, judged against its effect. */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "alert.h"
#include "clock.h"
#include "commands.h"
#include "converge.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "names.h"
#include "store_sql.h"

/* ---- the model's "effect" ---- */

void
converge_effect_free(struct command_effect *e)
{
	if (e == NULL)
		return;
	free(e->property);
	free(e->param);
	if (e->value.type == VAL_STR)
		free((char *)e->value.str);
	free(e);
}

static int
parse_value(struct command_effect *e, const cJSON *k, char *err, size_t len)
{
	if (cJSON_IsBool(k)) {
		e->value = (struct tw_val){ .type = VAL_BOOL, .num = cJSON_IsTrue(k) };
	} else if (cJSON_IsNumber(k) && isfinite(k->valuedouble)) {
		e->value = (struct tw_val){ .type = VAL_NUM, .num = k->valuedouble };
	} else if (cJSON_IsString(k)) {
		if ((e->value.str = strdup(k->valuestring)) == NULL) {
			snprintf(err, len, "out of memory");
			return -1;
		}
		e->value.type = VAL_STR;
	} else {
		snprintf(err, len, "effect: value must be a number, a boolean or a string");
		return -1;
	}
	e->has_value = 1;
	return 0;
}

static int
parse_key(struct command_effect *e, const cJSON *k, char *err, size_t len)
{
	char **name = strcmp(k->string, "property") == 0 ? &e->property :
	    strcmp(k->string, "param") == 0 ? &e->param : NULL;

	if (name != NULL) {
		if (!cJSON_IsString(k) || !name_prop_valid(k->valuestring, strlen(k->valuestring))) {
			snprintf(err, len, "effect: %s must be a property name", k->string);
			return -1;
		}
		if ((*name = strdup(k->valuestring)) == NULL) {
			snprintf(err, len, "out of memory");
			return -1;
		}
		return 0;
	}
	if (strcmp(k->string, "value") == 0)
		return parse_value(e, k, err, len);
	if (strcmp(k->string, "tolerance") == 0) {
		if (!cJSON_IsNumber(k) || !isfinite(k->valuedouble) || k->valuedouble < 0) {
			snprintf(err, len, "effect: tolerance must be a number, zero or more");
			return -1;
		}
		e->has_tolerance = 1;
		e->tolerance = k->valuedouble;
		return 0;
	}
	if (strcmp(k->string, "timeout") == 0) {
		if (!cJSON_IsString(k) || clock_parse_duration(k->valuestring, &e->timeout_ms) !=
		    TW_OK || e->timeout_ms <= 0 || e->timeout_ms > 86400000) {
			snprintf(err, len, "effect: timeout must be a duration above zero and at "
			    "most a day, such as \"30s\"");
			return -1;
		}
		return 0;
	}
	snprintf(err, len, "effect: unknown key \"%.64s\" (property, param, value, tolerance, "
	    "timeout)", k->string);
	return -1;
}

struct command_effect *
converge_parse(const cJSON *o, char *err, size_t len)
{
	struct command_effect *e;
	const cJSON *k;

	const char *dup;

	if (!cJSON_IsObject(o)) {
		snprintf(err, len, "effect must be an object: {\"property\", and \"param\" or "
		    "\"value\" or neither, \"tolerance\", \"timeout\"}");
		return NULL;
	}
	if ((dup = value_json_dup_key(o)) != NULL) {
		snprintf(err, len, "effect: \"%.64s\" is given twice", dup);
		return NULL;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	e->timeout_ms = CONVERGE_TIMEOUT_MS;
	cJSON_ArrayForEach(k, o)
		if (parse_key(e, k, err, len) != 0) {
			converge_effect_free(e);
			return NULL;
		}
	if (e->property == NULL || (e->param != NULL && e->has_value)) {
		snprintf(err, len, e->property == NULL ? "effect: property is missing" :
		    "effect: param and value are two targets; give one");
		converge_effect_free(e);
		return NULL;
	}
	return e;
}

/* ---- the watches ---- */

enum { REACHES = 1, CHANGES = 2 };

struct watch {
	char id[COMMAND_ID_MAX];
	const char *prop;	/* interned; NULL: its model no longer says (only the deadline counts) */
	int mode;
	struct tw_val v;	/* REACHES: the target; CHANGES: the value at issue (0: none); strings owned */
	double tol;
	int64_t issued;		/* wall ms: a reading measured before it does not count */
	int64_t deadline;	/* wall ms */
	struct watch *next;
};

struct watched {
	char twin[TWIN_ID_MAX + 1];
	struct watch *first;
	unsigned n;
	UT_hash_handle hh;
};

/* A watch ended without its command reaching the asset, to be written with the batch. */
struct cancelled {
	char id[COMMAND_ID_MAX];
	struct cancelled *next;
};

enum { CV_START, CV_JUDGE, CV_LOAD, CV__COUNT };

static const char *const cv_sql[CV__COUNT] = {
	[CV_START] = "UPDATE commands SET effect = 'waiting', effect_deadline_ts = ?2, "
	    "effect_from = ?3 WHERE id = ?1",
	[CV_JUDGE] = "UPDATE commands SET effect = ?2, effect_ts = ?3, effect_deadline_ts = NULL "
	    "WHERE id = ?1 AND effect = 'waiting'",
	[CV_LOAD] = "SELECT id, twin, command, params, effect_deadline_ts, effect_from, issued_ts "
	    "FROM commands WHERE effect = 'waiting' ORDER BY effect_deadline_ts LIMIT ?",
};

struct converge {
	struct store *store;
	struct outbox *outbox;
	struct twin_map *twins;
	sqlite3_stmt *st[CV__COUNT];
	struct watched *by_twin;
	unsigned n;
	struct cancelled *cancelled;	/* until the batch that writes them commits */
	int stale;		/* a reload failed: memory is not the table's truth */
	struct log_limit log;
};

/* The gauge follows the count, so that /metrics is right before the first tick. */
static void
watched_set(struct converge *c, unsigned n)
{
	c->n = n;
	atomic_store(&metrics.commands_watched, n);
}

static void
watch_free(struct watch *w)
{
	if (w->v.type == VAL_STR)
		free((char *)w->v.str);
	free(w);
}

static void
forget_all(struct converge *c)
{
	struct watched *t, *tmp;

	HASH_ITER(hh, c->by_twin, t, tmp) {
		while (t->first != NULL) {
			struct watch *w = t->first;

			t->first = w->next;
			watch_free(w);
		}
		HASH_DEL(c->by_twin, t);
		free(t);
	}
	watched_set(c, 0);
}

static void
cancelled_free(struct converge *c)
{
	while (c->cancelled != NULL) {
		struct cancelled *x = c->cancelled;

		c->cancelled = x->next;
		free(x);
	}
}

struct converge *
converge_open(struct store *st, struct outbox *o, struct twin_map *m)
{
	struct converge *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->store = st;
	c->outbox = o;
	c->twins = m;
	if (store_prepare_all(st, cv_sql, CV__COUNT, c->st) != TW_OK) {
		converge_close(c);
		return NULL;
	}
	return c;
}

void
converge_close(struct converge *c)
{
	if (c == NULL)
		return;
	forget_all(c);
	cancelled_free(c);
	for (int i = 0; i < CV__COUNT; i++)
		sqlite3_finalize(c->st[i]);
	free(c);
}

unsigned
converge_watched(const struct converge *c)
{
	return c != NULL ? c->n : 0;
}

/* A copy of `v` that owns its string. 0 or -1 (out of memory). */
static int
value_copy(struct tw_val *dst, const struct tw_val *v)
{
	*dst = *v;
	if (v->type == VAL_STR && (dst->str = strdup(v->str)) == NULL)
		return -1;
	return 0;
}

/* The target `effect` names in `params` (JSON text or NULL). 0, or -1 when they do not give it. */
static int
param_target(const struct command_effect *effect, const char *params, struct tw_val *out,
    cJSON **owner)
{
	cJSON *x;

	*owner = params != NULL ? cJSON_Parse(params) : NULL;
	x = cJSON_GetObjectItemCaseSensitive(*owner, effect->param);
	if (cJSON_IsNumber(x))
		*out = (struct tw_val){ .type = VAL_NUM, .num = x->valuedouble };
	else if (cJSON_IsBool(x))
		*out = (struct tw_val){ .type = VAL_BOOL, .num = cJSON_IsTrue(x) };
	else if (cJSON_IsString(x))
		*out = (struct tw_val){ .type = VAL_STR, .str = x->valuestring };
	else
		return -1;
	return 0;
}

/*
 * The watch of `effect` on `t` for params `params`, with `from` the
 * property's value at issue. NULL with *why when the target cannot be
 * read, or on allocation failure (why NULL).
 */
static struct watch *
watch_new(struct converge *c, const struct twin *t, const char *id,
    const struct command_effect *effect, const char *params, const struct tw_val *from,
    int64_t issued, const char **why)
{
	const struct model_prop *mp = model_prop(t->model, effect->property);
	struct watch *w = calloc(1, sizeof(*w));
	struct tw_val target = effect->value;
	cJSON *owner = NULL;
	int rc = 0;

	*why = NULL;
	if (w == NULL)
		return NULL;
	snprintf(w->id, sizeof(w->id), "%s", id);
	w->issued = issued;
	w->deadline = issued + effect->timeout_ms;
	w->tol = effect->has_tolerance ? effect->tolerance : mp != NULL ? mp->tolerance : 0;
	w->mode = effect->param != NULL || effect->has_value ? REACHES : CHANGES;
	if (effect->param != NULL && param_target(effect, params, &target, &owner) != 0) {
		*why = "its params do not give the target";
		rc = -1;
	} else if ((w->prop = twin_intern(c->twins, effect->property)) == NULL ||
	    value_copy(&w->v, w->mode == REACHES ? &target : from) != 0) {
		w->v.type = 0;
		rc = -1;
	}
	cJSON_Delete(owner);
	if (rc != 0) {
		watch_free(w);
		return NULL;
	}
	return w;
}

/* Adds `w` to `twin`'s watches; TW_ERR_FULL beyond CONVERGE_PER_TWIN. */
static int
add(struct converge *c, const char *twin, struct watch *w)
{
	struct watched *t;

	HASH_FIND_STR(c->by_twin, twin, t);
	if (t != NULL && t->n >= CONVERGE_PER_TWIN)
		return TW_ERR_FULL;
	if (t == NULL) {
		if ((t = calloc(1, sizeof(*t))) == NULL)
			return TW_ERR_NOMEM;
		snprintf(t->twin, sizeof(t->twin), "%s", twin);
		HASH_ADD_STR(c->by_twin, twin, t);
	}
	w->next = t->first;
	t->first = w;
	t->n++;
	watched_set(c, c->n + 1);
	return TW_OK;
}

static void
unwatched(struct converge *c, const struct twin *t, const char *id, const char *why)
{
	metrics_add(&metrics.effects[CONVERGE_NOT_WATCHED], 1);
	log_limited(&c->log, "command %s on %s: not watched for its effect: %s", id, t->id, why);
}

int
converge_watch(struct converge *c, struct twin *t, const char *id,
    const struct command_effect *effect, const char *params, int64_t issued)
{
	sqlite3_stmt *st = c->st[CV_START];
	const struct prop *p = twin_prop(t, twin_intern_find(c->twins, effect->property));
	struct tw_val none = { 0 };
	const char *why;
	struct watch *w;
	int rc;

	if (c->stale) {
		unwatched(c, t, id, "the watches could not be read back from the database");
		return TW_OK;
	}
	if (c->n >= CONVERGE_MAX) {
		unwatched(c, t, id, "CONVERGE_MAX commands are watched already");
		return TW_OK;
	}
	if ((w = watch_new(c, t, id, effect, params, p != NULL ? &p->val : &none, issued,
	    &why)) == NULL) {
		if (why == NULL)
			return TW_ERR_NOMEM;
		unwatched(c, t, id, why);
		return TW_OK;
	}
	if ((rc = add(c, t->id, w)) != TW_OK) {
		watch_free(w);
		if (rc == TW_ERR_FULL)
			unwatched(c, t, id, "CONVERGE_PER_TWIN commands of this twin are watched already");
		return rc == TW_ERR_FULL ? TW_OK : rc;
	}
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, w->deadline);
	store_bind_value(st, 3, w->mode == CHANGES ? &w->v : &none);
	/* On failure the batch fails, and the reload that follows drops `w` with it. */
	return store_step_done(c->store, st);
}

/* Whether the property's current value shows the effect. */
static int
shows(const struct watch *w, const struct prop *p)
{
	if (p == NULL || p->val.type == 0)
		return 0;
	if (w->mode == CHANGES)
		return !value_equal(&p->val, &w->v);
	if (p->val.type == VAL_NUM && w->v.type == VAL_NUM)
		return fabs(p->val.num - w->v.num) <= w->tol;
	return value_equal(&p->val, &w->v);
}

static int
event_row(void *arg, const struct store_command_row *row)
{
	struct converge *c = arg;

	return outbox_queue(c->outbox, NULL, "command", row->twin, alert_command_json(row));
}

static const char *const outcomes[CONVERGE_OUTCOMES] = {
	[CONVERGE_CONVERGED] = "converged", [CONVERGE_NOT_CONVERGED] = "not_converged",
	[CONVERGE_NOT_WATCHED] = "not_watched", [CONVERGE_NOT_SENT] = "not_sent",
};

const char *
converge_outcome_name(int outcome)
{
	return outcome >= 0 && outcome < CONVERGE_OUTCOMES ? outcomes[outcome] : "unknown";
}

/* Writes the outcome of command `id` in the open batch, with its event. */
static int
judge(struct converge *c, const char *id, int outcome, int64_t ts)
{
	sqlite3_stmt *st = c->st[CV_JUDGE];
	int rc;

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, outcomes[outcome], -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, ts);
	if (store_step_done(c->store, st) != TW_OK)
		return TW_ERR_DB;
	/* Judged already (a retry after a failed batch, a row the batch never wrote): once. */
	if (sqlite3_changes(store_handle(c->store)) == 0)
		return TW_OK;
	metrics_add(&metrics.effects[outcome], 1);
	if (!outbox_listening(c->outbox))
		return TW_OK;
	rc = store_command_get(c->store, id, event_row, c);
	return rc == TW_ERR_DB ? TW_ERR_DB : TW_OK;
}

/*
 * What a watch's property says (tw: the twin, NULL when it is gone), at
 * wall time `now`: CONVERGE_CONVERGED with *at, CONVERGE_NOT_CONVERGED, or
 * -1 (still waiting). A reading counts when measured from the issue to the
 * deadline; once the deadline and the grace after it have passed, a
 * target that holds (reported before, and not since) counts too.
 */
static int
outcome_of(const struct watch *w, struct twin *tw, int64_t now, int64_t *at)
{
	const struct prop *p = tw != NULL && w->prop != NULL ? twin_prop(tw, w->prop) : NULL;
	int over = now >= w->deadline + CONVERGE_GRACE_MS;

	if (p != NULL && p->ts >= w->issued && p->ts <= w->deadline && shows(w, p)) {
		*at = p->ts;
		return CONVERGE_CONVERGED;
	}
	if (over && w->mode == REACHES && p != NULL && p->ts < w->issued && shows(w, p)) {
		*at = w->issued;	/* it held when the command went */
		return CONVERGE_CONVERGED;
	}
	if (over || (p != NULL && p->ts > w->deadline)) {
		*at = w->deadline;
		return CONVERGE_NOT_CONVERGED;
	}
	return -1;
}

static void
drop(struct converge *c, struct watched *t, struct watch **pp)
{
	struct watch *w = *pp;

	*pp = w->next;
	watch_free(w);
	t->n--;
	watched_set(c, c->n - 1);
}

static void
drop_if_empty(struct converge *c, struct watched *t)
{
	if (t->first == NULL) {
		HASH_DEL(c->by_twin, t);
		free(t);
	}
}

/* Judges the watches of `t` that are over, and removes them. */
static int
sweep(struct converge *c, struct watched *t, int64_t now)
{
	struct twin *tw = twin_find(c->twins, t->twin, strlen(t->twin));
	struct watch **pp = &t->first;

	while (*pp != NULL) {
		int64_t at = 0;
		int outcome = outcome_of(*pp, tw, now, &at);

		if (outcome < 0) {
			pp = &(*pp)->next;
			continue;
		}
		if (judge(c, (*pp)->id, outcome, at) != TW_OK)
			return TW_ERR_DB;
		drop(c, t, pp);
	}
	drop_if_empty(c, t);
	return TW_OK;
}

int
converge_reported(struct converge *c, struct twin *t, int64_t now)
{
	struct watched *w;

	if (c == NULL || c->n == 0 || c->stale)
		return TW_OK;
	HASH_FIND_STR(c->by_twin, t->id, w);
	return w != NULL ? sweep(c, w, now) : TW_OK;
}

int
converge_expire(struct converge *c, int64_t now)
{
	struct watched *t, *tmp;

	if (c == NULL)
		return TW_OK;
	if (c->stale && converge_reload(c) != TW_OK)
		return TW_OK;	/* logged; the next tick tries again */
	HASH_ITER(hh, c->by_twin, t, tmp)
		if (sweep(c, t, now) != TW_OK)
			return TW_ERR_DB;
	return TW_OK;
}

/* Removes the watch of `id` from `twin`'s; 1 if there was one. */
static int
unwatch(struct converge *c, const char *twin, const char *id)
{
	struct watched *t;
	struct watch **pp;

	HASH_FIND_STR(c->by_twin, twin, t);
	for (pp = t != NULL ? &t->first : NULL; pp != NULL && *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->id, id) == 0) {
			drop(c, t, pp);
			drop_if_empty(c, t);
			return 1;
		}
	return 0;
}

void
converge_cancel(struct converge *c, const char *twin, const char *id)
{
	struct cancelled *x;

	if (c == NULL || !unwatch(c, twin, id))
		return;
	/* Out of memory: it stays waiting in the table and ends at its deadline. */
	if ((x = calloc(1, sizeof(*x))) == NULL)
		return;
	snprintf(x->id, sizeof(x->id), "%s", id);
	x->next = c->cancelled;
	c->cancelled = x;
}

int
converge_flush(struct converge *c, int64_t now)
{
	for (struct cancelled *x = c != NULL ? c->cancelled : NULL; x != NULL; x = x->next)
		if (judge(c, x->id, CONVERGE_NOT_SENT, now) != TW_OK)
			return TW_ERR_DB;
	return TW_OK;
}

void
converge_commit(struct converge *c)
{
	if (c != NULL)
		cancelled_free(c);
}

static int
is_cancelled(const struct converge *c, const char *id)
{
	for (const struct cancelled *x = c->cancelled; x != NULL; x = x->next)
		if (strcmp(x->id, id) == 0)
			return 1;
	return 0;
}

/* One waiting row back into memory, with its target from the model as it is now. */
static int
reload_row(struct converge *c, sqlite3_stmt *st, char (*over)[COMMAND_ID_MAX], int *nover)
{
	const char *id = (const char *)sqlite3_column_text(st, 0);
	const char *twin = (const char *)sqlite3_column_text(st, 1);
	const char *command = (const char *)sqlite3_column_text(st, 2);
	const char *params = (const char *)sqlite3_column_text(st, 3);
	int64_t deadline = sqlite3_column_int64(st, 4), issued = sqlite3_column_int64(st, 6);
	struct twin *t = twin != NULL ? twin_find(c->twins, twin, strlen(twin)) : NULL;
	const struct model_command *mc = t != NULL ? model_command(t->model, command) : NULL;
	struct tw_val from;
	struct watch *w = NULL;
	const char *why;
	int rc;

	if (id == NULL || twin == NULL || !name_twin_valid(twin, strlen(twin)) ||
	    is_cancelled(c, id))
		return TW_OK;
	store_column_value(st, 5, &from);
	if (mc != NULL && mc->effect != NULL)
		w = watch_new(c, t, id, mc->effect, params, &from, issued, &why);
	/* Its model no longer names the effect: it can only reach its deadline. */
	if (w == NULL && (w = calloc(1, sizeof(*w))) != NULL)
		snprintf(w->id, sizeof(w->id), "%s", id);
	if (w == NULL)
		return TW_ERR_NOMEM;
	w->issued = issued;
	w->deadline = deadline;
	if ((rc = add(c, twin, w)) != TW_OK)
		watch_free(w);
	/*
	 * Beyond the bound (a crash lost the cancellations): ended after the
	 * scan, not left waiting; judged now, it would change the index the
	 * scan walks. The rest wait for the next reload.
	 */
	if (rc == TW_ERR_FULL && *nover < CONVERGE_OVER_MAX)
		snprintf(over[(*nover)++], COMMAND_ID_MAX, "%s", id);
	return rc == TW_ERR_FULL ? TW_OK : rc;
}

int
converge_reload(struct converge *c)
{
	sqlite3_stmt *st = c->st[CV_LOAD];
	char over[CONVERGE_OVER_MAX][COMMAND_ID_MAX];
	int rc = SQLITE_DONE, err = TW_OK, nover = 0;

	forget_all(c);
	c->stale = 1;
	sqlite3_bind_int(st, 1, CONVERGE_MAX);
	while (err == TW_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		err = reload_row(c, st, over, &nover);
	sqlite3_reset(st);
	if (err == TW_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_warnx("database: %s", sqlite3_errmsg(store_handle(c->store)));
		err = TW_ERR_DB;
	}
	for (int i = 0; err == TW_OK && i < nover; i++)
		err = judge(c, over[i], CONVERGE_NOT_WATCHED, clock_now_ms());
	if (err != TW_OK) {
		forget_all(c);	/* the timer tries again: no half of them */
		return err;
	}
	c->stale = 0;
	return TW_OK;
}
