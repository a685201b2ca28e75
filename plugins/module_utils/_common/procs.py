# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Processes of this host as /proc shows them: whether a pid still runs, which process a pid is
(its start time: pids are reused), its parent, children and command line.

Pure: stat_fields_of() (parsing a /proc/PID/stat line); the rest reads /proc or signals.
"""

from __future__ import annotations

import os


def stat_fields_of(data: bytes) -> list[bytes]:
    """The fields of a /proc/PID/stat line from field 3 (state) on: [0] is the state, [1] the
    parent pid, [19] the start time. The command name (field 2) is in parentheses and may hold
    spaces and parentheses: the split is after the last ')'."""
    return data[data.rfind(b")") + 2:].split()


def stat_fields(pid: int | str) -> list[bytes] | None:
    """stat_fields_of() of process PID; None when it is gone (or /proc cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return stat_fields_of(fh.read())
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None when
    it is gone or a zombie. Together with the pid it names one process: a reused pid has another."""
    fields = stat_fields(pid)
    if not fields or fields[0] in (b"Z", b"X"):
        return None  # a zombie (killed, not reaped yet: its parent died too and nobody reaps) runs no more
    return fields[19].decode() if len(fields) > 19 else None


def pid_alive(pid: int) -> bool:
    """Whether a process PID exists (also a zombie, or one of another user: signal 0 tells)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parent_pid(pid: int) -> int | None:
    """The parent of PID; None when it is gone."""
    fields = stat_fields(pid)
    return int(fields[1]) if fields and len(fields) > 1 else None


def children() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process of this host."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(entry)
        if fields and len(fields) > 1:
            out.setdefault(int(fields[1]), []).append(int(entry))
    return out


def cmdline(pid: int | str) -> str:
    """The command line of PID, its arguments joined by spaces; "" when it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
