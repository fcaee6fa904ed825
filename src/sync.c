/* The sync engine: ring to twins to SQLite, one batch per commit. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "err.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "sync.h"
#include "twin.h"

struct sync {
	const struct conf *conf;
	struct ring *ring;
	struct store *store;		/* owned; used by this thread only */
	struct twin_map *twins;		/* owned; used by this thread only */
	const char **names;		/* scratch: interned names of one record */
	pthread_t thread;
	int started;

	/* Batch state, this thread only. */
	int in_txn;
	uint64_t batch_seq;		/* highest seq in the open transaction */
	uint32_t batch_gen;		/* highest connection generation in it */
	uint64_t batch_msgs, batch_vals;
	uint32_t failed_gen;		/* records of this generation or older are dropped */
	struct log_limit drop_log;

	/* Shared with the MQTT thread, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t progress;
	uint64_t committed_seq;		/* every record up to here is on disk */
	uint64_t failed_seq;		/* records up to here were not stored */
	int stopping;
	atomic_int failing;
};

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
	if (row->val.type != 0 && twin_prop_set(p, row->ts, &row->val) < 0)
		return 1;
	p->dirty = 0;
	return 0;
}

static int
sync_load(struct sync *s)
{
	int64_t t0 = clock_mono_us();

	twin_map_clear(s->twins);
	if (store_load(s->store, load_twin, load_series, s) != TW_OK)
		return TW_ERR_DB;
	atomic_store(&metrics.twins, twin_count(s->twins));
	log_info("loaded %u twins in %.1f ms", twin_count(s->twins),
	    (double)(clock_mono_us() - t0) / 1000.0);
	return TW_OK;
}

struct sync *
sync_new(const struct conf *c, struct ring *r, struct store *store)
{
	struct sync *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		store_close(store);
		return NULL;
	}
	s->conf = c;
	s->ring = r;
	s->store = store;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->progress, NULL);
	s->twins = twin_map_new(c->max_twins, c->max_props_per_twin);
	s->names = calloc((size_t)c->max_properties, sizeof(*s->names));
	if (s->twins == NULL || s->names == NULL || sync_load(s) != TW_OK) {
		sync_free(s);
		return NULL;
	}
	return s;
}

void
sync_free(struct sync *s)
{
	if (s == NULL)
		return;
	twin_map_free(s->twins);
	store_close(s->store);
	free(s->names);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->progress);
	free(s);
}

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

/*
 * Finds or creates the twin of an update, and interns its property
 * names into s->names. Returns the twin, or NULL with *reason set.
 */
static struct twin *
sync_twin_for(struct sync *s, const struct rec *r, int *reason)
{
	struct twin *t = twin_find(s->twins, r->id, r->id_len);
	const struct rec_val *v = rec_val_first(r);
	int fresh = 0;

	*reason = INGEST_OK;
	if (t == NULL) {
		if (!s->conf->auto_create) {
			*reason = DROP_UNKNOWN_TWIN;
			return NULL;
		}
		if (r->nvals > s->conf->max_props_per_twin ||
		    (t = twin_add(s->twins, r->id, r->arrival_ms)) == NULL) {
			*reason = DROP_TWIN_LIMIT;
			return NULL;
		}
		twin_mark_dirty(s->twins, t);
		atomic_store(&metrics.twins, twin_count(s->twins));
	}
	for (uint16_t i = 0; i < r->nvals; i++, v = rec_val_next(v)) {
		if ((s->names[i] = twin_intern(s->twins, v->name)) == NULL) {
			*reason = DROP_PROPERTY_LIMIT;
			return NULL;
		}
		if (twin_prop(t, s->names[i]) == NULL)
			fresh++;
	}
	/* Checked before any change, so a refused message changes nothing. */
	if (!twin_props_room(s->twins, t, fresh)) {
		*reason = DROP_PROPERTY_LIMIT;
		return NULL;
	}
	return t;
}

