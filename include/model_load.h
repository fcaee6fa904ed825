/*
 * What loading a model set passes between its three files: model.c (the
 * folder, the files and the public lookups), model_parse.c (one Interface
 * read from JSON and checked on its own) and model_resolve.c (ids,
 * extends, inheritance and Components resolved, each Interface flattened
 * into a struct model, and the conditions checked against it). Only those
 * three include it; everyone else sees struct model_set as opaque.
 */
#ifndef TW_MODEL_LOAD_H
#define TW_MODEL_LOAD_H

#include <stdatomic.h>
#include <stdio.h>

#include "model.h"

struct cJSON;

#define MODEL_FILE_MAX		(1024 * 1024)	/* bytes in one model file */
#define MODEL_FILES_MAX		1000		/* .json files in the folder */
#define MODEL_IFACES_MAX	10000		/* Interfaces in a set: bounds memory and recursion */
#define MODEL_ERRORS_MAX	50		/* problems printed; the rest are only counted */
#define MODEL_ID_MAX		128		/* Interface @id length, as Azure Digital Twins */
#define MODEL_NAME_MAX		64		/* DTDL's limit on element names */
#define MODEL_PROP_NAME_MAX	128		/* "component.name"; ingest's PROP_NAME_MAX */
#define MODEL_EXTENDS_DEPTH	10		/* DTDL's limit on extends nesting */
#define MODEL_LABEL_MAX		160		/* an @id quoted in messages is cut here */

struct model_set {
	atomic_int refs;
	int n;
	struct model *v;	/* sorted by id */
};

enum elem_class {
	EL_TELEMETRY, EL_PROPERTY, EL_COMMAND, EL_RELATIONSHIP, EL_COMPONENT, EL__COUNT
};

/* One element of an Interface's contents, as read, before resolution. */
struct elem {
	int cls;		/* enum elem_class, -1 when @type was unusable */
	int index;		/* position in contents, for messages */
	struct model_prop p;	/* p.name for every class; the rest for Telemetry and Property */
	char *ref;		/* Component: its Interface; Relationship: its target or NULL */
	int cmd_ack;		/* Command: twind extension "acknowledged"; -1 when not said */
	int64_t cmd_timeout_ms;	/* Command: twind extension "timeout"; 0 when not said */
	char *cmd_envelope;	/* Command, writable Property: "envelope", checked, as JSON text */
	char *cmd_effect;	/* Command: twind extension "effect", checked, as JSON text */
};

/* One Interface as read, and what resolution learns about it. */
struct iface {
	const char *file;	/* borrowed from load.files */
	char *label;		/* @id as written (cut), or "[N]" / "(no @id)": for messages */
	int id_ok;		/* label is a valid @id, and the first with it */
	int seq;		/* reading order, to keep sorting stable */
	int ext;		/* @context lists dtmi:twind:context;1 */
	char *display_name;
	int strict;		/* 1, 0, or -1 when the Interface does not say */
	char **extends;
	int *base;		/* index in load.v of each extends, -1 when not loaded */
	int nextends;
	struct elem *elems;
	int nelems;
	int bad;		/* a problem of its own or of a base: never built */
	int mark;		/* extends walk: 0 not seen, 1 on the path, 2 done */
	int height;		/* longest extends chain below it; -1 when broken */
	int *anc;		/* itself, then each Interface it extends (transitively), once */
	int nanc, capanc;
	int has_comp;		/* it or a base has a Component */
	char *manual_src;	/* twind extension "manualMode", checked; NULL when not said */
};

struct load {
	FILE *err;
	const char *dir;
	int nerr;		/* problems found; the first MODEL_ERRORS_MAX are printed */
	int nomem;
	char **files;		/* full paths, sorted by name */
	int nfiles;
	struct iface *v;	/* sorted by id once every file is read */
	int n, cap;
	int nids;		/* v[0..nids) have a valid, unique id */
	int too_many;		/* MODEL_IFACES_MAX was passed */
};

/* A name found while checking that names are unique. */
struct nref {
	const char *name;
	int owner;		/* index in load.v */
	int index;		/* in the owner's contents */
	int order;		/* the own Interface first, then bases */
};

/* Problems, printed as "FILE: ..." or "FILE: INTERFACE: contents[N] (NAME): ...". */
void model_say_file(struct load *l, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void model_say(struct load *l, const struct iface *f, int index, const char *name,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void model_say_nomem(struct load *l);

/* model_parse.c: appends the Interface `o` (at `pos` of its file's array, or -1) to l->v. */
void model_parse_iface(struct load *l, const char *path, int pos, const struct cJSON *o);
int model_nref_cmp(const void *a, const void *b);

/* model_resolve.c */
int model_iface_find(const struct load *l, const char *id);
void model_resolve(struct load *l);
int model_build(const struct load *l, const struct iface *f, struct model *m);
int model_check_conditions(struct load *l, const struct model_set *s);

#endif
