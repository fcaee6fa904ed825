"""The rules engine through MQTT and REST: `for` raised on the timer, hysteresis,
cooldown, one alert per episode, acknowledgement and shelving, roll-up to a
parent, command and desired actions, the functions of the language, alerts
surviving a restart, SIGHUP with good and bad rules files, `--check`.

Time in rules is the twin's clock (the `ts` of its newest update plus the wall
time since it arrived), so tests send explicit `ts` values close to now; some
send them a little in the past so that twin-clock times can be told apart from
wall-clock times. The timer evaluates every rule once a second: waits for what
the timer does allow for that second and for a loaded 2-core machine."""

import json
import subprocess
import time

import pytest

from conftest import (CTX, LINE_ID, TWIND_BIN, Broker, EventStream, Publisher, Stack,
                      Subscriber, Twind, free_port, line_model, now_ms, plant_extra,
                      retained, wait_until, write_plant)

RPUMP = "dtmi:rtest:Pump;1"

TICK = 1.0          # the rule timer
SLACK = 1.5         # scheduling slack on a loaded machine, in seconds


def rpump_model():
    """A pump with the commands and the writable speed the rules act on. No
    update period and no convergence timeout: status and desired state stay
    out of the way of the alerts under test."""
    return {
        "@context": CTX, "@id": RPUMP, "@type": "Interface", "strict": False,
        "contents": [
            {"@type": "Telemetry", "name": "temperature", "schema": "double"},
            {"@type": "Telemetry", "name": "vibration", "schema": "double"},
            {"@type": "Property", "name": "speed", "schema": "double", "writable": True,
             "minimum": 0, "maximum": 3000, "tolerance": 5},
            {"@type": "Command", "name": "reduce_load"},
            {"@type": "Command", "name": "stop"},
        ],
    }


MODELS = {"rpump.json": rpump_model(), "line.json": line_model()}

TWINS = [
    {"id": "for-1", "model": RPUMP},
    {"id": "for-2", "model": RPUMP},
    {"id": "rl-line", "model": LINE_ID},
    {"id": "rl-p1", "model": RPUMP, "parent": "rl-line"},
    {"id": "rl-p2", "model": RPUMP, "parent": "rl-line"},
    {"id": "cm-1", "model": RPUMP},
    {"id": "cm-2", "model": RPUMP},
    {"id": "ds-1", "model": RPUMP},
    {"id": "dx-1", "model": RPUMP},
]

RULES = [
    {"name": "for_hot", "match": {"twins": "for-*"},
     "when": "temperature > 90", "for": "2s", "clear": "temperature < 80",
     "severity": "critical", "message": "{twin} hot: {temperature}",
     "actions": [{"command": "reduce_load", "params": {"percent": 20}}]},
    {"name": "hyst", "match": {"twins": "hy-*"},
     "when": "temperature > 90", "clear": "temperature < 80",
     "severity": "major", "message": "{twin}: temperature {temperature} above 90 ({nosuch})",
     "description": "hysteresis between 80 and 90"},
    {"name": "cool", "match": {"twins": "cd-*"},
     "when": "temperature > 90", "clear": "temperature < 80", "cooldown": "3s"},
    {"name": "silent", "match": {"twins": "ag-*"}, "when": "age() > 2", "severity": "info",
     "message": "{twin} silent"},
    {"name": "spike", "match": {"twins": "zs-*"},
     "when": "zscore(vibration, 1m) > 4", "clear": "abs(zscore(vibration, 1m)) < 2",
     "message": "spike {vibration}"},
    {"name": "roll", "match": {"model": RPUMP, "twins": "rl-*"}, "when": "temperature > 90"},
    {"name": "cm_cmd", "match": {"model": RPUMP, "twins": "cm-*"}, "when": "temperature > 90",
     "actions": [{"command": "reduce_load", "params": {"percent": 20}}]},
    {"name": "ds_speed", "match": {"twins": "ds-*"}, "when": "temperature > 90",
     "actions": [{"desired": {"speed": 900}}]},
    {"name": "dx_bad", "match": {"twins": "dx-*"}, "when": "temperature > 90",
     "actions": [{"desired": {"temperature": 20}}]},
]

# The functions of the language, on twin fn-1, fed temperature 10, 20, 30,
# 40, 50 one second apart: each rule below must raise, the NEG ones never.
FN_POS = {
    "fn_avg": "abs(avg_over(temperature, 1m) - 30) < 0.001",
    "fn_min": "min_over(temperature, 1m) == 10 and count_over(temperature, 1m) == 5",
    "fn_max": "max_over(temperature, 1m) == 50",
    "fn_count": "count_over(temperature, 1m) == 5",
    "fn_delta": "delta(temperature, 1m) == 40",
    "fn_rate": "abs(rate(temperature, 1m) - 10) < 0.001",
    # population (14.14) or sample (15.81) standard deviation
    "fn_stddev": "stddev_over(temperature, 1m) > 14 and stddev_over(temperature, 1m) < 16",
    # the trend 50 + 10/s projected 10 s ahead; "now" is a few ms after the last ts
    "fn_forecast": "abs(forecast(temperature, 1m, 10s) - 150) < 2",
    "fn_time_to": "time_to(temperature, 1m, 100) > 4.8 and time_to(temperature, 1m, 100) <= 5",
    "fn_time_to_never": "time_to(temperature, 1m, 0) > 1e9 and count_over(temperature, 1m) >= 2",
    "fn_prev": "prev(temperature) == 40 and temperature == 50",
    "fn_absminmax": "abs(0 - temperature) == 50 and min(temperature, 3) == 3 "
                    "and max(temperature, 3) == 50",
    "fn_mod": "temperature % 7 == 1 and temperature == 50",
    "fn_logic": "temperature > 45 or nosuch > 1",
    "fn_age_prop": "age(temperature) < 5 and age(temperature) >= 0",
    "fn_string": "mode == \"auto\" and mode != \"manual\"",
}
FN_NEG = {
    "fn_neg_count": "count_over(temperature, 1m) > 5",
    "fn_neg_unknown": "nosuch > 1",
    "fn_neg_not_unknown": "not (nosuch > 1)",
    "fn_neg_and_unknown": "temperature > 0 and nosuch > 1",
    "fn_neg_divzero": "temperature / 0 > 1 or temperature / 0 < 1",
    "fn_neg_mixed": "mode > 3",
}
for _name, _when in {**FN_POS, **FN_NEG}.items():
    RULES.append({"name": _name, "match": {"twins": "fn-*"}, "when": _when, "severity": "info"})

