#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rebuild
short_description: Rebuild a lost Docker host from a lifeboat snapshot, one step at a time
version_added: 0.1.0
description:
  - Makes this Docker host what a lost host was, from the deployment section and the units of one of
    its snapshots (see M(lifeboat.docker.snapshot)). The role C(lifeboat.docker.dr_rebuild) runs the
    steps in order and times them.
  - "O(step=plan) changes nothing: it compares the snapshot with this host and returns what every step
    would do (RV(plan)) and a Markdown runbook for doing it by hand (RV(runbook))."
  - "O(step=host_paths) restores the captured host paths (bind-mounted directories, certificates among
    them); O(step=networks_volumes) creates the recorded networks (driver, options, IPAM, labels,
    internal, attachable) and volumes (driver, options, labels); O(step=volume_data) restores the
    volume units; O(step=images) loads the images from the snapshot's archives (or pulls them by digest
    when the snapshot has none); O(step=databases) creates and starts the database containers and
    restores their dumps (row counts checked); O(step=services) redeploys the compose projects from
    their recorded files (C(docker compose) or C(docker-compose), whichever the host has) and the
    other containers from their recorded specs, in dependency order; O(step=verify) waits until
    every service runs (healthy where it has a healthcheck) and compares the data with the manifest."
  - Every step does only what the host lacks. A volume or host path that is not empty, a database that
    holds tables, a container, network or image that exists are left as they are, so a second run
    changes nothing and a rebuild never replaces data.
  - Restores are verified before they replace anything, as M(lifeboat.docker.snapshot_restore) does,
    and the restored trees are compared with the manifest once more in place.
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.docker
  - lifeboat.docker.repository
  - lifeboat.docker.attributes.no_diff
attributes:
  check_mode:
    support: full
    description: Every step says what it would do; nothing is changed.
  idempotent:
    support: full
    description: A step finds done what an earlier run did, and changes nothing.
options:
  host:
    description: The lost host, as its snapshots name it (C(snapshot_info) lists them).
    type: str
    required: true
  snapshot:
    description:
      - V(latest) (the newest complete snapshot of O(host) by its time; never a pre-restore snapshot), a snapshot id, or a UTC date
        or date and time (V(2026-11-20), V(2026-11-20T12:00:00Z)) for the newest snapshot taken before it.
    type: str
    default: latest
  step:
    description: The step to run (see the description).
    type: str
    choices: [plan, host_paths, networks_volumes, volume_data, images, databases, services, verify]
    default: plan
  encryption_identity:
    description: The age identity file on the host that decrypts an encrypted snapshot.
    type: path
  environment:
    description:
      - "Environment values per container (V({container: {NAME: value}})), from a vault. They add to
        (and override) the values an encrypted snapshot stores; an unencrypted snapshot stores none."
      - Never shown in results.
    type: dict
    default: {}
  compose_env_files:
    description:
      - "Content of compose C(.env) files an unencrypted snapshot does not hold, by their path on the
        lost host (V({/srv/app/.env: 'KEY=value'}))."
      - Never shown in results.
    type: dict
    default: {}
  strict_units:
    description:
      - For O(step=verify), the units whose data must equal the manifest (those restored in this run);
        a difference in the others is reported, not failed (their services have written since).
    type: list
    elements: str
    default: []
  wait_timeout:
    description: Seconds to wait for a database to accept connections, or for the services to run.
    type: int
    default: 300
  runbook_repository:
    description: How the runbook names the repository (default O(repository)).
    type: str
"""

EXAMPLES = r"""
- name: What would a rebuild of web1 do here?
  lifeboat.docker.rebuild:
    repository: sftp://backup@vault.example.org/srv/lifeboat
    host: web1
    encryption_identity: /root/lifeboat.key
  register: rebuild_plan

- name: Recreate the networks and volumes of web1
  lifeboat.docker.rebuild:
    repository: /var/backups/lifeboat
    host: web1
    step: networks_volumes

- name: Redeploy its services with the secrets of an unencrypted snapshot
  lifeboat.docker.rebuild:
    repository: /var/backups/lifeboat
    host: web1
    step: services
    environment: "{{ vault_web1_environment }}"
"""

RETURN = r"""
repaired:
  description:
    - Containers an earlier, killed run had left stopped, started again now, and staging directories a killed
      restore left behind, removed (as C(staging)). Not in check mode, nor with O(step=plan) or O(step=verify).
  returned: success
  type: list
  elements: dict
snapshot_id:
  description: The snapshot rebuilt from.
  returned: always
  type: str
  sample: 20261122T103000Z-web1-3fa2c1
step:
  description: The step run.
  returned: always
  type: str
