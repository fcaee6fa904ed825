/*
 * Undo of rule state for one batch: before a batch first changes a twin's
 * windows or rule states, a copy is kept; a rollback puts the copies back,
 * so that a failed commit neither counts its updates twice in windows when
 * they are redelivered nor loses the windows and `for` timers of what was
 * committed before. Freed at every commit. Owned by the engine's thread.
 */
#ifndef TW_UNDO_H
#define TW_UNDO_H

#include "twin.h"

struct undo_entry {
	char *id;
	struct rule_state *rs;
	struct twin_window *windows;
	uint16_t nrs, nwindows;
};

/* Bounded by the twins one batch touches (at most batch_max + the twins the timer touches). */
struct undo {
	struct undo_entry *v;
	unsigned n, cap;
};

/* Keeps a copy of the rule state of `t`. 0 or TW_ERR_NOMEM. */
int undo_save(struct undo *u, const struct twin *t);
/* Puts every copy back into its twin (found by id in `m`), newest batch's state dropped. */
void undo_restore(struct undo *u, struct twin_map *m);
/* Drops the copies (after a commit). */
void undo_clear(struct undo *u);
void undo_cleanup(struct undo *u);

#endif
