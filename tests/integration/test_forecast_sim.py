"""The forecast against a known truth: twind-sim's wearing bearing (pump-2)
wears linearly with load x time (Archard's law), and the simulator prints
when, at nominal speed, its vibration reaches the model's maximum. At 25 %,
50 % and 75 % of that life, GET forecast must say how long is left; the goal
is within 10 % at half life. The shipped models are used, with no rules, so
nothing changes the pump's speed while it is watched."""
import re
import subprocess
import time

from conftest import REPO, Twind, now_ms, wait_until

ACCEL = 100                            # the wear clock runs 100 times fast
LIFE_MS = 1.6 * 1800 / ACCEL * 1000    # wear 1.6 at nominal speed: 28.8 s


def test_time_to_the_vibration_limit_against_the_simulators_truth(stack, broker, tmp_path):
    tw = Twind(tmp_path / "twind", broker, {
        "twins": {"models": str(REPO / "config/models"), "file": str(REPO / "config/twins.json")}})
    stack.twinds.append(tw)
    tw.start()
    sim = subprocess.Popen([str(REPO / "twind-sim"), "-p", str(broker.port), "-r", "200",
                            "-a", str(ACCEL), "-i", "sim-forecast"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        truth = None
        deadline = time.monotonic() + 10
        while truth is None and time.monotonic() < deadline:
            line = sim.stdout.readline()
            m = re.search(r"pump-2's bearing .* at ts (\d+)", line)
            if m:
                truth = int(m.group(1))
        assert truth is not None, "the simulator did not say when the bearing reaches its limit"
        start = truth - LIFE_MS
        errors = {}
        for share in (0.25, 0.5, 0.75):
            wait_until(lambda: now_ms() >= start + share * LIFE_MS, LIFE_MS / 1000 + 5,
                       interval=0.01)
            r = tw.get("/api/v1/twins/pump-2/forecast",
                       params={"property": "vibration", "window": "4s"})
            assert r.status_code == 200, r.text
            f = r.json()
            assert f["limit"] == 10 and f["limit_source"] == "maximum", f
            assert f["time_to_limit_s"] is not None, f
            left = (truth - f["ts"]) / 1000
            errors[share] = (f["time_to_limit_s"] - left) / left
            print(f"at {share:.0%} of its life: predicted {f['time_to_limit_s']:.2f} s, "
                  f"truth {left:.2f} s, error {errors[share]:+.1%} "
                  f"({f['points']} points, r2 {f['r2']:.3f})")
        assert abs(errors[0.5]) <= 0.10, errors
        assert all(abs(e) <= 0.25 for e in errors.values()), errors
    finally:
        sim.terminate()
        sim.wait(10)
