"""Integration tests of snapshot, snapshot_info and snapshot_restore (issue 4), on the real engine.

Every module runs through real Ansible (conftest.run_module). Volumes are plain local volumes
whose data the tests write and compare directly in /var/lib/docker/volumes/NAME/_data (as root,
which is how xattrs, ACLs, foreign owners and odd names get there). Every name carries the test's
prefix; the `lab` fixture removes what a test made (containers, volumes including the
NAME.pre-restore-* ones, temporary directories, tmpfs mounts), and each test has its own
LIFEBOAT_STATE_DIR, so journals never mix with other runs on this host.

Covered (the "Done when" of issue 4): round trips of a volume and a host path, listing and its
filters; the fidelity volume; `stop` with a running container, also when the capture fails on a
full repository; SIGTERM mid-capture (containers started on the way out); SIGKILL mid-capture and
the repair by the next run; a flipped byte in an object; archives crafted to escape the target;
check mode; unchanged re-snapshots; the clear errors.
"""

from __future__ import annotations

import glob
import io
import json
import os
import secrets
import signal
import stat
import subprocess
import tarfile
import time

from conftest import ROOT, VENV_BIN, _ansible_env, docker_cli, require_tool, run_module
from fixtures import trees

from fixtures.lab import (  # noqa: F401 pylint: disable=unused-import
    Lab, alive, children_of, descends_from, lab, proc_start, wait_for)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def assert_same_tree(src_scan: dict, dst_dir: str, what: str) -> None:
    problems = trees.compare_trees(src_scan, trees.scan_tree(dst_dir))
    assert not problems, f"{what} differs from its source:\n" + "\n".join(problems)


def object_path(repo: str, sha: str) -> str:
    return os.path.join(repo, "objects", sha[:2], sha)


def store_object(repo: str, data: bytes) -> tuple[str, int]:
    """Put bytes into the repository under their sha256, as the format says; (sha, size)."""
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    path = object_path(repo, sha)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return sha, len(data)


def zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, capture_output=True, check=True).stdout


def manifests(repo: str) -> list[str]:
    return sorted(glob.glob(os.path.join(repo, "snapshots", "*.json")))


def read_manifest(repo: str, snapshot_id: str) -> dict:
    with open(os.path.join(repo, "snapshots", f"{snapshot_id}.json"), encoding="utf-8") as fh:
        return json.load(fh)


