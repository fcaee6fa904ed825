/* libmosquitto glue: subscribe, read, hand records to the ring, ack after commit. */
#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "mqtt.h"
#include "watchdog.h"
#include "progress.h"

#define CONNECT_MAX_MS	(3 * 60 * 1000)	/* longest a blocking connect() may rightly take */
#define BURST_MAX	4096	/* packets read before the commit is awaited */
#define STABLE_MS	10000	/* a connection that lasted this long resets the backoff */
#define FINAL_WRITE_MS	2000	/* the last acknowledgements get this long at shutdown */
#define TOPIC_MAX	512
#define BEAT_MS		250	/* longest wait between heartbeats: well under the shortest watchdog half-interval */
#define RECEIVE_MAX	65535	/* MQTT v5: the broker's own max_inflight_messages bounds it */

struct mqtt {
	const struct conf *conf;
	struct ring *ring;
	struct progress *progress;
	struct mosquitto *mosq;
	pthread_mutex_t pub_lock;	/* publishers against a restart of the client (mqtt_fresh) */
	struct ingest ingest;		/* MQTT thread only */
	pthread_t thread;
	int started;
	int wake[2];			/* a pipe that interrupts poll() for stop */
	atomic_int stop;
	atomic_uint connected;		/* the generation of the live connection; 0: none */
	atomic_int sub_refused;		/* the broker refused or downgraded a subscription */

	/* MQTT thread only. */
	uint32_t gen;			/* connection generation, grows per connect */
	uint64_t seq;			/* last record pushed */
	uint64_t acked;			/* last record whose ack may be written */
	uint64_t owed;			/* last record the broker awaits a PUBACK for */
	uint64_t messages;		/* PUBLISH packets handled */
	int ever_connected;
	int64_t backoff_ms;
	int64_t connected_at;		/* monotonic ms of the last CONNACK, 0 if none yet */
	struct log_limit drop_log;
	struct log_limit conn_log;
};

static void push(struct mqtt *m, struct rec *r, size_t len);
static void mqtt_drop(struct mqtt *m);

static void
on_connect(struct mosquitto *mosq, void *arg, int rc)
{
	struct mqtt *m = arg;
	char obj[TOPIC_MAX], single[TOPIC_MAX], ack[TOPIC_MAX];

	if (rc != 0) {
		log_limited(&m->conn_log, "mqtt: broker refused the connection: %s",
		    mosquitto_connack_string(rc));
		return;
	}
	/*
	 * Subscribing here means every reconnect subscribes again. "a/#" also
	 * matches "a", so one filter covers both telemetry forms: two
	 * overlapping filters would make an MQTT v5 broker deliver every
	 * message twice.
	 */
	ingest_subscriptions(&m->ingest, obj, single, sizeof(obj));
	ingest_ack_subscription(&m->ingest, ack, sizeof(ack));
	if (mosquitto_subscribe(mosq, NULL, single, 1) != MOSQ_ERR_SUCCESS ||
	    mosquitto_subscribe(mosq, NULL, ack, 1) != MOSQ_ERR_SUCCESS)
		log_warnx("mqtt: cannot subscribe to %s and %s", single, ack);
	if (m->ever_connected)
		metrics_add(&metrics.reconnects, 1);
	m->ever_connected = 1;
	m->connected_at = clock_mono_ms();
	atomic_store(&m->connected, m->gen);
	atomic_store(&metrics.broker_connected, 1);
	{
		/*
		 * Publications wait for this: before the first connect
		 * libmosquitto drops the retain flag of what it is given.
		 */
		struct rec r = { .kind = REC_CONNECTED };

		push(m, &r, sizeof(r));
	}
	log_info("mqtt: connected to %s:%d (MQTT %s), subscribed to %s (which covers %s) and %s",
	    m->conf->mqtt_host, m->conf->mqtt_port,
	    m->conf->mqtt_protocol == CONF_MQTT_5 ? "5" : "3.1.1", single, obj, ack);
}

/* A refused or downgraded subscription would lose telemetry quietly: say so loudly. */
static void
on_subscribe(struct mosquitto *mosq, void *arg, int mid, int n, const int *granted)
{
	struct mqtt *m = arg;

	(void)mosq;
	(void)mid;
	for (int i = 0; i < n; i++) {
		if (granted[i] == 1)
			continue;
		log_warnx("mqtt: the broker %s our telemetry subscription (granted %d): check its "
		    "ACL", granted[i] == 0x80 ? "refused" : "downgraded to QoS 0", granted[i]);
		atomic_store(&m->sub_refused, 1);
		return;
	}
	atomic_store(&m->sub_refused, 0);
}

