"""History in tiers through REST: buckets exact against values the test
computes (late points, redeliveries, corrections included), served from the
tier that answers them; several properties; CSV; pages; 400s; retention
trimming while a publisher publishes, with the fallback to a coarser tier;
a restart keeping it all."""
import csv
import io
import random

import pytest

from conftest import StreamPublisher, now_ms, wait_until

HOUR = 3_600_000
MINUTE = 60_000


def expected_buckets(points, step, lo, hi):
    """points: {ts: value}; buckets of `step` covering [lo, hi], whole buckets."""
    out = {}
    for ts in sorted(points):
        b = ts - ts % step
        if b < lo - lo % step or b > hi - hi % step:
            continue
        v = points[ts]
        e = out.setdefault(b, {"ts": b, "min": v, "max": v, "sum": 0, "count": 0,
                               "first": v, "last": v})
        e["min"], e["max"] = min(e["min"], v), max(e["max"], v)
        e["sum"] += v
        e["count"] += 1
        e["last"] = v
    for e in out.values():
        e["avg"] = e.pop("sum") / e["count"]
    return [out[b] for b in sorted(out)]


def get_buckets(tw, twin, prop, step, lo, hi, **extra):
    r = tw.get(f"/api/v1/twins/{twin}/history",
               params={"property": prop, "from": lo, "to": hi, "step": step, **extra})
    assert r.status_code == 200, r.text
    return r


@pytest.fixture(scope="module")
def tiered(shared):
    """Three hours at one point per 10 s, values multiples of 0.25 (sums are
    exact in binary), then in later messages: late points, redeliveries and
    corrections. Returns (base, {ts: value})."""
    tw, pub = shared.twind, shared.pub
    rnd = random.Random(7)
    base = (now_ms() - 4 * HOUR) // HOUR * HOUR
    pts = {base + i * 10_000 + 250: rnd.randrange(-400, 400) / 4 for i in range(3 * 360)}
    order = sorted(pts)
    late = order[5::97]                       # held back, sent after the rest
    first = [ts for ts in order if ts not in set(late)]
    msgs = [("plant/tier-1/telemetry", {"ts": ts, "v": pts[ts]}) for ts in first]
    msgs += [("plant/tier-1/telemetry", {"ts": ts, "v": pts[ts]}) for ts in late]
    msgs += [("plant/tier-1/telemetry", {"ts": ts, "v": pts[ts]}) for ts in order[100:120]]
    for ts in order[200::311]:                # corrections of stored points
        pts[ts] = pts[ts] + 1000
        msgs.append(("plant/tier-1/telemetry", {"ts": ts, "v": pts[ts]}))
    pub.publish_many(msgs, timeout=60)
    wait_until(lambda: len(tw.db_history("tier-1", "v")) == len(pts) and
               all(dict(tw.db_history("tier-1", "v"))[ts] == pts[ts] for ts in order[200::311]),
               20, what="every point and correction stored")
    return base, pts


@pytest.mark.parametrize("step,step_ms,tier", [
    ("10s", 10_000, "raw"), ("1m", MINUTE, "1m"), ("15m", 15 * MINUTE, "1m"),
    ("1h", HOUR, "1h"), ("1d", 24 * HOUR, "1h"), ("90s", 90_000, "raw"),
])
def test_buckets_exact_from_the_tier_that_answers(shared, tiered, step, step_ms, tier):
    base, pts = tiered
    lo, hi = base + 7 * MINUTE + 3000, base + 2 * HOUR + 41 * MINUTE
    r = get_buckets(shared.twind, "tier-1", "v", step, lo, hi)
    assert r.headers["X-History-Tier"] == tier
    assert int(r.headers["X-History-Step"]) == step_ms
    assert r.json() == expected_buckets(pts, step_ms, lo, hi)


def test_one_aggregate_and_several_properties(shared, tiered):
    tw, pub = shared.twind, shared.pub
    base, pts = tiered
    pub.publish_many([("plant/tier-2/telemetry", {"ts": base + i * 30_000, "a": i, "b": -i})
                      for i in range(240)])
    tw.wait_version("tier-2", 240)
    r = get_buckets(tw, "tier-2", "a,b", "1h", base, base + 2 * HOUR - 1, agg="max")
    assert r.json() == {"a": [{"ts": base, "max": 119}, {"ts": base + HOUR, "max": 239}],
                        "b": [{"ts": base, "max": 0}, {"ts": base + HOUR, "max": -120}]}
    raw = tw.get("/api/v1/twins/tier-2/history",
                 params={"property": "a,b", "from": base, "to": base + 30_000}).json()
    assert raw == {"a": [{"ts": base, "value": 0}, {"ts": base + 30_000, "value": 1}],
                   "b": [{"ts": base, "value": 0}, {"ts": base + 30_000, "value": -1}]}
    r = tw.get("/api/v1/twins/tier-2/history", params={"property": "a,nope"})
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]


