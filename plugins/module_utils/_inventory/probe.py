# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""The effects of data_inventory: asking the engine, walking volumes and host paths on disk, and
looking for dump tools inside running database containers. The decisions are in _inventory/plan.py.
"""

from __future__ import annotations

import os
import posixpath
import stat
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.plan import (
    DUMP_TOOLS,
    bind_kind,
    build_inventory,
    database_candidates,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._data.sqlite import is_database
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm import read_swarm

# Only this deep are on-disk markers (PG_VERSION, WiredTiger ...) looked for, and only this deep
# is the tree walked when sizes are not wanted.
MARKER_DEPTH = 3
# Without sizes, the marker walk stops after this many entries so that it stays quick.
SHALLOW_ENTRY_LIMIT = 20000
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")
SQLITE_READ_LIMIT = 50
SECRET_SUFFIXES = (".key", ".pem", ".crt", ".p12", ".pfx")
SECRET_NAMES = ("acme.json", "id_rsa", "id_ecdsa", "id_ed25519", "htpasswd", ".htpasswd")
LIST_LIMIT = 20
_MYSQL_FILES = frozenset(("ibdata1", "ib_logfile0", "mysql.ibd", "aria_log_control",
                          "ib_buffer_pool", "ibtmp1", "undo_001"))


def _empty_scan() -> dict[str, Any]:
    return {"exists": False, "type": None, "readable": None, "has_data": False,
            "size_bytes": None, "file_count": None, "markers": {}, "secret_files": [],
            "sockets": [], "sqlite": [], "error": None}


def _file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def path_type(path: str) -> tuple[bool, str | None]:
    """(exists, type) of PATH; a symlink is followed once, as the engine does for a bind source."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False, None
    except OSError:
        try:
            st = os.lstat(path)
        except OSError:
            return False, None
    return True, _file_type(st.st_mode)


def sqlite_candidates(files: list[str]) -> list[str]:
    """The names among FILES (one directory's regular files) that may be SQLite databases: by
    their suffix, or because a rollback journal or write-ahead log of that name lies beside
    them. Pure: the header decides (_sqlite.is_database)."""
    present = set(files)
    return [n for n in files if n.lower().endswith(SQLITE_SUFFIXES)
            or f"{n}-wal" in present or f"{n}-journal" in present]


def _sqlite_files(dirpath: str, rel: str, files: list[str], scan: dict[str, Any], reads: int) -> int:
    """Adds to scan["sqlite"] (and the marker) the SQLite databases among one directory's FILES;
    at most SQLITE_READ_LIMIT headers are read in a whole scan. Returns the reads so far."""
    for name in sqlite_candidates(files):
        if reads >= SQLITE_READ_LIMIT or len(scan["sqlite"]) >= LIST_LIMIT:
            break
        reads += 1
        if is_database(os.path.join(dirpath, name)):
            child_rel = f"{rel}/{name}" if rel else name
            scan["sqlite"].append(child_rel)
            scan["markers"].setdefault("sqlite", child_rel)
    return reads


def _dir_markers(names: set[str], dirs: set[str], rel: str, markers: dict[str, str]) -> None:
    place = rel or "."
    if "PG_VERSION" in names and "postgres" not in markers:
        markers["postgres"] = place
    if "mysql" in dirs and names & _MYSQL_FILES:
        engine = "mariadb" if "aria_log_control" in names else "mysql"
        markers.setdefault(engine, place)
    if "redis" not in markers and ("dump.rdb" in names or any(n.startswith("appendonly") for n in names)):
        markers["redis"] = place
    if "mongodb" not in markers and ("mongod.lock" in names or any(n.startswith("WiredTiger") for n in names)):
        markers["mongodb"] = place


