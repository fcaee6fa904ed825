/* twind-load: publishes a fixed number of QoS 1 telemetry messages as fast as the broker acknowledges them, so `make bench` can compare twind with a bare subscriber under the same load. */

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

#define LOAD_HOST        "127.0.0.1"
#define LOAD_WINDOW      1000        /* messages in flight; also libmosquitto's limit */
#define LOAD_MAX_TWINS   1000000
#define LOAD_STALL_NS    30000000000LL   /* no PUBACK for this long: the broker is stuck */
#define LOAD_CONNECT_NS  10000000000LL

struct load_opts {
	int port;
	long count;
	int twins;
	int qos;
	const char *client_id;
};

struct load {
	struct load_opts opt;
	struct mosquitto *mosq;
	char **topics;      /* one per twin, built once */
	long published;
	long acked;         /* PUBACKs (QoS 1), PUBCOMPs (QoS 2) or writes (QoS 0) */
	int64_t base_ts;
	uint32_t rng;
	bool connected;
	bool failed;
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t epoch_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void load_on_connect(struct mosquitto *m, void *obj, int rc)
{
	struct load *ld = obj;

	(void)m;
	if (rc != 0) {
		fprintf(stderr, "twind-load: broker refused the connection: %s\n",
		    mosquitto_connack_string(rc));
		ld->failed = true;
		return;
	}
	ld->connected = true;
}

static void load_on_disconnect(struct mosquitto *m, void *obj, int rc)
{
	struct load *ld = obj;

	(void)m;
	if (rc != 0 && ld->acked < ld->opt.count) {
		fprintf(stderr, "twind-load: lost the broker after %ld acknowledged\n", ld->acked);
		ld->failed = true;
	}
}

static void load_on_publish(struct mosquitto *m, void *obj, int mid)
{
	struct load *ld = obj;

	(void)m;
	(void)mid;
	ld->acked++;
}

/* A value between lo and lo+span with float32 precision, as a sensor gateway
 * would print it; that also brings the payload to about 90 bytes. */
static float load_value(struct load *ld, float lo, float span)
{
	ld->rng = ld->rng * 1664525u + 1013904223u;
	return lo + span * (float)(ld->rng >> 8) / 16777216.0f;
}

/* Message i goes to twin i % twins; its ts is base + i / twins, so each twin's
 * ts is unique and grows, and the last one is about now (never in the future). */
static int load_publish_one(struct load *ld)
{
	char payload[160];
	long i = ld->published;
	int twin = (int)(i % ld->opt.twins);
	int len, rc;

	len = snprintf(payload, sizeof(payload),
	    "{\"ts\":%lld,\"temperature\":%.9g,\"vibration\":%.9g,\"current\":%.9g}",
	    (long long)(ld->base_ts + i / ld->opt.twins),
	    (double)load_value(ld, 60.0f, 15.0f), (double)load_value(ld, 1.5f, 1.5f),
	    (double)load_value(ld, 11.0f, 2.0f));
	rc = mosquitto_publish(ld->mosq, NULL, ld->topics[twin], len, payload, ld->opt.qos, false);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-load: publish failed: %s\n", mosquitto_strerror(rc));
		return -1;
	}
	ld->published++;
	return 0;
}

/* Runs the network until cond() holds; returns 0, or -1 on failure or after limit_ns. */
static int load_wait(struct load *ld, bool (*cond)(const struct load *), int64_t limit_ns)
{
	int64_t until = mono_ns() + limit_ns;
	int rc;

	while (!cond(ld)) {
		rc = mosquitto_loop(ld->mosq, 100, 1);
		if (rc != MOSQ_ERR_SUCCESS || ld->failed) {
			if (!ld->failed)
				fprintf(stderr, "twind-load: %s\n", mosquitto_strerror(rc));
			return -1;
		}
		if (mono_ns() > until) {
			fprintf(stderr, "twind-load: timed out\n");
			return -1;
		}
	}
	return 0;
}

static bool load_is_connected(const struct load *ld)
{
	return ld->connected;
}

/* Keeps the in-flight window full; never more than LOAD_WINDOW unacknowledged,
 * so libmosquitto's own queue stays empty. Returns 0 or -1. */
