"""Reliability: broker restart, SIGTERM and kill -9 under load, poison
messages. "Acknowledged" always means: the publisher got its PUBACK from the
broker. Every message carries a distinct ts per twin, so the history table's
unique key (series, ts) identifies it."""

import signal
import threading
import time

import paho.mqtt.client as mqtt

from conftest import (StreamPublisher, check_exactly_once, metric_value, now_ms,
                      wait_stored, wait_until)


def make_stream(n, twins, prefix):
    """n messages round-robin over `twins` twins, {"seq": i, "ts": base + i}."""
    base = now_ms() - 900_000
    names = [f"{prefix}-{k}" for k in range(twins)]
    msgs, by_twin, owner = [], {t: {} for t in names}, []
    for i in range(n):
        t = names[i % twins]
        msgs.append((f"plant/{t}/telemetry", {"seq": i, "ts": base + i}))
        by_twin[t][base + i] = i
        owner.append((t, base + i))
    return msgs, by_twin, owner


def acked_by_twin(owner, indexes):
    out = {}
    for i in indexes:
        t, ts = owner[i]
        out.setdefault(t, set()).add(ts)
    return out


def healthz(tw):
    return tw.get("/healthz", timeout=2)


def integrity_ok(tw):
    con = tw.db_connect()
    try:
        return con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()


def check_state_matches_history(tw, by_twin):
    """Every stored message changed `seq` (distinct, ascending ts per twin),
    so each grew the version by exactly one: after any crash the twin's
    version equals its number of history rows, and the reported value is the
    newest row."""
    for twin in by_twin:
        rows = tw.db_history(twin, "seq")
        doc = tw.twin(twin)
        assert doc is not None, twin
        assert doc["version"] == len(rows), (twin, doc["version"], len(rows))
        assert (doc["reported"]["seq"]["ts"], doc["reported"]["seq"]["value"]) == rows[-1], \
            (twin, doc["reported"]["seq"], rows[-1])


def stored_count(tw):
    con = tw.db_connect()
    try:
        return con.execute("SELECT count(*) FROM history").fetchone()[0]
    finally:
        con.close()


def test_broker_restart_mid_stream(broker, make_twind, make_publisher):
    tw = make_twind()
    n = 1000
    msgs, by_twin, owner = make_stream(n, 4, "br")

    pub_a = make_publisher()
    s1 = StreamPublisher(pub_a, msgs, rate=1000)
    s1.start()
    wait_until(lambda: len(s1.acked()) >= 400, 15, what="400 PUBACKs before the broker stops")
    broker.stop()
    s1.stop_event.set()
    s1.join(5)
    pub_a.close()          # before the broker is back: it must not reconnect
    sent_a = s1.published()
    acked_a = s1.acked()
    assert 400 <= len(acked_a) <= sent_a < n

    # (a requests.Response is falsy for 4xx/5xx: wrap it)
    (r,) = wait_until(lambda: (lambda r: (r,) if r.status_code == 503 else None)(healthz(tw)),
                      10, what="healthz 503 while the broker is down")
    body = r.json()
    assert body["status"] == "unavailable" and isinstance(body.get("reason"), str) \
        and body["reason"], body
    assert tw.metric("twind_broker_connected") == 0

    broker.start()
    wait_until(lambda: healthz(tw).status_code == 200, 30, what="healthz 200 after restart")

    pub_b = make_publisher()
    s2 = StreamPublisher(pub_b, msgs[sent_a:], rate=2000)
    s2.start()
    acked_b = [sent_a + j for j in s2.wait_acked(30)]
    assert len(acked_b) == n - sent_a, "the restarted broker did not acknowledge everything"

    acked = acked_by_twin(owner, acked_a + acked_b)
    wait_stored(tw, acked, 30)
    m = tw.metrics()
    assert metric_value(m, "twind_broker_connected") == 1
    assert metric_value(m, "twind_broker_reconnects_total") >= 1
    assert healthz(tw).json() == {"status": "ok"}
    check_state_matches_history(tw, by_twin)
    assert tw.stop() == 0
    check_exactly_once(tw, by_twin, acked)
    assert integrity_ok(tw)


def test_sigterm_under_load(broker, make_twind, make_publisher):
    tw = make_twind()
    n = 4000
    msgs, by_twin, owner = make_stream(n, 8, "st")
    s = StreamPublisher(make_publisher(), msgs, rate=2000)
    s.start()
    wait_until(lambda: len(s.acked()) >= 1200, 15, what="1200 PUBACKs")
    assert tw.running()
    t0 = time.monotonic()
    rc = tw.stop(signal.SIGTERM, timeout=15)
    elapsed = time.monotonic() - t0
    assert rc == 0, f"exit code {rc} after SIGTERM"
    assert elapsed < 10, f"SIGTERM took {elapsed:.1f}s"
    assert integrity_ok(tw)

    # the broker keeps queueing for twind's persistent session meanwhile
    acked_idx = s.wait_acked(30)
    assert len(acked_idx) == n
    tw.start()
    acked = acked_by_twin(owner, acked_idx)
    wait_stored(tw, acked, 60)
    check_state_matches_history(tw, by_twin)
    assert tw.stop() == 0
    check_exactly_once(tw, by_twin, acked)
    assert integrity_ok(tw)


