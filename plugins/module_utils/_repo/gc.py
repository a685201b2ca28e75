# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""A prune of a repository (lifeboat.docker.snapshot_prune): the snapshots a retention policy
forgets, then the garbage collection of the objects no remaining manifest refers to, then the
temporary files of writers that are gone.

Pure: `object_entries`, `stray_problems`, `manifest_problems`, `referenced`, `sweep` (which keys
are objects, which files block the collection, which objects are still needed and which go).
Effects: `prune` (reads the store, deletes manifests, objects and stale temporary files; in check
mode it only reads and says what it would delete).
"""

from __future__ import annotations

import datetime
from typing import Any, Iterable, Optional

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.retention import Policy, decide
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError


def object_entries(keys: Iterable[str]) -> list[tuple[str, str]]:
    """(key, sha256) of every key that is an object's name; other keys are left out."""
    out = []
    for key in keys:
        sha = key.rsplit("/", 1)[-1]
        try:
            if mf.object_key(sha) == key:
                out.append((key, sha))
        except mf.FormatError:
            continue
    return out


def stray_problems(keys: Iterable[str]) -> list[dict[str, str]]:
    """Files under snapshots/ not named like a manifest: perhaps a manifest renamed by hand."""
    return [{"snapshot": key,
             "problem": f"{key} is not named like a manifest (snapshots/ID.json): it might be one renamed by hand; "
                        "move it out of snapshots/"}
            for key in keys if mf.snapshot_id_from_key(key) is None]


def manifest_problems(bad: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """The damaged manifests of Repository.manifests() as problems of the prune."""
    return [{"snapshot": b["id"], "problem": b["problem"]} for b in bad]


def referenced(manifests: Iterable[dict[str, Any]], forgotten: set[str]) -> set[str]:
    """The objects the manifests that are not FORGOTTEN refer to."""
    out: set[str] = set()
    for man in manifests:
        if man["id"] not in forgotten:
            out.update(mf.objects_of(man))
    return out


def sweep(objects: list[tuple[str, str]], needed: set[str]) -> tuple[list[str], int]:
    """(keys of the objects to delete, how many are kept): every object NEEDED is kept."""
    garbage = [key for key, sha in objects if sha not in needed]
    return garbage, len(objects) - len(garbage)


def prune(repo, policy: Policy, result: dict[str, Any], *, host: Optional[str], check: bool,
          now: Optional[datetime.datetime] = None) -> None:
    """Forget what POLICY does not keep (of HOST's snapshots, or all), then delete the objects no manifest
    refers to and the stale temporary files; fills RESULT (the module's result). CHECK deletes nothing.

    A problem (a damaged manifest, a stray file under snapshots/) keeps every object: a damaged manifest
    may refer to any of them."""
    good, bad = repo.manifests()
    result["problems"] = manifest_problems(bad) + stray_problems(repo.store.list(mf.SNAPSHOTS_PREFIX))
    considered = [m for m in good if host is None or m.get("host") == host]
    decisions = decide(considered, policy, now or datetime.datetime.now(datetime.timezone.utc))
    result["kept"] = [{k: d[k] for k in ("id", "time", "host", "complete", "reasons")} for d in decisions if d["keep"]]
    result["removed"] = [d["id"] for d in decisions if not d["keep"]]

    # 1. forget: manifests first, so that a crash from here on leaves only unreferenced objects
    if not check:
        for sid in result["removed"]:
            repo.store.delete(mf.manifest_key(sid))
            result["changed"] = True

    # 2. objects no remaining manifest refers to; read the manifests again (what is on disk now)
    good, bad = repo.manifests()
    known = {p["snapshot"] for p in result["problems"]}
    for item in manifest_problems(bad) + stray_problems(repo.store.list(mf.SNAPSHOTS_PREFIX)):
        if item["snapshot"] not in known:
            result["problems"].append(item)
    objects = object_entries(repo.store.list(mf.OBJECTS_PREFIX))
    if result["problems"]:
        result["objects_kept"] = len(objects)
    else:
        garbage, result["objects_kept"] = sweep(objects, referenced(good, set(result["removed"])))
        for key in garbage:
            try:
                size = repo.store.size(key)
            except (OSError, StoreError):
                size = 0
            if not check:
                repo.store.delete(key)
            result["objects_removed"] += 1
            result["bytes_freed"] += size

    # 3. temporary files of writers that are gone
    # (check mode names the same ones the real run would remove: a live writer's file is never listed)
    result["stale_removed"] = repo.cleanup(dry_run=check)
    if result["objects_removed"] or result["stale_removed"] or (check and result["removed"]):
        result["changed"] = True
