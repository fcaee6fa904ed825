"""Defects of the engine, each pinned by a test that fails until it is fixed.

Every test names its defect in its docstring and checks the behaviour the fix
is to have (the contract), not the current one:

1. an expired command must never reach the PLC, also after a reconnect;
2. nothing is handed to libmosquitto while the broker is away: after the
   reconnect only the current delta is published;
3. twind's CPU stays low while the broker is down and publications are asked
   for (the wake pipe is drained while disconnected);
4. property names of messages refused with twin_limit are not kept
   (gauge twind_property_names);
5. a redelivered message is not counted again in the rule windows;
6. a failed commit keeps the windows and `for` timers of committed updates;
7. clearing desired_not_converged keeps the operator's acknowledgement (and
   shelving);
8. a desired value of 1e999 / -1e999 is refused with 422 bad_value.

Not here: defect 9, condition-variable waits on the wall clock (an NTP step
backwards freezes the 1-s timer). libfaketime (Debian's faketime 0.9.10)
cannot show it: its pthread_cond_timedwait wrapper re-bases each absolute
deadline from the faked clock onto the real one at the moment of the call,
and the kernel then waits on the real CLOCK_REALTIME, which the faked step
never moves. A wait that is in progress when the faked clock steps back an
hour therefore ends on time (measured: a 2 s wait over a step of -1 h took
2.0 s, 40 waits of 100 ms across the step took 4.0 s), so a twind built with
REALTIME waits behaves the same under libfaketime as one built with
MONOTONIC waits. Only a real step of the system clock shows the freeze, and
that is not for a test on a shared machine.

Brokers are frozen (SIGSTOP) or killed in some tests; subscribers that must
not miss a message across a broker restart use a persistent session
(PersistentSub), so the order in which twind and the subscriber reconnect
does not matter.
"""

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt
import requests

from conftest import (CTX, DEFAULT_MODELS, PUMP_ID, Subscriber, assert_error, metric_value,
                      now_ms, parse_metric_key, parse_prometheus, patch_desired, plant_extra,
                      retained, wait_until, write_plant)

SETP_ID = "dtmi:test:Setpoint;1"


def setpoint_model():
    """A writable double without minimum or maximum: nothing but the value
    itself can refuse 1e999 there."""
    return {"@context": CTX, "@id": SETP_ID, "@type": "Interface",
            "contents": [{"@type": "Property", "name": "setpoint", "schema": "double",
                          "writable": True}]}


# --------------------------------------------------------------------------
# helpers


class PersistentSub:
    """An MQTT subscriber with a persistent session (clean_session off, fixed
    client id). The broker saves the session when it stops on SIGTERM and
    queues QoS 1 messages for it while it is disconnected, so nothing routed
    to it is missed across a broker restart, whoever reconnects first. It
    subscribes once, on its first connection: a second SUBSCRIBE would bring
    the retained messages again."""

    def __init__(self, port, topics):
        self.msgs = []
        self.lock = threading.Lock()
        self.connects = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.topics = list(topics)
        self.sync_topic = "harness/psync/" + secrets.token_hex(4)
        self.client = mqtt.Client(client_id="psub-" + secrets.token_hex(4),
                                  clean_session=False)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda c, u, mid, granted: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            self.close()
            raise AssertionError("persistent subscriber: no SUBACK within 10 s")

    def _on_connect(self, client, userdata, flags, rc):
        if rc != 0:
            return
        self.connects += 1
        self.connected.set()
        if self.connects == 1:
            client.subscribe([(t, 1) for t in self.topics + [self.sync_topic]])

    def _on_disconnect(self, client, userdata, rc):
        self.connected.clear()

    def _on_message(self, client, userdata, m):
        with self.lock:
            self.msgs.append((m.topic, m.payload, m.retain))

    def messages(self, topic=None):
        with self.lock:
            return [m for m in self.msgs if topic is None or m[0] == topic]

    def wait_connects(self, n, timeout=10):
        wait_until(lambda: self.connects >= n and self.connected.is_set(), timeout,
                   what=f"the persistent subscriber's connection #{n}")

    def sync(self, timeout=5):
        """A marker through the broker to ourselves: what the broker queued
        for us before it is in when the marker is."""
        token = secrets.token_hex(4).encode()
        self.client.publish(self.sync_topic, token, qos=1)
        wait_until(lambda: any(p == token for _, p, _ in self.messages(self.sync_topic)),
                   timeout, what="the persistent subscriber's sync marker")

    def close(self):
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001
            pass
        self.client.loop_stop()


