"""Commands until convergence, through MQTT and REST: a command is done when
the reported state shows its effect (a value reached, a target from its
params, a property that changes), not when the asset says so; the whole path
with its times; not converged at the deadline; watches that survive a
restart; --check of the extension. A fake PLC bridge written here answers
and reports as the test tells it."""

import pytest

from conftest import (CTX, Bridge, EventStream, check_models, metric_value, now_ms,
                      plant_extra, wait_until, write_plant)

MODEL = "dtmi:test:Drive;1"


def drive(**effects):
    fx = {"stop": {"property": "speed", "value": 0, "tolerance": 1, "timeout": "2s"},
          "set": {"property": "rate", "param": "rate", "timeout": "2s"},
          "toggle": {"property": "state", "timeout": "2s"}}
    fx.update(effects)
    return {"@context": CTX, "@id": MODEL, "@type": "Interface",
            "contents": [
                {"@type": "Telemetry", "name": "speed", "schema": "double"},
                {"@type": "Property", "name": "rate", "schema": "double", "writable": True,
                 "tolerance": 0.5},
                {"@type": "Property", "name": "state", "schema": "string"},
                {"@type": "Command", "name": "plain"},
            ] + [{"@type": "Command", "name": n, "effect": e} for n, e in fx.items()]}


@pytest.fixture
def plant(tmp_path, make_twind, make_publisher):
    mdir, tfile = write_plant(tmp_path / "plant", {"drive.json": drive()},
                              [{"id": f"d-{i}", "model": MODEL} for i in range(6)])
    tw = make_twind(extra=plant_extra(mdir, tfile))
    return tw, make_publisher()


