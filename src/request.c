/* The request queue: other threads ask, the engine answers, nobody shares a twin. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "clock.h"
#include "err.h"
#include "request.h"

int
request_queue_init(struct request_queue *q, void (*wake)(void *), void *wake_arg)
{
	q->head = NULL;
	atomic_store(&q->n, 0);
	q->closed = 0;
	q->wake = wake;
	q->wake_arg = wake_arg;
	q->wait_ms = REQUEST_WAIT_MS;
	if (pthread_mutex_init(&q->lock, NULL) != 0)
		return TW_ERR_NOMEM;
	if (clock_cond_init(&q->answered) != TW_OK) {
		pthread_mutex_destroy(&q->lock);
		return TW_ERR_NOMEM;
	}
	return TW_OK;
}

void
request_queue_cleanup(struct request_queue *q)
{
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->answered);
}

void
request_fail(struct request *r, int err, const char *code, const char *fmt, ...)
{
	va_list ap;

	r->err = err;
	snprintf(r->code, sizeof(r->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
}

/* Unlinks `r` if it is still queued (the caller holds the lock); 1 if it was. */
static int
unlink_locked(struct request_queue *q, struct request *r)
{
	for (struct request **p = &q->head; *p != NULL; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			atomic_fetch_sub(&q->n, 1);
			return 1;
		}
	return 0;
}

void
request_submit(struct request_queue *q, struct request *r)
{
	struct request **tail;
	struct timespec deadline;

	r->done = 0;
	r->next = NULL;
	r->err = TW_OK;
	pthread_mutex_lock(&q->lock);
	if (q->closed) {
		pthread_mutex_unlock(&q->lock);
		request_fail(r, TW_ERR_UNAVAIL, "unavailable", "twind is stopping");
		return;
	}
	for (tail = &q->head; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = r;
	atomic_fetch_add(&q->n, 1);
	pthread_mutex_unlock(&q->lock);
	if (q->wake != NULL)
		q->wake(q->wake_arg);
	clock_deadline(&deadline, q->wait_ms);
	pthread_mutex_lock(&q->lock);
	while (!r->done) {
		if (pthread_cond_timedwait(&q->answered, &q->lock, &deadline) != ETIMEDOUT)
			continue;
		/* Not taken up in time (the engine is stuck on a busy database): give up. */
		if (unlink_locked(q, r)) {
			request_fail(r, TW_ERR_UNAVAIL, "busy",
			    "the engine did not take the request in time");
			break;
		}
		/* Taken up: it is being answered, which is bounded; wait on. */
		clock_deadline(&deadline, q->wait_ms);
	}
	pthread_mutex_unlock(&q->lock);
}

int
request_pending(struct request_queue *q)
{
	return atomic_load(&q->n) > 0;
}

struct request *
request_next(struct request_queue *q)
{
	struct request *r;

	/* The hint may be stale: a submitter may have withdrawn its request since. */
	pthread_mutex_lock(&q->lock);
	if ((r = q->head) != NULL) {
		q->head = r->next;
		atomic_fetch_sub(&q->n, 1);
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

void
request_done(struct request_queue *q, struct request *r)
{
	pthread_mutex_lock(&q->lock);
	r->done = 1;
	pthread_cond_broadcast(&q->answered);
	pthread_mutex_unlock(&q->lock);
}

void
request_close(struct request_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = 1;
	while (q->head != NULL) {
		struct request *r = q->head;

		unlink_locked(q, r);
		request_fail(r, TW_ERR_UNAVAIL, "unavailable", "twind is stopping");
		r->done = 1;
	}
	pthread_cond_broadcast(&q->answered);
	pthread_mutex_unlock(&q->lock);
}
