"""The harness's end-of-life check of twind (conftest.Twind, Stack): the exit
code and the sanitizer reports in the log. It is what makes a green
`make test-sanitize` mean something, so it is tested itself: on synthetic
logs, and with a stand-in for twind (a small Python program that answers
/healthz and ends the way it is told) instead of the real daemon."""

import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import Stack, Twind, exit_problem, sanitizer_reports, wait_until

LEAK = "==123==ERROR: LeakSanitizer: detected memory leaks"
LEAK_REPORT = [
    LEAK,
    "",
    "Direct leak of 64 byte(s) in 1 object(s) allocated from:",
    "    #0 0x7f00 in malloc (/lib/x86_64-linux-gnu/libasan.so.8+0xd9cf)",
    "    #1 0x5600 in cJSON_New_Item (/lib/x86_64-linux-gnu/libcjson.so.1+0x3b1f)",
    "",
    "SUMMARY: AddressSanitizer: 64 byte(s) leaked in 1 allocation(s).",
]

# The stand-in. Its behaviour comes from DEFAULTS (baked in by make_stub) and
# a [stub] section of the config the harness writes (extra={"stub": {...}}):
#   report     lines printed when it ends ("|" separates lines)
#   term_code  its exit code on SIGTERM or SIGINT
#   exit_code  with exit_after: exits by itself after that many seconds
#   exit_signal  with exit_after: kills itself with this signal instead
STUB = '''\
#!{python}
import configparser, http.server, os, signal, sys, threading
DEFAULTS = {defaults!r}
conf = configparser.ConfigParser()
conf.read(sys.argv[sys.argv.index("-c") + 1])
cfg = dict(DEFAULTS, **(dict(conf["stub"]) if conf.has_section("stub") else {{}}))
port = int(conf["http"]["listen"].rsplit(":", 1)[1])

def out(text):
    for line in text.split("|") if text else []:
        sys.stdout.write(line + "\\n")
    sys.stdout.flush()

def end(code):
    out(cfg.get("report", ""))
    if cfg.get("exit_signal"):        # one Python leaves at its default
        signal.pthread_kill(threading.get_ident(), int(cfg["exit_signal"]))
    os._exit(int(code))

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{{"status": "ok"}}'
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

signal.signal(signal.SIGTERM, lambda *a: end(cfg.get("term_code", 0)))
signal.signal(signal.SIGINT, lambda *a: end(cfg.get("term_code", 0)))
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
out("stub: ready")
if cfg.get("exit_after"):
    threading.Timer(float(cfg["exit_after"]), end, [cfg.get("exit_code", 0)]).start()
srv.serve_forever(poll_interval=0.05)
'''


def make_stub(path, **defaults):
    path = Path(path)
    path.write_text(STUB.format(python=sys.executable, defaults=defaults))
    path.chmod(0o755)
    return path


NO_BROKER = types.SimpleNamespace(port=9)     # the stand-in does not connect


@pytest.fixture
def stub(tmp_path):
    return make_stub(tmp_path / "stub-twind")


def kill_left(twinds):
    """No stray stand-ins, whatever a test left (unchecked: the test said)."""
    for t in twinds:
        if t.running():
            t.proc.kill()
            t.proc.wait(5)


@pytest.fixture
def fake(tmp_path, stub):
    """fake(**stub_keys) -> a Twind running the stand-in (not started)."""
    made = []

    def make(**keys):
        extra = {"stub": {k: str(v) for k, v in keys.items()}} if keys else None
        made.append(Twind(tmp_path / f"fake{len(made) + 1}", NO_BROKER, extra, binary=stub))
        return made[-1]
    yield make
    kill_left(made)


def ready(t):
    wait_until(lambda: "stub: ready" in t.log(), 5, what="the stand-in's ready line")


# --------------------------------------------------------------------------
# the scan, on synthetic logs


def test_every_sanitizer_marker_is_found():
    lines = [
        "2024-01-01T00:00:00Z info: loaded 3 twins",
        LEAK,
        "==9==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010",
        "src/expr.c:120:17: runtime error: signed integer overflow: 2147483647 + 1",
        "WARNING: ThreadSanitizer: data race (pid=77)",
        "SUMMARY: AddressSanitizer: 64 byte(s) leaked in 1 allocation(s).",
        "SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior src/expr.c:120:17 in",
        "2024-01-01T00:00:01Z info: SIGTERM: stopping",
    ]
    found = sanitizer_reports("\n".join(lines))
    assert [i for i, _ in found] == [1, 2, 3, 4, 5, 6]
    assert [ln for _, ln in found] == lines[1:7]


