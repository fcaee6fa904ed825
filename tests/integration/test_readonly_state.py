"""A state directory that cannot be written at start, or does not exist: a
clear error naming the directory, exit 1, and nothing changed. A tmpfs the test mounts and
remounts read-only, since the tests run as root (file modes do not stop
root's writes, a read-only mount does). A file system going read-only under
a running twind cannot be made here: Linux refuses to remount one read-only
while files on it are open for writing (EBUSY), as twind's are."""
import hashlib
import subprocess

import pytest

from conftest import tmpfs, now_ms


@pytest.fixture
def state_dir(tmp_path):
    with tmpfs(tmp_path / "state", "32m") as mnt:
        yield mnt


def remount(mnt, mode):
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mnt)], check=True,
                   capture_output=True)


def digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_read_only_at_start_is_refused_naming_the_directory(state_dir, make_twind, publisher):
    tw = make_twind({"storage": {"database": str(state_dir / "twind.db")}})
    publisher.publish("plant/ro-1/telemetry", {"ts": now_ms(), "v": 1})
    tw.wait_version("ro-1", 1)
    assert tw.stop() == 0
    remount(state_dir, "ro")
    before = digest(state_dir)
    tw.expect_exit(1)
    tw.start(wait=False)
    rc = tw.wait_exit(10, expect=1)
    log = tw.log()
    assert rc == 1
    assert f"{state_dir} is read-only" in log, log[-800:]
    assert digest(state_dir) == before, "a file was changed"
    # writable again: it starts with what it had
    remount(state_dir, "rw")
    tw.start()
    assert tw.twin("ro-1")["reported"]["v"]["value"] == 1


def test_missing_state_directory_is_named(tmp_path, make_twind):
    missing = tmp_path / "no" / "such"
    tw = make_twind({"storage": {"database": str(missing / "twind.db")}}, start=False)
    tw.expect_exit(1)
    tw.start(wait=False)
    assert tw.wait_exit(10, expect=1) == 1
    assert f"the state directory {missing} does not exist" in tw.log(), tw.log()[-800:]
    assert not missing.exists()


def test_dangling_symlinks_name_the_directory_they_lead_to(tmp_path, make_twind):
    """A database path that is a link to a link to a data partition not
    mounted yet: the directory named is the one at the end of the links."""
    missing = tmp_path / "data" / "twind"
    (tmp_path / "hop2.db").symlink_to(missing / "twind.db")
    (tmp_path / "hop1.db").symlink_to("hop2.db")           # relative, as ln -s makes them
    tw = make_twind({"storage": {"database": str(tmp_path / "hop1.db")}}, start=False)
    tw.expect_exit(1)
    tw.start(wait=False)
    assert tw.wait_exit(10, expect=1) == 1
    assert f"the state directory {missing} does not exist" in tw.log(), tw.log()[-800:]
