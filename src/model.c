/* Models: DTDL v3 Interfaces (a subset) and twind's extension, read from a folder, checked and resolved as one set. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "converge.h"
#include "envelope.h"
#include "err.h"
#include "expr.h"
#include "model.h"
#include "value.h"

#define MODEL_FILE_MAX		(1024 * 1024)	/* bytes in one model file */
#define MODEL_FILES_MAX		1000		/* .json files in the folder */
#define MODEL_IFACES_MAX	10000		/* Interfaces in a set: bounds memory and recursion */
#define MODEL_ERRORS_MAX	50		/* problems printed; the rest are only counted */
#define MODEL_ID_MAX		128		/* Interface @id length, as Azure Digital Twins */
#define MODEL_NAME_MAX		64		/* DTDL's limit on element names */
#define MODEL_PROP_NAME_MAX	128		/* "component.name"; ingest's PROP_NAME_MAX */
#define MODEL_EXTENDS_DEPTH	10		/* DTDL's limit on extends nesting */
#define MODEL_LABEL_MAX		160		/* an @id quoted in messages is cut here */

#define CTX_DTDL	"dtmi:dtdl:context;3"
#define CTX_TWIND	"dtmi:twind:context;1"
/* DTDL v3 semantic types ("Temperature") and their units come from this context. */
#define CTX_QUANT	"dtmi:dtdl:extension:quantitativeTypes;1"

struct model_set {
	atomic_int refs;
	int n;
	struct model *v;	/* sorted by id */
};

enum elem_class {
	EL_TELEMETRY, EL_PROPERTY, EL_COMMAND, EL_RELATIONSHIP, EL_COMPONENT, EL__COUNT
};

static const char *const class_names[EL__COUNT] = {
	"Telemetry", "Property", "Command", "Relationship", "Component",
};

#define C_TEL	(1u << EL_TELEMETRY)
#define C_PROP	(1u << EL_PROPERTY)
#define C_CMD	(1u << EL_COMMAND)
#define C_REL	(1u << EL_RELATIONSHIP)
#define C_COMP	(1u << EL_COMPONENT)
#define C_ELEM	(C_TEL | C_PROP | C_CMD | C_REL | C_COMP)
#define C_IFACE	(1u << EL__COUNT)	/* the Interface itself */

/*
 * Every key we accept and where. DTDL keys that twind does not use
 * (description, request, minMultiplicity...) are accepted and ignored so
 * that ordinary DTDL files load; anything else is refused, as the DTDL
 * parser does, so that a misspelt "maximun" cannot pass unnoticed.
 */
static const struct key {
	const char *name;
	unsigned where;
	int ext;		/* needs dtmi:twind:context;1 in @context */
} keys[] = {
	{ "@context", C_IFACE, 0 },
	{ "@id", C_IFACE | C_ELEM, 0 },
	{ "@type", C_IFACE | C_ELEM, 0 },
	{ "comment", C_IFACE | C_ELEM, 0 },
	{ "description", C_IFACE | C_ELEM, 0 },
	{ "displayName", C_IFACE | C_ELEM, 0 },
	{ "extends", C_IFACE, 0 },
	{ "contents", C_IFACE, 0 },
	{ "schemas", C_IFACE, 0 },
	{ "name", C_ELEM, 0 },
	{ "schema", C_TEL | C_PROP | C_COMP, 0 },
	{ "unit", C_TEL | C_PROP, 0 },
	{ "writable", C_PROP | C_REL, 0 },
	{ "request", C_CMD, 0 },
	{ "response", C_CMD, 0 },
	{ "target", C_REL, 0 },
	{ "minMultiplicity", C_REL, 0 },
	{ "maxMultiplicity", C_REL, 0 },
	{ "properties", C_REL, 0 },
	{ "strict", C_IFACE, 1 },
	{ "minimum", C_TEL | C_PROP, 1 },
	{ "maximum", C_TEL | C_PROP, 1 },
	{ "period", C_TEL | C_PROP, 1 },
	{ "tolerance", C_PROP, 1 },
	{ "convergenceTimeout", C_PROP, 1 },
	{ "acknowledged", C_CMD, 1 },
	{ "timeout", C_CMD, 1 },
	{ "envelope", C_CMD | C_PROP, 1 },
	{ "effect", C_CMD, 1 },
	{ "manualMode", C_IFACE, 1 },
};

#define NKEYS	(sizeof(keys) / sizeof(keys[0]))

static const struct prim {
	const char *name;
	int schema;
	int integer;
} prims[] = {
	{ "boolean", SCHEMA_BOOLEAN, 0 },
	{ "double", SCHEMA_NUMBER, 0 },
	{ "float", SCHEMA_NUMBER, 0 },
	{ "integer", SCHEMA_NUMBER, 1 },
	{ "long", SCHEMA_NUMBER, 1 },
	{ "short", SCHEMA_NUMBER, 1 },
	{ "byte", SCHEMA_NUMBER, 1 },
	{ "unsignedInteger", SCHEMA_NUMBER, 1 },
	{ "unsignedLong", SCHEMA_NUMBER, 1 },
	{ "unsignedShort", SCHEMA_NUMBER, 1 },
	{ "unsignedByte", SCHEMA_NUMBER, 1 },
	{ "string", SCHEMA_STRING, 0 },
	{ "date", SCHEMA_STRING, 0 },
	{ "dateTime", SCHEMA_STRING, 0 },
	{ "time", SCHEMA_STRING, 0 },
	{ "duration", SCHEMA_STRING, 0 },
};

#define PRIMS_TEXT	"boolean, double, float, integer, long, short, byte, unsignedInteger, " \
			"unsignedLong, unsignedShort, unsignedByte, string, date, dateTime, time, duration"

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

static void say_file(struct load *l, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct load *l, const struct iface *f, int index, const char *name,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A problem with a whole file or the folder. */
static void
say_file(struct load *l, const char *path, const char *fmt, ...)
{
	va_list ap;

	if (l->nerr++ >= MODEL_ERRORS_MAX)
		return;
	fprintf(l->err, "%s: ", path);
	va_start(ap, fmt);
	vfprintf(l->err, fmt, ap);
	va_end(ap);
	fputc('\n', l->err);
}

/* A JSON syntax problem at a line and column: "FILE:LINE:COL: message". */
static void
say_at(struct load *l, const char *path, int line, int col, const char *msg)
{
	if (l->nerr++ < MODEL_ERRORS_MAX)
		fprintf(l->err, "%s:%d:%d: %s\n", path, line, col, msg);
}

/* A problem in Interface `f`, in its element contents[index] when index >= 0. */
static void
say(struct load *l, const struct iface *f, int index, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (l->nerr++ >= MODEL_ERRORS_MAX)
		return;
	fprintf(l->err, "%s: %s: ", f->file, f->label);
	if (index >= 0 && name != NULL)
		fprintf(l->err, "contents[%d] (%s): ", index, name);
	else if (index >= 0)
		fprintf(l->err, "contents[%d]: ", index);
	va_start(ap, fmt);
	vfprintf(l->err, fmt, ap);
	va_end(ap);
	fputc('\n', l->err);
}

static void
say_nomem(struct load *l)
{
	if (!l->nomem)
		say_file(l, l->dir, "out of memory");
	l->nomem = 1;
}

static int
is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
is_word(int c)
{
	return is_alpha(c) || is_digit(c) || c == '_';
}

/* DTDL's name rule: ^[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?$, at most 64 characters. */
static int
name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MODEL_NAME_MAX || !is_alpha((unsigned char)s[0]) || s[n - 1] == '_')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_word((unsigned char)s[i]))
			return 0;
	return 1;
}