ALERT_KEYS = {"id", "twin", "rule", "severity", "message", "value", "active", "acknowledged",
              "shelved_until_ts", "raised_ts", "acked_ts", "cleared_ts", "acked_by", "shelved_by"}


# --------------------------------------------------------------------------
# harness


class Plant:
    pass


@pytest.fixture(scope="module")
def plant(request, tmp_path_factory):
    """Broker, twind with models, twins and RULES, a publisher, an MQTT
    subscriber of every alert and command, and an event stream."""
    base = tmp_path_factory.mktemp("rules")
    s = Stack()
    b = Broker(base / "broker")
    s.brokers.append(b)
    streams = []
    try:
        b.start()
        mdir, tfile = write_plant(base / "conf", MODELS, TWINS)
        rfile = base / "conf" / "rules.json"
        rfile.write_text(json.dumps(RULES, indent=1))
        extra = plant_extra(mdir, tfile, converge_timeout="1h")
        extra["rules"] = {"file": str(rfile)}
        extra["commands"] = {"timeout": "2s"}
        t = Twind(base / "twind", b, extra)
        s.twinds.append(t)
        t.start()
        p = Publisher(b.port)
        s.pubs.append(p)
        pl = Plant()
        pl.broker, pl.twind, pl.pub, pl.rfile = b, t, p, rfile
        pl.sub = Subscriber(b.port, ["plant/+/alert", "plant/+/cmd"])
        streams.append(pl.sub)
        pl.events = EventStream(t.http_port, "/api/v1/events")
        streams.append(pl.events)
        assert pl.events.wait_head() == 200
        yield pl
    finally:
        for x in streams:
            x.close()
        s.cleanup(show_logs=request.session.testsfailed > 0)


def send(pub, twin, ts, **values):
    pub.publish(f"plant/{twin}/telemetry", {"ts": ts, **values})


def applied(tw, twin, ts):
    """Wait until the update with `ts` is the twin's newest reported value."""
    def ok():
        doc = tw.twin(twin)
        return doc is not None and any(v["ts"] >= ts for v in doc["reported"].values())
    wait_until(ok, 10, what=f"{twin}: update ts {ts} applied")


def alerts(tw, **params):
    r = tw.get("/api/v1/alerts", params=params)
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"alerts"}, body
    return body["alerts"]


def twin_alerts(tw, twin, rule=None, **params):
    return [a for a in alerts(tw, twin=twin, **params) if rule is None or a["rule"] == rule]


def wait_alert(tw, twin, pred=lambda a: a["active"], timeout=5, what=None, rule=None):
    def find():
        got = [a for a in twin_alerts(tw, twin, rule) if pred(a)]
        return got[0] if got else None
    return wait_until(find, timeout, what=what or f"an alert on {twin}")


def stays(fn, seconds, what, show=None):
    """fn() must hold (truthy) for `seconds`, checked every 0.1 s; on failure
    the message names `what` and shows show()."""
    deadline = time.monotonic() + seconds
    while True:
        v = fn()
        assert v, f"no longer true: {what}" + (f"; have {show()!r}" if show else "")
        if time.monotonic() >= deadline:
            return v
        time.sleep(0.1)


def rules_by_name(tw):
    r = tw.get("/api/v1/rules")
    assert r.status_code == 200, (r.status_code, r.text)
    return {x["name"]: x for x in r.json()["rules"]}


def mqtt_alerts(sub, twin):
    return [m for m in sub.messages(f"plant/{twin}/alert")]


def check_alert_shape(a):
    assert set(a) == ALERT_KEYS, sorted(a)
    assert isinstance(a["id"], int) and a["id"] > 0, a
    assert isinstance(a["raised_ts"], int), a


# --------------------------------------------------------------------------
# for, hysteresis, one alert per episode, cooldown


def test_for_raises_on_timer_without_new_message(plant):
    tw, pub, sub = plant.twind, plant.pub, plant.sub
    t0 = now_ms()
    send(pub, "for-1", t0, temperature=95)
    applied(tw, "for-1", t0)
    # not yet: the condition must hold for 2 s of twin time
    stays(lambda: twin_alerts(tw, "for-1") == [], 1.0, "no alert before `for` has passed",
          show=lambda: twin_alerts(tw, "for-1"))
    a = wait_alert(tw, "for-1", timeout=2 + TICK + SLACK + 1, what="for_hot raised by the timer")
    check_alert_shape(a)
    assert a["rule"] == "for_hot" and a["severity"] == "critical", a
    assert a["message"] == "for-1 hot: 95", a
    assert a["value"] == 95, a
    assert 2000 <= a["raised_ts"] - t0 <= 2000 + (TICK + SLACK) * 1000, (a["raised_ts"] - t0, a)
    # its command: the update that caused it is the one with ts t0
    m = sub.wait_for(lambda m: True, 5, what="command of for_hot", topic="plant/for-1/cmd")
    cmd = m.json()
    assert cmd["rule"] == "for_hot" and cmd["command"] == "reduce_load", cmd
    assert cmd.get("source_ts") == t0, ("source_ts of a command raised by `for` on the timer",
                                    cmd, t0)


