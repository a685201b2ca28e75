"""The sftp:// store against a real OpenSSH server: the bench's sshd image in a container on loopback.

The client side is this host's OpenSSH client, with a key pair and a known_hosts file the tests make
(see fixtures/servers.py). Covered (issue 6): the Store interface with concurrent threads, reads
the server answers short, the modules' round trip (snapshot, verify, copy, restore, reuse, prune;
no ssh process left behind), the server killed mid-upload, the clear errors (unknown or changed
host key, refused key, refused connection, missing repository), no secret in any output, and the
throughput on loopback (printed; run with -s to see it).
"""

from __future__ import annotations

import json
import os
import secrets

import pytest

from conftest import ROOT, run_module
from fixtures import store_scenarios as sc
from fixtures.servers import SshServer, free_port, make_key
# lab is a fixture: importing it makes pytest use it here
from test_snapshot import lab  # noqa: F401 pylint: disable=unused-import

HOME = "/home/lbbackup"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    with SshServer("lbt" + secrets.token_hex(3), tmp_path_factory.mktemp("sshd")) as server:
        yield server


def opener(server):
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.sftp import SftpStore

    return lambda url, create: SftpStore(url, create=create, options=server.options)


def test_store_interface_with_threads(sshd):
    sc.store_contract(opener(sshd), sshd, f"{HOME}/contract")


def test_short_reads_are_completed(sshd, monkeypatch):
    """OpenSSH's sftp-server answers a READ with at most 255 KiB: asking for 512 KiB makes every reply
    short, and the reader must ask again for the rest, ahead of its other requests in flight."""
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores import sftp as sf

    store = opener(sshd)(sshd.url(f"{HOME}/short"), True)
    try:
        blob = os.urandom(5 << 20)
        store.write_bytes("objects/ab/blob", blob)
        asked: list[int] = []
        request = sf.SftpReader._request
        monkeypatch.setattr(sf, "CHUNK", 512 * 1024)
        monkeypatch.setattr(sf.SftpReader, "_request",
                            lambda self, offset, length: asked.append(length) or request(self, offset, length))
        assert store.read_bytes("objects/ab/blob") == blob
        assert [n for n in asked if n < 512 * 1024], "no reply was short: the test proves nothing"
    finally:
        store.close()


def test_throughput_on_loopback(sshd):
    store = opener(sshd)(sshd.url(f"{HOME}/speed"), True)
    try:
        up, down = sc.throughput(store, 200)
    finally:
        store.close()
    print(f"\nSFTP store, 200 MiB of random bytes on loopback: upload {up:.1f} MB/s, download {down:.1f} MB/s")


def test_upload_limit_holds_uploads_to_the_rate(sshd, tmp_path):
    """upload_limit=256K: 1 MiB cannot be uploaded in less than 3 s (one second's burst, then
    256 KiB a second): a lower bound, which no machine's speed can break. A bad value is refused
    by the modules, naming it."""
    import time

    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import open_store

    store = open_store(sshd.url(f"{HOME}/limited"), create=True, options=dict(sshd.options, upload_limit="256K"))
    try:
        blob = os.urandom(1 << 20)
        started = time.monotonic()
        store.write_bytes("objects/cd/blob", blob)
        assert time.monotonic() - started >= 2.9
        assert store.read_bytes("objects/cd/blob") == blob
    finally:
        store.close()
    refused = run_module("snapshot_info", expect_fail=True, repository=str(tmp_path / "repo"), upload_limit="fast")
    assert "upload_limit 'fast'" in refused["msg"] and "10M" in refused["msg"]


