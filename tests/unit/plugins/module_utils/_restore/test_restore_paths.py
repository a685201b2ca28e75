"""The pure decisions of one file back (_restore/paths.py): where restored paths may go, what is in
the way, and how a restored entry is compared with its index entry."""

from __future__ import annotations

import os

from ansible_collections.lifeboat.docker.plugins.module_utils._restore.paths import (
    conflict,
    default_target,
    entry_problems,
    target_refusal,
    unit_dir_name,
)

ROOT = "/var/lib/lifeboat/restored"


def test_default_target_is_a_directory_of_its_own():
    assert unit_dir_name("volume:app_data") == "volume_app_data"
    assert unit_dir_name("path:/srv/my app") == "path_srv_my_app"
    assert default_target(ROOT, "20261122T103000Z-web1-3fa2c1", "path:/srv/x") == \
        f"{ROOT}/20261122T103000Z-web1-3fa2c1/path_srv_x"


def test_targets_refused_and_allowed():
    assert target_refusal(f"{ROOT}/S/volume_x", ROOT) is None
    assert target_refusal("/srv/restore/x", ROOT) is None
    for bad in ("/etc/app", "/usr/local/x", "/var/lib/mysql/x", "/etc", "/", "/var/lib/docker/volumes/v/_data"):
        assert target_refusal(bad, ROOT), bad
    assert "repository" in target_refusal("/srv/backup/r/x", ROOT, repository="/srv/backup/r")
    assert "own state" in target_refusal("/var/lib/lifeboat/journal/x", ROOT, own_dirs=["/var/lib/lifeboat/journal"])
    assert "system tree /etc" in target_refusal("/etc/app", ROOT)


def test_what_is_in_the_way(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    os.symlink("d", tmp_path / "l")
    assert not conflict("f", None)
    assert not conflict("d", os.lstat(tmp_path / "d"))  # directories are merged
    assert conflict("f", os.lstat(tmp_path / "d")) and conflict("d", os.lstat(tmp_path / "f"))
    assert conflict("d", os.lstat(tmp_path / "l")), "a symlink to a directory is in the way, never followed"


def test_entry_problems(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    os.chmod(path, 0o640)
    st = os.lstat(path)
    want = ["f", "f", 5, 0o640, st.st_uid, st.st_gid, int(st.st_mtime), None]
    assert entry_problems(want, st, None) == []
    assert entry_problems(["f", "f", 6, 0o600, st.st_uid, st.st_gid, int(st.st_mtime), None], st, None) == [
        "'f': size 5, expected 6", "'f': mode '0640', expected '0600'"]
    assert entry_problems(want, None, None) == ["'f' is missing"]
    dst = os.lstat(tmp_path)
    assert entry_problems([".", "d", 0, dst.st_mode & 0o7777, dst.st_uid, dst.st_gid, 0, None], dst, None) == [], \
        "a directory's time is not compared"
