/* The REST server's heartbeat: /healthz asked of the server's own address, with a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "http_probe.h"
#include "log.h"
#include "watchdog.h"

#define PROBE_EVERY_MS		1000
/* Longer than any answer of a healthy server under load; a stuck one is found within it. */
#define PROBE_DEADLINE_MS	5000

struct http_probe {
	struct sockaddr_storage addr;
	socklen_t len;
	int tls;		/* HTTPS: asked over TLS, as a browser would (the server's own certificate is not judged) */
	gnutls_certificate_credentials_t cred;
	char request[300];
	int wake[2];		/* a byte here ends the thread's wait */
	atomic_int stop;
	pthread_t thread;
	struct log_limit log;
};

/* Waits for `events` on fd until `deadline` (monotonic ms): 1 ready, 0 not in time, -1 stopped. */
static int
wait_fd(struct http_probe *p, int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd f[2] = { { .fd = fd, .events = events }, { .fd = p->wake[0],
		    .events = POLLIN } };
		int64_t left = deadline - clock_mono_ms();

		if (left <= 0)
			return 0;
		if (poll(f, 2, (int)left) < 0 && errno != EINTR)
			return 0;
		if (f[1].revents || atomic_load(&p->stop))
			return -1;
		if (f[0].revents)
			return 1;
	}
}

/* Runs a non-blocking GnuTLS step until it is done or the deadline passes: its last result. */
static int
tls_step(struct http_probe *p, gnutls_session_t ss, int fd, int64_t deadline, int (*step)(void *),
    void *arg)
{
	int g;

	while ((g = step(arg)) == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED)
		if (wait_fd(p, fd, gnutls_record_get_direction(ss) ? POLLOUT : POLLIN, deadline) != 1)
			return GNUTLS_E_TIMEDOUT;
	return g;
}

struct tls_io {
	gnutls_session_t ss;
	const char *out;
	char in[64];
};

static int
tls_handshake(void *arg)
{
	return gnutls_handshake(((struct tls_io *)arg)->ss);
}

static int
tls_send(void *arg)
{
	struct tls_io *io = arg;
	ssize_t n = gnutls_record_send(io->ss, io->out, strlen(io->out));

	return n < 0 ? (int)n : 0;
}

static int
tls_recv(void *arg)
{
	struct tls_io *io = arg;
	ssize_t n = gnutls_record_recv(io->ss, io->in, sizeof(io->in));

	return n < 0 ? (int)n : 0;
}

/* The question over TLS: 0 once the server sent anything back (or closed) after the handshake. */
static int
ask_tls(struct http_probe *p, int fd, int64_t deadline)
{
	struct tls_io io = { .out = p->request };
	int g, rc = -1;

	if (gnutls_init(&io.ss, GNUTLS_CLIENT | GNUTLS_NONBLOCK) != GNUTLS_E_SUCCESS)
		return -1;
	if (gnutls_set_default_priority(io.ss) != GNUTLS_E_SUCCESS ||
	    gnutls_credentials_set(io.ss, GNUTLS_CRD_CERTIFICATE, p->cred) != GNUTLS_E_SUCCESS)
		goto out;
	gnutls_transport_set_int(io.ss, fd);
	if (tls_step(p, io.ss, fd, deadline, tls_handshake, &io) != GNUTLS_E_SUCCESS ||
	    tls_step(p, io.ss, fd, deadline, tls_send, &io) != 0)
		goto out;
	g = tls_step(p, io.ss, fd, deadline, tls_recv, &io);
	rc = g != GNUTLS_E_TIMEDOUT ? 0 : -1;
	gnutls_bye(io.ss, GNUTLS_SHUT_WR);
out:
	gnutls_deinit(io.ss);
	return rc;
}

/*
 * One question: 0 when the server said anything (bytes, a close, a reset)
 * within the deadline, -1 when it did not or could not be reached.
 */
static int
probe_once(struct http_probe *p)
{
	int64_t deadline = clock_mono_ms() + PROBE_DEADLINE_MS;
	int fd, err = 0, rc = -1;
	socklen_t elen = sizeof(err);
	char buf[64];
	ssize_t n;

	if ((fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&p->addr, p->len) != 0 && errno != EINPROGRESS)
		goto out;
	if (wait_fd(p, fd, POLLOUT, deadline) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
		goto out;
	if (p->tls) {
		rc = ask_tls(p, fd, deadline);
		goto out;
	}
	if (send(fd, p->request, strlen(p->request), MSG_NOSIGNAL) < 0 && errno != EAGAIN)
		goto out;
	if (wait_fd(p, fd, POLLIN, deadline) != 1)
		goto out;
	n = recv(fd, buf, sizeof(buf), 0);
	rc = n >= 0 || errno == ECONNRESET ? 0 : -1;
out:
	close(fd);
	return rc;
}

static void *
probe_main(void *arg)
{
	struct http_probe *p = arg;
	int64_t last_ok = clock_mono_ms();
	int healthy = 1;

	while (!atomic_load(&p->stop)) {
		int64_t next = clock_mono_ms() + PROBE_EVERY_MS;

		/*
		 * While the server answers, a question in flight counts as alive
		 * up to its deadline; once one went unanswered, only an answer
		 * does (as of the last answer until then).
		 */
		if (healthy)
			watchdog_beat_ahead(WD_HTTP, PROBE_DEADLINE_MS);
		if ((healthy = probe_once(p) == 0)) {
			last_ok = clock_mono_ms();
			watchdog_beat_at(WD_HTTP, last_ok);
		} else if (!atomic_load(&p->stop)) {
			watchdog_beat_at(WD_HTTP, last_ok);
			log_limited(&p->log, "http: the server did not answer its own /healthz within "
			    "%d ms", PROBE_DEADLINE_MS);
		}
		if (wait_fd(p, -1, 0, next) < 0)
			break;
	}
	return NULL;
}

struct http_probe *
http_probe_start(const struct sockaddr *addr, socklen_t len, const char *host_header, int tls)
{
	struct http_probe *p = calloc(1, sizeof(*p));

	if (p == NULL || len > sizeof(p->addr))
		goto fail;
	memcpy(&p->addr, addr, len);
	p->len = len;
	p->tls = tls;
	if (tls && gnutls_certificate_allocate_credentials(&p->cred) != GNUTLS_E_SUCCESS) {
		p->tls = 0;
		goto fail;
	}
	snprintf(p->request, sizeof(p->request), "GET /healthz HTTP/1.1\r\nHost: %s\r\n"
	    "Connection: close\r\n\r\n", host_header);
	p->wake[0] = p->wake[1] = -1;
	if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) != 0)
		goto fail;
	if (pthread_create(&p->thread, NULL, probe_main, p) != 0)
		goto fail;
	return p;
fail:
	if (p != NULL && p->wake[0] >= 0) {
		close(p->wake[0]);
		close(p->wake[1]);
	}
	if (p != NULL && p->tls)
		gnutls_certificate_free_credentials(p->cred);
	free(p);
	return NULL;
}

void
http_probe_stop(struct http_probe *p)
{
	char c = 0;

	if (p == NULL)
		return;
	atomic_store(&p->stop, 1);
	if (write(p->wake[1], &c, 1) < 0)
		log_warn("http: probe wake");
	pthread_join(p->thread, NULL);
	close(p->wake[0]);
	close(p->wake[1]);
	if (p->tls)
		gnutls_certificate_free_credentials(p->cred);
	free(p);
}