def test_kill9_under_load(broker, make_twind, make_publisher):
    tw = make_twind()
    n = 4000
    msgs, by_twin, owner = make_stream(n, 8, "k9")
    s = StreamPublisher(make_publisher(), msgs, rate=2000)
    s.start()
    wait_until(lambda: len(s.acked()) >= 1200, 15, what="1200 PUBACKs")
    assert tw.running()
    tw.kill9()
    # the broker keeps the rest for twind's session: a backlog
    acked_idx = s.wait_acked(30)
    assert len(acked_idx) == n
    acked = acked_by_twin(owner, acked_idx)
    have = stored_count(tw)
    assert have < n
    # a second kill while twind works through that backlog, as soon as it
    # has made progress
    tw.start(wait=False)
    wait_until(lambda: stored_count(tw) > have, 10, interval=0.002,
               what="progress on the backlog")
    tw.kill9()
    print(f"kill -9 #1 at {have} of {n} stored, #2 at {stored_count(tw)}")
    tw.start()
    wait_stored(tw, acked, 60)
    check_state_matches_history(tw, by_twin)
    # REST sees the same history as the database
    twin = next(iter(by_twin))
    rest = tw.history(twin, "seq", **{"from": "-1d", "limit": 10000})
    assert [(p["ts"], p["value"]) for p in rest] == tw.db_history(twin, "seq")
    assert tw.stop() == 0
    check_exactly_once(tw, by_twin, acked)
    assert integrity_ok(tw)


def test_poison_message_is_acknowledged_once(broker, make_twind, make_publisher):
    tw = make_twind()
    pub = make_publisher()
    T = now_ms() - 60_000
    pub.publish("plant/pz/telemetry", {"v": 1, "ts": T})
    tw.wait_version("pz", 1)
    m0 = tw.metrics()

    pub.publish("plant/pz/telemetry", b'{"v": 2, oops')
    pub.publish("plant/pz/telemetry", {"v": 3, "ts": T + 2000})
    tw.wait_version("pz", 2)
    mal0 = metric_value(m0, "twind_messages_dropped_total", reason="malformed")
    wait_until(lambda: tw.metric("twind_messages_dropped_total", reason="malformed") >= mal0 + 1,
               5, what="the malformed message counted")
    m1 = tw.metrics()
    mal1 = metric_value(m1, "twind_messages_dropped_total", reason="malformed")
    q1 = metric_value(m1, "twind_quarantined_total")
    recv1 = metric_value(m1, "twind_messages_received_total")
    assert mal1 == mal0 + 1
    assert q1 - metric_value(m0, "twind_quarantined_total") == 1
    assert recv1 == 3

    assert tw.stop() == 0
    tw.start()
    pub.publish("plant/pz/telemetry", {"v": 4, "ts": T + 3000})
    doc = tw.wait_version("pz", 3)
    assert doc["version"] == 3 and doc["reported"]["v"]["value"] == 4
    m2 = tw.metrics()
    recv2 = metric_value(m2, "twind_messages_received_total")
    mal2 = metric_value(m2, "twind_messages_dropped_total", reason="malformed")
    q2 = metric_value(m2, "twind_quarantined_total")
    # counters either restart from 0 or are kept across restarts; either way
    # the poison message must not have come back
    if recv2 > recv1:     # kept
        assert (recv2, mal2, q2) == (recv1 + 1, mal1, q1)
    else:                 # from 0: only the one good message arrived
        assert recv2 == 1 and mal2 == 0 and q2 in (0, q1), (recv2, mal2, q2)
    assert tw.stop() == 0

    # Look at twind's session in the broker directly: connect with its client
    # id (persistent session), publish a sentinel on a subscribed topic and
    # collect until it arrives. Anything queued or unacknowledged for twind
    # comes before it.
    got, connected = [], threading.Event()
    probe = mqtt.Client(client_id=tw.client_id, clean_session=False)
    probe.on_message = lambda c, u, msg: got.append((msg.topic, msg.payload))
    probe.on_connect = lambda c, u, f, rc: connected.set()
    probe.connect("127.0.0.1", broker.port)
    probe.loop_start()
    try:
        assert connected.wait(5)
        pub.publish("plant/sentinel/telemetry", b'{"s": 1}')
        wait_until(lambda: any(t == "plant/sentinel/telemetry" for t, _ in got), 5,
                   what="the sentinel through twind's session")
        assert got == [("plant/sentinel/telemetry", b'{"s": 1}')], got
    finally:
        probe.disconnect()
        probe.loop_stop()


def test_sigint_is_a_clean_stop(broker, make_twind, make_publisher):
    tw = make_twind()
    pub = make_publisher()
    pub.publish("plant/si/telemetry", {"v": 1, "ts": now_ms() - 1000})
    tw.wait_version("si", 1)
    assert tw.stop(signal.SIGINT, timeout=15) == 0
    assert tw.db_history("si", "v") and integrity_ok(tw)
