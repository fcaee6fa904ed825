/* The configuration file: one option table drives parsing, defaults and checks. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "conf.h"
#include "err.h"
#include "http_guard.h"

enum opt_type { OPT_STR, OPT_PATH, OPT_INT, OPT_BOOL, OPT_DURATION, OPT_ENUM, OPT_SIZE };

struct opt {
	const char *section;
	const char *name;
	enum opt_type type;
	size_t off;
	const char *def;	/* parsed like a value from the file */
	int64_t min, max;	/* for INT, DURATION (milliseconds) and SIZE (bytes) */
	const char *choices;	/* for ENUM: "a|b|c", stored as the index */
};

#define F(field)	offsetof(struct conf, field)
#define DAY_MS		86400000LL

/*
 * Every setting, its default and its bounds. config/twind.conf documents
 * each of them; keep the two in step.
 */
#ifndef TW_WWW_DIR
#define TW_WWW_DIR	"/usr/local/share/twind/www"	/* the Makefile says where it installs it */
#endif

static const struct opt opts[] = {
	{ "mqtt", "host", OPT_STR, F(mqtt_host), "127.0.0.1", 0, 0, NULL },
	{ "mqtt", "port", OPT_INT, F(mqtt_port), "1883", 1, 65535, NULL },
	{ "mqtt", "protocol", OPT_ENUM, F(mqtt_protocol), "5", 0, 0, "3.1.1|5" },
	{ "mqtt", "client_id", OPT_STR, F(mqtt_client_id), "twind", 0, 0, NULL },
	{ "mqtt", "username", OPT_STR, F(mqtt_username), "", 0, 0, NULL },
	{ "mqtt", "password", OPT_STR, F(mqtt_password), "", 0, 0, NULL },
	{ "mqtt", "password_file", OPT_PATH, F(mqtt_password_file), "", 0, 0, NULL },
	{ "mqtt", "tls_ca_file", OPT_PATH, F(mqtt_tls_ca), "", 0, 0, NULL },
	{ "mqtt", "tls_cert_file", OPT_PATH, F(mqtt_tls_cert), "", 0, 0, NULL },
	{ "mqtt", "tls_key_file", OPT_PATH, F(mqtt_tls_key), "", 0, 0, NULL },
	{ "mqtt", "keepalive", OPT_DURATION, F(mqtt_keepalive_ms), "30s", 5000, 3600000, NULL },
	{ "mqtt", "reconnect_min", OPT_DURATION, F(mqtt_reconnect_min_ms), "500ms", 100, 60000, NULL },
	{ "mqtt", "reconnect_max", OPT_DURATION, F(mqtt_reconnect_max_ms), "30s", 100, 3600000, NULL },
	{ "mqtt", "telemetry_topic", OPT_STR, F(telemetry_topic), "plant/{twin}/telemetry", 0, 0, NULL },
	{ "mqtt", "command_topic", OPT_STR, F(command_topic), "plant/{twin}/cmd", 0, 0, NULL },
	{ "mqtt", "desired_topic", OPT_STR, F(desired_topic), "plant/{twin}/desired", 0, 0, NULL },
	{ "mqtt", "alert_topic", OPT_STR, F(alert_topic), "plant/{twin}/alert", 0, 0, NULL },
	{ "mqtt", "state_topic", OPT_STR, F(state_topic), "", 0, 0, NULL },
	{ "mqtt", "state_interval", OPT_DURATION, F(state_interval_ms), "10s", 1000, 86400000, NULL },
	{ "http", "listen", OPT_STR, F(http_listen), "127.0.0.1:8080", 0, 0, NULL },
	{ "http", "max_event_clients", OPT_INT, F(http_event_clients), "16", 0, 1000, NULL },
	{ "http", "event_buffer", OPT_INT, F(http_event_buffer), "65536", 4096, 16777216, NULL },
	/* At most the watchdog's slots (WATCHDOG_BUSY_SLOTS): every handler is watched. */
	{ "http", "max_connections", OPT_INT, F(http_max_connections), "64", 1, 1024, NULL },
	{ "http", "max_connections_per_ip", OPT_INT, F(http_max_per_ip), "16", 1, 10000, NULL },
	{ "http", "timeout", OPT_DURATION, F(http_timeout_ms), "30s", 1000, 3600000, NULL },
	{ "http", "hung_after", OPT_DURATION, F(http_hung_after_ms), "5m", 1000, 3600000, NULL },
	{ "http", "max_body", OPT_INT, F(http_max_body), "65536", 1024, 16777216, NULL },
	{ "http", "allow_remote_without_tokens", OPT_BOOL, F(http_allow_remote), "no", 0, 0, NULL },
	{ "http", "hosts", OPT_STR, F(http_hosts), "", 0, 0, NULL },
	{ "http", "tokens", OPT_PATH, F(http_tokens), "", 0, 0, NULL },
	{ "http", "allow_remote_without_tls", OPT_BOOL, F(http_allow_plaintext), "no", 0, 0, NULL },
	{ "http", "tls_cert_file", OPT_PATH, F(http_tls_cert), "", 0, 0, NULL },
	{ "http", "tls_key_file", OPT_PATH, F(http_tls_key), "", 0, 0, NULL },
	{ "http", "metrics_without_token", OPT_BOOL, F(http_metrics_public), "no", 0, 0, NULL },
	{ "http", "www", OPT_PATH, F(http_www), TW_WWW_DIR, 0, 0, NULL },
	{ "alerts", "shelve_max", OPT_DURATION, F(shelve_max_ms), "8h", 60000, 366 * DAY_MS, NULL },
	{ "commands", "timeout", OPT_DURATION, F(cmd_timeout_ms), "30s", 100, 86400000, NULL },
	{ "commands", "ttl", OPT_DURATION, F(cmd_ttl_ms), "5m", 100, 7 * DAY_MS, NULL },
	{ "commands", "max_inflight", OPT_INT, F(cmd_max_inflight), "10000", 1, 1000000, NULL },
	{ "commands", "max_inflight_per_twin", OPT_INT, F(cmd_max_inflight_per_twin), "100", 1,
	    100000, NULL },
	{ "commands", "acknowledged", OPT_BOOL, F(cmd_acknowledged), "yes", 0, 0, NULL },
	{ "commands", "allow_unmodelled", OPT_BOOL, F(cmd_allow_unmodelled), "no", 0, 0, NULL },
	{ "storage", "database", OPT_PATH, F(db_path), "/var/lib/twind/twind.db", 0, 0, NULL },
	{ "storage", "synchronous", OPT_ENUM, F(db_sync), "full", 0, 0, "normal|full" },
	/* The writer's page cache: the pages every commit touches should fit (README, Memory). */
	/* At most 1G: SQLite 3.40 counts the cache's bytes in an int (twind_db_cache_bytes). */
	{ "storage", "cache_size", OPT_SIZE, F(db_cache_bytes), "8M", 256 << 10, 1LL << 30, NULL },
	{ "storage", "batch_max", OPT_INT, F(batch_max), "8192", 1, 1000000, NULL },
	{ "storage", "quarantine_max", OPT_INT, F(quarantine_max), "1000", 0, 1000000, NULL },
	{ "storage", "max_db_size", OPT_SIZE, F(max_db_bytes), "0", 0, 1LL << 50, NULL },
	{ "storage", "disk_reserve", OPT_SIZE, F(disk_reserve_bytes), "64M", 0, 1LL << 50, NULL },
	{ "history", "raw", OPT_DURATION, F(keep_raw_ms), "7d", 3600000, 3650 * DAY_MS, NULL },
	{ "history", "minute", OPT_DURATION, F(keep_minute_ms), "90d", 3600000, 3650 * DAY_MS,
	    NULL },
	{ "history", "hour", OPT_DURATION, F(keep_hour_ms), "1825d", 3600000, 3650 * DAY_MS, NULL },
	{ "history", "alerts", OPT_DURATION, F(keep_alerts_ms), "365d", 3600000, 3650 * DAY_MS,
	    NULL },
	{ "history", "commands", OPT_DURATION, F(keep_commands_ms), "90d", 3600000, 3650 * DAY_MS,
	    NULL },
	{ "history", "quarantine", OPT_DURATION, F(keep_quarantine_ms), "30d", 3600000,
	    3650 * DAY_MS, NULL },
	{ "ingest", "max_payload", OPT_INT, F(max_payload), "65536", 64, 16777216, NULL },
	{ "ingest", "max_depth", OPT_INT, F(max_depth), "32", 1, 1000, NULL },
	{ "ingest", "max_properties", OPT_INT, F(max_properties), "256", 1, 65535, NULL },
	{ "ingest", "max_future", OPT_DURATION, F(max_future_ms), "1h", 0, 365 * DAY_MS, NULL },
	{ "ingest", "ring_bytes", OPT_INT, F(ring_bytes), "1048576", 1048576, 1073741824, NULL },
	{ "twins", "models", OPT_PATH, F(models_dir), "", 0, 0, NULL },
	{ "twins", "file", OPT_PATH, F(twins_file), "", 0, 0, NULL },
	{ "twins", "auto_create", OPT_BOOL, F(auto_create), "true", 0, 0, NULL },
	{ "twins", "memory_max", OPT_INT, F(memory_max_mb), "128", 1, 65536, NULL },
	{ "twins", "max_twins", OPT_INT, F(max_twins), "100000", 1, 10000000, NULL },
	{ "twins", "max_properties_per_twin", OPT_INT, F(max_props_per_twin), "1024", 1, 65535, NULL },
	{ "twins", "stale_after", OPT_DURATION, F(stale_after_ms), "5m", 1000, 365 * DAY_MS, NULL },
	{ "twins", "offline_after", OPT_DURATION, F(offline_after_ms), "1h", 1000, 365 * DAY_MS, NULL },
	{ "twins", "stale_factor", OPT_INT, F(stale_factor), "3", 1, 1000, NULL },
	{ "twins", "offline_factor", OPT_INT, F(offline_factor), "20", 1, 100000, NULL },
	{ "twins", "converge_timeout", OPT_DURATION, F(converge_timeout_ms), "5m", 1000, 365 * DAY_MS, NULL },
	{ "rules", "file", OPT_PATH, F(rules_file), "", 0, 0, NULL },
	{ "rules", "backtest_max_points", OPT_INT, F(backtest_max_points), "2000000", 100,
	    100000000, NULL },
	{ "rules", "backtest_max_time", OPT_DURATION, F(backtest_max_time_ms), "10s", 1, 600000,
	    NULL },
	{ "log", "level", OPT_ENUM, F(log_level), "info", 0, 0, "error|warn|info|debug" },
};

