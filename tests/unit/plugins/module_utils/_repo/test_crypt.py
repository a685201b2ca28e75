"""age encryption of objects and manifests, and snapshot copies, on local repositories (the real
`age` command; no engine needed)."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.copy import copy_snapshots, object_refs, plan_copy
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.crypt import CryptError, check_recipients
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two (identity file, recipient) pairs."""
    out = []
    for name in ("one", "two"):
        path = str(tmp_path_factory.mktemp("keys") / f"{name}.txt")
        subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True)
        out.append((path, subprocess.run(["age-keygen", "-y", path], check=True, capture_output=True,
                                         text=True).stdout.strip()))
    return out


def manifest(sid: str, units: list[dict]) -> dict:
    return {"format": mf.MANIFEST_FORMAT, "version": mf.FORMAT_VERSION, "id": sid, "host": "h1",
            "time": "2026-11-22T10:00:00.000000Z", "tags": ["t"], "complete": True,
            "failed": [{"id": "volume:broken", "error": "details that may name paths"}], "units": units}


def unit_with(repo: Repository, uid: str, payload: bytes) -> dict:
    ref, _new = repo.put_bytes(payload)
    return {"id": uid, "kind": "volume", "strategy": "live", "bytes": len(payload), "files": 1,
            "source": {"type": "volume", "name": uid.split(":", 1)[1], "labels": {"secret": "label-value"}},
            "containers": [{"name": "c", "env": ["PASSWORD"]}], "object": ref, "index": None, "reuse_key": "k" * 64}


def test_recipients_are_checked_without_echoing_a_secret_key(keys):
    assert check_recipients([keys[0][1], " " + keys[0][1]]) == [keys[0][1]]
    with pytest.raises(CryptError, match="not an age public key") as caught:
        check_recipients(["AGE-SECRET-KEY-1" + "Q" * 58])
    assert "QQQQ" not in str(caught.value) and "public key, from age-keygen -y" in str(caught.value)
    with pytest.raises(CryptError, match="not an age public key"):
        check_recipients(["age1notakey"])
    with pytest.raises(CryptError, match="empty"):
        check_recipients([])


def test_encrypted_objects_and_sealed_manifest_round_trip(tmp_path, keys):
    (identity, recipient), (other_identity, _other) = keys
    url = str(tmp_path / "repo")
    writer_repo = Repository.open(url, create=True, recipients=[recipient])
    payload = os.urandom(3 << 20) + b"PLAINTEXT-MARKER" * 1000
    unit = unit_with(writer_repo, "volume:data", payload)
    ref = unit["object"]
    assert ref["encryption"] == "age" and ref["plain_sha256"] == hashlib.sha256(payload).hexdigest()
    stored = (tmp_path / "repo" / "objects" / ref["sha256"][:2] / ref["sha256"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == ref["sha256"] and b"PLAINTEXT-MARKER" not in stored
    sid = mf.new_snapshot_id("h1")
    writer_repo.write_manifest(manifest(sid, [unit]))

    # the listed record: no source, no containers, no error text; the manifest is an object
    record = Repository.open(url).load_manifest(sid)
    assert record["encryption"]["recipients"] == [recipient]
    assert set(record["units"][0]) == {"id", "kind", "strategy", "bytes", "files", "object", "index", "reuse_key"}
    assert record["failed"] == [{"id": "volume:broken"}]
    assert set(mf.objects_of(record)) == {ref["sha256"], record["encryption"]["manifest"]["sha256"]}
    assert mf.summary(record)["encrypted"] is True and mf.summary(record)["bytes"] == len(payload)
    raw = b"".join(p.read_bytes() for p in (tmp_path / "repo").rglob("*") if p.is_file())
    assert b"label-value" not in raw and b"PASSWORD" not in raw and b"may name paths" not in raw

    # reading needs the identity, the right one
    with pytest.raises(CryptError, match="give encryption_identity"):
        Repository.open(url).resolve(sid)
    with pytest.raises(CryptError, match="cannot decrypt"):
        Repository.open(url, identity=other_identity).resolve(sid)
    reader_repo = Repository.open(url, identity=identity)
    full = reader_repo.resolve("latest")
    assert full["units"][0]["source"]["labels"] == {"secret": "label-value"}
    with reader_repo.open_object(full["units"][0]["object"]) as fh:
        assert fh.read() == payload

    # a flipped byte: age refuses the chunk
    path = tmp_path / "repo" / "objects" / ref["sha256"][:2] / ref["sha256"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CryptError, match="could not be decrypted"):
        with reader_repo.open_object(ref) as fh:
            while fh.read(1 << 20):
                pass


def test_reuse_key_changes_with_recipients_and_source(keys):
    base = mf.reuse_key("fp", {"type": "volume", "name": "v"}, [], None)
    assert base == mf.reuse_key("fp", {"name": "v", "type": "volume"}, [], None)
    assert base != mf.reuse_key("fp", {"type": "volume", "name": "v"}, [], [keys[0][1]])
    assert base != mf.reuse_key("fp", {"type": "volume", "name": "v"}, ["*.log"], None)
    assert base != mf.reuse_key("fp2", {"type": "volume", "name": "v"}, [], None)


def test_plan_and_copy_between_local_repositories(tmp_path, keys):
    source = Repository.open(str(tmp_path / "a"), create=True)
    target = Repository.open(str(tmp_path / "b"), create=True)
    shared = unit_with(source, "volume:shared", b"same bytes" * 100)
    ids = []
    for n in range(3):
        sid = mf.new_snapshot_id("h1", suffix=f"00000{n}")
        ids.append(sid)
        source.write_manifest(manifest(sid, [shared, unit_with(source, f"volume:v{n}", os.urandom(1000))]))
    todo, present = plan_copy(source, set(), ["latest"], None)
    assert [m["id"] for m in todo] == [max(ids)] and present == []
    with pytest.raises(Exception, match="not in the source repository"):
        plan_copy(source, set(), ["20200101T000000Z-x-abcdef"], None)
    todo, present = plan_copy(source, {ids[0]}, [], None)
    assert [m["id"] for m in todo] == ids[1:] and present == [ids[0]]
    out = copy_snapshots(source, target, todo)
    assert out["copied"] == ids[1:] and out["failed"] == []
    assert out["objects_copied"] == 3 and out["objects_present"] == 0  # shared once, then two others
    assert set(target.snapshot_ids()) == set(ids[1:])
    assert set(object_refs(source.load_manifest(ids[1]))) <= {p.name for p in (tmp_path / "b" / "objects").rglob("*")}


def test_age_command_encrypts_to_each_recipient_or_decrypts_with_the_identity():
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.crypt import age_command

    assert age_command(["age1a", "age1b"], binary="/usr/bin/age") == [
        "/usr/bin/age", "--encrypt", "--recipient", "age1a", "--recipient", "age1b"]
    assert age_command(identity="/k/id.txt", binary="age") == ["age", "--decrypt", "--identity", "/k/id.txt"]
