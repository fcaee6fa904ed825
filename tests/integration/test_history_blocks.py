"""Raw history older than an hour packed into compressed blocks, as a PLC
bridge that buffered while offline and an operator reading history would
see it: every point read back exact (REST and the database, decoded by the
test), redeliveries landing once, corrections and late points correcting
raw and rollups, a restart keeping it all, and the bytes per point."""
import math
import random
import time

import pytest

from conftest import now_ms, wait_until
from test_history_tiers import MINUTE, expected_buckets, get_buckets

HOUR = 3_600_000
DAY = 24 * HOUR


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


def blocks_of(tw, twin):
    con = tw.db_connect()
    try:
        return con.execute("SELECT b.rowid, b.t0, b.t1, b.n, b.data FROM history_block b "
                           "JOIN series s ON s.id = b.series WHERE s.twin = ? ORDER BY b.t0",
                           (twin,)).fetchall()
    finally:
        con.close()


def raw_edge(tw):
    con = tw.db_connect()
    try:
        row = con.execute("SELECT before_ts FROM trimmed WHERE tier = 'raw'").fetchone()
        return row[0] if row else None
    finally:
        con.close()


def test_a_block_across_the_raw_edge_is_kept_whole_until_all_of_it_is_older(make_twind,
                                                                             publisher):
    """Retention's edge moves a minute each minute: cutting a block's older
    part off each time wrote the block again every minute (flash wear). The
    block across the edge stays as it is, and what is older than the edge is
    history no more for REST; a block wholly older goes at once."""
    tw = make_twind()
    now = now_ms()
    # 50 minutes at 1 Hz from 2 h 20 min ago: the 2-hour edge falls inside
    across_base = (now - 2 * HOUR - 20 * MINUTE) // MINUTE * MINUTE
    across = {across_base + i * 1000: float(i % 97) for i in range(3000)}
    # 30 minutes from 3 h ago: wholly older than the edge (a later series: trimmed after)
    older_base = (now - 3 * HOUR) // MINUTE * MINUTE
    older = {older_base + i * 1000: float(i % 89) for i in range(1800)}
    publisher.publish_many([("plant/edge-across/telemetry", {"ts": ts, "v": v})
                            for ts, v in across.items()], timeout=60)
    publisher.publish_many([("plant/edge-older/telemetry", {"ts": ts, "v": v})
                            for ts, v in older.items()], timeout=60)
    wait_until(lambda: len(tw.db_history("edge-across", "v")) == len(across) and
               len(tw.db_history("edge-older", "v")) == len(older), 30, what="all stored")
    packed_after_restart(tw, len(across) + len(older))
    before = blocks_of(tw, "edge-across")
    assert len(before) == 1 and before[0][3] == len(across), [b[:4] for b in before]
    assert len(blocks_of(tw, "edge-older")) == 1

    tw.stop()
    tw.conf.write_text(tw.conf.read_text() + "[history]\nraw = 2h\n")
    tw.start()
    # the later series' block goes in the same pass, after the one across the edge
    wait_until(lambda: blocks_of(tw, "edge-older") == [], 30, what="the older block trimmed")
    assert tw.metric("twind_retention_trimmed_total") >= len(older)
    edge = raw_edge(tw)
    assert across_base < edge < across_base + len(across) * 1000, (edge, across_base)
    # not written again: the same row and the same bytes
    assert blocks_of(tw, "edge-across") == before

    def reads_from_the_edge():
        """REST reads it from the edge on, exact; nothing older (the edge moves
        each minute: read again if it moved meanwhile)."""
        for _ in range(10):
            e = raw_edge(tw)
            kept = sorted((ts, v) for ts, v in across.items() if ts >= e)
            got = raw(tw, "edge-across", across_base, across_base + 2 * HOUR)
            r = tw.get("/api/v1/twins/edge-across/history",
                       params={"property": "v", "from": across_base, "to": e - 1})
            newest = tw.get("/api/v1/twins/edge-across/history",
                            params={"property": "v", "limit": 10000})
            if raw_edge(tw) == e:
                break
        else:
            pytest.fail("the raw edge moved during each of 10 reads")
        assert kept and got == kept
        assert r.status_code == 200 and r.json() == [], r.text
        # the newest page (no from) ends at the same place
        assert [(p["ts"], p["value"]) for p in newest.json()] == kept

    reads_from_the_edge()
    # a redelivery of a point older than the edge goes into no rollup, changes no
    # block, is not stored, and REST does not show it
    publisher.publish("plant/edge-across/telemetry", {"ts": across_base + 1000, "v": 1.0})
    wait_until(lambda: tw.metric("twind_values_too_old_total") >= 1, 10, what="too old")
    assert blocks_of(tw, "edge-across") == before
    reads_from_the_edge()


