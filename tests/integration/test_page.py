"""The plant page in a real browser: Debian's headless Chromium, driven by
Selenium, against a real twind fed by a real broker. What an operator does on
the page must reach MQTT and the REST API, and what a bridge publishes must
reach the page without a reload. A screenshot of each view is kept in
build/artifacts/."""

import csv
import io
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from conftest import (LINE_ID, PUMP_ID, REPO, Broker, Publisher, Stack, Subscriber, Twind,
                      now_ms, plant_extra, wait_until, write_plant)

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
except ImportError:             # make test installs it; say so rather than skip
    webdriver = None

ARTIFACTS = REPO / "build" / "artifacts"
CHROMEDRIVER = "/usr/bin/chromedriver"

TWINS = [{"id": "line-1", "model": LINE_ID},
         {"id": "p-1", "model": PUMP_ID, "parent": "line-1"},
         {"id": "p-2", "model": PUMP_ID, "parent": "line-1"},
         {"id": "p-3", "model": PUMP_ID, "parent": "line-1"}]
RULES = [{"name": "overheat", "match": {"twins": "p-*"}, "when": "temperature > 90",
          "clear": "temperature < 80", "severity": "critical",
          "message": "{twin} temperature {temperature} above 90"}]


class Plant:
    pass


@pytest.fixture(scope="module")
def plant(request, tmp_path_factory):
    if webdriver is None:
        pytest.fail("python3-selenium is missing: make test installs it", pytrace=False)
    if not Path(CHROMEDRIVER).exists() or shutil.which("chromium") is None:
        pytest.fail("chromium and chromium-driver are missing: make test installs them",
                    pytrace=False)
    base = tmp_path_factory.mktemp("page")
    s = Stack()
    p = Plant()
    driver = None
    try:
        b = Broker(base / "broker")
        s.brokers.append(b)
        b.start()
        mdir, tfile = write_plant(base / "conf", None, TWINS)
        rules = base / "rules.json"
        rules.write_text(json.dumps(RULES))
        extra = plant_extra(mdir, tfile)
        extra["rules"] = {"file": str(rules)}
        tw = Twind(base / "twind", b, extra)
        s.twinds.append(tw)
        tw.start()
        pub = Publisher(b.port)
        s.pubs.append(pub)
        o = Options()
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1366,768", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"):
            o.add_argument(a)
        o.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
        driver.set_page_load_timeout(20)
        downloads = base / "downloads"
        downloads.mkdir()
        driver.execute_cdp_cmd("Page.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(downloads)})
        p.broker, p.twind, p.pub, p.driver, p.downloads = b, tw, pub, driver, downloads
        p.origin = f"http://127.0.0.1:{tw.http_port}"
        yield p
    finally:
        if driver is not None:
            driver.quit()
        s.cleanup(show_logs=request.session.testsfailed > 0)


def publish(p, twin, **values):
    p.pub.publish(f"plant/{twin}/telemetry", {"ts": now_ms(), **values})


def open_view(p, fragment):
    p.driver.get(p.origin + "/" + fragment)
    wait_until(lambda: p.driver.find_element(By.ID, "link").text == "live", 10,
               what="the page's event stream live")


def css(p, selector):
    return p.driver.find_elements(By.CSS_SELECTOR, selector)


def text_of(p, selector):
    """The text shown, read in one step (the tree is redrawn as events come)."""
    return p.driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", selector)


def attrs(p, selector, name):
    return p.driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]));",
        selector, name)


