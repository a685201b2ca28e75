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

import errno
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
from json.encoder import encode_basestring_ascii
from typing import Any, BinaryIO, Callable, Iterator

from ansible_collections.lifeboat.docker.plugins.module_utils._common.pipes import feed
from ansible_collections.lifeboat.docker.plugins.module_utils._data.tarcheck import TarChecker, UnsafeArchive

CHUNK = 1 << 20
F_SETPIPE_SZ = 1031
# Records of 64 KiB (-b 128) instead of tar's 10 KiB: tar reads files and writes the archive with
# a sixth of the system calls (a third less CPU for tar and its reader); the archive ends padded
# to 64 KiB, which plain `zstd -d | tar -x` reads without complaint.
TAR_RECORD = ["--blocking-factor=128"]
TAR_XATTRS = ["--acls", "--xattrs", "--xattrs-include=*"]
# Member data longer than this moves from zstd to tar with splice(2), past the checker and
# without a copy through Python (the checker has read the member's header already).
SPLICE_MIN = 64 << 10
HAVE_SPLICE = hasattr(os, "splice")  # Python 3.10 or later, on Linux
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
S_IFREG, S_IFDIR, S_IFLNK, S_IFSOCK = stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFSOCK
# A local object's writer is asked to start writing to disk every so many bytes (see
# LocalWriter.start_writeback): the capture's final fsync then waits only for the last few MiB
# (on the bench's 195 MiB object, the commit took 21 ms with 16 MiB steps, 14 ms with 4 MiB).
WRITEBACK_EVERY = 4 << 20


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
    when it matches any run of whole components, e.g. 'cache' excludes 'a/cache' and 'a/cache/x'.
    A pattern that starts with './' matches from the top only (tar's member names start with './'
    there), e.g. './backups' excludes 'backups' and 'backups/x' but not 'a/backups'."""
    if not patterns:
        return False
    parts = rel.split("/")
    for i in range(len(parts)):
        for j in range(i + 1, len(parts) + 1):
            run = "/".join(parts[i:j])
            for pat in patterns:
                if pat.startswith("./"):
                    if i == 0 and fnmatch.fnmatchcase(run, pat[2:]):
                        return True
                elif fnmatch.fnmatchcase(run, pat):
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
    """What walk() found: counts, bytes, the metadata fingerprint, and the index lines (kept here
    only when walk() was given no sink for them)."""

    def __init__(self, keep_index: bool = True) -> None:
        self.files = 0
        self.dirs = 0
        self.others = 0
        self.bytes = 0
        self.xattrs = False
        self.index: list[bytes] | None = [] if keep_index else None
        self._fp = hashlib.sha256()

    @property
    def fingerprint(self) -> str:
        return self._fp.hexdigest()

    def index_bytes(self) -> bytes:
        if self.index is None:
            raise ArchiveError("the index went to a sink and was not kept")
        return b"".join(self.index)


# json.dumps(text) of a str (ensure_ascii) is exactly this function (C in CPython), without
# dumps' own call overhead: it runs once or twice per entry in walk().
_quote = encode_basestring_ascii


def has_xattrs(path: str) -> bool:
    try:
        return bool(os.listxattr(path, follow_symlinks=False))
    except OSError as exc:
        # A file system without extended attributes has none; any other error: assume some,
        # so that tar is asked to look.
        return exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT)


def walk(root: str, excludes: list[str] | None = None, sink: Callable[[bytes], Any] | None = None,
         probe_xattrs: bool = False, fingerprint: bool = True,
         on_xattrs: Callable[[], Any] | None = None,
         substitutes: dict[str, str | None] | None = None) -> TreeScan:
    """Metadata of every entry below root (root included as '.'), sockets and excludes left out.

    Index lines are JSON arrays [path, kind, size, mode, uid, gid, mtime_s, link target], one a
    line; paths are relative, bytes that are not UTF-8 kept through surrogate escapes (and so
    written as \\udcXX). The lines go to sink (called with blocks of whole lines, a directory's
    entries at a time, so memory does not grow with the tree), or are kept in the TreeScan when
    there is no sink. Order: depth first, a directory's entries sorted by name (the same tree
    always gives the same bytes). probe_xattrs: also tell (scan.xattrs) whether any entry has
    extended attributes (POSIX ACLs are some), one listxattr per entry until one is found;
    on_xattrs is called once, when the first is found. fingerprint=False: the fingerprint is not
    computed (a verification needs only the index). substitutes: {relative path: another file
    whose metadata the entry takes (the online copy of a database, _data/sqlite.py), or None to leave
    the entry out}; for what tar_create_command(extra=) puts into the archive instead.
    """
    excludes = list(excludes or [])
    subst = substitutes or None
    scan = TreeScan(keep_index=sink is None)
    emit: Callable[[bytes], Any] = sink if sink is not None else scan.index.append  # type: ignore[union-attr]
    root_st = os.lstat(root)
    if not stat.S_ISDIR(root_st.st_mode):
        raise ArchiveError(f"{root} is not a directory")
    root_dev = root_st.st_dev
    probe = probe_xattrs
    if probe and has_xattrs(root):
        scan.xattrs, probe = True, False
        if on_xattrs is not None:
            on_xattrs()
    stack: list[tuple[str, str]] = [(root, ".")]
    lines: list[str] = []
    prints: list[str] | None = [] if fingerprint else None
    _record(scan, lines, prints, ".", root_st, None)
    # The loop below is _record() inlined, with names looked up once: it runs once per entry.
    lstat, readlink, s_imode = os.lstat, os.readlink, stat.S_IMODE
    add_line = lines.append
    add_print = prints.append if prints is not None else None
    files = dirs = others = nbytes = 0
    while stack:
        path, rel = stack.pop()
        try:
            dir_fd = os.open(path, DIR_FLAGS)
        except OSError as exc:
            raise ArchiveError(f"cannot read directory {path}: {exc}") from exc
        try:
            try:
                names = sorted(os.listdir(dir_fd))
            except OSError as exc:
                raise ArchiveError(f"cannot read directory {path}: {exc}") from exc
            prefix = "" if rel == "." else rel + "/"
            dpath = path + "/"
            for name in names:
                erel = prefix + name
                if excludes and _excluded(erel, excludes):
                    continue
                if subst is not None and erel in subst:
                    other = subst[erel]
                    if other is None:
                        continue
                    st = lstat(other)
                else:
                    st = lstat(name, dir_fd=dir_fd)
                mode = st.st_mode
                fmt = mode & 0o170000
                link = None
                if fmt == S_IFREG:
                    kind, size = "f", st.st_size
                    files += 1
                    nbytes += size
                elif fmt == S_IFDIR:
                    kind, size = "d", 0
                    dirs += 1
                    if st.st_dev == root_dev:
                        stack.append((dpath + name, erel))
                elif fmt == S_IFSOCK:
                    continue  # tar leaves sockets out too
                else:
                    kind, size = _kind(mode), 0
                    others += 1
                    if fmt == S_IFLNK:
                        link = readlink(name, dir_fd=dir_fd)
                if probe and has_xattrs(dpath + name if subst is None else (subst.get(erel) or dpath + name)):
                    scan.xattrs, probe = True, False
                    if on_xattrs is not None:
                        on_xattrs()
                # Byte for byte what json.dumps([...], ensure_ascii=True, separators=(",", ":"))
                # gives, as earlier versions wrote it: old indexes and fingerprints stay comparable.
                line = (f'[{_quote(erel)},"{kind}",{size},{s_imode(mode)},{st.st_uid},{st.st_gid},'
                        f'{int(st.st_mtime)},{"null" if link is None else _quote(link)}]')
                add_line(line)
                if add_print is not None:
                    add_print(f"{line}\0{st.st_ino}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_nlink}\n")
        finally:
            os.close(dir_fd)
        if lines:
            emit(("\n".join(lines) + "\n").encode("ascii"))
            lines.clear()
            if prints:
                scan._fp.update("".join(prints).encode("ascii"))
                prints.clear()
    scan.files += files
    scan.dirs += dirs
    scan.others += others
    scan.bytes += nbytes
    return scan


def walk_file(parent: str, name: str, sink: Callable[[bytes], Any] | None = None, probe_xattrs: bool = False,
              fingerprint: bool = True) -> TreeScan:
    """walk() of a file unit: the one regular file PARENT/NAME, indexed as NAME (there is no '.'
    entry: the directory that holds the file is not part of the unit)."""
    scan = TreeScan(keep_index=sink is None)
    path = os.path.join(parent, name)
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ArchiveError(f"{path} is not a regular file any more")
    lines: list[str] = []
    prints: list[str] | None = [] if fingerprint else None
    _record(scan, lines, prints, name, st, None)
    scan.xattrs = probe_xattrs and has_xattrs(path)
    data = ("\n".join(lines) + "\n").encode("ascii")
    (sink if sink is not None else scan.index.append)(data)  # type: ignore[union-attr]
    if prints:
        scan._fp.update("".join(prints).encode("ascii"))
    return scan


def _record(scan: TreeScan, lines: list[str], prints: list[str] | None, rel: str, st: os.stat_result,
            link: str | None) -> None:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        kind, size = "f", st.st_size
        scan.files += 1
        scan.bytes += size
    else:
        kind, size = _kind(mode), 0
        if kind == "d":
            scan.dirs += 1
        else:
            scan.others += 1
    # Byte for byte what json.dumps([...], ensure_ascii=True, separators=(",", ":")) gives, as
    # earlier versions wrote it: old indexes and fingerprints stay comparable.
    line = (f'[{_quote(rel)},"{kind}",{size},{stat.S_IMODE(mode)},{st.st_uid},{st.st_gid},'
            f'{int(st.st_mtime)},{"null" if link is None else _quote(link)}]')
    lines.append(line)
    if prints is not None:
        prints.append(f"{line}\0{st.st_ino}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_nlink}\n")


INDEX_FIELDS = {1: "kind", 2: "size", 3: "mode", 4: "uid", 5: "gid", 6: "mtime", 7: "link target"}
MAX_PROBLEMS = 20


class IndexDiff:
    """Compares an index, line by line as it comes (feed), with the expected one (an iterator of
    lines). Both follow walk()'s order, so a faithful copy gives equal lines and nothing is kept;
    at the first entry present on one side only, the rest of both sides is compared by path."""

    def __init__(self, expected: Iterator[bytes]) -> None:
        self._want = expected
        self.problems: list[str] = []
        self._more = False
        self._want_rest: dict[str, list[Any]] | None = None
        self._have_rest: dict[str, list[Any]] = {}

    def feed(self, block: bytes) -> None:
        for have in block.splitlines():
            if not have:
                continue
            if self._want_rest is not None:
                item = _parse_line(have)
                self._have_rest[item[0]] = item
                continue
            want = next(self._want, b"").rstrip(b"\n")
            if want != have:
                self._differ(want, have)

    def _differ(self, want: bytes, have: bytes) -> None:
        b = _parse_line(have)
        if not want:
            self._problem(f"unexpected {b[0]!r}")
            return
        a = _parse_line(want)
        if a[0] != b[0]:
            self._want_rest = {a[0]: a}
            self._have_rest[b[0]] = b
            return
        self._fields(a, b)

    def _fields(self, a: list[Any], b: list[Any]) -> None:
        # Directory mtimes change as entries are added; files, links and owners must not.
        for i in ((1, 2, 3, 4, 5, 7) if a[1] == "d" else (1, 2, 3, 4, 5, 6, 7)):
            if a[i] != b[i]:
                self._problem(f"{a[0]!r}: {INDEX_FIELDS[i]} {b[i]!r}, expected {a[i]!r}")

    def _problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self._more = True

    def finish(self) -> list[str]:
        if self._want_rest is None:
            for want in self._want:
                if want.strip():
                    self._problem(f"missing {_parse_line(want)[0]!r}")
                    if self._more:
                        break
        else:
            want_rest = self._want_rest
            for want in self._want:
                if want.strip():
                    item = _parse_line(want)
                    want_rest[item[0]] = item
            have_rest = self._have_rest
            for path in sorted(set(want_rest) | set(have_rest)):
                a, b = want_rest.get(path), have_rest.get(path)
                if a is None:
                    self._problem(f"unexpected {path!r}")
                elif b is None:
                    self._problem(f"missing {path!r}")
                else:
                    self._fields(a, b)
                if self._more:
                    break
        if self._more:
            self.problems.append("... (more differences not listed)")
        return self.problems


def _parse_line(line: bytes) -> list[Any]:
    try:
        item = json.loads(line.decode("ascii"))
    except ValueError as exc:
        raise ArchiveError(f"the index holds a damaged line ({exc}): {line[:200]!r}") from None
    if not isinstance(item, list) or len(item) != 8:
        raise ArchiveError(f"the index holds a line that is not an entry: {line[:200]!r}")
    return item


def compare_index(expected: bytes, actual: bytes) -> list[str]:
    """Differences between two indexes (paths, kinds, sizes, modes, owners, mtimes of files)."""
    diff = IndexDiff(iter(expected.splitlines()))
    diff.feed(actual)
    return diff.finish()


def compare_tree(index_zst: bytes, root: str, excludes: list[str] | None = None, member: str | None = None) -> list[str]:
    """Differences between a unit's index (as stored: zstd-compressed) and the tree at root, in
    constant memory: the index is decompressed into a temporary file and read back line by line
    while walk() produces the tree's lines. member: a file unit's file in ROOT (walk_file)."""
    with tempfile.TemporaryFile() as plain:
        proc = subprocess.run(["zstd", "-q", "-d", "-c"], input=index_zst, stdout=plain,
                              stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise ArchiveError(f"zstd could not decompress the index: {proc.stderr.decode(errors='replace').strip()}")
        plain.seek(0)
        diff = IndexDiff(iter(plain))
        if member:
            walk_file(root, member, sink=diff.feed, fingerprint=False)
        else:
            walk(root, excludes, sink=diff.feed, fingerprint=False)
        return diff.finish()


class IndexSpool:
    """A sink for walk()'s index lines: a zstd process compressing them, while the walk goes on,
    into a temporary file. compress() returns the compressed index (small: about 7 bytes an
    entry); close() discards it (a snapshot that reuses an earlier capture never needs it)."""

    def __init__(self, level: int = 3) -> None:
        self._out = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
        self._err = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
        self._proc = subprocess.Popen(["zstd", "-q", "-c", f"-{int(level)}"], stdin=subprocess.PIPE,  # pylint: disable=consider-using-with
                                      stdout=self._out, stderr=self._err)
        self._stdin = self._proc.stdin

    def write(self, data: bytes) -> None:
        try:
            self._stdin.write(data)
        except BrokenPipeError:
            raise ArchiveError(f"zstd stopped compressing the index: {_stderr_text(self._err)}") from None

    def compress(self) -> bytes:
        try:
            self._stdin.close()
        except BrokenPipeError:
            pass
        rc = self._proc.wait()
        if rc != 0:
            raise ArchiveError(f"zstd failed compressing the index (exit {rc}): {_stderr_text(self._err)}")
        self._out.seek(0)
        return self._out.read()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._stdin.close()
        except OSError:
            pass
        self._proc.wait()
        self._out.close()
        self._err.close()

    def __enter__(self) -> "IndexSpool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _stderr_text(fh) -> str:
    fh.seek(0)
    text = fh.read().decode("utf-8", "replace").strip()
    return text[-2000:]


def rename_expression(name: str, rel: str) -> str:
    """GNU tar --transform expression that gives the member ./NAME the path ./REL (sed syntax:
    NAME is one of lifeboat's scratch names (letters, digits, "-" and "."), REL's backslashes,
    ampersands and delimiters escaped)."""
    source = "^\\./" + name.replace(".", "\\.") + "$"
    target = "./" + rel.replace("\\", "\\\\").replace("&", "\\&").replace("|", "\\|")
    return f"s|{source}|{target}|"


def tar_create_command(src: str, excludes: list[str] | None = None, xattrs: bool = True,
                       member: str | None = None, extra: tuple[str, list[tuple[str, str]]] | None = None) -> list[str]:
    """xattrs=False leaves out --acls/--xattrs: for a tree walk() found without any extended
    attribute, where they would only cost tar two system calls per entry. member: capture only
    this entry of SRC (a file unit: the file, as ./NAME), not the whole directory. extra:
    (directory, [(file name there, member path it takes)]): files from another directory put in
    the archive under another name (the online copies of SQLite databases, whose live files the
    excludes leave out; the renaming is tar's --transform, which the excludes do not see)."""
    tail: list[str] = []
    transforms: list[str] = []
    if extra:
        tail = ["--directory", extra[0], *[f"./{name}" for name, _rel in extra[1]]]
        transforms = [f"--transform={rename_expression(name, rel)}" for name, rel in extra[1]]
    return ["tar", "--create", "--file=-", "--format=posix", "--sparse", "--one-file-system", *TAR_RECORD,
            "--numeric-owner", *(TAR_XATTRS if xattrs else []), *transforms, "--directory", src,
            *[f"--exclude={p}" for p in (excludes or [])], f"./{member}" if member else ".", *tail]


def capture(src: str, writer, level: int = 3, excludes: list[str] | None = None,
            threads: int = 0, tolerate_changes: bool = False, xattrs: bool = True,
            during: Callable[[Callable[[], None]], Any] | None = None, member: str | None = None,
            extra: tuple[str, list[tuple[str, str]]] | None = None) -> dict[str, Any]:
    """tar SRC | zstd -LEVEL into writer; returns sha256 and stored size of what was written.

    tar exiting 1 ("file changed as we read it") fails the capture unless tolerate_changes
    (live captures of data that may be written meanwhile). xattrs: see tar_create_command().

    A writer that offers direct_target() (a local file) gets zstd's output straight into its
    file, and a thread hashes the file as it grows: no copy through Python. Other writers
    (encryption, offsite stores) are fed from zstd's output by this thread.

    during(cancel), when given, runs in this thread while tar and zstd run (the metadata walk of
    the same tree, on the other core); its result is returned as "during". cancel() stops the
    capture: the result then says "cancelled" and the writer holds nothing usable. An exception
    from during stops the capture and is raised.
    """
    tar_cmd = tar_create_command(src, excludes, xattrs, member, extra)
    zstd_cmd = ["zstd", "-q", "-c", f"-{int(level)}", f"-T{int(threads)}"]
    if level > 19:
        zstd_cmd.insert(1, "--ultra")
    direct = writer.direct_target() if hasattr(writer, "direct_target") else None
    with tempfile.TemporaryFile() as tar_err, tempfile.TemporaryFile() as zstd_err:
        tar = subprocess.Popen(tar_cmd, stdout=subprocess.PIPE, stderr=tar_err, stdin=subprocess.DEVNULL)
        try:
            zstd = subprocess.Popen(zstd_cmd, stdin=tar.stdout, stderr=zstd_err,
                                    stdout=direct[0] if direct else subprocess.PIPE)
        except BaseException:
            tar.kill()
            tar.wait()
            raise
        tar.stdout.close()
        cancelled: list[bool] = []

        def stop() -> None:
            for proc in (tar, zstd):
                if proc.poll() is None:
                    proc.kill()

        def cancel() -> None:
            cancelled.append(True)
            stop()

        copier = _FileHasher(direct[1], writer, stop) if direct else _PipeCopier(zstd.stdout, writer, stop)
        copier.start()
        result: dict[str, Any] = {}
        try:
            if during is not None:
                result["during"] = during(cancel)
            tar_rc, zstd_rc = tar.wait(), zstd.wait()
        except BaseException:
            stop()
            tar.wait()
            zstd.wait()
            copier.finish()
            raise
        copier.finish()
        if cancelled:
            result["cancelled"] = True
            return result
        if copier.error is not None:
            raise copier.error
        if zstd_rc != 0:
            text = _stderr_text(zstd_err)
            if direct and hasattr(writer, "full_error") and _disk_full(text, direct[1]):
                raise writer.full_error()
            raise ArchiveError(f"zstd failed (exit {zstd_rc}): {text}")
        if tar_rc == 1 and not tolerate_changes:
            raise ArchiveError(f"files changed while tar read {src} (tar exit 1): the copy would not be "
                               f"consistent; quiesce the writers (strategy stop or pause). {_stderr_text(tar_err)}")
        if tar_rc not in (0, 1):
            raise ArchiveError(f"tar failed reading {src} (exit {tar_rc}): {_stderr_text(tar_err)}")
        warnings = [line for line in _stderr_text(tar_err).splitlines() if line]
    result.update(sha256=copier.digest.hexdigest(), size=copier.size, tar_warnings=warnings[-20:])
    return result


def _disk_full(zstd_said: str, path: str) -> bool:
    if "No space left" in zstd_said:
        return True
    try:
        vfs = os.statvfs(os.path.dirname(path))
    except OSError:
        return False
    return vfs.f_bavail * vfs.f_frsize < CHUNK


class _Copier(threading.Thread):
    """Hashes the capture's stored bytes on the way (and writes them, for _PipeCopier); tells the
    writer every WRITEBACK_EVERY bytes to start writing to disk. finish() waits for the end."""

    def __init__(self, writer, stop: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.writer = writer
        self.stop = stop
        self.digest = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None
        self._writeback = getattr(writer, "start_writeback", None)
        self._next_writeback = WRITEBACK_EVERY

    def _counted(self, nbytes: int) -> None:
        self.size += nbytes
        if self._writeback is not None and self.size >= self._next_writeback:
            self._written()
            self._writeback()
            self._next_writeback = self.size + WRITEBACK_EVERY

    def _written(self) -> None:
        pass

    def run(self) -> None:
        try:
            self.copy()
        except BaseException as exc:  # pylint: disable=broad-except
            self.error = exc
            self.stop()  # tar and zstd must not go on for nothing

    def copy(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> None:
        self.join()


class _PipeCopier(_Copier):
    """zstd's output -> sha256 -> writer.write()."""

    def __init__(self, pipe, writer, stop: Callable[[], None]) -> None:
        super().__init__(writer, stop)
        self.pipe = pipe
        _big_pipe(pipe.fileno())

    def copy(self) -> None:
        fd = self.pipe.fileno()
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            self.digest.update(chunk)
            self.writer.write(chunk)
            self._counted(len(chunk))

    def finish(self) -> None:
        self.join()
        self.pipe.close()


class _FileHasher(_Copier):
    """Reads back the file zstd is writing, as it grows, and hashes it (from the page cache)."""

    def __init__(self, path: str, writer, stop: Callable[[], None]) -> None:
        super().__init__(writer, stop)
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.done = threading.Event()

    def _written(self) -> None:
        self.writer.direct_written(self.size)

    def copy(self) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        update, readv, fd = self.digest.update, os.readv, self.fd
        while True:
            got = readv(fd, [buf])
            if got:
                update(view[:got])
                self._counted(got)
                continue
            if self.done.is_set():
                got = readv(fd, [buf])  # what was written between the last read and the end
                if not got:
                    break
                update(view[:got])
                self._counted(got)
                continue
            self.done.wait(0.01)

    def finish(self) -> None:
        self.done.set()
        self.join()
        os.close(self.fd)
        self._written()


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


def _default_acl(path: str) -> bool:
    try:
        return "system.posix_acl_default" in os.listxattr(path)
    except OSError:
        return False


def extract(reader: BinaryIO, dest: str, expected_sha256: str, allow_devices: bool = False,
            xattrs: bool = True, members_file: str | None = None) -> dict[str, Any]:
    """Object bytes -> zstd -d -> TarChecker -> tar -x into dest (an empty staging directory).

    members_file: extract only the members it names (NUL-separated, as the archive names them:
    ./PATH), each by its exact name, a directory without its content; the whole object is
    still read, checked and hashed.

    Raises UnsafeArchive (before the bad member reaches tar), ChecksumMismatch (at the end: the
    caller discards dest) or ArchiveError. Nothing outside dest is written. xattrs=False (the
    object was captured without extended attributes, so holds none) spares tar the --acls work
    of setting every member's ACL from its mode, unless dest has a default ACL its members would
    inherit (then tar must clear it, as with any object).
    """
    started = time.monotonic()
    digest = hashlib.sha256()
    read_error: list[BaseException] = []
    checker = TarChecker(allow_devices=allow_devices)
    xattrs = xattrs or _default_acl(dest)
    tar_cmd = ["tar", "--extract", "--file=-", "--same-permissions", "--same-owner", *TAR_RECORD, "--numeric-owner",
               *(TAR_XATTRS if xattrs else []), "--directory", dest]
    if members_file:  # after --directory: tar applies it to the names that follow it
        tar_cmd += ["--no-recursion", "--no-wildcards", "--null", "--verbatim-files-from", f"--files-from={members_file}"]
    object_fd = _regular_file_fd(reader)
    with tempfile.TemporaryFile() as tar_err, tempfile.TemporaryFile() as zstd_err:
        # A local object file is zstd's stdin itself, and a thread hashes it alongside with
        # pread (page cache, own offsets); any other reader (decryption, an offsite store) is
        # fed to zstd by the thread, which hashes on the way.
        zstd = subprocess.Popen(["zstd", "-q", "-d", "-c"], stdin=subprocess.PIPE if object_fd is None else object_fd,
                                stdout=subprocess.PIPE, stderr=zstd_err)
        try:
            tar = subprocess.Popen(tar_cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=tar_err)
        except BaseException:
            zstd.kill()
            zstd.wait()
            raise

        def hash_file() -> None:
            try:
                offset = 0
                while True:
                    chunk = os.pread(object_fd, CHUNK, offset)
                    if not chunk:
                        break
                    digest.update(chunk)
                    offset += len(chunk)
            except BaseException as exc:  # pylint: disable=broad-except
                read_error.append(exc)

        if object_fd is None:  # zstd stopping early (damaged input, or killed) ends the feeder quietly
            feeder = feed(zstd.stdin, reader.read, digest.update, read_error)
        else:
            feeder = threading.Thread(target=hash_file, daemon=True)
            feeder.start()
        in_fd, out_fd = zstd.stdout.fileno(), tar.stdin.fileno()
        _big_pipe(in_fd)
        _big_pipe(out_fd)
        failure: BaseException | None = None
        try:
            _pump(checker, in_fd, out_fd)
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
            while object_fd is None:  # (hash_file() read the whole file by itself)
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


def _regular_file_fd(reader) -> int | None:
    """The descriptor of a reader that is a regular file read from its start, else None."""
    try:
        fd = reader.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or reader.tell() != 0:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    return fd


def _pump(checker: TarChecker, in_fd: int, out_fd: int) -> None:
    """zstd's output -> checker -> tar's input. Headers and small members are read into Python
    and vetted before they are written on; the data of a large member, once its header passed,
    moves pipe to pipe with splice(2). After the end-of-archive marker the rest (padding) is
    drained: tar may have stopped reading."""
    while True:
        pending = checker.pending_data()
        if pending >= SPLICE_MIN and HAVE_SPLICE:
            moved = os.splice(in_fd, out_fd, min(pending, CHUNK))
            if not moved:
                return  # zstd's output ended inside the member: close() says truncated
            checker.passed(moved)
            continue
        chunk = os.read(in_fd, CHUNK)
        if not chunk:
            return
        if checker.ended:
            continue
        checker.feed(chunk)
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(out_fd, view):]
        except BrokenPipeError:
            if not checker.ended:
                raise
