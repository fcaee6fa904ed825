"""Minute and hour rollups under the raw edge packed into compressed blocks,
as an operator reading months of history would see it: every bucket exact
against values the test computes, whatever tier and step; a late point, a
redelivery or a correction under the edge changing nothing; a restart
keeping it all; minute retention deleting whole blocks while the hour tier
answers for what went; and the bytes per rollup row."""
from conftest import now_ms, wait_until
from test_history_blocks import same_buckets
from test_history_tiers import MINUTE, expected_buckets, get_buckets

HOUR = 3_600_000
DAY = 24 * HOUR


def packed_rows(tw, twin, table):
    con = tw.db_connect()
    try:
        return con.execute(
            f"SELECT coalesce(sum(b.n), 0), count(b.n), coalesce(sum(length(b.data)), 0) "
            f"FROM {table} b JOIN series s ON s.id = b.series WHERE s.twin = ?",
            (twin,)).fetchone()
    finally:
        con.close()


def rollup_rows(tw, twin, table, before):
    con = tw.db_connect()
    try:
        return con.execute(f"SELECT count(*) FROM {table} r JOIN series s ON s.id = r.series "
                           "WHERE s.twin = ? AND r.ts < ?", (twin, before)).fetchone()[0]
    finally:
        con.close()


def mark(tw, name):
    con = tw.db_connect()
    try:
        row = con.execute("SELECT before_ts FROM trimmed WHERE tier = ?", (name,)).fetchone()
        return row and row[0]
    finally:
        con.close()


def restart_with(tw, text, rows):
    tw.stop()
    tw.conf.write_text(tw.conf.read_text() + text)
    tw.start()
    wait_until(lambda: tw.metric("twind_history_rollups_packed_total") >= rows, 30,
               what=f"{rows} rollup rows packed")


def check_buckets(tw, twin, pts, lo, hi):
    for step, ms, tier in (("1m", MINUTE, "1m"), ("15m", 15 * MINUTE, "1m"),
                           ("1h", HOUR, "1h"), ("1d", DAY, "1h")):
        r = get_buckets(tw, twin, "v", step, lo, hi)
        assert r.headers["X-History-Tier"] == tier, (step, r.headers["X-History-Tier"])
        same_buckets(r.json(), expected_buckets(pts, ms, lo, hi))


