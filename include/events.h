/*
 * Live events for Server-Sent Events clients. The engine emits;
 * each client has a bounded buffer, and a client too slow to keep up is
 * cut off rather than allowed to hold memory or the emitter.
 */
#ifndef TW_EVENTS_H
#define TW_EVENTS_H

#include <stddef.h>
#include <sys/types.h>

struct events;
struct events_client;

/* At most `max_clients` clients of `buf_bytes` each. NULL on allocation failure. */
struct events *events_new(int max_clients, size_t buf_bytes);
void events_free(struct events *e);

/* 1 when any client listens: emitters skip formatting otherwise. */
int events_listening(struct events *e);

/*
 * Appends "event: TYPE\ndata: JSON\n\n" to every client whose filter
 * matches `twin`. Never blocks beyond a short lock; a client whose
 * buffer is full is marked cut off.
 */
void events_emit(struct events *e, const char *type, const char *twin, const char *json);

/* A new client, filtered by a twin id glob (NULL: all). NULL when full. */
struct events_client *events_subscribe(struct events *e, const char *twin_glob);
/*
 * Copies up to `max` buffered bytes into `buf`, waiting up to `timeout_ms`
 * for some. Returns the count, 0 on timeout, or -1 when the client was
 * cut off or the hub is shutting down.
 */
ssize_t events_read(struct events_client *c, char *buf, size_t max, int timeout_ms);
void events_unsubscribe(struct events_client *c);

/* Cuts every client off (shutdown); later subscriptions are refused. */
void events_shutdown(struct events *e);
/*
 * Cuts every client off and keeps serving new ones: after the tokens
 * changed, a stream opened with a revoked token must not go on.
 */
void events_cut_all(struct events *e);

#endif
