/*
 * Ingest: an MQTT topic and payload become a compact update record, or a
 * reason to drop the message. Runs on the MQTT thread; the records it
 * builds travel through the ring to the engine.
 */
#ifndef TW_INGEST_H
#define TW_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "names.h"

/* Why a message was dropped; each is counted in /metrics under its name. */
enum ingest_reason {
	INGEST_OK = 0,
	DROP_MALFORMED,
	DROP_TOO_LARGE,
	DROP_TOO_DEEP,
	DROP_TOO_MANY_PROPERTIES,
	DROP_BAD_TWIN_ID,
	DROP_BAD_PROPERTY,
	DROP_BAD_VALUE,
	DROP_BAD_TS,
	DROP_NO_VALUES,
	DROP_UNMAPPED_TOPIC,
	DROP_UNKNOWN_TWIN,	/* auto_create is off (decided by the engine) */
	DROP_TWIN_LIMIT,	/* max_twins reached (engine) */
	DROP_PROPERTY_LIMIT,	/* max_properties_per_twin reached (engine) */
	DROP_UNKNOWN_PROPERTY,	/* not in the twin's strict model (engine) */
	DROP_WRONG_TYPE,	/* not the model's schema (engine) */
	DROP_RETAINED_WITHOUT_TS,	/* a replayed retained message of unknown age */
	DROP_MEMORY_LIMIT,	/* [twins] memory_max reached (engine) */
	DROP__COUNT
};

const char *ingest_reason_name(int reason);

enum val_type { VAL_NUM = 1, VAL_BOOL = 2, VAL_STR = 3 };

/*
 * REC_FLUSH asks the engine to commit everything before it;
 * REC_PUBACK says the broker acknowledged our publication `mid`;
 * REC_CONNECTED that the broker accepted a connection (publish now).
 */
enum rec_kind { REC_UPDATE = 1, REC_QUARANTINE = 2, REC_FLUSH = 3, REC_PUBACK = 4,
	REC_CMD_ACK = 5, REC_CONNECTED = 6 };

#define STR_VALUE_MAX	4096
#define QUARANTINE_KEEP	1024	/* payload bytes kept of a poison message */

/*
 * A record in the ring. For REC_UPDATE, `id` holds the twin id and
 * `nvals` values follow; for REC_QUARANTINE, `id` holds the topic and
 * `body_len` bytes of the payload follow. Every part is NUL-terminated
 * and 8-byte aligned, so it is read in place.
 */
struct rec {
	uint16_t kind;
	uint16_t reason;	/* REC_QUARANTINE: enum ingest_reason; REC_PUBACK: the broker's refusal (v5), or 0 */
	uint16_t nvals;
	uint16_t id_len;
	uint32_t gen;		/* MQTT connection generation that read it */
	uint32_t body_len;
	uint32_t mid;		/* REC_PUBACK: the MQTT message id */
	uint32_t flags;		/* REC_F_* */
	uint64_t seq;		/* set by the MQTT thread, grows by one per record */
	int64_t ts;		/* measurement time in ms (arrival time if none given) */
	int64_t arrival_ms;
	char id[];
};

#define REC_F_HAS_TS	1u	/* the message carried its own ts */
#define REC_F_RETAINED	2u	/* a retained message the broker replayed on subscribe */

struct rec_val {
	uint8_t type;		/* enum val_type */
	uint8_t name_len;
	uint16_t str_len;
	uint32_t reserved;
	double num;		/* VAL_NUM; VAL_BOOL as 0 or 1 */
	char name[];		/* then, for VAL_STR, the string */
};

const struct rec_val *rec_val_first(const struct rec *r);
const struct rec_val *rec_val_next(const struct rec_val *v);
static inline const char *rec_val_str(const struct rec_val *v)
{
	return v->name + v->name_len + 1;
}
static inline const char *rec_body(const struct rec *r)
{
	return (const char *)r + ((sizeof(*r) + r->id_len + 1 + 7) & ~(size_t)7);
}

struct ingest {
	char *prefix;		/* telemetry topic before {twin} */
	char *suffix;		/* and after it */
	size_t prefix_len, suffix_len;
	char *ack_prefix;	/* command topic before {twin} */
	char *ack_suffix;	/* and after it, with "/ack" */
	size_t ack_prefix_len, ack_suffix_len;
	int max_payload;
	int max_depth;
	int max_props;
	int64_t max_future_ms;
	unsigned char *buf;	/* scratch record, INGEST_SCRATCH bytes */
};

#define INGEST_SCRATCH	(256 * 1024)

/* Returns 0, TW_ERR_INVAL (template) or TW_ERR_NOMEM. */
int ingest_init(struct ingest *in, const char *topic_template, int max_payload,
    int max_depth, int max_props, int64_t max_future_ms);
/* The command topic template, whose "/ack" answers ingest_ack reads. */
int ingest_set_commands(struct ingest *in, const char *command_template);
/* The subscription for command answers, into `buf`. */
void ingest_ack_subscription(const struct ingest *in, char *buf, size_t len);

/*
 * An asset's answer to a command, on {command_topic}/ack:
 * {"id":"...","status":"done"|"rejected"|"failed","detail":"..."}. Returns
 * DROP_UNMAPPED_TOPIC when the topic is not an answer topic (so the caller
 * tries it as telemetry), INGEST_OK with a REC_CMD_ACK record whose body
 * is "id\0status\0detail\0", or a reason to drop it.
 */
int ingest_ack(struct ingest *in, const char *topic, const void *payload, size_t len,
    int64_t now_ms, struct rec **out, size_t *outlen);
void ingest_cleanup(struct ingest *in);

/*
 * The two subscriptions that cover the template: the object form and the
 * single-value form. Writes them into `obj` and `single` (each `len` bytes).
 */
void ingest_subscriptions(const struct ingest *in, char *obj, char *single, size_t len);

/*
 * Parses one message (payload of exactly `len` bytes, not NUL-terminated)
 * into the scratch record. On INGEST_OK, *out points into the scratch
 * buffer (valid until the next call) and *outlen is its size. Otherwise
 * returns the enum ingest_reason and writes nothing useful.
 */
int ingest_message(struct ingest *in, const char *topic, const void *payload,
    size_t len, int64_t now_ms, struct rec **out, size_t *outlen);

/* Builds a REC_QUARANTINE record for a dropped message in the scratch buffer. */
void ingest_quarantine(struct ingest *in, const char *topic, const void *payload,
    size_t len, int reason, int64_t now_ms, struct rec **out, size_t *outlen);

#endif
