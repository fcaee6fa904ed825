/*
 * The REST server's heartbeat for the systemd watchdog: a thread of its own
 * asks the server's own address for /healthz every second, and beats
 * WD_HTTP when the server answers (any answer, or a close: a server at its
 * connection limit refuses by closing, which is progress too). A server
 * that lets a connection wait PROBE_DEADLINE_MS without a word (a handler
 * stuck on a lock, a listener that accepts no more) stops the beat, so
 * systemd restarts twind. Over HTTPS it asks over TLS (GnuTLS, the
 * server's certificate not judged: it is asking itself). Runs only while
 * the watchdog is on.
 */
#ifndef TW_HTTP_PROBE_H
#define TW_HTTP_PROBE_H

#include <sys/socket.h>

struct http_probe;

/* Probes `addr` (the listener's, wildcards turned to loopback); NULL when the thread cannot start. */
struct http_probe *http_probe_start(const struct sockaddr *addr, socklen_t len,
    const char *host_header, int tls);
void http_probe_stop(struct http_probe *p);

#endif
