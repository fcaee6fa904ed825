"""POST /api/v1/twins/{id}/simulate through a real broker and twind: a what-if
on a copy of a twin (its values, windows and rule states) answers with the
alerts, commands and desired changes the rules would make and the document
that would result, and changes nothing at all: the twin, its alerts, its
commands, the rules' statistics, the metrics, the database and the broker are
the same before and after. A parent with its children, `for` on the scenario's
clock, a live alert cleared in the scenario only, refusals, bad requests."""
import json
import time

import pytest

from conftest import (CTX, LINE_ID, Broker, Publisher, Stack, Subscriber, Twind, assert_error,
                      line_model, now_ms, parse_prometheus, plant_extra, wait_until,
                      write_plant)

SPUMP = "dtmi:simtest:Pump;1"


def spump_model():
    return {
        "@context": CTX, "@id": SPUMP, "@type": "Interface", "strict": True,
        "contents": [
            {"@type": "Telemetry", "name": "temperature", "schema": "double"},
            {"@type": "Telemetry", "name": "running", "schema": "boolean"},
            {"@type": "Property", "name": "speed", "schema": "double", "writable": True,
             "minimum": 0, "maximum": 3000, "tolerance": 5},
            {"@type": "Command", "name": "reduce_load"},
        ],
    }


TWINS = [{"id": "s-line", "model": LINE_ID},
         {"id": "s-p1", "model": SPUMP, "parent": "s-line"},
         {"id": "s-p2", "model": SPUMP, "parent": "s-line"},
         {"id": "s-solo", "model": SPUMP}]

RULES = [
    {"name": "hot", "match": {"model": SPUMP}, "when": "temperature > 90", "for": "30s",
     "clear": "temperature < 80", "severity": "major", "message": "{twin} hot at {temperature}",
     "actions": [{"command": "reduce_load", "params": {"percent": 20}},
                 {"desired": {"speed": 1000}}]},
    {"name": "very_hot", "match": {"model": SPUMP}, "when": "temperature > 120",
     "severity": "critical", "message": "{twin} very hot",
     "actions": [{"command": "vent"}, {"desired": {"speed": 9000}}]},
    {"name": "tripped", "match": {"model": SPUMP}, "when": "running == false",
     "severity": "warning", "message": "{twin} tripped"},
    {"name": "heating", "match": {"model": SPUMP}, "when": "rate(temperature, 5m) > 0.5",
     "severity": "info", "message": "{twin} heating"},
    {"name": "warm_minute", "match": {"twins": "s-p1"}, "when": "avg_over(temperature, 1m) > 90",
     "severity": "info", "message": "{twin} warm for a minute"},
]


