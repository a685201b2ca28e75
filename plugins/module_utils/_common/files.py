# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Writing files so that a crash leaves either the old content or the new, never half of it.

write_atomic() writes a whole file: a temporary with a unique name beside it (mode 0600 from the
start, so nothing readable is ever exposed), fsynced, given its mode and owner, renamed over the
target, and the directory fsynced so that the rename survives a power cut. publish() is the last
half of it for a temporary that a stream was written into (the local store's objects).

Pure: nothing here; everything writes files.
"""

from __future__ import annotations

import os
import stat
import tempfile


def fsync_dir(path: str) -> None:
    """Flush a directory, so that a rename in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: str, path: str, mode: int | None = None, owner: tuple[int, int] | None = None) -> None:
    """Give the flushed temporary TMP its MODE and OWNER (uid, gid), rename it over PATH (in the
    same filesystem) and flush PATH's directory."""
    if owner is not None:
        os.chown(tmp, owner[0], owner[1])
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_atomic(path: str, data: bytes | str, mode: int = 0o644, *, owner: tuple[int, int] | None = None,
                 keep: bool = False, dir_mode: int = 0o755) -> None:
    """Write DATA (str is written as UTF-8) to PATH through a temporary beside it and a rename.

    The file gets MODE and, when given, OWNER (uid, gid). With keep, an existing file keeps its
    mode (and its owner, when run as root) and MODE applies only to a new one. Missing parent
    directories are created with DIR_MODE. On any failure the temporary is removed and PATH is
    untouched."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=dir_mode, exist_ok=True)
    if keep:
        try:
            current = os.stat(path)
        except FileNotFoundError:
            pass
        else:
            mode = stat.S_IMODE(current.st_mode)
            if owner is None and hasattr(os, "geteuid") and os.geteuid() == 0:
                owner = (current.st_uid, current.st_gid)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, path, mode, owner)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
