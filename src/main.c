/* twind: start-up, signals, and the orderly stop that loses nothing. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef WITH_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "clock.h"
#include "conf.h"
#include "engine.h"
#include "err.h"
#include "events.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "mqtt.h"
#include "plant.h"
#include "progress.h"
#include "publish.h"
#include "rules.h"
#include "ring.h"
#include "store.h"
#include "tokens.h"
#include "watchdog.h"
#include "www.h"

#define TWIND_VERSION	"0.1.0"
#define EXIT_RUNTIME	1
#define EXIT_USAGE	2
#define OVERRIDES_MAX	32

static void
usage(FILE *f)
{
	fprintf(f, "usage: twind -c FILE [--check] [-o section.key=value ...]\n"
	    "       twind --new-token NAME ROLES\n"
	    "  -c FILE   the configuration (INI); see config/twind.conf\n"
	    "  --check   validate the configuration and exit 0 (good) or 2 (bad)\n"
	    "  -o S.K=V  override one setting, e.g. -o storage.database=/tmp/t.db\n"
	    "  -V        print the version\n"
	    "  --new-token NAME ROLES  make a token (ROLES: read, operate, command, admin,\n"
	    "            comma-separated); prints it once and the line for the tokens file\n");
}

static void
notify(const char *state)
{
#ifdef WITH_SYSTEMD
	sd_notify(0, state);
#else
	(void)state;
#endif
}

/* A schema step over a large database: systemd's start timeout is pushed on, 30 s at a time. */
static void
migrating(void)
{
	notify("EXTEND_TIMEOUT_USEC=30000000");
	notify("STATUS=upgrading the database schema (rolling up history)");
}

