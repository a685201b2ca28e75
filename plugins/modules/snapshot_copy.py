#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_copy
short_description: Copy snapshots from one lifeboat repository to another
version_added: 0.1.0
description:
  - "Copies snapshots from O(repository) to O(target_repository): from the local repository to an
    offsite one, from an offsite one to a fresh host, between any two stores (local, C(sftp://),
    C(s3://), C(rclone://))."
  - "Objects the target has already are skipped (objects are named by their content, so an
    unchanged volume costs nothing). Every copied object is checked against its sha256 while it
    streams; a damaged one fails its snapshot, whose manifest is then not written."
  - "A snapshot's manifest lands last, after all its objects: a copy that is killed or loses its
    store half way leaves no listed snapshot in the target, and running it again completes it."
  - "Encrypted snapshots are copied as they are: no identity is needed, and the target holds them
    encrypted to the same recipients."
  - "Bytes flow from the source store to the target store through the host that runs the module,
    without a staging copy."
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.repository
  - lifeboat.docker.attributes.no_diff
attributes:
  check_mode:
    support: full
    description: Lists the snapshots that would be copied; writes nothing.
  idempotent:
    support: full
    description: A second run finds every snapshot in the target and copies nothing.
options:
  target_repository:
    description:
      - The repository to copy into, a URL as for O(repository). It is created when missing
        (a directory and its marker file; an S3 bucket must exist).
    type: str
    required: true
  target_options:
    description:
      - The store settings of O(target_repository), with the same names as this module's store
        options (O(endpoint_url), O(access_key), O(secret_key), O(session_token), O(region),
        O(ssh_identity_file), O(ssh_known_hosts_file), O(rclone_config)). The module's own store
        options apply to O(repository) only; none fall back to the environment here.
    type: dict
    default: {}
  snapshots:
    description:
      - The snapshots to copy, by id; V(latest) is the newest complete snapshot of each host (of O(host)
        when given). Empty (the default) copies every snapshot (of O(host)) the target lacks.
    type: list
    elements: str
    default: []
  host:
    description: Only snapshots of this host (as recorded in manifests).
    type: str
  lock_timeout:
    description:
      - Seconds to wait for a prune of the target repository on this host to finish (the copy
        holds the target's repository lock shared, as snapshots do).
    type: int
    default: 600
notes:
  - The module fails when any snapshot could not be copied, after trying all of them;
    RV(failed_snapshots) says which and why.
"""

EXAMPLES = r"""
- name: Copy tonight's snapshots offsite
  lifeboat.docker.snapshot_copy:
    repository: /var/backups/lifeboat
    target_repository: s3://backups/lifeboat/{{ inventory_hostname }}
    target_options:
      endpoint_url: https://minio.example.org:9000
      access_key: "{{ vault_s3_access_key }}"
      secret_key: "{{ vault_s3_secret_key }}"

- name: Fetch the newest snapshot of the lost host onto a fresh one
  lifeboat.docker.snapshot_copy:
    repository: sftp://backup@vault.example.org/srv/lifeboat
    ssh_identity_file: /root/.ssh/lifeboat
    ssh_known_hosts_file: /root/.ssh/known_hosts.lifeboat
    target_repository: /var/backups/lifeboat
    host: app1
    snapshots: [latest]
"""

RETURN = r"""
repaired:
  description:
    - "Staging directories a killed restore left behind, removed now (as C(staging) with C(result)). This module
      talks to no engine; containers a killed run left stopped are started by the next module that does."
  returned: success
  type: list
  elements: dict
copied:
  description: Ids of the snapshots copied by this run (in check mode, those that would be).
  returned: always
  type: list
  elements: str
present:
  description: Ids of the chosen snapshots the target had already (not copied again).
  returned: always
  type: list
  elements: str
failed_snapshots:
  description: Snapshots that could not be copied, each with the reason; their manifests were not written.
  returned: always
  type: list
  elements: dict
damaged:
  description:
    - Manifests of the source repository that are damaged (unreadable, or with fields of the wrong type),
      each with the problem; they are not copied, and the others are.
  returned: success
  type: list
  elements: dict
objects_copied:
  description: Objects streamed into the target.
  returned: always
  type: int
objects_present:
  description: Objects the target had already.
  returned: always
  type: int
bytes_copied:
  description: Bytes streamed into the target (in check mode, an upper bound of what would be).
  returned: always
  type: int
seconds:
  description: Seconds the copy took.
  returned: success
  type: float
mb_per_second:
  description: Throughput of the copied bytes, in 10^6 bytes per second (null when nothing was copied).
  returned: success
  type: float
target:
  description: The target repository's URL (without credentials).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.copy import CopyError, copy_snapshots, object_refs, plan_copy
from ansible_collections.lifeboat.docker.plugins.module_utils._common.locks import Lock, LockTimeout
from ansible_collections.lifeboat.docker.plugins.module_utils._common.options import REPOSITORY_ARGS, STORE_OPTION_NAMES, store_options
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository, RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, run
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError, redact_url


def main() -> None:
    argument_spec = dict(REPOSITORY_ARGS)
    argument_spec.update(
        target_repository={"type": "str", "required": True},
        target_options={"type": "dict", "default": {}, "no_log": True},
        snapshots={"type": "list", "elements": "str", "default": []},
        host={"type": "str"},
        lock_timeout={"type": "int", "default": 600},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    check_paths(module, ("ssh_identity_file", "ssh_known_hosts_file", "rclone_config"))
    result = {"changed": False, "copied": [], "present": [], "failed_snapshots": [], "objects_copied": 0,
              "objects_present": 0, "bytes_copied": 0, "target": redact_url(params["target_repository"])}
    unknown = sorted(set(params["target_options"]) - set(STORE_OPTION_NAMES))
    if unknown:
        module.fail_json(msg=f"target_options has unknown settings {', '.join(unknown)}; known: "
                             f"{', '.join(STORE_OPTION_NAMES)}", **result)
    if params["lock_timeout"] < 0:
        module.fail_json(msg=f"lock_timeout must be 0 or more, got {params['lock_timeout']}", **result)

    def body() -> dict:
        source = Repository.open(params["repository"], options=store_options(params))
        target_opts = {name: params["target_options"].get(name) for name in STORE_OPTION_NAMES}
        if module.check_mode:
            try:
                target = Repository.open(params["target_repository"], options=target_opts)
            except RepositoryError:
                target = None  # not there yet: everything would be copied
        else:
            target = Repository.open(params["target_repository"], create=True, options=target_opts)
        if target is not None:
            result["target"] = target.url
            if target.url == source.url:
                module.fail_json(msg=f"repository and target_repository are the same ({source.url}): give another "
                                     "target", **result)
        have = set(target.snapshot_ids()) if target is not None else set()
        damaged: list = []
        todo, present = plan_copy(source, have, params["snapshots"], params["host"], damaged)
        result["present"] = present
        result["damaged"] = [{"snapshot": b["id"], "problem": b["problem"]} for b in damaged]
        for item in damaged:
            module.warn(f"not copied: {item['problem']}")
        if module.check_mode:
            result["copied"] = [m["id"] for m in todo]
            sizes: dict[str, int] = {}
            for man in todo:
                for sha, size in object_refs(man).items():
                    if target is None or not target.has_object(sha):
                        sizes[sha] = size or 0
            result["objects_copied"], result["bytes_copied"] = len(sizes), sum(sizes.values())
            result["changed"] = bool(todo)
            module.exit_json(**result)
        lock = Lock(f"repository:{target.url}", "snapshot_copy", params["lock_timeout"], shared=True)
        lock.acquire()
        try:
            target.cleanup()
            return copy_snapshots(source, target, todo)
        finally:
            lock.release()

    # repair: staging a killed restore left (no engine here: containers wait)
    outcome = run(module, body, name="snapshot_copy", result=result, guard=True, repair=lambda: None,
                  ladder=(Failure((CopyError, RepositoryError, StoreError, LockTimeout, mf.FormatError)),))
    failed = outcome.pop("failed")
    result.update(outcome, failed_snapshots=failed, changed=bool(outcome["copied"]))
    if failed:
        names = "; ".join(f"{f['id']}: {f['error']}" for f in failed)
        module.fail_json(msg=f"{len(failed)} snapshot(s) were not copied (the others were): {names}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
