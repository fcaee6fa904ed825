/* The live event hub behind /api/v1/events: bounded buffers, slow clients cut off. */
#include <fnmatch.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "events.h"
#include "metrics.h"

struct events_client {
	struct events *hub;
	char *glob;		/* twin filter, or NULL */
	char *buf;		/* pending bytes: len of cap */
	size_t len;
	int cut;		/* fell behind, or shutdown */
	pthread_cond_t ready;
	struct events_client *next;
};

struct events {
	pthread_mutex_t lock;
	struct events_client *clients;
	int nclients, max_clients;
	size_t cap;
	int closed;
	atomic_int listening;
};

struct events *
events_new(int max_clients, size_t buf_bytes)
{
	struct events *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	pthread_mutex_init(&e->lock, NULL);
	e->max_clients = max_clients;
	e->cap = buf_bytes;
	return e;
}

void
events_free(struct events *e)
{
	if (e == NULL)
		return;
	/* Clients are gone: http_stop joined every connection before this. */
	pthread_mutex_destroy(&e->lock);
	free(e);
}

int
events_listening(struct events *e)
{
	return e != NULL && atomic_load(&e->listening) > 0;
}

void
events_emit(struct events *e, const char *type, const char *twin, const char *json)
{
	char head[64];
	size_t hlen, jlen = strlen(json);
	struct events_client *c;

	if (!events_listening(e))
		return;
	hlen = (size_t)snprintf(head, sizeof(head), "event: %s\ndata: ", type);
	pthread_mutex_lock(&e->lock);
	for (c = e->clients; c != NULL; c = c->next) {
		if (c->cut || (c->glob != NULL && fnmatch(c->glob, twin, 0) != 0))
			continue;
		if (c->len + hlen + jlen + 2 > e->cap) {
			/* The client is not reading: let it go, never let it hold us. */
			c->cut = 1;
			metrics_add(&metrics.events_cut, 1);
		} else {
			memcpy(c->buf + c->len, head, hlen);
			memcpy(c->buf + c->len + hlen, json, jlen);
			memcpy(c->buf + c->len + hlen + jlen, "\n\n", 2);
			c->len += hlen + jlen + 2;
		}
		pthread_cond_signal(&c->ready);
	}
	pthread_mutex_unlock(&e->lock);
}

struct events_client *
events_subscribe(struct events *e, const char *twin_glob)
{
	struct events_client *c;

	pthread_mutex_lock(&e->lock);
	if (e->closed || e->nclients >= e->max_clients ||
	    (c = calloc(1, sizeof(*c))) == NULL) {
		pthread_mutex_unlock(&e->lock);
		return NULL;
	}
	c->hub = e;
	c->buf = malloc(e->cap);
	c->glob = twin_glob != NULL ? strdup(twin_glob) : NULL;
	if (c->buf == NULL || (twin_glob != NULL && c->glob == NULL)) {
		pthread_mutex_unlock(&e->lock);
		free(c->buf);
		free(c->glob);
		free(c);
		return NULL;
	}
	clock_cond_init(&c->ready);
	c->next = e->clients;
	e->clients = c;
	e->nclients++;
	atomic_store(&metrics.event_clients, e->nclients);
	atomic_fetch_add(&e->listening, 1);
	pthread_mutex_unlock(&e->lock);
	return c;
}

ssize_t
events_read(struct events_client *c, char *buf, size_t max, int timeout_ms)
{
	struct events *e = c->hub;
	struct timespec deadline;
	ssize_t n;

	clock_deadline(&deadline, timeout_ms);
	pthread_mutex_lock(&e->lock);
	while (c->len == 0 && !c->cut &&
	    pthread_cond_timedwait(&c->ready, &e->lock, &deadline) == 0)
		;
	if (c->cut) {
		pthread_mutex_unlock(&e->lock);
		return -1;
	}
	n = (ssize_t)(c->len < max ? c->len : max);
	memcpy(buf, c->buf, (size_t)n);
	memmove(c->buf, c->buf + n, c->len - (size_t)n);
	c->len -= (size_t)n;
	pthread_mutex_unlock(&e->lock);
	return n;
}

void
events_unsubscribe(struct events_client *c)
{
	struct events *e;
	struct events_client **p;

	if (c == NULL)
		return;
	e = c->hub;
	pthread_mutex_lock(&e->lock);
	for (p = &e->clients; *p != NULL; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	e->nclients--;
	atomic_store(&metrics.event_clients, e->nclients);
	atomic_fetch_sub(&e->listening, 1);
	pthread_mutex_unlock(&e->lock);
	pthread_cond_destroy(&c->ready);
	free(c->buf);
	free(c->glob);
	free(c);
}

static void
cut_all(struct events *e, int close_hub)
{
	struct events_client *c;

	pthread_mutex_lock(&e->lock);
	if (close_hub)
		e->closed = 1;
	for (c = e->clients; c != NULL; c = c->next) {
		c->cut = 1;
		pthread_cond_signal(&c->ready);
	}
	pthread_mutex_unlock(&e->lock);
}

void
events_shutdown(struct events *e)
{
	cut_all(e, 1);
}

void
events_cut_all(struct events *e)
{
	cut_all(e, 0);
}
