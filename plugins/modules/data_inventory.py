#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: data_inventory
short_description: Every place a Docker host keeps data, and how each must be backed up
version_added: 0.1.0
description:
  - Reads the Docker engine (containers running or not, volumes, bind-mounted host paths,
    networks, images) and the data on disk, and returns an inventory and a backup plan,
    one unit per thing to capture (RV(units)), each with a strategy, the database engine, the
    containers to quiesce in stop order and the reason for the choice.
  - "Decisions, strongest first: the O(policy) option; labels on the volume, then on the
    containers that use it (C(lifeboat.strategy), C(lifeboat.skip), C(lifeboat.engine),
    C(lifeboat.exclude), C(lifeboat.order), C(lifeboat.confidential)); detection (database engine
    from the image name, the command, the environment and on-disk markers: C(PG_VERSION), the
    C(mysql) system directory, C(dump.rdb) and C(appendonly*), C(WiredTiger*) files, the SQLite
    header); defaults."
  - "Defaults: a database server that runs and has its dump tool (found by running
    C(sh -c 'command -v TOOL') inside the container) gets V(dump) in a C(db:CONTAINER) unit; its
    data directory then becomes a V(skip) unit whose reason names the C(db:) unit, so it is never
    copied live as well. A running database without its dump tool gets a C(no_dump_tool) warning
    and V(stop). Data that a running container writes to gets V(stop) (containers of a swarm
    service get V(pause): a stopped task would be replaced). Data that is only mounted read-only,
    used by no container, or whose containers are not running (a stopped database is a consistent
    set of files; data containers that were created and never started hold data but run nothing)
    gets V(live)."
  - "Swarm: on a swarm node RV(swarm) lists this node, the services (stack, mode, replicas, the
    node each task runs on, the volumes their tasks use on this node) and the stacks. Units list
    the services whose tasks use them (RV(units[].services)); a database dumped from a task is
    named by its service (C(db:SERVICE), C(db:SERVICE.SLOT) with several replicas), since task
    containers come and go. Strategy V(stop) on a swarm task's data scales its service to 0 and
    back to its replicas (see M(lifeboat.docker.snapshot))."
  - Sockets (C(docker.sock), any C(*.sock), any socket file) and system paths (C(/proc), C(/sys),
    C(/dev), C(/run), C(/var/run), C(/var/lib/docker), C(/etc/localtime) and the like) are never
    captured; they appear in RV(binds) with their kind and as findings. Mounting the Docker socket
    is a C(docker_socket_mounted) warning (root-equivalent access to the host).
  - Every finding of severity V(warning) is also emitted as an Ansible warning.
  - Stop order follows compose C(depends_on) (the C(com.docker.compose.depends_on) label of
    compose v2; compose v1 does not record it) and C(lifeboat.order), a start rank where lower
    starts first; dependents stop first and start last. The running containers that depend on a
    container to stop are stopped with it.
