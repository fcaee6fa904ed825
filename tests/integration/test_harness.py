"""The harness itself: the broker fixture keeps a persistent session and its
queued QoS 1 messages across a SIGTERM restart (the broker-restart, SIGTERM
and kill -9 tests rely on it), and the metrics parser reads Prometheus text.
These need no twind."""

import threading

import paho.mqtt.client as mqtt

from conftest import Broker, Publisher, metric_value, parse_prometheus, wait_until


def test_broker_keeps_persistent_session_across_restart(tmp_path):
    b = Broker(tmp_path / "broker").start()
    got, subscribed = [], threading.Event()
    sub = None
    try:
        def on_message(c, u, msg):
            got.append(msg.payload)

        def connect_sub():
            c = mqtt.Client(client_id="harness-sub", clean_session=False)
            c.on_message = on_message
            c.on_subscribe = lambda *a: subscribed.set()
            c.connect("127.0.0.1", b.port)
            c.loop_start()
            return c

        sub = connect_sub()
        sub.subscribe("plant/+/telemetry", qos=1)
        assert subscribed.wait(5)
        sub.disconnect()
        sub.loop_stop()

        pub = Publisher(b.port)
        pub.publish_many([("plant/x/telemetry", b"m%d" % i) for i in range(50)])
        pub.close()

        b.restart()
        assert b.running()

        sub = connect_sub()
        wait_until(lambda: len(got) >= 50, 10, what="queued messages after restart")
        assert got == [b"m%d" % i for i in range(50)]
    finally:
        if sub is not None:
            sub.disconnect()
            sub.loop_stop()
        b.stop()


def test_parse_prometheus():
    text = """# HELP twind_messages_dropped_total dropped
# TYPE twind_messages_dropped_total counter
twind_messages_dropped_total{reason="malformed"} 3
twind_messages_dropped_total{ reason = "too_large" } 1 1700000000000
twind_commit_seconds_bucket{le="+Inf"} 12
twind_commit_seconds_sum 0.5e-1
twind_twins 7
"""
    m = parse_prometheus(text)
    assert m['twind_messages_dropped_total{reason="malformed"}'] == 3
    assert metric_value(m, "twind_messages_dropped_total", reason="too_large") == 1
    assert metric_value(m, "twind_messages_dropped_total", reason="bad_ts") == 0
    assert metric_value(m, "twind_commit_seconds_bucket", le="+Inf") == 12
    assert metric_value(m, "twind_commit_seconds_sum") == 0.05
    assert metric_value(m, "twind_twins") == 7
