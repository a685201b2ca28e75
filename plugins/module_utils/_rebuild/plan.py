# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Rebuilding a lost host from a snapshot: pure planning (no engine, no files, no repository).

choose_snapshot() picks the snapshot; plan_rebuild() compares the snapshot's deployment section
with what the new host has and says what each step must do; service_order() puts the services in
dependency order; create_request() turns a recorded container spec into the Docker SDK's create
arguments; runbook() writes the Markdown procedure a person can follow by hand.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.plan import bind_kind
from ansible_collections.lifeboat.docker.plugins.module_utils._common.safety import within

STEP_TITLES = {
    "engine": "Install the engine and tools",
    "host_paths": "Restore host paths and certificates",
    "networks_volumes": "Recreate networks and volumes",
    "volume_data": "Restore volume data",
    "images": "Bring the images back",
    "databases": "Start the databases and restore their dumps",
    "swarm": "Rebuild the swarm stacks",
    "services": "Redeploy compose projects and containers",
    "verify": "Verify services and data",
    "report": "Write the report and the runbook",
}
DEFAULT_MODES = ("default", "bridge", "host", "none")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


class PlanError(ValueError):
    """The snapshot cannot be rebuilt as asked; the message says why and what to do."""


# -- which snapshot --------------------------------------------------------------------------

def choose_snapshot(records: list[dict[str, Any]], host: str, wanted: str = "latest") -> dict[str, Any]:
    """The record to rebuild from: 'latest' (see _manifest.pick_latest), a snapshot
    id, or a UTC date/time (the newest snapshot of HOST taken before it)."""
    mine = mf.select(records, host=host)  # newest first
    if not mine:
        hosts = sorted({r.get("host") for r in records if r.get("host")})
        raise PlanError(f"the repository has no snapshot of host {host!r}; it has snapshots of: "
                        f"{', '.join(hosts) or 'none'}; set dr_rebuild_lost_host to one of them")
    if wanted == "latest":
        chosen = mf.pick_latest(mine)
        if chosen is None:
            raise PlanError(f"host {host} has no complete snapshot (newest: {mine[0]['id']}, incomplete or taken "
                            "by a restore): name the one to rebuild from by id or by date")
        return chosen
    if _DATE_RE.match(wanted):
        limit = wanted.replace(" ", "T").rstrip("Z")
        before = [r for r in mine if r["time"].rstrip("Z") < limit]
        if not before:
            raise PlanError(f"host {host} has no snapshot before {wanted}; its oldest is {mine[-1]['id']}")
        return before[0]
    for record in mine:
        if record["id"] == wanted:
            return record
    raise PlanError(f"snapshot {wanted!r} of host {host} is not in the repository; newest: {mine[0]['id']}")


# -- dependency order ---------------------------------------------------------------------------

def dependencies(spec: dict[str, Any]) -> set[str]:
    """Names of the containers SPEC needs before it starts: network_mode container:X,
    volumes_from X, links X:alias, and compose's depends_on within its project."""
    deps: set[str] = set()
    mode = spec.get("network_mode") or ""
    if mode.startswith("container:"):
        deps.add(mode.split(":", 1)[1])
    settings = spec.get("host_settings") or {}
    for item in settings.get("VolumesFrom") or []:
        deps.add(item.split(":", 1)[0])
    links = list(settings.get("Links") or [])
    for ep in spec.get("endpoints") or []:
        links += ep.get("links") or []  # links on user networks live in the endpoint
    for link in links:
        deps.add(link.split(":", 1)[0].lstrip("/"))
    return deps


def service_order(containers: list[dict[str, Any]], already: set[str] | None = None) -> list[dict[str, Any]]:
    """Steps {kind: compose|container, name} in an order where everything a step needs comes
    before it: compose projects as one step each (compose orders its services itself), other
    containers by name where nothing constrains them. ALREADY: names started earlier (databases),
    whose dependents need not wait. A cycle is an error naming its members."""
    already = set(already or ())
    node_of: dict[str, str] = {}
    for spec in containers:
        comp = spec.get("compose")
        node_of[spec["name"]] = f"compose:{comp['project']}" if comp else f"container:{spec['name']}"
    needs: dict[str, set[str]] = {}
    for spec in containers:
        node = node_of[spec["name"]]
        needs.setdefault(node, set())
        for dep in dependencies(spec):
            if dep in already or dep not in node_of:
                continue
            if node_of[dep] != node:
                needs[node].add(node_of[dep])
    order: list[str] = []
    done: set[str] = set()
    while len(done) < len(needs):
        ready = sorted(n for n in needs if n not in done and needs[n] <= done)
        if not ready:
            stuck = sorted(n for n in needs if n not in done)
            raise PlanError(f"these services depend on each other in a cycle: {', '.join(stuck)}; "
                            "recreate one of them by hand, then run the rebuild again")
        # compose projects first among equals: standalone containers often join their networks
        ready.sort(key=lambda n: (not n.startswith("compose:"), n))
        order.append(ready[0])
        done.add(ready[0])
    return [{"kind": n.split(":", 1)[0], "name": n.split(":", 1)[1]} for n in order]


# -- recreating a container ----------------------------------------------------------------------

