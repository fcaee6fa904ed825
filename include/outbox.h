/*
 * The outbox: what the engine says to the world, in the order the disk
 * allows. Messages made in a batch (alerts, command and twin events) wait
 * for its commit and vanish with a rollback; committed ones go out while
 * the broker is connected and wait (bounded) while it is not; every QoS 1
 * publication is remembered by its message id until the broker's PUBACK,
 * which the outbox routes back to its owner (a twin's delta, a command).
 *
 * Owned by the engine's thread. Nothing is handed to the MQTT client while
 * it is disconnected, so its own queue never grows; after a reconnect the
 * client starts afresh (see mqtt.c) and the outbox sends again what the
 * broker had not acknowledged.
 */
#ifndef TW_OUTBOX_H
#define TW_OUTBOX_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <uthash.h>

#include "events.h"
#include "names.h"
#include "publish.h"

#define OUTBOX_MAX	10000	/* messages waiting for the broker; the oldest go beyond it */
/*
 * Publications handed over and not acknowledged; beyond it the owners wait
 * (a slow or frozen broker). Below 65535, so that a 16-bit MQTT message id
 * never names two publications at once.
 */
#define OUTBOX_FLIGHTS_MAX	10000

struct outbox_msg {
	char *topic;		/* NULL: a live event only */
	const char *event;	/* event type (static), or NULL: MQTT only */
	char *twin;
	char *payload;		/* JSON */
	struct outbox_msg *next;
};

/* Whose publication a PUBACK acknowledges. */
enum outbox_kind { OUTBOX_MESSAGE = 1, OUTBOX_DELTA, OUTBOX_COMMAND, OUTBOX_STATE };

struct outbox_ack {
	int kind;		/* OUTBOX_DELTA or OUTBOX_COMMAND */
	uint64_t seq;		/* what the owner gave outbox_send */
	char key[TWIN_ID_MAX + 1];	/* the twin id, or the command id */
};

struct outbox_flight {
	int mid;
	int kind;
	uint64_t seq;
	char key[TWIN_ID_MAX + 1];
	struct outbox_msg *msg;		/* OUTBOX_MESSAGE: sent again after a reconnect */
	UT_hash_handle hh;
};

struct outbox {
	const struct publisher *pub;	/* borrowed; NULL: nothing is published */
	struct events *events;		/* borrowed; NULL: no live events */
	struct outbox_msg *batch, **batch_tail;		/* waiting for the commit */
	struct outbox_msg *waiting, **waiting_tail;	/* committed, waiting for the broker */
	unsigned nwaiting;
	struct outbox_flight *flights;	/* by mid: handed over, not acknowledged yet */
	unsigned nflights;
	uint32_t link;			/* the connection the engine heard of; 0: none yet */
};

void outbox_init(struct outbox *o, const struct publisher *pub, struct events *events);
void outbox_cleanup(struct outbox *o);

/*
 * 1 while the connection the engine heard of (REC_CONNECTED) is the live
 * one, and fewer than OUTBOX_FLIGHTS_MAX publications wait for its PUBACK.
 */
int outbox_connected(const struct outbox *o);
/* 1 when some live-event client listens: formatting can be skipped otherwise. */
int outbox_listening(const struct outbox *o);
/* A live event now (for what commits nothing, such as a status change). */
void outbox_emit(struct outbox *o, const char *event, const char *twin, const char *json);

/*
 * Queues `obj` (consumed) for after the commit: published on `topic` if
 * not NULL, emitted as `event` if not NULL. Returns 0 or TW_ERR_NOMEM
 * (then nothing is queued).
 */
int outbox_queue(struct outbox *o, const char *topic, const char *event, const char *twin,
    cJSON *obj);
/* A live event already formatted (copied), queued for after the commit like outbox_queue. */
int outbox_queue_text(struct outbox *o, const char *event, const char *twin, const char *json);
/* The batch is on disk: its messages go out (or wait for the broker). */
void outbox_commit(struct outbox *o);
/* The batch is void: its messages are dropped. */
void outbox_rollback(struct outbox *o);

/*
 * Publishes committed state now: `kind` and `key`/`seq` name the owner a
 * PUBACK is routed to (OUTBOX_STATE is not tracked). Returns 0 (with *mid
 * if not NULL), TW_ERR_UNAVAIL when the broker is away, or another error.
 */
int outbox_send(struct outbox *o, int kind, const char *key, uint64_t seq, const char *topic,
    const char *payload, int len, int retain, uint32_t expiry_s);

/* A PUBACK: 1 with *ack filled when it settles a delta or a command, else 0. */
int outbox_puback(struct outbox *o, int mid, struct outbox_ack *ack);

/*
 * A new connection: the client started afresh, so every publication not
 * acknowledged is forgotten. Messages are sent again; deltas and commands
 * are their owners' to send again.
 */
void outbox_reconnected(struct outbox *o, uint32_t link);

#endif
