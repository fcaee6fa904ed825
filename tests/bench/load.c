/* twind-load: publishes a fixed number of QoS 1 telemetry messages as fast as the broker acknowledges them, so `make bench` can compare twind with a bare subscriber under the same load; with -c it is also the fake PLC of the closed loop, timing each command against the message that caused it. */

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>

#define LOAD_HOST        "127.0.0.1"
#define LOAD_WINDOW      1000        /* messages in flight; also libmosquitto's limit */
#define LOAD_MAX_TWINS   1000000
#define LOAD_STALL_NS    30000000000LL   /* no PUBACK for this long: the broker is stuck */
#define LOAD_CONNECT_NS  10000000000LL
#define LOAD_CMD_TOPIC   "plant/+/cmd"
#define LOAD_TWIN_PREFIX "plant/bench-"
#define LOAD_TRIGGER_EVERY 10          /* every 10th message of a twin is too hot */
#define LOAD_CMD_MAX     4096        /* a longer command is not one of the bench's */
#define LOAD_FLUSH_NS    2000000000LL

struct load_opts {
	int port;
	long count;
	int twins;
	int qos;
	const char *client_id;
	bool closed;        /* -c: closed-loop payload, commands awaited and timed */
	bool answer;        /* -a: answer each command "done", as a working PLC would */
	long rate;          /* -r: messages a second; 0 is as fast as flow control allows */
	long wait_s;        /* -w: no new command for this long after the last ack: stalled */
	long timeout_s;     /* -T: the closed loop's whole run, whatever happens */
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
	bool subscribed;
	bool failed;

	/* The closed loop: indexed by message number, which (twin, ts) gives back. */
	int64_t *sent_us;   /* when each trigger was handed to the broker */
	uint8_t *got;       /* its command has arrived */
	int64_t *lat_us;    /* trigger -> command, one per distinct command */
	long triggers;      /* commands expected */
	long commands;      /* distinct expected commands received */
	long duplicates;
	long unexpected;
	int64_t t0_ns;
	int64_t acked_all_ns;   /* when the last telemetry PUBACK came */
	int64_t last_cmd_ns;    /* when the last new expected command came */
	long answers;
	long answers_acked;
	uint8_t answer_mid[65536 / 8];  /* mids of answers in flight, to tell their PUBACKs apart */
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

	if (rc != 0) {
		fprintf(stderr, "twind-load: broker refused the connection: %s\n",
		    mosquitto_connack_string(rc));
		ld->failed = true;
		return;
	}
	ld->connected = true;
	if (ld->opt.closed && mosquitto_subscribe(m, NULL, LOAD_CMD_TOPIC, 1) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-load: cannot subscribe to " LOAD_CMD_TOPIC "\n");
		ld->failed = true;
	}
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
	uint8_t bit = (uint8_t)(1u << (mid & 7));

	(void)m;
	if (mid > 0 && mid < 65536 && (ld->answer_mid[mid >> 3] & bit)) {
		ld->answer_mid[mid >> 3] &= (uint8_t)~bit;
		ld->answers_acked++;
		return;
	}
	ld->acked++;
	if (ld->acked == ld->opt.count)
		ld->acked_all_ns = mono_ns();
}

static bool load_is_trigger(const struct load *ld, long i)
{
	return (i / ld->opt.twins) % LOAD_TRIGGER_EVERY == LOAD_TRIGGER_EVERY - 1;
}

/* K of plant/bench-K/cmd, or -1. */
static int load_topic_twin(const struct load *ld, const char *topic)
{
	const char *p = topic + strlen(LOAD_TWIN_PREFIX);
	char *end;
	long k;

	if (strncmp(topic, LOAD_TWIN_PREFIX, strlen(LOAD_TWIN_PREFIX)) != 0 ||
	    *p < '0' || *p > '9')
		return -1;
	errno = 0;
	k = strtol(p, &end, 10);
	if (errno != 0 || strcmp(end, "/cmd") != 0 || k >= ld->opt.twins)
		return -1;
	return (int)k;
}

/* What a PLC that carried the command out sends back. */
static void load_answer(struct load *ld, int twin, const char *id)
{
	char topic[64], payload[128];
	int len, mid = 0;

	snprintf(topic, sizeof(topic), LOAD_TWIN_PREFIX "%d/cmd/ack", twin);
	len = snprintf(payload, sizeof(payload), "{\"id\":\"%s\",\"status\":\"done\"}", id);
	if (len < 0 || (size_t)len >= sizeof(payload) ||
	    mosquitto_publish(ld->mosq, &mid, topic, len, payload, 1, false) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-load: cannot answer command %s\n", id);
		ld->failed = true;
		return;
	}
	if (mid > 0 && mid < 65536)
		ld->answer_mid[mid >> 3] |= (uint8_t)(1u << (mid & 7));
	ld->answers++;
}

