/* Alerts and commands in their outside shape: REST, MQTT and events show the same object. */
#ifndef TW_ALERT_H
#define TW_ALERT_H

#include <cjson/cJSON.h>

#include "store.h"

/* The alert object of INTERFACE.md; NULL on allocation failure. The caller owns it. */
cJSON *alert_json(const struct store_alert_row *a);

/* The command object (REST shape; params parsed back into JSON). */
cJSON *alert_command_json(const struct store_command_row *c);

/*
 * The payload published on plant/{twin}/cmd:
 * {"id","twin","command","params","rule","source_ts","issued_ts","expires_ts"}; rule
 * is left out for an operator's command.
 */
cJSON *alert_command_wire(const struct store_command_row *c);

/*
 * Writes a new command id into buf (>= 24 bytes): "c-" and 16 hex digits,
 * the wall clock's milliseconds in the first 11 and 20 random bits after
 * them, and always above *last (the issuer's previous id, updated). In
 * time order, so a new row goes to the right edge of the commands table
 * rather than to a random page of it; random below the millisecond, so
 * ids stay unique across a lost database or two gateways.
 */
void alert_command_id(char *buf, size_t len, uint64_t *last);

#endif
