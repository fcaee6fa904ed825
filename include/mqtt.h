/*
 * The MQTT thread: libmosquitto with our own loop, so that the broker's
 * acknowledgements are written only after the sync engine committed what
 * they acknowledge (a group commit).
 */
#ifndef TW_MQTT_H
#define TW_MQTT_H

#include "conf.h"
#include "ring.h"
#include "sync.h"

struct mqtt;

/* Borrows all three for its lifetime. NULL (logged) on failure. */
struct mqtt *mqtt_new(const struct conf *c, struct ring *r, struct sync *s);
/* Starts the thread, which connects and reconnects by itself. 0 or TW_ERR_IO. */
int mqtt_start(struct mqtt *m);
/*
 * Stops reading, waits for the commit of what was read, writes the last
 * acknowledgements, disconnects and joins the thread.
 */
void mqtt_stop(struct mqtt *m);
void mqtt_free(struct mqtt *m);

/* 1 while connected to the broker (CONNACK accepted). */
int mqtt_connected(struct mqtt *m);

#endif
