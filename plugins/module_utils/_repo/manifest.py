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
    check_manifest(doc, key)
    return doc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_manifest(doc: dict[str, Any], key: str) -> None:
    """Every field a reader relies on, checked for its type: a manifest that is valid JSON but
    not a valid snapshot (a unit without an id, a time that is no time) is damaged, and says so,
    instead of breaking whatever reads it next."""
    def bad(what: str) -> FormatError:
        return FormatError(f"manifest {key} is damaged: {what}; it is left out of listings and of 'latest' "
                           "(restore it from a copy of the repository, or remove it)")

    sid = doc.get("id")
    if not isinstance(sid, str) or not is_snapshot_id(sid):
        raise bad(f"its id {sid!r} is not a snapshot id")
    if key.startswith(SNAPSHOTS_PREFIX) and snapshot_id_from_key(key) not in (None, sid):
        raise bad(f"it names snapshot {sid}, not the one its file name says")
    if not isinstance(doc.get("host"), str) or not doc["host"]:
        raise bad(f"its host {doc.get('host')!r} is not a name")
    try:
        if not isinstance(doc.get("time"), str):
            raise ValueError
        parse_iso(doc["time"])
    except ValueError:
        raise bad(f"its time {doc.get('time')!r} is not an ISO 8601 time") from None
    if "complete" in doc and not isinstance(doc["complete"], bool):
        raise bad(f"'complete' is {doc['complete']!r}, not true or false")
    tags = doc.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad("'tags' is not a list of strings")
    failed = doc.get("failed", [])
    if not isinstance(failed, list) or not all(isinstance(f, dict) and isinstance(f.get("id"), str) for f in failed):
        raise bad("'failed' is not a list of units with ids")
    units = doc.get("units")
    if not isinstance(units, list):
        raise bad(f"'units' is {type(units).__name__}, not a list")
    for number, unit in enumerate(units, 1):
        if not isinstance(unit, dict) or not isinstance(unit.get("id"), str) or not unit["id"]:
            raise bad(f"unit {number} has no id")
        if unit.get("kind") is not None and not isinstance(unit["kind"], str):
            raise bad(f"the kind of unit {unit['id']} is not a name")
        for ref in ("object", "index"):
            if unit.get(ref) is not None and not is_object_ref(unit[ref]):
                raise bad(f"the {ref} of unit {unit['id']} is not an object reference")
        if unit.get("source") is not None and not isinstance(unit["source"], dict):
            raise bad(f"the source of unit {unit['id']} is not a mapping")
        for number_field in ("bytes", "files"):
            if unit.get(number_field) is not None and not _is_int(unit[number_field]):
                raise bad(f"'{number_field}' of unit {unit['id']} is not a number")
    for section in ("encryption", "deployment", "swarm"):
        if doc.get(section) is not None and not isinstance(doc[section], dict):
            raise bad(f"'{section}' is not a mapping")
    sealed = (doc.get("encryption") or {}).get("manifest")
    if doc.get("encryption") and not is_object_ref(sealed):
        raise bad("its encrypted manifest is not an object reference")


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
    out.sort(key=lambda m: (parse_iso(m["time"]), m["id"]), reverse=True)
    if newest is not None:
        out = out[:newest]
    return out


PRE_RESTORE_TAG = "pre-restore"


def holds_unit(manifest: dict[str, Any], wanted: str) -> dict[str, Any] | None:
    """The unit of a manifest that WANTED names (id, bare name or path), if it holds its data."""
    for unit in manifest.get("units", []):
        src = unit.get("source") or {}
        if wanted in (unit["id"], unit["id"].split(":", 1)[-1], src.get("name"), src.get("path")) and unit.get("object"):
            return unit
    return None


def pick_latest(manifests: list[dict[str, Any]], host: str | None = None, unit: str | None = None,
                where=None) -> dict[str, Any] | None:
    """What 'latest' means everywhere: the newest snapshot by its parsed time that holds what is
    asked for complete (the whole snapshot; with UNIT, that unit's data), of HOST if given, and
    for which WHERE (a predicate, e.g. "records a swarm") holds. Snapshots a restore took of what
    it replaced (tag pre-restore) are never 'latest': name them by id."""
    for man in select(manifests, host=host):
        if PRE_RESTORE_TAG in man.get("tags", []):
            continue
        if unit is not None:
            if holds_unit(man, unit) is None:
                continue
        elif man.get("complete", True) is not True:
            continue
        if where is not None and not where(man):
            continue
        return man
    return None


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
