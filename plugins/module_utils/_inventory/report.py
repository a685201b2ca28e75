# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""The storage-concept document: Markdown rendered from a data_inventory result.

render() is pure: the same inventory gives the same bytes (stable order, no timestamps, no
container ids), so a second run changes nothing and a diff shows real drift. write_atomic()
puts the file in place without a window where it is half written.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._common import files
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.plan import (
    ENGINE_TITLES,
    STRATEGIES,
    size_class,
)

STRATEGY_MEANING = {
    "dump": "the database dumps itself while it runs",
    "stop": "the containers are stopped, the files copied, the containers started again",
    "pause": "the containers are paused (frozen) while the files are copied",
    "live": "the files are copied as they are: nothing writes to them",
    "skip": "not captured",
}


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or "-"


def _code(value: str) -> str:
    return f"`{value}`" if "`" not in value else value


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for dummy in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines


def _uses(users: list[dict[str, Any]]) -> str:
    if not users:
        return "nobody"
    return "; ".join(f"{u['container']}: {u['destination']} ({'rw' if u['rw'] else 'ro'})"
                     for u in users)


def _sqlite_method(unit: dict[str, Any]) -> str:
    strategy = unit["strategy"]
    if strategy == "live":
        return ("online backup (SQLite's backup API, checked with PRAGMA integrity_check) while "
                "its application runs")
    if strategy in ("stop", "pause"):
        who = ", ".join(unit.get("containers") or []) or "its writers"
        return f"file copy with {who} {'stopped' if strategy == 'stop' else 'paused'}"
    return "not captured (" + strategy + ")"


DIAGRAM_EDGE_LIMIT = 120


def _mermaid_text(text: str) -> str:
    return str(text).replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def diagram(inventory: dict[str, Any]) -> list[str]:
    """A Mermaid flowchart (GitHub and GitLab draw it) of containers, the volumes and host paths
    they mount (read-write or read-only, at which path) and the unit each is captured by, with
    its strategy; databases dumped from a container point at their dump unit. At most
    DIAGRAM_EDGE_LIMIT mounts are drawn (the tables above hold them all). Pure."""
    units = {u["id"]: u for u in inventory.get("units") or []}
    lines = ["```mermaid", "flowchart LR"]
    ids: dict[str, str] = {}

    def node(key: str, shape: str) -> str:
        # A node's id comes from what it stands for, not from its rank: a container or volume
        # added elsewhere on the host does not renumber (and so rewrite) the lines of the others.
        if key not in ids:
            digest = hashlib.sha256(key.encode()).hexdigest()
            size = 8
            while f"n{digest[:size]}" in ids.values():
                size += 1
            ids[key] = f"n{digest[:size]}"
            lines.append(f"  {ids[key]}{shape}")
        return ids[key]

    edges = 0
    stores = [("volume", v["name"], v.get("used_by") or []) for v in inventory.get("volumes") or []] + \
             [("path", b["source"], b.get("used_by") or []) for b in inventory.get("binds") or []
              if b.get("kind") == "data"]
    skipped = 0
    for kind, name, users in stores:
        unit = units.get(f"{kind}:{name}")
        strategy = unit["strategy"] if unit else "not planned"
        label = _mermaid_text(f"{'volume' if kind == 'volume' else 'path'} {name}")
        target = node(f"{kind}:{name}", f'[("{label}<br/>{strategy}")]')
        if strategy == "skip":
            lines.append(f"  class {target} skipped")
        for use in users:
            if edges >= DIAGRAM_EDGE_LIMIT:
                skipped += 1
                continue
            source = node(f"container:{use['container']}", f'(["{_mermaid_text(use["container"])}"])')
            lines.append(f"  {source} -- \"{'rw' if use.get('rw') else 'ro'} {_mermaid_text(use['destination'])}\" "
                         f"--> {target}")
            edges += 1
    for unit in units.values():
        if unit["kind"] == "database" and unit.get("container"):
            source = node(f"container:{unit['container']}", f'(["{_mermaid_text(unit["container"])}"])')
            target = node(unit["id"], f'[/"{_mermaid_text(unit["id"])}<br/>{unit["strategy"]}"/]')
            lines.append(f"  {source} -- dump --> {target}")
    lines.append("  classDef skipped stroke-dasharray: 5 5")
    lines.append("```")
    if skipped:
        lines.append("")
        lines.append(f"{skipped} more mounts are not drawn (the tables list every one).")
    return lines


