"""The broker as shipped (config/mosquitto.conf and config/mosquitto.acl,
unchanged but for the port): nobody connects without a password, only twind
commands machines, a bridge speaks only for its own twins, and nobody can
take twind's session. Real mosquitto, real mosquitto_passwd, real clients."""

import json
import re
import secrets
import shutil
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import REPO, Broker, Twind, now_ms, wait_until


class ShippedBroker(Broker):
    """The shipped file, its ACL beside it as in the repo, a password file
    made with mosquitto_passwd for twind and the simulator's user."""

    def __init__(self, base):
        super().__init__(base / "run")
        shutil.copytree(REPO / "config", base / "config")
        lines = [f"listener {self.port} 127.0.0.1" if ln.startswith("listener ") else ln
                 for ln in (REPO / "config" / "mosquitto.conf").read_text().splitlines()]
        lines += [f"persistence_location {self.dir}/", "log_dest stderr", "log_type all",
                  "user root"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.passwords = {}
        passwd = self.dir / "mosquitto.passwd"
        passwd.write_text("")
        for user in ("twind", "twind-sim"):
            pw = secrets.token_urlsafe(12)
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True,
                           capture_output=True, timeout=10)
            self.passwords[user] = pw


def client(port, user=None, password=None, client_id=None, v5=False):
    """Connects and returns (client, connack reason as int) once answered."""
    got = {}
    proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    c = mqtt.Client(client_id=client_id or "t-" + secrets.token_hex(3), protocol=proto)
    if user is not None:
        c.username_pw_set(user, password)
    c.on_connect = lambda cl, ud, flags, rc, *a: got.setdefault("rc", rc)
    c.on_disconnect = lambda cl, ud, rc, *a: got.setdefault("gone", rc)
    c.user_data_set(got)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    wait_until(lambda: "rc" in got, 5, what="a CONNACK")
    rc = got["rc"]
    return c, (rc.value if hasattr(rc, "value") else rc), got


@pytest.fixture
def locked(tmp_path, stack):
    b = ShippedBroker(tmp_path)
    stack.brokers.append(b)
    b.start()
    pwf = tmp_path / "twind.password"
    pwf.write_text(b.passwords["twind"] + "\n")
    pwf.chmod(0o600)
    tw = Twind(tmp_path / "tw", b, extra={"mqtt": {"username": "twind", "client_id": "twind",
                                                   "password_file": str(pwf)}})
    stack.twinds.append(tw)
    tw.start()
    clients = []
    yield b, tw, clients
    for c in clients:
        c.loop_stop()
        c.disconnect()


def test_no_password_no_connection(locked):
    b, tw, clients = locked
    for user, pw in ((None, None), ("twind", "wrong"), ("nobody", "x")):
        c, rc, _ = client(b.port, user, pw)
        clients.append(c)
        assert rc != 0, (user, rc)          # 5: not authorised
    # twind itself got in with its password from the file
    assert tw.metric("twind_broker_connected") == 1


def bridge(b, clients, got):
    """The simulator's user, as its PLC bridge: one connection per user (its
    client id is its username), reading pump-1's commands."""
    sim, rc, _ = client(b.port, "twind-sim", b.passwords["twind-sim"])
    clients.append(sim)
    assert rc == 0
    sim.on_message = lambda cl, ud, m: got.append(m)
    sim.subscribe("plant/pump-1/cmd", qos=1)
    time.sleep(0.3)
    return sim