def test_rollups_under_the_raw_edge_are_packed_and_read_back_exact(make_twind, publisher):
    tw = make_twind()
    base = (now_ms() - 3 * DAY) // HOUR * HOUR
    # A sensor every 5 minutes for two days (each minute row one reading,
    # each hour row 12), and one every 10 s for 8 hours (6 a minute).
    sparse = {base + i * 5 * MINUTE + 1000: round(20 + (i % 37) * 0.25, 2)
              for i in range(576)}
    dense = {base + i * 10_000 + 7: round(50 + ((i * 7919) % 200) / 100, 2)
             for i in range(2880)}
    msgs = [("plant/rp-sparse/telemetry", {"ts": ts, "v": v}) for ts, v in sparse.items()]
    msgs += [("plant/rp-dense/telemetry", {"ts": ts, "v": v}) for ts, v in dense.items()]
    publisher.publish_many(msgs, timeout=60)
    wait_until(lambda: len(tw.db_history("rp-sparse", "v")) == len(sparse) and
               len(tw.db_history("rp-dense", "v")) == len(dense), 30, what="all stored")
    hi = base + 3 * DAY - 1
    check_buckets(tw, "rp-sparse", sparse, base, hi)       # from rows, before packing

    # Raw kept an hour: the raw points go, and the rollups under the edge pack.
    restart_with(tw, "[history]\nraw = 1h\n", 576 + 48 + 480 + 8)
    edge = mark(tw, "packed:rollups")
    assert edge is not None and edge >= base + 2 * DAY and edge % HOUR == 0
    for twin, minutes, hours in (("rp-sparse", 576, 48), ("rp-dense", 480, 8)):
        assert packed_rows(tw, twin, "rollup_1m_block")[0] == minutes
        assert packed_rows(tw, twin, "rollup_1h_block")[0] == hours
        assert rollup_rows(tw, twin, "rollup_1m", edge) == 0
        assert rollup_rows(tw, twin, "rollup_1h", edge) == 0
        assert tw.db_history(twin, "v") == []
    check_buckets(tw, "rp-sparse", sparse, base, hi)
    check_buckets(tw, "rp-dense", dense, base, hi)
    # a range that starts and ends inside a block
    check_buckets(tw, "rp-sparse", sparse, base + 7 * HOUR + 5, base + 30 * HOUR + 17)

    n, blocks, nbytes = packed_rows(tw, "rp-sparse", "rollup_1m_block")
    print(f"\none reading a minute row: {nbytes / n:.2f} bytes a row in {blocks} block(s)")
    assert nbytes / n <= 4
    n, blocks, nbytes = packed_rows(tw, "rp-sparse", "rollup_1h_block")
    print(f"12 readings an hour row: {nbytes / n:.2f} bytes a row")
    assert nbytes / n <= 30
    n, blocks, nbytes = packed_rows(tw, "rp-dense", "rollup_1m_block")
    print(f"6 readings a minute row: {nbytes / n:.2f} bytes a row")
    assert nbytes / n <= 30

    # Under the edge a point goes into no rollup: a redelivery, a correction, a late one.
    before = tw.metric("twind_values_too_old_total")
    ts0 = min(sparse)
    publisher.publish_many([("plant/rp-sparse/telemetry", {"ts": ts0, "v": sparse[ts0]}),
                            ("plant/rp-sparse/telemetry", {"ts": ts0 + 5 * MINUTE,
                                                           "v": 999.0}),
                            ("plant/rp-sparse/telemetry", {"ts": ts0 + 2 * MINUTE,
                                                           "v": -7.0})])
    wait_until(lambda: tw.metric("twind_values_too_old_total") == before + 3, 10,
               what="3 too old")
    check_buckets(tw, "rp-sparse", sparse, base, hi)
    assert packed_rows(tw, "rp-sparse", "rollup_1m_block")[0] == 576

    # A restart keeps the blocks, the edge and the answers.
    tw.stop()
    tw.start()
    assert mark(tw, "packed:rollups") >= edge
    check_buckets(tw, "rp-sparse", sparse, base, hi)
    check_buckets(tw, "rp-dense", dense, base, hi)


def test_minute_retention_deletes_whole_blocks_and_the_hour_tier_answers(make_twind,
                                                                        publisher):
    tw = make_twind()
    base = (now_ms() - 5 * DAY) // HOUR * HOUR
    # Four days at 5 minutes: 1,152 minute rows, a block of 1,024 and one of 128.
    pts = {base + i * 5 * MINUTE + 1000: float(i % 11) for i in range(1152)}
    publisher.publish_many([("plant/rp-ret/telemetry", {"ts": ts, "v": v})
                            for ts, v in pts.items()], timeout=60)
    wait_until(lambda: len(tw.db_history("rp-ret", "v")) == len(pts), 30, what="all stored")
    restart_with(tw, "[history]\nraw = 1h\n", 1152 + 96)
    assert packed_rows(tw, "rp-ret", "rollup_1m_block")[:2] == (1152, 2)

    # Minutes kept 30 hours: the older block goes whole; the one across the edge stays.
    tw.stop()
    tw.conf.write_text(tw.conf.read_text() + "minute = 30h\n")
    tw.start()
    wait_until(lambda: packed_rows(tw, "rp-ret", "rollup_1m_block")[:2] == (128, 1), 30,
               what="the older minute block deleted")
    cut = mark(tw, "1m")
    assert cut is not None and cut % HOUR == 0
    hi = base + 5 * DAY - 1
    # From the edge on, the minutes answer, from the kept block's rows.
    r = get_buckets(tw, "rp-ret", "v", "1m", cut, hi)
    assert r.headers["X-History-Tier"] == "1m"
    same_buckets(r.json(), expected_buckets(pts, MINUTE, cut, hi))
    kept = min(ts for ts in pts if ts >= cut)
    assert r.json()[0]["ts"] == kept - kept % MINUTE
    assert min(pts) < cut - 5 * MINUTE      # the kept block does hold older rows
    # Before the edge, the hour tier answers, in whole hours, from its blocks.
    r = get_buckets(tw, "rp-ret", "v", "1m", base, hi)
    assert r.headers["X-History-Tier"] == "1h"
    same_buckets(r.json(), expected_buckets(pts, HOUR, base, hi))
    assert packed_rows(tw, "rp-ret", "rollup_1h_block")[0] == 96
