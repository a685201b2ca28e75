"""Browsing and one file back (issue 23) on the real engine: a volume with files of several owners,
modes and an extended attribute is captured, a file deleted and another changed, captured again;
`ls` finds the deleted file in the first snapshot, `diff` shows it removed and the other changed,
and a restore of that one path brings it back alone (owner, mode, xattr, content) into a directory
of its own while the volume stays as it is. From a local repository, and from an encrypted sftp://
repository (the SFTP server and age key fixtures of test_store_sftp.py and test_encryption.py),
through the modules and through scripts/lifeboat.sh; and the refusals.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, run_module
from fixtures import trees
from fixtures.lab import lab  # noqa: F401 pylint: disable=unused-import
from test_encryption import keypair
from test_store_sftp import HOME, sshd  # noqa: F401 pylint: disable=unused-import

GONE, CHANGED = "docs/report.txt", "app/config.yml"
GONE_BODY = b"quarterly numbers\n" * 40


def fill(data_dir: str) -> None:
    """Files of several owners and modes; the one to delete has an extended attribute."""
    def put(rel: str, body: bytes, mode: int, uid: int, gid: int) -> None:
        path = os.path.join(data_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(body)
        os.chown(path, uid, gid)
        os.chmod(path, mode)

    os.makedirs(os.path.join(data_dir, "docs"))
    os.chown(os.path.join(data_dir, "docs"), 1000, 1000)
    os.chmod(os.path.join(data_dir, "docs"), 0o750)
    put(GONE, GONE_BODY, 0o640, 1000, 1001)
    os.setxattr(os.path.join(data_dir, GONE), "user.lifeboat.note", b"keep me")
    put("docs/notes.md", b"notes\n", 0o600, 33, 33)
    put(CHANGED, b"port: 80\n", 0o644, 0, 0)
    put("app/cache/blob", b"\0" * 4096, 0o660, 1001, 1001)
    os.symlink("app", os.path.join(data_dir, "current"))


def scenario(lab, repo: str, extra: dict, run=run_module) -> dict:  # noqa: F811
    """Snapshot, delete and change, snapshot again; then ls, diff and the one file back, checked.
    RUN runs a module (run_module, or a wrapper of it). Returns the names for the callers' further checks."""
    volume, data_dir = lab.volume("data")
    fill(data_dir)
    first = run("snapshot", repository=repo, volumes=[volume], strategy="live", **extra)["snapshot_id"]
    os.unlink(os.path.join(data_dir, GONE))
    with open(os.path.join(data_dir, CHANGED), "wb") as fh:
        fh.write(b"port: 8080\nhost: 0.0.0.0\n")
    second = run("snapshot", repository=repo, volumes=[volume], strategy="live", **extra)["snapshot_id"]
    unit = f"volume:{volume}"

    listed = run("snapshot_files", repository=repo, snapshot=first, unit=volume, paths=["docs"], **extra)
    by_path = {e["path"]: e for e in listed["entries"]}
    assert set(by_path) == {"docs", GONE, "docs/notes.md"}, by_path
    assert by_path[GONE] == {"path": GONE, "kind": "f", "size": len(GONE_BODY), "mode": "0640", "uid": 1000,
                             "gid": 1001, "mtime": by_path[GONE]["mtime"], "link_target": None}
    assert listed["matched"] == 3 and not listed["truncated"] and listed["snapshot_id"] == first
    globbed = run("snapshot_files", repository=repo, snapshot=first, unit=unit, paths=["*.txt", "curr*"], **extra)
    assert [(e["path"], e["link_target"]) for e in globbed["entries"]] == [("current", "app"), (GONE, None)]
    latest = run("snapshot_files", repository=repo, unit=unit, **extra)
    assert latest["snapshot_id"] == second and GONE not in {e["path"] for e in latest["entries"]}
    missing = run("snapshot_files", expect_fail=True, repository=repo, unit=unit, paths=[GONE], **extra)
    assert repr(GONE) in missing["msg"] and "lifeboat.sh ls" in missing["msg"], missing["msg"]

    diff = run("snapshot_diff", repository=repo, unit=unit, **extra)  # latest vs its previous
    assert (diff["base_id"], diff["snapshot_id"]) == (first, second)
    assert [e["path"] for e in diff["removed"]] == [GONE] and diff["added"] == []
    changed = {e["path"]: e["changes"] for e in diff["changed"]}
    assert changed[CHANGED]["size"] == [9, 25], changed
    assert set(changed) <= {CHANGED, "docs", "app", "."}, changed  # and the directories' times
    narrowed = run("snapshot_diff", repository=repo, base=first, snapshot=second, unit=unit, paths=["app"], **extra)
    assert narrowed["counts"]["removed"] == 0 and [e["path"] for e in narrowed["changed"]] == [CHANGED]

    before = trees.scan_tree(data_dir)
    done = run("snapshot_restore", repository=repo, snapshot=first, unit=unit, paths=[GONE], **extra)
    target = done["target"]
    assert target == os.path.join(lab.state_dir, "restored", first, f"volume_{volume}"), target
    assert done["verified"] and done["restored"] == 2 and done["files"] == 1 and done["kept_aside"] == []
    got = trees.scan_tree(target)
    assert sorted(got) == [b".", b"docs", b"docs/report.txt"], sorted(got)
    src_first = os.path.join(target, GONE)
    st = os.lstat(src_first)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1001, 0o640)
    assert os.getxattr(src_first, "user.lifeboat.note") == b"keep me"
    with open(src_first, "rb") as fh:
        assert fh.read() == GONE_BODY
    docs = os.lstat(os.path.join(target, "docs"))
    assert (docs.st_uid, docs.st_gid, docs.st_mode & 0o7777) == (1000, 1000, 0o750)
    assert not trees.compare_trees(before, trees.scan_tree(data_dir)), "the restore touched the volume"
    return {"volume": volume, "unit": unit, "first": first, "second": second, "target": target,
            "data_dir": data_dir}


