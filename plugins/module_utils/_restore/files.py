# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Putting a unit back: nothing existing is touched until the new copy is proven.

1. The object is extracted into a staging directory beside the target (same filesystem), through
   the tar checker, its sha256 checked on the way.
2. The staged tree is compared with the unit's index (names, kinds, sizes, modes, owners, mtimes).
3. Only then: the containers using the target are stopped (journalled), the old content is
   renamed aside (a volume NAME.pre-restore-TIME, or PATH.pre-restore-TIME), the staged tree is
   renamed into place, and the containers are started again.
Any failure before step 3 removes the staging directory and leaves the target as it was.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import ArchiveError, compare_tree, extract
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.probe import volume_data_path
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import STAGING_PREFIX, Journal, Quiesced, own_state_dirs
from ansible_collections.lifeboat.docker.plugins.module_utils._common.safety import (
    resolve_lexically,
    resolved,
    restore_refusal,
    within,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.files import fsync_dir

LABEL_PRE_RESTORE = "lifeboat.pre-restore-of"


class RestoreError(Exception):
    """The restore cannot go on; nothing was changed unless the message says so."""


def stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _nonempty(path: str) -> bool:
    """Whether PATH holds something: a directory with an entry, or a file (a file unit's target).
    An empty directory (what the engine makes of a missing bind source) holds nothing."""
    try:
        with os.scandir(path) as it:
            return next(it, None) is not None
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return True


def is_file_unit(unit: dict[str, Any]) -> bool:
    """A bind-mounted file captured on its own (source type file), not a directory."""
    return (unit.get("source") or {}).get("type") == "file"


def users_of(raw: dict[str, Any], kind: str, target: str) -> list[dict[str, Any]]:
    """Containers (name, state) that mount the target volume or host path."""
    out = []
    for attrs in raw.get("containers") or []:
        for mount in attrs.get("Mounts") or []:
            if (kind == "volume" and mount.get("Type") == "volume" and mount.get("Name") == target) or \
               (kind == "path" and mount.get("Type") == "bind" and posixpath.normpath(mount.get("Source") or "") == target):
                out.append({"name": (attrs.get("Name") or "").lstrip("/"),
                            "state": (attrs.get("State") or {}).get("Status")})
                break
    return sorted(out, key=lambda c: c["name"])


def local_root(repo) -> str | None:
    """The resolved directory of a repository on this host, None for offsite stores."""
    root = getattr(getattr(repo, "store", None), "root", None)
    return resolved(root) if root else None


def plan_restore(unit: dict[str, Any], raw: dict[str, Any], target_volume: str | None,
                 target_path: str | None, repository: str | None = None) -> dict[str, Any]:
    """Where the unit goes and what is there now (reads only). REPOSITORY: the resolved directory
    of a local repository, which no restore replaces."""
    if target_volume and target_path:
        raise RestoreError("give target_volume or target_path, not both")
    if unit.get("kind") not in ("volume", "path") or not unit.get("object"):
        raise RestoreError(f"unit {unit['id']} holds no captured data to restore (strategy {unit.get('strategy')})")
    source = unit["source"]
    if target_path:
        kind, target = "path", target_path
    elif target_volume:
        kind, target = "volume", target_volume
    elif source["type"] == "volume":
        kind, target = "volume", source["name"]
    else:
        kind, target = "path", source["path"]
    plan: dict[str, Any] = {"kind": kind, "target": target, "exists": False, "nonempty": False,
                            "create_volume": False, "data_dir": None}
    if kind == "path":
        if not target.startswith("/"):
            raise RestoreError(f"target_path {target!r} is not absolute")
        target = plan["target"] = resolve_lexically(target)
        # Compared as given and as resolved (symbolic links in its parents), by path components.
        for candidate in dict.fromkeys((target, resolved(target))):
            why = restore_refusal(candidate, docker_root=raw.get("docker_root"), repository=repository,
                                  own_dirs=[resolved(d) for d in own_state_dirs()])
            if why:
                raise RestoreError(f"refusing to restore {unit['id']} into {target_path or target}: {why}")
        plan["file"] = is_file_unit(unit)
        if plan["file"]:
            why = restore_refusal(resolved(target), file=True)
            if why:
                raise RestoreError(f"refusing to restore {unit['id']} into {target}: {why}")
            if os.path.islink(target) or (os.path.lexists(target) and not os.path.isfile(target)
                                          and not (os.path.isdir(target) and not _nonempty(target))):
                raise RestoreError(f"target path {target} exists and is not a regular file (the snapshot holds a "
                                   "file there): move it away first")
            # An empty directory where the file belongs is what the engine makes of a missing bind
            # source: it is replaced by the file, and counts as empty.
            plan["exists"] = os.path.isfile(target)
            plan["nonempty"] = plan["exists"]
        else:
            if os.path.lexists(target) and (os.path.islink(target) or not os.path.isdir(target)):
                raise RestoreError(f"target path {target} exists and is not a directory: move it away first")
            plan["exists"] = os.path.isdir(target)
            plan["nonempty"] = _nonempty(target)
        plan["data_dir"] = target
    else:
        volume = next((v for v in raw.get("volumes") or [] if v.get("Name") == target), None)
        if volume is None:
            recorded = source if source.get("type") == "volume" else {"driver": "local", "driver_options": {}, "labels": {}}
            if (recorded.get("driver") or "local") != "local" or recorded.get("driver_options"):
                raise RestoreError(f"volume {target} would need driver {recorded.get('driver')} with options "
                                   f"{sorted(recorded.get('driver_options') or {})}: lifeboat restores into plain "
                                   "local volumes; create the volume yourself and restore its backing path")
            plan.update(create_volume=True, driver="local", labels=recorded.get("labels") or {})
        else:
            where = volume_data_path(volume)
            if (volume.get("Driver") or "local") != "local" or (volume.get("Options") and where == volume.get("Mountpoint")):
                raise RestoreError(f"volume {target} uses driver {volume.get('Driver')} with options: lifeboat "
                                   "restores into plain local volumes")
            # A local volume bound to a host directory (device=..., o=bind) is swapped like a path.
            plan.update(exists=True, data_dir=where, nonempty=_nonempty(where),
                        bind_volume=where != volume.get("Mountpoint"))
            real = resolved(where)
            if plan["bind_volume"]:
                why = restore_refusal(real, docker_root=raw.get("docker_root"), repository=repository,
                                      own_dirs=[resolved(d) for d in own_state_dirs()])
                if why:
                    raise RestoreError(f"refusing to restore {unit['id']} into volume {target} (bound to {where}): {why}")
            for what, tree in [("the repository", repository)] + [("lifeboat's state", resolved(d))
                                                                  for d in own_state_dirs()]:
                if tree and (within(tree, real) or within(real, tree)):
                    raise RestoreError(f"refusing to restore {unit['id']} into volume {target}: its data directory "
                                       f"{where} holds or is in {what} ({tree}), which a restore never replaces; "
                                       "restore into a new volume with target_volume")
    plan["users"] = users_of(raw, kind, target)
    return plan


def _explain_full(exc: Exception, staging: str, unit: dict[str, Any]) -> Exception:
    """A failed extraction, said in one line with sizes when the filesystem ran out of space
    (tar's own output then is a line per file it could not write)."""
    text = str(exc)
    if "No space left on device" not in text:
        return exc
    try:
        st = os.statvfs(os.path.dirname(staging))
        free = st.f_bavail * st.f_frsize
        total = st.f_blocks * st.f_frsize
    except OSError:
        free = total = -1
    mib = 1024 * 1024
    return RestoreError(
        f"the filesystem of {os.path.dirname(staging)} ran out of space while extracting {unit['id']}: the unit holds "
        f"{(unit.get('bytes') or 0) / mib:.1f} MiB, the filesystem has {total / mib:.1f} MiB in all and {free / mib:.1f} "
        "MiB free now (the partial copy was removed; the target was not touched); free space there, or restore into "
        "another place with target_path or target_volume")


def unit_index(repo, unit: dict[str, Any]) -> bytes:
    """The unit's index as stored (zstd-compressed JSON lines), its sha256 checked."""
    try:
        return repo.read_object(unit["index"], f"the index of {unit['id']}")
    except RepositoryError as exc:
        raise RestoreError(str(exc)) from exc


def unit_member(unit: dict[str, Any]) -> str | None:
    """The name a file unit's file has in its object (./NAME); None for directory units."""
    return posixpath.basename(unit["source"]["path"]) if is_file_unit(unit) else None


def extract_verified(repo, unit: dict[str, Any], staging: str, verify: bool, allow_devices: bool) -> dict[str, Any]:
    """Extract the unit into the (empty) staging directory and prove it; raises on any doubt."""
    sha = unit["object"]["sha256"]
    if not repo.has_object(sha):
        raise RestoreError(f"object {sha} of {unit['id']} is missing from the repository")
    size = repo.object_size(sha)
    if size != unit["object"]["size"]:
        raise RestoreError(f"object {sha} of {unit['id']} has {size} bytes, the manifest says {unit['object']['size']}: "
                           "it is damaged or incomplete; restore from another snapshot")
    with repo.open_object(unit["object"]) as reader:
        info = extract(reader, staging, mf.content_sha(unit["object"]), allow_devices=allow_devices,
                       xattrs=unit["object"].get("xattrs", True))
    member = unit_member(unit)
    if member is not None:
        found = sorted(os.listdir(staging))
        if found != [member]:
            raise RestoreError(f"the object of file unit {unit['id']} holds {found}, not the one file {member}: "
                               "it is damaged; restore from another snapshot")
    problems: list[str] = []
    if verify:
        problems = compare_tree(unit_index(repo, unit), staging, unit.get("excludes") or [], member=member)
        if problems:
            raise RestoreError(f"the extracted copy of {unit['id']} differs from the manifest: {'; '.join(problems)}")
    info["verified"] = verify
    return info


class RestoreRun:
    def __init__(self, client, repo, raw: dict[str, Any], stop_timeout: int = 30) -> None:
        self.client = client
        self.repo = repo
        self.raw = raw
        self.stop_timeout = stop_timeout

    def _create_volume(self, name: str, labels: dict[str, str]) -> str:
        volume = self.client.volumes.create(name=name, driver="local", labels=labels or None)
        volume.reload()
        return volume.attrs["Mountpoint"]

    def run(self, manifest: dict[str, Any], unit: dict[str, Any], plan: dict[str, Any], force: bool,
            verify: bool, allow_devices: bool) -> dict[str, Any]:
        started = time.monotonic()
        if plan["nonempty"] and not force:
            raise RestoreError(f"the target {plan['kind']} {plan['target']} is not empty: set force: true to replace "
                               "its content (the current content is kept aside, not deleted)")
        result: dict[str, Any] = {"snapshot_id": manifest["id"], "unit": unit["id"], "target": plan["target"],
                                  "target_type": plan["kind"], "created": False, "previous": None,
                                  "downtime": {}, "files": unit.get("files"), "bytes": unit.get("bytes")}
        if plan["create_volume"]:
            plan["data_dir"] = self._create_volume(plan["target"], plan.get("labels") or {})
            result["created"] = True
        data_dir = plan["data_dir"]
        parent = os.path.dirname(data_dir.rstrip("/"))
        os.makedirs(parent, exist_ok=True)
        staging = os.path.join(parent, f"{STAGING_PREFIX}{secrets.token_hex(4)}")
        # The staging directory is journalled before it exists: if this run is killed, the next
        # run of any lifeboat module removes it (repair).
        journal = Journal(f"restore {unit['id']} from {manifest['id']}")
        try:
            with journal.staged(staging):
                os.mkdir(staging, 0o700)
                try:
                    result.update(extract_verified(self.repo, unit, staging, verify, allow_devices))
                except ArchiveError as exc:
                    explained = _explain_full(exc, staging, unit)
                    if explained is exc:
                        raise
                    raise explained from exc
                to_stop = [u["name"] for u in plan["users"]]
                with Quiesced(self.client, to_stop, journal, "stop", self.stop_timeout) as quiesce:
                    result["previous"] = self._swap(plan, data_dir, staging)
                result["downtime"] = dict(quiesce.downtime)
                if quiesce.start_failures:
                    names = ", ".join(f"{f['container']} ({f['error']})" for f in quiesce.start_failures)
                    raise RestoreError(f"restored, but these containers did not start again: {names}")
        finally:
            journal.close()
        result["seconds"] = round(time.monotonic() - started, 3)
        return result

    def _swap(self, plan: dict[str, Any], data_dir: str, staging: str) -> str | None:
        """Old content aside (if any), staged tree into place; returns where the old content went."""
        previous = None
        if plan.get("file"):
            if os.path.isfile(data_dir):
                previous = f"{data_dir}.pre-restore-{stamp()}"
                os.rename(data_dir, previous)
            elif os.path.isdir(data_dir):
                os.rmdir(data_dir)  # empty (checked by the plan): what the engine made of a missing file
            os.rename(os.path.join(staging, posixpath.basename(data_dir)), data_dir)
            os.rmdir(staging)
            fsync_dir(os.path.dirname(data_dir))
            return previous
        if plan["kind"] == "volume" and not plan.get("bind_volume"):
            if _nonempty(data_dir):
                aside = f"{plan['target']}.pre-restore-{stamp()}"
                labels = {LABEL_PRE_RESTORE: plan["target"]}
                aside_dir = self._create_volume(aside, labels)
                os.rmdir(aside_dir)
                os.rename(data_dir, aside_dir)
                previous = aside
            else:
                os.rmdir(data_dir)
        else:
            if os.path.isdir(data_dir):
                if _nonempty(data_dir):
                    aside = f"{data_dir}.pre-restore-{stamp()}"
                    os.rename(data_dir, aside)
                    previous = aside
                else:
                    os.rmdir(data_dir)
        os.rename(staging, data_dir)
        fsync_dir(os.path.dirname(data_dir))
        return previous


def resolve_unit(manifest: dict[str, Any], wanted: str) -> dict[str, Any]:
    try:
        return mf.find_unit(manifest, wanted)
    except mf.FormatError as exc:
        raise RestoreError(str(exc)) from exc
