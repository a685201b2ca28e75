#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: swarm_rebuild
short_description: Redeploy the swarm stacks of a lifeboat snapshot and put their data back
version_added: 0.1.0
description:
  - Rebuilds the swarm stacks a snapshot recorded (its C(swarm) section, written by
    M(lifeboat.docker.snapshot) on a swarm manager) on this engine, typically a fresh host.
  - "In order, for each stack: the engine becomes a swarm manager (C(docker swarm init)) unless it
    is one; the stack's volume units are restored into their volumes (created with their recorded
    labels) before anything runs on them; the stack's compose files, as stored with the snapshot,
    or rebuilt from the recorded service specs, are deployed with C(docker stack deploy); every
    service must run its replicas; then the dumps of the databases that ran as the stack's tasks
    are restored into the tasks that run now (SQL engines through their client; Redis by placing
    its RDB while the service is scaled to 0 and back)."
  - "Images are not pulled: they must be on the engine (loaded from the snapshot's image archives
    by the dr_rebuild role, or from a registry)."
  - Rebuilt from specs, a compose file names the environment variables the services had, never
    their values (a snapshot does not record them); give them with O(environment).
  - Volumes and databases restore as M(lifeboat.docker.snapshot_restore) does; content that exists
    already is replaced only with O(force), and kept aside first.
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.docker
  - lifeboat.docker.repository
  - lifeboat.docker.attributes.no_diff
attributes:
  check_mode:
    support: full
    description: Says which stacks, volumes and dumps would be restored; touches nothing.
  idempotent:
    support: none
    description: Every run deploys and restores again (with O(force), over what is there).
options:
  snapshot:
    description:
      - The snapshot, by id, or V(latest) (the newest complete snapshot of O(host) that records a swarm, by
        its time; never a pre-restore snapshot).
    type: str
    default: latest
  host:
    description: The host the snapshot was taken on (for V(latest)); any host when not given.
    type: str
  stacks:
    description: Names of the stacks to rebuild; all stacks of the snapshot when empty.
    type: list
    elements: str
    default: []
  source:
    description:
      - V(auto) deploys the compose files stored with the snapshot, or the recorded service specs
        when it has none; V(compose) requires the stored files; V(specs) always rebuilds from the
        specs.
    type: str
    choices: [auto, compose, specs]
    default: auto
  environment:
    description:
      - Environment values for a stack rebuilt from specs, by service (short name such as V(db),
        full name such as V(maps_db), or V(*) for every service).
    type: dict
    default: {}
  advertise_addr:
    description:
      - Address given to C(docker swarm init --advertise-addr) when the engine is in no swarm yet
        (V(127.0.0.1) for a single node that needs no other nodes).
    type: str
  listen_addr:
    description: Address given to C(docker swarm init --listen-addr).
    type: str
  compose_dir:
    description: Where the compose files are written for C(docker stack deploy) (one folder per stack).
    type: path
    default: /var/lib/lifeboat/stacks
  restore_volumes:
    description: Restore the stack's volume units before the deploy.
    type: bool
    default: true
  restore_dumps:
    description: Restore the dumps of the stack's databases once its services run.
    type: bool
    default: true
  force:
    description:
      - Replace existing content (a volume that is not empty, a database server that holds
        databases, as a freshly started PostgreSQL with C(POSTGRES_DB) does); it is kept aside first.
    type: bool
    default: false
  existing:
    description:
      - What to do with a stack that is deployed on this engine already (it has services).
      - V(replace) restores its volumes and dumps again and deploys it again (content replaced is kept aside,
        with O(force)). V(keep) leaves it as it is (RV(stacks) says V(present)), so that running a rebuild again
        changes nothing and makes no new C(.pre-restore-*) volumes; the role lifeboat.docker.dr_rebuild uses it.
    type: str
    choices: [replace, keep]
    default: replace
  verify:
    description: Compare restored trees with the snapshot's index and restored tables' row counts with the dump's.
    type: bool
    default: true
  converge_timeout:
    description: Seconds every service of a stack gets to run its replicas after the deploy.
    type: int
    default: 300
  stop_timeout:
    description: Seconds a task gets to stop when a service is scaled to 0 (Redis restore, volume replaced).
    type: int
    default: 30
  encryption_identity:
    description: The age identity file to read an encrypted snapshot with.
    type: path
"""

EXAMPLES = r"""
- name: Rebuild every stack of the newest snapshot of the old manager on this fresh host
  lifeboat.docker.swarm_rebuild:
    repository: /mnt/backups/lifeboat
    host: maps1
    advertise_addr: "{{ ansible_default_ipv4.address }}"
    force: true

- name: Rebuild one stack from its recorded service specs
  lifeboat.docker.swarm_rebuild:
    snapshot: 20261122T103000Z-maps1-3fa2c1
    stacks: [maps]
    source: specs
    environment:
      db: {POSTGRES_PASSWORD: "{{ vault_maps_db_password }}", POSTGRES_DB: maps}
"""

RETURN = r"""
snapshot_id:
  description: The snapshot the stacks were rebuilt from.
  returned: always
  type: str
  sample: 20261122T103000Z-maps1-3fa2c1
swarm:
  description: What was done to make the engine a swarm manager.
  returned: unless check mode
  type: str
  sample: initialized
