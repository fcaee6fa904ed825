/*
 * The MQTT thread: libmosquitto with our own loop, so that the broker's
 * acknowledgements are written only after the engine committed what
 * they acknowledge (a group commit).
 */
#ifndef TW_MQTT_H
#define TW_MQTT_H

#include <stdint.h>

#include "conf.h"
#include "progress.h"
#include "ring.h"

struct mqtt;

/*
 * Borrows all three for its lifetime: it pushes records into the ring and
 * acknowledges the broker as far as `p` says they are committed. It knows
 * nothing of the engine. NULL (logged) on failure.
 */
struct mqtt *mqtt_new(const struct conf *c, struct ring *r, struct progress *p);
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
/* The generation of the live connection (as REC_CONNECTED records carry it), or 0. */
uint32_t mqtt_link(struct mqtt *m);
/* 0 when the broker refused our subscription or granted less than QoS 1. */
int mqtt_subscribed(struct mqtt *m);

/* NULL while connected and subscribed at QoS 1, else why not. */
const char *mqtt_trouble(struct mqtt *m);

/*
 * Publishes at QoS 1 from any thread, only on connection `link` (see
 * mqtt_link), refused on any other. The broker's
 * acknowledgement comes back through the ring as a REC_PUBACK record with
 * this *mid. A connection that ends before it forgets the message (the
 * client restarts empty; REC_CONNECTED tells the engine to send again
 * what is still valid). `expiry_s` > 0 sets the MQTT v5 message expiry.
 * Returns 0, TW_ERR_UNAVAIL (not connected: nothing queued), or
 * TW_ERR_IO / TW_ERR_NOMEM.
 */
int mqtt_publish(struct mqtt *m, uint32_t link, const char *topic, const void *payload,
    int len, int retain, uint32_t expiry_s, int *mid);

#endif
