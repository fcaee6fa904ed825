/*
 * Models across files: ids sorted and found, extends walked (cycles,
 * depth), names kept unique through inheritance, Components checked, and
 * each good Interface flattened into a struct model with its extension
 * parts (envelopes, effects, manualMode) built; last, every property a
 * condition reads is checked against the built model.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converge.h"
#include "envelope.h"
#include "err.h"
#include "expr.h"
#include "model_load.h"
#include "value.h"

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

int
model_iface_find(const struct load *l, const char *id)
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
			model_say(l, &l->v[i], -1, NULL, "@id is already defined in %s",
			    l->v[i - 1].file);
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
			f->base[j] = model_iface_find(l, f->extends[j]);
			if (f->base[j] < 0) {
				model_say(l, f, -1, NULL,
				    "extends \"%s\", which is not an Interface of "
				    "the models folder", f->extends[j]);
				w = 1;
			}
		}
		for (j = 0; j < f->nelems; j++) {
			const struct elem *e = &f->elems[j];

			if (e->ref != NULL && model_iface_find(l, e->ref) < 0) {
				model_say(l, f, e->index, e->p.name,
				    "%s \"%s\" is not an Interface of the "
				    "models folder", e->cls == EL_COMPONENT ? "schema" : "target",
				    e->ref);
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
		model_say(l, f, -1, NULL, "extends forms a cycle: %s", chain);
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
		model_say(l, f, -1, NULL, "extends is nested %d levels deep; DTDL allows %d", h,
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
		qsort(r, (size_t)n, sizeof(*r), model_nref_cmp);
	for (int k = 1; k < n; k++) {
		const struct nref *x = &r[k - 1], *y = &r[k];

		if (strcmp(x->name, y->name) != 0 || x->owner == y->owner)
			continue;
		if (x->owner == i)
			model_say(l, f, x->index, x->name, "name is already inherited from %s",
			    l->v[y->owner].label);
		else
			model_say(l, f, -1, NULL, "\"%s\" is inherited from both %s and %s",
			    x->name,
			    l->v[x->owner].label, l->v[y->owner].label);
		f->bad = 1;
	}
	free(r);
	return;
nomem:
	model_say_nomem(l);
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
		if (e->cls != EL_COMPONENT || (ti = model_iface_find(l, e->ref)) < 0)
			continue;
		t = &l->v[ti];
		if (t->bad) {
			f->bad = 1;	/* said at t */
		} else if (t->has_comp) {
			model_say(l, f, e->index, e->p.name,
			    "the Interface of a Component (%s) may not "
			    "itself contain Components (DTDL allows one level)", t->label);
			f->bad = 1;
		} else {
			for (int k = 0; k < t->nanc; k++) {
				const struct iface *a = &l->v[t->anc[k]];

				for (int m = 0; m < a->nelems; m++)
					if (strlen(e->p.name) + 1 + strlen(a->elems[m].p.name) >
					    MODEL_PROP_NAME_MAX) {
						model_say(l, f, e->index, e->p.name,
						    "%s.%s is longer than "
						    "%d characters", e->p.name, a->elems[m].p.name,
						    MODEL_PROP_NAME_MAX);
						f->bad = 1;
					}
			}
		}
	}
}

/*
 * Resolves the whole set: ids, then extends, then inheritance and
 * Components, each step said for every Interface at once. Problems are
 * counted in l->nerr; out of memory sets l->nomem.
 */
void
model_resolve(struct load *l)
{
	int *path = NULL, i, h;

	resolve_ids(l);
	if (l->nids > 0 && (path = calloc((size_t)l->nids, sizeof(*path))) == NULL) {
		model_say_nomem(l);
		return;
	}
	for (i = 0; i < l->nids; i++)
		walk_extends(l, i, path, 0);
	free(path);
	/* Bases before the Interfaces built on them: see resolve_inherited. */
	for (h = 0; h <= MODEL_EXTENDS_DEPTH; h++)
		for (i = 0; i < l->nids; i++)
			if (l->v[i].height == h && !l->v[i].bad)
				resolve_inherited(l, i);
	for (h = 0; h <= MODEL_EXTENDS_DEPTH; h++)
		for (i = 0; i < l->nids; i++)
			if (l->v[i].height == h && !l->v[i].bad)
				resolve_refs(l, i);
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
				    command_envelope(e, &m->commands[m->ncommands - 1],
				    prefix) != TW_OK)
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
				if (add_elems(l, &l->v[model_iface_find(l, e->ref)], e->p.name,
				    m) != TW_OK)
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

int
model_build(const struct load *l, const struct iface *f, struct model *m)
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
			model_say_file(l, m->file,
			    "%s: %s reads '%s', which is not a property of the "
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
		model_say_file(l, m->file,
		    "%s: command %s: effect reads '%s', which is not a property "
		    "of the model", m->id, mc->name, ef->property);
	else if (ef->has_value && ef->value.type != mp->schema)
		model_say_file(l, m->file, "%s: command %s: effect value is not of %s's schema: it "
		    "could never be reached", m->id, mc->name, ef->property);
	if (ef->has_tolerance && ef->param == NULL && !ef->has_value)
		model_say_file(l, m->file,
		    "%s: command %s: effect tolerance is for a target (value or "
		    "param); a change has none", m->id, mc->name);
}

/* After the build: the names the conditions read. Returns the problems found. */
int
model_check_conditions(struct load *l, const struct model_set *s)
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
