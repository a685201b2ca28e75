"""The prune's garbage collection (_gc): which keys are objects, which objects the kept manifests still
need, and a prune of a real local repository (forget, collect, and nothing deleted in check mode or
while a manifest is damaged)."""

from __future__ import annotations

import datetime

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import gc as _gc
from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.retention import Policy

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
NOW = datetime.datetime(2026, 12, 3, tzinfo=datetime.timezone.utc)


def manifest(sid: str, *shas: str) -> dict:
    return {"format": mf.MANIFEST_FORMAT, "version": 1, "id": sid, "host": sid.split("-")[1],
            "time": mf.iso(mf.parse_snapshot_id(sid)[0]), "tags": [],
            "units": [{"id": f"volume:v{i}", "source": {"type": "volume", "name": f"v{i}"},
                       "object": {"sha256": sha, "size": 3}, "bytes": 3, "files": 1} for i, sha in enumerate(shas)]}


def result() -> dict:
    return {"changed": False, "kept": [], "removed": [], "objects_removed": 0, "bytes_freed": 0, "objects_kept": 0,
            "stale_removed": [], "problems": []}


def test_object_entries_keep_only_object_names():
    keys = [mf.object_key(A), "objects/aa/not-a-sha", f"objects/bb/{A}", "objects/README"]
    assert _gc.object_entries(keys) == [(mf.object_key(A), A)]


def test_a_file_under_snapshots_not_named_like_a_manifest_is_a_problem():
    problems = _gc.stray_problems(["snapshots/20260101T000000Z-h-000001.json", "snapshots/old.json.bak"])
    assert [p["snapshot"] for p in problems] == ["snapshots/old.json.bak"]
    assert "move it out of snapshots/" in problems[0]["problem"]


def test_objects_of_forgotten_snapshots_go_and_shared_ones_stay():
    kept_man, gone_man = manifest("20261101T000000Z-h-000001", A, B), manifest("20261102T000000Z-h-000002", B, C)
    needed = _gc.referenced([kept_man, gone_man], forgotten={gone_man["id"]})
    assert needed == {A, B}
    objects = [(mf.object_key(s), s) for s in (A, B, C, D)]
    assert _gc.sweep(objects, needed) == ([mf.object_key(C), mf.object_key(D)], 2)


def repository(tmp_path):
    repo = Repository.open(str(tmp_path / "repo"), create=True)
    for sha in (A, B, C):
        writer = repo.store.open_writer()
        writer.write(b"abc")
        writer.commit(mf.object_key(sha))
    repo.write_manifest(manifest("20261101T000000Z-h-000001", A, B))
    repo.write_manifest(manifest("20261102T000000Z-h-000002", B, C))
    return repo


def test_prune_forgets_then_deletes_what_no_manifest_needs(tmp_path):
    repo = repository(tmp_path)
    out = result()
    _gc.prune(repo, Policy(keep_last=1), out, host=None, check=False, now=NOW)
    assert out["removed"] == ["20261101T000000Z-h-000001"] and [k["id"] for k in out["kept"]] == ["20261102T000000Z-h-000002"]
    assert out["objects_removed"] == 1 and out["bytes_freed"] == 3 and out["objects_kept"] == 2 and out["changed"]
    assert not repo.store.exists(mf.object_key(A)) and repo.store.exists(mf.object_key(B))
    assert [m["id"] for m in repo.manifests()[0]] == ["20261102T000000Z-h-000002"]


def test_check_mode_says_the_same_and_deletes_nothing(tmp_path):
    repo = repository(tmp_path)
    out = result()
    _gc.prune(repo, Policy(keep_last=1), out, host=None, check=True, now=NOW)
    assert out["removed"] == ["20261101T000000Z-h-000001"] and out["objects_removed"] == 1 and out["changed"]
    assert repo.store.exists(mf.object_key(A)) and len(repo.manifests()[0]) == 2


def test_a_damaged_manifest_keeps_every_object(tmp_path):
    repo = repository(tmp_path)
    (tmp_path / "repo" / "snapshots" / "20261103T000000Z-h-000003.json").write_text("{not json")
    out = result()
    _gc.prune(repo, Policy(keep_last=1), out, host=None, check=False, now=NOW)
    assert [p["snapshot"] for p in out["problems"]] == ["20261103T000000Z-h-000003"]
    assert out["objects_removed"] == 0 and out["objects_kept"] == 3 and repo.store.exists(mf.object_key(A))


def test_only_the_given_hosts_snapshots_are_considered(tmp_path):
    repo = repository(tmp_path)
    repo.write_manifest(manifest("20261001T000000Z-g-000004", A))
    out = result()
    _gc.prune(repo, Policy(keep_last=1), out, host="g", check=False, now=NOW)
    assert out["removed"] == [] and out["objects_removed"] == 0
