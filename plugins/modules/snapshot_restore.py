#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_restore
short_description: Put a unit of a lifeboat snapshot back into a volume or host path
version_added: 0.1.0
description:
  - Restores one unit (a volume or a host path) of a snapshot, by default where it came from.
  - Nothing existing is touched before the new copy is proven. The object is extracted into a
    staging directory beside the target, its sha256 checked on the way; members that would land
    outside the target (absolute names, C(..), writes through symlinks the archive made, hard links
    leaving it, device files unless O(allow_devices)) are refused before tar sees them; then the
    staged tree is compared with the unit's index (names, kinds, sizes, modes, owners, mtimes).
  - Only then are the containers that use the target stopped, the old content renamed aside (a
    volume C(NAME.pre-restore-TIME) labelled C(lifeboat.pre-restore-of), or a directory
    C(PATH.pre-restore-TIME)), the new tree renamed into place, and the containers started again.
    The old content is kept and reported in RV(previous); remove it when you no longer need it.
  - A missing target volume is created with the recorded labels (plain local volumes only).
  - A non-empty target is replaced only with O(force=true).
  - "Database units (dumps) are restored into a running container of the same engine: by default
    the one they were dumped from, or O(target_container). The object's sha256 is checked first. A
    target that already holds databases (or Redis keys) needs O(force=true); then its current
    content is first dumped into the repository as a snapshot tagged V(pre-restore) (reported in
    RV(previous)), then replaced. PostgreSQL dumps are replayed with C(psql), MariaDB/MySQL with
    C(mariadb)/C(mysql), MongoDB with C(mongorestore --archive --drop); a Redis RDB is placed in
    the server's data directory while the server is stopped (a swarm task: its service scaled to
    0), then the server is started. With C(appendonly yes) the appendonly file is rebuilt from the
    RDB first, by a temporary server of the same image on the same mounts (no network), so that
    the server loads the restored data at start; its command line and configuration are not
    changed; RV(plan) says which in check mode. Afterwards every table's row count is compared
    with the count read from the dump at dump time."
  - The unit and the containers it stops are locked against other lifeboat runs (see
    M(lifeboat.docker.snapshot)); a run holding them longer than O(lock_timeout) is named in the error.
  - "With O(paths), only the entries those paths name are restored (one file back), into a directory
    that holds nothing live: O(target_path), by default C(/var/lib/lifeboat/restored/SNAPSHOT/UNIT)
    (RV(target) says where). GNU tar extracts exactly those members, and the directories that hold
    them, with owners, modes, extended attributes and ACLs, into a staging directory inside the
    target, through the same checks as a whole restore; the staged entries are compared with the
    index (RV(verified)); only then are they moved into place. No container is stopped. An entry
    that exists in the target already (other than a directory, which is merged into) stops the
    restore before anything is written, unless O(force=true): then it is renamed aside
    (C(NAME.pre-restore-TIME), see RV(kept_aside)), never deleted. The target may not be a system
    tree or in one (apart from lifeboat's own C(restored) directory), the repository, lifeboat's
    state or the engine's data root. Database dump units are restored whole only."
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.docker
  - lifeboat.docker.repository
attributes:
  check_mode:
    support: full
    description: Says what would be created, replaced and stopped; touches nothing.
  diff_mode:
    support: full
    description: Files and bytes of the target before and after.
  idempotent:
    support: none
    description: Each run restores again (the previous content is kept aside each time).
options:
  encryption_identity:
    description:
      - The age identity file (private key, on the Docker host) that decrypts encrypted snapshots
        (see O(lifeboat.docker.snapshot#module:encryption_recipients)). Needed for encrypted
        snapshots only; without it, or with one that is not among a snapshot's recipients, the
        module fails before anything is touched.
      - In roles it comes from vault; the role writes it to a 0600 file on the host and removes it after.
    type: path
  snapshot:
    description:
      - A snapshot id, or V(latest) (the newest snapshot, by its time, that holds the data of O(unit), of O(host)
        if given; never a pre-restore snapshot, which is restored by its id).
    type: str
    default: latest
  host:
    description: With O(snapshot=latest), only snapshots of this host (as recorded in manifests).
    type: str
  unit:
    description: The unit to restore, by id (V(volume:NAME), V(path:/P)) or by volume name or host path.
    type: str
    required: true
  target_volume:
    description: Restore into this volume instead (created if missing).
    type: str
  target_path:
    description: Restore into this host directory instead (created if missing).
    type: path
  paths:
    description:
      - Restore only these entries of the unit (files, directories with everything below them, or
        shell wildcards as GNU tar's, C(*) also matching C(/)), relative to the unit's root as
        M(lifeboat.docker.snapshot_files) lists them (C(app/config.yml), C(logs/*.log)), into
        O(target_path) (default C(/var/lib/lifeboat/restored/SNAPSHOT/UNIT), below the state
        directory C(LIFEBOAT_STATE_DIR) when set).
      - Absolute paths and C(..) components are refused; a path that names nothing fails the
        restore before anything is written, naming it.
      - Not with O(target_volume) or O(target_container); not for database units.
    type: list
    elements: str
    default: []
  target_container:
    description:
      - For database units, the running container to restore into (same engine); by default the
        container the dump was taken from.
    type: str
  force:
    description: Replace a target that is not empty (its content is kept aside, see RV(previous)).
    type: bool
    default: false
  verify:
    description:
      - Compare the extracted tree with the unit's index before it replaces anything.
      - The object's sha256 is always checked.
    type: bool
    default: true
  allow_devices:
    description: Restore device files (character and block special files) found in the archive.
    type: bool
    default: false
  stop_timeout:
    description: Seconds a container gets to stop before it is killed.
    type: int
    default: 30
  lock_timeout:
    description: Seconds to wait for a unit or container that another lifeboat run holds.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Put the newest copy of a volume back where it came from, replacing what is there
  lifeboat.docker.snapshot_restore:
    unit: volume:app_uploads
    force: true

- name: Restore an older copy into a new volume, to compare
  lifeboat.docker.snapshot_restore:
    snapshot: 20261120T020000Z-web1-3fa2c1
    unit: app_uploads
    target_volume: app_uploads_20261120

- name: Restore the newest PostgreSQL dump into a fresh server
  lifeboat.docker.snapshot_restore:
    unit: db:postgres_db
    target_container: postgres_new

- name: One file back from last night's snapshot, into /var/lib/lifeboat/restored/SNAPSHOT/volume_app_uploads
  lifeboat.docker.snapshot_restore:
    unit: volume:app_uploads
    paths: [avatars/42.png]
  register: restored   # restored.target: where it is

- name: A directory and every log file of a host path, into a directory of your choice
  lifeboat.docker.snapshot_restore:
    snapshot: 20261120T020000Z-web1-3fa2c1
    unit: path:/srv/app
    paths: [config, "logs/*.log"]
    target_path: /srv/restore/app-config

- name: Restore a host path into another directory
  lifeboat.docker.snapshot_restore:
    unit: path:/srv/exports
    target_path: /srv/exports.restored
"""

RETURN = r"""
snapshot_id:
  description: The snapshot restored from.
  returned: always
  type: str
  sample: 20261122T103000Z-web1-3fa2c1
unit:
  description: The unit restored.
  returned: always
  type: str
  sample: volume:app_uploads
target:
  description: The volume name or host path restored into.
  returned: always
  type: str
  sample: app_uploads
target_type:
  description: V(volume) or V(path).
  returned: always
  type: str
created:
  description: Whether the target volume was created.
  returned: success
  type: bool
previous:
  description:
    - Where the old content was kept (a volume name or a path), or V(null) if the target was empty.
    - For database units, the id of the snapshot holding the target's content from before the restore.
  returned: success
  type: str
  sample: app_uploads.pre-restore-20261122T113000Z
downtime:
  description: Seconds each container using the target was stopped for the swap.
  returned: success
  type: dict
  sample: {app: 0.84}
files:
  description: Regular files restored.
  returned: success
  type: int
bytes:
  description: Apparent bytes restored.
  returned: success
  type: int
members:
  description: Archive members extracted.
  returned: success
  type: int
verified:
  description: Whether the tree was compared with the index before the swap.
  returned: success
  type: bool
row_counts:
  description: For database units, the row count of each table at dump time, per database.
  returned: success, database units
  type: dict
  sample: {shop: {'"public"."orders"': 1200}}
engine:
  description: For database units, the database engine.
  returned: success, database units
  type: str
seconds:
  description: Seconds the restore took.
  returned: success
  type: float
restored:
  description: With O(paths), how many entries were restored (the directories that hold them included).
  returned: success, with paths
  type: int
entries:
  description: With O(paths), the entries restored (the first 1000 by path), as M(lifeboat.docker.snapshot_files) lists them.
  returned: success, with paths
  type: list
  elements: dict
entries_truncated:
  description: With O(paths), whether more entries were restored than RV(entries) lists.
  returned: success, with paths
  type: bool
kept_aside:
  description: With O(paths) and O(force), where each existing entry that was in the way was renamed to.
  returned: success, with paths
  type: list
  elements: str
  sample: [/srv/restore/app-config/config/app.yml.pre-restore-20261122T113000Z]
plan:
  description: In check mode, what would happen.
  returned: check mode
  type: dict
  sample: {target: app_uploads, target_type: volume, exists: true, nonempty: true, needs_force: true,
           stop: [app], create_volume: false}
repaired:
  description:
    - Containers an earlier, killed run had left stopped, started again now.
    - Staging directories a killed restore left behind, removed now (with C(staging) instead of C(container)).
  returned: always
  type: list
  elements: dict
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import ArchiveError, walk
from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import (
    DOCKER_COMMON_ARGS,
    DockerException,
    client_for,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.probe import read_engine
from ansible_collections.lifeboat.docker.plugins.module_utils._common.locks import LockSet, LockTimeout
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import own_state_dirs, state_dir
from ansible_collections.lifeboat.docker.plugins.module_utils._common.options import IDENTITY_ARGS, REPOSITORY_ARGS, store_options
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository, RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.databases import DbRestoreError, DbRestoreRun
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.files import (
    RestoreError,
    RestoreRun,
    local_root,
    plan_restore,
    resolve_unit,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.paths import (
    PathRestore,
    default_target,
    selection_summary,
    target_refusal,
    workdir,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.browse import BrowseError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, engine_failed, run
from ansible_collections.lifeboat.docker.plugins.module_utils._common.safety import resolve_lexically, resolved
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError
from ansible_collections.lifeboat.docker.plugins.module_utils._data.tarcheck import UnsafeArchive


def _tree_summary(path: str | None) -> dict:
    if not path:
        return {"files": 0, "bytes": 0}
    try:
        scan = walk(path)
    except (ArchiveError, OSError):
        return {"files": 0, "bytes": 0}
    return {"files": scan.files, "bytes": scan.bytes}


def restore_files(module, client, repo, raw, manifest, unit, result):
    params = module.params
    if params["target_container"]:
        module.fail_json(msg=f"target_container is for database units; {unit['id']} is a {unit['kind']} unit: "
                             "use target_volume or target_path", **result)
    plan = plan_restore(unit, raw, params["target_volume"], params["target_path"], local_root(repo))
    result.update(snapshot_id=manifest["id"], unit=unit["id"], target=plan["target"], target_type=plan["kind"])
    if module._diff:
        result["diff"] = {"before": _tree_summary(plan["data_dir"] if plan["exists"] else None),
                          "after": {"files": unit.get("files"), "bytes": unit.get("bytes")},
                          "before_header": f"{plan['kind']} {plan['target']}",
                          "after_header": f"{unit['id']} of {manifest['id']}"}
    if module.check_mode:
        if plan["nonempty"] and not params["force"]:
            module.fail_json(msg=f"the target {plan['kind']} {plan['target']} is not empty: set force: true "
                                 "to replace its content (the current content is kept aside)", **result)
        result["plan"] = {"target": plan["target"], "target_type": plan["kind"], "exists": plan["exists"],
                          "nonempty": plan["nonempty"], "needs_force": plan["nonempty"],
                          "create_volume": plan["create_volume"],
                          "stop": [u["name"] for u in plan["users"] if u["state"] in ("running", "restarting", "paused")]}
        result["changed"] = True
        module.exit_json(**result)
    names = [f"unit:{unit['id']}"] + [f"container:{u['name']}" for u in plan["users"]]
    if plan["target"] != ((unit.get("source") or {}).get("name") or (unit.get("source") or {}).get("path")):
        names.append(f"target:{plan['kind']}:{plan['target']}")
    with LockSet(names, f"restore {unit['id']} from {manifest['id']}", params["lock_timeout"]):
        return RestoreRun(client, repo, raw, params["stop_timeout"]).run(
            manifest, unit, plan, params["force"], params["verify"], params["allow_devices"])


def restore_paths(module, repo, raw, manifest, unit, result):
    """Selected entries of a unit into a directory that holds nothing live (no container stopped)."""
    params = module.params
    if unit.get("kind") == "database":
        module.fail_json(msg=f"{unit['id']} is a database dump: it is restored whole, into a running container; leave "
                             "paths out (see target_container)", **result)
    if params["target_volume"] or params["target_container"]:
        module.fail_json(msg="paths restores into a directory: give target_path (or leave it out for "
                             f"{os.path.join(state_dir(), 'restored')}/SNAPSHOT/UNIT), not target_volume or "
                             "target_container; copy what you need from there", **result)
    if not unit.get("object") or not unit.get("index"):
        module.fail_json(msg=f"unit {unit['id']} holds no captured data to restore (strategy {unit.get('strategy')})",
                         **result)
    restored_root = os.path.join(state_dir(), "restored")
    target = resolve_lexically(params["target_path"] or default_target(restored_root, manifest["id"], unit["id"]))
    result.update(snapshot_id=manifest["id"], unit=unit["id"], target=target, target_type="path")
    for candidate in dict.fromkeys((target, resolved(target))):
        why = target_refusal(candidate, resolved(restored_root), docker_root=raw.get("docker_root"),
                             repository=local_root(repo), own_dirs=[resolved(d) for d in own_state_dirs()])
        if why:
            raise RestoreError(f"refusing to restore paths of {unit['id']} into {target}: {why}")
    if os.path.lexists(target) and (os.path.islink(target) or not os.path.isdir(target)):
        raise RestoreError(f"target path {target} exists and is not a directory: give a directory with target_path")
    runner = PathRestore(repo, unit, manifest)
    scratch = workdir()
    try:
        with LockSet([f"target:path:{target}"], f"restore paths of {unit['id']} from {manifest['id']}",
                     params["lock_timeout"]):
            sel = runner.select(params["paths"], scratch)
            in_the_way = runner.check_target(sel, target, params["force"])
            if module.check_mode:
                result["plan"] = {"target": target, "target_type": "path", "exists": os.path.isdir(target),
                                  "in_the_way": in_the_way, "needs_force": bool(in_the_way), "stop": []}
                result.update(selection_summary(sel), changed=True)
                module.exit_json(**result)
            outcome = runner.run(sel, target, params["force"], params["verify"], params["allow_devices"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcome["kept_aside"] = outcome.pop("previous")
    return dict(outcome, previous=None, created=False, downtime={})


def restore_database(module, client, repo, raw, manifest, unit, result):
    params = module.params
    if params["target_volume"] or params["target_path"]:
        module.fail_json(msg=f"{unit['id']} is a database dump: restore it into a running container with "
                             "target_container, not into a volume or path", **result)
    runner = DbRestoreRun(client, repo, raw, params["stop_timeout"])
    plan = runner.plan(unit, params["target_container"])
    result.update(snapshot_id=manifest["id"], unit=unit["id"], target=plan["target"], target_type="container")
    if module.check_mode:
        if plan["existing"] and not params["force"]:
            module.fail_json(msg=f"container {plan['target']} already holds {', '.join(plan['existing'])}: set "
                                 "force: true to replace them (their content is dumped first)", **result)
        result["plan"] = {"target": plan["target"], "target_type": "container", "engine": plan["engine"],
                          "existing": plan["existing"], "needs_force": bool(plan["existing"])}
        if plan.get("method"):
            result["plan"]["method"] = plan["method"]
        result["changed"] = True
        module.exit_json(**result)
    names = [f"unit:{unit['id']}", f"container:{plan['target']}"]
    with LockSet(names, f"restore {unit['id']} from {manifest['id']}", params["lock_timeout"]):
        return runner.run(manifest, unit, plan, params["force"], params["verify"])


def ladder(result: dict) -> tuple:
    """How an exception fails the module (RESULT: the module's result as it is then)."""
    return (Failure(UnsafeArchive, lambda exc: f"refused: the archive of {result['unit']} is unsafe to extract ({exc}); "
                                               "the target was not touched"),
            Failure((RestoreError, DbRestoreError, RepositoryError, ArchiveError, StoreError, LockTimeout, BrowseError),
                    lambda exc: f"{exc} (the target was not touched unless this says otherwise)"),
            Failure(DockerException, engine_failed))


def main() -> None:
    argument_spec = dict(DOCKER_COMMON_ARGS)
    argument_spec.update(REPOSITORY_ARGS)
    argument_spec.update(IDENTITY_ARGS)
    argument_spec.update(
        snapshot={"type": "str", "default": "latest"},
        host={"type": "str"},
        unit={"type": "str", "required": True},
        target_volume={"type": "str"},
        target_path={"type": "path"},
        target_container={"type": "str"},
        paths={"type": "list", "elements": "str", "default": []},
        force={"type": "bool", "default": False},
        verify={"type": "bool", "default": True},
        allow_devices={"type": "bool", "default": False},
        stop_timeout={"type": "int", "default": 30},
        lock_timeout={"type": "int", "default": 600},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("target_volume", "target_path")])
    params = module.params
    check_paths(module, ("target_path", "encryption_identity", "ssh_identity_file", "ssh_known_hosts_file", "rclone_config"))
    client = client_for(module)
    result = {"changed": False, "repaired": [], "snapshot_id": None, "unit": params["unit"], "target": None,
              "target_type": None}

    def body() -> dict:
        repo = Repository.open(params["repository"], options=store_options(params),
                               identity=params["encryption_identity"])
        wanted = params["unit"]
        manifest = repo.resolve(params["snapshot"], unit=wanted, host=params["host"])
        # What a restore writes (the pre-restore dump of a database) is encrypted like the
        # snapshot it restores.
        repo.recipients = repo.recipients or (manifest.get("encryption") or {}).get("recipients")
        unit = resolve_unit(manifest, wanted)
        raw = read_engine(client)
        if params["paths"]:
            return restore_paths(module, repo, raw, manifest, unit, result)
        if unit.get("kind") == "database":
            return restore_database(module, client, repo, raw, manifest, unit, result)
        return restore_files(module, client, repo, raw, manifest, unit, result)

    outcome = run(module, body, name="snapshot_restore", result=result, ladder=ladder(result), guard=True,
                  repair=lambda: client)
    result.update(outcome, changed=True)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
