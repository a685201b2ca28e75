"""SQLite databases in captured trees: which files are databases, how their online copies take the
live files' place in tar's stream and in the index (pure parts), and the online copy itself on
real database files (Python's sqlite3, as on a target)."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import (
    rename_expression,
    tar_create_command,
    walk,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.probe import (
    scan_path,
    sqlite_candidates,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._data.sqlite import (
    SQLiteError,
    backup_copy,
    excludes_for,
    member_plan,
    walk_substitutes,
)


def _database(path, mode="wal", rows=10):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA journal_mode={mode}")
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
    return con


def test_candidates_by_suffix_or_side_file():
    files = ["app.db", "data", "data-wal", "notes.txt", "cache", "cache-journal", "x.SQLITE3"]
    assert sqlite_candidates(files) == ["app.db", "data", "cache", "x.SQLITE3"]


def test_scan_lists_databases_by_header_at_any_marker_depth(tmp_path):
    _database(str(tmp_path / "app.db")).close()
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    keep = _database(str(tmp_path / "sub" / "deeper" / "store"))  # no suffix: its -wal tells
    (tmp_path / "fake.db").write_bytes(b"not a database at all")
    scan = scan_path(str(tmp_path), measure=False)
    assert scan["sqlite"] == ["app.db", "sub/deeper/store"]
    assert scan["markers"]["sqlite"] in scan["sqlite"]
    keep.close()


def test_member_plan_excludes_and_substitutes():
    copies, plain = member_plan(["a/app.db", "b[1]/x.db", "bad\nname.db"])
    assert [c["scratch"] for c in copies] == ["sqlite-0.db", "sqlite-1.db"]
    assert plain == [{"path": "bad\nname.db", "reason": "its name holds control characters: copied as it is"}]
    assert excludes_for(copies[:1]) == ["./a/app.db", "./a/app.db-wal", "./a/app.db-shm", "./a/app.db-journal"]
    assert excludes_for(copies[1:])[0] == "./b[[]1]/x.db"  # glob characters taken literally
    subst = walk_substitutes(copies[:1], "/scratch")
    assert subst == {"a/app.db": "/scratch/sqlite-0.db", "a/app.db-wal": None, "a/app.db-shm": None,
                     "a/app.db-journal": None}


def test_rename_expression_escapes_the_target():
    assert rename_expression("sqlite-0.db", "a&b|c\\d.db") == "s|^\\./sqlite-0\\.db$|./a\\&b\\|c\\\\d.db|"


def test_online_copy_replaces_the_live_file_in_tar_and_index(tmp_path):
    src, scratch = tmp_path / "src", tmp_path / "scratch"
    (src / "sub").mkdir(parents=True)
    scratch.mkdir()
    live = _database(str(src / "sub" / "app&1.db"), rows=100)  # held open: its -wal and -shm exist
    (src / "other").write_bytes(b"x")
    assert (src / "sub" / "app&1.db-wal").exists()
    copies = member_plan(["sub/app&1.db"])[0]
    got = backup_copy(str(src / "sub" / "app&1.db"), str(scratch / copies[0]["scratch"]))
    assert got["journal_mode"] == "wal" and got["pages"] > 0
    live.execute("INSERT INTO t VALUES (999)")  # after the copy: not in it

    index = walk(str(src), [], substitutes=walk_substitutes(copies, str(scratch))).index_bytes()
    paths = [line.split(b",")[0] for line in index.splitlines()]
    assert b'["sub/app&1.db"' in paths and not any(b"-wal" in p or b"-shm" in p for p in paths)

    cmd = tar_create_command(str(src), excludes_for(copies), xattrs=False,
                             extra=(str(scratch), [(c["scratch"], c["path"]) for c in copies]))
    out = tmp_path / "out"
    out.mkdir()
    tar = subprocess.run(cmd, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=tar, check=True)
    assert sorted(os.listdir(out / "sub")) == ["app&1.db"]
    con = sqlite3.connect(str(out / "sub" / "app&1.db"))
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 100
    con.close()
    live.close()


def test_copy_of_a_damaged_or_vanished_database_fails_with_its_name(tmp_path):
    path = tmp_path / "app.db"
    _database(str(path), mode="delete", rows=2000).close()
    data = bytearray(path.read_bytes())
    data[4096 * 2:4096 * 2 + 12] = b"\x0d" + b"\xff" * 11  # a leaf page's header: cell count and offsets wrong
    path.write_bytes(bytes(data))
    with pytest.raises(SQLiteError, match=r"app\.db.*(integrity_check|malformed|failed)"):
        backup_copy(str(path), str(tmp_path / "copy.db"))
    with pytest.raises(SQLiteError, match="no SQLite database"):
        path.write_bytes(b"plain text now")
        backup_copy(str(path), str(tmp_path / "copy2.db"))


def test_side_files_of_online_copies_are_not_counted_in_a_running_services_tree():
    from ansible_collections.lifeboat.docker.plugins.module_utils._data.sqlite import side_file_excludes

    entry = {"sqlite": [{"path": "db/ledger.db", "method": "online backup"},
                        {"path": "odd.db", "method": "copied as it is"}]}
    assert side_file_excludes(entry) == ["./db/ledger.db-wal", "./db/ledger.db-shm", "./db/ledger.db-journal"]
    assert side_file_excludes({"id": "volume:x"}) == []
