# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""The data path: GNU tar and zstd in pipelines that Python supervises.

- walk(): one metadata pass over a tree (no file content read): counts, apparent bytes, the
  index of entries (for verification after a restore) and a fingerprint of all metadata
  (inode, size, mtime, ctime, mode, owner) that tells an unchanged tree without reading it.
- capture(): `tar --create | zstd` into a repository writer, hashing the stored bytes.
- extract(): object -> sha256 -> `zstd -d` -> TarChecker -> `tar --extract`, one pass; the
  checker refuses unsafe members before tar sees them, the hash is checked at the end.
Objects restore by hand with `zstd -d < OBJECT | tar -x --numeric-owner --xattrs
--xattrs-include='*' --acls` (see docs/repository-format.md).
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import stat
import subprocess
import tempfile
import threading
import time
from typing import Any, BinaryIO

from ansible_collections.lifeboat.docker.plugins.module_utils._tarcheck import TarChecker, UnsafeArchive

CHUNK = 1 << 20
F_SETPIPE_SZ = 1031
TAR_COMMON = ["--numeric-owner", "--acls", "--xattrs", "--xattrs-include=*"]


class ArchiveError(Exception):
    """A capture or extraction failed; the message says which step and why."""


class ChecksumMismatch(ArchiveError):
    """The object's bytes do not hash to the name the manifest gives."""


def _big_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass  # the default pipe size works, a little slower


def _excluded(rel: str, patterns: list[str]) -> bool:
    """GNU tar's --exclude matching (unanchored, leading-directory): a pattern excludes a member
    when it matches any run of whole components, e.g. 'cache' excludes 'a/cache' and 'a/cache/x'."""
    if not patterns:
        return False
    parts = rel.split("/")
    for i in range(len(parts)):
        for j in range(i + 1, len(parts) + 1):
            run = "/".join(parts[i:j])
            for pat in patterns:
                if fnmatch.fnmatchcase(run, pat):
                    return True
    return False


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISFIFO(mode):
        return "p"
    if stat.S_ISCHR(mode):
        return "c"
    if stat.S_ISBLK(mode):
        return "b"
    return "s"


class TreeScan:
    """What walk() found: counts, bytes, the index lines and the metadata fingerprint."""

    def __init__(self) -> None:
        self.files = 0
        self.dirs = 0
        self.others = 0
        self.bytes = 0
        self.index: list[str] = []
        self._fp = hashlib.sha256()

    @property
    def fingerprint(self) -> str:
        return self._fp.hexdigest()

    def index_bytes(self) -> bytes:
        return ("\n".join(self.index) + "\n").encode("utf-8", "surrogateescape")


def walk(root: str, excludes: list[str] | None = None) -> TreeScan:
    """Metadata of every entry below root (root included as '.'), sockets and excludes left out.

    Index lines are JSON arrays [path, kind, size, mode, uid, gid, mtime_s, link target]; paths
    are relative, bytes that are not UTF-8 kept through surrogate escapes.
    """
    excludes = list(excludes or [])
    scan = TreeScan()
    root_st = os.lstat(root)
    if not stat.S_ISDIR(root_st.st_mode):
        raise ArchiveError(f"{root} is not a directory")
    root_dev = root_st.st_dev
    stack: list[tuple[str, str]] = [(root, ".")]
    _record(scan, ".", root_st, None)
    while stack:
        path, rel = stack.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            raise ArchiveError(f"cannot read directory {path}: {exc}") from exc
        for entry in entries:
            erel = entry.name if rel == "." else f"{rel}/{entry.name}"
            if _excluded(erel, excludes):
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISSOCK(st.st_mode):
                continue  # tar leaves sockets out too
            link = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else None
            _record(scan, erel, st, link)
            if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                stack.append((entry.path, erel))
    return scan


def _record(scan: TreeScan, rel: str, st: os.stat_result, link: str | None) -> None:
    kind = _kind(st.st_mode)
    size = st.st_size if kind == "f" else 0
    if kind == "f":
        scan.files += 1
        scan.bytes += size
    elif kind == "d":
        scan.dirs += 1
    else:
        scan.others += 1
    line = json.dumps([rel, kind, size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                       int(st.st_mtime), link], ensure_ascii=True, separators=(",", ":"))
    scan.index.append(line)
    scan._fp.update(f"{line}\0{st.st_ino}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_nlink}\n"
                    .encode("utf-8", "surrogateescape"))


