/* twind-sim: a plant simulator that publishes line, pump and motor telemetry over MQTT and obeys setpoints and commands, so twind can be run and shown without hardware. */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>

#include "sim.h"

static volatile sig_atomic_t sim_stop;

static void sim_on_signal(int sig)
{
	(void)sig;
	sim_stop = 1;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t sim_epoch_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Input from the network can arrive in floods: a few lines a second are
 * enough to diagnose, the rest are only counted. */
static void sim_warn_input(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sim_warn_input(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	time_t now = time(NULL);

	if (now != s->warn_sec) {
		if (s->warn_dropped > 0)
			fprintf(stderr, "twind-sim: %lu more bad messages not shown\n",
			    s->warn_dropped);
		s->warn_sec = now;
		s->warn_count = 0;
		s->warn_dropped = 0;
	}
	if (s->warn_count >= SIM_WARN_PER_S) {
		s->warn_dropped++;
		return;
	}
	s->warn_count++;
	fputs("twind-sim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void queue_init(struct sim_queue *q)
{
	pthread_mutex_init(&q->lock, NULL);
	q->head = 0;
	q->len = 0;
}

static void queue_cleanup(struct sim_queue *q)
{
	pthread_mutex_destroy(&q->lock);
}

/* Returns 0, or -1 when the queue is full. */
static int queue_push(struct sim_queue *q, const struct sim_event *ev)
{
	int rc = -1;

	pthread_mutex_lock(&q->lock);
	if (q->len < SIM_EVENTS) {
		q->ev[(q->head + q->len) % SIM_EVENTS] = *ev;
		q->len++;
		rc = 0;
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

/* Returns 1 and fills ev, or 0 when empty. */
static int queue_pop(struct sim_queue *q, struct sim_event *ev)
{
	int got = 0;

	pthread_mutex_lock(&q->lock);
	if (q->len > 0) {
		*ev = q->ev[q->head];
		q->head = (q->head + 1) % SIM_EVENTS;
		q->len--;
		got = 1;
	}
	pthread_mutex_unlock(&q->lock);
	return got;
}

/* Twin names of the plant: slot 0 is the line, then each pump followed by its motor. */
static enum twin_kind sim_slot_twin(int slot, int *pump, char *name, size_t n)
{
	if (slot == 0) {
		*pump = -1;
		snprintf(name, n, "line-1");
		return TWIN_LINE;
	}
	*pump = (slot - 1) / 2;
	if ((slot - 1) % 2 == 0) {
		snprintf(name, n, "pump-%d", *pump + 1);
		return TWIN_PUMP;
	}
	snprintf(name, n, "pump-%d.motor", *pump + 1);
	return TWIN_MOTOR;
}

/* Maps a twin name from a topic to one of ours; anything else (another
 * plant on the same broker) is TWIN_NONE and left alone. */
static enum twin_kind sim_twin_lookup(int npumps, const char *name, size_t len, int *pump)
{
	size_t i = 5;
	long k = 0;

	*pump = -1;
	if (len == 6 && memcmp(name, "line-1", 6) == 0)
		return TWIN_LINE;
	if (len < 6 || memcmp(name, "pump-", 5) != 0 || name[5] < '1' || name[5] > '9')
		return TWIN_NONE;
	while (i < len && name[i] >= '0' && name[i] <= '9' && k <= SIM_MAX_PUMPS) {
		k = k * 10 + (name[i] - '0');
		i++;
	}
	if (k < 1 || k > npumps)
		return TWIN_NONE;
	*pump = (int)k - 1;
	if (i == len)
		return TWIN_PUMP;
	if (len - i == 6 && memcmp(name + i, ".motor", 6) == 0)
		return TWIN_MOTOR;
	*pump = -1;
	return TWIN_NONE;
}

/* Splits "plant/{twin}/{suffix}" into borrowed pieces of topic; returns 0 or -1. */
static int sim_topic_split(const char *topic, const char **twin, size_t *twin_len,
    const char **suffix)
{
	const char *slash;

	if (strncmp(topic, "plant/", 6) != 0)
		return -1;
	*twin = topic + 6;
	slash = strchr(*twin, '/');
	if (slash == NULL || slash == *twin)
		return -1;
	*twin_len = (size_t)(slash - *twin);
	*suffix = slash + 1;
	return 0;
}

/* Publishes and keeps count of what libmosquitto still holds, so that a slow
 * or absent broker cannot make its queue grow without bound.
 * Returns 0, or -1 when the message was not handed over. */
static int sim_publish(struct sim *s, const char *topic, const char *payload, size_t len,
    int qos)
{
	int rc;

	if (!atomic_load(&s->connected) || atomic_load(&s->unacked) >= SIM_MAX_UNACKED)
		return -1;
	/* Counted before the call: on_publish may run on the other thread first. */
	atomic_fetch_add(&s->unacked, 1);
	rc = mosquitto_publish(s->mosq, NULL, topic, (int)len, payload, qos, false);
	if (rc != MOSQ_ERR_SUCCESS) {
		atomic_fetch_sub(&s->unacked, 1);
		return -1;
	}
	return 0;
}

/* Sends {"id":..,"status":..[,"detail":..]} on plant/{twin}/cmd/ack at QoS 1;
 * cJSON does the escaping because the id comes from outside. */
static void sim_send_ack(struct sim *s, const char *twin, size_t twin_len, const char *id,
    const char *status, const char *detail)
{
	char topic[64 + SIM_NAME_MAX];
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;

	if (o == NULL || cJSON_AddStringToObject(o, "id", id) == NULL ||
	    cJSON_AddStringToObject(o, "status", status) == NULL ||
	    (detail != NULL && cJSON_AddStringToObject(o, "detail", detail) == NULL))
		goto fail;
	text = cJSON_PrintUnformatted(o);
	if (text == NULL)
		goto fail;
	snprintf(topic, sizeof(topic), "plant/%.*s/cmd/ack", (int)twin_len, twin);
	/* Acks share the bound with telemetry; one that cannot go is said, not lost silently. */
	if (sim_publish(s, topic, text, strlen(text), 1) != 0)
		fprintf(stderr, "twind-sim: could not send ack %s for %s (%s)\n", status, id,
		    atomic_load(&s->connected) ? "too many unacknowledged" : "broker lost");
	cJSON_free(text);
	cJSON_Delete(o);
	return;
fail:
	fprintf(stderr, "twind-sim: out of memory building an ack\n");
	cJSON_Delete(o);
}

/* plant/{twin}/desired: only pumps have a writable value (speed). An empty
 * payload means nothing is desired, and null removes a desired value: both
 * leave the current setpoint alone. */
static void sim_handle_desired(struct sim *s, enum twin_kind kind, int pump,
    const char *twin, size_t twin_len, const struct mosquitto_message *msg)
{
	cJSON *root, *speed;
	struct sim_event ev;

	if (msg->payloadlen == 0)
		return;
	root = cJSON_ParseWithLength(msg->payload, (size_t)msg->payloadlen);
	if (root == NULL || !cJSON_IsObject(root)) {
		sim_warn_input(s, "ignoring malformed desired for %.*s", (int)twin_len, twin);
		goto out;
	}
	if (kind != TWIN_PUMP)
		goto out;
	speed = cJSON_GetObjectItemCaseSensitive(root, "speed");
	if (speed == NULL || cJSON_IsNull(speed))
		goto out;
	if (!cJSON_IsNumber(speed) || !isfinite(speed->valuedouble) ||
	    speed->valuedouble < 0 || speed->valuedouble > SIM_MAX_RPM) {
		sim_warn_input(s, "ignoring desired speed for %.*s: not a number in [0, %.0f]",
		    (int)twin_len, twin, SIM_MAX_RPM);
		goto out;
	}
	memset(&ev, 0, sizeof(ev));
	ev.kind = SIM_EV_SPEED;
	ev.pump = pump;
	ev.value = speed->valuedouble;
	if (queue_push(&s->q, &ev) != 0)
		sim_warn_input(s, "dropping desired speed for %.*s: queue full", (int)twin_len, twin);
out:
	cJSON_Delete(root);
}

/* Checks a command and queues it for the main thread, which acks "done" once
 * applied; what cannot be applied is rejected here. */
static void sim_handle_cmd(struct sim *s, enum twin_kind kind, int pump,
    const char *twin, size_t twin_len, const struct mosquitto_message *msg)
{
	cJSON *root, *id, *name, *who, *params, *pct;
	struct sim_event ev;

	root = cJSON_ParseWithLength(msg->payload, (size_t)msg->payloadlen);
	if (root == NULL || !cJSON_IsObject(root)) {
		sim_warn_input(s, "ignoring malformed command for %.*s", (int)twin_len, twin);
		goto out;
	}
	id = cJSON_GetObjectItemCaseSensitive(root, "id");
	if (!cJSON_IsString(id) || id->valuestring[0] == '\0' ||
	    strlen(id->valuestring) > SIM_ID_MAX) {
		/* Without an id there is nothing an ack could refer to. */
		sim_warn_input(s, "ignoring command for %.*s without a usable id",
		    (int)twin_len, twin);
		goto out;
	}
	who = cJSON_GetObjectItemCaseSensitive(root, "twin");
	if (who != NULL && (!cJSON_IsString(who) || strlen(who->valuestring) != twin_len ||
	    memcmp(who->valuestring, twin, twin_len) != 0)) {
		sim_send_ack(s, twin, twin_len, id->valuestring, "rejected", "twin does not match topic");
		goto out;
	}
	name = cJSON_GetObjectItemCaseSensitive(root, "command");
	memset(&ev, 0, sizeof(ev));
	ev.kind = SIM_EV_CMD;
	ev.pump = pump;
	snprintf(ev.id, sizeof(ev.id), "%s", id->valuestring);
	if (!cJSON_IsString(name)) {
		sim_send_ack(s, twin, twin_len, ev.id, "rejected", "unknown command");
		goto out;
	} else if (strcmp(name->valuestring, "reduce_load") == 0) {
		ev.cmd = SIM_CMD_REDUCE;
	} else if (strcmp(name->valuestring, "stop") == 0) {
		ev.cmd = SIM_CMD_STOP;
	} else if (strcmp(name->valuestring, "start") == 0) {
		ev.cmd = SIM_CMD_START;
	} else {
		sim_send_ack(s, twin, twin_len, ev.id, "rejected", "unknown command");
		goto out;
	}
	if (kind != TWIN_PUMP) {
		sim_send_ack(s, twin, twin_len, ev.id, "rejected", "only pumps take commands");
		goto out;
	}
	if (ev.cmd == SIM_CMD_REDUCE) {
		params = cJSON_GetObjectItemCaseSensitive(root, "params");
		pct = cJSON_GetObjectItemCaseSensitive(params, "percent");
		if (!cJSON_IsNumber(pct) || !(pct->valuedouble > 0 && pct->valuedouble <= 100)) {
			sim_send_ack(s, twin, twin_len, ev.id, "rejected",
			    "params.percent must be a number in (0, 100]");
			goto out;
		}
		ev.value = pct->valuedouble;
	}
	if (queue_push(&s->q, &ev) != 0)
		sim_send_ack(s, twin, twin_len, ev.id, "failed", "busy");
out:
	cJSON_Delete(root);
}

static void sim_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
	struct sim *s = obj;
	const char *twin, *suffix;
	size_t twin_len;
	enum twin_kind kind;
	int pump;

	(void)m;
	if (sim_topic_split(msg->topic, &twin, &twin_len, &suffix) != 0)
		return;
	kind = sim_twin_lookup(s->opt.pumps, twin, twin_len, &pump);
	if (kind == TWIN_NONE)
		return;
	if (strcmp(suffix, "desired") == 0)
		sim_handle_desired(s, kind, pump, twin, twin_len, msg);
	else if (strcmp(suffix, "cmd") == 0)
		sim_handle_cmd(s, kind, pump, twin, twin_len, msg);
}

/* Subscribing here means a reconnect subscribes again. */
static void sim_on_connect(struct mosquitto *m, void *obj, int rc)
{
	struct sim *s = obj;
	int src;

	if (rc != 0) {
		fprintf(stderr, "twind-sim: broker refused the connection: %s\n",
		    mosquitto_connack_string(rc));
		return;
	}
	/*
	 * Its own pumps' topics, one by one: a broker's ACL grants a bridge its
	 * own twins, and refuses a wildcard over everyone's.
	 */
	src = MOSQ_ERR_SUCCESS;
	for (int i = 0; i < s->opt.pumps && src == MOSQ_ERR_SUCCESS; i++) {
		char topic[64];

		snprintf(topic, sizeof(topic), "plant/pump-%d/desired", i + 1);
		src = mosquitto_subscribe(m, NULL, topic, 1);
		snprintf(topic, sizeof(topic), "plant/pump-%d/cmd", i + 1);
		if (src == MOSQ_ERR_SUCCESS)
			src = mosquitto_subscribe(m, NULL, topic, 1);
	}
	if (src != MOSQ_ERR_SUCCESS)
		fprintf(stderr, "twind-sim: subscribe failed: %s\n", mosquitto_strerror(src));
	atomic_store(&s->connected, true);
	fprintf(stderr, "twind-sim: connected to %s:%d\n", s->opt.host, s->opt.port);
}

static void sim_on_disconnect(struct mosquitto *m, void *obj, int rc)
{
	struct sim *s = obj;

	(void)m;
	atomic_store(&s->connected, false);
	if (rc != 0)
		fprintf(stderr, "twind-sim: lost the broker, reconnecting\n");
}

static void sim_on_publish(struct mosquitto *m, void *obj, int mid)
{
	struct sim *s = obj;

	(void)m;
	(void)mid;
	atomic_fetch_sub(&s->unacked, 1);
}

/* A stopped pump stays stopped when its setpoint changes: start runs it again. */
static void sim_apply_event(struct sim *s, const struct sim_event *ev)
{
	struct pump *p = &s->pumps[ev->pump];
	char twin[SIM_NAME_MAX];

	if (ev->kind == SIM_EV_SPEED) {
		p->setpoint = ev->value;
		if (p->running)
			pump_set_target(p, p->setpoint);
		return;
	}
	switch (ev->cmd) {
	case SIM_CMD_REDUCE:
		if (p->running)
			pump_set_target(p, p->target * (1.0 - ev->value / 100.0));
		break;
	case SIM_CMD_STOP:
		p->running = false;
		pump_set_target(p, 0.0);
		break;
	case SIM_CMD_START:
		p->running = true;
		pump_set_target(p, p->setpoint);
		break;
	}
	snprintf(twin, sizeof(twin), "pump-%d", ev->pump + 1);
	sim_send_ack(s, twin, strlen(twin), ev->id, "done", NULL);
}

static void sim_drain_events(struct sim *s)
{
	struct sim_event ev;

	while (queue_pop(&s->q, &ev))
		sim_apply_event(s, &ev);
}

/* Publishes one message for the next twin in round-robin order. */
static void sim_publish_next(struct sim *s)
{
	struct reading r[SIM_READINGS];
	char twin[SIM_NAME_MAX], topic[128], payload[512];
	enum twin_kind kind;
	int pump, n, flat, i, slot = s->slot;
	unsigned long round = s->msg_no / (unsigned long)s->ntwins;
	size_t len;
	int64_t *last;

	kind = sim_slot_twin(slot, &pump, twin, sizeof(twin));
	s->slot = (slot + 1) % s->ntwins;
	s->msg_no++;
	n = sim_readings(s, kind, pump, r, &flat);
	/* Strict round robin makes round this twin's own message count; adding
	 * the slot staggers the twins so no round is all single values. */
	if ((round + (unsigned long)slot) % SIM_SINGLE_EVERY == SIM_SINGLE_EVERY - 1 && flat > 0) {
		i = (int)((round / SIM_SINGLE_EVERY) % (unsigned long)flat);
		snprintf(topic, sizeof(topic), "plant/%s/telemetry/%s", twin, r[i].name);
		len = strlen(r[i].text);
		memcpy(payload, r[i].text, len + 1);
	} else {
		last = kind == TWIN_LINE ? &s->line_last_ts :
		    kind == TWIN_PUMP ? &s->pumps[pump].last_ts : &s->pumps[pump].motor_last_ts;
		snprintf(topic, sizeof(topic), "plant/%s/telemetry", twin);
		len = (size_t)snprintf(payload, sizeof(payload), "{\"ts\":%lld",
		    (long long)sim_next_ts(last));
		/* payload holds SIM_READINGS readings of 48 bytes plus names: no truncation */
		for (i = 0; i < n; i++)
			len += (size_t)snprintf(payload + len, sizeof(payload) - len, ",\"%s\":%s",
			    r[i].name, r[i].text);
		len += (size_t)snprintf(payload + len, sizeof(payload) - len, "}");
	}
	if (sim_publish(s, topic, payload, len, s->opt.qos) == 0)
		s->published++;
	else
		s->skipped++;
}

/* libmosquitto's thread reconnects after a loss, but not when the very first
 * attempt fails, so until then the main thread retries.
 * Returns 0 once the network thread runs, 1 to retry later, -1 when hopeless. */
static int sim_connect(struct sim *s)
{
	int rc;

	rc = mosquitto_connect_async(s->mosq, s->opt.host, s->opt.port, 30);
	if (rc == MOSQ_ERR_ERRNO) {
		if (!s->connect_warned)
			fprintf(stderr, "twind-sim: cannot connect to %s:%d yet (%s), retrying\n",
			    s->opt.host, s->opt.port, strerror(errno));
		s->connect_warned = true;
		return 1;
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-sim: cannot connect to %s:%d: %s\n", s->opt.host,
		    s->opt.port, mosquitto_strerror(rc));
		return -1;
	}
	rc = mosquitto_loop_start(s->mosq);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-sim: cannot start the network thread: %s\n",
		    mosquitto_strerror(rc));
		return -1;
	}
	s->loop_started = true;
	return 0;
}

static void sim_sleep_until(int64_t t_ns)
{
	struct timespec ts = { .tv_sec = t_ns / 1000000000LL, .tv_nsec = t_ns % 1000000000LL };

	/* EINTR is fine: the caller looks at the stop flag and comes back. */
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

/* Returns 0 on a normal stop, -1 when connecting became hopeless. */
static int sim_run(struct sim *s)
{
	int64_t period = (int64_t)(1e9 / s->opt.rate);
	int64_t now = mono_ns(), next = now, last_phys = now, last_try = now, wake;
	int64_t end = s->opt.duration > 0 ? now + s->opt.duration * 1000000000LL : 0;
	int burst;

	if (period < 1)
		period = 1;
	s->start_ns = now;
	if (s->opt.pumps >= 2) {
		/* The truth a forecast of pump-2 can be checked against. */
		printf("twind-sim: pump-2's bearing wears; at nominal speed its vibration reaches "
		    "%g mm/s, the model's maximum, at ts %lld\n", SIM_VIB_LIMIT,
		    (long long)(sim_epoch_ms() + (int64_t)((SIM_HEALTHY_S + (SIM_VIB_LIMIT - 2.0) /
		    5.0 * SIM_WEAR_S) / s->opt.accel * 1000.0)));
		fflush(stdout);
	}
	while (!sim_stop) {
		now = mono_ns();
		if (end != 0 && now >= end)
			break;
		if (!s->loop_started && now - last_try >= 1000000000LL) {
			last_try = now;
			if (sim_connect(s) < 0)
				return -1;
		}
		sim_drain_events(s);
		if (now - last_phys >= SIM_PHYSICS_NS) {
			sim_step_plant(s, now, (double)(now - last_phys) / 1e9);
			last_phys = now;
		}
		for (burst = 0; next <= now && burst < SIM_BURST; burst++) {
			sim_publish_next(s);
			next += period;
		}
		/* After a stall (suspend, overload) keep the rate rather than catch up in a burst. */
		if (now - next > 1000000000LL)
			next = now;
		wake = next < now + SIM_POLL_NS ? next : now + SIM_POLL_NS;
		if (end != 0 && end < wake)
			wake = end;
		sim_sleep_until(wake);
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: twind-sim [-h host] [-p port] [-r rate] [-n pumps] [-d seconds]\n"
	    "                 [-q qos] [-i client_id] [-a factor] [-u user -w password_file]\n"
	    "                 [--help]\n"
	    "  -h host       broker address (default 127.0.0.1)\n"
	    "  -p port       broker port (default 1883)\n"
	    "  -r rate       telemetry messages per second, whole plant (default 20)\n"
	    "  -n pumps      number of pumps, 1..%d (default 4)\n"
	    "  -d seconds    run this long, 0 = until SIGINT/SIGTERM (default 0)\n"
	    "  -q qos        telemetry QoS 0..2 (default 1)\n"
	    "  -i client_id  MQTT client id (default twind-sim)\n"
	    "  -a factor     speed up the plant's ageing clock (default 1: healthy 30 min, then the bearing reaches its limit in 48 min)\n"
	    "  -u user       MQTT username (a broker with a password file and an ACL)\n"
	    "  -w file       its password: the first line of this file\n"
	    "Publishes plant/{twin}/telemetry[/{property}] for line-1, pump-K and pump-K.motor;\n"
	    "obeys plant/+/desired (speed) and plant/+/cmd (reduce_load, stop, start).\n",
	    SIM_MAX_PUMPS);
}

/* The first line of `path` into `out`; 0, or -1 with the reason said. */
static int read_password(const char *path, char *out, size_t outlen)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "twind-sim: %s: %s\n", path, strerror(errno));
		return -1;
	}
	n = fread(out, 1, outlen - 1, f);
	fclose(f);
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
	if (out[0] == '\0') {
		fprintf(stderr, "twind-sim: %s: no password in it\n", path);
		return -1;
	}
	return 0;
}

