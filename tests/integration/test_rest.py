"""REST: errors and history queries (raw, ranges, limits, buckets)."""

from datetime import datetime, timezone

import pytest

from conftest import now_ms


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def assert_error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


@pytest.fixture(scope="module")
def rest_twin(shared):
    shared.pub.publish("plant/rest-1/telemetry", {"a": 1, "ts": now_ms() - 5000})
    shared.twind.wait_version("rest-1", 1)
    return "rest-1"


def test_unknown_twin_404(shared, rest_twin):
    tw = shared.twind
    assert_error(tw.get("/api/v1/twins/no-such-twin"), 404, "not_found")
    assert_error(tw.get("/api/v1/twins/no-such-twin/history", params={"property": "a"}),
                 404, "not_found")


@pytest.mark.parametrize("bad_id", ["bad$id", "bad%20id", "a" * 200],
                         ids=["dollar", "space", "200-chars"])
def test_bad_twin_id_400(shared, rest_twin, bad_id):
    assert_error(shared.twind.get(f"/api/v1/twins/{bad_id}"), 400, "bad_request")


@pytest.mark.parametrize("params", [
    pytest.param({}, id="no-property"),
    pytest.param({"property": "a", "from": "yesterday"}, id="bad-from"),
    pytest.param({"property": "a", "to": "12:00"}, id="bad-to"),
    pytest.param({"property": "a", "from": "-15x"}, id="bad-relative-unit"),
    pytest.param({"property": "a", "from": "2026-13-45T99:00:00Z"}, id="bad-rfc3339"),
])
def test_history_bad_request_400(shared, rest_twin, params):
    r = shared.twind.get(f"/api/v1/twins/{rest_twin}/history", params=params)
    assert_error(r, 400, "bad_request")


def test_unknown_path_404_and_wrong_method_405(shared, rest_twin):
    tw = shared.twind
    assert_error(tw.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_error(tw.get(f"/api/v1/twins/{rest_twin}/no-such-thing"), 404, "not_found")
    assert tw.get("/no-such-thing").status_code == 404
    assert tw.request("DELETE", "/api/v1/twins").status_code == 405
    assert tw.request("DELETE", f"/api/v1/twins/{rest_twin}").status_code == 405
    assert tw.request("POST", "/healthz").status_code == 405
    assert tw.request("POST", "/metrics").status_code == 405
    # the daemon still answers after all that
    assert tw.get("/healthz").status_code == 200


@pytest.fixture(scope="module")
def series120(shared):
    """120 points at 1 s spacing, value i at base + i s + 500 ms; base on a
    whole minute, 10 to 12 minutes ago. The half second keeps every point off
    the whole-second range bounds used below."""
    tw, pub = shared.twind, shared.pub
    base = (now_ms() - 660_000) // 60_000 * 60_000
    pub.publish_many([("plant/hist-1/telemetry", {"v": i, "ts": base + i * 1000 + 500})
                      for i in range(120)])
    tw.wait_version("hist-1", 120, timeout=15)
    return base


def pts(base, idx):
    return [{"ts": base + i * 1000 + 500, "value": i} for i in idx]


def test_history_raw_ranges(shared, series120):
    tw, base = shared.twind, series120
    h = lambda **q: tw.history("hist-1", "v", **q)  # noqa: E731
    assert h(**{"from": base, "to": base + 120_000}) == pts(base, range(120))
    assert h(**{"from": base + 10_000, "to": base + 20_000}) == pts(base, range(10, 20))
    assert h(**{"from": iso(base + 10_000), "to": iso(base + 20_000)}) == pts(base, range(10, 20))
    # relative and now
    assert h(**{"from": "-2h", "to": "now"}) == pts(base, range(120))
    assert h(**{"from": "-7d"}) == pts(base, range(120))
    assert h(**{"from": "-1m"}) == []
    # without from: the newest `limit` points up to `to`, ascending
    assert h(**{"to": base + 60_000, "limit": 5}) == pts(base, range(55, 60))
    assert h(limit=3) == pts(base, range(117, 120))
    assert h() == pts(base, range(120))
    # with from and a limit: at most limit points, ascending, in range
    got = h(**{"from": base + 10_000, "to": base + 100_000, "limit": 5})
    assert len(got) == 5
    assert [p["ts"] for p in got] == sorted(p["ts"] for p in got)
    assert all(base + 10_000 <= p["ts"] <= base + 100_000 for p in got)
    assert all(p in pts(base, range(120)) for p in got)


def test_history_step_buckets(shared, series120):
    tw, base = shared.twind, series120
    b = tw.history("hist-1", "v", **{"from": base, "to": base + 119_999, "step": "1m"})
    assert b == [
        {"ts": base, "min": 0, "max": 59, "avg": 29.5, "count": 60, "first": 0, "last": 59},
        {"ts": base + 60_000, "min": 60, "max": 119, "avg": 89.5, "count": 60,
         "first": 60, "last": 119},
    ]
    b = tw.history("hist-1", "v", **{"from": base, "to": base + 119_999, "step": "10s"})
    assert [x["ts"] for x in b] == [base + k * 10_000 for k in range(12)]
    assert [x["count"] for x in b] == [10] * 12
    assert [x["min"] for x in b] == [10 * k for k in range(12)]
    assert [x["max"] for x in b] == [10 * k + 9 for k in range(12)]
    assert [x["avg"] for x in b] == [10 * k + 4.5 for k in range(12)]


def test_history_default_limit_is_1000(shared):
    tw, pub = shared.twind, shared.pub
    base = now_ms() - 3_600_000
    pub.publish_many([("plant/hist-2/telemetry", {"v": i, "ts": base + i})
                      for i in range(1100)])
    tw.wait_version("hist-2", 1100, timeout=20)
    got = tw.history("hist-2", "v")
    assert got == [{"ts": base + i, "value": i} for i in range(100, 1100)]
    assert len(tw.history("hist-2", "v", limit=10000)) == 1100