def render(inventory: dict[str, Any], host: str = "", policy_given: bool = False) -> str:
    """The storage-concept Markdown for INVENTORY (a data_inventory result): a title, then one
    section after the other."""
    parts = _Parts(inventory, policy_given)
    out: list[str] = []
    out.append(f"# Storage concept of {host}" if host else "# Storage concept")
    out.append("")
    out.append("Written by `lifeboat.docker.data_inventory` from the live state of this Docker "
               "host. Do not edit it by hand: change the lifeboat policy or the `lifeboat.*` "
               "labels and run the inventory again. A diff of this file shows drift.")
    out.append("")
    for section in (_summary, _plan_section, _host_paths, _volumes, _containers, _confidential, _not_captured,
                    _undeclared, _findings):
        out.extend(section(parts))
    return "\n".join(out)


class _Parts:  # pylint: disable=too-few-public-methods
    """What the sections of the document read from the inventory."""

    def __init__(self, inventory: dict[str, Any], policy_given: bool) -> None:
        self.inventory = inventory
        self.policy_given = policy_given
        self.containers = inventory.get("containers") or []
        self.volumes = inventory.get("volumes") or []
        self.binds = inventory.get("binds") or []
        self.units = inventory.get("units") or []
        self.findings = inventory.get("findings") or []
        self.undeclared = inventory.get("undeclared") or []


def _summary(parts: _Parts) -> list[str]:
    containers = parts.containers
    volumes = parts.volumes
    binds = parts.binds
    units = parts.units
    findings = parts.findings
    undeclared = parts.undeclared
    policy_given = parts.policy_given
    out: list[str] = []
    running = sum(1 for c in containers if c.get("state") == "running")
    by_strategy = {s: sum(1 for u in units if u["strategy"] == s) for s in STRATEGIES}
    warnings = [f for f in findings if f.get("severity") == "warning"]
    out.append("## Summary")
    out.append("")
    out.append(f"- Containers: {len(containers)} ({running} running)")
    out.append(f"- Volumes: {len(volumes)} ({sum(1 for v in volumes if v.get('anonymous'))} "
               f"anonymous, {sum(1 for v in volumes if v.get('unused'))} unused)")
    kinds = {k: sum(1 for b in binds if b.get("kind") == k) for k in ("data", "socket", "system")}
    out.append(f"- Bind-mounted host paths: {len(binds)} ({kinds['data']} data, "
               f"{kinds['socket']} sockets, {kinds['system']} system)")
    out.append(f"- Backup units: {len(units)} ("
               + ", ".join(f"{by_strategy[s]} {s}" for s in STRATEGIES) + ")")
    out.append(f"- Confidential units: {sum(1 for u in units if u.get('confidential'))}")
    if policy_given:
        out.append(f"- Undeclared (holding data, not in the policy): {len(undeclared)}")
    else:
        out.append("- Undeclared: not checked (no policy given)")
    out.append(f"- Warnings: {len(warnings)}")
    out.append("")
    out.append("Sizes are order-of-magnitude classes, so that growing data does not change this "
               "document; the module's result has them in bytes.")
    out.append("")
    return out


def _plan_section(parts: _Parts) -> list[str]:
    out = ["## Backup plan", ""]
    out.append("What is captured, how and why. Strategies: "
               + "; ".join(f"**{s}**: {STRATEGY_MEANING[s]}" for s in STRATEGIES) + ".")
    out.append("")
    if parts.units:
        out.extend(_table(
            ["Unit", "Strategy", "Engine", "Quiesce (stop order)", "Order", "Confidential",
             "Declared", "Reason"],
            [[_code(u["id"]), u["strategy"],
              ENGINE_TITLES.get(u["engine"], u["engine"]) if u["engine"] != "none" else "-",
              ", ".join(u.get("containers") or []) or "-",
              "-" if u.get("order") is None else u["order"],
              "yes" if u.get("confidential") else "no",
              "yes" if u.get("declared") else "no", u.get("reason")] for u in parts.units]))
    else:
        out.append("Nothing to capture: this host has no volumes and no bind-mounted data.")
    out.append("")
    sqlite_rows = [[f"{_code(db)} in {u['kind'] if u['kind'] != 'path' else 'host path'} {_code(u['source'])}",
                    _code(u["id"]), _sqlite_method(u)]
                   for u in parts.units for db in u.get("sqlite") or []]
    if sqlite_rows:
        out.append("### SQLite databases")
        out.append("")
        out.extend(_table(["Database", "Unit", "Captured by"], sqlite_rows))
        out.append("")

    out.append("### Diagram")
    out.append("")
    out.append("Containers (rounded), the volumes and host paths they mount (cylinders: how each "
               "is captured; dashed: not captured) and database dumps (slanted).")
    out.append("")
    out.extend(diagram(parts.inventory))
    out.append("")
    return out


def _host_paths(parts: _Parts) -> list[str]:
    return _table_section(
        "Host paths", ["Path", "Kind", "Exists", "Size", "Confidential", "Used by"],
        [[_code(b["source"]), f"{b.get('kind')} (file)" if b.get("file_type") == "file" else b.get("kind"),
          {True: "yes", False: "no"}.get(b.get("exists"), "-"),
          size_class(b.get("size_bytes")) if b.get("kind") == "data" else "-",
          "yes" if b.get("confidential") else "no", _uses(b.get("used_by") or [])]
         for b in parts.binds],
        "No container bind-mounts a host path.")


