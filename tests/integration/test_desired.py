"""Desired state: PATCH, the delta published retained on plant/{twin}/desired,
convergence within tolerance, the empty retained message, If-Match, refusals,
desired_not_converged alerts, and publication across a broker outage and a
restart of twind.

Model (conftest.pump_model): speed is writable, 0..3000, tolerance 5,
convergenceTimeout 2s; mode is a writable string without a timeout (the
config's converge_timeout, 3s, applies); temperature is Telemetry; serial is a
read-only Property."""

import time

import pytest

from conftest import (EventStream, LINE_ID, PUMP_ID, Subscriber, Twind, assert_error,
                      now_ms, patch_desired, plant_extra, retained, shared_plant, wait_until,
                      write_plant)

TWINS = [
    {"id": "d-line", "model": LINE_ID},
    {"id": "d-basic", "model": PUMP_ID, "parent": "d-line"},
    {"id": "d-conv", "model": PUMP_ID, "parent": "d-line"},
    {"id": "d-tol", "model": PUMP_ID, "parent": "d-line"},
    {"id": "d-part", "model": PUMP_ID},
    {"id": "d-ifm", "model": PUMP_ID},
    {"id": "d-422", "model": PUMP_ID},
    {"id": "d-null", "model": PUMP_ID},
    {"id": "d-early", "model": PUMP_ID},
    {"id": "d-aline", "model": LINE_ID},
    {"id": "d-alert", "model": PUMP_ID, "parent": "d-aline"},
    {"id": "d-alert-m", "model": PUMP_ID},
    {"id": "d-free"},
]


@pytest.fixture(scope="module")
def plant(request, tmp_path_factory):
    with shared_plant(request, tmp_path_factory, TWINS) as s:
        yield s


def topic(twin):
    return f"plant/{twin}/desired"


