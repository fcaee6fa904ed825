"""Backtest (POST /api/v1/rules/test): a rule replayed over the history stored
through MQTT gives exactly the alerts this test computes with the same
semantics; a rule in force by name; a from/to window; nothing changes
anywhere; every bad body; the bounds (413) and one at a time (429); and
ingestion keeps flowing while backtests run."""

import json
import threading
import time

import pytest

from conftest import (Broker, Publisher, Stack, StreamPublisher, Twind, metric_value, now_ms,
                      wait_until)

BASE = now_ms() - 3 * 3600 * 1000          # the replayed history is three hours old
HOT = {"name": "hot", "match": {"twins": "bt-*"}, "when": "temperature > 90", "for": "7s",
       "clear": "temperature < 80", "cooldown": "30s"}


def series_1():
    """Every 5 s for 10 min: 70, with spells of 95 of 1 to 5 readings and a spell of 85."""
    vals = [70.0] * 120
    for start, n, v in [(10, 1, 95), (20, 2, 95), (30, 3, 95), (40, 5, 95), (50, 2, 85),
                        (60, 4, 95), (66, 3, 95), (100, 6, 95)]:
        for k in range(n):
            vals[start + k] = v
    return [(BASE + 5000 * i, v) for i, v in enumerate(vals)]


def series_2():
    """Irregular: gaps of 1 to 13 s; a long hot spell that the cooldown splits."""
    out, ts = [], BASE
    for i in range(150):
        ts += 1000 + (i * 7919) % 12000
        out.append((ts, 95.0 if 40 <= i < 90 or i % 17 == 0 else 60.0 + i % 9))
    return out


def gap_series():
    """Every 5 s for 50 s, silent for 100 s, then every 5 s again."""
    return [BASE + 5000 * i for i in range(11)] + [BASE + 150_000 + 5000 * i for i in range(10)]


def reference(points, rule=HOT, to=None):
    """The backtest's semantics, written out: judged after each reading and at
    each `for` (or cooldown) deadline between two, as the live timer does."""
    f, c = 7000, 30000
    when = lambda v: v > 90          # noqa: E731
    clear = lambda v: v < 80         # noqa: E731
    out, open_, since, raised, cur = [], False, 0, 0, None

    def judge(now, v):
        nonlocal open_, since, raised
        if open_:
            if clear(v):
                out[-1]["cleared_ts"] = now
                open_, since = False, 0
            return
        if not when(v):
            since = 0
            return
        if since == 0:
            since = now
        if now - since >= f and (raised == 0 or now - raised >= c):
            out.append({"raised_ts": now, "cleared_ts": None, "value": v})
            open_, raised = True, now

    def timer(until):
        while cur is not None and not open_ and since:
            d = since + f
            if raised and raised + c > d:
                d = raised + c
            if d >= until:
                return
            judge(d, cur)

    for ts, v in points:
        timer(ts)
        cur = v
        judge(ts, v)
    timer((to if to is not None else points[-1][0] + 10**9) + 1)
    return out


class Plant:
    pass


