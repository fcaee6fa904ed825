/* The in-memory twins and their reported properties. */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "twin.h"

struct name {
	UT_hash_handle hh;
	char s[];
};

struct twin_map {
	struct twin *twins;		/* uthash head */
	struct name *names;		/* interned property names */
	unsigned nnames;
	size_t bytes;			/* what the twins and names hold: the budget counts this */
	size_t budget;			/* 0: none */
	struct twin **dirty;		/* twins changed since the last flush */
	unsigned ndirty, cap_dirty;
	unsigned count;
	int max_twins;
	int max_props;
};

struct twin_map *
twin_map_new(int max_twins, int max_props)
{
	struct twin_map *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->max_twins = max_twins;
	m->max_props = max_props;
	return m;
}

static void
value_free(struct tw_val *v)
{
	if (v->type == VAL_STR)
		free((char *)v->str);
	v->type = 0;
	v->str = NULL;
}

/* Copies `v` into `dst`, owning a string. Returns 0 or TW_ERR_NOMEM. */
static int
value_copy(struct tw_val *dst, const struct tw_val *v)
{
	char *s = NULL;

	if (v->type == VAL_STR && (s = strdup(v->str)) == NULL)
		return TW_ERR_NOMEM;
	value_free(dst);
	*dst = *v;
	dst->str = s;
	return TW_OK;
}

static void
twin_free(struct twin *t)
{
	for (uint32_t i = 0; i < t->nprops; i++)
		value_free(&t->props[i].val);
	for (uint32_t i = 0; i < t->ndesired; i++)
		value_free(&t->desired[i].val);
	free(t->props);
	free(t->desired);
	twin_windows_free(t->windows, t->nwindows);
	free(t->rs);
	free(t->model_id);
	free(t->parent);
	free(t->id);
	free(t);
}

void
twin_map_clear(struct twin_map *m)
{
	struct twin *t, *tmp;

	HASH_ITER(hh, m->twins, t, tmp) {
		HASH_DEL(m->twins, t);
		m->bytes -= t->bytes;
		twin_free(t);
	}
	m->count = 0;
	m->ndirty = 0;
}

void
twin_map_free(struct twin_map *m)
{
	struct name *n, *tmp;

	if (m == NULL)
		return;
	twin_map_clear(m);
	HASH_ITER(hh, m->names, n, tmp) {
		HASH_DEL(m->names, n);
		free(n);
	}
	free(m->dirty);
	free(m);
}

struct twin *
twin_find(struct twin_map *m, const char *id, size_t len)
{
	struct twin *t;

	HASH_FIND(hh, m->twins, id, len, t);
	return t;
}

