/* Copies of rule state taken before a batch changed it, put back if the batch fails. */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "undo.h"

int
undo_save(struct undo *u, const struct twin *t)
{
	struct undo_entry *e;

	if (u->n == u->cap) {
		unsigned cap = u->cap == 0 ? 64 : u->cap * 2;

		if ((e = realloc(u->v, cap * sizeof(*e))) == NULL)
			return TW_ERR_NOMEM;
		u->v = e;
		u->cap = cap;
	}
	e = &u->v[u->n];
	e->id = strdup(t->id);
	e->rs = twin_memdup(t->rs, t->nrs * sizeof(*t->rs));
	e->windows = twin_windows_dup(t->windows, t->nwindows);
	e->nrs = t->nrs;
	e->nwindows = t->nwindows;
	if (e->id == NULL || (t->nrs > 0 && e->rs == NULL) ||
	    (t->nwindows > 0 && e->windows == NULL)) {
		free(e->id);
		free(e->rs);
		twin_windows_free(e->windows, t->nwindows);
		return TW_ERR_NOMEM;
	}
	u->n++;
	return TW_OK;
}

void
undo_restore(struct undo *u, struct twin_map *m)
{
	for (unsigned i = 0; i < u->n; i++) {
		struct undo_entry *e = &u->v[i];
		struct twin *t = twin_find(m, e->id, strlen(e->id));

		/* A twin the batch created goes with the reload anyway. */
		if (t == NULL || t->nrs != e->nrs || t->nwindows != e->nwindows)
			continue;
		free(t->rs);
		twin_windows_free(t->windows, t->nwindows);
		t->rs = e->rs;
		t->windows = e->windows;
		e->rs = NULL;
		e->windows = NULL;
	}
	undo_clear(u);
}

void
undo_clear(struct undo *u)
{
	for (unsigned i = 0; i < u->n; i++) {
		free(u->v[i].id);
		free(u->v[i].rs);
		twin_windows_free(u->v[i].windows, u->v[i].nwindows);
	}
	u->n = 0;
	if (u->cap > 1024) {
		/* A burst of twins must not hold its peak forever. */
		free(u->v);
		u->v = NULL;
		u->cap = 0;
	}
}

void
undo_cleanup(struct undo *u)
{
	undo_clear(u);
	free(u->v);
	u->v = NULL;
	u->cap = 0;
}