static int load_run(struct load *ld)
{
	int64_t last_progress = mono_ns();
	long last_acked = 0;
	int rc;

	while (ld->acked < ld->opt.count) {
		while (ld->published < ld->opt.count && ld->published - ld->acked < LOAD_WINDOW) {
			if (load_publish_one(ld) != 0)
				return -1;
		}
		rc = mosquitto_loop(ld->mosq, 100, 1);
		if (rc != MOSQ_ERR_SUCCESS || ld->failed) {
			if (!ld->failed)
				fprintf(stderr, "twind-load: %s after %ld acknowledged\n",
				    mosquitto_strerror(rc), ld->acked);
			return -1;
		}
		if (ld->acked != last_acked) {
			last_acked = ld->acked;
			last_progress = mono_ns();
		} else if (mono_ns() - last_progress > LOAD_STALL_NS) {
			fprintf(stderr, "twind-load: no acknowledgement for 30 s, %ld of %ld back\n",
			    ld->acked, ld->opt.count);
			return -1;
		}
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: twind-load [-p port] [-n count] [-t twins] [-q qos] [-i client_id]\n"
	    "  publishes count messages (default 100000) to " LOAD_HOST ":port (default 1883)\n"
	    "  on plant/bench-K/telemetry, K in 0..twins-1 (default 100), at qos (default 1)\n");
}

static int parse_long(const char *arg, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* Returns 0, 1 after --help, or 2 on a bad option. */
static int load_parse_args(int argc, char **argv, struct load_opts *o)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long v;
	int c;

	o->port = 1883;
	o->count = 100000;
	o->twins = 100;
	o->qos = 1;
	o->client_id = "twind-load";
	while ((c = getopt_long(argc, argv, "p:n:t:q:i:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_long(optarg, 1, 65535, &v) != 0)
				goto bad;
			o->port = (int)v;
			break;
		case 'n':
			if (parse_long(optarg, 1, 1000000000L, &o->count) != 0)
				goto bad;
			break;
		case 't':
			if (parse_long(optarg, 1, LOAD_MAX_TWINS, &v) != 0)
				goto bad;
			o->twins = (int)v;
			break;
		case 'q':
			if (parse_long(optarg, 0, 2, &v) != 0)
				goto bad;
			o->qos = (int)v;
			break;
		case 'i':
			if (optarg[0] == '\0')
				goto bad;
			o->client_id = optarg;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "twind-load: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return 0;
bad:
	fprintf(stderr, "twind-load: bad value '%s' for -%c\n", optarg, c);
	usage(stderr);
	return 2;
}

static void load_free_topics(struct load *ld)
{
	int i;

	if (ld->topics == NULL)
		return;
	for (i = 0; i < ld->opt.twins; i++)
		free(ld->topics[i]);
	free(ld->topics);
	ld->topics = NULL;
}

static int load_make_topics(struct load *ld)
{
	int i;

	ld->topics = calloc((size_t)ld->opt.twins, sizeof(*ld->topics));
	if (ld->topics == NULL)
		return -1;
	for (i = 0; i < ld->opt.twins; i++) {
		if (asprintf(&ld->topics[i], "plant/bench-%d/telemetry", i) < 0) {
			ld->topics[i] = NULL;
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct load ld;
	int64_t t0, t1;
	double secs;
	int rc, exit_code = 1;

	memset(&ld, 0, sizeof(ld));
	rc = load_parse_args(argc, argv, &ld.opt);
	if (rc != 0)
		return rc == 1 ? 0 : 2;
	if (load_make_topics(&ld) != 0) {
		fprintf(stderr, "twind-load: out of memory\n");
		goto out;
	}
	ld.rng = 12345;
	ld.base_ts = epoch_ms() - (ld.opt.count + ld.opt.twins - 1) / ld.opt.twins;
	mosquitto_lib_init();
	ld.mosq = mosquitto_new(ld.opt.client_id, true, &ld);
	if (ld.mosq == NULL) {
		fprintf(stderr, "twind-load: mosquitto_new failed\n");
		goto out;
	}
	mosquitto_connect_callback_set(ld.mosq, load_on_connect);
	mosquitto_disconnect_callback_set(ld.mosq, load_on_disconnect);
	mosquitto_publish_callback_set(ld.mosq, load_on_publish);
	mosquitto_max_inflight_messages_set(ld.mosq, LOAD_WINDOW);
	rc = mosquitto_connect(ld.mosq, LOAD_HOST, ld.opt.port, 60);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-load: cannot connect to " LOAD_HOST ":%d: %s\n", ld.opt.port,
		    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		goto out;
	}
	if (load_wait(&ld, load_is_connected, LOAD_CONNECT_NS) != 0)
		goto out;
	t0 = mono_ns();
	if (load_run(&ld) != 0)
		goto out;
	t1 = mono_ns();
	secs = (double)(t1 - t0) / 1e9;
	printf("published %ld in %.3f seconds (%.0f msg/s)\n", ld.acked, secs,
	    (double)ld.acked / secs);
	fflush(stdout);
	mosquitto_disconnect(ld.mosq);
	exit_code = 0;
out:
	mosquitto_destroy(ld.mosq);
	mosquitto_lib_cleanup();
	load_free_topics(&ld);
	return exit_code;
}