def test_for_restarts_when_condition_breaks(plant):
    tw, pub = plant.twind, plant.pub
    t0 = now_ms()
    send(pub, "for-2", t0, temperature=95)
    applied(tw, "for-2", t0)
    time.sleep(1.2)
    t1 = now_ms()
    send(pub, "for-2", t1, temperature=70)          # the condition breaks ...
    send(pub, "for-2", t1 + 100, temperature=95)    # ... and holds again from t1 + 100
    applied(tw, "for-2", t1 + 100)
    a = wait_alert(tw, "for-2", timeout=2 + TICK + SLACK + 2)
    assert a["raised_ts"] - (t1 + 100) >= 2000, \
        ("`for` counted from the first episode", a["raised_ts"] - t0, a)


def test_hysteresis_and_alert_publication(plant):
    tw, pub, sub, ev = plant.twind, plant.pub, plant.sub, plant.events
    twin = "hy-1"
    base = now_ms() - 30_000          # twin time 30 s behind the wall clock
    send(pub, twin, base, temperature=95)
    a = wait_alert(tw, twin)
    check_alert_shape(a)
    assert a["twin"] == twin and a["rule"] == "hyst" and a["severity"] == "major", a
    assert a["message"] == "hy-1: temperature 95 above 90 (?)", a
    assert a["value"] == 95 and a["active"] is True and a["acknowledged"] is False, a
    assert a["acked_ts"] is None and a["cleared_ts"] is None, a
    # raised_ts is twin-clock time, not the wall clock
    assert base <= a["raised_ts"] <= base + 3000, (a["raised_ts"] - base, a)
    doc = tw.twin(twin)
    assert doc["active_alerts"] == 1, doc
    assert [x["id"] for x in doc["alerts"]] == [a["id"]], doc["alerts"]

    # between clear (80) and when (90): nothing changes, through timer ticks too
    send(pub, twin, base + 1000, temperature=85)
    applied(tw, twin, base + 1000)
    send(pub, twin, base + 1100, temperature=95)
    send(pub, twin, base + 1200, temperature=81)
    applied(tw, twin, base + 1200)
    stays(lambda: [(x["id"], x["active"]) for x in twin_alerts(tw, twin)] == [(a["id"], True)],
          TICK + 0.3, "the alert stays active between clear and when",
          show=lambda: twin_alerts(tw, twin))

    # below clear: cleared, on the twin clock
    send(pub, twin, base + 2000, temperature=75)
    c = wait_alert(tw, twin, lambda x: not x["active"], what="hy-1 cleared")
    assert c["id"] == a["id"] and c["cleared_ts"] is not None, c
    assert base + 2000 <= c["cleared_ts"] <= base + 5000, (c["cleared_ts"] - base, c)
    assert c["raised_ts"] == a["raised_ts"], (a, c)
    assert len(twin_alerts(tw, twin)) == 1
    assert tw.twin(twin)["active_alerts"] == 0
    assert tw.twin(twin)["alerts"] == []

    # MQTT: one message per change of state, QoS 1, not retained, REST shape
    sub.wait_for(lambda m: m.json()["active"] is False, 5, topic=f"plant/{twin}/alert",
                 what="the cleared alert on MQTT")
    time.sleep(0.3)
    msgs = mqtt_alerts(sub, twin)
    assert [m.json()["active"] for m in msgs] == [True, False], msgs
    for m in msgs:
        assert m.qos == 1 and not m.retain, m
        check_alert_shape(m.json())
        assert m.json()["id"] == a["id"], m
    assert msgs[0].json() == a, ("the raise on MQTT is the REST object", msgs[0].json(), a)
    assert msgs[1].json() == c, ("the clearing on MQTT is the REST object", msgs[1].json(), c)
    # SSE: the same two changes
    ev.wait_event(lambda e: e.data and e.data.get("twin") == twin and e.data["active"] is False,
                  5, etype="alert", what="the cleared alert as an SSE event")
    got = [e.data for e in ev.snapshot("alert") if e.data and e.data.get("twin") == twin]
    assert [(x["id"], x["active"]) for x in got] == [(a["id"], True), (a["id"], False)], got


def test_one_alert_per_episode(plant):
    tw, pub = plant.twind, plant.pub
    twin = "hy-2"
    m0 = tw.metric("twind_alerts_raised_total")
    r0 = rules_by_name(tw)["hyst"]["stats"]["raises"]
    base = now_ms() - 10_000
    pub.publish_many([(f"plant/{twin}/telemetry", {"ts": base + i * 50, "temperature": 91 + i})
                      for i in range(30)])
    applied(tw, twin, base + 29 * 50)
    stays(lambda: len(twin_alerts(tw, twin)) == 1, TICK + 0.3, "exactly one alert",
          show=lambda: twin_alerts(tw, twin))
    a = twin_alerts(tw, twin)[0]
    assert a["active"] and a["value"] == 91, ("the value that raised it", a)
    assert tw.metric("twind_alerts_raised_total") - m0 == 1
    assert rules_by_name(tw)["hyst"]["stats"]["raises"] - r0 == 1
    assert len(mqtt_alerts(plant.sub, twin)) == 1