def reconnects(tw):
    return tw.metric("twind_broker_reconnects_total")


def wait_reconnected(tw, before, timeout=10):
    """Wait until twind made a connection after `before` reconnects and is
    healthy again."""
    def ok():
        if reconnects(tw) <= before or tw.metric("twind_broker_connected") != 1:
            return False
        return tw.get("/healthz").status_code == 200
    wait_until(ok, timeout, interval=0.1, what="twind connected to the broker again")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alerts(tw, twin, rule=None):
    r = tw.get("/api/v1/alerts", params={"twin": twin})
    assert r.status_code == 200, (r.status_code, r.text)
    return [a for a in r.json()["alerts"] if rule is None or a["rule"] == rule]


def commands(tw, twin):
    r = tw.get("/api/v1/commands", params={"twin": twin})
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["commands"]


def command_ids(msgs):
    out = []
    for _, payload, _ in msgs:
        try:
            out.append(json.loads(payload).get("id"))
        except (ValueError, AttributeError):
            out.append(None)
    return out


def write_rules(path, rules):
    path.write_text(json.dumps(rules, indent=1))
    return str(path)


@contextlib.contextmanager
def write_lock_until_a_commit_fails(tw, max_hold=12):
    """Holds the database's write lock (longer than twind's 5 s busy
    timeout, so its next BEGIN or COMMIT fails) until
    twind_commit_failures_total grows, then releases it at once. Yields an
    Event set on release; bounded by max_hold seconds."""
    url = tw.url("/metrics")

    def failures():
        r = requests.get(url, timeout=2)
        return metric_value(parse_prometheus(r.text), "twind_commit_failures_total")

    before = failures()
    con = sqlite3.connect(str(tw.db), timeout=5, isolation_level=None,
                          check_same_thread=False)
    con.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release():
        deadline = time.monotonic() + max_hold
        try:
            while time.monotonic() < deadline:
                try:
                    if failures() > before:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.05)
        finally:
            con.execute("ROLLBACK")
            con.close()
            released.set()

    th = threading.Thread(target=release, daemon=True)
    th.start()
    try:
        yield released
    finally:
        th.join(max_hold + 5)


# --------------------------------------------------------------------------
# 1. an expired command reaches the PLC after a reconnect


def test_expired_command_is_never_delivered_after_reconnect(tmp_path, broker, make_twind):
    """Defect 1: a command that expired (the broker did not take it within
    [commands] ttl) is still in libmosquitto's queue, which resends its QoS 1
    messages on the reconnect: the PLC gets a command twind reports as
    `expired`. Fixed: an expired command is never delivered on
    plant/{twin}/cmd."""
    twin = "ex-1"
    topic = f"plant/{twin}/cmd"
    mdir, tfile = write_plant(tmp_path / "conf", None, [{"id": twin, "model": PUMP_ID}])
    extra = plant_extra(mdir, tfile)
    extra["mqtt"].update({"reconnect_min": "1s", "reconnect_max": "1s", "keepalive": "60s"})
    extra["commands"] = {"ttl": "2s", "timeout": "30s"}
    tw = make_twind(extra)
    sub = PersistentSub(broker.port, ["plant/+/cmd"])
    try:
        # The broker saves both sessions now: the SIGKILLed broker below comes
        # back from this file, with the subscriber's subscription in it.
        r0 = reconnects(tw)
        broker.restart()
        wait_reconnected(tw, r0)
        sub.wait_connects(2)

        broker.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            r = tw.request("POST", f"/api/v1/twins/{twin}/commands", json={"command": "stop"})
            took = time.monotonic() - t0
            assert r.status_code == 202, (r.status_code, r.text, f"took {took:.1f} s")
            cid = r.json()["id"]
            # expired by the engine's 1-s timer, ttl (2 s) after it was issued
            c = wait_until(lambda: (lambda cs: cs[0] if cs and cs[0]["id"] == cid and
                                    cs[0]["status"] == "expired" else None)(commands(tw, twin)),
                           2 + 1 + 3, what=f"command {cid} expired while the broker is frozen")
            assert c["sent_ts"] is None, c
        finally:
            broker.proc.send_signal(signal.SIGKILL)     # also ends a stopped process
            broker.proc.wait(5)
        r1 = reconnects(tw)
        broker.start()
        wait_reconnected(tw, r1, timeout=8)
        sub.wait_connects(3)
        # A resend follows the CONNACK at once; give it time to be routed.
        time.sleep(1.5)
        sub.sync()
        got = [m for m in sub.messages(topic) if command_ids([m]) == [cid]]
        assert not got, (f"the expired command {cid} was delivered on {topic} after the "
                         f"reconnect ({len(got)} times): {got}")
        assert commands(tw, twin)[0]["status"] == "expired"

        # The subscriber does see commands: a fresh one arrives.
        r = tw.request("POST", f"/api/v1/twins/{twin}/commands", json={"command": "stop"})
        assert r.status_code == 202, (r.status_code, r.text)
        fresh = r.json()["id"]
        wait_until(lambda: fresh in command_ids(sub.messages(topic)), 5,
                   what="a fresh command on the subscriber (harness check)")
    finally:
        sub.close()