def screenshot(p, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    p.driver.save_screenshot(str(ARTIFACTS / name))


def test_tree_shows_the_plant(plant):
    p = plant
    for t in ("line-1", "p-1", "p-2", "p-3"):
        publish(p, t, temperature=50) if t != "line-1" else publish(p, t, throughput=10)
    for t in ("line-1", "p-1", "p-2", "p-3"):
        p.twind.wait_version(t, 1)
    open_view(p, "")
    ids = wait_until(lambda: attrs(p, "#tree li", "data-twin") or None, 5, what="the tree")
    assert ids == ["line-1", "p-1", "p-2", "p-3"], ids
    # the pumps hang under the line
    kids = attrs(p, '#tree li[data-twin="line-1"] ul li', "data-twin")
    assert kids == ["p-1", "p-2", "p-3"], kids
    for t in ids:
        assert text_of(p, f'#tree li[data-twin="{t}"] > a .mark[data-status]') == "online", t


def test_published_value_appears_within_a_second(plant):
    p = plant
    open_view(p, "#/twin/p-1")
    wait_until(lambda: text_of(p, 'tr[data-prop="temperature"] .value') == "50", 5,
               what="p-1's temperature on the page")
    t0 = time.monotonic()
    publish(p, "p-1", temperature=61.25)
    wait_until(lambda: text_of(p, 'tr[data-prop="temperature"] .value') == "61.25", 1.0,
               interval=0.02, what="the new value on the page within a second, no reload")
    took = time.monotonic() - t0
    assert took <= 1.0, took
    assert text_of(p, 'tr[data-prop="temperature"] td:nth-child(3)') == "°C"
    # the model's limit 0..100: out of range is marked in words
    publish(p, "p-1", temperature=150)
    wait_until(lambda: "out of range" in (text_of(p, 'tr[data-prop="temperature"] .marks') or ""),
               2, what="the out-of-range mark")
    publish(p, "p-1", temperature=50)
    screenshot(p, "page-twin.png")


def test_stale_twin_turns_its_mark(plant):
    p = plant
    open_view(p, "")
    # p-3 reports every second by its model; silent for 2 periods it is stale
    publish(p, "p-3", temperature=40)
    wait_until(lambda: text_of(p, '#tree li[data-twin="p-3"] > a .mark[data-status]') == "stale",
               10, what="p-3 marked stale in the tree without a reload")
    assert attrs(p, '#tree li[data-twin="p-3"] > a .mark[data-status]', "class") == ["mark st-stale"]
    # the line rolls its children up: worse below it is shown on it
    # (stale at least: on a slow run a sibling silent longer may be offline already)
    wait_until(lambda: attrs(p, '#tree li[data-twin="line-1"] > a .mark[data-rollup]',
                             "data-rollup") in (["stale"], ["offline"]), 10,
               what="the line's rolled-up mark")


def test_alarm_acknowledged_from_the_page(plant):
    p = plant
    open_view(p, "#/alarms")
    publish(p, "p-2", temperature=95)
    row = wait_until(lambda: css(p, "#alarm-table tbody tr"), 5,
                     what="the alarm on the page without a reload")[0]
    aid = row.get_attribute("data-alert")
    assert "p-2" in row.text and "critical" in row.text and "unacknowledged" in row.text
    # the count rolls up: p-2's own, and the line's above it
    wait_until(lambda: text_of(p, '#tree li[data-twin="line-1"] > a .count') == "1", 3,
               what="the line's alarm count")
    assert text_of(p, '#tree li[data-twin="p-2"] > a .count') == "1"
    screenshot(p, "page-alarms.png")
    row.find_element(By.CSS_SELECTOR, "button.ack").click()

    def acked():
        al = p.twind.get("/api/v1/alerts", params={"twin": "p-2"}).json()["alerts"]
        return al if al and al[0]["acknowledged"] else None
    al = wait_until(acked, 5, what="the acknowledgement in the REST API")
    assert str(al[0]["id"]) == aid
    wait_until(lambda: "acknowledged" in (text_of(p, f'tr[data-alert="{aid}"] .state') or "")
               and "unacknowledged" not in text_of(p, f'tr[data-alert="{aid}"] .state'), 3,
               what="the row says acknowledged")


def test_alarm_shelved_from_the_page_and_exported(plant):
    p = plant
    open_view(p, "#/alarms")
    row = wait_until(lambda: css(p, '#alarm-table tbody tr'), 5, what="p-2's alarm")[0]
    aid = row.get_attribute("data-alert")
    Select(row.find_element(By.CSS_SELECTOR, "select.shelve-for")).select_by_value("1h")
    t0 = now_ms()
    row.find_element(By.CSS_SELECTOR, "button.shelve").click()

    def shelved():
        al = p.twind.get("/api/v1/alerts", params={"state": "shelved"}).json()["alerts"]
        return al or None
    al = wait_until(shelved, 5, what="the shelve in the REST API")[0]
    assert str(al["id"]) == aid
    assert t0 + 3_590_000 <= al["shelved_until_ts"] <= now_ms() + 3_600_000, al
    # shelved alarms leave the summary unless asked for
    wait_until(lambda: not css(p, f'tr[data-alert="{aid}"]'), 3, what="the shelved row hidden")
    p.driver.find_element(By.ID, "alarm-shelved").click()
    wait_until(lambda: css(p, f'tr[data-alert="{aid}"]'), 3, what="shelved rows shown")
    # p-1's cleared, unacknowledged alarm (150 earlier) is there too; the twin filter hides it
    assert len(css(p, "#alarm-table tbody tr")) == 2
    Select(p.driver.find_element(By.ID, "alarm-twin")).select_by_value("p-2")
    wait_until(lambda: len(css(p, "#alarm-table tbody tr")) == 1, 3, what="the filter on p-2")
    p.driver.find_element(By.ID, "alarm-csv").click()
    f = wait_until(lambda: [f for f in p.downloads.glob("alarms-*.csv")], 5,
                   what="the CSV download")[0]
    wait_until(lambda: f.stat().st_size > 0, 3, what="the CSV written")
    rows = list(csv.DictReader(io.StringIO(f.read_text())))
    assert [r["id"] for r in rows] == [aid], rows
    assert rows[0]["twin"] == "p-2" and rows[0]["state"] == "shelved" and rows[0]["severity"] == "critical"


def test_desired_set_on_the_page_reaches_mqtt(plant):
    p = plant
    sub = Subscriber(p.broker.port, ["plant/p-1/desired"])
    try:
        open_view(p, "#/twin/p-1")
        box = wait_until(lambda: css(p, "#set-speed"), 5, what="the speed editor")[0]
        box.send_keys("9000")
        css(p, 'tr[data-prop="speed"] button.set')[0].click()
        msg = wait_until(lambda: text_of(p, "#desired-msg") or None, 3, what="the refusal")
        assert msg.startswith("Refused for speed") and "3000" in msg, msg
        assert "bad" in css(p, "#desired-msg")[0].get_attribute("class")
        box = css(p, "#set-speed")[0]
        box.clear()
        box.send_keys("1200", Keys.ENTER)      # the keyboard alone does it
        m = sub.wait_for(lambda m: m.payload and json.loads(m.payload) == {"speed": 1200}, 5,
                         what="the desired speed on MQTT")
        assert m.retain in (0, 1)
        wait_until(lambda: text_of(p, 'tr[data-prop="speed"] .desired-value') == "1200", 3,
                   what="desired 1200 shown beside reported")
        assert "sent" in text_of(p, "#desired-msg")
        doc = p.twind.twin("p-1")
        assert doc["desired"]["speed"]["value"] == 1200 and doc["delta"] == {"speed": 1200}
    finally:
        sub.close()


def test_page_asks_no_other_host_and_logs_no_error(plant):
    p = plant
    open_view(p, "#/twin/p-1")
    wait_until(lambda: css(p, "#trend svg"), 5, what="the trend drawn")
    open_view(p, "#/alarms")
    urls = []
    for entry in p.driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert urls, "no requests seen"
    foreign = [u for u in urls if not (u.startswith(p.origin + "/") or u.startswith("blob:")
                                       or u.startswith("data:"))]
    assert not foreign, foreign
    # the refusals the tests provoked are logged as network errors; script errors are not allowed
    errors = [e for e in p.driver.get_log("browser")
              if e["level"] == "SEVERE" and e.get("source") != "network"]
    assert not errors, errors


def test_trend_draws_buckets_and_limits(plant):
    p = plant
    for v in (40, 45, 50, 55):
        publish(p, "p-1", temperature=v)
    open_view(p, "#/twin/p-1")
    Select(wait_until(lambda: css(p, "#trend-prop"), 5)[0]).select_by_value("temperature")
    Select(css(p, "#trend-range")[0]).select_by_value("900000")
    svg = wait_until(lambda: (lambda s: s if s and int(s[0].get_attribute("data-buckets")) > 0
                              else None)(css(p, "#trend svg")), 5, what="buckets drawn")[0]
    assert svg.find_elements(By.CSS_SELECTOR, "polyline.avg")
    assert svg.find_elements(By.CSS_SELECTOR, "polygon.band")
    # the model's maximum (100) is near the values (up to 150 earlier): drawn as a limit
    assert svg.find_elements(By.CSS_SELECTOR, 'line.limit[data-limit="maximum"]')


def test_trend_projects_the_forecast_to_the_limit(plant):
    """A ramp of 10 rpm/s ending at 2000 reaches the model's maximum of 3000
    in 100 s: the page draws twind's fitted line past "now", and the limit
    though the values are far below it (only because the line reaches it
    within the horizon), and says when, counted from now."""
    p = plant
    t0 = now_ms() - 40000
    for i in range(5):
        p.pub.publish("plant/p-3/telemetry", {"ts": t0 + i * 10000, "speed": 1600 + i * 100})
    wait_until(lambda: (p.twind.twin("p-3")["reported"].get("speed") or {}).get("value") == 2000,
               5, what="the ramp stored")
    fc = p.twind.get("/api/v1/twins/p-3/forecast",
                     params={"property": "speed", "window": "225s", "horizon": "225s"}).json()
    assert abs(fc["time_to_limit_s"] - 100) < 0.5, fc
    open_view(p, "#/twin/p-3")
    Select(wait_until(lambda: css(p, "#trend-prop"), 5)[0]).select_by_value("speed")
    Select(css(p, "#trend-range")[0]).select_by_value("900000")
    # the 15 min range's drawing (a quarter: 225 s), not the 1 h one drawn on opening
    g = wait_until(lambda: [e for e in css(p, "#trend svg g.forecast")
                            if e.get_attribute("data-horizon") == "225"], 5,
                   what="the 15 min forecast drawn")[0]
    assert abs(float(g.get_attribute("data-slope")) - 10) < 0.01
    assert abs(float(g.get_attribute("data-time-to-limit")) - 100) < 0.5
    line = g.find_element(By.CSS_SELECTOR, "line.forecast-line")
    # the projection runs right of "now", towards the limit (up on the screen)
    now = css(p, "#trend svg line.now")[0]
    assert float(line.get_attribute("x2")) > float(now.get_attribute("x1"))
    assert float(line.get_attribute("y2")) < float(line.get_attribute("y1"))
    assert g.find_elements(By.CSS_SELECTOR, "polygon.forecast-band")
    assert css(p, '#trend svg line.limit[data-limit="maximum"]')
    label = p.driver.execute_script(   # SVG text has no innerText
        "return document.querySelector('#trend svg text.forecast-label').textContent")
    # 100 s after the newest reading, which was a moment ago: counted from now
    assert label in ("max 3000 in 2 min", "max 3000 in 1 min") or \
        re.fullmatch(r"max 3000 in (\d+) s", label) and int(label.split()[3]) < 90, label
    assert label in css(p, "#trend")[0].get_attribute("aria-label")
    screenshot(p, "page-forecast.png")


def test_trend_says_why_it_has_no_forecast(plant):
    """A forecast twind refuses (a 413 for a window of more than 2 million
    points, played here by the page's fetch) is said on the trend, not drawn."""
    p = plant
    publish(p, "p-3", temperature=41, speed=1000)
    open_view(p, "#/twin/p-3")
    Select(wait_until(lambda: css(p, "#trend-prop"), 5)[0]).select_by_value("speed")
    Select(css(p, "#trend-range")[0]).select_by_value("900000")
    wait_until(lambda: css(p, "#trend svg"), 5, what="the trend drawn")
    p.driver.execute_script("window.__fetch = window.fetch; window.fetch = (u, i) => "
                            "String(u).includes('/forecast') ? Promise.resolve(new Response("
                            "JSON.stringify({error: {code: 'too_large', message: 'window too "
                            "large'}}), {status: 413})) : window.__fetch(u, i);")
    try:
        Select(css(p, "#trend-range")[0]).select_by_value("3600000")
        wait_until(lambda: "no forecast: window too large" in
                   css(p, "#trend")[0].get_attribute("aria-label"), 5, what="the refusal said")
        assert not css(p, "#trend svg g.forecast")
        assert css(p, "#trend svg polyline.avg")
    finally:
        p.driver.execute_script("window.fetch = window.__fetch;")


def test_only_the_newest_trend_answer_is_drawn(plant):
    """A slow answer for the property chosen first must not replace the
    drawing of the one chosen after it."""
    p = plant
    publish(p, "p-3", temperature=42, speed=1100)
    open_view(p, "#/twin/p-3")
    wait_until(lambda: {"temperature", "speed"} <= set(attrs(p, "#trend-prop option", "value")),
               5, what="both properties offered")
    p.driver.execute_script("window.__fetch = window.fetch; window.fetch = (u, i) => "
                            "String(u).includes('property=temperature') ? new Promise((r) => "
                            "setTimeout(() => r(window.__fetch(u, i)), 1500)) : "
                            "window.__fetch(u, i);")
    try:
        sel = Select(css(p, "#trend-prop")[0])
        sel.select_by_value("temperature")
        sel.select_by_value("speed")
        time.sleep(2.5)
        assert css(p, "#trend")[0].get_attribute("aria-label").startswith("trend of speed:")
    finally:
        p.driver.execute_script("window.fetch = window.__fetch;")


def test_phone_width_has_no_sideways_scroll(plant):
    p = plant
    p.driver.set_window_size(390, 844)
    try:
        for view in ("#/alarms", "#/twin/p-1"):
            open_view(p, view)
            time.sleep(0.3)
            wide = p.driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 1, (view, wide)
        screenshot(p, "page-phone.png")
    finally:
        p.driver.set_window_size(1366, 768)


def test_csv_export_defuses_formulas(plant):
    """csv() of the page itself, run in the browser: what a hostile publisher
    puts in a message or a string value cannot run in a spreadsheet."""
    p = plant
    open_view(p, "#/alarms")
    rows = p.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/ui/alarms.js').then((m) => done(m.csv([
          {id: 1, twin: "t", rule: "r", severity: "major", active: true, acknowledged: false,
           shelved_until_ts: null, message: "=HYPERLINK(\\"http://evil/\\",\\"x\\")",
           value: "-1+cmd|' /C calc'!A0", raised_ts: 0, acked_ts: null, cleared_ts: null},
          {id: 2, twin: "t", rule: "@SUM(1)", severity: "info", active: true, acknowledged: true,
           shelved_until_ts: null, message: "+1", value: -12.5, raised_ts: 0, acked_ts: null,
           cleared_ts: null},
          {id: 3, twin: "t", rule: "r", severity: "info", active: true, acknowledged: true,
           shelved_until_ts: null, message: "\\tx", value: {"a": 1}, raised_ts: 0,
           acked_ts: null, cleared_ts: null}])), (e) => done("error: " + e));
    """)
    assert not rows.startswith("error"), rows
    parsed = list(csv.DictReader(io.StringIO(rows)))
    assert parsed[0]["message"].startswith("'=") and parsed[0]["value"].startswith("'-1+"), parsed
    assert parsed[1]["rule"] == "'@SUM(1)" and parsed[1]["message"] == "'+1", parsed
    assert parsed[1]["value"] == "-12.5", parsed            # a plain number stays a number
    assert parsed[2]["message"] == "'\tx" and parsed[2]["value"] == '{"a":1}', parsed


def test_bad_address_does_not_stop_the_page(plant):
    p = plant
    for frag in ("#/twin/%E0", "#/alarms?twin=%"):
        p.driver.get(p.origin + "/" + frag)
        wait_until(lambda: p.driver.find_element(By.ID, "link").text == "live", 10,
                   what=f"the page live after {frag}")
    publish(p, "p-1", temperature=47.5)
    p.driver.get(p.origin + "/#/twin/p-1")
    wait_until(lambda: text_of(p, 'tr[data-prop="temperature"] .value') == "47.50", 5,
               what="the page still works")


HOSTILE = """<!doctype html><title>evil</title>
<iframe name="sink" hidden></iframe>
<form id="f" method="POST" action="{T}/api/v1/twins/p-1/commands" enctype="text/plain" target="sink">
<input name='{{"command":"stop","x":"' value='"}}'></form>
<script>
const T = "{T}";
for (let i = 0; i < 24; i++) fetch(T + "/api/v1/events", {{mode: "no-cors"}}).catch(() => {{}});
const es = new EventSource(T + "/api/v1/events");
fetch(T + "/api/v1/twins/p-1/commands", {{method: "POST", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}}, body: '{{"command":"stop"}}'}}).catch(() => {{}});
fetch(T + "/api/v1/twins/p-1/desired", {{method: "PATCH", mode: "cors",
  headers: {{"Content-Type": "application/json"}}, body: '{{"speed":1}}'}}).catch(() => {{}});
