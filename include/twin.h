/*
 * The live twins: a hash map from id to reported state, owned by the
 * sync engine's thread alone. Other threads read committed state from
 * the store.
 */
#ifndef TW_TWIN_H
#define TW_TWIN_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "model.h"
#include "names.h"
#include "rules.h"
#include "value.h"
#include "anomaly.h"
#include "quantile.h"
#include "window.h"

/* One reported property. Kept small: a plant has hundreds of thousands. */
struct prop {
	const char *name;	/* interned: owned by the map, shared by all twins */
	const struct model_prop *mp;	/* in the twin's model, or NULL */
	int64_t series;		/* history series id in the store */
	int64_t ts;		/* measurement time of `val`; 0 before the first value */
	struct tw_val val;	/* a string value is owned by the prop */
	double prev_num;	/* the value before `val`, for prev(); numbers and booleans */
	uint8_t prev_type;	/* its type; 0: none */
	uint8_t out_of_range;	/* outside the model's minimum/maximum */
	uint8_t dirty;		/* changed since the last flush to the store */
};

/*
 * What a rule keeps about a property, fed from every numeric update of
 * it: a window (avg_over, ...), the anomaly() detector, an ewma(), or
 * the detector of its disagreement with another property.
 */
struct twin_window {
	const char *name;	/* interned property name */
	const char *name2;	/* EXPR_WIN_DIFF: the property it is compared with, interned; else NULL */
	uint8_t kind;		/* enum expr_win_kind */
	uint8_t pending;	/* EXPR_WIN_DIFF: one of the two has a reading not yet compared */
	int64_t len_ms;		/* with name and kind, what rules ask for: a window's length, a half-life */
	union {
		struct window w;	/* EXPR_WIN_SPAN */
		struct anomaly a;	/* EXPR_WIN_ANOMALY, EXPR_WIN_DIFF */
		struct ewma e;		/* EXPR_WIN_EWMA */
		struct quantile *q;	/* EXPR_WIN_QUANT: owned, 8 KB, too large for the slot */
	};
};

/* One rule on one twin: where its condition stands and its open alert. */
struct rule_state {
	const struct rule *rule;	/* in the rule set in force */
	int64_t true_since;	/* twin clock when `when` became true; 0 while false */
	int64_t alert_id;	/* the open alert, 0 if none */
	int64_t raised_ts;	/* twin clock of the last raise (cooldown) */
	int64_t shelved_until;	/* wall clock; no raise before it */
};

/* A desired value and how far the asset has come towards it. */
struct desired {
	const char *name;	/* interned */
	const struct model_prop *mp;
	struct tw_val val;	/* a string value is owned here */
	int64_t ts;		/* when it was set */
	int64_t pending_since_ts;	/* when it entered the delta; 0 when not in it */
	int64_t published;	/* times the delta holding it was published */
	int64_t converged_ts;	/* when reported reached it; 0 while it has not */
	int in_delta;
	int dirty;
	int removed;		/* to be deleted from the store at the next flush */
	char set_by[136];	/* a token's name, "rule:NAME" (128 at most), or "" (anonymous) */
};

struct twin {
	char *id;
	char *model_id;		/* NULL: no model, any property accepted */
	const struct model *model;	/* model_id in the current set, or NULL */
	char *parent;		/* NULL: a root */
	uint64_t version;
	int64_t last_seen_ts;	/* wall time the newest message arrived */
	int64_t created_ts;
	int status;		/* enum twin_status, as last computed by the timer */
	int state_dirty;	/* changed since its document was last published */
	uint64_t event_version;	/* version of the last "twin" event */
	int64_t state_published_ms;	/* monotonic time of that publication */
	struct prop *props;	/* nprops used of cap; a twin has few, so a scan beats a hash */
	uint32_t nprops, cap;
	struct desired *desired;	/* ndesired used of cap_desired */
	uint32_t ndesired, cap_desired;
	int delta_pending;	/* the delta is published but not acknowledged by the broker */
	int delta_queued;	/* on the list of deltas to publish after the commit */
	uint64_t delta_seq;	/* the newest delta handed to the broker */
	uint64_t touched;	/* the batch whose undo holds this twin's rule state */
	size_t bytes;		/* what it holds, as last charged to the map's budget */
	int64_t alert_id;	/* open desired_not_converged alert, 0 if none */
	int64_t alert_raised_ts;
	int64_t newest_ts;	/* newest measurement time seen */
	int64_t newest_mono;	/* monotonic ms when it arrived: the twin clock runs on from it */
	struct twin_window *windows;	/* nwindows, one per (property, length) its rules read */
	uint16_t nwindows;
	struct rule_state *rs;	/* nrs, one per rule that matches it */
	uint16_t nrs;
	int dirty;		/* on the map's dirty list */
	UT_hash_handle hh;
};

enum twin_status { TWIN_OFFLINE = 0, TWIN_STALE = 1, TWIN_ONLINE = 2 };

/* How status is judged: from the model's period when it has one, else fixed times. */
struct status_rule {
	int stale_factor;	/* stale after period x this */
	int offline_factor;	/* offline after period x this */
	int64_t stale_after_ms;	/* without a period */
	int64_t offline_after_ms;
};

/* The shortest "period" among the model's properties; 0 when it gives none. */
int64_t twin_model_period(const struct model *m);
/* enum twin_status of a twin last seen at `last_seen` (0: never). */
int twin_status_of(const struct status_rule *r, const struct model *m, int64_t last_seen,
    int64_t now);
