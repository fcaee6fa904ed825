"""anomaly() and a rule's `let` through the real broker and the real ./twind:
an unusual reading raises one alert, the detector's learning survives a
restart, a what-if can ask it, and `let` with the math functions works end
to end. The six-series NAB score is in test_nab_anomaly.py."""

import json
import math
import random
import sqlite3
import time

from conftest import REPO, wait_until

ANOM = {"name": "odd", "match": {"twins": "an-*"}, "let": {"x": "temperature"},
        "when": "anomaly(x) > 0.999", "clear": "anomaly(x) < 0.97", "cooldown": "1d",
        "message": "{twin}: {temperature} is unusual"}
STEP = 300_000          # a reading every 5 min, in measurement time
WARM = 288              # ANOMALY_WARMUP


def rules_twind(make_twind, tmp_path, rules):
    rfile = tmp_path / "rules.json"
    rfile.write_text(json.dumps(rules))
    return make_twind(extra={"rules": {"file": str(rfile)}})


def normal(i):
    # a smooth daily wave: noise would cross the default threshold about once a
    # day at this rate (README: anomaly() is tuned as NAB rewards), and the
    # cooldown would turn that into one alert a day
    return 20 + 3 * math.sin(i * 2 * math.pi / 288)


def replay(pub, tw, twin, t0, values, step=STEP, prop="temperature"):
    """Publishes one reading of `prop` per value (a dict: those properties),
    `step` apart from t0, and waits until the last is applied."""
    infos = [pub.publish_async(f"plant/{twin}/telemetry",
                               json.dumps({"ts": t0 + i * step,
                                           **(v if isinstance(v, dict) else {prop: v})}))
             for i, v in enumerate(values)]
    for info in infos:
        info.wait_for_publish(10)
    last = t0 + (len(values) - 1) * step
    wait_until(lambda: (tw.twin(twin) or {}).get("reported", {}).get(prop, {})
               .get("ts") == last, 20, what=f"{twin}: ts {last} applied")
    return last


def restart_after(tw, *sql):
    """Stops twind, runs one statement on its database, starts it again."""
    assert tw.stop() == 0
    con = sqlite3.connect(tw.db)
    con.execute(*sql)
    con.commit()
    con.close()
    tw.start()


def alerts(tw, twin):
    r = tw.get("/api/v1/alerts", params={"twin": twin})
    assert r.status_code == 200, r.text
    return r.json()["alerts"]


def test_unusual_reading_raises_once_and_state_survives_restart(make_twind, make_publisher,
                                                               tmp_path):
    tw = rules_twind(make_twind, tmp_path, [ANOM])
    pub = make_publisher(inflight=500)
    twin = "an-1"
    t0 = int(time.time() * 1000) - 2000 * STEP
    last = replay(pub, tw, twin, t0, [normal(i) for i in range(600)])
    # ordinary readings raise nothing
    assert alerts(tw, twin) == []
    assert tw.stop() == 0

    # what it learned is in the database: one row, the 632-byte state
    con = sqlite3.connect(f"file:{tw.db}?mode=ro", uri=True)
    rows = con.execute("SELECT twin, property, length(state) FROM anomaly_state").fetchall()
    con.close()
    assert rows == [(twin, "temperature", 632)], rows

    # after the restart the detector is not warming up again: a spike is judged
    # at once (a fresh detector would stay silent for 288 readings)
    tw.start()
    last = replay(pub, tw, twin, last + STEP, [60.0])
    a = wait_until(lambda: alerts(tw, twin) or None, 5, what="an alert on the spike")
    assert len(a) == 1 and a[0]["rule"] == "odd" and a[0]["raised_ts"] >= last, a
    assert a[0]["message"] == f"{twin}: 60 is unusual", a
    # back to normal, it clears; and one anomaly raised one alert
    last = replay(pub, tw, twin, last + STEP, [normal(600 + i) for i in range(5)])
    wait_until(lambda: not alerts(tw, twin)[0]["active"], 5, what="the alert to clear")
    assert len(alerts(tw, twin)) == 1


