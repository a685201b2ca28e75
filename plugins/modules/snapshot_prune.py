#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_prune
short_description: Forget old snapshots of a lifeboat repository by a retention policy and free their space
version_added: 0.1.0
description:
  - "Applies a retention policy with restic's semantics: O(keep_last), O(keep_hourly),
    O(keep_daily), O(keep_weekly), O(keep_monthly), O(keep_yearly) keep the newest snapshot of
    each of the N newest calendar periods that hold a snapshot; O(keep_within) keeps every snapshot
    newer than a duration before the newest snapshot; O(keep_days) keeps every snapshot younger than
    N days. The rules are OR-ed: a snapshot is kept when any rule keeps it."
  - "The policy is applied to each host and unit separately: a snapshot belongs to one group per
    unit it captured (on its host), and is kept when any of its groups keeps it. The newest
    complete snapshot of each group is never removed, whatever the policy says."
  - "Then, in this order: the manifests of the snapshots the policy does not keep are deleted (the
    snapshots are forgotten); the objects that no remaining manifest refers to are deleted, shared
    objects of kept snapshots stay; temporary files of writes whose writer is gone are deleted.
    If any manifest cannot be read, it might refer to any object: no object is deleted, and the
    module fails after forgetting, naming the damaged manifests."
  - "Calendar periods are taken in UTC. Weeks are ISO 8601 weeks: they start on Monday, and a week
    that spans the turn of the year belongs to the year that holds its Thursday (2026-12-31 and
    2027-01-01 are both in week 2026-W53)."
  - "The repository is locked exclusively (flock(2) in /var/lib/lifeboat/locks, or
    E(LIFEBOAT_STATE_DIR)) for the whole prune: snapshots on this host hold the same lock shared
    while they write, so a prune waits for running snapshots (at most O(lock_timeout) seconds) and
    snapshots wait for a prune. Several hosts writing to one repository must not prune it while
    another host takes a snapshot: the lock is per host."
  - This module does not talk to the Docker engine; it needs only the repository.
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.repository
  - lifeboat.docker.attributes.no_diff
attributes:
  check_mode:
    support: full
    description: Says which snapshots would be forgotten, why each other one is kept, which objects would be
      deleted and how many bytes that frees; deletes nothing.
  idempotent:
    support: full
    description: A second run with the same policy finds nothing more to remove (unless time has passed).