/* Digits of a DTMI version: 1 to `max` of them, no leading zero. */
static const char *
version_part(const char *p, int max)
{
	int n = 0;

	if (*p < '1' || *p > '9')
		return NULL;
	while (is_digit((unsigned char)*p) && n <= max) {
		p++;
		n++;
	}
	return n > max ? NULL : p;
}

/*
 * A DTMI: "dtmi:" then ':'-separated segments, each a letter followed by
 * letters, digits and underscores and not ending in '_', then ";" and a
 * version (1 to 9 digits, optionally ".minor" of up to 6, as DTDL v3).
 */
static int
dtmi_valid(const char *s)
{
	const char *p = s + 5;

	if (strlen(s) > MODEL_ID_MAX || strncmp(s, "dtmi:", 5) != 0)
		return 0;
	for (;;) {
		if (!is_alpha((unsigned char)*p))
			return 0;
		while (is_word((unsigned char)p[1]))
			p++;
		if (*p == '_')
			return 0;
		p++;
		if (*p != ':')
			break;
		p++;
	}
	if (*p++ != ';' || (p = version_part(p, 9)) == NULL)
		return 0;
	if (*p == '.' && (p = version_part(p + 1, 6)) == NULL)
		return 0;
	return *p == '\0';
}

static const cJSON *
get(const cJSON *o, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const struct key *
key_find(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* "a, b, c": the keys allowed at `where`, for messages. */
static void
keys_allowed(unsigned where, int ext, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < NKEYS && off < len; i++) {
		if (!(keys[i].where & where) || (keys[i].ext && !ext))
			continue;
		off += (size_t)snprintf(buf + off, len - off, "%s%s", off > 0 ? ", " : "",
		    keys[i].name);
	}
}

/*
 * Checks the keys of `o`: known, allowed here, extension keys only with
 * the extension's context, none twice (cJSON keeps both copies of a
 * duplicated key and would silently use the first).
 */
static void
check_keys(struct load *l, struct iface *f, int index, const char *name, const cJSON *o,
    unsigned where, const char *what)
{
	unsigned char seen[NKEYS] = { 0 };
	const struct key *k;
	const cJSON *it;
	char allowed[512];

	cJSON_ArrayForEach(it, o) {
		if ((k = key_find(it->string)) == NULL) {
			keys_allowed(where, f->ext, allowed, sizeof(allowed));
			say(l, f, index, name, "unknown key \"%s\" on %s (allowed: %s)", it->string,
			    what, allowed);
			continue;
		}
		if (seen[k - keys]) {
			say(l, f, index, name, "key \"%s\" appears twice", it->string);
			continue;
		}
		seen[k - keys] = 1;
		if (!(k->where & where))
			say(l, f, index, name, "\"%s\" is not allowed on %s", it->string, what);
		else if (k->ext && !f->ext)
			say(l, f, index, name, "\"%s\" is a twind extension: add \"" CTX_TWIND
			    "\" to @context", it->string);
	}
}

/* @context: DTDL v3 must be there; the twind and quantitative-types extensions may be. */
static void
parse_context(struct load *l, struct iface *f, const cJSON *c)
{
	const cJSON *it;
	int dtdl = 0, bad = 0;

	if (c == NULL) {
		say(l, f, -1, NULL, "@context is missing: it must be \"" CTX_DTDL "\" "
		    "or an array that includes it");
		return;
	}
	if (!cJSON_IsString(c) && !cJSON_IsArray(c)) {
		say(l, f, -1, NULL, "@context must be a string or an array of strings");
		return;
	}
	/* A string is its own single entry: cJSON_ArrayForEach would see no children. */
	for (it = cJSON_IsString(c) ? c : c->child; it != NULL;
	    it = cJSON_IsString(c) ? NULL : it->next) {
		if (!cJSON_IsString(it)) {
			say(l, f, -1, NULL, "@context entries must be strings");
			bad = 1;
		} else if (strcmp(it->valuestring, CTX_DTDL) == 0) {
			dtdl = 1;
		} else if (strcmp(it->valuestring, CTX_TWIND) == 0) {
			f->ext = 1;
		} else if (strcmp(it->valuestring, CTX_QUANT) != 0) {
			say(l, f, -1, NULL, "@context \"%.*s\" is not supported (allowed: " CTX_DTDL
			    ", " CTX_TWIND ", " CTX_QUANT ")%s", MODEL_LABEL_MAX, it->valuestring,
			    strncmp(it->valuestring, "dtmi:dtdl:context;", 18) == 0 ?
			    "; twind reads DTDL v3" : "");
			bad = 1;
		}
	}
	if (!dtdl && !bad)
		say(l, f, -1, NULL, "@context must include \"" CTX_DTDL "\"");
}

/* displayName: a string, or a language map from which "en" or the first is taken. */
static int
parse_display_name(struct load *l, struct iface *f, const cJSON *d)
{
	const cJSON *s = NULL, *it;

	if (d == NULL)
		return TW_OK;
	if (cJSON_IsString(d)) {
		s = d;
	} else if (cJSON_IsObject(d)) {
		s = get(d, "en");
		cJSON_ArrayForEach(it, d) {
			if (!cJSON_IsString(it)) {
				s = NULL;
				break;
			}
			if (s == NULL)
				s = it;
		}
	}
	if (s == NULL) {
		say(l, f, -1, NULL, "displayName must be a string or a language map of strings "
		    "such as {\"en\": \"Pump\"}");
		return TW_ERR_INVAL;
	}
	if ((f->display_name = strdup(s->valuestring)) == NULL) {
		say_nomem(l);
		return TW_ERR_NOMEM;
	}
	return TW_OK;
}

static void
parse_extends(struct load *l, struct iface *f, const cJSON *x)
{
	const cJSON *it;
	int n, i = 0;

	if (x == NULL)
		return;
	if (!cJSON_IsString(x) && !cJSON_IsArray(x)) {
		say(l, f, -1, NULL, "extends must be an Interface @id or an array of them");
		return;
	}
	n = cJSON_IsString(x) ? 1 : cJSON_GetArraySize(x);
	if (n == 0)
		return;
	f->extends = calloc((size_t)n, sizeof(*f->extends));
	f->base = calloc((size_t)n, sizeof(*f->base));
	if (f->extends == NULL || f->base == NULL) {
		say_nomem(l);
		return;
	}
	for (it = cJSON_IsString(x) ? x : x->child; it != NULL;
	    it = cJSON_IsString(x) ? NULL : it->next, i++) {
		if (cJSON_IsObject(it)) {
			say(l, f, -1, NULL, "extends[%d]: inline Interfaces are not supported; "
			    "define the Interface on its own and name it by @id", i);
		} else if (!cJSON_IsString(it) || !dtmi_valid(it->valuestring)) {
			say(l, f, -1, NULL, "extends[%d]: expected an Interface @id "
			    "(dtmi:segment:segment;version)", i);
		} else if ((f->extends[f->nextends] = strdup(it->valuestring)) == NULL) {
			say_nomem(l);
			return;
		} else {
			f->base[f->nextends++] = -1;
		}
	}
}

/* The class named by an element's @type, or -1 after saying what is wrong. */
static int
elem_class(struct load *l, struct iface *f, int index, const char *nm, const cJSON *type)
{
	const cJSON *it;
	int cls = -1, found = 0;

	if (type == NULL) {
		say(l, f, index, nm, "@type is missing (Telemetry, Property, Command, "
		    "Relationship or Component)");
		return -1;
	}
	if (!cJSON_IsString(type) && !cJSON_IsArray(type)) {
		say(l, f, index, nm, "@type must be a string or an array of strings");
		return -1;
	}
	for (it = cJSON_IsString(type) ? type : type->child; it != NULL;
	    it = cJSON_IsString(type) ? NULL : it->next) {
		if (!cJSON_IsString(it)) {
			say(l, f, index, nm, "@type entries must be strings");
			return -1;
		}
		for (int c = 0; c < EL__COUNT; c++)
			if (strcmp(it->valuestring, class_names[c]) == 0) {
				if (found++ == 0)
					cls = c;
			}
	}
	if (found == 0) {
		say(l, f, index, nm, "@type must include one of Telemetry, Property, Command, "
		    "Relationship, Component (semantic types such as \"Temperature\" may follow)");
		return -1;
	}
	if (found > 1) {
		say(l, f, index, nm, "@type names more than one of Telemetry, Property, Command, "
		    "Relationship, Component");
		return -1;
	}
	return cls;
}

/* A finite JSON number at `key`: 1 when there, 0 when absent, -1 after a message. */
static int
get_number(struct load *l, struct iface *f, const struct elem *e, const cJSON *o,
    const char *key, double *out)
{
	const cJSON *v = get(o, key);

	if (v == NULL)
		return 0;
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
		say(l, f, e->index, e->p.name, "%s must be a number", key);
		return -1;
	}
	*out = v->valuedouble;
	return 1;
}