def test_state_saved_before_the_rate_was_kept_reads_back(make_twind, make_publisher, tmp_path):
    """An upgrade: the 600-byte state of the version before (magic twA2, no
    rate) is read back, not learned anew, and the rate is learned from the
    next readings."""
    tw = rules_twind(make_twind, tmp_path, [ANOM])
    pub = make_publisher(inflight=500)
    twin = "an-v2"
    t0 = int(time.time() * 1000) - 2000 * STEP
    last = replay(pub, tw, twin, t0, [normal(i) for i in range(600)])
    assert tw.stop() == 0
    con = sqlite3.connect(tw.db)
    (state,) = con.execute("SELECT state FROM anomaly_state WHERE twin = ?", (twin,)).fetchone()
    assert state[:4] == b"twA3" and len(state) == 632
    old = b"twA2" + state[4:10] + b"\x00" + state[11:600]
    con.execute("UPDATE anomaly_state SET state = ?", (old,))
    con.commit()
    con.close()
    tw.start()
    assert "did not read back" not in tw.log(), tw.log()[-2000:]
    last = replay(pub, tw, twin, last + STEP, [normal(600), normal(601), 60.0])
    a = wait_until(lambda: alerts(tw, twin) or None, 5, what="an alert on the spike")
    assert len(a) == 1 and a[0]["raised_ts"] == last, a


def test_fast_healthy_series_raises_nothing(make_twind, make_publisher, tmp_path):
    """Noise read 20 times a second: anomaly()'s thresholds are per day of
    readings, not per reading (at 1 in 316 readings this raised within
    seconds of the warm-up); an overheating ramp is then raised."""
    tw = rules_twind(make_twind, tmp_path, [ANOM])
    pub = make_publisher(inflight=1000)
    twin = "an-fast"
    rng = random.Random(5)
    t0 = int(time.time() * 1000) - 600000
    last = replay(pub, tw, twin, t0, [round(60 + rng.gauss(0, 0.3), 2) for _ in range(6000)],
                  step=50)
    time.sleep(1.2)     # a timer pass too
    assert alerts(tw, twin) == []
    last = replay(pub, tw, twin, last + 50,
                  [round(60 + 0.02 * i + rng.gauss(0, 0.3), 2) for i in range(400)], step=50)
    a = wait_until(lambda: alerts(tw, twin) or None, 5, what="an alert on the ramp")
    assert len(a) == 1 and a[0]["raised_ts"] < last, a


def test_fresh_detector_warms_up_first(make_twind, make_publisher, tmp_path):
    tw = rules_twind(make_twind, tmp_path, [ANOM])
    pub = make_publisher(inflight=500)
    twin = "an-warm"
    t0 = int(time.time() * 1000) - 1000 * STEP
    # fewer readings than the warm-up, then a spike: anomaly() is unknown, the rule quiet
    replay(pub, tw, twin, t0, [normal(i) for i in range(WARM - 10)] + [60.0])
    time.sleep(1.2)     # a timer pass too
    assert alerts(tw, twin) == []


