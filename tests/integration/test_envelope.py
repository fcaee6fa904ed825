"""The safety envelope on commands, through MQTT and REST: range (refused and
clamped), rate under a flapping rule, interlocks, manual lockout of a rule's
commands (an operator's still go), refusals stored, counted and sent as events,
the what-if's view of them, and --check of the extension.

One broker + twind for the module; each test uses its own twins."""

import json
import time

import pytest

from conftest import (CTX, Broker, EventStream, Publisher, Stack, Subscriber, Twind, check_models,
                      metric_value, now_ms, plant_extra, wait_until, write_plant)

MODEL = "dtmi:test:Pump;1"


def pump(manual=True, **cmd_overrides):
    cmds = {
        # an operator's set point: refused out of range
        "set_flow": {"params": {"rate": {"minimum": 0, "maximum": 40}}},
        # a rule's reduction: clamped into range, once a minute at most
        "reduce_load": {"params": {"percent": {"minimum": 1, "maximum": 50}}, "clamp": True,
                        "minInterval": "1m"},
        # start only with the pressure known and low, not during maintenance
        "start": {"interlock": "not maintenance and pressure < 8", "minInterval": "2s"},
        # a protective trip: a rule's goes in manual mode too
        "trip": {"allowInManual": True},
    }
    cmds.update(cmd_overrides)
    m = {"@context": CTX, "@id": MODEL, "@type": "Interface",
         "contents": [
             {"@type": "Telemetry", "name": "temperature", "schema": "double"},
             {"@type": "Telemetry", "name": "pressure", "schema": "double", "period": "1s"},
             {"@type": "Telemetry", "name": "x", "schema": "double"},
             {"@type": "Property", "name": "maintenance", "schema": "boolean"},
             {"@type": "Property", "name": "mode", "schema": "string"},
             # a set point: a new value at most every 2 s, never during maintenance
             {"@type": "Property", "name": "setpoint", "schema": "double", "writable": True,
              "minimum": 0, "maximum": 50,
              "envelope": {"minInterval": "2s", "interlock": "not maintenance"}},
             {"@type": "Command", "name": "stop"},
         ] + [{"@type": "Command", "name": n, "envelope": e} for n, e in cmds.items()]}
    if manual:
        m["manualMode"] = 'mode == "local"'
    return m


RULES = [
    {"name": "hot", "match": {"twins": "p-*"}, "when": "temperature > 90",
     "clear": "temperature < 80", "actions": [{"command": "reduce_load",
                                                "params": {"percent": 90}}]},
    # flaps with x: no cooldown, so every rise raises again
    {"name": "flap", "match": {"twins": "f-*"}, "when": "x > 1", "clear": "x < 1",
     "actions": [{"command": "reduce_load", "params": {"percent": 10}}]},
    {"name": "restart", "match": {"twins": "m-*"}, "when": "x > 1", "clear": "x < 1",
     "actions": [{"command": "stop"}]},
    {"name": "protect", "match": {"twins": "m-*"}, "when": "x > 5", "clear": "x < 1",
     "actions": [{"command": "trip"}]},
    {"name": "lower", "match": {"twins": "m-*"}, "when": "x > 8", "clear": "x < 1",
     "actions": [{"desired": {"setpoint": 10}}]},
]
TWINS = [{"id": i, "model": MODEL} for i in
         ["p-1", "p-2", "f-1", "m-1", "m-2", "o-1", "o-2", "o-3", "o-4", "o-5", "o-6"]]


class Plant:
    pass