navigator.sendBeacon(T + "/api/v1/alerts/1/ack", new Blob(["{{}}"], {{type: "text/plain"}}));
for (let i = 0; i < 8; i++) {{ const im = new Image(); im.src = T + "/api/v1/twins?i=" + i; }}
document.getElementById("f").submit();
setTimeout(() => {{ document.title = "done"; }}, 1500);
</script>"""


def test_another_page_in_the_browser_can_do_nothing(plant, tmp_path):
    """A real page on another port of 127.0.0.1 (same-site, not same-origin)
    tries all that a browser lets it: no command, no desired change, no
    acknowledgement, no held connection; the operator's page still works."""
    import http.server
    import threading
    p = plant
    site = tmp_path / "evil"
    site.mkdir()
    (site / "index.html").write_text(HOSTILE.format(T=p.origin))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(site), **kw)

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        # twind's own page is closed first; its stream is noticed gone at the next event
        p.driver.get("about:blank")
        publish(p, "p-3", temperature=40)
        wait_until(lambda: p.twind.metric("twind_event_clients") == 0, 5,
                   what="no event client before the hostile page")
        cmds0 = len(p.twind.get("/api/v1/commands").json()["commands"])
        desired0 = p.twind.twin("p-1")["desired"]
        refused0 = p.twind.metric("twind_http_refused_total")
        p.driver.get(f"http://127.0.0.1:{srv.server_address[1]}/")
        wait_until(lambda: p.driver.title == "done", 10, what="the hostile page ran")
        # every one of its requests was refused at the headers
        wait_until(lambda: p.twind.metric("twind_http_refused_total") >= refused0 + 30, 5,
                   what="its requests refused")
        assert p.twind.metric("twind_event_clients") == 0
        assert len(p.twind.get("/api/v1/commands").json()["commands"]) == cmds0
        assert p.twind.twin("p-1")["desired"] == desired0
        # while it is still open, twind answers at once
        t0 = time.monotonic()
        assert p.twind.get("/healthz", timeout=2).status_code == 200
        assert time.monotonic() - t0 < 1.0
    finally:
        srv.shutdown()
        srv.server_close()
    open_view(p, "#/alarms")