options:
  keep_last:
    description: Keep the N newest snapshots of each group.
    type: int
  keep_hourly:
    description: Keep the newest snapshot of each of the N newest hours (UTC) that hold a snapshot.
    type: int
  keep_daily:
    description: Keep the newest snapshot of each of the N newest days (UTC) that hold a snapshot.
    type: int
  keep_weekly:
    description: Keep the newest snapshot of each of the N newest ISO weeks (Monday to Sunday, UTC) that hold a snapshot.
    type: int
  keep_monthly:
    description: Keep the newest snapshot of each of the N newest months (UTC) that hold a snapshot.
    type: int
  keep_yearly:
    description: Keep the newest snapshot of each of the N newest years (UTC) that hold a snapshot.
    type: int
  keep_within:
    description:
      - "Keep every snapshot newer than this duration before the newest snapshot of its group (not before
        now, as in restic: a host that stopped taking snapshots keeps its last stretch of history)."
      - Numbers followed by V(y) (years), V(m) (months), V(d) (days) or V(h) (hours), each at most once,
        such as V(14d), V(6m) or V(1y6m12h). Years and months are calendar ones.
    type: str
  keep_days:
    description:
      - Keep every snapshot younger than N days (N times 24 hours), measured from now.
      - restic has no such rule; it is the storage backends' "keep days" setting. Alone, it deletes what is
        older than N days (the newest complete snapshot of each group still stays); with other rules, it
        adds to what they keep.
    type: int
  host:
    description:
      - Only apply the policy to the snapshots of this host (as the manifests name it; see
        RV(lifeboat.docker.snapshot_info#module:snapshots[].host)). Snapshots of other hosts are left
        alone, and so are the objects they use.
      - Without it, the policy is applied to every host's snapshots, each host separately.
    type: str
  lock_timeout:
    description: Seconds to wait for snapshots (or another prune) that hold the repository.
    type: int
    default: 600
notes:
  - "Giving no rule at all (or only zeros) is refused: an empty policy would remove all but the newest
    snapshot of each unit."
  - "Incomplete snapshots (some unit failed) are judged like the others by the rules (the units they
    list were captured), but are never counted as the newest complete snapshot of a group."
  - "Differences to restic: negative counts (restic's V(unlimited)) are refused; restic 0.17 and later also
    keep the oldest snapshot when a count rule has counts left, lifeboat does not (use O(keep_within) or
    O(keep_days) to ask for a minimum history)."
  - Unlike the other modules that take a repository, this one does not start again containers an
    earlier, killed run left stopped (it has no engine connection); any other lifeboat module does.
seealso:
  - module: lifeboat.docker.snapshot_info
  - module: lifeboat.docker.snapshot
"""

EXAMPLES = r"""
- name: What would a policy remove, and why is the rest kept?
  lifeboat.docker.snapshot_prune:
    keep_daily: 7
    keep_weekly: 5
    keep_monthly: 12
  check_mode: true
  register: plan

- name: Keep 7 daily, 5 weekly, 12 monthly and 3 yearly snapshots of this host
  lifeboat.docker.snapshot_prune:
    repository: /var/backups/lifeboat
    host: "{{ inventory_hostname }}"
    keep_daily: 7
    keep_weekly: 5
    keep_monthly: 12
    keep_yearly: 3

- name: Delete what is older than 30 days (the newest good snapshot of each unit stays)
  lifeboat.docker.snapshot_prune:
    keep_days: 30

- name: Everything of the last two weeks of backups, and one a month before that
  lifeboat.docker.snapshot_prune:
    keep_within: 14d
    keep_monthly: 24
"""

RETURN = r"""
repaired:
  description:
    - "Staging directories a killed restore left behind, removed now (as C(staging) with C(result)). This module
      talks to no engine; containers a killed run left stopped are started by the next module that does."
  returned: success
  type: list
  elements: dict
policy:
  description: The rules in effect.
  returned: always
  type: dict
  sample: {keep_daily: 7, keep_within: 14d}
kept:
  description: Snapshots kept (of the host(s) the policy was applied to), newest first, each with why.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 20261122T103000Z-web1-3fa2c1
      time: "2026-11-22T10:30:00.000000Z"
      host: web1
      reasons:
        - "daily 1/7 (2026-11-22) [web1 volume:app_uploads]"
        - "newest complete snapshot of its group (never removed) [web1 volume:app_uploads]"
  contains:
    id:
      description: Snapshot id.
      type: str
    time:
      description: When the snapshot started (UTC).
      type: str
    host:
      description: Host of the snapshot.
      type: str
    complete:
      description: Whether every unit asked for was captured.
      type: bool
    reasons:
      description:
        - Each rule that keeps the snapshot, with its count and calendar period and, in brackets, the
          group (host and unit) it applies to.
      type: list
      elements: str
removed:
  description: Ids of the snapshots forgotten (in check mode, that would be), newest first.
  returned: always
  type: list
  elements: str
objects_removed:
  description: How many objects were deleted (in check mode, would be) because no remaining snapshot uses them.
  returned: always
  type: int
bytes_freed:
  description: Bytes of those objects.
  returned: always
  type: int
objects_kept:
  description: Objects left in the repository.
  returned: always
  type: int
stale_removed:
  description:
    - Temporary files of writes whose writer is gone, deleted (as C(tmp/NAME)).
    - In check mode, the temporary files found; a real run deletes those whose writer is gone.
  returned: always
  type: list
  elements: str
problems:
  description:
    - Manifests that could not be read, and files under C(snapshots/) not named like a manifest; any of them
      blocks the deletion of objects (and makes the module fail).
  returned: always
  type: list
  elements: dict
  sample: [{snapshot: 20261122T103000Z-web1-3fa2c1, problem: "manifest snapshots/... is not valid JSON: it is damaged"}]
lock_waited:
  description: Seconds spent waiting for the repository lock.
  returned: always
  type: float
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.gc import prune
from ansible_collections.lifeboat.docker.plugins.module_utils._common.locks import Lock, LockTimeout
from ansible_collections.lifeboat.docker.plugins.module_utils._common.options import REPOSITORY_ARGS, store_options
from ansible_collections.lifeboat.docker.plugins.module_utils._common.procs import cmdline
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository, RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.retention import RULES, Policy, PolicyError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, run
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError


def lock_holders(path: str) -> list[str]:
    """Processes holding a flock on PATH, from /proc/locks ('pid N (command)'); [] when unknown."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    out = []
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4] != str(os.getpid()):
            pid = fields[4]
            cmd = cmdline(pid)
            out.append(f"process {pid}" + (f" ({cmd[:120]})" if cmd else ""))
    return out


def main() -> None:
    argument_spec = dict(REPOSITORY_ARGS)
    argument_spec.update({
        "keep_last": {"type": "int"},
        "keep_hourly": {"type": "int"},
        "keep_daily": {"type": "int"},
        "keep_weekly": {"type": "int"},
        "keep_monthly": {"type": "int"},
        "keep_yearly": {"type": "int"},
        "keep_within": {"type": "str"},
        "keep_days": {"type": "int"},
        "host": {"type": "str"},
        "lock_timeout": {"type": "int", "default": 600},
    })
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    check_paths(module, ("ssh_identity_file", "ssh_known_hosts_file", "rclone_config"))
    result = {"changed": False, "policy": {}, "kept": [], "removed": [], "objects_removed": 0, "bytes_freed": 0,
              "objects_kept": 0, "stale_removed": [], "problems": [], "lock_waited": 0.0}
    if params["lock_timeout"] < 0:
        module.fail_json(msg=f"lock_timeout must be 0 or more, got {params['lock_timeout']}", **result)
    try:
        policy = Policy(**{name: params[name] for name in RULES})
    except PolicyError as exc:
        module.fail_json(msg=str(exc), **result)
    result["policy"] = policy.describe()

    def body() -> None:
        repo = Repository.open(params["repository"], options=store_options(params))
        # A real prune excludes snapshots (they hold the lock shared while they write); check mode
        # only reads, and shares the lock so that it sees no prune half done.
        lock = Lock(f"repository:{repo.url}", "prune" + (" (check mode)" if module.check_mode else ""),
                    params["lock_timeout"], shared=module.check_mode)
        try:
            lock.acquire()
        except LockTimeout as exc:
            holders = lock_holders(lock.path)
            who = f" (holding it now: {'; '.join(holders)})" if holders else ""
            module.fail_json(msg=f"the repository {repo.url} is in use, the prune did not start: {exc}{who}",
                             **result)
        try:
            result["lock_waited"] = lock.waited
            prune(repo, policy, result, host=params["host"], check=module.check_mode)
        finally:
            lock.release()

    # repair: staging a killed restore left (no engine here: containers wait)
    run(module, body, name="snapshot_prune", result=result, guard=True, repair=lambda: None,
        ladder=(Failure((PolicyError, RepositoryError, StoreError, mf.FormatError)),))
    if result["problems"]:
        names = ", ".join(p["snapshot"] for p in result["problems"])
        if module.check_mode:
            done = f"no object would be deleted (the policy would forget {len(result['removed'])} snapshot(s))"
        else:
            done = f"no object was deleted (the policy forgot {len(result['removed'])} snapshot(s))"
        module.fail_json(msg=f"{len(result['problems'])} manifest(s) cannot be read ({names}): a damaged manifest may "
                             f"refer to any object, so {done}. Check them with "
                             "lifeboat.docker.snapshot_info; restore them from a copy of the repository, or, if those "
                             "snapshots are lost, move their files out of snapshots/ and prune again", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
