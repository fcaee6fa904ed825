/* Comparison and JSON form of property values. */
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