stacks:
  description:
    - Per stack, what was deployed and restored; C(action) is V(rebuilt), or V(present) for a stack left as it was
      (O(existing=keep)).
  returned: always
  type: list
  elements: dict
  sample:
    - stack: maps
      action: rebuilt
      source: compose
      compose_files: [/var/lib/lifeboat/stacks/maps/00-docker-stack.yml]
      volumes: [{unit: "volume:maps_instance-data", target: maps_instance-data, files: 12, bytes: 40960}]
      dumps: [{unit: "db:maps_db", service: maps_db, engine: postgres, target: maps_db.1.x8f..., verified: true}]
      services: {maps_db: 1/1, maps_redis: 1/1}
      seconds: 41.2
  contains:
    source:
      description: V(compose) (the stored files) or V(specs) (rebuilt from the service specs).
      type: str
    volumes:
      description: The volume units restored, before the deploy.
      type: list
      elements: dict
    dumps:
      description: The database units restored into the running tasks.
      type: list
      elements: dict
    services:
      description: Running tasks / replicas of every service of the stack at the end.
      type: dict
plan:
  description: In check mode, the stacks with the units that would be restored.
  returned: check mode
  type: list
  elements: dict
  sample: [{stack: maps, action: rebuild, source: compose, volumes: ["volume:maps_instance-data"], dumps: ["db:maps_db"]}]
repaired:
  description:
    - Containers and services an earlier, killed run had left stopped or scaled to 0, brought back now.
    - Staging directories a killed restore left behind, removed now (with C(staging) instead of C(container)).
  returned: always
  type: list
  elements: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import ArchiveError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import (
    DOCKER_COMMON_ARGS,
    DockerException,
    client_for,
    connection_settings,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._common.options import IDENTITY_ARGS, REPOSITORY_ARGS, store_options
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository, RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.files import RestoreError
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.databases import DbRestoreError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, engine_failed, run
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm import SwarmError, ensure_swarm
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm_apply import (
    SOURCES,
    SwarmRebuild,
    check_plan,
    choose_snapshot,
    deployed_stacks,
    no_swarm_snapshot,
    pick_stacks,
    swarm_section,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._data.tarcheck import UnsafeArchive


def ladder(result: dict) -> tuple:
    """How an exception fails the module (RESULT: the module's result as it is then)."""
    return (Failure(UnsafeArchive, lambda exc: f"refused: an archive of the snapshot is unsafe to extract ({exc})"),
            Failure((RestoreError, DbRestoreError, RepositoryError, ArchiveError, StoreError),
                    lambda exc: f"{exc} (stacks done before this one: {len(result['stacks'])})"),
            Failure(SwarmError),
            Failure(DockerException, engine_failed))


def main() -> None:
    argument_spec = dict(DOCKER_COMMON_ARGS)
    argument_spec.update(REPOSITORY_ARGS)
    argument_spec.update(IDENTITY_ARGS)
    argument_spec.update(
        snapshot={"type": "str", "default": "latest"},
        host={"type": "str"},
        stacks={"type": "list", "elements": "str", "default": []},
        source={"type": "str", "choices": list(SOURCES), "default": "auto"},
        environment={"type": "dict", "default": {}, "no_log": True},
        advertise_addr={"type": "str"},
        listen_addr={"type": "str"},
        compose_dir={"type": "path", "default": "/var/lib/lifeboat/stacks"},
        restore_volumes={"type": "bool", "default": True},
        restore_dumps={"type": "bool", "default": True},
        force={"type": "bool", "default": False},
        existing={"type": "str", "choices": ["replace", "keep"], "default": "replace"},
        verify={"type": "bool", "default": True},
        converge_timeout={"type": "int", "default": 300},
        stop_timeout={"type": "int", "default": 30},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    check_paths(module, ("compose_dir", "encryption_identity", "ssh_identity_file", "ssh_known_hosts_file", "rclone_config"))
    client = client_for(module)
    result = {"changed": False, "snapshot_id": None, "stacks": [], "repaired": []}
    environment = {str(k): {str(n): str(v) for n, v in (vals or {}).items()} for k, vals in params["environment"].items()}

    def body() -> None:
        repo = Repository.open(params["repository"], options=store_options(params),
                               identity=params["encryption_identity"])
        if params["snapshot"] == "latest":
            chosen = choose_snapshot(repo.manifests()[0], params["host"])
            if chosen is None:
                module.fail_json(msg=no_swarm_snapshot(repo.url, params["host"]), **result)
            wanted = chosen["id"]
        else:
            wanted = params["snapshot"]
        manifest = repo.resolve(wanted)
        repo.recipients = repo.recipients or (manifest.get("encryption") or {}).get("recipients")
        result["snapshot_id"] = manifest["id"]
        stacks = pick_stacks(swarm_section(manifest), params["stacks"])
        keep = deployed_stacks(client, stacks) if params["existing"] == "keep" else []
        if module.check_mode:
            result["plan"] = check_plan(manifest, stacks, keep, params["source"])
            result["changed"] = any(p["action"] == "rebuild" for p in result["plan"])
            module.exit_json(**result)
        result["swarm"] = ensure_swarm(client, params["advertise_addr"], params["listen_addr"])
        result["changed"] = result["swarm"] == "initialized"
        docker_host = connection_settings(params)[0]
        rebuild = SwarmRebuild(client, repo, docker_host, compose_dir=params["compose_dir"], force=params["force"],
                               verify=params["verify"], stop_timeout=params["stop_timeout"],
                               converge_timeout=params["converge_timeout"])
        os.makedirs(params["compose_dir"], mode=0o700, exist_ok=True)
        for stack in stacks:
            if stack["name"] in keep:
                result["stacks"].append({"stack": stack["name"], "action": "present"})
                continue
            result["changed"] = True
            result["stacks"].append(dict(rebuild.rebuild(manifest, stack, params["source"], environment,
                                                         params["restore_volumes"], params["restore_dumps"]),
                                         action="rebuilt"))

    run(module, body, name="swarm_rebuild", result=result, ladder=ladder(result), guard=True, repair=lambda: client)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
