/* The twins file: ids, models and parents, checked as a whole before use. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"
#include "names.h"
#include "ingest.h"
#include "plant.h"

#define PLANT_FILE_MAX	(16 * 1024 * 1024)
#define PLANT_ERRORS_MAX	50

void
plant_position(const char *buf, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && buf[i] != '\0'; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

/* Reads a whole file into a NUL-terminated buffer; NULL with errno set. */
static char *
read_file(const char *path, size_t max, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	FILE *f;

	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	if (fstat(fileno(f), &st) != 0)
		goto fail;
	if ((size_t)st.st_size > max) {
		errno = EFBIG;
		goto fail;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
		goto fail;
	*len = fread(buf, 1, (size_t)st.st_size, f);
	if (ferror(f))
		goto fail;
	buf[*len] = '\0';
	fclose(f);
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

static int
find(const struct plant *p, const char *id)
{
	/* An entry whose id could not be copied (out of memory) has none. */
	for (int i = 0; i < p->n; i++)
		if (p->v[i].id != NULL && strcmp(p->v[i].id, id) == 0)
			return i;
	return -1;
}

static char *
dup_or_null(const cJSON *s)
{
	return cJSON_IsString(s) && s->valuestring[0] != '\0' ? strdup(s->valuestring) : NULL;
}

/* Checks one entry and appends it; returns the number of problems found. */
static int
plant_add(struct plant *p, const char *path, int i, const cJSON *e,
    const struct model_set *models, FILE *err)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(e, "model");
	const cJSON *parent = cJSON_GetObjectItemCaseSensitive(e, "parent");
	struct plant_entry *pe;
	const cJSON *k;

	if (!cJSON_IsObject(e)) {
		fprintf(err, "%s: [%d]: expected an object {\"id\",\"model\",\"parent\"}\n", path, i);
		return 1;
	}
	if (!cJSON_IsString(id) || !name_twin_valid(id->valuestring, strlen(id->valuestring))) {
		fprintf(err, "%s: [%d]: \"id\" must be a string of [A-Za-z0-9_.:-], 1 to 128 "
		    "characters\n", path, i);
		return 1;
	}
	cJSON_ArrayForEach(k, e) {
		if (strcmp(k->string, "id") != 0 && strcmp(k->string, "model") != 0 &&
		    strcmp(k->string, "parent") != 0) {
			fprintf(err, "%s: [%d] %s: unknown key \"%s\" (id, model, parent)\n", path, i,
			    id->valuestring, k->string);
			return 1;
		}
	}
	if (find(p, id->valuestring) >= 0) {
		fprintf(err, "%s: [%d] %s: listed twice\n", path, i, id->valuestring);
		return 1;
	}
	if (model != NULL && !cJSON_IsNull(model) && (!cJSON_IsString(model) ||
	    (strcmp(model->valuestring, MODEL_ANY_ID) != 0 &&
	    model_find(models, model->valuestring) == NULL))) {
		fprintf(err, "%s: [%d] %s: no model \"%s\" in the models folder\n", path, i,
		    id->valuestring, cJSON_IsString(model) ? model->valuestring : "?");
		return 1;
	}
	if (parent != NULL && !cJSON_IsNull(parent) && (!cJSON_IsString(parent) ||
	    !name_twin_valid(parent->valuestring, strlen(parent->valuestring)))) {
		fprintf(err, "%s: [%d] %s: \"parent\" must be a twin id\n", path, i, id->valuestring);
		return 1;
	}
	pe = &p->v[p->n];
	memset(pe, 0, sizeof(*pe));
	pe->id = strdup(id->valuestring);
	pe->model = model != NULL && cJSON_IsString(model) &&
	    strcmp(model->valuestring, MODEL_ANY_ID) != 0 ? dup_or_null(model) : NULL;
	pe->parent = dup_or_null(parent);
	p->n++;
	if (pe->id == NULL || (cJSON_IsString(model) && pe->model == NULL &&
	    strcmp(model->valuestring, MODEL_ANY_ID) != 0) ||
	    (cJSON_IsString(parent) && pe->parent == NULL)) {
		fprintf(err, "%s: out of memory\n", path);
		return 1;
	}
	return 0;
}

/* Every parent must be listed, and following parents must end at a root. */
static int
plant_check_parents(const struct plant *p, const char *path, FILE *err)
{
	int bad = 0;

	for (int i = 0; i < p->n && bad < PLANT_ERRORS_MAX; i++) {
		int cur = i, steps = 0;

		if (p->v[i].parent == NULL)
			continue;
		if (find(p, p->v[i].parent) < 0) {
			fprintf(err, "%s: %s: parent \"%s\" is not a twin of this file\n", path,
			    p->v[i].id, p->v[i].parent);
			bad++;
			continue;
		}
		while (p->v[cur].parent != NULL && (cur = find(p, p->v[cur].parent)) >= 0)
			if (++steps > p->n) {
				fprintf(err, "%s: %s: its parents form a cycle\n", path, p->v[i].id);
				bad++;
				break;
			}
	}
	return bad;
}

int
plant_load(struct plant *p, const char *path, const struct model_set *models, FILE *err)
{
	const char *end = NULL;
	cJSON *root = NULL, *e;
	int bad = 0, i = 0, line, col;
	size_t len;
	char *buf;

	memset(p, 0, sizeof(*p));
	if (path == NULL || *path == '\0')
		return TW_OK;
	if ((buf = read_file(path, PLANT_FILE_MAX, &len)) == NULL) {
		fprintf(err, "%s: cannot read: %s\n", path, strerror(errno));
		return TW_ERR_IO;
	}
	root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
	if (root == NULL) {
		/* return_parse_end, not cJSON_GetErrorPtr(): that is a global other threads write. */
		plant_position(buf, (size_t)(end != NULL ? end - buf : 0), &line, &col);
		fprintf(err, "%s:%d:%d: JSON syntax error\n", path, line, col);
		free(buf);
		return TW_ERR_INVAL;
	}
	free(buf);
	if (!cJSON_IsArray(root)) {
		fprintf(err, "%s: expected a JSON array of twins\n", path);
		cJSON_Delete(root);
		return TW_ERR_INVAL;
	}
	if ((p->v = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof(*p->v))) == NULL) {
		fprintf(err, "%s: out of memory\n", path);
		cJSON_Delete(root);
		return TW_ERR_NOMEM;
	}
	cJSON_ArrayForEach(e, root) {
		if (bad >= PLANT_ERRORS_MAX)
			break;
		bad += plant_add(p, path, i++, e, models, err);
	}
	cJSON_Delete(root);
	if (bad == 0)
		bad = plant_check_parents(p, path, err);
	return bad == 0 ? TW_OK : TW_ERR_INVAL;
}

void
plant_cleanup(struct plant *p)
{
	for (int i = 0; i < p->n; i++) {
		free(p->v[i].id);
		free(p->v[i].model);
		free(p->v[i].parent);
	}
	free(p->v);
	memset(p, 0, sizeof(*p));
}