/* twind --new-token NAME ROLES: the token goes to its user; only its hash is kept. */
static int
make_token(int argc, char **argv)
{
	char tok[128], line[256];

	if (argc != 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (tokens_new(argv[0], argv[1], tok, sizeof(tok), line, sizeof(line), stderr) != TW_OK)
		return EXIT_USAGE;
	printf("token (give it to %s; twind keeps only its hash):\n  %s\n"
	    "line for the tokens file ([http] tokens):\n  %s\n", argv[0], tok, line);
	return 0;
}

/* A parser's error as main takes it: out of memory stays itself (not the config's fault). */
static int
as_config_error(int rc)
{
	return rc == TW_OK || rc == TW_ERR_NOMEM ? rc : TW_ERR_INVAL;
}

/* Loads the file and the overrides; prints errors; returns 0, TW_ERR_INVAL or TW_ERR_NOMEM. */
static int
config_read(struct conf *c, const char *path, char **overrides, int noverrides)
{
	int rc;

	if ((rc = as_config_error(conf_parse(c, path, stderr))) != TW_OK)
		return rc;
	for (int i = 0; i < noverrides; i++)
		if ((rc = as_config_error(conf_set(c, overrides[i], stderr))) != TW_OK)
			return rc;
	if (conf_validate(c, path, stderr) != TW_OK)
		return TW_ERR_INVAL;
	return as_config_error(conf_read_secrets(c, path, stderr));
}

/*
 * Loads the models folder, the twins file and the rules file named by
 * `c`; errors go to stderr. `prev` (may be NULL) lends its statistics to
 * unchanged rules.
 */
static int
plant_read(const struct conf *c, struct model_set **models, struct plant *plant,
    struct rule_set **rules, const struct rule_set *prev)
{
	memset(plant, 0, sizeof(*plant));
	*rules = NULL;
	int rc = TW_ERR_INVAL;

	if ((*models = model_set_load(c->models_dir, stderr)) == NULL)
		return TW_ERR_INVAL;
	if ((rc = as_config_error(plant_load(plant, c->twins_file, *models, stderr))) != TW_OK ||
	    (*rules = rules_load(c->rules_file, prev, stderr)) == NULL) {
		model_set_unref(*models);
		*models = NULL;
		plant_cleanup(plant);
		return rc != TW_OK ? rc : TW_ERR_INVAL;
	}
	return TW_OK;
}

/* The tokens file `c` names, or NULL in *out when it names none. 0 or TW_ERR_*. */
static int
tokens_read(const struct conf *c, struct token_set **out)
{
	*out = NULL;
	if (c->http_tokens[0] == '\0')
		return TW_OK;
	return tokens_load(c->http_tokens, out, stderr);
}

/*
 * SIGHUP: the config file, the models, the twins file, the rules and the
 * tokens are read anew, into new structures; only a set without errors
 * replaces the running one.
 */
static void
reload(struct engine *engine, struct http *http, int had_tokens, const char *path,
    char **overrides, int noverrides)
{
	struct request req = { .type = REQ_RELOAD };
	struct rule_set *prev = engine_rules(engine);
	struct token_set *tokens = NULL;
	struct conf fresh;
	int rc;

	rc = config_read(&fresh, path, overrides, noverrides);
	if (rc == TW_OK)
		rc = tokens_read(&fresh, &tokens);
	if (rc == TW_OK && had_tokens && tokens == NULL) {
		/* Dropping every token at once would open the API to anyone: say so at a start. */
		fprintf(stderr, "%s: [http] tokens cannot be removed by a reload; restart for that\n",
		    path);
		rc = TW_ERR_INVAL;
	}
	if (rc == TW_OK)
		rc = plant_read(&fresh, &req.models, &req.plant, &req.rules, prev);
	rules_unref(prev);
	if (rc != TW_OK) {
		log_warnx("SIGHUP: errors (above); keeping the running models, twins, rules, "
		    "tokens and settings");
		tokens_free(tokens);
		conf_cleanup(&fresh);
		return;
	}
	log_set_level(fresh.log_level);
	/*
	 * The files are all valid: the tokens go into force whatever the engine
	 * does with the rest, so that revoking one never waits for a healthy disk.
	 */
	if (tokens != NULL) {
		log_info("SIGHUP: %d tokens in force", tokens->n);
		http_set_tokens(http, tokens);
		tokens = NULL;
	}
	engine_request(engine, &req);
	/* What the engine did not take (it refused the request) is ours to free. */
	model_set_unref(req.models);
	rules_unref(req.rules);
	plant_cleanup(&req.plant);
	if (req.err != TW_OK)
		log_warnx("SIGHUP: the engine refused the models, twins and rules (%s); "
		    "they stay as they were", req.message[0] != '\0' ? req.message : "see above");
	if (req.err == TW_OK)
		log_info("SIGHUP: models, twins, rules and tokens reloaded; log level applied; "
		    "other settings take a restart");
	conf_cleanup(&fresh);
}

/* The engine publishes through the MQTT module without knowing it. */
static int
pub_publish(void *arg, uint32_t link, const char *topic, const void *payload, int len,
    int retain, uint32_t expiry_s, int *mid)
{
	return mqtt_publish(arg, link, topic, payload, len, retain, expiry_s, mid);
}

static uint32_t
pub_link(void *arg)
{
	return mqtt_link(arg);
}

static const char *
pub_trouble(void *arg)
{
	return mqtt_trouble(arg);
}

/*
 * The systemd watchdog is fed only while the engine, the MQTT thread and
 * the REST server beat (within half the watchdog's interval): a hung one
 * stops the feed and systemd restarts twind. STATUS= carries the figures,
 * and why not.
 */
static struct log_limit wd_log[WD__COUNT];	/* main's own; one per part, so one does not hide another */

static void
watchdog_feed(struct engine *engine, uint64_t wd_us, int64_t hung_ms)
{
	static uint64_t last_received;
	static int64_t last_ms;
	enum watchdog_part stale = WD_ENGINE;
	int64_t now = clock_mono_ms();
	uint64_t received = atomic_load(&metrics.received);
	char status[200];
	double rate = last_ms > 0 && now > last_ms ?
	    (double)(received - last_received) * 1000.0 / (double)(now - last_ms) : 0;

	last_received = received;
	last_ms = now;
	if (wd_us == 0 || watchdog_fresh(now, (int64_t)(wd_us / 2000), hung_ms, &stale)) {
		notify("WATCHDOG=1");
		snprintf(status, sizeof(status), "STATUS=%llu twins, %.0f msg/s, broker %s%s%s",
		    (unsigned long long)atomic_load(&metrics.twins), rate,
		    atomic_load(&metrics.broker_connected) ? "connected" : "lost",
		    engine_health(engine) != NULL ? ", not ingesting: " : "",
		    engine_health(engine) != NULL ? engine_health(engine) : "");
	} else {
		if (stale == WD_HTTP)
			log_limited(&wd_log[stale], "watchdog: a REST handler has run for more than "
			    "[http] hung_after (%lld ms); not feeding the watchdog", (long long)hung_ms);
		else
			log_limited(&wd_log[stale], "watchdog: the %s thread has not made progress "
			    "for %llu ms; not feeding the watchdog", watchdog_name(stale),
			    (unsigned long long)(wd_us / 2000));
		snprintf(status, sizeof(status), "STATUS=%s thread stalled: no watchdog ping",
		    watchdog_name(stale));
	}
	notify(status);
}

/*
 * Signals are blocked in every thread and taken here with sigtimedwait,
 * so no handler runs in an arbitrary thread's context.
 */
static int
wait_for_stop(const sigset_t *set, struct engine *engine, struct http *http, int had_tokens,
    const char *path, char **overrides, int noverrides, int64_t hung_ms)
{
	struct timespec tick = { 1, 0 };
	uint64_t wd_us = 0;
	siginfo_t info;
	int sig;

#ifdef WITH_SYSTEMD
	if (sd_watchdog_enabled(0, &wd_us) <= 0)
		wd_us = 0;
	else if (wd_us / 4 < 1000000) {
		/* Fed four times an interval: a late tick never lets the interval run out. */
		tick.tv_sec = 0;
		tick.tv_nsec = (long)(wd_us / 4) * 1000;
	}
#endif
	for (;;) {
		sig = sigtimedwait(set, &info, &tick);
		watchdog_feed(engine, wd_us, hung_ms);
		if (sig == SIGTERM || sig == SIGINT)
			return sig;
		if (sig == SIGHUP) {
			notify("RELOADING=1");
			reload(engine, http, had_tokens, path, overrides, noverrides);
			notify("READY=1");
		}
	}
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'k' },
		{ "new-token", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *overrides[OVERRIDES_MAX];
	int noverrides = 0, check = 0, new_token = 0, ch, sig, rc, status = EXIT_RUNTIME;
	const char *path = NULL;
	struct conf conf = { 0 };
	struct api_ctx api = { 0 };
	struct model_set *models = NULL;
	struct rule_set *rules = NULL;
	struct plant plant = { 0 };
	struct ring *ring = NULL;
	struct store *store;
	struct engine *engine = NULL;
	struct mqtt *mqtt = NULL;
	struct progress progress;
	struct publisher pub = { NULL, pub_publish, pub_link, pub_trouble };
	int have_progress = 0;
	struct http *http = NULL;
	struct www *www = NULL;
	struct token_set *tokens = NULL;
	int tokens_at_start = 0;
	char werr[256];
	struct events *events = NULL;
	sigset_t set;
	int64_t t0 = clock_mono_us();

	while ((ch = getopt_long(argc, argv, "c:o:Vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'o':
			if (noverrides == OVERRIDES_MAX) {
				fprintf(stderr, "twind: at most %d -o options\n", OVERRIDES_MAX);
				return EXIT_USAGE;
			}
			overrides[noverrides++] = optarg;
			break;
		case 'k':
			check = 1;
			break;
		case 't':
			new_token = 1;
			break;
		case 'V':
			printf("twind %s\n", TWIND_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (new_token)
		return make_token(argc - optind, argv + optind);
	if (path == NULL || optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if ((rc = config_read(&conf, path, overrides, noverrides)) != TW_OK ||
	    (rc = as_config_error(tokens_read(&conf, &tokens))) != TW_OK ||
	    (rc = plant_read(&conf, &models, &plant, &rules, NULL)) != TW_OK) {
		tokens_free(tokens);
		conf_cleanup(&conf);
		/* Out of memory is no bad config: exit 1, which systemd restarts (2 it does not). */
		return rc == TW_ERR_NOMEM ? EXIT_RUNTIME : EXIT_USAGE;
	}
	if (check) {
		printf("%s: ok (%d models, %d twins in the twins file, %d rules, %d tokens)\n",
		    path, model_count(models), plant.n, rules->n, tokens != NULL ? tokens->n : 0);
		tokens_free(tokens);
		model_set_unref(models);
		rules_unref(rules);
		plant_cleanup(&plant);
		conf_cleanup(&conf);
		return 0;
	}
	log_set_level(conf.log_level);
	/*
	 * The database, its WAL and journal hold the plant's history and who did
	 * what: readable by twind's group at most, never by everyone, whether
	 * systemd (UMask=) or a shell started it.
	 */
	umask(umask(027) | 027);

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* Blocked before any thread starts, so every thread inherits the mask. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	store_set_migrate_hook(migrating);
	if ((store = store_open(conf.db_path, 1, conf.db_sync == CONF_SYNC_FULL)) == NULL) {
		log_warnx("cannot open the database %s", conf.db_path);
		goto out;
	}
	if (store_cache_size(store, conf.db_cache_bytes) != TW_OK) {
		log_warnx("cannot set the database's page cache");
		goto out;
	}
	atomic_store(&metrics.db_cache_budget, (uint64_t)conf.db_cache_bytes);
	if ((ring = ring_new((size_t)conf.ring_bytes)) == NULL) {
		log_warnx("cannot allocate the ring of %d bytes", conf.ring_bytes);
		goto out;
	}
	if (progress_init(&progress) != TW_OK ||
	    (events = events_new(conf.http_event_clients, (size_t)conf.http_event_buffer)) == NULL) {
		log_warnx("start-up failed: out of memory");
		goto out;
	}
	have_progress = 1;
	if ((mqtt = mqtt_new(&conf, ring, &progress)) == NULL) {
		log_warnx("start-up failed");
		goto out;
	}
	pub.arg = mqtt;
	engine = engine_new(&conf, ring, &progress, &pub, events, store, models, &plant, rules);
	/* The engine owns these now, also when it failed. */
	store = NULL;
	models = NULL;
	rules = NULL;
	if (engine == NULL) {
		log_warnx("start-up failed");
		goto out;
	}
	/* The API is what plants depend on: without its page twind still serves it. */
	if ((www = www_load(conf.http_www, werr, sizeof(werr))) == NULL)
		log_warnx("the page is not served: %s", werr);
	api = (struct api_ctx){ .conf = &conf, .ring = ring, .engine = engine, .events = events,
	    .www = www };
	tokens_at_start = tokens != NULL;
	http = http_start(&api, tokens);
	tokens = NULL;			/* the server's now, also when it failed */
	if (http == NULL)
		goto out;
	if (engine_start(engine) != TW_OK || mqtt_start(mqtt) != TW_OK) {
		log_warnx("cannot start threads");
		goto out;
	}
	log_info("twind %s ready in %.1f ms (database %s, broker %s:%d, ring %d bytes)",
	    TWIND_VERSION, (double)(clock_mono_us() - t0) / 1000.0, conf.db_path,
	    conf.mqtt_host, conf.mqtt_port, conf.ring_bytes);
	notify("READY=1\nSTATUS=ingesting");

	sig = wait_for_stop(&set, engine, http, tokens_at_start, path, overrides, noverrides,
	    conf.http_hung_after_ms);
	log_info("%s: stopping: no new messages, draining and committing",
	    sig == SIGTERM ? "SIGTERM" : "SIGINT");
	notify("STOPPING=1");
	status = 0;
out:
	/* The order is the promise: stop reading, commit, ack, then close. */
	if (mqtt != NULL)
		mqtt_stop(mqtt);
	if (engine != NULL)
		engine_stop(engine);
	/* Event streams end first, so that stopping the server does not wait on them. */
	if (events != NULL)
		events_shutdown(events);
	http_stop(http);
	tokens_free(tokens);
	www_free(www);
	events_free(events);
	engine_free(engine);
	mqtt_free(mqtt);
	if (have_progress)
		progress_cleanup(&progress);
	store_close(store);
	model_set_unref(models);
	rules_unref(rules);
	plant_cleanup(&plant);
	ring_free(ring);
	if (status == 0)
		log_info("stopped cleanly: %llu messages committed this run",
		    (unsigned long long)atomic_load(&metrics.applied));
	conf_cleanup(&conf);
	return status;
}
