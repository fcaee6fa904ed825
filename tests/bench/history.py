#!/usr/bin/python3
"""History bench: aggregate queries from the tiers while ingestion runs, the
commit time while retention trims, and the bytes on disk per raw point and
per rollup row, on a private broker and a fresh twind.

usage: /usr/bin/python3 tests/bench/history.py     (from the repo root; `make bench` runs it)
env: QUERIES (30 per kind), LIVE_RATE (1000 msg/s of other telemetry meanwhile)

Series (published over MQTT with their ts, QoS 1):
  day:   one day at 1 Hz (86,400 points), a slow sine with noise, like a
         process temperature; asked as 1,440 one-minute buckets
  month: 30 days at one point a minute (43,200); asked as 720 hourly buckets
         (the hour tier holds the same 720 rows whatever the raw density)
  nab:   the six NAB series of ../shared/datasets/nab, in a database of their
         own, for their bytes per point
"""
import csv
import json
import math
import os
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import requests

REPO = Path(__file__).resolve().parents[2]
NAB = REPO.parent / "shared" / "datasets" / "nab"
QUERIES = int(os.environ.get("QUERIES", "30"))
LIVE_RATE = int(os.environ.get("LIVE_RATE", "1000"))
DAY = 86_400_000
HOUR = 3_600_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(fn, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if fn():
                return
        except (requests.RequestException, sqlite3.Error):
            pass
        time.sleep(0.1)
    sys.exit(f"history bench: timed out waiting for {what}")


class Stack:
    def __init__(self, tmp, history=None):
        self.tmp = Path(tmp)
        self.mport, self.hport = free_port(), free_port()
        shipped = (REPO / "config" / "mosquitto.conf").read_text().splitlines()
        auth = ("allow_anonymous ", "password_file ", "acl_file ", "use_username_as_clientid ",
                "listener ")
        conf = [ln for ln in shipped if not ln.startswith(auth)]
        conf += [f"listener {self.mport} 127.0.0.1", "allow_anonymous true",
                 f"persistence_location {self.tmp}/"]
        if os.geteuid() == 0:
            conf.append("user root")
        (self.tmp / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        self.broker = subprocess.Popen(["mosquitto", "-c", str(self.tmp / "mosquitto.conf")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.db = self.tmp / "twind.db"
        self.history = history or {}
        self.twind = None
        time.sleep(0.3)

    def start(self, history=None):
        text = (f"[mqtt]\nport = {self.mport}\nclient_id = twind-hbench\n"
                f"[http]\nlisten = 127.0.0.1:{self.hport}\nwww = {REPO / 'www'}\n"
                f"[storage]\ndatabase = {self.db}\n[history]\n")
        text += "".join(f"{k} = {v}\n" for k, v in (history or {}).items())
        (self.tmp / "twind.conf").write_text(text)
        log = open(self.tmp / "twind.log", "ab")
        self.twind = subprocess.Popen([str(REPO / "twind"), "-c", str(self.tmp / "twind.conf")],
                                      stdout=log, stderr=log)
        wait(lambda: requests.get(self.url("/healthz"), timeout=1).status_code == 200, 15,
             "twind /healthz")

    def stop(self):
        self.twind.send_signal(signal.SIGTERM)
        self.twind.wait(30)

    def close(self):
        if self.twind and self.twind.poll() is None:
            self.stop()
        self.broker.terminate()
        self.broker.wait(10)

    def url(self, path):
        return f"http://127.0.0.1:{self.hport}{path}"

    def metrics(self):
        out = {}
        for line in requests.get(self.url("/metrics"), timeout=5).text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


def publisher(port, name):
    c = mqtt.Client(client_id=name, clean_session=True)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def publish_all(port, msgs):
    """[(topic, payload dict)] at QoS 1, as fast as the broker acknowledges; msg/s."""
    c = publisher(port, "hbench-load")
    t0 = time.monotonic()
    infos = []
    for topic, p in msgs:
        while True:
            info = c.publish(topic, json.dumps(p), qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                break
            time.sleep(0.001)
        infos.append(info)
        if len(infos) % 1000 == 0:
            infos[-1000].wait_for_publish(30)
    for info in infos[-1000:]:
        info.wait_for_publish(30)
    rate = len(msgs) / (time.monotonic() - t0)
    c.disconnect()
    c.loop_stop()
    return rate


class Live(threading.Thread):
    """Other telemetry at LIVE_RATE msg/s while the queries run: ingestion goes on."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop_ev, self.sent = port, threading.Event(), 0

    def run(self):
        c = publisher(self.port, "hbench-live")
        t0 = time.monotonic()
        while not self.stop_ev.is_set():
            ts = int(time.time() * 1000)
            c.publish(f"plant/live-{self.sent % 50}/telemetry",
                      json.dumps({"ts": ts, "t": self.sent % 97, "p": 1.5}), qos=1)
            self.sent += 1
            ahead = self.sent / LIVE_RATE - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        c.disconnect()
        c.loop_stop()


def timed(stack, twin, params, want_rows, want_tier):
    ms = []
    for _ in range(QUERIES):
        t0 = time.perf_counter()
        r = requests.get(stack.url(f"/api/v1/twins/{twin}/history"), params=params, timeout=30)
        r.content
        ms.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text[:200]
        rows = r.json()
        assert len(rows) == want_rows, (len(rows), want_rows)
        assert r.headers.get("X-History-Tier") == want_tier, r.headers
    ms.sort()
    return statistics.median(ms), ms[int(len(ms) * 0.95) - 1]


def backtest(stack, frm, to):
    """Backtests over the day series, timed, beside reading its raw points page by page."""
    rule = {"name": "warm", "when": "avg_over(temperature, 5m) > 66", "for": "1m",
            "clear": "avg_over(temperature, 5m) < 64"}
    before = stack.metrics()
    ms, points = [], 0
    for _ in range(max(3, QUERIES // 3)):
        t0 = time.perf_counter()
        r = requests.post(stack.url("/api/v1/rules/test"), timeout=60,
                          json={"rule": rule, "twins": "h-day", "from": frm, "to": to})
        ms.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text[:300]
        points = r.json()["points"]
    p99, commits = commit_quantile(before, stack.metrics(), 0.99)
    reads = []
    for _ in range(3):
        t0, start, n = time.perf_counter(), frm, 0
        while True:
            r = requests.get(stack.url("/api/v1/twins/h-day/history"), timeout=30,
                             params={"property": "temperature", "from": start, "to": to,
                                     "limit": 10000})
            n += len(r.json())
            if r.headers.get("X-Next-From") is None:
                break
            start = r.headers["X-Next-From"]
        reads.append((time.perf_counter() - t0) * 1000)
        assert n == points, (n, points)
    return {"ms": statistics.median(ms), "n": len(ms), "points": points,
            "read_ms": statistics.median(reads), "p99": p99, "commits": commits}


def disk_cost(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    size = dict(con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
    rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("history", "rollup_1m", "rollup_1h")}
    rows["packed"] = con.execute("SELECT coalesce(sum(n), 0) FROM history_block").fetchone()[0]
    con.close()
    return size, rows


COSTS = []
PACKS = []


def report_cost(label, s, history):
    """Restarted first: packing runs at start (and every 10 minutes), so
    what is older than an hour is in blocks when the pages are counted."""
    s.stop()
    t0 = time.monotonic()
    s.start(history)
    last, last_t = -1, t0
    while time.monotonic() - last_t < 2 and time.monotonic() - t0 < 120:
        time.sleep(0.1)
        now = s.metrics().get("twind_history_packed_total", 0)
        if now != last:
            last, last_t = now, time.monotonic()
    s.stop()
    PACKS.append(f"{label}: {last:,.0f} points packed in {last_t - t0:.1f} s after the start "
                 f"({last / max(last_t - t0, 1e-3):,.0f} points/s, start included)")
    size, rows = disk_cost(s.db)
    raw = sum(size.get(t, 0) for t in ("history", "history_block", "history_block_at"))
    m, h = (size.get(t, 0) for t in ("rollup_1m", "rollup_1h"))
    n = rows["history"] + rows["packed"]
    COSTS.append(f"| {label} | {n:,} ({rows['packed'] / n:.0%} packed) | {raw / n:.1f} | "
                 f"{m / max(rows['rollup_1m'], 1):.1f} ({rows['rollup_1m']:,} rows) | "
                 f"{h / max(rows['rollup_1h'], 1):.1f} ({rows['rollup_1h']:,} rows) | "
                 f"{(raw + m + h) / n:.1f} |")
    return n


RPACKED = []


def report_packed(label, s, history, points):
    """Restarted with raw kept an hour: the rollups under the raw edge are
    packed at start; their bytes, rows and blocks, over the points they hold."""
    s.stop()
    s.start(history)
    last, last_t, t0 = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - last_t < 2 and time.monotonic() - t0 < 120:
        time.sleep(0.1)
        now = s.metrics().get("twind_history_rollups_packed_total", 0)
        if now != last:
            last, last_t = now, time.monotonic()
    s.stop()
    con = sqlite3.connect(f"file:{s.db}?mode=ro", uri=True)
    size = dict(con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
    cells = []
    total = 0
    for t in ("1m", "1h"):
        rows = con.execute(f"SELECT count(*) FROM rollup_{t}").fetchone()[0]
        packed = con.execute(f"SELECT coalesce(sum(n), 0) FROM rollup_{t}_block").fetchone()[0]
        b = sum(size.get(f"rollup_{t}_block{x}", 0) for x in ("", "_at"))
        total += b + size.get(f"rollup_{t}", 0)
        cells.append(f"{b / max(packed, 1):.1f} ({packed:,} packed, {rows:,} rows left)")
    con.close()
    RPACKED.append(f"| {label} | {last:,.0f} | {cells[0]} | {cells[1]} | "
                   f"{total / max(points, 1):.2f} |")


def commit_quantile(before, after, q):
    """The q-quantile (upper bucket bound, seconds) of commits between two /metrics reads."""
    buckets = []
    for k, v in after.items():
        m = re.match(r'twind_commit_seconds_bucket\{le="([^"]+)"\}', k)
        if m:
            le = math.inf if m.group(1) == "+Inf" else float(m.group(1))
            buckets.append((le, v - before.get(k, 0)))
    buckets.sort()
    total = buckets[-1][1]
    for le, n in buckets:
        if n >= q * total:
            return le, int(total)
    return math.inf, int(total)


def main():
    rnd = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="twind-hbench-") as tmp:
        s = Stack(tmp)
        try:
            s.start({"raw": "60d"})    # the month's raw points stay, for their bytes
            end = (int(time.time() * 1000) - HOUR) // HOUR * HOUR
            day0, month0 = end - DAY, end - 30 * DAY
            day = [("plant/h-day/telemetry",
                    {"ts": day0 + i * 1000,
                     "temperature": round(60 + 8 * math.sin(i / 5000) + rnd.gauss(0, 0.3), 2)})
                   for i in range(86_400)]
            month = [("plant/h-month/telemetry",
                      {"ts": month0 + i * 60_000,
                       "temperature": round(60 + 8 * math.sin(i / 300) + rnd.gauss(0, 0.3), 2)})
                     for i in range(43_200)]
            rate = publish_all(s.mport, day + month)
            wait(lambda: s.metrics().get("twind_updates_applied_total", 0) >= len(day) + len(month),
                 120, "the series stored")
            print(f"loaded {len(day) + len(month):,} points at {rate:,.0f} msg/s (publisher-bound)")
            live = Live(s.mport)
            live.start()
            time.sleep(1)
            # the commit time with the same telemetry and no trimming, for the figure below
            before = s.metrics()
            time.sleep(3)
            quiet = commit_quantile(before, s.metrics(), 0.99)
            d = timed(s, "h-day", {"property": "temperature", "from": day0, "to": end - 1,
                                   "step": "1m", "limit": 10000}, 1440, "1m")
            mo = timed(s, "h-month", {"property": "temperature", "from": month0, "to": end - 1,
                                      "step": "1h", "limit": 10000}, 720, "1h")
            rd = timed(s, "h-day", {"property": "temperature", "from": day0, "to": end - 1,
                                    "step": "10m"}, 144, "1m")
            raw = timed(s, "h-day", {"property": "temperature", "from": day0,
                                     "limit": 10000}, 10000, None)
            bt = backtest(s, day0, end)
            live.stop_ev.set()
            live.join()
            print(f"\nqueries while {LIVE_RATE} msg/s of other telemetry came in "
                  f"({QUERIES} each, ms, median / p95, HTTP included):\n")
            print("| query | rows | median ms | p95 ms |\n| --- | ---: | ---: | ---: |")
            print(f"| 1 day of 1 Hz as 1-minute buckets (1m tier) | 1,440 | {d[0]:.1f} | {d[1]:.1f} |")
            print(f"| 30 days as hourly buckets (1h tier) | 720 | {mo[0]:.1f} | {mo[1]:.1f} |")
            print(f"| 1 day as 10-minute buckets (1m tier) | 144 | {rd[0]:.1f} | {rd[1]:.1f} |")
            print(f"| a page of 10,000 raw points | 10,000 | {raw[0]:.1f} | {raw[1]:.1f} |")
            print(f"\nbacktest (POST /api/v1/rules/test) of a rule reading avg_over(temperature, "
                  f"5m) over the day's {bt['points']:,} raw points, {bt['n']} runs, while "
                  f"{LIVE_RATE} msg/s came in: median {bt['ms']:.0f} ms "
                  f"({bt['points'] / bt['ms'] * 1000:,.0f} points/s); reading the same points "
                  f"as 10,000-point raw pages over REST: {bt['read_ms']:.0f} ms (the baseline: "
                  f"ratio {bt['ms'] / bt['read_ms']:.2f}); commit time p99 meanwhile <= "
                  f"{bt['p99'] * 1000:g} ms over {bt['commits']} commits (without: <= "
                  f"{quiet[0] * 1000:g} ms)")
            npts = report_cost("day (1 Hz) + month (1/min), 2 decimals", s, {"raw": "60d"})
            # retention: raw kept 1 h, so almost all of it goes while telemetry comes in
            con = sqlite3.connect(f"file:{s.db}?mode=ro", uri=True)
            edge = int(time.time() * 1000) - HOUR
            old = con.execute("SELECT count(*) FROM history WHERE ts < ?", (edge,)).fetchone()[0]
            old += con.execute("SELECT coalesce(sum(n), 0) FROM history_block WHERE t1 < ?",
                               (edge,)).fetchone()[0]
            con.close()
            s.start({"raw": "1h"})
            live = Live(s.mport)
            live.start()
            before = s.metrics()
            t0 = time.monotonic()
            wait(lambda: s.metrics().get("twind_retention_trimmed_total", 0) >= old, 120,
                 "retention to trim the raw points")
            took = time.monotonic() - t0
            after = s.metrics()
            live.stop_ev.set()
            live.join()
            p99, commits = commit_quantile(before, after, 0.99)
            p50, _ = commit_quantile(before, after, 0.50)
            print(f"\nretention trimmed {after['twind_retention_trimmed_total']:,.0f} raw rows in "
                  f"{took:.1f} s while {LIVE_RATE} msg/s came in: {commits} commits meanwhile, "
                  f"commit time p50 <= {p50 * 1000:g} ms, p99 <= {p99 * 1000:g} ms "
                  f"(histogram bucket bounds); without trimming, same telemetry: p99 <= "
                  f"{quiet[0] * 1000:g} ms over {quiet[1]} commits")
            report_packed("day (1 Hz) + month (1/min), 2 decimals", s, {"raw": "1h"}, npts)
        finally:
            s.close()
    with tempfile.TemporaryDirectory(prefix="twind-hbench-nab-") as tmp:
        s = Stack(tmp)
        try:
            s.start({"raw": "365d", "minute": "365d"})
            msgs = []
            for f in sorted(NAB.glob("*.csv")):
                with open(f) as fh:
                    rows = [(int(time.mktime(time.strptime(r["timestamp"], "%Y-%m-%d %H:%M:%S")))
                             * 1000, float(r["value"])) for r in csv.DictReader(fh)]
                # moved to end an hour ago, spacing kept: 2013 is beyond any retention
                shift = int(time.time() * 1000) - HOUR - rows[-1][0]
                msgs += [(f"plant/nab-{f.stem[:20]}/telemetry", {"ts": ts + shift, "value": v})
                         for ts, v in rows]
            publish_all(s.mport, msgs)
            wait(lambda: s.metrics().get("twind_updates_applied_total", 0) >= len(msgs), 120,
                 "the NAB series stored")
            npts = report_cost("the six NAB series", s, {"raw": "365d", "minute": "365d"})
            report_packed("the six NAB series", s, {"raw": "1h", "minute": "365d"}, npts)
        finally:
            s.close()
    print("\nbytes on disk (SQLite dbstat, pages of each table over its rows; raw: rows, "
          "blocks and their index):\n")
    print("| series | raw points | bytes / raw point | bytes / minute row | "
          "bytes / hour row | all tiers / raw point |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(COSTS))
    print("\nonce older than `raw` (restarted with raw = 1h): the rollups under the raw edge "
          "packed into blocks (SQLite dbstat: the blocks and their index over the rows packed; "
          "all tiers: every rollup page over the raw points they summarise):\n")
    print("| series | rows packed at start | bytes / packed minute row | "
          "bytes / packed hour row | all tiers / raw point |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print("\n".join(RPACKED))
    print("\n" + "\n".join(PACKS))


if __name__ == "__main__":
    main()