#define NOPTS	(sizeof(opts) / sizeof(opts[0]))

struct parse_ctx {
	struct conf *c;
	const char *path;	/* the file being read, for messages and relative paths */
	FILE *f;
	int line;		/* the line inih is handling now */
	int err_line;		/* the line of the first error, 0 if none */
	char msg[256];		/* the first error */
};

static const struct opt *
opt_find(const char *section, const char *name)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(opts[i].section, section) == 0 &&
		    strcmp(opts[i].name, name) == 0)
			return &opts[i];
	return NULL;
}

static int
section_known(const char *section)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(opts[i].section, section) == 0)
			return 1;
	return 0;
}

static int
parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcmp(v, yes[i]) == 0) {
			*out = 1;
			return TW_OK;
		}
		if (strcmp(v, no[i]) == 0) {
			*out = 0;
			return TW_OK;
		}
	}
	return TW_ERR_INVAL;
}

static int
parse_choice(const char *choices, const char *v, int *out)
{
	size_t vlen = strlen(v);
	const char *p = choices;

	for (int i = 0; *p != '\0'; i++) {
		size_t n = strcspn(p, "|");

		if (n == vlen && strncmp(p, v, n) == 0) {
			*out = i;
			return TW_OK;
		}
		p += n;
		if (*p == '|')
			p++;
	}
	return TW_ERR_INVAL;
}

