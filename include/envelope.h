/*
 * The safety envelope: what a command must meet before it leaves twind,
 * whoever asks for it (a rule, an operator, a what-if). It is twind's DTDL
 * extension on a Command, "envelope", and "manualMode" on an Interface:
 *
 *   {"@type": "Command", "name": "reduce_load",
 *    "envelope": {"params": {"percent": {"minimum": 1, "maximum": 50}},
 *                 "clamp": true, "minInterval": "1m",
 *                 "interlock": "not maintenance and pressure < 8"}}
 *   "manualMode": "mode == \"local\""
 *
 * - range: each named parameter must be given, a number, within its
 *   bounds; out of them it is clamped ("clamp": true) or refused;
 * - rate: at most one command of that name per twin within minInterval
 *   (commands that may have reached the asset count, refused and expired
 *   ones do not; the caller looks the last one up in the store);
 * - interlock: a rule expression on the twin's current values that must
 *   be true; unknown (a value never reported) refuses, as a PLC's
 *   interlock does with a broken signal;
 * - manual lockout: while the Interface's manualMode is true, or unknown,
 *   a rule's commands are refused (not held: a command from conditions
 *   of minutes ago must not start a machine when it returns to remote),
 *   unless the envelope says "allowInManual" (a protective stop); an
 *   operator's are not, since the operator is the one in charge.
 * Conditions read a value as unknown when it is stale (runtime_condition).
 * A command that waited to be sent (a broker away, a restart) is judged
 * again by manual mode and interlock before it goes (commands.c).
 *
 * An envelope is immutable once parsed and belongs to its model.
 */
#ifndef TW_ENVELOPE_H
#define TW_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define ENVELOPE_PARAMS_MAX	16

enum envelope_refusal {
	ENVELOPE_OK = 0,
	ENVELOPE_RANGE,		/* a parameter missing, not a number, or out of range */
	ENVELOPE_RATE,		/* within minInterval of the last one */
	ENVELOPE_INTERLOCK,	/* the interlock is false or unknown */
	ENVELOPE_MANUAL,	/* a rule's command while the asset is in manual mode */
	ENVELOPE_INFLIGHT,	/* too many wait for the broker ([commands] max_inflight*) */
	ENVELOPE__COUNT
};

/* "range", "rate", "interlock", "manual", "inflight": the metric's label. */
const char *envelope_refusal_name(int refusal);

struct envelope_param {
	char *name;
	int has_min, has_max;
	double min, max;
};

struct expr;

struct envelope {
	struct envelope_param *params;
	int nparams;
	int clamp;			/* out of range: clamped, not refused */
	int allow_in_manual;		/* "allowInManual": a rule's may go in manual mode (a stop) */
	int64_t min_interval_ms;	/* 0: no rate limit */
	char *interlock_src;		/* as written, for reasons; NULL: none */
	struct expr *interlock;
	char *prefix;			/* a Component's command: its interlock reads "prefix.name" */
};

/*
 * Parses the "envelope" object `o`. Returns it, or NULL with a message in
 * `err` (also "out of memory"). The interlock compiles as a rule
 * condition, without window functions (it judges the current values).
 */
struct envelope *envelope_parse(const cJSON *o, char *err, size_t len);
void envelope_free(struct envelope *e);
/*
 * The envelope of a Component's command, in the model that holds the
 * Component: its interlock's property names are read with "prefix." in
 * front (every name, whatever it is called). TW_OK or TW_ERR_NOMEM.
 */
int envelope_prefix(struct envelope *e, const char *prefix);

struct model;
struct store;
struct twin;
struct twin_map;

/* Who asks for what, and where. */
struct envelope_ask {
	const struct model *model;	/* the twin's; NULL: nothing to check */
	const char *command;
	struct twin_map *twins;
	struct twin *twin;
	int64_t clock;			/* the twin's clock, for age() in conditions */
	int64_t now;			/* the wall clock, for the rate */
	int automatic;			/* a rule's command (a what-if's, too), not an operator's */
	struct store *store;		/* the writer's: the last command of the name; NULL: none */
	const struct status_rule *fresh;	/* conditions distrust stale values; NULL: they do not */
};

struct envelope_verdict {
	int refusal;			/* enum envelope_refusal */
	int clamped;			/* a parameter was brought into range */
	int64_t retry_ms;		/* ENVELOPE_RATE: when the next one may go */
	char why[256];			/* the reason, for the command row and the answer */
};

/*
 * Judges a command against the envelope of its model: manual mode (a
 * rule's only), interlock, range (clamping `params`, an object or NULL,
 * in place) and rate, in that order; the first that fails is the
 * verdict. Returns TW_OK with the verdict, or TW_ERR_DB / TW_ERR_NOMEM.
 */
int envelope_check(const struct envelope_ask *a, cJSON *params, struct envelope_verdict *v);
/*
 * For a command that waited to be sent: manual mode and interlock only,
 * as they hold now (its range was judged, its rate counted it). With
 * a->command NULL (a rule's desired change), manual mode alone. TW_OK.
 */
int envelope_recheck(const struct envelope_ask *a, struct envelope_verdict *v);
/*
 * A desired patch ({prop: value or null}, checked against the model
 * already). For a new value of a property: manual mode (a rule's patch,
 * a->automatic, unless the property's envelope says "allowInManual"; on
 * any property of a model with a manualMode) and the property's
 * interlock. For a new value or a withdrawal of a property with a
 * minInterval: the rate (since the value was set). The same value again
 * is not judged. a->command is unused. TW_OK with the verdict: the first
 * refusal, naming the property, and for a rate the longest wait.
 */
int envelope_desired(const struct envelope_ask *a, const cJSON *patch,
    struct envelope_verdict *v);

#endif