def test_a_clean_log_has_no_report():
    log = ("==== harness: start 12:00:00\n"
           "2024-01-01T00:00:00Z info: twind 0.1 listening on 127.0.0.1:8080\n"
           "2024-01-01T00:00:00Z warn: dropped a message: malformed (error at column 9)\n"
           "2024-01-01T00:00:02Z info: SIGTERM: stopped cleanly\n")
    assert sanitizer_reports(log) == []
    assert exit_problem("twind", 0, "after SIGTERM", {0}, log, "twind.log") is None


def test_problem_names_the_exit_and_quotes_the_report():
    log = "\n".join(["info: up"] * 200 + LEAK_REPORT)
    msg = exit_problem("twind (x)", 23, "after SIGTERM", {0}, log, "x/twind.log")
    assert msg.splitlines()[0] == ("twind (x): exit code 23 after SIGTERM (expected: exit code 0);"
                                   " 2 sanitizer report line(s) in its log")
    assert "  " + LEAK in msg and "SUMMARY: AddressSanitizer: 64 byte(s)" in msg
    assert "cJSON_New_Item" in msg, "the excerpt shows the stack"
    assert msg.count("info: up") <= 5, "the excerpt starts near the first report"
    # a code alone is enough; so is a report alone
    assert "exit code 1 by itself (expected: no exit by itself)" in \
        exit_problem("twind", 1, "by itself", set(), "info: up\n", "l")
    assert exit_problem("twind", -9, "after SIGKILL", {-9}, "\n".join(LEAK_REPORT), "l")
    assert "killed by SIGABRT" in exit_problem("twind", -6, "by itself", set(), "", "l")


# --------------------------------------------------------------------------
# a real process: the stand-in


def test_clean_sigterm_passes(fake):
    t = fake().start()
    assert t.stop() == 0
    assert t.lifetimes == [{"rc": 0, "how": "after SIGTERM", "problem": None}]
    assert t.finish() == []


def test_leak_report_at_sigterm_fails_stop(fake):
    t = fake(report="|".join(LEAK_REPORT), term_code=23).start()
    with pytest.raises(AssertionError) as e:
        t.stop()
    msg = str(e.value)
    assert "exit code 23 after SIGTERM (expected: exit code 0)" in msg, msg
    assert LEAK in msg and "SUMMARY: AddressSanitizer" in msg, msg
    assert t.finish() == [], "raised once, not reported again at the cleanup"


def test_leak_report_and_exit_1_by_itself_fails_the_cleanup(fake, broker_free_stack):
    t = fake(report=LEAK, exit_after=0.2, exit_code=1)
    broker_free_stack.twinds.append(t)
    t.start(wait=False)
    wait_until(lambda: not t.running(), 5, what="the stand-in's own exit")
    with pytest.raises(AssertionError) as e:
        broker_free_stack.cleanup(show_logs=False)
    msg = str(e.value)
    assert "exit code 1 by itself" in msg and LEAK in msg, msg


def test_report_with_exit_code_0_still_fails(fake):
    """A UBSan finding without halt_on_error leaves the exit code alone."""
    t = fake(report="src/x.c:3:5: runtime error: shift exponent 64 is too large").start()
    with pytest.raises(AssertionError, match="runtime error: shift exponent"):
        t.stop()


def test_nonzero_exit_after_sigterm_fails(fake):
    t = fake(term_code=1).start()
    with pytest.raises(AssertionError, match="exit code 1 after SIGTERM"):
        t.stop()


def test_nonzero_exit_after_sigint_fails_at_cleanup(fake):
    t = fake(term_code=3).start()
    t.proc.send_signal(signal.SIGINT)       # behind the harness's back
    t.proc.wait(5)
    problems = t.finish()
    assert len(problems) == 1 and "exit code 3 by itself" in problems[0], problems


def test_killed_by_another_signal_fails(fake):
    t = fake(exit_after=0.2, exit_signal=int(signal.SIGABRT)).start()
    wait_until(lambda: not t.running(), 5, what="the stand-in's abort")
    with pytest.raises(AssertionError, match="killed by SIGABRT by itself"):
        t.stop()


def test_kill9_is_expected(fake):
    t = fake().start()
    assert t.kill9() == -signal.SIGKILL
    assert t.stop(sig=signal.SIGKILL) == -signal.SIGKILL, "already ended: no new check"
    t.start()
    assert t.stop(sig=signal.SIGKILL) == -signal.SIGKILL
    assert [x["problem"] for x in t.lifetimes] == [None, None]
    assert t.finish() == []


