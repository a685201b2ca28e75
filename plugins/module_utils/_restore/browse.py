# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Browsing a unit's index: listing its entries, comparing two snapshots of it.

An index (docs/repository-format.md) holds one JSON array per entry,
[path, kind, size, mode, uid, gid, mtime_seconds, link_target], in the order walk() wrote them.

Pure: `normalise_pattern`, `Selector` (which entries a path, directory or glob names),
`walk_key` (walk()'s order as a sort key), `diff_indexes` (the difference of two index streams,
merged in one pass, constant memory), `Smallest` (the first N items by path, O(N) memory),
`entry_dict`, `mode_text`, `ls_line`, `diff_line` (what a person reads). Effects: `index_lines`
(an index object read as lines, streaming through zstd, decrypted when needed) and
`browse_unit` / `previous_snapshot` (which unit and which snapshots, read from the repository).
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import heapq
import stat
from typing import Any, Iterable, Iterator

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import _parse_line as parse_line

FIELDS = ("kind", "size", "mode", "uid", "gid", "mtime", "link_target")
KIND_BITS = {"f": stat.S_IFREG, "d": stat.S_IFDIR, "l": stat.S_IFLNK, "p": stat.S_IFIFO, "c": stat.S_IFCHR,
             "b": stat.S_IFBLK}
GLOB_CHARS = frozenset("*?[")


class BrowseError(Exception):
    """A listing or comparison cannot be made as asked; the message says why and what to do."""


# -- which entries a path names (pure) ------------------------------------------------------------
def normalise_pattern(text: str) -> str:
    """A path or glob relative to the unit's root ('./a/b/' -> 'a/b'; '' or '.' -> '.').

    Absolute paths and '..' components are refused: members live below the unit's root."""
    if not isinstance(text, str):
        raise BrowseError(f"path {text!r} is not a string")
    if text.startswith("/"):
        raise BrowseError(f"path {text!r} is absolute: give paths relative to the unit's root, as the listing shows "
                          "them (e.g. 'app/config.yml', 'logs/*.log')")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BrowseError(f"path {text!r} has a '..' component: give paths inside the unit, as the listing shows them")
    return "/".join(parts) or "."


class Selector:
    """Which index entries PATTERNS name: an entry is selected when its path or one of its parent
    directories is a pattern (a directory names everything below it) or matches a glob (shell
    wildcards as GNU tar's: '*' also matches '/'). No pattern: everything. Remembers which
    patterns matched something (unmatched())."""

    def __init__(self, patterns: Iterable[str] | None = None) -> None:
        self.patterns = list(dict.fromkeys(normalise_pattern(p) for p in (patterns or [])))
        self.everything = not self.patterns or "." in self.patterns
        self._literal = [p for p in self.patterns if not GLOB_CHARS & set(p)]
        self._globs = [p for p in self.patterns if GLOB_CHARS & set(p)]
        self._hit: set[str] = set()

    def match(self, path: str) -> bool:
        if self.everything:
            self._hit.add(".")
            return True
        found = False
        for pat in self._literal:
            if path == pat or path.startswith(pat + "/"):
                self._hit.add(pat)
                found = True
        if self._globs:
            parts = path.split("/")
            heads = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            for pat in self._globs:
                if any(fnmatch.fnmatchcase(head, pat) for head in heads):
                    self._hit.add(pat)
                    found = True
        return found

    def unmatched(self) -> list[str]:
        if self.everything:
            return []
        return [p for p in self.patterns if p not in self._hit]


# -- the order of an index (pure) -----------------------------------------------------------------
class _Desc(str):
    """A path component compared the other way round (walk() goes into the last directory first)."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:  # type: ignore[override]
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:  # type: ignore[override]
        return str.__lt__(self, other)

    def __le__(self, other: str) -> bool:  # type: ignore[override]
        return str.__ge__(self, other)

    def __ge__(self, other: str) -> bool:  # type: ignore[override]
        return str.__le__(self, other)


def walk_key(path: str) -> tuple:
    """A sort key giving walk()'s order: the root first; a directory's entries together, by name,
    right after the entries of the directory that holds it; the directories below it in reverse
    order of their names (walk() keeps a stack), each before its younger siblings' content."""
    if path == ".":
        return ((-1, ""),)
    parts = path.split("/")
    return tuple((1, _Desc(p)) for p in parts[:-1]) + ((0, parts[-1]),)