static void
on_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
	struct mqtt *m = arg;

	(void)mosq;
	if (atomic_exchange(&m->connected, 0))
		log_limited(&m->conn_log, "mqtt: disconnected from the broker (%s)",
		    rc == 0 ? "on request" : mosquitto_strerror(rc));
	atomic_store(&metrics.broker_connected, 0);
}

static void
push(struct mqtt *m, struct rec *r, size_t len)
{
	r->gen = m->gen;
	r->seq = m->seq + 1;
	/*
	 * Blocks while the ring is full; the engine drains it on its own,
	 * so this waits, it cannot deadlock. TW_ERR_INVAL cannot happen: the
	 * scratch record is at most a quarter of the smallest ring.
	 */
	if (ring_push(m->ring, r, len) != TW_OK)
		fatalx("ring: a record of %zu bytes does not fit (broken invariant)", len);
	m->seq = r->seq;
	/* The broker's PUBACKs and connection news acknowledge nothing to it. */
	if (r->kind != REC_PUBACK && r->kind != REC_CONNECTED && r->kind != REC_FLUSH)
		m->owed = r->seq;
}

/*
 * Runs on the MQTT thread inside mosquitto_loop_read. The payload is not
 * NUL-terminated and is freed when this returns: everything is parsed
 * and copied here.
 */
static void
on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *msg)
{
	struct mqtt *m = arg;
	int64_t now = clock_now_ms();
	struct rec *r;
	size_t len;
	int reason;

	(void)mosq;
	m->messages++;
	metrics_add(&metrics.received, 1);
	/* Answers to our commands first: their topic is not a telemetry topic. */
	reason = ingest_ack(&m->ingest, msg->topic, msg->payload, (size_t)msg->payloadlen, now,
	    &r, &len);
	if (reason == DROP_UNMAPPED_TOPIC)
		reason = ingest_message(&m->ingest, msg->topic, msg->payload,
		    (size_t)msg->payloadlen, now, &r, &len);
	/*
	 * A retained message is replayed on every subscribe: without its own
	 * ts it would look fresh each time, and a dead asset would look alive.
	 */
	if (reason == INGEST_OK && msg->retain) {
		if (!(r->flags & REC_F_HAS_TS))
			reason = DROP_RETAINED_WITHOUT_TS;
		r->flags |= REC_F_RETAINED;
	}
	if (reason == INGEST_OK) {
		push(m, r, len);
		return;
	}
	metrics_add(&metrics.dropped[reason], 1);
	log_limited(&m->drop_log, "mqtt: message on %.200s dropped: %s (%d bytes)",
	    msg->topic, ingest_reason_name(reason), msg->payloadlen);
	/* The PUBACK is queued already: keep the poison message, do not lose it quietly. */
	if (m->conf->quarantine_max > 0) {
		ingest_quarantine(&m->ingest, msg->topic, msg->payload, (size_t)msg->payloadlen,
		    reason, now, &r, &len);
		push(m, r, len);
	}
}

/* The broker acknowledged one of our publications: the engine owns what that means. */
static void
on_publish(struct mosquitto *mosq, void *arg, int mid)
{
	struct mqtt *m = arg;
	struct rec r = { .kind = REC_PUBACK, .mid = (uint32_t)mid };

	(void)mosq;
	push(m, &r, sizeof(r));
}

/*
 * MQTT v5: the PUBACK says whether the broker took it. A refusal (0x80 and
 * up, such as 0x87 "not authorized" from an ACL) means no subscriber got it.
 */
static void
on_publish_v5(struct mosquitto *mosq, void *arg, int mid, int reason,
    const mosquitto_property *props)
{
	struct mqtt *m = arg;
	struct rec r = { .kind = REC_PUBACK, .mid = (uint32_t)mid,
	    .reason = (uint16_t)(reason >= 0x80 ? reason : 0) };

	(void)mosq;
	(void)props;
	push(m, &r, sizeof(r));
}