def test_cooldown(plant):
    tw, pub = plant.twind, plant.pub
    twin = "cd-1"
    t0 = now_ms()
    send(pub, twin, t0, temperature=95)
    a1 = wait_alert(tw, twin)
    assert a1["severity"] == "warning", ("the default severity", a1)
    send(pub, twin, t0 + 100, temperature=70)
    wait_alert(tw, twin, lambda x: not x["active"], what="first episode cleared")
    # a second episode within the cooldown raises nothing, held over timer ticks
    send(pub, twin, t0 + 200, temperature=95)
    applied(tw, twin, t0 + 200)
    stays(lambda: len(twin_alerts(tw, twin)) == 1, 1.5, "no raise within the cooldown",
          show=lambda: twin_alerts(tw, twin))
    t1 = now_ms()
    assert t1 - t0 < 2800, "too slow to test the cooldown"
    send(pub, twin, t1, temperature=70)
    applied(tw, twin, t1)
    # after the cooldown a new episode raises again
    wait_until(lambda: now_ms() > t0 + 3300, 5)
    t2 = now_ms()
    send(pub, twin, t2, temperature=96)
    a2 = wait_alert(tw, twin, lambda x: x["active"] and x["id"] != a1["id"],
                    what="a raise after the cooldown")
    assert a2["raised_ts"] - a1["raised_ts"] >= 3000, (a1, a2)
    assert len(twin_alerts(tw, twin)) == 2


def test_cooldown_held_condition_raises_when_it_ends(plant):
    """The condition holds across the end of the cooldown: the timer raises."""
    tw, pub = plant.twind, plant.pub
    twin = "cd-2"
    t0 = now_ms()
    send(pub, twin, t0, temperature=95)
    a1 = wait_alert(tw, twin)
    send(pub, twin, t0 + 100, temperature=70)
    send(pub, twin, t0 + 200, temperature=95)
    wait_alert(tw, twin, lambda x: not x["active"], what="first episode cleared")
    a2 = wait_alert(tw, twin, lambda x: x["active"] and x["id"] != a1["id"],
                    timeout=3 + TICK + SLACK + 1, what="the raise when the cooldown ends")
    assert 3000 <= a2["raised_ts"] - a1["raised_ts"] <= 3000 + (TICK + SLACK) * 1000, (a1, a2)


# --------------------------------------------------------------------------
# acknowledgement and shelving


def test_ack_and_ack_survives_clear(plant):
    tw, pub, sub = plant.twind, plant.pub, plant.sub
    twin = "hy-ack"
    t0 = now_ms()
    send(pub, twin, t0, temperature=95)
    a = wait_alert(tw, twin)
    assert [x["id"] for x in alerts(tw, twin=twin, state="unacknowledged")] == [a["id"]]

    w0 = now_ms()
    r = tw.request("POST", f"/api/v1/alerts/{a['id']}/ack")
    assert r.status_code == 200, (r.status_code, r.text)
    acked = r.json()
    check_alert_shape(acked)
    assert acked["id"] == a["id"] and acked["acknowledged"] is True and acked["active"], acked
    assert w0 - 1000 <= acked["acked_ts"] <= now_ms() + 1000, acked
    assert alerts(tw, twin=twin, state="unacknowledged") == []
    assert [x["id"] for x in alerts(tw, twin=twin, state="active")] == [a["id"]]
    # idempotent: the first acknowledgement's time stays
    r = tw.request("POST", f"/api/v1/alerts/{a['id']}/ack")
    assert r.status_code == 200 and r.json()["acked_ts"] == acked["acked_ts"], r.text
    sub.wait_for(lambda m: m.json()["acknowledged"] is True, 5, topic=f"plant/{twin}/alert",
                 what="the acknowledgement on MQTT")

    send(pub, twin, t0 + 100, temperature=70)
    c = wait_alert(tw, twin, lambda x: not x["active"], what="cleared")
    assert c["acknowledged"] is True and c["acked_ts"] == acked["acked_ts"], c
    assert [x["id"] for x in alerts(tw, twin=twin, state="cleared")] == [a["id"]]
    assert alerts(tw, twin=twin, state="active") == []
    # what is published on clearing keeps the acknowledgement too
    m = sub.wait_for(lambda m: m.json()["active"] is False, 5, topic=f"plant/{twin}/alert",
                     what="the cleared alert on MQTT")
    ev = plant.events.wait_event(
        lambda e: e.data and e.data.get("twin") == twin and e.data["active"] is False, 5,
        etype="alert", what="the cleared alert as an SSE event")
    problems = [(where, {k: got.get(k) for k in ("acknowledged", "acked_ts")})
                for where, got in (("MQTT", m.json()), ("SSE", ev.data))
                if got.get("acknowledged") is not True or got.get("acked_ts") != acked["acked_ts"]]
    assert not problems, ("the published clearing forgets the acknowledgement",
                          acked["acked_ts"], problems)


def test_alert_filters_and_errors(plant):
    tw = plant.twind
    twin = "hy-ack"             # from the test above: cleared, acknowledged, major
    assert [a["twin"] for a in alerts(tw, twin=twin, severity="major")] == [twin]
    assert alerts(tw, twin=twin, severity="critical") == []
    for params in ({"state": "open"}, {"severity": "fatal"}):
        r = tw.get("/api/v1/alerts", params=params)
        assert r.status_code == 400 and r.json()["error"]["code"], (params, r.text)
    r = tw.request("POST", "/api/v1/alerts/999999999/ack")
    assert r.status_code == 404 and r.json()["error"]["code"], r.text
    for bad in ("abc", "0", "-1", "1x"):
        r = tw.request("POST", f"/api/v1/alerts/{bad}/ack")
        assert r.status_code == 400 and r.json()["error"]["code"], (bad, r.status_code, r.text)
    r = tw.request("POST", "/api/v1/alerts/999999999/shelve", json={"for": "2s"})
    assert r.status_code == 404, r.text
    some = alerts(tw, twin=twin)[0]["id"]
    for body in ('{"for":"soon"}', '{}', 'nope', '{"for":5}'):
        r = tw.request("POST", f"/api/v1/alerts/{some}/shelve", data=body)
        assert r.status_code == 400, (body, r.status_code, r.text)