def compare_index(expected: bytes, actual: bytes) -> list[str]:
    """Differences between two indexes (paths, kinds, sizes, modes, owners, mtimes of files)."""
    def parse(data: bytes) -> dict[str, list[Any]]:
        out = {}
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            if line:
                item = json.loads(line)
                out[item[0]] = item
        return out

    want, have = parse(expected), parse(actual)
    problems = []
    for path in sorted(set(want) | set(have)):
        a, b = want.get(path), have.get(path)
        if a is None:
            problems.append(f"unexpected {path!r}")
        elif b is None:
            problems.append(f"missing {path!r}")
        else:
            # Directory mtimes change as entries are added; files, links and owners must not.
            fields = (1, 2, 3, 4, 5, 7) if a[1] == "d" else (1, 2, 3, 4, 5, 6, 7)
            names = {1: "kind", 2: "size", 3: "mode", 4: "uid", 5: "gid", 6: "mtime", 7: "link target"}
            for i in fields:
                if a[i] != b[i]:
                    problems.append(f"{path!r}: {names[i]} {b[i]!r}, expected {a[i]!r}")
        if len(problems) >= 20:
            problems.append("... (more differences not listed)")
            break
    return problems


def _stderr_text(fh) -> str:
    fh.seek(0)
    text = fh.read().decode("utf-8", "replace").strip()
    return text[-2000:]


