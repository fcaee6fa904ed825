"""Status over time (stale, offline, roll-up, list filter) and the live event
stream /api/v1/events (twin, status, desired events; filters; too many
clients; a stalled client cut off without slowing ingestion; heartbeats).

Status: the Pump's shortest period is 1 s (temperature; a slower 10 s
Telemetry is listed first), stale_factor 2 and offline_factor 4: stale after
more than 2 s without a message, offline after more than 4 s."""

import threading
import time

import pytest

from conftest import (EventStream, LINE_ID, PUMP_ID, Publisher, Twind, now_ms, patch_desired,
                      plant_extra, shared_plant, wait_until, write_plant)

TWINS = [
    {"id": "s-line", "model": LINE_ID},
    {"id": "s-a", "model": PUMP_ID, "parent": "s-line"},
    {"id": "s-b", "model": PUMP_ID, "parent": "s-line"},
    {"id": "ev-a1", "model": PUMP_ID},
    {"id": "ev-b1", "model": PUMP_ID},
    {"id": "ev-a2", "model": PUMP_ID},
]

HEARTBEAT_S = 15


@pytest.fixture(scope="module")
def plant(request, tmp_path_factory):
    with shared_plant(request, tmp_path_factory, TWINS) as s:
        yield s


@pytest.fixture(scope="module")
def idle_stream(plant):
    """A stream no event matches, opened when the module starts; the last
    test of the module looks for its heartbeat."""
    s = EventStream(plant.twind.http_port, "/api/v1/events?twin=nobody-*")
    s.opened = time.monotonic()
    yield s
    s.close()


def value_of(v):
    return v["value"] if isinstance(v, dict) else v


# --------------------------------------------------------------------------
# status

class Heartbeat(threading.Thread):
    """Keeps a twin reporting every `every` seconds until stopped."""

    def __init__(self, pub, twin, every=0.3):
        super().__init__(daemon=True)
        self.pub, self.twin, self.every = pub, twin, every
        self.stop = threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            self.pub.publish_async(f"plant/{self.twin}/telemetry", {"temperature": 20 + i % 5})
            i += 1
            self.stop.wait(self.every)


SLACK = 1500      # status is judged on a 1 s timer: allow that, and a loaded machine


def test_status_stale_then_offline(plant, idle_stream):
    tw, pub = plant.twind, plant.pub
    ev = EventStream(tw.http_port, "/api/v1/events?twin=s-*")
    keep = Heartbeat(pub, "s-a")
    try:
        assert ev.wait_head() == 200
        # a twin of the file that never reported is offline
        line = tw.twin("s-line")
        assert line["status"] == "offline" and line["last_seen_ts"] is None
        keep.start()
        tw.wait_version("s-a", 1)
        pub.publish("plant/s-b/telemetry", {"temperature": 30, "count": 1})
        doc = tw.wait_version("s-b", 1)
        last = doc["last_seen_ts"]
        assert abs(now_ms() - last) < 1000, (last, now_ms())

        obs = []           # (age at request start, age at request end, status, roll-up)
        lists = []         # (age at start, age at end, list status that holds s-b)
        flags = []         # (age at start, age at end, temperature.stale, count.stale)
        deadline = time.monotonic() + 4 + SLACK / 1000 + 2
        while time.monotonic() < deadline:
            t0 = now_ms()
            b = tw.twin("s-b")
            line = tw.twin("s-line")
            listed = {st: [t["id"] for t in tw.get("/api/v1/twins",
                                                   params={"status": st}).json()["twins"]]
                      for st in ("online", "stale", "offline")}
            t1 = now_ms()
            assert b["last_seen_ts"] == last, "s-b was seen again?"
            obs.append((t0 - last, t1 - last, b["status"], line["rollup"]["status"]))
            flags.append((t0 - last, t1 - last, b["reported"]["temperature"]["stale"],
                          b["reported"]["count"]["stale"]))
            # the three filters are three requests in the order the status
            # moves, so a change between two of them shows s-b in both
            # neighbours; it must never be in none or in two apart
            holding = [st for st in ("online", "stale", "offline") if "s-b" in listed[st]]
            assert holding in (["online"], ["stale"], ["offline"],
                               ["online", "stale"], ["stale", "offline"]), listed
            lists.append((t0 - last, t1 - last, holding[-1]))
            assert "s-a" in listed["online"], listed
            assert tw.twin("s-a")["status"] == "online"
            assert line["rollup"]["twins"] == 2
            if b["status"] == "offline":
                break
            time.sleep(0.1)

        order = {"online": 0, "stale": 1, "offline": 2}
        for what, seq in (("status", [(a, b, st) for a, b, st, _ in obs]),
                          ("roll-up", [(a, b, r) for a, b, _, r in obs]),
                          ("list filter", lists)):
            states = [st for _, _, st in seq]
            assert set(states) == {"online", "stale", "offline"}, (what, seq)
            assert [order[st] for st in states] == sorted(order[st] for st in states), \
                (what, seq)
            for a, b, st in seq:
                # never early, and late by at most the timer and some slack
                if st == "online":
                    assert a <= 2000 + SLACK, (what, "online too long", seq)
                elif st == "stale":
                    assert b > 2000, (what, "stale too early", seq)
                    assert a <= 4000 + SLACK, (what, "stale too long", seq)
                else:
                    assert b > 4000, (what, "offline too early", seq)

        # reported.<p>.stale: temperature (period 1 s) after 2 s; count has no period
        assert any(t for _, _, t, _ in flags) and not any(c for _, _, _, c in flags), flags
        for a, b, t, _ in flags:
            assert t or a <= 2000 + 100, ("temperature not stale", flags)
            assert not t or b > 2000 - 100, ("temperature stale too early", flags)

        # and the changes were events, in order, with the time they refer to
        st_ev = ev.wait_event(lambda e: e.data["twin"] == "s-b" and e.data["status"] == "offline",
                              3, etype="status", what="s-b offline event")
        evs = [e for e in ev.snapshot("status") if e.data["twin"] == "s-b"]
        pairs = [(e.data["previous"], e.data["status"]) for e in evs]
        assert pairs[-2:] == [("online", "stale"), ("stale", "offline")], pairs
        for e in evs[-2:]:
            assert set(e.data) >= {"twin", "status", "previous", "last_seen_ts"}, e
            assert e.data["last_seen_ts"] == last
        assert st_ev.data["status"] == "offline"
        assert not [e for e in ev.snapshot("status") if e.data["twin"] == "s-a"
                    and e.data["status"] != "online"], ev.snapshot("status")
    finally:
        keep.stop.set()
        keep.join(2)
        ev.close()