class _Side:
    """One index read line by line; an entry is parsed only when it differs from the other side."""

    def __init__(self, lines: Iterable[bytes], what: str) -> None:
        self._lines = (line.rstrip(b"\n") for line in lines)
        self.what = what
        self.line: bytes | None = None
        self._item: list[Any] | None = None
        self._key: tuple | None = None
        self._last: tuple | None = None
        self.advance()

    def advance(self) -> None:
        self.line = next(self._lines, None)
        while self.line == b"":
            self.line = next(self._lines, None)
        self._item = self._key = None

    def _parse(self) -> tuple[list[Any], tuple]:
        if self._item is None:
            self._item = parse_line(self.line)  # type: ignore[arg-type]
            key = walk_key(self._item[0])
            if self._last is not None and self._last >= key:
                raise BrowseError(f"the index of {self.what} is not in the order lifeboat writes "
                                  f"({self._item[0]!r} comes after an entry it should precede): it was not written "
                                  "by lifeboat or is damaged")
            self._last = self._key = key
        return self._item, self._key  # type: ignore[return-value]

    @property
    def item(self) -> list[Any]:
        return self._parse()[0]

    @property
    def key(self) -> tuple:
        return self._parse()[1]


def changed_fields(old: list[Any], new: list[Any]) -> dict[str, list[Any]]:
    """The fields that differ between two entries of the same path, as [old, new]."""
    out = {}
    for i, name in enumerate(FIELDS, start=1):
        if old[i] != new[i]:
            out[name] = [mode_text(old[i]), mode_text(new[i])] if name == "mode" else [old[i], new[i]]
    return out


def diff_indexes(old: Iterable[bytes], new: Iterable[bytes], selector: Selector | None = None,
                 names: tuple[str, str] = ("the older snapshot", "the newer snapshot")) -> Iterator[tuple[str, Any]]:
    """('added', entry) / ('removed', entry) / ('changed', (old entry, new entry, fields)) for the
    selected paths of two indexes, merged in walk() order in one pass: memory stays flat whatever
    the number of entries. Equal lines (most of them, usually) are not parsed at all."""
    a, b = _Side(old, names[0]), _Side(new, names[1])
    wanted = (lambda item: True) if selector is None or selector.everything else (lambda item: selector.match(item[0]))
    while a.line is not None or b.line is not None:
        if a.line is not None and a.line == b.line:
            a.advance()
            b.advance()
        elif b.line is None or (a.line is not None and a.key < b.key):
            if wanted(a.item):
                yield "removed", a.item
            a.advance()
        elif a.line is None or b.key < a.key:
            if wanted(b.item):
                yield "added", b.item
            b.advance()
        else:
            fields = changed_fields(a.item, b.item)
            if fields and wanted(b.item):
                yield "changed", (a.item, b.item, fields)
            a.advance()
            b.advance()