/* "65536", "512K", "64M", "2G" (powers of 1024) into bytes. */
static int
parse_size(const char *v, int64_t *out)
{
	static const char units[] = "KMGT";
	const char *u;
	long long n;
	char *end;

	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v || n < 0 || *v == '-' || *v == '+')
		return TW_ERR_INVAL;
	if (*end != '\0') {
		if (end[1] != '\0' || (u = strchr(units, *end)) == NULL)
			return TW_ERR_INVAL;
		for (long i = 0; i <= u - units; i++) {
			if (n > (1LL << 52))
				return TW_ERR_INVAL;
			n *= 1024;
		}
	}
	*out = n;
	return TW_OK;
}

/* Makes `v` relative to the directory of the config file unless absolute. */
static char *
path_resolve(const char *config_path, const char *v)
{
	const char *slash;
	char *out;
	int n;

	if (v[0] == '/' || config_path == NULL ||
	    (slash = strrchr(config_path, '/')) == NULL)
		return strdup(v);
	n = (int)(slash - config_path);
	if (asprintf(&out, "%.*s/%s", n, config_path, v) < 0)
		return NULL;
	return out;
}

/*
 * Stores one value. Returns 0, or TW_ERR_INVAL with a message in msg.
 * `config_path` is NULL for defaults and command-line overrides.
 */
