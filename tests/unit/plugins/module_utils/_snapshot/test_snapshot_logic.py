"""Unit selection, container specs, the metadata walk and index comparison: no engine needed."""

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import (
    _excluded,
    compare_index,
    walk,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.capture import (
    SelectionError,
    container_spec,
    select_units,
)

PLAN = [
    {"id": "volume:db", "kind": "volume", "source": "db", "strategy": "skip", "containers": []},
    {"id": "volume:uploads", "kind": "volume", "source": "uploads", "strategy": "stop", "containers": ["web"]},
    {"id": "path:/srv/certs", "kind": "path", "source": "/srv/certs", "strategy": "live", "containers": []},
]


def test_select_by_ids_dicts_and_shorthands():
    chosen = select_units(PLAN, ["volume:db", {"id": "x:1", "kind": "volume", "source": "x", "strategy": "live"}],
                          ["uploads"], ["/srv/certs/", "/opt/other"], None)
    assert [u["id"] for u in chosen] == ["path:/opt/other", "path:/srv/certs", "volume:db", "volume:uploads", "x:1"]
    other = next(u for u in chosen if u["id"] == "path:/opt/other")
    assert other["strategy"] == "live" and other["containers"] == []


def test_shorthand_strategy_overrides_the_plan():
    chosen = select_units(PLAN, None, ["uploads"], None, "live")
    assert chosen[0]["strategy"] == "live" and "snapshot module" in chosen[0]["reason"]
    # ... without changing the plan it came from
    assert PLAN[1]["strategy"] == "stop"


def test_unknown_units_are_named_with_what_exists():
    with pytest.raises(SelectionError, match=r"volume:nope.*volume:db, volume:uploads"):
        select_units(PLAN, None, ["nope"], None, None)
    with pytest.raises(SelectionError, match="not absolute"):
        select_units(PLAN, None, None, ["relative/dir"], None)
    with pytest.raises(SelectionError, match="nothing to capture"):
        select_units(PLAN, [], [], [], None)
    with pytest.raises(SelectionError, match="lacks kind, source, strategy"):
        select_units(PLAN, [{"id": "volume:x"}], None, None, None)


def test_container_spec_keeps_env_names_only():
    attrs = {
        "Id": "abc", "Name": "/web", "Image": "sha256:1",
        "Config": {"Image": "app:1", "Cmd": ["serve"], "Env": ["SECRET_KEY=hunter2", "PATH=/bin"],
                   "Labels": {"a": "b"}},
        "HostConfig": {"RestartPolicy": {"Name": "always"}, "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}},
        "Mounts": [{"Type": "volume", "Name": "uploads", "Source": "/var/lib/docker/volumes/uploads/_data",
                    "Destination": "/srv", "RW": True}],
        "NetworkSettings": {"Networks": {"front": {}, "back": {}}},
    }
    spec = container_spec(attrs, {"sha256:1": ["reg/app@sha256:2"]})
    assert spec["env_names"] == ["PATH", "SECRET_KEY"]
    assert "hunter2" not in repr(spec)
    assert spec["name"] == "web" and spec["image_digests"] == ["reg/app@sha256:2"]
    assert spec["networks"] == ["back", "front"] and spec["restart_policy"] == "always"


@pytest.mark.parametrize("rel,patterns,hit", [
    ("a/b/cache/x", ["cache"], True),
    ("a/b/cache/x", ["cache/x"], True),
    ("a/run.sock", ["*.sock"], True),
    ("a/b/c", ["b"], True),
    ("a/bb/c", ["b"], False),
    ("a/b/c", [], False),
])
def test_exclude_matches_like_tar(rel, patterns, hit):
    assert _excluded(rel, patterns) is hit


def test_walk_counts_fingerprints_and_notices_changes(tmp_path):
    root = tmp_path / "t"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"12345")
    (root / "l").symlink_to("d/f")
    (root / "skip.me").write_bytes(b"x" * 100)
    first = walk(str(root), ["*.me"])
    assert (first.files, first.dirs, first.others, first.bytes) == (1, 2, 1, 5)
    assert walk(str(root), ["*.me"]).fingerprint == first.fingerprint
    # Same size, same mtime, new content: the ctime changes, and so does the fingerprint.
    st = os.stat(root / "d" / "f")
    time.sleep(0.01)
    (root / "d" / "f").write_bytes(b"54321")
    os.utime(root / "d" / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert walk(str(root), ["*.me"]).fingerprint != first.fingerprint


def test_walk_keeps_non_utf8_names(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    with open(os.path.join(os.fsencode(root), b"caf\xe9"), "wb") as fh:
        fh.write(b"x")
    scan = walk(str(root))
    assert scan.files == 1
    assert b"caf\\udce9" in scan.index_bytes()


def test_compare_index_reports_differences(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "d").mkdir(parents=True)
        (root / "d" / "f").write_bytes(b"same")
    assert compare_index(walk(str(a)).index_bytes(), walk(str(b)).index_bytes()) == []
    (b / "d" / "f").write_bytes(b"longer")
    os.chmod(b / "d", 0o700)
    (b / "extra").write_bytes(b"")
    problems = compare_index(walk(str(a)).index_bytes(), walk(str(b)).index_bytes())
    assert any("size 6, expected 4" in p for p in problems)
    assert any("'d': mode" in p for p in problems)
    assert any("unexpected 'extra'" in p for p in problems)


def test_units_sharing_containers_form_one_group():
    from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.capture import group_units, quiesced_containers

    units = [
        {"id": "volume:a", "strategy": "stop", "containers": ["web", "app"]},
        {"id": "volume:b", "strategy": "pause", "containers": ["app"]},
        {"id": "db:pg", "strategy": "dump", "container": "pg", "containers": []},
        {"id": "volume:c", "strategy": "live", "containers": ["web"]},  # live quiesces nothing
        {"id": "volume:d", "strategy": "stop", "containers": ["pg"]},
        {"id": "path:/x", "strategy": "skip", "containers": []},
    ]
    assert quiesced_containers(units[3]) == [] and quiesced_containers(units[2]) == ["pg"]
    groups = [[u["id"] for u in g] for g in group_units(units)]
    assert groups == [["db:pg", "volume:d"], ["path:/x"], ["volume:a", "volume:b"], ["volume:c"]]


def test_object_and_index_are_committed_after_the_containers_run_again(tmp_path, monkeypatch):
    """The capture (tar and zstd) happens while the containers are quiesced; the object's and the
    index's commit (fsync, rename) only after they run again, so the fsync is no downtime. The
    engine is replaced by a recording Quiesced: the order of events is what is checked."""
    from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot import capture as _snapshot
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import LocalStore, LocalWriter

    events: list[str] = []

    class RecordingQuiesced:
        def __init__(self, _client, names, _journal, action, _timeout):
            self.names, self.action = names, action
            self.downtime: dict[str, float] = {}
            self.start_failures: list[dict[str, str]] = []

        def __enter__(self):
            events.append(f"{self.action} {','.join(self.names)}")
            return self

        def __exit__(self, *exc_info):
            events.append("resume")
            self.downtime = {name: 0.1 for name in self.names}
            return False

    real_capture, real_commit = _snapshot.capture, LocalWriter.commit

    def capture(*args, **kwargs):
        events.append("capture")
        return real_capture(*args, **kwargs)

    def commit(self, key, replace=False):
        events.append("commit " + key.split("/")[0])
        return real_commit(self, key, replace)

    monkeypatch.setattr(_snapshot, "Quiesced", RecordingQuiesced)
    monkeypatch.setattr(_snapshot, "capture", capture)
    monkeypatch.setattr(LocalWriter, "commit", commit)
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(200_000))
    repo = Repository(LocalStore(str(tmp_path / "repo"), create=True), create=True)
    run = _snapshot.SnapshotRun(None, repo, {"host": "h"}, level=1)
    events.clear()  # the repository's marker file
    unit = {"id": f"path:{src}", "kind": "path", "source": str(src), "strategy": "pause", "containers": ["app"]}
    entry, result = run._capture_files(unit, None, None)
    assert events == ["pause app", "capture", "resume", "commit objects", "commit objects"]
    assert result["downtime"] == {"app": 0.1} and entry["object"]["sha256"] == result["sha256"]
    assert repo.has_object(entry["object"]) and repo.has_object(entry["index"])