def test_csv_for_spreadsheets(shared, tiered):
    tw, pub = shared.twind, shared.pub
    base, pts = tiered
    pub.publish_many([("plant/tier-3/telemetry", {"ts": base + 1000, "s": "=cmd()", "v": 1.5}),
                      ("plant/tier-3/telemetry", {"ts": base + 2000, "s": 'say "hi"', "v": 2})])
    tw.wait_version("tier-3", 2)
    r = tw.get("/api/v1/twins/tier-3/history", params={"property": "s,v", "from": base},
               headers={"Accept": "text/csv"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows == [["property", "ts", "value"],
                    ["s", str(base + 1000), "'=cmd()"], ["s", str(base + 2000), 'say "hi"'],
                    ["v", str(base + 1000), "1.5"], ["v", str(base + 2000), "2"]]
    r = tw.get("/api/v1/twins/tier-1/history", headers={"Accept": "text/csv"},
               params={"property": "v", "from": base, "to": base + HOUR - 1, "step": "1h"})
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["property", "ts", "min", "max", "avg", "count", "first", "last"]
    want = expected_buckets(pts, HOUR, base, base + HOUR - 1)[0]
    assert rows[1][:2] == ["v", str(base)]
    assert [float(x) for x in rows[1][2:]] == [want[k] for k in
                                               ("min", "max", "avg", "count", "first", "last")]


def test_pages_follow_x_next_from(shared, tiered):
    tw = shared.twind
    base, pts = tiered
    got, frm = [], base
    for _ in range(200):
        r = tw.get("/api/v1/twins/tier-1/history",
                   params={"property": "v", "from": frm, "to": base + HOUR - 1, "limit": 50})
        assert r.status_code == 200
        got += r.json()
        if "X-Next-From" not in r.headers:
            break
        assert r.headers["X-Truncated"] == "true"
        frm = int(r.headers["X-Next-From"])
    assert got == [{"ts": ts, "value": pts[ts]} for ts in sorted(pts) if ts < base + HOUR]
    # buckets page the same way
    r = get_buckets(tw, "tier-1", "v", "1m", base, base + HOUR - 1, limit=25)
    assert len(r.json()) == 25 and int(r.headers["X-Next-From"]) == base + 25 * MINUTE


@pytest.mark.parametrize("params,word", [
    ({"step": "0s"}, "step"), ({"step": "500ms"}, "step"), ({"step": "often"}, "step"),
    ({"from": 2000, "to": 1000}, "after"), ({"agg": "median", "step": "1m"}, "agg"),
    ({"limit": 0}, "limit"), ({"limit": 10001}, "limit"), ({"property": "a,,b"}, "property"),
    ({"property": ",".join(f"p{i}" for i in range(17))}, "property"),
    ({"property": "a b"}, "property"), ({"from": "soon"}, "from"), ({"to": "-3q"}, "to"),
])
def test_bad_parameters_are_400_with_the_reason(shared, tiered, params, word):
    r = shared.twind.get("/api/v1/twins/tier-1/history", params={"property": "v", **params})
    assert r.status_code == 400, r.text
    assert word in r.json()["error"]["message"]


def test_retention_trims_while_publishing_and_a_coarser_tier_answers(make_twind, publisher):
    """Raw history kept 1 h: points from 3 h ago go from the raw tier but stay
    in the minute and hour tiers, which answer for them; a publisher keeps
    publishing recent points meanwhile and loses none."""
    tw = make_twind()
    base = (now_ms() - 3 * HOUR) // HOUR * HOUR
    old = {base + i * 5000: float(i % 50) for i in range(720)}      # one hour, 5 s apart
    publisher.publish_many([("plant/keep-1/telemetry", {"ts": ts, "v": v})
                            for ts, v in old.items()], timeout=60)
    tw.wait_version("keep-1", 720)
    tw.stop()
    tw.conf.write_text(tw.conf.read_text() + "[history]\nraw = 1h\n")
    tw.start()
    t0 = now_ms()
    live = StreamPublisher(publisher, [("plant/keep-2/telemetry", {"ts": t0 + i, "v": i})
                                       for i in range(3000)], rate=300)
    live.start()
    # retention's first round runs at once, the next ones every 10 s
    wait_until(lambda: tw.db_history("keep-1", "v") == [], 30, what="old raw points trimmed")
    assert tw.metric("twind_retention_trimmed_total") >= 720
    r = tw.get("/api/v1/twins/keep-1/history", params={"property": "v", "from": base,
                                                       "to": base + HOUR - 1})
    assert r.json() == []
    r = get_buckets(tw, "keep-1", "v", "10s", base, base + HOUR - 1)
    assert r.headers["X-History-Tier"] == "1m" and r.headers["X-History-Step"] == "60000"
    assert r.json() == expected_buckets(old, MINUTE, base, base + HOUR - 1)
    r = get_buckets(tw, "keep-1", "v", "1h", base, base + HOUR - 1)
    assert r.headers["X-History-Tier"] == "1h"
    assert r.json() == expected_buckets(old, HOUR, base, base + HOUR - 1)
    # under the edge a point goes into no rollup: a redelivery, a correction, a late one
    publisher.publish_many([("plant/keep-1/telemetry", {"ts": base + 5000, "v": 1.0}),
                            ("plant/keep-1/telemetry", {"ts": base + 10_000, "v": 999.0}),
                            ("plant/keep-1/telemetry", {"ts": base + 2, "v": 7.0})])
    wait_until(lambda: tw.metric("twind_values_too_old_total") == 3, 10, what="3 too old")
    assert get_buckets(tw, "keep-1", "v", "1h", base, base + HOUR - 1).json() == \
        expected_buckets(old, HOUR, base, base + HOUR - 1)
    acked = live.wait_acked(60)
    assert len(acked) == 3000
    wait_until(lambda: len(tw.db_history("keep-2", "v")) == 3000, 20,
               what="every live point stored while trimming ran")
    # a restart keeps the tiers, the edge and the answers
    tw.stop()
    tw.start()
    r = get_buckets(tw, "keep-1", "v", "1m", base, base + HOUR - 1)
    assert r.headers["X-History-Tier"] == "1m"
    assert r.json() == expected_buckets(old, MINUTE, base, base + HOUR - 1)
    assert len(tw.history("keep-2", "v", limit=10000)) == 3000


def test_bad_retention_config_says_file_and_line(tmp_path):
    from conftest import twind_check
    conf = tmp_path / "t.conf"
    conf.write_text("[history]\nraw = 30d\nminute = 7d\n")
    r = twind_check(conf)
    assert r.returncode == 2 and "raw, minute and hour" in r.stderr, r.stderr
    conf.write_text("[storage]\nmax_db_size = 12X\n")
    r = twind_check(conf)
    assert r.returncode == 2 and "t.conf:2" in r.stderr and "max_db_size" in r.stderr, r.stderr


def test_upgrade_rolls_up_what_is_stored_and_tells_systemd(make_twind, publisher, tmp_path,
                                                          monkeypatch):
    """A database from before the tiers (schema step 5): step 6 rolls up its
    history once, and tells systemd the start takes longer while it does."""
    import sqlite3
    from test_watchdog import Notify
    tw = make_twind()
    base = (now_ms() - 3 * HOUR) // HOUR * HOUR
    pts = {base + i * 1000: float(i % 37) for i in range(20_000)}
    tw.stop()
    con = sqlite3.connect(tw.db)
    con.executescript("DROP TABLE rollup_1m; DROP TABLE rollup_1h; DROP TABLE trimmed;"
                      "DROP INDEX alerts_done; DROP INDEX commands_done;"
                      "DROP TABLE anomaly_state;"
                      "DROP INDEX commands_effect; ALTER TABLE commands DROP COLUMN effect;"
                      "ALTER TABLE commands DROP COLUMN effect_ts;"
                      "ALTER TABLE commands DROP COLUMN effect_deadline_ts;"
                      "ALTER TABLE commands DROP COLUMN effect_from;"
                      "DROP TABLE history_block; DROP TABLE history_block_bad;"
                      "DROP TABLE rollup_1m_block; DROP TABLE rollup_1h_block;"
                      "INSERT INTO series(twin, property) VALUES('old-1', 'v');"
                      "PRAGMA user_version = 5;")
    con.executemany("INSERT INTO history(series, ts, value) VALUES("
                    "(SELECT id FROM series WHERE twin = 'old-1'), ?, ?)", pts.items())
    con.commit()
    con.close()
    n = Notify(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    try:
        tw.start()
        assert "database: schema step 6 applied" in tw.log()
        wait_until(lambda: n.since(0, "READY=1"), 5, what="READY=1")
        assert n.since(0, "EXTEND_TIMEOUT_USEC="), n.since(0, "")
    finally:
        n.close()
    for step, size in (("1m", MINUTE), ("1h", HOUR)):
        r = get_buckets(tw, "old-1", "v", step, base, base + 6 * HOUR, limit=10000)
        assert r.headers["X-History-Tier"] == step
        assert r.json() == expected_buckets(pts, size, base, base + 6 * HOUR)


def test_huge_values_are_refused_and_duplicates_and_no_from(shared, tiered):
    tw, pub = shared.twind, shared.pub
    before = tw.metric("twind_messages_dropped_total", reason="bad_value")
    pub.publish("plant/tier-4/telemetry", {"ts": now_ms(), "v": 1e308})
    pub.publish("plant/tier-4/telemetry", {"ts": now_ms(), "v": 2.5})
    tw.wait_version("tier-4", 1)
    assert tw.metric("twind_messages_dropped_total", reason="bad_value") == before + 1
    r = tw.get("/api/v1/twins/tier-1/history", params={"property": "v,v"})
    assert r.status_code == 400 and "twice" in r.json()["error"]["message"]
    # buckets without from: the newest `limit` of them, from the tier that fits the step
    base, pts = tiered
    hi = base + 3 * HOUR - 1
    r = tw.get("/api/v1/twins/tier-1/history",
               params={"property": "v", "to": hi, "step": "10m", "limit": 6})
    assert r.headers["X-History-Tier"] == "1m"
    assert r.json() == expected_buckets(pts, 10 * MINUTE, hi - 5 * 10 * MINUTE, hi)


def test_a_page_bounded_in_bytes_keeps_the_newest_and_pages_back(shared, tiered):
    """400 strings that escape to 24 KB each pass the 8 MiB a page may hold:
    the newest page has the newest points, and X-Next-To reaches the rest."""
    tw, pub = shared.twind, shared.pub
    t0 = now_ms() - 600_000
    pub.publish_many([("plant/tier-5/telemetry", {"ts": t0 + i, "s": "\x01" * 4000})
                      for i in range(400)], timeout=60)
    wait_until(lambda: len(tw.db_history("tier-5", "s")) == 400, 20, what="400 strings stored")
    got, to = [], None
    for _ in range(20):
        params = {"property": "s", "limit": 10000, **({"to": to} if to is not None else {})}
        r = tw.get("/api/v1/twins/tier-5/history", params=params)
        assert r.status_code == 200 and len(r.content) <= 8 * 1024 * 1024 + 64 * 1024
        page = [p["ts"] for p in r.json()]
        if to is None:
            assert page[-1] == t0 + 399 and len(page) < 400, (len(page), page[-1:])
        got = page + got
        if "X-Next-To" not in r.headers:
            break
        to = int(r.headers["X-Next-To"])
    assert got == [t0 + i for i in range(400)]


def test_a_reading_under_the_edge_counts_once_in_the_rules(make_twind, publisher, tmp_path):
    """A reading older than the raw edge is not stored, so a redelivery of it
    cannot be told from a new point by its row: the rules take it only when
    it is newer than the property's newest reading. Replayed old data in
    order still reaches the rules; a redelivery does not count twice."""
    import json
    rfile = tmp_path / "rules.json"
    rfile.write_text(json.dumps([{"name": "twice", "match": {"twins": "edge-*"},
                                  "when": "count_over(v, 1h) >= 2", "severity": "warning",
                                  "message": "{twin}: two readings"}]))
    tw = make_twind({"rules": {"file": str(rfile)}})
    old = now_ms() - 8 * 24 * HOUR
    topic = "plant/edge-rule/telemetry"
    for n, ts in enumerate([old, old, old + 1000], 1):
        publisher.publish(topic, {"ts": ts, "v": 1.0})
        wait_until(lambda: tw.metric("twind_values_too_old_total") >= n, 10, what=f"{n} too old")

    def alerts():
        r = tw.get("/api/v1/alerts", params={"twin": "edge-rule"})
        assert r.status_code == 200, r.text
        return r.json()["alerts"] or None
    got = wait_until(alerts, 10, what="the rule raised by the second reading")
    # raised by the reading at old + 1 s, not by the redelivery of the first
    assert [a["raised_ts"] for a in got] == [old + 1000], got
    assert tw.db_history("edge-rule", "v") == []
    # a correction of the newest reading is news: it is taken
    for n, v in enumerate([1.0, 2.0], 4):
        publisher.publish("plant/edge-fix/telemetry", {"ts": old, "v": v})
        wait_until(lambda: tw.metric("twind_values_too_old_total") >= n, 10, what=f"{n} too old")
    got = wait_until(lambda: tw.get("/api/v1/alerts", params={"twin": "edge-fix"})
                     .json()["alerts"] or None, 10, what="the rule raised by the correction")
    assert [a["raised_ts"] for a in got] == [old], got