def write_variant_manifest(repo: str, base: dict, unit_id: str, sha: str, size: int) -> str:
    """A copy of BASE under a new snapshot id whose UNIT_ID points at object SHA; returns the id."""
    doc = json.loads(json.dumps(base))
    stamp, rest = base["id"].split("-", 1)
    host = rest.rsplit("-", 1)[0]
    doc["id"] = f"{stamp}-{host}-{secrets.token_hex(3)}"
    [unit] = [u for u in doc["units"] if u["id"] == unit_id]
    unit["object"].update(sha256=sha, size=size)
    with open(os.path.join(repo, "snapshots", f"{doc['id']}.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    return doc["id"]


def staging_leftovers(data_dir: str) -> list[str]:
    """Staging directories a restore left beside a target."""
    return glob.glob(os.path.join(os.path.dirname(data_dir.rstrip("/")), ".lifeboat-restore-*"))


def ansible_command(name: str, **args) -> list[str]:
    """The command line conftest.run_module runs (for a module the test must start and kill)."""
    return [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
            "-m", f"lifeboat.docker.{name}", "-a", json.dumps(args)]


# --------------------------------------------------------------------------------------------
# 1. round trips, listing, filters
# --------------------------------------------------------------------------------------------
def test_round_trips_of_a_volume_and_a_host_path_and_the_listing(lab):
    labels = {"com.example.app": "shop", "com.example.tier": "data"}
    vol, vol_dir = lab.volume("data", labels)
    trees.build_simple_tree(vol_dir, b"volume")
    src_dir = lab.tmpdir("src")
    trees.build_simple_tree(src_dir, b"path")
    os.chmod(src_dir, 0o750)
    os.chown(src_dir, 1000, 1000)
    vol_scan, path_scan = trees.scan_tree(vol_dir), trees.scan_tree(src_dir)
    repo = lab.repo()

    snap_a = run_module("snapshot", repository=repo, volumes=[vol], strategy="live", tags=["alpha", "both"])
    snap_b = run_module("snapshot", repository=repo, paths=[src_dir + "/"], tags=["beta", "both"])
    path_unit = f"path:{src_dir}"
    assert snap_a["changed"] and snap_a["complete"] and snap_a["failed_units"] == []
    assert list(snap_b["units"]) == [path_unit], "the path is normalised into its unit id"
    a_unit = snap_a["units"][f"volume:{vol}"]
    assert a_unit["strategy"] == "live" and a_unit["downtime"] == {}
    assert a_unit["files"] == 3 and a_unit["bytes"] == sum(
        r["size"] for r in vol_scan.values() if r["type"] == stat.S_IFREG)
    assert a_unit["bytes_read"] == a_unit["bytes"] and a_unit["reused_from"] is None
    assert os.path.getsize(object_path(repo, a_unit["sha256"])) == a_unit["bytes_stored"]

    # restore the volume into a NEW volume, the path into a new directory
    new_vol = lab.name("restored")
    res_v = run_module("snapshot_restore", repository=repo, unit=vol, target_volume=new_vol)
    assert res_v["created"] is True and res_v["previous"] is None and res_v["verified"] is True
    assert res_v["snapshot_id"] == snap_a["snapshot_id"] and res_v["target_type"] == "volume"
    assert_same_tree(vol_scan, lab.volume_dir(new_vol), "the restored volume")
    assert lab.client.volumes.get(new_vol).attrs["Labels"] == labels, "the recorded labels were not applied"
    assert os.listdir(os.path.join(repo, "tmp")) == [], "temporary files left in the repository"
    target = os.path.join(lab.tmpdir("dst"), "restored")
    res_p = run_module("snapshot_restore", repository=repo, unit=path_unit, target_path=target)
    assert res_p["target"] == target and res_p["previous"] is None and res_p["files"] == 3
    assert_same_tree(path_scan, target, "the restored host path")
    assert not staging_leftovers(target)
    # and back where it came from, over changed content (kept aside as PATH.pre-restore-TIME)
    with open(os.path.join(src_dir, "hello.txt"), "wb") as fh:
        fh.write(b"changed since the snapshot\n")
    os.unlink(os.path.join(src_dir, "sub", "config.ini"))
    res_back = run_module("snapshot_restore", repository=repo, unit=src_dir, force=True)
    assert res_back["target"] == src_dir and res_back["previous"].startswith(f"{src_dir}.pre-restore-")
    lab.dirs.append(res_back["previous"])
    assert_same_tree(path_scan, src_dir, "the host path restored in place")
    with open(os.path.join(res_back["previous"], "hello.txt"), "rb") as fh:
        assert fh.read() == b"changed since the snapshot\n", "the old content was not kept aside"

    # listing, sizes and filters
    listed = run_module("snapshot_info", repository=repo)
    host = listed["snapshots"][0]["host"]
    assert [s["id"] for s in listed["snapshots"]] == [snap_b["snapshot_id"], snap_a["snapshot_id"]], \
        "newest first"
    by_id = {s["id"]: s for s in listed["snapshots"]}
    sa, sb = by_id[snap_a["snapshot_id"]], by_id[snap_b["snapshot_id"]]
    assert sa["units"] == [f"volume:{vol}"] and sb["units"] == [path_unit]
    assert sa["bytes"] == a_unit["bytes"] and sa["files"] == 3
    assert sa["stored_bytes"] == a_unit["bytes_stored"] > 0
    assert sb["stored_bytes"] == snap_b["units"][path_unit]["bytes_stored"] > 0
    assert sb["bytes"] == sum(r["size"] for r in path_scan.values() if r["type"] == stat.S_IFREG)
    assert sa["host"] == host and sa["complete"] is True and sa["problems"] == []
    assert sa["skipped"] == [] and sa["failed"] == [] and sb["skipped"] == [] and sb["failed"] == []
    assert sa["tags"] == ["alpha", "both"] and sb["tags"] == ["beta", "both"]

    def ids(**filters):
        return [s["id"] for s in run_module("snapshot_info", repository=repo, **filters)["snapshots"]]

    assert ids(unit=vol) == [snap_a["snapshot_id"]]
    assert ids(unit=src_dir, tag="both") == [snap_b["snapshot_id"]]  # a unit by its host path
    assert ids(host=host, tag="alpha") == [snap_a["snapshot_id"]]
    assert ids(tag="both", newest=1) == [snap_b["snapshot_id"]]
    assert ids(host="no-such-host") == []


# --------------------------------------------------------------------------------------------
# 2. the fidelity volume
# --------------------------------------------------------------------------------------------
def test_fidelity_volume_restores_identically_into_a_new_volume(lab):
    require_tool("setfacl")
    require_tool("getfacl")
    vol, vol_dir = lab.volume("fidelity")
    named = trees.build_fidelity_tree(vol_dir)
    src = trees.scan_tree(vol_dir)
    # the source really has what the test is about (a builder that silently failed proves nothing)
    assert src[named["sparse"]]["alloc"] < 1 << 20 < src[named["sparse"]]["size"]
    assert src[b"acl/dir"]["xattrs"].keys() >= set(trees.ACL_XATTRS)
    assert b"system.posix_acl_access" in src[b"acl/file"]["xattrs"]
    assert b"system.posix_acl_access" in src[b"acl/dir/inherited"]["xattrs"]
    assert b"system.posix_acl_access" not in src[b"acl/dir/before-default"]["xattrs"]
    assert src[b"hl/original"]["nlink"] == 3 and src[b"big-ids"]["uid"] == trees.BIG_UID
    assert src[b"."]["uid"] == trees.NOUSER_UID and src[b"."]["mode"] == 0o2751
    assert len(named["deep"]) > 500 and len(src) > 100
    facl_src = trees.getfacl_text(vol_dir)
    repo = lab.repo()

    snap = run_module("snapshot", repository=repo, volumes=[vol], strategy="live")
    unit = snap["units"][f"volume:{vol}"]
    assert unit["files"] == sum(1 for r in src.values() if r["type"] == stat.S_IFREG)
    new_vol = lab.name("fidelity-copy")
    res = run_module("snapshot_restore", repository=repo, unit=f"volume:{vol}", target_volume=new_vol)
    assert res["created"] is True and res["verified"] is True
    new_dir = lab.volume_dir(new_vol)

    dst = trees.scan_tree(new_dir)
    problems = trees.compare_trees(src, dst)
    assert not problems, "the restored fidelity volume differs:\n" + "\n".join(problems)
    assert trees.getfacl_text(new_dir) == facl_src, "getfacl sees other ACLs after the restore"
    # spelled out, besides the generic comparison
    sparse = dst[named["sparse"]]
    assert sparse["size"] == trees.SPARSE_SIZE and sparse["alloc"] < 1 << 20, \
        f"the 64 MiB sparse file takes {sparse['alloc']} bytes after the restore"
    assert dst[named["hole"]]["alloc"] < 1 << 20
    assert dst[b"hl/original"]["inode"] == dst[b"hl/sub/second"]["inode"] == dst[b"other/third"]["inode"]
    assert dst[b"links/dangling"]["target"] == b"does/not/exist"
    assert dst[b"links/relative"]["inode"] == dst[b"links/relative-hardlinked"]["inode"], "hard-linked symlink"
    assert dst[b"modes/setuid"]["mode"] == 0o4755 and dst[b"modes/sticky"]["mode"] == 0o1777
    assert dst[b"modes/zero"]["mode"] == 0 and dst[b"plain.txt"]["mtime_ns"] == trees.OLD_MTIME_NS
    assert dst[b"."]["uid"] == trees.NOUSER_UID and dst[b"."]["gid"] == trees.NOUSER_GID
    assert dst[b"."]["mode"] == 0o2751 and dst[b"."]["xattrs"][b"user.root"] == b"the volume root"

    # the object alone restores it by hand, with no lifeboat: docs/repository-format.md's command
    by_hand = lab.tmpdir("by-hand")
    subprocess.run(f"zstd -d < {object_path(repo, unit['sha256'])} | tar -x --numeric-owner --acls --xattrs "
                   f"--xattrs-include='*' -C {by_hand}", shell=True, check=True, capture_output=True)
    problems = trees.compare_trees(src, trees.scan_tree(by_hand))
    assert not problems, "zstd -d | tar -x of the object differs:\n" + "\n".join(problems)

    # verify=restore extracts and compares it again, in a scratch place of our own
    scratch = lab.tmpdir("scratch")
    info = run_module("snapshot_info", repository=repo, verify="restore", scratch_dir=scratch)
    assert info["problems"] == [] and info["snapshots"][0]["problems"] == []
    assert os.listdir(scratch) == [], "verify=restore left its scratch directory"


# --------------------------------------------------------------------------------------------
# 3 + 7 + 8. stop with a running container; check mode; unchanged re-snapshot; restore in place
# --------------------------------------------------------------------------------------------
def test_stop_check_mode_reuse_and_restore_in_place(lab):
    vol, vol_dir = lab.volume("app")
    trees.build_simple_tree(vol_dir, b"v1")
    app = lab.container("app", vol)
    repo = lab.repo()
    started0 = lab.state(app)
    assert started0[0] == "running"

    # check mode: says what it would stop, creates no repository, stops nothing
    check = run_module("snapshot", check=True, repository=repo, volumes=[vol], strategy="stop")
    assert check["plan"] == [{"id": f"volume:{vol}", "strategy": "stop", "stop": [app]}]
    assert check["snapshot_id"] is None
    assert not os.path.exists(repo), "check mode created the repository"
    assert lab.state(app) == started0, "check mode touched the container"

    first = run_module("snapshot", repository=repo, volumes=[vol], strategy="stop")
    unit = first["units"][f"volume:{vol}"]
    assert unit["strategy"] == "stop" and unit["bytes_read"] > 1 << 20
    assert set(unit["downtime"]) == {app} and unit["downtime"][app] > 0
    status, started1 = lab.state(app)
    assert status == "running", "the container was not started again"
    assert started1 != started0[1], "the container was not stopped for the capture"
    assert lab.journals() == []
    scan_v1 = trees.scan_tree(vol_dir)

    # unchanged: nothing read, the object reused
    second = run_module("snapshot", repository=repo, volumes=[vol], strategy="stop")
    unit2 = second["units"][f"volume:{vol}"]
    assert unit2["bytes_read"] == 0 and unit2["reused_from"] == first["snapshot_id"]
    assert unit2["sha256"] == unit["sha256"] and unit2["new_bytes_stored"] == 0
    assert second["snapshot_id"] != first["snapshot_id"]

    # one file changed, same size, mtime put back: its ctime still tells, so it is read again
    hello = os.path.join(vol_dir, "hello.txt")
    st = os.stat(hello)
    with open(hello, "r+b") as fh:
        fh.write(b"HELLO")
    os.utime(hello, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = run_module("snapshot", repository=repo, volumes=[vol], strategy="stop")
    unit3 = third["units"][f"volume:{vol}"]
    assert unit3["reused_from"] is None and unit3["bytes_read"] == unit["bytes"]
    assert unit3["sha256"] != unit["sha256"]
    scan_changed = trees.scan_tree(vol_dir)

    # restore in check mode (+ diff): into a new volume and over the live one; nothing happens
    started_before = lab.state(app)
    new_vol = lab.name("copy")
    plan_new = run_module("snapshot_restore", check=True, repository=repo, unit=vol, target_volume=new_vol)
    assert plan_new["plan"]["create_volume"] is True and plan_new["plan"]["exists"] is False
    assert lab.volumes_named(new_vol) == [], "check mode created the volume"
    plan_in_place = run_module("snapshot_restore", check=True, diff=True, repository=repo, unit=vol,
                               snapshot=first["snapshot_id"], force=True)
    assert plan_in_place["plan"]["needs_force"] is True and plan_in_place["plan"]["stop"] == [app]
    assert plan_in_place["diff"]["before"]["files"] == 3
    assert lab.state(app) == started_before, "check mode stopped the container"
    assert_same_tree(scan_changed, vol_dir, "the volume after check-mode restores")
    assert lab.volumes_named(f"{vol}.pre-restore") == []

    # restore the first snapshot over the live volume: container stopped for the swap, started
    res = run_module("snapshot_restore", repository=repo, unit=vol, snapshot=first["snapshot_id"], force=True)
    assert res["previous"] and res["previous"].startswith(f"{vol}.pre-restore-")
    assert set(res["downtime"]) == {app}
    assert lab.state(app)[0] == "running" and lab.state(app)[1] != started_before[1]
    assert_same_tree(scan_v1, vol_dir, "the volume restored in place")
    assert docker_cli("exec", app, "cat", "/data/hello.txt") == "hello v1\n", \
        "the container does not see the restored content"
    aside = lab.client.volumes.get(res["previous"])
    assert aside.attrs["Labels"].get("lifeboat.pre-restore-of") == vol
    with open(os.path.join(aside.attrs["Mountpoint"], "hello.txt"), "rb") as fh:
        assert fh.read() == b"HELLO v1\n", "the old content was not kept aside"
    assert not staging_leftovers(vol_dir) and lab.journals() == []


# --------------------------------------------------------------------------------------------
# 3. stop, and the capture fails: a repository on a tiny filesystem that fills up
# --------------------------------------------------------------------------------------------
def test_full_repository_fails_clearly_and_the_container_runs_again(lab):
    vol, vol_dir = lab.volume("big")
    with open(os.path.join(vol_dir, "incompressible.bin"), "wb") as fh:
        fh.write(os.urandom(4 << 20))
    app = lab.container("app", vol)
    started0 = lab.state(app)
    repo = lab.tmpdir("tiny")
    lab.mount_tmpfs(repo, "1m")

    failed = run_module("snapshot", expect_fail=True, repository=repo, volumes=[vol], strategy="stop")
    assert "full" in failed["msg"] and repo in failed["msg"], failed["msg"]
    assert failed["snapshot_id"] is None and failed["failed_units"][0]["id"] == f"volume:{vol}"
    status, started = lab.state(app)
    assert status == "running", "the container was left stopped after the capture failed"
    assert started != started0[1], "the container was never stopped: the test proves nothing"
    assert lab.journals() == []

    listed = run_module("snapshot_info", repository=repo)
    assert listed["snapshots"] == [] and listed["problems"] == []
    assert manifests(repo) == []
    assert os.listdir(os.path.join(repo, "tmp")) == [], "the partial object was left in tmp/"


# --------------------------------------------------------------------------------------------
# 4. SIGKILL mid-capture, then the next run repairs
# --------------------------------------------------------------------------------------------
class SlowCapture:
    """A `stop` snapshot of a volume of random data at zstd -19, started as its own process.

    start() returns once the module has journalled and stopped the container and its capture is
    running; kill(sig) signals the module process (the pid its journal names, checked to be a
    descendant of the ansible process this test started) and waits for ansible to return.
    """

    def __init__(self, lab: Lab, mib: int) -> None:
        self.lab = lab
        self.vol, vol_dir = lab.volume("slow")
        with open(os.path.join(vol_dir, "media.bin"), "wb") as fh:
            for _mib in range(mib):
                fh.write(os.urandom(1 << 20))  # zstd -19 takes ~0.3 s per MiB of this
        self.app = lab.container("app", self.vol)
        self.repo = lab.repo()
        self.jdir = os.path.join(lab.state_dir, "journal")
        self.proc: subprocess.Popen | None = None
        self.pid = 0
        self.journal = ""
        self.helpers: list[tuple[int, str | None]] = []

    def start(self) -> "SlowCapture":
        self.proc = subprocess.Popen(ansible_command("snapshot", repository=self.repo, volumes=[self.vol],
                                                     strategy="stop", compression_level=19),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_ansible_env(), cwd=ROOT)
        self.lab.pids.append((self.proc.pid, proc_start(self.proc.pid)))
        try:
            self.journal = wait_for("the journal", lambda: glob.glob(os.path.join(self.jdir, "*.json")), 60)[0]
            with open(self.journal, encoding="utf-8") as fh:
                self.pid = json.load(fh)["pid"]
            assert descends_from(self.pid, self.proc.pid), f"journal pid {self.pid} is not the module started here"
            wait_for("the container to stop", lambda: self.lab.state(self.app)[0] == "exited", 30)
            wait_for("the capture to start",
                     lambda: glob.glob(os.path.join(self.repo, "tmp", f"{self.pid}-*.part")), 30)
            time.sleep(1)
            assert alive(self.pid) and manifests(self.repo) == [], "the capture ended before the test could kill it"
            self.helpers = [(child, proc_start(child)) for child in children_of(self.pid)]  # tar and zstd
            self.lab.pids.extend(self.helpers)
        except BaseException:
            self.proc.kill()
            self.proc.communicate()
            raise
        return self

    def kill(self, sig: int) -> str:
        """Signal the module; ansible's output once it returned."""
        os.kill(self.pid, sig)
        try:
            out, _err = self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        return out.decode(errors="replace")

    def end_orphans(self) -> None:
        """tar and zstd of a killed module die of SIGPIPE at their next write; don't wait for zstd -19."""
        for helper, started in self.helpers:
            if started is not None and proc_start(helper) == started:
                os.kill(helper, signal.SIGKILL)


def test_sigterm_mid_capture_starts_the_container_before_exiting(lab):
    slow = SlowCapture(lab, 32).start()
    slow.kill(signal.SIGTERM)
    assert slow.proc.returncode != 0
    assert lab.state(slow.app)[0] == "running", "SIGTERM left the container stopped"
    assert lab.journals() == [], "the journal was not cleared on the way out"
    assert not alive(slow.pid)
    assert slow.helpers, "the capture's tar and zstd were not found"
    for helper, started in slow.helpers:
        assert started is None or proc_start(helper) != started, \
            f"tar or zstd (pid {helper}) outlived the terminated module"
    assert manifests(slow.repo) == [] and os.listdir(os.path.join(slow.repo, "tmp")) == []


def test_sigkill_mid_capture_is_repaired_by_the_next_run(lab):
    slow = SlowCapture(lab, 64).start()
    app, repo, jdir, pid, journal = slow.app, slow.repo, slow.jdir, slow.pid, slow.journal
    slow.kill(signal.SIGKILL)
    slow.end_orphans()
    proc = slow.proc
    vol = slow.vol
    assert proc.returncode != 0
    assert lab.state(app)[0] == "exited", "the killed run should have left the container stopped"
    assert os.path.exists(journal)

    info = run_module("snapshot_info", repository=repo)
    repaired = [r for r in info["repaired"] if r["container"] == app]
    assert repaired and repaired[0]["result"] == "started", info["repaired"]
    assert info["changed"] is True
    assert lab.state(app)[0] == "running", "snapshot_info did not start the container again"
    assert os.listdir(jdir) == [], "the journal was not cleared"
    assert info["snapshots"] == [] and manifests(repo) == []

    again = run_module("snapshot", repository=repo, volumes=[vol], strategy="stop")
    assert again["complete"] is True and again["repaired"] == []
    assert again["cleaned"] and all(c.startswith(f"tmp/{pid}-") for c in again["cleaned"]), again["cleaned"]
    assert os.listdir(os.path.join(repo, "tmp")) == []
    assert lab.state(app)[0] == "running"
    assert [s["id"] for s in run_module("snapshot_info", repository=repo)["snapshots"]] == [again["snapshot_id"]]


# --------------------------------------------------------------------------------------------
# 5. one flipped byte in an object
# --------------------------------------------------------------------------------------------
def test_flipped_byte_is_refused_on_restore_and_reported_by_verify(lab):
    vol, vol_dir = lab.volume("precious")
    trees.build_simple_tree(vol_dir, b"precious")
    other, other_dir = lab.volume("other")
    trees.build_simple_tree(other_dir, b"other")
    repo = lab.repo()
    snap = run_module("snapshot", repository=repo, volumes=[vol, other], strategy="live")
    sha = snap["units"][f"volume:{vol}"]["sha256"]
    path = object_path(repo, sha)
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    data[len(data) // 2] ^= 0x01
    with open(path, "wb") as fh:
        fh.write(data)
    before = trees.scan_tree(vol_dir)

    failed = run_module("snapshot_restore", expect_fail=True, repository=repo, unit=vol, force=True)
    assert "damaged" in failed["msg"] and sha in failed["msg"], failed["msg"]
    assert_same_tree(before, vol_dir, "the volume after a refused restore")
    assert lab.volumes_named(f"{vol}.pre-restore") == [] and not staging_leftovers(vol_dir)

    # a manifest damaged too (cut short): reported as a problem of that snapshot, the listing goes on
    base = read_manifest(repo, snap["snapshot_id"])
    stamp, rest = base["id"].split("-", 1)
    cut_id = f"{stamp}-{rest.rsplit('-', 1)[0]}-{secrets.token_hex(3)}"
    with open(os.path.join(repo, "snapshots", f"{cut_id}.json"), "w", encoding="utf-8") as fh:
        fh.write(json.dumps(base)[:200])

    info = run_module("snapshot_info", repository=repo, verify="checksum")
    [entry] = info["snapshots"]
    assert entry["id"] == snap["snapshot_id"]
    assert [p["unit"] for p in entry["problems"]] == [f"volume:{vol}"], entry["problems"]
    assert "damaged" in entry["problems"][0]["problem"] and sha in entry["problems"][0]["problem"]
    assert sorted((p["snapshot"], p["unit"]) for p in info["problems"]) == \
        sorted([(snap["snapshot_id"], f"volume:{vol}"), (cut_id, None)]), info["problems"]


# --------------------------------------------------------------------------------------------
# 6. archives crafted to escape the target
# --------------------------------------------------------------------------------------------
def crafted_tar(members: list[tuple[str, str, bytes | str]]) -> bytes:
    """(kind, name, data or link target) -> a POSIX tar, as an attacker would hand-make it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dot = tarfile.TarInfo("./")
        dot.type, dot.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(dot)
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "file":
                info.size, info.mode = len(payload), 0o644
                tar.addfile(info, io.BytesIO(payload))
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = payload
                tar.addfile(info)
    return buf.getvalue()


def test_archives_crafted_to_escape_are_refused(lab):
    vol, vol_dir = lab.volume("target")
    trees.build_simple_tree(vol_dir, b"target")
    repo = lab.repo()
    snap = run_module("snapshot", repository=repo, volumes=[vol], strategy="live")
    base = read_manifest(repo, snap["snapshot_id"])
    outside = lab.tmpdir("outside")
    victim = os.path.join(outside, "victim")
    with open(victim, "wb") as fh:
        fh.write(b"must stay\n")
    beside = os.path.dirname(vol_dir.rstrip("/"))  # where ../ from the staging directory lands
    cases = {
        "symlink-then-write": ([("symlink", "./esc", outside), ("file", "./esc/pwned", b"pwned\n")], "esc"),
        "dot-dot": ([("file", "./../pwned", b"pwned\n")], ".."),
        "absolute": ([("file", os.path.join(outside, "pwned"), b"pwned\n")], "absolute"),
        "hardlink-absolute": ([("hardlink", "./hl", victim), ("file", "./hl", b"pwned\n")], "absolute"),
        "hardlink-through-symlink": ([("symlink", "./esc", outside), ("hardlink", "./hl", "esc/victim"),
                                      ("file", "./hl", b"pwned\n")], "symlink"),
        "hardlink-to-symlink-then-write": ([("symlink", "./esc", outside), ("hardlink", "./hl", "esc"),
                                            ("file", "./hl/pwned", b"pwned\n")], "symlink"),
        # By design the checker lets a directory member take a symlink's name (GNU tar extracts a
        # symlink to an absolute or '..' target as a placeholder file, then replaces it with the
        # directory): whatever refuses it, nothing may land outside. The index check fails it.
        "directory-over-symlink-then-write": ([("symlink", "./esc", outside), ("dir", "./esc", ""),
                                               ("file", "./esc/pwned", b"pwned\n")], None),
    }
    before = trees.scan_tree(vol_dir)
    for case, (members, says) in cases.items():
        sha, size = store_object(repo, zstd(crafted_tar(members)))
        sid = write_variant_manifest(repo, base, f"volume:{vol}", sha, size)
        failed = run_module("snapshot_restore", expect_fail=True, repository=repo, snapshot=sid, unit=vol,
                            force=True)
        msg = failed["msg"]
        if says is not None:
            assert "refused" in msg and "unsafe" in msg and says in msg, f"{case}: {msg}"
        assert sorted(os.listdir(outside)) == ["victim"], f"{case}: something was written outside"
        assert os.stat(victim).st_nlink == 1 and open(victim, "rb").read() == b"must stay\n", case
        assert not os.path.lexists(os.path.join(beside, "pwned")), f"{case}: ../pwned was written"
        assert not os.path.lexists(os.path.join(os.path.dirname(beside), "pwned")), case
        assert_same_tree(before, vol_dir, f"the target after the refused {case}")
        assert lab.volumes_named(f"{vol}.pre-restore") == [] and not staging_leftovers(vol_dir), case


# --------------------------------------------------------------------------------------------
# 9. errors that must be clear
# --------------------------------------------------------------------------------------------
def test_clear_errors(lab):
    vol, vol_dir = lab.volume("known")
    trees.build_simple_tree(vol_dir, b"known")
    repo = lab.repo()

    unknown = run_module("snapshot", expect_fail=True, repository=repo, volumes=[lab.name("nope")])
    assert f"volume:{lab.name('nope')}" in unknown["msg"] and f"volume:{vol}" in unknown["msg"], unknown["msg"]
    assert "units of this host" in unknown["msg"]
    assert not os.path.exists(repo), "a failed selection created the repository"

    relative = run_module("snapshot", expect_fail=True, repository="relative/repository", volumes=[vol])
    assert "not absolute" in relative["msg"], relative["msg"]
    assert not os.path.exists(os.path.join(ROOT, "relative"))

    run_module("snapshot", repository=repo, volumes=[vol], strategy="live")
    before = trees.scan_tree(vol_dir)
    refused = run_module("snapshot_restore", expect_fail=True, repository=repo, unit=vol)
    assert "not empty" in refused["msg"] and "force" in refused["msg"], refused["msg"]
    assert_same_tree(before, vol_dir, "the target after a restore refused for want of force")
    assert lab.volumes_named(f"{vol}.pre-restore") == [] and not staging_leftovers(vol_dir)