# --------------------------------------------------------------------------
# 2. publications queue in libmosquitto while the broker is away


def test_no_publication_queued_while_broker_away(tmp_path, broker, make_twind):
    """Defect 2: while the broker is away every delta publication is handed
    to libmosquitto, which queues them all without bound and sends every one
    after the reconnect (50 PATCHes: about 50 messages). Fixed: nothing is
    handed to libmosquitto while disconnected; after the reconnect only the
    current delta is published (at most 2 messages on the topic)."""
    twin = "qd-1"
    topic = f"plant/{twin}/desired"
    mdir, tfile = write_plant(tmp_path / "conf", None, [{"id": twin, "model": PUMP_ID}])
    extra = plant_extra(mdir, tfile)
    extra["mqtt"].update({"reconnect_min": "500ms", "reconnect_max": "1s"})
    tw = make_twind(extra)
    sub = PersistentSub(broker.port, [topic])
    try:
        r0 = reconnects(tw)
        broker.restart()            # the subscriber's session is in the broker's file
        wait_reconnected(tw, r0)
        sub.wait_connects(2)

        broker.stop()
        wait_until(lambda: tw.metric("twind_broker_connected") == 0, 10,
                   what="twind noticing the broker is gone")
        values = [100 + 10 * i for i in range(50)]
        for v in values:
            r = patch_desired(tw, twin, {"speed": v})
            assert r.status_code == 200, (v, r.status_code, r.text)
        last = {"speed": values[-1]}
        r1 = reconnects(tw)
        broker.start()
        wait_reconnected(tw, r1)
        wait_until(lambda: (lambda m: m is not None and m.payload and m.json() == last)(
            retained(broker.port, topic)), 10, what=f"the retained delta {last}")
        sub.wait_connects(3)
        wait_until(lambda: any(p and json.loads(p) == last for _, p, _ in sub.messages(topic)),
                   5, what="the last delta on the persistent subscriber")
        time.sleep(0.3)
        sub.sync()
        live = [p for _, p, ret in sub.messages(topic) if not ret]
        assert len(live) <= 2, (f"{len(live)} publications on {topic} after the outage, want at "
                                f"most 2 (the current delta); first: {live[:3]}, last: {live[-2:]}")
    finally:
        sub.close()


# --------------------------------------------------------------------------
# 3. the wake pipe is not drained while disconnected


def test_cpu_stays_low_while_broker_down(tmp_path, broker, make_twind):
    """Defect 3: mqtt_publish writes a byte to the MQTT thread's wake pipe,
    which is read only in the connected loop; while disconnected the backoff
    pause polls that pipe, returns at once, and the thread spins on
    reconnect attempts. Fixed: twind's CPU stays low (< 0.5 s over 8 s)
    while the broker is down, even with publications requested."""
    twin = "cpu-1"
    mdir, tfile = write_plant(tmp_path / "conf", None, [{"id": twin, "model": PUMP_ID}])
    tw = make_twind(plant_extra(mdir, tfile))
    broker.kill()
    wait_until(lambda: tw.metric("twind_broker_connected") == 0, 10,
               what="twind noticing the broker is gone")
    pid = tw.proc.pid
    c0, t0 = cpu_seconds(pid), time.monotonic()
    n = 0
    while time.monotonic() < t0 + 5 and n < 60:
        r = patch_desired(tw, twin, {"speed": 100 + n})
        assert r.status_code == 200, (r.status_code, r.text)
        n += 1
        time.sleep(0.1)
    time.sleep(3)
    used, elapsed = cpu_seconds(pid) - c0, time.monotonic() - t0
    assert used < 0.5, (f"twind used {used:.2f} s of CPU in {elapsed:.1f} s with the broker "
                        f"down and {n} PATCHes (want < 0.5 s)")


