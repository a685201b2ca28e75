"""Repository format (pure), the local store and the repository on it: no engine needed."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository, RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import LocalStore, StoreError, open_store
from ansible_collections.lifeboat.docker.plugins.module_utils._common.version import COLLECTION_VERSION

ROOT = Path(__file__).resolve().parents[5]


def test_collection_version_matches_galaxy_yml():
    galaxy = (ROOT / "galaxy.yml").read_text()
    assert re.search(rf"^version: {re.escape(COLLECTION_VERSION)}$", galaxy, re.M)


def test_snapshot_id_is_safe_and_parses_back():
    when = dt.datetime(2026, 2, 28, 23, 59, 58, tzinfo=dt.timezone.utc)
    sid = mf.new_snapshot_id("Web_1.example.org", when, suffix="abc123")
    assert sid == "20260228T235958Z-web-1-example-org-abc123"
    assert "/" not in sid and ":" not in sid
    assert mf.parse_snapshot_id(sid) == (when, "web-1-example-org")
    assert mf.is_snapshot_id(sid)


@pytest.mark.parametrize("bad", ["latest", "20260228T235958Z-web-1", "../x", "20260228T235958Z-web/1-abc123",
                                 "20260228T235958Z--abc123"])
def test_bad_snapshot_ids_are_refused(bad):
    assert not mf.is_snapshot_id(bad)
    with pytest.raises(mf.FormatError):
        mf.manifest_key(bad)


def test_random_suffix_differs():
    when = mf.utc_now()
    assert mf.new_snapshot_id("h", when) != mf.new_snapshot_id("h", when)


def test_object_key_needs_a_sha256():
    sha = "a" * 64
    assert mf.object_key(sha) == f"objects/aa/{sha}"
    with pytest.raises(mf.FormatError):
        mf.object_key("../../etc/passwd")


def _manifest(sid, host="h", units=(("volume:a", "a"),), tags=(), time=None):
    return {"format": mf.MANIFEST_FORMAT, "version": 1, "id": sid, "host": host,
            "time": time or mf.iso(mf.parse_snapshot_id(sid)[0]), "tags": list(tags),
            "units": [{"id": uid, "source": {"type": "volume", "name": name},
                       "object": {"sha256": "b" * 64, "size": 10}, "index": {"sha256": "c" * 64, "size": 2},
                       "bytes": 100, "files": 3} for uid, name in units]}


def test_select_filters_and_orders_newest_first():
    a = _manifest("20260101T000000Z-h-000001", tags=["nightly"])
    b = _manifest("20260102T000000Z-h-000002", units=(("volume:b", "b"),))
    c = _manifest("20260103T000000Z-other-000003", host="other")
    assert [m["id"] for m in mf.select([a, b, c])] == [c["id"], b["id"], a["id"]]
    assert [m["id"] for m in mf.select([a, b, c], host="h")] == [b["id"], a["id"]]
    assert [m["id"] for m in mf.select([a, b, c], unit="a")] == [c["id"], a["id"]]
    assert [m["id"] for m in mf.select([a, b, c], tag="nightly")] == [a["id"]]
    assert [m["id"] for m in mf.select([a, b, c], newest=1)] == [c["id"]]


def test_find_unit_by_id_name_or_path_and_a_clear_miss():
    man = _manifest("20260101T000000Z-h-000001", units=(("volume:a", "a"), ("volume:b", "b")))
    assert mf.find_unit(man, "volume:b")["id"] == "volume:b"
    assert mf.find_unit(man, "a")["id"] == "volume:a"
    with pytest.raises(mf.FormatError, match="volume:a, volume:b"):
        mf.find_unit(man, "nope")


def test_summary_and_objects_of():
    man = _manifest("20260101T000000Z-h-000001", units=(("volume:a", "a"), ("volume:b", "b")))
    summary = mf.summary(man)
    assert summary["bytes"] == 200 and summary["stored_bytes"] == 20 and summary["files"] == 6
    assert summary["skipped"] == [] and summary["failed"] == []
    assert mf.objects_of(man) == ["b" * 64, "c" * 64, "b" * 64, "c" * 64]


def test_summary_says_what_a_snapshot_does_not_hold():
    man = _manifest("20260101T000000Z-h-000001", units=(("db:pg", "pg"), ("volume:pg_data", "pg_data")))
    man["units"][1].update(object=None, strategy="skip", reason="dumped through db:pg", bytes=0, files=0)
    del man["units"][1]["index"]
    man["complete"], man["failed"] = False, [{"id": "volume:up", "error": "the repository's filesystem is full"}]
    summary = mf.summary(man)
    assert summary["units"] == ["db:pg", "volume:pg_data"] and summary["stored_bytes"] == 10
    assert summary["skipped"] == [{"id": "volume:pg_data", "reason": "dumped through db:pg"}]
    assert summary["failed"] == [{"id": "volume:up", "error": "the repository's filesystem is full"}]


def test_decode_manifest_refuses_newer_format_and_damage():
    good = mf.encode_manifest(_manifest("20260101T000000Z-h-000001"))
    assert mf.decode_manifest(good, "k")["host"] == "h"
    newer = json.loads(good)
    newer["version"] = mf.FORMAT_VERSION + 1
    with pytest.raises(mf.FormatError, match="upgrade"):
        mf.decode_manifest(json.dumps(newer).encode(), "k")
    with pytest.raises(mf.FormatError, match="damaged"):
        mf.decode_manifest(good[:40], "k")


def test_marker_check():
    with pytest.raises(mf.FormatError, match="not a lifeboat repository"):
        mf.check_marker(b'{"format": "restic"}', "/r")
    with pytest.raises(mf.FormatError, match="upgrade"):
        mf.check_marker(json.dumps({"format": mf.MARKER_FORMAT, "version": 99}).encode(), "/r")


# -- the local store -----------------------------------------------------------------------------

def test_writer_is_invisible_until_commit_and_dedupes(tmp_path):
    store = LocalStore(str(tmp_path), create=True)
    writer = store.open_writer()
    writer.write(b"hello")
    assert not store.exists("objects/aa/x")
    assert os.listdir(tmp_path / "tmp")
    assert writer.commit("objects/aa/x") is True
    assert store.read_bytes("objects/aa/x") == b"hello"
    assert not os.listdir(tmp_path / "tmp")
    again = store.open_writer()
    again.write(b"other bytes")
    assert again.commit("objects/aa/x") is False  # content-addressed: the first copy stays
    assert store.read_bytes("objects/aa/x") == b"hello"
    assert not os.listdir(tmp_path / "tmp")


def test_abort_leaves_nothing(tmp_path):
    store = LocalStore(str(tmp_path), create=True)
    writer = store.open_writer()
    writer.write(b"partial")
    writer.abort()
    assert not os.listdir(tmp_path / "tmp")


def test_stale_tmp_of_dead_writer_is_cleaned_but_not_a_live_ones(tmp_path):
    store = LocalStore(str(tmp_path), create=True)
    dead = tmp_path / "tmp" / "999999999-deadbeef0000.part"  # no such pid
    dead.write_bytes(b"x")
    live = store.open_writer()
    live.write(b"y")
    assert store.cleanup_stale(dry_run=True) == [f"tmp/{dead.name}"] and dead.exists()
    removed = store.cleanup_stale()
    assert removed == [f"tmp/{dead.name}"]
    assert os.path.exists(live.tmp_path)
    live.abort()


def test_store_refuses_relative_paths_and_key_escapes(tmp_path):
    with pytest.raises(StoreError, match="not absolute"):
        LocalStore("relative/repo")
    store = LocalStore(str(tmp_path), create=True)
    with pytest.raises(StoreError):
        store.path("../etc/passwd")
    with pytest.raises(StoreError, match="unknown store gopher://"):
        open_store("gopher://host/prefix")
    with pytest.raises(StoreError, match="user:\\*\\*\\*@host") as caught:
        open_store("ftp://user:hunter2@host/path")
    assert "hunter2" not in str(caught.value)


def test_list_is_sorted_and_relative(tmp_path):
    store = LocalStore(str(tmp_path), create=True)
    for key in ("snapshots/b.json", "snapshots/a.json"):
        store.write_bytes(key, b"{}")
    assert list(store.list("snapshots/")) == ["snapshots/a.json", "snapshots/b.json"]
    assert list(store.list("nothing/")) == []


# -- the repository ------------------------------------------------------------------------------

def test_repository_creates_marker_and_refuses_a_plain_directory(tmp_path):
    with pytest.raises(RepositoryError, match="not a lifeboat repository"):
        Repository.open(str(tmp_path))
    repo = Repository.open(str(tmp_path / "r"), create=True)
    marker = json.loads((tmp_path / "r" / mf.MARKER_KEY).read_text())
    assert marker["format"] == mf.MARKER_FORMAT and marker["version"] == mf.FORMAT_VERSION
    assert Repository.open(repo.url).marker["version"] == 1


def test_repository_without_marker_but_with_snapshots_is_not_written_into(tmp_path):
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "snapshots" / "20260101T000000Z-h-000001.json").write_text("{}")
    with pytest.raises(RepositoryError, match="damaged"):
        Repository.open(str(tmp_path), create=True)
    assert not (tmp_path / mf.MARKER_KEY).exists()


def test_manifests_ignore_non_manifests_and_report_damage(tmp_path):
    repo = Repository.open(str(tmp_path), create=True)
    good = _manifest("20260101T000000Z-h-000001")
    repo.write_manifest(good)
    (tmp_path / "snapshots" / "20260102T000000Z-h-000002.json").write_text("{not json")
    (tmp_path / "snapshots" / "notes.txt").write_text("hi")
    manifests, bad = repo.manifests()
    assert [m["id"] for m in manifests] == [good["id"]]
    assert bad[0]["id"] == "20260102T000000Z-h-000002" and "damaged" in bad[0]["problem"]


def test_resolve_latest_with_unit_and_host(tmp_path):
    repo = Repository.open(str(tmp_path), create=True)
    repo.write_manifest(_manifest("20260101T000000Z-h-000001", units=(("volume:a", "a"),)))
    repo.write_manifest(_manifest("20260102T000000Z-h-000002", units=(("volume:b", "b"),)))
    repo.write_manifest(_manifest("20260103T000000Z-g-000003", host="g", units=(("volume:a", "a"),)))
    assert repo.resolve("latest")["id"] == "20260103T000000Z-g-000003"
    assert repo.resolve("latest", unit="volume:a", host="h")["id"] == "20260101T000000Z-h-000001"
    assert repo.resolve("latest", unit="b")["id"] == "20260102T000000Z-h-000002"
    with pytest.raises(RepositoryError, match="no snapshot with unit volume:c"):
        repo.resolve("latest", unit="volume:c")
    with pytest.raises(RepositoryError, match="neither 'latest' nor a snapshot id"):
        repo.resolve("yesterday")
    with pytest.raises(RepositoryError, match="is not in"):
        repo.resolve("20250101T000000Z-h-000009")
