# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Where repository bytes live: a small interface, and the local-filesystem store.

A store knows keys ("objects/ab/abcd...", "snapshots/ID.json") and nothing of snapshots. Every
write is atomic: bytes go to a temporary name and appear under their key only when complete, so
a crash, a full disk or a killed process never leaves a partial file under a real key. Offsite
stores (S3, SFTP, rclone) implement the same methods.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from typing import BinaryIO, Iterator

from ansible_collections.lifeboat.docker.plugins.module_utils._common.files import publish
from ansible_collections.lifeboat.docker.plugins.module_utils._common.procs import pid_alive
from ansible_collections.lifeboat.docker.plugins.module_utils._common.safety import (
    fs_type,
    repository_refusal,
    resolve_lexically,
    resolved,
)


class StoreError(Exception):
    """A store operation failed; the message says which key and why."""


class Writer:
    """An object being written: write() bytes, then commit(key) or abort()."""

    def write(self, data: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def commit(self, key: str) -> bool:  # pragma: no cover - interface
        """Make the bytes visible under key; False when key already existed (bytes dropped)."""
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class ThrottledWriter(Writer):
    """A writer whose bytes go out no faster than RATE bytes a second (the option upload_limit),
    so that a backup leaves the host's link to the services it runs. A token bucket holding one
    second's worth: write() sleeps when more was given than the time since the first byte allows.

    One throttle for every store, in Python, rather than each tool's own: lifeboat's SFTP client
    speaks the protocol through `ssh -s sftp`, which has no limit of its own (only scp and sftp
    have -l), and boto3 has none. A writer that would let zstd write straight into its file
    (direct_target) is not offered: the bytes must pass write()."""

    def __init__(self, inner: Writer, rate: float, clock=time.monotonic, sleep=time.sleep) -> None:
        self.inner = inner
        self.rate = float(rate)
        self.clock, self.sleep = clock, sleep
        self.start: float | None = None
        self.sent = 0
        self.waited = 0.0

    def write(self, data: bytes) -> None:
        now = self.clock()
        if self.start is None:
            self.start = now
        self.sent += len(data)
        due = self.start + max(0.0, self.sent - self.rate) / self.rate  # one second's burst
        if due > now:
            self.sleep(due - now)
            self.waited += due - now
        self.inner.write(data)

    def commit(self, key: str, **kwargs) -> bool:
        return self.inner.commit(key, **kwargs)

    def abort(self) -> None:
        self.inner.abort()


UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def parse_rate(value) -> float | None:
    """upload_limit as bytes a second: a number (bytes), or a number with K, M or G (KiB, MiB,
    GiB; "/s" may follow, e.g. "10M" or "512KiB/s"); None or "" for no limit. Raises StoreError
    naming the value when it is none of these. Pure."""
    if value is None or value == "" or value == 0:
        return None
    text = str(value).strip().lower().replace(" ", "")
    for suffix in ("/s", "ps"):
        if text.endswith(suffix):
            text = text[:-len(suffix)]
    if text.endswith("ib"):
        text = text[:-2]
    elif text.endswith("b") and len(text) > 1 and text[-2] in "kmg":
        text = text[:-1]
    unit = text[-1] if text and text[-1] in "bkmg" else ""
    number = text[:-1] if unit else text
    try:
        rate = float(number) * UNITS[unit]
    except ValueError:
        rate = -1.0
    if rate < 1024:
        raise StoreError(f"upload_limit {value!r} is not a rate this can keep: give bytes a second as a number "
                         "(at least 1024) or with K, M or G, e.g. 512K or 10M")
    return rate


class Store:
    """Interface of a repository's storage."""

    url: str
    upload_limit: float | None = None  # bytes a second (parse_rate), set by open_store

    def new_writer(self) -> Writer:
        """open_writer(), throttled to upload_limit when one is set: what every upload uses."""
        writer = self.open_writer()
        return ThrottledWriter(writer, self.upload_limit) if self.upload_limit else writer

    def exists(self, key: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def size(self, key: str) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def open_reader(self, key: str) -> BinaryIO:  # pragma: no cover - interface
        raise NotImplementedError

    def open_writer(self) -> Writer:  # pragma: no cover - interface
        raise NotImplementedError

    def list(self, prefix: str) -> Iterator[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def delete(self, key: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def read_bytes(self, key: str) -> bytes:
        with self.open_reader(key) as fh:
            return fh.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        writer = self.new_writer()
        try:
            writer.write(data)
        except BaseException:
            writer.abort()
            raise
        writer.commit(key, replace=True)  # type: ignore[call-arg]

    def cleanup_stale(self, max_age: float = 0, dry_run: bool = False) -> list[str]:  # pragma: no cover - interface
        """Remove the temporary uploads of writers that are gone; returns them (as tmp/NAME).
        dry_run: only name them (check mode)."""
        raise NotImplementedError


class LocalWriter(Writer):
    def __init__(self, store: "LocalStore") -> None:
        self.store = store
        self.tmp_path = os.path.join(store.tmp_dir, f"{os.getpid()}-{secrets.token_hex(6)}.part")
        self.fh = open(self.tmp_path, "xb", buffering=0)  # pylint: disable=consider-using-with
        self.bytes = 0
        self._writeback_from = 0
        store.open_tmp.add(self.tmp_path)

    def write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                written = self.fh.write(view)
                view = view[written:]
            self.bytes += len(data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise self.full_error() from exc
            raise StoreError(f"writing to {self.tmp_path} failed: {exc}") from exc

    def full_error(self) -> StoreError:
        return StoreError(f"the repository's filesystem is full ({self.store.root}): "
                          "free space there or use another repository")

    def direct_target(self) -> tuple[int, str]:
        """For a process that writes the object itself (zstd in a capture): the file's descriptor
        and path. The caller tells direct_written() how many bytes are there."""
        return self.fh.fileno(), self.tmp_path

    def direct_written(self, total: int) -> None:
        self.bytes = total

    def start_writeback(self) -> None:
        """Start writing what was written so far to disk, without waiting (a hint for large
        objects, so that commit's fsync finds little left to do). The kernel's DONTNEED advice
        starts the writeback of the range's dirty pages and drops only pages that are clean
        already, so what was just written stays cached."""
        try:
            os.posix_fadvise(self.fh.fileno(), self._writeback_from, self.bytes - self._writeback_from,
                             os.POSIX_FADV_DONTNEED)
        except OSError:
            return  # only a hint
        self._writeback_from = self.bytes

    def commit(self, key: str, replace: bool = False) -> bool:
        path = self.store.path(key)
        try:
            os.fsync(self.fh.fileno())
        except OSError as exc:
            self.abort()
            raise StoreError(f"flushing {self.tmp_path} failed: {exc}") from exc
        self.fh.close()
        self.store.open_tmp.discard(self.tmp_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not replace and os.path.exists(path):
            os.unlink(self.tmp_path)
            return False
        publish(self.tmp_path, path, 0o640)
        return True

    def abort(self) -> None:
        self.store.open_tmp.discard(self.tmp_path)
        try:
            self.fh.close()
        finally:
            try:
                os.unlink(self.tmp_path)
            except FileNotFoundError:
                pass


class LocalStore(Store):
    """A repository in a directory of this host."""

    def __init__(self, root: str, create: bool = False) -> None:
        if not os.path.isabs(root):
            raise StoreError(f"repository path {root!r} is not absolute: give a full path such as /var/backups/lifeboat")
        self.root = os.path.normpath(root)
        # Checked on the path as given and as resolved: /proc/self/cwd/x is a different directory
        # for every process that reads it.
        for candidate in (resolve_lexically(root), resolved(root)):
            why = repository_refusal(candidate, fs_type(candidate))
            if why:
                raise StoreError(why)
        if os.path.lexists(self.root) and not os.path.isdir(self.root):
            raise StoreError(f"repository path {self.root} exists and is not a directory: give the path of a "
                             "directory (an empty one, or an existing lifeboat repository)")
        self.url = self.root
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.open_tmp: set[str] = set()  # this process's writers in progress
        if create:
            try:
                os.makedirs(self.tmp_dir, mode=0o750, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the repository {self.root}: {exc.strerror} ({exc.filename}); "
                                 "give a directory this host can write to") from exc
        elif not os.path.isdir(self.root):
            raise StoreError(f"repository {self.root} does not exist: check the path, or run a snapshot to create it")

    def path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"invalid repository key {key!r}")
        return os.path.join(self.root, key)

    def exists(self, key: str) -> bool:
        return os.path.exists(self.path(key))

    def size(self, key: str) -> int:
        return os.stat(self.path(key)).st_size

    def open_reader(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")  # pylint: disable=consider-using-with
        except FileNotFoundError:
            raise StoreError(f"{key} is missing from the repository {self.root}") from None

    def open_writer(self) -> LocalWriter:
        os.makedirs(self.tmp_dir, mode=0o750, exist_ok=True)
        return LocalWriter(self)

    def list(self, prefix: str) -> Iterator[str]:
        base = self.path(prefix.rstrip("/"))
        if not os.path.isdir(base):
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                yield f"{rel}/{name}" if rel != "." else name

    def delete(self, key: str) -> None:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass

    def cleanup_stale(self, max_age: float = 0, dry_run: bool = False) -> list[str]:
        """Remove temporary files of writers that are gone (their process died).

        A file named with this process's own pid is stale unless one of its open writers made it
        (the pid of a dead writer can be reused)."""
        removed = []
        if not os.path.isdir(self.tmp_dir):
            return removed
        now = time.time()
        for name in os.listdir(self.tmp_dir):
            path = os.path.join(self.tmp_dir, name)
            pid_text = name.split("-", 1)[0]
            if path in self.open_tmp:
                continue
            alive = pid_text.isdigit() and pid_alive(int(pid_text)) and int(pid_text) != os.getpid()
            try:
                old = now - os.lstat(path).st_mtime >= max_age
            except FileNotFoundError:
                continue
            if not alive and old:
                if dry_run:
                    pass
                elif os.path.isdir(path) and not os.path.islink(path):
                    import shutil

                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
                removed.append(f"tmp/{name}")
        return removed


# Remote stores by URL scheme: module (in _repo/stores/) and class, imported only when used (their clients are
# not needed for local repositories).
REMOTE_STORES = {
    "sftp": ("sftp", "SftpStore"),
    "s3": ("s3", "S3Store"),
    "rclone": ("rclone", "RcloneStore"),
}


def open_store(url: str, create: bool = False, options: dict | None = None) -> Store:
    """The store for a repository URL: a local path (or file://PATH), sftp://, s3:// or rclone://.

    options holds the store settings of the module (endpoint_url, access_key, ssh_identity_file,
    ...; see _common/options.py REPOSITORY_ARGS); each store takes what it needs."""
    limit = parse_rate((options or {}).get("upload_limit"))  # a bad value is refused before anything is made
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" in url:
        scheme = url.split("://", 1)[0]
        if scheme not in REMOTE_STORES:
            raise StoreError(f"repository {redact_url(url)!r}: unknown store {scheme}://; use a local path, "
                             "sftp://USER@HOST[:PORT]/PATH, s3://BUCKET/PREFIX or rclone://REMOTE/PATH")
        class_name = REMOTE_STORES[scheme][1]
        if scheme == "s3":
            # A static import (in the function: loaded only when used), because AnsiballZ ships the
            # module_utils that import statements name with a module, not what importlib loads.
            from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores import s3 as module
        elif scheme == "sftp":
            from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores import sftp as module
        else:
            from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores import rclone as module
        store = getattr(module, class_name)(url, create=create, options=dict(options or {}))
    else:
        store = LocalStore(url, create=create)
    store.upload_limit = limit
    return store


def redact_url(url: str) -> str:
    """A URL fit for messages: a password written into it (user:secret@host) is replaced."""
    import re

    return re.sub(r"^([a-z0-9]+://[^/@:]*):[^/@]*@", r"\1:***@", url)