def ok(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def test_patch_publishes_delta_retained(plant):
    tw, port = plant.twind, plant.broker.port
    twin = "d-basic"
    v0 = tw.version(twin)
    sub = Subscriber(port, [topic(twin)])
    try:
        t0 = now_ms()
        r = patch_desired(tw, twin, {"speed": 1200, "mode": "auto"})
        t1 = now_ms()
        doc = ok(r)
        assert doc["id"] == twin
        assert doc["version"] == v0 + 1, doc
        assert r.headers.get("ETag") == f'"{v0 + 1}"', r.headers
        assert doc["delta"] == {"speed": 1200, "mode": "auto"}
        assert set(doc["desired"]) == {"speed", "mode"}
        d = doc["desired"]["speed"]
        assert d["value"] == 1200
        assert t0 - 5 <= d["ts"] <= t1 + 5, (d, t0, t1)
        assert t0 - 5 <= d["pending_since_ts"] <= t1 + 5, (d, t0, t1)
        assert d["converged_ts"] is None
        assert isinstance(d["published"], int)
        assert doc["desired"]["mode"]["value"] == "auto"
        assert doc["reported"] == {}

        m = sub.wait_for(lambda m: m.payload, 5, what="the delta on the desired topic",
                         topic=topic(twin))
        assert m.json() == {"speed": 1200, "mode": "auto"}, m
        assert m.qos == 1, m
        # a later subscriber gets it retained
        rm = retained(port, topic(twin))
        assert rm is not None, "no retained delta"
        assert rm.json() == {"speed": 1200, "mode": "auto"} and rm.qos == 1, rm

        # the document counts the publication; publishing is not a change of
        # desired, so the version stays
        doc = wait_until(lambda: (lambda d: d if d["desired"]["speed"]["published"] >= 1
                                  else None)(tw.twin(twin)), 5, what="published >= 1")
        assert doc["version"] == v0 + 1
        assert tw.get(f"/api/v1/twins/{twin}").headers.get("ETag") == f'"{v0 + 1}"'
    finally:
        sub.close()


def test_reported_reaches_desired_clears_delta_and_topic(plant):
    tw, pub, port = plant.twind, plant.pub, plant.broker.port
    twin = "d-conv"
    sub = Subscriber(port, [topic(twin)])
    try:
        v0 = tw.version(twin)
        ok(patch_desired(tw, twin, {"speed": 1500}))
        sub.wait_for(lambda m: m.payload and m.json() == {"speed": 1500}, 5,
                     what="the delta", topic=topic(twin))

        # not there yet
        T1 = now_ms() - 500
        pub.publish(f"plant/{twin}/telemetry", {"speed": 1000, "ts": T1})
        doc = tw.wait_version(twin, v0 + 2)
        assert doc["delta"] == {"speed": 1500}
        assert doc["desired"]["speed"]["converged_ts"] is None
        assert doc["desired"]["speed"]["pending_since_ts"] is not None

        # within the tolerance of 5
        T2 = now_ms()
        pub.publish(f"plant/{twin}/telemetry", {"speed": 1497, "ts": T2})
        doc = tw.wait_version(twin, v0 + 3)
        assert doc["version"] == v0 + 3
        assert doc["delta"] == {}, doc
        d = doc["desired"]["speed"]
        assert d["value"] == 1500, d
        assert d["converged_ts"] == T2, (d, T2)
        assert d["pending_since_ts"] is None, d
        assert doc["reported"]["speed"]["value"] == 1497

        # an empty message clears the topic, and nothing is retained after it
        sub.wait_for(lambda m: m.payload == b"", 5, what="the empty delta message",
                     topic=topic(twin))
        msgs = sub.messages(topic(twin))
        assert msgs[-1].payload == b"", msgs
        assert retained(port, topic(twin)) is None
    finally:
        sub.close()


def test_partly_reached_delta_is_republished(plant):
    tw, pub, port = plant.twind, plant.pub, plant.broker.port
    twin = "d-part"
    sub = Subscriber(port, [topic(twin)])
    try:
        v = ok(patch_desired(tw, twin, {"speed": 1500, "mode": "auto"}))["version"]
        sub.wait_for(lambda m: m.payload and m.json() == {"speed": 1500, "mode": "auto"}, 5,
                     what="the full delta", topic=topic(twin))
        T = now_ms()
        pub.publish(f"plant/{twin}/telemetry", {"speed": 1500, "ts": T})
        doc = tw.wait_version(twin, v + 1)
        assert doc["delta"] == {"mode": "auto"}, doc
        assert doc["desired"]["speed"]["converged_ts"] == T
        assert doc["desired"]["mode"]["converged_ts"] is None
        sub.wait_for(lambda m: m.payload and m.json() == {"mode": "auto"}, 5,
                     what="the delta with what is left", topic=topic(twin))
        m = retained(port, topic(twin))
        assert m is not None and m.json() == {"mode": "auto"}, m
        assert not [m for m in sub.messages(topic(twin)) if m.payload == b""], \
            "the topic was cleared while mode is still pending"
        pub.publish(f"plant/{twin}/telemetry", {"mode": "auto", "ts": T + 1})
        doc = tw.wait_version(twin, v + 2)
        assert doc["delta"] == {}
        sub.wait_for(lambda m: m.payload == b"", 5, what="the empty delta", topic=topic(twin))
        assert retained(port, topic(twin)) is None
    finally:
        sub.close()


def test_tolerance_boundary_and_drift(plant):
    tw, pub, port = plant.twind, plant.pub, plant.broker.port
    twin = "d-tol"
    v = ok(patch_desired(tw, twin, {"speed": 1200}))["version"]
    T = now_ms() - 5000
    pub.publish(f"plant/{twin}/telemetry", {"speed": 1194, "ts": T})        # 6 away
    doc = tw.wait_version(twin, v + 1)
    assert doc["delta"] == {"speed": 1200}, doc
    pub.publish(f"plant/{twin}/telemetry", {"speed": 1205, "ts": T + 1000})  # exactly 5
    doc = tw.wait_version(twin, v + 2)
    assert doc["delta"] == {}, doc
    assert doc["desired"]["speed"]["converged_ts"] == T + 1000
    wait_until(lambda: retained(port, topic(twin)) is None, 5, what="the topic cleared")

    # the asset drifts away again: the value is in the delta once more
    pub.publish(f"plant/{twin}/telemetry", {"speed": 1300, "ts": T + 2000})
    doc = tw.wait_version(twin, v + 3)
    assert doc["delta"] == {"speed": 1200}, doc
    m = wait_until(lambda: retained(port, topic(twin)), 5, what="the delta republished")
    assert m.json() == {"speed": 1200}


def test_if_match(plant):
    tw = plant.twind
    twin = "d-ifm"
    v = tw.version(twin)
    r = patch_desired(tw, twin, {"speed": 100}, if_match=f'"{v}"')
    assert ok(r)["version"] == v + 1 and r.headers.get("ETag") == f'"{v + 1}"'
    # the publication of that delta counts in "published": let it happen first
    before = wait_until(lambda: (lambda d: d if d["desired"]["speed"]["published"] >= 1
                                 else None)(tw.twin(twin)), 5, what="the delta published")
    r = patch_desired(tw, twin, {"speed": 200}, if_match=f'"{v}"')
    assert_error(r, 412, "version_mismatch")
    after = tw.twin(twin)
    assert after["version"] == v + 1
    assert after["desired"] == before["desired"] and after["delta"] == {"speed": 100}
    r = patch_desired(tw, twin, {"speed": 200}, if_match=f'"{v + 1}"')
    assert ok(r)["delta"] == {"speed": 200}


@pytest.mark.parametrize("body,code", [
    pytest.param({"temperature": 50}, "not_writable", id="telemetry"),
    pytest.param({"serial": "x"}, "not_writable", id="read-only-property"),
    pytest.param({"nosuch": 1}, "not_writable", id="unknown-property"),
    pytest.param({"speed": "fast"}, "wrong_type", id="string-for-double"),
    pytest.param({"speed": True}, "wrong_type", id="bool-for-double"),
    pytest.param({"mode": 5}, "wrong_type", id="number-for-string"),
    pytest.param({"speed": 3000.5}, "out_of_range", id="above-maximum"),
    pytest.param({"speed": -1}, "out_of_range", id="below-minimum"),
    pytest.param({"mode": "eco", "speed": 100, "temperature": 1}, "not_writable",
                 id="one-bad-of-three"),
    pytest.param({"mode": "eco", "speed": 5000}, "out_of_range", id="one-out-of-range"),
])
def test_patch_refused_422_changes_nothing(plant, body, code):
    tw = plant.twind
    twin = "d-422"
    if not tw.twin(twin)["desired"]:
        ok(patch_desired(tw, twin, {"speed": 800}))
    # the publication of that delta counts in "published": let it happen first
    before = wait_until(lambda: (lambda d: d if d["desired"]["speed"]["published"] >= 1
                                 else None)(tw.twin(twin)), 5, what="the delta published")
    assert_error(patch_desired(tw, twin, body), 422, code)
    after = tw.twin(twin)
    assert after["version"] == before["version"]
    assert after["desired"] == before["desired"] and after["delta"] == {"speed": 800}


def test_patch_404_and_400(plant):
    tw = plant.twind
    assert_error(patch_desired(tw, "d-no-such-twin", {"speed": 1}), 404, "not_found")
    v = tw.version("d-basic")
    for raw in ("[1, 2]", '"speed"', "12", "null", "{not json", ""):
        assert_error(patch_desired(tw, "d-basic", None, raw=raw), 400, "bad_request")
    assert tw.version("d-basic") == v


def test_null_removes_and_same_value_changes_nothing(plant):
    tw, port = plant.twind, plant.broker.port
    twin = "d-null"
    v = ok(patch_desired(tw, twin, {"speed": 1200, "mode": "auto"}))["version"]
    doc = ok(patch_desired(tw, twin, {"speed": 1200, "mode": None}))
    assert doc["version"] == v + 1, doc
    assert set(doc["desired"]) == {"speed"} and doc["delta"] == {"speed": 1200}
    wait_until(lambda: (lambda m: m is not None and m.json() == {"speed": 1200})(
        retained(port, topic(twin))), 5, what="the delta without mode")

    # nothing to change: no new version
    assert ok(patch_desired(tw, twin, {"mode": None}))["version"] == v + 1
    assert ok(patch_desired(tw, twin, {"speed": 1200}))["version"] == v + 1
    assert tw.version(twin) == v + 1

    doc = ok(patch_desired(tw, twin, {"speed": None}))
    assert doc["version"] == v + 2
    assert doc["desired"] == {} and doc["delta"] == {}
    wait_until(lambda: retained(port, topic(twin)) is None, 5, what="the topic cleared")

    # and it can come back
    doc = ok(patch_desired(tw, twin, {"speed": 900}))
    assert doc["version"] == v + 3 and doc["delta"] == {"speed": 900}
    wait_until(lambda: (lambda m: m is not None and m.json() == {"speed": 900})(
        retained(port, topic(twin))), 5, what="the new delta")


def test_desired_already_reported_is_not_pending(plant):
    tw, pub, port = plant.twind, plant.pub, plant.broker.port
    twin = "d-early"
    pub.publish(f"plant/{twin}/telemetry", {"speed": 700, "ts": now_ms() - 1000})
    tw.wait_version(twin, 1)
    doc = ok(patch_desired(tw, twin, {"speed": 702}))
    assert doc["delta"] == {}, doc
    assert doc["desired"]["speed"]["pending_since_ts"] is None
    assert doc["desired"]["speed"]["converged_ts"] is not None
    time.sleep(0.3)
    assert retained(port, topic(twin)) is None


def alert_of(doc):
    return [a for a in doc["alerts"] if a["rule"] == "desired_not_converged"]


def test_desired_not_converged_alert_raised_and_cleared(plant):
    tw, pub, port = plant.twind, plant.pub, plant.broker.port
    a, b = "d-alert", "d-alert-m"       # speed (2 s in the model), mode (3 s config)
    sub = Subscriber(port, [f"plant/{a}/alert", f"plant/{b}/alert"])
    ev = EventStream(tw.http_port, "/api/v1/events?twin=d-alert*")
    try:
        assert ev.wait_head() == 200
        da = ok(patch_desired(tw, a, {"speed": 2000}))
        db = ok(patch_desired(tw, b, {"mode": "eco"}))
        pend_a = da["desired"]["speed"]["pending_since_ts"]
        pend_b = db["desired"]["mode"]["pending_since_ts"]
        assert tw.twin(a)["alerts"] == []

        doc = wait_until(lambda: (lambda d: d if alert_of(d) else None)(tw.twin(a)), 6,
                         what=f"desired_not_converged on {a}")
        (al,) = doc["alerts"]
        assert al["rule"] == "desired_not_converged" and al["severity"] == "warning"
        assert al["active"] is True and al["twin"] == a
        assert al["acknowledged"] is False
        assert al["cleared_ts"] is None and isinstance(al["id"], int)
        assert isinstance(al["message"], str) and al["message"]
        assert al["value"] == 2000
        # not before the model's convergenceTimeout, and by the next tick or so
        assert 2000 <= al["raised_ts"] - pend_a <= 4500, (al, pend_a)
        assert doc["active_alerts"] == 1
        assert doc["delta"] == {"speed": 2000}
        line = tw.twin("d-aline")
        assert line["rollup"]["active_alerts"] == 1, line["rollup"]
        entry = [t for t in tw.get("/api/v1/twins", params={"parent": "d-aline"})
                 .json()["twins"] if t["id"] == a][0]
        assert entry["active_alerts"] == 1

        m = sub.wait_for(lambda m: m.json().get("active") is True, 5,
                         what="the raised alert on MQTT", topic=f"plant/{a}/alert")
        pa = m.json()
        assert pa["id"] == al["id"] and pa["rule"] == "desired_not_converged"
        assert pa["twin"] == a and pa["severity"] == "warning"
        ev.wait_event(lambda e: e.data["twin"] == a and e.data["active"] is True, 5,
                      etype="alert", what="the raised alert on the event stream")

        # mode has no convergenceTimeout: the config's converge_timeout (3 s)
        doc_b = wait_until(lambda: (lambda d: d if alert_of(d) else None)(tw.twin(b)), 6,
                           what=f"desired_not_converged on {b}")
        (alb,) = doc_b["alerts"]
        assert alb["value"] == "eco"
        assert 3000 <= alb["raised_ts"] - pend_b <= 5500, (alb, pend_b)
        assert doc_b["active_alerts"] == 1

        # reached: the alert clears, is published again and leaves the document
        pub.publish(f"plant/{a}/telemetry", {"speed": 2001})
        m = sub.wait_for(lambda m: m.json().get("active") is False, 5,
                         what="the cleared alert on MQTT", topic=f"plant/{a}/alert")
        pc = m.json()
        assert pc["id"] == al["id"] and pc["rule"] == "desired_not_converged"
        assert isinstance(pc["cleared_ts"], int) and pc["cleared_ts"] >= pc["raised_ts"]
        doc = wait_until(lambda: (lambda d: d if d["active_alerts"] == 0 else None)(tw.twin(a)),
                         5, what=f"{a} without active alerts")
        assert doc["alerts"] == [] and doc["delta"] == {}
        assert tw.twin("d-aline")["rollup"]["active_alerts"] == 0
        ev.wait_event(lambda e: e.data["twin"] == a and e.data["active"] is False, 5,
                      etype="alert", what="the cleared alert on the event stream")

        pub.publish(f"plant/{b}/telemetry", {"mode": "eco"})
        sub.wait_for(lambda m: m.json().get("active") is False, 5,
                     what="the cleared alert of mode", topic=f"plant/{b}/alert")
        wait_until(lambda: tw.twin(b)["alerts"] == [], 5, what=f"{b} without alerts")
        assert tw.twin(b)["active_alerts"] == 0
        # one raise and one clear each, no repeats
        for t in (a, b):
            states = [m.json()["active"] for m in sub.messages(f"plant/{t}/alert")]
            assert states == [True, False], (t, states)
    finally:
        ev.close()
        sub.close()


# --------------------------------------------------------------------------
# the delta reaches the broker whatever happens to it, or to twind

def outage_twind(tmp_path, broker, stack):
    mdir, tfile = write_plant(tmp_path / "conf", None, [{"id": "o-1", "model": PUMP_ID}])
    tw = Twind(tmp_path / "twind", broker, plant_extra(mdir, tfile))
    stack.twinds.append(tw)
    return tw.start()


def broker_lost(tw):
    return tw.metric("twind_broker_connected") == 0


def test_delta_published_after_broker_outage(tmp_path, broker, stack):
    tw = outage_twind(tmp_path, broker, stack)
    broker.stop()
    wait_until(lambda: broker_lost(tw), 10, what="twind noticing the broker is gone")
    doc = ok(patch_desired(tw, "o-1", {"speed": 1000, "mode": "far"}))
    assert doc["delta"] == {"speed": 1000, "mode": "far"}
    time.sleep(0.3)
    broker.start()
    m = wait_until(lambda: retained(broker.port, topic("o-1")), 15,
                   what="the delta on the broker after the outage")
    assert m.json() == {"speed": 1000, "mode": "far"}
    wait_until(lambda: tw.twin("o-1")["desired"]["speed"]["published"] >= 1, 5,
               what="published counted")


def test_delta_survives_twind_restart(tmp_path, broker, stack):
    """Three rounds (the delta must arrive every time, not by luck of timing)."""
    tw = outage_twind(tmp_path, broker, stack)
    for speed in (1300, 1400, 1500):
        broker.stop()
        wait_until(lambda: broker_lost(tw), 10, what="twind noticing the broker is gone")
        ok(patch_desired(tw, "o-1", {"speed": speed}))
        assert tw.stop() == 0, tw.log()[-2000:]
        broker.start()
        tw.start()
        m = wait_until(lambda: (lambda m: m if m is not None and m.payload else None)(
            retained(broker.port, topic("o-1"))), 8,
            what=f"the retained delta {{speed: {speed}}} after twind's restart")
        assert m.json() == {"speed": speed}, m
        doc = tw.twin("o-1")
        assert doc["delta"] == {"speed": speed} and doc["desired"]["speed"]["value"] == speed
