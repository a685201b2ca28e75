# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Rebuilding swarm stacks from a snapshot's swarm section, on a fresh engine or the same one.

Order, per stack: (1) the engine becomes a swarm manager (docker swarm init) unless it is one;
(2) the stack's volume units are restored into their volumes, created with their recorded labels,
before anything runs on them (an application never starts on an empty volume and writes its own
defaults into it); (3) the compose files, stored with the snapshot or rebuilt from the recorded
service specs, go to `docker stack deploy`; (4) every service runs its replicas; (5) the dumps of
the databases that ran as the stack's tasks are restored into the tasks that run now (PostgreSQL
and the other SQL engines through their client, Redis by placing its RDB with the service scaled
to 0 and back, its appendonly file rebuilt from it when appendonly is on: _restore_db.RedisPlacement).

Pure: `swarm_section`, `pick_stacks`, `stack_of_unit`, `choose_snapshot` (what V(latest) means here),
`no_swarm_snapshot`, `check_plan` (what check mode reports). Effects: `deployed_stacks` (asks the
engine), `SwarmRebuild` (restores and deploys).
"""

from __future__ import annotations

import os
import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild import swarm as sw
from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import DockerException
from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import Spec, exec_capture
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.probe import read_engine
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.files import RestoreRun, local_root, plan_restore
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.databases import (
    DbRestoreError,
    DbRestoreRun,
    RedisPlacement,
    unit_service,
)

SOURCES = ("auto", "compose", "specs")
# Asked in a task until it answers over TCP on 127.0.0.1: the official images' entry points first run
# a temporary server on the socket only (initdb, init scripts) and restart it; a restore must wait
# for the real one.
READY = {
    "postgres": ["pg_isready", "-q", "-h", "127.0.0.1"],
    "mariadb": ["sh", "-c", "mariadb-admin ping -h 127.0.0.1 --silent || mysqladmin ping -h 127.0.0.1 --silent"],
    "mysql": ["sh", "-c", "mysqladmin ping -h 127.0.0.1 --silent || mariadb-admin ping -h 127.0.0.1 --silent"],
    "redis": ["redis-cli", "-h", "127.0.0.1", "PING"],
}


class RebuildError(sw.SwarmError):
    """The rebuild cannot go on; the message says what was done already and what to do."""


def swarm_section(manifest: dict[str, Any]) -> dict[str, Any]:
    section = manifest.get("swarm")
    if not section or not section.get("stacks"):
        raise RebuildError(f"snapshot {manifest.get('id')} records no swarm stack: it was taken on a host outside "
                           "a swarm, on a worker, or by a lifeboat version before swarm support; pick a snapshot "
                           "taken on the swarm's manager")
    return section


def pick_stacks(section: dict[str, Any], wanted: list[str] | None) -> list[dict[str, Any]]:
    stacks = {s["name"]: s for s in section["stacks"]}
    unknown = sorted(set(wanted or []) - set(stacks))
    if unknown:
        raise RebuildError(f"the snapshot has no stack {', '.join(unknown)}; it has {', '.join(sorted(stacks))}")
    return [stacks[n] for n in sorted(stacks) if not wanted or n in wanted]


def stack_of_unit(unit: dict[str, Any], stack: dict[str, Any]) -> bool:
    """Whether a manifest unit belongs to STACK: a volume of the stack, or a database dumped from one
    of its tasks."""
    if unit.get("kind") == "volume":
        source = unit.get("source") or {}
        return source.get("name") in {v["name"] for v in stack.get("volumes") or []} or \
            (source.get("labels") or {}).get(sw.STACK_LABEL) == stack["name"]
    if unit.get("kind") == "database":
        labels = ((unit.get("containers") or [{}])[0] or {}).get("labels") or {}
        return labels.get(sw.STACK_LABEL) == stack["name"]
    return False


def choose_snapshot(manifests: list[dict[str, Any]], host: str | None) -> dict[str, Any] | None:
    """What V(latest) means for a swarm rebuild: the newest snapshot (of HOST if given) that records a swarm."""
    return mf.pick_latest(manifests, host=host, where=lambda m: bool(m.get("swarm")))


def no_swarm_snapshot(repo_url: str, host: str | None) -> str:
    """The message when no snapshot of REPO_URL (of HOST) records a swarm."""
    return (f"{repo_url} has no snapshot that records a swarm" + (f" of host {host}" if host else "")
            + ": take one with lifeboat.docker.snapshot on the swarm's manager")


def check_plan(manifest: dict[str, Any], stacks: list[dict[str, Any]], keep: list[str],
               source: str) -> list[dict[str, Any]]:
    """What a run would do with each of STACKS (check mode): keep it (it is deployed, existing=keep) or
    rebuild it from its compose files or its recorded specs, with the volume and dump units it restores."""
    units = manifest.get("units") or []
    return [{
        "stack": s["name"], "action": "present" if s["name"] in keep else "rebuild",
        "source": "compose" if (s.get("compose") or {}).get("files") and source != "specs" else "specs",
        "volumes": sorted(u["id"] for u in units if u.get("object") and u["kind"] == "volume" and stack_of_unit(u, s)),
        "dumps": sorted(u["id"] for u in units if u.get("object") and u["kind"] == "database" and stack_of_unit(u, s)),
    } for s in stacks]


def deployed_stacks(client, stacks: list[dict[str, Any]]) -> list[str]:
    """The names among STACKS that have services on the engine now (none where it is no swarm manager yet)."""
    out = []
    for stack in stacks:
        try:
            if client.api.services(filters={"label": f"com.docker.stack.namespace={stack['name']}"}):
                out.append(stack["name"])
        except DockerException:
            continue  # not a swarm manager (yet): nothing is deployed
    return out


class SwarmRebuild:
    def __init__(self, client, repo, docker_host: str | None, *, compose_dir: str, force: bool = False,
                 verify: bool = True, stop_timeout: int = 30, converge_timeout: int = 300) -> None:
        self.client = client
        self.repo = repo
        self.docker_host = docker_host
        self.compose_dir = compose_dir
        self.force = force
        self.verify = verify
        self.stop_timeout = stop_timeout
        self.converge_timeout = converge_timeout

    # -- compose files ---------------------------------------------------------------------------
    def compose_files(self, stack: dict[str, Any], source: str, environment: dict[str, dict[str, str]]
                      ) -> tuple[list[str], str]:
        """Write the stack's compose files into compose_dir/STACK: (paths, "compose" or "specs")."""
        where = os.path.join(self.compose_dir, stack["name"])
        stored = (stack.get("compose") or {}).get("files") or []
        if source == "compose" and not stored:
            raise RebuildError(f"stack {stack['name']} was recorded without compose files (only its service "
                               "specs): use source auto or specs")
        if stored and source in ("auto", "compose"):
            paths = []
            for index, item in enumerate(stored):
                data = self.repo.read_object(item["object"], f"compose file {item['path']} of stack {stack['name']}")
                paths.append(sw.write_compose(where, f"{index:02d}-{item['name']}", data))
            return paths, "compose"
        doc, missing = sw.compose_from_specs(stack, environment)
        if missing:
            raise RebuildError(f"stack {stack['name']} is rebuilt from its recorded specs, which name environment "
                               f"variables but never hold their values; give them in environment (by service): "
                               f"{', '.join(missing)}")
        return [sw.write_compose(where, "docker-stack.from-specs.yml", sw.compose_bytes(doc))], "specs"

    def external_networks(self, stack: dict[str, Any]) -> list[str]:
        """Create the overlay networks the stack uses but does not own (declared external)."""
        created = []
        have = {n.name for n in self.client.networks.list()}
        for net in stack.get("networks") or []:
            if not net.get("external") or net["name"] in have or net.get("scope") not in ("swarm", None):
                continue
            self.client.networks.create(net["name"], driver=net.get("driver") or "overlay",
                                        attachable=bool(net.get("attachable")), internal=bool(net.get("internal")),
                                        labels=net.get("labels") or None, scope="swarm")
            created.append(net["name"])
        return created

    # -- restores --------------------------------------------------------------------------------
    def restore_volume(self, manifest: dict[str, Any], unit: dict[str, Any]) -> dict[str, Any]:
        raw = read_engine(self.client)
        plan = plan_restore(unit, raw, None, None, local_root(self.repo))
        if plan["nonempty"] and not self.force:
            raise RebuildError(f"volume {plan['target']} exists and is not empty: set force: true to replace its "
                               "content (kept aside as a volume NAME.pre-restore-TIME)")
        outcome = RestoreRun(self.client, self.repo, raw, self.stop_timeout).run(
            manifest, unit, plan, self.force, self.verify, False)
        return {"unit": unit["id"], "target": outcome["target"], "files": outcome.get("files"),
                "bytes": outcome.get("bytes"), "previous": outcome.get("previous"), "seconds": outcome.get("seconds")}

    def restore_dump(self, manifest: dict[str, Any], unit: dict[str, Any]) -> dict[str, Any]:
        service, slot = unit_service(unit)
        if not service:
            raise RebuildError(f"{unit['id']} was not dumped from a swarm task: restore it with snapshot_restore")
        target = sw.task_container(self.client, service, slot)
        self.wait_ready(service, target, unit.get("engine"))
        if unit.get("engine") == "redis":
            outcome = self.restore_redis(unit, service, target)
        else:
            runner = DbRestoreRun(self.client, self.repo, read_engine(self.client), self.stop_timeout)
            plan = runner.plan(unit, target)
            outcome = runner.run(manifest, unit, plan, self.force, self.verify)
            outcome = {k: outcome.get(k) for k in ("target", "previous", "verified", "seconds")}
        return dict(outcome, unit=unit["id"], service=service, engine=unit.get("engine"))

    def wait_ready(self, service: str, target: str, engine: str | None) -> None:
        """Until the database in TARGET answers (twice, a second apart), or RebuildError."""
        argv = READY.get(engine or "")
        if not argv:
            return
        streak = [0]

        def answers() -> bool:
            try:
                ok = exec_capture(self.client, target, Spec(argv), timeout=30)["exit_code"] == 0
            except DockerException:
                ok = False
            streak[0] = streak[0] + 1 if ok else 0
            return streak[0] >= 2

        try:
            sw.wait_until(f"the database of service {service} answering", answers, self.converge_timeout, 1.0)
        except sw.SwarmError as exc:
            raise RebuildError(f"{exc}: see docker service logs {service}") from exc

    def restore_redis(self, unit: dict[str, Any], service: str, target: str) -> dict[str, Any]:
        """Place the RDB in the service's data volume while the service is scaled to 0 (its
        appendonly file rebuilt from it when appendonly is on), then scale it back: the new task
        loads it at start. (Stopping a task would only make swarm replace it.)"""
        attrs = self.client.api.inspect_container(target)
        try:
            outcome = RedisPlacement(self.client, self.repo, self.stop_timeout).run(
                unit, target, attrs, f"rebuild: restore {unit['id']} into service {service}")
        except DbRestoreError as exc:
            raise RebuildError(f"Redis of service {service}: {exc}") from exc
        return {"target": outcome["target"], "previous": None, "keyspace": outcome["keyspace"],
                "downtime": outcome["downtime"], "method": outcome["method"], "seconds": outcome["seconds"]}

    # -- one stack -------------------------------------------------------------------------------
    def rebuild(self, manifest: dict[str, Any], stack: dict[str, Any], source: str,
                environment: dict[str, dict[str, str]], restore_volumes: bool, restore_dumps: bool) -> dict[str, Any]:
        started = time.monotonic()
        name = stack["name"]
        units = [u for u in manifest.get("units") or [] if u.get("object") and stack_of_unit(u, stack)]
        result: dict[str, Any] = {"stack": name, "volumes": [], "dumps": [], "networks_created": []}
        files, used = self.compose_files(stack, source, environment)
        result.update(compose_files=files, source=used)
        if restore_volumes:
            for unit in sorted((u for u in units if u["kind"] == "volume"), key=lambda u: u["id"]):
                result["volumes"].append(self.restore_volume(manifest, unit))
        result["networks_created"] = self.external_networks(stack)
        sw.stack_deploy(self.docker_host, name, files)
        result["services"] = sw.wait_converged(self.client, name, self.converge_timeout)
        if restore_dumps:
            for unit in sorted((u for u in units if u["kind"] == "database"), key=lambda u: u["id"]):
                result["dumps"].append(self.restore_dump(manifest, unit))
            result["services"] = sw.wait_converged(self.client, name, self.converge_timeout)
        result["seconds"] = round(time.monotonic() - started, 3)
        return result