int
mqtt_publish(struct mqtt *m, uint32_t link, const char *topic, const void *payload, int len,
    int retain, uint32_t expiry_s, int *mid)
{
	mosquitto_property *props = NULL;
	char c = 0;
	int rc;

	/*
	 * Only while connected: libmosquitto would queue everything else in
	 * memory without bound and send it on reconnect, however late.
	 */
	pthread_mutex_lock(&m->pub_lock);
	/*
	 * Only on the connection the engine has heard of (its REC_CONNECTED):
	 * one made since then would be reset by that news and sent twice.
	 */
	if (link == 0 || atomic_load(&m->connected) != link) {
		pthread_mutex_unlock(&m->pub_lock);
		return TW_ERR_UNAVAIL;
	}
	if (expiry_s > 0 && m->conf->mqtt_protocol == CONF_MQTT_5 &&
	    mosquitto_property_add_int32(&props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, expiry_s) !=
	    MOSQ_ERR_SUCCESS) {
		pthread_mutex_unlock(&m->pub_lock);
		return TW_ERR_NOMEM;
	}
	rc = mosquitto_publish_v5(m->mosq, mid, topic, len, payload, 1, retain != 0, props);
	pthread_mutex_unlock(&m->pub_lock);
	mosquitto_property_free_all(&props);
	if (rc == MOSQ_ERR_NO_CONN)
		return TW_ERR_UNAVAIL;
	if (rc != MOSQ_ERR_SUCCESS) {
		log_warnx("mqtt: cannot publish on %s: %s", topic, mosquitto_strerror(rc));
		return rc == MOSQ_ERR_NOMEM ? TW_ERR_NOMEM : TW_ERR_IO;
	}
	/* Wake the MQTT thread so that it writes the message now, not at its next timeout. */
	if (write(m->wake[1], &c, 1) < 0 && errno != EAGAIN)
		log_warn("mqtt: wake");
	return TW_OK;
}

/*
 * Settings of a client, fresh or restarted: mosquitto_reinitialise forgets
 * them with everything else.
 */
static int
mqtt_setup(struct mqtt *m)
{
	const struct conf *c = m->conf;

	/*
	 * Threaded mode makes libmosquitto queue outgoing packets (our
	 * PUBACKs) instead of writing them from inside the read; we write
	 * them ourselves once the commit is done.
	 */
	mosquitto_threaded_set(m->mosq, true);
	/* A command is a small packet: Nagle would hold it back for the next one. */
	mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	if (c->mqtt_protocol == CONF_MQTT_5 &&
	    (mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5) !=
	    MOSQ_ERR_SUCCESS ||
	    /* v5's default of 20 in flight would cap the group commit at 20 messages. */
	    mosquitto_int_option(m->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, RECEIVE_MAX) !=
	    MOSQ_ERR_SUCCESS ||
	    mosquitto_int_option(m->mosq, MOSQ_OPT_SEND_MAXIMUM, RECEIVE_MAX) != MOSQ_ERR_SUCCESS))
		return TW_ERR_INVAL;
	mosquitto_connect_callback_set(m->mosq, on_connect);
	mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
	mosquitto_message_callback_set(m->mosq, on_message);
	if (c->mqtt_protocol == CONF_MQTT_5)
		mosquitto_publish_v5_callback_set(m->mosq, on_publish_v5);
	else
		mosquitto_publish_callback_set(m->mosq, on_publish);
	mosquitto_subscribe_callback_set(m->mosq, on_subscribe);
	if (c->mqtt_username[0] != '\0' &&
	    mosquitto_username_pw_set(m->mosq, c->mqtt_username,
	    c->mqtt_password[0] != '\0' ? c->mqtt_password : NULL) != MOSQ_ERR_SUCCESS)
		return TW_ERR_NOMEM;
	/* TLS 1.2 or newer, the broker's certificate and host name checked by the CA. */
	if (c->mqtt_tls_ca[0] != '\0' &&
	    (mosquitto_tls_set(m->mosq, c->mqtt_tls_ca, NULL,
	    c->mqtt_tls_cert[0] != '\0' ? c->mqtt_tls_cert : NULL,
	    c->mqtt_tls_key[0] != '\0' ? c->mqtt_tls_key : NULL, NULL) != MOSQ_ERR_SUCCESS ||
	    mosquitto_tls_opts_set(m->mosq, 1, "tlsv1.2", NULL) != MOSQ_ERR_SUCCESS)) {
		log_warnx("mqtt: TLS: cannot use %s%s%s (missing, unreadable or not PEM)",
		    c->mqtt_tls_ca, c->mqtt_tls_cert[0] != '\0' ? ", " : "", c->mqtt_tls_cert);
		return TW_ERR_INVAL;
	}
	return TW_OK;
}

