/*
 * Models: DTDL v3 Interfaces (a subset) loaded from a folder of JSON
 * files, with twind's extension for ranges, update periods and
 * convergence. A loaded set is immutable and shared read-only between
 * threads, kept alive by a reference count.
 */
#ifndef TW_MODEL_H
#define TW_MODEL_H

#include <stdint.h>
#include <stdio.h>

/* The id given to twins that have no model: it accepts any property. */
struct command_effect;
struct envelope;
struct expr;

#define MODEL_ANY_ID	"dtmi:twind:Any;1"

enum model_kind { MODEL_TELEMETRY = 1, MODEL_PROPERTY = 2 };

/* What a value must be: matches enum val_type of ingest.h. */
enum model_schema {
	SCHEMA_NUMBER = 1,	/* double, float */
	SCHEMA_BOOLEAN = 2,
	SCHEMA_STRING = 3,	/* string, date, dateTime, time, duration */
};

struct model_prop {
	char *name;		/* full name: "temperature", or "bearing.temp" for a component's */
	int kind;		/* enum model_kind */
	int schema;		/* enum model_schema */
	int integer;		/* integer, long, short, byte, unsigned*: whole numbers only */
	int writable;		/* a writable Property: may be in desired state */
	int has_min, has_max;
	double min, max;	/* twind extension "minimum", "maximum" */
	int64_t period_ms;	/* twind extension "period": expected update period; 0 none */
	double tolerance;	/* twind extension "tolerance": |reported - desired| <= it converges */
	int64_t converge_ms;	/* twind extension "convergenceTimeout"; 0 none */
	char *unit;		/* DTDL "unit", or NULL */
	struct envelope *envelope;	/* writable: "envelope" (minInterval, interlock); NULL none */
};

/* A Command, with twind's extension: does the asset answer it on {command_topic}/ack? */
struct model_command {
	char *name;
	int acknowledged;	/* 1, 0, or -1: as [commands] acknowledged says */
	int64_t timeout_ms;	/* "timeout": its answer may take this long; 0: [commands] timeout */
	struct envelope *envelope;	/* "envelope": what it must meet (envelope.h); NULL: none */
	struct command_effect *effect;	/* "effect": what shows it worked (converge.h); NULL: none */
};

struct model_rel {
	char *name;
	char *target;		/* an Interface id, or NULL for any */
};

/*
 * One resolved Interface. props, commands and rels are each sorted by
 * name (model_prop searches by halving); a Component's commands appear
 * as "component.command" like its properties.
 */
struct model {
	char *id;		/* "dtmi:example:Pump;1" */
	char *file;		/* the file it came from */
	char *display_name;	/* or NULL */
	int strict;		/* twind extension "strict": unknown properties are refused */
	struct model_prop *props;	/* own, inherited (extends) and component properties */
	int nprops;
	struct model_command *commands;
	int ncommands;
	struct model_rel *rels;
	int nrels;
	char *manual_src;	/* twind extension "manualMode": a condition; NULL: none */
	struct expr *manual;	/* compiled: true or unknown holds a rule's commands */
};

struct model_set;

/*
 * Loads every *.json file of `dir` (each holds one Interface or an array
 * of them), resolves extends and components, and checks the whole set.
 * Every problem is printed on `err` as "FILE:LINE:COL: message" (for JSON
 * syntax) or "FILE: @id ...: message" (for content), and the load fails
 * when there is any. `dir` NULL or "" gives an empty set. Returns the set
 * with one reference, or NULL.
 */
struct model_set *model_set_load(const char *dir, FILE *err);

void model_set_ref(struct model_set *s);
void model_set_unref(struct model_set *s);	/* frees on the last reference; NULL is fine */

/* The model with this id, or NULL. Borrowed while the set is referenced. */
const struct model *model_find(const struct model_set *s, const char *id);
/* The property `name` (full dotted name) of `m`, or NULL. */
const struct model_prop *model_prop(const struct model *m, const char *name);
/* 1 if `m` has the Command `name`. */
int model_has_command(const struct model *m, const char *name);
/* The Command `name` of `m`, or NULL. */
const struct model_command *model_command(const struct model *m, const char *name);

struct tw_val;
/* Whether `v` has the schema of `mp` (a whole number for an integer schema). */
int model_value_ok(const struct model_prop *mp, const struct tw_val *v);
/* Whether `v` is a number outside the minimum or maximum of `mp` (NULL: never). */
int model_out_of_range(const struct model_prop *mp, const struct tw_val *v);
int model_count(const struct model_set *s);
const struct model *model_at(const struct model_set *s, int i);	/* sorted by id */

#endif
