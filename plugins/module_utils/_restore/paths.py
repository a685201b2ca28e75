# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""One file back: selected paths of a unit restored into a directory that holds nothing live.

1. The unit's index is read (streaming) for the entries the paths name, and the directories that
   hold them; a path that names nothing stops the restore before anything is written.
2. What exists in the target already, in the way of an entry, stops the restore unless forced.
3. GNU tar extracts exactly those members (with owners, modes, xattrs and ACLs) from the unit's
   data object into a staging directory inside the target, through the same checker as a whole
   restore (no absolute names, no '..', no writes through symlinks); the object's sha256 is
   checked on the way.
4. The staged entries are compared with the index (kind, size, mode, owner, mtime, link).
5. Only then are they moved into place: what did not exist is renamed in; an existing entry in
   the way (only with force) is first renamed aside (NAME.pre-restore-TIME), never deleted.
No container is stopped: the target is not live data.

Pure: `target_refusal`, `default_target`, `unit_dir_name`, `entry_problems`, `conflict`.
Effects: `select_members` (index -> member list and expected entries, in temporary files),
`PathRestore` (extraction, verification, placement).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import tempfile
import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import extract
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.browse import (
    Selector,
    Smallest,
    entry_dict,
    index_lines,
    parse_line,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import STAGING_PREFIX, Journal
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.files import RestoreError, stamp
from ansible_collections.lifeboat.docker.plugins.module_utils._common.safety import SYSTEM_TREES, restore_refusal, within
from ansible_collections.lifeboat.docker.plugins.module_utils._common.files import fsync_dir

KIND_OF = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFIFO: "p", stat.S_IFCHR: "c",
           stat.S_IFBLK: "b"}
MAX_LISTED = 20


# -- decisions (pure) -------------------------------------------------------------------------------
def unit_dir_name(unit_id: str) -> str:
    """A unit id as one directory name: volume:app_data -> volume_app_data, path:/srv/x -> path_srv_x."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", unit_id).strip("_") or "unit"


def default_target(restored_root: str, snapshot_id: str, unit_id: str) -> str:
    return os.path.join(restored_root, snapshot_id, unit_dir_name(unit_id))


def target_refusal(target: str, restored_root: str, *, docker_root: str | None = None,
                   repository: str | None = None, own_dirs: list[str] | None = None) -> str | None:
    """Why selected paths may not be restored into TARGET (absolute, resolved), or None: the rules
    of a whole restore, and nothing inside a system tree (/etc, /usr, /var/lib, ...) except
    lifeboat's own directory for restored files (RESTORED_ROOT)."""
    why = restore_refusal(target, docker_root=docker_root, repository=repository, own_dirs=own_dirs)
    if why:
        return why
    if within(target, restored_root):
        return None
    for tree in SYSTEM_TREES:
        if within(target, tree):
            return (f"{target} is inside the system tree {tree}: restored files go into a directory of their own; "
                    f"leave target_path out (they go below {restored_root}) or give one such as /srv/restore")
    return None


def entry_problems(want: list[Any], st: os.stat_result | None, link: str | None) -> list[str]:
    """How a restored entry (lstat ST, symlink target LINK) differs from its index entry WANT.
    A directory's modification time is not compared (it changes as entries are added)."""
    path = want[0]
    if st is None:
        return [f"{path!r} is missing"]
    kind = KIND_OF.get(stat.S_IFMT(st.st_mode), "s")
    have = [path, kind, st.st_size if kind == "f" else 0, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
            int(st.st_mtime), link]
    names = {1: "kind", 2: "size", 3: "mode", 4: "uid", 5: "gid", 6: "mtime", 7: "link target"}
    out = []
    for i, name in names.items():
        if i == 6 and want[1] == "d":
            continue
        if want[i] != have[i]:
            shown = (f"{have[i]:04o}", f"{want[i]:04o}") if i == 3 else (have[i], want[i])
            out.append(f"{path!r}: {name} {shown[0]!r}, expected {shown[1]!r}")
    return out