static int
opt_set(struct conf *c, const struct opt *o, const char *v, const char *config_path,
    char *msg, size_t msglen)
{
	char *p = (char *)c + o->off, *end, *s;
	long long n;
	int64_t d;
	int b;

	switch (o->type) {
	case OPT_STR:
	case OPT_PATH:
		s = o->type == OPT_PATH && *v != '\0' ?
		    path_resolve(config_path, v) : strdup(v);
		if (s == NULL) {
			snprintf(msg, msglen, "out of memory");
			return TW_ERR_NOMEM;
		}
		free(*(char **)p);
		*(char **)p = s;
		return TW_OK;
	case OPT_INT:
		errno = 0;
		n = strtoll(v, &end, 10);
		if (errno != 0 || end == v || *end != '\0' || n < o->min || n > o->max) {
			snprintf(msg, msglen, "%s: '%s' is not a whole number from %lld to %lld",
			    o->name, v, (long long)o->min, (long long)o->max);
			return TW_ERR_INVAL;
		}
		*(int *)p = (int)n;
		return TW_OK;
	case OPT_BOOL:
		if (parse_bool(v, &b) != TW_OK) {
			snprintf(msg, msglen, "%s: '%s' is not true or false", o->name, v);
			return TW_ERR_INVAL;
		}
		*(int *)p = b;
		return TW_OK;
	case OPT_DURATION:
		if (clock_parse_duration(v, &d) != TW_OK || d < o->min || d > o->max) {
			snprintf(msg, msglen, "%s: '%s' is not a duration from %lldms to %lldms "
			    "(such as 500ms, 30s, 5m, 2h, 7d)", o->name, v,
			    (long long)o->min, (long long)o->max);
			return TW_ERR_INVAL;
		}
		*(int64_t *)p = d;
		return TW_OK;
	case OPT_SIZE:
		if (parse_size(v, &d) != TW_OK || d < o->min || d > o->max) {
			snprintf(msg, msglen, "%s: '%s' is not a size from %lldK to %lldM "
			    "(such as 512K, 64M, 2G)", o->name, v,
			    (long long)(o->min >> 10), (long long)(o->max >> 20));
			return TW_ERR_INVAL;
		}
		*(int64_t *)p = d;
		return TW_OK;
	case OPT_ENUM:
		if (parse_choice(o->choices, v, &b) != TW_OK) {
			snprintf(msg, msglen, "%s: '%s' is not one of %s", o->name, v, o->choices);
			return TW_ERR_INVAL;
		}
		*(int *)p = b;
		return TW_OK;
	}
	return TW_ERR_INVAL;
}

static void
parse_error(struct parse_ctx *ctx, const char *msg)
{
	if (ctx->err_line != 0)
		return;
	ctx->err_line = ctx->line;
	snprintf(ctx->msg, sizeof(ctx->msg), "%s", msg);
}

