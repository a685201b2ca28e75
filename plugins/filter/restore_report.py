# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the restore role: one line per unit for the plan (check mode) and for the result."""

from __future__ import annotations

from typing import Any

from ansible_collections.lifeboat.docker.plugins.filter.backup_report import human_bytes


def _where(result: dict[str, Any]) -> str:
    kind = result.get("target_type") or (result.get("plan") or {}).get("target_type") or "?"
    return f"{kind} {result.get('target', '?')}"


def restore_plan_line(result: dict[str, Any]) -> str:
    """What snapshot_restore in check mode (with force) says it would do, for a person."""
    unit = result.get("item") or result.get("unit") or "?"
    if result.get("failed"):
        return f"{unit}: cannot be restored: {result.get('msg', 'unknown error')}"
    plan = result.get("plan") or {}
    target = _where(result)
    if plan.get("target_type") == "container":
        existing = plan.get("existing") or []
        what = (f"holds {', '.join(existing)}: REPLACED (its content is dumped into the repository first)"
                if existing else "holds no databases yet")
        return f"{unit} -> {target} ({plan.get('engine', '?')}): {what}"
    if not plan.get("exists"):
        what = "missing: created" + (" with the recorded labels" if plan.get("create_volume") else "")
    elif plan.get("nonempty"):
        what = "not empty: REPLACED (the current content is kept aside)"
    else:
        what = "exists, empty"
    stops = plan.get("stop") or []
    return f"{unit} -> {target}: {what}" + (f"; stops {', '.join(stops)} for the swap" if stops else "")


def restore_result_line(result: dict[str, Any]) -> str:
    """What snapshot_restore did, for a person."""
    unit = result.get("item") or result.get("unit") or "?"
    if result.get("skipped"):
        return f"{unit}: not restored (skipped)"
    if result.get("failed"):
        return f"{unit}: FAILED: {result.get('msg', 'unknown error')}"
    parts = []
    if result.get("row_counts") is not None:
        tables = sum(len(t) for t in (result.get("row_counts") or {}).values())
        parts.append(f"{result.get('engine', 'database')}, row counts of {tables} tables checked")
    else:
        parts.append(f"{result.get('files', 0)} files, {human_bytes(result.get('bytes'))}"
                     + (", verified" if result.get("verified") else ", NOT verified"))
    if result.get("previous"):
        parts.append(f"previous content kept at {result['previous']}")
    if result.get("created"):
        parts.append("created")
    downtime = result.get("downtime") or {}
    if downtime:
        parts.append("downtime " + ", ".join(f"{k} {float(v):.1f} s" for k, v in sorted(downtime.items())))
    if isinstance(result.get("seconds"), (int, float)):
        parts.append(f"{float(result['seconds']):.1f} s")
    return f"{unit} -> {_where(result)}: " + "; ".join(parts)


class FilterModule:
    """lifeboat.docker.restore_plan_line and restore_result_line."""

    def filters(self) -> dict[str, Any]:
        return {"restore_plan_line": restore_plan_line, "restore_result_line": restore_result_line}