def test_a_longer_raw_keeps_the_edge_where_it_was(make_twind, publisher):
    """What went before the raw edge is gone: a longer `raw` does not move
    the edge back, and a late point under it is as under any edge (no
    rollup, not stored, unseen). It was taken into the
    rollups and shown, then hidden once packed into a block under the
    edge, while its minute still counted it: raw and buckets disagreed."""
    tw = make_twind(extra={"history": {"raw": "1h"}})
    wait_until(lambda: raw_edge(tw) is not None, 20, what="the first retention round")
    edge = raw_edge(tw)
    tw.stop()
    tw.conf.write_text(tw.conf.read_text().replace("raw = 1h", "raw = 4h"))
    tw.start()
    base = (now_ms() - 2 * HOUR) // MINUTE * MINUTE
    late = {base + i * 5000: float(i % 13) for i in range(300)}
    assert base + 300 * 5000 < edge
    before = tw.metric("twind_values_too_old_total")
    publisher.publish_many([("plant/edge-longer/telemetry", {"ts": ts, "v": v})
                            for ts, v in late.items()], timeout=60)
    wait_until(lambda: tw.metric("twind_values_too_old_total") >= before + len(late), 20,
               what="every late point too old")
    for _ in range(2):
        assert raw_edge(tw) >= edge
        assert raw(tw, "edge-longer", base, base + HOUR) == []
        r = get_buckets(tw, "edge-longer", "v", "1m", base, base + HOUR)
        assert r.json() == [], r.headers.get("X-History-Tier")
        tw.stop()                      # packing runs at start: it takes none of them
        tw.start()
    wait_until(lambda: tw.db_history("edge-longer", "v") == [], 20, what="the rows trimmed")


def marks(tw):
    con = tw.db_connect()
    try:
        return dict(con.execute("SELECT tier, before_ts FROM trimmed").fetchall())
    finally:
        con.close()