struct twin *
twin_add(struct twin_map *m, const char *id, int64_t created_ts)
{
	struct twin *t;

	if (m->count >= (unsigned)m->max_twins || (t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if ((t->id = strdup(id)) == NULL) {
		free(t);
		return NULL;
	}
	t->created_ts = created_ts;
	HASH_ADD_KEYPTR(hh, m->twins, t->id, strlen(t->id), t);
	m->count++;
	return t;
}

unsigned
twin_count(const struct twin_map *m)
{
	return m->count;
}

unsigned
twin_names_count(const struct twin_map *m)
{
	return m->nnames;
}

void
twin_map_set_budget(struct twin_map *m, size_t bytes)
{
	m->budget = bytes;
}

size_t
twin_map_bytes(const struct twin_map *m)
{
	return m->bytes;
}

int
twin_map_room(const struct twin_map *m, size_t more)
{
	/* What costs nothing is never refused: over the budget, twind still ingests in place. */
	return more == 0 || m->budget == 0 || m->bytes + more <= m->budget;
}

size_t
twin_name_cost(const struct twin_map *m, const char *name)
{
	return twin_intern_find((struct twin_map *)m, name) != NULL ? 0 :
	    sizeof(struct name) + strlen(name) + 1;
}

/* The capacity after growing `cap` to hold `n`, as twin_prop_add grows it. */
static uint32_t
props_cap(uint32_t cap, uint32_t n)
{
	while (cap < n)
		cap = cap < 64 ? cap + 4 : cap + cap / 4;
	return cap;
}

size_t
twin_props_growth(const struct twin *t, uint32_t more)
{
	uint32_t have = t != NULL ? t->cap : 0, n = (t != NULL ? t->nprops : 0) + more;

	return (size_t)(props_cap(have, n) - have) * sizeof(struct prop);
}

size_t
twin_desired_growth(const struct twin *t, uint32_t more)
{
	uint32_t cap = t->cap_desired, n = t->ndesired + more;

	while (cap < n)
		cap = cap == 0 ? 4 : cap * 2;
	return (size_t)(cap - t->cap_desired) * sizeof(struct desired);
}

static size_t
str_bytes(const char *s)
{
	return s != NULL ? strlen(s) + 1 : 0;
}

static size_t
val_bytes(const struct tw_val *v)
{
	return v->type == VAL_STR ? str_bytes(v->str) : 0;
}

void
twin_charge(struct twin_map *m, struct twin *t)
{
	size_t b = sizeof(*t) + str_bytes(t->id) + str_bytes(t->model_id) + str_bytes(t->parent) +
	    (size_t)t->cap * sizeof(*t->props) + (size_t)t->cap_desired * sizeof(*t->desired) +
	    (size_t)t->nwindows * sizeof(*t->windows) + (size_t)t->nrs * sizeof(*t->rs);

	for (uint16_t i = 0; i < t->nwindows; i++)
		b += twin_window_extra(&t->windows[i]);
	for (uint32_t i = 0; i < t->nprops; i++)
		b += val_bytes(&t->props[i].val);
	for (uint32_t i = 0; i < t->ndesired; i++)
		b += val_bytes(&t->desired[i].val);
	m->bytes += b - t->bytes;
	t->bytes = b;
}

const char *
twin_intern(struct twin_map *m, const char *name)
{
	size_t len = strlen(name);
	struct name *n;

	HASH_FIND(hh, m->names, name, len, n);
	if (n != NULL)
		return n->s;
	if ((n = malloc(sizeof(*n) + len + 1)) == NULL)
		return NULL;
	memcpy(n->s, name, len + 1);
	HASH_ADD_KEYPTR(hh, m->names, n->s, len, n);
	m->nnames++;
	m->bytes += sizeof(*n) + len + 1;
	return n->s;
}

const char *
twin_intern_find(struct twin_map *m, const char *name)
{
	struct name *n;

	HASH_FIND(hh, m->names, name, strlen(name), n);
	return n != NULL ? n->s : NULL;
}

struct prop *
twin_prop(struct twin *t, const char *name)
{
	for (uint32_t i = 0; i < t->nprops; i++)
		if (t->props[i].name == name)
			return &t->props[i];
	return NULL;
}

int
twin_props_room(const struct twin_map *m, const struct twin *t, int more)
{
	return (int)t->nprops + more <= m->max_props;
}

struct prop *
twin_prop_add(struct twin_map *m, struct twin *t, const char *name, int64_t series)
{
	struct prop *p;

	if ((int)t->nprops >= m->max_props)
		return NULL;
	if (t->nprops == t->cap) {
		/* Twins have a handful of properties: grow by a few, not by doubling. */
		uint32_t cap = props_cap(t->cap, t->cap + 1);

		if ((p = realloc(t->props, cap * sizeof(*p))) == NULL)
			return NULL;
		t->props = p;
		t->cap = cap;
	}
	p = &t->props[t->nprops++];
	memset(p, 0, sizeof(*p));
	p->name = name;
	p->series = series;
	return p;
}

int
twin_prop_set(struct prop *p, int64_t ts, const struct tw_val *v)
{
	/* Equal times: a correction wins, the same value changes nothing. */
	if (ts < p->ts || (ts == p->ts && p->val.type != 0 && value_equal(&p->val, v)))
		return 0;
	if (p->val.type == VAL_NUM || p->val.type == VAL_BOOL) {
		p->prev_type = p->val.type;
		p->prev_num = p->val.num;
	} else {
		p->prev_type = 0;
	}
	if (value_copy(&p->val, v) != TW_OK)
		return -TW_ERR_NOMEM;
	p->ts = ts;
	p->dirty = 1;
	return 1;
}

static char *
strdup_or_null(const char *s, int *failed)
{
	char *d = s != NULL ? strdup(s) : NULL;

	if (s != NULL && d == NULL)
		*failed = 1;
	return d;
}

int
twin_set_meta(struct twin *t, const char *model_id, const struct model *model,
    const char *parent)
{
	int failed = 0;
	char *m = strdup_or_null(model_id, &failed), *p = strdup_or_null(parent, &failed);

	if (failed) {
		free(m);
		free(p);
		return TW_ERR_NOMEM;
	}
	free(t->model_id);
	free(t->parent);
	t->model_id = m;
	t->parent = p;
	t->model = model;
	for (uint32_t i = 0; i < t->nprops; i++)
		t->props[i].mp = model != NULL ? model_prop(model, t->props[i].name) : NULL;
	for (uint32_t i = 0; i < t->ndesired; i++)
		t->desired[i].mp = model != NULL ? model_prop(model, t->desired[i].name) : NULL;
	return TW_OK;
}

struct desired *
twin_desired(struct twin *t, const char *name)
{
	for (uint32_t i = 0; i < t->ndesired; i++)
		if (t->desired[i].name == name && !t->desired[i].removed)
			return &t->desired[i];
	return NULL;
}

struct desired *
twin_desired_set(struct twin *t, const char *name, const struct tw_val *v, int64_t ts)
{
	struct desired *d = NULL;

	for (uint32_t i = 0; i < t->ndesired && d == NULL; i++)
		if (t->desired[i].name == name)
			d = &t->desired[i];
	if (d == NULL) {
		if (t->ndesired == t->cap_desired) {
			uint32_t cap = t->cap_desired == 0 ? 4 : t->cap_desired * 2;

			if ((d = realloc(t->desired, cap * sizeof(*d))) == NULL)
				return NULL;
			t->desired = d;
			t->cap_desired = cap;
		}
		d = &t->desired[t->ndesired++];
		memset(d, 0, sizeof(*d));
		d->name = name;
		d->mp = t->model != NULL ? model_prop(t->model, name) : NULL;
	}
	if (value_copy(&d->val, v) != TW_OK)
		return NULL;
	d->ts = ts;
	d->removed = 0;
	d->dirty = 1;
	return d;
}

void
twin_desired_compact(struct twin *t)
{
	uint32_t j = 0;

	for (uint32_t i = 0; i < t->ndesired; i++) {
		if (t->desired[i].removed) {
			value_free(&t->desired[i].val);
			continue;
		}
		t->desired[j++] = t->desired[i];
	}
	t->ndesired = j;
}

int
twin_value_meets(const struct tw_val *r, const struct tw_val *d, double tolerance)
{
	if (r->type != d->type)
		return 0;
	if (r->type == VAL_NUM)
		return r->num >= d->num - tolerance && r->num <= d->num + tolerance;
	return value_equal(r, d);
}

int
twin_each(struct twin_map *m, int (*cb)(void *, struct twin *), void *arg)
{
	struct twin *t, *tmp;
	int rc;

	HASH_ITER(hh, m->twins, t, tmp)
		if ((rc = cb(arg, t)) != 0)
			return rc;
	return 0;
}

void
twin_mark_dirty(struct twin_map *m, struct twin *t)
{
	if (t->dirty)
		return;
	if (m->ndirty == m->cap_dirty) {
		unsigned cap = m->cap_dirty == 0 ? 64 : m->cap_dirty * 2;
		struct twin **d = realloc(m->dirty, cap * sizeof(*d));

		/*
		 * Without room the twin is flushed late rather than lost: it
		 * stays clean in the list's eyes but its props stay dirty. This
		 * only happens when memory is already gone.
		 */
		if (d == NULL)
			return;
		m->dirty = d;
		m->cap_dirty = cap;
	}
	t->dirty = 1;
	m->dirty[m->ndirty++] = t;
}

int
twin_flush_dirty(struct twin_map *m, int (*cb)(void *, struct twin *), void *arg)
{
	int rc = TW_OK;

	for (unsigned i = 0; i < m->ndirty; i++) {
		m->dirty[i]->dirty = 0;
		if (rc == TW_OK)
			rc = cb(arg, m->dirty[i]);
	}
	m->ndirty = 0;
	return rc;
}

int64_t
twin_model_period(const struct model *m)
{
	int64_t p = 0;

	for (int i = 0; m != NULL && i < m->nprops; i++)
		if (m->props[i].period_ms > 0 && (p == 0 || m->props[i].period_ms < p))
			p = m->props[i].period_ms;
	return p;
}

int
twin_status_of(const struct status_rule *r, const struct model *m, int64_t last_seen,
    int64_t now)
{
	int64_t period = twin_model_period(m), age = now - last_seen;
	int64_t stale = period > 0 ? period * r->stale_factor : r->stale_after_ms;
	int64_t offline = period > 0 ? period * r->offline_factor : r->offline_after_ms;

	if (last_seen <= 0 || age > offline)
		return TWIN_OFFLINE;
	return age > stale ? TWIN_STALE : TWIN_ONLINE;
}

const char *
twin_status_name(int status)
{
	static const char *const names[] = { "offline", "stale", "online" };

	return status >= 0 && status <= TWIN_ONLINE ? names[status] : "offline";
}

void *
twin_memdup(const void *p, size_t n)
{
	void *q;

	if (n == 0)
		return NULL;
	if ((q = malloc(n)) != NULL)
		memcpy(q, p, n);
	return q;
}

size_t
twin_window_extra(const struct twin_window *w)
{
	return w->kind == EXPR_WIN_QUANT ? sizeof(*w->q) : 0;
}

void
twin_window_forget(struct twin_window *w)
{
	if (w->kind == EXPR_WIN_QUANT)
		w->q = NULL;
}

void
twin_windows_free(struct twin_window *w, uint16_t n)
{
	for (uint16_t i = 0; w != NULL && i < n; i++)
		if (w[i].kind == EXPR_WIN_QUANT)
			free(w[i].q);
	free(w);
}

struct twin_window *
twin_windows_dup(const struct twin_window *w, uint16_t n)
{
	struct twin_window *c = twin_memdup(w, (size_t)n * sizeof(*w));

	if (c == NULL)
		return NULL;
	for (uint16_t i = 0; i < n; i++) {
		if (c[i].kind != EXPR_WIN_QUANT || w[i].q == NULL)
			continue;
		if ((c[i].q = twin_memdup(w[i].q, sizeof(*w[i].q))) == NULL) {
			/* Only the ones copied so far are this copy's own. */
			for (uint16_t j = i; j < n; j++)
				twin_window_forget(&c[j]);
			twin_windows_free(c, n);
			return NULL;
		}
	}
	return c;
}

struct twin *
twin_copy(const struct twin *src)
{
	struct twin *t = calloc(1, sizeof(*t));
	int failed = 0;

	if (t == NULL)
		return NULL;
	/* The scalars; then every pointer is made the copy's own or left NULL. */
	*t = *src;
	memset(&t->hh, 0, sizeof(t->hh));
	t->dirty = 0;
	t->id = strdup_or_null(src->id, &failed);
	t->model_id = strdup_or_null(src->model_id, &failed);
	t->parent = strdup_or_null(src->parent, &failed);
	t->props = twin_memdup(src->props, src->nprops * sizeof(*src->props));
	t->cap = t->nprops = src->props != NULL && t->props != NULL ? src->nprops : 0;
	t->desired = twin_memdup(src->desired, src->ndesired * sizeof(*src->desired));
	t->cap_desired = t->ndesired = src->desired != NULL && t->desired != NULL ?
	    src->ndesired : 0;
	t->windows = twin_windows_dup(src->windows, src->nwindows);
	t->rs = twin_memdup(src->rs, src->nrs * sizeof(*src->rs));
	failed |= t->nprops != src->nprops || t->ndesired != src->ndesired ||
	    (src->nwindows > 0 && t->windows == NULL) || (src->nrs > 0 && t->rs == NULL);
	/* Strings are owned per value: none may be shared with the live twin. */
	for (uint32_t i = 0; i < t->nprops; i++) {
		t->props[i].val = (struct tw_val){ 0 };
		failed |= value_copy(&t->props[i].val, &src->props[i].val) != TW_OK;
	}
	for (uint32_t i = 0; i < t->ndesired; i++) {
		t->desired[i].val = (struct tw_val){ 0 };
		failed |= value_copy(&t->desired[i].val, &src->desired[i].val) != TW_OK;
	}
	if (failed) {
		twin_free(t);
		return NULL;
	}
	return t;
}

void
twin_copy_free(struct twin *c)
{
	if (c != NULL)
		twin_free(c);
}

int64_t
twin_clock(const struct twin *t, int64_t now_mono)
{
	if (t->newest_ts == 0)
		return 0;
	return t->newest_ts + (now_mono - t->newest_mono);
}