/* A positive duration string at `key`: 1 when there, 0 when absent, -1 after a message. */
static int
get_duration(struct load *l, struct iface *f, const struct elem *e, const cJSON *o,
    const char *key, int64_t *out)
{
	const cJSON *v = get(o, key);
	int64_t ms;

	if (v == NULL)
		return 0;
	if (!cJSON_IsString(v) || clock_parse_duration(v->valuestring, &ms) != TW_OK || ms <= 0) {
		say(l, f, e->index, e->p.name, "%s must be a duration string above zero "
		    "such as \"500ms\", \"10s\", \"5m\" or \"2h\"", key);
		return -1;
	}
	*out = ms;
	return 1;
}

/* Whether `o` parses as an envelope, or as an effect: 0, or -1 with a message. */
static int
envelope_ok(const cJSON *o, char *msg, size_t len)
{
	char inner[240];
	struct envelope *ev = envelope_parse(o, inner, sizeof(inner));

	if (ev == NULL)
		snprintf(msg, len, "envelope: %s", inner);
	envelope_free(ev);
	return ev != NULL ? 0 : -1;
}

/* A writable Property's envelope: its range is its minimum and maximum, not params. */
static int
prop_envelope_ok(const cJSON *o, char *msg, size_t len)
{
	char inner[240];
	struct envelope *ev = envelope_parse(o, inner, sizeof(inner));
	int ok = ev != NULL && ev->nparams == 0 && !ev->clamp;

	if (ev == NULL)
		snprintf(msg, len, "envelope: %s", inner);
	else if (!ok)
		snprintf(msg, len, "envelope: params and clamp are a Command's; a Property's range "
		    "is its minimum and maximum");
	envelope_free(ev);
	return ok ? 0 : -1;
}

static int
effect_ok(const cJSON *o, char *msg, size_t len)
{
	struct command_effect *ef = converge_parse(o, msg, len);

	converge_effect_free(ef);
	return ef != NULL ? 0 : -1;
}

/*
 * A Command's extension object (its envelope, its effect): checked here,
 * kept as text, and parsed again for each model that has the Command (an
 * Interface's elements go into every model that extends it, and each
 * model owns what it holds).
 */
static void
keep_checked(struct load *l, struct iface *f, struct elem *e, const cJSON *o,
    int (*ok)(const cJSON *, char *, size_t), char **text)
{
	char msg[256];

	if (o == NULL || !f->ext)
		return;
	if (ok(o, msg, sizeof(msg)) != 0) {
		say(l, f, e->index, e->p.name, "%s", msg);
		return;
	}
	if ((*text = cJSON_PrintUnformatted(o)) == NULL)
		say_nomem(l);
}

/* schema, unit, writable and the extension of a Telemetry or a Property. */
static void
parse_value(struct load *l, struct iface *f, struct elem *e, const cJSON *o)
{
	struct model_prop *p = &e->p;
	const cJSON *schema = get(o, "schema"), *unit = get(o, "unit"), *w = get(o, "writable");
	const char *nm = p->name;
	int known = 0;
	double tol;

	p->kind = e->cls == EL_PROPERTY ? MODEL_PROPERTY : MODEL_TELEMETRY;
	if (schema == NULL) {
		say(l, f, e->index, nm, "schema is missing (a primitive: " PRIMS_TEXT ")");
	} else if (cJSON_IsString(schema)) {
		for (size_t i = 0; i < sizeof(prims) / sizeof(prims[0]); i++)
			if (strcmp(prims[i].name, schema->valuestring) == 0) {
				p->schema = prims[i].schema;
				p->integer = prims[i].integer;
				known = 1;
			}
		if (!known)
			say(l, f, e->index, nm, "unsupported schema \"%.*s\" (twind supports the "
			    "primitives " PRIMS_TEXT ")", MODEL_LABEL_MAX, schema->valuestring);
	} else {
		say(l, f, e->index, nm, "unsupported schema: complex schemas (Object, Array, Map, "
		    "Enum) are not supported; use a primitive (" PRIMS_TEXT ")");
	}
	if (unit != NULL) {
		if (!cJSON_IsString(unit) || unit->valuestring[0] == '\0')
			say(l, f, e->index, nm, "unit must be a string such as \"degreeCelsius\"");
		else if ((p->unit = strdup(unit->valuestring)) == NULL)
			say_nomem(l);
	}
	if (w != NULL && e->cls == EL_PROPERTY) {
		if (!cJSON_IsBool(w))
			say(l, f, e->index, nm, "writable must be true or false");
		p->writable = cJSON_IsTrue(w);
	}
	if (!f->ext)
		return;	/* check_keys said that extension keys need the context */

	p->has_min = get_number(l, f, e, o, "minimum", &p->min) > 0;
	p->has_max = get_number(l, f, e, o, "maximum", &p->max) > 0;
	if ((p->has_min || p->has_max) && known && p->schema != SCHEMA_NUMBER)
		say(l, f, e->index, nm, "minimum and maximum need a numeric schema "
		    "(double, float, integer, long...), not \"%s\"", schema->valuestring);
	if (p->has_min && p->has_max && p->min > p->max)
		say(l, f, e->index, nm, "minimum %g is above maximum %g", p->min, p->max);
	get_duration(l, f, e, o, "period", &p->period_ms);
	if (e->cls != EL_PROPERTY)
		return;	/* check_keys refused tolerance and convergenceTimeout here */

	if (get_number(l, f, e, o, "tolerance", &tol) > 0) {
		if (tol < 0)
			say(l, f, e->index, nm, "tolerance must be zero or more");
		else if (!p->writable)
			say(l, f, e->index, nm, "tolerance is only for writable Properties "
			    "(add \"writable\": true)");
		else if (known && p->schema != SCHEMA_NUMBER)
			say(l, f, e->index, nm, "tolerance needs a numeric schema, not \"%s\"",
			    schema->valuestring);
		p->tolerance = tol;
	}
	if (get_duration(l, f, e, o, "convergenceTimeout", &p->converge_ms) > 0 && !p->writable)
		say(l, f, e->index, nm, "convergenceTimeout is only for writable Properties "
		    "(add \"writable\": true)");
	if (get(o, "envelope") != NULL && !p->writable)
		say(l, f, e->index, nm, "envelope is only for writable Properties "
		    "(add \"writable\": true)");
	else
		keep_checked(l, f, e, get(o, "envelope"), prop_envelope_ok, &e->cmd_envelope);
}