def conflict(kind: str, existing: os.stat_result | None) -> bool:
    """Whether an entry of KIND is in the way of something existing (lstat EXISTING): anything
    is, except a real directory where the snapshot has a directory (they are merged)."""
    if existing is None:
        return False
    return not (kind == "d" and stat.S_ISDIR(existing.st_mode))


# -- the selection (effects: reads the index, writes temporary files) --------------------------------
class Selection:
    """The members to extract (NUL-separated ./PATH, for tar) and their index entries (JSON
    lines), in temporary files; counts and a first page of the entries for the result."""

    def __init__(self, workdir: str) -> None:
        self.members_path = os.path.join(workdir, "members")
        self.expected_path = os.path.join(workdir, "expected")
        self.count = 0
        self.files = 0
        self.bytes = 0
        self.unmatched: list[str] = []
        self.listing = Smallest(1000)

    def expected(self):
        with open(self.expected_path, "rb") as fh:
            for line in fh:
                yield parse_line(line.rstrip(b"\n"))


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def select_members(repo, unit: dict[str, Any], patterns: list[str], workdir: str) -> Selection:
    """The index entries PATTERNS name and the directories that hold them (read twice when
    such directories are needed: their entries come before the ones they hold)."""
    selector = Selector(patterns)
    sel = Selection(workdir)
    needed: set[str] = set()
    with open(sel.members_path, "wb") as members, open(sel.expected_path, "wb") as expected:
        def take(line: bytes, item: list[Any]) -> None:
            members.write(b"./" + item[0].encode("utf-8", "surrogateescape") + b"\0")
            expected.write(line + b"\n")
            sel.count += 1
            if item[1] == "f":
                sel.files += 1
                sel.bytes += item[2]
            sel.listing.add(item[0], item)

        for line in index_lines(repo, unit):
            if not line:
                continue
            item = parse_line(line)
            if item[0] == "." or not selector.match(item[0]):
                continue  # the root is the target itself
            take(line, item)
            for parent in _parents(item[0]):
                if parent not in needed and not selector.match(parent):
                    needed.add(parent)
        sel.unmatched = selector.unmatched()
        if sel.unmatched:
            return sel
        if needed:
            for line in index_lines(repo, unit):
                item = parse_line(line) if line else None
                if item and item[0] in needed:
                    take(line, item)
                    needed.discard(item[0])
    if needed:
        raise RestoreError(f"the index of {unit['id']} has no entries for the directories {sorted(needed)[:5]}: it is "
                           "damaged; restore from another snapshot")
    return sel


# -- the restore (effects) ---------------------------------------------------------------------------
def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _in_the_way(sel: Selection, target: str) -> tuple[list[str], int]:
    found: list[str] = []
    count = 0
    for item in sel.expected():
        if conflict(item[1], _lstat(os.path.join(target, item[0]))):
            count += 1
            if len(found) < MAX_LISTED:
                found.append(os.path.join(target, item[0]))
    return found, count


def _verify(sel: Selection, staging: str) -> list[str]:
    problems: list[str] = []
    for item in sel.expected():
        path = os.path.join(staging, item[0])
        st = _lstat(path)
        link = os.readlink(path) if st is not None and stat.S_ISLNK(st.st_mode) else None
        problems += entry_problems(item, st, link)
        if len(problems) >= MAX_LISTED:
            problems.append("... (more differences not listed)")
            break
    return problems