def lifeboat_sh(*args: str, expect_rc: int = 0) -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "lifeboat.sh"), *args], capture_output=True, text=True,
                          env=dict(os.environ, ANSIBLE_FORCE_COLOR="0"), timeout=300, check=False)
    assert proc.returncode == expect_rc, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_local_repository(lab):  # noqa: F811
    repo = lab.repo()
    got = scenario(lab, repo, {})
    unit, first, second = got["unit"], got["first"], got["second"]

    # refusals: what exists without force, a target in /etc, '..', nothing matching, a database unit's option
    again = run_module("snapshot_restore", expect_fail=True, repository=repo, snapshot=first, unit=unit, paths=[GONE])
    assert "already exist" in again["msg"] and "force: true" in again["msg"], again["msg"]
    forced = run_module("snapshot_restore", repository=repo, snapshot=first, unit=unit, paths=[GONE], force=True)
    assert [os.path.dirname(p) for p in forced["kept_aside"]] == [os.path.join(got["target"], "docs")]
    assert os.path.basename(forced["kept_aside"][0]).startswith("report.txt.pre-restore-")
    etc = run_module("snapshot_restore", expect_fail=True, repository=repo, snapshot=first, unit=unit, paths=[GONE],
                     target_path=f"/etc/{lab.prefix}")
    assert "/etc" in etc["msg"] and "refusing" in etc["msg"] and not os.path.exists(f"/etc/{lab.prefix}"), etc["msg"]
    dotdot = run_module("snapshot_restore", expect_fail=True, repository=repo, snapshot=first, unit=unit,
                        paths=["../x"])
    assert "'..'" in dotdot["msg"], dotdot["msg"]
    none = run_module("snapshot_restore", expect_fail=True, repository=repo, snapshot=first, unit=unit,
                      paths=["docs/nothing*"])
    assert "'docs/nothing*'" in none["msg"] and f"lifeboat.sh ls {first} {unit}" in none["msg"], none["msg"]
    plan = run_module("snapshot_restore", check=True, repository=repo, snapshot=first, unit=unit, paths=["app"],
                      target_path=lab.tmpdir("plan") + "/t")
    assert plan["plan"]["needs_force"] is False and plan["restored"] == 4 and not os.path.exists(plan["target"])

    # the same by lifeboat.sh, for a person at a terminal
    out = lifeboat_sh("ls", first, unit, "docs", "-e", f"lifeboat_repository={repo}")
    assert f"{unit} in snapshot {first}: 3 entries" in out, out
    assert any(line.startswith("-rw-r-----  1000  1001") and line.endswith(f" {GONE}") for line in out.splitlines()), out
    out = lifeboat_sh("diff", second, unit, "-e", f"lifeboat_repository={repo}")
    assert f"- {GONE}" in out.splitlines() and any(line.startswith(f"M {CHANGED}  (size 9 -> 25") for line in
                                                   out.splitlines()), out
    out = lifeboat_sh("diff", first, second, unit, "-e", f"lifeboat_repository={repo}")
    assert f"- {GONE}" in out.splitlines(), out
    dest = os.path.join(lab.tmpdir("dest"), "here")
    out = lifeboat_sh("restore-file", first, unit, GONE, dest, "-e", f"lifeboat_repository={repo}")
    assert f"into {dest} (verified against the index)" in out and os.path.isfile(os.path.join(dest, GONE)), out
    out = lifeboat_sh("restore-file", first, unit, GONE, dest, "-e", f"lifeboat_repository={repo}", expect_rc=1)
    assert "already exist" in out, out
    assert lifeboat_sh("ls", first, expect_rc=2).count("usage:") == 1