def focused_twin(p):
    """[data-twin of the focused element], or None while the tree is being drawn again."""
    try:
        return [p.driver.switch_to.active_element.get_attribute("data-twin")]
    except StaleElementReferenceException:
        return None


def test_keyboard_alone_opens_a_twin(plant):
    p = plant
    open_view(p, "#/alarms")
    wait_until(lambda: css(p, '#tree li[data-twin="p-1"]'), 10, what="the tree drawn")
    # to whatever has the focus (the body at first), as a keyboard would
    ActionChains(p.driver).send_keys(Keys.TAB).perform()           # brand
    # Keys go to whatever has the focus, as a keyboard's do: the tree is drawn
    # again now and then (the page gives the focus to the new link), so an
    # element found a moment ago may be gone (a CI failure: "not interactable").
    seen = []
    for _ in range(12):
        twin = wait_until(lambda: focused_twin(p), 2, what="the focused element")[0]
        seen.append(twin)
        if twin == "p-1":
            ActionChains(p.driver).send_keys(Keys.ENTER).perform()
            break
        ActionChains(p.driver).send_keys(Keys.TAB).perform()
    else:
        raise AssertionError(f"p-1 not reached by Tab: {seen}")
    wait_until(lambda: p.driver.current_url.endswith("#/twin/p-1") and
               text_of(p, "#twin-id") == "p-1", 5, what="p-1 opened by Enter")


