/*
 * Desired state: operators' and rules' patches checked against the model,
 * whether each desired value is still in the delta (not yet reported
 * within tolerance), and the delta's retained publication on
 * {desired_topic}. Owns the list of twins whose delta is to be published
 * after the commit; one entry per twin, however often it changed.
 * Owned by the engine's thread.
 */
#ifndef TW_DESIRED_H
#define TW_DESIRED_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "outbox.h"
#include "request.h"
#include "twin.h"

struct desired_out {
	struct twin **v;	/* twins whose delta changed in this batch; bounded by the twins */
	unsigned n, cap;
	uint64_t seq;		/* grows per delta publication */
	const char *topic_tmpl;	/* borrowed: [mqtt] desired_topic */
};

void desired_out_init(struct desired_out *d, const char *topic_tmpl);
void desired_out_cleanup(struct desired_out *d);
/* Forgets the list (the twins are about to be rebuilt). */
void desired_out_clear(struct desired_out *d);

/* `t`'s delta is to be published (again) after the next commit; it is pending until then. */
void desired_want(struct desired_out *d, struct twin *t);

/*
 * Recomputes whether `de` is in the delta from the reported value. `now`
 * is when the change happened: the reading's ts on telemetry, the wall
 * clock on a new desired value. Returns 1 if membership changed.
 */
int desired_eval(struct twin *t, struct desired *de, int64_t now);

/*
 * Checks every entry of a patch ({prop: value or null}) against the
 * model: a writable Property, the right type, a finite number within
 * range, and room in the byte budget of `m`. Returns 0, or
 * TW_ERR_REFUSED with the answer filled in `r` (codes not_writable,
 * wrong_type, bad_value, out_of_range, memory_limit). A refused patch
 * changes nothing.
 */
int desired_check(const struct twin_map *m, const struct twin *t, const cJSON *patch,
    struct request *r);

/*
 * Applies a checked patch to `t` at wall time `now`: new values start a
 * new episode, null withdraws; `by` (a token's name, "rule:NAME", or "")
 * is recorded on each value set. Grows the version once if anything
 * changed. Returns 0 (with *changed) or TW_ERR_NOMEM.
 */
int desired_apply(struct desired_out *d, struct twin_map *m, struct twin *t,
    const cJSON *patch, const char *by, int64_t now, int *changed);

/*
 * An operator's REQ_DESIRED on `t` in the open batch: If-Match, then the
 * checks, the envelope (interlock, rate; `fresh` as the envelope takes it),
 * then the patch. Returns 0 (r->version set), TW_ERR_CONFLICT,
 * TW_ERR_REFUSED or TW_ERR_FULL (the rate; with the answer in `r`;
 * nothing changed), or TW_ERR_NOMEM.
 */
struct status_rule;
int desired_request(struct desired_out *d, struct twin_map *m, struct twin *t, struct request *r,
    int64_t now, const struct status_rule *fresh);

/* After the commit: publishes the delta of every twin on the list, while connected. */
void desired_publish(struct desired_out *d, struct twin_map *m, struct outbox *o);
/* A PUBACK of a delta: the twin is no longer pending unless a newer delta is out. */
void desired_taken(struct twin_map *m, const struct outbox_ack *ack);

/* The delta as a JSON object (the caller owns it), or NULL on allocation failure. */
cJSON *desired_delta_json(const struct twin *t);

/* The first desired value of `t` pending longer than its timeout at `now`, or NULL. */
const struct desired *desired_overdue(const struct twin *t, int64_t now, int64_t dflt_ms);
/* The convergence timeout of `de`: its model's, else `dflt_ms`. */
int64_t desired_timeout(const struct desired *de, int64_t dflt_ms);

#endif
