"""What a web page open in a browser on the gateway can do to twind, tried
with real curl and real HTTP: no-preflight form posts, pages on other sites,
DNS rebinding, a ten-year shelve, a command to a twin nobody modelled. Each
is refused with a clear error and changes nothing; twind's own page and a
script still work."""

import json
import shutil
import socket
import subprocess

from conftest import PUMP_ID, REPO, now_ms, twind_check, plant_extra, wait_until, write_plant

RULES = [
    {"name": "hot", "match": {"twins": "p-*"}, "when": "temperature > 90",
     "clear": "temperature < 80", "severity": "major"},
    {"name": "free_cmd", "match": {"twins": "free-*"}, "when": "temperature > 90",
     "actions": [{"command": "purge"}]},
]


def start(tmp_path, make_twind, **sections):
    mdir, tfile = write_plant(tmp_path / "plant", None,
                              [{"id": "p-1", "model": PUMP_ID}])
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    extra = plant_extra(mdir, tfile)
    extra["rules"] = {"file": str(rules)}
    for sec, kv in sections.items():
        extra.setdefault(sec, {}).update(kv)
    return make_twind(extra=extra)


def curl(tw, method, path, body=None, headers=()):
    """Real curl, as a browser's request would look on the wire: status and body."""
    args = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, tw.url(path)]
    for h in headers:
        args += ["-H", h]
    if body is not None:
        args += ["--data-binary", body]
    r = subprocess.run(args, capture_output=True, text=True, timeout=10, check=True)
    text, _, code = r.stdout.rpartition("\n")
    return int(code), (json.loads(text) if text.startswith("{") else text)


def commands(tw):
    r = tw.get("/api/v1/commands")
    assert r.status_code == 200, r.text
    return r.json()["commands"]


def alerts(tw, **params):
    r = tw.get("/api/v1/alerts", params=params)
    assert r.status_code == 200, r.text
    return r.json()["alerts"]


def rule_stats(tw, name):
    return {x["name"]: x for x in tw.get("/api/v1/rules").json()["rules"]}[name]["stats"]


def raise_alert(tw, pub, twin="p-1"):
    pub.publish(f"plant/{twin}/telemetry", {"ts": now_ms(), "temperature": 95})

    def active():
        al = alerts(tw, twin=twin, state="active")
        return al[0] if al else None
    return wait_until(active, 10, what="the alert raised")


