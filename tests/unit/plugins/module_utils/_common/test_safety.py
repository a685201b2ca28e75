"""Which paths lifeboat may replace, capture or keep a repository in (pure, _common/safety.py), what
'latest' means and how manifests are checked (_repo/manifest.py), and the top-anchored excludes that
keep a repository out of a capture (_data/archive.py): no engine needed."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._common import safety as sf
from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import _excluded


@pytest.mark.parametrize("path, want", [
    ("/usr/../etc/", "/etc"), ("//etc//", "/etc"), ("/srv/./a/", "/srv/a"), ("/", "/"), ("/..", "/"),
])
def test_paths_are_folded_before_they_are_compared(path, want):
    assert sf.resolve_lexically(path) == want


def test_within_compares_whole_components():
    assert sf.within("/dev/sda", "/dev") and sf.within("/dev", "/dev")
    assert not sf.within("/devdata/x", "/dev")
    assert sf.within("/anything", "/")


@pytest.mark.parametrize("target, named", [
    ("/", "root"), ("/etc", "/etc"), ("/usr", "/usr"), ("/var", "/var/lib"), ("/var/lib", "/var/lib"),
    ("/lib64", "/lib64"), ("/boot", "/boot"), ("/proc/1/root", "/proc"), ("/run/lock", "/run"),
    ("/dev/shm/x", "/dev"), ("/var/lib/docker/volumes/v/_data", "/var/lib/docker"),
    ("/data/docker", "/data/docker"), ("/data/docker/x", "/data/docker"), ("/data", "/data/docker"),
    ("/backup", "repository"), ("/backup/lifeboat/objects", "repository"), ("/var/lib/lifeboat/journal", "state"),
    ("/var/lib/lifeboat/locks/x", "state"), ("/srv/st", "state"),
])
def test_a_restore_never_replaces_the_system_its_engine_or_lifeboat(target, named):
    why = sf.restore_refusal(target, docker_root="/data/docker", repository="/backup/lifeboat",
                             own_dirs=["/var/lib/lifeboat/journal", "/var/lib/lifeboat/locks", "/srv/st/journal"])
    assert why and named in why, (target, why)
    assert "target_path" in why


@pytest.mark.parametrize("target", ["/devdata/x", "/srv/app", "/etc/myapp", "/var/lib/mysql", "/home/u/data",
                                    "/backup2", "/var/libx", "/var/lib/lifeboat/cert-bundle"])
def test_ordinary_targets_are_allowed(target):
    # /var/lib/lifeboat/cert-bundle: data lifeboat keeps for the user (cert_safekeeping), not its bookkeeping
    assert sf.restore_refusal(target, docker_root="/var/lib/docker", repository="/backup/lifeboat",
                              own_dirs=["/var/lib/lifeboat/journal", "/var/lib/lifeboat/locks"]) is None


def test_capture_refuses_the_root_and_kernel_filesystems():
    assert "whole host" in sf.capture_refusal("/", None)
    assert "/proc" in sf.capture_refusal("/proc/sys", None)
    assert "sysfs" in sf.capture_refusal("/mnt/odd", "sysfs")
    assert sf.capture_refusal("/srv/data", "ext4") is None
    assert sf.capture_refusal("/devdata", None) is None


def test_what_a_capture_leaves_out_and_what_it_must_not_be():
    own = {"/srv/data/backups": "the repository", "/var/lib/lifeboat": "lifeboat's state"}
    assert sf.nested_excludes("/srv/data", own) == [("backups", "the repository")]
    assert sf.nested_excludes("/var", own) == [("lib/lifeboat", "lifeboat's state")]
    assert sf.nested_excludes("/srv/database", own) == []
    assert sf.covers("/srv/data/backups/objects", own) == ["the repository"]
    assert sf.covers("/srv/data", own) == []


def test_repository_paths_in_kernel_filesystems_are_refused():
    assert "/proc" in sf.repository_refusal("/proc/self/cwd/x", None)
    assert "sysfs" in sf.repository_refusal("/mnt/x", "sysfs")
    assert sf.repository_refusal("/var/backups/lifeboat", "ext4") is None


def test_the_top_anchored_exclude_leaves_out_one_directory_only():
    assert _excluded("backups", ["./backups"]) and _excluded("backups/objects/ab", ["./backups"])
    assert not _excluded("app/backups", ["./backups"]) and not _excluded("backupsx", ["./backups"])
    assert _excluded("app/cache", ["cache"])  # unanchored patterns as before


# -- manifests --------------------------------------------------------------------------------------
def manifest(sid: str, time: str, **extra) -> dict:
    doc = {"format": mf.MANIFEST_FORMAT, "version": 1, "id": sid, "host": "h", "time": time, "tags": [],
           "complete": True, "failed": [],
           "units": [{"id": "volume:a", "kind": "volume", "object": {"sha256": "a" * 64, "size": 1},
                      "index": {"sha256": "b" * 64, "size": 1}, "source": {"type": "volume", "name": "a"}}]}
    doc.update(extra)
    return doc


@pytest.mark.parametrize("change, said", [
    ({"units": "x"}, "'units' is str"),
    ({"units": [{"kind": "volume"}]}, "unit 1 has no id"),
    ({"units": [{"id": "volume:a", "object": {"sha256": 5, "size": 1}}]}, "not an object reference"),
    ({"time": "garbage"}, "not an ISO 8601 time"),
    ({"time": 5}, "not an ISO 8601 time"),
    ({"host": ["h"]}, "host"),
    ({"id": "20260101T000000Z-h-000002"}, "not the one its file name says"),
    ({"complete": "yes"}, "complete"),
    ({"tags": "nightly"}, "tags"),
    ({"failed": ["x"]}, "failed"),
    ({"encryption": {"manifest": "x"}}, "encrypted manifest"),
])
def test_manifests_are_checked_field_by_field(change, said):
    sid = "20260101T000000Z-h-000001"
    doc = dict(manifest(sid, "2026-01-01T00:00:00.000000Z"), **change)
    with pytest.raises(mf.FormatError, match="damaged") as caught:
        mf.check_manifest(doc, mf.manifest_key(sid))
    assert said in str(caught.value)


def test_latest_is_the_newest_complete_snapshot_by_parsed_time():
    a = manifest("20260101T000000Z-h-00000a", "2026-01-01T00:00:00.000000Z")
    incomplete = manifest("20260102T000000Z-h-00000c", "2026-01-02T00:00:00.000000Z", complete=False,
                          failed=[{"id": "volume:z"}])
    pre = manifest("20260103T000000Z-h-00000d", "2026-01-03T00:00:00.000000Z", tags=["pre-restore"])
    other = manifest("20260105T000000Z-g-00000e", "2026-01-05T00:00:00.000000Z", host="g")
    found = [a, incomplete, pre, other]
    assert mf.pick_latest(found)["id"] == other["id"]
    assert mf.pick_latest(found, host="h")["id"] == a["id"]
    # With a unit: the newest that holds the unit's data, complete or not; never a pre-restore one.
    assert mf.pick_latest(found, host="h", unit="volume:a")["id"] == incomplete["id"]
    assert mf.pick_latest(found, host="h", unit="a")["id"] == incomplete["id"]
    assert mf.pick_latest(found, host="h", unit="volume:zz") is None
    assert mf.pick_latest(found, where=lambda m: m["host"] == "h")["id"] == a["id"]
    assert mf.pick_latest([incomplete, pre]) is None
    # By the time it means, not by how it is written: 23:30 at UTC-2 is 01:30 the next day (UTC),
    # after pre's midnight, though the string sorts before it.
    late = manifest("20260103T000000Z-h-00000b", "2026-01-03T23:30:00-02:00")
    early = manifest("20260104T000000Z-h-00000f", "2026-01-04T00:00:00.000000Z")
    assert mf.pick_latest([late, early])["id"] == late["id"]
    assert [m["id"] for m in mf.select([early, late])] == [late["id"], early["id"]]
