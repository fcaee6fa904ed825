/* Comparison and JSON form of property values. */
#include <stdlib.h>
#include <string.h>

#include "value.h"

int
value_equal(const struct tw_val *a, const struct tw_val *b)
{
	if (a->type != b->type)
		return 0;
	if (a->type == VAL_STR)
		return strcmp(a->str, b->str) == 0;
	return a->num == b->num;
}

cJSON *
value_to_json(const struct tw_val *v)
{
	switch (v->type) {
	case VAL_NUM:
		return cJSON_CreateNumber(v->num);
	case VAL_BOOL:
		return cJSON_CreateBool(v->num != 0);
	case VAL_STR:
		return cJSON_CreateString(v->str);
	}
	return cJSON_CreateNull();
}

static int
key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *
value_json_dup_key(const cJSON *o)
{
	const char *small[16], **keys = small, *dup = NULL;
	const cJSON *a;
	int n = 0;

	if (o == NULL)
		return NULL;
	for (a = o->child; a != NULL && dup == NULL; a = a->next)
		if (cJSON_IsObject(a) || cJSON_IsArray(a))
			dup = value_json_dup_key(a);
	if (dup != NULL || !cJSON_IsObject(o))
		return dup;
	/* Sorted, so that a body of many keys costs n log n, not n squared. */
	for (a = o->child; a != NULL; a = a->next)
		n++;
	if (n > (int)(sizeof(small) / sizeof(small[0])) &&
	    (keys = malloc((size_t)n * sizeof(*keys))) == NULL)
		return "(out of memory)";
	n = 0;
	for (a = o->child; a != NULL; a = a->next)
		keys[n++] = a->string;
	qsort(keys, (size_t)n, sizeof(*keys), key_cmp);
	for (int i = 1; i < n && dup == NULL; i++)
		if (strcmp(keys[i - 1], keys[i]) == 0)
			dup = keys[i];
	if (keys != small)
		free(keys);
	return dup;
}