options:
  include_sizes:
    description:
      - Measure each volume and bind-mounted data path (apparent size, the sum of C(st_size) of
        regular files, hard links counted once; symlinks are not followed) and count its files.
      - With V(false), RV(volumes[].size_bytes) and RV(volumes[].file_count) are V(null) and only
        the top three levels are read, for the on-disk markers.
    type: bool
    default: true
  policy:
    description:
      - The declared storage concept. A mapping whose keys are volume names, absolute host paths,
        unit ids (C(volume:NAME), C(path:/PATH), C(db:CONTAINER)) or shell globs over any of those
        (C(*) also matches C(/)). A host path key also covers the paths below it. For each item
        the most specific key wins (exact, then parent path, then glob; the longer key among
        equals).
      - "Each value is a mapping with any of: C(strategy) (V(dump), V(stop), V(pause), V(live),
        V(skip)); C(skip) (bool, same as strategy V(skip)); C(engine) (V(postgres), V(mariadb),
        V(mysql), V(redis), V(mongodb), V(sqlite), V(none)); C(exclude) (list of glob patterns
        inside the data); C(order) (int); C(confidential) (bool); C(reason) (text added to the
        unit's reason). A bare string is a strategy; an empty value declares the item and lets the
        usual rules plan it."
      - "A key C(stack:NAME) names a swarm stack: its value takes C(compose_files), the absolute paths
        of the files the stack is deployed from (as given to C(docker stack deploy -c)); they appear in
        RV(swarm.stacks) for M(lifeboat.docker.snapshot) to store (option C(swarm_stacks)). A policy
        of stack entries only declares no data: nothing is undeclared then, as without a policy."
      - A database dumped from a swarm task answers to the id data_inventory prints for it,
        C(db:SERVICE) (C(db:SERVICE.SLOT) with several replicas), as well as to its task container's
        C(db:CONTAINER)."
      - Unknown keys or values fail the module with a message naming the entry.
      - Entries that match nothing on the host give a C(policy_unmatched) finding (a warning for an
        exact key, since declared data is gone).
    type: dict
  undeclared:
    description:
      - What to do about volumes and host paths that hold data but are not mentioned in
        O(policy). Only checked when O(policy) is given.
      - V(warn) adds an C(undeclared) warning for each; V(fail) fails the module with a message
        listing them (after writing O(report)); V(ignore) only lists them in RV(undeclared).
      - A database's data volume counts as declared when its C(db:CONTAINER) unit is.
    type: str
    choices: [warn, fail, ignore]
    default: warn
  report:
    description:
      - Write the storage-concept document (Markdown) to this path. It lists host paths and their users,
        volumes and their containers, the backup plan with reasons, confidential data, what is not
        captured and why, what is undeclared, the findings.
      - The same host state gives the same bytes (no timestamps, stable order), so the task only
        reports changed when the content differs. The file is written atomically; a new file gets
        mode 0644 (an existing one keeps its mode and owner); missing parent directories are
        created.
      - In check mode nothing is written, but RV(ignore:changed) says whether it would be.
    type: path
extends_documentation_fragment:
  - lifeboat.docker.docker
attributes:
  check_mode:
    support: full
    description: Reads only; with O(report) the file is not written but changed is predicted.
  diff_mode:
    support: full
    description: With O(report), shows the difference between the old and the new document.
  idempotent:
    support: full
    description: The same host state gives the same result and the same report file.
notes:
  - Run it as root (C(become)) so that volume mountpoints under C(/var/lib/docker) can be read;
    otherwise sizes and on-disk detection are missing and an C(unreadable) finding says so.
  - With a remote engine (O(docker_host) not a C(unix://) socket) the data is not on this machine;
    nothing is measured or looked at on disk (a C(remote_engine) finding says so) and, with a
    policy, every item not declared is listed as undeclared.
  - Confidential means a name or path contains cert, certs, certificate, ssl, tls, secret, key,
    keys, private, rosauth, letsencrypt, acme.json, htpasswd or an SSH key name (as a whole word,
    so C(keycloak) does not count), or the top level of the data holds C(.key), C(.pem), C(.crt),
    C(.p12) or C(.pfx) files. Names of anonymous volumes are not looked at.
  - An anonymous volume is one whose name the engine generated (64 hex digits) and that is not
    managed by compose (no C(com.docker.compose.volume) label).
seealso:
  - name: Docker volumes
    description: How volumes, bind mounts and tmpfs mounts work.
    link: https://docs.docker.com/engine/storage/volumes/
author:
  - lifeboat.docker developers (@lifeboat)
"""

EXAMPLES = r"""
- name: Inventory the host's data and plan its backup
  lifeboat.docker.data_inventory:
  register: inventory

- name: Show what would be stopped for the backup
  ansible.builtin.debug:
    msg: "{{ item.id }}: {{ item.strategy }} ({{ item.containers | join(', ') }})"
  loop: "{{ inventory.units | selectattr('strategy', 'equalto', 'stop') }}"

- name: Check the host against the declared storage concept and write the document
  lifeboat.docker.data_inventory:
    include_sizes: true
    undeclared: fail
    report: /var/lib/lifeboat/storage-concept.md
    policy:
      postgres_data: {}                  # declared; a running PostgreSQL gets dumped
      mongo_data:
        engine: mongodb
        strategy: stop
        order: 10
      /srv/nginx/certs:
        confidential: true
      "data_*": live                     # glob: every data_* volume, copied live
      /srv/cache:
        skip: true
        reason: rebuilt on start
      db:postgres_db:
        order: 5
  become: true

- name: Quick look without measuring sizes, on a remote engine
  lifeboat.docker.data_inventory:
    docker_host: tcp://docker1.example.org:2375
    include_sizes: false
"""

RETURN = r"""
containers:
  description: Every container, running or not, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Container name.
      type: str
      sample: postgres_db
    id:
      description: Full container id.
      type: str
      sample: 3f4e1c0d2b6a...
    image:
      description:
        - The image, with the name the container was created from, its id and the first
          repository digest (V(null) for locally built images).
      type: dict
      sample: {"name": "postgres:15", "id": "sha256:5e4f...", "digest": null}
    state:
      description: C(running), C(exited), C(created), C(paused), C(restarting) or C(dead).
      type: str
      sample: running
    health:
      description: Health status, or V(null) without a health check.
      type: str
      sample: healthy
    restart_policy:
      description: Restart policy name (C(no) when none).
      type: str
      sample: unless-stopped
    labels:
      description: All labels.
      type: dict
      sample: {"lifeboat.order": "10"}
    compose:
      description:
        - From the C(com.docker.compose.*) labels, or V(null).
        - C(depends_on) is empty with compose v1, which does not record it.
      type: dict
      sample: {"project": "ease", "service": "web", "working_dir": "/srv/ease",
               "config_files": ["/srv/ease/compose.yml"], "depends_on": ["db"]}
    swarm:
      description: Swarm service and stack (C(com.docker.swarm.service.name), C(com.docker.stack.namespace)), or V(null).
      type: dict
      sample: {"service": "ease_web", "stack": "ease"}
    mounts:
      description:
        - Volumes, bind mounts and tmpfs mounts, sorted by destination.
        - Each has C(type) (V(volume), V(bind) or V(tmpfs)), C(name) (the volume's, else V(null)),
          C(source), C(destination) and C(rw).
      type: list
      elements: dict
      sample: [{"type": "volume", "name": "postgres_data", "source": "/var/lib/docker/volumes/postgres_data/_data",
                "destination": "/var/lib/postgresql/data", "rw": true}]
    networks:
      description: Names of the networks it is attached to.
      type: list
      elements: str
      sample: ["bridge"]
volumes:
  description: Every volume, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Volume name.
      type: str
      sample: postgres_data
    driver:
      description: Volume driver.
      type: str
      sample: local
    driver_options:
      description: Driver options.
      type: dict
      sample: {}
    labels:
      description: Labels.
      type: dict
      sample: {}
    mountpoint:
      description: Where the engine keeps it on the host.
      type: str
      sample: /var/lib/docker/volumes/postgres_data/_data
    anonymous:
      description: The engine generated its name (64 hex digits) and compose does not manage it.
      type: bool
      sample: false
    size_bytes:
      description: Apparent size of its regular files; V(null) when not measured or unreadable.
      type: int
      sample: 48234496
    file_count:
      description: Number of regular files; V(null) when not measured or unreadable.
      type: int
      sample: 1287
    used_by:
      description: The containers that mount it, with C(container), C(destination) and C(rw).
      type: list
      elements: dict
      sample: [{"container": "postgres_db", "destination": "/var/lib/postgresql/data", "rw": true}]
    unused:
      description: No container (running or not) mounts it.
      type: bool
      sample: false
binds:
  description: Every bind-mounted host path, sorted by path.
  returned: always
  type: list
  elements: dict
  contains:
    source:
      description: The host path.
      type: str
      sample: /srv/nginx/certs
    kind:
      description: V(data) (captured), V(socket) or V(system) (never captured).
      type: str
      sample: data
    exists:
      description: Whether the host path exists (V(null) with a remote engine).
      type: bool
      sample: true
    file_type:
      description:
        - V(dir), V(file), V(socket), V(symlink) or V(other); V(null) when it does not exist or the engine is remote.
        - A bind-mounted regular file (a config file, a certificate) is a unit of its own, captured and restored
          as one file with its owner, mode and extended attributes.
      type: str
      sample: file
    confidential:
      description: Looks like certificates, keys or secrets.
      type: bool
      sample: true
    used_by:
      description: The containers that mount it, with C(container), C(destination) and C(rw).
      type: list
      elements: dict
      sample: [{"container": "nginx", "destination": "/etc/nginx/certs", "rw": false}]
    size_bytes:
      description: Apparent size for data paths; V(null) when not measured.
      type: int
      sample: 8192
    file_count:
      description: Regular files; V(null) when not measured.
      type: int
      sample: 4
networks:
  description: Every network, with the containers attached to it.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "bridge", "id": "9a1b...", "driver": "bridge", "scope": "local", "internal": false,
            "labels": {}, "containers": ["nginx"]}]
images:
  description: Every image, with its tags, digests, size and the containers created from it.
  returned: always
  type: list
  elements: dict
  sample: [{"id": "sha256:5e4f...", "tags": ["postgres:15"], "digests": [], "size_bytes": 598000000,
            "used_by": ["postgres_db"]}]
units:
  description:
    - The backup plan, sorted by id. Every volume and every bind-mounted data path is one unit;
      a running database that gets dumped is one more (C(db:CONTAINER)).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Stable id, C(volume:NAME), C(path:/ABS/PATH) or C(db:CONTAINER).
      type: str
      sample: "db:postgres_db"
    kind:
      description: V(volume), V(path) or V(database).
      type: str
      sample: database
    source:
      description: Volume name, host path, or the database container's name.
      type: str
      sample: postgres_db
    strategy:
      description: V(dump), V(stop), V(pause), V(live) or V(skip).
      type: str
      sample: dump
    engine:
      description: V(postgres), V(mariadb), V(mysql), V(redis), V(mongodb), V(sqlite) or V(none).
      type: str
      sample: postgres
    containers:
      description: Containers to quiesce, in stop order (dependents first); start them in reverse.
      type: list
      elements: str
      sample: ["web", "worker"]
    reason:
      description: Why this strategy, in a sentence.
      type: str
      sample: "PostgreSQL runs in postgres_db (image postgres:15): dumped with pg_dumpall while it runs"
    confidential:
      description: Holds certificates, keys or secrets.
      type: bool
      sample: false
    confidential_reason:
      description: Why it counts as confidential, or V(null).
      type: str
      sample: "'/srv/nginx/certs' names certs"
    declared:
      description: The policy mentions it (always V(false) without a policy).
      type: bool
      sample: true
    exclude:
      description: Glob patterns left out of the capture (from the policy or C(lifeboat.exclude)), and sockets found inside.
      type: list
      elements: str
      sample: ["cache/*"]
    order:
      description: From the policy or C(lifeboat.order), or V(null).
      type: int
      sample: 10
    sqlite:
      description:
        - SQLite databases found in the unit (paths relative to it, by their header; WAL and journal files
          tell databases without a suffix). With strategy V(live), the snapshot copies each with SQLite's
          online backup API and checks the copy with C(PRAGMA integrity_check) while the application runs.
        - Only present when the unit holds some.
      type: list
      elements: str
      returned: when the unit holds SQLite databases
      sample: ["db.sqlite3"]
    container:
      description: The database container (C(db:) units only).
      type: str
      sample: postgres_db
    volume:
      description: The volume name or host path the database keeps its data in, or V(null) (C(db:) units only).
      type: str
      sample: postgres_data
    services:
      description: The swarm services whose tasks use the unit (empty outside swarm).
      type: list
      elements: str
      sample: [maps_registrar, maps_renderer]
    service:
      description: The swarm service a database unit is dumped from (C(db:) units of swarm tasks only).
      type: str
      sample: maps_db
swarm:
  description:
    - The swarm this engine is part of. Services and tasks are known on a manager; a worker knows
      only its own task containers.
  returned: when the engine is part of a swarm
  type: dict
  contains:
    node:
      description: This node (C(id), C(hostname), C(role), C(manager), C(cluster_id), C(addr), C(nodes)).
      type: dict
      sample: {"id": "m2kq...", "hostname": "maps1", "role": "manager", "manager": true,
               "cluster_id": "x7c1...", "addr": "10.0.0.5", "nodes": 1}
    services:
      description:
        - Every service with C(name), C(id), C(stack), C(short_name), C(mode) (V(replicated) or
          V(global)), C(replicas), C(running) (tasks running), C(tasks) (C(task), C(slot), C(node),
          C(this_node), C(state), C(container)), C(nodes), C(volumes) (used by its tasks on this
          node), C(image), C(networks), C(constraints).
      type: list
      elements: dict
      sample: [{"name": "maps_db", "stack": "maps", "mode": "replicated", "replicas": 1, "running": 1,
                "nodes": ["maps1"], "volumes": ["maps_db-data"], "image": "postgis/postgis:15-3.4"}]
    stacks:
      description:
        - Every stack (C(com.docker.stack.namespace)) with C(name), C(services), C(volumes) (on this
          node), C(compose_files) and C(compose_files_from) (the policy entry C(stack:NAME), or the
          label C(lifeboat.stack.compose_files) on one of its services, or V(null) when unknown).
      type: list
      elements: dict
      sample: [{"name": "maps", "services": ["maps_db", "maps_proxy"], "volumes": ["maps_db-data"],
                "compose_files": ["/srv/maps/docker-stack.yml"],
                "compose_files_from": "label lifeboat.stack.compose_files on service maps_proxy"}]
findings:
  description: What an operator should know, warnings first. Each warning is also an Ansible warning.
  returned: always
  type: list
  elements: dict
  contains:
    code:
      description:
        - One of C(docker_socket_mounted), C(socket_mounted), C(system_path_mounted), C(no_dump_tool),
          C(dump_not_possible), C(unused_volume), C(anonymous_volume_with_data), C(undeclared),
          C(policy_unmatched), C(invalid_label), C(conflicting_labels), C(stop_order_cycle),
          C(swarm_service_container), C(missing_bind_source), C(unreadable), C(remote_engine).
      type: str
      sample: docker_socket_mounted
    severity:
      description: V(warning) or V(info).
      type: str
      sample: warning
    subject:
      description: The volume, host path, container or policy key concerned.
      type: str
      sample: dockerbridge
    message:
      description: What is wrong and what to do.
      type: str
      sample: "container dockerbridge mounts the Docker socket /var/run/docker.sock at /var/run/docker.sock: ..."
undeclared:
  description:
    - Volumes and host paths holding data that O(policy) does not mention, with C(id), C(kind), C(source)
      and C(size_bytes); empty without a policy.
  returned: always
  type: list
  elements: dict
  sample: [{"id": "volume:lft_cache", "kind": "volume", "source": "lft_cache", "size_bytes": 40960}]
report:
  description: The path of the storage-concept document written (or that would be written in check mode), or V(null).
  returned: always
  type: str
  sample: /var/lib/lifeboat/storage-concept.md
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import (
    DOCKER_COMMON_ARGS,
    DockerException,
    client_for,
    connection_settings,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.plan import (
    PolicyError,
    build_inventory,
    database_candidates,
    declares_data,
    undeclared_message,
    validate_policy,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.probe import (
    probe_dump_tools,
    read_engine,
    scan_all,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, run
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.report import (
    read_text,
    render,
    write_atomic,
)


def main() -> None:
    argument_spec = dict(DOCKER_COMMON_ARGS)
    argument_spec.update(
        include_sizes={"type": "bool", "default": True},
        policy={"type": "dict"},
        undeclared={"type": "str", "choices": ["warn", "fail", "ignore"], "default": "warn"},
        report={"type": "path"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    check_paths(module, ("report",))

    try:
        policy = validate_policy(params["policy"]) if params["policy"] is not None else None
    except PolicyError as exc:
        module.fail_json(msg=f"invalid policy: {exc}")
    report_path = params["report"]
    if report_path and os.path.isdir(report_path):
        module.fail_json(msg=f"report: {report_path} is a directory; give the path of the Markdown "
                             "file to write, for example /var/lib/lifeboat/storage-concept.md")

    client = client_for(module)
    base_url = connection_settings(params)[0]
    local = base_url.startswith("unix://")

    def body() -> tuple:
        raw = read_engine(client)
        scans = scan_all(raw, measure=params["include_sizes"]) if local else {}
        candidates = database_candidates(raw, scans, policy)
        tools = probe_dump_tools(client, candidates, raw)
        return raw, build_inventory(raw, scans, policy, tools, include_sizes=params["include_sizes"],
                                    undeclared=params["undeclared"])

    raw, inventory = run(module, body, name="data_inventory", ladder=(Failure(
        DockerException, lambda exc: f"the Docker engine at {base_url} failed a request while taking the "
                                     f"inventory: {exc}; check the engine's log (journalctl -u docker)",
        traceback=True),))
    if not local:
        inventory["findings"].append({
            "code": "remote_engine", "severity": "info", "subject": base_url,
            "message": f"the engine at {base_url} is not on this machine: volumes and host paths "
                       "were not measured or looked at on disk; run the module on the Docker host "
                       "itself for sizes and on-disk detection"})

    for finding in inventory["findings"]:
        if finding["severity"] == "warning":
            module.warn(finding["message"])

    result = dict(changed=False, report=None, **inventory)
    if report_path:
        text = render(inventory, raw.get("host") or "", policy_given=declares_data(policy))
        before = read_text(report_path)
        result["report"] = report_path
        if before != text:
            result["changed"] = True
            if not module.check_mode:
                try:
                    write_atomic(report_path, text)
                except OSError as exc:
                    module.fail_json(msg=f"cannot write the report to {report_path}: "
                                         f"{exc.strerror or exc}; check that the directory is "
                                         "writable (become: true) and the disk not full",
                                     **result)
        if module._diff:
            result["diff"] = {"before": before or "", "after": text,
                              "before_header": report_path, "after_header": report_path}

    if params["undeclared"] == "fail" and inventory["undeclared"]:
        module.fail_json(msg=undeclared_message(inventory["undeclared"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