/* Applies one update inside the open transaction. Returns 0 or TW_ERR_DB/NOMEM. */
static int
sync_apply(struct sync *s, const struct rec *r)
{
	const struct rec_val *v = rec_val_first(r);
	struct tw_val val;
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
		}
		/* Every value lands in history, also one older than the reported one. */
		if (store_history_put(s->store, p->series, r->ts, &val) != TW_OK)
			return TW_ERR_DB;
		if ((rc = twin_prop_set(p, r->ts, &val)) < 0)
			return -rc;
		changed |= rc;
	}
	if (changed)
		t->version++;
	if (r->arrival_ms > t->last_seen_ts)
		t->last_seen_ts = r->arrival_ms;
	twin_mark_dirty(s->twins, t);
	s->batch_msgs++;
	s->batch_vals += r->nvals;
	return TW_OK;
}

static int
flush_twin(void *arg, struct twin *t)
{
	struct sync *s = arg;

	if (store_twin_put(s->store, t->id, t->version, t->last_seen_ts, t->created_ts) != TW_OK)
		return TW_ERR_DB;
	for (uint32_t i = 0; i < t->nprops; i++) {
		struct prop *p = &t->props[i];

		if (!p->dirty)
			continue;
		if (store_series_put(s->store, p->series, p->ts, &p->val) != TW_OK)
			return TW_ERR_DB;
		p->dirty = 0;
	}
	return TW_OK;
}

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
	if (sync_load(s) != TW_OK)
		log_warnx("database: reloading the twins failed; will retry with the next batch");
	s->in_txn = 0;
	sync_progress(s, 0, s->batch_seq);
}

static void
sync_commit(struct sync *s)
{
	int64_t t0 = clock_mono_us();

	if (twin_flush_dirty(s->twins, flush_twin, s) != TW_OK) {
		sync_fail(s, "writing twin state");
		return;
	}
	if (store_commit(s->store) != TW_OK) {
		sync_fail(s, "commit");
		return;
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
}

static int
sync_record(struct sync *s, const struct rec *r)
{
	if (r->gen <= s->failed_gen) {
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
	if (!s->in_txn) {
		if (store_begin(s->store) != TW_OK) {
			s->batch_gen = r->gen;
			s->batch_seq = r->seq;
			s->batch_msgs = 0;
			sync_fail(s, "begin");
			return TW_OK;
		}
		s->in_txn = 1;
		s->batch_msgs = s->batch_vals = 0;
	}
	s->batch_seq = r->seq;
	s->batch_gen = r->gen;
	if (r->kind == REC_QUARANTINE) {
		if (s->conf->quarantine_max > 0 &&
		    store_quarantine_put(s->store, r->arrival_ms, r->id, ingest_reason_name(r->reason),
		    rec_body(r), (int)r->body_len, s->conf->quarantine_max) != TW_OK)
			return TW_ERR_DB;
		metrics_add(&metrics.quarantined, 1);
		return TW_OK;
	}
	return sync_apply(s, r);
}

/*
 * Batches end where the MQTT thread puts a flush record (after each read
 * burst, when it wants to acknowledge), at batch_max, or when the ring
 * stays empty for a while with a batch open.
 */
static void *
sync_main(void *arg)
{
	struct sync *s = arg;
	const void *p;
	size_t len;
	int stopping;

	for (;;) {
		p = ring_peek(s->ring, &len, 100);
		if (p != NULL) {
			int rc = sync_record(s, p);

			ring_pop(s->ring);
			if (rc != TW_OK && s->in_txn)
				sync_fail(s, "applying an update");
			else if (s->in_txn && s->batch_msgs >= (uint64_t)s->conf->batch_max)
				sync_commit(s);
			continue;
		}
		if (s->in_txn)
			sync_commit(s);
		pthread_mutex_lock(&s->lock);
		stopping = s->stopping;
		pthread_mutex_unlock(&s->lock);
		if (stopping && ring_count(s->ring) == 0)
			break;
	}
	return NULL;
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

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
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
