"""GET /api/v1/twins/{id}/forecast through a real broker and twind: a noisy
ramp published over MQTT gives back its slope and its time to the model's
limit, with r2 and the prediction interval that ordinary least squares done
here gives; the model's minimum for a falling trend; a limit the trend moves
away from; several properties; the errors."""
import math
import random

import pytest

from conftest import PUMP_ID, assert_error, now_ms, shared_plant, wait_until

TWINS = [{"id": f"fc-{i}", "model": PUMP_ID} for i in range(1, 6)] + [{"id": "fc-free"}]


@pytest.fixture(scope="module")
def plant(request, tmp_path_factory):
    with shared_plant(request, tmp_path_factory, TWINS) as sh:
        yield sh


def ols(points):
    """Slope, value at the last point, r2, residual sd, and the 95 % half-width
    at `at` (seconds after the last point), done the obvious way."""
    n = len(points)
    xs = [(ts - points[0][0]) / 1000 for ts, _ in points]   # near 0: no digits lost
    ys = [v for _, v in points]
    xm, ym = sum(xs) / n, sum(ys) / n
    sxx = sum((x - xm) ** 2 for x in xs)
    sxy = sum((x - xm) * (y - ym) for x, y in zip(xs, ys))
    syy = sum((y - ym) ** 2 for y in ys)
    b = sxy / sxx
    a = ym - b * xm
    ssr = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    sd = math.sqrt(ssr / (n - 2))

    def half(at_s):
        x0 = xs[-1] + at_s
        return 1.96 * sd * math.sqrt(1 + 1 / n + (x0 - xm) ** 2 / sxx)
    return b, a + b * xs[-1], 1 - ssr / syy, sd, half


def publish_series(plant, twin, points, prop="temperature"):
    plant.pub.publish_many([(f"plant/{twin}/telemetry", {"ts": ts, prop: v})
                            for ts, v in points], timeout=60)
    wait_until(lambda: len(plant.twind.db_history(twin, prop)) == len(points), 20,
               what=f"{len(points)} points of {twin} stored")


