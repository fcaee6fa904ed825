/*
 * Models, one Interface at a time: its keys, @context, @id, extends and
 * contents read from JSON and checked on their own (names, schemas,
 * twind's extension keys), before anything is resolved across files.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "converge.h"
#include "envelope.h"
#include "err.h"
#include "expr.h"
#include "model_load.h"
#include "value.h"

#define CTX_DTDL	"dtmi:dtdl:context;3"
#define CTX_TWIND	"dtmi:twind:context;1"
/* DTDL v3 semantic types ("Temperature") and their units come from this context. */
#define CTX_QUANT	"dtmi:dtdl:extension:quantitativeTypes;1"

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
			model_say(l, f, index, name, "unknown key \"%s\" on %s (allowed: %s)",
			    it->string,
			    what, allowed);
			continue;
		}
		if (seen[k - keys]) {
			model_say(l, f, index, name, "key \"%s\" appears twice", it->string);
			continue;
		}
		seen[k - keys] = 1;
		if (!(k->where & where))
			model_say(l, f, index, name, "\"%s\" is not allowed on %s", it->string,
			    what);
		else if (k->ext && !f->ext)
			model_say(l, f, index, name, "\"%s\" is a twind extension: add \"" CTX_TWIND
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
		model_say(l, f, -1, NULL, "@context is missing: it must be \"" CTX_DTDL "\" "
		    "or an array that includes it");
		return;
	}
	if (!cJSON_IsString(c) && !cJSON_IsArray(c)) {
		model_say(l, f, -1, NULL, "@context must be a string or an array of strings");
		return;
	}
	/* A string is its own single entry: cJSON_ArrayForEach would see no children. */
	for (it = cJSON_IsString(c) ? c : c->child; it != NULL;
	    it = cJSON_IsString(c) ? NULL : it->next) {
		if (!cJSON_IsString(it)) {
			model_say(l, f, -1, NULL, "@context entries must be strings");
			bad = 1;
		} else if (strcmp(it->valuestring, CTX_DTDL) == 0) {
			dtdl = 1;
		} else if (strcmp(it->valuestring, CTX_TWIND) == 0) {
			f->ext = 1;
		} else if (strcmp(it->valuestring, CTX_QUANT) != 0) {
			model_say(l, f, -1, NULL,
			    "@context \"%.*s\" is not supported (allowed: " CTX_DTDL
			    ", " CTX_TWIND ", " CTX_QUANT ")%s", MODEL_LABEL_MAX, it->valuestring,
			    strncmp(it->valuestring, "dtmi:dtdl:context;", 18) == 0 ?
			    "; twind reads DTDL v3" : "");
			bad = 1;
		}
	}
	if (!dtdl && !bad)
		model_say(l, f, -1, NULL, "@context must include \"" CTX_DTDL "\"");
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
		model_say(l, f, -1, NULL,
		    "displayName must be a string or a language map of strings "
		    "such as {\"en\": \"Pump\"}");
		return TW_ERR_INVAL;
	}
	if ((f->display_name = strdup(s->valuestring)) == NULL) {
		model_say_nomem(l);
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
		model_say(l, f, -1, NULL, "extends must be an Interface @id or an array of them");
		return;
	}
	n = cJSON_IsString(x) ? 1 : cJSON_GetArraySize(x);
	if (n == 0)
		return;
	f->extends = calloc((size_t)n, sizeof(*f->extends));
	f->base = calloc((size_t)n, sizeof(*f->base));
	if (f->extends == NULL || f->base == NULL) {
		model_say_nomem(l);
		return;
	}
	for (it = cJSON_IsString(x) ? x : x->child; it != NULL;
	    it = cJSON_IsString(x) ? NULL : it->next, i++) {
		if (cJSON_IsObject(it)) {
			model_say(l, f, -1, NULL,
			    "extends[%d]: inline Interfaces are not supported; "
			    "define the Interface on its own and name it by @id", i);
		} else if (!cJSON_IsString(it) || !dtmi_valid(it->valuestring)) {
			model_say(l, f, -1, NULL, "extends[%d]: expected an Interface @id "
			    "(dtmi:segment:segment;version)", i);
		} else if ((f->extends[f->nextends] = strdup(it->valuestring)) == NULL) {
			model_say_nomem(l);
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
		model_say(l, f, index, nm, "@type is missing (Telemetry, Property, Command, "
		    "Relationship or Component)");
		return -1;
	}
	if (!cJSON_IsString(type) && !cJSON_IsArray(type)) {
		model_say(l, f, index, nm, "@type must be a string or an array of strings");
		return -1;
	}
	for (it = cJSON_IsString(type) ? type : type->child; it != NULL;
	    it = cJSON_IsString(type) ? NULL : it->next) {
		if (!cJSON_IsString(it)) {
			model_say(l, f, index, nm, "@type entries must be strings");
			return -1;
		}
		for (int c = 0; c < EL__COUNT; c++)
			if (strcmp(it->valuestring, class_names[c]) == 0) {
				if (found++ == 0)
					cls = c;
			}
	}
	if (found == 0) {
		model_say(l, f, index, nm,
		    "@type must include one of Telemetry, Property, Command, "
		    "Relationship, Component (semantic types such as \"Temperature\" may follow)");
		return -1;
	}
	if (found > 1) {
		model_say(l, f, index, nm,
		    "@type names more than one of Telemetry, Property, Command, "
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
		model_say(l, f, e->index, e->p.name, "%s must be a number", key);
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
		model_say(l, f, e->index, e->p.name, "%s must be a duration string above zero "
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
		model_say(l, f, e->index, e->p.name, "%s", msg);
		return;
	}
	if ((*text = cJSON_PrintUnformatted(o)) == NULL)
		model_say_nomem(l);
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
		model_say(l, f, e->index, nm, "schema is missing (a primitive: " PRIMS_TEXT ")");
	} else if (cJSON_IsString(schema)) {
		for (size_t i = 0; i < sizeof(prims) / sizeof(prims[0]); i++)
			if (strcmp(prims[i].name, schema->valuestring) == 0) {
				p->schema = prims[i].schema;
				p->integer = prims[i].integer;
				known = 1;
			}
		if (!known)
			model_say(l, f, e->index, nm,
			    "unsupported schema \"%.*s\" (twind supports the "
			    "primitives " PRIMS_TEXT ")", MODEL_LABEL_MAX, schema->valuestring);
	} else {
		model_say(l, f, e->index, nm,
		    "unsupported schema: complex schemas (Object, Array, Map, "
		    "Enum) are not supported; use a primitive (" PRIMS_TEXT ")");
	}
	if (unit != NULL) {
		if (!cJSON_IsString(unit) || unit->valuestring[0] == '\0')
			model_say(l, f, e->index, nm,
			    "unit must be a string such as \"degreeCelsius\"");
		else if ((p->unit = strdup(unit->valuestring)) == NULL)
			model_say_nomem(l);
	}
	if (w != NULL && e->cls == EL_PROPERTY) {
		if (!cJSON_IsBool(w))
			model_say(l, f, e->index, nm, "writable must be true or false");
		p->writable = cJSON_IsTrue(w);
	}
	if (!f->ext)
		return;	/* check_keys said that extension keys need the context */

	p->has_min = get_number(l, f, e, o, "minimum", &p->min) > 0;
	p->has_max = get_number(l, f, e, o, "maximum", &p->max) > 0;
	if ((p->has_min || p->has_max) && known && p->schema != SCHEMA_NUMBER)
		model_say(l, f, e->index, nm, "minimum and maximum need a numeric schema "
		    "(double, float, integer, long...), not \"%s\"", schema->valuestring);
	if (p->has_min && p->has_max && p->min > p->max)
		model_say(l, f, e->index, nm, "minimum %g is above maximum %g", p->min, p->max);
	get_duration(l, f, e, o, "period", &p->period_ms);
	if (e->cls != EL_PROPERTY)
		return;	/* check_keys refused tolerance and convergenceTimeout here */

	if (get_number(l, f, e, o, "tolerance", &tol) > 0) {
		if (tol < 0)
			model_say(l, f, e->index, nm, "tolerance must be zero or more");
		else if (!p->writable)
			model_say(l, f, e->index, nm, "tolerance is only for writable Properties "
			    "(add \"writable\": true)");
		else if (known && p->schema != SCHEMA_NUMBER)
			model_say(l, f, e->index, nm,
			    "tolerance needs a numeric schema, not \"%s\"",
			    schema->valuestring);
		p->tolerance = tol;
	}
	if (get_duration(l, f, e, o, "convergenceTimeout", &p->converge_ms) > 0 && !p->writable)
		model_say(l, f, e->index, nm, "convergenceTimeout is only for writable Properties "
		    "(add \"writable\": true)");
	if (get(o, "envelope") != NULL && !p->writable)
		model_say(l, f, e->index, nm, "envelope is only for writable Properties "
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
			model_say(l, f, e->index, e->p.name, "%s is missing (an Interface @id)",
			    key);
		return;
	}
	if (cJSON_IsObject(v)) {
		model_say(l, f, e->index, e->p.name, "unsupported %s: inline Interfaces are not "
		    "supported; define the Interface on its own and name it by @id", key);
		return;
	}
	if (!cJSON_IsString(v) || !dtmi_valid(v->valuestring)) {
		model_say(l, f, e->index, e->p.name, "%s must be an Interface @id "
		    "(dtmi:segment:segment;version)", key);
		return;
	}
	if ((e->ref = strdup(v->valuestring)) == NULL)
		model_say_nomem(l);
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
		model_say(l, f, -1, NULL,
		    "manualMode must be a rule condition as a string, such as "
		    "mode == \"local\"");
		return;
	}
	if ((x = expr_compile(o->valuestring, msg, sizeof(msg), &col)) == NULL) {
		model_say(l, f, -1, NULL, "manualMode: column %d: %s", col, msg);
		return;
	}
	if (expr_refs(x)->nwindows > 0)
		model_say(l, f, -1, NULL, "manualMode: window functions are not allowed: it judges "
		    "the twin's current values");
	expr_free(x);
	if ((f->manual_src = strdup(o->valuestring)) == NULL)
		model_say_nomem(l);
}