/*
 * A command names its cause by source_ts, the ts of the trigger, and the
 * twin by its topic: together they give the trigger's message number, as
 * ts = base + i / twins. Anything that does not map to a trigger, and a
 * second command for one, is counted against the system under test.
 */
static void load_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
	struct load *ld = obj;
	int64_t now = mono_ns();
	const cJSON *id, *twin, *src;
	char want[32];
	cJSON *root = NULL;
	double ts;
	long i, per_twin;
	int k;

	(void)m;
	k = load_topic_twin(ld, msg->topic);
	if (k < 0 || msg->payloadlen <= 0 || msg->payloadlen > LOAD_CMD_MAX ||
	    (root = cJSON_ParseWithLength(msg->payload, (size_t)msg->payloadlen)) == NULL)
		goto unexpected;
	id = cJSON_GetObjectItemCaseSensitive(root, "id");
	twin = cJSON_GetObjectItemCaseSensitive(root, "twin");
	src = cJSON_GetObjectItemCaseSensitive(root, "source_ts");
	snprintf(want, sizeof(want), "bench-%d", k);
	if (!cJSON_IsString(id) || strlen(id->valuestring) > 64 || !cJSON_IsString(twin) ||
	    strcmp(twin->valuestring, want) != 0 || !cJSON_IsNumber(src))
		goto unexpected;
	if (ld->opt.answer)
		load_answer(ld, k, id->valuestring);
	per_twin = (ld->opt.count + ld->opt.twins - 1) / ld->opt.twins;
	ts = src->valuedouble - (double)ld->base_ts;
	if (ts < 0 || ts >= (double)per_twin || ts != (double)(long)ts)
		goto unexpected;
	i = (long)ts * ld->opt.twins + k;
	if (i >= ld->opt.count || !load_is_trigger(ld, i))
		goto unexpected;
	cJSON_Delete(root);
	if (ld->got[i]) {
		ld->duplicates++;
		return;
	}
	ld->got[i] = 1;
	ld->lat_us[ld->commands++] = now / 1000 - ld->sent_us[i];
	ld->last_cmd_ns = now;
	return;
unexpected:
	cJSON_Delete(root);
	if (ld->unexpected++ == 0)
		fprintf(stderr, "twind-load: unexpected command on %s: %.*s\n", msg->topic,
		    msg->payloadlen > 200 ? 200 : msg->payloadlen, (const char *)msg->payload);
}

static void load_on_subscribe(struct mosquitto *m, void *obj, int mid, int n,
    const int *granted)
{
	struct load *ld = obj;

	(void)m;
	(void)mid;
	if (n < 1 || granted[0] != 1) {
		fprintf(stderr, "twind-load: the broker refused " LOAD_CMD_TOPIC " at QoS 1\n");
		ld->failed = true;
		return;
	}
	ld->subscribed = true;
}

/* A value between lo and lo+span with float32 precision, as a sensor gateway
 * would print it; that also brings the payload to about 90 bytes. */
static float load_value(struct load *ld, float lo, float span)
{
	ld->rng = ld->rng * 1664525u + 1013904223u;
	return lo + span * (float)(ld->rng >> 8) / 16777216.0f;
}

/* Message i goes to twin i % twins; its ts is base + i / twins, so each twin's
 * ts is unique and grows, and the last one is about now (never in the future).
 * The closed loop's payload adds seq (the twin's message number) and makes
 * every LOAD_TRIGGER_EVERY-th message of a twin hotter than 100. */
static int load_publish_one(struct load *ld)
{
	char payload[160];
	long i = ld->published, seq = i / ld->opt.twins;
	int twin = (int)(i % ld->opt.twins);
	long long ts = (long long)(ld->base_ts + seq);
	double t, p, f;
	int len, rc;

	if (ld->opt.closed) {
		t = load_is_trigger(ld, i) ? load_value(ld, 105.0f, 10.0f) :
		    load_value(ld, 60.0f, 15.0f);
		p = load_value(ld, 2.0f, 1.5f);
		f = load_value(ld, 40.0f, 10.0f);
		len = snprintf(payload, sizeof(payload),
		    "{\"seq\":%ld,\"ts\":%lld,\"temperature\":%.9g,\"pressure\":%.9g,\"flow\":%.9g}",
		    seq, ts, t, p, f);
		if (load_is_trigger(ld, i))
			ld->sent_us[i] = mono_ns() / 1000;
	} else {
		len = snprintf(payload, sizeof(payload),
		    "{\"ts\":%lld,\"temperature\":%.9g,\"vibration\":%.9g,\"current\":%.9g}",
		    ts, (double)load_value(ld, 60.0f, 15.0f), (double)load_value(ld, 1.5f, 1.5f),
		    (double)load_value(ld, 11.0f, 2.0f));
	}
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
	return ld->connected && (!ld->opt.closed || ld->subscribed);
}

