"""Integration tests of the s3:// store (issue 6) against moto's S3 server on loopback.

A real S3 API: moto's server (the pinned moto[server]) on 127.0.0.1 with authentication on
(signatures and IAM policies checked). The modules run as an IAM user that has exactly the
least-privilege policy of docs/stores-s3.md; the tests inspect the bucket as an admin user.

Covered: the store contract at the store level (streaming multipart writes, the small PUT,
replace=False, the multipart copy, listing, reading, stale uploads, every error message free of
secrets); round trips through the modules (snapshot of a volume and a host path with a container
stopped, snapshot_info with verify checksum and restore, snapshot_restore into a new volume
compared byte for byte, reuse of the unchanged object, snapshot_prune); the store cut away
mid-upload (a relay closed) and moto killed mid-upload: clear errors, no snapshot, the container
running, the partial upload removed by the next prune; throughput on loopback.

Credentials: module results are also masked by Ansible (no_log), so the store-level tests are the
ones that prove the store's own messages never hold a key; the module tests prove the whole path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time

import pytest

from conftest import COLLECTIONS, ROOT, _ansible_env, run_module
from fixtures import trees
from fixtures.s3server import MotoS3, Relay
# lab is a fixture: importing it makes pytest use it here
from test_snapshot import (  # noqa: F401 pylint: disable=unused-import
    Lab, ansible_command, assert_same_tree, lab, wait_for)

from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores import s3 as _store_s3  # noqa: E402
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError, open_store  # noqa: E402

MIB = 1 << 20
POLICY_DOC = ROOT / "docs" / "stores-s3.md"


def documented_policy(bucket: str, prefix: str) -> dict:
    """The least-privilege policy of docs/stores-s3.md for s3://BUCKET/PREFIX."""
    text = POLICY_DOC.read_text()
    blocks = [b for b in re.findall(r"```json\n(.*?)```", text, re.S) if "ListBucketMultipartUploads" in b]
    assert len(blocks) == 1, "docs/stores-s3.md should hold one JSON policy"
    return json.loads(blocks[0].replace("BUCKET", bucket).replace("PREFIX", prefix))


class S3Lab:
    """A moto server with authentication on, an admin and per-test buckets and users."""

    def __init__(self, server: MotoS3) -> None:
        self.server = server
        self.admin = server.admin_keys()
        server.enforce_auth()
        self.s3 = server.client("s3", self.admin)

    def bucket(self, name: str, prefix: str = "repo") -> dict:
        """A new bucket and a user with the documented policy for s3://NAME/PREFIX; options for it."""
        self.s3.create_bucket(Bucket=name)
        keys = self.server.user_keys(f"{name}-user", documented_policy(name, prefix), self.admin)
        return {"repository": f"s3://{name}/{prefix}", "endpoint_url": self.server.endpoint, "region": "us-east-1",
                **keys}

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    def uploads(self, bucket: str) -> list[str]:
        return sorted(u["Key"] for u in self.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def drop_bucket(self, bucket: str) -> None:
        for upload in self.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            self.s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for key in self.keys(bucket):
            self.s3.delete_object(Bucket=bucket, Key=key)
        self.s3.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="module")
def moto():
    server = MotoS3().start()
    try:
        yield S3Lab(server)
    finally:
        server.close()


def store_options(opts: dict) -> dict:
    return {k: opts.get(k) for k in ("endpoint_url", "access_key", "secret_key", "session_token", "region")}


def module_args(opts: dict, **more) -> dict:
    return {**{k: v for k, v in opts.items() if v is not None}, **more}


def assert_no_secret(text: str, opts: dict) -> None:
    for name in ("access_key", "secret_key"):
        assert opts[name] not in text, f"the {name} appears in: {text[:2000]}"


def run_s3(name: str, opts: dict, **args) -> dict:
    result = run_module(name, **module_args(opts, **args))
    assert_no_secret(json.dumps(result), opts)
    return result


