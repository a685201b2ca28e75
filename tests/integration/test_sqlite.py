"""Integration tests of SQLite databases (issue 20): an application that writes its SQLite database
without pause, as a non-root user (lifeboat-test/sqlite-app: a ledger whose transactions move
amounts between accounts, so every consistent copy holds the same total and as many journal rows
as its counter says), in WAL and in rollback-journal mode. data_inventory finds the database and
plans it live with SQLite's online backup; the snapshot copies it without stopping the
application, the copy passes PRAGMA integrity_check and keeps the invariant after a restore,
and the application, restored in place, runs on from it.
"""

from __future__ import annotations

import os
import sqlite3

import pytest

from conftest import docker_cli, run_module
from fixtures.lab import open_lab
from fixtures.lab import Lab as BaseLab

APP = "lifeboat-test/sqlite-app:latest"
TOTAL = 50000


class Lab(BaseLab):
    def ledger(self, suffix: str, mode: str) -> tuple[str, str, str]:
        """(container, volume, volume directory) of a ledger app writing in journal MODE."""
        volume, where = self.volume(f"{suffix}-data")
        name = self.name(suffix)
        self.containers.append(name)
        # Its PID 1 (python) has no SIGTERM handler: the label keeps the restore's stop short.
        docker_cli("run", "-d", "--name", name, "-e", f"LEDGER_MODE={mode}", "-e", "LEDGER_PAUSE=0",
                   "--label", "lifeboat.stop_timeout=2", "-v", f"{volume}:/data", APP)
        return name, volume, where


@pytest.fixture()
def lab(docker_client, prefix, monkeypatch):
    yield from open_lab(Lab(docker_client, prefix), monkeypatch)


def ledger_state(path: str) -> tuple[int, int, int, str]:
    """(total, journal rows, counter, integrity) of the ledger database at PATH, read-only."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        total = con.execute("SELECT sum(balance) FROM account").fetchone()[0]
        rows = con.execute("SELECT count(*) FROM journal").fetchone()[0]
        counter = con.execute("SELECT n FROM counter").fetchone()[0]
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    return total, rows, counter, integrity


def transfers(container: str) -> int:
    out = docker_cli("exec", container, "sqlite3", "/data/ledger.db", "SELECT n FROM counter")
    return int(out.strip())


def wait_busy(container: str, at_least: int = 300) -> None:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if transfers(container) >= at_least:
                return
        except AssertionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the ledger in {container} did not get going: {docker_cli('logs', container)}")


def test_sqlite_databases_are_captured_online_and_restored_consistent(lab):
    wal_app, wal_volume, wal_dir = lab.ledger("wal", "wal")
    rb_app, rb_volume, rb_dir = lab.ledger("rollback", "delete")
    with open(os.path.join(wal_dir, "upload.bin"), "wb") as fh:  # a file beside the database
        fh.write(os.urandom(3000))
    for app in (wal_app, rb_app):
        wait_busy(app)
    assert os.path.exists(os.path.join(wal_dir, "ledger.db-wal"))
    started = {app: lab.state(app)[1] for app in (wal_app, rb_app)}

    # Planned live, with the online backup, and named so in the storage-concept document.
    report = os.path.join(lab.tmpdir("report"), "concept.md")
    inv = run_module("data_inventory", report=report)
    units = {u["id"]: u for u in inv["units"]}
    for volume in (wal_volume, rb_volume):
        unit = units[f"volume:{volume}"]
        assert unit["strategy"] == "live" and unit["engine"] == "sqlite", unit
        assert unit["sqlite"] == ["ledger.db"] and "online backup" in unit["reason"], unit
    with open(report, encoding="utf-8") as fh:
        concept = fh.read()
    assert f"`ledger.db` in volume `{wal_volume}`" in concept and "online backup" in concept

    repo = lab.repo()
    ids = [f"volume:{wal_volume}", f"volume:{rb_volume}"]
    done = run_module("snapshot", repository=repo, units=ids, parallel=2)
    for uid in ids:
        got = done["units"][uid]
        assert got["downtime"] == {}, got
        assert got["sqlite"] == [{"path": "ledger.db", "method": "online backup", "integrity": "ok",
                                  "bytes": got["sqlite"][0]["bytes"],
                                  "journal_mode": "wal" if uid.endswith("wal-data") else "delete"}], got
    # Nothing was stopped, the apps write on, and their side files still belong to them.
    for app in (wal_app, rb_app):
        assert lab.state(app) == ("running", started[app])
    before = transfers(wal_app)
    wait_busy(wal_app, before + 50)
    for name in os.listdir(wal_dir):
        assert os.stat(os.path.join(wal_dir, name)).st_uid in (1000, 0 if name == "upload.bin" else 1000), name

    # Restored elsewhere: each database is one committed state (the total holds, the journal has
    # as many rows as the counter), owned by the app's user, without the live side files.
    for uid, where in ((ids[0], wal_dir), (ids[1], rb_dir)):
        out = lab.tmpdir("out")
        target = os.path.join(out, "tree")
        run_module("snapshot_restore", repository=repo, snapshot=done["snapshot_id"], unit=uid, target_path=target)
        assert not [n for n in os.listdir(target) if n.startswith("ledger.db-")]
        assert os.stat(os.path.join(target, "ledger.db")).st_uid == 1000
        total, rows, counter, integrity = ledger_state(os.path.join(target, "ledger.db"))
        assert (total, integrity) == (TOTAL, "ok") and rows == counter > 0, (uid, total, rows, counter)
        if where == wal_dir:
            with open(os.path.join(target, "upload.bin"), "rb") as fh, \
                    open(os.path.join(where, "upload.bin"), "rb") as live:
                assert fh.read() == live.read()

    # Restored in place over the running app (force): it comes back and writes on from the copy.
    restored = run_module("snapshot_restore", repository=repo, snapshot=done["snapshot_id"], unit=ids[0], force=True)
    assert restored["verified"] is True and wal_app in restored["downtime"], restored
    assert lab.state(wal_app)[0] == "running"
    at_restore = transfers(wal_app)
    wait_busy(wal_app, at_restore + 50)
    docker_cli("stop", wal_app)
    total, rows, counter, integrity = ledger_state(os.path.join(wal_dir, "ledger.db"))
    assert (total, integrity) == (TOTAL, "ok") and rows == counter >= at_restore + 50
    # The scratch copies are gone, and no journal is left.
    scratch = os.path.join(lab.state_dir, "scratch")
    assert not os.path.isdir(scratch) or os.listdir(scratch) == []
    assert lab.journals() == []
