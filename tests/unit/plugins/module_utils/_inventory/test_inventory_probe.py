"""The on-disk probe: sizes, markers, key files and sockets, on real temporary directories."""

from __future__ import annotations

import os
import socket

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.probe import (
    probe_dump_tools,
    scan_all,
    scan_path,
    volume_data_path,
)


def _write(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_size_and_count_apparent_hard_links_once_symlinks_not_followed(tmp_path):
    _write(tmp_path / "a", b"12345")
    _write(tmp_path / "deep" / "er" / "b", b"123")
    os.link(tmp_path / "a", tmp_path / "a-link")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    _write(outside / "big", b"0" * 10000)
    (tmp_path / "sym").symlink_to(outside)
    result = scan_path(str(tmp_path))
    assert result["exists"] and result["readable"] and result["has_data"]
    assert result["size_bytes"] == 8
    assert result["file_count"] == 3  # a, a-link, deep/er/b: regular files; the symlink is not one


def test_empty_directory(tmp_path):
    result = scan_path(str(tmp_path))
    assert (result["has_data"], result["size_bytes"], result["file_count"]) == (False, 0, 0)


def test_without_measure_no_sizes_but_markers(tmp_path):
    _write(tmp_path / "15" / "main" / "PG_VERSION", b"15\n")
    result = scan_path(str(tmp_path), measure=False)
    assert result["size_bytes"] is None and result["file_count"] is None
    assert result["has_data"] is True
    assert result["markers"] == {"postgres": "15/main"}


@pytest.mark.parametrize("files, engine", [
    ({"PG_VERSION": b"15", "base/1/123": b""}, "postgres"),
    ({"mysql/user.frm": b"", "ibdata1": b"", "aria_log_control": b""}, "mariadb"),
    ({"mysql/db.opt": b"", "ibdata1": b""}, "mysql"),
    ({"dump.rdb": b"REDIS0009"}, "redis"),
    ({"appendonlydir/appendonly.aof.1.base.rdb": b""}, "redis"),
    ({"WiredTiger": b"", "WiredTiger.wt": b"", "collection-0.wt": b""}, "mongodb"),
    ({"app/data.sqlite3": b"SQLite format 3\x00" + b"\x00" * 100}, "sqlite"),
])
def test_markers(tmp_path, files, engine):
    for name, data in files.items():
        _write(tmp_path / name, data)
    assert engine in scan_path(str(tmp_path))["markers"]


def test_a_db_file_that_is_no_sqlite(tmp_path):
    _write(tmp_path / "notes.db", b"just text")
    assert scan_path(str(tmp_path))["markers"] == {}


def test_secret_files_at_top_level_and_sockets(tmp_path):
    _write(tmp_path / "server.key")
    _write(tmp_path / "server.CRT")
    _write(tmp_path / "sub" / "deep.pem")  # not top level
    sock_path = tmp_path / "run" / "app.sock"
    sock_path.parent.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(sock_path))
        result = scan_path(str(tmp_path))
    finally:
        server.close()
    assert result["secret_files"] == ["server.CRT", "server.key"]
    assert result["sockets"] == ["run/app.sock"]


def test_single_file_and_missing_path(tmp_path):
    _write(tmp_path / "tls.pem", b"-----BEGIN")
    result = scan_path(str(tmp_path / "tls.pem"))
    assert (result["type"], result["size_bytes"], result["secret_files"]) == ("file", 10, ["tls.pem"])
    missing = scan_path(str(tmp_path / "nope"))
    assert missing["exists"] is False and missing["has_data"] is False


def test_scan_all_never_walks_system_paths_or_sockets(tmp_path):
    _write(tmp_path / "data" / "f", b"abc")
    data = {"volumes": [], "containers": [{"Mounts": [
        {"Type": "bind", "Source": "/proc", "Destination": "/host/proc"},
        {"Type": "bind", "Source": str(tmp_path / "data"), "Destination": "/data"},
        {"Type": "bind", "Source": "/var/run/docker.sock", "Destination": "/var/run/docker.sock"}]}]}
    scans = scan_all(data, measure=True)
    assert scans[f"path:{tmp_path / 'data'}"]["size_bytes"] == 3
    assert scans["path:/proc"]["size_bytes"] is None
    assert scans["path:/var/run/docker.sock"]["size_bytes"] is None


def test_volume_data_path_of_local_bind_volume():
    assert volume_data_path({"Driver": "local", "Mountpoint": "/m",
                             "Options": {"type": "none", "o": "bind", "device": "/srv/x"}}) == "/srv/x"
    assert volume_data_path({"Driver": "local", "Mountpoint": "/m", "Options": None}) == "/m"


# -- telling "no dump tool" from "docker exec failed" -----------------------------------------------
# A double of the engine's exec API: the failure it replays ("executing setns process", what runc
# says in a nested engine without CAP_SYS_PTRACE, see ../shared/ENGINE.md) cannot be made to
# happen on the test host itself, where every exec works. The integration tests exec for real.
class _ExecApi:
    def __init__(self, output: bytes, code: int) -> None:
        self.output, self.code = output, code

    def exec_create(self, *_args, **_kwargs):
        return {"Id": "e"}

    def exec_start(self, _exec_id):
        return self.output

    def exec_inspect(self, _exec_id):
        return {"ExitCode": self.code}


class _Client:
    def __init__(self, output: bytes, code: int) -> None:
        self.api = _ExecApi(output, code)


RAW = {"containers": [{"Name": "/db", "Id": "c" * 64}]}
SETNS = (b"OCI runtime exec failed: exec failed: container_linux.go:380: starting container process caused: "
         b"process_linux.go:130: executing setns process caused: exit status 1: unknown\r\n")


@pytest.mark.parametrize("output, code, tool, error", [
    (b"/usr/bin/mariadb-dump\n", 0, "mariadb-dump", None),
    (b"", 1, None, None),  # command -v found nothing: the tool is missing
    (SETNS, 126, None, "docker exec into the container failed (exit 126: OCI runtime exec failed"),
    (b'OCI runtime exec failed: exec: "sh": executable file not found in $PATH', 127, None, "no shell"),
])
def test_a_missing_dump_tool_is_told_apart_from_a_failed_exec(output, code, tool, error):
    found = probe_dump_tools(_Client(output, code), {"db": "mariadb"}, RAW)["db"]
    assert found["tool"] == tool
    if error is None:
        assert found["error"] is None
    else:
        assert error in found["error"]