/* The extension of a Command: whether the asset answers it, and how long that may take. */
static void
parse_command(struct load *l, struct iface *f, struct elem *e, const cJSON *o)
{
	const cJSON *ack = get(o, "acknowledged");

	e->cmd_ack = -1;
	if (ack != NULL && !cJSON_IsBool(ack))
		model_say(l, f, e->index, e->p.name, "acknowledged must be true or false");
	else if (ack != NULL)
		e->cmd_ack = cJSON_IsTrue(ack);
	if (get_duration(l, f, e, o, "timeout", &e->cmd_timeout_ms) > 0 && e->cmd_ack == 0)
		model_say(l, f, e->index, e->p.name,
		    "timeout is for a command the asset acknowledges");
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
		model_say(l, f, index, NULL, "expected an object with @type and name");
		return;
	}
	name = get(o, "name");
	if (name == NULL)
		model_say(l, f, index, NULL, "name is missing");
	else if (!cJSON_IsString(name) || !name_valid(name->valuestring))
		model_say(l, f, index, cJSON_IsString(name) ? name->valuestring : NULL,
		    "name must be 1 to 64 letters, digits and underscores, starting with a "
		    "letter and not ending with an underscore");
	else
		nm = name->valuestring;
	if ((e->cls = elem_class(l, f, index, nm, get(o, "@type"))) < 0)
		return;
	snprintf(what, sizeof(what), "a %s", class_names[e->cls]);
	check_keys(l, f, index, nm, o, 1u << e->cls, what);
	if (nm != NULL && (e->p.name = strdup(nm)) == NULL) {
		model_say_nomem(l);
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

int
model_nref_cmp(const void *a, const void *b)
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
		model_say_nomem(l);
		return;
	}
	for (int i = 0; i < f->nelems; i++)
		if (f->elems[i].p.name != NULL)
			r[n++] = (struct nref){ f->elems[i].p.name, 0, f->elems[i].index, i };
	qsort(r, (size_t)n, sizeof(*r), model_nref_cmp);
	for (int i = 1; i < n; i++)
		if (strcmp(r[i].name, r[i - 1].name) == 0)
			model_say(l, f, r[i].index, r[i].name,
			    "name is already used by contents[%d]",
			    r[i - 1].index);
	free(r);
}