@pytest.fixture()
def key(lab):  # noqa: F811
    return keypair(lab, "age")


def test_encrypted_sftp_repository(lab, sshd, key):  # noqa: F811
    identity, recipient = key
    repo = sshd.url(f"{HOME}/browse-{lab.prefix}")
    snap_extra = dict(sshd.options)
    # the snapshots are encrypted to the recipient; every reader gets the identity
    read_args = {**snap_extra, "encryption_identity": identity}

    def run(name, **args):
        if name == "snapshot":
            args.pop("encryption_identity", None)
            args["encryption_recipients"] = [recipient]
        return run_module(name, **args)

    got = scenario(lab, repo, read_args, run)
    record = json.loads(sshd.exec("cat", f"{HOME}/browse-{lab.prefix}/snapshots/{got['first']}.json"))
    assert record["encryption"]["scheme"] == "age", "the repository is not encrypted: the test proves nothing"
    keyless = run_module("snapshot_files", expect_fail=True, repository=repo, unit=got["unit"], **snap_extra)
    assert "encryption_identity" in keyless["msg"], keyless["msg"]

    # lifeboat.sh passes the store options and the identity through
    options = json.dumps({"lifeboat_repository": repo, "lifeboat_store_options": snap_extra,
                          "lifeboat_encryption_identity": identity})
    out = lifeboat_sh("ls", got["first"], got["unit"], "docs/*.txt", "-e", options)
    assert out.rstrip().endswith(f" {GONE}") and "1 entries" in out, out
    # and takes the SSH key, known_hosts and age identity as content (from a vault), as the roles do
    as_content = json.dumps({"lifeboat_repository": repo,
                             "lifeboat_encryption_identity_content": Path(identity).read_text(encoding="utf-8"),
                             "lifeboat_store_secrets": {name: Path(path).read_text(encoding="utf-8")
                                                        for name, path in snap_extra.items()}})
    # into the default target, which holds docs/report.txt from the scenario: kept aside with force
    out = lifeboat_sh("restore-file", got["first"], got["unit"], "docs", "-e", as_content, "-e", "browse_force=true")
    assert "restored 3 entries" in out and f"kept aside (was in the way): {got['target']}/{GONE}.pre-restore-" in out, out
    assert not any(line in out for line in sshd.secrets), "the private key reached the output"
