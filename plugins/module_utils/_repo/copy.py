# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Copies of snapshots between repositories (local to offsite, offsite to a fresh host).

Objects are copied as stored (encrypted ones stay encrypted: no key is needed), each checked
against its name (sha256) while it streams, and skipped when the target has it already. A
snapshot's manifest is written last, once every object it names is in the target: a copy killed
half way leaves no listed snapshot there, and running it again finishes it.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError

CHUNK = 1 << 20


class CopyError(Exception):
    """A snapshot could not be copied; the message names it and why."""


def copy_object(source, target, sha: str, expected_size: int | None) -> int:
    """Stream one object from the source store to the target store; returns its size."""
    key = mf.object_key(sha)
    digest = hashlib.sha256()
    size = 0
    writer = target.store.new_writer()
    try:
        with source.store.open_reader(key) as reader:
            while True:
                chunk = reader.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                writer.write(chunk)
        actual = digest.hexdigest()
        if actual != sha:
            raise CopyError(f"object {sha} is damaged in the source repository (its bytes hash to {actual}): not "
                            "copied; check the source with lifeboat.docker.snapshot_info verify=checksum")
        if expected_size is not None and size != expected_size:
            raise CopyError(f"object {sha} has {size} bytes in the source repository, the manifest says "
                            f"{expected_size}: not copied")
    except BaseException:
        writer.abort()
        raise
    writer.commit(key)
    return size


def object_refs(record: dict[str, Any]) -> dict[str, int | None]:
    """sha256 -> recorded size of every object a (plain or sealed) manifest names."""
    refs: dict[str, int | None] = {}
    sealed = (record.get("encryption") or {}).get("manifest")
    units = [u.get(k) for u in record.get("units", []) for k in ("object", "index")]
    for ref in [sealed] + units + mf.deployment_refs(record):
        if ref and ref.get("sha256"):
            refs[ref["sha256"]] = ref.get("size")
    for ref in mf.swarm_refs(record):
        refs[ref["sha256"]] = ref.get("size")
    return refs


def plan_copy(source, have: set[str], wanted: list[str], host: str | None,
              damaged: list[dict[str, str]] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(manifests to copy, ids the target has already) for the wanted ids ([] = all; 'latest'
    = the newest complete of each host, or of host); have: the snapshot ids of the target.

    A damaged manifest harms only itself: it is left out (and appended to DAMAGED, when given),
    unless it is asked for by id."""
    good, bad = source.manifests()
    asked = [b for b in bad if b["id"] in (wanted or [])]
    if asked:
        raise CopyError(f"snapshot(s) asked for cannot be read: {'; '.join(b['problem'] for b in asked)}")
    if damaged is not None:
        damaged.extend(bad)
    chosen = mf.select(good, host=host)
    if wanted:
        by_id = {m["id"]: m for m in chosen}
        picked: dict[str, dict[str, Any]] = {}
        for item in wanted:
            if item == "latest":
                for each in sorted({m["host"] for m in chosen}):
                    man = mf.pick_latest(chosen, host=each)
                    if man is not None:
                        picked[f"latest:{each}"] = man
            elif item in by_id:
                picked[item] = by_id[item]
            else:
                where = f" of host {host}" if host else ""
                raise CopyError(f"snapshot {item!r}{where} is not in the source repository {source.url}: list them with "
                                "lifeboat.docker.snapshot_info")
        chosen = list({m["id"]: m for m in picked.values()}.values())
    todo = sorted((m for m in chosen if m["id"] not in have), key=lambda m: m["id"])
    present = sorted(m["id"] for m in chosen if m["id"] in have)
    return todo, present


def copy_snapshots(source, target, todo: list[dict[str, Any]]) -> dict[str, Any]:
    """Copy each snapshot's objects, then its manifest. A failed snapshot does not stop the others."""
    started = time.monotonic()
    out: dict[str, Any] = {"copied": [], "failed": [], "objects_copied": 0, "objects_present": 0, "bytes_copied": 0}
    done_objects: set[str] = set()
    for record in todo:
        sid = record["id"]
        try:
            for sha, size in sorted(object_refs(record).items()):
                if sha in done_objects:
                    continue
                if target.has_object(sha):
                    out["objects_present"] += 1
                else:
                    if not source.has_object(sha):
                        raise CopyError(f"object {sha} is missing from the source repository")
                    out["bytes_copied"] += copy_object(source, target, sha, size)
                    out["objects_copied"] += 1
                done_objects.add(sha)
            # The manifest as stored (byte for byte: a sealed record stays sealed), written last.
            key = mf.manifest_key(sid)
            target.store.write_bytes(key, source.store.read_bytes(key))
            out["copied"].append(sid)
        except (CopyError, StoreError, mf.FormatError) as exc:
            out["failed"].append({"id": sid, "error": str(exc)})
    seconds = time.monotonic() - started
    out["seconds"] = round(seconds, 3)
    out["mb_per_second"] = round(out["bytes_copied"] / 1e6 / seconds, 1) if seconds > 0 and out["bytes_copied"] else None
    return out
