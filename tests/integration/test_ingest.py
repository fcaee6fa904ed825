"""MQTT telemetry in -> twin documents, versions, history; hostile input.

One broker and one twind for the whole module; every test uses its own twin
ids, so the tests do not disturb one another."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from conftest import metric_value, now_ms, wait_until


def iso(ms, offset_h=0, frac=False):
    tz = timezone(timedelta(hours=offset_h))
    d = datetime.fromtimestamp(ms / 1000, tz)
    s = d.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        s += ".%03d" % (ms % 1000)
    return s + ("Z" if offset_h == 0 else d.strftime("%z")[:3] + ":" + d.strftime("%z")[3:])


def test_object_telemetry_becomes_twin_document(shared):
    tw, pub = shared.twind, shared.pub
    t1 = now_ms() - 60_000
    pub.publish("plant/obj-1/telemetry",
                {"temp": 71.2, "running": True, "mode": "auto", "count": 5, "ts": t1})
    doc = tw.wait_version("obj-1", 1)
    assert doc["id"] == "obj-1"
    assert doc["version"] == 1
    assert doc["model"] == "dtmi:twind:Any;1" and doc["parent"] is None
    assert doc["children"] == []
    assert doc["status"] in ("online", "stale", "offline")
    rep = doc["reported"]
    assert set(rep) == {"temp", "running", "mode", "count"}, rep
    assert rep["temp"]["value"] == 71.2 and rep["temp"]["ts"] == t1
    assert rep["running"]["value"] is True and rep["running"]["ts"] == t1
    assert rep["mode"]["value"] == "auto" and rep["mode"]["ts"] == t1
    assert rep["count"]["value"] == 5 and not isinstance(rep["count"]["value"], bool)
    r = tw.get("/api/v1/twins/obj-1")
    assert r.headers.get("ETag") == '"1"'
    assert r.headers.get("Content-Type", "").startswith("application/json")

    pub.publish("plant/obj-1/telemetry", {"temp": 72.5, "running": False, "ts": t1 + 1000})
    doc = tw.wait_version("obj-1", 2)
    assert doc["version"] == 2
    rep = doc["reported"]
    assert rep["temp"] == {**rep["temp"], "value": 72.5, "ts": t1 + 1000}
    assert rep["running"]["value"] is False and rep["running"]["ts"] == t1 + 1000
    # a property the second message did not carry keeps its value and time
    assert rep["mode"]["value"] == "auto" and rep["mode"]["ts"] == t1
    assert tw.get("/api/v1/twins/obj-1").headers.get("ETag") == '"2"'

    # history keeps the types too
    h = tw.history("obj-1", "running", **{"from": t1 - 1, "to": t1 + 2000})
    assert h == [{"ts": t1, "value": True}, {"ts": t1 + 1000, "value": False}]
    assert all(type(p["value"]) is bool for p in h)
    assert tw.history("obj-1", "mode", **{"from": t1 - 1, "to": t1 + 2000}) == \
        [{"ts": t1, "value": "auto"}]

    # the list
    r = tw.get("/api/v1/twins")
    assert r.status_code == 200
    twins = r.json()["twins"]
    ids = [t["id"] for t in twins]
    assert ids == sorted(ids)
    (entry,) = [t for t in twins if t["id"] == "obj-1"]
    for key in ("id", "model", "parent", "status", "last_seen_ts", "version"):
        assert key in entry, (key, entry)
    assert entry["version"] == 2
    assert entry["model"] == "dtmi:twind:Any;1" and entry["parent"] is None
    assert entry["status"] in ("online", "stale", "offline")
    assert isinstance(entry["last_seen_ts"], int)


def test_single_value_topics_and_property_names(shared):
    tw, pub = shared.twind, shared.pub
    before = now_ms()
    pub.publish("plant/sv-1/telemetry/speed", b"71.2")
    pub.publish("plant/sv-1/telemetry/on", b"true")
    pub.publish("plant/sv-1/telemetry/label", b'"hello world"')
    pub.publish("plant/sv-1/telemetry/bearing/temp", b"65")
    doc = tw.wait_version("sv-1", 4)
    after = now_ms()
    assert doc["version"] == 4
    rep = doc["reported"]
    assert set(rep) == {"speed", "on", "label", "bearing.temp"}, rep
    assert rep["speed"]["value"] == 71.2
    assert rep["on"]["value"] is True
    assert rep["label"]["value"] == "hello world"
    assert rep["bearing.temp"]["value"] == 65
    # no ts in the message: the arrival time is used
    for p in rep.values():
        assert before - 1000 <= p["ts"] <= after + 1000, (p, before, after)


def test_nested_object_flattens(shared):
    tw, pub = shared.twind, shared.pub
    t = now_ms() - 30_000
    pub.publish("plant/nest-1/telemetry",
                {"bearing": {"temp": 70, "vib": {"x": 1.5, "ok": True}}, "speed": 3, "ts": t})
    doc = tw.wait_version("nest-1", 1)
    rep = doc["reported"]
    assert set(rep) == {"bearing.temp", "bearing.vib.x", "bearing.vib.ok", "speed"}, rep
    assert rep["bearing.temp"]["value"] == 70 and rep["bearing.temp"]["ts"] == t
    assert rep["bearing.vib.x"]["value"] == 1.5
    assert rep["bearing.vib.ok"]["value"] is True
    # the single-value form addresses the same property
    pub.publish("plant/nest-1/telemetry/bearing/temp", b"71")
    doc = tw.wait_version("nest-1", 2)
    assert doc["version"] == 2
    assert doc["reported"]["bearing.temp"]["value"] == 71
    assert set(doc["reported"]) == {"bearing.temp", "bearing.vib.x", "bearing.vib.ok", "speed"}
    assert tw.history("nest-1", "bearing.temp", **{"from": t - 1})[0] == {"ts": t, "value": 70}


def test_rfc3339_ts_and_out_of_order(shared):
    tw, pub = shared.twind, shared.pub
    T = (now_ms() - 300_000) // 1000 * 1000          # whole second, 5 min ago
    pub.publish("plant/ts-1/telemetry", {"p": 1, "ts": iso(T)})
    doc = tw.wait_version("ts-1", 1)
    assert doc["reported"]["p"] == {**doc["reported"]["p"], "value": 1, "ts": T}

    T2 = T + 2000
    pub.publish("plant/ts-1/telemetry", {"p": 2, "ts": T2})
    doc = tw.wait_version("ts-1", 2)
    assert doc["reported"]["p"]["value"] == 2 and doc["reported"]["p"]["ts"] == T2

    # older than the stored reported ts: history yes, reported and version no
    pub.publish("plant/ts-1/telemetry", {"p": 0, "ts": iso(T2 - 60_000)})
    rng = {"from": T2 - 120_000, "to": T2 + 60_000}
    wait_until(lambda: len(tw.history("ts-1", "p", **rng)) == 3, 10,
               what="the older point in history")
    assert tw.history("ts-1", "p", **rng) == [
        {"ts": T2 - 60_000, "value": 0}, {"ts": T, "value": 1}, {"ts": T2, "value": 2}]
    doc = tw.twin("ts-1")
    assert doc["version"] == 2
    assert doc["reported"]["p"]["value"] == 2 and doc["reported"]["p"]["ts"] == T2

    # a message that is old for one property and new for another: only the
    # new one changes, the version grows by one
    pub.publish("plant/ts-1/telemetry", {"p": 5, "q": 7, "ts": T2 - 30_000})
    doc = tw.wait_version("ts-1", 3)
    assert doc["version"] == 3
    assert doc["reported"]["p"]["value"] == 2 and doc["reported"]["p"]["ts"] == T2
    assert doc["reported"]["q"]["value"] == 7 and doc["reported"]["q"]["ts"] == T2 - 30_000
    assert {"ts": T2 - 30_000, "value": 5} in tw.history("ts-1", "p", **rng)

    # a redelivered duplicate changes nothing; the next real update is +1
    pub.publish("plant/ts-1/telemetry", {"p": 2, "ts": T2})
    pub.publish("plant/ts-1/telemetry", {"p": 3, "ts": T2 + 1000})
    doc = tw.wait_version("ts-1", 4)
    assert doc["version"] == 4
    assert doc["reported"]["p"]["value"] == 3
    pts = tw.history("ts-1", "p", **rng)
    assert [p["ts"] for p in pts] == sorted({p["ts"] for p in pts}), pts
    assert [p for p in pts if p["ts"] == T2] == [{"ts": T2, "value": 2}]


def test_rfc3339_fraction_and_offset(shared):
    tw, pub = shared.twind, shared.pub
    T = now_ms() - 200_000
    T = T - T % 1000 + 234                             # .234 s
    pub.publish("plant/ts-2/telemetry", {"p": 1, "ts": iso(T, offset_h=2, frac=True)})
    doc = tw.wait_version("ts-2", 1)
    assert doc["reported"]["p"]["ts"] == T, (iso(T, 2, True), doc["reported"]["p"])


# --------------------------------------------------------------------------
# hostile input

def nested(depth, leaf="1"):
    """`depth` nested objects: {"a":{"a":...{"a":1}}}."""
    return ('{"a":' * depth + leaf + "}" * depth).encode()


def sized(n, a=999):
    """A valid JSON object of exactly n bytes with one value, padded with
    whitespace: {"a":999    ...    } (no long string: a daemon may bound
    string values on their own)."""
    head = b'{"a":%d' % a
    return head + b" " * (n - len(head) - 1) + b"}"


DEEP = nested(40)
BIG = json.dumps({"a": 999, "blob": "x" * 200_000}).encode()
MANY = json.dumps({f"p{i}": i for i in range(300)}).encode()

# (id, reason, topic ({twin} is the test's twin), payload)
HOSTILE = [
    ("truncated-json", "malformed", "plant/{twin}/telemetry", b'{"a": 999,'),
    ("not-json", "malformed", "plant/{twin}/telemetry", b"hello"),
    ("array-on-object-topic", "malformed", "plant/{twin}/telemetry", b"[999, 1]"),
    ("number-on-object-topic", "malformed", "plant/{twin}/telemetry", b"999"),
    ("bare-word-on-value-topic", "malformed", "plant/{twin}/telemetry/a", b"hello"),
    ("200KB", "too_large", "plant/{twin}/telemetry", BIG),
    ("65537-bytes", "too_large", "plant/{twin}/telemetry", sized(65537)),
    ("depth-40", "too_deep", "plant/{twin}/telemetry", DEEP),
    ("depth-34", "too_deep", "plant/{twin}/telemetry", nested(34)),
    ("300-values", "too_many_properties", "plant/{twin}/telemetry", MANY),
    ("257-values", "too_many_properties", "plant/{twin}/telemetry",
     json.dumps({"a": 999, **{f"p{i}": i for i in range(256)}}).encode()),
    ("twin-id-dollar", "bad_twin_id", "plant/bad$id/telemetry", b'{"a": 999}'),
    ("twin-id-space", "bad_twin_id", "plant/bad id/telemetry", b'{"a": 999}'),
    ("twin-id-200-chars", "bad_twin_id", "plant/" + "a" * 200 + "/telemetry", b'{"a": 999}'),
    ("twin-id-129-chars", "bad_twin_id", "plant/" + "b" * 129 + "/telemetry", b'{"a": 999}'),
    ("property-space", "bad_property", "plant/{twin}/telemetry", b'{"a": 999, "bad prop": 1}'),
    ("property-129-chars", "bad_property", "plant/{twin}/telemetry",
     json.dumps({"a": 999, "p" * 129: 1}).encode()),
    ("property-dollar-on-value-topic", "bad_property", "plant/{twin}/telemetry/bad$prop", b"1"),
    ("null-value", "bad_value", "plant/{twin}/telemetry", b'{"a": 999, "b": null}'),
    ("array-value", "bad_value", "plant/{twin}/telemetry", b'{"a": 999, "b": [1, 2]}'),
    ("null-on-value-topic", "bad_value", "plant/{twin}/telemetry/a", b"null"),
    ("ts-garbage", "bad_ts", "plant/{twin}/telemetry", b'{"a": 999, "ts": "yesterday"}'),
    ("ts-fraction", "bad_ts", "plant/{twin}/telemetry", b'{"a": 999, "ts": 1700000000000.5}'),
    ("ts-bool", "bad_ts", "plant/{twin}/telemetry", b'{"a": 999, "ts": true}'),
    ("ts-2h-future", "bad_ts", "plant/{twin}/telemetry", None),  # built at run time
    ("empty-object", "no_values", "plant/{twin}/telemetry", b"{}"),
    ("only-ts", "no_values", "plant/{twin}/telemetry", None),     # built at run time
]


def dropped(metrics):
    return {key: v for key, v in metrics.items() if key.startswith("twind_messages_dropped_total")}


@pytest.mark.parametrize("reason,topic,payload",
                         [pytest.param(r, t, p, id=i) for i, r, t, p in HOSTILE])
def test_hostile_message_dropped_and_counted(shared, request, reason, topic, payload):
    tw, pub = shared.twind, shared.pub
    twin = "h-" + request.node.callspec.id
    T = now_ms() - 60_000
    if payload is None and reason == "bad_ts":
        payload = json.dumps({"a": 999, "ts": now_ms() + 2 * 3600_000}).encode()
    elif payload is None:
        payload = json.dumps({"ts": T + 500}).encode()

    pub.publish(f"plant/{twin}/telemetry", {"a": 1, "ts": T})
    tw.wait_version(twin, 1)
    ids_before = [t["id"] for t in tw.get("/api/v1/twins").json()["twins"]]
    m0 = tw.metrics()

    pub.publish(topic.format(twin=twin), payload)
    pub.publish(f"plant/{twin}/telemetry", {"a": 2, "ts": T + 1000})
    doc = tw.wait_version(twin, 2)

    want = metric_value(m0, "twind_messages_dropped_total", reason=reason) + 1
    wait_until(lambda: tw.metric("twind_messages_dropped_total", reason=reason) >= want, 5,
               what=f"dropped{{reason={reason}}} == {want}")
    m1 = tw.metrics()
    # exactly this reason, exactly once
    d0, d1 = dropped(m0), dropped(m1)
    changed = {k: (d0.get(k, 0.0), v) for k, v in d1.items() if v != d0.get(k, 0.0)}
    assert list(changed.values()) == [(want - 1, want)] and \
        metric_value(m1, "twind_messages_dropped_total", reason=reason) == want, changed

    # no twin changed: this one only by the good message, and no twin appeared
    assert doc["version"] == 2
    assert set(doc["reported"]) == {"a"}, doc["reported"]
    assert doc["reported"]["a"]["value"] == 2 and doc["reported"]["a"]["ts"] == T + 1000
    assert [p["value"] for p in tw.history(twin, "a", **{"from": T - 1000})] == [1, 2]
    ids_after = [t["id"] for t in tw.get("/api/v1/twins").json()["twins"]]
    assert ids_after == ids_before
    assert metric_value(m1, "twind_twins") == metric_value(m0, "twind_twins")


def test_limits_are_inclusive(shared):
    """Right at each limit a message is still applied."""
    tw, pub = shared.twind, shared.pub
    T = now_ms() - 50_000
    long_id = "L" * 128
    pub.publish(f"plant/{long_id}/telemetry", {"a": 1, "ts": T})
    pub.publish("plant/Az09_.:-x/telemetry", {"a": 1, "ts": T})
    assert tw.wait_version(long_id, 1)["reported"]["a"]["value"] == 1
    assert tw.wait_version("Az09_.:-x", 1)["reported"]["a"]["value"] == 1

    twin = "lim-1"
    pub.publish(f"plant/{twin}/telemetry", {"p" * 128: 1, "ts": T})          # 128-char name
    assert "p" * 128 in tw.wait_version(twin, 1)["reported"]
    payload = sized(65536, a=2)
    assert len(payload) == 65536
    pub.publish(f"plant/{twin}/telemetry", payload)
    assert tw.wait_version(twin, 2)["reported"]["a"]["value"] == 2
    pub.publish(f"plant/{twin}/telemetry", nested(32, leaf="3"))
    doc = tw.wait_version(twin, 3)
    assert doc["reported"][".".join(["a"] * 32)]["value"] == 3
    pub.publish(f"plant/{twin}/telemetry", {f"v{i}": i for i in range(256)})
    doc = tw.wait_version(twin, 4)
    assert all(doc["reported"][f"v{i}"]["value"] == i for i in range(256))
    future = now_ms() + 30 * 60_000
    pub.publish(f"plant/{twin}/telemetry", {"f": 1, "ts": future})
    doc = tw.wait_version(twin, 5)
    assert doc["reported"]["f"] == {**doc["reported"]["f"], "value": 1, "ts": future}
    assert doc["version"] == 5


def test_hostile_burst_does_not_stall(shared):
    tw, pub = shared.twind, shared.pub
    T = now_ms() - 120_000
    bad = [b'{"a":', DEEP, b"[1]", b"{}", BIG]
    msgs = []
    for i in range(100):
        msgs.append(("plant/burst-1/telemetry", bad[i % len(bad)]))
        msgs.append(("plant/burst-1/telemetry", json.dumps({"a": i, "ts": T + i}).encode()))
    pub.publish_many(msgs)
    doc = tw.wait_version("burst-1", 100, timeout=15)
    assert doc["version"] == 100
    assert doc["reported"]["a"]["value"] == 99
    assert len(tw.history("burst-1", "a", **{"from": T - 1})) == 100


def test_metrics_count_messages(shared):
    tw, pub = shared.twind, shared.pub
    m0 = tw.metrics()
    for name in ("twind_messages_received_total", "twind_updates_applied_total",
                 "twind_values_stored_total", "twind_ring_depth_bytes",
                 "twind_ring_capacity_bytes", "twind_commit_batch_size_sum",
                 "twind_commit_batch_size_count", "twind_commit_seconds_sum",
                 "twind_commit_seconds_count", "twind_commit_failures_total",
                 "twind_twins", "twind_broker_connected", "twind_broker_reconnects_total",
                 "twind_quarantined_total"):
        assert any(k == name or k.startswith(name + "{") for k in m0), f"{name} missing"
    assert metric_value(m0, "twind_commit_batch_size_bucket", le="+Inf") == \
        metric_value(m0, "twind_commit_batch_size_count")
    assert metric_value(m0, "twind_commit_seconds_bucket", le="+Inf") == \
        metric_value(m0, "twind_commit_seconds_count")
    assert metric_value(m0, "twind_broker_connected") == 1
    assert metric_value(m0, "twind_ring_capacity_bytes") > 0

    T = now_ms() - 10_000
    pub.publish("plant/met-1/telemetry", {"a": 1, "b": True, "c": "x", "ts": T})
    tw.wait_version("met-1", 1)
    wait_until(lambda: tw.metric("twind_values_stored_total")
               >= metric_value(m0, "twind_values_stored_total") + 3, 5)
    m1 = tw.metrics()

    def d(name):
        return metric_value(m1, name) - metric_value(m0, name)
    assert d("twind_messages_received_total") == 1
    assert d("twind_updates_applied_total") == 1
    assert d("twind_values_stored_total") == 3
    assert d("twind_twins") == 1
    assert d("twind_commit_batch_size_count") >= 1
    assert d("twind_commit_failures_total") == 0

    r = tw.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