def _place(staging: str, target: str, force: bool) -> list[str]:
    """Move the staged tree into TARGET: rename what is not there, merge directories into
    existing ones, and (with force) rename what is in the way aside first. Returns the asides."""
    asides: list[str] = []
    when = stamp()
    stack = [""]
    while stack:
        rel = stack.pop()
        src_dir = os.path.join(staging, rel)
        for name in sorted(os.listdir(src_dir)):
            src, dst = os.path.join(src_dir, name), os.path.join(target, rel, name)
            there = _lstat(dst)
            if there is None:
                os.rename(src, dst)
                continue
            if stat.S_ISDIR(there.st_mode) and stat.S_ISDIR(os.lstat(src).st_mode):
                stack.append(os.path.join(rel, name))
                continue
            if not force:
                raise RestoreError(f"{dst} appeared while restoring: set force: true to keep it aside and restore over "
                                   f"it (restored so far: {len(asides)} entries kept aside, the rest placed)")
            aside = f"{dst}.pre-restore-{when}"
            os.rename(dst, aside)
            asides.append(aside)
            os.rename(src, dst)
        fsync_dir(os.path.join(target, rel) if rel else target)
    return asides


class PathRestore:
    def __init__(self, repo, unit: dict[str, Any], manifest: dict[str, Any]) -> None:
        self.repo = repo
        self.unit = unit
        self.manifest = manifest

    def select(self, patterns: list[str], workdir: str) -> Selection:
        sel = select_members(self.repo, self.unit, patterns, workdir)
        if sel.unmatched:
            raise RestoreError(
                f"nothing in {self.unit['id']} of snapshot {self.manifest['id']} matches "
                f"{', '.join(repr(p) for p in sel.unmatched)}: see what it holds with "
                f"bash scripts/lifeboat.sh ls {self.manifest['id']} {self.unit['id']} (or lifeboat.docker.snapshot_files)")
        if not sel.count:
            raise RestoreError(f"the paths given name only the root of {self.unit['id']}, which is the target itself: "
                               "name what is in it ('.' restores everything)")
        return sel

    def check_target(self, sel: Selection, target: str, force: bool) -> list[str]:
        """What is in the way in TARGET (paths; refused without force)."""
        found, count = _in_the_way(sel, target)
        if found and not force:
            more = f" and {count - len(found)} more" if count > len(found) else ""
            raise RestoreError(f"{', '.join(found)}{more} already exist(s): set force: true to restore over them (what "
                               "is there is kept aside as NAME.pre-restore-TIME, not deleted), or restore into another "
                               "directory with target_path")
        return found

    def run(self, sel: Selection, target: str, force: bool, verify: bool, allow_devices: bool) -> dict[str, Any]:
        started = time.monotonic()
        obj = self.unit["object"]
        if not self.repo.has_object(obj["sha256"]):
            raise RestoreError(f"object {obj['sha256']} of {self.unit['id']} is missing from the repository")
        os.makedirs(target, mode=0o700, exist_ok=True)
        staging = os.path.join(target, f"{STAGING_PREFIX}{secrets.token_hex(4)}")
        journal = Journal(f"restore paths of {self.unit['id']} from {self.manifest['id']}")
        try:
            with journal.staged(staging):
                os.mkdir(staging, 0o700)
                with self.repo.open_object(obj) as reader:
                    info = extract(reader, staging, mf.content_sha(obj), allow_devices=allow_devices,
                                   xattrs=obj.get("xattrs", True), members_file=sel.members_path)
                if verify:
                    problems = _verify(sel, staging)
                    if problems:
                        raise RestoreError(f"the extracted paths of {self.unit['id']} differ from the index: "
                                           f"{'; '.join(problems)} (nothing was placed in {target})")
                previous = _place(staging, target, force)
        finally:
            journal.close()
        return dict(selection_summary(sel), target=target, previous=previous, verified=verify, members=info["members"],
                    seconds=round(time.monotonic() - started, 3))


def workdir() -> str:
    """A private temporary directory for the selection's files."""
    return tempfile.mkdtemp(prefix="lifeboat-paths-")


def selection_summary(sel: Selection) -> dict[str, Any]:
    return {"restored": sel.count, "files": sel.files, "bytes": sel.bytes,
            "entries": [entry_dict(item) for item in sel.listing.items()], "entries_truncated": sel.listing.truncated}
