"""Faults, each ending with nothing acknowledged lost and nothing corrupt
(PRAGMA integrity_check): kill -9 at random points under load, again and
again (TWIND_KILLS times, 5 in CI; `TWIND_KILLS=100` makes it the soak); a
corrupt database at start; SIGHUP under load with a bad rules file and then
a good one."""

import hashlib
import json
import os
import random
import time

from conftest import StreamPublisher, twind_check, check_exactly_once, now_ms, wait_stored, \
    wait_until
from test_reliability import (acked_by_twin, check_state_matches_history, integrity_ok,
                              make_stream, stored_count)

KILLS = int(os.environ.get("TWIND_KILLS", "5"))


def test_kill9_again_and_again_under_load(broker, make_twind, make_publisher):
    tw = make_twind()
    rnd = random.Random(int(os.environ.get("TWIND_SEED", "0")) or None)
    n = 1500 * (KILLS + 1)
    msgs, by_twin, owner = make_stream(n, 8, "soak")
    s = StreamPublisher(make_publisher(), msgs, rate=3000)
    s.start()
    points = []
    for k in range(KILLS):
        # a random moment: while idle, mid-batch, mid-commit or mid-restore
        time.sleep(rnd.uniform(0.05, 0.6))
        points.append(stored_count(tw))
        tw.kill9()
        tw.start(wait=rnd.random() < 0.5)
    acked_idx = s.wait_acked(120)
    assert len(acked_idx) == n
    if not tw.running():
        tw.start()
    wait_until(lambda: tw.get("/healthz", timeout=2).status_code == 200, 20,
               what="healthy after the kills")
    acked = acked_by_twin(owner, acked_idx)
    wait_stored(tw, acked, 120)
    check_state_matches_history(tw, by_twin)
    assert tw.stop() == 0
    check_exactly_once(tw, by_twin, acked)
    assert integrity_ok(tw)
    print(f"{KILLS} kills at stored counts {points}; {n} messages, all once")


def test_corrupt_database_is_refused_and_kept(tmp_path, make_twind, publisher):
    tw = make_twind()
    publisher.publish("plant/c-1/telemetry", {"ts": now_ms(), "v": 1})
    tw.wait_version("c-1", 1)
    assert tw.stop() == 0
    # garbage over the middle of the file: the header survives, the b-trees do not
    data = bytearray(tw.db.read_bytes())
    assert len(data) >= 8192, len(data)
    data[4096:len(data)] = os.urandom(len(data) - 4096)
    tw.db.write_bytes(bytes(data))
    for side in (tw.db.with_name(tw.db.name + "-wal"), tw.db.with_name(tw.db.name + "-shm")):
        side.unlink(missing_ok=True)
    before = hashlib.sha256(tw.db.read_bytes()).hexdigest()
    tw.expect_exit(1)
    tw.start(wait=False)
    rc = tw.wait_exit(10, expect=1)
    log = tw.log()
    assert "database" in log and ("malformed" in log or "corrupt" in log or "not a database" in log), \
        log[-800:]
    assert hashlib.sha256(tw.db.read_bytes()).hexdigest() == before, "the file was changed"
    assert rc == 1


def test_sighup_under_load_bad_then_good_rules(tmp_path, make_twind, make_publisher):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"name": "hi", "when": "seq > 1e9"}]))
    tw = make_twind(extra={"rules": {"file": str(rules)}})
    n = 6000
    msgs, by_twin, owner = make_stream(n, 6, "hup")
    s = StreamPublisher(make_publisher(), msgs, rate=3000)
    s.start()
    wait_until(lambda: len(s.acked()) >= 1000, 15, what="load under way")
    # a bad file: refused whole, the running rules stay
    rules.write_text('[{"name": "ok", "when": "seq > 0"}, {"name": "bad", "when": "seq >"}]')
    tw.hup()
    wait_until(lambda: "SIGHUP: errors" in tw.log(), 5, what="the bad file refused")
    names = [r["name"] for r in tw.get("/api/v1/rules").json()["rules"]]
    assert names == ["hi"], names
    # a good one: in force, while messages keep coming
    rules.write_text(json.dumps([{"name": "seen", "when": "seq >= 0", "severity": "info"}]))
    tw.hup()
    wait_until(lambda: [r["name"] for r in tw.get("/api/v1/rules").json()["rules"]] == ["seen"],
               5, what="the good file in force")
    acked_idx = s.wait_acked(60)
    assert len(acked_idx) == n
    acked = acked_by_twin(owner, acked_idx)
    wait_stored(tw, acked, 60)
    wait_until(lambda: tw.get("/api/v1/rules").json()["rules"][0]["stats"]["raises"] >= 1, 5,
               what="the new rule judging the load")
    assert tw.stop() == 0
    check_exactly_once(tw, by_twin, acked)
    assert integrity_ok(tw)


def test_check_on_a_corrupt_database_changes_nothing(tmp_path):
    """--check does not open the database at all."""
    db = tmp_path / "t.db"
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(8000))
    before = db.read_bytes()
    conf = tmp_path / "c.conf"
    conf.write_text(f"[storage]\ndatabase = {db}\n")
    r = twind_check(conf)
    assert r.returncode == 0, r.stderr
    assert db.read_bytes() == before
