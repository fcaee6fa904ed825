"""Command line and config checking: twind -c FILE --check, exit codes."""

import subprocess

import pytest

from conftest import TWIND_BIN, free_port


@pytest.fixture(autouse=True)
def need_binary():
    if not TWIND_BIN.exists():
        pytest.fail(f"{TWIND_BIN} is missing: run make first", pytrace=False)


def run(args, cwd, timeout=10):
    return subprocess.run([str(TWIND_BIN), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def write_conf(tmp_path, body):
    p = tmp_path / "twind.conf"
    p.write_text(body)
    return p


def good_conf(tmp_path):
    # nothing listens on these ports: --check validates, it does not connect
    return (f"[mqtt]\nhost = 127.0.0.1\nport = {free_port()}\nclient_id = twind-check\n"
            f"[http]\nlisten = 127.0.0.1:{free_port()}\n"
            f"[storage]\ndatabase = {tmp_path}/twind.db\n")


def test_check_good_config(tmp_path):
    conf = write_conf(tmp_path, good_conf(tmp_path))
    r = run(["-c", str(conf), "--check"], tmp_path)
    assert r.returncode == 0, (r.returncode, r.stderr)


@pytest.mark.parametrize("body,line", [
    pytest.param("[mqtt]\nhost = 127.0.0.1\nno_such_key = 1\nport = 1883\n", 3,
                 id="unknown-key"),
    pytest.param("[mqtt]\nhost = 127.0.0.1\nclient_id = x\nport = notanumber\n", 4,
                 id="port-not-a-number"),
    pytest.param("[mqtt]\nhost = 127.0.0.1\nclient_id = x\nport = 70000\n", 4,
                 id="port-out-of-range"),
    pytest.param("[mqtt]\nhost = 127.0.0.1\n\n; a comment\n[no_such_section]\nx = 1\n", 5,
                 id="unknown-section"),
    pytest.param("[mqtt]\nhost = 127.0.0.1\n[no_such_section]\n", 3,
                 id="unknown-empty-section"),
    pytest.param("[mqtt]\nhost = 127.0.0.1\n[storage]\ncache_size = 100K\n", 4,
                 id="cache-size-too-small"),
])
def test_check_bad_config(tmp_path, body, line):
    conf = write_conf(tmp_path, body)
    r = run(["-c", str(conf), "--check"], tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"twind.conf:{line}" in r.stderr, r.stderr


def test_bad_config_without_check_exits_2(tmp_path):
    conf = write_conf(tmp_path, "[mqtt]\nhost = 127.0.0.1\nno_such_key = 1\n")
    r = run(["-c", str(conf)], tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "twind.conf:3" in r.stderr, r.stderr


def test_usage_errors_exit_2(tmp_path):
    r = run(["--check"], tmp_path)
    assert r.returncode == 2, ("missing -c", r.returncode, r.stderr)
    r = run(["-c"], tmp_path)
    assert r.returncode == 2, ("-c without a file", r.returncode, r.stderr)
    r = run(["-c", str(tmp_path / "missing.conf"), "--check"], tmp_path)
    assert r.returncode == 2, ("missing file", r.returncode, r.stderr)
    r = run(["--no-such-option"], tmp_path)
    assert r.returncode == 2, ("unknown option", r.returncode, r.stderr)


def test_overrides_are_checked_like_the_file(tmp_path):
    """-o applies before validation: a listen address beyond loopback is
    refused, unless the override says so in plain words too."""
    conf = write_conf(tmp_path, good_conf(tmp_path))
    r = run(["-c", str(conf), "--check", "-o", f"http.listen=0.0.0.0:{free_port()}"], tmp_path)
    assert r.returncode == 2 and "allow_remote_without_tokens" in r.stderr, r.stderr
    r = run(["-c", str(conf), "--check", "-o", f"http.listen=0.0.0.0:{free_port()}",
             "-o", "http.allow_remote_without_tokens=yes"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = run(["-c", str(conf), "--check", "-o", "mqtt.port=0"], tmp_path)
    assert r.returncode == 2 and "port" in r.stderr, r.stderr
    r = run(["-c", str(conf), "--check", "-o", "mqtt.nope=1"], tmp_path)
    assert r.returncode == 2 and "unknown key" in r.stderr, r.stderr
    # a backtest may run up to backtest_max_time: hung_after must be longer
    r = run(["-c", str(conf), "--check", "-o", "http.hung_after=20s",
             "-o", "rules.backtest_max_time=18s"], tmp_path)
    assert r.returncode == 2 and "hung_after must be at least 15 s" in r.stderr, r.stderr
    r = run(["-c", str(conf), "--check", "-o", "http.hung_after=10s"], tmp_path)
    assert r.returncode == 2 and "hung_after must be at least 15 s" in r.stderr, r.stderr
