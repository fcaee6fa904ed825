"""Harness for twind's integration tests: a real mosquitto, the real ./twind.

Nothing here is mocked. Every wait is bounded by a deadline and polls; no test
sleeps longer than it has to. Only 127.0.0.1 is used.

Run with the system Python (it has paho-mqtt 1.6.1, requests and pytest):
    /usr/bin/python3 -m pytest tests/integration -q
"""

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
TWIND_BIN = Path(os.environ.get("TWIND_BIN", REPO / "twind"))
WWW_DIR = REPO / "www"
MOSQUITTO_BIN = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


# --------------------------------------------------------------------------
# small helpers


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout, interval=0.03, what=None):
    """Poll fn() until it returns something truthy; return that value.

    Raises AssertionError after `timeout` seconds, naming `what` and the
    last value or exception seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - kept for the message
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or fn}; last: {last!r}"
            )
        time.sleep(interval)


def twind_check(conf, *extra):
    """twind -c CONF --check [extra...], as an operator runs it: the CompletedProcess."""
    return subprocess.run([str(TWIND_BIN), "-c", str(conf), "--check", *extra],
                          capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)


def now_ms():
    return int(time.time() * 1000)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def tail(path, n=60):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"<no {path}>"
    return "\n".join(lines[-n:])


_LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


def parse_metric_key(key):
    """'name{a="1",b="2"}' -> ('name', {'a': '1', 'b': '2'})."""
    if "{" not in key:
        return key, {}
    name, rest = key.split("{", 1)
    return name, dict(_LABEL_RE.findall(rest.rsplit("}", 1)[0]))


def parse_prometheus(text):
    """Prometheus text format -> {'name{labels}': float}. Comments skipped."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            close = line.rindex("}")
            key, rest = line[: close + 1], line[close + 1 :].split()
        else:
            parts = line.split()
            key, rest = parts[0], parts[1:]
        if not rest:
            raise ValueError(f"metric line without a value: {line!r}")
        v = rest[0]
        out[key] = float({"+Inf": "inf", "-Inf": "-inf"}.get(v, v))
    return out


def metric_value(metrics, name, default=0.0, **labels):
    """The value of `name` whose labels equal `labels` (order and spacing of
    the labels in the text do not matter). A counter that was never
    incremented may be absent: `default` then."""
    for key, value in metrics.items():
        n, lab = parse_metric_key(key)
        if n == name and lab == {k: str(v) for k, v in labels.items()}:
            return value
    return default


# --------------------------------------------------------------------------
# how a twind ended: its exit code and the sanitizer reports in its log

# A sanitizer writes its report to stderr, which is twind's log file. A leak
# found at exit also makes the exit code non-zero (1 under ASan, 23 under a
# lone LeakSanitizer); a UBSan finding with halt_on_error=1 ends the process,
# one without it changes nothing but the log. The harness looks at both.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",                       # UBSan: file:line:col: runtime error: ...
    "WARNING: ThreadSanitizer",
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
)
_SANITIZER_RE = re.compile("|".join(re.escape(m) for m in SANITIZER_MARKERS))


def sanitizer_reports(text):
    """The lines of `text` that are sanitizer reports: [(index, line)]."""
    return [(i, ln) for i, ln in enumerate(text.splitlines()) if _SANITIZER_RE.search(ln)]