class Smallest:
    """The first LIMIT items by path of what is added (all of them with LIMIT 0), in O(LIMIT)
    memory, and how many were added in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._items: list[tuple[str, int, Any]] = []

    def add(self, path: str, item: Any) -> None:
        self.count += 1
        self._items.append((path, self.count, item))
        if self.limit and len(self._items) >= 2 * self.limit:
            self._items = heapq.nsmallest(self.limit, self._items)

    def items(self) -> list[Any]:
        kept = sorted(self._items)
        if self.limit:
            kept = kept[:self.limit]
        return [item for _path, _n, item in kept]

    @property
    def truncated(self) -> bool:
        return bool(self.limit) and self.count > self.limit


# -- what a person reads (pure) -------------------------------------------------------------------
def mode_text(mode: int) -> str:
    return f"{mode:04o}"


def entry_dict(item: list[Any]) -> dict[str, Any]:
    path, kind, size, mode, uid, gid, mtime, link = item
    return {"path": path, "kind": kind, "size": size, "mode": mode_text(mode), "uid": uid, "gid": gid,
            "mtime": mtime, "link_target": link}


def _time_text(seconds: int, exact: bool = False) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S" if exact else "%Y-%m-%d %H:%M")


def _escaped(path: str) -> str:
    """A path fit for one line of a terminal: control characters and undecodable bytes escaped."""
    if path.isprintable():
        return path
    out = []
    for ch in path:
        if ch.isprintable():
            out.append(ch)
        elif 0xdc80 <= ord(ch) <= 0xdcff:  # a byte that was not UTF-8 (surrogate escape)
            out.append(f"\\x{ord(ch) - 0xdc00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def ls_line(entry: dict[str, Any]) -> str:
    """One line as `ls -l --numeric-uid-gid` writes it (times in UTC)."""
    bits = KIND_BITS.get(entry["kind"], 0) | int(entry["mode"], 8)
    link = f" -> {_escaped(entry['link_target'])}" if entry.get("link_target") is not None else ""
    return (f"{stat.filemode(bits)} {entry['uid']:>5} {entry['gid']:>5} {entry['size']:>12} "
            f"{_time_text(entry['mtime'])} {_escaped(entry['path'])}{link}")


def diff_line(change: str, entry: dict[str, Any]) -> str:
    """'+ path', '- path', or 'M path  (size 10 -> 12, mode 0644 -> 0600)'."""
    if change == "changed":
        fields = sorted(entry["changes"].items(), key=lambda kv: kv[0] == "mtime")  # the time last
        what = ", ".join(f"{name} {_time_text(old, True) if name == 'mtime' else old} -> "
                         f"{_time_text(new, True) if name == 'mtime' else new}" for name, (old, new) in fields)
        return f"M {_escaped(entry['path'])}  ({what})"
    return f"{'+' if change == 'added' else '-'} {_escaped(entry['path'])}"


# -- reading from a repository (effects) ----------------------------------------------------------
def browse_unit(manifest: dict[str, Any], wanted: str) -> dict[str, Any]:
    """The unit of a manifest that WANTED names, if it has a file index to browse."""
    try:
        unit = mf.find_unit(manifest, wanted)
    except mf.FormatError as exc:
        raise BrowseError(str(exc)) from exc
    if unit.get("kind") == "database":
        raise BrowseError(f"{unit['id']} is a database dump, not a tree of files: it has no file index to list; "
                          "restore it whole with lifeboat.docker.snapshot_restore")
    if not unit.get("object") or not unit.get("index"):
        raise BrowseError(f"unit {unit['id']} of snapshot {manifest['id']} holds no captured data (strategy "
                          f"{unit.get('strategy')}): there is nothing to list; pick another snapshot")
    return unit


def index_lines(repo, unit: dict[str, Any]) -> Iterator[bytes]:
    """The unit's index as lines, streamed (decrypted, decompressed, its sha256 checked at the
    end: a damaged index raises after its last line, before any result is given)."""
    from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import DumpError, object_chunks

    rest = b""
    try:
        for chunk in object_chunks(repo, unit["index"]):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield from lines
    except DumpError as exc:
        raise BrowseError(f"the index of {unit['id']}: {exc}") from exc
    if rest:
        yield rest


def previous_snapshot(repo, manifest: dict[str, Any], unit_id: str) -> dict[str, Any]:
    """The newest snapshot older than MANIFEST, of the same host, that holds the unit's data."""
    when = mf.parse_iso(manifest["time"])
    good, _bad = repo.manifests()
    found = mf.pick_latest(good, host=manifest.get("host"), unit=unit_id,
                           where=lambda m: (mf.parse_iso(m["time"]), m["id"]) < (when, manifest["id"]))
    if found is None:
        raise BrowseError(f"snapshot {manifest['id']} is the oldest of host {manifest.get('host')} holding {unit_id}: "
                          "there is nothing before it to compare with; name the other snapshot with base")
    return repo.load_manifest(found["id"], full=True) if found.get("encryption") else found