/* inih calls this per key; returning 0 makes ini_parse report the line. */
static int
conf_handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *ctx = user;
	const struct opt *o;
	char msg[200];

	if (!section_known(section))
		return 1;	/* reported by conf_reader at its header */
	if ((o = opt_find(section, name)) == NULL) {
		snprintf(msg, sizeof(msg), "unknown key '%s' in [%s]", name, section);
		parse_error(ctx, msg);
		return 0;
	}
	if (opt_set(ctx->c, o, value, ctx->path, msg, sizeof(msg)) != TW_OK) {
		parse_error(ctx, msg);
		return 0;
	}
	return 1;
}

/*
 * Feeds inih line by line, counting lines so that every error has one,
 * and checks section headers itself: inih tells the handler about a
 * section only when a key follows it, and an empty unknown section is a
 * typo too.
 */
static char *
conf_reader(char *str, int num, void *stream)
{
	struct parse_ctx *ctx = stream;
	char *line = fgets(str, num, ctx->f), *p, msg[200];
	size_t n;

	if (line == NULL)
		return NULL;
	ctx->line++;
	for (p = line; *p == ' ' || *p == '\t'; p++)
		;
	if (*p == '[' && (n = strcspn(p + 1, "]")) < 64) {
		char section[64];

		snprintf(section, sizeof(section), "%.*s", (int)n, p + 1);
		if (p[1 + n] == ']' && !section_known(section)) {
			snprintf(msg, sizeof(msg), "unknown section [%s]", section);
			parse_error(ctx, msg);
		}
	}
	return line;
}

/* 0, or TW_ERR_NOMEM with `c` safe to clean up. */
static int
conf_defaults(struct conf *c)
{
	char msg[200];
	int rc;

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NOPTS; i++)
		if ((rc = opt_set(c, &opts[i], opts[i].def, NULL, msg, sizeof(msg))) != TW_OK) {
			if (rc == TW_ERR_NOMEM)
				return rc;	/* a reload (SIGHUP) parses too: no abort */
			abort();	/* a default outside its own bounds is a bug */
		}
	return TW_OK;
}

int
conf_load(struct conf *c, const char *path, FILE *err)
{
	int rc = conf_parse(c, path, err);

	return rc != TW_OK ? rc : conf_validate(c, path, err);
}

int
conf_parse(struct conf *c, const char *path, FILE *err)
{
	struct parse_ctx ctx = { .c = c, .path = path };
	int line;

	if (conf_defaults(c) != TW_OK) {
		fprintf(err, "%s: out of memory\n", path);
		return TW_ERR_NOMEM;
	}
	if ((ctx.f = fopen(path, "r")) == NULL) {
		fprintf(err, "%s: cannot open: %s\n", path, strerror(errno));
		return TW_ERR_IO;
	}
	/* A value continued on an indented line is a typo more often than intent. */
	ini_allow_multiline = false;
	/* Long values (passwords, paths) must not be cut at inih's 200 bytes. */
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_max_line = 4096;
	line = ini_parse_stream(conf_reader, &ctx, conf_handler, &ctx);
	fclose(ctx.f);
	if (line == -2) {
		fprintf(err, "%s: out of memory\n", path);
		return TW_ERR_NOMEM;
	}
	if (ctx.err_line > 0) {
		fprintf(err, "%s:%d: %s\n", path, ctx.err_line, ctx.msg);
		return TW_ERR_INVAL;
	}
	if (line > 0) {
		fprintf(err, "%s:%d: syntax error (expected [section] or key = value)\n", path, line);
		return TW_ERR_INVAL;
	}
	return TW_OK;
}

