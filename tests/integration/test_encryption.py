"""Integration tests of age encryption (issue 6): snapshot with encryption_recipients, then
listing, verification, restore and prune, on the real engine with the real `age` command.

The volume and the database hold marker strings (in content, in a file name, in a volume label,
in a table); none of them may appear anywhere in the encrypted repository, neither as stored nor
after an attempt to decompress. A control snapshot of the same volume into an unencrypted
repository shows that the search finds the markers when they are there.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

from fixtures import trees
from test_dumps import Lab, lab, password, psql, start_postgres, wait_postgres  # noqa: F401 pylint: disable=unused-import


def keypair(lab: Lab, suffix: str) -> tuple[str, str]:
    """(identity file, recipient) made by age-keygen."""
    path = os.path.join(lab.tmpdir(suffix), "identity.txt")
    subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", path], check=True, capture_output=True, text=True).stdout.strip()
    assert recipient.startswith("age1")
    return path, recipient


def store_places(repo: str) -> list[tuple[str, bytes]]:
    """Every file name and content of a repository, and each object's zstd-decompression if any."""
    places = []
    for path in sorted(glob.glob(os.path.join(repo, "**"), recursive=True)):
        places.append((f"name {path}", path.encode()))
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                data = fh.read()
            places.append((path, data))
            plain = subprocess.run(["zstd", "-q", "-d", "-c"], input=data, capture_output=True, check=False).stdout
            places.append((f"{path} (zstd -d)", plain))
    return places


def hits(places: list[tuple[str, bytes]], marker: str) -> list[str]:
    return [what for what, data in places if marker.encode() in data]


def object_file(repo: str, sha: str) -> str:
    return os.path.join(repo, "objects", sha[:2], sha)


