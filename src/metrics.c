/* The counters behind /metrics and their Prometheus text form. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converge.h"
#include "envelope.h"
#include "metrics.h"
#include "text.h"

_Static_assert(METRICS_REFUSALS == ENVELOPE__COUNT, "one counter per refusal");
_Static_assert(sizeof(metrics.effects) / sizeof(metrics.effects[0]) == CONVERGE_OUTCOMES,
    "one counter per outcome");

struct metrics metrics;

static const uint64_t batch_bounds[METRICS_BATCH_BUCKETS] = {
	1, 10, 50, 100, 500, 1000, 5000, 10000
};
static const int64_t commit_bounds_us[METRICS_COMMIT_BUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 1000000
};

static uint64_t
load(atomic_uint_fast64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

void
metrics_commit(uint64_t batch, int64_t us)
{
	metrics_add(&metrics.commits, 1);
	metrics_add(&metrics.batch_sum, batch);
	metrics_add(&metrics.commit_us_sum, (uint64_t)us);
	/* Buckets are stored non-cumulative; the renderer adds them up. */
	for (int i = 0; i < METRICS_BATCH_BUCKETS; i++)
		if (batch <= batch_bounds[i]) {
			metrics_add(&metrics.batch_le[i], 1);
			break;
		}
	for (int i = 0; i < METRICS_COMMIT_BUCKETS; i++)
		if (us <= commit_bounds_us[i]) {
			metrics_add(&metrics.commit_le[i], 1);
			break;
		}
}

static void
counter(struct text *o, const char *name, const char *help, uint64_t v)
{
	text_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
	    (unsigned long long)v);
}

static void
gauge(struct text *o, const char *name, const char *help, uint64_t v)
{
	text_printf(o, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
	    (unsigned long long)v);
}

static void
render_histograms(struct text *o)
{
	uint64_t cum = 0;

	text_printf(o, "# HELP twind_commit_batch_size Messages per database commit.\n"
	    "# TYPE twind_commit_batch_size histogram\n");
	for (int i = 0; i < METRICS_BATCH_BUCKETS; i++) {
		cum += load(&metrics.batch_le[i]);
		text_printf(o, "twind_commit_batch_size_bucket{le=\"%llu\"} %llu\n",
		    (unsigned long long)batch_bounds[i], (unsigned long long)cum);
	}
	text_printf(o, "twind_commit_batch_size_bucket{le=\"+Inf\"} %llu\n"
	    "twind_commit_batch_size_sum %llu\ntwind_commit_batch_size_count %llu\n",
	    (unsigned long long)load(&metrics.commits),
	    (unsigned long long)load(&metrics.batch_sum),
	    (unsigned long long)load(&metrics.commits));

	cum = 0;
	text_printf(o, "# HELP twind_commit_seconds Time of one database commit.\n"
	    "# TYPE twind_commit_seconds histogram\n");
	for (int i = 0; i < METRICS_COMMIT_BUCKETS; i++) {
		cum += load(&metrics.commit_le[i]);
		text_printf(o, "twind_commit_seconds_bucket{le=\"%g\"} %llu\n",
		    (double)commit_bounds_us[i] / 1e6, (unsigned long long)cum);
	}
	text_printf(o, "twind_commit_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "twind_commit_seconds_sum %.6f\ntwind_commit_seconds_count %llu\n",
	    (unsigned long long)load(&metrics.commits),
	    (double)load(&metrics.commit_us_sum) / 1e6,
	    (unsigned long long)load(&metrics.commits));
}

static const char *const command_statuses[METRICS_CMD_STATUSES] = {
	"pending", "sent", "done", "rejected", "failed", "timed_out", "expired", "refused",
};

void
metrics_command(const char *status)
{
	for (int i = 0; i < METRICS_CMD_STATUSES; i++)
		if (strcmp(status, command_statuses[i]) == 0) {
			metrics_add(&metrics.commands[i], 1);
			return;
		}
}

