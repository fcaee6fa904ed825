/* Copies of rule state taken before a batch changed it, put back if the batch fails. */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "undo.h"

/* The twin's windows, their quantile windows too while UNDO_QUANT_MAX allows (else their q is NULL). */
static struct twin_window *
save_windows(struct undo *u, const struct twin *t)
{
	size_t quant = 0;
	struct twin_window *c;

	for (uint16_t i = 0; i < t->nwindows; i++)
		quant += twin_window_extra(&t->windows[i]);
	if (u->quant_bytes + quant <= UNDO_QUANT_MAX) {
		if ((c = twin_windows_dup(t->windows, t->nwindows)) != NULL)
			u->quant_bytes += quant;
		return c;
	}
	if ((c = twin_memdup(t->windows, (size_t)t->nwindows * sizeof(*c))) != NULL)
		for (uint16_t i = 0; i < t->nwindows; i++)
			twin_window_forget(&c[i]);
	return c;
}

/* The window of `w` (n) that rules know as `k`, or NULL. */
static struct twin_window *
same_window(struct twin_window *w, uint16_t n, const struct twin_window *k)
{
	for (uint16_t i = 0; i < n; i++)
		if (w[i].name == k->name && w[i].name2 == k->name2 && w[i].kind == k->kind &&
		    w[i].len_ms == k->len_ms)
			return &w[i];
	return NULL;
}

/*
 * A quantile window the copy could not take stays the live one: moved into
 * the copy before the live array goes. 0, or -1 when one has no live
 * counterpart (the twin was bound anew): then the twin keeps its state.
 */
static int
keep_uncopied(struct undo_entry *e, struct twin *t)
{
	for (int pass = 0; pass < 2; pass++)
		for (uint16_t i = 0; i < e->nwindows; i++) {
			struct twin_window *live;

			if (e->windows[i].kind != EXPR_WIN_QUANT || e->windows[i].q != NULL)
				continue;
			live = same_window(t->windows, t->nwindows, &e->windows[i]);
			if (live == NULL || live->q == NULL)
				return -1;	/* only in the first pass: nothing moved yet */
			if (pass == 1) {
				e->windows[i].q = live->q;
				twin_window_forget(live);
			}
		}
	return 0;
}

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
	e->windows = save_windows(u, t);
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
		if (t == NULL || t->nrs != e->nrs || t->nwindows != e->nwindows ||
		    keep_uncopied(e, t) != 0)
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
	u->quant_bytes = 0;
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
