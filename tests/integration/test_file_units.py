"""Integration tests of file units (issue 20): a bind-mounted file (a web app's config file, owned
by the app's user, mode 0640, with an extended attribute) is found by data_inventory, captured on
its own, and restored as a file with its content, owner, mode and xattrs, also where the engine
made an empty directory of the missing file; a file of the system is never restored over.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository
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


def test_files_a_compose_project_names_are_recorded_with_it(lab):
    """A compose project (labels as compose sets them) whose compose file names an env_file, a
    file-based secret and config and a variable path: the snapshot records the files with the
    project (the secrets only when it is encrypted; otherwise left_out names them) and says what
    it could not record."""
    project_dir = lab.tmpdir("shop")
    compose = os.path.join(project_dir, "compose.yml")
    files = {"compose.yml": ("services:\n  web:\n    image: x\n    env_file: [web.env]\n"
                             "  cron:\n    image: x\n    env_file: ${CRON_ENV}\n"
                             "secrets:\n  db:\n    file: ./secrets/db.txt\n"
                             "configs:\n  site:\n    file: conf/site.conf\n", 0o644),
             "web.env": ("WEB_TOKEN=from-the-env-file\n", 0o640),
             "secrets/db.txt": ("s3cret\n", 0o600), "conf/site.conf": ("listen 80;\n", 0o644)}
    for rel, (text, mode) in files.items():
        path = os.path.join(project_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, mode)
        os.chown(path, 1000, 33)
    name = lab.name("shop-web-1")
    lab.containers.append(name)
    labels = {"com.docker.compose.project": lab.name("shop"), "com.docker.compose.service": "web",
              "com.docker.compose.project.working_dir": project_dir,
              "com.docker.compose.project.config_files": compose, "com.docker.compose.container-number": "1"}
    docker_cli("run", "-d", "--name", name, *[a for k, v in labels.items() for a in ("--label", f"{k}={v}")],
               BUSYBOX, *STOPPABLE)
    volume = lab.volume("data")[0]

    plain = run_module("snapshot", repository=lab.repo(), volumes=[volume])
    dep = plain["deployment"]
    assert any("web.env" in t for t in dep["left_out"]) and any("db.txt" in t for t in dep["left_out"]), dep
    assert any("${CRON_ENV} depends on variables" in t for t in dep["problems"]), dep

    identity = os.path.join(lab.tmpdir("age"), "key.txt")
    subprocess.run(["age-keygen", "-o", identity], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", identity], check=True, capture_output=True, text=True).stdout.strip()
    repo = lab.repo("enc")
    sealed = run_module("snapshot", repository=repo, volumes=[volume], encryption_recipients=[recipient])
    assert not any("web.env" in t or "db.txt" in t for t in sealed["deployment"]["left_out"]), sealed["deployment"]
    proj = Repository.open(repo, identity=identity).load_manifest(sealed["snapshot_id"], full=True)[
        "deployment"]["compose_projects"][0]
    recorded = {e["path"]: e for e in proj["files"] + proj["env_files"]}
    for rel in ("compose.yml", "web.env", "secrets/db.txt", "conf/site.conf"):
        entry = recorded[os.path.join(project_dir, rel)]
        assert entry["object"] and entry["uid"] == 1000 and entry["gid"] == 33, entry
        assert entry["mode"] == f"{files[rel][1]:04o}"