struct mqtt *
mqtt_new(const struct conf *c, struct ring *r, struct progress *p)
{
	struct mqtt *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->conf = c;
	m->ring = r;
	m->progress = p;
	m->wake[0] = m->wake[1] = -1;
	m->backoff_ms = c->mqtt_reconnect_min_ms;
	pthread_mutex_init(&m->pub_lock, NULL);
	if (ingest_init(&m->ingest, c->telemetry_topic, c->max_payload, c->max_depth,
	    c->max_properties, c->max_future_ms) != TW_OK ||
	    ingest_set_commands(&m->ingest, c->command_topic) != TW_OK)
		goto fail;
	if (pipe2(m->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
		log_warn("mqtt: pipe");
		goto fail;
	}
	mosquitto_lib_init();
	/* clean_session off: the broker keeps our subscription and queues while we are away. */
	if ((m->mosq = mosquitto_new(c->mqtt_client_id, false, m)) == NULL) {
		log_warn("mqtt: mosquitto_new");
		goto fail;
	}
	if (mqtt_setup(m) != TW_OK)
		goto fail;
	return m;
fail:
	mqtt_free(m);
	return NULL;
}

void
mqtt_free(struct mqtt *m)
{
	if (m == NULL)
		return;
	if (m->mosq != NULL)
		mosquitto_destroy(m->mosq);
	mosquitto_lib_cleanup();
	ingest_cleanup(&m->ingest);
	if (m->wake[0] >= 0)
		close(m->wake[0]);
	if (m->wake[1] >= 0)
		close(m->wake[1]);
	pthread_mutex_destroy(&m->pub_lock);
	free(m);
}

int
mqtt_connected(struct mqtt *m)
{
	return atomic_load(&m->connected) != 0;
}

uint32_t
mqtt_link(struct mqtt *m)
{
	return atomic_load(&m->connected);
}

int
mqtt_subscribed(struct mqtt *m)
{
	return !atomic_load(&m->sub_refused);
}

const char *
mqtt_trouble(struct mqtt *m)
{
	if (!mqtt_connected(m))
		return "not connected to the MQTT broker";
	if (!mqtt_subscribed(m))
		return "the broker refused the telemetry subscription at QoS 1";
	return NULL;
}

/* Empties the wake pipe: a byte left in it would make every later poll return at once. */
static void
mqtt_drain_wake(struct mqtt *m)
{
	char buf[64];

	while (read(m->wake[0], buf, sizeof(buf)) > 0)
		;
}

/* Sleeps up to ms, returning early only when asked to stop. */
static void
mqtt_pause(struct mqtt *m, int64_t ms)
{
	int64_t until = clock_mono_ms() + ms, left;
	struct pollfd p = { .fd = m->wake[0], .events = POLLIN };

	while (!atomic_load(&m->stop) && (left = until - clock_mono_ms()) > 0) {
		watchdog_beat(WD_MQTT);
		if (poll(&p, 1, (int)(left > BEAT_MS ? BEAT_MS : left)) > 0)
			mqtt_drain_wake(m);
	}
}

/*
 * Waits the backoff before a reconnect, unless the last connection was
 * stable: a broker that accepts TCP but refuses the session, a second
 * twind with our client id, or failing commits must not turn into a
 * reconnect storm.
 */
static void
mqtt_backoff(struct mqtt *m)
{
	if (m->connected_at > 0 && clock_mono_ms() - m->connected_at >= STABLE_MS)
		m->backoff_ms = m->conf->mqtt_reconnect_min_ms;
	m->connected_at = 0;
	mqtt_pause(m, m->backoff_ms);
	m->backoff_ms *= 2;
	if (m->backoff_ms > m->conf->mqtt_reconnect_max_ms)
		m->backoff_ms = m->conf->mqtt_reconnect_max_ms;
}

/*
 * A connection is over: the client is restarted empty. libmosquitto would
 * otherwise send its unacknowledged QoS 1 messages again on reconnect,
 * however late: a command that expired meanwhile would still reach the
 * machine. The engine's outbox knows what was not acknowledged and sends
 * again what is still valid (REC_CONNECTED).
 */
static void
mqtt_drop(struct mqtt *m)
{
	atomic_store(&m->connected, 0);
	atomic_store(&metrics.broker_connected, 0);
	pthread_mutex_lock(&m->pub_lock);
	if (mosquitto_reinitialise(m->mosq, m->conf->mqtt_client_id, false, m) != MOSQ_ERR_SUCCESS ||
	    mqtt_setup(m) != TW_OK)
		fatalx("mqtt: cannot restart the client (out of memory)");
	pthread_mutex_unlock(&m->pub_lock);
}

static int
mqtt_connect(struct mqtt *m)
{
	mosquitto_property *props = NULL;
	int rc;

	/* A broker host that drops our SYNs holds connect() for the kernel's ~2 min. */
	watchdog_beat_ahead(WD_MQTT, CONNECT_MAX_MS);
	if (m->conf->mqtt_protocol != CONF_MQTT_5)
		return mosquitto_connect(m->mosq, m->conf->mqtt_host, m->conf->mqtt_port,
		    (int)(m->conf->mqtt_keepalive_ms / 1000));
	/* v5 ends a session at disconnect unless told otherwise: ours must outlive twind. */
	if (mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, UINT32_MAX) !=
	    MOSQ_ERR_SUCCESS)
		return MOSQ_ERR_NOMEM;
	rc = mosquitto_connect_bind_v5(m->mosq, m->conf->mqtt_host, m->conf->mqtt_port,
	    (int)(m->conf->mqtt_keepalive_ms / 1000), NULL, props);
	mosquitto_property_free_all(&props);
	return rc;
}

