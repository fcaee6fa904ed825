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

/*
 * Bounded by the twins one batch touches (at most batch_max + the twins
 * the timer touches), and the copies of quantile windows (8.7 KB each) by
 * UNDO_QUANT_MAX a batch: beyond it, a quantile window is not copied and
 * keeps the failed batch's readings after a rollback (then counted twice
 * when they are redelivered), as any state does when a copy finds no memory.
 */
#define UNDO_QUANT_MAX	(4u << 20)

struct undo {
	struct undo_entry *v;
	unsigned n, cap;
	size_t quant_bytes;	/* copies of quantile windows this batch */
};

/* Keeps a copy of the rule state of `t`. 0 or TW_ERR_NOMEM. */
int undo_save(struct undo *u, const struct twin *t);
/* Puts every copy back into its twin (found by id in `m`), newest batch's state dropped. */
void undo_restore(struct undo *u, struct twin_map *m);
/* Drops the copies (after a commit). */
void undo_clear(struct undo *u);
void undo_cleanup(struct undo *u);

#endif
