# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""A lifeboat repository: the marker, content-addressed objects and snapshot manifests.

Sits on a Store (see _repo/stores/core.py) and the pure format rules (see _repo/manifest.py). A snapshot exists
only once its manifest is written, and the manifest is written last.
"""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.crypt import (
    SCHEME,
    DecryptingReader,
    EncryptingWriter,
    check_identity,
    check_recipients,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import Store, StoreError, open_store


class RepositoryError(Exception):
    """The repository cannot be used as asked; the message says why and what to do."""


class Repository:
    def __init__(self, store: Store, create: bool = False, recipients: list[str] | None = None,
                 identity: str | None = None) -> None:
        """recipients: age public keys new objects and manifests are encrypted to (none: plain);
        identity: the age identity file that reads encrypted ones."""
        self.store = store
        self.url = store.url
        self.recipients = check_recipients(recipients) if recipients else None
        self.identity = identity
        try:
            if store.exists(mf.MARKER_KEY):
                self.marker = mf.check_marker(store.read_bytes(mf.MARKER_KEY), store.url)
            elif create:
                if next(iter(store.list(mf.SNAPSHOTS_PREFIX)), None) is not None:
                    raise RepositoryError(f"{store.url} holds snapshots but no {mf.MARKER_KEY}: it is damaged; "
                                          "restore the marker file from a copy rather than writing into it")
                self.marker = mf.marker(mf.iso(mf.utc_now()))
                store.write_bytes(mf.MARKER_KEY, mf.encode_manifest(self.marker))
            else:
                raise RepositoryError(f"{store.url} is not a lifeboat repository (no {mf.MARKER_KEY}): "
                                      "check the repository path")
        except (mf.FormatError, StoreError) as exc:
            raise RepositoryError(str(exc)) from exc

    @classmethod
    def open(cls, url: str, create: bool = False, options: dict[str, Any] | None = None,
             recipients: list[str] | None = None, identity: str | None = None) -> "Repository":
        """The repository at url; options are the store settings (see _options.store_options).

        Every option is checked before the store is opened, which may create the repository."""
        try:
            recipients = check_recipients(recipients) if recipients else None
            return cls(open_store(url, create=create, options=options), create=create, recipients=recipients,
                       identity=identity)
        except StoreError as exc:
            raise RepositoryError(str(exc)) from exc

    # -- objects -------------------------------------------------------------------------------
    # An object is named by the sha256 of its stored bytes (ciphertext when encrypted), so that
    # checksums can be verified without any key. A reference is {"sha256", "size"} and, when
    # encrypted, "encryption" plus the "plain_sha256"/"plain_size" of the decrypted stream.
    def has_object(self, ref: str | dict[str, Any]) -> bool:
        return self.store.exists(mf.object_key(mf.ref_sha(ref)))

    def object_size(self, ref: str | dict[str, Any]) -> int:
        return self.store.size(mf.object_key(mf.ref_sha(ref)))

    def open_object(self, ref: str | dict[str, Any]) -> BinaryIO:
        """A reader of the object's content: decrypted when the reference says it is encrypted
        (a bare sha256 reads the stored bytes as they are)."""
        sha = mf.ref_sha(ref)
        reader = self.store.open_reader(mf.object_key(sha))
        if isinstance(ref, dict) and ref.get("encryption"):
            try:
                identity = check_identity(self.identity, f"object {sha}")
                return DecryptingReader(reader, identity, f"object {sha}")  # type: ignore[return-value]
            except BaseException:
                reader.close()
                raise
        return reader

    def new_object_writer(self):
        inner = self.store.new_writer()
        if not self.recipients:
            return inner
        try:
            return EncryptingWriter(inner, self.recipients)
        except BaseException:
            inner.abort()
            raise

    def store_object(self, writer, sha256: str, size: int) -> tuple[dict[str, Any], bool]:
        """Put a written object under its name. sha256 and size are those of the bytes given to
        the writer. Returns the object's reference and whether it is new to the repository."""
        if isinstance(writer, EncryptingWriter):
            stored_sha, stored_size = writer.finish()
            new = writer.commit(mf.object_key(stored_sha))
            return {"sha256": stored_sha, "size": stored_size, "encryption": SCHEME,
                    "plain_sha256": sha256, "plain_size": size}, new
        return {"sha256": sha256, "size": size}, writer.commit(mf.object_key(sha256))

    def put_bytes(self, data: bytes) -> tuple[dict[str, Any], bool]:
        """A small object from memory (an index, a manifest); stored once when unencrypted."""
        sha = hashlib.sha256(data).hexdigest()
        if not self.recipients and self.has_object(sha):
            return {"sha256": sha, "size": len(data)}, False
        writer = self.new_object_writer()
        try:
            writer.write(data)
        except BaseException:
            writer.abort()
            raise
        return self.store_object(writer, sha, len(data))

    def read_object(self, ref: dict[str, Any], what: str) -> bytes:
        """A small object's content, checked against its reference."""
        with self.open_object(ref) as fh:
            data = fh.read()
        if hashlib.sha256(data).hexdigest() != mf.content_sha(ref):
            raise RepositoryError(f"{what} (object {ref['sha256']}) is damaged (sha256 mismatch): "
                                  "restore from another snapshot or copy")
        return data

    # -- manifests -----------------------------------------------------------------------------
    def snapshot_ids(self) -> list[str]:
        ids = []
        for key in self.store.list(mf.SNAPSHOTS_PREFIX):
            sid = mf.snapshot_id_from_key(key)
            if sid:
                ids.append(sid)
        return sorted(ids)

    def load_manifest(self, snapshot_id: str, full: bool = False) -> dict[str, Any]:
        """A snapshot's manifest. For an encrypted snapshot, the plain record (what listing and
        prune need) unless full, which decrypts the whole manifest with the identity."""
        key = mf.manifest_key(snapshot_id)
        if not self.store.exists(key):
            raise RepositoryError(f"snapshot {snapshot_id} is not in {self.url}: list snapshots with "
                                  "lifeboat.docker.snapshot_info")
        try:
            doc = mf.decode_manifest(self.store.read_bytes(key), key)
        except mf.FormatError as exc:
            raise RepositoryError(str(exc)) from exc
        if not full or not doc.get("encryption"):
            return doc
        sealed = doc["encryption"]
        self.identity = check_identity(self.identity, f"snapshot {snapshot_id}")
        try:
            inner = mf.decode_manifest(self.read_object(sealed["manifest"], f"the manifest of {snapshot_id}"), key)
        except mf.FormatError as exc:
            raise RepositoryError(str(exc)) from exc
        if inner.get("id") != snapshot_id:
            raise RepositoryError(f"the encrypted manifest of {snapshot_id} names snapshot {inner.get('id')}: the "
                                  "repository is damaged or was tampered with")
        inner["encryption"] = sealed
        return inner

    def manifests(self) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """All readable manifests, and a problem entry for each unreadable one."""
        good, bad = [], []
        for sid in self.snapshot_ids():
            try:
                good.append(self.load_manifest(sid))
            except (mf.FormatError, StoreError, RepositoryError) as exc:
                bad.append({"id": sid, "problem": str(exc)})
        return good, bad

    def resolve(self, wanted: str, unit: str | None = None, host: str | None = None) -> dict[str, Any]:
        """A manifest by id, or 'latest' (see _manifest.pick_latest)."""
        if wanted != "latest":
            if not mf.is_snapshot_id(wanted):
                raise RepositoryError(f"snapshot {wanted!r} is neither 'latest' nor a snapshot id "
                                      "(YYYYMMDDTHHMMSSZ-HOST-XXXXXX)")
            return self.load_manifest(wanted, full=True)
        good, bad = self.manifests()
        chosen = mf.pick_latest(good, host=host, unit=unit)
        if chosen is None:
            what = f" with unit {unit} (holding its data)" if unit else " that is complete"
            whose = f" of host {host}" if host else ""
            damaged = f" ({len(bad)} damaged manifest(s) left out: list them with lifeboat.docker.snapshot_info)" \
                if bad else ""
            raise RepositoryError(f"{self.url} has no snapshot{what}{whose}{damaged}; name a snapshot by id to "
                                  "use an incomplete or pre-restore one")
        return self.load_manifest(chosen["id"], full=True) if chosen.get("encryption") else chosen

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write a snapshot's manifest: the last write of a snapshot. When encrypting, the whole
        manifest goes into an encrypted object and the listed record keeps only what listing,
        unchanged-data reuse and prune need."""
        if self.recipients:
            ref, _new = self.put_bytes(mf.encode_manifest(manifest))
            manifest = mf.sealed_record(manifest, ref, self.recipients)
        self.store.write_bytes(mf.manifest_key(manifest["id"]), mf.encode_manifest(manifest))

    def cleanup(self, dry_run: bool = False) -> list[str]:
        return self.store.cleanup_stale(dry_run=dry_run)
