#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot
short_description: Capture volumes and host paths of a Docker host into a lifeboat repository
version_added: 0.1.0
description:
  - Captures units (volumes and host paths) with GNU tar and multi-threaded zstd, streamed into a
    self-describing repository, and writes the snapshot's manifest last, so that a snapshot is
    listed only once it is complete.
  - "Strategies: V(dump) streams the database's native dump from C(docker exec) into the
    repository while it runs (PostgreSQL C(pg_dumpall), MariaDB/MySQL C(mariadb-dump
    --single-transaction), Redis C(redis-cli --rdb), MongoDB C(mongodump --archive)); credentials
    come from the container's environment as the official images define it and are never recorded;
    a dump that fails or writes nothing fails the unit, and table row counts are read from the dump
    stream for the check after a restore. V(stop) stops the containers that write to the unit
    (dependents first), captures, and starts them again in reverse order as soon as the capture is
    done, also when it failed; V(pause) pauses and unpauses them the same way; V(live) copies as
    it is (data nothing writes to); V(skip) records the unit as not captured."
  - "Hooks: labels C(lifeboat.pre) / C(lifeboat.post) on a container (with C(lifeboat.hook_timeout)
    and C(lifeboat.on_error)), or the same keys in the data_inventory policy, run a command with
    C(sh -c) in the unit's containers before quiescing and after they run again; post hooks run
    even when the capture failed. A failing or timed-out hook fails the unit unless on_error is
    V(continue)."
  - "Locks: each unit, each container to quiesce and (shared) the repository are locked with
    flock(2) in /var/lib/lifeboat/locks, so that backups and restores run side by side but never two
    on the same unit; a run that waits longer than O(lock_timeout) fails the unit naming the holder.
    Units that share containers are captured one after the other; independent ones in parallel."
  - Before stopping anything the module records it in a journal on the host. If the module is
    killed (even with SIGKILL), the next run of any lifeboat module that takes a repository starts
    those containers again.
  - "Objects are stored by the sha256 of their bytes, so identical captures are stored once. A
    unit whose metadata (inodes, sizes, mtimes, ctimes, modes, owners of every entry) is unchanged
    since its last capture in the repository is not read again: the earlier object is reused."
  - "Every snapshot also records the host's deployment, what a rebuild
    (the role C(lifeboat.docker.dr_rebuild)) needs that no
    unit holds: every container's spec (image, command, entrypoint, environment variable names,
    mounts, networks with aliases, ports, restart policy, labels, healthcheck, state), the networks
    (driver, options, IPAM, labels, internal, attachable), every volume's driver, options and
    labels, and the compose projects with their compose files (as objects). Environment values
    and compose C(.env) files are secrets: they are stored (as objects) only when the snapshot is
    encrypted; otherwise RV(deployment.left_out) says what was left out."
  - "On a swarm manager the snapshot also records the swarm's stacks in a section of its own
    (see docs/swarm.md): every service's spec (image, environment variable names, mounts,
    networks, labels, replicas, constraints, ports) and, when known, the stack's compose files as
    objects (from O(swarm_stacks), or the label C(lifeboat.stack.compose_files) on a service), so
    that M(lifeboat.docker.swarm_rebuild) can redeploy it with C(docker stack deploy). A unit
    written by a swarm task is quiesced by scaling its service to 0 and back to its replicas
    (strategy V(stop), journalled like a stopped container) or by pausing the task (V(pause))."
  - A unit that fails is reported in RV(failed_units) and the module fails after all other units were
    captured and every container is running again. If no unit was captured, no snapshot is written.
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.docker
  - lifeboat.docker.repository
  - lifeboat.docker.attributes.no_diff
attributes:
  check_mode:
    support: full
    description: Says what would be captured and which containers would be stopped; touches nothing.
  idempotent:
    support: none
    description: Every run writes a new snapshot (unchanged data costs no new objects).