/* A Component's schema or a Relationship's target: an Interface @id. */
static void
parse_ref(struct load *l, struct iface *f, struct elem *e, const cJSON *o, const char *key,
    int required)
{
	const cJSON *v = get(o, key);

	if (v == NULL) {
		if (required)
			say(l, f, e->index, e->p.name, "%s is missing (an Interface @id)", key);
		return;
	}
	if (cJSON_IsObject(v)) {
		say(l, f, e->index, e->p.name, "unsupported %s: inline Interfaces are not "
		    "supported; define the Interface on its own and name it by @id", key);
		return;
	}
	if (!cJSON_IsString(v) || !dtmi_valid(v->valuestring)) {
		say(l, f, e->index, e->p.name, "%s must be an Interface @id "
		    "(dtmi:segment:segment;version)", key);
		return;
	}
	if ((e->ref = strdup(v->valuestring)) == NULL)
		say_nomem(l);
}

/* "manualMode": a condition on the twin's current values, true while the asset is local. */
static void
parse_manual(struct load *l, struct iface *f, const cJSON *o)
{
	struct expr *x;
	char msg[200];
	int col;

	if (o == NULL || !f->ext)
		return;
	if (!cJSON_IsString(o) || o->valuestring[0] == '\0') {
		say(l, f, -1, NULL, "manualMode must be a rule condition as a string, such as "
		    "mode == \"local\"");
		return;
	}
	if ((x = expr_compile(o->valuestring, msg, sizeof(msg), &col)) == NULL) {
		say(l, f, -1, NULL, "manualMode: column %d: %s", col, msg);
		return;
	}
	if (expr_refs(x)->nwindows > 0)
		say(l, f, -1, NULL, "manualMode: window functions are not allowed: it judges "
		    "the twin's current values");
	expr_free(x);
	if ((f->manual_src = strdup(o->valuestring)) == NULL)
		say_nomem(l);
}

/* The extension of a Command: whether the asset answers it, and how long that may take. */
static void
parse_command(struct load *l, struct iface *f, struct elem *e, const cJSON *o)
{
	const cJSON *ack = get(o, "acknowledged");

	e->cmd_ack = -1;
	if (ack != NULL && !cJSON_IsBool(ack))
		say(l, f, e->index, e->p.name, "acknowledged must be true or false");
	else if (ack != NULL)
		e->cmd_ack = cJSON_IsTrue(ack);
	if (get_duration(l, f, e, o, "timeout", &e->cmd_timeout_ms) > 0 && e->cmd_ack == 0)
		say(l, f, e->index, e->p.name, "timeout is for a command the asset acknowledges");
	keep_checked(l, f, e, get(o, "envelope"), envelope_ok, &e->cmd_envelope);
	keep_checked(l, f, e, get(o, "effect"), effect_ok, &e->cmd_effect);
}

static void
parse_elem(struct load *l, struct iface *f, int index, const cJSON *o, struct elem *e)
{
	const cJSON *name;
	const char *nm = NULL;
	char what[32];

	e->index = index;
	e->cls = -1;
	if (!cJSON_IsObject(o)) {
		say(l, f, index, NULL, "expected an object with @type and name");
		return;
	}
	name = get(o, "name");
	if (name == NULL)
		say(l, f, index, NULL, "name is missing");
	else if (!cJSON_IsString(name) || !name_valid(name->valuestring))
		say(l, f, index, cJSON_IsString(name) ? name->valuestring : NULL,
		    "name must be 1 to 64 letters, digits and underscores, starting with a "
		    "letter and not ending with an underscore");
	else
		nm = name->valuestring;
	if ((e->cls = elem_class(l, f, index, nm, get(o, "@type"))) < 0)
		return;
	snprintf(what, sizeof(what), "a %s", class_names[e->cls]);
	check_keys(l, f, index, nm, o, 1u << e->cls, what);
	if (nm != NULL && (e->p.name = strdup(nm)) == NULL) {
		say_nomem(l);
		return;
	}
	switch (e->cls) {
	case EL_TELEMETRY:
	case EL_PROPERTY:
		parse_value(l, f, e, o);
		break;
	case EL_COMPONENT:
		parse_ref(l, f, e, o, "schema", 1);
		break;
	case EL_RELATIONSHIP:
		parse_ref(l, f, e, o, "target", 0);
		break;
	case EL_COMMAND:
		parse_command(l, f, e, o);
		break;
	}
}

static int
nref_cmp(const void *a, const void *b)
{
	const struct nref *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c != 0 ? c : (x->order > y->order) - (x->order < y->order);
}

/* Names must be unique within an Interface's own contents. */
static void
check_own_names(struct load *l, struct iface *f)
{
	struct nref *r;
	int n = 0;

	if (f->nelems < 2)
		return;
	if ((r = calloc((size_t)f->nelems, sizeof(*r))) == NULL) {
		say_nomem(l);
		return;
	}
	for (int i = 0; i < f->nelems; i++)
		if (f->elems[i].p.name != NULL)
			r[n++] = (struct nref){ f->elems[i].p.name, 0, f->elems[i].index, i };
	qsort(r, (size_t)n, sizeof(*r), nref_cmp);
	for (int i = 1; i < n; i++)
		if (strcmp(r[i].name, r[i - 1].name) == 0)
			say(l, f, r[i].index, r[i].name, "name is already used by contents[%d]",
			    r[i - 1].index);
	free(r);
}

