/*
 * Commands to assets, from operators and rules. A command is stored
 * `pending` before it is published, so it is on disk before it can reach
 * a machine. Only commands waiting for the broker's PUBACK live in memory,
 * found in O(1) by id (and by MQTT message id through the outbox, which
 * maps it to the id); once the broker took one it
 * is `sent` (or `done`, for an asset that does not answer) and lives in
 * SQLite alone, where its answer finds it by id and a timer sweep times it
 * out. So a bridge that never answers holds no memory and blocks nothing.
 *
 * Bounds: `max_per_twin` pending per twin and `max` plant-wide; a command
 * beyond either is stored `refused` with the reason, and counted.
 * Owned by the engine's thread.
 */
#ifndef TW_COMMANDS_H
#define TW_COMMANDS_H

#include <stdint.h>
#include <uthash.h>

#include "log.h"
#include "names.h"
#include "outbox.h"
#include "store.h"

#define COMMAND_ID_MAX	24
#define COMMAND_PARAMS_MAX	4096	/* bytes of an operator's params as JSON */

struct command {
	char id[COMMAND_ID_MAX];
	char twin[TWIN_ID_MAX + 1];
	char *command, *params, *rule;	/* params as JSON text; rule NULL for an operator's */
	char *by;			/* the operator's token name; NULL: anonymous or a rule */
	int64_t source_ts, issued_ts, expires_ts;
	int64_t timeout_ms;		/* 0: the asset does not answer; done at the PUBACK */
	int committed;			/* its pending row is on disk */
	UT_hash_handle hh;		/* by id; the outbox maps its MQTT message id to this id */
	struct command *prev, *next;	/* issue order: the oldest expires first */
	struct command *qprev, *qnext;	/* on the to-publish queue */
	int queued;			/* on it; committed and not queued: in flight */
	int handed;			/* it went to the broker once: it may have reached the asset */
	struct command *bnext;		/* on the batch's fresh list, or on the settled list */
	UT_hash_handle hh_settled;	/* by id, while settled: a prompt answer finds it */
	/* A settled command waits here until its new row is committed. */
	const char *status;
	const char *reason;
	int64_t sent_ts, acked_ts;
	char *detail;
};

struct commands_twin;
struct envelope_verdict;
struct status_rule;

struct commands {
	struct command *by_id;
	struct command *first, *last;	/* issue order */
	struct command *queue, *queue_last;	/* committed, to hand to the broker, in order */
	struct command *fresh;		/* issued in the open batch */
	struct command *settled;	/* left memory; their rows are written at the next commit */
	struct command *settled_by_id;
	struct commands_twin *twins;	/* pending per twin */
	unsigned n;			/* pending, plant-wide */
	unsigned max, max_per_twin;
	int64_t ttl_ms;
	uint64_t last_id;		/* the newest id issued: ids only grow (alert_command_id) */
	const char *topic_tmpl;		/* borrowed: [mqtt] command_topic */
	struct converge *converge;	/* borrowed: watches the effect of what is issued; NULL none */
	const struct status_rule *status;	/* borrowed: the envelope distrusts stale values */
	/*
	 * The envelope's manual mode and interlock judged again for a command
	 * that waited COMMANDS_RECHECK_MS or more before it could go; NULL:
	 * not judged again. Returns TW_OK with the verdict.
	 */
	int (*recheck)(void *arg, const char *twin, const char *command, int automatic,
	    struct envelope_verdict *v);
	void *recheck_arg;
	struct log_limit recheck_log;
};

#define COMMANDS_RECHECK_MS	1000

void commands_init(struct commands *c, unsigned max, unsigned max_per_twin, int64_t ttl_ms,
    const char *topic_tmpl);
void commands_cleanup(struct commands *c);

/* What to issue; strings borrowed for the call. */
struct command_spec {
	const char *twin, *command, *params, *rule;	/* params JSON text or NULL; rule NULL: operator */
	const char *by;			/* the operator's token name, or NULL */
	int64_t source_ts;
	int64_t timeout_ms;		/* 0: the asset does not answer */
	int refusal;			/* enum envelope_refusal: not ENVELOPE_OK, stored refused */
	const char *why;		/* with it, the reason */
};

