"""The systemd watchdog through a faked NOTIFY_SOCKET (what systemd gives a
Type=notify service with WatchdogSec=): WATCHDOG=1 goes out only while the
engine and the MQTT thread make progress and no REST handler hangs; a hung
engine or handler stops it, so systemd would restart twind; STATUS= says
why. The hangs are twind's test hooks (TWIND_TEST_HANG_ENGINE: the engine
stops on its timer while a file exists; TWIND_TEST_HANG_HTTP: /healthz
does)."""

import socket
import threading
import time

import pytest

from conftest import now_ms, wait_until


class Notify:
    """systemd's side of sd_notify: a datagram socket that records messages."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.msgs = []          # (monotonic time, one line)
        self.lock = threading.Lock()
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self.lock:
                for line in data.decode().splitlines():
                    self.msgs.append((now, line))

    def since(self, t, prefix):
        with self.lock:
            return [m for when, m in self.msgs if when >= t and m.startswith(prefix)]

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


@pytest.fixture
def watched(tmp_path, make_twind, monkeypatch):
    n = Notify(tmp_path / "notify.sock")
    hang = tmp_path / "hang"
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("TWIND_TEST_HANG_ENGINE", str(hang))
    monkeypatch.setenv("TWIND_TEST_HANG_HTTP", str(tmp_path / "hang-http"))
    tw = make_twind({"http": {"hung_after": "15s"}, "rules": {"backtest_max_time": "1s"}})
    tw.hang_http = tmp_path / "hang-http"
    yield tw, n, hang
    hang.unlink(missing_ok=True)
    tw.hang_http.unlink(missing_ok=True)
    n.close()


def test_watchdog_fed_while_all_make_progress(watched, publisher):
    tw, n, _ = watched
    wait_until(lambda: n.since(0, "READY=1"), 5, what="READY=1")
    publisher.publish("plant/w-1/telemetry", {"ts": now_ms(), "v": 1})
    t0 = time.monotonic()
    time.sleep(2.2)
    pings = n.since(t0, "WATCHDOG=1")
    assert len(pings) >= 3, pings          # fed four times per 2 s interval
    status = n.since(t0, "STATUS=")
    assert status and "twins" in status[-1] and "broker connected" in status[-1], status


def check_not_fed(n, after_s, part):
    """After `after_s` (the part hung and went stale), 1.5 s without a ping,
    and STATUS= naming the part."""
    time.sleep(after_s)
    t_stale = time.monotonic()
    time.sleep(1.5)
    assert n.since(t_stale, "WATCHDOG=1") == [], f"pinged for a hung {part}"
    assert any(f"{part} thread stalled" in s for s in n.since(t_stale, "STATUS=")), \
        n.since(t_stale, "STATUS=")


def test_hung_engine_is_not_pinged_for(watched, publisher):
    tw, n, hang = watched
    wait_until(lambda: n.since(0, "WATCHDOG=1"), 5, what="the first ping")
    hang.write_text("")
    # the engine stops at its next tick (1 s), is stale after half the interval (1 s)
    wait_until(lambda: "engine: hanging on purpose" in tw.log(), 5, what="the engine hung")
    check_not_fed(n, 1.6, "engine")
    assert "the engine thread has not made progress" in tw.log()
    # systemd would restart it here; let it recover instead and be fed again
    hang.unlink()
    wait_until(lambda: n.since(time.monotonic() - 0.3, "WATCHDOG=1"), 5,
               what="pings again once the engine moves")
    publisher.publish("plant/w-2/telemetry", {"ts": now_ms(), "v": 1})
    tw.wait_version("w-2", 1)


def test_hung_rest_handler_is_not_pinged_for(watched, publisher):
    """A REST handler that never answers (here /healthz, held by the test
    hook) for longer than [http] hung_after (15 s here, its least): not fed, though the
    engine and MQTT go on; systemd would restart twind. Idle, full or
    refusing servers are not hangs: only a handler at work is watched."""
    tw, n, _ = watched
    wait_until(lambda: n.since(0, "WATCHDOG=1"), 5, what="the first ping")
    tw.hang_http.write_text("")
    s = socket.create_connection(("127.0.0.1", tw.http_port), timeout=5)
    try:
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{tw.http_port}\r\n\r\n".encode())
        wait_until(lambda: "http: hanging on purpose" in tw.log(), 5, what="/healthz hung")
        # not yet: 15 s is not up
        time.sleep(2)
        assert n.since(time.monotonic() - 1, "WATCHDOG=1"), "unfed before hung_after"
        check_not_fed(n, 15.3, "http")
        assert "a REST handler has run for more than [http] hung_after" in tw.log()
        # ingestion went on meanwhile: only the handler was stuck
        publisher.publish("plant/w-3/telemetry", {"ts": now_ms(), "v": 1})
        tw.hang_http.unlink()
        assert s.recv(64).startswith(b"HTTP/1.1 200"), "the held request answered at last"
    finally:
        s.close()
    wait_until(lambda: n.since(time.monotonic() - 0.3, "WATCHDOG=1"), 5,
               what="pings again once the handler answers")
    tw.wait_version("w-3", 1)


def test_lost_broker_is_not_a_hang(watched, broker):
    """Reconnecting to a broker that is gone is progress: still fed."""
    tw, n, _ = watched
    wait_until(lambda: n.since(0, "WATCHDOG=1"), 5, what="the first ping")
    broker.stop()
    time.sleep(0.5)
    t0 = time.monotonic()
    time.sleep(2.5)
    assert len(n.since(t0, "WATCHDOG=1")) >= 3
    assert any("broker lost" in s for s in n.since(t0, "STATUS="))
    broker.start()