# --------------------------------------------------------------------------
# 4. names interned for refused twins


def test_refused_twins_do_not_grow_property_names(make_twind, publisher):
    """Defect 4: sync_twin_for interns a message's property names before
    twin_add fails with twin_limit, and they are never freed: a stream of
    new twins past max_twins grows memory without bound. Fixed: a gauge
    twind_property_names (the number of interned names) is in /metrics and
    does not grow from refused messages."""
    tw = make_twind({"twins": {"max_twins": "2"}})
    T = now_ms()
    publisher.publish("plant/pn-a/telemetry", {"ts": T, "x": 1})
    publisher.publish("plant/pn-b/telemetry", {"ts": T, "x": 2, "y": 3})
    tw.wait_version("pn-a", 1)
    tw.wait_version("pn-b", 1)
    accepted_names = 2          # x, y
    publisher.publish_many([(f"plant/pn-new-{i}/telemetry", {"ts": T, f"only_{i}": 1})
                            for i in range(300)])
    wait_until(lambda: tw.metric("twind_messages_dropped_total", reason="twin_limit") >= 300,
               15, what="300 messages dropped with twin_limit")
    m = tw.metrics()
    keys = [k for k in m if parse_metric_key(k)[0] == "twind_property_names"]
    assert keys, "no gauge twind_property_names in /metrics"
    assert m[keys[0]] <= accepted_names, (
        f"twind_property_names is {m[keys[0]]:g} after 300 refused twins, each with a new "
        f"name; the 2 accepted twins have {accepted_names}")


# --------------------------------------------------------------------------
# 5. windows fed before the duplicate check


def test_redelivered_message_not_counted_again_in_windows(tmp_path, make_twind, publisher):
    """Defect 5: sync_apply feeds the rule windows before twin_prop_set says
    whether the value is new, so a redelivered message (same twin, ts and
    values) counts again. Fixed: a redelivery is not counted in windows."""
    rfile = write_rules(tmp_path / "rules.json",
                        [{"name": "three", "when": "count_over(x, 1h) >= 3"}])
    tw = make_twind({"rules": {"file": rfile}})
    twin = "dup-1"
    T = now_ms()
    for _ in range(3):
        publisher.publish(f"plant/{twin}/telemetry", {"ts": T, "x": 1})
    # One connection, in order: once the marker is applied, so are the copies.
    publisher.publish("plant/dup-marker/telemetry", {"ts": T, "y": 1})
    tw.wait_version("dup-marker", 1)
    assert tw.version(twin) == 1
    time.sleep(1.5)             # the rules also run on the 1-s timer
    got = alerts(tw, twin)
    assert got == [], ("one reading delivered three times counted as three in "
                       f"count_over(x, 1h): {got}")
    publisher.publish(f"plant/{twin}/telemetry", {"ts": T + 1, "x": 1})
    publisher.publish(f"plant/{twin}/telemetry", {"ts": T + 2, "x": 1})
    wait_until(lambda: alerts(tw, twin, "three"), 5,
               what="the alert 'three' after three distinct readings")


# --------------------------------------------------------------------------
# 6. a failed commit wipes every window and `for` timer