def post(tw, twin, command, params=None):
    body = {"command": command}
    if params is not None:
        body["params"] = params
    r = tw.request("POST", f"/api/v1/twins/{twin}/commands", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def command(tw, cid):
    r = tw.get("/api/v1/commands")
    assert r.status_code == 200, r.text
    return next(c for c in r.json()["commands"] if c["id"] == cid)


def wait_effect(tw, cid, effect, timeout=5):
    return wait_until(lambda: (lambda c: c if c["effect"] == effect else None)(command(tw, cid)),
                      timeout, what=f"{cid}: effect {effect}")


def report(pub, twin, tw=None, **values):
    """Publishes values; with `tw`, waits until twind has applied them."""
    ts = now_ms()
    pub.publish(f"plant/{twin}/telemetry", {"ts": ts, **values})
    if tw is not None:
        wait_until(lambda: all(((tw.twin(twin) or {}).get("reported", {}).get(k) or {})
                               .get("ts") == ts for k in values), 5, what=f"{twin} at {ts}")


def test_converged_when_the_state_shows_it(plant, broker):
    tw, pub = plant
    report(pub, "d-0", tw, speed=1450)
    events = EventStream(tw.http_port, "/api/v1/events?twin=d-0")
    assert events.wait_head() == 200
    bridge = Bridge(broker.port, report=lambda c: {"speed": 0.4})
    try:
        c = post(tw, "d-0", "stop")
        assert c["effect"] == "waiting" and c["effect_deadline_ts"] >= c["issued_ts"] + 2000, c
        c = wait_effect(tw, c["id"], "converged")
        # the whole path, in order, with times
        assert c["status"] == "done", c
        assert c["issued_ts"] <= c["sent_ts"] <= c["effect_ts"], c
        assert c["acked_ts"] is not None and c["effect_deadline_ts"] is None, c
        ev = events.wait_event(lambda e: e.data.get("id") == c["id"] and
                               e.data.get("effect") == "converged", 5, etype="command")
        assert ev.data["effect_ts"] == c["effect_ts"], ev
    finally:
        bridge.close()
        events.close()
    assert metric_value(tw.metrics(), "twind_commands_effect_total", outcome="converged") == 1


def test_acknowledged_but_not_converged(plant, broker):
    """The asset says done, the speed says otherwise: not converged at the deadline."""
    tw, pub = plant
    report(pub, "d-1", tw, speed=1450)
    bridge = Bridge(broker.port, report=lambda c: {"speed": 1200})
    try:
        c = post(tw, "d-1", "stop")
        wait_until(lambda: command(tw, c["id"])["status"] == "done", 5, what="done")
        assert command(tw, c["id"])["effect"] == "waiting"
        c = wait_effect(tw, c["id"], "not_converged", timeout=5)
        assert c["effect_ts"] >= c["issued_ts"] + 2000, c
    finally:
        bridge.close()
    m = tw.metrics()
    assert metric_value(m, "twind_commands_effect_total", outcome="not_converged") == 1
    assert metric_value(m, "twind_commands_watched") == 0


def test_target_from_params_within_tolerance(plant, broker):
    tw, pub = plant
    bridge = Bridge(broker.port, report=lambda c: {"rate": c["params"]["rate"] - 0.3})
    try:
        c = post(tw, "d-2", "set", {"rate": 12})
        wait_effect(tw, c["id"], "converged")
        # off by more than the model's tolerance: not converged
        bridge.report = lambda c: {"rate": c["params"]["rate"] - 0.8}
        c = post(tw, "d-2", "set", {"rate": 20})
        wait_effect(tw, c["id"], "not_converged")
    finally:
        bridge.close()


def test_a_change_is_the_effect(plant, broker):
    tw, pub = plant
    report(pub, "d-3", tw, state="a")
    bridge = Bridge(broker.port)
    try:
        c = post(tw, "d-3", "toggle")
        report(pub, "d-3", state="a")       # the same value: not yet
        wait_until(lambda: command(tw, c["id"])["status"] == "done", 5, what="done")
        assert command(tw, c["id"])["effect"] == "waiting"
        report(pub, "d-3", state="b")
        wait_effect(tw, c["id"], "converged")
        # a command whose model names no effect has none
        p = post(tw, "d-3", "plain")
        wait_until(lambda: command(tw, p["id"])["status"] == "done", 5, what="done")
        assert command(tw, p["id"])["effect"] is None
    finally:
        bridge.close()


def test_the_state_counts_not_the_answer(plant, broker):
    """A bridge that rejects, but the state shows the effect (someone else did it)."""
    tw, pub = plant
    report(pub, "d-4", tw, speed=900)
    bridge = Bridge(broker.port, answer="rejected", report=lambda c: {"speed": 0})
    try:
        c = post(tw, "d-4", "stop")
        c = wait_effect(tw, c["id"], "converged")
        assert c["status"] == "rejected", c
    finally:
        bridge.close()


def test_watch_survives_a_restart(plant, broker):
    tw, pub = plant
    report(pub, "d-5", tw, speed=1450)
    bridge = Bridge(broker.port)          # answers, reports nothing
    try:
        c = post(tw, "d-5", "stop")
        wait_until(lambda: command(tw, c["id"])["status"] == "done", 5, what="done")
    finally:
        bridge.close()
    tw.kill9()
    tw.start()
    assert metric_value(tw.metrics(), "twind_commands_watched") == 1
    report(pub, "d-5", speed=0)
    wait_effect(tw, c["id"], "converged")


@pytest.mark.parametrize("effect,needle", [
    ({"property": "sped"}, "effect reads 'sped', which is not a property"),
    ({"value": 1}, "effect: property is missing"),
    ({"property": "speed", "param": "x", "value": 1}, "give one"),
    ({"property": "speed", "timeout": "2d"}, "timeout must be a duration"),
    ({"property": "speed", "tolerance": -1}, "tolerance must be a number, zero or more"),
    ({"property": "speed", "when": 1}, 'unknown key "when"'),
    ({"property": "speed", "value": [1]}, "value must be a number"),
    ("fast", "effect must be an object"),
])
def test_check_refuses_a_bad_effect(tmp_path, effect, needle):
    r = check_models(tmp_path, {"bad.json": drive(stop=effect)})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "bad.json" in r.stderr, r.stderr


def test_a_command_that_never_went_is_not_sent(tmp_path, make_twind, make_publisher, broker):
    mdir, tfile = write_plant(tmp_path / "plant", {"drive.json": drive()},
                              [{"id": "d-9", "model": MODEL}])
    extra = plant_extra(mdir, tfile)
    extra["commands"] = {"ttl": "1s"}
    tw = make_twind(extra=extra)
    report(make_publisher(), "d-9", tw, speed=1450)
    broker.stop()
    c = post(tw, "d-9", "stop")
    assert c["effect"] == "waiting", c
    c = wait_effect(tw, c["id"], "not_sent", timeout=10)
    assert c["status"] == "expired", c
    broker.start()
    assert metric_value(tw.metrics(), "twind_commands_effect_total", outcome="not_sent") == 1
