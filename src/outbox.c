/* The outbox: messages after their commit, publications until their PUBACK. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"

void
outbox_init(struct outbox *o, const struct publisher *pub, struct events *events)
{
	memset(o, 0, sizeof(*o));
	o->pub = pub;
	o->events = events;
	o->batch_tail = &o->batch;
	o->waiting_tail = &o->waiting;
}

static void
msg_free(struct outbox_msg *m)
{
	if (m == NULL)
		return;
	free(m->topic);
	free(m->twin);
	cJSON_free(m->payload);
	free(m);
}

static void
list_free(struct outbox_msg *m)
{
	while (m != NULL) {
		struct outbox_msg *next = m->next;

		msg_free(m);
		m = next;
	}
}

static void
flights_clear(struct outbox *o, int keep_messages)
{
	struct outbox_msg *again = NULL, **tail = &again;
	struct outbox_flight *f, *tmp;

	/* uthash walks in insertion order: the oldest publication first. */
	HASH_ITER(hh, o->flights, f, tmp) {
		HASH_DEL(o->flights, f);
		if (keep_messages && f->msg != NULL) {
			f->msg->next = NULL;
			*tail = f->msg;
			tail = &f->msg->next;
			o->nwaiting++;
		} else {
			msg_free(f->msg);
		}
		free(f);
	}
	o->nflights = 0;
	/* Sent again first and in their order (a raise before its clear): they are older. */
	if (again != NULL) {
		*tail = o->waiting;
		if (o->waiting == NULL)
			o->waiting_tail = tail;
		o->waiting = again;
	}
}

void
outbox_cleanup(struct outbox *o)
{
	flights_clear(o, 0);
	list_free(o->batch);
	list_free(o->waiting);
	outbox_init(o, o->pub, o->events);
}

int
outbox_connected(const struct outbox *o)
{
	return o->pub != NULL && o->link != 0 && o->pub->link(o->pub->arg) == o->link &&
	    o->nflights < OUTBOX_FLIGHTS_MAX;
}

int
outbox_listening(const struct outbox *o)
{
	return o->events != NULL && events_listening(o->events);
}

void
outbox_emit(struct outbox *o, const char *event, const char *twin, const char *json)
{
	if (o->events != NULL)
		events_emit(o->events, event, twin, json);
}

/* Queues `payload` (owned, freed with cJSON_free) behind the batch's other messages. */
static int
queue_payload(struct outbox *o, const char *topic, const char *event, const char *twin,
    char *payload)
{
	struct outbox_msg *m = calloc(1, sizeof(*m));

	if (m != NULL) {
		m->payload = payload;
		m->topic = topic != NULL ? strdup(topic) : NULL;
		m->twin = strdup(twin);
		m->event = event;
	} else {
		cJSON_free(payload);
	}
	if (m == NULL || m->payload == NULL || (topic != NULL && m->topic == NULL) ||
	    m->twin == NULL) {
		msg_free(m);
		return TW_ERR_NOMEM;
	}
	*o->batch_tail = m;
	o->batch_tail = &m->next;
	return TW_OK;
}

int
outbox_queue(struct outbox *o, const char *topic, const char *event, const char *twin,
    cJSON *obj)
{
	char *payload = obj != NULL ? cJSON_PrintUnformatted(obj) : NULL;

	cJSON_Delete(obj);
	return queue_payload(o, topic, event, twin, payload);
}

int
outbox_queue_text(struct outbox *o, const char *event, const char *twin, const char *json)
{
	size_t n = strlen(json) + 1;
	char *payload = cJSON_malloc(n);

	if (payload != NULL)
		memcpy(payload, json, n);
	return queue_payload(o, NULL, event, twin, payload);
}

/* Registers a publication under its mid; a reused mid replaces one the broker will not ack again. */
static int
flight_add(struct outbox *o, int mid, int kind, const char *key, uint64_t seq,
    struct outbox_msg *msg)
{
	struct outbox_flight *f, *old;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return TW_ERR_NOMEM;
	HASH_FIND_INT(o->flights, &mid, old);
	if (old != NULL) {
		HASH_DEL(o->flights, old);
		msg_free(old->msg);
		free(old);
		o->nflights--;
	}
	f->mid = mid;
	f->kind = kind;
	f->seq = seq;
	f->msg = msg;
	if (key != NULL)
		snprintf(f->key, sizeof(f->key), "%s", key);
	HASH_ADD_INT(o->flights, mid, f);
	o->nflights++;
	return TW_OK;
}

