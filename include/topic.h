/* MQTT topic templates: "plant/{twin}/cmd" and the like, filled in for one twin. */
#ifndef TW_TOPIC_H
#define TW_TOPIC_H

#include <stddef.h>

#define TOPIC_MAX	512

/* Writes `tmpl` with {twin} replaced into buf; returns 0, TW_ERR_INVAL (no {twin}) or TW_ERR_FULL. */
int topic_format(const char *tmpl, const char *twin, char *buf, size_t len);

#endif
