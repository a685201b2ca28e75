# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the restore role: one line per unit for the plan (check mode) and for the result,
and what does not run after a restore that ran before it. All pure."""

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
        how = f"; {plan['method']}" if plan.get("method") else ""
        return f"{unit} -> {target} ({plan.get('engine', '?')}): {what}{how}"
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


def restore_not_running(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, list[str]]:
    """What ran before a restore and does not now, from data_inventory's containers before and
    after: plain containers by name; swarm services by their running tasks, since a restore
    replaces a service's task containers (it scales the service to 0 and back) and the old names
    never come back. A service is short when fewer of its tasks run than before."""
    def running(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in items or [] if c.get("state") == "running"]

    plain_after = {c["name"] for c in running(after)}
    containers = sorted(c["name"] for c in running(before) if not c.get("swarm") and c["name"] not in plain_after)
    tasks_before: dict[str, int] = {}
    tasks_after: dict[str, int] = {}
    for items, counts in ((running(before), tasks_before), (running(after), tasks_after)):
        for c in items:
            service = (c.get("swarm") or {}).get("service")
            if service:
                counts[service] = counts.get(service, 0) + 1
    services = sorted(f"{s} ({tasks_after.get(s, 0)} of {n} tasks run)" for s, n in tasks_before.items()
                      if tasks_after.get(s, 0) < n)
    return {"containers": containers, "services": services}


class FilterModule:
    """lifeboat.docker.restore_plan_line, restore_result_line and restore_not_running."""

    def filters(self) -> dict[str, Any]:
        return {"restore_plan_line": restore_plan_line, "restore_result_line": restore_result_line,
                "restore_not_running": restore_not_running}
