# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Swarm services and stacks: what runs as `docker stack deploy` made it, and how to bring it back.

Swarm changes two rules of a plain Docker host: a task container stopped by hand is replaced at
once by the orchestrator (so "stop" means scaling the service to 0 and back to its replicas), and
volumes are per node (so only the volumes on this node are this node's data).

Pure parts: the records of services, stacks and this node (for data_inventory and the manifest's
"swarm" section), the units' service names, and a compose file rebuilt from recorded specs.
Effects: read_swarm() (the engine's swarm view), ServiceScaler (scale to 0 and back, journalled by
_quiesce.Quiesced), capture_swarm() (the section, compose files stored as objects) and the rebuild
helpers (swarm init, stack deploy, convergence, the task container of a service).
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import DockerException
from ansible_collections.lifeboat.docker.plugins.module_utils._common.files import write_atomic

SECTION_VERSION = 1
STACK_LABEL = "com.docker.stack.namespace"
SERVICE_ID_LABEL = "com.docker.swarm.service.id"
SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
TASK_NAME_LABEL = "com.docker.swarm.task.name"
COMPOSE_FILES_LABEL = "lifeboat.stack.compose_files"
MAX_COMPOSE_FILE = 4 * 1024 * 1024
COMPOSE_VERSION = "3.8"


class SwarmError(DockerException):
    """A swarm operation failed; the message says which service or stack and what to do."""


# ---------------------------------------------------------------------------------------------
# Pure: records
# ---------------------------------------------------------------------------------------------

def is_task(labels: dict[str, str] | None) -> bool:
    """Whether a container (by its labels) is a task of a swarm service."""
    return bool((labels or {}).get(SERVICE_ID_LABEL))


def _duration(ns: Any) -> str | None:
    """Nanoseconds (as the API gives them) as a compose duration."""
    if not isinstance(ns, int) or ns <= 0:
        return None
    if ns % 1_000_000_000 == 0:
        return f"{ns // 1_000_000_000}s"
    return f"{ns // 1_000_000}ms"


def service_record(service: dict[str, Any], network_names: dict[str, str]) -> dict[str, Any]:
    """What a rebuild needs of a service, from its inspect dict; environment variable NAMES only."""
    spec = service.get("Spec") or {}
    template = spec.get("TaskTemplate") or {}
    cspec = template.get("ContainerSpec") or {}
    labels = dict(spec.get("Labels") or {})
    stack = labels.get(STACK_LABEL)
    name = spec.get("Name") or ""
    mode = spec.get("Mode") or {}
    if "Global" in mode:
        mode_name, replicas = "global", None
    else:
        mode_name, replicas = "replicated", int(((mode.get("Replicated") or {}).get("Replicas")) or 0)
    image = cspec.get("Image") or ""
    endpoint = spec.get("EndpointSpec") or (service.get("Endpoint") or {}).get("Spec") or {}
    short = name[len(stack) + 1:] if stack and name.startswith(stack + "_") else name
    networks = []
    for net in template.get("Networks") or spec.get("Networks") or []:
        target = net.get("Target") or ""
        # stack deploy gives every service its short name as an alias: not worth recording
        networks.append({"name": network_names.get(target, target),
                         "aliases": sorted(a for a in net.get("Aliases") or [] if a != short)})
    health = cspec.get("Healthcheck") or None
    restart = template.get("RestartPolicy") or {}
    return {
        "name": name,
        "id": service.get("ID"),
        "stack": stack,
        "short_name": short,
        "image": image.split("@", 1)[0] if "@sha256:" in image else image,
        "image_digest": image.split("@", 1)[1] if "@sha256:" in image else None,
        "mode": mode_name,
        "replicas": replicas,
        "command": cspec.get("Command"),
        "args": cspec.get("Args"),
        "working_dir": cspec.get("Dir") or None,
        "user": cspec.get("User") or None,
        "hostname": cspec.get("Hostname") or None,
        "env_names": sorted({str(e).split("=", 1)[0] for e in cspec.get("Env") or []}),
        "labels": {k: v for k, v in labels.items() if not k.startswith("com.docker.stack.")},
        "container_labels": {k: v for k, v in (cspec.get("Labels") or {}).items()
                             if not k.startswith("com.docker.stack.")},
        "mounts": [{"type": m.get("Type") or "volume", "source": m.get("Source"), "target": m.get("Target"),
                    "read_only": bool(m.get("ReadOnly"))} for m in cspec.get("Mounts") or []],
        "networks": sorted(networks, key=lambda n: n["name"]),
        "constraints": sorted((template.get("Placement") or {}).get("Constraints") or []),
        "ports": [{"target": p.get("TargetPort"), "published": p.get("PublishedPort"),
                   "protocol": p.get("Protocol") or "tcp", "mode": p.get("PublishMode") or "ingress"}
                  for p in endpoint.get("Ports") or []],
        "endpoint_mode": endpoint.get("Mode") or "vip",
        "restart_policy": {"condition": restart.get("Condition"), "delay": _duration(restart.get("Delay")),
                           "max_attempts": restart.get("MaxAttempts")} if restart else None,
        "stop_grace_period": _duration(cspec.get("StopGracePeriod")),
        "healthcheck": {"test": health.get("Test"), "interval": _duration(health.get("Interval")),
                        "timeout": _duration(health.get("Timeout")), "retries": health.get("Retries"),
                        "start_period": _duration(health.get("StartPeriod"))} if health else None,
        "secrets": sorted(s.get("SecretName") for s in cspec.get("Secrets") or [] if s.get("SecretName")),
        "configs": sorted(c.get("ConfigName") for c in cspec.get("Configs") or [] if c.get("ConfigName")),
    }


def node_record(swarm: dict[str, Any]) -> dict[str, Any]:
    node = next((n for n in swarm.get("nodes") or [] if n.get("ID") == swarm.get("node_id")), {})
    return {"id": swarm.get("node_id"), "hostname": (node.get("Description") or {}).get("Hostname"),
            "role": (node.get("Spec") or {}).get("Role") or ("manager" if swarm.get("manager") else "worker"),
            "manager": bool(swarm.get("manager")), "cluster_id": swarm.get("cluster_id"),
            "addr": swarm.get("addr"), "nodes": len(swarm.get("nodes") or []) or None}


def _containers_by_id(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a.get("Id"): a for a in raw.get("containers") or []}


def services_of(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Every service (manager) with its running tasks, the node each runs on, and the volumes its
    tasks on this node use. On a worker only the services of this node's task containers are
    known (from their labels)."""
    swarm = raw.get("swarm") or {}
    network_names = {n.get("Id"): n.get("Name") for n in raw.get("networks") or []}
    hostnames = {n.get("ID"): (n.get("Description") or {}).get("Hostname") for n in swarm.get("nodes") or []}
    containers = _containers_by_id(raw)
    out = []
    if swarm.get("manager"):
        records = [service_record(s, network_names) for s in swarm.get("services") or []]
    else:
        seen: dict[str, dict[str, Any]] = {}
        for attrs in raw.get("containers") or []:
            labels = (attrs.get("Config") or {}).get("Labels") or {}
            if is_task(labels) and labels[SERVICE_ID_LABEL] not in seen:
                seen[labels[SERVICE_ID_LABEL]] = {"name": labels.get(SERVICE_NAME_LABEL), "id": labels[SERVICE_ID_LABEL],
                                                  "stack": labels.get(STACK_LABEL), "mode": None, "replicas": None}
        records = list(seen.values())
    for rec in records:
        tasks = []
        for task in swarm.get("tasks") or []:
            if task.get("ServiceID") != rec["id"] or task.get("DesiredState") != "running":
                continue
            cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
            attrs = containers.get(cid) or {}
            tasks.append({"task": task.get("ID"), "slot": task.get("Slot"), "node": hostnames.get(task.get("NodeID"),
                                                                                                  task.get("NodeID")),
                          "this_node": task.get("NodeID") == swarm.get("node_id"),
                          "state": (task.get("Status") or {}).get("State"),
                          "container": (attrs.get("Name") or "").lstrip("/") or None})
        if not swarm.get("manager"):  # the worker's own task containers
            for attrs in raw.get("containers") or []:
                labels = (attrs.get("Config") or {}).get("Labels") or {}
                if labels.get(SERVICE_ID_LABEL) == rec["id"] and (attrs.get("State") or {}).get("Running"):
                    tasks.append({"task": None, "slot": None, "node": None, "this_node": True, "state": "running",
                                  "container": (attrs.get("Name") or "").lstrip("/")})
        volumes = set()
        for attrs in raw.get("containers") or []:
            labels = (attrs.get("Config") or {}).get("Labels") or {}
            if labels.get(SERVICE_ID_LABEL) != rec["id"]:
                continue
            for mount in attrs.get("Mounts") or []:
                if mount.get("Type") == "volume" and mount.get("Name"):
                    volumes.add(mount["Name"])
        rec = dict(rec, tasks=sorted(tasks, key=lambda t: (t["slot"] or 0, t["container"] or "")),
                   running=sum(1 for t in tasks if t["state"] == "running"),
                   nodes=sorted({t["node"] for t in tasks if t["node"]}), volumes=sorted(volumes))
        out.append(rec)
    return sorted(out, key=lambda r: r["name"] or "")


def compose_files_of(stack: str, services: list[dict[str, Any]],
                     policy: dict[str, dict[str, Any]] | None) -> tuple[list[str], str | None]:
    """(compose files, where they were given) of a stack: the policy entry stack:NAME, else the
    label lifeboat.stack.compose_files (comma-separated absolute paths) on one of its services."""
    entry = (policy or {}).get(f"stack:{stack}") or {}
    if entry.get("compose_files"):
        return list(entry["compose_files"]), f"policy entry 'stack:{stack}'"
    for rec in sorted(services, key=lambda r: r["name"] or ""):
        value = (rec.get("labels") or {}).get(COMPOSE_FILES_LABEL)
        if value:
            return [p.strip() for p in value.split(",") if p.strip()], \
                f"label {COMPOSE_FILES_LABEL} on service {rec['name']}"
    return [], None


def stacks_of(raw: dict[str, Any], services: list[dict[str, Any]],
              policy: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The stacks (by com.docker.stack.namespace) with their services, the volumes on this node
    and their compose files when known."""
    names = sorted({s["stack"] for s in services if s.get("stack")})
    out = []
    for stack in names:
        members = [s for s in services if s.get("stack") == stack]
        volumes = sorted({v.get("Name") for v in raw.get("volumes") or []
                          if (v.get("Labels") or {}).get(STACK_LABEL) == stack} |
                         {v for s in members for v in s["volumes"]})
        files, how = compose_files_of(stack, members, policy)
        out.append({"name": stack, "services": [s["name"] for s in members], "volumes": volumes,
                    "compose_files": files, "compose_files_from": how})
    return out


def validate_stack_policy(key: str, value: dict[str, Any]) -> dict[str, Any]:
    """A policy entry stack:NAME, normalised; raises ValueError with the fix."""
    allowed = ("compose_files", "reason")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ValueError(f"policy entry {key!r}: unknown setting(s) {', '.join(unknown)}; a stack entry takes "
                         f"{', '.join(allowed)}")
    files = value.get("compose_files") or []
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not all(isinstance(f, str) and f.startswith("/") for f in files):
        raise ValueError(f"policy entry {key!r}: compose_files must be a list of absolute paths of the stack's "
                         "compose files, as given to docker stack deploy -c")
    return {"compose_files": list(files), "reason": value.get("reason")}


def inventory_section(raw: dict[str, Any], policy: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """data_inventory's `swarm` result: this node, the services and the stacks; None outside swarm."""
    swarm = raw.get("swarm")
    if not swarm:
        return None
    services = services_of(raw)
    public = [{k: v for k, v in s.items() if k in (
        "name", "id", "stack", "short_name", "mode", "replicas", "running", "nodes", "tasks", "volumes", "image",
        "networks", "constraints")} for s in services]
    return {"node": node_record(swarm), "services": public, "stacks": stacks_of(raw, services, policy)}


def task_slot(service: str, task_name: str) -> str | None:
    """The slot of a replicated task from its name (SERVICE.SLOT.TASKID), None when it has none."""
    return task_name[len(service) + 1:].split(".", 1)[0] if task_name.startswith(service + ".") else None


def db_unit_id(service: str, replicas: int | None, slot: Any) -> str:
    """The id of a database dumped from a task: the service names it (task containers come and go)."""
    if replicas is not None and replicas > 1 and slot:
        return f"db:{service}.{slot}"
    return f"db:{service}"


def annotate_units(units: list[dict[str, Any]], raw: dict[str, Any]) -> None:
    """Units name the services whose tasks use them (`services`); a database unit dumped from a
    task is named by its service (db:SERVICE, db:SERVICE.SLOT with several replicas), `container`
    still naming the task container it is dumped from now."""
    containers = {(a.get("Name") or "").lstrip("/"): a for a in raw.get("containers") or []}
    replicas = {s["name"]: s.get("replicas") for s in services_of(raw)} if raw.get("swarm") else {}

    def labels_of(name: str) -> dict[str, str]:
        return ((containers.get(name) or {}).get("Config") or {}).get("Labels") or {}

    for unit in units:
        names = set(unit.get("containers") or [])
        if unit.get("container"):
            names.add(unit["container"])
        for attrs in raw.get("containers") or []:
            for mount in attrs.get("Mounts") or []:
                hit = (unit["kind"] == "volume" and mount.get("Type") == "volume" and mount.get("Name") == unit["source"]) \
                    or (unit["kind"] == "path" and mount.get("Type") == "bind"
                        and posixpath.normpath(mount.get("Source") or "") == unit["source"])
                if hit:
                    names.add((attrs.get("Name") or "").lstrip("/"))
        services = sorted({labels_of(n)[SERVICE_NAME_LABEL] for n in names if labels_of(n).get(SERVICE_NAME_LABEL)})
        unit["services"] = services
        if unit["kind"] == "database" and unit.get("container"):
            labels = labels_of(unit["container"])
            service = labels.get(SERVICE_NAME_LABEL)
            if service:
                slot = task_slot(service, labels.get(TASK_NAME_LABEL) or "")
                unit["service"] = service
                unit["id"] = db_unit_id(service, replicas.get(service), slot)


# ---------------------------------------------------------------------------------------------
# Pure: a compose file from recorded specs
# ---------------------------------------------------------------------------------------------

def _short(name: str, stack: str) -> str:
    return name[len(stack) + 1:] if name.startswith(stack + "_") else name


def compose_from_specs(stack: dict[str, Any], environment: dict[str, dict[str, str]] | None = None
                       ) -> tuple[dict[str, Any], list[str]]:
    """(compose document for `docker stack deploy`, environment variables with no value) of a
    recorded stack. ENVIRONMENT maps a service (short or full name, or "*" for all) to values;
    the snapshot recorded only the names."""
    name = stack["name"]
    environment = environment or {}
    own_networks = {n["name"] for n in stack.get("networks") or [] if not n.get("external")}
    own_volumes = {v["name"] for v in stack.get("volumes") or []}
    doc: dict[str, Any] = {"version": COMPOSE_VERSION, "services": {}, "networks": {}, "volumes": {}}
    missing: list[str] = []
    for svc in stack.get("services") or []:
        short = svc.get("short_name") or _short(svc["name"], name)
        values = dict(environment.get("*") or {})
        values.update(environment.get(short) or {})
        values.update(environment.get(svc["name"]) or {})
        entry: dict[str, Any] = {"image": svc["image"] + (f"@{svc['image_digest']}" if svc.get("image_digest") else "")}
        if svc.get("command"):
            entry["entrypoint"] = svc["command"]
        if svc.get("args"):
            entry["command"] = svc["args"]
        for key, field in (("working_dir", "working_dir"), ("user", "user"), ("hostname", "hostname"),
                           ("stop_grace_period", "stop_grace_period")):
            if svc.get(field):
                entry[key] = svc[field]
        env = {}
        for var in svc.get("env_names") or []:
            if var in values:
                env[var] = str(values[var])
            else:
                missing.append(f"{svc['name']}: {var}")
        if env:
            entry["environment"] = env
        if svc.get("container_labels"):
            entry["labels"] = dict(svc["container_labels"])
        mounts = []
        for mount in svc.get("mounts") or []:
            item = {"type": mount["type"], "target": mount["target"]}
            if mount["type"] == "volume" and mount.get("source"):
                vol = mount["source"]
                if vol in own_volumes or vol.startswith(name + "_"):
                    item["source"] = _short(vol, name)
                    doc["volumes"].setdefault(item["source"], {})
                else:
                    item["source"] = vol
                    doc["volumes"].setdefault(vol, {"external": True, "name": vol})
            elif mount.get("source"):
                item["source"] = mount["source"]
            if mount.get("read_only"):
                item["read_only"] = True
            mounts.append(item)
        if mounts:
            entry["volumes"] = mounts
        nets: dict[str, Any] = {}
        for net in svc.get("networks") or []:
            if net["name"] == "ingress":
                continue
            key = _short(net["name"], name) if net["name"] in own_networks else net["name"]
            nets[key] = {"aliases": net["aliases"]} if net.get("aliases") else None
            if net["name"] in own_networks:
                recorded = next((n for n in stack.get("networks") or [] if n["name"] == net["name"]), {})
                decl = {"driver": recorded.get("driver") or "overlay"}
                if recorded.get("attachable"):
                    decl["attachable"] = True
                if recorded.get("internal"):
                    decl["internal"] = True
                if recorded.get("options"):
                    decl["driver_opts"] = dict(recorded["options"])
                doc["networks"].setdefault(key, decl)
            else:
                doc["networks"].setdefault(key, {"external": True, "name": net["name"]})
        if nets:
            entry["networks"] = nets
        if svc.get("ports"):
            entry["ports"] = [{k: v for k, v in p.items() if v is not None} for p in svc["ports"]]
        if svc.get("healthcheck") and svc["healthcheck"].get("test"):
            entry["healthcheck"] = {k: v for k, v in svc["healthcheck"].items() if v is not None}
        deploy: dict[str, Any] = {"mode": svc.get("mode") or "replicated"}
        if deploy["mode"] == "replicated":
            deploy["replicas"] = svc.get("replicas") if svc.get("replicas") is not None else 1
        if svc.get("endpoint_mode") and svc["endpoint_mode"] != "vip":
            deploy["endpoint_mode"] = svc["endpoint_mode"]
        if svc.get("constraints"):
            deploy["placement"] = {"constraints": list(svc["constraints"])}
        if svc.get("labels"):
            deploy["labels"] = dict(svc["labels"])
        policy = svc.get("restart_policy") or {}
        if policy.get("condition"):
            deploy["restart_policy"] = {k: v for k, v in policy.items() if v is not None}
        entry["deploy"] = deploy
        doc["services"][short] = entry
    for key in ("networks", "volumes"):
        if not doc[key]:
            del doc[key]
    return doc, missing


# ---------------------------------------------------------------------------------------------
# Effects: reading the engine's swarm view
# ---------------------------------------------------------------------------------------------

def read_swarm(api, info: dict[str, Any]) -> dict[str, Any] | None:
    """The engine's swarm view: None outside a swarm; on a manager the services, their tasks and the
    nodes; on a worker only this node's facts (its task containers carry the rest)."""
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        return None
    out: dict[str, Any] = {"node_id": swarm.get("NodeID"), "cluster_id": (swarm.get("Cluster") or {}).get("ID"),
                           "manager": bool(swarm.get("ControlAvailable")), "addr": swarm.get("NodeAddr"),
                           "services": [], "tasks": [], "nodes": []}
    if out["manager"]:
        out["services"] = api.services()
        out["tasks"] = api.tasks(filters={"desired-state": "running"})
        out["nodes"] = api.nodes()
    return out


def cluster_id(client) -> str | None:
    return ((client.info().get("Swarm") or {}).get("Cluster") or {}).get("ID")


# ---------------------------------------------------------------------------------------------
# Effects: scaling a service to 0 and back
# ---------------------------------------------------------------------------------------------

def _replicas(spec: dict[str, Any]) -> int | None:
    mode = spec.get("Mode") or {}
    if "Replicated" not in mode:
        return None
    return int((mode.get("Replicated") or {}).get("Replicas") or 0)


def set_replicas(client, service_id: str, replicas: int) -> None:
    """Update the service's replica count, nothing else of its spec (as `docker service scale`)."""
    api = client.api
    current = api.inspect_service(service_id)
    api.update_service(service_id, current["Version"]["Index"], mode={"Replicated": {"Replicas": replicas}},
                       fetch_current_spec=True)


def running_tasks(client, service_id: str) -> int:
    tasks = client.api.tasks(filters={"service": service_id, "desired-state": "running"})
    return sum(1 for t in tasks if (t.get("Status") or {}).get("State") == "running")


def wait_until(what: str, check, timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SwarmError(f"{what} did not happen within {int(timeout)} s")
        time.sleep(interval)


class ServiceScaler:
    """One replicated service, scaled to 0 for a capture or a restore and back to its replicas.

    Quacks like a container for _quiesce.Quiesced: `id` (the service id), `name` (the service
    name), start() (scale back and wait until the tasks run again)."""

    def __init__(self, client, service_id: str, stop_timeout: int = 30, converge_timeout: float = 180) -> None:
        self.client = client
        self.id = service_id
        service = client.api.inspect_service(service_id)
        spec = service.get("Spec") or {}
        self.name = spec.get("Name") or service_id
        self.replicas = _replicas(spec)
        if self.replicas is None:
            raise SwarmError(f"service {self.name} is global: it cannot be scaled to 0 and back; capture its data "
                             "with strategy pause (its task containers are paused), or remove the service's "
                             "tasks from this node for the copy")
        grace = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("StopGracePeriod") or 10 ** 10
        self.stop_wait = grace / 1e9 + stop_timeout + 30
        self.converge_timeout = converge_timeout
        self.cluster = cluster_id(client)

    def _running_here(self) -> list[Any]:
        return self.client.containers.list(filters={"label": f"{SERVICE_ID_LABEL}={self.id}"})

    def scale_down(self) -> None:
        self.request_down()
        self.wait_down()

    def request_down(self) -> None:
        """Ask swarm to scale to 0, without waiting: services quiesced together stop together."""
        set_replicas(self.client, self.id, 0)

    def wait_down(self) -> None:
        wait_until(f"the tasks of service {self.name} stopping", lambda: not self._running_here(), self.stop_wait)

    def start(self) -> None:
        self.request_up()
        self.wait_up()

    def request_up(self) -> None:
        """Ask swarm to scale back to the recorded replicas, without waiting for the tasks."""
        for attempt in range(5):  # an update out of sequence (someone else updated it) is retried
            try:
                set_replicas(self.client, self.id, self.replicas)
                break
            except DockerException as exc:
                if attempt == 4:
                    raise SwarmError(f"service {self.name} could not be scaled back to {self.replicas} replica(s) "
                                     f"({exc}); the next lifeboat run does it (journalled), or by hand: docker "
                                     f"service scale {self.name}={self.replicas}") from exc
                time.sleep(1 + attempt)

    def wait_up(self) -> None:
        try:
            wait_until(f"service {self.name} running {self.replicas} task(s) again",
                       lambda: running_tasks(self.client, self.id) >= self.replicas, self.converge_timeout)
        except SwarmError as exc:
            raise SwarmError(f"{exc}: it is scaled back to {self.replicas} replica(s) and swarm keeps trying; see "
                             f"docker service ps {self.name}") from exc


def rescale(client, entry: dict[str, Any]) -> tuple[str, bool]:
    """Repair a journal entry of a killed run that scaled a service to 0: (result, keep the entry)."""
    from docker.errors import NotFound  # type: ignore[import-not-found]

    here = cluster_id(client)
    if entry.get("cluster") and here != entry["cluster"]:
        return (f"left for the swarm that recorded it (cluster {entry['cluster']}); this engine is "
                f"{'in cluster ' + here if here else 'in no swarm'}"), True
    try:
        spec = client.api.inspect_service(entry["id"]).get("Spec") or {}
    except NotFound:
        return "gone (the service no longer exists)", False
    current = _replicas(spec)
    wanted = int(entry.get("replicas") or 0)
    if current == 0 and wanted > 0:
        set_replicas(client, entry["id"], wanted)
        return f"scaled back to {wanted} replica(s)", False
    return f"already at {current} replica(s)", False


# ---------------------------------------------------------------------------------------------
# Effects: the manifest's swarm section
# ---------------------------------------------------------------------------------------------

def _stack_networks(raw: dict[str, Any], stack: str, services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    used = {n["name"] for s in services for n in s.get("networks") or []}
    out = []
    for net in raw.get("networks") or []:
        name = net.get("Name")
        own = (net.get("Labels") or {}).get(STACK_LABEL) == stack
        if not own and name not in used or name == "ingress":
            continue
        out.append({"name": name, "driver": net.get("Driver"), "scope": net.get("Scope"),
                    "attachable": bool(net.get("Attachable")), "internal": bool(net.get("Internal")),
                    "options": {k: v for k, v in (net.get("Options") or {}).items()
                                if k != "com.docker.network.driver.overlay.vxlanid_list"},
                    "labels": net.get("Labels") or {}, "external": not own})
    return sorted(out, key=lambda n: n["name"] or "")


def _read_compose(path: str) -> bytes:
    if not path.startswith("/"):
        raise SwarmError(f"compose file {path!r} is not an absolute path")
    try:
        size = os.path.getsize(path)
        if size > MAX_COMPOSE_FILE:
            raise SwarmError(f"compose file {path} has {size} bytes, more than {MAX_COMPOSE_FILE}: not a compose file?")
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise SwarmError(f"compose file {path} cannot be read ({exc.strerror or exc}): fix the policy entry or the "
                         f"label {COMPOSE_FILES_LABEL}") from exc


def given_stacks(option: list[Any] | None) -> dict[str, dict[str, Any]]:
    """The snapshot module's swarm_stacks: stack names, {name, compose_files} dicts or data_inventory's
    swarm.stacks entries; name -> {compose_files, compose_files_from}."""
    out: dict[str, dict[str, Any]] = {}
    for item in option or []:
        if isinstance(item, str):
            out[item] = {"compose_files": [], "compose_files_from": None}
        elif isinstance(item, dict) and item.get("name"):
            files = item.get("compose_files") or []
            out[str(item["name"])] = {"compose_files": list(files),
                                      "compose_files_from": item.get("compose_files_from") or
                                      ("the snapshot's swarm_stacks option" if files else None)}
        else:
            raise SwarmError(f"swarm_stacks: {item!r} is neither a stack name nor a dict with a name (as "
                             "data_inventory returns swarm.stacks)")
    return out


def capture_swarm(repo, raw: dict[str, Any],
                  option: list[Any] | None = None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(manifest section, module result) of the swarm this host manages; (None, None) outside one.

    Every stack's service specs are recorded; its compose files, when known (the swarm_stacks
    option, else the label lifeboat.stack.compose_files), are stored as objects too."""
    swarm = raw.get("swarm")
    if not swarm:
        return None, None
    started = time.monotonic()
    problems: list[str] = []
    given = given_stacks(option)
    services = services_of(raw)
    if not swarm.get("manager"):
        problems.append("this node is a swarm worker: the services' specs and the stacks' deployment can only be "
                        "recorded on a manager; back up a manager too")
    stacks = []
    for stack in stacks_of(raw, services):
        name = stack["name"]
        if given and name not in given:
            continue
        files, how = stack["compose_files"], stack["compose_files_from"]
        if given.get(name, {}).get("compose_files"):
            files, how = given[name]["compose_files"], given[name]["compose_files_from"]
        members = [s for s in services if s.get("stack") == name]
        record: dict[str, Any] = {
            "name": name, "compose": None,
            "services": [{k: v for k, v in s.items() if k not in ("tasks", "running", "nodes")} for s in members],
            "networks": _stack_networks(raw, name, members),
            "volumes": [{"name": v.get("Name"), "driver": v.get("Driver") or "local", "options": v.get("Options") or {},
                         "labels": v.get("Labels") or {}} for v in raw.get("volumes") or []
                        if v.get("Name") in stack["volumes"]],
        }
        if files:
            stored = []
            try:
                for path in files:
                    ref, _new = repo.put_bytes(_read_compose(path))
                    stored.append({"path": path, "name": posixpath.basename(path), "object": ref})
                record["compose"] = {"from": how, "files": stored}
            except SwarmError as exc:
                problems.append(f"stack {name}: {exc}; its service specs are recorded instead")
        for svc in members:
            if svc.get("secrets"):
                problems.append(f"service {svc['name']} uses swarm secrets {', '.join(svc['secrets'])}: their "
                                "values cannot be read back from swarm; keep them elsewhere (a vault) for a rebuild")
        stacks.append(record)
    for name in sorted(set(given) - {s["name"] for s in stacks}):
        problems.append(f"stack {name} (swarm_stacks) has no service on this swarm")
    section = {"version": SECTION_VERSION, "node": node_record(swarm), "stacks": stacks,
               "services": [{k: v for k, v in s.items() if k not in ("tasks", "running", "nodes")}
                            for s in services if not s.get("stack")]}
    result = {"stacks": [s["name"] for s in stacks],
              "compose_files": sum(len((s["compose"] or {}).get("files") or []) for s in stacks),
              "services": sum(len(s["services"]) for s in stacks) + len(section["services"]),
              "problems": problems, "seconds": round(time.monotonic() - started, 3)}
    return section, result


# ---------------------------------------------------------------------------------------------
# Effects: the rebuild
# ---------------------------------------------------------------------------------------------

def ensure_swarm(client, advertise_addr: str | None, listen_addr: str | None = None) -> str:
    """Make the engine a swarm manager (docker swarm init) unless it is one: what was done."""
    state = (client.info().get("Swarm") or {})
    if state.get("LocalNodeState") == "active":
        if not state.get("ControlAvailable"):
            raise SwarmError("this engine is a swarm worker: a stack is deployed from a manager; run the rebuild "
                             "on a manager, or leave the swarm first (docker swarm leave)")
        return "already a swarm manager"
    kwargs: dict[str, Any] = {}
    if advertise_addr:
        kwargs["advertise_addr"] = advertise_addr
    if listen_addr:
        kwargs["listen_addr"] = listen_addr
    try:
        client.swarm.init(**kwargs)
    except Exception as exc:  # pylint: disable=broad-except
        raise SwarmError(f"docker swarm init failed: {exc}; give advertise_addr (this host's address the other "
                         "nodes reach, 127.0.0.1 for a single node)") from exc
    return "initialized"


def docker_cli(docker_host: str | None) -> list[str]:
    return ["docker"] + (["-H", docker_host] if docker_host else [])


def stack_deploy(docker_host: str | None, stack: str, files: list[str], timeout: int = 300) -> str:
    """`docker stack deploy -c FILE... STACK` (the docker CLI): its output, or SwarmError."""
    cmd = docker_cli(docker_host) + ["stack", "deploy", "--resolve-image", "never"]
    for path in files:
        cmd += ["--compose-file", path]
    cmd.append(stack)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise SwarmError("the docker command (CLI) is not installed on this host: docker stack deploy needs it "
                         "(Debian package docker.io)") from exc
    except subprocess.TimeoutExpired as exc:
        raise SwarmError(f"docker stack deploy {stack} did not finish within {timeout} s") from exc
    if proc.returncode != 0:
        raise SwarmError(f"docker stack deploy {stack} failed: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc.stdout


def stack_services(client, stack: str) -> list[dict[str, Any]]:
    return client.api.services(filters={"label": f"{STACK_LABEL}={stack}"})


def wait_converged(client, stack: str, timeout: float) -> dict[str, str]:
    """Wait until every replicated service of STACK runs its replicas: {service: "running/replicas"}."""
    def state() -> dict[str, tuple[int, int | None]]:
        return {s["Spec"]["Name"]: (running_tasks(client, s["ID"]), _replicas(s["Spec"]))
                for s in stack_services(client, stack)}

    def done() -> bool:
        now = state()
        return bool(now) and all(want is None and got > 0 or want is not None and got >= want
                                 for got, want in now.values())
    try:
        wait_until(f"stack {stack} converging", done, timeout, interval=1.0)
    except SwarmError as exc:
        late = ", ".join(f"{n} {g}/{w}" for n, (g, w) in sorted(state().items()) if w is None or g < w)
        raise SwarmError(f"{exc}: services not running their replicas: {late or 'none listed'}; see docker "
                         f"stack ps {stack}") from exc
    return {n: f"{g}/{'global' if w is None else w}" for n, (g, w) in sorted(state().items())}


def task_container(client, service: str, slot: Any = None) -> str:
    """The name of a running task container of SERVICE on this node (of SLOT, when given)."""
    for container in sorted(client.containers.list(filters={"label": f"{SERVICE_NAME_LABEL}={service}"}),
                            key=lambda c: c.name):
        task = container.labels.get(TASK_NAME_LABEL) or ""
        if slot is None or task.startswith(f"{service}.{slot}."):
            return container.name
    raise SwarmError(f"no running task of service {service} on this node: see docker service ps {service}")


def write_compose(directory: str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    write_atomic(path, data, 0o600, dir_mode=0o700)
    return path


def compose_bytes(doc: dict[str, Any]) -> bytes:
    """A compose document as docker stack deploy reads it (JSON is YAML)."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
