/* The sync engine: ring to twins to SQLite, one batch per commit. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert.h"
#include "clock.h"
#include "err.h"
#include "events.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "mqtt.h"
#include "rules.h"
#include "sync.h"
#include "twin.h"

#define TICK_MS		1000	/* status and convergence timers */
#define TOPIC_MAX	512

/* A publication of ours the broker has not acknowledged yet. */
struct outstanding {
	int mid;
	struct twin *twin;	/* a delta publication */
	uint64_t delta_seq;	/* the delta it carried; a newer one keeps the twin pending */
	char cmd[32];		/* or a command's id */
	UT_hash_handle hh;
};

/* A command pending (not yet taken by the broker) or sent (awaiting the asset's answer). */
struct inflight {
	char id[32];
	char twin[TWIN_ID_MAX + 1];
	char *command;
	char *params;		/* JSON text */
	char *rule;		/* NULL for an operator's */
	int64_t source_ts, issued_ts, sent_ts;
	int published;		/* handed to libmosquitto */
	int committed;		/* its row is on disk (only then is it published) */
};

/* A message and/or live event to send once the batch that made it is committed. */
struct pending_msg {
	char *topic;		/* MQTT topic, or NULL */
	const char *event;	/* event type, or NULL */
	char *twin;		/* the twin the event is about */
	char *payload;		/* JSON */
};

/* The interned property names of a rule's expressions, by expr_refs index. */
struct rule_bind {
	const char *when[EXPR_REFS_MAX];
	const char *clear[EXPR_REFS_MAX];
};

/* A rule alert found open in the database at start-up. */
struct open_alert {
	char twin[TWIN_ID_MAX + 1];
	char rule[TWIN_ID_MAX + 1];
	int64_t id, raised_ts, shelved_until;
};

struct sync {
	const struct conf *conf;
	struct ring *ring;
	struct store *store;		/* owned; used by this thread only */
	struct twin_map *twins;		/* owned; used by this thread only */
	struct mqtt *mqtt;
	struct events *events;
	struct status_rule status_rule;
	const char **names;		/* scratch: interned names of one record */
	pthread_t thread;
	int started;

	/* Batch state, this thread only. */
	int in_txn;
	uint64_t batch_seq;		/* highest seq in the open transaction */
	uint32_t batch_gen;		/* highest connection generation in it */
	uint64_t batch_msgs, batch_vals;
	uint32_t failed_gen;		/* records of this generation or older are dropped */
	int map_invalid;		/* a reload after a rollback failed: the twins are unknown */
	int started_loading;		/* the first load is done: later loads follow a rollback */
	struct twin **publish;		/* twins whose delta changed in this batch */
	unsigned npublish, cap_publish;
	struct pending_msg *msgs;	/* alerts raised or cleared in this batch */
	unsigned nmsgs, cap_msgs;
	struct inflight *cmds;		/* bounded by [commands] max_inflight */
	unsigned ncmds, cap_cmds;
	int cmds_to_publish;		/* some pending command waits for the commit */
	struct outstanding *outstanding;	/* by mid; at most one per publication in flight */
	uint64_t delta_seq;		/* grows per delta publication */
	int64_t next_tick;
	struct log_limit drop_log;

	/* Shared with other threads, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t progress;
	uint64_t committed_seq;		/* every record up to here is on disk */
	uint64_t failed_seq;		/* records up to here were not stored */
	int stopping;
	int closed;			/* the thread has ended: requests are refused */
	struct model_set *models;	/* in force; swapped under lock on reload */
	struct rule_set *rules;		/* in force; swapped under lock on reload */
	struct rule_bind *binds;	/* per rule of `rules`: interned names its expressions read */
	struct open_alert *opened;	/* rule alerts open at start-up, until the first bind */
	int nopened;
	struct sync_req *reqs;		/* waiting requests, oldest first */
	atomic_int nreqs;
	atomic_int failing;
};

/* ---- loading ---- */

static int
load_twin(void *arg, const struct store_twin_row *row)
{
	struct sync *s = arg;
	struct twin *t = twin_add(s->twins, row->id, row->created_ts);

	if (t == NULL) {
		log_warnx("database holds more twins than [twins] max_twins allows");
		return 1;
	}
	t->version = row->version;
	t->last_seen_ts = row->last_seen_ts;
	t->delta_pending = row->delta_pending;
	if (twin_set_meta(t, row->model, row->model != NULL ?
	    model_find(s->models, row->model) : NULL, row->parent) != TW_OK)
		return 1;
	/* Judged now, so that a start is not a storm of status events. */
	t->status = twin_status_of(&s->status_rule, t->model, t->last_seen_ts, clock_now_ms());
	return 0;
}

static int
load_series(void *arg, const struct store_series_row *row)
{
	struct sync *s = arg;
	struct twin *t = twin_find(s->twins, row->twin, strlen(row->twin));
	const char *name;
	struct prop *p;

	if (t == NULL)
		return 0;	/* the twin was beyond max_twins, already reported */
	if ((name = twin_intern(s->twins, row->prop)) == NULL ||
	    (p = twin_prop_add(s->twins, t, name, row->id)) == NULL) {
		log_warnx("twin %s: cannot load property %s (max_properties_per_twin?)",
		    row->twin, row->prop);
		return 0;
	}
	p->mp = t->model != NULL ? model_prop(t->model, name) : NULL;
	if (row->val.type != 0 && twin_prop_set(p, row->ts, &row->val) < 0)
		return 1;
	p->out_of_range = row->out_of_range;
	p->dirty = 0;
	/* The twin clock goes on from the newest value and the time since it arrived. */
	if (row->ts > t->newest_ts) {
		t->newest_ts = row->ts;
		t->newest_mono = clock_mono_ms() - (clock_now_ms() - t->last_seen_ts);
	}
	return 0;
}

static int
load_desired(void *arg, const struct store_desired_row *row)
{
	struct sync *s = arg;
	struct twin *t = twin_find(s->twins, row->twin, strlen(row->twin));
	const char *name;
	struct desired *d;

	if (t == NULL)
		return 0;
	if ((name = twin_intern(s->twins, row->prop)) == NULL ||
	    (d = twin_desired_set(t, name, &row->val, row->ts)) == NULL)
		return 1;
	d->pending_since_ts = row->pending_since_ts;
	d->published = row->published;
	d->converged_ts = row->converged_ts;
	d->in_delta = row->in_delta;
	d->dirty = 0;
	return 0;
}

static int
load_alert(void *arg, const struct store_alert_row *row)
{
	struct sync *s = arg;
	struct twin *t = twin_find(s->twins, row->twin, strlen(row->twin));

	if (t != NULL && strcmp(row->rule, "desired_not_converged") == 0) {
		if (!row->active)
			return 0;
		t->alert_id = row->id;
		t->alert_raised_ts = row->raised_ts;
	} else if (t != NULL) {
		struct open_alert *o = realloc(s->opened, (size_t)(s->nopened + 1) * sizeof(*o));

		if (o == NULL)
			return 1;
		s->opened = o;
		o = &s->opened[s->nopened++];
		snprintf(o->twin, sizeof(o->twin), "%s", row->twin);
		snprintf(o->rule, sizeof(o->rule), "%s", row->rule);
		o->id = row->active ? row->id : 0;
		o->raised_ts = row->raised_ts;
		o->shelved_until = row->shelved_until_ts;
	}
	return 0;
}

static int
opened_cmp2(const struct open_alert *a, const char *twin, const char *rule)
{
	int c = strcmp(a->twin, twin);

	return c != 0 ? c : strcmp(a->rule, rule);
}

static int
opened_cmp(const void *x, const void *y)
{
	const struct open_alert *a = x, *b = y;

	return opened_cmp2(a, b->twin, b->rule);
}