def test_what_if_asks_the_detector(make_twind, make_publisher, tmp_path):
    tw = rules_twind(make_twind, tmp_path, [ANOM])
    pub = make_publisher(inflight=500)
    twin = "an-wi"
    t0 = int(time.time() * 1000) - 1000 * STEP
    last = replay(pub, tw, twin, t0, [normal(i) for i in range(400)])
    body = {"reported": {"temperature": 75.0}}
    # the scenario's reading is newer than the last one: its ts is "now" of the copy
    r = tw.request("POST", f"/api/v1/twins/{twin}/simulate", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert [a["rule"] for a in got["alerts"] if a["action"] == "raise"] == ["odd"], got
    r = tw.request("POST", f"/api/v1/twins/{twin}/simulate",
                   json={"reported": {"temperature": normal(400)}})
    assert r.status_code == 200, r.text
    assert r.json()["alerts"] == [], r.text
    # and the live detector learned nothing from either
    assert alerts(tw, twin) == []
    assert tw.twin(twin)["reported"]["temperature"]["ts"] == last


def test_let_and_math_functions_end_to_end(make_twind, make_publisher, tmp_path):
    rule = {"name": "far", "match": {"twins": "lt-*"},
            "let": {"d": "temperature - 50", "dist": "sqrt(d * d)",
                    "capped": "clamp(dist, 0, 30)"},
            "when": "capped >= 30 and log(exp(dist)) > 29",
            "clear": "dist < 5", "message": "{twin}: {temperature}"}
    tw = rules_twind(make_twind, tmp_path, [rule])
    pub = make_publisher()
    twin = "lt-1"
    t0 = int(time.time() * 1000)
    replay(pub, tw, twin, t0, [55.0, 79.0])
    time.sleep(1.2)
    assert alerts(tw, twin) == []
    replay(pub, tw, twin, t0 + 2 * STEP, [15.0])    # 35 below: dist 35, capped 30
    a = wait_until(lambda: alerts(tw, twin) or None, 5, what="the let rule to raise")
    assert a[0]["rule"] == "far" and a[0]["active"], a
    replay(pub, tw, twin, t0 + 3 * STEP, [52.0])
    wait_until(lambda: not alerts(tw, twin)[0]["active"], 5, what="the let rule to clear")
    # the rule is listed as written, let included
    r = tw.get("/api/v1/rules")
    got = {x["name"]: x for x in r.json()["rules"]}["far"]
    assert got["let"] == rule["let"] and got["when"] == rule["when"], got


def test_late_reading_is_not_scored_as_news(make_twind, make_publisher, tmp_path):
    """A bridge that buffered while offline sends old readings late: they go
    to history, but the detector judges only the newest reading."""
    tw = rules_twind(make_twind, tmp_path, [ANOM])
    pub = make_publisher(inflight=500)
    twin = "an-late"
    t0 = int(time.time() * 1000) - 1000 * STEP
    last = replay(pub, tw, twin, t0, [normal(i) for i in range(600)])
    pub.publish(f"plant/{twin}/telemetry", {"ts": last - 500 * STEP, "temperature": 60.0})
    wait_until(lambda: any(ts == last - 500 * STEP and v == 60.0
                           for ts, v in tw.db_history(twin, "temperature")), 5,
               what="the late reading in history")
    time.sleep(1.2)
    assert alerts(tw, twin) == []
    # the same value as the newest reading is judged
    replay(pub, tw, twin, last + STEP, [60.0])
    wait_until(lambda: alerts(tw, twin) or None, 5, what="an alert on the newest spike")


def test_flatline_rule(make_twind, make_publisher, tmp_path):
    rules = [r for r in json.loads((REPO / "config" / "rules-anomaly.json").read_text())
             if r["name"] == "flatline_vibration"]
    tw = rules_twind(make_twind, tmp_path, rules)
    pub = make_publisher(inflight=500)
    twin = "fl-1"
    t0 = int(time.time() * 1000) - 400_000
    # noisy readings every 2 s, then the sensor repeats one value: 25 readings, 50 s
    infos = [pub.publish_async(f"plant/{twin}/telemetry",
                               json.dumps({"ts": t0 + i * 2000, "vibration": 2 + (i % 7) / 10}))
             for i in range(30)]
    infos += [pub.publish_async(f"plant/{twin}/telemetry",
                                json.dumps({"ts": t0 + (30 + i) * 2000, "vibration": 2.5}))
              for i in range(25)]
    for info in infos:
        info.wait_for_publish(10)
    time.sleep(1.2)
    assert alerts(tw, twin) == [], "20 readings stuck over 2 minutes are not yet all it has"
    # 60 more stuck readings: the whole 2-minute window holds one value
    last = replay(pub, tw, twin, t0 + 55 * 2000, [2.5] * 60, step=2000, prop="vibration")
    a = wait_until(lambda: alerts(tw, twin) or None, 5, what="the flatline alert")
    assert a[0]["rule"] == "flatline_vibration" and a[0]["message"] == f"{twin}: vibration stuck at 2.5"
    # noise again clears it
    pub.publish(f"plant/{twin}/telemetry", {"ts": last + 2000, "vibration": 2.9})
    wait_until(lambda: not alerts(tw, twin)[0]["active"], 5, what="the flatline to clear")


def test_unreadable_saved_state_is_skipped(make_twind, make_publisher, tmp_path):
    tw = rules_twind(make_twind, tmp_path, [ANOM])
    pub = make_publisher(inflight=500)
    twin = "an-bad"
    t0 = int(time.time() * 1000) - 1000 * STEP
    last = replay(pub, tw, twin, t0, [normal(i) for i in range(300)])
    restart_after(tw, "UPDATE anomaly_state SET state = ?", (b"\x00" * 600,))
    assert "1 anomaly detector state did not read back" in tw.log(), tw.log()[-2000:]
    # it learns anew: warming up, a spike raises nothing yet; twind serves on
    replay(pub, tw, twin, last + STEP, [60.0])
    time.sleep(1.2)
    assert alerts(tw, twin) == []


# Two sensors on one process: the rules README "Anomaly detection" shows.
PAIR_RULES = [
 {
  "name": "sensor_drift",
  "description": "Two sensors that should agree (here the pumps' two temperature sensors): raised when their difference is unusual for this pair (disagree() above 0.999, at half the default sensitivity: a drift is slow and sure, and the shift test sees it), whatever the process does; a sensor drifts or fails.",
  "match": {
   "twins": "*"
  },
  "let": {
   "x": "temperature",
   "y": "temperature2"
  },
  "when": "disagree(x, y, 0.5) > 0.999",
  "clear": "disagree(x, y, 0.5) < 0.97",
  "cooldown": "1d",
  "severity": "warning",
  "message": "{twin}: temperature {temperature} and temperature2 {temperature2} disagree as they usually do not: a sensor drifts"
 },
 {
  "name": "process_changed",
  "description": "Both sensors read something unusual and still agree with each other: the process changed, not a sensor.",
  "match": {
   "twins": "*"
  },
  "let": {
   "x": "temperature",
   "y": "temperature2"
  },
  "when": "anomaly(x) > 0.999 and anomaly(y) > 0.999 and disagree(x, y, 0.5) < 0.97",
  "clear": "anomaly(x) < 0.97 and anomaly(y) < 0.97",
  "cooldown": "1d",
  "severity": "warning",
  "message": "{twin}: temperature {temperature} and temperature2 {temperature2} are both unusual and agree: the process changed"
 }
]


def pair_rules():
    return PAIR_RULES


def replay_pair(pub, tw, twin, t0, pairs, step=STEP):
    return replay(pub, tw, twin, t0, [{"temperature": a, "temperature2": b} for a, b in pairs],
                  step, prop="temperature2")


def rules_raised(tw, twin):
    return sorted({a["rule"] for a in alerts(tw, twin)})


def test_drift_is_told_from_a_process_change(make_twind, make_publisher, tmp_path):
    """Two sensors on one process: a drift of one is `sensor_drift` (the
    difference is unusual), a change of the process is `process_changed`
    (both unusual, still agreeing), never the other way round."""
    import random
    rnd = random.Random(5)
    tw = rules_twind(make_twind, tmp_path, pair_rules())
    pub = make_publisher(inflight=500)
    t0 = int(time.time() * 1000) - 3000 * STEP

    def reading(i, shift=0.0, drift=0.0):
        true = 50 + 3 * math.sin(i * 2 * math.pi / 288) + shift
        return (true + rnd.gauss(0, 0.3), true + rnd.gauss(0, 0.3) + drift)

    normal_pairs = [reading(i) for i in range(700)]
    # one pair drifts apart: temperature2 climbs 0.02 a reading, the process does not
    last = replay_pair(pub, tw, "dr-drift", t0, normal_pairs)
    replay_pair(pub, tw, "dr-drift", last + STEP,
                [reading(700 + k, drift=0.02 * k) for k in range(200)])
    wait_until(lambda: rules_raised(tw, "dr-drift") or None, 10, what="sensor_drift")
    time.sleep(1.2)
    assert rules_raised(tw, "dr-drift") == ["sensor_drift"], alerts(tw, "dr-drift")
    # raised by the drift (it starts at reading 700), not by the noise before it
    assert all(a["raised_ts"] > t0 + 700 * STEP for a in alerts(tw, "dr-drift"))
    # the other pair sees the process step by 12 degrees, both sensors together
    last = replay_pair(pub, tw, "dr-proc", t0, normal_pairs)
    replay_pair(pub, tw, "dr-proc", last + STEP,
                [reading(700 + k, shift=12.0) for k in range(20)])
    wait_until(lambda: rules_raised(tw, "dr-proc") or None, 10, what="process_changed")
    time.sleep(1.2)
    assert rules_raised(tw, "dr-proc") == ["process_changed"], alerts(tw, "dr-proc")
    assert all(a["raised_ts"] > last for a in alerts(tw, "dr-proc"))


def test_missing_state_table_does_not_stop_the_start(make_twind, make_publisher, tmp_path):
    tw = rules_twind(make_twind, tmp_path, [ANOM])
    pub = make_publisher(inflight=500)
    t0 = int(time.time() * 1000) - 1000 * STEP
    last = replay(pub, tw, "an-notab", t0, [normal(i) for i in range(300)])
    restart_after(tw, "DROP TABLE anomaly_state")
    assert "cannot be saved" in tw.log(), tw.log()[-2000:]
    # it serves and learns, unsaved; a clean stop is still clean
    replay(pub, tw, "an-notab", last + STEP, [normal(300 + i) for i in range(5)])
    assert tw.stop() == 0


def test_state_older_than_30_days_is_forgotten(make_twind, make_publisher, tmp_path):
    tw = rules_twind(make_twind, tmp_path, [ANOM])
    pub = make_publisher(inflight=500)
    twin = "an-old"
    t0 = int(time.time() * 1000) - 1000 * STEP
    last = replay(pub, tw, twin, t0, [normal(i) for i in range(600)])
    restart_after(tw, "UPDATE anomaly_state SET saved_ts = saved_ts - 31 * 86400000")
    # not read back (the spike finds a detector warming up) and deleted
    replay(pub, tw, twin, last + STEP, [60.0])
    time.sleep(1.2)
    assert alerts(tw, twin) == []
    con = sqlite3.connect(f"file:{tw.db}?mode=ro", uri=True)
    old = con.execute("SELECT count(*) FROM anomaly_state WHERE saved_ts < ?",
                      (int(time.time() * 1000) - 30 * 86400000,)).fetchone()[0]
    con.close()
    assert old == 0


def test_sensors_disagree_rule(make_twind, make_publisher, tmp_path):
    """The shipped pair rule: a drifting sensor raises it; a change of the
    process (both sensors step together), two sensors standing still a little
    apart (no spread to judge by), one flicker of one of them, and a twin
    without the second sensor do not. The drift's alert clears once they agree,
    and once either sensor stands still (nothing is left to judge by)."""
    import random
    rules = [r for r in json.loads((REPO / "config" / "rules-anomaly.json").read_text())
             if r["name"] == "sensors_disagree"]
    tw = rules_twind(make_twind, tmp_path, rules)
    pub = make_publisher(inflight=500)
    rng = random.Random(7)
    t0 = int(time.time() * 1000) - 400_000
    n = 240                                     # a reading a second: 4 minutes

    def noisy(v):
        return round(v + rng.gauss(0, 0.3), 2)

    series = {
        # y drifts 6 away over the first 2 minutes, stays there, and comes back after 4
        "sd-drift": [{"temperature": noisy(50),
                      "temperature2": noisy(50 + (6 * min(i, 120) / 120 if i < n else 0))}
                     for i in range(n + 180)],
        # the same drift, then y freezes where it drifted to while x stays noisy
        "sd-freeze": [{"temperature": noisy(50),
                       "temperature2": noisy(50 + 6 * min(i, 120) / 120) if i < n else 56.0}
                      for i in range(n + 180)],
        # the process steps by 20 half-way: both sensors say so
        "sd-process": [{"temperature": noisy(50 + 20 * (i >= n // 2)),
                        "temperature2": noisy(50 + 20 * (i >= n // 2))} for i in range(n)],
        # two quantised sensors in a steady process, one step apart
        "sd-still": [{"temperature": 50.0, "temperature2": 50.5} for _ in range(n)],
        # the same, with one flicker of one sensor
        "sd-flicker": [{"temperature": 50.1 if i == n // 2 else 50.0, "temperature2": 50.5}
                       for i in range(n)],
        "sd-single": [{"temperature": noisy(50)} for _ in range(n)],
    }
    for twin, values in series.items():
        replay(pub, tw, twin, t0, values, step=1000)
    a = wait_until(lambda: alerts(tw, "sd-drift") or None, 5, what="the drift alert")
    assert a[0]["rule"] == "sensors_disagree"
    # raised once the drift stands clear of the spread (its ramp is in the spread), not at its start
    assert 60_000 <= a[0]["raised_ts"] - t0 < n * 1000, a[0]
    # the sensors agree again for 3 minutes: cleared
    assert not a[0]["active"] and a[0]["cleared_ts"] >= t0 + n * 1000, a[0]
    # y frozen (it never comes back): no spread left to judge by, cleared
    a = alerts(tw, "sd-freeze")
    assert len(a) == 1 and a[0]["rule"] == "sensors_disagree", a
    assert not a[0]["active"] and a[0]["cleared_ts"] >= t0 + n * 1000, a[0]
    for twin in ("sd-process", "sd-still", "sd-flicker", "sd-single"):
        assert alerts(tw, twin) == [], f"{twin}: {alerts(tw, twin)}"