static void
mqtt_try_connect(struct mqtt *m)
{
	int rc;

	if (m->gen > 0)
		mqtt_backoff(m);
	if (atomic_load(&m->stop))
		return;
	if (m->gen > 0)
		mqtt_drop(m);
	rc = mqtt_connect(m);
	m->gen++;
	if (rc == MOSQ_ERR_SUCCESS)
		return;
	log_limited(&m->conn_log, "mqtt: cannot connect to %s:%d: %s; retrying in %lld ms",
	    m->conf->mqtt_host, m->conf->mqtt_port,
	    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
	    (long long)m->backoff_ms);
}

/*
 * Reads what the socket has, up to BURST_MAX packets. A read that yields
 * no message twice in a row means the socket is drained (or only other
 * packets came): errno cannot say it, since callbacks and libmosquitto's
 * own wake-up pipe leave EAGAIN in it, and a poll() per packet costs a
 * system call per message.
 */
static int
mqtt_read_burst(struct mqtt *m)
{
	int rc = MOSQ_ERR_SUCCESS, idle = 0;

	for (int i = 0; i < BURST_MAX && idle < 2 && !atomic_load(&m->stop); i++) {
		uint64_t before = m->messages;

		rc = mosquitto_loop_read(m->mosq, 1);
		if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(m->mosq) < 0)
			break;
		idle = m->messages == before ? idle + 1 : 0;
	}
	return rc;
}

/*
 * The heart of the guarantee: acknowledgements queued while reading are
 * written only once the engine has committed every record pushed
 * so far. If a commit failed, the connection is dropped with the acks
 * unwritten, and the broker sends those messages again.
 */
static int
mqtt_settle(struct mqtt *m)
{
	struct rec flush = { 0 };
	int rc;

	if (m->seq == m->acked)
		return TW_OK;
	/*
	 * Only what the broker awaits an acknowledgement for needs the commit
	 * first: a burst of its PUBACKs (our commands taken) waits for no
	 * transaction, and is committed with the next batch.
	 */
	if (m->owed <= m->acked) {
		m->acked = m->seq;
		return TW_OK;
	}
	flush.kind = REC_FLUSH;
	push(m, &flush, sizeof(flush));
	/* Waiting on the engine is not a hang of ours: the engine's own beat tells. */
	while ((rc = progress_wait(m->progress, m->acked, m->seq, BEAT_MS)) == TW_ERR_TIMEOUT)
		watchdog_beat(WD_MQTT);
	if (rc == TW_OK) {
		m->acked = m->seq;
		return TW_OK;
	}
	log_limited(&m->conn_log,
	    "mqtt: dropping the connection without acknowledging: the commit failed");
	m->acked = m->seq;
	/* A fresh client holds none of the queued PUBACKs: the broker redelivers. */
	mosquitto_disconnect(m->mosq);
	mqtt_drop(m);
	return rc;
}

