# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""A lifeboat repository: the marker, content-addressed objects and snapshot manifests.

Sits on a Store (see _store.py) and the pure format rules (see _manifest.py). A snapshot exists
only once its manifest is written, and the manifest is written last.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from ansible_collections.lifeboat.docker.plugins.module_utils import _manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._store import Store, StoreError, open_store


class RepositoryError(Exception):
    """The repository cannot be used as asked; the message says why and what to do."""


class Repository:
    def __init__(self, store: Store, create: bool = False) -> None:
        self.store = store
        self.url = store.url
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
    def open(cls, url: str, create: bool = False, options: dict[str, Any] | None = None) -> "Repository":
        """The repository at url; options are the store settings (see _options.store_options)."""
        try:
            return cls(open_store(url, create=create, options=options), create=create)
        except StoreError as exc:
            raise RepositoryError(str(exc)) from exc

    # -- objects -------------------------------------------------------------------------------
    def has_object(self, sha256: str) -> bool:
        return self.store.exists(mf.object_key(sha256))

    def object_size(self, sha256: str) -> int:
        return self.store.size(mf.object_key(sha256))

    def open_object(self, sha256: str) -> BinaryIO:
        return self.store.open_reader(mf.object_key(sha256))

    def new_object_writer(self):
        return self.store.open_writer()

    def commit_object(self, writer, sha256: str) -> bool:
        """Put a written object under its name; False when the repository already had it."""
        return writer.commit(mf.object_key(sha256))

    # -- manifests -----------------------------------------------------------------------------
    def snapshot_ids(self) -> list[str]:
        ids = []
        for key in self.store.list(mf.SNAPSHOTS_PREFIX):
            sid = mf.snapshot_id_from_key(key)
            if sid:
                ids.append(sid)
        return sorted(ids)

    def load_manifest(self, snapshot_id: str) -> dict[str, Any]:
        key = mf.manifest_key(snapshot_id)
        if not self.store.exists(key):
            raise RepositoryError(f"snapshot {snapshot_id} is not in {self.url}: list snapshots with "
                                  "lifeboat.docker.snapshot_info")
        return mf.decode_manifest(self.store.read_bytes(key), key)

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
        """A manifest by id, or 'latest' (newest with that unit, of that host if given)."""
        if wanted != "latest":
            if not mf.is_snapshot_id(wanted):
                raise RepositoryError(f"snapshot {wanted!r} is neither 'latest' nor a snapshot id "
                                      "(YYYYMMDDTHHMMSSZ-HOST-XXXXXX)")
            return self.load_manifest(wanted)
        good, _bad = self.manifests()
        chosen = mf.select(good, host=host, unit=unit, newest=1)
        if not chosen:
            what = " with unit " + unit if unit else ""
            whose = f" of host {host}" if host else ""
            raise RepositoryError(f"{self.url} has no snapshot{what}{whose}")
        return chosen[0]

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.store.write_bytes(mf.manifest_key(manifest["id"]), mf.encode_manifest(manifest))

    def cleanup(self) -> list[str]:
        return self.store.cleanup_stale()