/* Hands `m` to the broker; 0 when it is in flight (and then owned by the flight). */
static int
send_msg(struct outbox *o, struct outbox_msg *m)
{
	int mid, rc;

	if (!outbox_connected(o))
		return TW_ERR_UNAVAIL;
	rc = o->pub->publish(o->pub->arg, o->link, m->topic, m->payload, (int)strlen(m->payload),
	    0, 0, &mid);
	if (rc == TW_OK && flight_add(o, mid, OUTBOX_MESSAGE, NULL, 0, m) != TW_OK)
		msg_free(m);	/* sent, but untracked: not sent again after a reconnect */
	return rc;
}

/* Keeps `m` for the broker, dropping the oldest beyond OUTBOX_MAX. */
static void
wait_for_broker(struct outbox *o, struct outbox_msg *m)
{
	m->next = NULL;
	*o->waiting_tail = m;
	o->waiting_tail = &m->next;
	if (++o->nwaiting <= OUTBOX_MAX)
		return;
	m = o->waiting;
	o->waiting = m->next;
	if (o->waiting == NULL)
		o->waiting_tail = &o->waiting;
	o->nwaiting--;
	metrics_add(&metrics.outbox_dropped, 1);
	msg_free(m);
}

/* Sends what waits for the broker, in order, while it takes them. */
static void
send_waiting(struct outbox *o)
{
	while (o->waiting != NULL && outbox_connected(o)) {
		struct outbox_msg *m = o->waiting;

		o->waiting = m->next;
		if (o->waiting == NULL)
			o->waiting_tail = &o->waiting;
		o->nwaiting--;
		m->next = NULL;
		if (send_msg(o, m) != TW_OK) {
			/* Back to the front: the broker went away in between. */
			m->next = o->waiting;
			o->waiting = m;
			if (o->waiting_tail == &o->waiting)
				o->waiting_tail = &m->next;
			o->nwaiting++;
			return;
		}
	}
}

void
outbox_commit(struct outbox *o)
{
	struct outbox_msg *m = o->batch;

	o->batch = NULL;
	o->batch_tail = &o->batch;
	send_waiting(o);
	while (m != NULL) {
		struct outbox_msg *next = m->next;

		m->next = NULL;
		if (m->event != NULL)
			outbox_emit(o, m->event, m->twin, m->payload);
		if (m->topic == NULL)
			msg_free(m);
		else if (o->waiting != NULL || send_msg(o, m) != TW_OK)
			wait_for_broker(o, m);	/* in order, behind what waits already */
		m = next;
	}
}

void
outbox_rollback(struct outbox *o)
{
	list_free(o->batch);
	o->batch = NULL;
	o->batch_tail = &o->batch;
}

int
outbox_send(struct outbox *o, int kind, const char *key, uint64_t seq, const char *topic,
    const char *payload, int len, int retain, uint32_t expiry_s)
{
	int mid, rc;

	if (!outbox_connected(o))
		return TW_ERR_UNAVAIL;
	if ((rc = o->pub->publish(o->pub->arg, o->link, topic, payload, len, retain, expiry_s,
	    &mid)) != TW_OK)
		return rc;
	/* State documents are tracked too: they count against the bound on what is in flight. */
	return flight_add(o, mid, kind, key, seq, NULL);
}

int
outbox_puback(struct outbox *o, int mid, struct outbox_ack *ack)
{
	struct outbox_flight *f;
	int owned;

	HASH_FIND_INT(o->flights, &mid, f);
	if (f == NULL)
		return 0;	/* a state document, or from before a reconnect */
	HASH_DEL(o->flights, f);
	o->nflights--;
	owned = f->kind == OUTBOX_DELTA || f->kind == OUTBOX_COMMAND;
	if (owned) {
		ack->kind = f->kind;
		ack->seq = f->seq;
		memcpy(ack->key, f->key, sizeof(ack->key));
	}
	msg_free(f->msg);
	free(f);
	return owned;
}

void
outbox_reconnected(struct outbox *o, uint32_t link)
{
	o->link = link;
	flights_clear(o, 1);
	while (o->nwaiting > OUTBOX_MAX) {
		struct outbox_msg *m = o->waiting;

		o->waiting = m->next;
		o->nwaiting--;
		metrics_add(&metrics.outbox_dropped, 1);
		msg_free(m);
	}
	if (o->waiting == NULL)
		o->waiting_tail = &o->waiting;
	send_waiting(o);
}
