"""The optional state topic: each changed twin's document, retained, at most
once per state_interval."""

import time

from conftest import Subscriber, now_ms, retained, wait_until


def test_state_topic_is_retained_and_rate_limited(broker, make_twind, publisher):
    tw = make_twind(extra={"mqtt": {"state_topic": "plant/{twin}/state",
                                    "state_interval": "2s"}})
    sub = Subscriber(broker.port, ["plant/st-1/state"])
    try:
        sub.sync()
        t0 = now_ms()
        # 20 updates within about a second: at most one or two documents.
        for i in range(20):
            publisher.publish("plant/st-1/telemetry", {"ts": t0 + i, "temperature": 50 + i})
            time.sleep(0.05)
        tw.wait_version("st-1", 20)
        wait_until(lambda: any(m.json()["version"] == 20 for m in sub.messages("plant/st-1/state")),
                   6, what="the document at version 20 on the state topic")
        docs = [m.json() for m in sub.messages("plant/st-1/state")]
        assert 1 <= len(docs) <= 3, [d["version"] for d in docs]
        last = docs[-1]
        assert last["id"] == "st-1" and last["status"] == "online"
        assert last["reported"]["temperature"]["value"] == 69
        assert last["reported"]["temperature"]["ts"] == t0 + 19
        # A later subscriber gets the same document: it is retained.
        r = retained(broker.port, "plant/st-1/state")
        assert r is not None and r.json()["version"] == 20
    finally:
        sub.close()


def test_no_state_topic_by_default(broker, twind, publisher):
    publisher.publish("plant/st-2/telemetry", {"temperature": 1})
    twind.wait_version("st-2", 1)
    time.sleep(1.5)     # past a timer tick
    assert retained(broker.port, "plant/st-2/state") is None