def test_the_disk_budget_trims_the_oldest_raw_points_first_while_publishing(make_twind,
                                                                            publisher):
    """Over [storage] max_db_size the oldest raw points go, a tenth of their
    age a round (every 10 s), never the last hour, and the rollups stay: an
    hour of packed points from two hours ago is cut from its old end round
    after round (its block kept whole across each edge), the minute buckets
    of all of it still answer exactly, and a publisher meanwhile loses
    nothing. Then, with only the last hour of raw points left (and points
    in it), the oldest minutes go, and hours stay: the budget stood still
    there before, as raw's edge never quite reached the hour."""
    from conftest import StreamPublisher
    tw = make_twind()
    now = now_ms()
    base = (now - 2 * HOUR) // MINUTE * MINUTE
    pts = {base + i * 1000: float(i % 101) for i in range(3300)}
    publisher.publish_many([("plant/budget-1/telemetry", {"ts": ts, "v": v})
                            for ts, v in pts.items()], timeout=60)
    wait_until(lambda: len(tw.db_history("budget-1", "v")) == len(pts), 30, what="all stored")
    packed_after_restart(tw, len(pts))
    assert len(blocks_of(tw, "budget-1")) == 1
    tw.stop()
    # minutes and an hour of three days ago (their raw points long gone)
    old = (now - 3 * DAY) // HOUR * HOUR
    import sqlite3
    con = sqlite3.connect(tw.db)
    con.execute("INSERT INTO series(twin, property) VALUES('budget-old', 'v')")
    sid = con.execute("SELECT id FROM series WHERE twin = 'budget-old'").fetchone()[0]
    con.executemany("INSERT INTO rollup_1m VALUES(?, ?, 1, 1.0, 1.0, 1.0, ?, 1.0, ?, 1.0)",
                    [(sid, old + i * MINUTE, old + i * MINUTE, old + i * MINUTE)
                     for i in range(60)])
    con.execute("INSERT INTO rollup_1h VALUES(?, ?, 60, 60.0, 1.0, 1.0, ?, 1.0, ?, 1.0)",
                (sid, old, old, old + 59 * MINUTE))
    con.commit()
    con.close()
    # a budget no database meets: raw goes down to the last hour, then minutes to the
    # last day; hours stay
    tw.conf.write_text(tw.conf.read_text().replace("[storage]\n",
                                                   "[storage]\nmax_db_size = 1K\n"))
    tw.start()
    t0 = now_ms()
    live = StreamPublisher(publisher, [("plant/budget-2/telemetry", {"ts": t0 + i, "v": i})
                                       for i in range(2000)], rate=100)
    live.start()

    def old_minute_parts():
        con = tw.db_connect()
        try:
            return con.execute("SELECT (SELECT count(*) FROM rollup_1m WHERE series = ?1), "
                               "(SELECT coalesce(sum(n), 0) FROM rollup_1m_block "
                               "WHERE series = ?1)", (sid,)).fetchone()
        finally:
            con.close()
    # the first round packs the old minutes (under the raw edge, a day old), long
    # before raw is down to its last hour and the budget takes minutes
    wait_until(lambda: old_minute_parts() == (0, 60), 30,
               what=f"the old minutes packed ({old_minute_parts()})")
    seen = []

    def advanced():
        m = marks(tw).get("budget:raw")
        if m is not None and (not seen or m > seen[-1]):
            seen.append(m)
        return len(seen) >= 3 or None
    # each round moves the edge on: a block kept across it does not hold it back
    wait_until(advanced, 40, what=f"the budget's raw edge moving three times ({seen})")
    assert seen[0] > base and seen[-1] < now - HOUR, (base, seen)
    # by a tenth of the age each time (about 10 minutes here), not held at the block's start
    assert all(b - a >= MINUTE for a, b in zip(seen, seen[1:])), seen
    assert "over max_db_size" in tw.log()
    edge = marks(tw)["raw"]
    assert edge >= seen[-2] // MINUTE * MINUTE, (edge, seen)
    kept = sorted((ts, v) for ts, v in pts.items() if ts >= edge)
    got = raw(tw, "budget-1", base, base + 2 * HOUR)
    # the next round may have moved the edge between the two reads: a suffix, exact
    assert got and got == kept[len(kept) - len(got):] and len(got) <= len(kept), \
        (len(got), len(kept))
    # the rollups answer for all of it, exact
    lo, hi = base, base + len(pts) * 1000 - 1
    same_buckets(get_buckets(tw, "budget-1", "v", "1m", lo, hi).json(),
                 expected_buckets(pts, MINUTE, lo, hi))
    acked = live.wait_acked(60)
    assert len(acked) == 2000
    wait_until(lambda: len(tw.db_history("budget-2", "v")) == 2000, 20,
               what="every live point stored while the budget trimmed")

    def old_minutes():
        con = tw.db_connect()
        try:
            # rows, and rows packed into blocks (under the raw edge)
            return [con.execute(f"SELECT (SELECT count(*) FROM rollup_1{t} WHERE series = ?1)"
                                f" + (SELECT coalesce(sum(n), 0) FROM rollup_1{t}_block "
                                f"WHERE series = ?1)", (sid,)).fetchone()[0]
                    for t in ("m", "h")]
        finally:
            con.close()
    # raw down to its last hour (the live points are in it): the oldest minutes go next
    wait_until(lambda: old_minutes() == [0, 1], 120, what=f"the old minutes trimmed "
               f"({old_minutes()}, marks {marks(tw)})")
    assert marks(tw)["budget:1m"] > old
    assert "trimming minutes older than" in tw.log()