def scan_path(path: str, measure: bool = True) -> dict[str, Any]:
    """What PATH holds: size (apparent, st_size of regular files, hard links counted once) and
    file count when MEASURE, markers of database engines, key files at the top level, sockets.

    Never follows symlinks below PATH. Without MEASURE only the top MARKER_DEPTH levels are read.
    """
    scan = _empty_scan()
    exists, ftype = path_type(path)
    scan["exists"] = exists
    scan["type"] = ftype
    if not exists:
        return scan
    base = posixpath.basename(path.rstrip("/"))
    if ftype == "file":
        try:
            st = os.stat(path)
        except OSError as exc:
            scan.update(readable=False, error=exc.strerror or str(exc))
            return scan
        scan.update(readable=os.access(path, os.R_OK), has_data=st.st_size > 0)
        if measure:
            scan.update(size_bytes=st.st_size, file_count=1)
        if base.lower().endswith(SECRET_SUFFIXES) or base in SECRET_NAMES:
            scan["secret_files"] = [base]
        if base.lower().endswith(SQLITE_SUFFIXES) and is_database(path):
            scan["markers"]["sqlite"] = base
            scan["sqlite"] = [base]
        return scan
    if ftype != "dir":
        return scan

    size = 0
    count = 0
    seen: set[tuple[int, int]] = set()
    entries = 0
    sqlite_reads = 0
    stack: list[tuple[str, str, int]] = [(path, "", 0)]
    first = True
    while stack:
        dirpath, rel, depth = stack.pop()
        try:
            iterator = os.scandir(dirpath)
        except OSError as exc:
            if first:
                scan.update(readable=False, error=exc.strerror or str(exc), has_data=None)
                return scan
            scan["error"] = scan["error"] or f"{dirpath}: {exc.strerror or exc}"
            continue
        if first:
            scan["readable"] = True
            first = False
        names: set[str] = set()
        dirs: set[str] = set()
        files_here: list[str] = []
        with iterator:
            for entry in iterator:
                entries += 1
                name = entry.name
                child_rel = f"{rel}/{name}" if rel else name
                if depth == 0:
                    scan["has_data"] = True
                if depth < MARKER_DEPTH:
                    names.add(name)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        dirs.add(name)
                        if measure or depth + 1 < MARKER_DEPTH:
                            stack.append((entry.path, child_rel, depth + 1))
                        continue
                    if entry.is_file(follow_symlinks=False):
                        count += 1
                        if depth < MARKER_DEPTH:
                            files_here.append(name)
                        if measure:
                            st = entry.stat(follow_symlinks=False)
                            if st.st_nlink > 1:
                                ident = (st.st_dev, st.st_ino)
                                if ident in seen:
                                    continue
                                seen.add(ident)
                            size += st.st_size
                        if depth == 0 and (name.lower().endswith(SECRET_SUFFIXES) or name in SECRET_NAMES):
                            if len(scan["secret_files"]) < LIST_LIMIT:
                                scan["secret_files"].append(name)
                        continue
                    if entry.is_symlink():
                        continue
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISSOCK(st.st_mode) and len(scan["sockets"]) < LIST_LIMIT:
                        scan["sockets"].append(child_rel)
                except OSError:
                    continue
        if depth < MARKER_DEPTH:
            _dir_markers(names, dirs, rel, scan["markers"])
            sqlite_reads = _sqlite_files(dirpath, rel, files_here, scan, sqlite_reads)
        if not measure and entries > SHALLOW_ENTRY_LIMIT:
            break
    if measure:
        scan["size_bytes"] = size
        scan["file_count"] = count
    scan["secret_files"].sort()
    scan["sockets"].sort()
    scan["sqlite"].sort()
    return scan


def volume_data_path(volume: dict[str, Any]) -> str | None:
    """Where a volume's files are on this host: its mountpoint, or the device of a local bind volume
    (the local driver mounts that only while a container uses the volume)."""
    options = volume.get("Options") or {}
    device = options.get("device")
    if (volume.get("Driver") or "local") == "local" and device and device.startswith("/") \
            and "bind" in (options.get("o") or "").split(","):
        return device
    return volume.get("Mountpoint")


def read_engine(client) -> dict[str, Any]:
    """Containers (inspected), volumes, networks, images, the host name and the swarm view (services,
    tasks, nodes on a manager; None outside a swarm), as the API gives them."""
    from docker.errors import NotFound  # type: ignore[import-not-found]

    api = client.api
    containers = []
    for summary in api.containers(all=True):
        try:
            containers.append(api.inspect_container(summary["Id"]))
        except NotFound:
            continue  # removed while we looked
    volumes = (api.volumes() or {}).get("Volumes") or []
    networks = api.networks()
    images = api.images()
    info = api.info()
    return {"containers": containers, "volumes": volumes, "networks": networks,
            "images": images, "host": info.get("Name") or "", "swarm": read_swarm(api, info),
            "docker_root": info.get("DockerRootDir") or None,
            "caught_signals": {c["Id"]: caught_signals((c.get("State") or {}).get("Pid"))
                               for c in containers if (c.get("State") or {}).get("Running")}}