int
conf_set(struct conf *c, const char *assignment, FILE *err)
{
	char section[64], name[64], msg[200];
	const char *dot, *eq;
	const struct opt *o;

	dot = strchr(assignment, '.');
	eq = strchr(assignment, '=');
	if (dot == NULL || eq == NULL || dot > eq ||
	    (size_t)(dot - assignment) >= sizeof(section) ||
	    (size_t)(eq - dot - 1) >= sizeof(name)) {
		fprintf(err, "-o %s: expected section.key=value\n", assignment);
		return TW_ERR_INVAL;
	}
	snprintf(section, sizeof(section), "%.*s", (int)(dot - assignment), assignment);
	snprintf(name, sizeof(name), "%.*s", (int)(eq - dot - 1), dot + 1);
	if ((o = opt_find(section, name)) == NULL) {
		fprintf(err, "-o %s: unknown key %s.%s\n", assignment, section, name);
		return TW_ERR_INVAL;
	}
	/* Every user of the host can read a command line (ps, /proc). */
	if (strcmp(section, "mqtt") == 0 && strcmp(name, "password") == 0) {
		fprintf(err, "-o mqtt.password: a password on the command line is visible to every "
		    "user of the host; use [mqtt] password_file\n");
		return TW_ERR_INVAL;
	}
	if (opt_set(c, o, eq + 1, NULL, msg, sizeof(msg)) != TW_OK) {
		fprintf(err, "-o %s: %s\n", assignment, msg);
		return TW_ERR_INVAL;
	}
	return TW_OK;
}

int
conf_listen_split(const char *listen, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(listen, ':');
	char *end;
	long p;

	if (colon == NULL || (size_t)(colon - listen) >= hostlen || colon == listen)
		return TW_ERR_INVAL;
	p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || end == colon + 1 || p < 0 || p > 65535)
		return TW_ERR_INVAL;
	snprintf(host, hostlen, "%.*s", (int)(colon - listen), listen);
	/* "[::1]:8080" names an IPv6 address in brackets. */
	if (host[0] == '[') {
		size_t n = strlen(host);

		if (n < 3 || host[n - 1] != ']')
			return TW_ERR_INVAL;
		memmove(host, host + 1, n - 2);
		host[n - 2] = '\0';
	}
	*port = (int)p;
	return TW_OK;
}

static int
topic_template_ok(const char *t)
{
	const char *p = strstr(t, "{twin}");

	/* {twin} must be one whole topic level, exactly once, with no wildcards. */
	if (p == NULL || strstr(p + 1, "{twin}") != NULL || strpbrk(t, "+#") != NULL)
		return 0;
	if (p != t && p[-1] != '/')
		return 0;
	return p[6] == '\0' || p[6] == '/';
}

/*
 * A certificate and key (and a CA file) as GnuTLS will read them at
 * start: a file that is not PEM, a key that does not match its
 * certificate, a CA file with no certificate is a configuration error
 * that --check reports, not a failure found only when listening.
 */
static int
tls_files_ok(const char *section, const char *cert, const char *key, const char *ca,
    const char *path, FILE *err)
{
	gnutls_certificate_credentials_t cred;
	int rc = TW_OK, g;

	if (cert[0] == '\0' && (ca == NULL || ca[0] == '\0'))
		return TW_OK;
	if (gnutls_certificate_allocate_credentials(&cred) != GNUTLS_E_SUCCESS) {
		fprintf(err, "%s: [%s] TLS: out of memory\n", path, section);
		return TW_ERR_NOMEM;
	}
	if (cert[0] != '\0' && (g = gnutls_certificate_set_x509_key_file(cred, cert, key,
	    GNUTLS_X509_FMT_PEM)) < 0) {
		fprintf(err, "%s: [%s] tls_cert_file %s and tls_key_file %s: %s\n", path, section,
		    cert, key, gnutls_strerror(g));
		rc = TW_ERR_INVAL;
	}
	if (rc == TW_OK && ca != NULL && ca[0] != '\0' &&
	    (g = gnutls_certificate_set_x509_trust_file(cred, ca, GNUTLS_X509_FMT_PEM)) <= 0) {
		fprintf(err, "%s: [%s] tls_ca_file %s: %s\n", path, section, ca,
		    g < 0 ? gnutls_strerror(g) : "no certificate in it");
		rc = TW_ERR_INVAL;
	}
	gnutls_certificate_free_credentials(cred);
	return rc;
}

