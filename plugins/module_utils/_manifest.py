# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Pure logic of the repository format: names, snapshot ids, manifests (no I/O here).

The format is documented in docs/repository-format.md; FORMAT_VERSION changes with it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import secrets
from typing import Any

FORMAT_VERSION = 1
MARKER_KEY = "lifeboat-repository.json"
MARKER_FORMAT = "lifeboat-repository"
MANIFEST_FORMAT = "lifeboat-snapshot"
SNAPSHOTS_PREFIX = "snapshots/"
OBJECTS_PREFIX = "objects/"

_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-([a-z0-9][a-z0-9-]{0,62})-([0-9a-f]{6})$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class FormatError(Exception):
    """Repository content that does not follow the format; the message names it."""


def marker(created: str) -> dict[str, Any]:
    return {"format": MARKER_FORMAT, "version": FORMAT_VERSION, "created": created,
            "objects": "sha256 of the stored bytes, objects/XX/SHA256",
            "manifests": "snapshots/ID.json, written last"}


def check_marker(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise FormatError(f"{where}/{MARKER_KEY} is not JSON: this is not a lifeboat repository, or it is damaged") from None
    if not isinstance(doc, dict) or doc.get("format") != MARKER_FORMAT:
        raise FormatError(f"{where} is not a lifeboat repository ({MARKER_KEY} has another format)")
    version = doc.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FormatError(f"{where} uses repository format {version!r}; this lifeboat.docker reads up to "
                          f"{FORMAT_VERSION}: upgrade the collection")
    return doc


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def iso(ts: _dt.datetime) -> str:
    return ts.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> _dt.datetime:
    text = text.replace("Z", "+00:00")
    return _dt.datetime.fromisoformat(text)


def safe_host(host: str) -> str:
    """A host name as it appears in snapshot ids: lower case letters, digits and '-'."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", host.lower()).strip("-")
    return (cleaned or "host")[:63]


def new_snapshot_id(host: str, when: _dt.datetime | None = None, suffix: str | None = None) -> str:
    """UTC time + host + a short random suffix: safe in file names, URLs and REST routes."""
    when = when or utc_now()
    stamp = when.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{safe_host(host)}-{suffix or secrets.token_hex(3)}"


def parse_snapshot_id(snapshot_id: str) -> tuple[_dt.datetime, str]:
    match = _ID_RE.match(snapshot_id)
    if not match:
        raise FormatError(f"{snapshot_id!r} is not a snapshot id (expected YYYYMMDDTHHMMSSZ-HOST-XXXXXX)")
    when = _dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
    return when, match.group(2)


def is_snapshot_id(text: str) -> bool:
    return bool(_ID_RE.match(text))


def manifest_key(snapshot_id: str) -> str:
    parse_snapshot_id(snapshot_id)
    return f"{SNAPSHOTS_PREFIX}{snapshot_id}.json"


def object_key(sha256: str) -> str:
    if not _SHA_RE.match(sha256):
        raise FormatError(f"{sha256!r} is not a sha256 object name")
    return f"{OBJECTS_PREFIX}{sha256[:2]}/{sha256}"


def snapshot_id_from_key(key: str) -> str | None:
    if not key.startswith(SNAPSHOTS_PREFIX) or not key.endswith(".json"):
        return None
    candidate = key[len(SNAPSHOTS_PREFIX):-len(".json")]
    return candidate if is_snapshot_id(candidate) else None


def encode_manifest(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def decode_manifest(data: bytes, key: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise FormatError(f"manifest {key} is not valid JSON: it is damaged") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise FormatError(f"{key} is not a lifeboat snapshot manifest")
    if not isinstance(doc.get("version"), int) or doc["version"] > FORMAT_VERSION:
        raise FormatError(f"manifest {key} has format version {doc.get('version')!r}; this lifeboat.docker "
                          f"reads up to {FORMAT_VERSION}: upgrade the collection")
    for field in ("id", "host", "time", "units"):
        if field not in doc:
            raise FormatError(f"manifest {key} lacks '{field}': it is damaged")
    return doc


def ref_sha(ref: str | dict[str, Any]) -> str:
    """The stored object's name (sha256) of a reference or a bare sha256."""
    return ref["sha256"] if isinstance(ref, dict) else ref


def content_sha(ref: dict[str, Any]) -> str:
    """The sha256 of an object's content as read back (decrypted when it is encrypted)."""
    return ref.get("plain_sha256") or ref["sha256"]


def reuse_key(fingerprint: str, source: dict[str, Any], excludes: list[str], recipients: list[str] | None) -> str:
    """What must be equal for a capture to reuse an earlier one's object: the tree's metadata
    fingerprint, the source, the excludes and the encryption's recipients. A hash, so that the
    unencrypted record of an encrypted snapshot can carry it without naming anything."""
    text = json.dumps([fingerprint, source, sorted(excludes), sorted(recipients or [])], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def sealed_record(manifest: dict[str, Any], manifest_ref: dict[str, Any], recipients: list[str]) -> dict[str, Any]:
    """The unencrypted record of an encrypted snapshot: ids, times, sizes and object references
    only (what listing, unchanged-data reuse and prune need); the manifest itself is an object.

    Object references keep the sha256 of their decrypted content: a later snapshot that reuses an
    unchanged object (the host cannot decrypt the earlier manifest) records it from here, and a
    restore checks the content against it. It is the hash of a compressed stream full of
    metadata, which tells nothing about the content unless one already has all of it."""
    keep = ("format", "version", "id", "host", "time", "finished", "collection_version", "tags", "complete")
    record = {k: manifest[k] for k in keep if k in manifest}
    record["failed"] = [{"id": f["id"]} for f in manifest.get("failed", [])]
    record["encryption"] = {"scheme": "age", "recipients": list(recipients), "manifest": dict(manifest_ref)}
    record["units"] = [{
        "id": u["id"], "kind": u.get("kind"), "strategy": u.get("strategy"), "bytes": u.get("bytes", 0),
        "files": u.get("files", 0), "object": u.get("object"), "index": u.get("index"),
        "reuse_key": u.get("reuse_key"),
    } for u in manifest.get("units", [])]
    if manifest.get("swarm"):
        record["swarm"] = {"objects": swarm_refs(manifest)}
    if manifest.get("deployment"):
        record["deployment"] = sealed_deployment(manifest)
    return record


def is_object_ref(value: Any) -> bool:
    """An object reference: {"sha256": 64 hex digits, "size": bytes, ...}."""
    return isinstance(value, dict) and isinstance(value.get("sha256"), str) and bool(_SHA_RE.match(value["sha256"])) \
        and isinstance(value.get("size"), int) and not isinstance(value.get("size"), bool)


def deployment_refs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object reference in a manifest's deployment section (compose files, .env files, the
    environment values, image archives), in a plain manifest or in a sealed record, once each.

    The section is walked as a whole, so that what a later version adds to it is found by prune
    and copy too."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    todo: list[Any] = [manifest.get("deployment") or {}]
    while todo:
        item = todo.pop(0)
        if is_object_ref(item):
            if item["sha256"] not in seen:
                seen.add(item["sha256"])
                out.append(item)
        elif isinstance(item, dict):
            todo.extend(item[k] for k in sorted(item))
        elif isinstance(item, list):
            todo.extend(item)
    return out


def sealed_deployment(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the unencrypted record of an encrypted snapshot keeps of the deployment section:
    object references (for prune and copy) and the images' reuse keys (so that a later snapshot
    does not save an image the repository holds already). No name, no setting, no secret."""
    section = manifest.get("deployment") or {}
    return {
        "objects": deployment_refs(manifest),
        "images": [{"reuse_key": i["reuse_key"], "archive": i["archive"]}
                   for i in section.get("images") or [] if i.get("archive") and i.get("reuse_key")],
    }


def swarm_refs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The object references of a manifest's swarm section (the stacks' compose files), in a plain
    manifest or in the sealed record of an encrypted one (which keeps only them)."""
    section = manifest.get("swarm") or {}
    if "objects" in section:
        refs = list(section["objects"] or [])
    else:
        refs = [f.get("object") for stack in section.get("stacks") or []
                for f in (stack.get("compose") or {}).get("files") or []]
    return [r for r in refs if isinstance(r, dict) and r.get("sha256")]


def objects_of(manifest: dict[str, Any]) -> list[str]:
    """Every object (sha256) a manifest refers to (an encrypted manifest is one too)."""
    out = []
    sealed = (manifest.get("encryption") or {}).get("manifest") or {}
    if sealed.get("sha256"):
        out.append(sealed["sha256"])
    for unit in manifest.get("units", []):
        for ref in ("object", "index"):
            sha = (unit.get(ref) or {}).get("sha256")
            if sha:
                out.append(sha)
    out.extend(ref["sha256"] for ref in swarm_refs(manifest))
    out.extend(ref["sha256"] for ref in deployment_refs(manifest))
    return out


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What snapshot_info lists for a snapshot."""
    units = manifest.get("units", [])
    return {
        "id": manifest["id"],
        "time": manifest["time"],
        "host": manifest["host"],
        "tags": manifest.get("tags", []),
        "units": [u["id"] for u in units],
        "bytes": sum(u.get("bytes", 0) for u in units),
        "stored_bytes": sum((u.get("object") or {}).get("size", 0) for u in units),
        "files": sum(u.get("files", 0) for u in units),
        "encrypted": bool(manifest.get("encryption")),
        # Units recorded without data (strategy skip), and units asked for that failed: a
        # listing says what a snapshot does not hold, and why.
        "skipped": [{"id": u["id"], "reason": u.get("reason")} for u in units if not u.get("object")],
        "failed": [{"id": f.get("id"), "error": f.get("error")} for f in manifest.get("failed") or []],
    }


def select(manifests: list[dict[str, Any]], host: str | None = None, unit: str | None = None,
           tag: str | None = None, newest: int | None = None) -> list[dict[str, Any]]:
    """Filter manifests (oldest first in, newest first out)."""
    out = []
    for man in manifests:
        if host and man.get("host") != host:
            continue
        if unit and not any(unit in (u["id"], u["id"].split(":", 1)[-1], (u.get("source") or {}).get("name"),
                                     (u.get("source") or {}).get("path")) for u in man.get("units", [])):
            continue
        if tag and tag not in man.get("tags", []):
            continue
        out.append(man)
    out.sort(key=lambda m: (m["time"], m["id"]), reverse=True)
    if newest is not None:
        out = out[:newest]
    return out


def find_unit(manifest: dict[str, Any], wanted: str) -> dict[str, Any]:
    """A unit of a manifest by id (volume:NAME, path:/P, db:C) or by bare volume name / path."""
    units = manifest.get("units", [])
    for unit in units:
        if unit["id"] == wanted:
            return unit
    for unit in units:
        src = unit.get("source", {})
        if wanted in (src.get("name"), src.get("path")):
            return unit
    known = ", ".join(u["id"] for u in units) or "none"
    raise FormatError(f"snapshot {manifest['id']} has no unit {wanted!r}; its units: {known}")
