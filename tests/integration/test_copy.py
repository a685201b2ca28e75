"""Integration tests of lifeboat.docker.snapshot_copy (issue 6) between local repositories.

The remote stores' own tests (test_store_*.py) copy through their stores too; here: what is
copied and skipped, idempotence, check mode, encrypted snapshots copied without a key, a damaged
source object (its snapshot is not listed in the target, the others are), and that a restore from
the copy gives the volume back.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

from conftest import run_module
from fixtures import trees
from fixtures.lab import lab  # noqa: F401 pylint: disable=unused-import


def objects(repo: str) -> set[str]:
    return {os.path.basename(p) for p in glob.glob(os.path.join(repo, "objects", "*", "*"))}


def test_copy_skips_what_the_target_has_and_lands_manifests_last(lab):
    vol_a, dir_a = lab.volume("a")
    vol_b, dir_b = lab.volume("b")
    trees.build_simple_tree(dir_a, b"a")
    trees.build_simple_tree(dir_b, b"b")
    with open(os.path.join(dir_b, "only-in-b.txt"), "w", encoding="utf-8") as fh:
        fh.write("b has one more file, so the two indexes differ too\n")
    source, target = lab.repo("source"), lab.repo("target")
    first = run_module("snapshot", repository=source, volumes=[vol_a, vol_b], strategy="live")["snapshot_id"]
    second = run_module("snapshot", repository=source, volumes=[vol_a], strategy="live")["snapshot_id"]  # unchanged

    preview = run_module("snapshot_copy", check=True, repository=source, target_repository=target)
    assert preview["changed"] is True and preview["copied"] == [first, second]
    assert not os.path.exists(target), "check mode wrote the target"

    one = run_module("snapshot_copy", repository=source, target_repository=target, snapshots=[first])
    assert one["copied"] == [first] and one["failed_snapshots"] == []
    assert one["objects_copied"] == 4 and one["bytes_copied"] > 0  # two volumes: object + index each
    assert objects(target) == objects(source)

    rest = run_module("snapshot_copy", repository=source, target_repository=target)
    assert rest["copied"] == [second] and rest["present"] == [first]
    assert rest["objects_copied"] == 0 and rest["objects_present"] == 2, "the unchanged volume was copied again"
    again = run_module("snapshot_copy", repository=source, target_repository=target)
    assert again["changed"] is False and again["copied"] == [] and again["present"] == [first, second]

    listed = run_module("snapshot_info", repository=target, verify="checksum")
    assert [s["id"] for s in listed["snapshots"]] == [second, first] and listed["problems"] == []
    back = lab.name("back")
    run_module("snapshot_restore", repository=target, snapshot=first, unit=vol_b, target_volume=back)
    assert not trees.compare_trees(trees.scan_tree(dir_b), trees.scan_tree(lab.volume_dir(back)))


def test_damaged_source_object_fails_its_snapshot_only(lab):
    vol_a, dir_a = lab.volume("a")
    vol_b, dir_b = lab.volume("b")
    trees.build_simple_tree(dir_a, b"a")
    trees.build_simple_tree(dir_b, b"b")
    source, target = lab.repo("source"), lab.repo("target")
    snap_a = run_module("snapshot", repository=source, volumes=[vol_a], strategy="live")
    snap_b = run_module("snapshot", repository=source, volumes=[vol_b], strategy="live")
    sha = snap_a["units"][f"volume:{vol_a}"]["sha256"]
    path = os.path.join(source, "objects", sha[:2], sha)
    with open(path, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))

    failed = run_module("snapshot_copy", expect_fail=True, repository=source, target_repository=target)
    assert failed["copied"] == [snap_b["snapshot_id"]]
    [bad] = failed["failed_snapshots"]
    assert bad["id"] == snap_a["snapshot_id"] and "damaged" in bad["error"] and sha in failed["msg"]
    listed = run_module("snapshot_info", repository=target)
    assert [s["id"] for s in listed["snapshots"]] == [snap_b["snapshot_id"]], "a snapshot with a damaged object was listed"
    assert sha not in objects(target) and os.listdir(os.path.join(target, "tmp")) == []


def test_encrypted_snapshots_copy_without_a_key(lab):
    key_dir = lab.tmpdir("key")
    identity = os.path.join(key_dir, "id.txt")
    subprocess.run(["age-keygen", "-o", identity], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", identity], check=True, capture_output=True, text=True).stdout.strip()
    vol, vol_dir = lab.volume("enc")
    trees.build_simple_tree(vol_dir, b"enc")
    source, target = lab.repo("source"), lab.repo("target")
    snap = run_module("snapshot", repository=source, volumes=[vol], strategy="live", encryption_recipients=[recipient])
    copied = run_module("snapshot_copy", repository=source, target_repository=target, snapshots=["latest"])
    assert copied["copied"] == [snap["snapshot_id"]]
    with open(os.path.join(source, "snapshots", f"{snap['snapshot_id']}.json"), encoding="utf-8") as fh:
        deployment = json.load(fh).get("deployment", {}).get("objects", [])
    # object, index, the encrypted manifest, and the deployment's (the engine's containers' environment values)
    assert copied["objects_copied"] == 3 + len(deployment)
    back = lab.name("back")
    run_module("snapshot_restore", repository=target, unit=vol, target_volume=back, encryption_identity=identity)
    assert not trees.compare_trees(trees.scan_tree(vol_dir), trees.scan_tree(lab.volume_dir(back)))

    same = run_module("snapshot_copy", expect_fail=True, repository=source, target_repository=source)
    assert "same" in same["msg"]
    unknown = run_module("snapshot_copy", expect_fail=True, repository=source, target_repository=target,
                         snapshots=["20200101T000000Z-nohost-abcdef"])
    assert "not in the source repository" in unknown["msg"]
    bad_opt = run_module("snapshot_copy", expect_fail=True, repository=source, target_repository=target,
                         target_options={"secret": "x"})
    assert "unknown settings secret" in bad_opt["msg"]
