# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Hooks: commands run inside containers before (pre) and after (post) a unit's capture.

From labels on the containers (lifeboat.pre, lifeboat.post, lifeboat.hook_timeout,
lifeboat.on_error) and from the policy (the same keys: pre, post, hook_timeout, on_error), run
with `sh -c` in the unit's containers: those it quiesces (stop, pause), the database container
(dump), or the running containers that mount it (live). Pre hooks run before quiescing, post hooks
after the containers run again, and post hooks run even when the capture failed. A hook that
fails or times out fails the unit with on_error=fail (the default) and is only reported with
on_error=continue.
"""

from __future__ import annotations

import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import Spec, exec_capture

DEFAULT_TIMEOUT = 300
OUTPUT_LIMIT = 1000


def _int(value: Any, default: int) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def hook_containers(unit: dict[str, Any], running_users: list[str]) -> list[str]:
    strategy = unit.get("strategy")
    if strategy in ("stop", "pause"):
        return list(unit.get("containers") or [])
    if strategy == "dump":
        return [unit["container"]] if unit.get("container") else []
    return list(running_users)


def plan_hooks(unit: dict[str, Any], labels_of: dict[str, dict[str, str]], running_users: list[str]) -> list[dict[str, Any]]:
    """The hooks of a unit, in stop order (pre) - post hooks are run in reverse."""
    hooks: list[dict[str, Any]] = []
    containers = hook_containers(unit, running_users)
    policy = unit.get("hooks") or {}
    for name in containers:
        labels = labels_of.get(name) or {}
        for phase in ("pre", "post"):
            if labels.get(f"lifeboat.{phase}"):
                hooks.append({"container": name, "phase": phase, "command": labels[f"lifeboat.{phase}"],
                              "timeout": _int(labels.get("lifeboat.hook_timeout"), DEFAULT_TIMEOUT),
                              "on_error": labels.get("lifeboat.on_error") if labels.get("lifeboat.on_error")
                              in ("fail", "continue") else "fail",
                              "source": "label"})
            if policy.get(phase):
                hooks.append({"container": name, "phase": phase, "command": policy[phase],
                              "timeout": _int(policy.get("hook_timeout"), DEFAULT_TIMEOUT),
                              "on_error": policy.get("on_error") or "fail", "source": "policy"})
    if policy and (policy.get("pre") or policy.get("post")) and not containers:
        for phase in ("pre", "post"):
            if policy.get(phase):
                hooks.append({"container": None, "phase": phase, "command": policy[phase],
                              "timeout": _int(policy.get("hook_timeout"), DEFAULT_TIMEOUT),
                              "on_error": policy.get("on_error") or "fail", "source": "policy"})
    return hooks


def run_hooks(client, hooks: list[dict[str, Any]], phase: str, record: list[dict[str, Any]]) -> str | None:
    """Run the hooks of PHASE; append their outcomes to RECORD; return why the unit fails, or None."""
    selected = [h for h in hooks if h["phase"] == phase]
    if phase == "post":
        selected.reverse()
    failure = None
    for hook in selected:
        started = time.monotonic()
        outcome = {"container": hook["container"], "phase": phase, "command": hook["command"],
                   "source": hook["source"], "on_error": hook["on_error"]}
        if hook["container"] is None:
            outcome.update(exit_code=None, timed_out=False, output="",
                           error="no running container to run this hook in")
        else:
            try:
                run = exec_capture(client, hook["container"], Spec(["sh", "-c", hook["command"]]),
                                   timeout=hook["timeout"])
                outcome.update(exit_code=run["exit_code"], timed_out=run["timed_out"],
                               output=run["output"][-OUTPUT_LIMIT:])
                if run["timed_out"]:
                    outcome["error"] = f"timed out after {hook['timeout']} s and was killed"
                elif run["exit_code"] != 0:
                    outcome["error"] = f"exited {run['exit_code']}"
            except Exception as exc:  # pylint: disable=broad-except
                outcome.update(exit_code=None, timed_out=False, output="", error=str(exc))
        outcome["seconds"] = round(time.monotonic() - started, 3)
        record.append(outcome)
        if outcome.get("error") and hook["on_error"] == "fail" and failure is None:
            failure = (f"{phase} hook {hook['command']!r} in {hook['container']} {outcome['error']}"
                       + (f": {outcome['output'][-300:]}" if outcome.get("output") else ""))
    return failure