void
model_parse_iface(struct load *l, const char *path, int pos, const cJSON *o)
{
	const cJSON *id, *type, *contents, *strict, *it;
	struct iface *f;
	int n0 = l->nerr, i;

	if (l->n == MODEL_IFACES_MAX) {
		if (!l->too_many)
			model_say_file(l, path, "more than %d Interfaces in the models folder",
			    MODEL_IFACES_MAX);
		l->too_many = 1;
		return;
	}
	if (l->n == l->cap) {
		int cap = l->cap == 0 ? 16 : l->cap * 2;
		struct iface *v = realloc(l->v, (size_t)cap * sizeof(*v));

		if (v == NULL) {
			model_say_nomem(l);
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
		model_say_nomem(l);
		f->bad = 1;
		return;
	}
	if (!cJSON_IsObject(o)) {
		model_say(l, f, -1, NULL, "expected an Interface object");
		f->bad = 1;
		return;
	}
	/* First, so that the key check knows whether the extension is on. */
	parse_context(l, f, get(o, "@context"));
	if (id == NULL)
		model_say(l, f, -1, NULL, "@id is missing");
	else if (!cJSON_IsString(id) || !dtmi_valid(id->valuestring))
		model_say(l, f, -1, NULL, "@id must be a DTMI such as \"dtmi:example:Pump;1\": "
		    "segments of letters, digits and underscores, each starting with a letter, "
		    "then ;version; at most %d characters", MODEL_ID_MAX);
	else
		f->id_ok = 1;
	type = get(o, "@type");
	if (!(cJSON_IsString(type) && strcmp(type->valuestring, "Interface") == 0)) {
		int found = 0;

		if (cJSON_IsArray(type))
			cJSON_ArrayForEach(it, type)
				found |= cJSON_IsString(it) && strcmp(it->valuestring,
				    "Interface") == 0;
		if (!found)
			model_say(l, f, -1, NULL, "@type must be \"Interface\"");
	}
	check_keys(l, f, -1, NULL, o, C_IFACE, "an Interface");
	parse_display_name(l, f, get(o, "displayName"));
	parse_extends(l, f, get(o, "extends"));
	if ((strict = get(o, "strict")) != NULL && f->ext) {
		if (!cJSON_IsBool(strict))
			model_say(l, f, -1, NULL, "strict must be true or false");
		f->strict = cJSON_IsTrue(strict);
	}
	parse_manual(l, f, get(o, "manualMode"));
	contents = get(o, "contents");
	if (contents != NULL && !cJSON_IsArray(contents)) {
		model_say(l, f, -1, NULL, "contents must be an array");
	} else if (contents != NULL && (f->nelems = cJSON_GetArraySize(contents)) > 0) {
		if ((f->elems = calloc((size_t)f->nelems, sizeof(*f->elems))) == NULL) {
			f->nelems = 0;
			model_say_nomem(l);
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