def read_from(path, offset=0):
    """The text of the file from byte `offset` on ("" if it is missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def describe_exit(rc):
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit code {rc}"


def log_excerpt(text, reports, before=5, head=120, tail_n=20):
    """From a little before the first report on (a leak report is long: its
    first stacks and its SUMMARY are what counts), or the tail without one."""
    lines = text.splitlines()
    if not reports:
        return "\n".join(lines[-60:])
    start = max(0, reports[0][0] - before)
    part = lines[start:]
    if len(part) <= head + tail_n:
        return "\n".join(part)
    return "\n".join(part[:head] + [f"[... {len(part) - head - tail_n} lines ...]"]
                     + part[-tail_n:])


def exit_problem(name, rc, how, allowed, text, logfile):
    """None if a lifetime that ended with `rc` (after `how`) is fine: rc is
    one of `allowed` and the log part `text` has no sanitizer report.
    Otherwise the message that fails the test."""
    reports = sanitizer_reports(text)
    if rc in allowed and not reports:
        return None
    want = " or ".join(describe_exit(c) for c in sorted(allowed)) or "no exit by itself"
    msg = [f"{name}: {describe_exit(rc)} {how} (expected: {want})"]
    if reports:
        msg[0] += f"; {len(reports)} sanitizer report line(s) in its log"
        msg += ["  " + ln for _, ln in reports[:30]]
        if len(reports) > 30:
            msg.append(f"  [... {len(reports) - 30} more]")
    msg.append(f"---- {logfile}, this run of twind only:")
    msg.append(log_excerpt(text, reports))
    return "\n".join(msg)


# --------------------------------------------------------------------------
# the broker


class Broker:
    """A private mosquitto on 127.0.0.1 with persistence in its own folder."""

    def __init__(self, workdir, port=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.logfile = self.dir / "mosquitto.log"
        self.proc = None
        # The shipped broker settings (config/mosquitto.conf) are what the
        # guarantees rest on, so the tests run with them; only the port, the
        # persistence folder and the logging are the test's own.
        # Authentication is the exception: the shipped file's passwords and
        # ACL are tested as shipped in test_broker_lockdown.py; the other
        # tests' clients are anonymous.
        auth = ("allow_anonymous ", "password_file ", "acl_file ", "use_username_as_clientid ")
        shipped = (REPO / "config" / "mosquitto.conf").read_text().splitlines()
        lines = [
            f"listener {self.port} 127.0.0.1" if ln.startswith("listener ") else ln
            for ln in shipped if not ln.startswith(auth)
        ] + ["allow_anonymous true"]
        lines += [
            f"persistence_location {self.dir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # mosquitto 2 drops root to user "mosquitto", which could not
            # write the persistence file into a root-owned tmp folder.
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout=10):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        log = open(self.logfile, "ab")
        try:
            self.proc = subprocess.Popen(
                [MOSQUITTO_BIN, "-c", str(self.conf)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.dir,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"mosquitto exited with {self.proc.returncode}:\n{tail(self.logfile)}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"mosquitto did not listen on {self.port} within {timeout}s:\n"
                    f"{tail(self.logfile)}")
            time.sleep(0.02)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM (mosquitto then saves its persistence file) and wait."""
        if not self.running():
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"mosquitto ignored SIGTERM for {timeout}s")

    def kill(self):
        if self.running():
            self.proc.kill()
            self.proc.wait(5)

    def restart(self):
        self.stop()
        # the port is the same: clients reconnect to where they were
        return self.start()

    def log(self):
        return Path(self.logfile).read_text(errors="replace")


# --------------------------------------------------------------------------
# the daemon


