"""Commands at scale, through MQTT and REST: a bridge that answers at once, one
that never answers, one whose model says it does not answer, and the bounds."""

from conftest import (CTX, Bridge, Broker, Publisher, Twind, now_ms, plant_extra, wait_until,
                      write_plant)

MODEL = "dtmi:test:Valve;1"


def valve_model():
    return {"@context": CTX, "@id": MODEL, "@type": "Interface",
            "contents": [
                {"@type": "Telemetry", "name": "flow", "schema": "double"},
                {"@type": "Command", "name": "open"},
                {"@type": "Command", "name": "close", "timeout": "1s"},
                {"@type": "Command", "name": "pulse", "acknowledged": False}]}


def commands(tw, **q):
    r = tw.get("/api/v1/commands", params=q)
    assert r.status_code == 200, r.text
    return {c["id"]: c for c in r.json()["commands"]}


def post(tw, twin, command, params=None):
    body = {"command": command}
    if params is not None:
        body["params"] = params
    return tw.request("POST", f"/api/v1/twins/{twin}/commands", json=body)


def plant(tmp_path, make_twind, **commands_keys):
    mdir, tfile = write_plant(tmp_path / "plant", {"valve.json": valve_model()},
                              [{"id": f"v-{i}", "model": MODEL} for i in range(3)])
    extra = plant_extra(mdir, tfile)
    extra["commands"] = {k: str(v) for k, v in commands_keys.items()}
    return make_twind(extra=extra)


def test_prompt_answers_all_done(tmp_path, make_twind, broker):
    """An asset that answers before twind has committed the PUBACK's 'sent'."""
    tw = plant(tmp_path, make_twind)
    bridge = Bridge(broker.port, answer=True)
    try:
        ids = []
        for i in range(20):
            r = post(tw, "v-0", "open", {"n": i})
            assert r.status_code == 202, r.text
            c = r.json()
            assert c["status"] == "pending" and c["params"] == {"n": i}
            ids.append(c["id"])
        done = wait_until(lambda: (lambda cs: cs if all(cs[i]["status"] == "done" for i in ids)
                                   else None)(commands(tw, twin="v-0")), 10,
                          what="20 commands answered done")
        assert all(done[i]["acked_ts"] is not None for i in ids)
        wire = {c["id"]: c for c in bridge.got}
        assert set(ids) <= set(wire)
        for i in ids:
            assert wire[i]["expires_ts"] > wire[i]["issued_ts"]
        assert tw.metric("twind_commands_pending") == 0
    finally:
        bridge.close()


def test_silent_bridge_costs_nothing_and_times_out(tmp_path, make_twind, broker):
    """A bridge that never answers: sent, then timed_out; nothing waits in memory."""
    tw = plant(tmp_path, make_twind, max_inflight_per_twin=5)
    bridge = Bridge(broker.port, answer=False)
    try:
        # Far more than the per-twin bound: sent commands do not count against it.
        ids = [post(tw, "v-1", "close").json()["id"] for _ in range(30)]
        wait_until(lambda: len(bridge.got) >= 30, 10, what="30 commands on the wire")
        wait_until(lambda: all(c["status"] == "sent" for c in commands(tw, twin="v-1").values()),
                   5, what="all sent")
        assert tw.metric("twind_commands_pending") == 0
        # The model gives close a 1 s timeout: the sweep times them out.
        wait_until(lambda: all(c["status"] == "timed_out"
                               for c in commands(tw, twin="v-1").values()), 5,
                   what="all timed out after the model's 1 s")
        assert tw.metric("twind_commands_total", status="timed_out") == 30
        assert len(ids) == 30
    finally:
        bridge.close()


def test_unacknowledged_command_is_done_at_puback(tmp_path, make_twind, broker):
    tw = plant(tmp_path, make_twind)
    bridge = Bridge(broker.port, answer=False)
    try:
        cid = post(tw, "v-2", "pulse").json()["id"]
        c = wait_until(lambda: (lambda c: c if c["status"] == "done" else None)(
            commands(tw, twin="v-2")[cid]), 5, what="pulse done at the broker's PUBACK")
        assert "does not answer" in c["reason"]
    finally:
        bridge.close()