/*
 * Issues a command in the open batch: its row is written `pending` (or
 * `refused` with the reason beyond a bound), and it is published after
 * the commit. Its id goes into `id` (COMMAND_ID_MAX bytes). Returns 0,
 * TW_ERR_FULL (refused: stored and counted, *reason says why), or
 * TW_ERR_DB / TW_ERR_NOMEM.
 */
int commands_issue(struct commands *c, struct store *st, struct outbox *o,
    const struct command_spec *spec, char *id, const char **reason);

struct twin_map;
struct twin;
/*
 * commands_issue after the safety envelope of t's model (envelope.h) has
 * judged it: refused by it, the command is stored `refused` with the
 * reason, as beyond a bound; with parameters clamped into range, it is
 * issued with those. `v` gets the verdict (ENVELOPE_INFLIGHT for a
 * bound). Returns as commands_issue.
 */
int commands_issue_judged(struct commands *c, struct store *st, struct outbox *o,
    struct twin_map *m, struct twin *t, const struct command_spec *spec,
    struct envelope_verdict *v, char *id, const char **reason);

/* Before the commit: writes the rows of commands that settled since the last one. 0 or TW_ERR_DB. */
int commands_flush(struct commands *c, struct store *st, struct outbox *o);
/* The batch is on disk: its commands may go out, the settled leave memory. */
void commands_commit(struct commands *c);
/* The batch is void: its commands never existed; the settled wait for the next commit. */
void commands_rollback(struct commands *c);

/* Hands queued, committed commands to the broker while it is connected. */
void commands_publish(struct commands *c, struct outbox *o);
/* A new connection: every pending command not acknowledged goes out again. */
void commands_reconnected(struct commands *c);

/* The broker took command `id` (a PUBACK routed by the outbox): sent, or done. In memory. */
void commands_taken(struct commands *c, const char *id);
/* The broker refused command `id` (an MQTT v5 PUBACK with reason `code`): failed. In memory. */
void commands_refused(struct commands *c, const char *id, int code);
/*
 * The asset answered: status done, rejected or failed, with its detail.
 * Returns 0 (also for an unknown or settled id, which is logged by the
 * caller through *known = 0) or TW_ERR_DB.
 */
int commands_answer(struct commands *c, struct store *st, struct outbox *o, const char *twin,
    const char *id, const char *status, const char *detail, int64_t ts, int *known);
/*
 * The timer: pending commands past the TTL are expired, sent ones past
 * their deadline timed out (at most a bounded number per call). 0 or TW_ERR_DB.
 * One in flight (handed over, no PUBACK) expires too, with a reason that says so.
 */
int commands_expire(struct commands *c, struct store *st, struct outbox *o, int64_t now);

/* Start-up: a pending command from the store. 0 or TW_ERR_NOMEM. */
int commands_restore(struct commands *c, const struct store_command_row *row);

/* What [commands] says of every command, operators' and rules' alike. */
struct command_policy {
	int acknowledged;		/* assets answer on {command_topic}/ack */
	int64_t timeout_ms;		/* how long an answer is awaited */
	int allow_unmodelled;		/* a twin without a model takes any command name */
};

struct model;
/*
 * Whether a twin of model `m` (NULL: none) takes `command`: its model must
 * name it. A twin without a model takes none unless the policy allows it,
 * since anyone who may publish telemetry can create such a twin.
 */
int commands_named(const struct model *m, const char *command, const struct command_policy *p);
/*
 * How long an answer to `command` of model `m` (NULL: none) is awaited:
 * the model's Command says, else the policy. 0 when the asset does not
 * answer (done at the PUBACK).
 */
int64_t commands_timeout(const struct model *m, const char *command,
    const struct command_policy *p);

struct request;
/*
 * An operator's REQ_COMMAND on `t` in the open batch: the model must name
 * the command, params are bounded, the envelope judges it, then it is
 * issued. Returns 0 (the command object in r->result), TW_ERR_REFUSED /
 * TW_ERR_INVAL (answer in `r`, nothing written), TW_ERR_FULL (stored
 * `refused` by a bound or the envelope, answer in `r`: 422 for range and
 * interlock, 429 for rate and bounds), or TW_ERR_DB / TW_ERR_NOMEM.
 */
int commands_request(struct commands *c, struct store *st, struct outbox *o, struct twin_map *m,
    struct twin *t, struct request *r, const struct command_policy *p);

/* Pending commands in memory (for /metrics). */
unsigned commands_pending(const struct commands *c);

#endif