int
conf_validate(const struct conf *c, const char *path, FILE *err)
{
	char host[256], gerr[128];
	struct guard g;
	int port;

	const struct { const char *name, *value; } topics[] = {
		{ "telemetry_topic", c->telemetry_topic },
		{ "command_topic", c->command_topic },
		{ "desired_topic", c->desired_topic },
		{ "alert_topic", c->alert_topic },
		{ "state_topic", c->state_topic[0] != '\0' ? c->state_topic : "{twin}" },
	};

	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		if (!topic_template_ok(topics[i].value)) {
			fprintf(err, "%s: [mqtt] %s '%s' must hold {twin} once, as a whole level, "
			    "and no wildcards\n", path, topics[i].name, topics[i].value);
			return TW_ERR_INVAL;
		}
	}
	/*
	 * A backtest may run backtest_max_time, and a write may wait 10 s for
	 * the engine (REQUEST_WAIT_MS): neither, nor a little more, is a hang.
	 */
	if (c->http_hung_after_ms < c->backtest_max_time_ms + 5000 ||
	    c->http_hung_after_ms < 15000) {
		fprintf(err, "%s: [http] hung_after must be at least 15 s and 5 s longer than "
		    "[rules] backtest_max_time\n", path);
		return TW_ERR_INVAL;
	}
	if (c->mqtt_reconnect_min_ms > c->mqtt_reconnect_max_ms) {
		fprintf(err, "%s: [mqtt] reconnect_min is above reconnect_max\n", path);
		return TW_ERR_INVAL;
	}
	/* A coarser tier outlives the finer one it is made from: a fallback always answers. */
	if (c->keep_raw_ms > c->keep_minute_ms || c->keep_minute_ms > c->keep_hour_ms) {
		fprintf(err, "%s: [history] raw, minute and hour must each keep at least as long "
		    "as the one before\n", path);
		return TW_ERR_INVAL;
	}
	if (c->stale_factor > c->offline_factor) {
		fprintf(err, "%s: [twins] stale_factor is above offline_factor\n", path);
		return TW_ERR_INVAL;
	}
	if (c->stale_after_ms > c->offline_after_ms) {
		fprintf(err, "%s: [twins] stale_after is above offline_after\n", path);
		return TW_ERR_INVAL;
	}
	if (c->mqtt_client_id[0] == '\0' || strlen(c->mqtt_client_id) > 23 * 4) {
		fprintf(err, "%s: [mqtt] client_id must be 1 to 92 characters: a fixed id "
		    "is what keeps the broker's session (and the messages it queued)\n", path);
		return TW_ERR_INVAL;
	}
	if (conf_listen_split(c->http_listen, host, sizeof(host), &port) != TW_OK) {
		fprintf(err, "%s: [http] listen '%s' is not host:port\n", path, c->http_listen);
		return TW_ERR_INVAL;
	}
	/*
	 * The REST API can change desired state and send commands to machines:
	 * it stays on loopback unless someone says in plain words that it may not.
	 */
	if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
	    strcmp(host, "localhost") != 0 && !c->http_allow_remote && c->http_tokens[0] == '\0') {
		fprintf(err, "%s: [http] listen '%s' is beyond loopback and no tokens are "
		    "configured; set allow_remote_without_tokens = yes to accept that\n",
		    path, c->http_listen);
		return TW_ERR_INVAL;
	}
	/* A token crossing the plant network in clear is a token given away. */
	if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
	    strcmp(host, "localhost") != 0 && c->http_tokens[0] != '\0' &&
	    c->http_tls_cert[0] == '\0' && !c->http_allow_plaintext) {
		fprintf(err, "%s: [http] listen '%s' is beyond loopback with tokens but without "
		    "TLS: set tls_cert_file and tls_key_file, or allow_remote_without_tls = yes "
		    "(behind a TLS proxy)\n", path, c->http_listen);
		return TW_ERR_INVAL;
	}
	if (guard_init(&g, c->http_hosts, 0, gerr, sizeof(gerr)) != TW_OK) {
		fprintf(err, "%s: [http] hosts: %s\n", path, gerr);
		return TW_ERR_INVAL;
	}
	if ((c->http_tls_cert[0] == '\0') != (c->http_tls_key[0] == '\0') ||
	    (c->mqtt_tls_cert[0] == '\0') != (c->mqtt_tls_key[0] == '\0')) {
		fprintf(err, "%s: a TLS certificate needs its key, and a key its certificate "
		    "(tls_cert_file and tls_key_file)\n", path);
		return TW_ERR_INVAL;
	}
	if (c->mqtt_tls_cert[0] != '\0' && c->mqtt_tls_ca[0] == '\0') {
		fprintf(err, "%s: [mqtt] tls_cert_file needs tls_ca_file: TLS to the broker is on "
		    "only with a CA to check it by\n", path);
		return TW_ERR_INVAL;
	}
	{
		const char *const files[] = { c->http_tls_cert, c->http_tls_key, c->mqtt_tls_ca,
			c->mqtt_tls_cert, c->mqtt_tls_key };

		const char *const keys[] = { c->http_tls_key, c->mqtt_tls_key };
		struct stat st;

		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
			if (files[i][0] != '\0' && access(files[i], R_OK) != 0) {
				fprintf(err, "%s: %s: %s\n", path, files[i], strerror(errno));
				return TW_ERR_INVAL;
			}
		/* A private key others can read is no longer private. */
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (keys[i][0] != '\0' && stat(keys[i], &st) == 0 && (st.st_mode & 0004) != 0) {
				fprintf(err, "%s: %s: a private key readable by every user of the host; "
				    "chmod o-r it\n", path, keys[i]);
				return TW_ERR_INVAL;
			}
	}
	if (c->mqtt_password[0] != '\0' && c->mqtt_password_file[0] != '\0') {
		fprintf(err, "%s: [mqtt] password and password_file: say one\n", path);
		return TW_ERR_INVAL;
	}
	if (tls_files_ok("http", c->http_tls_cert, c->http_tls_key, NULL, path, err) != TW_OK ||
	    tls_files_ok("mqtt", c->mqtt_tls_cert, c->mqtt_tls_key, c->mqtt_tls_ca, path,
	    err) != TW_OK)
		return TW_ERR_INVAL;
	return TW_OK;
}