@pytest.fixture(scope="module")
def plant(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("simulate")
    s = Stack()
    b = Broker(base / "broker")
    s.brokers.append(b)
    try:
        b.start()
        mdir, tfile = write_plant(base / "conf", {"spump.json": spump_model(),
                                                   "line.json": line_model()}, TWINS)
        rfile = base / "conf" / "rules.json"
        rfile.write_text(json.dumps(RULES))
        extra = plant_extra(mdir, tfile, converge_timeout="1h")
        extra["rules"] = {"file": str(rfile)}
        t = Twind(base / "twind", b, extra)
        s.twinds.append(t)
        t.start()
        p = Publisher(b.port)
        s.pubs.append(p)
        t.pub, t.broker = p, b
        yield t
    finally:
        s.cleanup(show_logs=request.session.testsfailed > 0)


def send(tw, twin, ts, **values):
    tw.pub.publish(f"plant/{twin}/telemetry", {"ts": ts, **values})
    wait_until(lambda: (tw.twin(twin) or {}).get("reported", {}).get(
        next(iter(values)), {}).get("ts") == ts, 10, what=f"{twin} at {ts}")


def simulate(tw, twin, body, depth=None, status=200):
    r = tw.request("POST", f"/api/v1/twins/{twin}/simulate" +
                   (f"?depth={depth}" if depth is not None else ""),
                   data=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()


COUNTING = ("twind_alerts_raised_total", "twind_commands_total",
            "twind_commands_pending", "twind_values_stored_total", "twind_updates_applied_total",
            "twind_messages_received_total", "twind_values_out_of_range_total",
            "twind_property_names", "twind_twins", "twind_memory_bytes")


def world(tw, twins):
    """Everything a what-if must leave alone, as one comparable value."""
    m = parse_prometheus(tw.get("/metrics").text)
    counted = {k: v for k, v in m.items() if k.split("{")[0] in COUNTING}
    # The live timer evaluates every rule each second: evaluations are judged apart.
    rules = {r["name"]: {k: v for k, v in r["stats"].items()
                         if k not in ("evaluations", "cost_ns_per_evaluation")}
             for r in tw.get("/api/v1/rules").json()["rules"]}
    docs = {t: tw.get(f"/api/v1/twins/{t}").json() for t in twins}
    db = tw.db_connect()
    try:
        tables = {t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                  for t in ("twins", "series", "history", "desired", "alerts", "commands",
                            "rollup_1m", "rollup_1h")}
    finally:
        db.close()
    return {"metrics": counted, "rules": rules, "docs": docs, "db": tables,
            "alerts": tw.get("/api/v1/alerts").json(),
            "commands": tw.get("/api/v1/commands").json()}


def evaluations(tw):
    m = parse_prometheus(tw.get("/metrics").text)
    out = {r["name"]: r["stats"]["evaluations"] for r in tw.get("/api/v1/rules").json()["rules"]}
    out["metric"] = m["twind_rule_evaluations_total"] / 5     # over the 5 rules
    return out


def test_a_what_if_changes_nothing(plant):
    tw = plant
    base = now_ms() - 2000
    for i in range(5):
        send(tw, "s-p1", base + i * 400, temperature=70.0 + i * 0.1, running=True)
    sub = Subscriber(tw.broker.port, ["plant/#"])
    try:
        sub.sync()
        seen = len(sub.messages())
        before = world(tw, ["s-p1", "s-line"])
        evals0 = evaluations(tw)
        t0 = time.monotonic()
        out = simulate(tw, "s-p1", {"reported": {"temperature": 95}, "at": "+1m"})
        # Many more what-ifs: 50 steps each, every one evaluating the pump's 5 rules.
        steps = [{"at": f"+{i}s", "reported": {"temperature": 60 + i}} for i in range(50)]
        for _ in range(5):
            simulate(tw, "s-p1", {"steps": steps})
        time.sleep(1.2)          # a timer tick: anything done would show by now
        after = world(tw, ["s-p1", "s-line"])
        ticks = time.monotonic() - t0 + 2
        assert after == before
        # Only the live timer's: at most one per second per twin that a rule matches (3 pumps).
        grown = {k: v - evals0[k] for k, v in evaluations(tw).items()}
        assert all(v <= ticks * 3 for v in grown.values()), (grown, ticks)
        assert [m.topic for m in sub.messages()[seen:]
                if not m.topic.startswith("harness/")] == []
    finally:
        sub.close()
    # What it says would happen: `for` ends 30 s into the scenario, not at its end.
    assert out["until_ts"] - out["from_ts"] == 60_000
    # A jump of 25 degrees also raises the rate rule, at once; the held 95 fills
    # the minute's window as the sensor would, until its average passes 90.
    assert {a["rule"] for a in out["alerts"] if a["action"] == "raise"} == \
        {"hot", "heating", "warm_minute"}
    warm = [a for a in out["alerts"] if a["rule"] == "warm_minute"][0]
    assert out["from_ts"] < warm["ts"] <= out["until_ts"]
    raised = [a for a in out["alerts"] if a["action"] == "raise" and a["rule"] == "hot"]
    assert len(raised) == 1 and raised[0]["twin"] == "s-p1", out["alerts"]
    assert raised[0]["ts"] == out["from_ts"] + 30_000
    assert raised[0]["value"] == 95 and raised[0]["message"] == "s-p1 hot at 95"
    assert out["commands"] == [{"twin": "s-p1", "ts": raised[0]["ts"], "command": "reduce_load",
                                "params": {"percent": 20}, "rule": "hot",
                                "status": "would_send"}]
    assert out["desired"] == [{"twin": "s-p1", "ts": raised[0]["ts"], "property": "speed",
                               "value": 1000, "by": "rule:hot", "status": "would_set"}]
    doc = out["twin"]
    assert doc["id"] == "s-p1" and doc["reported"]["temperature"]["value"] == 95
    assert doc["reported"]["temperature"]["ts"] == out["until_ts"]    # held until `at`
    assert doc["desired"]["speed"]["value"] == 1000 and doc["delta"] == {"speed": 1000}
    hot = [a for a in doc["alerts"] if a["rule"] == "hot"]
    assert len(hot) == 1 and hot[0]["id"] is None and hot[0]["raised_ts"] == raised[0]["ts"]


def test_steps_raise_and_clear_on_the_scenarios_clock(plant):
    tw = plant
    send(tw, "s-p2", now_ms(), temperature=70.0, running=True)
    out = simulate(tw, "s-p2", {"steps": [
        {"at": "+0s", "reported": {"temperature": 95}},
        {"at": "+40s", "reported": {"temperature": 96}},
        {"at": "+2m", "reported": {"temperature": 75}}]})
    hot = [(a["action"], a["ts"] - out["from_ts"]) for a in out["alerts"] if a["rule"] == "hot"]
    assert hot == [("raise", 30_000), ("clear", 120_000)], out["alerts"]
    assert out["twin"]["alerts"] == [] or all(a["rule"] != "hot" for a in out["twin"]["alerts"])
    # Every twin goes on reporting what it last reported: ages stay small.
    assert out["twin"]["reported"]["temperature"]["ts"] == out["from_ts"] + 120_000
    # A window rule sees the scenario's readings: rate over 5 m of 70 -> 96 in 40 s.
    assert any(a["rule"] == "heating" and a["action"] == "raise" for a in out["alerts"])


def test_a_parent_with_its_children(plant):
    tw = plant
    t = now_ms()
    send(tw, "s-line", t, throughput=50.0)
    send(tw, "s-p1", t, temperature=70.0, running=True)
    send(tw, "s-p2", t, temperature=71.0, running=True)
    out = simulate(tw, "s-line", {"steps": [{"twin": "s-p2", "reported": {"running": False}}]},
                   depth=1)
    assert [(a["twin"], a["rule"], a["action"]) for a in out["alerts"]] == \
        [("s-p2", "tripped", "raise")]
    kids = {c["id"]: c for c in out["twin"]["children"]}
    assert set(kids) == {"s-p1", "s-p2"}
    assert kids["s-p2"]["reported"]["running"]["value"] is False
    assert kids["s-p1"]["reported"]["running"]["value"] is True
    # The copy carries the live alerts (a real id) beside the scenario's (none).
    ids = {a["rule"]: a["id"] for a in kids["s-p2"]["alerts"]}
    assert "tripped" in ids and ids["tripped"] is None
    live = {a["rule"]: a["id"] for a in tw.twin("s-p2")["alerts"]}
    assert {k: v for k, v in ids.items() if k != "tripped"} == live
    # Without depth, the children are out of the scenario.
    r = simulate(tw, "s-line", {"steps": [{"twin": "s-p2", "reported": {"running": False}}]},
                 status=422)
    assert r["error"]["code"] == "not_in_scope"
    assert tw.twin("s-p2")["reported"]["running"]["value"] is True


def test_refused_actions_are_described_with_their_reason(plant):
    tw = plant
    send(tw, "s-solo", now_ms(), temperature=70.0, running=True)
    out = simulate(tw, "s-solo", {"reported": {"temperature": 130}})
    vent = [c for c in out["commands"] if c["command"] == "vent"]
    assert vent and vent[0]["status"] == "refused"
    assert "takes no command vent" in vent[0]["reason"]
    speed = [d for d in out["desired"] if d["by"] == "rule:very_hot"]
    assert speed and speed[0]["status"] == "refused"
    assert "within [0, 3000]" in speed[0]["reason"]


def test_a_live_alert_cleared_in_the_scenario_stays_active(plant):
    tw = plant
    send(tw, "s-solo", now_ms(), temperature=130.0)
    wait_until(lambda: [a for a in tw.get("/api/v1/alerts", params={"twin": "s-solo",
               "state": "active"}).json()["alerts"] if a["rule"] == "very_hot"], 5)
    live = [a for a in tw.get("/api/v1/alerts", params={"twin": "s-solo", "state": "active"})
            .json()["alerts"] if a["rule"] == "very_hot"][0]
    out = simulate(tw, "s-solo", {"reported": {"temperature": 60}})
    clear = [a for a in out["alerts"] if a["rule"] == "very_hot"]
    assert clear == [{"twin": "s-solo", "ts": out["from_ts"], "rule": "very_hot",
                      "severity": "critical", "action": "clear", "alert_id": live["id"]}]
    still = tw.get("/api/v1/alerts", params={"twin": "s-solo", "state": "active"}).json()
    assert live["id"] in [a["id"] for a in still["alerts"]]


def test_operator_desired_in_a_what_if(plant):
    tw = plant
    out = simulate(tw, "s-p1", {"desired": {"speed": 1200}})
    assert out["desired"][0]["property"] == "speed" and out["desired"][0]["status"] == "would_set"
    assert out["twin"]["delta"] == {"speed": 1200}
    assert "speed" not in tw.twin("s-p1")["desired"]
    r = simulate(tw, "s-p1", {"desired": {"speed": 5000}}, status=422)
    assert r["error"]["code"] == "out_of_range"
    r = simulate(tw, "s-p1", {"desired": {"temperature": 5}}, status=422)
    assert r["error"]["code"] == "not_writable"


def test_bad_requests(plant):
    tw = plant

    def post(twin, data, query=""):
        return tw.request("POST", f"/api/v1/twins/{twin}/simulate{query}", data=data,
                          headers={"Content-Type": "application/json"})
    assert_error(post("nope", "{}"), 404, "not_found")
    assert_error(post("s-p1", "{"), 400, "bad_request")
    assert_error(post("s-p1", "[]"), 400, "bad_request")
    assert_error(post("s-p1", '{"reported": 5}'), 400, "bad_request")
    assert_error(post("s-p1", '{"what": 1}'), 400, "bad_request")
    assert_error(post("s-p1", '{"at": "soon"}'), 400, "bad_request")
    assert_error(post("s-p1", '{"at": "+400d"}'), 400, "bad_request")
    assert_error(post("s-p1", '{"steps": [{"at": "+2m"}, {"at": "+1m"}]}'), 400, "bad_request")
    assert_error(post("s-p1", json.dumps({"steps": [{}] * 101})), 400, "bad_request")
    assert_error(post("s-p1", json.dumps({"reported": {f"p{i}": 1 for i in range(300)}})),
                 400, "bad_request")
    assert_error(post("s-p1", '{"reported": ' + '{"a":' * 20 + '1' + '}' * 21), 400,
                 "bad_request")
    assert_error(post("s-p1", "{}", "?depth=9"), 400, "bad_request")
    assert_error(post("s-p1", '{"reported": {"pressure": 1}}'), 422, "unknown_property")
    assert_error(post("s-p1", '{"reported": {"temperature": 1e999}}'), 422, "bad_value")
    assert_error(post("s-p1", '{"reported": {"temperature": "hot"}}'), 422, "wrong_type")
    assert_error(post("s-p1", '{"reported": {"temperature": null}}'), 422, "bad_value")
    r = tw.request("POST", "/api/v1/twins/s-p1/simulate", data="{}",
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert tw.get("/healthz").status_code == 200


def test_what_ifs_in_a_loop_do_not_stop_ingestion(tmp_path, make_twind, publisher):
    """Two clients keeping what-ifs queued (a read token is enough): the
    engine serves requests for at most 50 ms at a time, then takes the
    ring again for as long, so readings published meanwhile are applied at
    once and the engine's heartbeat goes on (found by an outside reading: the queue never
    emptied, and a healthy twind would have been restarted by systemd)."""
    import threading
    import requests
    rules = [{"name": f"r{i}", "when": f"avg_over(v, 1h) > {1e9 + i}"} for i in range(1500)]
    rf = tmp_path / "rules.json"
    rf.write_text(json.dumps(rules))
    tw = make_twind({"rules": {"file": str(rf)}})
    publisher.publish("plant/wl-1/telemetry", {"ts": now_ms(), "v": 1})
    tw.wait_version("wl-1", 1)
    body = json.dumps({"reported": {"v": 2}, "steps": [{"at": f"+{i + 1}s"} for i in range(100)]})
    stop = threading.Event()
    answers = []

    def loop():
        s = requests.Session()
        while not stop.is_set():
            answers.append(s.post(tw.url("/api/v1/twins/wl-1/simulate"), data=body,
                                  headers={"Content-Type": "application/json"},
                                  timeout=30).status_code)
    ts = [threading.Thread(target=loop, daemon=True) for _ in range(2)]
    for t in ts:
        t.start()
    try:
        time.sleep(1)
        publisher.publish("plant/wl-1/telemetry", {"ts": now_ms(), "v": 7})
        wait_until(lambda: tw.twin("wl-1")["reported"]["v"]["value"] == 7, 3,
                   what="the reading applied while what-ifs keep the queue full")
        # A burst, not one reading: the ring gets as long as the requests
        # took, not one record between two 50-ms turns (a second reading).
        t0 = now_ms()
        publisher.publish_many(("plant/wl-1/telemetry", {"ts": t0 + i, "v": 1000 + i})
                               for i in range(300))
        wait_until(lambda: tw.twin("wl-1")["reported"]["v"]["value"] == 1299, 5,
                   what="a burst of 300 readings applied while what-ifs keep the queue full")
    finally:
        stop.set()
        for t in ts:
            t.join(35)
    assert answers and set(answers) == {200}, set(answers)