@pytest.fixture(scope="module")
def plant(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("envelope")
    s = Stack()
    b = Broker(base / "broker")
    s.brokers.append(b)
    streams = []
    try:
        b.start()
        mdir, tfile = write_plant(base / "conf", {"pump.json": pump()}, TWINS)
        rfile = base / "conf" / "rules.json"
        rfile.write_text(json.dumps(RULES, indent=1))
        extra = plant_extra(mdir, tfile)
        extra["rules"] = {"file": str(rfile)}
        extra["commands"] = {"acknowledged": "no"}
        t = Twind(base / "twind", b, extra)
        s.twinds.append(t)
        t.start()
        p = Publisher(b.port)
        s.pubs.append(p)
        pl = Plant()
        pl.broker, pl.twind, pl.pub = b, t, p
        pl.sub = Subscriber(b.port, ["plant/+/cmd"])
        streams.append(pl.sub)
        pl.events = EventStream(t.http_port, "/api/v1/events")
        streams.append(pl.events)
        assert pl.events.wait_head() == 200
        yield pl
    finally:
        for x in streams:
            x.close()
        s.cleanup(show_logs=request.session.testsfailed > 0)


def send(pl, twin, **values):
    ts = now_ms()
    pl.pub.publish(f"plant/{twin}/telemetry", {"ts": ts, **values})
    def applied():
        doc = pl.twind.twin(twin)
        return doc is not None and any(v["ts"] >= ts for v in doc["reported"].values())
    wait_until(applied, 5, what=f"{twin} at {ts}")


def commands(tw, twin):
    r = tw.get("/api/v1/commands", params={"twin": twin})
    assert r.status_code == 200, r.text
    return r.json()["commands"]


def post(tw, twin, command, params=None):
    body = {"command": command}
    if params is not None:
        body["params"] = params
    return tw.request("POST", f"/api/v1/twins/{twin}/commands", json=body)


def on_mqtt(pl, twin):
    return [json.loads(m.payload) for m in pl.sub.messages() if m.topic == f"plant/{twin}/cmd"]


def refused_count(tw, reason):
    return metric_value(tw.metrics(), "twind_commands_refused_total", reason=reason)


def test_range_refused_for_an_operator(plant):
    tw = plant.twind
    before = refused_count(tw, "range")
    for params, needle in [({"rate": 55}, "rate = 55 is outside [0, 40]"),
                           ({}, "parameter rate is missing"),
                           ({"rate": "fast"}, "parameter rate must be a number")]:
        r = post(tw, "o-1", "set_flow", params)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "out_of_range" and needle in err["message"], err
    rows = [c for c in commands(tw, "o-1") if c["command"] == "set_flow"]
    assert len(rows) == 3 and all(c["status"] == "refused" for c in rows), rows
    assert all(c["reason"].startswith("range: ") for c in rows), rows
    assert refused_count(tw, "range") == before + 3
    r = post(tw, "o-1", "set_flow", {"rate": 40})
    assert r.status_code == 202, r.text
    wait_until(lambda: any(c["command"] == "set_flow" and c["params"] == {"rate": 40}
                           for c in on_mqtt(plant, "o-1")), 5, what="set_flow on MQTT")
    # a refused one never reached the broker
    assert [c["params"] for c in on_mqtt(plant, "o-1") if c["command"] == "set_flow"] == \
        [{"rate": 40}]
    # and it was sent as an event, with its reason
    ev = [e for e in plant.events.snapshot("command")
          if e.data.get("twin") == "o-1" and e.data.get("status") == "refused"]
    assert len(ev) == 3 and ev[0].data["reason"].startswith("range: "), ev


def test_a_rules_command_is_clamped_into_range(plant):
    tw = plant.twind
    send(plant, "p-1", temperature=95, mode="remote")
    wait_until(lambda: on_mqtt(plant, "p-1"), 5, what="reduce_load on MQTT")
    got = on_mqtt(plant, "p-1")
    assert [(c["command"], c["params"]) for c in got] == [("reduce_load", {"percent": 50})]
    row = wait_until(lambda: [c for c in commands(tw, "p-1") if c["status"] == "done"], 5,
                     what="reduce_load done at the PUBACK")[0]
    assert row["params"] == {"percent": 50}, row


def test_flapping_rule_is_rate_limited(plant):
    """x flaps 12 times within the minute: the rule raises each time, one
    command reaches the asset, the others are stored refused with the rate."""
    tw = plant.twind
    before = refused_count(tw, "rate")
    send(plant, "f-1", mode="remote", x=0)
    for _ in range(12):
        send(plant, "f-1", x=2)
        send(plant, "f-1", x=0)
    rows = commands(tw, "f-1")
    assert len(rows) == 12, rows
    went = [c for c in rows if c["status"] != "refused"]
    assert len(went) == 1, rows
    refused = [c for c in rows if c["status"] == "refused"]
    assert all(c["reason"].startswith("rate: reduce_load went to f-1 ") for c in refused), refused
    assert refused_count(tw, "rate") == before + 11
    time.sleep(0.5)
    assert len([c for c in on_mqtt(plant, "f-1")]) == 1


def test_operator_rate_limit_says_when_to_retry(plant):
    tw = plant.twind
    send(plant, "o-2", pressure=3, maintenance=False)
    assert post(tw, "o-2", "start").status_code == 202
    r = post(tw, "o-2", "start")
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited", r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 2, r.headers
    time.sleep(2.1)
    send(plant, "o-2", pressure=3)      # its period is 1 s: an older pressure is stale
    assert post(tw, "o-2", "start").status_code == 202


def test_interlock(plant):
    tw = plant.twind
    before = refused_count(tw, "interlock")
    r = post(tw, "o-3", "start")     # nothing reported yet: unknown refuses
    assert r.status_code == 422 and r.json()["error"]["code"] == "interlock", r.text
    assert "is unknown" in r.json()["error"]["message"], r.text
    send(plant, "o-3", pressure=9.5, maintenance=False)
    r = post(tw, "o-3", "start")
    assert r.status_code == 422 and "does not hold" in r.json()["error"]["message"], r.text
    send(plant, "o-3", pressure=5, maintenance=True)
    assert post(tw, "o-3", "start").status_code == 422
    send(plant, "o-3", maintenance=False)
    r = post(tw, "o-3", "start")
    assert r.status_code == 202, r.text
    assert refused_count(tw, "interlock") == before + 3
    rows = commands(tw, "o-3")
    assert [c["status"] for c in rows].count("refused") == 3, rows
    assert all(c["reason"].startswith("interlock: not maintenance and pressure < 8")
               for c in rows if c["status"] == "refused"), rows


def test_manual_mode_refuses_a_rules_command_not_an_operators(plant):
    tw = plant.twind
    before = refused_count(tw, "manual")
    send(plant, "m-1", mode="local", x=0)
    send(plant, "m-1", x=2)
    wait_until(lambda: commands(tw, "m-1"), 5, what="the rule's stop, refused")
    row = commands(tw, "m-1")[0]
    assert row["status"] == "refused" and row["reason"].startswith("manual: m-1 is in manual"), row
    assert refused_count(tw, "manual") == before + 1
    # the operator at the pump may still stop it through twind
    r = post(tw, "m-1", "stop")
    assert r.status_code == 202, r.text
    wait_until(lambda: len(on_mqtt(plant, "m-1")) == 1, 5, what="the operator's stop")
    # back in remote, the rule's command goes
    send(plant, "m-1", x=0, mode="remote")
    send(plant, "m-1", x=2)
    wait_until(lambda: len(on_mqtt(plant, "m-1")) == 2, 5, what="the rule's stop in remote")
    assert on_mqtt(plant, "m-1")[1]["rule"] == "restart"
    # a protective trip goes in manual mode: its envelope allows it
    send(plant, "m-1", x=0, mode="local")
    send(plant, "m-1", x=6)
    wait_until(lambda: any(c["command"] == "trip" for c in on_mqtt(plant, "m-1")), 5,
               what="the rule's trip in manual mode")


def test_manual_mode_unknown_refuses_a_rules_command(plant):
    """A pump that never said its mode may have someone at it: held back."""
    send(plant, "m-2", x=0)
    send(plant, "m-2", x=2)
    wait_until(lambda: commands(plant.twind, "m-2"), 5, what="the rule's stop")
    row = commands(plant.twind, "m-2")[0]
    assert row["status"] == "refused" and "unknown" in row["reason"], row
    assert on_mqtt(plant, "m-2") == []


def test_whatif_shows_the_envelope(plant):
    """A what-if says what the envelope would do, and does none of it."""
    tw = plant.twind
    send(plant, "p-2", temperature=20, mode="local")
    before = metric_value(tw.metrics(), "twind_commands_refused_total", reason="manual")
    r = tw.request("POST", "/api/v1/twins/p-2/simulate",
                   json={"reported": {"temperature": 95}})
    assert r.status_code == 200, r.text
    cmds = r.json()["commands"]
    assert len(cmds) == 1 and cmds[0]["status"] == "refused", cmds
    assert cmds[0]["refusal"] == "manual", cmds
    r = tw.request("POST", "/api/v1/twins/p-2/simulate",
                   json={"reported": {"temperature": 95, "mode": "remote"}})
    cmds = r.json()["commands"]
    assert cmds[0]["status"] == "would_send" and cmds[0]["clamped"] is True, cmds
    assert cmds[0]["params"] == {"percent": 50}, cmds
    # the scenario's own commands count for the rate: hot, cool, hot again
    r = tw.request("POST", "/api/v1/twins/p-2/simulate", json={
        "reported": {"mode": "remote"},
        "steps": [{"at": "+1s", "reported": {"temperature": 95}},
                  {"at": "+10s", "reported": {"temperature": 70}},
                  {"at": "+20s", "reported": {"temperature": 95}}]})
    assert r.status_code == 200, r.text
    cmds = r.json()["commands"]
    assert [c["status"] for c in cmds] == ["would_send", "refused"], cmds
    assert cmds[1]["refusal"] == "rate", cmds
    assert commands(tw, "p-2") == []
    assert metric_value(tw.metrics(), "twind_commands_refused_total", reason="manual") == before


def test_a_desired_value_meets_its_envelope(plant):
    tw = plant.twind

    def patch(v):
        return tw.request("PATCH", "/api/v1/twins/o-6/desired", json={"setpoint": v})

    send(plant, "o-6", maintenance=False)
    assert patch(5).status_code == 200
    r = patch(6)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited", r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 2, r.headers
    assert "setpoint" in r.json()["error"]["message"], r.text
    assert patch(5).status_code == 200          # the same value again is not an actuation
    # withdrawn and set anew is a change too: not faster than the model allows
    assert patch(None).status_code == 429
    # a what-if answers as live would
    r = tw.request("POST", "/api/v1/twins/o-6/simulate", json={"desired": {"setpoint": 9}})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited", r.text
    send(plant, "o-6", maintenance=True)
    time.sleep(2.1)
    r = patch(7)
    assert r.status_code == 422 and r.json()["error"]["code"] == "interlock", r.text
    assert r.json()["error"]["message"].startswith("setpoint: interlock: "), r.text
    r = tw.request("POST", "/api/v1/twins/o-6/simulate", json={"desired": {"setpoint": 9}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "interlock", r.text
    assert patch(None).status_code == 200      # withdrawing is safe whatever the interlock
    assert "setpoint" not in tw.twin("o-6")["desired"]


def test_a_rules_desired_change_is_refused_in_manual_mode(plant):
    tw = plant.twind
    before = {x["name"]: x["stats"]["errors"] for x in tw.get("/api/v1/rules").json()["rules"]}
    send(plant, "m-2", x=0, mode="local")
    send(plant, "m-2", x=9)
    wait_until(lambda: any(a["rule"] == "lower" for a in
                           tw.get("/api/v1/alerts", params={"twin": "m-2"}).json()["alerts"]),
               5, what="the rule raised")
    rules = {x["name"]: x["stats"]["errors"] for x in tw.get("/api/v1/rules").json()["rules"]}
    assert rules["lower"] == before["lower"] + 1, rules
    assert "setpoint" not in tw.twin("m-2")["desired"]


def test_duplicated_params_are_refused(plant):
    """cJSON reads the first of two keys, a bridge the last: never both."""
    r = plant.twind.request("POST", "/api/v1/twins/o-4/commands",
                            data='{"command":"set_flow","params":{"rate":10,"r\\u0061te":500}}',
                            headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "twice" in r.json()["error"]["message"], r.text
    assert commands(plant.twind, "o-4") == []


def test_a_stale_value_does_not_hold_an_interlock(plant):
    tw = plant.twind
    send(plant, "o-4", pressure=3, maintenance=False)
    time.sleep(2.3)                      # period 1 s x stale_factor 2
    r = post(tw, "o-4", "start")
    assert r.status_code == 422 and "stale" in r.json()["error"]["message"], r.text


def test_a_command_that_waited_is_judged_again(plant):
    """The broker is away; when it returns, the pressure the interlock read
    has gone stale: the command is refused, never sent. (Last: it restarts
    the module's broker.)"""
    tw = plant.twind
    send(plant, "o-5", pressure=3, maintenance=False)
    plant.broker.stop()
    r = post(tw, "o-5", "start")
    assert r.status_code == 202, r.text
    cid = r.json()["id"]
    time.sleep(2.5)
    plant.broker.start()
    row = wait_until(lambda: [c for c in commands(tw, "o-5") if c["id"] == cid and
                              c["status"] != "pending"], 15, what="the command judged again")[0]
    assert row["status"] == "refused", row
    assert row["reason"].startswith("interlock: ") and "judged again" in row["reason"], row


# --------------------------------------------------------------------------
# --check

@pytest.mark.parametrize("override,needle", [
    ({"start": {"interlok": "x < 1"}}, 'envelope: unknown key "interlok"'),
    ({"start": {"interlock": "x <"}}, "envelope: interlock: column 4:"),
    ({"start": {"interlock": "avg_over(x, 1m) < 1"}}, "window functions"),
    ({"start": {"interlock": "presure < 8"}}, "interlock reads 'presure', which is not"),
    ({"start": {"minInterval": "soon"}}, "minInterval must be a duration"),
    ({"start": {"params": {"p": {"minimum": 5, "maximum": 1}}}}, "minimum 5 is above maximum 1"),
    ({"start": {"params": {"p": {}}}}, "needs a numeric minimum and/or maximum"),
    ({"start": {"clamp": True}}, "clamp needs params"),
    ({"start": []}, "envelope must be an object"),
    ({"start": {"allowInManual": "yes"}}, "allowInManual must be true or false"),
    ({"start": {"minInterval": "1s"}, "set_flow": {"params": {"rate": {"maximum": 4}}},
      "reduce_load": {"clamp": True, "params": {"p": {"maximum": 1}}, "interlock": "sped > 0"}},
     "interlock reads 'sped'"),
])
def test_check_refuses_a_bad_envelope(tmp_path, override, needle):
    r = check_models(tmp_path, {"bad.json": pump(**override)})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "bad.json" in r.stderr and MODEL in r.stderr, r.stderr


@pytest.mark.parametrize("written,twice", [
    ('"minInterval": "2s", "minInterval": "9s"', "minInterval"),
    ('"params": {"p": {"minimum": 0, "minimum": 9}}', "minimum"),
    ('"params": {"p": {"minimum": 0}}, "params": {"q": {"maximum": 1}}', "params"),
])
def test_check_refuses_duplicated_keys(tmp_path, written, twice):
    """A second key would be read by one reader and not by another: refused."""
    text = json.dumps(pump(start={"minInterval": "2s"})).replace('"minInterval": "2s"', written)
    r = check_models(tmp_path, {"bad.json": text})
    assert r.returncode == 2 and f'"{twice}" is given twice' in r.stderr, r.stderr


COMPONENT = {"@context": CTX, "@id": "dtmi:test:Motor;1", "@type": "Interface",
             "contents": [{"@type": "Telemetry", "name": "temp", "schema": "double"},
                          {"@type": "Command", "name": "stop",
                           "envelope": {"interlock": "temp < 90"},
                           "effect": {"property": "temp", "timeout": "5s"}}]}


def test_a_components_envelope_reads_its_own_properties(tmp_path):
    m = pump()
    m["contents"].append({"@type": "Component", "name": "motor", "schema": "dtmi:test:Motor;1"})
    r = check_models(tmp_path, {"bad.json": m, "motor.json": COMPONENT})
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("prop,needle", [
    ({"@type": "Property", "name": "sp", "schema": "double", "envelope": {"minInterval": "1s"}},
     "envelope is only for writable Properties"),
    ({"@type": "Property", "name": "sp", "schema": "double", "writable": True,
      "envelope": {"params": {"sp": {"maximum": 1}}}}, "params and clamp are a Command's"),
    ({"@type": "Property", "name": "sp", "schema": "double", "writable": True,
      "envelope": {"interlock": "nope > 1"}}, "property sp: interlock reads 'nope'"),
    ({"@type": "Telemetry", "name": "sp", "schema": "double", "envelope": {}},
     "envelope"),
])
def test_check_refuses_a_bad_property_envelope(tmp_path, prop, needle):
    m = pump()
    m["contents"].append(prop)
    r = check_models(tmp_path, {"bad.json": m})
    assert r.returncode == 2 and needle in r.stderr, r.stderr


def test_check_refuses_a_bad_manual_mode(tmp_path):
    m = pump()
    m["manualMode"] = 'mdoe == "local"'
    r = check_models(tmp_path, {"bad.json": m})
    assert r.returncode == 2 and "manualMode reads 'mdoe'" in r.stderr, r.stderr
    m["manualMode"] = 7
    r = check_models(tmp_path, {"bad.json": m})
    assert r.returncode == 2 and "manualMode must be a rule condition" in r.stderr, r.stderr
    r = check_models(tmp_path, {"bad.json": pump()})
    assert r.returncode == 0, r.stderr
