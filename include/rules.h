/*
 * Rules: the rules file (a JSON array) compiled into an immutable set,
 * shared read-only between the engine (which evaluates it) and REST
 * (which lists it), kept alive by a reference count. What a rule has done
 * (evaluations, raises, cost, last error) is counted in atomics beside it.
 */
#ifndef TW_RULES_H
#define TW_RULES_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "expr.h"

#define RULE_LETS_MAX	16	/* named sub-expressions of one rule */

enum rule_action_type { ACTION_COMMAND = 1, ACTION_DESIRED = 2 };

struct rule_action {
	int type;
	char *command;		/* ACTION_COMMAND */
	char *json;		/* params (COMMAND) or the desired object (DESIRED), as JSON text */
};

struct rule_stats {
	atomic_uint_fast64_t evaluations;
	atomic_uint_fast64_t raises;
	atomic_uint_fast64_t clears;
	atomic_uint_fast64_t cost_ns;		/* total evaluation time */
	atomic_uint_fast64_t errors;
};

struct rule {
	char *name;
	char *match_model;	/* NULL: any */
	char *match_twins;	/* glob, NULL: any */
	char *when_src, *clear_src;	/* clear_src NULL: "not when" */
	struct expr *when, *clear;
	int64_t for_ms;
	int64_t cooldown_ms;
	char *severity;		/* info, warning, major, critical */
	char *message;		/* with {property} placeholders */
	struct rule_action *actions;
	int nactions;
	struct rule_stats *stats;	/* carried over (copied) when the rule is unchanged on reload */
	char *source;		/* the rule's JSON, normalised: unchanged rules are recognised by it */
};

struct rule_set {
	struct rule *v;
	int n;
	atomic_int refs;
};

/*
 * Loads `path` (NULL or "": an empty set). Every problem is printed on
 * `err` as "FILE: rule NAME: when: column C: message" or with the JSON
 * position, and the load fails as a whole. A rule whose source is the
 * same as one in `prev` keeps its statistics. Returns the set with one
 * reference, or NULL.
 */
struct rule_set *rules_load(const char *path, const struct rule_set *prev, FILE *err);
/*
 * The rules of `rules` (a JSON array, already parsed), as rules_load would
 * make them from a file; problems are printed with `label` in place of
 * the file name. For rules that are not the live set (a backtest's).
 */
struct cJSON;
struct rule_set *rules_from_json(const struct cJSON *rules, const char *label, FILE *err);
void rules_ref(struct rule_set *s);
void rules_unref(struct rule_set *s);

/* 1 if the rule applies to a twin of this id and model (NULL model: none). */
int rules_match(const struct rule *r, const char *twin, const char *model);

#endif
