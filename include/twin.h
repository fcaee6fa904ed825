/*
 * The live twins: a hash map from id to reported state, owned by the
 * sync engine's thread alone. Other threads read committed state from
 * the store.
 */
#ifndef TW_TWIN_H
#define TW_TWIN_H

#include <stdint.h>
#include <uthash.h>

#include "value.h"

struct prop {
	const char *name;	/* interned: owned by the map, shared by all twins */
	int64_t series;		/* history series id in the store */
	int64_t ts;		/* measurement time of `val`; 0 before the first value */
	struct tw_val val;	/* a string value is owned by the prop */
	int dirty;		/* changed since the last flush to the store */
};

struct twin {
	char *id;
	uint64_t version;
	int64_t last_seen_ts;	/* wall time the newest message arrived */
	int64_t created_ts;
	struct prop *props;	/* nprops used of cap; a twin has few, so a scan beats a hash */
	uint32_t nprops, cap;
	int dirty;		/* on the map's dirty list */
	UT_hash_handle hh;
};

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

/* The interned form of a property name, or NULL on allocation failure. */
const char *twin_intern(struct twin_map *m, const char *name);
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

/* Marks `t` changed; the dirty list is bounded by the number of twins. */
void twin_mark_dirty(struct twin_map *m, struct twin *t);
/* Hands each dirty twin to `cb` and clears the list; stops at the first non-zero return. */
int twin_flush_dirty(struct twin_map *m, int (*cb)(void *arg, struct twin *t), void *arg);

#endif
