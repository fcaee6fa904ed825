/*
 * Requests from other threads (REST, the signal thread) to the engine,
 * which alone changes twins. A request is owned by the thread that
 * submits it and blocks there until the engine answers with an error
 * code (TW_ERR_*), a short machine-readable code and a message; HTTP
 * statuses are the REST side's business.
 */
#ifndef TW_REQUEST_H
#define TW_REQUEST_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "model.h"
#include "plant.h"
#include "rules.h"
#include "tokens.h"

enum request_type {
	REQ_DESIRED = 1, REQ_RELOAD, REQ_COMMAND, REQ_ALERT_ACK, REQ_ALERT_SHELVE, REQ_SIMULATE,
};

struct request {
	int type;
	/* REQ_DESIRED, REQ_COMMAND */
	const char *twin;
	const cJSON *patch;		/* REQ_DESIRED: an object, property -> value or null; REQ_SIMULATE: the body */
	int depth;			/* REQ_SIMULATE: children copied this many levels down */
	int has_if_match;
	uint64_t if_match;
	const char *command;		/* REQ_COMMAND */
	const cJSON *params;		/* an object, or NULL */
	/* REQ_RELOAD: ownership passes to the engine, even on failure */
	struct model_set *models;
	struct plant plant;
	struct rule_set *rules;
	/* REQ_ALERT_ACK, REQ_ALERT_SHELVE */
	int64_t alert_id;
	int64_t shelve_ms;
	/* Who asks: the token's name, "" when anonymous (recorded on what it changes). */
	char who[TOKEN_NAME_MAX + 1];
	/* The answer. */
	int err;			/* TW_OK or a TW_ERR_* code */
	char code[32];			/* for the REST error object: "not_writable", ... */
	char message[256];
	int64_t retry_ms;		/* refused by the envelope's rate: it may go again in this long */
	cJSON *result;			/* the object made or changed; the submitter frees it */
	uint64_t version;		/* the twin's version afterwards (or now, on a conflict) */
	/* The queue's. */
	int done;
	struct request *next;
};

struct request_queue {
	pthread_mutex_t lock;
	pthread_cond_t answered;	/* CLOCK_MONOTONIC */
	struct request *head;		/* oldest first; at most one per REST connection */
	atomic_int n;			/* a hint for the engine's loop, read without the lock */
	int closed;
	void (*wake)(void *arg);	/* makes the engine look at the queue now */
	void *wake_arg;
	int wait_ms;			/* REQUEST_WAIT_MS; shorter in unit tests */
};

/* Returns 0 or TW_ERR_NOMEM. */
int request_queue_init(struct request_queue *q, void (*wake)(void *), void *wake_arg);
void request_queue_cleanup(struct request_queue *q);

/*
 * Submitter: queues `r` and waits for the answer. A request the engine
 * has not taken up within REQUEST_WAIT_MS is withdrawn and answered
 * TW_ERR_UNAVAIL ("busy"); one it took up is waited for (that is bounded).
 */
#define REQUEST_WAIT_MS	10000
void request_submit(struct request_queue *q, struct request *r);

/* Engine: 1 when something may be queued (no lock; request_next decides). */
int request_pending(struct request_queue *q);
/* Engine: takes the oldest request, or NULL when there is none (under the lock). */
struct request *request_next(struct request_queue *q);
/* Engine: `r` is answered; its submitter wakes. */
void request_done(struct request_queue *q, struct request *r);
/* At exit: answers every queued request TW_ERR_UNAVAIL and refuses later ones. */
void request_close(struct request_queue *q);

/* Fills the answer of `r`. */
void request_fail(struct request *r, int err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
