# Prints what playbooks/browse.yml found, for a person at a terminal (scripts/lifeboat.sh ls, diff,
# restore-file): reads ansible-playbook's JSON output (the ansible.posix.json callback) on stdin,
# writes tables like `ls -l` and `diff` lines on stdout, failures on stderr (exit 1).
"""Formats the results of the browse playbook; the lines themselves come from _restore/browse.py."""

from __future__ import annotations

import json
import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, ".venv", "collections"))

from ansible_collections.lifeboat.docker.plugins.module_utils._restore.browse import diff_line, ls_line  # noqa: E402


def size_text(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def show_ls(host: str, res: dict) -> None:
    shown = len(res["entries"])
    print(f"{host}: {res['unit']} in snapshot {res['snapshot_id']}: {res['matched']} entries, "
          f"{size_text(res['matched_bytes'])} in files" + (f" (the first {shown} by path shown)" if res["truncated"] else ""))
    for entry in res["entries"]:
        print(ls_line(entry))
    if res.get("unmatched"):
        print(f"nothing matched: {', '.join(res['unmatched'])}")


def show_diff(host: str, res: dict) -> None:
    counts = res["counts"]
    print(f"{host}: {res['unit']} from {res['base_id']} to {res['snapshot_id']}: {counts['added']} added, "
          f"{counts['removed']} removed, {counts['changed']} changed" + (" (lists cut short)" if res["truncated"] else ""))
    lines = [(e["path"], kind, e) for kind in ("removed", "added", "changed") for e in res[kind]]
    for _path, kind, entry in sorted(lines, key=lambda x: x[0]):
        print(diff_line(kind, entry))


def show_restore(host: str, res: dict) -> None:
    check = " (verified against the index)" if res.get("verified") else ""
    print(f"{host}: restored {res['restored']} entries ({res['files']} files, {size_text(res['bytes'])}) of "
          f"{res['unit']} from {res['snapshot_id']} into {res['target']}{check}:")
    for entry in res["entries"]:
        print(ls_line(entry))
    if res.get("entries_truncated"):
        print("... (more entries restored than listed)")
    for aside in res.get("kept_aside") or []:
        print(f"kept aside (was in the way): {aside}")


SHOW = {"ls": show_ls, "diff": show_diff, "restore-file": show_restore}


def main() -> int:
    text = sys.stdin.read()
    try:
        doc = json.loads(text)
    except ValueError:
        sys.stderr.write(text)
        sys.stderr.write("\nansible-playbook gave no JSON result (see above)\n")
        return 1
    failed = 0
    for play in doc.get("plays", []):
        for task in play.get("tasks", []):
            name = task["task"]["name"]
            job = name.rsplit("(", 1)[-1].rstrip(")")  # the playbook's tasks end in (ls), (diff), (restore-file)
            for host, res in task.get("hosts", {}).items():
                if res.get("failed") or res.get("unreachable"):
                    failed += 1
                    print(f"{host}: {name} failed: {res.get('msg')}", file=sys.stderr)
                elif not res.get("skipped") and job in SHOW:
                    SHOW[job](host, res)
    stats = doc.get("stats", {})
    if not failed and any(s.get("failures") or s.get("unreachable") for s in stats.values()):
        failed = 1
        print("the playbook failed (see ansible-playbook's output above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
