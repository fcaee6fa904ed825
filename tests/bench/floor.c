/* twind-floor: the bench's baseline, a bare QoS 1 subscriber that only counts telemetry, so twind's rate, CPU and memory can be stated as ratios to what the broker and libmosquitto alone cost; with -c it also sends the closed loop's command for every message hotter than 100, storing nothing. */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <mosquitto.h>

#define FLOOR_HOST      "127.0.0.1"
#define FLOOR_TOPIC     "plant/+/telemetry"
#define FLOOR_UNSUB_NS  2000000000LL
#define FLOOR_LIMIT     100.0       /* the bench rule's "temperature > 100" */
#define FLOOR_MSG_MAX   511         /* the bench's telemetry is about 90 bytes */

struct floor_opts {
	int port;
	long count;
	const char *client_id;
	long timeout_s;
	bool closed;
};

struct floor {
	struct floor_opts opt;
	long received;
	long commands;
	long commands_acked;
	int64_t first_ns;
	int64_t last_ns;
	bool ready;
	bool unsubscribed;
	bool failed;
};

static volatile sig_atomic_t floor_stop;

static void floor_on_signal(int sig)
{
	(void)sig;
	floor_stop = 1;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Subscribing here means a reconnect would subscribe again. */
static void floor_on_connect(struct mosquitto *m, void *obj, int rc)
{
	struct floor *fl = obj;
	int src;

	if (rc != 0) {
		fprintf(stderr, "twind-floor: broker refused the connection: %s\n",
		    mosquitto_connack_string(rc));
		fl->failed = true;
		return;
	}
	src = mosquitto_subscribe(m, NULL, FLOOR_TOPIC, 1);
	if (src != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-floor: subscribe failed: %s\n", mosquitto_strerror(src));
		fl->failed = true;
	}
}

/* "ready" tells the bench that the load may start: from here on the broker
 * queues for us even if we fall behind. */
static void floor_on_subscribe(struct mosquitto *m, void *obj, int mid, int n,
    const int *granted)
{
	struct floor *fl = obj;

	(void)m;
	(void)mid;
	if (n < 1 || granted[0] > 2) {
		fprintf(stderr, "twind-floor: the broker refused the subscription\n");
		fl->failed = true;
		return;
	}
	if (!fl->ready) {
		fl->ready = true;
		printf("ready\n");
		fflush(stdout);
	}
}

static void floor_on_unsubscribe(struct mosquitto *m, void *obj, int mid)
{
	struct floor *fl = obj;

	(void)m;
	(void)mid;
	fl->unsubscribed = true;
}

static void floor_on_publish(struct mosquitto *m, void *obj, int mid)
{
	struct floor *fl = obj;

	(void)m;
	(void)mid;
	fl->commands_acked++;
}

/* The number after "key": in a NUL-terminated payload; false when absent. */
static bool floor_number(const char *s, const char *key, double *out)
{
	const char *p = strstr(s, key);
	char *end;

	if (p == NULL)
		return false;
	p += strlen(key);
	*out = strtod(p, &end);
	return end != p;
}

/*
 * As little as a rule engine can do: find the temperature, and when it is
 * above the limit echo the message's ts as source_ts in a QoS 1 command.
 * The bench's load writes "key":value with no spaces, so a scan for the
 * key stands in for a JSON parser; nothing is kept once the command is out.
 */
static void floor_command(struct mosquitto *m, struct floor *fl, const struct mosquitto_message *msg)
{
	char buf[FLOOR_MSG_MAX + 1], topic[256], cmd[256];
	const char *twin, *slash;
	double temp, ts;
	int twin_len, len, rc;

	if (msg->payloadlen <= 0 || msg->payloadlen > FLOOR_MSG_MAX ||
	    strncmp(msg->topic, "plant/", strlen("plant/")) != 0)
		return;
	twin = msg->topic + strlen("plant/");
	if ((slash = strchr(twin, '/')) == NULL || slash - twin > 100)
		return;
	memcpy(buf, msg->payload, (size_t)msg->payloadlen);
	buf[msg->payloadlen] = '\0';
	if (!floor_number(buf, "\"temperature\":", &temp) || !(temp > FLOOR_LIMIT) ||
	    !floor_number(buf, "\"ts\":", &ts))
		return;
	twin_len = (int)(slash - twin);
	snprintf(topic, sizeof(topic), "plant/%.*s/cmd", twin_len, twin);
	len = snprintf(cmd, sizeof(cmd),
	    "{\"id\":\"f-%ld\",\"twin\":\"%.*s\",\"command\":\"reduce_load\","
	    "\"params\":{\"percent\":20},\"source_ts\":%.0f}", fl->commands, twin_len, twin, ts);
	rc = mosquitto_publish(m, NULL, topic, len, cmd, 1, false);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-floor: publish failed: %s\n", mosquitto_strerror(rc));
		fl->failed = true;
		return;
	}
	fl->commands++;
}