static void
parse_iface(struct load *l, const char *path, int pos, const cJSON *o)
{
	const cJSON *id, *type, *contents, *strict, *it;
	struct iface *f;
	int n0 = l->nerr, i;

	if (l->n == MODEL_IFACES_MAX) {
		if (!l->too_many)
			say_file(l, path, "more than %d Interfaces in the models folder",
			    MODEL_IFACES_MAX);
		l->too_many = 1;
		return;
	}
	if (l->n == l->cap) {
		int cap = l->cap == 0 ? 16 : l->cap * 2;
		struct iface *v = realloc(l->v, (size_t)cap * sizeof(*v));

		if (v == NULL) {
			say_nomem(l);
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	f = &l->v[l->n];
	memset(f, 0, sizeof(*f));
	f->file = path;
	f->seq = l->n++;
	f->strict = -1;
	f->height = -1;
	id = cJSON_IsObject(o) ? get(o, "@id") : NULL;
	if (cJSON_IsString(id))
		f->label = strndup(id->valuestring, MODEL_LABEL_MAX);
	else if (pos < 0)
		f->label = strdup("(no @id)");
	else if (asprintf(&f->label, "[%d]", pos) < 0)
		f->label = NULL;
	if (f->label == NULL) {
		say_nomem(l);
		f->bad = 1;
		return;
	}
	if (!cJSON_IsObject(o)) {
		say(l, f, -1, NULL, "expected an Interface object");
		f->bad = 1;
		return;
	}
	/* First, so that the key check knows whether the extension is on. */
	parse_context(l, f, get(o, "@context"));
	if (id == NULL)
		say(l, f, -1, NULL, "@id is missing");
	else if (!cJSON_IsString(id) || !dtmi_valid(id->valuestring))
		say(l, f, -1, NULL, "@id must be a DTMI such as \"dtmi:example:Pump;1\": "
		    "segments of letters, digits and underscores, each starting with a letter, "
		    "then ;version; at most %d characters", MODEL_ID_MAX);
	else
		f->id_ok = 1;
	type = get(o, "@type");
	if (!(cJSON_IsString(type) && strcmp(type->valuestring, "Interface") == 0)) {
		int found = 0;

		if (cJSON_IsArray(type))
			cJSON_ArrayForEach(it, type)
				found |= cJSON_IsString(it) && strcmp(it->valuestring, "Interface") == 0;
		if (!found)
			say(l, f, -1, NULL, "@type must be \"Interface\"");
	}
	check_keys(l, f, -1, NULL, o, C_IFACE, "an Interface");
	parse_display_name(l, f, get(o, "displayName"));
	parse_extends(l, f, get(o, "extends"));
	if ((strict = get(o, "strict")) != NULL && f->ext) {
		if (!cJSON_IsBool(strict))
			say(l, f, -1, NULL, "strict must be true or false");
		f->strict = cJSON_IsTrue(strict);
	}
	parse_manual(l, f, get(o, "manualMode"));
	contents = get(o, "contents");
	if (contents != NULL && !cJSON_IsArray(contents)) {
		say(l, f, -1, NULL, "contents must be an array");
	} else if (contents != NULL && (f->nelems = cJSON_GetArraySize(contents)) > 0) {
		if ((f->elems = calloc((size_t)f->nelems, sizeof(*f->elems))) == NULL) {
			f->nelems = 0;
			say_nomem(l);
		} else {
			i = 0;
			cJSON_ArrayForEach(it, contents) {
				parse_elem(l, f, i, it, &f->elems[i]);
				i++;
			}
			check_own_names(l, f);
		}
	}
	if (l->nerr != n0)
		f->bad = 1;
}

/* Line and column (from 1, in bytes) of `off` in `buf`. */
static void
text_position(const char *buf, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

/* Reads `path` whole, NUL-terminated; NULL after saying why. */
static char *
read_whole(struct load *l, const char *path, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	FILE *fp;

	if ((fp = fopen(path, "rb")) == NULL) {
		say_file(l, path, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fileno(fp), &st) != 0) {
		say_file(l, path, "cannot read: %s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		say_file(l, path, "not a regular file");
		goto fail;
	}
	if (st.st_size > MODEL_FILE_MAX) {
		say_file(l, path, "is %lld bytes; a model file may have at most 1 MiB (%d bytes)",
		    (long long)st.st_size, MODEL_FILE_MAX);
		goto fail;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		say_nomem(l);
		goto fail;
	}
	*len = fread(buf, 1, (size_t)st.st_size, fp);
	if (ferror(fp)) {
		say_file(l, path, "cannot read: %s", strerror(errno));
		goto fail;
	}
	buf[*len] = '\0';
	fclose(fp);
	return buf;
fail:
	free(buf);
	fclose(fp);
	return NULL;
}

static void
load_file(struct load *l, const char *path)
{
	const char *text, *end = NULL;
	cJSON *root = NULL;
	const cJSON *it;
	int line, col, i = 0;
	size_t len, off;
	char *buf;

	if ((buf = read_whole(l, path, &len)) == NULL)
		return;
	text = buf;
	/* Editors on some systems start UTF-8 files with a byte order mark. */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
		text += 3;
		len -= 3;
	}
	if (strspn(text, " \t\r\n") == len) {
		say_file(l, path, "empty file (expected an Interface or an array of them)");
		goto out;
	}
	/*
	 * The position comes from return_parse_end rather than
	 * cJSON_GetErrorPtr(): they are the same, but the latter is a global
	 * that another thread's parse (ingest runs during a reload) may change.
	 */
	root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	off = end != NULL && end >= text && end <= text + len ? (size_t)(end - text) : 0;
	if (root == NULL) {
		text_position(text, off, &line, &col);
		say_at(l, path, line, col, "JSON syntax error");
		goto out;
	}
	off += strspn(text + off, " \t\r\n");
	if (off < len) {
		/* Two objects one after the other would otherwise lose the second. */
		text_position(text, off, &line, &col);
		say_at(l, path, line, col, "JSON syntax error: unexpected text after the end");
		goto out;
	}
	if (cJSON_IsArray(root)) {
		cJSON_ArrayForEach(it, root)
			parse_iface(l, path, i++, it);
	} else if (cJSON_IsObject(root)) {
		parse_iface(l, path, -1, root);
	} else {
		say_file(l, path, "expected an Interface object or an array of them");
	}
out:
	cJSON_Delete(root);
	free(buf);
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the *.json files of l->dir, sorted by name, into l->files. */
static int
list_files(struct load *l)
{
	struct dirent *d;
	size_t dlen = strlen(l->dir);
	int sep = dlen > 0 && l->dir[dlen - 1] != '/';
	DIR *dp;

	if ((dp = opendir(l->dir)) == NULL) {
		say_file(l, l->dir, "cannot open the models folder: %s", strerror(errno));
		return TW_ERR_IO;
	}
	if ((l->files = calloc(MODEL_FILES_MAX, sizeof(*l->files))) == NULL)
		goto nomem;
	for (;;) {
		size_t n;

		errno = 0;	/* readdir says an error only through errno */
		if ((d = readdir(dp)) == NULL)
			break;
		n = strlen(d->d_name);

		/* Hidden names are editors' lock and backup files, not models. */
		if (d->d_name[0] == '.' || n <= 5 || strcmp(d->d_name + n - 5, ".json") != 0)
			continue;
		if (l->nfiles == MODEL_FILES_MAX) {
			say_file(l, l->dir, "more than %d .json files", MODEL_FILES_MAX);
			closedir(dp);
			return TW_ERR_FULL;
		}
		if (asprintf(&l->files[l->nfiles], "%s%s%s", l->dir, sep ? "/" : "",
		    d->d_name) < 0)
			goto nomem;
		l->nfiles++;
	}
	if (errno != 0) {
		say_file(l, l->dir, "cannot read the models folder: %s", strerror(errno));
		closedir(dp);
		return TW_ERR_IO;
	}
	closedir(dp);
	qsort(l->files, (size_t)l->nfiles, sizeof(*l->files), str_cmp);
	return TW_OK;
nomem:
	say_nomem(l);
	closedir(dp);
	return TW_ERR_NOMEM;
}

/* Valid ids first, by id then reading order; the rest in reading order. */
static int
iface_cmp(const void *a, const void *b)
{
	const struct iface *x = a, *y = b;
	int c;

	if (x->id_ok != y->id_ok)
		return y->id_ok - x->id_ok;
	if (x->id_ok && (c = strcmp(x->label, y->label)) != 0)
		return c;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

static int
iface_find(const struct load *l, const char *id)
{
	int lo = 0, hi = l->nids - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2, c = strcmp(l->v[mid].label, id);

		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* Sorts by id, refuses an id defined twice, and finds every Interface named by another. */
static void
resolve_ids(struct load *l)
{
	int i, j, w;

	if (l->n == 0)
		return;
	qsort(l->v, (size_t)l->n, sizeof(*l->v), iface_cmp);
	for (i = 0; i < l->n && l->v[i].id_ok; i++)
		if (i > 0 && l->v[i - 1].id_ok && strcmp(l->v[i].label, l->v[i - 1].label) == 0) {
			say(l, &l->v[i], -1, NULL, "@id is already defined in %s", l->v[i - 1].file);
			l->v[i].bad = 1;
		}
	/* Duplicates move behind the unique ids, so that lookups find the first. */
	for (i = 0; i < l->n && l->v[i].id_ok; i++)
		if (l->v[i].bad && i > 0 && strcmp(l->v[i].label, l->v[i - 1].label) == 0)
			l->v[i].id_ok = 0;
	qsort(l->v, (size_t)l->n, sizeof(*l->v), iface_cmp);
	for (l->nids = 0; l->nids < l->n && l->v[l->nids].id_ok; l->nids++)
		;
	/* Every Interface, even one with other problems, so that all are said at once. */
	for (i = 0; i < l->n; i++) {
		struct iface *f = &l->v[i];

		for (j = 0, w = 0; j < f->nextends; j++) {
			f->base[j] = iface_find(l, f->extends[j]);
			if (f->base[j] < 0) {
				say(l, f, -1, NULL, "extends \"%s\", which is not an Interface of "
				    "the models folder", f->extends[j]);
				w = 1;
			}
		}
		for (j = 0; j < f->nelems; j++) {
			const struct elem *e = &f->elems[j];

			if (e->ref != NULL && iface_find(l, e->ref) < 0) {
				say(l, f, e->index, e->p.name, "%s \"%s\" is not an Interface of the "
				    "models folder", e->cls == EL_COMPONENT ? "schema" : "target", e->ref);
				w = 1;
			}
		}
		if (w)
			f->bad = 1;
	}
}

/*
 * Walks extends depth first, finding cycles (reported once, where the
 * walk closes them) and chains deeper than DTDL allows. Returns the
 * height of v[i] or -1. The recursion is bounded by MODEL_IFACES_MAX.
 */
static int
walk_extends(struct load *l, int i, int *path, int depth)
{
	struct iface *f = &l->v[i];
	int h = 0;

	if (f->mark == 2)
		return f->height;
	if (f->mark == 1) {
		char chain[512];
		size_t off = 0;
		int k = depth - 1;

		while (k > 0 && path[k] != i)
			k--;
		for (int m = k; m < depth && off < sizeof(chain); m++)
			off += (size_t)snprintf(chain + off, sizeof(chain) - off, "%s -> ",
			    l->v[path[m]].label);
		if (off < sizeof(chain))
			snprintf(chain + off, sizeof(chain) - off, "%s", f->label);
		say(l, f, -1, NULL, "extends forms a cycle: %s", chain);
		return -1;
	}
	f->mark = 1;
	path[depth] = i;
	for (int j = 0; j < f->nextends; j++) {
		int hb = f->base[j] < 0 ? -1 : walk_extends(l, f->base[j], path, depth + 1);

		if (hb < 0)
			h = -1;
		else if (h >= 0 && hb + 1 > h)
			h = hb + 1;
	}
	if (h > MODEL_EXTENDS_DEPTH) {
		say(l, f, -1, NULL, "extends is nested %d levels deep; DTDL allows %d", h,
		    MODEL_EXTENDS_DEPTH);
		h = -1;
	}
	f->mark = 2;
	f->height = h;
	if (h < 0)
		f->bad = 1;
	return h;
}

/* Appends to f->anc, which grows by doubling: most Interfaces have few bases. */
static int
anc_add(struct iface *f, int i)
{
	if (f->nanc == f->capanc) {
		int cap = f->capanc == 0 ? 4 : f->capanc * 2;
		int *v = realloc(f->anc, (size_t)cap * sizeof(*v));

		if (v == NULL)
			return TW_ERR_NOMEM;
		f->anc = v;
		f->capanc = cap;
	}
	f->anc[f->nanc++] = i;
	return TW_OK;
}

/*
 * Collects the Interface and everything it extends, once each (a base
 * reached by two paths is one base), and checks that names stay unique
 * across them. Bases are handled first (by height), so a base's problem
 * is said once, at the base, and only silently fails those built on it.
 */
static void
resolve_inherited(struct load *l, int i)
{
	struct iface *f = &l->v[i];
	struct nref *r = NULL;
	int n = 0, total = 0;

	if (anc_add(f, i) != TW_OK)
		goto nomem;
	for (int k = 0; k < f->nanc; k++) {
		const struct iface *a = &l->v[f->anc[k]];

		if (a->bad && k > 0) {
			f->bad = 1;
			return;
		}
		total += a->nelems;
		for (int j = 0; j < a->nextends; j++) {
			int b = a->base[j], seen = 0;

			for (int m = 0; m < f->nanc && !seen; m++)
				seen = f->anc[m] == b;
			if (!seen && anc_add(f, b) != TW_OK)
				goto nomem;
		}
	}
	if (total > 0 && (r = calloc((size_t)total, sizeof(*r))) == NULL)
		goto nomem;
	for (int k = 0; k < f->nanc; k++) {
		const struct iface *a = &l->v[f->anc[k]];

		for (int j = 0; j < a->nelems; j++) {
			/* Names are all there: a base with a bad element is bad. */
			r[n] = (struct nref){ a->elems[j].p.name, f->anc[k], a->elems[j].index, n };
			n++;
			if (a->elems[j].cls == EL_COMPONENT)
				f->has_comp = 1;
		}
	}
	if (n > 1)
		qsort(r, (size_t)n, sizeof(*r), nref_cmp);
	for (int k = 1; k < n; k++) {
		const struct nref *x = &r[k - 1], *y = &r[k];

		if (strcmp(x->name, y->name) != 0 || x->owner == y->owner)
			continue;
		if (x->owner == i)
			say(l, f, x->index, x->name, "name is already inherited from %s",
			    l->v[y->owner].label);
		else
			say(l, f, -1, NULL, "\"%s\" is inherited from both %s and %s", x->name,
			    l->v[x->owner].label, l->v[y->owner].label);
		f->bad = 1;
	}
	free(r);
	return;
nomem:
	say_nomem(l);
	f->bad = 1;
}

/* A Component's Interface must hold no Components, and its names must fit. */
static void
resolve_refs(struct load *l, int i)
{
	struct iface *f = &l->v[i];

	for (int k = 1; k < f->nanc; k++)
		if (l->v[f->anc[k]].bad) {
			f->bad = 1;
			return;
		}
	for (int j = 0; j < f->nelems; j++) {
		const struct elem *e = &f->elems[j];
		const struct iface *t;
		int ti;

		/* resolve_ids found every schema: f would be bad otherwise. */
		if (e->cls != EL_COMPONENT || (ti = iface_find(l, e->ref)) < 0)
			continue;
		t = &l->v[ti];
		if (t->bad) {
			f->bad = 1;	/* said at t */
		} else if (t->has_comp) {
			say(l, f, e->index, e->p.name, "the Interface of a Component (%s) may not "
			    "itself contain Components (DTDL allows one level)", t->label);
			f->bad = 1;
		} else {
			for (int k = 0; k < t->nanc; k++) {
				const struct iface *a = &l->v[t->anc[k]];

				for (int m = 0; m < a->nelems; m++)
					if (strlen(e->p.name) + 1 + strlen(a->elems[m].p.name) >
					    MODEL_PROP_NAME_MAX) {
						say(l, f, e->index, e->p.name, "%s.%s is longer than "
						    "%d characters", e->p.name, a->elems[m].p.name,
						    MODEL_PROP_NAME_MAX);
						f->bad = 1;
					}
			}
		}
	}
}

static void
iface_cleanup(struct iface *f)
{
	free(f->label);
	free(f->display_name);
	for (int i = 0; i < f->nextends; i++)
		free(f->extends[i]);
	free(f->extends);
	free(f->base);
	for (int i = 0; i < f->nelems; i++) {
		free(f->elems[i].p.name);
		free(f->elems[i].p.unit);
		free(f->elems[i].ref);
		cJSON_free(f->elems[i].cmd_envelope);
		cJSON_free(f->elems[i].cmd_effect);
	}
	free(f->manual_src);
	free(f->elems);
	free(f->anc);
}

static void
load_cleanup(struct load *l)
{
	for (int i = 0; i < l->n; i++)
		iface_cleanup(&l->v[i]);
	free(l->v);
	for (int i = 0; i < l->nfiles; i++)
		free(l->files[i]);
	free(l->files);
}

static void
model_cleanup(struct model *m)
{
	for (int i = 0; i < m->nprops; i++) {
		free(m->props[i].name);
		free(m->props[i].unit);
		envelope_free(m->props[i].envelope);
	}
	free(m->props);
	for (int i = 0; i < m->ncommands; i++) {
		free(m->commands[i].name);
		envelope_free(m->commands[i].envelope);
		converge_effect_free(m->commands[i].effect);
	}
	free(m->manual_src);
	expr_free(m->manual);
	free(m->commands);
	for (int i = 0; i < m->nrels; i++) {
		free(m->rels[i].name);
		free(m->rels[i].target);
	}
	free(m->rels);
	free(m->id);
	free(m->file);
	free(m->display_name);
}

static void
set_free(struct model_set *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < s->n; i++)
		model_cleanup(&s->v[i]);
	free(s->v);
	free(s);
}

/* "prefix.name", or a copy of name when prefix is NULL. */
static char *
full_name(const char *prefix, const char *name)
{
	char *s;

	if (prefix == NULL)
		return strdup(name);
	return asprintf(&s, "%s.%s", prefix, name) < 0 ? NULL : s;
}

static int
prop_cmp(const void *a, const void *b)
{
	return strcmp(((const struct model_prop *)a)->name, ((const struct model_prop *)b)->name);
}

static int
rel_cmp(const void *a, const void *b)
{
	return strcmp(((const struct model_rel *)a)->name, ((const struct model_rel *)b)->name);
}

/* The model's own copy of an element's envelope, checked at parse time; NULL when none. */
static int
own_envelope(const struct elem *e, struct envelope **out, const char *prefix)
{
	char msg[256];
	cJSON *o;

	*out = NULL;
	if (e->cmd_envelope == NULL)
		return TW_OK;
	if ((o = cJSON_Parse(e->cmd_envelope)) == NULL)
		return TW_ERR_NOMEM;
	*out = envelope_parse(o, msg, sizeof(msg));
	cJSON_Delete(o);
	/* A Component's interlock names the Component's own properties. */
	if (*out == NULL || (prefix != NULL && envelope_prefix(*out, prefix) != TW_OK))
		return TW_ERR_NOMEM;
	return TW_OK;
}

/* The model's own copies of a Command's envelope and effect, checked at parse time. */
static int
command_envelope(const struct elem *e, struct model_command *mc, const char *prefix)
{
	char msg[256], *full;
	cJSON *o;

	if (own_envelope(e, &mc->envelope, prefix) != TW_OK)
		return TW_ERR_NOMEM;
	if (e->cmd_effect != NULL) {
		if ((o = cJSON_Parse(e->cmd_effect)) == NULL)
			return TW_ERR_NOMEM;
		mc->effect = converge_parse(o, msg, sizeof(msg));
		cJSON_Delete(o);
		if (mc->effect == NULL)
			return TW_ERR_NOMEM;
		if (prefix != NULL) {
			if ((full = full_name(prefix, mc->effect->property)) == NULL)
				return TW_ERR_NOMEM;
			free(mc->effect->property);
			mc->effect->property = full;
		}
	}
	return TW_OK;
}

/*
 * Adds the elements of `f` and its bases to `m`, names prefixed with
 * `prefix` (a Component's name) when not NULL. Relationships of a
 * Component's Interface are not carried up: twind relates twins, not
 * parts of one. With m's arrays NULL only counts.
 */
static int
add_elems(const struct load *l, const struct iface *f, const char *prefix, struct model *m)
{
	for (int k = 0; k < f->nanc; k++) {
		const struct iface *a = &l->v[f->anc[k]];

		for (int j = 0; j < a->nelems; j++) {
			const struct elem *e = &a->elems[j];
			struct model_prop *p;
			struct model_rel *r;

			switch (e->cls) {
			case EL_TELEMETRY:
			case EL_PROPERTY:
				if (m->props == NULL) {
					m->nprops++;
					break;
				}
				p = &m->props[m->nprops];
				*p = e->p;
				p->name = full_name(prefix, e->p.name);
				p->unit = e->p.unit != NULL ? strdup(e->p.unit) : NULL;
				m->nprops++;
				if (p->name == NULL || (e->p.unit != NULL && p->unit == NULL) ||
				    own_envelope(e, &p->envelope, prefix) != TW_OK)
					return TW_ERR_NOMEM;
				break;
			case EL_COMMAND:
				if (m->commands == NULL) {
					m->ncommands++;
					break;
				}
				m->commands[m->ncommands] = (struct model_command){
					.name = full_name(prefix, e->p.name),
					.acknowledged = e->cmd_ack, .timeout_ms = e->cmd_timeout_ms,
				};
				if (m->commands[m->ncommands++].name == NULL ||
				    command_envelope(e, &m->commands[m->ncommands - 1], prefix) != TW_OK)
					return TW_ERR_NOMEM;
				break;
			case EL_RELATIONSHIP:
				if (prefix != NULL)
					break;
				if (m->rels == NULL) {
					m->nrels++;
					break;
				}
				r = &m->rels[m->nrels++];
				r->name = strdup(e->p.name);
				r->target = e->ref != NULL ? strdup(e->ref) : NULL;
				if (r->name == NULL || (e->ref != NULL && r->target == NULL))
					return TW_ERR_NOMEM;
				break;
			case EL_COMPONENT:
				/* resolve_refs checked that the Interface holds no Components. */
				if (add_elems(l, &l->v[iface_find(l, e->ref)], e->p.name, m) != TW_OK)
					return TW_ERR_NOMEM;
				break;
			}
		}
	}
	return TW_OK;
}

static int
command_cmp(const void *a, const void *b)
{
	const struct model_command *x = a, *y = b;

	return strcmp(x->name, y->name);
}

static int
build_model(const struct load *l, const struct iface *f, struct model *m)
{
	int np, nc, nr;

	memset(m, 0, sizeof(*m));
	if ((m->id = strdup(f->label)) == NULL || (m->file = strdup(f->file)) == NULL ||
	    (f->display_name != NULL && (m->display_name = strdup(f->display_name)) == NULL))
		return TW_ERR_NOMEM;
	/* Said on the Interface, or else strict when any base says so. */
	m->strict = f->strict;
	for (int k = 1; k < f->nanc && m->strict < 0; k++)
		if (l->v[f->anc[k]].strict == 1)
			m->strict = 1;
	if (m->strict < 0)
		m->strict = 0;
	/* Said on the Interface, or else by the nearest base that says it. */
	for (int k = 0; k < f->nanc && m->manual_src == NULL; k++)
		if (l->v[f->anc[k]].manual_src != NULL &&
		    ((m->manual_src = strdup(l->v[f->anc[k]].manual_src)) == NULL ||
		    (m->manual = expr_compile(m->manual_src, NULL, 0, NULL)) == NULL))
			return TW_ERR_NOMEM;
	add_elems(l, f, NULL, m);	/* counts only */
	np = m->nprops;
	nc = m->ncommands;
	nr = m->nrels;
	m->nprops = m->ncommands = m->nrels = 0;
	/* +1: calloc(0) may return NULL, which would mean "count only". */
	m->props = calloc((size_t)np + 1, sizeof(*m->props));
	m->commands = calloc((size_t)nc + 1, sizeof(*m->commands));
	m->rels = calloc((size_t)nr + 1, sizeof(*m->rels));
	if (m->props == NULL || m->commands == NULL || m->rels == NULL ||
	    add_elems(l, f, NULL, m) != TW_OK)
		return TW_ERR_NOMEM;
	/* By name: model_prop is on the ingest path and searches by halving. */
	qsort(m->props, (size_t)m->nprops, sizeof(*m->props), prop_cmp);
	qsort(m->commands, (size_t)m->ncommands, sizeof(*m->commands), command_cmp);
	qsort(m->rels, (size_t)m->nrels, sizeof(*m->rels), rel_cmp);
	return TW_OK;
}

static struct model_set *
set_new(int n)
{
	struct model_set *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	atomic_init(&s->refs, 1);
	if (n > 0 && (s->v = calloc((size_t)n, sizeof(*s->v))) == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

/* Each property a condition reads must be the model's: a misspelt name would refuse forever. */
static void
check_reads(struct load *l, const struct model *m, const char *what, const struct expr *x,
    const char *prefix)
{
	const struct expr_refs *r = expr_refs(x);
	char full[2 * PROP_NAME_MAX + 2];

	for (int i = 0; i < r->nprops; i++) {
		snprintf(full, sizeof(full), "%s%s%s", prefix != NULL ? prefix : "",
		    prefix != NULL ? "." : "", r->props[i]);
		if (model_prop(m, full) == NULL)
			say_file(l, m->file, "%s: %s reads '%s', which is not a property of the "
			    "model", m->id, what, full);
	}
}

/* A Command's effect against the model: its property, and a target it could reach. */
static void
check_effect(struct load *l, const struct model *m, const struct model_command *mc)
{
	const struct command_effect *ef = mc->effect;
	const struct model_prop *mp = model_prop(m, ef->property);

	if (mp == NULL)
		say_file(l, m->file, "%s: command %s: effect reads '%s', which is not a property "
		    "of the model", m->id, mc->name, ef->property);
	else if (ef->has_value && ef->value.type != mp->schema)
		say_file(l, m->file, "%s: command %s: effect value is not of %s's schema: it "
		    "could never be reached", m->id, mc->name, ef->property);
	if (ef->has_tolerance && ef->param == NULL && !ef->has_value)
		say_file(l, m->file, "%s: command %s: effect tolerance is for a target (value or "
		    "param); a change has none", m->id, mc->name);
}

/* After the build: the names the conditions read. Returns the problems found. */
static int
check_conditions(struct load *l, const struct model_set *s)
{
	int n0 = l->nerr;
	char what[160];

	for (int i = 0; i < s->n; i++) {
		const struct model *m = &s->v[i];

		if (m->manual != NULL)
			check_reads(l, m, "manualMode", m->manual, NULL);
		for (int k = 0; k < m->ncommands; k++)
			if (m->commands[k].effect != NULL)
				check_effect(l, m, &m->commands[k]);
		for (int k = 0; k < m->nprops; k++)
			if (m->props[k].envelope != NULL && m->props[k].envelope->interlock != NULL) {
				snprintf(what, sizeof(what), "property %s: interlock",
				    m->props[k].name);
				check_reads(l, m, what, m->props[k].envelope->interlock,
				    m->props[k].envelope->prefix);
			}
		for (int k = 0; k < m->ncommands; k++)
			if (m->commands[k].envelope != NULL &&
			    m->commands[k].envelope->interlock != NULL) {
				snprintf(what, sizeof(what), "command %s: interlock",
				    m->commands[k].name);
				check_reads(l, m, what, m->commands[k].envelope->interlock,
				    m->commands[k].envelope->prefix);
			}
	}
	return l->nerr - n0;
}

struct model_set *
model_set_load(const char *dir, FILE *err)
{
	struct load l = { .err = err, .dir = dir };
	struct model_set *s = NULL;
	int *path = NULL, i, h;

	if (dir == NULL || *dir == '\0') {
		if ((s = set_new(0)) == NULL)
			fprintf(err, "models: out of memory\n");
		return s;
	}
	if (list_files(&l) != TW_OK)
		goto fail;
	for (i = 0; i < l.nfiles && !l.nomem; i++)
		load_file(&l, l.files[i]);
	if (l.nomem || l.too_many)
		goto fail;
	resolve_ids(&l);
	if (l.nids > 0 && (path = calloc((size_t)l.nids, sizeof(*path))) == NULL) {
		say_nomem(&l);
		goto fail;
	}
	for (i = 0; i < l.nids; i++)
		walk_extends(&l, i, path, 0);
	/* Bases before the Interfaces built on them: see resolve_inherited. */
	for (h = 0; h <= MODEL_EXTENDS_DEPTH; h++)
		for (i = 0; i < l.nids; i++)
			if (l.v[i].height == h && !l.v[i].bad)
				resolve_inherited(&l, i);
	for (h = 0; h <= MODEL_EXTENDS_DEPTH; h++)
		for (i = 0; i < l.nids; i++)
			if (l.v[i].height == h && !l.v[i].bad)
				resolve_refs(&l, i);
	if (l.nerr > 0 || l.nomem)
		goto fail;
	if ((s = set_new(l.n)) == NULL) {
		say_nomem(&l);
		goto fail;
	}
	for (i = 0; i < l.n; i++) {
		s->n++;
		if (build_model(&l, &l.v[i], &s->v[i]) != TW_OK) {
			say_nomem(&l);
			goto fail;
		}
	}
	if (check_conditions(&l, s) > 0)
		goto fail;
	free(path);
	load_cleanup(&l);
	return s;
fail:
	if (l.nerr > MODEL_ERRORS_MAX)
		fprintf(err, "%s: %d more problems not shown\n", dir, l.nerr - MODEL_ERRORS_MAX);
	set_free(s);
	free(path);
	load_cleanup(&l);
	return NULL;
}

void
model_set_ref(struct model_set *s)
{
	if (s != NULL)
		atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void
model_set_unref(struct model_set *s)
{
	/* acq_rel: the last owner must see every other owner's reads finished. */
	if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		set_free(s);
}

const struct model *
model_find(const struct model_set *s, const char *id)
{
	int lo = 0, hi;

	if (s == NULL || id == NULL)
		return NULL;
	hi = s->n - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2, c = strcmp(s->v[mid].id, id);

		if (c == 0)
			return &s->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

const struct model_prop *
model_prop(const struct model *m, const char *name)
{
	int lo = 0, hi;

	if (m == NULL || name == NULL)
		return NULL;
	hi = m->nprops - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2, c = strcmp(m->props[mid].name, name);

		if (c == 0)
			return &m->props[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

const struct model_command *
model_command(const struct model *m, const char *name)
{
	int lo = 0, hi;

	if (m == NULL || name == NULL)
		return NULL;
	hi = m->ncommands - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2, c = strcmp(m->commands[mid].name, name);

		if (c == 0)
			return &m->commands[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

int
model_has_command(const struct model *m, const char *name)
{
	return model_command(m, name) != NULL;
}

int
model_value_ok(const struct model_prop *mp, const struct tw_val *v)
{
	if (v->type != mp->schema)
		return 0;
	return !mp->integer || v->num == (double)(int64_t)v->num;
}

int
model_out_of_range(const struct model_prop *mp, const struct tw_val *v)
{
	return v->type == VAL_NUM && mp != NULL &&
	    ((mp->has_min && v->num < mp->min) || (mp->has_max && v->num > mp->max));
}

int
model_count(const struct model_set *s)
{
	return s != NULL ? s->n : 0;
}

const struct model *
model_at(const struct model_set *s, int i)
{
	if (s == NULL || i < 0 || i >= s->n)
		return NULL;
	return &s->v[i];
}
