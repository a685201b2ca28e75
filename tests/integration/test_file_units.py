"""Integration tests of file units (issue 20): a bind-mounted file (a web app's config file, owned
by the app's user, mode 0640, with an extended attribute) is found by data_inventory, captured on
its own, and restored as a file with its content, owner, mode and xattrs, also where the engine
made an empty directory of the missing file; a file of the system is never restored over.
"""

from __future__ import annotations

import os

import pytest

from conftest import docker_cli, run_module
from fixtures.lab import BUSYBOX, STOPPABLE, open_lab
from fixtures.lab import Lab as BaseLab

CONFIG = b"<?php\n$db_host = 'db';\n$db_name = 'app';\n"


class Lab(BaseLab):
    def app(self, suffix: str, config: str, uploads: str) -> str:
        """A web app shaped container: its config file and its uploads directory bind-mounted."""
        name = self.name(suffix)
        self.containers.append(name)
        docker_cli("run", "-d", "--name", name, "-v", f"{config}:/app/config.php:ro", "-v", f"{uploads}:/app/uploads",
                   BUSYBOX, *STOPPABLE)
        return name


@pytest.fixture()
def lab(docker_client, prefix, monkeypatch):
    yield from open_lab(Lab(docker_client, prefix), monkeypatch)


def stat_of(path: str) -> tuple:
    st = os.lstat(path)
    return st.st_mode & 0o7777, st.st_uid, st.st_gid, os.getxattr(path, "user.origin")


def test_a_bind_mounted_config_file_is_captured_and_restored_as_a_file(lab):
    site = lab.tmpdir("site")
    config = os.path.join(site, "config.php")
    uploads = os.path.join(site, "uploads")
    os.mkdir(uploads)
    with open(os.path.join(uploads, "logo.png"), "wb") as fh:
        fh.write(os.urandom(5000))
    with open(config, "wb") as fh:
        fh.write(CONFIG)
    os.chown(config, 33, 33)
    os.chmod(config, 0o640)
    os.setxattr(config, "user.origin", b"installer")
    original = stat_of(config)
    app = lab.app("web", config, uploads)
    repo = lab.repo()

    # The inventory names it as a file, in its result and in the storage-concept document.
    report = os.path.join(lab.tmpdir("report"), "concept.md")
    inv = run_module("data_inventory", report=report)
    bind = next(b for b in inv["binds"] if b["source"] == config)
    assert bind["file_type"] == "file" and bind["kind"] == "data"
    assert any(u["id"] == f"path:{config}" for u in inv["units"])
    with open(report, encoding="utf-8") as fh:
        assert f"| `{config}` | data (file) |" in fh.read()

    first = run_module("snapshot", repository=repo, units=[f"path:{config}", f"path:{uploads}"])
    unit = first["units"][f"path:{config}"]
    assert unit["files"] == 1 and unit["bytes"] == len(CONFIG), unit
    again = run_module("snapshot", repository=repo, units=[f"path:{config}"])
    assert again["units"][f"path:{config}"]["reused_from"] == first["snapshot_id"]

    # Damaged by hand: content, mode and owner. A forced restore brings the file back whole and
    # restarts the app, which then reads it (its bind mount follows the new file).
    with open(config, "wb") as fh:
        fh.write(b"<?php // defaults\n")
    os.chmod(config, 0o666)
    os.chown(config, 0, 0)
    refused = run_module("snapshot_restore", expect_fail=True, repository=repo, unit=f"path:{config}")
    assert "force" in refused["msg"]
    done = run_module("snapshot_restore", repository=repo, unit=f"path:{config}", force=True)
    assert done["verified"] is True and app in done["downtime"], done
    with open(config, "rb") as fh:
        assert fh.read() == CONFIG
    assert stat_of(config) == original
    assert done["previous"].startswith(config + ".pre-restore-")
    with open(done["previous"], "rb") as fh:
        assert fh.read() == b"<?php // defaults\n"
    assert docker_cli("exec", app, "cat", "/app/config.php").encode() == CONFIG
    assert sorted(os.listdir(site)) == sorted(["config.php", "uploads", os.path.basename(done["previous"])])

    # The file lost, and the engine's empty directory in its place (a container started on the
    # missing bind source): put back without force, the directory replaced by the file.
    os.unlink(config)
    os.unlink(done["previous"])
    os.mkdir(config)
    done = run_module("snapshot_restore", repository=repo, unit=f"path:{config}")
    assert done["previous"] is None and os.path.isfile(config)
    assert stat_of(config) == original

    # Restored elsewhere, as a file of that name.
    out = os.path.join(lab.tmpdir("out"), "config.php")
    run_module("snapshot_restore", repository=repo, unit=f"path:{config}", target_path=out)
    with open(out, "rb") as fh:
        assert fh.read() == CONFIG

    # A directory with content where the file belongs is not replaced.
    os.unlink(config)
    os.mkdir(config)
    with open(os.path.join(config, "keep"), "w", encoding="utf-8") as fh:
        fh.write("x")
    failed = run_module("snapshot_restore", expect_fail=True, repository=repo, unit=f"path:{config}", force=True)
    assert "not a regular file" in failed["msg"] and os.path.isfile(os.path.join(config, "keep"))


def test_a_file_unit_is_never_restored_over_a_file_of_the_system(lab):
    site = lab.tmpdir("site")
    config = os.path.join(site, "hosts")
    with open(config, "w", encoding="utf-8") as fh:
        fh.write("127.0.0.1 app\n")
    repo = lab.repo()
    run_module("snapshot", repository=repo, paths=[config])
    before = os.stat("/etc/hosts")
    for target in ("/etc/hosts", "/usr/lib/os-release", f"/etc/{lab.prefix}.conf"):
        failed = run_module("snapshot_restore", expect_fail=True, repository=repo, unit=f"path:{config}",
                            target_path=target, force=True)
        assert "file of the system" in failed["msg"] and "target_path" in failed["msg"], failed["msg"]
    assert os.stat("/etc/hosts").st_ino == before.st_ino and not os.path.exists(f"/etc/{lab.prefix}.conf")
