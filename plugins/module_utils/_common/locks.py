# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Locks between lifeboat runs on one host: flock(2) on files in /var/lib/lifeboat/locks.

The kernel releases a flock when its process dies, so a crash or SIGKILL never leaves a stale
lock. Each lock file also says who holds it (pid, process start, operation, since when), so a run
that gives up after lock_timeout can name the holder.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._common.procs import process_start
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import state_dir


class LockTimeout(Exception):
    """A lock stayed held by another run for longer than lock_timeout; the message names it."""


def lock_dir() -> str:
    return os.path.join(state_dir(), "locks")


def lock_file_name(name: str) -> str:
    """A file name for a lock name such as 'unit:volume:pgdata' or 'repository:/var/backups/x'."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{readable}.{digest}.lock"


class Lock:
    """An exclusive lock, acquired with a timeout. Use as a context manager."""

    def __init__(self, name: str, operation: str, timeout: float = 600, poll: float = 0.2,
                 shared: bool = False) -> None:
        self.shared = shared  # shared holders exclude only exclusive ones (e.g. snapshots vs a prune)
        self.name = name
        self.operation = operation
        self.timeout = timeout
        self.poll = poll
        self.path = os.path.join(lock_dir(), lock_file_name(name))
        self.fd: int | None = None
        self.waited = 0.0

    def holder(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
            return json.loads(text) if text.strip() else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> "Lock":
        os.makedirs(lock_dir(), mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        started = time.monotonic()
        try:
            while True:
                try:
                    fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if time.monotonic() - started >= self.timeout:
                    raise LockTimeout(self._busy_message())
                time.sleep(self.poll)
        except BaseException:
            os.close(fd)
            raise
        self.waited = round(time.monotonic() - started, 3)
        self.fd = fd
        info = {"pid": os.getpid(), "process_start": process_start(os.getpid()), "operation": self.operation,
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "lock": self.name}
        if not self.shared:  # shared holders are many: only an exclusive holder names itself
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info, sort_keys=True).encode(), 0)
        return self

    def _busy_message(self) -> str:
        holder = self.holder()
        if holder:
            who = (f"process {holder.get('pid')} ({holder.get('operation')}, holding it since "
                   f"{holder.get('since')})")
        else:
            who = "other processes (shared holders, e.g. snapshots writing to a repository)"
        return (f"{self.name} is busy: {who} holds it and did not let go within {self.timeout:g} s; "
                "wait for it to finish, or raise lock_timeout")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if not self.shared:
                os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc_info) -> bool:
        self.release()
        return False


class LockSet:
    """Several locks, taken in a fixed (sorted) order so that two runs never deadlock."""

    def __init__(self, names: list[str], operation: str, timeout: float = 600) -> None:
        self.locks = [Lock(n, operation, timeout) for n in sorted(set(names))]
        self.taken: list[Lock] = []

    def __enter__(self) -> "LockSet":
        deadline = time.monotonic() + max(lock.timeout for lock in self.locks) if self.locks else 0
        try:
            for lock in self.locks:
                lock.timeout = max(0.0, deadline - time.monotonic())
                self.taken.append(lock.acquire())
        except BaseException:
            self.release()
            raise
        return self

    @property
    def waited(self) -> float:
        return round(sum(lock.waited for lock in self.taken), 3)

    def release(self) -> None:
        while self.taken:
            self.taken.pop().release()

    def __exit__(self, *exc_info) -> bool:
        self.release()
        return False
