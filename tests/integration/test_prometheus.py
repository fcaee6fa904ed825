"""A real Prometheus (Debian's) scrapes twind's /metrics under load: through
Prometheus's own query API, the counters and histograms parse, carry their
labels and move. The shipped alerting rules load and evaluate, and the
Grafana dashboard and the rules name only metrics twind exports."""

import datetime
import json
import re
import shutil
import subprocess
import threading
import time

import pytest
import requests

from conftest import (PUMP_ID, REPO, free_port, now_ms, plant_extra, wait_until, write_plant)

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
RULES = [{"name": "hot", "match": {"twins": "m-*"}, "when": "temperature > 90",
          "clear": "temperature < 80", "severity": "major",
          "actions": [{"command": "stop"}]}]


@pytest.fixture
def prometheus(tmp_path, make_twind):
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.fail("prometheus is missing: make test installs it", pytrace=False)
    mdir, tfile = write_plant(tmp_path / "plant", None,
                              [{"id": f"m-{i}", "model": PUMP_ID} for i in range(5)])
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    extra = plant_extra(mdir, tfile)
    extra["rules"] = {"file": str(rules)}
    extra["commands"] = {"acknowledged": "no"}
    tw = make_twind(extra=extra)
    port = free_port()
    conf = tmp_path / "prometheus.yml"
    shutil.copy(REPO / "config" / "twind-alerts.yml", tmp_path / "twind-alerts.yml")
    conf.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files:\n  - twind-alerts.yml\n"
        "scrape_configs:\n  - job_name: twind\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{tw.http_port}']\n")
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={conf}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready():
            try:
                return requests.get(base + "/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_until(ready, 20, what="prometheus ready")
        yield tw, base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def query(base, expr):
    r = requests.get(base + "/api/v1/query", params={"query": expr}, timeout=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def value(base, expr):
    res = query(base, expr)
    return float(res[0]["value"][1]) if res else None


def scraped_after(base, t):
    """Waits for a scrape of twind that started after wall time t (seconds)."""
    def done():
        r = requests.get(base + "/api/v1/targets", timeout=5).json()
        ts = [x for x in r["data"]["activeTargets"] if x["labels"]["job"] == "twind"]
        if not ts or ts[0]["health"] != "up":
            return None
        # RFC 3339 with nanoseconds and the server's offset: keep microseconds
        last = re.sub(r"(\.\d{6})\d*", r"\1", ts[0]["lastScrape"]).replace("Z", "+00:00")
        stamp = datetime.datetime.fromisoformat(last).timestamp()
        return ts[0] if stamp > t + 1 else None
    return wait_until(done, 15, what="a scrape after the load")


def test_prometheus_scrapes_twind_under_load(prometheus, publisher):
    tw, base = prometheus
    target = scraped_after(base, time.time() - 1)
    assert target["lastError"] == "", target
    assert value(base, 'up{job="twind"}') == 1
    received0 = value(base, "twind_messages_received_total") or 0
    evals0 = value(base, "twind_rule_evaluations_total") or 0

    # an operator's screen on the event stream while the plant runs
    events = requests.get(tw.url("/api/v1/events"), stream=True, timeout=30)
    assert events.status_code == 200
    stop = threading.Event()

    def drain():
        try:
            for _ in events.iter_content(1024):
                if stop.is_set():
                    break
        except Exception:  # noqa: BLE001 -- the stream closed under the reader: its end
            pass
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        T = now_ms()
        msgs = []
        for i in range(2000):
            temp = 95 if i % 50 == 0 else 60
            msgs.append((f"plant/m-{i % 5}/telemetry",
                         {"ts": T + i, "temperature": temp, "pressure": 1.0}))
        publisher.publish_many(msgs)
        publisher.publish("plant/m-0/telemetry", b"{not json")
        wait_until(lambda: tw.metric("twind_messages_received_total") >= 2001, 10,
                   what="twind took the load")
        t_loaded = time.time()
        scraped_after(base, t_loaded)

        assert value(base, "twind_messages_received_total") >= received0 + 2001
        assert value(base, "twind_updates_applied_total") >= 2000
        assert value(base, 'twind_messages_dropped_total{reason="malformed"}') >= 1
        reasons = {r["metric"]["reason"] for r in query(base, "twind_messages_dropped_total")}
        assert {"malformed"} <= reasons, reasons
        # histograms: buckets with le, a quantile Prometheus can compute
        les = {r["metric"]["le"] for r in query(base, "twind_commit_seconds_bucket")}
        assert "+Inf" in les and len(les) >= 5, les
        p99 = value(base, "histogram_quantile(0.99, sum by (le) "
                          "(rate(twind_commit_seconds_bucket[30s])))")
        assert p99 is not None and 0 < p99 < 10, p99
        assert value(base, "twind_commit_batch_size_count") >= 1
        assert value(base, "twind_rule_evaluations_total") >= evals0 + 2000
        sent = value(base, 'twind_commands_total{status="done"}')
        assert sent is not None and sent >= 1, query(base, "twind_commands_total")
        assert value(base, "twind_alerts_raised_total") >= 1
        assert value(base, "twind_event_clients") == 1
        assert value(base, "rate(twind_messages_received_total[30s])") > 0
    finally:
        stop.set()
        events.close()
        reader.join(5)
    # a closed stream is noticed at the next write: an event, or the 15 s heartbeat
    publisher.publish("plant/m-1/telemetry", {"temperature": 61})
    wait_until(lambda: tw.metric("twind_event_clients") == 0, 10, what="twind saw it go")
    scraped_after(base, time.time())
    assert value(base, "twind_event_clients") == 0

    # the shipped alerting rules load and evaluate without error
    groups = requests.get(base + "/api/v1/rules", timeout=5).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 8, rules
    wait_until(lambda: all(r["health"] == "ok" for g in requests.get(
        base + "/api/v1/rules", timeout=5).json()["data"]["groups"] for r in g["rules"]),
        10, what="every rule evaluated with health ok")
    # ... and TwindCommandsNotDone is quiet (every command was done), TwindDown too
    firing = {a["labels"]["alertname"] for a in
              requests.get(base + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]}
    assert not firing & {"TwindDown", "TwindCommitsFailing", "TwindCommandsNotDone",
                         "TwindBrokerLost"}, firing


def test_shipped_rules_and_dashboard_name_real_metrics(twind):
    """promtool accepts the shipped files, and every twind_* name they use exists."""
    for args in (["check", "rules", str(REPO / "config" / "twind-alerts.yml")],
                 ["check", "config", str(REPO / "config" / "prometheus.yml")]):
        r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    exported = set(re.findall(r"^# TYPE (twind_\w+) (\w+)", twind.get("/metrics").text, re.M))
    names = {n for n, _ in exported}
    histos = {n for n, t in exported if t == "histogram"}
    for n in list(histos):
        names |= {n + "_bucket", n + "_sum", n + "_count"}
    used = set()
    for f in ("twind-alerts.yml", "grafana-twind.json"):
        used |= set(re.findall(r"\btwind_\w+", (REPO / "config" / f).read_text()))
    assert used, "no metrics named"
    assert used <= names, sorted(used - names)
    json.loads((REPO / "config" / "grafana-twind.json").read_text())
