/* A property value: a number, a boolean or a string. */
#ifndef TW_VALUE_H
#define TW_VALUE_H

#include <cjson/cJSON.h>

#include "ingest.h"

struct tw_val {
	int type;		/* enum val_type; 0 means no value */
	double num;		/* VAL_NUM, and VAL_BOOL as 0 or 1 */
	const char *str;	/* VAL_STR; its owner is said where the value lives */
};

/* 1 if both hold the same type and value. */
int value_equal(const struct tw_val *a, const struct tw_val *b);

/* A new cJSON node for the value (NULL on allocation failure); the caller owns it. */
cJSON *value_to_json(const struct tw_val *v);

/*
 * The first key that an object in `o` (at any depth) gives twice, or NULL.
 * cJSON keeps both and its lookups find the first, while most other JSON
 * readers (a PLC bridge's) keep the last: a check of one would not be a
 * check of what the other executes. Keys compare unescaped.
 */
const char *value_json_dup_key(const cJSON *o);

#endif