def test_kill9_after_an_exit_by_itself_fails(fake):
    t = fake(exit_after=0.1, exit_code=0).start(wait=False)
    wait_until(lambda: not t.running(), 5, what="the stand-in's own exit")
    with pytest.raises(AssertionError, match="exit code 0 by itself"):
        t.kill9()


def test_expected_exit_codes(fake):
    # declared beforehand: an exit by itself with 2 is fine
    t = fake(exit_after=0.1, exit_code=2)
    t.expect_exit(2)
    t.start(wait=False)
    assert t.wait_exit(5) == 2
    # declared with wait_exit
    t.start(wait=False)
    assert t.wait_exit(5, expect=2) == 2
    # waited for and asserted by the caller
    t.start(wait=False)
    assert t.wait_exit(5) == 2
    # an expectation holds for one lifetime only
    t.start(wait=False)
    wait_until(lambda: not t.running(), 5, what="the stand-in's own exit")
    with pytest.raises(AssertionError, match="exit code 2 by itself"):
        t.stop()
    # the wrong code
    t.start(wait=False)
    with pytest.raises(AssertionError, match=r"exit code 2 by itself \(expected: exit code 3\)"):
        t.wait_exit(5, expect=3)
    assert t.finish() == []


def test_expected_code_does_not_excuse_a_report(fake):
    t = fake(report=LEAK, exit_after=0.1, exit_code=2)
    t.start(wait=False)
    with pytest.raises(AssertionError, match="LeakSanitizer"):
        t.wait_exit(5, expect=2)


def test_exit_during_start_up_names_the_report(fake):
    t = fake(report=LEAK, exit_after=0.0, exit_code=1)
    t.http_port = 9   # never 200: the start-up sees the exit first
    with pytest.raises(AssertionError) as e:
        t.start()
    assert "during start-up" in str(e.value) and LEAK in str(e.value)
    assert t.finish() == []


def test_only_this_lifetime_of_the_log_counts(fake):
    t = fake()
    # an earlier run (of another binary, say) left a report in the same log
    t.logfile.write_text("\n".join(LEAK_REPORT) + "\n")
    t.start()
    assert t.stop() == 0
    # and a report of one run is not blamed on the next
    t.conf.write_text(t.conf.read_text() + f"[stub]\nreport = {LEAK}\n")
    t.start()
    with pytest.raises(AssertionError, match="LeakSanitizer"):
        t.stop()
    t.conf.write_text(t.conf.read_text().replace(f"report = {LEAK}", "report ="))
    t.start()
    assert t.stop() == 0
    assert [x["problem"] is None for x in t.lifetimes] == [True, False, True]


@pytest.fixture
def broker_free_stack():
    s = Stack()
    yield s
    kill_left(s.twinds)


# --------------------------------------------------------------------------
# the whole way: a pytest run with the harness's own fixtures goes red


# The inner run's conftest is this harness, loaded from where it is (its paths
# to config/ are relative to it).
INNER_CONFTEST = '''
import importlib.util
import sys

spec = importlib.util.spec_from_file_location("twind_harness", {path!r})
harness = importlib.util.module_from_spec(spec)
sys.modules["twind_harness"] = harness
spec.loader.exec_module(harness)
from twind_harness import *  # noqa: F401,F403 - its fixtures and hooks
'''

# In this order: the module-scoped `shared` is torn down with the last test.
INNER_TESTS = '''
def test_clean_stand_in(make_twind):
    t = make_twind(extra={"stub": {"report": "", "term_code": "0"}})
    assert t.running()


def test_with_twind(twind):
    assert twind.running()


def test_with_shared(shared):
    assert shared.twind.get("/healthz").status_code == 200
'''


def test_a_leak_at_exit_makes_the_pytest_run_red(tmp_path):
    """A pytest run of three passing tests against a stand-in that reports a
    leak at SIGTERM: the function-scoped twind and the module-scoped shared
    one each give a teardown error; the clean one passes."""
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "conftest.py").write_text(
        INNER_CONFTEST.format(path=str(Path(__file__).with_name("conftest.py"))))
    (inner / "test_inner.py").write_text(INNER_TESTS)
    stub = make_stub(tmp_path / "stub-twind", report="|".join(LEAK_REPORT), term_code=23)
    env = dict(os.environ, TWIND_BIN=str(stub))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-o", "addopts=", str(inner)],
                       cwd=inner, env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "3 passed, 2 errors" in out, out
    assert "ERROR at teardown of test_with_shared" in out, out
    assert "ERROR at teardown of test_with_twind" in out, out
    assert "teardown of test_clean_stand_in" not in out, out
    assert out.count("exit code 23 after SIGTERM (expected: exit code 0)") >= 2, out
    assert LEAK in out, out
