/*
 * Inside what-if, for whatif.c (the body, the copies, the steps, the run
 * and its answer) and whatif_rules.c (what the rules would decide) only:
 * one scenario's state and what the two call of each other.
 */
#ifndef TW_WHATIF_SIM_H
#define TW_WHATIF_SIM_H

#include <cJSON.h>

#include "runtime.h"
#include "whatif.h"

#define NEST_MAX	8	/* levels of {"bearing":{"temp":..}} in a step's readings */
#define FOR_ROUNDS_MAX	1000	/* `for` deadlines met between two steps */
#define HOLD_WEIGHT_MAX	100000	/* readings one chunk stands for */
#define INTERVAL_MIN_MS	10	/* a held value is taken as reported at most 100 times a second */

struct copy {
	struct twin *t;
	int depth;
};

struct sim {
	const struct whatif_env *w;
	struct runtime dry;
	struct copy v[WHATIF_TWINS_MAX];
	int n;
	int64_t base, wall;	/* the root's twin clock and the wall clock at the start */
	int64_t until;
	struct effects fx;
	int64_t raised;		/* alerts raised in the scenario: ids -1, -2, ... */
	long evals;		/* rule evaluations and windows held, so far */
	int64_t started;	/* monotonic ms */
	cJSON *alerts, *commands, *desired;
	struct request *r;
};

/* Adds `ts` (ms) as a number; 1 when out of memory. */
int whatif_add_ts(cJSON *o, const char *name, int64_t ts);
/* A desired patch on a copy, checked as it would be live. Returns 0, TW_ERR_REFUSED or TW_ERR_NOMEM. */
int whatif_desired_put(struct sim *s, struct twin *t, const cJSON *patch, const char *by,
    int64_t at, int automatic, struct request *why);
/* The rules of copy `t` that read `names` (NULL: all) at scenario time `at`, their decisions described. */
int whatif_evaluate(struct sim *s, struct twin *t, const char *const *names, int n, int64_t at);
/*
 * The timer, as live: every rule of every copy at `to`, and before it at
 * each moment a `for` ends, so a condition held raises when it would.
 */
int whatif_timer_until(struct sim *s, int64_t from, int64_t to);

#endif