def test_ids_grow_across_a_restart_whatever_the_clock(tmp_path, make_twind, broker):
    """A gateway without a real-time clock may start with its clock behind the
    ids it stored before: new ids still go above the stored ones, so a new
    command can never take an old one's row."""
    import sqlite3
    tw = plant(tmp_path, make_twind)
    first = post(tw, "v-0", "pulse").json()["id"]
    assert tw.stop() == 0
    # a command of the year 2500 (as if the clock had been that far ahead)
    ahead = "c-%016x" % (((16725225600000) << 20) | 5)
    con = sqlite3.connect(str(tw.db))
    t = now_ms() - 1000     # recent: retention keeps it
    con.execute("INSERT INTO commands(id, twin, command, params, status, issued_ts) "
                "VALUES (?, 'v-0', 'pulse', '{}', 'done', ?)", (ahead, t))
    con.commit()
    con.close()
    tw.start()
    later = post(tw, "v-0", "pulse").json()["id"]
    assert first < ahead < later, (first, ahead, later)
    con = sqlite3.connect(f"file:{tw.db}?mode=ro", uri=True)
    rows = dict(con.execute("SELECT id, issued_ts FROM commands").fetchall())
    con.close()
    assert rows[ahead] == t and rows[later] > t and len(rows) == 3, rows


def test_bound_per_twin_refuses_with_a_stored_reason(tmp_path, make_twind, broker):
    """With the broker away, commands wait; beyond the per-twin bound they are
    refused (429) and stored as such, while another twin still gets its own."""
    tw = plant(tmp_path, make_twind, max_inflight_per_twin=3)
    broker.stop()
    wait_until(lambda: tw.get("/healthz").status_code == 503, 10, what="broker lost")
    for _ in range(3):
        assert post(tw, "v-0", "open").status_code == 202
    r = post(tw, "v-0", "open")
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "refused"
    refused = [c for c in commands(tw, twin="v-0").values() if c["status"] == "refused"]
    assert len(refused) == 1 and "max_inflight_per_twin" in refused[0]["reason"]
    assert post(tw, "v-1", "open").status_code == 202
    assert tw.metric("twind_commands_total", status="refused") == 1
    assert tw.metric("twind_commands_pending") == 4
    # Params are bounded: a waiting command holds them.
    r = post(tw, "v-1", "open", {"blob": "x" * 5000})
    assert r.status_code == 400, r.text
    broker.start()
    wait_until(lambda: tw.metric("twind_commands_pending") == 0, 10,
               what="the waiting commands sent once the broker is back")
    assert now_ms() > 0


def test_command_refused_by_the_broker_acl(tmp_path, stack, make_publisher):
    """MQTT v5: a command the broker's ACL refuses is `failed` with the reason
    code, never `sent` as if a machine could have it."""
    b = Broker(tmp_path / "acl-broker")
    acl = tmp_path / "acl"
    acl.write_text("\n".join(f"topic readwrite {t}" for t in (
        "plant/+/telemetry", "plant/+/telemetry/#", "plant/+/cmd/ack", "plant/ok-1/cmd",
        "plant/+/alert", "plant/+/desired", "harness/#")) + "\n")
    b.conf.write_text(b.conf.read_text() + f"acl_file {acl}\n")
    stack.brokers.append(b)
    b.start()
    # Twins without a model: this is about the broker's ACL, not the model's list.
    tw = Twind(tmp_path / "tw", b, extra={"commands": {"allow_unmodelled": "yes"}})
    stack.twinds.append(tw)
    tw.start()
    pub = Publisher(b.port)
    stack.pubs.append(pub)
    T = now_ms()
    for twin in ("ok-1", "no-1"):
        pub.publish(f"plant/{twin}/telemetry", {"ts": T, "flow": 1})
        tw.wait_version(twin, 1)
    ok = post(tw, "ok-1", "open").json()["id"]
    no = post(tw, "no-1", "open").json()["id"]
    wait_until(lambda: commands(tw, twin="ok-1")[ok]["status"] == "sent", 5, what="ok-1 sent")
    c = wait_until(lambda: (lambda c: c if c["status"] == "failed" else None)(
        commands(tw, twin="no-1")[no]), 5, what="no-1 failed: refused by the broker")
    assert "0x87" in c["reason"], c
    assert tw.metric("twind_commands_total", status="failed") == 1
