"""What a prune relies on in the snapshot code: a snapshot holds the repository lock (shared) until
its manifest is written, so that a prune (exclusive) never sees objects that no manifest names yet
and deletes them under a snapshot about to be listed."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._common.locks import Lock, LockTimeout
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.capture import SnapshotRun


def test_the_manifest_is_written_while_the_repository_is_held(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFEBOAT_STATE_DIR", str(tmp_path / "state"))
    repo = Repository.open(str(tmp_path / "repo"), create=True)
    run = SnapshotRun(None, repo, {"host": "web1"})
    unit = {"id": "volume:app", "kind": "volume", "strategy": "live"}
    entry = {"id": "volume:app", "object": {"sha256": "a" * 64, "size": 1}, "index": {"sha256": "b" * 64, "size": 1}}

    def fake_group(group, journal, lock_timeout, client_factory):
        return [(unit, (entry, {"strategy": "live"}), None)]

    seen = {}

    def write_manifest(manifest):
        prune_lock = Lock(f"repository:{repo.url}", "prune (test)", timeout=0)
        with pytest.raises(LockTimeout):
            prune_lock.acquire()
        seen["held"] = True

    monkeypatch.setattr(run, "_run_group", fake_group)
    monkeypatch.setattr(repo, "write_manifest", write_manifest)
    out = run.run([unit], parallel=1, lock_timeout=1)
    assert out["snapshot_id"] == run.snapshot_id and seen == {"held": True}
    # and let go afterwards: a prune can take the repository now
    Lock(f"repository:{repo.url}", "prune (test)", timeout=0).acquire().release()
