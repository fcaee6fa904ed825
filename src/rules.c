/* The rules file: parsed, checked and compiled as a whole, or refused as a whole. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "names.h"
#include "err.h"
#include "ingest.h"
#include "plant.h"
#include "rules.h"
#include "value.h"

#define RULES_FILE_MAX	(4 * 1024 * 1024)
#define RULES_MAX	10000
#define RULES_ERRORS_MAX	50

static const char *const severities[] = { "info", "warning", "major", "critical", NULL };

static void
rule_cleanup(struct rule *r)
{
	free(r->name);
	free(r->match_model);
	free(r->match_twins);
	free(r->when_src);
	free(r->clear_src);
	expr_free(r->when);
	expr_free(r->clear);
	free(r->severity);
	free(r->message);
	for (int i = 0; i < r->nactions; i++) {
		free(r->actions[i].command);
		free(r->actions[i].json);
	}
	free(r->actions);
	free(r->stats);
	free(r->source);
}

void
rules_ref(struct rule_set *s)
{
	if (s != NULL)
		atomic_fetch_add(&s->refs, 1);
}

void
rules_unref(struct rule_set *s)
{
	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (int i = 0; i < s->n; i++)
		rule_cleanup(&s->v[i]);
	free(s->v);
	free(s);
}

int
rules_match(const struct rule *r, const char *twin, const char *model)
{
	if (r->match_model != NULL && (model == NULL || strcmp(model, r->match_model) != 0))
		return 0;
	return r->match_twins == NULL || fnmatch(r->match_twins, twin, 0) == 0;
}

/* The context of one rule's checks, for messages that name file and rule. */
struct check {
	const char *path;
	const char *name;
	FILE *err;
	int bad;
};

static void
problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
problem(struct check *c, const char *fmt, ...)
{
	va_list ap;

	if (c->bad++ >= RULES_ERRORS_MAX)
		return;
	fprintf(c->err, "%s: rule %s: ", c->path, c->name);
	va_start(ap, fmt);
	vfprintf(c->err, fmt, ap);
	va_end(ap);
	fputc('\n', c->err);
}

static char *
opt_str(struct check *c, const cJSON *o, const char *key, int required)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	char *s;

	if (v == NULL || cJSON_IsNull(v)) {
		if (required)
			problem(c, "\"%s\" is required", key);
		return NULL;
	}
	if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
		problem(c, "\"%s\" must be a non-empty string", key);
		return NULL;
	}
	if ((s = strdup(v->valuestring)) == NULL)
		problem(c, "out of memory");
	return s;
}

static int64_t
opt_duration(struct check *c, const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	int64_t ms = 0;

	if (v == NULL)
		return 0;
	if (!cJSON_IsString(v) || clock_parse_duration(v->valuestring, &ms) != TW_OK) {
		problem(c, "\"%s\" must be a duration such as \"30s\" or \"5m\"", key);
		return 0;
	}
	return ms;
}

/* A rule's lets, in the order written, each already expanded. */
struct lets {
	struct expr_let v[RULE_LETS_MAX];
	char *text[RULE_LETS_MAX];
	int n;
};

/* `src` with the lets written out, into a new string; NULL on a problem (counted). */
static char *
expand(struct check *c, const char *what, const char *src, const struct lets *l)
{
	static const struct lets none;
	char msg[200], *out;
	int col = 0;

	if (l == NULL)
		l = &none;
	if ((out = malloc(EXPR_LEN_MAX + 1)) == NULL) {
		problem(c, "out of memory");
		return NULL;
	}
	if (expr_expand(src, l->v, l->n, out, EXPR_LEN_MAX + 1, msg, sizeof(msg), &col) != 0) {
		problem(c, "%s: column %d: %s", what, col, msg);
		free(out);
		return NULL;
	}
	return out;
}

