/*
 * Models: DTDL v3 Interfaces (a subset) and twind's extension, read from
 * a folder, checked and resolved as one set (model_parse.c reads each
 * Interface, model_resolve.c resolves and builds), and looked up.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "converge.h"
#include "envelope.h"
#include "err.h"
#include "expr.h"
#include "model_load.h"
#include "value.h"

/* A problem with a whole file or the folder. */
void
model_say_file(struct load *l, const char *path, const char *fmt, ...)
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
void
model_say(struct load *l, const struct iface *f, int index, const char *name, const char *fmt, ...)
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

void
model_say_nomem(struct load *l)
{
	if (!l->nomem)
		model_say_file(l, l->dir, "out of memory");
	l->nomem = 1;
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
		model_say_file(l, path, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fileno(fp), &st) != 0) {
		model_say_file(l, path, "cannot read: %s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		model_say_file(l, path, "not a regular file");
		goto fail;
	}
	if (st.st_size > MODEL_FILE_MAX) {
		model_say_file(l, path,
		    "is %lld bytes; a model file may have at most 1 MiB (%d bytes)",
		    (long long)st.st_size, MODEL_FILE_MAX);
		goto fail;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		model_say_nomem(l);
		goto fail;
	}
	*len = fread(buf, 1, (size_t)st.st_size, fp);
	if (ferror(fp)) {
		model_say_file(l, path, "cannot read: %s", strerror(errno));
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
		model_say_file(l, path, "empty file (expected an Interface or an array of them)");
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
			model_parse_iface(l, path, i++, it);
	} else if (cJSON_IsObject(root)) {
		model_parse_iface(l, path, -1, root);
	} else {
		model_say_file(l, path, "expected an Interface object or an array of them");
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
		model_say_file(l, l->dir, "cannot open the models folder: %s", strerror(errno));
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
			model_say_file(l, l->dir, "more than %d .json files", MODEL_FILES_MAX);
			closedir(dp);
			return TW_ERR_FULL;
		}
		if (asprintf(&l->files[l->nfiles], "%s%s%s", l->dir, sep ? "/" : "",
		    d->d_name) < 0)
			goto nomem;
		l->nfiles++;
	}
	if (errno != 0) {
		model_say_file(l, l->dir, "cannot read the models folder: %s", strerror(errno));
		closedir(dp);
		return TW_ERR_IO;
	}
	closedir(dp);
	qsort(l->files, (size_t)l->nfiles, sizeof(*l->files), str_cmp);
	return TW_OK;
nomem:
	model_say_nomem(l);
	closedir(dp);
	return TW_ERR_NOMEM;
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

struct model_set *
model_set_load(const char *dir, FILE *err)
{
	struct load l = { .err = err, .dir = dir };
	struct model_set *s = NULL;
	int i;

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
	model_resolve(&l);
	if (l.nerr > 0 || l.nomem)
		goto fail;
	if ((s = set_new(l.n)) == NULL) {
		model_say_nomem(&l);
		goto fail;
	}
	for (i = 0; i < l.n; i++) {
		s->n++;
		if (model_build(&l, &l.v[i], &s->v[i]) != TW_OK) {
			model_say_nomem(&l);
			goto fail;
		}
	}
	if (model_check_conditions(&l, s) > 0)
		goto fail;
	load_cleanup(&l);
	return s;
fail:
	if (l.nerr > MODEL_ERRORS_MAX)
		fprintf(err, "%s: %d more problems not shown\n", dir, l.nerr - MODEL_ERRORS_MAX);
	set_free(s);
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
