# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""What remote stores share: the names of temporary uploads, and which of them are stale.

A writer uploads to tmp/HOST-PID-RANDOM.part and renames at commit. A temporary upload is stale
when its writer is gone: one of this host whose process is dead (or this very process, when none
of its open writers made it: pids are reused), or any, of any host, untouched for 24 hours. A
live writer keeps touching its file, so its age stays small however long the upload takes.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Callable, Iterable

from ansible_collections.lifeboat.docker.plugins.module_utils._manifest import safe_host
from ansible_collections.lifeboat.docker.plugins.module_utils._procs import pid_alive
from ansible_collections.lifeboat.docker.plugins.module_utils._store import StoreError

TMP_PREFIX = "tmp/"
ABANDONED_AFTER = 24 * 3600.0


def this_host() -> str:
    return safe_host(socket.gethostname())


def tmp_key(host: str | None = None, pid: int | None = None) -> str:
    """A fresh temporary key naming its writer: tmp/HOST-PID-RANDOM.part."""
    return f"{TMP_PREFIX}{host or this_host()}-{pid or os.getpid()}-{secrets.token_hex(6)}.part"


def tmp_writer(key: str) -> tuple[str, int] | None:
    """(host, pid) of the writer a temporary key names; None for a name of another form."""
    name = key[len(TMP_PREFIX):] if key.startswith(TMP_PREFIX) else key
    if "/" in name or not name.endswith(".part"):
        return None
    parts = name[:-len(".part")].rsplit("-", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def stale_tmp_keys(entries: Iterable[tuple[str, float]], now: float, max_age: float, own: set[str],
                   host: str | None = None, pid: int | None = None,
                   alive: Callable[[int], bool] = pid_alive) -> list[str]:
    """The keys among (key, mtime) entries of tmp/ whose writers are gone (see the module doc).

    own holds the keys of this process's writers in progress; max_age spares what is younger."""
    host = host or this_host()
    pid = pid or os.getpid()
    stale = []
    for key, mtime in entries:
        age = now - mtime
        if key in own:
            continue
        if age >= ABANDONED_AFTER:
            stale.append(key)
            continue
        writer = tmp_writer(key)
        if writer is None or writer[0] != host or age < max_age:
            continue  # another host's upload may still be going on
        if writer[1] == pid or not alive(writer[1]):
            stale.append(key)
    return sorted(stale)


def check_key(key: str, where: str) -> str:
    """A repository key, refused when it could leave the repository."""
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key or "\0" in key:
        raise StoreError(f"invalid repository key {key!r} in {where}")
    return key