def test_failed_commit_keeps_windows(tmp_path, make_twind, publisher):
    """Defect 6: after a failed commit sync_fail reloads the twins from the
    database (twin_map_clear), which wipes every window and rule state,
    also those of committed updates. Fixed: the windows of committed
    updates survive a failed commit: x at T and T+1 committed, x at T+2
    redelivered after the failure make count_over(x, 1h) 3."""
    rfile = write_rules(tmp_path / "rules.json",
                        [{"name": "three", "when": "count_over(x, 1h) >= 3"}])
    tw = make_twind({"rules": {"file": rfile},
                     "mqtt": {"reconnect_min": "200ms", "reconnect_max": "1s"}})
    twin = "cf-1"
    T = now_ms()
    publisher.publish(f"plant/{twin}/telemetry", {"ts": T, "x": 1})
    tw.wait_version(twin, 1)
    publisher.publish(f"plant/{twin}/telemetry", {"ts": T + 1, "x": 2})
    tw.wait_version(twin, 2)
    assert alerts(tw, twin) == []
    f0 = tw.metric("twind_commit_failures_total")
    with write_lock_until_a_commit_fails(tw) as released:
        publisher.publish(f"plant/{twin}/telemetry", {"ts": T + 2, "x": 3})
        wait_until(lambda: tw.metric("twind_commit_failures_total") > f0, 12,
                   what="a failed commit while the lock is held")
        assert released.wait(5)
    tw.wait_version(twin, 3, timeout=15)            # redelivered and committed
    wait_until(lambda: alerts(tw, twin, "three"), 3,
               what="the alert 'three' (x at T, T+1 committed before the failed commit, "
                    "T+2 redelivered after it)")


def test_failed_commit_keeps_for_timer(tmp_path, make_twind, publisher):
    """Defect 6 (`for`): the reload after a failed commit also resets every
    rule's `for` timer, so a condition that has held for seconds starts
    again from zero. Fixed: a failed commit on another twin does not delay
    the raise: x > 10 for 6 s raises within about 6 + 2 s of the reading."""
    rfile = write_rules(tmp_path / "rules.json",
                        [{"name": "hot", "match": {"twins": "fh-a"}, "when": "x > 10",
                          "for": "6s"}])
    tw = make_twind({"rules": {"file": rfile},
                     "mqtt": {"reconnect_min": "200ms", "reconnect_max": "1s"}})
    publisher.publish("plant/fh-b/telemetry", {"ts": now_ms(), "x": 1})
    tw.wait_version("fh-b", 1)
    t0 = time.monotonic()
    publisher.publish("plant/fh-a/telemetry", {"ts": now_ms(), "x": 20})
    tw.wait_version("fh-a", 1)
    f0 = tw.metric("twind_commit_failures_total")
    with write_lock_until_a_commit_fails(tw) as released:
        publisher.publish("plant/fh-b/telemetry", {"ts": now_ms(), "x": 2})
        wait_until(lambda: tw.metric("twind_commit_failures_total") > f0, 12,
                   what="a failed commit on fh-b while the lock is held")
        assert released.wait(5)
    failed_at = time.monotonic() - t0
    budget = 6 + 2.5 - (time.monotonic() - t0)
    wait_until(lambda: alerts(tw, "fh-a", "hot"), max(budget, 0.5),
               what=f"the alert 'hot' within 8.5 s of x=20 on fh-a (the commit on fh-b failed "
                    f"{failed_at:.1f} s after it)")


# --------------------------------------------------------------------------
# 7. clearing desired_not_converged erases the acknowledgement


def _dnc_twind(tmp_path, make_twind, twin):
    mdir, tfile = write_plant(tmp_path / "conf", None, [{"id": twin, "model": PUMP_ID}])
    tw = make_twind(plant_extra(mdir, tfile))
    r = patch_desired(tw, twin, {"speed": 1200})
    assert r.status_code == 200, (r.status_code, r.text)
    # speed's convergenceTimeout is 2 s
    al = wait_until(lambda: [a for a in alerts(tw, twin, "desired_not_converged")
                             if a["active"]], 8, what="desired_not_converged raised")[0]
    return tw, al


def _wait_cleared(tw, twin, alert_id):
    return wait_until(lambda: [a for a in alerts(tw, twin) if a["id"] == alert_id
                               and not a["active"]], 6,
                      what=f"alert {alert_id} cleared")[0]