static struct expr *
compile(struct check *c, const char *what, const char *src, const struct lets *l)
{
	char msg[200], msg2[200], *text;
	struct expr *e;
	int col = 0, col2 = 0;

	if ((text = expand(c, what, src, l)) == NULL)
		return NULL;
	e = expr_compile(text, msg, sizeof(msg), &col);
	free(text);
	if (e != NULL)
		return e;
	/*
	 * Judged written out (the limits count what it reads, not its lets),
	 * reported in its own columns when the mistake is its own.
	 */
	if ((e = expr_compile(src, msg2, sizeof(msg2), &col2)) == NULL)
		problem(c, "%s: column %d: %s", what, col2, msg2);
	else
		problem(c, "%s: column %d (with its lets written out): %s", what, col, msg);
	expr_free(e);
	return NULL;
}

/* Reads "let": {name: expression, ...}; each may use the ones before it. */
static void
rule_lets(struct check *c, const cJSON *o, struct lets *l)
{
	const cJSON *k;
	char what[96];

	if (o == NULL)
		return;
	if (!cJSON_IsObject(o)) {
		problem(c, "\"let\" must be an object {\"name\": \"expression\", ...}");
		return;
	}
	cJSON_ArrayForEach(k, o) {
		struct expr *e;

		snprintf(what, sizeof(what), "let %.64s", k->string);
		if (l->n == RULE_LETS_MAX) {
			problem(c, "more than %d lets", RULE_LETS_MAX);
			return;
		}
		if (!expr_let_name_ok(k->string)) {
			problem(c, "%s: a let's name is letters, digits and _, neither a keyword "
			    "nor a function", what);
			continue;
		}
		for (int i = 0; i < l->n; i++)
			if (strcmp(l->v[i].name, k->string) == 0)
				problem(c, "%s: named twice", what);
		if (!cJSON_IsString(k) || k->valuestring[0] == '\0') {
			problem(c, "%s: must be a non-empty string", what);
			continue;
		}
		if ((e = compile(c, what, k->valuestring, l)) == NULL)
			continue;
		expr_free(e);
		if ((l->text[l->n] = expand(c, what, k->valuestring, l)) == NULL)
			continue;
		l->v[l->n].name = k->string;
		l->v[l->n].src = l->text[l->n];
		l->n++;
	}
}

static void
lets_free(struct lets *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->text[i]);
	l->n = 0;
}

static void
rule_actions(struct check *c, struct rule *r, const cJSON *acts)
{
	const cJSON *a;
	int i = 0;

	if (acts == NULL)
		return;
	if (!cJSON_IsArray(acts)) {
		problem(c, "\"actions\" must be an array");
		return;
	}
	if ((r->actions = calloc((size_t)cJSON_GetArraySize(acts) + 1, sizeof(*r->actions))) == NULL) {
		problem(c, "out of memory");
		return;
	}
	cJSON_ArrayForEach(a, acts) {
		const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(a, "command");
		const cJSON *params = cJSON_GetObjectItemCaseSensitive(a, "params");
		const cJSON *des = cJSON_GetObjectItemCaseSensitive(a, "desired");
		struct rule_action *ra = &r->actions[r->nactions];
		const char *dup = value_json_dup_key(a);

		if (dup != NULL) {
			problem(c, "actions[%d]: \"%.64s\" is given twice", i, dup);
			return;
		}
		if (cJSON_IsString(cmd) && des == NULL &&
		    name_twin_valid(cmd->valuestring, strlen(cmd->valuestring)) &&
		    (params == NULL || cJSON_IsObject(params))) {
			ra->type = ACTION_COMMAND;
			ra->command = strdup(cmd->valuestring);
			ra->json = params != NULL ? cJSON_PrintUnformatted(params) : strdup("{}");
		} else if (cJSON_IsObject(des) && des->child != NULL && cmd == NULL) {
			ra->type = ACTION_DESIRED;
			ra->json = cJSON_PrintUnformatted(des);
		} else {
			problem(c, "actions[%d]: expected {\"command\": name, \"params\": {...}} or "
			    "{\"desired\": {...}}", i);
			return;
		}
		r->nactions++;
		if (ra->json == NULL || (ra->type == ACTION_COMMAND && ra->command == NULL))
			problem(c, "out of memory");
		i++;
	}
}

