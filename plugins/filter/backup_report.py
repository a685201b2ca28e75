# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the backup role: the summary a person reads and node_exporter's textfile metrics.

Pure functions of the snapshot module's result, so that they are tested without an engine.
"""

from __future__ import annotations

import re
from typing import Any

METRIC_PREFIX = "lifeboat_backup_"
_UNIT_SUCCESS = METRIC_PREFIX + "unit_last_success_timestamp_seconds"
_TOTAL_SUCCESS = METRIC_PREFIX + "last_success_timestamp_seconds"


def human_bytes(value: Any) -> str:
    """1536 -> '1.5 KiB' (binary units; '-' for no number)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"  # pragma: no cover - unreachable


def _ratio(size: Any, stored: Any) -> str:
    if not isinstance(size, (int, float)) or not isinstance(stored, (int, float)) or stored <= 0:
        return "-"
    ratio = size / stored
    return f"{ratio:.2f}x" if ratio < 1 else f"{ratio:.1f}x"


def _downtime(downtime: Any) -> str:
    if not downtime:
        return "-"
    return ", ".join(f"{name} {float(seconds):.1f} s" for name, seconds in sorted(downtime.items()))


def _units(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    units = dict(result.get("units") or {})
    for failure in result.get("failed_units") or []:
        entry = dict(units.get(failure.get("id"), {}))
        entry.update(failed=True, error=failure.get("error", entry.get("error", "")))
        units[failure.get("id")] = entry
    return units


def _totals(units: dict[str, dict[str, Any]]) -> dict[str, Any]:
    done = [u for u in units.values() if not u.get("failed") and u.get("strategy") != "skip"]

    def total(key: str) -> int | float:
        return sum(u.get(key) or 0 for u in done if isinstance(u.get(key) or 0, (int, float)))

    downtime: dict[str, float] = {}
    for unit in done:
        for name, seconds in (unit.get("downtime") or {}).items():
            downtime[name] = downtime.get(name, 0.0) + float(seconds)
    return {
        "units": len(units), "captured": len(done),
        "skipped": sum(1 for u in units.values() if u.get("strategy") == "skip" and not u.get("failed")),
        "failed": sum(1 for u in units.values() if u.get("failed")),
        "bytes": total("bytes"), "bytes_read": total("bytes_read"), "bytes_stored": total("bytes_stored"),
        "new_bytes_stored": total("new_bytes_stored"), "seconds": round(float(total("seconds")), 2),
        "downtime": downtime,
    }


def backup_summary(result: dict[str, Any], repository: str = "", elapsed: Any = None) -> list[str]:
    """The snapshot module's result as lines: a header, one aligned line per unit, the totals."""
    result = result or {}
    units = _units(result)
    snapshot_id = result.get("snapshot_id") or "none"
    state = "complete" if result.get("complete") else ("incomplete" if result.get("snapshot_id") else "not written")
    lines = [f"Snapshot {snapshot_id} in {repository or result.get('repository', '?')} ({state})"]
    if result.get("msg") and not units:
        lines.append(f"FAILED: {result['msg']}")
    rows = [("unit", "strategy", "size", "stored", "ratio", "seconds", "downtime")]
    notes = []
    for unit_id in sorted(units):
        unit = units[unit_id]
        if unit.get("failed"):
            rows.append((unit_id, "FAILED", "-", "-", "-", _seconds(unit.get("seconds")), "-"))
            notes.append(f"{unit_id}: FAILED: {unit.get('error', '')}")
            continue
        if unit.get("strategy") == "skip":
            rows.append((unit_id, "skip", "-", "-", "-", "-", "-"))
            if unit.get("reason"):
                notes.append(f"{unit_id}: skipped: {unit['reason']}")
            continue
        stored = human_bytes(unit.get("bytes_stored")) + (" (reused)" if unit.get("reused_from") else "")
        rows.append((unit_id, unit.get("strategy", "?"), human_bytes(unit.get("bytes")), stored,
                     _ratio(unit.get("bytes"), unit.get("bytes_stored")), _seconds(unit.get("seconds")),
                     _downtime(unit.get("downtime"))))
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1])
    lines.extend(notes)
    totals = _totals(units)
    wall = f", {float(elapsed):.1f} s" if isinstance(elapsed, (int, float)) else ""
    lines.append(
        f"Total: {totals['units']} units ({totals['captured']} captured, {totals['skipped']} skipped, "
        f"{totals['failed']} failed), size {human_bytes(totals['bytes'])}, stored {human_bytes(totals['bytes_stored'])} "
        f"(new {human_bytes(totals['new_bytes_stored'])}), ratio {_ratio(totals['bytes'], totals['bytes_stored'])}"
        f"{wall}, downtime {_downtime(totals['downtime'])}")
    return lines