def test_desired_not_converged_clear_keeps_acknowledgement(tmp_path, broker, make_twind,
                                                           publisher):
    """Defect 7: check_convergence clears desired_not_converged by writing a
    whole alert row built from zero (store_alert_put), which erases the
    operator's acknowledgement. Fixed: after the clear the alert is cleared
    (active false) but still acknowledged, with its acked_ts, in REST and in
    what is published on plant/{twin}/alert."""
    twin = "nc-1"
    sub = Subscriber(broker.port, [f"plant/{twin}/alert"])
    try:
        tw, al = _dnc_twind(tmp_path, make_twind, twin)
        r = tw.request("POST", f"/api/v1/alerts/{al['id']}/ack")
        assert r.status_code == 200, (r.status_code, r.text)
        acked = r.json()
        assert acked["acknowledged"] is True and acked["acked_ts"], acked
        publisher.publish(f"plant/{twin}/telemetry", {"ts": now_ms(), "speed": 1200})
        cleared = _wait_cleared(tw, twin, al["id"])
        m = sub.wait_for(lambda m: m.json().get("active") is False, 5, topic=f"plant/{twin}/alert",
                         what="the clearing published")
        problems = [(where, {k: got.get(k) for k in ("active", "acknowledged", "acked_ts")})
                    for where, got in (("REST", cleared), ("MQTT", m.json()))
                    if got.get("acknowledged") is not True
                    or got.get("acked_ts") != acked["acked_ts"]]
        assert not problems, ("clearing desired_not_converged erased the acknowledgement "
                              f"(acked_ts {acked['acked_ts']})", problems)
    finally:
        sub.close()


def test_desired_not_converged_clear_keeps_shelving(tmp_path, broker, make_twind, publisher):
    """Defect 7 (shelve): the zeroed row written on the clear also erases a
    shelve. Fixed: the cleared alert keeps its shelved_until_ts."""
    twin = "nc-2"
    tw, al = _dnc_twind(tmp_path, make_twind, twin)
    r = tw.request("POST", f"/api/v1/alerts/{al['id']}/shelve", json={"for": "1h"})
    assert r.status_code == 200, (r.status_code, r.text)
    shelved = r.json()
    assert shelved["shelved_until_ts"], shelved
    publisher.publish(f"plant/{twin}/telemetry", {"ts": now_ms(), "speed": 1200})
    cleared = _wait_cleared(tw, twin, al["id"])
    assert cleared["shelved_until_ts"] == shelved["shelved_until_ts"], (
        "clearing desired_not_converged erased the shelve", shelved, cleared)


# --------------------------------------------------------------------------
# 8. 1e999 as a desired value


def test_desired_infinity_is_refused(tmp_path, broker, make_twind):
    """Defect 8: cJSON parses 1e999 as inf; PATCH stores it (on a property
    without a range) and publishes it as null, which the asset reads as a
    withdrawal (on a ranged one it is refused as out_of_range). Fixed: a
    non-finite number is refused with 422 bad_value and nothing changes:
    version, desired, and nothing published on plant/{twin}/desired."""
    models = dict(DEFAULT_MODELS)
    models["setpoint.json"] = setpoint_model()
    mdir, tfile = write_plant(tmp_path / "conf", models,
                              [{"id": "inf-r", "model": PUMP_ID},
                               {"id": "inf-u", "model": SETP_ID}])
    tw = make_twind(plant_extra(mdir, tfile))
    topics = ["plant/inf-r/desired", "plant/inf-u/desired"]
    sub = Subscriber(broker.port, topics)
    problems = []
    try:
        for twin, prop in (("inf-r", "speed"), ("inf-u", "setpoint")):
            for number in ("1e999", "-1e999"):
                raw = '{"%s":%s}' % (prop, number)
                before = tw.twin(twin)
                r = patch_desired(tw, twin, None, raw=raw)
                try:
                    code = r.json()["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code = None
                if r.status_code != 422 or code != "bad_value":
                    problems.append(f"{twin}: PATCH {raw}: {r.status_code} {r.text[:160]} "
                                    f"(want 422 bad_value)")
                after = tw.twin(twin)
                if (after["version"], after["desired"]) != (before["version"],
                                                            before["desired"]):
                    problems.append(f"{twin}: PATCH {raw} changed the twin: version "
                                    f"{before['version']} -> {after['version']}, desired "
                                    f"{after['desired']}")
        time.sleep(0.3)
        sub.sync()
        pubs = [m for t in topics for m in sub.messages(t)]
        if pubs:
            problems.append(f"published on the desired topic: {pubs}")
        assert not problems, "\n".join(problems)
        # an ordinary value out of range is still out_of_range
        assert_error(patch_desired(tw, "inf-r", {"speed": 9000}), 422, "out_of_range")
    finally:
        sub.close()