def test_shelve_and_expiry(plant):
    tw, pub = plant.twind, plant.pub
    twin = "hy-sh"
    t0 = now_ms()
    send(pub, twin, t0, temperature=95)
    a = wait_alert(tw, twin)
    w0 = now_ms()
    r = tw.request("POST", f"/api/v1/alerts/{a['id']}/shelve", json={"for": "2s"})
    w1 = now_ms()
    assert r.status_code == 200, (r.status_code, r.text)
    sh = r.json()
    check_alert_shape(sh)
    until = sh["shelved_until_ts"]
    assert w0 + 2000 - 50 <= until <= w1 + 2000 + 50, (until - w0, sh)
    assert alerts(tw, twin=twin, state="active") == []
    assert [x["id"] for x in alerts(tw, twin=twin, state="shelved")] == [a["id"]]

    # the episode ends and a new one starts while shelved: no new alert
    send(pub, twin, t0 + 100, temperature=70)
    wait_alert(tw, twin, lambda x: not x["active"], what="cleared while shelved")
    send(pub, twin, t0 + 200, temperature=95)
    applied(tw, twin, t0 + 200)
    while now_ms() < until - 150:
        assert len(twin_alerts(tw, twin)) == 1, ("raised while shelved", twin_alerts(tw, twin))
        time.sleep(0.1)
    # the shelf expires: the rule raises again (the condition still holds)
    b = wait_alert(tw, twin, lambda x: x["active"] and x["id"] != a["id"],
                   timeout=TICK + SLACK + 1, what="a raise after the shelf expired")
    assert b["raised_ts"] >= until - 300, (b["raised_ts"] - until, b)
    assert [x["id"] for x in alerts(tw, twin=twin, state="active")] == [b["id"]]
    assert alerts(tw, twin=twin, state="shelved") == []


# --------------------------------------------------------------------------
# age, zscore and the other functions


def test_age_of_silent_twin_grows_on_timer(plant):
    tw, pub = plant.twind, plant.pub
    twin = "ag-1"
    t0 = now_ms()
    send(pub, twin, t0, temperature=1)
    applied(tw, twin, t0)
    a = wait_alert(tw, twin, timeout=2 + TICK + SLACK + 1, what="age() > 2 on the timer")
    assert a["rule"] == "silent" and a["severity"] == "info" and a["message"] == "ag-1 silent", a
    assert 2000 <= a["raised_ts"] - t0 <= 2000 + (TICK + SLACK) * 1000, (a["raised_ts"] - t0)
    t1 = now_ms()
    send(pub, twin, t1, temperature=2)
    c = wait_alert(tw, twin, lambda x: not x["active"], timeout=TICK + SLACK + 1,
                   what="cleared (default clear: when no longer holds) once the twin speaks")
    assert c["id"] == a["id"] and c["cleared_ts"] >= t1, c


def test_zscore_spike(plant):
    tw, pub = plant.twind, plant.pub
    twin = "zs-1"
    base = now_ms() - 20_000
    noise = [5 + 0.1 * (((i * 7) % 11) - 5) / 5 for i in range(60)]
    pub.publish_many([(f"plant/{twin}/telemetry", {"ts": base + i * 200, "vibration": v})
                      for i, v in enumerate(noise)])
    applied(tw, twin, base + 59 * 200)
    stays(lambda: twin_alerts(tw, twin) == [], 0.5, "no alert on steady noise",
          show=lambda: twin_alerts(tw, twin))
    send(pub, twin, base + 60 * 200, vibration=10)
    a = wait_alert(tw, twin, what="zscore spike")
    assert a["rule"] == "spike" and a["value"] == 10 and a["message"] == "spike 10", a
    # back to normal: |z| < 2 clears it
    send(pub, twin, base + 61 * 200, vibration=5.0)
    wait_alert(tw, twin, lambda x: not x["active"], what="spike cleared")


def test_functions(plant):
    tw, pub = plant.twind, plant.pub
    twin = "fn-1"
    base = now_ms() - 4000
    pub.publish(f"plant/{twin}/telemetry", {"ts": base - 100, "mode": "auto"})
    pub.publish_many([(f"plant/{twin}/telemetry", {"ts": base + i * 1000, "temperature": v})
                      for i, v in enumerate([10, 20, 30, 40, 50])])
    applied(tw, twin, base + 4000)

    def raised():
        return {a["rule"] for a in twin_alerts(tw, twin)}
    wait_until(lambda: set(FN_POS) <= raised(), 3,
               what=f"every function rule raised; missing: {set(FN_POS) - raised()}")
    time.sleep(TICK + 0.2)
    got = raised()
    assert not (got & set(FN_NEG)), sorted(got & set(FN_NEG))
    assert all(len(twin_alerts(tw, twin, r)) == 1 for r in FN_POS)


# --------------------------------------------------------------------------
# roll-up, actions


