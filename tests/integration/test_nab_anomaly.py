"""anomaly() on six real series it was not tuned on, scored the way NAB scores.

The six NAB series in ../shared/datasets/nab (machine temperature, AWS CPU,
EC2 latency, NYC taxi, and the two rogue-agent key series) are replayed
through the real mosquitto into the real ./twind, one twin per series, each
reading published as {"ts", "temperature": value}, with the one shipped rule
of config/rules-anomaly.json (its rule on `temperature`) and the same settings
for every series. Each
alert's raised_ts is then scored with ../shared/tools/nab_score.py (NAB's
standard profile, the per-file raw score) against NAB's labelled windows.

The table printed compares twind with the best published NAB detector of
each series and with the null detector (no detection: minus one per
window). The asserted floors leave a margin under what was measured when
the rule was chosen (see README, "Anomaly detection"); the rule knows
nothing of the labels.
"""

import calendar
import csv
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

from conftest import REPO, metric_value, wait_info, wait_until

DATASETS = Path(os.environ.get("TWIND_DATASETS", REPO.parent / "shared" / "datasets"))
NAB = DATASETS / "nab"
WINDOWS = NAB / "windows.json"
SCORER = Path(os.environ.get("TWIND_NAB_SCORE", REPO.parent / "shared" / "tools" / "nab_score.py"))
RULES = REPO / "config" / "rules-anomaly.json"

# series -> (best published NAB detector, its raw score, twind's floor)
SERIES = {
    "machine_temperature_system_failure.csv": ("ARTime", 2.556, 2.0),
    "cpu_utilization_asg_misconfiguration.csv": ("randomCutForest", 0.666, -0.5),
    "ec2_request_latency_system_failure.csv": ("relativeEntropy", 2.036, -0.5),
    "nyc_taxi.csv": ("relativeEntropy", 3.833, 1.5),
    "rogue_agent_key_hold.csv": ("bayesChangePt", 1.280, -1.5),
    "rogue_agent_key_updown.csv": ("knncad", 0.430, 0.0),
}
ARTIME_SUM = 3.616      # the best single detector over all six
SUM_FLOOR = 4.5         # measured 6.021 (README, "Anomaly detection")

ACK_TIMEOUT = 180
APPLY_TIMEOUT = 120


def ts_ms(text):
    return calendar.timegm(time.strptime(text.split(".")[0], "%Y-%m-%d %H:%M:%S")) * 1000


def load_scorer():
    if not SCORER.is_file():
        pytest.fail(f"the NAB scorer is missing: {SCORER}", pytrace=False)
    spec = importlib.util.spec_from_file_location("nab_score", SCORER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_series(name):
    path = NAB / name
    if not path.is_file() or not WINDOWS.is_file():
        pytest.fail(f"the NAB dataset is missing: {path} (set TWIND_DATASETS to the folder "
                    f"that holds nab/)", pytrace=False)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["timestamp", "value"]
        return [(ts_ms(t), float(v)) for t, v in reader]


def alerts_of(tw, twin):
    r = tw.get("/api/v1/alerts", params={"twin": twin, "limit": 1000})
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()["alerts"]


def test_nab_six_series_with_anomaly(make_twind, make_publisher):
    ns = load_scorer()
    series = {name: load_series(name) for name in SERIES}
    windows = json.loads(WINDOWS.read_text())
    twins = {name: f"nab-{i}" for i, name in enumerate(SERIES)}
    total_rows = sum(len(v) for v in series.values())
    t0 = time.monotonic()

    tw = make_twind(extra={"rules": {"file": str(RULES)}})
    pub = make_publisher(inflight=1000)
    infos = []
    for name, rows in series.items():
        topic = f"plant/{twins[name]}/telemetry"
        infos += [pub.publish_async(topic, json.dumps({"ts": ts, "temperature": v}))
                  for ts, v in rows]
    deadline = time.monotonic() + ACK_TIMEOUT
    for info in infos:
        wait_info(info, deadline - time.monotonic())
    assert all(i.is_published() for i in infos)
    wait_until(lambda: tw.metric("twind_updates_applied_total") >= total_rows, APPLY_TIMEOUT,
               interval=0.2, what=f"twind_updates_applied_total >= {total_rows}")
    assert metric_value(tw.metrics(), "twind_updates_applied_total") == total_rows

    def settled():
        before = [alerts_of(tw, t) for t in twins.values()]
        time.sleep(1.2)
        after = [alerts_of(tw, t) for t in twins.values()]
        return after if after == before else None
    wait_until(settled, 20, interval=0, what="the alerts to settle")

    print(f"\nanomaly() on six NAB series, {total_rows} readings, replayed in "
          f"{time.monotonic() - t0:.1f}s; NAB standard profile, raw score per file")
    print(f"  {'series':<42} {'twind':>7} {'null':>6} {'best published':>24}  windows  alerts")
    total, results = 0.0, {}
    for name, (best_name, best, floor) in SERIES.items():
        alerts = alerts_of(tw, twins[name])
        for a in alerts:
            assert a["rule"] == "unusual_temperature" and a["twin"] == twins[name], a
        stamps = [ns.parse_ts(t) for t in
                  [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts / 1000))
                   for ts, _ in series[name]]]
        res = ns.score(stamps, windows[name], [a["raised_ts"] for a in alerts])
        raw = res["nab"]["raw_score"]
        null = res["nab"]["null_detector"]
        results[name] = (raw, null, floor)
        total += raw
        print(f"  {name:<42} {raw:7.3f} {null:6.1f} {best:8.3f} ({best_name:>14})  "
              f"{res['windows_detected']}/{res['windows_total']}      {len(alerts)}")
    null_sum = sum(n for _, n, _ in results.values())
    print(f"  {'sum':<42} {total:7.3f} {null_sum:6.1f} {ARTIME_SUM:8.3f} ({'ARTime':>14})")

    for name, (raw, null, floor) in results.items():
        assert raw >= floor, f"{name}: {raw:.3f} under its floor {floor}"
        assert raw >= null + 0.5, f"{name}: {raw:.3f} not 0.5 above the null detector {null}"
    assert total >= SUM_FLOOR, f"sum {total:.3f} under {SUM_FLOOR}"
    assert total > ARTIME_SUM