static void
rule_match(struct check *c, struct rule *r, const cJSON *m)
{
	const cJSON *k;

	if (m == NULL)
		return;
	if (!cJSON_IsObject(m)) {
		problem(c, "\"match\" must be an object {\"model\", \"twins\"}");
		return;
	}
	cJSON_ArrayForEach(k, m)
		if (strcmp(k->string, "model") != 0 && strcmp(k->string, "twins") != 0)
			problem(c, "match: unknown key \"%s\" (model, twins)", k->string);
	r->match_model = opt_str(c, m, "model", 0);
	r->match_twins = opt_str(c, m, "twins", 0);
}

static int
known_key(const char *k)
{
	static const char *const keys[] = { "name", "match", "let", "when", "for", "clear",
	    "severity", "message", "actions", "cooldown", "description", NULL };

	for (int i = 0; keys[i] != NULL; i++)
		if (strcmp(k, keys[i]) == 0)
			return 1;
	return 0;
}

/* Builds rule `r` from `o`; problems are counted in c->bad. */
static void
rule_build(struct check *c, struct rule *r, const cJSON *o, const struct rule_set *prev)
{
	const cJSON *k;
	struct lets lets = { .n = 0 };
	int sev_ok = 0;

	cJSON_ArrayForEach(k, o)
		if (!known_key(k->string))
			problem(c, "unknown key \"%s\"", k->string);
	rule_match(c, r, cJSON_GetObjectItemCaseSensitive(o, "match"));
	rule_lets(c, cJSON_GetObjectItemCaseSensitive(o, "let"), &lets);
	if ((r->when_src = opt_str(c, o, "when", 1)) != NULL)
		r->when = compile(c, "when", r->when_src, &lets);
	if ((r->clear_src = opt_str(c, o, "clear", 0)) != NULL)
		r->clear = compile(c, "clear", r->clear_src, &lets);
	lets_free(&lets);
	r->for_ms = opt_duration(c, o, "for");
	r->cooldown_ms = opt_duration(c, o, "cooldown");
	r->severity = opt_str(c, o, "severity", 0);
	if (r->severity == NULL && (r->severity = strdup("warning")) == NULL)
		problem(c, "out of memory");
	for (int i = 0; severities[i] != NULL && r->severity != NULL; i++)
		sev_ok |= strcmp(r->severity, severities[i]) == 0;
	if (r->severity != NULL && !sev_ok)
		problem(c, "severity \"%s\" is not info, warning, major or critical", r->severity);
	r->message = opt_str(c, o, "message", 0);
	if (r->message == NULL && asprintf(&r->message, "%s", r->name) < 0)
		r->message = NULL;
	rule_actions(c, r, cJSON_GetObjectItemCaseSensitive(o, "actions"));
	r->source = cJSON_PrintUnformatted(o);
	r->stats = calloc(1, sizeof(*r->stats));
	if (r->source == NULL || r->stats == NULL || r->message == NULL) {
		problem(c, "out of memory");
		return;
	}
	for (int i = 0; prev != NULL && i < prev->n; i++) {
		const struct rule_stats *p = prev->v[i].stats;

		if (strcmp(prev->v[i].source, r->source) != 0)
			continue;
		atomic_store(&r->stats->evaluations, atomic_load(&p->evaluations));
		atomic_store(&r->stats->raises, atomic_load(&p->raises));
		atomic_store(&r->stats->clears, atomic_load(&p->clears));
		atomic_store(&r->stats->cost_ns, atomic_load(&p->cost_ns));
		atomic_store(&r->stats->errors, atomic_load(&p->errors));
	}
}