def random_file(path: str, size: int) -> str:
    """SIZE bytes of incompressible data at PATH; their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for _i in range(0, size, MIB):
            block = os.urandom(min(MIB, size - _i))
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# 1. the store contract, at the store level
# --------------------------------------------------------------------------------------------
def test_store_contract_on_moto(moto, prefix):
    bucket = f"{prefix}-contract"
    opts = moto.bucket(bucket, "team/repo")
    options = store_options(opts)
    with pytest.raises(StoreError, match=r"repository s3://.*/team/repo does not exist"):
        open_store(opts["repository"], create=False, options=options)
    store = open_store(opts["repository"], create=True, options=options)
    assert store.url == f"s3://{bucket}/team/repo"

    # small objects: one PUT straight to the key, nothing under tmp/
    store.write_bytes("snapshots/b.json", b"second")
    store.write_bytes("snapshots/a.json", b"first")
    assert list(store.list("snapshots/")) == ["snapshots/a.json", "snapshots/b.json"]
    assert store.exists("snapshots/a.json") and not store.exists("snapshots/zz.json")
    assert store.size("snapshots/b.json") == 6 and store.read_bytes("snapshots/a.json") == b"first"
    writer = store.open_writer()
    writer.write(b"other")
    assert writer.commit("snapshots/a.json") is False, "replace=False must keep the existing key"
    assert store.read_bytes("snapshots/a.json") == b"first"

    # a streamed object of 2.5 parts: multipart upload to tmp/HOST-PID-RANDOM.part, copied at commit
    data = os.urandom(40 * MIB + 12345)
    writer = store.open_writer()
    for i in range(0, len(data), MIB):
        writer.write(data[i:i + MIB])
    tmp_upload = moto.uploads(bucket)
    assert len(tmp_upload) == 1 and re.fullmatch(rf"team/repo/tmp/.+-{os.getpid()}-[0-9a-f]+\.part",
                                                 tmp_upload[0]), tmp_upload
    assert not any(k.startswith("team/repo/objects/") for k in moto.keys(bucket)), "visible before commit"
    assert writer.commit("objects/ab/abcd") is True
    assert moto.uploads(bucket) == [] and list(store.list("tmp/")) == []
    with store.open_reader("objects/ab/abcd") as reader:
        chunks = []
        while True:
            chunk = reader.read(3 * MIB)
            if not chunk:
                break
            assert len(chunk) <= 3 * MIB
            chunks.append(chunk)
    assert b"".join(chunks) == data
    assert store.size("objects/ab/abcd") == len(data)
    again = store.open_writer()
    again.write(data[:20 * MIB])
    assert again.commit("objects/ab/abcd") is False and moto.uploads(bucket) == []
    assert store.read_bytes("objects/ab/abcd") == data

    # the multipart copy (used above 5 GiB), with the thresholds lowered to exercise it here
    store.copy_threshold, store.copy_part = 8 * MIB, 5 * MIB
    writer = store.open_writer()
    writer.write(data[:21 * MIB])
    assert writer.commit("objects/cd/cdef") is True
    assert store.read_bytes("objects/cd/cdef") == data[:21 * MIB]
    store.copy_threshold, store.copy_part = _store_s3.COPY_THRESHOLD, _store_s3.COPY_PART

    # abort: the multipart upload goes
    writer = store.open_writer()
    writer.write(data[:20 * MIB])
    assert moto.uploads(bucket)
    writer.abort()
    assert moto.uploads(bucket) == [] and not store.exists("tmp/" + writer.name)

    # missing keys, deletes
    with pytest.raises(StoreError, match=r"objects/no/nothing is missing from the repository s3://"):
        store.open_reader("objects/no/nothing")
    with pytest.raises(StoreError, match="is missing"):
        store.size("objects/no/nothing")
    store.delete("objects/no/nothing")  # missing is fine
    store.delete("objects/cd/cdef")
    assert not store.exists("objects/cd/cdef")
    assert list(store.list("")) == ["objects/ab/abcd", "snapshots/a.json", "snapshots/b.json"]
    assert list(store.list("objects")) == ["objects/ab/abcd"]


def test_cleanup_stale_removes_only_uploads_whose_writer_is_gone(moto, prefix):
    bucket = f"{prefix}-stale"
    opts = moto.bucket(bucket)
    store = open_store(opts["repository"], create=True, options=store_options(opts))
    host = _store_s3.safe_host(store.host)
    dead = 4190000 + secrets.randbelow(4000)
    while os.path.exists(f"/proc/{dead}"):
        dead += 1
    live = os.getppid()
    names = {
        "dead-upload": f"{host}-{dead}-aaaaaa.part",     # incomplete multipart upload, dead pid
        "dead-object": f"{host}-{dead}-bbbbbb.part",     # completed temporary object, dead pid
        "live-object": f"{host}-{live}-cccccc.part",     # a live writer of this host
        "other-object": f"elsewhere-{dead}-dddddd.part",  # another host's, recent
    }
    moto.s3.create_multipart_upload(Bucket=bucket, Key=f"repo/tmp/{names['dead-upload']}")
    for what in ("dead-object", "live-object", "other-object"):
        moto.s3.put_object(Bucket=bucket, Key=f"repo/tmp/{names[what]}", Body=b"partial")
    open_writer = store.open_writer()  # this process's own writer in progress, multipart
    open_writer.write(os.urandom(17 * MIB))
    removed = store.cleanup_stale()
    assert removed == sorted([f"tmp/{names['dead-upload']}", f"tmp/{names['dead-object']}"])
    assert moto.keys(bucket, "repo/tmp/") == sorted(f"repo/tmp/{names[w]}" for w in ("live-object", "other-object"))
    assert moto.uploads(bucket) == [f"repo/tmp/{open_writer.name}"], "the open writer's upload was touched"
    assert store.cleanup_stale(max_age=3600) == [], "max_age must spare young leftovers"
    open_writer.abort()
    assert moto.uploads(bucket) == []


def test_store_errors_are_clear_and_hold_no_secret(moto, prefix):
    bucket = f"{prefix}-errors"
    opts = moto.bucket(bucket)
    options = store_options(opts)
    store = open_store(opts["repository"], create=True, options=options)
    store.write_bytes("snapshots/x.json", b"{}")
    wrong_secret = dict(options, secret_key="W" * 40)
    cases = [
        (dict(options, secret_key=opts["secret_key"][:-4] + "XXXX"), r"refused the credentials \(SignatureDoesNotMatch\)"
         r".*check access_key and secret_key"),
        (dict(options, access_key="AKIA" + "Z" * 16), r"refused the credentials \(InvalidAccessKeyId\)"),
        (dict(options, endpoint_url="http://127.0.0.1:9"), r"cannot reach the S3 endpoint http://127\.0\.0\.1:9"),
        (dict(options, access_key=None), r"access_key is missing; give both access_key and secret_key"),
    ]
    for bad, pattern in cases:
        with pytest.raises(StoreError) as info:
            open_store(opts["repository"], options=bad)
        assert re.search(pattern, str(info.value)), str(info.value)
        for value in (bad["access_key"], bad["secret_key"], opts["secret_key"], opts["access_key"]):
            if value:
                assert value not in str(info.value), str(info.value)
    admin = dict(options, **moto.admin)
    with pytest.raises(StoreError, match=rf"bucket {prefix}-nothere does not exist at http://127.0.0.1:\d+: create it"):
        open_store(f"s3://{prefix}-nothere/repo", create=True, options=admin)
    # a user whose policy does not name the bucket is denied before S3 looks for it: both are said
    with pytest.raises(StoreError, match=rf"access denied to list .*or bucket {prefix}-nothere does not exist"):
        open_store(f"s3://{prefix}-nothere/repo", create=True, options=options)
    with pytest.raises(StoreError, match="must not hold credentials") as info:
        open_store(f"s3://{opts['access_key']}:{opts['secret_key']}@{bucket}/repo", options=options)
    assert opts["access_key"] not in str(info.value) and opts["secret_key"] not in str(info.value)
    assert wrong_secret["secret_key"] not in str(info.value)

    # a user whose policy covers another prefix: denied, naming the permission it lacks
    other = moto.server.user_keys(f"{prefix}-other", documented_policy(bucket, "elsewhere"), moto.admin)
    limited = dict(options, **other)
    with pytest.raises(StoreError) as info:
        open_store(opts["repository"], options=limited).write_bytes("snapshots/y.json", b"{}")
    assert re.search(r"access denied to write snapshots/y\.json in s3://.*s3:PutObject", str(info.value)), \
        str(info.value)
    assert other["secret_key"] not in str(info.value) and other["access_key"] not in str(info.value)


def test_writer_cut_mid_upload_fails_clearly_and_aborts(moto, prefix):
    """A store cut away under a streaming writer: a StoreError naming the endpoint, no secret."""
    bucket = f"{prefix}-cut"
    opts = moto.bucket(bucket)
    relay = Relay(moto.server.port).open()
    try:
        options = dict(store_options(opts), endpoint_url=relay.endpoint)
        store = open_store(opts["repository"], create=True, options=options)
        writer = store.open_writer()
        writer.write(os.urandom(20 * MIB))
        wait_for("the first part", lambda: relay.bytes_up > 16 * MIB, 60)
        relay.cut()
        with pytest.raises(StoreError) as info:
            for _i in range(40):
                writer.write(os.urandom(MIB))
            writer.commit("objects/aa/aaaa")
        message = str(info.value)
        assert f"cannot reach the S3 endpoint {relay.endpoint}" in message, message
        assert_no_secret(message, opts)
        writer.abort()  # as every caller does after a failed write; quiet although the store is gone
        assert writer.done
    finally:
        relay.cut()
    assert not any("objects/" in k for k in moto.keys(bucket))


# --------------------------------------------------------------------------------------------
# 2. round trips through the modules
# --------------------------------------------------------------------------------------------
def test_round_trip_through_the_modules(moto, lab, monkeypatch):
    bucket = f"{lab.prefix}-roundtrip"
    opts = moto.bucket(bucket, "docker/host1")
    vol, vol_dir = lab.volume("data")
    trees.build_simple_tree(vol_dir, b"s3 volume")
    random_file(os.path.join(vol_dir, "blob.bin"), 20 * MIB)  # several parts once compressed: multipart
    app = lab.container("app", vol)
    started0 = lab.state(app)
    src_dir = lab.tmpdir("src")
    trees.build_simple_tree(src_dir, b"s3 path")
    vol_scan, path_scan = trees.scan_tree(vol_dir), trees.scan_tree(src_dir)

    snap = run_s3("snapshot", opts, volumes=[vol], strategy="stop")
    snap_p = run_s3("snapshot", opts, paths=[src_dir])
    assert snap["complete"] and snap["failed_units"] == [] and snap_p["complete"]
    unit = snap["units"][f"volume:{vol}"]
    assert unit["bytes_stored"] > 16 * MIB and set(unit["downtime"]) == {app}
    assert lab.state(app)[0] == "running" and lab.state(app)[1] != started0[1]
    keys = moto.keys(bucket)
    assert f"docker/host1/objects/{unit['sha256'][:2]}/{unit['sha256']}" in keys
    assert f"docker/host1/snapshots/{snap['snapshot_id']}.json" in keys
    assert "docker/host1/lifeboat-repository.json" in keys
    assert not [k for k in keys if "/tmp/" in k] and moto.uploads(bucket) == []
    for key in keys:  # no credential in anything stored
        body = moto.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert opts["secret_key"].encode() not in body and opts["access_key"].encode() not in body

    # info and verify, the credentials from the environment this time (AWS-style fallbacks)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", opts["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", opts["secret_key"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", opts["endpoint_url"])
    env_opts = {"repository": opts["repository"], "access_key": None, "secret_key": None,
                "region": "us-east-1"}
    info = run_module("snapshot_info", **module_args(env_opts, verify="checksum"))
    assert_no_secret(json.dumps(info), opts)
    assert [s["id"] for s in info["snapshots"]] == [snap_p["snapshot_id"], snap["snapshot_id"]]
    assert info["problems"] == [] and [s["problems"] for s in info["snapshots"]] == [[], []]
    scratch = lab.tmpdir("scratch")
    info = run_module("snapshot_info", **module_args(env_opts, verify="restore", scratch_dir=scratch))
    assert info["problems"] == [] and [s["problems"] for s in info["snapshots"]] == [[], []]
    assert os.listdir(scratch) == []
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)

    # restore into a new volume and a new directory, compared byte for byte
    new_vol = lab.name("restored")
    res = run_s3("snapshot_restore", opts, unit=vol, target_volume=new_vol)
    assert res["created"] is True and res["verified"] is True
    assert_same_tree(vol_scan, lab.volume_dir(new_vol), "the volume restored from S3")
    with open(os.path.join(vol_dir, "blob.bin"), "rb") as a, \
            open(os.path.join(lab.volume_dir(new_vol), "blob.bin"), "rb") as b:
        assert hashlib.sha256(a.read()).digest() == hashlib.sha256(b.read()).digest()
    target = os.path.join(lab.tmpdir("dst"), "restored")
    run_s3("snapshot_restore", opts, unit=f"path:{src_dir}", target_path=target)
    assert_same_tree(path_scan, target, "the host path restored from S3")

    # the unchanged volume again: its object is reused, nothing uploaded
    second = run_s3("snapshot", opts, volumes=[vol], strategy="stop")
    unit2 = second["units"][f"volume:{vol}"]
    assert unit2["reused_from"] == snap["snapshot_id"] and unit2["sha256"] == unit["sha256"]
    assert unit2["new_bytes_stored"] == 0 and unit2["bytes_read"] == 0
    # a changed volume, then prune keeps the newest: the first object goes
    with open(os.path.join(vol_dir, "hello.txt"), "wb") as fh:
        fh.write(b"changed for the third snapshot\n")
    third = run_s3("snapshot", opts, volumes=[vol], strategy="stop")
    assert third["units"][f"volume:{vol}"]["sha256"] != unit["sha256"]
    pruned = run_s3("snapshot_prune", opts, keep_last=1)
    assert sorted(pruned["removed"]) == sorted([snap["snapshot_id"], second["snapshot_id"]])
    assert pruned["objects_removed"] >= 1 and pruned["problems"] == []
    keys = moto.keys(bucket)
    assert f"docker/host1/objects/{unit['sha256'][:2]}/{unit['sha256']}" not in keys
    assert [k for k in keys if "/snapshots/" in k] == sorted(
        f"docker/host1/snapshots/{s['snapshot_id']}.json" for s in (snap_p, third))
    listed = run_s3("snapshot_info", opts)
    assert [s["id"] for s in listed["snapshots"]] == [third["snapshot_id"], snap_p["snapshot_id"]]


def test_module_errors_are_clear_and_hold_no_secret(moto, lab):
    bucket = f"{lab.prefix}-modules"
    opts = moto.bucket(bucket)
    vol, vol_dir = lab.volume("data")
    trees.build_simple_tree(vol_dir, b"x")
    wrong = dict(opts, secret_key=opts["secret_key"][::-1])
    failed = run_module("snapshot", expect_fail=True, **module_args(wrong, volumes=[vol], strategy="live"))
    assert "refused the credentials" in failed["msg"] and "check access_key and secret_key" in failed["msg"]
    assert_no_secret(json.dumps(failed), wrong)
    assert_no_secret(json.dumps(failed), opts)
    missing = run_module("snapshot_info", expect_fail=True, **module_args(dict(opts, repository="s3://" + bucket + "/none")))
    assert "does not exist" in missing["msg"], missing["msg"]
    admin = dict(opts, **moto.admin)
    nobucket = run_module("snapshot", expect_fail=True,
                          **module_args(dict(admin, repository=f"s3://{lab.prefix}-nobucket/r"), volumes=[vol]))
    assert f"bucket {lab.prefix}-nobucket does not exist" in nobucket["msg"] and "create it" in nobucket["msg"]
    assert_no_secret(json.dumps(nobucket), admin)


# --------------------------------------------------------------------------------------------
# 3. the store goes away mid-upload
# --------------------------------------------------------------------------------------------
def big_volume(lab: Lab, size: int = 200 * MIB) -> tuple[str, str, str]:
    vol, vol_dir = lab.volume("big")
    sha = random_file(os.path.join(vol_dir, "incompressible.bin"), size)
    app = lab.container("app", vol)
    return vol, app, sha


def start_snapshot(opts: dict, vol: str) -> subprocess.Popen:
    """snapshot (strategy stop, zstd -19: slow enough to be cut mid-upload) as its own process."""
    cmd = ansible_command("snapshot", **module_args(opts, volumes=[vol], strategy="stop", compression_level=19))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_ansible_env(), cwd=ROOT,
                            start_new_session=True)


def finished(proc: subprocess.Popen, opts: dict, timeout: float = 300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert_no_secret(out.decode(errors="replace") + err.decode(errors="replace"), opts)
    return json.loads(out)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_store_cut_mid_upload_then_prune_cleans_and_the_next_run_succeeds(moto, lab):
    bucket = f"{lab.prefix}-cutmod"
    opts = moto.bucket(bucket)
    relay = Relay(moto.server.port).open()
    try:
        via = dict(opts, endpoint_url=relay.endpoint)
        vol, app, _sha = big_volume(lab)
        started0 = lab.state(app)
        proc = start_snapshot(via, vol)
        wait_for("two parts uploaded", lambda: relay.bytes_up > 33 * MIB or proc.poll() is not None, 240)
        assert proc.poll() is None, "the snapshot ended before the store could be cut"
        relay.cut()
        result = finished(proc, opts)
        assert result.get("failed"), result
        text = json.dumps(result)
        assert f"cannot reach the S3 endpoint {relay.endpoint}" in text, text[:3000]
        assert result["snapshot_id"] is None
        status, started = lab.state(app)
        assert status == "running" and started != started0[1], "the container was left stopped (or never stopped)"
        assert lab.journals() == []
        partial = moto.uploads(bucket)
        assert len(partial) == 1 and partial[0].startswith("repo/tmp/"), partial
        assert not [k for k in moto.keys(bucket) if "/snapshots/" in k or "/objects/" in k]

        relay.open()  # the store is back
        listed = run_s3("snapshot_info", via)
        assert listed["snapshots"] == []
        pruned = run_s3("snapshot_prune", via, keep_last=1)
        assert pruned["stale_removed"] == [partial[0][len("repo/"):]]
        assert moto.uploads(bucket) == []
        again = run_s3("snapshot", via, volumes=[vol], strategy="stop")
        assert again["complete"] and lab.state(app)[0] == "running"
        assert [s["id"] for s in run_s3("snapshot_info", via)["snapshots"]] == [again["snapshot_id"]]
    finally:
        relay.cut()


def test_server_killed_mid_upload(lab):
    """moto_server killed (SIGKILL) mid-upload: the module fails clearly, the container runs again.
    moto keeps its data in memory, so the restarted server has no bucket: that error is clear too,
    and once the bucket exists again the next run succeeds."""
    server = MotoS3().start()
    try:
        s3lab = S3Lab(server)
        bucket = f"{lab.prefix}-killed"
        opts = s3lab.bucket(bucket)
        vol, app, _sha = big_volume(lab)
        started0 = lab.state(app)
        proc = start_snapshot(opts, vol)

        def parts_uploaded() -> bool:
            for upload in s3lab.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                parts = s3lab.s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                if len(parts.get("Parts", [])) >= 1:
                    return True
            return proc.poll() is not None

        wait_for("a part uploaded", parts_uploaded, 240, interval=0.3)
        assert proc.poll() is None, "the snapshot ended before the server could be killed"
        server.kill(signal.SIGKILL)
        result = finished(proc, opts)
        assert result.get("failed") and result["snapshot_id"] is None, result
        assert f"cannot reach the S3 endpoint {server.endpoint}" in json.dumps(result), json.dumps(result)[:3000]
        status, started = lab.state(app)
        assert status == "running" and started != started0[1]
        assert lab.journals() == []

        server.start()  # same port, empty: no users, no bucket
        s3lab = S3Lab(server)
        failed = run_module("snapshot", expect_fail=True, **module_args(dict(opts, **s3lab.admin), volumes=[vol]))
        assert f"bucket {bucket} does not exist" in failed["msg"], failed["msg"]
        opts = s3lab.bucket(bucket)
        again = run_s3("snapshot", opts, volumes=[vol], strategy="stop")
        assert again["complete"]
    finally:
        server.close()


# --------------------------------------------------------------------------------------------
# 4. throughput on loopback, and bounded memory
# --------------------------------------------------------------------------------------------
STORE_BENCH = r"""
import hashlib, json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import open_store
opts = json.loads(sys.argv[2]); size = int(sys.argv[3])
store = open_store(opts.pop("repository"), create=True, options=opts)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
block = os.urandom(1 << 20)
up = hashlib.sha256(); t0 = time.monotonic(); writer = store.open_writer()
for i in range(size >> 20):
    chunk = bytes([i & 255]) + block[1:]
    up.update(chunk); writer.write(chunk)
