/*
 * The rules runtime: a rule set evaluated against one twin's state and
 * windows at a clock the caller passes in. It decides and does nothing:
 * it returns effects (an alert to raise, an alert to clear) and the
 * caller applies them. The live engine stores and publishes them; a
 * what-if or a backtest runs the same code on a copy of a twin, or on
 * replayed history, with no database and no broker.
 *
 * It owns, per twin, the rule states and windows it binds (t->rs,
 * t->windows): windows cost 1704 bytes per (property, length) that a
 * matching rule reads, rule states 40 bytes per (twin, matching rule).
 */
#ifndef TW_RUNTIME_H
#define TW_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "names.h"
#include "rules.h"
#include "twin.h"

/* The interned property names of a rule's expressions, by expr_refs index. */
struct rule_bind {
	const char *when[EXPR_REFS_MAX];
	const char *clear[EXPR_REFS_MAX];
};

struct runtime {
	const struct rule_set *rules;	/* borrowed: the set in force */
	struct rule_bind *binds;	/* one per rule of `rules` */
	int dry;			/* a what-if's copy: evaluations are not counted */
};

/* An alert found open in the store at start-up, for binding rule states to it. */
struct runtime_open {
	char twin[TWIN_ID_MAX + 1];
	char rule[128];
	int64_t id;			/* 0 when it is cleared (its raise time still holds the cooldown) */
	int64_t raised_ts, shelved_until;
};

/* Sorted (by runtime_open_sort) for binary search; NULL/0 when there are none. */
struct runtime_opened {
	struct runtime_open *v;
	int n;
};
void runtime_open_sort(struct runtime_opened *o);

enum effect_type { EFFECT_RAISE = 1, EFFECT_CLEAR = 2 };

struct effect {
	int type;
	struct rule_state *st;		/* on the twin: the applier sets alert_id and raised_ts */
	const struct rule *rule;
	int64_t at;			/* the twin clock */
	struct tw_val val;		/* RAISE: the value that raised it, borrowed from the twin */
	char message[512];		/* RAISE: the rule's message, filled in */
};

/* What one evaluation decided; the caller owns the array and reuses it. */
struct effects {
	struct effect *v;
	unsigned n, cap;
};
void effects_cleanup(struct effects *e);

/* Interns every name `rules` reads into `m`. Returns 0 or TW_ERR_NOMEM. */
int runtime_init(struct runtime *rt, const struct rule_set *rules, struct twin_map *m);
void runtime_cleanup(struct runtime *rt);

/*
 * Gives `t` a rule state for each rule that matches it and the windows
 * they read, keeping the state (and open alert) of rules with the same
 * name and windows that exist already, with their data. `opened` may be
 * NULL. Returns 0 or TW_ERR_NOMEM (then `t` is as before).
 */
int runtime_bind(const struct runtime *rt, struct twin *t, const struct runtime_opened *opened);
/* An upper bound of what binding a twin of this id and model (NULL: none) costs, in bytes. */
size_t runtime_cost(const struct runtime *rt, const char *twin, const char *model);
/* Drops `t`'s rule states and windows. */
void runtime_unbind(struct twin *t);

/*
 * A new reading of property `name` (interned) at measurement time `ts`
 * feeds its windows; with `newest` (no reading of it is younger) also
 * its anomaly detector.
 */
void runtime_feed(struct twin *t, const char *name, int64_t ts, const struct tw_val *v,
    int newest);
/*
 * After a record's readings were fed and set: each disagree() detector
 * whose properties had a newest reading in it takes the difference of
 * their current values, once.
 */
void runtime_feed_pairs(struct twin *t);

/*
 * Evaluates the rules of `t` that read one of `names` (interned; NULL:
 * every rule, as the timer does) at twin clock `now` and wall clock
 * `wall` (shelving is wall time). `for` delays a raise, `clear` (or `when`
 * no longer holding) ends an alert, and between the two nothing changes.
 * Rule states' condition timers move; alerts are the caller's to apply.
 * Appends to `out`. Returns 0 or TW_ERR_NOMEM.
 */
int runtime_eval(const struct runtime *rt, struct twin *t, const char *const *names,
    int nnames, int64_t now, int64_t wall, struct effects *out);

/*
 * A condition without windows (an interlock, a manual mode) on `t` at
 * twin clock `now`: 1 true, 0 false, -1 unknown (a value never reported,
 * a string where a boolean belongs). With `fresh`, a value is unknown,
 * too, while the twin is stale or offline by that rule, or when it is
 * older than its model's period times the stale factor: a safety
 * condition must not trust a signal that stopped. With `prefix` (a
 * Component's), each name is read as "prefix.name". Changes nothing.
 */
int runtime_condition(struct twin_map *m, struct twin *t, const struct expr *e, const char *prefix,
    int64_t now, const struct status_rule *fresh);

/* An operator shelved alert `id` (of rule `rule`) on `t` until `until` (wall time). */
void runtime_shelve(struct twin *t, int64_t id, const char *rule, int64_t until);

#endif