static void
mqtt_loop_once(struct mqtt *m)
{
	int sock = mosquitto_socket(m->mosq);
	struct pollfd p[2] = {
		{ .fd = sock, .events = POLLIN },
		{ .fd = m->wake[0], .events = POLLIN },
	};
	int rc = MOSQ_ERR_SUCCESS;

	if (mosquitto_want_write(m->mosq) && m->seq == m->acked)
		p[0].events |= POLLOUT;
	if (poll(p, 2, BEAT_MS) < 0 && errno != EINTR)
		log_warn("mqtt: poll");
	if (p[1].revents & POLLIN)
		mqtt_drain_wake(m);
	if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
		rc = mqtt_read_burst(m);
	if (mqtt_settle(m) != TW_OK)
		return;
	if (rc == MOSQ_ERR_SUCCESS && mosquitto_socket(m->mosq) >= 0 &&
	    mosquitto_want_write(m->mosq))
		rc = mosquitto_loop_write(m->mosq, 1);
	if (rc == MOSQ_ERR_SUCCESS && mosquitto_socket(m->mosq) >= 0)
		mosquitto_loop_misc(m->mosq);
}

/* Writes the last acknowledgements and DISCONNECT, waiting for the socket within a deadline. */
static void
mqtt_final_write(struct mqtt *m)
{
	int64_t deadline = clock_mono_ms() + FINAL_WRITE_MS;
	struct pollfd p;

	mosquitto_disconnect(m->mosq);
	while (mosquitto_want_write(m->mosq) && mosquitto_socket(m->mosq) >= 0 &&
	    clock_mono_ms() < deadline) {
		p = (struct pollfd){ .fd = mosquitto_socket(m->mosq), .events = POLLOUT };
		if (poll(&p, 1, 100) < 0 && errno != EINTR)
			break;
		if (mosquitto_loop_write(m->mosq, 1) != MOSQ_ERR_SUCCESS)
			break;
	}
	if (mosquitto_want_write(m->mosq))
		log_warnx("mqtt: the last acknowledgements could not be written; the broker "
		    "will redeliver those messages (history absorbs them by ts)");
}

/*
 * The disk is full: acknowledge what is committed, leave the broker
 * (which queues the rest for our persistent session) and wait. Reading on
 * would only fill the ring with what cannot be stored.
 */
static void
mqtt_step_aside(struct mqtt *m)
{
	if (mosquitto_socket(m->mosq) >= 0) {
		if (mqtt_settle(m) == TW_OK && mosquitto_socket(m->mosq) >= 0)
			mqtt_final_write(m);
		mqtt_drop(m);
		log_warnx("mqtt: off the broker while the disk is full; it keeps the telemetry "
		    "for twind's session until there is room again");
	}
	mqtt_pause(m, BEAT_MS);
}

static void *
mqtt_main(void *arg)
{
	struct mqtt *m = arg;

	while (!atomic_load(&m->stop)) {
		watchdog_beat(WD_MQTT);
		if (progress_paused(m->progress)) {
			mqtt_step_aside(m);
			continue;
		}
		if (mosquitto_socket(m->mosq) < 0) {
			atomic_store(&m->connected, 0);
			atomic_store(&metrics.broker_connected, 0);
			mqtt_try_connect(m);
			continue;
		}
		mqtt_loop_once(m);
	}
	/* Stop: nothing more is read; ack what is committed, then leave cleanly. */
	if (mqtt_settle(m) == TW_OK && mosquitto_socket(m->mosq) >= 0)
		mqtt_final_write(m);
	return NULL;
}

int
mqtt_start(struct mqtt *m)
{
	if (pthread_create(&m->thread, NULL, mqtt_main, m) != 0)
		return TW_ERR_IO;
	m->started = 1;
	return TW_OK;
}

void
mqtt_stop(struct mqtt *m)
{
	char c = 0;

	if (!m->started)
		return;
	atomic_store(&m->stop, 1);
	if (write(m->wake[1], &c, 1) < 0)
		log_warn("mqtt: wake");
	pthread_join(m->thread, NULL);
	m->started = 0;
}