tw = time.monotonic(); writer.commit("objects/be/bench", replace=True); t1 = time.monotonic()
rss_up = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
down = hashlib.sha256(); t2 = time.monotonic()
with store.open_reader("objects/be/bench") as r:
    while True:
        c = r.read(1 << 20)
        if not c: break
        down.update(c)
t3 = time.monotonic()
print(json.dumps({"up_s": t1 - t0, "stream_s": tw - t0, "commit_s": t1 - tw, "down_s": t3 - t2, "same": up.digest() == down.digest(),
                  "rss0_kib": rss0, "rss_up_kib": rss_up}))
"""


def test_throughput_on_loopback(moto, lab):
    bucket = f"{lab.prefix}-bench"
    opts = moto.bucket(bucket)
    size = 200 * MIB
    proc = subprocess.run([sys.executable, "-c", STORE_BENCH, str(COLLECTIONS),
                           json.dumps({**store_options(opts), "repository": opts["repository"]}), str(size)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = json.loads(proc.stdout)
    assert bench["same"], "the bytes read back differ"
    grew_mib = (bench["rss_up_kib"] - bench["rss0_kib"]) / 1024
    assert grew_mib < 100, f"streaming 200 MiB grew the process by {grew_mib:.0f} MiB: it is not bounded"

    vol, _app, sha = big_volume(lab, size)
    t0 = time.monotonic()
    snap = run_s3("snapshot", opts, volumes=[vol], strategy="stop")
    t1 = time.monotonic()
    new_vol = lab.name("bench-restored")
    run_s3("snapshot_restore", opts, unit=vol, target_volume=new_vol)
    t2 = time.monotonic()
    with open(os.path.join(lab.volume_dir(new_vol), "incompressible.bin"), "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == sha
    stored = snap["units"][f"volume:{vol}"]["bytes_stored"]
    figures = {
        "store upload MB/s": size / 1e6 / bench["up_s"],
        "of which streaming the parts MB/s": size / 1e6 / bench["stream_s"],
        "of which commit (complete, server-side copy, delete) s": bench["commit_s"],
        "store download MB/s": size / 1e6 / bench["down_s"],
        "store writer memory growth MiB": grew_mib,
        "snapshot MB/s (module run, 200 MiB volume)": size / 1e6 / (t1 - t0),
        "restore MB/s (module run, into a new volume)": size / 1e6 / (t2 - t1),
        "stored bytes": stored,
    }
    print("\nS3 store on loopback (moto): " + json.dumps({k: round(v, 1) for k, v in figures.items()}))
