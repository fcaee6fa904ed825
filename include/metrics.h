/*
 * Counters and histograms for /metrics. Each is written by one thread
 * (named beside it) and read by the REST threads, through relaxed atomics:
 * a scrape may see one counter a little ahead of another, never a torn value.
 */
#ifndef TW_METRICS_H
#define TW_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest.h"

#define METRICS_BATCH_BUCKETS	8
#define METRICS_COMMIT_BUCKETS	10
#define METRICS_REFUSALS	6	/* ENVELOPE__COUNT: ok range rate interlock manual inflight */
#define METRICS_CMD_STATUSES	8	/* pending sent done rejected failed timed_out expired refused */

struct metrics {
	atomic_uint_fast64_t received;			/* MQTT thread */
	atomic_uint_fast64_t dropped[DROP__COUNT];	/* MQTT thread and engine */
	atomic_uint_fast64_t quarantined;		/* engine */
	atomic_uint_fast64_t applied;			/* engine: messages committed */
	atomic_uint_fast64_t values;			/* engine: values committed */
	atomic_uint_fast64_t out_of_range;		/* engine: values outside the model's range */
	atomic_uint_fast64_t alerts_raised;		/* engine: rule alerts raised */
	atomic_uint_fast64_t rule_evaluations;		/* engine: rules judged on a twin */
	atomic_uint_fast64_t commits;			/* engine */
	atomic_uint_fast64_t commit_failures;		/* engine */
	atomic_uint_fast64_t batch_le[METRICS_BATCH_BUCKETS];	/* engine */
	atomic_uint_fast64_t batch_sum;
	atomic_uint_fast64_t commit_le[METRICS_COMMIT_BUCKETS];	/* engine */
	atomic_uint_fast64_t commit_us_sum;
	atomic_uint_fast64_t twins;			/* engine */
	atomic_int broker_connected;			/* MQTT thread */
	atomic_uint_fast64_t reconnects;		/* MQTT thread */
	atomic_int db_failing;				/* engine */
	atomic_int disk_full;				/* engine: ingestion paused for space */
	atomic_int_fast64_t disk_free;			/* engine: bytes free, -1 unknown */
	atomic_uint_fast64_t trimmed;			/* engine: rows retention deleted */
	atomic_uint_fast64_t packed;			/* engine: raw points packed into blocks */
	atomic_uint_fast64_t rollups_packed;		/* engine: rollup rows packed into blocks */
	atomic_uint_fast64_t blocks_bad;		/* engine: blocks that did not decode, set aside */
	atomic_uint_fast64_t values_too_old;		/* engine: older than retention's edge */
	atomic_uint_fast64_t http_requests;		/* REST threads */
	atomic_uint_fast64_t http_refused;		/* REST threads: the browser guard */
	atomic_uint_fast64_t events_cut;		/* engine: slow SSE clients cut off */
	atomic_int event_clients;			/* REST threads, under the hub's lock */
	atomic_uint_fast64_t outbox_dropped;		/* engine: messages dropped while the broker was away */
	atomic_uint_fast64_t commands[METRICS_CMD_STATUSES];	/* engine: by status reached */
	atomic_uint_fast64_t refusals[METRICS_REFUSALS];	/* engine: by enum envelope_refusal */
	atomic_uint_fast64_t effects[4];	/* engine: by enum converge_outcome */
	atomic_uint_fast64_t commands_watched;	/* engine: waiting for their effect (gauge) */
	atomic_uint_fast64_t commands_pending;		/* engine: waiting for the broker */
	atomic_uint_fast64_t property_names;		/* engine: interned property names */
	atomic_uint_fast64_t memory_bytes;		/* engine: what the twins and names hold */
	atomic_uint_fast64_t memory_budget;		/* engine: [twins] memory_max */
	atomic_uint_fast64_t db_cache;			/* engine: its SQLite page cache */
	atomic_uint_fast64_t db_cache_budget;		/* main: [storage] cache_size */
};

extern struct metrics metrics;

static inline void
metrics_add(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Counts a command reaching `status` (one of the eight; others are ignored). */
void metrics_command(const char *status);

/* Records one commit of `batch` messages that took `us` microseconds. */
void metrics_commit(uint64_t batch, int64_t us);

/*
 * Writes the Prometheus text form into a new buffer (the caller frees
 * it) and its length into *len. `ring_used` and `ring_cap` are sampled
 * by the caller. Returns NULL on allocation failure.
 */
char *metrics_render(size_t *len, size_t ring_used, size_t ring_cap);

#endif