class Twind:
    """The real ./twind against a Broker, with its config, log and database in
    a private folder. start() may be called again after stop() or kill9():
    same config, same client id, same database.

    Every lifetime (start() to its end) is checked when it ends: its exit code
    and the part of the log written meanwhile. Fine are: exit code 0 after
    SIGTERM or SIGINT from stop() (or from the cleanup at the end of the
    test), death by the signal a test sent deliberately (kill9(),
    stop(sig=SIGKILL)), and the codes a test declared with expect_exit() or
    waited for with wait_exit(). Anything else (an exit by itself, another
    signal, a code other than 0 after SIGTERM) and any sanitizer report in the
    log fail the test: stop(), kill9(), start() and wait_exit() raise
    AssertionError at once, and what is found at the cleanup (Stack) makes the
    teardown an error."""

    def __init__(self, workdir, broker, extra=None, extra_text="", binary=None):
        self.bin = Path(binary) if binary is not None else TWIND_BIN
        if not self.bin.exists():
            pytest.fail(f"{self.bin} is missing: run make first", pytrace=False)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.http_port = free_port()
        self.client_id = "twind-test-" + secrets.token_hex(4)
        self.conf = self.dir / "twind.conf"
        self.db = self.dir / "twind.db"
        self.logfile = self.dir / "twind.log"
        self.proc = None
        self.http = requests.Session()
        # the lifetime being checked: started, not yet ended
        self._alive = False
        self._log_offset = 0
        self._expect = set()
        self.lifetimes = []       # one dict per ended lifetime: rc, how, problem
        self._unreported = []     # problems no exception has carried yet
        sections = {
            "mqtt": {"host": "127.0.0.1", "port": str(broker.port),
                     "client_id": self.client_id},
            "http": {"listen": f"127.0.0.1:{self.http_port}", "www": str(WWW_DIR)},
            "storage": {"database": str(self.db)},
        }
        for sec, kv in (extra or {}).items():
            sections.setdefault(sec, {}).update(kv)
        text = ""
        for sec, kv in sections.items():
            text += f"[{sec}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items())
        self.conf.write_text(text + extra_text)

    # -- process

    def start(self, timeout=10, wait=True):
        """Start twind; with wait, until /healthz is 200 (fails the test if
        it is not within `timeout`)."""
        assert not self.running(), "twind already running"
        self._raise(self._end_if_exited())      # the last run ended by itself
        log = open(self.logfile, "ab")
        try:
            self._log_offset = log.tell()
            log.write(f"==== harness: start {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(self.bin), "-c", str(self.conf)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.dir,
            )
            self._alive = True
        finally:
            log.close()
        if not wait:
            return self
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                problem = self._end("during start-up")
                self._unreport(problem)
                raise AssertionError(
                    f"twind exited with {self.proc.returncode} during start-up:\n"
                    + (problem or tail(self.logfile)))
            try:
                r = self.http.get(self.url("/healthz"), timeout=1)
                last = (r.status_code, r.text[:200])
                if r.status_code == 200:
                    return self
            except requests.RequestException as e:
                last = e
            if time.monotonic() > deadline:
                problem = self._kill()
                self._unreport(problem)
                raise AssertionError(
                    f"twind /healthz not 200 within {timeout}s (last: {last!r}):\n"
                    + (problem or tail(self.logfile)))
            time.sleep(0.03)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def expect_exit(self, *codes):
        """The running lifetime (or, if none runs, the next one started) may
        end with one of `codes` (e.g. 2: a config twind refuses; -15: killed
        by SIGTERM) without failing the test. Sanitizer reports still fail."""
        self._expect.update(codes)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Send `sig` and wait; returns the exit code (negative = killed by a
        signal). Fails the test if twind is still running after `timeout`, if
        the exit is not the expected one (0 after SIGTERM or SIGINT, death by
        any other signal sent here; see expect_exit) or if its log has a
        sanitizer report."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self._raise(self._end_if_exited())
            return self.proc.returncode
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            problem = self._end(f"after {signal.Signals(sig).name} and SIGKILL",
                                allowed={-signal.SIGKILL})
            self._unreport(problem)
            raise AssertionError(
                f"twind still running {timeout}s after signal {sig}:\n"
                + (problem or tail(self.logfile)))
        if sig in (signal.SIGTERM, signal.SIGINT):
            allowed = {0}
        else:
            allowed = {-sig}
        self._raise(self._end(f"after {signal.Signals(sig).name}", allowed))
        return self.proc.returncode

    def kill9(self):
        """SIGKILL, deliberately: the -9 is expected (a twind that had
        already exited by itself is not)."""
        self._raise(self._kill())
        return self.proc.returncode if self.proc else None

    def wait_exit(self, timeout=10, expect=None):
        """Wait until twind exits by itself and return its exit code, which is
        the caller's to assert; `expect` (a code or a list) makes it the
        harness's: another code fails. Sanitizer reports fail either way."""
        assert self.proc is not None, "twind was never started"
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"twind still running after {timeout}s:\n{tail(self.logfile)}") from None
        if expect is None:
            allowed = {self.proc.returncode}
        else:
            allowed = set(expect) if isinstance(expect, (list, tuple, set)) else {expect}
        self._raise(self._end_if_exited(allowed))
        return self.proc.returncode

    def finish(self):
        """For the cleanup: stop twind if it runs (SIGTERM, exit code 0),
        check a lifetime that ended unobserved, and return every problem not
        raised yet (they are then reported)."""
        try:
            if self.running():
                self.stop(timeout=15)
            else:
                self._end_if_exited()
        except AssertionError as e:
            self._unreported.append(str(e))
        problems, self._unreported = self._unreported, []
        return problems

    def _kill(self):
        """SIGKILL and wait; the check of the lifetime: a problem or None."""
        if self.running():
            self.proc.kill()
            self.proc.wait(5)
            return self._end("after SIGKILL", allowed={-signal.SIGKILL})
        return self._end_if_exited()

    def _end_if_exited(self, allowed=()):
        """The lifetime ended without the harness ending it."""
        if not self._alive or self.proc is None or self.proc.poll() is None:
            return None
        return self._end("by itself", allowed)

    def _end(self, how, allowed=()):
        """Checks the lifetime that just ended; returns the problem or None."""
        if not self._alive:
            return None
        self._alive = False
        rc = self.proc.returncode
        allowed = set(allowed) | self._expect
        self._expect = set()
        text = read_from(self.logfile, self._log_offset)
        problem = exit_problem(f"twind ({self.dir})", rc, how, allowed, text, self.logfile)
        self.lifetimes.append({"rc": rc, "how": how, "problem": problem})
        if problem is not None:
            self._unreported.append(problem)
        return problem

    def _unreport(self, problem):
        if problem is not None and problem in self._unreported:
            self._unreported.remove(problem)

    def _raise(self, problem):
        if problem is not None:
            self._unreport(problem)
            raise AssertionError(problem)

    def hup(self):
        """SIGHUP: reload the config's models and twins file."""
        assert self.running(), "twind is not running"
        self.proc.send_signal(signal.SIGHUP)

    # -- http

    def url(self, path):
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path, **kw):
        kw.setdefault("timeout", 5)
        return self.http.get(self.url(path), **kw)

    def request(self, method, path, **kw):
        """As a script would: writes say their body is JSON (twind refuses
        writes that do not), unless the test passes its own headers."""
        kw.setdefault("timeout", 5)
        if method not in ("GET", "HEAD") and "headers" not in kw:
            kw["headers"] = {"Content-Type": "application/json"}
        return self.http.request(method, self.url(path), **kw)

    def twin(self, twin_id):
        """The twin document, or None on 404."""
        r = self.get(f"/api/v1/twins/{twin_id}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def version(self, twin_id):
        doc = self.twin(twin_id)
        return None if doc is None else doc["version"]

    def wait_version(self, twin_id, version, timeout=10):
        """Wait until the twin's version is at least `version`; return the doc."""
        def ok():
            doc = self.twin(twin_id)
            return doc if doc is not None and doc["version"] >= version else None
        return wait_until(ok, timeout, what=f"{twin_id} version >= {version}")

    def history(self, twin_id, prop, **params):
        params = {"property": prop, **params}
        r = self.get(f"/api/v1/twins/{twin_id}/history", params=params)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def metrics(self):
        r = self.get("/metrics")
        assert r.status_code == 200, (r.status_code, r.text[:300])
        return parse_prometheus(r.text)

    def metric(self, name, **labels):
        return metric_value(self.metrics(), name, **labels)

    def log(self):
        return Path(self.logfile).read_text(errors="replace")

    # -- database (read-only; fine while twind runs: WAL)

    def db_connect(self):
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        con.execute("PRAGMA busy_timeout = 5000")
        return con

    def db_history(self, twin_id, prop):
        """[(ts, value)] of one series, ascending, read from SQLite: the rows
        and the packed blocks (decoded here, not by twind)."""
        con = self.db_connect()
        try:
            # one snapshot for both: a packing in between must not show a point twice
            con.execute("BEGIN")
            rows = con.execute(
                "SELECT h.ts, h.value FROM history h JOIN series s ON s.id = h.series "
                "WHERE s.twin = ? AND s.property = ? ORDER BY h.ts",
                (twin_id, prop)).fetchall()
            for (data,) in con.execute(
                    "SELECT b.data FROM history_block b JOIN series s ON s.id = b.series "
                    "WHERE s.twin = ? AND s.property = ?", (twin_id, prop)):
                rows += decode_block(data)
        finally:
            con.close()
        rows.sort()
        assert all(a[0] < b[0] for a, b in zip(rows, rows[1:])), "a point stored twice"
        return rows


def decode_block(data):
    """[(ts, value)] of one history block (src/block.c's format, read
    independently of it): format, decimals, n, the first ts, time tokens,
    then the values as decimal deltas or XOR records."""
    import struct
    mask = (1 << 64) - 1
    pos = 0

    def varint():
        nonlocal pos
        x = shift = 0
        while True:
            b = data[pos]
            pos += 1
            x |= (b & 0x7f) << shift
            shift += 7
            if not b & 0x80:
                return x

    def signed(u):
        u &= mask
        return u - (1 << 64) if u >> 63 else u

    def unzig(z):
        return (z >> 1) ^ -(z & 1)

    zeros = 0

    def token():
        nonlocal zeros
        if zeros:
            zeros -= 1
            return 0
        z = varint()
        if z:
            return unzig(z)
        zeros = varint()
        return 0

    fmt = data[0]
    pos = 1
    dec = None
    if fmt == 1:
        dec = data[1]
        pos = 2
    n = varint()
    t = signed(unzig(varint()))
    ts, delta = [t], 0
    for _ in range(n - 1):
        delta = signed(delta + token())
        t = signed(t + delta)
        ts.append(t)
    assert zeros == 0
    if dec is not None:
        m = signed(unzig(varint()))
        vals = [m / 10 ** dec]
        for _ in range(n - 1):
            m = signed(m + token())
            vals.append(m / 10 ** dec)
        assert zeros == 0
        at = -1
        for _ in range(varint()):            # where a 0 is -0.0
            at += varint() + 1
            assert vals[at] == 0
            vals[at] = -0.0
    else:
        bits = struct.unpack_from("<Q", data, pos)[0]
        pos += 8
        vals = [struct.unpack("<d", struct.pack("<Q", bits))[0]]
        for _ in range(n - 1):
            h = data[pos]
            pos += 1
            lead, trail, x = h >> 4, h & 15, 0
            if lead != 8:
                for i in range(trail, 8 - lead):
                    x |= data[pos] << (8 * i)
                    pos += 1
            bits ^= x
            vals.append(struct.unpack("<d", struct.pack("<Q", bits))[0])
    assert pos == len(data), "trailing bytes in a block"
    return list(zip(ts, vals))


# --------------------------------------------------------------------------
# MQTT publishers (paho-mqtt 1.6.1)


def wait_info(info, timeout):
    """MessageInfo.wait_for_publish that tolerates a message handed to paho
    while disconnected (rc NO_CONN: paho keeps it and sends it on reconnect)."""
    if timeout <= 0:
        return info.is_published()
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError):
        deadline = time.monotonic() + timeout
        while not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.02)
    return info.is_published()