static bool load_answers_flushed(const struct load *ld)
{
	return ld->answers_acked == ld->answers;
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

/*
 * One wait for the socket, as mosquitto_loop() but with a timeout in ns:
 * at a fixed rate a message is due every 500 us, finer than its ms.
 */
static int load_io(struct load *ld, int64_t wait_ns)
{
	struct pollfd p = { .fd = mosquitto_socket(ld->mosq), .events = POLLIN };
	struct timespec ts = { .tv_sec = wait_ns / 1000000000LL, .tv_nsec = wait_ns % 1000000000LL };
	int rc = MOSQ_ERR_SUCCESS;

	if (p.fd < 0) {
		fprintf(stderr, "twind-load: lost the broker after %ld acknowledged\n", ld->acked);
		return -1;
	}
	if (mosquitto_want_write(ld->mosq))
		p.events |= POLLOUT;
	if (ppoll(&p, 1, &ts, NULL) < 0 && errno != EINTR) {
		perror("twind-load: ppoll");
		return -1;
	}
	if (p.revents & (POLLIN | POLLHUP | POLLERR))
		rc = mosquitto_loop_read(ld->mosq, 1);
	if (rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(ld->mosq))
		rc = mosquitto_loop_write(ld->mosq, 1);
	if (rc == MOSQ_ERR_SUCCESS)
		rc = mosquitto_loop_misc(ld->mosq);
	if (rc != MOSQ_ERR_SUCCESS || ld->failed) {
		if (!ld->failed)
			fprintf(stderr, "twind-load: %s after %ld acknowledged\n",
			    mosquitto_strerror(rc), ld->acked);
		return -1;
	}
	return 0;
}

/*
 * Publishes at opt.rate (or as fast as the window allows) until every
 * message is acknowledged and every command has come. A system that stops
 * sending commands is a result, not an error: the run ends wait_s after the
 * last sign of progress, or at timeout_s, and the report says how many came.
 * Returns 0, or -1 when the telemetry itself could not be delivered.
 */
static int load_run_closed(struct load *ld)
{
	int64_t now, quiet, until, wait_ns, due, last_progress;
	long last_acked = 0;

	ld->t0_ns = now = mono_ns();
	until = now + ld->opt.timeout_s * 1000000000LL;
	last_progress = now;
	for (;;) {
		now = mono_ns();
		due = 0;
		while (ld->published < ld->opt.count && ld->published - ld->acked < LOAD_WINDOW) {
			if (ld->opt.rate > 0) {
				due = ld->t0_ns + ld->published * 1000000000LL / ld->opt.rate;
				if (due > now)
					break;
			}
			if (load_publish_one(ld) != 0)
				return -1;
		}
		if (ld->acked == ld->opt.count) {
			if (ld->commands == ld->triggers)
				return 0;
			quiet = ld->last_cmd_ns > ld->acked_all_ns ? ld->last_cmd_ns : ld->acked_all_ns;
			if (now - quiet > ld->opt.wait_s * 1000000000LL)
				return 0;
		} else if (ld->acked != last_acked) {
			last_acked = ld->acked;
			last_progress = now;
		} else if (now - last_progress > LOAD_STALL_NS) {
			fprintf(stderr, "twind-load: no acknowledgement for 30 s, %ld of %ld back\n",
			    ld->acked, ld->opt.count);
			return -1;
		}
		if (now > until) {
			if (ld->acked < ld->opt.count) {
				fprintf(stderr, "twind-load: %ld of %ld acknowledged after %ld s\n",
				    ld->acked, ld->opt.count, ld->opt.timeout_s);
				return -1;
			}
			return 0;
		}
		wait_ns = 100000000LL;
		if (due > now && due - now < wait_ns)
			wait_ns = due - now;
		if (load_io(ld, wait_ns) != 0)
			return -1;
	}
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest rank, in ms; the array is sorted. */
static double load_pct_ms(const int64_t *v, long n, double pct)
{
	long k = (long)((double)n * pct / 100.0 + 0.999999);

	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return (double)v[k - 1] / 1000.0;
}

/* One line for bench.sh; last_cmd_s runs from the first publish to the last new command. */
static void load_report_closed(struct load *ld)
{
	double last = ld->commands > 0 ? (double)(ld->last_cmd_ns - ld->t0_ns) / 1e9 : 0;

	printf("closed published %ld triggers %ld commands %ld duplicates %ld unexpected %ld "
	    "answered %ld last_cmd_s %.6f", ld->acked, ld->triggers, ld->commands,
	    ld->duplicates, ld->unexpected, ld->answers, last);
	if (ld->commands > 0) {
		qsort(ld->lat_us, (size_t)ld->commands, sizeof(*ld->lat_us), cmp_i64);
		printf(" p50_ms %.3f p99_ms %.3f max_ms %.3f\n",
		    load_pct_ms(ld->lat_us, ld->commands, 50),
		    load_pct_ms(ld->lat_us, ld->commands, 99),
		    load_pct_ms(ld->lat_us, ld->commands, 100));
	} else {
		printf(" p50_ms - p99_ms - max_ms -\n");
	}
	fflush(stdout);
}

static int load_closed_init(struct load *ld)
{
	long i;

	ld->sent_us = calloc((size_t)ld->opt.count, sizeof(*ld->sent_us));
	ld->got = calloc((size_t)ld->opt.count, sizeof(*ld->got));
	for (i = 0; i < ld->opt.count; i++)
		ld->triggers += load_is_trigger(ld, i);
	ld->lat_us = calloc((size_t)(ld->triggers > 0 ? ld->triggers : 1), sizeof(*ld->lat_us));
	return ld->sent_us != NULL && ld->got != NULL && ld->lat_us != NULL ? 0 : -1;
}

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: twind-load [-p port] [-n count] [-t twins] [-q qos] [-i client_id]\n"
	    "                  [-c [-a] [-r rate] [-w seconds] [-T seconds]]\n"
	    "  publishes count messages (default 100000) to " LOAD_HOST ":port (default 1883)\n"
	    "  on plant/bench-K/telemetry, K in 0..twins-1 (default 100), at qos (default 1)\n"
	    "  -c  closed loop: every 10th message of a twin has temperature > 100 and must\n"
	    "      bring one command on plant/bench-K/cmd with its ts as source_ts\n"
	    "  -a  answer each command {\"id\":...,\"status\":\"done\"} on .../cmd/ack\n"
	    "  -r  messages a second (default 0: as fast as the broker acknowledges)\n"
	    "  -w  stalled after this long without a new command (default 5)\n"
	    "  -T  the whole closed-loop run at most (default 120)\n");
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
	o->wait_s = 5;
	o->timeout_s = 120;
	while ((c = getopt_long(argc, argv, "p:n:t:q:i:car:w:T:h", longopts, NULL)) != -1) {
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
		case 'c':
			o->closed = true;
			break;
		case 'a':
			o->answer = true;
			break;
		case 'r':
			if (parse_long(optarg, 0, 10000000L, &o->rate) != 0)
				goto bad;
			break;
		case 'w':
			if (parse_long(optarg, 1, 3600, &o->wait_s) != 0)
				goto bad;
			break;
		case 'T':
			if (parse_long(optarg, 1, 86400, &o->timeout_s) != 0)
				goto bad;
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
	/* The fixed rate and the answers only mean something around a command. */
	if ((o->answer || o->rate > 0) && !o->closed) {
		fprintf(stderr, "twind-load: -a and -r need -c\n");
		return 2;
	}
	if (o->closed && o->qos != 1) {
		fprintf(stderr, "twind-load: the closed loop is QoS 1\n");
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
	if (ld.opt.closed && load_closed_init(&ld) != 0) {
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
	mosquitto_message_callback_set(ld.mosq, load_on_message);
	mosquitto_subscribe_callback_set(ld.mosq, load_on_subscribe);
	/*
	 * Nagle would hold a trigger back while an earlier message is unacked
	 * at the TCP level, and the delay would be charged to the system under
	 * test. The ingest load keeps the default, as its figures always have.
	 */
	if (ld.opt.closed)
		mosquitto_int_option(ld.mosq, MOSQ_OPT_TCP_NODELAY, 1);
	/* Room for the answers too, so that they never hold telemetry back. */
	mosquitto_max_inflight_messages_set(ld.mosq,
	    ld.opt.answer ? 2 * LOAD_WINDOW : LOAD_WINDOW);
	rc = mosquitto_connect(ld.mosq, LOAD_HOST, ld.opt.port, 60);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-load: cannot connect to " LOAD_HOST ":%d: %s\n", ld.opt.port,
		    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		goto out;
	}
	if (load_wait(&ld, load_is_connected, LOAD_CONNECT_NS) != 0)
		goto out;
	if (ld.opt.closed) {
		if (load_run_closed(&ld) != 0)
			goto out;
		load_report_closed(&ld);
		/* A lost answer would only leave a command timed out in twind; no retry. */
		if (ld.opt.answer && load_wait(&ld, load_answers_flushed, LOAD_FLUSH_NS) != 0)
			fprintf(stderr, "twind-load: %ld of %ld answers unacknowledged\n",
			    ld.answers - ld.answers_acked, ld.answers);
		mosquitto_disconnect(ld.mosq);
		exit_code = 0;
		goto out;
	}
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
	free(ld.sent_us);
	free(ld.got);
	free(ld.lat_us);
	return exit_code;
}
