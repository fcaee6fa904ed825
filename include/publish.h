/*
 * How the engine's outbox publishes without knowing MQTT: main hands it
 * this interface, backed by the MQTT module. Everything is QoS 1.
 */
#ifndef TW_PUBLISH_H
#define TW_PUBLISH_H

#include <stdint.h>

struct publisher {
	void *arg;
	/*
	 * Hands one message to connection `link` (refused on another). `expiry_s` > 0 asks the
	 * broker to drop it after that many seconds (MQTT v5 message expiry,
	 * where the broker speaks v5). Returns 0 with the message id in *mid,
	 * TW_ERR_UNAVAIL when not connected (nothing was queued), or
	 * TW_ERR_NOMEM / TW_ERR_IO.
	 */
	int (*publish)(void *arg, uint32_t link, const char *topic, const void *payload, int len,
	    int retain, uint32_t expiry_s, int *mid);
	/* The live connection's generation, 0 when there is none: publications name it. */
	uint32_t (*link)(void *arg);
	/* NULL while the link ingests as it should, else why not (for /healthz). */
	const char *(*trouble)(void *arg);
};

#endif