int
conf_read_secrets(struct conf *c, const char *path, FILE *err)
{
	char buf[CONF_SECRET_MAX + 2], *s;
	struct stat st;
	size_t n;
	FILE *f;

	if (c->mqtt_password[0] != '\0' && stat(path, &st) == 0 && (st.st_mode & 0004) != 0) {
		fprintf(err, "%s: holds [mqtt] password and every user of the host can read it; "
		    "chmod o-r it, or use password_file\n", path);
		return TW_ERR_INVAL;
	}
	if (c->mqtt_password_file[0] == '\0')
		return TW_OK;
	if ((f = fopen(c->mqtt_password_file, "re")) == NULL) {
		fprintf(err, "%s: %s\n", c->mqtt_password_file, strerror(errno));
		return TW_ERR_INVAL;
	}
	/* Like ssh with a private key: a secret others can read is not one. */
	if (fstat(fileno(f), &st) != 0 || (st.st_mode & 0007) != 0) {
		fprintf(err, "%s: readable by every user of the host; chmod o-rwx it\n",
		    c->mqtt_password_file);
		fclose(f);
		return TW_ERR_INVAL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (n > CONF_SECRET_MAX || buf[0] == '\0') {
		fprintf(err, "%s: want one line of 1 to %d bytes, the password\n",
		    c->mqtt_password_file, CONF_SECRET_MAX);
		explicit_bzero(buf, sizeof(buf));
		return TW_ERR_INVAL;
	}
	/* Replaced only when copied: a NULL password is no setting at all. */
	if ((s = strdup(buf)) == NULL) {
		explicit_bzero(buf, sizeof(buf));
		fprintf(err, "%s: out of memory\n", c->mqtt_password_file);
		return TW_ERR_NOMEM;
	}
	free(c->mqtt_password);
	c->mqtt_password = s;
	explicit_bzero(buf, sizeof(buf));
	return TW_OK;
}

void
conf_cleanup(struct conf *c)
{
	for (size_t i = 0; i < NOPTS; i++) {
		if (opts[i].type == OPT_STR || opts[i].type == OPT_PATH) {
			char **p = (char **)((char *)c + opts[i].off);

			if (*p != NULL && p == &c->mqtt_password)
				explicit_bzero(*p, strlen(*p));
			free(*p);
			*p = NULL;
		}
	}
}
