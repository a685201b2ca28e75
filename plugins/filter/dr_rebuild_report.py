# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the dr_rebuild role: the plan and the recovery time per step, for a person."""

from __future__ import annotations

from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.plan import plan_lines, step_line


class FilterModule:
    def filters(self):
        return {"rebuild_plan_lines": plan_lines, "rebuild_step_line": step_line}
