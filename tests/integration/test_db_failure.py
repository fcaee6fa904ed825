"""A database that fails for a while (another process holds its write lock):
commits fail, nothing acknowledged is lost, and the twins come back whole,
with their rules."""

import json
import sqlite3
import threading
import time

from conftest import now_ms, wait_until


def test_rules_survive_a_failed_commit(tmp_path, make_twind, publisher):
    rfile = tmp_path / "rules.json"
    rfile.write_text(json.dumps([{"name": "hot", "when": "temperature > 90"}]))
    tw = make_twind(extra={"rules": {"file": str(rfile)}})
    T = now_ms()
    publisher.publish("plant/dbf-1/telemetry", {"ts": T, "temperature": 50})
    tw.wait_version("dbf-1", 1)

    # Hold the write lock longer than twind's busy timeout (5 s): its commits fail.
    con = sqlite3.connect(str(tw.db), timeout=5, isolation_level=None,
                          check_same_thread=False)
    con.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release():
        time.sleep(7)
        con.execute("ROLLBACK")
        con.close()
        released.set()

    threading.Thread(target=release, daemon=True).start()
    publisher.publish("plant/dbf-1/telemetry", {"ts": T + 1, "temperature": 60})
    wait_until(lambda: tw.metric("twind_commit_failures_total") >= 1, 15,
               what="a failed commit while the lock is held")
    assert released.wait(15)
    # The message was redelivered and stored; the twin still has its rule.
    wait_until(lambda: tw.version("dbf-1") == 2, 30, what="the redelivered update applied")
    publisher.publish("plant/dbf-1/telemetry", {"ts": T + 2, "temperature": 99})
    alerts = wait_until(lambda: tw.get("/api/v1/alerts?twin=dbf-1").json()["alerts"], 10,
                        what="the rule still raising after the failure")
    assert [a["rule"] for a in alerts] == ["hot"]
    assert tw.get("/healthz").status_code == 200
    assert [r[1] for r in tw.db_history("dbf-1", "temperature")] == [50, 60, 99]