def capture(src: str, writer, level: int = 3, excludes: list[str] | None = None,
            threads: int = 0, tolerate_changes: bool = False) -> dict[str, Any]:
    """tar SRC | zstd -LEVEL into writer; returns sha256 and stored size of what was written.

    tar exiting 1 ("file changed as we read it") fails the capture unless tolerate_changes
    (live captures of data that may be written meanwhile).
    """
    tar_cmd = ["tar", "--create", "--file=-", "--format=posix", "--sparse", "--one-file-system",
               *TAR_COMMON, "--directory", src]
    tar_cmd += [f"--exclude={p}" for p in (excludes or [])]
    tar_cmd.append(".")
    zstd_cmd = ["zstd", "-q", "-c", f"-{int(level)}", f"-T{int(threads)}"]
    if level > 19:
        zstd_cmd.insert(1, "--ultra")
    digest = hashlib.sha256()
    stored = 0
    with tempfile.TemporaryFile() as tar_err, tempfile.TemporaryFile() as zstd_err:
        tar = subprocess.Popen(tar_cmd, stdout=subprocess.PIPE, stderr=tar_err, stdin=subprocess.DEVNULL)
        try:
            zstd = subprocess.Popen(zstd_cmd, stdin=tar.stdout, stdout=subprocess.PIPE, stderr=zstd_err)
        except BaseException:
            tar.kill()
            tar.wait()
            raise
        tar.stdout.close()
        out_fd = zstd.stdout.fileno()
        _big_pipe(out_fd)
        try:
            while True:
                chunk = os.read(out_fd, CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                writer.write(chunk)
                stored += len(chunk)
        except BaseException:
            for proc in (tar, zstd):
                proc.kill()
            tar.wait()
            zstd.wait()
            raise
        finally:
            zstd.stdout.close()
        tar_rc, zstd_rc = tar.wait(), zstd.wait()
        if zstd_rc != 0:
            raise ArchiveError(f"zstd failed (exit {zstd_rc}): {_stderr_text(zstd_err)}")
        if tar_rc == 1 and not tolerate_changes:
            raise ArchiveError(f"files changed while tar read {src} (tar exit 1): the copy would not be "
                               f"consistent; quiesce the writers (strategy stop or pause). {_stderr_text(tar_err)}")
        if tar_rc not in (0, 1):
            raise ArchiveError(f"tar failed reading {src} (exit {tar_rc}): {_stderr_text(tar_err)}")
        warnings = [line for line in _stderr_text(tar_err).splitlines() if line]
    return {"sha256": digest.hexdigest(), "size": stored, "tar_warnings": warnings[-20:]}


def compress_bytes(data: bytes, level: int = 3) -> bytes:
    proc = subprocess.run(["zstd", "-q", "-c", f"-{int(level)}"], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise ArchiveError(f"zstd failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def decompress_bytes(data: bytes) -> bytes:
    proc = subprocess.run(["zstd", "-q", "-d", "-c"], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise ArchiveError(f"zstd could not decompress: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def hash_stream(reader: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = reader.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def extract(reader: BinaryIO, dest: str, expected_sha256: str, allow_devices: bool = False) -> dict[str, Any]:
    """Object bytes -> zstd -d -> TarChecker -> tar -x into dest (an empty staging directory).

    Raises UnsafeArchive (before the bad member reaches tar), ChecksumMismatch (at the end: the
    caller discards dest) or ArchiveError. Nothing outside dest is written.
    """
    started = time.monotonic()
    digest = hashlib.sha256()
    read_error: list[BaseException] = []
    checker = TarChecker(allow_devices=allow_devices)
    tar_cmd = ["tar", "--extract", "--file=-", "--same-permissions", "--same-owner", *TAR_COMMON,
               "--directory", dest]
    with tempfile.TemporaryFile() as tar_err, tempfile.TemporaryFile() as zstd_err:
        zstd = subprocess.Popen(["zstd", "-q", "-d", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=zstd_err)
        try:
            tar = subprocess.Popen(tar_cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=tar_err)
        except BaseException:
            zstd.kill()
            zstd.wait()
            raise

        def feed_zstd() -> None:
            try:
                while True:
                    chunk = reader.read(CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    zstd.stdin.write(chunk)
            except BrokenPipeError:
                pass  # zstd stopped (damaged input or we killed it): its exit code tells
            except BaseException as exc:  # pylint: disable=broad-except
                read_error.append(exc)
            finally:
                try:
                    zstd.stdin.close()
                except BrokenPipeError:
                    pass

        feeder = threading.Thread(target=feed_zstd, daemon=True)
        feeder.start()
        in_fd, out_fd = zstd.stdout.fileno(), tar.stdin.fileno()
        _big_pipe(in_fd)
        _big_pipe(out_fd)
        failure: BaseException | None = None
        try:
            while True:
                chunk = os.read(in_fd, CHUNK)
                if not chunk:
                    break
                checker.feed(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out_fd, view):]
            checker.close()
        except (UnsafeArchive, OSError) as exc:
            failure = exc
        except BaseException as exc:
            failure = exc
        if failure is not None:
            for proc in (zstd, tar):
                proc.kill()
        try:
            tar.stdin.close()
        except BrokenPipeError:
            pass
        tar_rc = tar.wait()
        zstd.stdout.close()
        zstd_rc = zstd.wait()
        feeder.join()
        if read_error:
            raise ArchiveError(f"reading the object failed: {read_error[0]}")
        # The feeder stops early when zstd or tar stopped (damaged bytes make zstd fail, and then
        # the checker sees a truncated archive): hash the rest, so that a damaged object is
        # reported as damaged, not as an unsafe or truncated archive.
        try:
            while True:
                chunk = reader.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
        except OSError as exc:
            raise ArchiveError(f"reading the object failed: {exc}") from exc
        actual = digest.hexdigest()
        if actual != expected_sha256:
            raise ChecksumMismatch(f"object {expected_sha256} is damaged: its bytes hash to {actual}; "
                                   "restore from another snapshot or copy")
        if zstd_rc > 0:  # zstd failed by itself (a negative code is our kill after another failure)
            raise ChecksumMismatch(f"object {expected_sha256} is damaged: zstd could not decompress it "
                                   f"({_stderr_text(zstd_err) or 'exit %d' % zstd_rc}); restore from another snapshot")
        if isinstance(failure, UnsafeArchive):
            raise failure
        if failure is not None or zstd_rc != 0:
            raise ArchiveError(f"extraction failed: {failure or 'zstd exit %d' % zstd_rc}; "
                               f"tar said: {_stderr_text(tar_err)}")
        if tar_rc != 0:
            raise ArchiveError(f"tar failed extracting into {dest} (exit {tar_rc}): {_stderr_text(tar_err)}")
    return {"members": checker.members, "seconds": round(time.monotonic() - started, 3)}