plan:
  description:
    - What every step would do on this host (O(step=plan)), each item with an C(action)
      (V(create), V(restore), V(load), V(present) ...).
    - C(bind_sources_missing) lists the bind sources of the containers to rebuild that are not on this host and
      that no unit of the snapshot restores; the services step refuses to run while there are any (the engine
      would mount an empty directory in their place). They are also in C(left_out).
  returned: when step is plan
  type: dict
  sample:
    networks: [{name: app_net, driver: bridge, action: create}]
    volume_data: [{unit: "volume:app_data", target: app_data, action: restore, bytes: 1024, files: 3}]
    services: [{kind: compose, name: shop, services: [web, worker], action: up}]
    missing_environment: {}
    bind_sources_missing: [{path: /srv/app/config.php, containers: [web]}]
    left_out: ["bind source /srv/app/config.php of web: not on this host and not in the snapshot ..."]
runbook:
  description: The Markdown runbook of this snapshot (O(step=plan)).
  returned: when step is plan
  type: str
result:
  description: What the step did (the plan's items, with C(seconds), C(verified), C(written) where they apply).
  returned: when step is not plan
  type: raw
seconds:
  description: Seconds the step took.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import DOCKER_COMMON_ARGS, DockerException, client_for
from ansible_collections.lifeboat.docker.plugins.module_utils._common.options import IDENTITY_ARGS, REPOSITORY_ARGS, store_options
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.plan import PlanError, runbook
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.apply import (
    Rebuild,
    RebuildError,
    environment_values,
    load_snapshot,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository, RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, run

STEP_CHANGES = {"host_paths": ("restore",), "volume_data": ("restore",), "images": ("load", "pull")}


def _changed(step: str, result, check: bool) -> bool:
    if step in STEP_CHANGES:
        return any(i["action"] in STEP_CHANGES[step] or i.get("tagged") for i in result)
    if step == "networks_volumes":
        return any(i["action"] == "create" for i in result["networks"] + result["volumes"])
    if step == "databases":
        return any(i.get("created") or i.get("started") or i.get("action") == "restored"
                   or (check and i["action"] == "start and restore") for i in result)
    if step == "services":
        return any(i["action"] != "present" for i in result)
    return False


def ladder(step: str) -> tuple:
    """How an exception of STEP fails the module."""
    return (Failure((PlanError, RebuildError, RepositoryError)),
            Failure(DockerException, lambda exc: f"the Docker engine failed a request during step {step}: {exc}; "
                                                 "check the engine's log"))


def main() -> None:
    argument_spec = dict(DOCKER_COMMON_ARGS)
    argument_spec.update(REPOSITORY_ARGS)
    argument_spec.update(IDENTITY_ARGS)
    argument_spec.update(
        host={"type": "str", "required": True},
        snapshot={"type": "str", "default": "latest"},
        step={"type": "str", "default": "plan",
              "choices": ["plan", "host_paths", "networks_volumes", "volume_data", "images", "databases", "services",
                          "verify"]},
        environment={"type": "dict", "default": {}, "no_log": True},
        compose_env_files={"type": "dict", "default": {}, "no_log": True},
        strict_units={"type": "list", "elements": "str", "default": []},
        wait_timeout={"type": "int", "default": 300},
        runbook_repository={"type": "str"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    check_paths(module, ("encryption_identity", "ssh_identity_file", "ssh_known_hosts_file", "rclone_config"))
    step = params["step"]
    result = {"changed": False, "snapshot_id": None, "step": step, "seconds": 0.0}
    started = time.monotonic()
    client = client_for(module)

    def body() -> None:
        repo = Repository.open(params["repository"], options=store_options(params),
                               identity=params["encryption_identity"])
        manifest = load_snapshot(repo, params["host"], params["snapshot"])
        result["snapshot_id"] = manifest["id"]
        env = environment_values(repo, manifest, params["environment"])
        rebuild = Rebuild(client, repo, manifest, env, params["compose_env_files"], params["docker_host"],
                          check=module.check_mode or step == "plan", timeout=params["wait_timeout"])
        if step == "plan":
            result["plan"] = rebuild.plan()
            result["runbook"] = runbook(manifest, params["runbook_repository"] or params["repository"])
        elif step in ("host_paths", "volume_data"):
            result["result"] = rebuild.restore_units("path" if step == "host_paths" else "volume")
        elif step == "verify":
            result["result"] = rebuild.verify(params["strict_units"])
        else:
            result["result"] = getattr(rebuild, step)()

    run(module, body, name=f"rebuild step {step}", result=result, ladder=ladder(step), guard=True,
        repair=None if step in ("plan", "verify") else lambda: client)
    result["seconds"] = round(time.monotonic() - started, 3)
    if step not in ("plan", "verify"):
        result["changed"] = _changed(step, result["result"], module.check_mode)
    if step == "verify" and result["result"]["failures"]:
        module.fail_json(msg="the rebuilt host differs from the snapshot: " + "; ".join(result["result"]["failures"])
                         + ". See result.services and result.data; fix it and run the role again.", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