options:
  encryption_recipients:
    description:
      - Age public keys (C(age1...), or SSH public keys) to encrypt the snapshot to, with the C(age)
        command on the Docker host (Debian package age). Objects and the manifest are encrypted
        with public keys only, so a host that is broken into cannot read its older snapshots;
        restores and verification take the identity
        (O(lifeboat.docker.snapshot_restore#module:encryption_identity)).
      - What stays unencrypted, to list and prune snapshots, is the snapshot's id, host, time, tags,
        unit ids, sizes and object names; no content, file name, setting or secret.
      - By hand, an object restores with C(age -d -i KEY OBJECT | zstd -d | tar -x).
      - Empty (the default) stores unencrypted snapshots.
    type: list
    elements: str
    default: []
  include_images:
    description:
      - Also save the images the host's containers use into the snapshot (C(docker save) through
        zstd, one object per image), so that a rebuild needs no registry. For locally built images
        and hosts without a registry.
      - An image the repository holds already (the same image id, and the same encryption
        recipients) is not saved again.
      - Without it the snapshot records the images' ids, tags and digests only.
    type: bool
    default: false
  units:
    description:
      - The units to capture, as RV(lifeboat.docker.data_inventory#module:units) returns them (a list of
        dicts), or their ids (V(volume:NAME), V(path:/ABS/PATH)).
      - Ids are resolved against the live plan of this host, as data_inventory would make it.
    type: list
    elements: raw
  volumes:
    description: Shorthand for C(volume:NAME) units.
    type: list
    elements: str
  paths:
    description:
      - Shorthand for C(path:/ABS/PATH) units. A directory no container mounts is captured V(live)
        unless O(strategy) says otherwise.
    type: list
    elements: str
  strategy:
    description: Strategy for O(volumes) and O(paths), instead of what data_inventory would choose.
    type: str
    choices: [stop, pause, live, skip]
  parallel:
    description:
      - How many independent units (groups of units sharing containers) to capture at once.
      - V(0) means the number of CPU cores.
    type: int
    default: 0
  compression_level:
    description: zstd compression level (1 fastest, 19 smallest; 20-22 need much memory).
    type: int
    default: 3
  tags:
    description: Tags recorded in the manifest (filters of snapshot_info).
    type: list
    elements: str
    default: []
  stop_timeout:
    description: Seconds a container gets to stop before it is killed (as C(docker stop -t)).
    type: int
    default: 30
  lock_timeout:
    description: Seconds to wait for a unit, container or repository that another run holds.
    type: int
    default: 600
  swarm_stacks:
    description:
      - The swarm stacks to record, as RV(lifeboat.docker.data_inventory#module:swarm.stacks) returns
        them (dicts with C(name) and C(compose_files), which come from the policy entry
        C(stack:NAME)), dicts C({name, compose_files}) or stack names.
      - Compose files given here are stored with the snapshot; without them, a stack's files come
        from the label C(lifeboat.stack.compose_files) on one of its services, else only the
        services' specs are recorded.
      - Empty (the default) records every stack of the swarm this host manages.
    type: list
    elements: raw
    default: []
"""

EXAMPLES = r"""
- name: Take the inventory
  lifeboat.docker.data_inventory:
  register: inventory

- name: Capture everything the plan says to capture
  lifeboat.docker.snapshot:
    repository: /var/backups/lifeboat
    units: "{{ inventory.units }}"
    tags: [nightly]
  register: snap

- name: Capture two volumes, stopping their writers
  lifeboat.docker.snapshot:
    volumes: [app_uploads, app_config]
    strategy: stop

- name: Capture a host directory nobody mounts
  lifeboat.docker.snapshot:
    paths: [/srv/exports]
    compression_level: 9
"""

RETURN = r"""
snapshot_id:
  description: Id of the snapshot written (V(null) when nothing was captured, or in check mode).
  returned: always
  type: str
  sample: 20261122T103000Z-web1-3fa2c1
repository:
  description: The repository written to.
  returned: always
  type: str
  sample: /var/backups/lifeboat
complete:
  description: Whether every unit was captured (a snapshot with failed units is listed as incomplete).
  returned: always
  type: bool
units:
  description: Per unit id, what was done.
  returned: always
  type: dict
  sample:
    volume:app_uploads:
      strategy: stop
      bytes: 52428800
      bytes_read: 52428800
      bytes_stored: 10485760
      new_bytes_stored: 10485760
      files: 1200
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      seconds: 1.42
      downtime: {app: 1.61}
      reused_from: null
  contains:
    strategy:
      description: The strategy used.
      type: str
    bytes:
      description: Apparent size of the unit's files.
      type: int
    bytes_read:
      description: Bytes of file content read (0 when the earlier object was reused).
      type: int
    bytes_stored:
      description: Size of the unit's object in the repository.
      type: int
    new_bytes_stored:
      description: Bytes this run added to the repository for the unit (0 when the object existed).
      type: int
    files:
      description: Regular files captured.
      type: int
    sha256:
      description: Name (sha256) of the unit's object.
      type: str
    seconds:
      description: Seconds the unit took, quiescing included.
      type: float
    downtime:
      description: Seconds each stopped container was down.
      type: dict
    reused_from:
      description: Snapshot whose object was reused because nothing changed, or V(null).
      type: str
    sqlite:
      description:
        - The unit's SQLite databases (live units only), each with C(path), C(method) (V(online backup), or
          V(copied as it is) / V(not captured) with a C(reason)), and for online copies C(bytes),
          C(journal_mode) and C(integrity) (V(ok) when the copy passed C(PRAGMA integrity_check)).
      type: list
      elements: dict
      returned: when the unit holds SQLite databases
    failed:
      description: V(true) when the unit failed (see RV(failed_units)).
      type: bool
    error:
      description: Why the unit failed.
      type: str
failed_units:
  description:
    - Units that could not be captured, with the reason.
    - Not named C(failed), which Ansible reserves for the task's own failure flag.
  returned: always
  type: list
  elements: dict
  sample: [{id: "volume:cache", error: "volume 'cache' does not exist on this host"}]
plan:
  description: In check mode, what would be captured and stopped.
  returned: check mode
  type: list
  elements: dict
  sample: [{id: "volume:app_uploads", strategy: stop, stop: [app]}]
repaired:
  description:
    - Containers an earlier, killed run had left stopped, started again now.
    - Staging directories a killed restore left behind, removed now (with C(staging) instead of C(container)).
  returned: always
  type: list
  elements: dict
  sample: [{container: app, action: stop, result: started}]
deployment:
  description:
    - What the snapshot recorded of the host's deployment (see the description).
  returned: when a snapshot was written
  type: dict
  sample:
    containers: 5
    networks: 1
    volumes: 4
    compose_projects: [shop]
    images: 3
    images_saved: 2
    images_reused: 1
    image_bytes_stored: 73400320
    environment_stored: true
    left_out: []
    problems: []
    seconds: 4.2
  contains:
    containers:
      description: Containers whose spec was recorded.
      type: int
    compose_projects:
      description: Names of the compose projects recorded with their files.
      type: list
      elements: str
    images_saved:
      description: Images saved into new objects (with O(include_images)).
      type: int
    images_reused:
      description: Images whose archive the repository held already.
      type: int
    environment_stored:
      description: Whether the containers' environment values were stored (encrypted snapshots only).
      type: bool
    left_out:
      description: Secrets not stored because the snapshot is not encrypted (environment values, .env files).
      type: list
      elements: str
    problems:
      description: What could not be recorded (a compose file missing on the host, an image that could not be saved).
      type: list
      elements: str
swarm:
  description:
    - What the snapshot recorded of the swarm's stacks (on a swarm manager).
  returned: when a snapshot was written on a swarm node
  type: dict
  sample: {stacks: [maps], services: 5, compose_files: 1, problems: [], seconds: 0.05}
  contains:
    stacks:
      description: Names of the stacks recorded.
      type: list
      elements: str
    services:
      description: Services whose specs were recorded.
      type: int
    compose_files:
      description: Compose files stored as objects.
      type: int
    problems:
      description: What could not be recorded (a compose file missing, a worker node, swarm secrets).
      type: list
      elements: str
cleaned:
  description: Stale temporary files of dead runs removed from the repository.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import (
    DOCKER_COMMON_ARGS,
    DockerException,
    client_for,
    connect,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.deployment import DeploymentCapture
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.probe import live_plan
from ansible_collections.lifeboat.docker.plugins.module_utils._common.options import ENCRYPT_ARGS, REPOSITORY_ARGS, store_options
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository, RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, engine_failed, run
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.capture import (
    SelectionError,
    SnapshotRun,
    select_units,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm import SwarmError, given_stacks
from ansible_collections.lifeboat.docker.plugins.module_utils._common.version import COLLECTION_VERSION


def main() -> None:
    argument_spec = dict(DOCKER_COMMON_ARGS)
    argument_spec.update(REPOSITORY_ARGS)
    argument_spec.update(ENCRYPT_ARGS)
    argument_spec.update(
        units={"type": "list", "elements": "raw"},
        volumes={"type": "list", "elements": "str"},
        paths={"type": "list", "elements": "str"},
        strategy={"type": "str", "choices": ["stop", "pause", "live", "skip"]},
        parallel={"type": "int", "default": 0},
        lock_timeout={"type": "int", "default": 600},
        compression_level={"type": "int", "default": 3},
        tags={"type": "list", "elements": "str", "default": []},
        stop_timeout={"type": "int", "default": 30},
        swarm_stacks={"type": "list", "elements": "raw", "default": []},
        include_images={"type": "bool", "default": False},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    check_paths(module, ("ssh_identity_file", "ssh_known_hosts_file", "rclone_config"))
    if params["parallel"] < 0 or params["lock_timeout"] < 0:
        module.fail_json(msg="parallel and lock_timeout must be 0 or more")
    if not 1 <= params["compression_level"] <= 22:
        module.fail_json(msg=f"compression_level {params['compression_level']} is out of range: use 1 (fastest) to 19 "
                             "(smallest), or 20-22 with much memory")
    try:
        given_stacks(params["swarm_stacks"])
    except SwarmError as exc:
        module.fail_json(msg=str(exc))
    client = client_for(module)
    result = {"changed": False, "snapshot_id": None, "repository": params["repository"], "complete": False,
              "units": {}, "failed_units": [], "repaired": [], "cleaned": []}

    def body() -> tuple:
        raw, inventory = live_plan(client)
        units = select_units(inventory["units"], params["units"], params["volumes"], params["paths"],
                             params["strategy"])
        if module.check_mode:
            result["changed"] = True
            result["plan"] = [{"id": u["id"], "strategy": u["strategy"],
                               "stop": list(u.get("containers") or []) if u["strategy"] == "stop" else []}
                              for u in units]
            module.exit_json(**result)
        repo = Repository.open(params["repository"], create=True, options=store_options(params),
                               recipients=params["encryption_recipients"])
        result["repository"] = repo.url
        result["cleaned"] = repo.cleanup()
        version = client.version()
        snap = SnapshotRun(client, repo, raw, level=params["compression_level"], tags=params["tags"],
                           stop_timeout=params["stop_timeout"], collection_version=COLLECTION_VERSION,
                           docker_version={"version": version.get("Version"),
                                           "api_version": version.get("ApiVersion")})
        snap.deployment_capture = DeploymentCapture(client, repo, raw, include_images=params["include_images"],
                                                    level=params["compression_level"])
        snap.swarm_stacks = params["swarm_stacks"]
        parallel = params["parallel"] or os.cpu_count() or 1
        return snap, snap.run(units, parallel=parallel, lock_timeout=params["lock_timeout"],
                              client_factory=lambda: connect(params))

    snap, outcome = run(module, body, name="snapshot", result=result, guard=True, repair=lambda: client,
                        ladder=(Failure((SelectionError, RepositoryError)), Failure(DockerException, engine_failed)))
    # Ansible reserves `failed` for the task's failure flag: the units go out as failed_units.
    outcome = dict(outcome)
    failed_units = outcome.pop("failed")
    result.update(outcome, failed_units=failed_units, changed=outcome["snapshot_id"] is not None)
    if outcome["snapshot_id"] and snap.swarm_result is not None:
        result["swarm"] = snap.swarm_result
        for text in snap.swarm_result["problems"]:
            module.warn(f"swarm section of snapshot {outcome['snapshot_id']}: {text}")
    if outcome["snapshot_id"] and snap.deployment_result is not None:
        result["deployment"] = snap.deployment_result
        for text in snap.deployment_result["left_out"]:
            module.warn(f"not stored in snapshot {outcome['snapshot_id']}: {text}")
        for text in snap.deployment_result["problems"]:
            module.warn(f"deployment of snapshot {outcome['snapshot_id']}: {text}")
    if result["failed_units"]:
        names = "; ".join(f"{f['id']}: {f['error']}" for f in result["failed_units"])
        where = f"snapshot {outcome['snapshot_id']} lists the others as incomplete" if outcome["snapshot_id"] \
            else "no snapshot was written"
        module.fail_json(msg=f"{len(result['failed_units'])} unit(s) failed ({where}): {names}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