def test_form_post_cannot_command_a_machine(tmp_path, make_twind, publisher):
    """A <form enctype=text/plain> posts without a preflight: refused, nothing stored."""
    tw = start(tmp_path, make_twind)
    publisher.publish("plant/p-1/telemetry", {"ts": now_ms(), "temperature": 50})
    tw.wait_version("p-1", 1)
    refused0 = tw.metric("twind_http_refused_total")
    for ctype in ("text/plain", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x"):
        code, body = curl(tw, "POST", "/api/v1/twins/p-1/commands", '{"command":"stop"}',
                          [f"Content-Type: {ctype}"])
        assert code == 415 and body["error"]["code"] == "bad_content_type", (ctype, code, body)
    code, body = curl(tw, "PATCH", "/api/v1/twins/p-1/desired", '{"speed":100}',
                      ["Content-Type: text/plain"])
    assert code == 415, body
    assert commands(tw) == []
    assert tw.twin("p-1")["desired"] == {}
    assert tw.metric("twind_http_refused_total") == refused0 + 4
    # A script that says what it sends is served.
    code, body = curl(tw, "POST", "/api/v1/twins/p-1/commands", '{"command":"stop"}',
                      ["Content-Type: application/json; charset=utf-8"])
    assert code == 202 and body["command"] == "stop", body


def test_pages_on_other_sites_are_refused(tmp_path, make_twind, publisher):
    tw = start(tmp_path, make_twind)
    a = raise_alert(tw, publisher)
    own = f"http://127.0.0.1:{tw.http_port}"
    for origin in ("http://evil.example", f"http://127.0.0.1:{tw.http_port + 1}", "null",
                   f"https://127.0.0.1:{tw.http_port}"):
        code, body = curl(tw, "POST", f"/api/v1/alerts/{a['id']}/ack", "{}",
                          ["Content-Type: application/json", f"Origin: {origin}"])
        assert code == 403 and body["error"]["code"] == "bad_origin", (origin, code, body)
        # reading is refused too: an EventSource or fetch from that page learns nothing
        code, _ = curl(tw, "GET", "/api/v1/twins", headers=[f"Origin: {origin}"])
        assert code == 403, origin
    assert alerts(tw, twin="p-1")[0]["acknowledged"] is False
    # twind's own page sends its own origin, and is served
    code, body = curl(tw, "POST", f"/api/v1/alerts/{a['id']}/ack", "{}",
                      ["Content-Type: application/json", f"Origin: {own}"])
    assert code == 200 and body["acknowledged"] is True, body


def test_dns_rebinding_is_refused(tmp_path, make_twind):
    """A rebinding page reaches 127.0.0.1 under its own name: the Host says so."""
    tw = start(tmp_path, make_twind, http={"hosts": "gw1.plant.example"})
    port = tw.http_port
    for host in (f"attacker.example:{port}", f"gw1.plant.example.attacker.example:{port}"):
        code, body = curl(tw, "GET", "/api/v1/twins", headers=[f"Host: {host}"])
        assert code == 421 and body["error"]["code"] == "bad_host", (host, code, body)
        code, body = curl(tw, "PATCH", "/api/v1/twins/p-1/desired", '{"speed":100}',
                          [f"Host: {host}", "Content-Type: application/json"])
        assert code == 421, body
    assert tw.twin("p-1")["desired"] == {}
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"gw1.plant.example:{port}",
                 f"GW1.Plant.Example:{port}"):
        code, _ = curl(tw, "GET", "/api/v1/twins", headers=[f"Host: {host}"])
        assert code == 200, host


def test_shelving_is_temporary(tmp_path, make_twind, publisher):
    tw = start(tmp_path, make_twind, alerts={"shelve_max": "1h"})
    a = raise_alert(tw, publisher)
    for dur in ("3650d", "2h", "61m"):
        r = tw.request("POST", f"/api/v1/alerts/{a['id']}/shelve", json={"for": dur})
        assert r.status_code == 422 and r.json()["error"]["code"] == "shelve_too_long", r.text
        assert "at most 60 minutes" in r.json()["error"]["message"]
    assert alerts(tw, state="shelved") == []
    r = tw.request("POST", f"/api/v1/alerts/{a['id']}/shelve", json={"for": "1h"})
    assert r.status_code == 200, r.text
    until = r.json()["shelved_until_ts"]
    assert now_ms() + 3_500_000 <= until <= now_ms() + 3_600_000 + 1000, r.json()


def test_default_shelve_max_is_eight_hours(tmp_path, make_twind, publisher):
    tw = start(tmp_path, make_twind)
    a = raise_alert(tw, publisher)
    r = tw.request("POST", f"/api/v1/alerts/{a['id']}/shelve", json={"for": "9h"})
    assert r.status_code == 422, r.text
    r = tw.request("POST", f"/api/v1/alerts/{a['id']}/shelve", json={"for": "8h"})
    assert r.status_code == 200, r.text


