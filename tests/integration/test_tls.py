"""TLS on both sides, with certificates the test makes with openssl: HTTPS
served through libmicrohttpd's GnuTLS (TLS 1.2 and 1.3 only), checked with
real curl; MQTT over TLS to a real mosquitto TLS listener that requires a
client certificate."""

import json
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import Broker, Twind, now_ms, twind_check, wait_until


def sh(*args, cwd=None):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (args, r.stderr)
    return r


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate,
    and a second CA that signed none of them."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
           "-subj", f"/CN=twind test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                      ("client", "extendedKeyUsage=clientAuth")):
        sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
           "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
           "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
           cwd=d)
    for k in d.glob("*.key"):
        k.chmod(0o600)
    return d


def curl(*args):
    return subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args],
                          capture_output=True, text=True, timeout=20)


def test_https(tmp_path, make_twind, pki):
    tw = make_twind(extra={"http": {"tls_cert_file": str(pki / "server.pem"),
                                    "tls_key_file": str(pki / "server.key")}},
                    start=False)
    tw.url = lambda path: f"https://127.0.0.1:{tw.http_port}{path}"
    tw.http.verify = str(pki / "ca.pem")
    tw.http.trust_env = False          # a REQUESTS_CA_BUNDLE would override verify
    tw.start()
    url = f"https://127.0.0.1:{tw.http_port}"
    r = curl("--cacert", str(pki / "ca.pem"), url + "/healthz")
    assert r.stdout == "200", (r.stdout, r.stderr)
    assert curl("--cacert", str(pki / "ca.pem"), "--tlsv1.3", url + "/healthz").stdout == "200"
    assert curl("--cacert", str(pki / "ca.pem"), "--tlsv1.2", "--tls-max", "1.2",
                url + "/healthz").stdout == "200"
    # TLS 1.0 and 1.1 are refused; so is a client that trusts another CA; so is plain HTTP
    # SECLEVEL=0: Debian's OpenSSL would refuse TLS 1.0/1.1 itself; twind must be the one
    old = curl("--cacert", str(pki / "ca.pem"), "--ciphers", "DEFAULT@SECLEVEL=0", "--tlsv1.0",
               "--tls-max", "1.1", url + "/healthz")
    assert old.returncode != 0 and old.stdout == "000", (old.returncode, old.stdout)
    other = curl("--cacert", str(pki / "other-ca.pem"), url + "/healthz")
    assert other.returncode == 60, other.returncode
    assert curl(f"http://127.0.0.1:{tw.http_port}/healthz").stdout != "200"
    # the browser guard knows its own origin is https now
    ok = curl("--cacert", str(pki / "ca.pem"), "-X", "POST", "-H", "Content-Type: application/json",
              "-H", f"Origin: {url}", "--data", "{}", url + "/api/v1/alerts/1/ack")
    assert ok.stdout == "404", ok.stdout          # through the guard: no such alert
    bad = curl("--cacert", str(pki / "ca.pem"), "-X", "POST", "-H", "Content-Type: application/json",
               "-H", f"Origin: http://127.0.0.1:{tw.http_port}", "--data", "{}",
               url + "/api/v1/alerts/1/ack")
    assert bad.stdout == "403", bad.stdout


def test_https_needs_both_files(tmp_path, make_twind, pki):
    conf = tmp_path / "c.conf"
    conf.write_text(f"[http]\ntls_cert_file = {pki / 'server.pem'}\n"
                    f"[storage]\ndatabase = {tmp_path}/t.db\n")
    r = twind_check(conf)
    assert r.returncode == 2 and "needs its key" in r.stderr, r.stderr
    # a private key every user may read is refused
    key = tmp_path / "server.key"
    key.write_bytes((pki / "server.key").read_bytes())
    key.chmod(0o644)
    conf.write_text(conf.read_text() + f"[http]\ntls_key_file = {key}\n")
    r = twind_check(conf)
    assert r.returncode == 2 and "readable by every user" in r.stderr, r.stderr
    key.chmod(0o600)
    r = twind_check(conf)
    assert r.returncode == 0, r.stderr


def tls_broker(tmp_path, stack, pki):
    b = Broker(tmp_path / "tls-broker")
    b.conf.write_text(b.conf.read_text() +
                      f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\n"
                      f"keyfile {pki / 'server.key'}\nrequire_certificate true\n"
                      "tls_version tlsv1.2\n")
    stack.brokers.append(b)
    b.start()
    return b


def test_mqtt_over_tls_with_a_client_certificate(tmp_path, stack, pki):
    b = tls_broker(tmp_path, stack, pki)
    tw = Twind(tmp_path / "tw", b, extra={"mqtt": {
        "tls_ca_file": str(pki / "ca.pem"), "tls_cert_file": str(pki / "client.pem"),
        "tls_key_file": str(pki / "client.key")}})
    stack.twinds.append(tw)
    tw.start()
    pub = mqtt.Client(client_id="tls-pub")
    pub.tls_set(ca_certs=str(pki / "ca.pem"), certfile=str(pki / "client.pem"),
                keyfile=str(pki / "client.key"))
    pub.connect("127.0.0.1", b.port)
    pub.loop_start()
    try:
        pub.publish("plant/t-1/telemetry", json.dumps({"ts": now_ms(), "v": 1}),
                    qos=1).wait_for_publish(10)
        tw.wait_version("t-1", 1)
        assert tw.metric("twind_broker_connected") == 1
    finally:
        pub.loop_stop()
        pub.disconnect()


def test_mqtt_tls_refuses_a_broker_it_cannot_check(tmp_path, stack, pki):
    """A CA that did not sign the broker's certificate: no connection, said."""
    b = tls_broker(tmp_path, stack, pki)
    tw = Twind(tmp_path / "tw", b, extra={"mqtt": {
        "tls_ca_file": str(pki / "other-ca.pem"), "tls_cert_file": str(pki / "client.pem"),
        "tls_key_file": str(pki / "client.key"), "reconnect_max": "1s"}})
    stack.twinds.append(tw)
    tw.start(wait=False)
    wait_until(lambda: "mqtt" in tw.log() and tw.running(), 5)
    time.sleep(2)
    assert tw.metric("twind_broker_connected") == 0
    h = tw.get("/healthz")
    assert h.status_code == 503, h.text


@pytest.mark.parametrize("what", ["not-pem", "key-of-another", "ca-not-pem"])
def test_bad_tls_files_are_a_config_error(tmp_path, pki, what):
    """A file that is not PEM, a key that is not its certificate's, a CA file
    without a certificate: --check says which file and why, exit 2, as does
    a start (before, only the listen failed, with exit 1)."""
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not a certificate\n")
    junk.chmod(0o600)
    http = {"tls_cert_file": pki / "server.pem", "tls_key_file": pki / "server.key"}
    mqtt_ = {}
    if what == "not-pem":
        http["tls_cert_file"] = junk
    elif what == "key-of-another":
        http["tls_key_file"] = pki / "client.key"
    else:
        mqtt_ = {"tls_ca_file": junk}
    conf = tmp_path / "t.conf"
    text = "[http]\n" + "".join(f"{k} = {v}\n" for k, v in http.items())
    text += "[mqtt]\n" + "".join(f"{k} = {v}\n" for k, v in mqtt_.items())
    text += f"[storage]\ndatabase = {tmp_path / 'db'}\n"
    conf.write_text(text)
    r = twind_check(conf)
    assert r.returncode == 2, (r.returncode, r.stderr)
    named = str(junk) if what != "key-of-another" else str(pki / "client.key")
    assert named in r.stderr and "t.conf" in r.stderr, r.stderr