def test_online_with_its_message(plant, idle_stream):
    """A message makes its twin online at once: the status event goes out
    with that message's commit, ahead of the twin event, not a tick later
    (when the twins a burst created would all change status together)."""
    tw, pub = plant.twind, plant.pub
    s = EventStream(tw.http_port, "/api/v1/events?twin=on-*")
    try:
        assert s.wait_head() == 200
        twins = [f"on-{k}" for k in range(5)]
        for t in twins:
            pub.publish(f"plant/{t}/telemetry", {"n": 1})
        for t in twins:
            s.wait_event(lambda e: e.data["twin"] == t, 5, etype="twin",
                         what=f"the twin event of {t}")
        seen = [(e.type, e.data["twin"], e.data.get("previous"), e.data.get("status"))
                for e in s.snapshot()]
        for t in twins:
            assert ("status", t, "offline", "online") in seen, (t, seen)
            first = next(kind for kind, twin, _, _ in seen if twin == t)
            assert first == "status", (f"{t}: its twin event came before it was online", seen)
        # and the timer has nothing left to say about them
        time.sleep(1.2)
        said = [(e.data["twin"], e.data["previous"]) for e in s.snapshot("status")]
        assert sorted(said) == [(t, "offline") for t in twins], said
    finally:
        s.close()


# --------------------------------------------------------------------------
# events