def _binds(spec: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    binds, tmpfs = [], {}
    for mount in spec.get("mounts") or []:
        mode = "rw" if mount.get("rw") else "ro"
        extra = [m for m in (mount.get("mode") or "").split(",") if m and m not in ("rw", "ro")]
        suffix = ",".join([mode] + extra)
        if mount.get("type") == "volume" and mount.get("name"):
            binds.append(f"{mount['name']}:{mount['destination']}:{suffix}")
        elif mount.get("type") == "bind" and mount.get("source"):
            binds.append(f"{mount['source']}:{mount['destination']}:{suffix}")
        elif mount.get("type") == "tmpfs":
            tmpfs[mount["destination"]] = ""
    return binds, tmpfs


def _port_tuple(port: str) -> tuple[str, str]:
    number, _sep, proto = port.partition("/")
    return number, proto or "tcp"


def create_request(spec: dict[str, Any], env_values: dict[str, str], image: str | None = None) -> dict[str, Any]:
    """What the Docker SDK's low-level API needs to create SPEC again:
    {"create": create_container kwargs (without host_config and networking_config),
     "host_config": create_host_config kwargs, "network": (name, endpoint kwargs) or None,
     "connect": [(name, endpoint kwargs)], "missing_environment": [names without a value]}."""
    binds, tmpfs = _binds(spec)
    settings = spec.get("host_settings") or {}
    tmpfs.update(settings.get("Tmpfs") or {})
    env = {k: env_values[k] for k in spec.get("env_set") or [] if k in env_values}
    missing = sorted(k for k in spec.get("env_set") or [] if k not in env_values)
    create: dict[str, Any] = {
        "image": image or spec.get("image") or spec.get("image_id"), "name": spec["name"],
        "command": spec.get("command"), "entrypoint": spec.get("entrypoint"),
        "environment": env or None, "labels": spec.get("labels") or None,
        "working_dir": spec.get("working_dir"), "user": spec.get("user"),
        "hostname": spec.get("hostname"), "domainname": spec.get("domainname"),
        "tty": bool(spec.get("tty")), "stdin_open": bool(spec.get("open_stdin")),
        "stop_signal": spec.get("stop_signal"), "healthcheck": spec.get("healthcheck"),
        "ports": [_port_tuple(p) for p in spec.get("exposed_ports") or []] or None,
        "volumes": [m["destination"] for m in spec.get("mounts") or [] if m.get("type") in ("volume", "bind")] or None,
    }
    if spec.get("stop_timeout") is not None:
        create["stop_timeout"] = spec["stop_timeout"]
    host: dict[str, Any] = {"binds": binds or None, "port_bindings": spec.get("ports") or None,
                            "network_mode": spec.get("network_mode") or "default"}
    if tmpfs:
        host["tmpfs"] = tmpfs
    policy = spec.get("restart_policy") or "no"
    if policy != "no":
        host["restart_policy"] = {"Name": policy, "MaximumRetryCount": spec.get("restart_max_retries") or 0}
    simple = {"CapAdd": "cap_add", "CapDrop": "cap_drop", "Privileged": "privileged", "ExtraHosts": "extra_hosts",
              "ReadonlyRootfs": "read_only", "ShmSize": "shm_size", "Init": "init", "VolumesFrom": "volumes_from",
              "LogConfig": "log_config", "Sysctls": "sysctls", "SecurityOpt": "security_opt", "Memory": "mem_limit",
              "NanoCpus": "nano_cpus", "CpuShares": "cpu_shares", "Dns": "dns", "DnsSearch": "dns_search",
              "DnsOptions": "dns_opt", "GroupAdd": "group_add", "PidMode": "pid_mode", "IpcMode": "ipc_mode",
              "Ulimits": "ulimits", "PublishAllPorts": "publish_all_ports", "OomScoreAdj": "oom_score_adj",
              "UsernsMode": "userns_mode", "Runtime": "runtime"}
    for key, arg in simple.items():
        if settings.get(key) not in (None, "", [], {}):
            host[arg] = settings[key]
    if host.get("ipc_mode") in ("private", "shareable"):
        del host["ipc_mode"]  # the engine's defaults: naming them only ties the container to one
    if host.get("log_config", {}).get("Type") in ("json-file", None) and not host.get("log_config", {}).get("Config"):
        host.pop("log_config", None)
    if settings.get("Devices"):
        host["devices"] = [f"{d['PathOnHost']}:{d['PathInContainer']}:{d.get('CgroupPermissions') or 'rwm'}"
                           for d in settings["Devices"]]
    if settings.get("Links"):
        links = {}
        for link in settings["Links"]:
            target, _sep, alias = link.partition(":")
            links[target.lstrip("/")] = posixpath.basename(alias) if alias else target.lstrip("/")
        host["links"] = links
    mode = host["network_mode"]
    endpoints = [e for e in spec.get("endpoints") or [] if e["name"] not in DEFAULT_MODES]
    first = None
    if mode not in DEFAULT_MODES and not mode.startswith("container:"):
        match = next((e for e in endpoints if e["name"] == mode), {"name": mode, "aliases": []})
        first = (mode, _endpoint(match))
        endpoints = [e for e in endpoints if e["name"] != mode]
    connect = [] if mode in ("host", "none") or mode.startswith("container:") else \
        [(e["name"], _endpoint(e)) for e in endpoints]
    return {"create": {k: v for k, v in create.items() if v is not None}, "host_config": host,
            "network": first, "connect": connect, "missing_environment": missing}


def _endpoint(ep: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ep.get("aliases"):
        out["aliases"] = list(ep["aliases"])
    if ep.get("ipv4_address"):
        out["ipv4_address"] = ep["ipv4_address"]
    if ep.get("ipv6_address"):
        out["ipv6_address"] = ep["ipv6_address"]
    if ep.get("links"):
        out["links"] = {t.split(":", 1)[0]: (t.split(":", 1) + [""])[1] or t.split(":", 1)[0] for t in ep["links"]}
    return out


def compose_up_command(tool: list[str], project: dict[str, Any], services: list[str]) -> list[str]:
    """`docker compose` (v2) or `docker-compose` (v1) up for the recorded project and services."""
    argv = list(tool) + ["--project-name", project["name"]]
    if project.get("working_dir"):
        argv += ["--project-directory", project["working_dir"]]
    for path in project.get("config_files") or []:
        argv += ["--file", path]
    return argv + ["up", "--detach", "--no-build"] + list(services)


# -- the plan -------------------------------------------------------------------------------

def database_units(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [u for u in manifest.get("units", []) if u.get("kind") == "database" and u.get("object")]


def data_units(manifest: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [u for u in manifest.get("units", []) if u.get("kind") == kind]


def unit_target(unit: dict[str, Any]) -> str:
    """The volume name or host path of a unit (a skipped unit records no source: its id says it)."""
    src = unit.get("source") or {}
    return src.get("name") or src.get("path") or unit["id"].split(":", 1)[1]


def swarm_managed(item: dict[str, Any]) -> bool:
    """A swarm task's container or a swarm network: the swarm step (swarm_rebuild) brings them back."""
    labels = item.get("labels") or {}
    return "com.docker.swarm.task.id" in labels or "com.docker.swarm.service.id" in labels \
        or item.get("scope") == "swarm" or item.get("name") in ("ingress", "docker_gwbridge")


def local_deployment(dep: dict[str, Any]) -> dict[str, Any]:
    """The deployment section without what swarm manages."""
    out = dict(dep)
    out["containers"] = [c for c in dep.get("containers") or [] if not swarm_managed(c)]
    out["networks"] = [n for n in dep.get("networks") or [] if not swarm_managed(n)]
    return out


def found_here(spec: dict[str, Any], have: dict[str, Any]) -> str | None:
    """The name on this host of the recorded container SPEC: its own name, or, for a compose
    service, the container compose made for it (compose v1 names it shop_web_1, v2 shop-web-1)."""
    if spec["name"] in (have.get("containers") or {}):
        return spec["name"]
    comp = spec.get("compose")
    if comp:
        names = (have.get("compose_members") or {}).get(f"{comp['project']}/{comp['service']}") or []
        return sorted(names)[0] if names else None
    return None


def swarm_stack_volumes(manifest: dict[str, Any]) -> set[str]:
    """The volumes of the stacks the snapshot's swarm section records (by name, or by the label
    com.docker.stack.namespace of a volume unit naming one of them). The swarm step
    (swarm_rebuild) creates them with their labels and restores them before `docker stack deploy`;
    restored by the plain steps first, they would be non-empty then, and the swarm step would
    restore them again and keep that copy aside as a NAME.pre-restore-TIME volume."""
    stacks = (manifest.get("swarm") or {}).get("stacks") or []
    names = {v["name"] for stack in stacks for v in stack.get("volumes") or [] if v.get("name")}
    stack_names = {stack.get("name") for stack in stacks}
    for unit in data_units(manifest, "volume"):
        source = unit.get("source") or {}
        if (source.get("labels") or {}).get("com.docker.stack.namespace") in stack_names:
            names.add(unit_target(unit))
    return names


def plan_rebuild(manifest: dict[str, Any], have: dict[str, Any], env_values: dict[str, dict[str, str]],
                 compose_env: dict[str, str] | None = None) -> dict[str, Any]:
    """What each step must do on this host. HAVE: the new host's state, {"containers": {name:
    status}, "networks": [names], "volumes": {name: nonempty}, "images": [ids], "paths": {path:
    nonempty}}; ENV_VALUES: container -> {VAR: value} (from the snapshot and the vault)."""
    dep = local_deployment(manifest.get("deployment") or {}) if manifest.get("deployment") else None
    if not dep:
        raise PlanError(f"snapshot {manifest['id']} has no deployment section (taken by an older lifeboat.docker): "
                        "take a new snapshot of the lost host's data with this version, or rebuild by hand from "
                        "docs/dr_rebuild.md")
    containers = {c["name"]: c for c in dep.get("containers") or []}
    have_containers = have.get("containers") or {}
    plan: dict[str, Any] = {"snapshot_id": manifest["id"], "host": manifest["host"], "time": manifest["time"]}
    plan["networks"] = [{"name": n["name"], "driver": n["driver"],
                         "action": "present" if n["name"] in (have.get("networks") or []) else "create"}
                        for n in dep.get("networks") or []]
    volumes = have.get("volumes") or {}
    swarm_volumes = swarm_stack_volumes(manifest)  # the swarm step's
    plan["volumes"] = [{"name": v["name"], "driver": v["driver"],
                        "action": "present" if v["name"] in volumes else "create"}
                       for v in dep.get("volumes") or []
                       if ".pre-restore-" not in v["name"] and v["name"] not in swarm_volumes]
    paths = have.get("paths") or {}

    def unit_step(unit: dict[str, Any]) -> dict[str, Any]:
        target = unit_target(unit)
        if not unit.get("object"):
            action = "not captured"
        elif (volumes.get(target) if unit["kind"] == "volume" else paths.get(target)):
            action = "present"
        else:
            action = "restore"
        return {"unit": unit["id"], "target": target, "action": action, "bytes": unit.get("bytes", 0),
                "files": unit.get("files", 0)}

    plan["host_paths"] = [unit_step(u) for u in data_units(manifest, "path")]
    plan["volume_data"] = [unit_step(u) for u in data_units(manifest, "volume") if unit_target(u) not in swarm_volumes]
    db_names = set()
    plan["databases"] = []
    for unit in database_units(manifest):
        name = (unit.get("source") or {}).get("container")
        if any(swarm_managed(c) for c in unit.get("containers") or []):
            continue  # dumped from a swarm task: the swarm step (swarm_rebuild) restores it into its service
        db_names.add(name)
        here = found_here(containers.get(name) or {"name": name}, have)
        plan["databases"].append({"unit": unit["id"], "container": name, "engine": unit.get("engine"),
                                  "container_here": here,
                                  "action": "start and restore" if here is None
                                  else "restore unless it holds data",
                                  "row_counts": unit.get("row_counts") or {}})
    have_images = set(have.get("images") or [])
    plan["images"] = []
    for image in dep.get("images") or []:
        if image["id"] in have_images:
            action = "present"
        elif image.get("archive"):
            action = "load"
        elif image.get("digests") or image.get("tags"):
            action = "pull"
        else:
            action = "missing"
        plan["images"].append({"id": image["id"], "tags": image.get("tags") or [], "action": action,
                               "bytes": (image.get("archive") or {}).get("size")})
    plan["services"] = []
    for step in service_order([c for c in containers.values() if c["name"] not in db_names], db_names):
        if step["kind"] == "compose":
            proj = next(p for p in dep.get("compose_projects") or [] if p["name"] == step["name"])
            members = [c for c in containers.values() if (c.get("compose") or {}).get("project") == proj["name"]]
            running = [c["name"] for c in members if have_containers.get(c["name"]) == "running"]
            # compose v1 and v2 name containers differently: count the services that run instead
            services = [s["name"] for s in proj["services"] if s["running"]]
            running_services = have.get("compose_running", {}).get(proj["name"], [])
            env_missing = [e["path"] for e in proj.get("env_files") or []
                           if not e.get("object") and not (compose_env or {}).get(e["path"])
                           and not e.get("missing")]
            plan["services"].append({"kind": "compose", "name": proj["name"], "services": services,
                                     "action": "present" if set(services) <= set(running_services) or
                                     (running and len(running) == len(members)) else "up",
                                     "env_files_missing": env_missing})
        else:
            spec = containers[step["name"]]
            status = have_containers.get(spec["name"])
            want = "running" if spec.get("state") in ("running", "restarting", "paused") else spec.get("state")
            if status is None:
                action = "create and start" if want == "running" else "create"
            elif want == "running" and status != "running":
                action = "start"
            else:
                action = "present"
            plan["services"].append({"kind": "container", "name": spec["name"], "image": spec.get("image"),
                                     "state": want, "action": action})
    to_create = [c for c in containers.values() if c["name"] not in have_containers and not c.get("compose")]
    plan["missing_environment"] = {c["name"]: m for c in to_create
                                   if (m := sorted(set(c.get("env_set") or []) - set(env_values.get(c["name"], {}))))}
    plan["bind_sources_missing"] = missing_bind_sources(manifest, list(containers.values()), have)
    plan["left_out"] = list(dep.get("left_out") or []) + [
        f"bind source {m['path']} of {', '.join(m['containers'])}: not on this host and not in the snapshot "
        "(the engine would mount an empty directory there)" for m in plan["bind_sources_missing"]]
    changes = [s for key in ("networks", "volumes", "host_paths", "volume_data", "images")
               for s in plan[key] if s["action"] in ("create", "restore", "load", "pull")]
    changes += [s for s in plan["services"] if s["action"] != "present"]
    changes += [s for s in plan["databases"] if s["action"] == "start and restore"]
    plan["changes"] = len(changes)
    return plan


def missing_bind_sources(manifest: dict[str, Any], specs: list[dict[str, Any]], have: dict[str, Any]) -> list[dict[str, Any]]:
    """Bind sources of the containers to rebuild that are not on this host and that no unit of
    the snapshot restores (a file or directory the backup did not hold). The engine would make an
    empty directory of each and start the service on it: the rebuild stops and names them instead.
    HAVE["bind_sources"]: {path: exists} on this host; sockets and system paths are not data."""
    restored = [unit_target(u) for u in data_units(manifest, "path") if u.get("object")]
    exists = have.get("bind_sources") or {}
    found: dict[str, list[str]] = {}
    for spec in specs:
        for mount in spec.get("mounts") or []:
            src = mount.get("source")
            if mount.get("type") != "bind" or not src or bind_kind(src) != "data":
                continue
            if exists.get(src, True) or any(within(src, r) for r in restored):
                continue
            found.setdefault(src, []).append(spec["name"])
    return [{"path": p, "containers": sorted(set(c))} for p, c in sorted(found.items())]


# -- the runbook ---------------------------------------------------------------------------------

def _q(text: str) -> str:
    return shlex.quote(str(text))


_SFTP_RE = re.compile(r"^sftp://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?(?P<path>/.*)?$")


def _repo_lines(repository: str) -> list[str]:
    """Block 0's lines naming the repository and, for sftp://, the key files scp reads (no network:
    the tools that fetch it are installed in block 1)."""
    if repository.startswith("/") or repository.startswith("file://"):
        return [f"REPO={_q(repository.replace('file://', '', 1))}   # the repository (a local copy)"]
    lines = []
    if _SFTP_RE.match(repository):
        lines = ["SSH_KEY=${SSH_KEY:-/root/.ssh/lifeboat_repository}   # the private key that may read the repository "
                 "(chmod 600)",
                 "KNOWN_HOSTS=${KNOWN_HOSTS:-/root/.ssh/known_hosts}   # holds the repository server's host key"]
    return lines + ["REPO=/var/backups/lifeboat   # where the repository is copied (block 2)"]


def _fetch_lines(repository: str) -> list[str]:
    """The lines that copy a remote repository to $REPO (none for a local one)."""
    if repository.startswith("/") or repository.startswith("file://"):
        return []
    match = _SFTP_RE.match(repository)
    if match:
        # scp needs HOST:PATH, the key that may read the repository and the server's host key
        # (checked, never accepted blindly): the same files the sftp:// store uses.
        who = f"{match.group('user')}@" if match.group("user") else ""
        port = f" -P {match.group('port')}" if match.group("port") else ""
        path = match.group("path") or "/"
        return ["# the repository is plain files: copy it here",
                "mkdir -p /var/backups && rm -rf /var/backups/lifeboat",
                f"scp -r -q{port} -i \"$SSH_KEY\" -o BatchMode=yes -o UserKnownHostsFile=\"$KNOWN_HOSTS\" "
                f"-o StrictHostKeyChecking=yes {_q(who + match.group('host') + ':' + path)} /var/backups/lifeboat"]
    return [f"# copy the repository ({repository}) to /var/backups/lifeboat first, e.g. with rclone or aws s3 sync",
            "test -f /var/backups/lifeboat/lifeboat-repository.json || "
            "{ echo 'copy the repository to /var/backups/lifeboat first' >&2; false; }"]


def _env_lines(spec: dict[str, Any], dep: dict[str, Any]) -> list[str]:
    """Shell lines that set the environment values a container's `docker run -e NAME="$NAME"`
    needs: from the encrypted snapshot (lifeboat_env, defined in step 0), else a check that the
    person set them from the password store (the run stops, naming the first one missing)."""
    names = sorted(spec.get("env_set") or [])
    if not names:
        return []
    if dep.get("environment"):
        # In two steps: eval "$(...)" would go on with no values when the decryption failed.
        return [f"LIFEBOAT_ENV=$(lifeboat_env {_q(spec['name'])}) && eval \"$LIFEBOAT_ENV\""
                "   # its environment values, from the snapshot"]
    return [f": \"${{{n}:?set {n} for {spec['name']} from your password store}}\"" for n in names]


def _obj(ref: dict[str, Any]) -> str:
    sha = ref["sha256"]
    return f"$REPO/objects/{sha[:2]}/{sha}"


def _read(ref: dict[str, Any]) -> str:
    """A shell pipeline printing an object's content (decrypted when it is encrypted)."""
    return f"age -d -i \"$KEY\" {_obj(ref)}" if ref.get("encryption") else f"cat {_obj(ref)}"


_RESTORE_TAR = "tar -x --numeric-owner --acls --xattrs --xattrs-include='*'"


def runbook(manifest: dict[str, Any], repository: str) -> str:
    """A Markdown procedure that rebuilds the host of MANIFEST by hand: a shell, Debian and the
    repository (and the age identity when the snapshot is encrypted). No secret is written into it."""
    dep = local_deployment(manifest.get("deployment") or {})
    encrypted = bool(manifest.get("encryption"))
    lines = [f"# Rebuilding {manifest['host']} by hand", "",
             f"From snapshot `{manifest['id']}` (taken {manifest['time']}), written by lifeboat.docker's "
             "dr_rebuild. Every command runs as root on a fresh Debian 12 or 13 host.",
             "The automatic way is one command: `ansible-playbook playbooks/dr_rebuild.yml` "
             "(see docs/dr_rebuild.md); this runbook is the same, step by step.", ""]
    lines += _runbook_needs(manifest, repository, dep, encrypted)
    lines += _runbook_engine(repository)
    lines += _runbook_host_paths(manifest, repository)
    lines += _runbook_networks_and_volumes(dep)
    lines += _runbook_volume_data(manifest)
    lines += _runbook_images(dep)
    containers = {c["name"]: c for c in dep.get("containers") or []}
    lines += _runbook_databases(manifest, dep, containers)
    lines += _runbook_services(manifest, dep, containers)
    lines += ["## 8. Check", "", "```sh",
              "for i in $(seq 120); do [ -n \"$(docker ps -q --filter health=starting)\" ] || break; sleep 1; done"
              "   # until the healthchecks have answered",
              "docker ps -a --format 'table {{.Names}}\\t{{.Status}}'",
              "BAD=$(docker ps -a --filter status=exited --filter status=restarting --filter status=dead "
              "--format '{{.Names}}'; docker ps --filter health=unhealthy --filter health=starting --format '{{.Names}}')",
              "if [ -n \"$BAD\" ]; then echo \"not running (or not healthy): $BAD - see docker logs NAME\" >&2; false; fi",
              "```", "",
              "Every container above must be `Up` (`healthy` where it has a healthcheck; the block waits up to two "
              "minutes for the healthchecks and stops naming those that are not); step 6 checked the row "
              "counts of the databases against those at backup time.", ""]
    return "\n".join(lines)


def _runbook_needs(manifest: dict[str, Any], repository: str, dep: dict[str, Any], encrypted: bool) -> list[str]:
    """Step 0: what the person needs, and the shell functions the later blocks use."""
    lines: list[str] = []
    lines += ["## 0. What you need", "",
              "- this host, freshly installed, reachable as root;",
              f"- the repository `{repository}` (or a copy of it);"]
    if encrypted:
        lines.append("- the age identity (the secret key file) the snapshot is encrypted to: `KEY=/root/lifeboat.key`;")
    if encrypted or _SFTP_RE.match(repository):
        named = " and ".join(f"`{v}`" for v in (["KEY"] if encrypted else [])
                             + (["SSH_KEY", "KNOWN_HOSTS"] if _SFTP_RE.match(repository) else []))
        lines.append(f"- where those files are elsewhere, export {named} before the first block: the blocks keep "
                     "the values you set and fall back to the paths shown;")
    if dep.get("left_out"):
        lines.append("- the secrets this snapshot did not store (from your password store):")
        lines += [f"  - {item}" for item in dep["left_out"]]
    lines += ["", "```sh"] + _repo_lines(repository)
    if encrypted:
        lines.append("KEY=${KEY:-/root/lifeboat.key}   # the age identity (chmod 600); export KEY=... first to use another")
    if dep.get("environment"):
        # The values themselves never appear here: a command prints them from the encrypted object.
        lines += ["lifeboat_env() {   # export lines of the environment values the snapshot holds for container $1",
                  f"  {_read(dep['environment'])} | python3 -c 'import json, shlex, sys; "
                  "[print(\"export %s=%s\" % (k, shlex.quote(v))) "
                  "for k, v in sorted(json.load(sys.stdin).get(sys.argv[1], {}).items())]' \"$1\"",
                  "}"]
    lines += ["```", ""]
    return lines


def _runbook_engine(repository: str) -> list[str]:
    """Step 1: Docker and the tools from Debian (first: a fresh host may lack even the client that
    fetches the repository)."""
    fetch_tool = ["openssh-client"] if _SFTP_RE.match(repository) else []
    fetch_tool += ["rclone"] if repository.startswith("rclone://") else []
    lines: list[str] = []
    lines += ["## 1. Engine and tools", "", "```sh", "apt-get update",
              " ".join(["apt-get install -y docker.io tar zstd age acl attr python3"] + fetch_tool),
              # Debian 13 ships the client apart, and docker.io only recommends it.
              "if apt-cache show docker-cli >/dev/null 2>&1; then apt-get install -y docker-cli; fi"
              "   # Debian 13: the docker command is a package of its own",
              "apt-get install -y docker-compose   # compose: v1 on Debian 12, v2 on Debian 13",
              "systemctl enable --now docker", "```", ""]
    return lines


def _runbook_host_paths(manifest: dict[str, Any], repository: str) -> list[str]:
    """Step 2: the repository copied to this host (when remote), the host paths' data (and
    certificates), files and directories."""
    lines: list[str] = []
    fetch = _fetch_lines(repository)
    if fetch:
        lines += ["## 2. The repository, host paths (and certificates)", "", "```sh"] + fetch + ["```", ""]
    else:
        lines += ["## 2. Host paths (and certificates)", ""]
    paths = data_units(manifest, "path")
    for unit in paths:
        if not unit.get("object"):
            lines.append(f"- `{unit_target(unit)}`: not captured (strategy {unit.get('strategy')}); create it empty.")
            continue
        src = unit_target(unit)
        if (unit.get("source") or {}).get("type") == "file":
            # A file unit's object holds ./NAME: extracted into the file's directory. An empty
            # directory the engine made where the file belongs goes first.
            parent = posixpath.dirname(src)
            lines += [f"`{src}` (a file, {unit.get('bytes', 0)} bytes, with its owner and mode):", "", "```sh",
                      f"if [ -d {_q(src)} ]; then rmdir {_q(src)}; fi",
                      f"mkdir -p {_q(parent)}",
                      f"{_read(unit['object'])} | zstd -d | {_RESTORE_TAR} -C {_q(parent)}", "```", ""]
            continue
        lines += [f"`{src}` ({unit.get('files', 0)} files, {unit.get('bytes', 0)} bytes):", "", "```sh",
                  f"mkdir -p {_q(src)}",
                  f"{_read(unit['object'])} | zstd -d | {_RESTORE_TAR} -C {_q(src)}", "```", ""]
    if not paths:
        lines += ["No host paths were captured.", ""]
    return lines


def _runbook_networks_and_volumes(dep: dict[str, Any]) -> list[str]:
    """Step 3: the networks and volumes, as they were made."""
    lines: list[str] = []
    lines += ["## 3. Networks and volumes", "", "```sh"]
    for net in dep.get("networks") or []:
        argv = ["docker", "network", "create", "--driver", net["driver"]]
        for conf in (net.get("ipam") or {}).get("config") or []:
            if conf.get("subnet"):
                argv += ["--subnet", conf["subnet"]]
            if conf.get("gateway"):
                argv += ["--gateway", conf["gateway"]]
        argv += ["--internal"] if net.get("internal") else []
        argv += ["--attachable"] if net.get("attachable") else []
        for key, value in sorted((net.get("options") or {}).items()):
            argv += ["--opt", f"{key}={value}"]
        for key, value in sorted((net.get("labels") or {}).items()):
            argv += ["--label", f"{key}={value}"]
        lines.append(" ".join(_q(a) for a in argv + [net["name"]]))
    for vol in dep.get("volumes") or []:
        if ".pre-restore-" in vol["name"]:
            continue
        argv = ["docker", "volume", "create", "--driver", vol["driver"]]
        for key, value in sorted((vol.get("options") or {}).items()):
            argv += ["--opt", f"{key}={value}"]
        for key, value in sorted((vol.get("labels") or {}).items()):
            argv += ["--label", f"{key}={value}"]
        lines.append(" ".join(_q(a) for a in argv + [vol["name"]]))
    lines += ["```", ""]
    return lines


def _runbook_volume_data(manifest: dict[str, Any]) -> list[str]:
    """Step 4: the volumes' data."""
    lines = ["## 4. Volume data", ""]
    for unit in data_units(manifest, "volume"):
        name = unit_target(unit)
        if not unit.get("object"):
            lines.append(f"- `{name}`: not captured (strategy {unit.get('strategy')}: {unit.get('reason') or ''}).")
            continue
        lines += [f"`{name}` ({unit.get('files', 0)} files, {unit.get('bytes', 0)} bytes):", "", "```sh",
                  f"D=$(docker volume inspect --format '{{{{ .Mountpoint }}}}' {_q(name)})",
                  f"{_read(unit['object'])} | zstd -d | {_RESTORE_TAR} -C \"$D\"", "```", ""]
    return lines


def _runbook_images(dep: dict[str, Any]) -> list[str]:
    """Step 5: the images, from the snapshot or their registry."""
    lines: list[str] = []
    lines += ["", "## 5. Images", ""]
    for image in dep.get("images") or []:
        name = (image.get("tags") or [image["id"]])[0]
        if image.get("archive"):
            lines += [f"`{name}` (from the snapshot):", "", "```sh", f"{_read(image['archive'])} | zstd -d | docker load"]
            lines += [f"docker tag {_q(image['id'])} {_q(t)}" for t in image.get("tags") or []]
            lines += ["```", ""]
        elif image.get("digests"):
            lines += [f"`{name}` (from its registry):", "", "```sh", f"docker pull {_q(image['digests'][0])}"]
            lines += [f"docker tag {_q(image['digests'][0])} {_q(t)}" for t in image.get("tags") or []]
            lines += ["```", ""]
        else:
            lines += [f"- `{name}`: not in the snapshot and not in a registry: build it again from its Dockerfile "
                      f"and tag it `{name}` before step 6.", ""]
    return lines


def _runbook_databases(manifest: dict[str, Any], dep: dict[str, Any], containers: dict[str, Any]) -> list[str]:
    """Step 6: the database containers started and their dumps replayed, row counts checked."""
    lines: list[str] = []
    lines += ["", "## 6. Databases", ""]
    for unit in database_units(manifest):
        name = unit["source"]["container"]
        spec = containers.get(name)
        lines += [f"`{name}` ({unit.get('engine')}):", "", "```sh"]
        if spec:
            lines += _env_lines(spec, dep)
            lines.append(docker_run_line(spec))
        lines += _wait_lines(name, unit.get("engine"))
        lines.append(f"{_read(unit['object'])} | zstd -d | docker exec -i {_q(name)} {_restore_hint(unit.get('engine'))}")
        counts = unit.get("row_counts") or {}
        lines += _count_lines(name, unit.get("engine"), counts)
        lines += ["```", ""]
        if unit.get("engine") == "postgres":
            lines += ["The dump recreates the roles and databases: psql reports `already exists` for those the fresh "
                      "server made from its environment (its user and database), which is expected; the lines after "
                      "the replay check the row counts and stop the run when a table holds fewer rows than at backup "
                      "time.", ""]
        if counts:
            lines.append("Row counts at backup time: " + ", ".join(
                f"{db}.{t}={n}" for db, tables in sorted(counts.items()) for t, n in sorted(tables.items())) + ".")
            lines.append("")
    return lines


def _runbook_services(manifest: dict[str, Any], dep: dict[str, Any], containers: dict[str, Any]) -> list[str]:
    """Step 7: the other containers and compose projects, in dependency order."""
    lines: list[str] = []
    lines += ["## 7. Services", "", "In this order:", ""]
    db_names = {u["source"]["container"] for u in database_units(manifest)}
    for step in service_order([c for c in containers.values() if c["name"] not in db_names], db_names):
        if step["kind"] == "compose":
            proj = next(p for p in dep.get("compose_projects") or [] if p["name"] == step["name"])
            lines += [f"Compose project `{proj['name']}`:", "", "```sh"]
            for entry in (proj.get("files") or []) + (proj.get("env_files") or []):
                lines.append(f"mkdir -p {_q(posixpath.dirname(entry['path']))}")
                if entry.get("object"):
                    lines.append(f"{_read(entry['object'])} > {_q(entry['path'])}")
                    if entry.get("mode"):
                        lines.append(f"chmod {entry['mode']} {_q(entry['path'])}")
                    if entry.get("uid") is not None:
                        lines.append(f"chown {entry['uid']}:{entry.get('gid', entry['uid'])} {_q(entry['path'])}")
                else:
                    lines.append(f"# {entry['path']}: not in the snapshot ({entry.get('left_out') or entry.get('missing')})"
                                 " - write it from your password store")
            services = [s["name"] for s in proj.get("services") or [] if s.get("running")]
            argv = compose_up_command(["$COMPOSE"], proj, services)
            lines += ["COMPOSE='docker compose'; docker compose version >/dev/null 2>&1 || COMPOSE=docker-compose"
                      "   # v2 (Debian 13) or v1 (Debian 12)",
                      " ".join(a if a == "$COMPOSE" else _q(a) for a in argv)]
            lines += ["```", ""]
        else:
            spec = containers[step["name"]]
            lines += [f"`{spec['name']}`:", "", "```sh", *_env_lines(spec, dep), docker_run_line(spec), "```", ""]
    return lines


# The root password as the official images take it, from the container's own environment: given
# to the client in MYSQL_PWD (not -p, which would read the dump's first line as the password).
_MY_PWD = 'MYSQL_PWD="${MARIADB_ROOT_PASSWORD:-$MYSQL_ROOT_PASSWORD}"'


def _restore_hint(engine: str | None) -> str:
    hints = {"postgres": "sh -c 'exec psql -q -o /dev/null -U \"${POSTGRES_USER:-postgres}\" -d postgres'",
             "mariadb": f"sh -c '{_MY_PWD} exec mariadb -u root'",
             "mysql": f"sh -c '{_MY_PWD} exec mysql -u root'",
             "mongodb": "mongorestore --archive --drop"}
    return hints.get(engine or "", "sh -c 'cat > /data/dump.rdb'   # Redis: with the server stopped")


def _wait_lines(name: str, engine: str | None) -> list[str]:
    """Wait (up to two minutes) until the database server accepts connections. Over TCP, as the
    rebuild module waits: the official images first run a temporary server for their initialisation
    that listens on the Unix socket only and is stopped again; a dump replayed into it is cut off."""
    probes = {"postgres": "pg_isready -q -h 127.0.0.1",
              "mariadb": f"sh -c '{_MY_PWD} exec mariadb-admin -u root --silent ping -h 127.0.0.1 --protocol=tcp'",
              "mysql": f"sh -c '{_MY_PWD} exec mysqladmin -u root --silent ping -h 127.0.0.1 --protocol=tcp'"}
    probe = probes.get(engine or "")
    if not probe:
        return []
    return [f"for i in $(seq 120); do docker exec {_q(name)} {probe} >/dev/null 2>&1 && break; sleep 1; done"
            f"   # until it accepts connections",
            f"docker exec {_q(name)} {probe}"]


def _count_lines(name: str, engine: str | None, counts: dict[str, dict[str, int]]) -> list[str]:
    """Shell lines that stop the run when a table of the restored database holds fewer rows than
    the dump had: psql replays on after a failed statement and exits 0, so only the counts tell a
    replay that lost rows. At least, not exactly: an extension fills its own tables (PostGIS), of
    which the dump holds only the rows added by hand."""
    clients = {"postgres": 'exec psql -X -qAt -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -d "$1"',
               "mariadb": f'{_MY_PWD} exec mariadb -u root -N -B "$1"',
               "mysql": f'{_MY_PWD} exec mysql -u root -N -B "$1"'}
    client = clients.get(engine or "")
    if not client:
        return []
    out = []
    for db, tables in sorted(counts.items()):
        for table, want in sorted(tables.items()):
            out.append(f"n=$(echo {_q(f'SELECT count(*) FROM {table};')} | docker exec -i {_q(name)} sh -c {_q(client)} "
                       f"sh {_q(db)}); [ \"$n\" -ge {int(want)} ] || "
                       f"{{ echo {_q(f'{db}.{table}:')} \"$n rows, {int(want)} at backup time\" >&2; false; }}")
    return out


def docker_run_line(spec: dict[str, Any]) -> str:
    """The `docker run` (or `docker create`) command of a recorded container; environment values
    appear as $NAME, to be set from the password store first."""
    req = create_request(spec, {k: f"${k}" for k in spec.get("env_set") or []})
    running = spec.get("state") in ("running", "restarting", "paused")
    argv = ["docker", "run", "-d"] if running else ["docker", "create"]
    argv += ["--name", spec["name"]]
    host = req["host_config"]
    if host.get("network_mode") not in (None, "default", "bridge"):
        argv += ["--network", host["network_mode"]]
    if req["network"]:  # the first network's endpoint: its aliases and addresses
        argv += _endpoint_args(req["network"][1], "--network-alias")
    for bind in host.get("binds") or []:
        argv += ["-v", bind]
    for port, bindings in sorted((host.get("port_bindings") or {}).items()):
        for b in bindings or []:
            argv += ["-p", f"{(b.get('HostIp') + ':') if b.get('HostIp') else ''}{b.get('HostPort')}:{port}"]
    if host.get("restart_policy"):
        argv += ["--restart", host["restart_policy"]["Name"]]
    env_names = sorted((req["create"].get("environment") or {}).keys())
    for key, value in sorted((spec.get("labels") or {}).items()):
        argv += ["--label", f"{key}={value}"]
    if spec.get("entrypoint"):
        argv += ["--entrypoint", spec["entrypoint"][0]]
    argv.append(spec.get("image") or spec.get("image_id"))
    tail = (spec.get("entrypoint") or [])[1:] + (spec.get("command") or [])
    text = " ".join(_q(a) for a in argv + tail)
    env = " ".join(f"-e {k}=\"${k}\"" for k in env_names)
    if env:
        text = text.replace(" --name ", f" {env} --name ", 1)
    lines = [text]
    for name, endpoint in req["connect"]:
        argv = ["docker", "network", "connect", *_endpoint_args(endpoint, "--alias"), name, spec["name"]]
        lines.append(" ".join(_q(a) for a in argv))
    return "\n".join(lines)


def _endpoint_args(endpoint: dict[str, Any], alias_option: str) -> list[str]:
    """docker run's (--network-alias) or docker network connect's (--alias) options of an endpoint."""
    argv = []
    for alias in endpoint.get("aliases") or []:
        argv += [alias_option, alias]
    if endpoint.get("ipv4_address"):
        argv += ["--ip", endpoint["ipv4_address"]]
    if endpoint.get("ipv6_address"):
        argv += ["--ip6", endpoint["ipv6_address"]]
    return argv


# -- lines for a person ------------------------------------------------------------------------

def plan_lines(plan: dict[str, Any]) -> list[str]:
    """One line per thing the rebuild would change (and a count of what is there already)."""
    lines = []
    present = 0
    for key in ("host_paths", "networks", "volumes", "volume_data", "images", "databases", "services"):
        for item in plan.get(key) or []:
            if item["action"] in ("present", "not captured"):
                present += item["action"] == "present"
                continue
            what = item.get("unit") or item.get("name") or (item.get("tags") or [item.get("id")])[0]
            lines.append(f"  {key}: {what}: {item['action']}")
    lines.append(f"  already there: {present}")
    for item in plan.get("left_out") or []:
        lines.append(f"  not in the snapshot: {item}")
    return lines


def step_line(step: dict[str, Any]) -> str:
    title = STEP_TITLES.get(step.get("step"), step.get("step"))
    changed = "changed" if step.get("changed") else "nothing to do"
    return f"  {step.get('step'):<17} {float(step.get('seconds') or 0):7.1f} s  {title} ({changed})"
