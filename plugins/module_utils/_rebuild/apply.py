# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Rebuilding a lost host, the effects: each step of the rebuild module against the engine, the
host's files and the repository. The decisions are made by _rebuild/plan.py (pure).

Every step does only what the host lacks: a volume or host path that holds data is never
replaced, a database that holds tables is never restored into, a container or network that
exists is left as it is. So a second run changes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild import plan as rb
from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import compare_tree
from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import (
    DumpError,
    Spec,
    compare_counts,
    count_rows,
    exec_capture,
    object_chunks,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.probe import read_engine, volume_data_path
from ansible_collections.lifeboat.docker.plugins.module_utils._common.locks import LockSet
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.report import write_atomic
from ansible_collections.lifeboat.docker.plugins.module_utils._data.sqlite import side_file_excludes
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.files import (
    RestoreRun,
    _nonempty,
    local_root,
    plan_restore,
    unit_index,
    unit_member,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.databases import (
    DbRestoreRun,
    _clear,
    _mysql,
    _psql,
    _run,
    existing_content,
    running_task,
    unit_service,
)

READY = {
    "postgres": Spec(["pg_isready", "-q", "-h", "127.0.0.1"]),
    "mariadb": Spec(["sh", "-c", "mariadb-admin ping -h 127.0.0.1 --protocol=tcp --silent 2>/dev/null || "
                                 "mysqladmin ping -h 127.0.0.1 --protocol=tcp --silent"]),
    "mysql": Spec(["sh", "-c", "mysqladmin ping -h 127.0.0.1 --protocol=tcp --silent"]),
    "redis": Spec(["redis-cli", "ping"]),
}


class RebuildError(Exception):
    """A step of the rebuild failed; the message says which thing, why, and what to do."""


def load_snapshot(repo, host: str, wanted: str) -> dict[str, Any]:
    records, _bad = repo.manifests()
    record = rb.choose_snapshot(records, host, wanted)
    return repo.load_manifest(record["id"], full=True)


def environment_values(repo, manifest: dict[str, Any], given: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """container -> {VAR: value}: the snapshot's stored values (encrypted snapshots), then those
    GIVEN (the vault), which win."""
    out: dict[str, dict[str, str]] = {}
    ref = (manifest.get("deployment") or {}).get("environment")
    if ref:
        out = json.loads(repo.read_object(ref, f"the environment values of {manifest['id']}"))
    for name, values in (given or {}).items():
        out.setdefault(name, {}).update({k: str(v) for k, v in (values or {}).items()})
    return out


def compose_tool(docker_host: str | None) -> list[str] | None:
    """`docker compose` (v2 plugin) when it answers, else `docker-compose` (v1, or v2 standalone)."""
    env = compose_env(docker_host)
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) is None:
            continue
        proc = subprocess.run(argv + ["version"], capture_output=True, env=env, check=False)
        if proc.returncode == 0:
            return argv
    return None


def compose_env(docker_host: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return env


def holds_data(client, container: str, attrs: dict[str, Any], engine: str) -> list[str]:
    """Databases (or Redis keys) of a server that hold something: tables, rows, keys. The empty
    databases a fresh server's entrypoint makes (POSTGRES_DB ...) do not count."""
    existing = existing_content(client, container, attrs, engine)
    if engine == "postgres":
        full = []
        for name in existing:
            if name == "postgres (tables)":
                full.append(name)
                continue
            sql = ("SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN "
                   "('pg_catalog', 'information_schema')")
            if _run(client, container, _psql(attrs, name, sql), f"listing the tables of {name}").strip() not in ("", "0"):
                full.append(name)
        return full
    if engine in ("mariadb", "mysql"):
        full = []
        for name in existing:
            sql = f"SELECT count(*) FROM information_schema.tables WHERE table_schema = '{name.replace(chr(39), '')}'"
            if _run(client, container, _mysql(attrs, engine, sql), f"listing the tables of {name}").strip() not in ("", "0"):
                full.append(name)
        return full
    return existing


class Rebuild:
    """The steps of a rebuild on this host (see the module lifeboat.docker.rebuild)."""

    def __init__(self, client, repo, manifest: dict[str, Any], env_values: dict[str, dict[str, str]],
                 compose_env_files: dict[str, str] | None = None, docker_host: str | None = None,
                 check: bool = False, timeout: float = 300) -> None:
        self.client = client
        self.repo = repo
        self.manifest = manifest
        self.dep = rb.local_deployment(manifest.get("deployment") or {})
        self.env_values = env_values
        self.compose_env_files = compose_env_files or {}
        self.docker_host = docker_host
        self.check = check
        self.timeout = timeout
        self.specs = {c["name"]: c for c in self.dep.get("containers") or []}
        self.raw = read_engine(client)

    # -- what the host has -----------------------------------------------------------------
    def refresh(self) -> None:
        self.raw = read_engine(self.client)

    def have(self) -> dict[str, Any]:
        volumes = {}
        for vol in self.raw.get("volumes") or []:
            where = volume_data_path(vol)
            volumes[vol["Name"]] = bool(where and _nonempty(where))
        paths = {}
        for unit in rb.data_units(self.manifest, "path"):
            path = rb.unit_target(unit)
            paths[path] = _nonempty(path)
        bind_sources = {m["source"]: os.path.lexists(m["source"]) for spec in self.specs.values()
                        for m in spec.get("mounts") or [] if m.get("type") == "bind" and m.get("source")}
        running: dict[str, list[str]] = {}
        members: dict[str, list[str]] = {}
        containers = {}
        for attrs in self.raw.get("containers") or []:
            name = (attrs.get("Name") or "").lstrip("/")
            status = (attrs.get("State") or {}).get("Status")
            containers[name] = status
            labels = (attrs.get("Config") or {}).get("Labels") or {}
            project = labels.get("com.docker.compose.project")
            if project:
                members.setdefault(f"{project}/{labels.get('com.docker.compose.service')}", []).append(name)
            if project and status == "running":
                running.setdefault(project, []).append(labels.get("com.docker.compose.service"))
        return {"containers": containers, "networks": [n.get("Name") for n in self.raw.get("networks") or []],
                "volumes": volumes, "images": [i.get("Id") for i in self.raw.get("images") or []],
                "paths": paths, "compose_running": running, "compose_members": members,
                "bind_sources": bind_sources}

    def plan(self) -> dict[str, Any]:
        return rb.plan_rebuild(self.manifest, self.have(), self.env_values, self.compose_env_files)

    # -- step: host paths, volume data ---------------------------------------------------------
    def restore_units(self, kind: str) -> list[dict[str, Any]]:
        key = "host_paths" if kind == "path" else "volume_data"
        units = {u["id"]: u for u in rb.data_units(self.manifest, kind)}
        out = []
        for step in self.plan()[key]:
            entry = dict(step)
            if step["action"] == "restore" and not self.check:
                unit = units[step["unit"]]
                what = f"rebuild from {self.manifest['id']}"
                with LockSet([f"unit:{unit['id']}"], what, self.timeout):
                    self.refresh()
                    plan = plan_restore(unit, self.raw, None, None, local_root(self.repo))
                    runner = RestoreRun(self.client, self.repo, self.raw)
                    done = runner.run(self.manifest, unit, plan, force=False, verify=True, allow_devices=False)
                    where = plan["data_dir"] or volume_data_path(self.client.api.inspect_volume(plan["target"]))
                    member = unit_member(unit)
                    problems = compare_tree(unit_index(self.repo, unit), os.path.dirname(where) if member else where,
                                            unit.get("excludes") or [], member=member)
                if problems:
                    raise RebuildError(f"{unit['id']} was restored into {where} but differs from the manifest: "
                                       f"{'; '.join(problems[:5])}")
                entry.update(seconds=done["seconds"], verified=True, checked_in_place=True)
            out.append(entry)
        return out

    # -- step: networks and volumes ---------------------------------------------------------------
    def networks_volumes(self) -> dict[str, Any]:
        from docker.types import IPAMConfig, IPAMPool  # type: ignore[import-not-found]

        plan = self.plan()
        nets = {n["name"]: n for n in self.dep.get("networks") or []}
        vols = {v["name"]: v for v in self.dep.get("volumes") or []}
        if not self.check:
            for step in plan["networks"]:
                if step["action"] != "create":
                    continue
                net = nets[step["name"]]
                ipam = net.get("ipam") or {}
                pools = [IPAMPool(subnet=c.get("subnet"), iprange=c.get("ip_range"), gateway=c.get("gateway"),
                                  aux_addresses=c.get("aux_addresses")) for c in ipam.get("config") or []]
                config = IPAMConfig(driver=ipam.get("driver") or "default", pool_configs=pools,
                                    options=ipam.get("options") or None)
                args = {"driver": net["driver"], "options": net.get("options") or None,
                        "internal": net.get("internal", False), "labels": net.get("labels") or None,
                        "enable_ipv6": net.get("enable_ipv6", False), "attachable": net.get("attachable") or None}
                try:
                    self.client.api.create_network(net["name"], ipam=config, **args)
                except Exception as exc:  # pylint: disable=broad-except
                    if "overlap" not in str(exc).lower() or not pools:
                        raise
                    # The recorded subnet is taken on this host (often the engine chose it): let
                    # the engine choose again; containers with fixed addresses will say so.
                    self.client.api.create_network(net["name"], **args)
                    step["subnet"] = f"recorded subnet taken on this host ({exc}); the engine chose another"
            for step in plan["volumes"]:
                if step["action"] != "create":
                    continue
                vol = vols[step["name"]]
                options = vol.get("options") or {}
                if options.get("device", "").startswith("/") and "bind" in (options.get("o") or "").split(","):
                    os.makedirs(options["device"], exist_ok=True)
                self.client.api.create_volume(vol["name"], driver=vol["driver"], driver_opts=options or None,
                                              labels=vol.get("labels") or None)
        return {"networks": plan["networks"], "volumes": plan["volumes"]}

    # -- step: images -------------------------------------------------------------------------------
    def images(self) -> list[dict[str, Any]]:
        plan = {i["id"]: i for i in self.plan()["images"]}
        out = []
        for image in self.dep.get("images") or []:
            step = dict(plan[image["id"]])
            if not self.check:
                started = time.monotonic()
                if step["action"] == "load":
                    self._load(image)
                elif step["action"] == "pull":
                    self._pull(image)
                elif step["action"] == "missing":
                    raise RebuildError(f"image {image['id']} is not on this host, not in the snapshot and has no "
                                       "name to pull: build it again and tag it, or take snapshots with "
                                       "include_images: true")
                step["tagged"] = self._tag(image)
                step["seconds"] = round(time.monotonic() - started, 3)
            out.append(step)
        return out

    def _load(self, image: dict[str, Any]) -> None:
        try:
            answer = self.client.api.load_image(object_chunks(self.repo, image["archive"]))
            if answer is not None and not isinstance(answer, (bytes, str, dict)):
                for _msg in answer:  # a stream of progress messages (SDK >= 7)
                    pass
        except DumpError as exc:
            raise RebuildError(f"the archive of image {(image.get('tags') or [image['id']])[0]} is damaged ({exc}): "
                               "load it from another snapshot") from exc
        try:
            self.client.api.inspect_image(image["id"])
        except Exception as exc:  # pylint: disable=broad-except
            raise RebuildError(f"loading the archive of image {image['id']} did not give that image ({exc})") from exc

    def _pull(self, image: dict[str, Any]) -> None:
        errors = []
        for name in (image.get("digests") or []) + (image.get("tags") or []):
            try:
                self.client.api.pull(name)
                self.client.api.inspect_image(image["id"])
                return
            except Exception as exc:  # pylint: disable=broad-except
                errors.append(f"{name}: {exc}")
        raise RebuildError(f"image {(image.get('tags') or [image['id']])[0]} is not in the snapshot and could not be "
                           f"pulled ({'; '.join(errors)[:600]}); take snapshots with include_images: true, or load it "
                           "by hand (docker load) and run again")

    def _tag(self, image: dict[str, Any]) -> list[str]:
        have = set(self.client.api.inspect_image(image["id"]).get("RepoTags") or [])
        added = []
        for tag in image.get("tags") or []:
            if tag not in have:
                repository, _sep, version = tag.rpartition(":")
                self.client.api.tag(image["id"], repository, version)
                added.append(tag)
        return added

    # -- step: databases --------------------------------------------------------------------------
    def _create(self, spec: dict[str, Any]) -> None:
        req = rb.create_request(spec, self.env_values.get(spec["name"], {}))
        api = self.client.api
        host_config = api.create_host_config(**req["host_config"])
        networking = None
        if req["network"]:
            name, endpoint = req["network"]
            networking = api.create_networking_config({name: api.create_endpoint_config(**endpoint)})
        cid = api.create_container(host_config=host_config, networking_config=networking, **req["create"])["Id"]
        for name, endpoint in req["connect"]:
            api.connect_container_to_network(cid, name, **endpoint)

    def _wait_ready(self, name: str, engine: str) -> None:
        spec = READY.get(engine)
        deadline = time.monotonic() + self.timeout
        last = ""
        while time.monotonic() < deadline:
            attrs = self.client.api.inspect_container(name)
            status = attrs["State"]["Status"]
            if status in ("exited", "dead"):
                logs = self.client.api.logs(name, tail=15).decode("utf-8", "replace")
                raise RebuildError(f"database container {name} stopped after it was started: {logs[-800:]}")
            health = (attrs["State"].get("Health") or {}).get("Status")
            if spec is None or health == "healthy":
                return
            run = exec_capture(self.client, name, spec, timeout=20)
            if run["exit_code"] == 0 and health in (None, "healthy"):
                return
            last = run["output"]
            time.sleep(1)
        raise RebuildError(f"database container {name} did not accept connections within {self.timeout} s ({last[-300:]}); "
                           "see docker logs " + name)

    def databases(self) -> list[dict[str, Any]]:
        out = []
        plan = {d["unit"]: d for d in self.plan()["databases"]}
        for unit in rb.database_units(self.manifest):
            if unit["id"] not in plan:
                continue  # a swarm task's dump: the swarm step restores it into its service
            step = dict(plan[unit["id"]])
            name, engine = step["container"], step["engine"]
            out.append(step)
            if self.check:
                continue
            started = time.monotonic()
            spec = self.specs.get(name)
            have = self.have()
            here = rb.found_here(spec or {"name": name}, have)
            if here is None:
                if spec is None:
                    raise RebuildError(f"the snapshot records no container {name} for {unit['id']}: start a {engine} "
                                       f"server named {name} by hand and run again")
                if spec.get("compose"):
                    # a compose service: compose makes it (with its own naming), from the recorded files
                    comp = spec["compose"]
                    self._compose({"name": comp["project"], "services": [comp["service"]]},
                                  compose_tool(self.docker_host))
                    self.refresh()
                    here = rb.found_here(spec, self.have())
                    if here is None:
                        raise RebuildError(f"compose did not make a container for service {comp['service']} of "
                                           f"project {comp['project']} ({unit['id']}): see docker compose logs")
                else:
                    self._create(spec)
                    here = name
                step["created"] = True
                have = self.have()
            name = step["container_here"] = here
            if have["containers"].get(name) != "running":
                self.client.api.start(name)
                step["started"] = True
            self._wait_ready(name, engine)
            self.refresh()
            attrs = self.client.api.inspect_container(name)
            full = holds_data(self.client, name, attrs, engine)
            if full:
                step.update(action="present", holds=full)
                continue
            with LockSet([f"unit:{unit['id']}", f"container:{name}"], f"rebuild from {self.manifest['id']}", self.timeout):
                empty = existing_content(self.client, name, attrs, engine)
                if empty and engine != "redis":
                    _clear(self.client, name, attrs, engine, empty)  # empty databases a fresh server made
                runner = DbRestoreRun(self.client, self.repo, self.raw)
                plan_db = {"engine": engine, "target": name, "attrs": attrs, "existing": []}
                done = runner.run(self.manifest, unit, plan_db, force=False, verify=True)
            step.update(action="restored", verified=done.get("verified"), row_counts=done.get("row_counts"),
                        seconds=round(time.monotonic() - started, 3))
        return out

    # -- step: services ---------------------------------------------------------------------------
    def services(self) -> list[dict[str, Any]]:
        plan = self.plan()
        if plan["bind_sources_missing"] and not self.check:
            raise RebuildError("these bind sources are not on this host and the snapshot does not hold them: "
                               + "; ".join(f"{m['path']} (of {', '.join(m['containers'])})"
                                           for m in plan["bind_sources_missing"])
                               + ". The engine would mount an empty directory there and the services would start "
                                 "without them: put them in place (from another copy, or by hand), then run again")
        if plan["missing_environment"] and not self.check:
            raise RebuildError("no value for the environment variables " + "; ".join(
                f"{c}: {', '.join(n)}" for c, n in sorted(plan["missing_environment"].items()))
                + ": the snapshot is not encrypted, so it holds no values; give them as dr_rebuild_environment "
                  "(container -> {NAME: value}, from a vault)")
        out = []
        tool = None
        for step in plan["services"]:
            entry = dict(step)
            out.append(entry)
            if self.check or step["action"] == "present":
                continue
            started = time.monotonic()
            if step["kind"] == "compose":
                tool = tool or compose_tool(self.docker_host)
                entry.update(self._compose(step, tool))
            else:
                spec = self.specs[step["name"]]
                if step["action"].startswith("create"):
                    self._create(spec)
                if step["action"] in ("create and start", "start"):
                    self.client.api.start(spec["name"])
            entry["seconds"] = round(time.monotonic() - started, 3)
        return out

    def _compose(self, step: dict[str, Any], tool: list[str] | None) -> dict[str, Any]:
        proj = next(p for p in self.dep.get("compose_projects") or [] if p["name"] == step["name"])
        if tool is None:
            raise RebuildError(f"compose project {proj['name']} needs docker compose (v2) or docker-compose (v1), "
                               "and neither answers on this host: install Debian's docker-compose package")
        written = []
        for entry in (proj.get("files") or []) + (proj.get("env_files") or []):
            data = None
            if entry.get("object"):
                data = self.repo.read_object(entry["object"], f"{entry['path']} of compose project {proj['name']}")
            elif entry["path"] in self.compose_env_files:
                data = self.compose_env_files[entry["path"]].encode()
            elif entry in (proj.get("files") or []):
                raise RebuildError(f"{entry['path']} of compose project {proj['name']} is not in the snapshot "
                                   f"({entry.get('missing')}): put it there by hand and run again")
            if data is None:
                continue
            if _write_if_changed(entry["path"], data, int(entry.get("mode") or "0600", 8), entry.get("uid"), entry.get("gid")):
                written.append(entry["path"])
        argv = rb.compose_up_command(tool, proj, step["services"])
        proc = subprocess.run(argv, capture_output=True, env=compose_env(self.docker_host), check=False,
                              cwd=proj.get("working_dir") or "/", timeout=self.timeout * 4)
        if proc.returncode != 0:
            raise RebuildError(f"{' '.join(argv)} failed (exit {proc.returncode}): "
                               f"{proc.stderr.decode('utf-8', 'replace')[-1500:]}")
        return {"written": written, "command": " ".join(argv)}

    # -- step: verify ------------------------------------------------------------------------------
    def verify(self, strict_units: list[str] | None = None) -> dict[str, Any]:
        """Services running (healthy where they have a healthcheck) and data equal to the manifest:
        the trees of volume and path units against their index, database row counts against the
        counts read from the dump. A difference fails for units of STRICT_UNITS (restored in this
        run) and is reported for the others (services write to their data)."""
        strict = set(strict_units or [])
        deadline = time.monotonic() + self.timeout
        while True:
            self.refresh()
            services = self._service_states()
            waiting = [s for s in services if not s["ok"]]
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(2)
        data, failures = [], []
        for unit in self.manifest.get("units", []):
            if not unit.get("object"):
                continue
            check = self._check_unit(unit)
            data.append(check)
            if check["problems"] and unit["id"] in strict:
                failures.append(f"{unit['id']}: {'; '.join(check['problems'][:3])}")
        failures += [f"{s['name']} is {s['status']}{' (' + s['health'] + ')' if s['health'] else ''}"
                     for s in services if not s["ok"]]
        return {"services": services, "data": data, "failures": failures}

    def _service_states(self) -> list[dict[str, Any]]:
        by_name = {(a.get("Name") or "").lstrip("/"): a for a in self.raw.get("containers") or []}
        by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for attrs in by_name.values():
            labels = (attrs.get("Config") or {}).get("Labels") or {}
            if labels.get("com.docker.compose.project"):
                key = (labels["com.docker.compose.project"], labels.get("com.docker.compose.service") or "")
                by_service.setdefault(key, []).append(attrs)
        out = []
        for spec in self.dep.get("containers") or []:
            comp = spec.get("compose")
            if comp and comp.get("oneoff"):
                continue
            want_running = spec.get("state") in ("running", "restarting", "paused")
            if comp:
                found = by_service.get((comp["project"], comp["service"])) or []
                attrs = found[0] if found else None
            else:
                attrs = by_name.get(spec["name"])
            if attrs is None:
                out.append({"name": spec["name"], "status": "missing", "health": None, "ok": False})
                continue
            state = attrs.get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            status = state.get("Status")
            ok = (status == "running" and health in (None, "healthy")) if want_running else status != "missing"
            out.append({"name": (attrs.get("Name") or "").lstrip("/"), "recorded_as": spec["name"],
                        "status": status, "health": health, "ok": ok})
        return out

    def _check_unit(self, unit: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {"unit": unit["id"], "problems": []}
        try:
            if unit.get("kind") == "database":
                recorded = unit["source"]["container"]
                service, slot = unit_service(unit)
                if service:  # a swarm task: the one that runs the service now
                    name = running_task(self.raw, service, slot) or recorded
                else:
                    name = rb.found_here(self.specs.get(recorded) or {"name": recorded}, self.have()) or recorded
                attrs = self.client.api.inspect_container(name)
                expected = unit.get("row_counts") or {}
                actual = count_rows(self.client, name, attrs, unit["engine"], expected) if expected else {}
                entry.update(kind="rows", expected=expected, actual=actual,
                             problems=compare_counts(expected, actual))
            else:
                src = unit["source"]
                where = src["path"] if unit["kind"] == "path" else volume_data_path(
                    self.client.api.inspect_volume(src["name"]))
                member = unit_member(unit)
                # The services run: SQLite databases copied online have their -wal/-shm again.
                excludes = list(unit.get("excludes") or []) + side_file_excludes(unit)
                entry.update(kind="file" if member else "tree", files=unit.get("files"),
                             problems=compare_tree(unit_index(self.repo, unit), os.path.dirname(where) if member
                                                   else where, excludes, member=member))
        except Exception as exc:  # pylint: disable=broad-except
            entry["problems"] = [f"could not be checked: {exc}"]
        entry["equal"] = not entry["problems"]
        return entry


def _write_if_changed(path: str, data: bytes, mode: int, uid: int | None = None, gid: int | None = None) -> bool:
    """Write PATH atomically unless it holds DATA already, and give it MODE and, when recorded, its
    owner UID:GID (as it was on the lost host); True when anything changed."""
    try:
        with open(path, "rb") as fh:
            same = fh.read() == data
    except FileNotFoundError:
        same = False
    if not same:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RebuildError(f"{path} in the snapshot is not UTF-8 text: write it by hand from the runbook") from None
        write_atomic(path, text, default_mode=mode)
    st = os.stat(path)
    changed = not same
    if st.st_mode & 0o7777 != mode:
        os.chmod(path, mode)
        changed = True
    if uid is not None and gid is not None and (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        changed = True
    return changed