def test_rollup_to_parent(plant):
    tw, pub = plant.twind, plant.pub
    assert tw.twin("rl-line")["rollup"]["active_alerts"] == 0
    t0 = now_ms()
    send(pub, "rl-p1", t0, temperature=95)
    wait_alert(tw, "rl-p1")
    wait_until(lambda: tw.twin("rl-line")["rollup"]["active_alerts"] == 1, 5, what="roll-up 1")
    send(pub, "rl-p2", t0, temperature=99)
    wait_alert(tw, "rl-p2")
    wait_until(lambda: tw.twin("rl-line")["rollup"]["active_alerts"] == 2, 5, what="roll-up 2")
    listed = {t["id"]: t for t in tw.get("/api/v1/twins", params={"parent": "rl-line"})
              .json()["twins"]}
    assert listed["rl-p1"]["active_alerts"] == 1 and listed["rl-p2"]["active_alerts"] == 1, listed
    assert tw.twin("rl-p1")["active_alerts"] == 1
    send(pub, "rl-p1", t0 + 100, temperature=50)       # default clear
    wait_alert(tw, "rl-p1", lambda a: not a["active"], what="rl-p1 cleared")
    wait_until(lambda: tw.twin("rl-line")["rollup"]["active_alerts"] == 1, 5,
               what="roll-up back to 1")
    assert tw.twin("rl-p1")["active_alerts"] == 0


def test_command_action_acked_by_asset(plant):
    tw, pub, sub = plant.twind, plant.pub, plant.sub
    t0 = now_ms() - 500
    send(pub, "cm-1", t0, temperature=95)
    send(pub, "cm-2", t0, temperature=96)          # never answered: timed_out
    m = sub.wait_for(lambda m: True, 5, topic="plant/cm-1/cmd", what="the command on MQTT")
    cmd = m.json()
    assert set(cmd) == {"id", "twin", "command", "params", "rule", "source_ts", "issued_ts",
                        "expires_ts"}, cmd
    assert cmd["expires_ts"] - cmd["issued_ts"] == 300000, cmd   # [commands] ttl, 5 min
    assert cmd["twin"] == "cm-1" and cmd["command"] == "reduce_load", cmd
    assert cmd["params"] == {"percent": 20} and cmd["rule"] == "cm_cmd", cmd
    assert cmd["source_ts"] == t0, (cmd, t0)
    assert abs(cmd["issued_ts"] - now_ms()) < 5000, cmd
    assert m.qos == 1 and not m.retain, m
    a = wait_alert(tw, "cm-1")
    assert a["rule"] == "cm_cmd"

    def command(twin, status):
        r = tw.get("/api/v1/commands", params={"twin": twin})
        assert r.status_code == 200, r.text
        cs = r.json()["commands"]
        assert len(cs) == 1, cs
        return cs[0] if cs[0]["status"] == status else None
    c = wait_until(lambda: command("cm-1", "sent"), 5, what="command sent")
    assert c["id"] == cmd["id"] and c["rule"] == "cm_cmd" and c["params"] == {"percent": 20}, c
    assert c["source_ts"] == t0, c

    pub.publish("plant/cm-1/cmd/ack", {"id": cmd["id"], "status": "done", "detail": "at 80 %"})
    c = wait_until(lambda: command("cm-1", "done"), 5, what="command done")
    assert "at 80 %" in json.dumps(c), ("the asset's detail is kept", c)
    plant.events.wait_event(lambda e: e.data and e.data.get("id") == cmd["id"]
                            and e.data.get("status") == "done", 5, etype="command")
    # cm-2 was never answered: timed_out after [commands] timeout (2 s)
    c2 = wait_until(lambda: command("cm-2", "timed_out"), 2 + TICK + SLACK + 2,
                    what="cm-2 timed_out")
    assert c2["rule"] == "cm_cmd", c2
    # one raise, one command: more readings above the threshold add none
    send(pub, "cm-1", t0 + 100, temperature=97)
    applied(tw, "cm-1", t0 + 100)
    time.sleep(0.3)
    assert len(sub.messages("plant/cm-1/cmd")) == 1


def test_desired_action(plant):
    tw, pub = plant.twind, plant.pub
    v0 = tw.version("ds-1")
    t0 = now_ms()
    send(pub, "ds-1", t0, temperature=95)
    wait_alert(tw, "ds-1")
    doc = wait_until(lambda: (lambda d: d if d["desired"].get("speed") else None)(
        tw.twin("ds-1")), 5, what="desired speed set by the rule")
    assert doc["desired"]["speed"]["value"] == 900, doc["desired"]
    assert doc["delta"] == {"speed": 900}, doc["delta"]
    assert doc["version"] >= v0 + 2, ("reported and desired both grow the version", doc)
    m = wait_until(lambda: (lambda m: m if m and m.payload else None)(
        retained(plant.broker.port, "plant/ds-1/desired")), 5, what="retained delta")
    assert m.json() == {"speed": 900}, m

    # a desired action on a property that is not writable changes nothing and is counted
    e0 = rules_by_name(tw)["dx_bad"]["stats"]["errors"]
    send(pub, "dx-1", t0, temperature=95)
    wait_alert(tw, "dx-1")
    wait_until(lambda: rules_by_name(tw)["dx_bad"]["stats"]["errors"] > e0, 5,
               what="dx_bad error counted")
    doc = tw.twin("dx-1")
    assert doc["desired"] == {} and doc["delta"] == {}, doc


# --------------------------------------------------------------------------
# the rules as loaded


def test_rules_listed_with_stats(plant):
    tw = plant.twind
    got = rules_by_name(tw)
    assert list(got) == [r["name"] for r in RULES], ("order of the file", list(got))
    for rule in RULES:
        g = dict(got[rule["name"]])
        stats = g.pop("stats")
        assert set(stats) == {"evaluations", "raises", "clears", "errors",
                              "cost_ns_per_evaluation"}, stats
        for k, v in rule.items():
            assert g.get(k) == v, (rule["name"], k, g.get(k), v)
    h = got["hyst"]["stats"]
    assert h["evaluations"] > 0 and h["raises"] >= 4 and h["clears"] >= 3, h
    assert h["cost_ns_per_evaluation"] > 0, h
    assert got["fn_neg_unknown"]["stats"]["raises"] == 0
    # the metric counts every raise
    total = len(alerts(tw))
    assert tw.metric("twind_alerts_raised_total") == total, \
        (tw.metric("twind_alerts_raised_total"), total)


