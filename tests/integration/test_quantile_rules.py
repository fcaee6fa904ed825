"""quantile_over() and median_over() in rules, end to end: readings
published over MQTT into a real twind, alerts read over REST. A median is
not moved by a few spikes where a mean is; a reload keeps the window's
readings; a what-if holds a value in it; --check refuses a quantile out of
[0, 1] with its column."""
import json

from conftest import now_ms, wait_until
from test_rules import applied, rules_by_name, rules_twind, send, stays, twin_alerts, wait_alert

MEAN = {"name": "mean_hot", "when": "avg_over(temperature, 1m) > 80"}
MEDIAN = {"name": "median_hot", "when": "median_over(temperature, 1m) > 80"}
P90 = {"name": "p90_hot", "when": "quantile_over(temperature, 1m, 0.9) > 200"}


def publish_all(pub, tw, twin, t0, values):
    for i, v in enumerate(values):
        send(pub, twin, t0 + i * 100, temperature=v)
    applied(tw, twin, t0 + (len(values) - 1) * 100)
    return t0 + len(values) * 100


def active(tw, twin, rule):
    return [a for a in twin_alerts(tw, twin, rule) if a["active"]]


def test_median_is_not_moved_by_spikes(make_twind, publisher, tmp_path):
    tw = rules_twind(make_twind, tmp_path, [MEAN, MEDIAN, P90])
    twin = "q-1"
    # 7 readings of 50 and 3 spikes of 300: the mean is 125, the median 50, the 0.9 quantile 300
    t = publish_all(publisher, tw, twin, now_ms() - 10_000, [50, 300, 50, 50, 300, 50, 50, 300,
                                                             50, 50])
    wait_alert(tw, twin, rule="mean_hot", what="the mean moved by the spikes")
    wait_alert(tw, twin, rule="p90_hot", what="the 0.9 quantile on the spikes")
    stays(lambda: not active(tw, twin, "median_hot"), 1.3, "the median is not moved by spikes",
          show=lambda: twin_alerts(tw, twin))
    # 10 readings of 90: sorted, 50 x7, 90 x10, 300 x3; the median is 90
    publish_all(publisher, tw, twin, t, [90] * 10)
    wait_alert(tw, twin, rule="median_hot", what="the median above 80")


def test_reload_keeps_the_window(make_twind, publisher, tmp_path):
    """A reload that adds a rule reading the same window keeps its readings:
    the new rule judges the minute before it, not only what came after."""
    tw = rules_twind(make_twind, tmp_path, [MEDIAN])
    twin = "q-2"
    t = publish_all(publisher, tw, twin, now_ms() - 10_000, [50] * 7 + [300] * 3)
    low = {"name": "median_low", "when": "median_over(temperature, 1m) < 60"}
    tw.rfile.write_text(json.dumps([MEDIAN, low]))
    tw.hup()
    wait_until(lambda: "median_low" in rules_by_name(tw), 5, what="the new rule in force")
    # One more 300: with the minute kept, 7 x 50 and 4 x 300, the median is 50; a fresh window would say 300.
    publish_all(publisher, tw, twin, t, [300])
    wait_alert(tw, twin, rule="median_low", what="the new rule on the kept window")


def test_what_if_holds_a_value_in_the_window(make_twind, publisher, tmp_path):
    tw = rules_twind(make_twind, tmp_path, [MEDIAN])
    twin = "q-3"
    publish_all(publisher, tw, twin, now_ms() - 2_000, [50] * 5)
    # 95 once, then 40 s of other news: the twin goes on reporting 95 every second
    # meanwhile, so the minute's median becomes 95 (without the held readings
    # it would be the five 50s and one 95: 50) and the rule raises in the dry run
    r = tw.request("POST", f"/api/v1/twins/{twin}/simulate",
                   data=json.dumps({"steps": [{"at": "+0s", "reported": {"temperature": 95}},
                                              {"at": "+40s", "reported": {"other": 1}}]}),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    raised = [a for a in r.json()["alerts"] if a["rule"] == "median_hot" and a["action"] == "raise"]
    assert raised, r.json()["alerts"]
    # a dry run: the live twin has no alert
    assert not active(tw, twin, "median_hot")


def test_what_if_holds_at_the_rate_the_window_saw(make_twind, publisher, tmp_path):
    """A property read only by a quantile window, reported every 10 s: a
    held value counts as one reading every 10 s, not every second."""
    rule = {"name": "median10", "when": "median_over(temperature, 10m) > 80"}
    tw = rules_twind(make_twind, tmp_path, [rule])
    twin = "q-4"
    t0 = now_ms() - 600_000
    for i in range(60):
        send(publisher, twin, t0 + i * 10_000, temperature=50)
    applied(tw, twin, t0 + 59 * 10_000)
    # 95, then 60 s of other news: 6 more readings of 95 against 60 of 50
    r = tw.request("POST", f"/api/v1/twins/{twin}/simulate",
                   data=json.dumps({"steps": [{"at": "+0s", "reported": {"temperature": 95}},
                                              {"at": "+60s", "reported": {"other": 1}}]}),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert not [a for a in r.json()["alerts"] if a["rule"] == "median10"], r.json()["alerts"]