def test_unmodelled_twin_takes_no_command(tmp_path, make_twind, publisher):
    """Anyone who can publish telemetry can create a twin without a model: it
    takes no command, from an operator or a rule, unless the config allows it."""
    tw = start(tmp_path, make_twind)
    publisher.publish("plant/free-1/telemetry", {"ts": now_ms(), "temperature": 95})
    tw.wait_version("free-1", 1)
    r = tw.request("POST", "/api/v1/twins/free-1/commands", json={"command": "purge"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_command", r.text
    assert "allow_unmodelled" in r.json()["error"]["message"]
    wait_until(lambda: rule_stats(tw, "free_cmd")["errors"] >= 1, 5,
               what="the rule's command refused and counted")
    assert commands(tw) == []
    # the modelled pump still takes its model's command, and nothing else
    r = tw.request("POST", "/api/v1/twins/p-1/commands", json={"command": "purge"})
    assert r.status_code == 422, r.text
    r = tw.request("POST", "/api/v1/twins/p-1/commands", json={"command": "stop"})
    assert r.status_code == 202, r.text


def test_unmodelled_commands_when_allowed(tmp_path, make_twind, publisher):
    tw = start(tmp_path, make_twind, commands={"allow_unmodelled": "yes"})
    publisher.publish("plant/free-2/telemetry", {"ts": now_ms(), "temperature": 95})
    wait_until(lambda: [c for c in commands(tw) if c["rule"] == "free_cmd"], 5,
               what="the rule's command on an unmodelled twin")
    r = tw.request("POST", "/api/v1/twins/free-2/commands", json={"command": "purge"})
    assert r.status_code == 202, r.text


def test_page_is_served_with_its_guards(tmp_path, make_twind):
    """Only the files of the page's folder: a file beside it is never served."""
    www = tmp_path / "site" / "www"
    shutil.copytree(REPO / "www", www)
    (www.parent / "secret.js").write_text("SECRET = 1;\n")
    tw = start(tmp_path, make_twind, http={"www": str(www)})
    r = tw.get("/")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html"), r.text
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert tw.get("/ui/app.js").headers["Content-Type"].startswith("text/javascript")
    assert tw.request("HEAD", "/").status_code == 200
    assert tw.request("HEAD", "/api/v1/events").status_code == 405
    # sent as written (--path-as-is): no segment may climb out of the folder
    for path in ("/ui/..", "/ui/%2e%2e", "/ui/../secret.js", "/ui/..%2fsecret.js",
                 "/ui/%2e%2e%2fsecret.js", "/ui/..%2f..%2fwww%2f..%2fsecret.js",
                 "/ui/secret.js", "/ui/.%2e/secret.js", "/ui/", "/ui//secret.js"):
        r = subprocess.run(["curl", "-s", "--path-as-is", "-w", "\n%{http_code}",
                            tw.url(path)], capture_output=True, text=True, timeout=10)
        body, _, code = r.stdout.rpartition("\n")
        assert code == "404" and "SECRET" not in body, (path, code, body)
    for path in ("/ui/..", "/ui/%2e%2e", "/ui/secret.js"):
        r = subprocess.run(["curl", "-s", "--path-as-is", tw.url(path)], capture_output=True,
                           text=True, timeout=10)
        assert "no such file" in r.stdout, (path, r.stdout)


def raw(tw, request):
    """Sends `request` as bytes on a fresh connection; the status line back."""
    with socket.create_connection(("127.0.0.1", tw.http_port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def test_odd_requests_a_browser_never_sends(tmp_path, make_twind):
    tw = start(tmp_path, make_twind)
    ok = f"127.0.0.1:{tw.http_port}".encode()
    assert " 200 " in raw(tw, b"GET /api/v1/twins HTTP/1.1\r\nHost: " + ok + b"\r\n\r\n")
    # HTTP/1.1 without Host; two Hosts (the second a rebinding name); two Origins
    assert " 400 " in raw(tw, b"GET /api/v1/twins HTTP/1.1\r\n\r\n")
    assert " 400 " in raw(tw, b"GET /api/v1/twins HTTP/1.1\r\nHost: " + ok +
                          b"\r\nHost: attacker.example\r\n\r\n")
    assert " 400 " in raw(tw, b"GET /api/v1/twins HTTP/1.1\r\nHost: " + ok +
                          b"\r\nOrigin: http://" + ok + b"\r\nOrigin: http://evil\r\n\r\n")
    # HTTP/1.0 has no Host: a script's, never a browser's
    assert " 200 " in raw(tw, b"GET /api/v1/twins HTTP/1.0\r\n\r\n")
    # port 0 or beyond 65535 is no port
    assert " 421 " in raw(tw, b"GET /api/v1/twins HTTP/1.1\r\nHost: 127.0.0.1:0\r\n\r\n")


def test_refused_at_the_headers(tmp_path, make_twind):
    """A refused write is answered before its body is read: a page cannot make
    twind buffer megabytes to be told 415."""
    tw = start(tmp_path, make_twind)
    host = f"127.0.0.1:{tw.http_port}".encode()
    for ctype, want in ((b"text/plain", b" 415 "), (b"application/json", b" 413 ")):
        # the headers promise 2 MiB and none of it is sent: the answer must come anyway
        with socket.create_connection(("127.0.0.1", tw.http_port), timeout=2) as s:
            s.sendall(b"POST /api/v1/twins/p-1/commands HTTP/1.1\r\nHost: " + host +
                      b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: 2097152\r\n\r\n")
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except socket.timeout:
                pass
        head = data.split(b"\r\n\r\n")[0]
        assert want in head.split(b"\r\n")[0], (ctype, data[:300])
        assert b"connection: close" in head.lower(), head
    big = tmp_path / "big"
    big.write_bytes(b"x" * (2 * 1024 * 1024))   # beyond max_body (64 KiB): would be 413
    code, body = curl(tw, "POST", "/api/v1/twins/p-1/commands", f"@{big}",
                      ["Content-Type: text/plain"])
    assert code == 415 and body["error"]["code"] == "bad_content_type", (code, body)
    code, body = curl(tw, "POST", "/api/v1/twins/p-1/commands", f"@{big}",
                      ["Content-Type: application/json"])
    assert code == 413, (code, body)
    assert tw.get("/healthz").status_code == 200


def test_other_pages_requests_without_origin(tmp_path, make_twind):
    """No-cors fetches, <img> and <script> of another page carry no Origin;
    Sec-Fetch-Site says where they come from (here as Chromium sends it)."""
    tw = start(tmp_path, make_twind)
    for site, mode, path in (("same-site", "no-cors", "/api/v1/events"),
                             ("cross-site", "no-cors", "/api/v1/twins"),
                             ("cross-site", "navigate", "/api/v1/twins/p-1/history"),
                             ("same-site", "no-cors", "/")):
        code, body = curl(tw, "GET", path, headers=[f"Sec-Fetch-Site: {site}",
                                                    f"Sec-Fetch-Mode: {mode}"])
        assert code == 403 and body["error"]["code"] == "cross_site", (site, mode, path, body)
    assert tw.metric("twind_event_clients") == 0
    # a link to the page from anywhere opens it; the user's own typing too
    for site, mode in (("cross-site", "navigate"), ("none", "navigate"), ("same-origin", "cors")):
        code, _ = curl(tw, "GET", "/", headers=[f"Sec-Fetch-Site: {site}", f"Sec-Fetch-Mode: {mode}"])
        assert code == 200, (site, mode)


def test_dot_twin_ids_are_refused(tmp_path, make_twind, publisher):
    tw = start(tmp_path, make_twind)
    for bad in ("..", "."):
        publisher.publish(f"plant/{bad}/telemetry", {"ts": now_ms(), "temperature": 1})
    wait_until(lambda: tw.metric("twind_messages_dropped_total", reason="bad_twin_id") >= 2, 5,
               what="both dropped as bad twin ids")
    assert [t["id"] for t in tw.get("/api/v1/twins").json()["twins"]] == ["p-1"]


def test_page_missing_is_said(tmp_path, make_twind):
    tw = start(tmp_path, make_twind, http={"www": str(tmp_path / "nowww")})
    r = tw.get("/")
    assert r.status_code == 404 and "not installed" in r.json()["error"]["message"], r.text
    assert "the page is not served" in tw.log()
    assert tw.get("/healthz").status_code == 200


def test_check_refuses_bad_hosts(tmp_path):
    conf = tmp_path / "twind.conf"
    conf.write_text(f"[http]\nlisten = 127.0.0.1:1\nhosts = ok.example, bad/name\n"
                    f"[storage]\ndatabase = {tmp_path}/twind.db\n")
    r = twind_check(conf)
    assert r.returncode == 2 and "hosts" in r.stderr and "bad/name" in r.stderr, r.stderr
