"""Raw history older than an hour packed into compressed blocks, as a PLC
bridge that buffered while offline and an operator reading history would
see it: every point read back exact (REST and the database, decoded by the
test), redeliveries landing once, corrections and late points correcting
raw and rollups, a restart keeping it all, and the bytes per point."""
import math
import random
import time

from conftest import now_ms, wait_until
from test_history_tiers import MINUTE, expected_buckets, get_buckets

HOUR = 3_600_000


def raw(tw, twin, lo, hi):
    out = []
    while True:
        r = tw.get(f"/api/v1/twins/{twin}/history",
                   params={"property": "v", "from": lo, "to": hi, "limit": 10000})
        assert r.status_code == 200, r.text
        out += [(p["ts"], p["value"]) for p in r.json()]
        nxt = r.headers.get("X-Next-From")
        if nxt is None:
            return out
        lo = int(nxt)


def same_buckets(got, want):
    """Exact but for avg: a sum of two-decimal values depends on its order."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert abs(g.pop("avg") - w["avg"]) <= 1e-9 * max(1.0, abs(w["avg"])), (g, w)
        assert g == {k: v for k, v in w.items() if k != "avg"}


def block_bytes(tw, twin):
    con = tw.db_connect()
    try:
        return con.execute(
            "SELECT sum(length(b.data)), sum(b.n), count(*) FROM history_block b "
            "JOIN series s ON s.id = b.series WHERE s.twin = ?", (twin,)).fetchone()
    finally:
        con.close()


def rows_left(tw, twin):
    con = tw.db_connect()
    try:
        return con.execute("SELECT count(*) FROM history h JOIN series s ON s.id = h.series "
                           "WHERE s.twin = ?", (twin,)).fetchone()[0]
    finally:
        con.close()


def packed_after_restart(tw, at_least):
    """Packing runs every 10 minutes and at start: a restart packs now."""
    before = tw.metric("twind_history_packed_total") if tw.running() else 0
    tw.stop()
    tw.start()
    wait_until(lambda: tw.metric("twind_history_packed_total") >= at_least, 30,
               what=f"{at_least} points packed (had {before} before the restart)")


def test_old_points_are_packed_and_read_back_exact(make_twind, publisher):
    tw = make_twind()
    rnd = random.Random(11)
    base = (now_ms() - 4 * HOUR) // HOUR * HOUR
    # A 1 Hz sensor with two decimals and a little clock jitter, 4,500 points
    # (more than one block of 4,096); a value with 17 digits (no decimals
    # fit: XOR); a sparse series too few and too recent to pack yet.
    steady = {base + i * 1000 + rnd.randrange(-3, 4): round(20 + rnd.gauss(0, 0.5), 2)
              for i in range(4500)}
    neg0 = sorted(steady)[1234]
    steady[neg0] = -0.0                  # a bridge's printf("%.1f", -0.04)
    wild = {base + i * 7001: rnd.uniform(-1e6, 1e6) for i in range(600)}
    sparse = {base + i * 600_000: float(i) for i in range(20)}
    msgs = [("plant/pk-steady/telemetry", {"ts": ts, "v": v}) for ts, v in steady.items()]
    msgs += [("plant/pk-wild/telemetry", {"ts": ts, "v": v}) for ts, v in wild.items()]
    msgs += [("plant/pk-sparse/telemetry", {"ts": ts, "v": v}) for ts, v in sparse.items()]
    publisher.publish_many(msgs, timeout=60)
    wait_until(lambda: len(tw.db_history("pk-steady", "v")) == len(steady) and
               len(tw.db_history("pk-wild", "v")) == len(wild) and
               len(tw.db_history("pk-sparse", "v")) == len(sparse), 30, what="all stored")
    packed_after_restart(tw, len(steady) + len(wild))

    assert rows_left(tw, "pk-steady") == 0 and rows_left(tw, "pk-wild") == 0
    assert rows_left(tw, "pk-sparse") == len(sparse)          # waits for more, or a day
    for twin, pts in (("pk-steady", steady), ("pk-wild", wild)):
        want = sorted(pts.items())
        assert tw.db_history(twin, "v") == want
        assert raw(tw, twin, base, base + 3 * HOUR) == want
        # raw buckets (10 s) fold the blocks; minutes come from the rollups
        lo, hi = base + 5 * MINUTE + 500, base + 70 * MINUTE
        for step, ms in (("10s", 10_000), ("1m", MINUTE)):
            same_buckets(get_buckets(tw, twin, "v", step, lo, hi).json(),
                         expected_buckets(pts, ms, lo, hi))
    # the newest page of a packed series (no from)
    r = tw.get("/api/v1/twins/pk-steady/history", params={"property": "v", "limit": 100})
    assert [(p["ts"], p["value"]) for p in r.json()] == sorted(steady.items())[-100:]

    # -0.0 comes back with its sign, and keeps its block in decimals (the bytes below)
    assert math.copysign(1, dict(tw.db_history("pk-steady", "v"))[neg0]) == -1
    nbytes, npts, nblocks = block_bytes(tw, "pk-steady")
    assert npts == len(steady) and nblocks == 2
    print(f"\n1 Hz, 2 decimals, jitter of 3 ms: {nbytes / npts:.2f} bytes a point in blocks")
    assert nbytes / npts <= 3.0
    nbytes, npts, _ = block_bytes(tw, "pk-wild")
    print(f"random doubles (17 digits): {nbytes / npts:.2f} bytes a point in blocks")
    assert nbytes / npts <= 9.0


def test_late_points_redeliveries_and_corrections_of_packed_points(make_twind, publisher):
    tw = make_twind()
    base = (now_ms() - 3 * HOUR) // HOUR * HOUR
    pts = {base + i * 2000: i / 4 for i in range(1000)}
    publisher.publish_many([("plant/pk-late/telemetry", {"ts": ts, "v": v})
                            for ts, v in pts.items()], timeout=60)
    wait_until(lambda: len(tw.db_history("pk-late", "v")) == len(pts), 30, what="stored")
    packed_after_restart(tw, len(pts))
    assert rows_left(tw, "pk-late") == 0
    order = sorted(pts)
    # redeliveries of packed points: nothing changes, the minutes neither
    publisher.publish_many([("plant/pk-late/telemetry", {"ts": ts, "v": pts[ts]})
                            for ts in order[100:150]])
    # corrections, and new points between packed ones (a bridge's buffer)
    fixes = {ts: pts[ts] + 1000 for ts in order[300:900:97]}
    late = {ts + 1000: -1.5 for ts in order[400:410]}
    publisher.publish_many([("plant/pk-late/telemetry", {"ts": ts, "v": v})
                            for ts, v in list(fixes.items()) + list(late.items())])
    pts.update(fixes)
    pts.update(late)
    marker = now_ms()
    publisher.publish("plant/pk-late/telemetry", {"ts": marker, "v": 0.5})
    pts[marker] = 0.5
    wait_until(lambda: len(tw.db_history("pk-late", "v")) == len(pts), 20,
               what="the marker after the late points")
    want = sorted(pts.items())
    assert tw.db_history("pk-late", "v") == want
    assert raw(tw, "pk-late", base, marker) == want
    # corrections stay in their blocks; the late points are rows, unless the
    # packing round still under way took them at once (a slower build)
    assert rows_left(tw, "pk-late") <= len(late) + 1
    lo, hi = base, base + 2 * HOUR
    for step, ms in (("1m", MINUTE), ("1h", HOUR), ("30s", 30_000)):
        assert get_buckets(tw, "pk-late", "v", step, lo, hi).json() == \
            expected_buckets(pts, ms, lo, hi)
    # the late rows join the blocks they fall into at the next packing
    tw.stop()
    tw.start()
    wait_until(lambda: rows_left(tw, "pk-late") == 1, 30, what="the late rows packed")
    assert tw.db_history("pk-late", "v") == want
    assert raw(tw, "pk-late", base, marker) == want
    assert get_buckets(tw, "pk-late", "v", "1m", lo, hi).json() == \
        expected_buckets(pts, MINUTE, lo, hi)


def test_kill_9_while_packing_loses_nothing(make_twind, publisher):
    """SIGKILL at several moments of packing (each step is one
    transaction, its rows and its block together): after each restart
    every point is there once, in rows or blocks, and the file is sound."""
    tw = make_twind()
    base = (now_ms() - 7 * HOUR) // HOUR * HOUR        # all of it more than an hour old
    series = {f"pk-kill-{k}": {base + i * 1000 + k: round(k + i / 100, 2) for i in range(15000)}
              for k in range(6)}
    for twin, pts in series.items():
        publisher.publish_many([(f"plant/{twin}/telemetry", {"ts": ts, "v": v})
                                for ts, v in pts.items()], timeout=60)
    wait_until(lambda: all(len(tw.db_history(t, "v")) == len(p) for t, p in series.items()),
               60, what="all stored")
    total = sum(len(p) for p in series.values())
    for delay in (0.05, 0.2, 0.5):
        tw.kill9()
        tw.start()
        time.sleep(delay)
    tw.kill9()
    # the kills came mid-way: some points packed, some still rows
    left = sum(rows_left(tw, t) for t in series)
    assert 0 < left < total, left
    tw.start()
    wait_until(lambda: all(rows_left(tw, t) == 0 for t in series), 60,
               what="everything older than an hour packed")
    con = tw.db_connect()
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT coalesce(sum(n), 0) FROM history_block").fetchone()[0] == total
    finally:
        con.close()
    for twin, pts in series.items():
        assert tw.db_history(twin, "v") == sorted(pts.items())
