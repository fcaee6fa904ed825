"""Models (DTDL v3 + twind's extension) and the twins file: --check, validation
of telemetry against the model, the twin document with its hierarchy, the
models endpoint, and SIGHUP reloads.

The functional tests share one broker + twind (models and twins file from
conftest: Pump, Line, Loose); each test uses its own twins."""

import json
import subprocess

import pytest

from conftest import (CTX, LINE_ID, LOOSE_ID, PUMP_ID, TWIND_BIN, Twind, free_port,
                      line_model, metric_value, now_ms, plant_extra, pump_model,
                      shared_plant, wait_until, write_plant)

ANY_ID = "dtmi:twind:Any;1"


# --------------------------------------------------------------------------
# twind -c CONF --check

def run_check(conf, cwd, check=True):
    args = [str(TWIND_BIN), "-c", str(conf)] + (["--check"] if check else [])
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL)


def check_conf(tmp_path, models=None, twins=None):
    """A config naming a models folder and a twins file (written here)."""
    mdir, tfile = write_plant(tmp_path, models, twins)
    conf = tmp_path / "twind.conf"
    conf.write_text(
        f"[mqtt]\nhost = 127.0.0.1\nport = {free_port()}\nclient_id = twind-check\n"
        f"desired_topic = plant/{{twin}}/desired\nalert_topic = plant/{{twin}}/alert\n"
        f"[http]\nlisten = 127.0.0.1:{free_port()}\nmax_event_clients = 4\n"
        f"event_buffer = 4096\n"
        f"[storage]\ndatabase = {tmp_path}/twind.db\n"
        f"[twins]\nmodels = {mdir}\nfile = {tfile}\nstale_factor = 2\noffline_factor = 4\n"
        f"converge_timeout = 3s\n")
    return conf


GOOD_TWINS = [
    {"id": "line-1", "model": LINE_ID},
    {"id": "pump-1", "model": PUMP_ID, "parent": "line-1"},
    {"id": "pump-1.motor", "model": LOOSE_ID, "parent": "pump-1"},
    {"id": "free", "parent": None},
]


def test_check_ok_counts_models_and_twins(tmp_path):
    conf = check_conf(tmp_path, twins=GOOD_TWINS)
    r = run_check(conf, tmp_path)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert f"{conf}: ok (3 models, 4 twins in the twins file, 0 rules, 0 tokens)" in r.stdout, (r.stdout, r.stderr)