class Publisher:
    """A QoS 1 publisher. A message counts as acknowledged by the broker only
    once its PUBACK came back (MessageInfo.is_published())."""

    def __init__(self, port, client_id=None, inflight=100, reconnect=True):
        self.client = mqtt.Client(client_id=client_id or "pub-" + secrets.token_hex(4),
                                  clean_session=True)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.port = port
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise AssertionError(f"publisher could not connect to 127.0.0.1:{port}")

    def _on_connect(self, client, userdata, flags, rc):
        if rc == 0:
            self.disconnected.clear()
            self.connected.set()

    def _on_disconnect(self, client, userdata, rc):
        self.connected.clear()
        self.disconnected.set()

    @staticmethod
    def _payload(payload):
        if isinstance(payload, (dict, list)) or payload is None:
            return json.dumps(payload).encode()
        if isinstance(payload, str):
            return payload.encode()
        return payload

    def publish_async(self, topic, payload, qos=1):
        return self.client.publish(topic, self._payload(payload), qos=qos)

    def publish(self, topic, payload, qos=1, timeout=10):
        info = self.publish_async(topic, payload, qos)
        if qos > 0:
            assert wait_info(info, timeout), f"no PUBACK within {timeout}s for {topic}"
        return info

    def publish_many(self, messages, qos=1, timeout=30):
        """messages: iterable of (topic, payload). Waits for every PUBACK and
        fails if one did not come within `timeout`."""
        infos = [self.publish_async(t, p, qos) for t, p in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            wait_info(info, deadline - time.monotonic())
        missing = sum(1 for i in infos if not i.is_published())
        assert missing == 0, f"{missing} of {len(infos)} messages had no PUBACK within {timeout}s"
        return infos

    def close(self):
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001
            pass
        self.client.loop_stop()


def published(info):
    """Whether the broker acknowledged it; a publish refused at once (the
    broker had just gone: "not currently connected") was not."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False


class StreamPublisher(threading.Thread):
    """Publishes `messages` [(topic, payload)] in order at about `rate` msg/s in
    a thread. `acked()` are the indexes whose PUBACK arrived. `stop_event`
    makes it stop publishing further messages."""

    def __init__(self, pub, messages, rate=2000, qos=1):
        super().__init__(daemon=True)
        self.pub = pub
        self.messages = messages
        self.rate = rate
        self.qos = qos
        self.infos = []
        self.stop_event = threading.Event()
        self.error = None

    def run(self):
        try:
            t0 = time.monotonic()
            for i, (topic, payload) in enumerate(self.messages):
                if self.stop_event.is_set():
                    break
                self.infos.append(self.pub.publish_async(topic, payload, self.qos))
                if i % 20 == 19:
                    ahead = (i + 1) / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except Exception as e:  # noqa: BLE001
            self.error = e

    def published(self):
        return len(self.infos)

    def acked(self):
        return [i for i, info in enumerate(list(self.infos)) if published(info)]

    def wait_acked(self, timeout):
        """Wait until every message that was handed to paho is acknowledged
        (or timeout); return the acked indexes."""
        deadline = time.monotonic() + timeout
        self.join(max(0.0, deadline - time.monotonic()))
        for info in list(self.infos):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait_info(info, left)
        return self.acked()


# --------------------------------------------------------------------------
# fixtures


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


class Stack:
    """Things to clean up at the end of a test or module, in reverse order.
    cleanup() stops what still runs and then fails (AssertionError: a
    teardown error in a fixture) if a twind did not end as it should or wrote
    a sanitizer report (see Twind)."""

    def __init__(self):
        self.brokers, self.twinds, self.pubs = [], [], []

    def cleanup(self, show_logs):
        problems = []
        for p in self.pubs:
            p.close()
        for t in self.twinds:
            problems += t.finish()
            if show_logs:
                print(f"---- twind log {t.logfile} (tail)\n{tail(t.logfile, 80)}")
        for b in self.brokers:
            b.stop()
            if show_logs:
                print(f"---- mosquitto log {b.logfile} (tail)\n{tail(b.logfile, 30)}")
        if problems:
            raise AssertionError("\n\n".join(problems))


@pytest.fixture
def stack(request, tmp_path):
    s = Stack()
    yield s
    s.cleanup(_failed(request))


@pytest.fixture
def broker(stack, tmp_path):
    b = Broker(tmp_path / "broker")
    stack.brokers.append(b)
    return b.start()


@pytest.fixture
def make_twind(stack, broker, tmp_path):
    """make_twind(extra=None, extra_text="", start=True) -> Twind"""
    count = [0]

    def make(extra=None, extra_text="", start=True):
        count[0] += 1
        t = Twind(tmp_path / f"twind{count[0]}", broker, extra, extra_text)
        stack.twinds.append(t)
        return t.start() if start else t
    return make


@pytest.fixture
def twind(make_twind):
    return make_twind()


@pytest.fixture
def make_publisher(stack, broker):
    def make(**kw):
        p = Publisher(broker.port, **kw)
        stack.pubs.append(p)
        return p
    return make


@pytest.fixture
def publisher(make_publisher):
    return make_publisher()


# One broker + twind + publisher per test module, for the functional tests
# that use distinct twin ids and do not need a fresh daemon.

class Shared:
    def __init__(self, broker, twind, pub):
        self.broker, self.twind, self.pub = broker, twind, pub


@pytest.fixture(scope="module")
def shared(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("shared")
    s = Stack()
    b = Broker(base / "broker")
    s.brokers.append(b)
    b.start()
    t = Twind(base / "twind", b)
    s.twinds.append(t)
    t.start()
    p = Publisher(b.port)
    s.pubs.append(p)
    yield Shared(b, t, p)
    # print logs if any test of the module failed
    s.cleanup(show_logs=request.session.testsfailed > 0)


# --------------------------------------------------------------------------
# shared assertions for the reliability tests


def check_exactly_once(tw, twin_msgs, acked_ts, prop="seq"):
    """twin_msgs: {twin: {ts: value}} of everything published;
    acked_ts: {twin: set(ts)} acknowledged to the publisher.
    Every acked message is in history exactly once with its value, and
    nothing that was never published is there."""
    problems = []
    for twin, published in twin_msgs.items():
        rows = tw.db_history(twin, prop)
        seen = {}
        dups = 0
        for ts, value in rows:
            if ts in seen:
                dups += 1
            seen[ts] = value
        missing = sorted(acked_ts.get(twin, set()) - seen.keys())
        extra = sorted(set(seen) - published.keys())
        wrong = [(ts, v, published[ts]) for ts, v in seen.items()
                 if ts in published and v != published[ts]]
        if dups or missing or extra or wrong:
            problems.append(
                f"{twin}: {len(rows)} rows, {dups} duplicates, {len(missing)} acked missing "
                f"(first {missing[:5]}), {len(extra)} never published (first {extra[:5]}), "
                f"{len(wrong)} wrong values (first {wrong[:3]})")
    assert not problems, "\n".join(problems)


def wait_stored(tw, acked_ts, timeout, prop="seq"):
    """Wait until every acked ts is in SQLite."""
    def done():
        for twin, want in acked_ts.items():
            have = {ts for ts, _ in tw.db_history(twin, prop)}
            if not want <= have:
                return False
        return True
    total = sum(len(v) for v in acked_ts.values())
    wait_until(done, timeout, interval=0.2, what=f"{total} acknowledged messages in SQLite")


@contextlib.contextmanager
def tmpfs(mnt, size):
    """A tmpfs of `size` ("16m") mounted on the directory `mnt` (a test may
    fill it, or remount it read-only); skips where it cannot be mounted (not root)."""
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# --------------------------------------------------------------------------
# models, twins file, desired state, live events (the "plant" tests)

CTX = ["dtmi:dtdl:context;3", "dtmi:twind:context;1"]
PUMP_ID = "dtmi:test:Pump;1"
LINE_ID = "dtmi:test:Line;1"
LOOSE_ID = "dtmi:test:Loose;1"


def pump_model(model_id=PUMP_ID, strict=True, temp_max=100):
    """The Pump of the brief (strict; temperature 0..100 every 1 s; writable
    speed 0..3000 with tolerance 5 and convergenceTimeout 2 s; writable mode
    without a timeout; integer count), plus a unit, a read-only Property and
    a slow Telemetry placed first, so that "the shortest period counts" is
    not the same as "the first period counts"."""
    return {
        "@context": CTX, "@id": model_id, "@type": "Interface", "strict": strict,
        "contents": [
            {"@type": "Telemetry", "name": "pressure", "schema": "double", "period": "10s"},
            {"@type": "Telemetry", "name": "temperature", "schema": "double",
             "unit": "degreeCelsius", "minimum": 0, "maximum": temp_max, "period": "1s"},
            {"@type": "Property", "name": "speed", "schema": "double", "writable": True,
             "minimum": 0, "maximum": 3000, "tolerance": 5, "convergenceTimeout": "2s"},
            {"@type": "Property", "name": "mode", "schema": "string", "writable": True},
            {"@type": "Telemetry", "name": "count", "schema": "integer"},
            {"@type": "Property", "name": "serial", "schema": "string"},
            {"@type": "Command", "name": "stop"},
            {"@type": "Relationship", "name": "motor", "target": LINE_ID},
        ],
    }


def line_model():
    """A parent without a period (its own status follows stale_after)."""
    return {"@context": CTX, "@id": LINE_ID, "@type": "Interface",
            "contents": [{"@type": "Telemetry", "name": "throughput", "schema": "double"}]}


def loose_model():
    """Not strict: unknown properties are welcome, known ones are checked."""
    return {"@context": CTX, "@id": LOOSE_ID, "@type": "Interface", "strict": False,
            "contents": [{"@type": "Telemetry", "name": "temperature", "schema": "double",
                          "minimum": 0, "maximum": 100}]}


DEFAULT_MODELS = {"pump.json": pump_model(), "line.json": line_model(),
                  "loose.json": loose_model()}


def write_plant(base, models=None, twins=None):
    """Writes base/models/*.json (dict or raw text each) and base/twins.json.
    Returns (models_dir, twins_file)."""
    base = Path(base)
    mdir = base / "models"
    mdir.mkdir(parents=True, exist_ok=True)
    for name, body in (DEFAULT_MODELS if models is None else models).items():
        (mdir / name).write_text(body if isinstance(body, str) else json.dumps(body, indent=1))
    tfile = base / "twins.json"
    tfile.write_text(twins if isinstance(twins, str) else json.dumps(twins or [], indent=1))
    return mdir, tfile


def plant_extra(mdir, tfile, **twins_keys):
    """`extra` for Twind: the models and twins, status factors 2 and 4, and a
    short reconnect so that a returning broker is found within a second."""
    keys = {"models": str(mdir), "file": str(tfile), "stale_factor": "2",
            "offline_factor": "4", "converge_timeout": "3s"}
    keys.update({k: str(v) for k, v in twins_keys.items()})
    return {"twins": keys,
            "mqtt": {"desired_topic": "plant/{twin}/desired",
                     "alert_topic": "plant/{twin}/alert",
                     "reconnect_min": "200ms", "reconnect_max": "1s"}}


@contextlib.contextmanager
def shared_plant(request, tmp_path_factory, twins, models=None, http=None, **twins_keys):
    """One broker + twind (with models and a twins file) + publisher for a
    whole module. Yields Shared with .mdir and .tfile set."""
    base = tmp_path_factory.mktemp("plant")
    s = Stack()
    b = Broker(base / "broker")
    s.brokers.append(b)
    try:
        b.start()
        mdir, tfile = write_plant(base / "conf", models, twins)
        extra = plant_extra(mdir, tfile, **twins_keys)
        if http:
            extra["http"] = dict(http)
        t = Twind(base / "twind", b, extra)
        s.twinds.append(t)
        t.start()
        p = Publisher(b.port)
        s.pubs.append(p)
        sh = Shared(b, t, p)
        sh.mdir, sh.tfile = mdir, tfile
        yield sh
    finally:
        s.cleanup(show_logs=request.session.testsfailed > 0)


def patch_desired(tw, twin_id, body, if_match=None, raw=None):
    headers = {"Content-Type": "application/json"}
    if if_match is not None:
        headers["If-Match"] = if_match
    data = raw if raw is not None else json.dumps(body)
    return tw.request("PATCH", f"/api/v1/twins/{twin_id}/desired", data=data,
                      headers=headers)


def assert_error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


# ---- MQTT subscriber

class Msg:
    __slots__ = ("topic", "payload", "retain", "qos", "t")

    def __init__(self, m):
        self.topic, self.payload, self.retain, self.qos = m.topic, m.payload, m.retain, m.qos
        self.t = time.monotonic()

    def json(self):
        return json.loads(self.payload)

    def __repr__(self):
        return f"Msg({self.topic!r}, {self.payload[:200]!r}, retain={self.retain}, qos={self.qos})"


class Subscriber:
    """Subscribes to `topics` (QoS 1 by default) and records every message.
    sync() makes sure the retained messages of the subscription are in."""

    def __init__(self, port, topics, qos=1):
        self.msgs = []
        self.lock = threading.Lock()
        self.sync_topic = "harness/sync/" + secrets.token_hex(4)
        self.client = mqtt.Client(client_id="sub-" + secrets.token_hex(4), clean_session=True)
        self.client.on_message = self._on_message
        self._subacks = set()
        self._cv = threading.Condition()
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        mids = []
        for topic in list(topics) + [self.sync_topic]:
            rc, mid = self.client.subscribe(topic, qos=qos)
            assert rc == mqtt.MQTT_ERR_SUCCESS, rc
            mids.append(mid)
        with self._cv:
            ok = self._cv.wait_for(lambda: set(mids) <= self._subacks, 10)
        if not ok:
            self.close()
            raise AssertionError("subscriber: no SUBACK within 10 s")

    def _on_subscribe(self, client, userdata, mid, granted):
        with self._cv:
            self._subacks.add(mid)
            self._cv.notify_all()

    def _on_message(self, client, userdata, m):
        with self.lock:
            self.msgs.append(Msg(m))

    def messages(self, topic=None):
        with self.lock:
            return [m for m in self.msgs if topic is None or m.topic == topic]

    def sync(self, timeout=5):
        """Publishes a marker to ourselves at QoS 1 and waits for it: the
        broker sends our QoS 1 messages in order, so every retained message
        the subscription brought is in when the marker is."""
        token = secrets.token_hex(4).encode()
        self.client.publish(self.sync_topic, token, qos=1)
        wait_until(lambda: any(m.payload == token for m in self.messages(self.sync_topic)),
                   timeout, what="subscriber sync marker")

    def wait_for(self, pred, timeout, what=None, topic=None):
        def find():
            for m in self.messages(topic):
                if pred(m):
                    return m
            return None
        return wait_until(find, timeout, interval=0.02, what=what or "an MQTT message")

    def close(self):
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001
            pass
        self.client.loop_stop()


def retained(port, topic, timeout=5):
    """The retained message on `topic` as a fresh subscriber sees it: a Msg,
    or None when the broker holds none."""
    sub = Subscriber(port, [topic])
    try:
        sub.sync(timeout)
        got = [m for m in sub.messages(topic) if m.retain]
        assert len(got) <= 1, got
        return got[0] if got else None
    finally:
        sub.close()


# ---- Server-Sent Events client

class SSEEvent:
    __slots__ = ("type", "raw", "data", "t")

    def __init__(self, etype, raw):
        self.type, self.raw, self.t = etype, raw, time.monotonic()
        try:
            self.data = json.loads(raw)
        except ValueError:
            self.data = None

    def __repr__(self):
        return f"SSE({self.type}: {self.raw[:300]})"


class EventStream:
    """A raw HTTP/1.1 client of /api/v1/events that parses the stream in a
    thread (chunked or not). With read=False it connects, sends the request
    and then never reads: a stalled client (rcvbuf makes its socket buffer
    small)."""

    def __init__(self, port, path="/api/v1/events", read=True, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Accept: text/event-stream\r\n\r\n").encode())
        self.status = None
        self.headers = {}
        self.body = b""           # decoded body bytes seen so far
        self.blocks = []          # every SSE block: ("comment"|"event", text or SSEEvent)
        self.events = []
        self.ended = threading.Event()
        self.lock = threading.Lock()
        self._stop = False
        self._raw = b""
        self._head_done = False
        self._chunked = False
        self._text = ""
        self.thread = None
        if read:
            self.sock.settimeout(0.2)
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _run(self):
        try:
            while not self._stop:
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self._feed(data)
        finally:
            self.ended.set()

    def _feed(self, data):
        self._raw += data
        if not self._head_done:
            if b"\r\n\r\n" not in self._raw:
                return
            head, self._raw = self._raw.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                self.headers[k.strip().lower()] = v.strip()
            self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
            self._head_done = True
        if self._chunked:
            out = b""
            while True:
                nl = self._raw.find(b"\r\n")
                if nl < 0:
                    break
                size = int(self._raw[:nl].split(b";")[0] or b"0", 16)
                if size == 0:
                    self._raw = b""
                    break
                if len(self._raw) < nl + 2 + size + 2:
                    break
                out += self._raw[nl + 2:nl + 2 + size]
                self._raw = self._raw[nl + 2 + size + 2:]
        else:
            out, self._raw = self._raw, b""
        if out:
            with self.lock:
                self.body += out
            self._parse(out.decode("utf-8", errors="replace"))

    def _parse(self, text):
        self._text += text.replace("\r\n", "\n")
        while "\n\n" in self._text:
            block, self._text = self._text.split("\n\n", 1)
            etype, data, comments = None, [], []
            for ln in block.split("\n"):
                if ln.startswith(":"):
                    comments.append(ln[1:].strip())
                    continue
                field, _, value = ln.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    etype = value
                elif field == "data":
                    data.append(value)
            with self.lock:
                if data:
                    ev = SSEEvent(etype or "message", "\n".join(data))
                    self.events.append(ev)
                    self.blocks.append(("event", ev))
                elif comments:
                    self.blocks.append(("comment", "\n".join(comments)))
                else:
                    self.blocks.append(("other", block))

    def wait_head(self, timeout=5):
        wait_until(lambda: self.status is not None, timeout, what="the stream's status line")
        return self.status

    def snapshot(self, etype=None):
        with self.lock:
            return [e for e in self.events if etype is None or e.type == etype]

    def comments(self):
        with self.lock:
            return [b for kind, b in self.blocks if kind == "comment"]

    def wait_event(self, pred, timeout, what=None, etype=None):
        def find():
            for e in self.snapshot(etype):
                if pred(e):
                    return e
            return None
        return wait_until(find, timeout, interval=0.02, what=what or f"an SSE event {etype}")

    def close(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.thread is not None:
            self.thread.join(3)
        self.sock.close()


# ---- a fake PLC bridge, and --check of a models folder

class Bridge:
    """A PLC bridge: receives plant/+/cmd; answers each with `answer` (a
    status, True for "done", None or False for no answer) and then reports
    what `report(cmd)` returns (a dict of values, or None for nothing)."""

    def __init__(self, port, answer="done", report=None):
        self.answer = "done" if answer is True else answer or None
        self.report = report
        self.got, self.lock = [], threading.Lock()
        self.client = mqtt.Client(client_id="bridge-" + secrets.token_hex(4), clean_session=True)
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe("plant/+/cmd", qos=1)
        assert ready.wait(10)

    def _on_message(self, client, userdata, m):
        cmd = json.loads(m.payload)
        with self.lock:
            self.got.append(cmd)
        if self.answer:
            client.publish(m.topic + "/ack", json.dumps({"id": cmd["id"], "status": self.answer}),
                           qos=1)
        values = self.report(cmd) if self.report else None
        if values:
            client.publish(f"plant/{cmd['twin']}/telemetry",
                           json.dumps({"ts": now_ms(), **values}), qos=1)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def check_models(tmp_path, models):
    """twind --check of a minimal config with `models` ({file: body}) and no twins."""
    mdir, tfile = write_plant(tmp_path, models, [])
    conf = tmp_path / "twind.conf"
    conf.write_text(f"[mqtt]\nport = {free_port()}\n[http]\nlisten = 127.0.0.1:{free_port()}\n"
                    f"[storage]\ndatabase = {tmp_path}/twind.db\n"
                    f"[twins]\nmodels = {mdir}\nfile = {tfile}\n")
    return twind_check(conf)
