/*
 * The twins file: which twins exist, their models and their parents, as
 * a JSON array [{"id":"pump-1","model":"dtmi:...;1","parent":"line-1"}].
 */
#ifndef TW_PLANT_H
#define TW_PLANT_H

#include <stdio.h>

#include "model.h"

struct plant_entry {
	char *id;
	char *model;		/* NULL: no model (accepts any property) */
	char *parent;		/* NULL: a root */
};

struct plant {
	struct plant_entry *v;
	int n;
};

/*
 * Reads `path` into `p`, checking ids, that each model is in `models`,
 * that each parent is a twin of the file, and that parents form no
 * cycle. Every problem is printed on `err` ("FILE:LINE:COL: ..." for JSON
 * syntax, "FILE: [i] id: ..." for content). `path` NULL or "" gives an
 * empty plant. Returns 0, TW_ERR_INVAL or TW_ERR_IO; `p` is always safe
 * to clean up.
 */
int plant_load(struct plant *p, const char *path, const struct model_set *models, FILE *err);
void plant_cleanup(struct plant *p);

/* Line and column (from 1) of byte `off` in `buf`, for JSON syntax errors. */
void plant_position(const char *buf, size_t off, int *line, int *col);

#endif
