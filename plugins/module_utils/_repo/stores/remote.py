# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""What remote stores share: the names of temporary uploads, and which of them are stale.

A writer uploads to tmp/HOST-PID-RANDOM.part and renames at commit. A temporary upload is stale
when its writer is gone: one of this host whose process is dead (or this very process, when none
of its open writers made it: pids are reused), or any, of any host, untouched for 24 hours. A
live writer keeps touching its file, so its age stays small however long the upload takes (S3's
multipart uploads are not touched: there a live writer of this host is never stale).

Pure: tmp_name, tmp_writer, tmp_is_stale and stale_tmp_keys (given the liveness test), check_key.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from typing import Callable, Iterable

from ansible_collections.lifeboat.docker.plugins.module_utils._repo.manifest import safe_host
from ansible_collections.lifeboat.docker.plugins.module_utils._common.procs import pid_alive
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError

TMP_PREFIX = "tmp/"
ABANDONED_AFTER = 24 * 3600.0
_TMP_NAME_RE = re.compile(r"([^/]+)-(\d+)-([0-9a-f]+)\.part")


def this_host() -> str:
    return safe_host(socket.gethostname())


def tmp_name(host: str, pid: int, token: str) -> str:
    """The name (under tmp/) of a writer's temporary upload: HOST-PID-RANDOM.part."""
    return f"{safe_host(host)}-{pid}-{token}.part"


def tmp_key(host: str | None = None, pid: int | None = None) -> str:
    """A fresh temporary key naming its writer: tmp/HOST-PID-RANDOM.part."""
    return TMP_PREFIX + tmp_name(host or this_host(), pid or os.getpid(), secrets.token_hex(6))


def tmp_writer(key: str) -> tuple[str, int] | None:
    """(host, pid) of the writer a temporary key (or name, without tmp/) names; None for a name
    of another form."""
    name = key[len(TMP_PREFIX):] if key.startswith(TMP_PREFIX) else key
    m = _TMP_NAME_RE.fullmatch(name)
    return (m.group(1), int(m.group(2))) if m else None


def tmp_is_stale(key: str, age: float, own: set[str] | frozenset, max_age: float = 0, host: str | None = None,
                 pid: int | None = None, alive: Callable[[int], bool] = pid_alive, touched: bool = True) -> bool:
    """Whether the temporary upload KEY, AGE seconds old, belongs to a writer that is gone.

    own holds the keys of this process's writers in progress; max_age spares what is younger.
    touched: the store's writers keep touching their upload (sftp, rclone), so one untouched for
    ABANDONED_AFTER is stale whoever wrote it. Without (S3's multipart uploads keep their start
    time), a live writer of this host is never stale, however long it takes."""
    host = safe_host(host) if host else this_host()
    if key in own:
        return False
    if touched and age >= ABANDONED_AFTER:
        return True
    if age < max_age:
        return False
    writer = tmp_writer(key)
    if writer is None or writer[0] != host:
        return age >= ABANDONED_AFTER  # another host's upload may still be going on
    return writer[1] == (pid or os.getpid()) or not alive(writer[1])


def stale_tmp_keys(entries: Iterable[tuple[str, float]], now: float, max_age: float, own: set[str],
                   host: str | None = None, pid: int | None = None,
                   alive: Callable[[int], bool] = pid_alive) -> list[str]:
    """The keys among (key, mtime) entries of tmp/ whose writers are gone (see the module doc)."""
    return sorted(key for key, mtime in entries if tmp_is_stale(key, now - mtime, own, max_age, host, pid, alive))


def check_key(key: str, where: str) -> str:
    """A repository key, refused when it could leave the repository."""
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key or "\0" in key:
        raise StoreError(f"invalid repository key {key!r} in {where}")
    return key