def _seconds(value: Any) -> str:
    return f"{float(value):.1f}" if isinstance(value, (int, float)) else "-"


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _previous_success(text: str) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """Last-success times in an earlier metrics file, per (repository, unit) and per repository."""
    units: dict[tuple[str, str], float] = {}
    totals: dict[str, float] = {}
    pattern = re.compile(r'^(%s|%s)\{(.*)\} (\S+)$' % (re.escape(_UNIT_SUCCESS), re.escape(_TOTAL_SUCCESS)))
    for line in (text or "").splitlines():
        match = pattern.match(line.strip())
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2)))
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        repo = labels.get("repository", "").replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        if match.group(1) == _UNIT_SUCCESS and "unit" in labels:
            unit = labels["unit"].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            units[(repo, unit)] = value
        elif match.group(1) == _TOTAL_SUCCESS:
            totals[repo] = value
    return units, totals


def backup_metrics(result: dict[str, Any], repository: str, now: Any, previous: str = "",
                   elapsed: Any = None) -> str:
    """node_exporter textfile-collector metrics of one backup run.

    A unit that failed keeps the last-success time of PREVIOUS (the file's earlier content), so an
    alert on its age fires; so does the whole run's.
    """
    result = result or {}
    now = float(now)
    units = _units(result)
    old_units, old_totals = _previous_success(previous)
    repo = _label(repository)
    metrics: dict[str, tuple[str, list[str]]] = {}

    def add(name: str, help_text: str, labels: str, value: Any) -> None:
        metrics.setdefault(name, (help_text, []))[1].append(f"{METRIC_PREFIX}{name}{{{labels}}} {value}")

    for unit_id in sorted(units):
        unit = units[unit_id]
        labels = f'repository="{repo}",unit="{_label(unit_id)}"'
        ok = not unit.get("failed")
        add("unit_success", "1 when the unit was captured (or skipped by the plan) in the last run, else 0.",
            labels, 1 if ok else 0)
        last = now if ok else old_units.get((repository, unit_id))
        if last is not None:
            add("unit_last_success_timestamp_seconds", "Unix time of the unit's last successful capture.",
                labels, f"{last:.3f}")
        if ok and unit.get("strategy") != "skip":
            add("unit_bytes", "Apparent size of the unit's data in the last run.", labels, int(unit.get("bytes") or 0))
            add("unit_stored_bytes", "Size of the unit's object in the repository.", labels,
                int(unit.get("bytes_stored") or 0))
            add("unit_duration_seconds", "Seconds the unit's capture took, quiescing included.", labels,
                f"{float(unit.get('seconds') or 0):.3f}")
            downtime = sum(float(v) for v in (unit.get("downtime") or {}).values())
            add("unit_downtime_seconds", "Seconds of container downtime the unit's capture caused.", labels,
                f"{downtime:.3f}")
    totals = _totals(units)
    labels = f'repository="{repo}"'
    complete = bool(result.get("snapshot_id")) and totals["failed"] == 0 and not result.get("msg")
    add("last_run_timestamp_seconds", "Unix time the last backup run ended.", labels, f"{now:.3f}")
    add("success", "1 when the last backup run captured every unit, else 0.", labels, 1 if complete else 0)
    last_total = now if complete else old_totals.get(repository)
    if last_total is not None:
        add("last_success_timestamp_seconds", "Unix time of the last backup run that captured every unit.",
            labels, f"{last_total:.3f}")
    add("units", "Units in the last run's plan.", labels, totals["units"])
    add("failed_units", "Units that failed in the last run.", labels, totals["failed"])
    add("bytes", "Apparent size of the data captured in the last run.", labels, int(totals["bytes"]))
    add("stored_bytes", "Size in the repository of the objects of the last run.", labels, int(totals["bytes_stored"]))
    add("new_bytes", "Bytes the last run added to the repository.", labels, int(totals["new_bytes_stored"]))
    seconds = float(elapsed) if isinstance(elapsed, (int, float)) else float(totals["seconds"])
    add("duration_seconds", "Seconds the last backup run took.", labels, f"{seconds:.3f}")
    out = []
    for name, (help_text, samples) in metrics.items():
        out.append(f"# HELP {METRIC_PREFIX}{name} {help_text}")
        out.append(f"# TYPE {METRIC_PREFIX}{name} gauge")
        out.extend(samples)
    return "\n".join(out) + "\n"


def backup_totals(result: dict[str, Any]) -> dict[str, Any]:
    """The totals of a run (units, captured, skipped, failed, bytes, bytes_stored, ... downtime)."""
    return _totals(_units(result or {}))


class FilterModule:
    """lifeboat.docker.backup_summary, backup_metrics and backup_totals."""

    def filters(self) -> dict[str, Any]:
        return {"backup_summary": backup_summary, "backup_metrics": backup_metrics, "backup_totals": backup_totals}