def test_events_twin_and_desired(plant, idle_stream):
    tw, pub = plant.twind, plant.pub
    every = EventStream(tw.http_port)
    only_a = EventStream(tw.http_port, "/api/v1/events?twin=ev-a*")
    try:
        for s in (every, only_a):
            assert s.wait_head() == 200, (s.status, s.body)
            assert s.headers.get("content-type", "").startswith("text/event-stream"), s.headers
        # the stream opens with a comment
        wait_until(lambda: every.blocks, 5, what="the first block")
        assert every.blocks[0][0] == "comment", every.blocks[:2]
        wait_until(lambda: only_a.blocks, 5, what="the first block")
        assert only_a.blocks[0][0] == "comment", only_a.blocks[:2]

        T = now_ms() - 10_000
        pub.publish("plant/ev-b1/telemetry", {"temperature": 10, "ts": T})
        pub.publish("plant/ev-a1/telemetry", {"temperature": 20, "count": 1, "ts": T})
        e = every.wait_event(lambda e: e.data["twin"] == "ev-a1", 5, etype="twin",
                             what="twin event of ev-a1")
        assert set(e.data) >= {"twin", "version", "last_seen_ts", "reported"}, e
        assert e.data["version"] == 1
        assert set(e.data["reported"]) == {"temperature", "count"}, e
        assert value_of(e.data["reported"]["temperature"]) == 20
        assert value_of(e.data["reported"]["count"]) == 1
        assert e.data["last_seen_ts"] == tw.twin("ev-a1")["last_seen_ts"]
        every.wait_event(lambda e: e.data["twin"] == "ev-b1", 5, etype="twin",
                         what="twin event of ev-b1")

        # only what changed; a dropped message is no event
        pub.publish("plant/ev-a1/telemetry", {"temperature": "hot", "ts": T + 500})
        pub.publish("plant/ev-a1/telemetry", {"temperature": 21, "ts": T + 1000})
        e = only_a.wait_event(lambda e: e.data["version"] == 2, 5, etype="twin",
                              what="ev-a1 version 2 on the filtered stream")
        assert set(e.data["reported"]) == {"temperature"}, e
        assert value_of(e.data["reported"]["temperature"]) == 21

        # desired: the delta when it is published, and the empty one (twice)
        versions_of_patches = []
        for speed in (1000, 1100):
            r = patch_desired(tw, "ev-a1", {"speed": speed})
            assert r.status_code == 200, r.text
            v = r.json()["version"]
            versions_of_patches.append(v)
            e = only_a.wait_event(lambda e: e.data["delta"] == {"speed": speed}, 5,
                                  etype="desired", what="desired event")
            assert e.data["twin"] == "ev-a1" and e.data["version"] == v, e
            n_empty = len([e for e in only_a.snapshot("desired") if e.data["delta"] == {}])
            pub.publish("plant/ev-a1/telemetry", {"speed": speed})
            wait_until(lambda: len([e for e in only_a.snapshot("desired")
                                    if e.data["delta"] == {}]) > n_empty, 5,
                       what="desired event with the empty delta")
            only_a.wait_event(lambda e: e.data["version"] == v + 1, 5, etype="twin",
                              what="the twin event of the converging report")
            time.sleep(0.2)

        # bookkeeping after a publication (its acknowledgement) may be committed
        # by the engine's 1 s timer: give it that long before counting events
        time.sleep(1.2)
        # the filter held: nothing of ev-b1 on the ev-a* stream
        pub.publish("plant/ev-b1/telemetry", {"temperature": 11, "ts": T + 1000})
        every.wait_event(lambda e: e.data["twin"] == "ev-b1" and e.data["version"] == 2, 5,
                         etype="twin", what="ev-b1 version 2")
        assert all(e.data.get("twin") == "ev-a1" for e in only_a.snapshot()), only_a.snapshot()
        # one event per commit that changed the twin: the reported changes
        # and perhaps the desired changes; never the same version twice
        evs = [e for e in only_a.snapshot("twin") if e.data["twin"] == "ev-a1"]
        versions = [e.data["version"] for e in evs]
        trace = "\n".join(f"{e.type} {e.raw}" for e in only_a.snapshot()
                           if e.data.get("twin") == "ev-a1")
        assert versions == sorted(set(versions)), "repeated twin events:\n" + trace
        v1, v2 = versions_of_patches
        assert {1, 2, v1 + 1, v2 + 1} <= set(versions) <= {1, 2, v1, v1 + 1, v2, v2 + 1}, trace
    finally:
        every.close()
        only_a.close()


def test_event_of_unseen_twin_agrees_with_document(plant, idle_stream):
    """A twin that never reported has last_seen_ts null in its document; the
    twin event of a desired change must say the same, not 0 (1970)."""
    tw = plant.twind
    s = EventStream(tw.http_port, "/api/v1/events?twin=ev-a2")
    try:
        assert s.wait_head() == 200
        r = patch_desired(tw, "ev-a2", {"mode": "x"})
        assert r.status_code == 200, r.text
        e = s.wait_event(lambda e: e.data["twin"] == "ev-a2", 5, etype="twin",
                         what="the twin event of a desired change")
        doc = tw.twin("ev-a2")
        assert doc["last_seen_ts"] is None
        assert e.data["version"] == r.json()["version"] and e.data["reported"] == {}, e
        assert e.data["last_seen_ts"] == doc["last_seen_ts"], (e.data, "document: null")
    finally:
        s.close()


