"""Integration tests of snapshot_prune (issue 6, retention), through real Ansible.

A local repository gets real snapshots of a small prefixed volume (module snapshot, on the real
engine) and synthetic manifests: copies of a real manifest under chosen ids and times, some
pointing at objects of their own. The policy is then checked against real objects: check mode
changes nothing and explains; a prune removes the right manifests and exactly the objects no
remaining manifest uses; a kept snapshot still restores; a damaged manifest blocks every object
deletion; a snapshot holding the repository lock makes a prune wait, or fail naming the holder.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sys
import threading
import time

import pytest

from conftest import MODULE_TMP, ROOT, run_module
from fixtures import trees
# lab is a fixture: importing it makes pytest use it here
from test_snapshot import Lab, lab, manifests, object_path, read_manifest, store_object  # noqa: F401 pylint: disable=unused-import

COLLECTIONS = ROOT / ".venv" / "collections"
if COLLECTIONS.is_dir() and str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def repo_files(repo: str) -> dict[str, str]:
    """Every file of the repository (relative path -> sha256 of its bytes)."""
    out = {}
    for dirpath, _dirs, files in os.walk(repo):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, repo)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def objects_in(repo: str) -> set[str]:
    return {os.path.basename(p) for p in repo_files(repo) if p.startswith("objects/")}


def synthetic(repo: str, base: dict, when: str, host: str | None = None, object_bytes: bytes | None = None) -> str:
    """A copy of manifest BASE under a new id at time WHEN ('YYYY-MM-DDTHH:MM:SS'), of HOST (default:
    BASE's), its first unit pointing at a new object of OBJECT_BYTES when given; returns the id."""
    doc = json.loads(json.dumps(base))
    host = host or base["host"]
    id_host = base["id"].split("-", 1)[1].rsplit("-", 1)[0] if host == base["host"] else host
    stamp = when.replace("-", "").replace(":", "")
    doc.update(id=f"{stamp}Z-{id_host}-{secrets.token_hex(3)}", host=host, time=f"{when}.000000Z",
               finished=f"{when}.500000Z")
    if object_bytes is not None:
        sha, size = store_object(repo, object_bytes)
        doc["units"][0]["object"].update(sha256=sha, size=size)
    with open(os.path.join(repo, "snapshots", f"{doc['id']}.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    return doc["id"]


def unit_objects(man: dict) -> set[str]:
    return {u[ref]["sha256"] for u in man["units"] for ref in ("object", "index") if u.get(ref)}


class Base:
    """Three real snapshots A, B, C of one volume, taken once for the whole module: B changes a file,
    C changes nothing (it reuses B's objects). Tests work on copies of the repository."""

    def __init__(self, lab) -> None:
        self.vol, vol_dir = lab.volume("data")
        trees.build_simple_tree(vol_dir, b"first")
        self.repo = lab.repo()
        ids = [run_module("snapshot", repository=self.repo, volumes=[self.vol], strategy="live")["snapshot_id"]]
        with open(os.path.join(vol_dir, "hello.txt"), "wb") as fh:
            fh.write(b"changed before the second snapshot\n")
        for _again in range(2):
            ids.append(run_module("snapshot", repository=self.repo, volumes=[self.vol], strategy="live")["snapshot_id"])
        self.ids = ids
        self.scan_c = trees.scan_tree(vol_dir)

    def clone(self, lab) -> tuple[str, list[dict]]:
        """A copy of the repository in LAB; (its path, [A, B, C] manifests)."""
        repo = lab.repo("clone")
        shutil.copytree(self.repo, repo, symlinks=True)
        mans = [read_manifest(repo, sid) for sid in self.ids]
        assert unit_objects(mans[1]) == unit_objects(mans[2]), "C should reuse B's objects"
        assert not unit_objects(mans[0]) & unit_objects(mans[1])
        return repo, mans


@pytest.fixture(scope="module")
def base(docker_client):
    built = Lab(docker_client, "lbt" + secrets.token_hex(3))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIFEBOAT_STATE_DIR", built.state_dir)
        try:
            yield Base(built)
        finally:
            built.cleanup()


# --------------------------------------------------------------------------------------------
# 1. check mode, the prune, shared objects, other hosts, restore of a kept snapshot
# --------------------------------------------------------------------------------------------
def test_prune_removes_forgotten_snapshots_and_exactly_the_unreferenced_objects(lab, base):
    vol, scan_c = base.vol, base.scan_c
    repo, (a, b, c) = base.clone(lab)
    host = c["host"]
    # synthetic history of the same host and unit: S1 uses A's objects; S2 and S3 have their own
    s1 = synthetic(repo, a, "2020-01-15T03:00:00")
    s2 = synthetic(repo, a, "2020-02-10T03:00:00", object_bytes=b"object only S2 uses " + os.urandom(64))
    s3 = synthetic(repo, a, "2020-02-20T03:00:00", object_bytes=b"object only S3 uses " + os.urandom(64))
    x2 = read_manifest(repo, s2)["units"][0]["object"]
    x3 = read_manifest(repo, s3)["units"][0]["object"]
    # a snapshot of another host (left alone with host=...), with an object of its own
    other = synthetic(repo, a, "2019-01-01T00:00:00", host="elsewhere", object_bytes=b"other host " + os.urandom(64))
    x_other = read_manifest(repo, other)["units"][0]["object"]
    # an object no manifest names (a killed snapshot's), and a temporary file of a dead writer
    orphan_sha, orphan_size = store_object(repo, b"orphan " + os.urandom(100))
    stale = os.path.join(repo, "tmp", f"{2 ** 22 + 12345}-deadbeef0000.part")
    with open(stale, "wb") as fh:
        fh.write(b"half an upload")

    # keep_last 1 -> C; keep_monthly 3 -> C (this month), S3 (2020-02), S1 (2020-01)
    policy = {"keep_last": 1, "keep_monthly": 3}
    expect_kept = [c["id"], s3, s1]
    expect_removed = [b["id"], a["id"], s2]
    before = repo_files(repo)

    plan = run_module("snapshot_prune", check=True, repository=repo, host=host, **policy)
    assert repo_files(repo) == before, "check mode changed the repository"
    assert plan["changed"] is True
    assert [k["id"] for k in plan["kept"]] == expect_kept
    assert plan["removed"] == expect_removed
    reasons = {k["id"]: k["reasons"] for k in plan["kept"]}
    group = f"[{host} volume:{vol}]"
    assert reasons[c["id"]][0] == f"last 1/1 {group}"
    assert f"newest complete snapshot of its group (never removed) {group}" in reasons[c["id"]]
    assert reasons[s3] == [f"monthly 2/3 (2020-02) {group}"]
    assert reasons[s1] == [f"monthly 3/3 (2020-01) {group}"]
    assert plan["objects_removed"] == 2 and plan["bytes_freed"] == x2["size"] + orphan_size
    assert plan["stale_removed"] == [f"tmp/{os.path.basename(stale)}"]
    assert plan["policy"] == policy and plan["problems"] == []

    done = run_module("snapshot_prune", repository=repo, host=host, **policy)
    assert done["changed"] is True
    assert [k["id"] for k in done["kept"]] == expect_kept and done["removed"] == expect_removed
    assert (done["objects_removed"], done["bytes_freed"]) == (plan["objects_removed"], plan["bytes_freed"])
    assert done["stale_removed"] == plan["stale_removed"] and not os.path.exists(stale)
    left = sorted(os.path.basename(p)[:-5] for p in manifests(repo))
    assert left == sorted([c["id"], s3, s1, other])
    # exactly the unreferenced objects went: S2's own and the orphan
    assert objects_in(repo) == (unit_objects(a) | unit_objects(b) | {x3["sha256"], x_other["sha256"]})
    assert not os.path.exists(object_path(repo, x2["sha256"])) and not os.path.exists(object_path(repo, orphan_sha))
    assert done["objects_kept"] == len(objects_in(repo))
    # B is forgotten but its objects stay (C uses them); A is forgotten but S1 uses its objects

    # C still restores (the restore checks every object it reads)
    new_vol = lab.name("restored")
    res = run_module("snapshot_restore", repository=repo, unit=vol, snapshot=c["id"], target_volume=new_vol)
    assert res["verified"] is True
    problems = trees.compare_trees(scan_c, trees.scan_tree(lab.volume_dir(new_vol)))
    assert not problems, "the kept snapshot restores differently:\n" + "\n".join(problems)

    # again: nothing more to do
    again = run_module("snapshot_prune", repository=repo, host=host, **policy)
    assert again["changed"] is False and again["removed"] == [] and again["objects_removed"] == 0

    # without host, the other host's snapshot is its group's newest complete one: it stays
    all_hosts = run_module("snapshot_prune", repository=repo, keep_last=1)
    assert other in [k["id"] for k in all_hosts["kept"]]
    assert all_hosts["removed"] == [s3, s1]
    assert objects_in(repo) == unit_objects(b) | unit_objects(read_manifest(repo, other))


# --------------------------------------------------------------------------------------------
# 2. a damaged manifest blocks object removal
# --------------------------------------------------------------------------------------------
def test_damaged_manifest_blocks_every_object_deletion(lab, base):
    repo, (a, b, c) = base.clone(lab)
    orphan_sha, _size = store_object(repo, b"orphan " + os.urandom(100))
    damaged_id = f"20210101T000000Z-{c['id'].split('-', 1)[1].rsplit('-', 1)[0]}-{secrets.token_hex(3)}"
    damaged = os.path.join(repo, "snapshots", f"{damaged_id}.json")
    with open(damaged, "w", encoding="utf-8") as fh:
        fh.write('{"format": "lifeboat-snapshot", "version": 1, "units": [{"object": {"sha256": "')  # cut short
    objects_before = objects_in(repo)

    plan = run_module("snapshot_prune", check=True, expect_fail=True, repository=repo, keep_last=1)
    assert "no object would be deleted" in plan["msg"] and damaged_id in plan["msg"]
    assert plan["removed"] == [b["id"], a["id"]]

    failed = run_module("snapshot_prune", expect_fail=True, repository=repo, keep_last=1)
    assert "1 manifest(s) cannot be read" in failed["msg"] and damaged_id in failed["msg"]
    assert "a damaged manifest may refer to any object, so no object was deleted" in failed["msg"]
    assert [p["snapshot"] for p in failed["problems"]] == [damaged_id]
    assert "not valid JSON" in failed["problems"][0]["problem"]
    assert failed["removed"] == [b["id"], a["id"]], "forgetting by the policy still happens"
    assert failed["objects_removed"] == 0 and objects_in(repo) == objects_before
    assert os.path.exists(damaged), "a damaged manifest is never removed by a prune"

    # a file under snapshots/ that is not named like a manifest blocks too
    os.rename(damaged, damaged + ".bak")
    stray = run_module("snapshot_prune", expect_fail=True, repository=repo, keep_last=1)
    assert f"snapshots/{damaged_id}.json.bak" in stray["msg"] and objects_in(repo) == objects_before

    os.unlink(damaged + ".bak")
    freed = run_module("snapshot_prune", repository=repo, keep_last=1)
    assert freed["problems"] == [] and freed["removed"] == []
    assert objects_in(repo) == unit_objects(c), "A's objects and the orphan go once nothing blocks"
    assert freed["objects_removed"] == len(objects_before) - len(unit_objects(c))
    assert orphan_sha not in objects_in(repo)


# --------------------------------------------------------------------------------------------
# 3. a snapshot holding the repository: the prune waits, or fails naming the holder
# --------------------------------------------------------------------------------------------
def _module_running(name: str) -> bool:
    """Whether a process of the module NAME started by this test process runs (Ansible starts it as
    AnsiballZ_NAME.py, with run_module's TMPDIR, which is this process's own, in its environment)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
            if f"AnsiballZ_{name}.py".encode() not in cmdline:
                continue
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if f"TMPDIR={MODULE_TMP}".encode() in fh.read().split(b"\0"):
                    return True
        except OSError:
            continue
    return False


def test_prune_waits_for_a_snapshot_holding_the_repository(lab, base):
    from ansible_collections.lifeboat.docker.plugins.module_utils._common.locks import Lock

    repo, (a, b, c) = base.clone(lab)
    assert os.environ["LIFEBOAT_STATE_DIR"] == lab.state_dir

    holder = Lock(f"repository:{repo}", "snapshot by the test", timeout=5, shared=True).acquire()
    try:
        busy = run_module("snapshot_prune", expect_fail=True, repository=repo, keep_last=1, lock_timeout=1)
    finally:
        holder.release()
    assert f"the repository {repo} is in use, the prune did not start" in busy["msg"]
    assert f"process {os.getpid()}" in busy["msg"], "the holder is not named"
    assert "raise lock_timeout" in busy["msg"]
    assert len(manifests(repo)) == 3, "a prune that did not get the lock removed something"

    # held for a while, then let go: the prune waits and then does its work. The lock is let go
    # 2 s after the prune's module process is seen (not after a fixed time from the start: on a
    # loaded machine Ansible may take longer than that to start the module)
    holder = Lock(f"repository:{repo}", "snapshot by the test", timeout=5, shared=True).acquire()
    seen = threading.Event()

    def release_once_the_prune_runs():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _module_running("snapshot_prune"):
            time.sleep(0.1)
        seen.set()
        time.sleep(2.0)
        holder.release()

    releaser = threading.Thread(target=release_once_the_prune_runs, daemon=True)
    releaser.start()
    try:
        waited = run_module("snapshot_prune", repository=repo, keep_last=1, lock_timeout=60)
    finally:
        releaser.join(timeout=130)
        holder.release()
    assert seen.is_set()
    assert waited["lock_waited"] >= 0.5
    assert waited["removed"] == [b["id"], a["id"]]
    assert [os.path.basename(p)[:-5] for p in manifests(repo)] == [c["id"]]

    # check mode shares the lock: it reads beside a running snapshot
    holder = Lock(f"repository:{repo}", "snapshot by the test", timeout=5, shared=True).acquire()
    try:
        plan = run_module("snapshot_prune", check=True, repository=repo, keep_last=1, lock_timeout=1)
    finally:
        holder.release()
    assert plan["removed"] == [] and plan["changed"] is False


# --------------------------------------------------------------------------------------------
# 4. clear errors
# --------------------------------------------------------------------------------------------
def test_clear_errors(lab):
    repo = lab.repo()
    empty = run_module("snapshot_prune", expect_fail=True, repository=repo)
    assert "the retention policy is empty: give at least one of keep_last" in empty["msg"]
    bad = run_module("snapshot_prune", expect_fail=True, repository=repo, keep_within="2 weeks")
    assert "keep_within '2 weeks' is not a duration" in bad["msg"]
    missing = run_module("snapshot_prune", expect_fail=True, repository=repo, keep_last=3)
    assert f"repository {repo} does not exist" in missing["msg"]
