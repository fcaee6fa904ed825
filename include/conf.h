/* The configuration: an INI file driven by one option table. */
#ifndef TW_CONF_H
#define TW_CONF_H

#include <stdint.h>
#include <stdio.h>

enum conf_sync { CONF_SYNC_NORMAL = 0, CONF_SYNC_FULL = 1 };
enum conf_mqtt { CONF_MQTT_311 = 0, CONF_MQTT_5 = 1 };

struct conf {
	/* [mqtt] */
	char *mqtt_host;
	int mqtt_port;
	int mqtt_protocol;		/* enum conf_mqtt */
	char *mqtt_client_id;
	char *mqtt_username;
	char *mqtt_password;		/* from the file, or read from password_file */
	char *mqtt_password_file;
	char *mqtt_tls_ca;		/* TLS to the broker when set */
	char *mqtt_tls_cert, *mqtt_tls_key;	/* a client certificate, optional */
	int64_t mqtt_keepalive_ms;
	int64_t mqtt_reconnect_min_ms;
	int64_t mqtt_reconnect_max_ms;
	char *telemetry_topic;
	char *command_topic;
	char *desired_topic;
	char *alert_topic;
	char *state_topic;		/* "" when the twin document is not published */
	int64_t state_interval_ms;
	/* [http] */
	char *http_listen;
	int http_event_clients;
	int http_event_buffer;
	int http_max_connections;
	int http_max_per_ip;
	int64_t http_timeout_ms;
	int64_t http_hung_after_ms;	/* a REST handler running longer is a hang (watchdog) */
	int http_max_body;
	int http_allow_remote;
	char *http_hosts;		/* names besides IP literals and localhost allowed in Host */
	char *http_tokens;		/* the tokens file; "" when every request is anonymous */
	char *http_tls_cert, *http_tls_key;	/* HTTPS when set */
	int http_metrics_public;	/* /metrics without a token */
	int http_allow_plaintext;	/* tokens over plain HTTP beyond loopback (a TLS proxy) */
	char *http_www;			/* the page's folder */
	/* [alerts] */
	int64_t shelve_max_ms;
	/* [commands] */
	int64_t cmd_timeout_ms;
	int64_t cmd_ttl_ms;
	int cmd_max_inflight;		/* waiting for the broker, plant-wide */
	int cmd_max_inflight_per_twin;
	int cmd_acknowledged;		/* assets answer on {command_topic}/ack */
	int cmd_allow_unmodelled;	/* a twin without a model takes any command name */
	/* [storage] */
	char *db_path;
	int db_sync;			/* enum conf_sync */
	int64_t db_cache_bytes;		/* the writer's SQLite page cache */
	int batch_max;
	int quarantine_max;
	int64_t max_db_bytes;		/* 0: no budget; else trimmed to stay under */
	int64_t disk_reserve_bytes;	/* free space under this: ingestion pauses */
	/* [history]: how long each tier and table is kept */
	int64_t keep_raw_ms, keep_minute_ms, keep_hour_ms;
	int64_t keep_alerts_ms, keep_commands_ms, keep_quarantine_ms;
	/* [ingest] */
	int max_payload;
	int max_depth;
	int max_properties;
	int64_t max_future_ms;
	int ring_bytes;
	/* [twins] */
	char *models_dir;
	char *twins_file;
	int auto_create;
	int memory_max_mb;		/* the byte budget of twins, values and names, in MiB */
	int max_twins;
	int max_props_per_twin;
	int64_t stale_after_ms;
	int64_t offline_after_ms;
	int stale_factor;
	int offline_factor;
	int64_t converge_timeout_ms;
	/* [rules] */
	char *rules_file;
	int backtest_max_points;	/* readings one POST /rules/test may replay */
	int64_t backtest_max_time_ms;	/* and work it may take */
	/* [log] */
	int log_level;			/* enum log_level */
};

/*
 * Fills `c` with the defaults, then reads `path`. Each error is reported
 * on `err` as "FILE:LINE: message". Relative paths in the file are made
 * relative to the directory of `path`. Returns 0, or TW_ERR_INVAL (bad
 * content) or TW_ERR_IO (unreadable file). The caller owns `c` and frees
 * it with conf_cleanup, also after a failure.
 */
int conf_load(struct conf *c, const char *path, FILE *err);
/* conf_load without conf_validate: for callers that apply overrides first. */
int conf_parse(struct conf *c, const char *path, FILE *err);

/*
 * Applies one "section.key=value" override after conf_load, as from the
 * command line. Returns 0 or TW_ERR_INVAL (reported on `err`).
 */
int conf_set(struct conf *c, const char *assignment, FILE *err);

/* Checks relations between keys (bounds of pairs, topic templates, listen address). */
int conf_validate(const struct conf *c, const char *path, FILE *err);

#define CONF_SECRET_MAX	256
/*
 * Reads [mqtt] password_file into mqtt_password: its first line, from a
 * file no other user may read. 0, or TW_ERR_INVAL (said on `err`).
 */
int conf_read_secrets(struct conf *c, const char *path, FILE *err);

void conf_cleanup(struct conf *c);

/* Splits "host:port" of [http] listen; returns 0 or TW_ERR_INVAL. */
int conf_listen_split(const char *listen, char *host, size_t hostlen, int *port);

#endif
