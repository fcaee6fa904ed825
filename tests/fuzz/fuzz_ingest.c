/*
 * Fuzzes the payload parser and the topic mapping of ingest: what an MQTT
 * message does on its way to a record. Input: "topic\npayload"; without a
 * newline the whole input is the payload of plant/pump-1/telemetry. The
 * same message is also tried as a command answer ({command_topic}/ack),
 * and a dropped one is quarantined, as the MQTT thread does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "ingest.h"
#include "names.h"
#include "fuzz_util.h"

#define NOW	1795496400000LL

static struct ingest in;

/* Walks a REC_UPDATE record as the engine does, checking it stays inside `len`. */
static void
check_update(const struct rec *r, size_t len)
{
	const unsigned char *base = (const unsigned char *)r, *end = base + len;
	const struct rec_val *v = rec_val_first(r);

	if (r->kind != REC_UPDATE || r->nvals == 0 || r->id_len == 0 || r->id_len > TWIN_ID_MAX ||
	    strlen(r->id) != r->id_len || !name_twin_valid(r->id, r->id_len))
		abort();
	for (int i = 0; i < r->nvals; i++, v = rec_val_next(v)) {
		if ((const unsigned char *)v + sizeof(*v) > end ||
		    (const unsigned char *)v->name + v->name_len + 1 > end)
			abort();
		if (strlen(v->name) != v->name_len || !name_prop_valid(v->name, v->name_len))
			abort();
		switch (v->type) {
		case VAL_NUM:
		case VAL_BOOL:
			break;
		case VAL_STR:
			if ((const unsigned char *)rec_val_str(v) + v->str_len + 1 > end ||
			    strlen(rec_val_str(v)) != v->str_len || v->str_len > STR_VALUE_MAX)
				abort();
			break;
		default:
			abort();
		}
	}
	if ((const unsigned char *)v > end)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	char *topic;
	const uint8_t *payload;
	size_t plen;
	struct rec *r = NULL;
	size_t rlen = 0;
	int rc;

	if (in.buf == NULL) {
		/* The defaults of config/twind.conf and conf.c. */
		if (ingest_init(&in, "plant/{twin}/telemetry", 65536, 32, 256, 3600000) != TW_OK ||
		    ingest_set_commands(&in, "plant/{twin}/cmd") != TW_OK)
			abort();
	}
	if (nl != NULL) {
		topic = fuzz_strndup(data, (size_t)(nl - data));
		payload = nl + 1;
		plen = size - (size_t)(nl - data) - 1;
	} else {
		topic = fuzz_strndup((const uint8_t *)"plant/pump-1/telemetry", 22);
		payload = data;
		plen = size;
	}
	/* The payload is not NUL-terminated: give it its own exact-size copy so ASan sees overreads. */
	uint8_t *p = malloc(plen ? plen : 1);

	if (p == NULL)
		abort();
	memcpy(p, payload, plen);

	rc = ingest_ack(&in, topic, p, plen, NOW, &r, &rlen);
	if (rc == INGEST_OK) {
		const char *b = rec_body(r);

		if (r->kind != REC_CMD_ACK || rlen > INGEST_SCRATCH ||
		    r->body_len != strlen(b) + strlen(b + strlen(b) + 1) +
		    strlen(b + strlen(b) + 1 + strlen(b + strlen(b) + 1) + 1) + 3)
			abort();
	} else if (rc == DROP_UNMAPPED_TOPIC) {
		rc = ingest_message(&in, topic, p, plen, NOW, &r, &rlen);
		if (rc == INGEST_OK) {
			if (rlen > INGEST_SCRATCH)
				abort();
			check_update(r, rlen);
		} else if (rc < 0 || rc >= DROP__COUNT) {
			abort();
		}
	}
	if (rc != INGEST_OK) {
		if (strcmp(ingest_reason_name(rc), "unknown") == 0)
			abort();
		ingest_quarantine(&in, topic, p, plen, rc, NOW, &r, &rlen);
		if (r->kind != REC_QUARANTINE || r->body_len > QUARANTINE_KEEP ||
		    memcmp(rec_body(r), p, r->body_len) != 0 || rec_body(r)[r->body_len] != '\0')
			abort();
	}
	free(p);
	free(topic);
	return 0;
}