@pytest.fixture(scope="module")
def plant(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("backtest")
    s = Stack()
    b = Broker(base / "broker")
    s.brokers.append(b)
    try:
        b.start()
        rfile = base / "rules.json"
        rfile.write_text(json.dumps([HOT]))
        t = Twind(base / "twind", b, {"rules": {"file": str(rfile),
                                                "backtest_max_points": "30000"}})
        s.twinds.append(t)
        t.start()
        p = Publisher(b.port)
        s.pubs.append(p)
        msgs = [("plant/bt-1/telemetry", {"ts": ts, "temperature": v}) for ts, v in series_1()]
        msgs += [("plant/bt-2/telemetry", {"ts": ts, "temperature": v}) for ts, v in series_2()]
        msgs += [("plant/gap-1/telemetry", {"ts": ts, "a": 1}) for ts in gap_series()]
        # 40 twins x 1000 readings: enough work for the bounds and the concurrency
        msgs += [(f"plant/load-{k}/telemetry", {"ts": BASE + 1000 * i, "temperature":
                 50 + (i * 37 + k) % 50}) for k in range(40) for i in range(1000)]
        p.publish_many(msgs, timeout=120)
        want = len(series_1()) + len(series_2()) + len(gap_series()) + 40000
        wait_until(lambda: t.metric("twind_values_stored_total") >= want, 60,
                   what="the history stored")
        pl = Plant()
        pl.broker, pl.twind, pl.pub = b, t, p
        yield pl
    finally:
        s.cleanup(show_logs=request.session.testsfailed > 0)


def backtest(tw, **body):
    return tw.request("POST", "/api/v1/rules/test", json=body)


def test_exactly_the_alerts_computed_here(plant):
    rule = dict(HOT, name="hot_test")
    r = backtest(plant.twind, rule=rule, twins="bt-*", **{"from": BASE - 1, "to": now_ms()})
    assert r.status_code == 200, r.text
    got = r.json()
    want = {"bt-1": reference(series_1()), "bt-2": reference(series_2())}
    assert want["bt-1"] and want["bt-2"], "the series must raise"
    # the deadline path is exercised: some raise falls between two readings
    assert any(a["raised_ts"] not in {ts for ts, _ in series_1()} for a in want["bt-1"])
    for twin in ("bt-1", "bt-2"):
        mine = [{k: a[k] for k in ("raised_ts", "cleared_ts", "value")}
                for a in got["alerts"] if a["twin"] == twin]
        assert mine == want[twin], (twin, mine, want[twin])
        assert got["counts"][twin] == len(want[twin])
    assert got["twins"] == 2 and got["rule"] == "hot_test" and got["truncated"] is False
    assert got["points"] == len(series_1()) + len(series_2())


def test_a_rule_in_force_by_name_and_a_window(plant):
    pts = series_1()
    frm, to = pts[35][0], pts[80][0]
    r = backtest(plant.twind, name="hot", twins="bt-1", **{"from": frm, "to": to})
    assert r.status_code == 200, r.text
    want = reference([p for p in pts if frm <= p[0] <= to], to=to)
    got = [{k: a[k] for k in ("raised_ts", "cleared_ts", "value")} for a in r.json()["alerts"]]
    assert got == want and r.json()["twins"] == 1


def test_changes_nothing(plant):
    tw = plant.twind
    alerts = tw.get("/api/v1/alerts", params={"limit": 1000}).json()
    rules = tw.get("/api/v1/rules").json()
    twin = tw.twin("bt-1")
    m = tw.metrics()
    db = tw.db_connect()
    rows = db.execute("SELECT count(*) FROM history").fetchone()[0]
    r = backtest(tw, name="hot", **{"from": "-4h"})
    assert r.status_code == 200, r.text
    assert tw.get("/api/v1/alerts", params={"limit": 1000}).json() == alerts
    assert tw.get("/api/v1/rules").json()["rules"][0]["stats"] == rules["rules"][0]["stats"]
    assert tw.twin("bt-1") == twin
    m2 = tw.metrics()
    for k in ("twind_alerts_raised_total", "twind_rule_evaluations_total",
              "twind_values_stored_total", "twind_commands_total"):
        assert metric_value(m2, k) == metric_value(m, k), k
    assert db.execute("SELECT count(*) FROM history").fetchone()[0] == rows
    db.close()


def test_time_moves_between_readings(plant):
    """age() grows through a gap as the live 1-s timer sees it: judged each second."""
    r = backtest(plant.twind, rule={"name": "silent", "when": "age(a) > 30"}, twins="gap-1",
                 **{"from": BASE - 1, "to": BASE + 200_000})
    assert r.status_code == 200, r.text
    got = r.json()
    last, back = BASE + 50_000, BASE + 150_000
    assert [(a["raised_ts"], a["cleared_ts"]) for a in got["alerts"]] == [(last + 31_000, back)]
    assert got["points"] == 21 and got["ticks"] >= 100, got


@pytest.mark.parametrize("rule,needle", [
    ({"name": "r", "when": "true"}, "reads no property"),
    ({"name": "r", "when": "age() > 60"}, "reads no property"),
    ({"name": "r", "when": "age() > 60 and a > 0"}, "age() of the whole twin"),
])
def test_rules_a_replay_cannot_judge(plant, rule, needle):
    r = backtest(plant.twind, rule=rule, **{"from": 0})
    assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text


def test_bounded_in_time(make_twind, make_publisher):
    """backtest_max_time: 1 ms of work is less than 16,000 readings take."""
    tw = make_twind(extra={"rules": {"backtest_max_time": "1ms"}})
    pub = make_publisher()
    base = now_ms() - 3600_000
    pub.publish_many([("plant/tb-1/telemetry", {"ts": base + i, **{f"p{k}": i % 7 for k in range(8)}})
                      for i in range(2000)], timeout=60)
    wait_until(lambda: tw.metric("twind_values_stored_total") >= 16000, 30, what="stored")
    rule = {"name": "sum", "when": " + ".join(f"p{k}" for k in range(8)) + " > 1000"}
    r = backtest(tw, rule=rule, **{"from": 0})
    assert r.status_code == 413, r.text
    assert "more than 1 ms of work" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("body,status,code", [
    ({}, 400, "bad_request"),
    ({"name": "hot"}, 400, "bad_request"),                          # no from
    ({"name": "hot", "rule": HOT, "from": 0}, 400, "bad_request"),
    ({"name": "nope", "from": 0}, 404, "not_found"),
    ({"rule": dict(HOT, when="temperature >"), "from": 0}, 400, "bad_rule"),
    ({"rule": [HOT], "from": 0}, 400, "bad_rule"),
    ({"name": "hot", "from": "yesterday"}, 400, "bad_request"),
    ({"name": "hot", "from": 10, "to": 5}, 400, "bad_request"),
    ({"name": "hot", "from": 0, "to": "9223372036854775807"}, 400, "bad_request"),
    ({"name": "hot", "from": 0, "twins": 7}, 400, "bad_request"),
    ({"name": "hot", "from": 0, "twins": "x" * 200}, 400, "bad_request"),
])
def test_bad_bodies(plant, body, status, code):
    r = backtest(plant.twind, **body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    if code == "bad_rule":
        assert "rule" in r.json()["error"]["message"], r.text


def test_bad_rule_names_its_column(plant):
    r = backtest(plant.twind, rule=dict(HOT, when="temperature >"), **{"from": 0})
    assert "when: column 14" in r.json()["error"]["message"], r.text


def test_bounded(plant):
    """30,000 readings at most: all twins is more than that."""
    r = backtest(plant.twind, rule=dict(HOT, match={}), **{"from": 0})
    assert r.status_code == 413, r.text
    assert "more than 30000 readings" in r.json()["error"]["message"], r.text
    # within the bound it answers
    r = backtest(plant.twind, rule=dict(HOT, match={}), twins="load-1*", **{"from": 0})
    assert r.status_code == 200 and r.json()["twins"] == 11, r.text


def test_one_at_a_time_and_ingestion_flows(plant):
    tw = plant.twind
    heavy = {"name": "heavy", "when": "anomaly(temperature) > 0.9999 and "
             "ewma(temperature, 1m) > 1000"}
    stop, codes, took = threading.Event(), [], []

    def runner():
        while not stop.is_set():
            t0 = time.monotonic()
            r = backtest(tw, rule=heavy, twins="load-[0-2]*", **{"from": 0})
            took.append(time.monotonic() - t0)
            codes.append(r.status_code)

    now = now_ms()
    msgs = [(f"plant/live-{i % 10}/telemetry", {"ts": now + i, "x": i}) for i in range(3000)]
    sp = StreamPublisher(plant.pub, msgs, rate=1000)
    threads = [threading.Thread(target=runner, daemon=True) for _ in range(2)]
    sp.start()
    for t in threads:
        t.start()
    acked = sp.wait_acked(30)
    stop.set()
    for t in threads:
        t.join(60)
    assert len(acked) == 3000, f"{len(acked)} of 3000 acknowledged while backtests ran"
    assert codes.count(200) >= 2, codes
    assert 429 in codes, (codes, took)       # two runners, one backtest at a time
    assert set(codes) <= {200, 429}, codes
    assert len(tw.db_history("live-9", "x")) == 300