static char *
read_all(const char *path, size_t *len, FILE *err)
{
	char *buf = NULL;
	FILE *f = fopen(path, "rb");
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fprintf(err, "%s: cannot read: %s\n", path, strerror(errno));
		goto out;
	}
	if (n > RULES_FILE_MAX) {
		fprintf(err, "%s: larger than %d bytes\n", path, RULES_FILE_MAX);
		goto out;
	}
	if ((buf = malloc((size_t)n + 1)) == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(err, "%s: cannot read: %s\n", path, strerror(errno));
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = '\0';
	*len = (size_t)n;
out:
	if (f != NULL)
		fclose(f);
	return buf;
}

/* The rules of array `root` into `s`; problems printed with `label` as the file. 0 or -1. */
static int
rules_build(struct rule_set *s, const cJSON *root, const char *label,
    const struct rule_set *prev, FILE *err)
{
	const cJSON *o;
	int bad = 0, i = 0;

	if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) > RULES_MAX) {
		fprintf(err, "%s: expected a JSON array of at most %d rules\n", label, RULES_MAX);
		return -1;
	}
	if ((s->v = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof(*s->v))) == NULL) {
		fprintf(err, "%s: out of memory\n", label);
		return -1;
	}
	cJSON_ArrayForEach(o, root) {
		struct check c = { .path = label, .err = err };
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
		char idx[32];

		snprintf(idx, sizeof(idx), "[%d]", i++);
		c.name = cJSON_IsString(name) ? name->valuestring : idx;
		if (!cJSON_IsObject(o)) {
			problem(&c, "expected an object");
			bad++;
			continue;
		}
		if (!cJSON_IsString(name) || !name_twin_valid(name->valuestring,
		    strlen(name->valuestring))) {
			problem(&c, "\"name\" must be a string of [A-Za-z0-9_.:-], 1 to 128 characters");
		} else {
			/* A rule whose name could not be copied (out of memory) has none. */
			for (int j = 0; j < s->n; j++)
				if (s->v[j].name != NULL &&
				    strcmp(s->v[j].name, name->valuestring) == 0)
					problem(&c, "the name is used twice");
		}
		if ((s->v[s->n].name = strdup(c.name)) == NULL)
			problem(&c, "out of memory");
		rule_build(&c, &s->v[s->n++], o, prev);
		bad += c.bad;
		if (bad >= RULES_ERRORS_MAX)
			break;
	}
	return bad > 0 ? -1 : 0;
}

struct rule_set *
rules_from_json(const cJSON *rules, const char *label, FILE *err)
{
	struct rule_set *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		fprintf(err, "%s: out of memory\n", label);
		return NULL;
	}
	atomic_store(&s->refs, 1);
	if (rules_build(s, rules, label, NULL, err) != 0) {
		rules_unref(s);
		return NULL;
	}
	return s;
}

struct rule_set *
rules_load(const char *path, const struct rule_set *prev, FILE *err)
{
	struct rule_set *s = calloc(1, sizeof(*s));
	const char *end = NULL;
	cJSON *root = NULL;
	int line, col;
	size_t len = 0;
	char *buf;

	if (s == NULL) {
		fprintf(err, "%s: out of memory\n", path != NULL && *path != '\0' ? path : "rules");
		return NULL;
	}
	atomic_store(&s->refs, 1);
	if (path == NULL || *path == '\0')
		return s;
	if ((buf = read_all(path, &len, err)) == NULL)
		goto fail;
	root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
	if (root == NULL) {
		plant_position(buf, (size_t)(end != NULL ? end - buf : 0), &line, &col);
		fprintf(err, "%s:%d:%d: JSON syntax error\n", path, line, col);
		free(buf);
		goto fail;
	}
	free(buf);
	if (rules_build(s, root, path, prev, err) != 0)
		goto fail;
	cJSON_Delete(root);
	return s;
fail:
	cJSON_Delete(root);
	rules_unref(s);
	return NULL;
}
