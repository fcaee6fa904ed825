/* The bounded byte ring between the MQTT thread and the engine. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "err.h"
#include "ring.h"

#define ALIGN8(n)	(((n) + 7) & ~(size_t)7)
#define HDR		8
#define WRAP		UINT32_MAX	/* marks the unused tail before a wrap */

struct ring {
	pthread_mutex_t lock;
	pthread_cond_t not_empty;
	pthread_cond_t not_full;
	unsigned char *buf;
	size_t cap;
	uint64_t wpos;		/* bytes ever written, producer side */
	uint64_t rpos;		/* bytes ever released, consumer side */
	uint64_t records;
	size_t peeked;		/* bytes of the record under ring_peek, 0 if none */
	/* Who sleeps: signalling only then saves a futex call per record. */
	int consumer_waiting;
	int producer_waiting;
	int woken;		/* ring_wake was called: the waiting consumer returns */
};

struct ring *
ring_new(size_t capacity)
{
	struct ring *r;

	capacity &= ~(size_t)7;
	if (capacity < 64 || (r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	if ((r->buf = malloc(capacity)) == NULL) {
		free(r);
		return NULL;
	}
	r->cap = capacity;
	pthread_mutex_init(&r->lock, NULL);
	clock_cond_init(&r->not_empty);
	clock_cond_init(&r->not_full);
	return r;
}

void
ring_free(struct ring *r)
{
	if (r == NULL)
		return;
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->not_empty);
	pthread_cond_destroy(&r->not_full);
	free(r->buf);
	free(r);
}

/* Bytes a record of len takes at write offset off, wrap padding included. */
static size_t
ring_need(const struct ring *r, size_t off, size_t len)
{
	size_t rec = HDR + ALIGN8(len);

	return off + rec <= r->cap ? rec : (r->cap - off) + rec;
}

int
ring_push(struct ring *r, const void *rec, size_t len)
{
	size_t off, need;
	uint32_t l32 = (uint32_t)len;

	if (len > r->cap / 4)
		return TW_ERR_INVAL;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		off = (size_t)(r->wpos % r->cap);
		need = ring_need(r, off, len);
		if (r->cap - (size_t)(r->wpos - r->rpos) >= need)
			break;
		r->producer_waiting = 1;
		pthread_cond_wait(&r->not_full, &r->lock);
		r->producer_waiting = 0;
	}
	pthread_mutex_unlock(&r->lock);

	/*
	 * The space between wpos and rpos belongs to the producer alone, so
	 * the copy runs without the lock; wpos moves only after it.
	 */
	if (off + HDR + ALIGN8(len) > r->cap) {
		uint32_t wrap = WRAP;

		memcpy(r->buf + off, &wrap, sizeof(wrap));
		off = 0;
	}
	memcpy(r->buf + off, &l32, sizeof(l32));
	memcpy(r->buf + off + HDR, rec, len);

	pthread_mutex_lock(&r->lock);
	r->wpos += need;
	r->records++;
	if (r->consumer_waiting)
		pthread_cond_signal(&r->not_empty);
	pthread_mutex_unlock(&r->lock);
	return TW_OK;
}

const void *
ring_peek(struct ring *r, size_t *len, int timeout_ms)
{
	struct timespec deadline;
	size_t off;
	uint32_t l32;

	pthread_mutex_lock(&r->lock);
	if (r->wpos == r->rpos && timeout_ms > 0) {
		clock_deadline(&deadline, timeout_ms);
		r->consumer_waiting = 1;
		while (r->wpos == r->rpos && !r->woken &&
		    pthread_cond_timedwait(&r->not_empty, &r->lock, &deadline) != ETIMEDOUT)
			;
		r->consumer_waiting = 0;
	}
	r->woken = 0;
	if (r->wpos == r->rpos) {
		pthread_mutex_unlock(&r->lock);
		return NULL;
	}
	pthread_mutex_unlock(&r->lock);

	off = (size_t)(r->rpos % r->cap);
	memcpy(&l32, r->buf + off, sizeof(l32));
	r->peeked = 0;
	if (l32 == WRAP) {
		r->peeked = r->cap - off;
		off = 0;
		memcpy(&l32, r->buf, sizeof(l32));
	}
	r->peeked += HDR + ALIGN8((size_t)l32);
	*len = l32;
	return r->buf + off + HDR;
}

void
ring_pop(struct ring *r)
{
	pthread_mutex_lock(&r->lock);
	r->rpos += r->peeked;
	r->records--;
	r->peeked = 0;
	if (r->producer_waiting)
		pthread_cond_signal(&r->not_full);
	pthread_mutex_unlock(&r->lock);
}

void
ring_wake(struct ring *r)
{
	pthread_mutex_lock(&r->lock);
	r->woken = 1;
	pthread_cond_signal(&r->not_empty);
	pthread_mutex_unlock(&r->lock);
}

size_t
ring_used(struct ring *r)
{
	size_t used;

	pthread_mutex_lock(&r->lock);
	used = (size_t)(r->wpos - r->rpos);
	pthread_mutex_unlock(&r->lock);
	return used;
}

size_t
ring_capacity(const struct ring *r)
{
	return r->cap;
}

uint64_t
ring_count(struct ring *r)
{
	uint64_t n;

	pthread_mutex_lock(&r->lock);
	n = r->records;
	pthread_mutex_unlock(&r->lock);
	return n;
}