def forecast(plant, twin, **params):
    r = plant.twind.get(f"/api/v1/twins/{twin}/forecast", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def ramp(start_v, slope, n=900, every_ms=1000, noise=0.5, seed=1):
    rnd = random.Random(seed)
    t0 = now_ms() - n * every_ms
    return t0, [(t0 + i * every_ms, round(start_v + slope * i * every_ms / 1000 +
                                          rnd.gauss(0, noise), 3)) for i in range(n)]


def test_ramp_slope_and_time_to_the_model_maximum(plant):
    # 20 degC rising 0.02 degC/s with 0.5 degC of noise; the model's maximum is 100.
    t0, pts = ramp(20, 0.02)
    publish_series(plant, "fc-1", pts)
    f = forecast(plant, "fc-1", property="temperature", window="1h", horizon="10m")
    last_ts = pts[-1][0]
    true_now = 20 + 0.02 * (last_ts - t0) / 1000
    assert f["ts"] == last_ts and f["points"] == len(pts) and f["tier"] == "raw"
    assert f["window_s"] == 3600 and f["horizon_s"] == 600
    assert abs(f["slope_per_s"] - 0.02) <= 0.02 * 0.02          # within 2 % of the truth
    assert f["limit"] == 100 and f["limit_source"] == "maximum"
    truth = (100 - true_now) / 0.02
    assert abs(f["time_to_limit_s"] - truth) <= 0.05 * truth     # within 5 %
    assert f["limit_ts"] == pytest.approx(last_ts + f["time_to_limit_s"] * 1000, abs=1)
    # And exactly what least squares gives on the stored points.
    b, fitted, r2, sd, half = ols(pts)
    assert f["slope_per_s"] == pytest.approx(b, rel=1e-9)
    assert f["fitted"] == pytest.approx(fitted, rel=1e-9)
    assert f["projected"] == pytest.approx(fitted + b * 600, rel=1e-9)
    assert f["r2"] == pytest.approx(r2, rel=1e-9)
    assert f["residual_sd"] == pytest.approx(sd, rel=1e-9)
    iv = f["interval"]
    assert iv["level"] == 0.95
    assert iv["high"] - f["projected"] == pytest.approx(half(600), rel=1e-6)
    assert f["projected"] - iv["low"] == pytest.approx(half(600), rel=1e-6)
    assert iv["low"] < 20 + 0.02 * (last_ts + 600_000 - t0) / 1000 < iv["high"]


def test_window_takes_only_the_recent_part(plant):
    # Flat for 10 minutes, then rising: a 2 minute window sees the rise alone.
    t0 = now_ms() - 720_000
    pts = [(t0 + i * 1000, 50.0 if i < 600 else 50.0 + 0.1 * (i - 600)) for i in range(720)]
    publish_series(plant, "fc-2", pts)
    short = forecast(plant, "fc-2", property="temperature", window="100s")
    assert short["slope_per_s"] == pytest.approx(0.1, rel=1e-6)
    assert short["horizon_s"] == 100                     # defaults to the window
    assert short["time_to_limit_s"] == pytest.approx((100 - pts[-1][1]) / 0.1, rel=1e-6)
    whole = forecast(plant, "fc-2", property="temperature", window="1h")
    assert whole["points"] == 720 and whole["slope_per_s"] < 0.05


def test_falling_trend_heads_for_the_minimum_and_a_limit_moving_away(plant):
    t0, pts = ramp(80, -0.05, n=300, noise=0.2, seed=2)
    publish_series(plant, "fc-3", pts)
    f = forecast(plant, "fc-3", property="temperature", window="1h")
    assert f["limit"] == 0 and f["limit_source"] == "minimum"
    assert f["time_to_limit_s"] == pytest.approx(f["fitted"] / -f["slope_per_s"], rel=1e-9)
    # A limit above a falling line is never reached: null, not a huge number.
    up = forecast(plant, "fc-3", property="temperature", window="1h", limit="95")
    assert up["limit"] == 95 and up["limit_source"] == "query"
    assert up["time_to_limit_s"] is None and up["limit_ts"] is None
    # A limit it will cross, given in the query.
    down = forecast(plant, "fc-3", property="temperature", window="1h", limit="50")
    assert down["time_to_limit_s"] == pytest.approx((f["fitted"] - 50) / -f["slope_per_s"],
                                                    rel=1e-9)


def test_several_properties_and_a_twin_without_a_model(plant):
    t0 = now_ms() - 60_000
    plant.pub.publish_many([("plant/fc-free/telemetry",
                             {"ts": t0 + i * 1000, "a": 1.0 + i, "b": 100.0 - 2 * i})
                            for i in range(60)], timeout=30)
    wait_until(lambda: len(plant.twind.db_history("fc-free", "b")) == 60, 20)
    f = forecast(plant, "fc-free", property="a,b", window="10m", horizon="30s")
    assert set(f) == {"a", "b"}
    assert f["a"]["slope_per_s"] == pytest.approx(1.0, rel=1e-9)
    assert f["b"]["slope_per_s"] == pytest.approx(-2.0, rel=1e-9)
    assert f["a"]["projected"] == pytest.approx(60 + 30, rel=1e-9)
    assert f["a"]["r2"] == pytest.approx(1.0)
    # No model, no limit given: nothing to reach.
    assert f["a"]["limit"] is None and f["a"]["time_to_limit_s"] is None
    g = forecast(plant, "fc-free", property="b", limit="-100")
    assert g["fitted"] == pytest.approx(-18, rel=1e-9)
    assert g["time_to_limit_s"] == pytest.approx(41, rel=1e-9)


def test_too_few_points_give_nulls(plant):
    plant.pub.publish("plant/fc-4/telemetry", {"ts": now_ms(), "temperature": 30})
    wait_until(lambda: len(plant.twind.db_history("fc-4", "temperature")) == 1, 10)
    f = forecast(plant, "fc-4", property="temperature")
    assert f["points"] == 1
    assert f["slope_per_s"] is None and f["projected"] is None and f["interval"] is None
    assert f["time_to_limit_s"] is None


def test_bad_requests(plant):
    tw = plant.twind
    plant.pub.publish("plant/fc-5/telemetry", {"ts": now_ms(), "mode": "auto",
                                               "temperature": 30})
    wait_until(lambda: len(tw.db_history("fc-5", "mode")) == 1, 10)

    def get(twin, **params):
        return tw.get(f"/api/v1/twins/{twin}/forecast", params=params)
    assert_error(get("nope", property="temperature"), 404, "not_found")
    assert_error(get("fc-5", property="pressure"), 404, "not_found")
    assert_error(get("fc-5", property="mode"), 422, "not_numeric")
    assert_error(get("fc-5"), 400, "bad_request")
    assert_error(get("fc-5", property="temperature,temperature"), 400, "bad_request")
    for bad in ("0s", "0.5", "500ms", "-1h", "401d", "x"):
        assert_error(get("fc-5", property="temperature", window=bad), 400, "bad_request")
    for bad in ("-1s", "11000d", "soon"):
        assert_error(get("fc-5", property="temperature", horizon=bad), 400, "bad_request")
    for bad in ("nan", "inf", "1e999", "", "12abc"):
        assert_error(get("fc-5", property="temperature", limit=bad), 400, "bad_request")
    assert tw.get("/healthz").status_code == 200


def test_a_large_offset_keeps_its_residuals(plant):
    # A counter near 1e10: the window's uncentred sums would cancel every digit.
    t0, pts = ramp(1e10, 0.02, n=600, noise=0.5, seed=3)
    plant.pub.publish_many([("plant/fc-free/telemetry", {"ts": ts, "big": v}) for ts, v in pts],
                           timeout=60)
    wait_until(lambda: len(plant.twind.db_history("fc-free", "big")) == len(pts), 20)
    f = forecast(plant, "fc-free", property="big", window="1h", horizon="1m")
    b, fitted, r2, sd, half = ols([(ts, v - 1e10) for ts, v in pts])
    assert f["slope_per_s"] == pytest.approx(b, rel=1e-6)
    assert f["residual_sd"] == pytest.approx(sd, rel=1e-3)
    assert f["fitted"] == pytest.approx(fitted + 1e10, rel=1e-12)
    assert f["interval"]["high"] - f["projected"] == pytest.approx(half(60), rel=1e-3)