def test_too_many_event_clients_503(tmp_path, broker, stack):
    mdir, tfile = write_plant(tmp_path / "conf", None, [])
    extra = plant_extra(mdir, tfile)
    extra["http"] = {"max_event_clients": "2"}
    tw = Twind(tmp_path / "twind", broker, extra)
    stack.twinds.append(tw)
    tw.start()
    streams = []
    try:
        for _ in range(2):
            s = EventStream(tw.http_port)
            streams.append(s)
            assert s.wait_head() == 200
        third = EventStream(tw.http_port)
        streams.append(third)
        assert third.wait_head() == 503, (third.status, third.body)
        assert tw.get("/healthz").status_code == 200
        # a place frees up when a client leaves (twind may notice only when
        # it next writes to it: events are flowing here)
        streams[0].close()
        pub = Publisher(broker.port)
        stack.pubs.append(pub)

        def another():
            pub.publish("plant/free-1/telemetry", {"n": now_ms()})
            s = EventStream(tw.http_port)
            streams.append(s)
            st = s.wait_head()
            if st != 200:
                s.close()
            return st == 200
        wait_until(another, 10, interval=0.2, what="a stream after one client left")
    finally:
        for s in streams:
            s.close()


def test_stalled_client_is_cut_off_and_ingest_keeps_pace(tmp_path, broker, stack,
                                                         make_publisher):
    mdir, tfile = write_plant(tmp_path / "conf", None, [])
    extra = plant_extra(mdir, tfile)
    extra["http"] = {"event_buffer": "4096"}
    tw = Twind(tmp_path / "twind", broker, extra)
    stack.twinds.append(tw)
    tw.start()
    pub = make_publisher()
    stalled = EventStream(tw.http_port, read=False, rcvbuf=2048)
    try:
        cut0 = tw.metric("twind_event_clients_cut_total")
        time.sleep(0.3)                 # let twind take the request
        # Many twins and big values: every commit makes many large events,
        # whatever the batch sizes, far beyond the buffer and the socket's.
        n, twins = 3000, 100
        T = now_ms() - 600_000
        pad = "x" * 1000
        msgs = [(f"plant/cut-{i % twins}/telemetry",
                 {"seq": i, "pad": pad, "ts": T + i}) for i in range(n)]
        t0 = time.monotonic()
        pub.publish_many(msgs, timeout=30)
        for k in range(twins):
            tw.wait_version(f"cut-{k}", n // twins, timeout=20)
        elapsed = time.monotonic() - t0
        assert elapsed < 15, f"{n} messages took {elapsed:.1f}s with a stalled client"
        wait_until(lambda: tw.metric("twind_event_clients_cut_total") >= cut0 + 1, 5,
                   what="the stalled client counted as cut off")
        assert tw.get("/healthz").status_code == 200
        # others can still listen, once the cut client is gone (on a slow,
        # sanitized build the last events of the backlog are still going out)
        wait_until(lambda: tw.metric("twind_event_clients") == 0, 10,
                   what="the stalled client gone")
        s = EventStream(tw.http_port)
        try:
            assert s.wait_head() == 200
            # A tick: the twins the burst created were online with their first
            # messages, so the timer has no burst of status events for them
            # (with this small buffer, such a burst cut the new client in CI).
            time.sleep(1.2)
            assert tw.metric("twind_event_clients") == 1
            pub.publish("plant/cut-0/telemetry", {"seq": -1, "ts": T + n})
            try:
                s.wait_event(lambda e: e.data["twin"] == "cut-0", 10, etype="twin",
                             what="an event after the cut")
            except AssertionError as e:
                # Seen once in CI and never since: say which side lost it.
                doc = tw.twin("cut-0")
                raise AssertionError(
                    f"{e}; stream: status {s.status}, ended {s.ended.is_set()}, "
                    f"{len(s.body)} body bytes, last blocks {s.blocks[-3:]!r}; "
                    f"cut-0: version {doc.get('version')}, seq {doc['reported'].get('seq')!r}; "
                    f"clients {tw.metric('twind_event_clients')}, "
                    f"cut {tw.metric('twind_event_clients_cut_total')}") from None
        finally:
            s.close()
    finally:
        stalled.close()


def test_heartbeat_comment(plant, idle_stream):
    """Last in this module: by now most of the 15 s have passed already."""
    left = idle_stream.opened + HEARTBEAT_S + 3 - time.monotonic()
    wait_until(lambda: len(idle_stream.comments()) >= 2, max(left, 0.5), interval=0.2,
               what="a heartbeat comment within 15 s of quiet")
    assert idle_stream.status == 200
    assert idle_stream.blocks[0][0] == "comment"
    assert idle_stream.snapshot() == [], "the filter let an event through"