const char *twin_status_name(int status);

struct twin_map;

/* `max_twins` and `max_props` bound the map. Returns NULL on allocation failure. */
struct twin_map *twin_map_new(int max_twins, int max_props);
void twin_map_free(struct twin_map *m);
/* Drops every twin (after a failed commit, before reloading from the store). */
void twin_map_clear(struct twin_map *m);

struct twin *twin_find(struct twin_map *m, const char *id, size_t len);
/* Adds a twin with version 0. NULL when max_twins is reached or on allocation failure. */
struct twin *twin_add(struct twin_map *m, const char *id, int64_t created_ts);
unsigned twin_count(const struct twin_map *m);
/* Property names interned. */
unsigned twin_names_count(const struct twin_map *m);

/*
 * The byte budget of [twins] memory_max: what twins, their properties,
 * values, desired state, rule state and windows, and the interned names
 * hold (the bytes asked of malloc, not its overhead). 0: no budget.
 */
void twin_map_set_budget(struct twin_map *m, size_t bytes);
size_t twin_map_bytes(const struct twin_map *m);
/* 1 when `more` bytes still fit the budget; what costs nothing always does. */
int twin_map_room(const struct twin_map *m, size_t more);
/* Recounts what `t` holds after it changed. O(its properties). */
void twin_charge(struct twin_map *m, struct twin *t);
/* What interning `name` would cost: 0 when it is known. */
size_t twin_name_cost(const struct twin_map *m, const char *name);
/* What the property slots of `t` (NULL: a new twin) grow by for `more` new properties. */
size_t twin_props_growth(const struct twin *t, uint32_t more);
/* What the desired slots of `t` grow by for `more` new entries. */
size_t twin_desired_growth(const struct twin *t, uint32_t more);

/* The interned form of a property name, or NULL on allocation failure. */
const char *twin_intern(struct twin_map *m, const char *name);
/*
 * The interned form if the name is known, else NULL. Checks use this, so
 * that names from refused messages never enter the table: it holds only
 * names of properties that exist, bounded by max_twins x max_properties.
 */
const char *twin_intern_find(struct twin_map *m, const char *name);
/* The property `name` (interned) of `t`, or NULL. */
struct prop *twin_prop(struct twin *t, const char *name);
/* Adds a property; NULL when max_props is reached or on allocation failure. */
struct prop *twin_prop_add(struct twin_map *m, struct twin *t, const char *name, int64_t series);
int twin_props_room(const struct twin_map *m, const struct twin *t, int more);

/*
 * Sets the reported value if `ts` is not older than the current one and
 * the value or time differs. Returns 1 if it changed, 0 if not, or
 * TW_ERR_NOMEM as a negative number.
 */
int twin_prop_set(struct prop *p, int64_t ts, const struct tw_val *v);

/* Sets the model and parent (either may be NULL). Returns 0 or TW_ERR_NOMEM. */
int twin_set_meta(struct twin *t, const char *model_id, const struct model *model,
    const char *parent);

/* The desired entry `name` (interned), or NULL. */
struct desired *twin_desired(struct twin *t, const char *name);
/* Sets (adding if new) a desired value. Returns the entry, or NULL on allocation failure. */
struct desired *twin_desired_set(struct twin *t, const char *name, const struct tw_val *v,
    int64_t ts);
/* Drops entries marked removed, once they are deleted from the store. */
void twin_desired_compact(struct twin *t);

/*
 * Whether reported `r` satisfies desired `d`: same type and value, numbers
 * within `tolerance`.
 */
int twin_value_meets(const struct tw_val *r, const struct tw_val *d, double tolerance);

/*
 * The twin's clock in ms: the ts of its newest update plus the wall time
 * since that update arrived, so that a replay behaves as it did live.
 */
int64_t twin_clock(const struct twin *t, int64_t now_mono);

/*
 * A deep copy of `t` that belongs to no map (a what-if's): its values,
 * desired state, windows and rule states are its own; names, model and
 * rules are shared with the live twin. NULL on allocation failure.
 */
struct twin *twin_copy(const struct twin *t);
/* A malloc'd copy of n bytes (NULL for none or on failure): for copies of twins' arrays. */
void *twin_memdup(const void *p, size_t n);
/*
 * Window slots own what does not fit in them (a quantile window): a copy
 * copies it too (NULL for none or on failure), a free frees it. A slot
 * moved elsewhere by assignment must be forgotten in its old array
 * (twin_window_forget) before that array is freed.
 */
struct twin_window *twin_windows_dup(const struct twin_window *w, uint16_t n);
void twin_windows_free(struct twin_window *w, uint16_t n);
void twin_window_forget(struct twin_window *w);
/* The bytes a window takes beyond its slot. */
size_t twin_window_extra(const struct twin_window *w);
void twin_copy_free(struct twin *c);

/* Visits every twin; stops at the first non-zero return. */
int twin_each(struct twin_map *m, int (*cb)(void *arg, struct twin *t), void *arg);

/* Marks `t` changed; the dirty list is bounded by the number of twins. */
void twin_mark_dirty(struct twin_map *m, struct twin *t);
/* Hands each dirty twin to `cb` and clears the list; stops at the first non-zero return. */
int twin_flush_dirty(struct twin_map *m, int (*cb)(void *arg, struct twin *t), void *arg);

#endif
