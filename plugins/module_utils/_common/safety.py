# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Which host paths lifeboat may replace, capture or keep a repository in.

Paths are compared by their components after resolving them (symbolic links, "..", a trailing
"/"), never as string prefixes: /devdata is not under /dev, and /usr/../etc is /etc.

Pure: `resolve_lexically`, `within`, `restore_refusal`, `capture_refusal`, `repository_refusal`
and `nested_excludes` decide from the paths they are given. Effects (reading the filesystem):
`resolved` (os.path.realpath) and `fs_type` (/proc/self/mountinfo).
"""

from __future__ import annotations

import os
import posixpath

# Trees that a restore never replaces (nor anything that holds them), whatever force says.
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot",
                "/var/lib", "/var/lib/docker", "/proc", "/sys", "/dev", "/run")
# Pseudo and in-memory filesystems of the kernel: nothing in them is data, nothing is restored into them.
PSEUDO_TREES = ("/proc", "/sys", "/dev", "/run")
PSEUDO_FS_TYPES = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore",
    "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs", "binfmt_misc", "efivarfs", "nsfs", "rpc_pipefs",
})


def resolve_lexically(path: str) -> str:
    """An absolute path with '.', '..' and repeated or trailing slashes folded (no filesystem access)."""
    out = posixpath.normpath(path)
    # POSIX keeps a leading '//' as is; for our purposes it is '/'.
    return "/" + out.lstrip("/")


def resolved(path: str) -> str:
    """The path as the kernel would reach it: symbolic links followed as far as they exist."""
    return resolve_lexically(os.path.realpath(path))


def within(path: str, tree: str) -> bool:
    """Whether PATH is TREE or below it, by whole components."""
    if tree == "/":
        return True
    return path == tree or path.startswith(tree + "/")


def fs_type(path: str) -> str | None:
    """The type of the filesystem PATH lies on (longest mount point that holds it), from
    /proc/self/mountinfo; None when it cannot be read."""
    best, best_type = "", None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _sep, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount_point = fields[4].replace("\\040", " ")
        if within(path, mount_point) and len(mount_point) >= len(best):
            best, best_type = mount_point, right.split()[0]
    return best_type


# Trees whose files belong to the system: a file unit is never restored into them (a bind-mounted
# /etc/passwd is captured, but not put back over the host's own).
SYSTEM_FILE_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/proc", "/sys",
                     "/dev", "/run", "/var/lib/docker")


def restore_refusal(target: str, *, docker_root: str | None = None, repository: str | None = None,
                    own_dirs: list[str] | None = None, file: bool = False) -> str | None:
    """Why a restore may not replace TARGET (a resolved absolute path), or None.

    Refused: the root; a system tree or anything that holds one; anything in a pseudo filesystem
    tree; anything in the engine's data root (restore into a volume instead); the repository,
    anything holding it or in it; lifeboat's own state (OWN_DIRS: its journal and locks) and what
    holds it. FILE: TARGET is a file
    unit's file, refused in the system's file trees and directly in /etc or /."""
    elsewhere = ("restore into a new directory instead (target_path: /srv/restore/NAME) and copy what you need "
                 "from there")
    if file:
        parent = posixpath.dirname(target)
        if parent in ("/", "/etc") or any(within(target, tree) for tree in SYSTEM_FILE_TREES):
            return f"{target} is a file of the system, which a restore never replaces; {elsewhere}"
        return None
    if target == "/":
        return f"{target} is the root of the host's filesystem; {elsewhere}"
    roots = list(SYSTEM_TREES)
    if docker_root:
        roots.append(docker_root)
    for tree in roots:
        if within(tree, target):
            what = "is" if tree == target else "holds"
            return f"{target} {what} the system tree {tree}, which a restore never replaces; {elsewhere}"
    for tree in PSEUDO_TREES:
        if within(target, tree):
            return f"{target} is in {tree}, a kernel filesystem that holds no data; {elsewhere}"
    for tree in [t for t in (docker_root, "/var/lib/docker") if t]:
        if within(target, tree):
            return (f"{target} is inside the Docker engine's data root {tree}; restore into a volume with "
                    "target_volume, or into a new directory with target_path")
    if repository and (within(repository, target) or within(target, repository)):
        return (f"{target} {'holds' if within(repository, target) and repository != target else 'is in'} the "
                f"repository {repository}, which a restore never replaces; {elsewhere}")
    for own in own_dirs or []:
        if within(own, target) or within(target, own):
            return f"{target} holds or is in lifeboat's own state ({own}); {elsewhere}"
    return None


def capture_refusal(path: str, kind: str | None) -> str | None:
    """Why a host path may not be captured at all (PATH resolved; KIND its filesystem type)."""
    if path == "/":
        return ("'/' is the whole host: capture the directories that hold data (e.g. /srv/data, /etc/myapp), "
                "not the root")
    for tree in PSEUDO_TREES:
        if within(path, tree):
            return f"{path} is in {tree}, a kernel filesystem that holds no data: capture the directories that hold data"
    if kind in PSEUDO_FS_TYPES:
        return f"{path} is on a {kind} filesystem, which the kernel makes up and holds no data: capture real directories"
    return None


def nested_excludes(root: str, inside: dict[str, str]) -> list[tuple[str, str]]:
    """(path relative to ROOT, why) for each path of INSIDE ({path: what it is}) that lies below
    the captured directory ROOT: what a capture of ROOT must leave out (its repository, lifeboat's
    state). Paths are resolved and absolute."""
    out = []
    for path, what in sorted(inside.items()):
        if path and path != root and within(path, root):
            out.append((posixpath.relpath(path, root), what))
    return out


def covers(root: str, inside: dict[str, str]) -> list[str]:
    """What of INSIDE ({path: what it is}) is ROOT itself or holds ROOT: a capture of ROOT would be
    nothing but lifeboat's own files."""
    return [what for path, what in sorted(inside.items()) if path and within(root, path)]


def repository_refusal(path: str, kind: str | None) -> str | None:
    """Why a local repository may not live at PATH (resolved), or None."""
    for tree in PSEUDO_TREES:
        if within(path, tree):
            return (f"repository path {path} is in {tree}, a kernel filesystem that changes from process to "
                    "process and holds no data: give a real directory such as /var/backups/lifeboat")
    if kind in PSEUDO_FS_TYPES:
        return (f"repository path {path} is on a {kind} filesystem, which holds no data: give a real directory "
                "such as /var/backups/lifeboat")
    return None
