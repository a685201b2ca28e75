# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Taking a snapshot: which units, from where, quiesced how; the manifest written last.

select_units() and container_spec() are pure; SnapshotRun does the work (engine, tar, store).
"""

from __future__ import annotations

import glob
import os
import posixpath
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import (
    ArchiveError,
    IndexSpool,
    capture,
    has_xattrs,
    walk,
    walk_file,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import DockerException
from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import DumpError, capture_dump
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.hooks import plan_hooks, run_hooks
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.probe import volume_data_path
from ansible_collections.lifeboat.docker.plugins.module_utils._common.locks import Lock, LockSet, LockTimeout
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import (
    SCRATCH_PREFIX,
    Journal,
    Quiesced,
    own_state_dirs,
    scratch_dir,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._common.safety import (
    capture_refusal,
    covers,
    fs_type,
    nested_excludes,
    resolve_lexically,
    resolved,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._data.sqlite import (
    SQLiteError,
    backup_copy,
    excludes_for,
    is_database,
    member_plan,
    walk_substitutes,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm import capture_swarm

STRATEGIES_AVAILABLE = ("dump", "stop", "pause", "live", "skip")
QUIESCE_ACTIONS = {"stop": "stop", "pause": "pause"}
UNIT_KEYS = ("id", "kind", "source", "strategy")


class SelectionError(ValueError):
    """The units asked for cannot be resolved; the message names them and what exists."""


class UnitFailed(Exception):
    """One unit could not be captured; the others go on."""

    hooks: list[dict[str, Any]] = []


def quiesced_containers(unit: dict[str, Any]) -> list[str]:
    """Containers a unit stops or pauses, or whose database it dumps: what it must own alone."""
    if unit.get("strategy") in QUIESCE_ACTIONS:
        return list(unit.get("containers") or [])
    if unit.get("strategy") == "dump" and unit.get("container"):
        return [unit["container"]]
    return []


def group_units(units: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Units that share a container to quiesce form one group (captured one after the other);
    groups are independent and may run in parallel. Stable order: by first unit id."""
    parent = list(range(len(units)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, unit in enumerate(units):
        for name in quiesced_containers(unit):
            if name in owner:
                parent[find(i)] = find(owner[name])
            else:
                owner[name] = i
    groups: dict[int, list[dict[str, Any]]] = {}
    for i, unit in enumerate(units):
        groups.setdefault(find(i), []).append(unit)
    return sorted(groups.values(), key=lambda g: g[0]["id"])


def _norm_path(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise SelectionError(f"path {path!r} is not absolute: give the full host path, e.g. /srv/data")
    path = resolve_lexically(path)
    why = capture_refusal(path, None)
    if why:
        raise SelectionError(f"path {path} cannot be captured: {why}")
    return path


def own_files(repository_root: str | None) -> dict[str, str]:
    """What a capture never includes: {resolved path: what it is} of the local repository (None
    for offsite stores) and lifeboat's own bookkeeping (journal, locks)."""
    journal, locks, scratch = own_state_dirs()
    out = {resolved(journal): "lifeboat's journal", resolved(locks): "lifeboat's locks"}
    if os.path.isdir(scratch):  # only while a capture uses it (see _sqlite_copies)
        out[resolved(scratch)] = "lifeboat's scratch space"
    if repository_root:
        out[resolved(repository_root)] = "the repository"
    return out


def guard_capture(unit: dict[str, Any], where: str, own: dict[str, str]) -> list[dict[str, str]]:
    """Check the directory a unit is read from; returns what must be left out of it (each with
    its tar exclude pattern and why), or raises UnitFailed when it cannot be captured at all."""
    real = resolved(where)
    if unit["kind"] == "path":
        why = capture_refusal(real, fs_type(real))
        if why:
            raise UnitFailed(f"{unit['id']} cannot be captured: {why}")
    covered = covers(real, own)
    if covered:
        raise UnitFailed(f"{where} is, or is inside, {covered[0]}: lifeboat never captures its own files; "
                         "capture the directories that hold data, and keep the repository elsewhere")
    return [{"path": rel, "exclude": "./" + glob.escape(rel),
             "reason": f"{what} ({posixpath.join(real, rel)}) is inside {where}: left out of the capture"}
            for rel, what in nested_excludes(real, own)]


def select_units(plan: list[dict[str, Any]], units: list[Any] | None, volumes: list[str] | None,
                 paths: list[str] | None, strategy: str | None) -> list[dict[str, Any]]:
    """The units to capture, in a stable order, from the options of the snapshot module.

    `units`: data_inventory's unit dicts (taken as they are) or unit ids (looked up in PLAN, the
    live plan of this host). `volumes` / `paths`: shorthands for volume:NAME / path:/P units;
    `strategy` overrides the planned strategy of the shorthands. A host path no container mounts
    is not in the plan: it becomes a unit of its own (strategy live unless given).
    """
    by_id = {u["id"]: u for u in plan}
    chosen: dict[str, dict[str, Any]] = {}
    unknown: list[str] = []
    for item in units or []:
        if isinstance(item, dict):
            missing = [k for k in UNIT_KEYS if k not in item]
            if missing:
                raise SelectionError(f"unit {item.get('id', item)!r} lacks {', '.join(missing)}: pass units as "
                                     "data_inventory returns them, or their ids")
            chosen[item["id"]] = dict(item)
        elif isinstance(item, str):
            if item in by_id:
                chosen[item] = dict(by_id[item])
            elif item.startswith("path:"):
                path = _norm_path(item[len("path:"):])
                chosen[f"path:{path}"] = _adhoc_path_unit(path, by_id)
            else:
                unknown.append(item)
        else:
            raise SelectionError(f"units: {item!r} is neither a unit (dict) nor a unit id (string)")
    for name in volumes or []:
        uid = f"volume:{name}"
        if uid not in by_id:
            unknown.append(uid)
            continue
        chosen[uid] = dict(by_id[uid])
        if strategy:
            chosen[uid].update(strategy=strategy, reason=f"strategy {strategy} given to the snapshot module")
    for raw_path in paths or []:
        path = _norm_path(raw_path)
        unit = _adhoc_path_unit(path, by_id)
        if strategy:
            unit.update(strategy=strategy, reason=f"strategy {strategy} given to the snapshot module")
        chosen[unit["id"]] = unit
    if unknown:
        known = ", ".join(sorted(by_id)) or "none"
        raise SelectionError(f"no such unit on this host: {', '.join(unknown)}; units of this host: {known}")
    if not chosen:
        raise SelectionError("nothing to capture: give units (from data_inventory, or their ids), volumes or paths")
    return [chosen[k] for k in sorted(chosen)]


def _adhoc_path_unit(path: str, by_id: dict[str, dict[str, Any]]) -> dict[str, Any]:
    uid = f"path:{path}"
    if uid in by_id:
        return dict(by_id[uid])
    return {"id": uid, "kind": "path", "source": path, "strategy": "live", "engine": "none",
            "containers": [], "exclude": [], "reason": "host path named in paths: no container mounts it, copied live"}


def container_spec(attrs: dict[str, Any], image_digests: dict[str, list[str]]) -> dict[str, Any]:
    """What a later rebuild needs of a container; environment variable NAMES only, never values."""
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    image_id = attrs.get("Image") or ""
    return {
        "name": (attrs.get("Name") or "").lstrip("/"),
        "id": attrs.get("Id"),
        "image": config.get("Image"),
        "image_id": image_id,
        "image_digests": sorted(image_digests.get(image_id, [])),
        "command": config.get("Cmd"),
        "entrypoint": config.get("Entrypoint"),
        "working_dir": config.get("WorkingDir") or None,
        "user": config.get("User") or None,
        "env_names": sorted({e.split("=", 1)[0] for e in config.get("Env") or []}),
        "labels": config.get("Labels") or {},
        "mounts": [{"type": m.get("Type"), "name": m.get("Name"), "source": m.get("Source"),
                    "destination": m.get("Destination"), "rw": bool(m.get("RW"))}
                   for m in attrs.get("Mounts") or []],
        "networks": sorted(((attrs.get("NetworkSettings") or {}).get("Networks") or {}).keys()),
        "ports": host.get("PortBindings") or {},
        "restart_policy": (host.get("RestartPolicy") or {}).get("Name") or "no",
    }


def unit_source(unit: dict[str, Any], raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(source record for the manifest, directory to read) of a volume or path unit."""
    if unit["kind"] == "volume":
        name = unit["source"]
        volume = next((v for v in raw.get("volumes") or [] if v.get("Name") == name), None)
        if volume is None:
            raise UnitFailed(f"volume {name!r} does not exist on this host")
        driver = volume.get("Driver") or "local"
        options = volume.get("Options") or {}
        record = {"type": "volume", "name": name, "driver": driver, "driver_options": options,
                  "labels": volume.get("Labels") or {}}
        where = volume_data_path(volume)
        is_bind = where != volume.get("Mountpoint")
        if driver != "local" or (options and not is_bind):
            raise UnitFailed(f"volume {name!r} uses driver {driver} with options {sorted(options)}: its data is "
                             "not in a directory of this host that lifeboat can read while no container "
                             "mounts it; capture what backs it (a host path) with paths, or mark it skip")
        if not where or not os.path.isdir(where):
            raise UnitFailed(f"the data of volume {name!r} should be in {where} but that is not a directory")
        return record, where
    if unit["kind"] == "path":
        path = unit["source"]
        if not os.path.lexists(path):
            raise UnitFailed(f"host path {path} does not exist")
        if os.path.islink(path):
            raise UnitFailed(f"host path {path} is a symbolic link (to {os.readlink(path)}): capture what it "
                             "points to")
        if os.path.isfile(path):
            # A bind-mounted file (a config file, a certificate, an .htpasswd): a file unit. It is
            # captured as the one member ./NAME of its directory, with owner, mode and xattrs.
            return {"type": "file", "path": path}, path
        if not os.path.isdir(path):
            raise UnitFailed(f"host path {path} is neither a directory nor a regular file (a device or a "
                             "FIFO): lifeboat captures directories and files")
        return {"type": "path", "path": path}, path
    raise UnitFailed(f"unit {unit['id']} is a {unit['kind']} unit, which this version captures only with "
                     "its data directory: capture that volume or path with strategy stop")


class SnapshotRun:
    """One snapshot: capture the units, write the manifest last."""

    def __init__(self, client, repo, raw: dict[str, Any], *, level: int = 3, tags: list[str] | None = None,
                 stop_timeout: int = 30, collection_version: str = "", docker_version: dict[str, Any] | None = None):
        self.client = client
        self.repo = repo
        self.raw = raw
        self.level = level
        self.tags = sorted(tags or [])
        self.stop_timeout = stop_timeout
        self.host = raw.get("host") or os.uname().nodename
        self.started = mf.utc_now()
        self.snapshot_id = mf.new_snapshot_id(self.host, self.started)
        self.collection_version = collection_version
        self.docker_version = docker_version or {}
        self._previous: dict[str, dict[str, Any]] | None = None
        digests: dict[str, list[str]] = {}
        for image in raw.get("images") or []:
            digests[image.get("Id", "")] = image.get("RepoDigests") or []
        self.image_digests = digests
        self.containers_by_name = {(c.get("Name") or "").lstrip("/"): c for c in raw.get("containers") or []}

    # -- helpers -------------------------------------------------------------------------------
    def previous_units(self) -> dict[str, dict[str, Any]]:
        """The newest earlier capture of each unit of this host (for unchanged-data reuse)."""
        if self._previous is None:
            self._previous = {}
            good, _bad = self.repo.manifests()
            for man in mf.select(good, host=self.host):
                for unit in man.get("units", []):
                    if unit.get("object") and unit["id"] not in self._previous:
                        self._previous[unit["id"]] = dict(unit, snapshot=man["id"])
        return self._previous

    def specs_using(self, unit: dict[str, Any]) -> list[dict[str, Any]]:
        wanted = unit["source"]
        out = []
        for name in sorted(self.containers_by_name):
            attrs = self.containers_by_name[name]
            for mount in attrs.get("Mounts") or []:
                hit = (unit["kind"] == "volume" and mount.get("Type") == "volume" and mount.get("Name") == wanted) or \
                      (unit["kind"] == "path" and mount.get("Type") == "bind" and
                       posixpath.normpath(mount.get("Source") or "") == wanted)
                if hit:
                    out.append(container_spec(attrs, self.image_digests))
                    break
        return out

    # -- one unit --------------------------------------------------------------------------------
    def running_users(self, unit: dict[str, Any]) -> list[str]:
        return [spec["name"] for spec in self.specs_using(unit)
                if ((self.containers_by_name.get(spec["name"]) or {}).get("State") or {}).get("Status") == "running"]

    def capture_unit(self, unit: dict[str, Any], journal: Journal, client=None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(manifest entry, result entry) of one unit, or UnitFailed (with .hooks)."""
        client = client or self.client
        strategy = unit["strategy"]
        if strategy not in STRATEGIES_AVAILABLE:
            raise UnitFailed(f"unknown strategy {strategy!r} (available: {', '.join(STRATEGIES_AVAILABLE)})")
        labels_of = {n: ((a.get("Config") or {}).get("Labels") or {}) for n, a in self.containers_by_name.items()}
        users = self.running_users(unit) if unit["kind"] != "database" else []
        hooks = plan_hooks(unit, labels_of, users)
        record: list[dict[str, Any]] = []
        failure: BaseException | None = None
        outcome = None
        why = run_hooks(client, hooks, "pre", record)
        if why:
            failure = UnitFailed(f"not captured: {why}")
        else:
            try:
                if strategy == "dump":
                    outcome = self._capture_dump(unit, client)
                else:
                    outcome = self._capture_files(unit, journal, client)
            except (UnitFailed, ArchiveError, StoreError, DumpError, DockerException, OSError) as exc:
                failure = exc
        why_post = run_hooks(client, hooks, "post", record)
        if failure is None and why_post:
            failure = UnitFailed(f"captured, but {why_post}")
        if failure is not None:
            exc = failure if isinstance(failure, UnitFailed) else UnitFailed(str(failure))
            exc.hooks = record
            raise exc
        entry, result = outcome
        if record:
            entry["hooks"] = [{k: v for k, v in h.items() if k != "output"} for h in record]
            result["hooks"] = record
        return entry, result

    def _capture_dump(self, unit: dict[str, Any], client) -> tuple[dict[str, Any], dict[str, Any]]:
        started = time.monotonic()
        name, engine = unit.get("container"), unit.get("engine")
        attrs = self.containers_by_name.get(name or "")
        if attrs is None:
            raise UnitFailed(f"database container {name!r} does not exist on this host")
        status = client.containers.get(name).status
        if status != "running":
            raise UnitFailed(f"{name} is {status}: a dump needs the database running; start it, or capture its "
                             "data volume with strategy live while it is stopped")
        dump = capture_dump(client, self.repo, name, attrs, engine, unit.get("tool"), self.level)
        seconds = round(time.monotonic() - started, 3)
        entry = {
            "id": unit["id"], "kind": "database", "strategy": "dump", "engine": engine,
            "source": {"type": "database", "container": name, "engine": engine, "volume": unit.get("volume")},
            "reason": unit.get("reason"), "confidential": bool(unit.get("confidential")), "excludes": [],
            "containers": [container_spec(attrs, self.image_digests)], "object": dump["object"], "index": None,
            "files": 0, "dirs": 0, "others": 0, "bytes": dump["bytes"], "row_counts": dump["row_counts"],
            "command": dump["command"], "reused_from": None, "quiesced": [], "seconds": seconds,
        }
        result = {"strategy": "dump", "bytes_read": dump["bytes"], "bytes": dump["bytes"],
                  "bytes_stored": dump["object"]["size"], "new_bytes_stored": dump["object"]["size"] if dump["new"] else 0,
                  "files": 0, "sha256": dump["object"]["sha256"], "seconds": seconds, "downtime": {},
                  "reused_from": None, "tables": sum(len(t) for t in dump["row_counts"].values()),
                  "rows": sum(sum(t.values()) for t in dump["row_counts"].values())}
        return entry, result

    def _capture_files(self, unit: dict[str, Any], journal: Journal, client) -> tuple[dict[str, Any], dict[str, Any]]:
        started = time.monotonic()
        strategy = unit["strategy"]
        source, where = unit_source(unit, self.raw)
        left_out = guard_capture(unit, where, own_files(getattr(self.repo.store, "root", None)))
        excludes = list(unit.get("exclude") or []) + [item["exclude"] for item in left_out]
        entry: dict[str, Any] = {
            "id": unit["id"], "kind": unit["kind"], "strategy": strategy, "engine": unit.get("engine") or "none",
            "source": source, "reason": unit.get("reason"), "confidential": bool(unit.get("confidential")),
            "excludes": excludes, "containers": self.specs_using(unit),
        }
        action = QUIESCE_ACTIONS.get(strategy, "stop")
        to_quiesce = list(unit.get("containers") or []) if strategy in QUIESCE_ACTIONS else []
        quiesce = Quiesced(client, to_quiesce, journal, action, self.stop_timeout)
        reused = None
        scan = None
        # SQLite databases that running containers write: each captured through an online copy
        # (see _data/sqlite.py); their live files and side files are left out of tar's read.
        copies, plain = member_plan(list(unit.get("sqlite") or [])) \
            if strategy == "live" and source["type"] != "file" else ([], [])
        scratch = None
        spool = IndexSpool()  # the index goes to a temporary file, not into memory
        try:
            with quiesce:
                prev = self.previous_units().get(unit["id"])
                if source["type"] == "file":  # one file: its walk is one lstat, done first
                    scan = walk_file(os.path.dirname(where), os.path.basename(where), sink=spool.write,
                                     probe_xattrs=True)
                if copies:
                    scratch = self._sqlite_copies(where, copies, plain, journal)
                if prev and not copies and prev.get("reuse_key") and prev.get("index") \
                        and self.repo.has_object(prev["object"]) and self.repo.has_object(prev["index"]):
                    # An earlier capture may still hold: the walk's fingerprint decides, before any
                    # file's content is read, whether this one is needed at all.
                    if scan is None:
                        scan = walk(where, excludes, sink=spool.write, probe_xattrs=True)
                    reuse = mf.reuse_key(scan.fingerprint, source, excludes, self.repo.recipients)
                    if prev["reuse_key"] == reuse:
                        reused = prev
                if reused:
                    bytes_read = 0
                    tar_warnings: list[str] = []
                else:
                    # Nothing to reuse: the walk runs while tar and zstd capture (see _capture_walking);
                    # a file unit's was done already, and tar reads the one member ./NAME of its directory.
                    member = os.path.basename(where) if source["type"] == "file" else None
                    sqlite_run = (scratch, copies) if copies else None
                    scan, cap, writer = self._capture_walking(os.path.dirname(where) if member else where,
                                                              [] if member else excludes, strategy, spool,
                                                              walked=scan, member=member, sqlite=sqlite_run)
                    reuse = mf.reuse_key(scan.fingerprint, source, excludes, self.repo.recipients)
                    bytes_read = scan.bytes
                    tar_warnings = cap["tar_warnings"]
            if quiesce.start_failures:
                if not reused:
                    writer.abort()
                verb = "start" if action == "stop" else "unpause"
                names = ", ".join(f"{f['container']} ({f['error']})" for f in quiesce.start_failures)
                raise UnitFailed(f"captured, but these containers did not {verb} again: {names}; {verb} them by hand "
                                 f"(docker {verb} NAME) and check their logs")
            if reused:
                obj, new_object, index = dict(reused["object"]), False, dict(reused["index"])
            else:
                # The containers run again: the object is complete, and is made durable and named now.
                ref, new_object = self.repo.store_object(writer, cap["sha256"], cap["size"])
                obj = dict(ref, format="tar-posix+zstd", compression="zstd", level=self.level, xattrs=cap["xattrs"])
                iref, _new = self.repo.put_bytes(spool.compress())
                index = dict(iref, format="jsonl+zstd")
        finally:
            spool.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
                journal.unstage(scratch)
                try:
                    os.rmdir(scratch_dir())  # gone when no other capture uses it
                except OSError:
                    pass
        seconds = round(time.monotonic() - started, 3)
        entry.update(
            object=obj, index=index, files=scan.files, dirs=scan.dirs, others=scan.others, bytes=scan.bytes,
            fingerprint=scan.fingerprint, reuse_key=reuse, reused_from=reused["snapshot"] if reused else None,
            quiesced=[{"name": n, "action": action, "seconds": s} for n, s in quiesce.downtime.items()],
            seconds=seconds, tar_warnings=tar_warnings,
        )
        result = {"strategy": strategy, "bytes_read": bytes_read, "bytes": scan.bytes, "bytes_stored": obj["size"],
                  "new_bytes_stored": obj["size"] if new_object else 0, "files": scan.files,
                  "sha256": obj["sha256"], "seconds": seconds, "downtime": dict(quiesce.downtime),
                  "reused_from": entry["reused_from"]}
        if left_out:
            entry["left_out"] = [{"path": i["path"], "reason": i["reason"]} for i in left_out]
            result["left_out"] = entry["left_out"]
        if copies or plain:
            entry["sqlite"] = result["sqlite"] = [
                {k: c[k] for k in ("path", "method", "bytes", "journal_mode", "integrity", "reason") if k in c}
                for c in sorted(copies + plain, key=lambda c: c["path"])]
        return entry, result

    @staticmethod
    def _sqlite_copies(where: str, copies: list[dict[str, Any]], plain: list[dict[str, Any]],
                       journal: Journal) -> str:
        """Online copies of the databases COPIES (under WHERE) in a new scratch directory (journalled:
        a killed run's is removed by repair). A database gone or no longer SQLite moves to PLAIN.
        Raises UnitFailed when a copy fails (the unit is not captured half consistent)."""
        for attempt in range(3):  # another unit may remove the empty scratch_dir() in between
            os.makedirs(scratch_dir(), mode=0o700, exist_ok=True)
            try:
                scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX + "sqlite-", dir=scratch_dir())
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        journal.stage(scratch)
        for c in list(copies):
            live = os.path.join(where, c["path"])
            if not is_database(live):
                copies.remove(c)
                plain.append({"path": c["path"], "method": "not captured",
                              "reason": "gone or no longer an SQLite database when the capture began"})
                continue
            try:
                c.update(backup_copy(live, os.path.join(scratch, c["scratch"])), method="online backup",
                         integrity="ok")
            except (SQLiteError, OSError) as exc:
                raise UnitFailed(str(exc)) from exc
        for c in plain:
            c.setdefault("method", "copied as it is")
        return scratch

    def _capture_walking(self, where: str, excludes: list[str], strategy: str, spool: IndexSpool,
                         walked=None, member: str | None = None,
                         sqlite: tuple[str, list[dict[str, Any]]] | None = None) -> tuple[Any, dict[str, Any], Any]:
        """tar | zstd of where into a new object writer, and walk() of the same tree: the walk
        runs while tar and zstd work (they leave the second core part idle), unless it was done
        already (walked). Returns (scan, capture result with "xattrs", writer), the writer
        written and not yet committed.

        tar must be told before it starts whether to capture extended attributes (asking for
        them costs tar two system calls per entry), and the walk is what finds them. So tar
        starts without them unless the root has some; when the walk finds one, the capture is
        stopped at once and run again with them, after the walk (what was written is dropped).

        sqlite: (scratch directory, copies): databases whose online copies tar reads in place of
        their live files (left out with their side files), and the walk indexes likewise."""
        tar_excludes, extra, substitutes = excludes, None, None
        if sqlite:
            scratch, copies = sqlite
            tar_excludes = excludes + excludes_for(copies)
            extra = (scratch, [(c["scratch"], c["path"]) for c in copies])
            substitutes = walk_substitutes(copies, scratch)

        def attempt(xattrs: bool, during=None) -> tuple[Any, dict[str, Any]]:
            writer = self.repo.new_object_writer()
            try:
                return writer, capture(where, writer, self.level, tar_excludes, tolerate_changes=(strategy == "live"),
                                       xattrs=xattrs, during=during, member=member, extra=extra)
            except BaseException:
                writer.abort()
                raise

        if walked is not None:
            writer, cap = attempt(walked.xattrs)
            return walked, dict(cap, xattrs=walked.xattrs), writer
        xattrs = has_xattrs(where)
        writer, cap = attempt(xattrs, lambda cancel: walk(where, excludes, sink=spool.write, probe_xattrs=True,
                                                          on_xattrs=None if xattrs else cancel,
                                                          substitutes=substitutes))
        walked = cap["during"]
        if walked.xattrs and not xattrs:  # found by the walk (the capture was stopped, or ended first)
            writer.abort()
            writer, cap = attempt(True)
        return walked, dict(cap, xattrs=walked.xattrs), writer

    # -- the host's deployment (see _snapshot/deployment.py) ------------------------------------------------
    deployment_capture = None  # a _deployment.DeploymentCapture, set by the snapshot module
    deployment_result: dict[str, Any] | None = None

    def capture_deployment(self) -> dict[str, Any] | None:
        """The manifest's deployment section, captured under the repository lock (its objects must
        not be pruned before the manifest names them) and before any container is quiesced."""
        if self.deployment_capture is None:
            return None
        section = self.deployment_capture.run(self.docker_version)
        self.deployment_result = self.deployment_capture.result(section)
        return section

    # -- the swarm's stacks (see _rebuild/swarm.py) ---------------------------------------------------------
    swarm_stacks: list[Any] | None = None  # the snapshot module's swarm_stacks option
    swarm_result: dict[str, Any] | None = None

    def capture_swarm(self) -> dict[str, Any] | None:
        """The manifest's swarm section (the stacks' compose files and service specs), captured under
        the repository lock and before any service is scaled down. What fails here is reported in
        swarm_result's problems; it never fails the snapshot."""
        try:
            section, self.swarm_result = capture_swarm(self.repo, self.raw, self.swarm_stacks)
        except (DockerException, StoreError, OSError) as exc:
            self.swarm_result = {"stacks": [], "compose_files": 0, "services": 0, "seconds": 0,
                                 "problems": [f"the swarm section could not be recorded: {exc}"]}
            return None
        return section

    # -- the whole snapshot ----------------------------------------------------------------------
    def _run_group(self, group: list[dict[str, Any]], journal: Journal, lock_timeout: float,
                   client_factory: Callable[[], Any] | None) -> list[tuple[dict[str, Any], Any, Any]]:
        """Capture a group's units one after the other, holding their locks. Returns
        (unit, (entry, result) or None, failure dict or None) per unit."""
        client = client_factory() if client_factory else self.client
        names = [f"unit:{u['id']}" for u in group]
        names += sorted({f"container:{c}" for u in group for c in quiesced_containers(u)})
        out: list[tuple[dict[str, Any], Any, Any]] = []
        try:
            locks = LockSet(names, f"snapshot {self.snapshot_id}", lock_timeout).__enter__()
        except LockTimeout as exc:
            return [(u, None, {"id": u["id"], "error": str(exc)}) for u in group]
        try:
            for unit in group:
                if unit["strategy"] == "skip":
                    out.append((unit, ({"id": unit["id"], "kind": unit["kind"], "strategy": "skip",
                                        "reason": unit.get("reason"), "object": None},
                                       {"strategy": "skip", "reason": unit.get("reason")}), None))
                    continue
                try:
                    entry, result = self.capture_unit(unit, journal, client)
                    result["lock_wait"] = locks.waited
                    out.append((unit, (entry, result), None))
                except UnitFailed as exc:
                    out.append((unit, None, {"id": unit["id"], "error": str(exc), "hooks": exc.hooks}))
        finally:
            locks.release()
        return out

    def run(self, units: list[dict[str, Any]], parallel: int = 1, lock_timeout: float = 600,
            client_factory: Callable[[], Any] | None = None) -> dict[str, Any]:
        journal = Journal(f"snapshot {self.snapshot_id}")
        groups = group_units(units)
        self.previous_units()  # read once, before worker threads look at it
        # Snapshots share the repository; a prune (exclusive) waits for them. The lock is held
        # until the manifest is written: a prune in between would delete the new objects, which no
        # manifest names yet.
        repo_lock = Lock(f"repository:{self.repo.url}", f"snapshot {self.snapshot_id}", lock_timeout, shared=True)
        try:
            return self._run_locked(repo_lock, units, groups, journal, parallel, lock_timeout, client_factory)
        finally:
            repo_lock.release()

    def _run_locked(self, repo_lock: Lock, units: list[dict[str, Any]], groups: list[list[dict[str, Any]]],
                    journal: Journal, parallel: int, lock_timeout: float,
                    client_factory: Callable[[], Any] | None) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        results: dict[str, dict[str, Any]] = {}
        failed: list[dict[str, Any]] = []
        outcomes: list[tuple[dict[str, Any], Any, Any]] = []
        swarm = None
        deployment = None
        try:
            repo_lock.acquire()
            swarm = self.capture_swarm()
            deployment = self.capture_deployment()
            workers = max(1, min(parallel, len(groups)))
            if workers == 1:
                for group in groups:
                    outcomes += self._run_group(group, journal, lock_timeout, None)
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lifeboat") as pool:
                    futures = [pool.submit(self._run_group, g, journal, lock_timeout, client_factory)
                               for g in groups]
                    for future in futures:
                        outcomes += future.result()
        except LockTimeout as exc:
            outcomes = [(u, None, {"id": u["id"], "error": str(exc)}) for u in units]
        finally:
            journal.close()
        for unit, done, failure in sorted(outcomes, key=lambda o: o[0]["id"]):
            if failure:
                failed.append({"id": failure["id"], "error": failure["error"]})
                results[unit["id"]] = {"strategy": unit["strategy"], "failed": True, "error": failure["error"],
                                       "hooks": failure.get("hooks") or []}
            else:
                entries.append(done[0])
                results[unit["id"]] = done[1]
        captured = [e for e in entries if e.get("object")]
        manifest = None
        if captured:
            manifest = {
                "format": mf.MANIFEST_FORMAT, "version": mf.FORMAT_VERSION, "id": self.snapshot_id,
                "host": self.host, "time": mf.iso(self.started), "finished": mf.iso(mf.utc_now()),
                "collection_version": self.collection_version, "docker": self.docker_version,
                "tags": self.tags, "complete": not failed, "failed": failed, "units": entries,
            }
            if swarm is not None:
                manifest["swarm"] = swarm
            if deployment is not None:
                manifest["deployment"] = deployment
            self.repo.write_manifest(manifest)
        return {"snapshot_id": self.snapshot_id if manifest else None, "complete": bool(manifest) and not failed,
                "units": results, "failed": failed, "host": self.host, "groups": len(groups)}