# --------------------------------------------------------------------------
# restart, reload, --check: each with its own daemon


def rules_twind(make_twind, tmp_path, rules):
    rfile = tmp_path / "rules.json"
    rfile.write_text(json.dumps(rules, indent=1))
    t = make_twind(extra={"rules": {"file": str(rfile)}})
    t.rfile = rfile
    return t


HOT = {"name": "hot", "when": "temperature > 90", "clear": "temperature < 80",
       "severity": "critical", "message": "{twin} {temperature}"}


def test_alerts_survive_restart(make_twind, publisher, tmp_path):
    tw = rules_twind(make_twind, tmp_path, [HOT])
    twin = "rs-1"
    t0 = now_ms()
    send(publisher, twin, t0, temperature=95)
    a = wait_alert(tw, twin)
    r = tw.request("POST", f"/api/v1/alerts/{a['id']}/ack")
    assert r.status_code == 200, r.text
    acked = r.json()
    assert tw.stop() == 0

    tw.start()
    after = twin_alerts(tw, twin)
    assert len(after) == 1, after
    b = after[0]
    assert b["id"] == a["id"] and b["active"] is True, (a, b)
    assert b["acknowledged"] is True and b["acked_ts"] == acked["acked_ts"], b
    assert b["raised_ts"] == a["raised_ts"], (a, b)
    assert tw.twin(twin)["active_alerts"] == 1
    # the same episode goes on: no new alert, on an update nor on the timer
    send(publisher, twin, t0 + 1000, temperature=97)
    applied(tw, twin, t0 + 1000)
    stays(lambda: len(twin_alerts(tw, twin)) == 1, TICK + 0.3, "no duplicate after restart",
          show=lambda: twin_alerts(tw, twin))
    # and it clears as itself
    send(publisher, twin, t0 + 2000, temperature=70)
    c = wait_alert(tw, twin, lambda x: not x["active"], what="cleared after restart")
    assert c["id"] == a["id"] and c["acknowledged"] is True, c
    assert len(twin_alerts(tw, twin)) == 1


def test_cooldown_survives_restart(make_twind, publisher, tmp_path):
    """An episode that ended before a restart still holds back the next raise
    for the rest of its cooldown: a restart must not repeat the alert."""
    rule = {"name": "cool_long", "when": "temperature > 90", "clear": "temperature < 80",
            "cooldown": "1m"}
    tw = rules_twind(make_twind, tmp_path, [rule])
    twin = "rs-cd"
    t0 = now_ms()
    send(publisher, twin, t0, temperature=95)
    wait_alert(tw, twin)
    send(publisher, twin, t0 + 100, temperature=70)
    wait_alert(tw, twin, lambda x: not x["active"], what="cleared before the restart")
    assert tw.stop() == 0
    tw.start()
    t1 = now_ms()
    send(publisher, twin, t1, temperature=95)
    applied(tw, twin, t1)
    stays(lambda: len(twin_alerts(tw, twin)) == 1, TICK + 0.3,
          "no second raise within the cooldown, across a restart",
          show=lambda: twin_alerts(tw, twin))


def test_sighup_changed_rule_keeps_one_open_alert(make_twind, publisher, tmp_path):
    """A rule changed by a reload (same name, new clear) while its alert is
    open: still one open alert per twin and rule, and the new clear ends it."""
    tw = rules_twind(make_twind, tmp_path, [HOT])
    twin = "hup-ch"
    t0 = now_ms() - 5000
    send(publisher, twin, t0, temperature=95)
    a = wait_alert(tw, twin)
    tw.rfile.write_text(json.dumps([dict(HOT, clear="temperature < 70")]))
    tw.hup()
    wait_until(lambda: rules_by_name(tw)["hot"]["clear"] == "temperature < 70", 5,
               what="the changed rule in force")
    send(publisher, twin, t0 + 100, temperature=96)
    applied(tw, twin, t0 + 100)
    time.sleep(TICK + 0.3)
    active = [x for x in twin_alerts(tw, twin) if x["active"]]
    assert [x["id"] for x in active] == [a["id"]], ("open alerts of rule hot on one twin",
                                                    active)
    send(publisher, twin, t0 + 200, temperature=65)
    applied(tw, twin, t0 + 200)
    wait_until(lambda: not [x for x in twin_alerts(tw, twin) if x["active"]], TICK + SLACK + 1,
               what=f"no open alert once the new clear holds; have {twin_alerts(tw, twin)}")


