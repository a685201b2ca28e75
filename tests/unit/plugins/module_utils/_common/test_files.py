# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_files: atomic writes on a real filesystem (tmp_path)."""

import os
import stat

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._common import files as _files
from ansible_collections.lifeboat.docker.plugins.module_utils._common.files import publish, write_atomic


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_mode_and_parents_dir_mode(tmp_path):
    target = tmp_path / "a" / "b" / "file"
    write_atomic(str(target), b"\x00data", 0o600, dir_mode=0o700)
    assert target.read_bytes() == b"\x00data"
    assert _mode(target) == 0o600
    assert _mode(tmp_path / "a" / "b") == 0o700 & ~_umask()
    assert os.listdir(target.parent) == ["file"]


def _umask():
    old = os.umask(0)
    os.umask(old)
    return old


def test_text_is_written_as_utf8_and_mode_replaces_existing(tmp_path):
    target = tmp_path / "file"
    target.write_text("old")
    target.chmod(0o644)
    write_atomic(str(target), "grüß", 0o640)
    assert target.read_bytes() == "grüß".encode("utf-8")
    assert _mode(target) == 0o640


def test_keep_keeps_existing_mode_and_uses_mode_for_new(tmp_path):
    old = tmp_path / "old"
    old.write_text("x")
    old.chmod(0o604)
    write_atomic(str(old), "y", 0o600, keep=True)
    assert _mode(old) == 0o604 and old.read_text() == "y"
    new = tmp_path / "new"
    write_atomic(str(new), "y", 0o640, keep=True)
    assert _mode(new) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another owner needs root")
def test_owner_is_set(tmp_path):
    target = tmp_path / "owned"
    write_atomic(str(target), b"x", 0o600, owner=(1234, 4321))
    st = os.stat(target)
    assert (st.st_uid, st.st_gid) == (1234, 4321)


def test_failure_leaves_target_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_files.os, "replace", refuse)  # a full disk cannot be had on demand here
    with pytest.raises(OSError):
        write_atomic(str(target), "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["file"]


def test_publish_renames_with_mode(tmp_path):
    tmp = tmp_path / "part"
    tmp.write_bytes(b"object")
    target = tmp_path / "objects" / "key"
    target.parent.mkdir()
    publish(str(tmp), str(target), 0o640)
    assert target.read_bytes() == b"object" and _mode(target) == 0o640
    assert not tmp.exists()