def test_encrypted_snapshot_round_trip_keeps_nothing_readable(lab, docker_client):
    identity, recipient = keypair(lab, "key")
    wrong_identity, _other = keypair(lab, "wrongkey")
    content_marker, name_marker, label_marker, row_marker = (password(t) for t in ("content", "name", "label", "row"))

    # a volume with marked content, file name and label; a PostgreSQL with a marked row
    volume = lab.name("files")
    docker_client.volumes.create(name=volume, driver="local", labels={"lifeboat.test.note": label_marker})
    data_dir = docker_client.volumes.get(volume).attrs["Mountpoint"]
    trees.build_simple_tree(data_dir)
    with open(os.path.join(data_dir, "secret.txt"), "w", encoding="utf-8") as fh:
        fh.write(f"the content marker {content_marker} in a file\n" * 50)
    with open(os.path.join(data_dir, f"{name_marker}.txt"), "w", encoding="utf-8") as fh:
        fh.write("a file whose name is a marker\n")
    source = trees.scan_tree(data_dir)
    pg_pw = password("pg")
    pg = start_postgres(lab, "pg", pg_pw)
    wait_postgres(lab, pg)
    psql(lab, pg, "postgres", f"CREATE TABLE notes AS SELECT g AS id, '{row_marker}' AS note FROM generate_series(1, 500) g")

    # the control: unencrypted, the search finds the markers
    control = os.path.join(lab.tmpdir("control"), "repository")
    lab.run("snapshot", repository=control, volumes=[volume], strategy="live")
    assert hits(store_places(control), content_marker) and hits(store_places(control), label_marker)

    repo = lab.repo()
    snap = lab.run("snapshot", repository=repo, units=[f"volume:{volume}", f"db:{pg}"],
                   encryption_recipients=[recipient], tags=["enc"])
    assert snap["complete"] is True, snap
    sid = snap["snapshot_id"]
    places = store_places(repo)
    for marker in (content_marker, name_marker, label_marker, row_marker, pg_pw):
        assert not hits(places, marker), f"a marker appears in the encrypted repository: {hits(places, marker)}"

    # the listed record: ids, sizes, object names; no sources, containers, settings
    with open(os.path.join(repo, "snapshots", f"{sid}.json"), encoding="utf-8") as fh:
        record = json.load(fh)
    assert record["encryption"]["scheme"] == "age" and record["encryption"]["recipients"] == [recipient]
    assert {u["id"] for u in record["units"]} == {f"volume:{volume}", f"db:{pg}"}
    for unit in record["units"]:
        assert set(unit) <= {"id", "kind", "strategy", "bytes", "files", "object", "index", "reuse_key"}, unit
        assert {"sha256", "size", "encryption", "plain_sha256", "plain_size"} <= set(unit["object"]), unit["object"]
    [vol_unit] = [u for u in record["units"] if u["kind"] == "volume"]

    # by hand: age -d | zstd -d | tar -x gives the volume back; the manifest decrypts to JSON
    by_hand = lab.tmpdir("byhand")
    subprocess.run(f"age -d -i {identity} {object_file(repo, vol_unit['object']['sha256'])} | zstd -d | "
                   f"tar -x --numeric-owner --xattrs --xattrs-include='*' --acls -C {by_hand}",
                   shell=True, check=True)
    problems = trees.compare_trees(source, trees.scan_tree(by_hand))
    assert not problems, problems
    manifest = json.loads(subprocess.run(["age", "-d", "-i", identity,
                                          object_file(repo, record["encryption"]["manifest"]["sha256"])],
                                         check=True, capture_output=True).stdout)
    assert manifest["id"] == sid
    assert [u for u in manifest["units"] if u["kind"] == "volume"][0]["source"]["labels"] == \
        {"lifeboat.test.note": label_marker}

    # listing and checksums without any key; a trial restore needs the identity
    listed = lab.run("snapshot_info", repository=repo, verify="checksum")
    [entry] = listed["snapshots"]
    assert entry["encrypted"] is True and entry["problems"] == [] and sorted(entry["units"]) == sorted(
        [f"volume:{volume}", f"db:{pg}"])
    keyless = lab.run("snapshot_info", repository=repo, verify="restore")
    assert keyless["problems"] and "encryption_identity" in keyless["problems"][0]["problem"], keyless["problems"]
    full = lab.run("snapshot_info", repository=repo, verify="restore", encryption_identity=identity)
    assert full["problems"] == [], full["problems"]

    # restores: without the identity, with a wrong one, then with the right one
    target = lab.name("restored")
    refused = lab.run("snapshot_restore", expect_fail=True, repository=repo, unit=volume, target_volume=target)
    assert "encryption_identity" in refused["msg"], refused["msg"]
    wrong = lab.run("snapshot_restore", expect_fail=True, repository=repo, unit=volume, target_volume=target,
                    encryption_identity=wrong_identity)
    assert "cannot decrypt" in wrong["msg"] and wrong_identity in wrong["msg"], wrong["msg"]
    assert not docker_client.volumes.list(filters={"name": target}), "a refused restore created the target"
    done = lab.run("snapshot_restore", repository=repo, unit=volume, target_volume=target, encryption_identity=identity)
    assert done["verified"] is True
    restored = docker_client.volumes.get(target)
    assert restored.attrs["Labels"] == {"lifeboat.test.note": label_marker}
    assert not trees.compare_trees(source, trees.scan_tree(restored.attrs["Mountpoint"]))

    # the dump: restored into a fresh server; again with force keeps the old content encrypted too
    fresh = start_postgres(lab, "pg_fresh", password("fresh"))
    wait_postgres(lab, fresh)
    db = lab.run("snapshot_restore", repository=repo, unit=f"db:{pg}", target_container=fresh,
                 encryption_identity=identity)
    assert db["verified"] is True
    assert psql(lab, fresh, "postgres", "SELECT count(*), min(note) FROM notes") == f"500|{row_marker}"
    again = lab.run("snapshot_restore", repository=repo, unit=f"db:{pg}", target_container=fresh,
                    encryption_identity=identity, force=True)
    with open(os.path.join(repo, "snapshots", f"{again['previous']}.json"), encoding="utf-8") as fh:
        kept = json.load(fh)
    assert kept["encryption"]["recipients"] == [recipient], "the pre-restore dump was stored unencrypted"
    assert not hits(store_places(repo), row_marker)

    # unchanged: reused without reading; prune keeps what the newest snapshot needs
    second = lab.run("snapshot", repository=repo, volumes=[volume], strategy="live", encryption_recipients=[recipient])
    assert second["units"][f"volume:{volume}"]["bytes_read"] == 0
    assert second["units"][f"volume:{volume}"]["reused_from"] == sid
    lab.run("snapshot_prune", repository=repo, keep_last=1)
    back = lab.name("restored2")
    lab.run("snapshot_restore", repository=repo, unit=volume, target_volume=back, encryption_identity=identity)
    assert not trees.compare_trees(source, trees.scan_tree(docker_client.volumes.get(back).attrs["Mountpoint"]))

    # a bad recipient is refused clearly, naming no secret key
    bad = lab.run("snapshot", expect_fail=True, repository=repo, volumes=[volume], strategy="live",
                  encryption_recipients=["AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"])
    assert "not an age public key" in bad["msg"] and "QQQQQQQQ" not in bad["msg"], bad["msg"]
    lab.assert_no_secret(pg_pw)