def test_sighup_good_then_bad_rules(make_twind, publisher, tmp_path):
    counter = {"name": "counter", "when": "count_over(temperature, 1m) >= 5",
               "severity": "info"}
    gone = {"name": "gone", "when": "temperature > 1000"}
    tw = rules_twind(make_twind, tmp_path, [HOT, counter, gone])
    twin = "hup-1"
    t0 = now_ms() - 5000
    for i in range(4):
        send(publisher, twin, t0 + i * 100, temperature=95)
    applied(tw, twin, t0 + 300)
    a = wait_alert(tw, twin, rule="hot")
    stays(lambda: [x["rule"] for x in twin_alerts(tw, twin)] == ["hot"], 0.3, "only hot",
          show=lambda: twin_alerts(tw, twin))
    e0 = rules_by_name(tw)["hot"]["stats"]["evaluations"]
    assert e0 >= 4

    # a good file: hot and counter unchanged, gone removed, fresh added
    fresh = {"name": "fresh", "when": "temperature > 10", "severity": "info"}
    tw.rfile.write_text(json.dumps([HOT, counter, fresh], indent=1))
    tw.hup()
    wait_until(lambda: list(rules_by_name(tw)) == ["hot", "counter", "fresh"], 5,
               what="the new rules in force")
    assert rules_by_name(tw)["hot"]["stats"]["evaluations"] >= e0, "stats of an unchanged rule"
    send(publisher, twin, t0 + 400, temperature=96)
    # counter's window kept its four points: the fifth raises it
    wait_alert(tw, twin, rule="counter", what="counter raised with the window kept")
    wait_alert(tw, twin, rule="fresh", what="the new rule applies")
    hot = twin_alerts(tw, twin, "hot")
    assert [(x["id"], x["active"]) for x in hot] == [(a["id"], True)], ("open alert kept", hot)
    before = rules_by_name(tw)

    # a bad file: refused as a whole, the rules in force stay and still raise
    bad = dict(HOT, clear="temperature < 70")
    tw.rfile.write_text(json.dumps([bad, counter, fresh,
                                    {"name": "broken", "when": "temperature >> 3"}], indent=1))
    log0 = len(tw.log())
    tw.hup()
    wait_until(lambda: "broken" in tw.log()[log0:], 5, what="the refusal in the log")
    assert "column" in tw.log()[log0:], tw.log()[log0:]
    time.sleep(0.3)
    assert tw.running()
    now = rules_by_name(tw)
    assert list(now) == list(before)
    for name in now:
        assert {k: v for k, v in now[name].items() if k != "stats"} == \
            {k: v for k, v in before[name].items() if k != "stats"}, name
    send(publisher, twin, t0 + 500, temperature=75)      # clears under the old clear (< 80)
    c = wait_alert(tw, twin, lambda x: not x["active"], rule="hot", what="hot cleared at 75")
    assert c["id"] == a["id"]
    send(publisher, twin, t0 + 600, temperature=99)
    wait_alert(tw, twin, lambda x: x["active"] and x["id"] != a["id"], rule="hot",
               what="the old rules still raise")


def write_check_conf(tmp_path, rules_text):
    rfile = tmp_path / "rules.json"
    rfile.write_text(rules_text)
    conf = tmp_path / "twind.conf"
    conf.write_text(f"[mqtt]\nhost = 127.0.0.1\nport = {free_port()}\nclient_id = rules-check\n"
                    f"[http]\nlisten = 127.0.0.1:{free_port()}\n"
                    f"[storage]\ndatabase = {tmp_path}/twind.db\n"
                    f"[rules]\nfile = rules.json\n")
    return conf


def run_twind(args, cwd, timeout=10):
    return subprocess.run([str(TWIND_BIN), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_check_good_rules(tmp_path):
    conf = write_check_conf(tmp_path, json.dumps(RULES))
    r = run_twind(["-c", str(conf), "--check"], tmp_path)
    assert r.returncode == 0, (r.returncode, r.stderr)


@pytest.mark.parametrize("rule,expect", [
    pytest.param({"name": "bad_when", "when": "temperature > > 3"},
                 ["rules.json", "bad_when", "when: column 15"], id="when-column"),
    pytest.param({"name": "bad_clear", "when": "x > 1", "clear": "x < (2 + "},
                 ["rules.json", "bad_clear", "clear: column"], id="clear"),
    pytest.param({"name": "bad_fn", "when": "x > 1 and nosuchfn(x) > 2"},
                 ["bad_fn", "when: column 11"], id="unknown-function"),
    pytest.param({"name": "bad_dur", "when": "x > 5m"},
                 ["bad_dur", "when: column 5"], id="duration-outside-window"),
    pytest.param({"name": "bad_chain", "when": "1 < x < 3"},
                 ["bad_chain", "when: column"], id="chained-comparison"),
    pytest.param({"name": "bad_let", "let": {"x": "temperature >"}, "when": "x"},
                 ["rules.json", "bad_let", "let x: column 14"], id="let-column"),
    pytest.param({"name": "bad_let_name", "let": {"and": "1"}, "when": "1 > 0"},
                 ["bad_let_name", "let and", "neither a keyword"], id="let-name"),
    pytest.param({"name": "bad_let_type", "let": ["x"], "when": "1 > 0"},
                 ["bad_let_type", '"let" must be an object'], id="let-type"),
    pytest.param({"name": "bad_sens", "when": "anomaly(t, 0) > 0.9"},
                 ["bad_sens", "when: column 12", "number in (0, 100]"], id="anomaly-sensitivity"),
    pytest.param({"name": "bad_q", "when": "quantile_over(t, 1h, 95) > 9"},
                 ["bad_q", "when: column 22", "number in [0, 1]"], id="quantile-out-of-range"),
    pytest.param({"name": "bad_sev", "when": "x > 1", "severity": "fatal"},
                 ["bad_sev", "fatal"], id="severity"),
    pytest.param({"name": "bad_key", "when": "x > 1", "wen": "x > 2"},
                 ["bad_key", "wen"], id="unknown-key"),
    pytest.param({"name": "bad name", "when": "x > 1"}, ["name"], id="name-charset"),
    pytest.param({"name": "bad_for", "when": "x > 1", "for": "soon"},
                 ["bad_for", "for"], id="bad-for"),
])
def test_check_bad_rules(tmp_path, rule, expect):
    conf = write_check_conf(tmp_path, json.dumps([{"name": "fine", "when": "x > 1"}, rule]))
    r = run_twind(["-c", str(conf), "--check"], tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    for e in expect:
        assert e in r.stderr, (e, r.stderr)


def test_bad_rules_at_start_exit_2(tmp_path):
    conf = write_check_conf(tmp_path, json.dumps([{"name": "a", "when": "temperature >"}]))
    r = run_twind(["-c", str(conf)], tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "rules.json" in r.stderr and "when: column" in r.stderr, r.stderr