char *
metrics_render(size_t *len, size_t ring_used, size_t ring_cap)
{
	struct text o = { 0 };

	counter(&o, "twind_messages_received_total", "MQTT telemetry messages received.",
	    load(&metrics.received));
	text_printf(&o, "# HELP twind_messages_dropped_total Messages dropped, by reason.\n"
	    "# TYPE twind_messages_dropped_total counter\n");
	for (int r = 1; r < DROP__COUNT; r++)
		text_printf(&o, "twind_messages_dropped_total{reason=\"%s\"} %llu\n",
		    ingest_reason_name(r), (unsigned long long)load(&metrics.dropped[r]));
	counter(&o, "twind_quarantined_total", "Dropped messages kept in the quarantine table.",
	    load(&metrics.quarantined));
	counter(&o, "twind_updates_applied_total", "Messages applied to twins and committed.",
	    load(&metrics.applied));
	counter(&o, "twind_values_stored_total", "Property values committed to history.",
	    load(&metrics.values));
	counter(&o, "twind_values_out_of_range_total",
	    "Values stored and flagged outside their model's minimum or maximum.",
	    load(&metrics.out_of_range));
	counter(&o, "twind_alerts_raised_total", "Alerts raised by rules.",
	    load(&metrics.alerts_raised));
	counter(&o, "twind_rule_evaluations_total", "Rules judged on a twin's update or on the "
	    "timer.", load(&metrics.rule_evaluations));
	counter(&o, "twind_commit_failures_total", "Database commits that failed.",
	    load(&metrics.commit_failures));
	render_histograms(&o);
	gauge(&o, "twind_ring_depth_bytes", "Bytes waiting in the ingest ring.", ring_used);
	gauge(&o, "twind_ring_capacity_bytes", "Size of the ingest ring.", ring_cap);
	gauge(&o, "twind_twins", "Twins in memory.", load(&metrics.twins));
	gauge(&o, "twind_broker_connected", "1 while connected to the MQTT broker.",
	    (uint64_t)atomic_load(&metrics.broker_connected));
	counter(&o, "twind_broker_reconnects_total", "Connections made to the broker after the first.",
	    load(&metrics.reconnects));
	gauge(&o, "twind_database_failing", "1 while the last commit failed.",
	    (uint64_t)atomic_load(&metrics.db_failing));
	gauge(&o, "twind_disk_full", "1 while ingestion is paused because the disk is full or "
	    "under [storage] disk_reserve.", (uint64_t)atomic_load(&metrics.disk_full));
	gauge(&o, "twind_disk_free_bytes", "Bytes free on the database's file system.",
	    (uint64_t)(atomic_load(&metrics.disk_free) > 0 ? atomic_load(&metrics.disk_free) : 0));
	counter(&o, "twind_retention_trimmed_total", "Raw points and rows deleted by retention "
	    "and the disk budget.", load(&metrics.trimmed));
	counter(&o, "twind_history_blocks_bad_total", "Blocks of raw history that did not decode, "
	    "moved to history_block_bad.", load(&metrics.blocks_bad));
	counter(&o, "twind_history_packed_total", "Raw points older than an hour packed from "
	    "rows into compressed blocks.", load(&metrics.packed));
	counter(&o, "twind_history_rollups_packed_total", "Minute and hour rollup rows under the "
	    "raw edge packed into compressed blocks.", load(&metrics.rollups_packed));
	counter(&o, "twind_values_too_old_total", "Values older than raw retention's edge: "
	    "in no rollup, and numbers not stored.", load(&metrics.values_too_old));
	counter(&o, "twind_http_requests_total", "REST requests served.",
	    load(&metrics.http_requests));
	counter(&o, "twind_http_refused_total", "Requests refused for their Host, Origin or "
	    "Content-Type (the browser guard).", load(&metrics.http_refused));
	gauge(&o, "twind_event_clients", "Server-Sent Events clients connected now.",
	    (uint64_t)atomic_load(&metrics.event_clients));
	counter(&o, "twind_event_clients_cut_total",
	    "Server-Sent Events clients cut off for not keeping up.", load(&metrics.events_cut));
	counter(&o, "twind_outbox_dropped_total",
	    "Alert messages dropped while the broker was away (beyond the outbox's bound).",
	    load(&metrics.outbox_dropped));
	text_printf(&o, "# HELP twind_commands_total Commands that reached a status.\n"
	    "# TYPE twind_commands_total counter\n");
	for (int i = 0; i < METRICS_CMD_STATUSES; i++)
		text_printf(&o, "twind_commands_total{status=\"%s\"} %llu\n", command_statuses[i],
		    (unsigned long long)load(&metrics.commands[i]));
	text_printf(&o, "# HELP twind_commands_refused_total Commands refused before they left, "
	    "by reason (the safety envelope, or the bounds: inflight).\n"
	    "# TYPE twind_commands_refused_total counter\n");
	for (int i = 1; i < METRICS_REFUSALS; i++)
		text_printf(&o, "twind_commands_refused_total{reason=\"%s\"} %llu\n",
		    envelope_refusal_name(i), (unsigned long long)load(&metrics.refusals[i]));
	text_printf(&o, "# HELP twind_commands_effect_total Commands judged by the reported state "
	    "(converge.c): converged, not_converged, not_sent, or not_watched (beyond a bound).\n"
	    "# TYPE twind_commands_effect_total counter\n");
	for (int i = 0; i < CONVERGE_OUTCOMES; i++)
		text_printf(&o, "twind_commands_effect_total{outcome=\"%s\"} %llu\n",
		    converge_outcome_name(i), (unsigned long long)load(&metrics.effects[i]));
	gauge(&o, "twind_commands_watched", "Commands waiting for their effect on the asset.",
	    load(&metrics.commands_watched));
	gauge(&o, "twind_commands_pending", "Commands waiting for the broker to take them.",
	    load(&metrics.commands_pending));
	gauge(&o, "twind_property_names", "Distinct property names held (interned once).",
	    load(&metrics.property_names));
	gauge(&o, "twind_memory_bytes", "Bytes the twins, their values, rule state and the names "
	    "hold.", load(&metrics.memory_bytes));
	gauge(&o, "twind_memory_budget_bytes", "[twins] memory_max, the bound of twind_memory_bytes.",
	    load(&metrics.memory_budget));
	gauge(&o, "twind_db_cache_bytes", "Bytes the writer's SQLite page cache holds.",
	    load(&metrics.db_cache));
	gauge(&o, "twind_db_cache_budget_bytes", "[storage] cache_size, the bound of "
	    "twind_db_cache_bytes.", load(&metrics.db_cache_budget));
	if (o.failed) {
		free(o.buf);
		return NULL;
	}
	*len = o.len;
	return o.buf;
}