/* The first entry for (twin, rule) in the sorted list, or nopened: binding stays O(log n). */
static int
opened_first(const struct sync *s, const char *twin, const char *rule)
{
	int lo = 0, hi = s->nopened;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (opened_cmp2(&s->opened[mid], twin, rule) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int load_command(void *arg, const struct store_command_row *row);
static void inflight_clear(struct sync *s);
static void inflight_forget_uncommitted(struct sync *s);
static int rebind_rules(void *arg, struct twin *t);
static int want_pending(void *arg, struct twin *t);
static int command_answer(struct sync *s, const struct rec *r);
static void commands_publish(struct sync *s);
static int commands_expire(struct sync *s);

static int
sync_load(struct sync *s)
{
	static const struct store_loader loader = {
		load_twin, load_series, load_desired, load_alert, load_command,
	};
	int64_t t0 = clock_mono_us();
	struct outstanding *o, *tmp;
	int rc;

	/* Publications awaiting a PUBACK point at twins about to be rebuilt. */
	HASH_ITER(hh, s->outstanding, o, tmp) {
		if (o->cmd[0] != '\0')
			continue;	/* commands are found by id, they stay */
		HASH_DEL(s->outstanding, o);
		free(o);
	}
	s->npublish = 0;
	twin_map_clear(s->twins);
	free(s->opened);
	s->opened = NULL;
	s->nopened = 0;
	rc = store_load(s->store, &loader, s);
	s->started_loading = 1;
	if (s->nopened > 1)
		qsort(s->opened, (size_t)s->nopened, sizeof(*s->opened), opened_cmp);
	/* Rules come back with their open alerts; then the list has served. */
	if (rc == TW_OK && s->binds != NULL && twin_each(s->twins, rebind_rules, s) != 0)
		rc = TW_ERR_NOMEM;
	free(s->opened);
	s->opened = NULL;
	s->nopened = 0;
	if (rc != TW_OK)
		return rc;
	/* Deltas whose acknowledgement was lost with the rollback go out again. */
	twin_each(s->twins, want_pending, s);
	atomic_store(&metrics.twins, twin_count(s->twins));
	log_info("loaded %u twins in %.1f ms", twin_count(s->twins),
	    (double)(clock_mono_us() - t0) / 1000.0);
	return TW_OK;
}

static void sync_publish_deltas(struct sync *s);
static void sync_publish_msgs(struct sync *s);
static void sync_queue_twin_event(struct sync *s, const struct twin *t);
static void msgs_clear(struct sync *s);

static int rules_tick_twin(void *arg, struct twin *t);
static int rules_bind_twin(struct sync *s, struct twin *t);
static void windows_feed(struct twin *t, const char *name, int64_t ts, const struct tw_val *v);
static int rules_eval(struct sync *s, struct twin *t, const char *const *names, int nnames,
    int64_t source_ts);
static void rules_alert_changed(struct sync *s, const struct store_alert_row *a);

/* ---- batches and the commit protocol ---- */

static void
sync_progress(struct sync *s, uint64_t committed, uint64_t failed)
{
	pthread_mutex_lock(&s->lock);
	if (committed > s->committed_seq)
		s->committed_seq = committed;
	if (failed > s->failed_seq)
		s->failed_seq = failed;
	pthread_cond_broadcast(&s->progress);
	pthread_mutex_unlock(&s->lock);
}

static int
sync_begin(struct sync *s)
{
	if (s->in_txn)
		return TW_OK;
	if (store_begin(s->store) != TW_OK)
		return TW_ERR_DB;
	s->in_txn = 1;
	s->batch_msgs = s->batch_vals = 0;
	return TW_OK;
}

/*
 * A failed batch: roll back, rebuild the twins from what is on disk, and
 * refuse everything read on the same connection, because its
 * acknowledgements are queued behind those of the failed records. The
 * MQTT thread reconnects without writing them and the broker redelivers.
 */
static void
sync_fail(struct sync *s, const char *what)
{
	log_warnx("database: %s failed (%s); rolling back %llu messages, the broker will "
	    "redeliver them", what, store_errmsg(s->store), (unsigned long long)s->batch_msgs);
	store_rollback(s->store);
	metrics_add(&metrics.commit_failures, 1);
	atomic_store(&s->failing, 1);
	atomic_store(&metrics.db_failing, 1);
	s->failed_gen = s->batch_gen;
	msgs_clear(s);
	inflight_forget_uncommitted(s);
	/* Until a reload works, the map is not the truth: nothing may be applied to it. */
	s->map_invalid = sync_load(s) != TW_OK;
	if (s->map_invalid)
		log_warnx("database: reloading the twins failed; will retry with the next batch");
	s->in_txn = 0;
	sync_progress(s, 0, s->batch_seq);
}

static int
flush_twin(void *arg, struct twin *t)
{
	struct sync *s = arg;
	struct store_twin_row row = {
		.id = t->id, .model = t->model_id, .parent = t->parent, .version = t->version,
		.last_seen_ts = t->last_seen_ts, .created_ts = t->created_ts,
		.delta_pending = t->delta_pending,
	};

	if (store_twin_put(s->store, &row) != TW_OK)
		return TW_ERR_DB;
	t->state_dirty = 1;
	/* Formatting costs: only when someone listens, and only for a new version. */
	if (t->version != t->event_version && events_listening(s->events))
		sync_queue_twin_event(s, t);
	t->event_version = t->version;
	for (uint32_t i = 0; i < t->nprops; i++) {
		struct prop *p = &t->props[i];

		if (!p->dirty)
			continue;
		if (store_series_put(s->store, p->series, p->ts, &p->val, p->out_of_range) != TW_OK)
			return TW_ERR_DB;
		p->dirty = 0;
	}
	for (uint32_t i = 0; i < t->ndesired; i++) {
		struct desired *d = &t->desired[i];
		struct store_desired_row dr = {
			.prop = d->name, .val = d->val, .ts = d->ts,
			.pending_since_ts = d->pending_since_ts, .published = d->published,
			.converged_ts = d->converged_ts, .in_delta = d->in_delta,
		};

		if (!d->dirty)
			continue;
		if ((d->removed ? store_desired_del(s->store, t->id, d->name) :
		    store_desired_put(s->store, t->id, &dr)) != TW_OK)
			return TW_ERR_DB;
		d->dirty = 0;
	}
	twin_desired_compact(t);
	return TW_OK;
}


static int
sync_commit(struct sync *s)
{
	int64_t t0 = clock_mono_us();

	if (twin_flush_dirty(s->twins, flush_twin, s) != TW_OK) {
		sync_fail(s, "writing twin state");
		return TW_ERR_DB;
	}
	if (store_commit(s->store) != TW_OK) {
		sync_fail(s, "commit");
		return TW_ERR_DB;
	}
	s->in_txn = 0;
	metrics_commit(s->batch_msgs, clock_mono_us() - t0);
	metrics_add(&metrics.applied, s->batch_msgs);
	metrics_add(&metrics.values, s->batch_vals);
	if (atomic_exchange(&s->failing, 0)) {
		atomic_store(&metrics.db_failing, 0);
		log_info("database: commits work again");
	}
	sync_progress(s, s->batch_seq, 0);
	for (unsigned i = 0; i < s->ncmds; i++)
		s->cmds[i].committed = 1;
	/* Only what is committed is published: nothing may run ahead of the disk. */
	sync_publish_deltas(s);
	sync_publish_msgs(s);
	commands_publish(s);
	return TW_OK;
}

/* ---- desired state and its delta ---- */

static double
tolerance_of(const struct desired *d)
{
	return d->mp != NULL ? d->mp->tolerance : 0;
}

static void
want_publish(struct sync *s, struct twin *t)
{
	t->delta_pending = 1;
	for (unsigned i = 0; i < s->npublish; i++)
		if (s->publish[i] == t)
			return;
	if (s->npublish == s->cap_publish) {
		unsigned cap = s->cap_publish == 0 ? 16 : s->cap_publish * 2;
		struct twin **p = realloc(s->publish, cap * sizeof(*p));

		/* Without room, the delta_pending flag still republishes it at the next start. */
		if (p == NULL)
			return;
		s->publish = p;
		s->cap_publish = cap;
	}
	s->publish[s->npublish++] = t;
}

/*
 * Recomputes whether `d` is in the delta from the reported value. `now`
 * is when the change happened: the reported value's ts on telemetry, the
 * wall clock on a new desired value. Returns 1 if membership changed.
 */
static int
desired_eval(struct twin *t, struct desired *d, int64_t now)
{
	struct prop *p = twin_prop(t, d->name);
	int meets = p != NULL && p->val.type != 0 &&
	    twin_value_meets(&p->val, &d->val, tolerance_of(d));

	if (meets && (d->in_delta || d->converged_ts == 0)) {
		d->in_delta = 0;
		d->pending_since_ts = 0;
		d->converged_ts = now;
		d->dirty = 1;
		return 1;
	}
	if (!meets && !d->in_delta) {
		d->in_delta = 1;
		d->pending_since_ts = now;
		d->converged_ts = 0;
		d->dirty = 1;
		return 1;
	}
	return 0;
}

static cJSON *
delta_json(const struct twin *t)
{
	cJSON *o = cJSON_CreateObject();

	for (uint32_t i = 0; o != NULL && i < t->ndesired; i++) {
		const struct desired *d = &t->desired[i];

		if (d->in_delta && !d->removed &&
		    !cJSON_AddItemToObject(o, d->name, value_to_json(&d->val))) {
			cJSON_Delete(o);
			return NULL;
		}
	}
	return o;
}

/* Publishes the delta of `t`, retained, or an empty retained message when it is empty. */
static void
sync_publish_delta(struct sync *s, struct twin *t)
{
	char topic[TOPIC_MAX], *payload = NULL;
	struct outstanding *o;
	cJSON *delta;
	int mid = 0, len = 0;

	if (s->mqtt == NULL || mqtt_topic(s->conf->desired_topic, t->id, topic,
	    sizeof(topic)) != TW_OK)
		return;
	if ((delta = delta_json(t)) == NULL)
		return;
	if (events_listening(s->events)) {
		cJSON *ev = cJSON_CreateObject();
		char *js;

		cJSON_AddStringToObject(ev, "twin", t->id);
		cJSON_AddNumberToObject(ev, "version", (double)t->version);
		cJSON_AddItemReferenceToObject(ev, "delta", delta);
		if ((js = cJSON_PrintUnformatted(ev)) != NULL)
			events_emit(s->events, "desired", t->id, js);
		cJSON_free(js);
		cJSON_Delete(ev);
	}
	if (delta->child != NULL) {
		/* Out of memory: publish nothing rather than an empty "all reached". */
		if ((payload = cJSON_PrintUnformatted(delta)) == NULL) {
			cJSON_Delete(delta);
			return;
		}
		len = (int)strlen(payload);
	}
	cJSON_Delete(delta);
	{
		if (mqtt_publish(s->mqtt, topic, payload, len, 1, &mid) == TW_OK &&
		    (o = calloc(1, sizeof(*o))) != NULL) {
			/* A reused mid replaces an entry the broker will never acknowledge again. */
			struct outstanding *old;

			HASH_FIND_INT(s->outstanding, &mid, old);
			if (old != NULL) {
				HASH_DEL(s->outstanding, old);
				free(old);
			}
			o->mid = mid;
			o->twin = t;
			o->delta_seq = ++s->delta_seq;
			HASH_ADD_INT(s->outstanding, mid, o);
			for (uint32_t i = 0; i < t->ndesired; i++)
				if (t->desired[i].in_delta) {
					t->desired[i].published++;
					t->desired[i].dirty = 1;
				}
			twin_mark_dirty(s->twins, t);
		}
	}
	cJSON_free(payload);
}

static void
sync_publish_deltas(struct sync *s)
{
	for (unsigned i = 0; i < s->npublish; i++)
		sync_publish_delta(s, s->publish[i]);
	s->npublish = 0;
}

/* A pending delta goes out (again) after the next commit. */
static int
want_pending(void *arg, struct twin *t)
{
	if (t->delta_pending)
		want_publish(arg, t);
	return 0;
}

static void command_sent(struct sync *s, const char *id);

/* The broker holds our delta: the twin is no longer pending, unless a newer one is out. */
static void
sync_puback(struct sync *s, const struct rec *r)
{
	int mid = (int)r->mid;
	struct outstanding *o, *it, *tmp;
	int newer = 0;

	HASH_FIND_INT(s->outstanding, &mid, o);
	if (o == NULL)
		return;		/* an alert or a publication from before a reload */
	HASH_DEL(s->outstanding, o);
	if (o->cmd[0] != '\0') {
		command_sent(s, o->cmd);
		free(o);
		return;
	}
	HASH_ITER(hh, s->outstanding, it, tmp)
		if (it->twin == o->twin)
			newer = 1;
	if (!newer && o->twin->delta_pending) {
		o->twin->delta_pending = 0;
		twin_mark_dirty(s->twins, o->twin);
	}
	free(o);
}

/* ---- alerts raised by the engine itself ---- */

static void
msgs_clear(struct sync *s)
{
	for (unsigned i = 0; i < s->nmsgs; i++) {
		free(s->msgs[i].topic);
		free(s->msgs[i].twin);
		cJSON_free(s->msgs[i].payload);
	}
	s->nmsgs = 0;
}

static void
sync_publish_msgs(struct sync *s)
{
	int mid;

	for (unsigned i = 0; i < s->nmsgs; i++) {
		struct pending_msg *m = &s->msgs[i];

		if (m->topic != NULL && s->mqtt != NULL)
			mqtt_publish(s->mqtt, m->topic, m->payload, (int)strlen(m->payload), 0, &mid);
		if (m->event != NULL)
			events_emit(s->events, m->event, m->twin, m->payload);
	}
	msgs_clear(s);
}

/* Queues `o` (consumed) for after the commit: on `topic` if not NULL, as `event` if not NULL. */
static void
sync_queue(struct sync *s, const char *topic, const char *event, const char *twin, cJSON *o)
{
	struct pending_msg *m;

	if (s->nmsgs == s->cap_msgs) {
		unsigned cap = s->cap_msgs == 0 ? 16 : s->cap_msgs * 2;

		if ((m = realloc(s->msgs, cap * sizeof(*m))) == NULL) {
			cJSON_Delete(o);
			return;
		}
		s->msgs = m;
		s->cap_msgs = cap;
	}
	m = &s->msgs[s->nmsgs];
	m->payload = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
	m->topic = topic != NULL ? strdup(topic) : NULL;
	m->twin = strdup(twin);
	m->event = event;
	cJSON_Delete(o);
	if (m->payload == NULL || (topic != NULL && m->topic == NULL) || m->twin == NULL) {
		cJSON_free(m->payload);
		free(m->topic);
		free(m->twin);
		return;
	}
	s->nmsgs++;
}

/* Queues the alert object (REST shape) for plant/{twin}/alert and the event stream. */
static void
sync_queue_alert(struct sync *s, const char *twin, const struct store_alert_row *a)
{
	char topic[TOPIC_MAX];

	if (mqtt_topic(s->conf->alert_topic, twin, topic, sizeof(topic)) == TW_OK)
		sync_queue(s, topic, "alert", twin, alert_json(a));
}

/* A "twin" event: the new version and the reported values this batch changed. */
static void
sync_queue_twin_event(struct sync *s, const struct twin *t)
{
	cJSON *o = cJSON_CreateObject(), *rep;

	if (o == NULL || cJSON_AddStringToObject(o, "twin", t->id) == NULL ||
	    cJSON_AddNumberToObject(o, "version", (double)t->version) == NULL ||
	    (t->last_seen_ts > 0 ? cJSON_AddNumberToObject(o, "last_seen_ts",
	    (double)t->last_seen_ts) : cJSON_AddNullToObject(o, "last_seen_ts")) == NULL ||
	    (rep = cJSON_AddObjectToObject(o, "reported")) == NULL) {
		cJSON_Delete(o);
		return;
	}
	for (uint32_t i = 0; i < t->nprops; i++) {
		const struct prop *p = &t->props[i];
		cJSON *v;

		if (!p->dirty)
			continue;
		if ((v = cJSON_CreateObject()) == NULL || !cJSON_AddItemToObject(rep, p->name, v)) {
			cJSON_Delete(v);
			break;
		}
		cJSON_AddItemToObject(v, "value", value_to_json(&p->val));
		cJSON_AddNumberToObject(v, "ts", (double)p->ts);
		cJSON_AddBoolToObject(v, "out_of_range", p->out_of_range);
	}
	sync_queue(s, NULL, "twin", t->id, o);
}

static int64_t
converge_timeout(const struct sync *s, const struct desired *d)
{
	return d->mp != NULL && d->mp->converge_ms > 0 ? d->mp->converge_ms :
	    s->conf->converge_timeout_ms;
}

/* The first desired entry of `t` pending longer than its timeout, or NULL. */
static const struct desired *
overdue(const struct sync *s, const struct twin *t, int64_t now)
{
	for (uint32_t i = 0; i < t->ndesired; i++) {
		const struct desired *d = &t->desired[i];

		if (d->in_delta && !d->removed && d->pending_since_ts > 0 &&
		    now - d->pending_since_ts >= converge_timeout(s, d))
			return d;
	}
	return NULL;
}

/*
 * desired_not_converged: raised once per episode when a desired value is
 * still not reported past its timeout, cleared when nothing is overdue.
 */
static int
check_convergence(void *arg, struct twin *t)
{
	struct sync *s = arg;
	int64_t now = clock_now_ms();
	const struct desired *d = overdue(s, t, now);
	struct store_alert_row a = { .twin = t->id, .rule = "desired_not_converged",
	    .severity = "warning" };
	struct desired *first = t->ndesired > 0 ? &t->desired[0] : NULL;
	char msg[256];

	if ((d != NULL) == (t->alert_id != 0) || sync_begin(s) != TW_OK)
		return 0;
	if (d != NULL) {
		snprintf(msg, sizeof(msg), "%s has not reached its desired value within %llds",
		    d->name, (long long)(converge_timeout(s, d) / 1000));
		a.message = msg;
		a.val = d->val;
		a.active = 1;
		a.raised_ts = now;
		if (store_alert_add(s->store, &a, &a.id) != TW_OK)
			return 1;
		t->alert_id = a.id;
		log_info("twin %s: alert desired_not_converged raised: %s", t->id, msg);
	} else {
		a.id = t->alert_id;
		a.message = "every desired value is reached or withdrawn";
		a.active = 0;
		a.cleared_ts = now;
		a.raised_ts = t->alert_raised_ts;
		if (first != NULL)
			a.val = first->val;
		if (store_alert_put(s->store, &a) != TW_OK)
			return 1;
		t->alert_id = 0;
		log_info("twin %s: alert desired_not_converged cleared", t->id);
	}
	t->alert_raised_ts = a.raised_ts;
	sync_queue_alert(s, t->id, &a);
	return 0;
}

/* The twin document as the state topic carries it: what twind holds in memory. */
static cJSON *
state_json(const struct sync *s, const struct twin *t, int64_t now)
{
	cJSON *o = cJSON_CreateObject(), *rep, *des, *delta;

	if (o == NULL || cJSON_AddStringToObject(o, "id", t->id) == NULL ||
	    cJSON_AddStringToObject(o, "model", t->model_id != NULL ? t->model_id : MODEL_ANY_ID) == NULL ||
	    (t->parent != NULL ? cJSON_AddStringToObject(o, "parent", t->parent) :
	    cJSON_AddNullToObject(o, "parent")) == NULL ||
	    cJSON_AddNumberToObject(o, "version", (double)t->version) == NULL ||
	    cJSON_AddStringToObject(o, "status", twin_status_name(t->status)) == NULL ||
	    cJSON_AddNumberToObject(o, "last_seen_ts", (double)t->last_seen_ts) == NULL ||
	    (rep = cJSON_AddObjectToObject(o, "reported")) == NULL ||
	    (des = cJSON_AddObjectToObject(o, "desired")) == NULL ||
	    (delta = cJSON_AddObjectToObject(o, "delta")) == NULL) {
		cJSON_Delete(o);
		return NULL;
	}
	for (uint32_t i = 0; i < t->nprops; i++) {
		const struct prop *p = &t->props[i];
		cJSON *v = cJSON_CreateObject();
		int stale = p->mp != NULL && p->mp->period_ms > 0 &&
		    now - p->ts > p->mp->period_ms * s->conf->stale_factor;

		if (v == NULL || !cJSON_AddItemToObject(rep, p->name, v))
			break;
		cJSON_AddItemToObject(v, "value", value_to_json(&p->val));
		cJSON_AddNumberToObject(v, "ts", (double)p->ts);
		cJSON_AddBoolToObject(v, "stale", stale);
		cJSON_AddBoolToObject(v, "out_of_range", p->out_of_range);
	}
	for (uint32_t i = 0; i < t->ndesired; i++) {
		const struct desired *d = &t->desired[i];

		if (d->removed)
			continue;
		cJSON_AddItemToObject(des, d->name, value_to_json(&d->val));
		if (d->in_delta)
			cJSON_AddItemToObject(delta, d->name, value_to_json(&d->val));
	}
	return o;
}

/*
 * The optional state topic: each changed twin's document, retained, at
 * most once per state_interval, so that a busy twin costs one message per
 * interval however fast it reports.
 */
static int
publish_state(void *arg, struct twin *t)
{
	struct sync *s = arg;
	int64_t mono = clock_mono_ms();
	char topic[TOPIC_MAX], *js;
	cJSON *doc;
	int mid;

	if (!t->state_dirty || mono - t->state_published_ms < s->conf->state_interval_ms ||
	    mqtt_topic(s->conf->state_topic, t->id, topic, sizeof(topic)) != TW_OK)
		return 0;
	if ((doc = state_json(s, t, clock_now_ms())) == NULL)
		return 0;
	if ((js = cJSON_PrintUnformatted(doc)) != NULL &&
	    mqtt_publish(s->mqtt, topic, js, (int)strlen(js), 1, &mid) == TW_OK) {
		t->state_dirty = 0;
		t->state_published_ms = mono;
	}
	cJSON_free(js);
	cJSON_Delete(doc);
	return 0;
}

/* Status moves with time alone: judged on the timer, a change is an event. */
static int
check_status(void *arg, struct twin *t)
{
	struct sync *s = arg;
	int st = twin_status_of(&s->status_rule, t->model, t->last_seen_ts, clock_now_ms());
	char js[320];

	if (st == t->status)
		return 0;
	if (events_listening(s->events)) {
		snprintf(js, sizeof(js), "{\"twin\":\"%s\",\"status\":\"%s\",\"previous\":\"%s\","
		    "\"last_seen_ts\":%lld}", t->id, twin_status_name(st), twin_status_name(t->status),
		    (long long)t->last_seen_ts);
		events_emit(s->events, "status", t->id, js);
	}
	t->status = st;
	t->state_dirty = 1;
	return 0;
}

static void
sync_tick(struct sync *s)
{
	int64_t now = clock_mono_ms();

	if (now < s->next_tick || s->map_invalid)
		return;
	s->next_tick = now + TICK_MS;
	twin_each(s->twins, check_status, s);
	if (commands_expire(s) != TW_OK) {
		sync_fail(s, "writing a command's status");
		return;
	}
	/* for, age() and clearing move with time: every rule is judged on the timer too. */
	if (s->rules->n > 0 && twin_each(s->twins, rules_tick_twin, s) != 0) {
		sync_fail(s, "writing an alert");
		return;
	}
	if (s->in_txn)
		sync_commit(s);
	commands_publish(s);
	if (twin_each(s->twins, check_convergence, s) != 0 && s->in_txn)
		sync_fail(s, "writing an alert");
	else if (s->in_txn)
		sync_commit(s);
	/*
	 * Only committed state goes out, and only while connected: libmosquitto
	 * would queue every document in memory while the broker is away; the
	 * twins stay marked and go out after the reconnect.
	 */
	if (!s->in_txn && s->conf->state_topic[0] != '\0' && s->mqtt != NULL &&
	    mqtt_connected(s->mqtt))
		twin_each(s->twins, publish_state, s);
}

/* ---- telemetry ---- */

static void
sync_drop(struct sync *s, const struct rec *r, int reason)
{
	metrics_add(&metrics.dropped[reason], 1);
	log_limited(&s->drop_log, "twin %s: message dropped: %s", r->id,
	    ingest_reason_name(reason));
}

static void
rec_value(const struct rec_val *v, struct tw_val *out)
{
	out->type = v->type;
	out->num = v->num;
	out->str = v->type == VAL_STR ? rec_val_str(v) : NULL;
}

/* Whether `v` has the model's schema. */
static int
schema_ok(const struct model_prop *mp, const struct tw_val *v)
{
	if (v->type != mp->schema)
		return 0;
	return !mp->integer || v->num == (double)(int64_t)v->num;
}

static int
out_of_range(const struct model_prop *mp, const struct tw_val *v)
{
	return v->type == VAL_NUM && mp != NULL &&
	    ((mp->has_min && v->num < mp->min) || (mp->has_max && v->num > mp->max));
}

/*
 * Finds or creates the twin of an update, interns its property names
 * into s->names and checks every value against the model. Returns the
 * twin, or NULL with *reason set; nothing is changed then.
 */
static struct twin *
sync_twin_for(struct sync *s, const struct rec *r, int *reason)
{
	struct twin *t = twin_find(s->twins, r->id, r->id_len);
	const struct rec_val *v = rec_val_first(r);
	int fresh = 0;

	*reason = INGEST_OK;
	if (t == NULL && !s->conf->auto_create) {
		*reason = DROP_UNKNOWN_TWIN;
		return NULL;
	}
	for (uint16_t i = 0; i < r->nvals; i++, v = rec_val_next(v)) {
		const struct model_prop *mp;
		struct tw_val val;

		s->names[i] = twin_intern_find(s->twins, v->name);
		if (t == NULL || s->names[i] == NULL || twin_prop(t, s->names[i]) == NULL)
			fresh++;
		if (t == NULL || t->model == NULL)
			continue;
		rec_value(v, &val);
		if ((mp = model_prop(t->model, v->name)) == NULL) {
			if (t->model->strict) {
				*reason = DROP_UNKNOWN_PROPERTY;
				return NULL;
			}
		} else if (!schema_ok(mp, &val)) {
			*reason = DROP_WRONG_TYPE;
			return NULL;
		}
	}
	if (t != NULL ? !twin_props_room(s->twins, t, fresh) : fresh > s->conf->max_props_per_twin) {
		*reason = DROP_PROPERTY_LIMIT;
		return NULL;
	}
	/* Accepted: only now do new names and a new twin come into being. */
	v = rec_val_first(r);
	for (uint16_t i = 0; i < r->nvals; i++, v = rec_val_next(v))
		if (s->names[i] == NULL && (s->names[i] = twin_intern(s->twins, v->name)) == NULL) {
			*reason = DROP_PROPERTY_LIMIT;
			return NULL;
		}
	if (t == NULL) {
		if ((t = twin_add(s->twins, r->id, r->arrival_ms)) == NULL) {
			*reason = DROP_TWIN_LIMIT;
			return NULL;
		}
		twin_mark_dirty(s->twins, t);
		atomic_store(&metrics.twins, twin_count(s->twins));
		if (rules_bind_twin(s, t) != TW_OK)
			log_warnx("twin %s: out of memory binding its rules", t->id);
	}
	return t;
}

/* Applies one update inside the open transaction. Returns 0 or TW_ERR_DB/NOMEM. */
static int
sync_apply(struct sync *s, const struct rec *r)
{
	const struct rec_val *v = rec_val_first(r);
	struct tw_val val;
	struct desired *d;
	struct prop *p;
	struct twin *t;
	int reason, changed = 0, rc;

	if ((t = sync_twin_for(s, r, &reason)) == NULL) {
		sync_drop(s, r, reason);
		return TW_OK;
	}
	for (uint16_t i = 0; i < r->nvals; i++, v = rec_val_next(v)) {
		rec_value(v, &val);
		if ((p = twin_prop(t, s->names[i])) == NULL) {
			int64_t series;

			if (store_series_add(s->store, t->id, s->names[i], &series) != TW_OK)
				return TW_ERR_DB;
			if ((p = twin_prop_add(s->twins, t, s->names[i], series)) == NULL)
				return TW_ERR_NOMEM;
			p->mp = t->model != NULL ? model_prop(t->model, s->names[i]) : NULL;
		}
		/* Every value lands in history, also one older than the reported one. */
		if (store_history_put(s->store, p->series, r->ts, &val) != TW_OK)
			return TW_ERR_DB;
		windows_feed(t, p->name, r->ts, &val);
		if ((rc = twin_prop_set(p, r->ts, &val)) < 0)
			return -rc;
		if (rc == 0)
			continue;
		changed = 1;
		/* A sensor that reads out of range is news: stored, flagged and counted. */
		p->out_of_range = out_of_range(p->mp, &val);
		if (p->out_of_range)
			metrics_add(&metrics.out_of_range, 1);
		if ((d = twin_desired(t, p->name)) != NULL && desired_eval(t, d, r->ts))
			want_publish(s, t);
	}
	if (changed)
		t->version++;
	if (r->arrival_ms > t->last_seen_ts && !(r->flags & REC_F_RETAINED))
		t->last_seen_ts = r->arrival_ms;
	if (r->ts >= t->newest_ts) {
		t->newest_ts = r->ts;
		t->newest_mono = clock_mono_ms();
	}
	twin_mark_dirty(s->twins, t);
	s->batch_msgs++;
	s->batch_vals += r->nvals;
	/* Only the rules that read one of these properties. */
	return t->nrs > 0 ? rules_eval(s, t, s->names, r->nvals, r->ts) : TW_OK;
}

static int
sync_record(struct sync *s, const struct rec *r)
{
	if (s->map_invalid && !s->in_txn) {
		if (sync_load(s) == TW_OK)
			s->map_invalid = 0;
		else
			s->failed_gen = r->gen;
	}
	/*
	 * Records read on a connection whose batch failed are refused (their
	 * acknowledgements are never written), except what acknowledges
	 * nothing to the broker: PUBACKs and connection news.
	 */
	if (r->gen <= s->failed_gen && r->kind != REC_PUBACK && r->kind != REC_CONNECTED) {
		sync_progress(s, 0, r->seq);
		return TW_OK;
	}
	if (r->kind == REC_FLUSH) {
		/* Nothing may be open here but what this flush covers. */
		if (s->in_txn) {
			s->batch_seq = r->seq;
			sync_commit(s);
		} else {
			sync_progress(s, r->seq, 0);
		}
		return TW_OK;
	}
	if (sync_begin(s) != TW_OK) {
		s->batch_gen = r->gen;
		s->batch_seq = r->seq;
		s->batch_msgs = 0;
		sync_fail(s, "begin");
		return TW_OK;
	}
	s->batch_seq = r->seq;
	s->batch_gen = r->gen;
	switch (r->kind) {
	case REC_QUARANTINE:
		if (s->conf->quarantine_max > 0 &&
		    store_quarantine_put(s->store, r->arrival_ms, r->id, ingest_reason_name(r->reason),
		    rec_body(r), (int)r->body_len, s->conf->quarantine_max) != TW_OK)
			return TW_ERR_DB;
		metrics_add(&metrics.quarantined, 1);
		return TW_OK;
	case REC_PUBACK:
		sync_puback(s, r);
		return TW_OK;
	case REC_CMD_ACK:
		return command_answer(s, r);
	case REC_CONNECTED:
		/* Deltas the broker never acknowledged (also from before a restart) go out again. */
		twin_each(s->twins, want_pending, s);
		s->cmds_to_publish = 1;
		return TW_OK;
	}
	return sync_apply(s, r);
}

static int command_issue(struct sync *s, const char *twin, const char *command,
    const char *params, const char *rule, int64_t source_ts, char *id_out, size_t id_len);

struct alert_copy {
	struct store_alert_row row;
	char twin[TWIN_ID_MAX + 1], rule[128], severity[16], message[512], str[STR_VALUE_MAX + 1];
	int found;
};

static int
copy_alert(void *arg, const struct store_alert_row *a)
{
	struct alert_copy *c = arg;

	c->row = *a;
	snprintf(c->twin, sizeof(c->twin), "%s", a->twin);
	snprintf(c->rule, sizeof(c->rule), "%s", a->rule);
	snprintf(c->severity, sizeof(c->severity), "%s", a->severity);
	snprintf(c->message, sizeof(c->message), "%s", a->message);
	c->row.twin = c->twin;
	c->row.rule = c->rule;
	c->row.severity = c->severity;
	c->row.message = c->message;
	if (a->val.type == VAL_STR) {
		snprintf(c->str, sizeof(c->str), "%s", a->val.str);
		c->row.val.str = c->str;
	}
	c->found = 1;
	return 0;
}

/* ---- rules ---- */

struct eval_ctx {
	struct sync *s;
	struct twin *t;
	const char *const *names;	/* interned, by expr_refs index */
	const struct expr_refs *refs;
	int64_t now;			/* the twin's clock */
};

static struct prop *
eval_prop(struct eval_ctx *c, int i)
{
	return c->names[i] != NULL ? twin_prop(c->t, c->names[i]) : NULL;
}

static int
env_value(void *arg, int i, struct tw_val *out)
{
	struct prop *p = eval_prop(arg, i);

	if (p == NULL || p->val.type == 0)
		return -1;
	*out = p->val;
	return 0;
}

static int
env_prev(void *arg, int i, struct tw_val *out)
{
	struct prop *p = eval_prop(arg, i);

	if (p == NULL || p->prev_type == 0)
		return -1;
	*out = (struct tw_val){ .type = p->prev_type, .num = p->prev_num };
	return 0;
}

static int
env_age(void *arg, int i, double *out)
{
	struct eval_ctx *c = arg;
	struct prop *p;

	if (i < 0) {
		if (c->t->newest_ts == 0)
			return -1;
		*out = (double)(c->now - c->t->newest_ts) / 1000.0;
		return 0;
	}
	if ((p = eval_prop(c, i)) == NULL || p->ts == 0)
		return -1;
	*out = (double)(c->now - p->ts) / 1000.0;
	return 0;
}

static struct twin_window *
window_of(struct twin *t, const char *name, int64_t len)
{
	for (uint16_t i = 0; i < t->nwindows; i++)
		if (t->windows[i].name == name && t->windows[i].w.len_ms == len)
			return &t->windows[i];
	return NULL;
}

static int
env_window(void *arg, int win, int fn, double param, double *out)
{
	struct eval_ctx *c = arg;
	const char *name = c->names[c->refs->windows[win].prop];
	struct twin_window *tw = name != NULL ?
	    window_of(c->t, name, c->refs->windows[win].len_ms) : NULL;
	struct tw_val cur = { 0 };

	if (tw == NULL)
		return -1;
	if (fn == WFN_ZSCORE && env_value(arg, c->refs->windows[win].prop, &cur) != 0)
		return -1;
	/* One definition of every window function, shared with the unit tests. */
	return expr_window_value(&tw->w, c->now, fn, param, &cur, out);
}

static const struct expr_env rule_env = { NULL, env_value, env_prev, env_age, env_window };

static int
eval_expr(struct sync *s, struct twin *t, const struct expr *e, const char *const *names,
    int64_t now)
{
	struct eval_ctx c = { s, t, names, expr_refs(e), now };
	struct expr_env env = rule_env;

	env.arg = &c;
	return expr_true(e, &env);
}

/* "temperature {temperature} above 90" with the current values filled in. */
static void
render_message(const struct rule *r, const struct twin *t, char *out, size_t len)
{
	const char *p = r->message;
	size_t n = 0;

	while (*p != '\0' && n + 1 < len) {
		const char *close;

		if (*p == '{' && (close = strchr(p, '}')) != NULL && close - p < 130) {
			char name[132];
			const struct prop *pr;

			snprintf(name, sizeof(name), "%.*s", (int)(close - p - 1), p + 1);
			pr = NULL;
			for (uint32_t i = 0; i < t->nprops && pr == NULL; i++)
				if (strcmp(t->props[i].name, name) == 0)
					pr = &t->props[i];
			if (strcmp(name, "twin") == 0)
				n += (size_t)snprintf(out + n, len - n, "%s", t->id);
			else if (pr == NULL || pr->val.type == 0)
				n += (size_t)snprintf(out + n, len - n, "?");
			else if (pr->val.type == VAL_NUM)
				n += (size_t)snprintf(out + n, len - n, "%g", pr->val.num);
			else if (pr->val.type == VAL_BOOL)
				n += (size_t)snprintf(out + n, len - n, "%s", pr->val.num ? "true" : "false");
			else
				n += (size_t)snprintf(out + n, len - n, "%s", pr->val.str);
			p = close + 1;
			continue;
		}
		out[n++] = *p++;
	}
	out[n < len ? n : len - 1] = '\0';
}

static void sync_desired_action(struct sync *s, struct twin *t, const struct rule *r);

static int
rule_raise(struct sync *s, struct twin *t, struct rule_state *st, const char *const *names,
    int64_t now, int64_t source_ts)
{
	const struct rule *r = st->rule;
	struct store_alert_row a = { .twin = t->id, .rule = r->name, .severity = r->severity,
	    .active = 1, .raised_ts = now };
	char msg[512], id[32];
	struct prop *p;
	int rc;

	render_message(r, t, msg, sizeof(msg));
	a.message = msg;
	/* The value that raised it: the first property the condition reads. */
	if (names[0] != NULL && (p = twin_prop(t, names[0])) != NULL)
		a.val = p->val;
	if (sync_begin(s) != TW_OK || store_alert_add(s->store, &a, &a.id) != TW_OK)
		return TW_ERR_DB;
	st->alert_id = a.id;
	st->raised_ts = now;
	metrics_add(&metrics.alerts_raised, 1);
	atomic_fetch_add(&r->stats->raises, 1);
	log_info("twin %s: alert %s (%s) raised: %s", t->id, r->name, r->severity, msg);
	sync_queue_alert(s, t->id, &a);
	for (int i = 0; i < r->nactions; i++) {
		const struct rule_action *ra = &r->actions[i];

		if (ra->type == ACTION_DESIRED)
			continue;	/* all desired actions at once, below */
		if (t->model != NULL && !model_has_command(t->model, ra->command)) {
			log_limited(&s->drop_log, "rule %s: %s has no command %s", r->name,
			    t->model_id, ra->command);
			atomic_fetch_add(&r->stats->errors, 1);
			continue;
		}
		rc = command_issue(s, t->id, ra->command, ra->json, r->name, source_ts, id,
		    sizeof(id));
		if (rc == TW_ERR_DB)
			return TW_ERR_DB;
		if (rc != TW_OK) {
			log_limited(&s->drop_log, "rule %s: command %s on %s refused: too many in "
			    "flight", r->name, ra->command, t->id);
			atomic_fetch_add(&r->stats->errors, 1);
		}
	}
	sync_desired_action(s, t, r);
	return TW_OK;
}

static int
rule_clear(struct sync *s, struct twin *t, struct rule_state *st, int64_t now)
{
	struct alert_copy a = { 0 };

	/*
	 * Only active and cleared_ts change: the message and value that raised
	 * it, and its acknowledgement, stay; what is published is the row.
	 */
	if (sync_begin(s) != TW_OK || store_alert_clear(s->store, st->alert_id, now) != TW_OK ||
	    store_alert_get(s->store, st->alert_id, copy_alert, &a) != TW_OK)
		return TW_ERR_DB;
	st->alert_id = 0;
	st->true_since = 0;
	atomic_fetch_add(&st->rule->stats->clears, 1);
	log_info("twin %s: alert %s cleared", t->id, st->rule->name);
	sync_queue_alert(s, t->id, &a.row);
	return TW_OK;
}

/*
 * One rule on one twin at twin-clock `now`: `for` delays the raise,
 * `clear` (or `when` no longer holding) ends the alert, and between the
 * two nothing changes, so it never flaps.
 */
static int
rule_step(struct sync *s, struct twin *t, struct rule_state *st, int64_t now, int64_t source_ts)
{
	const struct rule *r = st->rule;
	const struct rule_bind *b = &s->binds[r - s->rules->v];
	int64_t t0 = clock_mono_ns();
	int cond, rc = TW_OK;

	atomic_fetch_add(&r->stats->evaluations, 1);
	if (st->alert_id != 0) {
		cond = r->clear != NULL ? eval_expr(s, t, r->clear, b->clear, now) :
		    !eval_expr(s, t, r->when, b->when, now);
		if (cond)
			rc = rule_clear(s, t, st, now);
		goto out;
	}
	if (!eval_expr(s, t, r->when, b->when, now)) {
		st->true_since = 0;
		goto out;
	}
	if (st->true_since == 0)
		st->true_since = now;
	if (now - st->true_since < r->for_ms ||
	    (st->raised_ts > 0 && r->cooldown_ms > 0 && now - st->raised_ts < r->cooldown_ms) ||
	    clock_now_ms() < st->shelved_until)
		goto out;
	rc = rule_raise(s, t, st, b->when, now, source_ts);
out:
	atomic_fetch_add(&r->stats->cost_ns, (uint64_t)(clock_mono_ns() - t0));
	return rc;
}

/* Whether expression names of rule `i` include `name` (interned). */
static int
rule_reads(const struct sync *s, int i, const char *name)
{
	const struct rule *r = &s->rules->v[i];
	const struct expr_refs *w = expr_refs(r->when), *c = r->clear ? expr_refs(r->clear) : NULL;

	for (int k = 0; k < w->nprops; k++)
		if (s->binds[i].when[k] == name)
			return 1;
	for (int k = 0; c != NULL && k < c->nprops; k++)
		if (s->binds[i].clear[k] == name)
			return 1;
	return 0;
}

/*
 * After an update: the rules that read one of its properties (only
 * those). With names NULL (the timer), every rule of the twin.
 */
static int
rules_eval(struct sync *s, struct twin *t, const char *const *names, int nnames,
    int64_t source_ts)
{
	int64_t now = twin_clock(t, clock_mono_ms());

	if (now == 0)
		return TW_OK;
	for (uint16_t i = 0; i < t->nrs; i++) {
		struct rule_state *st = &t->rs[i];
		int idx = (int)(st->rule - s->rules->v), hit = names == NULL;

		for (int k = 0; !hit && k < nnames; k++)
			hit = rule_reads(s, idx, names[k]);
		if (hit && rule_step(s, t, st, now, source_ts) != TW_OK)
			return TW_ERR_DB;
	}
	return TW_OK;
}

static int
rules_tick_twin(void *arg, struct twin *t)
{
	/* Raised by the timer: the newest update is the one that made it so. */
	return rules_eval(arg, t, NULL, 0, t->newest_ts) != TW_OK;
}

/* Feeds the windows of `t` that follow property `name`. */
static void
windows_feed(struct twin *t, const char *name, int64_t ts, const struct tw_val *v)
{
	if (v->type != VAL_NUM && v->type != VAL_BOOL)
		return;
	for (uint16_t i = 0; i < t->nwindows; i++)
		if (t->windows[i].name == name)
			window_add(&t->windows[i].w, ts, v->num);
}

static int
bind_names(struct sync *s, const struct expr *e, const char **out)
{
	const struct expr_refs *r = expr_refs(e);

	for (int k = 0; k < r->nprops; k++)
		if ((out[k] = twin_intern(s->twins, r->props[k])) == NULL)
			return TW_ERR_NOMEM;
	return TW_OK;
}

/* Interns the names every rule reads; windows and evaluation then compare pointers. */
static int
rules_bind_names(struct sync *s)
{
	struct rule_bind *b = calloc((size_t)s->rules->n + 1, sizeof(*b));

	if (b == NULL)
		return TW_ERR_NOMEM;
	free(s->binds);
	s->binds = b;
	for (int i = 0; i < s->rules->n; i++)
		if (bind_names(s, s->rules->v[i].when, s->binds[i].when) != TW_OK ||
		    (s->rules->v[i].clear != NULL &&
		    bind_names(s, s->rules->v[i].clear, s->binds[i].clear) != TW_OK))
			return TW_ERR_NOMEM;
	return TW_OK;
}

static int
windows_want(struct sync *s, struct twin_window *w, int *n, int max, const struct expr *e,
    const char *const *names)
{
	const struct expr_refs *r = expr_refs(e);

	(void)s;
	for (int k = 0; k < r->nwindows; k++) {
		const char *name = names[r->windows[k].prop];
		int have = 0;

		for (int j = 0; j < *n && !have; j++)
			have = w[j].name == name && w[j].w.len_ms == r->windows[k].len_ms;
		if (have)
			continue;
		if (*n == max)
			return TW_ERR_FULL;
		w[*n].name = name;
		w[*n].w.len_ms = r->windows[k].len_ms;
		(*n)++;
	}
	return TW_OK;
}

/*
 * Gives `t` a state for each rule that matches it, keeping the state (and
 * open alert) of rules that did not change, and the windows its rules
 * read, keeping those that already exist with their data.
 */
static int
rules_bind_twin(struct sync *s, struct twin *t)
{
	struct rule_state *rs = NULL;
	struct twin_window *ws = NULL;
	int nrs = 0, nws = 0, maxw = 0;

	for (int i = 0; i < s->rules->n; i++)
		if (rules_match(&s->rules->v[i], t->id, t->model_id)) {
			nrs++;
			maxw += expr_refs(s->rules->v[i].when)->nwindows +
			    (s->rules->v[i].clear ? expr_refs(s->rules->v[i].clear)->nwindows : 0);
		}
	if ((nrs > 0 && (rs = calloc((size_t)nrs, sizeof(*rs))) == NULL) ||
	    (maxw > 0 && (ws = calloc((size_t)maxw, sizeof(*ws))) == NULL)) {
		free(rs);
		return TW_ERR_NOMEM;
	}
	nrs = 0;
	for (int i = 0; i < s->rules->n; i++) {
		const struct rule *r = &s->rules->v[i];

		if (!rules_match(r, t->id, t->model_id))
			continue;
		rs[nrs].rule = r;
		/*
		 * State goes with the rule's name: an edited rule keeps its open
		 * alert (now judged by its new clear), never leaves an orphan.
		 */
		for (uint16_t j = 0; j < t->nrs; j++)
			if (strcmp(t->rs[j].rule->name, r->name) == 0) {
				rs[nrs] = t->rs[j];
				rs[nrs].rule = r;
			}
		for (int j = opened_first(s, t->id, r->name); j < s->nopened &&
		    opened_cmp2(&s->opened[j], t->id, r->name) == 0; j++)
			if (s->opened[j].raised_ts >= rs[nrs].raised_ts) {
				rs[nrs].alert_id = s->opened[j].id;
				rs[nrs].raised_ts = s->opened[j].raised_ts;
				rs[nrs].shelved_until = s->opened[j].shelved_until;
			}
		windows_want(s, ws, &nws, maxw, r->when, s->binds[i].when);
		if (r->clear != NULL)
			windows_want(s, ws, &nws, maxw, r->clear, s->binds[i].clear);
		nrs++;
	}
	for (int j = 0; j < nws; j++) {
		struct twin_window *old = window_of(t, ws[j].name, ws[j].w.len_ms);

		if (old != NULL)
			ws[j] = *old;
		else
			window_init(&ws[j].w, ws[j].w.len_ms);
	}
	/* Many rules share few windows: keep only what is used. */
	if (nws < maxw) {
		struct twin_window *fit = nws > 0 ? realloc(ws, (size_t)nws * sizeof(*ws)) : NULL;

		if (nws == 0) {
			free(ws);
			ws = NULL;
		} else if (fit != NULL) {
			ws = fit;
		}
	}
	free(t->rs);
	free(t->windows);
	t->rs = rs;
	t->nrs = (uint16_t)nrs;
	t->windows = ws;
	t->nwindows = (uint16_t)nws;
	return TW_OK;
}

static int
rebind_rules(void *arg, struct twin *t)
{
	return rules_bind_twin(arg, t) != TW_OK;
}

static int
drop_rules(void *arg, struct twin *t)
{
	(void)arg;
	free(t->rs);
	free(t->windows);
	t->rs = NULL;
	t->windows = NULL;
	t->nrs = 0;
	t->nwindows = 0;
	return 0;
}

/* The operator acknowledged or shelved an alert: a shelved rule does not raise. */
static void
rules_alert_changed(struct sync *s, const struct store_alert_row *a)
{
	struct twin *t = twin_find(s->twins, a->twin, strlen(a->twin));

	for (uint16_t i = 0; t != NULL && i < t->nrs; i++)
		if (t->rs[i].alert_id == a->id || strcmp(t->rs[i].rule->name, a->rule) == 0)
			t->rs[i].shelved_until = a->shelved_until_ts;
}

/* ---- commands ---- */

static void
inflight_free(struct inflight *c)
{
	free(c->command);
	free(c->params);
	free(c->rule);
}

static struct inflight *
inflight_find(struct sync *s, const char *id)
{
	for (unsigned i = 0; i < s->ncmds; i++)
		if (strcmp(s->cmds[i].id, id) == 0)
			return &s->cmds[i];
	return NULL;
}

static void
inflight_remove(struct sync *s, struct inflight *c)
{
	inflight_free(c);
	*c = s->cmds[--s->ncmds];
}

/* After a rollback: commands issued in the failed batch never existed. */
static void
inflight_forget_uncommitted(struct sync *s)
{
	for (unsigned i = 0; i < s->ncmds;)
		if (!s->cmds[i].committed)
			inflight_remove(s, &s->cmds[i]);
		else
			i++;
}

static void
inflight_clear(struct sync *s)
{
	while (s->ncmds > 0)
		inflight_remove(s, &s->cmds[0]);
}

static void
command_row_of(const struct inflight *c, const char *status, const char *reason,
    int64_t acked_ts, struct store_command_row *row)
{
	*row = (struct store_command_row){
		.id = c->id, .twin = c->twin, .command = c->command, .params = c->params,
		.rule = c->rule, .status = status, .reason = reason, .source_ts = c->source_ts,
		.issued_ts = c->issued_ts, .sent_ts = c->sent_ts, .acked_ts = acked_ts,
	};
}

/* Writes a new status of `c` in the open batch and queues its event. */
static int
command_status(struct sync *s, const struct inflight *c, const char *status,
    const char *reason, int64_t acked_ts)
{
	struct store_command_row row;

	command_row_of(c, status, reason, acked_ts, &row);
	if (sync_begin(s) != TW_OK || store_command_put(s->store, &row) != TW_OK)
		return TW_ERR_DB;
	sync_queue(s, NULL, "command", c->twin, alert_command_json(&row));
	return TW_OK;
}

/* A new in-flight entry (not stored); NULL when full or out of memory. */
static struct inflight *
inflight_add(struct sync *s, const char *twin, const char *command, const char *params,
    const char *rule, int64_t source_ts)
{
	struct inflight *c;

	if (s->ncmds >= (unsigned)s->conf->cmd_max_inflight)
		return NULL;
	if (s->ncmds == s->cap_cmds) {
		unsigned cap = s->cap_cmds == 0 ? 16 : s->cap_cmds * 2;

		if ((c = realloc(s->cmds, cap * sizeof(*c))) == NULL)
			return NULL;
		s->cmds = c;
		s->cap_cmds = cap;
	}
	c = &s->cmds[s->ncmds];
	memset(c, 0, sizeof(*c));
	alert_command_id(c->id, sizeof(c->id));
	snprintf(c->twin, sizeof(c->twin), "%s", twin);
	c->command = strdup(command);
	c->params = strdup(params != NULL ? params : "{}");
	c->rule = rule != NULL ? strdup(rule) : NULL;
	c->source_ts = source_ts;
	c->issued_ts = clock_now_ms();
	if (c->command == NULL || c->params == NULL || (rule != NULL && c->rule == NULL)) {
		inflight_free(c);
		return NULL;
	}
	s->ncmds++;
	return c;
}

/*
 * Issues a command: stored as pending in the open batch, published after
 * the commit (the command is on disk before it can reach the machine).
 * Returns 0 with its id in id_out, TW_ERR_FULL when too many are in
 * flight, or TW_ERR_DB.
 */
static int
command_issue(struct sync *s, const char *twin, const char *command, const char *params,
    const char *rule, int64_t source_ts, char *id_out, size_t id_len)
{
	struct store_command_row row;
	struct inflight *c;

	if ((c = inflight_add(s, twin, command, params, rule, source_ts)) == NULL)
		return TW_ERR_FULL;
	command_row_of(c, "pending", NULL, 0, &row);
	if (sync_begin(s) != TW_OK || store_command_put(s->store, &row) != TW_OK) {
		inflight_remove(s, c);
		return TW_ERR_DB;
	}
	s->cmds_to_publish = 1;
	snprintf(id_out, id_len, "%s", c->id);
	sync_queue(s, NULL, "command", twin, alert_command_json(&row));
	return TW_OK;
}

/*
 * Hands committed, unpublished commands to libmosquitto, only while the
 * broker is connected: libmosquitto would otherwise keep a command in
 * memory and send it on reconnect, however late, and the TTL would not hold.
 */
static void
commands_publish(struct sync *s)
{
	char topic[TOPIC_MAX], *js;
	struct store_command_row row;
	struct outstanding *o;
	int mid;

	if (!s->cmds_to_publish || s->mqtt == NULL || !mqtt_connected(s->mqtt))
		return;
	s->cmds_to_publish = 0;
	for (unsigned i = 0; i < s->ncmds; i++) {
		struct inflight *c = &s->cmds[i];

		if (c->published)
			continue;
		command_row_of(c, "pending", NULL, 0, &row);
		if (mqtt_topic(s->conf->command_topic, c->twin, topic, sizeof(topic)) != TW_OK)
			continue;
		js = cJSON_PrintUnformatted(alert_command_wire(&row) ?: cJSON_CreateNull());
		if (js != NULL && mqtt_publish(s->mqtt, topic, js, (int)strlen(js), 0, &mid) == TW_OK &&
		    (o = calloc(1, sizeof(*o))) != NULL) {
			struct outstanding *old;

			HASH_FIND_INT(s->outstanding, &mid, old);
			if (old != NULL) {
				HASH_DEL(s->outstanding, old);
				free(old);
			}
			o->mid = mid;
			snprintf(o->cmd, sizeof(o->cmd), "%s", c->id);
			HASH_ADD_INT(s->outstanding, mid, o);
			c->published = 1;
		} else {
			s->cmds_to_publish = 1;
		}
		cJSON_free(js);
	}
}

/* The broker took the command: it is "sent"; the asset's answer is awaited. */
static void
command_sent(struct sync *s, const char *id)
{
	struct inflight *c = inflight_find(s, id);

	if (c == NULL || c->sent_ts > 0)
		return;
	c->sent_ts = clock_now_ms();
	if (command_status(s, c, "sent", NULL, 0) != TW_OK)
		sync_fail(s, "storing a command's sending");
}

/* The asset answered: done, rejected or failed, with its detail. */
static int
command_answer(struct sync *s, const struct rec *r)
{
	const char *id = rec_body(r), *status = id + strlen(id) + 1;
	const char *detail = status + strlen(status) + 1;
	struct inflight *c = inflight_find(s, id);
	int rc;

	if (c == NULL || strcmp(c->twin, r->id) != 0) {
		log_limited(&s->drop_log, "twin %s: answer to unknown or settled command %s (%s)",
		    r->id, id, status);
		return TW_OK;
	}
	rc = command_status(s, c, status, detail[0] != '\0' ? detail : NULL, r->arrival_ms);
	if (rc == TW_OK)
		inflight_remove(s, c);
	return rc;
}

/* Commands that waited too long: expired before the broker took them, timed out after. */
static int
commands_expire(struct sync *s)
{
	int64_t now = clock_now_ms();

	for (unsigned i = 0; i < s->ncmds;) {
		struct inflight *c = &s->cmds[i];
		const char *st = NULL;

		if (c->sent_ts == 0 && now - c->issued_ts > s->conf->cmd_ttl_ms)
			st = "expired";
		else if (c->sent_ts > 0 && now - c->sent_ts > s->conf->cmd_timeout_ms)
			st = "timed_out";
		if (st == NULL) {
			i++;
			continue;
		}
		if (command_status(s, c, st, st[0] == 'e' ? "the broker did not take it in time" :
		    "no answer from the asset in time", 0) != TW_OK)
			return TW_ERR_DB;
		inflight_remove(s, c);
	}
	return TW_OK;
}

static int
load_command(void *arg, const struct store_command_row *row)
{
	struct sync *s = arg;
	struct inflight *c;

	/* After a rollback the list in memory is the truth: it knows what was published. */
	if (s->started_loading)
		return 0;
	if ((c = inflight_add(s, row->twin, row->command, row->params, row->rule,
	    row->source_ts)) == NULL)
		return 0;
	c->committed = 1;
	snprintf(c->id, sizeof(c->id), "%s", row->id);
	c->issued_ts = row->issued_ts;
	c->sent_ts = row->sent_ts;
	/* A pending one is published (again) once connected; a sent one waits for its answer. */
	c->published = row->sent_ts > 0;
	s->cmds_to_publish |= !c->published;
	return 0;
}

/* ---- requests from other threads ---- */

static void
req_fail(struct sync_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
req_fail(struct sync_req *r, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	r->status = status;
	snprintf(r->code, sizeof(r->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
}

/* Checks one entry of a desired patch against the model; 0 or fills `r`. */
static int
patch_check(struct sync_req *r, const struct twin *t, const cJSON *it, struct tw_val *v)
{
	const struct model_prop *mp = t->model != NULL ? model_prop(t->model, it->string) : NULL;

	if (mp == NULL || mp->kind != MODEL_PROPERTY || !mp->writable) {
		req_fail(r, 422, "not_writable", "'%.128s' is not a writable property of %s",
		    it->string, t->model_id != NULL ? t->model_id : "a twin without a model");
		return -1;
	}
	if (cJSON_IsNull(it))
		return 0;
	if (cJSON_IsNumber(it))
		*v = (struct tw_val){ .type = VAL_NUM, .num = it->valuedouble };
	else if (cJSON_IsBool(it))
		*v = (struct tw_val){ .type = VAL_BOOL, .num = cJSON_IsTrue(it) };
	else if (cJSON_IsString(it) && strlen(it->valuestring) <= STR_VALUE_MAX)
		*v = (struct tw_val){ .type = VAL_STR, .str = it->valuestring };
	if (v->type == 0 || !schema_ok(mp, v)) {
		req_fail(r, 422, "wrong_type", "'%.128s' must be a%s %s", it->string,
		    mp->integer ? " whole" : "", mp->schema == SCHEMA_NUMBER ? "number" :
		    mp->schema == SCHEMA_BOOLEAN ? "boolean" : "string");
		return -1;
	}
	if (out_of_range(mp, v)) {
		req_fail(r, 422, "out_of_range", "'%.128s' must be within [%g, %g]", it->string,
		    mp->has_min ? mp->min : -1e308, mp->has_max ? mp->max : 1e308);
		return -1;
	}
	return 0;
}

/*
 * Applies a checked desired patch to `t` in the open batch. Returns 0
 * (with *changed) or TW_ERR_NOMEM.
 */
static int
desired_apply(struct sync *s, struct sync_req *r, struct twin *t, const cJSON *patch,
    int64_t now, int *changed)
{
	struct tw_val v;
	const cJSON *it;

	*changed = 0;
	cJSON_ArrayForEach(it, patch) {
		const char *name = twin_intern(s->twins, it->string);
		struct desired *d = name != NULL ? twin_desired(t, name) : NULL;

		v.type = 0;
		patch_check(r, t, it, &v);
		if (name == NULL)
			return TW_ERR_NOMEM;
		if (cJSON_IsNull(it)) {
			if (d == NULL)
				continue;
			d->removed = 1;
			d->dirty = 1;
			*changed = 1;
			if (d->in_delta)
				want_publish(s, t);
			continue;
		}
		if (d != NULL && value_equal(&d->val, &v))
			continue;
		if ((d = twin_desired_set(t, name, &v, now)) == NULL)
			return TW_ERR_NOMEM;
		/* A new value starts a new episode: not yet published, not yet reached. */
		d->published = 0;
		d->converged_ts = 0;
		d->in_delta = 0;
		desired_eval(t, d, now);
		*changed = 1;
		want_publish(s, t);
	}
	if (*changed) {
		t->version++;
		twin_mark_dirty(s->twins, t);
	}
	return TW_OK;
}

/* Checks every entry of a patch: a refused patch changes nothing. 0 or fills `r`. */
static int
desired_check(struct sync_req *r, const struct twin *t, const cJSON *patch)
{
	struct tw_val v;
	const cJSON *it;

	cJSON_ArrayForEach(it, patch) {
		v.type = 0;
		if (patch_check(r, t, it, &v) != 0)
			return -1;
	}
	return 0;
}

static void
sync_req_desired(struct sync *s, struct sync_req *r)
{
	struct twin *t = twin_find(s->twins, r->twin, strlen(r->twin));
	int changed;

	if (t == NULL) {
		req_fail(r, 404, "not_found", "no twin '%s'", r->twin);
		return;
	}
	if (r->has_if_match && r->if_match != t->version) {
		req_fail(r, 412, "version_mismatch", "twin '%s' is at version %llu, not %llu",
		    t->id, (unsigned long long)t->version, (unsigned long long)r->if_match);
		r->version = t->version;
		return;
	}
	if (desired_check(r, t, r->patch) != 0)
		return;
	if ((s->in_txn && sync_commit(s) != TW_OK) || sync_begin(s) != TW_OK) {
		req_fail(r, 500, "internal", "the database is failing");
		return;
	}
	if (desired_apply(s, r, t, r->patch, clock_now_ms(), &changed) != TW_OK) {
		sync_fail(s, "desired state (out of memory)");
		req_fail(r, 500, "internal", "out of memory");
		return;
	}
	r->version = t->version;
	if (sync_commit(s) != TW_OK) {
		req_fail(r, 500, "internal", "the database is failing; nothing was changed");
		return;
	}
	r->status = 200;
}

/* A rule's {"desired": {...}} action, checked like an operator's PATCH, in the open batch. */
static void
sync_desired_action(struct sync *s, struct twin *t, const struct rule *rule)
{
	struct sync_req r = { 0 };
	int changed;

	for (int i = 0; i < rule->nactions; i++) {
		const struct rule_action *a = &rule->actions[i];
		cJSON *patch;

		if (a->type != ACTION_DESIRED || (patch = cJSON_Parse(a->json)) == NULL)
			continue;
		if (desired_check(&r, t, patch) != 0 ||
		    desired_apply(s, &r, t, patch, clock_now_ms(), &changed) != TW_OK) {
			log_limited(&s->drop_log, "rule %s: desired action on %s refused: %s",
			    rule->name, t->id, r.message);
			atomic_fetch_add(&rule->stats->errors, 1);
		}
		cJSON_Delete(patch);
	}
}

/* Applies the twins file: creates missing twins and sets models and parents. */
static int
sync_apply_plant(struct sync *s, const struct plant *p)
{
	for (int i = 0; i < p->n; i++) {
		const struct plant_entry *e = &p->v[i];
		struct twin *t = twin_find(s->twins, e->id, strlen(e->id));
		const struct model *m = e->model != NULL ? model_find(s->models, e->model) : NULL;

		if (t == NULL && (t = twin_add(s->twins, e->id, clock_now_ms())) == NULL) {
			log_warnx("twins file: %s: max_twins reached", e->id);
			continue;
		}
		if (twin_set_meta(t, e->model, m, e->parent) != TW_OK ||
		    rules_bind_twin(s, t) != TW_OK)
			return TW_ERR_NOMEM;
		twin_mark_dirty(s->twins, t);
	}
	atomic_store(&metrics.twins, twin_count(s->twins));
	return TW_OK;
}

static int
rebind_model(void *arg, struct twin *t)
{
	struct sync *s = arg;

	return twin_set_meta(t, t->model_id, t->model_id != NULL ?
	    model_find(s->models, t->model_id) : NULL, t->parent) != TW_OK;
}

static void
sync_req_reload(struct sync *s, struct sync_req *r)
{
	struct model_set *old;
	struct rule_set *old_rules;

	if (s->in_txn)
		sync_commit(s);
	pthread_mutex_lock(&s->lock);
	old = s->models;
	s->models = r->models;
	old_rules = s->rules;
	s->rules = r->rules;
	pthread_mutex_unlock(&s->lock);
	r->models = NULL;
	r->rules = NULL;
	/* Unchanged rules keep their state: the old set lives until every twin is rebound. */
	if (rules_bind_names(s) != TW_OK || twin_each(s->twins, rebind_rules, s) != 0) {
		/* No twin may keep a state pointing into the set freed below. */
		twin_each(s->twins, drop_rules, s);
		log_warnx("reload: out of memory binding the rules; no rule runs until the next "
		    "reload");
	}
	if (twin_each(s->twins, rebind_model, s) != 0 || sync_begin(s) != TW_OK ||
	    sync_apply_plant(s, &r->plant) != TW_OK || sync_commit(s) != TW_OK) {
		req_fail(r, 500, "internal", "reload failed; see the log");
	} else {
		r->status = 200;
		log_info("reloaded: %d models, %d twins in the twins file, %d rules",
		    model_count(s->models), r->plant.n, s->rules->n);
	}
	plant_cleanup(&r->plant);
	/* Twins now point into the new sets only. */
	model_set_unref(old);
	rules_unref(old_rules);
}

static void
sync_req_command(struct sync *s, struct sync_req *r)
{
	struct twin *t = twin_find(s->twins, r->twin, strlen(r->twin));
	char id[32], *params = NULL;
	struct inflight *c;
	int rc;

	if (t == NULL) {
		req_fail(r, 404, "not_found", "no twin '%s'", r->twin);
		return;
	}
	if (t->model != NULL && !model_has_command(t->model, r->command)) {
		req_fail(r, 422, "unknown_command", "%s has no command '%.64s'", t->model_id,
		    r->command);
		return;
	}
	if (r->params != NULL && (params = cJSON_PrintUnformatted(r->params)) == NULL) {
		req_fail(r, 500, "internal", "out of memory");
		return;
	}
	rc = command_issue(s, t->id, r->command, params, NULL, 0, id, sizeof(id));
	cJSON_free(params);
	if (rc == TW_ERR_FULL) {
		req_fail(r, 503, "busy", "%d commands are in flight already ([commands] max_inflight)",
		    s->conf->cmd_max_inflight);
		return;
	}
	if (rc != TW_OK || sync_commit(s) != TW_OK) {
		req_fail(r, 500, "internal", "the database is failing; the command was not issued");
		return;
	}
	if ((c = inflight_find(s, id)) != NULL) {
		struct store_command_row row;

		command_row_of(c, c->published ? "pending" : "pending", NULL, 0, &row);
		r->result = alert_command_json(&row);
	}
	r->status = 202;
}

/* Acknowledge or shelve an alert: the operator's side of its life (ISA-18.2). */
static void
sync_req_alert(struct sync *s, struct sync_req *r)
{
	struct alert_copy a = { 0 };
	int64_t now = clock_now_ms();

	if (s->in_txn && sync_commit(s) != TW_OK) {
		req_fail(r, 500, "internal", "the database is failing");
		return;
	}
	if (store_alert_get(s->store, r->alert_id, copy_alert, &a) != TW_OK || !a.found) {
		req_fail(r, 404, "not_found", "no alert %lld", (long long)r->alert_id);
		return;
	}
	if (r->type == SYNC_REQ_ALERT_ACK) {
		if (!a.row.acknowledged) {
			a.row.acknowledged = 1;
			a.row.acked_ts = now;
		}
	} else {
		a.row.shelved_until_ts = now + r->shelve_ms;
	}
	if (sync_begin(s) != TW_OK || store_alert_put(s->store, &a.row) != TW_OK) {
		store_rollback(s->store);
		s->in_txn = 0;
		req_fail(r, 500, "internal", "the database is failing");
		return;
	}
	rules_alert_changed(s, &a.row);
	sync_queue_alert(s, a.row.twin, &a.row);
	if (sync_commit(s) != TW_OK) {
		req_fail(r, 500, "internal", "the database is failing");
		return;
	}
	r->result = alert_json(&a.row);
	r->status = 200;
}

static void
sync_requests(struct sync *s)
{
	struct sync_req *r;

	if (s->map_invalid && !s->in_txn && sync_load(s) == TW_OK)
		s->map_invalid = 0;
	while (atomic_load(&s->nreqs) > 0) {
		pthread_mutex_lock(&s->lock);
		r = s->reqs;
		s->reqs = r->next;
		atomic_fetch_sub(&s->nreqs, 1);
		pthread_mutex_unlock(&s->lock);

		/* The twins in memory are not the truth until a load works. */
		if (s->map_invalid) {
			req_fail(r, 503, "unavailable", "the database is failing; try again");
			if (r->type == SYNC_REQ_RELOAD) {
				model_set_unref(r->models);
				rules_unref(r->rules);
				plant_cleanup(&r->plant);
				r->models = NULL;
				r->rules = NULL;
			}
		} else switch (r->type) {
		case SYNC_REQ_DESIRED:
			sync_req_desired(s, r);
			break;
		case SYNC_REQ_RELOAD:
			sync_req_reload(s, r);
			break;
		case SYNC_REQ_COMMAND:
			sync_req_command(s, r);
			break;
		default:
			sync_req_alert(s, r);
		}

		pthread_mutex_lock(&s->lock);
		r->done = 1;
		pthread_cond_broadcast(&s->progress);
		pthread_mutex_unlock(&s->lock);
	}
}

#define REQUEST_WAIT_MS	10000	/* a request not taken up by then is answered 503 */

/* Unlinks `r` if it is still queued (caller holds the lock); 1 if it was. */
static int
req_unlink(struct sync *s, struct sync_req *r)
{
	for (struct sync_req **p = &s->reqs; *p != NULL; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			atomic_fetch_sub(&s->nreqs, 1);
			return 1;
		}
	return 0;
}

void
sync_request(struct sync *s, struct sync_req *r)
{
	struct sync_req **tail;
	struct timespec deadline;

	r->done = 0;
	r->next = NULL;
	pthread_mutex_lock(&s->lock);
	if (s->closed) {
		pthread_mutex_unlock(&s->lock);
		req_fail(r, 503, "unavailable", "twind is stopping");
		return;
	}
	for (tail = &s->reqs; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = r;
	atomic_fetch_add(&s->nreqs, 1);
	pthread_mutex_unlock(&s->lock);
	ring_wake(s->ring);
	clock_deadline(&deadline, REQUEST_WAIT_MS);
	pthread_mutex_lock(&s->lock);
	while (!r->done) {
		if (pthread_cond_timedwait(&s->progress, &s->lock, &deadline) != ETIMEDOUT)
			continue;
		/* Not taken up in time (the engine is stuck on a busy database): give up. */
		if (req_unlink(s, r)) {
			req_fail(r, 503, "busy", "the sync engine did not take the request in time");
			break;
		}
		/* Taken up: it is being answered, which is bounded; wait on. */
		clock_deadline(&deadline, REQUEST_WAIT_MS);
	}
	pthread_mutex_unlock(&s->lock);
}

/* At exit: nothing waits forever on an engine that is gone. */
static void
sync_close_requests(struct sync *s)
{
	pthread_mutex_lock(&s->lock);
	s->closed = 1;
	while (s->reqs != NULL) {
		struct sync_req *r = s->reqs;

		req_unlink(s, r);
		req_fail(r, 503, "unavailable", "twind is stopping");
		r->done = 1;
	}
	pthread_cond_broadcast(&s->progress);
	pthread_mutex_unlock(&s->lock);
}

struct rule_set *
sync_rules(struct sync *s)
{
	struct rule_set *r;

	pthread_mutex_lock(&s->lock);
	r = s->rules;
	rules_ref(r);
	pthread_mutex_unlock(&s->lock);
	return r;
}

struct model_set *
sync_models(struct sync *s)
{
	struct model_set *m;

	pthread_mutex_lock(&s->lock);
	m = s->models;
	model_set_ref(m);
	pthread_mutex_unlock(&s->lock);
	return m;
}

/* ---- the thread ---- */

/*
 * Batches end where the MQTT thread puts a flush record (after each read
 * burst, when it wants to acknowledge), at batch_max, or when the ring
 * stays empty for a while with a batch open. Requests and timers are
 * served between records, so a busy ring does not starve them.
 */
static void *
sync_main(void *arg)
{
	struct sync *s = arg;
	const void *p;
	size_t len;
	int stopping;

	s->next_tick = clock_mono_ms() + TICK_MS;
	for (;;) {
		p = ring_peek(s->ring, &len, 100);
		if (p != NULL) {
			int rc = sync_record(s, p);

			ring_pop(s->ring);
			if (rc != TW_OK && s->in_txn)
				sync_fail(s, "applying an update");
			else if (s->in_txn && s->batch_msgs >= (uint64_t)s->conf->batch_max)
				sync_commit(s);
		} else if (s->in_txn) {
			sync_commit(s);
		}
		if (atomic_load(&s->nreqs) > 0)
			sync_requests(s);
		sync_tick(s);
		if (p != NULL)
			continue;
		pthread_mutex_lock(&s->lock);
		stopping = s->stopping;
		pthread_mutex_unlock(&s->lock);
		if (stopping && ring_count(s->ring) == 0)
			break;
	}
	if (s->in_txn)
		sync_commit(s);
	sync_close_requests(s);
	return NULL;
}

struct sync *
sync_new(const struct conf *c, struct ring *r, struct store *store, struct model_set *models,
    struct plant *plant, struct rule_set *rules)
{
	struct sync *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		store_close(store);
		model_set_unref(models);
		rules_unref(rules);
		plant_cleanup(plant);
		return NULL;
	}
	s->conf = c;
	s->ring = r;
	s->store = store;
	s->models = models;
	s->rules = rules;
	s->status_rule = (struct status_rule){ c->stale_factor, c->offline_factor,
	    c->stale_after_ms, c->offline_after_ms };
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->progress, NULL);
	s->twins = twin_map_new(c->max_twins, c->max_props_per_twin);
	s->names = calloc((size_t)c->max_properties, sizeof(*s->names));
	/* Names first: the load binds every twin to its rules and open alerts. */
	if (s->twins == NULL || s->names == NULL || rules_bind_names(s) != TW_OK ||
	    sync_load(s) != TW_OK)
		goto fail;
	if (store_begin(s->store) != TW_OK || sync_apply_plant(s, plant) != TW_OK ||
	    twin_flush_dirty(s->twins, flush_twin, s) != TW_OK || store_commit(s->store) != TW_OK) {
		log_warnx("cannot apply the twins file: %s", store_errmsg(s->store));
		store_rollback(s->store);
		goto fail;
	}
	plant_cleanup(plant);
	return s;
fail:
	plant_cleanup(plant);
	sync_free(s);
	return NULL;
}

void
sync_set_mqtt(struct sync *s, struct mqtt *m, struct events *e)
{
	s->mqtt = m;
	s->events = e;
}

void
sync_free(struct sync *s)
{
	struct outstanding *o, *tmp;

	if (s == NULL)
		return;
	HASH_ITER(hh, s->outstanding, o, tmp) {
		HASH_DEL(s->outstanding, o);
		free(o);
	}
	twin_map_free(s->twins);
	store_close(s->store);
	model_set_unref(s->models);
	free(s->names);
	free(s->publish);
	msgs_clear(s);
	free(s->msgs);
	inflight_clear(s);
	free(s->cmds);
	free(s->binds);
	free(s->opened);
	rules_unref(s->rules);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->progress);
	free(s);
}

int
sync_start(struct sync *s)
{
	if (pthread_create(&s->thread, NULL, sync_main, s) != 0)
		return TW_ERR_IO;
	s->started = 1;
	return TW_OK;
}

void
sync_stop(struct sync *s)
{
	if (!s->started)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = 1;
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	s->started = 0;
}

int
sync_wait(struct sync *s, uint64_t after, uint64_t seq, int timeout_ms)
{
	struct timespec deadline;
	int rc = TW_OK;

	clock_deadline(&deadline, timeout_ms);
	pthread_mutex_lock(&s->lock);
	while (s->committed_seq < seq && s->failed_seq < seq) {
		if (pthread_cond_timedwait(&s->progress, &s->lock, &deadline) == ETIMEDOUT) {
			rc = TW_ERR_TIMEOUT;
			break;
		}
	}
	if (rc == TW_OK && s->failed_seq > after)
		rc = TW_ERR_DB;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int
sync_failing(struct sync *s)
{
	return atomic_load(&s->failing);
}
