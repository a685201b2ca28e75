# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""SQLite databases in captured trees: copied with SQLite's online backup API while their
application runs, checked, and put into the unit's archive in place of the live file.

A live file copy of a database that is being written is torn (pages of different transactions,
a write-ahead log that does not match). SQLite's own backup API, from this host's Python
(Debian's python3 has the sqlite3 module; nothing from pip), reads the database under SQLite's
locking, as one read transaction, so the copy is a committed state; `PRAGMA integrity_check`
then checks it. The application keeps running: in WAL mode it is not held up at all, in
rollback mode its writes wait for the read (its busy timeout) while the copy is made.
Running as root, SQLite gives any -wal/-shm file it creates the database file's owner, so
the application (often a non-root user) is never locked out by the copy.

Pure: member_plan(), excludes_for(), walk_substitutes(), usable_path(). Effects: backup_copy().
"""

from __future__ import annotations

import errno
import glob
import os
import sqlite3
import stat
from typing import Any
from urllib.parse import quote

HEADER = b"SQLite format 3\x00"
# The files SQLite keeps beside a database: never captured next to the online copy (they belong
# to the live file; the copy is complete without them).
SIDE_FILES = ("-wal", "-shm", "-journal")
# How long the copy waits for a lock the application holds (its own busy timeout works the
# same way): a write transaction in rollback mode must end before the read can start.
BUSY_TIMEOUT = 60.0


class SQLiteError(Exception):
    """A database could not be copied consistently: the message says which and why."""


def usable_path(rel: str) -> bool:
    """Whether REL (a path in the unit) can be swapped for its online copy in tar's stream: a
    relative path without control characters (tar's --transform and exclude lines), else it is
    copied as it is (and the result says so)."""
    return bool(rel) and not rel.startswith("/") and ".." not in rel.split("/") \
        and not any(ord(c) < 32 for c in rel)


def member_plan(databases: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(copies, left as they are) for the databases of a unit: each copy gets a scratch name
    (`sqlite-N.db`) under which tar reads it and the path it takes in the archive."""
    copies, plain = [], []
    for rel in databases:
        if usable_path(rel):
            copies.append({"path": rel, "scratch": f"sqlite-{len(copies)}.db"})
        else:
            plain.append({"path": rel, "reason": "its name holds control characters: copied as it is"})
    return copies, plain


def excludes_for(copies: list[dict[str, Any]]) -> list[str]:
    """tar/walk exclude patterns (anchored) for the live database files and their side files."""
    return ["./" + glob.escape(c["path"] + suffix) for c in copies for suffix in ("",) + SIDE_FILES]


def side_file_excludes(entry: dict[str, Any]) -> list[str]:
    """Exclude patterns for the side files (-wal, -shm, -journal) of the databases a manifest
    ENTRY captured online: the snapshot holds none by design, and the application makes them
    again as soon as it runs, so a check of the running service's tree must not count them."""
    online = [d for d in entry.get("sqlite") or [] if d.get("method") == "online backup" and d.get("path")]
    return ["./" + glob.escape(d["path"] + suffix) for d in online for suffix in SIDE_FILES]


def walk_substitutes(copies: list[dict[str, Any]], scratch: str) -> dict[str, str | None]:
    """What the metadata walk sees instead of the live files: the copy at a database's path,
    nothing at its side files' paths."""
    out: dict[str, str | None] = {}
    for c in copies:
        out[c["path"]] = os.path.join(scratch, c["scratch"])
        for suffix in SIDE_FILES:
            out[c["path"] + suffix] = None
    return out


def is_database(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == HEADER
    except OSError:
        return False


def backup_copy(src: str, dst: str, timeout: float = BUSY_TIMEOUT) -> dict[str, Any]:
    """Copies the database SRC to DST with the online backup API (one step: one read
    transaction, so a committed state), checks the copy with PRAGMA integrity_check and gives it
    SRC's owner, mode, times and extended attributes. Returns {"bytes", "pages", "journal_mode"}.
    Raises SQLiteError naming the file and what to do."""
    try:
        st = os.stat(src)
    except OSError as exc:
        raise SQLiteError(f"{src}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode) or not is_database(src):
        raise SQLiteError(f"{src} is no SQLite database any more")
    source = target = None
    try:
        # The URI form never creates a database where there is none; read-write, because a
        # read-only connection cannot open a WAL database whose -shm it may not create.
        source = sqlite3.connect(f"file:{_uri_path(src)}?mode=rw", uri=True, timeout=timeout,
                                 isolation_level=None)
        journal_mode = source.execute("PRAGMA journal_mode").fetchone()[0]
        target = sqlite3.connect(dst, isolation_level=None)
        source.backup(target, pages=-1)
        pages = target.execute("PRAGMA page_count").fetchone()[0]
        problems = [row[0] for row in target.execute("PRAGMA integrity_check(20)")]
    except sqlite3.Error as exc:
        raise SQLiteError(f"the online backup of SQLite database {src} failed: {exc}. If the application "
                          "holds a write lock that long, give the unit strategy stop") from exc
    finally:
        for con in (target, source):
            if con is not None:
                con.close()
    if problems != ["ok"]:
        raise SQLiteError(f"SQLite database {src}: its online copy fails PRAGMA integrity_check "
                          f"({'; '.join(problems[:5])}): the database itself is damaged; check it with "
                          "`sqlite3 FILE 'PRAGMA integrity_check'` and repair it (.recover)")
    for side in SIDE_FILES:  # the copy is complete in itself; tar must not see its own side files
        try:
            os.unlink(dst + side)
        except FileNotFoundError:
            pass
    os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    return {"bytes": os.path.getsize(dst), "pages": pages, "journal_mode": journal_mode}


def _uri_path(path: str) -> str:
    return quote(os.fsencode(path), safe="/")


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