def _volumes(parts: _Parts) -> list[str]:
    return _table_section(
        "Volumes", ["Volume", "Driver", "Anonymous", "Size", "Used by"],
        [[_code(v["name"]), v.get("driver"), "yes" if v.get("anonymous") else "no",
          size_class(v.get("size_bytes")), _uses(v.get("used_by") or [])] for v in parts.volumes],
        "No volumes.")


def _containers(parts: _Parts) -> list[str]:
    return _table_section(
        "Containers", ["Container", "Image", "State", "Restart", "Compose / swarm"],
        [[c["name"], (c.get("image") or {}).get("name"), c.get("state"), c.get("restart_policy"), _project(c)]
         for c in parts.containers],
        "No containers.")


def _confidential(parts: _Parts) -> list[str]:
    return _list_section(
        "Confidential data",
        "Certificates, keys and secrets: keep their backups encrypted and restrict who may restore them.",
        [f"{_code(unit['id'])}: {unit.get('confidential_reason') or 'marked confidential'}"
         for unit in parts.units if unit.get("confidential")],
        "Nothing found that looks like certificates, keys or secrets.")


def _not_captured(parts: _Parts) -> list[str]:
    out = ["## Not captured, and why", ""]
    lines = []
    for bind in parts.binds:
        if bind.get("kind") == "socket":
            lines.append(f"- {_code(bind['source'])} (socket, used by "
                         f"{', '.join(sorted({u['container'] for u in bind.get('used_by') or []}))}): "
                         "sockets are never captured")
        elif bind.get("kind") == "system":
            lines.append(f"- {_code(bind['source'])} (system path, used by "
                         f"{', '.join(sorted({u['container'] for u in bind.get('used_by') or []}))}): "
                         "kernel, device and runtime paths are never captured")
    for unit in parts.units:
        if unit["strategy"] == "skip":
            lines.append(f"- {_code(unit['id'])}: {unit.get('reason')}")
    for unit in parts.units:
        if unit.get("exclude") and unit["strategy"] != "skip":
            lines.append(f"- inside {_code(unit['id'])}: "
                         + ", ".join(_code(p) for p in unit["exclude"])
                         + " (excluded by policy, label, or because they are sockets)")
    out.extend(lines or ["Everything found is captured."])
    out.append("")
    return out


def _undeclared(parts: _Parts) -> list[str]:
    if not parts.policy_given:
        return ["## Undeclared", "", "No policy was given, so nothing is checked against a declaration.", ""]
    return _list_section(
        "Undeclared",
        "These hold data but the policy does not mention them: declare them (with strategy skip if they need no backup).",
        [_code(item["id"]) + (f" ({size_class(item['size_bytes'])})" if item.get("size_bytes") is not None else "")
         for item in parts.undeclared],
        "Nothing: every volume and host path that holds data is declared in the policy.")


def _findings(parts: _Parts) -> list[str]:
    return _table_section(
        "Findings", ["Severity", "Code", "Subject", "Message"],
        [[f["severity"], f["code"], f["subject"], f["message"]] for f in parts.findings],
        "None.")


def _list_section(title: str, intro: str, items: list[str], empty: str) -> list[str]:
    """A section that is an introduction and a bulleted list, or the sentence EMPTY when it has no items."""
    if not items:
        return [f"## {title}", "", empty, ""]
    return [f"## {title}", "", intro, "", *(f"- {item}" for item in items), ""]


def _table_section(title: str, header: list[str], rows: list[list[Any]], empty: str) -> list[str]:
    """A section that is one table, or the sentence EMPTY when it has no rows."""
    return [f"## {title}", "", *(_table(header, rows) if rows else [empty]), ""]


def _project(container: dict[str, Any]) -> str:
    compose = container.get("compose") or {}
    swarm = container.get("swarm") or {}
    if compose:
        text = f"compose {compose.get('project')}/{compose.get('service')}"
        if compose.get("depends_on"):
            text += " (depends on " + ", ".join(compose["depends_on"]) + ")"
        return text
    if swarm:
        return f"swarm {swarm.get('stack') or '-'}/{swarm.get('service')}"
    return "-"


def read_text(path: str) -> str | None:
    """The current content of PATH, or None when there is no such file."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def write_atomic(path: str, text: str, default_mode: int = 0o644) -> None:
    """Write TEXT to PATH atomically (_files.write_atomic). A new file gets default_mode; an
    existing one keeps its mode (and its owner, when run as root), so a person's chmod stays."""
    files.write_atomic(path, text, default_mode, keep=True)