def ssh_clients_of(server) -> list[int]:
    """Pids of ssh processes of this host connected to the server's port."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
        except OSError:
            continue
        if args[0].endswith(b"ssh") and b"sftp" in args and str(server.port).encode() in args:
            pids.append(int(entry))
    return pids


def test_round_trip_through_the_modules(lab, sshd):  # noqa: F811
    sc.module_round_trip(lab, sshd, f"{HOME}/roundtrip")
    assert ssh_clients_of(sshd) == [], "a module left its ssh process running"


def test_server_killed_mid_upload(lab, tmp_path):  # noqa: F811
    with SshServer(lab.prefix, tmp_path) as server:
        speed = sc.kill_mid_upload(lab, server, f"{HOME}/killed")
    print(f"\nthe failure: {speed['problem']}")
    assert "SSH connection to 127.0.0.1" in speed["problem"] and "check that the server is up" in speed["problem"]
    print(f"\nSFTP through the modules, 200 MiB volume: snapshot {speed['snapshot_mb_s']:.1f} MB/s, "
          f"restore {speed['restore_mb_s']:.1f} MB/s")


def test_clear_errors(lab, sshd, tmp_path):  # noqa: F811
    url = sshd.url(f"{HOME}/errors")
    results = []

    def fails(repository: str = url, **options) -> str:
        result = run_module("snapshot_info", expect_fail=True, repository=repository, **{**sshd.options, **options})
        results.append(result)
        return result["msg"]

    assert "does not exist" in fails() and url in fails(), "a missing repository path"
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    msg = fails(ssh_known_hosts_file=str(empty))
    assert "is not in" in msg and f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {empty}" in msg, msg
    other_key = make_key(tmp_path / "other")
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other_key.split()[:2])}\n")
    msg = fails(ssh_known_hosts_file=str(wrong))
    assert "has CHANGED" in msg and "ssh-keygen -R" in msg, msg
    msg = fails(ssh_identity_file=str(tmp_path / "other"))
    assert "refused the key" in msg and "authorized_keys" in msg, msg
    msg = fails(repository=f"sftp://lbbackup@127.0.0.1:{free_port()}{HOME}/errors")
    assert "refused: is the SSH server running" in msg, msg
    msg = fails(repository=f"sftp://lbbackup:hunter2@127.0.0.1:{sshd.port}{HOME}/errors")
    # (the module's invocation echoes its arguments, the URL included: not the store's to hide)
    shown = {k: v for k, v in results.pop().items() if k != "invocation"}
    assert "holds a password" in msg and "hunter2" not in json.dumps(shown), msg
    msg = fails(ssh_identity_file=str(tmp_path / "nothere"))
    assert "ssh_identity_file" in msg and "does not exist" in msg, msg
    other_secret = [line for line in (tmp_path / "other").read_text().splitlines() if not line.startswith("-----")]
    sc.assert_no_secret(results, sshd.secrets + other_secret + ["hunter2"])


def test_roles_take_the_ssh_key_and_known_hosts_as_content_from_a_vault(sshd, tmp_path):
    """A host that has no key on disk (a fresh host on the worst day): backup.yml and restore.yml
    take the SSH key and known_hosts as content (lifeboat_store_secrets, from a vault), write them
    into 0600 files in a private temporary directory for the run, and remove them after; the key
    appears in no output. The roles run against a throw-away engine (only what this test made)."""
    import glob
    import subprocess

    from conftest import VENV_BIN
    from fixtures.engine import ThrowawayEngine

    secrets_given = {"ssh_identity_file": sshd.identity.read_text(), "ssh_known_hosts_file": sshd.known_hosts.read_text()}
    repo = sshd.url(f"{HOME}/vaulted")
    before = set(glob.glob("/tmp/lifeboat-secrets.*"))

    def play(playbook: str, **extra) -> subprocess.CompletedProcess:
        args = {"lifeboat_docker_host": engine.url, "lifeboat_repository": repo, "lifeboat_store_secrets": secrets_given,
                **extra}
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                   LIFEBOAT_STATE_DIR=str(tmp_path / "state"))
        proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventories/local", playbook,
                               "-e", json.dumps(args)], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        for text in (proc.stdout, proc.stderr):
            assert not any(line in text for line in sshd.secrets), "the private key reached the output"
        assert set(glob.glob("/tmp/lifeboat-secrets.*")) == before, "the secret files were not removed"
        return proc

    with ThrowawayEngine() as engine:
        engine.load_image("lifeboat-test/busybox:latest")
        engine.client.volumes.create("vaulted")
        engine.client.containers.run("lifeboat-test/busybox:latest", ["sh", "-c", "echo original > /data/f"],
                                     remove=True, volumes={"vaulted": {"bind": "/data", "mode": "rw"}})
        play("playbooks/backup.yml")
        engine.client.containers.run("lifeboat-test/busybox:latest", ["sh", "-c", "echo damaged > /data/f"],
                                     remove=True, volumes={"vaulted": {"bind": "/data", "mode": "rw"}})
        play("playbooks/restore.yml", restore_units=["volume:vaulted"], restore_confirm=True)
        out = engine.client.containers.run("lifeboat-test/busybox:latest", ["cat", "/data/f"], remove=True,
                                           volumes={"vaulted": {"bind": "/data", "mode": "ro"}})
        assert out == b"original\n"