def caught_signals(pid: Any) -> int | None:
    """The mask of signals the process PID has a handler for (SigCgt in /proc/PID/status), or None
    when it cannot be read. A container's main process is its namespace's init: the kernel drops
    any signal it has no handler for, so a stop signal missing from this mask is ignored."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("SigCgt:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def scan_all(raw: dict[str, Any], measure: bool) -> dict[str, dict[str, Any]]:
    """Scans keyed by unit id (volume:NAME, path:/P) for every volume and bind-mounted host path.

    Sockets and system paths (/proc, /sys, /dev ...) are only looked at, never walked.
    """
    scans: dict[str, dict[str, Any]] = {}
    for volume in raw.get("volumes") or []:
        where = volume_data_path(volume)
        if not where:
            continue
        scans[f"volume:{volume.get('Name')}"] = scan_path(where, measure)
    for attrs in raw.get("containers") or []:
        for mount in attrs.get("Mounts") or []:
            if mount.get("Type") != "bind" or not mount.get("Source"):
                continue
            path = posixpath.normpath(mount["Source"])
            key = f"path:{path}"
            if key in scans:
                continue
            exists, ftype = path_type(path)
            if bind_kind(path, ftype) != "data":
                scan = _empty_scan()
                scan.update(exists=exists, type=ftype)
                scans[key] = scan
            else:
                scans[key] = scan_path(path, measure)
    return scans


def probe_dump_tools(client, candidates: dict[str, str], raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For each running database container NAME: {engine, tool (name or None), error (or None)}.

    Runs `sh -c 'command -v TOOL || ...'` inside the container: the only way to know whether the
    image carries the dump tool.
    """
    from docker.errors import APIError  # type: ignore[import-not-found]

    ids = {(a.get("Name") or "").lstrip("/"): a.get("Id") for a in raw.get("containers") or []}
    result: dict[str, dict[str, Any]] = {}
    for name, engine in sorted(candidates.items()):
        tools = DUMP_TOOLS.get(engine, ())
        entry: dict[str, Any] = {"engine": engine, "tool": None, "error": None}
        result[name] = entry
        if not tools or name not in ids:
            continue
        script = " || ".join(f"command -v {tool}" for tool in tools)
        try:
            exec_id = client.api.exec_create(ids[name], ["sh", "-c", script], stdout=True,
                                             stderr=True)
            output = client.api.exec_start(exec_id)
            code = client.api.exec_inspect(exec_id).get("ExitCode")
        except APIError as exc:
            entry["error"] = f"could not look inside the container: {exc.explanation or exc}"
            continue
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output)
        if code == 0 and text.strip():
            entry["tool"] = posixpath.basename(text.strip().splitlines()[0].strip())
        elif "executable file not found" in text or "no such file" in text.lower():
            entry["error"] = "the container has no shell (sh) to look for " + "/".join(tools)
        elif code != 1 or text.strip():
            # `command -v` answers 1 and says nothing when the tool is missing: anything else is
            # docker exec itself failing (e.g. the runtime's "executing setns process" when the
            # engine runs in a container without CAP_SYS_PTRACE), not a missing tool.
            said = " ".join(text.split())[:300] or "no output"
            entry["error"] = (f"docker exec into the container failed (exit {code}: {said}), so whether it has "
                              f"{'/'.join(tools)} is not known")
    return result


def live_plan(client, policy: dict[str, dict[str, Any]] | None = None,
              measure: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(raw engine state, inventory with its units) of this host, as data_inventory plans it.

    The modules that act on units (snapshot, restore) use it to resolve unit ids and shorthands.
    """
    raw = read_engine(client)
    scans = scan_all(raw, measure=measure)
    tools = probe_dump_tools(client, database_candidates(raw, scans, policy), raw)
    return raw, build_inventory(raw, scans, policy, tools, include_sizes=measure, undeclared="ignore")
