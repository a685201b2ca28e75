"""The rclone:// store against a real server: `rclone serve webdav` on loopback, with a user and password.

The client is Debian's rclone with a configuration file the tests write (a webdav remote, its
password obscured with `rclone obscure`; see fixtures/servers.py). Covered (issue 6): the Store
interface with concurrent threads, the modules' round trip (snapshot, verify, restore, reuse,
prune), the server killed mid-upload, the clear errors (unknown remote, wrong password, refused
connection, missing repository, missing configuration), no secret in any output, and the
throughput on loopback (printed; run with -s to see it).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, run_module
from fixtures import store_scenarios as sc
from fixtures.servers import RcloneWebdav, free_port
# lab is a fixture: importing it makes pytest use it here
from test_snapshot import lab  # noqa: F401 pylint: disable=unused-import

COLLECTIONS = ROOT / ".venv" / "collections"
if COLLECTIONS.is_dir() and str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


@pytest.fixture(scope="module")
def dav(tmp_path_factory):
    with RcloneWebdav(tmp_path_factory.mktemp("dav")) as server:
        yield server


def opener(server):
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.rclone import RcloneStore

    return lambda url, create: RcloneStore(url, create=create, options=server.options)


def test_store_interface_with_threads(dav):
    sc.store_contract(opener(dav), dav, "contract")


def test_throughput_on_loopback(dav):
    up, down = sc.throughput(opener(dav)(dav.url("speed"), True), 200)
    print(f"\nrclone store (webdav), 200 MiB of random bytes on loopback: upload {up:.1f} MB/s, download {down:.1f} MB/s")


def test_round_trip_through_the_modules(lab, dav):  # noqa: F811
    sc.module_round_trip(lab, dav, "roundtrip")


def test_server_killed_mid_upload(lab, tmp_path):  # noqa: F811
    with RcloneWebdav(tmp_path) as server:
        speed = sc.kill_mid_upload(lab, server, "killed", leaves_partial=False)
    print(f"\nthe failure: {speed['problem']}")
    # rclone spools a WebDAV upload and sends it in one go: on loopback the kill may land while
    # the object streams (the message says the partial upload is removed by a prune) or just
    # after, when the commit looks the object up; either way the store is named as unreachable.
    problem = speed["problem"]
    assert ("uploading tmp/" in problem and "removes the partial upload" in problem) or \
        ("refused the connection" in problem and "is it running" in problem), problem
    print(f"rclone (webdav) through the modules, 200 MiB volume: snapshot {speed['snapshot_mb_s']:.1f} MB/s, "
          f"restore {speed['restore_mb_s']:.1f} MB/s")


def test_clear_errors(lab, dav, tmp_path):  # noqa: F811
    url = dav.url("errors")
    results = []

    def fails(repository: str = url, config: str | None = None) -> str:
        result = run_module("snapshot_info", expect_fail=True, repository=repository,
                            rclone_config=config or str(dav.config))
        results.append(result)
        return result["msg"]

    msg = fails()
    assert "does not exist" in msg and url in msg, msg
    msg = fails(repository="rclone://nosuch/errors")
    assert f"remote 'nosuch' is not defined in {dav.config}" in msg and "rclone config" in msg, msg
    wrong_pass = subprocess.run(["rclone", "obscure", "-"], input="not-the-password", capture_output=True,
                                text=True, check=True).stdout.strip()
    wrong = tmp_path / "wrong.conf"
    wrong.write_text(dav.config.read_text().replace(dav.obscured, wrong_pass))
    msg = fails(config=str(wrong))
    assert "refused access" in msg and "401" in msg and "check the user, password" in msg, msg
    closed = tmp_path / "closed.conf"
    closed.write_text(dav.config.read_text().replace(f":{dav.port}/", f":{free_port()}/"))
    msg = fails(config=str(closed))
    assert "refused the connection" in msg and "is it running" in msg, msg
    msg = fails(config=str(tmp_path / "nothere.conf"))
    assert "rclone_config" in msg and "does not exist" in msg, msg
    sc.assert_no_secret(results, dav.secrets + [wrong_pass])
