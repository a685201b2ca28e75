"""Integration tests of the safety rails (issue 19), on the real engine, each case as a new user
or a fault would meet it:

1. a restore never replaces a system tree, the engine's data, the repository or what holds them
   (paths compared by resolved components: /devdata is not /dev);
2. a run killed (SIGKILL) or stopped (SIGTERM) while the engine stops a container whose PID 1
   ignores SIGTERM leaves it running in the end;
3. a capture never includes its own repository or lifeboat's state, and refuses / and /proc;
4. a damaged manifest is reported and left out, and never breaks the listing or 'latest';
5. the staging tree of a killed restore is removed by the next run;
6. paths that are not what they seem (/proc/self/cwd, relative paths) are refused;
7. a refused option leaves nothing behind;
and the messages of the weak cases (a repository that is a file, a full filesystem, a missing
scratch directory, a manifest that is not JSON) say what was wrong and what to do.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import time

import pytest

from conftest import docker_cli, run_module
from fixtures.lab import BUSYBOX, Background, alive, children_of, open_lab, wait_for
from fixtures.lab import Lab as BaseLab


class Lab(BaseLab):
    def ignoring_sigterm(self, suffix: str, volume: str) -> str:
        """A container whose PID 1 (busybox sleep, no handler) ignores SIGTERM: `docker stop`
        takes its whole timeout and then kills it."""
        name = self.name(suffix)
        self.containers.append(name)
        docker_cli("run", "-d", "--name", name, "-v", f"{volume}:/data", BUSYBOX, "sleep", "1000000")
        return name

    def inspect(self, container: str) -> dict:
        return self.client.api.inspect_container(container)["State"]

    def data_dir(self, suffix: str, files: dict[str, bytes]) -> str:
        path = self.tmpdir(suffix)
        for rel, data in files.items():
            os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
            with open(os.path.join(path, rel), "wb") as fh:
                fh.write(data)
        return path


@pytest.fixture()
def lab(docker_client, prefix, monkeypatch):
    yield from open_lab(Lab(docker_client, prefix), monkeypatch)


def journal_entries(lab) -> list[dict]:
    out = []
    for path in lab.journals():
        try:
            with open(path, encoding="utf-8") as fh:
                out.append(json.load(fh))
        except (OSError, ValueError):
            continue  # being replaced
    return out


def kill_tree(root: int) -> None:
    """SIGKILL a process and every process below it (ansible, the module, its tar and zstd), as a
    crash of the host would: the tree is read first, then killed at once."""
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children_of(pid))
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def snapshot_of(lab, path: str, repo: str) -> str:
    result = run_module("snapshot", repository=repo, paths=[path])
    return result["snapshot_id"]


# --------------------------------------------------------------------------------------------
# 1. targets a restore never replaces
# --------------------------------------------------------------------------------------------
def test_a_forced_restore_never_replaces_system_trees_and_compares_by_components(lab):
    data = lab.data_dir("src", {"etc-like/passwd": b"not the real one\n"})
    repo = lab.repo()
    snapshot_of(lab, data, repo)
    before = {p: os.stat(p).st_ino for p in ("/etc", "/usr", "/var/lib/docker")}
    refused = {
        "/etc": "/etc",
        "/usr/../etc/": "/etc",
        "/var/lib/docker": "/var/lib/docker",
        "/var/lib/docker/volumes/x": "/var/lib/docker",
        "/var": "/var/lib",
        "/": "root",
        "/proc/1": "/proc",
        os.path.dirname(repo): "repository",
        repo + "/objects": "repository",
    }
    for target, named in refused.items():
        for check in (True, False):
            failed = run_module("snapshot_restore", expect_fail=True, check=check, repository=repo,
                                unit=f"path:{data}", target_path=target, force=True)
            assert named in failed["msg"] and "refusing" in failed["msg"], (target, failed["msg"])
            assert "target_path" in failed["msg"], failed["msg"]  # says where to restore instead
    assert {p: os.stat(p).st_ino for p in before} == before
    assert os.path.isdir(os.path.join(repo, "objects")) and os.listdir(os.path.join(repo, "snapshots"))
    # A directory whose name merely starts like a system tree is an ordinary target.
    odd = f"/devdata-{lab.prefix}"
    lab.dirs.append(odd)
    done = run_module("snapshot_restore", repository=repo, unit=f"path:{data}", target_path=f"{odd}/x")
    assert done["target"] == f"{odd}/x"
    with open(f"{odd}/x/etc-like/passwd", "rb") as fh:
        assert fh.read() == b"not the real one\n"


# --------------------------------------------------------------------------------------------
# 2. killed or stopped during a long stop
# --------------------------------------------------------------------------------------------
STOP_TIMEOUT = 15  # long enough that the repair run starts inside it, also on a loaded machine


def start_stopping_run(lab, vol: str, app: str, repo: str) -> tuple[Background, int]:
    """A snapshot that stops APP (which takes STOP_TIMEOUT s to die); returns once the engine was
    asked to stop it (the container is journalled and the module is inside docker stop)."""
    run = Background(lab, "snapshot", repository=repo, volumes=[vol], strategy="stop", stop_timeout=STOP_TIMEOUT)
    entry = wait_for("the container in the journal",
                     lambda: next((d for d in journal_entries(lab) if any(c["name"] == app for c in d["containers"])),
                                  None), 60, interval=0.01)
    pid = entry["pid"]
    # The engine got the stop request: it reports the container's stop in its events; here, the
    # journal is written just before the request, so a short wait puts us inside the grace period.
    time.sleep(1.0)
    assert alive(pid), "the module ended before the test could interrupt its stop"
    assert lab.inspect(app)["Status"] == "running", "the stop should still be under way (PID 1 ignores SIGTERM)"
    return run, pid


@pytest.mark.parametrize("attempt", [1, 2])
def test_sigkill_during_a_long_stop_and_a_run_in_the_grace_period_leave_the_container_running(lab, attempt):
    vol, vol_dir = lab.volume("data")
    with open(os.path.join(vol_dir, "f"), "w", encoding="utf-8") as fh:
        fh.write(f"attempt {attempt}\n")
    app = lab.ignoring_sigterm("app", vol)
    first_start = lab.inspect(app)["StartedAt"]
    repo = lab.repo()
    run, pid = start_stopping_run(lab, vol, app, repo)
    try:
        os.kill(pid, signal.SIGKILL)
    finally:
        run.wait_killed()
    assert lab.inspect(app)["Status"] == "running", "the repair must start inside the stop's grace period"
    # Any lifeboat run now, while the engine is still stopping the container, repairs it.
    info = run_module("snapshot_info", repository=repo)
    mine = [r for r in info["repaired"] if r.get("container") == app]
    assert mine and mine[0]["result"] == "started" and mine[0].get("waited_for_stop"), info["repaired"]
    state = lab.inspect(app)
    assert state["Status"] == "running" and state["StartedAt"] != first_start, state
    assert lab.journals() == []
    time.sleep(2)  # past the stop's timeout: it stays up
    assert lab.inspect(app)["Status"] == "running"


def test_sigterm_during_a_long_stop_waits_until_the_container_runs_again(lab):
    vol, _vol_dir = lab.volume("data")
    app = lab.ignoring_sigterm("app", vol)
    first_start = lab.inspect(app)["StartedAt"]
    repo = lab.repo()
    run, pid = start_stopping_run(lab, vol, app, repo)
    os.kill(pid, signal.SIGTERM)
    run.wait_killed()
    assert not alive(pid)
    state = lab.inspect(app)
    assert state["Status"] == "running" and state["StartedAt"] != first_start, \
        f"the module exited before {app} ran again: {state}"
    assert lab.journals() == [], "every container ran again: nothing is left for a repair"
    assert glob.glob(os.path.join(repo, "snapshots", "*.json")) == []
    time.sleep(STOP_TIMEOUT / 2)
    assert lab.inspect(app)["Status"] == "running"


# --------------------------------------------------------------------------------------------
# 3. a capture never holds its own repository or lifeboat's state
# --------------------------------------------------------------------------------------------
def test_a_repository_inside_a_captured_path_is_left_out_and_said_so(lab, monkeypatch):
    data = lab.data_dir("srv", {"app/config.ini": b"[app]\nx=1\n", "app/upload.bin": os.urandom(200_000)})
    repo = os.path.join(data, "backups")
    state = os.path.join(data, "lifeboat-state")
    monkeypatch.setenv("LIFEBOAT_STATE_DIR", state)
    sizes = []
    for _run in range(2):
        result = run_module("snapshot", repository=repo, paths=[data])
        unit = result["units"][f"path:{data}"]
        left = {item["path"]: item["reason"] for item in unit["left_out"]}
        assert set(left) == {"backups", "lifeboat-state/journal", "lifeboat-state/locks"}, left
        assert "the repository" in left["backups"] and "lifeboat's journal" in left["lifeboat-state/journal"]
        assert "lifeboat's locks" in left["lifeboat-state/locks"]
        assert unit["files"] == 2
        sizes.append(unit["bytes"])
    assert sizes[0] == sizes[1], "the second capture must not hold the first"
    # A forced restore in place would move the repository aside: refused.
    failed = run_module("snapshot_restore", expect_fail=True, repository=repo, unit=f"path:{data}", force=True)
    assert "repository" in failed["msg"] and "target_path" in failed["msg"], failed["msg"]
    assert os.path.isdir(os.path.join(repo, "snapshots"))
    # Restored elsewhere, it holds the data and neither the repository nor the journal or locks.
    out = lab.tmpdir("out")
    run_module("snapshot_restore", repository=repo, unit=f"path:{data}", target_path=f"{out}/tree")
    assert sorted(os.listdir(f"{out}/tree")) == ["app", "lifeboat-state"]
    assert os.listdir(f"{out}/tree/lifeboat-state") == []


def test_the_root_and_kernel_filesystems_are_refused_before_anything_is_captured(lab):
    repo = lab.repo()
    # In check mode too (the selection is checked first): a run that accepted / would read the whole host.
    for path, named in (("/", "whole host"), ("/proc", "/proc"), ("/sys/kernel", "/sys"), ("/proc/../", "whole host")):
        for check in (True, False) if path == "/proc" else (True,):
            failed = run_module("snapshot", expect_fail=True, check=check, repository=repo, paths=[path])
            assert named in failed["msg"] and "capture" in failed["msg"], (path, failed["msg"])
    assert not os.path.exists(repo), "a refused selection must not create the repository"


# --------------------------------------------------------------------------------------------
# 4. damaged manifests harm only themselves
# --------------------------------------------------------------------------------------------
def test_damaged_manifests_are_reported_and_never_become_latest(lab):
    data = lab.data_dir("src", {"a.txt": b"first\n"})
    repo = lab.repo()
    first = snapshot_of(lab, data, repo)
    with open(os.path.join(data, "a.txt"), "wb") as fh:
        fh.write(b"second\n")
    second = snapshot_of(lab, data, repo)
    with open(os.path.join(repo, "snapshots", f"{second}.json"), encoding="utf-8") as fh:
        good = json.load(fh)
    host = second[len("20260101T000000Z-"):-len("-abcdef")]  # the host as snapshot ids spell it
    damaged = {}
    # Valid JSON, wrong field types; a time that is no time (and would sort last as a string).
    for n, change in enumerate(({"units": "x"}, {"units": [{"kind": "path"}]}, {"time": "zzzz-garbage"},
                                {"units": [dict(good["units"][0], object={"sha256": 5})]})):
        sid = f"2099010{n + 1}T000000Z-{host}-abcde{n}"
        doc = dict(good, id=sid, **change)
        with open(os.path.join(repo, "snapshots", f"{sid}.json"), "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        damaged[sid] = change
    info = run_module("snapshot_info", repository=repo)
    assert [s["id"] for s in info["snapshots"]] == [second, first]
    assert info["latest"] == second
    problems = {p["snapshot"]: p["problem"] for p in info["problems"]}
    assert set(problems) == set(damaged), problems
    assert all("damaged" in text for text in problems.values()), problems
    # 'latest' restores the newest good snapshot, with no word of the damaged ones.
    out = lab.tmpdir("out")
    done = run_module("snapshot_restore", repository=repo, unit=f"path:{data}", target_path=f"{out}/t")
    assert done["snapshot_id"] == second
    with open(f"{out}/t/a.txt", "rb") as fh:
        assert fh.read() == b"second\n"
    # Asked for by id, a damaged one fails with its problem, not "failed unexpectedly".
    sid = sorted(damaged)[0]
    failed = run_module("snapshot_restore", expect_fail=True, repository=repo, snapshot=sid, unit=f"path:{data}",
                        target_path=f"{out}/u")
    assert "damaged" in failed["msg"] and "unexpectedly" not in failed["msg"], failed["msg"]
    # A manifest that is not JSON at all, asked for by id.
    bad = f"20990201T000000Z-{host}-fffff0"
    with open(os.path.join(repo, "snapshots", f"{bad}.json"), "w", encoding="utf-8") as fh:
        fh.write("{not json")
    failed = run_module("snapshot_restore", expect_fail=True, repository=repo, snapshot=bad, unit=f"path:{data}",
                        target_path=f"{out}/v")
    assert "not valid JSON" in failed["msg"] and "unexpectedly" not in failed["msg"], failed["msg"]
    # Copies go on without them.
    target = lab.repo("copy")
    copied = run_module("snapshot_copy", repository=repo, target_repository=target)
    assert sorted(copied["copied"]) == sorted([first, second])
    assert {d["snapshot"] for d in copied["damaged"]} == set(damaged) | {bad}


# --------------------------------------------------------------------------------------------
# 5. a killed restore's staging tree
# --------------------------------------------------------------------------------------------
def test_the_staging_tree_of_a_killed_restore_is_removed_by_the_next_run(lab):
    vol, vol_dir = lab.volume("big")
    for n in range(4):
        with open(os.path.join(vol_dir, f"part{n}.bin"), "wb") as fh:
            fh.write(os.urandom(40 << 20))
    repo = lab.repo()
    run_module("snapshot", repository=repo, volumes=[vol], strategy="live", compression_level=1)
    staging = None
    for attempt in range(5):  # the kill must land inside the extraction; try again if it did not
        target = lab.name(f"restored{attempt}")
        parent = os.path.join("/var/lib/docker/volumes", target)
        run = Background(lab, "snapshot_restore", repository=repo, unit=f"volume:{vol}", target_volume=target)
        try:
            found = wait_for("the staging directory or the end of the restore",
                             lambda: glob.glob(os.path.join(parent, ".lifeboat-restore-*"))  # pylint: disable=cell-var-from-loop
                             or run.proc.poll() is not None, 120, interval=0.005)
            if isinstance(found, list) and run.proc.poll() is None:
                kill_tree(run.proc.pid)
        finally:
            run.wait_killed()
        left = glob.glob(os.path.join(parent, ".lifeboat-restore-*"))
        if left:
            staging = left[0]
            break
    assert staging, "the restore was never killed inside its extraction"
    assert os.path.isdir(staging)
    # Any module's next run removes it, even one that talks to no engine (prune).
    pruned = run_module("snapshot_prune", repository=repo, keep_last=5)
    mine = [r for r in pruned["repaired"] if r.get("staging") == staging]
    assert mine and mine[0]["result"] == "removed", (pruned["repaired"], journal_entries(lab))
    assert not os.path.exists(staging)
    assert lab.journals() == []


# --------------------------------------------------------------------------------------------
# 6, 7. paths that are not what they seem; nothing made before the options are checked
# --------------------------------------------------------------------------------------------
def test_paths_that_are_not_what_they_seem_are_refused(lab):
    data = lab.data_dir("src", {"a": b"a"})
    failed = run_module("snapshot", expect_fail=True, repository=f"/proc/self/cwd/{lab.prefix}", paths=[data])
    assert "/proc" in failed["msg"] and "/var/backups/lifeboat" in failed["msg"], failed["msg"]
    failed = run_module("data_inventory", expect_fail=True, report="storage-concept.md")
    assert "absolute" in failed["msg"] and "report" in failed["msg"], failed["msg"]
    # A repository path that is a regular file.
    as_file = os.path.join(lab.tmpdir("file"), "repo")
    with open(as_file, "w", encoding="utf-8") as fh:
        fh.write("x")
    failed = run_module("snapshot", expect_fail=True, repository=as_file, paths=[data])
    assert "not a directory" in failed["msg"] and as_file in failed["msg"], failed["msg"]
    failed = run_module("snapshot_info", expect_fail=True, repository=as_file)
    assert "not a directory" in failed["msg"], failed["msg"]


def test_a_refused_recipient_leaves_no_repository_behind(lab):
    data = lab.data_dir("src", {"a": b"a"})
    repo = lab.repo()
    failed = run_module("snapshot", expect_fail=True, repository=repo, paths=[data],
                        encryption_recipients=["age1notakey"])
    assert "age1notakey" in failed["msg"] and "public key" in failed["msg"], failed["msg"]
    assert not os.path.exists(repo), os.listdir(repo)


# --------------------------------------------------------------------------------------------
# weak messages
# --------------------------------------------------------------------------------------------
def test_a_restore_that_runs_out_of_space_says_so_in_one_line_with_sizes(lab):
    data = lab.data_dir("src", {f"f{n}.bin": os.urandom(1 << 20) for n in range(8)})
    repo = lab.repo()
    snapshot_of(lab, data, repo)
    small = lab.tmpdir("small")
    lab.mount_tmpfs(small, "3m")
    failed = run_module("snapshot_restore", expect_fail=True, repository=repo, unit=f"path:{data}",
                        target_path=f"{small}/tree")
    msg = failed["msg"]
    assert "ran out of space" in msg and "MiB" in msg and "target_path" in msg, msg
    assert msg.count("\n") == 0 and len(msg) < 600, msg
    assert os.listdir(small) == [], "the partial copy is removed"


def test_verify_restore_with_a_missing_scratch_directory_says_what_to_do(lab):
    data = lab.data_dir("src", {"a": b"a"})
    repo = lab.repo()
    snapshot_of(lab, data, repo)
    missing = os.path.join(lab.tmpdir("scratch"), "nope")
    failed = run_module("snapshot_info", expect_fail=True, repository=repo, verify="restore", scratch_dir=missing)
    assert missing in failed["msg"] and "create it" in failed["msg"], failed["msg"]