/* Counting only, or counting and commanding: this is the cost twind is measured against. */
static void floor_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
	struct floor *fl = obj;

	if (fl->received >= fl->opt.count)
		return;
	if (fl->received == 0)
		fl->first_ns = mono_ns();
	fl->received++;
	if (fl->received == fl->opt.count)
		fl->last_ns = mono_ns();
	if (fl->opt.closed)
		floor_command(m, fl, msg);
}

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: twind-floor [-c] [-p port] [-n count] [-i client_id] [-T seconds]\n"
	    "  subscribes to " FLOOR_TOPIC " at QoS 1 on " FLOOR_HOST ":port (default 1883),\n"
	    "  prints ready, then exits 0 after count messages (default 100000)\n"
	    "  or 1 after a timeout (default 60 s)\n"
	    "  -c  closed loop: a message with temperature > 100 is answered by a QoS 1\n"
	    "      command on plant/{twin}/cmd; exits once the broker has them all\n");
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
static int floor_parse_args(int argc, char **argv, struct floor_opts *o)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long v;
	int c;

	o->port = 1883;
	o->count = 100000;
	o->client_id = "twind-floor";
	o->timeout_s = 60;
	while ((c = getopt_long(argc, argv, "cp:n:i:T:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->closed = true;
			break;
		case 'p':
			if (parse_long(optarg, 1, 65535, &v) != 0)
				goto bad;
			o->port = (int)v;
			break;
		case 'n':
			if (parse_long(optarg, 1, 1000000000L, &o->count) != 0)
				goto bad;
			break;
		case 'i':
			if (optarg[0] == '\0')
				goto bad;
			o->client_id = optarg;
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
		fprintf(stderr, "twind-floor: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return 0;
bad:
	fprintf(stderr, "twind-floor: bad value '%s' for -%c\n", optarg, c);
	usage(stderr);
	return 2;
}

static bool floor_done(const struct floor *fl)
{
	return fl->received == fl->opt.count && fl->commands_acked == fl->commands;
}

/* Returns 0 once count messages arrived and the broker took every command,
 * -1 on failure, timeout or signal. */
static int floor_run(struct mosquitto *mosq, struct floor *fl)
{
	int64_t until = mono_ns() + fl->opt.timeout_s * 1000000000LL;
	int rc;

	while (!floor_done(fl)) {
		rc = mosquitto_loop(mosq, 100, 1);
		if (rc != MOSQ_ERR_SUCCESS || fl->failed) {
			if (!fl->failed)
				fprintf(stderr, "twind-floor: %s\n", mosquitto_strerror(rc));
			return -1;
		}
		if (floor_stop || mono_ns() > until) {
			fprintf(stderr, "twind-floor: gave up with %ld of %ld messages, "
			    "%ld of %ld commands acknowledged\n", fl->received, fl->opt.count,
			    fl->commands_acked, fl->commands);
			return -1;
		}
	}
	return 0;
}

/* The session outlives us (clean session off); without its subscription the
 * broker stops queueing for it, so it cannot load the broker in the next phase. */
static void floor_drop_subscription(struct mosquitto *mosq, struct floor *fl)
{
	int64_t until = mono_ns() + FLOOR_UNSUB_NS;

	if (mosquitto_unsubscribe(mosq, NULL, FLOOR_TOPIC) != MOSQ_ERR_SUCCESS)
		return;
	while (!fl->unsubscribed && mono_ns() < until) {
		if (mosquitto_loop(mosq, 100, 1) != MOSQ_ERR_SUCCESS)
			return;
	}
}

static void floor_report(const struct floor *fl)
{
	struct rusage ru;
	double cpu = 0;
	long maxrss = 0;

	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
		maxrss = ru.ru_maxrss;
	}
	printf("received %ld first_to_last_s %.3f cpu_s %.3f maxrss_kb %ld", fl->received,
	    (double)(fl->last_ns - fl->first_ns) / 1e9, cpu, maxrss);
	if (fl->opt.closed)
		printf(" commands %ld", fl->commands);
	printf("\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct floor fl;
	struct mosquitto *mosq = NULL;
	struct sigaction sa;
	int rc, exit_code = 1;

	memset(&fl, 0, sizeof(fl));
	rc = floor_parse_args(argc, argv, &fl.opt);
	if (rc != 0)
		return rc == 1 ? 0 : 2;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = floor_on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) {
		perror("twind-floor: sigaction");
		return 1;
	}
	mosquitto_lib_init();
	mosq = mosquitto_new(fl.opt.client_id, false, &fl);
	if (mosq == NULL) {
		fprintf(stderr, "twind-floor: mosquitto_new failed\n");
		goto out;
	}
	/* The floor is the best a bare client can do, and for latency that
	 * means no Nagle delay on its commands. */
	if (fl.opt.closed)
		mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_callback_set(mosq, floor_on_connect);
	mosquitto_subscribe_callback_set(mosq, floor_on_subscribe);
	mosquitto_unsubscribe_callback_set(mosq, floor_on_unsubscribe);
	mosquitto_message_callback_set(mosq, floor_on_message);
	mosquitto_publish_callback_set(mosq, floor_on_publish);
	rc = mosquitto_connect(mosq, FLOOR_HOST, fl.opt.port, 60);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-floor: cannot connect to " FLOOR_HOST ":%d: %s\n", fl.opt.port,
		    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		goto out;
	}
	if (floor_run(mosq, &fl) != 0) {
		floor_drop_subscription(mosq, &fl);
		goto out;
	}
	/* Reported before the unsubscribe so the bench's clock stops at the last message. */
	floor_report(&fl);
	floor_drop_subscription(mosq, &fl);
	mosquitto_disconnect(mosq);
	exit_code = 0;
out:
	mosquitto_destroy(mosq);
	mosquitto_lib_cleanup();
	return exit_code;
}
