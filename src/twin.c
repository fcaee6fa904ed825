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
twin_free(struct twin *t)
{
	for (uint32_t i = 0; i < t->nprops; i++)
		if (t->props[i].val.type == VAL_STR)
			free((char *)t->props[i].val.str);
	free(t->props);
	free(t->id);
	free(t);
}

void
twin_map_clear(struct twin_map *m)
{
	struct twin *t, *tmp;

	HASH_ITER(hh, m->twins, t, tmp) {
		HASH_DEL(m->twins, t);
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
	return n->s;
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
		uint32_t cap = t->cap == 0 ? 4 : t->cap * 2;

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
	char *s = NULL;

	/* Equal times: a correction wins, the same value changes nothing. */
	if (ts < p->ts || (ts == p->ts && p->val.type != 0 && value_equal(&p->val, v)))
		return 0;
	if (v->type == VAL_STR && (s = strdup(v->str)) == NULL)
		return -TW_ERR_NOMEM;
	if (p->val.type == VAL_STR)
		free((char *)p->val.str);
	p->val = *v;
	p->val.str = s;
	p->ts = ts;
	p->dirty = 1;
	return 1;
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