/* Parses a whole decimal number in [lo, hi]; returns 0 or -1. */
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

static int parse_double(const char *arg, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (errno != 0 || end == arg || *end != '\0' || !isfinite(v) || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* Returns 0, 1 after --help, or 2 on a bad option (after saying so on stderr). */
static int sim_parse_args(int argc, char **argv, struct sim_opts *o)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	long v;
	int c;

	o->host = "127.0.0.1";
	o->port = 1883;
	o->rate = 20;
	o->pumps = 4;
	o->duration = 0;
	o->qos = 1;
	o->client_id = "twind-sim";
	o->accel = 1;
	while ((c = getopt_long(argc, argv, "h:p:r:n:d:q:i:a:u:w:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			o->host = optarg;
			break;
		case 'p':
			if (parse_long(optarg, 1, 65535, &v) != 0)
				goto bad;
			o->port = (int)v;
			break;
		case 'r':
			if (parse_double(optarg, 0.001, SIM_MAX_RATE, &o->rate) != 0)
				goto bad;
			break;
		case 'n':
			if (parse_long(optarg, 1, SIM_MAX_PUMPS, &v) != 0)
				goto bad;
			o->pumps = (int)v;
			break;
		case 'd':
			if (parse_long(optarg, 0, INT_MAX, &o->duration) != 0)
				goto bad;
			break;
		case 'q':
			if (parse_long(optarg, 0, 2, &v) != 0)
				goto bad;
			o->qos = (int)v;
			break;
		case 'i':
			if (optarg[0] == '\0' || strlen(optarg) > 65535)
				goto bad;
			o->client_id = optarg;
			break;
		case 'a':
			if (parse_double(optarg, 0.001, 1e6, &o->accel) != 0)
				goto bad;
			break;
		case 'u':
			o->username = optarg;
			break;
		case 'w':
			if (read_password(optarg, o->password, sizeof(o->password)) != 0)
				return 2;
			break;
		case 'H':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "twind-sim: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return 0;
bad:
	fprintf(stderr, "twind-sim: bad value '%s' for -%c\n", optarg, c);
	usage(stderr);
	return 2;
}

static int sim_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sim_on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
		return -1;
	return 0;
}

/* The first messages would be skipped while the connection is being made:
 * give it a moment, but a missing broker must not hold the plant still. */
static void sim_wait_connected(struct sim *s)
{
	int64_t until = mono_ns() + 2000000000LL;

	while (s->loop_started && !atomic_load(&s->connected) && !sim_stop && mono_ns() < until)
		sim_sleep_until(mono_ns() + 10000000LL);
}

/* Gives libmosquitto a bounded time to get the last QoS>0 messages acknowledged. */
static void sim_drain_unacked(struct sim *s)
{
	int64_t until = mono_ns() + 2000000000LL;

	while (atomic_load(&s->unacked) > 0 && atomic_load(&s->connected) && mono_ns() < until)
		sim_sleep_until(mono_ns() + 10000000LL);
}

int main(int argc, char **argv)
{
	struct sim s;
	int rc, exit_code = 1;

	memset(&s, 0, sizeof(s));
	rc = sim_parse_args(argc, argv, &s.opt);
	if (rc != 0)
		return rc == 1 ? 0 : 2;
	if (sim_install_signals() != 0) {
		perror("twind-sim: sigaction");
		return 1;
	}
	s.pumps = calloc((size_t)s.opt.pumps, sizeof(*s.pumps));
	if (s.pumps == NULL) {
		fprintf(stderr, "twind-sim: out of memory\n");
		return 1;
	}
	sim_init_plant(&s);
	queue_init(&s.q);
	atomic_init(&s.connected, false);
	atomic_init(&s.unacked, 0);
	mosquitto_lib_init();
	s.mosq = mosquitto_new(s.opt.client_id, true, &s);
	if (s.mosq == NULL) {
		fprintf(stderr, "twind-sim: mosquitto_new failed\n");
		goto out;
	}
	if (s.opt.username != NULL &&
	    mosquitto_username_pw_set(s.mosq, s.opt.username,
	    s.opt.password[0] != '\0' ? s.opt.password : NULL) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twind-sim: cannot set the username\n");
		goto out;
	}
	mosquitto_connect_callback_set(s.mosq, sim_on_connect);
	mosquitto_disconnect_callback_set(s.mosq, sim_on_disconnect);
	mosquitto_publish_callback_set(s.mosq, sim_on_publish);
	mosquitto_message_callback_set(s.mosq, sim_on_message);
	mosquitto_reconnect_delay_set(s.mosq, 1, 2, false);
	mosquitto_max_inflight_messages_set(s.mosq, 100);

	printf("twind-sim: %d pumps, %d twins (line-1, pump-1..pump-%d, pump-K.motor), "
	    "%g msg/s on plant/{twin}/telemetry[/{property}] at QoS %d via %s:%d as %s; "
	    "obeying plant/+/desired and plant/+/cmd\n",
	    s.opt.pumps, s.ntwins, s.opt.pumps, s.opt.rate, s.opt.qos, s.opt.host, s.opt.port,
	    s.opt.client_id);
	fflush(stdout);

	if (sim_connect(&s) < 0)
		goto out;
	sim_wait_connected(&s);
	if (sim_run(&s) != 0)
		goto out;
	sim_drain_events(&s);
	sim_drain_unacked(&s);
	mosquitto_disconnect(s.mosq);
	if (s.loop_started)
		mosquitto_loop_stop(s.mosq, false);
	fprintf(stderr, "twind-sim: stopped after %lu messages (%lu skipped while the broker "
	    "was away or slow)\n", s.published, s.skipped);
	exit_code = 0;
out:
	mosquitto_destroy(s.mosq);
	mosquitto_lib_cleanup();
	queue_cleanup(&s.q);
	free(s.pumps);
	return exit_code;
}
