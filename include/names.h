/*
 * Names from outside: twin ids and property names, checked in one place
 * for MQTT (ingest) and REST alike.
 */
#ifndef TW_NAMES_H
#define TW_NAMES_H

#include <stddef.h>

#define TWIN_ID_MAX	128
#define PROP_NAME_MAX	128

/* 1 if `s` (`len` bytes) is a twin id: [A-Za-z0-9_.:-]{1,128}, but not "." or "..". */
int name_twin_valid(const char *s, size_t len);
/* 1 if `s` (`len` bytes) is a property name: the same characters, 1 to 128, no dot at either end. */
int name_prop_valid(const char *s, size_t len);

#endif