def test_check_model_json_syntax_error(tmp_path):
    models = {"pump.json": pump_model(), "line.json": line_model(),
              "broken.json": ('{\n'
                              '  "@context": ["dtmi:dtdl:context;3", "dtmi:twind:context;1"],\n'
                              '  "@id": "dtmi:test:Broken;1"\n'
                              '  "@type": "Interface",\n'
                              '  "contents": []\n'
                              '}\n')}
    conf = check_conf(tmp_path, models=models, twins=[])
    r = run_check(conf, tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    # the comma is missing at the end of line 3: the parser stops at the
    # next token, line 4 column 3
    lines = [ln for ln in r.stderr.splitlines() if "broken.json:" in ln]
    assert lines, r.stderr
    assert any(ln.endswith("broken.json:4:3: JSON syntax error") for ln in lines), r.stderr
    assert "ok (" not in r.stdout


def _model(model_id, contents, ctx=None, **kw):
    return {"@context": ctx or CTX, "@id": model_id, "@type": "Interface",
            "contents": contents, **kw}


OBJECT_SCHEMA = _model("dtmi:test:Bad;1", [
    {"@type": "Telemetry", "name": "temperature", "schema": "double"},
    {"@type": "Property", "name": "speed", "writable": True,
     "schema": {"@type": "Object", "fields": [{"name": "rpm", "schema": "double"}]}},
])
MISSING_EXTENDS = _model("dtmi:test:Bad;1", [
    {"@type": "Telemetry", "name": "temperature", "schema": "double"},
], extends="dtmi:test:Nowhere;1")
MIN_ABOVE_MAX = _model("dtmi:test:Bad;1", [
    {"@type": "Telemetry", "name": "temperature", "schema": "double"},
    {"@type": "Property", "name": "speed", "schema": "double", "writable": True,
     "minimum": 3000, "maximum": 10},
])
EXTENSION_WITHOUT_CONTEXT = _model("dtmi:test:Bad;1", [
    {"@type": "Telemetry", "name": "temperature", "schema": "double"},
    {"@type": "Telemetry", "name": "pressure", "schema": "double", "minimum": 0,
     "maximum": 10, "period": "1s"},
], ctx="dtmi:dtdl:context;3")


@pytest.mark.parametrize("model,needles", [
    pytest.param(OBJECT_SCHEMA, ["contents[1] (speed)"], id="object-schema"),
    pytest.param(MISSING_EXTENDS, ["dtmi:test:Nowhere;1"], id="missing-extends"),
    pytest.param(MIN_ABOVE_MAX, ["contents[1] (speed)"], id="minimum-above-maximum"),
    pytest.param(EXTENSION_WITHOUT_CONTEXT, ["contents[1] (pressure)"],
                 id="extension-without-context"),
])
def test_check_model_content_errors(tmp_path, model, needles):
    models = {"pump.json": pump_model(), "line.json": line_model(), "bad.json": model}
    conf = check_conf(tmp_path, models=models, twins=[])
    r = run_check(conf, tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    # one line names the file, the @id and the element
    hits = [ln for ln in r.stderr.splitlines()
            if "bad.json" in ln and "dtmi:test:Bad;1" in ln and all(n in ln for n in needles)]
    assert hits, r.stderr
    # the good models are not blamed
    assert "pump.json" not in r.stderr and "line.json" not in r.stderr, r.stderr
    # and twind does not start with it either
    r = run_check(conf, tmp_path, check=False)
    assert r.returncode == 2, (r.returncode, r.stderr)


@pytest.mark.parametrize("twins,needles", [
    pytest.param([{"id": "a", "model": "dtmi:test:NoSuch;1"}], ["a", "dtmi:test:NoSuch;1"],
                 id="unknown-model"),
    pytest.param([{"id": "a", "model": PUMP_ID, "parent": "ghost"}], ["a", "ghost"],
                 id="parent-not-in-file"),
    pytest.param([{"id": "a", "parent": "b"}, {"id": "b", "parent": "c"},
                  {"id": "c", "parent": "a"}], ["cycle"], id="parent-cycle"),
    pytest.param([{"id": "a", "model": PUMP_ID}, {"id": "b"}, {"id": "a", "model": LINE_ID}],
                 ["a"], id="duplicate-id"),
])
def test_check_twins_file_errors(tmp_path, twins, needles):
    conf = check_conf(tmp_path, twins=twins)
    r = run_check(conf, tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    hits = [ln for ln in r.stderr.splitlines()
            if "twins.json" in ln and all(n in ln for n in needles)]
    assert hits, r.stderr


# --------------------------------------------------------------------------
# one twind with models for the functional tests

WRONG = [
    # (id, reason, topic suffix, payload)
    ("unknown-prop", "unknown_property", "", {"temperature": 55, "bogus": 1}),
    ("unknown-prop-value-topic", "unknown_property", "/bogus", b"1"),
    ("string-for-double", "wrong_type", "", {"temperature": "hot"}),
    ("bool-for-double", "wrong_type", "", {"temperature": True}),
    ("fraction-for-integer", "wrong_type", "", {"count": 1.5}),
    ("number-for-string", "wrong_type", "", {"mode": 5}),
    ("string-on-value-topic", "wrong_type", "/temperature", b'"hot"'),
    ("one-bad-of-two", "wrong_type", "", {"count": 7, "temperature": "x"}),
]

TWINS = (
    [{"id": "m-line", "model": LINE_ID},
     {"id": "m-pump", "model": PUMP_ID, "parent": "m-line"},
     {"id": "m-pump.motor", "model": LOOSE_ID, "parent": "m-pump"},
     {"id": "m-pump2", "model": PUMP_ID, "parent": "m-line"},
     {"id": "v-range", "model": PUMP_ID},
     {"id": "v-loose", "model": LOOSE_ID},
     {"id": "v-any"}]
    + [{"id": f"w-{case[0]}", "model": PUMP_ID} for case in WRONG]
)


@pytest.fixture(scope="module")
def plant(request, tmp_path_factory):
    with shared_plant(request, tmp_path_factory, TWINS) as s:
        yield s


def dropped(metrics):
    return {k: v for k, v in metrics.items() if k.startswith("twind_messages_dropped_total")}


@pytest.mark.parametrize("reason,suffix,payload",
                         [pytest.param(r, s, p, id=i) for i, r, s, p in WRONG])
def test_message_against_model_dropped(plant, reason, suffix, payload, request):
    tw, pub = plant.twind, plant.pub
    twin = "w-" + request.node.callspec.id
    T = now_ms() - 60_000
    pub.publish(f"plant/{twin}/telemetry", {"temperature": 20, "count": 1, "mode": "a", "ts": T})
    before = tw.wait_version(twin, 1)
    m0 = tw.metrics()

    pub.publish(f"plant/{twin}/telemetry{suffix}", payload)
    pub.publish(f"plant/{twin}/telemetry", {"temperature": 21, "ts": T + 1000})
    doc = tw.wait_version(twin, 2)

    want = metric_value(m0, "twind_messages_dropped_total", reason=reason) + 1
    wait_until(lambda: tw.metric("twind_messages_dropped_total", reason=reason) >= want, 5,
               what=f"dropped{{reason={reason}}} == {want}")
    m1 = tw.metrics()
    d0, d1 = dropped(m0), dropped(m1)
    changed = {k: (d0.get(k, 0.0), v) for k, v in d1.items() if v != d0.get(k, 0.0)}
    assert metric_value(m1, "twind_messages_dropped_total", reason=reason) == want, changed
    assert len(changed) == 1, changed

    # the whole message was dropped: only the good one after it counts
    assert doc["version"] == 2, doc
    rep = doc["reported"]
    assert set(rep) == {"temperature", "count", "mode"}, rep
    assert rep["temperature"]["value"] == 21 and rep["temperature"]["ts"] == T + 1000
    assert rep["count"] == before["reported"]["count"]
    assert rep["mode"] == before["reported"]["mode"]
    assert [p["value"] for p in tw.history(twin, "temperature", **{"from": T - 1})] == [20, 21]
    assert [p["value"] for p in tw.history(twin, "count", **{"from": T - 1})] == [1]


def test_out_of_range_is_stored_and_flagged(plant):
    tw, pub = plant.twind, plant.pub
    twin = "v-range"
    T = now_ms() - 60_000
    m0 = tw.metric("twind_values_out_of_range_total")

    pub.publish(f"plant/{twin}/telemetry", {"temperature": 150.5, "ts": T})
    doc = tw.wait_version(twin, 1)
    t = doc["reported"]["temperature"]
    assert t["value"] == 150.5 and t["ts"] == T and t["out_of_range"] is True, t
    assert t.get("unit") == "degreeCelsius", t
    wait_until(lambda: tw.metric("twind_values_out_of_range_total") == m0 + 1, 5,
               what="out_of_range counter +1")

    pub.publish(f"plant/{twin}/telemetry", {"temperature": -0.5, "speed": 3000.5, "ts": T + 1000})
    doc = tw.wait_version(twin, 2)
    assert doc["reported"]["temperature"]["out_of_range"] is True
    assert doc["reported"]["speed"]["value"] == 3000.5
    assert doc["reported"]["speed"]["out_of_range"] is True
    wait_until(lambda: tw.metric("twind_values_out_of_range_total") == m0 + 3, 5,
               what="out_of_range counter +3")

    # the limits themselves are in range
    pub.publish(f"plant/{twin}/telemetry", {"temperature": 100, "speed": 0, "ts": T + 2000})
    doc = tw.wait_version(twin, 3)
    assert doc["reported"]["temperature"]["out_of_range"] is False
    assert doc["reported"]["speed"]["out_of_range"] is False
    pub.publish(f"plant/{twin}/telemetry", {"temperature": 0, "ts": T + 3000})
    doc = tw.wait_version(twin, 4)
    assert doc["reported"]["temperature"]["out_of_range"] is False
    assert tw.metric("twind_values_out_of_range_total") == m0 + 3
    h = tw.history(twin, "temperature", **{"from": T - 1})
    assert [p["value"] for p in h] == [150.5, -0.5, 100, 0]


def test_loose_model_and_no_model(plant):
    tw, pub = plant.twind, plant.pub
    T = now_ms() - 60_000
    # not strict: unknown properties are accepted, known ones still checked
    pub.publish("plant/v-loose/telemetry", {"temperature": 20, "extra": "x", "ts": T})
    doc = tw.wait_version("v-loose", 1)
    assert doc["model"] == LOOSE_ID
    assert set(doc["reported"]) == {"temperature", "extra"}
    w0 = tw.metric("twind_messages_dropped_total", reason="wrong_type")
    pub.publish("plant/v-loose/telemetry", {"temperature": "hot", "ts": T + 1000})
    pub.publish("plant/v-loose/telemetry", {"temperature": 120, "ts": T + 2000})
    doc = tw.wait_version("v-loose", 2)
    assert doc["reported"]["temperature"]["value"] == 120
    assert doc["reported"]["temperature"]["out_of_range"] is True
    wait_until(lambda: tw.metric("twind_messages_dropped_total", reason="wrong_type") == w0 + 1,
               5, what="wrong_type +1 on the loose model")

    # listed without a model, and created by telemetry: the Any model
    for twin in ("v-any", "v-auto"):
        pub.publish(f"plant/{twin}/telemetry",
                    {"temperature": "hot", "count": 1.5, "mode": 5, "whatever": True, "ts": T})
        doc = tw.wait_version(twin, 1)
        assert doc["model"] == ANY_ID, doc
        assert doc["reported"]["temperature"]["value"] == "hot"
        assert doc["reported"]["count"]["value"] == 1.5
        assert set(doc["reported"]) == {"temperature", "count", "mode", "whatever"}
        assert all(p["out_of_range"] is False for p in doc["reported"].values())


def test_models_endpoint(plant):
    r = plant.twind.get("/api/v1/models")
    assert r.status_code == 200, r.text
    models = {m["id"]: m for m in r.json()["models"]}
    assert set(models) == {PUMP_ID, LINE_ID, LOOSE_ID}, list(models)
    pump = models[PUMP_ID]
    assert pump["file"].endswith("pump.json"), pump["file"]
    assert pump["strict"] is True and models[LOOSE_ID]["strict"] is False
    props = {p["name"]: p for p in pump["properties"]}
    assert set(props) == {"pressure", "temperature", "speed", "mode", "count", "serial"}
    t = props["temperature"]
    assert t["kind"] == "Telemetry" and t["writable"] is False
    assert t["schema"] in ("double", "number"), t
    assert t["unit"] == "degreeCelsius" and t["minimum"] == 0 and t["maximum"] == 100
    assert t["period_ms"] == 1000
    assert props["pressure"]["period_ms"] == 10_000
    s = props["speed"]
    assert s["kind"] == "Property" and s["writable"] is True
    assert s["minimum"] == 0 and s["maximum"] == 3000 and s["tolerance"] == 5
    assert props["mode"]["schema"] == "string" and props["mode"]["writable"] is True
    assert props["count"]["schema"] == "integer"
    assert props["serial"]["kind"] == "Property" and props["serial"]["writable"] is False
    cmds = [c if isinstance(c, str) else c.get("name") for c in pump["commands"]]
    assert cmds == ["stop"], pump["commands"]
    assert pump["relationships"] == [{"name": "motor", "target": LINE_ID}], \
        pump["relationships"]
    assert models[LINE_ID]["commands"] == [] and models[LINE_ID]["relationships"] == []


def test_twin_document_hierarchy_and_rollup(plant):
    tw, pub = plant.twind, plant.pub
    # before any telemetry: the twins of the file exist, never seen
    line = tw.twin("m-line")
    assert line is not None
    for key in ("id", "model", "parent", "status", "last_seen_ts", "version", "active_alerts",
                "children", "rollup", "reported", "desired", "delta", "alerts"):
        assert key in line, (key, line)
    assert line["model"] == LINE_ID and line["parent"] is None
    assert line["status"] == "offline" and line["last_seen_ts"] is None
    assert line["version"] == 0 and line["active_alerts"] == 0
    assert line["children"] == ["m-pump", "m-pump2"]
    assert line["rollup"] == {"status": "offline", "active_alerts": 0, "twins": 3}
    assert line["reported"] == {} and line["desired"] == {} and line["delta"] == {}
    assert line["alerts"] == []
    motor = tw.twin("m-pump.motor")
    assert motor["model"] == LOOSE_ID and motor["parent"] == "m-pump"
    assert motor["children"] == [] and "rollup" not in motor, motor

    # everything below the line reports: the roll-up is online, although the
    # line itself (not counted in its own roll-up) was never seen
    T = now_ms()
    for twin in ("m-pump", "m-pump2"):
        pub.publish(f"plant/{twin}/telemetry", {"temperature": 50, "ts": T})
    pub.publish("plant/m-pump.motor/telemetry", {"temperature": 40, "ts": T})
    for twin in ("m-pump", "m-pump2", "m-pump.motor"):
        tw.wait_version(twin, 1)
    line = tw.twin("m-line")
    assert line["status"] == "offline"
    assert line["rollup"] == {"status": "online", "active_alerts": 0, "twins": 3}, line
    pump = tw.twin("m-pump")
    assert pump["status"] == "online" and pump["children"] == ["m-pump.motor"]
    assert pump["rollup"] == {"status": "online", "active_alerts": 0, "twins": 1}
    assert pump["reported"]["temperature"]["unit"] == "degreeCelsius"
    assert pump["reported"]["temperature"]["stale"] is False

    # ?depth: child documents instead of ids
    r = tw.get("/api/v1/twins/m-line", params={"depth": 1})
    assert r.status_code == 200, r.text
    d1 = r.json()
    assert [c["id"] for c in d1["children"]] == ["m-pump", "m-pump2"]
    c0 = d1["children"][0]
    assert c0["model"] == PUMP_ID and c0["parent"] == "m-line"
    assert c0["children"] == ["m-pump.motor"]
    assert c0["reported"]["temperature"]["value"] == 50
    d2 = tw.get("/api/v1/twins/m-line", params={"depth": 2}).json()
    grand = d2["children"][0]["children"]
    assert len(grand) == 1 and isinstance(grand[0], dict), grand
    assert grand[0]["id"] == "m-pump.motor" and grand[0]["children"] == []
    assert d2["children"][1]["children"] == []

    # the list and its filters
    def ids(**params):
        r = tw.get("/api/v1/twins", params=params)
        assert r.status_code == 200, r.text
        return [t["id"] for t in r.json()["twins"]]
    assert ids(parent="m-line") == ["m-pump", "m-pump2"]
    assert ids(parent="m-pump") == ["m-pump.motor"]
    assert ids(model=LOOSE_ID) == ["m-pump.motor", "v-loose"]
    assert "v-any" in ids(model=ANY_ID) and "m-pump" not in ids(model=ANY_ID)
    assert ids(parent="m-line", model=PUMP_ID, status="online") == ["m-pump", "m-pump2"]
    assert "m-line" in ids(status="offline") and "m-line" not in ids(status="online")
    entry = [t for t in tw.get("/api/v1/twins").json()["twins"] if t["id"] == "m-pump"][0]
    for key in ("id", "model", "parent", "status", "last_seen_ts", "version", "active_alerts"):
        assert key in entry, (key, entry)
    assert tw.get("/api/v1/twins", params={"status": "sleepy"}).status_code == 400


# --------------------------------------------------------------------------
# SIGHUP

def start_twind(tmp_path, broker, stack, models, twins):
    mdir, tfile = write_plant(tmp_path / "conf", models, twins)
    tw = Twind(tmp_path / "twind", broker, plant_extra(mdir, tfile))
    stack.twinds.append(tw)
    tw.start()
    return tw, mdir, tfile


def test_sighup_adds_twin_and_applies_changed_model(tmp_path, broker, stack, make_publisher):
    twins = [{"id": "h-line", "model": LINE_ID},
             {"id": "h-pump", "model": PUMP_ID, "parent": "h-line"}]
    tw, mdir, tfile = start_twind(tmp_path, broker, stack, None, twins)
    pub = make_publisher()
    T = now_ms() - 10_000
    pub.publish("plant/h-pump/telemetry", {"temperature": 150, "ts": T})
    assert tw.wait_version("h-pump", 1)["reported"]["temperature"]["out_of_range"] is True
    assert tw.twin("h-new") is None

    # a new twin, and a pump model with a wider range
    tfile.write_text(json.dumps(twins + [{"id": "h-new", "model": PUMP_ID,
                                          "parent": "h-line"}]))
    (mdir / "pump.json").write_text(json.dumps(pump_model(temp_max=200)))
    tw.hup()
    doc = wait_until(lambda: tw.twin("h-new"), 10, what="h-new after SIGHUP")
    assert doc["model"] == PUMP_ID and doc["parent"] == "h-line", doc
    assert doc["version"] == 0 and doc["status"] == "offline"
    assert tw.twin("h-line")["children"] == ["h-new", "h-pump"]
    wait_until(lambda: {p["name"]: p for m in tw.get("/api/v1/models").json()["models"]
                        if m["id"] == PUMP_ID for p in m["properties"]}
               ["temperature"]["maximum"] == 200, 5, what="the reloaded pump model")

    # the running twins use the new model, the new twin too
    pub.publish("plant/h-pump/telemetry", {"temperature": 150, "ts": T + 1000})
    doc = tw.wait_version("h-pump", 2)
    assert doc["reported"]["temperature"]["out_of_range"] is False, doc["reported"]
    u0 = tw.metric("twind_messages_dropped_total", reason="unknown_property")
    pub.publish("plant/h-new/telemetry", {"bogus": 1, "ts": T})
    pub.publish("plant/h-new/telemetry", {"temperature": 180, "ts": T})
    doc = tw.wait_version("h-new", 1)
    assert set(doc["reported"]) == {"temperature"}
    assert doc["reported"]["temperature"]["out_of_range"] is False
    assert tw.metric("twind_messages_dropped_total", reason="unknown_property") == u0 + 1
    assert tw.running()


@pytest.mark.parametrize("broken", [
    pytest.param('{"@context": ["dtmi:dtdl:context;3", "dtmi:twind:context;1"],\n'
                 '"@id": "dtmi:test:Pump;1", "@type": "Interface", "contents": [\n',
                 id="json-syntax"),
    pytest.param(json.dumps(_model(PUMP_ID, [
        {"@type": "Telemetry", "name": "temperature", "schema": "double",
         "minimum": 100, "maximum": 0}])), id="minimum-above-maximum"),
])
def test_sighup_broken_model_is_refused(tmp_path, broker, stack, make_publisher, broken):
    twins = [{"id": "b-pump", "model": PUMP_ID}]
    tw, mdir, tfile = start_twind(tmp_path, broker, stack, None, twins)
    pub = make_publisher()
    T = now_ms() - 10_000
    pub.publish("plant/b-pump/telemetry", {"temperature": 20, "ts": T})
    tw.wait_version("b-pump", 1)
    models_before = tw.get("/api/v1/models").json()

    good_pump = (mdir / "pump.json").read_text()
    (mdir / "pump.json").write_text(broken)
    tfile.write_text(json.dumps(twins + [{"id": "b-new", "model": PUMP_ID}]))
    log_len = len(tw.log())
    tw.hup()
    wait_until(lambda: "pump.json" in tw.log()[log_len:] and "SIGHUP" in tw.log()[log_len:],
               10, what="the refused reload in the log")
    assert "reloaded" not in tw.log()[log_len:], tw.log()[log_len:]
    assert tw.running()
    assert tw.get("/api/v1/models").json() == models_before
    assert tw.twin("b-new") is None, "a refused reload must not apply the twins file either"

    # still ingesting, with the running (strict) model
    u0 = tw.metric("twind_messages_dropped_total", reason="unknown_property")
    pub.publish("plant/b-pump/telemetry", {"bogus": 1, "ts": T + 500})
    pub.publish("plant/b-pump/telemetry", {"temperature": 150, "ts": T + 1000})
    doc = tw.wait_version("b-pump", 2)
    assert doc["reported"]["temperature"]["out_of_range"] is True
    assert set(doc["reported"]) == {"temperature"}
    assert tw.metric("twind_messages_dropped_total", reason="unknown_property") == u0 + 1

    # once repaired, the next SIGHUP applies everything
    (mdir / "pump.json").write_text(good_pump)
    tw.hup()
    doc = wait_until(lambda: tw.twin("b-new"), 10, what="b-new after the repaired SIGHUP")
    assert doc["model"] == PUMP_ID