def test_bridge_speaks_only_for_its_own_twins(locked):
    b, tw, clients = locked
    got = []
    sim = bridge(b, clients, got)
    T = now_ms()
    sim.publish("plant/pump-1/telemetry", json.dumps({"ts": T, "speed": 1450}), qos=1).wait_for_publish(5)
    wait_until(lambda: tw.twin("pump-1") is not None, 5, what="its own twin's telemetry")
    # not its twins: telemetry; and what only twind may send: a command, a desired value
    sim.publish("plant/rogue-1/telemetry", json.dumps({"ts": T, "speed": 1}), qos=1).wait_for_publish(5)
    sim.publish("plant/pump-1/cmd", json.dumps({"id": "c-forged", "command": "stop"}),
                qos=1).wait_for_publish(5)
    sim.publish("plant/pump-2/desired", json.dumps({"speed": 1}), qos=1).wait_for_publish(5)
    sim.publish("plant/rogue-1/cmd/ack", json.dumps({"id": "c-x", "status": "done"}),
                qos=1).wait_for_publish(5)
    time.sleep(1.0)
    assert tw.twin("rogue-1") is None
    assert not any(b"c-forged" in m.payload for m in got), [m.payload for m in got]
    log = b.log()
    for topic in ("plant/rogue-1/telemetry", "plant/pump-1/cmd", "plant/pump-2/desired",
                  "plant/rogue-1/cmd/ack"):
        assert re.search(r"Denied PUBLISH from twind-sim .*'" + re.escape(topic) + "'", log), \
            (topic, log[-3000:])


def test_only_twind_commands(locked):
    b, tw, clients = locked
    got = []
    sim = bridge(b, clients, got)
    sim.publish("plant/pump-1/telemetry", json.dumps({"ts": now_ms(), "speed": 1450}),
                qos=1).wait_for_publish(5)
    wait_until(lambda: tw.twin("pump-1") is not None, 5, what="pump-1")
    # the twin has no model here: commands to it allowed for this test
    tw.stop()
    tw.conf.write_text(tw.conf.read_text() + "\n[commands]\nallow_unmodelled = yes\n")
    tw.start()
    r = tw.request("POST", "/api/v1/twins/pump-1/commands", json={"command": "stop"})
    assert r.status_code == 202, r.text
    cid = r.json()["id"]
    wait_until(lambda: any(json.loads(m.payload).get("id") == cid for m in got), 5,
               what="twind's command delivered to the bridge")


def test_nobody_takes_twinds_session(locked):
    """use_username_as_clientid: connecting as client id "twind" with another
    user's password gives that user's id, so twind stays connected."""
    b, tw, clients = locked
    reconnects = tw.metric("twind_broker_reconnects_total")
    thief, rc, got = client(b.port, "twind-sim", b.passwords["twind-sim"], client_id="twind")
    clients.append(thief)
    assert rc == 0
    time.sleep(1.0)
    assert tw.metric("twind_broker_connected") == 1
    assert tw.metric("twind_broker_reconnects_total") == reconnects
    assert "gone" not in got
    # and without any password there is no way in at all
    anon, rc, _ = client(b.port, None, None, client_id="twind")
    clients.append(anon)
    assert rc != 0
    time.sleep(0.5)
    assert tw.metric("twind_broker_reconnects_total") == reconnects


def test_password_file_rules(tmp_path):
    from conftest import twind_check
    pwf = tmp_path / "pw"
    pwf.write_text("secret\n")
    pwf.chmod(0o644)
    conf = tmp_path / "twind.conf"
    conf.write_text(f"[mqtt]\nusername = twind\npassword_file = {pwf}\n"
                    f"[storage]\ndatabase = {tmp_path}/t.db\n")

    def check(*extra):
        return twind_check(conf, *extra)
    r = check()
    assert r.returncode == 2 and "readable by every user" in r.stderr, r.stderr
    pwf.chmod(0o600)
    assert check().returncode == 0
    r = check("-o", "mqtt.password=hunter2")
    assert r.returncode == 2 and "visible to every user" in r.stderr, r.stderr
    pwf.write_text("")
    assert check().returncode == 2
    # a password in the config file itself: only if others cannot read that file
    conf.write_text(f"[mqtt]\nusername = twind\npassword = secret\n"
                    f"[storage]\ndatabase = {tmp_path}/t.db\n")
    conf.chmod(0o644)
    r = check()
    assert r.returncode == 2 and "every user of the host can read it" in r.stderr, r.stderr
    conf.chmod(0o640)
    assert check().returncode == 0
