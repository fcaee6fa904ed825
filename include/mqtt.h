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
/* 0 when the broker refused our subscription or granted less than QoS 1. */
int mqtt_subscribed(struct mqtt *m);

/*
 * Publishes at QoS 1 from any thread. libmosquitto keeps the message
 * (also across reconnects) until the broker acknowledges it; the
 * acknowledgement reaches the sync engine as a REC_PUBACK record with
 * this *mid. Returns 0, or TW_ERR_IO / TW_ERR_NOMEM.
 */
int mqtt_publish(struct mqtt *m, const char *topic, const void *payload, int len,
    int retain, int *mid);

/* Writes `tmpl` with {twin} replaced into buf; returns 0 or TW_ERR_FULL. */
int mqtt_topic(const char *tmpl, const char *twin, char *buf, size_t len);

#endif