def test_stale_version_is_told_in_words(plant):
    """412: the page's If-Match is the version it shows. With its event stream
    held back (Chromium's Fetch domain pauses it), a change made elsewhere is
    not shown, so setting a value is refused and the page says why in words."""
    p = plant
    p.driver.get("about:blank")      # a fresh page: its stream starts under the Fetch rule
    p.driver.execute_cdp_cmd("Fetch.enable", {"patterns": [{"urlPattern": "*/api/v1/events*"}]})
    try:
        p.driver.get(p.origin + "/#/twin/p-1")
        box = wait_until(lambda: css(p, "#set-speed"), 5, what="the speed editor")[0]
        # someone else changes p-1's desired state meanwhile
        r = p.twind.request("PATCH", "/api/v1/twins/p-1/desired", json={"speed": 800})
        assert r.status_code == 200, r.text
        box.send_keys("900", Keys.ENTER)
        msg = wait_until(lambda: (lambda t: t if t and t.startswith("Not written") else None)(
            text_of(p, "#desired-msg")), 5, what=f"the 412 in words (now: {text_of(p, '#desired-msg')!r}, "
            f"desired {p.twind.twin('p-1')['desired'].get('speed')})")
        assert "changed since this page showed it" in msg, msg
        # the page read the twin again: the other change is shown, nothing was overwritten
        wait_until(lambda: text_of(p, 'tr[data-prop="speed"] .desired-value') == "800", 5,
                   what="the other change shown")
        assert p.twind.twin("p-1")["desired"]["speed"]["value"] == 800
    finally:
        p.driver.execute_cdp_cmd("Fetch.disable", {})
